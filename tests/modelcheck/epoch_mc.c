/*
 * GenMC client of the real epoch code (src/epoch.c and the inline hot path
 * of src/internal.h, compiled with CMAP_MODELCHECK; see mc.h and
 * mc_seams.h for the seams).  `make modelcheck` runs it in the
 * configurations listed in the Makefile; docs/DESIGN.md, "Model checking",
 * has the results.
 *
 * Threads (main creates them in this order, so GenMC's thread ids are
 * fixed: writer 1, readers 2.., advancer last):
 *   writer    enters, loads the published node, unlinks it (seq_cst CAS as
 *             trie.c does), retires it (its destructor poisons it),
 *             leaves, then calls cmap_collect MC_WCOLLECTS times (enter and
 *             leave, membarrier or fence, scan, advance, free expired bags)
 *   readers   MC_READERS of them, MC_ROPS operations each: enter, load the
 *             node (acquire, like every trie slot load), read its payload
 *             (non-atomic), leave
 *   advancer  with MC_ADVANCER: calls cmap_collect MC_ACOLLECTS times,
 *             so that E moves without the writer's knowledge (the RWC
 *             shape)
 * The property: no reader reads the node after (or racing with) its free;
 * the free poisons the payload with a non-atomic write, so GenMC reports a
 * data race or the reader's assertion fails.  With MC_CHECK_TAG, main also
 * asserts the tag relation the grace argument uses: g >= r - 1 always, g >= r
 * with MC_TAG_GE_R (Fraser's bound), where g is the writer's retire tag and r
 * the epoch announced by a reader that held the node.
 *
 * With MC_VACUITY main asserts that the node was never freed, which GenMC
 * must refute: the free is reachable, so the clean runs are not vacuous.
 *
 * Reverted fixes, each expected to make GenMC report an error:
 *   MC_GRACE2            free at E >= g + 2 (Fraser's grace) instead of 3
 *   MC_REVERT_FENCE      readers do not fence in RD_FENCED mode
 *   MC_REVERT_ALLFENCED  after a failed membarrier, advance without waiting
 *                        to see every record in RD_FENCED mode
 */
#include "mc.h"

#include "../../src/internal.h"

#ifdef MC_GRACE2
#undef GRACE
#define GRACE 2
#endif

/* global_fini (dlclose/exit) is not modelled: GenMC 0.10.3 misplaces
 * static variables when a module has a destructor (llvm.global_dtors). */
#define destructor unused
#include "../../src/epoch.c"
#undef destructor
#undef double

#ifndef MC_READERS
#define MC_READERS 1
#endif
#ifndef MC_ROPS
#define MC_ROPS 1
#endif
#ifndef MC_WCOLLECTS
#define MC_WCOLLECTS 3
#endif
#ifndef MC_ACOLLECTS
#define MC_ACOLLECTS 1
#endif

/* Referenced by inline code that the clients never reach (pool, trie). */
void *cmap__alloc_slow(cmap_t *m, struct rec *r, size_t size)
{
	(void)m, (void)r, (void)size;
	assert(0);
	return NULL;
}
void cmap__dealloc_slow(cmap_t *m, struct rec *r, void *p, size_t size)
{
	(void)m, (void)r, (void)p, (void)size;
	assert(0);
}
size_t cmap__blob_bytes(uint32_t klen, uint32_t vlen)
{
	(void)klen, (void)vlen;
	assert(0);
	return 0;
}

void cmap__pool_flush(cmap_t *m, struct rec *r)
{
	(void)m, (void)r; /* no pool: the clients retire user items */
}
void cmap__pool_trim(cmap_t *m, struct rec *r)
{
	(void)m, (void)r;
}
bool cmap__compact_due(cmap_t *m, struct rec *r, bool all)
{
	(void)m, (void)r, (void)all; /* no trie, no pages */
	return false;
}
void cmap__compact(cmap_t *m, struct rec *r, bool all)
{
	(void)m, (void)r, (void)all; /* no trie, no pages */
}
void cmap__pool_lock(cmap_t *m)
{
	(void)m;
	assert(0); /* fork is not modelled */
}
void cmap__pool_unlock(cmap_t *m)
{
	(void)m;
	assert(0);
}

struct tlcache mc_tl[MC_NT];

/* claim_record's memset: GenMC runs no memset on the heap (it would not
 * know the sizes of the later reads), so the record is zeroed field by
 * field. */
