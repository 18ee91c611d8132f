// libcds FeldmanHashMap with hazard pointers: a concurrent hash trie with
// in-place slot CAS, the closest peer.  The hash (the common 64-bit mixer,
// a bijection on 64-bit values, so it is a perfect hash of u32 keys, as the
// map requires) is the trie's key.
#include <cds/container/feldman_hashmap_hp.h>
#include <cds/gc/hp.h>
#include <cds/init.h>

#include "maps.h"

namespace
{

struct mix {
	uint64_t operator()(uint32_t k) const { return bench_mix64(k); }
};

struct traits : cds::container::feldman_hashmap::traits {
	typedef mix hash;
};

using table =
    cds::container::FeldmanHashMap<cds::gc::HP, uint32_t, uint64_t, traits>;

struct instance {
	cds::gc::HP gc; // hazard-pointer domain, before the map
	table map;
	instance() : gc(), map() {}
};

void *create(uint64_t)
{
	cds::Initialize();
	return new instance();
}

void destroy(void *m)
{
	cds::threading::Manager::attachThread();
	delete static_cast<instance *>(m);
	cds::Terminate();
}

void enter(void *)
{
	cds::threading::Manager::attachThread();
}
void leave(void *)
{
	cds::threading::Manager::detachThread();
}

table &T(void *m)
{
	return static_cast<instance *>(m)->map;
}

int set(void *m, uint32_t k, uint64_t v)
{
	auto r = T(m).update(k, [v](table::value_type &item,
				    table::value_type *) { item.second = v; });
	if (!r.first)
		return -1;
	return r.second ? 1 : 0;
}

int get(void *m, uint32_t k, uint64_t *v)
{
	return T(m).find(k, [v](table::value_type &item) { *v = item.second; })
		   ? 1
		   : 0;
}

int rem(void *m, uint32_t k)
{
	return T(m).erase(k) ? 1 : 0;
}

size_t len(void *m)
{
	return T(m).size();
}

int insert(void *m, uint32_t k, uint64_t v)
{
	return T(m).insert(k, v) ? 1 : 0;
}

// The iterators are thread-safe (hazard-pointer guarded) but may visit an
// item twice while its array node splits, so only the walk alone is
// measured (iterate_concurrent 0).  No counter: update() calls its functor
// after the new node is published, so an increment there is not atomic.
long iterate(void *m, bench_visit_fn fn, void *ctx)
{
	long n = 0;
	for (auto it = T(m).cbegin(), end = T(m).cend(); it != end; ++it) {
		fn(it->first, it->second, ctx);
		n++;
	}
	return n;
}

} // namespace

extern "C" const struct bench_map bench_map_feldman = {
    "feldman", "libcds FeldmanHashMap (hash trie, slot CAS, hazard pointers)",
    create,    destroy,
    enter,     leave,
    nullptr,   set,
    get,       rem,
    len,       nullptr,
    insert,    iterate,
    0};
