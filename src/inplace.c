/*
 * In-place values: the protocol that lets a replace write a value word
 * where it is while other threads copy the same bucket, and the
 * descriptors it announces writes with.
 *
 * In an in-place map (8-byte values, no value destructor) a write that
 * replaces a present key's value changes the value word where it is, with
 * no copy, allocation or retirement.  The race to rule out is a copier
 * (an insert, remove, split or merge copying the bucket) reading the old
 * value and publishing its copy after the in-place write: the write would
 * be lost.  So:
 *  - an in-place writer announces its write {i, exp, val} by a CAS of the
 *    bucket's ipw word naming its descriptor, then stores val in value
 *    word i if it holds exp (a set or replace, "any": whatever it holds),
 *    then CASes ipw back.  While ipw names it, no other in-place write can
 *    begin, so only its owner writes word i, once, and the write takes
 *    place if and only if the word held exp when it was announced (always,
 *    for "any");
 *  - a copier first freezes the bucket (fetch_or IPW_FROZEN on ipw): no
 *    in-place write can begin afterwards.  If the freeze found a pending
 *    write, the copy gives entry i the value that write leaves (val for
 *    "any" or if the word holds exp or already val, else the word's value)
 *    and never reads word i with a plain load, which the owner may still be
 *    writing; every other word is final and read as usual.
 * The write's linearization point is the owner's store, or, when a copy
 * that carries it is published first, that publication; the owner's
 * store then lands in the replaced bucket, which only readers that found
 * it before see.  Readers load value words atomically and never look at ipw.
 * A descriptor that a copier saw stays named by the frozen bucket (its
 * owner takes another) and goes back to the map when the bucket is freed.
 *
 * In an appending map (keys of at most 8 bytes too) an insert into a
 * bucket with room appends the same way: it announces {D_APPEND, i = the
 * count it found the key absent in, key, value}, re-reads the count (only
 * announcers raise it) and, if unchanged, writes entry i and stores the
 * count i + 1 with release (the linearization point).  A copier's freeze
 * reads the count after freezing and carries an append announced on that
 * count; with any other count the append landed already or will not.
 * docs/DESIGN.md, "In-place values" and "In-place inserts", has the
 * argument; tests/test_inplace.c and tests/modelcheck/inplace_mc.c check
 * it.
 */
#include <string.h>

#include "trie.h"

/*
 * Descriptors live in per-map chunks (chunk k holds 32 << k of them) and
 * are named by index in a bucket's 32-bit ipw word.  A thread keeps one
 * until a copier freezes a bucket with it announced; that one is put back
 * on the map's free stack when the bucket is freed.
 */
static desc_t *desc_at(const cmap_t *m, uint32_t idx)
{
	uint32_t j = idx / 32 + 1, k = 31 - (uint32_t)__builtin_clz(j);
	/* Acquire: pairs with the release CAS that installed the chunk
	 * (a copier reaches it through ipw, ordered after that anyway). */
	desc_t *c = ld_acquire((_Atomic(desc_t *) *)&m->dchunk[k]);
	return c + (idx - 32 * ((1u << k) - 1));
}

/* Give r a descriptor (inplace.h). */
bool cmap__desc_take(cmap_t *m, rec_t *r)
{
	/* Acquire: pairs with the release CAS of the push, so the popped
	 * descriptor's next link is seen. */
	uint64_t h = ld_acquire(&m->dfree);
	while ((uint32_t)h) {
		uint32_t idx = (uint32_t)h - 1;
		/* Relaxed: a stale link fails the tagged CAS below. */
		uint32_t next = ld_relaxed(&desc_at(m, idx)->next);
		uint64_t nh = ((h >> 32) + 1) << 32 | next;
		/* Acquire (on failure too): as the load above, for the
		 * next head's link; the release half orders nothing. */
		if (cas_acqrel(&m->dfree, &h, nh)) {
			r->desc = desc_at(m, idx);
			r->didx = idx + 1;
			return true;
		}
	}
	uint32_t idx =
	    atomic_fetch_add_explicit(&m->dnext, 1, memory_order_relaxed);
	uint32_t j = idx / 32 + 1, k = 31 - (uint32_t)__builtin_clz(j);
	if (k >= DCHUNKS || (idx + 1) << IPW_SHIFT >> IPW_SHIFT != idx + 1)
		return false; /* (an index a later take may still not fit) */
	if (!ld_acquire(&m->dchunk[k])) {
		size_t bytes = (size_t)(32u << k) * sizeof(desc_t);
		desc_t *c = m->cfg.alloc(m->cfg.alloc_ctx, bytes, CACHELINE);
		if (!c)
			return false; /* idx is lost: a few bytes of index space
				       */
		desc_t *e = NULL;
		/* Release: the chunk's memory before its publication. */
		if (!cas_release(&m->dchunk[k], &e, c))
			m->cfg.free(m->cfg.alloc_ctx, c, bytes);
	}
	r->desc = desc_at(m, idx);
	r->didx = idx + 1;
	return true;
}

