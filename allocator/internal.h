/* ramalloc internals: types, layout constants, invariants, and the cross-file prototypes grouped
 * by the file that defines them. Naming: public ra_*, cross-file _ra_<module>_*, file-static plain.
 *
 * Layout (docs/design.md has the long story):
 *
 *   arena  = [ slot 0: arena header | chunk bitmaps | heap structs ... | chunk 1 | chunk 2 | ... ]
 *            one reservation, CHUNK-aligned; slot 0 never holds blocks
 *   chunk  = [ slice 0: chunk header + page descriptors | slice 1 | ... | slice 63 ]
 *            CHUNK (4 MiB) aligned; a pointer finds its chunk as (p - 1) & ~CHUNK_MASK
 *   slice  = 64 KiB; a page (span) is a run of slices: 1 for small classes, 8 for medium,
 *            n for one large block; huge blocks own a run of whole chunks
 *   page   = [ block | block | ... ]   carved on demand, committed slice by slice as it fills
 *   free block = [ next | ... ]         linked through its first word
 */
#ifndef RAMALLOC_INTERNAL_H
#define RAMALLOC_INTERNAL_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "annotate.h"
#include "prim.h"
#include "ramalloc.h"

/* Everything declared below is internal to the library: hidden where the object format has it
 * (prim.h). */
RA_HIDDEN_BEGIN

#ifndef RA_DEBUG
#define RA_DEBUG 0
#endif

#define RA_LIKELY(x) __builtin_expect(!!(x), 1)
#define RA_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define RA_NOINLINE __attribute__((noinline))
#define RA_COLD __attribute__((cold, noinline))
#define RA_NORETURN __attribute__((noreturn))
#define RA_INTERNAL __attribute__((visibility("hidden")))

/* ---- Sizes --------------------------------------------------------------------------------------- */

#define RA_ALIGN 16                        /* every block is aligned to this */
#define RA_SLICE_SHIFT 16
#define RA_SLICE_SIZE ((size_t)1 << RA_SLICE_SHIFT)  /* 64 KiB */
#define RA_CHUNK_SHIFT 22
#define RA_CHUNK_SIZE ((size_t)1 << RA_CHUNK_SHIFT)  /* 4 MiB */
#define RA_CHUNK_MASK (RA_CHUNK_SIZE - 1)
#define RA_SLICES (RA_CHUNK_SIZE / RA_SLICE_SIZE)    /* 64 per chunk; slice 0 is the header */

#define RA_SMALL_MAX ((size_t)8 << 10)     /* classes up to here: 1-slice pages */
#define RA_MEDIUM_MAX ((size_t)64 << 10)   /* up to here: 8-slice pages */
#define RA_MEDIUM_SLICES 8
#define RA_LARGE_MAX ((size_t)2 << 20)     /* up to here: one block per span; above: huge */
#define RA_DIRECT_MAX 1024                 /* sizes served by heap->direct[] on the fast path */
#define RA_DIRECT_COUNT (RA_DIRECT_MAX + 1)       /* heap->direct[] is indexed by the size itself */
#define RA_PROTECT_FREED_DEFAULT ((size_t)2 << 20) /* RAMALLOC_PROTECT_FREED (docs/robustness.md) */
#define RA_EXTEND_BYTES 4096               /* a page is carved about this much at a time */

/* Size classes: 16..128 in steps of 16 (8 classes), then 8 per power of two up to RA_LARGE_MAX. */
#define RA_CLASS_COUNT 120
#define RA_CLASS_HUGE RA_CLASS_COUNT       /* marks huge spans */

#define RA_ARENA_MIN ((size_t)16 << 20)
#define RA_ARENA_DEFAULT ((size_t)1 << 30)
#define RA_MAX_ARENAS 4096
#define RA_ADDR_BITS 47                    /* user space on x86-64 and arm64 (4-level tables) */
#define RA_CHUNK_MAP_SIZE ((size_t)1 << (RA_ADDR_BITS - RA_CHUNK_SHIFT)) /* two bytes per chunk: 64 MiB of bss */
/* Chunk map entries (_ra_chunk_map): no chunk, a chunk with no tagged owner (abandoned, huge, or
 * its heap found no tag free), else the owning heap's tag. A thread without a tag holds
 * RA_TAG_NONE, which no entry ever holds. */
#define RA_MAP_NO_CHUNK 0
#define RA_MAP_UNOWNED 1
#define RA_TAG_FIRST 2
#define RA_TAG_LAST 0xFFFE
#define RA_TAG_NONE 0xFFFF

_Static_assert((RA_SLICE_SIZE & (RA_SLICE_SIZE - 1)) == 0, "slice size is a power of two");
_Static_assert(RA_CHUNK_SIZE % RA_SLICE_SIZE == 0, "a chunk holds whole slices");
_Static_assert(RA_SLICES == 64, "one 64-bit word maps the slices of a chunk");
_Static_assert(RA_SMALL_MAX * 8 <= RA_SLICE_SIZE, "a small page holds at least 8 blocks");
_Static_assert(RA_MEDIUM_MAX * 8 <= RA_MEDIUM_SLICES * RA_SLICE_SIZE, "a medium page holds 8 blocks");
_Static_assert(RA_LARGE_MAX <= (RA_SLICES - 1) * RA_SLICE_SIZE, "a large block fits in a chunk");
_Static_assert(RA_ARENA_MIN % RA_CHUNK_SIZE == 0, "arenas hold whole chunks");
_Static_assert(RA_CLASS_COUNT <= RA_STATS_CLASSES, "the public stats hold every class");
_Static_assert(RA_DIRECT_MAX % RA_ALIGN == 0, "direct sizes are whole alignment units");
_Static_assert(sizeof(uintptr_t) == 8 && RA_ADDR_BITS <= 48 && RA_ALIGN >= 4,
               "a block address fits bits 2-47 of page->xfree, a 64-bit word");
_Static_assert(RA_SLICE_SIZE / RA_ALIGN < 65536 && RA_MEDIUM_SLICES * RA_SLICE_SIZE / RA_SMALL_MAX < 65536,
               "the blocks of any page can be counted in the top 16 bits of page->xfree");

/* ---- Assertions (one level, tiered) -------------------------------------------------------------- */

