/*
 * Node memory.  Inner nodes, buckets and blobs up to POOL_MAX bytes come
 * from pages of POOL_PAGE (32 KiB) bytes, each holding blocks of one
 * 16-byte size class, carved out of chunks obtained from the allocator
 * hooks.  Pages are POOL_PAGE-aligned and start with their header
 * (pool_page_t), so a block's page is its address masked; a chunk's header
 * follows the header of its first page.  The hooks are called only for
 * chunks (and for objects larger than POOL_MAX).
 *
 * Ownership.  A page in use belongs to one thread record's pool (owner,
 * fixed until the page is wholly free again); only the record's current
 * owner thread touches the page's header fields other than owner.  Each
 * pool has, per class, a current page (its free blocks are the pool's
 * free[c] list, which the inline pool_alloc pops: no atomic), a list of
 * partial pages (free blocks on the page's own list) and full pages (on no
 * list).  A block freed by its page's owner goes straight back (the inline
 * pool_dealloc handles the current and partial pages).  Blocks are freed
 * by the thread whose garbage bag held them, often not the allocating one:
 * such a "remote" block is queued in the freer's rbuf (no atomic), and
 * rbuf is sent, grouped by owner, one CAS per owner, to each owner's inbox
 * once RBUF_MAX blocks are queued and at the end of every garbage bag
 * freed (cmap__pool_flush, from epoch.c's free_some).  An owner drains its
 * inbox when a class of its runs dry and at the end of its bags.
 *
 * Invariant: for a page not current, nfree counts the blocks on its free
 * list and ncarved == cap; blocks in an rbuf or an inbox count as in use.
 * So nfree == cap means no block of the page is anywhere but on its list:
 * nobody else can be reading the page's header, and the owner may give
 * the page away.  A current page is never given away.
 *
 * Cross-class reuse and returning memory.  A wholly free page goes to its
 * owner's empty list (up to EMPTY_KEEP pages, reused for any class without
 * a lock) or to the map's page pool, a per-chunk bitmap of free pages
 * under a spinlock (taken once per page, never across a hook call; O(1)).
 * With the default hooks, free pages beyond KEEP_PAGES per map are
 * madvised MADV_DONTNEED (refaulted as zeros when reused); a chunk whose
 * pages are all free is given back to the hooks' free when the map has
 * KEEP_PAGES other free pages (hysteresis: a grow/shrink loop does not
 * alloc and free chunks each round).  Chunks grow from 64 KiB to 2 MiB
 * per map; 2 MiB chunks are 2 MiB-aligned and advised MADV_HUGEPAGE.
 *
 * Many small maps.  A thread's pool costs ~3.2 KiB plus pages, too much
 * for programs with thousands of small maps.  So a thread starts without
 * one: its first COLD_ALLOCS blocks in a map come from the map's nursery,
 * POOL_NURSERY bytes inside the map itself that every such thread carves
 * with an atomic add; when the nursery is used up, or at its first free,
 * the thread gets its own pool.  Nursery blocks are never reused (at most
 * COLD_ALLOCS per record): a freed one stays poisoned until cmap_free.
 *
 * Free blocks, uncarved space and free pages are poisoned for
 * AddressSanitizer (free blocks but their two link words; page and chunk
 * headers never), so a use after reclamation is reported.
 */
#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

#define PAGE	    POOL_PAGE
#define CHUNK_MIN   (2 * PAGE)
#define CHUNK_MAX   ((size_t)2 << 20)
#define PAGE_HDR    64 /* the page header, rounded up */
#define CHUNK_HDR   64 /* the chunk header, after its first page's */
#define EMPTY_KEEP  4  /* wholly free pages a pool keeps */
#define KEEP_PAGES  64 /* free pages a map keeps unadvised (2 MiB) */
#define RBUF_MAX    64
#define COLD_ALLOCS 32

