/* Tests of the OS layer (allocator/os.h) on POSIX: reservation alignment, what commit, decommit,
 * reset, protect and release do to the pages, in both commit modes. Faults are caught in-process
 * with a SIGSEGV/SIGBUS handler that siglongjmps back to the probe. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "test_common.h"
#include "os.h"

/* ---- fault probes ------------------------------------------------------------------------------ */

/* cmocka installs its own SIGSEGV handler around every test, so each probe installs ours for the
 * duration of the access and puts the previous one back. */
static sigjmp_buf probe_env;

static void probe_handler(int sig) {
  (void)sig;
  siglongjmp(probe_env, 1);
}

typedef struct probe_saved_s {
  struct sigaction segv, bus;
} probe_saved_t;

static void probe_arm(probe_saved_t *saved) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = probe_handler;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_NODEFER;
  sigaction(SIGSEGV, &sa, &saved->segv);
  sigaction(SIGBUS, &sa, &saved->bus);
}

static void probe_disarm(const probe_saved_t *saved) {
  sigaction(SIGSEGV, &saved->segv, NULL);
  sigaction(SIGBUS, &saved->bus, NULL);
}

/* True if reading one byte at p faults. */
static bool read_faults(const void *p) {
  probe_saved_t saved;
  probe_arm(&saved);
  if (sigsetjmp(probe_env, 1) != 0) {
    probe_disarm(&saved);
    return true;
  }
  volatile uint8_t v = *(const volatile uint8_t *)p;
  (void)v;
  probe_disarm(&saved);
  return false;
}

/* True if writing one byte at p faults. The byte written is the byte read, so a successful probe
 * leaves the content as it was (the read itself must not fault: callers check that first). */
static bool write_faults(void *p) {
  probe_saved_t saved;
  probe_arm(&saved);
  if (sigsetjmp(probe_env, 1) != 0) {
    probe_disarm(&saved);
    return true;
  }
  volatile uint8_t *q = (volatile uint8_t *)p;
  uint8_t v = *q;
  *q = v;
  probe_disarm(&saved);
  return false;
}

static bool all_zero(const void *p, size_t n) {
  const uint8_t *b = (const uint8_t *)p;
  for (size_t i = 0; i < n; i++)
    if (b[i] != 0) return false;
  return true;
}

static size_t page(void) { return _ra_os_info()->page_size; }

/* ---- info ------------------------------------------------------------------------------------- */

static void test_info(void **state) {
  (void)state;
  const ra_os_info_t *info = _ra_os_info();
  assert_non_null(info);
  assert_int_equal(info->page_size, (size_t)sysconf(_SC_PAGESIZE));
#if defined(__x86_64__) || defined(__i386__)
  assert_int_equal(info->page_size, 4096);
#endif
  assert_true(info->granularity != 0);
  assert_true((info->granularity & (info->granularity - 1)) == 0);
  assert_true(info->granularity >= info->page_size);
  assert_true(info->granularity % info->page_size == 0);
  /* cached: the same answer every time */
  assert_ptr_equal(_ra_os_info(), info);
}

static void test_mode_roundtrip(void **state) {
  (void)state;
  _ra_os_set_commit_mode(RA_COMMIT_OVERCOMMIT);
  assert_int_equal(_ra_os_commit_mode(), RA_COMMIT_OVERCOMMIT);
  _ra_os_set_commit_mode(RA_COMMIT_PROTECT);
  assert_int_equal(_ra_os_commit_mode(), RA_COMMIT_PROTECT);
}

/* ---- reservation ------------------------------------------------------------------------------ */

