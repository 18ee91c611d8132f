/*
 * The trie: a hash array mapped trie whose inner nodes are arrays of atomic
 * slots changed in place by CAS, and whose leaves are buckets of up to BMAX
 * entries stored inline, replaced copy-on-write (an in-place map's replace
 * writes a value word in place instead: inplace.c).  Cache-Tries
 * (Prokopec, PPoPP 2018) is the closest relative: no indirection nodes,
 * in-place slot CAS, and freezing to replace a node.
 *
 * Invariants (checked by cmap_validate):
 *  - Every entry lives in the bucket reached by following its hash, BITS
 *    bits per level, lowest bits first.
 *  - A bucket holds 1..BMAX entries; more only below LAST_LEVEL, where all
 *    of its entries have the same 64-bit hash.
 *  - When no writer runs: no slot is frozen, no non-root inner node is
 *    empty, and no non-root inner node whose children are all buckets holds
 *    BMERGE entries or fewer (it would have been contracted).
 *
 * Protocol (linearization points in docs/DESIGN.md):
 *  - insert/replace/remove in a bucket: build the new bucket privately, then
 *    one CAS of the parent slot from the old bucket to the new one (or to
 *    empty).  The old bucket is retired to the epoch scheme.
 *  - a full bucket splits: the new subtree is built privately and installed
 *    by the same single CAS.
 *  - contraction of an inner node N at parent slot P[i]: set FROZEN on every
 *    slot of N (fetch_or), so no CAS on N can succeed any more; compute the
 *    replacement from the now-immutable N (one merged bucket, empty, or, if
 *    N grew meanwhile, a fresh unfrozen copy); CAS P[i] from N to it.  Any
 *    writer that meets a frozen slot helps the same way and retries, so
 *    writers stay lock-free; readers ignore the frozen bit (a frozen node's
 *    contents are exactly those of its replacement).
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "trie.h"

static _Atomic(uint64_t) next_id = 1;

/* ---- sizes and small helpers --------------------------------------------- */

size_t cmap__bucket_bytes(const cmap_t *m, uint32_t n)
{
	if (m->var)
		return sizeof(bucket_t) + (size_t)n * sizeof(vent_t);
	return sizeof(bucket_t) + align16((size_t)n * m->ks) +
	       (size_t)n * m->vs;
}

size_t cmap__blob_bytes(uint32_t klen, uint32_t vlen)
{
	return sizeof(blob_t) + align8(klen) + vlen;
}

static uintptr_t tag_bucket(bucket_t *b)
{
	return (uintptr_t)b | T_BUCKET;
}

/*
 * The capacity a copy that inserted gives a bucket of n entries, in an
 * appending map: room for two more entries and whatever else fits in the
 * allocation's 16-byte size class, so that about two of three inserts
 * into a bucket append in place; at most BMAX, past which a bucket
 * splits.  A bucket with fewer keys than fill a 16-byte group gets only
 * what its size class leaves over: most buckets of a map that just split
 * a level are that small, and room for them is paid in pages of small
 * size classes left part-empty as they grow (docs/PERFORMANCE.md, "Room").
 * 0 (exactly n) in other maps.
 */
static uint32_t room(const cmap_t *m, uint32_t n)
{
	if (!m->append || n >= BMAX)
		return 0;
	uint32_t want = n + ((size_t)n * m->ks < 16 ? 0 : 2);
	uint32_t c = want < BMAX ? want : BMAX;
	size_t class = align16(cmap__bucket_bytes(m, c));
	while (c < BMAX && cmap__bucket_bytes(m, c + 1) <= class)
		c++;
	return c;
}

/* A private bucket for n entries, allocated for cap (0: exactly n). */
static bucket_t *bucket_alloc(cmap_t *m, rec_t *r, uint32_t n, uint32_t cap)
{
	size_t size = cmap__bucket_bytes(m, cap ? cap : n);
	bucket_t *b = cmap__alloc(m, r, size);
	if (b) {
		st_relaxed(&b->ipw, cap << IPW_CAP_SHIFT);
		st_relaxed(&b->cnt, n);
		/* Lookups may compare the key slots past the count (trie.h,
		 * find4): zeros until a key is appended there, never
		 * uninitialised bytes.  From the group of the first slot not
		 * filled to the end of the keys' 16-byte groups. */
		if (!m->var) {
			size_t at = (size_t)n * m->ks & ~(size_t)15;
			size_t end = align16((size_t)(cap ? cap : n) * m->ks);
			for (; at < end; at += 16)
				memset(b->data + at, 0, 16);
		}
	}
	return b;
}

static void bucket_dealloc(cmap_t *m, rec_t *r, bucket_t *b)
{
	cmap__dealloc(m, r, b, bucket_size(m, b));
}

static void blob_dealloc(cmap_t *m, rec_t *r, blob_t *bl)
{
	cmap__dealloc(m, r, bl, cmap__blob_bytes(bl->klen, bl->vlen));
}

/* ---- copy-on-write bucket builders ----------------------------------------
 */

/*
 * A reference to an entry while a new bucket is assembled: either a fixed
 * entry (key and value pointers) or a variable-length one (blob).
 */
typedef struct eref {
	const void *k, *v;
	vent_t ve;
} eref_t;

static eref_t ref_of(const cmap_t *m, bucket_t *b, uint32_t i)
{
	eref_t e = {0};
	if (m->var)
		e.ve = *bvent(b, i);
	else {
		e.k = bkey(m, b, i);
		e.v = bval(m, b, i);
	}
	return e;
}

/* Fill bucket nb (allocated for n entries) from refs. */
static void fill_bucket(const cmap_t *m, bucket_t *nb, const eref_t *refs,
			uint32_t n)
{
	if (m->var) {
		for (uint32_t i = 0; i < n; i++)
			*bvent(nb, i) = refs[i].ve;
		return;
	}
	unsigned char *k = bkey(m, nb, 0), *v = bval(m, nb, 0);
	for (uint32_t i = 0; i < n; i++, k += m->ks, v += m->vs) {
		copy_item(k, refs[i].k, m->ks);
		copy_item(v, refs[i].v, m->vs);
	}
}

/*
 * The copy-on-write cases for fixed-size entries: bucket b (whose contents
 * are o: frozen, in an in-place map) with entry at replaced (at < o->n),
 * with (key, val) appended (at == o->n), or without entry at (drop).  Bulk
 * copies when nothing is pending in b; else entry by entry, o->i's value
 * (and, for a pending append, key) taken from o, its words never read.
 */
