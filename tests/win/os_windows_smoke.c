/* Smoke test of allocator/os_windows.c: reserve, commit, decommit, reset, reset undo, protect and
 * release, each checked with VirtualQuery. Standalone (no cmocka); prints "ok" lines, exits nonzero on
 * the first failure. Built and run under wine by ctest as win_os_smoke (tests/win/CMakeLists.txt); by
 * hand:
 *   x86_64-w64-mingw32-gcc -static -static-libgcc -Wall -Wextra -Werror -Iallocator \
 *       tests/win/os_windows_smoke.c allocator/os_windows.c -o os_windows_smoke.exe */
#include <stdint.h>
#include <stdio.h>
#include <windows.h>

#include "os.h"

#define MIB ((size_t)1 << 20)

#define CHECK(cond, what)                                                                          \
  do {                                                                                             \
    if (cond) {                                                                                    \
      printf("ok   %s\n", what);                                                                   \
    } else {                                                                                       \
      printf("FAIL %s (%s:%d)\n", what, __FILE__, __LINE__);                                       \
      fflush(stdout);                                                                              \
      return 1;                                                                                    \
    }                                                                                              \
  } while (0)

static DWORD query_state(void *p, DWORD *protect) {
  MEMORY_BASIC_INFORMATION mbi;
  if (VirtualQuery(p, &mbi, sizeof mbi) != sizeof mbi) return 0;
  if (protect) *protect = mbi.Protect;
  return mbi.State;
}

static int run(void) {
  const ra_os_info_t *info = _ra_os_info();
  printf("info page_size=%zu granularity=%zu has_reset_undo=%d overcommit_strict=%d\n", info->page_size,
         info->granularity, (int)info->has_reset_undo, (int)info->overcommit_strict);
  CHECK(info->page_size == 4096, "page size is 4096");
  CHECK(info->granularity == 65536, "granularity is 65536");
  CHECK(!info->overcommit_strict, "overcommit_strict is false");
  CHECK(_ra_os_info() == info, "info is cached");

  _ra_os_set_commit_mode(RA_COMMIT_OVERCOMMIT);
  CHECK(_ra_os_commit_mode() == RA_COMMIT_PROTECT, "commit mode stays PROTECT");

  void *bad = NULL;
  CHECK(_ra_os_reserve(4 * MIB, 3 * 65536, &bad) == ERROR_INVALID_PARAMETER, "reserve rejects align 3*64K");
  CHECK(_ra_os_reserve(0, 65536, &bad) == ERROR_INVALID_PARAMETER, "reserve rejects size 0");

  void *p = NULL;
  CHECK(_ra_os_reserve(4 * MIB, 4 * MIB, &p) == RA_OS_OK && p != NULL, "reserve 4 MiB aligned 4 MiB");
  CHECK(((uintptr_t)p & (4 * MIB - 1)) == 0, "reservation is 4 MiB aligned");
  CHECK(query_state(p, NULL) == MEM_RESERVE, "VirtualQuery: MEM_RESERVE after reserve");
  CHECK(query_state((char *)p + 4 * MIB - 4096, NULL) == MEM_RESERVE, "last page of reservation is reserved");

  const size_t n = 64 * 1024;
  bool is_zero = true;
  DWORD prot = 0;
  CHECK(_ra_os_commit(p, n, &is_zero) == RA_OS_OK, "commit 64 KiB");
  CHECK(!is_zero, "commit reports is_zero=false");
  CHECK(query_state(p, &prot) == MEM_COMMIT && prot == PAGE_READWRITE, "VirtualQuery: MEM_COMMIT, READWRITE");
  CHECK(query_state((char *)p + n, NULL) == MEM_RESERVE, "page after the commit stays reserved");

  volatile unsigned char *b = p;
  for (size_t i = 0; i < n; i++) b[i] = (unsigned char)(i * 7 + 1);
  int same = 1;
  for (size_t i = 0; i < n; i++) same &= b[i] == (unsigned char)(i * 7 + 1);
  CHECK(same, "write and read back 64 KiB");

  CHECK(_ra_os_commit(p, n, NULL) == RA_OS_OK && b[100] == (unsigned char)(100 * 7 + 1),
        "recommit of committed memory keeps content");

  CHECK(_ra_os_decommit(p, n) == RA_OS_OK, "decommit");
  CHECK(query_state(p, NULL) == MEM_RESERVE, "VirtualQuery: MEM_RESERVE after decommit");

  CHECK(_ra_os_commit(p, n, NULL) == RA_OS_OK, "recommit");
  int zero = 1;
  for (size_t i = 0; i < n; i++) zero &= b[i] == 0;
  CHECK(zero, "recommitted range reads as zeros");

  for (size_t i = 0; i < n; i++) b[i] = 0xAB;
  CHECK(_ra_os_reset(p, n) == RA_OS_OK, "reset");
  CHECK(query_state(p, &prot) == MEM_COMMIT && prot == PAGE_READWRITE,
        "VirtualQuery: still committed after reset");

  int rc = _ra_os_reset_undo(p, n);
  printf("info reset_undo rc=%d\n", rc);
  if (info->has_reset_undo) {
    CHECK(rc == RA_OS_OK, "reset_undo succeeds (has_reset_undo)");
  } else {
    CHECK(rc == ERROR_NOT_SUPPORTED, "reset_undo returns ERROR_NOT_SUPPORTED (no reset undo)");
  }
  b[0] = 1; /* still accessible after reset (and undo) */
  CHECK(b[0] == 1, "range writable after reset");

  CHECK(_ra_os_protect(p, n, RA_PROT_READ) == RA_OS_OK, "protect READ");
  CHECK(query_state(p, &prot) == MEM_COMMIT && prot == PAGE_READONLY, "VirtualQuery: PAGE_READONLY");
  CHECK(_ra_os_protect(p, n, RA_PROT_NONE) == RA_OS_OK, "protect NONE");
  CHECK(query_state(p, &prot) == MEM_COMMIT && prot == PAGE_NOACCESS, "VirtualQuery: PAGE_NOACCESS");
  CHECK(_ra_os_protect(p, n, RA_PROT_READWRITE) == RA_OS_OK, "protect READWRITE");
  CHECK(query_state(p, &prot) == MEM_COMMIT && prot == PAGE_READWRITE, "VirtualQuery: PAGE_READWRITE again");

  CHECK(_ra_os_release(p, 4 * MIB) == RA_OS_OK, "release");
  CHECK(query_state(p, NULL) == MEM_FREE, "VirtualQuery: MEM_FREE after release");

  /* A few more alignments, including the plain granularity path. */
  static const size_t aligns[] = {0, 65536, 128 * 1024, 2 * MIB, 64 * MIB};
  for (size_t k = 0; k < sizeof aligns / sizeof aligns[0]; k++) {
    size_t a = aligns[k] ? aligns[k] : 65536;
    void *q = NULL;
    char what[96];
    snprintf(what, sizeof what, "reserve 1 MiB aligned %zu KiB, aligned, released", a / 1024);
    CHECK(_ra_os_reserve(MIB, aligns[k], &q) == RA_OS_OK && ((uintptr_t)q & (a - 1)) == 0 &&
              query_state(q, NULL) == MEM_RESERVE && _ra_os_release(q, MIB) == RA_OS_OK,
          what);
  }
  return 0;
}

int main(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  int rc = run();
  printf(rc == 0 ? "ok   all\n" : "FAILED\n");
  return rc;
}
