/* Real program shapes whose memory must come back (issue 12; docs/memory-return.md):
 *
 *   thread generations: short-lived threads, each freeing what the previous generation left for it
 *     and allocating anew, while the main thread (which allocates nothing) frees half of every
 *     finished generation. The committed bytes must stay flat: the same after 200 generations as
 *     after 25, and within 1.5x of glibc's peak for the same program.
 *   a quiet program: 1 GiB of live blocks of mixed sizes, all freed, then light activity (a few
 *     hundred small malloc/free pairs every 10 ms, which never leave the fast paths): within 2 s the
 *     resident memory is at most 5% of the peak, with default options and no slow path taken.
 *
 * Committed bytes come from ra_stats_get (exact, sanitizers or not); resident memory from
 * /proc/self/status (skipped under sanitizers, whose shadow memory hides it). */
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
#include "test_common.h"

static size_t status_kib(const char *key) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  size_t v = 0, n = strlen(key);
  while (f && fgets(line, sizeof line, f))
    if (!strncmp(line, key, n)) v = (size_t)strtoull(line + n, NULL, 10);
  if (f) fclose(f);
  return v;
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static size_t committed(void) {
  ra_stats_t st;
  ra_stats_get(&st);
  return st.committed;
}

/* ---- thread generations ------------------------------------------------------------------------- */

enum { GEN_THREADS = 4, GEN_BLOCKS = 20000 / RA_TEST_SCALE };

static void **gen_left[GEN_THREADS]; /* what the previous generation left for thread i */
static void **gen_made[GEN_THREADS];
static unsigned gen_seed;

static void *gen_worker(void *arg) {
  size_t i = (size_t)(uintptr_t)arg;
  for (int k = 0; k < GEN_BLOCKS; k++) ra_free(gen_left[i][k]); /* remote frees (NULL past half) */
  rt_rng_t r;
  rt_rng_seed(&r, gen_seed * 31 + i);
  for (int k = 0; k < GEN_BLOCKS; k++) {
    size_t n = rt_rng_range(&r, 16, 128);
    gen_made[i][k] = ra_malloc(n);
    assert_non_null(gen_made[i][k]);
    memset(gen_made[i][k], (int)k, n);
  }
  return NULL;
}

/* One generation: start the threads, join them, free every other block they made and keep the
 * rest for the next generation. */
static void generation(void) {
  pthread_t t[GEN_THREADS];
  gen_seed++;
  for (size_t i = 0; i < GEN_THREADS; i++)
    assert_int_equal(pthread_create(&t[i], NULL, gen_worker, (void *)(uintptr_t)i), 0);
  for (size_t i = 0; i < GEN_THREADS; i++) pthread_join(t[i], NULL);
  for (size_t i = 0; i < GEN_THREADS; i++) {
    int m = 0;
    for (int k = 0; k < GEN_BLOCKS; k++) {
      if (k % 2 == 0) ra_free(gen_made[i][k]);
      else gen_made[i][m++] = gen_made[i][k];
    }
    for (; m < GEN_BLOCKS; m++) gen_made[i][m] = NULL;
    void **swap = gen_left[i];
    gen_left[i] = gen_made[i];
    gen_made[i] = swap;
  }
}

static void test_thread_generations(void **state) {
  (void)state;
  /* The main thread has a heap of its own (as in any program whose malloc is ramalloc). */
  for (size_t i = 0; i < GEN_THREADS; i++) {
    gen_left[i] = ra_calloc(GEN_BLOCKS, sizeof(void *));
    gen_made[i] = ra_calloc(GEN_BLOCKS, sizeof(void *));
    assert_true(gen_left[i] && gen_made[i]);
  }
  ra_collect(true);
  size_t base = committed(), peak25 = 0, peak = 0;
  /* Scaled down (sanitizer builds: 50 generations), the first point is 12, not 6: six generations
   * are short of the steady state there (their peak measured 3.2-5.4 MiB, twelve's stays above). */
  const int gens = 200 / RA_TEST_SCALE, early = RA_TEST_SCALE == 1 ? 25 : 12;
  for (int g = 1; g <= gens; g++) {
    generation();
    /* The pass the purger thread runs (not forced: only what waited the delay goes back, and
     * abandoned chunks are swept), here at a fixed point: on a loaded machine the purger thread
     * itself can fall behind, and the peak then measured the scheduler (12 -> 19 MiB in a CI run). */
    ra_collect(false);
    size_t c = committed() - base;
    if (c > peak) peak = c;
    if (g == early) peak25 = peak;
  }
  printf("thread generations: committed peak %zu KiB after %d generations, %zu KiB after %d\n", peak25 >> 10,
         early, peak >> 10, gens);
  /* Flat: later generations reuse the memory of earlier ones. */
  assert_true(peak <= peak25 + peak25 / 4 + 2 * RA_MiB);
  /* glibc's peak RSS for this program is 19-26 MiB over 25-200 generations (tests/shapes/generations.c;
   * docs/memory-return.md): stay under 1.5x of its 17 MiB floor, measured as committed bytes. */
  if (RA_TEST_SCALE == 1) assert_true(peak <= 25 * RA_MiB);
  for (size_t i = 0; i < GEN_THREADS; i++) {
    for (int k = 0; k < GEN_BLOCKS; k++) ra_free(gen_left[i][k]);
    ra_free(gen_left[i]);
    ra_free(gen_made[i]);
  }
}

/* ---- a quiet program ---------------------------------------------------------------------------- */

enum { QUIET_MAX = 400000 };
static void *quiet_blocks[QUIET_MAX];

static void test_quiet_program_gives_back(void **state) {
  (void)state;
#if RA_TEST_SANITIZED
  skip();
#endif
  ra_collect(true);
  FILE *f = fopen("/proc/self/clear_refs", "w");
  if (f) {
    fputs("5", f);
    fclose(f);
  }
  rt_rng_t r;
  rt_rng_seed(&r, 12);
  size_t total = 0;
  int n = 0;
  while (total < RA_GiB && n < QUIET_MAX) {
    uint64_t x = rt_rng_next(&r) % 100;
    size_t s = x < 80 ? rt_rng_range(&r, 16, 1024) : x < 97 ? rt_rng_range(&r, 1024, 65536)
                                                          : rt_rng_range(&r, 65536, RA_MiB);
    quiet_blocks[n] = ra_malloc(s);
    assert_non_null(quiet_blocks[n]);
    memset(quiet_blocks[n], 0x5c, s);
    total += s;
    n++;
  }
  size_t peak = status_kib("VmRSS:");
  for (int i = 0; i < n; i++) ra_free(quiet_blocks[i]);
  /* Light activity: pairs that stay on the fast paths, every 10 ms, for 2 s at most. */
  void *hold[300];
  uint64_t t0 = now_ms();
  size_t rss = peak;
  while (now_ms() - t0 < 2000) {
    for (int k = 0; k < 300; k++) {
      hold[k] = ra_malloc(16 + (size_t)(k % 8) * 16);
      assert_non_null(hold[k]);
    }
    for (int k = 0; k < 300; k++) ra_free(hold[k]);
    usleep(10 * 1000);
    rss = status_kib("VmRSS:");
  }
  printf("quiet program: VmRSS %zu KiB at the peak, %zu KiB after %llu ms of light activity (%.1f%%); "
         "committed %zu KiB\n",
         peak, rss, (unsigned long long)(now_ms() - t0), 100.0 * (double)rss / (double)peak, committed() >> 10);
  assert_true(rss * 20 <= peak);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_thread_generations),
      cmocka_unit_test(test_quiet_program_gives_back),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
