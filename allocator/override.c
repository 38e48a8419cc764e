/* The malloc family under its standard names, so that ramalloc replaces the C library's allocator:
 * in libramalloc.so (LD_PRELOAD, or a program linked to it) and in libramalloc.a (a program linked
 * to it statically). The in-tree tests and the sanitizer builds link a static library without this
 * file, so their process keeps glibc's malloc beside ramalloc.
 *
 * Every entry point is a direct call to its ra_* counterpart (the library is built with
 * -fno-semantic-interposition, and the shared one linked with -Bsymbolic-functions, so nothing here
 * goes through the PLT), except malloc and free, which run the fast paths themselves. Pointers are checked by the ra_* functions themselves: free and realloc of
 * a pointer ramalloc did not hand out are caught by the chunk map before any metadata is read.
 *
 * All of these live in one object file on purpose: a static link that pulls in any one of them
 * pulls in all of them, so a program never ends up with ramalloc's malloc and glibc's free.
 *
 * The glibc extensions (malloc_trim, mallinfo, mallinfo2, malloc_stats, mallopt, malloc_info)
 * answer from ramalloc's own state; none of them reaches glibc's allocator. */
#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "internal.h"

#define RA_PUBLIC __attribute__((visibility("default")))

/* ---- The standard family ---------------------------------------------------------------------- */

/* malloc and free run the fast paths themselves (internal.h), without a jump to ra_malloc or
 * ra_free. */
RA_PUBLIC void *malloc(size_t n) { return _ra_malloc_fast(n, _ra_alloc_generic, _ra_alloc_pop_corrupted); }
RA_PUBLIC void free(void *p) { _ra_free_fast(p); }
RA_PUBLIC void *calloc(size_t c, size_t n) { return ra_calloc(c, n); }
RA_PUBLIC void *realloc(void *p, size_t n) { return ra_realloc(p, n); }
RA_PUBLIC void *aligned_alloc(size_t a, size_t n) { return ra_aligned_alloc(a, n); }
RA_PUBLIC int posix_memalign(void **out, size_t a, size_t n) { return ra_posix_memalign(out, a, n); }
RA_PUBLIC size_t malloc_usable_size(void *p) { return ra_usable_size(p); }

/* C23 (glibc 2.36 does not have them yet): a free that is told the size, and the alignment, the
 * block was asked for; a size that cannot belong to the block is reported (docs/robustness.md). */
RA_PUBLIC void free_sized(void *p, size_t n);
RA_PUBLIC void free_sized(void *p, size_t n) { ra_free_sized(p, n); }
RA_PUBLIC void free_aligned_sized(void *p, size_t a, size_t n);
RA_PUBLIC void free_aligned_sized(void *p, size_t a, size_t n) { ra_free_aligned_sized(p, a, n); }

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

/* ---- glibc extensions, answered from ramalloc's state ----------------------------------------- */

/* Give free memory back to the OS now. Returns 1 when some was given back (the committed bytes
 * dropped, or, with RAMALLOC_PURGE=reset, which keeps the commit charge, bytes were reset), 0
 * otherwise, as glibc does. `pad` has no meaning here: ramalloc keeps no heap top. */
RA_PUBLIC int malloc_trim(size_t pad) {
  (void)pad;
  size_t committed = atomic_load_explicit(&_ra_counters.committed, memory_order_relaxed);
  size_t purged = atomic_load_explicit(&_ra_counters.purged, memory_order_relaxed);
  ra_collect(true);
  return atomic_load_explicit(&_ra_counters.committed, memory_order_relaxed) < committed ||
         atomic_load_explicit(&_ra_counters.purged, memory_order_relaxed) > purged;
}

/* The fields, in ramalloc's terms: all of its memory is one "arena" (no separate mmapped chunks),
 *   arena     bytes committed now          ordblks   free blocks in pages
 *   uordblks  bytes in live blocks         fordblks  committed bytes not in live blocks
 *   usmblks   peak committed bytes (the historical high-water mark)
 *   hblks, hblkhd, smblks, fsmblks, keepcost   0 */
static struct mallinfo2 info_from_stats(void) {
  ra_stats_t st;
  ra_stats_get(&st);
  size_t free_blocks = 0;
  for (size_t i = 0; i < st.class_count; i++) free_blocks += st.classes[i].blocks_free;
  struct mallinfo2 mi = {0};
  mi.arena = st.committed;
  mi.ordblks = free_blocks;
  mi.usmblks = st.committed_peak;
  mi.uordblks = st.live_bytes;
  mi.fordblks = st.committed > st.live_bytes ? st.committed - st.live_bytes : 0;
  return mi;
}

RA_PUBLIC struct mallinfo2 mallinfo2(void) { return info_from_stats(); }

/* The old interface with int fields (deprecated in glibc, still called): clamped, not wrapped. */
static int clamp_int(size_t v) { return v > (size_t)INT_MAX ? INT_MAX : (int)v; }

