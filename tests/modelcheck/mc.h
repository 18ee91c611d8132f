/*
 * The environment in which GenMC runs the real src/epoch.c (included by
 * epoch_mc.c after this header): stubs for what GenMC does not model
 * (pthread_once/keys/atfork, calloc, getenv, clock_gettime), and a model of
 * membarrier(2).  Compiled only by `make modelcheck`.
 *
 * membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED).  Linux guarantees that
 * every thread of the process that is running has executed a full memory
 * barrier at some point between the call's entry and its return (threads
 * not running get theirs from the context switch), and the call itself is
 * a full barrier on both ends.  Modelled as:
 *
 *   caller:  fence_sc; req[c][t] = n (relaxed) for every target t;
 *            wait until ack[c][t] == n or gone[t] (relaxed, assume);
 *            fence_sc
 *   target:  at every mc_point(): if it reads a new req[c][t] (relaxed),
 *            fence_sc; ack[c][t] = n (relaxed)
 *            at exit: fence_sc; gone[t] = 1
 *
 * mc_point() precedes every atomic access (mc_seams.h), and clients add
 * points around their non-atomic reads, so the target's barrier may fall
 * between any two of its memory accesses, but only inside the call's
 * window: fence-to-fence synchronisation through req orders the caller's
 * entry fence before it, and through ack orders it before the caller's exit
 * fence.  A target that never acks blocks the execution (not an error).
 * Targets are the reader threads; other threads get no barrier from the
 * model, which only removes orderings the kernel gives (sound for the
 * safety property checked).
 *
 * Failure injection: the MC_FAIL_AT-th membarrier call of thread
 * MC_FAIL_THREAD returns -1/ENOMEM, as when the kernel or a seccomp filter
 * refuses it at run time.  MC_NO_MEMBARRIER: the query fails (membarrier
 * unavailable), so readers fence from the start.
 */
#ifndef CMAP_MC_H
#define CMAP_MC_H

#include <assert.h>
#include <errno.h>
#include <genmc.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MC_NT 5 /* threads, main included */

/* ---- membarrier -------------------------------------------------------- */

static atomic_int mc_req[MC_NT][MC_NT]; /* [caller][target] */
static atomic_int mc_ack[MC_NT][MC_NT];
static atomic_int mc_gone[MC_NT];
static int mc_target[MC_NT]; /* set by main before any thread starts */
static int mc_caller[MC_NT];
static int mc_seen[MC_NT][MC_NT]; /* target-private */
static int mc_calls[MC_NT];	  /* caller-private */

int mc_self(void)
{
	return (int)pthread_self();
}

void mc_point(void)
{
	int t = mc_self();
	if (!mc_target[t])
		return;
	for (int c = 0; c < MC_NT; c++) {
		if (!mc_caller[c] || c == t)
			continue;
		int n =
		    atomic_load_explicit(&mc_req[c][t], memory_order_relaxed);
		if (n != mc_seen[c][t]) {
			atomic_thread_fence(memory_order_seq_cst);
			mc_seen[c][t] = n;
			atomic_store_explicit(&mc_ack[c][t], n,
					      memory_order_relaxed);
		}
	}
}

/* A target thread's last act: the kernel orders a thread's exit before
 * later membarriers. */
static void mc_exit(void)
{
	mc_point();
	atomic_thread_fence(memory_order_seq_cst);
	atomic_store_explicit(&mc_gone[mc_self()], 1, memory_order_relaxed);
}

static long mc_membarrier(void)
{
	int c = mc_self();
	int n = ++mc_calls[c];
	assert(mc_caller[c]);
#ifdef MC_FAIL_AT
	if (c == MC_FAIL_THREAD && n == MC_FAIL_AT) {
		errno = ENOMEM;
		return -1;
	}
#endif
	atomic_thread_fence(memory_order_seq_cst);
	for (int t = 0; t < MC_NT; t++)
		if (mc_target[t] && t != c)
			atomic_store_explicit(&mc_req[c][t], n,
					      memory_order_relaxed);
	for (int t = 0; t < MC_NT; t++)
		if (mc_target[t] && t != c)
			__VERIFIER_assume(
			    atomic_load_explicit(&mc_gone[t],
						 memory_order_relaxed) ||
			    atomic_load_explicit(&mc_ack[c][t],
						 memory_order_relaxed) == n);
	atomic_thread_fence(memory_order_seq_cst);
	return 0;
}

static long mc_syscall(long nr, long cmd, long a, long b)
{
	(void)a, (void)b;
	assert(nr == __NR_membarrier);
	switch (cmd) {
	case MEMBARRIER_CMD_QUERY:
#ifdef MC_NO_MEMBARRIER
		errno = ENOSYS;
		return -1;
#else
		return MEMBARRIER_CMD_PRIVATE_EXPEDITED |
		       MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED;
#endif
	case MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED:
		return 0;
	case MEMBARRIER_CMD_PRIVATE_EXPEDITED:
		return mc_membarrier();
	}
	assert(0);
	return -1;
}

/* ---- stubs --------------------------------------------------------------- */

/* pthread_once: the client's main runs cmap__global_init before creating
 * threads, so the once-control is plain. */
typedef int pthread_once_t;
#define PTHREAD_ONCE_INIT 0
static int mc_once(pthread_once_t *o, void (*fn)(void))
{
	if (!*o) {
		*o = 1;
		fn();
	}
	return 0;
}

/* Thread-exit destructors are not modelled: client threads keep their
 * records until the end (released records are not checked). */
typedef int pthread_key_t;
static int mc_key_create(pthread_key_t *k, void (*dtor)(void *))
{
	(void)dtor;
	*k = 1;
	return 0;
}

/* Not reached: client threads get their registry table up front. */
static void *mc_calloc(size_t n, size_t size)
{
	(void)n, (void)size;
	assert(0);
	return NULL;
}

/* GenMC runs no memset on the heap: claim_record's (a struct rec) zeroes
 * field by field (epoch_mc.c), nothing else is expected. */
struct rec;
void *mc_zero_rec(void *p, int c, size_t n);
static void *mc_no_memset(void *p, int c, size_t n)
{
	(void)c, (void)n;
	assert(0);
	return p;
}

static int mc_clock_gettime(int clk, struct timespec *ts)
{
	(void)clk;
	ts->tv_sec = 0;
	ts->tv_nsec = 0;
	return 0;
}

#define pthread_once(o, fn)	  mc_once((o), (fn))
#define pthread_key_create(k, d)  mc_key_create((k), (d))
#define pthread_key_delete(k)	  ((void)(k), 0)
#define pthread_setspecific(k, v) ((void)(k), (void)(v), 0)
#define pthread_atfork(a, b, c)	  ((void)(a), (void)(b), (void)(c), 0)
#define calloc(n, s)		  mc_calloc((n), (s))
#define secure_getenv(name)	  ((void)(name), (char *)NULL)
#define clock_gettime(clk, ts)	  mc_clock_gettime((clk), (ts))
#define syscall(nr, cmd, a, b)	  mc_syscall((nr), (cmd), (a), (b))
#define memset(p, c, n)                                                        \
	_Generic((p), struct rec *                                             \
		 : mc_zero_rec, default                                        \
		 : mc_no_memset)((p), (c), (n))

/* GenMC 0.10.3 turns a memset of a struct into one store per field and
 * stops at a double: cmap_gc_stats_t's epoch_age_secs (cmap_reclaim_stats,
 * which no client calls).  Undefined again after epoch.c. */
#define double long long

#endif
