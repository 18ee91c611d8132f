/*
 * Bad input and allocation failure: every rejected call returns its code
 * and changes nothing; every allocation an operation makes can fail, and
 * then the operation returns CMAP_ENOMEM with the map exactly as before;
 * nothing leaks (the hooks count outstanding allocations).
 */
#include <stdbool.h>
#include <string.h>

#include "cmap.h"
#include "testutil.h"

/* ---- counting, failing allocator
 * ---------------------------------------------- */

struct alloc_ctx {
	long live;    /* outstanding allocations */
	long calls;   /* allocations attempted */
	long fail_at; /* fail the allocation with this call number, or 0 */
	uint64_t rng; /* with prob_pct > 0: fail at random */
	unsigned prob_pct;
};

static void *t_alloc(void *ctx, size_t size, size_t align)
{
	struct alloc_ctx *a = ctx;
	a->calls++;
	if (a->fail_at && a->calls == a->fail_at)
		return NULL;
	if (a->prob_pct && rng_next(&a->rng) % 100 < a->prob_pct)
		return NULL;
	CHECK(align && (align & (align - 1)) == 0);
	if (align < sizeof(void *))
		align = sizeof(void *);
	void *p = aligned_alloc(align, (size + align - 1) & ~(align - 1));
	if (p)
		a->live++;
	return p;
}

static void t_free(void *ctx, void *p, size_t size)
{
	struct alloc_ctx *a = ctx;
	(void)size;
	if (!p)
		return;
	a->live--;
	free(p);
}

static cmap_t *make(struct alloc_ctx *a, bool var, unsigned flags)
{
	cmap_config_t c = {0};
	c.key_size = var ? 0 : 4;
	c.val_size = var ? 0 : 8;
	c.alloc = t_alloc;
	c.free = t_free;
	c.alloc_ctx = a;
	c.flags = flags;
	cmap_t *m = NULL;
	CHECK_EQ(cmap_new(&m, &c), CMAP_OK);
	return m;
}

/* ---- reference: keys 0..SPACE, values derived from versions
 * ------------------- */

#define SPACE 4000
static unsigned char has[SPACE];
static uint64_t ver[SPACE];

static size_t key_of(bool var, uint32_t k, unsigned char *b)
{
	memcpy(b, &k, 4);
	if (!var)
		return 4;
	memset(b + 4, 'k', k % 20);
	return 4 + k % 20;
}

static size_t val_of(bool var, uint32_t k, uint64_t v, unsigned char *b)
{
	memcpy(b, &v, 8);
	if (!var)
		return 8;
	size_t n = 8 + (k + v) % 40;
	memset(b + 8, (int)(v & 0xff), n - 8);
	return n;
}

/* The map equals the reference, and validates. */
static void same(cmap_t *m, bool var)
{
	unsigned char kb[32], vb[64], want[64];
	size_t n = 0;
	for (uint32_t k = 0; k < SPACE; k++) {
		size_t vl = sizeof vb;
		int rc = cmap_get(m, kb, key_of(var, k, kb), vb, &vl);
		CHECK_EQ(rc, has[k] ? CMAP_OK : CMAP_NOT_FOUND);
		if (has[k]) {
			CHECK_EQ(vl, val_of(var, k, ver[k], want));
			CHECK(!memcmp(vb, want, vl));
			n++;
		}
	}
	CHECK_EQ(cmap_len(m), n);
	CHECK_EQ(cmap_validate(m, NULL), CMAP_OK);
}

/* One random operation; on CMAP_ENOMEM the reference is left unchanged. */
static int op(cmap_t *m, bool var, uint64_t *s)
{
	unsigned char kb[32], vb[64];
	uint64_t x = rng_next(s);
	uint32_t k = (uint32_t)(x % SPACE);
	size_t kl = key_of(var, k, kb);
	if ((x >> 32) % 3) {
		uint64_t v = rng_next(s);
		int rc =
		    cmap_set(m, kb, kl, vb, val_of(var, k, v, vb), NULL, NULL);
		if (rc == CMAP_ENOMEM)
			return rc;
		CHECK_EQ(rc, has[k] ? CMAP_REPLACED : CMAP_OK);
		has[k] = 1;
		ver[k] = v;
		return rc;
	}
	int rc = cmap_remove(m, kb, kl, NULL, NULL);
	if (rc == CMAP_ENOMEM)
		return rc;
	CHECK_EQ(rc, has[k] ? CMAP_OK : CMAP_NOT_FOUND);
	has[k] = 0;
	return rc;
}

