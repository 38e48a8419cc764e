/* Misuse of free and realloc (issue 7, items 1 and 2; docs/robustness.md): every case runs in a
 * child process (this program re-executed with "--child NAME"), whose stderr the parent captures
 * through a pipe. The child first tells the parent, on stdout, the exact line ramalloc must print
 * (it alone knows the addresses), then commits the misuse.
 *
 *   default (RAMALLOC_ON_ERROR unset) or =abort: stderr is exactly that one line and the child dies
 *     of SIGABRT;
 *   RAMALLOC_ON_ERROR=warn: stderr is exactly the expected lines and the child goes on: free did
 *     nothing, realloc returned NULL with errno EINVAL, the block, the allocator's metadata and its
 *     statistics are as they were, and the heap passes the validator; a corrupted free list is
 *     dropped and the allocation still returns a sound block.
 *
 * Built a second time as misuse_preload (MISUSE_PRELOAD defined, no ramalloc linked in), the same
 * scenarios that need no internals run through the plain malloc family with libramalloc.so
 * preloaded: the reporter then runs in a process whose malloc is ramalloc itself. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#ifdef MISUSE_PRELOAD
/* Plain libc names; ramalloc arrives through LD_PRELOAD. Called through pointers the compiler
 * cannot see through, so the deliberate misuse draws no -Wuse-after-free. */
#include <malloc.h>
static void *(*volatile A_MALLOC)(size_t) = malloc;
static void *(*volatile A_CALLOC)(size_t, size_t) = calloc;
static void *(*volatile A_REALLOC)(void *, size_t) = realloc;
static void (*volatile A_FREE)(void *) = free;
static size_t (*volatile A_USABLE)(void *) = malloc_usable_size;
static int (*volatile posix_memalign_fn)(void **, size_t, size_t) = posix_memalign;
static void collect_fn(void) { malloc_trim(0); } /* ramalloc's malloc_trim is ra_collect(true) */
static void a_free_sized(void *p, size_t n);
static void a_free_aligned_sized(void *p, size_t a, size_t n);
#define A_ALIGNED aligned_alloc
#else
#include "test_common.h"
#include "internal.h"
#define A_MALLOC ra_malloc
#define A_CALLOC ra_calloc
#define A_REALLOC ra_realloc
#define A_FREE ra_free
#define A_USABLE ra_usable_size
#define posix_memalign_fn ra_posix_memalign
#define a_free_sized ra_free_sized
#define a_free_aligned_sized ra_free_aligned_sized
#define A_ALIGNED ra_aligned_alloc
static void collect_fn(void) { ra_collect(true); }
#endif

extern char **environ;

/* ================================================================================================
 * The child
 * ================================================================================================ */

static bool warn_mode;

#include "test_child.h" /* say, child_fail and CHECK */

#ifdef MISUSE_PRELOAD
/* C23's free_sized and free_aligned_sized: glibc 2.36 has neither, libramalloc.so has both. */
#include <dlfcn.h>
static void a_free_sized(void *p, size_t n) {
  void (*f)(void *, size_t) = (void (*)(void *, size_t))dlsym(RTLD_DEFAULT, "free_sized");
  CHECK(f != NULL, "free_sized is not defined (is libramalloc.so preloaded?)");
  f(p, n);
}
static void a_free_aligned_sized(void *p, size_t a, size_t n) {
  void (*f)(void *, size_t, size_t) = (void (*)(void *, size_t, size_t))dlsym(RTLD_DEFAULT, "free_aligned_sized");
  CHECK(f != NULL, "free_aligned_sized is not defined (is libramalloc.so preloaded?)");
  f(p, a, n);
}
#endif

/* The line ramalloc must print next: "ramalloc: <what> 0x<lowercase hex>". */
static void expect(const char *what, const void *p) { say("expect:ramalloc: %s 0x%" PRIxPTR "\n", what, (uintptr_t)p); }

/* For the corrupted-list report only the block's neighbourhood is promised ("near"): the address
 * printed must lie in the same 64 KiB slice as `p`. */
static __attribute__((unused)) void expect_near(const char *what, const void *p) {
  say("expect-near:ramalloc: %s 0x%" PRIxPTR "\n", what, (uintptr_t)p);
}

/* Either of two lines (where the contract leaves the name of the misuse open). */
static __attribute__((unused)) void expect_either(const char *what, const char *alt, const void *p) {
  say("expect-any:ramalloc: %s 0x%" PRIxPTR "|ramalloc: %s 0x%" PRIxPTR "\n", what, (uintptr_t)p, alt, (uintptr_t)p);
}

/* Reached only when the allocator returned from a misuse: fine in warn mode, a failure otherwise. */
static void after_misuse(const char *call) {
  if (!warn_mode) child_fail("%s returned after a misuse although RAMALLOC_ON_ERROR is not warn", call);
}

/* Hide a pointer's origin from the compiler (no -Wfree-nonheap-object on deliberate misuse). */
static void *launder(const void *p) {
  void *q = (void *)p;
  __asm__ volatile("" : "+r"(q));
  return q;
}

static void fill(void *p, size_t n, unsigned seed) {
  unsigned char *b = p;
  for (size_t i = 0; i < n; i++) b[i] = (unsigned char)(seed * 131u + i * 7u + (i >> 8));
}
static bool intact(const void *p, size_t n, unsigned seed) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++)
    if (b[i] != (unsigned char)(seed * 131u + i * 7u + (i >> 8))) return false;
  return true;
}

/* free(p) as a misuse: reported, and in warn mode nothing happens. */
static void misuse_free(void *p) {
  A_FREE(launder(p));
  after_misuse("free");
}

/* realloc(p, n) as a misuse: reported, and in warn mode NULL with errno EINVAL. */
static void misuse_realloc(void *p, size_t n) {
  errno = 0;
  void *r = A_REALLOC(launder(p), n);
  after_misuse("realloc");
  CHECK(r == NULL, "realloc of a bad pointer returned %p, want NULL", r);
  CHECK(errno == EINVAL, "realloc of a bad pointer: errno %d, want EINVAL", errno);
}

/* In warn mode after a double free: the next allocations of the class are all distinct blocks (the
 * block was not pushed on its free list twice). */
static void expect_no_duplicates(size_t size) {
  enum { N = 96 };
  void *got[N];
  for (int i = 0; i < N; i++) {
    got[i] = A_MALLOC(size);
    CHECK(got[i] != NULL, "malloc(%zu) failed after the misuse", size);
    fill(got[i], size < 64 ? size : 64, (unsigned)i);
    for (int j = 0; j < i; j++) CHECK(got[i] != got[j], "malloc(%zu) handed out %p twice", size, got[i]);
  }
  for (int i = 0; i < N; i++) CHECK(intact(got[i], size < 64 ? size : 64, (unsigned)i), "block %d overwritten", i);
  for (int i = 0; i < N; i++) A_FREE(got[i]);
}

#ifndef MISUSE_PRELOAD
typedef struct counts_s {
  size_t live_blocks, committed, huge_blocks;
} counts_t;
static counts_t counts(void) {
  ra_stats_t st;
  ra_stats_get(&st);
  return (counts_t){st.live_blocks, st.committed, st.huge_blocks};
}
static void expect_counts(counts_t before, const char *what) {
  counts_t now = counts();
  CHECK(now.live_blocks == before.live_blocks && now.committed == before.committed &&
            now.huge_blocks == before.huge_blocks,
        "%s changed the statistics: live blocks %zu -> %zu, committed %zu -> %zu, huge %zu -> %zu", what,
        before.live_blocks, now.live_blocks, before.committed, now.committed, before.huge_blocks, now.huge_blocks);
}
static void expect_valid(const char *when) { CHECK(_ra_heap_validate(), "heap invariants broken %s", when); }
#define SNAP() counts_t snap_ = counts()
#define SNAP_CHECK(what) \
  do {                   \
    if (warn_mode) expect_counts(snap_, what); \
  } while (0)
#else
#define SNAP() (void)0
#define SNAP_CHECK(what) (void)0
static void expect_valid(const char *when) { (void)when; }
#endif

/* Sizes whose classes nothing else in a scenario uses (so no page ever served an aligned block). */
enum {
  SZ_SMALL = 40,         /* class 48 */
  SZ_INTERIOR = 200,     /* class 208 */
  SZ_CORRUPT = 336,      /* class 352 */
  SZ_OVERFLOW = 720,     /* class 768 */
  SZ_MEDIUM = 20000,     /* class 20480: an 8-slice page */
  SZ_LARGE = 300 << 10,  /* one block per span */
  SZ_HUGE = 3 << 20,     /* a chunk run of its own */
  SZ_HUGE2 = 10 << 20,   /* three chunks */
};

/* ---- double free and realloc of a freed block --------------------------------------------------- */

static void double_free(size_t size, bool not_head) {
  void *keep = A_MALLOC(size); /* the page stays in use */
  void *p = A_MALLOC(size), *q = A_MALLOC(size);
  CHECK(keep && p && q, "malloc(%zu) failed", size);
  A_FREE(p);
  if (not_head) A_FREE(q); /* p is no longer the head of its free list */
  SNAP();
  expect("double free of", p);
  misuse_free(p);
  SNAP_CHECK("a refused double free");
  expect_valid("after a double free");
  expect_no_duplicates(size);
  if (!not_head) A_FREE(q);
  A_FREE(keep);
}

