/*
 * Allocation failure injection through the allocator hooks.  The hooks
 * check what the header promises of the library (alignment, free with the
 * allocation's own size, no foreign or double frees) and count outstanding
 * allocations and bytes, which must be zero after cmap_free.
 *
 *  - cmap_new failing at each of its allocations in turn: CMAP_ENOMEM,
 *    nothing leaked.
 *  - With CMAP_NO_POOL (every node through the hooks), on maps preloaded
 *    with a few thousand entries (u32 -> u64 and variable-length): for each
 *    operation of a mixed, a remove-heavy and an insert-heavy phase, fail
 *    its 1st, 2nd, 3rd ... allocation until it needs fewer.  A failed
 *    operation returns CMAP_ENOMEM only if an allocation failed, and leaves
 *    the map exactly as it was (reference comparison, cmap_validate).  A
 *    remove that succeeds although an allocation failed (its contraction
 *    was skipped, which is allowed) is undone and retried with the next k.
 *    The operations include cmap_insert, cmap_replace, cmap_cas,
 *    cmap_remove_if and cmap_compute (every answer; its function runs
 *    once), whose drops may also skip a contraction.
 *  - Batches (CMAP_NO_POOL, u32 -> u64): cmap_set_batch, cmap_remove_batch
 *    and cmap_insert_batch of up to 200 keys (repeats, one key many times,
 *    keys sharing a root slot so that insert_batch builds subtrees), each
 *    failing its 1st, 2nd ... allocation until one runs untouched, the map
 *    put back after each: every status honest (CMAP_ENOMEM keys unchanged,
 *    the others applied as the single calls in order), the count returned,
 *    a whole-call CMAP_ENOMEM (joining, scratch) changing nothing, the map
 *    validating (after healing removes that absorbed a failure).
 *  - cmap_foreach, cmap_retain and cmap_clear the same way (also from a
 *    new thread, whose join fails): CMAP_ENOMEM only when an allocation
 *    failed, entries removed before it stay removed, the rest unchanged.
 *  - Random failures (each allocation fails with probability p): every
 *    operation either matches the reference or returns CMAP_ENOMEM and
 *    changed nothing.
 *  - The same with the node pools (chunk allocations fail).
 */
#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#include "cmap.h"
#include "testutil.h"

/* ---- the allocator ------------------------------------------------------- */

#define TAB_BITS 18
#define TAB_SIZE ((size_t)1 << TAB_BITS)

struct tslot {
	void *p;
	size_t size;
};

struct actx {
	long live;	   /* outstanding allocations */
	size_t live_bytes; /* outstanding bytes */
	long calls;	   /* allocation attempts */
	long fail_at;	   /* fail the attempt with this number (0: none) */
	uint32_t fail_ppm; /* else fail at random, parts per million */
	uint64_t rng;
	long failed; /* injected failures so far */
	struct tslot *tab;
};

static size_t home(const void *p)
{
	return (size_t)mix((uint64_t)(uintptr_t)p) & (TAB_SIZE - 1);
}

static void tab_insert(struct actx *a, void *p, size_t size)
{
	size_t i = home(p);
	while (a->tab[i].p) {
		CHECK(a->tab[i].p != p);
		i = (i + 1) & (TAB_SIZE - 1);
	}
	a->tab[i].p = p;
	a->tab[i].size = size;
}

/* Remove p; returns its recorded size.  p must be live. */
static size_t tab_remove(struct actx *a, void *p)
{
	size_t i = home(p);
	while (a->tab[i].p != p) {
		CHECK(a->tab[i].p != NULL); /* freeing what we never gave */
		i = (i + 1) & (TAB_SIZE - 1);
	}
	size_t size = a->tab[i].size;
	/* Backward-shift deletion keeps every probe chain intact. */
	for (size_t j = i;;) {
		j = (j + 1) & (TAB_SIZE - 1);
		if (!a->tab[j].p)
			break;
		size_t k = home(a->tab[j].p);
		bool movable = i <= j ? (k <= i || k > j) : (k <= i && k > j);
		if (movable) {
			a->tab[i] = a->tab[j];
			i = j;
		}
	}
	a->tab[i].p = NULL;
	return size;
}

static void *t_alloc(void *ctx, size_t size, size_t align)
{
	struct actx *a = ctx;
	long call = ++a->calls;
	/* The header: a power of two, at most 2 MiB. */
	CHECK(align != 0 && (align & (align - 1)) == 0);
	CHECK(align <= ((size_t)2 << 20));
	if (a->fail_at && call == a->fail_at) {
		a->failed++;
		return NULL;
	}
	if (a->fail_ppm && rng_next(&a->rng) % 1000000 < a->fail_ppm) {
		a->failed++;
		return NULL;
	}
	void *p = NULL;
	size_t al = align < sizeof(void *) ? sizeof(void *) : align;
	CHECK(posix_memalign(&p, al, size ? size : 1) == 0);
	CHECK(((uintptr_t)p & (align - 1)) == 0);
	memset(p, 0xa5, size); /* the library must not expect zeroed memory */
	CHECK((size_t)a->live < TAB_SIZE / 2);
	tab_insert(a, p, size);
	a->live++;
	a->live_bytes += size;
	return p;
}

static void t_free(void *ctx, void *p, size_t size)
{
	struct actx *a = ctx;
	if (!p)
		return;
	size_t had = tab_remove(a, p);
	CHECK_EQ(size, had); /* free receives the allocation's size */
	CHECK(a->live > 0 && a->live_bytes >= size);
	a->live--;
	a->live_bytes -= size;
	memset(p, 0xdd, size);
	free(p);
}

static void actx_init(struct actx *a, uint64_t seed)
{
	memset(a, 0, sizeof *a);
	a->rng = seed;
	a->tab = calloc(TAB_SIZE, sizeof *a->tab);
	CHECK(a->tab != NULL);
}

static void actx_done(struct actx *a)
{
	CHECK_EQ(a->live, 0);
	CHECK_EQ(a->live_bytes, 0);
	for (size_t i = 0; i < TAB_SIZE; i++)
		CHECK(a->tab[i].p == NULL);
	free(a->tab);
}