static bucket_t *cow_fixed(cmap_t *m, rec_t *r, bucket_t *b, const ovr_t *o,
			   uint32_t at, const void *key, const void *val,
			   bool drop)
{
	uint32_t n = o->n, nn = drop ? n - 1 : at == n ? n + 1 : n;
	size_t ks = m->ks, vs = m->vs;
	/* A replace keeps b's layout, a copy that inserted makes room, one
	 * that removed has none (the map is shrinking there). */
	uint32_t cap = drop ? 0
		       : nn == n
			   ? (ld_relaxed(&b->ipw) & IPW_CAP) >> IPW_CAP_SHIFT
			   : room(m, nn);
	bucket_t *nb = bucket_alloc(m, r, nn, cap);
	if (!nb)
		return NULL;
	if (o->i >= 0) {
		uint32_t k = 0;
		for (uint32_t j = 0; j < n; j++) {
			if (drop && j == at)
				continue;
			bool ov = j == (uint32_t)o->i;
			const void *v = j == at ? val
					: ov	? (const void *)&o->v
						: bval(m, b, j);
			const void *kp =
			    ov && o->app ? (const void *)&o->k : bkey(m, b, j);
			copy_item(bkey(m, nb, k), kp, ks);
			copy_item(bval(m, nb, k), v, vs);
			k++;
		}
		if (k < nn) {
			copy_item(bkey(m, nb, k), key, ks);
			copy_item(bval(m, nb, k), val, vs);
		}
		return nb;
	}
	unsigned char *ok = b->data, *ov = bval(m, b, 0);
	unsigned char *nk = nb->data, *nv = bval(m, nb, 0);
	uint32_t keep = drop ? at : n; /* entries before the change */
	copy_span(nk, ok, keep * ks);
	copy_span(nv, ov, keep * vs);
	if (drop) { /* the entries after the dropped one move down by one */
		uint32_t tail = n - at - 1;
		copy_span(nk + (size_t)at * ks, ok + (size_t)(at + 1) * ks,
			  tail * ks);
		copy_span(nv + (size_t)at * vs, ov + (size_t)(at + 1) * vs,
			  tail * vs);
	} else if (at == n) {
		copy_item(nk + (size_t)n * ks, key, ks);
		copy_item(nv + (size_t)n * vs, val, vs);
	} else { /* the stored key stays (cmap_set in cmap.h) */
		copy_item(nv + (size_t)at * vs, val, vs);
	}
	return nb;
}

/* A copy of b, frozen with contents o (fixed-size entries), that changes
 * nothing: entry "replaced" by its own value (a pending write's or
 * append's carried one, its words never read).  What compaction publishes
 * to move b, and what an update publishes to make a pending write it
 * decided on take effect. */
static bucket_t *copy_frozen(cmap_t *m, rec_t *r, bucket_t *b, const ovr_t *o)
{
	uint32_t at = o->i >= 0 ? (uint32_t)o->i : 0;
	const void *val = o->i >= 0 ? (const void *)&o->v : bval(m, b, 0);
	return cow_fixed(m, r, b, o, at, NULL, val, false);
}

static bucket_t *cow_var(cmap_t *m, rec_t *r, bucket_t *b, uint32_t at,
			 vent_t ne, bool drop)
{
	uint32_t n = bucket_n(b), nn = drop ? n - 1 : (at == n ? n + 1 : n);
	bucket_t *nb = bucket_alloc(m, r, nn, 0);
	if (!nb)
		return NULL;
	uint32_t j = 0;
	for (uint32_t i = 0; i < n; i++) {
		if (i == at && drop)
			continue;
		*bvent(nb, j++) = i == at ? ne : *bvent(b, i);
	}
	if (at == n)
		*bvent(nb, j) = ne;
	return nb;
}

/* ---- subtrees built privately (split, merge) -------------------------------
 */

/* Free an unpublished subtree (no entry's key or value is destroyed: the
 * entries still live in the published trie). */
static void free_private(cmap_t *m, rec_t *r, uintptr_t v)
{
	if (!v)
		return;
	if (is_bucket(v)) {
		bucket_dealloc(m, r, as_bucket(v));
		return;
	}
	inner_t *n = as_inner(v);
	for (unsigned i = 0; i < FANOUT; i++)
		free_private(m, r, ld_relaxed(&n->slot[i]));
	cmap__dealloc(m, r, n, sizeof *n);
}

static inner_t *inner_alloc(cmap_t *m, rec_t *r)
{
	inner_t *n = cmap__alloc(m, r, sizeof *n);
	if (n)
		for (unsigned i = 0; i < FANOUT; i++)
			st_relaxed(&n->slot[i], 0);
	return n;
}

/*
 * Build a subtree holding refs[0..n) (hashes hs) whose top sits at level d.
 * Returns the slot value, or 0 with *oom set.  Entries share the hash bits
 * of levels < d.
 */
static uintptr_t build(cmap_t *m, rec_t *r, eref_t *refs, uint64_t *hs,
		       uint32_t n, unsigned d, bool *oom)
{
	if (n <= BMAX || d > LAST_LEVEL) {
		bucket_t *b = bucket_alloc(m, r, n, 0);
		if (!b) {
			*oom = true;
			return 0;
		}
		fill_bucket(m, b, refs, n);
		return tag_bucket(b);
	}
	inner_t *node = inner_alloc(m, r);
	if (!node) {
		*oom = true;
		return 0;
	}
	/* Partition in place by this level's index (n <= BMAX + 1 here,
	 * except for full-hash collisions, which end at LAST_LEVEL). */
	uint32_t start = 0;
	while (start < n) {
		unsigned ix = hidx(hs[start], d);
		uint32_t end = start + 1;
		for (uint32_t i = end; i < n; i++) {
			if (hidx(hs[i], d) != ix)
				continue;
			eref_t te = refs[i];
			refs[i] = refs[end];
			refs[end] = te;
			uint64_t th = hs[i];
			hs[i] = hs[end];
			hs[end] = th;
			end++;
		}
		uintptr_t c = build(m, r, refs + start, hs + start, end - start,
				    d + 1, oom);
		st_relaxed(&node->slot[ix], c);
		if (*oom) {
			free_private(m, r, (uintptr_t)node);
			return 0;
		}
		start = end;
	}
	return (uintptr_t)node;
}

/* ---- freezing and contraction
 * ------------------------------------------------ */

enum { FR_MERGED, FR_COPIED, FR_LOST, FR_NOMEM };

/*
 * Replace inner node n, the value of parent->slot[pi], by its contraction or
 * a fresh copy (see the header comment).  Any thread may run this for the
 * same n concurrently; exactly one CAS wins, and only the winner retires.
 */
