/*
 * The public API's contract, black-box: bad configurations and bad
 * arguments are rejected with the documented code and leave the map exactly
 * as it was (the read-modify-write calls too: NULL arguments, wrong fixed
 * lengths, output buffers without their length or too small, unknown or
 * invalid compute answers); status messages; insert/replace/remove
 * outcomes and old-value copy-out; cmap_get_with (called exactly once,
 * nested use, borrowed values stay valid while the entry is replaced or
 * removed from inside the callback); the typed wrappers; cmap_validate
 * statistics of a large map and of a map emptied by removes.
 */
#include <stdbool.h>
#include <string.h>

#include "cmap.h"
#include "testutil.h"

/* ---- helpers ------------------------------------------------------------ */

static void *plain_alloc(void *ctx, size_t size, size_t align)
{
	(void)ctx;
	void *p = NULL;
	if (align < sizeof(void *))
		align = sizeof(void *);
	if (posix_memalign(&p, align, size ? size : 1))
		return NULL;
	return p;
}

static void plain_free(void *ctx, void *p, size_t size)
{
	(void)ctx;
	(void)size;
	free(p);
}

static cmap_t *new_map(size_t ks, size_t vs, cmap_hash_fn hash)
{
	cmap_config_t c = CMAP_CONFIG_INIT;
	c.key_size = ks;
	c.val_size = vs;
	c.hash = hash;
	cmap_t *m = NULL;
	CHECK_EQ(cmap_new(&m, &c), CMAP_OK);
	CHECK(m != NULL);
	return m;
}

/* Fixed u32 -> u64 map holding keys 0..n-1 with values key * 1000 + 7. */
static uint64_t fval(uint32_t k)
{
	return (uint64_t)k * 1000u + 7u;
}

static void fill_fixed(cmap_t *m, uint32_t n)
{
	for (uint32_t k = 0; k < n; k++) {
		uint64_t v = fval(k);
		CHECK_EQ(cmap_set(m, &k, 4, &v, 8, NULL, NULL), CMAP_OK);
	}
}

/* The fixed map holds exactly keys 0..n-1 with their values. */
static void same_fixed(cmap_t *m, uint32_t n)
{
	CHECK_EQ(cmap_len(m), n);
	for (uint32_t k = 0; k < n + 8; k++) {
		uint64_t v = 0xdeadbeef;
		int rc = cmap_get(m, &k, 4, &v, NULL);
		if (k < n) {
			CHECK_EQ(rc, CMAP_OK);
			CHECK(v == fval(k));
		} else {
			CHECK_EQ(rc, CMAP_NOT_FOUND);
			CHECK(v == 0xdeadbeef);
		}
	}
	CHECK_EQ(cmap_validate(m, NULL), CMAP_OK);
}

/* Variable-length map content: key "key-<i>", value of length i % 50 + 10
 * filled with 'a' + i % 26. */
static size_t vkey(uint32_t i, char *buf)
{
	return (size_t)snprintf(buf, 32, "key-%u", (unsigned)i);
}

static size_t vval(uint32_t i, char *buf)
{
	size_t n = i % 50 + 10;
	memset(buf, 'a' + (int)(i % 26), n);
	return n;
}

static void fill_var(cmap_t *m, uint32_t n)
{
	char k[32], v[64];
	for (uint32_t i = 0; i < n; i++) {
		size_t kl = vkey(i, k), vl = vval(i, v);
		CHECK_EQ(cmap_set(m, k, kl, v, vl, NULL, NULL), CMAP_OK);
	}
}

static void same_var(cmap_t *m, uint32_t n)
{
	char k[32], v[64], want[64];
	CHECK_EQ(cmap_len(m), n);
	for (uint32_t i = 0; i < n + 8; i++) {
		size_t kl = vkey(i, k), cap = sizeof v;
		int rc = cmap_get(m, k, kl, v, &cap);
		if (i < n) {
			CHECK_EQ(rc, CMAP_OK);
			size_t wl = vval(i, want);
			CHECK_EQ(cap, wl);
			CHECK(memcmp(v, want, wl) == 0);
		} else {
			CHECK_EQ(rc, CMAP_NOT_FOUND);
		}
	}
	CHECK_EQ(cmap_validate(m, NULL), CMAP_OK);
}

static int visit_calls;
static void count_visit(const void *k, size_t kl, const void *v, size_t vl,
			void *ctx)
{
	(void)k;
	(void)kl;
	(void)v;
	(void)vl;
	(void)ctx;
	visit_calls++;
}

/* ---- cmap_new ----------------------------------------------------------- */

static void expect_new_fails(const cmap_config_t *c, int want)
{
	cmap_t *m = NULL;
	CHECK_EQ(cmap_new(&m, c), want);
	CHECK(m == NULL);
}

static void expect_new_ok(const cmap_config_t *c)
{
	cmap_t *m = NULL;
	CHECK_EQ(cmap_new(&m, c), CMAP_OK);
	CHECK(m != NULL);
	CHECK_EQ(cmap_len(m), 0);
	CHECK_EQ(cmap_validate(m, NULL), CMAP_OK);
	cmap_free(m);
}

static void test_new(void)
{
	cmap_config_t c = CMAP_CONFIG_INIT;
	cmap_t *m = NULL;
	CHECK_EQ(cmap_new(NULL, &c), CMAP_EINVAL);
	CHECK_EQ(cmap_new(&m, NULL), CMAP_EINVAL);
	CHECK(m == NULL);
	CHECK_EQ(cmap_new(NULL, NULL), CMAP_EINVAL);

	/* Sizes: the maximum is accepted, one more is not. */
	cmap_config_init(&c);
	c.key_size = CMAP_MAX_FIXED_SIZE + 1;
	expect_new_fails(&c, CMAP_EINVAL);
	c.key_size = (size_t)-1;
	expect_new_fails(&c, CMAP_EINVAL);
	cmap_config_init(&c);
	c.val_size = CMAP_MAX_FIXED_SIZE + 1;
	expect_new_fails(&c, CMAP_EINVAL);
	c.key_size = 4;
	expect_new_fails(&c, CMAP_EINVAL);
	cmap_config_init(&c);
	c.key_size = CMAP_MAX_FIXED_SIZE;
	c.val_size = CMAP_MAX_FIXED_SIZE;
	expect_new_ok(&c);

	/* Allocator hooks: both or neither. */
	cmap_config_init(&c);
	c.alloc = plain_alloc;
	expect_new_fails(&c, CMAP_EINVAL);
	cmap_config_init(&c);
	c.free = plain_free;
	expect_new_fails(&c, CMAP_EINVAL);
	c.alloc = plain_alloc;
	expect_new_ok(&c);

	/* Identity hashers only for their key size. */
	cmap_config_init(&c);
	c.val_size = 8;
	c.hash = cmap_hash_u32;
	c.key_size = 8;
	expect_new_fails(&c, CMAP_EINVAL);
	c.key_size = 0;
	expect_new_fails(&c, CMAP_EINVAL);
	c.key_size = 16;
	expect_new_fails(&c, CMAP_EINVAL);
	c.key_size = 4;
	expect_new_ok(&c);
	c.hash = cmap_hash_u64;
	c.key_size = 4;
	expect_new_fails(&c, CMAP_EINVAL);
	c.key_size = 0;
	expect_new_fails(&c, CMAP_EINVAL);
	c.key_size = 8;
	expect_new_ok(&c);

	/* The other hashers take any key size, variable-length included. */
	cmap_config_init(&c);
	c.hash = cmap_hash_city;
	expect_new_ok(&c);
	c.hash = cmap_hash_xxh3;
	c.key_size = 3;
	c.val_size = 1;
	expect_new_ok(&c);

	/* The largest fixed sizes work end to end. */
	cmap_config_init(&c);
	c.key_size = CMAP_MAX_FIXED_SIZE;
	c.val_size = CMAP_MAX_FIXED_SIZE;
	CHECK_EQ(cmap_new(&m, &c), CMAP_OK);
	unsigned char k[CMAP_MAX_FIXED_SIZE], v[CMAP_MAX_FIXED_SIZE],
	    o[CMAP_MAX_FIXED_SIZE];
	for (int r = 0; r < 40; r++) {
		memset(k, r, sizeof k);
		k[CMAP_MAX_FIXED_SIZE - 1] = 0xee; /* differs only at the end */
		memset(v, r + 1, sizeof v);
		CHECK_EQ(cmap_set(m, k, sizeof k, v, sizeof v, NULL, NULL),
			 CMAP_OK);
	}
	k[CMAP_MAX_FIXED_SIZE - 1] = 0xef;
	CHECK_EQ(cmap_get(m, k, sizeof k, o, NULL), CMAP_NOT_FOUND);
	for (int r = 0; r < 40; r++) {
		memset(k, r, sizeof k);
		k[CMAP_MAX_FIXED_SIZE - 1] = 0xee;
		memset(v, r + 1, sizeof v);
		CHECK_EQ(cmap_get(m, k, sizeof k, o, NULL), CMAP_OK);
		CHECK(memcmp(o, v, sizeof v) == 0);
	}
	CHECK_EQ(cmap_len(m), 40);
	CHECK_EQ(cmap_validate(m, NULL), CMAP_OK);
	cmap_free(m);
}

