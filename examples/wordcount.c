/*
 * Word count: T threads count the words of one text into one map with
 * cmap_compute (an atomic read-modify-write of each word's counter: no
 * lock, no lost increment), then cmap_foreach walks the map for the total
 * and the most frequent words.  The counts are checked against a
 * sequential count (sorting the words); the example exits non-zero if
 * they differ.
 *
 *   build/release/examples/wordcount [threads] [file]
 *
 * Without a file the text is generated: 400,000 words drawn with a Zipf-like
 * law from a vocabulary of made-up words, the same on every run.
 */
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmap.h"

#define MAX_THREADS 64
#define TOP	    10

static cmap_t *counts;

/* ---- the text ------------------------------------------------------------ */

static uint64_t rng(uint64_t *s) /* splitmix64 */
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Word i of the vocabulary: syllables from the digits of i. */
static size_t make_word(unsigned i, char *w)
{
	static const char *syl[16] = {"ka", "lo", "mi", "nu", "pe", "ra",
				      "si", "to", "ve", "zu", "an", "el",
				      "or", "ul", "ys", "ie"};
	size_t n = 0;
	do {
		const char *s = syl[i % 16];
		w[n++] = s[0];
		w[n++] = s[1];
		i /= 16;
	} while (i);
	return n;
}

static char *generate(size_t nwords, size_t *len)
{
	enum { VOCAB = 5000 };
	static double cdf[VOCAB];
	double total = 0;
	for (unsigned i = 0; i < VOCAB; i++)
		cdf[i] = total += 1.0 / (i + 1); /* Zipf, s = 1 */
	char *text = malloc(nwords * 16);
	if (!text)
		return NULL;
	uint64_t s = 42;
	size_t n = 0;
	for (size_t w = 0; w < nwords; w++) {
		double u = (double)(rng(&s) >> 11) / 9007199254740992.0 * total;
		unsigned lo = 0, hi = VOCAB - 1;
		while (lo < hi) { /* the first i with cdf[i] > u */
			unsigned mid = (lo + hi) / 2;
			if (cdf[mid] > u)
				hi = mid;
			else
				lo = mid + 1;
		}
		n += make_word(lo, text + n);
		text[n++] = w % 12 == 11 ? '\n' : ' ';
	}
	*len = n;
	return text;
}

static char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	size_t cap = 1 << 16, n = 0;
	char *buf = malloc(cap);
	while (buf) {
		n += fread(buf + n, 1, cap - n, f);
		if (n < cap)
			break;
		char *bigger = realloc(buf, cap *= 2);
		if (!bigger)
			free(buf);
		buf = bigger;
	}
	fclose(f);
	*len = n;
	return buf;
}

/* Words are runs of letters and digits; case is kept. */
static int is_word(char c)
{
	return isalnum((unsigned char)c);
}

/* ---- counting with cmap_compute ------------------------------------------ */

/* The counter update: absent -> 1, else + 1.  The new value lives in ctx
 * (cmap_compute copies it before returning); fn may run again if another
 * thread updated the word meanwhile, and it only overwrites ctx. */
static int add_one(const void *key, size_t klen, const void *cur,
		   size_t cur_len, const void **val, size_t *vlen, void *ctx)
{
	uint64_t *n = ctx;
	(void)key;
	(void)klen;
	(void)cur_len;
	*n = 1;
	if (cur) {
		memcpy(n, cur, sizeof *n);
		++*n;
	}
	*val = n;
	*vlen = sizeof *n;
	return CMAP_COMPUTE_SET;
}

struct part {
	const char *p, *end;
	uint64_t words;
};

static void *counter(void *arg)
{
	struct part *pt = arg;
	const char *p = pt->p;
	while (p < pt->end) {
		while (p < pt->end && !is_word(*p))
			p++;
		const char *w = p;
		while (p < pt->end && is_word(*p))
			p++;
		if (p == w)
			break;
		uint64_t n;
		int rc = cmap_compute(counts, w, (size_t)(p - w), add_one, &n);
		if (rc != CMAP_OK && rc != CMAP_REPLACED) {
			fprintf(stderr, "cmap_compute: %s\n",
				cmap_strerror(rc));
			exit(1);
		}
		pt->words++;
	}
	return NULL;
}

/* ---- the sequential count -------------------------------------------------
 */

struct word {
	const char *p;
	size_t len;
};

static int word_cmp(const void *a, const void *b)
{
	const struct word *x = a, *y = b;
	size_t l = x->len < y->len ? x->len : y->len;
	int c = memcmp(x->p, y->p, l);
	return c ? c : (x->len > y->len) - (x->len < y->len);
}

/* ---- the walk
 * ---------------------------------------------------------------- */

struct top {
	uint64_t total, distinct;
	struct {
		char w[64];
		size_t len;
		uint64_t n;
	} best[TOP];
};

/* Does word a (count na) rank before word b? */
static int before(uint64_t na, const void *a, size_t la, uint64_t nb,
		  const void *b, size_t lb)
{
	if (na != nb)
		return na > nb;
	struct word x = {a, la}, y = {b, lb};
	return word_cmp(&x, &y) < 0;
}

