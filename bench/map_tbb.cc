// oneTBB's concurrent_hash_map (per-bucket reader-writer locks), u32 -> u64
// with the common 64-bit mixer.
#include <oneapi/tbb/concurrent_hash_map.h>

#include "maps.h"

namespace
{

struct mix {
	size_t hash(uint32_t k) const { return bench_mix64(k); }
	bool equal(uint32_t a, uint32_t b) const { return a == b; }
};

using table = tbb::concurrent_hash_map<uint32_t, uint64_t, mix>;

void *create(uint64_t n)
{
	auto *t = new table();
	t->rehash(n);
	return t;
}

void destroy(void *m)
{
	delete static_cast<table *>(m);
}

int set(void *m, uint32_t k, uint64_t v)
{
	table::accessor a;
	bool inserted = static_cast<table *>(m)->insert(a, k);
	a->second = v;
	return inserted ? 1 : 0;
}

int get(void *m, uint32_t k, uint64_t *v)
{
	table::const_accessor a;
	if (!static_cast<table *>(m)->find(a, k))
		return 0;
	*v = a->second;
	return 1;
}

int rem(void *m, uint32_t k)
{
	return static_cast<table *>(m)->erase(k);
}

size_t len(void *m)
{
	return static_cast<table *>(m)->size();
}

// The key's write accessor (bucket write lock) held for the increment; an
// inserted value starts at 0.
int incr(void *m, uint32_t k, uint64_t d)
{
	table::accessor a;
	bool inserted = static_cast<table *>(m)->insert(a, k);
	a->second += d;
	return inserted ? 1 : 0;
}

int insert(void *m, uint32_t k, uint64_t v)
{
	return static_cast<table *>(m)->insert(table::value_type(k, v)) ? 1 : 0;
}

// concurrent_hash_map's iterators are not safe against concurrent
// insert/erase: a walk alone only (iterate_concurrent 0).
long iterate(void *m, bench_visit_fn fn, void *ctx)
{
	const table &t = *static_cast<table *>(m);
	long n = 0;
	for (const auto &kv : t) {
		fn(kv.first, kv.second, ctx);
		n++;
	}
	return n;
}

} // namespace

extern "C" const struct bench_map bench_map_tbb = {
    "tbb",   "oneTBB concurrent_hash_map (per-bucket rwlocks)",
    create,  destroy,
    nullptr, nullptr,
    nullptr, set,
    get,     rem,
    len,     incr,
    insert,  iterate,
    0};
