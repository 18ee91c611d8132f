/*
 * cmap-perf: the Rust crate cmap's `perf` benchmark, in C.
 *
 * Phase "load": one thread inserts --loads random u32 keys (key = random
 * mod N) with random u64 values.  Phase "run": --threads threads start
 * behind one barrier and each performs its own random mix of --gets, --sets
 * and --rems operations (counts per thread) on keys drawn the same way.
 * Keys come from a seeded RNG as the run goes: no key arrays, so the
 * process's RSS is the map's.
 *
 * Output: per phase ops, seconds, total and per-thread Mops/s; the map's
 * len, peak RSS and bytes per entry; with --validate the map's statistics
 * (exit 1 if validation fails); with --json a final JSON line.
 *
 * --map NAME runs the same workload on a peer (bench/maps.h; --list shows
 * the ones compiled in).  After the load every map passes a guard: its len
 * equals the number of distinct keys inserted and a sample of gets returns
 * the last value written, or the run fails.
 *
 * --workloads also runs the optional operations of bench/maps.h, on every
 * map that has them (skipped with a message on the others; --list shows
 * which): counter and counter-zipf (atomic increments: cmap_compute,
 * libcuckoo upsert, a TBB accessor, liburcu's lookup + replace retry loop,
 * the striped table's write lock), insert (insert if absent, half of the
 * keys loaded ones) and iterate / iterate-w (full walks, alone and with a
 * concurrent writer).  --validate checks their results on every map.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "cmap.h"
#include "maps.h"

#define DEFAULT_SEED 0x5eed5eedull
#define MAX_THREADS  1024
#define BATCH_MAX    256

#define MAX_PHASES 16

/* What a run phase does: the classic random mix of gets, sets and
 * removes, or one of the workloads of the optional operations. */
enum kind { K_MIX, K_COUNTER, K_ZIPF, K_INSERT, K_ITER, K_ITER_W };

struct opts {
	uint64_t loads, gets, sets, rems, seed, ops;
	enum kind kind;
	const char *workloads[MAX_PHASES];
	unsigned nworkloads;
	unsigned threads, batch;
	bool cow; /* --copy-on-write: CMAP_COPY_ON_WRITE (an A/B of the
		     in-place values in one binary) */
	unsigned tlist[16], ntl; /* --threads 1,2,4: each, with --workloads */
	bool contention, validate, json;
	bool progress; /* stderr is a terminal and not --no-progress */
	const char *hasher, *map;
	cmap_hash_fn hash;
};

struct worker {
	pthread_t tid;
	unsigned idx;
	uint64_t ops, hits, acc;
	uint64_t todo;	   /* operations it will do (the progress total) */
	uint64_t news;	   /* counter, insert: keys it inserted */
	uint64_t low, sum; /* iterate: keys < --loads visited, value sum;
			      insert: keys < --loads inserted */
	double t0, t1;	   /* this worker's start and end */
	int error;
	/* Operations done so far, for the progress line: stored every
	 * QUIESCE_EVERY iterations and, whatever happened, as the full count
	 * at the end, which tells the polling main thread the worker is done.
	 * Relaxed: a display value and a hint to stop polling; the join is
	 * what orders the results.  A line of its own: it is stored every
	 * QUIESCE_EVERY iterations while the neighbour worker runs. */
	_Alignas(64) _Atomic uint64_t done;
};

/* The load (on the main thread) looks at the clock for the progress line
 * every this many inserts. */
enum { PROGRESS_EVERY = 1 << 16 };

static struct opts O;
static cmap_t *M;		  /* the cmap under test (--map cmap) */
static const struct bench_map *B; /* the map under test */
static void *BM;		  /* its instance */

/* ---- cmap through the common interface -------------------------------------
 */

static uint64_t hash_mix(const void *key, size_t len, uint64_t seed)
{
	uint32_t k;
	(void)len;
	(void)seed;
	memcpy(&k, key, 4);
	return bench_mix64(k);
}

static void *c_create(uint64_t n)
{
	(void)n;
	cmap_config_t cfg = CMAP_CONFIG_INIT;
	cfg.key_size = 4;
	cfg.val_size = 8;
	cfg.hash = O.hash;
	cfg.flags = O.cow ? CMAP_COPY_ON_WRITE : 0;
	int rc = cmap_new(&M, &cfg);
	return rc == CMAP_OK ? M : NULL;
}

static void c_destroy(void *m)
{
	cmap_free(m);
}

static int c_set(void *m, uint32_t k, uint64_t v)
{
	int rc = cmap_set(m, &k, 4, &v, 8, NULL, NULL);
	return rc < 0 ? rc : rc == CMAP_OK;
}

static int c_get(void *m, uint32_t k, uint64_t *v)
{
	return cmap_get(m, &k, 4, v, NULL) == CMAP_OK;
}

static int c_remove(void *m, uint32_t k)
{
	int rc = cmap_remove(m, &k, 4, NULL, NULL);
	return rc < 0 ? rc : rc == CMAP_OK;
}

static size_t c_len(void *m)
{
	return cmap_len(m);
}

/* counter: cmap_compute with a function that adds d (0 when absent).  It
 * may run more than once (when another writer changed the value between
 * its run and the CAS); each run overwrites out. */
struct incr_ctx {
	uint64_t d, out;
};

static int incr_fn(const void *key, size_t klen, const void *cur,
		   size_t cur_len, const void **val, size_t *vlen, void *ctx)
{
	struct incr_ctx *c = ctx;
	uint64_t v = 0;
	(void)key;
	(void)klen;
	if (cur_len == 8)
		memcpy(&v, cur, 8);
	c->out = v + c->d;
	*val = &c->out;
	*vlen = 8;
	return CMAP_COMPUTE_SET;
}

static inline int c_incr(void *m, uint32_t k, uint64_t d)
{
	struct incr_ctx c = {d, 0};
	int rc = cmap_compute(m, &k, 4, incr_fn, &c);
	return rc < 0 ? rc : rc == CMAP_OK;
}

static inline int c_insert(void *m, uint32_t k, uint64_t v)
{
	int rc = cmap_insert(m, &k, 4, &v, 8, NULL, NULL);
	return rc < 0 ? rc : rc == CMAP_OK;
}

struct c_walk {
	bench_visit_fn fn;
	void *ctx;
};