struct pool_chunk {
	struct pool_chunk *next, *prev;	  /* m->pool.chunks */
	struct pool_chunk *anext, *aprev; /* m->pool.avail */
	size_t size;
	uint64_t freemap;     /* pages in the page pool */
	uint64_t decommitted; /* of those, madvised or never touched */
	unsigned npages, nfree;
};
_Static_assert(sizeof(pool_page_t) <= PAGE_HDR, "page header");
_Static_assert(sizeof(struct pool_chunk) <= CHUNK_HDR, "chunk header");
_Static_assert(CHUNK_MAX / PAGE <= 64, "a chunk's pages fit a bitmap");

static void **link0(void *p)
{
	return (void **)p;
}

static void *hook_alloc(cmap_t *m, size_t size, size_t align)
{
	return m->cfg.alloc(m->cfg.alloc_ctx, size, align);
}

/* ---- the map's page pool (under its lock) ------------------------------ */

void cmap__pool_lock(cmap_t *m)
{
	/* Acquire: pairs with the unlock's release. */
	for (unsigned n = 0;; n++) {
		if (!ld_relaxed(&m->pool.lock) &&
		    !atomic_exchange_explicit(&m->pool.lock, 1,
					      memory_order_acquire))
			return;
		if (n >= 64)
			sched_yield();
	}
}

void cmap__pool_unlock(cmap_t *m)
{
	st_release(&m->pool.lock, 0);
}

static char *chunk_base(struct pool_chunk *ch)
{
	return (char *)ch - PAGE_HDR;
}
static pool_page_t *page_at(struct pool_chunk *ch, unsigned i)
{
	return (pool_page_t *)(chunk_base(ch) + (size_t)i * PAGE);
}
static unsigned page_index(pool_page_t *pg)
{
	return (unsigned)(((char *)pg - chunk_base(pg->chunk)) / PAGE);
}
/* Where a page's blocks start. */
static size_t page_off(pool_page_t *pg)
{
	return (char *)pg == chunk_base(pg->chunk) ? PAGE_HDR + CHUNK_HDR
						   : PAGE_HDR;
}

static void avail_link(pool_shared_t *s, struct pool_chunk *ch)
{
	ch->aprev = NULL;
	ch->anext = s->avail;
	if (s->avail)
		s->avail->aprev = ch;
	s->avail = ch;
}

static void avail_unlink(pool_shared_t *s, struct pool_chunk *ch)
{
	if (ch->aprev)
		ch->aprev->anext = ch->anext;
	else
		s->avail = ch->anext;
	if (ch->anext)
		ch->anext->aprev = ch->aprev;
}

/* A free page of the pool, or NULL.  Pages never madvised come first. */
static pool_page_t *take_page(pool_shared_t *s)
{
	struct pool_chunk *ch = s->avail;
	if (!ch)
		return NULL;
	uint64_t bits = ch->freemap & ~ch->decommitted;
	if (!bits)
		bits = ch->freemap;
	unsigned i = (unsigned)__builtin_ctzll(bits);
	uint64_t bit = (uint64_t)1 << i;
	ch->freemap &= ~bit;
	if (!(ch->decommitted & bit))
		s->ncommitted--;
	ch->decommitted &= ~bit;
	ch->nfree--;
	s->nfree_pages--;
	if (!ch->freemap)
		avail_unlink(s, ch);
	pool_page_t *pg = page_at(ch, i);
	pg->chunk = ch;
	return pg;
}

