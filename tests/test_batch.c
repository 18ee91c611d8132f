/*
 * cmap_set_batch and cmap_remove_batch: against a reference array (every
 * status, duplicates within a batch, batches that span many groups), bad
 * arguments, and concurrent batches of threads that own disjoint key
 * ranges interleaved with single writes to a shared range.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "cmap.h"
#include "testutil.h"

static uint64_t const_hash(const void *k, size_t len, uint64_t seed)
{
	(void)k, (void)len, (void)seed;
	return 7;
}

static cmap_t *new_map(cmap_hash_fn h)
{
	cmap_config_t c = CMAP_CONFIG_INIT;
	c.key_size = 4;
	c.val_size = 8;
	c.hash = h;
	cmap_t *m = NULL;
	CHECK_EQ(cmap_new(&m, &c), CMAP_OK);
	return m;
}

enum { KEYS = 5000 };

/* Random batches against a reference: statuses, return values, contents. */
static void test_model(cmap_hash_fn hash, long rounds)
{
	cmap_t *m = new_map(hash);
	static uint64_t ref[KEYS];
	static bool has[KEYS];
	memset(has, 0, sizeof has);
	uint64_t s = 42;
	enum { MAXB = 300 };
	uint32_t keys[MAXB];
	uint64_t vals[MAXB];
	int res[MAXB];
	for (long round = 0; round < rounds; round++) {
		uint64_t x = rng_next(&s);
		size_t n = (size_t)(x % MAXB);
		uint32_t span = (x >> 20) & 1 ? 64 : KEYS; /* duplicates */
		bool set = (x >> 10) % 3 != 0;
		for (size_t i = 0; i < n; i++) {
			keys[i] = (uint32_t)(rng_next(&s) % span);
			vals[i] = rng_next(&s);
			res[i] = 99;
		}
		long want = 0;
		long got = set ? cmap_set_batch(m, keys, vals, n, res)
			       : cmap_remove_batch(m, keys, n, res);
		for (size_t i = 0; i < n; i++) {
			uint32_t k = keys[i];
			if (set) {
				CHECK_EQ(res[i],
					 has[k] ? CMAP_REPLACED : CMAP_OK);
				has[k] = true;
				ref[k] = vals[i];
				want++;
			} else {
				CHECK_EQ(res[i],
					 has[k] ? CMAP_OK : CMAP_NOT_FOUND);
				want += has[k];
				has[k] = false;
			}
		}
		CHECK_EQ(got, want);
		if (round % 64 == 0 || round == rounds - 1) {
			size_t len = 0;
			for (uint32_t k = 0; k < KEYS; k++) {
				uint64_t v = 0;
				int rc = cmap_get(m, &k, 4, &v, NULL);
				CHECK_EQ(rc, has[k] ? CMAP_OK : CMAP_NOT_FOUND);
				if (has[k])
					CHECK(v == ref[k]);
				len += has[k];
			}
			CHECK_EQ(cmap_len(m), len);
			CHECK_EQ(cmap_validate(m, NULL), CMAP_OK);
		}
	}
	/* Everything out in one batch that spans many groups. */
	static uint32_t all[KEYS];
	for (uint32_t k = 0; k < KEYS; k++)
		all[k] = k;
	long present = (long)cmap_len(m);
	CHECK_EQ(cmap_remove_batch(m, all, KEYS, NULL), present);
	CHECK_EQ(cmap_len(m), 0);
	CHECK_EQ(cmap_validate(m, NULL), CMAP_OK);
	cmap_free(m);
}

static void test_args(void)
{
	cmap_t *m = new_map(NULL);
	uint32_t k = 1;
	uint64_t v = 2;
	int res = 99;
	CHECK_EQ(cmap_set_batch(NULL, &k, &v, 1, NULL), CMAP_EINVAL);
	CHECK_EQ(cmap_set_batch(m, NULL, &v, 1, NULL), CMAP_EINVAL);
	CHECK_EQ(cmap_set_batch(m, &k, NULL, 1, NULL), CMAP_EINVAL);
	CHECK_EQ(cmap_remove_batch(NULL, &k, 1, NULL), CMAP_EINVAL);
	CHECK_EQ(cmap_remove_batch(m, NULL, 1, NULL), CMAP_EINVAL);
	CHECK_EQ(cmap_set_batch(m, NULL, NULL, 0, NULL), 0);
	CHECK_EQ(cmap_remove_batch(m, NULL, 0, NULL), 0);
	CHECK_EQ(cmap_len(m), 0);
	CHECK_EQ(cmap_set_batch(m, &k, &v, 1, &res), 1);
	CHECK_EQ(res, CMAP_OK);
	cmap_free(m);

	/* Variable-length maps have no batches. */
	cmap_config_t c = CMAP_CONFIG_INIT;
	CHECK_EQ(cmap_new(&m, &c), CMAP_OK);
	CHECK_EQ(cmap_set_batch(m, &k, &v, 1, NULL), CMAP_EINVAL);
	CHECK_EQ(cmap_remove_batch(m, &k, 1, NULL), CMAP_EINVAL);
	CHECK_EQ(cmap_len(m), 0);
	cmap_free(m);
}