static int c_visit(const void *key, size_t klen, const void *val, size_t vlen,
		   void *ctx)
{
	struct c_walk *w = ctx;
	uint32_t k;
	uint64_t v;
	(void)klen;
	(void)vlen;
	memcpy(&k, key, 4);
	memcpy(&v, val, 8);
	w->fn(k, v, w->ctx);
	return 0;
}

static long c_iterate(void *m, bench_visit_fn fn, void *ctx)
{
	struct c_walk w = {fn, ctx};
	return cmap_foreach(m, c_visit, &w);
}

static const struct bench_map bench_map_cmap = {
    "cmap",   "cmap: lock-free hash trie, epoch reclamation (this project)",
    c_create, c_destroy,
    NULL,     NULL,
    NULL,     c_set,
    c_get,    c_remove,
    c_len,    c_incr,
    c_insert, c_iterate,
    1};

const struct bench_map *const bench_maps[] = {
    &bench_map_cmap,
#ifdef CMAP_BENCH_HAVE_URCU
    &bench_map_urcu_qsbr, &bench_map_urcu_memb,
#endif
#ifdef CMAP_BENCH_HAVE_CUCKOO
    &bench_map_cuckoo,
#endif
#ifdef CMAP_BENCH_HAVE_TBB
    &bench_map_tbb,
#endif
#ifdef CMAP_BENCH_HAVE_CDS
    &bench_map_feldman,
#endif
    &bench_map_striped,	  NULL};
static pthread_barrier_t start_line;

/* splitmix64: one multiply-xorshift chain per number, seeded per thread. */
#define GAMMA 0x9e3779b97f4a7c15ull
static inline uint64_t mix_at(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static inline uint64_t rnd(uint64_t *s)
{
	return mix_at(*s += GAMMA);
}

/* A key in [0, n) without a division: Lemire's multiply-shift reduction
 * of 32 random bits (uniform enough for n < 2^32). */
static inline uint32_t pick(uint64_t r, uint64_t n)
{
	return (uint32_t)(((r & 0xffffffffu) * n) >> 32);
}

/* The key the load inserted i-th (the load draws a key, then a value,
 * from one splitmix64 stream seeded with --seed): a key that exists
 * unless a later phase removed it, found without storing the keys. */
static inline uint32_t load_key(uint64_t i)
{
	return pick(mix_at(O.seed + (2 * i + 1) * GAMMA), O.loads);
}

/* Keys no load draws: in [--loads, 2^32). */
static inline uint32_t fresh_key(uint64_t r)
{
	return (uint32_t)(O.loads + pick(r, UINT32_MAX - O.loads));
}

/* counter-zipf: key ranks drawn from Zipf(ZIPF_THETA) over --loads ranks
 * (Gray et al.'s closed form, YCSB's ZipfianGenerator), tabulated at
 * 65,536 quantiles with linear interpolation in between, so that a draw
 * costs a table lookup and not a pow().  Rank r is key
 * pick(mix64(r), --loads): the hot keys are scattered over the map. */
#define ZIPF_THETA 0.99
enum { ZIPF_STEPS = 1 << 16 };
static uint32_t zipf_tab[ZIPF_STEPS + 1];

static void zipf_init(uint64_t n, double theta)
{
	/* zeta(n): exact for the first 100,000 terms, then the integral. */
	uint64_t exact = n < 100000 ? n : 100000;
	double zetan = 0;
	for (uint64_t i = 1; i <= exact; i++)
		zetan += pow((double)i, -theta);
	if (n > exact)
		zetan += (pow((double)n + 0.5, 1 - theta) -
			  pow((double)exact + 0.5, 1 - theta)) /
			 (1 - theta);
	double zeta2 = 1 + pow(0.5, theta), alpha = 1 / (1 - theta);
	double eta =
	    n > 2 ? (1 - pow(2.0 / (double)n, 1 - theta)) / (1 - zeta2 / zetan)
		  : 0;
	for (unsigned j = 0; j <= ZIPF_STEPS; j++) {
		double u = (double)j / ZIPF_STEPS, uz = u * zetan;
		double r = uz < 1 ? 0
			   : uz < zeta2
			       ? 1
			       : (double)n * pow(eta * u - eta + 1, alpha);
		zipf_tab[j] =
		    r >= (double)(n - 1) ? (uint32_t)(n - 1) : (uint32_t)r;
	}
}

static inline uint32_t zipf_key(uint64_t r)
{
	uint32_t u = (uint32_t)r, j = u >> 16, f = u & 0xffff;
	uint32_t lo = zipf_tab[j], hi = zipf_tab[j + 1];
	uint64_t rank = lo + (((uint64_t)(hi - lo) * f) >> 16);
	return pick(bench_mix64(rank), O.loads);
}

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static long peak_rss_bytes(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kb = -1;
	while (f && fgets(line, sizeof line, f))
		if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
			break;
	if (f)
		fclose(f);
	if (kb < 0) {
		struct rusage ru;
		getrusage(RUSAGE_SELF, &ru);
		kb = ru.ru_maxrss;
	}
	return kb * 1024;
}

static void die(const char *what, int rc)
{
	fprintf(stderr, "cmap-perf: %s: %s\n", what, cmap_strerror(rc));
	exit(1);
}

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: cmap-perf [options]\n"
	    "  --loads N       keys inserted by one thread first (default "
	    "1000000)\n"
	    "  --gets N        gets per thread in the run phase\n"
	    "  --sets N        sets per thread in the run phase\n"
	    "  --rems N        removes per thread in the run phase\n"
	    "  --threads T     threads in the run phase (default 1); with\n"
	    "                  --workloads a list (1,2,4) runs each in turn\n"
	    "  --contention    every set in the run phase uses key 0\n"
	    "  --workloads L   run these phases in turn on the loaded map:\n"
	    "                  get,set,mix90,mix50,contention (per thread: "
	    "--ops\n"
	    "                  gets; sets; 90/5/5; 50/25/25; sets of one\n"
	    "                  key); replaces --gets/--sets/--rems\n"
	    "                  counter, counter-zipf: --ops atomic increments\n"
	    "                  (cmap_compute) of keys drawn uniformly / from\n"
	    "                  Zipf 0.99, inserted at 1 when absent\n"
	    "                  insert: --ops inserts-if-absent, half of\n"
	    "                  them of loaded keys, half of new keys (these\n"
	    "                  are removed again after the phase, untimed)\n"
	    "                  iterate: each thread walks the whole map once\n"
	    "                  (ops = entries visited); iterate-w: the same\n"
	    "                  while one more thread inserts and removes\n"
	    "                  keys of its own\n"
	    "                  remove: --ops removes (about 63 %% of the\n"
	    "                  first ones find their key: the map shrinks,\n"
	    "                  so give it last)\n"
	    "  --ops N         operations per thread per workload (default "
	    "--loads)\n"
	    "  --batch B       do gets, sets and removes B at a time with "
	    "cmap_get_batch, cmap_set_batch and cmap_remove_batch "
	    "(default 0: one by one)\n"
	    "  --copy-on-write cmap with CMAP_COPY_ON_WRITE: every write "
	    "copies\n"
	    "                  its bucket (default: values change in place)\n"
	    "  --hasher H      cmap's hasher: identity | xxh3 | city | mix\n"
	    "                  (default identity; peers always use mix, the\n"
	    "                  murmur3 64-bit finaliser)\n"
	    "  --map NAME      the map to drive (default cmap; see --list)\n"
	    "  --list          list the maps compiled into this binary\n"
	    "  --seed S        RNG seed (default %#llx)\n"
	    "  --validate      check cmap's invariants after each phase, and\n"
	    "                  (every map) the new workloads' results: the\n"
	    "                  counter sum, the number of new keys, the "
	    "walk's\n"
	    "                  count\n"
	    "  --json          print a JSON summary as the last line\n"
	    "  --no-progress   no progress line on stderr (shown only when\n"
	    "                  stderr is a terminal)\n",
	    (unsigned long long)DEFAULT_SEED);
}

