/*
 * Compaction (src/compact.c): live nodes, buckets and blobs on half-empty
 * pages of a thread's pool are copied to fresh pages and the copies
 * published like updates that change nothing.  What must hold:
 *  - nothing is lost or changed: every key keeps its value, in-place writes
 *    racing with a relocation of their bucket are not lost (exact old
 *    values), inserts and removes racing with it keep their results, and a
 *    walk (cmap_foreach) sees every stable key exactly once;
 *  - it pays: after a mass removal, cmap_collect moves the survivors so
 *    that free space inside half-empty pages falls under a third of the
 *    pool's pages (the trigger's bound), and the pages in use shrink;
 *  - allocation failure midway ends the pass and loses nothing.
 * White-box: passes are forced through cmap__compact_start, and the pool's
 * pages are inspected (internal.h).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

#include "internal.h"
#include "testutil.h"

enum { WRITERS = 2, OWN = 64, STABLE_EVERY = 4 };

/* 256 distinct hashes: buckets of keys that share the whole hash. */
static uint64_t few_hash(const void *k, size_t n, uint64_t seed)
{
	(void)seed;
	uint64_t x = 0;
	memcpy(&x, k, n < 8 ? n : 8);
	return mix(x) & 0xff;
}

/* Low-entropy hashes: deep paths and full buckets. */
static uint64_t deep_hash(const void *k, size_t n, uint64_t seed)
{
	(void)seed;
	uint64_t x = 0;
	memcpy(&x, k, n < 8 ? n : 8);
	return mix(x) & 0x0f0f0f0full;
}

struct cfg {
	const char *name;
	size_t ks, vs; /* 0: variable length (blobs) */
	cmap_hash_fn hash;
	unsigned flags;
};

static const struct cfg cfgs[] = {
    {"in place", 8, 8, NULL, 0},
    {"copy-on-write", 8, 8, NULL, CMAP_COPY_ON_WRITE},
    {"variable", 0, 0, NULL, 0},
    {"deep hasher", 8, 8, deep_hash, 0},
    {"colliding variable", 0, 0, few_hash, 0},
};

static cmap_t *new_map(const struct cfg *c, const cmap_config_t *base)
{
	cmap_config_t cc = base ? *base : (cmap_config_t)CMAP_CONFIG_INIT;
	cc.key_size = c->ks;
	cc.val_size = c->vs;
	cc.hash = c->hash;
	cc.flags = c->flags;
	cmap_t *m = NULL;
	CHECK_EQ(cmap_new(&m, &cc), CMAP_OK);
	return m;
}

static rec_t *my_rec(cmap_t *m)
{
	rec_t *r = cmap__enter(m);
	CHECK(r != NULL);
	cmap__leave(r);
	return r;
}

/* Force a whole pass by the calling thread. */
static void pass(cmap_t *m)
{
	rec_t *r = my_rec(m);
	cmap__compact_start(m, r);
	cmap__compact(m, r, true);
	CHECK(!r->compacting);
}

static size_t relocated(cmap_t *m)
{
	cmap_gc_stats_t st = {.size = sizeof st};
	CHECK_EQ(cmap_reclaim_stats(m, &st), CMAP_OK);
	return st.relocated;
}

static void drain(cmap_t *m)
{
	for (int i = 0; i < 100000; i++) {
		cmap_gc_stats_t st = {.size = sizeof st};
		cmap_collect(m);
		CHECK_EQ(cmap_reclaim_stats(m, &st), CMAP_OK);
		if (!st.pending)
			return;
	}
	CHECK(!"garbage never drained");
}

static uint64_t val_of(uint64_t k)
{
	return mix(k + 1);
}

static void put(cmap_t *m, uint64_t k, uint64_t v)
{
	CHECK(cmap_set(m, &k, 8, &v, 8, NULL, NULL) >= 0);
}