static void reserve_aligned_in_mode(ra_commit_mode_t mode) {
  _ra_os_set_commit_mode(mode);
  const size_t aligns[] = {0 /* granularity */, 64 * RA_KiB, 4 * RA_MiB, 32 * RA_MiB};
  for (size_t k = 0; k < sizeof aligns / sizeof aligns[0]; k++) {
    size_t align = aligns[k] ? aligns[k] : _ra_os_info()->granularity;
    void *bases[4];
    for (int i = 0; i < 4; i++) {
      void *base = NULL;
      size_t size = 4 * RA_MiB + (size_t)i * page();
      assert_int_equal(_ra_os_reserve(size, align, &base), RA_OS_OK);
      assert_non_null(base);
      assert_true(rt_is_aligned(base, align));
      /* the whole reserved range can be committed and used, first and last page */
      bool z = true;
      assert_int_equal(_ra_os_commit(base, size, &z), RA_OS_OK);
      uint8_t *b = (uint8_t *)base;
      b[0] = 1;
      b[size - 1] = 2;
      assert_int_equal(b[0], 1);
      assert_int_equal(b[size - 1], 2);
      bases[i] = base;
    }
    for (int i = 0; i < 4; i++) {
      for (int j = 0; j < i; j++) assert_ptr_not_equal(bases[i], bases[j]);
      assert_int_equal(_ra_os_release(bases[i], 4 * RA_MiB + (size_t)i * page()), RA_OS_OK);
    }
  }
  _ra_os_set_commit_mode(RA_COMMIT_PROTECT);
}

static void test_reserve_aligned_protect(void **state) {
  (void)state;
  reserve_aligned_in_mode(RA_COMMIT_PROTECT);
}

static void test_reserve_aligned_overcommit(void **state) {
  (void)state;
  reserve_aligned_in_mode(RA_COMMIT_OVERCOMMIT);
}

/* A reservation far larger than RAM costs nothing (no commit charge). */
static void test_reserve_large(void **state) {
  (void)state;
  const ra_commit_mode_t modes[] = {RA_COMMIT_PROTECT, RA_COMMIT_OVERCOMMIT};
  for (int m = 0; m < 2; m++) {
    _ra_os_set_commit_mode(modes[m]);
    void *base = NULL;
    size_t size = (size_t)64 * RA_GiB;
    assert_int_equal(_ra_os_reserve(size, 4 * RA_MiB, &base), RA_OS_OK);
    assert_true(rt_is_aligned(base, 4 * RA_MiB));
    uint8_t *b = (uint8_t *)base;
    bool z;
    assert_int_equal(_ra_os_commit(b + size - 4 * RA_MiB, 4 * RA_MiB, &z), RA_OS_OK);
    b[size - 1] = 9;
    assert_int_equal(b[size - 1], 9);
    assert_int_equal(_ra_os_release(base, size), RA_OS_OK);
  }
  _ra_os_set_commit_mode(RA_COMMIT_PROTECT);
}

/* ---- protect mode ----------------------------------------------------------------------------- */

static void test_protect_mode_faults_until_commit(void **state) {
  (void)state;
  _ra_os_set_commit_mode(RA_COMMIT_PROTECT);
  const size_t size = 4 * RA_MiB;
  void *base = NULL;
  assert_int_equal(_ra_os_reserve(size, 4 * RA_MiB, &base), RA_OS_OK);
  uint8_t *b = (uint8_t *)base;

  /* reserved only: reading and writing fault everywhere */
  assert_true(read_faults(b));
  assert_true(read_faults(b + size / 2));
  assert_true(read_faults(b + size - 1));

  /* commit the second 64 KiB: usable; its neighbours still fault */
  const size_t s = 64 * RA_KiB;
  bool z;
  assert_int_equal(_ra_os_commit(b + s, s, &z), RA_OS_OK);
  assert_false(read_faults(b + s));
  assert_false(write_faults(b + s));
  assert_false(write_faults(b + 2 * s - 1));
  memset(b + s, 0x5A, s);
  for (size_t i = 0; i < s; i++) assert_int_equal(b[s + i], 0x5A);
  assert_true(read_faults(b + s - 1));
  assert_true(read_faults(b + 2 * s));

  /* committing committed memory keeps its content */
  assert_int_equal(_ra_os_commit(b + s, s, &z), RA_OS_OK);
  for (size_t i = 0; i < s; i += 97) assert_int_equal(b[s + i], 0x5A);

  /* decommit: inaccessible again; recommit: reads zero */
  assert_int_equal(_ra_os_decommit(b + s, s), RA_OS_OK);
  assert_true(read_faults(b + s));
  assert_true(read_faults(b + 2 * s - 1));
  assert_int_equal(_ra_os_commit(b + s, s, &z), RA_OS_OK);
  assert_true(all_zero(b + s, s));

  assert_int_equal(_ra_os_release(base, size), RA_OS_OK);
}

