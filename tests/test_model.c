/*
 * Sequential model test.  Millions of random operations run against a
 * reference map: a direct array indexed by key id that stores the version
 * each value was derived from.  The operations are set/get/remove (with
 * occasional cmap_get_with, old-value copy-out and, for variable-length
 * values, too-small buffers) and the read-modify-write calls: cmap_insert
 * (EXISTS copies the current value out), cmap_replace, cmap_cas (REPLACED,
 * MISMATCH with the current value copied out, NOT_FOUND) and cmap_remove_if
 * with an expected value that is usually right, and cmap_compute with every
 * action on present and absent keys (what fn saw, how often it ran, the
 * status; SET sometimes stores a pointer into cur).  Too-small output
 * buffers must give CMAP_ERANGE with the needed length and change nothing.
 * At every full check, cmap_foreach (whole and stopped) and
 * cmap_cursor_next slices of 1, 3, 7, 64 and 1000 entries (also stopped by
 * fn every 5th entry, except where keys share a full hash) visit exactly
 * the reference's entries once each; each round ends with a cmap_retain
 * that must remove exactly what its predicate rejects, then empties the
 * map by removes or, every other round, by cmap_clear (its count, then 0).
 * Every return code, every value and cmap_len after every operation are
 * compared.
 *
 * Configurations: inline u32 -> u64 with the identity hasher (plain and
 * clustered keys) and the default one, 16-byte keys -> 24-byte values,
 * variable-length keys and values, and a constant hasher (every key
 * collides) for both a fixed and a variable-length layout.  Each round
 * grows the trie (insert-heavy), churns it (mixed), shrinks it
 * (remove-heavy) and finally removes every remaining key, which must leave
 * a bare root; rounds use key spaces of different sizes on the same map.
 */
#include <stdbool.h>
#include <string.h>

#include "cmap.h"
#include "testutil.h"

enum layout {
	L_U32,	     /* 4-byte key = id, 8-byte value */
	L_U32_SHIFT, /* 4-byte key = id << 11 (low bits all zero), 8 bytes */
	L_WIDE,	     /* 16-byte key, 24-byte value */
	L_VAR,	     /* 1..40-byte key, 0..64-byte value */
};

struct config {
	const char *name;
	enum layout layout;
	cmap_hash_fn hash;
	long ops; /* total random operations, before scaling */
	int rounds;
	uint32_t space[3]; /* key-space size per round */
	double share[3];   /* share of ops per round */
};

static uint64_t const_hash(const void *key, size_t len, uint64_t seed)
{
	(void)key;
	(void)len;
	(void)seed;
	return 42;
}

/* ---- keys and values derived from (id) and (id, version) ---------------- */

static size_t key_of(enum layout l, uint32_t id, unsigned char *b)
{
	switch (l) {
	case L_U32:
		memcpy(b, &id, 4);
		return 4;
	case L_U32_SHIFT: {
		uint32_t k = id << 11;
		memcpy(b, &k, 4);
		return 4;
	}
	case L_WIDE: {
		uint64_t a = mix(id), z = id;
		memcpy(b, &a, 8);
		memcpy(b + 8, &z, 8);
		return 16;
	}
	case L_VAR:
	default: {
		/* Length 1..40 but at least the bytes id needs; the first
		 * min(len, 4) bytes hold id, so keys of one length differ. */
		size_t need = id < 0x100       ? 1
			      : id < 0x10000   ? 2
			      : id < 0x1000000 ? 3
					       : 4;
		size_t n = need + (size_t)(mix(id + 1) % (41 - need));
		for (size_t j = 0; j < n; j++)
			b[j] = (unsigned char)('a' + (id + j) % 26);
		for (size_t j = 0; j < n && j < 4; j++)
			b[j] = (unsigned char)(id >> (8 * j));
		return n;
	}
	}
}

static bool var_vals(enum layout l)
{
	return l == L_VAR;
}

static size_t val_of(enum layout l, uint32_t id, uint64_t ver, unsigned char *b)
{
	uint64_t x = mix(((uint64_t)id << 40) ^ ver);
	if (l == L_U32 || l == L_U32_SHIFT) {
		memcpy(b, &x, 8);
		return 8;
	}
	size_t n = l == L_WIDE ? 24 : (size_t)(mix(x) % 65);
	for (size_t j = 0; j < n; j++)
		b[j] = (unsigned char)((x >> (8 * (j % 8))) ^ (j * 29));
	return n;
}

