/*
 * The read-modify-write calls under concurrency.  More threads than cores,
 * so threads are preempted between a compute function's run and its CAS.
 *
 * counters: T threads x N increments over K keys, through cmap_compute and
 *   through a cmap_insert + cmap_cas retry loop (on MISMATCH the next
 *   attempt starts from the value copied out): every final count exact
 *   (fixed u32 -> u64, variable-length decimal strings, a colliding hasher).
 * insert races: T threads cmap_insert the same fresh keys with their own
 *   values: exactly one CMAP_OK per key, every loser gets CMAP_EXISTS with
 *   the winner's value, which is the one the map holds.
 * versions: every value is unique (key, writer, sequence); threads race
 *   cmap_insert, cmap_replace (with and without the old value), cmap_cas
 *   and cmap_remove_if on a last-seen value, cmap_compute (SET, REMOVE,
 *   KEEP) and cmap_get_with on a few keys, with value and key destructors.
 *   Every value a call reports as ended (the old value of a replace, the
 *   expected value of a successful cas or remove_if, the value a compute
 *   replaced or removed) was stored and is ended once; the values nobody
 *   saw end are exactly as many as the replaces without old value; what is
 *   left in the map is exactly the stored values never ended.  A remove_if
 *   or cas that took a value other than the expected one breaks this
 *   count.  Every value is destroyed exactly once (never when its
 *   ownership went to the caller), none while a get_with callback or a
 *   compute function borrows it (the destructor poisons it); keys are
 *   destroyed once per entry that held them.
 * side rule: inside a compute function writes to the same map (set,
 *   insert, replace, cas, remove, remove_if, compute) return CMAP_EINVAL
 *   and change nothing, reads see the map, writes to another map work;
 *   cmap_compute from inside a cmap_get_with callback works.  Also from
 *   several threads at once.
 * churn: walkers (cmap_foreach, cursors with slices of 1, 3, 7, 64) while
 *   other threads insert and remove batches of keys (splits, contractions)
 *   and replace stable keys' values: stable keys seen exactly once per
 *   walk, churned keys at most once, never a duplicate; one walker's
 *   callback gets and rewrites the entry it visits (fixed, variable,
 *   colliding).
 * retain/clear: cmap_retain and cmap_clear passes racing with inserts and
 *   replaces, with destructors: every value destroyed exactly once, every
 *   key once per entry made, cmap_len exact once quiet.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

#include "cmap.h"
#include "testutil.h"

#define T 4

static pthread_barrier_t bar;

static uint64_t const_hash(const void *k, size_t n, uint64_t s)
{
	(void)k;
	(void)n;
	(void)s;
	return 0x0123456789abcdefull;
}

enum layout { FIXED, VAR, COLLIDE };
static const char *const lname[] = {"u32 -> u64", "var -> var",
				    "u32 -> u64, constant hash"};

static cmap_t *new_map(enum layout l, cmap_dtor_fn kd, cmap_dtor_fn vd,
		       void *ctx)
{
	cmap_config_t c = CMAP_CONFIG_INIT;
	c.key_size = l == VAR ? 0 : 4;
	c.val_size = l == VAR ? 0 : 8;
	c.hash = l == COLLIDE ? const_hash : l == FIXED ? cmap_hash_u32 : NULL;
	c.key_dtor = kd;
	c.val_dtor = vd;
	c.dtor_ctx = ctx;
	cmap_t *m = NULL;
	CHECK_EQ(cmap_new(&m, &c), CMAP_OK);
	return m;
}

/* Key id as stored: 4 bytes, or for VAR "k<id>" padded to 3..19 bytes. */
static size_t key_of(enum layout l, uint32_t id, unsigned char *b)
{
	if (l != VAR) {
		memcpy(b, &id, 4);
		return 4;
	}
	int n = snprintf((char *)b, 32, "k%u-", (unsigned)id);
	size_t len = (size_t)n + id % 13;
	memset(b + n, 'p', len - (size_t)n);
	return len;
}

/* ---- counters ----------------------------------------------------------- */

struct ctr {
	cmap_t *m;
	enum layout l;
	unsigned id, nkeys;
	long n;
	bool use_cas;
	long *mine; /* increments per key by this thread */
	long runs, calls, retries;
};

/* A count as a value: 8 bytes, or decimal digits (variable length). */
static size_t put_count(enum layout l, uint64_t c, unsigned char *b)
{
	if (l != VAR) {
		memcpy(b, &c, 8);
		return 8;
	}
	return (size_t)snprintf((char *)b, 24, "%llu", (unsigned long long)c);
}

static uint64_t get_count(enum layout l, const void *v, size_t len)
{
	if (l != VAR) {
		uint64_t c;
		CHECK_EQ(len, 8);
		memcpy(&c, v, 8);
		return c;
	}
	char s[24];
	CHECK(len > 0 && len < sizeof s);
	memcpy(s, v, len);
	s[len] = 0;
	return strtoull(s, NULL, 10);
}

struct inc_ctx {
	enum layout l;
	long runs;
	unsigned char buf[24];
};

static int inc_fn(const void *key, size_t klen, const void *cur, size_t cur_len,
		  const void **val, size_t *vlen, void *ctx)
{
	struct inc_ctx *c = ctx;
	(void)key;
	(void)klen;
	c->runs++;
	uint64_t n = cur ? get_count(c->l, cur, cur_len) + 1 : 1;
	*vlen = put_count(c->l, n, c->buf);
	*val = c->buf;
	return CMAP_COMPUTE_SET;
}

