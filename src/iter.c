/*
 * Iteration: cmap_foreach, cursors, cmap_retain and cmap_clear.
 *
 * A walk follows hash positions, the order in which the trie lays hashes
 * out: level 0's index bits are the most significant (pos_of).  A slot at
 * level d covers the positions sharing its first d + 1 indexes, a range
 * [start, end).  The walk keeps `next`, the first position not yet walked,
 * and repeats: descend from the root along next to the slot covering it;
 * visit the entries there whose positions are >= next; set next to the
 * slot's end (or, when a slice's budget runs out inside a bucket, to the
 * first position left unvisited).
 *
 * Why every key present throughout is visited exactly once and no key
 * twice, whatever splits and contractions happen meanwhile: next only
 * grows, and each step visits the entries of one bucket (whose keys never
 * change) that
 * lie in [next, new next), a range no other step covers.  A key is in the
 * bucket that covers its position at every moment it is in the map
 * (invariant of the trie), so a key present when the walk passes its
 * position is in the bucket read at that step.  Only the slot's range
 * matters, not its depth: after a contraction, a merged bucket covers
 * positions already walked, which the >= next filter skips; after a split
 * the finer slots cover sub-ranges of the walked one.  Keys with one full
 * 64-bit hash share a position, so they are visited together.
 *
 * The thread stays inside one operation for a slice of at most SLICE
 * entries (or SLICE_SLOTS slots), then leaves, so reclamation is held back
 * by one slice, not by the walk (a foreach slice may end after, never
 * inside, a bucket).  Within a slice the walk keeps its path and steps to
 * the next slot in place; each slice starts with a descent from the root,
 * so nothing of the trie is kept across slices.
 */
#include "trie.h"

#define SLICE	    256
#define SLICE_SLOTS 1024
/* Slots ahead whose bucket a walk prefetches. */
#define PREFETCH_AHEAD 4

/* A walk in progress: the cursor, the visitor and what it is for. */
typedef struct walk {
	cmap_cursor_t *c;
	cmap_foreach_fn fn;
	void *ctx;
	bool retain;	/* fn is a retain predicate: remove where it says 0 */
	bool resumable; /* a cursor: a stop must leave a resumable position */
	bool stopped;	/* fn asked to stop */
	long visited;	/* entries shown to fn */
	long slice0;	/* visited when the current slice began */
	long removed;	/* entries removed (retain) */
	int err;	/* a removal's error (retain) */
} walk_t;

/* Show entry i of b to the visitor; for retain, remove it if the
 * predicate says so, on condition that it is still this entry. */
static void visit(cmap_t *m, rec_t *r, walk_t *w, bucket_t *b, uint32_t i)
{
	const void *k, *v;
	size_t kl, vl;
	uint64_t copy; /* in-place maps: fn sees a copy (cmap.h) */
	if (m->var) {
		blob_t *bl = bvent(b, i)->blob;
		k = bl->data;
		kl = bl->klen;
		v = blob_val(bl);
		vl = bl->vlen;
	} else {
		k = bkey(m, b, i);
		kl = m->ks;
		v = bval(m, b, i);
		vl = m->vs;
		if (m->inplace) {
			read_val(m, &copy, v);
			v = &copy;
		}
	}
	w->visited++;
	if (!w->retain) {
		if (w->fn(k, kl, v, vl, w->ctx))
			w->stopped = true;
		return;
	}
	r->no_write++; /* as a compute function: see cmap__may_write */
	int keep = w->fn(k, kl, v, vl, w->ctx);
	r->no_write--;
	if (keep)
		return;
	int rc = cmap__reserve(m, r, RESERVE_OP);
	if (rc == CMAP_OK) {
		upd_t u = {.kind = U_REMOVE_IS,
			   .h = entry_hash(m, b, i),
			   .key = k,
			   .klen = kl,
			   .exp = m->var ? (const void *)bvent(b, i)->blob : v};
		rc = cmap__update(m, r, &u);
	}
	if (rc == CMAP_OK)
		w->removed++;
	else if (rc != CMAP_NOT_FOUND && rc != CMAP_MISMATCH)
		w->err = rc; /* out of memory: stop here */
}

/* Every entry of a fixed-size bucket to a foreach visitor: the loop of a
 * full walk, kept to a call per entry.  True when the visitor stopped. */
