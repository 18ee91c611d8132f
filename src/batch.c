/*
 * Batches: many keys of a fixed-size map per call.  The keys of a group
 * walk the trie together, level by level, prefetching the next level of
 * every key, so that their cache misses overlap (as in DRAMHiT and Boost's
 * bulk visitation); then each key's operation runs on its own, on lines
 * already in cache.  Each operation is linearizable alone; a batch is not
 * atomic and not a snapshot.
 */
#include "trie.h"

/* Keys per group: enough misses in flight to cover the memory latency, few
 * enough that the prefetched lines stay in L1. */
#define BATCH_GROUP 32

static inline void prefetch_next(uintptr_t v, uint64_t h, unsigned d)
{
	if (is_bucket(v)) {
		/* Header and keys, then (usually) the value's line.  Not a
		 * third line: up to 28 u32 keys fit the first two; past them
		 * lie values, of which a lookup reads one, or (at up to 7
		 * entries, as in the 10 M benchmark) another object. */
		__builtin_prefetch(as_bucket(v));
		__builtin_prefetch((char *)as_bucket(v) + 64);
	} else if (v)
		__builtin_prefetch(&as_inner(v)->slot[hidx(h, d)]);
}

/*
 * Walk the cnt keys at kp (key size ks) down to their buckets together:
 * h[i] is key i's hash, v[i] its bucket's slot value (0: empty), read with
 * acquire as lookup() does; frozen slots are read through.
 */
static void walk_group(const cmap_t *m, const unsigned char *kp, unsigned cnt,
		       uint64_t *h, uintptr_t *v)
{
	for (unsigned i = 0; i < cnt; i++) {
		h[i] = hash_of(m, kp + (size_t)i * m->ks, m->ks);
		/* Acquire: as in lookup(). */
		v[i] = ld_acquire(&m->root->slot[hidx(h[i], 0)]) & ~T_FROZEN;
		prefetch_next(v[i], h[i], 1);
	}
	for (unsigned d = 1, more = 1; more; d++) {
		more = 0;
		for (unsigned i = 0; i < cnt; i++) {
			if (!v[i] || is_bucket(v[i]))
				continue;
			v[i] =
			    ld_acquire(&as_inner(v[i])->slot[hidx(h[i], d)]) &
			    ~T_FROZEN;
			prefetch_next(v[i], h[i], d + 1);
			more = 1;
		}
	}
}

CMAP_API long cmap_get_batch(cmap_t *m, const void *keys, size_t n, void *vals,
			     unsigned char *found)
{
	if (!m || (n && (!keys || !vals)) || m->var)
		return CMAP_EINVAL;
	rec_t *r = cmap__enter(m);
	if (!r)
		return CMAP_ENOMEM;
	const unsigned char *kp = keys;
	unsigned char *vp = vals;
	long hits = 0;
	for (size_t base = 0; base < n; base += BATCH_GROUP) {
		unsigned cnt =
		    n - base < BATCH_GROUP ? (unsigned)(n - base) : BATCH_GROUP;
		uint64_t h[BATCH_GROUP];
		uintptr_t v[BATCH_GROUP];
		const unsigned char *gk = kp + base * m->ks;
		walk_group(m, gk, cnt, h, v);
		for (unsigned i = 0; i < cnt; i++) {
			bucket_t *b;
			uint32_t bn;
			int j = probe_at(m, v[i], h[i], gk + (size_t)i * m->ks,
					 m->ks, &b, &bn);
			if (j >= 0) {
				read_val(m, vp + (base + i) * m->vs,
					 bval(m, b, (uint32_t)j));
				hits++;
			}
			if (found)
				found[base + i] = j >= 0;
		}
	}
	cmap__leave(r);
	return hits;
}

/*
 * cmap_set_batch and cmap_remove_batch: per group, one walk with prefetch,
 * then each key's update as cmap_set or cmap_remove would run it.  The
 * thread leaves its operation between groups, so a long batch holds back
 * reclamation no longer than one group, and collects as single writes do.
 */