static void *ctr_worker(void *arg)
{
	struct ctr *w = arg;
	uint64_t s = 99 + w->id;
	unsigned char kb[32], cur[24], exp[24], des[24];
	pthread_barrier_wait(&bar);
	for (long i = 0; i < w->n; i++) {
		uint32_t k = (uint32_t)(rng_next(&s) % w->nkeys);
		size_t kl = key_of(w->l, k, kb);
		w->mine[k]++;
		if (!w->use_cas) {
			struct inc_ctx c = {w->l, 0, {0}};
			int rc = cmap_compute(w->m, kb, kl, inc_fn, &c);
			CHECK(rc == CMAP_OK || rc == CMAP_REPLACED);
			CHECK(c.runs >= 1);
			w->runs += c.runs;
			w->calls++;
			continue;
		}
		/* Insert 1, or learn the current count and cas it up. */
		size_t dl = put_count(w->l, 1, des), cl = sizeof cur;
		int rc = cmap_insert(w->m, kb, kl, des, dl, cur, &cl);
		if (rc == CMAP_OK)
			continue;
		CHECK_EQ(rc, CMAP_EXISTS);
		for (;;) {
			uint64_t c = get_count(w->l, cur, cl);
			dl = put_count(w->l, c + 1, des);
			size_t el = cl;
			memcpy(exp, cur, el);
			cl = sizeof cur;
			rc = cmap_cas(w->m, kb, kl, exp, el, des, dl, cur, &cl);
			if (rc == CMAP_REPLACED)
				break;
			CHECK_EQ(rc, CMAP_MISMATCH);
			w->retries++;
		}
	}
	return NULL;
}

static void run_counters(enum layout l, unsigned nkeys, long n, bool use_cas)
{
	cmap_t *m = new_map(l, NULL, NULL, NULL);
	struct ctr w[T];
	pthread_t th[T];
	CHECK_EQ(pthread_barrier_init(&bar, NULL, T), 0);
	for (unsigned t = 0; t < T; t++) {
		w[t] = (struct ctr){.m = m,
				    .l = l,
				    .id = t,
				    .nkeys = nkeys,
				    .n = n,
				    .use_cas = use_cas,
				    .mine = calloc(nkeys, sizeof(long))};
		CHECK(w[t].mine != NULL);
		CHECK_EQ(pthread_create(&th[t], NULL, ctr_worker, &w[t]), 0);
	}
	for (unsigned t = 0; t < T; t++)
		CHECK_EQ(pthread_join(th[t], NULL), 0);
	pthread_barrier_destroy(&bar);
	size_t present = 0;
	long runs = 0, calls = 0, retries = 0;
	for (unsigned t = 0; t < T; t++) {
		runs += w[t].runs;
		calls += w[t].calls;
		retries += w[t].retries;
	}
	for (uint32_t k = 0; k < nkeys; k++) {
		long want = 0;
		for (unsigned t = 0; t < T; t++)
			want += w[t].mine[k];
		unsigned char kb[32], vb[24];
		size_t kl = key_of(l, k, kb), vl = sizeof vb;
		int rc = cmap_get(m, kb, kl, vb, &vl);
		if (!want) {
			CHECK_EQ(rc, CMAP_NOT_FOUND);
			continue;
		}
		CHECK_EQ(rc, CMAP_OK);
		CHECK_EQ(get_count(l, vb, vl), want);
		present++;
	}
	CHECK_EQ(cmap_len(m), present);
	CHECK_EQ(cmap_validate(m, NULL), CMAP_OK);
	printf("  counters %-26s %2u keys, %s: %ld fn runs for %ld calls, "
	       "%ld cas retries\n",
	       lname[l], nkeys, use_cas ? "cas loop" : "compute ", runs, calls,
	       retries);
	for (unsigned t = 0; t < T; t++)
		free(w[t].mine);
	cmap_free(m);
}

/* ---- insert races ------------------------------------------------------- */

struct ins {
	cmap_t *m;
	enum layout l;
	unsigned id;
	uint32_t nkeys;
	unsigned char *won; /* per key: this thread's insert returned OK */
	uint64_t *seen;	    /* per key: the value an EXISTS reported */
	uint32_t *seen_len; /* its length */
};

/* Thread t's value for key k: 8 bytes, or 8 + (k + t) % 9 for VAR. */
static size_t ins_val(enum layout l, uint32_t k, unsigned t, unsigned char *b)
{
	uint64_t v = mix((uint64_t)k << 8 | t);
	memcpy(b, &v, 8);
	if (l != VAR)
		return 8;
	size_t n = 8 + (k + t) % 9;
	memset(b + 8, (int)t, n - 8);
	return n;
}

static void *ins_worker(void *arg)
{
	struct ins *w = arg;
	unsigned char kb[32], vb[24], cb[24];
	pthread_barrier_wait(&bar);
	for (uint32_t k = 0; k < w->nkeys; k++) {
		size_t kl = key_of(w->l, k, kb);
		size_t vl = ins_val(w->l, k, w->id, vb), cl = sizeof cb;
		memset(cb, 0, sizeof cb);
		int rc = cmap_insert(w->m, kb, kl, vb, vl, cb, &cl);
		if (rc == CMAP_OK) {
			w->won[k] = 1;
			continue;
		}
		CHECK_EQ(rc, CMAP_EXISTS);
		CHECK(cl >= 8 && cl <= 16);
		memcpy(&w->seen[k], cb, 8);
		w->seen_len[k] = (uint32_t)cl;
		/* The rest of a VAR value names its writer. */
		for (size_t j = 8; j < cl; j++)
			CHECK_EQ(cb[j], cb[8]);
	}
	return NULL;
}