static void sc_double_free_small(void) { double_free(SZ_SMALL, false); }
static void sc_double_free_small_not_head(void) { double_free(SZ_SMALL, true); }
static void sc_double_free_medium(void) { double_free(SZ_MEDIUM, false); }
static void sc_double_free_large(void) { double_free(SZ_LARGE, false); }

/* A large block alone in its chunk: freeing it gives the chunk back (ra_collect), so the second
 * free finds a free chunk slot. Named a double free or a pointer not handed out; always refused. */
static void sc_double_free_large_chunk_released(void) {
  void *p = A_MALLOC(SZ_LARGE);
  CHECK(p, "malloc failed");
  A_FREE(p);
  collect_fn();
  expect_either("double free of", "free of a pointer ramalloc did not hand out", p);
  misuse_free(p);
  void *q = A_MALLOC(SZ_LARGE);
  CHECK(q != NULL, "malloc failed after the misuse");
  A_FREE(q);
}

static void sc_double_free_calloc(void) {
  void *p = A_CALLOC(10, 4); /* class 48 */
  CHECK(p, "calloc failed");
  A_FREE(p);
  expect("double free of", p);
  misuse_free(p);
  expect_no_duplicates(SZ_SMALL);
}

/* The stale pointer a moving realloc leaves behind, freed. */
static void sc_double_free_after_realloc(void) {
  void *p = A_MALLOC(SZ_SMALL);
  CHECK(p, "malloc failed");
  void *q = A_REALLOC(p, SZ_MEDIUM);
  CHECK(q != NULL && q != p, "realloc(%p, %d) did not move the block", p, SZ_MEDIUM);
  expect("double free of", p);
  misuse_free(p);
  expect_no_duplicates(SZ_SMALL);
  A_FREE(q);
}

static void double_free_huge(size_t size) {
  void *keep = A_MALLOC(size);
  void *p = A_MALLOC(size);
  CHECK(keep && p, "malloc(%zu) failed", size);
  fill(keep, 4096, 9);
  A_FREE(p);
  SNAP();
  expect("double free of", p);
  misuse_free(p);
  SNAP_CHECK("a refused huge double free");
  CHECK(intact(keep, 4096, 9), "the other huge block changed");
  void *r = A_MALLOC(size); /* huge allocation still works, and may reuse p's chunks */
  CHECK(r != NULL, "huge malloc failed after the misuse");
  memset(r, 1, 4096);
  A_FREE(r);
  A_FREE(keep);
}

static void sc_double_free_huge(void) { double_free_huge(SZ_HUGE); }

/* Huge blocks placed for an alignment: past slice 1 of their run (1 MiB), or a whole chunk in. */
static void double_free_huge_aligned(size_t align, size_t size) {
  void *p = NULL;
  CHECK(posix_memalign_fn(&p, align, size) == 0 && p != NULL, "posix_memalign(%zu, %zu) failed", align, size);
  A_FREE(p);
  SNAP();
  expect("double free of", p);
  misuse_free(p);
  SNAP_CHECK("a refused double free of an aligned huge block");
  void *r = A_MALLOC(SZ_HUGE);
  CHECK(r != NULL, "huge malloc failed after the misuse");
  A_FREE(r);
}
static void sc_double_free_huge_aligned_1m(void) { double_free_huge_aligned(1 << 20, SZ_HUGE); }
static void sc_double_free_huge_aligned_2m(void) { double_free_huge_aligned(2 << 20, 100); }
static void sc_double_free_huge_aligned_8m(void) { double_free_huge_aligned(8 << 20, SZ_HUGE); }

/* A small block that was the last live block of its page, the page given back (ra_collect) before
 * the second free: the block lies in free slices now. The report may name it a double free or a
 * pointer ramalloc did not hand out (docs/robustness.md); either way it is caught and refused. */
static void sc_double_free_small_page_released(void) {
  void *p = A_MALLOC(SZ_INTERIOR);
  CHECK(p, "malloc failed");
  A_FREE(p);
  collect_fn();
  expect_either("double free of", "free of a pointer ramalloc did not hand out", p);
  misuse_free(p);
  expect_no_duplicates(SZ_INTERIOR);
}
static void sc_double_free_huge_multichunk(void) { double_free_huge(SZ_HUGE2); }

static void realloc_freed_to(size_t size, size_t new_size) {
  void *keep = A_MALLOC(size);
  void *p = A_MALLOC(size);
  CHECK(keep && p, "malloc(%zu) failed", size);
  A_FREE(p);
  SNAP();
  expect("realloc of a freed block", p);
  misuse_realloc(p, new_size);
  SNAP_CHECK("a refused realloc of a freed block");
  expect_valid("after a realloc of a freed block");
  if (size <= 65536) expect_no_duplicates(size);
  A_FREE(keep);
}

static void realloc_freed(size_t size) { realloc_freed_to(size, size * 2); }
static void sc_realloc_freed_small(void) { realloc_freed(SZ_SMALL); }
/* A size the freed block would still hold: realloc's shortcut for a block that stays (alloc.c)
 * must not take it. */
static void sc_realloc_freed_small_in_place(void) { realloc_freed_to(SZ_SMALL, SZ_SMALL - 1); }
static void sc_realloc_freed_medium(void) { realloc_freed(SZ_MEDIUM); }
static void sc_realloc_freed_large(void) { realloc_freed(SZ_LARGE); }
static void sc_realloc_freed_huge(void) { realloc_freed(SZ_HUGE); }

/* realloc(p, 0) frees p: a later free of p is a double free. */
static void sc_double_free_after_realloc_zero(void) {
  void *p = A_MALLOC(SZ_SMALL);
  void *keep = A_MALLOC(SZ_SMALL);
  CHECK(p && keep, "malloc failed");
  void *z = A_REALLOC(p, 0);
  CHECK(z != NULL, "realloc(p, 0) returned NULL");
  expect("double free of", p);
  misuse_free(p);
  A_FREE(z);
  A_FREE(keep);
}

/* ---- interior pointers -------------------------------------------------------------------------- */

static void interior(size_t size, size_t offset, bool is_realloc) {
  unsigned char *p = A_MALLOC(size);
  CHECK(p, "malloc(%zu) failed", size);
  fill(p, size, 5);
  SNAP();
  expect(is_realloc ? "realloc of an interior pointer" : "free of an interior pointer", p + offset);
  if (is_realloc) misuse_realloc(p + offset, size * 2);
  else misuse_free(p + offset);
  SNAP_CHECK("a refused interior pointer");
  CHECK(intact(p, size, 5), "the block around the interior pointer changed");
  CHECK(A_USABLE(p) >= size, "the block's usable size changed");
  expect_valid("after an interior pointer");
  /* the block is still live and can be reallocated and freed normally */
  unsigned char *q = A_REALLOC(p, size + 1);
  CHECK(q != NULL && intact(q, size, 5), "realloc of the real block failed afterwards");
  A_FREE(q);
  expect_valid("after freeing the real block");
}

static void sc_interior_free_small(void) { interior(SZ_INTERIOR, 16, false); }
static void sc_interior_free_small_odd(void) { interior(SZ_INTERIOR, 1, false); }
static void sc_interior_free_small_last(void) { interior(SZ_INTERIOR, SZ_INTERIOR - 1, false); }
static void sc_interior_realloc_small(void) { interior(SZ_INTERIOR, 16, true); }
static void sc_interior_free_medium(void) { interior(SZ_MEDIUM, 4096, false); }
static void sc_interior_free_large(void) { interior(SZ_LARGE, 70000, false); }  /* past its first slice */
static void sc_interior_realloc_large(void) { interior(SZ_LARGE, 4096, true); }
static void sc_interior_free_huge(void) { interior(SZ_HUGE, 4096, false); }
static void sc_interior_realloc_huge(void) { interior(SZ_HUGE, 16, true); }
static void sc_interior_free_huge_far(void) { interior(SZ_HUGE2, 6 << 20, false); } /* past its first chunk */

/* ---- addresses inside a live page that nobody was ever given (issue 12) --------------------------- */

/* After a refused free of a never-handed-out address in warn mode: the page's blocks, all of them,
 * are handed out once each (the address did not join a free list). */
static void expect_page_hands_out_once(size_t size, size_t count) {
  void **got = A_MALLOC(count * sizeof *got);
  CHECK(got, "malloc failed");
  for (size_t i = 0; i < count; i++) {
    got[i] = A_MALLOC(size);
    CHECK(got[i] != NULL, "malloc(%zu) failed", size);
  }
  for (size_t i = 0; i < count; i++)
    for (size_t j = i + 1; j < count; j++) CHECK(got[i] != got[j], "malloc(%zu) handed out %p twice", size, got[i]);
  for (size_t i = 0; i < count; i++) A_FREE(got[i]);
  A_FREE(got);
}

/* free(p + off) where p is the first block of a fresh page and p + off a block boundary the page
 * has not carved yet (the reproduction: offset 16 KiB). */