static int freeze_replace(cmap_t *m, rec_t *r, inner_t *parent, unsigned pi,
			  inner_t *n)
{
	/* Everything that may be needed is allocated before freezing, so that
	 * a frozen node never waits on memory. */
	if (cmap__reserve(m, r, FANOUT + 1 + RESERVE_OP) != CMAP_OK)
		return FR_NOMEM;
	bucket_t *mb = bucket_alloc(m, r, 0, BMERGE);
	inner_t *copy = inner_alloc(m, r);
	if (!mb || !copy) {
		if (mb)
			bucket_dealloc(m, r, mb);
		if (copy)
			cmap__dealloc(m, r, copy, sizeof *copy);
		return FR_NOMEM;
	}
	uintptr_t kids[FANOUT];
	uint32_t total = 0;
	bool merge = true;
	for (unsigned i = 0; i < FANOUT; i++) {
		/* Acquire: the child's contents (published by a release CAS)
		 * are read below; seq_cst is not needed, the RMW is ordered
		 * with every other RMW on this slot. */
		uintptr_t v = atomic_fetch_or_explicit(&n->slot[i], T_FROZEN,
						       memory_order_acquire);
		kids[i] = v & ~T_FROZEN;
		if (!kids[i])
			continue;
		if (!is_bucket(kids[i]))
			merge = false;
		else
			total += bucket_n(as_bucket(kids[i]));
	}
	ovr_t ov[FANOUT];
	if (merge && total <= BMERGE && m->inplace) {
		/* The buckets are copied: freeze them, and count again what
		 * they hold now (appends may have landed). */
		total = 0;
		for (unsigned i = 0; i < FANOUT; i++) {
			if (!kids[i])
				continue;
			cmap__freeze_bucket(m, as_bucket(kids[i]), &ov[i]);
			total += ov[i].n;
		}
	}
	uintptr_t repl;
	if (merge && total <= BMERGE) {
		eref_t refs[BMERGE];
		uint32_t k = 0;
		for (unsigned i = 0; i < FANOUT; i++) {
			if (!kids[i])
				continue;
			bucket_t *b = as_bucket(kids[i]);
			if (!m->inplace)
				ov[i] = no_ovr(b);
			for (uint32_t j = 0; j < ov[i].n; j++) {
				refs[k] = ref_of(m, b, j);
				if (j == (uint32_t)ov[i].i) {
					refs[k].v = &ov[i].v;
					if (ov[i].app)
						refs[k].k = &ov[i].k;
				}
				k++;
			}
		}
		if (total) {
			/* mb stays allocated for BMERGE entries (its
			 * capacity field). */
			st_relaxed(&mb->cnt, total);
			fill_bucket(m, mb, refs, total);
			repl = tag_bucket(mb);
		} else {
			repl = 0;
		}
	} else {
		merge = false;
		for (unsigned i = 0; i < FANOUT; i++)
			st_relaxed(&copy->slot[i], kids[i]);
		repl = (uintptr_t)copy;
	}
	uintptr_t expect = (uintptr_t)n;
	/* seq_cst: a structural change; pairs with the acquire loads of
	 * readers and writers, and keeps the contraction checks of
	 * concurrent removers from missing each other (they load seq_cst). */
	if (!cas_seqcst(&parent->slot[pi], &expect, repl)) {
		bucket_dealloc(m, r, mb);
		cmap__dealloc(m, r, copy, sizeof *copy);
		return FR_LOST;
	}
	cmap__retire(m, r, n, NULL, G_INNER);
	if (merge) {
		for (unsigned i = 0; i < FANOUT; i++)
			if (kids[i])
				cmap__retire(m, r, as_bucket(kids[i]), NULL,
					     G_BUCKET);
		cmap__dealloc(m, r, copy, sizeof *copy);
		if (!total)
			bucket_dealloc(m, r, mb);
		return FR_MERGED;
	}
	bucket_dealloc(m, r, mb);
	return FR_COPIED;
}

/* Would contracting n change the shape (all children buckets, few
 * entries), or does n need help (a slot is frozen)?  The slots are read
 * first, and only until the answer is known: a node with an inner child
 * or more than BMERGE children cannot qualify, and that costs no access to
 * the buckets (cache misses), nor to the rest of n's slots (a busy map's
 * bottom nodes are full: the ninth child ends the scan).  A frozen node is
 * seen at slot 0, which every freezer freezes first. */
static bool needs_work(inner_t *n)
{
	uintptr_t v[FANOUT];
	unsigned kids = 0;
	for (unsigned i = 0; i < FANOUT; i++) {
		/* seq_cst: see freeze_replace's CAS.  Of two removers under
		 * n, the one whose loads come last in the total order sees
		 * both removals in every slot it reads, so it stops early
		 * only if n truly has too many children. */
		v[i] = ld_seqcst(&n->slot[i]);
		if (is_frozen(v[i]))
			return true;
		if (!v[i])
			continue;
		if (!is_bucket(v[i]) || ++kids > BMERGE)
			return false;
	}
	uint32_t total = 0;
	for (unsigned i = 0; i < FANOUT; i++)
		if (v[i])
			total += bucket_n(as_bucket(v[i]));
	return total <= BMERGE;
}

/*
 * After a remove of hash h: contract the path from the bottom up until no
 * node on it needs work.  Re-walks from the root after every attempt, so
 * nodes frozen by others are finished too.  Best effort under OOM.
 */
static void contract_path(cmap_t *m, rec_t *r, uint64_t h)
{
	inner_t *path[LAST_LEVEL + 1];
	for (int budget = 4 * (LAST_LEVEL + 1); budget > 0; budget--) {
		unsigned d = 0;
		inner_t *n = m->root;
		path[0] = n;
		for (;;) {
			/* Acquire: pairs with the CAS that published it. */
			uintptr_t v = ld_acquire(&n->slot[hidx(h, d)]);
			if (!v || is_bucket(v) || is_frozen(v))
				break;
			n = as_inner(v);
			path[++d] = n;
		}
		int done = 1;
		for (; d > 0; d--) {
			if (!needs_work(path[d]))
				continue;
			int fr = freeze_replace(m, r, path[d - 1],
						hidx(h, d - 1), path[d]);
			if (fr == FR_NOMEM)
				return;
			done = 0;
			break;
		}
		if (done)
			return;
	}
}

/* A writer found a slot of node path[d] frozen: finish that node's
 * replacement.  Returns CMAP_OK (retry) or CMAP_ENOMEM.  d >= 1: the root
 * is never frozen (only nodes below it are contracted). */
static int help(cmap_t *m, rec_t *r, inner_t **path, unsigned d, uint64_t h)
{
	if (freeze_replace(m, r, path[d - 1], hidx(h, d - 1), path[d]) ==
	    FR_NOMEM)
		return CMAP_ENOMEM;
	return CMAP_OK;
}

/* ---- relocation (compaction, compact.c) -------------------------------- */

/* A variable-length bucket's entries, with the blobs that sit on sparse
 * pages copied (moved[i]: entry i's blob is a copy).  False when out of
 * memory, with every copy made freed. */
static bool copy_blobs(cmap_t *m, rec_t *r, bucket_t *b, bucket_t *nb,
		       bool *moved)
{
	for (uint32_t i = 0; i < bucket_n(b); i++) {
		vent_t e = *bvent(b, i);
		size_t sz = cmap__blob_bytes(e.blob->klen, e.blob->vlen);
		moved[i] = cmap__pool_sparse(m, r, e.blob, sz);
		if (moved[i]) {
			blob_t *bl = cmap__alloc(m, r, sz);
			if (!bl) {
				for (uint32_t j = 0; j < i; j++)
					if (moved[j])
						blob_dealloc(
						    m, r, bvent(nb, j)->blob);
				return false;
			}
			memcpy(bl, e.blob, sz);
			e.blob = bl;
		}
		*bvent(nb, i) = e;
	}
	return true;
}

