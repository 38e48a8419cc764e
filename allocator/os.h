/* The OS layer: VirtualAlloc's vocabulary, one contract for every OS.
 *
 * Implementations: os_posix.c (mmap / mprotect / madvise) and os_windows.c (VirtualAlloc,
 * VirtualFree, VirtualProtect). Exactly one of them is compiled in.
 *
 * Contract, for every function taking (addr, size): addr != NULL and aligned to the OS page size,
 * size > 0 and a multiple of the OS page size, and the range lies inside one reservation made by
 * _ra_os_reserve. Functions return RA_OS_OK (0) or a positive error code (an errno value on POSIX,
 * a GetLastError value on Windows); they never abort and never allocate. */
#ifndef RAMALLOC_OS_H
#define RAMALLOC_OS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RA_OS_OK 0

/* What "commit" means. In RA_COMMIT_PROTECT, reserved memory is inaccessible until committed
 * (touching it faults, as on Windows) and every commit changes page protection. In
 * RA_COMMIT_OVERCOMMIT (POSIX only) the reservation is mapped read-write with MAP_NORESERVE and the
 * kernel supplies pages on first touch: commit does nothing, decommit drops the pages. */
typedef enum ra_commit_mode_e { RA_COMMIT_PROTECT = 0, RA_COMMIT_OVERCOMMIT = 1 } ra_commit_mode_t;

typedef enum ra_prot_e { RA_PROT_NONE = 0, RA_PROT_READ = 1, RA_PROT_READWRITE = 2 } ra_prot_t;

typedef struct ra_os_info_s {
  size_t page_size;       /* bytes per OS page (4096 on x86-64) */
  size_t granularity;     /* alignment and unit of reservations (Windows: 64 KiB; POSIX: page) */
  bool has_reset_undo;    /* false where MEM_RESET_UNDO is rejected (wine 8) or meaningless */
  bool overcommit_strict; /* POSIX: /proc/sys/vm/overcommit_memory is 2 */
  bool commit_splits_mappings; /* Linux: each protection change splits a mapping (vm.max_map_count) */
} ra_os_info_t;

/* Query the OS once; later calls return the cached answer. */
const ra_os_info_t *_ra_os_info(void);

/* The commit mode used by later reservations. POSIX honours both; Windows only RA_COMMIT_PROTECT
 * (setting OVERCOMMIT there is ignored). Set before the first reservation; a reservation keeps the
 * mode it was made under, so callers that mix modes must pass the right one back (see below). */
void _ra_os_set_commit_mode(ra_commit_mode_t mode);
ra_commit_mode_t _ra_os_commit_mode(void);

/* Reserve size bytes of address space aligned to `align` (a power of two >= granularity), with no
 * access and no commit charge. *out receives the base. */
int _ra_os_reserve(size_t size, size_t align, void **out);

/* Make [addr, addr+size) readable and writable. *is_zero is set true when the OS guarantees the
 * range reads as zeros afterwards (fresh or decommitted pages). Committing committed memory is
 * allowed and keeps its content. */
int _ra_os_commit(void *addr, size_t size, bool *is_zero);

/* Give the pages back and make the range inaccessible again (protect mode); in overcommit mode the
 * range stays accessible and reads as zeros. The range stays reserved. */
int _ra_os_decommit(void *addr, size_t size);

/* Tell the OS the content is no longer needed; the range stays committed and accessible, and may
 * read back as the old content or as zeros. */
int _ra_os_reset(void *addr, size_t size);

/* Undo a reset before reusing the range. Returns RA_OS_OK where there is nothing to undo (POSIX);
 * an error where the OS rejects it (callers then treat the range as decommitted and recommit it). */
int _ra_os_reset_undo(void *addr, size_t size);

/* Change the protection of committed memory. */
int _ra_os_protect(void *addr, size_t size, ra_prot_t prot);

/* Release a whole reservation (addr and size as reserved). */
int _ra_os_release(void *addr, size_t size);

/* 64 unpredictable bits for the allocator's secrets, without allocating (POSIX: the kernel's
 * AT_RANDOM bytes or /dev/urandom; Windows: see os_windows.c). */
uint64_t _ra_os_random(void);

/* Files written whole (the inspection dumps): _ra_os_file_create creates (or truncates) the file
 * `tmp` for writing and returns its descriptor, or -1 with *err set. _ra_os_file_end closes it and,
 * when err is 0, moves it onto path (replacing an older file); otherwise, or when that fails,
 * removes it. It returns err, or the errno value of what failed. */
int _ra_os_file_create(const char *tmp, int *err);
int _ra_os_file_end(int fd, const char *tmp, const char *path, int err);

/* The process's command line, arguments joined by spaces, into buf[cap] without allocating;
 * 0 when unknown. */
size_t _ra_os_command_line(char *buf, size_t cap);

#endif /* RAMALLOC_OS_H */