static void run_inserts(enum layout l, uint32_t nkeys)
{
	cmap_t *m = new_map(l, NULL, NULL, NULL);
	struct ins w[T];
	pthread_t th[T];
	CHECK_EQ(pthread_barrier_init(&bar, NULL, T), 0);
	for (unsigned t = 0; t < T; t++) {
		w[t] = (struct ins){m,
				    l,
				    t,
				    nkeys,
				    calloc(nkeys, 1),
				    calloc(nkeys, 8),
				    calloc(nkeys, 4)};
		CHECK(w[t].won && w[t].seen && w[t].seen_len);
		CHECK_EQ(pthread_create(&th[t], NULL, ins_worker, &w[t]), 0);
	}
	for (unsigned t = 0; t < T; t++)
		CHECK_EQ(pthread_join(th[t], NULL), 0);
	pthread_barrier_destroy(&bar);
	long contested = 0;
	for (uint32_t k = 0; k < nkeys; k++) {
		unsigned winner = T, wins = 0;
		for (unsigned t = 0; t < T; t++)
			if (w[t].won[k]) {
				winner = t;
				wins++;
			}
		CHECK_EQ(wins, 1);
		unsigned char kb[32], vb[24], want[24];
		size_t kl = key_of(l, k, kb), vl = sizeof vb;
		size_t wl = ins_val(l, k, winner, want);
		CHECK_EQ(cmap_get(m, kb, kl, vb, &vl), CMAP_OK);
		CHECK_EQ(vl, wl);
		CHECK(memcmp(vb, want, wl) == 0);
		for (unsigned t = 0; t < T; t++) {
			if (t == winner)
				continue;
			uint64_t v;
			memcpy(&v, want, 8);
			CHECK(w[t].seen[k] == v);
			CHECK_EQ(w[t].seen_len[k], wl);
		}
		/* Threads walk the keys in the same order: keys not won
		 * by thread 0 show that the threads did overlap. */
		contested += winner != 0;
	}
	CHECK_EQ(cmap_len(m), nkeys);
	CHECK_EQ(cmap_validate(m, NULL), CMAP_OK);
	printf("  insert races %-22s %6u keys, %ld not won by thread 0\n",
	       lname[l], nkeys, contested);
	for (unsigned t = 0; t < T; t++) {
		free(w[t].won);
		free(w[t].seen);
		free(w[t].seen_len);
	}
	cmap_free(m);
}

/* ---- versions: conditional updates and destructors ---------------------- */

/*
 * A value: key (16 bits) | writer (8) | sequence (40), unique per write
 * attempt; for VAR followed by (seq % 9) bytes equal to the writer.
 * Per (writer, seq): stored (by the writer), ended (by whichever thread's
 * call reported it), given (a replace copied it out: ownership passed),
 * dtor (destructor calls), final (present at the end).
 */
struct vstate {
	_Atomic(unsigned) ended, given, dtor;
	unsigned char stored, final;
};

struct vers {
	cmap_t *m;
	enum layout l;
	unsigned id, nkeys;
	long ops;
	long replace_no_old; /* successful replaces without the old value */
	long key_inserts;    /* entries created (insert OK, compute OK) */
	long stat[8];
};

static struct vstate *vs[T];
static long vs_cap;
static _Atomic(long) key_dtors;
static _Atomic(long) borrowed_checks;

static uint64_t venc(uint32_t k, unsigned t, uint64_t seq)
{
	return (uint64_t)k << 48 | (uint64_t)t << 40 | seq;
}

static size_t vbytes(enum layout l, uint64_t v, unsigned char *b)
{
	memcpy(b, &v, 8);
	if (l != VAR)
		return 8;
	size_t n = 8 + (v & 0xffffffffff) % 9;
	memset(b + 8, (int)(v >> 40 & 0xff), n - 8);
	return n;
}

/* Decode and check a value of key k (k ~0u: any key); its state. */
static struct vstate *vdecode(enum layout l, const void *p, size_t len,
			      uint32_t k, uint64_t *out)
{
	uint64_t v;
	CHECK(len >= 8);
	memcpy(&v, p, 8);
	unsigned t = (unsigned)(v >> 40 & 0xff);
	uint64_t seq = v & 0xffffffffff;
	CHECK(t < T);
	CHECK(seq >= 1 && (long)seq < vs_cap);
	if (k != ~0u)
		CHECK_EQ(v >> 48, k);
	unsigned char want[24];
	CHECK_EQ(vbytes(l, v, want), len);
	CHECK(memcmp(want, p, len) == 0);
	if (out)
		*out = v;
	return &vs[t][seq];
}

static struct vstate *vstate_of(uint64_t v)
{
	return &vs[v >> 40 & 0xff][v & 0xffffffffff];
}

struct dctx {
	enum layout l;
};

static void val_dtor(void *item, size_t len, void *ctx)
{
	struct dctx *d = ctx;
	struct vstate *st = vdecode(d->l, item, len, ~0u, NULL);
	atomic_fetch_add_explicit(&st->dtor, 1, memory_order_relaxed);
	memset(item, 0xee, len); /* a borrower would see this */
}

static void key_dtor(void *item, size_t len, void *ctx)
{
	(void)item;
	(void)len;
	(void)ctx;
	atomic_fetch_add_explicit(&key_dtors, 1, memory_order_relaxed);
}

/* A borrowed value: valid and not destroyed now, and still so after the
 * borrower has let other threads run (and collected garbage itself). */
static void check_borrowed(cmap_t *m, enum layout l, const void *v, size_t len,
			   uint32_t k, uint64_t *out)
{
	unsigned char copy[24];
	CHECK(len <= sizeof copy);
	memcpy(copy, v, len);
	struct vstate *st = vdecode(l, copy, len, k, out);
	CHECK_EQ(atomic_load(&st->dtor), 0);
	for (int i = 0; i < 3; i++) {
		sched_yield();
		(void)cmap_collect(m);
	}
	CHECK(memcmp(copy, v, len) == 0);
	CHECK_EQ(atomic_load(&st->dtor), 0);
	atomic_fetch_add_explicit(&borrowed_checks, 1, memory_order_relaxed);
}

struct vvisit {
	cmap_t *m;
	enum layout l;
	uint32_t k;
	uint64_t v;
};

static void vvisit_fn(const void *key, size_t klen, const void *val,
		      size_t vlen, void *ctx)
{
	struct vvisit *c = ctx;
	(void)key;
	(void)klen;
	check_borrowed(c->m, c->l, val, vlen, c->k, &c->v);
}

struct vcomp {
	cmap_t *m;
	enum layout l;
	uint32_t k;
	int mode;     /* what to answer for a present key */
	bool check;   /* check the borrow (slow) */
	uint64_t saw; /* the value the last run saw (0: absent) */
	unsigned char buf[24];
	size_t blen;
};

static int vcomp_fn(const void *key, size_t klen, const void *cur,
		    size_t cur_len, const void **val, size_t *vlen, void *ctx)
{
	struct vcomp *c = ctx;
	(void)key;
	(void)klen;
	c->saw = 0;
	if (cur) {
		if (c->check)
			check_borrowed(c->m, c->l, cur, cur_len, c->k, &c->saw);
		else
			vdecode(c->l, cur, cur_len, c->k, &c->saw);
	}
	if (cur && c->mode != CMAP_COMPUTE_SET)
		return c->mode;
	*val = c->buf;
	*vlen = c->blen;
	return CMAP_COMPUTE_SET;
}

