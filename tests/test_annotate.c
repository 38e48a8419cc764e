/* ramalloc tells AddressSanitizer about its blocks (allocator/annotate.h; docs/robustness.md,
 * "Sanitizers and valgrind"). In the ASan build (RAMALLOC_SANITIZE=address,...) every scenario runs
 * in a child process (this program re-executed with "--child NAME"): the child says on stdout the
 * address it is about to read, then reads it; the parent checks that the child died with ASan's
 * report naming that very address:
 *
 *   ERROR: AddressSanitizer: use-after-poison on address 0x...
 *   READ of size 1 at 0x... thread T0
 *
 * The "clean" scenarios do everything a correct program may do (all size kinds, calloc, realloc up
 * and down, aligned blocks, the usable size, frees from other threads, the heap walks that follow
 * free lists) and must end normally with nothing on stderr. In any other build there is nothing to
 * observe: the program says so and exits 77, which ctest reports as skipped. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_common.h"
#include "internal.h"
#include "test_child.h"

extern char **environ;

/* ================================================================================================
 * The child
 * ================================================================================================ */

/* Read one byte the compiler cannot drop or foresee. */
static void touch(const void *p) {
  const volatile uint8_t *b = p;
  uint8_t v = *b;
  __asm__ volatile("" : : "r"(v));
}

static void *launder(void *p) {
  __asm__ volatile("" : "+r"(p));
  return p;
}

/* Announce the address the next read must be reported at, then read it. */
static void bad_read(const void *at) {
  say("expect:0x%" PRIxPTR "\n", (uintptr_t)at);
  touch(at);
  say("survived\n"); /* not reached when the byte is poisoned */
}

static void pattern(uint8_t *p, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(seed + i * 13u);
}
static void pattern_check(const uint8_t *p, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; i++) CHECK(p[i] == (uint8_t)(seed + i * 13u), "byte %zu of %p changed", i, (void *)p);
}

static void *free_in_thread(void *p) {
  ra_free(p);
  return NULL;
}

static void free_remotely(void *p) {
  pthread_t t;
  CHECK(pthread_create(&t, NULL, free_in_thread, p) == 0, "pthread_create");
  pthread_join(t, NULL);
}

/* A freed block, read at offset `off`. */
static void uaf(size_t size, size_t off) {
  uint8_t *keep = ra_malloc(size); /* a neighbour stays live: the page (or chunk) stays in use */
  uint8_t *p = ra_malloc(size);
  CHECK(keep != NULL && p != NULL, "malloc(%zu)", size);
  pattern(p, size, 1);
  ra_free(launder(p));
  bad_read(p + off);
  ra_free(keep);
}

/* One byte past the requested size. */
static void past_end(size_t size) {
  uint8_t *p = ra_malloc(size);
  CHECK(p != NULL, "malloc(%zu)", size); /* (ra_usable_size(p) would grant the rest of the block) */
  pattern(p, size, 2);
  bad_read(p + size);
}

/* Everything a correct program does, in loops; nothing may be reported. */
static bool count_visit(const ra_visit_info_t *info, void *arg) {
  (void)info;
  ++*(size_t *)arg;
  return true;
}

typedef struct xfer_s {
  void *blocks[256];
  size_t n;
} xfer_t;

static void *xfer_free(void *arg) {
  xfer_t *x = arg;
  for (size_t i = 0; i < x->n; i++) ra_free(x->blocks[i]);
  return NULL;
}

static void *xfer_alloc(void *arg) {
  xfer_t *x = arg;
  for (size_t i = 0; i < x->n; i++) {
    size_t n = 16 + (i * 37) % 3000;
    x->blocks[i] = ra_malloc(n);
    CHECK(x->blocks[i] != NULL, "malloc in a thread");
    memset(x->blocks[i], (int)i, n);
  }
  return NULL;
}

