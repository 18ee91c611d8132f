/*
 * Idle threads (src/epoch.c, "Idle threads"): a thread that stops using a
 * map without exiting must not keep its garbage, its deferred callbacks or
 * its spare pages.  cmap_collect in another thread takes them:
 *  - a writer that replaced values and deferred callbacks, then blocks:
 *    another thread's cmap_collect runs every destructor and callback it
 *    owed (before: they waited for the writer to come back or exit);
 *  - the writer then comes back and carries on with correct results, and
 *    every destructor still runs exactly once by cmap_free;
 *  - writers that pause for random short times while two other threads
 *    collect without pause (steals racing with each other and with the
 *    owners' return and exit, for ThreadSanitizer), in generations that
 *    reuse the records:
 *    own keys exact, no write refused, destructors exactly once.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#include "cmap.h"
#include "testutil.h"

/* Values are ids; each is destroyed once. */
#define IDS (1u << 21)
static _Atomic(uint8_t) dead[IDS];
static atomic_uint next_id = 1;
static atomic_long destroyed, deferred_run;

static void val_dtor(void *item, size_t len, void *ctx)
{
	(void)ctx;
	uint64_t id;
	CHECK_EQ(len, 8);
	memcpy(&id, item, 8);
	CHECK(id > 0 && id < IDS);
	CHECK_EQ(atomic_fetch_add(&dead[id], 1), 0);
	atomic_fetch_add(&destroyed, 1);
}

static void count_deferred(void *p)
{
	(void)p;
	atomic_fetch_add(&deferred_run, 1);
}

static cmap_t *new_map(void)
{
	cmap_config_t c = CMAP_CONFIG_INIT;
	c.key_size = 8;
	c.val_size = 8;
	c.val_dtor = val_dtor;
	cmap_t *m = NULL;
	CHECK_EQ(cmap_new(&m, &c), CMAP_OK);
	return m;
}

static uint64_t fresh_id(void)
{
	uint64_t id = atomic_fetch_add(&next_id, 1);
	CHECK(id < IDS);
	return id;
}

static size_t pending(cmap_t *m)
{
	cmap_gc_stats_t st = {.size = sizeof st};
	CHECK_EQ(cmap_reclaim_stats(m, &st), CMAP_OK);
	return st.pending;
}

/* ---- one writer goes idle ------------------------------------------------ */

enum { KEYS = 64 };

struct idle {
	cmap_t *m;
	long sets, defers;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int phase; /* 1: the writer is idle; 2: it may go on */
	uint64_t val[KEYS];
};

static void writes(struct idle *s, uint64_t *rng)
{
	for (long i = 0; i < s->sets; i++) {
		uint64_t k = rng_next(rng) % KEYS, id = fresh_id(), old = 0;
		int rc = cmap_set(s->m, &k, 8, &id, 8, &old, NULL);
		CHECK(rc == CMAP_OK || rc == CMAP_REPLACED);
		CHECK_EQ(old, rc == CMAP_OK ? 0 : s->val[k]);
		if (rc == CMAP_REPLACED) /* the old value is ours now */
			val_dtor(&old, 8, NULL);
		s->val[k] = id;
		/* and a replace whose old value the map destroys */
		uint64_t id2 = fresh_id();
		CHECK_EQ(cmap_set(s->m, &k, 8, &id2, 8, NULL, NULL),
			 CMAP_REPLACED);
		s->val[k] = id2;
	}
	for (long i = 0; i < s->defers; i++)
		CHECK_EQ(cmap_defer_free(s->m, s, count_deferred), CMAP_OK);
}

static void *idle_writer(void *p)
{
	struct idle *s = p;
	uint64_t rng = 3;
	writes(s, &rng);
	pthread_mutex_lock(&s->mu);
	s->phase = 1;
	pthread_cond_broadcast(&s->cv);
	while (s->phase != 2)
		pthread_cond_wait(&s->cv, &s->mu);
	pthread_mutex_unlock(&s->mu);
	/* Back: every key reads as last written, and writing goes on. */
	for (uint64_t k = 0; k < KEYS; k++) {
		uint64_t v = 0;
		if (s->val[k]) {
			CHECK_EQ(cmap_get(s->m, &k, 8, &v, NULL), CMAP_OK);
			CHECK_EQ(v, s->val[k]);
		}
	}
	writes(s, &rng);
	return NULL;
}

static void test_idle_writer(void)
{
	struct idle s = {.m = new_map(),
			 .sets = scaled(20000),
			 .defers = scaled(5000),
			 .mu = PTHREAD_MUTEX_INITIALIZER,
			 .cv = PTHREAD_COND_INITIALIZER};
	long d0 = atomic_load(&destroyed), f0 = atomic_load(&deferred_run);
	pthread_t t;
	CHECK_EQ(pthread_create(&t, NULL, idle_writer, &s), 0);
	pthread_mutex_lock(&s.mu);
	while (s.phase != 1)
		pthread_cond_wait(&s.cv, &s.mu);
	pthread_mutex_unlock(&s.mu);
	size_t before = pending(s.m);
	CHECK(before > 0);
	int calls = 0;
	while (pending(s.m) && calls < 1000) {
		cmap_collect(s.m);
		calls++;
	}
	/* Everything the idle writer owed has run: each replaced value's
	 * destructor (one per set through the map) and each callback. */
	CHECK_EQ(pending(s.m), 0);
	CHECK_EQ(atomic_load(&deferred_run) - f0, s.defers);
	CHECK_EQ(atomic_load(&destroyed) - d0, 2 * s.sets - KEYS);
	printf("test_idle: an idle writer's %zu pending objects reclaimed by "
	       "another thread in %d cmap_collect calls\n",
	       before, calls);
	pthread_mutex_lock(&s.mu);
	s.phase = 2;
	pthread_cond_broadcast(&s.cv);
	pthread_mutex_unlock(&s.mu);
	CHECK_EQ(pthread_join(t, NULL), 0);
	CHECK_EQ(cmap_validate(s.m, NULL), CMAP_OK);
	CHECK_EQ(cmap_len(s.m), KEYS);
	cmap_free(s.m);
	/* By now every value ever stored was destroyed once (the dead
	 * flags catch twice), and every deferred callback ran. */
	CHECK_EQ(atomic_load(&destroyed) - d0, 4 * s.sets);
	CHECK_EQ(atomic_load(&deferred_run) - f0, 2 * s.defers);
}