/* ---- bad arguments on a fixed-size map ---------------------------------- */

static void test_bad_fixed(void)
{
	const uint32_t N = 100;
	cmap_t *m = new_map(4, 8, NULL);
	fill_fixed(m, N);
	same_fixed(m, N);

	uint32_t k = 5, knew = N + 1; /* present and absent keys */
	uint64_t kwide[2] = {5, 0};   /* room for wrong (longer) lengths */
	uint64_t v = 77, o = 0xdeadbeef;
	size_t ol;

	/* NULL map. */
	CHECK_EQ(cmap_set(NULL, &k, 4, &v, 8, NULL, NULL), CMAP_EINVAL);
	CHECK_EQ(cmap_set(NULL, &k, 4, &v, 8, &o, NULL), CMAP_EINVAL);
	CHECK_EQ(cmap_get(NULL, &k, 4, &o, NULL), CMAP_EINVAL);
	CHECK_EQ(cmap_get_with(NULL, &k, 4, count_visit, NULL), CMAP_EINVAL);
	CHECK_EQ(cmap_remove(NULL, &k, 4, NULL, NULL), CMAP_EINVAL);
	CHECK_EQ(cmap_remove(NULL, &k, 4, &o, NULL), CMAP_EINVAL);
	CHECK_EQ(cmap_validate(NULL, NULL), CMAP_EINVAL);
	CHECK_EQ(cmap_get_batch(NULL, &k, 1, &o, NULL), CMAP_EINVAL);
	CHECK(o == 0xdeadbeef);
	same_fixed(m, N);

	/* NULL key. */
	CHECK_EQ(cmap_set(m, NULL, 4, &v, 8, NULL, NULL), CMAP_EINVAL);
	CHECK_EQ(cmap_get(m, NULL, 4, &o, NULL), CMAP_EINVAL);
	CHECK_EQ(cmap_get_with(m, NULL, 4, count_visit, NULL), CMAP_EINVAL);
	CHECK_EQ(cmap_remove(m, NULL, 4, NULL, NULL), CMAP_EINVAL);
	CHECK_EQ(cmap_remove(m, NULL, 4, &o, NULL), CMAP_EINVAL);
	same_fixed(m, N);

	/* Wrong key length: present and absent keys alike. */
	size_t bad_klen[] = {0, 1, 3, 5, 8, 16};
	for (size_t i = 0; i < sizeof bad_klen / sizeof bad_klen[0]; i++) {
		size_t kl = bad_klen[i];
		CHECK_EQ(cmap_set(m, kwide, kl, &v, 8, NULL, NULL),
			 CMAP_EKEYLEN);
		CHECK_EQ(cmap_set(m, kwide, kl, &v, 8, &o, NULL), CMAP_EKEYLEN);
		CHECK_EQ(cmap_get(m, kwide, kl, &o, NULL), CMAP_EKEYLEN);
		CHECK_EQ(cmap_get_with(m, kwide, kl, count_visit, NULL),
			 CMAP_EKEYLEN);
		CHECK_EQ(cmap_remove(m, kwide, kl, NULL, NULL), CMAP_EKEYLEN);
		CHECK_EQ(cmap_remove(m, kwide, kl, &o, NULL), CMAP_EKEYLEN);
	}
	CHECK(o == 0xdeadbeef);
	CHECK_EQ(visit_calls, 0);
	same_fixed(m, N);

	/* Wrong value length, for a present and an absent key. */
	uint64_t vwide[2] = {1, 2};
	size_t bad_vlen[] = {0, 1, 4, 7, 9, 16};
	for (size_t i = 0; i < sizeof bad_vlen / sizeof bad_vlen[0]; i++) {
		CHECK_EQ(cmap_set(m, &k, 4, vwide, bad_vlen[i], NULL, NULL),
			 CMAP_EVALLEN);
		CHECK_EQ(cmap_set(m, &knew, 4, vwide, bad_vlen[i], &o, NULL),
			 CMAP_EVALLEN);
	}
	CHECK(o == 0xdeadbeef);
	same_fixed(m, N);

	/* NULL value with a nonzero length. */
	CHECK_EQ(cmap_set(m, &k, 4, NULL, 8, NULL, NULL), CMAP_EINVAL);
	CHECK_EQ(cmap_set(m, &knew, 4, NULL, 8, NULL, NULL), CMAP_EINVAL);
	CHECK_EQ(cmap_set(m, &k, 4, NULL, 8, &o, NULL), CMAP_EINVAL);
	CHECK(o == 0xdeadbeef);
	/* NULL callback. */
	CHECK_EQ(cmap_get_with(m, &k, 4, NULL, NULL), CMAP_EINVAL);
	same_fixed(m, N);

	/* Fixed values: old_len is optional and, when given, reports the
	 * size; a presence-only get (val NULL) works. */
	CHECK_EQ(cmap_get(m, &k, 4, NULL, NULL), CMAP_OK);
	CHECK_EQ(cmap_get(m, &knew, 4, NULL, NULL), CMAP_NOT_FOUND);
	ol = 8;
	CHECK_EQ(cmap_get(m, &k, 4, &o, &ol), CMAP_OK);
	CHECK(o == fval(k));
	CHECK_EQ(ol, 8);
	v = 1234;
	ol = 8;
	CHECK_EQ(cmap_set(m, &k, 4, &v, 8, &o, &ol), CMAP_REPLACED);
	CHECK(o == fval(k));
	CHECK_EQ(ol, 8);
	v = fval(k);
	CHECK_EQ(cmap_set(m, &k, 4, &v, 8, &o, NULL), CMAP_REPLACED);
	CHECK(o == 1234);
	same_fixed(m, N);

	/* cmap_get_batch: fixed maps only; values and found flags. */
	uint32_t keys[6] = {0, N, 3, N + 7, N - 1, 3};
	uint64_t vals[6];
	unsigned char found[6];
	for (int i = 0; i < 6; i++)
		vals[i] = 0xabcdef;
	CHECK_EQ(cmap_get_batch(m, keys, 6, vals, found), 4);
	for (int i = 0; i < 6; i++) {
		bool in = keys[i] < N;
		CHECK_EQ(found[i], in);
		CHECK(vals[i] == (in ? fval(keys[i]) : 0xabcdef));
	}
	CHECK_EQ(cmap_get_batch(m, keys, 6, vals, NULL), 4);
	CHECK_EQ(cmap_get_batch(m, keys, 0, vals, NULL), 0);
	CHECK_EQ(cmap_get_batch(m, NULL, 3, vals, NULL), CMAP_EINVAL);
	CHECK_EQ(cmap_get_batch(m, keys, 3, NULL, NULL), CMAP_EINVAL);
	same_fixed(m, N);
	cmap_free(m);
}

/* ---- bad arguments on variable-length maps ------------------------------ */

