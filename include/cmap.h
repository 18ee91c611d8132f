/*
 * cmap — a concurrent, lock-free hash map for C11.
 *
 * One map, many threads: any number of threads may call cmap_set, cmap_get,
 * cmap_get_with and cmap_remove on the same map at the same time, with no
 * locks and no per-map concurrency level.  The map is a hash array mapped
 * trie whose inner nodes are updated in place with compare-and-swap and
 * whose leaves ("buckets") are replaced copy-on-write (in maps with 8-byte
 * values and no value destructor, a replace writes the value in place
 * instead: see CMAP_COPY_ON_WRITE).  Memory
 * is reclaimed with the map's own epoch-based scheme (src/epoch.c).
 *
 * Guarantees (see docs/DESIGN.md for the linearization points):
 *  1. Every operation on a map is linearizable.
 *  2. cmap_get and cmap_get_with are wait-free, perform no atomic
 *     read-modify-write and no full memory fence, and write only the calling
 *     thread's own (cache-line padded) record.  The no-fence part needs
 *     membarrier(2) (Linux 4.14+); without it, or once it fails, each
 *     operation pays one fence (see "Environment").
 *  3. cmap_set and cmap_remove are lock-free: a retry happens only because
 *     another thread's update succeeded.
 *  4. A successful cmap_set/cmap_remove happens-before any operation that
 *     observes its effect (release on publication, acquire on lookup).
 *  5. A value reached through cmap_get_with stays valid, unchanged, until the
 *     callback returns, even if the entry is replaced or removed meanwhile
 *     (in a map whose values change in place, the callback gets a copy).
 *
 * Threads.  A thread joins a map on its first call (one short process-wide
 * mutex, once per thread and map) and leaves it at thread exit or when it
 * calls cmap_thread_exit().  There is no limit on the number of threads and
 * thread records are reused, so short-lived threads do not leak.
 *
 * fork().  The child may go on using the maps it inherited, and create new
 * ones.  The parent's other threads do not exist in the child: what they
 * were doing is abandoned at fork time (their replaced or removed entries'
 * destructors and their deferred callbacks run in the parent only, and
 * cmap_len may be off by the writes they were in the middle of).
 * libcmap.so may be dlclose'd once every map is freed, even while threads
 * that used it live on.
 *
 * Environment.  The first cmap_new registers the process for
 * membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED); reclamation then interrupts
 * the CPUs running the process's threads about once per 4096 retirements.
 * CMAP_NO_MEMBARRIER=1 in the environment (read once, at that first
 * cmap_new) opts out: operations fence instead.  Programs that will forbid
 * membarrier later (a seccomp filter) should set it; if membarrier fails at
 * run time anyway, cmap switches every thread to fencing by itself, and
 * garbage waits until each thread using a map has made one more call or
 * exited.
 *
 * Ownership.  The map owns what is in it.  Keys and values are copied in;
 * callers get copies back (cmap_get) or borrows that live only inside a
 * cmap_get_with callback.  When an entry is replaced or removed, its key and
 * value are destroyed (config.key_dtor / config.val_dtor) after every reader
 * that could still see them is done — unless the caller asked for the old
 * value, in which case ownership of that value passes to the caller.
 *
 * Errors.  Functions that can fail return an int: CMAP_OK (0) or another
 * non-negative outcome code on success, a negative CMAP_E* code on failure.
 * A failed call changes nothing.  Bad arguments never crash the map.
 */
#ifndef CMAP_H
#define CMAP_H

#include <stddef.h>
#include <stdint.h>
#include <string.h> /* memcpy, memset: CMAP_TYPED */

