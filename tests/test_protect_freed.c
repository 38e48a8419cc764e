/* RAMALLOC_PROTECT_FREED (on by default): a freed large block (> 64 KiB, one block per span) or huge
 * block is inaccessible until its memory is reused, so a use after free faults at the address
 * used, as glibc's unmapped blocks do. Each access runs in a forked child whose SIGSEGV handler
 * checks the fault address. The memory must stay warm (reused without new page faults) and every
 * way it can be reused (the same size, other sizes, a huge block over a page chunk and the
 * reverse, after a purge in each purge mode, with guard pages) must find it plain memory again.
 * ctest runs the suite in both commit modes, with RAMALLOC_PURGE=reset and with guard pages. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "internal.h"
#include "test_child.h"
#include "ramalloc.h"

#ifndef RA_TEST_SANITIZED
#define RA_TEST_SANITIZED 0
#endif

/* Exit codes of a child: 42 faulted at the expected address, 43 faulted elsewhere, 0 no fault. */
static void expect_fault_in_child(void (*fn)(size_t), size_t arg, const char *what) {
  int st = child_call_faulting(fn, arg);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 42)
    fail_msg("%s (%zu): the child %s %d; expected a fault at the address written (exit 42)", what, arg,
             WIFEXITED(st) ? "exited with" : "died of signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
}

static void require_plain_build(void) {
  if (RA_TEST_SANITIZED) { /* ASan reports the access to the freed (poisoned) block first */
    print_message("sanitizer build: ASan stops the use after free before the hardware does\n");
    skip();
  }
  if (_ra_protect_freed == 0 || _ra_option(RA_OPT_PURGE_DELAY_MS) == 0) {
    print_message("RAMALLOC_PROTECT_FREED=0 or RAMALLOC_PURGE_DELAY_MS=0: freed blocks are not protected\n");
    skip();
  }
}

/* The child: a block of n bytes, written, freed, then written again at `where` (0 first byte, 1
 * middle, 2 last byte), with another block of the same kind kept alive or not (`keep`). */
static size_t g_where;
static bool g_keep;
static void use_after_free(size_t n) {
  uint8_t *keep = g_keep ? ra_malloc(n) : NULL;
  uint8_t *p = ra_malloc(n);
  if (p == NULL) _exit(46);
  memset(p, 0x11, n);
  size_t off = g_where == 0 ? 0 : g_where == 1 ? n / 2 + 17 : n - 1;
  /* The first 64 KiB of each chunk past a huge block's first hold a header once the block is
   * freed (docs/robustness.md): step back out of them. */
  if (n > RA_LARGE_MAX && (((uintptr_t)p + off) & RA_CHUNK_MASK) < RA_SLICE_SIZE) off -= RA_SLICE_SIZE;
  ra_free(p);
  child_expect_fault = (uintptr_t)(p + off);
  ((volatile uint8_t *)p)[off] = 0x5A;
  (void)keep;
}

/* With guard pages a freed huge block is decommitted at once (docs/robustness.md): it faults in
 * protect mode only. */
static bool huge_protected(void) { return !_ra_guard_pages || _ra_os_commit_mode() == RA_COMMIT_PROTECT; }

/* Is a freed block of n bytes protected (RAMALLOC_PROTECT_FREED: blocks up to that size)? */
static bool protected_size(size_t n) {
  size_t block = n <= RA_LARGE_MAX ? _ra_class_size[_ra_size_class(n)] : _ra_align_up(n, _ra_os_info()->page_size);
  return block <= _ra_protect_freed && (n <= RA_LARGE_MAX || huge_protected());
}

static void test_use_after_free_faults(void **state) {
  (void)state;
  require_plain_build();
  const size_t sizes[] = {65536 + 1, 256 << 10, 1 << 20, 2 << 20, (2 << 20) + 1, 8 << 20, 20 << 20};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
    if (protected_size(sizes[i]))
    for (g_where = 0; g_where < 3; g_where++)
      for (int k = 0; k < 2; k++) {
        g_keep = k;
        expect_fault_in_child(use_after_free, sizes[i], "write to a freed block");
      }
}

/* Reads fault too, and a read of a freed block whose span was taken again does not. */
static void read_after_free(size_t n) {
  uint8_t *p = ra_malloc(n);
  if (p == NULL) _exit(46);
  memset(p, 0x22, n);
  ra_free(p);
  child_expect_fault = (uintptr_t)(p + 100);
  (void)((volatile uint8_t *)p)[100];
}

static void test_read_after_free_faults(void **state) {
  (void)state;
  require_plain_build();
  expect_fault_in_child(read_after_free, 256 << 10, "read of a freed large block");
  if (protected_size(8 << 20)) expect_fault_in_child(read_after_free, 8 << 20, "read of a freed huge block");
}

static long minor_faults(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_minflt;
}

/* Reuse is warm: the next block of the size takes the same memory, writable, with no page fault
 * (mprotect keeps the pages); nothing more is committed. */
