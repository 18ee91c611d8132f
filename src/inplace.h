/*
 * In-place writes (inplace.c has the protocol): the announcement, the
 * value write of a present key, inline on the set path, and what a copier
 * and an appender call.
 */
#ifndef CMAP_INPLACE_H
#define CMAP_INPLACE_H

#include <string.h>

#include "internal.h"

/* What an in-place write or append did. */
enum { IP_DONE, IP_STALE, IP_BUSY };

/* The contents a copy of bucket b must have: n entries, entry i's value
 * v instead of its word (i < 0: every value as it is), and if app, entry
 * i (== n - 1) is a pending append whose key k is not read from b. */
typedef struct ovr {
	int32_t i;
	uint32_t n;
	uint64_t v, k;
	bool app;
} ovr_t;

/* The contents of a bucket nothing writes in place. */
static inline ovr_t no_ovr(bucket_t *b)
{
	return (ovr_t){.i = -1, .n = b ? bucket_n(b) : 0};
}

/* Freeze b against in-place writes before copying it (in-place maps
 * only): afterwards no in-place write can begin, and every key and value
 * word but *o's is final. */
void cmap__freeze_bucket(const cmap_t *m, bucket_t *b, ovr_t *o);

/* Append (key, *val) to b at entry n, the count the caller found key
 * absent in, in an appending map (inplace.c).  IP_DONE: appended (the
 * linearization point is inside), IP_STALE: b's count is no longer n
 * (find the key again), IP_BUSY: b is frozen or contended, or no memory
 * for a descriptor (copy instead).  Retires nothing. */
int cmap__append(cmap_t *m, rec_t *r, bucket_t *b, uint32_t n, const void *key,
		 const void *val);

/* Give r a descriptor: a free one, else the next index (making its chunk
 * if needed).  False when out of memory or indexes. */
bool cmap__desc_take(cmap_t *m, rec_t *r);

/* Attempts at announcing an in-place write while another thread's is
 * pending, before copying instead: that window is a few instructions. */
#ifndef IP_SPIN
#define IP_SPIN 16
#endif

static inline _Atomic(uint64_t) *val_word(const cmap_t *m, bucket_t *b,
					  uint32_t i)
{
	return (_Atomic(uint64_t) *)(uintptr_t)bval(m, b, i);
}

/*
 * Announce d (filled in) on b, waiting a few attempts for another writer's
 * announcement to go: false if b is frozen or stays contended.
 */
static inline __attribute__((always_inline)) bool
announce(bucket_t *b, uint32_t base, uint32_t me)
{
	for (int spin = 0;; spin++) {
		uint32_t w = base;
		/* Release: a copier whose freeze returns our descriptor reads
		 * its fields.  Acquire: pairs with the previous writer's
		 * release withdrawal, so its append (count and entry) is
		 * seen. */
		if (cas_acqrel(&b->ipw, &w, base | me))
			return true;
		if ((w & IPW_FROZEN) || spin == IP_SPIN)
			return false;
		cpu_relax();
	}
}

/* Withdraw r's announcement on b; if a copier froze b meanwhile, the
 * descriptor is b's now, put back when b is freed. */
static inline __attribute__((always_inline)) void
withdraw(rec_t *r, bucket_t *b, uint32_t base, uint32_t me)
{
	uint32_t w = base | me;
	/* Release: a later copier's freeze or announcer (acquire) sees the
	 * words we wrote. */
	if (!cas_release(&b->ipw, &w, base)) {
		r->desc = NULL;
		r->didx = 0;
	}
}

/*
 * Write *val (8 bytes) over entry i of b in place, in an in-place map: if
 * exp is non-NULL, on condition that the value is still *exp; else
 * whatever it is, with the value replaced copied to *old.  IP_DONE:
 * written (the linearization point is inside), IP_STALE: the value was not
 * *exp, IP_BUSY: b is frozen or contended, or no memory for a descriptor
 * (copy instead).  Retires nothing.  Announce, write the word, withdraw
 * the announcement: inline, as it is most of a set of a present key.
 */
static inline __attribute__((always_inline)) int
cmap__put_in_place(cmap_t *m, rec_t *r, bucket_t *b, uint32_t i,
		   const uint64_t *exp, const void *valp, uint64_t *old)
{
	if (!r->didx && !cmap__desc_take(m, r))
		return IP_BUSY;
	desc_t *d = r->desc;
	uint32_t me = r->didx << IPW_SHIFT;
	uint64_t val;
#ifndef CMAP_MODELCHECK
	memcpy(&val, valp, 8); /* the caller's buffer may be unaligned */
#else
	val = *(const uint64_t *)valp; /* GenMC has no memcpy of objects */
#endif
	d->i = i;
	d->kind = exp ? D_COND : D_ANY;
	if (exp) /* (a copier reads exp of a conditional write only) */
		d->exp = *exp;
	d->val = val;
	/* Located before the announcement, off its critical path. */
	_Atomic(uint64_t) *word = val_word(m, b, i);
	/* The capacity is the only field set while no write is announced. */
	uint32_t base = ld_relaxed(&b->ipw) & IPW_CAP;
	if (!announce(b, base, me))
		return IP_BUSY;
	/* Only we write the word while d is announced (copiers and readers
	 * only read it), so a load and a store do what an exchange or a CAS
	 * would, with one locked instruction fewer on the bucket's line.
	 * The load: acquire for a set or replace, whose old value goes to
	 * our caller, who may follow it (it was stored with release);
	 * relaxed for a conditional write, whose old value is the snapshot,
	 * read with acquire already.  The store: release, the linearization
	 * point (unless a copy carried the write first); pairs with readers'
	 * acquire loads of the word, so what a stored pointer points to is
	 * seen. */
	bool ok = true;
	if (!exp) {
		*old = ld_acquire(word);
		st_release(word, val);
	} else if (*exp != val) {
		ok = ld_relaxed(word) == *exp;
		if (ok)
			st_release(word, val);
	}
	withdraw(r, b, base, me);
	return ok ? IP_DONE : IP_STALE;
}

#endif /* CMAP_INPLACE_H */
