/*
 * White-box unit tests of the internal modules: hash indexing and slot
 * tags (internal.h), the node pool (pool.c), the epoch scheme (epoch.c) and
 * the trie's node operations as seen through the shape checks of
 * cmap_validate.  Links the static library, whose internal symbols are
 * visible to it.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "inplace.h"
#include "internal.h"
#include "testutil.h"

static cmap_t *new_u32map(unsigned flags)
{
	cmap_config_t c = {0};
	c.key_size = 4;
	c.val_size = 8;
	c.hash = cmap_hash_u32;
	c.flags = flags;
	cmap_t *m = NULL;
	CHECK_EQ(cmap_new(&m, &c), CMAP_OK);
	return m;
}

static void test_indexing(void)
{
	/* Level d takes bits [5d, 5d + 5), lowest first. */
	uint64_t h = 0;
	for (unsigned d = 0; d <= LAST_LEVEL; d++)
		h |= (uint64_t)((d * 7 + 3) & MASK) << (d * BITS);
	for (unsigned d = 0; d < LAST_LEVEL; d++)
		CHECK_EQ(hidx(h, d), (d * 7 + 3) & MASK);
	/* The last level has only the top 64 - 60 = 4 bits. */
	CHECK_EQ(LAST_LEVEL, 12);
	CHECK_EQ(hidx(~0ull, LAST_LEVEL), 15);
	CHECK_EQ(hidx(1ull << 63, LAST_LEVEL), 8);
	/* Tags survive a round trip and do not disturb the pointer. */
	_Alignas(16) static unsigned char obj[64];
	uintptr_t v = (uintptr_t)obj | T_BUCKET;
	CHECK(is_bucket(v) && !is_frozen(v));
	CHECK((void *)as_bucket(v | T_FROZEN) == (void *)obj);
	CHECK(is_frozen(v | T_FROZEN));
	CHECK(!is_bucket((uintptr_t)obj) &&
	      (void *)as_inner((uintptr_t)obj) == obj);
	CHECK_EQ(align16(1), 16);
	CHECK_EQ(align16(16), 16);
	CHECK_EQ(align16(17), 32);
	CHECK_EQ(align8(9), 16);
}

static void test_pool(void)
{
	cmap_t *m = new_u32map(0);
	rec_t *r = cmap__enter(m);
	CHECK(r != NULL);
	/* The first blocks come from the map's nursery, inside the map;
	 * freed, they are not reused. */
	void *n0 = cmap__alloc(m, r, 40);
	CHECK((char *)n0 >= (char *)m && (char *)n0 < (char *)(m + 1));
	CHECK(r->pool == NULL);
	cmap__dealloc(m, r, n0, 40);
	CHECK(cmap__alloc(m, r, 40) != n0);
	r->cold = 1000; /* as if it had taken its share: a pool now */
	/* Blocks of every class are distinct, aligned and writable; freed
	 * blocks are reused (LIFO) before the page is carved further. */
	void *p[POOL_NCLASS];
	for (unsigned c = 0; c < POOL_NCLASS; c++) {
		size_t sz = (c + 1) * POOL_GRAN;
		p[c] = cmap__alloc(m, r, sz);
		CHECK(p[c] != NULL);
		CHECK_EQ((uintptr_t)p[c] % 16, 0);
		CHECK(pool_page_of(p[c])->owner == r->pool);
		CHECK_EQ(pool_page_of(p[c])->cls, c);
		memset(p[c], 0xab, sz);
	}
	for (unsigned c = 0; c < POOL_NCLASS; c++)
		for (unsigned d = c + 1; d < POOL_NCLASS; d++)
			CHECK(p[c] != p[d]);
	for (unsigned c = 0; c < POOL_NCLASS; c++)
		cmap__dealloc(m, r, p[c], (c + 1) * POOL_GRAN);
	void *q = cmap__alloc(m, r, 100); /* class of 112 bytes */
	CHECK(q == p[6]);
	cmap__dealloc(m, r, q, 100);
	/* Many pages of one class; no block is handed out twice. */
	enum { NB = 5000 };
	static void *many[NB];
	for (int i = 0; i < NB; i++) {
		many[i] = cmap__alloc(m, r, 48);
		CHECK(many[i] != NULL);
		*(int *)many[i] = i;
	}
	for (int i = 0; i < NB; i++)
		for (int j = i + 1; j < i + 64 && j < NB; j++)
			CHECK(many[i] != many[j]);
	/* Freeing them all empties their pages (but the current one): the
	 * pages come back for another class (cross-class reuse). */
	pool_page_t *pg0 = pool_page_of(many[0]);
	CHECK(pg0 != r->pool->cur[2]);
	for (int i = 0; i < NB; i++) {
		CHECK_EQ(*(int *)many[i], i);
		cmap__dealloc(m, r, many[i], 48);
	}
	CHECK(r->pool->partial[2] == NULL);
	CHECK(r->pool->nempty > 0);
	void *big[NB / 8];
	bool reused = false;
	for (int i = 0; i < NB / 8; i++) {
		big[i] = cmap__alloc(m, r, 384);
		CHECK(big[i] != NULL);
		reused |= pool_page_of(big[i]) == pg0;
	}
	CHECK(reused);
	for (int i = 0; i < NB / 8; i++)
		cmap__dealloc(m, r, big[i], 384);
	/* Large objects bypass the pool. */
	void *huge = cmap__alloc(m, r, POOL_MAX + 1);
	CHECK(huge != NULL);
	cmap__dealloc(m, r, huge, POOL_MAX + 1);
	cmap__leave(r);
	CHECK(ld_relaxed(&m->pool.reserved) >= 64 * 1024);
	cmap_free(m);
}

