/* C++'s replaceable allocation functions, every standard form, under their mangled names (Itanium
 * ABI, size_t = unsigned long: x86-64 and arm64 Linux), so that new and delete reach ramalloc
 * without libstdc++'s forwarding to malloc and free, and sized delete can check its size.
 *
 * Written in C so that the library keeps depending on libc and pthreads only. The two pieces of
 * the C++ runtime that the standard's semantics need are reached through weak references:
 *   std::get_new_handler()    _ZSt15get_new_handlerv
 *   std::__throw_bad_alloc()  _ZSt17__throw_bad_allocv (libstdc++'s "throw std::bad_alloc()")
 * In a process that calls operator new, libstdc++ is loaded (the program or a library it uses was
 * linked with it), so the dynamic linker resolves both; in a static link with libstdc++.a they
 * resolve when the program pulls the objects that define them in (set_new_handler and
 * get_new_handler share one). When a reference is unresolved: no handler is installed, and an
 * operator new that would throw prints "ramalloc: out of memory in operator new" and aborts.
 *
 * Semantics (C++17 [new.delete]):
 * - operator new (plain, array, aligned): on failure, call the new handler and try again, for as
 *   long as there is a handler; with none, throw std::bad_alloc. A non-power-of-two alignment
 *   throws std::bad_alloc at once (libstdc++ does the same).
 * - the nothrow forms: the same loop, but NULL instead of the throw. A handler that throws from
 *   inside a nothrow form cannot be caught here (C has no catch): the exception leaves a noexcept
 *   function and std::terminate runs. libstdc++ returns NULL in that case.
 * - operator delete: NULL is ignored. The sized forms check the size (and the aligned ones the
 *   alignment) against the block: a size that cannot have been asked of operator new for this
 *   block is a misuse, reported as "ramalloc: sized delete of 0x... with the wrong size N"
 *   (free.c, _ra_free_sized). The nothrow delete forms are plain frees.
 *
 * This file is compiled with -fexceptions: an exception thrown by a handler passes through the
 * frames of operator new on its way to the caller. */
#include <stdlib.h>

#include "internal.h"

#define RA_PUBLIC __attribute__((visibility("default"), used))

typedef void (*new_handler_t)(void);
extern new_handler_t ra_cxx_get_new_handler(void) __asm__("_ZSt15get_new_handlerv") __attribute__((weak));
extern void ra_cxx_throw_bad_alloc(void) __asm__("_ZSt17__throw_bad_allocv") __attribute__((weak, noreturn));

/* std::nothrow_t is an empty struct passed by reference; std::align_val_t is an enum of size_t. */
typedef struct nothrow_s nothrow_t;

static RA_NORETURN RA_COLD void throw_bad_alloc(void) {
  if (ra_cxx_throw_bad_alloc != NULL) ra_cxx_throw_bad_alloc();
  _ra_fmt_write(2, "ramalloc: out of memory in operator new (std::bad_alloc is out of reach)\n");
  abort();
}

/* The allocation failed: call the handler and try again while there is one; then throw, or give
 * NULL for the nothrow forms. */
static RA_COLD void *new_retry(size_t size, size_t align, bool nothrow) {
  if (align != 0 && (align & (align - 1)) != 0) {
    if (nothrow) return NULL;
    throw_bad_alloc();
  }
  for (;;) {
    new_handler_t h = ra_cxx_get_new_handler != NULL ? ra_cxx_get_new_handler() : NULL;
    if (h == NULL) {
      if (nothrow) return NULL;
      throw_bad_alloc();
    }
    h();
    void *p = align <= RA_ALIGN ? ra_malloc(size) : ra_aligned_alloc(align, size);
    if (p != NULL) return p;
  }
}

/* Plain operator new off its fast path (the same as ra_malloc's, inlined: new is then one
 * function, with no call to ra_malloc and no test of its result on the common path). */
static RA_NOINLINE void *new_generic(size_t size, ra_heap_t *heap, bool zero) {
  void *p = _ra_alloc_generic(size, heap, zero);
  if (RA_LIKELY(p != NULL)) return p;
  return new_retry(size, 0, false);
}

static RA_NOINLINE void *new_corrupted(ra_page_t *page, ra_block_t *b) {
  _ra_alloc_list_corrupted(page, b);
  return new_generic(page->block_size, _ra_heap_current(), false);
}

static inline void *cxx_new(size_t size, bool nothrow) {
  void *p = ra_malloc(size);
  if (RA_LIKELY(p != NULL)) return p;
  return new_retry(size, 0, nothrow);
}

static inline void *cxx_new_aligned(size_t size, size_t align, bool nothrow) {
  void *p = (align & (align - 1)) == 0 ? ra_aligned_alloc(align, size) : NULL;
  if (RA_LIKELY(p != NULL)) return p;
  return new_retry(size, align == 0 ? 1 : align, nothrow);
}

/* ---- new ------------------------------------------------------------------------------------------ */