static cmap_t *make_map(struct actx *a, bool var, unsigned flags)
{
	cmap_config_t c = CMAP_CONFIG_INIT;
	c.key_size = var ? 0 : 4;
	c.val_size = var ? 0 : 8;
	c.hash = var ? NULL : cmap_hash_u32;
	c.flags = flags | CMAP_FIXED_SEED;
	c.seed = 77;
	c.alloc = t_alloc;
	c.free = t_free;
	c.alloc_ctx = a;
	cmap_t *m = NULL;
	CHECK_EQ(cmap_new(&m, &c), CMAP_OK);
	CHECK(m != NULL);
	return m;
}

/* ---- cmap_new failing ------------------------------------------------------
 */

static void test_new_failures(void)
{
	for (int var = 0; var < 2; var++) {
		for (int pooled = 0; pooled < 2; pooled++) {
			bool ok = false;
			for (long k = 1; k < 100 && !ok; k++) {
				struct actx a;
				actx_init(&a, 1);
				a.fail_at = k;
				cmap_config_t c = CMAP_CONFIG_INIT;
				c.key_size = var ? 0 : 4;
				c.val_size = var ? 0 : 8;
				c.flags = pooled ? 0 : CMAP_NO_POOL;
				c.alloc = t_alloc;
				c.free = t_free;
				c.alloc_ctx = &a;
				cmap_t *m = NULL;
				int rc = cmap_new(&m, &c);
				if (rc == CMAP_ENOMEM) {
					CHECK(m == NULL);
					CHECK_EQ(a.failed, 1);
				} else {
					CHECK_EQ(rc, CMAP_OK);
					CHECK(m != NULL);
					CHECK(k >
					      1); /* it allocates something */
					CHECK_EQ(a.failed, 0);
					a.fail_at = 0;
					uint32_t key = 1;
					uint64_t v = 2;
					CHECK_EQ(cmap_set(m, &key, 4, &v, 8,
							  NULL, NULL),
						 CMAP_OK);
					CHECK_EQ(cmap_len(m), 1);
					CHECK_EQ(cmap_validate(m, NULL),
						 CMAP_OK);
					cmap_free(m);
					ok = true;
				}
				CHECK_EQ(a.live, 0);
				actx_done(&a);
			}
			CHECK(ok);
		}
	}
}

/* ---- reference model ----------------------------------------------------- */

#define SPACE 4000

enum {
	OP_SET,
	OP_REMOVE,
	OP_GET,
	OP_GET_WITH,
	OP_INSERT,
	OP_REPLACE,
	OP_CAS,
	OP_REMOVE_IF,
	OP_COMPUTE
};

struct env {
	cmap_t *m;
	struct actx *a;
	bool var;
	unsigned char has[SPACE];
	uint64_t ver[SPACE];
	size_t count;
	uint64_t next_ver;
	uint64_t rng;
	long nomem, absorbed, ok_ops;
	long nomem_kind[OP_COMPUTE + 1]; /* ENOMEM per operation kind */
};

static size_t key_of(bool var, uint32_t id, unsigned char *b)
{
	memcpy(b, &id, 4);
	if (!var)
		return 4;
	size_t n = 4 + id % 21; /* 4..24 bytes */
	memset(b + 4, 'k' + (int)(id % 7), n - 4);
	return n;
}

static size_t val_of(bool var, uint32_t id, uint64_t ver, unsigned char *b)
{
	uint64_t x = mix(((uint64_t)id << 40) ^ ver);
	if (!var) {
		memcpy(b, &x, 8);
		return 8;
	}
	size_t n = (size_t)(x >> 58) % 41; /* 0..40 bytes */
	for (size_t j = 0; j < n; j++)
		b[j] = (unsigned char)((x >> (8 * (j % 8))) + j);
	return n;
}

/* The map holds exactly the reference's entries and, if validate is set,
 * cmap_validate accepts it.  Runs with failure injection off. */
static void check_map(struct env *e, bool validate)
{
	long fail_at = e->a->fail_at;
	uint32_t ppm = e->a->fail_ppm;
	e->a->fail_at = 0;
	e->a->fail_ppm = 0;
	unsigned char kb[32], vb[64], want[64];
	size_t n = 0;
	for (uint32_t id = 0; id < SPACE; id++) {
		size_t kl = key_of(e->var, id, kb), len = sizeof vb;
		int rc = cmap_get(e->m, kb, kl, vb, e->var ? &len : NULL);
		if (!e->has[id]) {
			CHECK_EQ(rc, CMAP_NOT_FOUND);
			continue;
		}
		CHECK_EQ(rc, CMAP_OK);
		size_t wl = val_of(e->var, id, e->ver[id], want);
		if (e->var)
			CHECK_EQ(len, wl);
		CHECK(memcmp(vb, want, wl) == 0);
		n++;
	}
	CHECK_EQ(n, e->count);
	CHECK_EQ(cmap_len(e->m), e->count);
	if (validate) {
		cmap_stats_t st;
		CHECK_EQ(cmap_validate(e->m, &st), CMAP_OK);
		CHECK_EQ(st.entries, e->count);
	}
	e->a->fail_at = fail_at;
	e->a->fail_ppm = ppm;
}

static void same(struct env *e)
{
	check_map(e, true);
}

/* The one key an operation touched is as the reference says (cheap). */
static void same_key(struct env *e, uint32_t id)
{
	long fail_at = e->a->fail_at;
	uint32_t ppm = e->a->fail_ppm;
	e->a->fail_at = 0;
	e->a->fail_ppm = 0;
	unsigned char kb[32], vb[64], want[64];
	size_t kl = key_of(e->var, id, kb), len = sizeof vb;
	int rc = cmap_get(e->m, kb, kl, vb, e->var ? &len : NULL);
	if (e->has[id]) {
		CHECK_EQ(rc, CMAP_OK);
		size_t wl = val_of(e->var, id, e->ver[id], want);
		if (e->var)
			CHECK_EQ(len, wl);
		CHECK(memcmp(vb, want, wl) == 0);
	} else {
		CHECK_EQ(rc, CMAP_NOT_FOUND);
	}
	CHECK_EQ(cmap_len(e->m), e->count);
	e->a->fail_at = fail_at;
	e->a->fail_ppm = ppm;
}