/* Put descriptor idx back (any thread: a frozen bucket's, once the bucket
 * is freed). */
void cmap__desc_put(cmap_t *m, uint32_t idx)
{
	desc_t *d = desc_at(m, idx);
	uint64_t h = ld_relaxed(&m->dfree);
	for (;;) {
		st_relaxed(&d->next, (uint32_t)h);
		uint64_t nh = ((h >> 32) + 1) << 32 | (idx + 1);
		/* Release: a taker (acquire) sees d->next. */
		if (cas_release(&m->dfree, &h, nh))
			return;
	}
}

/* Freeze b before copying it (trie.h). */
void cmap__freeze_bucket(const cmap_t *m, bucket_t *b, ovr_t *o)
{
	/* Acquire: pairs with the release CASes of in-place writers on ipw,
	 * so their descriptor and the words they wrote are seen. */
	uint32_t w =
	    atomic_fetch_or_explicit(&b->ipw, IPW_FROZEN, memory_order_acquire);
	/* From here only a pending appender changes the count.  Acquire
	 * (bucket_n): pairs with its release store, if this sees it, so the
	 * entry it appended is read from b.  (Field by field: GenMC has no
	 * struct copies.) */
	o->n = bucket_n(b);
	o->i = -1;
	o->app = false;
	if (!(w >> IPW_SHIFT))
		return;
	desc_t *d = desc_at(m, (w >> IPW_SHIFT) - 1);
	if (d->kind == D_APPEND) {
		/* Announced on the count it still has: the owner will append
		 * (it reads the same count), so the copy carries the entry
		 * and never reads its words, which the owner may be writing.
		 * Any other count: appended already (the entry is in b), or
		 * announced on a stale count (the owner writes nothing). */
		if (d->i == o->n) {
			o->i = (int32_t)o->n++;
			o->k = d->exp;
			o->v = d->val;
			o->app = true;
		}
		return;
	}
	/* Relaxed: the word holds the value the announcement was made on
	 * (seen through the acquire above), or the owner's val since. */
	uint64_t x = ld_relaxed(val_word(m, b, d->i));
	o->i = (int32_t)d->i;
	o->v = d->kind == D_ANY || x == d->exp ? d->val : x;
}

/* Append an entry in place (trie.h). */
int cmap__append(cmap_t *m, rec_t *r, bucket_t *b, uint32_t n, const void *key,
		 const void *valp)
{
	if (!r->didx && !cmap__desc_take(m, r))
		return IP_BUSY;
	desc_t *d = r->desc;
	uint32_t me = r->didx << IPW_SHIFT;
	uint64_t k = 0, val;
#ifndef CMAP_MODELCHECK
	memcpy(&k, key, m->ks);
	memcpy(&val, valp, 8); /* the caller's buffers may be unaligned */
#else
	k = *(const uint64_t *)key; /* GenMC has no memcpy of objects */
	val = *(const uint64_t *)valp;
#endif
	d->i = n;
	d->kind = D_APPEND;
	d->exp = k;
	d->val = val;
	/* The capacity is the only field set while no write is announced. */
	uint32_t base = ld_relaxed(&b->ipw) & IPW_CAP;
	if (!announce(b, base, me))
		return IP_BUSY;
	int rc = IP_STALE;
	/* Relaxed: only an announcer raises the count, and the last one's
	 * store was seen through announce's acquire. */
	if (ld_relaxed(&b->cnt) == n) {
		/* The key: an atomic store of its size where lookups compare
		 * keys with a vector (4 and 8 bytes): their last group may
		 * cover this entry, read atomically (trie.h, last_group).
		 * Relaxed: the count's release store below publishes it. */
		unsigned char *kp = bkey(m, b, n);
		if (m->ks == 8)
			st_relaxed((_Atomic(uint64_t) *)(uintptr_t)kp, k);
		else if (m->ks == 4)
			st_relaxed((_Atomic(uint32_t) *)(uintptr_t)kp,
				   (uint32_t)k);
		else
			memcpy(kp, key, m->ks);
		st_relaxed(val_word(m, b, n), val);
		/* Release: the linearization point (unless a copy carried the
		 * append first); pairs with readers' acquire load of the
		 * count (bucket_n), so they see the entry's key and value. */
		st_release(&b->cnt, n + 1);
		rc = IP_DONE;
	}
	withdraw(r, b, base, me);
	return rc;
}
