/*
 * Concurrent correctness (the Rust crate's two concurrent tests, stronger):
 *
 * oracle: T threads on disjoint key ranges do random set/get/remove, each
 *   checked against the thread's own reference; then the whole map is
 *   compared with the union, len and validate checked, everything removed
 *   concurrently and the map must be a bare root again.
 * shared: T threads hammer one small key set.  A value encodes (key, writer,
 *   sequence).  No get may return a value for another key or one its writer
 *   has not yet begun to write; per reader, each writer's sequence numbers
 *   for a key never go backwards; at the end every key holds the last write
 *   of some writer (or is absent and some writer's last op was a remove).
 *
 * More threads than cores, so threads are preempted inside operations.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

#include "cmap.h"
#include "testutil.h"

#define T 4

static pthread_barrier_t bar;

/* ---- oracle ------------------------------------------------------------- */

struct oracle {
	cmap_t *m;
	bool var;
	unsigned id;
	uint32_t base, span;
	long ops;
	unsigned char *has;
	uint64_t *val;
};

static size_t okey(const struct oracle *o, uint32_t k, unsigned char *buf)
{
	memcpy(buf, &k, 4);
	if (!o->var)
		return 4;
	size_t n = 4 + k % 13;
	memset(buf + 4, (int)(k & 0x7f), n - 4);
	return n;
}

static void *oracle_worker(void *arg)
{
	struct oracle *o = arg;
	uint64_t s = 1000 + o->id;
	unsigned char kb[32];
	pthread_barrier_wait(&bar);
	for (long n = 0; n < o->ops; n++) {
		uint64_t x = rng_next(&s);
		uint32_t i = (uint32_t)(x % o->span), k = o->base + i;
		size_t kl = okey(o, k, kb);
		uint64_t v = x >> 8, got = 0;
		size_t gl = 8;
		switch ((x >> 56) % 3) {
		case 0:
			CHECK_EQ(cmap_set(o->m, kb, kl, &v, 8, &got, &gl),
				 o->has[i] ? CMAP_REPLACED : CMAP_OK);
			if (o->has[i])
				CHECK(got == o->val[i]);
			o->has[i] = 1;
			o->val[i] = v;
			break;
		case 1:
			CHECK_EQ(cmap_get(o->m, kb, kl, &got, &gl),
				 o->has[i] ? CMAP_OK : CMAP_NOT_FOUND);
			if (o->has[i])
				CHECK(got == o->val[i]);
			break;
		default:
			CHECK_EQ(cmap_remove(o->m, kb, kl, &got, &gl),
				 o->has[i] ? CMAP_OK : CMAP_NOT_FOUND);
			if (o->has[i])
				CHECK(got == o->val[i]);
			o->has[i] = 0;
		}
	}
	return NULL;
}

static void *oracle_clear(void *arg)
{
	struct oracle *o = arg;
	unsigned char kb[32];
	pthread_barrier_wait(&bar);
	for (uint32_t i = 0; i < o->span; i++)
		CHECK_EQ(
		    cmap_remove(o->m, kb, okey(o, o->base + i, kb), NULL, NULL),
		    o->has[i] ? CMAP_OK : CMAP_NOT_FOUND);
	return NULL;
}