struct op {
	int kind;
	uint32_t id;
	uint64_t ver; /* for OP_SET and the other writes */
	bool with_old;
	size_t cap;	  /* capacity of the old/value buffer (var) */
	bool exp_current; /* OP_CAS, OP_REMOVE_IF: expect the current value */
	uint64_t exp_ver; /* else this version's value */
	int act;	  /* OP_COMPUTE: fn's answer */
};

/* Does a drop of an entry succeed while skipping its contraction? */
static bool is_drop(const struct op *o, int rc)
{
	return (o->kind == OP_REMOVE && rc == CMAP_OK) ||
	       (o->kind == OP_REMOVE_IF && rc == CMAP_OK) ||
	       (o->kind == OP_COMPUTE && rc == CMAP_REMOVED);
}

/* A random present id (a scan from a random start), or any id if none. */
static uint32_t pick_present(struct env *e)
{
	uint32_t start = (uint32_t)(rng_next(&e->rng) % SPACE);
	if (e->count == 0)
		return start;
	for (uint32_t i = 0;; i++) {
		uint32_t id = (start + i) % SPACE;
		if (e->has[id])
			return id;
	}
}

static struct op gen_op(struct env *e, unsigned pset, unsigned prem)
{
	struct op o;
	memset(&o, 0, sizeof o);
	uint64_t r = rng_next(&e->rng);
	unsigned p = (unsigned)(r % 100);
	o.kind = p < pset ? OP_SET : p < pset + prem ? OP_REMOVE : OP_GET;
	if (o.kind == OP_GET && (r >> 8) % 4 == 0)
		o.kind = OP_GET_WITH;
	/* Removes mostly hit a present key, so remove phases empty the map;
	 * everything else picks any id. */
	if (o.kind == OP_REMOVE && (r >> 16) % 8 != 0)
		o.id = pick_present(e);
	else
		o.id = (uint32_t)((r >> 32) % SPACE);
	o.ver = ++e->next_ver;
	o.with_old = (r >> 24) % 3 == 0;
	o.cap = (r >> 28) % 4 == 0 ? (size_t)((r >> 40) % 41) : 64;
	/* Half the writes and removes, and some reads, are their
	 * read-modify-write counterparts. */
	uint64_t r2 = rng_next(&e->rng);
	unsigned w = (unsigned)(r2 % 8);
	o.exp_current = (r2 >> 8) % 3 != 0;
	o.exp_ver = e->next_ver + 1 + (r2 >> 16) % 100;
	if (o.kind == OP_SET && w >= 4) {
		static const int k[4] = {OP_INSERT, OP_REPLACE, OP_CAS,
					 OP_COMPUTE};
		o.kind = k[w - 4];
		o.act = CMAP_COMPUTE_SET;
	} else if (o.kind == OP_REMOVE && w >= 4) {
		o.kind = w < 6 ? OP_REMOVE_IF : OP_COMPUTE;
		o.act = CMAP_COMPUTE_REMOVE;
	} else if (o.kind == OP_GET && w >= 6) {
		o.kind = OP_COMPUTE;
		o.act = w == 6 ? CMAP_COMPUTE_KEEP : CMAP_COMPUTE_ABORT;
	}
	return o;
}

static void visit_fn(const void *k, size_t kl, const void *v, size_t vl,
		     void *ctx)
{
	unsigned char *out = ctx; /* [0]: calls, [1]: vlen, [2..]: value */
	(void)k;
	(void)kl;
	CHECK(vl <= 62);
	out[0]++;
	out[1] = (unsigned char)vl;
	if (vl)
		memcpy(out + 2, v, vl);
}

/* A compute function answering ctx's action with ctx's value. */
struct cop {
	int calls, act;
	bool saw;
	const void *val;
	size_t vlen;
};

static int cop_fn(const void *key, size_t klen, const void *cur, size_t cur_len,
		  const void **val, size_t *vlen, void *ctx)
{
	struct cop *c = ctx;
	(void)key;
	(void)klen;
	(void)cur_len;
	c->calls++;
	c->saw = cur != NULL;
	*val = c->val;
	*vlen = c->vlen;
	return c->act;
}

/*
 * Run one operation and check it against the reference, which it updates
 * on success.  CMAP_ENOMEM is accepted only when an allocation failed
 * during the call, and then the touched key and cmap_len must be
 * unchanged.  *absorbed: an allocation failed, yet the call succeeded.
 */