static bool get(cmap_t *m, uint64_t k, uint64_t *v)
{
	size_t len = 8;
	int rc = cmap_get(m, &k, 8, v, &len);
	CHECK(rc == CMAP_OK || rc == CMAP_NOT_FOUND);
	if (rc == CMAP_OK)
		CHECK_EQ(len, 8);
	return rc == CMAP_OK;
}

/* Keys [0, n): the stable ones (k % STABLE_EVERY == 0) stay with
 * val_of(k); the rest are inserted and removed again, leaving the loader's
 * pages about a quarter full. */
static void load_sparse(cmap_t *m, long n)
{
	for (long k = 0; k < n; k++)
		put(m, (uint64_t)k, val_of((uint64_t)k));
	for (long k = 0; k < n; k++)
		if (k % STABLE_EVERY) {
			uint64_t kk = (uint64_t)k;
			CHECK_EQ(cmap_remove(m, &kk, 8, NULL, NULL), CMAP_OK);
		}
}

struct shared {
	cmap_t *m;
	long n;	     /* keys loaded */
	long rounds; /* writer rounds */
	atomic_int running;
	atomic_long walks;
};

/* Loaded keys that writer j replaces (the others keep val_of(k)): stable
 * keys whose bucket the loader allocated, so the loader's passes relocate
 * them while the writer writes them in place. */
static int hot_owner(uint64_t k)
{
	uint64_t g = (k / STABLE_EVERY) % 16;
	return k % STABLE_EVERY == 0 && g >= 1 && g <= WRITERS ? (int)g - 1
							       : -1;
}

/* Writer j replaces its hot keys with 1, 2, ... per key, each returning the
 * exact value before (a write lost to a relocation shows as a repeat),
 * and inserts and removes keys n + j * OWN + [0, OWN) against its own
 * oracle. */
static void *writer(void *p)
{
	struct shared *s = p;
	static atomic_uint next;
	unsigned j = atomic_fetch_add(&next, 1) % WRITERS;
	long nhot = 0;
	uint64_t *hot = malloc(sizeof *hot * (size_t)s->n), rng = 99 + j;
	uint64_t *last = calloc((size_t)s->n, sizeof *last);
	CHECK(hot && last);
	for (long k = 0; k < s->n; k++)
		if (hot_owner((uint64_t)k) == (int)j) {
			last[nhot] = val_of((uint64_t)k);
			hot[nhot++] = (uint64_t)k;
		}
	CHECK(nhot > 0);
	bool have[OWN] = {false};
	for (long r = 1; r <= s->rounds; r++) {
		long h = (long)(rng_next(&rng) % (uint64_t)nhot);
		uint64_t nv = (uint64_t)r, old = ~0ull;
		size_t ol = 8;
		CHECK_EQ(cmap_set(s->m, &hot[h], 8, &nv, 8, &old, &ol),
			 CMAP_REPLACED);
		CHECK_EQ(old, last[h]);
		last[h] = nv;
		if (r % 8)
			continue;
		unsigned o = (unsigned)(rng_next(&rng) % OWN);
		uint64_t k = (uint64_t)s->n + j * OWN + o;
		if (have[o]) {
			CHECK_EQ(cmap_remove(s->m, &k, 8, NULL, NULL), CMAP_OK);
		} else {
			uint64_t x = val_of(k);
			CHECK_EQ(cmap_insert(s->m, &k, 8, &x, 8, NULL, NULL),
				 CMAP_OK);
		}
		have[o] = !have[o];
	}
	for (long h = 0; h < nhot; h++) {
		uint64_t v = 0;
		CHECK(get(s->m, hot[h], &v));
		CHECK_EQ(v, last[h]);
	}
	for (unsigned o = 0; o < OWN; o++) {
		uint64_t k = (uint64_t)s->n + j * OWN + o, v = 0;
		CHECK_EQ(get(s->m, k, &v), have[o]);
		if (have[o])
			CHECK_EQ(v, val_of(k));
	}
	free(hot);
	free(last);
	atomic_fetch_sub(&s->running, 1);
	return NULL;
}

struct seen {
	long n;
	unsigned char *count;
	long stable;
};

