/* The thread layer on Windows (allocator/prim_windows.c): one heap per thread through a TLS
 * index, thread exit through the FLS callback (the heap is abandoned and its struct reused), for
 * threads made every way a Windows program makes them (CreateThread, _beginthreadex, winpthreads,
 * ExitThread in the middle, fibers), and the last-error value left alone by malloc and free. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <pthread.h>
#include <process.h>

#include "internal.h"
#include "win_test.h"

static size_t heaps_alive(void) {
  ra_stats_t st;
  ra_stats_get(&st);
  return st.heaps;
}

static size_t base_heaps;

static int setup(void **state) {
  (void)state;
  void *p = ra_malloc(16); /* the main thread's heap */
  ra_free(p);
  base_heaps = heaps_alive();
  return 0;
}

/* ---- one heap per thread, gone at thread exit ---------------------------------------------------- */

typedef struct probe_s {
  ra_heap_t *heap;      /* the thread's heap after its first allocation */
  size_t heaps_inside;  /* heaps alive while the thread runs */
  void *keep;           /* a block left live at exit */
  int how;              /* 0 return, 1 ExitThread */
} probe_t;

static DWORD WINAPI alloc_thread(void *arg) {
  probe_t *pr = arg;
  if (_ra_heap_current() != &_ra_heap_empty) return 1; /* a new thread starts without a heap */
  void *p = ra_malloc(200);
  pr->heap = _ra_heap_current();
  pr->heaps_inside = heaps_alive();
  memset(p, 0x5c, 200);
  pr->keep = p;
  void *q = ra_malloc(5000);
  ra_free(q);
  if (pr->how == 1) ExitThread(0);
  return 0;
}

static void run_win32_thread(probe_t *pr) {
  HANDLE h = CreateThread(NULL, 0, alloc_thread, pr, 0, NULL);
  assert_non_null(h);
  assert_int_equal(WaitForSingleObject(h, 30000), WAIT_OBJECT_0);
  DWORD code = 99;
  GetExitCodeThread(h, &code);
  CloseHandle(h);
  assert_int_equal(code, 0);
}

static void test_heap_per_thread(void **state) {
  (void)state;
  ra_heap_t *mine = _ra_heap_current();
  assert_ptr_not_equal(mine, &_ra_heap_empty);
  for (int how = 0; how < 2; how++) {
    probe_t pr = {NULL, 0, NULL, how};
    run_win32_thread(&pr);
    assert_non_null(pr.heap);
    assert_ptr_not_equal(pr.heap, &_ra_heap_empty);
    assert_ptr_not_equal(pr.heap, mine);
    assert_int_equal(pr.heaps_inside, base_heaps + 1);
    /* the FLS callback ran at exit: the heap is gone, its block is still valid */
    assert_int_equal(heaps_alive(), base_heaps);
    assert_true(ra_owns(pr.keep));
    for (int i = 0; i < 200; i++) assert_int_equal(((uint8_t *)pr.keep)[i], 0x5c);
    ra_free(pr.keep); /* a remote free into an abandoned chunk */
  }
  assert_ptr_equal(_ra_heap_current(), mine);
}

/* A thread that never allocates makes no heap. */
static DWORD WINAPI idle_thread(void *arg) {
  (void)arg;
  return _ra_heap_current() == &_ra_heap_empty ? 0 : 1;
}

static void test_idle_thread(void **state) {
  (void)state;
  HANDLE h = CreateThread(NULL, 0, idle_thread, NULL, 0, NULL);
  assert_int_equal(WaitForSingleObject(h, 30000), WAIT_OBJECT_0);
  DWORD code = 99;
  GetExitCodeThread(h, &code);
  CloseHandle(h);
  assert_int_equal(code, 0);
  assert_int_equal(heaps_alive(), base_heaps);
}

/* ---- many threads: heaps come and go, structs are reused ----------------------------------------- */

static unsigned __stdcall crt_thread(void *arg) {
  probe_t *pr = arg;
  alloc_thread(pr);
  return 0;
}

static void *posix_thread(void *arg) {
  alloc_thread(arg);
  return NULL;
}

static void test_many_threads(void **state) {
  (void)state;
  enum { ROUNDS = 60, WIDTH = 8 };
  static probe_t pr[WIDTH];
  ra_stats_t st0, st1;
  ra_stats_get(&st0);
  for (int r = 0; r < ROUNDS; r++) {
    int kind = r % 3;
    HANDLE h[WIDTH];
    pthread_t pt[WIDTH];
    for (int i = 0; i < WIDTH; i++) {
      memset(&pr[i], 0, sizeof pr[i]);
      if (kind == 0) h[i] = CreateThread(NULL, 0, alloc_thread, &pr[i], 0, NULL);
      else if (kind == 1) h[i] = (HANDLE)_beginthreadex(NULL, 0, crt_thread, &pr[i], 0, NULL);
      else assert_int_equal(pthread_create(&pt[i], NULL, posix_thread, &pr[i]), 0);
    }
    for (int i = 0; i < WIDTH; i++) {
      if (kind == 2) {
        assert_int_equal(pthread_join(pt[i], NULL), 0);
      } else {
        assert_non_null(h[i]);
        assert_int_equal(WaitForSingleObject(h[i], 30000), WAIT_OBJECT_0);
        CloseHandle(h[i]);
      }
    }
    for (int i = 0; i < WIDTH; i++) {
      assert_non_null(pr[i].keep);
      ra_free(pr[i].keep);
    }
    if (heaps_alive() != base_heaps) fail_msg("round %d (%s): %zu heaps alive after every thread exited, expected %zu", r,
                                              kind == 0 ? "CreateThread" : kind == 1 ? "_beginthreadex" : "pthread_create",
                                              heaps_alive(), base_heaps);
  }
  ra_stats_get(&st1);
  print_message("%d threads: heaps alive %zu -> %zu, committed %zu -> %zu KiB\n", ROUNDS * WIDTH, st0.heaps,
                st1.heaps, st0.committed >> 10, st1.committed >> 10);
  /* heap structs are recycled: no more than WIDTH of them were ever made for all those threads */
  assert_true(st1.committed <= st0.committed + (size_t)WIDTH * 1024 * 1024);
}

