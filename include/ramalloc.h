/* ramalloc: a general-purpose malloc built on reserved arenas.
 *
 * Public API. Every function here is thread-safe and may be called before main.
 * Semantics follow C11, POSIX and glibc; see README.md for the exact contract. */
#ifndef RAMALLOC_H
#define RAMALLOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RAMALLOC_VERSION_MAJOR 0
#define RAMALLOC_VERSION_MINOR 1
#define RAMALLOC_VERSION_PATCH 0

/* Attribute macros, defined once and applied consistently: `malloc` only on functions that return
 * fresh memory (never on realloc), `alloc_size` wherever the size is an argument. */
#if defined(__GNUC__) || defined(__clang__)
/* noplt (GCC, ELF): a program calls these through its GOT entry, one indirect call, instead of a
 * call to a PLT stub that jumps through the same entry (one instruction less per call; docs/
 * performance.md). A static link turns the indirect call into a direct one. */
#if defined(__ELF__) && defined(__has_attribute)
#if __has_attribute(noplt)
#define RA_EXPORT __attribute__((visibility("default"), noplt))
#endif
#endif
#ifndef RA_EXPORT
#define RA_EXPORT __attribute__((visibility("default")))
#endif
#define RA_MALLOC_ATTR __attribute__((malloc))
#define RA_ALLOC_SIZE(n) __attribute__((alloc_size(n)))
#define RA_ALLOC_SIZE2(n, m) __attribute__((alloc_size(n, m)))
#define RA_ALLOC_ALIGN(n) __attribute__((alloc_align(n)))
#define RA_WARN_UNUSED __attribute__((warn_unused_result))
#define RA_NOTHROW __attribute__((nothrow))
#else
#define RA_EXPORT
#define RA_MALLOC_ATTR
#define RA_ALLOC_SIZE(n)
#define RA_ALLOC_SIZE2(n, m)
#define RA_ALLOC_ALIGN(n)
#define RA_WARN_UNUSED
#define RA_NOTHROW
#endif

/* Allocate `size` bytes, 16-byte aligned. ra_malloc(0) returns a unique pointer that can be freed.
 * NULL with errno ENOMEM when the size cannot be served. */
RA_EXPORT RA_NOTHROW RA_MALLOC_ATTR RA_ALLOC_SIZE(1) RA_WARN_UNUSED void *ra_malloc(size_t size);

/* count * size zeroed bytes; NULL with errno ENOMEM on overflow. Memory fresh from the OS is not
 * cleared again. */
RA_EXPORT RA_NOTHROW RA_MALLOC_ATTR RA_ALLOC_SIZE2(1, 2) RA_WARN_UNUSED void *ra_calloc(size_t count,
                                                                                        size_t size);

/* Resize keeping the content up to the smaller size. ra_realloc(NULL, n) is ra_malloc(n).
 * ra_realloc(p, 0) frees p and returns a fresh ra_malloc(0) block (glibc returns NULL there; we
 * keep the behaviour of "realloc returns a block" so that a NULL result always means failure).
 * On failure returns NULL with errno ENOMEM and p is left untouched. */
RA_EXPORT RA_NOTHROW RA_ALLOC_SIZE(2) RA_WARN_UNUSED void *ra_realloc(void *p, size_t size);

/* Free a block returned by ramalloc. NULL is ignored. */
RA_EXPORT RA_NOTHROW void ra_free(void *p);

/* C23 free_sized: free a block of ra_malloc/ra_calloc/ra_realloc, given the size it was last asked
 * for. A size that cannot belong to the block is reported as a misuse (docs/robustness.md). */
RA_EXPORT RA_NOTHROW void ra_free_sized(void *p, size_t size);

/* C23 free_aligned_sized: free a block of ra_aligned_alloc(alignment, size), given both. */
RA_EXPORT RA_NOTHROW void ra_free_aligned_sized(void *p, size_t alignment, size_t size);

/* C11 aligned_alloc: alignment must be a power of two (NULL with EINVAL otherwise). The size need not
 * be a multiple of the alignment. Alignments up to the arena reservation are served. */
RA_EXPORT RA_NOTHROW RA_MALLOC_ATTR RA_ALLOC_ALIGN(1) RA_ALLOC_SIZE(2) RA_WARN_UNUSED void *
ra_aligned_alloc(size_t alignment, size_t size);

/* POSIX posix_memalign: returns 0 and stores the block in *out, EINVAL when alignment is not a
 * power-of-two multiple of sizeof(void *), ENOMEM when out of memory. *out is untouched on error. */
RA_EXPORT RA_NOTHROW int ra_posix_memalign(void **out, size_t alignment, size_t size);

/* Bytes usable in the block (at least what was asked for). 0 for NULL. A pointer that is not a live
 * block (freed, interior, never handed out by ramalloc) is reported as a misuse like a bad free
 * (docs/robustness.md); with RAMALLOC_ON_ERROR=warn the answer is then 0. */
