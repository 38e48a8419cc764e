/* Arenas: large reservations carved into chunk slots. Slot 0 of each arena holds the arena header,
 * its bitmaps and the metadata area (heap structs); slots 1.. are chunks. Also here: the chunk map
 * (an entry per 4 MiB of address space: "a chunk header starts here", and whose). The OS calls go through
 * mem.c; when a free slot is given back is purge.c's decision.
 *
 * Slot 0 layout (offsets from the arena base):
 *   0                       struct ra_arena_s
 *   sizeof(ra_arena_t)      in_use[words] | committed[words] | purgeable[words] | free_ms[slots]
 *   meta_start (64-aligned) heap structs, bump-allocated, committed 64 KiB at a time
 *   RA_CHUNK_SIZE           chunk 1 */
#include <errno.h>
#include <string.h>

#include "internal.h"

_Atomic(uint16_t) _ra_chunk_map[RA_CHUNK_MAP_SIZE];

static ra_arena_t *_Atomic arenas[RA_MAX_ARENAS];
static atomic_size_t arena_count;
static ra_lock_t arena_create_lock = RA_LOCK_INIT;
static ra_lock_t meta_lock = RA_LOCK_INIT;
static size_t meta_arena; /* index of the arena whose slot 0 serves metadata now (meta_lock) */

/* ---- Bitmaps -------------------------------------------------------------------------------------- */

static inline bool bit_get(const uint64_t *map, size_t i) { return (map[i >> 6] >> (i & 63)) & 1; }
static inline void bit_set(uint64_t *map, size_t i) { map[i >> 6] |= 1ULL << (i & 63); }
static inline void bit_clear(uint64_t *map, size_t i) { map[i >> 6] &= ~(1ULL << (i & 63)); }

static void chunk_map_set(uintptr_t chunk_addr, uint16_t entry) {
  uintptr_t n = chunk_addr >> RA_CHUNK_SHIFT;
  if (n >= RA_CHUNK_MAP_SIZE) return;
  atomic_store_explicit(&_ra_chunk_map[n], entry, memory_order_release);
}

/* ---- Registry ------------------------------------------------------------------------------------- */

size_t _ra_arena_count(void) { return atomic_load_explicit(&arena_count, memory_order_acquire); }
ra_arena_t *_ra_arena_at(size_t i) { return atomic_load_explicit(&arenas[i], memory_order_acquire); }

ra_arena_t *_ra_arena_containing(const void *p) {
  uintptr_t u = (uintptr_t)p;
  size_t n = _ra_arena_count();
  for (size_t i = 0; i < n; i++) {
    ra_arena_t *a = _ra_arena_at(i);
    if (u >= (uintptr_t)a->base && u - (uintptr_t)a->base < a->size) return a;
  }
  return NULL;
}

/* Reserve and initialise an arena of `size` bytes, or, when the OS refuses (RLIMIT_AS, a full
 * address space), of half as much again and again down to `min_size`. Called with
 * arena_create_lock held. */
