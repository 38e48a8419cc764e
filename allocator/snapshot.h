/* The snapshot walk behind every reader of the metadata (stats.c, visit.c, inspect.c): arenas,
 * their chunks and page descriptors read under the arena and chunk locks, and the free lists
 * followed safely. Nothing here adds work to malloc or free.
 *
 * Reading rules (the semantics promised in ramalloc.h):
 *   - a chunk is read while its arena's lock and its chunk lock are held: it cannot be given back,
 *     purged, or have spans taken or returned meanwhile; callbacks and output run with no lock held;
 *   - page fields the owner changes on its fast paths (used, free) are read without its
 *     cooperation: exact when the owner is not running, a moment's view otherwise;
 *   - a free-list link is followed only into a committed slice of a page whose chunk's locks are
 *     held; links that lead elsewhere (another thread's delayed list spans chunks) are read with
 *     that chunk's locks taken too, try-locked when another arena's lock would have to be waited for. */
#ifndef RA_SNAPSHOT_H
#define RA_SNAPSHOT_H

#include "internal.h"

#define RA_SNAPSHOT_DELAYED 1024                       /* delayed frees gathered before a walk, sorted */
#define RA_SNAPSHOT_BLOCKS (RA_SLICE_SIZE / RA_ALIGN) /* most blocks in one page: 4096 blocks of 16 bytes */

static inline bool _ra_bit_get(const uint64_t *map, size_t i) { return (map[i >> 6] >> (i & 63)) & 1; }

/* Gathered once before a walk, under the heap list lock, then sorted: a page finds its own by a
 * binary search. When there are more than RA_SNAPSHOT_DELAYED, a page reads its owner's list instead. */
typedef struct ra_delayed_s {
  size_t n;
  bool overflow;
  bool complete; /* every list was read to its end */
  uintptr_t addr[RA_SNAPSHOT_DELAYED];
} ra_delayed_t;

typedef struct ra_page_info_s {
  const uint8_t *start;      /* first byte of the span */
  const ra_page_t *desc;     /* its descriptor in the chunk header */
  uint32_t slice, slices;    /* head slice, span length */
  uint32_t block_size, reserved, capacity;
  uint32_t used;             /* the descriptor's count: includes remote and delayed frees */
  uint32_t remote, delayed;  /* blocks on xfree, and on the owner's delayed list */
  uint32_t live;             /* blocks handed out and not freed */
  uint32_t committed_slices; /* slices of the span committed */
  uint8_t class_idx, flags, delay;
} ra_page_info_t;

typedef struct ra_chunk_info_s {
  ra_arena_t *arena;
  ra_chunk_t *chunk;
  size_t slot;
  uint8_t kind;
  bool abandoned;
  uint32_t chunk_count;
  ra_heap_t *owner;
  uint64_t free_slices, committed, dirty, purge;
  uint32_t pages_in_use, free_count;
  const uint8_t *huge_block;
  size_t huge_size, huge_committed;
  char slices[RA_SLICES]; /* state code of each slice (page chunks) */
  size_t npages;
  ra_page_info_t pages[RA_SLICES];
} ra_chunk_info_t;

typedef struct ra_snapshot_s {
  ra_delayed_t delayed;
} ra_snapshot_t;

/* Start a walk: gather the heaps' delayed lists. Each read below (and the gathering) holds
 * walk_lock (heap.c), under which no parked heap is abandoned; between reads, and while callbacks
 * and output run, no lock is held. */
void _ra_snapshot_begin(ra_snapshot_t *w);
/* The next published chunk at or after slot *s of arena a, read into ci; *s moves past it. */
bool _ra_snapshot_chunk_next(const ra_snapshot_t *w, ra_arena_t *a, size_t *s, ra_chunk_info_t *ci);
/* Read one page again, with its block bitmap (RA_SNAPSHOT_BLOCKS bits), if the chunk and the page
 * are still there. */
bool _ra_snapshot_page_reread(const ra_snapshot_t *w, const ra_chunk_info_t *ci, size_t idx, ra_page_info_t *pi,
                              uint64_t *bits);
/* The state code of slot s of an arena (arena lock held), docs/layout.md. */
char _ra_snapshot_slot_state(ra_arena_t *a, size_t s, size_t *huge_end);
/* Bytes at the end of a page's span that no block covers. */
size_t _ra_snapshot_page_tail(const ra_page_info_t *pi);
/* Bytes a request of class i may be short of its block. */
size_t _ra_snapshot_class_slack(size_t i);
/* Committed bytes of a chunk (a huge block's run: its header slice and its committed part). */
size_t _ra_snapshot_chunk_committed(const ra_chunk_info_t *ci);

/* stats.c: ra_stats_get's figures added up chunk by chunk; the layout dump (inspect.c), which walks
 * the chunks for its own output, adds them up in the same walk. */
void _ra_stats_begin(ra_stats_t *st);
void _ra_stats_add_arena(ra_stats_t *st, ra_arena_t *a);
void _ra_stats_add_chunk(ra_stats_t *st, const ra_chunk_info_t *ci);
void _ra_stats_end(ra_stats_t *st);

#endif
