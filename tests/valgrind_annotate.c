/* Run under valgrind's memcheck by tests/valgrind_annotate.sh (ctest label `valgrind`, built only
 * with -DRAMALLOC_VALGRIND=ON): ramalloc's client requests (allocator/annotate.h) must make memcheck
 * see ra_malloc blocks as it sees glibc's. The program calls the ra_* names (it links
 * ramalloc_internal, without the malloc override), so memcheck's own malloc replacement is not
 * involved: whatever memcheck knows about these blocks, ramalloc told it.
 *
 *   valgrind_annotate clean        every size kind, calloc, realloc up and down, aligned blocks, the
 *                                  usable size, frees from other threads, the walks that follow free
 *                                  lists: no error, nothing definitely lost
 *   valgrind_annotate uaf          read 16 bytes into a freed 40-byte block
 *   valgrind_annotate uaf_huge     read inside a freed 5 MiB block
 *   valgrind_annotate past_end     read the byte after a 20-byte block
 *   valgrind_annotate leak         lose the only pointer to a 100-byte block
 *   valgrind_annotate double_free  free a block twice
 *   valgrind_annotate uninit       branch on a byte malloc left uninitialised
 *
 * Each bad mode prints "at 0x<address>" (the byte it reads) or "block 0x<address>" on stdout first;
 * the script checks memcheck's report names that address. */
#define _GNU_SOURCE
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static void fail(const char *what) {
  fprintf(stderr, "FAIL: %s\n", what);
  exit(3);
}
#define CHECK(c) \
  do {           \
    if (!(c)) fail(#c); \
  } while (0)

static void *launder(void *p) {
  __asm__ volatile("" : "+r"(p));
  return p;
}

static int touch(const void *p) {
  const volatile uint8_t *b = p;
  return *b;
}

static void pattern(uint8_t *p, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(seed + i * 13u);
}
static void pattern_check(const uint8_t *p, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; i++)
    if (p[i] != (uint8_t)(seed + i * 13u)) fail("content kept");
}

typedef struct xfer_s {
  void *blocks[128];
  size_t n;
} xfer_t;

static void *xfer_free(void *arg) {
  xfer_t *x = arg;
  for (size_t i = 0; i < x->n; i++) ra_free(x->blocks[i]);
  return NULL;
}

static void *xfer_alloc(void *arg) {
  xfer_t *x = arg;
  for (size_t i = 0; i < x->n; i++) {
    size_t n = 16 + (i * 37) % 3000;
    x->blocks[i] = ra_malloc(n);
    CHECK(x->blocks[i] != NULL);
    memset(x->blocks[i], (int)i, n);
  }
  return NULL;
}

static bool count_visit(const ra_visit_info_t *info, void *arg) {
  (void)info;
  ++*(size_t *)arg;
  return true;
}

