/* fork() from a multi-threaded parent: while 4 threads allocate and free (taking arena locks as
 * they grow and shrink), the main thread forks children that allocate at once, across new chunks,
 * and exit. A child that deadlocks is killed by its alarm and fails the test. */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <time.h>

#include "ramalloc.h"
#include "test_child.h"

static atomic_int stop;

static void *churn(void *arg) {
  uintptr_t seed = (uintptr_t)arg * 2654435761u + 1;
  void *keep[256] = {0};
  while (!atomic_load(&stop)) {
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    size_t i = (seed >> 33) % 256;
    ra_free(keep[i]);
    size_t n = (seed >> 40) % 4 == 0 ? 100000 + (seed >> 20) % 3000000 : 16 + (seed >> 24) % 4000;
    keep[i] = ra_malloc(n);
    if (keep[i]) memset(keep[i], 1, n < 256 ? n : 256);
  }
  for (int i = 0; i < 256; i++) ra_free(keep[i]);
  return NULL;
}

static int child_work(void *unused) {
  (void)unused;
  alarm(10);
  void *p[512];
  for (int i = 0; i < 512; i++) {
    p[i] = ra_malloc((size_t)(i % 64 + 1) * 1024);
    if (p[i] == NULL) return 1;
    memset(p[i], 0x5a, 64);
  }
  void *huge = ra_malloc((size_t)6 << 20);
  if (huge == NULL) return 1;
  for (int i = 0; i < 512; i++) ra_free(p[i]);
  ra_free(huge);
  return 0;
}

static void test_fork_while_threads_allocate(void **state) {
  (void)state;
  pthread_t t[4];
  for (uintptr_t i = 0; i < 4; i++) pthread_create(&t[i], NULL, churn, (void *)(i + 1));
  int forks = 200, failed = 0;
  for (int k = 0; k < forks; k++) {
    int status = child_call(child_work, NULL, 0, NULL);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) failed++;
  }
  atomic_store(&stop, 1);
  for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
  assert_int_equal(failed, 0);
}

/* Issue 12's shape: two threads loop over 64 blocks of 70-133 KiB (spans of slices: chunk locks,
 * commits, purges), free them, give everything back (ra_collect(true), malloc_trim's work) and read
 * the statistics; the main thread forks again and again, and each child allocates and frees 1,000
 * blocks of about 100 KiB and gives everything back before _exit. A child still running after 5 s
 * is hung (killed, counted). RAMALLOC_TEST_FORKS sets the number of forks (default 1500, 300 under
 * sanitizers). */
static void *trim_churn(void *arg) {
  uint64_t seed = (uintptr_t)arg * 0x9E3779B97F4A7C15ull + 7;
  void *b[64];
  while (!atomic_load(&stop)) {
    for (int i = 0; i < 64; i++) {
      seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
      size_t n = (70 << 10) + (size_t)(seed >> 33) % (63 << 10);
      b[i] = ra_malloc(n);
      if (b[i]) memset(b[i], 3, 64);
    }
    for (int i = 0; i < 64; i++) ra_free(b[i]);
    ra_collect(true);
#if !RA_TEST_SANITIZED
    /* The statistics walk reads other threads' page fields without their locks (docs/layout.md:
     * figures while threads run are approximate), which ThreadSanitizer reports. */
    ra_stats_t st;
    ra_stats_get(&st);
#endif
  }
  return NULL;
}

static int trim_child(void *unused) {
  (void)unused;
  for (int i = 0; i < 1000; i++) {
    void *p = ra_malloc((size_t)(96 << 10) + (size_t)(i % 16) * 512);
    if (p == NULL) return 1;
    memset(p, 1, 64);
    ra_free(p);
  }
  ra_collect(true);
  return 0;
}

static void test_fork_during_trim(void **state) {
  (void)state;
  const char *env = getenv("RAMALLOC_TEST_FORKS");
  int forks = env && *env ? atoi(env) : RA_TEST_SANITIZED ? 300 : 1500, hung = 0, failed = 0;
  atomic_store(&stop, 0);
  pthread_t t[2];
  for (uintptr_t i = 0; i < 2; i++) assert_int_equal(pthread_create(&t[i], NULL, trim_churn, (void *)(i + 1)), 0);
  for (int k = 0; k < forks; k++) {
    bool child_hung;
    int status = child_call(trim_child, NULL, 5000, &child_hung);
    if (child_hung)
      hung++;
    else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
      failed++;
  }
  atomic_store(&stop, 1);
  for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
  printf("%d forks: %d children hung, %d failed\n", forks, hung, failed);
  assert_int_equal(hung, 0);
  assert_int_equal(failed, 0);
}

/* A process ends when its last thread does: ramalloc's purger thread must not keep it alive. A child
 * (the fork keeps the test's process out of it) frees memory so that the purger has work, starts a
 * thread that does the same, and leaves its main thread through pthread_exit; once the other
 * thread returns, the child must be gone. Before the purger stopped with the last heap, the child
 * stayed a zombie leader for ever (and, as the purger blocks every signal, SIGTERM could not end
 * it). */
static void *alloc_free_return(void *arg) {
  for (int i = 0; i < 200; i++) ra_free(ra_malloc(300 << 10));
  return arg;
}

/* LeakSanitizer's check at exit would report what cmocka holds in a child that never returns from
 * main (its own hook, asked at exit; ignored in other builds). */
static volatile int in_exiting_child;
int __lsan_is_turned_off(void);
int __lsan_is_turned_off(void) { return in_exiting_child; }

/* The child: its main thread leaves through pthread_exit (this never returns). */
static int exiting_child(void *unused) {
  (void)unused;
  in_exiting_child = 1;
  ra_free(ra_malloc(1 << 20));
  pthread_t t;
  if (pthread_create(&t, NULL, alloc_free_return, NULL) != 0) _exit(3);
  pthread_exit(NULL);
}

static void test_last_thread_exit_ends_process(void **state) {
  (void)state;
#if defined(__SANITIZE_THREAD__)
  /* A child that makes threads after a fork from a threaded process is outside what
   * ThreadSanitizer supports (die_after_fork=0 only lets it try): this child, which does, was seen
   * to stay alive there now and then, and under no other build. */
  skip();
#endif
  bool hung;
  int status = child_call(exiting_child, NULL, 10000, &hung);
  assert_false(hung);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_fork_while_threads_allocate),
                                     cmocka_unit_test(test_fork_during_trim),
                                     cmocka_unit_test(test_last_thread_exit_ends_process)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
