/*
 * In-place values (maps with 8-byte values and no value destructor; trie.c,
 * "In-place values"): a replace writes the value word where it is while
 * other threads copy the same bucket for inserts, removes, splits and
 * merges.  The race that would lose a write is a copy that read the old
 * value being published after the in-place write; these tests put every
 * kind of copier on the bucket of the keys being replaced and check that no
 * write is lost and that every old value returned is exact.
 *
 * Keys are u64 with the identity hasher and all share their low 30 bits,
 * so they sit in one bucket of the root's slot 0 until it holds more than
 * BMAX (32) entries and splits; the churners' keys push it over that and
 * back, so splits and contractions copy it too.
 *
 * Each test runs on an in-place map and on the same map with
 * CMAP_COPY_ON_WRITE (the copying path alone), as a control.
 *
 * Appends (inplace.c: an insert into a bucket with room writes the entry
 * and raises the count) race with each other, with value writes and with
 * every copier in test_no_lost_insert, on u64 and u32 keys (the two
 * lookups that compare keys a group at a time).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmap.h"
#include "testutil.h"

enum { WRITERS = 3, CHURN_KEYS = 40 };

static uint64_t key_of(unsigned j)
{
	return (uint64_t)j << 30;
}

static cmap_t *new_map(unsigned flags)
{
	cmap_config_t c = CMAP_CONFIG_INIT;
	c.key_size = 8;
	c.val_size = 8;
	c.hash = cmap_hash_u64;
	c.flags = flags;
	cmap_t *m = NULL;
	CHECK_EQ(cmap_new(&m, &c), CMAP_OK);
	return m;
}

struct shared {
	cmap_t *m;
	long n;		    /* writes per writer */
	atomic_int running; /* writers still writing */
	atomic_long reads;
};

/* Writer j sets its key to 1, 2, ..., n; each set must return the value
 * before it as the old one (with a lost write, some old value repeats). */
static void *writer(void *p)
{
	struct shared *s = p;
	static atomic_uint next;
	unsigned j = atomic_fetch_add(&next, 1) % WRITERS;
	uint64_t k = key_of(j);
	for (uint64_t v = 1; v <= (uint64_t)s->n; v++) {
		uint64_t old = 0;
		int rc = cmap_set(s->m, &k, 8, &v, 8, &old, NULL);
		CHECK_EQ(rc, CMAP_REPLACED);
		CHECK_EQ(old, v - 1);
		if (v % 3 == 0) { /* and through cmap_replace and cmap_cas */
			uint64_t w = v, e = v, cur = 0;
			CHECK_EQ(
			    cmap_cas(s->m, &k, 8, &e, 8, &w, 8, &cur, NULL),
			    CMAP_REPLACED);
			CHECK_EQ(cmap_replace(s->m, &k, 8, &w, 8, &old, NULL),
				 CMAP_REPLACED);
			CHECK_EQ(old, v);
		}
	}
	atomic_fetch_sub(&s->running, 1);
	return NULL;
}

/* Insert and remove keys of the same bucket until the writers finish:
 * every insert and remove copies the bucket, some split or contract it. */
static void *churner(void *p)
{
	struct shared *s = p;
	uint64_t rng = (uint64_t)(uintptr_t)p ^ 0x5eed;
	while (atomic_load(&s->running) > 0) {
		unsigned j =
		    WRITERS + 1 + (unsigned)(rng_next(&rng) % CHURN_KEYS);
		uint64_t k = key_of(j), v = j;
		if (rng_next(&rng) & 1)
			CHECK(cmap_set(s->m, &k, 8, &v, 8, NULL, NULL) >= 0);
		else
			CHECK(cmap_remove(s->m, &k, 8, NULL, NULL) >= 0);
	}
	return NULL;
}

/* Readers see each writer's values never go back (a lost write that a
 * reader saw first would show as a smaller value later). */
