/* Memory return (docs/memory-return.md): free memory goes back to the OS after the purge delay
 * while the arenas stay reserved. Resident memory is read from /proc/self/status. These tests
 * assume the default purge (decommit, which drops pages at once); under sanitizers their shadow
 * memory hides the drop, so the program exits 77 there (ctest: skipped) after saying why. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "ramalloc.h"

#define MiB ((size_t)1 << 20)

static size_t status_kib(const char *key) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  size_t v = 0, n = strlen(key);
  while (f && fgets(line, sizeof line, f))
    if (!strncmp(line, key, n)) v = (size_t)strtoull(line + n, NULL, 10);
  if (f) fclose(f);
  return v;
}
static size_t rss_kib(void) { return status_kib("VmRSS:"); }

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Start a test from a clean slate: everything free given back, and the peak (VmHWM) reset. */
static void fresh_start(void) {
  ra_collect(true);
  FILE *f = fopen("/proc/self/clear_refs", "w");
  if (f) {
    fputs("5", f);
    fclose(f);
  }
}

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static uint64_t rnd(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}
/* 16 B .. 1 MiB, most of them small */
static size_t mixed_size(void) {
  uint64_t r = rnd() % 100;
  if (r < 80) return 16 + rnd() % 1024;
  if (r < 97) return 1024 + rnd() % (64 * 1024);
  return 64 * 1024 + rnd() % (960 * 1024);
}

/* The purge delay in force (RAMALLOC_PURGE_DELAY_MS, default 100 ms). */
static int delay_ms(void) {
  const char *s = getenv("RAMALLOC_PURGE_DELAY_MS");
  return s && *s ? atoi(s) : 100;
}

/* What the documentation promises: once the delay has passed, the next allocation slow path of any
 * thread runs a purge pass (passes run at most every half delay). A large block always takes the
 * slow path. */
static void wait_and_nudge(void) {
  usleep((useconds_t)(delay_ms() * 2 + 50) * 1000);
  void *p = ra_malloc(300 * 1024);
  ra_free(p);
}

enum { MAXB = 400000 };
static void *blocks[MAXB];

static void test_1gib_freed_goes_back(void **state) {
  (void)state;
  fresh_start();
  size_t base = rss_kib(), total = 0;
  int n = 0;
  while (total < 1024 * MiB && n < MAXB) {
    size_t s = mixed_size();
    blocks[n] = ra_malloc(s);
    assert_non_null(blocks[n]);
    memset(blocks[n], 0x5c, s);
    total += s;
    n++;
  }
  size_t peak = rss_kib();
  ra_stats_t before;
  ra_stats_get(&before);
  for (int i = 0; i < n; i++) ra_free(blocks[i]);
  wait_and_nudge();
  size_t after = rss_kib();
  ra_stats_t st;
  ra_stats_get(&st);
  printf("%d blocks, %zu MiB asked; VmRSS %zu KiB before, %zu KiB at peak, %zu KiB after the delay "
         "(%.1f%% of peak); purged %zu MiB; reserved %zu MiB in %zu arenas\n",
         n, total / MiB, base, peak, after, 100.0 * (double)after / (double)peak, st.purged / MiB,
         st.reserved / MiB, st.arenas);
  assert_true(after * 20 < peak);             /* below 5% of the peak */
  assert_int_equal(st.reserved, before.reserved); /* the ranges stay reserved */
  assert_int_equal(st.arenas, before.arenas);
  assert_true(st.committed < 16 * MiB);
  /* Allocating again works, and calloc still returns zeros over the purged memory. */
  for (int i = 0; i < 20000; i++) {
    size_t s = mixed_size();
    unsigned char *p = ra_calloc(1, s);
    assert_non_null(p);
    for (size_t k = 0; k < s; k += 61) assert_int_equal(p[k], 0);
    assert_int_equal(p[s - 1], 0);
    memset(p, 0x77, s);
    blocks[i] = p;
  }
  for (int i = 0; i < 20000; i++) ra_free(blocks[i]);
}

static void test_swings_keep_peak(void **state) {
  (void)state;
  fresh_start();
  /* 20 times: grow to 500 MiB live, shrink to 10 MiB. */
  int n = 0;
  size_t live = 0, first_peak = 0;
  for (int swing = 0; swing < 20; swing++) {
    while (live < 500 * MiB && n < MAXB) {
      size_t s = mixed_size();
      blocks[n] = ra_malloc(s);
      assert_non_null(blocks[n]);
      memset(blocks[n], swing, s);
      live += ra_usable_size(blocks[n]);
      n++;
    }
    if (swing == 0) first_peak = status_kib("VmHWM:");
    while (live > 10 * MiB) {
      int i = (int)(rnd() % (uint64_t)n);
      live -= ra_usable_size(blocks[i]);
      ra_free(blocks[i]);
      blocks[i] = blocks[--n];
    }
  }
  size_t peak = status_kib("VmHWM:");
  printf("first peak %zu KiB, peak over 20 swings %zu KiB (+%.1f%%)\n", first_peak, peak,
         100.0 * ((double)peak - (double)first_peak) / (double)first_peak);
  assert_true(peak * 10 <= first_peak * 11);
  for (int i = 0; i < n; i++) ra_free(blocks[i]);
}

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int phase; /* 1: the worker freed everything; 2: the worker may exit */

