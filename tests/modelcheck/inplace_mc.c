/*
 * GenMC client of the in-place value protocol (src/inplace.c, compiled as
 * it ships, with CMAP_MODELCHECK only for the atomics seams and an empty
 * spin hint): one bucket of two u64 entries {1: 10, 2: 20} behind a slot.
 *
 * Threads (main creates them in this order):
 *   writers  MC_WRITERS of them (1 or 2): cmap__put_in_place on entry 0,
 *            writer w storing 100 * (w + 1), unconditionally ("any", as
 *            cmap_set) or, with MC_COND, on condition that it holds 10 (as
 *            cmap_cas); IP_SPIN is 1 here, so a writer that finds the other
 *            one announced gives up (IP_BUSY) as it would after 16 tries
 *   copier   as trie.c's copy of a bucket for an insert or remove: freezes
 *            the bucket (cmap__freeze_bucket), copies both entries into a
 *            new bucket (entry 0 from the returned override when a write
 *            was pending, else with plain loads, like copy_item), and
 *            publishes it with a CAS on the slot
 *   reader   MC_READS times: loads the slot (acquire) and value word 0
 *            (acquire), as cmap_get; the values it sees never go back
 *
 * Properties (asserted by main after the joins, and by the reader):
 *   - no lost write: the published bucket holds the value of the last
 *     write that reported IP_DONE, and each IP_DONE write's old value is
 *     the value before it (10, or the other writer's);
 *   - a write that reported IP_STALE (MC_COND only) changed nothing;
 *   - no data race (GenMC reports one if a plain load of the copier meets
 *     a writer's store).
 *
 * With MC_APPENDERS (1 or 2) the writers are appenders instead, as an
 * appending map's insert (cmap_t.append): the bucket has room for 4
 * entries, appender w runs cmap__append of key 3 + w (value 30 + 10 w) on
 * the count it reads, again on a new count if told IP_STALE; the copier
 * copies the frozen contents (a carried append's key and value from the
 * override, never from the bucket); the reader reads the count (acquire)
 * and the keys and values below it.  Properties: every append that
 * reported IP_DONE is in the published bucket once, no other is; the
 * reader sees only whole entries, and never loses one it saw; no race.
 *
 * Reverted parts, each expected to make GenMC report an error:
 *   MC_NO_CARRY          the copier ignores the pending write it froze
 *                        (and reads every word atomically, so that the
 *                        error is the lost write, not a race)
 *   MC_COPY_FIRST        the copier reads the values (atomically) before
 *                        freezing
 *   MC_PLAIN_PENDING     the copier reads the pending entry's word (with
 *                        appenders: its key) with a plain load (a race
 *                        with the owner's store)
 *   MC_NO_CARRY          (with appenders) the copier ignores a pending
 *                        append: the insert is lost
 *   MC_COUNT_FIRST       (with appenders) the copier counts the entries
 *                        before freezing
 *
 * With MC_ANSWER (and one appender) the copier is an insert of the
 * appender's key 3 (value 99) that had to copy the bucket, as trie.c's
 * update walk: after the freeze it looks for key 3 in the frozen contents
 * and answers EXISTS if it is there, else inserts it (publishing a copy
 * with it); an EXISTS on the entry of the append it carried also publishes
 * the frozen contents ("Answers on a pending write" in docs/DESIGN.md).
 * Then it looks key 3 up as cmap_get does, which must find it.  Reverted:
 *   MC_NO_SHOW           the EXISTS on a carried append publishes nothing:
 *                        the get misses the key while the appender has not
 *                        stored its count
 *
 * With MC_ANSWER and one writer (no appenders), the copier is a cas of
 * entry 0 from 10 to 55 that found the writer announced (IP_BUSY) and
 * copies instead, as the walk: freeze, then on the frozen value (the
 * pending write's 100, carried) answer MISMATCH and publish the frozen
 * contents, or on 10 publish a copy with 55.  Then a get of entry 0 must
 * see the value answered or written, never 10 again.  MC_NO_SHOW: the
 * MISMATCH publishes nothing (the get may read 10 while the writer has not
 * stored).
 */
