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

} // namespace

extern "C" const struct bench_map bench_map_cuckoo = {
    "cuckoo", "libcuckoo cuckoohash_map (striped spinlocks, cuckoo hashing)",
    create,   destroy,
    nullptr,  nullptr,
    nullptr,  set,
    get,      rem,
    len};