/* Remote frees: blocks of one record's pages freed by another record go
 * through the freer's rbuf and the owner's inbox back to their page; once
 * every block is back, the pages go to the map and whole chunks go back
 * to the hooks. */
static _Atomic(long) hook_bytes;
static void *count_alloc(void *ctx, size_t size, size_t align)
{
	(void)ctx;
	atomic_fetch_add(&hook_bytes, (long)size);
	return aligned_alloc(align < 8 ? 8 : align,
			     (size + align - 1) & ~(align - 1));
}
static void count_free_hook(void *ctx, void *p, size_t size)
{
	(void)ctx;
	atomic_fetch_sub(&hook_bytes, (long)size);
	free(p);
}

static void test_pool_remote(void)
{
	cmap_config_t c = {0};
	c.key_size = 4;
	c.val_size = 4;
	c.alloc = count_alloc;
	c.free = count_free_hook;
	cmap_t *m;
	CHECK_EQ(cmap_new(&m, &c), CMAP_OK);
	long base = atomic_load(&hook_bytes);
	/* Two records of this thread: a and b (b is a second record made by
	 * hand, as if another thread's). */
	rec_t *a = cmap__enter(m);
	CHECK(a != NULL);
	rec_t b = {0};
	a->cold = b.cold = 1000; /* skip the nursery */
	enum { NB = 200000 };
	void **blk = malloc(NB * sizeof *blk);
	CHECK(blk != NULL);
	for (int i = 0; i < NB; i++) {
		blk[i] = cmap__alloc(m, a, 64 + 16 * (i % 8));
		CHECK(blk[i] != NULL);
	}
	long grown = atomic_load(&hook_bytes) - base;
	CHECK(grown >= NB * 64);
	/* b frees them all: remote, queued, sent in batches. */
	for (int i = 0; i < NB; i++)
		cmap__dealloc(m, &b, blk[i], 64 + 16 * (i % 8));
	CHECK(b.pool != NULL);
	CHECK(pool_page_of(blk[0])->owner == a->pool);
	CHECK(ld_relaxed(&a->pool->inbox) != NULL);
	cmap__pool_flush(m, &b); /* sends the rest */
	CHECK(b.pool->rbuf == NULL);
	cmap__pool_flush(m, a); /* a takes them back */
	CHECK(ld_relaxed(&a->pool->inbox) == NULL);
	for (unsigned k = 0; k < POOL_NCLASS; k++)
		CHECK(a->pool->partial[k] == NULL);
	/* Only a few pages stay: current ones, the empty list, the map's
	 * committed reserve; the rest went back with their chunks. */
	long left = atomic_load(&hook_bytes) - base;
	fprintf(stderr,
		"test_pool_remote: %ld KiB from the hooks, %ld KiB left\n",
		grown >> 10, left >> 10);
	CHECK(left <= grown / 2);
	CHECK(left <= (long)(8 * POOL_PAGE + 64 * POOL_PAGE + (4 << 20)));
	/* And they are reusable by b, for another class. */
	for (int i = 0; i < NB / 4; i++) {
		blk[i] = cmap__alloc(m, &b, 1000);
		CHECK(blk[i] != NULL);
		memset(blk[i], 1, 1000);
	}
	for (int i = 0; i < NB / 4; i++)
		cmap__dealloc(m, &b, blk[i], 1000);
	cmap__leave(a);
	free(blk);
	/* b's pool is not in the map's record list: free it by hand. */
	c.free(NULL, b.pool, sizeof *b.pool);
	cmap_free(m);
	CHECK_EQ(atomic_load(&hook_bytes), 0);
}

