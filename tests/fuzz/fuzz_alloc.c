/* libFuzzer harness for ramalloc (issue 7, item 5; docs/robustness.md).
 *
 * The input is a program: each operation is one byte (the opcode) followed by the bytes its
 * operands need (a slot of a 64-entry table, a size, an alignment...). Running out of input reads
 * zeros, so every input is a valid program. The harness allocates with every entry point
 * (malloc, calloc, realloc, aligned_alloc, posix_memalign), frees locally or through a second
 * thread, takes blocks the second thread allocated, and checks as it goes:
 *   - every live block keeps the byte pattern written into it (its own seed), including across
 *     realloc (the kept prefix) and while the other thread holds it;
 *   - calloc blocks read as zero, aligned blocks are aligned, usable_size >= the request,
 *     ra_owns holds for the first and last byte;
 *   - impossible requests (SIZE_MAX and near, overflowing calloc, alignments the address space
 *     cannot hold, non-powers of two) fail with the documented errno;
 *   - the allocator's own invariants: _ra_heap_validate() on this thread's heap, and on the other
 *     thread's while this one waits, every few operations and at the end of each input.
 * When RAMALLOC_ON_ERROR=warn is set, misuse operations join in (a double free or realloc of a
 * block just freed, an interior pointer of a huge block, a stack pointer): the report line is
 * captured from stderr and checked exactly, and the program goes on as if nothing happened, which
 * the checks above then confirm.
 *
 * Built with -fsanitize=fuzzer when the compiler is clang (CMake option RAMALLOC_FUZZ); built
 * otherwise (and always) as fuzz_alloc_replay with RA_FUZZ_STANDALONE, a main() that runs the
 * files named on its command line, or `--random N SEED` generated programs. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* ---- failing loudly ----------------------------------------------------------------------------- */

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  fprintf(stderr, "fuzz_alloc: %s\n", buf);
  abort();
}

#define CHECK(cond, ...)           \
  do {                             \
    if (!(cond)) die(__VA_ARGS__); \
  } while (0)

/* ---- the input as a stream of operands ----------------------------------------------------------- */

typedef struct input_s {
  const uint8_t *d;
  size_t n, i;
} input_t;

static uint8_t u8(input_t *in) { return in->i < in->n ? in->d[in->i++] : 0; }
static uint16_t u16(input_t *in) { return (uint16_t)(u8(in) | (uint16_t)u8(in) << 8); }
static uint32_t u32(input_t *in) { return (uint32_t)u16(in) | (uint32_t)u16(in) << 16; }

/* ---- byte patterns -------------------------------------------------------------------------------- */

static inline uint8_t pat(uint64_t seed, size_t i) {
  uint64_t x = seed ^ ((uint64_t)i * 0x9E3779B97F4A7C15ull);
  x ^= x >> 29;
  x *= 0xBF58476D1CE4E5B9ull;
  return (uint8_t)(x >> 32);
}

/* The offsets a block's pattern covers: all of a block up to 4 KiB; for bigger ones the first and
 * last 256 bytes and one byte per 4 KiB (so huge blocks stay cheap). */
#define FULL_LIMIT 4096u
#define FOR_PATTERN(i, size)                                                                              \
  for (size_t i = 0, end_ = (size); i < end_;                                                            \
       i = (end_ <= FULL_LIMIT || i < 255 || i + 256 >= end_) ? i + 1 : (i + 4096 < end_ - 256 ? i + 4096 : end_ - 256))

static void fill(uint8_t *p, size_t size, uint64_t seed) {
  FOR_PATTERN(i, size) p[i] = pat(seed, i);
}

/* Check the first `keep` bytes of a block filled as `size` bytes with `seed`. */
static void check_prefix(const uint8_t *p, size_t size, size_t keep, uint64_t seed, const char *what) {
  FOR_PATTERN(i, size) {
    if (i >= keep) break;
    if (p[i] != pat(seed, i))
      die("%s: block %p of %zu bytes: byte %zu is 0x%02x, want 0x%02x", what, (const void *)p, size, i, p[i], pat(seed, i));
  }
}

