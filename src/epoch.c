/*
 * Epoch-based reclamation (EBR), one domain per map, after Fraser,
 * "Practical lock-freedom" (2004), section 5.2.3, with the reader-side fence
 * moved to the reclaimer through membarrier(2) as in liburcu's memb flavour.
 *
 * State.  The map has a global epoch E.  Each thread that uses the map owns
 * a record whose state announces epoch e while the thread is inside an
 * operation that began when it read E == e (internal.h, RD_FENCED).
 * Objects unlinked from the trie are "retired" into the retiring thread's
 * bag for the tag g = the value of E read *after* the unlinking CAS.
 *
 * Advance.  E goes from e to e + 1 only after a barrier (below) and then a
 * scan that sees every record either outside an operation or inside one
 * that announced e.  While a thread R stays inside an operation that
 * announced r, E <= r + 1: the advance from r + 1 would need to see R in
 * r + 1 or outside.
 *
 * Why freeing an object tagged g is safe once E >= g + GRACE (3).  Let R
 * hold the object: it read the pointer before the unlinking CAS took
 * effect, inside an operation that announced r.  The retirer's tag g is at
 * least r - 1.  Take the advance r - 1 -> r that R read: it followed a
 * barrier whose full fence ran on R's CPU before R's load of E (or R would
 * have read an older E); had the retirer's unlink come before that barrier
 * point, R's later trie read would have missed the object; so the unlink,
 * and the retirer's seq_cst load of E after it, come after the barrier, and
 * that load reads r - 1 or later.  Fraser's stronger g >= r needs a full
 * fence between R's read of E and its trie read (RD_FENCED readers have
 * one, after the announcement), or a multi-copy-atomic machine (x86,
 * ARMv8); C11 and POWER give neither, hence one more epoch of
 * grace than Fraser's 2: E >= g + 3 >= r + 2 means R has left.  Bags are
 * indexed g % NBAGS (4), so the bag that epoch g reuses holds tags <= g - 4.
 *
 * The barrier.  A scan must not miss an announcement that a reader stored
 * before reading the trie (the store-buffer litmus).  Readers pay no fence
 * for that: the reclaimer's membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)
 * runs a full barrier on every CPU running one of our threads.  Where
 * membarrier is unavailable (or CMAP_NO_MEMBARRIER is set in the
 * environment) readers fence themselves and the reclaimer fences locally.
 * If membarrier fails at run time (ENOMEM in the kernel, a seccomp filter
 * installed later), the failed round advances nothing, every thread is
 * switched to fencing, and a map advances again only once each of its
 * records has been seen in the fenced mode (all_fenced_now): until then an
 * unfenced announcement could still be sitting in a store buffer.
 *
 * Bounds.  A thread tries to advance after every COLLECT_EVERY retirements,
 * outside any operation.  While every operation is short compared with
 * COLLECT_EVERY retirements of the other threads, each record holds at most
 * about NBAGS * COLLECT_EVERY retired objects (plus user deferrals).  A
 * thread stalled inside an operation (e.g. in a slow get_with callback)
 * stops E from advancing and so delays every free in the map until it
 * returns; nothing is lost, and stats report the pending count.
 *
 * Threads.  Records are found through a thread-local one-entry cache; the
 * slow path (first use of a map by a thread) and thread exit take one
 * process-wide mutex, which also orders them against cmap_free and against
 * the switch to fenced readers.  Released records (thread exit) keep their
 * pending garbage and are reused by the next thread that joins, so records
 * never outnumber the peak number of threads that used the map at once.
 */
#include <errno.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* Retirements between reclamation attempts.  Each attempt costs one
 * membarrier, which interrupts every CPU running one of our threads: about
 * 1 us alone, but 40+ us on the 2-vCPU VM we measure on (IPIs are VM
 * exits), so attempts must be rare.  Blocks are reclaimed cold; free_some
 * prefetches them. */
#define COLLECT_EVERY 4096
/* Bags start small (a thread that writes a map once needs room for two
 * retirements) and double as needed. */
#define BAG_MIN 2
/* Expired items one collect frees at most: four rounds' worth, so a
 * backlog (after a stall) drains over several collects, each short, while
 * the normal flow (a round per collect) is always freed in full. */
#define FREE_BUDGET (4 * COLLECT_EVERY)
/* Epochs a record's pending count must stay unchanged (its owner retiring
 * nothing) before cmap_collect steals it ("Idle threads" below).  The
 * model checker sets 0, to reach the steal in few steps. */
#ifndef IDLE_EPOCHS
#define IDLE_EPOCHS (GRACE + 1)
#endif

_Atomic(unsigned) cmap__rdmode = RD_FENCED;

