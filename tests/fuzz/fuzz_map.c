/*
 * libFuzzer harness for cmap: every public operation on maps of every
 * configuration, each result checked against a reference model.
 *
 * Input.  A sequence of segments, each one map's life: four configuration
 * bytes, then operations until the input ends or a NEXT_MAP operation frees
 * the map and starts the next segment.  Missing bytes read as 0.
 *
 *  c0: bits 0-1 key size {variable, 4, 8, 16}; bits 2-3 value size
 *      {variable, 8, 24, variable}; bits 4-6 hasher {default XXH3 with
 *      CMAP_FIXED_SEED, default XXH3 random seed, identity (u32/u64 where
 *      the key size allows, else CityHash), cmap_hash_city, colliding,
 *      colliding, masked XXH3, default fixed seed}; bit 7 CMAP_NO_POOL.
 *  c1: bit 0 key destructor, 1 value destructor, 2 destructors call back
 *      into the map, bits 3-4 key equality {NULL, custom exact, masked,
 *      masked}, 5 allocator hooks, 6 config.size 0 (the 0.2 layout), 7 the
 *      CMAP_TYPED wrappers (used where the configuration is u32 -> u64
 *      without hooks, destructors or eq).
 *  c2: bits 0-2 key space (2 << n ids), 3-4 distinct values of the colliding
 *      hasher (1-4), 5-7 allocator hooks fail every Nth allocation
 *      {never x5, 3, 11, 37}.
 *  c3: the seed; bit 6 CMAP_COPY_ON_WRITE (values of 8 bytes change in
 *      place without it); bit 7 (with hooks) fails cmap_new's (c3 & 3) +
 *      1-th allocation first.
 *
 * An operation is one byte, low 5 bits the kind (modulo OP_COUNT, below),
 * high 3 bits the allocation failures to inject into its calls {none x4,
 * the k-th (k = 1 + next byte % 16), all, the first, the second}, then the
 * kind's own bytes.  Keys are ids in the small key space plus a variant
 * (bytes that differ only in their top bits: the masked equality and hasher
 * ignore those bits, so with them the variants are one key and a replace
 * stores the new variant's bytes).  Values carry a serial number (and,
 * below 4 bytes, a fixed pattern), so every destructor call is matched to
 * exactly one stored value.
 *
 * Checks.  Every return code, output value, output length and untouched
 * buffer; the touched key and cmap_len after every operation; on
 * CMAP_ENOMEM, that an injected failure happened and nothing changed; the
 * full map (every key), cmap_validate's statistics and cmap_reclaim_stats
 * (which must agree with them) on demand and at the end, optionally after
 * a forced compaction pass (white-box: src/internal.h); each key and value
 * destroyed exactly once, never while in the map (except by cmap_free), never a
 * value handed back through `old`, never the entry a cmap_get_with callback is
 * reading; deferred callbacks run exactly once, never inside the operation they
 * were deferred from, all by the end of cmap_free (or of a drain: repeated
 * cmap_collect); allocator hooks: alignment, sizes passed back to free, nothing
 * left allocated after cmap_free.  Destructors may write-attempt (must get
 * CMAP_EINVAL), read, defer and collect; get_with callbacks may run a nested
 * operation, after which the borrowed key and value must be unchanged.
 * Operations run one at a time (concurrency is tested elsewhere), but one of
 * them runs the next operation in a new thread that is joined at once: more
 * thread records, released ones with garbage, their reuse, and writes while
 * another thread is inside a cmap_get_with callback.
 *
 * Read-modify-write: cmap_insert, cmap_replace, cmap_cas and cmap_remove_if
 * (expected values equal, of another serial, of another length; output
 * buffers as for cmap_set) and cmap_compute with every answer, unknown
 * answers and refused values, a fn that reads the map and defers (allowed)
 * and one that tries to write it (CMAP_EINVAL), SET pointing into cur; the
 * typed wrappers of each.  A replace keeps the stored key bytes.
 * Iteration: cmap_foreach and cursors (random slice sizes, stops) check
 * that no key is shown twice and, for a walk that ran to its end, that
 * every key present throughout was shown (a cursor stopped inside a run of
 * equal full hashes may skip the rest of the run), values exact for
 * entries unchanged since the walk began; the visitor may run a nested
 * operation (writes included), and a cursor walk may have operations
 * between its slices.  cmap_retain with predicates that keep by id,
 * serial, none or all, read the map and try writes (refused); cmap_clear.
 * Their removals are entered in the model as they happen, since
 * destructors may run before the call returns.
 * Write batches (fixed-size maps; variable-length ones must refuse them
 * with CMAP_EINVAL and change nothing): cmap_set_batch, cmap_remove_batch
 * and cmap_insert_batch of up to 99 keys with duplicates and variants
 * within a batch, checked as the single calls in input order (a replace
 * keeps the stored key, the first copy of a key inserts and later ones get
 * CMAP_EXISTS); every status and the count returned; a key with
 * CMAP_ENOMEM changed nothing, and a call failing as a whole (joining,
 * scratch) did nothing.  With results NULL, statuses are read back from
 * the map when every key of the batch is a different entry, and failures
 * are suspended otherwise.  Destructors that run inside a batch (it
 * collects between groups) are matched once the model has the batch.  Bad
 * arguments, and calls from destructors, compute functions and retain
 * predicates (CMAP_EINVAL).
 *
 * A remove that succeeds although an allocation failed may have skipped its
 * contraction (allowed, see tests/test_oom.c): the harness then re-inserts
 * and removes that key without failures, after which cmap_validate must
 * pass again.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmap.h"
#include "internal.h" /* a forced compaction pass (op_validate) */
#include "testutil.h"

CMAP_TYPED(fz, uint32_t, uint64_t)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_IDS	   256
#define NVAR	   4
#define NSLOTS	   (MAX_IDS * NVAR)
#define MAX_SERIAL (1u << 18)
#define MAX_TOKENS 512
#define MAX_WORK   40000 /* key operations per input, bounds its time */
#define KBUF	   512
#define VBUF	   512
#define BATCH_MAX  72
#define PAT	   0x5a /* untouched output bytes */

/* ---- input ---------------------------------------------------------------
 */

static const uint8_t *in_p;
static size_t in_n;
static bool trace; /* CMAP_FUZZ_TRACE set: print each map and operation */

static unsigned rd(void)
{
	if (!in_n)
		return 0;
	in_n--;
	return *in_p++;
}

/* ---- allocator hooks ------------------------------------------------------
 */

/* Each block has a header before it: its size, a check word, the base. */
struct ahdr {
	size_t size;
	uintptr_t magic;
	void *base;
};
#define AMAGIC ((uintptr_t)0x6d61705f66757a7aull)

static struct {
	long live;	/* outstanding blocks */
	long calls;	/* allocation attempts */
	long failed;	/* injected failures */
	long fail_at;	/* fail the attempt with this number */
	bool fail_all;	/* fail every attempt */
	unsigned every; /* fail every every-th attempt (0: never) */
	int suspend;	/* > 0: no failures (checks, healing, cmap_free) */
	/* the current operation's injection */
	unsigned mode, k;
} A;

static void *h_alloc(void *ctx, size_t size, size_t align)
{
	CHECK(ctx == &A);
	CHECK(align != 0 && (align & (align - 1)) == 0);
	CHECK(align <= ((size_t)2 << 20));
	long call = ++A.calls;
	if (!A.suspend && (A.fail_all || call == A.fail_at ||
			   (A.every && call % A.every == 0))) {
		A.failed++;
		return NULL;
	}
	size_t al = align < 16 ? 16 : align;
	size_t pre = (sizeof(struct ahdr) + al - 1) & ~(al - 1);
	void *base = NULL;
	CHECK(posix_memalign(&base, al, pre + size) == 0);
	unsigned char *p = (unsigned char *)base + pre;
	struct ahdr *h = (struct ahdr *)(void *)p - 1;
	h->size = size;
	h->magic = AMAGIC ^ (uintptr_t)p;
	h->base = base;
	memset(p, 0xa5, size); /* the library must not expect zeroed memory */
	A.live++;
	return p;
}

static void h_free(void *ctx, void *p, size_t size)
{
	CHECK(ctx == &A);
	if (!p)
		return;
	struct ahdr *h = (struct ahdr *)p - 1;
	CHECK(h->magic == (AMAGIC ^ (uintptr_t)p)); /* ours, not freed */
	CHECK_EQ(h->size, size); /* free receives the allocation's size */
	h->magic = 0;
	memset(p, 0xdd, size);
	CHECK(A.live > 0);
	A.live--;
	free(h->base);
}

/* Injection around one library call of the current operation. */
static void arm(void)
{
	switch (A.mode) {
	case 4:
		A.fail_at = A.calls + A.k;
		break;
	case 5:
		A.fail_all = true;
		break;
	case 6:
		A.fail_at = A.calls + 1;
		break;
	case 7:
		A.fail_at = A.calls + 2;
		break;
	default:
		break;
	}
}

static void disarm(void)
{
	A.fail_at = 0;
	A.fail_all = false;
}

/* ---- hashers and equality ------------------------------------------------
 */

static unsigned g_ncollide = 1;
static const uint64_t collide_h[4] = {
    0x0123456789abcdefull, 0x0123456789abcdefull ^ (1ull << 63),
    0x0123456789abcdefull ^ (1ull << 40), 0x0123456789abcdefull ^ 0x10};

/* 1-4 distinct hashes, all sharing long prefixes: collision buckets past
 * the last level and deep tries.  Ignores the top bit of every byte. */
static uint64_t h_collide(const void *key, size_t len, uint64_t seed)
{
	const unsigned char *k = key;
	unsigned s = 0;
	(void)seed;
	for (size_t i = 0; i < len; i++)
		s += k[i] & 0x7fu;
	return collide_h[s % g_ncollide];
}

/* XXH3 of the key with every byte's top bit cleared. */
static uint64_t h_masked(const void *key, size_t len, uint64_t seed)
{
	unsigned char b[KBUF];
	const unsigned char *k = key;
	CHECK(len <= KBUF);
	for (size_t i = 0; i < len; i++)
		b[i] = k[i] & 0x7f;
	return cmap_hash_xxh3(b, len, seed);
}

static int eq_exact(const void *a, const void *b, size_t len)
{
	return memcmp(a, b, len) == 0;
}

static int eq_masked(const void *a, const void *b, size_t len)
{
	const unsigned char *x = a, *y = b;
	for (size_t i = 0; i < len; i++)
		if ((x[i] ^ y[i]) & 0x7f)
			return 0;
	return 1;
}

/* ---- the reference model --------------------------------------------------
 */

enum { V_NONE, V_LIVE, V_RETIRED, V_GIVEN, V_DEAD, V_FREED };
enum { T_NONE, T_PENDING, T_RAN, T_DEAD };

struct ent {
	bool present, kfreed;
	uint8_t variant; /* of the stored key bytes */
	uint32_t serial, vlen;
};

static struct {
	cmap_t *m;
	fz_t *t; /* the same map, through the typed wrappers */
	cmap_config_t cfg;
	size_t ks, vs;
	bool kdtor, vdtor, dcalls, masked, hooks;
	unsigned nids;
	struct ent model[NSLOTS];
	size_t count;
	/* values by serial: state and length */
	uint32_t nserial;
	uint8_t sst[MAX_SERIAL];
	uint16_t slen[MAX_SERIAL];
	long vretired, vfreed_live, tiny_live[4], tiny_ret[4];
	/* retired, not yet destroyed, keys by exact bytes (id, variant) */
	uint32_t kretired[NSLOTS];
	long kretired_total, kfreed_live;
	/* times each model entry was removed (walks: present throughout?) */
	uint32_t removals[NSLOTS];
	/* deferred callbacks */
	uint8_t tok[MAX_TOKENS];
	uint32_t tok_visit[MAX_TOKENS];
	unsigned ntok;
	long tok_pending;
	int in_free, in_collect, depth;
	bool in_thread, threaded; /* inside / ever ran a second thread */
	uint64_t last_epoch;
	/* active cmap_get_with callbacks */
	int vdepth;
	uint32_t visit_seq, vid[4], vserial[4];
	const void *vkey[4];
	long work;
} S;

/* A write batch leaves its operation between groups of keys and may
 * collect there, so keys and values it retired can be destroyed before it
 * returns, i.e. before the model knows they were retired: those destructor
 * calls are noted here and matched once the model has the batch. */
#define WB_MAX 100
static struct {
	bool on;
	uint32_t s0; /* the batch's first serial */
	unsigned nval;
	uint32_t val[2 * WB_MAX];
	long nkey;
	uint32_t key[NSLOTS]; /* by kidx */
} EB;

static size_t klen_of(unsigned id)
{
	if (S.ks)
		return S.ks;
	if (id < 2)
		return id;
	if (id % 17 == 3)
		return 100 + id % 200;
	if (id % 5 == 0)
		return 16 + id % 40;
	return 2 + id % 14;
}

/* Variants whose bytes differ: none for an empty key, two for one byte. */
static unsigned canon(unsigned id, unsigned v)
{
	size_t l = klen_of(id);
	return l == 0 ? 0 : l == 1 ? (v != 0) : v & 3;
}

/* Bytes 0-1 hold the id in their low 7 bits; variant bit 0 sets the first
 * byte's top bit, bit 1 the last byte's. */