RA_EXPORT RA_NOTHROW size_t ra_usable_size(const void *p);

/* True if p lies inside a block (live or free) of a ramalloc arena. Never faults, whatever p is. */
RA_EXPORT RA_NOTHROW bool ra_owns(const void *p);

/* Give memory back now: free pages and chunks that have waited out RAMALLOC_PURGE_DELAY_MS are
 * reset or decommitted (RAMALLOC_PURGE); with force, everything free goes back whatever its age.
 * Reserved ranges stay reserved. Cheap to call; malloc_trim calls it when ramalloc is preloaded. */
RA_EXPORT void ra_collect(bool force);

/* ---- Statistics --------------------------------------------------------------------------------- */

/* Where text goes when it does not go to a file descriptor: called with pieces of the output (not
 * NUL-terminated, not split at line ends) from the thread that asked for it, with no allocator lock
 * held, so it may allocate. */
typedef void ra_output_fun(const char *text, size_t len, void *arg);

#define RA_STATS_CLASSES 128

/* Per size class. "Lost to rounding" is reported as two figures (docs/layout.md):
 *   tail_bytes    exact: the end of each page's span too short for one more block,
 *                 slice_count * 64 KiB - reserved * block_size, summed over the class's pages;
 *   rounding_max  a bound, not a measurement (ramalloc keeps no per-block size): each used block
 *                 holds at most block_size - (smallest request of its class) bytes more than was
 *                 asked, summed over the used blocks. An aligned allocation may waste up to its
 *                 alignment more. */
typedef struct ra_class_stats_s {
  size_t block_size;   /* bytes per block (0: unused entry) */
  size_t pages;        /* pages currently holding this class */
  size_t blocks_used;  /* blocks handed out and not freed */
  size_t blocks_free;  /* blocks that fit in those pages and are free (carved yet or not) */
  size_t tail_bytes;   /* exact rounding loss at the page level, see above */
  size_t rounding_max; /* bound of the rounding loss inside used blocks, see above */
} ra_class_stats_t;

typedef struct ra_stats_s {
  size_t arenas;            /* arena reservations held */
  size_t reserved;          /* bytes of address space reserved */
  size_t committed;         /* bytes committed now */
  size_t committed_peak;    /* most bytes committed at once */
  size_t live_bytes;        /* bytes in blocks handed out (usable size: block sizes, huge sizes) */
  size_t live_blocks;       /* blocks handed out */
  size_t huge_blocks;       /* of which huge blocks (own chunk runs) */
  size_t chunks_in_use;     /* chunks owned by heaps or holding huge blocks */
  size_t heaps;             /* thread heaps alive */
  size_t purged;            /* bytes given back by reset or decommit since start */
  size_t reserve_calls, commit_calls, decommit_calls, reset_calls, protect_calls, release_calls;
  /* From the walk of the metadata (exact when no other thread allocates or frees meanwhile): */
  size_t pages;             /* pages (spans holding blocks of one class) */
  size_t chunks_abandoned;  /* page chunks whose thread exited with blocks still live */
  size_t meta_bytes;        /* bytes of metadata structures: arena headers and bitmaps, heap
                               structs, chunk headers with their page descriptors */
  size_t meta_committed;    /* committed bytes set aside for them: each arena's committed slot-0
                               prefix, and the header slice (64 KiB) of every chunk in use */
  size_t tail_bytes;        /* sum of the classes' tail_bytes */
  size_t rounding_max;      /* sum of the classes' rounding_max, plus one OS page per huge block */
  size_t class_count;       /* entries used in classes[] */
  ra_class_stats_t classes[RA_STATS_CLASSES];
} ra_stats_t;

/* Fill *st. Counters of OS calls and bytes reserved/committed are exact at any time. The rest comes
 * from a walk of the metadata (page descriptors, the lists of blocks freed by other threads, huge
 * chunk headers) and is exact when no other thread allocates or frees during the call: blocks
 * freed by another thread count as free even before their owner collects them. No counter on the
 * malloc/free paths is involved. Does not allocate. */
RA_EXPORT void ra_stats_get(ra_stats_t *st);

/* Write a human-readable summary of ra_stats_get to file descriptor fd, or through `out`, without
 * allocating. */
RA_EXPORT void ra_stats_print(int fd);
RA_EXPORT void ra_stats_print_out(ra_output_fun *out, void *arg);

/* ---- Walking the metadata ---------------------------------------------------------------------- */