/* Decommitting the middle of a committed range leaves both neighbours committed with their content. */
static void decommit_middle(ra_commit_mode_t mode) {
  _ra_os_set_commit_mode(mode);
  const size_t size = 4 * RA_MiB, s = 64 * RA_KiB;
  void *base = NULL;
  assert_int_equal(_ra_os_reserve(size, 4 * RA_MiB, &base), RA_OS_OK);
  uint8_t *b = (uint8_t *)base;
  bool z;
  assert_int_equal(_ra_os_commit(b, 3 * s, &z), RA_OS_OK);
  rt_fill_all(b, 3 * s, 42);
  assert_int_equal(_ra_os_decommit(b + s, s), RA_OS_OK);
  if (mode == RA_COMMIT_PROTECT) {
    assert_true(read_faults(b + s));
  } else {
    assert_false(read_faults(b + s));
    assert_true(all_zero(b + s, s)); /* overcommit: accessible and zero */
  }
  for (size_t i = 0; i < s; i++) assert_int_equal(b[i], rt_pat_byte(42, i));
  for (size_t i = 2 * s; i < 3 * s; i++) assert_int_equal(b[i], rt_pat_byte(42, i));
  assert_int_equal(_ra_os_commit(b + s, s, &z), RA_OS_OK);
  assert_true(all_zero(b + s, s));
  assert_int_equal(_ra_os_release(base, size), RA_OS_OK);
  _ra_os_set_commit_mode(RA_COMMIT_PROTECT);
}

static void test_decommit_middle_protect(void **state) {
  (void)state;
  decommit_middle(RA_COMMIT_PROTECT);
}

static void test_decommit_middle_overcommit(void **state) {
  (void)state;
  decommit_middle(RA_COMMIT_OVERCOMMIT);
}

/* ---- overcommit mode -------------------------------------------------------------------------- */

static void test_overcommit_decommit_reads_zero(void **state) {
  (void)state;
  _ra_os_set_commit_mode(RA_COMMIT_OVERCOMMIT);
  assert_int_equal(_ra_os_commit_mode(), RA_COMMIT_OVERCOMMIT);
  const size_t size = 4 * RA_MiB, n = RA_MiB;
  void *base = NULL;
  assert_int_equal(_ra_os_reserve(size, 4 * RA_MiB, &base), RA_OS_OK);
  uint8_t *b = (uint8_t *)base;
  bool z;
  assert_int_equal(_ra_os_commit(b, n, &z), RA_OS_OK);
  assert_false(write_faults(b));
  memset(b, 0xC3, n);
  for (size_t i = 0; i < n; i += 61) assert_int_equal(b[i], 0xC3);

  /* decommit: the range stays accessible and reads as zeros */
  assert_int_equal(_ra_os_decommit(b, n), RA_OS_OK);
  assert_false(read_faults(b));
  assert_true(all_zero(b, n));

  /* write, decommit, recommit: zeros again */
  memset(b, 0x3C, n);
  assert_int_equal(_ra_os_decommit(b, n), RA_OS_OK);
  assert_int_equal(_ra_os_commit(b, n, &z), RA_OS_OK);
  assert_true(all_zero(b, n));
  memset(b, 0x11, n);
  assert_int_equal(b[n - 1], 0x11);

  assert_int_equal(_ra_os_release(base, size), RA_OS_OK);
  _ra_os_set_commit_mode(RA_COMMIT_PROTECT);
}

/* ---- reset ------------------------------------------------------------------------------------ */

/* Ask the kernel to reclaim the range now (Linux 5.4+), so lazily freed pages really go away and a
 * reset that was not undone properly shows. Best effort: older kernels reject the advice. */
static void force_reclaim(void *p, size_t n) {
#ifdef MADV_PAGEOUT
  (void)madvise(p, n, MADV_PAGEOUT);
#else
  (void)p;
  (void)n;
#endif
}

