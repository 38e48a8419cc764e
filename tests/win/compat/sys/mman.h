/* The part of <sys/mman.h> the portable tests use, for the Windows build (mingw-w64 has no
 * sys/mman.h): anonymous private read-write mappings, made and released with VirtualAlloc and
 * VirtualFree. Only what the tests in tests/ call; not a general emulation. */
#ifndef RA_TEST_WIN_COMPAT_SYS_MMAN_H
#define RA_TEST_WIN_COMPAT_SYS_MMAN_H

#include <stddef.h>
#include <sys/types.h>

#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>

#define PROT_NONE 0
#define PROT_READ 1
#define PROT_WRITE 2
#define MAP_PRIVATE 0x02
#define MAP_ANONYMOUS 0x20
#define MAP_ANON MAP_ANONYMOUS
#define MAP_FAILED ((void *)-1)

static inline void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off) {
  (void)addr;
  (void)off;
  if (fd != -1 || !(flags & MAP_ANONYMOUS)) return MAP_FAILED;
  DWORD protect = (prot & PROT_WRITE) ? PAGE_READWRITE : (prot & PROT_READ) ? PAGE_READONLY : PAGE_NOACCESS;
  void *p = VirtualAlloc(NULL, len, MEM_RESERVE | MEM_COMMIT, protect);
  return p != NULL ? p : MAP_FAILED;
}

static inline int munmap(void *addr, size_t len) {
  (void)len; /* the whole mapping, as made above */
  return VirtualFree(addr, 0, MEM_RELEASE) ? 0 : -1;
}

#endif