static void run_oracle(cmap_hash_fn hash, bool var, uint32_t span, long ops)
{
	cmap_config_t c = CMAP_CONFIG_INIT;
	c.key_size = var ? 0 : 4;
	c.val_size = 8;
	c.hash = hash;
	cmap_t *m = NULL;
	CHECK_EQ(cmap_new(&m, &c), CMAP_OK);
	struct oracle o[T];
	pthread_t th[T];
	for (unsigned t = 0; t < T; t++) {
		o[t] = (struct oracle){m,
				       var,
				       t,
				       t * span,
				       span,
				       ops,
				       calloc(span, 1),
				       calloc(span, 8)};
		CHECK(o[t].has && o[t].val);
	}
	CHECK_EQ(pthread_barrier_init(&bar, NULL, T), 0);
	for (unsigned t = 0; t < T; t++)
		CHECK_EQ(pthread_create(&th[t], NULL, oracle_worker, &o[t]), 0);
	for (unsigned t = 0; t < T; t++)
		CHECK_EQ(pthread_join(th[t], NULL), 0);
	pthread_barrier_destroy(&bar);
	/* Full comparison with the union of the references. */
	size_t want = 0;
	unsigned char kb[32];
	for (unsigned t = 0; t < T; t++)
		for (uint32_t i = 0; i < span; i++) {
			uint64_t got = 0;
			size_t gl = 8;
			int rc = cmap_get(m, kb, okey(&o[t], o[t].base + i, kb),
					  &got, &gl);
			CHECK_EQ(rc, o[t].has[i] ? CMAP_OK : CMAP_NOT_FOUND);
			if (o[t].has[i]) {
				CHECK(got == o[t].val[i]);
				want++;
			}
		}
	CHECK_EQ(cmap_len(m), want);
	cmap_stats_t st;
	CHECK_EQ(cmap_validate(m, &st), CMAP_OK);
	CHECK_EQ(st.entries, want);
	/* Concurrent removal of everything contracts back to a bare root. */
	CHECK_EQ(pthread_barrier_init(&bar, NULL, T), 0);
	for (unsigned t = 0; t < T; t++)
		CHECK_EQ(pthread_create(&th[t], NULL, oracle_clear, &o[t]), 0);
	for (unsigned t = 0; t < T; t++)
		CHECK_EQ(pthread_join(th[t], NULL), 0);
	pthread_barrier_destroy(&bar);
	CHECK_EQ(cmap_len(m), 0);
	CHECK_EQ(cmap_validate(m, &st), CMAP_OK);
	CHECK_EQ(st.entries, 0);
	CHECK_EQ(st.inner_nodes, 1);
	for (unsigned t = 0; t < T; t++) {
		free(o[t].has);
		free(o[t].val);
	}
	cmap_free(m);
}

/* ---- shared keys -----------------------------------------------------------
 */

#define KEYS_MAX 64

struct shared {
	cmap_t *m;
	unsigned id, nkeys;
	long ops;
	/* Highest sequence this writer has begun to write, per key: stored
	 * (release) before the set, so a reader that sees the value (acquire
	 * through the map) also sees at least that much here. */
	_Atomic(uint32_t) started[KEYS_MAX];
	/* Last operation per key, for the final check: seq, or 0 = removed. */
	uint32_t last[KEYS_MAX];
	bool touched[KEYS_MAX];
};

static struct shared sh[T];

static uint64_t enc(uint32_t key, unsigned w, uint32_t seq)
{
	return (uint64_t)key << 40 | (uint64_t)w << 32 | seq;
}

static void *shared_worker(void *arg)
{
	struct shared *me = arg;
	uint64_t s = 77 + me->id;
	uint32_t seq = 0;
	/* What this thread last saw from each writer, per key. */
	uint32_t seen[T][KEYS_MAX];
	memset(seen, 0, sizeof seen);
	pthread_barrier_wait(&bar);
	for (long n = 0; n < me->ops; n++) {
		uint64_t x = rng_next(&s);
		uint32_t k = (uint32_t)(x % me->nkeys);
		uint64_t v = 0;
		switch ((x >> 32) % 4) {
		case 0:
		case 1: {
			seq++;
			atomic_store_explicit(&me->started[k], seq,
					      memory_order_release);
			v = enc(k, me->id, seq);
			CHECK(cmap_set(me->m, &k, 4, &v, 8, NULL, NULL) >= 0);
			me->last[k] = seq;
			me->touched[k] = true;
			break;
		}
		case 2: {
			int rc;
			if (x & (1ull << 62)) {
				/* The batched path, one key at a time. */
				unsigned char f = 2;
				long h = cmap_get_batch(me->m, &k, 1, &v, &f);
				CHECK(h == 0 || h == 1);
				CHECK_EQ(f, h);
				rc = h ? CMAP_OK : CMAP_NOT_FOUND;
			} else {
				rc = cmap_get(me->m, &k, 4, &v, NULL);
			}
			CHECK(rc == CMAP_OK || rc == CMAP_NOT_FOUND);
			if (rc != CMAP_OK)
				break;
			uint32_t vk = (uint32_t)(v >> 40);
			unsigned w = (unsigned)(v >> 32) & 0xff;
			uint32_t vs = (uint32_t)v;
			CHECK_EQ(vk, k);
			CHECK(w < T);
			CHECK(vs >= 1);
			CHECK(vs <= atomic_load_explicit(&sh[w].started[k],
							 memory_order_acquire));
			CHECK(vs >= seen[w][k]); /* never backwards */
			seen[w][k] = vs;
			break;
		}
		default:
			CHECK(cmap_remove(me->m, &k, 4, NULL, NULL) >= 0);
			me->last[k] = 0;
			me->touched[k] = true;
		}
	}
	return NULL;
}