static int tally(const void *key, size_t klen, const void *val, size_t vlen,
		 void *ctx)
{
	struct top *t = ctx;
	uint64_t n;
	if (vlen != sizeof n)
		return 1; /* not ours: stop */
	memcpy(&n, val, sizeof n);
	t->total += n;
	t->distinct++;
	/* insertion into the top list (count descending, then word) */
	int i = TOP;
	while (i > 0 && before(n, key, klen, t->best[i - 1].n, t->best[i - 1].w,
			       t->best[i - 1].len))
		i--;
	if (i == TOP)
		return 0;
	memmove(&t->best[i + 1], &t->best[i],
		(TOP - 1 - i) * sizeof t->best[0]);
	t->best[i].len =
	    klen < sizeof t->best[i].w ? klen : sizeof t->best[i].w;
	memcpy(t->best[i].w, key, t->best[i].len);
	t->best[i].n = n;
	return 0;
}

int main(int argc, char **argv)
{
	unsigned nthreads = argc > 1 ? (unsigned)atoi(argv[1]) : 4;
	if (nthreads < 1 || nthreads > MAX_THREADS)
		nthreads = 4;
	size_t len = 0;
	char *text =
	    argc > 2 ? read_file(argv[2], &len) : generate(400000, &len);
	if (!text) {
		perror(argc > 2 ? argv[2] : "malloc");
		return 1;
	}

	/* variable-length keys (the words), 8-byte counters */
	cmap_config_t cfg = CMAP_CONFIG_INIT;
	cfg.val_size = sizeof(uint64_t);
	int rc = cmap_new(&counts, &cfg);
	if (rc != CMAP_OK) {
		fprintf(stderr, "cmap_new: %s\n", cmap_strerror(rc));
		return 1;
	}

	/* T parts, cut at word boundaries */
	struct part parts[MAX_THREADS];
	pthread_t th[MAX_THREADS];
	const char *p = text, *end = text + len;
	for (unsigned i = 0; i < nthreads; i++) {
		const char *e =
		    i + 1 == nthreads ? end : text + len / nthreads * (i + 1);
		if (e < p)
			e = p;
		while (e < end && is_word(*e))
			e++;
		parts[i] = (struct part){p, e, 0};
		p = e;
	}
	for (unsigned i = 0; i < nthreads; i++)
		if (pthread_create(&th[i], NULL, counter, &parts[i])) {
			fprintf(stderr, "pthread_create failed\n");
			return 1;
		}
	uint64_t words = 0;
	for (unsigned i = 0; i < nthreads; i++) {
		pthread_join(th[i], NULL);
		words += parts[i].words;
	}

	/* the sequential count: sort the words, count the runs */
	struct word *all = malloc((words + 1) * sizeof *all);
	size_t nw = 0;
	if (!all)
		return 1;
	for (p = text; p < end;) {
		while (p < end && !is_word(*p))
			p++;
		const char *w = p;
		while (p < end && is_word(*p))
			p++;
		if (p > w && nw <= words)
			all[nw++] = (struct word){w, (size_t)(p - w)};
	}
	qsort(all, nw, sizeof *all, word_cmp);
	int bad = nw != words;
	size_t distinct = 0;
	for (size_t i = 0; i < nw && bad < 10;) {
		size_t j = i + 1;
		while (j < nw && word_cmp(&all[i], &all[j]) == 0)
			j++;
		uint64_t n = 0;
		rc = cmap_get(counts, all[i].p, all[i].len, &n, NULL);
		if (rc != CMAP_OK || n != j - i) {
			fprintf(stderr,
				"wordcount: '%.*s' counted %llu, "
				"sequentially %zu (%s)\n",
				(int)all[i].len, all[i].p,
				(unsigned long long)n, j - i,
				cmap_strerror(rc));
			bad++;
		}
		distinct++;
		i = j;
	}

	/* the walk: total, distinct words, the most frequent */
	struct top t;
	memset(&t, 0, sizeof t);
	long visited = cmap_foreach(counts, tally, &t);
	if (visited < 0 || (size_t)visited != distinct ||
	    t.distinct != distinct || t.total != words ||
	    cmap_len(counts) != distinct) {
		fprintf(stderr,
			"wordcount: walk visited %ld words (%llu "
			"occurrences), %zu distinct, %llu words\n",
			visited, (unsigned long long)t.total, distinct,
			(unsigned long long)words);
		bad++;
	}
	if (bad) {
		fprintf(stderr, "wordcount: FAILED\n");
		return 1;
	}
	printf("%u threads counted %llu words, %zu distinct; agrees with "
	       "the sequential count\n",
	       nthreads, (unsigned long long)words, distinct);
	for (int i = 0; i < TOP && t.best[i].n; i++)
		printf("%8llu  %.*s\n", (unsigned long long)t.best[i].n,
		       (int)t.best[i].len, t.best[i].w);
	free(all);
	free(text);
	cmap_free(counts);
	return 0;
}