static void never_given_uncarved(size_t size, size_t off) {
  unsigned char *p = A_MALLOC(size);
  CHECK(p, "malloc failed");
  SNAP();
  expect("free of a pointer ramalloc did not hand out", p + off);
  misuse_free(p + off);
  SNAP_CHECK("a refused never-handed-out pointer");
  expect_page_hands_out_once(size, 65536 / size + 16);
  A_FREE(p);
}
static void sc_never_given_uncarved_16(void) { never_given_uncarved(16, 16384); }
static void sc_never_given_uncarved_128(void) { never_given_uncarved(128, 16384); }
static void sc_never_given_uncarved_1024(void) { never_given_uncarved(1024, 16384); }

/* The next block of the page: carved onto its free list, never handed out. */
static void sc_never_given_carved(void) {
  unsigned char *p = A_MALLOC(SZ_SMALL);
  CHECK(p, "malloc failed");
  SNAP();
  expect_either("double free of", "free of a pointer ramalloc did not hand out", p + 48);
  misuse_free(p + 48);
  SNAP_CHECK("a refused never-handed-out pointer");
  expect_page_hands_out_once(SZ_SMALL, 65536 / 48 + 16);
  A_FREE(p);
}

/* From another thread (the owner's carving state is not that thread's to see on its fast path). */
static void *free_in_thread(void *p) {
  misuse_free(p);
  return NULL;
}
static void sc_never_given_uncarved_remote(void) {
  unsigned char *p = A_MALLOC(SZ_INTERIOR);
  CHECK(p, "malloc failed");
  unsigned char *q = p + 208 * 100;
  expect("free of a pointer ramalloc did not hand out", q);
  pthread_t t;
  CHECK(pthread_create(&t, NULL, free_in_thread, q) == 0, "pthread_create failed");
  pthread_join(t, NULL);
  expect_page_hands_out_once(SZ_INTERIOR, 65536 / 208 + 16);
  A_FREE(p);
}

#ifndef MISUSE_PRELOAD
/* Warn mode, every small and medium class: the first block the page has not carved, the page's last
 * block, and (where there is one) a carved block never handed out; each reported, none handed out
 * twice afterwards. */
static void sc_never_given_every_class(void) {
  for (size_t cls = 0; cls < RA_CLASS_COUNT && _ra_class_size[cls] <= RA_MEDIUM_MAX; cls++) {
    size_t bs = _ra_class_size[cls];
    unsigned char *p = A_MALLOC(bs);
    CHECK(p, "malloc failed");
    ra_chunk_t *c = _ra_chunk_of(p);
    ra_page_t *pg = _ra_page_of(c, p);
    unsigned char *start = _ra_page_start(c, pg);
    size_t idx = (size_t)(p - start) / bs;
    if (pg->capacity < pg->reserved) {
      expect("free of a pointer ramalloc did not hand out", start + pg->capacity * bs);
      misuse_free(start + pg->capacity * bs);
      expect("free of a pointer ramalloc did not hand out", start + (pg->reserved - 1) * bs);
      misuse_free(start + (pg->reserved - 1) * bs);
    }
    if (idx + 1 < pg->capacity && pg->free == (ra_block_t *)(p + bs)) {
      expect_either("double free of", "free of a pointer ramalloc did not hand out", p + bs);
      misuse_free(p + bs);
    }
    expect_page_hands_out_once(bs, pg->reserved + 4);
    A_FREE(p);
  }
  expect_valid("after never-handed-out frees in every class");
}
#endif

/* ---- pointers into allocator metadata ----------------------------------------------------------- */

#ifndef MISUSE_PRELOAD
/* A misuse aimed at metadata: reported, and in warn mode the `len` bytes at `region` are unchanged. */
static void metadata(const void *target, const void *region, size_t len, bool is_realloc) {
  static unsigned char copy[1 << 16];
  CHECK(len <= sizeof copy, "region too large");
  memcpy(copy, region, len);
  SNAP();
  expect(is_realloc ? "realloc of a pointer into allocator metadata" : "free of a pointer into allocator metadata",
         target);
  if (is_realloc) misuse_realloc((void *)target, 64);
  else misuse_free((void *)target);
  SNAP_CHECK("a refused metadata pointer");
  CHECK(memcmp(copy, region, len) == 0, "the metadata at %p changed", region);
  expect_valid("after a metadata pointer");
  void *q = A_MALLOC(SZ_SMALL); /* the allocator goes on */
  CHECK(q, "malloc failed after the misuse");
  A_FREE(q);
}

/* The chunk of a small block, as the contract spells it: ((uintptr_t)p - 1) & ~(4 MiB - 1). */
static unsigned char *small_chunk(void **block) {
  *block = A_MALLOC(SZ_SMALL);
  CHECK(*block, "malloc failed");
  return (unsigned char *)(((uintptr_t)*block - 1) & ~(uintptr_t)(RA_CHUNK_SIZE - 1));
}

static void sc_meta_chunk_header(void) {
  void *p;
  unsigned char *c = small_chunk(&p);
  metadata(c + 100, c, sizeof(ra_chunk_t), false);
  A_FREE(p);
}
static void sc_meta_chunk_header_realloc(void) {
  void *p;
  unsigned char *c = small_chunk(&p);
  metadata(c + 100, c, sizeof(ra_chunk_t), true);
  A_FREE(p);
}
static void sc_meta_page_descriptor(void) {
  void *p;
  unsigned char *c = small_chunk(&p);
  size_t slice = ((uintptr_t)p - (uintptr_t)c) >> RA_SLICE_SHIFT; /* p's own page descriptor */
  unsigned char *desc = c + offsetof(ra_chunk_t, pages) + slice * sizeof(ra_page_t);
  metadata(desc, c, sizeof(ra_chunk_t), false);
  A_FREE(p);
}
static void sc_meta_chunk_header_end(void) {
  void *p;
  unsigned char *c = small_chunk(&p);
  metadata(c + RA_SLICE_SIZE - 16, c, sizeof(ra_chunk_t), false); /* last bytes of slice 0 */
  A_FREE(p);
}
static void sc_meta_arena_header(void) {
  void *p = A_MALLOC(SZ_SMALL);
  CHECK(p, "malloc failed");
  ra_arena_t *a = _ra_arena_containing(p);
  CHECK(a != NULL, "no arena holds %p", p);
  metadata(a->base + 100, a->base, 4096, false);
  A_FREE(p);
}
static void sc_meta_arena_header_realloc(void) {
  void *p = A_MALLOC(SZ_SMALL);
  CHECK(p, "malloc failed");
  ra_arena_t *a = _ra_arena_containing(p);
  CHECK(a != NULL, "no arena holds %p", p);
  metadata(a->base + 64, a->base, 4096, true);
  A_FREE(p);
}
static void sc_meta_heap_struct(void) {
  void *p = A_MALLOC(SZ_SMALL); /* the thread has a heap now */
  CHECK(p, "malloc failed");
  ra_heap_t *h = _ra_heap_current();
  metadata((unsigned char *)h + 64, h, sizeof(ra_heap_t), false);
  A_FREE(p);
}
static void sc_meta_huge_header(void) {
  unsigned char *p = A_MALLOC(SZ_HUGE);
  CHECK(p, "malloc failed");
  unsigned char *c = (unsigned char *)_ra_chunk_of(p);
  metadata(c + 256, c, sizeof(ra_chunk_t), false);
  A_FREE(p);
}
#endif

/* ---- pointers ramalloc never handed out --------------------------------------------------------- */

static unsigned char static_buf[256];

static void foreign(void *target, const void *region, size_t len, unsigned seed, bool is_realloc) {
  SNAP();
  expect(is_realloc ? "realloc of a pointer ramalloc did not hand out" : "free of a pointer ramalloc did not hand out",
         target);
  if (is_realloc) misuse_realloc(target, 100);
  else misuse_free(target);
  SNAP_CHECK("a refused foreign pointer");
  if (region != NULL) CHECK(intact(region, len, seed), "the memory behind the foreign pointer changed");
  expect_valid("after a foreign pointer");
}

static void sc_foreign_stack(void) {
  unsigned char buf[128];
  fill(buf, sizeof buf, 3);
  foreign(buf + 16, buf, sizeof buf, 3, false);
}
static void sc_foreign_stack_realloc(void) {
  unsigned char buf[128];
  fill(buf, sizeof buf, 3);
  foreign(buf + 16, buf, sizeof buf, 3, true);
}
static void sc_foreign_static(void) {
  fill(static_buf, sizeof static_buf, 4);
  foreign(static_buf + 32, static_buf, sizeof static_buf, 4, false);
}
static void sc_foreign_static_realloc(void) {
  fill(static_buf, sizeof static_buf, 4);
  foreign(static_buf, static_buf, sizeof static_buf, 4, true);
}
static void sc_foreign_literal(void) {
  static const char text[] = "a string in read-only data";
  SNAP();
  expect("free of a pointer ramalloc did not hand out", text);
  misuse_free((void *)text);
  SNAP_CHECK("a refused foreign pointer");
  CHECK(strcmp(text, "a string in read-only data") == 0, "the literal changed");
}
static void sc_foreign_garbage(void) { foreign((void *)(uintptr_t)0x1234560, NULL, 0, 0, false); }
static void sc_foreign_garbage_realloc(void) { foreign((void *)(uintptr_t)0x1234560, NULL, 0, 0, true); }
static void sc_foreign_small_int(void) { foreign((void *)(uintptr_t)16, NULL, 0, 0, false); }
static void sc_foreign_high(void) { foreign((void *)(uintptr_t)0xffff800000001000ULL, NULL, 0, 0, false); }
static void sc_foreign_noncanonical(void) { foreign((void *)(uintptr_t)0x0000900000000010ULL, NULL, 0, 0, false); }
static void sc_foreign_odd(void) { foreign((void *)(uintptr_t)0x7f0000000007ULL, NULL, 0, 0, false); }

