/*
 * The point operations: lookups (single, borrowed, batched) and every
 * operation that changes one key.  Their arguments are checked here, once
 * per kind of argument; the writes are all cmap__update (trie.c) with a
 * different decision.
 */
#include "trie.h"

/* The key, and an output buffer whose length pointer a variable-length
 * value needs (it carries the capacity in and the length out). */
static int check_op(const cmap_t *m, const void *key, size_t klen, void *out,
		    size_t *out_len)
{
	if (unlikely(!m))
		return CMAP_EINVAL;
	int rc = check_key(m, key, klen);
	if (unlikely(rc != CMAP_OK))
		return rc;
	if (unlikely(out && !m->vs && !out_len))
		return CMAP_EINVAL;
	return CMAP_OK;
}

CMAP_API int cmap_get(cmap_t *m, const void *key, size_t klen, void *val,
		      size_t *vlen)
{
	int rc = check_op(m, key, klen, val, vlen);
	if (unlikely(rc != CMAP_OK))
		return rc;
	uint64_t h = hash_of(m, key, klen);
	rec_t *r = cmap__enter(m);
	if (unlikely(!r))
		return CMAP_ENOMEM;
	bucket_t *b;
	int i = lookup(m, h, key, klen, &b);
	if (i < 0)
		rc = CMAP_NOT_FOUND;
	else if (!fits(m, b, (uint32_t)i, val, vlen))
		rc = CMAP_ERANGE;
	else
		copy_out(m, b, (uint32_t)i, val, vlen);
	cmap__leave(r);
	return rc;
}

/* Keys per round of cmap_get_batch: enough misses in flight to cover the
 * memory latency, few enough that the prefetched lines stay in L1. */
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
		for (unsigned i = 0; i < cnt; i++) {
			h[i] = hash_of(m, kp + (base + i) * m->ks, m->ks);
			/* Acquire: as in lookup(). */
			v[i] = ld_acquire(&m->root->slot[hidx(h[i], 0)]) &
			       ~T_FROZEN;
			prefetch_next(v[i], h[i], 1);
		}
		for (unsigned d = 1, more = 1; more; d++) {
			more = 0;
			for (unsigned i = 0; i < cnt; i++) {
				if (!v[i] || is_bucket(v[i]))
					continue;
				v[i] =
				    ld_acquire(
					&as_inner(v[i])->slot[hidx(h[i], d)]) &
				    ~T_FROZEN;
				prefetch_next(v[i], h[i], d + 1);
				more = 1;
			}
		}
		for (unsigned i = 0; i < cnt; i++) {
			int j = -1;
			const unsigned char *k = kp + (base + i) * m->ks;
			if (v[i])
				j = bucket_find(m, as_bucket(v[i]), h[i], k,
						m->ks);
			if (j >= 0) {
				copy_item(vp + (base + i) * m->vs,
					  bval(m, as_bucket(v[i]), (uint32_t)j),
					  m->vs);
				hits++;
			}
			if (found)
				found[base + i] = j >= 0;
		}
	}
	cmap__leave(r);
	return hits;
}

CMAP_API int cmap_get_with(cmap_t *m, const void *key, size_t klen,
			   cmap_visit_fn fn, void *ctx)
{
	if (!fn)
		return CMAP_EINVAL;
	int rc = check_op(m, key, klen, NULL, NULL);
	if (rc != CMAP_OK)
		return rc;
	uint64_t h = hash_of(m, key, klen);
	rec_t *r = cmap__enter(m);
	if (!r)
		return CMAP_ENOMEM;
	bucket_t *b;
	int i = lookup(m, h, key, klen, &b);
	if (i < 0) {
		rc = CMAP_NOT_FOUND;
	} else if (m->var) {
		blob_t *bl = bvent(b, (uint32_t)i)->blob;
		fn(bl->data, bl->klen, blob_val(bl), bl->vlen, ctx);
	} else {
		fn(bkey(m, b, (uint32_t)i), m->ks, bval(m, b, (uint32_t)i),
		   m->vs, ctx);
	}
	cmap__leave(r);
	return rc;
}

/*
 * Every write: enter, refuse what may not write now, reserve the
 * retirements the update may make, run it, leave and maybe collect.
 */