/* A page from the pool, or (grow) from a new chunk. */
static pool_page_t *page_get(cmap_t *m, bool grow)
{
	pool_shared_t *s = &m->pool;
	cmap__pool_lock(m);
	pool_page_t *pg = take_page(s);
	size_t size = s->chunk_size ? s->chunk_size : CHUNK_MIN;
	if (!pg && grow && size < CHUNK_MAX)
		s->chunk_size = 2 * size;
	cmap__pool_unlock(m);
	if (pg || !grow)
		return pg;
	char *base = hook_alloc(m, size, size == CHUNK_MAX ? size : PAGE);
	if (!base)
		return NULL;
	if (size == CHUNK_MAX)
		(void)madvise(base, size, MADV_HUGEPAGE); /* advice only */
	struct pool_chunk *ch = (struct pool_chunk *)(base + PAGE_HDR);
	ch->size = size;
	ch->npages = (unsigned)(size / PAGE);
	POISON(base + PAGE_HDR + CHUNK_HDR, PAGE - PAGE_HDR - CHUNK_HDR);
	for (unsigned i = 1; i < ch->npages; i++)
		POISON(base + i * PAGE + PAGE_HDR, PAGE - PAGE_HDR);
	/* Page 0 is ours; the others go to the pool, as never touched. */
	uint64_t all =
	    ch->npages == 64 ? ~(uint64_t)0 : ((uint64_t)1 << ch->npages) - 1;
	ch->freemap = all & ~(uint64_t)1;
	ch->decommitted = ch->freemap;
	ch->nfree = ch->npages - 1;
	cmap__pool_lock(m);
	ch->prev = NULL;
	ch->next = s->chunks;
	if (s->chunks)
		s->chunks->prev = ch;
	s->chunks = ch;
	if (ch->freemap)
		avail_link(s, ch);
	s->nfree_pages += ch->nfree;
	cmap__pool_unlock(m);
	atomic_fetch_add_explicit(&s->reserved, size,
				  memory_order_relaxed); /* statistic */
	pg = page_at(ch, 0);
	pg->chunk = ch;
	return pg;
}

/* Give back a free page's memory to the system (its header and, in page 0,
 * the chunk's header, stay).  Only with the default hooks: other hooks'
 * memory may be locked, shared or otherwise not ours to advise. */
static size_t ospage(void)
{
	static _Atomic(size_t) size; /* relaxed: every thread stores the same */
	size_t s = ld_relaxed(&size);
	if (!s)
		st_relaxed(&size, s = (size_t)sysconf(_SC_PAGESIZE));
	return s;
}

static bool decommit(cmap_t *m, pool_page_t *pg)
{
	if (!m->pool.decommit || ospage() > PAGE / 2)
		return false;
	/* A free page's header is rewritten when the page is taken again
	 * (take_page), so all of it goes, except in a chunk's first page,
	 * whose first system page holds the chunk's header. */
	char *p = (char *)pg, *end = (char *)pg + PAGE;
	if (p == chunk_base(pg->chunk))
		p += ospage();
	return madvise(p, (size_t)(end - p), MADV_DONTNEED) == 0;
}

/* A wholly free page, owned by nobody now, goes back to the map. */
static void page_put(cmap_t *m, pool_page_t *pg)
{
	pool_shared_t *s = &m->pool;
	struct pool_chunk *ch = pg->chunk;
	uint64_t bit = (uint64_t)1 << page_index(pg);
	size_t off = page_off(pg);
	POISON((char *)pg + off, PAGE - off);
	cmap__pool_lock(m);
	if (!ch->freemap)
		avail_link(s, ch);
	ch->freemap |= bit;
	ch->nfree++;
	s->nfree_pages++;
	if (ch->nfree == ch->npages &&
	    s->nfree_pages - ch->npages >= KEEP_PAGES) {
		s->ncommitted -= (size_t)__builtin_popcountll(
		    ch->freemap & ~ch->decommitted & ~bit);
		s->nfree_pages -= ch->npages;
		avail_unlink(s, ch);
		if (ch->prev)
			ch->prev->next = ch->next;
		else
			s->chunks = ch->next;
		if (ch->next)
			ch->next->prev = ch->prev;
		cmap__pool_unlock(m);
		size_t size = ch->size;
		atomic_fetch_sub_explicit(&s->reserved, size,
					  memory_order_relaxed);
		char *base = chunk_base(ch);
		/* The hooks' free may keep the memory (glibc does, below its
		 * heap's top): give the pages back first. */
		if (s->decommit && ospage() <= PAGE / 2)
			(void)madvise(base + ospage(), size - ospage(),
				      MADV_DONTNEED);
		UNPOISON(base, size);
		m->cfg.free(m->cfg.alloc_ctx, base, size);
		return;
	}
	/* Under the lock: once the bit is set, another thread may take
	 * the page, and a late madvise would wipe its blocks. */
	if (s->ncommitted >= KEEP_PAGES && decommit(m, pg))
		ch->decommitted |= bit;
	else
		s->ncommitted++;
	cmap__pool_unlock(m);
}