#ifndef MISUSE_PRELOAD
/* A block of glibc's malloc (the tests keep glibc's malloc beside ramalloc). */
static void sc_foreign_glibc(void) {
  unsigned char *g = malloc(200);
  CHECK(g, "glibc malloc failed");
  fill(g, 200, 6);
  foreign(g, g, 200, 6, false);
  free(g); /* still glibc's, still sound */
}
static void sc_foreign_glibc_realloc(void) {
  unsigned char *g = malloc(200);
  CHECK(g, "glibc malloc failed");
  fill(g, 200, 6);
  foreign(g, g, 200, 6, true);
  free(g);
}
/* Inside ramalloc's reservation, in a chunk slot no chunk has used yet. */
static void sc_foreign_unused_arena_slot(void) {
  void *p = A_MALLOC(SZ_SMALL);
  CHECK(p, "malloc failed");
  ra_arena_t *a = _ra_arena_containing(p);
  CHECK(a != NULL && a->chunk_slots > 4, "no arena with spare slots");
  unsigned char *slot = a->base + (size_t)(a->chunk_slots - 1) * RA_CHUNK_SIZE;
  foreign(slot + RA_SLICE_SIZE + 32, NULL, 0, 0, false);
  A_FREE(p);
}
#endif

/* ---- corrupted free lists ----------------------------------------------------------------------- */

#ifndef MISUSE_PRELOAD
static const uint64_t garbage = 0x4141414141414141ULL;

/* After the report (warn mode): the allocation that found the corruption returned a sound block,
 * and allocation goes on without handing out anything twice or anything live. */
static void after_corruption(void *got, size_t size, void **live, int nlive) {
  CHECK(got != NULL, "the allocation that met the corrupted list returned NULL");
  CHECK(ra_owns(got) && ra_usable_size(got) >= size, "it returned %p, not a sound block", got);
  memset(got, 0x33, size);
  void *more[64];
  for (int i = 0; i < 64; i++) {
    more[i] = A_MALLOC(size);
    CHECK(more[i] != NULL && ra_owns(more[i]), "malloc(%zu) failed after the corruption", size);
    CHECK(more[i] != got, "%p handed out twice", got);
    for (int j = 0; j < nlive; j++) CHECK(more[i] != live[j], "live block %p handed out again", live[j]);
    for (int j = 0; j < i; j++) CHECK(more[i] != more[j], "%p handed out twice", more[i]);
    memset(more[i], 0x44, size);
  }
  for (int j = 0; j < nlive; j++) CHECK(intact(live[j], size, (unsigned)j), "live block %d overwritten", j);
  expect_valid("after a corrupted free list was dropped");
  for (int i = 0; i < 64; i++) A_FREE(more[i]);
  A_FREE(got);
  for (int j = 0; j < nlive; j++) A_FREE(live[j]);
  expect_valid("after freeing everything");
}

/* Eight bytes written into a freed block (its link word), then the class is allocated from. */
static void write_after_free(size_t size) {
  void *live[3];
  void *victim;
  live[0] = A_MALLOC(size);
  victim = A_MALLOC(size);
  live[1] = A_MALLOC(size);
  live[2] = A_MALLOC(size);
  CHECK(live[0] && victim && live[1] && live[2], "malloc(%zu) failed", size);
  for (int j = 0; j < 3; j++) fill(live[j], size, (unsigned)j);
  A_FREE(victim);
  memcpy(launder(victim), &garbage, sizeof garbage); /* the write after free */
  expect_near("free list corrupted (write after free or overflow) near", victim);
  void *got = A_MALLOC(size); /* pops the victim and follows its link */
  after_misuse("malloc");
  after_corruption(got, size, live, 3);
}

static void sc_corrupt_write_after_free(void) { write_after_free(SZ_CORRUPT); }
static void sc_corrupt_write_after_free_medium(void) { write_after_free(SZ_MEDIUM); }

/* A free block's link written over so that it decodes to the base of another chunk, the address
 * that ends a list in that chunk (_ra_list_end): it leaves the victim's chunk, so the pop still
 * reports it. `dir` picks the chunk after the victim's (1) or before it (-1). Written through the
 * allocator's own encoder, which the sanitizers do not check. */
static void other_chunk_base(int dir) {
  void *live[3];
  live[0] = A_MALLOC(SZ_CORRUPT);
  void *victim = A_MALLOC(SZ_CORRUPT);
  live[1] = A_MALLOC(SZ_CORRUPT);
  live[2] = A_MALLOC(SZ_CORRUPT);
  CHECK(live[0] && victim && live[1] && live[2], "malloc failed");
  for (int j = 0; j < 3; j++) fill(live[j], SZ_CORRUPT, (unsigned)j);
  A_FREE(victim);
  uintptr_t base = (uintptr_t)_ra_chunk_of(victim) + (uintptr_t)((intptr_t)dir * (intptr_t)RA_CHUNK_SIZE);
  CHECK(_ra_list_end((ra_block_t *)base) && _ra_chunk_of(victim) != _ra_chunk_of((void *)(base + 1)),
        "%p is not another chunk's base", (void *)base);
  _ra_block_set_next(launder(victim), (ra_block_t *)base);
  expect_near("free list corrupted (write after free or overflow) near", victim);
  void *got = A_MALLOC(SZ_CORRUPT); /* pops the victim and follows its link */
  after_misuse("malloc");
  after_corruption(got, SZ_CORRUPT, live, 3);
}
static void sc_corrupt_next_chunk_base(void) { other_chunk_base(1); }
static void sc_corrupt_prev_chunk_base(void) { other_chunk_base(-1); }

/* A block overflows by eight bytes into its free neighbour. */
static void sc_corrupt_overflow(void) {
  unsigned char *a = A_MALLOC(SZ_OVERFLOW), *b = A_MALLOC(SZ_OVERFLOW);
  CHECK(a && b, "malloc failed");
  size_t bs = ra_usable_size(a);
  CHECK(b == a + bs, "the first two blocks of a fresh page are not adjacent (%p, %p)", (void *)a, (void *)b);
  fill(a, SZ_OVERFLOW, 0);
  A_FREE(b);
  unsigned char *w = launder(a);
  memcpy(w + bs, &garbage, sizeof garbage); /* the overflow: 8 bytes past a's usable size */
  expect_near("free list corrupted (write after free or overflow) near", b);
  void *got = A_MALLOC(SZ_OVERFLOW);
  after_misuse("malloc");
  void *live[1] = {a};
  after_corruption(got, SZ_OVERFLOW, live, 1);
}

/* A block freed by another thread (it waits on the page's remote list) is written to; the owner
 * meets the corruption when it collects that list. */
/* The remote-list scenarios: REMOTE_LIVE blocks of SZ_CORRUPT, each filled with its own pattern;
 * another thread then frees one or two of the last ones. */
enum { REMOTE_LIVE = 8, REMOTE_MORE = 4096 };
static void remote_setup(void *live[REMOTE_LIVE]) {
  for (int j = 0; j < REMOTE_LIVE; j++) {
    live[j] = A_MALLOC(SZ_CORRUPT);
    CHECK(live[j], "malloc failed");
    fill(live[j], SZ_CORRUPT, (unsigned)j);
  }
}
static void remote_run(void *(*fn)(void *), void *arg) {
  pthread_t t;
  CHECK(pthread_create(&t, NULL, fn, arg) == 0, "pthread_create failed");
  pthread_join(t, NULL);
}
/* Allocate until the page's local list runs dry and the remote list is collected and met (a page of
 * this class holds under 200 blocks, so a few thousand allocations always get there), writing each
 * block as a program would. None of the first `keep` live blocks is handed out again, no block is
 * handed out twice, the live blocks keep their content, and the heap is valid afterwards. */
static void remote_expect_sound(void *live[REMOTE_LIVE], int keep, const char *what) {
  static void *more[REMOTE_MORE];
  for (int i = 0; i < REMOTE_MORE; i++) {
    more[i] = A_MALLOC(SZ_CORRUPT);
    CHECK(more[i] != NULL, "malloc failed");
    memset(more[i], 0x55, SZ_CORRUPT);
    for (int j = 0; j < keep; j++) CHECK(more[i] != live[j], "live block %p handed out again", live[j]);
  }
  after_misuse("malloc");
  for (int i = 0; i < REMOTE_MORE; i++)
    for (int k = i + 1; k < REMOTE_MORE; k++) CHECK(more[i] != more[k], "%p handed out twice", more[i]);
  for (int i = 0; i < REMOTE_MORE; i++) A_FREE(more[i]);
  for (int j = 0; j < keep; j++) CHECK(intact(live[j], SZ_CORRUPT, (unsigned)j), "live block overwritten");
  for (int j = 0; j < keep; j++) A_FREE(live[j]);
  expect_valid(what);
}