/*
 * Move v, the value of parent->slot[ix] (not frozen), off a sparse page of
 * r's pool: an inner node through freeze_replace (which copies it, or
 * contracts it if it should be), a bucket (and, in a variable-length map,
 * the blobs of its entries that are on sparse pages) by a copy published
 * with one CAS, as an update that changes nothing.  Entries keep their
 * ownership: the retired originals are freed without destructors.
 */
int cmap__relocate(cmap_t *m, rec_t *r, inner_t *parent, unsigned ix,
		   uintptr_t v)
{
	if (!is_bucket(v)) {
		if (!cmap__pool_sparse(m, r, as_inner(v), sizeof(inner_t)))
			return RL_SKIP;
		switch (freeze_replace(m, r, parent, ix, as_inner(v))) {
		case FR_NOMEM:
			return RL_NOMEM;
		case FR_LOST:
			return RL_LOST;
		default:
			return RL_MOVED;
		}
	}
	bucket_t *b = as_bucket(v);
	uint32_t n = bucket_n(b);
	bool move = cmap__pool_sparse(m, r, b, bucket_size(m, b));
	for (uint32_t i = 0; m->var && !move && i < n; i++) {
		blob_t *bl = bvent(b, i)->blob;
		move = cmap__pool_sparse(m, r, bl,
					 cmap__blob_bytes(bl->klen, bl->vlen));
	}
	if (!move)
		return RL_SKIP;
	/* A collision bucket (more than BMAX + 1 entries, hostile hashes
	 * only) is left where it is: its bookkeeping would not fit here. */
	if (m->var && n > BMAX + 1)
		return RL_SKIP;
	if (cmap__reserve(m, r, (size_t)n + 1) != CMAP_OK)
		return RL_NOMEM;
	bool moved[BMAX + 1] = {false};
	ovr_t o = no_ovr(b);
	if (m->inplace)
		cmap__freeze_bucket(m, b, &o); /* as any copier */
	bucket_t *nb;
	if (m->var) {
		nb = bucket_alloc(m, r, n, 0);
		if (nb && !copy_blobs(m, r, b, nb, moved)) {
			bucket_dealloc(m, r, nb);
			nb = NULL;
		}
	} else {
		nb = copy_frozen(m, r, b, &o);
	}
	int rc = RL_NOMEM;
	if (nb) {
		/* seq_cst: as the update's CAS (publication, and ordered
		 * before the retirement's epoch load). */
		if (cas_seqcst(&parent->slot[ix], &v, tag_bucket(nb))) {
			cmap__retire(m, r, b, NULL, G_BUCKET);
			for (uint32_t i = 0; m->var && i < n; i++)
				if (moved[i])
					cmap__retire(m, r, bvent(b, i)->blob,
						     NULL, G_BLOB);
			rc = RL_MOVED;
		} else {
			for (uint32_t i = 0; m->var && i < n; i++)
				if (moved[i])
					blob_dealloc(m, r, bvent(nb, i)->blob);
			bucket_dealloc(m, r, nb);
			rc = RL_LOST;
		}
	}
	return rc;
}

/* ---- the operations
 * ------------------------------------------------------------ */

/*
 * Retire bucket b after entry i left the trie (drop) or had its value
 * replaced (!drop: the key lives on in the new bucket or blob, so only the
 * value is owed a destructor).  give_val: the value's ownership went to
 * the caller instead.
 */
static inline void retire_entry(cmap_t *m, rec_t *r, bucket_t *b, uint32_t i,
				bool drop, bool give_val)
{
	uintptr_t dflags = (drop ? G_DKEY : 0) | (give_val ? 0 : G_DVAL);
	if (m->var) {
		cmap__retire(m, r, b, NULL, G_BUCKET);
		cmap__retire(m, r, bvent(b, i)->blob, NULL, G_BLOB | dflags);
	} else {
		cmap__retire(m, r, b, NULL,
			     G_BUCKET | dflags | ((uintptr_t)i << 4));
	}
}

/* Entry i's value equals (v, len)?  cv: its bytes in a fixed-size map
 * (the snapshot the update decides on). */
static bool value_eq(const cmap_t *m, bucket_t *b, uint32_t i,
		     const unsigned char *cv, const void *v, size_t len)
{
	if (m->var) {
		blob_t *bl = bvent(b, i)->blob;
		return bl->vlen == len &&
		       (!len || !memcmp(blob_val(bl), v, len));
	}
	return !memcmp(cv, v, m->vs);
}

/* Copy entry i's value out (cv as in value_eq). */
static void value_out(const cmap_t *m, bucket_t *b, uint32_t i,
		      const unsigned char *cv, void *out, size_t *len)
{
	if (m->var) {
		copy_out(m, b, i, out, len);
		return;
	}
	if (out)
		copy_item(out, cv, m->vs);
	if (len)
		*len = m->vs;
}

/*
 * The decision of u's kind on entry i of b (i < 0: the key is absent), whose
 * value bytes are cv in a fixed-size map: b's own, or in an in-place map a
 * snapshot that the write will find unchanged or retry.  Whatever it copies
 * out or shows to a compute function is the value the write replaces.
 */
static inline __attribute__((always_inline)) int
decide(cmap_t *m, rec_t *r, upd_t *u, ukind_t kind, bucket_t *b, int i,
       const unsigned char *cv, int *rc)
{
	uint32_t at = (uint32_t)i;
	switch (kind) {
	case U_SET:
		if (i >= 0 && !fits(m, b, at, u->out, u->out_len))
			break;
		*rc = i >= 0 ? CMAP_REPLACED : CMAP_OK;
		return A_PUT;
	case U_INSERT:
		if (i < 0) {
			*rc = CMAP_OK;
			return A_PUT;
		}
		if (!fits(m, b, at, u->out, u->out_len))
			break;
		value_out(m, b, at, cv, u->out, u->out_len);
		*rc = CMAP_EXISTS;
		return A_KEEP;
	case U_REPLACE:
		if (i < 0) {
			*rc = CMAP_NOT_FOUND;
			return A_KEEP;
		}
		if (!fits(m, b, at, u->out, u->out_len))
			break;
		*rc = CMAP_REPLACED;
		return A_PUT;
	case U_CAS:
		if (i < 0) {
			*rc = CMAP_NOT_FOUND;
			return A_KEEP;
		}
		if (value_eq(m, b, at, cv, u->exp, u->elen)) {
			*rc = CMAP_REPLACED;
			return A_PUT;
		}
		if (!fits(m, b, at, u->out, u->out_len))
			break;
		value_out(m, b, at, cv, u->out, u->out_len);
		*rc = CMAP_MISMATCH;
		return A_KEEP;
	case U_REMOVE:
		if (i < 0) {
			*rc = CMAP_NOT_FOUND;
			return A_KEEP;
		}
		if (!fits(m, b, at, u->out, u->out_len))
			break;
		*rc = CMAP_OK;
		return A_DROP;
	case U_REMOVE_IF:
		if (i < 0) {
			*rc = CMAP_NOT_FOUND;
			return A_KEEP;
		}
		*rc = value_eq(m, b, at, cv, u->exp, u->elen) ? CMAP_OK
							      : CMAP_MISMATCH;
		return *rc == CMAP_OK ? A_DROP : A_KEEP;
	case U_REMOVE_IS: {
		/* exp is the entry's value in the bucket the walk saw: the
		 * same bytes (fixed), or the same blob (variable). */
		if (i < 0) {
			*rc = CMAP_NOT_FOUND;
			return A_KEEP;
		}
		bool same = m->var ? bvent(b, at)->blob == u->exp
				   : !memcmp(cv, u->exp, m->vs);
		*rc = same ? CMAP_OK : CMAP_MISMATCH;
		return same ? A_DROP : A_KEEP;
	}
	case U_COMPUTE: {
		const void *cur = NULL;
		size_t clen = 0;
		if (i >= 0) {
			cur = m->var ? blob_val(bvent(b, at)->blob) : cv;
			clen = value_len(m, b, at);
		}
		return cmap__compute_answer(m, r, u, cur, clen, rc);
	}
	}
	*rc = CMAP_ERANGE; /* fits() reported the length needed */
	return A_KEEP;
}