#define CMAP_MODELCHECK 1
#define IP_SPIN		1

#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The seams of src/internal.h (mc_seams.h), without the membarrier model
 * of the epoch client: this protocol uses no membarrier. */
int mc_self(void);
void mc_point(void);
void mc_full_fence(void *word);

#include "../../src/inplace.c"

int mc_self(void)
{
	return 0;
}
void mc_point(void) {}
void mc_full_fence(void *word)
{
	(void)word;
	atomic_thread_fence(memory_order_seq_cst);
}
struct tlcache mc_tl[1];

#ifndef MC_WRITERS
#define MC_WRITERS 1
#endif
#ifndef MC_READS
#define MC_READS 2
#endif

static void *mc_alloc(void *ctx, size_t size, size_t align)
{
	(void)ctx, (void)align;
	return malloc(size);
}
static void mc_free(void *ctx, void *p, size_t size)
{
	(void)ctx, (void)size;
	free(p);
}

static cmap_t M;
static rec_t R[MC_WRITERS];
static int rc[MC_WRITERS];
static uint64_t olds[MC_WRITERS];
static _Alignas(16) unsigned char mem0[128], mem1[128];
static _Atomic(uintptr_t) slot;

static uint64_t word(bucket_t *b, uint32_t i)
{
	return ld_acquire((_Atomic(uint64_t) *)(uintptr_t)bval(&M, b, i));
}

#ifdef MC_APPENDERS
#define CAP 4u /* room for both appends */
#else
#define CAP 0u /* exactly its two entries */
#endif

static bucket_t *make(unsigned char *mem)
{
	bucket_t *b = (bucket_t *)(void *)mem;
	atomic_init(&b->cnt, 2);
	atomic_init(&b->ipw, CAP << IPW_CAP_SHIFT);
	*(uint64_t *)(void *)bkey(&M, b, 0) = 1;
	*(uint64_t *)(void *)bkey(&M, b, 1) = 2;
	return b;
}

#ifdef MC_APPENDERS
static void *appender(void *arg)
{
	int w = (int)(intptr_t)arg;
	bucket_t *b = (bucket_t *)(ld_acquire(&slot) & ~T_MASK);
	uint64_t k = 3 + (uint64_t)w, v = 30 + 10 * (uint64_t)w;
	/* As the walk: an append told the count moved looks again (the
	 * keys differ, so the key is still absent). */
	for (int tries = 0; tries < 2; tries++) {
		uint32_t n = bucket_n(b);
#ifdef MC_ANSWER
		/* The answerer may have published a copy with key 3 in it
		 * (which has room): an insert finds it present there. */
		bool present = false;
		for (uint32_t j = 0; j < n; j++)
			present |= *(uint64_t *)(void *)bkey(&M, b, j) == k;
		if (present) {
			rc[w] = -1; /* EXISTS */
			break;
		}
#endif
		rc[w] = cmap__append(&M, &R[w], b, n, &k, &v);
		if (rc[w] != IP_STALE)
			break;
	}
	return NULL;
}

#ifdef MC_ANSWER
/* The insert of key 3 (value 99) that had to copy b: see the header. */
static void *answerer(void *arg)
{
	(void)arg;
	uintptr_t v = ld_acquire(&slot);
	bucket_t *b = (bucket_t *)(v & ~T_MASK), *nb = make(mem1);
	ovr_t o;
	cmap__freeze_bucket(&M, b, &o);
	int at = -1;
	for (uint32_t j = 0; j < o.n; j++) {
		uint64_t k = o.app && j == (uint32_t)o.i
				 ? o.k
				 : *(uint64_t *)(void *)bkey(&M, b, j);
		if (k == 3)
			at = (int)j;
	}
#ifdef MC_NO_SHOW
	bool publish = at < 0;
#else
	bool publish = at < 0 || (o.app && at == o.i);
#endif
	if (publish) {
		uint32_t n = o.n;
		for (uint32_t j = 0; j < n; j++) {
			bool c = o.app && j == (uint32_t)o.i;
			*(uint64_t *)(void *)bkey(&M, nb, j) =
			    c ? o.k : *(uint64_t *)(void *)bkey(&M, b, j);
			atomic_init(
			    (_Atomic(uint64_t) *)(uintptr_t)bval(&M, nb, j),
			    c ? o.v : *(uint64_t *)(void *)bval(&M, b, j));
		}
		if (at < 0) {
			*(uint64_t *)(void *)bkey(&M, nb, n) = 3;
			atomic_init(
			    (_Atomic(uint64_t) *)(uintptr_t)bval(&M, nb, n),
			    99);
			n++;
		}
		atomic_init(&nb->cnt, n);
		/* seq_cst with release: as trie.c's CAS (the only copier). */
		assert(cas_seqcst(&slot, &v, (uintptr_t)nb | T_BUCKET));
	}
	/* As cmap_get: the key answered present (or inserted) is found. */
	bucket_t *g = (bucket_t *)(ld_acquire(&slot) & ~T_MASK);
	uint32_t n = bucket_n(g);
	bool found = false;
	for (uint32_t j = 0; j < n; j++)
		found |= *(uint64_t *)(void *)bkey(&M, g, j) == 3;
	assert(found);
	return NULL;
}
#endif

