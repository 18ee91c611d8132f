/*
 * The trie's inline layer, shared by the files that walk it: trie.c (the
 * node layout, the one update walk and its publish step), ops.c (the point
 * operations and their argument checks) and iter.c (iteration).  Lookups
 * live here so that cmap_get and the batches inline them.
 */
#ifndef CMAP_TRIE_H
#define CMAP_TRIE_H

#include <string.h>

#include "internal.h"
#include "inplace.h"

#ifdef __SSE2__
#include <emmintrin.h>
#endif

/*
 * Copy n bytes of bucket contents inline.  The spans are short (at most a
 * few hundred bytes) and a call into libc's memcpy costs more than the copy
 * itself on this path (measured: a variable-size memcpy in the identity
 * hasher alone made lookups 3x slower).
 */
static inline void copy_span(unsigned char *dst, const unsigned char *src,
			     size_t n)
{
	size_t i = 0;
	for (; i + 16 <= n; i += 16)
		memcpy(dst + i, src + i, 16);
	/* Keys and values are mostly multiples of 4 bytes. */
	if (i + 8 <= n) {
		memcpy(dst + i, src + i, 8);
		i += 8;
	}
	if (i + 4 <= n) {
		memcpy(dst + i, src + i, 4);
		i += 4;
	}
	for (; i < n; i++)
		dst[i] = src[i];
}

/* Copy a fixed-size item; the common sizes avoid a call to memcpy. */
static inline void copy_item(void *dst, const void *src, size_t n)
{
	switch (n) {
	case 4:
		memcpy(dst, src, 4);
		break;
	case 8:
		memcpy(dst, src, 8);
		break;
	case 16:
		memcpy(dst, src, 16);
		break;
	default:
		memcpy(dst, src, n);
	}
}

static inline uint64_t hash_of(const cmap_t *m, const void *key, size_t klen)
{
	return m->hash(key, klen, m->seed);
}

static inline bool key_eq(const cmap_t *m, const void *a, const void *b,
			  size_t len)
{
	return m->eq ? m->eq(a, b, len) != 0 : memcmp(a, b, len) == 0;
}

#ifdef __SSE2__
/*
 * Compare the key with the bucket's first n keys a 16-byte group at a
 * time.  In an appending map the entries past n may be being appended
 * (cmap__append stores the key atomically): the whole groups below n are
 * read with vector loads, then a last group of two atomic 8-byte loads at
 * an 8-byte-aligned position that covers the keys the whole groups did not
 * (it overlaps the one before; for a key of 4 bytes and an odd n it also
 * covers entry n).  A key slot past n is zero (bucket_alloc) or a key
 * being appended, and a match there is no match.  Few, well-predicted
 * branches let the CPU run ahead into the next lookup while this one waits
 * on memory.
 */
/* Relaxed: the keys below the count were ordered before us by its acquire
 * load (bucket_n); a key being appended past it is never a match. */
static inline __m128i last_group(const unsigned char *p)
{
	uint64_t lo = ld_relaxed((_Atomic(uint64_t) *)(uintptr_t)p);
	uint64_t hi = ld_relaxed((_Atomic(uint64_t) *)(uintptr_t)(p + 8));
	return _mm_set_epi64x((long long)hi, (long long)lo);
}

static inline int find4(bucket_t *b, uint32_t n, const void *key)
{
	uint32_t k, i = 0;
	memcpy(&k, key, 4);
	__m128i kk = _mm_set1_epi32((int)k);
	for (; i + 4 <= n; i += 4) {
		__m128i x = _mm_loadu_si128((const __m128i *)(b->data + 4 * i));
		unsigned mk = (unsigned)_mm_movemask_ps(
		    _mm_castsi128_ps(_mm_cmpeq_epi32(x, kk)));
		if (mk)
			return (int)(i + (uint32_t)__builtin_ctz(mk));
	}
	i = n > 4 ? (n - 3) & ~1u : 0; /* 8-byte aligned, ends at n or n + 1 */
	__m128i x = last_group(b->data + 4 * i);
	unsigned mk =
	    (unsigned)_mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(x, kk)));
	uint32_t j = i + (uint32_t)__builtin_ctz(mk | 16);
	return j < n ? (int)j : -1;
}

