/*
 * Baseline: a plain open-addressing table (linear probing, tombstones)
 * split into 16 stripes, each behind its own rwlock.  Sized up front for
 * the load (no resize), so it measures locking, not growth.
 */
#include <pthread.h>
#include <stdlib.h>

#include "maps.h"

#define STRIPES 16

struct slot {
	uint64_t val;
	uint32_t key;
	uint8_t state; /* 0 empty, 1 used, 2 deleted */
};

struct stripe {
	pthread_rwlock_t lock;
	struct slot *slots;
	size_t mask, used, len;
	char pad[64];
};

struct striped {
	struct stripe s[STRIPES];
};

static void destroy(void *m)
{
	struct striped *t = m;
	for (int i = 0; i < STRIPES; i++) {
		pthread_rwlock_destroy(&t->s[i].lock);
		free(t->s[i].slots);
	}
	free(t);
}

static void *create(uint64_t n)
{
	struct striped *t = calloc(1, sizeof *t);
	if (!t)
		return NULL;
	size_t per = 16;
	while (per < 2 * (n / STRIPES + 1)) /* load factor <= 0.5 */
		per *= 2;
	for (int i = 0; i < STRIPES; i++) {
		pthread_rwlock_init(&t->s[i].lock, NULL);
		t->s[i].mask = per - 1;
	}
	for (int i = 0; i < STRIPES; i++)
		if (!(t->s[i].slots = calloc(per, sizeof(struct slot)))) {
			destroy(t); /* free(NULL) for the stripes not reached */
			return NULL;
		}
	return t;
}

/* The stripe takes the top bits, the probe the low bits. */
static struct stripe *stripe_of(struct striped *t, uint64_t h)
{
	return &t->s[h >> 60];
}

/* Index of key, or of the first free slot after it when absent. */
static size_t probe(struct stripe *s, uint32_t k, uint64_t h, int *found)
{
	size_t i = h & s->mask, tomb = (size_t)-1;
	for (;;) {
		struct slot *x = &s->slots[i];
		if (x->state == 0) {
			*found = 0;
			return tomb != (size_t)-1 ? tomb : i;
		}
		if (x->state == 1 && x->key == k) {
			*found = 1;
			return i;
		}
		if (x->state == 2 && tomb == (size_t)-1)
			tomb = i;
		i = (i + 1) & s->mask;
	}
}

/* Rebuild a stripe without its tombstones (same size: len <= half). */
static int rehash(struct stripe *s)
{
	struct slot *old = s->slots;
	size_t n = s->mask + 1;
	s->slots = calloc(n, sizeof *s->slots);
	if (!s->slots) {
		s->slots = old;
		return -1;
	}
	s->used = s->len;
	for (size_t i = 0; i < n; i++) {
		if (old[i].state != 1)
			continue;
		size_t j = bench_mix64(old[i].key) & s->mask;
		while (s->slots[j].state)
			j = (j + 1) & s->mask;
		s->slots[j] = old[i];
	}
	free(old);
	return 0;
}

static int set(void *m, uint32_t k, uint64_t v)
{
	uint64_t h = bench_mix64(k);
	struct stripe *s = stripe_of(m, h);
	int found;
	pthread_rwlock_wrlock(&s->lock);
	if (s->used >= s->mask / 4 * 3 && rehash(s) < 0) {
		pthread_rwlock_unlock(&s->lock);
		return -1;
	}
	size_t i = probe(s, k, h, &found);
	if (!found && s->len + 1 > s->mask / 2) {
		pthread_rwlock_unlock(&s->lock);
		return -1; /* sized for the load: more keys than loaded */
	}
	if (!found) {
		if (s->slots[i].state == 0)
			s->used++;
		s->len++;
	}
	s->slots[i] = (struct slot){v, k, 1};
	pthread_rwlock_unlock(&s->lock);
	return !found;
}

static int get(void *m, uint32_t k, uint64_t *v)
{
	uint64_t h = bench_mix64(k);
	struct stripe *s = stripe_of(m, h);
	int found;
	pthread_rwlock_rdlock(&s->lock);
	size_t i = probe(s, k, h, &found);
	if (found)
		*v = s->slots[i].val;
	pthread_rwlock_unlock(&s->lock);
	return found;
}

static int rem(void *m, uint32_t k)
{
	uint64_t h = bench_mix64(k);
	struct stripe *s = stripe_of(m, h);
	int found;
	pthread_rwlock_wrlock(&s->lock);
	size_t i = probe(s, k, h, &found);
	if (found) {
		s->slots[i].state = 2;
		s->len--;
	}
	pthread_rwlock_unlock(&s->lock);
	return found;
}

static size_t len(void *m)
{
	struct striped *t = m;
	size_t n = 0;
	for (int i = 0; i < STRIPES; i++) {
		pthread_rwlock_rdlock(&t->s[i].lock);
		n += t->s[i].len;
		pthread_rwlock_unlock(&t->s[i].lock);
	}
	return n;
}

/* Insert k (absent, at slot i) under the stripe's write lock; -1 when the
 * stripe is at its sized capacity. */
static int add_at(struct stripe *s, size_t i, uint32_t k, uint64_t v)
{
	if (s->len + 1 > s->mask / 2)
		return -1;
	if (s->slots[i].state == 0)
		s->used++;
	s->len++;
	s->slots[i] = (struct slot){v, k, 1};
	return 1;
}

/* Under the write lock, with the same tombstone rule as set. */
static int upsert(void *m, uint32_t k, uint64_t v, int add)
{
	uint64_t h = bench_mix64(k);
	struct stripe *s = stripe_of(m, h);
	int found, rc = 0;
	pthread_rwlock_wrlock(&s->lock);
	if (s->used >= s->mask / 4 * 3 && rehash(s) < 0) {
		pthread_rwlock_unlock(&s->lock);
		return -1;
	}
	size_t i = probe(s, k, h, &found);
	if (!found)
		rc = add_at(s, i, k, v);
	else if (add)
		s->slots[i].val += v;
	pthread_rwlock_unlock(&s->lock);
	return rc;
}

static int incr(void *m, uint32_t k, uint64_t d)
{
	return upsert(m, k, d, 1);
}

static int insert(void *m, uint32_t k, uint64_t v)
{
	return upsert(m, k, v, 0);
}

/* A stripe at a time under its read lock: keys present throughout are
 * visited once; writers to the stripe being walked wait. */
static long iterate(void *m, bench_visit_fn fn, void *ctx)
{
	struct striped *t = m;
	long n = 0;
	for (int i = 0; i < STRIPES; i++) {
		struct stripe *s = &t->s[i];
		pthread_rwlock_rdlock(&s->lock);
		for (size_t j = 0; j <= s->mask; j++)
			if (s->slots[j].state == 1) {
				fn(s->slots[j].key, s->slots[j].val, ctx);
				n++;
			}
		pthread_rwlock_unlock(&s->lock);
	}
	return n;
}

const struct bench_map bench_map_striped = {
    "striped", "baseline: open addressing behind 16 striped rwlocks",
    create,    destroy,
    NULL,      NULL,
    NULL,      set,
    get,       rem,
    len,       incr,
    insert,    iterate,
    1};