static void test_each_allocation(bool var, unsigned flags)
{
	struct alloc_ctx a = {0};
	cmap_t *m = make(&a, var, flags);
	memset(has, 0, sizeof has);
	uint64_t s = 99;
	for (int i = 0; i < SPACE; i++)
		CHECK(op(m, var, &s) != CMAP_ENOMEM);
	same(m, var);
	/* For each of many operations, fail its 1st, 2nd, ... allocation
	 * until it needs no more; every failure must change nothing. */
	long failures = 0;
	for (int i = 0; i < (int)scaled(3000); i++) {
		uint64_t s0 = s;
		for (long k = 1;; k++) {
			s = s0;
			a.fail_at = a.calls + k;
			int rc = op(m, var, &s);
			a.fail_at = 0;
			if (rc != CMAP_ENOMEM)
				break;
			failures++;
			if (i % 64 == 0)
				same(m, var);
		}
	}
	CHECK(failures > 0 || !(flags & CMAP_NO_POOL));
	printf("  each-allocation (var %d, flags %u): %ld injected failures\n",
	       var, flags, failures);
	same(m, var);
	cmap_free(m);
	CHECK_EQ(a.live, 0);
}

static void test_random_failures(bool var, unsigned flags, long ops)
{
	struct alloc_ctx a = {0};
	a.rng = 3;
	cmap_t *m = make(&a, var, flags);
	memset(has, 0, sizeof has);
	uint64_t s = 7;
	a.prob_pct = 5;
	long nomem = 0;
	for (long i = 0; i < ops; i++) {
		nomem += op(m, var, &s) == CMAP_ENOMEM;
		if (i % 20000 == 0) {
			a.prob_pct = 0;
			same(m, var);
			a.prob_pct = 5;
		}
	}
	a.prob_pct = 0;
	CHECK(nomem > 0 || !(flags & CMAP_NO_POOL));
	printf("  random failures (var %d, flags %u): %ld of %ld ops ENOMEM\n",
	       var, flags, nomem, ops);
	same(m, var);
	cmap_free(m);
	CHECK_EQ(a.live, 0);
}

static void test_new_failures(void)
{
	for (long k = 1; k < 10; k++) {
		struct alloc_ctx a = {0};
		a.fail_at = k;
		cmap_config_t c = {0};
		c.alloc = t_alloc;
		c.free = t_free;
		c.alloc_ctx = &a;
		cmap_t *m = NULL;
		int rc = cmap_new(&m, &c);
		if (rc == CMAP_OK) {
			cmap_free(m);
			CHECK(k > 1);
			CHECK_EQ(a.live, 0);
			return;
		}
		CHECK_EQ(rc, CMAP_ENOMEM);
		CHECK(m == NULL);
		CHECK_EQ(a.live, 0);
	}
	CHECK(0); /* cmap_new never succeeded */
}

/* ---- bad arguments
 * -------------------------------------------------------------------- */

static void visit(const void *k, size_t kl, const void *v, size_t vl, void *c)
{
	(void)k;
	(void)kl;
	(void)v;
	(void)vl;
	++*(int *)c;
}

