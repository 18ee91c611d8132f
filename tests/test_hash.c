/*
 * Hashers: CityHash v1.1 against every row of the reference table in
 * testdata/ (CityHash64, WithSeed, WithSeeds), identity hashers, XXH3 and
 * the spread of the low bits the trie's root indexes.
 */
#include <stdint.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "cmap.h"
#include "testutil.h"

static unsigned char data[1 << 20];

/* The reference table's input, as its header describes. */
static void make_data(void)
{
	uint64_t a = 9, b = 777, k0 = 0xc3a5c85c97cb3127ull;
	for (size_t i = 0; i < sizeof data; i++) {
		a += b;
		b += a;
		a = (a ^ (a >> 41)) * k0;
		b = (b ^ (b >> 41)) * k0 + i;
		data[i] = (uint8_t)(b >> 37);
	}
}

static int test_city_vectors(void)
{
	const uint64_t seed0 = 1234567, seed1 = 0xc3a5c85c97cb3127ull;
	FILE *f = fopen(CMAP_TESTDATA "/cityhash-1.1-vectors.tsv", "r");
	CHECK(f != NULL);
	char line[512];
	int rows = 0, data_lines = 0;
	while (fgets(line, sizeof line, f)) {
		if (line[0] == '#' || !strncmp(line, "offset", 6))
			continue;
		data_lines++;
		unsigned long off, len;
		unsigned long long h64, hs, hss;
		CHECK(sscanf(line, "%lu %lu %llx %llx %llx", &off, &len, &h64,
			     &hs, &hss) == 5);
		CHECK(off + len <= sizeof data);
		if (cmap_city64(data + off, len) != h64 ||
		    cmap_city64_seed(data + off, len, seed0) != hs ||
		    cmap_city64_seeds(data + off, len, seed0, seed1) != hss) {
			fprintf(stderr, "CityHash mismatch: %s", line);
			abort();
		}
		CHECK(cmap_hash_city(data + off, len, seed0) == hs);
		rows++;
	}
	fclose(f);
	CHECK(rows >= 300);
	CHECK_EQ(rows, data_lines);
	return rows;
}

static void test_identity(void)
{
	uint32_t a = 0, b = UINT32_MAX, c = 123456789;
	uint64_t x = 0, y = UINT64_MAX, z = 0x0123456789abcdefull;
	CHECK(cmap_hash_u32(&a, 4, 99) == 0);
	CHECK(cmap_hash_u32(&b, 4, 99) == UINT32_MAX);
	CHECK(cmap_hash_u32(&c, 4, 0) == 123456789);
	CHECK(cmap_hash_u64(&x, 8, 1) == 0);
	CHECK(cmap_hash_u64(&y, 8, 1) == UINT64_MAX);
	CHECK(cmap_hash_u64(&z, 8, 7) == z);
	/* Never reads past len. */
	unsigned char one = 0xab;
	CHECK(cmap_hash_u64(&one, 1, 0) == 0xab);
}

static void test_xxh3(void)
{
	for (size_t len = 0; len < 300; len += 7)
		CHECK(cmap_hash_xxh3(data, len, 42) ==
		      XXH3_64bits_withSeed(data, len, 42));
	int differ = 0;
	for (uint32_t k = 0; k < 16; k++)
		differ += cmap_hash_xxh3(&k, 4, 1) != cmap_hash_xxh3(&k, 4, 2);
	CHECK_EQ(differ, 16);
}

/* The root indexes the low 5 bits: sequential keys must spread evenly. */
static void test_spread(cmap_hash_fn h)
{
	long count[32] = {0};
	const long n = 100000;
	for (uint32_t k = 0; k < n; k++)
		count[h(&k, 4, 0x5eed) & 31]++;
	for (int i = 0; i < 32; i++) {
		CHECK(count[i] > n / 32 * 85 / 100);
		CHECK(count[i] < n / 32 * 115 / 100);
	}
}

int main(void)
{
	make_data();
	int rows = test_city_vectors();
	test_identity();
	test_xxh3();
	test_spread(cmap_hash_xxh3);
	test_spread(cmap_hash_city);
	test_spread(cmap_hash_u32);
	printf("test_hash: ok (%d CityHash v1.1 rows)\n", rows);
	return 0;
}