/*
 * One thread's maps: an open-addressing table keyed by map id (ids are never
 * reused), so a thread that alternates between thousands of maps finds each
 * record in O(1).  An entry whose map was freed keeps its id (a tombstone:
 * lookups probe past it, joins reuse it); the table is rebuilt without
 * tombstones when it is half full.
 */
struct tent {
	/* NULL: free slot, or the map was freed.  Written under g_lock (also
	 * by cmap_free in another thread), read by the owner without it. */
	_Atomic(cmap_t *) map;
	uint64_t id; /* 0: never used */
	rec_t *rec;
};
struct tctx {
	struct tent *ents;
	size_t n,
	    cap; /* slots with an id (tombstones included); a power of 2 */
	struct tctx *prev, *next; /* g_ctxs, under g_lock */
};

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_key_t g_key;
static bool g_key_ok;
static cmap_t *g_maps; /* live maps, under g_lock (for fork) */
/* Every thread's list, under g_lock, and a generation bumped when unloading
 * the library frees them all: a thread's tl_ctx counts only if its tl_gen
 * is current. */
static struct tctx *g_ctxs;
static _Atomic(unsigned) g_gen;
/* The owner of released records being reaped (reap): not a thread. */
static struct tctx g_reaper;

#ifndef CMAP_MODELCHECK /* the model's cmap__tl: internal.h */
__attribute__((
    tls_model("initial-exec"))) _Thread_local struct tlcache cmap__tl;
#endif
static _Thread_local struct tctx *tl_ctx;
static _Thread_local unsigned tl_gen;

static struct tctx *my_ctx(void)
{
	/* Relaxed: the generation only changes while no map exists (at
	 * unload), when no operation can race with it. */
	return tl_gen == ld_relaxed(&g_gen) ? tl_ctx : NULL;
}

static void thread_leave_all(struct tctx *ctx);
static rec_t *first_rec(const cmap_t *m);
static void fork_prepare(void);
static void fork_parent(void);
static void fork_child(void);

/* Thread exit.  TLS is still valid here; clear it so that a later TLS
 * destructor that uses a map joins afresh instead of using freed memory. */
static void key_dtor(void *p)
{
	tl_ctx = NULL;
	cmap__tl = (struct tlcache){0};
	thread_leave_all(p);
}

/* CMAP_NO_MEMBARRIER=1 forces the fenced readers (a test switch, and an
 * opt-out for programs that will forbid membarrier later). */
static bool membarrier_wanted(void)
{
	const char *v = secure_getenv("CMAP_NO_MEMBARRIER");
	return !v || !*v || !strcmp(v, "0");
}

