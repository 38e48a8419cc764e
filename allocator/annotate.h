/* Telling AddressSanitizer and valgrind's memcheck about ramalloc's blocks (docs/robustness.md,
 * "Sanitizers and valgrind"). Everything here compiles to nothing in an ordinary build: the macros
 * below do not even evaluate their arguments, and the free-block word accessors are plain loads and
 * stores, so the fast paths are the same instructions with or without this header.
 *
 *   RA_ASAN      the library is compiled with -fsanitize=address (detected from the compiler)
 *   RA_VALGRIND  CMake -DRAMALLOC_VALGRIND=ON: memcheck client requests (<valgrind/memcheck.h>)
 *
 * The model, for both tools:
 *   - a block handed out is live for exactly the bytes asked for (the requested size), the rest of
 *     its usable size is not; ra_usable_size() grants the whole usable size (a program may use what
 *     malloc_usable_size says), so only a program that never asked is held to what it requested;
 *   - a free block (on a page's free list, a remote list, a heap's delayed list), the uncarved part
 *     of a page and a freed huge block are out of bounds;
 *   - the allocator's own loads and stores of a free block's link word go through ra_word_load and
 *     ra_word_store, which the tools do not check (ASan: not instrumented; memcheck: error
 *     reporting suspended around the one access). Neither changes any shadow state, so a block on
 *     a list that another thread may take at any moment is never re-marked behind that thread's back.
 *
 * ASan: free bytes are poisoned (ASAN_POISON_MEMORY_REGION), live bytes unpoisoned. A block is
 * poisoned by the thread that frees it before it is pushed on any list (a remote free's CAS
 * publishes it poisoned), and unpoisoned by the thread that pops it, after the pop.
 * memcheck: VALGRIND_MALLOCLIKE_BLOCK when a block is handed out (is_zeroed for calloc),
 * VALGRIND_FREELIKE_BLOCK on entry to ra_free (so memcheck itself names double and invalid frees),
 * VALGRIND_MAKE_MEM_NOACCESS for the slack past the requested size, freed blocks and fresh pages,
 * VALGRIND_RESIZEINPLACE_BLOCK when realloc keeps the block. */
#ifndef RAMALLOC_ANNOTATE_H
#define RAMALLOC_ANNOTATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__SANITIZE_ADDRESS__)
#define RA_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RA_ASAN 1
#endif
#endif
#ifndef RA_ASAN
#define RA_ASAN 0
#endif

#ifndef RA_VALGRIND
#define RA_VALGRIND 0
#endif

#define RA_ANNOTATE (RA_ASAN || RA_VALGRIND)

#if RA_ASAN
#include <sanitizer/asan_interface.h>
#define RA_NO_ASAN __attribute__((no_sanitize_address, noinline, unused))
#else
#define RA_NO_ASAN
#endif
#if RA_VALGRIND
#include <valgrind/memcheck.h>
#include <valgrind/valgrind.h>
#endif

/* ---- The allocator's own accesses to free-block memory (link words) ---------------------------- */

#if RA_ASAN
RA_NO_ASAN static uintptr_t ra_word_load(const uintptr_t *w) { return *(const volatile uintptr_t *)w; }
RA_NO_ASAN static void ra_word_store(uintptr_t *w, uintptr_t v) { *(volatile uintptr_t *)w = v; }
#elif RA_VALGRIND
/* The bracket keeps the access from being reported, and changes nothing another thread could be
 * relying on. The value is then declared defined: the word may be a live block's first bytes that
 * the program never wrote (free() looks at it for a double free), and the allocator copes with any
 * value there. */
static inline uintptr_t ra_word_load(const uintptr_t *w) {
  volatile uintptr_t v;
  VALGRIND_DISABLE_ERROR_REPORTING;
  v = *(const volatile uintptr_t *)w;
  VALGRIND_ENABLE_ERROR_REPORTING;
  VALGRIND_MAKE_MEM_DEFINED(&v, sizeof v);
  return v;
}
static inline void ra_word_store(uintptr_t *w, uintptr_t v) {
  VALGRIND_DISABLE_ERROR_REPORTING;
  *(volatile uintptr_t *)w = v;
  VALGRIND_ENABLE_ERROR_REPORTING;
}
#else
static inline uintptr_t ra_word_load(const uintptr_t *w) { return *w; }
static inline void ra_word_store(uintptr_t *w, uintptr_t v) { *w = v; }
#endif

#if RA_ANNOTATE
/* ---- Annotated builds: the operations ------------------------------------------------------------ */

/* Bytes [p, p + n) are out of bounds (free, fresh, slack). */
static inline void ra_ann_close(const void *p, size_t n) {
  if (n == 0) return;
#if RA_ASAN
  ASAN_POISON_MEMORY_REGION(p, n);
#endif
#if RA_VALGRIND
  VALGRIND_MAKE_MEM_NOACCESS(p, n);
#endif
}

/* Bytes [p, p + n) may be written by the allocator (zeroing a block before it is handed out):
 * addressable, contents unknown. */