/*
 * The blob of a variable-length entry (key, value) about to be stored:
 * *nbl is reused across retries when its value length still fits.  The
 * key's bytes are key's: the caller's for an insert, the stored key's for
 * a replace (the map keeps the key it has; see cmap_set in cmap.h).
 */
static blob_t *blob_for(cmap_t *m, rec_t *r, blob_t **nbl, const void *key,
			size_t klen, const void *val, size_t vlen)
{
	blob_t *bl = *nbl;
	if (bl && bl->vlen != vlen) {
		blob_dealloc(m, r, bl);
		bl = *nbl = NULL;
	}
	if (!bl) {
		bl = cmap__alloc(m, r, cmap__blob_bytes(klen, vlen));
		if (!bl)
			return NULL;
		bl->klen = (uint32_t)klen;
		bl->vlen = (uint32_t)vlen;
		*nbl = bl;
	}
	if (klen)
		memcpy(bl->data, key, klen);
	if (vlen)
		memcpy(blob_val(bl), val, vlen);
	return bl;
}

/* A full bucket b at depth d plus entry e (hash h): the subtree one level
 * down that holds them all.  Out of line: rare, and its arrays would
 * weigh on every update's stack frame. */
static __attribute__((noinline)) uintptr_t split(cmap_t *m, rec_t *r,
						 bucket_t *b, eref_t e,
						 uint64_t h, unsigned d,
						 const ovr_t *o, bool *oom)
{
	eref_t refs[BMAX + 1];
	uint64_t hs[BMAX + 1];
	uint32_t n = o->n;
	for (uint32_t j = 0; j < n; j++) {
		refs[j] = ref_of(m, b, j);
		if (j == (uint32_t)o->i) {
			refs[j].v = &o->v;
			if (o->app)
				refs[j].k = &o->k;
		}
		hs[j] =
		    m->var ? bvent(b, j)->hash : hash_of(m, refs[j].k, m->ks);
	}
	refs[n] = e;
	hs[n] = h;
	return build(m, r, refs, hs, n + 1, d + 1, oom);
}

/*
 * The new value of slot v (bucket b, the key's entry at i or absent) after
 * storing (key, u->val) at depth d: b copied with the entry replaced or
 * appended, or, for a full bucket, a subtree one level down.  0 with
 * *oom set when memory ran out.
 */
static inline __attribute__((always_inline)) uintptr_t
put(cmap_t *m, rec_t *r, upd_t *u, bucket_t *b, int i, unsigned d, blob_t **nbl,
    const ovr_t *o, bool *oom)
{
	vent_t ne = {u->h, NULL};
	if (m->var) {
		/* On a replace the stored key's bytes go into the new blob
		 * (equal to the caller's under eq, not always the same). */
		const void *k =
		    i >= 0 ? bvent(b, (uint32_t)i)->blob->data : u->key;
		if (!(ne.blob =
			  blob_for(m, r, nbl, k, u->klen, u->val, u->vlen))) {
			*oom = true;
			return 0;
		}
	}
	bucket_t *nb = NULL;
	if (!b) {
		if ((nb = bucket_alloc(m, r, 1, room(m, 1)))) {
			eref_t e = {u->key, u->val, ne};
			fill_bucket(m, nb, &e, 1);
		}
	} else if (i >= 0 || o->n < BMAX || d >= LAST_LEVEL) {
		uint32_t at = i >= 0 ? (uint32_t)i : o->n;
		nb = m->var ? cow_var(m, r, b, at, ne, false)
			    : cow_fixed(m, r, b, o, at, u->key, u->val, false);
	} else {
		return split(m, r, b, (eref_t){u->key, u->val, ne}, u->h, d, o,
			     oom);
	}
	if (!nb)
		*oom = true;
	return nb ? tag_bucket(nb) : 0;
}

/* The walk, inlined per kind below so that the common kinds' decisions
 * fold to straight-line code. */