static atomic_int freed;
static void count_free(void *p)
{
	(void)p;
	atomic_fetch_add(&freed, 1);
}

struct parked {
	cmap_t *m;
	atomic_int stage; /* 1: inside; 2: may leave; 3: left */
};

static void *park(void *arg)
{
	struct parked *pk = arg;
	rec_t *r = cmap__enter(pk->m);
	CHECK(r != NULL);
	atomic_store(&pk->stage, 1);
	while (atomic_load(&pk->stage) != 2)
		;
	cmap__leave(r);
	atomic_store(&pk->stage, 3);
	return NULL;
}

static void test_epoch(void)
{
	cmap_t *m = new_u32map(0);
	static int objs[10];
	/* Alone, each collect advances E by one.  An item retired at epoch g
	 * is freed at E == g + 3, not at g + 2: a reader that announced g + 1
	 * may hold it (GRACE, internal.h). */
	atomic_store(&freed, 0);
	uint64_t e0 = ld_relaxed(&m->epoch);
	CHECK_EQ(cmap_defer_free(m, &objs[0], count_free), CMAP_OK);
	for (uint64_t k = 1; k <= GRACE; k++) {
		CHECK_EQ(atomic_load(&freed), 0);
		size_t left = cmap_collect(m);
		CHECK_EQ(ld_relaxed(&m->epoch), e0 + k);
		CHECK_EQ(left, k < GRACE);
	}
	CHECK_EQ(atomic_load(&freed), 1);
	CHECK_EQ(GRACE, 3);
	CHECK_EQ(NBAGS, 4);
	/* Every bag index in turn: items of NBAGS consecutive epochs wait in
	 * their own bags and each leaves exactly GRACE epochs after it came. */
	for (int i = 0; i < 2 * NBAGS; i++) {
		CHECK_EQ(cmap_defer_free(m, &objs[1], count_free), CMAP_OK);
		cmap_collect(m);
		CHECK_EQ(atomic_load(&freed), 1 + (i >= GRACE - 1 ? i - 1 : 0));
	}
	for (int i = 0; i < 4 && cmap_collect(m); i++)
		;
	CHECK_EQ(atomic_load(&freed), 1 + 2 * NBAGS);
	atomic_store(&freed, 1);

	/* A thread inside an operation holds the epoch back: E may pass its
	 * announced epoch by at most one, and nothing retired meanwhile is
	 * freed. */
	struct parked pk = {m, 0};
	pthread_t t;
	CHECK_EQ(pthread_create(&t, NULL, park, &pk), 0);
	while (atomic_load(&pk.stage) != 1)
		;
	uint64_t e1 = ld_relaxed(&m->epoch);
	for (int i = 1; i < 10; i++)
		CHECK_EQ(cmap_defer_free(m, &objs[i], count_free), CMAP_OK);
	for (int i = 0; i < 100; i++)
		CHECK(cmap_collect(m) == 9);
	CHECK(ld_relaxed(&m->epoch) <= e1 + 1);
	CHECK_EQ(atomic_load(&freed), 1);
	cmap_stats_t st;
	CHECK_EQ(cmap_validate(m, &st), CMAP_OK);
	CHECK_EQ(st.garbage_pending, 9);
	CHECK_EQ(st.threads, 2);
	atomic_store(&pk.stage, 2);
	CHECK_EQ(pthread_join(t, NULL), 0);
	for (int i = 0; i < 4 && cmap_collect(m); i++)
		;
	CHECK_EQ(atomic_load(&freed), 10);
	CHECK_EQ(cmap_collect(m), 0);

	/* The exited thread's record is reused by the next thread. */
	pk.stage = 0;
	CHECK_EQ(pthread_create(&t, NULL, park, &pk), 0);
	while (atomic_load(&pk.stage) != 1)
		;
	atomic_store(&pk.stage, 2);
	CHECK_EQ(pthread_join(t, NULL), 0);
	CHECK_EQ(cmap_validate(m, &st), CMAP_OK);
	CHECK_EQ(st.threads, 2);
	cmap_free(m);
}