static bool visit_fixed(const cmap_t *m, walk_t *w, bucket_t *b)
{
	uint32_t n = bucket_n(b), ks = m->ks, vs = m->vs;
	const unsigned char *k = b->data, *v = bval(m, b, 0);
	for (uint32_t i = 0; i < n; i++, k += ks, v += vs) {
		uint64_t copy; /* in-place maps: fn sees a copy (cmap.h) */
		const void *vv = v;
		if (m->inplace) {
			read_val(m, &copy, v);
			vv = &copy;
		}
		if (w->fn(k, ks, vv, vs, w->ctx)) {
			w->visited += i + 1;
			w->stopped = true;
			return true;
		}
	}
	w->visited += n;
	return false;
}

/* Order entries of one bucket by position (insertion sort: buckets are
 * small, except collision buckets, whose positions are all equal). */
static void sort_by_pos(uint64_t *pos, uint32_t *ix, uint32_t n)
{
	for (uint32_t a = 1; a < n; a++) {
		uint64_t p = pos[a];
		uint32_t x = ix[a], j = a;
		for (; j > 0 && pos[j - 1] > p; j--) {
			pos[j] = pos[j - 1];
			ix[j] = ix[j - 1];
		}
		pos[j] = p;
		ix[j] = x;
	}
}

/*
 * The entries of b at positions >= c->next, in position order, within
 * budget (a run of equal positions is never split).  Returns false when the
 * budget ran out or the visitor stopped, with c->next set to the first
 * position not walked.
 */
static bool visit_from(cmap_t *m, rec_t *r, walk_t *w, bucket_t *b,
		       size_t *budget)
{
	uint32_t n = bucket_n(b), k = 0;
	uint64_t stackpos[BMAX + 1];
	uint32_t stackix[BMAX + 1];
	uint64_t *pos = stackpos;
	uint32_t *ix = stackix;
	if (n > BMAX + 1) { /* a collision bucket: all positions equal */
		uint64_t p = pos_of(entry_hash(m, b, 0));
		if (p < w->c->next)
			return true;
		if (n > *budget && w->visited > w->slice0) {
			w->c->next = p; /* the next slice takes it whole */
			return false;
		}
		for (uint32_t i = 0; i < n && !w->stopped && !w->err; i++)
			visit(m, r, w, b, i);
		*budget = *budget > n ? *budget - n : 0;
		if (w->stopped || w->err) {
			w->c->next = p + 1;
			w->c->done = w->c->next == 0;
			return false;
		}
		return true;
	}
	for (uint32_t i = 0; i < n; i++) {
		uint64_t p = pos_of(entry_hash(m, b, i));
		if (p >= w->c->next) {
			pos[k] = p;
			ix[k++] = i;
		}
	}
	sort_by_pos(pos, ix, k);
	for (uint32_t a = 0; a < k;) {
		uint32_t e = a + 1;
		while (e < k && pos[e] == pos[a])
			e++;
		/* A run longer than the budget is taken whole by a slice
		 * that has visited nothing yet (else no slice could). */
		if (e - a > *budget && w->visited > w->slice0) {
			w->c->next = pos[a];
			return false;
		}
		for (uint32_t j = a; j < e && !w->stopped && !w->err; j++)
			visit(m, r, w, b, ix[j]);
		*budget = *budget > e - a ? *budget - (e - a) : 0;
		if (w->stopped || w->err) {
			/* Resume after this position (keys sharing its full
			 * hash and not yet shown are skipped: cmap.h). */
			w->c->next = pos[a] + 1;
			w->c->done = w->c->next == 0;
			return false;
		}
		a = e;
	}
	return true;
}

/*
 * One slice: inside one operation, walk from c->next until budget entries
 * were visited, SLICE_SLOTS slots passed, the visitor stopped or the walk
 * ended.
 */