RA_PUBLIC void *ra_cxx_new(size_t n) __asm__("_Znwm");
RA_PUBLIC void *ra_cxx_new_array(size_t n) __asm__("_Znam");
RA_PUBLIC void *ra_cxx_new_nothrow(size_t n, const nothrow_t *t) __asm__("_ZnwmRKSt9nothrow_t");
RA_PUBLIC void *ra_cxx_new_array_nothrow(size_t n, const nothrow_t *t) __asm__("_ZnamRKSt9nothrow_t");
RA_PUBLIC void *ra_cxx_new_aligned(size_t n, size_t a) __asm__("_ZnwmSt11align_val_t");
RA_PUBLIC void *ra_cxx_new_array_aligned(size_t n, size_t a) __asm__("_ZnamSt11align_val_t");
RA_PUBLIC void *ra_cxx_new_aligned_nothrow(size_t n, size_t a, const nothrow_t *t)
  __asm__("_ZnwmSt11align_val_tRKSt9nothrow_t");
RA_PUBLIC void *ra_cxx_new_array_aligned_nothrow(size_t n, size_t a, const nothrow_t *t)
  __asm__("_ZnamSt11align_val_tRKSt9nothrow_t");

void *ra_cxx_new(size_t n) { return _ra_malloc_fast(n, new_generic, new_corrupted); }
void *ra_cxx_new_array(size_t n) { return _ra_malloc_fast(n, new_generic, new_corrupted); }
void *ra_cxx_new_nothrow(size_t n, const nothrow_t *t) { return cxx_new(n, true); }
void *ra_cxx_new_array_nothrow(size_t n, const nothrow_t *t) { return cxx_new(n, true); }
void *ra_cxx_new_aligned(size_t n, size_t a) { return cxx_new_aligned(n, a, false); }
void *ra_cxx_new_array_aligned(size_t n, size_t a) { return cxx_new_aligned(n, a, false); }
void *ra_cxx_new_aligned_nothrow(size_t n, size_t a, const nothrow_t *t) { return cxx_new_aligned(n, a, true); }
void *ra_cxx_new_array_aligned_nothrow(size_t n, size_t a, const nothrow_t *t) {
  return cxx_new_aligned(n, a, true);
}

/* ---- delete --------------------------------------------------------------------------------------- */

RA_PUBLIC void ra_cxx_delete(void *p) __asm__("_ZdlPv");
RA_PUBLIC void ra_cxx_delete_array(void *p) __asm__("_ZdaPv");
RA_PUBLIC void ra_cxx_delete_sized(void *p, size_t n) __asm__("_ZdlPvm");
RA_PUBLIC void ra_cxx_delete_array_sized(void *p, size_t n) __asm__("_ZdaPvm");
RA_PUBLIC void ra_cxx_delete_nothrow(void *p, const nothrow_t *t) __asm__("_ZdlPvRKSt9nothrow_t");
RA_PUBLIC void ra_cxx_delete_array_nothrow(void *p, const nothrow_t *t) __asm__("_ZdaPvRKSt9nothrow_t");
RA_PUBLIC void ra_cxx_delete_aligned(void *p, size_t a) __asm__("_ZdlPvSt11align_val_t");
RA_PUBLIC void ra_cxx_delete_array_aligned(void *p, size_t a) __asm__("_ZdaPvSt11align_val_t");
RA_PUBLIC void ra_cxx_delete_sized_aligned(void *p, size_t n, size_t a) __asm__("_ZdlPvmSt11align_val_t");
RA_PUBLIC void ra_cxx_delete_array_sized_aligned(void *p, size_t n, size_t a) __asm__("_ZdaPvmSt11align_val_t");
RA_PUBLIC void ra_cxx_delete_aligned_nothrow(void *p, size_t a, const nothrow_t *t)
  __asm__("_ZdlPvSt11align_val_tRKSt9nothrow_t");
RA_PUBLIC void ra_cxx_delete_array_aligned_nothrow(void *p, size_t a, const nothrow_t *t)
  __asm__("_ZdaPvSt11align_val_tRKSt9nothrow_t");

void ra_cxx_delete(void *p) { _ra_free_fast(p); }
void ra_cxx_delete_array(void *p) { _ra_free_fast(p); }
void ra_cxx_delete_sized(void *p, size_t n) { _ra_free_sized_fast(p, n, 0, RA_SIZED_DELETE); }
void ra_cxx_delete_array_sized(void *p, size_t n) { _ra_free_sized_fast(p, n, 0, RA_SIZED_DELETE); }
void ra_cxx_delete_nothrow(void *p, const nothrow_t *t) { ra_free(p); }
void ra_cxx_delete_array_nothrow(void *p, const nothrow_t *t) { ra_free(p); }
void ra_cxx_delete_aligned(void *p, size_t a) { ra_free(p); }
void ra_cxx_delete_array_aligned(void *p, size_t a) { ra_free(p); }
void ra_cxx_delete_sized_aligned(void *p, size_t n, size_t a) { _ra_free_sized(p, n, a, RA_SIZED_DELETE); }
void ra_cxx_delete_array_sized_aligned(void *p, size_t n, size_t a) { _ra_free_sized(p, n, a, RA_SIZED_DELETE); }
void ra_cxx_delete_aligned_nothrow(void *p, size_t a, const nothrow_t *t) { ra_free(p); }
void ra_cxx_delete_array_aligned_nothrow(void *p, size_t a, const nothrow_t *t) { ra_free(p); }