static inline __attribute__((always_inline)) int update(cmap_t *m, rec_t *r,
							upd_t *u, ukind_t kind)
{
	inner_t *path[LAST_LEVEL + 1];
	blob_t *nbl = NULL; /* a variable-length entry's new blob */
	int rc;
retry:;
	unsigned d = 0, fd = 0; /* fd: the first depth with a frozen slot */
	inner_t *n = m->root;
	path[0] = n;
	for (;;) {
		_Atomic(uintptr_t) *sp = &n->slot[hidx(u->h, d)];
		/* Acquire: pairs with the release half of the CAS that
		 * published the node or bucket, so its contents are seen. */
		uintptr_t v = ld_acquire(sp);
	again:;
		/* A frozen slot's contents are current (its node is only
		 * being replaced by an equal one): read through it, and help
		 * finish the replacement only if this update must write. */
		if (is_frozen(v) && !fd)
			fd = d + 1;
		uintptr_t c = v & ~T_FROZEN;
		if (c && !is_bucket(c)) {
			n = as_inner(c);
			path[++d] = n;
			continue;
		}
		bucket_t *b = c ? as_bucket(c) : NULL;
		/* What the decision is made on: b's entries as counted here
		 * (an appending map's count may grow until b is frozen). */
		ovr_t o = no_ovr(b);
		int i = b ? bucket_find(m, b, o.n, u->h, u->key, u->klen) : -1;
		/* The entry's value bytes the decision is made on: in an
		 * in-place map a snapshot, which the write then requires
		 * unchanged (the word may change under us until b is
		 * frozen). */
		const unsigned char *cv = NULL;
		uint64_t snap = 0;
		bool frozen = false;
	decide_again:
		if (i >= 0 && !m->var) {
			cv = bval(m, b, (uint32_t)i);
			if (m->inplace) {
				if (o.i == i)
					snap = o.v;
				else
					read_val(m, &snap, cv);
				cv = (const unsigned char *)&snap;
			}
		}
		int act = decide(m, r, u, kind, b, i, cv, &rc);
		/* An answer that changes nothing is linearized where it was
		 * read, except an answer on the entry of a write pending in b
		 * (frozen: o carries it): that write has taken effect only if
		 * its owner stored it, and the owner may be descheduled before
		 * its store.  Then b's frozen contents are published as they
		 * are, which makes the write take effect before the answer
		 * (an insert that found the key pending must not be followed by
		 * a get that misses it). */
		bool show =
		    act == A_KEEP && frozen && i >= 0 && i == o.i && rc >= 0;
		if (act == A_KEEP && !show)
			break;
		if (m->inplace && i >= 0 && act == A_PUT && !frozen) {
			/* A set or replace stores over whatever the value
			 * is now; cas and compute only over the value they
			 * decided on. */
			bool any = kind == U_SET || kind == U_REPLACE;
			uint64_t old;
			int ip = cmap__put_in_place(m, r, b, (uint32_t)i,
						    any ? NULL : &snap, u->val,
						    &old);
			if (ip == IP_STALE)
				goto again;
			if (ip == IP_DONE) {
				if (any && u->out)
					value_out(m, b, (uint32_t)i,
						  (const unsigned char *)&old,
						  u->out, u->out_len);
				break;
			}
		}
		if (i < 0 && act == A_PUT && b && !frozen &&
		    can_append(m, b, o.n)) {
			/* An insert with room in b: appended in place if b's
			 * count is still the one the key was absent in. */
			int ip = cmap__append(m, r, b, o.n, u->key, u->val);
			if (ip == IP_STALE)
				goto again;
			if (ip == IP_DONE) {
				cmap__count_add(r, 1);
				break;
			}
		}
		if (fd) {
			/* The outermost frozen node first: a node below it
			 * cannot be replaced while its parent slot is
			 * frozen. */
			if ((rc = help(m, r, path, fd - 1, u->h)) != CMAP_OK)
				break;
			goto retry;
		}
		if (m->inplace && b && !frozen) {
			/* From here b is copied: no in-place write may land
			 * in it after we read it.  Its entries are final now
			 * (o); if the key's entry or its value changed since
			 * the decision, decide again on the final ones. */
			uint32_t seen = o.n;
			cmap__freeze_bucket(m, b, &o);
			frozen = true;
			if (o.n != seen) {
				int j = bucket_find(m, b, o.n - o.app, u->h,
						    u->key, u->klen);
				if (j < 0 && o.app &&
				    key_eq(m, &o.k, u->key, m->ks))
					j = o.i;
				if (j != i) {
					i = j;
					goto decide_again;
				}
			}
			if (i >= 0) {
				uint64_t fin;
				if (o.i == i)
					fin = o.v;
				else
					read_val(m, &fin,
						 bval(m, b, (uint32_t)i));
				if (fin != snap)
					goto decide_again;
			}
		}
		uintptr_t nv = 0;
		if (show) {
			bucket_t *nb = copy_frozen(m, r, b, &o);
			if (!nb) {
				rc = CMAP_ENOMEM;
				break;
			}
			nv = tag_bucket(nb);
		} else if (act == A_PUT) {
			bool oom = false;
			nv = put(m, r, u, b, i, d, &nbl, &o, &oom);
			if (oom) {
				rc = CMAP_ENOMEM;
				break;
			}
		} else if (o.n > 1) {
			bucket_t *nb = m->var
					   ? cow_var(m, r, b, (uint32_t)i,
						     (vent_t){0}, true)
					   : cow_fixed(m, r, b, &o, (uint32_t)i,
						       NULL, NULL, true);
			if (!nb) {
				rc = CMAP_ENOMEM;
				break;
			}
			nv = tag_bucket(nb);
		}
		/* seq_cst: the linearization point.  Release publishes the
		 * new bucket; seq_cst orders it before the epoch load in
		 * cmap__retire (see epoch.c) and against concurrent
		 * contraction checks.  Buckets are not reused while we are
		 * inside the operation, and b's values are final (frozen, in
		 * an in-place map), so success means the entry decided on is
		 * still the key's current one. */
		if (!cas_seqcst(sp, &v, nv)) {
			free_private(m, r, nv);
			goto again; /* v now holds the slot's current value */
		}
		nbl = NULL; /* published */
		if (show) {
			/* b's entries live on in the copy: no destructor. */
			cmap__retire(m, r, b, NULL, G_BUCKET);
		} else if (i >= 0) {
			bool give =
			    u->out && (kind == U_SET || kind == U_REPLACE ||
				       kind == U_REMOVE);
			if (give)
				value_out(m, b, (uint32_t)i, cv, u->out,
					  u->out_len);
			retire_entry(m, r, b, (uint32_t)i, act == A_DROP, give);
		} else if (b) {
			cmap__retire(m, r, b, NULL, G_BUCKET);
		}
		if (act == A_DROP) {
			cmap__count_add(r, -1);
			/* Only the node we removed from can have become
			 * contractible (its ancestors have it as an inner
			 * child); if it was replaced meanwhile, its slot 0 is
			 * frozen and the path is walked again. */
			if (d > 0 && o.n - 1 <= BMERGE && needs_work(path[d]))
				contract_path(m, r, u->h);
		} else if (i < 0) {
			cmap__count_add(r, 1);
		}
		break;
	}
	if (nbl)
		blob_dealloc(m, r, nbl);
	return rc;
}

int cmap__update(cmap_t *m, rec_t *r, upd_t *u)
{
	switch (u->kind) {
	case U_SET:
		return update(m, r, u, U_SET);
	case U_REMOVE:
		return update(m, r, u, U_REMOVE);
	default:
		return update(m, r, u, u->kind);
	}
}

/* ---- creation and destruction
 * ------------------------------------------------- */

/* The default hooks map blocks of MAP_MIN bytes or more (pool chunks, the
 * bag arrays of a stall) straight from the system: malloc would keep them
 * resident in its heap after they are freed, where nothing gives their
 * pages back. */
#define MAP_MIN ((size_t)1 << 20)

static size_t map_len(size_t size)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	return (size + pg - 1) & ~(pg - 1);
}