static void reset_roundtrip(ra_commit_mode_t mode) {
  _ra_os_set_commit_mode(mode);
  const size_t size = 4 * RA_MiB, n = 256 * RA_KiB;
  void *base = NULL;
  assert_int_equal(_ra_os_reserve(size, 4 * RA_MiB, &base), RA_OS_OK);
  uint8_t *b = (uint8_t *)base;
  bool z;
  assert_int_equal(_ra_os_commit(b, n, &z), RA_OS_OK);
  memset(b, 0x77, n);

  assert_int_equal(_ra_os_reset(b, n), RA_OS_OK);
  force_reclaim(b, n);
  /* still committed and accessible; every byte is the old content or zero */
  assert_false(read_faults(b));
  assert_false(write_faults(b + n - 1));
  for (size_t i = 0; i < n; i++) assert_true(b[i] == 0x77 || b[i] == 0);

  /* undo (or, where the OS rejects it, recommit as the contract says), then write and read back */
  if (_ra_os_reset_undo(b, n) != RA_OS_OK) assert_int_equal(_ra_os_commit(b, n, &z), RA_OS_OK);
  rt_fill_all(b, n, 7);
  assert_int_equal(rt_check_all(b, n, 7), SIZE_MAX);

  /* a reset range that is written again keeps what was written (no late discard) */
  assert_int_equal(_ra_os_reset(b, n), RA_OS_OK);
  if (_ra_os_reset_undo(b, n) != RA_OS_OK) assert_int_equal(_ra_os_commit(b, n, &z), RA_OS_OK);
  rt_fill_all(b, n, 8);
  force_reclaim(b, n);
  assert_int_equal(rt_check_all(b, n, 8), SIZE_MAX);

  /* a reset range that is not written again may lose its content, but only to zeros */
  assert_int_equal(_ra_os_reset(b, n), RA_OS_OK);
  force_reclaim(b, n);
  for (size_t i = 0; i < n; i++) assert_true(b[i] == rt_pat_byte(8, i) || b[i] == 0);

  assert_int_equal(_ra_os_release(base, size), RA_OS_OK);
  _ra_os_set_commit_mode(RA_COMMIT_PROTECT);
}

static void test_reset_protect(void **state) {
  (void)state;
  reset_roundtrip(RA_COMMIT_PROTECT);
}

static void test_reset_overcommit(void **state) {
  (void)state;
  reset_roundtrip(RA_COMMIT_OVERCOMMIT);
}

/* ---- protect ---------------------------------------------------------------------------------- */

static void protect_roundtrip(ra_commit_mode_t mode) {
  _ra_os_set_commit_mode(mode);
  const size_t size = 4 * RA_MiB, n = 128 * RA_KiB;
  void *base = NULL;
  assert_int_equal(_ra_os_reserve(size, 4 * RA_MiB, &base), RA_OS_OK);
  uint8_t *b = (uint8_t *)base;
  bool z;
  assert_int_equal(_ra_os_commit(b, n, &z), RA_OS_OK);
  memset(b, 0x42, n);

  /* read-only: reads see the content, writes fault; the page after stays writable */
  assert_int_equal(_ra_os_protect(b, n / 2, RA_PROT_READ), RA_OS_OK);
  assert_false(read_faults(b));
  assert_int_equal(b[0], 0x42);
  assert_int_equal(b[n / 2 - 1], 0x42);
  assert_true(write_faults(b));
  assert_true(write_faults(b + n / 2 - 1));
  assert_false(write_faults(b + n / 2));

  /* no access: reads fault too */
  assert_int_equal(_ra_os_protect(b, n / 2, RA_PROT_NONE), RA_OS_OK);
  assert_true(read_faults(b));

  /* back to read-write: content intact, writable */
  assert_int_equal(_ra_os_protect(b, n / 2, RA_PROT_READWRITE), RA_OS_OK);
  assert_false(write_faults(b));
  for (size_t i = 0; i < n; i++) assert_int_equal(b[i], 0x42);
  b[0] = 1;
  assert_int_equal(b[0], 1);

  assert_int_equal(_ra_os_release(base, size), RA_OS_OK);
  _ra_os_set_commit_mode(RA_COMMIT_PROTECT);
}

