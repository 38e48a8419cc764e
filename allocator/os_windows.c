/* OS layer on Windows: reserve = VirtualAlloc(MEM_RESERVE, PAGE_NOACCESS), aligned beyond the 64 KiB
 * granularity by VirtualAlloc2(MEM_ADDRESS_REQUIREMENTS) or else by over-reserve-and-retry;
 * commit = VirtualAlloc(MEM_COMMIT, PAGE_READWRITE); decommit = VirtualFree(MEM_DECOMMIT);
 * reset = VirtualAlloc(MEM_RESET); reset undo = VirtualAlloc(MEM_RESET_UNDO) where the OS accepts it
 * (wine 8 does not); protect = VirtualProtect; release = VirtualFree(MEM_RELEASE, size 0).
 * Only RA_COMMIT_PROTECT exists here. Errors are GetLastError() values.
 *
 * Reservations come in units of the allocation granularity (64 KiB): every base is a multiple of
 * it, and a size is rounded up to it, since the rest of a 64 KiB unit could never be reserved by
 * anything else. Commit charge is exact: only committed pages are charged, and decommit returns the
 * charge at once (reset does not: the pages stay committed). */
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include "os.h"

#include <errno.h>
#include <fcntl.h>
#include <io.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <stdint.h>
#include <windows.h>

#ifndef MEM_RESET_UNDO
#define MEM_RESET_UNDO 0x1000000
#endif

/* VirtualAlloc2's extended parameter, declared under our own names so the file compiles whether or
 * not the SDK headers have MEM_EXTENDED_PARAMETER. The layout is the SDK's: a 64-bit word whose low 8
 * bits are the type, then a 64-bit union (here the pointer to the address requirements). */
typedef struct ra_mem_address_requirements_s {
  void *lowest_starting_address;
  void *highest_ending_address;
  SIZE_T alignment;
} ra_mem_address_requirements_t;

typedef struct ra_mem_extended_parameter_s {
  _Alignas(8) DWORD64 type; /* low 8 bits: MEM_EXTENDED_PARAMETER_TYPE; the rest reserved (0) */
  union {
    DWORD64 ulong64;
    void *pointer;
  } u;
} ra_mem_extended_parameter_t;

_Static_assert(sizeof(ra_mem_extended_parameter_t) == 16, "MEM_EXTENDED_PARAMETER is 16 bytes");

#define RA_MEM_EXTENDED_PARAMETER_ADDRESS_REQUIREMENTS 1 /* MemExtendedParameterAddressRequirements */

typedef PVOID(WINAPI *ra_virtual_alloc2_fn)(HANDLE process, PVOID base, SIZE_T size, ULONG type,
                                            ULONG protect, ra_mem_extended_parameter_t *params,
                                            ULONG param_count);

/* Tries of the over-reserve-and-retry path before giving up (another thread may take the hole). */
#define RA_RESERVE_RETRIES 16

static ra_os_info_t os_info;
static ra_virtual_alloc2_fn os_virtual_alloc2; /* NULL when kernelbase.dll lacks it (before Windows 10) */
static bool os_skip_virtual_alloc2;            /* tests: take the over-reserve path anyway */
static INIT_ONCE os_once = INIT_ONCE_STATIC_INIT;

static int os_error(void) {
  DWORD e = GetLastError();
  return (e != 0 && e <= INT_MAX) ? (int)e : ERROR_NOT_ENOUGH_MEMORY;
}

