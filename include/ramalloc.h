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
#define RA_EXPORT __attribute__((visibility("default")))
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

/* C11 aligned_alloc: alignment must be a power of two (NULL with EINVAL otherwise). The size need not
 * be a multiple of the alignment. Alignments up to the arena reservation are served. */
RA_EXPORT RA_NOTHROW RA_MALLOC_ATTR RA_ALLOC_ALIGN(1) RA_ALLOC_SIZE(2) RA_WARN_UNUSED void *
ra_aligned_alloc(size_t alignment, size_t size);

/* POSIX posix_memalign: returns 0 and stores the block in *out, EINVAL when alignment is not a
 * power-of-two multiple of sizeof(void *), ENOMEM when out of memory. *out is untouched on error. */
RA_EXPORT RA_NOTHROW int ra_posix_memalign(void **out, size_t alignment, size_t size);

/* Bytes usable in the block (at least what was asked for). 0 for NULL. */
RA_EXPORT RA_NOTHROW size_t ra_usable_size(const void *p);

/* True if p lies inside a block (live or free) of a ramalloc arena. Never faults, whatever p is. */
RA_EXPORT RA_NOTHROW bool ra_owns(const void *p);

/* Give memory back now: free pages and chunks that have waited out RAMALLOC_PURGE_DELAY_MS are
 * reset or decommitted (RAMALLOC_PURGE); with force, everything free goes back whatever its age.
 * Reserved ranges stay reserved. Cheap to call; malloc_trim calls it when ramalloc is preloaded. */
RA_EXPORT void ra_collect(bool force);

/* ---- Statistics --------------------------------------------------------------------------------- */

#define RA_STATS_CLASSES 128

typedef struct ra_class_stats_s {
  size_t block_size;   /* bytes per block (0: unused entry) */
  size_t pages;        /* pages currently holding this class */
  size_t blocks_used;  /* blocks handed out and not yet seen freed */
  size_t blocks_free;  /* blocks carved or reserved in those pages and free */
} ra_class_stats_t;

typedef struct ra_stats_s {
  size_t arenas;            /* arena reservations held */
  size_t reserved;          /* bytes of address space reserved */
  size_t committed;         /* bytes committed now */
  size_t committed_peak;    /* most bytes committed at once */
  size_t live_bytes;        /* bytes in blocks handed out (usable size) */
  size_t live_blocks;       /* blocks handed out */
  size_t huge_blocks;       /* of which huge blocks (own chunk runs) */
  size_t chunks_in_use;     /* chunks owned by heaps or holding huge blocks */
  size_t heaps;             /* thread heaps alive */
  size_t purged;            /* bytes given back by reset or decommit since start */
  size_t reserve_calls, commit_calls, decommit_calls, reset_calls, protect_calls, release_calls;
  size_t class_count;       /* entries used in classes[] */
  ra_class_stats_t classes[RA_STATS_CLASSES];
} ra_stats_t;

/* Fill *st. Counters of OS calls and bytes reserved/committed are exact at any time; the per-class
 * figures come from a walk of the page descriptors and are exact when no other thread allocates or
 * frees during the call (blocks freed by another thread and not yet collected count as used). */
RA_EXPORT void ra_stats_get(ra_stats_t *st);

/* Write a human-readable summary of ra_stats_get to file descriptor fd, without allocating. */
RA_EXPORT void ra_stats_print(int fd);

#ifdef __cplusplus
}
#endif

#endif /* RAMALLOC_H */
