/*
 * Many small maps: 10,000 maps, 4 threads writing one key into each.  The
 * per-(thread, map) state is made on demand and small (a record, two tiny
 * garbage bags, nursery blocks), so the whole set stays under 64 MiB of RSS;
 * and a thread finds its record in any of its maps in O(1) (every thread
 * reads every map round-robin).  Then threads that write much become ordinary
 * pooled writers, records are reused by new threads, and everything is freed
 * (valgrind and LeakSanitizer check that nothing leaks).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "testutil.h"

#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#else
#define RUNNING_ON_VALGRIND 0
#endif

enum { T = 4 };
static cmap_t **maps;
static long nmaps;
static pthread_barrier_t bar;

static long rss_bytes(void)
{
	long pages = 0, rss = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	CHECK(f != NULL);
	CHECK(fscanf(f, "%ld %ld", &pages, &rss) == 2);
	fclose(f);
	return rss * sysconf(_SC_PAGESIZE);
}

static void *writer(void *arg)
{
	uint32_t t = (uint32_t)(uintptr_t)arg;
	for (long i = 0; i < nmaps; i++) {
		uint32_t k = t;
		uint64_t v = (uint64_t)i << 8 | t;
		CHECK_EQ(cmap_set(maps[i], &k, 4, &v, 8, NULL, NULL), CMAP_OK);
	}
	pthread_barrier_wait(&bar); /* main measures */
	pthread_barrier_wait(&bar);
	/* Every map, round-robin, three times: each lookup of this thread's
	 * record among its nmaps is a hash probe, not a scan. */
	for (int round = 0; round < 3; round++)
		for (long i = 0; i < nmaps; i++) {
			for (uint32_t k = 0; k < T; k++) {
				uint64_t v;
				CHECK_EQ(cmap_get(maps[i], &k, 4, &v, NULL),
					 CMAP_OK);
				CHECK_EQ(v, (uint64_t)i << 8 | k);
			}
		}
	return NULL;
}

/* A thread that writes one map much: it leaves the nursery for its own
 * pool and chunks. */
static void *heavy(void *arg)
{
	cmap_t *m = arg;
	for (uint32_t k = 100; k < 20100; k++) {
		uint64_t v = k;
		CHECK_EQ(cmap_set(m, &k, 4, &v, 8, NULL, NULL), CMAP_OK);
	}
	for (uint32_t k = 100; k < 20100; k += 2)
		CHECK_EQ(cmap_remove(m, &k, 4, NULL, NULL), CMAP_OK);
	return NULL;
}

int main(void)
{
	nmaps = scaled(10000);
	maps = calloc((size_t)nmaps, sizeof *maps);
	CHECK(maps != NULL);
	long rss0 = rss_bytes();
	cmap_config_t c = {0};
	c.key_size = 4;
	c.val_size = 8;
	for (long i = 0; i < nmaps; i++)
		CHECK_EQ(cmap_new(&maps[i], &c), CMAP_OK);
	pthread_barrier_init(&bar, NULL, T + 1);
	pthread_t th[T];
	for (uintptr_t t = 0; t < T; t++)
		CHECK_EQ(pthread_create(&th[t], NULL, writer, (void *)t), 0);
	pthread_barrier_wait(&bar);
	long grown = rss_bytes() - rss0;
	printf("test_manymaps: %ld maps x %d threads: %.1f MiB RSS (%.0f "
	       "bytes per map)\n",
	       nmaps, T, grown / 1048576.0, (double)grown / (double)nmaps);
	/* The bound holds for the real thing only: sanitizers and valgrind
	 * add their own bytes per allocation. */
	bool exact = !RUNNING_ON_VALGRIND && nmaps == 10000;
#if defined(CMAP_ASAN) || defined(CMAP_TSAN)
	exact = false;
#endif
	if (exact)
		CHECK(grown <= 64l << 20);
	/* Each of those threads used only nursery blocks. */
	rec_t *r = NULL;
	for (rec_t *x = ld_relaxed(&maps[0]->recs); x; x = x->next) {
		CHECK(x->pool == NULL);
		CHECK(x->cold <= 2); /* none when its key was appended */
		r = x;
	}
	CHECK(r != NULL);
	pthread_barrier_wait(&bar);
	for (int t = 0; t < T; t++)
		CHECK_EQ(pthread_join(th[t], NULL), 0);
	for (long i = 0; i < nmaps; i++)
		CHECK_EQ(cmap_len(maps[i]), T);

	/* New threads reuse the released records; heavy ones get pools. */
	for (int t = 0; t < 2; t++)
		CHECK_EQ(pthread_create(&th[t], NULL, heavy, maps[t]), 0);
	for (int t = 0; t < 2; t++)
		CHECK_EQ(pthread_join(th[t], NULL), 0);
	for (int i = 0; i < 2; i++) {
		cmap_stats_t st;
		CHECK_EQ(cmap_validate(maps[i], &st), CMAP_OK);
		CHECK_EQ(st.entries, T + 10000);
		CHECK_EQ(st.threads, T); /* released records were reused */
		bool pooled = false;
		for (rec_t *x = ld_relaxed(&maps[i]->recs); x; x = x->next)
			pooled |= x->pool != NULL;
		CHECK(pooled);
		for (uint32_t k = 100; k < 20100; k++) {
			uint64_t v;
			CHECK_EQ(cmap_get(maps[i], &k, 4, &v, NULL),
				 k % 2 ? CMAP_OK : CMAP_NOT_FOUND);
		}
	}
	for (long i = 0; i < nmaps; i++)
		cmap_free(maps[i]);
	free(maps);
	printf("test_manymaps: ok\n");
	return 0;
}