static void test_bad_var(void)
{
	const uint32_t N = 100;
	cmap_t *m = new_map(0, 0, NULL);
	fill_var(m, N);
	same_var(m, N);

	char k[32], v[64], buf[64];
	size_t kl = vkey(7, k); /* present; value length 17 */
	size_t want = vval(7, v);
	CHECK_EQ(want, 17);
	char knew[] = "absent key";
	size_t len;

	/* Lengths over the limit (the bytes are never read). */
	CHECK_EQ(cmap_set(m, k, CMAP_MAX_VAR_LEN + 1, v, 1, NULL, NULL),
		 CMAP_EINVAL);
	CHECK_EQ(cmap_set(m, k, (size_t)-1, v, 1, NULL, NULL), CMAP_EINVAL);
	CHECK_EQ(cmap_set(m, k, kl, v, CMAP_MAX_VAR_LEN + 1, NULL, NULL),
		 CMAP_EINVAL);
	CHECK_EQ(cmap_set(m, knew, 3, v, (size_t)-1, NULL, NULL), CMAP_EINVAL);
	len = sizeof buf;
	CHECK_EQ(cmap_get(m, k, CMAP_MAX_VAR_LEN + 1, buf, &len), CMAP_EINVAL);
	CHECK_EQ(cmap_get_with(m, k, CMAP_MAX_VAR_LEN + 1, count_visit, NULL),
		 CMAP_EINVAL);
	CHECK_EQ(cmap_remove(m, k, CMAP_MAX_VAR_LEN + 1, NULL, NULL),
		 CMAP_EINVAL);
	same_var(m, N);

	/* NULL map, key, value; old without old_len; val without vlen. */
	CHECK_EQ(cmap_set(NULL, k, kl, v, 3, NULL, NULL), CMAP_EINVAL);
	CHECK_EQ(cmap_set(m, NULL, kl, v, 3, NULL, NULL), CMAP_EINVAL);
	CHECK_EQ(cmap_set(m, NULL, 0, v, 3, NULL, NULL), CMAP_EINVAL);
	CHECK_EQ(cmap_set(m, k, kl, NULL, 3, NULL, NULL), CMAP_EINVAL);
	CHECK_EQ(cmap_set(m, knew, 3, NULL, 3, NULL, NULL), CMAP_EINVAL);
	CHECK_EQ(cmap_set(m, k, kl, "x", 1, buf, NULL), CMAP_EINVAL);
	CHECK_EQ(cmap_get(m, k, kl, buf, NULL), CMAP_EINVAL);
	CHECK_EQ(cmap_get(m, NULL, kl, buf, &len), CMAP_EINVAL);
	CHECK_EQ(cmap_get_with(m, NULL, kl, count_visit, NULL), CMAP_EINVAL);
	CHECK_EQ(cmap_remove(m, NULL, kl, NULL, NULL), CMAP_EINVAL);
	CHECK_EQ(cmap_remove(m, k, kl, buf, NULL), CMAP_EINVAL);
	CHECK_EQ(cmap_get_batch(m, k, 1, buf, NULL), CMAP_EINVAL);
	CHECK_EQ(visit_calls, 0);
	same_var(m, N);

	/* Too-small buffers: ERANGE, the needed length, nothing changed. */
	for (size_t cap = 0; cap < want; cap += 4) {
		len = cap;
		CHECK_EQ(cmap_get(m, k, kl, buf, &len), CMAP_ERANGE);
		CHECK_EQ(len, want);
		len = cap;
		CHECK_EQ(cmap_set(m, k, kl, "new", 3, buf, &len), CMAP_ERANGE);
		CHECK_EQ(len, want);
		len = cap;
		CHECK_EQ(cmap_remove(m, k, kl, buf, &len), CMAP_ERANGE);
		CHECK_EQ(len, want);
	}
	len = want - 1;
	CHECK_EQ(cmap_set(m, k, kl, "new", 3, buf, &len), CMAP_ERANGE);
	CHECK_EQ(len, want);
	same_var(m, N);
	/* An absent key with a small buffer: a set inserts, a remove finds
	 * nothing. */
	len = 0;
	CHECK_EQ(cmap_remove(m, knew, 3, buf, &len), CMAP_NOT_FOUND);
	len = 0;
	CHECK_EQ(cmap_get(m, knew, 3, buf, &len), CMAP_NOT_FOUND);
	same_var(m, N);
	len = 0;
	CHECK_EQ(cmap_set(m, knew, 3, "abc", 3, buf, &len), CMAP_OK);
	CHECK_EQ(cmap_len(m), N + 1);
	len = 2;
	CHECK_EQ(cmap_remove(m, knew, 3, buf, &len), CMAP_ERANGE);
	CHECK_EQ(len, 3);
	len = 3;
	CHECK_EQ(cmap_remove(m, knew, 3, buf, &len), CMAP_OK);
	CHECK_EQ(len, 3);
	CHECK(memcmp(buf, "abc", 3) == 0);
	same_var(m, N);

	/* Exactly big enough works. */
	len = want;
	memset(buf, 0, sizeof buf);
	CHECK_EQ(cmap_get(m, k, kl, buf, &len), CMAP_OK);
	CHECK_EQ(len, want);
	CHECK(memcmp(buf, v, want) == 0);
	len = want;
	CHECK_EQ(cmap_set(m, k, kl, "new", 3, buf, &len), CMAP_REPLACED);
	CHECK_EQ(len, want);
	CHECK(memcmp(buf, v, want) == 0);
	len = 3;
	CHECK_EQ(cmap_set(m, k, kl, v, want, buf, &len), CMAP_REPLACED);
	CHECK_EQ(len, 3);
	CHECK(memcmp(buf, "new", 3) == 0);
	same_var(m, N);

	/* Empty keys and empty values are ordinary entries. */
	CHECK_EQ(cmap_set(m, "", 0, NULL, 0, NULL, NULL), CMAP_OK);
	CHECK_EQ(cmap_set(m, "z", 1, "", 0, NULL, NULL), CMAP_OK);
	len = 0;
	CHECK_EQ(cmap_get(m, "", 0, buf, &len), CMAP_OK);
	CHECK_EQ(len, 0);
	len = sizeof buf;
	CHECK_EQ(cmap_get(m, "z", 1, buf, &len), CMAP_OK);
	CHECK_EQ(len, 0);
	len = sizeof buf;
	CHECK_EQ(cmap_set(m, "", 0, "full", 4, buf, &len), CMAP_REPLACED);
	CHECK_EQ(len, 0);
	len = sizeof buf;
	CHECK_EQ(cmap_get(m, "", 0, buf, &len), CMAP_OK);
	CHECK(len == 4 && memcmp(buf, "full", 4) == 0);
	CHECK_EQ(cmap_len(m), N + 2);
	len = sizeof buf;
	CHECK_EQ(cmap_remove(m, "", 0, buf, &len), CMAP_OK);
	CHECK(len == 4 && memcmp(buf, "full", 4) == 0);
	CHECK_EQ(cmap_remove(m, "z", 1, NULL, NULL), CMAP_OK);
	CHECK_EQ(cmap_remove(m, "", 0, NULL, NULL), CMAP_NOT_FOUND);
	same_var(m, N);
	cmap_free(m);

	/* Mixed layouts: a fixed key with variable values and vice versa. */
	m = new_map(4, 0, NULL);
	uint32_t ik = 9;
	CHECK_EQ(cmap_set(m, &ik, 3, "v", 1, NULL, NULL), CMAP_EKEYLEN);
	CHECK_EQ(cmap_set(m, &ik, 4, "value", 5, NULL, NULL), CMAP_OK);
	CHECK_EQ(cmap_get(m, &ik, 5, buf, &len), CMAP_EKEYLEN);
	len = 4;
	CHECK_EQ(cmap_get(m, &ik, 4, buf, &len), CMAP_ERANGE);
	CHECK_EQ(len, 5);
	len = 5;
	CHECK_EQ(cmap_get(m, &ik, 4, buf, &len), CMAP_OK);
	CHECK(memcmp(buf, "value", 5) == 0);
	CHECK_EQ(cmap_len(m), 1);
	CHECK_EQ(cmap_validate(m, NULL), CMAP_OK);
	cmap_free(m);

	m = new_map(0, 8, NULL);
	uint64_t val8 = 88, out8 = 0;
	CHECK_EQ(cmap_set(m, "abc", 3, &val8, 4, NULL, NULL), CMAP_EVALLEN);
	CHECK_EQ(cmap_set(m, "abc", 3, &val8, 8, NULL, NULL), CMAP_OK);
	CHECK_EQ(cmap_set(m, "abcd", 4, &val8, 8, NULL, NULL), CMAP_OK);
	len = 8;
	CHECK_EQ(cmap_get(m, "abc", 3, &out8, &len), CMAP_OK);
	CHECK(out8 == 88);
	CHECK_EQ(cmap_get(m, "ab", 2, &out8, &len), CMAP_NOT_FOUND);
	CHECK_EQ(cmap_len(m), 2);
	CHECK_EQ(cmap_validate(m, NULL), CMAP_OK);
	cmap_free(m);
}

/* ---- bad arguments to the read-modify-write calls ----------------------- */

/* A compute function that counts its calls and answers ctx's action with
 * ctx's value. */
struct cact {
	int calls;
	int act;
	const void *val;
	size_t vlen;
};

static int act_fn(const void *key, size_t klen, const void *cur, size_t cur_len,
		  const void **val, size_t *vlen, void *ctx)
{
	struct cact *a = ctx;
	(void)key;
	(void)klen;
	(void)cur;
	(void)cur_len;
	a->calls++;
	*val = a->val;
	*vlen = a->vlen;
	return a->act;
}

/* cmap_compute on key with fn answering act (value val, vlen). */
static int compute_with(cmap_t *m, const void *key, size_t klen, int act,
			const void *val, size_t vlen, int *calls)
{
	struct cact a = {0, act, val, vlen};
	int rc = cmap_compute(m, key, klen, act_fn, &a);
	*calls += a.calls;
	return rc;
}