/* ---- the model ------------------------------------------------------------
 */

struct model {
	const struct config *c;
	cmap_t *m;
	uint32_t space;	    /* ids 0..space-1 in this round */
	unsigned char *has; /* reference: present? */
	uint64_t *ver;	    /* reference: version of the value */
	size_t count;
	uint64_t next_ver;
	uint64_t rng;
	long ops; /* operations so far (validation cadence) */
	long stat_found, stat_erange;
	long stat_rmw, stat_cas_ok, stat_compute;
};

#define VALIDATE_EVERY 50000

static void check_validate(struct model *md)
{
	cmap_stats_t st;
	memset(&st, 0, sizeof st);
	CHECK_EQ(cmap_validate(md->m, &st), CMAP_OK);
	CHECK_EQ(st.entries, md->count);
	CHECK_EQ(st.entries, cmap_len(md->m));
	CHECK(st.inner_nodes >= 1);
	if (md->c->hash ==
	    const_hash) /* all keys in the one bucket of hash 42 */
		CHECK_EQ(st.buckets, md->count ? 1 : 0);
	if (md->count == 0) {
		CHECK_EQ(st.inner_nodes, 1);
		CHECK_EQ(st.buckets, 0);
	}
}

/* ---- iteration ----------------------------------------------------------- */

/* The id of a stored key (and that the key is exactly key_of(id)). */
static uint32_t id_of(enum layout l, const unsigned char *k, size_t kl)
{
	uint32_t id = 0;
	switch (l) {
	case L_U32:
		CHECK_EQ(kl, 4);
		memcpy(&id, k, 4);
		break;
	case L_U32_SHIFT:
		CHECK_EQ(kl, 4);
		memcpy(&id, k, 4);
		id >>= 11;
		break;
	case L_WIDE: {
		CHECK_EQ(kl, 16);
		uint64_t z;
		memcpy(&z, k + 8, 8);
		id = (uint32_t)z;
		break;
	}
	default:
		CHECK(kl >= 1 && kl <= 40);
		for (size_t j = 0; j < kl && j < 4; j++)
			id |= (uint32_t)k[j] << (8 * j);
	}
	unsigned char want[64];
	CHECK_EQ(key_of(l, id, want), kl);
	CHECK(memcmp(want, k, kl) == 0);
	return id;
}

struct walk {
	struct model *md;
	unsigned *seen; /* visits per id */
	long visits;
	long stop_every; /* return nonzero on every n-th visit (0: never) */
	int keep_mod;	 /* retain: keep ids with mix(id) % keep_mod != 0 */
};

static int walk_fn(const void *k, size_t kl, const void *v, size_t vl,
		   void *ctx)
{
	struct walk *w = ctx;
	struct model *md = w->md;
	uint32_t id = id_of(md->c->layout, k, kl);
	CHECK(id < md->space && md->has[id]);
	unsigned char want[64];
	size_t wl = val_of(md->c->layout, id, md->ver[id], want);
	CHECK_EQ(vl, wl);
	CHECK(vl == 0 || memcmp(v, want, wl) == 0);
	w->seen[id]++;
	w->visits++;
	if (w->keep_mod)
		return mix(id) % (uint64_t)w->keep_mod != 0;
	return w->stop_every && w->visits % w->stop_every == 0;
}

static void walk_init(struct walk *w, struct model *md)
{
	memset(w, 0, sizeof *w);
	w->md = md;
	w->seen = calloc(md->space ? md->space : 1, sizeof *w->seen);
	CHECK(w->seen != NULL);
}

/* Every entry of the model visited exactly once, nothing else. */
static void walk_done(struct walk *w)
{
	struct model *md = w->md;
	for (uint32_t id = 0; id < md->space; id++)
		CHECK_EQ(w->seen[id], md->has[id] ? 1 : 0);
	CHECK_EQ(w->visits, md->count);
	free(w->seen);
}

/* cmap_foreach, stopped and whole, and cursors with small slices, some
 * stopped by fn, against the model. */
