/* Programs that must fail, for the wine fixture's own checks (tests/win/CMakeLists.txt runs them
 * through expect_failure.cmake, which wants a nonzero exit and the right message):
 *   win_crash av        access violation in the main thread
 *   win_crash thread    access violation in a second thread
 *   win_crash badfree   ra_free of a pointer ramalloc did not hand out: ramalloc's message, abort
 *   win_crash ok        exits 0 (the check of the check) */
#include <stdio.h>
#include <string.h>

#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>

#include "ramalloc.h"

static volatile int *volatile bad_address = (int *)16;

static DWORD WINAPI crash_thread(void *arg) {
  (void)arg;
  *bad_address = 1;
  return 0;
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "";
  printf("win_crash %s: started\n", mode);
  fflush(stdout);
  if (strcmp(mode, "av") == 0) {
    *bad_address = 1;
  } else if (strcmp(mode, "thread") == 0) {
    HANDLE h = CreateThread(NULL, 0, crash_thread, NULL, 0, NULL);
    WaitForSingleObject(h, INFINITE);
    Sleep(200);
  } else if (strcmp(mode, "badfree") == 0) {
    void *p = ra_malloc(64); /* ramalloc is up: the bad pointer is checked, not ignored */
    int local = 0;
    ra_free(&local);
    ra_free(p);
  } else if (strcmp(mode, "ok") == 0) {
    printf("win_crash ok: exiting 0\n");
    return 0;
  }
  printf("win_crash %s: still running\n", mode);
  return 0;
}