static void test_bad_rmw_fixed(void)
{
	const uint32_t N = 100;
	cmap_t *m = new_map(4, 8, NULL);
	fill_fixed(m, N);

	uint32_t k = 5, knew = N + 1;
	uint64_t kwide[2] = {5, 0};
	uint64_t v = 77, e = fval(5), o = 0xdeadbeef, vwide[2] = {1, 2};
	int calls = 0;
	struct cact a = {0, CMAP_COMPUTE_SET, &v, 8};
	uint32_t keys[2] = {5, N + 1}; /* present, absent */

	for (int ki = 0; ki < 2; ki++) {
		uint32_t *kp = &keys[ki];
		/* NULL map. */
		CHECK_EQ(cmap_insert(NULL, kp, 4, &v, 8, &o, NULL),
			 CMAP_EINVAL);
		CHECK_EQ(cmap_replace(NULL, kp, 4, &v, 8, &o, NULL),
			 CMAP_EINVAL);
		CHECK_EQ(cmap_cas(NULL, kp, 4, &e, 8, &v, 8, &o, NULL),
			 CMAP_EINVAL);
		CHECK_EQ(cmap_remove_if(NULL, kp, 4, &e, 8), CMAP_EINVAL);
		CHECK_EQ(cmap_compute(NULL, kp, 4, act_fn, &a), CMAP_EINVAL);
		/* NULL key. */
		CHECK_EQ(cmap_insert(m, NULL, 4, &v, 8, &o, NULL), CMAP_EINVAL);
		CHECK_EQ(cmap_replace(m, NULL, 4, &v, 8, &o, NULL),
			 CMAP_EINVAL);
		CHECK_EQ(cmap_cas(m, NULL, 4, &e, 8, &v, 8, &o, NULL),
			 CMAP_EINVAL);
		CHECK_EQ(cmap_remove_if(m, NULL, 4, &e, 8), CMAP_EINVAL);
		CHECK_EQ(cmap_compute(m, NULL, 4, act_fn, &a), CMAP_EINVAL);
		/* NULL compute function. */
		CHECK_EQ(cmap_compute(m, kp, 4, NULL, &a), CMAP_EINVAL);
		CHECK_EQ(a.calls, 0);
		CHECK(o == 0xdeadbeef);
		same_fixed(m, N);

		/* Wrong key length. */
		size_t bad_klen[] = {0, 1, 3, 5, 8, 16};
		for (size_t i = 0; i < sizeof bad_klen / sizeof bad_klen[0];
		     i++) {
			size_t kl = bad_klen[i];
			kwide[0] = *kp;
			CHECK_EQ(cmap_insert(m, kwide, kl, &v, 8, &o, NULL),
				 CMAP_EKEYLEN);
			CHECK_EQ(cmap_replace(m, kwide, kl, &v, 8, &o, NULL),
				 CMAP_EKEYLEN);
			CHECK_EQ(cmap_cas(m, kwide, kl, &e, 8, &v, 8, &o, NULL),
				 CMAP_EKEYLEN);
			CHECK_EQ(cmap_remove_if(m, kwide, kl, &e, 8),
				 CMAP_EKEYLEN);
			CHECK_EQ(cmap_compute(m, kwide, kl, act_fn, &a),
				 CMAP_EKEYLEN);
		}
		CHECK_EQ(a.calls, 0);
		CHECK(o == 0xdeadbeef);
		same_fixed(m, N);

		/* Wrong value lengths: the new value, the expected one and
		 * the desired one, each on its own. */
		size_t bad_vlen[] = {0, 1, 4, 7, 9, 16};
		for (size_t i = 0; i < sizeof bad_vlen / sizeof bad_vlen[0];
		     i++) {
			size_t vl = bad_vlen[i];
			CHECK_EQ(cmap_insert(m, kp, 4, vwide, vl, &o, NULL),
				 CMAP_EVALLEN);
			CHECK_EQ(cmap_replace(m, kp, 4, vwide, vl, &o, NULL),
				 CMAP_EVALLEN);
			CHECK_EQ(cmap_cas(m, kp, 4, &e, vl, &v, 8, &o, NULL),
				 CMAP_EVALLEN);
			CHECK_EQ(cmap_cas(m, kp, 4, &e, 8, vwide, vl, &o, NULL),
				 CMAP_EVALLEN);
			CHECK_EQ(cmap_remove_if(m, kp, 4, &e, vl),
				 CMAP_EVALLEN);
			/* compute SET with a wrong length: fn ran, nothing
			 * stored. */
			int before = calls;
			CHECK_EQ(compute_with(m, kp, 4, CMAP_COMPUTE_SET, vwide,
					      vl, &calls),
				 CMAP_EVALLEN);
			CHECK_EQ(calls, before + 1);
		}
		CHECK(o == 0xdeadbeef);
		same_fixed(m, N);

		/* NULL values with a nonzero length. */
		CHECK_EQ(cmap_insert(m, kp, 4, NULL, 8, &o, NULL), CMAP_EINVAL);
		CHECK_EQ(cmap_replace(m, kp, 4, NULL, 8, &o, NULL),
			 CMAP_EINVAL);
		CHECK_EQ(cmap_cas(m, kp, 4, NULL, 8, &v, 8, &o, NULL),
			 CMAP_EINVAL);
		CHECK_EQ(cmap_cas(m, kp, 4, &e, 8, NULL, 8, &o, NULL),
			 CMAP_EINVAL);
		CHECK_EQ(cmap_remove_if(m, kp, 4, NULL, 8), CMAP_EINVAL);
		CHECK_EQ(
		    compute_with(m, kp, 4, CMAP_COMPUTE_SET, NULL, 8, &calls),
		    CMAP_EINVAL);
		/* Unknown compute answers, even with a valid value. */
		int bad_act[] = {-1, 4, 5, 100, -2147483647 - 1};
		for (size_t i = 0; i < sizeof bad_act / sizeof bad_act[0];
		     i++) {
			int before = calls;
			CHECK_EQ(
			    compute_with(m, kp, 4, bad_act[i], &v, 8, &calls),
			    CMAP_EINVAL);
			CHECK_EQ(calls, before + 1);
		}
		CHECK(o == 0xdeadbeef);
		same_fixed(m, N);
	}

	/* Fixed values: the length pointer is optional and, when given,
	 * reports the size. */
	size_t ol = 1;
	CHECK_EQ(cmap_insert(m, &k, 4, &v, 8, &o, NULL), CMAP_EXISTS);
	CHECK(o == fval(k));
	o = 0;
	CHECK_EQ(cmap_insert(m, &k, 4, &v, 8, &o, &ol), CMAP_EXISTS);
	CHECK(o == fval(k));
	CHECK_EQ(ol, 8);
	e = 12345; /* wrong */
	o = 0;
	CHECK_EQ(cmap_cas(m, &k, 4, &e, 8, &v, 8, &o, NULL), CMAP_MISMATCH);
	CHECK(o == fval(k));
	CHECK_EQ(cmap_remove_if(m, &k, 4, &e, 8), CMAP_MISMATCH);
	same_fixed(m, N);
	CHECK_EQ(cmap_replace(m, &knew, 4, &v, 8, &o, NULL), CMAP_NOT_FOUND);
	CHECK_EQ(cmap_cas(m, &knew, 4, &e, 8, &v, 8, &o, NULL), CMAP_NOT_FOUND);
	CHECK_EQ(cmap_remove_if(m, &knew, 4, &e, 8), CMAP_NOT_FOUND);
	CHECK_EQ(
	    compute_with(m, &knew, 4, CMAP_COMPUTE_REMOVE, NULL, 0, &calls),
	    CMAP_UNCHANGED);
	CHECK_EQ(compute_with(m, &knew, 4, CMAP_COMPUTE_KEEP, NULL, 0, &calls),
		 CMAP_UNCHANGED);
	CHECK_EQ(compute_with(m, &knew, 4, CMAP_COMPUTE_ABORT, &v, 8, &calls),
		 CMAP_ABORTED);
	CHECK_EQ(compute_with(m, &k, 4, CMAP_COMPUTE_ABORT, &v, 8, &calls),
		 CMAP_ABORTED);
	CHECK_EQ(compute_with(m, &k, 4, CMAP_COMPUTE_KEEP, &v, 8, &calls),
		 CMAP_UNCHANGED);
	same_fixed(m, N);
	/* And the successes, undone. */
	o = 0;
	ol = 0;
	CHECK_EQ(cmap_replace(m, &k, 4, &v, 8, &o, &ol), CMAP_REPLACED);
	CHECK(o == fval(k));
	CHECK_EQ(ol, 8);
	e = v;
	v = fval(k);
	CHECK_EQ(cmap_cas(m, &k, 4, &e, 8, &v, 8, NULL, NULL), CMAP_REPLACED);
	CHECK_EQ(cmap_insert(m, &knew, 4, &v, 8, NULL, NULL), CMAP_OK);
	CHECK_EQ(cmap_remove_if(m, &knew, 4, &v, 8), CMAP_OK);
	CHECK_EQ(compute_with(m, &knew, 4, CMAP_COMPUTE_SET, &v, 8, &calls),
		 CMAP_OK);
	CHECK_EQ(compute_with(m, &knew, 4, CMAP_COMPUTE_SET, &e, 8, &calls),
		 CMAP_REPLACED);
	CHECK_EQ(
	    compute_with(m, &knew, 4, CMAP_COMPUTE_REMOVE, NULL, 0, &calls),
	    CMAP_REMOVED);
	same_fixed(m, N);
	cmap_free(m);
}

