/* ramalloc built with RAMALLOC_TLS_MODEL=local-dynamic, loaded with dlopen into a running,
 * threaded program (glibc stays the program's malloc): threads that existed before the dlopen and
 * threads created after it use ra_malloc/ra_free through dlsym, free each other's blocks, and
 * exit (ramalloc's thread-exit work runs for a library loaded this way too). */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "dropin.h"

enum { EARLY = 3, LATE = 5, BLOCKS = 2000 };

static void *(*x_malloc)(size_t);
static void (*x_free)(void *);
static bool (*x_owns)(const void *);
static void (*x_stats)(ra_stats_t *);
static atomic_int loaded;
static _Atomic(void *) exchange[64];

static void *thread_main(void *arg) {
  while (!atomic_load(&loaded)) sched_yield(); /* early threads wait for the dlopen */
  unsigned long long s = 77 + (uintptr_t)arg;
  void *b[BLOCKS];
  for (int i = 0; i < BLOCKS; i++) {
    size_t n = 1 + ra_rand(&s) % (i % 100 == 0 ? 200000 : 1000);
    b[i] = x_malloc(n);
    CHECK(b[i] != NULL && x_owns(b[i]));
    memset(b[i], 1, n);
  }
  for (int i = 0; i < BLOCKS; i++) {
    if (i % 8 == 0) x_free(atomic_exchange(&exchange[i % 64], b[i]));
    else x_free(b[i]);
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s LIBRAMALLOC-LOCAL-DYNAMIC.so\n", argv[0]);
    return 2;
  }
  pthread_t t[EARLY + LATE];
  for (long i = 0; i < EARLY; i++) CHECK(pthread_create(&t[i], NULL, thread_main, (void *)i) == 0);
  void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (h == NULL) {
    fprintf(stderr, "dlopen: %s\n", dlerror());
    return 1;
  }
  *(void **)&x_malloc = dlsym(h, "ra_malloc");
  *(void **)&x_free = dlsym(h, "ra_free");
  *(void **)&x_owns = dlsym(h, "ra_owns");
  *(void **)&x_stats = dlsym(h, "ra_stats_get");
  CHECK(x_malloc && x_free && x_owns && x_stats);
  CHECK(dlsym(RTLD_DEFAULT, "ra_malloc") == NULL); /* loaded locally: not the program's malloc */
  atomic_store(&loaded, 1);
  for (long i = EARLY; i < EARLY + LATE; i++) CHECK(pthread_create(&t[i], NULL, thread_main, (void *)i) == 0);
  for (int i = 0; i < EARLY + LATE; i++) CHECK(pthread_join(t[i], NULL) == 0);
  for (int i = 0; i < 64; i++) x_free(atomic_load(&exchange[i]));
  void *mine = x_malloc(100);
  CHECK(x_owns(mine));
  x_free(mine);
  ra_stats_t st;
  x_stats(&st);
  CHECK(st.live_blocks == 0);
  void *p = malloc(100); /* glibc's */
  CHECK(p != NULL && !x_owns(p));
  free(p);
  CHECK(dlclose(h) == 0);
  puts("tlsdyn-ok");
  return 0;
}
