/*
 * Hash functions: XXH3-64 (the default, from the system's libxxhash, inlined
 * so there is no link dependency), CityHash v1.1 (the Rust crate cmap's
 * default, bit-compatible with Google's reference: see the test vectors in
 * testdata/), and identity hashers for integer keys.
 */
#include <string.h>

#include "internal.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

CMAP_API uint64_t cmap_hash_xxh3(const void *key, size_t len, uint64_t seed)
{
	return XXH3_64bits_withSeed(key, len, seed);
}

/* Identity hashers: the trie indexes the low bits first, so consecutive
 * integers spread over the root's slots. */
CMAP_API uint64_t cmap_hash_u32(const void *key, size_t len, uint64_t seed)
{
	uint32_t x = 0;
	(void)seed;
	if (likely(len == 4))
		memcpy(&x, key, 4); /* a single load, no call */
	else
		memcpy(&x, key, len < 4 ? len : 4);
	return x;
}

CMAP_API uint64_t cmap_hash_u64(const void *key, size_t len, uint64_t seed)
{
	uint64_t x = 0;
	(void)seed;
	if (likely(len == 8))
		memcpy(&x, key, 8);
	else
		memcpy(&x, key, len < 8 ? len : 8);
	return x;
}

/* ---- CityHash v1.1 -------------------------------------------------- */

static const uint64_t k0 = 0xc3a5c85c97cb3127ull;
static const uint64_t k1 = 0xb492b66fbe98f273ull;
static const uint64_t k2 = 0x9ae16a3b2f90404full;

/* CityHash is defined on little-endian loads. */
static inline uint64_t fetch64(const unsigned char *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	v = __builtin_bswap64(v);
#endif
	return v;
}

static inline uint64_t fetch32(const unsigned char *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	v = __builtin_bswap32(v);
#endif
	return v;
}

static inline uint64_t rot(uint64_t v, unsigned s)
{
	return s == 0 ? v : (v >> s) | (v << (64 - s));
}

static inline uint64_t shift_mix(uint64_t v)
{
	return v ^ (v >> 47);
}

static inline uint64_t len16_mul(uint64_t u, uint64_t v, uint64_t mul)
{
	uint64_t a = (u ^ v) * mul;
	a ^= a >> 47;
	uint64_t b = (v ^ a) * mul;
	b ^= b >> 47;
	return b * mul;
}

/* Hash128to64 of the reference. */
static inline uint64_t len16(uint64_t u, uint64_t v)
{
	return len16_mul(u, v, 0x9ddfea08eb382d69ull);
}

static uint64_t len0to16(const unsigned char *s, size_t len)
{
	if (len >= 8) {
		uint64_t mul = k2 + len * 2;
		uint64_t a = fetch64(s) + k2;
		uint64_t b = fetch64(s + len - 8);
		uint64_t c = rot(b, 37) * mul + a;
		uint64_t d = (rot(a, 25) + b) * mul;
		return len16_mul(c, d, mul);
	}
	if (len >= 4) {
		uint64_t mul = k2 + len * 2;
		uint64_t a = fetch32(s);
		return len16_mul(len + (a << 3), fetch32(s + len - 4), mul);
	}
	if (len > 0) {
		uint8_t a = s[0], b = s[len >> 1], c = s[len - 1];
		uint32_t y = (uint32_t)a + ((uint32_t)b << 8);
		uint32_t z = (uint32_t)len + ((uint32_t)c << 2);
		return shift_mix(y * k2 ^ z * k0) * k2;
	}
	return k2;
}

static uint64_t len17to32(const unsigned char *s, size_t len)
{
	uint64_t mul = k2 + len * 2;
	uint64_t a = fetch64(s) * k1;
	uint64_t b = fetch64(s + 8);
	uint64_t c = fetch64(s + len - 8) * mul;
	uint64_t d = fetch64(s + len - 16) * k2;
	return len16_mul(rot(a + b, 43) + rot(c, 30) + d,
			 a + rot(b + k2, 18) + c, mul);
}