static void clean_use(void) {
  static const size_t sizes[] = {0, 1, 7, 8, 15, 16, 17, 20, 100, 1000, 1024, 1025, 8191, 9000, 65536, 70000,
                                 300000, 2u << 20, (2u << 20) + 1, 5u << 20, 9u << 20};
  enum { NS = sizeof sizes / sizeof sizes[0] };
  rt_rng_t rng;
  rt_rng_seed(&rng, 42);
  for (int round = 0; round < 3; round++) {
    void *p[NS];
    for (size_t i = 0; i < NS; i++) {
      size_t n = sizes[i];
      p[i] = (i % 2) ? ra_calloc(1, n) : ra_malloc(n);
      CHECK(p[i] != NULL, "malloc(%zu)", n);
      if (i % 2)
        for (size_t k = 0; k < n; k++) CHECK(((uint8_t *)p[i])[k] == 0, "calloc(%zu) byte %zu", n, k);
      pattern(p[i], n, (unsigned)i);
    }
    for (size_t i = 0; i < NS; i++) {
      /* up, then down, then to what usable_size grants */
      size_t n = sizes[i], up = n * 2 + 3, down = n / 3;
      uint8_t *q = ra_realloc(p[i], up);
      CHECK(q != NULL, "realloc up");
      pattern_check(q, n, (unsigned)i);
      pattern(q, up, (unsigned)i + 7);
      q = ra_realloc(q, down == 0 ? 1 : down);
      CHECK(q != NULL, "realloc down");
      pattern_check(q, down, (unsigned)i + 7);
      size_t u = ra_usable_size(q);
      memset(q, 0x5a, u); /* every usable byte may be written */
      p[i] = q;
    }
    for (size_t i = 0; i < NS; i++) ra_free(p[i]);
    /* aligned blocks, small and huge */
    for (size_t a = 32; a <= ((size_t)8 << 20); a <<= 1) {
      size_t n = rt_rng_range(&rng, 1, 3 * a);
      uint8_t *q = ra_aligned_alloc(a, n);
      CHECK(q != NULL && ((uintptr_t)q & (a - 1)) == 0, "aligned_alloc(%zu, %zu)", a, n);
      pattern(q, n, 3);
      void *r = NULL;
      CHECK(ra_posix_memalign(&r, a, n / 2) == 0, "posix_memalign");
      memset(r, 1, n / 2);
      q = ra_realloc(q, n + 100);
      CHECK(q != NULL, "realloc of an aligned block");
      pattern_check(q, n, 3);
      ra_free(q);
      ra_free(r);
    }
    /* random churn in small classes (the fast paths) */
    void *slot[512] = {0};
    size_t len[512] = {0};
    for (int k = 0; k < 20000; k++) {
      size_t s = rt_rng_next(&rng) % 512;
      if (slot[s] != NULL) {
        pattern_check(slot[s], len[s], (unsigned)s);
        ra_free(slot[s]);
      }
      len[s] = rt_rng_range(&rng, 0, (k % 7 == 0) ? 20000 : 400);
      slot[s] = (k % 5 == 0) ? ra_calloc(len[s], 1) : ra_malloc(len[s]);
      CHECK(slot[s] != NULL, "malloc");
      pattern(slot[s], len[s], (unsigned)s);
    }
    /* the walks that follow free lists, and the validator */
    size_t seen = 0;
    ra_visit(RA_VISIT_ALL, count_visit, &seen);
    CHECK(seen > 0, "ra_visit saw nothing");
    ra_stats_t st;
    ra_stats_get(&st);
    ra_dump_layout(-1);
    CHECK(_ra_heap_validate(), "validator");
    for (size_t s = 0; s < 512; s++) ra_free(slot[s]);
    /* frees from other threads: onto remote lists, collected by this thread later */
    xfer_t x = {.n = 256};
    for (size_t i = 0; i < x.n; i++) {
      x.blocks[i] = ra_malloc(16 + (i * 53) % 5000);
      CHECK(x.blocks[i] != NULL, "malloc");
    }
    pthread_t t;
    CHECK(pthread_create(&t, NULL, xfer_free, &x) == 0, "pthread_create");
    pthread_join(t, NULL);
    /* another thread's blocks, freed here */
    CHECK(pthread_create(&t, NULL, xfer_alloc, &x) == 0, "pthread_create");
    pthread_join(t, NULL);
    for (size_t i = 0; i < x.n; i++) ra_free(x.blocks[i]);
    for (int k = 0; k < 4000; k++) ra_free(ra_malloc(16 + (size_t)k % 5000)); /* reuse what came back */
    CHECK(_ra_heap_validate(), "validator after remote frees");
    ra_collect(true);
  }
  say("clean-done\n");
}

