/* RAMALLOC_GUARD_PAGES=1 (ctest sets it): the last OS page of every page (span) and the page after
 * every huge block are inaccessible, so a program that runs off the end of a page's last block, or
 * off the end of a huge block, faults exactly at the guard. Each overrun runs in a forked child
 * whose SIGSEGV handler checks the fault address. Guards must also go away with their pages:
 * memory that held a guard is reused by blocks of other sizes without a fault. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "internal.h"
#include "test_child.h"
#include "ramalloc.h"

/* Exit codes of a child: 42 faulted at the guard, 43 faulted elsewhere, 0 ran off the end without
 * a fault, 44 page without a guard, 45 never reached a page's last block. */
static void expect_guard_fault(void (*fn)(size_t), size_t arg, const char *what) {
  int st = child_call_faulting(fn, arg);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 42)
    fail_msg("%s %zu: the child %s %d; expected a fault exactly at the guard page (exit 42)", what, arg,
             WIFEXITED(st) ? "exited with" : "died of signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
}

static void write_until_fault(uint8_t *from) {
  for (volatile uint8_t *q = from;; q++) *q = 0x5A;
}

/* Allocate blocks of n bytes until one is the last block of its page, then write from it onwards. */
static void overrun_page(size_t n) {
  const size_t os_page = _ra_os_info()->page_size;
  for (int i = 0; i < 300000; i++) {
    uint8_t *p = ra_malloc(n);
    if (p == NULL) _exit(46);
    ra_chunk_t *c = _ra_chunk_of(p);
    ra_page_t *pg = _ra_page_of(c, p);
    uint8_t *start = _ra_page_start(c, pg);
    if ((size_t)(p - start) / pg->block_size + 1 != pg->reserved) continue;
    if (!pg->guarded) _exit(44);
    uint8_t *guard = start + (size_t)pg->slice_count * RA_SLICE_SIZE - os_page;
    memset(p, 0xA5, (size_t)(guard - p)); /* the block and the tail before the guard: no fault */
    child_expect_fault = (uintptr_t)guard;
    write_until_fault(p);
  }
  _exit(45);
}

static void overrun_huge(size_t n) {
  uint8_t *p = ra_malloc(n);
  if (p == NULL) _exit(46);
  child_expect_fault = (uintptr_t)(p + ra_usable_size(p));
  write_until_fault(p);
}

static void overrun_huge_aligned(size_t align) {
  void *p = NULL;
  if (ra_posix_memalign(&p, align, 3 * ((size_t)1 << 20) + 1000) != 0) _exit(46);
  child_expect_fault = (uintptr_t)p + ra_usable_size(p);
  write_until_fault(p);
}

static void require_guards(void) {
  if (!_ra_guard_pages) {
    print_message("RAMALLOC_GUARD_PAGES is not set: run through ctest (guard, guard_protect)\n");
    skip();
  }
}

#ifndef RA_TEST_SANITIZED
#define RA_TEST_SANITIZED 0
#endif

/* Under AddressSanitizer the guard and the page's tail are poisoned, so ASan reports the overrun
 * before the hardware faults (test_annotate covers that); the fault itself is checked elsewhere. */
static void require_plain_build(void) {
  if (RA_TEST_SANITIZED) {
    print_message("sanitizer build: its instrumentation stops the overrun before the guard\n");
    skip();
  }
}

static void test_page_overrun_faults(void **state) {
  (void)state;
  require_guards();
  require_plain_build();
  /* small, medium and large classes, at class boundaries and between */
  const size_t sizes[] = {16, 48, 100, 1024, 4000, 8192, 12000, 40000, 65536, 70000, 300000, 1 << 20,
                          (2 << 20) - 5};
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) expect_guard_fault(overrun_page, sizes[k], "page of blocks of");
}

static void test_huge_overrun_faults(void **state) {
  (void)state;
  require_guards();
  require_plain_build();
  const size_t sizes[] = {(2 << 20) + 1, (5 << 20) + 100, (4 << 20) - RA_SLICE_SIZE, (8 << 20) - RA_SLICE_SIZE + 1,
                          (33 << 20)};
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) expect_guard_fault(overrun_huge, sizes[k], "huge block of");
  expect_guard_fault(overrun_huge_aligned, 1 << 20, "huge block aligned to");
  expect_guard_fault(overrun_huge_aligned, 8 << 20, "huge block aligned to");
}

