/*
 * The CMAP_TYPED read-modify-write wrappers: name_insert, name_replace,
 * name_cas, name_remove_if and name_update (its trampoline: the copy of
 * the current value, the zeroed *out of an absent key, every action, the
 * refused write from inside fn) and name_foreach, single-threaded against
 * the documented statuses, then from several threads (counters through update
 * and through a cas loop, racing inserts of which exactly one wins).
 */
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "cmap.h"
#include "testutil.h"

CMAP_TYPED(tm, uint32_t, uint64_t)

/* A struct value: copied in and out whole. */
struct pt {
	uint32_t x, y;
};
CMAP_TYPED(ptm, uint64_t, struct pt)

struct upd {
	int action;
	uint64_t set_to;
	int calls;
	int saw_absent;
	uint64_t saw;
	tm_t *write_back; /* non-NULL: try to write the map from fn */
	int write_rc;
};

static int upd_fn(uint32_t k, const uint64_t *cur, uint64_t *out, void *ctx)
{
	struct upd *u = ctx;
	u->calls++;
	u->saw_absent = cur == NULL;
	if (cur) {
		u->saw = *cur;
		CHECK_EQ(*out, *cur); /* *out starts as a copy of *cur */
	} else {
		CHECK_EQ(*out, 0); /* zero bytes when absent */
	}
	if (u->write_back) {
		u->write_rc = tm_set(u->write_back, k, 1, NULL);
		/* reads are allowed */
		CHECK(tm_get(u->write_back, k, NULL) >= 0);
	}
	*out = u->set_to;
	return u->action;
}