static void test_bad_rmw_var(void)
{
	const uint32_t N = 100;
	cmap_t *m = new_map(0, 0, NULL);
	fill_var(m, N);

	char k[32], v[64], buf[64];
	size_t kl = vkey(7, k); /* present; value length 17 */
	size_t want = vval(7, v);
	CHECK_EQ(want, 17);
	char knew[] = "absent key";
	size_t len;
	int calls = 0;
	struct cact a = {0, CMAP_COMPUTE_SET, "x", 1};

	/* Lengths over the limit (the bytes are never read). */
	const size_t big = CMAP_MAX_VAR_LEN + 1;
	CHECK_EQ(cmap_insert(m, k, big, v, 1, NULL, NULL), CMAP_EINVAL);
	CHECK_EQ(cmap_insert(m, k, kl, v, big, NULL, NULL), CMAP_EINVAL);
	CHECK_EQ(cmap_replace(m, k, big, v, 1, NULL, NULL), CMAP_EINVAL);
	CHECK_EQ(cmap_replace(m, k, kl, v, big, NULL, NULL), CMAP_EINVAL);
	CHECK_EQ(cmap_cas(m, k, big, v, want, v, 1, NULL, NULL), CMAP_EINVAL);
	CHECK_EQ(cmap_cas(m, k, kl, v, big, v, 1, NULL, NULL), CMAP_EINVAL);
	CHECK_EQ(cmap_cas(m, k, kl, v, want, v, (size_t)-1, NULL, NULL),
		 CMAP_EINVAL);
	CHECK_EQ(cmap_remove_if(m, k, big, v, want), CMAP_EINVAL);
	CHECK_EQ(cmap_remove_if(m, k, kl, v, big), CMAP_EINVAL);
	CHECK_EQ(cmap_compute(m, k, big, act_fn, &a), CMAP_EINVAL);
	CHECK_EQ(a.calls, 0);
	CHECK_EQ(compute_with(m, k, kl, CMAP_COMPUTE_SET, v, big, &calls),
		 CMAP_EINVAL);
	CHECK_EQ(compute_with(m, knew, 3, CMAP_COMPUTE_SET, v, big, &calls),
		 CMAP_EINVAL);
	same_var(m, N);

	/* NULL map, key, values, fn; output buffers without their length
	 * pointer (present and absent keys alike). */
	const char *keys[2] = {k, knew};
	size_t klens[2] = {kl, 3};
	for (int i = 0; i < 2; i++) {
		const char *kp = keys[i];
		size_t kpl = klens[i];
		CHECK_EQ(cmap_insert(NULL, kp, kpl, "x", 1, NULL, NULL),
			 CMAP_EINVAL);
		CHECK_EQ(cmap_replace(NULL, kp, kpl, "x", 1, NULL, NULL),
			 CMAP_EINVAL);
		CHECK_EQ(cmap_cas(NULL, kp, kpl, v, want, "x", 1, NULL, NULL),
			 CMAP_EINVAL);
		CHECK_EQ(cmap_remove_if(NULL, kp, kpl, v, want), CMAP_EINVAL);
		CHECK_EQ(cmap_compute(NULL, kp, kpl, act_fn, &a), CMAP_EINVAL);
		CHECK_EQ(cmap_insert(m, NULL, kpl, "x", 1, NULL, NULL),
			 CMAP_EINVAL);
		CHECK_EQ(cmap_insert(m, NULL, 0, "x", 1, NULL, NULL),
			 CMAP_EINVAL);
		CHECK_EQ(cmap_replace(m, NULL, kpl, "x", 1, NULL, NULL),
			 CMAP_EINVAL);
		CHECK_EQ(cmap_cas(m, NULL, kpl, v, want, "x", 1, NULL, NULL),
			 CMAP_EINVAL);
		CHECK_EQ(cmap_remove_if(m, NULL, kpl, v, want), CMAP_EINVAL);
		CHECK_EQ(cmap_compute(m, NULL, kpl, act_fn, &a), CMAP_EINVAL);
		CHECK_EQ(cmap_compute(m, kp, kpl, NULL, &a), CMAP_EINVAL);
		CHECK_EQ(cmap_insert(m, kp, kpl, NULL, 1, NULL, NULL),
			 CMAP_EINVAL);
		CHECK_EQ(cmap_replace(m, kp, kpl, NULL, 1, NULL, NULL),
			 CMAP_EINVAL);
		CHECK_EQ(cmap_cas(m, kp, kpl, NULL, want, "x", 1, NULL, NULL),
			 CMAP_EINVAL);
		CHECK_EQ(cmap_cas(m, kp, kpl, v, want, NULL, 1, NULL, NULL),
			 CMAP_EINVAL);
		CHECK_EQ(cmap_remove_if(m, kp, kpl, NULL, want), CMAP_EINVAL);
		CHECK_EQ(cmap_insert(m, kp, kpl, "x", 1, buf, NULL),
			 CMAP_EINVAL);
		CHECK_EQ(cmap_replace(m, kp, kpl, "x", 1, buf, NULL),
			 CMAP_EINVAL);
		CHECK_EQ(cmap_cas(m, kp, kpl, "no", 2, "x", 1, buf, NULL),
			 CMAP_EINVAL);
		CHECK_EQ(
		    compute_with(m, kp, kpl, CMAP_COMPUTE_SET, NULL, 1, &calls),
		    CMAP_EINVAL);
		CHECK_EQ(compute_with(m, kp, kpl, 4, "x", 1, &calls),
			 CMAP_EINVAL);
		CHECK_EQ(compute_with(m, kp, kpl, -1, "x", 1, &calls),
			 CMAP_EINVAL);
	}
	CHECK_EQ(a.calls, 0);
	same_var(m, N);

	/* Too-small buffers: ERANGE, the needed length, nothing changed. */
	for (size_t cap = 0; cap < want; cap += 4) {
		len = cap;
		CHECK_EQ(cmap_insert(m, k, kl, "new", 3, buf, &len),
			 CMAP_ERANGE);
		CHECK_EQ(len, want);
		len = cap;
		CHECK_EQ(cmap_replace(m, k, kl, "new", 3, buf, &len),
			 CMAP_ERANGE);
		CHECK_EQ(len, want);
		len = cap;
		CHECK_EQ(cmap_cas(m, k, kl, "no", 2, "new", 3, buf, &len),
			 CMAP_ERANGE);
		CHECK_EQ(len, want);
	}
	len = want - 1;
	CHECK_EQ(cmap_cas(m, k, kl, "no", 2, "new", 3, buf, &len), CMAP_ERANGE);
	CHECK_EQ(len, want);
	same_var(m, N);
	/* No buffer needed: an insert of an absent key, a replace or cas of
	 * an absent one, a cas that matches (the old value goes to the
	 * destructor, not to cur). */
	len = 0;
	CHECK_EQ(cmap_replace(m, knew, 3, "abc", 3, buf, &len), CMAP_NOT_FOUND);
	CHECK_EQ(len, 0);
	CHECK_EQ(cmap_cas(m, knew, 3, "a", 1, "abc", 3, buf, &len),
		 CMAP_NOT_FOUND);
	CHECK_EQ(len, 0);
	same_var(m, N);
	CHECK_EQ(cmap_insert(m, knew, 3, "abc", 3, buf, &len), CMAP_OK);
	CHECK_EQ(len, 0);
	CHECK_EQ(cmap_cas(m, knew, 3, "abc", 3, "abcd", 4, buf, &len),
		 CMAP_REPLACED);
	CHECK_EQ(len, 0);
	len = 3;
	CHECK_EQ(cmap_insert(m, knew, 3, "x", 1, buf, &len), CMAP_ERANGE);
	CHECK_EQ(len, 4);
	len = 4;
	CHECK_EQ(cmap_insert(m, knew, 3, "x", 1, buf, &len), CMAP_EXISTS);
	CHECK(len == 4 && memcmp(buf, "abcd", 4) == 0);
	/* Expected values compare length and bytes. */
	CHECK_EQ(cmap_remove_if(m, knew, 3, "abc", 3), CMAP_MISMATCH);
	CHECK_EQ(cmap_remove_if(m, knew, 3, "abcde", 5), CMAP_MISMATCH);
	CHECK_EQ(cmap_remove_if(m, knew, 3, "abce", 4), CMAP_MISMATCH);
	CHECK_EQ(cmap_remove_if(m, knew, 3, "abcd", 4), CMAP_OK);
	same_var(m, N);

	/* Empty values: NULL with length 0 is one; compute SET of NULL, 0
	 * stores it. */
	CHECK_EQ(compute_with(m, knew, 3, CMAP_COMPUTE_SET, NULL, 0, &calls),
		 CMAP_OK);
	len = sizeof buf;
	CHECK_EQ(cmap_get(m, knew, 3, buf, &len), CMAP_OK);
	CHECK_EQ(len, 0);
	CHECK_EQ(cmap_cas(m, knew, 3, "", 1, "e", 1, NULL, NULL),
		 CMAP_MISMATCH);
	CHECK_EQ(cmap_cas(m, knew, 3, NULL, 0, "e", 1, NULL, NULL),
		 CMAP_REPLACED);
	CHECK_EQ(cmap_replace(m, knew, 3, NULL, 0, NULL, NULL), CMAP_REPLACED);
	CHECK_EQ(cmap_remove_if(m, knew, 3, "", 0), CMAP_OK);
	same_var(m, N);
	cmap_free(m);

	/* A fixed key with variable values: the length pointer is needed. */
	m = new_map(4, 0, NULL);
	uint32_t ik = 9;
	CHECK_EQ(cmap_insert(m, &ik, 4, "value", 5, NULL, NULL), CMAP_OK);
	CHECK_EQ(cmap_insert(m, &ik, 4, "v", 1, buf, NULL), CMAP_EINVAL);
	CHECK_EQ(cmap_insert(m, &ik, 3, "v", 1, NULL, NULL), CMAP_EKEYLEN);
	len = 4;
	CHECK_EQ(cmap_insert(m, &ik, 4, "v", 1, buf, &len), CMAP_ERANGE);
	CHECK_EQ(len, 5);
	CHECK_EQ(cmap_len(m), 1);
	cmap_free(m);
	/* Variable keys with fixed values: it is not. */
	m = new_map(0, 8, NULL);
	uint64_t val8 = 88, out8 = 0, exp8 = 1;
	CHECK_EQ(cmap_insert(m, "abc", 3, &val8, 4, NULL, NULL), CMAP_EVALLEN);
	CHECK_EQ(cmap_insert(m, "abc", 3, &val8, 8, NULL, NULL), CMAP_OK);
	CHECK_EQ(cmap_insert(m, "abc", 3, &exp8, 8, &out8, NULL), CMAP_EXISTS);
	CHECK(out8 == 88);
	out8 = 0;
	CHECK_EQ(cmap_cas(m, "abc", 3, &exp8, 8, &exp8, 8, &out8, NULL),
		 CMAP_MISMATCH);
	CHECK(out8 == 88);
	CHECK_EQ(cmap_cas(m, "abc", 3, &exp8, 4, &exp8, 8, &out8, NULL),
		 CMAP_EVALLEN);
	CHECK_EQ(compute_with(m, "abc", 3, CMAP_COMPUTE_SET, &exp8, 7, &calls),
		 CMAP_EVALLEN);
	CHECK_EQ(cmap_replace(m, "abc", 3, &exp8, 8, &out8, NULL),
		 CMAP_REPLACED);
	CHECK(out8 == 88);
	CHECK_EQ(cmap_len(m), 1);
	CHECK_EQ(cmap_validate(m, NULL), CMAP_OK);
	cmap_free(m);
}