static void *vers_worker(void *arg)
{
	struct vers *w = arg;
	enum layout l = w->l;
	uint64_t s = 4242 + w->id, seq = 0;
	uint64_t last[64]; /* last value seen per key, 0: none */
	memset(last, 0, sizeof last);
	unsigned char kb[32], nb[24], ob[24];
	pthread_barrier_wait(&bar);
	for (long i = 0; i < w->ops; i++) {
		uint64_t r = rng_next(&s);
		uint32_t k = (uint32_t)(r % w->nkeys);
		size_t kl = key_of(l, k, kb);
		uint64_t nv = venc(k, w->id, ++seq);
		CHECK((long)seq < vs_cap);
		struct vstate *ns = &vs[w->id][seq];
		size_t nl = vbytes(l, nv, nb), ol = sizeof ob;
		unsigned op = (unsigned)(r >> 32) % 8;
		int rc;
		uint64_t got;
		w->stat[op]++;
		switch (op) {
		case 0:			/* insert */
			ns->stored = 1; /* before publication */
			rc = cmap_insert(w->m, kb, kl, nb, nl, ob, &ol);
			if (rc == CMAP_OK) {
				w->key_inserts++;
				last[k] = nv;
				break;
			}
			ns->stored = 0;
			CHECK_EQ(rc, CMAP_EXISTS);
			vdecode(l, ob, ol, k, &last[k]);
			break;
		case 1: /* replace, old copied out */
		case 2: /* replace, old to the destructor */
			ns->stored = 1;
			rc = cmap_replace(w->m, kb, kl, nb, nl,
					  op == 1 ? ob : NULL,
					  op == 1 ? &ol : NULL);
			if (rc == CMAP_NOT_FOUND) {
				ns->stored = 0;
				last[k] = 0;
				break;
			}
			CHECK_EQ(rc, CMAP_REPLACED);
			last[k] = nv;
			if (op == 2) {
				w->replace_no_old++;
				break;
			}
			atomic_fetch_add(&vdecode(l, ob, ol, k, &got)->ended,
					 1);
			atomic_fetch_add(&vstate_of(got)->given, 1);
			break;
		case 3: { /* cas from the last value seen */
			if (!last[k])
				goto refresh;
			unsigned char eb[24];
			size_t el = vbytes(l, last[k], eb);
			ns->stored = 1;
			rc = cmap_cas(w->m, kb, kl, eb, el, nb, nl, ob, &ol);
			if (rc == CMAP_REPLACED) {
				atomic_fetch_add(&vstate_of(last[k])->ended, 1);
				last[k] = nv;
				break;
			}
			ns->stored = 0;
			if (rc == CMAP_NOT_FOUND) {
				last[k] = 0;
				break;
			}
			CHECK_EQ(rc, CMAP_MISMATCH);
			vdecode(l, ob, ol, k, &got);
			CHECK(got != last[k]);
			last[k] = got;
			break;
		}
		case 4: { /* remove_if on the last value seen */
			if (!last[k])
				goto refresh;
			unsigned char eb[24];
			size_t el = vbytes(l, last[k], eb);
			rc = cmap_remove_if(w->m, kb, kl, eb, el);
			if (rc == CMAP_OK)
				atomic_fetch_add(&vstate_of(last[k])->ended, 1);
			else
				CHECK(rc == CMAP_MISMATCH ||
				      rc == CMAP_NOT_FOUND);
			last[k] = 0;
			break;
		}
		case 5: { /* compute: insert if absent, else SET/REMOVE/KEEP */
			static const int modes[4] = {
			    CMAP_COMPUTE_SET, CMAP_COMPUTE_SET,
			    CMAP_COMPUTE_REMOVE, CMAP_COMPUTE_KEEP};
			struct vcomp c = {.m = w->m,
					  .l = l,
					  .k = k,
					  .mode = modes[(r >> 40) % 4],
					  .check = (r >> 44) % 16 == 0};
			memcpy(c.buf, nb, nl);
			c.blen = nl;
			ns->stored = 1;
			rc = cmap_compute(w->m, kb, kl, vcomp_fn, &c);
			if (rc == CMAP_OK || rc == CMAP_REPLACED) {
				CHECK((rc == CMAP_OK) == (c.saw == 0));
				if (c.saw)
					atomic_fetch_add(
					    &vstate_of(c.saw)->ended, 1);
				else
					w->key_inserts++;
				last[k] = nv;
				break;
			}
			ns->stored = 0;
			if (rc == CMAP_REMOVED) {
				CHECK(c.saw != 0);
				atomic_fetch_add(&vstate_of(c.saw)->ended, 1);
				last[k] = 0;
				break;
			}
			CHECK_EQ(rc, CMAP_UNCHANGED);
			CHECK(c.saw != 0);
			last[k] = c.saw;
			break;
		}
		case 6: { /* a borrow that outlives other threads' writes */
			struct vvisit c = {w->m, l, k, 0};
			rc = cmap_get_with(w->m, kb, kl, vvisit_fn, &c);
			CHECK(rc == CMAP_OK || rc == CMAP_NOT_FOUND);
			last[k] = rc == CMAP_OK ? c.v : 0;
			break;
		}
		default:
		refresh:
			rc = cmap_get(w->m, kb, kl, ob, &ol);
			CHECK(rc == CMAP_OK || rc == CMAP_NOT_FOUND);
			if (rc == CMAP_OK)
				vdecode(l, ob, ol, k, &last[k]);
			else
				last[k] = 0;
		}
	}
	return NULL;
}

