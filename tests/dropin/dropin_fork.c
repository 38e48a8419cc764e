/* fork() from a multi-threaded parent: 4 threads allocate and free without pause (small, medium,
 * large and huge blocks, and blocks passed between threads) while the main thread forks 500
 * children. Every child allocates at once, frees blocks the parent allocated before the fork, and
 * exits; every tenth child starts a thread of its own first. A child that deadlocks is killed by
 * its alarm and counted as a failure; the whole run has a time bound too.
 *
 * The same program runs under glibc and with ramalloc preloaded: both must print fork-ok. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dropin.h"

enum { THREADS = 4, CHILDREN = 500, SLOTS = 256, SHARED = 64, PARENT_BLOCKS = 64 };

static atomic_bool stop;
static _Atomic(void *) shared[SHARED]; /* blocks handed from one thread to another */
static void *parent_blocks[PARENT_BLOCKS];

static size_t pick_size(unsigned long long *s) {
  unsigned long long r = ra_rand(s) % 1000;
  if (r < 700) return 1 + r % 256;
  if (r < 950) return 256 + ra_rand(s) % 16384;
  if (r < 998) return 16384 + ra_rand(s) % (1 << 20);
  return (3u << 20) + ra_rand(s) % (1 << 20);
}

static void *worker(void *arg) {
  unsigned long long s = 0x9e3779b97f4a7c15ULL * ((uintptr_t)arg + 1);
  void *slot[SLOTS] = {0};
  while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
    for (int k = 0; k < 64; k++) {
      size_t i = ra_rand(&s) % SLOTS;
      free(slot[i]);
      size_t n = pick_size(&s);
      slot[i] = malloc(n);
      CHECK(slot[i] != NULL);
      memset(slot[i], (int)i, n < 64 ? n : 64);
    }
    /* Trade a block with whichever thread comes next. */
    size_t j = ra_rand(&s) % SHARED;
    void *mine = malloc(48);
    CHECK(mine != NULL);
    free(atomic_exchange(&shared[j], mine));
  }
  for (int i = 0; i < SLOTS; i++) free(slot[i]);
  return NULL;
}

static void *child_thread(void *arg) {
  void *p[100];
  for (int i = 0; i < 100; i++) CHECK((p[i] = malloc((size_t)i * 100 + 1)) != NULL);
  for (int i = 0; i < 100; i++) free(p[i]);
  return arg;
}

static void child(int k) {
  alarm(20);
  unsigned long long s = 1234567ULL + (unsigned long long)k;
  void *mine[64];
  for (int i = 0; i < 64; i++) {
    size_t n = pick_size(&s);
    mine[i] = malloc(n);
    CHECK(mine[i] != NULL);
    memset(mine[i], 0x5a, n);
  }
  if (k % 10 == 0) {
    pthread_t t;
    CHECK(pthread_create(&t, NULL, child_thread, NULL) == 0);
    CHECK(pthread_join(t, NULL) == 0);
  }
  char *s1 = strdup("child");
  CHECK(s1 != NULL);
  for (int i = 0; i < PARENT_BLOCKS; i += 2) free(parent_blocks[i]); /* blocks of the parent */
  for (int i = 0; i < 64; i++) free(mine[i]);
  free(s1);
  if (k % 2) exit(0); /* atexit handlers and stdio run */
  _exit(0);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(void) {
  alarm(240); /* the bound on the whole run */
  for (int i = 0; i < PARENT_BLOCKS; i++) CHECK((parent_blocks[i] = malloc((size_t)i * 1000 + 8)) != NULL);
  pthread_t th[THREADS];
  for (long i = 0; i < THREADS; i++) CHECK(pthread_create(&th[i], NULL, worker, (void *)i) == 0);
  double t0 = now_s();
  int failed = 0, in_flight = 0;
  for (int k = 0; k < CHILDREN; k++) {
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) child(k);
    in_flight++;
    /* Keep a few children alive at once, so forks overlap with exits. */
    while (in_flight >= 4 || (k == CHILDREN - 1 && in_flight > 0)) {
      int status;
      pid_t w = wait(&status);
      CHECK(w > 0);
      in_flight--;
      if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        failed++;
        fprintf(stderr, "child %d: %s %d\n", (int)w, WIFEXITED(status) ? "exit" : "signal",
                WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
      }
    }
  }
  double t1 = now_s();
  atomic_store(&stop, true);
  for (int i = 0; i < THREADS; i++) CHECK(pthread_join(th[i], NULL) == 0);
  for (int i = 0; i < SHARED; i++) free(atomic_load(&shared[i]));
  for (int i = 0; i < PARENT_BLOCKS; i++) free(parent_blocks[i]);
  fprintf(stderr, "%d children in %.2f s (%s)\n", CHILDREN, t1 - t0,
          ra_api().owns ? "ramalloc" : "system allocator");
  if (failed) {
    printf("%d of %d children failed\n", failed, CHILDREN);
    return 1;
  }
  puts("fork-ok");
  return 0;
}
