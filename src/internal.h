/*
 * Internal declarations shared by the files in src/.  Grouped by the file
 * that defines them.  Nothing here is part of the public API.
 */
#ifndef CMAP_INTERNAL_H
#define CMAP_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cmap.h"

#define CMAP_API    __attribute__((visibility("default")))
#define CACHELINE   64
#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

/*
 * Atomics are reached only through these macros, so every ordering is
 * spelled out at the call site and greppable.  The comment at each use
 * says what the ordering pairs with.
 */
#define ld_relaxed(p)	 atomic_load_explicit((p), memory_order_relaxed)
#define ld_acquire(p)	 atomic_load_explicit((p), memory_order_acquire)
#define ld_seqcst(p)	 atomic_load_explicit((p), memory_order_seq_cst)
#define st_relaxed(p, v) atomic_store_explicit((p), (v), memory_order_relaxed)
#define st_release(p, v) atomic_store_explicit((p), (v), memory_order_release)
#define cas_seqcst(p, e, d)                                                    \
	atomic_compare_exchange_strong_explicit(                               \
	    (p), (e), (d), memory_order_seq_cst, memory_order_acquire)
#define cas_release(p, e, d)                                                   \
	atomic_compare_exchange_strong_explicit(                               \
	    (p), (e), (d), memory_order_release, memory_order_relaxed)
#define cas_acqrel(p, e, d)                                                    \
	atomic_compare_exchange_strong_explicit(                               \
	    (p), (e), (d), memory_order_acq_rel, memory_order_acquire)

/* A full fence.  ThreadSanitizer does not model atomic_thread_fence (gcc
 * warns), so under TSan the fence is a seq_cst RMW on a private word. */
#if defined(__SANITIZE_THREAD__)
#define CMAP_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CMAP_TSAN 1
#endif
#endif
#ifdef CMAP_TSAN
#define full_fence(word)                                                       \
	((void)atomic_fetch_add_explicit((word), 0, memory_order_seq_cst))
#else
#define full_fence(word)                                                       \
	((void)(word), atomic_thread_fence(memory_order_seq_cst))
#endif

