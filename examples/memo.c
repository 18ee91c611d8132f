/*
 * A concurrent memo table: several threads compute f(n) (here the length of
 * the Collatz sequence from n, as text keys) and share results through one
 * map.  A thread looks the key up in place with cmap_get_with; on a miss it
 * computes and publishes with cmap_insert, which stores the result only if
 * no other thread did so first.  Two threads that miss the same key both
 * compute, but only one result is stored and both go on with the stored one
 * (cmap_insert returns CMAP_EXISTS and copies it out for the loser): no
 * result is lost or stored twice.
 *
 * The example checks this itself: each stored result records the thread
 * that stored it, every thread remembers which result it went on with, and
 * at the end each key's stored result must be the one every thread used,
 * and the inserts that won must number exactly the keys.  It exits
 * non-zero on a violation.
 *
 *   build/release/examples/memo [threads]
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmap.h"

#define N	    200000
#define MAX_THREADS 64

/* A stored result: f(n) and who stored it. */
struct result {
	uint64_t steps;
	uint32_t by;
	uint32_t pad; /* zeroed: values are compared and copied as bytes */
};

static cmap_t *memo;
static unsigned nthreads;
/* used[t][n - 1]: the thread whose stored result thread t went on with */
static uint8_t used[MAX_THREADS][N];
static uint64_t won[MAX_THREADS], computed[MAX_THREADS];

static uint64_t collatz_len(uint64_t n)
{
	uint64_t steps = 0;
	while (n != 1) {
		n = n % 2 ? 3 * n + 1 : n / 2;
		steps++;
	}
	return steps;
}

static int key_of(uint64_t n, char *key, size_t size)
{
	return snprintf(key, size, "collatz:%llu", (unsigned long long)n);
}

/* A hit: copy the stored result out of the map while it is borrowed. */
static void read_result(const void *k, size_t kl, const void *v, size_t vl,
			void *ctx)
{
	(void)k;
	(void)kl;
	if (vl == sizeof(struct result))
		memcpy(ctx, v, vl); /* borrowed: valid only during this call */
}

static void fail(const char *what, int rc)
{
	fprintf(stderr, "memo: %s: %s\n", what, cmap_strerror(rc));
	exit(1);
}

static void *worker(void *arg)
{
	unsigned id = (unsigned)(uintptr_t)arg;
	uint64_t sum = 0;
	char key[32];
	for (uint64_t i = 1; i <= N; i++) {
		uint64_t n = (i * 7919 + id * 104729) % N + 1;
		int kl = key_of(n, key, sizeof key);
		struct result r;
		int rc = cmap_get_with(memo, key, (size_t)kl, read_result, &r);
		if (rc == CMAP_NOT_FOUND) {
			/* A miss: compute, then store unless someone was
			 * first.  On CMAP_EXISTS, r is the stored result. */
			struct result mine = {collatz_len(n), id, 0};
			size_t len = sizeof r;
			computed[id]++;
			rc = cmap_insert(memo, key, (size_t)kl, &mine,
					 sizeof mine, &r, &len);
			if (rc == CMAP_OK) {
				r = mine;
				won[id]++;
			} else if (rc != CMAP_EXISTS) {
				fail("cmap_insert", rc);
			} else if (len != sizeof r) {
				fail("cmap_insert: stored length", CMAP_EINVAL);
			}
		} else if (rc != CMAP_OK) {
			fail("cmap_get_with", rc);
		}
		if (r.steps != collatz_len(n)) {
			fprintf(stderr, "memo: wrong result for %llu\n",
				(unsigned long long)n);
			exit(1);
		}
		used[id][n - 1] = (uint8_t)r.by;
		sum += r.steps;
	}
	printf("thread %u: sum %llu, computed %llu, stored %llu of %d\n", id,
	       (unsigned long long)sum, (unsigned long long)computed[id],
	       (unsigned long long)won[id], N);
	return NULL;
}

/* Each key's stored result is the one every thread went on with, and
 * each thread's wins are exactly the results stored under its id. */
static int check(void)
{
	uint64_t stored_by[MAX_THREADS] = {0}, wins = 0;
	char key[32];
	int bad = 0;
	for (uint64_t n = 1; n <= N && bad < 10; n++) {
		int kl = key_of(n, key, sizeof key);
		struct result r;
		size_t len = sizeof r;
		int rc = cmap_get(memo, key, (size_t)kl, &r, &len);
		if (rc != CMAP_OK || len != sizeof r || r.by >= nthreads) {
			fprintf(stderr, "memo: %s missing or garbled\n", key);
			bad++;
			continue;
		}
		stored_by[r.by]++;
		for (unsigned t = 0; t < nthreads; t++)
			if (used[t][n - 1] != r.by) {
				fprintf(stderr,
					"memo: %s: thread %u used the result "
					"of thread %u, but thread %u's is "
					"stored\n",
					key, t, used[t][n - 1], r.by);
				bad++;
			}
	}
	for (unsigned t = 0; t < nthreads; t++) {
		wins += won[t];
		if (won[t] != stored_by[t]) {
			fprintf(stderr,
				"memo: thread %u stored %llu results, %llu "
				"are in the map\n",
				t, (unsigned long long)won[t],
				(unsigned long long)stored_by[t]);
			bad++;
		}
	}
	if (wins != N || cmap_len(memo) != N) {
		fprintf(stderr,
			"memo: %llu inserts won, %zu entries, %d keys\n",
			(unsigned long long)wins, cmap_len(memo), N);
		bad++;
	}
	return bad;
}

int main(int argc, char **argv)
{
	nthreads = argc > 1 ? (unsigned)atoi(argv[1]) : 4;
	if (nthreads < 1 || nthreads > MAX_THREADS)
		nthreads = 4;
	/* key_size and val_size 0: variable-length keys and values */
	cmap_config_t cfg = CMAP_CONFIG_INIT;
	int rc = cmap_new(&memo, &cfg);
	if (rc != CMAP_OK)
		fail("cmap_new", rc);
	pthread_t th[MAX_THREADS];
	for (unsigned i = 0; i < nthreads; i++)
		if (pthread_create(&th[i], NULL, worker, (void *)(uintptr_t)i))
			fail("pthread_create", CMAP_ENOMEM);
	for (unsigned i = 0; i < nthreads; i++)
		pthread_join(th[i], NULL);
	uint64_t dup = 0;
	for (unsigned i = 0; i < nthreads; i++)
		dup += computed[i] - won[i];
	if (check()) {
		fprintf(stderr, "memo: FAILED\n");
		return 1;
	}
	printf("memo holds %zu results (%llu computed twice, none stored "
	       "twice)\n",
	       cmap_len(memo), (unsigned long long)dup);
	cmap_free(memo);
	return 0;
}
