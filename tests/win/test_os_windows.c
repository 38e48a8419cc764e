/* The OS layer on Windows (allocator/os_windows.c), checked against what Windows itself reports:
 * VirtualQuery's state of every range after each operation (MEM_RESERVE, MEM_COMMIT, MEM_RESERVE
 * again after decommit, MEM_FREE after release), access violations when reserved memory is touched
 * (caught by a vectored exception handler, see win_test.h), the 64 KiB granularity of
 * reservations, and both ways of making an aligned reservation (VirtualAlloc2 with an alignment
 * requirement, and over-reserve-and-retry). The Windows counterpart of tests/test_os.c.
 * Built from the OS layer source alone, with its test hooks (RA_OS_TEST_HOOKS). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "os.h"
#include "win_test.h"

void _ra_os_windows_test_use_virtual_alloc2(bool use);
bool _ra_os_windows_test_has_virtual_alloc2(void);

#define KiB ((size_t)1024)
#define MiB ((size_t)1024 * 1024)

static size_t page, gran;

static int setup(void **state) {
  (void)state;
  const ra_os_info_t *info = _ra_os_info();
  page = info->page_size;
  gran = info->granularity;
  print_message("os: page %zu, granularity %zu, VirtualAlloc2 %s, MEM_RESET_UNDO %s\n", page, gran,
                _ra_os_windows_test_has_virtual_alloc2() ? "yes" : "no",
                info->has_reset_undo ? "accepted" : "rejected (ERROR_NOT_SUPPORTED from _ra_os_reset_undo)");
  return 0;
}

static void test_info(void **state) {
  (void)state;
  const ra_os_info_t *info = _ra_os_info();
  SYSTEM_INFO si;
  GetSystemInfo(&si);
  assert_int_equal(info->page_size, si.dwPageSize);
  assert_int_equal(info->granularity, si.dwAllocationGranularity);
  assert_int_equal(info->granularity, 64 * KiB);
  assert_false(info->overcommit_strict);
  assert_false(info->commit_splits_mappings);
  _ra_os_set_commit_mode(RA_COMMIT_OVERCOMMIT);
  assert_int_equal(_ra_os_commit_mode(), RA_COMMIT_PROTECT);
}

/* One reservation, followed through every state with VirtualQuery and fault probes. */
static void test_states(void **state) {
  (void)state;
  const size_t size = 4 * MiB;
  uint8_t *p = NULL;
  assert_int_equal(_ra_os_reserve(size, 4 * MiB, (void **)&p), RA_OS_OK);
  assert_non_null(p);
  assert_true(((uintptr_t)p & (4 * MiB - 1)) == 0);

  wt_region_t r = wt_query(p);
  assert_int_equal(r.state, MEM_RESERVE);
  assert_int_equal(r.type, MEM_PRIVATE);
  assert_ptr_equal(r.alloc_base, p);
  assert_ptr_equal(r.base, p);
  assert_int_equal(r.size, size);
  /* reserved memory is not accessible: reads and writes raise access violations */
  assert_true(wt_read_faults(p, NULL));
  assert_int_equal(wt_probe_kind, 0);
  assert_true(wt_write_faults(p + size - 1, 1));
  assert_int_equal(wt_probe_kind, 1);
  assert_int_equal(wt_committed_in(p, size), 0);

  /* commit one 64 KiB slice in the middle: exactly that range becomes MEM_COMMIT/READWRITE */
  uint8_t *s = p + 1 * MiB;
  bool zero = true;
  assert_int_equal(_ra_os_commit(s, 64 * KiB, &zero), RA_OS_OK);
  r = wt_query(s);
  assert_int_equal(r.state, MEM_COMMIT);
  assert_int_equal(r.protect, PAGE_READWRITE);
  assert_ptr_equal(r.base, s);
  assert_int_equal(r.size, 64 * KiB);
  assert_int_equal(wt_query(s - page).state, MEM_RESERVE);
  assert_int_equal(wt_query(s + 64 * KiB).state, MEM_RESERVE);
  assert_int_equal(wt_committed_in(p, size), 64 * KiB);
  uint8_t v = 0xff;
  assert_false(wt_read_faults(s, &v));
  assert_int_equal(v, 0); /* fresh pages read as zeros */
  assert_false(wt_write_faults(s + 64 * KiB - 1, 7));
  assert_true(wt_write_faults(s + 64 * KiB, 7)); /* the page after stays reserved */
  assert_true(wt_read_faults(s - 1, NULL));

  /* content survives a recommit of committed pages */
  memset(s, 0xab, 64 * KiB);
  assert_int_equal(_ra_os_commit(s, 64 * KiB, NULL), RA_OS_OK);
  assert_int_equal(s[100], 0xab);

  /* decommit: MEM_RESERVE again, inaccessible; a later commit reads zeros */
  assert_int_equal(_ra_os_decommit(s, 64 * KiB), RA_OS_OK);
  r = wt_query(s);
  assert_int_equal(r.state, MEM_RESERVE);
  assert_ptr_equal(r.alloc_base, p);
  assert_true(wt_read_faults(s, NULL));
  assert_int_equal(wt_committed_in(p, size), 0);
  assert_int_equal(_ra_os_commit(s, 64 * KiB, NULL), RA_OS_OK);
  for (size_t i = 0; i < 64 * KiB; i += 512) assert_int_equal(s[i], 0);

  /* decommit a single page inside the committed slice: regions split at page granularity */
  assert_int_equal(_ra_os_decommit(s + 8 * KiB, page), RA_OS_OK);
  assert_int_equal(wt_query(s).size, 8 * KiB);
  assert_int_equal(wt_query(s + 8 * KiB).state, MEM_RESERVE);
  assert_int_equal(wt_query(s + 8 * KiB).size, page);
  assert_int_equal(wt_committed_in(p, size), 64 * KiB - page);

  /* reset: stays committed and accessible; reset undo as the OS allows */
  s[0] = 1;
  assert_int_equal(_ra_os_reset(s, 8 * KiB), RA_OS_OK);
  assert_int_equal(wt_query(s).state, MEM_COMMIT);
  assert_false(wt_write_faults(s, 2));
  int undo = _ra_os_reset_undo(s, 8 * KiB);
  if (_ra_os_info()->has_reset_undo) assert_int_equal(undo, RA_OS_OK);
  else assert_int_equal(undo, ERROR_NOT_SUPPORTED);

  /* protect: read-only faults on write only; no access faults on read */
  assert_int_equal(_ra_os_protect(s, page, RA_PROT_READ), RA_OS_OK);
  assert_int_equal(wt_query(s).protect, PAGE_READONLY);
  assert_false(wt_read_faults(s, NULL));
  assert_true(wt_write_faults(s, 3));
  assert_int_equal(_ra_os_protect(s, page, RA_PROT_NONE), RA_OS_OK);
  assert_int_equal(wt_query(s).protect, PAGE_NOACCESS);
  assert_int_equal(wt_query(s).state, MEM_COMMIT); /* still charged */
  assert_true(wt_read_faults(s, NULL));
  assert_int_equal(_ra_os_protect(s, page, RA_PROT_READWRITE), RA_OS_OK);
  assert_false(wt_write_faults(s, 4));

  /* release: the whole reservation is MEM_FREE, whatever was committed in it */
  assert_int_equal(_ra_os_release(p, size), RA_OS_OK);
  assert_int_equal(wt_query(p).state, MEM_FREE);
  assert_int_equal(wt_query(s).state, MEM_FREE);
  assert_int_equal(wt_query(p + size - 1).state, MEM_FREE);
}