static int run_op(struct env *e, const struct op *o, bool *absorbed)
{
	unsigned char kb[32], vb[64], ob[64], want[64];
	size_t kl = key_of(e->var, o->id, kb);
	bool has = e->has[o->id];
	size_t wl = has ? val_of(e->var, o->id, e->ver[o->id], want) : 0;
	size_t len = o->cap;
	long failed0 = e->a->failed;
	int rc;
	/* OP_CAS, OP_REMOVE_IF: the expected value and whether its bytes
	 * are the current value's (two versions' values may be equal). */
	unsigned char eb[64];
	size_t el = o->exp_current && has
			? val_of(e->var, o->id, e->ver[o->id], eb)
			: val_of(e->var, o->id, o->exp_ver, eb);
	bool eq = has && el == wl && memcmp(eb, want, wl) == 0;
	struct cop c = {0, o->act, false, vb, 0};
	memset(ob, 0x5c, sizeof ob);
	switch (o->kind) {
	case OP_INSERT:
	case OP_REPLACE:
	case OP_CAS: {
		size_t vl = val_of(e->var, o->id, o->ver, vb);
		void *out = o->with_old ? ob : NULL;
		size_t *out_len = o->with_old && e->var ? &len : NULL;
		if (o->kind == OP_INSERT)
			rc = cmap_insert(e->m, kb, kl, vb, vl, out, out_len);
		else if (o->kind == OP_REPLACE)
			rc = cmap_replace(e->m, kb, kl, vb, vl, out, out_len);
		else
			rc = cmap_cas(e->m, kb, kl, eb, el, vb, vl, out,
				      out_len);
		break;
	}
	case OP_REMOVE_IF:
		rc = cmap_remove_if(e->m, kb, kl, eb, el);
		break;
	case OP_COMPUTE:
		c.vlen = val_of(e->var, o->id, o->ver, vb);
		rc = cmap_compute(e->m, kb, kl, cop_fn, &c);
		/* Once, unless memory ran out before fn could run. */
		CHECK(c.calls == 1 || (rc == CMAP_ENOMEM && c.calls == 0));
		CHECK(c.saw == (has && c.calls));
		break;
	case OP_SET: {
		size_t vl = val_of(e->var, o->id, o->ver, vb);
		rc = cmap_set(e->m, kb, kl, vb, vl, o->with_old ? ob : NULL,
			      o->with_old && e->var ? &len : NULL);
		break;
	}
	case OP_REMOVE:
		rc = cmap_remove(e->m, kb, kl, o->with_old ? ob : NULL,
				 o->with_old && e->var ? &len : NULL);
		break;
	case OP_GET:
		rc = cmap_get(e->m, kb, kl, vb, e->var ? &len : NULL);
		break;
	default:
		memset(ob, 0, sizeof ob);
		rc = cmap_get_with(e->m, kb, kl, visit_fn, ob);
		break;
	}
	bool failed = e->a->failed != failed0;
	*absorbed = false;
	if (rc == CMAP_ENOMEM) {
		CHECK(failed); /* ENOMEM only when memory ran out */
		e->nomem++;
		e->nomem_kind[o->kind]++;
		same_key(e, o->id);
		return rc;
	}
	*absorbed = failed;
	e->absorbed += failed;
	e->ok_ops++;
	bool small = e->var && o->cap < wl; /* the buffer is too small */
	switch (o->kind) {
	case OP_INSERT:
		if (!has) {
			CHECK_EQ(rc, CMAP_OK);
			e->has[o->id] = 1;
			e->count++;
			e->ver[o->id] = o->ver;
			break;
		}
		if (o->with_old && small) {
			CHECK_EQ(rc, CMAP_ERANGE);
			CHECK_EQ(len, wl);
			break;
		}
		CHECK_EQ(rc, CMAP_EXISTS);
		if (o->with_old) {
			if (e->var)
				CHECK_EQ(len, wl);
			CHECK(memcmp(ob, want, wl) == 0);
		}
		break;
	case OP_REPLACE:
		if (!has) {
			CHECK_EQ(rc, CMAP_NOT_FOUND);
			break;
		}
		if (o->with_old && small) {
			CHECK_EQ(rc, CMAP_ERANGE);
			CHECK_EQ(len, wl);
			break;
		}
		CHECK_EQ(rc, CMAP_REPLACED);
		if (o->with_old) {
			if (e->var)
				CHECK_EQ(len, wl);
			CHECK(memcmp(ob, want, wl) == 0);
		}
		e->ver[o->id] = o->ver;
		break;
	case OP_CAS:
		if (!has) {
			CHECK_EQ(rc, CMAP_NOT_FOUND);
			break;
		}
		if (eq) {
			CHECK_EQ(rc, CMAP_REPLACED);
			e->ver[o->id] = o->ver;
			break;
		}
		if (o->with_old && small) {
			CHECK_EQ(rc, CMAP_ERANGE);
			CHECK_EQ(len, wl);
			break;
		}
		CHECK_EQ(rc, CMAP_MISMATCH);
		if (o->with_old) {
			if (e->var)
				CHECK_EQ(len, wl);
			CHECK(memcmp(ob, want, wl) == 0);
		}
		break;
	case OP_REMOVE_IF:
		if (!has) {
			CHECK_EQ(rc, CMAP_NOT_FOUND);
			break;
		}
		CHECK_EQ(rc, eq ? CMAP_OK : CMAP_MISMATCH);
		if (eq) {
			e->has[o->id] = 0;
			e->count--;
		}
		break;
	case OP_COMPUTE:
		switch (o->act) {
		case CMAP_COMPUTE_SET:
			CHECK_EQ(rc, has ? CMAP_REPLACED : CMAP_OK);
			if (!has)
				e->count++;
			e->has[o->id] = 1;
			e->ver[o->id] = o->ver;
			break;
		case CMAP_COMPUTE_REMOVE:
			CHECK_EQ(rc, has ? CMAP_REMOVED : CMAP_UNCHANGED);
			if (has) {
				e->has[o->id] = 0;
				e->count--;
			}
			break;
		case CMAP_COMPUTE_KEEP:
			CHECK_EQ(rc, CMAP_UNCHANGED);
			break;
		default:
			CHECK_EQ(rc, CMAP_ABORTED);
		}
		break;
	case OP_SET:
		if (!has) {
			CHECK_EQ(rc, CMAP_OK);
			e->has[o->id] = 1;
			e->count++;
			e->ver[o->id] = o->ver;
			break;
		}
		if (o->with_old && small) {
			CHECK_EQ(rc, CMAP_ERANGE);
			CHECK_EQ(len, wl);
			break;
		}
		CHECK_EQ(rc, CMAP_REPLACED);
		if (o->with_old) {
			if (e->var)
				CHECK_EQ(len, wl);
			CHECK(memcmp(ob, want, wl) == 0);
		}
		e->ver[o->id] = o->ver;
		break;
	case OP_REMOVE:
		if (!has) {
			CHECK_EQ(rc, CMAP_NOT_FOUND);
			break;
		}
		if (o->with_old && small) {
			CHECK_EQ(rc, CMAP_ERANGE);
			CHECK_EQ(len, wl);
			break;
		}
		CHECK_EQ(rc, CMAP_OK);
		if (o->with_old) {
			if (e->var)
				CHECK_EQ(len, wl);
			CHECK(memcmp(ob, want, wl) == 0);
		}
		e->has[o->id] = 0;
		e->count--;
		break;
	case OP_GET:
		if (!has) {
			CHECK_EQ(rc, CMAP_NOT_FOUND);
			break;
		}
		if (small) {
			CHECK_EQ(rc, CMAP_ERANGE);
			CHECK_EQ(len, wl);
			break;
		}
		CHECK_EQ(rc, CMAP_OK);
		if (e->var)
			CHECK_EQ(len, wl);
		CHECK(memcmp(vb, want, wl) == 0);
		break;
	default:
		CHECK_EQ(rc, has ? CMAP_OK : CMAP_NOT_FOUND);
		CHECK_EQ(ob[0], has ? 1 : 0);
		if (has) {
			CHECK_EQ(ob[1], wl);
			CHECK(memcmp(ob + 2, want, wl) == 0);
		}
		break;
	}
	same_key(e, o->id);
	return rc;
}