static void *reader(void *p)
{
	struct shared *s = p;
	uint64_t last[WRITERS] = {0};
	while (atomic_load(&s->running) > 0) {
		for (unsigned j = 0; j < WRITERS; j++) {
			uint64_t k = key_of(j), v = 0;
			CHECK_EQ(cmap_get(s->m, &k, 8, &v, NULL), CMAP_OK);
			CHECK(v >= last[j]);
			last[j] = v;
		}
		atomic_fetch_add(&s->reads, 1);
	}
	return NULL;
}

static void test_no_lost_write(unsigned flags)
{
	struct shared s = {.m = new_map(flags), .n = scaled(200000)};
	for (unsigned j = 0; j < WRITERS; j++) {
		uint64_t k = key_of(j), v = 0;
		CHECK_EQ(cmap_set(s.m, &k, 8, &v, 8, NULL, NULL), CMAP_OK);
	}
	atomic_store(&s.running, WRITERS);
	pthread_t w[WRITERS], c[2], r;
	for (int i = 0; i < WRITERS; i++)
		CHECK_EQ(pthread_create(&w[i], NULL, writer, &s), 0);
	for (int i = 0; i < 2; i++)
		CHECK_EQ(pthread_create(&c[i], NULL, churner, &s), 0);
	CHECK_EQ(pthread_create(&r, NULL, reader, &s), 0);
	for (int i = 0; i < WRITERS; i++)
		CHECK_EQ(pthread_join(w[i], NULL), 0);
	for (int i = 0; i < 2; i++)
		CHECK_EQ(pthread_join(c[i], NULL), 0);
	CHECK_EQ(pthread_join(r, NULL), 0);
	for (unsigned j = 0; j < WRITERS; j++) {
		uint64_t k = key_of(j), v = 0;
		CHECK_EQ(cmap_get(s.m, &k, 8, &v, NULL), CMAP_OK);
		CHECK_EQ(v, s.n);
	}
	CHECK_EQ(cmap_validate(s.m, NULL), CMAP_OK);
	printf("test_inplace: no lost write (%s): %ld writes per writer, "
	       "%ld reader rounds\n",
	       flags ? "copy-on-write" : "in place", s.n,
	       atomic_load(&s.reads));
	cmap_free(s.m);
}

/* A counter incremented through cmap_compute by several threads while the
 * bucket is copied under it: the count is exact. */
static int incr(const void *key, size_t klen, const void *cur, size_t clen,
		const void **val, size_t *vlen, void *ctx)
{
	(void)key, (void)klen, (void)clen;
	uint64_t *slot = ctx;
	uint64_t c = 0;
	if (cur)
		memcpy(&c, cur, 8);
	*slot = c + 1;
	*val = slot;
	*vlen = 8;
	return CMAP_COMPUTE_SET;
}

static void *counter(void *p)
{
	struct shared *s = p;
	uint64_t k = key_of(0), slot;
	for (long i = 0; i < s->n; i++)
		CHECK(cmap_compute(s->m, &k, 8, incr, &slot) >= 0);
	atomic_fetch_sub(&s->running, 1);
	return NULL;
}

static void test_counter(unsigned flags)
{
	struct shared s = {.m = new_map(flags), .n = scaled(100000)};
	atomic_store(&s.running, 2);
	pthread_t t[2], c;
	for (int i = 0; i < 2; i++)
		CHECK_EQ(pthread_create(&t[i], NULL, counter, &s), 0);
	CHECK_EQ(pthread_create(&c, NULL, churner, &s), 0);
	for (int i = 0; i < 2; i++)
		CHECK_EQ(pthread_join(t[i], NULL), 0);
	CHECK_EQ(pthread_join(c, NULL), 0);
	uint64_t k = key_of(0), v = 0;
	CHECK_EQ(cmap_get(s.m, &k, 8, &v, NULL), CMAP_OK);
	CHECK_EQ(v, 2 * s.n);
	CHECK_EQ(cmap_validate(s.m, NULL), CMAP_OK);
	cmap_free(s.m);
}