static uint64_t num(const char *opt, const char *s, uint64_t max)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);
	if (errno || end == s || *end || s[0] == '-' || v > max) {
		fprintf(stderr, "cmap-perf: bad value for %s: '%s'\n", opt, s);
		exit(2);
	}
	return v;
}

static void parse(int argc, char **argv)
{
	enum {
		LOADS = 256,
		GETS,
		SETS,
		REMS,
		THREADS,
		SEED,
		HASHER,
		BATCH,
		MAP,
		LIST,
		WORKLOADS,
		OPS,
		NO_PROGRESS,
		COW
	};
	static const struct option lo[] = {{"loads", 1, 0, LOADS},
					   {"gets", 1, 0, GETS},
					   {"sets", 1, 0, SETS},
					   {"rems", 1, 0, REMS},
					   {"threads", 1, 0, THREADS},
					   {"seed", 1, 0, SEED},
					   {"hasher", 1, 0, HASHER},
					   {"batch", 1, 0, BATCH},
					   {"contention", 0, 0, 'c'},
					   {"validate", 0, 0, 'v'},
					   {"json", 0, 0, 'j'},
					   {"help", 0, 0, 'h'},
					   {"map", 1, 0, MAP},
					   {"list", 0, 0, LIST},
					   {"workloads", 1, 0, WORKLOADS},
					   {"ops", 1, 0, OPS},
					   {"no-progress", 0, 0, NO_PROGRESS},
					   {"copy-on-write", 0, 0, COW},
					   {0, 0, 0, 0}};
	O = (struct opts){.loads = 1000000,
			  .threads = 1,
			  .seed = DEFAULT_SEED,
			  .hasher = "identity",
			  .map = "cmap",
			  .progress = isatty(STDERR_FILENO)};
	int c;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case LOADS:
			O.loads = num("--loads", optarg, UINT32_MAX);
			break;
		case GETS:
			O.gets = num("--gets", optarg, UINT32_MAX);
			break;
		case SETS:
			O.sets = num("--sets", optarg, UINT32_MAX);
			break;
		case REMS:
			O.rems = num("--rems", optarg, UINT32_MAX);
			break;
		case THREADS:
			O.ntl = 0;
			for (char *t = strtok(optarg, ","); t;
			     t = strtok(NULL, ",")) {
				if (O.ntl == 16) {
					fprintf(stderr, "cmap-perf: at most 16 "
							"thread counts\n");
					exit(2);
				}
				O.tlist[O.ntl++] =
				    (unsigned)num("--threads", t, MAX_THREADS);
			}
			O.threads = O.ntl ? O.tlist[0] : 0;
			break;
		case SEED:
			O.seed = num("--seed", optarg, UINT64_MAX);
			break;
		case BATCH:
			O.batch = (unsigned)num("--batch", optarg, BATCH_MAX);
			break;
		case HASHER:
			O.hasher = optarg;
			break;
		case MAP:
			O.map = optarg;
			break;
		case NO_PROGRESS:
			O.progress = false;
			break;
		case COW:
			O.cow = true;
			break;
		case OPS:
			O.ops = num("--ops", optarg, UINT32_MAX);
			break;
		case WORKLOADS:
			for (char *t = strtok(optarg, ","); t;
			     t = strtok(NULL, ",")) {
				static const char *const known[] = {
				    "get",	    "set",	  "mix90",
				    "mix50",	    "contention", "counter",
				    "counter-zipf", "insert",	  "iterate",
				    "iterate-w",    "remove",	  NULL};
				bool found = false;
				for (int i = 0; known[i]; i++)
					found |= !strcmp(t, known[i]);
				if (!found || O.nworkloads == MAX_PHASES) {
					fprintf(
					    stderr,
					    "cmap-perf: bad workload '%s'\n",
					    t);
					exit(2);
				}
				O.workloads[O.nworkloads++] = t;
			}
			break;
		case LIST:
			for (int i = 0; bench_maps[i]; i++) {
				const struct bench_map *b = bench_maps[i];
				printf("%-10s %s [get set remove%s%s%s%s]\n",
				       b->name, b->desc,
				       b->incr ? " counter" : "",
				       b->insert ? " insert" : "",
				       b->iterate ? " iterate" : "",
				       b->iterate && b->iterate_concurrent
					   ? " iterate-w"
					   : "");
			}
			exit(0);
		case 'c':
			O.contention = true;
			break;
		case 'v':
			O.validate = true;
			break;
		case 'j':
			O.json = true;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			exit(2);
		}
	}
	if (optind < argc) {
		fprintf(stderr, "cmap-perf: unexpected argument '%s'\n",
			argv[optind]);
		exit(2);
	}
	if (!O.ops)
		O.ops = O.loads;
	if (!O.threads || !O.loads) {
		fprintf(stderr,
			"cmap-perf: --threads and --loads must be > 0\n");
		exit(2);
	}
	if (!strcmp(O.hasher, "identity"))
		O.hash = cmap_hash_u32;
	else if (!strcmp(O.hasher, "xxh3"))
		O.hash = cmap_hash_xxh3;
	else if (!strcmp(O.hasher, "city"))
		O.hash = cmap_hash_city;
	else if (!strcmp(O.hasher, "mix"))
		O.hash = hash_mix;
	else {
		fprintf(stderr, "cmap-perf: unknown hasher '%s'\n", O.hasher);
		exit(2);
	}
	for (int i = 0; bench_maps[i]; i++)
		if (!strcmp(bench_maps[i]->name, O.map))
			B = bench_maps[i];
	if (!B) {
		fprintf(stderr,
			"cmap-perf: no map '%s' in this build (--list)\n",
			O.map);
		exit(2);
	}
	if (B != &bench_map_cmap && O.batch > 1) {
		fprintf(stderr, "cmap-perf: --batch is cmap's\n");
		exit(2);
	}
	for (unsigned i = 0; i < O.nworkloads; i++)
		if ((!strcmp(O.workloads[i], "insert") ||
		     !strcmp(O.workloads[i], "iterate-w")) &&
		    O.loads > UINT32_MAX / 2) {
			fprintf(stderr,
				"cmap-perf: %s needs --loads <= 2^31 "
				"(new keys are drawn above it)\n",
				O.workloads[i]);
			exit(2);
		}
}