/* Sizes are whole 64 KiB units and bases multiples of 64 KiB. */
static void test_granularity(void **state) {
  (void)state;
  static const size_t sizes[] = {4096, 8192, 60 * 1024, 64 * 1024, 68 * 1024, 1000 * 1024};
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    uint8_t *p = NULL;
    assert_int_equal(_ra_os_reserve(sizes[k], 0, (void **)&p), RA_OS_OK);
    assert_true(((uintptr_t)p & (gran - 1)) == 0);
    size_t want = (sizes[k] + gran - 1) / gran * gran;
    wt_region_t r = wt_query(p);
    assert_int_equal(r.state, MEM_RESERVE);
    if (r.size != want) fail_msg("reserve %zu: region of %zu bytes, expected %zu", sizes[k], r.size, want);
    assert_int_equal(wt_query(p + want).alloc_base == p, false);
    assert_int_equal(_ra_os_release(p, sizes[k]), RA_OS_OK);
  }
  void *bad = NULL;
  assert_int_equal(_ra_os_reserve(0, 0, &bad), ERROR_INVALID_PARAMETER);
  assert_int_equal(_ra_os_reserve(gran, 3 * gran, &bad), ERROR_INVALID_PARAMETER);
  assert_int_not_equal(_ra_os_reserve(SIZE_MAX - 100, 0, &bad), RA_OS_OK);
  /* more address space than a 47-bit process has: an error code, not a crash */
  int rc = _ra_os_reserve((size_t)1 << 48, 0, &bad);
  assert_int_not_equal(rc, RA_OS_OK);
}