static int see(const void *k, size_t kl, const void *v, size_t vl, void *ctx)
{
	struct seen *s = ctx;
	uint64_t key = 0, val = 0;
	CHECK_EQ(kl, 8);
	memcpy(&key, k, 8);
	if ((long)key < s->n) {
		CHECK_EQ(key % STABLE_EVERY, 0);
		CHECK_EQ(vl, 8);
		memcpy(&val, v, 8);
		if (hot_owner(key) < 0)
			CHECK_EQ(val, val_of(key));
		CHECK_EQ(s->count[key]++, 0); /* never twice */
		s->stable++;
	}
	return 0;
}

/* Stable keys read back exactly, and walks see each exactly once. */
static void *reader(void *p)
{
	struct shared *s = p;
	struct seen sn = {.n = s->n, .count = malloc((size_t)s->n)};
	CHECK(sn.count != NULL);
	uint64_t rng = 7;
	while (atomic_load(&s->running) > 0) {
		for (int i = 0; i < 256; i++) {
			uint64_t k = (rng_next(&rng) % (uint64_t)s->n), v = 0;
			bool stable = k % STABLE_EVERY == 0;
			CHECK_EQ(get(s->m, k, &v), stable);
			if (stable && hot_owner(k) < 0)
				CHECK_EQ(v, val_of(k));
		}
		memset(sn.count, 0, (size_t)s->n);
		sn.stable = 0;
		CHECK(cmap_foreach(s->m, see, &sn) >= 0);
		CHECK_EQ(sn.stable, (s->n + STABLE_EVERY - 1) / STABLE_EVERY);
		atomic_fetch_add(&s->walks, 1);
	}
	free(sn.count);
	return NULL;
}

/* Passes forced by the loader (whose pages are sparse) while writers and a
 * reader run; the loader also churns keys of its own between passes, so
 * its pages keep emptying (its keys start at n + 10000, past the
 * writers'). */
static void concurrent(const struct cfg *c)
{
	struct shared s = {.m = new_map(c, NULL),
			   .n = c->hash == few_hash ? 2048 : 40000,
			   .rounds = scaled(150000)};
	if (s.n < 64)
		s.n = 64;
	load_sparse(s.m, s.n);
	atomic_store(&s.running, WRITERS);
	pthread_t w[WRITERS], rd;
	for (int i = 0; i < WRITERS; i++)
		CHECK_EQ(pthread_create(&w[i], NULL, writer, &s), 0);
	CHECK_EQ(pthread_create(&rd, NULL, reader, &s), 0);
	long passes = 0;
	uint64_t rng = 5;
	do {
		pass(s.m);
		passes++;
		for (int i = 0; i < 200; i++) {
			uint64_t k =
			    (uint64_t)s.n + 10000 + rng_next(&rng) % 4096;
			if (rng_next(&rng) & 1)
				put(s.m, k, val_of(k));
			else
				CHECK(cmap_remove(s.m, &k, 8, NULL, NULL) >= 0);
		}
		cmap_collect(s.m);
	} while (atomic_load(&s.running) > 0);
	for (int i = 0; i < WRITERS; i++)
		CHECK_EQ(pthread_join(w[i], NULL), 0);
	CHECK_EQ(pthread_join(rd, NULL), 0);
	for (long k = 0; k < s.n; k += STABLE_EVERY) {
		uint64_t v = 0;
		CHECK(get(s.m, (uint64_t)k, &v));
		if (hot_owner((uint64_t)k) < 0)
			CHECK_EQ(v, val_of((uint64_t)k));
	}
	CHECK_EQ(cmap_validate(s.m, NULL), CMAP_OK);
	size_t moved = relocated(s.m);
	printf("test_compact: %s: %ld passes, %zu moved, %ld walks\n", c->name,
	       passes, moved, atomic_load(&s.walks));
	/* Something moved, except on CMAP_NO_POOL maps (no pages) and in the
	 * colliding variable-length map: its collision buckets are never
	 * moved (DESIGN.md, known limits), so whether a pass finds anything
	 * to move depends on its few other buckets (none, in 2 of 8 runs
	 * under valgrind's scaling). */
	if (!(c->flags & CMAP_NO_POOL) && !(c->hash == few_hash && !c->ks))
		CHECK(moved > 0);
	cmap_free(s.m);
}