/* Insert without failures (preload, undo). */
static void put(struct env *e, uint32_t id, uint64_t ver)
{
	long fail_at = e->a->fail_at;
	uint32_t ppm = e->a->fail_ppm;
	e->a->fail_at = 0;
	e->a->fail_ppm = 0;
	unsigned char kb[32], vb[64];
	size_t kl = key_of(e->var, id, kb);
	size_t vl = val_of(e->var, id, ver, vb);
	int rc = cmap_set(e->m, kb, kl, vb, vl, NULL, NULL);
	CHECK_EQ(rc, e->has[id] ? CMAP_REPLACED : CMAP_OK);
	if (!e->has[id])
		e->count++;
	e->has[id] = 1;
	e->ver[id] = ver;
	e->a->fail_at = fail_at;
	e->a->fail_ppm = ppm;
}

/*
 * A remove that succeeded although an allocation failed may have skipped
 * its contraction (documented as best effort), which cmap_validate reports
 * as "inner node small enough to have been contracted".  The contents must
 * be right regardless; a later remove on the same path, without failures,
 * must finish the job so that the map validates again.
 */
static void heal(struct env *e, uint32_t id)
{
	check_map(e, false);
	uint32_t ppm = e->a->fail_ppm;
	e->a->fail_ppm = 0;
	put(e, id, ++e->next_ver);
	unsigned char kb[32];
	size_t kl = key_of(e->var, id, kb);
	long failed0 = e->a->failed;
	CHECK_EQ(cmap_remove(e->m, kb, kl, NULL, NULL), CMAP_OK);
	CHECK_EQ(e->a->failed, failed0);
	e->has[id] = 0;
	e->count--;
	e->a->fail_ppm = ppm;
	same(e);
}

static void env_init(struct env *e, struct actx *a, bool var, unsigned flags,
		     uint64_t seed)
{
	memset(e, 0, sizeof *e);
	e->a = a;
	e->var = var;
	e->rng = seed;
	e->m = make_map(a, var, flags);
}

/* ---- fail the k-th allocation of each operation ----------------------------
 */

/* One operation, failing its 1st, 2nd, ... allocation in turn. */
static void each_k(struct env *e, const struct op *o, long *checks)
{
	bool dirty = false; /* a contraction may have been skipped */
	for (long k = 1;; k++) {
		CHECK(k < 1000); /* no operation needs that many */
		bool had = e->has[o->id];
		uint64_t hadver = e->ver[o->id];
		e->a->fail_at = e->a->calls + k;
		bool absorbed;
		int rc = run_op(e, o, &absorbed);
		e->a->fail_at = 0;
		if (absorbed && is_drop(o, rc)) {
			/* Succeeded although an allocation failed: undo it
			 * and try the next k, so that every later
			 * allocation of the remove fails once too. */
			CHECK(had);
			dirty = true;
			check_map(e, false);
			put(e, o->id, hadver);
			continue;
		}
		if (++*checks % 16 == 0 || (dirty && rc != CMAP_ENOMEM))
			check_map(e, !dirty || rc != CMAP_ENOMEM);
		if (rc != CMAP_ENOMEM)
			return;
	}
}

static void test_each_allocation(bool var, unsigned flags)
{
	struct actx a;
	actx_init(&a, 5);
	struct env *e = malloc(sizeof *e);
	CHECK(e != NULL);
	env_init(e, &a, var, flags, 11 + var);
	long checks = 0;

	/* The very first operations of a thread on a fresh map (joining,
	 * first nodes, garbage bags) fail at each allocation too. */
	for (int i = 0; i < 50; i++) {
		struct op o = gen_op(e, 80, 10);
		each_k(e, &o, &checks);
	}
	same(e);
	/* Preload a few thousand entries. */
	while (e->count < 3000)
		put(e, (uint32_t)(rng_next(&e->rng) % SPACE), ++e->next_ver);
	same(e);

	long n = scaled(1500);
	for (long i = 0; i < n; i++) { /* mixed */
		struct op o = gen_op(e, 40, 40);
		each_k(e, &o, &checks);
	}
	same(e);
	for (long i = 0; i < 4 * n && e->count > 20; i++) { /* shrink */
		struct op o = gen_op(e, 5, 85);
		each_k(e, &o, &checks);
	}
	same(e);
	for (long i = 0; i < n; i++) { /* grow again */
		struct op o = gen_op(e, 80, 10);
		each_k(e, &o, &checks);
	}
	same(e);
	printf("  each allocation (%s, %s%s): %ld ENOMEM, %ld absorbed, "
	       "%ld ok\n",
	       var ? "var" : "u32", flags & CMAP_NO_POOL ? "no pool" : "pooled",
	       flags & CMAP_COPY_ON_WRITE ? ", copy-on-write" : "", e->nomem,
	       e->absorbed, e->ok_ops);
	if (flags & CMAP_NO_POOL) {
		CHECK(e->nomem > 100);
		/* Every kind of write met a failed allocation; in an in-place
		 * map (8-byte values, not CMAP_COPY_ON_WRITE) a replace, cas
		 * or compute of a present key allocates nothing, so only the
		 * writes that copy can fail. */
		static const int kinds[] = {OP_SET,	  OP_REMOVE,  OP_INSERT,
					    OP_REMOVE_IF, OP_REPLACE, OP_CAS,
					    OP_COMPUTE};
		size_t nk = sizeof kinds / sizeof kinds[0];
		if (!var && !(flags & CMAP_COPY_ON_WRITE))
			nk = 4;
		for (size_t i = 0; i < nk; i++)
			CHECK(e->nomem_kind[kinds[i]] > 0);
	} else
		CHECK(e->nomem > 0);
	cmap_free(e->m);
	actx_done(&a);
	free(e);
}