/* The copier of an appending map: the frozen contents, o.n entries. */
static void *append_copier(void *arg)
{
	(void)arg;
	uintptr_t v = ld_acquire(&slot);
	bucket_t *b = (bucket_t *)(v & ~T_MASK), *nb = make(mem1);
	ovr_t o;
#ifdef MC_COUNT_FIRST
	uint32_t n = bucket_n(b);
	cmap__freeze_bucket(&M, b, &o);
	if (o.n > n) /* counted before: what landed since is not copied */
		o.app = false;
	o.n = n;
#else
	cmap__freeze_bucket(&M, b, &o);
#endif
#ifdef MC_NO_CARRY
	if (o.app)
		o.n--;
#endif
	for (uint32_t j = 0; j < o.n; j++) {
		uint64_t k, x;
#ifndef MC_PLAIN_PENDING
		if (o.app && j == (uint32_t)o.i) {
			k = o.k;
			x = o.v;
		} else
#endif
		{
			/* Plain loads, as copy_item's. */
			k = *(uint64_t *)(void *)bkey(&M, b, j);
			x = *(uint64_t *)(void *)bval(&M, b, j);
		}
		*(uint64_t *)(void *)bkey(&M, nb, j) = k;
		atomic_init((_Atomic(uint64_t) *)(uintptr_t)bval(&M, nb, j), x);
	}
	atomic_init(&nb->cnt, o.n);
	/* seq_cst with release: publishes nb, as trie.c's CAS does. */
	assert(cas_seqcst(&slot, &v, (uintptr_t)nb | T_BUCKET));
	return NULL;
}

/* As cmap_get: the count (acquire), then the keys and values below it. */
static void *append_reader(void *arg)
{
	(void)arg;
	uint32_t seen = 0; /* appended keys seen, as a bit set */
	for (int k = 0; k < MC_READS; k++) {
		bucket_t *b = (bucket_t *)(ld_acquire(&slot) & ~T_MASK);
		uint32_t n = bucket_n(b), now = 0;
		assert(n >= 2 && n <= 4);
		for (uint32_t j = 0; j < n; j++) {
			uint64_t key = *(uint64_t *)(void *)bkey(&M, b, j);
			assert(key >= 1 && key <= 4);
			assert(word(b, j) == 10 * key);
			if (key >= 3)
				now |= 1u << key;
		}
		assert((seen & now) == seen); /* nothing seen is lost */
		seen = now;
	}
	return NULL;
}
#endif

static void *writer(void *arg)
{
	int w = (int)(intptr_t)arg;
	bucket_t *b = (bucket_t *)(ld_acquire(&slot) & ~T_MASK);
	uint64_t v = 100 * (uint64_t)(w + 1), exp = 10;
#ifdef MC_COND
	rc[w] = cmap__put_in_place(&M, &R[w], b, 0, &exp, &v, &olds[w]);
	olds[w] = exp;
#else
	(void)exp;
	rc[w] = cmap__put_in_place(&M, &R[w], b, 0, NULL, &v, &olds[w]);
#endif
	return NULL;
}

