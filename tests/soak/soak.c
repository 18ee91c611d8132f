/*
 * Soak test: many threads, several maps, minutes to hours (`make soak
 * MINUTES=N`).  Not a ctest test_* file: it runs for a duration, not a
 * workload, and prints a report.  What it does and checks:
 *
 * Maps (all at once, every operation picks one):
 *   u64      8-byte keys and values, the default hasher;
 *   var      variable-length keys and values (some values ~2 KiB);
 *   collide  8-byte keys with a hasher that gives every 32nd key the same
 *            64-bit hash (a collision bucket past the last level) and the
 *            others the same low 40 bits (chains of inner nodes 8 levels
 *            deep that split and contract below them);
 *   dtor-var variable-length keys and values with counting destructors;
 *   dtor-fix 16-byte keys, 24-byte values, counting destructors, a hasher
 *            whose low 20 bits are zero (4 levels of single-slot nodes).
 *
 * Workers (--threads, default 16, on however many cores: oversubscribed, so
 * threads are preempted inside operations).  Worker slot w owns a key range
 * in every map and keeps an exact oracle of it (present or not, and the tag
 * of the value last written); a value encodes its key's hash, the writer's
 * slot and a sequence number, and its bytes are derived from them, so every
 * set, get, get_with (and a nested get inside the callback), remove (with
 * and without the old value, with too small buffers for CMAP_ERANGE) and
 * get_batch is checked exactly, and so are the read-modify-write calls
 * (insert, replace, cas and remove_if with right and wrong expected values,
 * compute answering SET, REMOVE, KEEP, ABORT, an invalid answer or a value
 * of the wrong size, with a refused write from inside its function) and,
 * on the fixed-size maps, set, insert and remove batches with repeated
 * keys (var maps: refused), each result following the oracle in order.
 * Walks run while every other worker writes: cmap_foreach (sometimes
 * stopped early) and cursor slices (other operations, cmap_thread_exit
 * included, between the slices), both sometimes writing own keys from the
 * callback.  Every key and value seen must be well-formed, no key may be
 * seen twice, and each own key not written during the walk must be seen
 * exactly when present, with its exact value.  A worker's cmap_retain
 * removes exactly its own keys that it marked (checked as a walk).  A
 * shared range per map is raced by all
 * slots; there only well-formedness is checked (some slot wrote exactly
 * these bytes for exactly this key).  Also: cmap_defer_free (each callback
 * must run exactly once), cmap_collect, cmap_reclaim_stats (the epoch never
 * goes back), cmap_len, and cmap_thread_exit in the middle of a run.
 * Destructors check what they destroy and sometimes read the map, and check
 * that a write from inside them is refused.
 *
 * Churn: every --churn-ms the main thread asks one worker to stop, joins it
 * and starts a new thread on the same slot, which takes over its oracle
 * and counters (handed over through the join).  Exiting workers call
 * cmap_thread_exit, return, or pthread_exit, so thread records are released
 * and reused, and their garbage is reaped by others.
 *
 * Quiescent phase every --phase-secs: all workers stop at a barrier, each
 * collects until its own pending garbage is 0; then the main thread, for
 * every map, collects until cmap_reclaim_stats reports no pending garbage
 * at all (exited threads' included) and no blocking thread, checks the
 * thread-record count (at most 2 x (threads + 1): records are reused, but a
 * joining thread cannot take one that a collect is reaping at that moment),
 * runs cmap_validate, compares cmap_len with the walk and with the sum of
 * the oracles plus the shared keys found, reads every oracle key back, and
 * for the destructor maps checks created == destroyed + handed out + live,
 * (before the checks, in every other phase, the main thread retains an
 * eighth of the own keys away, checking every entry against the oracles,
 * or clears one map, and the oracles follow),
 * for keys and values; every deferred callback has run.  Then RSS
 * (/proc/self/statm) is sampled.  The maps are bounded (the key ranges are
 * fixed), so after a warm-up (--warmup-secs, default 10 % of the run and
 * at least two phases: the per-thread node pools fill up meanwhile) RSS
 * must stay at most --rss-factor (1.5) x the warm-up RSS + --rss-slack
 * (16) MiB.  A breach is reported at once but the run goes on, so that the
 * series shows whether RSS levels off, and fails at the end; past 4 x the
 * warm-up RSS + 512 MiB it stops at once (the box is shared).  The RSS
 * rule is off under sanitizers (their shadow memory and quarantine grow by
 * themselves); the series is still printed, with the map's own figures
 * (cmap_validate's bytes in use and reserved).
 *
 * At the end the workers are joined, the last phase's checks run once more
 * (the exited threads' garbage reaped by the main thread alone), the maps
 * are freed and every key and value ever created must have been destroyed
 * exactly once (or handed out by set/remove).  A watchdog fails the run if
 * no phase or churn step completes for --hang-secs.  Any failure prints
 * "soak: FAIL: ..." with the seed and exits 1.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cmap.h"
#include "testutil.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SOAK_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SOAK_SANITIZED 1
#endif
#endif
#ifndef SOAK_SANITIZED
#define SOAK_SANITIZED 0
#endif

#define MAX_THREADS 255	 /* the slot fits in 8 bits of a value's tag */
#define VMAX	    4096 /* buffer for any value (the largest is 2055) */
#define KMAX	    64	 /* buffer for any key (the largest is 32) */
#define BATCH_MAX   16
#define DRAIN_MAX   100000 /* collects before "garbage does not drain" */

/* ---- options and global state ----------------------------------------- */

static struct {
	unsigned threads;
	double seconds;
	uint64_t seed;
	double phase_secs;
	unsigned churn_ms;
	double warmup_secs; /* < 0: 10 % of the run */
	double rss_factor;
	double rss_slack_mib;
	bool rss_check;
	double hang_secs;
	bool verbose;
} opt = {16, 600, 1, 5, 25, -1, 1.5, 16, !SOAK_SANITIZED, 300, false};

static _Atomic unsigned g_phase_gen; /* bumped to call a quiescent phase */
static pthread_barrier_t g_bar;	     /* workers + main */
static _Atomic uint64_t g_heartbeat; /* progress, for the watchdog */
static _Atomic bool g_done;
static _Atomic(const char *) g_stage = "start";
static _Atomic uint64_t g_defer_run;
static _Atomic unsigned g_phase_no;
/* Does a replace keep the key the map holds (key_dtor only when the entry
 * leaves the map), or take the caller's and destroy the old one?  Probed
 * at start (probe_key_rule), so the key count is exact either way. */
static bool g_replace_keeps_key;

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
	va_list ap;
	fflush(stdout); /* what was printed before comes first */
	va_start(ap, fmt);
	fprintf(stderr, "soak: FAIL (seed %llu, phase %u): ",
		(unsigned long long)opt.seed, atomic_load(&g_phase_no));
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	fflush(stdout);
	fflush(stderr);
	/* _Exit: the other threads are still running; no atexit handlers. */
	_Exit(1);
}

