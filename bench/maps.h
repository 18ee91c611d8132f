/*
 * The maps cmap-perf can drive: every one implements this interface for
 * u32 keys -> u64 values, so that all run the very same workload code.
 * Adapters for peers live in bench/map_*.c / *.cc and are compiled only
 * when their library is installed (CMake defines CMAP_BENCH_HAVE_*).
 */
#ifndef CMAP_BENCH_MAPS_H
#define CMAP_BENCH_MAPS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Called by iterate for each entry. */
typedef void (*bench_visit_fn)(uint32_t k, uint64_t v, void *ctx);

struct bench_map {
	const char *name; /* for --map */
	const char *desc; /* one line for --list */
	/* n: the number of keys the run will load (a sizing hint). */
	void *(*create)(uint64_t n);
	void (*destroy)(void *m);
	/* Every thread calls enter before its first operation and leave
	 * after its last one (RCU registration); may be NULL. */
	void (*enter)(void *m);
	void (*leave)(void *m);
	/* Called by every worker every QUIESCE_EVERY operations (QSBR's
	 * quiescent state); may be NULL. */
	void (*quiesce)(void *m);
	/* 1: inserted, 0: replaced, < 0: error. */
	int (*set)(void *m, uint32_t k, uint64_t v);
	/* 1: found (*v set), 0: not found. */
	int (*get)(void *m, uint32_t k, uint64_t *v);
	/* 1: removed, 0: not found. */
	int (*remove)(void *m, uint32_t k);
	size_t (*len)(void *m);

	/* Optional operations, NULL where the map has no such operation (or
	 * none that is atomic): the workloads that need one are then skipped
	 * for this map, with a message.  Threads call enter/leave and quiesce
	 * around them as around the others. */
	/* counter: add d to k's value in one atomic read-modify-write,
	 * inserting d when k is absent.  1: inserted, 0: updated, < 0: error.
	 */
	int (*incr)(void *m, uint32_t k, uint64_t d);
	/* insert if absent: 1: inserted, 0: k was present (nothing changed),
	 * < 0: error. */
	int (*insert)(void *m, uint32_t k, uint64_t v);
	/* iterate: call fn once for every entry; returns the number visited
	 * or < 0.  Called by a thread between its enter and leave. */
	long (*iterate)(void *m, bench_visit_fn fn, void *ctx);
	/* Nonzero: iterate may run while other threads write, and visits
	 * every key present throughout the walk exactly once (it may block
	 * the writers meanwhile: libcuckoo's lock_table does). */
	int iterate_concurrent;
};

#define QUIESCE_EVERY 64

/* The integer-key hash every peer hash table uses (and cmap with
 * --hasher mix): the murmur3 / splitmix64 64-bit finaliser. */
static inline uint64_t bench_mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return x;
}

/* NULL-terminated list of the maps compiled into this binary. */
extern const struct bench_map *const bench_maps[];

extern const struct bench_map bench_map_striped;
#ifdef CMAP_BENCH_HAVE_URCU
extern const struct bench_map bench_map_urcu_qsbr;
extern const struct bench_map bench_map_urcu_memb;
#endif
#ifdef CMAP_BENCH_HAVE_CUCKOO
extern const struct bench_map bench_map_cuckoo;
#endif
#ifdef CMAP_BENCH_HAVE_TBB
extern const struct bench_map bench_map_tbb;
#endif
#ifdef CMAP_BENCH_HAVE_CDS
extern const struct bench_map bench_map_feldman;
#endif

#ifdef __cplusplus
}
#endif
#endif