void *mc_zero_rec(void *p, int c, size_t n)
{
	_Static_assert(offsetof(rec_t, next) == 336,
		       "rec_t changed: update mc_zero_rec");
	rec_t *r = p;
	assert(c == 0 && n == sizeof *r);
	atomic_init(&r->state, 0);
	atomic_init(&r->revoked, 0);
	atomic_init(&r->count, 0);
	atomic_init(&r->pending, 0);
	atomic_init(&r->moved, 0);
	r->nest = r->in_reclaim = r->no_write = r->since_collect = r->cold = 0;
	r->compacting = false;
	r->cnext = 0;
	r->pool = NULL;
	r->desc = NULL;
	r->didx = 0;
	for (int i = 0; i < NBAGS; i++)
		r->bags[i] = (bag_t){0, 0, 0, 0, 0, NULL};
	r->owner = NULL;
	r->owner_slot = 0;
	r->stealer = NULL;
	r->stolen = r->reaping = false;
	r->seen_pending = 0;
	r->seen_epoch = 0;
	r->next = NULL;
	return p;
}

/*
 * Threads join the map before they start: main claims each one's record
 * (claim_record, under g_lock, as cmap__join's slow path) and builds its
 * registry table; the thread's first cmap__enter then takes cmap__join's
 * fast path (a thread that has used the map before).  The slow path is not
 * checked: it copies and callocs tables (GenMC runs no memcpy/memset on
 * the heap), and its lock would multiply the interleavings.  Tables are not
 * linked into g_ctxs, which only dlclose and fork walk.
 */
static struct tctx *mc_ctx[MC_NT];

static void mc_prejoin(cmap_t *m, int t)
{
	struct tctx *c = malloc(sizeof *c);
	c->cap = 8;
	c->n = 0;
	c->prev = c->next = NULL;
	c->ents = malloc(c->cap * sizeof *c->ents);
	for (size_t i = 0; i < c->cap; i++) {
		atomic_init(&c->ents[i].map, NULL);
		c->ents[i].id = 0;
		c->ents[i].rec = NULL;
	}
	pthread_mutex_lock(&g_lock);
	rec_t *r = claim_record(m);
	assert(r);
	size_t i = slot_of(c, m->id);
	r->owner = c;
	r->owner_slot = i;
	c->n++;
	c->ents[i].id = m->id;
	c->ents[i].rec = r;
	atomic_init(&c->ents[i].map, m);
	pthread_mutex_unlock(&g_lock);
	mc_ctx[t] = c;
}

static void mc_thread_init(void)
{
	tl_ctx = mc_ctx[mc_self()];
	tl_gen = atomic_load_explicit(&g_gen, memory_order_relaxed);
}

void mc_full_fence(void *word)
{
	(void)word;
#ifdef MC_REVERT_FENCE
	if (mc_target[mc_self()])
		return; /* a reader: the fix reverted */
#endif
	atomic_thread_fence(memory_order_seq_cst);
}

typedef struct node {
	int val;
} node_t;

static cmap_t mc_map; /* static: GenMC zeroes it (no heap memset) */
static cmap_t *m = &mc_map;
static _Atomic(node_t *) head;
static uint64_t tag;		     /* the writer's retire tag g */
static int64_t held[MC_NT][MC_ROPS]; /* epoch announced while holding */

static void *mc_alloc(void *ctx, size_t size, size_t align)
{
	(void)ctx;
	return aligned_alloc(align, (size + align - 1) / align * align);
}

static void mc_free(void *ctx, void *p, size_t size)
{
	(void)ctx, (void)size;
	free(p);
}

static int freed; /* writer-private until the join */

/* The "free": a non-atomic write of a poison value rather than free(),
 * whose use-after-free reports GenMC 0.10.3 attributes to unrelated events.
 * A reader's payload read that the free does not happen after is then a
 * data race, or reads the poison: either is reported. */
static void node_free(void *p)
{
	((node_t *)p)->val = -1;
	freed = 1;
}

static void *writer(void *arg)
{
	(void)arg;
	mc_thread_init();
	rec_t *r = cmap__enter(m);
	assert(r && cmap__reserve(m, r, 1) == CMAP_OK);
	node_t *old = ld_acquire(&head);
	bool ok = cas_seqcst(&head, &old, NULL);
	assert(ok);
	cmap__retire(m, r, old, node_free, G_USER);
	for (int i = 0; i < NBAGS; i++)
		if (r->bags[i].n)
			tag = r->bags[i].epoch;
	cmap__leave(r);
	for (int i = 0; i < MC_WCOLLECTS; i++)
		cmap_collect(m);
	return NULL;
}

static void *reader(void *arg)
{
	int t = mc_self();
	(void)arg;
	mc_thread_init();
	mc_point();
	for (int i = 0; i < MC_ROPS; i++) {
		rec_t *r = cmap__enter(m);
		assert(r);
		node_t *p = ld_acquire(&head);
		held[t][i] = -1;
		if (p) {
			mc_point();
			int v = p->val;
			assert(v == 42);
			held[t][i] =
			    (int64_t)(atomic_load_explicit(
					  &r->state, memory_order_relaxed) >>
				      ST_SHIFT);
			mc_point();
		}
		cmap__leave(r);
	}
	mc_exit();
	return NULL;
}