static void run_versions(enum layout l, unsigned nkeys, long ops)
{
	struct dctx d = {l};
	cmap_t *m = new_map(l, key_dtor, val_dtor, &d);
	atomic_store(&key_dtors, 0);
	vs_cap = ops + 2;
	for (unsigned t = 0; t < T; t++) {
		vs[t] = calloc((size_t)vs_cap, sizeof(struct vstate));
		CHECK(vs[t] != NULL);
	}
	struct vers w[T];
	pthread_t th[T];
	CHECK_EQ(pthread_barrier_init(&bar, NULL, T), 0);
	for (unsigned t = 0; t < T; t++) {
		w[t] = (struct vers){
		    .m = m, .l = l, .id = t, .nkeys = nkeys, .ops = ops};
		CHECK_EQ(pthread_create(&th[t], NULL, vers_worker, &w[t]), 0);
	}
	for (unsigned t = 0; t < T; t++)
		CHECK_EQ(pthread_join(th[t], NULL), 0);
	pthread_barrier_destroy(&bar);

	/* What is left. */
	size_t present = 0;
	for (uint32_t k = 0; k < nkeys; k++) {
		unsigned char kb[32], vb[24];
		size_t kl = key_of(l, k, kb), vl = sizeof vb;
		int rc = cmap_get(m, kb, kl, vb, &vl);
		if (rc == CMAP_NOT_FOUND)
			continue;
		CHECK_EQ(rc, CMAP_OK);
		uint64_t v;
		struct vstate *st = vdecode(l, vb, vl, k, &v);
		CHECK(st->stored);
		st->final = 1;
		present++;
	}
	CHECK_EQ(cmap_len(m), present);
	CHECK_EQ(cmap_validate(m, NULL), CMAP_OK);
	long no_old = 0, inserts = 0;
	for (unsigned t = 0; t < T; t++) {
		no_old += w[t].replace_no_old;
		inserts += w[t].key_inserts;
	}
	/* Nothing destroyed yet that is still in the map or was given. */
	for (unsigned t = 0; t < T; t++)
		for (long q = 1; q < vs_cap; q++) {
			struct vstate *st = &vs[t][q];
			if (st->final || st->given)
				CHECK_EQ(atomic_load(&st->dtor), 0);
			CHECK(atomic_load(&st->dtor) <= 1);
		}
	CHECK(atomic_load(&key_dtors) <= inserts - (long)present);
	cmap_free(m);

	long unseen_ends = 0, stored = 0, ended = 0;
	for (unsigned t = 0; t < T; t++) {
		for (long q = 1; q < vs_cap; q++) {
			struct vstate *st = &vs[t][q];
			unsigned e = atomic_load(&st->ended);
			unsigned g = atomic_load(&st->given);
			unsigned dt = atomic_load(&st->dtor);
			if (!st->stored) {
				CHECK_EQ(e, 0);
				CHECK_EQ(g, 0);
				CHECK_EQ(dt, 0);
				continue;
			}
			stored++;
			ended += e;
			CHECK(e + st->final <= 1); /* ended once at most */
			CHECK(g <= e);
			CHECK_EQ(dt, g ? 0 : 1); /* destroyed exactly once */
			if (!e && !st->final)
				unseen_ends++;
		}
		free(vs[t]);
		vs[t] = NULL;
	}
	CHECK_EQ(unseen_ends, no_old);
	CHECK_EQ(atomic_load(&key_dtors), inserts);
	long st_ops[8] = {0};
	for (unsigned t = 0; t < T; t++)
		for (int o = 0; o < 8; o++)
			st_ops[o] += w[t].stat[o];
	for (int o = 0; o < 8; o++)
		CHECK(st_ops[o] > 0);
	printf("  versions %-26s %2u keys: %ld values stored, %ld ended by "
	       "cas/remove_if/compute/replace, %ld by blind replaces, %zu "
	       "left\n",
	       lname[l], nkeys, stored, ended, no_old, present);
}

/* ---- the compute side rule ---------------------------------------------- */

struct side {
	cmap_t *m, *other;
	uint32_t k; /* the key computed */
	uint32_t o; /* another key, present */
	int runs;
	unsigned char buf[8];
};

static int side_fn(const void *key, size_t klen, const void *cur,
		   size_t cur_len, const void **val, size_t *vlen, void *ctx)
{
	struct side *c = ctx;
	c->runs++;
	CHECK_EQ(klen, 4);
	uint64_t v = 1, got = 0, want;
	uint32_t k = c->k, o = c->o, absent = 0xffffff00u + c->k;
	size_t gl = 8;
	/* Writes to this map: refused, whatever the key. */
	const uint32_t *keys[3] = {&k, &o, &absent};
	for (int i = 0; i < 3; i++) {
		const uint32_t *kp = keys[i];
		CHECK_EQ(cmap_set(c->m, kp, 4, &v, 8, NULL, NULL), CMAP_EINVAL);
		CHECK_EQ(cmap_insert(c->m, kp, 4, &v, 8, NULL, NULL),
			 CMAP_EINVAL);
		CHECK_EQ(cmap_replace(c->m, kp, 4, &v, 8, NULL, NULL),
			 CMAP_EINVAL);
		CHECK_EQ(cmap_cas(c->m, kp, 4, &v, 8, &v, 8, NULL, NULL),
			 CMAP_EINVAL);
		CHECK_EQ(cmap_remove(c->m, kp, 4, NULL, NULL), CMAP_EINVAL);
		CHECK_EQ(cmap_remove_if(c->m, kp, 4, &v, 8), CMAP_EINVAL);
		CHECK_EQ(cmap_compute(c->m, kp, 4, side_fn, c), CMAP_EINVAL);
	}
	/* Reads work: the key itself shows the value fn was given (no
	 * other thread writes k), the other key its value. */
	int rc = cmap_get(c->m, key, klen, &got, &gl);
	if (cur) {
		CHECK_EQ(rc, CMAP_OK);
		CHECK_EQ(cur_len, 8);
		CHECK(memcmp(&got, cur, 8) == 0);
	} else {
		CHECK_EQ(rc, CMAP_NOT_FOUND);
	}
	CHECK_EQ(cmap_get(c->m, &o, 4, &got, NULL), CMAP_OK);
	want = mix(o);
	CHECK(got == want);
	unsigned char f = 0;
	CHECK_EQ(cmap_get_batch(c->m, &o, 1, &got, &f), 1);
	CHECK(f == 1 && got == want);
	CHECK_EQ(cmap_get(c->m, &absent, 4, NULL, NULL), CMAP_NOT_FOUND);
	/* Another map may be written. */
	CHECK(cmap_set(c->other, &k, 4, &v, 8, NULL, NULL) >= 0);
	CHECK(cmap_remove(c->other, &k, 4, NULL, NULL) == CMAP_OK);
	(void)cmap_collect(c->m);
	/* Count up. */
	uint64_t n = 1;
	if (cur) {
		memcpy(&n, cur, 8);
		n++;
	}
	memcpy(c->buf, &n, 8);
	*val = c->buf;
	*vlen = 8;
	return CMAP_COMPUTE_SET;
}