/* ---- a thread's pool ------------------------------------------------------
 */

static void partial_link(pool_local_t *pl, pool_page_t *pg)
{
	pl->npartial++;
	pg->state = PG_PARTIAL;
	pg->prev = NULL;
	pg->next = pl->partial[pg->cls];
	if (pg->next)
		pg->next->prev = pg;
	pl->partial[pg->cls] = pg;
}

static void partial_unlink(pool_local_t *pl, pool_page_t *pg)
{
	pl->npartial--;
	if (pg->prev)
		pg->prev->next = pg->next;
	else
		pl->partial[pg->cls] = pg->next;
	if (pg->next)
		pg->next->prev = pg->prev;
}

/* pg (not current) has just become wholly free. */
static void page_release(cmap_t *m, pool_local_t *pl, pool_page_t *pg)
{
	partial_unlink(pl, pg);
	pl->npages--;
	if (pl->nempty < EMPTY_KEEP) {
		size_t off = page_off(pg);
		POISON((char *)pg + off, PAGE - off);
		pg->state = PG_EMPTY;
		pg->next = pl->empty;
		pl->empty = pg;
		pl->nempty++;
		return;
	}
	page_put(m, pg);
}

/* A block of one of pl's pages comes back. */
static void local_free(cmap_t *m, pool_local_t *pl, pool_page_t *pg, void *p)
{
	unsigned c = pg->cls;
	POISON((char *)p + 2 * sizeof(void *),
	       pool_cls_size(c) - 2 * sizeof(void *));
	if (pg->state == PG_CURRENT) {
		*link0(p) = pl->free[c];
		pl->free[c] = p;
		return;
	}
	*link0(p) = pg->free;
	pg->free = p;
	pg->nfree++;
	if (pg->state == PG_FULL)
		partial_link(pl, pg);
	if (pg->nfree == pg->cap)
		page_release(m, pl, pg);
}

/* Take the blocks other threads freed into pl's pages. */
static void drain(cmap_t *m, pool_local_t *pl)
{
	/* Acquire: pairs with inbox_push's release, so the blocks' links
	 * (and the freers' last reads of them) come first. */
	void *b =
	    atomic_exchange_explicit(&pl->inbox, NULL, memory_order_acquire);
	while (b) {
		void *next = *link0(b);
		local_free(m, pl, pool_page_of(b), b);
		b = next;
	}
}

static void inbox_push(pool_local_t *o, void *head, void *tail)
{
	void *old = ld_relaxed(&o->inbox);
	do
		*link0(tail) = old;
	/* Release: the drainer (acquire) sees the chain's links. */
	while (!atomic_compare_exchange_weak_explicit(
	    &o->inbox, &old, head, memory_order_release, memory_order_relaxed));
}

/* Send pl's queued remote blocks to their owners, one push per owner
 * (grouped through a small table; more owners cost more pushes). */