static void single(void)
{
	tm_t *m = NULL;
	uint64_t v = 0, cur = 77;
	CHECK_EQ(tm_new(&m, cmap_hash_u32), CMAP_OK);

	/* insert */
	CHECK_EQ(tm_insert(m, 1, 10, &cur), CMAP_OK);
	CHECK_EQ(cur, 77); /* untouched when inserted */
	CHECK_EQ(tm_insert(m, 1, 11, &cur), CMAP_EXISTS);
	CHECK_EQ(cur, 10);
	CHECK_EQ(tm_insert(m, 1, 12, NULL), CMAP_EXISTS);
	CHECK_EQ(tm_get(m, 1, &v), CMAP_OK);
	CHECK_EQ(v, 10);

	/* replace */
	cur = 77;
	CHECK_EQ(tm_replace(m, 2, 20, &cur), CMAP_NOT_FOUND);
	CHECK_EQ(cur, 77);
	CHECK_EQ(tm_get(m, 2, NULL), CMAP_NOT_FOUND);
	CHECK_EQ(tm_replace(m, 1, 13, &cur), CMAP_REPLACED);
	CHECK_EQ(cur, 10);
	CHECK_EQ(tm_replace(m, 1, 14, NULL), CMAP_REPLACED);
	CHECK_EQ(tm_get(m, 1, &v), CMAP_OK);
	CHECK_EQ(v, 14);

	/* cas */
	cur = 77;
	CHECK_EQ(tm_cas(m, 2, 0, 1, &cur), CMAP_NOT_FOUND);
	CHECK_EQ(cur, 77);
	CHECK_EQ(tm_cas(m, 1, 13, 15, &cur), CMAP_MISMATCH);
	CHECK_EQ(cur, 14);
	CHECK_EQ(tm_cas(m, 1, 13, 15, NULL), CMAP_MISMATCH);
	CHECK_EQ(tm_cas(m, 1, 14, 15, &cur), CMAP_REPLACED);
	CHECK_EQ(tm_get(m, 1, &v), CMAP_OK);
	CHECK_EQ(v, 15);

	/* remove_if */
	CHECK_EQ(tm_remove_if(m, 2, 0), CMAP_NOT_FOUND);
	CHECK_EQ(tm_remove_if(m, 1, 14), CMAP_MISMATCH);
	CHECK_EQ(tm_len(m), 1);
	CHECK_EQ(tm_remove_if(m, 1, 15), CMAP_OK);
	CHECK_EQ(tm_len(m), 0);
	CHECK_EQ(tm_get(m, 1, NULL), CMAP_NOT_FOUND);

	/* update: every action on an absent and a present key */
	struct upd u = {CMAP_COMPUTE_KEEP, 5, 0, 0, 0, NULL, 0};
	CHECK_EQ(tm_update(m, 3, upd_fn, &u), CMAP_UNCHANGED);
	CHECK(u.calls == 1 && u.saw_absent);
	CHECK_EQ(tm_len(m), 0);
	u.action = CMAP_COMPUTE_REMOVE;
	CHECK_EQ(tm_update(m, 3, upd_fn, &u), CMAP_UNCHANGED);
	u.action = CMAP_COMPUTE_ABORT;
	CHECK_EQ(tm_update(m, 3, upd_fn, &u), CMAP_ABORTED);
	CHECK_EQ(tm_len(m), 0);
	u.action = CMAP_COMPUTE_SET;
	CHECK_EQ(tm_update(m, 3, upd_fn, &u), CMAP_OK);
	CHECK_EQ(tm_get(m, 3, &v), CMAP_OK);
	CHECK_EQ(v, 5);
	u.set_to = 6;
	CHECK_EQ(tm_update(m, 3, upd_fn, &u), CMAP_REPLACED);
	CHECK(!u.saw_absent && u.saw == 5);
	CHECK_EQ(tm_get(m, 3, &v), CMAP_OK);
	CHECK_EQ(v, 6);
	u.action = CMAP_COMPUTE_KEEP;
	u.set_to = 7;
	CHECK_EQ(tm_update(m, 3, upd_fn, &u), CMAP_UNCHANGED);
	u.action = CMAP_COMPUTE_ABORT;
	CHECK_EQ(tm_update(m, 3, upd_fn, &u), CMAP_ABORTED);
	CHECK_EQ(tm_get(m, 3, &v), CMAP_OK);
	CHECK_EQ(v, 6);
	u.action = 42; /* not an action */
	CHECK_EQ(tm_update(m, 3, upd_fn, &u), CMAP_EINVAL);
	CHECK_EQ(tm_get(m, 3, &v), CMAP_OK);
	CHECK_EQ(v, 6);
	/* a write to the map from fn is refused; the answer still counts */
	u.action = CMAP_COMPUTE_SET;
	u.set_to = 8;
	u.write_back = m;
	CHECK_EQ(tm_update(m, 3, upd_fn, &u), CMAP_REPLACED);
	CHECK_EQ(u.write_rc, CMAP_EINVAL);
	CHECK_EQ(tm_get(m, 3, &v), CMAP_OK);
	CHECK_EQ(v, 8);
	u.write_back = NULL;
	u.action = CMAP_COMPUTE_REMOVE;
	u.calls = 0;
	CHECK_EQ(tm_update(m, 3, upd_fn, &u), CMAP_REMOVED);
	CHECK_EQ(u.calls, 1);
	CHECK_EQ(tm_len(m), 0);
	CHECK_EQ(tm_update(m, 3, NULL, &u), CMAP_EINVAL);
	CHECK_EQ(cmap_validate(tm_map(m), NULL), CMAP_OK);
	tm_free(m);
}

static int pt_fn(uint64_t k, const struct pt *cur, struct pt *out, void *ctx)
{
	(void)ctx;
	if (!cur) {
		out->x = (uint32_t)k;
		out->y = 1;
	} else {
		out->y++;
	}
	return CMAP_COMPUTE_SET;
}

static void struct_values(void)
{
	ptm_t *m = NULL;
	struct pt p = {1, 2}, q = {3, 4}, got;
	CHECK_EQ(ptm_new(&m, NULL), CMAP_OK);
	CHECK_EQ(ptm_insert(m, 9, p, NULL), CMAP_OK);
	CHECK_EQ(ptm_insert(m, 9, q, &got), CMAP_EXISTS);
	CHECK(got.x == 1 && got.y == 2);
	CHECK_EQ(ptm_cas(m, 9, q, p, &got), CMAP_MISMATCH);
	CHECK_EQ(ptm_cas(m, 9, p, q, NULL), CMAP_REPLACED);
	CHECK_EQ(ptm_replace(m, 9, p, &got), CMAP_REPLACED);
	CHECK(got.x == 3 && got.y == 4);
	for (int i = 0; i < 5; i++)
		CHECK_EQ(ptm_update(m, 10, pt_fn, NULL),
			 i ? CMAP_REPLACED : CMAP_OK);
	CHECK_EQ(ptm_get(m, 10, &got), CMAP_OK);
	CHECK(got.x == 10 && got.y == 5);
	CHECK_EQ(ptm_remove_if(m, 10, got), CMAP_OK);
	CHECK_EQ(ptm_len(m), 1);
	ptm_free(m);
}