/*
 * A value that is a pointer: what it points to, written before the set, is
 * seen by a thread that gets the pointer (the set releases, the get
 * acquires; ThreadSanitizer reports the read otherwise).
 */
struct obj {
	uint64_t a, b;
};

/* Two publishers swap their own objects into one key; each reads the old
 * object it gets back (written by the other thread before its set: the set
 * that returns it must acquire it) and frees it after a grace period. */
static void *publisher(void *p)
{
	struct shared *s = p;
	uint64_t k = key_of(1);
	for (long i = 1; i <= s->n; i++) {
		struct obj *o = malloc(sizeof *o);
		CHECK(o);
		o->a = (uint64_t)i;
		o->b = ~(uint64_t)i;
		uint64_t v = (uint64_t)(uintptr_t)o, old = 0;
		CHECK_EQ(cmap_set(s->m, &k, 8, &v, 8, &old, NULL),
			 CMAP_REPLACED);
		struct obj *prev = (struct obj *)(uintptr_t)old;
		if (prev) {
			CHECK_EQ(prev->b, ~prev->a);
			/* Readers may still hold it. */
			CHECK_EQ(cmap_defer_free(s->m, prev, free), CMAP_OK);
		}
	}
	atomic_fetch_sub(&s->running, 1);
	return NULL;
}

static void see_obj(const void *key, size_t klen, const void *val, size_t vlen,
		    void *ctx)
{
	(void)key, (void)klen, (void)ctx;
	CHECK_EQ(vlen, 8);
	uint64_t v;
	memcpy(&v, val, 8);
	const struct obj *o = (const struct obj *)(uintptr_t)v;
	if (o)
		CHECK_EQ(o->b, ~o->a);
}

static void *subscriber(void *p)
{
	struct shared *s = p;
	uint64_t k = key_of(1);
	while (atomic_load(&s->running) > 0)
		CHECK_EQ(cmap_get_with(s->m, &k, 8, see_obj, NULL), CMAP_OK);
	return NULL;
}

static void test_publication(unsigned flags)
{
	struct shared s = {.m = new_map(flags), .n = scaled(50000)};
	uint64_t k = key_of(1), zero = 0;
	CHECK_EQ(cmap_set(s.m, &k, 8, &zero, 8, NULL, NULL), CMAP_OK);
	atomic_store(&s.running, 2);
	pthread_t p[2], r, c;
	for (int i = 0; i < 2; i++)
		CHECK_EQ(pthread_create(&p[i], NULL, publisher, &s), 0);
	CHECK_EQ(pthread_create(&r, NULL, subscriber, &s), 0);
	CHECK_EQ(pthread_create(&c, NULL, churner, &s), 0);
	for (int i = 0; i < 2; i++)
		CHECK_EQ(pthread_join(p[i], NULL), 0);
	CHECK_EQ(pthread_join(r, NULL), 0);
	CHECK_EQ(pthread_join(c, NULL), 0);
	uint64_t v = 0;
	CHECK_EQ(cmap_get(s.m, &k, 8, &v, NULL), CMAP_OK);
	free((void *)(uintptr_t)v);
	cmap_free(s.m);
}

/* A get_with callback's value does not change while it runs, also when
 * the word in the map does (it sees a copy). */
struct stable {
	uint64_t first;
	atomic_int go;
};

static void hold(const void *key, size_t klen, const void *val, size_t vlen,
		 void *ctx)
{
	(void)key, (void)klen, (void)vlen;
	struct stable *st = ctx;
	memcpy(&st->first, val, 8);
	atomic_store(&st->go, 1);
	while (atomic_load(&st->go) != 2)
		;
	uint64_t now;
	memcpy(&now, val, 8);
	CHECK_EQ(now, st->first);
}