/* cmap_compute from a get_with callback: the borrowed value stays as it
 * was while the callback's compute replaces it. */
static void side_visit(const void *key, size_t klen, const void *val,
		       size_t vlen, void *ctx)
{
	struct side *c = ctx;
	CHECK_EQ(vlen, 8);
	uint64_t before;
	memcpy(&before, val, 8);
	int runs = c->runs;
	CHECK_EQ(cmap_compute(c->m, key, klen, side_fn, c), CMAP_REPLACED);
	CHECK(c->runs > runs);
	uint64_t now = 0;
	CHECK_EQ(cmap_get(c->m, key, klen, &now, NULL), CMAP_OK);
	CHECK(now == before + 1);
	CHECK(memcmp(&before, val, 8) == 0);
}

struct side_w {
	cmap_t *m, *other;
	unsigned id;
	long n;
};

static void *side_worker(void *arg)
{
	struct side_w *w = arg;
	uint32_t k = 1000 + w->id; /* this thread's own key */
	struct side c = {.m = w->m, .other = w->other, .k = k, .o = w->id};
	long incs = 0;
	pthread_barrier_wait(&bar);
	for (long i = 0; i < w->n; i++) {
		int rc = cmap_compute(w->m, &k, 4, side_fn, &c);
		CHECK_EQ(rc, incs == 0 ? CMAP_OK : CMAP_REPLACED);
		incs++;
		if (i % 4 == 3) {
			CHECK_EQ(cmap_get_with(w->m, &k, 4, side_visit, &c),
				 CMAP_OK);
			incs++;
		}
	}
	/* Every write from inside was refused: the count is the calls'. */
	uint64_t got = 0;
	CHECK_EQ(cmap_get(w->m, &k, 4, &got, NULL), CMAP_OK);
	CHECK_EQ(got, incs);
	CHECK_EQ(c.runs, incs); /* nobody else writes k: one run each */
	return NULL;
}

static void run_side_rule(long n)
{
	cmap_t *m = new_map(FIXED, NULL, NULL, NULL);
	cmap_t *other = new_map(FIXED, NULL, NULL, NULL);
	for (uint32_t o = 0; o < T; o++) {
		uint64_t v = mix(o);
		CHECK_EQ(cmap_set(m, &o, 4, &v, 8, NULL, NULL), CMAP_OK);
	}
	struct side_w w[T];
	pthread_t th[T];
	CHECK_EQ(pthread_barrier_init(&bar, NULL, T), 0);
	for (unsigned t = 0; t < T; t++) {
		w[t] = (struct side_w){m, other, t, n};
		CHECK_EQ(pthread_create(&th[t], NULL, side_worker, &w[t]), 0);
	}
	for (unsigned t = 0; t < T; t++)
		CHECK_EQ(pthread_join(th[t], NULL), 0);
	pthread_barrier_destroy(&bar);
	/* Nothing but the computed keys was written. */
	CHECK_EQ(cmap_len(m), 2 * T);
	for (uint32_t o = 0; o < T; o++) {
		uint64_t v = 0;
		CHECK_EQ(cmap_get(m, &o, 4, &v, NULL), CMAP_OK);
		CHECK(v == mix(o));
		uint32_t absent = 0xffffff00u + 1000 + o;
		CHECK_EQ(cmap_get(m, &absent, 4, NULL, NULL), CMAP_NOT_FOUND);
	}
	CHECK_EQ(cmap_len(other), 0);
	CHECK_EQ(cmap_validate(m, NULL), CMAP_OK);
	cmap_free(m);
	cmap_free(other);
	printf("  compute side rule: %d threads x %ld computes\n", T, n);
}

/* ---- iteration under churn ---------------------------------------------- */

/*
 * Ids 0..STABLE-1 are present throughout (churners replace their values);
 * ids STABLE.. are inserted and removed in batches, enough to split and
 * contract nodes.  Walkers run whole walks (cmap_foreach, or cursors with
 * slices of 1, 3, 7, 64 entries) while the churn goes on: every stable key
 * seen exactly once, churned keys at most once, values belong to their
 * key.  One walker's callback also reads and rewrites the entry it visits.
 */
struct churn {
	cmap_t *m;
	enum layout l;
	unsigned id;
	uint32_t stable, span; /* churned ids: stable + id * span + [0, span) */
	long walks;
	_Atomic(int) *walkers_left;
	_Atomic(long) *batches; /* churn batches completed, all churners */
	long churn_ops, visits, walked;
};

static size_t churn_val(enum layout l, uint32_t k, uint64_t ver,
			unsigned char *b)
{
	uint64_t v = (uint64_t)k << 32 | (ver & 0xffffffff);
	memcpy(b, &v, 8);
	if (l != VAR)
		return 8;
	size_t n = 8 + (ver & 0xffffffff) % 11;
	memset(b + 8, (int)(k & 0xff), n - 8);
	return n;
}

