/*
 * Reclamation through the public API:
 *  - every destructor runs exactly once per replaced or removed entry (and
 *    at cmap_free for the rest), never for a value whose ownership went to
 *    the caller, under concurrent writers;
 *  - never while a get_with borrower holds the entry;
 *  - a reader stalled inside an operation delays frees but loses none;
 *  - >= 1000 thread lifetimes reuse thread records;
 *  - cmap_free runs every pending deferred free exactly once.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#include "cmap.h"
#include "testutil.h"

/* ---- exactly once
 * ------------------------------------------------------------ */

#define IDS (1u << 20)
static _Atomic(uint8_t) vdead[IDS], kdead[IDS], taken[IDS];
static _Atomic(uint32_t) next_id = 1;
static _Atomic(uint64_t) borrowed; /* value id currently borrowed, or 0 */

/* Values are ids; keys are (slot, id) pairs so each inserted key is a
 * distinct object to destroy, even when equal to an earlier key. */
struct gkey {
	uint32_t slot, pad;
	uint64_t id;
};

static int gkey_eq(const void *a, const void *b, size_t n)
{
	(void)n;
	return ((const struct gkey *)a)->slot == ((const struct gkey *)b)->slot;
}

static uint64_t gkey_hash(const void *k, size_t n, uint64_t seed)
{
	(void)n;
	uint32_t s = ((const struct gkey *)k)->slot;
	return cmap_hash_xxh3(&s, 4, seed);
}

static void val_dtor(void *item, size_t len, void *ctx)
{
	uint64_t id;
	(void)ctx;
	CHECK_EQ(len, 8);
	memcpy(&id, item, 8);
	CHECK(id > 0 && id < IDS);
	CHECK(atomic_load(&borrowed) != id);
	CHECK_EQ(atomic_fetch_add(&vdead[id], 1), 0);
	CHECK_EQ(atomic_load(&taken[id]), 0);
}

static void key_dtor(void *item, size_t len, void *ctx)
{
	struct gkey k;
	(void)ctx;
	CHECK_EQ(len, sizeof k);
	memcpy(&k, item, sizeof k);
	CHECK(k.id > 0 && k.id < IDS);
	CHECK_EQ(atomic_fetch_add(&kdead[k.id], 1), 0);
}

static cmap_t *gc_map(void)
{
	cmap_config_t c = {0};
	c.key_size = sizeof(struct gkey);
	c.val_size = 8;
	c.hash = gkey_hash;
	c.eq = gkey_eq;
	c.key_dtor = key_dtor;
	c.val_dtor = val_dtor;
	cmap_t *m = NULL;
	CHECK_EQ(cmap_new(&m, &c), CMAP_OK);
	return m;
}

struct gcw {
	cmap_t *m;
	unsigned id;
	long ops;
};

static void *exact_worker(void *arg)
{
	struct gcw *w = arg;
	uint64_t s = 5 + w->id;
	for (long n = 0; n < w->ops; n++) {
		uint64_t x = rng_next(&s);
		struct gkey k = {(uint32_t)(x % 500), 0, 0};
		uint64_t old = 0;
		bool want = (x >> 40) & 1;
		if ((x >> 32) % 3 < 2) {
			/* One odd id for the value, the next for the key. */
			uint64_t v = atomic_fetch_add(&next_id, 2);
			k.id = v + 1;
			CHECK(v < IDS && k.id < IDS);
			int rc = cmap_set(w->m, &k, sizeof k, &v, 8,
					  want ? &old : NULL, NULL);
			CHECK(rc == CMAP_OK || rc == CMAP_REPLACED);
			if (rc == CMAP_REPLACED && want)
				CHECK_EQ(atomic_fetch_add(&taken[old], 1), 0);
			/* A replace keeps the stored key: ours was not
			 * taken, so it is ours to destroy. */
			if (rc == CMAP_REPLACED)
				key_dtor(&k, sizeof k, NULL);
		} else {
			int rc = cmap_remove(w->m, &k, sizeof k,
					     want ? &old : NULL, NULL);
			CHECK(rc == CMAP_OK || rc == CMAP_NOT_FOUND);
			if (rc == CMAP_OK && want)
				CHECK_EQ(atomic_fetch_add(&taken[old], 1), 0);
		}
	}
	return NULL;
}

