/*
 * Sequential model test: millions of random operations against a simple
 * reference (a direct-indexed array over a bounded key space), checking
 * every return code, value and cmap_len, and cmap_validate now and then.
 * Configurations: inline u32 -> u64 (identity and default hashers), inline
 * 16-byte keys -> 24-byte values, variable-length keys and values, and a
 * constant hasher (every key collides) for both layouts.  Each run grows the
 * trie (insert-heavy), churns it, then shrinks it to empty, which must leave
 * a bare root.
 */
#include <stdbool.h>
#include <string.h>

#include "cmap.h"
#include "testutil.h"

enum layout { U32, WIDE, VAR };

struct ref {
	unsigned char *has;
	uint64_t *ver; /* value version: values are derived from (key, ver) */
	size_t len;
};

static uint64_t const_hash(const void *k, size_t n, uint64_t s)
{
	(void)k;
	(void)n;
	(void)s;
	return 42;
}

/* Key bytes for key id i: the layout decides the shape. */
static size_t make_key(enum layout l, uint32_t i, unsigned char *buf)
{
	if (l == U32) {
		memcpy(buf, &i, 4);
		return 4;
	}
	if (l == WIDE) {
		for (int j = 0; j < 16; j++)
			buf[j] = (unsigned char)(i * 131u + (unsigned)j * 7u);
		memcpy(buf + 3, &i, 4); /* unique */
		return 16;
	}
	size_t n = 4 + i % 37; /* 4..40 bytes */
	for (size_t j = 0; j < n; j++)
		buf[j] = (unsigned char)('a' + (i + j) % 26);
	memcpy(buf, &i, 4);
	return n;
}

static size_t make_val(enum layout l, uint32_t i, uint64_t ver,
		       unsigned char *buf)
{
	uint64_t x = (uint64_t)i << 32 ^ ver;
	if (l == U32) {
		memcpy(buf, &x, 8);
		return 8;
	}
	size_t n = l == WIDE ? 24 : (size_t)((i ^ ver) % 65); /* 0..64 */
	for (size_t j = 0; j < n; j++)
		buf[j] = (unsigned char)(x >> (8 * (j % 8))) ^ (unsigned char)j;
	return n;
}

static void check_val(enum layout l, uint32_t i, uint64_t ver,
		      const unsigned char *got, size_t len)
{
	unsigned char want[64];
	size_t n = make_val(l, i, ver, want);
	CHECK_EQ(len, n);
	CHECK(memcmp(got, want, n) == 0);
}

static void visit(const void *k, size_t kl, const void *v, size_t vl, void *ctx)
{
	unsigned char *out = ctx;
	(void)k;
	(void)kl;
	CHECK(vl <= 64);
	memcpy(out + 8, v, vl);
	memcpy(out, &vl, sizeof vl);
}