/* A batch from inside a compute function writes the map being computed:
 * refused, nothing changed. */
static int batch_inside(const void *key, size_t klen, const void *cur,
			size_t cur_len, const void **val, size_t *vlen,
			void *ctx)
{
	(void)key, (void)klen, (void)cur, (void)cur_len, (void)val, (void)vlen;
	cmap_t *m = ctx;
	uint32_t k = 77;
	uint64_t v = 1;
	CHECK_EQ(cmap_set_batch(m, &k, &v, 1, NULL), CMAP_EINVAL);
	CHECK_EQ(cmap_remove_batch(m, &k, 1, NULL), CMAP_EINVAL);
	return CMAP_COMPUTE_KEEP;
}

static void test_inside_compute(void)
{
	cmap_t *m = new_map(NULL);
	uint32_t k = 5;
	CHECK_EQ(cmap_compute(m, &k, 4, batch_inside, m), CMAP_UNCHANGED);
	CHECK_EQ(cmap_len(m), 0);
	cmap_free(m);
}

/* Threads batch-write keys of their own range and single-write a shared
 * range: afterwards each own key holds its thread's last value. */
enum { T = 4, PER = 4000 };
struct bw {
	cmap_t *m;
	unsigned id;
	long rounds;
	uint64_t last[PER];
	bool live[PER];
};

static void *batch_worker(void *arg)
{
	struct bw *w = arg;
	uint64_t s = 100 + w->id;
	uint32_t keys[64];
	uint64_t vals[64];
	int res[64];
	for (long r = 0; r < w->rounds; r++) {
		uint64_t x = rng_next(&s);
		unsigned n = 1 + (unsigned)(x % 64);
		bool set = (x >> 8) % 4 != 0;
		for (unsigned i = 0; i < n; i++) {
			uint32_t j = (uint32_t)(rng_next(&s) % PER);
			keys[i] = w->id * PER + j;
			vals[i] = rng_next(&s);
		}
		long got = set ? cmap_set_batch(w->m, keys, vals, n, res)
			       : cmap_remove_batch(w->m, keys, n, res);
		CHECK(got >= 0);
		for (unsigned i = 0; i < n; i++) {
			uint32_t j = keys[i] - w->id * PER;
			if (set) {
				CHECK_EQ(res[i],
					 w->live[j] ? CMAP_REPLACED : CMAP_OK);
				w->live[j] = true;
				w->last[j] = vals[i];
			} else {
				CHECK_EQ(res[i],
					 w->live[j] ? CMAP_OK : CMAP_NOT_FOUND);
				w->live[j] = false;
			}
		}
		uint32_t shared = T * PER + (uint32_t)(x >> 40) % 64;
		uint64_t v = x;
		CHECK(cmap_set(w->m, &shared, 4, &v, 8, NULL, NULL) >= 0);
	}
	return NULL;
}

static void test_concurrent(cmap_hash_fn hash)
{
	cmap_t *m = new_map(hash);
	static struct bw w[T];
	pthread_t th[T];
	for (unsigned i = 0; i < T; i++) {
		memset(&w[i], 0, sizeof w[i]);
		w[i].m = m;
		w[i].id = i;
		w[i].rounds = scaled(hash ? 200 : 2000);
		CHECK_EQ(pthread_create(&th[i], NULL, batch_worker, &w[i]), 0);
	}
	for (unsigned i = 0; i < T; i++)
		CHECK_EQ(pthread_join(th[i], NULL), 0);
	size_t len = 0;
	for (unsigned i = 0; i < T; i++)
		for (uint32_t j = 0; j < PER; j++) {
			uint32_t k = i * PER + j;
			uint64_t v = 0;
			int rc = cmap_get(m, &k, 4, &v, NULL);
			CHECK_EQ(rc, w[i].live[j] ? CMAP_OK : CMAP_NOT_FOUND);
			if (w[i].live[j])
				CHECK(v == w[i].last[j]);
			len += w[i].live[j];
		}
	for (uint32_t k = T * PER; k < T * PER + 64; k++)
		len += cmap_get(m, &k, 4, NULL, NULL) == CMAP_OK;
	CHECK_EQ(cmap_len(m), len);
	CHECK_EQ(cmap_validate(m, NULL), CMAP_OK);
	cmap_free(m);
}

/* cmap_insert_batch against a reference: into an empty map (whole
 * subtrees), then into the live map (descents and one-by-one inserts);
 * duplicates within a batch: the first is inserted, the rest EXISTS. */