struct holder {
	cmap_t *m;
	struct stable st;
};

static void *holder(void *p)
{
	struct holder *h = p;
	uint64_t k = key_of(2);
	CHECK_EQ(cmap_get_with(h->m, &k, 8, hold, &h->st), CMAP_OK);
	return NULL;
}

static void test_borrow_stable(void)
{
	struct holder h = {.m = new_map(0)};
	uint64_t k = key_of(2), v = 1, old = 0;
	CHECK_EQ(cmap_set(h.m, &k, 8, &v, 8, NULL, NULL), CMAP_OK);
	pthread_t t;
	CHECK_EQ(pthread_create(&t, NULL, holder, &h), 0);
	while (atomic_load(&h.st.go) != 1)
		;
	v = 2; /* written in place while the callback holds the old value */
	CHECK_EQ(cmap_set(h.m, &k, 8, &v, 8, &old, NULL), CMAP_REPLACED);
	CHECK_EQ(old, 1);
	atomic_store(&h.st.go, 2);
	CHECK_EQ(pthread_join(t, NULL), 0);
	CHECK_EQ(h.st.first, 1);
	cmap_free(h.m);
}

/*
 * Inserters own disjoint keys of one bucket and cycle each through insert,
 * get, set and remove, each answer exact (a lost append shows as a get
 * that misses or a set that inserts; an append landing twice, in the
 * copy and the original, as a remove that leaves the key behind).
 * Stable keys of the same bucket, inserted first, are read throughout and
 * must never be missing.
 */
enum { INSERTERS = 3, OWN_KEYS = 12, STABLE_KEYS = 6 };

struct ins {
	cmap_t *m;
	unsigned ks;	 /* 4 or 8 */
	unsigned stable; /* keys 1..stable stay in the map */
	long rounds;
	atomic_uint next;
	atomic_int running;
	atomic_long reads;
};

/* Key j of the shared bucket: the low bits (20 for u32, 30 for u64) are
 * equal, so the identity hashers put every key on one path. */
static void key_bytes(unsigned ks, unsigned j, void *out)
{
	if (ks == 4) {
		uint32_t k = (uint32_t)j << 20;
		memcpy(out, &k, 4);
	} else {
		uint64_t k = (uint64_t)j << 30;
		memcpy(out, &k, 8);
	}
}

/* A map of ks-byte keys holding the stable keys 1..stable (each valued
 * its number) in the shared bucket: STABLE_KEYS fill a key group, 1 leaves
 * the bucket small, so that appends land in the key group lookups read
 * with atomic loads past the count (trie.h, find4). */
static cmap_t *shared_bucket_map(unsigned ks, unsigned flags, unsigned stable)
{
	cmap_config_t c = CMAP_CONFIG_INIT;
	c.key_size = ks;
	c.val_size = 8;
	c.hash = ks == 4 ? cmap_hash_u32 : cmap_hash_u64;
	c.flags = flags;
	cmap_t *m = NULL;
	CHECK_EQ(cmap_new(&m, &c), CMAP_OK);
	unsigned char k[8];
	for (unsigned j = 1; j <= stable; j++) {
		uint64_t v = j;
		key_bytes(ks, j, k);
		CHECK_EQ(cmap_set(m, k, ks, &v, 8, NULL, NULL), CMAP_OK);
	}
	return m;
}

