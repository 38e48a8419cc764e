/* Canaries after every block of a page (RAMALLOC_CANARY) and zeroed free blocks checked at reuse
 * (RAMALLOC_SECURE). docs/robustness.md ("Canaries and zeroed free blocks") has the why.
 *
 * Slot layout with the canary on (block_size bytes, a multiple of 16):
 *   0          link word while free (cleared when handed out)
 *   8          ... the block's bytes; zero while free under RAMALLOC_SECURE (small and medium)
 *   bs - 8     canary: _ra_canary_key ^ its own address, every byte's top bit set
 *
 * The canary of a slot is written once, when the page carves it, and only read afterwards: any
 * thread may check any carved slot's canary. It is checked at the block's free (its own canary:
 * an overflow; the canary of the slot before it: an underflow, or an overflow of that neighbour)
 * and when the slot is handed out again (its own canary, overwritten while it was free: an
 * underflow of the block after it, or a write after free). All accesses go through the
 * unchecked accessors below: to ASan and memcheck the canary is out of bounds. */
#include <string.h>

#include "internal.h"

bool _ra_canary;
bool _ra_zero_freed;
static uintptr_t canary_key;

void _ra_secure_init(void) {
  _ra_canary = _ra_option(RA_OPT_CANARY) != 0;
  _ra_zero_freed = _ra_canary && _ra_option(RA_OPT_SECURE) != 0;
  /* Every byte has its top bit set, so a byte written as 0 (a string's terminator one past the
   * end) always changes the canary. */
  canary_key = (uintptr_t)_ra_os_random() | (uintptr_t)0x8080808080808080ULL;
}

static inline uintptr_t canary_value(const uintptr_t *at) { return canary_key ^ ((uintptr_t)at & 0x7f7f7f7f7f7f7f7fULL); }
static inline bool canary_ok(const uint8_t *at) {
  const uintptr_t *w = (const uintptr_t *)at;
  return ra_word_load(w) == canary_value(w);
}
static inline void canary_set(uint8_t *at) {
  uintptr_t *w = (uintptr_t *)at;
  ra_word_store(w, canary_value(w));
}

/* The body of a free block, [8, bs - 8): word-aligned, a whole number of words. */
#if RA_ASAN
RA_NO_ASAN static bool body_is_zero(const uint8_t *p, size_t n) {
  uintptr_t any = 0;
  for (size_t i = 0; i < n; i += sizeof(uintptr_t)) any |= *(const volatile uintptr_t *)(p + i);
  return any == 0;
}
RA_NO_ASAN static void body_clear(uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i += sizeof(uintptr_t)) *(volatile uintptr_t *)(p + i) = 0;
}
#else
static bool body_is_zero(const uint8_t *p, size_t n) {
#if RA_VALGRIND
  VALGRIND_DISABLE_ERROR_REPORTING;
#endif
  uintptr_t any = 0;
  for (size_t i = 0; i < n; i += sizeof(uintptr_t)) {
    uintptr_t w;
    memcpy(&w, p + i, sizeof w);
    any |= w;
  }
#if RA_VALGRIND
  VALGRIND_ENABLE_ERROR_REPORTING;
  VALGRIND_MAKE_MEM_DEFINED(&any, sizeof any);
#endif
  return any == 0;
}
static void body_clear(uint8_t *p, size_t n) {
#if RA_VALGRIND
  VALGRIND_DISABLE_ERROR_REPORTING;
#endif
  memset(p, 0, n);
#if RA_VALGRIND
  VALGRIND_ENABLE_ERROR_REPORTING;
#endif
}
#endif

/* Blocks whose body is zeroed at free and checked at reuse: small and medium (large blocks fault
 * after free instead, RAMALLOC_PROTECT_FREED). */
static inline bool zeroes(size_t bs) { return _ra_zero_freed && bs <= RA_MEDIUM_MAX; }

/* The page just carved n slots from `first`: write their canaries, and under RAMALLOC_SECURE zero
 * their bodies unless the span is fresh from the OS. */
void _ra_secure_carve(ra_page_t *page, uint8_t *first, size_t n) {
  size_t bs = page->block_size;
  bool clear = zeroes(bs) && page->dirty;
  for (size_t i = 0; i < n; i++) {
    uint8_t *b = first + i * bs;
    if (clear) body_clear(b + 8, bs - 16);
    canary_set(b + bs - RA_CANARY_SIZE);
  }
}

/* A block just popped for a request of `size` bytes (the pop asked for _ra_canary_room(size)).
 * Checks what it can; false when it reported a misuse (warn mode: the block is left out, the
 * caller takes another). `zero`: calloc. A huge block was zeroed by the pop already when asked. */
bool _ra_secure_handout(void *p, size_t size, bool zero) {
  size_t asked = _ra_canary_room(size);
#if RA_ANNOTATE
  /* The pop made the bytes asked for live; the program asked for fewer. */
  RA_ANN_CLOSE((uint8_t *)p + size, asked - size);
#else
  (void)asked;
#endif
  ra_chunk_t *c = _ra_chunk_of(p);
  if (c->kind == RA_CHUNK_HUGE) return true;
  ra_page_t *page = _ra_page_of(c, p);
  size_t bs = page->block_size;
  uint8_t *b = p;
  if (!canary_ok(b + bs - RA_CANARY_SIZE)) {
    _ra_report_misuse_canary(RA_CANARY_FREE_BLOCK, b);
    return false;
  }
  if (zeroes(bs)) {
    if (!body_is_zero(b + 8, bs - 16)) {
      _ra_report_misuse_canary(RA_WRITE_AFTER_FREE, b);
      return false;
    }
    return true; /* zero already: the pop cleared the link word */
  }
  if (zero) body_clear(b, bs - RA_CANARY_SIZE);
  return true;
}

/* The block of a canary page is being freed: false when a canary says otherwise (reported; warn
 * mode: the free is refused). Under RAMALLOC_SECURE its body is zeroed for the check at reuse. */
bool _ra_secure_free(ra_page_t *page, ra_block_t *block) {
  size_t bs = page->block_size;
  uint8_t *b = (uint8_t *)block;
  if (!canary_ok(b + bs - RA_CANARY_SIZE)) {
    _ra_report_misuse_canary(RA_CANARY_OVERFLOW, b);
    return false;
  }
  if (b != _ra_page_start(_ra_chunk_of_desc(page), page) && !canary_ok(b - RA_CANARY_SIZE)) {
    _ra_report_misuse_canary(RA_CANARY_UNDERFLOW, b);
    return false;
  }
  if (zeroes(bs)) body_clear(b + 8, bs - 16);
  return true;
}