static void *remote_free(void *p) {
  A_FREE(p);
  return NULL;
}
/* The same on a remote list: the block another thread freed decodes to the next chunk's base. */
static void sc_corrupt_remote_chunk_base(void) {
  void *live[REMOTE_LIVE];
  remote_setup(live);
  void *victim = live[REMOTE_LIVE - 1];
  remote_run(remote_free, victim);
  _ra_block_set_next(launder(victim), (ra_block_t *)((uintptr_t)_ra_chunk_of(victim) + RA_CHUNK_SIZE));
  expect_near("free list corrupted (write after free or overflow) near", victim);
  remote_expect_sound(live, REMOTE_LIVE - 1, "after a remote list corrupted to another chunk's base");
}

static void sc_corrupt_remote_list(void) {
  void *live[REMOTE_LIVE];
  remote_setup(live);
  void *victim = live[REMOTE_LIVE - 1];
  remote_run(remote_free, victim);
  memcpy(launder(victim), &garbage, sizeof garbage);
  expect_near("free list corrupted (write after free or overflow) near", victim);
  remote_expect_sound(live, REMOTE_LIVE - 1, "after a corrupted remote list");
}

/* A block freed twice by another thread: both frees wait on the page's remote list, which now
 * runs through the block twice. The owner reports the list when it meets the block the second
 * time, and hands the block out once. */
static void *remote_free_twice(void *p) {
  A_FREE(p);
  A_FREE(launder(p));
  return NULL;
}
static void sc_corrupt_remote_double_free(void) {
  void *live[REMOTE_LIVE];
  remote_setup(live);
  void *victim = live[REMOTE_LIVE - 1];
  remote_run(remote_free_twice, victim);
  expect_near("free list corrupted (write after free or overflow) near", victim);
  remote_expect_sound(live, REMOTE_LIVE - 1, "after a block freed twice by another thread");
}

/* The same with another block of the page freed between the two frees: the remote list then loops
 * through the victim and that block. The owner takes the list whole and meets the victim again only
 * after handing it out, when its link has been cleared: that block must not be handed out again. */
static void *remote_free_twice_apart(void *arg) {
  void **pair = arg;
  A_FREE(pair[0]);
  A_FREE(pair[1]);
  A_FREE(launder(pair[0]));
  return NULL;
}
static void sc_corrupt_remote_double_free_apart(void) {
  void *live[REMOTE_LIVE];
  remote_setup(live);
  void *pair[2] = {live[REMOTE_LIVE - 1], live[REMOTE_LIVE - 2]};
  remote_run(remote_free_twice_apart, pair);
  expect_near("free list corrupted (write after free or overflow) near", pair[0]);
  remote_expect_sound(live, REMOTE_LIVE - 2, "after a block freed twice by another thread, another block between");
}

/* A block another thread frees into a full page waits on the owner heap's delayed list, which links
 * blocks of many chunks and ends in NULL. Its link written over to point into a chunk's header
 * slice, `off` bytes past the victim's chunk base (0: the base itself, the marker that ends a page's
 * own list; 64: the chunk's fields), is reported when the owner collects the list, and nothing is
 * freed into the header. Written through the allocator's own encoder, as above. */
enum { DELAYED_FILL = 600 }; /* over three pages of SZ_CORRUPT: the first is full, in the full queue */
static void delayed_into_header(uintptr_t off) {
  static void *blocks[DELAYED_FILL];
  for (int i = 0; i < DELAYED_FILL; i++) {
    blocks[i] = A_MALLOC(SZ_CORRUPT);
    CHECK(blocks[i] != NULL, "malloc failed");
  }
  void *victim = blocks[0];
  remote_run(remote_free, victim);
  CHECK(atomic_load(&_ra_heap_current()->delayed_free) == victim, "the victim is not on the delayed list");
  void *live[REMOTE_LIVE];
  for (int j = 0; j < REMOTE_LIVE; j++) {
    live[j] = blocks[1 + j];
    fill(live[j], SZ_CORRUPT, (unsigned)j);
  }
  _ra_block_set_next(launder(victim), (ra_block_t *)((uintptr_t)_ra_chunk_of(victim) + off));
  expect_near("free list corrupted (write after free or overflow) near", victim);
  remote_expect_sound(live, REMOTE_LIVE, "after a delayed list corrupted into a chunk header");
  for (int i = 1 + REMOTE_LIVE; i < DELAYED_FILL; i++) A_FREE(blocks[i]);
  expect_valid("after freeing the rest");
}
static void sc_corrupt_delayed_chunk_base(void) { delayed_into_header(0); }
static void sc_corrupt_delayed_chunk_header(void) { delayed_into_header(64); }
#endif

/* ---- several misuses in one process (warn mode: each reported, each refused) ------------------- */

static void sc_warn_sequence(void) {
  unsigned char buf[64];
  void *p = A_MALLOC(SZ_SMALL), *h = A_MALLOC(SZ_HUGE);
  unsigned char *i = A_MALLOC(SZ_INTERIOR);
  CHECK(p && h && i, "malloc failed");
  A_FREE(p);
  A_FREE(h);
  for (int round = 0; round < 3; round++) {
    expect("double free of", p);
    misuse_free(p);
    expect("realloc of a freed block", p);
    misuse_realloc(p, 10);
    expect("double free of", h);
    misuse_free(h);
    expect("free of an interior pointer", i + 32);
    misuse_free(i + 32);
    expect("free of a pointer ramalloc did not hand out", buf);
    misuse_free(buf);
  }
  expect_no_duplicates(SZ_SMALL);
  A_FREE(i);
  expect_valid("after many misuses");
}

/* ---- usable size of something that is not a live block ----------------------------------------- */

/* ra_usable_size / malloc_usable_size(p) as a misuse: reported; in warn mode 0 and nothing changed. */
static void misuse_usable(const void *p, const char *what) {
  expect(what, p);
  SNAP();
  size_t u = A_USABLE(launder(p));
  after_misuse("usable size");
  CHECK(u == 0, "usable size of a bad pointer %p: %zu, want 0", p, u);
  SNAP_CHECK("a refused usable size");
}

static void usable_freed(size_t size) {
  void *keep = A_MALLOC(size); /* the page (or chunk) stays in use */
  void *p = A_MALLOC(size);
  CHECK(keep && p, "malloc(%zu) failed", size);
  A_FREE(p);
  misuse_usable(p, "usable size of a freed block");
  A_FREE(keep);
}
static void sc_usable_freed_small(void) { usable_freed(SZ_SMALL); }
static void sc_usable_freed_large(void) { usable_freed(SZ_LARGE); }
static void sc_usable_freed_huge(void) { usable_freed(SZ_HUGE); }
static void usable_interior(size_t size, size_t offset) {
  unsigned char *p = A_MALLOC(size);
  CHECK(p, "malloc(%zu) failed", size);
  misuse_usable(p + offset, "usable size of an interior pointer");
  CHECK(A_USABLE(p) >= size, "the block's own usable size changed");
  A_FREE(p);
}
static void sc_usable_interior_small(void) { usable_interior(SZ_INTERIOR, 16); }
static void sc_usable_interior_huge(void) { usable_interior(SZ_HUGE, 4096); }
static void sc_usable_foreign_stack(void) {
  char local[64];
  local[0] = 1;
  misuse_usable(local, "usable size of a pointer ramalloc did not hand out");
}
static void sc_usable_foreign_static(void) {
  static char stat[64];
  misuse_usable(stat, "usable size of a pointer ramalloc did not hand out");
}
#ifndef MISUSE_PRELOAD
static void sc_usable_foreign_glibc(void) {
  char *g = malloc(100);
  CHECK(g != NULL, "glibc's malloc failed");
  memset(g, 1, 100);
  misuse_usable(g, "usable size of a pointer ramalloc did not hand out");
  free(g);
}
static void sc_usable_metadata(void) {
  void *p = A_MALLOC(SZ_SMALL);
  misuse_usable((unsigned char *)_ra_chunk_of(p) + 100, "usable size of a pointer into allocator metadata");
  A_FREE(p);
}
#endif

/* ---- sized frees (C23 free_sized, free_aligned_sized) -------------------------------------------- */

/* free_sized(p, n) / free_aligned_sized(p, align, n) with a size that cannot belong to the block:
 * "ramalloc: free_sized of 0x... with the wrong size N"; warn mode: refused, the block stays live
 * and is freed afterwards with the right size. align 0: free_sized. */