/* The run loop calls each map as a C program would: cmap directly (M is
 * set only for --map cmap), a peer through its adapter (an indirect call;
 * the C++ maps could not be called from C otherwise).  Measured: routing
 * cmap's gets through the adapter too costs it 15-25 % on 1 thread, by
 * lengthening each iteration and so overlapping fewer cache misses. */
static inline int op_get(uint32_t k, uint64_t *v)
{
	return M ? cmap_get(M, &k, 4, v, NULL) == CMAP_OK : B->get(BM, k, v);
}

static inline int op_set(uint32_t k, uint64_t v)
{
	return M ? cmap_set(M, &k, 4, &v, 8, NULL, NULL) : B->set(BM, k, v);
}

static inline int op_remove(uint32_t k)
{
	return M ? cmap_remove(M, &k, 4, NULL, NULL) : B->remove(BM, k);
}

static inline int op_incr(uint32_t k, uint64_t d)
{
	return M ? c_incr(M, k, d) : B->incr(BM, k, d);
}

static inline int op_insert(uint32_t k, uint64_t v)
{
	return M ? c_insert(M, k, v) : B->insert(BM, k, v);
}

/* Worker i's RNG stream. */
static uint64_t worker_seed(unsigned idx)
{
	return O.seed ^ (GAMMA * (idx + 1));
}

/* The run phase of one thread: a random interleaving of its counts. */
static void mix_thread(struct worker *w)
{
	uint64_t s = worker_seed(w->idx);
	uint64_t g = O.gets, st = O.sets, rm = O.rems, n = O.loads;
	uint64_t hits = 0, acc = 0;
	uint32_t keys[BATCH_MAX];
	uint64_t vals[BATCH_MAX];
	unsigned until_round = 1;
	double t0 = now();
	uint64_t todo = g + st + rm;
	while (g + st + rm) {
		/* Every QUIESCE_EVERY iterations: a QSBR quiescent state and
		 * the progress counter, off the per-operation path. */
		if (--until_round == 0) {
			until_round = QUIESCE_EVERY;
			if (B->quiesce)
				B->quiesce(BM);
			if (O.progress)
				atomic_store_explicit(&w->done,
						      todo - (g + st + rm),
						      memory_order_relaxed);
		}
		uint64_t r = rnd(&s);
		uint64_t x = ((r >> 32) * (g + st + rm)) >> 32;
		uint32_t k = pick(r, n);
		int rc = 0;
		if (x < g && O.batch > 1) {
			/* Gets come in batches when --batch is set (cmap only:
			 * checked in parse). */
			unsigned b = g < O.batch ? (unsigned)g : O.batch;
			keys[0] = k;
			for (unsigned i = 1; i < b; i++)
				keys[i] = pick(rnd(&s), n);
			long h = cmap_get_batch(M, keys, b, vals, NULL);
			if (h < 0) {
				rc = (int)h;
			} else {
				hits += (uint64_t)h;
				acc ^= vals[0];
			}
			g -= b;
		} else if (x < g) {
			uint64_t v = 0;
			hits += (uint64_t)op_get(k, &v);
			acc ^= v;
			g--;
		} else if (x < g + st && O.batch > 1) {
			/* So do sets and removes (cmap_set_batch,
			 * cmap_remove_batch). */
			unsigned b = st < O.batch ? (unsigned)st : O.batch;
			keys[0] = O.contention ? 0 : k;
			vals[0] = rnd(&s);
			for (unsigned i = 1; i < b; i++) {
				keys[i] = O.contention ? 0 : pick(rnd(&s), n);
				vals[i] = rnd(&s);
			}
			long c = cmap_set_batch(M, keys, vals, b, NULL);
			rc = c < 0 ? (int)c : 0;
			st -= b;
		} else if (x < g + st) {
			rc = op_set(O.contention ? 0 : k, rnd(&s));
			st--;
		} else if (O.batch > 1) {
			unsigned b = rm < O.batch ? (unsigned)rm : O.batch;
			keys[0] = k;
			for (unsigned i = 1; i < b; i++)
				keys[i] = pick(rnd(&s), n);
			long c = cmap_remove_batch(M, keys, b, NULL);
			rc = c < 0 ? (int)c : 0;
			rm -= b;
		} else {
			rc = op_remove(k);
			rm--;
		}
		if (rc < 0) {
			w->error = rc;
			break;
		}
	}
	w->t0 = t0;
	w->t1 = now();
	w->ops = O.gets + O.sets + O.rems;
	w->hits = hits;
	w->acc = acc;
}

/* Every QUIESCE_EVERY operations of the new workloads' loops. */
static inline void round_tick(struct worker *w, uint64_t i)
{
	if (B->quiesce)
		B->quiesce(BM);
	if (O.progress)
		atomic_store_explicit(&w->done, i, memory_order_relaxed);
}