/* ---- bad arguments to the iteration calls ------------------------------- */

static int count_fe(const void *k, size_t kl, const void *v, size_t vl,
		    void *ctx)
{
	(void)k;
	(void)kl;
	(void)v;
	(void)vl;
	(*(long *)ctx)++;
	return 0;
}

/* A retain predicate that tries to write the map: refused. */
static int writing_pred(const void *k, size_t kl, const void *v, size_t vl,
			void *ctx)
{
	cmap_t *m = ctx;
	uint64_t x = 1;
	(void)v;
	(void)vl;
	CHECK_EQ(cmap_set(m, k, kl, &x, 8, NULL, NULL), CMAP_EINVAL);
	CHECK_EQ(cmap_remove(m, k, kl, NULL, NULL), CMAP_EINVAL);
	CHECK_EQ(cmap_clear(m), CMAP_EINVAL);
	CHECK(cmap_get(m, k, kl, NULL, NULL) == CMAP_OK);
	return 1;
}

static void test_bad_iter(void)
{
	const uint32_t N = 100;
	cmap_t *m = new_map(4, 8, NULL);
	fill_fixed(m, N);
	long n = 0;
	cmap_cursor_t c = CMAP_CURSOR_INIT;
	CHECK_EQ(cmap_foreach(NULL, count_fe, &n), CMAP_EINVAL);
	CHECK_EQ(cmap_foreach(m, NULL, &n), CMAP_EINVAL);
	CHECK_EQ(cmap_cursor_next(NULL, &c, 10, count_fe, &n), CMAP_EINVAL);
	CHECK_EQ(cmap_cursor_next(m, NULL, 10, count_fe, &n), CMAP_EINVAL);
	CHECK_EQ(cmap_cursor_next(m, &c, 10, NULL, &n), CMAP_EINVAL);
	CHECK_EQ(cmap_cursor_next(m, &c, 0, count_fe, &n), CMAP_EINVAL);
	CHECK(c.next == 0 && c.done == 0);
	CHECK_EQ(cmap_retain(NULL, count_fe, &n), CMAP_EINVAL);
	CHECK_EQ(cmap_retain(m, NULL, &n), CMAP_EINVAL);
	CHECK_EQ(cmap_clear(NULL), CMAP_EINVAL);
	CHECK_EQ(n, 0);
	same_fixed(m, N);
	/* Writes from a retain predicate are refused; it keeps all. */
	CHECK_EQ(cmap_retain(m, writing_pred, m), 0);
	same_fixed(m, N);
	uint32_t k = 3;
	CHECK_EQ(cmap_foreach(m, count_fe, &n), N);
	CHECK_EQ(n, N);
	cmap_cursor_init(&c);
	n = 0;
	long got, total = 0;
	while ((got = cmap_cursor_next(m, &c, 7, count_fe, &n)) > 0)
		total += got;
	CHECK_EQ(got, 0);
	CHECK(c.done);
	CHECK_EQ(total, N);
	CHECK_EQ(n, N);
	same_fixed(m, N);
	CHECK_EQ(cmap_get(m, &k, 4, NULL, NULL), CMAP_OK);
	CHECK_EQ(cmap_clear(m), N);
	CHECK_EQ(cmap_len(m), 0);
	CHECK_EQ(cmap_clear(m), 0);
	cmap_free(m);
}

/* ---- messages ----------------------------------------------------------- */

static void test_strerror(void)
{
	static const int codes[] = {
#define CODE_(name, val, msg) CMAP_##name,
	    CMAP_STATUS_MAP(CODE_)
#undef CODE_
	};
	static const char *const msgs[] = {
#define MSG_(name, val, msg) msg,
	    CMAP_STATUS_MAP(MSG_)
#undef MSG_
	};
	size_t n = sizeof codes / sizeof codes[0];
	CHECK_EQ(n, 13);
	for (size_t i = 0; i < n; i++) {
		const char *s = cmap_strerror(codes[i]);
		CHECK(s != NULL);
		CHECK(s[0] != '\0');
		CHECK(strcmp(s, msgs[i]) == 0);
		for (size_t j = 0; j < i; j++) {
			CHECK(codes[i] != codes[j]);
			CHECK(strcmp(s, cmap_strerror(codes[j])) != 0);
		}
	}
	/* The read-modify-write outcomes: non-negative, distinct values 3..7
	 * (successes, not errors), each with its own message. */
	static const struct {
		int code, val;
		const char *msg;
	} rmw[] = {
	    {CMAP_EXISTS, 3, "an entry with this key exists; nothing changed"},
	    {CMAP_MISMATCH, 4,
	     "the current value is not the expected one; nothing changed"},
	    {CMAP_REMOVED, 5, "compute removed the entry"},
	    {CMAP_UNCHANGED, 6, "compute left the map unchanged"},
	    {CMAP_ABORTED, 7, "compute aborted; nothing changed"},
	};
	for (size_t i = 0; i < sizeof rmw / sizeof rmw[0]; i++) {
		CHECK_EQ(rmw[i].code, rmw[i].val);
		CHECK(strcmp(cmap_strerror(rmw[i].code), rmw[i].msg) == 0);
		CHECK(strcmp(cmap_strerror(rmw[i].code),
			     cmap_strerror(CMAP_EINVAL)) != 0);
	}
	/* Unknown codes get one generic message, not a known one's. */
	int unknown[] = {8, 100, -6, -100, 12345, -2147483647 - 1, 2147483647};
	const char *generic = cmap_strerror(8);
	for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
		CHECK(cmap_strerror(unknown[i]) != NULL);
		CHECK(strcmp(cmap_strerror(unknown[i]), generic) == 0);
		for (size_t j = 0; j < n; j++)
			CHECK(strcmp(generic, msgs[j]) != 0);
	}
}

/* ---- the basic contract ------------------------------------------------- */

struct seen {
	int calls;
	unsigned char key[64], val[64];
	size_t klen, vlen;
};

static void record_visit(const void *k, size_t kl, const void *v, size_t vl,
			 void *ctx)
{
	struct seen *s = ctx;
	s->calls++;
	CHECK(kl <= sizeof s->key && vl <= sizeof s->val);
	CHECK(k != NULL);
	CHECK(v != NULL || vl == 0);
	memcpy(s->key, k, kl);
	if (vl)
		memcpy(s->val, v, vl);
	s->klen = kl;
	s->vlen = vl;
}