/* Value word j of b with an atomic load: the reverted copiers read this
 * way, so that GenMC reports the lost write itself, not only the race of a
 * plain load with the owner's store. */
static uint64_t word_relaxed(bucket_t *b, uint32_t j)
{
	return ld_relaxed((_Atomic(uint64_t) *)(uintptr_t)bval(&M, b, j));
}

static void *copier(void *arg)
{
	(void)arg;
	uintptr_t v = ld_acquire(&slot);
	bucket_t *b = (bucket_t *)(v & ~T_MASK), *nb = make(mem1);
	uint64_t x[2];
	ovr_t o;
#if defined(MC_COPY_FIRST)
	x[0] = word_relaxed(b, 0);
	x[1] = word_relaxed(b, 1);
	cmap__freeze_bucket(&M, b, &o);
#elif defined(MC_NO_CARRY)
	cmap__freeze_bucket(&M, b, &o);
	x[0] = word_relaxed(b, 0);
	x[1] = word_relaxed(b, 1);
#else
	cmap__freeze_bucket(&M, b, &o);
	for (uint32_t j = 0; j < 2; j++) {
#ifndef MC_PLAIN_PENDING
		if (j == (uint32_t)o.i) {
			x[j] = o.v;
			continue;
		}
#endif
		/* A plain load, as copy_item's. */
		x[j] = *(uint64_t *)(void *)bval(&M, b, j);
	}
	if (o.i >= 0)
		x[o.i] = o.v;
#endif
	for (uint32_t j = 0; j < 2; j++)
		atomic_init((_Atomic(uint64_t) *)(uintptr_t)bval(&M, nb, j),
			    x[j]);
	/* seq_cst with release: publishes nb, as trie.c's CAS does. */
	assert(cas_seqcst(&slot, &v, (uintptr_t)nb | T_BUCKET));
	return NULL;
}

#ifdef MC_ANSWER
/* The cas of entry 0 (10 -> 55) that copies b: see the header. */
static void *cas_answerer(void *arg)
{
	(void)arg;
	uintptr_t v = ld_acquire(&slot);
	bucket_t *b = (bucket_t *)(v & ~T_MASK), *nb = make(mem1);
	ovr_t o;
	cmap__freeze_bucket(&M, b, &o);
	uint64_t x[2];
	for (uint32_t j = 0; j < 2; j++)
		x[j] = j == (uint32_t)o.i ? o.v
					  : *(uint64_t *)(void *)bval(&M, b, j);
	uint64_t answer = x[0];
	bool publish = true; /* a replace of 10 by 55 */
	if (x[0] != 10) {    /* MISMATCH on x[0] */
#ifdef MC_NO_SHOW
		publish = false;
#else
		publish = o.i == 0; /* on the carried entry */
#endif
	} else {
		x[0] = answer = 55;
	}
	if (publish) {
		for (uint32_t j = 0; j < 2; j++)
			atomic_init(
			    (_Atomic(uint64_t) *)(uintptr_t)bval(&M, nb, j),
			    x[j]);
		/* seq_cst with release: as trie.c's CAS (the only copier). */
		assert(cas_seqcst(&slot, &v, (uintptr_t)nb | T_BUCKET));
	}
	/* As cmap_get: what was answered or written, or a later value. */
	bucket_t *g = (bucket_t *)(ld_acquire(&slot) & ~T_MASK);
	uint64_t now = word(g, 0);
	assert(now == answer || now == 100);
	return NULL;
}
#endif

static void *reader(void *arg)
{
	(void)arg;
	uint64_t seen = 10;
	for (int k = 0; k < MC_READS; k++) {
		bucket_t *b = (bucket_t *)(ld_acquire(&slot) & ~T_MASK);
		uint64_t v = word(b, 0);
#if MC_WRITERS == 1
		/* One writer: 10 until its write, 100 after, never back. */
		assert(v == 10 || v == 100);
		assert(!(seen == 100 && v == 10));
#endif
		seen = v;
	}
	(void)seen;
	return NULL;
}