static void test_bulk_model(cmap_hash_fn hash, uint32_t n)
{
	cmap_t *m = new_map(hash);
	uint32_t *keys = malloc(n * sizeof *keys);
	uint64_t *vals = malloc(n * sizeof *vals);
	int *res = malloc(n * sizeof *res);
	uint64_t *ref = malloc(2 * n * sizeof *ref);
	bool *has = calloc(2 * n, sizeof *has);
	CHECK(keys && vals && res && ref && has);
	uint64_t s = 9;
	size_t len = 0;
	for (int round = 0; round < 3; round++) {
		long want = 0;
		for (uint32_t i = 0; i < n; i++) {
			keys[i] = (uint32_t)(rng_next(&s) % (2 * n));
			vals[i] = rng_next(&s);
			res[i] = 99;
		}
		long got = cmap_insert_batch(m, keys, vals, n, res);
		for (uint32_t i = 0; i < n; i++) {
			uint32_t k = keys[i];
			CHECK_EQ(res[i], has[k] ? CMAP_EXISTS : CMAP_OK);
			if (!has[k]) {
				has[k] = true;
				ref[k] = vals[i];
				want++;
			}
		}
		CHECK_EQ(got, want);
		len += (size_t)want;
		CHECK_EQ(cmap_len(m), len);
		CHECK_EQ(cmap_validate(m, NULL), CMAP_OK);
		for (uint32_t k = 0; k < 2 * n; k++) {
			uint64_t v = 0;
			int rc = cmap_get(m, &k, 4, &v, NULL);
			CHECK_EQ(rc, has[k] ? CMAP_OK : CMAP_NOT_FOUND);
			if (has[k])
				CHECK(v == ref[k]);
		}
	}
	CHECK_EQ(cmap_insert_batch(m, keys, vals, 0, NULL), 0);
	CHECK_EQ(cmap_insert_batch(NULL, keys, vals, 1, NULL), CMAP_EINVAL);
	CHECK_EQ(cmap_insert_batch(m, NULL, vals, 1, NULL), CMAP_EINVAL);
	CHECK_EQ(cmap_insert_batch(m, keys, NULL, 1, NULL), CMAP_EINVAL);
	cmap_free(m);
	free(keys), free(vals), free(res), free(ref), free(has);
}

/* Threads bulk-insert overlapping key sets while others insert one by
 * one: every key is inserted exactly once, and its value is the winner's. */
enum { BT = 4, BKEYS = 20000 };
struct bb {
	cmap_t *m;
	unsigned id;
	long won;
	uint32_t keys[BKEYS];
	uint64_t vals[BKEYS];
	int res[BKEYS];
};

static void *bulk_worker(void *arg)
{
	struct bb *w = arg;
	uint64_t s = 1000 + w->id;
	for (uint32_t i = 0; i < BKEYS; i++) {
		w->keys[i] = (uint32_t)(rng_next(&s) % (2 * BKEYS));
		w->vals[i] = (uint64_t)w->id << 32 | i;
	}
	if (w->id % 2 == 0) {
		w->won =
		    cmap_insert_batch(w->m, w->keys, w->vals, BKEYS, w->res);
	} else {
		for (uint32_t i = 0; i < BKEYS; i++) {
			w->res[i] = cmap_insert(w->m, &w->keys[i], 4,
						&w->vals[i], 8, NULL, NULL);
			w->won += w->res[i] == CMAP_OK;
		}
	}
	return NULL;
}

static void test_bulk_concurrent(void)
{
	cmap_t *m = new_map(NULL);
	static struct bb w[BT];
	pthread_t th[BT];
	for (unsigned i = 0; i < BT; i++) {
		w[i].m = m;
		w[i].id = i;
		w[i].won = 0;
		CHECK_EQ(pthread_create(&th[i], NULL, bulk_worker, &w[i]), 0);
	}
	for (unsigned i = 0; i < BT; i++)
		CHECK_EQ(pthread_join(th[i], NULL), 0);
	long won = 0;
	for (unsigned i = 0; i < BT; i++) {
		won += w[i].won;
		for (uint32_t j = 0; j < BKEYS; j++) {
			CHECK(w[i].res[j] == CMAP_OK ||
			      w[i].res[j] == CMAP_EXISTS);
			uint64_t v = 0;
			CHECK_EQ(cmap_get(m, &w[i].keys[j], 4, &v, NULL),
				 CMAP_OK);
			/* The stored value is the one of an OK insert. */
			struct bb *o = &w[v >> 32];
			uint32_t oi = (uint32_t)v;
			CHECK(v >> 32 < BT && oi < BKEYS);
			CHECK_EQ(o->keys[oi], w[i].keys[j]);
			CHECK_EQ(o->res[oi], CMAP_OK);
		}
	}
	CHECK_EQ(cmap_len(m), won);
	CHECK_EQ(cmap_validate(m, NULL), CMAP_OK);
	cmap_free(m);
}

int main(void)
{
	test_bulk_model(NULL, (uint32_t)scaled(50000));
	test_bulk_model(const_hash, 500);
	test_bulk_concurrent();
	test_args();
	test_inside_compute();
	test_model(NULL, scaled(4000));
	test_model(const_hash, scaled(300));
	test_concurrent(NULL);
	test_concurrent(const_hash);
	printf("test_batch: ok\n");
	return 0;
}