static ra_arena_t *arena_create(size_t size, size_t min_size) {
  size_t n = atomic_load_explicit(&arena_count, memory_order_relaxed);
  if (n >= RA_MAX_ARENAS) return NULL;
  void *base;
  int err;
  for (;;) {
    err = _ra_mem_reserve(size, RA_CHUNK_SIZE, &base);
    if (err == RA_OS_OK) break;
    _ra_report_verbose("ramalloc: reserving %zu bytes failed (error %d)\n", size, err);
    size_t half = _ra_align_up(size / 2, RA_CHUNK_SIZE);
    if (half < min_size || half >= size) return NULL;
    size = half;
  }
  size_t slots = size / RA_CHUNK_SIZE;
  size_t words = (slots + 63) / 64;
  size_t meta_start = _ra_align_up(sizeof(ra_arena_t) + (3 * words + slots) * sizeof(uint64_t), 64);
  size_t head_commit = _ra_align_up(meta_start, RA_SLICE_SIZE);
  if (head_commit > RA_CHUNK_SIZE / 2 || _ra_mem_commit(base, head_commit) != RA_OS_OK) {
    _ra_mem_release(base, size);
    return NULL;
  }
  ra_arena_t *a = (ra_arena_t *)base;
  a->magic = RA_ARENA_MAGIC;
  a->base = (uint8_t *)base;
  a->size = size;
  a->index = (uint32_t)n;
  a->chunk_slots = (uint32_t)slots;
  _ra_lock_init(&a->lock);
  uint64_t *maps = (uint64_t *)(a + 1);
  a->in_use = maps;
  a->committed = maps + words;
  a->purgeable = maps + 2 * words;
  a->free_ms = maps + 3 * words;
  a->meta_start = meta_start;
  a->meta_used = 0;
  a->meta_committed = head_commit;
  bit_set(a->in_use, 0);
  bit_set(a->committed, 0);
  /* Slots past the end of the reservation are marked in use so the search never returns them. */
  for (size_t i = slots; i < words * 64; i++) bit_set(a->in_use, i);
  atomic_store_explicit(&arenas[n], a, memory_order_release);
  atomic_store_explicit(&arena_count, n + 1, memory_order_release);
  _ra_report_verbose("ramalloc: reserved arena %zu at %p size %zu (%zu chunk slots, commit mode %s)\n", n, base,
              size, slots - 1, _ra_os_commit_mode() == RA_COMMIT_OVERCOMMIT ? "overcommit" : "protect");
  return a;
}

/* ---- Chunk runs ----------------------------------------------------------------------------------- */

/* First slot i >= 1 such that slots i..i+count-1 are free and the address of slot i + 1 is a
 * multiple of `step` chunks (step 1: anywhere). Returns 0 when there is none. With count == 1, a
 * committed free slot is preferred: it needs no page faults to use again. */
static size_t arena_find_run(ra_arena_t *a, size_t count, size_t step, bool clean) {
  size_t slots = a->chunk_slots;
  size_t base_n = (uintptr_t)a->base >> RA_CHUNK_SHIFT; /* chunk number of slot 0 */
  if (count == 1 && step == 1 && !clean) {
    size_t words = (slots + 63) / 64;
    for (size_t w = 0; w < words; w++)
      if (a->purgeable[w]) return w * 64 + (size_t)__builtin_ctzll(a->purgeable[w]);
  }
  if (count > 1 && step == 1 && clean) {
    /* A huge run: of the runs of free slots long enough, the one holding the most committed
     * memory (its pages are reused rather than faulted in afresh), the lowest on ties. */
    size_t best = 0, best_score = 0, len = 0, score = 0;
    for (size_t i = 1; i < slots; i++) {
      if (bit_get(a->in_use, i)) {
        len = score = 0;
        continue;
      }
      len++;
      score += bit_get(a->committed, i);
      if (len > count) score -= bit_get(a->committed, i - count);
      if (len >= count && (best == 0 || score > best_score)) {
        best = i + 1 - count;
        best_score = score;
        if (score == count) break;
      }
    }
    return best;
  }
  for (size_t i = 1; i + count <= slots;) {
    if (step > 1 && (base_n + i + 1) % step != 0) {
      i += step - (base_n + i + 1) % step;
      continue;
    }
    size_t j = 0;
    while (j < count && !bit_get(a->in_use, i + j)) j++;
    if (j == count) return i;
    i += (step > 1) ? step : j + 1;
  }
  return 0;
}

/* Forget whatever a free slot still has committed, with exact accounting. The slot's old chunk
 * header (if committed) says which slices are committed. */
