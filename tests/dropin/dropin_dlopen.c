/* dlopen/dlclose of a plugin (dropin_plugin.c) 200 times. Each round the main thread and 4 new
 * threads call into it (their first touch of its __thread variables makes glibc allocate dynamic
 * TLS through malloc), blocks cross the boundary both ways, and some blocks the plugin allocated
 * outlive it and are freed rounds later. The same program runs under glibc and with ramalloc
 * preloaded; the printed checksums must be equal. */
#define _GNU_SOURCE
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "dropin.h"

enum { ROUNDS = 200, THREADS = 4, KEEP = 16 };

typedef void *(*make_fn)(size_t, int);
typedef void (*take_fn)(void *);
typedef unsigned long (*work_fn)(unsigned long);
typedef void (*done_fn)(void);

static make_fn make;
static take_fn take;
static work_fn thread_work;
static done_fn thread_done;

static unsigned long thread_sum[THREADS];

static void *thread_main(void *arg) {
  unsigned long seed = (unsigned long)(uintptr_t)arg, sum = 0;
  for (int i = 0; i < 50; i++) sum += thread_work(seed + (unsigned long)i);
  thread_sum[seed % THREADS] = sum;
  void *b = make(1000 + seed % 5000, 7); /* freed by the main thread */
  thread_done();
  return b;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s PLUGIN.so\n", argv[0]);
    return 2;
  }
  void *kept[KEEP] = {0};
  unsigned long long checksum = 0;
  for (int round = 0; round < ROUNDS; round++) {
    void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
      fprintf(stderr, "dlopen: %s\n", dlerror());
      return 1;
    }
    make = (make_fn)dlsym(h, "plugin_make");
    take = (take_fn)dlsym(h, "plugin_take");
    thread_work = (work_fn)dlsym(h, "plugin_thread_work");
    thread_done = (done_fn)dlsym(h, "plugin_thread_done");
    CHECK(make && take && thread_work && thread_done);

    checksum += thread_work((unsigned long)round);
    char *mine = malloc(300);
    CHECK(mine != NULL);
    memset(mine, 1, 300);
    take(mine); /* ours, freed by the plugin */
    unsigned char *theirs = make(2000, round & 0xff);
    CHECK(theirs != NULL && theirs[1999] == (unsigned char)(round & 0xff));
    free(theirs); /* theirs, freed by us */

    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
      CHECK(pthread_create(&t[i], NULL, thread_main, (void *)(uintptr_t)(round * THREADS + i)) == 0);
    for (int i = 0; i < THREADS; i++) {
      void *b;
      CHECK(pthread_join(t[i], &b) == 0);
      CHECK(b != NULL && ((unsigned char *)b)[0] == 7);
      free(b);
      checksum += thread_sum[i];
    }
    /* One block per round outlives the plugin and is freed KEEP rounds later. */
    free(kept[round % KEEP]);
    kept[round % KEEP] = make(64 + (size_t)round, 3);
    CHECK(kept[round % KEEP] != NULL);
    thread_done();
    CHECK(dlclose(h) == 0);
  }
  for (int i = 0; i < KEEP; i++) {
    CHECK(((unsigned char *)kept[i])[0] == 3);
    free(kept[i]);
  }
  printf("dlopen checksum %llu\n", checksum);
  puts("dlopen-ok");
  return 0;
}