static inline void ra_ann_open(const void *p, size_t n) {
  if (n == 0) return;
#if RA_ASAN
  ASAN_UNPOISON_MEMORY_REGION(p, n);
#endif
#if RA_VALGRIND
  VALGRIND_MAKE_MEM_UNDEFINED(p, n);
#endif
}

/* Bytes [p, p + n) hold (or may hold again) allocator metadata: a chunk header can start where a
 * freed huge block was. */
static inline void ra_ann_metadata(const void *p, size_t n) {
#if RA_ASAN
  ASAN_UNPOISON_MEMORY_REGION(p, n);
#endif
#if RA_VALGRIND
  VALGRIND_MAKE_MEM_DEFINED(p, n);
#endif
}

/* A block of `usable` bytes at p is handed out for `req` bytes (req <= usable); `zeroed`: its first
 * req bytes are zero (calloc). Called after the pop (and any zeroing), before the return. */
static inline void ra_ann_alloc(void *p, size_t req, size_t usable, bool zeroed) {
  if (req > usable) req = usable;
#if RA_ASAN
  /* Large fresh ranges are unpoisoned already: skip the shadow writes (they would commit shadow). */
  if (req < ((size_t)1 << 20) || __asan_region_is_poisoned(p, req) != NULL) ASAN_UNPOISON_MEMORY_REGION(p, req);
  if (usable > req) ASAN_POISON_MEMORY_REGION((uint8_t *)p + req, usable - req);
#endif
#if RA_VALGRIND
  if (usable > req) VALGRIND_MAKE_MEM_NOACCESS((uint8_t *)p + req, usable - req);
  VALGRIND_MALLOCLIKE_BLOCK(p, req, 0, zeroed);
#endif
  (void)zeroed;
}

/* The block at `block` (usable bytes) is being freed: out of bounds from now on. Called once the
 * pointer is known to be a live block, before the block goes on any list. */
static inline void ra_ann_free_block(void *block, size_t usable) { ra_ann_close(block, usable); }

/* Entry of ra_free: memcheck records the free (and reports a double or invalid free itself). */
static inline void ra_ann_free_entry(void *p) {
#if RA_VALGRIND
  if (p != NULL) VALGRIND_FREELIKE_BLOCK(p, 0);
#endif
  (void)p;
}

/* How many bytes from p are live as the tools see it (the requested size), p being a block of
 * `usable` bytes. */
static inline size_t ra_ann_live_size(const void *p, size_t usable) {
#if RA_ASAN
  const void *bad = __asan_region_is_poisoned((void *)p, usable);
  if (bad != NULL) return (size_t)((const uint8_t *)bad - (const uint8_t *)p);
#endif
#if RA_VALGRIND
  if (RUNNING_ON_VALGRIND) {
    VALGRIND_DISABLE_ERROR_REPORTING;
    uintptr_t bad = (uintptr_t)VALGRIND_CHECK_MEM_IS_ADDRESSABLE(p, usable);
    VALGRIND_ENABLE_ERROR_REPORTING;
    if (bad != 0) return (size_t)(bad - (uintptr_t)p);
  }
#endif
  return usable;
}

/* The live block at p (live bytes of usable) is resized in place to `req` bytes of `usable_now`. */
static inline void ra_ann_resize(void *p, size_t live, size_t req, size_t usable_now) {
  if (req > usable_now) req = usable_now;
#if RA_ASAN
  ASAN_UNPOISON_MEMORY_REGION(p, req);
  if (usable_now > req) ASAN_POISON_MEMORY_REGION((uint8_t *)p + req, usable_now - req);
#endif
#if RA_VALGRIND
  /* Growing marks [live, req) undefined, shrinking marks [req, live) out of bounds. */
  if (req != live) VALGRIND_RESIZEINPLACE_BLOCK(p, live, req, 0);
  if (usable_now > req) VALGRIND_MAKE_MEM_NOACCESS((uint8_t *)p + req, usable_now - req);
#endif
  (void)live;
}

#define RA_ANN_ALLOC(p, req, usable, zeroed) ra_ann_alloc((p), (req), (usable), (zeroed))
#define RA_ANN_FREE_ENTRY(p) ra_ann_free_entry(p)
#define RA_ANN_FREE_BLOCK(b, usable) ra_ann_free_block((b), (usable))
#define RA_ANN_CLOSE(p, n) ra_ann_close((p), (n))
#define RA_ANN_OPEN(p, n) ra_ann_open((p), (n))
#else
/* ---- Ordinary builds: nothing, not even the arguments -------------------------------------------- */
#define RA_ANN_ALLOC(p, req, usable, zeroed) ((void)0)
#define RA_ANN_FREE_ENTRY(p) ((void)0)
#define RA_ANN_FREE_BLOCK(b, usable) ((void)0)
#define RA_ANN_CLOSE(p, n) ((void)0)
#define RA_ANN_OPEN(p, n) ((void)0)
#endif

#endif /* RAMALLOC_ANNOTATE_H */