static void check_zero(const uint8_t *p, size_t size) {
  FOR_PATTERN(i, size) if (p[i] != 0) die("calloc block %p of %zu bytes: byte %zu is 0x%02x", (const void *)p, size, i, p[i]);
}

/* ---- the slot table ---------------------------------------------------------------------------------- */

enum { SLOTS = 64 };
#define LIVE_BUDGET ((size_t)128 << 20) /* bytes live at once, so RSS stays bounded */
#define HUGE_MAX ((size_t)12 << 20)

typedef struct slot_s {
  uint8_t *p;
  size_t size;
  size_t align; /* promised alignment (16 unless aligned allocation) */
  uint64_t seed;
  bool theirs; /* allocated by the second thread (its heap owns the page) */
} slot_t;

static slot_t slots[SLOTS];
static size_t live_bytes;
static uint64_t seed_counter;
static bool misuse_enabled;
static bool trace; /* FUZZ_TRACE=1: one line per operation on stderr (to minimise a failure by hand) */

static void slot_check(const slot_t *s, const char *what) {
  if (s->p == NULL) return;
  CHECK(((uintptr_t)s->p & (s->align - 1)) == 0, "%s: block %p lost its alignment %zu", what, (void *)s->p, s->align);
  check_prefix(s->p, s->size, s->size, s->seed, what);
}

/* Bookkeeping for a new block in a slot (the slot was empty). */
static void slot_set(slot_t *s, void *p, size_t size, size_t align) {
  s->p = p;
  s->size = size;
  s->align = align < RA_ALIGN ? RA_ALIGN : align;
  s->seed = ++seed_counter * 0xD6E8FEB86659FD93ull;
  s->theirs = false;
  live_bytes += size;
}

static void slot_clear(slot_t *s) {
  live_bytes -= s->size;
  s->p = NULL;
  s->size = 0;
}

/* What every fresh block must satisfy. */
static void check_new_block(const void *p, size_t size, size_t align, const char *what) {
  CHECK(p != NULL, "%s(%zu) returned NULL (errno %d)", what, size, errno);
  CHECK(((uintptr_t)p & ((align < RA_ALIGN ? RA_ALIGN : align) - 1)) == 0, "%s(%zu): %p not aligned to %zu", what,
        size, p, align);
  size_t u = ra_usable_size(p);
  CHECK(u >= size, "%s(%zu): usable size %zu", what, size, u);
  CHECK(ra_owns(p), "%s(%zu): ra_owns(%p) is false", what, size, p);
  if (size > 0) CHECK(ra_owns((const uint8_t *)p + size - 1), "%s(%zu): last byte not owned", what, size);
  for (int i = 0; i < SLOTS; i++)
    CHECK(slots[i].p != p, "%s(%zu) returned %p, which slot %d holds", what, size, p, i);
}

/* ---- sizes ------------------------------------------------------------------------------------------- */

/* A size the allocator must refuse with ENOMEM, or 0 for "none this time". */
static size_t impossible_size(input_t *in) {
  switch (u8(in) % 8) {
    case 0: return SIZE_MAX;
    case 1: return SIZE_MAX - (u8(in) + 1u);
    case 2: return (size_t)PTRDIFF_MAX + 1 + u8(in);
    case 3: return SIZE_MAX - ((size_t)u16(in) << 12);
    case 4: return ((size_t)1 << 47) + u32(in);
    case 5: return SIZE_MAX / 2 - u8(in);
    case 6: return ((size_t)1 << 62) | u32(in);
    default: return SIZE_MAX - RA_LARGE_MAX;
  }
}