struct pair {
	uint64_t first, second;
};

static inline struct pair weak32(uint64_t w, uint64_t x, uint64_t y, uint64_t z,
				 uint64_t a, uint64_t b)
{
	a += w;
	b = rot(b + a + z, 21);
	uint64_t c = a;
	a += x;
	a += y;
	b += rot(a, 44);
	return (struct pair){a + z, b + c};
}

static inline struct pair weak32s(const unsigned char *s, uint64_t a,
				  uint64_t b)
{
	return weak32(fetch64(s), fetch64(s + 8), fetch64(s + 16),
		      fetch64(s + 24), a, b);
}

static uint64_t len33to64(const unsigned char *s, size_t len)
{
	uint64_t mul = k2 + len * 2;
	uint64_t a = fetch64(s) * k2;
	uint64_t b = fetch64(s + 8);
	uint64_t c = fetch64(s + len - 24);
	uint64_t d = fetch64(s + len - 32);
	uint64_t e = fetch64(s + 16) * k2;
	uint64_t f = fetch64(s + 24) * 9;
	uint64_t g = fetch64(s + len - 8);
	uint64_t h = fetch64(s + len - 16) * mul;
	uint64_t u = rot(a + g, 43) + (rot(b, 30) + c) * 9;
	uint64_t v = ((a + g) ^ d) + f + 1;
	uint64_t w = __builtin_bswap64((u + v) * mul) + h;
	uint64_t x = rot(e + f, 42) + c;
	uint64_t y = (__builtin_bswap64((v + w) * mul) + g) * mul;
	uint64_t z = e + f + c;
	a = __builtin_bswap64((x + z) * mul + y) + b;
	b = shift_mix((z + a) * mul + d + h) * mul;
	return b + x;
}

CMAP_API uint64_t cmap_city64(const void *buf, size_t len)
{
	const unsigned char *s = buf;
	if (len <= 16)
		return len0to16(s, len);
	if (len <= 32)
		return len17to32(s, len);
	if (len <= 64)
		return len33to64(s, len);
	/* Longer inputs: 56 bytes of state, 64 input bytes per round, the
	 * last 64 bytes mixed in first. */
	uint64_t x = fetch64(s + len - 40);
	uint64_t y = fetch64(s + len - 16) + fetch64(s + len - 56);
	uint64_t z = len16(fetch64(s + len - 48) + len, fetch64(s + len - 24));
	struct pair v = weak32s(s + len - 64, len, z);
	struct pair w = weak32s(s + len - 32, y + k1, x);
	x = x * k1 + fetch64(s);
	len = (len - 1) & ~(size_t)63;
	do {
		x = rot(x + y + v.first + fetch64(s + 8), 37) * k1;
		y = rot(y + v.second + fetch64(s + 48), 42) * k1;
		x ^= w.second;
		y += v.first + fetch64(s + 40);
		z = rot(z + w.first, 33) * k1;
		v = weak32s(s, v.second * k1, x + w.first);
		w = weak32s(s + 32, z + w.second, y + fetch64(s + 16));
		uint64_t t = z;
		z = x;
		x = t;
		s += 64;
		len -= 64;
	} while (len != 0);
	return len16(len16(v.first, w.first) + shift_mix(y) * k1 + z,
		     len16(v.second, w.second) + x);
}

CMAP_API uint64_t cmap_city64_seeds(const void *buf, size_t len, uint64_t seed0,
				    uint64_t seed1)
{
	return len16(cmap_city64(buf, len) - seed0, seed1);
}

CMAP_API uint64_t cmap_city64_seed(const void *buf, size_t len, uint64_t seed)
{
	return cmap_city64_seeds(buf, len, k2, seed);
}

CMAP_API uint64_t cmap_hash_city(const void *key, size_t len, uint64_t seed)
{
	return cmap_city64_seed(key, len, seed);
}