static void test_bad_input(void)
{
	cmap_config_t c = {0};
	cmap_t *m = NULL;
	CHECK_EQ(cmap_new(NULL, &c), CMAP_EINVAL);
	CHECK_EQ(cmap_new(&m, NULL), CMAP_EINVAL);
	c.key_size = CMAP_MAX_FIXED_SIZE + 1;
	CHECK_EQ(cmap_new(&m, &c), CMAP_EINVAL);
	c = (cmap_config_t){0};
	c.val_size = CMAP_MAX_FIXED_SIZE + 1;
	CHECK_EQ(cmap_new(&m, &c), CMAP_EINVAL);
	c = (cmap_config_t){0};
	c.alloc = t_alloc;
	CHECK_EQ(cmap_new(&m, &c), CMAP_EINVAL);
	c = (cmap_config_t){0};
	c.hash = cmap_hash_u32;
	c.key_size = 8;
	CHECK_EQ(cmap_new(&m, &c), CMAP_EINVAL);
	c.hash = cmap_hash_u64;
	c.key_size = 4;
	CHECK_EQ(cmap_new(&m, &c), CMAP_EINVAL);
	c.key_size = 0;
	CHECK_EQ(cmap_new(&m, &c), CMAP_EINVAL);
	c = (cmap_config_t){0};
	c.flags = 1u << 20;
	CHECK_EQ(cmap_new(&m, &c), CMAP_EINVAL);
	CHECK(m == NULL);

	/* A fixed map: wrong lengths and NULLs are rejected, nothing changes.
	 */
	c = (cmap_config_t){0};
	c.key_size = 4;
	c.val_size = 8;
	CHECK_EQ(cmap_new(&m, &c), CMAP_OK);
	uint32_t k = 1;
	uint64_t v = 10, o = 0;
	CHECK_EQ(cmap_set(m, &k, 4, &v, 8, NULL, NULL), CMAP_OK);
	CHECK_EQ(cmap_set(NULL, &k, 4, &v, 8, NULL, NULL), CMAP_EINVAL);
	CHECK_EQ(cmap_set(m, NULL, 4, &v, 8, NULL, NULL), CMAP_EINVAL);
	CHECK_EQ(cmap_set(m, &k, 3, &v, 8, NULL, NULL), CMAP_EKEYLEN);
	CHECK_EQ(cmap_set(m, &k, 4, &v, 7, NULL, NULL), CMAP_EVALLEN);
	CHECK_EQ(cmap_set(m, &k, 4, NULL, 8, NULL, NULL), CMAP_EINVAL);
	CHECK_EQ(cmap_get(NULL, &k, 4, &o, NULL), CMAP_EINVAL);
	CHECK_EQ(cmap_get(m, NULL, 4, &o, NULL), CMAP_EINVAL);
	CHECK_EQ(cmap_get(m, &k, 5, &o, NULL), CMAP_EKEYLEN);
	CHECK_EQ(cmap_remove(NULL, &k, 4, NULL, NULL), CMAP_EINVAL);
	CHECK_EQ(cmap_remove(m, &k, 2, NULL, NULL), CMAP_EKEYLEN);
	CHECK_EQ(cmap_get_with(m, &k, 4, NULL, NULL), CMAP_EINVAL);
	CHECK_EQ(cmap_get_with(NULL, &k, 4, visit, NULL), CMAP_EINVAL);
	CHECK_EQ(cmap_get_batch(m, NULL, 3, &o, NULL), CMAP_EINVAL);
	CHECK_EQ(cmap_validate(NULL, NULL), CMAP_EINVAL);
	CHECK_EQ(cmap_len(m), 1);
	CHECK_EQ(cmap_get(m, &k, 4, &o, NULL), CMAP_OK);
	CHECK(o == 10);
	/* Contract: insert/replace/remove codes, old values, get_with. */
	v = 11;
	CHECK_EQ(cmap_set(m, &k, 4, &v, 8, &o, NULL), CMAP_REPLACED);
	CHECK(o == 10);
	int calls = 0;
	CHECK_EQ(cmap_get_with(m, &k, 4, visit, &calls), CMAP_OK);
	CHECK_EQ(calls, 1);
	CHECK_EQ(cmap_remove(m, &k, 4, &o, NULL), CMAP_OK);
	CHECK(o == 11);
	CHECK_EQ(cmap_remove(m, &k, 4, &o, NULL), CMAP_NOT_FOUND);
	CHECK_EQ(cmap_get_with(m, &k, 4, visit, &calls), CMAP_NOT_FOUND);
	CHECK_EQ(calls, 1);
	cmap_stats_t st;
	CHECK_EQ(cmap_validate(m, &st), CMAP_OK);
	CHECK_EQ(st.entries, 0);
	CHECK_EQ(st.inner_nodes, 1);
	cmap_free(m);

	/* A variable-length map: buffers too small give ERANGE and the
	 * needed length, and set/remove then change nothing. */
	c = (cmap_config_t){0};
	CHECK_EQ(cmap_new(&m, &c), CMAP_OK);
	CHECK_EQ(cmap_set(m, "key", 3, "a long value", 12, NULL, NULL),
		 CMAP_OK);
	char buf[64];
	size_t len = 4;
	CHECK_EQ(cmap_get(m, "key", 3, buf, &len), CMAP_ERANGE);
	CHECK_EQ(len, 12);
	CHECK_EQ(cmap_get(m, "key", 3, buf, NULL), CMAP_EINVAL);
	len = 4;
	CHECK_EQ(cmap_set(m, "key", 3, "new", 3, buf, &len), CMAP_ERANGE);
	CHECK_EQ(len, 12);
	len = 4;
	CHECK_EQ(cmap_remove(m, "key", 3, buf, &len), CMAP_ERANGE);
	CHECK_EQ(cmap_set(m, "key", 3, "new", 3, buf, NULL), CMAP_EINVAL);
	len = sizeof buf;
	CHECK_EQ(cmap_get(m, "key", 3, buf, &len), CMAP_OK);
	CHECK(len == 12 && !memcmp(buf, "a long value", 12));
	CHECK_EQ(cmap_set(m, "key", CMAP_MAX_VAR_LEN + 1, "x", 1, NULL, NULL),
		 CMAP_EINVAL);
	CHECK_EQ(cmap_set(m, "", 0, "", 0, NULL, NULL), CMAP_OK); /* empty */
	len = sizeof buf;
	CHECK_EQ(cmap_get(m, "", 0, buf, &len), CMAP_OK);
	CHECK_EQ(len, 0);
	CHECK_EQ(cmap_get_batch(m, "key", 1, buf, NULL), CMAP_EINVAL);
	CHECK_EQ(cmap_len(m), 2);
	cmap_free(m);

	/* Messages: distinct, never NULL. */
	int codes[] = {
#define CMAP__CODE(name, val, msg) CMAP_##name,
	    CMAP_STATUS_MAP(CMAP__CODE)
#undef CMAP__CODE
	};
	size_t nc = sizeof codes / sizeof codes[0];
	for (size_t i = 0; i < nc; i++) {
		CHECK(cmap_strerror(codes[i]) != NULL);
		for (size_t j = i + 1; j < nc; j++)
			CHECK(strcmp(cmap_strerror(codes[i]),
				     cmap_strerror(codes[j])) != 0);
	}
	CHECK(cmap_strerror(12345) != NULL);
	CHECK_EQ(cmap_len(NULL), 0);
	cmap_free(NULL);
}