static size_t key_bytes(unsigned id, unsigned v, unsigned char *b)
{
	size_t len = klen_of(id);
	v = canon(id, v);
	for (size_t j = 0; j < len; j++)
		b[j] = (unsigned char)((id * 13 + j * 7 + 0x21) & 0x7f);
	if (len > 0)
		b[0] = (unsigned char)(id & 0x7f);
	if (len > 1)
		b[1] = (unsigned char)((id >> 7) & 0x7f);
	if (len > 0 && (v & 1))
		b[0] |= 0x80;
	if (len > 0 && (v & 2))
		b[len - 1] |= 0x80;
	return len;
}

static bool key_decode(const unsigned char *b, size_t len, unsigned *id,
		       unsigned *v)
{
	unsigned char want[KBUF];
	*id = 0;
	*v = 0;
	if (len == 1) {
		*id = b[0] & 0x7fu;
		*v = b[0] >> 7;
	} else if (len > 1) {
		*id = (b[0] & 0x7fu) | (unsigned)(b[1] & 0x7f) << 7;
		*v = (b[0] >> 7) | (unsigned)(b[len - 1] >> 7) << 1;
	}
	if (*id >= S.nids || len > KBUF)
		return false;
	return key_bytes(*id, *v, want) == len && !memcmp(want, b, len);
}

static unsigned kidx(unsigned id, unsigned v)
{
	return id * NVAR + canon(id, v);
}

static struct ent *ent_of(unsigned id, unsigned v)
{
	return &S.model[id * NVAR + (S.masked ? 0 : canon(id, v))];
}

static size_t pick_vlen(unsigned b)
{
	if (S.vs)
		return S.vs;
	b &= 255;
	return b < 200 ? b % 41 : 41 + (b - 200) * 5;
}

static void val_bytes(uint32_t serial, size_t len, unsigned char *b)
{
	for (size_t j = 0; j < len; j++)
		b[j] = len < 4 ? (unsigned char)(0xe0 + j)
			       : (unsigned char)(serial * 7 + j * 13);
	if (len >= 4)
		memcpy(b, &serial, 4);
}

static void check_val(const void *got, uint32_t serial, size_t len)
{
	unsigned char want[VBUF];
	val_bytes(serial, len, want);
	CHECK(len == 0 || memcmp(got, want, len) == 0);
}

static void untouched(const unsigned char *b, size_t from, size_t size)
{
	for (size_t i = from; i < size; i++)
		CHECK_EQ(b[i], PAT);
}

static uint32_t new_serial(size_t len)
{
	CHECK(S.nserial < MAX_SERIAL);
	uint32_t s = S.nserial++;
	S.sst[s] = V_NONE;
	S.slen[s] = (uint16_t)len;
	return s;
}

/* A value entered the map / left it (to the caller, or to its destructor). */
static void val_enter(uint32_t s)
{
	S.sst[s] = V_LIVE;
	if (S.slen[s] < 4)
		S.tiny_live[S.slen[s]]++;
}

static void val_leave(uint32_t s, bool given)
{
	size_t len = S.slen[s];
	CHECK_EQ(S.sst[s], V_LIVE);
	if (len < 4)
		S.tiny_live[len]--;
	if (given) {
		S.sst[s] = V_GIVEN;
		return;
	}
	S.sst[s] = V_RETIRED;
	S.vretired++;
	if (len < 4)
		S.tiny_ret[len]++;
}

static void key_retire(unsigned id, unsigned v)
{
	S.kretired[kidx(id, v)]++;
	S.kretired_total++;
}

/* ---- destructors and deferred callbacks ------------------------------------
 */

static void deferred(void *p)
{
	size_t i = (size_t)((uint8_t *)p - S.tok);
	CHECK(i < S.ntok);
	CHECK_EQ(S.tok[i], T_PENDING); /* once, and only if deferred */
	/* Not while an operation that was running when it was deferred (a
	 * cmap_get_with whose callback deferred it) is still running. */
	for (int d = 0; d < S.vdepth; d++)
		CHECK(S.vid[d] != S.tok_visit[i]);
	S.tok[i] = T_RAN;
	S.tok_pending--;
}

static int defer_token(void)
{
	if (S.ntok >= MAX_TOKENS)
		return -100;
	unsigned i = S.ntok++;
	S.tok[i] = T_PENDING;
	S.tok_visit[i] = S.vdepth ? S.vid[0] : 0;
	S.tok_pending++;
	int rc = cmap_defer_free(S.m, &S.tok[i], deferred);
	if (rc != CMAP_OK) {
		CHECK_EQ(S.tok[i], T_PENDING);
		S.tok[i] = T_DEAD;
		S.tok_pending--;
	}
	return rc;
}

/* The three write batches of one key must be refused (CMAP_EINVAL) where
 * writes are (destructors, compute functions, retain predicates), or fail
 * for memory (cmap_insert_batch allocates its scratch first). */
static void batch_refused(const void *key, long f0)
{
	unsigned char kb[KBUF], vb[VBUF];
	int res[2] = {PAT, PAT};
	memset(kb, 0, sizeof kb);
	memset(vb, 0xe0, sizeof vb);
	if (S.ks)
		memcpy(kb, key, S.ks);
	long rc = cmap_set_batch(S.m, kb, vb, 1, res);
	CHECK(rc == CMAP_EINVAL || (rc == CMAP_ENOMEM && A.failed != f0));
	rc = cmap_remove_batch(S.m, kb, 1, res);
	CHECK(rc == CMAP_EINVAL || (rc == CMAP_ENOMEM && A.failed != f0));
	rc = cmap_insert_batch(S.m, kb, vb, 1, res);
	CHECK(rc == CMAP_EINVAL || (rc == CMAP_ENOMEM && A.failed != f0));
	CHECK(res[0] == PAT && res[1] == PAT);
}

/* What a destructor may do with the map: read it, defer, collect; its
 * writes are refused. */
static void dtor_calls(const void *item, size_t len, bool is_key, bool live)
{
	unsigned char kb[KBUF], vb[VBUF];
	memset(vb, 0xe0, sizeof vb);
	long f0 = A.failed;
	size_t kl = key_bytes(0, 0, kb);
	int rc = cmap_set(S.m, kb, kl, vb, S.vs ? S.vs : 3, NULL, NULL);
	CHECK(rc == CMAP_EINVAL || (rc == CMAP_ENOMEM && A.failed != f0));
	rc = cmap_remove(S.m, kb, kl, NULL, NULL);
	CHECK(rc == CMAP_EINVAL || (rc == CMAP_ENOMEM && A.failed != f0));
	rc = cmap_insert(S.m, kb, kl, vb, S.vs ? S.vs : 3, NULL, NULL);
	CHECK(rc == CMAP_EINVAL || (rc == CMAP_ENOMEM && A.failed != f0));
	long n = cmap_clear(S.m);
	CHECK(n == CMAP_EINVAL || (n == CMAP_ENOMEM && A.failed != f0));
	batch_refused(is_key ? item : kb, f0);
	if (is_key) {
		size_t vl = VBUF;
		rc = cmap_get(S.m, item, len, vb, &vl);
		if (rc == CMAP_ENOMEM) {
			CHECK(A.failed != f0);
		} else if (S.in_free) {
			/* Entries already destroyed are gone from the map (a
			 * retired copy may go while the live one is there). */
			unsigned id, v;
			CHECK(key_decode(item, len, &id, &v));
			struct ent *e = ent_of(id, v);
			CHECK(rc == CMAP_NOT_FOUND ||
			      (rc == CMAP_OK && !live && e->present &&
			       !e->kfreed));
		} else if (S.in_collect) {
			unsigned id, v;
			CHECK(key_decode(item, len, &id, &v));
			struct ent *e = ent_of(id, v);
			CHECK_EQ(rc, e->present ? CMAP_OK : CMAP_NOT_FOUND);
			if (e->present)
				check_val(vb, e->serial, e->vlen);
		} else {
			CHECK(rc == CMAP_OK || rc == CMAP_NOT_FOUND);
		}
	}
	if (S.in_collect && !S.in_free)
		CHECK_EQ(cmap_len(S.m), S.count);
	rc = defer_token();
	CHECK(rc == CMAP_OK || rc == CMAP_EINVAL || rc == -100 ||
	      (rc == CMAP_ENOMEM && A.failed != f0));
	(void)cmap_collect(S.m);
}

static void key_dtor(void *item, size_t len, void *ctx)
{
	unsigned id, v;
	CHECK(ctx == &S && S.kdtor);
	if (S.ks)
		CHECK_EQ(len, S.ks);
	CHECK(key_decode(item, len, &id, &v));
	for (int d = 0; d < S.vdepth; d++)
		CHECK(item != S.vkey[d]); /* a callback is reading it */
	unsigned k = kidx(id, v);
	bool live = S.kretired[k] == 0;
	if (live && EB.on && !S.in_free) {
		/* retired by the running write batch (matched after it) */
		EB.key[k]++;
		EB.nkey++;
		live = false;
	} else if (!live) {
		S.kretired[k]--;
		S.kretired_total--;
	} else {
		/* Only cmap_free destroys keys that are in the map. */
		struct ent *e = ent_of(id, v);
		CHECK(S.in_free);
		CHECK(e->present && e->variant == canon(id, v) && !e->kfreed);
		e->kfreed = true;
		S.kfreed_live++;
	}
	if (S.dcalls)
		dtor_calls(item, len, true, live);
}

static void val_dtor(void *item, size_t len, void *ctx)
{
	const unsigned char *b = item;
	CHECK(ctx == &S && S.vdtor);
	if (S.vs)
		CHECK_EQ(len, S.vs);
	if (len < 4) {
		for (size_t j = 0; j < len; j++)
			CHECK_EQ(b[j], 0xe0 + j);
		if (S.tiny_ret[len] > 0) {
			S.tiny_ret[len]--;
			S.vretired--;
		} else {
			CHECK(S.in_free && S.tiny_live[len] > 0);
			S.tiny_live[len]--;
			S.vfreed_live++;
		}
	} else {
		uint32_t s;
		memcpy(&s, b, 4);
		CHECK(s < S.nserial);
		CHECK_EQ(S.slen[s], len);
		check_val(b, s, len);
		for (int d = 0; d < S.vdepth; d++)
			CHECK(s != S.vserial[d]); /* a callback is reading it */
		if (S.sst[s] == V_RETIRED) {
			S.vretired--;
		} else if (EB.on && !S.in_free &&
			   (S.sst[s] == V_LIVE ||
			    (S.sst[s] == V_NONE && s >= EB.s0))) {
			/* retired by the running write batch: matched after
			 * it (and destroyed once) */
			for (unsigned i = 0; i < EB.nval; i++)
				CHECK(EB.val[i] != s);
			CHECK(EB.nval < 2 * WB_MAX);
			EB.val[EB.nval++] = s;
			if (S.dcalls)
				dtor_calls(item, len, false, false);
			return;
		} else {
			/* never a value that is in the map (but in cmap_free),
			 * was given back through old, or never stored */
			CHECK(S.in_free);
			CHECK_EQ(S.sst[s], V_LIVE);
			S.vfreed_live++;
		}
		S.sst[s] = V_FREED;
	}
	if (S.dcalls)
		dtor_calls(item, len, false, false);
}

/* ---- checks ----------------------------------------------------------------
 */

struct expect {
	unsigned id, v;
	bool called;
};

static void expect_cb(const void *key, size_t klen, const void *val,
		      size_t vlen, void *ctx)
{
	struct expect *x = ctx;
	struct ent *e = ent_of(x->id, x->v);
	unsigned char kb[KBUF];
	CHECK(!x->called && e->present);
	x->called = true;
	size_t kl = key_bytes(x->id, e->variant, kb);
	CHECK_EQ(klen, kl);
	CHECK(kl == 0 || memcmp(key, kb, kl) == 0);
	CHECK_EQ(vlen, e->vlen);
	check_val(val, e->serial, e->vlen);
}

/* The map agrees with the model on this key (stored bytes and value) and
 * on the entry count.  No failure injection. */
static void verify_key(unsigned id, unsigned v)
{
	unsigned char kb[KBUF];
	struct expect x = {id, v, false};
	size_t kl = key_bytes(id, v, kb);
	A.suspend++;
	int rc = cmap_get_with(S.m, kb, kl, expect_cb, &x);
	bool has = ent_of(id, v)->present;
	CHECK_EQ(rc, has ? CMAP_OK : CMAP_NOT_FOUND);
	CHECK_EQ(x.called, has);
	CHECK_EQ(cmap_len(S.m), S.count);
	A.suspend--;
}

static void verify_all(void)
{
	for (unsigned id = 0; id < S.nids; id++)
		for (unsigned v = 0; v < NVAR; v++)
			verify_key(id, v);
	S.work += S.nids * NVAR;
}

static void check_stats(const cmap_stats_t *st)
{
	size_t nodes = 0;
	CHECK_EQ(st->entries, S.count);
	/* records: the main thread's, and one more once a second thread ran
	 * (threads that come one after the other reuse released records) */
	CHECK(st->threads >= 1 && st->threads <= (S.threaded ? 2u : 1u));
	CHECK(st->max_depth < CMAP_MAX_LEVELS);
	for (unsigned l = 0; l < CMAP_MAX_LEVELS; l++)
		nodes += st->nodes_per_level[l];
	CHECK_EQ(nodes, st->inner_nodes + st->buckets);
	CHECK(st->inner_nodes >= 1);
	CHECK(st->collision_buckets <= st->buckets);
	CHECK(st->buckets <= S.count);
	CHECK(st->bytes_in_use > 0);
}

static void check_gc(const cmap_stats_t *st, unsigned f);