static int child_main(const char *name) {
  if (strcmp(name, "uaf_small") == 0) uaf(40, 0);
  else if (strcmp(name, "uaf_small_inner") == 0) uaf(40, 24);
  else if (strcmp(name, "uaf_medium") == 0) uaf(20000, 10000);
  else if (strcmp(name, "uaf_large") == 0) uaf(300000, 200000);
  else if (strcmp(name, "uaf_huge") == 0) uaf((size_t)6 << 20, (size_t)5 << 20);
  else if (strcmp(name, "uaf_remote") == 0) {
    /* freed by another thread: it waits on the page's remote list, poisoned */
    uint8_t *keep = ra_malloc(48), *p = ra_malloc(48);
    CHECK(keep != NULL && p != NULL, "malloc");
    free_remotely(p);
    bad_read(p + 8);
  } else if (strcmp(name, "uaf_aligned") == 0) {
    uint8_t *keep = ra_malloc(100), *p = ra_aligned_alloc(256, 100);
    CHECK(keep != NULL && p != NULL, "aligned_alloc");
    ra_free(launder(p));
    bad_read(p);
  } else if (strcmp(name, "uaf_realloc_moved") == 0) {
    uint8_t *p = ra_malloc(100);
    CHECK(p != NULL, "malloc");
    uint8_t *q = ra_realloc(p, 5000);
    CHECK(q != NULL && q != p, "realloc did not move");
    bad_read(p + 50);
  } else if (strcmp(name, "past_end_small") == 0) past_end(20);
  else if (strcmp(name, "past_end_medium") == 0) past_end(9000 + 3);
  else if (strcmp(name, "past_end_large") == 0) past_end(300000 + 5);
  else if (strcmp(name, "past_end_huge") == 0) past_end(((size_t)3 << 20) + 5);
  else if (strcmp(name, "past_end_calloc") == 0) {
    uint8_t *p = ra_calloc(3, 11);
    CHECK(p != NULL, "calloc");
    bad_read(p + 33);
  } else if (strcmp(name, "past_end_realloc_shrunk") == 0) {
    uint8_t *p = ra_malloc(1000);
    uint8_t *q = ra_realloc(p, 600); /* stays in place (600 >= 1024 / 2) */
    CHECK(q == p, "realloc(1000 -> 600) moved");
    touch(q + 599);
    bad_read(q + 600);
  } else if (strcmp(name, "past_end_realloc_grown") == 0) {
    uint8_t *p = ra_malloc(1000);
    uint8_t *q = ra_realloc(p, 1010); /* stays in place (class 1024) */
    CHECK(q == p, "realloc(1000 -> 1010) moved");
    touch(q + 1009);
    bad_read(q + 1010);
  } else if (strcmp(name, "fresh_page_tail") == 0) {
    /* the uncarved part of a page: never handed out */
    uint8_t *p = ra_malloc(4000);
    CHECK(p != NULL, "malloc");
    bad_read(p + 40000);
  } else if (strcmp(name, "clean") == 0) clean_use();
  else {
    say("FAIL: no scenario %s\n", name);
    return 2;
  }
  return 0;
}

/* ================================================================================================
 * The parent
 * ================================================================================================ */

