/*
 * The trie: a hash array mapped trie whose inner nodes are arrays of atomic
 * slots changed in place by CAS, and whose leaves are immutable buckets of
 * up to BMAX entries stored inline, replaced copy-on-write.  Cache-Tries
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
#include <sys/random.h>
#include <time.h>

#include "internal.h"

#ifdef __SSE2__
#include <emmintrin.h>
#endif

static _Atomic(uint64_t) next_id = 1;

/* Retirements one set or remove may make (a bucket and a blob); helping a
 * frozen node reserves its own on top, keeping these. */
#define RESERVE_OP 2

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

/* Set a bucket's count; zero the key padding, which lookups compare. */
static void bucket_set_n(const cmap_t *m, bucket_t *b, uint32_t n)
{
	b->n = n;
	if (!m->var && n)
		memset(b->data + align16((size_t)n * m->ks) - 16, 0, 16);
}

static bucket_t *bucket_alloc(cmap_t *m, rec_t *r, uint32_t n)
{
	size_t size = cmap__bucket_bytes(m, n);
	bucket_t *b = cmap__alloc(m, r, size);
	if (b) {
		b->size = (uint32_t)size;
		bucket_set_n(m, b, n);
	}
	return b;
}

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

static void bucket_dealloc(cmap_t *m, rec_t *r, bucket_t *b)
{
	cmap__dealloc(m, r, b, b->size);
}

static void blob_dealloc(cmap_t *m, rec_t *r, blob_t *bl)
{
	cmap__dealloc(m, r, bl, cmap__blob_bytes(bl->klen, bl->vlen));
}

