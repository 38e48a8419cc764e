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

#include "ramalloc.h"

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

static int child_work(void) {
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
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) _exit(child_work());
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) failed++;
  }
  atomic_store(&stop, 1);
  for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
  assert_int_equal(failed, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_fork_while_threads_allocate)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