static void slot_decommit(ra_arena_t *a, size_t i) {
  if (!bit_get(a->committed, i)) return;
  ra_chunk_t *c = (ra_chunk_t *)(a->base + i * RA_CHUNK_SIZE);
  _ra_mem_decommit_slices(c, c->committed | 1); /* slice 0 is committed whenever the slot is */
  bit_clear(a->committed, i);
  bit_clear(a->purgeable, i);
}

static ra_chunk_t *arena_take_run(ra_arena_t *a, size_t count, size_t step, bool clean, uint64_t *had,
                                  size_t *index, bool *was_committed) {
  _ra_lock(&a->lock);
  size_t i = arena_find_run(a, count, step, clean);
  if (i == 0) {
    _ra_unlock(&a->lock);
    return NULL;
  }
  bool committed = bit_get(a->committed, i);
  if (had != NULL) {
    /* A huge run that reuses what its slots still hold: the caller learns which slots had a
     * committed header (their own bitmaps say the rest) and reconciles them (huge.c). */
    for (size_t j = 0; j < count; j++) {
      if (bit_get(a->committed, i + j)) had[j >> 6] |= 1ULL << (j & 63);
      else had[j >> 6] &= ~(1ULL << (j & 63));
      bit_clear(a->committed, i + j);
    }
    committed = false;
  } else if (clean) {
    /* Huge runs start from a clean slate: exact commit accounting and zeroed memory. */
    for (size_t j = 0; j < count; j++) slot_decommit(a, i + j);
    committed = false;
  }
  for (size_t j = 0; j < count; j++) {
    bit_set(a->in_use, i + j);
    bit_clear(a->purgeable, i + j);
  }
  a->chunks_in_use += count;
  ra_assert_internal(_ra_arena_is_valid(a));
  _ra_unlock(&a->lock);
  *was_committed = committed;
  *index = i;
  return (ra_chunk_t *)(a->base + i * RA_CHUNK_SIZE);
}

ra_chunk_t *_ra_arena_chunk_alloc(size_t count, size_t align, bool clean, uint64_t *had, ra_arena_t **arena,
                                   size_t *index, bool *was_committed) {
  size_t step = align > RA_CHUNK_SIZE ? align / RA_CHUNK_SIZE : 1;
  size_t n = _ra_arena_count();
  for (size_t k = 0; k < n; k++) {
    ra_arena_t *a = _ra_arena_at(k);
    if ((size_t)a->chunk_slots < count + step) continue;
    ra_chunk_t *c = arena_take_run(a, count, step, clean, had, index, was_committed);
    if (c != NULL) {
      *arena = a;
      return c;
    }
  }
  _ra_lock(&arena_create_lock);
  /* Another thread may have created an arena meanwhile: try the newest ones first. */
  ra_chunk_t *c = NULL;
  for (size_t k = n; k < _ra_arena_count() && c == NULL; k++) {
    *arena = _ra_arena_at(k);
    c = arena_take_run(*arena, count, step, clean, had, index, was_committed);
  }
  if (c == NULL) {
    size_t want = (size_t)_ra_option(RA_OPT_ARENA_RESERVE);
    size_t need = (count + 1 + (step > 1 ? step : 0)) * RA_CHUNK_SIZE;
    if (need / RA_CHUNK_SIZE <= count) need = 0; /* overflow */
    if (need > 0) {
      ra_arena_t *a = arena_create(need > want ? need : want, need > RA_ARENA_MIN ? need : RA_ARENA_MIN);
      if (a != NULL) {
        *arena = a;
        c = arena_take_run(a, count, step, clean, had, index, was_committed);
      }
    }
  }
  _ra_unlock(&arena_create_lock);
  return c;
}

/* Give back a free committed slot (arena lock held): decommit all of it, header included, or, with
 * `reset`, reset its slices and keep the header (whose bitmaps say what is committed) for the next
 * user. Whether and when is purge.c's to say. */