static void validate_ok(void)
{
	cmap_stats_t st;
	A.suspend++;
	CHECK_EQ(cmap_validate(S.m, &st), CMAP_OK);
	check_stats(&st);
	check_gc(&st, 8);
	A.suspend--;
}

/* ---- operations -------------------------------------------------------------
 */

static void read_key(unsigned *id, unsigned *v)
{
	unsigned b = rd();
	*v = b & 3;
	*id = b >> 2;
	if (S.nids > 64)
		*id |= rd() << 6;
	*id %= S.nids;
}

/* Capacity of a variable-length output buffer: 0 ample, 1 none, 2 one
 * byte short of the stored value, 3 exact. */
static size_t pick_cap(unsigned mode, const struct ent *e)
{
	size_t need = e->present ? e->vlen : 0;
	switch (mode & 3) {
	case 0:
		return VBUF;
	case 1:
		return 0;
	case 2:
		return need ? need - 1 : 0;
	default:
		return need;
	}
}

/* May a length pointer be NULL?  The header: yes for fixed-size values,
 * whatever the keys (tests/fuzz/corpus/varkey-fixed-value-null-len was the
 * input that found the library refusing it with variable-length keys). */
static bool null_len_ok(void)
{
	return S.vs;
}

static void heal(unsigned id, unsigned v);
static void heal_path(unsigned id, unsigned v);
/* After several keys' paths were healed: only now must the map validate
 * (a removal that skipped its contraction leaves its own path
 * contractible until that path is healed too). */
static void validate_healed(void);

/* cmap_set (is_set: value length from lb) or cmap_remove of one key.
 * flags: bit 0 old, bits 1-2 its capacity, 3 old_len with fixed values,
 * 4 NULL value pointer for an empty value, 5 typed wrapper. */
static void op_write(bool is_set, unsigned id, unsigned v, unsigned f,
		     unsigned lb)
{
	unsigned char kb[KBUF], vb[VBUF];
	_Alignas(8) unsigned char ob[VBUF];
	size_t kl = key_bytes(id, v, kb), vl = 0;
	struct ent *e = ent_of(id, v);
	uint32_t s = 0;
	if (is_set) {
		vl = pick_vlen(lb);
		s = new_serial(vl);
		val_bytes(s, vl, vb);
	}
	const void *vp = !S.vs && vl == 0 && (f & 0x10) ? NULL : vb;
	bool with_old = f & 1, typed = S.t && (f & 0x20);
	size_t cap = VBUF, olen = 4242, *olp = NULL;
	if (with_old && !S.vs) {
		olen = cap = pick_cap(f >> 1, e);
		olp = &olen;
	} else if (with_old && ((f & 8) || !null_len_ok()) && !typed) {
		olp = &olen;
	}
	size_t olen0 = olen;
	memset(ob, PAT, sizeof ob);
	uint64_t *tob = with_old ? (uint64_t *)(void *)ob : NULL;
	uint32_t tk = 0;
	uint64_t tv = 0;
	memcpy(&tk, kb, typed ? 4 : 0);
	memcpy(&tv, vb, typed && is_set ? 8 : 0);
	long f0 = A.failed;
	int rc;
	S.work++;
	arm();
	if (typed)
		rc =
		    is_set ? fz_set(S.t, tk, tv, tob) : fz_remove(S.t, tk, tob);
	else if (is_set)
		rc = cmap_set(S.m, kb, kl, vp, vl, with_old ? ob : NULL, olp);
	else
		rc = cmap_remove(S.m, kb, kl, with_old ? ob : NULL, olp);
	disarm();
	bool failed = A.failed != f0;
	if (rc == CMAP_ENOMEM) {
		CHECK(failed); /* only when memory ran out */
		CHECK_EQ(olen, olen0);
		untouched(ob, 0, sizeof ob);
		if (is_set)
			S.sst[s] = V_DEAD; /* never stored */
	} else if (!e->present) {
		CHECK_EQ(rc, is_set ? CMAP_OK : CMAP_NOT_FOUND);
		CHECK_EQ(olen, olen0);
		untouched(ob, 0, sizeof ob);
		if (is_set) {
			*e = (struct ent){true, false, (uint8_t)canon(id, v), s,
					  (uint32_t)vl};
			S.count++;
			val_enter(s);
		}
	} else if (with_old && !S.vs && cap < e->vlen) {
		CHECK_EQ(rc, CMAP_ERANGE);
		CHECK_EQ(olen, e->vlen); /* the length needed */
		untouched(ob, 0, sizeof ob);
		if (is_set)
			S.sst[s] = V_DEAD; /* never stored */
	} else {
		CHECK_EQ(rc, is_set ? CMAP_REPLACED : CMAP_OK);
		if (with_old) {
			check_val(ob, e->serial, e->vlen);
			untouched(ob, e->vlen, sizeof ob);
		} else {
			untouched(ob, 0, sizeof ob);
		}
		CHECK_EQ(olen, olp ? e->vlen : olen0);
		val_leave(e->serial, with_old);
		if (is_set) {
			/* a replace keeps the stored key (its bytes, and no
			 * key destructor runs) */
			e->serial = s;
			e->vlen = (uint32_t)vl;
			val_enter(s);
		} else {
			key_retire(id, e->variant);
			e->present = false;
			S.removals[e - S.model]++;
			S.count--;
		}
	}
	verify_key(id, v);
	if (!is_set && rc == CMAP_OK && failed)
		heal(id, v);
}

static void op_set(unsigned id, unsigned v, unsigned f, unsigned lb)
{
	op_write(true, id, v, f, lb);
}

static void op_remove(unsigned id, unsigned v, unsigned f)
{
	op_write(false, id, v, f, 0);
}

/* A remove that absorbed an allocation failure may have skipped its
 * contraction: insert and remove the key again without failures, after
 * which the map must validate. */
static void heal_path(unsigned id, unsigned v)
{
	A.suspend++;
	op_set(id, v, 0, id);
	op_remove(id, v, 0);
	A.suspend--;
}

static void validate_healed(void)
{
	A.suspend++;
	validate_ok();
	A.suspend--;
}

static void heal(unsigned id, unsigned v)
{
	heal_path(id, v);
	A.suspend++;
	validate_ok();
	A.suspend--;
}

/* flags: bit 0 NULL value buffer, 1 NULL length (where allowed), 2-3 the
 * buffer's capacity, 5 typed wrapper. */
static void op_get(unsigned id, unsigned v, unsigned f)
{
	unsigned char kb[KBUF];
	_Alignas(8) unsigned char vb[VBUF];
	size_t kl = key_bytes(id, v, kb);
	struct ent *e = ent_of(id, v);
	bool vnull = f & 1, typed = S.t && (f & 0x20) && !vnull;
	bool lnull = typed || ((f & 2) && (vnull || null_len_ok()));
	size_t cap = S.vs ? VBUF : pick_cap(f >> 2, e);
	size_t len = S.vs ? 999 : cap, len0 = len;
	memset(vb, PAT, sizeof vb);
	long f0 = A.failed;
	int rc;
	S.work++;
	arm();
	if (typed) {
		uint32_t k;
		memcpy(&k, kb, 4);
		rc = fz_get(S.t, k, (uint64_t *)(void *)vb);
	} else {
		rc = cmap_get(S.m, kb, kl, vnull ? NULL : vb,
			      lnull ? NULL : &len);
	}
	disarm();
	if (rc == CMAP_ENOMEM) {
		CHECK(A.failed != f0);
		CHECK_EQ(len, len0);
		untouched(vb, 0, sizeof vb);
	} else if (!e->present) {
		CHECK_EQ(rc, CMAP_NOT_FOUND);
		CHECK_EQ(len, len0);
		untouched(vb, 0, sizeof vb);
	} else if (!vnull && !S.vs && cap < e->vlen) {
		CHECK_EQ(rc, CMAP_ERANGE);
		CHECK_EQ(len, e->vlen);
		untouched(vb, 0, sizeof vb);
	} else {
		CHECK_EQ(rc, CMAP_OK);
		if (!vnull) {
			check_val(vb, e->serial, e->vlen);
			untouched(vb, e->vlen, sizeof vb);
		} else {
			untouched(vb, 0, sizeof vb);
		}
		CHECK_EQ(len, lnull ? len0 : e->vlen);
	}
	CHECK_EQ(cmap_len(S.m), S.count);
	if (typed)
		CHECK_EQ(fz_len(S.t), S.count);
}

static int run_op(void);

struct visit {
	unsigned id, v;
	bool called, nested;
};

static void visit_cb(const void *key, size_t klen, const void *val, size_t vlen,
		     void *ctx)
{
	struct visit *x = ctx;
	struct expect ex = {x->id, x->v, false};
	unsigned char kc[KBUF], vc[VBUF];
	CHECK(!x->called);
	x->called = true;
	expect_cb(key, klen, val, vlen, &ex); /* the entry as the model says */
	memcpy(kc, key, klen);
	if (vlen)
		memcpy(vc, val, vlen);
	CHECK(S.vdepth < 4);
	int d = S.vdepth++;
	S.vid[d] = ++S.visit_seq;
	S.vkey[d] = key;
	S.vserial[d] = vlen >= 4 ? ent_of(x->id, x->v)->serial : UINT32_MAX;
	if (x->nested && S.depth < 2) {
		/* Any operation but cmap_free and cmap_thread_exit, even one
		 * that replaces or removes this very entry. */
		S.depth++;
		(void)run_op();
		S.depth--;
	}
	/* Borrowed key and value stay valid and unchanged until we return. */
	CHECK(klen == 0 || memcmp(key, kc, klen) == 0);
	CHECK(vlen == 0 || memcmp(val, vc, vlen) == 0);
	S.vdepth--;
}

/* flags: bit 0 run the next operation inside the callback */
static void op_get_with(unsigned id, unsigned v, unsigned f)
{
	unsigned char kb[KBUF];
	size_t kl = key_bytes(id, v, kb);
	struct visit x = {id, v, false, f & 1};
	bool had = ent_of(id, v)->present;
	long f0 = A.failed;
	S.work++;
	arm();
	int rc = cmap_get_with(S.m, kb, kl, visit_cb, &x);
	disarm();
	if (rc == CMAP_ENOMEM) {
		CHECK(A.failed != f0);
		CHECK(!x.called);
	} else {
		CHECK_EQ(rc, had ? CMAP_OK : CMAP_NOT_FOUND);
		CHECK_EQ(x.called, had);
	}
	verify_key(id, v);
}

static void op_batch(unsigned f)
{
	static unsigned char keys[BATCH_MAX * 16], vals[BATCH_MAX * 24 + 8],
	    found[BATCH_MAX + 8];
	unsigned ids[BATCH_MAX], vs[BATCH_MAX];
	if (!S.ks || !S.vs) {
		CHECK_EQ(cmap_get_batch(S.m, keys, 1, vals, found),
			 CMAP_EINVAL);
		return;
	}
	size_t n = rd() % BATCH_MAX;
	unsigned start, v0, stride = rd();
	read_key(&start, &v0);
	for (size_t i = 0; i < n; i++) {
		ids[i] = (unsigned)(start + i * (1 + stride % 7)) % S.nids;
		vs[i] = (unsigned)(v0 + (stride >> 3) * i) & 3;
		key_bytes(ids[i], vs[i], keys + i * S.ks);
	}
	memset(vals, PAT, sizeof vals);
	memset(found, PAT, sizeof found);
	bool fnull = f & 1, bufs_null = n == 0 && (f & 2);
	long f0 = A.failed;
	S.work += (long)n + 1;
	arm();
	long rc = cmap_get_batch(S.m, bufs_null ? NULL : keys, n,
				 bufs_null ? NULL : vals, fnull ? NULL : found);
	disarm();
	if (rc == CMAP_ENOMEM) {
		CHECK(A.failed != f0);
		untouched(vals, 0, sizeof vals);
		untouched(found, 0, sizeof found);
		return;
	}
	long hits = 0;
	for (size_t i = 0; i < n; i++) {
		struct ent *e = ent_of(ids[i], vs[i]);
		if (e->present) {
			hits++;
			check_val(vals + i * S.vs, e->serial, S.vs);
		} else {
			untouched(vals + i * S.vs, 0, S.vs);
		}
		if (!fnull)
			CHECK_EQ(found[i], e->present ? 1 : 0);
	}
	CHECK_EQ(rc, hits);
	untouched(vals, n * S.vs, sizeof vals);
	untouched(found, fnull ? 0 : n, sizeof found);
}

/* ---- write batches ----------------------------------------------------------
 */

enum { WB_SET, WB_REMOVE, WB_INSERT };

static void model_drop(struct ent *e, unsigned id);
static void model_put(struct ent *e, unsigned id, unsigned v, uint32_t s,
		      size_t vl);

/* What key i of a write batch should get, the batch applied as the single
 * calls in input order; the model gets it if st (the status the call
 * reported) says so.  Returns whether the key counts as done. */
