/* The malloc family for Windows programs linked to libramalloc.a: malloc, calloc, realloc and free
 * under their standard names, so that the program's own calls (and those of every static library
 * linked into the same .exe: winpthreads, libgcc, cmocka...) go to ramalloc.
 *
 * What this cannot reach: the C runtime DLL (msvcrt.dll or ucrtbase.dll) and every other DLL keep
 * their own allocator, and they hand out blocks the program may free: _strdup, _fullpath,
 * getcwd(NULL, 0), _tempnam... So free and realloc of a pointer outside ramalloc's chunks go to the
 * C runtime's own free and realloc, looked up in the DLL the program was built against. Only
 * pointers inside ramalloc's chunks are ramalloc's to check (a bad one still stops the process, see
 * ra_free).
 *
 * mingw-w64 declares malloc, calloc, realloc and free without dllimport, so a definition in a static
 * library takes the program's calls; _msize, _expand, _recalloc and the _aligned_* family are
 * declared dllimport: calls to them always reach the C runtime and must not be given ramalloc's
 * blocks (use ra_usable_size, ra_realloc, ra_aligned_alloc). All four functions live in this one
 * object file so a static link takes all of them or none. */
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>

#include <stdlib.h>

#include "internal.h"

#if defined(_UCRT)
#define RA_CRT_DLL L"ucrtbase.dll"
#else
#define RA_CRT_DLL L"msvcrt.dll"
#endif

typedef void(__cdecl *crt_free_fn)(void *p);
typedef void *(__cdecl *crt_realloc_fn)(void *p, size_t n);

static crt_free_fn crt_free;
static crt_realloc_fn crt_realloc;
static INIT_ONCE crt_once = INIT_ONCE_STATIC_INIT;

static BOOL CALLBACK crt_lookup(PINIT_ONCE once, PVOID param, PVOID *context) {
  (void)once;
  (void)param;
  (void)context;
  HMODULE crt = GetModuleHandleW(RA_CRT_DLL);
  if (crt == NULL) crt = LoadLibraryW(RA_CRT_DLL);
  if (crt != NULL) {
    /* Through void (*)(void) so -Wcast-function-type accepts the FARPROC conversions. */
    crt_free = (crt_free_fn)(void (*)(void))GetProcAddress(crt, "free");
    crt_realloc = (crt_realloc_fn)(void (*)(void))GetProcAddress(crt, "realloc");
  }
  return TRUE;
}

/* A block ramalloc handed out lies in a chunk the chunk map knows; nothing else does. */
static inline bool is_ours(const void *p) { return _ra_chunk_map_has((uintptr_t)_ra_chunk_of(p)); }

static RA_NOINLINE void foreign_free(void *p) {
  DWORD err = GetLastError();
  InitOnceExecuteOnce(&crt_once, crt_lookup, NULL, NULL);
  SetLastError(err);
  if (crt_free == NULL) _ra_report_error("free of a pointer from no known allocator:", p);
  crt_free(p);
}

static RA_NOINLINE void *foreign_realloc(void *p, size_t n) {
  DWORD err = GetLastError();
  InitOnceExecuteOnce(&crt_once, crt_lookup, NULL, NULL);
  SetLastError(err);
  if (crt_realloc == NULL) _ra_report_error("realloc of a pointer from no known allocator:", p);
  return crt_realloc(p, n);
}

void *__cdecl malloc(size_t n) { return ra_malloc(n); }

void *__cdecl calloc(size_t c, size_t n) { return ra_calloc(c, n); }

void __cdecl free(void *p) {
  if (RA_LIKELY(is_ours(p) || p == NULL)) ra_free(p);
  else foreign_free(p);
}

void *__cdecl realloc(void *p, size_t n) {
  if (RA_LIKELY(p == NULL || is_ours(p))) return ra_realloc(p, n);
  return foreign_realloc(p, n);
}