/* Nested use from inside a callback.  The borrowed key and value must stay
 * valid and unchanged while the callback replaces and removes the very
 * entry it is looking at (guarantee 5). */
struct nest {
	cmap_t *m;
	int calls;
	bool var;
};

static void nested_visit(const void *k, size_t kl, const void *v, size_t vl,
			 void *ctx)
{
	struct nest *n = ctx;
	n->calls++;
	unsigned char kcopy[64], vcopy[64], buf[64];
	CHECK(kl <= sizeof kcopy && vl <= sizeof vcopy);
	memcpy(kcopy, k, kl);
	memcpy(vcopy, v, vl);
	size_t len = sizeof buf;

	/* A nested get of the same key sees the same value. */
	CHECK_EQ(cmap_get(n->m, kcopy, kl, buf, &len), CMAP_OK);
	CHECK_EQ(len, vl);
	CHECK(memcmp(buf, vcopy, vl) == 0);
	/* A nested get_with. */
	struct seen s = {0};
	CHECK_EQ(cmap_get_with(n->m, kcopy, kl, record_visit, &s), CMAP_OK);
	CHECK_EQ(s.calls, 1);
	CHECK(s.vlen == vl && memcmp(s.val, vcopy, vl) == 0);

	/* Replace the entry: the borrowed value is unchanged. */
	unsigned char other[64];
	memset(other, 0x5a, sizeof other);
	size_t ol = sizeof buf;
	CHECK_EQ(cmap_set(n->m, kcopy, kl, other, vl, buf, &ol), CMAP_REPLACED);
	CHECK_EQ(ol, vl);
	CHECK(memcmp(buf, vcopy, vl) == 0);
	CHECK(memcmp(v, vcopy, vl) == 0);
	CHECK(memcmp(k, kcopy, kl) == 0);
	len = sizeof buf;
	CHECK_EQ(cmap_get(n->m, kcopy, kl, buf, &len), CMAP_OK);
	CHECK(len == vl && memcmp(buf, other, vl) == 0);

	/* Insert other keys (enough to split buckets around it). */
	for (uint32_t i = 0; i < 200; i++) {
		unsigned char nk[64];
		uint32_t id = 1000 + i; /* not the visited key */
		memset(nk, 0, sizeof nk);
		memcpy(nk, &id, 4);
		nk[4] = 0x77;
		uint64_t nv = i;
		size_t nkl = n->var ? 5 : kl;
		unsigned char nvb[64] = {0};
		memcpy(nvb, &nv, 8);
		CHECK_EQ(
		    cmap_set(n->m, nk, nkl, nvb, n->var ? 8 : vl, NULL, NULL),
		    CMAP_OK);
	}
	/* Remove the visited entry: still readable here. */
	CHECK_EQ(cmap_remove(n->m, kcopy, kl, NULL, NULL), CMAP_OK);
	CHECK_EQ(cmap_get(n->m, kcopy, kl, NULL, NULL), CMAP_NOT_FOUND);
	CHECK(memcmp(v, vcopy, vl) == 0);
	CHECK(memcmp(k, kcopy, kl) == 0);
	/* Collect garbage from inside: must not free what we borrow. */
	(void)cmap_collect(n->m);
	CHECK(memcmp(v, vcopy, vl) == 0);
	CHECK(memcmp(k, kcopy, kl) == 0);
}

static void test_contract(void)
{
	CHECK_EQ(cmap_len(NULL), 0);
	cmap_free(NULL);

	/* Fixed layout. */
	cmap_t *m = new_map(4, 8, NULL);
	CHECK_EQ(cmap_len(m), 0);
	uint32_t k = 42, absent = 43;
	uint64_t v = 1, o = 0;
	CHECK_EQ(cmap_get(m, &k, 4, &o, NULL), CMAP_NOT_FOUND);
	CHECK_EQ(cmap_remove(m, &k, 4, &o, NULL), CMAP_NOT_FOUND);
	CHECK_EQ(cmap_set(m, &k, 4, &v, 8, &o, NULL), CMAP_OK);
	CHECK_EQ(cmap_len(m), 1);
	v = 2;
	CHECK_EQ(cmap_set(m, &k, 4, &v, 8, &o, NULL), CMAP_REPLACED);
	CHECK(o == 1);
	CHECK_EQ(cmap_len(m), 1);
	v = 3;
	CHECK_EQ(cmap_set(m, &k, 4, &v, 8, NULL, NULL), CMAP_REPLACED);
	CHECK_EQ(cmap_get(m, &k, 4, &o, NULL), CMAP_OK);
	CHECK(o == 3);

	struct seen s = {0};
	CHECK_EQ(cmap_get_with(m, &k, 4, record_visit, &s), CMAP_OK);
	CHECK_EQ(s.calls, 1);
	CHECK_EQ(s.klen, 4);
	CHECK_EQ(s.vlen, 8);
	CHECK(memcmp(s.key, &k, 4) == 0);
	CHECK(memcmp(s.val, &v, 8) == 0);
	CHECK_EQ(cmap_get_with(m, &absent, 4, record_visit, &s),
		 CMAP_NOT_FOUND);
	CHECK_EQ(s.calls, 1);

	o = 0;
	CHECK_EQ(cmap_remove(m, &k, 4, &o, NULL), CMAP_OK);
	CHECK(o == 3);
	CHECK_EQ(cmap_len(m), 0);
	o = 99;
	CHECK_EQ(cmap_remove(m, &k, 4, &o, NULL), CMAP_NOT_FOUND);
	CHECK_EQ(cmap_remove(m, &k, 4, NULL, NULL), CMAP_NOT_FOUND);
	CHECK(o == 99);
	CHECK_EQ(cmap_get(m, &k, 4, &o, NULL), CMAP_NOT_FOUND);
	CHECK_EQ(cmap_get_with(m, &k, 4, record_visit, &s), CMAP_NOT_FOUND);
	CHECK_EQ(s.calls, 1);
	/* Remove without copy-out, re-insert after remove. */
	CHECK_EQ(cmap_set(m, &k, 4, &v, 8, NULL, NULL), CMAP_OK);
	CHECK_EQ(cmap_remove(m, &k, 4, NULL, NULL), CMAP_OK);
	CHECK_EQ(cmap_set(m, &k, 4, &v, 8, NULL, NULL), CMAP_OK);
	CHECK_EQ(cmap_len(m), 1);

	/* Nested use inside the callback. */
	struct nest n = {m, 0, false};
	CHECK_EQ(cmap_get_with(m, &k, 4, nested_visit, &n), CMAP_OK);
	CHECK_EQ(n.calls, 1);
	CHECK_EQ(cmap_len(m), 200);
	CHECK_EQ(cmap_get(m, &k, 4, NULL, NULL), CMAP_NOT_FOUND);
	CHECK_EQ(cmap_get_with(m, &k, 4, nested_visit, &n), CMAP_NOT_FOUND);
	CHECK_EQ(n.calls, 1);
	CHECK_EQ(cmap_validate(m, NULL), CMAP_OK);
	cmap_free(m);

	/* Variable layout. */
	m = new_map(0, 0, NULL);
	char buf[64];
	size_t len;
	CHECK_EQ(cmap_set(m, "alpha", 5, "one", 3, NULL, NULL), CMAP_OK);
	len = sizeof buf;
	CHECK_EQ(cmap_set(m, "alpha", 5, "uno!", 4, buf, &len), CMAP_REPLACED);
	CHECK(len == 3 && memcmp(buf, "one", 3) == 0);
	CHECK_EQ(cmap_set(m, "alpha!", 6, "x", 1, NULL, NULL), CMAP_OK);
	CHECK_EQ(cmap_set(m, "alph", 4, "y", 1, NULL, NULL), CMAP_OK);
	CHECK_EQ(cmap_len(m), 3);
	memset(&s, 0, sizeof s);
	CHECK_EQ(cmap_get_with(m, "alpha", 5, record_visit, &s), CMAP_OK);
	CHECK_EQ(s.calls, 1);
	CHECK(s.klen == 5 && memcmp(s.key, "alpha", 5) == 0);
	CHECK(s.vlen == 4 && memcmp(s.val, "uno!", 4) == 0);
	CHECK_EQ(cmap_get_with(m, "alphaa", 6, record_visit, &s),
		 CMAP_NOT_FOUND);
	CHECK_EQ(s.calls, 1);
	n = (struct nest){m, 0, true};
	CHECK_EQ(cmap_get_with(m, "alpha", 5, nested_visit, &n), CMAP_OK);
	CHECK_EQ(n.calls, 1);
	CHECK_EQ(cmap_len(m), 202);
	len = sizeof buf;
	CHECK_EQ(cmap_remove(m, "alph", 4, buf, &len), CMAP_OK);
	CHECK(len == 1 && buf[0] == 'y');
	CHECK_EQ(cmap_remove(m, "alph", 4, buf, &len), CMAP_NOT_FOUND);
	CHECK_EQ(cmap_len(m), 201);
	len = sizeof buf;
	CHECK_EQ(cmap_get(m, "alpha!", 6, buf, &len), CMAP_OK);
	CHECK(len == 1 && buf[0] == 'x');
	CHECK_EQ(cmap_validate(m, NULL), CMAP_OK);
	cmap_free(m);
}