typedef enum ra_visit_kind_e {
  RA_VISIT_ARENA = 1,  /* an arena: one reservation */
  RA_VISIT_CHUNK = 2,  /* a chunk in use: a chunk of pages, or the run of chunks of a huge block */
  RA_VISIT_PAGE = 4,   /* a page: a span of slices holding blocks of one size class */
  RA_VISIT_BLOCK = 8,  /* a live block (handed out and not freed), huge blocks included */
  RA_VISIT_FREE = 16,  /* a free block of a page, carved yet or not */
  RA_VISIT_ALL = 31
} ra_visit_kind_t;

/* What a visit reports. Fields that do not apply to a kind are 0 (or NULL). */
typedef struct ra_visit_info_s {
  ra_visit_kind_t kind;
  const void *start;   /* arena base; chunk header; page's first byte; block's first byte */
  size_t size;         /* bytes: reservation; chunk run; page span; block */
  size_t arena;        /* index of the arena (every kind) */
  size_t slot;         /* chunk slot in the arena (chunk, page, block); arena: number of slots */
  size_t slice;        /* first slice of the page in its chunk (page, block of a page) */
  size_t class_index;  /* size class (page, block of a page) */
  size_t block_size;   /* page, block */
  size_t blocks_used;  /* page: live blocks; chunk: live blocks in all its pages (huge: 1) */
  size_t blocks_free;  /* page: free blocks, carved or not; chunk: in all its pages */
  size_t capacity;     /* page: blocks carved so far */
  size_t reserved;     /* page: blocks that fit in the span */
  size_t committed;    /* chunk, page: bytes committed */
  const void *owner;   /* chunk, page, block: the owning thread's heap; NULL when abandoned or huge */
  bool live;           /* block: handed out and not freed (RA_VISIT_BLOCK), false for RA_VISIT_FREE */
  bool huge;           /* chunk, block: a huge block */
} ra_visit_info_t;

/* Return false to stop the walk. */
typedef bool ra_visit_fun(const ra_visit_info_t *info, void *arg);

/* Call `visit` for every arena, chunk in use, page and block of the kinds in `kinds` (an OR of
 * ra_visit_kind_t), in address order: an arena, then each of its chunks, each chunk's pages, each
 * page's blocks. Returns false when the callback stopped the walk, true otherwise. Allocates
 * nothing; the callback runs with no allocator lock held and may call any ramalloc function.
 *
 * How it reads: each chunk is examined while its arena's lock and its chunk lock are held (so it
 * cannot be given back, purged or split meanwhile); the states of one page's blocks are taken
 * together from its descriptor and its free lists, then reported with the locks released. Semantics:
 *   - when no other thread allocates or frees during the walk (and the callback does neither),
 *     every block is reported exactly once, live blocks as live and free blocks as free;
 *   - while other threads run: every block of a page that exists during the whole walk is
 *     reported exactly once; a block that stays live during the whole walk in a page no other
 *     thread touches is reported live; in a page that its owner changes while it is read, blocks
 *     may be reported in either state; chunks and pages that appear or go away during the walk
 *     may be missed or reported as they were;
 *   - the walk never reads memory that is not committed: free-list links are followed only inside
 *     committed slices of pages of a chunk whose locks are held (or try-locked, for blocks freed
 *     by other threads that lie in another chunk; a busy lock ends that list, which may leave such
 *     blocks counted as live).
 * Blocks the callback allocates or frees may or may not be seen. */
RA_EXPORT bool ra_visit(unsigned kinds, ra_visit_fun *visit, void *arg);

/* ---- Layout dump ------------------------------------------------------------------------------- */

/* Write the whole layout as JSON (schema: docs/layout-schema.json, explained in docs/layout.md):
 * each arena's range and metadata regions, every chunk with its slice states and header offsets,
 * every page with its state, block size and counts, the thread heaps, the struct layouts, and the
 * statistics of the same walk. Same reading rules as ra_visit; allocates nothing (the text goes
 * through a fixed buffer). ra_dump_layout returns 0 or the errno of a failed write;
 * ra_dump_layout_file writes `path` whole or not at all (a temporary file renamed into place) and
 * returns 0 or an errno value. */
RA_EXPORT int ra_dump_layout(int fd);
RA_EXPORT void ra_dump_layout_out(ra_output_fun *out, void *arg);
RA_EXPORT int ra_dump_layout_file(const char *path);

/* ---- Heap profile ------------------------------------------------------------------------------ */

/* With the heap profiler on (RAMALLOC_PROFILE=BYTES or RAMALLOC_LEAKS=1; docs/profiling.md), write
 * the sampled heap to file descriptor fd in the text heap-profile format google-pprof reads: the
 * estimated live and allocated objects and bytes per call stack, then the process's memory map.
 * Allocates nothing. Returns 0, EINVAL when the profiler is off, ENOSYS where there is none
 * (Windows), or the errno of a failed write. */
RA_EXPORT int ra_profile_write(int fd);

#ifdef __cplusplus
}
#endif

#endif /* RAMALLOC_H */