static bool wb_apply(unsigned kind, unsigned id, unsigned v, uint32_t s, int st,
		     bool failed)
{
	struct ent *e = ent_of(id, v);
	if (st == CMAP_ENOMEM) {
		CHECK(failed); /* only when memory ran out; nothing changed */
		if (kind != WB_REMOVE)
			S.sst[s] = V_DEAD;
		return false;
	}
	switch (kind) {
	case WB_SET:
		CHECK_EQ(st, e->present ? CMAP_REPLACED : CMAP_OK);
		/* a replace keeps the stored key, the old value retires */
		if (e->present)
			val_leave(e->serial, false);
		model_put(e, id, v, s, S.vs);
		return true;
	case WB_REMOVE:
		CHECK_EQ(st, e->present ? CMAP_OK : CMAP_NOT_FOUND);
		if (!e->present)
			return false;
		model_drop(e, id);
		return true;
	default:
		CHECK_EQ(st, e->present ? CMAP_EXISTS : CMAP_OK);
		if (e->present) {
			S.sst[s] = V_DEAD;
			return false;
		}
		model_put(e, id, v, s, S.vs);
		return true;
	}
}

/* The status key i must have had, read back from the map (results NULL,
 * every key of the batch a different entry): a set or insert stored its
 * value or failed, a remove removed the key or failed. */
static int wb_derive(unsigned kind, unsigned id, unsigned v, uint32_t s)
{
	unsigned char kb[KBUF];
	_Alignas(8) unsigned char vb[VBUF];
	struct ent *e = ent_of(id, v);
	key_bytes(id, v, kb);
	A.suspend++;
	int rc = cmap_get(S.m, kb, S.ks, vb, NULL);
	A.suspend--;
	CHECK(rc == CMAP_OK || rc == CMAP_NOT_FOUND);
	uint32_t got = UINT32_MAX;
	if (rc == CMAP_OK)
		memcpy(&got, vb, 4);
	switch (kind) {
	case WB_SET:
		return got == s ? e->present ? CMAP_REPLACED : CMAP_OK
				: CMAP_ENOMEM;
	case WB_REMOVE:
		return !e->present	      ? CMAP_NOT_FOUND
		       : rc == CMAP_NOT_FOUND ? CMAP_OK
					      : CMAP_ENOMEM;
	default:
		return e->present ? CMAP_EXISTS
		       : got == s ? CMAP_OK
				  : CMAP_ENOMEM;
	}
}

/* cmap_set_batch, cmap_remove_batch, cmap_insert_batch.  f: bits 0-1 the
 * call (set, remove, insert, insert), 2 results NULL; then n, a stride, a
 * duplicate pattern and the first key.  Keys i whose bit i % 8 of the
 * pattern is set repeat an earlier key of the batch, in another variant
 * (one key under the masked equality, other keys with the same bytes
 * under a hasher that ignores them). */
static void op_wbatch(unsigned f)
{
	static unsigned char keys[WB_MAX * 16], vals[WB_MAX * 24 + 8];
	static int res[WB_MAX + 8];
	unsigned ids[WB_MAX], vs[WB_MAX];
	uint32_t ser[WB_MAX];
	unsigned kind = (f & 3) == 3 ? WB_INSERT : f & 3;
	bool rnull = f & 4;
	int *rp = rnull ? NULL : res;
	size_t n = rd() % WB_MAX;
	long f0 = A.failed, rc;
	memset(res, PAT, sizeof res);
	if (!S.ks || !S.vs) {
		/* variable-length maps: refused, nothing changes */
		long live0 = A.live;
		memset(keys, 0x33, sizeof keys);
		memset(vals, 0x44, sizeof vals);
		arm();
		rc = kind == WB_SET ? cmap_set_batch(S.m, keys, vals, n, rp)
		     : kind == WB_REMOVE
			 ? cmap_remove_batch(S.m, keys, n, rp)
			 : cmap_insert_batch(S.m, keys, vals, n, rp);
		disarm();
		CHECK_EQ(rc, CMAP_EINVAL);
		CHECK_EQ(A.live, live0);
		untouched((unsigned char *)res, 0, sizeof res);
		CHECK_EQ(cmap_len(S.m), S.count);
		return;
	}
	unsigned start, v0, stride = rd(), dup = rd();
	read_key(&start, &v0);
	bool distinct = true;
	uint32_t s0 = S.nserial;
	for (size_t i = 0; i < n; i++) {
		if (i > 0 && ((dup >> (i % 8)) & 1)) {
			size_t j = (i * 7 + dup) % i;
			ids[i] = ids[j];
			vs[i] = (vs[j] + 1 + (stride >> 6)) & 3;
		} else {
			ids[i] =
			    (unsigned)(start + i * (1 + stride % 7)) % S.nids;
			vs[i] = (unsigned)(v0 + (stride >> 3) * i) & 3;
		}
		key_bytes(ids[i], vs[i], keys + i * S.ks);
		for (size_t j = 0; j < i && distinct; j++)
			distinct =
			    ent_of(ids[j], vs[j]) != ent_of(ids[i], vs[i]);
		ser[i] = 0;
		if (kind != WB_REMOVE) {
			ser[i] = new_serial(S.vs);
			val_bytes(ser[i], S.vs, vals + i * S.vs);
		}
	}
	/* Without statuses the outcome of a key whose entry the batch
	 * touches twice cannot be told from the map: no failures then. */
	bool quiet = rnull && !distinct;
	S.work += (long)n + 1;
	EB.on = true;
	EB.s0 = s0;
	EB.nval = 0;
	EB.nkey = 0;
	memset(EB.key, 0, sizeof EB.key);
	A.suspend += quiet;
	arm();
	if (kind == WB_SET)
		rc = cmap_set_batch(S.m, keys, vals, n, rp);
	else if (kind == WB_REMOVE)
		rc = cmap_remove_batch(S.m, keys, n, rp);
	else
		rc = cmap_insert_batch(S.m, keys, vals, n, rp);
	disarm();
	A.suspend -= quiet;
	EB.on = false;
	bool failed = A.failed != f0;
	if (trace) {
		int nomem = 0;
		for (size_t i = 0; !rnull && i < n; i++)
			nomem += res[i] == CMAP_ENOMEM;
		fprintf(stderr,
			"%*sbatch %u of %zu: %ld, %d ENOMEM, failures %d, "
			"%u values and %ld keys destroyed inside\n",
			2 * S.depth, "", kind, n, rc, nomem, failed, EB.nval,
			EB.nkey);
	}
	untouched((unsigned char *)res, rnull ? 0 : n * sizeof *res,
		  sizeof res);
	if (rc < 0) {
		/* as a whole: only for memory (joining the map, scratch),
		 * and then nothing was done */
		CHECK_EQ(rc, CMAP_ENOMEM);
		CHECK(failed);
		CHECK(n > 0);
		untouched((unsigned char *)res, 0, sizeof res);
		CHECK(EB.nval == 0 && EB.nkey == 0);
		for (size_t i = 0; i < n; i++)
			if (kind != WB_REMOVE)
				S.sst[ser[i]] = V_DEAD;
		for (size_t i = 0; i < n; i++)
			verify_key(ids[i], vs[i]);
		return;
	}
	long done = 0;
	bool removed[WB_MAX];
	for (size_t i = 0; i < n; i++) {
		struct ent *e = ent_of(ids[i], vs[i]);
		int st;
		if (!rnull) {
			st = res[i];
		} else if (failed) {
			CHECK(distinct);
			st = wb_derive(kind, ids[i], vs[i], ser[i]);
		} else if (kind == WB_SET) {
			st = e->present ? CMAP_REPLACED : CMAP_OK;
		} else if (kind == WB_REMOVE) {
			st = e->present ? CMAP_OK : CMAP_NOT_FOUND;
		} else {
			st = e->present ? CMAP_EXISTS : CMAP_OK;
		}
		removed[i] = kind == WB_REMOVE && st == CMAP_OK;
		/* the model moves on as the batch did, key by key */
		done += wb_apply(kind, ids[i], vs[i], ser[i], st, failed);
	}
	CHECK_EQ(rc, done);
	/* destructors that ran inside the batch: now retired in the model */
	for (unsigned i = 0; i < EB.nval; i++) {
		uint32_t s = EB.val[i];
		CHECK_EQ(S.sst[s], V_RETIRED);
		S.sst[s] = V_FREED;
		S.vretired--;
	}
	for (unsigned k = 0; k < NSLOTS && EB.nkey; k++) {
		CHECK(S.kretired[k] >= EB.key[k]);
		S.kretired[k] -= EB.key[k];
		S.kretired_total -= EB.key[k];
		EB.nkey -= EB.key[k];
	}
	for (size_t i = 0; i < n; i++)
		verify_key(ids[i], vs[i]);
	CHECK_EQ(cmap_len(S.m), S.count);
	if (failed) {
		/* removes that absorbed a failure may have skipped their
		 * contraction */
		for (size_t i = 0; i < n; i++)
			if (removed[i] && !ent_of(ids[i], vs[i])->present)
				heal_path(ids[i], vs[i]);
		validate_healed();
	}
}

/* cmap_reclaim_stats agrees with cmap_validate's figures (st, just taken,
 * or NULL), the epoch never goes back, and only the fields that the
 * caller's size covers are written. */
static void check_gc(const cmap_stats_t *st, unsigned f)
{
	static const size_t sizes[4] = {offsetof(cmap_gc_stats_t, epoch),
					offsetof(cmap_gc_stats_t, blocking),
					sizeof(cmap_gc_stats_t),
					sizeof(cmap_gc_stats_t) + 16};
	union {
		cmap_gc_stats_t gc;
		unsigned char b[sizeof(cmap_gc_stats_t) + 16];
	} u;
	size_t size = sizes[(f >> 2) & 3];
	memset(&u, PAT, sizeof u);
	u.gc.size = size;
	CHECK_EQ(cmap_reclaim_stats(S.m, &u.gc), CMAP_OK);
	untouched(u.b, size < sizeof u.gc ? size : sizeof u.gc, sizeof u);
	CHECK_EQ(u.gc.size, size);
	if (st)
		CHECK_EQ(u.gc.pending, st->garbage_pending);
	if (size < sizeof u.gc)
		return;
	CHECK(u.gc.epoch >= S.last_epoch);
	S.last_epoch = u.gc.epoch;
	CHECK(u.gc.epoch_age_secs >= 0);
	if (st)
		CHECK_EQ(u.gc.threads, st->threads);
	/* nobody is inside an operation, but for get_with callbacks */
	CHECK(u.gc.blocking <= (size_t)S.vdepth);
	CHECK(u.gc.threads >= 1 && u.gc.threads <= (S.threaded ? 2u : 1u));
}

/* A whole compaction pass by this thread now, whatever the pages look
 * like (src/compact.c), with allocation failures armed: every move is an
 * update that changes nothing, so the model must still hold exactly and no
 * destructor may run for a moved entry. */
static void compact_pass(void)
{
	rec_t *r = cmap__enter(S.m);
	if (!r)
		return;
	cmap__leave(r);
	cmap__compact_start(S.m, r);
	arm();
	cmap__compact(S.m, r, true);
	disarm();
	CHECK(!r->compacting);
}

static void op_validate(unsigned f)
{
	cmap_stats_t st;
	size_t pend = 0;
	if (f & 2) {
		S.in_collect++;
		if ((f & 4) && !S.vdepth)
			compact_pass();
		pend = cmap_collect(S.m);
		S.in_collect--;
	}
	long f0 = A.failed;
	S.work += (long)S.count / 8 + 1;
	arm();
	int rc = cmap_validate(S.m, (f & 1) ? NULL : &st);
	disarm();
	if (rc == CMAP_ENOMEM) {
		CHECK(A.failed != f0);
		return;
	}
	CHECK_EQ(rc, CMAP_OK);
	if (!(f & 1)) {
		check_stats(&st);
		if (f & 2)
			CHECK(S.threaded ? st.garbage_pending >= pend
					 : st.garbage_pending == pend);
	}
	check_gc((f & 1) ? NULL : &st, f);
	CHECK_EQ(cmap_len(S.m), S.count);
}

/* Collect until nothing is pending: every retired key and value has been
 * destroyed, every deferred callback has run.  Garbage that exited threads
 * left in their (released) records is reaped by any thread's collect
 * (docs/DESIGN.md), once expired: so collect until this thread has had
 * nothing pending for more calls in a row than the grace period is long. */
static void op_drain(void)
{
	size_t n = 1;
	int quiet = 0;
	A.suspend++;
	S.in_collect++;
	for (int i = 0; i < 32 && quiet < 6; i++) {
		n = cmap_collect(S.m);
		quiet = n ? 0 : quiet + 1;
	}
	S.in_collect--;
	A.suspend--;
	CHECK_EQ(n, 0);
	if (S.vdtor)
		CHECK_EQ(S.vretired, 0);
	if (S.kdtor)
		CHECK_EQ(S.kretired_total, 0);
	CHECK_EQ(S.tok_pending, 0);
}

static int never_cb(const void *key, size_t klen, const void *val, size_t vlen,
		    void *ctx)
{
	(void)key, (void)klen, (void)val, (void)vlen, (void)ctx;
	CHECK(0); /* a call with bad arguments must not get this far */
	return 1;
}

static int never_comp(const void *key, size_t klen, const void *cur,
		      size_t cur_len, const void **val, size_t *vlen, void *ctx)
{
	(void)key, (void)klen, (void)cur, (void)cur_len, (void)val, (void)vlen,
	    (void)ctx;
	CHECK(0);
	return CMAP_COMPUTE_ABORT;
}