/* ---- typed wrappers ----------------------------------------------------- */

CMAP_TYPED(u32map, uint32_t, uint64_t)

static void test_typed(void)
{
	cmap_hash_fn hashers[] = {NULL, cmap_hash_u32, cmap_hash_city};
	for (int h = 0; h < 3; h++) {
		u32map_t *m = NULL;
		CHECK_EQ(u32map_new(&m, hashers[h]), CMAP_OK);
		CHECK(m != NULL);
		CHECK(u32map_map(m) != NULL);
		CHECK_EQ(u32map_len(m), 0);
		uint64_t old = 0, v = 0;
		const uint32_t n = 5000;
		for (uint32_t k = 0; k < n; k++)
			CHECK_EQ(u32map_set(m, k * 7919u, k, NULL), CMAP_OK);
		CHECK_EQ(u32map_len(m), n);
		CHECK_EQ(u32map_set(m, 7919u * 3, 42, &old), CMAP_REPLACED);
		CHECK(old == 3);
		CHECK_EQ(u32map_set(m, 7919u * 3, 43, &old), CMAP_REPLACED);
		CHECK(old == 42);
		CHECK_EQ(u32map_get(m, 7919u * 3, &v), CMAP_OK);
		CHECK(v == 43);
		CHECK_EQ(u32map_get(m, 1, &v), CMAP_NOT_FOUND);
		CHECK(v == 43);
		for (uint32_t k = 0; k < n; k++) {
			CHECK_EQ(u32map_get(m, k * 7919u, &v), CMAP_OK);
			CHECK(v == (k == 3 ? 43 : k));
		}
		for (uint32_t k = 0; k < n; k += 2) {
			CHECK_EQ(u32map_remove(m, k * 7919u, &old), CMAP_OK);
			CHECK(old == (k == 3 ? 43 : k));
		}
		CHECK_EQ(u32map_remove(m, 0, &old), CMAP_NOT_FOUND);
		CHECK_EQ(u32map_remove(m, 7919u, NULL), CMAP_OK);
		CHECK_EQ(u32map_len(m), n / 2 - 1);
		/* The generic view works on the same map. */
		uint32_t k3 = 7919u * 3;
		CHECK_EQ(cmap_get(u32map_map(m), &k3, 4, &v, NULL), CMAP_OK);
		CHECK(v == 43);
		CHECK_EQ(cmap_validate(u32map_map(m), NULL), CMAP_OK);
		u32map_free(m);
	}
	u32map_free(NULL);
}

/* ---- validate ----------------------------------------------------------- */

static void check_empty(cmap_t *m)
{
	cmap_stats_t st;
	memset(&st, 0xff, sizeof st);
	CHECK_EQ(cmap_validate(m, &st), CMAP_OK);
	CHECK_EQ(cmap_len(m), 0);
	CHECK_EQ(st.entries, 0);
	CHECK_EQ(st.inner_nodes, 1);
	CHECK_EQ(st.buckets, 0);
	CHECK_EQ(st.collision_buckets, 0);
}

static void test_emptied(void)
{
	/* Fixed, identity hash with clustered keys (deep paths), then the
	 * default hasher; variable-length.  Fill, empty, refill, empty. */
	for (int layout = 0; layout < 3; layout++) {
		cmap_t *m = layout == 0	  ? new_map(4, 8, cmap_hash_u32)
			    : layout == 1 ? new_map(4, 8, NULL)
					  : new_map(0, 0, NULL);
		uint32_t n = (uint32_t)scaled(20000);
		check_empty(m);
		for (int round = 0; round < 2; round++) {
			if (layout == 2) {
				fill_var(m, n);
				same_var(m, n);
			} else if (layout == 0) {
				for (uint32_t k = 0; k < n; k++) {
					uint32_t key = k << 12;
					uint64_t v = k;
					CHECK_EQ(cmap_set(m, &key, 4, &v, 8,
							  NULL, NULL),
						 CMAP_OK);
				}
			} else {
				fill_fixed(m, n);
				same_fixed(m, n);
			}
			cmap_stats_t st;
			CHECK_EQ(cmap_validate(m, &st), CMAP_OK);
			CHECK_EQ(st.entries, n);
			CHECK(st.inner_nodes > 1 || n <= 16);
			/* Remove in an order unrelated to insertion. */
			uint32_t step = 7919, i = 0;
			for (uint32_t c = 0; c < n; c++) {
				i = (i + step) % n;
				int rc;
				if (layout == 2) {
					char kb[32];
					size_t kl = vkey(i, kb);
					rc = cmap_remove(m, kb, kl, NULL, NULL);
				} else {
					uint32_t key =
					    layout == 0 ? i << 12 : i;
					rc =
					    cmap_remove(m, &key, 4, NULL, NULL);
				}
				CHECK_EQ(rc, CMAP_OK);
				CHECK_EQ(cmap_len(m), n - c - 1);
			}
			check_empty(m);
		}
		cmap_free(m);
	}
}

static void test_validate_large(void)
{
	cmap_t *m = new_map(4, 8, NULL);
	uint32_t n = (uint32_t)scaled(100000);
	fill_fixed(m, n);
	cmap_stats_t st;
	memset(&st, 0, sizeof st);
	CHECK_EQ(cmap_validate(m, &st), CMAP_OK);
	CHECK_EQ(st.entries, cmap_len(m));
	CHECK_EQ(st.entries, n);
	CHECK(st.buckets > 0);
	CHECK(st.inner_nodes >= 1);
	CHECK(st.max_depth >= 1 && st.max_depth < CMAP_MAX_LEVELS);
	CHECK(st.bytes_in_use > 0);
	CHECK_EQ(st.collision_buckets, 0);
	size_t per_level = 0;
	for (int i = 0; i < CMAP_MAX_LEVELS; i++)
		per_level += st.nodes_per_level[i];
	CHECK_EQ(per_level, st.inner_nodes + st.buckets);
	CHECK(st.threads >= 1);
	/* A second validate with NULL stats; half removed, still valid. */
	CHECK_EQ(cmap_validate(m, NULL), CMAP_OK);
	for (uint32_t k = 0; k < n; k += 2)
		CHECK_EQ(cmap_remove(m, &k, 4, NULL, NULL), CMAP_OK);
	CHECK_EQ(cmap_validate(m, &st), CMAP_OK);
	CHECK_EQ(st.entries, cmap_len(m));
	CHECK_EQ(st.entries, n / 2);
	cmap_free(m);
}

/* Variable-length keys with fixed-size values: the value length pointers
 * may be NULL, as for any fixed-size value, and a value buffer is assumed
 * to hold val_size bytes (found by fuzzing: these returned CMAP_EINVAL or
 * CMAP_ERANGE). */
static void test_varkey_fixedval(void)
{
	cmap_config_t c = {0};
	c.val_size = 8;
	cmap_t *m;
	CHECK_EQ(cmap_new(&m, &c), CMAP_OK);
	uint64_t v = 7, out = 0, old = 0;
	CHECK_EQ(cmap_get(m, "key", 3, &out, NULL), CMAP_NOT_FOUND);
	CHECK_EQ(cmap_set(m, "key", 3, &v, 8, &old, NULL), CMAP_OK);
	v = 8;
	CHECK_EQ(cmap_set(m, "key", 3, &v, 8, &old, NULL), CMAP_REPLACED);
	CHECK_EQ(old, 7);
	CHECK_EQ(cmap_get(m, "key", 3, &out, NULL), CMAP_OK);
	CHECK_EQ(out, 8);
	size_t len = 1; /* ignored for fixed-size values, set on return */
	out = 0;
	CHECK_EQ(cmap_get(m, "key", 3, &out, &len), CMAP_OK);
	CHECK_EQ(out, 8);
	CHECK_EQ(len, 8);
	CHECK_EQ(cmap_remove(m, "key", 3, &old, NULL), CMAP_OK);
	CHECK_EQ(old, 8);
	CHECK_EQ(cmap_remove(m, "key", 3, &old, NULL), CMAP_NOT_FOUND);
	CHECK_EQ(cmap_len(m), 0);
	cmap_free(m);
}

int main(void)
{
	test_new();
	test_bad_fixed();
	test_bad_var();
	test_bad_rmw_fixed();
	test_bad_rmw_var();
	test_bad_iter();
	test_strerror();
	test_contract();
	test_typed();
	test_emptied();
	test_validate_large();
	test_varkey_fixedval();
	printf("test_api: ok\n");
	return 0;
}
