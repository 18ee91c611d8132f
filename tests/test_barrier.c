/*
 * The reclaimer's barrier (epoch.c): readers skip their StoreLoad fence
 * only while the reclaimer's membarrier() works.  When membarrier starts
 * failing at run time (here: a seccomp filter installed after the maps
 * exist), no epoch may advance on that round, every reader switches to
 * fencing, and a map advances again only once each of its records has been
 * seen fenced or released.  Before that rule, the reclaimer fenced locally
 * and went on advancing, freeing what an unfenced reader could still hold.
 *
 * The seccomp part runs in a child process, so that the filter does not
 * outlive it; it is skipped where membarrier or seccomp is unavailable.
 */
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"
#include "testutil.h"

static cmap_t *new_u32map(void)
{
	cmap_config_t c = {0};
	c.key_size = 4;
	c.val_size = 8;
	c.hash = cmap_hash_u32;
	cmap_t *m = NULL;
	CHECK_EQ(cmap_new(&m, &c), CMAP_OK);
	return m;
}

static atomic_int freed;
static void count_free(void *p)
{
	(void)p;
	atomic_fetch_add(&freed, 1);
}

/* Make membarrier(2) fail with EPERM in every thread of this process. */
static bool forbid_membarrier(void)
{
	struct sock_filter f[] = {
	    BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
		     offsetof(struct seccomp_data, nr)),
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_membarrier, 0, 1),
	    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
	    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {sizeof f / sizeof f[0], f};
	return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
	       syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER,
		       SECCOMP_FILTER_FLAG_TSYNC, &prog) == 0;
}

/* A worker that uses the map when told to, and otherwise idles outside any
 * operation (a thread pool's idle worker). */
struct worker {
	cmap_t *m;
	atomic_int cmd; /* 0 idle, 1 do one get, 2 exit */
	atomic_int done;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	for (;;) {
		int c = atomic_load(&w->cmd);
		if (c == 2)
			return NULL;
		if (c == 1) {
			uint32_t k = 1;
			uint64_t v;
			CHECK(cmap_get(w->m, &k, 4, &v, NULL) ==
			      CMAP_NOT_FOUND);
			atomic_store(&w->cmd, 0);
			atomic_fetch_add(&w->done, 1);
		}
		usleep(100);
	}
}

static void order(struct worker *w, int c)
{
	int d = atomic_load(&w->done);
	atomic_store(&w->cmd, c);
	if (c == 1)
		while (atomic_load(&w->done) == d)
			usleep(100);
}

/* Collects until nothing is pending (at most n tries); the count left. */
static size_t drain(cmap_t *m, int n)
{
	size_t left = 1;
	for (int i = 0; i < n && left; i++)
		left = cmap_collect(m);
	return left;
}

static int runtime_failure_child(void)
{
	cmap_t *m = new_u32map();
	cmap_t *m2 = new_u32map();
	struct worker w = {m, 0, 0}, w2 = {m2, 0, 0};
	pthread_t t, t2;
	CHECK_EQ(pthread_create(&t, NULL, worker_main, &w), 0);
	CHECK_EQ(pthread_create(&t2, NULL, worker_main, &w2), 0);
	order(&w, 1);  /* both workers joined their map in membarrier mode */
	order(&w2, 1); /* and now idle, their state stored unfenced */
	CHECK_EQ(ld_relaxed(&cmap__rdmode), RD_MEMBARRIER);
	CHECK_EQ(drain(m, 8), 0);

	if (!forbid_membarrier()) {
		printf("test_barrier: seccomp unavailable, runtime failure "
		       "not tested\n");
		order(&w, 2);
		order(&w2, 2);
		pthread_join(t, NULL);
		pthread_join(t2, NULL);
		cmap_free(m);
		cmap_free(m2);
		return 0;
	}
	/* The first round after the failure switches every reader to fences
	 * and advances nothing; nor do later rounds while an owned record
	 * has not been seen fenced: the idle worker's last announcement was
	 * unfenced. */
	uint64_t e0 = ld_relaxed(&m->epoch);
	CHECK_EQ(cmap_defer_free(m, &freed, count_free), CMAP_OK);
	CHECK_EQ(cmap_defer_free(m2, &freed, count_free), CMAP_OK);
	for (int i = 0; i < 20; i++) {
		CHECK_EQ(cmap_collect(m), 1);
		CHECK_EQ(cmap_collect(m2), 1);
	}
	CHECK_EQ(ld_relaxed(&cmap__rdmode), RD_FENCED);
	CHECK_EQ(ld_relaxed(&m->epoch), e0);
	CHECK_EQ(atomic_load(&freed), 0);

	/* One operation of the worker (now fenced) unblocks m... */
	order(&w, 1);
	CHECK_EQ(drain(m, 8), 0);
	CHECK_EQ(atomic_load(&freed), 1);
	CHECK(ld_relaxed(&m->epoch) >= e0 + GRACE);
	/* ...and the exit of m2's worker (its record released) unblocks m2. */
	CHECK_EQ(cmap_collect(m2), 1);
	order(&w2, 2);
	CHECK_EQ(pthread_join(t2, NULL), 0);
	CHECK_EQ(drain(m2, 8), 0);
	CHECK_EQ(atomic_load(&freed), 2);

	/* A map made after the switch reclaims at once; its readers fence. */
	cmap_t *m3 = new_u32map();
	uint32_t k = 5;
	uint64_t v = 6;
	CHECK_EQ(cmap_set(m3, &k, 4, &v, 8, NULL, NULL), CMAP_OK);
	CHECK_EQ(cmap_set(m3, &k, 4, &v, 8, NULL, NULL), CMAP_REPLACED);
	CHECK_EQ(drain(m3, 8), 0);
	rec_t *r = cmap__enter(m3);
	CHECK_EQ(ld_relaxed(&r->state) & (RD_FENCED | ST_ACTIVE),
		 RD_FENCED | ST_ACTIVE);
	cmap__leave(r);

	order(&w, 2);
	CHECK_EQ(pthread_join(t, NULL), 0);
	cmap_free(m);
	cmap_free(m2);
	cmap_free(m3);
	return 0;
}

static void test_runtime_failure(void)
{
	cmap__global_init();
	if (ld_relaxed(&cmap__rdmode) != RD_MEMBARRIER) {
		printf("test_barrier: readers fence from the start (membarrier "
		       "unavailable or CMAP_NO_MEMBARRIER), runtime failure "
		       "not tested\n");
		return;
	}
	fflush(stdout);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0)
		_exit(runtime_failure_child());
	int status;
	CHECK_EQ(waitpid(pid, &status, 0), pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* The mode in force matches the environment switch that make test uses to
 * run the whole suite on the fenced path. */
static void test_switch(void)
{
	cmap_t *m = new_u32map();
	const char *v = getenv("CMAP_NO_MEMBARRIER");
	if (v && *v && strcmp(v, "0"))
		CHECK_EQ(ld_relaxed(&cmap__rdmode), RD_FENCED);
	/* Either way reclamation goes on. */
	atomic_store(&freed, 0);
	CHECK_EQ(cmap_defer_free(m, &freed, count_free), CMAP_OK);
	CHECK_EQ(drain(m, 8), 0);
	CHECK_EQ(atomic_load(&freed), 1);
	cmap_free(m);
}

int main(void)
{
	test_runtime_failure();
	test_switch();
	printf("test_barrier: ok (readers %s)\n",
	       ld_relaxed(&cmap__rdmode) == RD_FENCED ? "fenced" : "unfenced");
	return 0;
}
