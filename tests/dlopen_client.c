/*
 * libcmap.so loaded with dlopen, used by two threads, the map freed and the
 * library unloaded while those threads still live; then they exit.  Their
 * exit must not call into the unloaded library (its thread-exit hook is
 * removed when it unloads).  Usage: dlopen_client path/to/libcmap.so
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "cmap.h"
#include "testutil.h"

static int (*p_new)(cmap_t **, const cmap_config_t *);
static int (*p_set)(cmap_t *, const void *, size_t, const void *, size_t,
		    void *, size_t *);
static int (*p_get)(cmap_t *, const void *, size_t, void *, size_t *);
static void (*p_free)(cmap_t *);

static cmap_t *map;
static atomic_int used, may_exit;

static void *worker(void *arg)
{
	uint32_t base = (uint32_t)(uintptr_t)arg * 100000;
	for (uint32_t k = base; k < base + 20000; k++) {
		uint64_t v = k, got;
		CHECK_EQ(p_set(map, &k, 4, &v, 8, NULL, NULL), CMAP_OK);
		CHECK_EQ(p_get(map, &k, 4, &got, NULL), CMAP_OK);
		CHECK_EQ(got, k);
	}
	atomic_fetch_add(&used, 1);
	while (!atomic_load(&may_exit))
		;
	return NULL; /* thread exit: TLS destructors run now */
}

static void *sym(void *lib, const char *name)
{
	void *p = dlsym(lib, name);
	if (!p) {
		fprintf(stderr, "dlsym %s: %s\n", name, dlerror());
		abort();
	}
	return p;
}

int main(int argc, char **argv)
{
	CHECK(argc == 2);
	for (int round = 0; round < 3; round++) {
		void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
		if (!lib) {
			fprintf(stderr, "dlopen: %s\n", dlerror());
			return 1;
		}
		*(void **)&p_new = sym(lib, "cmap_new");
		*(void **)&p_set = sym(lib, "cmap_set");
		*(void **)&p_get = sym(lib, "cmap_get");
		*(void **)&p_free = sym(lib, "cmap_free");
		cmap_config_t c = {0};
		c.key_size = 4;
		c.val_size = 8;
		CHECK_EQ(p_new(&map, &c), CMAP_OK);
		atomic_store(&used, 0);
		atomic_store(&may_exit, 0);
		pthread_t t[2];
		for (uintptr_t i = 0; i < 2; i++)
			CHECK_EQ(pthread_create(&t[i], NULL, worker, (void *)i),
				 0);
		while (atomic_load(&used) != 2)
			;
		p_free(map);
		CHECK_EQ(dlclose(lib), 0);
		atomic_store(&may_exit, 1);
		for (int i = 0; i < 2; i++)
			CHECK_EQ(pthread_join(t[i], NULL), 0);
	}
	printf("dlopen_client: ok\n");
	return 0;
}