static void check_iter(struct model *md)
{
	struct walk w;
	walk_init(&w, md);
	CHECK_EQ(cmap_foreach(md->m, walk_fn, &w), md->count);
	walk_done(&w);
	if (md->count > 2) { /* a stop ends the walk, its call counted */
		walk_init(&w, md);
		w.stop_every = (long)(md->count / 2);
		CHECK_EQ(cmap_foreach(md->m, walk_fn, &w), w.stop_every);
		CHECK_EQ(w.visits, w.stop_every);
		free(w.seen);
	}
	static const size_t maxes[] = {1, 3, 7, 64, 1000};
	/* A stop inside a run of keys with one full hash skips the rest of
	 * the run: the constant hasher's maps are walked without stops. */
	bool stops = md->c->hash != const_hash;
	for (size_t i = 0; i < sizeof maxes / sizeof maxes[0]; i++) {
		for (int stop = 0; stop < 1 + stops; stop++) {
			walk_init(&w, md);
			w.stop_every = stop ? 5 : 0;
			cmap_cursor_t c = CMAP_CURSOR_INIT;
			long total = 0, got, calls = 0;
			while ((got = cmap_cursor_next(md->m, &c, maxes[i],
						       walk_fn, &w)) > 0) {
				/* c.done may be set by the last slice. */
				/* More than max only for one full hash. */
				if (!stop && md->c->hash != const_hash)
					CHECK(got <= (long)maxes[i]);
				total += got;
				calls++;
			}
			CHECK_EQ(got, 0);
			CHECK(c.done);
			CHECK_EQ(total, md->count);
			CHECK_EQ(
			    cmap_cursor_next(md->m, &c, maxes[i], walk_fn, &w),
			    0);
			walk_done(&w);
			if (maxes[i] == 1 && md->c->hash != const_hash)
				CHECK(calls >= (long)md->count);
		}
	}
}

/* cmap_retain with a predicate that keeps about 3 in 4 ids. */
static void check_retain(struct model *md, int keep_mod)
{
	struct walk w;
	walk_init(&w, md);
	w.keep_mod = keep_mod;
	long removed = cmap_retain(md->m, walk_fn, &w);
	long want = 0;
	for (uint32_t id = 0; id < md->space; id++) {
		CHECK_EQ(w.seen[id], md->has[id] ? 1 : 0);
		if (md->has[id] && mix(id) % (uint64_t)keep_mod == 0) {
			md->has[id] = 0;
			md->count--;
			want++;
		}
	}
	free(w.seen);
	CHECK_EQ(removed, want);
	CHECK_EQ(cmap_len(md->m), md->count);
}

/* Every key of the space (and a few beyond) against the reference. */
static void check_all(struct model *md)
{
	enum layout l = md->c->layout;
	unsigned char kb[64], vb[64], want[64];
	size_t n = 0;
	for (uint32_t id = 0; id < md->space + 64; id++) {
		size_t kl = key_of(l, id, kb), len = sizeof vb;
		int rc = cmap_get(md->m, kb, kl, vb, var_vals(l) ? &len : NULL);
		if (id < md->space && md->has[id]) {
			CHECK_EQ(rc, CMAP_OK);
			size_t wl = val_of(l, id, md->ver[id], want);
			if (var_vals(l))
				CHECK_EQ(len, wl);
			CHECK(memcmp(vb, want, wl) == 0);
			n++;
		} else {
			CHECK_EQ(rc, CMAP_NOT_FOUND);
		}
	}
	CHECK_EQ(n, md->count);
	CHECK_EQ(cmap_len(md->m), md->count);
	check_validate(md);
	check_iter(md);
}

/* Capacity for a variable-length copy-out: usually roomy, sometimes not. */
static size_t pick_cap(struct model *md)
{
	uint64_t r = rng_next(&md->rng);
	return r & 1 ? 64 : (size_t)((r >> 8) % 65);
}

static void op_set(struct model *md, uint32_t id)
{
	enum layout l = md->c->layout;
	unsigned char kb[64], vb[64], ob[64], want[64];
	size_t kl = key_of(l, id, kb);
	uint64_t v = ++md->next_ver;
	size_t vl = val_of(l, id, v, vb);
	bool with_old = rng_next(&md->rng) % 4 == 0;
	size_t cap = var_vals(l) ? pick_cap(md) : 0, olen = cap;
	int rc = cmap_set(md->m, kb, kl, vb, vl, with_old ? ob : NULL,
			  with_old && var_vals(l) ? &olen : NULL);
	if (!md->has[id]) {
		CHECK_EQ(rc, CMAP_OK);
		md->has[id] = 1;
		md->ver[id] = v;
		md->count++;
		return;
	}
	size_t wl = val_of(l, id, md->ver[id], want);
	if (with_old && var_vals(l) && wl > cap) {
		/* Too small for the old value: nothing changed. */
		CHECK_EQ(rc, CMAP_ERANGE);
		CHECK_EQ(olen, wl);
		md->stat_erange++;
		size_t len = sizeof vb;
		CHECK_EQ(cmap_get(md->m, kb, kl, vb, &len), CMAP_OK);
		CHECK_EQ(len, wl);
		CHECK(memcmp(vb, want, wl) == 0);
		return;
	}
	CHECK_EQ(rc, CMAP_REPLACED);
	if (with_old) {
		if (var_vals(l))
			CHECK_EQ(olen, wl);
		CHECK(memcmp(ob, want, wl) == 0);
	}
	md->ver[id] = v;
}

