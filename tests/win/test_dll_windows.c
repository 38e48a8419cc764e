/* A Windows program linked to ramalloc.dll: the ra_* API works across the DLL boundary, the DLL
 * exports exactly the functions ramalloc.h declares (the list is generated from the header at
 * configure time: ra_exports.h), the program's own malloc stays the C runtime's, and a thread that
 * allocates through the DLL has its heap abandoned at exit by the DLL's FLS callback. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "ramalloc.h"
#include "ra_exports.h"
#include "win_test.h"

static void test_api_through_dll(void **state) {
  (void)state;
  HMODULE dll = GetModuleHandleW(L"ramalloc.dll");
  assert_non_null(dll);
  char *p = ra_malloc(1000);
  assert_non_null(p);
  assert_true(ra_owns(p));
  assert_true(ra_usable_size(p) >= 1000);
  p = ra_realloc(p, 100000);
  assert_non_null(p);
  void *a = ra_aligned_alloc(1 << 20, 100);
  assert_non_null(a);
  assert_true(((uintptr_t)a & ((1 << 20) - 1)) == 0);
  ra_free(a);
  ra_free(p);
  /* the DLL does not replace the program's malloc */
  void *m = malloc(64);
  assert_false(ra_owns(m));
  free(m);
  ra_stats_t st;
  ra_stats_get(&st);
  assert_true(st.arenas >= 1 && st.committed > 0);
}

/* Every function ramalloc.h declares with RA_EXPORT, and nothing else. */
static void test_exports(void **state) {
  (void)state;
  HMODULE dll = GetModuleHandleW(L"ramalloc.dll");
  assert_non_null(dll);
  size_t n = sizeof ra_export_names / sizeof ra_export_names[0];
  for (size_t i = 0; i < n; i++)
    if (GetProcAddress(dll, ra_export_names[i]) == NULL) fail_msg("ramalloc.dll does not export %s", ra_export_names[i]);
  const uint8_t *base = (const uint8_t *)dll;
  const IMAGE_NT_HEADERS *nt = (const IMAGE_NT_HEADERS *)(base + ((const IMAGE_DOS_HEADER *)base)->e_lfanew);
  const IMAGE_DATA_DIRECTORY *dir = &nt->OptionalHeader.DataDirectory[IMAGE_DIRECTORY_ENTRY_EXPORT];
  assert_true(dir->Size > 0);
  const IMAGE_EXPORT_DIRECTORY *ex = (const IMAGE_EXPORT_DIRECTORY *)(base + dir->VirtualAddress);
  const DWORD *names = (const DWORD *)(base + ex->AddressOfNames);
  for (DWORD i = 0; i < ex->NumberOfNames; i++) {
    const char *name = (const char *)(base + names[i]);
    bool known = false;
    for (size_t k = 0; k < n && !known; k++) known = strcmp(name, ra_export_names[k]) == 0;
    if (!known) fail_msg("ramalloc.dll exports %s, which ramalloc.h does not declare", name);
  }
  assert_int_equal(ex->NumberOfNames, n);
}

static DWORD WINAPI dll_thread(void *arg) {
  ra_stats_t st;
  void *p = ra_malloc(300);
  ra_stats_get(&st);
  *(size_t *)arg = st.heaps;
  return ra_owns(p) ? 0 : 1; /* p stays live: freed by the main thread */
}

static void test_thread_exit_in_dll(void **state) {
  (void)state;
  void *w = ra_malloc(8);
  ra_free(w);
  ra_stats_t st0, st1;
  ra_stats_get(&st0);
  size_t inside = 0;
  for (int i = 0; i < 20; i++) {
    HANDLE h = CreateThread(NULL, 0, dll_thread, &inside, 0, NULL);
    assert_int_equal(WaitForSingleObject(h, 30000), WAIT_OBJECT_0);
    CloseHandle(h);
    assert_int_equal(inside, st0.heaps + 1);
  }
  ra_stats_get(&st1);
  assert_int_equal(st1.heaps, st0.heaps);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_api_through_dll),
      cmocka_unit_test(test_exports),
      cmocka_unit_test(test_thread_exit_in_dll),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