int main(void)
{
	M.ks = 8;
	M.vs = 8;
	M.inplace = true;
	M.cfg.alloc = mc_alloc;
	M.cfg.free = mc_free;
	bucket_t *b = make(mem0);
	atomic_init((_Atomic(uint64_t) *)(uintptr_t)bval(&M, b, 0), 10);
	atomic_init((_Atomic(uint64_t) *)(uintptr_t)bval(&M, b, 1), 20);
	atomic_init(&slot, (uintptr_t)b | T_BUCKET);
#ifdef MC_APPENDERS
	M.append = true;
	pthread_t t[MC_APPENDERS + 2];
	for (int w = 0; w < MC_APPENDERS; w++)
		pthread_create(&t[w], NULL, appender, (void *)(intptr_t)w);
#ifdef MC_ANSWER
	pthread_create(&t[MC_APPENDERS], NULL, answerer, NULL);
	for (int i = 0; i < MC_APPENDERS + 1; i++)
		pthread_join(t[i], NULL);
#else
	pthread_create(&t[MC_APPENDERS], NULL, append_copier, NULL);
	pthread_create(&t[MC_APPENDERS + 1], NULL, append_reader, NULL);
	for (int i = 0; i < MC_APPENDERS + 2; i++)
		pthread_join(t[i], NULL);
#endif
	bucket_t *cur = (bucket_t *)(ld_acquire(&slot) & ~T_MASK);
	uint32_t n = bucket_n(cur), found[5] = {0};
	for (uint32_t j = 0; j < n; j++) {
		uint64_t key = *(uint64_t *)(void *)bkey(&M, cur, j);
		assert(key >= 1 && key <= 4);
#ifdef MC_ANSWER
		/* Key 3 is the appender's (30) or the answerer's (99). */
		if (key == 3)
			assert(word(cur, j) == (rc[0] == IP_DONE ? 30 : 99));
		else
#endif
			assert(word(cur, j) == 10 * key);
		found[key]++;
	}
	assert(found[1] == 1 && found[2] == 1);
#ifdef MC_ANSWER
	assert(found[3] == 1);
#else
	for (int w = 0; w < MC_APPENDERS; w++)
		assert(found[3 + w] == (rc[w] == IP_DONE));
#endif
#else
	pthread_t t[MC_WRITERS + 2];
	for (int w = 0; w < MC_WRITERS; w++)
		pthread_create(&t[w], NULL, writer, (void *)(intptr_t)w);
#ifdef MC_ANSWER
	pthread_create(&t[MC_WRITERS], NULL, cas_answerer, NULL);
	for (int i = 0; i < MC_WRITERS + 1; i++)
		pthread_join(t[i], NULL);
	/* The published value: the writer's 100, or the cas's 55 (the
	 * writer's store then landed in the replaced bucket, or the cas
	 * replaced it), or 10 if neither wrote. */
	bucket_t *fin = (bucket_t *)(ld_acquire(&slot) & ~T_MASK);
	uint64_t f = word(fin, 0);
	assert(f == 100 || f == 55 || (f == 10 && rc[0] != IP_DONE));
	return 0;
#endif
	pthread_create(&t[MC_WRITERS], NULL, copier, NULL);
	pthread_create(&t[MC_WRITERS + 1], NULL, reader, NULL);
	for (int i = 0; i < MC_WRITERS + 2; i++)
		pthread_join(t[i], NULL);

	bucket_t *cur = (bucket_t *)(ld_acquire(&slot) & ~T_MASK);
	uint64_t v = word(cur, 0);
	assert(word(cur, 1) == 20);
#if MC_WRITERS == 1
	if (rc[0] == IP_DONE)
		assert(v == 100 && olds[0] == 10);
	else
		assert(v == 10);
#else
	bool d0 = rc[0] == IP_DONE, d1 = rc[1] == IP_DONE;
	if (d0 && d1)
		assert((olds[0] == 10 && olds[1] == 100 && v == 200) ||
		       (olds[1] == 10 && olds[0] == 200 && v == 100));
	else if (d0)
		assert(v == 100 && olds[0] == 10);
	else if (d1)
		assert(v == 200 && olds[1] == 10);
	else
		assert(v == 10);
#endif
#endif
	return 0;
}