static inline int find8(bucket_t *b, uint32_t n, const void *key)
{
	uint64_t k;
	uint32_t i = 0;
	memcpy(&k, key, 8);
	__m128i kk = _mm_set1_epi64x((long long)k);
	for (; i + 2 <= n; i += 2) {
		__m128i y = _mm_loadu_si128((const __m128i *)(b->data + 8 * i));
		unsigned mk = (unsigned)_mm_movemask_ps(
		    _mm_castsi128_ps(_mm_cmpeq_epi32(y, kk)));
		mk &= (mk >> 1) & 5; /* both 32-bit halves equal */
		if (mk)
			return (int)(i + (uint32_t)__builtin_ctz(mk) / 2);
	}
	i = n > 2 ? n - 2 : 0;
	__m128i y = last_group(b->data + 8 * i);
	unsigned mk =
	    (unsigned)_mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(y, kk)));
	mk &= (mk >> 1) & 5;
	uint32_t j = i + (uint32_t)__builtin_ctz(mk | 16) / 2;
	return j < n ? (int)j : -1;
}
#endif

/* Index of key among the first n entries of bucket b (n: its count as the
 * caller read it, bucket_n), or -1.  The fixed-size cases without a
 * custom eq compare integers, which the compiler keeps in registers. */
static inline int bucket_find(const cmap_t *m, bucket_t *b, uint32_t n,
			      uint64_t h, const void *key, size_t klen)
{
	if (m->var) {
		for (uint32_t i = 0; i < n; i++) {
			vent_t *e = bvent(b, i);
			if (e->hash == h && e->blob->klen == klen &&
			    key_eq(m, e->blob->data, key, klen))
				return (int)i;
		}
		return -1;
	}
#ifdef __SSE2__
	if (!m->eq && m->ks == 4)
		return find4(b, n, key);
	if (!m->eq && m->ks == 8)
		return find8(b, n, key);
#endif
	for (uint32_t i = 0; i < n; i++)
		if (key_eq(m, bkey(m, b, i), key, m->ks))
			return (int)i;
	return -1;
}

/* Entry i's hash: stored for variable-length entries, recomputed else. */
static inline uint64_t entry_hash(const cmap_t *m, bucket_t *b, uint32_t i)
{
	return m->var ? bvent(b, i)->hash : hash_of(m, bkey(m, b, i), m->ks);
}

static inline int check_key(const cmap_t *m, const void *key, size_t klen)
{
	if (!key)
		return CMAP_EINVAL;
	if (m->ks)
		return klen == m->ks ? CMAP_OK : CMAP_EKEYLEN;
	return klen <= CMAP_MAX_VAR_LEN ? CMAP_OK : CMAP_EINVAL;
}

/* A value to store: present when it has bytes, of the fixed size or at
 * most CMAP_MAX_VAR_LEN. */
static inline int cmap__check_val(const cmap_t *m, const void *val, size_t vlen)
{
	if (!val && vlen)
		return CMAP_EINVAL;
	if (m->vs)
		return vlen == m->vs ? CMAP_OK : CMAP_EVALLEN;
	return vlen <= CMAP_MAX_VAR_LEN ? CMAP_OK : CMAP_EINVAL;
}

/* Copy a value to the caller's buffer (cap checked before). */
static inline void copy_out(const cmap_t *m, bucket_t *b, uint32_t i, void *out,
			    size_t *len)
{
	if (m->var) {
		blob_t *bl = bvent(b, i)->blob;
		if (out && bl->vlen)
			memcpy(out, blob_val(bl), bl->vlen);
		if (len)
			*len = bl->vlen;
	} else {
		if (out)
			read_val(m, out, bval(m, b, i));
		if (len)
			*len = m->vs;
	}
}

static inline size_t value_len(const cmap_t *m, bucket_t *b, uint32_t i)
{
	return m->var ? bvent(b, i)->blob->vlen : m->vs;
}

/* Does the caller's buffer fit entry i's value?  Fixed sizes always fit
 * (also with variable-length keys); a variable-length value needs
 * *len >= its length. */
static inline bool fits(const cmap_t *m, bucket_t *b, uint32_t i, void *out,
			size_t *len)
{
	if (!out || m->vs)
		return true;
	if (*len >= value_len(m, b, i))
		return true;
	*len = value_len(m, b, i);
	return false;
}

/* May an entry be appended to b, counted n, in place?  Not past its
 * capacity. */
static inline bool can_append(const cmap_t *m, bucket_t *b, uint32_t n)
{
	return m->append && n < bucket_cap(b);
}

/* The index of key in the bucket at v, a slot's value a walk read (0: an
 * empty slot, *bp NULL), among the *np entries counted there, or -1. */