/* A thread that defers frees and exits leaves them in its released record;
 * cmap_collect from a thread already in the map reaps them (before, they
 * waited for a new thread to join the map). */
static void *defer_and_exit(void *arg)
{
	static int obj;
	cmap_t *m = arg;
	for (int i = 0; i < 5; i++)
		CHECK_EQ(cmap_defer_free(m, &obj, count_free), CMAP_OK);
	return NULL;
}

static void test_reap(void)
{
	cmap_t *m = new_u32map(0);
	CHECK_EQ(cmap_collect(m), 0); /* this thread joins first */
	atomic_store(&freed, 0);
	pthread_t t;
	CHECK_EQ(pthread_create(&t, NULL, defer_and_exit, m), 0);
	CHECK_EQ(pthread_join(t, NULL), 0);
	cmap_stats_t st;
	CHECK_EQ(cmap_validate(m, &st), CMAP_OK);
	CHECK_EQ(st.garbage_pending, 5);
	for (int i = 0; i < 8 && atomic_load(&freed) < 5; i++)
		cmap_collect(m);
	CHECK_EQ(atomic_load(&freed), 5);
	CHECK_EQ(cmap_validate(m, &st), CMAP_OK);
	CHECK_EQ(st.garbage_pending, 0);
	CHECK_EQ(st.threads, 2); /* no new record was needed */
	cmap_free(m);
}

/* cmap_reclaim_stats: pending garbage, and the thread that blocks the next
 * epoch, without a walk. */
static void test_reclaim_stats(void)
{
	cmap_t *m = new_u32map(0);
	cmap_gc_stats_t st = {.size = sizeof st};
	CHECK_EQ(cmap_reclaim_stats(m, &st), CMAP_OK);
	CHECK_EQ(st.pending, 0);
	CHECK_EQ(st.blocking, 0);
	CHECK(st.epoch_age_secs >= 0);
	CHECK_EQ(cmap_reclaim_stats(NULL, &st), CMAP_EINVAL);
	CHECK_EQ(cmap_reclaim_stats(m, NULL), CMAP_EINVAL);
	st.size = offsetof(cmap_gc_stats_t, pending);
	CHECK_EQ(cmap_reclaim_stats(m, &st), CMAP_EINVAL);

	struct parked pk = {m, 0};
	pthread_t t;
	CHECK_EQ(pthread_create(&t, NULL, park, &pk), 0);
	while (atomic_load(&pk.stage) != 1)
		;
	static int objs[3];
	for (int i = 0; i < 3; i++)
		CHECK_EQ(cmap_defer_free(m, &objs[i], count_free), CMAP_OK);
	for (int i = 0; i < 5; i++)
		cmap_collect(m);
	st = (cmap_gc_stats_t){.size = sizeof st};
	CHECK_EQ(cmap_reclaim_stats(m, &st), CMAP_OK);
	CHECK_EQ(st.pending, 3);
	CHECK_EQ(st.blocking, 1); /* the parked thread, one epoch behind */
	CHECK_EQ(st.threads, 2);
	CHECK_EQ(st.epoch, ld_relaxed(&m->epoch));
	/* A caller that knows only the first two fields gets only those. */
	cmap_gc_stats_t small;
	memset(&small, 0xee, sizeof small);
	small.size = offsetof(cmap_gc_stats_t, epoch);
	CHECK_EQ(cmap_reclaim_stats(m, &small), CMAP_OK);
	CHECK_EQ(small.pending, 3);
	CHECK_EQ(small.threads, (size_t)0xeeeeeeeeeeeeeeeeull);
	atomic_store(&pk.stage, 2);
	CHECK_EQ(pthread_join(t, NULL), 0);
	for (int i = 0; i < 8 && cmap_collect(m); i++)
		;
	st = (cmap_gc_stats_t){.size = sizeof st};
	CHECK_EQ(cmap_reclaim_stats(m, &st), CMAP_OK);
	CHECK_EQ(st.pending, 0);
	CHECK_EQ(st.blocking, 0);
	cmap_free(m);
}