#ifdef __cplusplus
extern "C" {
#endif

/* The version of this header.  CMakeLists.txt reads these three lines: they
 * are the project's one version number (library, soname, packages). */
#define CMAP_VERSION_MAJOR 0
#define CMAP_VERSION_MINOR 2
#define CMAP_VERSION_PATCH 0
#define CMAP__STR(x)	   #x
#define CMAP__XSTR(x)	   CMAP__STR(x)
/* "MAJOR.MINOR.PATCH" */
#define CMAP_VERSION_STRING                                                    \
	CMAP__XSTR(CMAP_VERSION_MAJOR)                                         \
	"." CMAP__XSTR(CMAP_VERSION_MINOR) "." CMAP__XSTR(CMAP_VERSION_PATCH)
/* MAJOR * 10000 + MINOR * 100 + PATCH: ordered, for #if and comparisons */
#define CMAP_VERSION_NUMBER                                                    \
	(CMAP_VERSION_MAJOR * 10000 + CMAP_VERSION_MINOR * 100 +               \
	 CMAP_VERSION_PATCH)

/* The version of the library actually linked or loaded, as
 * CMAP_VERSION_STRING and CMAP_VERSION_NUMBER were when it was built.  A
 * program built against an older header of the same major version runs
 * with a newer library; these tell it which one it got. */
const char *cmap_version(void);
int cmap_version_number(void);

/* ---- status codes ---------------------------------------------------- */

/* X(name, value, message).  One list generates the enum and cmap_strerror. */
#define CMAP_STATUS_MAP(X)                                                     \
	X(OK, 0, "success (set: a new entry was inserted)")                    \
	X(REPLACED, 1, "set replaced an existing entry")                       \
	X(NOT_FOUND, 2, "no entry with this key")                              \
	X(EXISTS, 3, "an entry with this key exists; nothing changed")         \
	X(MISMATCH, 4,                                                         \
	  "the current value is not the expected one; nothing changed")        \
	X(REMOVED, 5, "compute removed the entry")                             \
	X(UNCHANGED, 6, "compute left the map unchanged")                      \
	X(ABORTED, 7, "compute aborted; nothing changed")                      \
	X(EINVAL, -1, "invalid argument")                                      \
	X(ENOMEM, -2, "out of memory")                                         \
	X(EKEYLEN, -3, "key length does not match the map's fixed key size")   \
	X(EVALLEN, -4,                                                         \
	  "value length does not match the map's fixed value size")            \
	X(ERANGE, -5, "output buffer too small; needed length reported")

enum cmap_status {
#define CMAP__ENUM(name, val, msg) CMAP_##name = (val),
	CMAP_STATUS_MAP(CMAP__ENUM)
#undef CMAP__ENUM
};

/* A static, human-readable message for any status code (never NULL). */
const char *cmap_strerror(int status);

/* ---- hashing ---------------------------------------------------------- */

/* A hash function: 64 bits from len bytes at key.  seed is the map's seed. */
typedef uint64_t (*cmap_hash_fn)(const void *key, size_t len, uint64_t seed);

/* XXH3-64, seeded.  The default: each map gets a random seed at creation
 * (unless CMAP_FIXED_SEED), so colliding keys cannot be precomputed. */
uint64_t cmap_hash_xxh3(const void *key, size_t len, uint64_t seed);
/* CityHash64WithSeed v1.1 (the Rust crate cmap's default). */
uint64_t cmap_hash_city(const void *key, size_t len, uint64_t seed);
/* Identity hashers for 4- and 8-byte integer keys (the seed is ignored).
 * Fast, but offer no protection against adversarial keys.  cmap_new
 * rejects them for any other key size. */
uint64_t cmap_hash_u32(const void *key, size_t len, uint64_t seed);
uint64_t cmap_hash_u64(const void *key, size_t len, uint64_t seed);

/* Raw CityHash v1.1 functions, exported for users and the test vectors. */
uint64_t cmap_city64(const void *buf, size_t len);
uint64_t cmap_city64_seed(const void *buf, size_t len, uint64_t seed);
uint64_t cmap_city64_seeds(const void *buf, size_t len, uint64_t seed0,
			   uint64_t seed1);

/* ---- configuration ---------------------------------------------------- */

/* Key equality: nonzero when equal.  Lengths are equal when called. */
typedef int (*cmap_eq_fn)(const void *a, const void *b, size_t len);
/* Destructor for a key or value leaving the map (after its grace period).
 * It may read the map but not write it: write operations called from a
 * destructor return CMAP_EINVAL. */
typedef void (*cmap_dtor_fn)(void *item, size_t len, void *ctx);
/* Allocator hooks.  alloc must return memory aligned to at least align
 * (a power of two, at most 2 MiB) or NULL; free receives the same size. */
typedef void *(*cmap_alloc_fn)(void *ctx, size_t size, size_t align);
typedef void (*cmap_free_fn)(void *ctx, void *ptr, size_t size);

enum cmap_flags {
	/* Use config.seed as given instead of a random per-map seed. */
	CMAP_FIXED_SEED = 1u << 0,
	/* Allocate every node with the allocator hooks, bypassing the
	 * per-thread node pools (slower; exact per-node failure injection
	 * and leak checking). */
	CMAP_NO_POOL = 1u << 1,
	/* Maps with 8-byte values and no val_dtor replace a present key's
	 * value in place (a store to the value word under an announcement,
	 * no copy, allocation or retirement; docs/DESIGN.md, "In-place
	 * values"), and, if their keys are at most 8 bytes, insert into a
	 * bucket with room by writing the entry past its last one
	 * ("In-place inserts"); their cmap_get_with, cmap_foreach and
	 * cmap_compute callbacks see a copy of the value.  This flag makes
	 * such a map copy its bucket on every write instead, as every other
	 * map does. */
	CMAP_COPY_ON_WRITE = 1u << 2,
};

/* Largest fixed key or value size, and largest variable-length item. */
#define CMAP_MAX_FIXED_SIZE 256u
#define CMAP_MAX_VAR_LEN    ((size_t)1 << 30)

/*
 * Configuration for cmap_new.  Start from CMAP_CONFIG_INIT (C) or
 * cmap_config_init() (C and C++), which zero every field and set size, then
 * set the fields you need; zero means the default everywhere.
 *
 * size is the caller's sizeof(cmap_config_t), so the struct can grow (new
 * fields are only ever appended, and zero keeps the old behaviour) without
 * breaking programs built against an older header.  cmap_new accepts:
 *  - sizeof(cmap_config_t) of this or any earlier release from 0.2 on (the
 *    library reads only the fields that caller knew about);
 *  - 0, meaning the 0.2 layout: the zero-initialised `cmap_config_t c =
 *    {0}` written before the field existed keeps working, with every
 *    library from 0.2 on.  Fields added after 0.2 are not read from such a
 *    config, so set size to use them;
 *  - anything else (in particular a larger size, from a newer header than
 *    the library) is CMAP_EINVAL: the library cannot honour fields it does
 *    not know, and must not read past the caller's struct.
 * 0.1 had no size field: programs built against 0.1 must be rebuilt.
 */
typedef struct cmap_config {
	size_t size;	       /* sizeof(cmap_config_t), or 0 (see above) */
	size_t key_size;       /* bytes per key; 0 = variable-length */
	size_t val_size;       /* bytes per value; 0 = variable-length */
	cmap_hash_fn hash;     /* NULL: cmap_hash_xxh3 */
	uint64_t seed;	       /* used only with CMAP_FIXED_SEED */
	cmap_eq_fn eq;	       /* NULL: byte comparison */
	cmap_dtor_fn key_dtor; /* NULL: nothing to destroy */
	cmap_dtor_fn val_dtor; /* NULL: nothing to destroy */
	void *dtor_ctx;
	cmap_alloc_fn alloc; /* NULL (both): aligned_alloc/free */
	cmap_free_fn free;
	void *alloc_ctx;
	unsigned flags; /* enum cmap_flags */
} cmap_config_t;

/* The size is the caller's sizeof, taken where the caller is compiled: that
 * is why these are a macro and an inline function, not library code. */
#ifdef __cplusplus
#define CMAP_CONFIG_INIT                                                       \
	([] {                                                                  \
		cmap_config_t cmap__c{};                                       \
		cmap__c.size = sizeof cmap__c;                                 \
		return cmap__c;                                                \
	}())
#else
#define CMAP_CONFIG_INIT                                                       \
	{                                                                      \
		.size = sizeof(cmap_config_t)                                  \
	}
#endif

static inline void cmap_config_init(cmap_config_t *cfg)
{
	cmap_config_t cmap__init = CMAP_CONFIG_INIT;
	*cfg = cmap__init;
}

typedef struct cmap cmap_t;

/* Create a map.  Returns CMAP_OK and stores the map in *out, or CMAP_EINVAL
 * (cfg NULL; bad config: size field not accepted as described above, key or
 * value size too large, only one allocator hook, unknown flags, identity
 * hasher with the wrong key size) or CMAP_ENOMEM.  cfg is copied. */
int cmap_new(cmap_t **out, const cmap_config_t *cfg);

/* Free a map and everything in it, running the destructors of every live
 * entry and of all pending garbage.  Those destructors may read the map
 * (entries already destroyed are gone from it), call cmap_defer_free and
 * cmap_collect; its writes return CMAP_EINVAL.  Every deferred callback has
 * run when cmap_free returns.
 * Threading precondition: no other thread uses the map, now or later.
 * NULL is a no-op, and so is a call from inside a callback (get_with,
 * foreach, compute) on the same map: the caller is still using it. */
void cmap_free(cmap_t *map);

/* ---- operations ------------------------------------------------------- */

/* Insert or replace.  Returns CMAP_OK (inserted) or CMAP_REPLACED.
 * A replace keeps the key the map holds (the caller's key is not taken, and
 * key_dtor does not run: re-setting a pointer key with the same pointer is
 * safe) and retires the old value: val_dtor runs on it after the grace
 * period, unless old is non-NULL: then its value is copied to old and its
 * ownership passes to the caller (val_dtor will not be called on it).  Other
 * threads' cmap_get_with or cmap_foreach callbacks may still be reading that
 * value until the grace period ends: free what it points to with
 * cmap_defer_free, not at once.  For a variable-length value map, old_len
 * must be non-NULL: on input the capacity of old, on return the old value's
 * length; if the capacity is too small nothing changes and CMAP_ERANGE is
 * returned.  For fixed-size values old_len may be NULL. */
int cmap_set(cmap_t *map, const void *key, size_t klen, const void *val,
	     size_t vlen, void *old, size_t *old_len);

/* Look up key and copy its value to val (if non-NULL).  Returns CMAP_OK or
 * CMAP_NOT_FOUND.  vlen is as old_len in cmap_set (CMAP_ERANGE if small). */
int cmap_get(cmap_t *map, const void *key, size_t klen, void *val,
	     size_t *vlen);

/* Look up n keys at once in a fixed-size map (CMAP_EINVAL for a
 * variable-length one).  keys holds n keys of key_size bytes; the value of
 * key i is copied to vals + i * val_size when found (left untouched when
 * not); found, if non-NULL, receives 1 or 0 per key.  Returns the number of
 * keys found, or a negative CMAP_E* code.  The lookups walk the trie
 * together, level by level, prefetching the next level for every key, so
 * their cache misses overlap (batched lookups as in DRAMHiT and Boost's
 * bulk visitation): several times the throughput of single gets on a map
 * larger than the CPU caches.  Each lookup is linearizable on its own; the
 * batch is not a snapshot. */
long cmap_get_batch(cmap_t *map, const void *keys, size_t n, void *vals,
		    unsigned char *found);

/* Set n keys at once in a fixed-size map (CMAP_EINVAL for a
 * variable-length one): key i (keys + i * key_size) to value i (vals + i *
 * val_size), as cmap_set would, in order (a key given twice ends with its
 * last value).  results, if non-NULL, receives each key's status
 * (CMAP_OK, CMAP_REPLACED, or CMAP_ENOMEM for a key that could not be
 * stored; the others are still done).  Returns the number of keys stored,
 * or a negative code when nothing could be done (CMAP_EINVAL: NULL map,
 * keys or vals with n > 0, or a call from inside a compute function or a
 * destructor; CMAP_ENOMEM).  The keys walk the trie in groups, with their
 * cache misses overlapped as in cmap_get_batch; each set is linearizable
 * on its own, the batch is not atomic.  Replaced values go to val_dtor. */
long cmap_set_batch(cmap_t *map, const void *keys, const void *vals, size_t n,
		    int *results);

/* Insert n keys if absent, as cmap_insert would each (fixed-size maps):
 * built for loading.  Wherever the keys' part of the trie is empty (an empty
 * map, a region no key reached yet), the keys under an empty slot become one
 * privately built subtree, published with one CAS; elsewhere they are
 * inserted one by one.  A key given twice is inserted once (the first);
 * later copies, and keys already present, get CMAP_EXISTS (the current value
 * stays).  results as in cmap_set_batch (CMAP_OK, CMAP_EXISTS, CMAP_ENOMEM);
 * returns the number inserted or a negative code (CMAP_EINVAL as
 * cmap_set_batch, or n > UINT32_MAX; CMAP_ENOMEM: no scratch memory, 12 bytes
 * per key plus 32 per key of the largest of 32 groups, nothing inserted).
 * Each key's insert is linearizable; the keys of one subtree all appear at
 * its CAS. */
long cmap_insert_batch(cmap_t *map, const void *keys, const void *vals,
		       size_t n, int *results);

/* Remove n keys at once, as cmap_remove would (fixed-size maps).  results
 * as in cmap_set_batch (CMAP_OK, CMAP_NOT_FOUND, CMAP_ENOMEM); returns the
 * number of keys removed, or a negative code as cmap_set_batch. */
long cmap_remove_batch(cmap_t *map, const void *keys, size_t n, int *results);

/* Called by cmap_get_with with borrowed pointers, valid only until it
 * returns.  It may call any cmap function on this map or others (writes
 * included) except cmap_thread_exit; cmap_free of this map does nothing
 * there. */
typedef void (*cmap_visit_fn)(const void *key, size_t klen, const void *val,
			      size_t vlen, void *ctx);

/* Look up key and, if found, call fn on the stored entry.  Returns CMAP_OK
 * or CMAP_NOT_FOUND.  No lock is held while fn runs; the entry is protected
 * from reclamation, so fn should be short (it delays reclamation). */
int cmap_get_with(cmap_t *map, const void *key, size_t klen, cmap_visit_fn fn,
		  void *ctx);

/* Remove key.  Returns CMAP_OK or CMAP_NOT_FOUND.  old/old_len as in
 * cmap_set: the removed value is copied out and ownership passes on (the
 * same grace-period caution applies).  key_dtor runs on the removed key. */
int cmap_remove(cmap_t *map, const void *key, size_t klen, void *old,
		size_t *old_len);

/* ---- read-modify-write ------------------------------------------------
 *
 * Each operation below changes at most one key and is linearizable: it
 * takes effect at one atomic step (the CAS that publishes the key's new
 * bucket or, when it changes nothing, the load that read the key's bucket),
 * and the value it compares, copies out or shows to a compute function is
 * the value that step replaces, so no concurrent update is lost.  All are
 * lock-free, and no lock is held while user code runs.  Arguments as in
 * cmap_set (CMAP_EINVAL: NULL map or key, a NULL value with a nonzero
 * length, an output buffer without its length pointer in a variable-length
 * value map; CMAP_EKEYLEN, CMAP_EVALLEN: wrong fixed sizes; CMAP_ENOMEM).
 * On any error the map is unchanged.  Output buffers (cur, old) follow
 * cmap_get's vlen rule: CMAP_ERANGE, the length needed and no change if a
 * variable-length value does not fit.
 */

/* Insert if absent.  Returns CMAP_OK (inserted) or CMAP_EXISTS (nothing
 * changed; the current value copied to cur when non-NULL), so "get or
 * insert" is one call: exactly one of several racing inserts of a key
 * returns CMAP_OK and the others see its value. */
int cmap_insert(cmap_t *map, const void *key, size_t klen, const void *val,
		size_t vlen, void *cur, size_t *cur_len);

/* Replace if present.  Returns CMAP_REPLACED (old and its ownership as in
 * cmap_set) or CMAP_NOT_FOUND (nothing changed). */
int cmap_replace(cmap_t *map, const void *key, size_t klen, const void *val,
		 size_t vlen, void *old, size_t *old_len);

/* Compare-and-swap: store desired only if the current value equals expected
 * (same length, same bytes).  Returns CMAP_REPLACED (the old value, equal to
 * expected, goes to val_dtor after the grace period), CMAP_NOT_FOUND, or
 * CMAP_MISMATCH (nothing changed; the current value copied to cur when
 * non-NULL, ready for the next attempt of a retry loop). */
int cmap_cas(cmap_t *map, const void *key, size_t klen, const void *expected,
	     size_t elen, const void *desired, size_t dlen, void *cur,
	     size_t *cur_len);

/* Remove key only if its value equals expected (as in cmap_cas).  Returns
 * CMAP_OK (removed; the value goes to val_dtor), CMAP_MISMATCH or
 * CMAP_NOT_FOUND. */
int cmap_remove_if(cmap_t *map, const void *key, size_t klen,
		   const void *expected, size_t elen);

/* What a compute function answers. */
enum cmap_compute_action {
	CMAP_COMPUTE_KEEP,   /* leave the entry, or its absence, as it is */
	CMAP_COMPUTE_SET,    /* store the value *val, *vlen for the key */
	CMAP_COMPUTE_REMOVE, /* remove the entry (nothing if absent) */
	CMAP_COMPUTE_ABORT   /* change nothing: cmap_compute says ABORTED */
};

/*
 * Called by cmap_compute with the key and its current value (cur NULL and
 * cur_len 0 when absent), both borrowed until fn returns.  To store a value,
 * set *val and *vlen (NULL and 0 on entry) and return CMAP_COMPUTE_SET; the
 * bytes are copied before cmap_compute returns and must stay valid until
 * then (a buffer in ctx, say; pointing into cur is fine).
 * fn may run more than once for one call: when another writer changed the
 * key's value in between, fn runs again on the new value, and only the last
 * run's answer is applied.  So fn must have no side effects other than on
 * state in ctx that each run overwrites.
 */
typedef int (*cmap_compute_fn)(const void *key, size_t klen, const void *cur,
			       size_t cur_len, const void **val, size_t *vlen,
			       void *ctx);

/*
 * Atomic read-modify-write of key: fn's answer is applied only if the key's
 * value (or absence) is still the one fn saw.  Counters, "update if",
 * "insert a computed value" and "remove if expired" are one call each.
 * Returns what happened: CMAP_OK (inserted), CMAP_REPLACED, CMAP_REMOVED,
 * CMAP_UNCHANGED (KEEP, or REMOVE of an absent key), CMAP_ABORTED; or an
 * error with nothing changed: CMAP_EVALLEN or CMAP_EINVAL for a value that
 * cmap_set would refuse or an unknown answer, CMAP_ENOMEM.  A replaced or
 * removed value goes to val_dtor after the grace period.
 * Inside fn, reads of the same map (cmap_get, cmap_get_with,
 * cmap_get_batch, cmap_foreach, cmap_len...), cmap_defer_free, cmap_collect
 * and any operation on other maps are allowed; writes to the same map
 * return CMAP_EINVAL (they could change the value fn is deciding on).
 */
int cmap_compute(cmap_t *map, const void *key, size_t klen, cmap_compute_fn fn,
		 void *ctx);

/* ---- iteration ----------------------------------------------------------
 *
 * A walk visits the entries in hash order, a bucket at a time, without
 * pinning reclamation for its duration: the calling thread leaves its
 * operation between slices of the walk (every few hundred entries), so a
 * walk of a huge map holds back garbage no longer than a short operation.
 * Guarantee, under any concurrent writes: every key present from the
 * walk's start to its end is visited exactly once; a key inserted or
 * removed during the walk is visited at most once; no key is visited
 * twice, even when its bucket splits or its node contracts meanwhile.
 * The value seen is the one current at some moment between the walk's
 * start and the visit.  A walk is not a snapshot.
 */

/* Called for each entry with borrowed pointers, valid until it returns.
 * Return 0 to go on, nonzero to stop the walk.  As cmap_visit_fn, it may
 * call any cmap function on this or other maps, writes included (the
 * walk's guarantee then covers the keys they do not touch), except
 * cmap_thread_exit; cmap_free of this map does nothing there. */
typedef int (*cmap_foreach_fn)(const void *key, size_t klen, const void *val,
			       size_t vlen, void *ctx);

/* Visit every entry.  Returns the number of entries visited (fn's
 * stopping call included), or CMAP_EINVAL (NULL map or fn) or CMAP_ENOMEM
 * (the thread could not join the map). */
long cmap_foreach(cmap_t *map, cmap_foreach_fn fn, void *ctx);

/* A resumable position of a walk, for walking a big map in slices (from an
 * event loop, say).  Plain data: copy it, keep it anywhere, no cleanup.  A
 * cursor is tied to no thread and holds nothing of the map's; its
 * guarantee is the walk's, with "the walk" running from its init to the
 * call that reports it done. */
typedef struct cmap_cursor {
	uint64_t next; /* the first hash position not yet walked */
	int done;      /* the walk has passed the last position */
} cmap_cursor_t;

#define CMAP_CURSOR_INIT                                                       \
	{                                                                      \
		0, 0                                                           \
	}

static inline void cmap_cursor_init(cmap_cursor_t *c)
{
	c->next = 0;
	c->done = 0;
}

/* Visit up to max entries from c's position (more only when several keys
 * share one full 64-bit hash: they are visited together), advancing c.
 * Returns the number visited; c->done is set by the call that walks past
 * the last position (which may still return a count > 0), and a call after
 * that returns 0 and does nothing.  Errors: CMAP_EINVAL (NULL map, cursor
 * or fn, max 0), CMAP_ENOMEM.  If fn stops the walk, c resumes after the
 * entry it stopped at; when that entry shares its full 64-bit hash with
 * keys not yet shown, those are skipped (a position holds them all). */
long cmap_cursor_next(cmap_t *map, cmap_cursor_t *c, size_t max,
		      cmap_foreach_fn fn, void *ctx);

/* Keep the entries for which pred returns nonzero and remove the others
 * (pred returning 0 means "remove", as in Rust's retain).  Each removal is
 * conditional on the entry being the one pred saw (unchanged value; for
 * variable-length maps the same stored entry): an entry replaced after pred
 * saw it stays.  pred runs with the rules of cmap_foreach_fn except that
 * its writes to this map return CMAP_EINVAL.  Destructors run once, after
 * the grace period.  Returns the number removed, or CMAP_EINVAL /
 * CMAP_ENOMEM (entries removed before an ENOMEM stay removed). */
long cmap_retain(cmap_t *map, cmap_foreach_fn pred, void *ctx);

/* Remove every entry; returns how many were removed (or CMAP_EINVAL /
 * CMAP_ENOMEM as cmap_retain).  Not one atomic step: an entry inserted
 * concurrently may survive (one present from the call's start to its end
 * is removed). */
long cmap_clear(cmap_t *map);

/* Number of entries: O(threads that ever used the map), no trie walk.
 * Exact when no writer runs concurrently.  0 for NULL. */
size_t cmap_len(const cmap_t *map);

/* ---- reclamation ------------------------------------------------------ */

/* Retire a caller-owned object: fn(ptr) is called once no thread that was
 * inside a cmap operation on this map when cmap_defer_free was called can
 * still be inside it (the map's grace period, as liburcu's call_rcu).
 * Returns CMAP_OK, or CMAP_ENOMEM/CMAP_EINVAL (then nothing was deferred). */
int cmap_defer_free(cmap_t *map, void *ptr, void (*fn)(void *ptr));

/* Try to end a grace period now and free expired garbage: the calling
 * thread's, then that of threads that exited or have been idle (outside
 * every call on this map for a few grace periods; their deferred callbacks
 * run here too, and their spare pages go back to the map), at most 16384
 * objects per call (a backlog after a long stall takes several calls; no
 * call, and no other operation, frees it all at once).  A thread that was
 * idle notices nothing but a slightly slower next call.  Then, if a third
 * of the calling thread's node memory (and at least 2 MiB) is free space
 * inside pages under two thirds full, as after a stall or a mass removal,
 * moves the live nodes off those pages (compaction: each is copied and the
 * copy published like an update that changes nothing, so readers, writers
 * and iteration are unaffected) so that the pages empty and go back to the
 * system once the originals are reclaimed; a call walks the whole map for
 * that, while the collections that writes run by themselves walk a bounded
 * slice of it at a time.  Returns the number of objects this thread still
 * has pending. */
size_t cmap_collect(cmap_t *map);

/* Leave every map the calling thread has joined (also done automatically
 * at thread exit).  The thread may use maps again afterwards.
 * Precondition: not called from inside a callback (get_with, foreach,
 * compute, retain) or a destructor.
 * Callbacks and destructors must return normally.  A thread that leaves
 * one anyway (longjmp, pthread_cancel, a C++ exception) is still inside
 * the operation that called it, which holds back every map's reclamation:
 * it must call cmap_thread_exit() before anything else of cmap (nothing is
 * freed twice: the destructor that did not return is simply not run
 * again). */
void cmap_thread_exit(void);

/* ---- introspection ---------------------------------------------------- */

#define CMAP_MAX_LEVELS 16

typedef struct cmap_stats {
	size_t entries;		  /* entries found by the walk */
	size_t inner_nodes;	  /* inner (bitmap/slot) nodes, root included */
	size_t buckets;		  /* leaf buckets */
	size_t collision_buckets; /* buckets past the last level (full-hash
				     collisions) */
	size_t nodes_per_level[CMAP_MAX_LEVELS]; /* inner nodes + buckets */
	unsigned max_depth;	/* deepest bucket's level (root = 0) */
	size_t bytes_in_use;	/* bytes of live nodes, buckets and items */
	size_t bytes_reserved;	/* bytes obtained from the allocator */
	size_t garbage_pending; /* retired objects not yet reclaimed */
	size_t threads;		/* thread records (live and reusable) */
} cmap_stats_t;

/* Walk the whole map, check every structural invariant and fill *stats
 * (if non-NULL).  Returns CMAP_OK, or CMAP_EINVAL if an invariant is broken
 * (a description goes to stderr).  Safe to call concurrently with other
 * operations, but the invariants are only guaranteed when no writer runs. */
int cmap_validate(cmap_t *map, cmap_stats_t *stats);

/* Reclamation at a glance, without walking the map (cost: one pass over
 * the map's thread records).  Garbage is freed only as the map's epoch
 * advances, and a thread inside an operation that began before the
 * current epoch (a slow cmap_get_with callback, a thread descheduled
 * mid-operation) stops the next advance until it returns: meanwhile every
 * object retired by any thread waits (about one bucket per set or remove,
 * plus the replaced or removed entry's blob for variable-length maps).
 * blocking > 0 with pending growing is that situation; epoch_age_secs
 * alone is not, since the epoch advances only when threads retire or
 * collect. */
typedef struct cmap_gc_stats {
	/* In: sizeof(cmap_gc_stats_t) as the caller was compiled with; fields
	 * are only ever added at the end, and only those the caller knows
	 * are written. */
	size_t size;
	size_t pending; /* retired objects not yet reclaimed, all threads */
	uint64_t epoch; /* the map's epoch */
	double epoch_age_secs; /* since the epoch last advanced (or creation) */
	size_t blocking; /* threads inside an operation older than the epoch */
	size_t threads;	 /* thread records (live and reusable) */
	/* Nodes, buckets and blobs that compaction moved off half-empty pages
	 * since the map was created (see cmap_collect). */
	size_t relocated;
} cmap_gc_stats_t;

/* Fill *out (out->size set by the caller).  Returns CMAP_OK, or
 * CMAP_EINVAL for a NULL map or out, or a size that does not cover size
 * and pending.  Safe to call from any thread at any time; the figures are
 * a snapshot that may be stale by the time it returns. */
int cmap_reclaim_stats(cmap_t *map, cmap_gc_stats_t *out);

/* ---- typed wrappers ----------------------------------------------------- */

/*
 * CMAP_TYPED(name, K, V) defines `name_t` and static inline functions over
 * fixed-size K and V that call the generic core above:
 *   int  name_new(name_t **m, cmap_hash_fn hash)     (NULL hash: xxh3)
 *   void name_free(name_t *m)
 *   int  name_set(name_t *m, K k, V v, V *old)       (old may be NULL)
 *   int  name_get(name_t *m, K k, V *out)
 *   int  name_remove(name_t *m, K k, V *old)
 *   size_t name_len(name_t *m)
 *   cmap_t *name_map(name_t *m)                      (the generic map)
 * and the read-modify-write and iteration calls, with the generic
 * functions' return values:
 *   int  name_insert(name_t *m, K k, V v, V *cur)    (cmap_insert; cur, may
 *                                                     be NULL, gets the
 *                                                     value on CMAP_EXISTS)
 *   int  name_replace(name_t *m, K k, V v, V *old)   (cmap_replace)
 *   int  name_cas(name_t *m, K k, V expected, V desired, V *cur)
 *                                                    (cmap_cas; cur gets the
 *                                                     value on CMAP_MISMATCH)
 *   int  name_remove_if(name_t *m, K k, V expected)  (cmap_remove_if)
 *   int  name_update(name_t *m, K k, name_update_fn fn, void *ctx)
 *        (cmap_compute) with
 *        int fn(K k, const V *cur, V *out, void *ctx): cur points to a
 *        copy of the current value, NULL when the key is absent; *out
 *        holds that copy (zero bytes when absent) on entry; fn returns a
 *        CMAP_COMPUTE_* action, and CMAP_COMPUTE_SET stores *out.  As with
 *        cmap_compute, fn may run more than once and may not write the map.
 *   long name_foreach(name_t *m, name_foreach_fn fn, void *ctx)
 *        (cmap_foreach) with int fn(K k, V v, void *ctx): nonzero stops.
 * K must not contain padding bytes unless a custom eq is used through the
 * generic API; nor must V for name_cas and name_remove_if, which compare
 * values byte by byte.
 */
/* The typed handle and the generic map are the same object.  A named cast
 * in C++ keeps the wrappers quiet under -Wold-style-cast. */
#ifdef __cplusplus
#define CMAP__CAST(T, x) reinterpret_cast<T>(x)
#define CMAP__NULL(T)	 static_cast<T>(nullptr)
#else
#define CMAP__CAST(T, x) ((T)(x))
#define CMAP__NULL(T)	 ((T)0)
#endif
/* clang warns about unused static inline functions of a .c file, which is
 * where CMAP_TYPED expands. */
#if defined(__GNUC__) || defined(__clang__)
#define CMAP__MAYBE_UNUSED __attribute__((unused))
#else
#define CMAP__MAYBE_UNUSED
#endif

#define CMAP_TYPED(name, K, V)                                                 \
	typedef struct name name##_t;                                          \
	static inline CMAP__MAYBE_UNUSED cmap_t *name##_map(name##_t *m)       \
	{                                                                      \
		return CMAP__CAST(cmap_t *, m);                                \
	}                                                                      \
	static inline CMAP__MAYBE_UNUSED int name##_new(name##_t **m,          \
							cmap_hash_fn hash)     \
	{                                                                      \
		cmap_config_t c;                                               \
		cmap_config_init(&c);                                          \
		c.key_size = sizeof(K);                                        \
		c.val_size = sizeof(V);                                        \
		c.hash = hash;                                                 \
		return cmap_new(CMAP__CAST(cmap_t **, m), &c);                 \
	}                                                                      \
	static inline CMAP__MAYBE_UNUSED void name##_free(name##_t *m)         \
	{                                                                      \
		cmap_free(CMAP__CAST(cmap_t *, m));                            \
	}                                                                      \
	static inline CMAP__MAYBE_UNUSED int name##_set(name##_t *m, K k, V v, \
							V *old)                \
	{                                                                      \
		return cmap_set(CMAP__CAST(cmap_t *, m), &k, sizeof k, &v,     \
				sizeof v, old, NULL);                          \
	}                                                                      \
	static inline CMAP__MAYBE_UNUSED int name##_get(name##_t *m, K k,      \
							V *out)                \
	{                                                                      \
		return cmap_get(CMAP__CAST(cmap_t *, m), &k, sizeof k, out,    \
				NULL);                                         \
	}                                                                      \
	static inline CMAP__MAYBE_UNUSED int name##_remove(name##_t *m, K k,   \
							   V *old)             \
	{                                                                      \
		return cmap_remove(CMAP__CAST(cmap_t *, m), &k, sizeof k, old, \
				   NULL);                                      \
	}                                                                      \
	static inline CMAP__MAYBE_UNUSED size_t name##_len(name##_t *m)        \
	{                                                                      \
		return cmap_len(CMAP__CAST(cmap_t *, m));                      \
	}                                                                      \
	static inline CMAP__MAYBE_UNUSED int name##_insert(name##_t *m, K k,   \
							   V v, V *cur)        \
	{                                                                      \
		return cmap_insert(CMAP__CAST(cmap_t *, m), &k, sizeof k, &v,  \
				   sizeof v, cur, NULL);                       \
	}                                                                      \
	static inline CMAP__MAYBE_UNUSED int name##_replace(name##_t *m, K k,  \
							    V v, V *old)       \
	{                                                                      \
		return cmap_replace(CMAP__CAST(cmap_t *, m), &k, sizeof k, &v, \
				    sizeof v, old, NULL);                      \
	}                                                                      \
	static inline CMAP__MAYBE_UNUSED int name##_cas(                       \
	    name##_t *m, K k, V expected, V desired, V *cur)                   \
	{                                                                      \
		return cmap_cas(CMAP__CAST(cmap_t *, m), &k, sizeof k,         \
				&expected, sizeof expected, &desired,          \
				sizeof desired, cur, NULL);                    \
	}                                                                      \
	static inline CMAP__MAYBE_UNUSED int name##_remove_if(name##_t *m,     \
							      K k, V expected) \
	{                                                                      \
		return cmap_remove_if(CMAP__CAST(cmap_t *, m), &k, sizeof k,   \
				      &expected, sizeof expected);             \
	}                                                                      \
	typedef int (*name##_update_fn)(K k, const V *cur, V *out, void *ctx); \
	struct name##__update {                                                \
		name##_update_fn fn;                                           \
		void *ctx;                                                     \
		V out;                                                         \
	};                                                                     \
	static inline CMAP__MAYBE_UNUSED int name##__update_cb(                \
	    const void *key, size_t klen, const void *cur, size_t cur_len,     \
	    const void **val, size_t *vlen, void *ctx)                         \
	{                                                                      \
		struct name##__update *u =                                     \
		    CMAP__CAST(struct name##__update *, ctx);                  \
		K k;                                                           \
		V c;                                                           \
		(void)klen;                                                    \
		(void)cur_len;                                                 \
		memcpy(&k, key, sizeof k);                                     \
		if (cur)                                                       \
			memcpy(&c, cur, sizeof c);                             \
		else                                                           \
			memset(&c, 0, sizeof c);                               \
		u->out = c;                                                    \
		int act = u->fn(k, cur ? &c : CMAP__NULL(const V *), &u->out,  \
				u->ctx);                                       \
		*val = &u->out;                                                \
		*vlen = sizeof u->out;                                         \
		return act;                                                    \
	}                                                                      \
	static inline CMAP__MAYBE_UNUSED int name##_update(                    \
	    name##_t *m, K k, name##_update_fn fn, void *ctx)                  \
	{                                                                      \
		struct name##__update u;                                       \
		if (!fn)                                                       \
			return CMAP_EINVAL;                                    \
		u.fn = fn;                                                     \
		u.ctx = ctx;                                                   \
		return cmap_compute(CMAP__CAST(cmap_t *, m), &k, sizeof k,     \
				    name##__update_cb, &u);                    \
	}                                                                      \
	typedef int (*name##_foreach_fn)(K k, V v, void *ctx);                 \
	struct name##__foreach {                                               \
		name##_foreach_fn fn;                                          \
		void *ctx;                                                     \
	};                                                                     \
	static inline CMAP__MAYBE_UNUSED int name##__foreach_cb(               \
	    const void *key, size_t klen, const void *val, size_t vlen,        \
	    void *ctx)                                                         \
	{                                                                      \
		struct name##__foreach *f =                                    \
		    CMAP__CAST(struct name##__foreach *, ctx);                 \
		K k;                                                           \
		V v;                                                           \
		(void)klen;                                                    \
		(void)vlen;                                                    \
		memcpy(&k, key, sizeof k);                                     \
		memcpy(&v, val, sizeof v);                                     \
		return f->fn(k, v, f->ctx);                                    \
	}                                                                      \
	static inline CMAP__MAYBE_UNUSED long name##_foreach(                  \
	    name##_t *m, name##_foreach_fn fn, void *ctx)                      \
	{                                                                      \
		struct name##__foreach f;                                      \
		if (!fn)                                                       \
			return CMAP_EINVAL;                                    \
		f.fn = fn;                                                     \
		f.ctx = ctx;                                                   \
		return cmap_foreach(CMAP__CAST(cmap_t *, m),                   \
				    name##__foreach_cb, &f);                   \
	}

#ifdef __cplusplus
}
#endif
#endif /* CMAP_H */