struct visit {
	int calls;
	size_t klen, vlen;
	unsigned char key[64], val[64];
};

static void visit_fn(const void *k, size_t kl, const void *v, size_t vl,
		     void *ctx)
{
	struct visit *s = ctx;
	s->calls++;
	CHECK(kl <= sizeof s->key && vl <= sizeof s->val);
	s->klen = kl;
	s->vlen = vl;
	memcpy(s->key, k, kl);
	if (vl)
		memcpy(s->val, v, vl);
}

static void op_get(struct model *md, uint32_t id)
{
	enum layout l = md->c->layout;
	unsigned char kb[64], vb[64], want[64];
	size_t kl = key_of(l, id, kb);
	size_t wl = md->has[id] ? val_of(l, id, md->ver[id], want) : 0;
	uint64_t r = rng_next(&md->rng);
	if (r % 8 == 0) {
		struct visit s;
		s.calls = 0;
		int rc = cmap_get_with(md->m, kb, kl, visit_fn, &s);
		if (!md->has[id]) {
			CHECK_EQ(rc, CMAP_NOT_FOUND);
			CHECK_EQ(s.calls, 0);
			return;
		}
		CHECK_EQ(rc, CMAP_OK);
		CHECK_EQ(s.calls, 1);
		CHECK_EQ(s.klen, kl);
		CHECK(memcmp(s.key, kb, kl) == 0);
		CHECK_EQ(s.vlen, wl);
		CHECK(memcmp(s.val, want, wl) == 0);
		md->stat_found++;
		return;
	}
	size_t cap = var_vals(l) ? ((r >> 8) % 4 == 0 ? pick_cap(md) : 64) : 0;
	size_t len = cap;
	int rc = cmap_get(md->m, kb, kl, vb, var_vals(l) ? &len : NULL);
	if (!md->has[id]) {
		CHECK_EQ(rc, CMAP_NOT_FOUND);
		return;
	}
	if (var_vals(l) && wl > cap) {
		CHECK_EQ(rc, CMAP_ERANGE);
		CHECK_EQ(len, wl);
		md->stat_erange++;
		return;
	}
	CHECK_EQ(rc, CMAP_OK);
	if (var_vals(l))
		CHECK_EQ(len, wl);
	CHECK(memcmp(vb, want, wl) == 0);
	md->stat_found++;
}

static void op_remove(struct model *md, uint32_t id)
{
	enum layout l = md->c->layout;
	unsigned char kb[64], ob[64], want[64];
	size_t kl = key_of(l, id, kb);
	bool with_old = rng_next(&md->rng) % 3 == 0;
	size_t cap = var_vals(l) ? pick_cap(md) : 0, olen = cap;
	int rc = cmap_remove(md->m, kb, kl, with_old ? ob : NULL,
			     with_old && var_vals(l) ? &olen : NULL);
	if (!md->has[id]) {
		CHECK_EQ(rc, CMAP_NOT_FOUND);
		return;
	}
	size_t wl = val_of(l, id, md->ver[id], want);
	if (with_old && var_vals(l) && wl > cap) {
		CHECK_EQ(rc, CMAP_ERANGE);
		CHECK_EQ(olen, wl);
		md->stat_erange++;
		CHECK_EQ(cmap_get(md->m, kb, kl, NULL, NULL), CMAP_OK);
		return;
	}
	CHECK_EQ(rc, CMAP_OK);
	if (with_old) {
		if (var_vals(l))
			CHECK_EQ(olen, wl);
		CHECK(memcmp(ob, want, wl) == 0);
	}
	md->has[id] = 0;
	md->count--;
}

/* ---- read-modify-write -------------------------------------------------- */

