/* ramalloc.dll loaded at run time and "unloaded" again: the DLL pins itself (its FLS callback must
 * outlive FreeLibrary, threads that allocated through it exit later), so it stays mapped, its blocks
 * stay usable and a thread that allocated through it exits cleanly afterwards. Prints "unload ok". */
#include <stdio.h>

#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>

typedef void *(*malloc_fn)(size_t);
typedef void (*free_fn)(void *);

static malloc_fn dll_malloc;
static HANDLE go;

static DWORD WINAPI worker(void *arg) {
  (void)arg;
  void *p = dll_malloc(100); /* this thread's heap lives in the DLL; its FLS callback too */
  WaitForSingleObject(go, INFINITE);
  return p != NULL ? 0 : 1; /* exits after FreeLibrary */
}

int main(void) {
  HMODULE dll = LoadLibraryW(L"ramalloc.dll");
  if (dll == NULL) return printf("LoadLibrary failed: %lu\n", GetLastError()), 1;
  dll_malloc = (malloc_fn)(void (*)(void))GetProcAddress(dll, "ra_malloc");
  free_fn dll_free = (free_fn)(void (*)(void))GetProcAddress(dll, "ra_free");
  if (dll_malloc == NULL || dll_free == NULL) return printf("GetProcAddress failed\n"), 2;
  char *block = dll_malloc(1000);
  go = CreateEventW(NULL, TRUE, FALSE, NULL);
  HANDLE t = CreateThread(NULL, 0, worker, NULL, 0, NULL);
  Sleep(50);
  if (!FreeLibrary(dll)) return printf("FreeLibrary failed\n"), 3;
  if (GetModuleHandleW(L"ramalloc.dll") == NULL) return printf("ramalloc.dll was unloaded\n"), 4;
  SetEvent(go);
  if (WaitForSingleObject(t, 30000) != WAIT_OBJECT_0) return printf("worker did not exit\n"), 5;
  DWORD code = 9;
  GetExitCodeThread(t, &code);
  block[999] = 1;
  dll_free(block);
  printf(code == 0 ? "unload ok\n" : "worker failed\n");
  return (int)code;
}