/* Bags that grew while a reader held the epoch back shrink once emptied. */
static void test_bag_shrink(void)
{
	cmap_t *m = new_u32map(0);
	struct parked pk = {m, 0};
	pthread_t t;
	CHECK_EQ(pthread_create(&t, NULL, park, &pk), 0);
	while (atomic_load(&pk.stage) != 1)
		;
	static int obj;
	atomic_store(&freed, 0);
	enum { N = 40000 };
	for (int i = 0; i < N; i++)
		CHECK_EQ(cmap_defer_free(m, &obj, count_free), CMAP_OK);
	rec_t *r = cmap__enter(m);
	cmap__leave(r);
	size_t big = 0;
	for (int i = 0; i < NBAGS; i++)
		big = r->bags[i].cap > big ? r->bags[i].cap : big;
	CHECK(big > 4 * 4096);
	atomic_store(&pk.stage, 2);
	CHECK_EQ(pthread_join(t, NULL), 0);
	for (int i = 0; i < 8 && cmap_collect(m); i++)
		;
	CHECK_EQ(atomic_load(&freed), N);
	for (int i = 0; i < NBAGS; i++)
		CHECK(r->bags[i].cap <= 4 * 4096);
	cmap_free(m);
}

/* A backlog (garbage held back by a parked reader) is freed a budget at a
 * time: no collect, and no operation, frees it all at once.  Writes after
 * the reader leaves free it over several collects; each frees at most
 * 4 x 4096 items (epoch.c, FREE_BUDGET). */
static void test_backlog_incremental(void)
{
	cmap_t *m = new_u32map(CMAP_COPY_ON_WRITE); /* garbage per set */
	struct parked pk = {m, 0};
	pthread_t t;
	CHECK_EQ(pthread_create(&t, NULL, park, &pk), 0);
	while (atomic_load(&pk.stage) != 1)
		;
	uint32_t k = 0;
	uint64_t v = 0;
	enum { N = 100000 };
	for (int i = 0; i < N; i++) /* one retirement each */
		CHECK(cmap_set(m, &k, 4, &v, 8, NULL, NULL) >= 0);
	cmap_gc_stats_t st = {.size = sizeof st};
	CHECK_EQ(cmap_reclaim_stats(m, &st), CMAP_OK);
	CHECK(st.pending >= N - 1);
	atomic_store(&pk.stage, 2);
	CHECK_EQ(pthread_join(t, NULL), 0);
	size_t prev = st.pending, drops = 0, most = 0;
	for (int i = 0; i < 4 * N && prev > 0; i++) {
		CHECK_EQ(cmap_set(m, &k, 4, &v, 8, NULL, NULL), CMAP_REPLACED);
		CHECK_EQ(cmap_reclaim_stats(m, &st), CMAP_OK);
		if (st.pending < prev) {
			drops++;
			most =
			    prev - st.pending > most ? prev - st.pending : most;
		}
		prev = st.pending;
	}
	CHECK(most <= 4 * 4096);
	CHECK(drops >= N / (4 * 4096));
	for (int i = 0; i < 100 && cmap_collect(m); i++)
		;
	CHECK_EQ(cmap_collect(m), 0);
	cmap_free(m);
}

/* Node operations seen through the shape: a bucket splits at BMAX + 1
 * entries, and removes contract it back. */