/* The current value of a present id, into want; its length. */
static size_t cur_val(struct model *md, uint32_t id, unsigned char *want)
{
	return val_of(md->c->layout, id, md->ver[id], want);
}

/* The map's value for id is the model's (or absent), and len is right. */
static void check_key(struct model *md, uint32_t id)
{
	enum layout l = md->c->layout;
	unsigned char kb[64], vb[64], want[64];
	size_t kl = key_of(l, id, kb), len = sizeof vb;
	int rc = cmap_get(md->m, kb, kl, vb, var_vals(l) ? &len : NULL);
	if (!md->has[id]) {
		CHECK_EQ(rc, CMAP_NOT_FOUND);
	} else {
		CHECK_EQ(rc, CMAP_OK);
		size_t wl = cur_val(md, id, want);
		if (var_vals(l))
			CHECK_EQ(len, wl);
		CHECK(memcmp(vb, want, wl) == 0);
	}
	CHECK_EQ(cmap_len(md->m), md->count);
}

/* An expected value for a CAS-like operation on id: usually the current
 * one (when present), else another version's.  Variable-length values of
 * two versions can still be equal (both empty, say): *eq says whether the
 * bytes equal the current value. */
static size_t pick_expected(struct model *md, uint32_t id, unsigned char *exp,
			    bool *eq)
{
	enum layout l = md->c->layout;
	uint64_t r = rng_next(&md->rng);
	size_t el;
	if (md->has[id] && r % 2 == 0)
		el = cur_val(md, id, exp);
	else
		el = val_of(l, id, md->next_ver + 1 + (r >> 8) % 1000, exp);
	*eq = false;
	if (md->has[id]) {
		unsigned char want[64];
		size_t wl = cur_val(md, id, want);
		*eq = wl == el && memcmp(want, exp, wl) == 0;
	}
	return el;
}

#define SENTINEL 0x5c

static void op_insert(struct model *md, uint32_t id)
{
	enum layout l = md->c->layout;
	unsigned char kb[64], vb[64], cb[64], want[64];
	size_t kl = key_of(l, id, kb);
	uint64_t v = ++md->next_ver;
	size_t vl = val_of(l, id, v, vb);
	bool with_cur = rng_next(&md->rng) % 2 == 0;
	size_t cap = var_vals(l) ? pick_cap(md) : 0, clen = cap;
	memset(cb, SENTINEL, sizeof cb);
	int rc = cmap_insert(md->m, kb, kl, vb, vl, with_cur ? cb : NULL,
			     with_cur && var_vals(l) ? &clen : NULL);
	md->stat_rmw++;
	if (!md->has[id]) {
		CHECK_EQ(rc, CMAP_OK);
		CHECK_EQ(clen, cap); /* nothing copied out */
		CHECK_EQ(cb[0], SENTINEL);
		md->has[id] = 1;
		md->ver[id] = v;
		md->count++;
		return;
	}
	size_t wl = cur_val(md, id, want);
	if (with_cur && var_vals(l) && wl > cap) {
		CHECK_EQ(rc, CMAP_ERANGE);
		CHECK_EQ(clen, wl);
		md->stat_erange++;
	} else {
		CHECK_EQ(rc, CMAP_EXISTS);
		if (with_cur) {
			if (var_vals(l))
				CHECK_EQ(clen, wl);
			CHECK(memcmp(cb, want, wl) == 0);
		}
	}
	check_key(md, id); /* unchanged either way */
}

static void op_replace(struct model *md, uint32_t id)
{
	enum layout l = md->c->layout;
	unsigned char kb[64], vb[64], ob[64], want[64];
	size_t kl = key_of(l, id, kb);
	uint64_t v = ++md->next_ver;
	size_t vl = val_of(l, id, v, vb);
	bool with_old = rng_next(&md->rng) % 2 == 0;
	size_t cap = var_vals(l) ? pick_cap(md) : 0, olen = cap;
	memset(ob, SENTINEL, sizeof ob);
	int rc = cmap_replace(md->m, kb, kl, vb, vl, with_old ? ob : NULL,
			      with_old && var_vals(l) ? &olen : NULL);
	md->stat_rmw++;
	if (!md->has[id]) {
		CHECK_EQ(rc, CMAP_NOT_FOUND);
		CHECK_EQ(olen, cap);
		CHECK_EQ(ob[0], SENTINEL);
		check_key(md, id);
		return;
	}
	size_t wl = cur_val(md, id, want);
	if (with_old && var_vals(l) && wl > cap) {
		CHECK_EQ(rc, CMAP_ERANGE);
		CHECK_EQ(olen, wl);
		md->stat_erange++;
		check_key(md, id);
		return;
	}
	CHECK_EQ(rc, CMAP_REPLACED);
	if (with_old) {
		if (var_vals(l))
			CHECK_EQ(olen, wl);
		CHECK(memcmp(ob, want, wl) == 0);
	}
	md->ver[id] = v;
	check_key(md, id);
}

