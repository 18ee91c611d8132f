/*
 * cmap_validate: walk the whole trie, check the structural invariants that
 * trie.c's header states and gather statistics.  The walk runs inside an
 * operation (so nothing it reads is reclaimed), and reports the first few
 * violations on stderr.
 */
#include <stdio.h>
#include <string.h>

#include "internal.h"

struct walk {
	cmap_t *m;
	cmap_stats_t st;
	unsigned errors;
	uint64_t prefix[CMAP_MAX_LEVELS]; /* slot index chosen at each level */
};

static void bad(struct walk *w, const char *what, unsigned level)
{
	if (w->errors++ < 10)
		fprintf(stderr, "cmap_validate: %s (level %u)\n", what, level);
}

static size_t entry_bytes(const cmap_t *m, bucket_t *b, uint32_t i)
{
	if (!m->var)
		return 0;
	blob_t *bl = bvent(b, i)->blob;
	return cmap__blob_bytes(bl->klen, bl->vlen);
}

/* Does hash h follow the path to a bucket at slot depth `level`? */
static bool on_path(const struct walk *w, uint64_t h, unsigned level)
{
	for (unsigned d = 0; d <= level && d <= LAST_LEVEL; d++)
		if (hidx(h, d) != w->prefix[d])
			return false;
	return true;
}

static void check_bucket(struct walk *w, bucket_t *b, unsigned level)
{
	cmap_t *m = w->m;
	w->st.buckets++;
	w->st.nodes_per_level[level + 1]++;
	if (level + 1 > w->st.max_depth)
		w->st.max_depth = level + 1;
	w->st.bytes_in_use += bucket_size(m, b);
	uint32_t n = bucket_n(b);
	if (n == 0)
		bad(w, "empty bucket", level);
	if (bucket_cap(b) < n)
		bad(w, "bucket holds more entries than it has room for", level);
	/* A write left announced only in a bucket a copier froze (the copy
	 * carried it). */
	uint32_t ipw = ld_relaxed(&b->ipw);
	if ((ipw >> IPW_SHIFT) && !(ipw & IPW_FROZEN))
		bad(w, "in-place write still announced", level);
	if (n > BMAX) {
		if (level < LAST_LEVEL)
			bad(w, "oversized bucket above the last level", level);
		else
			w->st.collision_buckets++;
	}
	uint64_t h0 = 0;
	for (uint32_t i = 0; i < n; i++) {
		uint64_t h = m->var ? bvent(b, i)->hash
				    : m->hash(bkey(m, b, i), m->ks, m->seed);
		if (m->var) {
			blob_t *bl = bvent(b, i)->blob;
			if (m->hash(bl->data, bl->klen, m->seed) != h)
				bad(w, "stored hash differs from the key's",
				    level);
			if ((m->ks && bl->klen != m->ks) ||
			    (m->vs && bl->vlen != m->vs))
				bad(w,
				    "item length differs from the fixed size",
				    level);
		}
		if (!on_path(w, h, level))
			bad(w, "entry off its hash path", level);
		if (i == 0)
			h0 = h;
		else if (n > BMAX && h != h0)
			bad(w, "collision bucket with different hashes", level);
		w->st.bytes_in_use += entry_bytes(m, b, i);
		w->st.entries++;
	}
	/* Keys are unique within the bucket (and so in the map). */
	for (uint32_t i = 0; i < n && n <= 4 * BMAX; i++)
		for (uint32_t j = i + 1; j < n; j++) {
			bool same;
			if (m->var) {
				blob_t *x = bvent(b, i)->blob,
				       *y = bvent(b, j)->blob;
				same = x->klen == y->klen &&
				       (m->eq ? m->eq(x->data, y->data, x->klen)
					      : !memcmp(x->data, y->data,
							x->klen));
			} else {
				same = m->eq ? m->eq(bkey(m, b, i),
						     bkey(m, b, j), m->ks)
					     : !memcmp(bkey(m, b, i),
						       bkey(m, b, j), m->ks);
			}
			if (same)
				bad(w, "duplicate key", level);
		}
}

/* Walk inner node n at depth level; returns entries below it. */
static size_t walk_inner(struct walk *w, inner_t *n, unsigned level)
{
	size_t below = 0, kids = 0;
	bool all_buckets = true;
	w->st.inner_nodes++;
	w->st.nodes_per_level[level]++;
	w->st.bytes_in_use += sizeof *n;
	for (unsigned i = 0; i < FANOUT; i++) {
		/* Acquire: pairs with the CAS that published the child. */
		uintptr_t v = ld_acquire(&n->slot[i]);
		if (is_frozen(v))
			bad(w, "frozen slot", level);
		v &= ~T_FROZEN;
		if (!v)
			continue;
		if (level == LAST_LEVEL &&
		    i >= (1u << (64 - LAST_LEVEL * BITS)))
			bad(w, "slot beyond the hash's last bits", level);
		kids++;
		w->prefix[level] = i;
		if (is_bucket(v)) {
			bucket_t *b = as_bucket(v);
			check_bucket(w, b, level);
			below += bucket_n(b);
		} else if (level >= LAST_LEVEL) {
			bad(w, "inner node below the last level", level);
		} else {
			all_buckets = false;
			below += walk_inner(w, as_inner(v), level + 1);
		}
	}
	if (level > 0 && kids == 0)
		bad(w, "empty non-root inner node", level);
	if (level > 0 && all_buckets && below <= BMERGE)
		bad(w, "inner node small enough to have been contracted",
		    level);
	return below;
}

CMAP_API int cmap_validate(cmap_t *m, cmap_stats_t *stats)
{
	if (!m)
		return CMAP_EINVAL;
	rec_t *r = cmap__enter(m);
	if (!r)
		return CMAP_ENOMEM;
	struct walk w;
	memset(&w, 0, sizeof w);
	w.m = m;
	walk_inner(&w, m->root, 0);
	cmap__leave(r);
	w.st.bytes_reserved = ld_relaxed(&m->pool.reserved);
	w.st.garbage_pending = cmap__pending(m);
	w.st.threads = cmap__nrecords(m);
	if (w.st.entries != cmap_len(m))
		bad(&w, "entry count differs from cmap_len", 0);
	if (stats)
		*stats = w.st;
	return w.errors ? CMAP_EINVAL : CMAP_OK;
}