static void *inserter(void *p)
{
	struct ins *s = p;
	unsigned t = atomic_fetch_add(&s->next, 1);
	unsigned first = 1 + s->stable + t * OWN_KEYS;
	unsigned char k[8];
	for (long r = 0; r < s->rounds; r++) {
		for (unsigned j = first; j < first + OWN_KEYS; j++) {
			uint64_t v = (uint64_t)r << 16 | j;
			key_bytes(s->ks, j, k);
			CHECK_EQ(cmap_insert(s->m, k, s->ks, &v, 8, NULL, NULL),
				 CMAP_OK);
		}
		for (unsigned j = first; j < first + OWN_KEYS; j++) {
			uint64_t v = (uint64_t)r << 16 | j, got = 0, old = 0;
			key_bytes(s->ks, j, k);
			CHECK_EQ(cmap_get(s->m, k, s->ks, &got, NULL), CMAP_OK);
			CHECK_EQ(got, v);
			uint64_t w = v + 1;
			CHECK_EQ(cmap_set(s->m, k, s->ks, &w, 8, &old, NULL),
				 CMAP_REPLACED);
			CHECK_EQ(old, v);
		}
		for (unsigned j = first; j < first + OWN_KEYS; j++) {
			uint64_t v = ((uint64_t)r << 16 | j) + 1, old = 0;
			key_bytes(s->ks, j, k);
			CHECK_EQ(cmap_remove(s->m, k, s->ks, &old, NULL),
				 CMAP_OK);
			CHECK_EQ(old, v);
			CHECK_EQ(cmap_get(s->m, k, s->ks, &old, NULL),
				 CMAP_NOT_FOUND);
		}
	}
	atomic_fetch_sub(&s->running, 1);
	return NULL;
}

static void *stable_reader(void *p)
{
	struct ins *s = p;
	unsigned char k[8];
	while (atomic_load(&s->running) > 0) {
		for (unsigned j = 1; j <= s->stable; j++) {
			uint64_t v = 0;
			key_bytes(s->ks, j, k);
			CHECK_EQ(cmap_get(s->m, k, s->ks, &v, NULL), CMAP_OK);
			CHECK_EQ(v, j);
		}
		atomic_fetch_add(&s->reads, 1);
	}
	return NULL;
}

static void test_no_lost_insert(unsigned ks, unsigned flags, unsigned stable)
{
	/* A one-key bucket's rounds are quicker and its reader faster: a
	 * quarter of them give as many races of appends with lookups. */
	struct ins s = {.m = shared_bucket_map(ks, flags, stable),
			.ks = ks,
			.stable = stable,
			.rounds = scaled(stable < STABLE_KEYS ? 5000 : 20000)};
	atomic_store(&s.running, INSERTERS);
	pthread_t w[INSERTERS], r;
	for (int i = 0; i < INSERTERS; i++)
		CHECK_EQ(pthread_create(&w[i], NULL, inserter, &s), 0);
	CHECK_EQ(pthread_create(&r, NULL, stable_reader, &s), 0);
	for (int i = 0; i < INSERTERS; i++)
		CHECK_EQ(pthread_join(w[i], NULL), 0);
	CHECK_EQ(pthread_join(r, NULL), 0);
	CHECK_EQ(cmap_len(s.m), stable);
	CHECK_EQ(cmap_validate(s.m, NULL), CMAP_OK);
	printf("test_inplace: no lost insert (u%u, %s, %u stable): %ld rounds "
	       "of %d keys per inserter, %ld reader rounds\n",
	       ks * 8, flags ? "copy-on-write" : "appending", stable, s.rounds,
	       OWN_KEYS, atomic_load(&s.reads));
	cmap_free(s.m);
}

/*
 * Inserters racing for the same keys of one bucket: in each round every
 * thread cmap_inserts every shared key; exactly one insert of a key may
 * answer OK and the others EXISTS with the winner's value (an append and
 * a copy both adding the key would show as two OKs, or as a duplicate to
 * cmap_validate).  Between rounds, the keys are removed.
 */
enum { RACERS = 3, RACE_KEYS = 10 };

struct race {
	cmap_t *m;
	unsigned ks;
	long rounds;
	pthread_barrier_t bar;
	atomic_uint next;
	atomic_int wins[RACE_KEYS];
	uint64_t winner[RACE_KEYS];
};

