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
	} else if (m->inplace) {
		/* The value word may change under fn: it gets a copy. */
		uint64_t v;
		read_val(m, &v, bval(m, b, (uint32_t)i));
		fn(bkey(m, b, (uint32_t)i), m->ks, &v, 8, ctx);
	} else {
		fn(bkey(m, b, (uint32_t)i), m->ks, bval(m, b, (uint32_t)i),
		   m->vs, ctx);
	}
	cmap__leave(r);
	return rc;
}

/*
 * A compute on entry i of b in an in-place map, tried before the update
 * walk: fn sees the value word's snapshot; KEEP and ABORT are answered at
 * the snapshot, a SET is written in place on condition that the word still
 * holds it.  A REMOVE, or a SET on a bucket being copied, goes to the walk
 * as a remove_if / cas on that same snapshot, so that fn is not asked
 * twice about a value that did not change.  False when the value changed
 * (or the key left): the walk then runs the compute, asking fn again.
 */
static bool compute_in_place(cmap_t *m, rec_t *r, upd_t *u, bucket_t *b,
			     uint32_t i, int *rc)
{
	uint64_t cur;
	int st; /* *rc only when answered here: the walk expects OK */
	read_val(m, &cur, bval(m, b, i));
	int act = cmap__compute_answer(m, r, u, &cur, 8, &st);
	if (act == A_PUT) {
		int ip = cmap__put_in_place(m, r, b, i, &cur, u->val, NULL);
		if (ip == IP_STALE)
			return false;
		if (ip == IP_DONE)
			act = A_KEEP; /* written: st is REPLACED */
	}
	if (act != A_KEEP) {
		/* The walk, on condition that the value is still cur. */
		upd_t c = {.kind = act == A_PUT ? U_CAS : U_REMOVE_IF,
			   .h = u->h,
			   .key = u->key,
			   .klen = u->klen,
			   .val = u->val,
			   .vlen = u->vlen,
			   .exp = &cur,
			   .elen = 8};
		int want = st;
		if ((st = cmap__reserve(m, r, RESERVE_OP)) == CMAP_OK)
			st = cmap__update(m, r, &c);
		if (st == CMAP_MISMATCH || st == CMAP_NOT_FOUND)
			return false;
		if (st >= 0)
			st =
			    want; /* REPLACED or REMOVED, as fn's answer says */
	}
	*rc = st;
	return true;
}

/*
 * Every write: enter, refuse what may not write now, reserve the
 * retirements the update may make, run it, leave and maybe collect.  The
 * update comes by value: until it is handed to the walk (slow path) its
 * fields stay in registers and its kind is a constant, so the fast paths
 * below cost only what they test.
 */
static inline __attribute__((always_inline)) int write(cmap_t *m, upd_t in)
{
	const ukind_t kind = in.kind;
	uint64_t h = hash_of(m, in.key, in.klen);
	rec_t *r = cmap__enter(m);
	if (!r)
		return CMAP_ENOMEM;
	int rc = cmap__may_write(m, r);
	bucket_t *b;
	uint32_t n;
	/* The key is looked up first, once: an insert of a present key
	 * answers EXISTS, an in-place map's set, replace or compute of a
	 * present key writes the value word, and an appending map's set or
	 * insert of an absent key appends it where there is room (no walk,
	 * reservation or copy). */
	bool try_found = kind == U_INSERT ||
			 (m->inplace && (kind == U_SET || kind == U_REPLACE ||
					 kind == U_COMPUTE));
	int i = rc == CMAP_OK && try_found
		    ? probe(m, h, in.key, in.klen, &b, &n)
		    : -1;
	int fast;
	if (i >= 0 && kind == U_INSERT) {
		/* An insert of a present key changes nothing: answered as a
		 * lookup, linearized at its slot load (DESIGN.md), without
		 * the write path's reservation and walk (get-or-insert and
		 * dedup mostly end here). */
		rc = CMAP_ERANGE;
		if (fits(m, b, (uint32_t)i, in.out, in.out_len)) {
			copy_out(m, b, (uint32_t)i, in.out, in.out_len);
			rc = CMAP_EXISTS;
		}
		cmap__leave(r);
		return rc;
	}
	if (try_found && rc == CMAP_OK && kind != U_COMPUTE &&
	    (fast = cmap__store_found(m, r, &in, b, n, i)) >= 0) {
		/* Written with nothing retired: no collect either. */
		cmap__leave(r);
		return fast;
	}
	upd_t u = in;
	u.h = h;
	if (i >= 0 && kind == U_COMPUTE &&
	    compute_in_place(m, r, &u, b, (uint32_t)i, &rc)) {
		/* Answered or written in place (or by a conditional walk,
		 * which may have retired). */
	} else if (rc == CMAP_OK &&
		   (rc = cmap__reserve(m, r, RESERVE_OP)) == CMAP_OK) {
		rc = cmap__update(m, r, &u);
	}
	cmap__leave(r);
	cmap__maybe_collect(m, r); /* outside the operation: see epoch.c */
	return rc;
}

/* The writes that store a value for a key (set, insert, replace): one
 * argument check, one walk; they differ in the decision only. */
static inline __attribute__((always_inline)) int
store(cmap_t *m, ukind_t kind, const void *key, size_t klen, const void *val,
      size_t vlen, void *out, size_t *out_len)
{
	int rc = check_op(m, key, klen, out, out_len);
	if (rc == CMAP_OK)
		rc = cmap__check_val(m, val, vlen);
	if (rc != CMAP_OK)
		return rc;
	upd_t u = {.kind = kind,
		   .key = key,
		   .klen = klen,
		   .val = val,
		   .vlen = vlen,
		   .out = out,
		   .out_len = out_len};
	return write(m, u);
}

CMAP_API int cmap_set(cmap_t *m, const void *key, size_t klen, const void *val,
		      size_t vlen, void *old, size_t *old_len)
{
	return store(m, U_SET, key, klen, val, vlen, old, old_len);
}

CMAP_API int cmap_insert(cmap_t *m, const void *key, size_t klen,
			 const void *val, size_t vlen, void *cur,
			 size_t *cur_len)
{
	return store(m, U_INSERT, key, klen, val, vlen, cur, cur_len);
}

CMAP_API int cmap_replace(cmap_t *m, const void *key, size_t klen,
			  const void *val, size_t vlen, void *old,
			  size_t *old_len)
{
	return store(m, U_REPLACE, key, klen, val, vlen, old, old_len);
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
	return write(m, u);
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
	return write(m, u);
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
	return write(m, u);
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
	return write(m, u);
}