static void *churner(void *arg)
{
	struct churn *w = arg;
	unsigned char kb[32], vb[24];
	uint64_t ver = 0, s = 7 + w->id;
	pthread_barrier_wait(&bar);
	while (atomic_load(w->walkers_left) > 0) {
		uint32_t base = w->stable + w->id * w->span;
		for (uint32_t i = 0; i < w->span; i++) {
			uint32_t k = base + i;
			size_t kl = key_of(w->l, k, kb);
			size_t vl = churn_val(w->l, k, ++ver, vb);
			CHECK_EQ(cmap_insert(w->m, kb, kl, vb, vl, NULL, NULL),
				 CMAP_OK);
			/* And a stable key's value. */
			k = (uint32_t)(rng_next(&s) % w->stable);
			kl = key_of(w->l, k, kb);
			vl = churn_val(w->l, k, ++ver, vb);
			CHECK_EQ(cmap_set(w->m, kb, kl, vb, vl, NULL, NULL),
				 CMAP_REPLACED);
		}
		for (uint32_t i = 0; i < w->span; i++) {
			uint32_t k = base + i;
			size_t kl = key_of(w->l, k, kb);
			CHECK_EQ(cmap_remove(w->m, kb, kl, NULL, NULL),
				 CMAP_OK);
		}
		w->churn_ops += 3 * w->span;
		atomic_fetch_add(w->batches, 1);
	}
	return NULL;
}

/* The id of a key as key_of makes it. */
static uint32_t churn_id(enum layout l, const void *k, size_t kl)
{
	uint32_t id;
	if (l != VAR) {
		CHECK_EQ(kl, 4);
		memcpy(&id, k, 4);
	} else {
		char s[32];
		CHECK(kl < sizeof s);
		memcpy(s, k, kl);
		s[kl] = 0;
		CHECK(s[0] == 'k');
		id = (uint32_t)strtoul(s + 1, NULL, 10);
	}
	unsigned char want[32];
	CHECK_EQ(key_of(l, id, want), kl);
	CHECK(memcmp(want, k, kl) == 0);
	return id;
}

struct wctx {
	struct churn *w;
	unsigned char *seen;
	uint32_t n;
	bool touch; /* get and rewrite the visited entry */
	long visits;
};

static int churn_visit(const void *k, size_t kl, const void *v, size_t vl,
		       void *ctx)
{
	struct wctx *c = ctx;
	enum layout l = c->w->l;
	uint32_t id = churn_id(l, k, kl);
	CHECK(id < c->n);
	CHECK(vl >= 8);
	uint64_t x;
	memcpy(&x, v, 8);
	CHECK_EQ(x >> 32, id);
	unsigned char want[24];
	uint64_t ver = x & 0xffffffff;
	CHECK_EQ(churn_val(l, id, ver, want), vl);
	CHECK(memcmp(want, v, vl) == 0);
	CHECK(c->seen[id] == 0); /* never twice */
	c->seen[id] = 1;
	c->visits++;
	if (c->touch && id < c->w->stable) {
		unsigned char kb[32], vb[24];
		size_t kcl = kl, gl = sizeof vb;
		memcpy(kb, k, kl);
		CHECK_EQ(cmap_get(c->w->m, kb, kcl, vb, &gl), CMAP_OK);
		size_t nl = churn_val(l, id, ver + 1, vb);
		CHECK_EQ(cmap_set(c->w->m, kb, kcl, vb, nl, NULL, NULL),
			 CMAP_REPLACED);
	}
	return 0;
}

static void *walker(void *arg)
{
	struct churn *w = arg;
	uint32_t n = w->stable + 2 * w->span;
	struct wctx c = {w, calloc(n, 1), n, w->id == 1, 0};
	CHECK(c.seen != NULL);
	static const size_t maxes[] = {1, 3, 7, 64};
	pthread_barrier_wait(&bar);
	/* At least w->walks walks, and on until the churners have done a
	 * few batches (split, contract) meanwhile. */
	long i = 0;
	for (; i < w->walks || atomic_load(w->batches) < 6; i++) {
		memset(c.seen, 0, n);
		if (i % 2 == 0) {
			long got = cmap_foreach(w->m, churn_visit, &c);
			CHECK(got >= w->stable);
		} else {
			cmap_cursor_t cur;
			cmap_cursor_init(&cur);
			size_t max = maxes[(i / 2 + w->id) % 4];
			long got;
			while ((got = cmap_cursor_next(w->m, &cur, max,
						       churn_visit, &c)) > 0)
				;
			CHECK_EQ(got, 0);
			CHECK(cur.done);
		}
		for (uint32_t id = 0; id < w->stable; id++)
			CHECK_EQ(c.seen[id], 1);
	}
	w->visits = c.visits;
	w->walked = i;
	free(c.seen);
	atomic_fetch_sub(w->walkers_left, 1);
	return NULL;
}

static void run_churn(enum layout l, uint32_t stable, uint32_t span, long walks)
{
	cmap_t *m = new_map(l, NULL, NULL, NULL);
	unsigned char kb[32], vb[24];
	for (uint32_t k = 0; k < stable; k++) {
		size_t kl = key_of(l, k, kb), vl = churn_val(l, k, 0, vb);
		CHECK_EQ(cmap_set(m, kb, kl, vb, vl, NULL, NULL), CMAP_OK);
	}
	_Atomic(int) left = 2;
	_Atomic(long) batches = 0;
	struct churn w[T];
	pthread_t th[T];
	CHECK_EQ(pthread_barrier_init(&bar, NULL, T), 0);
	for (unsigned t = 0; t < T; t++) {
		w[t] = (struct churn){.m = m,
				      .l = l,
				      .id = t % 2,
				      .stable = stable,
				      .span = span,
				      .walks = walks,
				      .walkers_left = &left,
				      .batches = &batches};
		CHECK_EQ(pthread_create(&th[t], NULL, t < 2 ? churner : walker,
					&w[t]),
			 0);
	}
	for (unsigned t = 0; t < T; t++)
		CHECK_EQ(pthread_join(th[t], NULL), 0);
	pthread_barrier_destroy(&bar);
	CHECK_EQ(cmap_len(m), stable);
	CHECK_EQ(cmap_validate(m, NULL), CMAP_OK);
	printf("  churn %-29s %ld + %ld walks, %ld + %ld visits, %ld + %ld "
	       "churn ops\n",
	       lname[l], w[2].walked, w[3].walked, w[2].visits, w[3].visits,
	       w[0].churn_ops, w[1].churn_ops);
	cmap_free(m);
}

/*
 * cmap_retain and cmap_clear racing with inserts and replaces, with
 * destructors: every value destroyed exactly once (at its replacement,
 * its removal or cmap_free), every key once per entry, cmap_len exact once
 * quiet.
 */