static void sized_wrong(size_t size, size_t align, size_t wrong_size, size_t wrong_align) {
  unsigned char *p = align != 0 ? A_ALIGNED(align, size) : A_MALLOC(size);
  CHECK(p, "allocation of %zu failed", size);
  size_t fill_n = size < 4096 ? size : 4096;
  fill(p, fill_n, 9);
  SNAP();
  if (align == 0)
    say("expect:ramalloc: free_sized of 0x%" PRIxPTR " with the wrong size %zu\n", (uintptr_t)p, wrong_size);
  else
    say("expect:ramalloc: free_aligned_sized of 0x%" PRIxPTR " with the wrong size %zu, alignment %zu\n",
        (uintptr_t)p, wrong_size, wrong_align);
  if (align == 0) a_free_sized(launder(p), wrong_size);
  else a_free_aligned_sized(launder(p), wrong_align, wrong_size);
  after_misuse(align == 0 ? "free_sized" : "free_aligned_sized");
  SNAP_CHECK("a refused sized free");
  CHECK(intact(p, fill_n, 9), "the block changed after a refused sized free");
  if (align == 0) a_free_sized(p, size);
  else a_free_aligned_sized(p, align, size);
  expect_valid("after the right sized free");
}

static void sc_free_sized_larger(void) { sized_wrong(SZ_SMALL, 0, 100, 0); }        /* 48-byte class */
static void sc_free_sized_smaller(void) { sized_wrong(1000, 0, 100, 0); }          /* below half the block */
static void sc_free_sized_large(void) { sized_wrong(SZ_LARGE, 0, SZ_LARGE + 40000, 0); }
static void sc_free_sized_huge(void) { sized_wrong(8 << 20, 0, 1 << 20, 0); }
static void sc_free_aligned_sized_size(void) { sized_wrong(100, 256, 3000, 256); }
static void sc_free_aligned_sized_align(void) { /* a block at a 64-byte but not 4096-byte boundary */
  void *keep[8];
  int k = 0;
  unsigned char *p = A_ALIGNED(64, 100);
  while (((uintptr_t)p & 4095) == 0 && k < 8) {
    keep[k++] = p;
    p = A_ALIGNED(64, 100);
  }
  A_FREE(p);
  for (int i = 0; i < k; i++) A_FREE(keep[i]);
  sized_wrong(100, 64, 100, 4096);
}

#ifndef MISUSE_PRELOAD
/* ---- canaries and zeroed free blocks (issue 15 items 4 and 6) ------------------------------------- *
 * Scenarios named canary_* run with RAMALLOC_CANARY=1, secure_* with RAMALLOC_SECURE=1
 * (scenario_env). Each uses one class in a fresh page, so consecutive blocks are neighbours. */

/* Two neighbouring live blocks of `size` (the second right after the first); the first is written
 * up to its usable size, which must not trip anything (a clean block of that size is freed first). */
static unsigned char *canary_pair(size_t size, unsigned char **next) {
  unsigned char *clean = A_MALLOC(size);
  CHECK(clean != NULL, "malloc(%zu) failed", size);
  size_t cu = A_USABLE(clean);
  CHECK(cu >= size, "usable size %zu below the %zu asked", cu, size);
  memset(clean, 0xff, cu); /* every byte it may use, with a value the canary never holds */
  A_FREE(clean);           /* silently: writing the usable size is no overflow */
  unsigned char *a = A_MALLOC(size), *b = A_MALLOC(size);
  CHECK(a && b, "malloc(%zu) failed", size);
  /* the slot is the class of size + 8, its last 8 bytes the canary */
  size_t u = A_USABLE(a), want = _ra_class_size[_ra_size_class(size + RA_CANARY_SIZE)] - RA_CANARY_SIZE;
  CHECK(u == want, "usable size %zu for %zu bytes, want %zu", u, size, want);
  CHECK(b == a + u + RA_CANARY_SIZE, "blocks %p and %p are not neighbours (usable %zu)", (void *)a, (void *)b, u);
  memset(a, 0xff, u);
  fill(b, size, 3);
  *next = b;
  return a;
}

/* Writes of n = 1, 2, 7, 8, 9 and 40 bytes past the usable size (the last two reach into the
 * neighbour): each reported at the free, which is refused in warn mode. */
static void overflow_by(size_t size) {
  static const size_t ns[] = {1, 2, 7, 8, 9, 40};
  for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
    unsigned char *next, *a = canary_pair(size, &next);
    unsigned char *w = launder(a);
    memset(w + A_USABLE(a), 0, ns[i]); /* zeros: what an off-by-one string copy writes */
    expect("heap overflow past the end of the block", a);
    A_FREE(a);
    after_misuse("free");
    /* the neighbour stays live (an overflow into it is reported at its own free as an underflow) */
  }
}
static void sc_canary_overflow_small(void) { overflow_by(SZ_INTERIOR); }
static void sc_canary_overflow_medium(void) { overflow_by(SZ_MEDIUM); }

/* Writes of n = 1 and 8 bytes before the start of a block: reported at its free. */
static void underflow_by(size_t size) {
  static const size_t ns[] = {1, 8};
  for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
    unsigned char *b, *a = canary_pair(size, &b);
    (void)a;
    unsigned char *w = launder(b);
    memset(w - ns[i], 0x41, ns[i]);
    expect("heap underflow before the start of the block", b);
    A_FREE(b);
    after_misuse("free");
  }
}
static void sc_canary_underflow_small(void) { underflow_by(SZ_INTERIOR); }
static void sc_canary_underflow_medium(void) { underflow_by(SZ_MEDIUM); }

/* An underflow into a free neighbour's canary: reported when that neighbour is handed out; in warn
 * mode it is left out and the allocation returns another block. */
static void sc_canary_underflow_free_neighbour(void) {
  unsigned char *b, *a = canary_pair(SZ_INTERIOR, &b);
  A_FREE(a);
  unsigned char *w = launder(b);
  w[-1] = 0;
  expect("heap underflow or write after free into the end of the free block", a);
  unsigned char *c = A_MALLOC(SZ_INTERIOR);
  after_misuse("malloc");
  CHECK(c != NULL && c != a, "malloc handed out the damaged block %p again", (void *)c);
  CHECK(intact(b, SZ_INTERIOR, 3), "the live block changed");
  A_FREE(c);
}

/* RAMALLOC_SECURE: a write after free anywhere past a freed block's link word (the list decodes
 * fine) is reported when the block is handed out again. */
static void write_after_free_zeroed(size_t size) {
  unsigned char *b, *a = canary_pair(size, &b);
  A_FREE(a);
  unsigned char *w = launder(a);
  w[size / 2] = 1;
  expect("write after free into the block", a);
  unsigned char *c = A_MALLOC(size);
  after_misuse("malloc");
  CHECK(c != NULL && c != a, "malloc handed out the damaged block %p again", (void *)c);
  unsigned char *z = A_CALLOC(1, size);
  CHECK(z != NULL, "calloc failed");
  for (size_t i = 0; i < size; i++) CHECK(z[i] == 0, "calloc'ed byte %zu is %d", i, z[i]);
  A_FREE(z);
  A_FREE(c);
}
static void sc_secure_write_after_free_small(void) { write_after_free_zeroed(SZ_INTERIOR); }
static void sc_secure_write_after_free_medium(void) { write_after_free_zeroed(SZ_MEDIUM); }
/* The overflow check is part of the profile. */
static void sc_secure_overflow_small(void) { overflow_by(SZ_SMALL); }
#endif

/* ---- the scenario table --------------------------------------------------------------------------- */

typedef struct scenario_s {
  const char *name;
  void (*run)(void);
  bool writes_freed_memory; /* skipped under sanitizers, which would report the write first */
} scenario_t;