static struct mallinfo info_old(void) {
  struct mallinfo2 m = info_from_stats();
  struct mallinfo r = {0};
  r.arena = clamp_int(m.arena);
  r.ordblks = clamp_int(m.ordblks);
  r.usmblks = clamp_int(m.usmblks);
  r.uordblks = clamp_int(m.uordblks);
  r.fordblks = clamp_int(m.fordblks);
  return r;
}

RA_PUBLIC struct mallinfo mallinfo(void) { return info_old(); }

/* glibc prints its arenas to stderr; ramalloc prints its own statistics there. */
RA_PUBLIC void malloc_stats(void) { ra_stats_print(2); }

/* Every parameter glibc knows is accepted (1) and has no effect: ramalloc has no fast bins, heap
 * top or mmap threshold to tune. An unknown parameter gives 0, as in glibc. */
RA_PUBLIC int mallopt(int param, int value) {
  (void)value;
  switch (param) {
    case M_MXFAST:
    case M_TRIM_THRESHOLD:
    case M_TOP_PAD:
    case M_MMAP_THRESHOLD:
    case M_MMAP_MAX:
    case M_CHECK_ACTION:
    case M_PERTURB:
    case M_ARENA_TEST:
    case M_ARENA_MAX:
      return 1;
    default:
      return 0;
  }
}

/* glibc's XML report, with ramalloc's figures: one element per size class that has pages, then
 * the totals. Called from ordinary code (not from inside the allocator), so stdio may allocate. */
RA_PUBLIC int malloc_info(int options, FILE *fp) {
  if (options != 0 || fp == NULL) {
    errno = EINVAL;
    return -1;
  }
  ra_stats_t st;
  ra_stats_get(&st);
  size_t free_blocks = 0, free_bytes = 0;
  fprintf(fp, "<malloc version=\"1\" allocator=\"ramalloc %d.%d.%d\">\n<heap nr=\"0\">\n<sizes>\n",
          RAMALLOC_VERSION_MAJOR, RAMALLOC_VERSION_MINOR, RAMALLOC_VERSION_PATCH);
  for (size_t i = 0; i < st.class_count; i++) {
    const ra_class_stats_t *c = &st.classes[i];
    if (c->pages == 0) continue;
    fprintf(fp, "  <size from=\"%zu\" to=\"%zu\" total=\"%zu\" count=\"%zu\"/>\n", c->block_size, c->block_size,
            c->block_size * c->blocks_free, c->blocks_free);
    free_blocks += c->blocks_free;
    free_bytes += c->block_size * c->blocks_free;
  }
  fprintf(fp, "</sizes>\n<total type=\"rest\" count=\"%zu\" size=\"%zu\"/>\n", free_blocks, free_bytes);
  fprintf(fp, "<system type=\"current\" size=\"%zu\"/>\n<system type=\"max\" size=\"%zu\"/>\n", st.committed,
          st.committed_peak);
  fprintf(fp, "<aspace type=\"total\" size=\"%zu\"/>\n<aspace type=\"mprotect\" size=\"%zu\"/>\n", st.reserved,
          st.committed);
  fprintf(fp, "</heap>\n<total type=\"mmap\" count=\"%zu\" size=\"0\"/>\n", st.huge_blocks);
  fprintf(fp, "<system type=\"current\" size=\"%zu\"/>\n<system type=\"max\" size=\"%zu\"/>\n", st.committed,
          st.committed_peak);
  fprintf(fp, "<aspace type=\"total\" size=\"%zu\"/>\n<aspace type=\"mprotect\" size=\"%zu\"/>\n</malloc>\n",
          st.reserved, st.committed);
  return 0;
}

/* cfree is gone from glibc's headers but programs linked long ago still call it. */
RA_PUBLIC void cfree(void *p);
RA_PUBLIC void cfree(void *p) { ra_free(p); }

/* ---- The names glibc's own code and some libraries call directly ------------------------------ */

RA_PUBLIC void *__libc_malloc(size_t n) { return ra_malloc(n); }
RA_PUBLIC void __libc_free(void *p) { ra_free(p); }
RA_PUBLIC void *__libc_calloc(size_t c, size_t n) { return ra_calloc(c, n); }
RA_PUBLIC void *__libc_realloc(void *p, size_t n) { return ra_realloc(p, n); }
RA_PUBLIC void *__libc_memalign(size_t a, size_t n) { return memalign(a, n); }
RA_PUBLIC void *__libc_valloc(size_t n) { return valloc(n); }
RA_PUBLIC void *__libc_pvalloc(size_t n) { return pvalloc(n); }
RA_PUBLIC struct mallinfo __libc_mallinfo(void) { return info_old(); }
RA_PUBLIC int __libc_mallopt(int param, int value) { return mallopt(param, value); }