/* A spin-wait hint for the CPU. */
static inline void cpu_relax(void)
{
#if defined(CMAP_MODELCHECK)
	/* nothing: GenMC has no use for the hint */
#elif defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

/* Model checking only (`make modelcheck`, GenMC): the macros above gain
 * the points where a membarrier may interrupt a reader.  Nothing changes in
 * any other build. */
#ifdef CMAP_MODELCHECK
#include "../tests/modelcheck/mc_seams.h"
#endif

/* AddressSanitizer sees through our pools only if we poison free blocks. */
#if defined(__SANITIZE_ADDRESS__)
#define CMAP_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CMAP_ASAN 1
#endif
#endif
#ifdef CMAP_ASAN
#include <sanitizer/asan_interface.h>
#define POISON(p, n)   ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n)   ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

/* ==== trie geometry (trie.c, validate.c) =============================== */

/*
 * An inner node is an array of FANOUT atomic slots indexed by BITS bits of
 * the hash, lowest bits first (level d uses bits [d*BITS, d*BITS+BITS)).
 * A slot holds 0 (empty), a tagged pointer to an inner node, or a tagged
 * pointer to a bucket.  Tag bits (nodes and buckets are 16-byte aligned):
 *   bit 0  FROZEN  the slot's node is being replaced; the slot is immutable
 *   bit 1  BUCKET  the pointer is a bucket, else an inner node
 */
#define BITS   5
#define FANOUT (1u << BITS)
#define MASK   ((uint64_t)FANOUT - 1)
/* Deepest level that still has hash bits to index: 12 for BITS = 5. */
#define LAST_LEVEL ((64 + BITS - 1) / BITS - 1)
/* A bucket holds up to BMAX entries before it splits into an inner node
 * (except past LAST_LEVEL, where entries share all 64 hash bits).  32
 * rather than 16: a split spreads a full bucket over 32 children, so every
 * load whose buckets have just split is sparse (about 1 entry per bucket
 * behind a 256-byte node); doubling BMAX halves how often n falls in that
 * regime (1 M u32 keys: 57 -> 41 bytes/entry peak RSS, gets about 1.4x)
 * at the price of copying up to twice the entries per update (measured
 * neutral at 10 M; docs/PERFORMANCE.md). */
#define BMAX 32
/* A non-root inner node whose children are all buckets holding at most
 * BMERGE entries together is contracted into one bucket. */
#define BMERGE 8

#define T_FROZEN ((uintptr_t)1)
#define T_BUCKET ((uintptr_t)2)
#define T_MASK	 ((uintptr_t)3)

_Static_assert(LAST_LEVEL + 2 <= CMAP_MAX_LEVELS, "stats levels too few");
_Static_assert(BMERGE < BMAX, "merge threshold must leave hysteresis");

typedef struct inner {
	_Atomic(uintptr_t) slot[FANOUT];
} inner_t;

/*
 * A fixed-size map's bucket stores its keys, then its values; the key
 * array spans whole 16-byte groups so that lookups compare keys a group
 * at a time.  Variable-length maps store n {hash, blob} pairs.  A bucket
 * is allocated for cap entries: exactly its count (the IPW_CAP field 0),
 * or the IPW_CAP field's (a merge's, sized before it knew how many, and
 * an appending map's, with room to append); bucket_cap() gives it, and
 * the values start after cap keys.
 *
 * Keys and values never change once published, except in in-place maps
 * (cmap_t.inplace: 8-byte values, no value destructor), whose writers
 * work in place under the protocol of inplace.c: a replace writes a value
 * word, and in an appending map (cmap_t.append: keys of at most 8 bytes
 * too) an insert fills the entry at cnt < cap and then raises cnt.  ipw
 * names a pending writer's descriptor (desc_t) or none; once a copier has
 * frozen the bucket (IPW_FROZEN) no new in-place write can begin.
 */
typedef struct bucket {
	/* The entries: immutable once published, except that an append
	 * raises it (release) while ipw names the appender's descriptor. */
	_Atomic(uint32_t) cnt;
	/* bit 0 IPW_FROZEN, bits 1..7 IPW_CAP (immutable once published),
	 * bits 8..31 a descriptor's index + 1, or 0. */
	_Atomic(uint32_t) ipw;
	_Alignas(8) unsigned char data[];
} bucket_t;

#define IPW_FROZEN    1u
#define IPW_CAP_SHIFT 1
#define IPW_CAP	      (127u << IPW_CAP_SHIFT)
#define IPW_SHIFT     8

_Static_assert(BMAX <= 127 && BMERGE <= 127, "capacity field too narrow");

/* An in-place write in progress on a bucket (inplace.c): value word i
 * goes from exp to val (D_ANY: from whatever it holds), or (D_APPEND) the
 * entry {key exp, value val} is appended at i, the count it was announced
 * on.  Immutable while a bucket's ipw names it; next links the map's free
 * descriptors. */
enum { D_COND, D_ANY, D_APPEND };
typedef struct desc {
	uint64_t exp, val;
	uint32_t i;
	uint32_t kind;
	_Atomic(uint32_t) next;
} desc_t;

/* Descriptor chunks per map: chunk k holds 32 << k descriptors. */
#define DCHUNKS 26

/* A variable-length entry: key bytes, then the value 8-byte aligned. */
typedef struct blob {
	uint32_t klen, vlen;
	_Alignas(8) unsigned char data[];
} blob_t;

typedef struct vent {
	uint64_t hash;
	blob_t *blob;
} vent_t;

static inline bool is_bucket(uintptr_t v)
{
	return v & T_BUCKET;
}
static inline bool is_frozen(uintptr_t v)
{
	return v & T_FROZEN;
}
static inline inner_t *as_inner(uintptr_t v)
{
	return (inner_t *)(v & ~T_MASK);
}
static inline bucket_t *as_bucket(uintptr_t v)
{
	return (bucket_t *)(v & ~T_MASK);
}
static inline unsigned hidx(uint64_t h, unsigned level)
{
	return (unsigned)((h >> (level * BITS)) & MASK);
}
static inline size_t align8(size_t n)
{
	return (n + 7) & ~(size_t)7;
}
static inline size_t align16(size_t n)
{
	return (n + 15) & ~(size_t)15;
}

/* ==== pool.c: node memory =============================================== */

/* Classes of 16, 32, ..., 2048 bytes: a full bucket of 16-byte keys and
 * 32-byte values fits. */
#define POOL_GRAN   16
#define POOL_NCLASS 128
#define POOL_MAX    (POOL_GRAN * POOL_NCLASS)
/* Pages hold blocks of one class; aligned, so a block's page header is
 * found by masking its address (pool.c, header comment). */
#define POOL_PAGE ((size_t)32 << 10)
/* Bytes of the map's nursery (blocks of threads without a pool). */
#define POOL_NURSERY 1024

/* Page states (pool_page_t.state); see pool.c. */
enum { PG_CURRENT = 1, PG_PARTIAL = 2, PG_FULL = 3, PG_EMPTY = 4 };

struct pool_chunk;
struct pool_local;

/* The header at the start of every page in use.  Written only by the
 * owner (the pool of one thread record); other threads read only owner,
 * and only while they hold a block of the page. */
typedef struct pool_page {
	void *free; /* free blocks; while PG_CURRENT they are in the owner's
		       free[cls] instead */
	struct pool_local *owner;
	struct pool_chunk *chunk;
	struct pool_page *next, *prev; /* owner's partial[cls] or empty list */
	uint32_t nfree;		       /* blocks on free */
	uint32_t cap;		       /* blocks the page holds */
	uint32_t ncarved;	       /* blocks carved so far */
	uint16_t cls;
	uint8_t state;
} pool_page_t;

/* One thread record's pool (made on demand; only its record's owner uses
 * it, except inbox). */
typedef struct pool_local {
	void *free[POOL_NCLASS];	   /* free blocks of cur[c] */
	pool_page_t *cur[POOL_NCLASS];	   /* the page allocations carve */
	pool_page_t *partial[POOL_NCLASS]; /* pages with free blocks */
	pool_page_t *empty;		   /* wholly free pages kept */
	unsigned nempty;
	unsigned nrbuf;
	void *rbuf; /* freed blocks of other pools' pages, not yet sent */
	/* Compaction (compact.c): pages in use and on the partial lists, how
	 * many partial ones make a look due, collects since the last look,
	 * and whether a pass is on (half-empty pages are then never made
	 * current). */
	unsigned npages, npartial, gate, since;
	bool compacting;
	/* Blocks of our pages freed by other threads (a stack, link0). */
	_Alignas(CACHELINE) _Atomic(void *) inbox;
} pool_local_t;

typedef struct pool_shared {
	/* The map's page pool: a spinlock held for O(1) work (and madvise)
	 * around the fields up to reserved, never across a hook call. */
	_Atomic(unsigned) lock;
	bool decommit; /* free pages may be madvised (the default hooks) */
	struct pool_chunk *chunks; /* every chunk */
	struct pool_chunk *avail;  /* chunks with free pages */
	size_t chunk_size;	   /* of the next chunk */
	size_t nfree_pages;	   /* pages of avail's chunks not in use */
	size_t ncommitted;	   /* of those, not madvised */
	_Atomic(size_t) reserved;  /* bytes obtained from the hooks */
	/* The nursery (pool.c, COLD_ALLOCS): carved with an atomic add. */
	_Atomic(size_t) nursery_used;
	_Alignas(16) unsigned char nursery[POOL_NURSERY];
} pool_shared_t;

struct rec;
void *cmap__alloc_slow(cmap_t *m, struct rec *r, size_t size);
void cmap__dealloc_slow(cmap_t *m, struct rec *r, void *p, size_t size);
void cmap__pool_flush(cmap_t *m, struct rec *r);
void cmap__pool_release_all(cmap_t *m);
/* Compaction's questions to the pool (compact.c). */
bool cmap__pool_sparse(const cmap_t *m, const struct rec *r, const void *p,
		       size_t size);
bool cmap__pool_fragmented(cmap_t *m, struct rec *r, bool asked);
void cmap__pool_compacting(struct rec *r, bool on);
void cmap__pool_trim(cmap_t *m, struct rec *r);
void cmap__pool_lock(cmap_t *m);
void cmap__pool_unlock(cmap_t *m);

static inline unsigned pool_cls(size_t size)
{
	return (unsigned)((size - 1) / POOL_GRAN);
}
static inline size_t pool_cls_size(unsigned c)
{
	return (size_t)(c + 1) * POOL_GRAN;
}
static inline pool_page_t *pool_page_of(const void *p)
{
	return (pool_page_t *)((uintptr_t)p & ~(uintptr_t)(POOL_PAGE - 1));
}

/* ==== epoch.c: threads and reclamation ================================== */

/* What a garbage item is; low bits of gitem.aux. */
enum {
	G_USER = 0,   /* fn(p) */
	G_INNER = 1,  /* free an inner node */
	G_BUCKET = 2, /* free a bucket; maybe destroy entry aux>>4 */
	G_BLOB = 3,   /* free a blob; maybe destroy its key/value */
	G_KIND = 3,
	G_DKEY = 4, /* destroy the key of the named entry */
	G_DVAL = 8, /* destroy the value of the named entry */
};

typedef struct gitem {
	void *p;
	void (*fn)(void *);
	uintptr_t aux;
} gitem_t;

/*
 * items[0, base) are freed already, items[base, old) have expired (their
 * tags are older than epoch), items[old, n) were retired with tag epoch.
 * Expired items are freed a budget at a time (epoch.c, free_some), so a
 * backlog is never freed inside one operation.
 */
typedef struct bag {
	uint64_t epoch; /* global epoch read when its items were retired */
	size_t base, old, n, cap;
	gitem_t *items;
} bag_t;

/*
 * An object retired with tag g (the epoch read after its unlink) is freed
 * once E >= g + GRACE.  GRACE is 3, not Fraser's 2: under the C11 model (and
 * on POWER) a reader whose only StoreLoad barrier is the reclaimer's
 * membarrier can hold an object tagged one below its announced epoch
 * (docs/DESIGN.md, "Reclamation").  A record keeps NBAGS = GRACE + 1 bags,
 * indexed g % NBAGS, so the bag that epoch g reuses holds tags <= g - 4,
 * already expired.
 */
#define GRACE 3
#define NBAGS (GRACE + 1)

/*
 * How readers order their announcement before their trie reads, process
 * wide (cmap__rdmode).  RD_MEMBARRIER: a compiler barrier, the reclaimer's
 * membarrier() does the rest.  RD_FENCED: a full fence of their own.  The
 * mode only ever goes from RD_MEMBARRIER to RD_FENCED (when membarrier is
 * unavailable, disabled by CMAP_NO_MEMBARRIER, or fails at run time).
 *
 * Record state: (epoch << 2) | mode | 1 inside an operation, mode outside,
 * where mode is the reader mode the owner read when it stored the state.
 * RD_FENCED in a state proves that every later operation of its owner
 * fences (the mode never goes back) and every earlier one has ended.
 */
enum { RD_MEMBARRIER = 0, RD_FENCED = 2, ST_ACTIVE = 1, ST_SHIFT = 2 };

struct tctx;

/*
 * A thread's record in one map.  The first cache line is written only by
 * the owning thread; other threads read it when advancing the epoch or
 * summing len.
 */
typedef struct rec {
	/* (epoch << ST_SHIFT) | mode | ST_ACTIVE inside an operation, mode
	 * outside (see RD_FENCED). */
	_Atomic(uint64_t) state;
	/* Set by a thread that wants this record's garbage and pool while
	 * its owner is idle (epoch.c, "Idle threads"): the owner's next
	 * operation takes the slow path (cmap__revoked) before touching
	 * either. */
	_Atomic(unsigned) revoked;
	/* Entries inserted minus entries removed by this record. */
	_Atomic(int64_t) count;
	/* Retired objects not yet freed (for stats). */
	_Atomic(size_t) pending;
	/* Blocks compaction moved (for stats). */
	_Atomic(size_t) moved;
	unsigned nest;	     /* critical-section nesting (get_with callbacks) */
	unsigned in_reclaim; /* running destructors: no retiring now */
	unsigned no_write;   /* in a compute fn or retain predicate */
	unsigned since_collect; /* retirements since the last collect */
	unsigned cold;		/* blocks taken from the map's nursery */
	bool compacting;	/* a compaction pass is on (compact.c) */
	uint64_t cnext;		/* its position */
	/* The thread's own free lists and chunk, made on demand (pool.c):
	 * a thread that barely uses a map costs it no more than this. */
	pool_local_t *pool;
	/* The descriptor for this thread's next in-place write (trie.c),
	 * taken on demand (index + 1 in didx); given to the bucket when a
	 * copier froze it with the descriptor in it. */
	desc_t *desc;
	uint32_t didx;
	bag_t bags[NBAGS];
	/* Ownership, protected by the process-wide registry lock.  stolen:
	 * taken from its idle owner, whose next operation takes it back (or,
	 * while reaping, hands it over and joins anew); stealer: the record
	 * of the thread whose steal waits on its barrier (the owner may veto
	 * it; a release clears it, so a steal decides only on its own). */
	struct tctx *owner;
	size_t owner_slot;
	struct rec *stealer;
	bool stolen, reaping;
	/* Reapers' note (under g_lock): pending as seen at epoch
	 * seen_epoch; unchanged for GRACE + 1 epochs means an idle owner. */
	size_t seen_pending;
	uint64_t seen_epoch;
	struct rec *next; /* map's record list; immutable once pushed */
} __attribute__((aligned(CACHELINE))) rec_t;

rec_t *cmap__join(cmap_t *m);
rec_t *cmap__revoked(cmap_t *m, rec_t *r);
/* Is the calling thread inside an operation on m (a callback)? */
bool cmap__inside(const cmap_t *m);
void cmap__maybe_collect(cmap_t *m, rec_t *r);
/* Compaction (compact.c).  Is a pass under way, started now if r's pages
 * are fragmented?  Inside an operation: r's pool is looked at, and only
 * an owner inside one may (epoch.c, "Idle threads"). */
bool cmap__compact_due(cmap_t *m, rec_t *r, bool all);
/* Walk a budget of the pass under way (all: to its end); each slice is an
 * operation of its own.  Outside any operation. */
void cmap__compact(cmap_t *m, rec_t *r, bool all);
void cmap__compact_start(cmap_t *m, rec_t *r);
size_t cmap__nrecords(const cmap_t *m);
int cmap__reserve_slow(cmap_t *m, rec_t *r, size_t k);

/* Make room for k retirements in every bag before an operation, so that
 * retiring after its CAS cannot fail.  Every bag: the tag of a retirement
 * is not confined to the epoch announced (or the next): a thread delayed
 * between reading E and announcing may announce an epoch that E has
 * already left, and nothing then bounds E by its announcement. */
static inline int cmap__reserve(cmap_t *m, rec_t *r, size_t k)
{
	for (int i = 0; i < NBAGS; i++)
		if (r->bags[i].cap - r->bags[i].n < k)
			return cmap__reserve_slow(m, r, k);
	return CMAP_OK;
}
void cmap__epoch_register(cmap_t *m);
void cmap__epoch_free_all(cmap_t *m);
size_t cmap__pending(const cmap_t *m);
void cmap__global_init(void);
extern _Atomic(unsigned) cmap__rdmode;

/* ==== the map (trie.c) ================================================== */

struct cmap {
	/* Read by every operation; written only by epoch advances. */
	_Alignas(CACHELINE) inner_t *root;
	uint64_t id;
	cmap_hash_fn hash;
	uint64_t seed;
	cmap_eq_fn eq;
	uint32_t ks, vs;
	bool var;     /* ks == 0 || vs == 0: entries are blobs */
	bool inplace; /* replaces write the value word in place (inplace.c) */
	bool append;  /* and inserts append in place (inplace.c) */
	bool dying;   /* cmap_free has begun: writes are refused */
	unsigned flags;
	_Atomic(uint64_t) epoch;

	/* In-place write descriptors (trie.c): chunks made on demand, the
	 * free ones on a stack whose head is (tag << 32) | (index + 1). */
	_Atomic(desc_t *) dchunk[DCHUNKS];
	_Atomic(uint32_t) dnext; /* indexes handed out so far */
	_Atomic(uint64_t) dfree;

	_Alignas(CACHELINE) _Atomic(rec_t *) recs;
	/* The process's list of live maps (for fork), under the registry
	 * lock. */
	struct cmap *reg_prev, *reg_next;
	/* Set once every record of the map is seen in RD_FENCED mode: from
	 * then on a local fence is the reclaimer's half of the barrier. */
	_Atomic(bool) all_fenced;
	/* CLOCK_MONOTONIC ns of the last advance (or creation), for stats. */
	_Atomic(uint64_t) advanced_ns;
	pool_shared_t pool;
	cmap_config_t cfg;
};

/* ==== pool.c: the inline fast paths (they read the map's nursery) ==== */

/* The allocation fast path (inline: a set allocates once or twice): pop
 * the free list of the thread's current page of the size class;
 * everything else (pages, chunks, hooks) is in pool.c. */
static inline void *pool_alloc(cmap_t *m, pool_local_t *pl, struct rec *r,
			       size_t size, bool pooled)
{
	if (pooled && pl && size <= POOL_MAX) {
		unsigned c = pool_cls(size);
		void *p = pl->free[c];
		if (p) {
			pl->free[c] = *(void **)p;
			/* The next pop reads the new head's link: fetch it
			 * now, so the free list costs no dependent miss. */
			if (pl->free[c])
				__builtin_prefetch(pl->free[c], 1);
			UNPOISON(p, pool_cls_size(c));
			return p;
		}
	}
	return cmap__alloc_slow(m, r, size);
}

/* The free fast path: a block of one of the thread's own pages goes back
 * to it, unless that empties the page or the page was full.  Blocks of
 * other threads' pages and of the nursery take the slow path. */
static inline void pool_dealloc(cmap_t *m, pool_local_t *pl, struct rec *r,
				void *p, size_t size, bool pooled)
{
	if (p && pooled && pl && size <= POOL_MAX &&
	    (uintptr_t)p - (uintptr_t)m->pool.nursery >= POOL_NURSERY) {
		pool_page_t *pg = pool_page_of(p);
		if (pg->owner == pl) {
			unsigned c = pool_cls(size);
			void **head;
			if (pg->state == PG_CURRENT)
				head = &pl->free[c];
			else if (pg->state == PG_PARTIAL &&
				 pg->nfree + 1 < pg->cap) {
				head = &pg->free;
				pg->nfree++;
			} else {
				goto slow;
			}
			/* Two link words stay unpoisoned (remote frees'
			 * chains use the first). */
			*(void **)p = *head;
			POISON((char *)p + 2 * sizeof(void *),
			       pool_cls_size(c) - 2 * sizeof(void *));
			*head = p;
			return;
		}
	}
slow:
	cmap__dealloc_slow(m, r, p, size);
}

/* Node memory for thread record r (NULL: no record, e.g. in cmap_new or
 * cmap_free, which go to the hooks or release chunks wholesale). */
static inline void *cmap__alloc(cmap_t *m, rec_t *r, size_t size)
{
	return pool_alloc(m, r ? r->pool : NULL, r, size,
			  r && !(m->flags & CMAP_NO_POOL));
}

static inline void cmap__dealloc(cmap_t *m, rec_t *r, void *p, size_t size)
{
	pool_dealloc(m, r ? r->pool : NULL, r, p, size,
		     r && !(m->flags & CMAP_NO_POOL));
}

/*
 * Retire p: it is unlinked from the trie, and is freed (or fn(p) runs)
 * once every thread has left the operations that could have read it.
 * Room was reserved before the operation (cmap__reserve), so this cannot
 * fail.  Inline: every update retires one object.
 */
static inline void cmap__retire(cmap_t *m, rec_t *r, void *p,
				void (*fn)(void *), uintptr_t aux)
{
	/* seq_cst: ordered after the unlinking seq_cst CAS in the single
	 * total order, so the tag is at least the epoch any reader of p
	 * announced, minus one (epoch.c, header comment). */
	uint64_t g = ld_seqcst(&m->epoch);
	bag_t *b = &r->bags[g % NBAGS];
	if (unlikely(b->epoch != g)) {
		/* The bag holds epoch g - NBAGS or older (tags only grow, by
		 * coherence), whose grace period is over: those items join
		 * the expired part, freed by later collects (epoch.c,
		 * free_some), never inside an operation. */
		b->old = b->n;
		b->epoch = g;
	}
	b->items[b->n++] = (gitem_t){p, fn, aux};
	st_relaxed(&r->pending, ld_relaxed(&r->pending) + 1);
	r->since_collect++;
}

size_t cmap__bucket_bytes(const cmap_t *m, uint32_t n);
size_t cmap__blob_bytes(uint32_t klen, uint32_t vlen);
void cmap__desc_put(cmap_t *m, uint32_t idx);

/* A published bucket's entry count.  Acquire: pairs with an append's
 * release store of the count, so the appended entry is seen (buckets of
 * maps that do not append are ordered by the slot load before). */
static inline uint32_t bucket_n(bucket_t *b)
{
	return ld_acquire(&b->cnt);
}

/* The entries b is allocated for.  Relaxed: the capacity field is set
 * before the bucket is published and never changes, nor does the count of
 * a bucket without one. */
static inline uint32_t bucket_cap(bucket_t *b)
{
	uint32_t c = (ld_relaxed(&b->ipw) & IPW_CAP) >> IPW_CAP_SHIFT;
	return c ? c : ld_relaxed(&b->cnt);
}

static inline size_t bucket_size(const cmap_t *m, bucket_t *b)
{
	return cmap__bucket_bytes(m, bucket_cap(b));
}

/* Accessors for bucket contents (trie.c); validate.c uses them too. */
static inline unsigned char *bkey(const cmap_t *m, bucket_t *b, uint32_t i)
{
	return b->data + (size_t)i * m->ks;
}
static inline unsigned char *bval(const cmap_t *m, bucket_t *b, uint32_t i)
{
	return b->data + align16((size_t)bucket_cap(b) * m->ks) +
	       (size_t)i * m->vs;
}
/* Read a fixed-size value of a published bucket.  An 8-byte value is one
 * atomic load (in-place maps change it under readers).  Acquire: pairs with
 * the release CAS of the in-place write that stored it, so what a stored
 * pointer points to is seen (cmap.h, guarantee 4). */
static inline void read_val(const cmap_t *m, void *dst, const unsigned char *v)
{
	if (m->vs == 8) {
		uint64_t x = ld_acquire((_Atomic(uint64_t) *)(uintptr_t)v);
		__builtin_memcpy(dst, &x, 8);
	} else {
		__builtin_memcpy(dst, v, m->vs);
	}
}
static inline vent_t *bvent(bucket_t *b, uint32_t i)
{
	return (vent_t *)b->data + i;
}
static inline unsigned char *blob_val(blob_t *bl)
{
	return bl->data + align8(bl->klen);
}

/*
 * Free one expired garbage item, running the destructors its entry is owed
 * first.  Inline (epoch.c's reclamation loop is its only caller): one item
 * per update passes through here, and without destructors configured the
 * branches reduce to a free-list push.
 */
static inline void cmap__reclaim_item(cmap_t *m, rec_t *r, gitem_t *g)
{
	uintptr_t a = g->aux;
	const cmap_config_t *c = &m->cfg;
	switch (a & G_KIND) {
	case G_USER:
		g->fn(g->p);
		break;
	case G_INNER:
		cmap__dealloc(m, r, g->p, sizeof(inner_t));
		break;
	case G_BUCKET: {
		bucket_t *b = g->p;
		uint32_t i = (uint32_t)(a >> 4);
		/* A descriptor left in a frozen bucket is freed with it. */
		uint32_t w = ld_relaxed(&b->ipw) >> IPW_SHIFT;
		if (w)
			cmap__desc_put(m, w - 1);
		if ((a & G_DKEY) && c->key_dtor)
			c->key_dtor(bkey(m, b, i), m->ks, c->dtor_ctx);
		if ((a & G_DVAL) && c->val_dtor)
			c->val_dtor(bval(m, b, i), m->vs, c->dtor_ctx);
		cmap__dealloc(m, r, b, bucket_size(m, b));
		break;
	}
	case G_BLOB: {
		blob_t *bl = g->p;
		if ((a & G_DKEY) && c->key_dtor)
			c->key_dtor(bl->data, bl->klen, c->dtor_ctx);
		if ((a & G_DVAL) && c->val_dtor)
			c->val_dtor(blob_val(bl), bl->vlen, c->dtor_ctx);
		cmap__dealloc(m, r, bl, cmap__blob_bytes(bl->klen, bl->vlen));
		break;
	}
	}
}

/* ==== epoch.c: the hot path, inline ==================================== */

/* The calling thread's record for the map it used last.  id guards against
 * a new map allocated at a freed map's address. */
struct tlcache {
	cmap_t *m;
	uint64_t id;
	rec_t *r;
};
#ifndef CMAP_MODELCHECK
extern __attribute__((
    tls_model("initial-exec"))) _Thread_local struct tlcache cmap__tl;
#else
/* GenMC keeps no struct in thread-local storage: one per thread id
 * (tests/modelcheck/epoch_mc.c). */
extern struct tlcache mc_tl[];
#define cmap__tl (mc_tl[mc_self()])
#endif

/* Enter an operation on m (nestable).  NULL only when joining the map
 * failed for lack of memory. */
static inline rec_t *cmap__enter(cmap_t *m)
{
	rec_t *r = cmap__tl.r;
	if (unlikely(cmap__tl.m != m || cmap__tl.id != m->id)) {
		r = cmap__join(m);
		if (!r)
			return NULL;
	}
	if (r->nest++ == 0) {
		/* Relaxed: a stale RD_MEMBARRIER is harmless, the reclaimer
		 * waits until it sees this record in RD_FENCED (epoch.c). */
		unsigned mode = ld_relaxed(&cmap__rdmode);
		/* Acquire: pairs with the seq_cst advance that wrote E. */
		uint64_t e = ld_acquire(&m->epoch);
		/* Release: a scan that sees this value also sees (happens
		 * after) every read of our earlier operations. */
		st_release(&r->state, (e << ST_SHIFT) | mode | ST_ACTIVE);
		/* StoreLoad between the announcement and our trie reads: the
		 * reclaimer's membarrier supplies it, or we pay for it. */
		if (likely(mode == RD_MEMBARRIER))
			atomic_signal_fence(memory_order_seq_cst);
		else
			full_fence(&r->state);
			/* Relaxed, after the StoreLoad: a thread stealing the
			 * record stores revoked, then runs the barrier, then
			 * reads state, so either it sees us inside or we see
			 * revoked (epoch.c, "Idle threads"). */
#ifndef MC_REVERT_REVOKED /* a model-checking seam (tests/modelcheck) */
		if (unlikely(ld_relaxed(&r->revoked)))
			r = cmap__revoked(m, r);
#endif
	}
	return r;
}

static inline void cmap__leave(rec_t *r)
{
	/* Release: pairs with the scan's acquire, ordering every read of
	 * this operation before any free that the scan allows (and, for a
	 * thread stealing the record, every access to its bags and pool).
	 * The mode read now (relaxed) may be newer than the one this
	 * operation ran in: storing RD_FENCED is still true of every later
	 * operation. */
	if (--r->nest == 0)
		st_release(&r->state, ld_relaxed(&cmap__rdmode));
}

#endif /* CMAP_INTERNAL_H */