struct sum {
	uint64_t keys, vals;
	long calls, stop_at;
};

static int sum_fn(uint32_t k, uint64_t v, void *ctx)
{
	struct sum *s = ctx;
	s->keys += k;
	s->vals += v;
	return ++s->calls == s->stop_at;
}

static void foreach (void)
{
	tm_t *m = NULL;
	struct sum s = {0, 0, 0, 0};
	CHECK_EQ(tm_new(&m, NULL), CMAP_OK);
	CHECK_EQ(tm_foreach(m, sum_fn, &s), 0);
	CHECK_EQ(s.calls, 0);
	for (uint32_t k = 1; k <= 1000; k++)
		CHECK_EQ(tm_set(m, k, (uint64_t)k * 3, NULL), CMAP_OK);
	CHECK_EQ(tm_foreach(m, sum_fn, &s), 1000);
	CHECK_EQ(s.keys, 500500);
	CHECK_EQ(s.vals, 3 * 500500);
	/* a nonzero answer stops the walk; that call counts */
	s = (struct sum){0, 0, 0, 10};
	CHECK_EQ(tm_foreach(m, sum_fn, &s), 10);
	CHECK_EQ(s.calls, 10);
	CHECK_EQ(tm_foreach(m, NULL, &s), CMAP_EINVAL);
	tm_free(m);
}

/* ---- threads ------------------------------------------------------------ */

#define THREADS 4
#define KEYS	64

static tm_t *shared;
static long rounds;
static long insert_wins[THREADS];

static int inc_fn(uint32_t k, const uint64_t *cur, uint64_t *out, void *ctx)
{
	(void)k;
	(void)ctx;
	*out = cur ? *cur + 1 : 1;
	return CMAP_COMPUTE_SET;
}

static void *counter_thread(void *arg)
{
	long id = (long)(intptr_t)arg;
	uint64_t s = (uint64_t)id + 1;
	for (long i = 0; i < rounds; i++) {
		uint32_t k = (uint32_t)(rng_next(&s) % KEYS);
		if (i & 1) {
			CHECK(tm_update(shared, k, inc_fn, NULL) >= 0);
			continue;
		}
		/* the same increment as a cas loop (on key + KEYS) */
		uint64_t cur = 0;
		int rc = tm_insert(shared, k + KEYS, 1, &cur);
		while (rc == CMAP_EXISTS || rc == CMAP_MISMATCH)
			rc = tm_cas(shared, k + KEYS, cur, cur + 1, &cur);
		if (rc != CMAP_OK) /* (the status shown if it is neither) */
			CHECK_EQ(rc, CMAP_REPLACED);
	}
	/* racing inserts: one winner per key */
	for (uint32_t k = 0; k < KEYS; k++) {
		uint64_t cur = 0;
		int rc = tm_insert(shared, 1000 + k, (uint64_t)id, &cur);
		if (rc == CMAP_OK)
			insert_wins[id]++;
		else
			CHECK_EQ(rc, CMAP_EXISTS);
	}
	return NULL;
}

static void threads(void)
{
	pthread_t th[THREADS];
	rounds = scaled(100000);
	CHECK_EQ(tm_new(&shared, NULL), CMAP_OK);
	for (long i = 0; i < THREADS; i++)
		CHECK(pthread_create(&th[i], NULL, counter_thread,
				     (void *)(intptr_t)i) == 0);
	for (int i = 0; i < THREADS; i++)
		CHECK(pthread_join(th[i], NULL) == 0);
	uint64_t total = 0, v;
	for (uint32_t k = 0; k < 2 * KEYS; k++)
		if (tm_get(shared, k, &v) == CMAP_OK)
			total += v;
	CHECK_EQ(total, (uint64_t)rounds * THREADS);
	long wins = 0;
	for (int i = 0; i < THREADS; i++)
		wins += insert_wins[i];
	CHECK_EQ(wins, KEYS);
	CHECK_EQ(cmap_validate(tm_map(shared), NULL), CMAP_OK);
	tm_free(shared);
}

int main(void)
{
	single();
	struct_values();
	foreach ()
		;
	threads();
	puts("test_typed: ok");
	return 0;
}