/* ---- owners pausing while another thread collects ---------------------- */

enum { PAUSERS = 2, OWN = 128, GENERATIONS = 3 };

struct race {
	cmap_t *m;
	long rounds;
	atomic_int running;
};

static void *pauser(void *p)
{
	struct race *s = p;
	static atomic_uint next;
	unsigned j = atomic_fetch_add(&next, 1); /* new keys per generation */
	uint64_t rng = 11 + j, val[OWN] = {0};
	for (long r = 0; r < s->rounds; r++) {
		for (int i = 0; i < 64; i++) {
			unsigned o = (unsigned)(rng_next(&rng) % OWN);
			uint64_t k = (uint64_t)j << 32 | o, v = 0;
			if (val[o] && rng_next(&rng) % 4 == 0) {
				CHECK_EQ(cmap_remove(s->m, &k, 8, NULL, NULL),
					 CMAP_OK);
				val[o] = 0;
			} else {
				uint64_t id = fresh_id();
				int rc =
				    cmap_set(s->m, &k, 8, &id, 8, NULL, NULL);
				CHECK_EQ(rc, val[o] ? CMAP_REPLACED : CMAP_OK);
				val[o] = id;
			}
			int rc = cmap_get(s->m, &k, 8, &v, NULL);
			CHECK_EQ(rc, val[o] ? CMAP_OK : CMAP_NOT_FOUND);
			if (val[o])
				CHECK_EQ(v, val[o]);
		}
		if (r % 16 == 0)
			CHECK_EQ(cmap_defer_free(s->m, s, count_deferred),
				 CMAP_OK);
		/* Idle for a while, sometimes long enough to be stolen. */
		if (rng_next(&rng) % 3 == 0)
			usleep((useconds_t)(rng_next(&rng) % 2000));
	}
	atomic_fetch_sub(&s->running, 1);
	return NULL;
}

/* A second thread collecting beside the main one: two stealers race for
 * the same idle records (one steal at a time per record: x->stealer). */
static void *collector(void *p)
{
	struct race *s = p;
	long n = 0;
	while (atomic_load(&s->running) > 0) {
		cmap_collect(s->m);
		n++;
	}
	return (void *)(intptr_t)n;
}

static void test_pausers(void)
{
	struct race s = {.m = new_map(), .rounds = scaled(2000)};
	long d0 = atomic_load(&destroyed), f0 = atomic_load(&deferred_run);
	/* Generations of pausers: each one's threads exit while records
	 * may be stolen or being reaped, and the next claim those records
	 * (whose flags must be clean: a write refused here fails). */
	long collects = 0;
	for (int gen = 0; gen < GENERATIONS; gen++) {
		atomic_store(&s.running, PAUSERS);
		pthread_t t[PAUSERS];
		pthread_t c;
		for (int i = 0; i < PAUSERS; i++)
			CHECK_EQ(pthread_create(&t[i], NULL, pauser, &s), 0);
		CHECK_EQ(pthread_create(&c, NULL, collector, &s), 0);
		while (atomic_load(&s.running) > 0) {
			cmap_collect(s.m);
			collects++;
		}
		for (int i = 0; i < PAUSERS; i++)
			CHECK_EQ(pthread_join(t[i], NULL), 0);
		void *cn;
		CHECK_EQ(pthread_join(c, &cn), 0);
		collects += (long)(intptr_t)cn;
	}
	CHECK_EQ(cmap_validate(s.m, NULL), CMAP_OK);
	size_t live = cmap_len(s.m);
	cmap_gc_stats_t st = {.size = sizeof st};
	CHECK_EQ(cmap_reclaim_stats(s.m, &st), CMAP_OK);
	CHECK(st.threads <= 2 * PAUSERS + 2); /* records were reused */
	cmap_free(s.m);
	/* Every value stored was destroyed exactly once (dead flags), and
	 * every deferred callback ran. */
	long defers = GENERATIONS * PAUSERS * ((s.rounds + 15) / 16);
	CHECK_EQ(atomic_load(&deferred_run) - f0, defers);
	printf("test_idle: %d writers pausing, %ld collects by two other "
	       "threads, %zu keys left, %ld values destroyed\n",
	       PAUSERS, collects, live, atomic_load(&destroyed) - d0);
}

int main(void)
{
	test_idle_writer();
	test_pausers();
	/* Every id handed out was destroyed exactly once. */
	for (unsigned id = 1; id < atomic_load(&next_id); id++)
		CHECK_EQ(atomic_load(&dead[id]), 1);
	printf("test_idle: ok\n");
	return 0;
}