/* counter, counter-zipf: --ops increments by 1 of keys in [0, --loads). */
static void counter_thread(struct worker *w)
{
	uint64_t s = worker_seed(w->idx), news = 0;
	bool zipf = O.kind == K_ZIPF;
	double t0 = now();
	for (uint64_t i = 0; i < O.ops; i++) {
		if ((i & (QUIESCE_EVERY - 1)) == 0)
			round_tick(w, i);
		uint64_t r = rnd(&s);
		int rc = op_incr(zipf ? zipf_key(r) : pick(r, O.loads), 1);
		if (rc < 0) {
			w->error = rc;
			break;
		}
		news += (uint64_t)rc;
	}
	w->t0 = t0;
	w->t1 = now();
	w->ops = O.ops;
	w->news = news;
}

/* insert's i-th key of a stream: a loaded key or a new one, even odds.
 * The cleanup replays the stream to remove the new ones. */
static inline uint32_t insert_key(uint64_t r, bool *fresh)
{
	*fresh = r >> 63;
	return *fresh ? fresh_key(r) : load_key(pick(r, O.loads));
}

static void insert_thread(struct worker *w)
{
	uint64_t s = worker_seed(w->idx), news = 0, low = 0;
	double t0 = now();
	for (uint64_t i = 0; i < O.ops; i++) {
		if ((i & (QUIESCE_EVERY - 1)) == 0)
			round_tick(w, i);
		bool fresh;
		uint64_t r = rnd(&s);
		int rc = op_insert(insert_key(r, &fresh), r);
		if (rc < 0) {
			w->error = rc;
			break;
		}
		news += (uint64_t)rc;
		low += (uint64_t)rc & !fresh;
	}
	w->t0 = t0;
	w->t1 = now();
	w->ops = O.ops;
	w->news = news;
	w->low = low; /* loaded keys a previous phase had removed */
}

/* iterate: one full walk.  The visit counts the entries, those with a
 * loaded-range key apart, and sums the values (so nothing is optimised
 * away). */
struct walk {
	uint64_t n, low, sum;
};

static void visit(uint32_t k, uint64_t v, void *ctx)
{
	struct walk *wk = ctx;
	wk->n++;
	wk->low += k < O.loads;
	wk->sum += v;
}

static void iter_thread(struct worker *w)
{
	struct walk wk = {0, 0, 0};
	double t0 = now();
	long n = M ? c_iterate(M, visit, &wk) : B->iterate(BM, visit, &wk);
	w->t0 = t0;
	w->t1 = now();
	if (n < 0)
		w->error = (int)n;
	else if ((uint64_t)n != wk.n)
		w->error = CMAP_EINVAL; /* the return value disagrees */
	w->ops = wk.n;
	w->low = wk.low;
	w->sum = wk.sum;
}

/* A phase's worker: the loop of the phase's kind between the start
 * barrier and the map's leave (tools/count-instr.sh counts the
 * instructions inside this function). */
static void *run_thread(void *arg)
{
	struct worker *w = arg;
	if (B->enter)
		B->enter(BM);
	pthread_barrier_wait(&start_line);
	switch (O.kind) {
	case K_MIX:
		mix_thread(w);
		break;
	case K_COUNTER:
	case K_ZIPF:
		counter_thread(w);
		break;
	case K_INSERT:
		insert_thread(w);
		break;
	case K_ITER:
	case K_ITER_W:
		iter_thread(w);
		break;
	}
	atomic_store_explicit(&w->done, w->todo, memory_order_relaxed);
	if (B->leave)
		B->leave(BM);
	return NULL;
}

/* iterate-w's writer: until the walkers are done, inserts new keys (above
 * --loads) and removes each again WRITER_KEEP inserts later, so the map
 * changes shape all over while every loaded key stays; at the end it
 * removes the rest, untimed, leaving the map as it found it. */
enum { WRITER_KEEP = 1024 };
static _Atomic bool writer_stop;

struct writer {
	pthread_t tid;
	uint64_t ops;
	double t0, t1;
	int error;
};

static void *writer_thread(void *arg)
{
	struct writer *wr = arg;
	static uint32_t ring[WRITER_KEEP];
	uint64_t s = worker_seed(MAX_THREADS), ops = 0;
	size_t pos = 0, held = 0;
	int rc = 0;
	if (B->enter)
		B->enter(BM);
	pthread_barrier_wait(&start_line);
	wr->t0 = now();
	while (!atomic_load_explicit(&writer_stop, memory_order_relaxed)) {
		if ((ops & (QUIESCE_EVERY - 1)) == 0 && B->quiesce)
			B->quiesce(BM);
		if (held == WRITER_KEEP) {
			rc = op_remove(ring[pos]);
			ops++;
			held--;
		}
		uint64_t r = rnd(&s);
		ring[pos] = fresh_key(r);
		if (rc >= 0)
			rc = op_set(ring[pos], r);
		ops++;
		held++;
		pos = (pos + 1) % WRITER_KEEP;
		if (rc < 0)
			break;
	}
	wr->t1 = now();
	for (size_t i = 0; i < held && rc >= 0; i++)
		rc = op_remove(
		    ring[(pos + WRITER_KEEP - held + i) % WRITER_KEEP]);
	if (B->leave)
		B->leave(BM);
	wr->ops = ops;
	wr->error = rc < 0 ? rc : 0;
	return NULL;
}

static bool validate(const char *phase)
{
	cmap_stats_t st;
	int rc = cmap_validate(M, &st);
	printf("validate %s: %s\n", phase, rc == CMAP_OK ? "ok" : "FAILED");
	printf("  entries %zu, inner nodes %zu, buckets %zu, collision buckets "
	       "%zu, max depth %u\n",
	       st.entries, st.inner_nodes, st.buckets, st.collision_buckets,
	       st.max_depth);
	printf("  nodes per level:");
	for (unsigned i = 0; i <= st.max_depth && i < CMAP_MAX_LEVELS; i++)
		printf(" %zu", st.nodes_per_level[i]);
	printf("\n  bytes in use %zu (%.1f per entry), reserved %zu, garbage "
	       "pending %zu, thread records %zu\n",
	       st.bytes_in_use,
	       st.entries ? (double)st.bytes_in_use / (double)st.entries : 0.0,
	       st.bytes_reserved, st.garbage_pending, st.threads);
	return rc == CMAP_OK && st.entries == cmap_len(M);
}