/* ---- random failures
 * ---------------------------------------------------------- */

static void test_random_failures(bool var, unsigned flags, uint32_t ppm,
				 long ops)
{
	struct actx a;
	actx_init(&a, 21 + var);
	struct env *e = malloc(sizeof *e);
	CHECK(e != NULL);
	env_init(e, &a, var, flags, 31 + var);
	a.fail_ppm = ppm;
	for (long i = 0; i < ops; i++) {
		/* Cycle through growing, mixed and shrinking stretches. */
		long phase = (i / 5000) % 3;
		unsigned pset = phase == 0 ? 70 : phase == 1 ? 40 : 10;
		unsigned prem = phase == 0 ? 15 : phase == 1 ? 40 : 80;
		struct op o = gen_op(e, pset, prem);
		bool absorbed;
		int rc = run_op(e, &o, &absorbed);
		if (absorbed && is_drop(&o, rc))
			heal(e, o.id);
		if (i % 5000 == 4999)
			same(e);
	}
	same(e);
	a.fail_ppm = 0;
	printf("  random failures (%s, %s, p=%.3f): %ld of %ld ops ENOMEM, "
	       "%ld absorbed, %ld allocations failed\n",
	       var ? "var" : "u32", flags & CMAP_NO_POOL ? "no pool" : "pooled",
	       ppm / 1e6, e->nomem, ops, e->absorbed, a.failed);
	CHECK(a.failed > 0);
	if (flags & CMAP_NO_POOL)
		CHECK(e->nomem > 0);
	cmap_free(e->m);
	actx_done(&a);
	free(e);
}

/* ---- batches under allocation failure ---------------------------------------
 */

enum { B_SET, B_REMOVE, B_INSERT };
#define BATCH_N 200

struct batch {
	int kind;
	size_t n;
	uint32_t id[BATCH_N];
	uint64_t ver[BATCH_N];
	uint32_t keys[BATCH_N];
	uint64_t vals[BATCH_N];
};

/* A batch of 1..BATCH_N keys: random ids, ids sharing a root slot (the
 * identity hasher's low 5 bits: bulk-built nodes), repeats of earlier
 * keys (a few, or one key many times: more copies than a bucket holds). */
static void gen_batch(struct env *e, struct batch *b, int kind)
{
	uint64_t r = rng_next(&e->rng);
	b->kind = kind;
	b->n = 1 + (size_t)(r % BATCH_N);
	unsigned pattern = (unsigned)(r >> 16) % 4;
	uint32_t base = (uint32_t)((r >> 24) % 32);
	for (size_t i = 0; i < b->n; i++) {
		uint64_t x = rng_next(&e->rng);
		uint32_t id;
		if (i > 0 && (pattern == 3 || x % 8 == 0))
			id = b->id[pattern == 3 ? 0 : (x >> 8) % i];
		else if (pattern == 1)
			id = (uint32_t)(base + 32 * ((x >> 8) % (SPACE / 32)));
		else if (pattern == 2 && kind == B_REMOVE)
			id = pick_present(e);
		else
			id = (uint32_t)((x >> 8) % SPACE);
		b->id[i] = id;
		b->ver[i] = ++e->next_ver;
		b->keys[i] = id;
		val_of(false, id, b->ver[i], (unsigned char *)&b->vals[i]);
	}
}

/* The statuses against the reference (the batch as single calls in
 * order), which they update; returns the count the call must return.
 * *removed collects the ids a remove took out. */
static long apply_batch(struct env *e, const struct batch *b, const int *st,
			bool failed, uint32_t *removed, size_t *nremoved)
{
	long done = 0;
	for (size_t i = 0; i < b->n; i++) {
		uint32_t id = b->id[i];
		bool has = e->has[id];
		if (st[i] == CMAP_ENOMEM) {
			CHECK(failed);
			e->nomem++;
			continue;
		}
		switch (b->kind) {
		case B_SET:
			CHECK_EQ(st[i], has ? CMAP_REPLACED : CMAP_OK);
			break;
		case B_REMOVE:
			CHECK_EQ(st[i], has ? CMAP_OK : CMAP_NOT_FOUND);
			break;
		default:
			CHECK_EQ(st[i], has ? CMAP_EXISTS : CMAP_OK);
			break;
		}
		if (b->kind == B_REMOVE && has) {
			e->has[id] = 0;
			e->count--;
			removed[(*nremoved)++] = id;
			done++;
		} else if (b->kind == B_SET || !has) {
			if (b->kind != B_REMOVE) {
				e->count += !has;
				e->has[id] = 1;
				e->ver[id] = b->ver[i];
				done++;
			}
		}
	}
	return done;
}

static long call_batch(struct env *e, const struct batch *b, int *res)
{
	switch (b->kind) {
	case B_SET:
		return cmap_set_batch(e->m, b->keys, b->vals, b->n, res);
	case B_REMOVE:
		return cmap_remove_batch(e->m, b->keys, b->n, res);
	default:
		return cmap_insert_batch(e->m, b->keys, b->vals, b->n, res);
	}
}

/* Back to the reference's earlier contents (has0, ver0), without
 * failures, key by key. */