static void run(enum layout l, cmap_hash_fn hash, uint32_t space, long ops)
{
	cmap_config_t c = {0};
	c.key_size = l == U32 ? 4 : l == WIDE ? 16 : 0;
	c.val_size = l == U32 ? 8 : l == WIDE ? 24 : 0;
	c.hash = hash;
	cmap_t *m = NULL;
	CHECK_EQ(cmap_new(&m, &c), CMAP_OK);
	struct ref r = {calloc(space, 1), calloc(space, 8), 0};
	CHECK(r.has && r.ver);
	uint64_t seed = space * 7919u + (uint64_t)l;
	unsigned char kb[64], vb[64], ob[64 + 16];
	cmap_stats_t st;
	/* Phases: 0 grow (70% sets), 1 churn, 2 shrink (70% removes). */
	for (int phase = 0; phase < 3; phase++) {
		for (long n = 0; n < ops; n++) {
			uint64_t x = rng_next(&seed);
			uint32_t i = (uint32_t)(x % space);
			unsigned p = (unsigned)(x >> 40) % 100;
			size_t kl = make_key(l, i, kb);
			unsigned op = phase == 0   ? (p < 70   ? 0
						      : p < 90 ? 1
							       : 2)
				      : phase == 1 ? (p < 34   ? 0
						      : p < 67 ? 1
							       : 2)
						   : (p < 10   ? 0
						      : p < 30 ? 1
							       : 2);
			bool want_old = x >> 63;
			if (op == 0) {
				uint64_t ver = rng_next(&seed);
				size_t vl = make_val(l, i, ver, vb);
				size_t ol = sizeof ob;
				int rc = cmap_set(m, kb, kl, vb, vl,
						  want_old ? ob : NULL,
						  want_old ? &ol : NULL);
				CHECK_EQ(rc,
					 r.has[i] ? CMAP_REPLACED : CMAP_OK);
				if (r.has[i] && want_old)
					check_val(l, i, r.ver[i], ob,
						  l == VAR ? ol : c.val_size);
				if (!r.has[i])
					r.len++;
				r.has[i] = 1;
				r.ver[i] = ver;
			} else if (op == 1) {
				if (x & 1) {
					size_t ol = sizeof ob;
					int rc = cmap_get(m, kb, kl, ob, &ol);
					CHECK_EQ(rc, r.has[i] ? CMAP_OK
							      : CMAP_NOT_FOUND);
					if (r.has[i])
						check_val(l, i, r.ver[i], ob,
							  ol);
				} else {
					size_t vl = (size_t)-1;
					int rc =
					    cmap_get_with(m, kb, kl, visit, ob);
					CHECK_EQ(rc, r.has[i] ? CMAP_OK
							      : CMAP_NOT_FOUND);
					if (r.has[i]) {
						memcpy(&vl, ob, sizeof vl);
						check_val(l, i, r.ver[i],
							  ob + 8, vl);
					}
				}
			} else {
				size_t ol = sizeof ob;
				int rc =
				    cmap_remove(m, kb, kl, want_old ? ob : NULL,
						want_old ? &ol : NULL);
				CHECK_EQ(rc,
					 r.has[i] ? CMAP_OK : CMAP_NOT_FOUND);
				if (r.has[i]) {
					if (want_old)
						check_val(
						    l, i, r.ver[i], ob,
						    l == VAR ? ol : c.val_size);
					r.len--;
				}
				r.has[i] = 0;
			}
			CHECK_EQ(cmap_len(m), r.len);
			if (n % 50000 == 49999)
				CHECK_EQ(cmap_validate(m, &st), CMAP_OK);
		}
		CHECK_EQ(cmap_validate(m, &st), CMAP_OK);
		CHECK_EQ(st.entries, r.len);
	}
	/* Full comparison, then remove the rest: a bare root must remain. */
	for (uint32_t i = 0; i < space; i++) {
		size_t kl = make_key(l, i, kb), ol = sizeof ob;
		int rc = cmap_get(m, kb, kl, ob, &ol);
		CHECK_EQ(rc, r.has[i] ? CMAP_OK : CMAP_NOT_FOUND);
		if (r.has[i]) {
			check_val(l, i, r.ver[i], ob, ol);
			CHECK_EQ(cmap_remove(m, kb, kl, NULL, NULL), CMAP_OK);
		}
	}
	CHECK_EQ(cmap_len(m), 0);
	CHECK_EQ(cmap_validate(m, &st), CMAP_OK);
	CHECK_EQ(st.entries, 0);
	CHECK_EQ(st.inner_nodes, 1);
	CHECK_EQ(st.buckets, 0);
	cmap_free(m);
	free(r.has);
	free(r.ver);
}

int main(void)
{
	/* >= 1 M operations in total for each fixed layout at scale 1. */
	long big = scaled(400000), small = scaled(40000);
	run(U32, cmap_hash_u32, 100000, big);
	run(U32, NULL, 100000, big);
	run(U32, cmap_hash_u32, 3000, small);
	run(WIDE, NULL, 50000, big);
	run(VAR, NULL, 50000, big);
	run(VAR, cmap_hash_xxh3, 500, small);
	run(U32, const_hash, 300, small / 4);
	run(VAR, const_hash, 300, small / 4);
	printf("test_seq: ok\n");
	return 0;
}