static void *default_alloc(void *ctx, size_t size, size_t align)
{
	(void)ctx;
	if (align < sizeof(void *))
		align = sizeof(void *);
	if (size < MAP_MIN)
		return aligned_alloc(align, (size + align - 1) & ~(align - 1));
	/* Over-map by align and cut both ends off. */
	size_t len = map_len(size), pg = (size_t)sysconf(_SC_PAGESIZE);
	size_t extra = align > pg ? align : 0;
	char *p = mmap(NULL, len + extra, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	char *a =
	    (char *)(((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1));
	if (a > p)
		munmap(p, (size_t)(a - p));
	if (p + len + extra > a + len)
		munmap(a + len, (size_t)(p + len + extra - (a + len)));
	return a;
}

static void default_free(void *ctx, void *p, size_t size)
{
	(void)ctx;
	if (size < MAP_MIN)
		free(p);
	else if (p)
		munmap(p, map_len(size));
}

static uint64_t random_seed(const void *salt)
{
	uint64_t s;
	if (getrandom(&s, sizeof s, GRND_NONBLOCK) == (ssize_t)sizeof s)
		return s;
	/* No entropy yet (early boot): still differs per map and run. */
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	s = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^
	    (uint64_t)(uintptr_t)salt;
	return cmap_hash_xxh3(&s, sizeof s, (uint64_t)(uintptr_t)&s);
}

CMAP_API int cmap_new(cmap_t **out, const cmap_config_t *cfg)
{
	if (!out || !cfg)
		return CMAP_EINVAL;
	*out = NULL;
	/* The size rule of cmap.h.  0 is the 0.2 layout, which today is the
	 * whole struct; once the struct grows, accept each released size and
	 * copy only that many bytes into a zeroed config below. */
	if ((cfg->size != 0 && cfg->size != sizeof(cmap_config_t)) ||
	    cfg->key_size > CMAP_MAX_FIXED_SIZE ||
	    cfg->val_size > CMAP_MAX_FIXED_SIZE || !cfg->alloc != !cfg->free ||
	    (cfg->flags &
	     ~(unsigned)(CMAP_FIXED_SEED | CMAP_NO_POOL | CMAP_COPY_ON_WRITE)))
		return CMAP_EINVAL;
	if ((cfg->hash == cmap_hash_u32 && cfg->key_size != 4) ||
	    (cfg->hash == cmap_hash_u64 && cfg->key_size != 8))
		return CMAP_EINVAL;
	cmap__global_init();
	cmap_config_t c = *cfg;
	if (!c.alloc) {
		c.alloc = default_alloc;
		c.free = default_free;
	}
	if (!c.hash)
		c.hash = cmap_hash_xxh3;
	cmap_t *m = c.alloc(c.alloc_ctx, sizeof *m, CACHELINE);
	if (!m)
		return CMAP_ENOMEM;
	memset(m, 0, sizeof *m);
	m->cfg = c;
	m->pool.decommit = !cfg->alloc; /* pool.c: madvise is ours */
	m->root = c.alloc(c.alloc_ctx, sizeof(inner_t), CACHELINE);
	if (!m->root) {
		c.free(c.alloc_ctx, m, sizeof *m);
		return CMAP_ENOMEM;
	}
	for (unsigned i = 0; i < FANOUT; i++)
		st_relaxed(&m->root->slot[i], 0);
	m->hash = c.hash;
	m->seed = (c.flags & CMAP_FIXED_SEED) ? c.seed : random_seed(m);
	m->eq = c.eq;
	m->ks = (uint32_t)c.key_size;
	m->vs = (uint32_t)c.val_size;
	m->var = !m->ks || !m->vs;
	m->inplace = m->vs == 8 && m->ks && !c.val_dtor &&
		     !(c.flags & CMAP_COPY_ON_WRITE);
	m->append = m->inplace && m->ks <= 8;
	m->flags = c.flags;
	m->id = atomic_fetch_add_explicit(&next_id, 1, memory_order_relaxed);
	st_relaxed(&m->epoch, 0);
	st_relaxed(&m->recs, NULL);
	cmap__epoch_register(m);
	*out = m;
	return CMAP_OK;
}

/* cmap_free: destroy every live entry and free the trie's memory. */
static void free_tree(cmap_t *m, uintptr_t v)
{
	const cmap_config_t *c = &m->cfg;
	v &= ~T_FROZEN;
	if (!v)
		return;
	if (!is_bucket(v)) {
		inner_t *n = as_inner(v);
		for (unsigned i = 0; i < FANOUT; i++)
			free_tree(m, ld_relaxed(&n->slot[i]));
		cmap__dealloc(m, NULL, n, sizeof *n);
		return;
	}
	bucket_t *b = as_bucket(v);
	for (uint32_t i = 0; i < bucket_n(b); i++) {
		if (m->var) {
			blob_t *bl = bvent(b, i)->blob;
			if (c->key_dtor)
				c->key_dtor(bl->data, bl->klen, c->dtor_ctx);
			if (c->val_dtor)
				c->val_dtor(blob_val(bl), bl->vlen,
					    c->dtor_ctx);
			blob_dealloc(m, NULL, bl);
		} else {
			if (c->key_dtor)
				c->key_dtor(bkey(m, b, i), m->ks, c->dtor_ctx);
			if (c->val_dtor)
				c->val_dtor(bval(m, b, i), m->vs, c->dtor_ctx);
		}
	}
	bucket_dealloc(m, NULL, b);
}

CMAP_API void cmap_free(cmap_t *m)
{
	/* From inside a callback on m the caller still uses it: refused
	 * (cmap.h). */
	if (!m || cmap__inside(m))
		return;
	/* Destructors may read the map: each subtree is detached before it
	 * is freed, so they find its entries gone, never freed memory; and
	 * their writes are refused (write_begin). */
	m->dying = true;
	for (unsigned i = 0; i < FANOUT; i++) {
		uintptr_t v = ld_relaxed(&m->root->slot[i]);
		st_relaxed(&m->root->slot[i], 0);
		free_tree(m, v);
	}
	cmap__epoch_free_all(m);
	for (unsigned k = 0; k < DCHUNKS; k++) {
		desc_t *c = ld_relaxed(&m->dchunk[k]);
		if (c)
			m->cfg.free(m->cfg.alloc_ctx, c,
				    (size_t)(32u << k) * sizeof(desc_t));
	}
	cmap__pool_release_all(m);
	m->cfg.free(m->cfg.alloc_ctx, m->root, sizeof(inner_t));
	m->cfg.free(m->cfg.alloc_ctx, m, sizeof *m);
}

/* ---- bulk insertion (cmap_insert_batch) ---------------------------------
 */

/* Partition e[0, n) into to[0, n) by level-d index, stably (a counting
 * sort): run ix is [start[ix], start[ix + 1]).  The recursion below then
 * builds each run from `to`, with the run's old room in e as its own
 * scratch, so nothing is copied back. */
static void partition(const belem_t *e, belem_t *to, uint32_t n, unsigned d,
		      uint32_t start[FANOUT + 1])
{
	uint32_t pos[FANOUT] = {0};
	for (uint32_t i = 0; i < n; i++)
		pos[hidx(e[i].h, d)]++;
	start[0] = 0;
	for (unsigned ix = 0; ix < FANOUT; ix++) {
		start[ix + 1] = start[ix] + pos[ix];
		pos[ix] = start[ix];
	}
	for (uint32_t i = 0; i < n; i++)
		to[pos[hidx(e[i].h, d)]++] = e[i];
}

static const unsigned char *bkey_of(const cmap_t *m, const bulk_t *bk,
				    uint32_t i)
{
	return bk->keys + (size_t)i * m->ks;
}

/*
 * A subtree holding e[0, n), whose top sits at level d: as build(), with
 * duplicate keys dropped at the leaves (the earliest input stays: the
 * partition is stable) and every key's status entered in bk->res.  0 with
 * *oom set when memory ran out.
 */
static uintptr_t bulk_build(cmap_t *m, rec_t *r, bulk_t *bk, belem_t *e,
			    belem_t *tmp, uint32_t n, unsigned d, bool *oom)
{
	if (n <= BMAX || d > LAST_LEVEL) {
		/* Marked, not removed: if the CAS is lost, every element
		 * goes on to the fallback intact.  Only an element whose top
		 * hash bits (which no level above used) were seen before is
		 * compared with the earlier ones. */
		uint32_t k = 0;
		uint64_t seen = 0;
		for (uint32_t i = 0; i < n; i++) {
			uint64_t bit = (uint64_t)1 << (e[i].h >> 58);
			e[i].dup = 0;
			for (uint32_t j = 0; (seen & bit) && j < i && !e[i].dup;
			     j++)
				e[i].dup =
				    !e[j].dup && e[j].h == e[i].h &&
				    key_eq(m, bkey_of(m, bk, e[j].i),
					   bkey_of(m, bk, e[i].i), m->ks);
			seen |= bit;
			if (bk->res)
				bk->res[e[i].i] =
				    e[i].dup ? CMAP_EXISTS : CMAP_OK;
			k += !e[i].dup;
		}
		bucket_t *b = bucket_alloc(m, r, k, 0);
		if (!b) {
			*oom = true;
			return 0;
		}
		for (uint32_t i = 0, j = 0; i < n; i++) {
			if (e[i].dup)
				continue;
			copy_item(bkey(m, b, j), bkey_of(m, bk, e[i].i), m->ks);
			copy_item(bval(m, b, j),
				  bk->vals + (size_t)e[i].i * m->vs, m->vs);
			j++;
		}
		bk->added += k;
		return tag_bucket(b);
	}
	inner_t *node = inner_alloc(m, r);
	if (!node) {
		*oom = true;
		return 0;
	}
	uint32_t start[FANOUT + 1];
	partition(e, tmp, n, d, start);
	for (unsigned ix = 0; ix < FANOUT; ix++) {
		uint32_t cnt = start[ix + 1] - start[ix];
		if (!cnt)
			continue;
		uintptr_t c = bulk_build(m, r, bk, tmp + start[ix],
					 e + start[ix], cnt, d + 1, oom);
		st_relaxed(&node->slot[ix], c);
		if (*oom) {
			free_private(m, r, (uintptr_t)node);
			return 0;
		}
	}
	/* n counted duplicates: the keys left may be few enough that the
	 * node must be one bucket (the contraction rule, as after a remove;
	 * more than BMAX copies of one key would otherwise leave a chain of
	 * nodes down to a one-entry bucket). */
	uint32_t total = 0;
	for (unsigned ix = 0; ix < FANOUT && total <= BMERGE; ix++) {
		uintptr_t c = ld_relaxed(&node->slot[ix]);
		total += !c		? 0
			 : is_bucket(c) ? bucket_n(as_bucket(c))
					: BMERGE + 1;
	}
	if (total > BMERGE)
		return (uintptr_t)node;
	bucket_t *b = bucket_alloc(m, r, total, 0);
	if (!b) {
		*oom = true;
		free_private(m, r, (uintptr_t)node);
		return 0;
	}
	eref_t refs[BMERGE];
	uint32_t k = 0;
	for (unsigned ix = 0; ix < FANOUT; ix++) {
		uintptr_t c = ld_relaxed(&node->slot[ix]);
		for (uint32_t j = 0; c && j < bucket_n(as_bucket(c)); j++)
			refs[k++] = ref_of(m, as_bucket(c), j);
	}
	fill_bucket(m, b, refs, total);
	free_private(m, r, (uintptr_t)node);
	return tag_bucket(b);
}

/*
 * bulk_build leaves its input array permuted and partly overwritten (the
 * partitions ping-pong through it, and leaves are not copied back): after
 * a lost CAS or an allocation failure, refill run[0, cnt) with the keys
 * under the slot (those sharing run's hash bits of levels 0..d), in input
 * order, so the fallback sees each key once and the first copy first.  A
 * scan of every input hash: only on this rare path.
 */
static void reload(bulk_t *bk, belem_t *run, uint32_t cnt, unsigned d)
{
	unsigned bits = BITS * (d + 1);
	uint64_t mask = bits >= 64 ? ~(uint64_t)0 : ((uint64_t)1 << bits) - 1;
	uint64_t want = bk->pfx & mask;
	uint32_t k = 0;
	for (size_t i = 0; i < bk->n && k < cnt; i++)
		if ((bk->h[i] & mask) == want)
			run[k++] = (belem_t){bk->h[i], (uint32_t)i, 0};
}

/* One insert, as cmap_insert: the fallback where no empty slot takes a
 * whole subtree. */
static void bulk_one(cmap_t *m, rec_t *r, bulk_t *bk, const belem_t *x)
{
	upd_t u = {.kind = U_INSERT,
		   .h = x->h,
		   .key = bkey_of(m, bk, x->i),
		   .klen = m->ks,
		   .val = bk->vals + (size_t)x->i * m->vs,
		   .vlen = m->vs};
	int rc = cmap__reserve(m, r, RESERVE_OP);
	if (rc == CMAP_OK)
		rc = cmap__update(m, r, &u);
	if (bk->res)
		bk->res[x->i] = rc;
	bk->added += rc == CMAP_OK;
}

void cmap__bulk(cmap_t *m, rec_t *r, bulk_t *bk, inner_t *node, unsigned d,
		belem_t *e, belem_t *tmp, uint32_t n)
{
	uint32_t start[FANOUT + 1];
	partition(e, tmp, n, d, start);
	for (unsigned ix = 0; ix < FANOUT; ix++) {
		belem_t *run = tmp + start[ix], *room = e + start[ix];
		uint32_t cnt = start[ix + 1] - start[ix];
		if (!cnt)
			continue;
		bk->pfx = run[0].h; /* run is intact until bulk_build */
		_Atomic(uintptr_t) *sp = &node->slot[ix];
		/* Acquire: pairs with the CAS that published the node. */
		uintptr_t v = ld_acquire(sp);
		bool published = false, built = false;
		while (!v && !published) {
			bool oom = false;
			long added = bk->added;
			built = true;
			uintptr_t nv =
			    bulk_build(m, r, bk, run, room, cnt, d + 1, &oom);
			if (oom) {
				bk->added = added;
				break; /* one by one: each may still fit */
			}
			/* seq_cst: every key of the subtree is inserted here
			 * (their linearization point); as the CAS of an
			 * update (see cmap__update). */
			published = cas_seqcst(sp, &v, nv);
			if (published) {
				cmap__count_add(r, bk->added - added);
			} else {
				free_private(m, r, nv); /* filled meanwhile */
				bk->added = added;
			}
		}
		if (published)
			continue;
		if (built)
			reload(bk, run, cnt, d);
		if (v && !is_frozen(v) && !is_bucket(v) && d < LAST_LEVEL)
			cmap__bulk(m, r, bk, as_inner(v), d + 1, run, room,
				   cnt);
		else
			for (uint32_t i = 0; i < cnt; i++)
				bulk_one(m, r, bk, &run[i]);
	}
}