static size_t choose_size(input_t *in) {
  size_t n;
  switch (u8(in) % 16) {
    case 0: case 1: case 2: case 3: n = u8(in) % 129; break;        /* tiny, 0 included */
    case 4: case 5: case 6: n = u16(in) % 1025; break;              /* fast-path sizes */
    case 7: case 8: n = u16(in) % (RA_SMALL_MAX + 1); break;        /* small pages */
    case 9: case 10: n = u32(in) % (RA_MEDIUM_MAX + 1); break;      /* medium pages */
    case 11: n = u32(in) % (RA_LARGE_MAX + 1); break;               /* large blocks */
    case 12: n = RA_LARGE_MAX + u32(in) % (HUGE_MAX - RA_LARGE_MAX); break; /* huge */
    default: {                                                       /* next to a class boundary */
      size_t c = _ra_class_size[u8(in) % RA_CLASS_COUNT];
      int delta = (int)(u8(in) % 5) - 2;
      n = (size_t)((long)c + delta);
      break;
    }
  }
  if (live_bytes + n > LIVE_BUDGET) n %= 4096; /* keep memory bounded */
  return n;
}

/* A power-of-two alignment, mostly modest, sometimes up to 64 MiB. */
static size_t choose_align(input_t *in) {
  uint8_t b = u8(in);
  unsigned shift = b < 200 ? b % 13 : b < 250 ? 13 + b % 10 : 23 + b % 4;
  return (size_t)1 << shift;
}

/* ---- the second thread ------------------------------------------------------------------------------- */

typedef enum req_kind_e { REQ_FREE, REQ_ALLOC, REQ_VALIDATE } req_kind_t;

typedef struct req_s {
  req_kind_t kind;
  uint8_t *p;
  size_t size;
  uint64_t seed;
} req_t;

enum { QCAP = 256 };
static struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  req_t q[QCAP];
  size_t head, count;
  bool busy;          /* the worker is between taking a request and finishing it */
  void *reply;        /* REQ_ALLOC's block / REQ_VALIDATE's verdict */
  bool replied;
} w = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static void *worker(void *arg) {
  (void)arg;
  pthread_mutex_lock(&w.mu);
  for (;;) {
    while (w.count == 0) pthread_cond_wait(&w.cv, &w.mu);
    req_t r = w.q[w.head];
    w.head = (w.head + 1) % QCAP;
    w.count--;
    w.busy = true;
    pthread_mutex_unlock(&w.mu);
    void *reply = NULL;
    switch (r.kind) {
      case REQ_FREE:
        check_prefix(r.p, r.size, r.size, r.seed, "block handed to the other thread");
        ra_free(r.p);
        break;
      case REQ_ALLOC: {
        uint8_t *p = ra_malloc(r.size);
        if (p != NULL) fill(p, r.size, r.seed);
        reply = p;
        break;
      }
      case REQ_VALIDATE:
        reply = _ra_heap_validate() ? (void *)1 : NULL;
        break;
    }
    pthread_mutex_lock(&w.mu);
    w.busy = false;
    if (r.kind != REQ_FREE) {
      w.reply = reply;
      w.replied = true;
    }
    if (r.kind != REQ_FREE || w.count == 0 || w.count == QCAP - 1) pthread_cond_broadcast(&w.cv);
  }
  return NULL;
}

static void worker_spawn(void) {
  pthread_t t;
  CHECK(pthread_create(&t, NULL, worker, NULL) == 0, "pthread_create failed");
  pthread_detach(t);
}

static void worker_start(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, worker_spawn);
}

/* Queue a request. Frees are batched: the worker is woken only when enough have piled up (or by
 * a drain), which keeps thread hand-offs, and so the cost of each input, low. */
static void worker_push(req_t r) {
  worker_start();
  pthread_mutex_lock(&w.mu);
  while (w.count == QCAP) pthread_cond_wait(&w.cv, &w.mu);
  w.q[(w.head + w.count) % QCAP] = r;
  w.count++;
  w.replied = false;
  if (r.kind != REQ_FREE || w.count >= QCAP / 4) pthread_cond_broadcast(&w.cv);
  pthread_mutex_unlock(&w.mu);
}

