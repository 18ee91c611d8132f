/* Versioning and the config struct's size rule (cmap.h): the run-time
 * version matches the header this test was compiled with, and cmap_new
 * accepts exactly the config sizes it can read. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "cmap.h"
#include "testutil.h"

CMAP_TYPED(vmap, uint32_t, uint64_t)

static void test_version(void)
{
	CHECK(strcmp(cmap_version(), CMAP_VERSION_STRING) == 0);
	CHECK_EQ(cmap_version_number(), CMAP_VERSION_NUMBER);
	int major = -1, minor = -1, patch = -1;
	char tail = 0;
	CHECK_EQ(
	    sscanf(cmap_version(), "%d.%d.%d%c", &major, &minor, &patch, &tail),
	    3);
	CHECK_EQ(major, CMAP_VERSION_MAJOR);
	CHECK_EQ(minor, CMAP_VERSION_MINOR);
	CHECK_EQ(patch, CMAP_VERSION_PATCH);
	CHECK_EQ(CMAP_VERSION_NUMBER, major * 10000 + minor * 100 + patch);
#if CMAP_VERSION_NUMBER < 200
#error "CMAP_VERSION_NUMBER must be usable in #if"
#endif
}

/* Every field but size is zero: the defaults. */
static void check_defaults(const cmap_config_t *c)
{
	CHECK_EQ(c->size, sizeof(cmap_config_t));
	CHECK(c->key_size == 0 && c->val_size == 0 && c->seed == 0);
	CHECK(c->hash == NULL && c->eq == NULL);
	CHECK(c->key_dtor == NULL && c->val_dtor == NULL &&
	      c->dtor_ctx == NULL);
	CHECK(c->alloc == NULL && c->free == NULL && c->alloc_ctx == NULL);
	CHECK_EQ(c->flags, 0);
}

/* A map from c works: one entry in, out and removed. */
static void expect_works(const cmap_config_t *c)
{
	cmap_t *m = NULL;
	CHECK_EQ(cmap_new(&m, c), CMAP_OK);
	uint32_t k = 7;
	uint64_t v = 42, got = 0;
	size_t len = sizeof got;
	CHECK_EQ(cmap_set(m, &k, sizeof k, &v, sizeof v, NULL, NULL), CMAP_OK);
	CHECK_EQ(cmap_get(m, &k, sizeof k, &got, &len), CMAP_OK);
	CHECK_EQ(got, 42);
	CHECK_EQ(cmap_remove(m, &k, sizeof k, NULL, NULL), CMAP_OK);
	CHECK_EQ(cmap_len(m), 0);
	cmap_free(m);
}

static void expect_rejected(const cmap_config_t *c)
{
	cmap_t *m = (cmap_t *)&m; /* must be cleared */
	CHECK_EQ(cmap_new(&m, c), CMAP_EINVAL);
	CHECK(m == NULL);
}

static void test_config_size(void)
{
	cmap_config_t a = CMAP_CONFIG_INIT, b;
	memset(&b, 0xa5, sizeof b);
	cmap_config_init(&b);
	check_defaults(&a);
	check_defaults(&b);

	a.key_size = 4;
	a.val_size = 8;
	expect_works(&a);

	/* 0: the 0.2 layout, as written by `cmap_config_t c = {0}`. */
	cmap_config_t z = {0};
	z.key_size = 4;
	z.val_size = 8;
	z.hash = cmap_hash_u32;
	expect_works(&z);

	/* A config from a newer header (a field appended) would be read
	 * past this library's struct; any other size is a caller bug. */
	struct {
		cmap_config_t cfg;
		uint64_t appended;
	} newer;
	memset(&newer, 0, sizeof newer);
	newer.cfg.size = sizeof newer;
	expect_rejected(&newer.cfg);
	const size_t bad[] = {1,
			      sizeof(size_t),
			      sizeof(cmap_config_t) - sizeof(size_t),
			      sizeof(cmap_config_t) - 1,
			      sizeof(cmap_config_t) + 1,
			      sizeof(cmap_config_t) + sizeof(size_t),
			      (size_t)-1};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		a.size = bad[i];
		expect_rejected(&a);
	}
	/* The other checks still apply to a sized config. */
	cmap_config_init(&a);
	a.key_size = CMAP_MAX_FIXED_SIZE + 1;
	expect_rejected(&a);
}

static void test_typed(void)
{
	vmap_t *m = NULL;
	CHECK_EQ(vmap_new(&m, cmap_hash_u32), CMAP_OK);
	uint64_t v = 0;
	CHECK_EQ(vmap_set(m, 1, 10, NULL), CMAP_OK);
	CHECK_EQ(vmap_set(m, 1, 11, &v), CMAP_REPLACED);
	CHECK_EQ(v, 10);
	CHECK_EQ(vmap_get(m, 1, &v), CMAP_OK);
	CHECK_EQ(v, 11);
	CHECK_EQ(vmap_len(m), 1);
	CHECK_EQ(cmap_validate(vmap_map(m), NULL), CMAP_OK);
	CHECK_EQ(vmap_remove(m, 1, &v), CMAP_OK);
	CHECK_EQ(v, 11);
	CHECK_EQ(vmap_len(m), 0);
	vmap_free(m);
}

int main(void)
{
	test_version();
	test_config_size();
	test_typed();
	printf("test_version: ok (cmap %s)\n", cmap_version());
	return 0;
}