/* Bad arguments: the documented code, and nothing changes. */
static void op_invalid(unsigned sub)
{
	unsigned char kb[KBUF], vb[VBUF];
	_Alignas(8) unsigned char ob[VBUF];
	unsigned id, v;
	read_key(&id, &v);
	size_t kl = key_bytes(id, v, kb), vl = S.vs ? S.vs : 5, len = VBUF;
	size_t big = CMAP_MAX_VAR_LEN + 1 + rd();
	struct visit x = {id, v, false, false};
	long live0 = A.live;
	memset(vb, 0x11, sizeof vb);
	memset(ob, PAT, sizeof ob);
	int rc = CMAP_EINVAL, want = CMAP_EINVAL;
	switch (sub % 24) {
	case 0:
		rc = cmap_set(NULL, kb, kl, vb, vl, NULL, NULL);
		break;
	case 1:
		rc = cmap_get(NULL, kb, kl, ob, &len);
		break;
	case 2:
		rc = cmap_get_with(NULL, kb, kl, visit_cb, &x);
		break;
	case 3:
		rc = cmap_remove(NULL, kb, kl, ob, &len);
		break;
	case 4:
		rc = (int)cmap_get_batch(NULL, kb, 1, ob, NULL);
		break;
	case 5:
		rc = cmap_validate(NULL, NULL);
		CHECK_EQ(cmap_defer_free(NULL, &x, deferred), CMAP_EINVAL);
		CHECK_EQ(cmap_len(NULL), 0);
		CHECK_EQ(cmap_collect(NULL), 0);
		cmap_free(NULL);
		break;
	case 6:
		rc = cmap_set(S.m, NULL, S.ks ? S.ks : (rd() & 1) * 8, vb, vl,
			      NULL, NULL);
		break;
	case 7:
		rc = cmap_get(S.m, NULL, S.ks, ob, &len);
		CHECK_EQ(cmap_get_with(S.m, NULL, S.ks, visit_cb, &x),
			 CMAP_EINVAL);
		CHECK_EQ(cmap_remove(S.m, NULL, S.ks, ob, &len), CMAP_EINVAL);
		break;
	case 8: /* fixed key size, wrong length */
		if (!S.ks)
			return;
		kl = (rd() & 1) ? S.ks - 1 : S.ks + 1 + rd() % 300;
		want = CMAP_EKEYLEN;
		rc = cmap_set(S.m, kb, kl, vb, vl, NULL, NULL);
		CHECK_EQ(cmap_get(S.m, kb, kl, ob, &len), want);
		CHECK_EQ(cmap_get_with(S.m, kb, kl, visit_cb, &x), want);
		CHECK_EQ(cmap_remove(S.m, kb, kl, ob, &len), want);
		break;
	case 9: /* variable key longer than CMAP_MAX_VAR_LEN */
		if (S.ks)
			return;
		rc = cmap_set(S.m, kb, big, vb, vl, NULL, NULL);
		CHECK_EQ(cmap_get(S.m, kb, big, ob, &len), want);
		CHECK_EQ(cmap_get_with(S.m, kb, big, visit_cb, &x), want);
		CHECK_EQ(cmap_remove(S.m, kb, big, ob, &len), want);
		break;
	case 10: /* value of the wrong fixed size, or too long */
		if (S.vs) {
			want = CMAP_EVALLEN;
			vl = (rd() & 1) ? 0 : S.vs + 1 + rd();
		} else {
			vl = big;
		}
		rc = cmap_set(S.m, kb, kl, vb, vl, NULL, NULL);
		break;
	case 11: /* NULL value with a length */
		rc = cmap_set(S.m, kb, kl, NULL, S.vs ? S.vs : 1 + rd(), NULL,
			      NULL);
		break;
	case 12: /* old without old_len for variable values */
		if (S.vs)
			return;
		rc = cmap_set(S.m, kb, kl, vb, vl, ob, NULL);
		CHECK_EQ(cmap_remove(S.m, kb, kl, ob, NULL), want);
		break;
	case 13: /* value buffer without its length */
		if (S.vs)
			return;
		rc = cmap_get(S.m, kb, kl, ob, NULL);
		break;
	case 14:
		rc = cmap_get_with(S.m, kb, kl, NULL, &x);
		break;
	case 15:
		rc = cmap_defer_free(S.m, NULL, deferred);
		CHECK_EQ(cmap_defer_free(S.m, &x, NULL), want);
		break;
	case 16: /* batches: variable maps, missing buffers */
		rc = (int)cmap_get_batch(S.m, (S.ks && S.vs) ? NULL : kb, 1, ob,
					 NULL);
		CHECK_EQ(cmap_get_batch(S.m, kb, 1 + rd() % 3,
					(S.ks && S.vs) ? NULL : ob, NULL),
			 want);
		{
			/* write batches: no map, keys or values with n > 0;
			 * n == 0 does nothing (variable maps: refused) */
			int res[4];
			bool fixed = S.ks && S.vs;
			size_t bn = 1 + rd() % 3;
			memset(res, PAT, sizeof res);
			CHECK_EQ(cmap_set_batch(NULL, kb, vb, bn, res), want);
			CHECK_EQ(cmap_set_batch(S.m, NULL, vb, bn, res), want);
			CHECK_EQ(cmap_set_batch(S.m, kb, NULL, bn, res), want);
			CHECK_EQ(cmap_remove_batch(NULL, kb, bn, res), want);
			CHECK_EQ(cmap_remove_batch(S.m, NULL, bn, res), want);
			CHECK_EQ(cmap_insert_batch(NULL, kb, vb, bn, res),
				 want);
			CHECK_EQ(cmap_insert_batch(S.m, NULL, vb, bn, res),
				 want);
			CHECK_EQ(cmap_insert_batch(S.m, kb, NULL, bn, res),
				 want);
			CHECK_EQ(cmap_set_batch(NULL, NULL, NULL, 0, NULL),
				 want);
			CHECK_EQ(cmap_set_batch(S.m, NULL, NULL, 0, res),
				 fixed ? 0 : want);
			CHECK_EQ(cmap_remove_batch(S.m, NULL, 0, res),
				 fixed ? 0 : want);
			CHECK_EQ(cmap_insert_batch(S.m, NULL, NULL, 0, res),
				 fixed ? 0 : want);
			CHECK_EQ(cmap_set_batch(S.m, kb, vb, 0, NULL),
				 fixed ? 0 : want);
			CHECK_EQ(cmap_insert_batch(S.m, kb, vb, 0, NULL),
				 fixed ? 0 : want);
			untouched((unsigned char *)res, 0, sizeof res);
			CHECK_EQ(cmap_len(S.m), S.count);
		}
		break;
	case 17: /* an empty key is one only where keys vary in length */
		if (!S.ks)
			return;
		want = CMAP_EKEYLEN;
		rc = cmap_set(S.m, kb, 0, vb, vl, NULL, NULL);
		break;
	case 19: { /* reclamation statistics: no map, no output, short size */
		cmap_gc_stats_t gc;
		memset(&gc, PAT, sizeof gc);
		gc.size = rd() % offsetof(cmap_gc_stats_t, epoch);
		size_t size0 = gc.size;
		rc = cmap_reclaim_stats(S.m, &gc);
		CHECK_EQ(gc.size, size0);
		untouched((unsigned char *)&gc, sizeof gc.size, sizeof gc);
		gc.size = sizeof gc;
		CHECK_EQ(cmap_reclaim_stats(NULL, &gc), want);
		CHECK_EQ(cmap_reclaim_stats(S.m, NULL), want);
		break;
	}
	case 20: { /* no map: the read-modify-write and walking calls */
		cmap_cursor_t c = CMAP_CURSOR_INIT;
		rc = cmap_insert(NULL, kb, kl, vb, vl, ob, &len);
		CHECK_EQ(cmap_replace(NULL, kb, kl, vb, vl, ob, &len), want);
		CHECK_EQ(cmap_cas(NULL, kb, kl, vb, vl, vb, vl, ob, &len),
			 want);
		CHECK_EQ(cmap_remove_if(NULL, kb, kl, vb, vl), want);
		CHECK_EQ(cmap_compute(NULL, kb, kl, never_comp, NULL), want);
		CHECK_EQ(cmap_foreach(NULL, never_cb, NULL), want);
		CHECK_EQ(cmap_cursor_next(NULL, &c, 1, never_cb, NULL), want);
		CHECK(c.next == 0 && !c.done);
		CHECK_EQ(cmap_retain(NULL, never_cb, NULL), want);
		CHECK_EQ(cmap_clear(NULL), want);
		break;
	}
	case 21: { /* no function, cursor or slice */
		cmap_cursor_t c = CMAP_CURSOR_INIT;
		rc = cmap_compute(S.m, kb, kl, NULL, NULL);
		CHECK_EQ(cmap_foreach(S.m, NULL, NULL), want);
		CHECK_EQ(cmap_cursor_next(S.m, NULL, 1, never_cb, NULL), want);
		CHECK_EQ(cmap_cursor_next(S.m, &c, 0, never_cb, NULL), want);
		CHECK_EQ(cmap_cursor_next(S.m, &c, 1, NULL, NULL), want);
		CHECK(c.next == 0 && !c.done);
		CHECK_EQ(cmap_retain(S.m, NULL, NULL), want);
		CHECK_EQ(cmap_compute(S.m, NULL, kl, never_comp, NULL), want);
		break;
	}
	case 22: /* NULL key or expected value; cur without its length */
		rc = cmap_insert(S.m, NULL, kl, vb, vl, NULL, NULL);
		CHECK_EQ(cmap_cas(S.m, kb, kl, NULL, S.vs ? S.vs : 1, vb, vl,
				  NULL, NULL),
			 want);
		CHECK_EQ(cmap_cas(S.m, kb, kl, vb, vl, NULL, S.vs ? S.vs : 2,
				  NULL, NULL),
			 want);
		CHECK_EQ(cmap_remove_if(S.m, kb, kl, NULL, S.vs ? S.vs : 3),
			 want);
		CHECK_EQ(cmap_replace(S.m, kb, kl, NULL, S.vs ? S.vs : 4, NULL,
				      NULL),
			 want);
		if (!S.vs) {
			CHECK_EQ(cmap_insert(S.m, kb, kl, vb, vl, ob, NULL),
				 want);
			CHECK_EQ(cmap_replace(S.m, kb, kl, vb, vl, ob, NULL),
				 want);
			CHECK_EQ(
			    cmap_cas(S.m, kb, kl, vb, vl, vb, vl, ob, NULL),
			    want);
		}
		break;
	case 23: /* wrong fixed lengths */
		if (S.vs) {
			want = CMAP_EVALLEN;
			rc = cmap_insert(S.m, kb, kl, vb, S.vs - 1, NULL, NULL);
			CHECK_EQ(
			    cmap_replace(S.m, kb, kl, vb, S.vs + 1, NULL, NULL),
			    want);
			CHECK_EQ(cmap_cas(S.m, kb, kl, vb, S.vs + 1, vb, S.vs,
					  NULL, NULL),
				 want);
			CHECK_EQ(
			    cmap_cas(S.m, kb, kl, vb, S.vs, vb, 1, NULL, NULL),
			    want);
			CHECK_EQ(cmap_remove_if(S.m, kb, kl, vb, 0), want);
		} else if (S.ks) {
			want = CMAP_EKEYLEN;
			rc = cmap_insert(S.m, kb, S.ks + 1, vb, vl, NULL, NULL);
			CHECK_EQ(
			    cmap_compute(S.m, kb, S.ks - 1, never_comp, NULL),
			    want);
			CHECK_EQ(cmap_remove_if(S.m, kb, 0, vb, vl), want);
		} else {
			return;
		}
		break;
	default: /* a fixed value one byte short */
		if (!S.vs)
			return;
		want = CMAP_EVALLEN;
		rc = cmap_set(S.m, kb, kl, vb, S.vs - 1, NULL, NULL);
		break;
	}
	CHECK_EQ(rc, want);
	CHECK(!x.called);
	untouched(ob, 0, sizeof ob);
	CHECK_EQ(len, VBUF);
	CHECK_EQ(A.live, live0);
	verify_key(id, v);
}

/* Invalid configurations: CMAP_EINVAL, no map, nothing allocated. */
static void op_bad_config(unsigned sub)
{
	cmap_config_t c = S.cfg;
	cmap_t *out = NULL;
	long live0 = A.live;
	int rc;
	switch (sub % 11) {
	case 0:
		c.size = sizeof c + 8 * (1 + rd() % 4);
		break;
	case 1:
		c.size = 1 + rd() % (sizeof c - 1);
		break;
	case 2:
		c.key_size = CMAP_MAX_FIXED_SIZE + 1 + rd();
		break;
	case 3:
		c.val_size = CMAP_MAX_FIXED_SIZE + 1 + rd();
		break;
	case 4:
		c.alloc = h_alloc;
		c.free = NULL;
		break;
	case 5:
		c.alloc = NULL;
		c.free = h_free;
		break;
	case 6:
		c.flags |= 8u << (rd() % 28); /* past every known flag */
		break;
	case 7:
		c.hash = cmap_hash_u32;
		c.key_size = S.ks == 4 ? 8 : S.ks;
		break;
	case 8:
		c.hash = cmap_hash_u64;
		c.key_size = S.ks == 8 ? 4 : S.ks;
		break;
	case 9:
		CHECK_EQ(cmap_new(&out, NULL), CMAP_EINVAL);
		CHECK(out == NULL);
		return;
	default:
		CHECK_EQ(cmap_new(NULL, &c), CMAP_EINVAL);
		return;
	}
	rc = cmap_new(&out, &c);
	CHECK_EQ(rc, CMAP_EINVAL);
	CHECK(out == NULL);
	CHECK_EQ(A.live, live0);
}

