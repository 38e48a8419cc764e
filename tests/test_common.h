/* Helpers shared by the ramalloc tests: a small deterministic PRNG, byte patterns that depend on
 * the block address, its size and a tag, and knobs for sanitizer builds. Header-only on purpose so
 * every test stays a single translation unit plus the library. */
#ifndef RA_TEST_COMMON_H
#define RA_TEST_COMMON_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#ifndef RA_TEST_SANITIZED
#define RA_TEST_SANITIZED 0
#endif

/* Work is divided by this under sanitizers, which slow the allocator and the checks down. */
#if RA_TEST_SANITIZED
#define RA_TEST_SCALE 4
#else
#define RA_TEST_SCALE 1
#endif

#define RA_KiB ((size_t)1024)
#define RA_MiB ((size_t)1024 * 1024)
#define RA_GiB ((size_t)1024 * 1024 * 1024)

/* xorshift64*: deterministic, good enough to pick sizes and actions. */
typedef struct rt_rng_s {
  uint64_t s;
} rt_rng_t;

static inline void rt_rng_seed(rt_rng_t *r, uint64_t seed) { r->s = seed * 0x9E3779B97F4A7C15ull + 1; }

static inline uint64_t rt_rng_next(rt_rng_t *r) {
  uint64_t x = r->s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  r->s = x;
  return x * 0x2545F4914F6CDD1Dull;
}

/* Uniform-ish in [lo, hi]. */
static inline size_t rt_rng_range(rt_rng_t *r, size_t lo, size_t hi) {
  return lo + (size_t)(rt_rng_next(r) % (uint64_t)(hi - lo + 1));
}

/* The byte expected at offset i of a block whose pattern seed is `seed`. Position dependent, so a
 * copy that lands shifted by any amount is caught. */
static inline uint8_t rt_pat_byte(uint64_t seed, size_t i) {
  uint64_t x = seed ^ ((uint64_t)i * 0x9E3779B97F4A7C15ull);
  x ^= x >> 29;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 32;
  return (uint8_t)x;
}

static inline uint64_t rt_seed_of(const void *p, size_t size, uint64_t tag) {
  uint64_t x = (uint64_t)(uintptr_t)p ^ ((uint64_t)size << 17) ^ (tag * 0xD6E8FEB86659FD93ull);
  x ^= x >> 31;
  return x * 0x94D049BB133111EBull;
}

/* Which offsets of a block get written: all of a small block; for a big one the first and last
 * 256 bytes and one byte per 4 KiB, so multi-megabyte blocks stay cheap to fill and check. */
#define RT_FULL_LIMIT 4096u

static inline void rt_fill(void *p, size_t size, uint64_t seed) {
  uint8_t *b = (uint8_t *)p;
  if (size <= RT_FULL_LIMIT) {
    for (size_t i = 0; i < size; i++) b[i] = rt_pat_byte(seed, i);
    return;
  }
  for (size_t i = 0; i < 256; i++) b[i] = rt_pat_byte(seed, i);
  for (size_t i = 256; i < size - 256; i += 4096) b[i] = rt_pat_byte(seed, i);
  for (size_t i = size - 256; i < size; i++) b[i] = rt_pat_byte(seed, i);
}

/* Offset of the first byte that differs from the pattern, or SIZE_MAX when the block is intact. */
static inline size_t rt_check(const void *p, size_t size, uint64_t seed) {
  const uint8_t *b = (const uint8_t *)p;
  if (size <= RT_FULL_LIMIT) {
    for (size_t i = 0; i < size; i++)
      if (b[i] != rt_pat_byte(seed, i)) return i;
    return SIZE_MAX;
  }
  for (size_t i = 0; i < 256; i++)
    if (b[i] != rt_pat_byte(seed, i)) return i;
  for (size_t i = 256; i < size - 256; i += 4096)
    if (b[i] != rt_pat_byte(seed, i)) return i;
  for (size_t i = size - 256; i < size; i++)
    if (b[i] != rt_pat_byte(seed, i)) return i;
  return SIZE_MAX;
}

/* Check the bytes rt_fill(p, old_size, seed) wrote below `keep` (what realloc must preserve). */
static inline size_t rt_check_prefix(const void *p, size_t old_size, size_t keep, uint64_t seed) {
  const uint8_t *b = (const uint8_t *)p;
  if (keep > old_size) keep = old_size;
  if (old_size <= RT_FULL_LIMIT) {
    for (size_t i = 0; i < keep; i++)
      if (b[i] != rt_pat_byte(seed, i)) return i;
    return SIZE_MAX;
  }
  for (size_t i = 0; i < 256 && i < keep; i++)
    if (b[i] != rt_pat_byte(seed, i)) return i;
  for (size_t i = 256; i < old_size - 256 && i < keep; i += 4096)
    if (b[i] != rt_pat_byte(seed, i)) return i;
  for (size_t i = old_size - 256; i < keep; i++)
    if (b[i] != rt_pat_byte(seed, i)) return i;
  return SIZE_MAX;
}

/* Every byte, whatever the size (for content checks of realloc). */
static inline void rt_fill_all(void *p, size_t size, uint64_t seed) {
  uint8_t *b = (uint8_t *)p;
  for (size_t i = 0; i < size; i++) b[i] = rt_pat_byte(seed, i);
}

static inline size_t rt_check_all(const void *p, size_t size, uint64_t seed) {
  const uint8_t *b = (const uint8_t *)p;
  for (size_t i = 0; i < size; i++)
    if (b[i] != rt_pat_byte(seed, i)) return i;
  return SIZE_MAX;
}

static inline int rt_is_aligned(const void *p, size_t align) { return ((uintptr_t)p & (align - 1)) == 0; }

#endif /* RA_TEST_COMMON_H */