static void flush_remote(pool_local_t *pl)
{
	enum { G = 4 };
	struct {
		pool_local_t *o;
		void *head, *tail;
	} g[G];
	unsigned n = 0;
	void *b = pl->rbuf;
	pl->rbuf = NULL;
	pl->nrbuf = 0;
	while (b) {
		void *next = *link0(b);
		/* The block is in use as far as its page knows, so the page
		 * and its owner are stable. */
		pool_local_t *o = pool_page_of(b)->owner;
		unsigned i = 0;
		while (i < n && g[i].o != o)
			i++;
		if (i == G) {
			for (i = 0; i < n; i++)
				inbox_push(g[i].o, g[i].head, g[i].tail);
			n = i = 0;
		}
		if (i == n)
			g[n++].o = o, g[i].head = NULL, g[i].tail = b;
		*link0(b) = g[i].head;
		g[i].head = b;
		b = next;
	}
	for (unsigned i = 0; i < n; i++)
		inbox_push(g[i].o, g[i].head, g[i].tail);
}

/* A block of sz bytes (a class size) from the map's nursery, or NULL
 * once it is used up. */
static void *nursery_alloc(cmap_t *m, size_t sz)
{
	if (ld_relaxed(&m->pool.nursery_used) >= POOL_NURSERY)
		return NULL;
	size_t off = atomic_fetch_add_explicit(&m->pool.nursery_used, sz,
					       memory_order_relaxed);
	return off + sz <= POOL_NURSERY ? m->pool.nursery + off : NULL;
}

/* Give r its own pool. */
static pool_local_t *pool_of(cmap_t *m, rec_t *r)
{
	if (!r->pool) {
		pool_local_t *pl = hook_alloc(m, sizeof *pl, CACHELINE);
		if (!pl)
			return NULL;
		memset(pl, 0, sizeof *pl);
		atomic_init(&pl->inbox, NULL);
		r->pool = pl;
	}
	return r->pool;
}

static void *pop(pool_local_t *pl, unsigned c)
{
	void *p = pl->free[c];
	pl->free[c] = *link0(p);
	UNPOISON(p, pool_cls_size(c));
	return p;
}

/* Under a quarter of the page's blocks in use. */
static bool sparse(const pool_page_t *pg)
{
	return pg->nfree > pg->cap - pg->cap / 4;
}

/* Under two thirds in use: compaction moves its blocks off (compact.c),
 * so that pages in use hold at least 2/3 live blocks once it is done. */
static bool evacuable(const pool_page_t *pg)
{
	return 3 * pg->nfree > pg->cap;
}

/* The partial page of class c to make current.  A sparse page (under a
 * quarter in use) is left to drain, as long as a denser one, an empty
 * one or a free page of the map's pool can serve instead: every update
 * reallocates its bucket, so after a mass removal the survivors move into
 * dense pages and the sparse ones empty and go back (without this, each
 * sparse page got refilled and none ever emptied). */
static pool_page_t *pick_partial(cmap_t *m, pool_local_t *pl, unsigned c)
{
	pool_page_t *pg = pl->partial[c];
	for (int i = 0; pg && i < 8; i++, pg = pg->next)
		if (pl->compacting ? !evacuable(pg) : !sparse(pg))
			return pg;
	/* While compaction moves blocks off half-empty pages, their copies
	 * must land elsewhere: on a fresh page (refill grows). */
	if (!pl->partial[c] || pl->empty || pl->compacting)
		return NULL;
	pool_page_t *fresh = page_get(m, false);
	if (!fresh)
		return pl->partial[c];
	fresh->state = PG_EMPTY;
	fresh->next = pl->empty;
	pl->empty = fresh;
	pl->nempty++;
	return NULL;
}

/* Class c's free list is empty: carve the current page, or make another
 * page current (a partial one, an empty one, one from the map). */