static void slice(cmap_t *m, rec_t *r, walk_t *w, size_t budget)
{
	cmap_cursor_t *c = w->c;
	inner_t *path[LAST_LEVEL + 1];
	unsigned d = 0; /* path[0..d] lead to the slot covering c->next */
	path[0] = m->root;
	w->slice0 = w->visited;
	for (unsigned slots = 0; !c->done && slots < SLICE_SLOTS; slots++) {
		/* Acquire on every slot: pairs with the release half of the
		 * CAS that published the node or bucket.  Frozen slots are
		 * read through (their contents are current).  Nodes on the
		 * path stay readable for the slice, and one replaced since it
		 * was read was frozen first, so what it shows was current
		 * after the walk began (the argument above holds). */
		unsigned ix = pos_idx(c->next, d);
		uintptr_t v = ld_acquire(&path[d]->slot[ix]) & ~T_FROZEN;
		while (v && !is_bucket(v)) {
			path[++d] = as_inner(v);
			ix = pos_idx(c->next, d);
			v = ld_acquire(&path[d]->slot[ix]) & ~T_FROZEN;
		}
		/* The next slots' buckets are needed soon: start their
		 * misses now, so that they overlap this bucket's visits. */
		if (ix + PREFETCH_AHEAD < FANOUT) {
			uintptr_t a =
			    ld_relaxed(&path[d]->slot[ix + PREFETCH_AHEAD]);
			if (is_bucket(a)) {
				__builtin_prefetch(as_bucket(a));
				__builtin_prefetch((char *)as_bucket(a) + 64);
			}
		}
		unsigned sh = pos_shift(d);
		uint64_t start = sh ? c->next >> sh << sh : c->next;
		if (v) {
			bucket_t *b = as_bucket(v);
			uint32_t bn = bucket_n(b);
			if (!w->resumable && c->next == start) {
				/* The whole bucket is ahead and a stop ends
				 * the walk: bucket order, no positions, and
				 * no slice ends inside it (the budget only
				 * bounds how long a slice pins garbage). */
				if (!w->retain && !m->var) {
					if (visit_fixed(m, w, b)) {
						c->done = 1;
						return;
					}
					budget -= bn < budget ? bn : budget;
					goto next;
				}
				for (uint32_t i = 0; i < bn; i++) {
					visit(m, r, w, b, i);
					if (w->stopped || w->err) {
						c->done = 1;
						return;
					}
				}
				budget -= bn < budget ? bn : budget;
			} else if (!visit_from(m, r, w, b, &budget)) {
				return;
			}
		}
	next:;
		uint64_t end = start + ((uint64_t)1 << sh);
		c->next = end;
		c->done = end == 0; /* the last range ended at 2^64 */
		if (!budget)
			return;
		/* Up to the node that holds the next range: where this
		 * level's index wrapped to 0, the carry moved up a level. */
		while (d > 0 && pos_idx(end, d) == 0)
			d--;
	}
}

/* Walk in slices until max entries were visited (SIZE_MAX: all), the
 * visitor stopped or the walk ended. */
static long run(cmap_t *m, walk_t *w, size_t max)
{
	while (!w->c->done && !w->stopped && !w->err &&
	       (size_t)w->visited < max) {
		rec_t *r = cmap__enter(m);
		if (!r)
			return w->visited ? w->visited : CMAP_ENOMEM;
		if (w->retain && (w->err = cmap__may_write(m, r)) != CMAP_OK) {
			cmap__leave(r);
			break;
		}
		size_t left = max - (size_t)w->visited;
		slice(m, r, w, left < SLICE ? left : SLICE);
		cmap__leave(r);
		if (w->retain)
			cmap__maybe_collect(m, r); /* outside the operation */
	}
	if (w->err)
		return w->err;
	return w->retain ? w->removed : w->visited;
}

CMAP_API long cmap_foreach(cmap_t *m, cmap_foreach_fn fn, void *ctx)
{
	if (!m || !fn)
		return CMAP_EINVAL;
	cmap_cursor_t c = CMAP_CURSOR_INIT;
	walk_t w = {.c = &c, .fn = fn, .ctx = ctx};
	return run(m, &w, SIZE_MAX);
}

CMAP_API long cmap_cursor_next(cmap_t *m, cmap_cursor_t *c, size_t max,
			       cmap_foreach_fn fn, void *ctx)
{
	if (!m || !c || !fn || !max)
		return CMAP_EINVAL;
	walk_t w = {.c = c, .fn = fn, .ctx = ctx, .resumable = true};
	return run(m, &w, max);
}

CMAP_API long cmap_retain(cmap_t *m, cmap_foreach_fn pred, void *ctx)
{
	if (!m || !pred)
		return CMAP_EINVAL;
	cmap_cursor_t c = CMAP_CURSOR_INIT;
	walk_t w = {.c = &c, .fn = pred, .ctx = ctx, .retain = true};
	return run(m, &w, SIZE_MAX);
}

static int keep_none(const void *k, size_t kl, const void *v, size_t vl,
		     void *ctx)
{
	(void)k, (void)kl, (void)v, (void)vl, (void)ctx;
	return 0;
}

CMAP_API long cmap_clear(cmap_t *m)
{
	return cmap_retain(m, keep_none, NULL);
}