static void test_split_and_contract(void)
{
	cmap_t *m = new_u32map(0);
	cmap_stats_t st;
	/* Keys k * 32 share level-0 index 0; BMAX of them fit one bucket. */
	for (uint32_t i = 0; i < BMAX; i++) {
		uint32_t k = i * 32;
		uint64_t v = i;
		CHECK_EQ(cmap_set(m, &k, 4, &v, 8, NULL, NULL), CMAP_OK);
	}
	CHECK_EQ(cmap_validate(m, &st), CMAP_OK);
	CHECK_EQ(st.inner_nodes, 1);
	CHECK_EQ(st.buckets, 1);
	CHECK_EQ(st.max_depth, 1);
	uint32_t k = BMAX * 32;
	uint64_t v = 99;
	CHECK_EQ(cmap_set(m, &k, 4, &v, 8, NULL, NULL), CMAP_OK);
	CHECK_EQ(cmap_validate(m, &st), CMAP_OK);
	CHECK_EQ(st.inner_nodes, 2);
	/* Level-1 indexes i & 31: BMAX + 1 buckets, or 32 if some coincide. */
	CHECK_EQ(st.buckets, BMAX + 1 < FANOUT ? BMAX + 1 : FANOUT);
	CHECK_EQ(st.max_depth, 2);
	/* Remove down to BMERGE entries: the level-1 node merges back. */
	for (uint32_t i = 0; i <= BMAX - BMERGE; i++) {
		uint32_t kk = i * 32;
		CHECK_EQ(cmap_remove(m, &kk, 4, NULL, NULL), CMAP_OK);
	}
	CHECK_EQ(cmap_validate(m, &st), CMAP_OK);
	CHECK_EQ(st.entries, BMERGE);
	CHECK_EQ(st.inner_nodes, 1);
	CHECK_EQ(st.buckets, 1);
	/* Keys equal in all 64 hash bits end in one collision bucket below
	 * the last level: use a hasher that ignores the key. */
	cmap_free(m);
}

static uint64_t const_hash(const void *k, size_t n, uint64_t s)
{
	(void)k;
	(void)n;
	(void)s;
	return 0x0123456789abcdefull;
}

static void test_collisions(void)
{
	cmap_config_t c = {0};
	c.key_size = 8;
	c.val_size = 8;
	c.hash = const_hash;
	cmap_t *m = NULL;
	CHECK_EQ(cmap_new(&m, &c), CMAP_OK);
	for (uint64_t k = 0; k < 100; k++)
		CHECK_EQ(cmap_set(m, &k, 8, &k, 8, NULL, NULL), CMAP_OK);
	cmap_stats_t st;
	CHECK_EQ(cmap_validate(m, &st), CMAP_OK);
	CHECK_EQ(st.collision_buckets, 1);
	CHECK_EQ(st.max_depth, LAST_LEVEL + 1);
	CHECK_EQ(st.inner_nodes, LAST_LEVEL + 1);
	for (uint64_t k = 0; k < 100; k++) {
		uint64_t v = 0;
		CHECK_EQ(cmap_get(m, &k, 8, &v, NULL), CMAP_OK);
		CHECK_EQ(v, k);
	}
	for (uint64_t k = 0; k < 100; k++)
		CHECK_EQ(cmap_remove(m, &k, 8, NULL, NULL), CMAP_OK);
	CHECK_EQ(cmap_validate(m, &st), CMAP_OK);
	CHECK_EQ(st.inner_nodes, 1);
	CHECK_EQ(st.entries, 0);
	cmap_free(m);
}

static void test_batch(void)
{
	cmap_t *m = new_u32map(0);
	enum { N = 1000 };
	uint32_t keys[2 * N];
	uint64_t vals[2 * N];
	unsigned char found[2 * N];
	for (uint32_t i = 0; i < N; i++) {
		uint64_t v = (uint64_t)i * 3;
		CHECK_EQ(cmap_set(m, &i, 4, &v, 8, NULL, NULL), CMAP_OK);
	}
	for (uint32_t i = 0; i < 2 * N; i++) {
		keys[i] = i * 7 % (2 * N);
		vals[i] = 12345;
	}
	CHECK_EQ(cmap_get_batch(m, keys, 2 * N, vals, found), N);
	for (uint32_t i = 0; i < 2 * N; i++) {
		CHECK_EQ(found[i], keys[i] < N);
		CHECK_EQ(vals[i], keys[i] < N ? (uint64_t)keys[i] * 3 : 12345);
	}
	CHECK_EQ(cmap_get_batch(m, keys, 0, vals, NULL), 0);
	CHECK_EQ(cmap_get_batch(NULL, keys, 1, vals, NULL), CMAP_EINVAL);
	CHECK_EQ(cmap_get_batch(m, NULL, 1, vals, NULL), CMAP_EINVAL);
	cmap_free(m);
}