static inline int probe_at(const cmap_t *m, uintptr_t v, uint64_t h,
			   const void *key, size_t klen, bucket_t **bp,
			   uint32_t *np)
{
	*bp = NULL;
	if (!v)
		return -1;
	*bp = as_bucket(v);
	/* The bucket's second line, fetched beside its first: past a few
	 * keys the value sits there, and its address waits on the key
	 * compare otherwise. */
	__builtin_prefetch((const char *)*bp + 64);
	*np = bucket_n(*bp);
	return bucket_find(m, *bp, *np, h, key, klen);
}

/* Wait-free lookup: the index of key in the bucket *bp its hash leads to
 * (NULL: an empty slot), among the *np entries counted there, or -1. */
static inline int probe(const cmap_t *m, uint64_t h, const void *key,
			size_t klen, bucket_t **bp, uint32_t *np)
{
	/* Acquire on every slot: pairs with the release half of the CAS that
	 * published the node or bucket.  Frozen slots are read through. */
	uintptr_t v = ld_acquire(&m->root->slot[hidx(h, 0)]) & ~T_FROZEN;
	for (unsigned d = 1; v && !is_bucket(v); d++)
		v = ld_acquire(&as_inner(v)->slot[hidx(h, d)]) & ~T_FROZEN;
	return probe_at(m, v, h, key, klen, bp, np);
}

/* Wait-free lookup: returns the bucket holding key and its index, or -1. */
static inline int lookup(const cmap_t *m, uint64_t h, const void *key,
			 size_t klen, bucket_t **bp)
{
	uint32_t n;
	return probe(m, h, key, klen, bp, &n);
}

/* Only the owner writes its count: a plain increment suffices. */
static inline void cmap__count_add(rec_t *r, int64_t d)
{
	st_relaxed(&r->count, ld_relaxed(&r->count) + d);
}

/* Hash positions: the order in which the trie lays hashes out, level 0's
 * index bits most significant (walks in iter.c and compact.c follow it). */
/* Bits below level d's index in a position (the last level has fewer
 * bits than BITS: the rest of 64). */
static inline unsigned pos_shift(unsigned d)
{
	return d < LAST_LEVEL ? 64 - BITS * (d + 1) : 0;
}

static inline unsigned pos_idx(uint64_t p, unsigned d)
{
	uint64_t bits =
	    d < LAST_LEVEL ? MASK : MASK >> (BITS * (LAST_LEVEL + 1) - 64);
	return (unsigned)((p >> pos_shift(d)) & bits);
}

static inline uint64_t pos_of(uint64_t h)
{
	uint64_t p = 0;
	for (unsigned d = 0; d <= LAST_LEVEL; d++)
		p |= (uint64_t)hidx(h, d) << pos_shift(d);
	return p;
}

/*
 * Every operation that changes one key is one walk (cmap__update, trie.c)
 * with a decision where the key's entry is found, or found absent; the
 * kinds differ only in that decision.
 */
typedef enum ukind {
	U_SET,	     /* store val; out: the replaced value */
	U_INSERT,    /* store val if absent; out: the current value */
	U_REPLACE,   /* store val if present; out: the replaced value */
	U_CAS,	     /* store val if the value equals exp; out: current */
	U_REMOVE,    /* remove; out: the removed value */
	U_REMOVE_IF, /* remove if the value equals exp */
	U_REMOVE_IS, /* remove if the entry is still exp's (iter.c) */
	U_COMPUTE,   /* ask fn */
} ukind_t;

typedef struct upd {
	ukind_t kind;
	uint64_t h;
	const void *key;
	size_t klen;
	const void *val; /* the value to store */
	size_t vlen;
	const void *exp; /* the value expected */
	size_t elen;
	void *out; /* a value copied out (see ukind_t), capacity *out_len */
	size_t *out_len;
	cmap_compute_fn fn;
	void *ctx;
} upd_t;

/* Run u on m.  The caller has entered m with r, checked cmap__may_write
 * and reserved RESERVE_OP retirements. */
int cmap__update(cmap_t *m, rec_t *r, upd_t *u);

/*
 * u (a set, replace or insert) done where a lookup found the key's bucket
 * b (NULL: an empty slot), counted n, and the key at i (i < 0: absent),
 * without the update walk: a present key's value word written in place
 * (set, replace; the old value to u->out), an absent key appended (set,
 * insert).  Returns CMAP_REPLACED or CMAP_OK, having retired nothing, or
 * -1: the walk must run (no room, b being copied, contended, or another
 * kind).  One place for cmap_set's fast path and cmap_set_batch's.
 */