/* The stateless functions: hashes, messages, versions. */
static void op_misc(void)
{
	unsigned char b[64];
	size_t n = rd() % sizeof b;
	for (size_t i = 0; i < n; i++)
		b[i] = (unsigned char)rd();
	uint64_t seed = rd() * 0x9e3779b97f4a7c15ull;
	CHECK(cmap_hash_xxh3(b, n, seed) == cmap_hash_xxh3(b, n, seed));
	CHECK(cmap_hash_city(b, n, seed) == cmap_city64_seed(b, n, seed));
	CHECK(cmap_city64(b, n) == cmap_city64(b, n));
	CHECK(cmap_city64_seeds(b, n, seed, ~seed) ==
	      cmap_city64_seeds(b, n, seed, ~seed));
	uint32_t x32 = 0;
	uint64_t x64 = 0;
	memcpy(&x32, b, 4);
	memcpy(&x64, b, 8);
	CHECK(cmap_hash_u32(b, 4, seed) == x32);
	CHECK(cmap_hash_u64(b, 8, seed) == x64);
	const char *unknown = cmap_strerror(1000 + (int)rd());
	CHECK(unknown && *unknown);
	for (int s = CMAP_ERANGE; s <= CMAP_NOT_FOUND; s++) {
		const char *msg = cmap_strerror(s);
		CHECK(msg && *msg && strcmp(msg, unknown) != 0);
	}
	CHECK(strcmp(cmap_version(), CMAP_VERSION_STRING) == 0);
	CHECK_EQ(cmap_version_number(), CMAP_VERSION_NUMBER);
	cmap_config_t c;
	memset(&c, 0xff, sizeof c);
	cmap_config_init(&c);
	CHECK_EQ(c.size, sizeof c);
	CHECK(c.key_size == 0 && c.hash == NULL && c.alloc == NULL &&
	      c.flags == 0);
}

/* ---- read-modify-write ------------------------------------------------------
 */

/* A value leaves the model's entry e (to its destructor) and e becomes
 * absent, or the reverse when an optimistic removal did not happen. */
static void model_drop(struct ent *e, unsigned id)
{
	val_leave(e->serial, false);
	key_retire(id, e->variant);
	e->present = false;
	S.removals[e - S.model]++;
	S.count--;
}

static void model_undrop(struct ent *e, unsigned id)
{
	uint32_t s = e->serial;
	size_t len = S.slen[s];
	CHECK_EQ(S.sst[s], V_RETIRED);
	S.sst[s] = V_NONE;
	S.vretired--;
	if (len < 4)
		S.tiny_ret[len]--;
	val_enter(s);
	unsigned k = kidx(id, e->variant);
	CHECK(S.kretired[k] > 0);
	S.kretired[k]--;
	S.kretired_total--;
	e->present = true;
	S.count++;
}

/* A new entry, or a new value under the key the map holds (the caller's
 * key bytes are not stored on a replace). */
static void model_put(struct ent *e, unsigned id, unsigned v, uint32_t s,
		      size_t vl)
{
	if (!e->present) {
		e->present = true;
		e->kfreed = false;
		e->variant = (uint8_t)canon(id, v);
		S.count++;
	}
	e->serial = s;
	e->vlen = (uint32_t)vl;
	val_enter(s);
}

/* The expected value of a cas or remove_if, from mode m and length byte
 * lb: the current value, another one of the same length (equal bytes below
 * 4 bytes), a length off by one, or a length from lb. */
static size_t pick_expected(unsigned m, unsigned lb, const struct ent *e,
			    unsigned char *b)
{
	uint32_t es = e->present ? e->serial : 0;
	size_t el = e->present ? e->vlen : pick_vlen(lb);
	switch (m & 3) {
	case 0:
		break;
	case 1:
		es += 1 + (m >> 2);
		break;
	case 2:
		if (!S.vs)
			el = el ? el - 1 : 1;
		else
			es ^= 0x100;
		break;
	default:
		el = pick_vlen(lb);
		break;
	}
	val_bytes(es, el, b);
	return el;
}

enum { R_INSERT, R_REPLACE, R_CAS, R_REMOVE_IF };

/* cmap_insert, cmap_replace, cmap_cas, cmap_remove_if of one key.
 * flags: bit 0 output buffer (cur / old), 1-2 its capacity, 3 its length
 * pointer with fixed values, 4 NULL pointers for empty values, 5 typed
 * wrapper; lb: the new value's length; eb, elb: the expected value. */
static void op_rmw(unsigned kind, unsigned id, unsigned v, unsigned f,
		   unsigned lb, unsigned eb, unsigned elb)
{
	unsigned char kb[KBUF], vb[VBUF], xb[VBUF];
	_Alignas(8) unsigned char ob[VBUF];
	size_t kl = key_bytes(id, v, kb), vl = 0, el = 0;
	struct ent *e = ent_of(id, v);
	uint32_t s = 0;
	bool puts = kind != R_REMOVE_IF, cmp = kind >= R_CAS;
	bool with_out = (f & 1) && kind != R_REMOVE_IF;
	bool typed = S.t && (f & 0x20);
	if (puts) {
		vl = pick_vlen(lb);
		s = new_serial(vl);
		val_bytes(s, vl, vb);
	}
	if (cmp)
		el = pick_expected(eb, elb, e, xb);
	bool match = cmp && e->present && el == e->vlen;
	if (match) {
		unsigned char cb[VBUF];
		val_bytes(e->serial, e->vlen, cb);
		match = el == 0 || !memcmp(cb, xb, el);
	}
	const void *vp = !S.vs && vl == 0 && (f & 0x10) ? NULL : vb;
	const void *xp = !S.vs && el == 0 && (f & 0x10) ? NULL : xb;
	size_t cap = VBUF, olen = 4242, *olp = NULL;
	if (with_out && !S.vs) {
		olen = cap = pick_cap(f >> 1, e);
		olp = &olen;
	} else if (with_out && ((f & 8) || !null_len_ok()) && !typed) {
		olp = &olen;
	}
	size_t olen0 = olen;
	memset(ob, PAT, sizeof ob);
	uint64_t *tob = with_out ? (uint64_t *)(void *)ob : NULL;
	uint32_t tk = 0;
	uint64_t tv = 0, tx = 0;
	memcpy(&tk, kb, typed ? 4 : 0);
	memcpy(&tv, vb, typed && puts ? 8 : 0);
	memcpy(&tx, xb, typed && cmp ? 8 : 0);
	if (typed && cmp && el != 8)
		typed = false; /* the typed calls take a V */
	long f0 = A.failed;
	int rc;
	S.work++;
	arm();
	switch (kind) {
	case R_INSERT:
		rc = typed ? fz_insert(S.t, tk, tv, tob)
			   : cmap_insert(S.m, kb, kl, vp, vl,
					 with_out ? ob : NULL, olp);
		break;
	case R_REPLACE:
		rc = typed ? fz_replace(S.t, tk, tv, tob)
			   : cmap_replace(S.m, kb, kl, vp, vl,
					  with_out ? ob : NULL, olp);
		break;
	case R_CAS:
		rc = typed ? fz_cas(S.t, tk, tx, tv, tob)
			   : cmap_cas(S.m, kb, kl, xp, el, vp, vl,
				      with_out ? ob : NULL, olp);
		break;
	default:
		rc = typed ? fz_remove_if(S.t, tk, tx)
			   : cmap_remove_if(S.m, kb, kl, xp, el);
		break;
	}
	disarm();
	bool failed = A.failed != f0;
	/* what the call should do: put s, drop the entry, copy out the
	 * current value (with ERANGE if it does not fit), or nothing */
	bool put = false, drop = false, copy = false;
	int want;
	if (!e->present) {
		want = kind == R_INSERT ? CMAP_OK : CMAP_NOT_FOUND;
		put = kind == R_INSERT;
	} else if (kind == R_INSERT) {
		want = CMAP_EXISTS;
		copy = with_out;
	} else if (kind == R_REPLACE) {
		want = CMAP_REPLACED;
		put = true;
		copy = with_out;
	} else if (!match) {
		want = CMAP_MISMATCH;
		copy = with_out;
	} else {
		want = kind == R_CAS ? CMAP_REPLACED : CMAP_OK;
		put = kind == R_CAS;
		drop = kind == R_REMOVE_IF;
	}
	if (copy && !S.vs && cap < e->vlen) {
		want = CMAP_ERANGE;
		put = copy = false;
	}
	if (rc == CMAP_ENOMEM) {
		CHECK(failed);
		want = CMAP_ENOMEM;
		put = drop = copy = false;
	}
	CHECK_EQ(rc, want);
	if (copy) {
		check_val(ob, e->serial, e->vlen);
		untouched(ob, e->vlen, sizeof ob);
	} else {
		untouched(ob, 0, sizeof ob);
	}
	if (want == CMAP_ERANGE)
		CHECK_EQ(olen, e->vlen);
	else
		CHECK_EQ(olen, copy && olp ? e->vlen : olen0);
	if (put) {
		/* a replaced value goes to the caller (replace with old) or
		 * to its destructor */
		if (e->present)
			val_leave(e->serial, kind == R_REPLACE && with_out);
		model_put(e, id, v, s, vl);
	} else if (puts) {
		S.sst[s] = V_DEAD; /* never stored */
	}
	if (drop)
		model_drop(e, id);
	verify_key(id, v);
	if (drop && failed)
		heal(id, v);
}

/* cmap_compute.  f: bits 0-1 the action (KEEP, SET, REMOVE, ABORT), 2 an
 * unknown action instead, 3 fn reads the map (and defers), 4 fn tries to
 * write it, 5 typed wrapper, 6 SET a value cmap_set would refuse, 7 SET
 * the current value by pointing into cur (without value destructors). */
struct comp {
	unsigned id, v, f;
	unsigned char kb[KBUF];
	size_t kl;
	unsigned char vb[VBUF];
	size_t vl;
	int calls;
	bool ok_into_cur;
};

static int comp_act(struct comp *c)
{
	static const int acts[4] = {CMAP_COMPUTE_KEEP, CMAP_COMPUTE_SET,
				    CMAP_COMPUTE_REMOVE, CMAP_COMPUTE_ABORT};
	return (c->f & 4) ? 4 + (int)(c->f & 3) * 1000 : acts[c->f & 3];
}

/* What fn may and may not do, inside the operation. */
static void comp_inside(struct comp *c)
{
	struct ent *e = ent_of(c->id, c->v);
	long f0 = A.failed;
	if (c->f & 8) {
		unsigned char b[VBUF];
		size_t len = sizeof b;
		int rc = cmap_get(S.m, c->kb, c->kl, b, &len);
		CHECK(rc == (e->present ? CMAP_OK : CMAP_NOT_FOUND) ||
		      (rc == CMAP_ENOMEM && A.failed != f0));
		if (rc == CMAP_OK) {
			CHECK_EQ(len, e->vlen);
			check_val(b, e->serial, e->vlen);
		}
		CHECK_EQ(cmap_len(S.m), S.count);
		rc = defer_token();
		CHECK(rc == CMAP_OK || rc == -100 ||
		      (rc == CMAP_ENOMEM && A.failed != f0));
	}
	if (c->f & 0x10) {
		unsigned char b[VBUF];
		memset(b, 0xe0, sizeof b);
		size_t vl = S.vs ? S.vs : 3;
		int rc = cmap_set(S.m, c->kb, c->kl, b, vl, NULL, NULL);
		CHECK(rc == CMAP_EINVAL ||
		      (rc == CMAP_ENOMEM && A.failed != f0));
		rc = cmap_insert(S.m, c->kb, c->kl, b, vl, NULL, NULL);
		CHECK(rc == CMAP_EINVAL ||
		      (rc == CMAP_ENOMEM && A.failed != f0));
		rc = cmap_remove(S.m, c->kb, c->kl, NULL, NULL);
		CHECK(rc == CMAP_EINVAL ||
		      (rc == CMAP_ENOMEM && A.failed != f0));
		long n = cmap_clear(S.m);
		CHECK(n == CMAP_EINVAL || (n == CMAP_ENOMEM && A.failed != f0));
		batch_refused(c->kb, f0);
	}
}

static int comp_fn(const void *key, size_t klen, const void *cur,
		   size_t cur_len, const void **val, size_t *vlen, void *ctx)
{
	struct comp *c = ctx;
	struct ent *e = ent_of(c->id, c->v);
	c->calls++;
	/* the caller's key, the current value, nothing set yet */
	CHECK_EQ(klen, c->kl);
	CHECK(klen == 0 || memcmp(key, c->kb, klen) == 0);
	CHECK(*val == NULL && *vlen == 0);
	if (e->present) {
		CHECK(cur != NULL || e->vlen == 0);
		CHECK_EQ(cur_len, e->vlen);
		check_val(cur, e->serial, e->vlen);
	} else {
		CHECK(cur == NULL && cur_len == 0);
	}
	comp_inside(c);
	if ((c->f & 0x80) && c->ok_into_cur) {
		*val = cur;
		*vlen = cur_len;
	} else if (c->f & 0x40) {
		*val = S.vs ? c->vb : NULL;
		*vlen = S.vs ? S.vs + 1 : 1 + c->vl;
	} else {
		*val = c->vl || !(c->f & 0x10) ? c->vb : NULL;
		*vlen = c->vl;
	}
	return comp_act(c);
}

