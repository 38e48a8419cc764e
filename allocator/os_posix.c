/* OS layer on POSIX (Linux first): reserve = mmap(PROT_NONE), commit = mprotect or nothing,
 * decommit = madvise(MADV_DONTNEED) [+ mmap(MAP_FIXED, PROT_NONE)], reset = madvise(MADV_FREE). */
#define _GNU_SOURCE
#include "os.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static ra_os_info_t os_info;
static atomic_int os_info_ready;
static _Atomic ra_commit_mode_t os_mode = RA_COMMIT_PROTECT;

/* Read /proc/sys/vm/overcommit_memory without allocating. */
static int os_read_overcommit(void) {
  int fd = open("/proc/sys/vm/overcommit_memory", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char c = '0';
  ssize_t n = read(fd, &c, 1);
  close(fd);
  return (n == 1 && c >= '0' && c <= '9') ? c - '0' : 0;
}

const ra_os_info_t *_ra_os_info(void) {
  if (atomic_load_explicit(&os_info_ready, memory_order_acquire)) return &os_info;
  long ps = sysconf(_SC_PAGESIZE);
  os_info.page_size = ps > 0 ? (size_t)ps : 4096;
  os_info.granularity = os_info.page_size;
  os_info.has_reset_undo = false; /* nothing to undo: a write keeps the page */
  os_info.overcommit_strict = os_read_overcommit() == 2;
  os_info.commit_splits_mappings = true;
  atomic_store_explicit(&os_info_ready, 1, memory_order_release);
  return &os_info;
}

void _ra_os_set_commit_mode(ra_commit_mode_t mode) { atomic_store(&os_mode, mode); }
ra_commit_mode_t _ra_os_commit_mode(void) { return atomic_load_explicit(&os_mode, memory_order_relaxed); }

static int os_errno(void) { return errno > 0 ? errno : ENOMEM; }

static int os_map_prot(ra_commit_mode_t mode) {
  return mode == RA_COMMIT_OVERCOMMIT ? (PROT_READ | PROT_WRITE) : PROT_NONE;
}

int _ra_os_reserve(size_t size, size_t align, void **out) {
  const ra_os_info_t *info = _ra_os_info();
  if (size == 0 || (align & (align - 1)) != 0) return EINVAL;
  if (align < info->granularity) align = info->granularity;
  int prot = os_map_prot(_ra_os_commit_mode());
  int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
  /* Over-reserve by the alignment and trim both ends: one mmap, at most two munmaps. */
  size_t extra = align > info->page_size ? align - info->page_size : 0;
  if (size + extra < size) return ENOMEM;
  void *p = mmap(NULL, size + extra, prot, flags, -1, 0);
  if (p == MAP_FAILED) return os_errno();
  uintptr_t base = (uintptr_t)p;
  uintptr_t aligned = (base + align - 1) & ~(uintptr_t)(align - 1);
  size_t head = aligned - base;
  size_t tail = extra - head;
  if (head > 0) munmap(p, head);
  if (tail > 0) munmap((void *)(aligned + size), tail);
  *out = (void *)aligned;
  return RA_OS_OK;
}

int _ra_os_commit(void *addr, size_t size, bool *is_zero) {
  /* Linux cannot tell us whether the range was touched before; the caller's own bookkeeping knows
   * (fresh or decommitted ranges read as zeros), so we promise nothing here. */
  if (is_zero) *is_zero = false;
  if (_ra_os_commit_mode() == RA_COMMIT_OVERCOMMIT) return RA_OS_OK;
  if (mprotect(addr, size, PROT_READ | PROT_WRITE) != 0) return os_errno();
  return RA_OS_OK;
}

int _ra_os_decommit(void *addr, size_t size) {
  if (_ra_os_commit_mode() == RA_COMMIT_OVERCOMMIT) {
    if (madvise(addr, size, MADV_DONTNEED) != 0) return os_errno();
    return RA_OS_OK;
  }
  /* A fresh PROT_NONE mapping over the range drops the pages and the access in one call. */
  void *p = mmap(addr, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
  if (p == MAP_FAILED) return os_errno();
  return RA_OS_OK;
}

int _ra_os_reset(void *addr, size_t size) {
#ifdef MADV_FREE
  static atomic_int free_unsupported;
  if (!atomic_load_explicit(&free_unsupported, memory_order_relaxed)) {
    if (madvise(addr, size, MADV_FREE) == 0) return RA_OS_OK;
    if (errno != EINVAL) return os_errno();
    atomic_store_explicit(&free_unsupported, 1, memory_order_relaxed);
  }
#endif
  if (madvise(addr, size, MADV_DONTNEED) != 0) return os_errno();
  return RA_OS_OK;
}

int _ra_os_reset_undo(void *addr, size_t size) {
  (void)addr;
  (void)size;
  return RA_OS_OK;
}

int _ra_os_protect(void *addr, size_t size, ra_prot_t prot) {
  int p = prot == RA_PROT_READWRITE ? (PROT_READ | PROT_WRITE) : prot == RA_PROT_READ ? PROT_READ : PROT_NONE;
  if (mprotect(addr, size, p) != 0) return os_errno();
  return RA_OS_OK;
}

int _ra_os_release(void *addr, size_t size) {
  if (munmap(addr, size) != 0) return os_errno();
  return RA_OS_OK;
}

uint64_t _ra_os_random(void) {
  uint64_t v = 0;
  /* The kernel puts 16 random bytes on every new process's stack; each call takes 8 of them mixed
   * with the clock, so two calls differ. */
  const unsigned char *r = (const unsigned char *)getauxval(AT_RANDOM);
  if (r != NULL) {
    for (int i = 0; i < 8; i++) v = (v << 8) | r[i + 8];
  } else {
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      if (read(fd, &v, sizeof v) != (ssize_t)sizeof v) v = 0;
      close(fd);
    }
  }
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  v ^= ((uint64_t)ts.tv_nsec << 32) ^ (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)&v;
  /* splitmix64 finaliser: spread the bits */
  v += 0x9e3779b97f4a7c15ULL;
  v = (v ^ (v >> 30)) * 0xbf58476d1ce4e5b9ULL;
  v = (v ^ (v >> 27)) * 0x94d049bb133111ebULL;
  return v ^ (v >> 31);
}

/* ---- Files written whole, the command line -------------------------------------------------------- */

int _ra_os_file_create(const char *tmp, int *err) {
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) *err = errno;
  return fd;
}

int _ra_os_file_end(int fd, const char *tmp, const char *path, int err) {
  if (close(fd) != 0 && err == 0) err = errno;
  if (err == 0 && rename(tmp, path) != 0) err = errno;
  if (err != 0) unlink(tmp);
  return err;
}

/* From /proc/self/cmdline (read(2): nothing allocated); 0 where /proc is missing. */
size_t _ra_os_command_line(char *buf, size_t cap) {
  int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = read(fd, buf, cap - 1);
  close(fd);
  if (n <= 0) return 0;
  for (ssize_t i = 0; i < n; i++)
    if (buf[i] == '\0') buf[i] = ' ';
  while (n > 0 && buf[n - 1] == ' ') n--;
  buf[n] = '\0';
  return (size_t)n;
}