static long write_batch(cmap_t *m, ukind_t kind, const void *keys,
			const void *vals, size_t n, int *results)
{
	if (!m || (n && !keys) || (kind == U_SET && n && !vals) || m->var)
		return CMAP_EINVAL;
	const unsigned char *kp = keys, *vp = vals;
	long ok = 0;
	for (size_t base = 0; base < n; base += BATCH_GROUP) {
		unsigned cnt =
		    n - base < BATCH_GROUP ? (unsigned)(n - base) : BATCH_GROUP;
		rec_t *r = cmap__enter(m);
		if (!r)
			return ok ? ok : CMAP_ENOMEM;
		int rc = cmap__may_write(m, r);
		if (rc != CMAP_OK) {
			cmap__leave(r);
			return rc;
		}
		uint64_t h[BATCH_GROUP];
		uintptr_t v[BATCH_GROUP];
		uint32_t bn[BATCH_GROUP];
		int at[BATCH_GROUP];
		const unsigned char *gk = kp + base * m->ks;
		walk_group(m, gk, cnt, h, v);
		bool fast = kind == U_SET && m->inplace;
		/* The keys' places in their buckets, and the lines their
		 * writes will touch prefetched: a write's first CAS is a full
		 * barrier on x86, so a miss after it is not overlapped with
		 * anything (a present key's value word; an absent key's
		 * slot, where it may be appended). */
		for (unsigned i = 0; fast && i < cnt; i++) {
			bucket_t *b;
			at[i] = probe_at(m, v[i], h[i], gk + (size_t)i * m->ks,
					 m->ks, &b, &bn[i]);
			if (!b)
				continue;
			uint32_t e = at[i] >= 0 ? (uint32_t)at[i] : bn[i];
			if (at[i] < 0)
				__builtin_prefetch(bkey(m, b, e), 1);
			__builtin_prefetch(bval(m, b, e), 1);
		}
		for (unsigned i = 0; i < cnt; i++) {
			/* Field by field: a set and a remove read no other
			 * field, and zeroing the whole struct would cost as
			 * much as the rest of a key's fast path. */
			upd_t u;
			u.kind = kind;
			u.h = h[i];
			u.key = gk + (size_t)i * m->ks;
			u.klen = m->ks;
			u.val = kind == U_SET ? vp + (base + i) * m->vs : NULL;
			u.vlen = kind == U_SET ? m->vs : 0;
			u.out = NULL;
			u.out_len = NULL;
			/* Where the group's walk found the key's bucket: a
			 * present key's value written in place or an absent
			 * key appended, as cmap_set does.  A bucket replaced
			 * since (by this batch too) is frozen, and the key
			 * takes the update walk. */
			rc = -1;
			if (fast && v[i]) {
				/* Found again if the count moved (this batch
				 * may have appended to the bucket). */
				bucket_t *b = as_bucket(v[i]);
				uint32_t c = bucket_n(b);
				int j = c == bn[i] ? at[i]
						   : bucket_find(m, b, c, h[i],
								 u.key, m->ks);
				rc = cmap__store_found(m, r, &u, b, c, j);
			}
			if (rc < 0 &&
			    (rc = cmap__reserve(m, r, RESERVE_OP)) == CMAP_OK)
				rc = cmap__update(m, r, &u);
			if (results)
				results[base + i] = rc;
			ok += rc == CMAP_OK || rc == CMAP_REPLACED;
		}
		cmap__leave(r);
		cmap__maybe_collect(m, r); /* outside the operation */
	}
	return ok;
}

CMAP_API long cmap_set_batch(cmap_t *m, const void *keys, const void *vals,
			     size_t n, int *results)
{
	return write_batch(m, U_SET, keys, vals, n, results);
}

CMAP_API long cmap_remove_batch(cmap_t *m, const void *keys, size_t n,
				int *results)
{
	return write_batch(m, U_REMOVE, keys, NULL, n, results);
}

/*
 * cmap_insert_batch: the keys are split by their root index first (a
 * counting sort of indices, 12 bytes per key of scratch); each root slot's
 * keys then go down together (cmap__bulk): an empty slot takes them all as
 * one privately built subtree, so loading an empty map costs one CAS per
 * root slot and no per-key walk, copy or retirement.
 */
CMAP_API long cmap_insert_batch(cmap_t *m, const void *keys, const void *vals,
				size_t n, int *results)
{
	if (!m || (n && (!keys || !vals)) || m->var || n > UINT32_MAX)
		return CMAP_EINVAL;
	if (!n)
		return 0;
	const cmap_config_t *c = &m->cfg;
	uint64_t *h = c->alloc(c->alloc_ctx, n * sizeof *h, 16);
	uint32_t *idx = c->alloc(c->alloc_ctx, n * sizeof *idx, 16);
	uint32_t cnt[FANOUT] = {0}, start[FANOUT + 1];
	belem_t *e = NULL, *scratch = NULL;
	long rc = CMAP_ENOMEM;
	if (!h || !idx)
		goto out;
	const unsigned char *kp = keys;
	for (size_t i = 0; i < n; i++) {
		h[i] = hash_of(m, kp + i * m->ks, m->ks);
		cnt[hidx(h[i], 0)]++;
	}
	uint32_t most = 0;
	start[0] = 0;
	for (unsigned ix = 0; ix < FANOUT; ix++) {
		start[ix + 1] = start[ix] + cnt[ix];
		most = cnt[ix] > most ? cnt[ix] : most;
		cnt[ix] = start[ix];
	}
	for (size_t i = 0; i < n; i++)
		idx[cnt[hidx(h[i], 0)]++] = (uint32_t)i;
	e = c->alloc(c->alloc_ctx, most * sizeof *e, 16);
	scratch = c->alloc(c->alloc_ctx, most * sizeof *e, 16);
	if (!e || !scratch)
		goto out;
	bulk_t bk = {keys, vals, results, 0, h, n, 0};
	for (unsigned ix = 0; ix < FANOUT; ix++) {
		uint32_t g = start[ix + 1] - start[ix];
		if (!g)
			continue;
		for (uint32_t j = 0; j < g; j++) {
			uint32_t i = idx[start[ix] + j];
			e[j] = (belem_t){h[i], i, 0};
		}
		rec_t *r = cmap__enter(m);
		if (!r) {
			rc = bk.added ? bk.added : CMAP_ENOMEM;
			goto out;
		}
		if ((rc = cmap__may_write(m, r)) != CMAP_OK) {
			cmap__leave(r);
			goto out;
		}
		cmap__bulk(m, r, &bk, m->root, 0, e, scratch, g);
		cmap__leave(r);
		cmap__maybe_collect(m, r); /* outside the operation */
	}
	rc = bk.added;
out:
	if (scratch)
		c->free(c->alloc_ctx, scratch, most * sizeof *e);
	if (e)
		c->free(c->alloc_ctx, e, most * sizeof *e);
	if (idx)
		c->free(c->alloc_ctx, idx, n * sizeof *idx);
	if (h)
		c->free(c->alloc_ctx, h, n * sizeof *h);
	return rc;
}