void _ra_arena_slot_purge(ra_arena_t *a, size_t i, bool reset) {
  ra_chunk_t *c = (ra_chunk_t *)(a->base + i * RA_CHUNK_SIZE);
  uint64_t committed = c->committed | 1;
  bit_clear(a->purgeable, i);
  atomic_fetch_add_explicit(&_ra_counters.purged,
                            (size_t)__builtin_popcountll(reset ? committed & ~1ULL : committed) * RA_SLICE_SIZE,
                            memory_order_relaxed);
  if (!reset) {
    slot_decommit(a, i);
    return;
  }
  atomic_store_explicit(&c->purge_slices, 0, memory_order_relaxed);
  _ra_mem_reset_slices(c, committed & ~1ULL); /* the header (slice 0) stays */
}

/* A chunk run goes back to its arena. Page chunks stay committed (purgeable: their header keeps
 * the slice bitmap) until a purge, at once when the purge delay is 0; free_ms says since when the
 * memory has been free. Huge runs were decommitted by the caller. */
void _ra_arena_chunk_free(ra_arena_t *a, size_t i, size_t count, bool decommitted, uint64_t free_ms) {
  _ra_arena_run_free(a, i, count, decommitted ? 0 : count, free_ms);
}

/* A run goes back with its first `kept` slots committed (each with a chunk header whose bitmaps say
 * which of its slices are), the rest decommitted: the committed ones wait for a purge. */
void _ra_arena_run_free(ra_arena_t *a, size_t i, size_t count, size_t kept, uint64_t free_ms) {
  uint64_t now = free_ms;
  bool purge_now = _ra_purge_delay() == 0;
  _ra_lock(&a->lock);
  chunk_map_set((uintptr_t)(a->base + i * RA_CHUNK_SIZE), RA_MAP_NO_CHUNK);
  for (size_t j = 0; j < count; j++) {
    bit_clear(a->in_use, i + j);
    if (j >= kept) {
      bit_clear(a->committed, i + j);
    } else {
      bit_set(a->committed, i + j);
      bit_set(a->purgeable, i + j);
      a->free_ms[i + j] = now;
      if (purge_now) _ra_arena_slot_purge(a, i + j, _ra_purge_reset_only());
    }
  }
  a->chunks_in_use -= count;
  ra_assert_internal(_ra_arena_is_valid(a));
  _ra_unlock(&a->lock);
  if (kept > 0 && !purge_now) _ra_purge_notify();
}

/* Called by chunk.c and huge.c once a run's header is ready: mark its first slot committed and make the
 * chunk visible to free(), its map entry its owner's tag (chunk->heap, set by the caller). Whether
 * the entry is 0 changes under the arena lock, so whoever holds it (fork, a walk) sees exactly the
 * published chunks, each with its header committed. */
void _ra_arena_chunk_publish(ra_chunk_t *chunk) {
  ra_arena_t *a = chunk->arena;
  _ra_lock(&a->lock);
  bit_set(a->committed, chunk->index);
  chunk_map_set((uintptr_t)chunk, _ra_heap_map_entry(atomic_load_explicit(&chunk->heap, memory_order_relaxed)));
  ra_assert_internal(_ra_arena_is_valid(a));
  _ra_unlock(&a->lock);
}

void _ra_arena_chunk_unpublish(ra_chunk_t *chunk) { chunk_map_set((uintptr_t)chunk, RA_MAP_NO_CHUNK); }

/* A published chunk changes owner (heap; NULL: none): its map entry follows in the same step, so
 * that free's fast path (_ra_chunk_map_mine_n) reads the owner there. Every store to chunk->heap
 * after the chunk is published goes through here. */
void _ra_arena_chunk_set_heap(ra_chunk_t *chunk, ra_heap_t *heap) {
  atomic_store_explicit(&chunk->heap, heap, memory_order_release);
  chunk_map_set((uintptr_t)chunk, _ra_heap_map_entry(heap));
}

/* ---- Invariants ------------------------------------------------------------------------------------- */