static void *allocate_free_sleep(void *arg) {
  (void)arg;
  enum { N = 3700 };
  static void *mine[N];
  for (int i = 0; i < N; i++) { /* 200 MiB in 64 KiB blocks, and some small ones */
    size_t s = i % 8 == 0 ? 100 : 64 * 1024;
    mine[i] = ra_malloc(s);
    memset(mine[i], 1, s);
  }
  for (int i = 0; i < N; i++) ra_free(mine[i]);
  pthread_mutex_lock(&mu);
  phase = 1;
  pthread_cond_broadcast(&cv);
  while (phase != 2) pthread_cond_wait(&cv, &mu); /* idle: no allocation from here on */
  pthread_mutex_unlock(&mu);
  return NULL;
}

/* The background purger runs unless RAMALLOC_PURGE_THREAD turns it off (on by default). */
static bool purger_on(void) {
  const char *pt = getenv("RAMALLOC_PURGE_THREAD");
  return pt == NULL || *pt == 0 || atoi(pt) != 0;
}

/* The idle thread's memory comes back through other threads' slow paths (or the purger thread,
 * when `quiet`: nobody allocates). The bound is the purge delay plus one pass interval. */
static void idle_thread_case(bool quiet) {
  fresh_start();
  size_t base = rss_kib();
  phase = 0;
  pthread_t t;
  pthread_create(&t, NULL, allocate_free_sleep, NULL);
  pthread_mutex_lock(&mu);
  while (phase != 1) pthread_cond_wait(&cv, &mu);
  pthread_mutex_unlock(&mu);
  size_t held = rss_kib();
  /* The bound is delay + half a delay (docs/memory-return.md); a loaded machine may deschedule the
   * purging thread, so poll for up to 3 s and report how long it took. */
  uint64_t t0 = now_ms(), waited;
  size_t after;
  do {
    if (quiet) usleep(20 * 1000);
    else {
      usleep(20 * 1000);
      void *p = ra_malloc(300 * 1024); /* a slow path of this (other) thread */
      ra_free(p);
    }
    after = rss_kib();
    waited = now_ms() - t0;
  } while (after >= base + 16 * 1024 && waited < 3000);
  printf("%s: VmRSS %zu KiB before, %zu KiB with the idle thread's memory freed, %zu KiB after %llu ms\n",
         quiet ? "purger thread" : "other thread's slow path", base, held, after, (unsigned long long)waited);
  assert_true(held > base + 195 * 1024);
  assert_true(after < base + 16 * 1024); /* at most a few kept empty pages of the idle thread */
  pthread_mutex_lock(&mu);
  phase = 2;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
  pthread_join(t, NULL);
}

static void test_idle_thread_does_not_strand(void **state) {
  (void)state;
  idle_thread_case(purger_on());
}

/* A thread that exits with its blocks live leaves its heap parked for the next thread that starts
 * (docs/design.md, "Threads"). When none starts and another thread frees those blocks, the memory
 * must still come back on the clock: the parked heap is abandoned after half the delay, its chunks
 * swept and purged. */
enum { XN = 300000 };
static void *allocate_and_exit(void *arg) {
  (void)arg;
  for (int i = 0; i < XN; i++) { /* about 150 MiB of 16 B - 1 KiB blocks */
    size_t s = 16 + (size_t)i * 7919 % 1009;
    blocks[i] = ra_malloc(s);
    memset(blocks[i], 2, s);
  }
  return NULL;
}

static void test_exited_thread_memory_returns(void **state) {
  (void)state;
  bool quiet = purger_on(); /* the purger runs: this thread stays quiet */
  fresh_start();
  size_t base = rss_kib();
  pthread_t t;
  pthread_create(&t, NULL, allocate_and_exit, NULL);
  pthread_join(t, NULL);
  size_t held = rss_kib();
  for (int i = 0; i < XN; i++) ra_free(blocks[i]); /* remote frees into the exited thread's pages */
  uint64_t t0 = now_ms(), waited;
  size_t after;
  do {
    usleep(20 * 1000);
    if (!quiet) {
      void *p = ra_malloc(300 * 1024); /* a slow path of this thread */
      ra_free(p);
    }
    after = rss_kib();
    waited = now_ms() - t0;
  } while (after >= base + 16 * 1024 && waited < 3000);
  printf("exited thread (%s): VmRSS %zu KiB before, %zu KiB with its blocks live, %zu KiB %llu ms after they were "
         "freed\n",
         quiet ? "purger thread" : "slow paths", base, held, (size_t)after, (unsigned long long)waited);
  assert_true(held > base + 100 * 1024);
  assert_true(after < base + 16 * 1024);
}

static void test_collect_forces(void **state) {
  (void)state;
  for (int i = 0; i < 2000; i++) {
    blocks[i] = ra_malloc(32 * 1024);
    memset(blocks[i], 3, 32 * 1024);
  }
  for (int i = 0; i < 2000; i++) ra_free(blocks[i]);
  ra_collect(true);
  ra_stats_t st;
  ra_stats_get(&st);
  assert_true(st.committed < 8 * MiB);
  assert_true(st.purged > 0);
  assert_true(st.decommit_calls > 0);
}

int main(void) {
#if RA_TEST_SANITIZED
  printf("SKIP: under a sanitizer its shadow memory hides the drop in resident memory\n");
  return 77; /* ctest's SKIP_RETURN_CODE */
#endif
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_1gib_freed_goes_back),
    cmocka_unit_test(test_swings_keep_peak),
    cmocka_unit_test(test_idle_thread_does_not_strand),
    cmocka_unit_test(test_exited_thread_memory_returns),
    cmocka_unit_test(test_collect_forces),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