static void test_protect_read_protect(void **state) {
  (void)state;
  protect_roundtrip(RA_COMMIT_PROTECT);
}

static void test_protect_read_overcommit(void **state) {
  (void)state;
  protect_roundtrip(RA_COMMIT_OVERCOMMIT);
}

/* ---- release ---------------------------------------------------------------------------------- */

static void test_release(void **state) {
  (void)state;
  const ra_commit_mode_t modes[] = {RA_COMMIT_PROTECT, RA_COMMIT_OVERCOMMIT};
  for (int m = 0; m < 2; m++) {
    _ra_os_set_commit_mode(modes[m]);
    const size_t size = 8 * RA_MiB;
    void *base = NULL;
    assert_int_equal(_ra_os_reserve(size, 4 * RA_MiB, &base), RA_OS_OK);
    bool z;
    assert_int_equal(_ra_os_commit(base, RA_MiB, &z), RA_OS_OK);
    memset(base, 0xEE, RA_MiB);
    assert_int_equal(_ra_os_release(base, size), RA_OS_OK);

    /* the range is gone: touching it faults ... */
    assert_true(read_faults(base));
    assert_true(read_faults((uint8_t *)base + size - 1));
    /* ... and the address space is free again: a fixed, non-replacing mapping there succeeds */
#ifdef MAP_FIXED_NOREPLACE
    void *again = mmap(base, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    assert_ptr_equal(again, base);
    assert_true(all_zero(again, RA_MiB));
    assert_int_equal(munmap(again, size), 0);
#endif
    /* and reserving again works */
    void *base2 = NULL;
    assert_int_equal(_ra_os_reserve(size, 4 * RA_MiB, &base2), RA_OS_OK);
    assert_int_equal(_ra_os_commit(base2, RA_MiB, &z), RA_OS_OK);
    assert_true(all_zero(base2, RA_MiB));
    assert_int_equal(_ra_os_release(base2, size), RA_OS_OK);
  }
  _ra_os_set_commit_mode(RA_COMMIT_PROTECT);
}

/* Many reserve/release cycles do not leak mappings. */
static void test_release_no_leak(void **state) {
  (void)state;
  _ra_os_set_commit_mode(RA_COMMIT_PROTECT);
  for (int i = 0; i < 2000; i++) {
    void *base = NULL;
    assert_int_equal(_ra_os_reserve(64 * RA_MiB, 4 * RA_MiB, &base), RA_OS_OK);
    bool z;
    assert_int_equal(_ra_os_commit(base, 64 * RA_KiB, &z), RA_OS_OK);
    ((uint8_t *)base)[0] = 1;
    assert_int_equal(_ra_os_release(base, 64 * RA_MiB), RA_OS_OK);
  }
  /* 2000 x 64 MiB = 125 GiB of address space: only possible if each release really gave it back
   * (a leak would still fit in 47 bits, so also count the mappings) */
  char buf[1 << 16];
  int fd = open("/proc/self/maps", O_RDONLY);
  if (fd < 0) return;
  size_t lines = 0;
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0)
    for (ssize_t i = 0; i < n; i++) lines += buf[i] == '\n';
  close(fd);
  assert_true(lines < 1000);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_info),
      cmocka_unit_test(test_mode_roundtrip),
      cmocka_unit_test(test_reserve_aligned_protect),
      cmocka_unit_test(test_reserve_aligned_overcommit),
      cmocka_unit_test(test_reserve_large),
      cmocka_unit_test(test_protect_mode_faults_until_commit),
      cmocka_unit_test(test_decommit_middle_protect),
      cmocka_unit_test(test_decommit_middle_overcommit),
      cmocka_unit_test(test_overcommit_decommit_reads_zero),
      cmocka_unit_test(test_reset_protect),
      cmocka_unit_test(test_reset_overcommit),
      cmocka_unit_test(test_protect_read_protect),
      cmocka_unit_test(test_protect_read_overcommit),
      cmocka_unit_test(test_release),
      cmocka_unit_test(test_release_no_leak),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