static int comp_typed(uint32_t k, const uint64_t *cur, uint64_t *out, void *ctx)
{
	struct comp *c = ctx;
	struct ent *e = ent_of(c->id, c->v);
	c->calls++;
	CHECK(memcmp(&k, c->kb, 4) == 0);
	if (e->present) {
		CHECK(cur != NULL);
		CHECK_EQ(e->vlen, 8);
		check_val(cur, e->serial, 8);
		CHECK(*out == *cur);
	} else {
		CHECK(cur == NULL);
		CHECK_EQ(*out, 0);
	}
	comp_inside(c);
	memcpy(out, c->vb, 8);
	return comp_act(c);
}

static void op_compute(unsigned id, unsigned v, unsigned f, unsigned lb)
{
	struct comp c;
	struct ent *e = ent_of(id, v);
	bool typed = S.t && (f & 0x20);
	c.id = id;
	c.v = v;
	c.f = typed ? f & ~0xc0u : f;
	c.kl = key_bytes(id, v, c.kb);
	c.vl = pick_vlen(lb);
	c.calls = 0;
	c.ok_into_cur = !S.vdtor && e->present;
	uint32_t s = new_serial(c.vl);
	val_bytes(s, c.vl, c.vb);
	bool into_cur = (c.f & 0x80) && c.ok_into_cur;
	long f0 = A.failed;
	int rc;
	S.work++;
	arm();
	if (typed) {
		uint32_t tk;
		memcpy(&tk, c.kb, 4);
		rc = fz_update(S.t, tk, comp_typed, &c);
	} else {
		rc = cmap_compute(S.m, c.kb, c.kl, comp_fn, &c);
	}
	disarm();
	bool failed = A.failed != f0;
	/* single-threaded: fn runs once, unless joining or reserving failed */
	CHECK(c.calls == 1 || (c.calls == 0 && rc == CMAP_ENOMEM));
	int act = comp_act(&c), want;
	bool put = false, drop = false;
	if (f & 4 && !typed) {
		want = CMAP_EINVAL;
	} else if (typed && (f & 4)) {
		want = CMAP_EINVAL;
	} else if (act == CMAP_COMPUTE_KEEP) {
		want = CMAP_UNCHANGED;
	} else if (act == CMAP_COMPUTE_ABORT) {
		want = CMAP_ABORTED;
	} else if (act == CMAP_COMPUTE_REMOVE) {
		want = e->present ? CMAP_REMOVED : CMAP_UNCHANGED;
		drop = e->present;
	} else if ((c.f & 0x40) && !into_cur) {
		want = S.vs ? CMAP_EVALLEN : CMAP_EINVAL;
	} else {
		want = e->present ? CMAP_REPLACED : CMAP_OK;
		put = true;
	}
	if (rc == CMAP_ENOMEM) {
		CHECK(failed);
		want = CMAP_ENOMEM;
		put = drop = false;
	}
	CHECK_EQ(rc, want);
	if (put && into_cur) {
		/* the same bytes again (no value destructor to account
		 * for): the model does not change */
		S.sst[s] = V_DEAD;
	} else if (put) {
		if (e->present)
			val_leave(e->serial, false);
		model_put(e, id, v, s, c.vl);
	} else {
		S.sst[s] = V_DEAD;
	}
	if (drop)
		model_drop(e, id);
	verify_key(id, v);
	if (drop && failed)
		heal(id, v);
}

/* ---- iteration
 * ----------------------------------------------------------------
 */

/* One walk (cmap_foreach, or a cursor to its end): the model when it
 * started, and what it visited. */
struct walk {
	bool nested, between, typed;
	unsigned nest_every;
	long calls, stop_at, stop_gap;
	bool dirty; /* an operation ran during the walk */
	unsigned nstop;
	uint64_t stop_h[8];
	uint8_t present0[NSLOTS], visits[NSLOTS];
	uint32_t serial0[NSLOTS], rem0[NSLOTS];
};

/* Whether this map's keys can share a full 64-bit hash (the colliding
 * hasher; the masked one without the masked equality: its variants are
 * different keys), and that hash. */
static bool runs_possible(void)
{
	return S.cfg.hash == h_collide ||
	       (S.cfg.hash == h_masked && S.cfg.eq != eq_masked);
}

static uint64_t full_hash(const void *key, size_t klen)
{
	return S.cfg.hash(key, klen, S.cfg.seed);
}

static void walk_start(struct walk *w)
{
	for (size_t i = 0; i < NSLOTS; i++) {
		w->present0[i] = S.model[i].present;
		w->serial0[i] = S.model[i].serial;
		w->rem0[i] = S.removals[i];
		w->visits[i] = 0;
	}
	w->calls = 0;
	w->dirty = false;
	w->nstop = 0;
}

static int walk_cb(const void *key, size_t klen, const void *val, size_t vlen,
		   void *ctx)
{
	struct walk *w = ctx;
	unsigned id, v;
	unsigned char kc[KBUF], vc[VBUF];
	CHECK(key_decode(key, klen, &id, &v));
	struct ent *e = ent_of(id, v);
	size_t slot = (size_t)(e - S.model);
	CHECK_EQ(w->visits[slot], 0); /* never a key twice */
	w->visits[slot]++;
	w->calls++;
	if (S.ks)
		CHECK_EQ(klen, S.ks);
	if (S.vs)
		CHECK_EQ(vlen, S.vs);
	bool same = w->present0[slot] && e->present &&
		    e->serial == w->serial0[slot] &&
		    S.removals[slot] == w->rem0[slot];
	if (same) {
		CHECK_EQ(canon(id, v), e->variant);
		CHECK_EQ(vlen, e->vlen);
		check_val(val, e->serial, e->vlen);
	} else {
		CHECK(w->dirty); /* changed only by an operation meanwhile */
	}
	memcpy(kc, key, klen);
	if (vlen)
		memcpy(vc, val, vlen);
	CHECK(S.vdepth < 4);
	int d = S.vdepth++;
	S.vid[d] = ++S.visit_seq;
	S.vkey[d] = key;
	S.vserial[d] = UINT32_MAX;
	if (vlen >= 4)
		memcpy(&S.vserial[d], val, 4);
	if (w->nested && S.depth < 2 && in_n && w->calls % w->nest_every == 0) {
		/* Any operation but cmap_free and cmap_thread_exit, writes
		 * to this map included. */
		w->dirty = true;
		S.depth++;
		(void)run_op();
		S.depth--;
	}
	/* Borrowed key and value stay valid and unchanged until we return. */
	CHECK(klen == 0 || memcmp(key, kc, klen) == 0);
	CHECK(vlen == 0 || memcmp(val, vc, vlen) == 0);
	S.vdepth--;
	if (w->stop_at && w->calls == w->stop_at) {
		if (runs_possible() && w->nstop < 8)
			w->stop_h[w->nstop++] = full_hash(key, klen);
		else if (runs_possible())
			w->dirty = true; /* too many to track: no full check */
		w->stop_at = w->stop_gap ? w->stop_at + w->stop_gap : 0;
		return 1;
	}
	return 0;
}

static int walk_typed(uint32_t k, uint64_t v, void *ctx)
{
	return walk_cb(&k, 4, &v, 8, ctx);
}

/* After a whole walk: each key present throughout visited once (a stopped
 * cursor may skip the rest of a run of keys sharing one full hash); with
 * no operation during the walk, exactly the model's keys. */
static void walk_end(struct walk *w)
{
	size_t present = 0;
	for (unsigned i = 0; i < S.nids * NVAR; i++) {
		struct ent *e = &S.model[i];
		present += e->present;
		if (!w->present0[i] || !e->present ||
		    S.removals[i] != w->rem0[i] || w->visits[i] ||
		    w->nstop == 8)
			continue;
		bool skipped = false;
		unsigned char kb[KBUF];
		size_t kl = key_bytes(i / NVAR, e->variant, kb);
		for (unsigned j = 0; j < w->nstop; j++)
			skipped |= full_hash(kb, kl) == w->stop_h[j];
		if (!skipped)
			fprintf(stderr, "walk missed key %u/%u\n", i / NVAR,
				e->variant);
		CHECK(skipped);
	}
	CHECK_EQ(present, S.count);
	if (!w->dirty && !w->nstop)
		CHECK_EQ(w->calls, S.count);
}

/* cmap_foreach or a cursor walk.  f: bit 0 cursor, 1 nested operations
 * in the visitor, 2 operations between cursor slices, 3 stop the walk,
 * 4 typed foreach; then the slice size, the stop pattern. */
static void op_walk(unsigned f)
{
	struct walk *w = malloc(sizeof *w);
	CHECK(w != NULL);
	bool cursor = f & 1;
	size_t max = 1 + rd() % 16;
	unsigned sb = rd();
	w->nested = f & 2;
	w->between = cursor && (f & 4);
	w->typed = S.t && !cursor && (f & 0x10);
	w->nest_every = 1 + (sb >> 5);
	walk_start(w);
	w->stop_at = (f & 8) ? 1 + (sb & 7) : 0;
	w->stop_gap = cursor && (f & 8) ? (sb >> 3) & 3 : 0;
	S.work += (long)S.count + 1;
	bool whole = true;
	if (!cursor) {
		long f0 = A.failed;
		arm();
		long rc = w->typed ? fz_foreach(S.t, walk_typed, w)
				   : cmap_foreach(S.m, walk_cb, w);
		disarm();
		if (rc == CMAP_ENOMEM) {
			CHECK(A.failed != f0);
			CHECK_EQ(w->calls, 0);
			whole = false;
		} else {
			CHECK_EQ(rc, w->calls);
			whole = !(f & 8) || w->stop_at != 0;
		}
	} else {
		cmap_cursor_t c;
		cmap_cursor_init(&c);
		for (int round = 0;; round++) {
			long calls0 = w->calls, f0 = A.failed;
			CHECK(round < 100000);
			arm();
			long rc = cmap_cursor_next(S.m, &c, max, walk_cb, w);
			disarm();
			if (rc == CMAP_ENOMEM) {
				CHECK(A.failed != f0);
				CHECK_EQ(w->calls, calls0);
				whole = false; /* a cursor may be abandoned */
				break;
			}
			CHECK_EQ(rc, w->calls - calls0);
			CHECK((size_t)rc <= max || runs_possible());
			if (rc == 0) {
				CHECK(c.done);
				CHECK_EQ(
				    cmap_cursor_next(S.m, &c, max, walk_cb, w),
				    0);
				break;
			}
			if (w->between && in_n) {
				w->dirty = true;
				S.depth++;
				(void)run_op();
				S.depth--;
			}
		}
	}
	if (whole)
		walk_end(w);
	CHECK_EQ(cmap_len(S.m), S.count);
	free(w);
}

/* cmap_retain with a predicate from the input, or cmap_clear.  f: bits
 * 0-1 which keys the predicate keeps (by id parity, none, all, by
 * serial), 2 it reads the map and tries writes, 3 cmap_clear instead. */
struct ret {
	unsigned f, r;
	long calls, dropped;
	uint8_t visits[NSLOTS];
	int last; /* slot of the last entry dropped, or -1 */
	unsigned last_id;
};

static int ret_pred(const void *key, size_t klen, const void *val, size_t vlen,
		    void *ctx)
{
	struct ret *x = ctx;
	unsigned id, v;
	CHECK(key_decode(key, klen, &id, &v));
	struct ent *e = ent_of(id, v);
	size_t slot = (size_t)(e - S.model);
	CHECK_EQ(x->visits[slot], 0);
	x->visits[slot]++;
	x->calls++;
	CHECK(e->present);
	CHECK_EQ(canon(id, v), e->variant);
	CHECK_EQ(vlen, e->vlen);
	check_val(val, e->serial, e->vlen);
	CHECK(S.vdepth < 4);
	int d = S.vdepth++;
	S.vid[d] = ++S.visit_seq;
	S.vkey[d] = key;
	S.vserial[d] = vlen >= 4 ? e->serial : UINT32_MAX;
	if (x->f & 4) {
		long f0 = A.failed;
		unsigned char b[VBUF];
		size_t len = sizeof b;
		int rc = cmap_get(S.m, key, klen, b, &len);
		CHECK(rc == CMAP_OK || (rc == CMAP_ENOMEM && A.failed != f0));
		memset(b, 0xe0, sizeof b);
		rc = cmap_set(S.m, key, klen, b, S.vs ? S.vs : 3, NULL, NULL);
		CHECK(rc == CMAP_EINVAL ||
		      (rc == CMAP_ENOMEM && A.failed != f0));
		rc = cmap_remove_if(S.m, key, klen, val, vlen);
		CHECK(rc == CMAP_EINVAL ||
		      (rc == CMAP_ENOMEM && A.failed != f0));
		long n = cmap_retain(S.m, ret_pred, ctx);
		CHECK(n == CMAP_EINVAL || (n == CMAP_ENOMEM && A.failed != f0));
		batch_refused(key, f0);
	}
	S.vdepth--;
	bool keep;
	switch (x->f & 3) {
	case 0:
		keep = (id ^ x->r) & 1;
		break;
	case 1:
		keep = false;
		break;
	case 2:
		keep = true;
		break;
	default:
		keep = (e->serial + x->r) % 3 != 0;
		break;
	}
	if (!keep) {
		/* The removal follows at once; its destructors may run
		 * before cmap_retain returns. */
		model_drop(e, id);
		x->dropped++;
		x->last = (int)slot;
		x->last_id = id;
	}
	return keep;
}