static const scenario_t scenarios[] = {
    {"double_free_small", sc_double_free_small, false},
    {"double_free_small_not_head", sc_double_free_small_not_head, false},
    {"double_free_medium", sc_double_free_medium, false},
    {"double_free_large", sc_double_free_large, false},
    {"double_free_huge", sc_double_free_huge, false},
    {"double_free_huge_multichunk", sc_double_free_huge_multichunk, false},
    {"double_free_huge_aligned_1m", sc_double_free_huge_aligned_1m, false},
    {"double_free_huge_aligned_2m", sc_double_free_huge_aligned_2m, false},
    {"double_free_huge_aligned_8m", sc_double_free_huge_aligned_8m, false},
    {"double_free_small_page_released", sc_double_free_small_page_released, false},
    {"double_free_large_chunk_released", sc_double_free_large_chunk_released, false},
    {"double_free_calloc", sc_double_free_calloc, false},
    {"double_free_after_realloc", sc_double_free_after_realloc, false},
    {"double_free_after_realloc_zero", sc_double_free_after_realloc_zero, false},
    {"realloc_freed_small", sc_realloc_freed_small, false},
    {"realloc_freed_small_in_place", sc_realloc_freed_small_in_place, false},
    {"realloc_freed_medium", sc_realloc_freed_medium, false},
    {"realloc_freed_large", sc_realloc_freed_large, false},
    {"realloc_freed_huge", sc_realloc_freed_huge, false},
    {"interior_free_small", sc_interior_free_small, false},
    {"interior_free_small_odd", sc_interior_free_small_odd, false},
    {"interior_free_small_last", sc_interior_free_small_last, false},
    {"interior_realloc_small", sc_interior_realloc_small, false},
    {"interior_free_medium", sc_interior_free_medium, false},
    {"interior_free_large", sc_interior_free_large, false},
    {"interior_realloc_large", sc_interior_realloc_large, false},
    {"interior_free_huge", sc_interior_free_huge, false},
    {"interior_realloc_huge", sc_interior_realloc_huge, false},
    {"interior_free_huge_far", sc_interior_free_huge_far, false},
#ifndef MISUSE_PRELOAD
    {"meta_chunk_header", sc_meta_chunk_header, false},
    {"meta_chunk_header_realloc", sc_meta_chunk_header_realloc, false},
    {"meta_page_descriptor", sc_meta_page_descriptor, false},
    {"meta_chunk_header_end", sc_meta_chunk_header_end, false},
    {"meta_arena_header", sc_meta_arena_header, false},
    {"meta_arena_header_realloc", sc_meta_arena_header_realloc, false},
    {"meta_heap_struct", sc_meta_heap_struct, false},
    {"meta_huge_header", sc_meta_huge_header, false},
#endif
    {"never_given_uncarved_16", sc_never_given_uncarved_16, false},
    {"never_given_uncarved_128", sc_never_given_uncarved_128, false},
    {"never_given_uncarved_1024", sc_never_given_uncarved_1024, false},
    {"never_given_carved", sc_never_given_carved, false},
    {"never_given_uncarved_remote", sc_never_given_uncarved_remote, false},
#ifndef MISUSE_PRELOAD
    {"never_given_every_class", sc_never_given_every_class, false},
#endif
    {"foreign_stack", sc_foreign_stack, false},
    {"foreign_stack_realloc", sc_foreign_stack_realloc, false},
    {"foreign_static", sc_foreign_static, false},
    {"foreign_static_realloc", sc_foreign_static_realloc, false},
    {"foreign_literal", sc_foreign_literal, false},
    {"foreign_garbage", sc_foreign_garbage, false},
    {"foreign_garbage_realloc", sc_foreign_garbage_realloc, false},
    {"foreign_small_int", sc_foreign_small_int, false},
    {"foreign_high", sc_foreign_high, false},
    {"foreign_noncanonical", sc_foreign_noncanonical, false},
    {"foreign_odd", sc_foreign_odd, false},
#ifndef MISUSE_PRELOAD
    {"foreign_glibc", sc_foreign_glibc, false},
    {"foreign_glibc_realloc", sc_foreign_glibc_realloc, false},
    {"foreign_unused_arena_slot", sc_foreign_unused_arena_slot, false},
    {"corrupt_write_after_free", sc_corrupt_write_after_free, true},
    {"corrupt_write_after_free_medium", sc_corrupt_write_after_free_medium, true},
    {"corrupt_overflow", sc_corrupt_overflow, true},
    {"corrupt_next_chunk_base", sc_corrupt_next_chunk_base, false},
    {"corrupt_prev_chunk_base", sc_corrupt_prev_chunk_base, false},
    {"corrupt_remote_chunk_base", sc_corrupt_remote_chunk_base, false},
    {"corrupt_delayed_chunk_base", sc_corrupt_delayed_chunk_base, false},
    {"corrupt_delayed_chunk_header", sc_corrupt_delayed_chunk_header, false},
    {"corrupt_remote_list", sc_corrupt_remote_list, true},
    {"corrupt_remote_double_free", sc_corrupt_remote_double_free, true},
    {"corrupt_remote_double_free_apart", sc_corrupt_remote_double_free_apart, true},
    {"canary_overflow_small", sc_canary_overflow_small, true},
    {"canary_overflow_medium", sc_canary_overflow_medium, true},
    {"canary_underflow_small", sc_canary_underflow_small, true},
    {"canary_underflow_medium", sc_canary_underflow_medium, true},
    {"canary_underflow_free_neighbour", sc_canary_underflow_free_neighbour, true},
    {"secure_write_after_free_small", sc_secure_write_after_free_small, true},
    {"secure_write_after_free_medium", sc_secure_write_after_free_medium, true},
    {"secure_overflow_small", sc_secure_overflow_small, true},
#endif
    {"warn_sequence", sc_warn_sequence, false},
    {"usable_freed_small", sc_usable_freed_small, false},
    {"usable_freed_large", sc_usable_freed_large, false},
    {"usable_freed_huge", sc_usable_freed_huge, false},
    {"usable_interior_small", sc_usable_interior_small, false},
    {"usable_interior_huge", sc_usable_interior_huge, false},
    {"usable_foreign_stack", sc_usable_foreign_stack, false},
    {"usable_foreign_static", sc_usable_foreign_static, false},
#ifndef MISUSE_PRELOAD
    {"usable_foreign_glibc", sc_usable_foreign_glibc, false},
    {"usable_metadata", sc_usable_metadata, false},
#endif
    {"free_sized_larger", sc_free_sized_larger, false},
    {"free_sized_smaller", sc_free_sized_smaller, false},
    {"free_sized_large", sc_free_sized_large, false},
    {"free_sized_huge", sc_free_sized_huge, false},
    {"free_aligned_sized_size", sc_free_aligned_sized_size, false},
    {"free_aligned_sized_align", sc_free_aligned_sized_align, false},
};
enum { NSCENARIOS = sizeof scenarios / sizeof scenarios[0] };

static int child_main(const char *name) {
  const char *mode = getenv("RAMALLOC_ON_ERROR");
  warn_mode = mode != NULL && strcmp(mode, "warn") == 0;
  struct rlimit no_core = {0, 0};
  setrlimit(RLIMIT_CORE, &no_core); /* an abort is expected: no core file */
  for (size_t i = 0; i < NSCENARIOS; i++) {
    if (strcmp(scenarios[i].name, name) != 0) continue;
    scenarios[i].run();
    expect_valid("at the end of the scenario");
    say("done\n");
    return 0;
  }
  say("FAIL: no scenario named %s\n", name);
  return 2;
}

#ifdef MISUSE_PRELOAD
/* misuse_preload: only ever a child. */
int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "--child") == 0) return child_main(argv[2]);
  fprintf(stderr, "usage: %s --child SCENARIO (run by test_misuse with libramalloc.so preloaded)\n", argv[0]);
  return 2;
}
#else

/* ================================================================================================
 * The parent
 * ================================================================================================ */

typedef struct run_s {
  char out[65536]; /* never_given_every_class announces about 170 lines */
  char err[65536];
  int status;
} run_t;

/* Run `exe --child name` with the environment minus RAMALLOC_ON_ERROR and LD_PRELOAD, plus `extra`
 * (NULL-terminated NAME=value list); both output streams are collected. */
static void run_child(run_t *r, const char *exe, const char *name, const char *const *extra) {
  static const char *const drop[] = {"RAMALLOC_ON_ERROR=", "LD_PRELOAD=", NULL};
  char *argv[] = {(char *)exe, (char *)"--child", (char *)name, NULL};
  child_exec_t c = {exe, argv, drop, extra, r->out, sizeof r->out, r->err, sizeof r->err};
  r->status = child_exec(&c);
}

/* The expected stderr: the child's expect lines, in order ("expect-near:" lines marked). */
typedef struct expected_s {
  char line[256];
  char alt[256]; /* "" or a second acceptable line */
  bool near;
} expected_t;

static int parse_expected(const run_t *r, expected_t *ex, int max) {
  int n = 0;
  for (const char *l = r->out; *l && n < max;) {
    const char *nl = strchr(l, '\n');
    size_t len = nl ? (size_t)(nl - l) : strlen(l);
    bool near = strncmp(l, "expect-near:", 12) == 0, any = strncmp(l, "expect-any:", 11) == 0;
    if (near || any || strncmp(l, "expect:", 7) == 0) {
      size_t skip = near ? 12 : any ? 11 : 7;
      size_t m = len - skip < sizeof ex[n].line - 1 ? len - skip : sizeof ex[n].line - 1;
      memcpy(ex[n].line, l + skip, m);
      ex[n].line[m] = 0;
      ex[n].alt[0] = 0;
      char *bar = any ? strchr(ex[n].line, '|') : NULL;
      if (bar != NULL) {
        *bar = 0;
        snprintf(ex[n].alt, sizeof ex[n].alt, "%s", bar + 1);
      }
      ex[n].near = near;
      n++;
    }
    if (!nl) break;
    l = nl + 1;
  }
  return n;
}

/* Does the stderr line `got` (without newline) match `ex`? Near lines: same text up to the
 * address, and the address within the same 64 KiB slice. */
static bool line_matches(const expected_t *ex, const char *got, size_t len) {
  if (ex->alt[0] != 0 && strlen(ex->alt) == len && memcmp(ex->alt, got, len) == 0) return true;
  if (!ex->near) return strlen(ex->line) == len && memcmp(ex->line, got, len) == 0;
  const char *sp = strrchr(ex->line, ' ');
  size_t pre = (size_t)(sp - ex->line) + 1;
  if (len <= pre + 2 || memcmp(ex->line, got, pre) != 0 || memcmp(got + pre, "0x", 2) != 0) return false;
  for (size_t i = pre + 2; i < len; i++)
    if (!((got[i] >= '0' && got[i] <= '9') || (got[i] >= 'a' && got[i] <= 'f'))) return false;
  uintptr_t want = (uintptr_t)strtoull(ex->line + pre + 2, NULL, 16);
  uintptr_t have = (uintptr_t)strtoull(got + pre + 2, NULL, 16);
  return (want >> RA_SLICE_SHIFT) == (have >> RA_SLICE_SHIFT);
}

