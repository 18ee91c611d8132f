/*
 * Node memory.  Inner nodes, buckets and blobs up to POOL_MAX bytes come
 * from per-thread free lists, one per 16-byte size class, refilled from
 * chunks that the thread carves with a bump pointer.  The allocator hooks
 * are called only for chunks (and for objects larger than POOL_MAX), so an
 * insert usually costs no call into malloc and no atomic.
 *
 * A thread's free lists and chunks cost ~1.5 KiB plus a 64 KiB chunk per
 * map it writes, too much for programs with thousands of small maps.  So a
 * thread starts without them: its first COLD_ALLOCS blocks in a map come
 * from the map's nursery, one small chunk that every such thread carves
 * with an atomic add; its first free, or its next allocation, gives it its
 * own lists.  Nursery blocks are ordinary blocks of map-owned chunks.
 *
 * Why per-thread lists are enough: a block is freed by the thread that
 * retired it, after its grace period, into that thread's own list.  When
 * one thread frees much more than it allocates (a remover next to an
 * inserter), its list of a class grows past POOL_LOCAL_MAX and it hands a batch
 * of BATCH blocks to the map's depot for that class, a lock-free stack of
 * batches.  Popping takes the whole stack with one exchange (so there is no
 * ABA problem), keeps one batch and pushes the rest back.
 *
 * Chunks start at 64 KiB per thread and double up to 2 MiB; 2 MiB chunks
 * are 2 MiB-aligned and advised MADV_HUGEPAGE, so the part of the trie that
 * misses in cache costs a TLB miss less often.  Chunks are returned only by
 * cmap_free.  Free blocks are poisoned for AddressSanitizer (all but the
 * two link words), so a use after reclamation is reported.
 */
#include <string.h>
#include <sys/mman.h>

#include "internal.h"

#define CHUNK_MIN   ((size_t)64 << 10)
#define CHUNK_MAX   ((size_t)2 << 20)
#define CHUNK_HDR   64
#define BATCH	    256
#define NURSERY_MIN ((size_t)1 << 10)
#define COLD_ALLOCS 32

struct chunk {
	struct chunk *next;
	size_t size;
};

struct nursery {
	struct chunk c;
	_Atomic(size_t) used; /* bytes carved, header included; may overshoot */
};
_Static_assert(sizeof(struct nursery) <= CHUNK_HDR, "nursery header");

static void **link0(void *p)
{
	return (void **)p;
}
static void **link1(void *p)
{
	return (void **)p + 1;
}

static void *hook_alloc(cmap_t *m, size_t size, size_t align)
{
	return m->cfg.alloc(m->cfg.alloc_ctx, size, align);
}

/* Put c (its size set) on the map's chunk list, which cmap_free releases.
 * Only c->next is written: a nursery chunk is already shared. */
static void keep_chunk(cmap_t *m, struct chunk *c)
{
	c->next = ld_relaxed(&m->pool.chunks);
	/* Release/acquire is not needed: the list is read only by cmap_free,
	 * which runs after every user thread is done. */
	while (!atomic_compare_exchange_weak_explicit(
	    &m->pool.chunks, (void **)&c->next, c, memory_order_relaxed,
	    memory_order_relaxed))
		;
	atomic_fetch_add_explicit(&m->pool.reserved, c->size,
				  memory_order_relaxed); /* statistic */
}

static bool new_chunk(cmap_t *m, pool_local_t *pl)
{
	size_t size = pl->chunk_size ? pl->chunk_size : CHUNK_MIN;
	struct chunk *c = hook_alloc(m, size, size == CHUNK_MAX ? size : 64);
	if (!c)
		return false;
	if (size == CHUNK_MAX)
		(void)madvise(c, size, MADV_HUGEPAGE); /* advice only */
	c->size = size;
	keep_chunk(m, c);
	pl->bump = (char *)c + CHUNK_HDR;
	pl->bump_end = (char *)c + size;
	POISON(pl->bump, size - CHUNK_HDR);
	if (size < CHUNK_MAX)
		pl->chunk_size = size * 2;
	return true;
}

static void depot_push(cmap_t *m, unsigned c, void *first, void *last)
{
	void *head = ld_relaxed(&m->pool.depot[c]);
	do
		*link1(last) = head;
	/* Release: the popper (acquire) sees the batches' links. */
	while (!atomic_compare_exchange_weak_explicit(
	    &m->pool.depot[c], &head, first, memory_order_release,
	    memory_order_relaxed));
}

static void *depot_pop(cmap_t *m, unsigned c)
{
	if (!ld_relaxed(&m->pool.depot[c]))
		return NULL;
	/* Acquire: pairs with depot_push's release. */
	void *all = atomic_exchange_explicit(&m->pool.depot[c], NULL,
					     memory_order_acquire);
	if (!all)
		return NULL;
	void *rest = *link1(all);
	if (rest) {
		void *last = rest;
		while (*link1(last))
			last = *link1(last);
		depot_push(m, c, rest, last);
	}
	return all;
}