static void op_retain(unsigned f)
{
	struct ret *x = malloc(sizeof *x);
	CHECK(x != NULL);
	memset(x, 0, sizeof *x);
	x->f = f;
	x->r = rd();
	x->last = -1;
	bool clear = f & 8;
	long count0 = (long)S.count;
	S.work += count0 + 1;
	if (clear) {
		/* cmap_clear removes them all; destructors may run before
		 * it returns */
		for (unsigned i = 0; i < NSLOTS; i++)
			if (S.model[i].present) {
				model_drop(&S.model[i], i / NVAR);
				x->visits[i] = 1;
			}
	}
	long f0 = A.failed;
	arm();
	long rc = clear ? cmap_clear(S.m) : cmap_retain(S.m, ret_pred, x);
	disarm();
	bool failed = A.failed != f0;
	if (rc == CMAP_ENOMEM) {
		CHECK(failed);
		if (clear) {
			/* those still in the map were not removed */
			A.suspend++;
			for (unsigned i = 0; i < NSLOTS; i++) {
				if (!x->visits[i])
					continue;
				struct ent *e = &S.model[i];
				unsigned char kb[KBUF];
				size_t kl = key_bytes(i / NVAR, e->variant, kb);
				int g = cmap_get(S.m, kb, kl, NULL, NULL);
				CHECK(g == CMAP_OK || g == CMAP_NOT_FOUND);
				if (g == CMAP_OK) {
					model_undrop(e, i / NVAR);
					x->visits[i] = 0;
				}
			}
			A.suspend--;
		} else if (x->calls) {
			/* the last removal failed and the walk stopped */
			CHECK(x->last >= 0);
			model_undrop(&S.model[x->last], x->last_id);
			x->visits[x->last] = 0;
		}
	} else {
		CHECK_EQ(rc, clear ? count0 : x->dropped);
		if (!clear)
			CHECK_EQ(x->calls, count0); /* each entry once */
		CHECK_EQ(S.count, (size_t)count0 - (size_t)rc);
	}
	verify_all();
	if (failed) {
		/* removals that absorbed a failure may have skipped their
		 * contraction */
		for (unsigned i = 0; i < NSLOTS; i++)
			if (x->visits[i] && !S.model[i].present)
				heal_path(i / NVAR, S.model[i].variant);
		validate_healed();
	}
	free(x);
}

enum {
	OP_SET,
	OP_GET,
	OP_REMOVE,
	OP_GET_WITH,
	OP_SET2,
	OP_REMOVE2,
	OP_BATCH,
	OP_LEN,
	OP_VALIDATE,
	OP_DEFER,
	OP_COLLECT,
	OP_DRAIN,
	OP_THREAD_EXIT,
	OP_INVALID,
	OP_BULK_SET,
	OP_BULK_REMOVE,
	OP_CHECK_ALL,
	OP_NEXT_MAP,
	OP_MISC,
	OP_BAD_CONFIG,
	OP_THREAD,
	OP_INSERT,
	OP_REPLACE,
	OP_CAS,
	OP_REMOVE_IF,
	OP_COMPUTE,
	OP_COMPUTE2,
	OP_WALK,
	OP_RETAIN,
	OP_CURSOR,
	OP_WBATCH,
	OP_WBATCH2,
	OP_COUNT
};

static void *thread_main(void *arg)
{
	(void)arg;
	(void)run_op();
	return NULL;
}

/* One operation from the input; returns OP_NEXT_MAP to end the map. */
static int run_op(void)
{
	unsigned b = rd(), kind = (b & 31) % OP_COUNT, id, v;
	A.mode = S.hooks ? b >> 5 : 0;
	if (A.mode == 4)
		A.k = 1 + rd() % 16;
	if (trace)
		fprintf(stderr, "%*sop %u, failures %u (%zu entries)\n",
			2 * S.depth, "", kind, A.mode, S.count);
	if (S.depth > 0 &&
	    (kind == OP_NEXT_MAP || kind == OP_THREAD_EXIT || kind == OP_DRAIN))
		kind = OP_COLLECT; /* not allowed inside a callback */
	switch (kind) {
	case OP_SET:
	case OP_SET2:
		read_key(&id, &v);
		b = rd();
		op_set(id, v, b, rd());
		break;
	case OP_GET:
		read_key(&id, &v);
		op_get(id, v, rd());
		break;
	case OP_REMOVE:
	case OP_REMOVE2:
		read_key(&id, &v);
		op_remove(id, v, rd());
		break;
	case OP_GET_WITH:
		read_key(&id, &v);
		op_get_with(id, v, rd());
		break;
	case OP_BATCH:
		op_batch(rd());
		break;
	case OP_LEN:
		CHECK_EQ(cmap_len(S.m), S.count);
		if (S.t)
			CHECK_EQ(fz_len(S.t), S.count);
		break;
	case OP_VALIDATE:
		op_validate(rd());
		break;
	case OP_DEFER: {
		long f0 = A.failed;
		arm();
		int rc = defer_token();
		disarm();
		CHECK(rc == CMAP_OK || rc == -100 ||
		      (rc == CMAP_ENOMEM && A.failed != f0));
		break;
	}
	case OP_COLLECT:
		S.in_collect += !S.vdepth;
		arm();
		(void)cmap_collect(S.m);
		disarm();
		S.in_collect -= !S.vdepth;
		CHECK_EQ(cmap_len(S.m), S.count);
		break;
	case OP_DRAIN:
		op_drain();
		break;
	case OP_THREAD_EXIT:
		cmap_thread_exit();
		CHECK_EQ(cmap_len(S.m), S.count);
		break;
	case OP_INVALID:
		op_invalid(rd());
		break;
	case OP_BULK_SET:
	case OP_BULK_REMOVE: {
		unsigned n = 1 + rd() % 64, f = rd(), lb = rd();
		read_key(&id, &v);
		for (unsigned i = 0; i < n && S.work < MAX_WORK; i++) {
			unsigned k = (id + i) % S.nids;
			if (kind == OP_BULK_SET)
				op_set(k, v, f & ~1u, lb + i * 7);
			else
				op_remove(k, v, f & ~1u);
		}
		break;
	}
	case OP_CHECK_ALL:
		verify_all();
		break;
	case OP_NEXT_MAP:
		return OP_NEXT_MAP;
	case OP_THREAD: {
		/* The next operation in a thread of its own, which then exits
		 * with its garbage (reaped by later collects, or cmap_free):
		 * more records, released ones, reuse.  Joined at once, so the
		 * model stays sequential; from inside a get_with callback it
		 * runs while this thread is in an operation. */
		pthread_t th;
		if (S.in_thread)
			break;
		S.in_thread = S.threaded = true;
		S.depth++;
		CHECK(pthread_create(&th, NULL, thread_main, NULL) == 0);
		CHECK(pthread_join(th, NULL) == 0);
		S.depth--;
		S.in_thread = false;
		CHECK_EQ(cmap_len(S.m), S.count);
		break;
	}
	case OP_MISC:
		op_misc();
		break;
	case OP_INSERT:
	case OP_REPLACE:
	case OP_CAS:
	case OP_REMOVE_IF: {
		read_key(&id, &v);
		unsigned f = rd(), lb = rd(), eb = rd();
		op_rmw(kind - OP_INSERT, id, v, f, lb, eb, rd());
		break;
	}
	case OP_COMPUTE:
	case OP_COMPUTE2:
		read_key(&id, &v);
		b = rd();
		op_compute(id, v, b, rd());
		break;
	case OP_WALK:
		op_walk(rd() & ~1u);
		break;
	case OP_CURSOR:
		op_walk(rd() | 1u);
		break;
	case OP_RETAIN:
		op_retain(rd());
		break;
	case OP_WBATCH:
	case OP_WBATCH2:
		op_wbatch(rd());
		break;
	default:
		op_bad_config(rd());
		break;
	}
	A.mode = 0;
	return kind;
}

/* ---- a map's life -----------------------------------------------------------
 */

static void start_map(void)
{
	static const size_t kss[4] = {0, 4, 8, 16}, vss[4] = {0, 8, 24, 0};
	static const unsigned every[8] = {0, 0, 0, 0, 0, 3, 11, 37};
	unsigned c0 = rd(), c1 = rd(), c2 = rd(), c3 = rd();
	cmap_config_t c;
	cmap_config_init(&c);
	S.ks = c.key_size = kss[c0 & 3];
	S.vs = c.val_size = vss[(c0 >> 2) & 3];
	S.kdtor = c1 & 1;
	S.vdtor = c1 & 2;
	S.dcalls = c1 & 4;
	S.masked = ((c1 >> 3) & 3) >= 2;
	S.hooks = c1 & 0x20;
	S.nids = 2u << (c2 & 7);
	g_ncollide = 1 + ((c2 >> 3) & 3);
	switch ((c0 >> 4) & 7) {
	case 1:
		break;
	case 2:
		c.hash = S.ks == 4   ? cmap_hash_u32
			 : S.ks == 8 ? cmap_hash_u64
				     : cmap_hash_city;
		break;
	case 3:
		c.hash = cmap_hash_city;
		break;
	case 4:
	case 5:
		c.hash = h_collide;
		break;
	case 6:
		c.hash = h_masked;
		break;
	default:
		c.flags |= CMAP_FIXED_SEED;
		break;
	}
	if (S.masked && c.hash != h_collide)
		c.hash = h_masked; /* equal keys must hash alike */
	if (c.hash == h_collide || c.hash == h_masked || (c3 & 1))
		c.flags |= CMAP_FIXED_SEED;
	c.seed = c3 * 0x9e3779b97f4a7c15ull;
	c.eq = S.masked ? eq_masked : ((c1 >> 3) & 3) == 1 ? eq_exact : NULL;
	c.key_dtor = S.kdtor ? key_dtor : NULL;
	c.val_dtor = S.vdtor ? val_dtor : NULL;
	c.dtor_ctx = &S;
	if (S.hooks) {
		c.alloc = h_alloc;
		c.free = h_free;
		c.alloc_ctx = &A;
		A.every = every[c2 >> 5];
	}
	if (c0 & 0x80)
		c.flags |= CMAP_NO_POOL;
	if (c3 & 0x40)
		c.flags |= CMAP_COPY_ON_WRITE;
	if (c1 & 0x40)
		c.size = 0; /* the 0.2 layout */
	if (trace)
		fprintf(stderr,
			"map: key %zu value %zu hash %u eq %u dtors %u%u%u "
			"hooks %d every %u pool %d size %zu ids %u collide "
			"%u cow %d\n",
			S.ks, S.vs, (c0 >> 4) & 7, (c1 >> 3) & 3, S.kdtor,
			S.vdtor, S.dcalls, S.hooks, A.every,
			!(c.flags & CMAP_NO_POOL), c.size, S.nids, g_ncollide,
			!!(c.flags & CMAP_COPY_ON_WRITE));
	S.cfg = c;
	S.cfg.size = sizeof c;
	S.t = NULL;
	if ((c1 & 0x80) && S.ks == 4 && S.vs == 8 && !S.hooks && !S.kdtor &&
	    !S.vdtor && !c.eq &&
	    (!c.hash || c.hash == cmap_hash_u32 || c.hash == cmap_hash_city)) {
		CHECK_EQ(fz_new(&S.t, c.hash), CMAP_OK);
		S.m = fz_map(S.t);
		return;
	}
	S.m = NULL;
	if (S.hooks && (c3 & 0x80))
		A.fail_at = A.calls + 1 + (c3 & 3);
	long f0 = A.failed;
	int rc = cmap_new(&S.m, &c);
	A.fail_at = 0;
	if (rc == CMAP_ENOMEM) {
		CHECK(A.failed != f0);
		CHECK(S.m == NULL);
		CHECK_EQ(A.live, 0);
		A.suspend++;
		rc = cmap_new(&S.m, &c);
		A.suspend--;
	}
	CHECK_EQ(rc, CMAP_OK);
	CHECK(S.m != NULL);
}

static void end_map(void)
{
	A.suspend++;
	verify_all();
	validate_ok();
	S.in_free = 1;
	if (S.t)
		fz_free(S.t);
	else
		cmap_free(S.m);
	S.in_free = 0;
	A.suspend--;
	/* every key and value destroyed exactly once, every deferral run,
	 * every block freed */
	if (S.vdtor) {
		CHECK_EQ(S.vretired, 0);
		CHECK_EQ(S.vfreed_live, S.count);
		for (int i = 0; i < 4; i++)
			CHECK(S.tiny_live[i] == 0 && S.tiny_ret[i] == 0);
	}
	if (S.kdtor) {
		CHECK_EQ(S.kretired_total, 0);
		CHECK_EQ(S.kfreed_live, S.count);
	}
	CHECK_EQ(S.tok_pending, 0);
	CHECK_EQ(A.live, 0);
	S.m = NULL;
	S.t = NULL;
	memset(S.model, 0, sizeof S.model);
	memset(S.kretired, 0, sizeof S.kretired);
	memset(S.removals, 0, sizeof S.removals);
	memset(S.tiny_live, 0, sizeof S.tiny_live);
	memset(S.tiny_ret, 0, sizeof S.tiny_ret);
	S.count = 0;
	S.vretired = S.vfreed_live = S.kretired_total = S.kfreed_live = 0;
	S.ntok = 0;
	S.threaded = false;
	S.last_epoch = 0;
	A.every = 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	in_p = data;
	in_n = size;
	trace = getenv("CMAP_FUZZ_TRACE") != NULL;
	memset(S.sst, 0, S.nserial);
	S.nserial = 0;
	S.work = 0;
	start_map();
	while (in_n && S.work < MAX_WORK && S.nserial + 64 < MAX_SERIAL) {
		if (run_op() == OP_NEXT_MAP) {
			end_map();
			start_map();
		}
	}
	end_map();
	return 0;
}
