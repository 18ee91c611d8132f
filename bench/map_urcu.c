/*
 * liburcu's lock-free resizable hash table (cds_lfht), in one RCU flavour
 * chosen at compile time: CMAP_URCU_QSBR or CMAP_URCU_MEMB (this file is
 * compiled once per flavour).  Removed and replaced nodes are freed through
 * call_rcu, so their reclamation is part of the measured cost.
 */
#include <stdlib.h>

/* The top-level headers map the classic names (rcu_read_lock, call_rcu,
 * the flavour used by cds_lfht_new) to the chosen flavour. */
#if defined(CMAP_URCU_QSBR)
#include <urcu-qsbr.h>
#define MAP_NAME "urcu-qsbr"
#define MAP_VAR	 bench_map_urcu_qsbr
#elif defined(CMAP_URCU_MEMB)
#define RCU_MEMB
#include <urcu.h>
#define MAP_NAME "urcu-memb"
#define MAP_VAR	 bench_map_urcu_memb
#else
#error "define CMAP_URCU_QSBR or CMAP_URCU_MEMB"
#endif
#include <urcu/rculfhash.h>

#include "maps.h"

struct node {
	struct cds_lfht_node ln;
	uint32_t key;
	uint64_t val;
	struct rcu_head rh;
};

static int match(struct cds_lfht_node *ln, const void *key)
{
	return caa_container_of(ln, struct node, ln)->key ==
	       *(const uint32_t *)key;
}

static void free_node(struct rcu_head *rh)
{
	free(caa_container_of(rh, struct node, rh));
}

static void *create(uint64_t n)
{
	unsigned long init = 1;
	while (init < n && init < (1ul << 20))
		init <<= 1;
	return cds_lfht_new(init, 1, 0,
			    CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING, NULL);
}

/* Called by a thread that is not registered (the caller's enter/leave
 * bracket every other use), so that rcu_barrier cannot wait on itself. */
static void destroy(void *m)
{
	struct cds_lfht *ht = m;
	struct cds_lfht_iter it;
	struct node *x;
	rcu_register_thread();
	rcu_read_lock();
	cds_lfht_for_each_entry(ht, &it, x, ln)
	{
		if (!cds_lfht_del(ht, &x->ln))
			call_rcu(&x->rh, free_node);
	}
	rcu_read_unlock();
	rcu_unregister_thread();
	rcu_barrier(); /* run every pending free before the table goes */
	cds_lfht_destroy(ht, NULL);
}

static void enter(void *m)
{
	(void)m;
	rcu_register_thread();
}

static void leave(void *m)
{
	(void)m;
	rcu_unregister_thread();
}

static void quiesce(void *m)
{
	(void)m;
#if defined(CMAP_URCU_QSBR)
	rcu_quiescent_state();
#endif
}

static int set(void *m, uint32_t k, uint64_t v)
{
	struct node *x = malloc(sizeof *x);
	if (!x)
		return -1;
	cds_lfht_node_init(&x->ln);
	x->key = k;
	x->val = v;
	rcu_read_lock();
	struct cds_lfht_node *old =
	    cds_lfht_add_replace(m, bench_mix64(k), match, &k, &x->ln);
	rcu_read_unlock();
	if (old)
		call_rcu(&caa_container_of(old, struct node, ln)->rh,
			 free_node);
	return old == NULL;
}

static int get(void *m, uint32_t k, uint64_t *v)
{
	struct cds_lfht_iter it;
	int found = 0;
	rcu_read_lock();
	cds_lfht_lookup(m, bench_mix64(k), match, &k, &it);
	struct cds_lfht_node *ln = cds_lfht_iter_get_node(&it);
	if (ln) {
		*v = caa_container_of(ln, struct node, ln)->val;
		found = 1;
	}
	rcu_read_unlock();
	return found;
}

static int rem(void *m, uint32_t k)
{
	struct cds_lfht_iter it;
	int removed = 0;
	rcu_read_lock();
	cds_lfht_lookup(m, bench_mix64(k), match, &k, &it);
	struct cds_lfht_node *ln = cds_lfht_iter_get_node(&it);
	if (ln && !cds_lfht_del(m, ln)) {
		call_rcu(&caa_container_of(ln, struct node, ln)->rh, free_node);
		removed = 1;
	}
	rcu_read_unlock();
	return removed;
}

static size_t len(void *m)
{
	long before, after;
	unsigned long count;
	rcu_read_lock();
	cds_lfht_count_nodes(m, &before, &count, &after);
	rcu_read_unlock();
	return count;
}

/* cds_lfht has no in-place update: an increment is a retry loop of lookup,
 * a new node with the sum and cds_lfht_replace, which fails (-ENOENT) when
 * the node it replaces was replaced or removed meanwhile (a plain
 * cds_lfht_add_replace would lose concurrent increments); an absent key is
 * added with cds_lfht_add_unique, which returns the winner of a race. */
static int incr(void *m, uint32_t k, uint64_t d)
{
	uint64_t h = bench_mix64(k);
	struct node *x = malloc(sizeof *x), *old = NULL;
	if (!x)
		return -1;
	x->key = k;
	rcu_read_lock();
	for (;;) {
		struct cds_lfht_iter it;
		cds_lfht_node_init(&x->ln);
		cds_lfht_lookup(m, h, match, &k, &it);
		struct cds_lfht_node *ln = cds_lfht_iter_get_node(&it);
		if (!ln) {
			x->val = d;
			if (cds_lfht_add_unique(m, h, match, &k, &x->ln) ==
			    &x->ln)
				break;
			continue; /* another thread inserted k first */
		}
		old = caa_container_of(ln, struct node, ln);
		x->val = old->val + d;
		if (cds_lfht_replace(m, &it, h, match, &k, &x->ln) == 0)
			break;
		old = NULL;
	}
	rcu_read_unlock();
	if (old)
		call_rcu(&old->rh, free_node);
	return old == NULL;
}

static int insert(void *m, uint32_t k, uint64_t v)
{
	struct node *x = malloc(sizeof *x);
	if (!x)
		return -1;
	cds_lfht_node_init(&x->ln);
	x->key = k;
	x->val = v;
	rcu_read_lock();
	struct cds_lfht_node *got =
	    cds_lfht_add_unique(m, bench_mix64(k), match, &k, &x->ln);
	rcu_read_unlock();
	if (got != &x->ln) {
		free(x); /* never published */
		return 0;
	}
	return 1;
}

/* One read-side critical section for the whole walk (for QSBR: no
 * quiescent state until it ends, so grace periods wait for it). */
static long iterate(void *m, bench_visit_fn fn, void *ctx)
{
	struct cds_lfht_iter it;
	struct node *x;
	long n = 0;
	rcu_read_lock();
	cds_lfht_for_each_entry(m, &it, x, ln)
	{
		fn(x->key, x->val, ctx);
		n++;
	}
	rcu_read_unlock();
	return n;
}

const struct bench_map MAP_VAR = {
    MAP_NAME, "liburcu cds_lfht (" MAP_NAME " flavour), frees via call_rcu",
    create,   destroy,
    enter,    leave,
    quiesce,  set,
    get,      rem,
    len,      incr,
    insert,   iterate,
    1};