/* Wait until the worker has nothing queued or in hand. */
static void worker_drain(void) {
  worker_start();
  pthread_mutex_lock(&w.mu);
  if (w.count != 0) pthread_cond_broadcast(&w.cv);
  while (w.count != 0 || w.busy) pthread_cond_wait(&w.cv, &w.mu);
  pthread_mutex_unlock(&w.mu);
}

/* A request that answers: wait for the reply. */
static void *worker_call(req_t r) {
  worker_drain();
  worker_push(r);
  pthread_mutex_lock(&w.mu);
  while (!w.replied) pthread_cond_wait(&w.cv, &w.mu);
  void *reply = w.reply;
  pthread_mutex_unlock(&w.mu);
  return reply;
}

/* Both heaps' invariants (the second thread's while this one waits), or only this thread's. */
static void validate(bool both) {
  worker_drain(); /* no remote frees in flight into either heap */
  CHECK(_ra_heap_validate(), "_ra_heap_validate failed on the main thread (the broken invariant is above)");
  if (both) CHECK(worker_call((req_t){REQ_VALIDATE, NULL, 0, 0}) != NULL, "_ra_heap_validate failed on the second thread");
}
static void validate_all(void) { validate(true); }

/* ---- misuse (RAMALLOC_ON_ERROR=warn only) -------------------------------------------------------------- */

/* Run `fn(arg)` with stderr captured and check that ramalloc printed exactly the line
 * "ramalloc: <what> 0x<p>", or, when `alt` is not NULL, "ramalloc: <alt> 0x<p>". */
static void expect_report(const char *what, const char *alt, const void *p, void (*fn)(void *), void *arg) {
  int pfd[2];
  CHECK(pipe2(pfd, O_NONBLOCK) == 0, "pipe failed");
  fflush(stderr);
  int saved = dup(2);
  dup2(pfd[1], 2);
  fn(arg);
  dup2(saved, 2);
  close(saved);
  close(pfd[1]);
  char got[256] = {0}, want[256], want_alt[256] = "";
  ssize_t n = read(pfd[0], got, sizeof got - 1);
  close(pfd[0]);
  if (n < 0) n = 0;
  got[n] = 0;
  snprintf(want, sizeof want, "ramalloc: %s 0x%" PRIxPTR "\n", what, (uintptr_t)p);
  if (alt != NULL) snprintf(want_alt, sizeof want_alt, "ramalloc: %s 0x%" PRIxPTR "\n", alt, (uintptr_t)p);
  CHECK(strcmp(got, want) == 0 || (alt != NULL && strcmp(got, want_alt) == 0), "misuse report: got \"%s\", want \"%s\"%s%s",
        got, want, alt ? " or " : "", want_alt);
}

static void do_free(void *p) { ra_free(p); }
static void do_realloc(void *p) {
  errno = 0;
  void *r = ra_realloc(p, 100);
  CHECK(r == NULL && errno == EINVAL, "realloc of a bad pointer gave %p errno %d", r, errno);
}

static void misuse(input_t *in) {
  worker_drain(); /* the other thread must not reuse what is freed here meanwhile */
  slot_t *s = &slots[u8(in) % SLOTS];
  int kind = u8(in) % 4;
  if (trace) fprintf(stderr, "  misuse %d on slot %d (%p, %zu bytes, align %zu)\n", kind, (int)(s - slots), (void *)s->p, s->size, s->align);
  switch (kind) {
    case 0: /* double free of a block freed just now (by the thread that owns it: always detected) */
    case 1: {
      if (s->p == NULL || (s->theirs && s->size <= RA_LARGE_MAX)) return;
      void *p = s->p;
      bool huge = s->size > RA_LARGE_MAX || s->align > RA_SLICE_SIZE;
      slot_check(s, "before a double free");
      ra_free(p);
      slot_clear(s);
      /* A block whose whole page (or whole chunk) went back with this free, because it was the
       * last live block there, lies in free memory now: ramalloc may name it a pointer it did not
       * hand out (docs/robustness.md, "Limits"). Huge blocks must be named double frees. */
      bool page_gone = !huge && !ra_owns(p);
      if (u8(in) & 1)
        expect_report("double free of", page_gone ? "free of a pointer ramalloc did not hand out" : NULL, p, do_free, p);
      else
        expect_report("realloc of a freed block", page_gone ? "realloc of a pointer ramalloc did not hand out" : NULL, p,
                      do_realloc, p);
      return;
    }
    case 2: /* an interior pointer of a huge block */
      if (s->p == NULL || s->size <= RA_LARGE_MAX) return;
      {
        void *q = s->p + 16 + (u16(in) % (s->size - 16) & ~(size_t)15);
        expect_report("free of an interior pointer", NULL, q, do_free, q);
      }
      slot_check(s, "after an interior free");
      return;
    default: { /* a pointer into this stack frame */
      char local[32];
      void *q = local + (u8(in) % 16);
      expect_report("free of a pointer ramalloc did not hand out", NULL, q, do_free, q);
      return;
    }
  }
}