void _ra_report_assert(const char *expr, const char *file, int line) RA_NORETURN RA_COLD;
#define RA_ASSERT_AT(level, x) \
  ((RA_DEBUG >= (level) && !(x)) ? _ra_report_assert(#x, __FILE__, __LINE__) : (void)0)
#define ra_assert(x) RA_ASSERT_AT(1, x)          /* cheap */
#define ra_assert_internal(x) RA_ASSERT_AT(2, x) /* costs a little */
#define ra_assert_expensive(x) RA_ASSERT_AT(3, x)

/* Invariant checks: a `*_is_valid` function beside the code of each struct (page.c, chunk.c,
 * heap.c, arena.c) tests the invariants written next to the struct below, reports the first one
 * broken ("ramalloc: invariant broken: <what> at <address>", _ra_report_invariant) and returns false.
 * The allocator calls them through ra_assert_internal at every state change of the struct, so they
 * run when RA_DEBUG >= 2 and compile to nothing below; the validator (_ra_heap_validate, heap.c)
 * calls them too. Each checks only what the calling thread owns or holds the lock of: other
 * threads push remote frees onto xfree and the delayed list, and a purging thread changes the
 * chunk bitmaps under the chunk lock. Locks and delay states: "Locks" below. */

/* ---- Blocks and pages ---------------------------------------------------------------------------- */

/* A free block's first word links it to the next free block of its list, encoded as
 * next ^ _ra_key ^ (address of the block itself): an overwrite by a stray write decodes to a wild
 * address, which the allocation path rejects (it must stay in the block's own chunk), and a value
 * copied from one free block to another decodes to garbage. The key is a per-process secret. */
typedef struct ra_block_s {
  uintptr_t link;
} ra_block_t;

/* RA_CHECKS (CMake RAMALLOC_CHECKS, on by default) turns on the encoding and the fast-path checks
 * for double frees and corrupted links. Off, links are plain pointers, and a double free is found
 * only by pointers that leave the fast path (the interior-pointer test stays: free_lim's
 * compare makes it with the capacity test): docs/robustness.md gives the cost. */
#ifndef RA_CHECKS
#define RA_CHECKS 1
#endif
extern uintptr_t _ra_key;
/* Every access of the allocator to a free block's memory goes through these (and the link word
 * accessors of annotate.h), which ASan and memcheck do not check: the block is out of bounds to
 * the program. */
static inline ra_block_t *_ra_block_next(const ra_block_t *b) {
  uintptr_t link = ra_word_load(&b->link);
  return (ra_block_t *)(RA_CHECKS ? link ^ _ra_key ^ (uintptr_t)b : link);
}
static inline void _ra_block_set_next(ra_block_t *b, const ra_block_t *next) {
  ra_word_store(&b->link, RA_CHECKS ? (uintptr_t)next ^ _ra_key ^ (uintptr_t)b : (uintptr_t)next);
}
/* The end of a free list. A page's own list (`free`) ends in NULL or in its chunk's base, the
 * header's address b & ~RA_CHUNK_MASK for any block b of the list, which is never a block: encoded
 * like any successor in the chunk, that marker passes the pop's one compare (_ra_page_pop), and
 * one test of the low 22 bits finds both ends. Carving ends a list in the marker, and popping a
 * list to its end leaves the marker in `free`; lists other threads build (a page's xfree, the
 * heap's delayed list) end in NULL, and so may `free` after it takes a remote list whole. Nothing
 * dereferences, hands out or counts an end: every walk of a list stops at _ra_list_end. */
static inline bool _ra_list_end(const ra_block_t *b) { return ((uintptr_t)b & RA_CHUNK_MASK) == 0; }
static inline ra_block_t *_ra_list_marker(const void *in_chunk) {
  return (ra_block_t *)((uintptr_t)in_chunk & ~(uintptr_t)RA_CHUNK_MASK);
}
/* Clear the link word of a block being handed out. */
static inline void _ra_block_clear(ra_block_t *b) { ra_word_store(&b->link, 0); }
/* Could `b` be on a free list (its first word decodes to NULL or to a block or the base of its own
 * chunk)? True for every free block; for a live block only when its first 8 bytes happen to hold
 * such a pattern (the caller then checks the lists). The word xor the key is next ^ b: below 2^22
 * for a successor in the chunk or the chunk's base, b itself for NULL, and chunks start at 4 MiB or
 * above, so one compare, "at most b", covers all three. It also admits other values up to b, below
 * 2^47: a live block's first word passes only when its top 17 bits are the key's, whose top 12
 * _ra_init makes a pattern no pointer, integer below 2^52 in magnitude, double between 2^-300 and
 * 2^300 in magnitude, or UTF-8 text has (a false "looks free" costs a walk of the lists, not a
 * wrong answer). */
static inline bool _ra_block_looks_free(const ra_block_t *b) {
  if (!RA_CHECKS) return false;
  return (ra_word_load(&b->link) ^ _ra_key) <= (uintptr_t)b;
}
/* The top 12 bits of _ra_key (heap.c): the sign bit set (no pointer, no non-negative integer) and
 * the exponent 0x2a5 (a negative double of magnitude about 2^-346); as bytes, 0x5? then the
 * continuation byte 0xaa, never in UTF-8. The low 52 bits are random, bit 0 set. */
#define RA_KEY_TOP ((uintptr_t)0xaa5 << 52)
#define RA_KEY_TOP_MASK ((uintptr_t)0xfff << 52)
/* The decoded successor of a block taken from a list must be NULL or in the same chunk (a block,
 * or the chunk's base ending a page's list; another chunk's base fails). */
static inline bool _ra_next_is_sane(const ra_block_t *b, const ra_block_t *next) {
  return !RA_CHECKS || (((uintptr_t)next ^ (uintptr_t)b) >> RA_CHUNK_SHIFT) == 0 || next == NULL;
}

/* Page flags. Any bit set sends free() off its fast path. */
enum {
  RA_PAGE_IN_FULL = 1u << 0,     /* in the heap's full list: no free block when last looked */
  RA_PAGE_HAS_ALIGNED = 1u << 1, /* holds an aligned block: pointers may be interior */
  RA_PAGE_HUGE = 1u << 2,        /* a slice of a huge chunk (see chunk->huge_*) */
  RA_PAGE_NOT_PAGE = 1u << 3,    /* a free slice, a non-head slice of a free span, or the header */
  RA_PAGE_SAMPLED = 1u << 4,     /* holds (or held) a block the heap profiler sampled (prof_posix.c) */
  RA_PAGE_CANARY = 1u << 5,      /* every slot ends with a canary (RAMALLOC_CANARY, secure.c) */
};

/* Cross-thread free state, in the low two bits of page->xfree; transitions under "Locks" below. */
typedef enum ra_delay_e {
  RA_DELAY_NONE = 0,     /* remote frees push onto page->xfree */
  RA_DELAY_USE = 1,      /* page is full: the next remote free goes to the heap's delayed list */
  RA_DELAY_FREEING = 2,  /* a remote thread is pushing onto the heap's delayed list right now */
  RA_DELAY_NEVER = 3,    /* abandoned: never notify a heap */
} ra_delay_t;

/* page->xfree packs three fields into one word, so that one CAS pushes a block and one exchange
 * takes the list with its length (the owner splices it in without walking it):
 *   bits 0-1    ra_delay_t
 *   bits 2-47   the list's first block (blocks are RA_ALIGN aligned, addresses below 2^RA_ADDR_BITS)
 *   bits 48-63  how many blocks the list holds (a page holds fewer than 2^16; the owner checks
 *               the count against `used` when it takes the list) */
#define RA_XFREE_STATE ((uintptr_t)3)
#define RA_XFREE_COUNT_SHIFT 48
#define RA_XFREE_ONE ((uintptr_t)1 << RA_XFREE_COUNT_SHIFT)
#define RA_XFREE_LIST ((RA_XFREE_ONE - 1) & ~RA_XFREE_STATE)
static inline ra_block_t *_ra_xfree_list(uintptr_t xf) { return (ra_block_t *)(xf & RA_XFREE_LIST); }
static inline size_t _ra_xfree_count(uintptr_t xf) { return (size_t)(xf >> RA_XFREE_COUNT_SHIFT); }

typedef struct ra_heap_s ra_heap_t;
typedef struct ra_chunk_s ra_chunk_t;
typedef struct ra_arena_s ra_arena_t;

/* One descriptor per slice, in the chunk header. Only the head descriptor of a span is a "page";
 * the others hold slice_offset (the distance back to the head) and RA_PAGE_NOT_PAGE, so a pointer
 * past the first slice of a page leaves free's fast path and the generic path walks back.
 *
 * Invariant (owner's view): used == capacity - |free| (the list's end is no block), and the blocks
 * in xfree and in the heap's delayed list are still counted in used until the owner collects them.
 * 0 <= used <= capacity <= reserved; reserved * block_size <= slice_count * RA_SLICE_SIZE. */
typedef struct ra_page_s {
  /* First cache line: the owner's. Its allocations and frees write `free` and `used` here. */
  ra_block_t *free;            /* blocks ready to hand out; the owner's frees go here too (ends
                                * in NULL or the chunk's base: _ra_list_end) */
  uint16_t used;               /* blocks handed out, see invariant */
  uint16_t _pad;
  uint32_t block_size;         /* bytes per block (huge: 0) */
  uint16_t capacity;           /* blocks carved so far (owner writes, with _ra_page_set_capacity) */
  uint16_t reserved;           /* blocks that fit in the span */
  uint32_t retire_ms;          /* when a kept empty page became empty (_ra_ms32; 0: never kept) */
  _Atomic(uint8_t) flags;      /* RA_PAGE_*; read by other threads, written by the owner */
  uint8_t class_idx;           /* size class, RA_CLASS_HUGE for huge */
  uint8_t slice_count;         /* slices in the span (head only) */
  uint8_t slice_offset;        /* this descriptor's index minus its head's */
  uint8_t free_is_zero;        /* blocks in `free` read as zero past their link word */
  uint8_t dirty;               /* a page used a slice of the span since it was last decommitted (chunk->dirty) */
  uint8_t committed_slices;    /* slices of the span committed so far (from the head) */
  uint8_t guarded;             /* the span's last OS page is made inaccessible (RAMALLOC_GUARD_PAGES) */
  struct ra_page_s *next, *prev; /* page queue links (owner only) */
  uint64_t div_mul;            /* floor(2^64 / block_size) + 1: the block tests below */
  uint64_t free_lim;           /* capacity * _ra_block_step while flags are 0, else 0: free's fast path bound (below) */
  /* Second cache line: other threads' frees. Apart from the first, so that a thread freeing into
   * a page its owner is allocating from does not take the owner's line with every push (and the
   * owner's next allocation does not wait to take it back). */
  _Alignas(64) _Atomic(uintptr_t) xfree; /* blocks freed by other threads: count, list and ra_delay_t (RA_XFREE_*) */
  uint8_t _pad_remote[56];
} ra_page_t;

_Static_assert(sizeof(ra_page_t) == 128 && offsetof(ra_page_t, xfree) == 64,
               "a page descriptor is two cache lines, the owner's and the remote frees'");
_Static_assert(RA_SLICE_SIZE / RA_ALIGN <= UINT16_MAX, "block counts of a small page fit 16 bits");
_Static_assert((RA_MEDIUM_SLICES * RA_SLICE_SIZE) / (RA_SMALL_MAX + 1) <= UINT16_MAX, "and of a medium page");

/* Which offsets start a block, by one multiply. With s the block size, M = div_mul =
 * floor(2^64 / s) + 1 and e = s * M - 2^64 (_ra_block_step; 1 <= e <= s, and s * M = e mod 2^64),
 * an offset off = i * s + r (0 <= r < s) gives off * M = i * e + r * M mod 2^64, and that sum does
 * not wrap while off < M - e: r * M <= s * M - M = 2^64 - (M - e), and i * e <= i * s <= off. So
 * the product is i * e at a block's start (r = 0) and at least M anywhere else: "off starts block
 * i < n" is exactly "off * M mod 2^64 < n * e" when also n * e <= M. Block sizes run from RA_ALIGN
 * to RA_LARGE_MAX = 2^21, so M > 2^43, while offsets and n * e <= n * s stay within a chunk (2^22).
 * (Checked for every class and every offset of a head slice by test_edges.) The index i itself is
 * the high half of the 128-bit product, not needed so far. */
static inline uint64_t _ra_block_step(const ra_page_t *page) { return (uint64_t)page->block_size * page->div_mul; }
/* off * M mod 2^64: below _ra_block_lim(page, n) when off is the start of block i < n. */
static inline uint64_t _ra_block_mul(const ra_page_t *page, uint32_t off) { return off * page->div_mul; }
static inline uint64_t _ra_block_lim(const ra_page_t *page, uint32_t n) { return n * _ra_block_step(page); }
/* The same product for a pointer p into the head slice: its offset there is its low 16 bits.
 * Plain C: GCC and clang make it the two instructions it takes on x86-64 (movzwl, then imul
 * reading div_mul from memory), and free's compare reads free_lim from memory too. */
static inline uint64_t _ra_block_mul_at(const ra_page_t *page, const void *p) {
  _Static_assert(RA_SLICE_SHIFT == 16, "the offset in the slice is the pointer's low 16 bits");
  return _ra_block_mul(page, (uint16_t)(uintptr_t)p);
}
/* floor(2^64 / s) + 1, as (2^64 - s) / s = 2^64 / s - 1 exactly. */
static inline uint64_t _ra_block_div_mul(uint32_t block_size) {
  return (0 - (uint64_t)block_size) / block_size + 2;
}
static inline void _ra_page_set_divisor(ra_page_t *page, uint32_t block_size) {
  page->div_mul = _ra_block_div_mul(block_size);
}

/* Blocks at or past `capacity` were never carved, so never handed out: free() refuses them. Other
 * threads read it for that check; a thread holding a block of the page learnt of the block after
 * the owner carved it, so it reads a capacity that covers it. Relaxed atomics, plain moves on x86. */
static inline uint32_t _ra_page_capacity(const ra_page_t *page) {
  return __atomic_load_n(&page->capacity, __ATOMIC_RELAXED);
}
/* free_lim: free's fast path takes a pointer into an owned page when its _ra_block_mul_at is below
 * free_lim, so one compare stands for "no page flag set", "free_is_zero clear", "carved" and "the
 * start of a block". Only the owner writes it: 0 when it sets a flag (_ra_page_set_flag), and
 * _ra_block_lim(capacity) again when flags are back to 0 and it changes the capacity or clears a
 * flag itself; a flag another thread clears (the profiler's RA_PAGE_SAMPLED) leaves it 0, and the
 * owner's next free off the fast path puts it back (_ra_page_free_lim_sync). While free_is_zero is
 * set (blocks carved from fresh memory), the first free takes the generic path, which clears it:
 * the fast path never stores to it.
 * Invariant: free_lim is 0, or _ra_block_lim(capacity) with flags 0 and free_is_zero 0. */
static inline void _ra_page_free_lim_sync(ra_page_t *page) {
  bool fast = atomic_load_explicit(&page->flags, memory_order_relaxed) == 0 && !page->free_is_zero;
  page->free_lim = fast ? _ra_block_lim(page, page->capacity) : 0;
}
static inline void _ra_page_set_capacity(ra_page_t *page, uint32_t capacity) {
  __atomic_store_n(&page->capacity, (uint16_t)capacity, __ATOMIC_RELAXED);
  _ra_page_free_lim_sync(page);
}

/* ---- Chunks -------------------------------------------------------------------------------------- */

#define RA_CHUNK_MAGIC 0x6b6e7568636172ULL /* "rachunk" */

typedef enum ra_chunk_kind_e { RA_CHUNK_PAGES = 1, RA_CHUNK_HUGE = 2 } ra_chunk_kind_t;

/* The header at the start of every chunk (slice 0, committed whole while the chunk is in use).
 * Invariant: free_count == popcount(free_slices); free_slices never has bit 0; a slice is either
 * free or inside exactly one span; pages_in_use == number of span heads that are pages. */
struct ra_chunk_s {
  uint64_t magic;
  _Atomic(ra_heap_t *) heap;   /* owner; NULL when abandoned or huge */
  ra_arena_t *arena;
  uint32_t index;              /* chunk slot in the arena (slot 0 is the arena header) */
  uint32_t chunk_count;        /* chunks in this run (1 unless huge) */
  uint8_t kind;                /* ra_chunk_kind_t */
  uint8_t abandoned;           /* on the abandoned list (guarded by its lock) */
  _Atomic(uint8_t) lock;       /* guards the slice bitmaps below against a purging thread */
  uint8_t _pad;
  uint32_t free_count;
  uint64_t free_slices;        /* bit i: slice i is free (owner only) */
  uint64_t committed;          /* bit i: slice i is committed */
  uint64_t dirty;              /* bit i: slice i was used by a page since it was last decommitted */
  _Atomic(uint64_t) purge_slices; /* bit i: slice i is free and holds memory not yet purged */
  uint32_t pages_in_use;
  uint32_t _pad2;
  uint64_t noaccess;           /* bit i: slice i is made inaccessible, it held a freed large or huge
                                  block (RAMALLOC_PROTECT_FREED; lifted when the slice is reused) */
  ra_chunk_t *next, *prev;     /* heap's chunk lists, or the abandoned list */
  /* huge chunks only */
  uint8_t *huge_block;         /* the block handed out (may be past slice 1 when aligned) */
  size_t huge_size;            /* usable bytes from huge_block */
  size_t huge_committed;       /* bytes committed from the start of slice 1 */
  uint64_t slice_free_ms[RA_SLICES]; /* when each free slice was freed (monotonic ms) */
  ra_page_t pages[RA_SLICES + 1]; /* +1: a block aligned to a chunk boundary maps to index 64 */
};

#define RA_CHUNK_HEADER_SIZE (sizeof(ra_chunk_t))
_Static_assert(sizeof(ra_chunk_t) <= RA_SLICE_SIZE, "the chunk header fits slice 0");

static inline ra_chunk_t *_ra_chunk_of(const void *p) {
  return (ra_chunk_t *)(((uintptr_t)p - 1) & ~(uintptr_t)RA_CHUNK_MASK);
}
/* The chunk whose header holds a page descriptor. */
static inline ra_chunk_t *_ra_chunk_of_desc(const ra_page_t *pg) {
  return (ra_chunk_t *)((uintptr_t)pg & ~(uintptr_t)RA_CHUNK_MASK);
}
static inline size_t _ra_slice_index(const ra_chunk_t *c, const void *p) {
  return ((uintptr_t)p - (uintptr_t)c) >> RA_SLICE_SHIFT;
}
static inline uint8_t *_ra_page_start(const ra_chunk_t *c, const ra_page_t *pg) {
  return (uint8_t *)c + ((size_t)(pg - c->pages) << RA_SLICE_SHIFT);
}
static inline ra_page_t *_ra_page_of(ra_chunk_t *c, const void *p) {
  ra_page_t *pg = &c->pages[_ra_slice_index(c, p)];
  return pg - pg->slice_offset;
}

/* One call per run of set bits in a slice mask (one OS call per run: commit, decommit, reset,
 * protect): fn(c, first, count, arg) for each maximal run of slices [first, first + count), lowest
 * first. A nonzero return stops the walk and is returned; 0 when every call returned 0. */
typedef int (*ra_slice_run_fn)(ra_chunk_t *c, size_t first, size_t count, void *arg);
static inline int _ra_slice_runs(ra_chunk_t *c, uint64_t mask, ra_slice_run_fn fn, void *arg) {
  while (mask != 0) {
    size_t first = (size_t)__builtin_ctzll(mask);
    uint64_t rest = ~(mask >> first); /* zero bits from the run's end on (never 0 unless mask is all ones) */
    size_t count = rest == 0 ? RA_SLICES : (size_t)__builtin_ctzll(rest);
    int r = fn(c, first, count, arg);
    if (r != 0) return r;
    mask = first + count >= 64 ? 0 : mask & (~0ULL << (first + count));
  }
  return 0;
}

/* ---- Locks ------------------------------------------------------------------------------------- */

/* Lock order. A thread holding one of these takes only locks further down the list; a try-lock
 * may go against the order, since it never waits.
 *    1. init_lock (init.c): start-up, once; nothing of the allocator is locked under it.
 *    2. snap_lock (prof_posix.c): a layout dump holds it across its walk (arena, chunk locks).
 *       timeline_lock (timeline_posix.c): a timeline row holds it across ra_stats_get. Never nested
 *       in each other.
 *    2b. walk_lock (heap.c): each read of a walk (snapshot.c: the delayed lists gathered, a chunk
 *       read, a page read again) holds it, never a callback or output; the abandoning of a parked
 *       heap too, which only try-locks it, except a thread that waits it out holding nothing.
 *    3. heap_lock (heap.c): the lists of live and pooled heaps. _ra_heap_foreach callbacks take
 *       no lock.
 *    4. abandoned_lock (heap.c): the abandoned list. Nothing is locked under it.
 *    5. meta_lock, then arena_create_lock (arena.c): the metadata bump allocator, arena creation.
 *    6. arena->lock, by arena index when several are held (fork); a walk holding one arena's lock
 *       only try-locks another.
 *    7. chunk->lock (chunk.c, a spin lock): the owner while it changes the slice bitmaps, a purge
 *       pass or a walk under the arena lock. Held for a bounded step; under it only OS calls
 *       (mem.c: a commit over RAMALLOC_LIMIT fails, it does not purge).
 *    8. prof_lock (prof_posix.c): the sample tables; a leaf, taken on malloc and free with no
 *       other allocator lock held (and under snap_lock).
 * fork: init.c's one prepare handler takes 3, 4, 5, every arena lock (6), every published page
 * chunk's lock (7) and 8, in that order, and its parent and child handlers release them (the
 * child's also puts pages left in RA_DELAY_FREEING back to RA_DELAY_USE, _ra_chunk_fork_child).
 * Not held across fork: 1 and 2 (the child re-initialises snap_lock, timeline_lock and walk_lock:
 * a dump, a row or a walk under way in another thread does not exist there).
 *
 * Page delay states (ra_delay_t, the low bits of page->xfree): who moves a page from which state to
 * which.
 *    (span taken)   -> NONE     _ra_page_setup
 *    NONE  -> USE               the owner, moving a page without free blocks to the full queue
 *                               (page_to_full)
 *    USE   -> NONE              the owner: a remote free came in meanwhile (page_to_full), or the
 *                               page leaves the full queue (_ra_page_unfull)
 *    USE   -> FREEING -> NONE   a remote free (free_remote): it pushes the block on the owner
 *                               heap's delayed list between the two; the page stays in the full
 *                               queue until the owner collects that list
 *    NONE, USE -> NEVER         the owner at thread exit (heap_abandon), before its chunks are
 *                               abandoned; remote frees then go to xfree only
 *    NEVER -> NONE              the adopting heap (chunk_adopt, heap.c), the chunk off the list
 *    FREEING -> USE             a fork child, whose freeing thread does not exist
 * The owner never overwrites FREEING (_ra_page_set_delay yields until it ends), so a remote thread
 * in it may use the heap; other than adoption nothing leaves NEVER. Hence, for the owner: a page
 * outside the full queue is in NONE, and NEVER means its heap is abandoning or its chunk has no
 * owner (checked by _ra_page_queued_is_valid and _ra_chunk_is_valid). */

/* The allocator's own mutexes (ra_lock_t) and the rest of what the OS provides: prim.h. */

/* ---- Arenas -------------------------------------------------------------------------------------- */

#define RA_ARENA_MAGIC 0x616e657261726172ULL /* "rarenara" */

/* Invariant: a chunk slot is in exactly one of: free and decommitted, free and committed
 * (purgeable, with free_ms), in use. in_use and purgeable never share a bit. */
struct ra_arena_s {
  uint64_t magic;
  uint8_t *base;               /* the reservation; slot 0 holds this header */
  size_t size;                 /* bytes reserved */
  uint32_t index;              /* position in the arena registry */
  uint32_t chunk_slots;        /* slots including slot 0 */
  ra_lock_t lock;              /* guards the bitmaps and the meta area */
  size_t chunks_in_use;
  uint64_t *in_use;            /* bit i: slot i is in use (slot 0 always) */
  uint64_t *committed;         /* bit i: slot i has committed memory */
  uint64_t *purgeable;         /* bit i: slot i is free but still committed */
  uint64_t *free_ms;           /* per slot: when it became purgeable (monotonic ms) */
  size_t meta_start;           /* offset of the metadata area (heap structs) in slot 0 */
  size_t meta_used;            /* bytes handed out from it */
  size_t meta_committed;       /* bytes of slot 0 committed */
};

/* ---- Heaps --------------------------------------------------------------------------------------- */

typedef struct ra_page_queue_s {
  ra_page_t *first, *last;
} ra_page_queue_t;

/* One per thread. Only its thread touches it, except `delayed_free` (pushed to by others). */
struct ra_heap_s {
  ra_page_t *direct[RA_DIRECT_COUNT];      /* size -> first page of its class (8 KiB: no rounding on the fast path) */
  ra_page_queue_t queues[RA_CLASS_COUNT];  /* pages with (maybe) free blocks, per class */
  ra_page_queue_t full;                    /* pages without free blocks */
  _Atomic(ra_block_t *) delayed_free;      /* frees into full pages, from other threads */
  ra_chunk_t *chunks;                      /* owned chunks with free slices */
  ra_chunk_t *chunks_full;                 /* owned chunks without */
  ra_heap_t *next_all, *prev_all;          /* every live heap (heap lock) */
  ra_heap_t *next_pool;                    /* free heap structs, or parked heaps (heap lock) */
  uint32_t generation;                     /* bumped each time the struct is reused */
  uint32_t slow_calls;                     /* generic mallocs served from a page at hand */
  uint64_t next_page_purge_ms;             /* when to look at this heap's kept empty pages next */
  bool alive;
  atomic_bool parked;                      /* its thread exited; kept whole for the next new thread */
  uint8_t protect_backoff;                 /* RAMALLOC_PROTECT_FREED under churn (chunk.c): frees */
  uint8_t protect_skip;                    /* to skip after a quick reuse, how many are left, and */
  uint32_t clock_ms32;                     /* _ra_ms32 of this heap's last clock reading (0: none) */
  uint64_t protect_quick_ms;               /* when the last quick reuse was seen (protect_skip) */
  uint64_t parked_ms;                      /* when it was parked (heap lock) */
  uint16_t tag;                            /* its chunks' map entry, or RA_TAG_NONE (heap lock) */
};

/* The chunk map entry of a chunk owned by `heap` (NULL: none). */
static inline uint16_t _ra_heap_map_entry(const ra_heap_t *heap) {
  return heap == NULL || heap->tag == RA_TAG_NONE ? RA_MAP_UNOWNED : heap->tag;
}
#if !RA_HAS_THREAD_TAG
/* The calling thread's heap tag, where the platform keeps no copy of it (prim_windows.h). */
static inline uint16_t _ra_heap_tag_current(void) { return _ra_heap_current()->tag; }
#endif

/* ---- Options ------------------------------------------------------------------------------------- */

typedef enum ra_option_e {
  RA_OPT_VERBOSE,
  RA_OPT_ARENA_RESERVE,
  RA_OPT_COMMIT,         /* 0 auto, 1 overcommit, 2 protect */
  RA_OPT_PURGE_DELAY_MS, /* -1 never, 0 at once */
  RA_OPT_PURGE,          /* RA_PURGE_RESET or RA_PURGE_DECOMMIT */
  RA_OPT_PURGE_THREAD,
  RA_OPT_ON_ERROR,       /* RA_ON_ERROR_ABORT or RA_ON_ERROR_WARN */
  RA_OPT_LIMIT,          /* bytes, 0: no cap */
  RA_OPT_SHOW_STATS,     /* print the statistics at exit */
  RA_OPT_DUMP_LAYOUT,    /* string (_ra_option_str): layout dump file, written at exit */
  RA_OPT_DUMP_SIGNAL,    /* signal number asking for a layout dump while running; 0: none */
  RA_OPT_GUARD_PAGES,    /* an inaccessible OS page after every page and huge block */
  RA_OPT_PROTECT_FREED,  /* freed large and huge blocks up to this size inaccessible until reused */
  RA_OPT_PROFILE,        /* heap profiler: mean bytes between samples; 0: off */
  RA_OPT_PROFILE_FILE,   /* string: heap profile written at exit (and on RAMALLOC_DUMP_SIGNAL) */
  RA_OPT_LEAKS,          /* leak report at exit (turns the profiler on at the default rate) */
  RA_OPT_TIMELINE,       /* string: CSV file the timeline thread writes */
  RA_OPT_TIMELINE_MS,    /* milliseconds between timeline rows */
  RA_OPT_CANARY,         /* a canary ends every slot of a page: overflows and underflows reported */
  RA_OPT_SECURE,         /* every detection at once (options.c says which) */
  RA_OPT_COUNT
} ra_option_t;

enum { RA_COMMIT_OPT_AUTO = 0, RA_COMMIT_OPT_OVERCOMMIT = 1, RA_COMMIT_OPT_PROTECT = 2 };
enum { RA_PURGE_RESET = 0, RA_PURGE_DECOMMIT = 1 };
enum { RA_ON_ERROR_ABORT = 0, RA_ON_ERROR_WARN = 1 };

/* ---- Global statistics (exact; relaxed atomics, touched on slow paths only) ---------------------- */

typedef struct ra_counters_s {
  _Atomic(size_t) reserved, committed, committed_peak, purged;
  _Atomic(size_t) reserve_calls, commit_calls, decommit_calls, reset_calls, protect_calls, release_calls;
  _Atomic(size_t) commit_failures; /* commits refused: RAMALLOC_LIMIT, or the OS (alloc.c retries) */
} ra_counters_t;

/* ---- Cross-file prototypes, by defining file ----------------------------------------------------- */

/* options.c */
void _ra_options_init(void);
long long _ra_option(ra_option_t opt);
const char *_ra_option_str(ra_option_t opt); /* string options: the text, or NULL when unset */
void _ra_options_print(void);

/* fmt.c: formatting and writing without allocating. The format checks are GNU printf's (fmt.c has
 * its own formatter; RA_PRINTF_FORMAT, prim.h, names them for the compiler). */
size_t _ra_fmt(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(RA_PRINTF_FORMAT, 3, 4)));
void _ra_fmt_write(int fd, const char *fmt, ...) __attribute__((format(RA_PRINTF_FORMAT, 2, 3)));
void _ra_fmt_write_va(int fd, const char *fmt, va_list ap) __attribute__((format(RA_PRINTF_FORMAT, 2, 0)));

/* report.c: the verbose channel and the error reporter. */
void _ra_report_verbose(const char *fmt, ...) __attribute__((format(RA_PRINTF_FORMAT, 1, 2)));
/* Misuse of free or realloc, reported as "ramalloc: <what> 0x..." (docs/robustness.md has the
 * exact lines). These return only when RAMALLOC_ON_ERROR=warn; the caller then refuses the call. */
typedef enum ra_misuse_e {
  RA_MISUSE_DOUBLE_FREE, /* "double free of" / "realloc of a freed block" */
  RA_MISUSE_INTERIOR,    /* "<op> of an interior pointer" */
  RA_MISUSE_METADATA,    /* "<op> of a pointer into allocator metadata" */
  RA_MISUSE_FOREIGN,     /* "<op> of a pointer ramalloc did not hand out" */
} ra_misuse_t;
void _ra_report_misuse(bool is_realloc, ra_misuse_t kind, const void *p) RA_COLD;
/* ra_usable_size / malloc_usable_size of something that is not a live block:
 * "ramalloc: usable size of <a freed block | an interior pointer | ...> 0x..." (warn mode: 0). */
void _ra_report_misuse_usable(ra_misuse_t kind, const void *p) RA_COLD;
/* A sized free whose size (or alignment) cannot belong to the block:
 * "ramalloc: <op> of 0x... with the wrong size N" (", alignment A" for the aligned forms). */
typedef enum ra_sized_op_e {
  RA_SIZED_DELETE,       /* C++ sized operator delete (exact: the block came from operator new) */
  RA_SIZED_FREE,         /* C23 free_sized (the block may have been resized by realloc) */
  RA_SIZED_FREE_ALIGNED, /* C23 free_aligned_sized (exact: the block came from aligned_alloc) */
} ra_sized_op_t;
void _ra_report_misuse_size(ra_sized_op_t op, const void *p, size_t size, size_t align) RA_COLD;
void _ra_report_corrupt_list(const void *near) RA_COLD;
/* What the canary and zeroed-free-block checks found (secure.c), reported as "ramalloc: <what> 0x...". */
typedef enum ra_canary_misuse_e {
  RA_CANARY_OVERFLOW,   /* "heap overflow past the end of the block" (its own canary, at its free) */
  RA_CANARY_UNDERFLOW,  /* "heap underflow before the start of the block" (the canary before it, at its free) */
  RA_CANARY_FREE_BLOCK, /* "heap underflow or write after free into the end of the free block" (at hand-out) */
  RA_WRITE_AFTER_FREE,  /* "write after free into the block" (a zeroed free block, at hand-out) */
} ra_canary_misuse_t;
void _ra_report_misuse_canary(ra_canary_misuse_t kind, const void *block) RA_COLD;
void _ra_report_error(const char *what, const void *p) RA_COLD;
bool _ra_report_invariant(const char *what, const void *where) RA_COLD; /* reports, returns false */

/* mem.c: every OS call that reserves, commits, decommits, resets, protects or releases, with its
 * accounting; a commit over RAMALLOC_LIMIT fails (ENOMEM). The *_slices forms make one call per run
 * of a chunk's slices and keep its committed, dirty and noaccess bitmaps in step. */
extern ra_counters_t _ra_counters;
int _ra_mem_reserve(size_t size, size_t align, void **base);
void _ra_mem_release(void *base, size_t size);
int _ra_mem_commit(void *addr, size_t size);
int _ra_mem_decommit(void *addr, size_t size);
int _ra_mem_reset(void *addr, size_t size);
int _ra_mem_protect(void *addr, size_t size, ra_prot_t prot);
int _ra_mem_commit_slices(ra_chunk_t *chunk, uint64_t mask);
void _ra_mem_decommit_slices(ra_chunk_t *chunk, uint64_t mask);
void _ra_mem_reset_slices(ra_chunk_t *chunk, uint64_t mask);
uint64_t _ra_mem_protect_slices(ra_chunk_t *chunk, uint64_t mask, ra_prot_t prot); /* the slices changed */
void _ra_mem_unprotect_slices(ra_chunk_t *chunk, uint64_t mask); /* those of mask in chunk->noaccess */

/* arena.c: arenas (slot bitmaps), the chunk map, metadata memory */
extern _Atomic(uint16_t) _ra_chunk_map[RA_CHUNK_MAP_SIZE];
void _ra_arena_slot_purge(ra_arena_t *a, size_t slot, bool reset); /* a free committed slot; arena lock held */
ra_chunk_t *_ra_arena_chunk_alloc(size_t count, size_t align, bool clean, uint64_t *had, ra_arena_t **arena,
                                   size_t *index, bool *was_committed);
void _ra_arena_chunk_publish(ra_chunk_t *chunk); /* its map entry: its owner's (chunk->heap) */
void _ra_arena_chunk_unpublish(ra_chunk_t *chunk);
void _ra_arena_chunk_set_heap(ra_chunk_t *chunk, ra_heap_t *heap); /* a published chunk's owner */
void _ra_arena_chunk_free(ra_arena_t *arena, size_t index, size_t count, bool decommitted, uint64_t free_ms);
void _ra_arena_run_free(ra_arena_t *arena, size_t index, size_t count, size_t kept, uint64_t free_ms);
void *_ra_arena_meta_alloc(size_t size);
size_t _ra_arena_count(void);
ra_arena_t *_ra_arena_at(size_t i);
ra_arena_t *_ra_arena_containing(const void *p);
void _ra_arena_fork_prepare(void);
void _ra_arena_fork_release(void);
bool _ra_arena_is_valid(const ra_arena_t *a); /* arena lock held */
/* Does a chunk header start at chunk number n (address >> RA_CHUNK_SHIFT)? An entry per chunk
 * rather than a bit: the test is one compare, with no shift or mask. The map is bss: only the
 * pages of it that cover chunks in use are ever touched. */
static inline bool _ra_chunk_map_has_n(uintptr_t n) {
  if (RA_UNLIKELY(n >= RA_CHUNK_MAP_SIZE)) return false;
#if defined(__x86_64__) && defined(__GNUC__)
  /* One compare with the entry in memory (the compilers load it into a register and test it): x86
   * keeps loads in order, so a plain load and a compiler barrier make the acquire. */
  bool has;
  __asm__("cmpw $0, %1" : "=@ccnz"(has) : "m"(_ra_chunk_map[n]));
  atomic_signal_fence(memory_order_acquire);
  return has;
#else
  return atomic_load_explicit(&_ra_chunk_map[n], memory_order_acquire) != 0;
#endif
}
/* Is chunk number n the calling thread's heap's (free's fast paths)? Its entry is the thread's tag
 * only when that heap owns it: an entry is set to a tag only by the thread of the heap holding it
 * (or, for a parked heap taken over, before the hand-over under the heap lock), and a tag is given
 * back only once no entry holds it (heap.c). So a relaxed load is enough. */
static inline bool _ra_chunk_map_mine_n(uintptr_t n) {
  if (RA_UNLIKELY(n >= RA_CHUNK_MAP_SIZE)) return false;
  uint16_t tag = _ra_heap_tag_current();
#if defined(__x86_64__) && defined(__GNUC__)
  bool mine; /* one compare with the entry in memory, as above */
  __asm__("cmpw %2, %1" : "=@ccz"(mine) : "m"(_ra_chunk_map[n]), "r"(tag));
  return mine;
#else
  return atomic_load_explicit(&_ra_chunk_map[n], memory_order_relaxed) == tag;
#endif
}
static inline bool _ra_chunk_map_has(uintptr_t chunk_addr) {
  return _ra_chunk_map_has_n(chunk_addr >> RA_CHUNK_SHIFT);
}

/* chunk.c: chunks of pages as slices: spans taken and given back, the chunk lock, and giving back
 * free slots and slices (when, and how, purge.c says) */
ra_chunk_t *_ra_chunk_new(ra_heap_t *heap);
ra_page_t *_ra_chunk_span_take(ra_heap_t *heap, ra_chunk_t *chunk, size_t slices, bool warm);
void _ra_chunk_span_free(ra_heap_t *heap, ra_chunk_t *chunk, ra_page_t *page, uint64_t free_since);
int _ra_chunk_commit_slices(ra_chunk_t *chunk, size_t first, size_t count);
bool _ra_chunk_purge_free(uint64_t now, uint64_t age, bool force, bool reset); /* true: some left */
void _ra_chunk_list_remove(ra_chunk_t **list, ra_chunk_t *c);
void _ra_chunk_list_push(ra_chunk_t **list, ra_chunk_t *c);
void _ra_chunk_lock(ra_chunk_t *chunk);
bool _ra_chunk_trylock(ra_chunk_t *chunk);
void _ra_chunk_unlock(ra_chunk_t *chunk);
void _ra_chunk_fork_lock_all(void);   /* every arena lock held */
void _ra_chunk_fork_unlock_all(void); /* parent */
void _ra_chunk_fork_child(void);      /* child: unlocks too */
/* The chunk's own invariants (internal.h), for `owner` (NULL: abandoned, or swept); its pages':
 * _ra_page_chunk_check. The caller owns the chunk and holds its lock; _ra_chunk_check takes the
 * lock itself. */
bool _ra_chunk_is_valid(const ra_chunk_t *c, const ra_heap_t *owner);
bool _ra_chunk_check(ra_chunk_t *c, const ra_heap_t *owner);

/* huge.c: blocks above RA_LARGE_MAX, each in a run of chunks of its own */
void *_ra_huge_alloc(size_t size, size_t align, bool *is_zero);
void _ra_huge_free(ra_chunk_t *chunk);
bool _ra_huge_resize(ra_chunk_t *chunk, size_t size);

/* page.c: carving, collecting, queues, and the cross-thread free state */
extern ra_page_t _ra_page_empty;
extern const uint32_t _ra_class_size[RA_CLASS_COUNT];
extern const uint8_t _ra_direct_class[RA_DIRECT_COUNT]; /* size -> _ra_size_class(size) */
size_t _ra_page_class_slices(size_t class_idx);
int _ra_page_setup(ra_heap_t *heap, ra_page_t *page, size_t class_idx);
int _ra_page_extend(ra_page_t *page);
void _ra_page_collect(ra_page_t *page);
size_t _ra_page_collect_xfree(ra_page_t *page);
void _ra_page_queue_push(ra_heap_t *heap, ra_page_t *page);
void _ra_page_queue_remove(ra_heap_t *heap, ra_page_t *page);
ra_page_t *_ra_page_queue_find(ra_heap_t *heap, size_t class_idx); /* &_ra_page_empty: none */
void _ra_page_unfull(ra_heap_t *heap, ra_page_t *page, bool remote);
void _ra_page_set_delay(ra_page_t *page, ra_delay_t state, bool override_never);
void _ra_page_retire(ra_heap_t *heap, ra_page_t *page);
void _ra_page_free(ra_heap_t *heap, ra_page_t *page);
void _ra_page_free_since(ra_heap_t *heap, ra_page_t *page, uint64_t free_since);
void _ra_page_set_flag(ra_page_t *page, uint8_t flag, bool on);
/* The page's own invariants (its free list walked with `walk`), then its place in its owner's
 * queues: links, the IN_FULL flag, the delay state (RA_DELAY_NEVER throughout while `abandoning`)
 * and direct[]. Owner only. */
bool _ra_page_is_valid(const ra_page_t *page, bool walk);
bool _ra_page_queued_is_valid(const ra_heap_t *heap, const ra_page_t *page, bool abandoning);
/* A chunk's invariants and each of its pages' (free lists walked with `walk`), under its lock. */
bool _ra_page_chunk_check(ra_chunk_t *c, const ra_heap_t *owner, bool walk);
/* A block of an owned page freed by the owner off the fast path (free.c, `remote` false), or one
 * another thread freed, taken from the heap's delayed list (`remote` true): full pages come back to
 * their queue (_ra_page_unfull says where), empty ones retire. Inline: free's generic path. */
static inline void _ra_page_free_block(ra_heap_t *heap, ra_page_t *page, ra_block_t *block, bool remote) {
  ra_assert_internal((size_t)((uint8_t *)block - _ra_page_start(_ra_chunk_of_desc(page), page)) / page->block_size <
                     page->capacity);
  _ra_block_set_next(block, page->free);
  page->free = block;
  page->free_is_zero = 0;
  page->used--;
  if (atomic_load_explicit(&page->flags, memory_order_relaxed) & RA_PAGE_IN_FULL) _ra_page_unfull(heap, page, remote);
  else _ra_page_free_lim_sync(page); /* free_is_zero just cleared, or a flag another thread cleared */
  if (page->used == 0) _ra_page_retire(heap, page);
}

/* init.c: process start-up, fork, thread exit and exit. _ra_init: the settings, once per process
 * before the first heap (from the first malloc, ra_collect, or init.c's constructor, whichever comes
 * first; allocates nothing). */
extern bool _ra_commit_whole_chunks; /* set once at initialisation */
extern bool _ra_guard_pages;         /* RAMALLOC_GUARD_PAGES, set once at initialisation */
extern size_t _ra_protect_freed;     /* RAMALLOC_PROTECT_FREED (largest block protected; 0: off), set once */
void _ra_init(void);

/* heap.c: thread heaps, where a heap finds a page, abandoned chunks and their adoption */
extern ra_heap_t _ra_heap_empty;
extern size_t _ra_heap_tag_last; /* the highest heap tag handed out (RA_TAG_LAST; a test lowers it) */
ra_heap_t *_ra_heap_get_slow(void);
ra_page_t *_ra_heap_page_new(ra_heap_t *heap, size_t class_idx);
/* A page of class `class_idx` with a free block, at the front of its queue; NULL when out of
 * memory: a page of the queue (_ra_page_queue_find), else a new page on a span, found in the order
 * span_find (heap.c) gives. Inline: allocation's generic path. */
static inline ra_page_t *_ra_heap_find_page(ra_heap_t *heap, size_t class_idx) {
  ra_page_t *page = _ra_page_queue_find(heap, class_idx);
  return RA_LIKELY(page != &_ra_page_empty) ? page : _ra_heap_page_new(heap, class_idx);
}
void _ra_heap_sweep_abandoned(void);
typedef enum ra_heap_exit_e { RA_HEAP_EXIT_NONE, RA_HEAP_EXIT_PARKED, RA_HEAP_EXIT_RETIRED, RA_HEAP_EXIT_LAST } ra_heap_exit_t;
ra_heap_exit_t _ra_heap_thread_exit(ra_heap_t *heap); /* RETIRED: abandoned; LAST: the parked ones too */
void _ra_heap_collect_delayed(ra_heap_t *heap);
/* Could `next`, read from a heap's delayed list (blocks of many chunks, ending in NULL), be a
 * block? Only past the header slice of a published chunk of pages: an address in a header (a
 * chunk's base, which ends a page's own list, or its fields and descriptors), in a huge block or in
 * no chunk is a corrupted link, which the walks of the list report or stop at. */
static inline bool _ra_heap_delayed_link_ok(const ra_block_t *next) {
  uintptr_t u = (uintptr_t)next;
  if (!_ra_chunk_map_has_n(u >> RA_CHUNK_SHIFT) || (u & RA_CHUNK_MASK) < RA_SLICE_SIZE) return false;
  return ((const ra_chunk_t *)(u & ~(uintptr_t)RA_CHUNK_MASK))->kind == RA_CHUNK_PAGES;
}
size_t _ra_heap_live(void); /* threads with a heap */
bool _ra_heap_reap_parked(uint64_t now, uint64_t delay, bool force);
void _ra_heap_note_free(ra_heap_t *owner); /* a thread without a heap frees a block of owner's */
void _ra_heap_walk_lock(void);                  /* held across each read of a walk (snapshot.c) */
void _ra_heap_walk_unlock(void);
void _ra_heap_fork_prepare(void);      /* init.c's fork handlers: the heap list, the abandoned list */
void _ra_heap_fork_release(void);
void _ra_heap_fork_child(void);
void _ra_heap_foreach(void (*fn)(ra_heap_t *heap, void *arg), void *arg);
/* The heap's invariants: its chunk lists, each chunk (_ra_page_chunk_check), its page queues and
 * direct[]. Owner only. RA_HEAP_AT_REST (the validator: no other thread frees into the heap now)
 * also walks every free list, wants no delayed free in flight and every empty page retired. */
typedef enum ra_heap_check_e { RA_HEAP_LIVE, RA_HEAP_AT_REST, RA_HEAP_ABANDONING } ra_heap_check_t;
bool _ra_heap_is_valid(const ra_heap_t *heap, ra_heap_check_t how);
bool _ra_heap_validate(void); /* the calling thread's heap, at rest */

/* purge.c: giving free memory back after a delay, and the background purger. Every purge decision
 * is purge's: the delay, reset or decommit, pressure, the passes, the retry after a refused
 * commit. The layers below it (mem.c to heap.c) call none of purge.c: they ask the policy and ring
 * the purger through the inline functions below, which read options and atomics only, and give
 * back free memory when purge.c calls them to, with its age and mode as arguments. */
void _ra_purge_maybe(ra_heap_t *heap);
void _ra_purge_heap_pages(ra_heap_t *heap, uint64_t now, uint64_t delay, bool force);
void _ra_purge_collect(bool force);
bool _ra_purge_for_retry(size_t failures_before);
void _ra_purge_thread_exit(bool last);
void _ra_purge_init(void);
/* The purge delay in ms (RAMALLOC_PURGE_DELAY_MS; -1: never, 0: at once): read here only. */
static inline long long _ra_purge_delay(void) { return _ra_option(RA_OPT_PURGE_DELAY_MS); }
/* Slices are reset rather than decommitted when asked to (unless RAMALLOC_LIMIT caps the commit
 * charge, which a reset keeps), and when whole chunks are committed at once (decommitting a slice
 * there would split the chunk's mapping). */
static inline bool _ra_purge_reset_only(void) {
  return (_ra_option(RA_OPT_PURGE) == RA_PURGE_RESET && _ra_option(RA_OPT_LIMIT) == 0) || _ra_commit_whole_chunks;
}
/* The background purger's state; a safe point (nothing held, nothing half-done) starts it when it
 * is wanted and not running yet: one load and a branch on the paths that check. */
enum { RA_PURGER_IDLE = 0, RA_PURGER_WANTED = 1, RA_PURGER_RUNNING = 2, RA_PURGER_EXITING = 3, RA_PURGER_OFF = 4 };
extern _Atomic(int) _ra_purger_state;
extern atomic_bool _ra_purger_pending;   /* free memory waits for a purge pass */
extern _Atomic(uint32_t) _ra_purger_word; /* the futex word the purger sleeps on */
extern _Atomic(uint64_t) _ra_purge_pressure_next_ms;
/* Something became free that a later pass should purge. Cheap when a pass is pending already; a
 * futex wake only when the purger sleeps without a timer, and asked to start (at the next safe
 * point) when it is not running. Called on slow paths, under any lock. Not inlined (each file that
 * calls it has its own copy): a call, as on the remote-free path before it moved here. */
static __attribute__((noinline, unused)) void _ra_purge_notify(void) {
  if (atomic_load_explicit(&_ra_purger_pending, memory_order_relaxed)) return;
  if (atomic_exchange_explicit(&_ra_purger_pending, true, memory_order_acq_rel)) return;
  int st = atomic_load_explicit(&_ra_purger_state, memory_order_acquire);
  if (st == RA_PURGER_RUNNING) {
    atomic_fetch_add_explicit(&_ra_purger_word, 1, memory_order_release);
    _ra_thread_wake(&_ra_purger_word);
  } else if (st == RA_PURGER_IDLE) {
    atomic_compare_exchange_strong_explicit(&_ra_purger_state, &st, RA_PURGER_WANTED, memory_order_acq_rel,
                                            memory_order_relaxed);
  }
}
/* Fresh memory is about to be committed (a span of slices no page used lately, a huge run): free
 * memory that has already waited a quarter of the delay is not being reused, so it goes back now
 * rather than sit beside the new memory until the full delay. At most one such pass per eighth of
 * the delay (one global timestamp, like _ra_purge_maybe's). */
static __attribute__((noinline, unused)) void _ra_purge_pressure(void) {
  long long delay = _ra_purge_delay();
  if (delay < 8) return; /* short delays purge soon enough; -1 never purges */
  uint64_t now = _ra_now_ms();
  uint64_t next = atomic_load_explicit(&_ra_purge_pressure_next_ms, memory_order_relaxed);
  if (now < next) return;
  if (!atomic_compare_exchange_strong_explicit(&_ra_purge_pressure_next_ms, &next, now + (uint64_t)delay / 8,
                                               memory_order_relaxed, memory_order_relaxed))
    return;
  _ra_chunk_purge_free(now, (uint64_t)delay / 4, false, _ra_purge_reset_only());
}
void _ra_purge_start(void);
static inline void _ra_purge_start_wanted(void) {
  if (RA_UNLIKELY(atomic_load_explicit(&_ra_purger_state, memory_order_relaxed) == RA_PURGER_WANTED)) _ra_purge_start();
}
void _ra_purge_stop(void);
void _ra_purge_fork_child(void);

/* inspect.c: the layout dump (JSON) and what the options do at exit (the dump file name: %p, and
 * .n for the n-th signal dump) */
void _ra_inspect_dump_configured(unsigned serial, const char *reason);
void _ra_inspect_at_exit(int stats_fd); /* RAMALLOC_SHOW_STATS to stats_fd, RAMALLOC_DUMP_LAYOUT */

/* inspect_posix.c / inspect_windows.c, from init.c: at load the copy of stderr for
 * RAMALLOC_SHOW_STATS and the RAMALLOC_DUMP_SIGNAL dumper thread (POSIX); at exit the statistics
 * and the layout dump; in a fork's child, the dumper's pipe dropped. */
void _ra_inspect_start(void);
void _ra_inspect_end(void);
void _ra_inspect_fork_child(void); /* with RA_HAS_FORK */

/* prof_posix.c: the sampling heap profiler (docs/profiling.md). POSIX only; on Windows the hooks
 * compile to nothing. _ra_prof_route is set once, at initialisation, before any heap exists, and
 * _ra_direct_bound with it: while it is set, malloc and calloc leave their fast paths at once for
 * _ra_alloc_generic, which runs a copy of the fast path and the per-thread byte countdown. A
 * sampled block's page carries RA_PAGE_SAMPLED, which sends its frees to _ra_free_generic, where
 * the sample is dropped. */
#define RA_PROF_DEFAULT_RATE ((size_t)512 << 10)
#if !RA_HAS_PROFILER
#define _ra_prof_route false
static inline void _ra_prof_note(void *p, size_t size) { (void)p; (void)size; }
static inline void _ra_prof_free(void *block) { (void)block; }
static inline void _ra_prof_init(void) {}
static inline void _ra_prof_start(void) {}
static inline void _ra_prof_end(void) {}
static inline void _ra_timeline_start(void) {}
static inline void _ra_timeline_end(void) {}
static inline bool _ra_prof_sites_begin(void) { return false; }
static inline void _ra_prof_sites_end(void) {}
static inline uint32_t _ra_prof_range_site(uintptr_t lo, uintptr_t hi, size_t *bytes) {
  (void)lo;
  (void)hi;
  *bytes = 0;
  return UINT32_MAX;
}
static inline void _ra_prof_sites_json(void (*emit)(void *arg, const char *text), void *arg) {
  (void)emit;
  (void)arg;
}
#else
extern bool _ra_prof_route;
extern __thread int64_t _ra_prof_countdown __attribute__((tls_model(RA_TLS_MODEL)));
void _ra_prof_init(void);                    /* from _ra_init: sets _ra_prof_route */
void _ra_prof_start(void);                   /* init.c, at load: the tables and the unwinder */
void _ra_prof_end(void);                     /* init.c, at exit: the profile file, the leak report */
void _ra_prof_fork_prepare(void);            /* init.c's fork handlers: prof_lock */
void _ra_prof_fork_parent(void);
void _ra_prof_fork_child(void);
/* timeline_posix.c (RAMALLOC_TIMELINE), from init.c: its thread at load, a last row at exit; a
 * fork's child has no timeline. */
void _ra_timeline_start(void);
void _ra_timeline_end(void);
void _ra_timeline_fork_child(void);
void _ra_prof_sample(void *p, size_t size);  /* the countdown crossed zero */
void _ra_prof_free(void *block);             /* a block of a sampled page, or a huge block, is freed */
void _ra_prof_dump_configured(unsigned serial);
/* For the layout dump: a snapshot of the live samples (false: profiler off), then per address range
 * the site (stack id) holding most of its sampled bytes (UINT32_MAX: none), and the sites as JSON. */
bool _ra_prof_sites_begin(void);
void _ra_prof_sites_end(void);
uint32_t _ra_prof_range_site(uintptr_t lo, uintptr_t hi, size_t *bytes);
void _ra_prof_sites_json(void (*emit)(void *arg, const char *text), void *arg);
/* Count `size` bytes against the calling thread's countdown (an allocation just made at p). */
static inline void _ra_prof_note(void *p, size_t size) {
  if ((_ra_prof_countdown -= (int64_t)size) < 0) _ra_prof_sample(p, size);
}
#endif

/* secure.c: RAMALLOC_CANARY and the zeroed free blocks of RAMALLOC_SECURE (docs/robustness.md,
 * "Canaries"). With the canary on, the last RA_CANARY_SIZE bytes of every slot of every page hold a
 * per-process secret mixed with their address, written when the slot is carved and never again;
 * the usable size stops before them. Such pages carry RA_PAGE_CANARY, which sends every free to
 * _ra_free_generic, and heap->direct[] stays on the empty page (page.c), which sends every
 * allocation to _ra_alloc_generic: the fast paths are the same instructions with the option off. */
#define RA_CANARY_SIZE 8
extern bool _ra_canary;      /* RAMALLOC_CANARY, set once at initialisation */
extern bool _ra_zero_freed;  /* RAMALLOC_SECURE: small and medium blocks are zeroed at free and checked at reuse */
void _ra_secure_init(void);
void _ra_secure_carve(ra_page_t *page, uint8_t *first, size_t n);
bool _ra_secure_handout(void *p, size_t size, bool zero);
bool _ra_secure_free(ra_page_t *page, ra_block_t *block);
/* The bytes a request of `size` takes from a slot (the class is chosen for this many). */
static inline size_t _ra_canary_room(size_t size) {
  return RA_UNLIKELY(_ra_canary) && size <= RA_LARGE_MAX ? size + RA_CANARY_SIZE : size;
}
/* The end of a page block's usable bytes. */
static inline uint8_t *_ra_block_end(const ra_page_t *page, const void *block) {
  size_t canary = (atomic_load_explicit(&page->flags, memory_order_relaxed) & RA_PAGE_CANARY) ? RA_CANARY_SIZE : 0;
  return (uint8_t *)block + page->block_size - canary;
}

/* alloc.c */
extern size_t _ra_direct_bound; /* the fast paths serve sizes below it; 0 while the profiler is on */
void *_ra_alloc_generic(size_t size, ra_heap_t *heap, bool zero); /* size first: ra_malloc's own register */
void _ra_alloc_list_corrupted(ra_page_t *page, ra_block_t *b);
void *_ra_alloc_pop_corrupted(ra_page_t *page, ra_block_t *b); /* the above, then a block from the generic path */

/* Take the first free block of a page. Its link word is cleared: the program never sees an encoded
 * pointer, and a block freed without being written to does not look like a free one. A link that
 * leaves the chunk goes to `corrupted` (a tail call, so that the fast paths save no registers),
 * which calls _ra_alloc_list_corrupted, then finds a block elsewhere. */
static inline void *_ra_page_pop(ra_page_t *page, ra_block_t *b, void *(*corrupted)(ra_page_t *, ra_block_t *)) {
  ra_block_t *next;
  if (RA_CHECKS) {
    /* The link xor the key is next ^ b: below the chunk size for a successor in the chunk or the
     * marker ending the list (one compare on the common path), b itself for a list ending in NULL
     * (a remote list taken whole). Another chunk's base, or any address out of b's chunk, fails. */
    uintptr_t x = ra_word_load(&b->link) ^ _ra_key;
    if (RA_UNLIKELY(x > RA_CHUNK_MASK && x != (uintptr_t)b)) return corrupted(page, b);
    next = (ra_block_t *)((uintptr_t)b ^ x);
  } else {
    next = _ra_block_next(b);
  }
  page->free = next;
  page->used++;
  _ra_block_clear(b);
  return b;
}

/* malloc's fast path, also operator new's (override_cxx.c), each with its own ways out: `slow`
 * when no block is at hand (or the size is past the direct table), `corrupted` as above. Inlined
 * into each with the two functions known, so both are direct tail calls. */
static inline __attribute__((always_inline)) void *
_ra_malloc_fast(size_t size, void *(*slow)(size_t, ra_heap_t *, bool),
                void *(*corrupted)(ra_page_t *, ra_block_t *)) {
  ra_heap_t *heap = _ra_heap_current();
  if (RA_LIKELY(size < _ra_direct_bound)) {
    ra_page_t *page = heap->direct[size];
    ra_block_t *b = page->free;
#if defined(__x86_64__) && defined(__GNUC__)
    /* b where the return value goes: the compilers otherwise keep it elsewhere and move it there
     * at the end (one instruction more). */
    __asm__("" : "+a"(b));
#endif
    if (RA_LIKELY(!_ra_list_end(b))) { /* NULL, or the marker ending the page's list */
      void *p = _ra_page_pop(page, b, corrupted);
      RA_ANN_ALLOC(p, size, page->block_size, false);
      return p;
    }
  }
  return slow(size, heap, false);
}

/* free.c */
void _ra_free_generic(void *p);
bool _ra_free_block_for(const void *p, bool is_realloc, ra_chunk_t **chunk, ra_page_t **page, ra_block_t **block);
void *_ra_free_block_start(ra_chunk_t *chunk, ra_page_t *page, const void *p);
size_t _ra_free_usable_size(const void *p, bool *ok);
void _ra_free_sized(void *p, size_t size, size_t align, ra_sized_op_t op);
void _ra_free_sized_slow(void *p, size_t size, size_t align, ra_sized_op_t op);
void _ra_free_retire(ra_page_t *page);

/* The descriptor of the slice p is in, for the fast paths: the slice number within the chunk is
 * bits 16..21 of p. (A pointer at the chunk's very end, which _ra_slice_index maps to the extra
 * descriptor 64, finds the header slice's descriptor, 0: both have free_lim 0.) */
static inline ra_page_t *_ra_fast_page_of(ra_chunk_t *chunk, const void *p) {
  _Static_assert(sizeof(ra_page_t) == 128, "the shift below multiplies by the descriptor size");
  uintptr_t at = ((uintptr_t)p >> (RA_SLICE_SHIFT - 7)) & ((RA_SLICES - 1) << 7);
  return (ra_page_t *)((uint8_t *)chunk->pages + at);
}

/* The page of p when p is a block free's fast path may take: the start of a block of a plain page
 * (no flag set) of the calling thread's heap, whose first word does not look like a free list's
 * link; else NULL (p may still be a valid block: the generic paths decide). ra_free's tests, also
 * ra_realloc's, which then knows the block's usable size without the generic lookup.
 *
 * The chunk of p itself, not of p - 1 as _ra_chunk_of has it: the two differ only for p on a
 * chunk boundary, which is never a block of a page (that slice is a header) and finds free_lim 0
 * in the header's descriptor, or no chunk. NULL finds no chunk. One compare says both that p is
 * in a chunk and that the calling thread's heap owns it (the chunk map holds the owner's tag): the
 * chunk header is not read. */
static inline __attribute__((always_inline)) ra_page_t *_ra_fast_owned_page(void *p) {
  uintptr_t n = (uintptr_t)p >> RA_CHUNK_SHIFT;
  if (RA_UNLIKELY(!_ra_chunk_map_mine_n(n))) return NULL;
  /* The slice's own descriptor: a pointer past the first slice of a multi-slice page finds
   * free_lim 0 there (RA_PAGE_NOT_PAGE) and takes the generic path, which walks back to the head. */
#if defined(__x86_64__) && defined(__GNUC__)
  /* The compilers would compute the chunk from p again (a move and an and) instead of shifting n
   * back (one shift): hiding where n comes from makes them shift. */
  __asm__("" : "+r"(n));
#endif
  ra_chunk_t *chunk = (ra_chunk_t *)(n << RA_CHUNK_SHIFT);
  ra_page_t *page = _ra_fast_page_of(chunk, p);
  /* The offset in the head slice times div_mul: below free_lim when no page flag is set and it
   * is a whole number of blocks (no interior pointer) inside the part the page has carved (a block
   * past it was never handed out). free_lim is read as a plain field: the calling thread owns the
   * page. */
  if (RA_LIKELY(_ra_block_mul_at(page, p) < page->free_lim && !_ra_block_looks_free(p))) return page;
  return NULL;
}

/* free's fast path: ra_free's body, inlined into free and operator delete too (override.c,
 * override_cxx.c), so that they need no jump to ra_free. */
static inline __attribute__((always_inline)) void _ra_free_fast(void *p) {
  RA_ANN_FREE_ENTRY(p);
  ra_page_t *page = _ra_fast_owned_page(p);
  if (RA_LIKELY(page != NULL)) {
    ra_block_t *b = p;
    RA_ANN_FREE_BLOCK(b, page->block_size);
    _ra_block_set_next(b, page->free);
    page->free = b; /* free_is_zero is 0 already: free_lim would be 0 otherwise */
    if (RA_UNLIKELY(--page->used == 0)) _ra_free_retire(page);
    return;
  }
  _ra_free_generic(p);
}

/* Free p, which the caller says was allocated for `size` bytes aligned to `align` (0: unaligned).
 * The fast path, for sizes up to RA_DIRECT_MAX, is ra_free's (the same conditions, in the same
 * order: keep the two in step), with one more: the size's class, by table, is the page's (free_lim
 * is not 0 only for a plain page, whose class_idx is its own). The size saves nothing there, but
 * one lookup of the chunk and page serves both the check and the free. Bigger sizes are checked
 * by _ra_free_sized_slow (free.c), then freed by ra_free. Inlined into the sized frees of free.c
 * and into sized delete (override_cxx.c). */
static inline __attribute__((always_inline)) void
_ra_free_sized_fast(void *p, size_t size, size_t align, ra_sized_op_t op) {
  uintptr_t n = (uintptr_t)p >> RA_CHUNK_SHIFT; /* p's own chunk, as in ra_free */
  if (RA_LIKELY(size <= RA_DIRECT_MAX && align <= RA_ALIGN && _ra_chunk_map_mine_n(n))) {
#if defined(__x86_64__) && defined(__GNUC__)
    __asm__("" : "+r"(n)); /* as in ra_free */
#endif
    ra_chunk_t *chunk = (ra_chunk_t *)(n << RA_CHUNK_SHIFT);
    ra_page_t *page = _ra_fast_page_of(chunk, p);
    ra_block_t *b = p;
    if (RA_LIKELY(_ra_block_mul_at(page, p) < page->free_lim &&
                  _ra_direct_class[size] == page->class_idx &&
                  !_ra_block_looks_free(b))) {
      RA_ANN_FREE_ENTRY(p);
      RA_ANN_FREE_BLOCK(b, page->block_size);
      _ra_block_set_next(b, page->free);
      page->free = b; /* free_is_zero is 0 already, as in ra_free */
      if (RA_UNLIKELY(--page->used == 0)) _ra_free_retire(page);
      return;
    }
  }
  _ra_free_sized_slow(p, size, align, op);
}

/* ---- Small inline helpers ------------------------------------------------------------------------ */

/* Size class of a request (size >= 1 and <= RA_LARGE_MAX; 0 is treated as 1). */
static inline size_t _ra_size_class(size_t size) {
  if (size <= 128) return size <= 16 ? 0 : (size - 1) >> 4;
  size_t s = size - 1;
  unsigned b = 63u - (unsigned)__builtin_clzll(s); /* 2^b <= s < 2^(b+1), b >= 7 */
  return 8 + (size_t)(b - 7) * 8 + ((s >> (b - 3)) & 7);
}

static inline size_t _ra_align_up(size_t n, size_t a) { return (n + a - 1) & ~(a - 1); }

/* Millisecond times kept in 32 bits (page descriptors): wrap-around is fine for ages below 24 days. */
static inline uint32_t _ra_ms32(uint64_t ms) { return (uint32_t)ms | 1; }
static inline uint64_t _ra_ms_from32(uint64_t now, uint32_t t) { return now - (uint32_t)((uint32_t)now - t); }

RA_HIDDEN_END

#endif /* RAMALLOC_INTERNAL_H */