static blob_t *blob_new(cmap_t *m, rec_t *r, const void *key, size_t klen,
			const void *val, size_t vlen)
{
	blob_t *bl = cmap__alloc(m, r, cmap__blob_bytes(klen, vlen));
	if (!bl)
		return NULL;
	bl->klen = (uint32_t)klen;
	bl->vlen = (uint32_t)vlen;
	if (klen)
		memcpy(bl->data, key, klen);
	if (vlen)
		memcpy(blob_val(bl), val, vlen);
	return bl;
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
 * Compare the key with 16-byte groups of the bucket's key array, which is
 * zero-padded to whole groups.  A match in the padding can only come after
 * every real key, hence the j < n check.  Few, well-predicted branches let
 * the CPU run ahead into the next lookup while this one waits on memory.
 */
static inline int find4(bucket_t *b, const void *key)
{
	uint32_t k, n = b->n;
	memcpy(&k, key, 4);
	__m128i kk = _mm_set1_epi32((int)k);
	for (uint32_t i = 0; i < n; i += 4) {
		__m128i x = _mm_loadu_si128((const __m128i *)(b->data + 4 * i));
		unsigned mk = (unsigned)_mm_movemask_ps(
		    _mm_castsi128_ps(_mm_cmpeq_epi32(x, kk)));
		if (mk) {
			uint32_t j = i + (uint32_t)__builtin_ctz(mk);
			return j < n ? (int)j : -1;
		}
	}
	return -1;
}

static inline int find8(bucket_t *b, const void *key)
{
	uint64_t k;
	uint32_t n = b->n;
	memcpy(&k, key, 8);
	__m128i kk = _mm_set1_epi64x((long long)k);
	for (uint32_t i = 0; i < n; i += 2) {
		__m128i x = _mm_loadu_si128((const __m128i *)(b->data + 8 * i));
		unsigned mk = (unsigned)_mm_movemask_ps(
		    _mm_castsi128_ps(_mm_cmpeq_epi32(x, kk)));
		mk &= (mk >> 1) & 5; /* both 32-bit halves equal */
		if (mk) {
			uint32_t j = i + (uint32_t)__builtin_ctz(mk) / 2;
			return j < n ? (int)j : -1;
		}
	}
	return -1;
}
#endif

/* Index of key in bucket b, or -1.  The fixed-size cases without a custom
 * eq compare integers, which the compiler keeps in registers. */
static inline int bucket_find(const cmap_t *m, bucket_t *b, uint64_t h,
			      const void *key, size_t klen)
{
	uint32_t n = b->n;
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
		return find4(b, key);
	if (!m->eq && m->ks == 8)
		return find8(b, key);
#endif
	for (uint32_t i = 0; i < n; i++)
		if (key_eq(m, bkey(m, b, i), key, m->ks))
			return (int)i;
	return -1;
}

/* Entry i's hash: stored for variable-length entries, recomputed else. */
static uint64_t entry_hash(const cmap_t *m, bucket_t *b, uint32_t i)
{
	return m->var ? bvent(b, i)->hash : hash_of(m, bkey(m, b, i), m->ks);
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

/* Fill bucket nb (already sized for n) from refs. */
static void fill_bucket(const cmap_t *m, bucket_t *nb, const eref_t *refs,
			uint32_t n)
{
	bucket_set_n(m, nb, n);
	for (uint32_t i = 0; i < n; i++) {
		if (m->var) {
			*bvent(nb, i) = refs[i].ve;
		} else {
			copy_item(bkey(m, nb, i), refs[i].k, m->ks);
			copy_item(bval(m, nb, i), refs[i].v, m->vs);
		}
	}
}

/*
 * The common copy-on-write cases for fixed-size entries, with bulk copies:
 * b with entry at replaced (at < b->n), b plus (key, val) appended
 * (at == b->n), or b without entry at (drop).
 */
static bucket_t *cow_fixed(cmap_t *m, rec_t *r, bucket_t *b, uint32_t at,
			   const void *key, const void *val, bool drop)
{
	uint32_t n = b->n;
	size_t ks = m->ks, vs = m->vs;
	if (!drop && at < n) {
		/* Replace: the same layout, so one straight copy (header and
		 * key padding included), then the new entry over the old.  The
		 * key too: an equal key is not necessarily the same bytes, and
		 * the old one goes to the key destructor.  The copy never reads
		 * past b->size: with allocator hooks that is the block's end.
		 */
		bucket_t *nb = cmap__alloc(m, r, b->size);
		if (nb) {
			copy_span((unsigned char *)nb, (unsigned char *)b,
				  b->size);
			copy_item(bkey(m, nb, at), key, ks);
			copy_item(bval(m, nb, at), val, vs);
		}
		return nb;
	}
	bucket_t *nb = bucket_alloc(m, r, drop ? n - 1 : n + 1);
	if (!nb)
		return NULL;
	unsigned char *ok = b->data, *ov = bval(m, b, 0);
	unsigned char *nk = nb->data, *nv = bval(m, nb, 0);
	uint32_t keep = drop ? at : n; /* entries before the change */
	copy_span(nk, ok, keep * ks);
	copy_span(nv, ov, keep * vs);
	if (!drop) {
		copy_item(nk + (size_t)n * ks, key, ks);
		copy_item(nv + (size_t)n * vs, val, vs);
	} else { /* the entries after the dropped one move down by one */
		uint32_t tail = n - at - 1;
		copy_span(nk + (size_t)at * ks, ok + (size_t)(at + 1) * ks,
			  tail * ks);
		copy_span(nv + (size_t)at * vs, ov + (size_t)(at + 1) * vs,
			  tail * vs);
	}
	return nb;
}

static bucket_t *cow_var(cmap_t *m, rec_t *r, bucket_t *b, uint32_t at,
			 vent_t ne, bool drop)
{
	uint32_t n = b->n, nn = drop ? n - 1 : (at == n ? n + 1 : n);
	bucket_t *nb = bucket_alloc(m, r, nn);
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
		bucket_t *b = bucket_alloc(m, r, n);
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
	bucket_t *mb = bucket_alloc(m, r, BMERGE);
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
			total += as_bucket(kids[i])->n;
	}
	uintptr_t repl;
	if (merge && total <= BMERGE) {
		eref_t refs[BMERGE];
		uint32_t k = 0;
		for (unsigned i = 0; i < FANOUT; i++) {
			if (!kids[i])
				continue;
			bucket_t *b = as_bucket(kids[i]);
			for (uint32_t j = 0; j < b->n; j++)
				refs[k++] = ref_of(m, b, j);
		}
		if (total) {
			/* mb stays sized for BMERGE entries (b->size); the
			 * layout only depends on n. */
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
 * first: a node with more than BMERGE children cannot qualify, and that
 * costs no access to the buckets (which would be cache misses). */
static bool needs_work(inner_t *n)
{
	uintptr_t v[FANOUT];
	unsigned kids = 0;
	for (unsigned i = 0; i < FANOUT; i++) {
		/* seq_cst: see freeze_replace's CAS. */
		v[i] = ld_seqcst(&n->slot[i]);
		if (is_frozen(v[i]))
			return true;
		if (v[i] && !is_bucket(v[i]))
			return false;
		kids += v[i] != 0;
	}
	if (kids > BMERGE)
		return false;
	uint32_t total = 0;
	for (unsigned i = 0; i < FANOUT; i++)
		if (v[i])
			total += as_bucket(v[i])->n;
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

/* ---- the operations
 * ------------------------------------------------------------ */

static void count_add(rec_t *r, int64_t d)
{
	/* Only the owner writes its count: a plain increment suffices. */
	st_relaxed(&r->count, ld_relaxed(&r->count) + d);
}

static int check_key(const cmap_t *m, const void *key, size_t klen)
{
	if (!key)
		return CMAP_EINVAL;
	if (m->ks)
		return klen == m->ks ? CMAP_OK : CMAP_EKEYLEN;
	return klen <= CMAP_MAX_VAR_LEN ? CMAP_OK : CMAP_EINVAL;
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
			copy_item(out, bval(m, b, i), m->vs);
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

/* Retire bucket b after entry i left the trie; give_val: its value's
 * ownership went to the caller. */
static void retire_entry(cmap_t *m, rec_t *r, bucket_t *b, uint32_t i,
			 bool give_val)
{
	uintptr_t dflags = G_DKEY | (give_val ? 0 : G_DVAL);
	if (m->var) {
		cmap__retire(m, r, b, NULL, G_BUCKET);
		cmap__retire(m, r, bvent(b, i)->blob, NULL, G_BLOB | dflags);
	} else {
		cmap__retire(m, r, b, NULL,
			     G_BUCKET | dflags | ((uintptr_t)i << 4));
	}
}

static int do_set(cmap_t *m, rec_t *r, uint64_t h, const void *key, size_t klen,
		  const void *val, size_t vlen, void *old, size_t *old_len)
{
	inner_t *path[LAST_LEVEL + 1];
	blob_t *nbl = NULL; /* the new blob, reused across retries */
	int rc;
	if (m->var && !(nbl = blob_new(m, r, key, klen, val, vlen)))
		return CMAP_ENOMEM;
	vent_t ne = {h, nbl};
retry:;
	unsigned d = 0;
	inner_t *n = m->root;
	path[0] = n;
	for (;;) {
		_Atomic(uintptr_t) *sp = &n->slot[hidx(h, d)];
		/* Acquire: pairs with the release half of the CAS that
		 * published the node or bucket, so its contents are seen. */
		uintptr_t v = ld_acquire(sp);
	again:
		if (is_frozen(v)) {
			if ((rc = help(m, r, path, d, h)) != CMAP_OK)
				goto fail;
			goto retry;
		}
		if (v && !is_bucket(v)) {
			n = as_inner(v);
			path[++d] = n;
			continue;
		}
		uintptr_t nv = 0;
		bucket_t *b = v ? as_bucket(v) : NULL;
		int i = b ? bucket_find(m, b, h, key, klen) : -1;
		bucket_t *nb = NULL;
		bool split = false;
		if (i >= 0 && !fits(m, b, (uint32_t)i, old, old_len)) {
			rc = CMAP_ERANGE;
			goto fail;
		}
		if (!b) {
			nb = bucket_alloc(m, r, 1);
			if (nb) {
				eref_t e = {key, val, ne};
				fill_bucket(m, nb, &e, 1);
			}
		} else if (i >= 0 || b->n < BMAX || d >= LAST_LEVEL) {
			uint32_t at = i >= 0 ? (uint32_t)i : b->n;
			nb = m->var ? cow_var(m, r, b, at, ne, false)
				    : cow_fixed(m, r, b, at, key, val, false);
		} else {
			/* Full bucket: split into a subtree one level down. */
			eref_t refs[BMAX + 1];
			uint64_t hs[BMAX + 1];
			for (uint32_t j = 0; j < b->n; j++) {
				refs[j] = ref_of(m, b, j);
				hs[j] = entry_hash(m, b, j);
			}
			refs[b->n] = (eref_t){key, val, ne};
			hs[b->n] = h;
			bool oom = false;
			nv = build(m, r, refs, hs, b->n + 1, d + 1, &oom);
			if (oom) {
				rc = CMAP_ENOMEM;
				goto fail;
			}
			split = true;
		}
		if (!split) {
			if (!nb) {
				rc = CMAP_ENOMEM;
				goto fail;
			}
			nv = tag_bucket(nb);
		}
		/* seq_cst: the linearization point.  Release publishes the
		 * new bucket; seq_cst orders it before the epoch load in
		 * cmap__retire (see epoch.c) and against concurrent
		 * contraction checks. */
		if (!cas_seqcst(sp, &v, nv)) {
			free_private(m, r, nv);
			goto again; /* v now holds the slot's current value */
		}
		if (i >= 0) {
			copy_out(m, b, (uint32_t)i, old, old_len);
			retire_entry(m, r, b, (uint32_t)i, old != NULL);
			return CMAP_REPLACED;
		}
		if (b)
			cmap__retire(m, r, b, NULL, G_BUCKET);
		count_add(r, 1);
		return CMAP_OK;
	}
fail:
	if (nbl)
		blob_dealloc(m, r, nbl);
	return rc;
}

static int do_remove(cmap_t *m, rec_t *r, uint64_t h, const void *key,
		     size_t klen, void *old, size_t *old_len)
{
	inner_t *path[LAST_LEVEL + 1];
	int rc;
retry:;
	unsigned d = 0;
	inner_t *n = m->root;
	path[0] = n;
	for (;;) {
		_Atomic(uintptr_t) *sp = &n->slot[hidx(h, d)];
		uintptr_t v = ld_acquire(sp); /* pairs as in do_set */
	again:
		if (is_frozen(v)) {
			/* A frozen slot's contents are current: an absent
			 * key is absent now, so only help if we must CAS. */
			uintptr_t c = v & ~T_FROZEN;
			if (!c ||
			    (is_bucket(c) &&
			     bucket_find(m, as_bucket(c), h, key, klen) < 0))
				return CMAP_NOT_FOUND;
			if (!is_bucket(c)) {
				n = as_inner(c);
				path[++d] = n;
				continue;
			}
			if ((rc = help(m, r, path, d, h)) != CMAP_OK)
				return rc;
			goto retry;
		}
		if (!v)
			return CMAP_NOT_FOUND;
		if (!is_bucket(v)) {
			n = as_inner(v);
			path[++d] = n;
			continue;
		}
		bucket_t *b = as_bucket(v);
		int i = bucket_find(m, b, h, key, klen);
		if (i < 0)
			return CMAP_NOT_FOUND;
		if (!fits(m, b, (uint32_t)i, old, old_len))
			return CMAP_ERANGE;
		uintptr_t nv = 0;
		if (b->n > 1) {
			bucket_t *nb = m->var ? cow_var(m, r, b, (uint32_t)i,
							(vent_t){0}, true)
					      : cow_fixed(m, r, b, (uint32_t)i,
							  NULL, NULL, true);
			if (!nb)
				return CMAP_ENOMEM;
			nv = tag_bucket(nb);
		}
		/* seq_cst: the linearization point; see do_set. */
		if (!cas_seqcst(sp, &v, nv)) {
			free_private(m, r, nv);
			goto again;
		}
		copy_out(m, b, (uint32_t)i, old, old_len);
		retire_entry(m, r, b, (uint32_t)i, old != NULL);
		count_add(r, -1);
		if (d > 0 && (b->n - 1) <= BMERGE)
			contract_path(m, r, h);
		return CMAP_OK;
	}
}

/* Wait-free lookup: returns the bucket holding key and its index, or -1. */
static inline int lookup(const cmap_t *m, uint64_t h, const void *key,
			 size_t klen, bucket_t **bp)
{
	/* Acquire on every slot: pairs with the release half of the CAS that
	 * published the node or bucket.  Frozen slots are read through. */
	uintptr_t v = ld_acquire(&m->root->slot[hidx(h, 0)]) & ~T_FROZEN;
	for (unsigned d = 1; v && !is_bucket(v); d++)
		v = ld_acquire(&as_inner(v)->slot[hidx(h, d)]) & ~T_FROZEN;
	if (!v)
		return -1;
	*bp = as_bucket(v);
	return bucket_find(m, *bp, h, key, klen);
}

CMAP_API int cmap_get(cmap_t *m, const void *key, size_t klen, void *val,
		      size_t *vlen)
{
	if (unlikely(!m))
		return CMAP_EINVAL;
	int rc = check_key(m, key, klen);
	if (unlikely(rc != CMAP_OK))
		return rc;
	if (unlikely(!m->vs && val && !vlen))
		return CMAP_EINVAL;
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
	if (!m || !fn)
		return CMAP_EINVAL;
	int rc = check_key(m, key, klen);
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

/* Common prologue of the write operations. */
static int write_begin(cmap_t *m, rec_t **rp)
{
	rec_t *r = cmap__enter(m);
	if (!r)
		return CMAP_ENOMEM;
	*rp = r;
	/* A destructor running inside reclamation must not retire, nor may
	 * one that cmap_free runs write the map it is destroying. */
	if (r->in_reclaim || m->dying)
		return CMAP_EINVAL;
	return cmap__reserve(m, r, RESERVE_OP);
}

static void write_end(cmap_t *m, rec_t *r)
{
	cmap__leave(r);
	cmap__maybe_collect(m, r); /* outside the operation: see epoch.c */
}

CMAP_API int cmap_set(cmap_t *m, const void *key, size_t klen, const void *val,
		      size_t vlen, void *old, size_t *old_len)
{
	if (!m)
		return CMAP_EINVAL;
	int rc = check_key(m, key, klen);
	if (rc != CMAP_OK)
		return rc;
	if (!val && vlen)
		return CMAP_EINVAL;
	if (m->vs ? vlen != m->vs : vlen > CMAP_MAX_VAR_LEN)
		return m->vs ? CMAP_EVALLEN : CMAP_EINVAL;
	if (old && !m->vs && !old_len)
		return CMAP_EINVAL;
	uint64_t h = hash_of(m, key, klen);
	rec_t *r = NULL;
	rc = write_begin(m, &r);
	if (rc == CMAP_OK)
		rc = do_set(m, r, h, key, klen, val, vlen, old, old_len);
	if (r)
		write_end(m, r);
	return rc;
}

CMAP_API int cmap_remove(cmap_t *m, const void *key, size_t klen, void *old,
			 size_t *old_len)
{
	if (!m)
		return CMAP_EINVAL;
	int rc = check_key(m, key, klen);
	if (rc != CMAP_OK)
		return rc;
	if (old && !m->vs && !old_len)
		return CMAP_EINVAL;
	uint64_t h = hash_of(m, key, klen);
	rec_t *r = NULL;
	rc = write_begin(m, &r);
	if (rc == CMAP_OK)
		rc = do_remove(m, r, h, key, klen, old, old_len);
	if (r)
		write_end(m, r);
	return rc;
}

/* ---- creation and destruction
 * ------------------------------------------------- */

static void *default_alloc(void *ctx, size_t size, size_t align)
{
	(void)ctx;
	if (align < sizeof(void *))
		align = sizeof(void *);
	return aligned_alloc(align, (size + align - 1) & ~(align - 1));
}

static void default_free(void *ctx, void *p, size_t size)
{
	(void)ctx;
	(void)size;
	free(p);
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
	    (cfg->flags & ~(unsigned)(CMAP_FIXED_SEED | CMAP_NO_POOL)))
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
	for (uint32_t i = 0; i < b->n; i++) {
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
	if (!m)
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
	cmap__pool_release_all(m);
	m->cfg.free(m->cfg.alloc_ctx, m->root, sizeof(inner_t));
	m->cfg.free(m->cfg.alloc_ctx, m, sizeof *m);
}
