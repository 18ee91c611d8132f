// libcuckoo's cuckoohash_map (fine-grained locking cuckoo hashing), u32 ->
// u64 with the common 64-bit mixer.
#include <libcuckoo/cuckoohash_map.hh>

#include "maps.h"

namespace
{

struct mix {
	size_t operator()(uint32_t k) const { return bench_mix64(k); }
};

using table = libcuckoo::cuckoohash_map<uint32_t, uint64_t, mix>;

void *create(uint64_t n)
{
	return new table(n);
}

void destroy(void *m)
{
	delete static_cast<table *>(m);
}

int set(void *m, uint32_t k, uint64_t v)
{
	return static_cast<table *>(m)->insert_or_assign(k, v) ? 1 : 0;
}

int get(void *m, uint32_t k, uint64_t *v)
{
	return static_cast<table *>(m)->find(k, *v) ? 1 : 0;
}

int rem(void *m, uint32_t k)
{
	return static_cast<table *>(m)->erase(k);
}

size_t len(void *m)
{
	return static_cast<table *>(m)->size();
}

// upsert runs the functor on the value under the key's two bucket locks
// (uprase_fn without the erase), or inserts d.
int incr(void *m, uint32_t k, uint64_t d)
{
	return static_cast<table *>(m)->upsert(
		   k, [d](uint64_t &v) { v += d; }, d)
		   ? 1
		   : 0;
}

int insert(void *m, uint32_t k, uint64_t v)
{
	return static_cast<table *>(m)->insert(k, v) ? 1 : 0;
}

// lock_table takes every bucket lock for the walk: writers wait until it
// ends.
long iterate(void *m, bench_visit_fn fn, void *ctx)
{
	auto lt = static_cast<table *>(m)->lock_table();
	long n = 0;
	for (const auto &kv : lt) {
		fn(kv.first, kv.second, ctx);
		n++;
	}
	return n;
}

} // namespace

extern "C" const struct bench_map bench_map_cuckoo = {
    "cuckoo", "libcuckoo cuckoohash_map (striped spinlocks, cuckoo hashing)",
    create,   destroy,
    nullptr,  nullptr,
    nullptr,  set,
    get,      rem,
    len,      incr,
    insert,   iterate,
    1};