CMAP_TYPED(u32map, uint32_t, uint64_t)

static void test_typed(void)
{
	u32map_t *m = NULL;
	CHECK_EQ(u32map_new(&m, cmap_hash_u32), CMAP_OK);
	uint64_t old = 0, v = 0;
	CHECK_EQ(u32map_set(m, 7, 42, &old), CMAP_OK);
	CHECK_EQ(u32map_set(m, 7, 43, &old), CMAP_REPLACED);
	CHECK(old == 42);
	CHECK_EQ(u32map_get(m, 7, &v), CMAP_OK);
	CHECK(v == 43);
	CHECK_EQ(u32map_len(m), 1);
	CHECK_EQ(u32map_remove(m, 7, &old), CMAP_OK);
	CHECK(old == 43);
	CHECK_EQ(u32map_get(m, 7, &v), CMAP_NOT_FOUND);
	CHECK(u32map_map(m) != NULL);
	u32map_free(m);
}

int main(void)
{
	test_bad_input();
	test_typed();
	test_new_failures();
	test_each_allocation(false, CMAP_NO_POOL);
	test_each_allocation(true, CMAP_NO_POOL);
	test_each_allocation(false, 0);
	test_random_failures(false, CMAP_NO_POOL, scaled(100000));
	test_random_failures(true, CMAP_NO_POOL, scaled(100000));
	test_random_failures(false, 0, scaled(100000));
	test_random_failures(true, 0, scaled(50000));
	printf("test_errors: ok\n");
	return 0;
}