static void clean(void) {
  static const size_t sizes[] = {0, 1, 7, 8, 16, 17, 20, 100, 1000, 1024, 1025, 8191, 9000, 65536, 70000, 300000,
                                 (size_t)2 << 20, ((size_t)2 << 20) + 1, (size_t)5 << 20};
  enum { NS = sizeof sizes / sizeof sizes[0] };
  void *p[NS];
  unsigned sum = 0;
  for (size_t i = 0; i < NS; i++) {
    size_t n = sizes[i];
    p[i] = (i % 2) ? ra_calloc(n, 1) : ra_malloc(n);
    CHECK(p[i] != NULL);
    if (i % 2)
      for (size_t k = 0; k < n; k++) sum += ((uint8_t *)p[i])[k]; /* defined: calloc */
    pattern(p[i], n, (unsigned)i);
  }
  CHECK(sum == 0);
  for (size_t i = 0; i < NS; i++) {
    size_t n = sizes[i], up = n * 2 + 3, down = n / 3;
    uint8_t *q = ra_realloc(p[i], up);
    CHECK(q != NULL);
    pattern_check(q, n, (unsigned)i);
    pattern(q, up, (unsigned)i + 7);
    q = ra_realloc(q, down == 0 ? 1 : down);
    CHECK(q != NULL);
    pattern_check(q, down, (unsigned)i + 7);
    size_t u = ra_usable_size(q);
    memset(q, 0x5a, u); /* every usable byte may be used once asked for */
    p[i] = q;
  }
  for (size_t i = 0; i < NS; i++) ra_free(p[i]);
  for (size_t a = 32; a <= ((size_t)8 << 20); a <<= 2) {
    size_t n = a + 5;
    uint8_t *q = ra_aligned_alloc(a, n);
    CHECK(q != NULL && ((uintptr_t)q & (a - 1)) == 0);
    pattern(q, n, 3);
    void *r = NULL;
    CHECK(ra_posix_memalign(&r, a, 100) == 0);
    memset(r, 1, 100);
    q = ra_realloc(q, n + 100);
    CHECK(q != NULL);
    pattern_check(q, n, 3);
    ra_free(q);
    ra_free(r);
  }
  void *slot[256] = {0};
  size_t len[256] = {0};
  uint64_t rng = 88172645463325252ull;
  for (int k = 0; k < 6000; k++) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    size_t s = rng % 256;
    if (slot[s] != NULL) {
      pattern_check(slot[s], len[s], (unsigned)s);
      ra_free(slot[s]);
    }
    len[s] = (rng >> 20) % ((k % 7 == 0) ? 20000 : 400);
    slot[s] = (k % 5 == 0) ? ra_calloc(len[s], 1) : ra_malloc(len[s]);
    CHECK(slot[s] != NULL);
    pattern(slot[s], len[s], (unsigned)s);
  }
  size_t seen = 0;
  ra_visit(RA_VISIT_ALL, count_visit, &seen);
  CHECK(seen > 0);
  ra_stats_t st;
  ra_stats_get(&st);
  CHECK(_ra_heap_validate());
  for (size_t s = 0; s < 256; s++) ra_free(slot[s]);
  xfer_t x = {.n = 128};
  for (size_t i = 0; i < x.n; i++) {
    x.blocks[i] = ra_malloc(16 + (i * 53) % 5000);
    CHECK(x.blocks[i] != NULL);
  }
  pthread_t t;
  CHECK(pthread_create(&t, NULL, xfer_free, &x) == 0);
  pthread_join(t, NULL);
  CHECK(pthread_create(&t, NULL, xfer_alloc, &x) == 0);
  pthread_join(t, NULL);
  for (size_t i = 0; i < x.n; i++) ra_free(x.blocks[i]);
  for (int k = 0; k < 2000; k++) ra_free(ra_malloc(16 + (size_t)k % 5000));
  CHECK(_ra_heap_validate());
  ra_collect(true);
  puts("clean-done");
}

static __attribute__((noinline)) void leak(void) {
  uint8_t *p = ra_malloc(100);
  CHECK(p != NULL);
  memset(p, 1, 100);
  printf("block 0x%" PRIxPTR "\n", (uintptr_t)p);
  p = NULL;
  launder(p);
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "clean";
  setvbuf(stdout, NULL, _IONBF, 0);
  uint8_t *keep = ra_malloc(40); /* a live neighbour, so the page stays */
  CHECK(keep != NULL);
  memset(keep, 0, 40);
  if (strcmp(mode, "clean") == 0) {
    clean();
  } else if (strcmp(mode, "uaf") == 0) {
    uint8_t *p = ra_malloc(40);
    pattern(p, 40, 1);
    ra_free(launder(p));
    printf("at 0x%" PRIxPTR "\n", (uintptr_t)(p + 16));
    if (touch(p + 16) == 0x5a) puts("(value)");
  } else if (strcmp(mode, "uaf_huge") == 0) {
    size_t n = (size_t)5 << 20;
    uint8_t *p = ra_malloc(n);
    pattern(p, 4096, 1);
    ra_free(launder(p));
    printf("at 0x%" PRIxPTR "\n", (uintptr_t)(p + 1000));
    if (touch(p + 1000) == 0x5a) puts("(value)");
  } else if (strcmp(mode, "past_end") == 0) {
    uint8_t *p = launder(ra_malloc(20));
    pattern(p, 20, 1);
    printf("at 0x%" PRIxPTR "\n", (uintptr_t)(p + 20));
    if (touch(p + 20) == 0x5a) puts("(value)");
    ra_free(p);
  } else if (strcmp(mode, "leak") == 0) {
    leak();
  } else if (strcmp(mode, "double_free") == 0) {
    uint8_t *p = ra_malloc(64);
    memset(p, 0, 64);
    printf("block 0x%" PRIxPTR "\n", (uintptr_t)p);
    ra_free(p);
    ra_free(launder(p)); /* memcheck reports it; then ramalloc aborts with its own line */
  } else if (strcmp(mode, "uninit") == 0) {
    uint8_t *p = ra_malloc(64);
    printf("block 0x%" PRIxPTR "\n", (uintptr_t)p);
    if (touch(p + 10) == 0x5a) puts("(value)");
    ra_free(p);
  } else {
    fail("unknown mode");
  }
  ra_free(keep);
  return 0;
}