static void *racer(void *p)
{
	struct race *s = p;
	unsigned t = atomic_fetch_add(&s->next, 1);
	unsigned char k[8];
	for (long r = 0; r < s->rounds; r++) {
		pthread_barrier_wait(&s->bar);
		for (unsigned i = 0; i < RACE_KEYS; i++) {
			/* Each thread goes through the keys in its own order.
			 */
			unsigned j = (i + t * 3) % RACE_KEYS;
			uint64_t v = (uint64_t)r << 8 | t, cur = 0;
			key_bytes(s->ks, 100 + j, k);
			int rc = cmap_insert(s->m, k, s->ks, &v, 8, &cur, NULL);
			if (rc == CMAP_OK) {
				atomic_fetch_add(&s->wins[j], 1);
				s->winner[j] = v;
			} else {
				CHECK_EQ(rc, CMAP_EXISTS);
				CHECK_EQ(cur >> 8, (uint64_t)r);
				/* The key an insert found stays found (it
				 * may have been an append still pending in a
				 * bucket the insert froze). */
				uint64_t g = 0;
				CHECK_EQ(cmap_get(s->m, k, s->ks, &g, NULL),
					 CMAP_OK);
				CHECK_EQ(g, cur);
			}
		}
		pthread_barrier_wait(&s->bar);
		pthread_barrier_wait(&s->bar); /* main checks and clears */
	}
	return NULL;
}

static void test_racing_inserts(unsigned ks)
{
	struct race s = {.m = shared_bucket_map(ks, 0, STABLE_KEYS),
			 .ks = ks,
			 .rounds = scaled(20000)};
	unsigned char k[8];
	CHECK_EQ(pthread_barrier_init(&s.bar, NULL, RACERS + 1), 0);
	pthread_t th[RACERS];
	for (int i = 0; i < RACERS; i++)
		CHECK_EQ(pthread_create(&th[i], NULL, racer, &s), 0);
	for (long r = 0; r < s.rounds; r++) {
		pthread_barrier_wait(&s.bar);
		pthread_barrier_wait(&s.bar);
		for (unsigned j = 0; j < RACE_KEYS; j++) {
			uint64_t v = 0;
			CHECK_EQ(atomic_load(&s.wins[j]), 1);
			atomic_store(&s.wins[j], 0);
			key_bytes(ks, 100 + j, k);
			CHECK_EQ(cmap_remove(s.m, k, ks, &v, NULL), CMAP_OK);
			CHECK_EQ(v, s.winner[j]);
			CHECK_EQ(cmap_get(s.m, k, ks, &v, NULL),
				 CMAP_NOT_FOUND);
		}
		pthread_barrier_wait(&s.bar);
	}
	for (int i = 0; i < RACERS; i++)
		CHECK_EQ(pthread_join(th[i], NULL), 0);
	CHECK_EQ(cmap_len(s.m), STABLE_KEYS);
	CHECK_EQ(cmap_validate(s.m, NULL), CMAP_OK);
	printf("test_inplace: racing inserts (u%u): %ld rounds of %d keys, "
	       "%d threads\n",
	       ks * 8, s.rounds, RACE_KEYS, RACERS);
	pthread_barrier_destroy(&s.bar);
	cmap_free(s.m);
}

int main(void)
{
	test_no_lost_write(0);
	test_no_lost_write(CMAP_COPY_ON_WRITE);
	test_counter(0);
	test_counter(CMAP_COPY_ON_WRITE);
	test_publication(0);
	test_publication(CMAP_COPY_ON_WRITE);
	test_borrow_stable();
	test_no_lost_insert(8, 0, STABLE_KEYS);
	test_no_lost_insert(4, 0, STABLE_KEYS);
	test_no_lost_insert(4, 0, 1);
	test_no_lost_insert(8, 0, 1);
	test_no_lost_insert(8, CMAP_COPY_ON_WRITE, STABLE_KEYS);
	test_racing_inserts(8);
	test_racing_inserts(4);
	printf("test_inplace: ok\n");
	return 0;
}