/* ---- fibers: the FLS slot belongs to a fiber, the heap to a thread ------------------------------ */

static void *fiber_main_fiber;
static void *fiber_block;
static ra_heap_t *fiber_heap;

static void WINAPI fiber_proc(void *arg) {
  (void)arg;
  fiber_block = ra_malloc(64); /* the thread's first allocation: registered in this fiber's FLS */
  fiber_heap = _ra_heap_current();
  SwitchToFiber(fiber_main_fiber);
}

static DWORD WINAPI fiber_thread(void *arg) {
  (void)arg;
  fiber_main_fiber = ConvertThreadToFiber(NULL);
  if (fiber_main_fiber == NULL) return 1;
  void *f = CreateFiber(0, fiber_proc, NULL);
  SwitchToFiber(f);
  if (fiber_heap == NULL || fiber_heap == &_ra_heap_empty) return 2;
  if (_ra_heap_current() != fiber_heap) return 3; /* same thread, same heap */
  if (heaps_alive() != base_heaps + 1) return 4;
  DeleteFiber(f); /* its FLS callback: the heap it registered is this thread's, so it is abandoned */
  if (heaps_alive() != base_heaps) return 5;
  if (_ra_heap_current() != &_ra_heap_empty) return 6;
  void *p = ra_malloc(64); /* a new heap, registered in the main fiber */
  if (p == NULL || heaps_alive() != base_heaps + 1) return 7;
  ra_free(p);
  ra_free(fiber_block);
  return 0;
}

static void test_fibers(void **state) {
  (void)state;
  HANDLE h = CreateThread(NULL, 0, fiber_thread, NULL, 0, NULL);
  assert_int_equal(WaitForSingleObject(h, 30000), WAIT_OBJECT_0);
  DWORD code = 99;
  GetExitCodeThread(h, &code);
  CloseHandle(h);
  if (code != 0) fail_msg("fiber thread failed at step %lu", (unsigned long)code);
  assert_int_equal(heaps_alive(), base_heaps);
}

/* ---- GetLastError survives malloc and free ------------------------------------------------------ */

static DWORD WINAPI last_error_thread(void *arg) {
  (void)arg;
  /* the thread's first allocation makes its heap (TlsSetValue, FlsSetValue) */
  SetLastError(0x2a2a);
  void *p = ra_malloc(32);
  if (GetLastError() != 0x2a2a) return 1;
  ra_free(p);
  return GetLastError() == 0x2a2a ? 0 : 2;
}

static void test_last_error(void **state) {
  (void)state;
  static const size_t sizes[] = {1, 100, 1000, 20000, 300000, 3u << 20, 40u << 20};
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    SetLastError(ERROR_FILE_NOT_FOUND);
    void *p = ra_malloc(sizes[k]);
    assert_non_null(p);
    if (GetLastError() != ERROR_FILE_NOT_FOUND) fail_msg("ra_malloc(%zu) changed GetLastError() to %lu", sizes[k], GetLastError());
    void *q = ra_realloc(p, sizes[k] * 2);
    assert_non_null(q);
    assert_int_equal(GetLastError(), ERROR_FILE_NOT_FOUND);
    ra_free(q);
    ra_collect(true);
    if (GetLastError() != ERROR_FILE_NOT_FOUND) fail_msg("free/collect of %zu bytes changed GetLastError() to %lu", sizes[k], GetLastError());
  }
  HANDLE h = CreateThread(NULL, 0, last_error_thread, NULL, 0, NULL);
  assert_int_equal(WaitForSingleObject(h, 30000), WAIT_OBJECT_0);
  DWORD code = 99;
  GetExitCodeThread(h, &code);
  CloseHandle(h);
  assert_int_equal(code, 0);
}

/* ---- the cost of the TLS read on the fast path (printed, not checked) ---------------------------- */

static void test_fast_path_cost(void **state) {
  (void)state;
  enum { N = 4000000 };
  LARGE_INTEGER f, t0, t1, t2;
  QueryPerformanceFrequency(&f);
  QueryPerformanceCounter(&t0);
  void *volatile sink;
  for (int i = 0; i < N; i++) {
    void *p = ra_malloc(32);
    sink = p;
    ra_free(p);
  }
  QueryPerformanceCounter(&t1);
  volatile uintptr_t acc = 0;
  for (int i = 0; i < N; i++) acc += (uintptr_t)_ra_heap_current();
  QueryPerformanceCounter(&t2);
  (void)sink;
  double pair = (double)(t1.QuadPart - t0.QuadPart) * 1e9 / (double)f.QuadPart / N;
  double tls = (double)(t2.QuadPart - t1.QuadPart) * 1e9 / (double)f.QuadPart / N;
  print_message("ra_malloc(32)+ra_free: %.1f ns per pair; _ra_heap_current(): %.1f ns per call\n", pair, tls);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_heap_per_thread),
      cmocka_unit_test(test_idle_thread),
      cmocka_unit_test(test_many_threads),
      cmocka_unit_test(test_fibers),
      cmocka_unit_test(test_last_error),
      cmocka_unit_test(test_fast_path_cost),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