/* Pages come and go: a span that ended in a guard is reused by blocks of other sizes, written in
 * full; realloc moves blocks through every kind; everything stays consistent. */
static void test_guards_go_with_their_pages(void **state) {
  (void)state;
  require_guards();
  enum { N = 20000, L = 48 };
  static uint8_t *p[N];
  for (int round = 0; round < 3; round++) {
    for (size_t i = 0; i < N; i++) {
      size_t n = 16 + (i * 37 + (size_t)round * 11) % 2000;
      p[i] = ra_malloc(n);
      assert_non_null(p[i]);
      memset(p[i], (int)(i & 0xFF), ra_usable_size(p[i]));
    }
    for (size_t i = 0; i < N; i++) ra_free(p[i]);
    /* large blocks over the spans the small pages (and their guards) had */
    uint8_t *q[L];
    for (size_t j = 0; j < L; j++) {
      q[j] = ra_malloc(((size_t)1 << 20) + j * 4096);
      assert_non_null(q[j]);
      memset(q[j], 0x77, ra_usable_size(q[j]));
    }
    for (size_t j = 0; j < L; j++) ra_free(q[j]);
    /* a block grown from 16 bytes to 12 MiB and back, content checked */
    uint8_t *g = ra_malloc(16);
    assert_non_null(g);
    memset(g, 0x3C, 16);
    size_t have = 16;
    for (size_t n = 24; n <= ((size_t)12 << 20); n = n * 3 / 2) {
      g = ra_realloc(g, n);
      assert_non_null(g);
      for (size_t i = 0; i < have; i += 61) assert_int_equal(g[i], 0x3C);
      memset(g, 0x3C, n);
      have = n;
    }
    g = ra_realloc(g, 100);
    assert_non_null(g);
    for (size_t i = 0; i < 100; i++) assert_int_equal(g[i], 0x3C);
    ra_free(g);
    assert_true(_ra_heap_validate());
  }
  ra_stats_t st;
  ra_stats_get(&st);
  assert_true(st.protect_calls > 0);
  ra_collect(true);
}

static size_t count_maps(void) {
  FILE *f = fopen("/proc/self/maps", "r");
  assert_non_null(f);
  size_t lines = 0;
  for (int ch; (ch = fgetc(f)) != EOF;) lines += ch == '\n';
  fclose(f);
  return lines;
}

/* The price in mappings: each guard splits its arena's mapping, so a live page adds one or two
 * mappings (vm.max_map_count, about 65530, bounds the pages a process can have in this mode). */
static void test_mapping_cost(void **state) {
  (void)state;
  require_guards();
  ra_collect(true);
  ra_stats_t st0, st1;
  ra_stats_get(&st0);
  size_t maps0 = count_maps();
  enum { N = 12000 };
  static void *p[N];
  for (size_t i = 0; i < N; i++) {
    p[i] = ra_malloc(1000);
    assert_non_null(p[i]);
  }
  ra_stats_get(&st1);
  size_t maps1 = count_maps(), pages = st1.pages - st0.pages;
  print_message("guard pages: %zu live pages of 1 KiB blocks added %zu mappings (%zu -> %zu), committed %zu KiB\n",
                pages, maps1 - maps0, maps0, maps1, (st1.committed - st0.committed) >> 10);
  assert_true(pages >= N / 64);
  assert_true(maps1 >= maps0 + pages);
  assert_true(maps1 <= maps0 + 2 * pages + 8);
  for (size_t i = 0; i < N; i++) ra_free(p[i]);
  ra_collect(true);
  size_t maps2 = count_maps();
  print_message("guard pages: after freeing and ra_collect(true): %zu mappings\n", maps2);
  assert_true(maps2 <= maps0 + 8);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_page_overrun_faults),
      cmocka_unit_test(test_huge_overrun_faults),
      cmocka_unit_test(test_guards_go_with_their_pages),
      cmocka_unit_test(test_mapping_cost),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