static void test_exactly_once(void)
{
	cmap_t *m = gc_map();
	enum { W = 4 };
	pthread_t th[W];
	struct gcw w[W];
	for (unsigned i = 0; i < W; i++) {
		w[i] = (struct gcw){m, i, scaled(100000)};
		CHECK_EQ(pthread_create(&th[i], NULL, exact_worker, &w[i]), 0);
	}
	for (unsigned i = 0; i < W; i++)
		CHECK_EQ(pthread_join(th[i], NULL), 0);
	cmap_free(m);
	/* Ids alternate value, key; each was destroyed exactly once unless
	 * its ownership was taken (keys not stored by a replace are destroyed
	 * by the worker). */
	uint32_t end = atomic_load(&next_id);
	for (uint32_t id = 1; id < end; id += 2) {
		CHECK_EQ(atomic_load(&vdead[id]) + atomic_load(&taken[id]), 1);
		CHECK_EQ(atomic_load(&kdead[id + 1]), 1);
	}
}

/* ---- never while borrowed
 * ------------------------------------------------------ */

struct borrow {
	cmap_t *m;
	atomic_int stage; /* 1: reader inside; 2: writer done; 3: reader out */
};

static void hold(const void *k, size_t kl, const void *v, size_t vl, void *ctx)
{
	struct borrow *b = ctx;
	uint64_t id;
	(void)k;
	(void)kl;
	CHECK_EQ(vl, 8);
	memcpy(&id, v, 8);
	atomic_store(&borrowed, id);
	atomic_store(&b->stage, 1);
	while (atomic_load(&b->stage) != 2)
		usleep(100);
	/* The bytes stay intact while borrowed, though the entry is gone. */
	uint64_t again;
	memcpy(&again, v, 8);
	CHECK(again == id);
	atomic_store(&borrowed, 0);
}

static void *borrower(void *arg)
{
	struct borrow *b = arg;
	struct gkey k = {7, 0, 0};
	CHECK_EQ(cmap_get_with(b->m, &k, sizeof k, hold, b), CMAP_OK);
	atomic_store(&b->stage, 3);
	return NULL;
}

static void test_borrow(void)
{
	cmap_t *m = gc_map();
	struct borrow b = {m, 0};
	struct gkey k = {7, 0, atomic_fetch_add(&next_id, 1)};
	uint64_t v = atomic_fetch_add(&next_id, 1);
	CHECK_EQ(cmap_set(m, &k, sizeof k, &v, 8, NULL, NULL), CMAP_OK);
	pthread_t th;
	CHECK_EQ(pthread_create(&th, NULL, borrower, &b), 0);
	while (atomic_load(&b.stage) != 1)
		usleep(100);
	/* Replace, remove and churn while the value is borrowed. */
	for (int i = 0; i < 3000; i++) {
		struct gkey k2 = {7 + (uint32_t)i % 300, 0,
				  atomic_fetch_add(&next_id, 1)};
		uint64_t v2 = atomic_fetch_add(&next_id, 1);
		CHECK(cmap_set(m, &k2, sizeof k2, &v2, 8, NULL, NULL) >= 0);
		if (i % 3 == 0)
			CHECK(cmap_remove(m, &k2, sizeof k2, NULL, NULL) >= 0);
		cmap_collect(m);
	}
	CHECK_EQ(atomic_load(&vdead[v]), 0);
	atomic_store(&b.stage, 2);
	while (atomic_load(&b.stage) != 3)
		usleep(100);
	CHECK_EQ(pthread_join(th, NULL), 0);
	for (int i = 0; i < 10 && !atomic_load(&vdead[v]); i++)
		cmap_collect(m);
	CHECK_EQ(atomic_load(&vdead[v]), 1);
	cmap_free(m);
}

/* ---- stalled reader
 * ------------------------------------------------------------- */

static _Atomic(uint32_t) frees;
static _Atomic(uint8_t) freed_obj[20000];

static void count_free(void *p)
{
	size_t i = (size_t)((_Atomic(uint8_t) *)p - freed_obj);
	CHECK(i < 20000);
	CHECK_EQ(atomic_fetch_add(&freed_obj[i], 1), 0);
	atomic_fetch_add(&frees, 1);
}

