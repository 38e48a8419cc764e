/* Process exit while other threads allocate. ExitProcess ends the other threads wherever they are,
 * maybe holding one of ramalloc's locks, and then runs the exiting thread's FLS callback (seen under
 * wine 8); ramalloc must not give a heap back then (it would wait for a lock nobody will release).
 * The parent runs this program as a child ROUNDS times; each child starts threads that allocate and
 * free huge and small blocks (arena and chunk locks) and returns from main at once. A child that has
 * not exited after 20 s counts as hung. Prints "exit race ok". */
#include <stdio.h>
#include <string.h>
#include <wchar.h>

#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>

#include "ramalloc.h"

enum { ROUNDS = 12, THREADS = 4 };

static DWORD WINAPI churn(void *arg) {
  size_t seed = (size_t)arg;
  for (;;) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    void *big = ra_malloc((size_t)5 << 20);   /* a huge block: arena lock */
    void *small = ra_malloc((seed >> 50) + 1); /* pages and chunks */
    ra_free(big);
    ra_free(small);
    if ((seed & 63) == 0) ra_collect(true);
  }
  return 0;
}

static int child(void) {
  void *mine = ra_malloc(100); /* the exiting thread has a heap, so its FLS callback has work */
  (void)mine;
  for (size_t i = 0; i < THREADS; i++) CreateThread(NULL, 0, churn, (void *)(i + 1), 0, NULL);
  Sleep(30);
  return 0; /* exit(0) -> ExitProcess while the threads allocate */
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "child") == 0) return child();
  wchar_t self[MAX_PATH], cmd[MAX_PATH + 16];
  GetModuleFileNameW(NULL, self, MAX_PATH);
  swprintf(cmd, MAX_PATH + 16, L"\"%ls\" child", self);
  int hung = 0, failed = 0;
  for (int r = 0; r < ROUNDS; r++) {
    STARTUPINFOW si;
    PROCESS_INFORMATION pi;
    memset(&si, 0, sizeof si);
    si.cb = sizeof si;
    if (!CreateProcessW(self, cmd, NULL, NULL, FALSE, 0, NULL, NULL, &si, &pi)) {
      printf("CreateProcess failed: %lu\n", GetLastError());
      return 1;
    }
    if (WaitForSingleObject(pi.hProcess, 20000) != WAIT_OBJECT_0) {
      hung++;
      TerminateProcess(pi.hProcess, 99);
      WaitForSingleObject(pi.hProcess, 5000);
    } else {
      DWORD code = 1;
      GetExitCodeProcess(pi.hProcess, &code);
      if (code != 0) failed++;
    }
    CloseHandle(pi.hThread);
    CloseHandle(pi.hProcess);
  }
  printf("%d children: %d hung, %d failed\n", ROUNDS, hung, failed);
  if (hung == 0 && failed == 0) printf("exit race ok\n");
  return hung || failed;
}