static void check_aligned(bool use_va2) {
  _ra_os_windows_test_use_virtual_alloc2(use_va2);
  static const size_t aligns[] = {64 * KiB, 128 * KiB, 1 * MiB, 4 * MiB, 64 * MiB, 1024 * MiB};
  for (size_t k = 0; k < sizeof aligns / sizeof aligns[0]; k++) {
    for (int rep = 0; rep < 4; rep++) {
      size_t size = (rep + 1) * 4 * MiB;
      uint8_t *p = NULL;
      assert_int_equal(_ra_os_reserve(size, aligns[k], (void **)&p), RA_OS_OK);
      if (((uintptr_t)p & (aligns[k] - 1)) != 0)
        fail_msg("%s: %p is not aligned to %zu", use_va2 ? "VirtualAlloc2" : "over-reserve", (void *)p, aligns[k]);
      wt_region_t r = wt_query(p);
      assert_int_equal(r.state, MEM_RESERVE);
      assert_ptr_equal(r.alloc_base, p);
      assert_int_equal(r.size, size); /* exactly the size: the over-reservation was given back */
      assert_int_equal(wt_query(p - 1).alloc_base == p, false);
      assert_int_equal(_ra_os_release(p, size), RA_OS_OK);
      assert_int_equal(wt_query(p).state, MEM_FREE);
    }
  }
  _ra_os_windows_test_use_virtual_alloc2(true);
}

static void test_aligned_virtual_alloc2(void **state) {
  (void)state;
  if (!_ra_os_windows_test_has_virtual_alloc2()) {
    print_message("VirtualAlloc2 missing: only over-reserve-and-retry is tested\n");
    skip();
  }
  check_aligned(true);
}

static void test_aligned_over_reserve(void **state) {
  (void)state;
  check_aligned(false);
}

/* Many aligned reservations held at once (address space gets fragmented), both paths, then all
 * released. */
static void test_aligned_many(void **state) {
  (void)state;
  enum { N = 64 };
  static uint8_t *held[N];
  for (int path = 0; path < 2; path++) {
    _ra_os_windows_test_use_virtual_alloc2(path == 0);
    for (int i = 0; i < N; i++) {
      size_t align = (size_t)4 * MiB << (i % 4);
      assert_int_equal(_ra_os_reserve(4 * MiB + (size_t)(i % 3) * gran, align, (void **)&held[i]), RA_OS_OK);
      assert_true(((uintptr_t)held[i] & (align - 1)) == 0);
    }
    for (int i = 0; i < N; i++) assert_int_equal(_ra_os_release(held[i], 0), RA_OS_OK);
  }
  _ra_os_windows_test_use_virtual_alloc2(true);
}

/* Errors are GetLastError codes, and nothing aborts. */
static void test_errors(void **state) {
  (void)state;
  uint8_t *p = NULL;
  assert_int_equal(_ra_os_reserve(gran, 0, (void **)&p), RA_OS_OK);
  assert_int_equal(_ra_os_release(p, gran), RA_OS_OK);
  /* the range is free now: committing or releasing it again fails with an error code */
  assert_int_not_equal(_ra_os_commit(p, page, NULL), RA_OS_OK);
  assert_int_not_equal(_ra_os_release(p, gran), RA_OS_OK);
  assert_int_not_equal(_ra_os_decommit(p, page), RA_OS_OK);
  assert_int_equal(_ra_os_protect(p, page, (ra_prot_t)99), ERROR_INVALID_PARAMETER);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_info),
      cmocka_unit_test(test_states),
      cmocka_unit_test(test_granularity),
      cmocka_unit_test(test_aligned_virtual_alloc2),
      cmocka_unit_test(test_aligned_over_reserve),
      cmocka_unit_test(test_aligned_many),
      cmocka_unit_test(test_errors),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