static void restore(struct env *e, const unsigned char *has0,
		    const uint64_t *ver0)
{
	for (uint32_t id = 0; id < SPACE; id++) {
		if (has0[id] && (!e->has[id] || e->ver[id] != ver0[id])) {
			put(e, id, ver0[id]);
		} else if (!has0[id] && e->has[id]) {
			unsigned char kb[32];
			size_t kl = key_of(false, id, kb);
			long fail_at = e->a->fail_at;
			e->a->fail_at = 0;
			CHECK_EQ(cmap_remove(e->m, kb, kl, NULL, NULL),
				 CMAP_OK);
			e->a->fail_at = fail_at;
			e->has[id] = 0;
			e->count--;
		}
	}
}

/* Removes that absorbed a failure may have skipped their contraction:
 * insert and remove each such key again without failures. */
static void heal_all(struct env *e, const uint32_t *ids, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (e->has[ids[i]])
			continue;
		put(e, ids[i], ++e->next_ver);
		unsigned char kb[32];
		size_t kl = key_of(false, ids[i], kb);
		long failed0 = e->a->failed;
		CHECK_EQ(cmap_remove(e->m, kb, kl, NULL, NULL), CMAP_OK);
		CHECK_EQ(e->a->failed, failed0);
		e->has[ids[i]] = 0;
		e->count--;
	}
}

/*
 * One batch, failing its 1st, 2nd, ... allocation in turn until it runs
 * without failing; after each failing run the map goes back to where it
 * was, so every allocation point of the same call fails once.  Statuses:
 * CMAP_ENOMEM keys unchanged, the others applied (as the single calls in
 * order); a negative return (insert_batch's scratch, joining) changed
 * nothing; the map validates (after healing absorbed removes).
 */
static long batch_each_k(struct env *e, const struct batch *b, long *whole)
{
	static unsigned char has0[SPACE];
	static uint64_t ver0[SPACE];
	static int res[BATCH_N];
	static uint32_t removed[BATCH_N];
	for (long k = 1;; k++) {
		CHECK(k < 5000);
		memcpy(has0, e->has, sizeof has0);
		memcpy(ver0, e->ver, sizeof ver0);
		size_t count0 = e->count, nremoved = 0;
		long failed0 = e->a->failed;
		memset(res, 0x5c, sizeof res);
		e->a->fail_at = e->a->calls + k;
		long rc = call_batch(e, b, res);
		e->a->fail_at = 0;
		bool failed = e->a->failed != failed0;
		if (rc < 0) {
			CHECK_EQ(rc, CMAP_ENOMEM);
			CHECK(failed);
			(*whole)++;
			CHECK_EQ(e->count, count0);
			same(e);
			continue;
		}
		CHECK_EQ(rc,
			 apply_batch(e, b, res, failed, removed, &nremoved));
		check_map(e, !failed || nremoved == 0);
		if (failed && nremoved) {
			heal_all(e, removed, nremoved);
			same(e);
		}
		if (!failed)
			return k;
		e->absorbed += nremoved > 0;
		restore(e, has0, ver0);
		CHECK_EQ(e->count, count0);
		check_map(e, true);
	}
}

static void test_batch_allocations(void)
{
	static const int kinds[3] = {B_SET, B_REMOVE, B_INSERT};
	struct actx a;
	actx_init(&a, 41);
	struct env *e = malloc(sizeof *e);
	struct batch *b = malloc(sizeof *b);
	CHECK(e != NULL && b != NULL);
	env_init(e, &a, false, CMAP_NO_POOL, 43);
	long whole = 0, points = 0, rounds = scaled(120);
	/* A fresh map and thread: joining fails too (a whole-call ENOMEM). */
	for (int i = 0; i < 3; i++) {
		cmap_thread_exit();
		gen_batch(e, b, kinds[i]);
		points += batch_each_k(e, b, &whole) - 1;
	}
	CHECK(whole >= 3);
	for (long i = 0; i < rounds; i++) {
		/* grow, mixed, shrink */
		uint64_t r = rng_next(&e->rng) % 10;
		int kind = e->count < 1000   ? (r < 7 ? B_INSERT : B_SET)
			   : e->count > 3000 ? (r < 7 ? B_REMOVE : B_SET)
					     : kinds[r % 3];
		gen_batch(e, b, kind);
		points += batch_each_k(e, b, &whole) - 1;
		if (i % 8 == 7)
			same(e);
	}
	same(e);
	printf("  batches (u32, no pool): %ld rounds, %ld allocation points "
	       "failed, %ld keys ENOMEM, %ld whole-call ENOMEM, %ld with "
	       "absorbed removes\n",
	       rounds + 3, points, e->nomem, whole, e->absorbed);
	CHECK(points > rounds);
	CHECK(e->nomem > 0);
	cmap_free(e->m);
	actx_done(&a);
	free(b);
	free(e);
}

/* ---- walks, retain and clear under allocation failure
 * ------------------------
 */

struct rctx {
	struct env *e;
	unsigned mod; /* drop ids with id % mod == 0 (1: all) */
	uint32_t dropped[SPACE];
	size_t ndropped, visits;
};

static uint32_t id_of(const void *key)
{
	uint32_t id;
	memcpy(&id, key, 4);
	CHECK(id < SPACE);
	return id;
}

static int rpred(const void *key, size_t kl, const void *val, size_t vl,
		 void *ctx)
{
	struct rctx *x = ctx;
	uint32_t id = id_of(key);
	unsigned char want[64];
	CHECK_EQ(kl, 4);
	CHECK_EQ(vl, 8);
	CHECK(x->e->has[id]);
	val_of(false, id, x->e->ver[id], want);
	CHECK(memcmp(val, want, 8) == 0);
	x->visits++;
	if (id % x->mod)
		return 1;
	x->dropped[x->ndropped++] = id;
	return 0;
}

static int count_fn(const void *key, size_t kl, const void *val, size_t vl,
		    void *ctx)
{
	(void)key, (void)kl, (void)val, (void)vl;
	(*(size_t *)ctx)++;
	return 0;
}

