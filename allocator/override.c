/* The malloc family, for LD_PRELOAD and for programs linked to libramalloc.so: each entry point is
 * a direct jump to its ra_* counterpart (built with -fno-semantic-interposition). Only the shared
 * library carries this file; libramalloc.a keeps to the ra_* names. */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "internal.h"

#define RA_PUBLIC __attribute__((visibility("default")))

RA_PUBLIC void *malloc(size_t n) { return ra_malloc(n); }
RA_PUBLIC void free(void *p) { ra_free(p); }
RA_PUBLIC void *calloc(size_t c, size_t n) { return ra_calloc(c, n); }
RA_PUBLIC void *realloc(void *p, size_t n) { return ra_realloc(p, n); }
RA_PUBLIC void *aligned_alloc(size_t a, size_t n) { return ra_aligned_alloc(a, n); }
RA_PUBLIC int posix_memalign(void **out, size_t a, size_t n) { return ra_posix_memalign(out, a, n); }
RA_PUBLIC size_t malloc_usable_size(void *p) { return ra_usable_size(p); }

RA_PUBLIC void *reallocarray(void *p, size_t c, size_t n) {
  size_t total;
  if (__builtin_mul_overflow(c, n, &total)) {
    errno = ENOMEM;
    return NULL;
  }
  return ra_realloc(p, total);
}

/* glibc's memalign accepts any alignment and rounds it up to a power of two. */
RA_PUBLIC void *memalign(size_t a, size_t n) {
  if (a > ((size_t)1 << (RA_ADDR_BITS - 1))) {
    errno = EINVAL;
    return NULL;
  }
  size_t p2 = RA_ALIGN;
  while (p2 < a) p2 <<= 1;
  return ra_aligned_alloc(p2, n);
}

RA_PUBLIC void *valloc(size_t n) { return ra_aligned_alloc(_ra_os_info()->page_size, n); }

RA_PUBLIC void *pvalloc(size_t n) {
  size_t page = _ra_os_info()->page_size;
  size_t rounded = _ra_align_up(n, page);
  if (rounded < n) {
    errno = ENOMEM;
    return NULL;
  }
  return ra_aligned_alloc(page, rounded == 0 ? page : rounded);
}

/* The names glibc's own code and some libraries call directly. */
RA_PUBLIC void *__libc_malloc(size_t n) { return ra_malloc(n); }
RA_PUBLIC void __libc_free(void *p) { ra_free(p); }
RA_PUBLIC void *__libc_calloc(size_t c, size_t n) { return ra_calloc(c, n); }
RA_PUBLIC void *__libc_realloc(void *p, size_t n) { return ra_realloc(p, n); }
RA_PUBLIC void *__libc_memalign(size_t a, size_t n) { return memalign(a, n); }