static void global_init(void)
{
	/* Registration is per process and lasts for its lifetime.  Relaxed:
	 * pthread_once orders this before every map's first operation. */
	long q = syscall(__NR_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
	if (membarrier_wanted() && q >= 0 &&
	    (q & MEMBARRIER_CMD_PRIVATE_EXPEDITED) &&
	    syscall(__NR_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED,
		    0, 0) == 0)
		st_relaxed(&cmap__rdmode, RD_MEMBARRIER);
	g_key_ok = pthread_key_create(&g_key, key_dtor) == 0;
	pthread_atfork(fork_prepare, fork_parent, fork_child);
}

/* Unloading libcmap.so (dlclose), or process exit: threads that outlive
 * the library must not call a key destructor that is gone, and their lists
 * must not leak.  Lists are freed only when no map is left (the unload
 * precondition); at an exit with live maps, threads may still be using
 * them. */
__attribute__((destructor)) static void global_fini(void)
{
	pthread_mutex_lock(&g_lock);
	if (!g_maps) {
		while (g_ctxs) {
			struct tctx *c = g_ctxs;
			g_ctxs = c->next;
			free(c->ents);
			free(c);
		}
		st_relaxed(&g_gen, ld_relaxed(&g_gen) + 1);
	}
	pthread_mutex_unlock(&g_lock);
	if (g_key_ok)
		pthread_key_delete(g_key);
	g_key_ok = false;
}

void cmap__global_init(void)
{
	pthread_once(&g_once, global_init);
}

/* Has every record of m been seen in RD_FENCED mode?  Under g_lock, so that
 * records without an owner are quiescent (their state was stored under the
 * lock) and their next owner, joining after the switch, reads RD_FENCED. */
static bool all_fenced_now(cmap_t *m)
{
	bool ok = true;
	pthread_mutex_lock(&g_lock);
	for (rec_t *r = first_rec(m); r && ok; r = r->next)
		/* Acquire: pairs with the owner's release of that state, so
		 * the reads of its earlier, unfenced operations happen before
		 * every free this allows. */
		ok = !r->owner || (ld_acquire(&r->state) & RD_FENCED);
	pthread_mutex_unlock(&g_lock);
	if (ok)
		st_relaxed(&m->all_fenced, true); /* caches a stable fact */
	return ok;
}

/* The reclaimer's half of the asymmetric fence (see the header comment).
 * False: no scan this round may advance E. */
static bool reclaim_barrier(cmap_t *m)
{
	if (ld_relaxed(&cmap__rdmode) == RD_MEMBARRIER) {
		if (syscall(__NR_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED,
			    0, 0) == 0)
			return true;
		/* Under g_lock: joins and thread exits that follow read the
		 * new mode (all_fenced_now relies on it). */
		pthread_mutex_lock(&g_lock);
		st_relaxed(&cmap__rdmode, RD_FENCED);
		pthread_mutex_unlock(&g_lock);
		return false;
	}
	if (!ld_relaxed(&m->all_fenced) && !all_fenced_now(m))
		return false;
	static _Atomic(uint64_t) word;
	full_fence(&word);
	return true;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *sys_alloc(cmap_t *m, size_t size, size_t align)
{
	return m->cfg.alloc(m->cfg.alloc_ctx, size, align);
}

static void sys_free(cmap_t *m, void *p, size_t size)
{
	if (p)
		m->cfg.free(m->cfg.alloc_ctx, p, size);
}

/* ---- joining and leaving ------------------------------------------------ */

/* The map's record list.  Acquire: pairs with the release push in
 * claim_record, so a record found here is seen initialised.  Records are
 * never unlinked before cmap_free, so `next` is immutable. */
static rec_t *first_rec(const cmap_t *m)
{
	return ld_acquire(&m->recs);
}

static rec_t *claim_record(cmap_t *m)
{
	/* Under g_lock: no other thread claims or releases records now. */
	for (rec_t *r = first_rec(m); r; r = r->next)
		if (!r->owner)
			return r; /* not stolen: those keep an owner */
	rec_t *r = sys_alloc(m, sizeof *r, CACHELINE);
	if (!r)
		return NULL;
	memset(r, 0, sizeof *r);
	/* Relaxed: read under g_lock, which orders it after any switch. */
	st_relaxed(&r->state, ld_relaxed(&cmap__rdmode));
	r->next = ld_relaxed(&m->recs);
	/* Release: scanners that find r (acquire) see it initialised. */
	st_release(&m->recs, r);
	return r;
}

static size_t slot_of(const struct tctx *ctx, uint64_t id)
{
	return (size_t)id & (ctx->cap - 1); /* ids are consecutive */
}

/* Under g_lock: a table of twice the live entries (at least 8 slots),
 * without tombstones.  Records learn their new slot. */
static bool rebuild(struct tctx *ctx)
{
	size_t live = 0;
	for (size_t i = 0; i < ctx->cap; i++)
		live += ld_relaxed(&ctx->ents[i].map) != NULL;
	size_t cap = 8;
	while (cap < 4 * (live + 1))
		cap *= 2;
	struct tent *e = calloc(cap, sizeof *e);
	if (!e)
		return false;
	struct tctx old = *ctx;
	ctx->ents = e;
	ctx->cap = cap;
	ctx->n = 0;
	for (size_t i = 0; i < old.cap; i++) {
		cmap_t *m = ld_relaxed(&old.ents[i].map);
		if (!m)
			continue;
		size_t j = slot_of(ctx, old.ents[i].id);
		while (e[j].id)
			j = (j + 1) & (cap - 1);
		e[j].id = old.ents[i].id;
		e[j].rec = old.ents[i].rec;
		e[j].rec->owner_slot = j;
		st_relaxed(&e[j].map, m);
		ctx->n++;
	}
	free(old.ents);
	return true;
}

/* The calling thread's record in m, or NULL if it has not joined m.
 * Relaxed: only cmap_free, which the caller ordered before any later use
 * of a map at this address, clears entries. */
static rec_t *find_rec(const struct tctx *ctx, const cmap_t *m)
{
	for (size_t i = ctx ? slot_of(ctx, m->id) : 0; ctx && ctx->ents[i].id;
	     i = (i + 1) & (ctx->cap - 1))
		if (ctx->ents[i].id == m->id &&
		    ld_relaxed(&ctx->ents[i].map) == m)
			return ctx->ents[i].rec;
	return NULL;
}

bool cmap__inside(const cmap_t *m)
{
	rec_t *r = find_rec(my_ctx(), m);
	return r && r->nest;
}

rec_t *cmap__join(cmap_t *m)
{
	/* Fast path: a map this thread joined before (the cache holds only
	 * the last one). */
	rec_t *r = find_rec(my_ctx(), m);
	if (r) {
		cmap__tl = (struct tlcache){m, m->id, r};
		return r;
	}
	struct tctx *ctx;
	cmap__global_init();
	pthread_mutex_lock(&g_lock);
	ctx = my_ctx();
	if (!ctx) {
		ctx = calloc(1, sizeof *ctx);
		if (!ctx)
			goto out;
		if (g_key_ok)
			pthread_setspecific(g_key, ctx);
		ctx->next = g_ctxs;
		if (g_ctxs)
			g_ctxs->prev = ctx;
		g_ctxs = ctx;
		tl_ctx = ctx;
		tl_gen = ld_relaxed(&g_gen);
	}
	if (2 * (ctx->n + 1) > ctx->cap && !rebuild(ctx))
		goto out;
	size_t i = slot_of(ctx, m->id);
	while (ld_relaxed(&ctx->ents[i].map))
		i = (i + 1) & (ctx->cap - 1);
	r = claim_record(m);
	if (!r)
		goto out;
	r->owner = ctx;
	r->owner_slot = i;
	ctx->n += !ctx->ents[i].id;
	ctx->ents[i].id = m->id;
	ctx->ents[i].rec = r;
	st_relaxed(&ctx->ents[i].map, m);
out:
	pthread_mutex_unlock(&g_lock);
	if (r)
		cmap__tl = (struct tlcache){m, m->id, r};
	return r;
}

/*
 * Idle threads.  A thread that stops using a map (alive, but busy elsewhere
 * or blocked) would keep its garbage, its deferred callbacks and its pool's
 * spare pages for as long as it stays away.  So cmap_collect, in any
 * thread, steals such a record: one whose owner is outside any operation
 * and has retired nothing for GRACE + 1 epochs (so all of its garbage has
 * expired).
 * The steal is an asymmetric Dekker handshake with the owner's fast path:
 * the stealer stores revoked, runs the reclaimer's barrier (membarrier, or
 * a fence when readers fence), then reads the owner's state; the owner, in
 * cmap__enter, stores its announcement, has its StoreLoad (the same one
 * that protects its reads), then loads revoked.  So either the stealer sees
 * the owner inside (and gives up) or the owner sees revoked and goes to
 * cmap__revoked before touching its bags or pool.  Decisions are made under
 * g_lock, so the owner's slow path finds one of: a steal still waiting on
 * its barrier (it vetoes it and goes on), a stolen record already reaped
 * (it takes it back), or one being reaped (it hands it to the reaper, who
 * releases it when done, and joins again with another record).  The owner
 * never waits for the reaping itself, only for g_lock, as a join does.
 * While stolen, the record keeps its owner (the thread's table names it,
 * and nothing else may claim it: the owner may still store a stray
 * announcement into it, which the slow path then withdraws).
 */

/* Under g_lock: r stops being stolen; its owner becomes to (NULL:
 * claimable), unless a reaper still works on it, who releases it then. */
static void unsteal(rec_t *r, struct tctx *to)
{
	if (r->reaping) {
		r->owner = &g_reaper;
		return;
	}
	r->stolen = false;
	r->stealer = NULL;
	/* Relaxed: under g_lock, where every steal decides; the owner's
	 * fast-path load only ever needs to see a set flag (steal's seq_cst
	 * store before its barrier). */
	st_relaxed(&r->revoked, 0);
	r->owner = to;
}

rec_t *cmap__revoked(cmap_t *m, rec_t *r)
{
	pthread_mutex_lock(&g_lock);
	if (!r->stolen || !r->reaping) {
		/* A steal still waiting on its barrier (vetoed: it will find
		 * its stealer mark cleared), or one already reaped: the record
		 * is ours again, with the announcement we made. */
		unsteal(r, r->owner);
		pthread_mutex_unlock(&g_lock);
		return r;
	}
	/* Being reaped: withdraw the announcement (nothing was read under
	 * it), hand the record over and join again. */
	r->nest = 0;
	/* Release: as a leave. */
	st_release(&r->state, ld_relaxed(&cmap__rdmode));
	struct tctx *ctx = r->owner;
	size_t slot = r->owner_slot;
	unsteal(r, NULL);
	rec_t *y = claim_record(m);
	if (y) {
		y->owner = ctx;
		y->owner_slot = slot;
		ctx->ents[slot].rec = y;
	} else {
		/* No memory: our entry must not name the handed-over record
		 * (it may be claimed); the next operation joins afresh. */
		st_relaxed(&ctx->ents[slot].map, NULL);
	}
	pthread_mutex_unlock(&g_lock);
	if (!y) {
		cmap__tl = (struct tlcache){0};
		return NULL;
	}
	cmap__tl = (struct tlcache){m, m->id, y};
	return cmap__enter(m);
}

/* Release every record of ctx's thread, which will not use them again
 * (it exits, or does not exist in a forked child).  Under g_lock.
 * abandoned: the thread vanished at an arbitrary instruction (fork), maybe
 * halfway through retiring or freeing a bag, whose count the compiler may
 * not have stored yet: its bags are dropped, never freed twice. */
static void release_records(struct tctx *ctx, bool abandoned)
{
	for (size_t i = 0; i < ctx->cap; i++) {
		rec_t *r = ctx->ents[i].rec;
		if (!ld_relaxed(&ctx->ents[i].map))
			continue;
		if (r->stolen) {
			/* Its bags and pool are the reaper's (or were, and
			 * are consistent): only the ownership changes. */
			unsteal(r, NULL);
			continue;
		}
		for (int j = 0; abandoned && j < NBAGS; j++) {
			bag_t *b = &r->bags[j];
			st_relaxed(&r->pending,
				   ld_relaxed(&r->pending) - (b->n - b->base));
			b->n = b->old = b->base = 0;
		}
		/* The record keeps its garbage and pool; the next owner
		 * inherits both.  A thread that left a callback abnormally
		 * (longjmp, cancellation) leaves nest, in_reclaim or no_write
		 * raised: the next owner starts clean. */
		r->nest = 0;
		r->in_reclaim = 0;
		r->no_write = 0;
		/* Release: pairs with the scan's acquire. */
		st_release(&r->state, ld_relaxed(&cmap__rdmode));
		unsteal(r, NULL);
	}
	if (ctx->prev)
		ctx->prev->next = ctx->next;
	else
		g_ctxs = ctx->next;
	if (ctx->next)
		ctx->next->prev = ctx->prev;
	free(ctx->ents);
	free(ctx);
}

static void thread_leave_all(struct tctx *ctx)
{
	if (!ctx)
		return;
	pthread_mutex_lock(&g_lock);
	release_records(ctx, false);
	pthread_mutex_unlock(&g_lock);
}

/*
 * fork() copies only the calling thread.  The registry lock is held across
 * it, so the child's copy is consistent; the child then releases the
 * records of every other thread, which would otherwise stay owned, and
 * those inside an operation would hold each map's epoch back forever.
 * What those threads were doing is abandoned: their private allocations
 * leak, and so does the garbage in their bags (dropped, so its destructors
 * and deferred callbacks run in the parent only), and a contraction they
 * left half done is completed by the next writer that meets it (trie.c,
 * helping).  Their entry counts may be off by the writes they were in.
 */
static void fork_prepare(void)
{
	pthread_mutex_lock(&g_lock);
	for (cmap_t *m = g_maps; m; m = m->reg_next)
		cmap__pool_lock(m); /* pool.c's page pools */
}

static void pools_unlock(void)
{
	for (cmap_t *m = g_maps; m; m = m->reg_next)
		cmap__pool_unlock(m);
}

static void fork_parent(void)
{
	pools_unlock();
	pthread_mutex_unlock(&g_lock);
}

static void fork_child(void)
{
	for (cmap_t *m = g_maps; m; m = m->reg_next)
		for (rec_t *r = first_rec(m); r; r = r->next) {
			if (r->reaping) {
				/* Its reaper vanished mid-way: its bags go, as
				 * below; a steal waiting on its barrier too. */
				for (int j = 0; j < NBAGS; j++)
					r->bags[j].n = r->bags[j].old =
					    r->bags[j].base = 0;
				st_relaxed(&r->pending, 0);
				r->reaping = false;
			}
			r->stealer = NULL;
			if (r->stolen && r->owner == &g_reaper) {
				unsteal(r, NULL);
			} else if (r->owner == &g_reaper) {
				/* Its reaper vanished mid-way: as below. */
				for (int j = 0; j < NBAGS; j++)
					r->bags[j].n = r->bags[j].old =
					    r->bags[j].base = 0;
				st_relaxed(&r->pending, 0);
				r->owner = NULL;
			} else if (r->owner && r->owner != my_ctx()) {
				release_records(r->owner, true);
			}
		}
	pools_unlock();
	pthread_mutex_unlock(&g_lock);
}

void cmap__epoch_register(cmap_t *m)
{
	st_relaxed(&m->advanced_ns, now_ns());
	pthread_mutex_lock(&g_lock);
	m->reg_prev = NULL;
	m->reg_next = g_maps;
	if (g_maps)
		g_maps->reg_prev = m;
	g_maps = m;
	pthread_mutex_unlock(&g_lock);
}

CMAP_API void cmap_thread_exit(void)
{
	struct tctx *ctx = my_ctx();
	if (!ctx)
		return;
	tl_ctx = NULL;
	cmap__tl = (struct tlcache){0};
	if (g_key_ok)
		pthread_setspecific(g_key, NULL);
	thread_leave_all(ctx);
}

/* Called by cmap_free under the precondition that no thread uses m: make
 * every thread forget m (its cached slot may still name it), and take m
 * off the registry. */
static void forget_map(cmap_t *m)
{
	pthread_mutex_lock(&g_lock);
	if (m->reg_prev)
		m->reg_prev->reg_next = m->reg_next;
	else
		g_maps = m->reg_next;
	if (m->reg_next)
		m->reg_next->reg_prev = m->reg_prev;
	for (rec_t *r = first_rec(m); r; r = r->next) {
		if (r->owner && r->owner != &g_reaper)
			st_relaxed(&r->owner->ents[r->owner_slot].map, NULL);
		r->owner = NULL;
	}
	pthread_mutex_unlock(&g_lock);
}

/* ---- garbage ----------------------------------------------------------------
 */

int cmap__reserve_slow(cmap_t *m, rec_t *r, size_t k)
{
	for (int i = 0; i < NBAGS; i++) {
		bag_t *b = &r->bags[i];
		if (b->cap - b->n >= k)
			continue;
		/* Room freed at the front (base) is taken back first; the
		 * array doubles only if that is not enough. */
		size_t live = b->n - b->base;
		size_t cap = b->cap ? b->cap : BAG_MIN;
		while (cap - live < k)
			cap *= 2;
		if (cap == b->cap) {
			memmove(b->items, b->items + b->base,
				live * sizeof *b->items);
		} else {
			gitem_t *it = sys_alloc(m, cap * sizeof *it, 16);
			if (!it)
				return CMAP_ENOMEM;
			if (live)
				memcpy(it, b->items + b->base,
				       live * sizeof *it);
			/* The bag points at the new array before the old
			 * one is freed (a fork in between must not leave it
			 * dangling). */
			gitem_t *old = b->items;
			size_t old_cap = b->cap;
			b->items = it;
			b->cap = cap;
			sys_free(m, old, old_cap * sizeof *it);
		}
		b->old -= b->base;
		b->n = live;
		b->base = 0;
	}
	return CMAP_OK;
}

/*
 * Free up to budget of b's expired items, oldest first; returns how many.
 * Items may run user destructors; they must not retire into this bag
 * (write operations refuse to run while in_reclaim is set).  base moves
 * past each item before it runs, so a destructor that never returns
 * (longjmp, thread exit) leaves no item to be freed twice.
 */
static size_t free_some(cmap_t *m, rec_t *r, bag_t *b, size_t budget)
{
	size_t k = 0;
	r->in_reclaim++;
	for (; b->base < b->old && k < budget; k++) {
		size_t i = b->base;
		if (i + 8 < b->old)
			__builtin_prefetch(b->items[i + 8].p, 1);
		b->base = i + 1;
		cmap__reclaim_item(m, r, &b->items[i]);
	}
	r->in_reclaim--;
	if (b->base == b->n)
		b->base = b->old = b->n = 0;
	st_relaxed(&r->pending, ld_relaxed(&r->pending) - k);
	cmap__pool_flush(m, r); /* remote frees go to their pages */
	return k;
}

/* One attempt to move E forward; returns the epoch now in force. */
static uint64_t try_advance(cmap_t *m)
{
	/* Acquire: pairs with the seq_cst advance that produced e. */
	uint64_t e = ld_acquire(&m->epoch);
	if (!reclaim_barrier(m))
		return e;
	for (rec_t *r = first_rec(m); r; r = r->next) {
		/* Acquire: pairs with the release stores in enter/leave, so
		 * everything that thread read before now happens-before any
		 * free that this scan allows. */
		uint64_t s = ld_acquire(&r->state);
		if ((s & ST_ACTIVE) && (s >> ST_SHIFT) != e)
			return e;
	}
	/* seq_cst: part of the total order the retire argument relies on;
	 * its release half publishes the scan's conclusions. */
	if (cas_seqcst(&m->epoch, &e, e + 1)) {
		st_relaxed(&m->advanced_ns, now_ns()); /* a statistic */
		return e + 1;
	}
	return e;
}

/* A bag that grew past BAG_SHRINK items (a stalled reader held the epoch
 * back) goes back to BAG_KEEP once emptied: room for a normal round of
 * COLLECT_EVERY retirements, not for the stall's backlog. */
#define BAG_SHRINK (4 * COLLECT_EVERY)
#define BAG_KEEP   COLLECT_EVERY

static void shrink_bag(cmap_t *m, bag_t *b)
{
	gitem_t *it = sys_alloc(m, BAG_KEEP * sizeof *it, 16);
	if (!it)
		return; /* keep the big one; nothing is lost */
	gitem_t *old = b->items;
	size_t old_cap = b->cap;
	b->items = it;
	b->cap = BAG_KEEP;
	sys_free(m, old, old_cap * sizeof *it);
}

/* Free up to budget of r's garbage whose grace period is over at epoch
 * g; returns how many items were freed. */
static size_t free_expired(cmap_t *m, rec_t *r, uint64_t g, size_t budget)
{
	size_t k = 0;
	for (int i = 0; i < NBAGS && k < budget; i++) {
		bag_t *b = &r->bags[i];
		if (b->n && b->epoch + GRACE <= g)
			b->old = b->n;
		if (b->base < b->old)
			k += free_some(m, r, b, budget - k);
		if (b->cap > BAG_SHRINK && !b->n)
			shrink_bag(m, b);
	}
	return k;
}

/* Idle threads (above): self's thread tries to steal x, owned by another
 * thread, if its pending garbage has not changed for GRACE + 1 epochs (its
 * owner retired nothing meanwhile: idle, or only reading).  True if x is
 * now stolen.  The mark x->stealer names this attempt: if x changed hands
 * (its owner exited, another thread claimed it) or another stealer began
 * meanwhile, the mark is not ours and this attempt decides nothing, nor
 * clears the revoked flag another attempt relies on. */
static bool steal(cmap_t *m, rec_t *self, rec_t *x, uint64_t g)
{
	pthread_mutex_lock(&g_lock);
	size_t p = ld_relaxed(&x->pending);
	if (p != x->seen_pending || g < x->seen_epoch) {
		x->seen_pending = p;
		x->seen_epoch = g;
	}
	bool ok = x->owner && x->owner != &g_reaper && x->owner != my_ctx() &&
		  !x->stolen && !x->stealer && g >= x->seen_epoch + IDLE_EPOCHS;
	if (ok) {
		x->stealer = self;
		/* seq_cst: the first half of the handshake, before the
		 * barrier (pairs with the owner's load after its StoreLoad). */
		atomic_store_explicit(&x->revoked, 1, memory_order_seq_cst);
	}
	pthread_mutex_unlock(&g_lock);
	if (!ok)
		return false;
	bool fenced = reclaim_barrier(m);
	pthread_mutex_lock(&g_lock);
	bool take = false;
	if (x->stealer == self) {
		/* Acquire: pairs with the owner's release in its last leave,
		 * so its accesses to its bags and pool happen before ours. */
		uint64_t s = ld_acquire(&x->state);
		take = fenced && !(s & ST_ACTIVE);
		x->stealer = NULL;
		if (take)
			x->stolen = true;
		else /* the owner may go on as before */
			st_relaxed(&x->revoked, 0);
	}
	pthread_mutex_unlock(&g_lock);
	return take;
}

/*
 * Free the expired garbage of records that no thread owns (their threads
 * exited) and, when the program asked (cmap_collect), of records stolen
 * from idle threads, whose pools also give back their spare pages and the
 * blocks other threads freed into them.  The reaper marks such a record as
 * its own for the time (under g_lock, so nobody claims it meanwhile) and
 * frees outside the lock, since destructors may call the map.
 * self->in_reclaim refuses writes from those destructors as for the
 * reaper's own garbage.
 */
static size_t reap(cmap_t *m, rec_t *self, uint64_t g, size_t budget, bool all)
{
	size_t k = 0;
	for (rec_t *x = first_rec(m); x && k < budget; x = x->next) {
		/* Relaxed: hints; ownership is decided under the lock. */
		if (x == self || !ld_relaxed(&x->pending))
			continue;
		if (all && !(ld_relaxed(&x->state) & ST_ACTIVE))
			(void)steal(m, self, x, g);
		pthread_mutex_lock(&g_lock);
		/* in_reclaim: cmap_free is emptying x, and a destructor it
		 * runs got us here; its bag must not be freed twice. */
		bool released = !x->owner && !x->in_reclaim;
		bool stolen = x->stolen && !x->reaping;
		if (released)
			x->owner = &g_reaper;
		if (stolen)
			x->reaping = true;
		pthread_mutex_unlock(&g_lock);
		if (!released && !stolen)
			continue;
		self->in_reclaim++;
		k += free_expired(m, x, g, budget - k);
		if (stolen)
			cmap__pool_trim(m, x);
		self->in_reclaim--;
		pthread_mutex_lock(&g_lock);
		if (released) {
			x->owner = NULL;
		} else {
			x->reaping = false;
			if (x->owner == &g_reaper) /* handed over meanwhile */
				unsteal(x, NULL);
		}
		pthread_mutex_unlock(&g_lock);
	}
	return k;
}

/* Outside any operation: advance if possible, free up to FREE_BUDGET
 * expired items, ours first, then those of exited threads (and, when the
 * program asked, of idle ones); then move live nodes off our sparse pages
 * if they are many (compact.c): a budget of the walk, or all of it when
 * the program asked (cmap_collect).  The frees and the look at our pool
 * run inside an operation of their own, so that a thread stealing our
 * record sees us busy; the walk's slices enter on their own. */
static void collect(cmap_t *m, rec_t *r, bool all)
{
	if (r->nest)
		return;
	rec_t *x = cmap__enter(m);
	/* in_reclaim only now: outside an operation, a reaper may be
	 * working on r (stolen), and only entering tells. */
	if (x != r || r->in_reclaim) { /* x != r: r was stolen meanwhile */
		if (x)
			cmap__leave(x);
		return;
	}
	r->since_collect = 0;
	uint64_t g = try_advance(m);
	size_t k = free_expired(m, r, g, FREE_BUDGET);
	reap(m, r, g, FREE_BUDGET - k, all);
	bool compact = cmap__compact_due(m, r, all);
	cmap__leave(r);
	if (compact)
		cmap__compact(m, r, all);
}

void cmap__maybe_collect(cmap_t *m, rec_t *r)
{
	if (r->since_collect >= COLLECT_EVERY)
		collect(m, r, false);
}

CMAP_API size_t cmap_collect(cmap_t *m)
{
	if (!m)
		return 0;
	rec_t *r = cmap__enter(m);
	if (!r)
		return 0;
	cmap__leave(r);
	collect(m, r, true);
	return ld_relaxed(&r->pending);
}

CMAP_API int cmap_defer_free(cmap_t *m, void *p, void (*fn)(void *))
{
	if (!m || !p || !fn)
		return CMAP_EINVAL;
	rec_t *r = cmap__enter(m);
	if (!r)
		return CMAP_ENOMEM;
	int rc = r->in_reclaim ? CMAP_EINVAL : cmap__reserve(m, r, 1);
	if (rc == CMAP_OK)
		cmap__retire(m, r, p, fn, G_USER);
	cmap__leave(r);
	if (rc == CMAP_OK)
		cmap__maybe_collect(m, r);
	return rc;
}

CMAP_API int cmap_reclaim_stats(cmap_t *m, cmap_gc_stats_t *out)
{
	if (!m || !out || out->size < offsetof(cmap_gc_stats_t, epoch))
		return CMAP_EINVAL;
	cmap_gc_stats_t st = {.size = out->size};
	/* Relaxed throughout: a snapshot, stale by nature. */
	st.epoch = ld_relaxed(&m->epoch);
	for (rec_t *r = first_rec(m); r; r = r->next) {
		uint64_t s = ld_relaxed(&r->state);
		st.pending += ld_relaxed(&r->pending);
		st.relocated += ld_relaxed(&r->moved);
		st.blocking += (s & ST_ACTIVE) && (s >> ST_SHIFT) != st.epoch;
		st.threads++;
	}
	uint64_t t = ld_relaxed(&m->advanced_ns), now = now_ns();
	st.epoch_age_secs = now > t ? (double)(now - t) / 1e9 : 0.0;
	memcpy(out, &st, out->size < sizeof st ? out->size : sizeof st);
	return CMAP_OK;
}

size_t cmap__pending(const cmap_t *m)
{
	size_t n = 0;
	for (rec_t *r = first_rec(m); r; r = r->next)
		n += ld_relaxed(&r->pending);
	return n;
}

size_t cmap__nrecords(const cmap_t *m)
{
	size_t n = 0;
	for (rec_t *r = first_rec(m); r; r = r->next)
		n++;
	return n;
}

CMAP_API size_t cmap_len(const cmap_t *m)
{
	if (!m)
		return 0;
	int64_t n = 0;
	/* Relaxed: an exact sum needs quiescence anyway (header). */
	for (rec_t *r = first_rec(m); r; r = r->next)
		n += ld_relaxed(&r->count);
	return n > 0 ? (size_t)n : 0;
}

/* cmap_free: run every pending item and free the records.  Destructors
 * may read the map (joining it: a new record), defer more items or
 * collect, so the map is forgotten only once no bag holds anything. */
void cmap__epoch_free_all(cmap_t *m)
{
	for (bool again = true; again;) {
		again = false;
		for (rec_t *x = first_rec(m); x; x = x->next)
			for (int i = 0; i < NBAGS; i++)
				if (x->bags[i].n) {
					bag_t *b = &x->bags[i];
					b->old = b->n;
					free_some(m, x, b, SIZE_MAX);
					again = true;
				}
	}
	forget_map(m);
	rec_t *r = first_rec(m);
	while (r) {
		rec_t *next = r->next;
		for (int i = 0; i < NBAGS; i++)
			sys_free(m, r->bags[i].items,
				 r->bags[i].cap * sizeof(gitem_t));
		sys_free(m, r->pool, sizeof *r->pool);
		sys_free(m, r, sizeof *r);
		r = next;
	}
	st_relaxed(&m->recs, NULL);
	if (cmap__tl.m == m)
		cmap__tl = (struct tlcache){0};
}