static void test_stalled_reader(void)
{
	cmap_t *m = gc_map();
	struct gkey k = {7, 0, atomic_fetch_add(&next_id, 1)};
	uint64_t v = atomic_fetch_add(&next_id, 1);
	CHECK_EQ(cmap_set(m, &k, sizeof k, &v, 8, NULL, NULL), CMAP_OK);
	struct borrow b = {m, 0};
	pthread_t th;
	CHECK_EQ(pthread_create(&th, NULL, borrower, &b), 0);
	while (atomic_load(&b.stage) != 1)
		usleep(100);
	const int n = 10000;
	for (int i = 0; i < n; i++) {
		CHECK_EQ(cmap_defer_free(m, &freed_obj[i], count_free),
			 CMAP_OK);
		if (i % 100 == 0)
			CHECK(cmap_collect(m) > 0);
	}
	for (int i = 0; i < 50; i++)
		CHECK(cmap_collect(m) >= (size_t)n);
	CHECK_EQ(atomic_load(&frees), 0);
	cmap_stats_t st;
	CHECK_EQ(cmap_validate(m, &st), CMAP_OK);
	CHECK(st.garbage_pending >= (size_t)n);
	atomic_store(&b.stage, 2);
	CHECK_EQ(pthread_join(th, NULL), 0);
	for (int i = 0; i < 10 && cmap_collect(m); i++)
		;
	CHECK_EQ(cmap_collect(m), 0);
	CHECK_EQ(atomic_load(&frees), (uint32_t)n);
	/* Deferred but never collected: cmap_free runs them. */
	for (int i = n; i < n + 100; i++)
		CHECK_EQ(cmap_defer_free(m, &freed_obj[i], count_free),
			 CMAP_OK);
	CHECK_EQ(cmap_defer_free(m, NULL, count_free), CMAP_EINVAL);
	CHECK_EQ(cmap_defer_free(m, &freed_obj[0], NULL), CMAP_EINVAL);
	CHECK_EQ(cmap_defer_free(NULL, &freed_obj[0], count_free), CMAP_EINVAL);
	cmap_free(m);
	CHECK_EQ(atomic_load(&frees), (uint32_t)n + 100);
}

/* ---- thread lifetimes
 * -------------------------------------------------------------- */

struct life {
	cmap_t *m;
	uint32_t base;
	bool explicit_exit;
};

static void *short_life(void *arg)
{
	struct life *l = arg;
	for (uint32_t i = 0; i < 200; i++) {
		uint32_t k = l->base + i % 50;
		uint64_t v = i;
		CHECK(cmap_set(l->m, &k, 4, &v, 8, NULL, NULL) >= 0);
		CHECK_EQ(cmap_get(l->m, &k, 4, &v, NULL), CMAP_OK);
		if (i % 3 == 0)
			CHECK_EQ(cmap_remove(l->m, &k, 4, NULL, NULL), CMAP_OK);
	}
	if (l->explicit_exit)
		cmap_thread_exit();
	return NULL;
}

static void test_lifetimes(void)
{
	cmap_config_t c = {0};
	c.key_size = 4;
	c.val_size = 8;
	cmap_t *m = NULL;
	CHECK_EQ(cmap_new(&m, &c), CMAP_OK);
	enum { WAVE = 4 };
	const int waves = (int)(scaled(1200) / WAVE) + 1;
	struct life l[WAVE];
	pthread_t th[WAVE];
	for (int w = 0; w < waves; w++) {
		for (unsigned i = 0; i < WAVE; i++) {
			l[i] = (struct life){m, (uint32_t)(w * WAVE + i) * 1000,
					     (w + i) % 2 == 0};
			CHECK_EQ(
			    pthread_create(&th[i], NULL, short_life, &l[i]), 0);
		}
		for (unsigned i = 0; i < WAVE; i++)
			CHECK_EQ(pthread_join(th[i], NULL), 0);
	}
	/* Each thread leaves keys whose i % 3 != 0 last op was a set. */
	size_t want = 0;
	for (uint32_t i = 150; i < 200; i++) {
		uint32_t j = i % 50;
		bool last_set = true;
		for (uint32_t t = i; t < 200; t += 50)
			last_set = t % 3 != 0;
		(void)j;
		want += last_set;
	}
	want *= (size_t)waves * WAVE;
	CHECK_EQ(cmap_len(m), want);
	cmap_stats_t st;
	CHECK_EQ(cmap_validate(m, &st), CMAP_OK);
	CHECK_EQ(st.entries, want);
	/* Records are reused: never more than the threads alive at once plus
	 * this one. */
	CHECK(st.threads <= WAVE + 1);
	cmap_free(m);
}

int main(void)
{
	test_exactly_once();
	test_borrow();
	test_stalled_reader();
	test_lifetimes();
	printf("test_gc: ok\n");
	return 0;
}