static void *refill(cmap_t *m, pool_local_t *pl, unsigned c)
{
	if (ld_relaxed(&pl->inbox)) {
		drain(m, pl);
		if (pl->free[c])
			return pop(pl, c);
	}
	size_t sz = pool_cls_size(c);
	pool_page_t *pg = pl->cur[c];
	for (;;) {
		if (pg && pg->ncarved < pg->cap) {
			void *p = (char *)pg + page_off(pg) +
				  (size_t)pg->ncarved++ * sz;
			UNPOISON(p, sz);
			return p;
		}
		if (pg) { /* exhausted: every block is in use */
			pg->state = PG_FULL;
			pl->cur[c] = NULL;
		}
		pg = pick_partial(m, pl, c);
		if (pg) {
			partial_unlink(pl, pg);
			pg->state = PG_CURRENT;
			pl->cur[c] = pg;
			pl->free[c] = pg->free;
			pg->free = NULL;
			pg->nfree = 0;
			return pop(pl, c);
		}
		if (pl->empty) {
			pg = pl->empty;
			pl->empty = pg->next;
			pl->nempty--;
		} else if (!(pg = page_get(m, true))) {
			return NULL;
		}
		pg->owner = pl;
		pl->npages++;
		pg->free = NULL;
		pg->next = pg->prev = NULL;
		pg->nfree = pg->ncarved = 0;
		pg->cls = (uint16_t)c;
		pg->cap = (uint32_t)((PAGE - page_off(pg)) / sz);
		pg->state = PG_CURRENT;
		pl->cur[c] = pg;
	}
}

/* Everything pool_alloc (internal.h) does not do inline: objects for the
 * hooks, a thread without a pool, and a class whose free list is empty. */
void *cmap__alloc_slow(cmap_t *m, rec_t *r, size_t size)
{
	if (size > POOL_MAX || (m->flags & CMAP_NO_POOL) || !r)
		return hook_alloc(m, size, 16);
	unsigned c = pool_cls(size);
	if (!r->pool && r->cold < COLD_ALLOCS) {
		void *p = nursery_alloc(m, pool_cls_size(c));
		if (p) {
			r->cold++;
			return p;
		}
	}
	pool_local_t *pl = pool_of(m, r);
	if (!pl)
		return NULL;
	if (pl->free[c])
		return pop(pl, c);
	return refill(m, pl, c);
}

/* Everything pool_dealloc does not do inline: objects of the hooks,
 * nursery blocks, other pools' blocks, and pages that become partial or
 * wholly free.  r == NULL only from cmap_free, which releases the chunks
 * wholesale. */
void cmap__dealloc_slow(cmap_t *m, rec_t *r, void *p, size_t size)
{
	if (!p)
		return;
	if (size > POOL_MAX || (m->flags & CMAP_NO_POOL)) {
		m->cfg.free(m->cfg.alloc_ctx, p, size);
		return;
	}
	if (!r)
		return;
	size_t sz = pool_cls_size(pool_cls(size));
	if ((uintptr_t)p - (uintptr_t)m->pool.nursery < POOL_NURSERY) {
		POISON(p, sz); /* never reused */
		return;
	}
	/* Without a pool of its own (and no memory to make one), the block
	 * stays unused in its page until cmap_free. */
	pool_local_t *pl = pool_of(m, r);
	if (!pl)
		return;
	pool_page_t *pg = pool_page_of(p);
	if (pg->owner == pl) {
		local_free(m, pl, pg, p);
		return;
	}
	POISON((char *)p + 2 * sizeof(void *), sz - 2 * sizeof(void *));
	*link0(p) = pl->rbuf;
	pl->rbuf = p;
	if (++pl->nrbuf >= RBUF_MAX)
		flush_remote(pl);
}

/* Is p (size bytes) a block of r's pool on a partial page under half in
 * use, one that compaction should move?  Another pool's page is only asked
 * its owner, which is fixed while p is in use (the caller holds p inside an
 * operation); the rest of the header is read only on our own pages. */