struct wcall {
	cmap_t *m;
	unsigned mod;
	struct rctx *x;
	size_t *seen;
	long rc;
};

static void wcall_run(struct wcall *w)
{
	if (w->mod == (unsigned)-1)
		w->rc = cmap_foreach(w->m, count_fn, w->seen);
	else if (w->mod)
		w->rc = cmap_retain(w->m, rpred, w->x);
	else
		w->rc = cmap_clear(w->m);
}

static void *wcall_thread(void *arg)
{
	wcall_run(arg);
	return NULL;
}

/*
 * cmap_retain (drop by id % mod), cmap_clear (mod 0) or cmap_foreach
 * (mod -1 as unsigned: only count), failing the k-th allocation: ENOMEM
 * only when an allocation failed; the entries a retain removed before it
 * stay removed, the others are unchanged (which the reference learns from
 * the map: every dropped entry but the last must be gone, an entry never
 * dropped must be there).  join: the call runs in a new thread, whose
 * joining can fail too.  Then the map goes back to where it was.
 */
static void walk_each_k(struct env *e, unsigned mod, bool join, long *nomem,
			long *points)
{
	static unsigned char has0[SPACE];
	static uint64_t ver0[SPACE];
	static struct rctx x;
	for (long k = 1;; k++) {
		CHECK(k < 100000);
		memcpy(has0, e->has, sizeof has0);
		memcpy(ver0, e->ver, sizeof ver0);
		size_t count0 = e->count, seen = 0;
		x.e = e;
		x.mod = mod ? mod : 1;
		x.ndropped = x.visits = 0;
		long failed0 = e->a->failed;
		struct wcall w = {e->m, mod, &x, &seen, 0};
		e->a->fail_at = e->a->calls + k;
		if (join) {
			/* a thread of its own: it must join the map (the
			 * first time, a record is allocated) */
			pthread_t th;
			CHECK(pthread_create(&th, NULL, wcall_thread, &w) == 0);
			CHECK(pthread_join(th, NULL) == 0);
		} else {
			wcall_run(&w);
		}
		long rc = w.rc;
		e->a->fail_at = 0;
		bool failed = e->a->failed != failed0;
		if (mod == (unsigned)-1) {
			if (rc == CMAP_ENOMEM) {
				CHECK(failed);
				CHECK_EQ(seen, 0);
				(*nomem)++;
			} else {
				CHECK_EQ(rc, (long)count0);
				CHECK_EQ(seen, count0);
			}
			same(e);
			if (!failed)
				return;
			++*points;
			continue;
		}
		/* What is gone now: ask the map, without failures. */
		size_t gone = 0;
		static uint32_t removed[SPACE];
		for (uint32_t id = 0; id < SPACE; id++) {
			if (!e->has[id])
				continue;
			unsigned char kb[32];
			size_t kl = key_of(false, id, kb);
			int g = cmap_get(e->m, kb, kl, NULL, NULL);
			CHECK(g == CMAP_OK || g == CMAP_NOT_FOUND);
			if (g == CMAP_NOT_FOUND) {
				e->has[id] = 0;
				e->count--;
				removed[gone++] = id;
			}
		}
		if (mod) {
			/* only dropped entries are gone, all but the last */
			for (size_t i = 0; i < gone; i++)
				CHECK(removed[i] % mod == 0);
			for (size_t i = 0; i + 1 < x.ndropped; i++)
				CHECK(!e->has[x.dropped[i]]);
		}
		if (rc == CMAP_ENOMEM) {
			CHECK(failed);
			(*nomem)++;
			if (mod && x.ndropped)
				CHECK_EQ(gone + 1, x.ndropped);
		} else {
			CHECK_EQ(rc, (long)gone);
			if (mod) {
				CHECK_EQ(x.visits, count0);
				CHECK_EQ(gone, x.ndropped);
			} else {
				CHECK_EQ(gone, count0);
			}
		}
		check_map(e, !failed || gone == 0);
		if (failed && gone) {
			heal_all(e, removed, gone);
			same(e);
		}
		restore(e, has0, ver0);
		same(e);
		if (!failed)
			return;
		++*points;
	}
}

static void test_walk_allocations(void)
{
	struct actx a;
	actx_init(&a, 51);
	struct env *e = malloc(sizeof *e);
	CHECK(e != NULL);
	env_init(e, &a, false, CMAP_NO_POOL, 53);
	while (e->count < 600)
		put(e, (uint32_t)(rng_next(&e->rng) % SPACE), ++e->next_ver);
	long nomem = 0, points = 0;
	walk_each_k(e, (unsigned)-1, true, &nomem, &points);
	walk_each_k(e, (unsigned)-1, false, &nomem, &points);
	long walk_points = points;
	static const unsigned mods[] = {7, 2, 1, 0};
	for (size_t i = 0; i < sizeof mods / sizeof mods[0]; i++) {
		walk_each_k(e, mods[i], false, &nomem, &points);
		walk_each_k(e, mods[i], true, &nomem, &points);
	}
	printf("  foreach/retain/clear (u32, no pool): %ld allocation points "
	       "failed (%ld in foreach), %ld ENOMEM\n",
	       points, walk_points, nomem);
	CHECK(walk_points >= 1 && nomem > 10);
	cmap_free(e->m);
	actx_done(&a);
	free(e);
}

int main(void)
{
	test_new_failures();
	test_each_allocation(false, CMAP_NO_POOL);
	test_each_allocation(false, CMAP_NO_POOL | CMAP_COPY_ON_WRITE);
	test_each_allocation(true, CMAP_NO_POOL);
	test_each_allocation(false, 0);
	test_each_allocation(true, 0);
	test_batch_allocations();
	test_walk_allocations();
	test_random_failures(false, CMAP_NO_POOL, 50000, scaled(100000));
	test_random_failures(true, CMAP_NO_POOL, 50000, scaled(100000));
	test_random_failures(false, 0, 300000, scaled(30000));
	test_random_failures(true, 0, 300000, scaled(30000));
	printf("test_oom: ok\n");
	return 0;
}