/* ---- run phases
 * -------------------------------------------------------------- */

struct phase_res {
	const char *name;
	unsigned threads;
	uint64_t ops;
	double secs, mops, per_thread;
	double writer_mops; /* iterate-w: the writer's ops/s meanwhile */
};

/* The named workloads of --workloads: counts per thread from --ops. */
static void set_workload(const char *w)
{
	uint64_t n = O.ops;
	O.gets = O.sets = O.rems = 0;
	O.contention = false;
	O.kind = K_MIX;
	if (!strcmp(w, "counter"))
		O.kind = K_COUNTER;
	else if (!strcmp(w, "counter-zipf"))
		O.kind = K_ZIPF;
	else if (!strcmp(w, "insert"))
		O.kind = K_INSERT;
	else if (!strcmp(w, "iterate"))
		O.kind = K_ITER;
	else if (!strcmp(w, "iterate-w"))
		O.kind = K_ITER_W;
	else if (!strcmp(w, "get"))
		O.gets = n;
	else if (!strcmp(w, "set"))
		O.sets = n;
	else if (!strcmp(w, "mix90")) {
		O.gets = n * 9 / 10;
		O.sets = O.rems = n / 20;
	} else if (!strcmp(w, "mix50")) {
		O.gets = n / 2;
		O.sets = O.rems = n / 4;
	} else if (!strcmp(w, "contention")) {
		O.sets = n;
		O.contention = true;
	} else if (!strcmp(w, "remove")) {
		O.rems = n;
	}
}

/* The progress line: "\r<phase>: 42%" on stderr, at most 4 times a
 * second, erased when the phase ends so that it never mixes with the
 * results on stdout. */
static void progress_show(const char *name, uint64_t done, uint64_t total)
{
	fprintf(stderr, "\r\033[K%s: %3.0f%% of %" PRIu64 " ops", name,
		total ? 100.0 * (double)done / (double)total : 100.0, total);
}

static void progress_clear(void)
{
	fputs("\r\033[K", stderr);
}

/* The main thread, while the workers of a phase run: poll their counters. */
static void progress_wait(const char *name, struct worker *w, uint64_t total)
{
	for (;;) {
		uint64_t done = 0;
		for (unsigned i = 0; i < O.threads; i++)
			done += atomic_load_explicit(&w[i].done,
						     memory_order_relaxed);
		if (done == total)
			break;
		progress_show(name, done, total);
		nanosleep(&(struct timespec){0, 250 * 1000 * 1000}, NULL);
	}
	progress_clear();
}

/* Why the phase's kind cannot run on map B, or NULL if it can. */
static const char *missing_op(void)
{
	switch (O.kind) {
	case K_MIX:
		return NULL;
	case K_COUNTER:
	case K_ZIPF:
		return B->incr ? NULL : "no atomic increment (upsert)";
	case K_INSERT:
		return B->insert ? NULL : "no insert-if-absent";
	case K_ITER:
		return B->iterate ? NULL : "no iteration";
	case K_ITER_W:
		return !B->iterate ? "no iteration"
		       : !B->iterate_concurrent
			   ? "its iteration is not safe (or not exactly-once) "
			     "with a concurrent writer"
			   : NULL;
	}
	return NULL;
}

/* The main thread's uses of the map between phases, as a thread of its
 * own (enter/leave). */
static size_t map_len(void)
{
	if (B->enter)
		B->enter(BM);
	size_t len = B->len(BM);
	if (B->leave)
		B->leave(BM);
	return len;
}

/* The sum of the values of keys [0, --loads) (absent: 0), for the counter
 * check; modulo 2^64 like the increments. */
static uint64_t sum_loaded_range(void)
{
	uint64_t sum = 0;
	if (B->enter)
		B->enter(BM);
	for (uint64_t k = 0; k < O.loads; k++) {
		uint64_t v = 0;
		if ((k & (QUIESCE_EVERY - 1)) == 0 && B->quiesce)
			B->quiesce(BM);
		if (B->get(BM, (uint32_t)k, &v))
			sum += v;
	}
	if (B->leave)
		B->leave(BM);
	return sum;
}

/* After insert: remove the new keys the workers inserted (replaying their
 * streams), untimed, so later phases see the loaded map. */
static int insert_cleanup(unsigned threads)
{
	int rc = 0;
	if (B->enter)
		B->enter(BM);
	for (unsigned t = 0; t < threads && rc >= 0; t++) {
		uint64_t s = worker_seed(t);
		for (uint64_t i = 0; i < O.ops && rc >= 0; i++) {
			bool fresh;
			uint32_t k = insert_key(rnd(&s), &fresh);
			if ((i & (QUIESCE_EVERY - 1)) == 0 && B->quiesce)
				B->quiesce(BM);
			if (fresh)
				rc = op_remove(k);
		}
	}
	if (B->leave)
		B->leave(BM);
	return rc;
}