/* ---- the interpreter ------------------------------------------------------------------------------------- */

enum {
  OP_MALLOC, OP_CALLOC, OP_REALLOC, OP_FREE, OP_ALIGNED, OP_POSIX_MEMALIGN, OP_USABLE, OP_CHECK,
  OP_REMOTE_FREE, OP_REMOTE_ALLOC, OP_VALIDATE, OP_COLLECT, OP_SWAP, OP_IMPOSSIBLE, OP_BURST,
  OP_MISUSE, OP_COUNT
};

static void op_free(slot_t *s) {
  slot_check(s, "before free");
  ra_free(s->p);
  slot_clear(s);
}

static void step(input_t *in) {
  uint8_t op = u8(in) % OP_COUNT;
  slot_t *s = &slots[u8(in) % SLOTS];
  if (trace) fprintf(stderr, "op %d slot %d (%p, %zu bytes, align %zu)\n", op, (int)(s - slots), (void *)s->p, s->size, s->align);
  switch (op) {
    case OP_MALLOC: {
      if (s->p) op_free(s);
      size_t n = choose_size(in);
      void *p = ra_malloc(n);
      check_new_block(p, n, RA_ALIGN, "ra_malloc");
      slot_set(s, p, n, RA_ALIGN);
      fill(s->p, n, s->seed);
      break;
    }
    case OP_CALLOC: {
      if (s->p) op_free(s);
      size_t count = u8(in) % 33, size = choose_size(in) / (count ? count : 1);
      void *p = ra_calloc(count, size);
      check_new_block(p, count * size, RA_ALIGN, "ra_calloc");
      check_zero(p, count * size);
      slot_set(s, p, count * size, RA_ALIGN);
      fill(s->p, s->size, s->seed);
      break;
    }
    case OP_REALLOC: {
      size_t n = choose_size(in);
      slot_check(s, "before realloc");
      void *p = ra_realloc(s->p, n);
      CHECK(p != NULL, "ra_realloc(%p, %zu) returned NULL (errno %d)", (void *)s->p, n, errno);
      CHECK(ra_usable_size(p) >= n, "ra_realloc(%zu): usable %zu", n, ra_usable_size(p));
      if (s->p != NULL) {
        check_prefix(p, s->size, n < s->size ? n : s->size, s->seed, "after realloc");
        live_bytes -= s->size;
        live_bytes += n;
      } else {
        slot_set(s, p, n, RA_ALIGN);
      }
      if (p != s->p) s->theirs = false; /* moved: a block of this thread's heap now */
      s->p = p;
      s->size = n;
      s->align = RA_ALIGN; /* realloc keeps the content, not the alignment */
      s->seed = ++seed_counter * 0xD6E8FEB86659FD93ull;
      fill(s->p, n, s->seed);
      break;
    }
    case OP_FREE:
      if (s->p) op_free(s);
      else ra_free(NULL);
      break;
    case OP_ALIGNED: {
      if (s->p) op_free(s);
      size_t a = choose_align(in), n = choose_size(in);
      void *p = ra_aligned_alloc(a, n);
      check_new_block(p, n, a, "ra_aligned_alloc");
      slot_set(s, p, n, a);
      fill(s->p, n, s->seed);
      break;
    }
    case OP_POSIX_MEMALIGN: {
      if (s->p) op_free(s);
      size_t a = (u8(in) & 7) == 0 ? (size_t)(u8(in) | 1) * 8 + 8 : choose_align(in); /* some invalid */
      size_t n = choose_size(in);
      void *p = (void *)&p;
      int rc = ra_posix_memalign(&p, a, n);
      bool valid = a >= sizeof(void *) && (a & (a - 1)) == 0;
      if (!valid) {
        CHECK(rc == EINVAL && p == (void *)&p, "ra_posix_memalign(%zu): rc %d", a, rc);
        break;
      }
      CHECK(rc == 0, "ra_posix_memalign(%zu, %zu) returned %d", a, n, rc);
      check_new_block(p, n, a, "ra_posix_memalign");
      slot_set(s, p, n, a);
      fill(s->p, n, s->seed);
      break;
    }
    case OP_USABLE:
      if (s->p) {
        CHECK(ra_usable_size(s->p) >= s->size, "usable size of %p shrank below %zu", (void *)s->p, s->size);
        CHECK(ra_owns(s->p), "ra_owns(%p) is false for a live block", (void *)s->p);
      } else {
        CHECK(ra_usable_size(NULL) == 0 && !ra_owns(NULL), "NULL is not 0 / not owned");
      }
      break;
    case OP_CHECK:
      slot_check(s, "check");
      break;
    case OP_REMOTE_FREE:
      if (s->p) {
        worker_push((req_t){REQ_FREE, s->p, s->size, s->seed});
        slot_clear(s);
      }
      break;
    case OP_REMOTE_ALLOC: {
      if (s->p) op_free(s);
      size_t n = choose_size(in);
      uint64_t seed = ++seed_counter * 0xD6E8FEB86659FD93ull;
      void *p = worker_call((req_t){REQ_ALLOC, NULL, n, seed});
      check_new_block(p, n, RA_ALIGN, "ra_malloc on the other thread");
      slot_set(s, p, n, RA_ALIGN);
      s->seed = seed;
      s->theirs = true;
      slot_check(s, "a block from the other thread");
      break;
    }
    case OP_VALIDATE:
      validate_all();
      break;
    case OP_COLLECT:
      ra_collect(u8(in) & 1);
      break;
    case OP_SWAP: {
      slot_t *t = &slots[u8(in) % SLOTS], tmp = *s;
      *s = *t;
      *t = tmp;
      break;
    }
    case OP_IMPOSSIBLE: {
      size_t n = impossible_size(in);
      errno = 0;
      void *p;
      switch (u8(in) % 6) {
        case 0: p = ra_malloc(n); break;
        case 1: p = ra_calloc(1 + u8(in), n); break;
        case 2: p = ra_aligned_alloc(choose_align(in), n); break;
        case 3: p = s->p ? ra_realloc(s->p, n) : ra_malloc(n); break;
        case 4: p = ra_aligned_alloc((size_t)1 << (47 + u8(in) % 17), u16(in)); break; /* alignment too big */
        default: {
          size_t c = (size_t)1 << (32 + u8(in) % 31);
          p = ra_calloc(c, (SIZE_MAX / c) + 1 + u8(in)); /* the product overflows */
          break;
        }
      }
      CHECK(p == NULL && errno == ENOMEM, "an impossible request (%zu) gave %p errno %d", n, p, errno);
      slot_check(s, "after a failed request");
      break;
    }
    case OP_BURST: { /* fill a page or more of one class, free in an order the input picks */
      size_t n = choose_size(in) % 2048, k = 8 + u8(in) % 120;
      void *b[128];
      for (size_t i = 0; i < k; i++) {
        b[i] = ra_malloc(n);
        check_new_block(b[i], n, RA_ALIGN, "ra_malloc (burst)");
        memset(b[i], (int)i, n);
      }
      size_t order[128]; /* a permutation the input picks (Fisher-Yates) */
      for (size_t i = 0; i < k; i++) order[i] = i;
      for (size_t i = k - 1; i > 0; i--) {
        size_t r = u8(in) % (i + 1), t = order[i];
        order[i] = order[r];
        order[r] = t;
      }
      bool remote = u8(in) & 1;
      for (size_t i = 0; i < k; i++) {
        size_t j = order[i];
        const uint8_t *c = b[j];
        if (n > 0) CHECK(c[0] == (uint8_t)j && c[n - 1] == (uint8_t)j, "burst block %zu changed", j);
        if (remote) worker_push((req_t){REQ_FREE, b[j], 0, 0});
        else ra_free(b[j]);
        b[j] = NULL;
      }
      for (size_t i = 0; i < k; i++) CHECK(b[i] == NULL, "burst order left a block");
      break;
    }
    case OP_MISUSE:
      if (misuse_enabled) misuse(in);
      break;
  }
  if (trace) fprintf(stderr, "  -> %p, %zu bytes, align %zu\n", (void *)s->p, s->size, s->align);
}

