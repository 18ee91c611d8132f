/*
 * Compaction: moving live nodes off sparse pages.
 *
 * Nothing in the trie moves unless it is updated.  After a stall (every
 * bucket rewritten while garbage could not be freed) or a mass removal, the
 * survivors that are not written again stay scattered over pages that are
 * mostly free, and a page goes back to the map (and its memory to the
 * system) only once every block of it is free.  So a thread whose pool has
 * many sparse pages (pool.c, cmap__pool_fragmented) walks the trie and
 * moves every node, bucket and blob it finds on a sparse page of its own
 * pool to a fresh page (trie.c, cmap__relocate: a copy published by one
 * CAS, an update that changes nothing); the originals are retired, and once
 * they are freed their pages are wholly free.
 *
 * The walk follows hash positions (trie.h) like iter.c's, a slot at a
 * time, in slices of SLICE_SLOTS slots, each inside one operation; the
 * position it has reached is kept in the thread's record between slices,
 * so an automatic collect walks COMPACT_SLOTS slots of a pass and
 * cmap_collect the rest of it.  A node replaced under the walk is skipped
 * for the rest of the slice (its slots are frozen, so nothing in it can be
 * moved), which costs only a missed move.
 *
 * Only the thread's own pages are moved off: another pool's page headers
 * belong to that pool's owner.
 */
#include "trie.h"

/* Slots a slice walks, and an automatic collect. */
#define SLICE_SLOTS   512
#define COMPACT_SLOTS 4096
/* A pass starts only once the thread's backlog of garbage has mostly
 * drained: blocks still waiting in the bags cannot move and make their
 * pages look used. */
#define QUIET_PENDING (16 * 1024)

static void stop(rec_t *r)
{
	r->compacting = false;
	cmap__pool_compacting(r, false);
}

void cmap__compact_start(cmap_t *m, rec_t *r)
{
	if (m->dying || (m->flags & CMAP_NO_POOL))
		return; /* nothing to move: every node is the hooks' */
	r->compacting = true;
	r->cnext = 0;
	cmap__pool_compacting(r, true);
}

/* Walk up to budget slots from r->cnext; returns how many were walked. */
static size_t slice(cmap_t *m, rec_t *r, size_t budget)
{
	inner_t *path[LAST_LEVEL + 1];
	unsigned d = 0; /* path[0..d] lead to the slot covering next */
	uint64_t next = r->cnext;
	size_t k = 0;
	path[0] = m->root;
	while (k < budget) {
		unsigned ix = pos_idx(next, d);
		/* Acquire: pairs with the release half of the CAS that
		 * published the node or bucket (its contents are copied). */
		uintptr_t v = ld_acquire(&path[d]->slot[ix]);
		k++;
		if (v && !is_frozen(v)) {
			int rl = cmap__relocate(m, r, path[d], ix, v);
			if (rl == RL_NOMEM) {
				stop(r);
				return k;
			}
			if (rl == RL_MOVED) /* a statistic */
				st_relaxed(&r->moved,
					   ld_relaxed(&r->moved) + 1);
			if (rl != RL_SKIP) /* the copy, or what replaced v */
				v = ld_acquire(&path[d]->slot[ix]);
		}
		v &= ~T_FROZEN;
		if (v && !is_bucket(v)) {
			path[++d] = as_inner(v);
			continue;
		}
		unsigned sh = pos_shift(d);
		uint64_t start = sh ? next >> sh << sh : next;
		uint64_t end = start + ((uint64_t)1 << sh);
		next = end;
		if (!end) { /* the last range ended at 2^64 */
			stop(r);
			return k;
		}
		while (d > 0 && pos_idx(end, d) == 0)
			d--;
	}
	r->cnext = next;
	return k;
}

bool cmap__compact_due(cmap_t *m, rec_t *r, bool all)
{
	if (m->dying || (m->flags & CMAP_NO_POOL))
		return false;
	if (!r->compacting && ld_relaxed(&r->pending) <= QUIET_PENDING &&
	    cmap__pool_fragmented(m, r, all))
		cmap__compact_start(m, r);
	return r->compacting;
}

void cmap__compact(cmap_t *m, rec_t *r, bool all)
{
	for (size_t left = COMPACT_SLOTS; r->compacting && (all || left);) {
		rec_t *x = cmap__enter(m);
		if (x != r) { /* r was stolen meanwhile (or no memory) */
			if (x)
				cmap__leave(x);
			return;
		}
		size_t k =
		    slice(m, r, all || left > SLICE_SLOTS ? SLICE_SLOTS : left);
		cmap__leave(r);
		left -= k < left ? k : left;
	}
}