static bool check(const char *phase, bool good, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static bool check(const char *phase, bool good, const char *fmt, ...)
{
	va_list ap;
	printf("validate %s: %s (", phase, good ? "ok" : "FAILED");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf(")\n");
	return good;
}

/* Runs one phase; false if a check failed.  pr->name stays NULL when the
 * map lacks the phase's operation (the phase is skipped). */
static bool run_phase(const char *name, struct phase_res *pr)
{
	uint64_t per = O.gets + O.sets + O.rems, hits = 0, acc = 0, news = 0;
	uint64_t total = 0, sum_before = 0, low = 0;
	double per_thread = 0;
	bool ok = true;
	const char *why = missing_op();
	pr->name = NULL;
	if (why) {
		printf("%s: skipped for %s: %s\n", name, B->name, why);
		return true;
	}
	if (O.kind != K_MIX)
		per = O.kind == K_ITER || O.kind == K_ITER_W ? 1 : O.ops;
	size_t len_before = map_len();
	if (O.validate && (O.kind == K_COUNTER || O.kind == K_ZIPF))
		sum_before = sum_loaded_range();
	struct worker *w = aligned_alloc(64, O.threads * sizeof *w);
	if (!w)
		die("allocating workers", CMAP_ENOMEM);
	memset(w, 0, O.threads * sizeof *w);
	struct writer wr = {0};
	bool writer = O.kind == K_ITER_W;
	atomic_store(&writer_stop, false);
	pthread_barrier_init(&start_line, NULL, O.threads + 1 + writer);
	for (unsigned i = 0; i < O.threads; i++) {
		w[i].idx = i;
		w[i].todo = per;
		if (pthread_create(&w[i].tid, NULL, run_thread, &w[i])) {
			fprintf(stderr, "cmap-perf: pthread_create\n");
			exit(1);
		}
	}
	if (writer && pthread_create(&wr.tid, NULL, writer_thread, &wr)) {
		fprintf(stderr, "cmap-perf: pthread_create\n");
		exit(1);
	}
	pthread_barrier_wait(&start_line);
	if (O.progress)
		progress_wait(name, w, per * O.threads);
	for (unsigned i = 0; i < O.threads; i++)
		pthread_join(w[i].tid, NULL);
	if (writer) {
		atomic_store(&writer_stop, true);
		pthread_join(wr.tid, NULL);
		if (wr.error)
			die("iterate-w writer", wr.error);
	}
	/* The phase lasts from the first worker's start to the last one's
	 * end, as the workers saw it: the main thread's own clock could start
	 * late (with as many workers as cores it may not run again until
	 * they are done, which made short phases look near-instant). */
	double first = w[0].t0, last = w[0].t1;
	for (unsigned i = 1; i < O.threads; i++) {
		first = w[i].t0 < first ? w[i].t0 : first;
		last = w[i].t1 > last ? w[i].t1 : last;
	}
	double secs = last - first;
	pthread_barrier_destroy(&start_line);
	for (unsigned i = 0; i < O.threads; i++) {
		if (w[i].error)
			die(name, w[i].error);
		per_thread += (double)w[i].ops / (w[i].t1 - w[i].t0) / 1e6;
		hits += w[i].hits;
		acc ^= w[i].acc;
		news += w[i].news;
		total += w[i].ops;
		low += w[i].low;
	}
	per_thread /= O.threads;
	*pr = (struct phase_res){name,
				 O.threads,
				 total,
				 secs,
				 (double)total / secs / 1e6,
				 per_thread,
				 writer ? (double)wr.ops / (wr.t1 - wr.t0) / 1e6
					: 0};
	size_t len = map_len();
	long rss = peak_rss_bytes();
	switch (O.kind) {
	case K_MIX:
		printf("%s: %u threads x (%" PRIu64 " gets, %" PRIu64
		       " sets, %" PRIu64 " rems%s%s) in %.3f s: %.2f Mops/s "
		       "total, %.2f Mops/s per thread; %" PRIu64
		       " get hits (xor %#" PRIx64 ")\n",
		       name, O.threads, O.gets, O.sets, O.rems,
		       O.contention ? ", contention" : "",
		       O.batch > 1 ? ", batched gets" : "", secs, pr->mops,
		       per_thread, hits, acc);
		break;
	case K_COUNTER:
	case K_ZIPF:
	case K_INSERT:
		printf("%s: %u threads x %" PRIu64 " %s in %.3f s: %.2f Mops/s "
		       "total, %.2f Mops/s per thread; %" PRIu64
		       " new keys (%.1f %%)\n",
		       name, O.threads, O.ops,
		       O.kind == K_INSERT ? "inserts if absent"
		       : O.kind == K_ZIPF ? "increments (Zipf 0.99 keys)"
					  : "increments (uniform keys)",
		       secs, pr->mops, per_thread, news,
		       total ? 100.0 * (double)news / (double)total : 0.0);
		break;
	case K_ITER:
	case K_ITER_W:
		printf("%s: %u threads x 1 walk in %.3f s: %" PRIu64
		       " entries, %.2f M entries/s total, %.2f M entries/s "
		       "per thread",
		       name, O.threads, secs, total, pr->mops, per_thread);
		if (writer)
			printf("; writer meanwhile: %" PRIu64
			       " inserts + removes, %.2f Mops/s",
			       wr.ops, pr->writer_mops);
		printf("\n");
		break;
	}
	printf("after %s: len %zu, peak RSS %.1f MiB, %.1f bytes/entry\n", name,
	       len, rss / 1048576.0, len ? (double)rss / (double)len : 0.0);
	if (O.validate) {
		uint64_t want = O.ops * O.threads, got;
		switch (O.kind) {
		case K_MIX:
			break;
		case K_COUNTER:
		case K_ZIPF:
			got = sum_loaded_range() - sum_before;
			ok &= check(name, got == want,
				    "value sum grew by %" PRIu64
				    ", increments %" PRIu64,
				    got, want);
			ok &=
			    check(name, len - len_before == news,
				  "len grew by %zu, inserts reported %" PRIu64,
				  len - len_before, news);
			break;
		case K_INSERT:
			ok &=
			    check(name, len - len_before == news,
				  "len grew by %zu, inserts reported %" PRIu64,
				  len - len_before, news);
			break;
		case K_ITER:
			for (unsigned i = 0; i < O.threads; i++)
				ok &= check(name, w[i].ops == len,
					    "walk %u visited %" PRIu64
					    ", len %zu",
					    i, w[i].ops, len);
			break;
		case K_ITER_W:
			for (unsigned i = 0; i < O.threads; i++)
				ok &= check(name, w[i].low == len_before,
					    "walk %u visited %" PRIu64
					    " of the %zu loaded keys present "
					    "throughout, and %" PRIu64
					    " of the writer's",
					    i, w[i].low, len_before,
					    w[i].ops - w[i].low);
			ok &= check(name, len == len_before,
				    "len %zu after the writer, %zu before", len,
				    len_before);
			break;
		}
	}
	free(w);
	if (O.kind == K_INSERT) {
		int rc = insert_cleanup(O.threads);
		if (rc < 0)
			die("removing the inserted keys", rc);
		/* What stays: loaded keys that an earlier phase had removed
		 * (then their draws were not of present keys). */
		if (O.validate)
			ok &= check(name, map_len() == len_before + low,
				    "len %zu after removing the new keys, %zu "
				    "before + %" PRIu64
				    " loaded keys re-inserted",
				    map_len(), len_before, low);
	}
	if (O.validate && M)
		ok &= validate(name);
	return ok;
}

int main(int argc, char **argv)
{
	parse(argc, argv);
	/* The capacity hint: the load, plus what insert adds before its
	 * cleanup (half its draws are new keys) and iterate-w's writer
	 * holds. */
	uint64_t hint = O.loads, maxt = O.threads;
	for (unsigned i = 0; i < O.ntl; i++)
		maxt = O.tlist[i] > maxt ? O.tlist[i] : maxt;
	for (unsigned i = 0; i < O.nworkloads; i++) {
		if (!strcmp(O.workloads[i], "insert"))
			hint += O.ops * maxt / 2;
		if (!strcmp(O.workloads[i], "iterate-w"))
			hint += WRITER_KEEP;
		if (!strcmp(O.workloads[i], "counter-zipf"))
			zipf_init(O.loads, ZIPF_THETA);
	}
	BM = B->create(hint);
	if (!BM)
		die("creating the map", CMAP_ENOMEM);
	printf("cmap-perf: map %s, %ld cpus, hasher %s, seed %#" PRIx64
	       ", u32 keys, u64 values\n",
	       B->name, sysconf(_SC_NPROCESSORS_ONLN),
	       B == &bench_map_cmap ? O.hasher : "mix", O.seed);

	/* Load.  The guard remembers the last value written to keys below
	 * GUARD, to check the map afterwards without storing the keys. */
	enum { GUARD = 4096 };
	static uint64_t guard_val[GUARD];
	static bool guard_has[GUARD];
	uint64_t s = O.seed, inserted = 0;
	int rc;
	/* The main thread uses the map only in the load and the checks; it
	 * leaves in between, as an idle QSBR thread must. */
	if (B->enter)
		B->enter(BM);
	double t0 = now(), shown = t0;
	for (uint64_t i = 0; i < O.loads; i++) {
		if (O.progress && (i & (PROGRESS_EVERY - 1)) == 0 && i &&
		    now() - shown > 0.25) {
			shown = now();
			progress_show("load", i, O.loads);
		}
		uint32_t k = pick(rnd(&s), O.loads);
		uint64_t v = rnd(&s);
		rc = B->set(BM, k, v);
		if (rc < 0)
			die("set", rc);
		inserted += (uint64_t)rc;
		if (k < GUARD) {
			guard_val[k] = v;
			guard_has[k] = true;
		}
	}
	double load_secs = now() - t0;
	if (O.progress)
		progress_clear();
	size_t len = B->len(BM);
	long rss = peak_rss_bytes();
	double load_mops = (double)O.loads / load_secs / 1e6;
	printf("load: %" PRIu64
	       " ops in %.3f s: %.2f Mops/s; len %zu, peak RSS "
	       "%.1f MiB, %.1f bytes/entry\n",
	       O.loads, load_secs, load_mops, len, rss / 1048576.0,
	       len ? (double)rss / (double)len : 0.0);
	bool ok = true;
	if (len != inserted) {
		fprintf(stderr,
			"cmap-perf: GUARD FAILED: len %zu != %" PRIu64
			" distinct keys inserted\n",
			len, inserted);
		ok = false;
	}
	for (uint32_t k = 0; k < GUARD && k < O.loads; k++) {
		uint64_t v = 0;
		int found = B->get(BM, k, &v);
		if (found != guard_has[k] || (found && v != guard_val[k])) {
			fprintf(stderr, "cmap-perf: GUARD FAILED: key %u: %s\n",
				k, found ? "wrong value" : "presence differs");
			ok = false;
			break;
		}
	}
	if (B->leave)
		B->leave(BM);
	if (!ok)
		return 1;
	if (O.validate && M)
		ok &= validate("after load");
	double load_rss_per = len ? (double)rss / (double)len : 0.0;

	/* Run: one phase from the counts given, or the named workloads one
	 * after another on the same map (--workloads). */
	static struct phase_res res[MAX_PHASES * 16];
	unsigned nph = 0;
	if (O.nworkloads) {
		/* Every thread count in turn, on the same loaded map. */
		for (unsigned ti = 0; ti < (O.ntl ? O.ntl : 1); ti++) {
			O.threads = O.ntl ? O.tlist[ti] : O.threads;
			for (unsigned i = 0; i < O.nworkloads; i++) {
				set_workload(O.workloads[i]);
				if (!run_phase(O.workloads[i], &res[nph]))
					ok = false;
				if (res[nph].name)
					nph++;
			}
		}
	} else if (O.gets + O.sets + O.rems) {
		if (!run_phase("run", &res[nph]))
			ok = false;
		nph++;
	}
	len = B->len(BM);
	rss = peak_rss_bytes();
	if (O.json) {
		struct phase_res run =
		    nph ? res[nph - 1]
			: (struct phase_res){"run", 0, 0, 0, 0, 0, 0};
		printf("{\"load\":{\"ops\":%" PRIu64
		       ",\"secs\":%.6f,\"mops\":%.4f},",
		       O.loads, load_secs, load_mops);
		printf("\"run\":{\"ops\":%" PRIu64
		       ",\"secs\":%.6f,\"mops\":%.4f,"
		       "\"per_thread_mops\":%.4f},\"phases\":[",
		       run.ops, run.secs, run.mops, run.per_thread);
		for (unsigned i = 0; i < nph; i++)
			printf(
			    "%s{\"name\":\"%s\",\"threads\":%u,\"ops\":%" PRIu64
			    ",\"secs\":%.6f,\"mops\":%.4f,"
			    "\"per_thread_mops\":%.4f,\"writer_mops\":%.4f}",
			    i ? "," : "", res[i].name, res[i].threads,
			    res[i].ops, res[i].secs, res[i].mops,
			    res[i].per_thread, res[i].writer_mops);
		printf(
		    "],\"len\":%zu,\"rss_bytes\":%ld,\"bytes_per_entry\":%.2f,"
		    "\"load_bytes_per_entry\":%.2f,\"threads\":%u,"
		    "\"map\":\"%s\",\"hasher\":\"%s\",\"loads\":%" PRIu64
		    ",\"gets\":%" PRIu64 ",\"sets\":%" PRIu64
		    ",\"rems\":%" PRIu64 ",\"batch\":%u,\"contention\":%s,"
		    "\"seed\":%" PRIu64 ",\"valid\":%s}\n",
		    len, rss, len ? (double)rss / (double)len : 0.0,
		    load_rss_per, O.threads, B->name,
		    B == &bench_map_cmap ? O.hasher : "mix", O.loads, O.gets,
		    O.sets, O.rems, O.batch, O.contention ? "true" : "false",
		    O.seed, ok ? "true" : "false");
	}
	B->destroy(BM);
	return ok ? 0 : 1;
}