static inline int cmap__store_found(cmap_t *m, rec_t *r, upd_t *u, bucket_t *b,
				    uint32_t n, int i)
{
	if (i >= 0) {
		uint64_t cur;
		if (!m->inplace || (u->kind != U_SET && u->kind != U_REPLACE) ||
		    cmap__put_in_place(m, r, b, (uint32_t)i, NULL, u->val,
				       &cur) != IP_DONE)
			return -1;
		if (u->out)
			memcpy(u->out, &cur, 8);
		if (u->out_len)
			*u->out_len = 8;
		return CMAP_REPLACED;
	}
	if (!b || (u->kind != U_SET && u->kind != U_INSERT) ||
	    !can_append(m, b, n) ||
	    cmap__append(m, r, b, n, u->key, u->val) != IP_DONE)
		return -1;
	cmap__count_add(r, 1);
	return CMAP_OK;
}

/* Retirements one update may make (a bucket and a blob); helping a frozen
 * node reserves its own on top, keeping these. */
#define RESERVE_OP 2

/* What an update does where it stands: leave the map as it is (status in
 * *rc), store u->val/u->vlen for the key, or remove the key's entry. */
enum { A_KEEP, A_PUT, A_DROP };

/*
 * A compute's decision: ask u->fn about the current value (cur, clen; NULL
 * when the key is absent) and map its answer to an action and a status.
 * Shared by the update walk (trie.c) and the in-place fast path (ops.c).
 */
static inline int cmap__compute_answer(cmap_t *m, rec_t *r, upd_t *u,
				       const void *cur, size_t clen, int *rc)
{
	/* Writes to this map from fn would race with our write (and could
	 * make it retry forever): cmap__may_write refuses them. */
	r->no_write++;
	u->val = NULL;
	u->vlen = 0;
	int act = u->fn(u->key, u->klen, cur, clen, &u->val, &u->vlen, u->ctx);
	r->no_write--;
	/* fn may have retired (cmap_defer_free): make room again. */
	if ((*rc = cmap__reserve(m, r, RESERVE_OP)) != CMAP_OK)
		return A_KEEP;
	switch (act) {
	case CMAP_COMPUTE_KEEP:
		*rc = CMAP_UNCHANGED;
		return A_KEEP;
	case CMAP_COMPUTE_SET:
		if ((*rc = cmap__check_val(m, u->val, u->vlen)) != CMAP_OK)
			return A_KEEP;
		*rc = cur ? CMAP_REPLACED : CMAP_OK;
		return A_PUT;
	case CMAP_COMPUTE_REMOVE:
		*rc = cur ? CMAP_REMOVED : CMAP_UNCHANGED;
		return cur ? A_DROP : A_KEEP;
	case CMAP_COMPUTE_ABORT:
		*rc = CMAP_ABORTED;
		return A_KEEP;
	default:
		*rc = CMAP_EINVAL;
		return A_KEEP;
	}
}

/* Move v, the value of parent->slot[ix] (not frozen), off a sparse page of
 * r's pool, as an update that changes nothing (trie.c); compact.c's walk
 * asks this of every node and bucket.  Entered and allowed to write. */
enum { RL_SKIP, RL_MOVED, RL_LOST, RL_NOMEM };
int cmap__relocate(cmap_t *m, rec_t *r, inner_t *parent, unsigned ix,
		   uintptr_t v);

/* cmap_insert_batch's state: the caller's arrays, a key's hash and index
 * per element, scratch room for partitioning, the count inserted. */
typedef struct belem {
	uint64_t h;
	uint32_t i;   /* index in the caller's arrays */
	uint32_t dup; /* a duplicate of an earlier key of the batch */
} belem_t;

typedef struct bulk {
	const unsigned char *keys, *vals;
	int *res;
	long added;
	const uint64_t *h; /* every input key's hash, n of them */
	size_t n;
	uint64_t pfx; /* a hash under the slot being filled (reload) */
} bulk_t;

/* Insert e[0, n), all of whose hashes lead to node (at level d), as
 * cmap_insert would each: wherever a slot is empty, the keys under it
 * become one privately built subtree published by one CAS; under a node
 * they go down a level; elsewhere one by one.  tmp is scratch room for n
 * elements.  Entered by the caller. */
void cmap__bulk(cmap_t *m, rec_t *r, bulk_t *bk, inner_t *node, unsigned d,
		belem_t *e, belem_t *tmp, uint32_t n);

/* May r write m now?  Not from a destructor running inside reclamation
 * (it must not retire), nor one that cmap_free runs (the map is going), nor
 * from a compute function or retain predicate (the write could change the
 * entry it is deciding on). */
static inline int cmap__may_write(const cmap_t *m, const rec_t *r)
{
	return r->in_reclaim || r->no_write || m->dying ? CMAP_EINVAL : CMAP_OK;
}

#endif /* CMAP_TRIE_H */