static void test_reuse_is_warm(void **state) {
  (void)state;
  const size_t sizes[] = {256 << 10, 1 << 20, 8 << 20};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    size_t n = sizes[i];
    if (n > RA_LARGE_MAX && _ra_guard_pages) continue; /* guarded huge blocks are decommitted at free */
    uint8_t *p = ra_malloc(n);
    assert_non_null(p);
    memset(p, 0x33, n);
    ra_free(p);
    ra_stats_t before, after;
    ra_stats_get(&before);
    long f0 = minor_faults();
    uint8_t *q = ra_malloc(n);
    assert_non_null(q);
    memset(q, 0x44, n);
    long f1 = minor_faults();
    ra_stats_get(&after);
    if (q != p) fail_msg("%zu bytes: the block freed last was not reused (%p, then %p)", n, (void *)p, (void *)q);
    /* a fresh block would fault once per 4 KiB page: 64 for 256 KiB, 2048 for 8 MiB */
    /* (Not under ASan: unpoisoning a large range gives its shadow pages back to the OS, which then
     * fault in again, whatever the allocator does with the block.) */
    if (!RA_TEST_SANITIZED && f1 - f0 > 8) fail_msg("%zu bytes: %ld page faults reusing a freed block", n, f1 - f0);
    assert_true(after.committed <= before.committed);
    ra_free(q);
  }
}

static void fill_check(uint8_t *p, size_t n, uint8_t v) {
  memset(p, v, n);
  for (size_t i = 0; i < n; i += 4093) assert_int_equal(p[i], v);
  assert_int_equal(p[n - 1], v);
}

/* Every way the memory of freed large and huge blocks comes back: other classes in the same
 * slices, huge blocks over released page chunks and page chunks over freed huge runs, after a
 * purge (ra_collect) or not. Every byte handed out must be writable; the validator holds. */
static void test_every_reuse_is_writable(void **state) {
  (void)state;
  for (int round = 0; round < 4; round++) {
    enum { N = 24 };
    uint8_t *big[N];
    for (int i = 0; i < N; i++) {
      size_t n = i % 3 == 0 ? (size_t)(100 << 10) + (size_t)i * 4096 : i % 3 == 1 ? (size_t)1 << 20 : (size_t)6 << 20;
      big[i] = ra_malloc(n);
      assert_non_null(big[i]);
      fill_check(big[i], n, (uint8_t)i);
    }
    for (int i = 0; i < N; i += 1 + (round & 1)) {
      ra_free(big[i]);
      big[i] = NULL;
    }
    if (round >= 2) ra_collect(true);
    /* other sizes into the freed memory: small, medium, large, huge */
    enum { M = 3000 };
    static uint8_t *other[M];
    for (int i = 0; i < M; i++) {
      size_t n = i % 5 == 0 ? 48 : i % 5 == 1 ? 3000 : i % 5 == 2 ? 40000 : i % 5 == 3 ? 200000 : (i % 40 == 4 ? 5 << 20 : 700);
      other[i] = ra_malloc(n);
      assert_non_null(other[i]);
      fill_check(other[i], n, (uint8_t)(i + 1));
    }
    assert_true(_ra_heap_validate());
    for (int i = 0; i < M; i++) ra_free(other[i]);
    for (int i = 0; i < N; i++) ra_free(big[i]);
    if (round & 1) ra_collect(true);
    assert_true(_ra_heap_validate());
  }
  /* realloc through large and huge sizes moves blocks out of freed spans and back */
  uint8_t *r = ra_malloc(100);
  for (size_t n = 100; n < ((size_t)12 << 20); n = n * 3 / 2 + 4096) {
    r = ra_realloc(r, n);
    assert_non_null(r);
    r[n - 1] = 1;
  }
  for (size_t n = (size_t)12 << 20; n > 100; n = n * 2 / 3) {
    r = ra_realloc(r, n);
    assert_non_null(r);
    r[n - 1] = 2;
  }
  ra_free(r);
}

/* Is the freed large block at p inaccessible now (its first slice in the chunk's noaccess map)? */
static bool freed_block_protected(const void *p) {
  ra_chunk_t *c = _ra_chunk_of(p);
  return (c->noaccess >> _ra_slice_index(c, p)) & 1;
}

/* A program that frees and at once reuses large blocks gets a sample of them protected (two
 * mprotects per step would cost it more than the short window is worth); one whose freed block
 * waits before its memory is reused is back to protecting every free. */
static void test_churn_is_sampled(void **state) {
  (void)state;
  if (_ra_protect_freed == 0 || _ra_option(RA_OPT_PURGE_DELAY_MS) == 0) skip();
  enum { STEPS = 640 };
  int protected_frees = 0;
  for (int i = 0; i < STEPS; i++) {
    uint8_t *p = ra_malloc(256 << 10);
    assert_non_null(p);
    p[i] = 1;
    ra_free(p);
    protected_frees += freed_block_protected(p);
  }
  /* one in 64 at the least (the backoff's longest skip is 63), far from all of them */
  if (protected_frees < STEPS / 64 || protected_frees > STEPS / 4)
    fail_msg("%d of %d quickly reused large blocks were protected at free", protected_frees, STEPS);
  /* The skips lapse once reuse stops being quick: a block freed after a pause is protected. */
  struct timespec pause = {0, 250 * 1000 * 1000};
  nanosleep(&pause, NULL);
  uint8_t *p = ra_malloc(256 << 10);
  assert_non_null(p);
  ra_free(p);
  assert_true(freed_block_protected(p));
  ra_free(ra_malloc(256 << 10)); /* lift it */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_use_after_free_faults),
      cmocka_unit_test(test_read_after_free_faults),
      cmocka_unit_test(test_reuse_is_warm),
      cmocka_unit_test(test_every_reuse_is_writable),
      cmocka_unit_test(test_churn_is_sampled),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