bool cmap__pool_sparse(const cmap_t *m, const rec_t *r, const void *p,
		       size_t size)
{
	const pool_local_t *pl = r->pool;
	if (!pl || size > POOL_MAX || (m->flags & CMAP_NO_POOL) ||
	    (uintptr_t)p - (uintptr_t)m->pool.nursery < POOL_NURSERY)
		return false;
	const pool_page_t *pg = pool_page_of(p);
	return pg->owner == pl && pg->state == PG_PARTIAL && evacuable(pg);
}

/* A pass is worth it when at least this much memory (and a third of the
 * pool's pages in use) is free inside half-empty pages. */
#define COMPACT_MIN ((size_t)2 << 20)
/* Collects between two looks at the partial lists (asked: cmap_collect),
 * unless they grew by half.  After a pass, the originals it moved are
 * freed GRACE epochs later: NBAGS collects let that happen first. */
#define LOOK_EVERY	 16
#define LOOK_EVERY_ASKED NBAGS

/*
 * Would a compaction pass give back a third of r's pages?  That is the
 * bound the pool keeps: memory in use at most 1.5 x the live blocks (plus
 * COMPACT_MIN).  The partial lists are scanned only every LOOK_EVERY
 * collects, or when they grew by half since the last scan.
 */
bool cmap__pool_fragmented(cmap_t *m, rec_t *r, bool asked)
{
	pool_local_t *pl = r->pool;
	if (!pl || (m->flags & CMAP_NO_POOL))
		return false;
	pl->since++;
	if (2 * pl->npartial < pl->gate)
		pl->gate = pl->npartial + pl->npartial / 2;
	if ((size_t)pl->npartial * PAGE < COMPACT_MIN ||
	    (pl->npartial < pl->gate &&
	     pl->since < (asked ? LOOK_EVERY_ASKED : LOOK_EVERY)))
		return false;
	size_t waste = 0;
	for (unsigned c = 0; c < POOL_NCLASS; c++)
		for (pool_page_t *pg = pl->partial[c]; pg; pg = pg->next)
			if (evacuable(pg))
				waste += (size_t)pg->nfree * pool_cls_size(c);
	pl->gate = pl->npartial + pl->npartial / 2;
	pl->since = 0;
	return waste >= COMPACT_MIN && 3 * waste >= (size_t)pl->npages * PAGE;
}

/* r's owner is idle and r was stolen (epoch.c): take the blocks other
 * threads freed into its pages, and give its spare wholly free pages to
 * the map, where any thread can use them. */
void cmap__pool_trim(cmap_t *m, rec_t *r)
{
	pool_local_t *pl = r->pool;
	if (!pl)
		return;
	if (ld_relaxed(&pl->inbox))
		drain(m, pl);
	while (pl->empty) {
		pool_page_t *pg = pl->empty;
		pl->empty = pg->next;
		pl->nempty--;
		page_put(m, pg);
	}
}

void cmap__pool_compacting(rec_t *r, bool on)
{
	if (r->pool)
		r->pool->compacting = on;
}

/* After freeing a garbage bag of r: send the remote blocks it queued and
 * take those sent to it. */
void cmap__pool_flush(cmap_t *m, rec_t *r)
{
	pool_local_t *pl = r->pool;
	if (!pl)
		return;
	if (pl->rbuf)
		flush_remote(pl);
	if (ld_relaxed(&pl->inbox))
		drain(m, pl);
}

void cmap__pool_release_all(cmap_t *m)
{
	pool_shared_t *s = &m->pool;
	struct pool_chunk *ch = s->chunks;
	while (ch) {
		struct pool_chunk *next = ch->next;
		size_t size = ch->size;
		char *base = chunk_base(ch);
		UNPOISON(base, size);
		m->cfg.free(m->cfg.alloc_ctx, base, size);
		ch = next;
	}
	s->chunks = s->avail = NULL;
	s->nfree_pages = s->ncommitted = 0;
	st_relaxed(&s->reserved, 0);
	UNPOISON(s->nursery, POOL_NURSERY);
}
