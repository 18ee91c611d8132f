/*
 * A concurrent memo table: several threads compute f(n) (here the length of
 * the Collatz sequence from n, as text keys) and share results through one
 * map.  Each thread looks the key up, computes on a miss and publishes with
 * cmap_set; cmap_get_with reads a stored result in place without copying.
 *
 *   build/release/examples/memo [threads]
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmap.h"

static cmap_t *memo;

static uint64_t collatz_len(uint64_t n)
{
	uint64_t steps = 0;
	while (n != 1) {
		n = n % 2 ? 3 * n + 1 : n / 2;
		steps++;
	}
	return steps;
}

static void add_to(const void *k, size_t kl, const void *v, size_t vl,
		   void *ctx)
{
	uint64_t x;
	(void)k;
	(void)kl;
	(void)vl;
	memcpy(&x, v, sizeof x); /* borrowed: valid only during this call */
	*(uint64_t *)ctx += x;
}

static void *worker(void *arg)
{
	unsigned id = (unsigned)(uintptr_t)arg;
	uint64_t sum = 0, computed = 0;
	char key[32];
	for (uint64_t n = 1; n <= 200000; n++) {
		uint64_t m = (n * 7919 + id * 104729) % 200000 + 1;
		int kl = snprintf(key, sizeof key, "collatz:%llu",
				  (unsigned long long)m);
		if (cmap_get_with(memo, key, (size_t)kl, add_to, &sum) ==
		    CMAP_OK)
			continue;
		uint64_t v = collatz_len(m);
		computed++;
		sum += v;
		int rc =
		    cmap_set(memo, key, (size_t)kl, &v, sizeof v, NULL, NULL);
		if (rc < 0) {
			fprintf(stderr, "cmap_set: %s\n", cmap_strerror(rc));
			exit(1);
		}
	}
	printf("thread %u: sum %llu, computed %llu of 200000\n", id,
	       (unsigned long long)sum, (unsigned long long)computed);
	return NULL;
}

int main(int argc, char **argv)
{
	unsigned t = argc > 1 ? (unsigned)atoi(argv[1]) : 4;
	if (t < 1 || t > 64)
		t = 4;
	/* key_size and val_size 0: variable-length keys and values */
	cmap_config_t cfg = CMAP_CONFIG_INIT;
	int rc = cmap_new(&memo, &cfg);
	if (rc != CMAP_OK) {
		fprintf(stderr, "cmap_new: %s\n", cmap_strerror(rc));
		return 1;
	}
	pthread_t th[64];
	for (unsigned i = 0; i < t; i++)
		pthread_create(&th[i], NULL, worker, (void *)(uintptr_t)i);
	for (unsigned i = 0; i < t; i++)
		pthread_join(th[i], NULL);
	printf("memo holds %zu results\n", cmap_len(memo));
	cmap_free(memo);
	return 0;
}