static inline __attribute__((always_inline)) int write(cmap_t *m, upd_t *u)
{
	u->h = hash_of(m, u->key, u->klen);
	rec_t *r = cmap__enter(m);
	if (!r)
		return CMAP_ENOMEM;
	int rc = cmap__may_write(m, r);
	bucket_t *b;
	int i;
	if (rc == CMAP_OK && u->kind == U_INSERT &&
	    (i = lookup(m, u->h, u->key, u->klen, &b)) >= 0) {
		/* An insert of a present key changes nothing: answered as a
		 * lookup, linearized at its slot load (DESIGN.md), without
		 * the write path's reservation and walk (get-or-insert and
		 * dedup mostly end here). */
		rc = CMAP_ERANGE;
		if (fits(m, b, (uint32_t)i, u->out, u->out_len)) {
			copy_out(m, b, (uint32_t)i, u->out, u->out_len);
			rc = CMAP_EXISTS;
		}
	} else if (rc == CMAP_OK &&
		   (rc = cmap__reserve(m, r, RESERVE_OP)) == CMAP_OK) {
		rc = cmap__update(m, r, u);
	}
	cmap__leave(r);
	cmap__maybe_collect(m, r); /* outside the operation: see epoch.c */
	return rc;
}

CMAP_API int cmap_set(cmap_t *m, const void *key, size_t klen, const void *val,
		      size_t vlen, void *old, size_t *old_len)
{
	int rc = check_op(m, key, klen, old, old_len);
	if (rc == CMAP_OK)
		rc = cmap__check_val(m, val, vlen);
	if (rc != CMAP_OK)
		return rc;
	upd_t u = {.kind = U_SET,
		   .key = key,
		   .klen = klen,
		   .val = val,
		   .vlen = vlen,
		   .out = old,
		   .out_len = old_len};
	return write(m, &u);
}

CMAP_API int cmap_insert(cmap_t *m, const void *key, size_t klen,
			 const void *val, size_t vlen, void *cur,
			 size_t *cur_len)
{
	int rc = check_op(m, key, klen, cur, cur_len);
	if (rc == CMAP_OK)
		rc = cmap__check_val(m, val, vlen);
	if (rc != CMAP_OK)
		return rc;
	upd_t u = {.kind = U_INSERT,
		   .key = key,
		   .klen = klen,
		   .val = val,
		   .vlen = vlen,
		   .out = cur,
		   .out_len = cur_len};
	return write(m, &u);
}

CMAP_API int cmap_replace(cmap_t *m, const void *key, size_t klen,
			  const void *val, size_t vlen, void *old,
			  size_t *old_len)
{
	int rc = check_op(m, key, klen, old, old_len);
	if (rc == CMAP_OK)
		rc = cmap__check_val(m, val, vlen);
	if (rc != CMAP_OK)
		return rc;
	upd_t u = {.kind = U_REPLACE,
		   .key = key,
		   .klen = klen,
		   .val = val,
		   .vlen = vlen,
		   .out = old,
		   .out_len = old_len};
	return write(m, &u);
}

CMAP_API int cmap_cas(cmap_t *m, const void *key, size_t klen,
		      const void *expected, size_t elen, const void *desired,
		      size_t dlen, void *cur, size_t *cur_len)
{
	int rc = check_op(m, key, klen, cur, cur_len);
	if (rc == CMAP_OK)
		rc = cmap__check_val(m, expected, elen);
	if (rc == CMAP_OK)
		rc = cmap__check_val(m, desired, dlen);
	if (rc != CMAP_OK)
		return rc;
	upd_t u = {.kind = U_CAS,
		   .key = key,
		   .klen = klen,
		   .val = desired,
		   .vlen = dlen,
		   .exp = expected,
		   .elen = elen,
		   .out = cur,
		   .out_len = cur_len};
	return write(m, &u);
}

CMAP_API int cmap_remove(cmap_t *m, const void *key, size_t klen, void *old,
			 size_t *old_len)
{
	int rc = check_op(m, key, klen, old, old_len);
	if (rc != CMAP_OK)
		return rc;
	upd_t u = {.kind = U_REMOVE,
		   .key = key,
		   .klen = klen,
		   .out = old,
		   .out_len = old_len};
	return write(m, &u);
}

CMAP_API int cmap_remove_if(cmap_t *m, const void *key, size_t klen,
			    const void *expected, size_t elen)
{
	int rc = check_op(m, key, klen, NULL, NULL);
	if (rc == CMAP_OK)
		rc = cmap__check_val(m, expected, elen);
	if (rc != CMAP_OK)
		return rc;
	upd_t u = {.kind = U_REMOVE_IF,
		   .key = key,
		   .klen = klen,
		   .exp = expected,
		   .elen = elen};
	return write(m, &u);
}

CMAP_API int cmap_compute(cmap_t *m, const void *key, size_t klen,
			  cmap_compute_fn fn, void *ctx)
{
	int rc = check_op(m, key, klen, NULL, NULL);
	if (rc != CMAP_OK)
		return rc;
	if (!fn)
		return CMAP_EINVAL;
	upd_t u = {
	    .kind = U_COMPUTE, .key = key, .klen = klen, .fn = fn, .ctx = ctx};
	return write(m, &u);
}