/* MEM_RESET_UNDO on a page that was just reset: true only if the OS accepts it. */
static bool os_probe_reset_undo(size_t page_size) {
  volatile char *p = VirtualAlloc(NULL, page_size, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
  if (p == NULL) return false;
  p[0] = 1;
  bool ok = VirtualAlloc((void *)p, page_size, MEM_RESET, PAGE_NOACCESS) != NULL &&
            VirtualAlloc((void *)p, page_size, MEM_RESET_UNDO, PAGE_NOACCESS) != NULL;
  VirtualFree((void *)p, 0, MEM_RELEASE);
  return ok;
}

static BOOL CALLBACK os_init(PINIT_ONCE once, PVOID param, PVOID *context) {
  (void)once;
  (void)param;
  (void)context;
  SYSTEM_INFO si;
  GetSystemInfo(&si);
  os_info.page_size = si.dwPageSize > 0 ? (size_t)si.dwPageSize : 4096;
  os_info.granularity = si.dwAllocationGranularity > 0 ? (size_t)si.dwAllocationGranularity : 65536;
  os_info.has_reset_undo = os_probe_reset_undo(os_info.page_size);
  os_info.overcommit_strict = false;
  os_info.commit_splits_mappings = false; /* VirtualAlloc regions do not count against a map limit */
  HMODULE kernelbase = GetModuleHandleW(L"kernelbase.dll");
  if (kernelbase != NULL) {
    /* Through void (*)(void) so -Wcast-function-type accepts the FARPROC conversion. */
    os_virtual_alloc2 = (ra_virtual_alloc2_fn)(void (*)(void))GetProcAddress(kernelbase, "VirtualAlloc2");
  }
  return TRUE;
}

const ra_os_info_t *_ra_os_info(void) {
  InitOnceExecuteOnce(&os_once, os_init, NULL, NULL);
  return &os_info;
}

void _ra_os_set_commit_mode(ra_commit_mode_t mode) {
  (void)mode; /* Windows has no overcommit: the mode is always RA_COMMIT_PROTECT */
}

ra_commit_mode_t _ra_os_commit_mode(void) { return RA_COMMIT_PROTECT; }

static bool os_is_aligned(const void *p, size_t align) { return ((uintptr_t)p & (align - 1)) == 0; }

static void *os_reserve_aligned2(size_t size, size_t align) {
  ra_mem_address_requirements_t req = {NULL, NULL, (SIZE_T)align};
  ra_mem_extended_parameter_t param;
  param.type = RA_MEM_EXTENDED_PARAMETER_ADDRESS_REQUIREMENTS;
  param.u.pointer = &req;
  void *p = os_virtual_alloc2(GetCurrentProcess(), NULL, size, MEM_RESERVE, PAGE_NOACCESS, &param, 1);
  if (p != NULL && !os_is_aligned(p, align)) { /* never seen; do not trust it */
    VirtualFree(p, 0, MEM_RELEASE);
    p = NULL;
  }
  return p;
}

int _ra_os_reserve(size_t size, size_t align, void **out) {
  const ra_os_info_t *info = _ra_os_info();
  if (out == NULL || size == 0 || (align & (align - 1)) != 0) return ERROR_INVALID_PARAMETER;
  if (align < info->granularity) align = info->granularity;
  size_t rounded = (size + info->granularity - 1) & ~(info->granularity - 1);
  if (rounded < size) return ERROR_NOT_ENOUGH_MEMORY;
  size = rounded;
  void *p;
  if (align == info->granularity) {
    p = VirtualAlloc(NULL, size, MEM_RESERVE, PAGE_NOACCESS);
    if (p == NULL) return os_error();
    *out = p;
    return RA_OS_OK;
  }
  if (os_virtual_alloc2 != NULL && !os_skip_virtual_alloc2 && (p = os_reserve_aligned2(size, align)) != NULL) {
    *out = p;
    return RA_OS_OK;
  }
  /* Over-reserve, find the aligned address inside, release, and reserve exactly there. Every base is
   * granularity-aligned, so align - granularity extra bytes always contain an aligned start. */
  size_t extra = align - info->granularity;
  if (size + extra < size) return ERROR_NOT_ENOUGH_MEMORY;
  for (int i = 0; i < RA_RESERVE_RETRIES; i++) {
    p = VirtualAlloc(NULL, size + extra, MEM_RESERVE, PAGE_NOACCESS);
    if (p == NULL) return os_error();
    void *aligned = (void *)(((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1));
    VirtualFree(p, 0, MEM_RELEASE);
    p = VirtualAlloc(aligned, size, MEM_RESERVE, PAGE_NOACCESS);
    if (p == aligned) {
      *out = p;
      return RA_OS_OK;
    }
    if (p != NULL) VirtualFree(p, 0, MEM_RELEASE);
  }
  return ERROR_NOT_ENOUGH_MEMORY;
}

int _ra_os_commit(void *addr, size_t size, bool *is_zero) {
  /* Fresh commits read as zeros but recommits of committed pages keep their content; the caller's
   * bookkeeping knows which is which, so we promise nothing here. */
  if (is_zero) *is_zero = false;
  if (VirtualAlloc(addr, size, MEM_COMMIT, PAGE_READWRITE) == NULL) return os_error();
  return RA_OS_OK;
}

int _ra_os_decommit(void *addr, size_t size) {
  if (!VirtualFree(addr, size, MEM_DECOMMIT)) return os_error();
  return RA_OS_OK;
}

int _ra_os_reset(void *addr, size_t size) {
  /* flProtect is ignored for MEM_RESET but must be a valid value. */
  if (VirtualAlloc(addr, size, MEM_RESET, PAGE_NOACCESS) == NULL) return os_error();
  return RA_OS_OK;
}

int _ra_os_reset_undo(void *addr, size_t size) {
  if (!_ra_os_info()->has_reset_undo) return ERROR_NOT_SUPPORTED;
  if (VirtualAlloc(addr, size, MEM_RESET_UNDO, PAGE_NOACCESS) == NULL) return os_error();
  return RA_OS_OK;
}

int _ra_os_protect(void *addr, size_t size, ra_prot_t prot) {
  DWORD p;
  switch (prot) {
  case RA_PROT_NONE: p = PAGE_NOACCESS; break;
  case RA_PROT_READ: p = PAGE_READONLY; break;
  case RA_PROT_READWRITE: p = PAGE_READWRITE; break;
  default: return ERROR_INVALID_PARAMETER;
  }
  DWORD old;
  if (!VirtualProtect(addr, size, p, &old)) return os_error();
  return RA_OS_OK;
}

int _ra_os_release(void *addr, size_t size) {
  (void)size; /* MEM_RELEASE takes the whole reservation and requires size 0 */
  if (!VirtualFree(addr, 0, MEM_RELEASE)) return os_error();
  return RA_OS_OK;
}

#ifdef RA_OS_TEST_HOOKS
/* For tests/win only (built with the OS layer source): whether aligned reservations may use
 * VirtualAlloc2, and whether this system has it. */
void _ra_os_windows_test_use_virtual_alloc2(bool use) { os_skip_virtual_alloc2 = !use; }
bool _ra_os_windows_test_has_virtual_alloc2(void) { return _ra_os_info() != NULL && os_virtual_alloc2 != NULL; }
#endif

/* RtlGenRandom (advapi32's SystemFunction036, linked by default with mingw-w64), declared here
 * rather than through ntsecapi.h; without it, the performance counter, the process id and an
 * address (randomised by ASLR) are mixed. */
BOOLEAN NTAPI SystemFunction036(PVOID buffer, ULONG length);

uint64_t _ra_os_random(void) {
  uint64_t v = 0;
  if (!SystemFunction036(&v, sizeof v)) {
    LARGE_INTEGER pc;
    QueryPerformanceCounter(&pc);
    v = (uint64_t)pc.QuadPart ^ ((uint64_t)GetCurrentProcessId() << 32) ^ (uint64_t)(uintptr_t)&v;
  }
  v += 0x9e3779b97f4a7c15ULL;
  v = (v ^ (v >> 30)) * 0xbf58476d1ce4e5b9ULL;
  v = (v ^ (v >> 27)) * 0x94d049bb133111ebULL;
  return v ^ (v >> 31);
}

/* ---- Files written whole, the command line -------------------------------------------------------- */

int _ra_os_file_create(const char *tmp, int *err) {
  int fd = _open(tmp, _O_WRONLY | _O_CREAT | _O_TRUNC | _O_BINARY, _S_IREAD | _S_IWRITE);
  if (fd < 0) *err = errno;
  return fd;
}

int _ra_os_file_end(int fd, const char *tmp, const char *path, int err) {
  if (_close(fd) != 0 && err == 0) err = errno;
  if (err == 0 && !MoveFileExA(tmp, path, MOVEFILE_REPLACE_EXISTING)) err = EACCES;
  if (err != 0) _unlink(tmp);
  return err;
}

/* The process's own copy from GetCommandLineA: nothing allocated. */
size_t _ra_os_command_line(char *buf, size_t cap) {
  const char *cmd = GetCommandLineA();
  if (cmd == NULL) return 0;
  size_t n = strlen(cmd);
  if (n > cap - 1) n = cap - 1;
  memcpy(buf, cmd, n);
  buf[n] = '\0';
  return n;
}