static void op_cas(struct model *md, uint32_t id)
{
	enum layout l = md->c->layout;
	unsigned char kb[64], eb[64], db[64], cb[64], want[64];
	size_t kl = key_of(l, id, kb);
	bool eq;
	size_t el = pick_expected(md, id, eb, &eq);
	uint64_t v = ++md->next_ver;
	size_t dl = val_of(l, id, v, db);
	bool with_cur = rng_next(&md->rng) % 2 == 0;
	size_t cap = var_vals(l) ? pick_cap(md) : 0, clen = cap;
	memset(cb, SENTINEL, sizeof cb);
	int rc = cmap_cas(md->m, kb, kl, eb, el, db, dl, with_cur ? cb : NULL,
			  with_cur && var_vals(l) ? &clen : NULL);
	md->stat_rmw++;
	if (!md->has[id]) {
		CHECK_EQ(rc, CMAP_NOT_FOUND);
		CHECK_EQ(clen, cap);
		CHECK_EQ(cb[0], SENTINEL);
	} else if (eq) {
		/* The old value goes to the destructor, not to cur. */
		CHECK_EQ(rc, CMAP_REPLACED);
		CHECK_EQ(clen, cap);
		CHECK_EQ(cb[0], SENTINEL);
		md->ver[id] = v;
		md->stat_cas_ok++;
	} else {
		size_t wl = cur_val(md, id, want);
		if (with_cur && var_vals(l) && wl > cap) {
			CHECK_EQ(rc, CMAP_ERANGE);
			CHECK_EQ(clen, wl);
			md->stat_erange++;
		} else {
			CHECK_EQ(rc, CMAP_MISMATCH);
			if (with_cur) {
				if (var_vals(l))
					CHECK_EQ(clen, wl);
				CHECK(memcmp(cb, want, wl) == 0);
			}
		}
	}
	check_key(md, id);
}

static void op_remove_if(struct model *md, uint32_t id)
{
	enum layout l = md->c->layout;
	unsigned char kb[64], eb[64];
	size_t kl = key_of(l, id, kb);
	bool eq;
	size_t el = pick_expected(md, id, eb, &eq);
	int rc = cmap_remove_if(md->m, kb, kl, eb, el);
	md->stat_rmw++;
	if (!md->has[id]) {
		CHECK_EQ(rc, CMAP_NOT_FOUND);
	} else if (eq) {
		CHECK_EQ(rc, CMAP_OK);
		md->has[id] = 0;
		md->count--;
		md->stat_cas_ok++;
	} else {
		CHECK_EQ(rc, CMAP_MISMATCH);
	}
	check_key(md, id);
}

/* What a compute function saw, and what it answers. */
struct comp {
	int calls;
	int act;
	bool from_cur; /* SET: store the current value itself (a pointer
			  into cur) */
	bool saw;      /* cur was non-NULL */
	size_t klen, clen, vlen;
	unsigned char key[64], cur[64], val[64];
};

static int compute_fn(const void *key, size_t klen, const void *cur,
		      size_t cur_len, const void **val, size_t *vlen, void *ctx)
{
	struct comp *c = ctx;
	c->calls++;
	CHECK(klen <= sizeof c->key && cur_len <= sizeof c->cur);
	CHECK(*val == NULL && *vlen == 0);
	c->klen = klen;
	memcpy(c->key, key, klen);
	c->saw = cur != NULL;
	c->clen = cur_len;
	if (cur_len)
		memcpy(c->cur, cur, cur_len);
	if (c->act == CMAP_COMPUTE_SET) {
		if (c->from_cur && cur) {
			*val = cur;
			*vlen = cur_len;
		} else {
			*val = c->val;
			*vlen = c->vlen;
		}
	}
	return c->act;
}

/* cmap_compute with the given action on id; checks what fn saw, the
 * status and the result. */