static double now_secs(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static double rss_mib(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	unsigned long size = 0, res = 0;
	if (!f)
		return 0;
	if (fscanf(f, "%lu %lu", &size, &res) != 2)
		res = 0;
	fclose(f);
	return (double)res * (double)sysconf(_SC_PAGESIZE) / (1024.0 * 1024.0);
}

/* ---- maps ----------------------------------------------------------------
 */

/* Every 32nd key: one full 64-bit hash for all (a collision bucket past
 * the last level).  The others share their low 40 bits (the first 8
 * levels), so they hang under a chain of single-slot inner nodes and split
 * and contract at levels 8 to 12. */
static uint64_t collide_hash(const void *k, size_t n, uint64_t seed)
{
	const uint64_t c = 0x0123456789abcdefull;
	uint64_t id;
	memcpy(&id, k, sizeof id);
	if (id % 32 == 0)
		return c;
	return (c & ((1ull << 40) - 1)) | cmap_hash_xxh3(k, n, seed) << 40;
}

/* Low 20 bits zero: the first 4 levels are single-slot chains. */
static uint64_t shift_hash(const void *k, size_t n, uint64_t seed)
{
	return cmap_hash_xxh3(k, n, seed) << 20;
}

enum { M_U64, M_VAR, M_COLLIDE, M_DTOR_VAR, M_DTOR_FIX, NMAPS };

struct mapspec {
	const char *name;
	size_t ks, vs; /* 0: variable length */
	cmap_hash_fn hash;
	bool dtors;
	uint32_t span;	  /* keys per worker slot */
	uint32_t nshared; /* keys all slots race on */
	unsigned weight;  /* share of the operations */
};

static const struct mapspec specs[NMAPS] = {
    [M_U64] = {"u64", 8, 8, NULL, false, 2048, 64, 30},
    [M_VAR] = {"var", 0, 0, NULL, false, 512, 64, 25},
    [M_COLLIDE] = {"collide", 8, 8, collide_hash, false, 48, 32, 15},
    [M_DTOR_VAR] = {"dtor-var", 0, 0, NULL, true, 256, 64, 15},
    [M_DTOR_FIX] = {"dtor-fix", 16, 24, shift_hash, true, 512, 64, 15},
};

/* What the destructors of a map count and check. */
struct dtor_ctx {
	int mi;
	cmap_t *m;
	_Atomic uint64_t keys, vals;
};

static cmap_t *maps[NMAPS]; /* NULL: left out by --maps */
static bool map_on[NMAPS] = {true, true, true, true, true};
static struct dtor_ctx dctx[NMAPS];

/* ---- keys and values -------------------------------------------------- */

/* Key ids: slot w's i-th key is (w + 1) << 32 | i; shared key j is j. */
static uint64_t own_id(unsigned w, uint32_t i)
{
	return (uint64_t)(w + 1) << 32 | i;
}

static size_t key_make(int mi, uint64_t id, unsigned char *buf)
{
	const struct mapspec *s = &specs[mi];
	memcpy(buf, &id, 8);
	if (s->ks == 8)
		return 8;
	if (s->ks == 16) {
		uint64_t x = mix(id);
		memcpy(buf + 8, &x, 8);
		return 16;
	}
	size_t n = 8 + mix(id) % 25;
	for (size_t i = 8; i < n; i++)
		buf[i] = (unsigned char)(id * 31 + i);
	return n;
}

static bool key_ok(int mi, const void *key, size_t klen)
{
	unsigned char kb[KMAX];
	uint64_t id;
	if (klen < 8 || klen > KMAX)
		return false;
	memcpy(&id, key, 8);
	return key_make(mi, id, kb) == klen && !memcmp(kb, key, klen);
}

/* A value's tag: 16 bits of its key's hash, the writer's slot, 40 bits of
 * the writer's sequence number (unique per slot). */
static uint16_t key_check(int mi, uint64_t id)
{
	return (uint16_t)(mix(id ^ (uint64_t)mi << 56) >> 48);
}

static uint64_t tag_make(int mi, uint64_t id, unsigned w, uint64_t seq)
{
	return (uint64_t)key_check(mi, id) << 48 | (uint64_t)w << 40 |
	       (seq & ((1ull << 40) - 1));
}

static size_t val_len(int mi, uint64_t tag)
{
	const struct mapspec *s = &specs[mi];
	if (s->vs)
		return s->vs;
	uint64_t h = mix(tag ^ 0x9e3779b97f4a7c15ull);
	/* Mostly small; 1 in 32 up to 2 KiB (blobs of several sizes). */
	return (h & 31) == 0 ? 8 + (h >> 8) % 2048 : 8 + (h >> 8) % 57;
}

static size_t val_make(int mi, uint64_t tag, unsigned char *buf)
{
	size_t n = val_len(mi, tag);
	uint64_t h = mix(tag ^ 0x5bd1e995ull);
	memcpy(buf, &tag, 8);
	for (size_t i = 8; i < n; i++)
		buf[i] = (unsigned char)((h >> (i % 8 * 8)) ^ i);
	return n;
}

/* The bytes a writer of this tag wrote? */
static bool val_bytes_ok(int mi, const void *val, size_t len, uint64_t *tag)
{
	unsigned char vb[VMAX];
	uint64_t t;
	if (len < 8 || len > VMAX)
		return false;
	memcpy(&t, val, 8);
	if ((t >> 40 & 0xff) >= opt.threads)
		return false;
	if (val_make(mi, t, vb) != len || memcmp(vb, val, len))
		return false;
	if (tag)
		*tag = t;
	return true;
}

/* Well-formed for key id: written by some slot for exactly this key. */
static bool val_ok(int mi, uint64_t id, const void *val, size_t len)
{
	uint64_t t;
	return val_bytes_ok(mi, val, len, &t) &&
	       (uint16_t)(t >> 48) == key_check(mi, id);
}

/* ---- destructors and deferred frees ----------------------------------- */

static void key_dtor(void *item, size_t len, void *ctx)
{
	struct dtor_ctx *d = ctx;
	if (!key_ok(d->mi, item, len))
		fail("%s: key destructor got a key that was never inserted "
		     "(len %zu)",
		     specs[d->mi].name, len);
	atomic_fetch_add_explicit(&d->keys, 1, memory_order_relaxed);
}

static void val_dtor(void *item, size_t len, void *ctx)
{
	struct dtor_ctx *d = ctx;
	uint64_t t;
	if (!val_bytes_ok(d->mi, item, len, &t))
		fail("%s: value destructor got a malformed value (len %zu)",
		     specs[d->mi].name, len);
	/* Sometimes read the map (allowed) and try to write it (refused). */
	if ((mix(t) & 255) == 0) {
		unsigned char kb[KMAX], vb[VMAX];
		uint64_t id = t % specs[d->mi].nshared;
		size_t kl = key_make(d->mi, id, kb), vl = sizeof vb;
		int rc = cmap_get(d->m, kb, kl, vb, &vl);
		if (rc == CMAP_OK ? !val_ok(d->mi, id, vb, vl)
				  : rc != CMAP_NOT_FOUND)
			fail("%s: get from a destructor: rc %d",
			     specs[d->mi].name, rc);
		vl = val_make(d->mi, tag_make(d->mi, id, 0, 0), vb);
		rc = cmap_set(d->m, kb, kl, vb, vl, NULL, NULL);
		if (rc != CMAP_EINVAL)
			fail("%s: set from a destructor returned %d, not "
			     "CMAP_EINVAL",
			     specs[d->mi].name, rc);
	}
	atomic_fetch_add_explicit(&d->vals, 1, memory_order_relaxed);
}

#define DEFER_MAGIC 0x50a4defe12345678ull

struct deferred {
	uint64_t magic;
};

static void defer_cb(void *p)
{
	struct deferred *d = p;
	if (d->magic != DEFER_MAGIC)
		fail("deferred callback ran on a freed or foreign object "
		     "(magic %llx)",
		     (unsigned long long)d->magic);
	d->magic = 0;
	free(d);
	atomic_fetch_add_explicit(&g_defer_run, 1, memory_order_relaxed);
}

/* ---- worker slots --------------------------------------------------------
 */

/* One slot's exact knowledge of its own keys in one map. */
struct oracle {
	unsigned char *has;
	uint64_t *tag;
	size_t count;
	uint64_t created; /* successful sets: values copied in */
	uint64_t inserts; /* sets that inserted a new entry */
	uint64_t handed;  /* values whose ownership set/remove gave us */
};

/* Owned by the thread running on it; handed over through join/create. */
struct slot {
	unsigned id;
	pthread_t th;
	bool running;
	_Atomic bool exit_req;
	unsigned gen; /* the phase generation it has done */
	uint64_t rng;
	uint64_t seq;
	uint64_t incarnation;
	uint64_t ops;
	uint64_t defers;
	/* The new API's figures (reported at the end). */
	uint64_t rmw, batches, walks, walked, retains, retained;
	/* Inside a walk's callback: no cmap_thread_exit. */
	bool in_cb;
	/* During a walk of map dirty_mi: own keys written meanwhile (their
	 * visits are checked only for well-formedness and at most once). */
	unsigned char *dirty;
	int dirty_mi;
	uint64_t epoch_seen[NMAPS];
	struct oracle o[NMAPS];
};

static struct slot *slots;

static void own_fail(struct slot *s, int mi, uint32_t i, const char *what,
		     int rc)
{
	const struct oracle *o = &s->o[mi];
	fail("%s: slot %u key %u: %s (rc %d; oracle: %s, tag %llx)",
	     specs[mi].name, s->id, i, what, rc,
	     o->has[i] ? "present" : "absent", (unsigned long long)o->tag[i]);
}

struct visit {
	int mi;
	uint64_t id;
	bool own;
	uint64_t want; /* own: the expected tag */
	bool nested;
	int calls;
	bool ok;
};

static void visit_cb(const void *key, size_t klen, const void *val, size_t vlen,
		     void *ctx)
{
	struct visit *v = ctx;
	unsigned char kb[KMAX], vb[VMAX];
	v->calls++;
	size_t kl = key_make(v->mi, v->id, kb);
	v->ok = klen == kl && !memcmp(key, kb, kl);
	if (v->own) {
		size_t n = val_make(v->mi, v->want, vb);
		v->ok = v->ok && vlen == n && !memcmp(val, vb, n);
	} else {
		v->ok = v->ok && val_ok(v->mi, v->id, val, vlen);
	}
	if (v->nested) {
		/* A get inside the callback: the own key cannot change
		 * meanwhile (only we write it). */
		size_t gl = sizeof vb;
		int rc = cmap_get(maps[v->mi], kb, kl, vb, &gl);
		if (v->own)
			v->ok = v->ok && rc == CMAP_OK && gl == vlen &&
				!memcmp(vb, val, vlen);
		else
			v->ok =
			    v->ok &&
			    (rc == CMAP_NOT_FOUND ||
			     (rc == CMAP_OK && val_ok(v->mi, v->id, vb, gl)));
	}
}

static unsigned pick_map(uint64_t x)
{
	unsigned total = 0, r;
	for (int mi = 0; mi < NMAPS; mi++)
		total += map_on[mi] ? specs[mi].weight : 0;
	r = (unsigned)(x % total);
	for (int mi = 0; mi < NMAPS; mi++) {
		if (!map_on[mi])
			continue;
		if (r < specs[mi].weight)
			return (unsigned)mi;
		r -= specs[mi].weight;
	}
	return 0;
}

/* One operation on slot s's own key i of map mi, checked exactly. */
static void op_own(struct slot *s, int mi, uint64_t x)
{
	const struct mapspec *sp = &specs[mi];
	cmap_t *m = maps[mi];
	struct oracle *o = &s->o[mi];
	uint32_t i = (uint32_t)(x % sp->span);
	uint64_t id = own_id(s->id, i);
	unsigned char kb[KMAX], vb[VMAX], ob[VMAX];
	size_t kl = key_make(mi, id, kb);
	bool has = o->has[i];
	size_t wlen = has ? val_len(mi, o->tag[i]) : 0;
	uint64_t y = rng_next(&s->rng);
	unsigned r = (unsigned)(y % 100);
	/* A too-small buffer for a variable-length value: CMAP_ERANGE. */
	bool small = !sp->vs && has && (y >> 8 & 15) == 0;
	size_t cap = small ? (y >> 12) % wlen : VMAX;
	int rc;

	if (r < 30) { /* set */
		uint64_t tag = tag_make(mi, id, s->id, ++s->seq);
		size_t vl = val_make(mi, tag, vb);
		bool want_old = y >> 20 & 1;
		size_t ol = cap;
		/* Fixed-size values: old_len may be NULL. */
		size_t *olp = want_old && (!sp->vs || y >> 21 & 1) ? &ol : NULL;
		if (!want_old)
			small = false;
		rc = cmap_set(m, kb, kl, vb, vl, want_old ? ob : NULL, olp);
		if (small) {
			if (rc != CMAP_ERANGE || ol != wlen)
				own_fail(s, mi, i,
					 "set with a small old buffer", rc);
			return; /* nothing changed */
		}
		if (rc != (has ? CMAP_REPLACED : CMAP_OK))
			own_fail(s, mi, i, "set", rc);
		if (has && want_old) {
			size_t n = val_make(mi, o->tag[i], vb);
			if (memcmp(ob, vb, n) || (olp && ol != n))
				own_fail(s, mi, i, "set's old value", rc);
			o->handed++;
		}
		o->count += !has;
		o->has[i] = 1;
		o->tag[i] = tag;
		o->created++;
		o->inserts += !has;
	} else if (r < 55) { /* get */
		size_t gl = cap;
		bool no_val = sp->vs && (y >> 20 & 7) == 0;
		rc = cmap_get(m, kb, kl, no_val ? NULL : ob,
			      sp->vs && (y >> 23 & 1) ? NULL : &gl);
		if (small) {
			if (rc != CMAP_ERANGE || gl != wlen)
				own_fail(s, mi, i, "get with a small buffer",
					 rc);
			return;
		}
		if (rc != (has ? CMAP_OK : CMAP_NOT_FOUND))
			own_fail(s, mi, i, "get", rc);
		if (has && !no_val) {
			size_t n = val_make(mi, o->tag[i], vb);
			if (memcmp(ob, vb, n) || (gl != cap && gl != n))
				own_fail(s, mi, i, "get's value", rc);
		}
	} else if (r < 65) { /* get_with, sometimes with a nested get */
		struct visit v = {
		    mi, id,   true, has ? o->tag[i] : 0, (y >> 20 & 7) == 0,
		    0,	false};
		rc = cmap_get_with(m, kb, kl, visit_cb, &v);
		if (rc != (has ? CMAP_OK : CMAP_NOT_FOUND) ||
		    v.calls != (has ? 1 : 0) || (has && !v.ok))
			own_fail(s, mi, i, "get_with", rc);
	} else if (r < 85) { /* remove */
		bool want_old = y >> 20 & 1;
		size_t ol = cap;
		size_t *olp = want_old && (!sp->vs || y >> 21 & 1) ? &ol : NULL;
		if (!want_old)
			small = false;
		rc = cmap_remove(m, kb, kl, want_old ? ob : NULL, olp);
		if (small) {
			if (rc != CMAP_ERANGE || ol != wlen)
				own_fail(s, mi, i,
					 "remove with a small old buffer", rc);
			return;
		}
		if (rc != (has ? CMAP_OK : CMAP_NOT_FOUND))
			own_fail(s, mi, i, "remove", rc);
		if (has && want_old) {
			size_t n = val_make(mi, o->tag[i], vb);
			if (memcmp(ob, vb, n) || (olp && ol != n))
				own_fail(s, mi, i, "remove's old value", rc);
			o->handed++;
		}
		o->count -= has;
		o->has[i] = 0;
	} else if (r < 95) { /* get_batch over own keys */
		if (sp->ks == 0 || sp->vs == 0) {
			if (cmap_get_batch(m, kb, 1, ob, NULL) != CMAP_EINVAL)
				own_fail(s, mi, i, "get_batch on a var map", 0);
			return;
		}
		unsigned n = 1 + (unsigned)(y >> 20) % BATCH_MAX;
		uint32_t idx[BATCH_MAX];
		unsigned char keys[BATCH_MAX * 16], found[BATCH_MAX];
		long want = 0;
		memset(ob, 0xa5, n * sp->vs);
		memset(found, 7, sizeof found);
		for (unsigned j = 0; j < n; j++) {
			idx[j] =
			    j ? (uint32_t)(rng_next(&s->rng) % sp->span) : i;
			key_make(mi, own_id(s->id, idx[j]), keys + j * sp->ks);
			want += o->has[idx[j]];
		}
		long got = cmap_get_batch(m, keys, n, ob, found);
		if (got != want)
			own_fail(s, mi, i, "get_batch's count", (int)got);
		for (unsigned j = 0; j < n; j++) {
			uint32_t k = idx[j];
			unsigned char *v = ob + j * sp->vs;
			if (found[j] != o->has[k])
				own_fail(s, mi, k, "get_batch's found", 0);
			if (o->has[k]) {
				val_make(mi, o->tag[k], vb);
				if (memcmp(v, vb, sp->vs))
					own_fail(s, mi, k, "get_batch's value",
						 0);
			} else {
				for (size_t b = 0; b < sp->vs; b++)
					if (v[b] != 0xa5)
						own_fail(s, mi, k,
							 "get_batch wrote a "
							 "missing key's value",
							 0);
			}
		}
	} else if (r < 97) { /* defer_free */
		struct deferred *d = malloc(sizeof *d);
		if (!d)
			fail("out of memory");
		d->magic = DEFER_MAGIC;
		rc = cmap_defer_free(m, d, defer_cb);
		if (rc != CMAP_OK)
			fail("%s: cmap_defer_free: %d", sp->name, rc);
		s->defers++;
	} else if (r < 98) {
		cmap_collect(m);
	} else if (r < 99) {
		cmap_gc_stats_t gs = {.size = sizeof gs};
		/* No threads < 1 check here: on a map no thread has used
		 * yet (a run's first calls) there is no record at all. */
		if (cmap_reclaim_stats(m, &gs) != CMAP_OK)
			fail("%s: cmap_reclaim_stats", sp->name);
		if (gs.epoch < s->epoch_seen[mi])
			fail("%s: the epoch went back from %llu to %llu",
			     sp->name, (unsigned long long)s->epoch_seen[mi],
			     (unsigned long long)gs.epoch);
		s->epoch_seen[mi] = gs.epoch;
		(void)cmap_len(m);
	} else if (!s->in_cb && (y >> 20) % 50 == 0) {
		/* Leave every map mid-run; the next call joins again. */
		cmap_thread_exit();
	}
}

/* One operation on a shared key: others race on it; the value must be one
 * some slot wrote for this key. */
static void op_shared(struct slot *s, int mi, uint64_t x)
{
	const struct mapspec *sp = &specs[mi];
	cmap_t *m = maps[mi];
	struct oracle *o = &s->o[mi];
	uint64_t id = x % sp->nshared;
	unsigned char kb[KMAX], vb[VMAX], ob[VMAX];
	size_t kl = key_make(mi, id, kb), ol = VMAX;
	uint64_t y = rng_next(&s->rng);
	bool want_old = y >> 8 & 1;
	int rc;
	switch (y % 10) {
	case 0:
	case 1:
	case 2:
	case 3: {
		uint64_t tag = tag_make(mi, id, s->id, ++s->seq);
		size_t vl = val_make(mi, tag, vb);
		rc = cmap_set(m, kb, kl, vb, vl, want_old ? ob : NULL, &ol);
		if (rc != CMAP_OK && rc != CMAP_REPLACED)
			fail("%s: shared key %llu: set: %d", sp->name,
			     (unsigned long long)id, rc);
		if (rc == CMAP_REPLACED && want_old) {
			if (!val_ok(mi, id, ob, ol))
				fail("%s: shared key %llu: set's old value is "
				     "malformed",
				     sp->name, (unsigned long long)id);
			o->handed++;
		}
		o->created++;
		o->inserts += rc == CMAP_OK;
		break;
	}
	case 4:
	case 5:
	case 6:
		rc = cmap_get(m, kb, kl, ob, &ol);
		if (rc == CMAP_OK ? !val_ok(mi, id, ob, ol)
				  : rc != CMAP_NOT_FOUND)
			fail("%s: shared key %llu: get: rc %d or malformed",
			     sp->name, (unsigned long long)id, rc);
		break;
	case 7:
	case 8: {
		struct visit v = {mi, id,   false, 0, (y >> 9 & 7) == 0,
				  0,  false};
		rc = cmap_get_with(m, kb, kl, visit_cb, &v);
		if (rc == CMAP_OK ? v.calls != 1 || !v.ok
				  : rc != CMAP_NOT_FOUND || v.calls)
			fail("%s: shared key %llu: get_with: rc %d, %d calls, "
			     "%s",
			     sp->name, (unsigned long long)id, rc, v.calls,
			     v.ok ? "ok" : "bad key or value");
		break;
	}
	default:
		rc = cmap_remove(m, kb, kl, want_old ? ob : NULL, &ol);
		if (rc == CMAP_OK && want_old) {
			if (!val_ok(mi, id, ob, ol))
				fail("%s: shared key %llu: remove's old value "
				     "is malformed",
				     sp->name, (unsigned long long)id);
			o->handed++;
		} else if (rc != CMAP_OK && rc != CMAP_NOT_FOUND) {
			fail("%s: shared key %llu: remove: %d", sp->name,
			     (unsigned long long)id, rc);
		}
	}
}

/* ---- the read-modify-write calls, batches and walks on own keys ------- */

/* Own key i of map mi now holds tag (a value copied in), or is gone.  Every
 * oracle change of op_rmw, op_walk and op_retain goes through these, so a
 * walk in progress learns which own keys were written during it. */
static void own_store(struct slot *s, int mi, uint32_t i, uint64_t tag)
{
	struct oracle *o = &s->o[mi];
	o->count += !o->has[i];
	o->inserts += !o->has[i];
	o->has[i] = 1;
	o->tag[i] = tag;
	o->created++;
	if (s->dirty && s->dirty_mi == mi)
		s->dirty[i] = 1;
}

static void own_drop(struct slot *s, int mi, uint32_t i)
{
	struct oracle *o = &s->o[mi];
	o->count -= o->has[i];
	o->has[i] = 0;
	if (s->dirty && s->dirty_mi == mi)
		s->dirty[i] = 1;
}

/* The value buf (length *lenp, when known) is own key i's, as the oracle
 * says? */
static void own_val_check(struct slot *s, int mi, uint32_t i,
			  const unsigned char *buf, const size_t *lenp,
			  const char *what, int rc)
{
	unsigned char vb[VMAX];
	size_t n = val_make(mi, s->o[mi].tag[i], vb);
	if (memcmp(buf, vb, n) || (lenp && *lenp != n))
		own_fail(s, mi, i, what, rc);
}

struct compute_ctx {
	struct slot *s;
	int mi;
	uint32_t i;
	int act; /* the answer: a CMAP_COMPUTE_* or an invalid one */
	const unsigned char *val;
	size_t vlen;
	bool nested_write; /* try a write to the same map: refused */
	int runs;
	bool bad;
};

/* Sees own key i (which only we write, so every run sees the oracle's
 * value); side effects only on ctx, as the rules say. */
static int compute_cb(const void *key, size_t klen, const void *cur,
		      size_t cur_len, const void **val, size_t *vlen, void *ctx)
{
	struct compute_ctx *c = ctx;
	const struct oracle *o = &c->s->o[c->mi];
	unsigned char kb[KMAX], vb[VMAX];
	size_t kl = key_make(c->mi, own_id(c->s->id, c->i), kb);
	c->runs++;
	c->bad |= klen != kl || memcmp(key, kb, kl) != 0;
	if (o->has[c->i]) {
		size_t n = val_make(c->mi, o->tag[c->i], vb);
		c->bad |= !cur || cur_len != n || memcmp(cur, vb, n) != 0;
	} else {
		c->bad |= cur != NULL || cur_len != 0;
	}
	c->bad |= *val != NULL || *vlen != 0;
	if (c->nested_write) {
		size_t skl = key_make(c->mi, 0, kb);
		size_t svl =
		    val_make(c->mi, tag_make(c->mi, 0, c->s->id, 0), vb);
		c->bad |= cmap_set(maps[c->mi], kb, skl, vb, svl, NULL, NULL) !=
			  CMAP_EINVAL;
	}
	if (c->act == CMAP_COMPUTE_SET) {
		*val = c->val;
		*vlen = c->vlen;
	}
	return c->act;
}

/* A batch of own keys (fixed-size maps): set, insert or remove, with
 * repeated keys; the oracle follows the keys in order. */
static void op_batch(struct slot *s, int mi, uint32_t i, uint64_t y)
{
	const struct mapspec *sp = &specs[mi];
	cmap_t *m = maps[mi];
	struct oracle *o = &s->o[mi];
	unsigned kind = (unsigned)(y >> 44) % 3;
	if (sp->ks == 0 || sp->vs == 0) {
		unsigned char kb[KMAX], vb[VMAX];
		size_t kl = key_make(mi, own_id(s->id, i), kb);
		val_make(mi, tag_make(mi, own_id(s->id, i), s->id, 0), vb);
		(void)kl;
		long rc = kind == 0   ? cmap_set_batch(m, kb, vb, 1, NULL)
			  : kind == 1 ? cmap_insert_batch(m, kb, vb, 1, NULL)
				      : cmap_remove_batch(m, kb, 1, NULL);
		if (rc != CMAP_EINVAL)
			own_fail(s, mi, i, "batch on a var map", (int)rc);
		return;
	}
	unsigned n = 1 + (unsigned)(y >> 32) % BATCH_MAX;
	uint32_t idx[BATCH_MAX];
	uint64_t tags[BATCH_MAX];
	unsigned char keys[BATCH_MAX * 16], vals[BATCH_MAX * 24];
	int res[BATCH_MAX];
	bool want_res = (y >> 48 & 7) != 0;
	for (unsigned j = 0; j < n; j++) {
		uint64_t z = rng_next(&s->rng);
		/* A quarter of the batches repeat keys. */
		idx[j] = j == 0		      ? i
			 : (y >> 40 & 3) == 0 ? idx[z % j]
					      : (uint32_t)(z % sp->span);
		key_make(mi, own_id(s->id, idx[j]), keys + j * sp->ks);
		tags[j] = tag_make(mi, own_id(s->id, idx[j]), s->id, ++s->seq);
		val_make(mi, tags[j], vals + j * sp->vs);
		res[j] = 99;
	}
	long got =
	    kind == 0 ? cmap_set_batch(m, keys, vals, n, want_res ? res : NULL)
	    : kind == 1
		? cmap_insert_batch(m, keys, vals, n, want_res ? res : NULL)
		: cmap_remove_batch(m, keys, n, want_res ? res : NULL);
	long want = 0;
	for (unsigned j = 0; j < n; j++) {
		uint32_t k = idx[j];
		bool has = o->has[k];
		int exp;
		if (kind == 0) {
			exp = has ? CMAP_REPLACED : CMAP_OK;
			own_store(s, mi, k, tags[j]);
			want++;
		} else if (kind == 1) {
			exp = has ? CMAP_EXISTS : CMAP_OK;
			if (!has) {
				own_store(s, mi, k, tags[j]);
				want++;
			}
		} else {
			exp = has ? CMAP_OK : CMAP_NOT_FOUND;
			if (has) {
				own_drop(s, mi, k);
				want++;
			}
		}
		if (want_res && res[j] != exp)
			own_fail(s, mi, k,
				 kind == 0   ? "set_batch's result"
				 : kind == 1 ? "insert_batch's result"
					     : "remove_batch's result",
				 res[j]);
	}
	if (got != want)
		own_fail(s, mi, i,
			 kind == 0   ? "set_batch's count"
			 : kind == 1 ? "insert_batch's count"
				     : "remove_batch's count",
			 (int)got);
	s->batches++;
}

/* One read-modify-write call on own key i of map mi, checked exactly:
 * insert, replace, cas, remove_if, compute (SET, REMOVE, KEEP, ABORT, an
 * invalid answer, a value of the wrong size), or a batch. */
static void op_rmw(struct slot *s, int mi, uint64_t x)
{
	const struct mapspec *sp = &specs[mi];
	cmap_t *m = maps[mi];
	struct oracle *o = &s->o[mi];
	uint32_t i = (uint32_t)(x % sp->span);
	uint64_t id = own_id(s->id, i);
	unsigned char kb[KMAX], vb[VMAX], ob[VMAX], eb[VMAX];
	size_t kl = key_make(mi, id, kb);
	bool has = o->has[i];
	size_t wlen = has ? val_len(mi, o->tag[i]) : 0;
	uint64_t y = rng_next(&s->rng);
	unsigned r = (unsigned)(y >> 24) % 100;
	/* An output buffer: a length is required for variable-length values
	 * and optional for fixed ones; sometimes too small (CMAP_ERANGE). */
	bool want_out = y >> 30 & 1;
	bool small = want_out && !sp->vs && has && (y >> 8 & 7) == 0;
	size_t ol = small ? (y >> 12) % wlen : VMAX;
	size_t *olp = !sp->vs || (y >> 21 & 1) ? &ol : NULL;
	int rc;
	s->rmw++;

	if (r < 18) { /* insert */
		uint64_t tag = tag_make(mi, id, s->id, ++s->seq);
		size_t vl = val_make(mi, tag, vb);
		rc = cmap_insert(m, kb, kl, vb, vl, want_out ? ob : NULL,
				 want_out ? olp : NULL);
		if (small) {
			if (rc != CMAP_ERANGE || ol != wlen)
				own_fail(s, mi, i,
					 "insert with a small cur buffer", rc);
			return;
		}
		if (rc != (has ? CMAP_EXISTS : CMAP_OK))
			own_fail(s, mi, i, "insert", rc);
		if (has && want_out)
			own_val_check(s, mi, i, ob, olp, "insert's cur value",
				      rc);
		if (!has)
			own_store(s, mi, i, tag);
	} else if (r < 33) { /* replace */
		uint64_t tag = tag_make(mi, id, s->id, ++s->seq);
		size_t vl = val_make(mi, tag, vb);
		rc = cmap_replace(m, kb, kl, vb, vl, want_out ? ob : NULL,
				  want_out ? olp : NULL);
		if (small) {
			if (rc != CMAP_ERANGE || ol != wlen)
				own_fail(s, mi, i,
					 "replace with a small old buffer", rc);
			return;
		}
		if (rc != (has ? CMAP_REPLACED : CMAP_NOT_FOUND))
			own_fail(s, mi, i, "replace", rc);
		if (has) {
			if (want_out) {
				own_val_check(s, mi, i, ob, olp,
					      "replace's old value", rc);
				o->handed++;
			}
			own_store(s, mi, i, tag);
		}
	} else if (r < 53) { /* cas: right or wrong expected value */
		bool right = has && (y >> 36 & 3) != 0;
		uint64_t etag = right ? o->tag[i] : tag_make(mi, id, s->id, 0);
		size_t el = val_make(mi, etag, eb);
		uint64_t tag = tag_make(mi, id, s->id, ++s->seq);
		size_t vl = val_make(mi, tag, vb);
		ol = VMAX; /* no small cur buffer here */
		rc = cmap_cas(m, kb, kl, eb, el, vb, vl, want_out ? ob : NULL,
			      want_out ? olp : NULL);
		if (rc != (!has	   ? CMAP_NOT_FOUND
			   : right ? CMAP_REPLACED
				   : CMAP_MISMATCH))
			own_fail(s, mi, i, right ? "cas" : "cas (mismatch)",
				 rc);
		if (rc == CMAP_MISMATCH && want_out)
			own_val_check(s, mi, i, ob, olp, "cas's cur value", rc);
		if (rc == CMAP_REPLACED)
			own_store(s, mi, i, tag);
	} else if (r < 68) { /* remove_if */
		bool right = has && (y >> 36 & 3) != 0;
		uint64_t etag = right ? o->tag[i] : tag_make(mi, id, s->id, 0);
		size_t el = val_make(mi, etag, eb);
		rc = cmap_remove_if(m, kb, kl, eb, el);
		if (rc != (!has	   ? CMAP_NOT_FOUND
			   : right ? CMAP_OK
				   : CMAP_MISMATCH))
			own_fail(s, mi, i,
				 right ? "remove_if" : "remove_if (mismatch)",
				 rc);
		if (rc == CMAP_OK)
			own_drop(s, mi, i);
	} else if (r < 90) { /* compute */
		unsigned a = (unsigned)(y >> 36) % 20;
		uint64_t tag = tag_make(mi, id, s->id, ++s->seq);
		struct compute_ctx c = {s,
					mi,
					i,
					0,
					vb,
					val_make(mi, tag, vb),
					(y >> 44 & 15) == 0,
					0,
					false};
		int want;
		if (a < 8) {
			c.act = CMAP_COMPUTE_SET;
			want = has ? CMAP_REPLACED : CMAP_OK;
			if (sp->vs && a == 0) { /* a value of the wrong size */
				c.vlen = sp->vs + 1;
				want = CMAP_EVALLEN;
			}
		} else if (a < 13) {
			c.act = CMAP_COMPUTE_REMOVE;
			want = has ? CMAP_REMOVED : CMAP_UNCHANGED;
		} else if (a < 17) {
			c.act = CMAP_COMPUTE_KEEP;
			want = CMAP_UNCHANGED;
		} else if (a < 19) {
			c.act = CMAP_COMPUTE_ABORT;
			want = CMAP_ABORTED;
		} else {
			c.act = 42; /* not an answer */
			want = CMAP_EINVAL;
		}
		rc = cmap_compute(m, kb, kl, compute_cb, &c);
		if (rc != want || c.runs < 1 || c.bad)
			own_fail(s, mi, i,
				 c.bad ? "compute's function saw a wrong "
					 "key or value, or a write was not "
					 "refused"
				       : "compute",
				 rc);
		if (rc == CMAP_OK || rc == CMAP_REPLACED)
			own_store(s, mi, i, tag);
		else if (rc == CMAP_REMOVED)
			own_drop(s, mi, i);
	} else {
		op_batch(s, mi, i, y);
	}
}

/* Index of key id in a walk's table of seen keys: the slots' ranges, then
 * the shared keys. */
static size_t seen_index(int mi, uint64_t id)
{
	const struct mapspec *sp = &specs[mi];
	uint64_t w = id >> 32, i = id & 0xffffffffu;
	if (w == 0 ? i >= sp->nshared : w > opt.threads || i >= sp->span)
		fail("%s: a walk found key id %llx, which nobody writes",
		     sp->name, (unsigned long long)id);
	return w == 0 ? (size_t)opt.threads * sp->span + i
		      : (size_t)(w - 1) * sp->span + i;
}

struct walk_ctx {
	struct slot *s;
	int mi;
	unsigned char *seen; /* visits per key (seen_index) */
	long calls;
	long stop_at; /* > 0: the callback stops the walk at this visit */
	bool writes;  /* write own keys from the callback sometimes */
	bool retain;  /* a retain predicate: removes own keys in mark */
	const unsigned char *mark;
};

/* Every entry: a well-formed key and value, no key twice; own keys not
 * written during the walk hold exactly the oracle's value. */
static int walk_cb(const void *key, size_t klen, const void *val, size_t vlen,
		   void *ctx)
{
	struct walk_ctx *w = ctx;
	struct slot *s = w->s;
	const struct mapspec *sp = &specs[w->mi];
	uint64_t id;
	w->calls++;
	if (!key_ok(w->mi, key, klen))
		fail("%s: slot %u: a walk found a malformed key (len %zu)",
		     sp->name, s->id, klen);
	memcpy(&id, key, 8);
	if (!val_ok(w->mi, id, val, vlen))
		fail("%s: slot %u: a walk found a malformed value for key "
		     "%llx",
		     sp->name, s->id, (unsigned long long)id);
	if (w->seen[seen_index(w->mi, id)]++)
		fail("%s: slot %u: a %s visited key %llx twice", sp->name,
		     s->id, w->retain ? "retain" : "walk",
		     (unsigned long long)id);
	bool own = id >> 32 == (uint64_t)s->id + 1;
	uint32_t i = (uint32_t)id;
	if (own && !(s->dirty && s->dirty[i])) {
		if (!s->o[w->mi].has[i])
			own_fail(s, w->mi, i, "walk found an absent own key",
				 0);
		own_val_check(s, w->mi, i, val, &vlen, "walk's value", 0);
	}
	if (w->retain)
		return !(own && w->mark[i]);
	if (w->writes && (rng_next(&s->rng) & 31) == 0) {
		/* Write own keys mid-walk (allowed in a callback). */
		uint64_t x = rng_next(&s->rng);
		if (x >> 60 & 1) {
			s->dirty[x % sp->span] = 1;
			op_own(s, w->mi, x);
		} else {
			op_rmw(s, w->mi, x);
		}
	}
	return w->stop_at && w->calls == w->stop_at;
}

/* After a complete walk: each own key not written during it was visited
 * exactly when present. */
static void walk_check_own(struct slot *s, int mi, const unsigned char *seen)
{
	const struct mapspec *sp = &specs[mi];
	const unsigned char *mine = seen + (size_t)s->id * sp->span;
	for (uint32_t i = 0; i < sp->span; i++)
		if (!s->dirty[i] && mine[i] != s->o[mi].has[i])
			own_fail(s, mi, i,
				 mine[i] ? "walk visited an absent key"
					 : "walk missed a stable key",
				 mine[i]);
}

/* A walk of map mi, by cmap_foreach or in cursor slices, while the other
 * workers write (and, sometimes, we do: from the callback or between
 * slices). */
static void op_walk(struct slot *s, int mi, uint64_t y)
{
	const struct mapspec *sp = &specs[mi];
	cmap_t *m = maps[mi];
	size_t nkeys = (size_t)(opt.threads + 1) * sp->span;
	struct walk_ctx w = {s,	    mi,	 calloc(nkeys, 1), 0, 0, (y & 3) == 0,
			     false, NULL};
	s->dirty = calloc(sp->span, 1);
	if (!w.seen || !s->dirty)
		fail("out of memory");
	s->dirty_mi = mi;
	if (y >> 2 & 1) {
		if ((y >> 3 & 7) == 0)
			w.stop_at = 1 + (long)((y >> 8) % 512);
		s->in_cb = true;
		long got = cmap_foreach(m, walk_cb, &w);
		s->in_cb = false;
		if (got != w.calls || (w.stop_at && got > w.stop_at))
			fail("%s: slot %u: cmap_foreach returned %ld for %ld "
			     "visits (stop at %ld)",
			     sp->name, s->id, got, w.calls, w.stop_at);
		if (!w.stop_at || got < w.stop_at)
			walk_check_own(s, mi, w.seen);
	} else {
		cmap_cursor_t c = CMAP_CURSOR_INIT;
		for (unsigned slices = 0; !c.done; slices++) {
			size_t max = 1 + rng_next(&s->rng) % 300;
			long before = w.calls;
			s->in_cb = true;
			long got = cmap_cursor_next(m, &c, max, walk_cb, &w);
			s->in_cb = false;
			/* Keys sharing a full hash come together. */
			if (got != w.calls - before ||
			    (mi != M_COLLIDE && got > (long)max))
				fail("%s: slot %u: cmap_cursor_next returned "
				     "%ld for %ld visits (max %zu)",
				     sp->name, s->id, got, w.calls - before,
				     max);
			if (slices > 1000000)
				fail("%s: slot %u: a cursor walk does not end",
				     sp->name, s->id);
			/* Between slices: other operations, thread exit
			 * included (a cursor is tied to no thread). */
			if (!c.done && (rng_next(&s->rng) & 7) == 0) {
				uint64_t x = rng_next(&s->rng);
				if (x >> 60 & 1) {
					s->dirty[x % sp->span] = 1;
					op_own(s, mi, x);
				} else {
					op_rmw(s, mi, x);
				}
			}
		}
		if (cmap_cursor_next(m, &c, 1, walk_cb, &w) != 0)
			fail("%s: cmap_cursor_next after the end", sp->name);
		walk_check_own(s, mi, w.seen);
	}
	s->walks++;
	s->walked += (uint64_t)w.calls;
	free(w.seen);
	free(s->dirty);
	s->dirty = NULL;
}

/* cmap_retain by a worker: remove the own keys marked, keep every other
 * key (others' and shared ones, raced meanwhile). */
static void op_retain(struct slot *s, int mi, uint64_t y)
{
	const struct mapspec *sp = &specs[mi];
	struct oracle *o = &s->o[mi];
	size_t nkeys = (size_t)(opt.threads + 1) * sp->span;
	unsigned char *mark = calloc(sp->span, 1);
	struct walk_ctx w = {s, mi, calloc(nkeys, 1), 0, 0, false, true, mark};
	if (!w.seen || !mark)
		fail("out of memory");
	unsigned shift = 1 + (unsigned)(y % 4); /* 1/2 .. 1/16 of them */
	long want = 0;
	for (uint32_t i = 0; i < sp->span; i++) {
		mark[i] = (rng_next(&s->rng) & ((1u << shift) - 1)) == 0;
		want += mark[i] && o->has[i];
	}
	s->in_cb = true;
	long got = cmap_retain(maps[mi], walk_cb, &w);
	s->in_cb = false;
	if (got != want)
		fail("%s: slot %u: cmap_retain removed %ld, %ld own keys "
		     "marked",
		     sp->name, s->id, got, want);
	/* The predicate saw every own key exactly when present. */
	s->dirty = calloc(sp->span, 1);
	if (!s->dirty)
		fail("out of memory");
	walk_check_own(s, mi, w.seen);
	free(s->dirty);
	s->dirty = NULL;
	for (uint32_t i = 0; i < sp->span; i++)
		if (mark[i] && o->has[i]) {
			size_t kl;
			unsigned char kb[KMAX];
			unsigned char gb[VMAX];
			size_t gl = VMAX;
			own_drop(s, mi, i);
			kl = key_make(mi, own_id(s->id, i), kb);
			if (cmap_get(maps[mi], kb, kl, gb, &gl) !=
			    CMAP_NOT_FOUND)
				own_fail(s, mi, i, "retained key still there",
					 0);
		}
	s->retains++;
	s->retained += (uint64_t)got;
	free(w.seen);
	free(mark);
}

/* The new API's calls on own keys: mostly single-key read-modify-writes
 * and batches, now and then a walk or a retain of the whole map. */
static void op_new(struct slot *s, int mi, uint64_t x)
{
	uint64_t y = rng_next(&s->rng);
	unsigned r = (unsigned)(y % 1000);
	if (r < 4)
		op_walk(s, mi, y >> 10);
	else if (r < 5)
		op_retain(s, mi, y >> 10);
	else
		op_rmw(s, mi, x);
}

/* A quiescent phase, the worker's side: stop, empty our own garbage while
 * every other worker is stopped too (so nothing holds the epoch back), let
 * the main thread check, resume. */
static void quiesce(struct slot *s)
{
	pthread_barrier_wait(&g_bar);
	for (int mi = 0; mi < NMAPS; mi++) {
		size_t left = 0;
		if (!maps[mi])
			continue;
		for (long n = 0; (left = cmap_collect(maps[mi])) != 0; n++) {
			if (n == DRAIN_MAX)
				fail("%s: slot %u: %zu garbage objects still "
				     "pending after %d collects with every "
				     "thread quiescent",
				     specs[mi].name, s->id, left, DRAIN_MAX);
			sched_yield();
		}
	}
	pthread_barrier_wait(&g_bar);
	pthread_barrier_wait(&g_bar);
}

static void *worker(void *arg)
{
	struct slot *s = arg;
	for (;;) {
		if (atomic_load_explicit(&g_phase_gen, memory_order_acquire) !=
		    s->gen) {
			s->gen++;
			quiesce(s);
			continue;
		}
		if (atomic_load_explicit(&s->exit_req, memory_order_acquire))
			break;
		uint64_t x = rng_next(&s->rng);
		int mi = (int)pick_map(x);
		if ((x >> 32) % 5 == 0)
			op_shared(s, mi, x >> 8);
		else if ((x >> 35) % 6 == 0)
			op_new(s, mi, x >> 8);
		else
			op_own(s, mi, x >> 8);
		s->ops++;
	}
	/* Leave in one of the three ways a thread can. */
	switch (rng_next(&s->rng) % 3) {
	case 0:
		cmap_thread_exit();
		return NULL;
	case 1:
		return NULL;
	default:
		pthread_exit(NULL);
	}
}

static void slot_start(struct slot *s)
{
	s->incarnation++;
	s->rng = opt.seed ^ mix((uint64_t)s->id << 40 ^ s->incarnation);
	s->gen = atomic_load(&g_phase_gen);
	atomic_store(&s->exit_req, false);
	int e = pthread_create(&s->th, NULL, worker, s);
	if (e)
		fail("pthread_create: %s", strerror(e));
	s->running = true;
}

static void slot_stop(struct slot *s)
{
	atomic_store_explicit(&s->exit_req, true, memory_order_release);
	int e = pthread_join(s->th, NULL);
	if (e)
		fail("pthread_join: %s", strerror(e));
	s->running = false;
}

/* ---- the main thread's checks ------------------------------------------ */

static void probe_key_dtor(void *item, size_t len, void *ctx)
{
	(void)item;
	(void)len;
	(*(int *)ctx)++;
}

/* Set, replace, free: one key destroyed if a replace keeps the key, two if
 * it destroys the old one.  Anything else is a failure. */
static void probe_key_rule(void)
{
	int n = 0;
	uint64_t k = 1, v = 2;
	cmap_config_t c = CMAP_CONFIG_INIT;
	c.key_size = c.val_size = 8;
	c.key_dtor = probe_key_dtor;
	c.dtor_ctx = &n;
	cmap_t *m;
	if (cmap_new(&m, &c) != CMAP_OK ||
	    cmap_set(m, &k, 8, &v, 8, NULL, NULL) != CMAP_OK ||
	    cmap_set(m, &k, 8, &v, 8, NULL, NULL) != CMAP_REPLACED)
		fail("key rule probe: set failed");
	cmap_free(m);
	if (n != 1 && n != 2)
		fail("key rule probe: %d key destructions for one key "
		     "replaced once",
		     n);
	g_replace_keeps_key = n == 1;
}

struct phase_stats {
	size_t len[NMAPS];
	size_t max_records;
	size_t in_use, reserved; /* bytes, all maps (cmap_validate) */
	size_t map_in_use[NMAPS], map_reserved[NMAPS];
	uint64_t clears, retained; /* by the main thread, all phases */
	double rss;
};

/* Collect until no garbage is pending anywhere in map m (the exited
 * threads' is reaped by our collects); every worker has emptied its own. */
static void drain(int mi)
{
	cmap_gc_stats_t gs = {.size = sizeof gs};
	for (long n = 0;; n++) {
		cmap_collect(maps[mi]);
		if (cmap_reclaim_stats(maps[mi], &gs) != CMAP_OK)
			fail("%s: cmap_reclaim_stats failed", specs[mi].name);
		if (gs.pending == 0)
			break;
		if (n == DRAIN_MAX)
			fail("%s: %zu garbage objects still pending after %d "
			     "collects with every thread quiescent "
			     "(%zu blocking, %zu records)",
			     specs[mi].name, gs.pending, DRAIN_MAX, gs.blocking,
			     gs.threads);
	}
}

static void check_map(int mi, struct phase_stats *ps)
{
	const struct mapspec *sp = &specs[mi];
	cmap_t *m = maps[mi];
	unsigned char kb[KMAX], vb[VMAX], gb[VMAX];
	atomic_store(&g_stage, "drain");
	drain(mi);
	cmap_gc_stats_t gs = {.size = sizeof gs};
	if (cmap_reclaim_stats(m, &gs) != CMAP_OK)
		fail("%s: cmap_reclaim_stats failed", sp->name);
	if (gs.blocking != 0)
		fail("%s: %zu threads blocking the epoch while quiescent",
		     sp->name, gs.blocking);
	if (gs.threads > 2 * ((size_t)opt.threads + 1))
		fail("%s: %zu thread records for at most %u threads at once",
		     sp->name, gs.threads, opt.threads + 1);
	if (gs.threads > ps->max_records)
		ps->max_records = gs.threads;

	atomic_store(&g_stage, "validate");
	cmap_stats_t st;
	if (cmap_validate(m, &st) != CMAP_OK)
		fail("%s: cmap_validate found a broken invariant (above)",
		     sp->name);
	size_t len = cmap_len(m);
	if (st.entries != len)
		fail("%s: cmap_len %zu but the walk found %zu entries",
		     sp->name, len, st.entries);
	ps->in_use += st.bytes_in_use;
	ps->reserved += st.bytes_reserved;
	ps->map_in_use[mi] = st.bytes_in_use;
	ps->map_reserved[mi] = st.bytes_reserved;
	if (st.garbage_pending != 0)
		fail("%s: validate reports %zu pending after the drain",
		     sp->name, st.garbage_pending);

	/* Every slot's keys read back exactly as its oracle says. */
	atomic_store(&g_stage, "oracles");
	size_t want = 0;
	uint64_t created = 0, handed = 0, keys = 0;
	for (unsigned w = 0; w < opt.threads; w++) {
		struct oracle *o = &slots[w].o[mi];
		size_t count = 0;
		for (uint32_t i = 0; i < sp->span; i++) {
			size_t kl = key_make(mi, own_id(w, i), kb), gl = VMAX;
			int rc = cmap_get(m, kb, kl, gb, &gl);
			if (rc != (o->has[i] ? CMAP_OK : CMAP_NOT_FOUND))
				own_fail(&slots[w], mi, i, "quiescent get", rc);
			if (o->has[i]) {
				size_t n = val_make(mi, o->tag[i], vb);
				if (gl != n || memcmp(gb, vb, n))
					own_fail(&slots[w], mi, i,
						 "quiescent get's value", rc);
				count++;
			}
		}
		if (count != o->count)
			fail("%s: slot %u: oracle count %zu, %zu keys marked",
			     sp->name, w, o->count, count);
		want += count;
		created += o->created;
		handed += o->handed;
		keys += g_replace_keeps_key ? o->inserts : o->created;
	}
	for (uint64_t id = 0; id < sp->nshared; id++) {
		size_t kl = key_make(mi, id, kb), gl = VMAX;
		int rc = cmap_get(m, kb, kl, gb, &gl);
		if (rc == CMAP_OK ? !val_ok(mi, id, gb, gl)
				  : rc != CMAP_NOT_FOUND)
			fail("%s: shared key %llu: quiescent get: rc %d or "
			     "malformed",
			     sp->name, (unsigned long long)id, rc);
		want += rc == CMAP_OK;
	}
	if (len != want)
		fail("%s: cmap_len %zu, oracles + shared keys found %zu",
		     sp->name, len, want);
	ps->len[mi] = len;

	/* Nothing pending: every key and value that left the map has been
	 * destroyed, exactly once. */
	if (sp->dtors) {
		uint64_t k = atomic_load(&dctx[mi].keys),
			 v = atomic_load(&dctx[mi].vals);
		if (k + len != keys || v + handed + len != created)
			fail("%s: %llu keys and %llu values created, %zu live, "
			     "%llu values handed out; destroyed %llu keys and "
			     "%llu values",
			     sp->name, (unsigned long long)keys,
			     (unsigned long long)created, len,
			     (unsigned long long)handed, (unsigned long long)k,
			     (unsigned long long)v);
	}
}

static void check_defers(void)
{
	uint64_t made = 0, run = atomic_load(&g_defer_run);
	for (unsigned w = 0; w < opt.threads; w++)
		made += slots[w].defers;
	if (made != run)
		fail("%llu deferred frees, %llu callbacks run after the drain",
		     (unsigned long long)made, (unsigned long long)run);
}

/* The main thread's retain in a quiescent phase: every entry checked
 * against the oracles, and the own keys of every slot that a phase-keyed
 * hash picks removed (an eighth of them). */
struct main_retain {
	int mi;
	unsigned phase;
	unsigned char *seen;
	long want;
};

static bool main_retain_picks(const struct main_retain *c, uint64_t id)
{
	return (mix(id ^ (uint64_t)c->phase << 40) & 7) == 0;
}

static int main_retain_cb(const void *key, size_t klen, const void *val,
			  size_t vlen, void *ctx)
{
	struct main_retain *c = ctx;
	const struct mapspec *sp = &specs[c->mi];
	uint64_t id;
	if (!key_ok(c->mi, key, klen))
		fail("%s: quiescent retain: a malformed key", sp->name);
	memcpy(&id, key, 8);
	if (!val_ok(c->mi, id, val, vlen))
		fail("%s: quiescent retain: a malformed value", sp->name);
	if (c->seen[seen_index(c->mi, id)]++)
		fail("%s: quiescent retain visited key %llx twice", sp->name,
		     (unsigned long long)id);
	if (id >> 32 == 0)
		return 1; /* shared keys stay */
	struct slot *s = &slots[(id >> 32) - 1];
	uint32_t i = (uint32_t)id;
	if (!s->o[c->mi].has[i])
		own_fail(s, c->mi, i, "quiescent retain found an absent key",
			 0);
	own_val_check(s, c->mi, i, val, &vlen, "quiescent retain's value", 0);
	return !main_retain_picks(c, id);
}

/* In some phases, before the checks, the main thread (the workers
 * stopped) retains or clears one map, and the oracles follow. */
static void phase_writes(struct phase_stats *ps)
{
	static unsigned done_phase; /* the final check repeats a phase's */
	unsigned phase = atomic_load(&g_phase_no);
	if (phase == done_phase)
		return;
	done_phase = phase;
	int mi = (int)(phase / 2 % NMAPS);
	const struct mapspec *sp = &specs[mi];
	if (phase % 2 == 0 || !maps[mi])
		return;
	if (phase % 4 == 1) {
		struct main_retain c = {
		    mi, phase, calloc((size_t)(opt.threads + 1) * sp->span, 1),
		    0};
		if (!c.seen)
			fail("out of memory");
		for (unsigned w = 0; w < opt.threads; w++)
			for (uint32_t i = 0; i < sp->span; i++)
				c.want += slots[w].o[mi].has[i] &&
					  main_retain_picks(&c, own_id(w, i));
		atomic_store(&g_stage, "quiescent retain");
		long got = cmap_retain(maps[mi], main_retain_cb, &c);
		if (got != c.want)
			fail("%s: quiescent cmap_retain removed %ld, the "
			     "oracles say %ld",
			     sp->name, got, c.want);
		for (unsigned w = 0; w < opt.threads; w++)
			for (uint32_t i = 0; i < sp->span; i++)
				if (slots[w].o[mi].has[i] &&
				    main_retain_picks(&c, own_id(w, i))) {
					slots[w].o[mi].has[i] = 0;
					slots[w].o[mi].count--;
				}
		free(c.seen);
		ps->retained += (uint64_t)got;
	} else {
		atomic_store(&g_stage, "quiescent clear");
		size_t len = cmap_len(maps[mi]);
		long got = cmap_clear(maps[mi]);
		if (got < 0 || (size_t)got != len || cmap_len(maps[mi]) != 0)
			fail("%s: quiescent cmap_clear removed %ld of %zu, "
			     "%zu left",
			     sp->name, got, len, cmap_len(maps[mi]));
		for (unsigned w = 0; w < opt.threads; w++) {
			memset(slots[w].o[mi].has, 0, sp->span);
			slots[w].o[mi].count = 0;
		}
		ps->clears++;
	}
}

static void check_all(struct phase_stats *ps)
{
	ps->in_use = ps->reserved = 0;
	phase_writes(ps);
	for (int mi = 0; mi < NMAPS; mi++)
		if (maps[mi])
			check_map(mi, ps);
	check_defers();
	ps->rss = rss_mib();
}

static uint64_t total_ops(void)
{
	uint64_t n = 0;
	for (unsigned w = 0; w < opt.threads; w++)
		n += slots[w].ops;
	return n;
}

/* ---- watchdog ------------------------------------------------------------
 */

static void *watchdog(void *arg)
{
	(void)arg;
	uint64_t last = atomic_load(&g_heartbeat);
	double since = now_secs();
	while (!atomic_load(&g_done)) {
		sleep_ms(200);
		uint64_t hb = atomic_load(&g_heartbeat);
		if (hb != last) {
			last = hb;
			since = now_secs();
		} else if (now_secs() - since > opt.hang_secs) {
			fail("no progress for %.0f s (main thread in '%s'): "
			     "a hang or livelock",
			     opt.hang_secs, atomic_load(&g_stage));
		}
	}
	return NULL;
}

/* ---- main ------------------------------------------------------------------
 */

static void usage(int status)
{
	fprintf(stderr,
		"usage: soak [--minutes M | --seconds S] [--threads N] "
		"[--seed N]\n"
		"            [--phase-secs S] [--churn-ms MS] [--warmup-secs "
		"S]\n"
		"            [--rss-factor F] [--rss-slack MIB] "
		"[--no-rss-check] [--hang-secs S]\n"
		"            [--verbose] [--maps "
		"u64,var,collide,dtor-var,dtor-fix]\n");
	exit(status);
}

/* --maps u64,var,...: run only these maps (to narrow down a failure). */
static void parse_maps(const char *list)
{
	for (int mi = 0; mi < NMAPS; mi++) {
		const char *p = strstr(list, specs[mi].name);
		size_t n = strlen(specs[mi].name);
		/* A whole item: "var" must not match inside "dtor-var". */
		map_on[mi] = false;
		while (p && !map_on[mi]) {
			if ((p == list || p[-1] == ',') &&
			    (p[n] == ',' || p[n] == 0))
				map_on[mi] = true;
			p = strstr(p + 1, specs[mi].name);
		}
	}
	for (int mi = 0; mi < NMAPS; mi++)
		if (map_on[mi])
			return;
	usage(2);
}

static double num_arg(int argc, char **argv, int *i)
{
	if (*i + 1 >= argc)
		usage(2);
	char *end;
	double v = strtod(argv[++*i], &end);
	if (*end || v < 0)
		usage(2);
	return v;
}

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--minutes"))
			opt.seconds = 60 * num_arg(argc, argv, &i);
		else if (!strcmp(a, "--seconds"))
			opt.seconds = num_arg(argc, argv, &i);
		else if (!strcmp(a, "--threads"))
			opt.threads = (unsigned)num_arg(argc, argv, &i);
		else if (!strcmp(a, "--seed") && i + 1 < argc)
			opt.seed = strtoull(argv[++i], NULL, 0);
		else if (!strcmp(a, "--phase-secs"))
			opt.phase_secs = num_arg(argc, argv, &i);
		else if (!strcmp(a, "--churn-ms"))
			opt.churn_ms = (unsigned)num_arg(argc, argv, &i);
		else if (!strcmp(a, "--warmup-secs"))
			opt.warmup_secs = num_arg(argc, argv, &i);
		else if (!strcmp(a, "--rss-factor"))
			opt.rss_factor = num_arg(argc, argv, &i);
		else if (!strcmp(a, "--rss-slack"))
			opt.rss_slack_mib = num_arg(argc, argv, &i);
		else if (!strcmp(a, "--no-rss-check"))
			opt.rss_check = false;
		else if (!strcmp(a, "--help"))
			usage(0);
		else if (!strcmp(a, "--verbose"))
			opt.verbose = true;
		else if (!strcmp(a, "--maps") && i + 1 < argc)
			parse_maps(argv[++i]);
		else if (!strcmp(a, "--hang-secs"))
			opt.hang_secs = num_arg(argc, argv, &i);
		else
			usage(2);
	}
	if (opt.threads < 1 || opt.threads > MAX_THREADS || opt.phase_secs <= 0)
		usage(2);
	if (opt.warmup_secs < 0)
		opt.warmup_secs = opt.seconds / 10;
	if (opt.warmup_secs < 2 * opt.phase_secs)
		opt.warmup_secs = 2 * opt.phase_secs;

	probe_key_rule();
	for (int mi = 0; mi < NMAPS; mi++) {
		const struct mapspec *sp = &specs[mi];
		cmap_config_t c = CMAP_CONFIG_INIT;
		if (!map_on[mi])
			continue;
		c.key_size = sp->ks;
		c.val_size = sp->vs;
		c.hash = sp->hash;
		dctx[mi].mi = mi;
		if (sp->dtors) {
			c.key_dtor = key_dtor;
			c.val_dtor = val_dtor;
			c.dtor_ctx = &dctx[mi];
		}
		int rc = cmap_new(&maps[mi], &c);
		if (rc != CMAP_OK)
			fail("cmap_new(%s): %s", sp->name, cmap_strerror(rc));
		dctx[mi].m = maps[mi];
	}
	slots = calloc(opt.threads, sizeof *slots);
	if (!slots)
		fail("out of memory");
	for (unsigned w = 0; w < opt.threads; w++) {
		slots[w].id = w;
		for (int mi = 0; mi < NMAPS; mi++) {
			slots[w].o[mi].has = calloc(specs[mi].span, 1);
			slots[w].o[mi].tag = calloc(specs[mi].span, 8);
			if (!slots[w].o[mi].has || !slots[w].o[mi].tag)
				fail("out of memory");
		}
	}
	if (pthread_barrier_init(&g_bar, NULL, opt.threads + 1))
		fail("pthread_barrier_init");

	printf("soak: %u threads on %ld CPUs, %.0f s, seed %llu, phase every "
	       "%.1f s, churn every %u ms, warm-up %.0f s, RSS rule %s, "
	       "a replace %s\n",
	       opt.threads, sysconf(_SC_NPROCESSORS_ONLN), opt.seconds,
	       (unsigned long long)opt.seed, opt.phase_secs, opt.churn_ms,
	       opt.warmup_secs, opt.rss_check ? "on" : "off",
	       g_replace_keeps_key ? "keeps the key" : "destroys the old key");
	printf("soak: maps");
	for (int mi = 0; mi < NMAPS; mi++)
		if (maps[mi])
			printf(" %s(%u x %u keys + %u shared)", specs[mi].name,
			       opt.threads, specs[mi].span, specs[mi].nshared);
	printf("\n");
	fflush(stdout);

	pthread_t wd;
	if (pthread_create(&wd, NULL, watchdog, NULL))
		fail("pthread_create (watchdog)");
	uint64_t mrng = opt.seed ^ 0xc0ffee;
	for (unsigned w = 0; w < opt.threads; w++)
		slot_start(&slots[w]);

	double t0 = now_secs(), end = t0 + opt.seconds;
	double next = t0 + opt.phase_secs, last_t = t0;
	uint64_t last_ops = 0, churns = 0;
	unsigned phases = 0;
	double rss_base = 0, rss_max = 0, rss_first = 0, rss_last = 0;
	unsigned warm_phase = 0;    /* the phase that set rss_base */
	char rss_breach[256] = {0}; /* the first breach of the RSS rule */
	/* RSS series: one sample per phase. */
	size_t nrss = 0, caprss = 64;
	double *rss = malloc(caprss * sizeof *rss);
	if (!rss)
		fail("out of memory");
	struct phase_stats ps = {0};

	for (double t = now_secs(); t < end; t = now_secs()) {
		if (t < next) {
			/* Churn: replace one worker by a new thread. */
			atomic_store(&g_stage, "churn");
			if (opt.churn_ms) {
				sleep_ms(opt.churn_ms);
				struct slot *s =
				    &slots[rng_next(&mrng) % opt.threads];
				slot_stop(s);
				slot_start(s);
				churns++;
			} else {
				sleep_ms(10);
			}
			atomic_fetch_add(&g_heartbeat, 1);
			continue;
		}
		/* Quiescent phase. */
		atomic_store(&g_stage, "phase: stopping workers");
		atomic_fetch_add(&g_phase_no, 1);
		atomic_fetch_add_explicit(&g_phase_gen, 1,
					  memory_order_release);
		pthread_barrier_wait(&g_bar); /* all stopped */
		atomic_store(&g_stage, "phase: workers draining");
		pthread_barrier_wait(&g_bar); /* all drained their own */
		check_all(&ps);
		phases++;
		uint64_t ops = total_ops();
		t = now_secs();
		if (nrss == caprss) {
			caprss *= 2;
			double *nr = realloc(rss, caprss * sizeof *rss);
			if (!nr)
				fail("out of memory");
			rss = nr;
		}
		rss[nrss++] = ps.rss;
		if (phases == 1)
			rss_first = ps.rss;
		if (!warm_phase && t - t0 >= opt.warmup_secs) {
			warm_phase = phases;
			rss_base = ps.rss;
		}
		if (ps.rss > rss_max)
			rss_max = ps.rss;
		rss_last = ps.rss;
		printf("phase %4u  t=%6.0fs  ops=%12llu  %9.0f ops/s  "
		       "churn=%6llu  rss=%6.1f MiB  maps=%.1f/%.1f MiB  "
		       "records<=%zu  len",
		       phases, t - t0, (unsigned long long)ops,
		       (double)(ops - last_ops) / (t - last_t),
		       (unsigned long long)churns, ps.rss,
		       (double)ps.in_use / (1 << 20),
		       (double)ps.reserved / (1 << 20), ps.max_records);
		for (int mi = 0; mi < NMAPS; mi++)
			if (maps[mi])
				printf(" %zu", ps.len[mi]);
		printf("\n");
		if (opt.verbose)
			for (int mi = 0; mi < NMAPS; mi++)
				if (maps[mi])
					printf("  %-8s in use %8.2f MiB, "
					       "reserved %8.2f "
					       "MiB\n",
					       specs[mi].name,
					       (double)ps.map_in_use[mi] /
						   (1 << 20),
					       (double)ps.map_reserved[mi] /
						   (1 << 20));
		fflush(stdout);
		if (opt.rss_check && warm_phase && phases > warm_phase &&
		    ps.rss > opt.rss_factor * rss_base + opt.rss_slack_mib &&
		    !rss_breach[0]) {
			snprintf(rss_breach, sizeof rss_breach,
				 "RSS %.1f MiB at phase %u (t=%.0fs) exceeds "
				 "%.2f x %.1f MiB (phase %u, the end of the "
				 "warm-up) + %.0f MiB",
				 ps.rss, phases, t - t0, opt.rss_factor,
				 rss_base, warm_phase, opt.rss_slack_mib);
			printf("soak: %s; going on to see whether it levels "
			       "off, failing at the end\n",
			       rss_breach);
		}
		if (opt.rss_check && warm_phase && ps.rss > 4 * rss_base + 512)
			fail("RSS %.1f MiB at phase %u: runaway growth from "
			     "%.1f MiB at the end of the warm-up",
			     ps.rss, phases, rss_base);
		last_ops = ops;
		/* Measure the next interval from after the checks. */
		last_t = now_secs();
		next = last_t + opt.phase_secs;
		atomic_store(&g_stage, "phase: resuming");
		pthread_barrier_wait(&g_bar); /* resume */
		atomic_fetch_add(&g_heartbeat, 1);
	}

	/* The end: every worker leaves; their garbage is reaped by ours. */
	atomic_store(&g_stage, "joining workers");
	for (unsigned w = 0; w < opt.threads; w++)
		slot_stop(&slots[w]);
	double elapsed = now_secs() - t0;
	atomic_store(&g_stage, "final check");
	check_all(&ps);
	uint64_t ops = total_ops();

	atomic_store(&g_stage, "cmap_free");
	for (int mi = 0; mi < NMAPS; mi++) {
		uint64_t created = 0, handed = 0, keys = 0;
		if (!maps[mi])
			continue;
		for (unsigned w = 0; w < opt.threads; w++) {
			const struct oracle *o = &slots[w].o[mi];
			created += o->created;
			handed += o->handed;
			keys += g_replace_keeps_key ? o->inserts : o->created;
		}
		cmap_free(maps[mi]);
		if (specs[mi].dtors) {
			uint64_t k = atomic_load(&dctx[mi].keys),
				 v = atomic_load(&dctx[mi].vals);
			if (k != keys || v + handed != created)
				fail("%s after cmap_free: %llu keys and %llu "
				     "values created, %llu values handed out; "
				     "destroyed %llu keys, %llu values",
				     specs[mi].name, (unsigned long long)keys,
				     (unsigned long long)created,
				     (unsigned long long)handed,
				     (unsigned long long)k,
				     (unsigned long long)v);
			printf("soak: %s: %llu keys and %llu values created, "
			       "each destroyed once (%llu values handed out "
			       "instead)\n",
			       specs[mi].name, (unsigned long long)keys,
			       (unsigned long long)created,
			       (unsigned long long)handed);
		}
	}
	check_defers();
	atomic_store(&g_done, true);
	pthread_join(wd, NULL);
	pthread_barrier_destroy(&g_bar);

	printf("soak: RSS series (MiB, one per phase):");
	for (size_t j = 0; j < nrss; j++)
		printf("%s%.1f", j % 12 ? " " : "\n  ", rss[j]);
	printf("\n");
	/* The figures first: a run that breaks only the RSS rule still
	 * reports what it did. */
	printf("soak: %.0f s, %llu ops (%.0f ops/s), %u quiescent phases "
	       "passed, %llu thread replacements, %llu deferred frees; RSS "
	       "first %.1f, end of warm-up %.1f, last %.1f, max %.1f MiB\n",
	       elapsed, (unsigned long long)ops, (double)ops / elapsed, phases,
	       (unsigned long long)churns,
	       (unsigned long long)atomic_load(&g_defer_run), rss_first,
	       rss_base, rss_last, rss_max);
	uint64_t rmw = 0, batches = 0, walks = 0, walked = 0, retains = 0,
		 retained = 0;
	for (unsigned w = 0; w < opt.threads; w++) {
		rmw += slots[w].rmw;
		batches += slots[w].batches;
		walks += slots[w].walks;
		walked += slots[w].walked;
		retains += slots[w].retains;
		retained += slots[w].retained;
	}
	printf("soak: %llu read-modify-writes (%llu batches), %llu walks "
	       "(%llu entries), %llu retains (%llu own keys removed); "
	       "quiescent: %llu clears, %llu keys retained away\n",
	       (unsigned long long)rmw, (unsigned long long)batches,
	       (unsigned long long)walks, (unsigned long long)walked,
	       (unsigned long long)retains, (unsigned long long)retained,
	       (unsigned long long)ps.clears, (unsigned long long)ps.retained);
	if (rss_breach[0])
		fail("%s", rss_breach);
	printf("soak: PASS\n");
	for (unsigned w = 0; w < opt.threads; w++)
		for (int mi = 0; mi < NMAPS; mi++) {
			free(slots[w].o[mi].has);
			free(slots[w].o[mi].tag);
		}
	free(slots);
	free(rss);
	return 0;
}
