/* A program that uses an installed (or add_subdirectory'd) cmap the way a
 * user would.  It is valid C11 and C++17: the packaging tests build it both
 * ways, against the shared and the static library, which checks that the
 * header stays clean C++ and that the link flags are complete. */
#include <cmap.h>

#include <stdio.h>
#include <string.h>

CMAP_TYPED(consumer_u64, uint64_t, uint64_t)

static int fails;

static void expect(int ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "consumer: FAILED: %s\n", what);
		fails++;
	}
}

static void strings(void)
{
	cmap_config_t cfg = CMAP_CONFIG_INIT;
	cmap_t *m = NULL;
	expect(cmap_new(&m, &cfg) == CMAP_OK, "cmap_new");
	if (!m)
		return;
	expect(cmap_set(m, "alice", 5, "admin", 5, NULL, NULL) == CMAP_OK,
	       "insert");
	expect(cmap_set(m, "alice", 5, "owner", 5, NULL, NULL) == CMAP_REPLACED,
	       "replace");
	char buf[16];
	size_t len = sizeof buf;
	expect(cmap_get(m, "alice", 5, buf, &len) == CMAP_OK && len == 5 &&
		   memcmp(buf, "owner", 5) == 0,
	       "get");
	len = 2;
	expect(cmap_get(m, "alice", 5, buf, &len) == CMAP_ERANGE && len == 5,
	       "get into a small buffer");
	len = sizeof buf;
	expect(cmap_remove(m, "alice", 5, buf, &len) == CMAP_OK && len == 5,
	       "remove");
	expect(cmap_get(m, "alice", 5, NULL, NULL) == CMAP_NOT_FOUND,
	       "get after remove");
	expect(cmap_len(m) == 0, "len");
	cmap_free(m);
}

static int bump(uint64_t k, const uint64_t *cur, uint64_t *out, void *ctx)
{
	(void)k;
	(void)ctx;
	*out = cur ? *cur + 1 : 1;
	return CMAP_COMPUTE_SET;
}

static void typed(void)
{
	consumer_u64_t *m = NULL;
	expect(consumer_u64_new(&m, cmap_hash_u64) == CMAP_OK, "typed new");
	if (!m)
		return;
	uint64_t v = 0;
	for (uint64_t k = 0; k < 1000; k++)
		expect(consumer_u64_set(m, k, k * 3, NULL) == CMAP_OK,
		       "typed set");
	expect(consumer_u64_get(m, 999, &v) == CMAP_OK && v == 2997,
	       "typed get");
	expect(consumer_u64_remove(m, 999, &v) == CMAP_OK, "typed remove");
	expect(consumer_u64_len(m) == 999, "typed len");
	expect(consumer_u64_insert(m, 1, 7, &v) == CMAP_EXISTS && v == 3,
	       "typed insert");
	expect(consumer_u64_cas(m, 1, 3, 4, NULL) == CMAP_REPLACED,
	       "typed cas");
	expect(consumer_u64_update(m, 1, bump, NULL) == CMAP_REPLACED &&
		   consumer_u64_get(m, 1, &v) == CMAP_OK && v == 5,
	       "typed update");
	expect(cmap_validate(consumer_u64_map(m), NULL) == CMAP_OK, "validate");
	consumer_u64_free(m);
}

int main(void)
{
	/* The header compiled in and the library linked must agree. */
	if (strcmp(cmap_version(), CMAP_VERSION_STRING) != 0 ||
	    cmap_version_number() != CMAP_VERSION_NUMBER) {
		fprintf(stderr, "consumer: header %s, library %s\n",
			CMAP_VERSION_STRING, cmap_version());
		return 1;
	}
	strings();
	typed();
	if (fails)
		return 1;
	printf("consumer: cmap %s ok\n", cmap_version());
	return 0;
}