typedef struct run_s {
  char out[4096];
  char err[65536];
  int status;
} run_t;

static const char *self_exe;

/* The scenario `name` in a child, with RAMALLOC_COMMIT=overcommit (freed memory stays readable: only
 * ASan can object); both output streams are collected. */
static void run_child(run_t *r, const char *name) {
  static const char *const drop[] = {"RAMALLOC_COMMIT=", NULL};
  static const char *const add[] = {"RAMALLOC_COMMIT=overcommit", NULL};
  char *argv[] = {(char *)self_exe, (char *)"--child", (char *)name, NULL};
  child_exec_t c = {self_exe, argv, drop, add, r->out, sizeof r->out, r->err, sizeof r->err};
  r->status = child_exec(&c);
}

static void show(const run_t *r) { print_message("child stdout:\n%s\nchild stderr:\n%s\n", r->out, r->err); }

/* The child must die of ASan's report on the address it announced. */
static void test_report(void **state) {
  const char *name = *state;
  if (!RA_ASAN) skip();
  run_t r;
  run_child(&r, name);
  const char *e = strstr(r.out, "expect:");
  if (e == NULL || strstr(r.out, "FAIL") != NULL) {
    show(&r);
    fail_msg("%s: the child did not get to its read", name);
  }
  char addr[64];
  size_t k = 0;
  for (e += 7; *e && *e != '\n' && k < sizeof addr - 1;) addr[k++] = *e++;
  addr[k] = 0;
  char want[160], read_line[160];
  snprintf(want, sizeof want, "ERROR: AddressSanitizer: use-after-poison on address %s ", addr);
  snprintf(read_line, sizeof read_line, "READ of size 1 at %s thread T0", addr);
  if (strstr(r.out, "survived") != NULL || strstr(r.err, want) == NULL || strstr(r.err, read_line) == NULL ||
      !(WIFEXITED(r.status) && WEXITSTATUS(r.status) != 0)) {
    show(&r);
    fail_msg("%s: want a report starting \"%s\" and the child to fail", name, want);
  }
}

/* The child must end normally and say nothing on stderr. */
static void test_clean(void **state) {
  const char *name = *state;
  if (!RA_ASAN) skip();
  run_t r;
  run_child(&r, name);
  if (!(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0) || r.err[0] != 0 || strstr(r.out, "clean-done") == NULL) {
    show(&r);
    fail_msg("%s: a correct program drew a report or failed", name);
  }
}

static const char *const report_names[] = {
    "uaf_small", "uaf_small_inner", "uaf_medium", "uaf_large", "uaf_huge", "uaf_remote", "uaf_aligned",
    "uaf_realloc_moved", "past_end_small", "past_end_medium", "past_end_large", "past_end_huge", "past_end_calloc",
    "past_end_realloc_shrunk", "past_end_realloc_grown", "fresh_page_tail",
};
enum { NREPORT = sizeof report_names / sizeof report_names[0] };

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "--child") == 0) return child_main(argv[2]);
  self_exe = argv[0];
  if (!RA_ASAN) {
    printf("SKIP: needs a build with AddressSanitizer (-DRAMALLOC_SANITIZE=address,undefined)\n");
    return 77; /* ctest's SKIP_RETURN_CODE */
  }
  static struct CMUnitTest tests[NREPORT + 1];
  static char names[NREPORT + 1][64];
  for (size_t i = 0; i < NREPORT; i++) {
    snprintf(names[i], sizeof names[i], "asan_reports/%s", report_names[i]);
    tests[i] = (struct CMUnitTest){names[i], test_report, NULL, NULL, (void *)report_names[i]};
  }
  tests[NREPORT] = (struct CMUnitTest){"asan_quiet/clean", test_clean, NULL, NULL, (void *)"clean"};
  return _cmocka_run_group_tests("annotate", tests, NREPORT + 1, NULL, NULL);
}