/*
 * MC_STEAL: the idle-thread handshake (epoch.c, "Idle threads").  The owner
 * (thread 1, a membarrier target) retires one item in each of MC_OOPS
 * operations; the stealer (thread 2) calls cmap_collect MC_SCOLLECTS
 * times, each of which may steal the owner's record between its
 * operations, reap it, and race with its return.  The bags are plain
 * memory: a steal that overlapped an operation of the owner is a data race
 * on them, and an item retired into a record nobody reaps is lost (main
 * checks that every item is either freed or still pending).
 */
#ifndef MC_OOPS
#define MC_OOPS 2
#endif
#ifndef MC_SCOLLECTS
#define MC_SCOLLECTS 1
#endif
static int nfreed; /* items freed; stealer/owner-private until the joins */

static void item_free(void *p)
{
	(void)p;
	nfreed++;
}

static void *owner(void *arg)
{
	(void)arg;
	mc_thread_init();
	for (int i = 0; i < MC_OOPS; i++) {
		rec_t *r = cmap__enter(m);
		assert(r && cmap__reserve(m, r, 1) == CMAP_OK);
		cmap__retire(m, r, &nfreed, item_free, G_USER);
		cmap__leave(r);
	}
	mc_exit();
	return NULL;
}

static void *stealer(void *arg)
{
	(void)arg;
	mc_thread_init();
	for (int i = 0; i < MC_SCOLLECTS; i++)
		cmap_collect(m);
	return NULL;
}

static void *advancer(void *arg)
{
	(void)arg;
	mc_thread_init();
	for (int i = 0; i < MC_ACOLLECTS; i++)
		cmap_collect(m);
	return NULL;
}

#ifdef MC_STEAL
int main(void)
{
	pthread_t o, s;
	cmap__global_init();
	m->id = 1;
	m->cfg.alloc = mc_alloc;
	m->cfg.free = mc_free;
	cmap__epoch_register(m);
	mc_target[1] = 1;
	mc_caller[2] = 1;
	mc_prejoin(m, 1);
	mc_prejoin(m, 2);
	rec_t *orig = mc_ctx[1]->ents[slot_of(mc_ctx[1], m->id)].rec;
	(void)orig;
	pthread_create(&o, NULL, owner, NULL);
	pthread_create(&s, NULL, stealer, NULL);
	pthread_join(o, NULL);
	pthread_join(s, NULL);
	size_t left = 0;
	for (rec_t *r = first_rec(m); r; r = r->next)
		left += atomic_load_explicit(&r->pending, memory_order_relaxed);
	assert((size_t)nfreed + left == MC_OOPS);
#ifdef MC_VACUITY
	/* Expected to fail: some execution steals the owner's record (and
	 * keeps it stolen, or the owner joined anew). */
	rec_t *now = mc_ctx[1]->ents[slot_of(mc_ctx[1], m->id)].rec;
	assert(now == orig && !orig->stolen);
#endif
	return 0;
}
#else
int main(void)
{
	pthread_t w, rd[MC_READERS], a;
	cmap__global_init();
	m->id = 1;
	m->cfg.alloc = mc_alloc;
	m->cfg.free = mc_free;
#ifdef MC_REVERT_ALLFENCED
	/* all_fenced_now() never consulted: the fix reverted. */
	atomic_init(&m->all_fenced, true);
#endif
	cmap__epoch_register(m);
	node_t *n = malloc(sizeof *n);
	n->val = 42;
	atomic_init(&head, n);

	/* Thread ids: main 0, writer 1, readers 2.., advancer last. */
	mc_caller[1] = 1;
	for (int i = 0; i < MC_READERS; i++)
		mc_target[2 + i] = 1;
#ifdef MC_ADVANCER
	mc_caller[2 + MC_READERS] = 1;
#endif
	for (int t = 1; t < 2 + MC_READERS; t++)
		mc_prejoin(m, t);
#ifdef MC_ADVANCER
	mc_prejoin(m, 2 + MC_READERS);
#endif
	pthread_create(&w, NULL, writer, NULL);
	for (int i = 0; i < MC_READERS; i++)
		pthread_create(&rd[i], NULL, reader, NULL);
#ifdef MC_ADVANCER
	pthread_create(&a, NULL, advancer, NULL);
#else
	(void)a;
	(void)advancer;
#endif
	pthread_join(w, NULL);
	for (int i = 0; i < MC_READERS; i++)
		pthread_join(rd[i], NULL);
#ifdef MC_ADVANCER
	pthread_join(a, NULL);
#endif
#ifdef MC_VACUITY
	/* Expected to fail: some execution does free the node. */
	assert(!freed);
#endif
#ifdef MC_CHECK_TAG
	for (int t = 2; t < 2 + MC_READERS; t++)
		for (int i = 0; i < MC_ROPS; i++)
			if (held[t][i] >= 0) {
				assert((int64_t)tag >= held[t][i] - 1);
#ifdef MC_TAG_GE_R
				assert((int64_t)tag >= held[t][i]);
#endif
			}
#endif
	return 0;
}
#endif