/*
 * An answer must not show a write that has not taken effect.  A writer
 * that announced an in-place write or append on a bucket and was then
 * descheduled has not written yet; a copier that freezes the bucket
 * carries the pending write into its copy, so the write takes effect when
 * that copy is published.  An operation that froze the bucket, decided on
 * the carried entry and then changed nothing (an insert finding the key,
 * a cas finding another value) must still publish the copy: answering
 * from the carried entry while the trie keeps the bucket without it
 * would show the key, or the value, and then take it back (a later get
 * misses it).  The paused writer is simulated: a descriptor announced on
 * the bucket, its words never written.
 */
static bucket_t *slot0_bucket(cmap_t *m)
{
	uintptr_t v = ld_relaxed(&m->root->slot[0]) & ~T_FROZEN;
	CHECK(v && is_bucket(v));
	return as_bucket(v);
}

static void announce_paused(cmap_t *m, rec_t *w, bucket_t *b, uint32_t kind,
			    uint32_t i, uint64_t exp, uint64_t val)
{
	CHECK(cmap__desc_take(m, w));
	w->desc->i = i;
	w->desc->kind = kind;
	w->desc->exp = exp;
	w->desc->val = val;
	uint32_t base = ld_relaxed(&b->ipw) & IPW_CAP;
	CHECK(base != 0); /* a bucket with room (appends) */
	st_relaxed(&b->ipw, base | w->didx << IPW_SHIFT);
}

/* A map whose root slot 0 holds one bucket {32: 32, 64: 64} with room. */
static cmap_t *two_key_map(void)
{
	cmap_t *m = new_u32map(0);
	for (uint32_t k = 32; k <= 64; k += 32) {
		uint64_t v = k;
		CHECK_EQ(cmap_set(m, &k, 4, &v, 8, NULL, NULL), CMAP_OK);
	}
	return m;
}

static void test_pending_answers(void)
{
	rec_t w = {0}; /* the paused writer's descriptor holder */
	uint64_t v, cur;
	/* An insert of a key whose append is pending: EXISTS, and then the
	 * key is there. */
	cmap_t *m = two_key_map();
	bucket_t *b = slot0_bucket(m);
	CHECK_EQ(bucket_n(b), 2);
	CHECK(bucket_cap(b) > 2);
	uint32_t k = 96;
	announce_paused(m, &w, b, D_APPEND, 2, k, 7);
	v = 9;
	cur = 0;
	CHECK_EQ(cmap_insert(m, &k, 4, &v, 8, &cur, NULL), CMAP_EXISTS);
	CHECK_EQ(cur, 7);
	cur = 0;
	CHECK_EQ(cmap_get(m, &k, 4, &cur, NULL), CMAP_OK);
	CHECK_EQ(cur, 7);
	CHECK(slot0_bucket(m) != b);
	cmap_free(m);

	/* A cas whose expected value a pending write replaces: MISMATCH
	 * with the pending value, and then the key has that value. */
	m = two_key_map();
	b = slot0_bucket(m);
	k = 32;
	announce_paused(m, &w, b, D_ANY, 0, 0, 42);
	uint64_t exp = 32, des = 5;
	cur = 0;
	CHECK_EQ(cmap_cas(m, &k, 4, &exp, 8, &des, 8, &cur, NULL),
		 CMAP_MISMATCH);
	CHECK_EQ(cur, 42);
	cur = 0;
	CHECK_EQ(cmap_get(m, &k, 4, &cur, NULL), CMAP_OK);
	CHECK_EQ(cur, 42);
	cmap_free(m);
}

int main(void)
{
	test_indexing();
	test_pool();
	test_pool_remote();
	test_epoch();
	test_reap();
	test_reclaim_stats();
	test_bag_shrink();
	test_backlog_incremental();
	test_split_and_contract();
	test_collisions();
	test_batch();
	test_pending_answers();
	printf("test_unit: ok\n");
	return 0;
}
