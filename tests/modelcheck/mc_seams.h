/*
 * Model-checking seams, included by src/internal.h only when CMAP_MODELCHECK
 * is defined (tests/modelcheck/, `make modelcheck`), right after its atomics
 * macros: the epoch code that ships runs under GenMC with these wrappers.
 *
 * 1. Every atomic access first passes mc_point(): a place where another
 *    thread's membarrier() may run a full barrier on this thread (mc.h).
 *    Points before every atomic access of a reader (and the client's points
 *    around its non-atomic reads) cover every position between two of its
 *    memory accesses.
 * 2. atomic_signal_fence becomes nothing.  In C11 it orders nothing between
 *    threads; GenMC 0.10 ignores sync scopes and would check it as a full
 *    seq_cst fence, hiding exactly the behaviours membarrier-mode readers
 *    have (no fence of their own).
 * 3. full_fence goes through mc_full_fence, so that a reverted client can
 *    take the readers' fence away (MC_REVERT_FENCE).
 */
#ifndef CMAP_MC_SEAMS_H
#define CMAP_MC_SEAMS_H

int mc_self(void); /* the calling thread's id */
void mc_point(void);
void mc_full_fence(void *word);

#undef ld_relaxed
#undef ld_acquire
#undef ld_seqcst
#undef st_relaxed
#undef st_release
#undef cas_seqcst
#undef cas_release
#undef cas_acqrel
#define ld_relaxed(p)                                                          \
	(mc_point(), atomic_load_explicit((p), memory_order_relaxed))
#define ld_acquire(p)                                                          \
	(mc_point(), atomic_load_explicit((p), memory_order_acquire))
#define ld_seqcst(p)                                                           \
	(mc_point(), atomic_load_explicit((p), memory_order_seq_cst))
#define st_relaxed(p, v)                                                       \
	(mc_point(), atomic_store_explicit((p), (v), memory_order_relaxed))
#define st_release(p, v)                                                       \
	(mc_point(), atomic_store_explicit((p), (v), memory_order_release))
#define cas_seqcst(p, e, d)                                                    \
	(mc_point(),                                                           \
	 atomic_compare_exchange_strong_explicit(                              \
	     (p), (e), (d), memory_order_seq_cst, memory_order_acquire))
#define cas_release(p, e, d)                                                   \
	(mc_point(),                                                           \
	 atomic_compare_exchange_strong_explicit(                              \
	     (p), (e), (d), memory_order_release, memory_order_relaxed))
#define cas_acqrel(p, e, d)                                                    \
	(mc_point(),                                                           \
	 atomic_compare_exchange_strong_explicit(                              \
	     (p), (e), (d), memory_order_acq_rel, memory_order_acquire))

#undef atomic_signal_fence
#define atomic_signal_fence(order) ((void)(order))

#undef full_fence
#define full_fence(word) mc_full_fence((void *)(word))

#endif