bool _ra_arena_is_valid(const ra_arena_t *a) {
  if (a->magic != RA_ARENA_MAGIC || a->base != (const uint8_t *)a || a->size / RA_CHUNK_SIZE != a->chunk_slots)
    return _ra_report_invariant("arena magic and size", a);
  if (!bit_get(a->in_use, 0) || !bit_get(a->committed, 0))
    return _ra_report_invariant("slot 0 (the arena header) in use and committed", a);
  size_t words = (a->chunk_slots + 63) / 64, used = 0;
  for (size_t w = 0; w < words; w++) {
    if (a->in_use[w] & a->purgeable[w]) return _ra_report_invariant("no slot both in use and purgeable", a);
    if (a->purgeable[w] & ~a->committed[w]) return _ra_report_invariant("purgeable slots are committed", a);
    used += (size_t)__builtin_popcountll(a->in_use[w]);
  }
  if (used != a->chunks_in_use + 1 + (words * 64 - a->chunk_slots))
    return _ra_report_invariant("chunks_in_use == slots in use", a);
  if (a->meta_start + a->meta_used > a->meta_committed || a->meta_committed > RA_CHUNK_SIZE)
    return _ra_report_invariant("the metadata handed out is committed, inside slot 0", a);
  return true;
}

/* ---- fork ---------------------------------------------------------------------------------------- */

/* Around fork(): hold every arena lock so the child starts with consistent bitmaps. Lock order:
 * meta_lock, arena_create_lock, then each arena's lock: the order in which the allocator itself
 * nests them (_ra_arena_meta_alloc). */
void _ra_arena_fork_prepare(void) {
  _ra_lock(&meta_lock);
  _ra_lock(&arena_create_lock);
  size_t n = _ra_arena_count();
  for (size_t i = 0; i < n; i++) _ra_lock(&_ra_arena_at(i)->lock);
}

void _ra_arena_fork_release(void) {
  size_t n = _ra_arena_count();
  for (size_t i = n; i-- > 0;) _ra_unlock(&_ra_arena_at(i)->lock);
  _ra_unlock(&arena_create_lock);
  _ra_unlock(&meta_lock);
}

/* ---- Metadata area -------------------------------------------------------------------------------- */

/* Zeroed memory for allocator metadata (heap structs), inside slot 0 of an arena. Never freed:
 * callers recycle what they get. NULL when no arena can be had. */
void *_ra_arena_meta_alloc(size_t size) {
  size = _ra_align_up(size, 64);
  void *result = NULL;
  _ra_lock(&meta_lock);
  for (;;) {
    ra_arena_t *a = meta_arena < _ra_arena_count() ? _ra_arena_at(meta_arena) : NULL;
    if (a == NULL) {
      _ra_lock(&arena_create_lock);
      if (meta_arena >= _ra_arena_count())
        a = arena_create((size_t)_ra_option(RA_OPT_ARENA_RESERVE), RA_ARENA_MIN);
      else a = _ra_arena_at(meta_arena);
      _ra_unlock(&arena_create_lock);
      if (a == NULL) break;
    }
    _ra_lock(&a->lock);
    size_t start = a->meta_start + a->meta_used;
    if (start + size <= RA_CHUNK_SIZE) {
      size_t end = _ra_align_up(start + size, RA_SLICE_SIZE);
      if (end > a->meta_committed) {
        if (_ra_mem_commit(a->base + a->meta_committed, end - a->meta_committed) != RA_OS_OK) {
          _ra_unlock(&a->lock);
          break;
        }
        a->meta_committed = end;
      }
      a->meta_used += size;
      result = a->base + start;
    }
    ra_assert_internal(_ra_arena_is_valid(a));
    _ra_unlock(&a->lock);
    if (result != NULL) break;
    meta_arena++;
  }
  _ra_unlock(&meta_lock);
  if (result == NULL) errno = ENOMEM;
  return result;
}
