/*
 * Bounded memory (RSS, /proc/self/statm):
 *  - sequential integer keys with the identity hasher (every bucket grows
 *    in lockstep, so each round frees blocks of a class that is never
 *    asked for again): RSS <= 1.5 x live node bytes + a constant;
 *  - grow then shrink (random keys, 3/4 removed), then cmap_collect:
 *    RSS <= 1.5 x live node bytes + the constant (survivors on sparse
 *    pages are moved off by compaction, src/compact.c);
 *  - a reader stalled in a cmap_get_with callback while a writer sets
 *    (garbage piles up), then the garbage drains: RSS back within 1.5 x
 *    its pre-stall level + 4 MiB (free pages madvised, free chunks
 *    returned, survivors compacted).
 * Under sanitizers and valgrind RSS means nothing: the code paths run, the
 * bounds are not checked.  CMAP_MEMTEST_KEYS and CMAP_MEMTEST_SETS run
 * only the stall at those sizes, CMAP_MEMTEST_SEQ=N only the sequential
 * load of N keys (docs/PERFORMANCE.md's numbers).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#include "cmap.h"
#include "testutil.h"

#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#else
#define RUNNING_ON_VALGRIND 0
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

#define MIB   (1024.0 * 1024.0)
#define SLACK (6l << 20) /* the constant: records, bags, kept pages */

static bool exact;

static long rss_bytes(void)
{
	long pages = 0, rss = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	CHECK(f != NULL);
	CHECK(fscanf(f, "%ld %ld", &pages, &rss) == 2);
	fclose(f);
	return rss * sysconf(_SC_PAGESIZE);
}

static long env_or(const char *name, long dflt)
{
	const char *s = getenv(name);
	return s && *s ? atol(s) : dflt;
}

static cmap_t *new_map(unsigned flags)
{
	cmap_config_t c = {0};
	c.key_size = 8;
	c.val_size = 8;
	c.hash = cmap_hash_u64;
	c.flags = flags;
	cmap_t *m;
	CHECK_EQ(cmap_new(&m, &c), CMAP_OK);
	return m;
}

/* Until every retired object of every thread is freed. */
static void drain(cmap_t *m)
{
	for (int i = 0; i < 1000000; i++) {
		cmap_gc_stats_t st = {.size = sizeof st};
		cmap_collect(m);
		CHECK_EQ(cmap_reclaim_stats(m, &st), CMAP_OK);
		if (!st.pending)
			return;
	}
	CHECK(!"garbage never drained");
}

static size_t live_bytes(cmap_t *m, size_t entries)
{
	cmap_stats_t st;
	CHECK_EQ(cmap_validate(m, &st), CMAP_OK);
	CHECK_EQ(st.entries, entries);
	return st.bytes_in_use;
}

static void check_bound(const char *what, long grown, size_t live, size_t n)
{
	printf("test_memory: %s: %.1f MiB RSS for %.1f MiB live (%.1f vs "
	       "%.1f bytes/entry)\n",
	       what, grown / MIB, live / MIB, (double)grown / (double)n,
	       (double)live / (double)n);
	if (exact)
		CHECK(grown <= 1.5 * (double)live + SLACK);
}

static void sequential(long n)
{
	long rss0 = rss_bytes();
	/* Copy-on-write, so that every set leaves garbage (in place, a
	 * replace leaves none). */
	cmap_t *m = new_map(CMAP_COPY_ON_WRITE);
	for (uint64_t k = 0; k < (uint64_t)n; k++)
		CHECK_EQ(cmap_set(m, &k, 8, &k, 8, NULL, NULL), CMAP_OK);
	drain(m);
	check_bound("sequential identity", rss_bytes() - rss0,
		    live_bytes(m, (size_t)n), (size_t)n);
	cmap_free(m);
}