static void op_compute(struct model *md, uint32_t id, int act)
{
	enum layout l = md->c->layout;
	unsigned char kb[64], want[64];
	size_t kl = key_of(l, id, kb);
	struct comp c;
	memset(&c, 0, sizeof c);
	c.act = act;
	uint64_t v = ++md->next_ver;
	c.vlen = val_of(l, id, v, c.val);
	c.from_cur = rng_next(&md->rng) % 4 == 0;
	int rc = cmap_compute(md->m, kb, kl, compute_fn, &c);
	md->stat_compute++;
	CHECK_EQ(c.calls, 1); /* no concurrent writer: fn runs once */
	CHECK_EQ(c.klen, kl);
	CHECK(memcmp(c.key, kb, kl) == 0);
	bool had = md->has[id];
	if (had) {
		size_t wl = cur_val(md, id, want);
		CHECK(c.saw);
		CHECK_EQ(c.clen, wl);
		CHECK(memcmp(c.cur, want, wl) == 0);
	} else {
		CHECK(!c.saw);
		CHECK_EQ(c.clen, 0);
	}
	switch (act) {
	case CMAP_COMPUTE_KEEP:
		CHECK_EQ(rc, CMAP_UNCHANGED);
		break;
	case CMAP_COMPUTE_SET:
		CHECK_EQ(rc, had ? CMAP_REPLACED : CMAP_OK);
		if (!had) {
			md->has[id] = 1;
			md->count++;
			md->ver[id] = v;
		} else if (!c.from_cur) {
			md->ver[id] = v;
		} /* else: the same bytes stored again */
		break;
	case CMAP_COMPUTE_REMOVE:
		CHECK_EQ(rc, had ? CMAP_REMOVED : CMAP_UNCHANGED);
		if (had) {
			md->has[id] = 0;
			md->count--;
		}
		break;
	default:
		CHECK_EQ(rc, CMAP_ABORTED);
	}
	check_key(md, id);
}

/* One random operation with weights (percent) for writes (set, insert,
 * replace, cas, compute SET) and removes (remove, remove_if, compute
 * REMOVE); the rest are reads (get, get_with, compute KEEP or ABORT). */
static void step(struct model *md, unsigned pset, unsigned prem)
{
	uint64_t r = rng_next(&md->rng);
	uint32_t id = (uint32_t)((r >> 32) % md->space);
	unsigned p = (unsigned)(r % 100);
	unsigned k = (unsigned)((r >> 8) % 8);
	if (p < pset) {
		if (k < 3)
			op_set(md, id);
		else if (k < 4)
			op_insert(md, id);
		else if (k < 5)
			op_replace(md, id);
		else if (k < 7)
			op_cas(md, id);
		else
			op_compute(md, id, CMAP_COMPUTE_SET);
	} else if (p < pset + prem) {
		if (k < 4)
			op_remove(md, id);
		else if (k < 6)
			op_remove_if(md, id);
		else
			op_compute(md, id, CMAP_COMPUTE_REMOVE);
	} else {
		if (k < 6)
			op_get(md, id);
		else
			op_compute(md, id,
				   k == 6 ? CMAP_COMPUTE_KEEP
					  : CMAP_COMPUTE_ABORT);
	}
	CHECK_EQ(cmap_len(md->m), md->count);
	if (++md->ops % VALIDATE_EVERY == 0)
		check_validate(md);
}

/* Remove every remaining key, in an order unrelated to the ids: stepping
 * by a prime larger than the space visits every id once. */
static void remove_all(struct model *md)
{
	const uint64_t stride = 1000003;
	uint32_t n = md->space, id = 0;
	CHECK(n < stride);
	for (uint32_t c = 0; c < n; c++) {
		id = (uint32_t)((id + stride) % n);
		if (md->has[id])
			op_remove(md, id);
		if (md->has[id]) { /* ERANGE: again without copy-out */
			unsigned char kb[64];
			size_t kl = key_of(md->c->layout, id, kb);
			CHECK_EQ(cmap_remove(md->m, kb, kl, NULL, NULL),
				 CMAP_OK);
			md->has[id] = 0;
			md->count--;
		}
		CHECK_EQ(cmap_len(md->m), md->count);
		if (++md->ops % VALIDATE_EVERY == 0)
			check_validate(md);
	}
	CHECK_EQ(md->count, 0);
}