/* Compare stderr with the first `count` expected lines, exactly (one line each, nothing else). */
static void check_stderr(const char *what, const run_t *r, const expected_t *ex, int count, const char *prefix_lines) {
  const char *l = r->err;
  /* lines the environment makes ramalloc print before any misuse (e.g. an invalid option) */
  size_t plen = prefix_lines ? strlen(prefix_lines) : 0;
  if (plen > 0) {
    if (strncmp(l, prefix_lines, plen) != 0)
      fail_msg("%s: stderr does not start with\n%s---- stderr:\n%s", what, prefix_lines, r->err);
    l += plen;
  }
  for (int i = 0; i < count; i++) {
    const char *nl = strchr(l, '\n');
    if (nl == NULL || !line_matches(&ex[i], l, (size_t)(nl - l)))
      fail_msg("%s: stderr line %d: want \"%s\"%s%s%s\n---- stderr:\n%s---- stdout:\n%s", what, i + 1, ex[i].line,
               ex[i].near ? " (address in the same 64 KiB slice)" : "", ex[i].alt[0] ? " or " : "", ex[i].alt, r->err,
               r->out);
    l = nl + 1;
  }
  if (*l != 0) fail_msg("%s: unexpected output on stderr after the expected lines:\n%s---- stdout:\n%s", what, l, r->out);
}

static const char *self_exe(void) {
  static char path[4096];
  if (path[0] == 0) {
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
    assert_true(n > 0);
    path[n] = 0;
  }
  return path;
}

/* One scenario in one mode: "abort" (RAMALLOC_ON_ERROR unset, or set to abort), or "warn". */
static void run_scenario(const char *exe, const scenario_t *sc, const char *on_error, const char *prefix_lines,
                         const char *const *more_env) {
  const char *env[8];
  int ne = 0;
  char setting[64];
  if (on_error != NULL) {
    snprintf(setting, sizeof setting, "RAMALLOC_ON_ERROR=%s", on_error);
    env[ne++] = setting;
  }
  for (const char *const *m = more_env; m && *m; m++) env[ne++] = *m;
  env[ne] = NULL;
  static run_t r;
  memset(&r, 0, sizeof r);
  run_child(&r, exe, sc->name, env);
  char what[160];
  snprintf(what, sizeof what, "%s (RAMALLOC_ON_ERROR=%s)", sc->name, on_error ? on_error : "<unset>");
  if (strstr(r.out, "FAIL:")) fail_msg("%s: %s---- stderr:\n%s", what, strstr(r.out, "FAIL:"), r.err);
  static expected_t ex[256];
  int nex = parse_expected(&r, ex, 256);
  if (nex == 0) fail_msg("%s: the child announced no expected line; stdout:\n%s\nstderr:\n%s", what, r.out, r.err);
  bool warn = on_error != NULL && strcmp(on_error, "warn") == 0;
  if (warn) {
    if (!WIFEXITED(r.status) || WEXITSTATUS(r.status) != 0 || !strstr(r.out, "done\n"))
      fail_msg("%s: the child did not go on after the report (status 0x%x)\n---- stdout:\n%s---- stderr:\n%s", what,
               r.status, r.out, r.err);
    check_stderr(what, &r, ex, nex, prefix_lines);
  } else {
    if (!WIFSIGNALED(r.status) || WTERMSIG(r.status) != SIGABRT)
      fail_msg("%s: want death by SIGABRT, got status 0x%x (%s %d)\n---- stdout:\n%s---- stderr:\n%s", what, r.status,
               WIFSIGNALED(r.status) ? "signal" : "exit", WIFSIGNALED(r.status) ? WTERMSIG(r.status) : WEXITSTATUS(r.status),
               r.out, r.err);
    check_stderr(what, &r, ex, 1, prefix_lines);
  }
}

static bool skipped(const scenario_t *sc) {
  (void)sc;
#if RA_TEST_SANITIZED
  return sc->writes_freed_memory;
#else
  return false;
#endif
}

/* The options a scenario runs under, by its name's prefix. */
static const char *const *scenario_env(const scenario_t *sc) {
  static const char *const canary[] = {"RAMALLOC_CANARY=1", NULL};
  static const char *const secure[] = {"RAMALLOC_SECURE=1", NULL};
  if (strncmp(sc->name, "canary_", 7) == 0) return canary;
  if (strncmp(sc->name, "secure_", 7) == 0) return secure;
  return NULL;
}

/* cmocka state: which scenario (index) and which mode. */
typedef struct tcase_s {
  const scenario_t *sc;
  int mode; /* 0 default (abort), 1 RAMALLOC_ON_ERROR=abort, 2 warn, 3 preload default, 4 preload warn */
} tcase_t;

static void test_case(void **state) {
  const tcase_t *tc = *state;
  if (skipped(tc->sc)) {
    skip();
    return;
  }
  switch (tc->mode) {
    case 0: run_scenario(self_exe(), tc->sc, NULL, NULL, scenario_env(tc->sc)); break;
    case 1: run_scenario(self_exe(), tc->sc, "abort", NULL, scenario_env(tc->sc)); break;
    case 2: run_scenario(self_exe(), tc->sc, "warn", NULL, scenario_env(tc->sc)); break;
#ifdef MISUSE_PRELOAD_EXE
    case 3:
    case 4: {
      static char preload[4200];
      snprintf(preload, sizeof preload, "LD_PRELOAD=%s", MISUSE_PRELOAD_LIB);
      const char *env[] = {preload, NULL};
      run_scenario(MISUSE_PRELOAD_EXE, tc->sc, tc->mode == 4 ? "warn" : NULL, NULL, env);
      break;
    }
#endif
    default: fail_msg("bad mode");
  }
}

/* An invalid RAMALLOC_ON_ERROR is reported as such and the default (abort) applies. */
static void test_on_error_invalid(void **state) {
  (void)state;
  run_scenario(self_exe(), &scenarios[0], "bogus", "ramalloc: ignoring RAMALLOC_ON_ERROR=bogus (not a valid value); using the default\n",
               NULL);
}

#ifdef MISUSE_PRELOAD_EXE
/* Scenarios that also run through libramalloc.so preloaded (the malloc family's own names). */
static const char *const preload_names[] = {
    "double_free_small", "double_free_small_not_head", "double_free_large",  "double_free_huge",
    "double_free_huge_aligned_1m", "double_free_small_page_released",
    "double_free_after_realloc", "realloc_freed_small", "realloc_freed_small_in_place", "realloc_freed_huge", "interior_free_small",
    "interior_realloc_small", "interior_free_huge", "foreign_stack",      "foreign_static_realloc",
    "foreign_garbage", "warn_sequence", "never_given_uncarved_16", "never_given_uncarved_1024",
    "never_given_uncarved_remote", "usable_freed_small", "usable_freed_huge", "usable_interior_small",
    "usable_foreign_stack", "free_sized_larger", "free_sized_huge", "free_aligned_sized_size",
};
enum { NPRELOAD = sizeof preload_names / sizeof preload_names[0] };
#else
enum { NPRELOAD = 0 };
#endif

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "--child") == 0) return child_main(argv[2]);
  const size_t cap = 3 * NSCENARIOS + 2 * NPRELOAD + 1;
  struct CMUnitTest *tests = calloc(cap, sizeof *tests);
  tcase_t *cases = calloc(cap, sizeof *cases);
  char (*names)[96] = calloc(cap, sizeof *names);
  size_t n = 0;
  for (int mode = 0; mode < 3; mode++)
    for (size_t i = 0; i < NSCENARIOS; i++) {
      bool warn_only = strcmp(scenarios[i].name, "warn_sequence") == 0 ||
                       strcmp(scenarios[i].name, "never_given_every_class") == 0;
      if (warn_only && mode != 2) continue;
      if (mode == 1 && i % 4 != 0) continue; /* RAMALLOC_ON_ERROR=abort: a sample; it is the default */
      cases[n] = (tcase_t){&scenarios[i], mode};
      snprintf(names[n], sizeof names[n], "%s/%s", mode == 0 ? "abort" : mode == 1 ? "abort_explicit" : "warn",
               scenarios[i].name);
      tests[n] = (struct CMUnitTest){names[n], test_case, NULL, NULL, &cases[n]};
      n++;
    }
#ifdef MISUSE_PRELOAD_EXE
  for (int mode = 3; mode < 5; mode++)
    for (size_t k = 0; k < NPRELOAD; k++)
      for (size_t i = 0; i < NSCENARIOS; i++) {
        if (strcmp(scenarios[i].name, preload_names[k]) != 0) continue;
        if (mode == 3 && strcmp(preload_names[k], "warn_sequence") == 0) continue;
        cases[n] = (tcase_t){&scenarios[i], mode};
        snprintf(names[n], sizeof names[n], "%s/%s", mode == 3 ? "preload_abort" : "preload_warn", scenarios[i].name);
        tests[n] = (struct CMUnitTest){names[n], test_case, NULL, NULL, &cases[n]};
        n++;
      }
#endif
  tests[n++] = (struct CMUnitTest){"abort/on_error_invalid", test_on_error_invalid, NULL, NULL, NULL};
  int rc = _cmocka_run_group_tests("misuse", tests, n, NULL, NULL);
  free(tests);
  free(cases);
  free(names);
  return rc;
}
#endif