static void grow_shrink(long n)
{
	long rss0 = rss_bytes();
	cmap_t *m = new_map(0);
	uint64_t s = 42;
	uint64_t *keys = malloc((size_t)n * sizeof *keys);
	CHECK(keys != NULL);
	for (long i = 0; i < n; i++) {
		keys[i] = rng_next(&s);
		CHECK_EQ(cmap_set(m, &keys[i], 8, &i, 8, NULL, NULL), CMAP_OK);
	}
	long peak = rss_bytes() - rss0;
	for (long i = 0; i < n; i++)
		if (i % 4)
			CHECK_EQ(cmap_remove(m, &keys[i], 8, NULL, NULL),
				 CMAP_OK);
	free(keys);
	drain(m);
	long left = (n + 3) / 4;
	long after = rss_bytes() - rss0;
	printf("test_memory: grow-shrink: %.1f MiB RSS at the peak\n",
	       peak / MIB);
	/* The survivors were scattered over sparse pages; cmap_collect's
	 * compaction moved them off (src/compact.c), and the emptied pages
	 * went back to the system (before compaction: 0.75 x the peak). */
	check_bound("grow-shrink", after, live_bytes(m, (size_t)left),
		    (size_t)left);
	cmap_free(m);
}

static atomic_int stage; /* 1: the reader is stalled; 2: let it return */

static void stall_cb(const void *k, size_t kl, const void *v, size_t vl,
		     void *ctx)
{
	(void)k, (void)kl, (void)v, (void)vl, (void)ctx;
	atomic_store(&stage, 1);
	while (atomic_load(&stage) != 2)
		usleep(1000);
}

static void *reader(void *arg)
{
	uint64_t k = 0;
	CHECK_EQ(cmap_get_with(arg, &k, 8, stall_cb, NULL), CMAP_OK);
	return NULL;
}

/* flags: CMAP_COPY_ON_WRITE (every set leaves garbage), or 0: values
 * change in place and a replace leaves none, so a stall costs nothing. */
static void stall(long n, long sets, unsigned flags)
{
	long rss0 = rss_bytes();
	cmap_t *m = new_map(flags);
	for (uint64_t k = 0; k < (uint64_t)n; k++)
		CHECK_EQ(cmap_set(m, &k, 8, &k, 8, NULL, NULL), CMAP_OK);
	drain(m);
	long before = rss_bytes() - rss0;
	pthread_t th;
	CHECK_EQ(pthread_create(&th, NULL, reader, m), 0);
	while (atomic_load(&stage) != 1)
		usleep(1000);
	uint64_t s = 7;
	for (long i = 0; i < sets; i++) {
		uint64_t k = rng_next(&s) % (uint64_t)n, v = (uint64_t)i;
		CHECK_EQ(cmap_set(m, &k, 8, &v, 8, NULL, NULL), CMAP_REPLACED);
	}
	long stalled = rss_bytes() - rss0;
	atomic_store(&stage, 2);
	CHECK_EQ(pthread_join(th, NULL), 0);
	drain(m);
	long after = rss_bytes() - rss0;
	printf("test_memory: stall (%ld keys, %ld sets, %s): %.1f MiB RSS "
	       "before, %.1f stalled, %.1f after the drain\n",
	       n, sets, flags ? "copy-on-write" : "in place", before / MIB,
	       stalled / MIB, after / MIB);
	/* Copy-on-write: once the garbage drained, RSS is back within
	 * 1.5 x its pre-stall level plus a constant: the last versions of the
	 * buckets, written during the stall onto pages that are now mostly
	 * free, are moved off them by compaction (src/compact.c), and free
	 * pages and chunks go back to the system.  In place: nothing grows
	 * at all. */
	if (exact && flags)
		CHECK(after <= before + before / 2 + 4 * (long)MIB);
	if (exact && !flags)
		CHECK(stalled <= before + before / 2 + 4 * (long)MIB &&
		      after <= before + before / 2 + 4 * (long)MIB);
	live_bytes(m, (size_t)n);
	cmap_free(m);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	exact =
	    !RUNNING_ON_VALGRIND && !SANITIZED && !getenv("CMAP_TEST_SCALE");
	if (getenv("CMAP_MEMTEST_SEQ")) { /* one measurement alone */
		sequential(env_or("CMAP_MEMTEST_SEQ", 0));
		return 0;
	}
	if (getenv("CMAP_MEMTEST_KEYS")) {
		stall(env_or("CMAP_MEMTEST_KEYS", 0),
		      env_or("CMAP_MEMTEST_SETS", 0),
		      getenv("CMAP_MEMTEST_INPLACE") ? 0 : CMAP_COPY_ON_WRITE);
		return 0;
	}
	sequential(scaled(1000000));
	grow_shrink(scaled(400000));
	stall(scaled(200000), scaled(1000000), CMAP_COPY_ON_WRITE);
	stall(scaled(200000), scaled(1000000), 0);
	printf("test_memory: ok%s\n", exact ? "" : " (bounds not checked)");
	return 0;
}