static void run_config(const struct config *c, uint64_t seed)
{
	cmap_config_t cfg = CMAP_CONFIG_INIT;
	bool var = c->layout == L_VAR;
	cfg.key_size = var ? 0 : c->layout == L_WIDE ? 16 : 4;
	cfg.val_size = var ? 0 : c->layout == L_WIDE ? 24 : 8;
	cfg.hash = c->hash;
	cfg.flags = CMAP_FIXED_SEED;
	cfg.seed = seed ^ 0x5eed;

	uint32_t maxspace = 0;
	for (int r = 0; r < c->rounds; r++)
		if (c->space[r] > maxspace)
			maxspace = c->space[r];
	struct model md;
	memset(&md, 0, sizeof md);
	md.c = c;
	md.rng = seed;
	md.has = calloc(maxspace, 1);
	md.ver = calloc(maxspace, sizeof *md.ver);
	CHECK(md.has && md.ver);
	CHECK_EQ(cmap_new(&md.m, &cfg), CMAP_OK);
	check_all(&md);

	long total = 0;
	size_t peak = 0;
	unsigned max_depth = 0;
	for (int r = 0; r < c->rounds; r++) {
		long ops = (long)((double)scaled(c->ops) * c->share[r]);
		if (ops < 10)
			ops = 10;
		md.space = c->space[r];
		/* Phase 1: insert-heavy. */
		for (long i = 0; i < ops * 4 / 10; i++)
			step(&md, 70, 10);
		check_all(&md);
		cmap_stats_t st;
		CHECK_EQ(cmap_validate(md.m, &st), CMAP_OK);
		if (st.max_depth > max_depth)
			max_depth = st.max_depth;
		if (md.count > peak)
			peak = md.count;
		/* Phase 2: mixed. */
		for (long i = 0; i < ops * 35 / 100; i++)
			step(&md, 35, 30);
		check_all(&md);
		/* Phase 3: remove-heavy, then remove everything. */
		for (long i = 0; i < ops / 4; i++)
			step(&md, 10, 70);
		check_all(&md);
		/* Retain about 3 in 4, then empty the map: one key at a
		 * time, or by cmap_clear in every other round. */
		check_retain(&md, 4);
		check_all(&md);
		if (r % 2) {
			CHECK_EQ(cmap_clear(md.m), (long)md.count);
			memset(md.has, 0, md.space);
			md.count = 0;
			CHECK_EQ(cmap_clear(md.m), 0);
		} else {
			remove_all(&md);
		}
		check_all(&md);
		total += ops;
	}
	CHECK(md.stat_found > 0);
	CHECK(md.stat_rmw > 0 && md.stat_cas_ok > 0 && md.stat_compute > 0);
	if (var)
		CHECK(md.stat_erange > 0);
	printf("  %-34s %8ld ops (%ld rmw, %ld compute), peak %7zu entries, "
	       "depth %u\n",
	       c->name, total, md.stat_rmw, md.stat_compute, peak, max_depth);
	cmap_free(md.m);
	free(md.has);
	free(md.ver);
}

int main(void)
{
	/* name, layout, hash (NULL: XXH3), ops, rounds, key space and share of
	 * the ops per round */
	// clang-format off
	static const struct config configs[] = {
	    {"u32 -> u64, identity hash", L_U32, cmap_hash_u32, 1000000, 3, {500, 20000, 200000}, {0.1, 0.3, 0.6}},
	    {"u32 << 11 -> u64, identity hash", L_U32_SHIFT, cmap_hash_u32, 1000000, 2, {2000, 100000, 0}, {0.3, 0.7, 0}},
	    {"u32 -> u64, xxh3", L_U32, NULL, 1000000, 3, {500, 20000, 200000}, {0.1, 0.3, 0.6}},
	    {"16 B -> 24 B, xxh3", L_WIDE, NULL, 1000000, 3, {1000, 30000, 150000}, {0.1, 0.3, 0.6}},
	    {"var -> var, xxh3", L_VAR, NULL, 1000000, 3, {300, 20000, 150000}, {0.1, 0.3, 0.6}},
	    {"u32 -> u64, constant hash", L_U32, const_hash, 1000000, 2, {40, 300, 0}, {0.3, 0.7, 0}},
	    {"var -> var, constant hash", L_VAR, const_hash, 1000000, 2, {40, 300, 0}, {0.3, 0.7, 0}},
	};
	// clang-format on
	for (size_t i = 0; i < sizeof configs / sizeof configs[0]; i++)
		run_config(&configs[i], 1000 + i);
	printf("test_model: ok\n");
	return 0;
}
