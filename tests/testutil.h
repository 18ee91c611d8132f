/* Shared helpers for the tests: a failing check that reports where, a
 * seeded RNG, and the scale knob (CMAP_TEST_SCALE, a divisor for iteration
 * counts, set by `make test` for the slow TSan and valgrind runs). */
#ifndef CMAP_TESTUTIL_H
#define CMAP_TESTUTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond)                                                            \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, \
				__LINE__, #cond);                              \
			abort();                                               \
		}                                                              \
	} while (0)

#define CHECK_EQ(a, b)                                                         \
	do {                                                                   \
		long long a_ = (long long)(a), b_ = (long long)(b);            \
		if (a_ != b_) {                                                \
			fprintf(stderr,                                        \
				"%s:%d: CHECK failed: %s == %s "               \
				"(%lld != %lld)\n",                            \
				__FILE__, __LINE__, #a, #b, a_, b_);           \
			abort();                                               \
		}                                                              \
	} while (0)

/* splitmix64: tiny, seeded, good enough for test workloads. */
static inline uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* The murmur3 64-bit finaliser: a bijection, for deriving values (and hash
 * tables' slots) from keys. */
static inline uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return x;
}

/* Iteration count n divided by CMAP_TEST_SCALE (default 1), at least 1. */
static inline long scaled(long n)
{
	const char *s = getenv("CMAP_TEST_SCALE");
	long d = s ? atol(s) : 1;
	if (d < 1)
		d = 1;
	return n / d > 0 ? n / d : 1;
}

#endif