static void reset_all(void) {
  for (int i = 0; i < SLOTS; i++)
    if (slots[i].p) op_free(&slots[i]);
  validate_all();
  CHECK(live_bytes == 0, "harness lost count: %zu live bytes", live_bytes);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  const char *mode = getenv("RAMALLOC_ON_ERROR");
  misuse_enabled = mode != NULL && strcmp(mode, "warn") == 0;
  const char *t = getenv("FUZZ_TRACE");
  trace = t != NULL && *t == '1';
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  input_t in = {data, size, 0};
  unsigned ops = 0;
  while (in.i < in.n) {
    step(&in);
    if (++ops % 64 == 0) validate(ops % 256 == 0);
  }
  reset_all();
  return 0;
}

#ifdef RA_FUZZ_STANDALONE
#include <dirent.h>

/* Without libFuzzer: run the files given (a corpus), or generated programs. */
static uint64_t rng = 0x243F6A8885A308D3ull;
static uint64_t next_rand(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static int run_path(const char *path, int *files);

static int run_file(const char *path, int *files) {
  DIR *dir = opendir(path);
  if (dir != NULL) { /* a corpus directory: every regular file in it */
    int bad = 0;
    for (struct dirent *e; (e = readdir(dir)) != NULL;) {
      if (e->d_name[0] == '.') continue;
      char sub[4096];
      snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
      bad |= run_path(sub, files);
    }
    closedir(dir);
    return bad;
  }
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    fprintf(stderr, "fuzz_alloc: cannot open %s\n", path);
    return 1;
  }
  static uint8_t buf[1 << 20];
  size_t n = fread(buf, 1, sizeof buf, f);
  fclose(f);
  LLVMFuzzerTestOneInput(buf, n);
  (*files)++;
  return 0;
}

static int run_path(const char *path, int *files) { return run_file(path, files); }

int main(int argc, char **argv) {
  LLVMFuzzerInitialize(&argc, &argv);
  if (argc >= 3 && strcmp(argv[1], "--random") == 0) {
    long count = strtol(argv[2], NULL, 10);
    if (argc >= 4) rng = strtoull(argv[3], NULL, 0) | 1;
    static uint8_t buf[8192];
    for (long k = 0; k < count; k++) {
      size_t n = 1 + next_rand() % sizeof buf;
      for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)next_rand();
      LLVMFuzzerTestOneInput(buf, n);
    }
    printf("fuzz_alloc: %ld generated programs ran clean\n", count);
    return 0;
  }
  int bad = 0, files = 0;
  for (int i = 1; i < argc; i++) bad |= run_file(argv[i], &files);
  printf("fuzz_alloc: %d inputs ran clean\n", files);
  return bad;
}
#endif