struct rc_w {
	cmap_t *m;
	unsigned id;
	long n;
	long inserted, values;
	long removed;
};

static _Atomic(unsigned) *rc_dtor; /* per value id */
static _Atomic(int) rc_inserters;  /* still running */
static _Atomic(long) rc_kdtor;
static long rc_nvals;

static void rc_val_dtor(void *item, size_t len, void *ctx)
{
	(void)ctx;
	CHECK_EQ(len, 8);
	uint64_t v;
	memcpy(&v, item, 8);
	CHECK(v < (uint64_t)rc_nvals);
	atomic_fetch_add(&rc_dtor[v], 1);
}

static void rc_key_dtor(void *item, size_t len, void *ctx)
{
	(void)item;
	(void)len;
	(void)ctx;
	atomic_fetch_add(&rc_kdtor, 1);
}

static int rc_pred(const void *k, size_t kl, const void *v, size_t vl,
		   void *ctx)
{
	(void)v;
	(void)vl;
	(void)ctx;
	uint32_t id;
	CHECK_EQ(kl, 4);
	memcpy(&id, k, 4);
	return id % 3 != 0;
}

static void *rc_inserter(void *arg)
{
	struct rc_w *w = arg;
	pthread_barrier_wait(&bar);
	for (long i = 0; i < w->n; i++) {
		uint32_t k = (uint32_t)(w->id * w->n + i);
		uint64_t v = (uint64_t)(w->id * 2 * w->n + 2 * i);
		int rc = cmap_insert(w->m, &k, 4, &v, 8, NULL, NULL);
		CHECK_EQ(rc, CMAP_OK);
		w->inserted++;
		w->values++;
		v++;
		rc = cmap_set(w->m, &k, 4, &v, 8, NULL, NULL);
		CHECK(rc == CMAP_OK || rc == CMAP_REPLACED);
		w->inserted += rc == CMAP_OK; /* a clear took it meanwhile */
		w->values++;
	}
	atomic_fetch_sub(&rc_inserters, 1);
	return NULL;
}

static void *rc_clearer(void *arg)
{
	struct rc_w *w = arg;
	pthread_barrier_wait(&bar);
	/* At least n passes, and on while the inserters run. */
	for (long i = 0; i < w->n || atomic_load(&rc_inserters) > 0; i++) {
		long r =
		    i % 2 ? cmap_clear(w->m) : cmap_retain(w->m, rc_pred, NULL);
		CHECK(r >= 0);
		w->removed += r;
		w->values = i + 1; /* passes */
	}
	return NULL;
}

static void run_retain_clear(long n, long passes)
{
	cmap_config_t c = CMAP_CONFIG_INIT;
	c.key_size = 4;
	c.val_size = 8;
	c.key_dtor = rc_key_dtor;
	c.val_dtor = rc_val_dtor;
	cmap_t *m = NULL;
	CHECK_EQ(cmap_new(&m, &c), CMAP_OK);
	rc_nvals = 2 * n * (T - 1);
	rc_dtor = calloc((size_t)rc_nvals, sizeof *rc_dtor);
	CHECK(rc_dtor != NULL);
	atomic_store(&rc_kdtor, 0);
	atomic_store(&rc_inserters, T - 1);
	struct rc_w w[T];
	pthread_t th[T];
	CHECK_EQ(pthread_barrier_init(&bar, NULL, T), 0);
	for (unsigned t = 0; t < T; t++) {
		w[t] = (struct rc_w){m, t, t < T - 1 ? n : passes, 0, 0, 0};
		CHECK_EQ(pthread_create(&th[t], NULL,
					t < T - 1 ? rc_inserter : rc_clearer,
					&w[t]),
			 0);
	}
	for (unsigned t = 0; t < T; t++)
		CHECK_EQ(pthread_join(th[t], NULL), 0);
	pthread_barrier_destroy(&bar);
	long inserted = 0, values = 0;
	for (unsigned t = 0; t < T - 1; t++) {
		inserted += w[t].inserted;
		values += w[t].values;
	}
	/* Quiet: len, a scan and a walk agree; entries = inserted -
	 * removed. */
	size_t present = 0;
	for (uint32_t k = 0; k < (uint32_t)(n * (T - 1)); k++)
		present += cmap_get(m, &k, 4, NULL, NULL) == CMAP_OK;
	CHECK_EQ(cmap_len(m), present);
	CHECK_EQ(present, inserted - w[T - 1].removed);
	long cleared = cmap_clear(m);
	CHECK_EQ(cleared, (long)present);
	CHECK_EQ(cmap_len(m), 0);
	cmap_free(m);
	CHECK_EQ(values, rc_nvals);
	for (long v = 0; v < rc_nvals; v++)
		CHECK_EQ(atomic_load(&rc_dtor[v]), 1);
	CHECK_EQ(atomic_load(&rc_kdtor), inserted);
	printf("  retain/clear vs inserts: %ld entries made, %ld removed by "
	       "%ld passes\n",
	       inserted, w[T - 1].removed, w[T - 1].values);
	free(rc_dtor);
}

int main(void)
{
	long n = scaled(100000);
	for (int use_cas = 0; use_cas < 2; use_cas++) {
		run_counters(FIXED, 1, n, use_cas);
		run_counters(FIXED, 16, n, use_cas);
		run_counters(VAR, 8, n, use_cas);
		run_counters(COLLIDE, 24, n / 2, use_cas);
	}
	run_inserts(FIXED, (uint32_t)scaled(200000));
	run_inserts(VAR, (uint32_t)scaled(100000));
	run_inserts(COLLIDE, (uint32_t)scaled(2000) + 10);
	long v = scaled(200000);
	run_versions(FIXED, 8, v);
	run_versions(VAR, 16, v);
	run_versions(COLLIDE, 40, v / 2);
	run_side_rule(scaled(20000));
	long walks = scaled(40) + 2;
	run_churn(FIXED, 2000, 3000, walks);
	run_churn(VAR, 1000, 2000, walks);
	run_churn(COLLIDE, 60, 100, walks);
	run_retain_clear(scaled(100000), scaled(200) + 2);
	printf("test_rmw: ok\n");
	return 0;
}