static void run_shared(cmap_hash_fn hash, unsigned nkeys, long ops)
{
	cmap_config_t c = CMAP_CONFIG_INIT;
	c.key_size = 4;
	c.val_size = 8;
	c.hash = hash;
	cmap_t *m = NULL;
	CHECK_EQ(cmap_new(&m, &c), CMAP_OK);
	pthread_t th[T];
	memset(sh, 0, sizeof sh);
	CHECK_EQ(pthread_barrier_init(&bar, NULL, T), 0);
	for (unsigned t = 0; t < T; t++) {
		sh[t].m = m;
		sh[t].id = t;
		sh[t].nkeys = nkeys;
		sh[t].ops = ops;
		CHECK_EQ(pthread_create(&th[t], NULL, shared_worker, &sh[t]),
			 0);
	}
	for (unsigned t = 0; t < T; t++)
		CHECK_EQ(pthread_join(th[t], NULL), 0);
	pthread_barrier_destroy(&bar);
	size_t present = 0;
	for (uint32_t k = 0; k < nkeys; k++) {
		uint64_t v = 0;
		int rc = cmap_get(m, &k, 4, &v, NULL);
		bool ok = false;
		for (unsigned t = 0; t < T; t++) {
			if (!sh[t].touched[k])
				continue;
			if (rc == CMAP_NOT_FOUND && sh[t].last[k] == 0)
				ok = true;
			if (rc == CMAP_OK && (unsigned)(v >> 32 & 0xff) == t &&
			    (uint32_t)v == sh[t].last[k])
				ok = true;
		}
		CHECK(ok);
		present += rc == CMAP_OK;
	}
	CHECK_EQ(cmap_len(m), present);
	cmap_stats_t st;
	CHECK_EQ(cmap_validate(m, &st), CMAP_OK);
	cmap_free(m);
}

static uint64_t const_hash(const void *k, size_t n, uint64_t s)
{
	(void)k;
	(void)n;
	(void)s;
	return 0xfeedfacecafebeefull;
}

/* Keys that share their low 10 hash bits: the trie splits and contracts
 * deep nodes under contention. */
static uint64_t shift_hash(const void *k, size_t n, uint64_t s)
{
	(void)s;
	return cmap_hash_u32(k, n, 0) << 10;
}

int main(void)
{
	long ops = scaled(600000);
	run_oracle(cmap_hash_u32, false, 20000, ops);
	run_oracle(NULL, false, 20000, ops);
	run_oracle(shift_hash, false, 300, ops);
	run_oracle(NULL, true, 5000, ops / 2);
	run_shared(cmap_hash_u32, 64, ops);
	run_shared(NULL, 1, ops);
	run_shared(const_hash, 40, ops / 2);
	run_shared(shift_hash, 64, ops);
	printf("test_threads: ok\n");
	return 0;
}