/* A block of sz bytes (a class size) from the map's nursery. */
static void *nursery_alloc(cmap_t *m, size_t sz)
{
	for (;;) {
		/* Acquire: pairs with the release CAS that installed nc, so
		 * its header is seen initialised. */
		struct nursery *nc = ld_acquire(&m->pool.nursery);
		if (nc) {
			size_t off = atomic_fetch_add_explicit(
			    &nc->used, sz, memory_order_relaxed);
			if (off + sz <= nc->c.size) {
				void *p = (char *)nc + off;
				UNPOISON(p, sz);
				return p;
			}
		}
		size_t size = nc ? 2 * nc->c.size : NURSERY_MIN;
		if (size > CHUNK_MIN)
			size = CHUNK_MIN;
		while (size < CHUNK_HDR + sz)
			size *= 2;
		struct nursery *n = hook_alloc(m, size, 64);
		if (!n)
			return NULL;
		n->c.size = size;
		atomic_init(&n->used, CHUNK_HDR);
		POISON((char *)n + CHUNK_HDR, size - CHUNK_HDR);
		/* Release: publishes n's header (pairs with the acquire
		 * above).  The loser of a race gives its chunk back. */
		if (atomic_compare_exchange_strong_explicit(
			&m->pool.nursery, &nc, n, memory_order_release,
			memory_order_relaxed)) {
			keep_chunk(m, &n->c);
		} else {
			UNPOISON(n, size);
			m->cfg.free(m->cfg.alloc_ctx, n, size);
		}
	}
}

/* Give r its own free lists. */
static pool_local_t *pool_of(cmap_t *m, rec_t *r)
{
	if (!r->pool) {
		pool_local_t *pl = hook_alloc(m, sizeof *pl, CACHELINE);
		if (!pl)
			return NULL;
		memset(pl, 0, sizeof *pl);
		r->pool = pl;
	}
	return r->pool;
}

/* Everything pool_alloc (internal.h) does not do inline: objects for the
 * hooks, a thread without lists of its own, and a class whose local list
 * is empty (depot, then a chunk). */
void *cmap__alloc_slow(cmap_t *m, rec_t *r, size_t size)
{
	if (size > POOL_MAX || (m->flags & CMAP_NO_POOL) || !r)
		return hook_alloc(m, size, 16);
	unsigned c = pool_cls(size);
	size_t sz = pool_cls_size(c);
	if (!r->pool && r->cold < COLD_ALLOCS) {
		void *p = nursery_alloc(m, sz);
		r->cold += p != NULL;
		return p;
	}
	pool_local_t *pl = pool_of(m, r);
	if (!pl)
		return NULL;
	if (!pl->free[c]) {
		void *batch = depot_pop(m, c);
		if (batch) {
			pl->free[c] = batch;
			pl->nfree[c] = BATCH;
		}
	}
	if (pl->free[c])
		return pool_alloc(m, pl, r, size, true);
	if ((size_t)(pl->bump_end - pl->bump) < sz && !new_chunk(m, pl))
		return NULL;
	void *p = pl->bump;
	pl->bump += sz;
	UNPOISON(p, sz);
	return p;
}

/* Everything pool_dealloc does not do inline: objects of the hooks, and
 * a local list that grew past POOL_LOCAL_MAX.  r == NULL only from
 * cmap_free, which releases the chunks wholesale. */
void cmap__dealloc_slow(cmap_t *m, rec_t *r, void *p, size_t size)
{
	if (!p)
		return;
	if (size > POOL_MAX || (m->flags & CMAP_NO_POOL)) {
		m->cfg.free(m->cfg.alloc_ctx, p, size);
		return;
	}
	/* Without lists of its own (and no memory to make them), the block
	 * stays unused in its chunk until cmap_free. */
	pool_local_t *pl = r ? pool_of(m, r) : NULL;
	if (!pl)
		return;
	unsigned c = pool_cls(size);
	*link0(p) = pl->free[c];
	POISON((char *)p + 2 * sizeof(void *),
	       pool_cls_size(c) - 2 * sizeof(void *));
	pl->free[c] = p;
	if (++pl->nfree[c] <= POOL_LOCAL_MAX)
		return;
	/* Spill the first BATCH blocks as one batch. */
	void *last = p;
	for (int i = 1; i < BATCH; i++)
		last = *link0(last);
	pl->free[c] = *link0(last);
	*link0(last) = NULL;
	pl->nfree[c] -= BATCH;
	/* A batch is a link0 chain of BATCH blocks; the depot links batches
	 * through their first blocks' link1. */
	depot_push(m, c, p, p);
}

void cmap__pool_release_all(cmap_t *m)
{
	struct chunk *c = ld_relaxed(&m->pool.chunks);
	while (c) {
		struct chunk *next = c->next;
		UNPOISON(c, c->size);
		m->cfg.free(m->cfg.alloc_ctx, c, c->size);
		c = next;
	}
	st_relaxed(&m->pool.chunks, NULL);
	st_relaxed(&m->pool.nursery, NULL);
	for (unsigned i = 0; i < POOL_NCLASS; i++)
		st_relaxed(&m->pool.depot[i], NULL);
}