/* Free bytes inside the pages under two thirds full, and pages in use. */
static void frag(cmap_t *m, size_t *waste, size_t *pages)
{
	pool_local_t *pl = my_rec(m)->pool;
	*waste = 0;
	*pages = pl->npages;
	for (unsigned c = 0; c < POOL_NCLASS; c++)
		for (pool_page_t *pg = pl->partial[c]; pg; pg = pg->next)
			if (3 * pg->nfree > pg->cap)
				*waste += (size_t)pg->nfree * pool_cls_size(c);
}

/* The public path: a mass removal, then cmap_collect until quiet. */
static void pays(void)
{
	const struct cfg c = {"in place", 8, 8, NULL, 0};
	cmap_t *m = new_map(&c, NULL);
	long n = scaled(400000);
	load_sparse(m, n);
	drain(m);
	for (int i = 0; i < 8; i++)
		drain(m);
	size_t waste, pages, moved = relocated(m);
	frag(m, &waste, &pages);
	printf("test_compact: after a mass removal and cmap_collect: %zu "
	       "pages in use, %.2f MiB free in pages under 2/3 full, %zu "
	       "moved\n",
	       pages, (double)waste / 1048576, moved);
	for (long k = 0; k < n; k++) {
		uint64_t v = 0;
		CHECK_EQ(get(m, (uint64_t)k, &v), k % STABLE_EVERY == 0);
		if (k % STABLE_EVERY == 0)
			CHECK_EQ(v, val_of((uint64_t)k));
	}
	CHECK_EQ(cmap_validate(m, NULL), CMAP_OK);
	/* The pool's bound (pool.c, cmap__pool_fragmented), and at full
	 * size proof that the trigger fired. */
	CHECK(waste < ((size_t)2 << 20) || 3 * waste < pages * POOL_PAGE);
	if (n >= 400000)
		CHECK(moved > 0);
	cmap_free(m);
}

/* Hooks that fail on demand. */
static atomic_int failing;
static void *fail_alloc(void *ctx, size_t size, size_t align)
{
	(void)ctx;
	if (atomic_load(&failing))
		return NULL;
	size_t a = align < 16 ? 16 : align;
	return aligned_alloc(a, (size + a - 1) & ~(a - 1));
}
static void fail_free(void *ctx, void *p, size_t size)
{
	(void)ctx, (void)size;
	free(p);
}

/* Out of memory in the middle of a pass: it ends, and nothing is lost. */
static void oom(void)
{
	for (unsigned i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++) {
		cmap_config_t base = CMAP_CONFIG_INIT;
		base.alloc = fail_alloc;
		base.free = fail_free;
		cmap_t *m = new_map(&cfgs[i], &base);
		long n = scaled(20000);
		load_sparse(m, n);
		drain(m);
		atomic_store(&failing, 1);
		pass(m);
		atomic_store(&failing, 0);
		for (long k = 0; k < n; k++) {
			uint64_t v = 0;
			CHECK_EQ(get(m, (uint64_t)k, &v),
				 k % STABLE_EVERY == 0);
			if (k % STABLE_EVERY == 0)
				CHECK_EQ(v, val_of((uint64_t)k));
		}
		CHECK_EQ(cmap_validate(m, NULL), CMAP_OK);
		pass(m);
		CHECK_EQ(cmap_validate(m, NULL), CMAP_OK);
		cmap_free(m);
	}
	printf("test_compact: out of memory mid-pass: nothing lost\n");
}

int main(void)
{
	for (unsigned i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++)
		concurrent(&cfgs[i]);
	pays();
	oom();
	printf("test_compact: ok\n");
	return 0;
}
