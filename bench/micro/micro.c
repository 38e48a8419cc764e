/* bench-micro: allocator microbenchmarks, written in C over Google Benchmark (see shim/rb.h).
 *
 * Every benchmark calls the plain malloc family, so the allocator under test is whichever one the
 * process links or has preloaded (LD_PRELOAD). "items" are allocations (each with its free), so
 * items_per_second compares allocators directly; multi-threaded runs use wall time and report the
 * throughput of all threads together.
 *
 *   malloc_free/size:N              malloc then free of N bytes, 8 B .. 1 MiB
 *   malloc_free_mt/size:N/threads:T the same in T threads at once
 *   batch_{lifo,fifo,random}/size:N/count:C
 *                                   allocate C blocks, then free them newest first, oldest first
 *                                   or in a random order (size 0: random sizes 16..1024)
 *   realloc_grow/final:N/step:S     grow one block to N bytes by S bytes at a time (S 0: by half
 *                                   its size each time); items are reallocs
 *   calloc/size:N                   calloc then free
 *   aligned_alloc/align:A           aligned_alloc(A, max(A, 64)) then free
 *   posix_memalign/align:A          posix_memalign of 64 bytes then free
 *   xthread_free/threads:T          T/2 producer threads allocate, T/2 consumer threads free
 *   mixed/slots:K/threads:T         each thread replaces random blocks (16..1024 B) in K slots
 *
 * Useful options: --benchmark_filter=REGEX --benchmark_min_time=SECONDS --benchmark_format=json
 * --benchmark_list_tests. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rb.h"

#define BATCH 64 /* operations per rb_keep_running_batch call in the simple loops */

static uint64_t rng_next(uint64_t *s) {
  uint64_t x = *s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *s = x;
  return x * 0x2545F4914F6CDD1DULL;
}

static void fail(rb_state *st, const char *what) {
  char msg[128];
  snprintf(msg, sizeof msg, "%s failed (errno %d)", what, errno);
  rb_skip_with_error(st, msg);
}

/* ---- malloc/free pairs ------------------------------------------------------------------------- */

static void bm_malloc_free(rb_state *st, void *arg) {
  (void)arg;
  size_t n = (size_t)rb_arg(st, 0);
  while (rb_keep_running_batch(st, BATCH)) {
    for (int i = 0; i < BATCH; i++) {
      char *p = malloc(n);
      if (!p) {
        fail(st, "malloc");
        break;
      }
      p[0] = (char)i;
      rb_escape(p);
      free(p);
    }
  }
  rb_set_items_processed(st, rb_iterations(st));
}

/* ---- batches freed in LIFO, FIFO or random order ----------------------------------------------- */

enum order { LIFO, FIFO, RANDOM };

static void bm_batch(rb_state *st, void *arg) {
  enum order order = (enum order)(intptr_t)arg;
  size_t size = (size_t)rb_arg(st, 0), count = (size_t)rb_arg(st, 1);
  void **ptr = malloc(count * sizeof *ptr);
  size_t *perm = malloc(count * sizeof *perm), *sizes = malloc(count * sizeof *sizes);
  if (!ptr || !perm || !sizes) {
    fail(st, "setup malloc");
    free(ptr), free(perm), free(sizes);
    while (rb_keep_running(st)) {
    }
    return;
  }
  uint64_t seed = 0x9E3779B97F4A7C15ULL + (uint64_t)rb_thread_index(st);
  for (size_t i = 0; i < count; i++) {
    perm[i] = i;
    sizes[i] = size ? size : 16 + rng_next(&seed) % 1009;
  }
  if (order == RANDOM)
    for (size_t i = count; i > 1; i--) {
      size_t j = rng_next(&seed) % i, t = perm[i - 1];
      perm[i - 1] = perm[j];
      perm[j] = t;
    }
  else if (order == LIFO)
    for (size_t i = 0; i < count; i++) perm[i] = count - 1 - i;
  while (rb_keep_running(st)) {
    for (size_t i = 0; i < count; i++) {
      char *p = malloc(sizes[i]);
      if (!p) {
        fail(st, "malloc");
        count = i;
        break;
      }
      p[0] = (char)i;
      ptr[i] = p;
    }
    rb_escape(ptr);
    for (size_t i = 0; i < count; i++) free(ptr[perm[i]]);
  }
  rb_set_items_processed(st, rb_iterations(st) * (int64_t)count);
  free(ptr);
  free(perm);
  free(sizes);
}

/* ---- realloc growth -------------------------------------------------------------------------- */

static void bm_realloc_grow(rb_state *st, void *arg) {
  (void)arg;
  size_t final = (size_t)rb_arg(st, 0), step = (size_t)rb_arg(st, 1);
  int64_t reallocs = 0;
  while (rb_keep_running(st)) {
    char *p = NULL;
    size_t n = 0;
    while (n < final) {
      size_t next = step ? n + step : n + n / 2 + 16;
      if (next > final) next = final;
      char *q = realloc(p, next);
      if (!q) {
        fail(st, "realloc");
        break;
      }
      p = q;
      memset(p + n, (int)(next & 0x7f), next - n); /* the bytes appended, as a builder would */
      n = next;
      reallocs++;
    }
    rb_escape(p);
    free(p);
  }
  rb_set_items_processed(st, reallocs);
}

/* ---- calloc ------------------------------------------------------------------------------------ */

static void bm_calloc(rb_state *st, void *arg) {
  (void)arg;
  size_t n = (size_t)rb_arg(st, 0);
  while (rb_keep_running_batch(st, BATCH / 4)) {
    for (int i = 0; i < BATCH / 4; i++) {
      volatile char *p = calloc(1, n);
      if (!p) {
        fail(st, "calloc");
        break;
      }
      if (p[n - 1]) rb_skip_with_error(st, "calloc returned a block that is not zeroed");
      p[0] = 1;
      free((void *)p);
    }
  }
  rb_set_items_processed(st, rb_iterations(st));
}

/* ---- aligned allocation ------------------------------------------------------------------------ */

static void bm_aligned_alloc(rb_state *st, void *arg) {
  (void)arg;
  size_t align = (size_t)rb_arg(st, 0), n = align < 64 ? 64 : align;
  while (rb_keep_running_batch(st, BATCH / 4)) {
    for (int i = 0; i < BATCH / 4; i++) {
      char *p = aligned_alloc(align, n);
      if (!p || ((uintptr_t)p & (align - 1))) {
        fail(st, p ? "alignment" : "aligned_alloc");
        break;
      }
      p[0] = (char)i;
      rb_escape(p);
      free(p);
    }
  }
  rb_set_items_processed(st, rb_iterations(st));
}

static void bm_posix_memalign(rb_state *st, void *arg) {
  (void)arg;
  size_t align = (size_t)rb_arg(st, 0);
  while (rb_keep_running_batch(st, BATCH / 4)) {
    for (int i = 0; i < BATCH / 4; i++) {
      void *v = NULL;
      if (posix_memalign(&v, align, 64) || ((uintptr_t)v & (align - 1))) {
        fail(st, "posix_memalign");
        break;
      }
      ((char *)v)[0] = (char)i;
      rb_escape(v);
      free(v);
    }
  }
  rb_set_items_processed(st, rb_iterations(st));
}

/* ---- producer/consumer: blocks freed by another thread ------------------------------------------ */

#define RING 256
#define MAX_PAIRS 64

typedef struct ring {
  _Alignas(64) atomic_size_t tail;
  _Alignas(64) atomic_size_t head;
  _Alignas(64) void *slot[RING];
} ring;

static ring g_rings[MAX_PAIRS];

static void bm_xthread_free(rb_state *st, void *arg) {
  (void)arg;
  static const size_t sizes[8] = {16, 32, 48, 64, 96, 128, 256, 512};
  int idx = rb_thread_index(st), nthreads = rb_thread_count(st);
  if (nthreads % 2 || nthreads / 2 > MAX_PAIRS) {
    rb_skip_with_error(st, "needs an even number of threads");
    while (rb_keep_running(st)) {
    }
    return;
  }
  if (idx == 0) /* others only touch the rings after the start barrier */
    for (int i = 0; i < nthreads / 2; i++) {
      atomic_store(&g_rings[i].head, 0);
      atomic_store(&g_rings[i].tail, 0);
    }
  ring *r = &g_rings[idx / 2];
  int producer = idx % 2 == 0;
  size_t pos = 0, other = 0; /* other: last seen index of the other side (cached) */
  while (rb_keep_running_batch(st, BATCH)) {
    for (int i = 0; i < BATCH; i++) {
      unsigned spins = 0;
      if (producer) {
        char *p = malloc(sizes[pos % 8]);
        if (!p) abort(); /* the consumer would wait forever for it */
        p[0] = (char)pos;
        while (pos - other == RING) {
          other = atomic_load_explicit(&r->head, memory_order_acquire);
          if (pos - other == RING && ++spins > 64) sched_yield();
        }
        r->slot[pos % RING] = p;
        atomic_store_explicit(&r->tail, ++pos, memory_order_release);
      } else {
        while (pos == other) {
          other = atomic_load_explicit(&r->tail, memory_order_acquire);
          if (pos == other && ++spins > 64) sched_yield();
        }
        void *p = r->slot[pos % RING];
        atomic_store_explicit(&r->head, ++pos, memory_order_release);
        free(p);
      }
    }
  }
  rb_set_items_processed(st, producer ? rb_iterations(st) : 0);
}

/* ---- mixed random replacement, 1..N threads ------------------------------------------------------ */

static void bm_mixed(rb_state *st, void *arg) {
  (void)arg;
  size_t slots = (size_t)rb_arg(st, 0);
  void **s = calloc(slots, sizeof *s);
  if (!s) {
    fail(st, "setup calloc");
    while (rb_keep_running(st)) {
    }
    return;
  }
  uint64_t seed = 0x2545F4914F6CDD1DULL * (uint64_t)(rb_thread_index(st) + 1);
  while (rb_keep_running_batch(st, BATCH)) {
    for (int i = 0; i < BATCH; i++) {
      uint64_t x = rng_next(&seed);
      size_t k = (size_t)(x % slots), n = 16 + (size_t)((x >> 32) % 1009);
      free(s[k]);
      char *p = malloc(n);
      if (!p) {
        fail(st, "malloc");
        break;
      }
      p[0] = (char)i;
      s[k] = p;
    }
  }
  for (size_t i = 0; i < slots; i++) free(s[i]);
  free(s);
  rb_set_items_processed(st, rb_iterations(st));
}

/* ---- registration ------------------------------------------------------------------------------ */

int main(int argc, char **argv) {
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  int maxt = ncpu > 2 ? (int)ncpu : 2;

  rb_bench *b = rb_arg_name(rb_register("malloc_free", bm_malloc_free, NULL), "size");
  static const int64_t sizes[] = {8,    16,    32,    64,     128,    256,    512,
                                  1024, 4096, 16384, 65536, 262144, 1048576};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) rb_add_arg(b, sizes[i]);

  b = rb_arg_name(rb_register("malloc_free_mt", bm_malloc_free, NULL), "size");
  rb_use_real_time(rb_thread_range(rb_add_arg(rb_add_arg(b, 64), 4096), 1, maxt));

  static const char *const order_names[] = {"batch_lifo", "batch_fifo", "batch_random"};
  for (int o = LIFO; o <= RANDOM; o++) {
    b = rb_arg_names2(rb_register(order_names[o], bm_batch, (void *)(intptr_t)o), "size", "count");
    rb_add_args2(b, 16, 1000);
    rb_add_args2(b, 64, 1000);
    rb_add_args2(b, 256, 1000);
    rb_add_args2(b, 4096, 1000);
    rb_add_args2(b, 0, 1000);
    rb_add_args2(b, 64, 100000);
  }

  b = rb_arg_names2(rb_register("realloc_grow", bm_realloc_grow, NULL), "final", "step");
  rb_add_args2(b, 4096, 16);
  rb_add_args2(b, 65536, 16);
  rb_add_args2(b, 65536, 0);
  rb_add_args2(b, 1 << 20, 0);
  rb_add_args2(b, 16 << 20, 0);

  b = rb_arg_name(rb_register("calloc", bm_calloc, NULL), "size");
  rb_add_arg(rb_add_arg(rb_add_arg(rb_add_arg(b, 64), 4096), 65536), 1 << 20);

  b = rb_arg_name(rb_register("aligned_alloc", bm_aligned_alloc, NULL), "align");
  rb_add_arg(rb_add_arg(rb_add_arg(rb_add_arg(rb_add_arg(b, 16), 64), 256), 4096), 65536);
  b = rb_arg_name(rb_register("posix_memalign", bm_posix_memalign, NULL), "align");
  rb_add_arg(rb_add_arg(b, 64), 4096);

  b = rb_register("xthread_free", bm_xthread_free, NULL);
  rb_use_real_time(rb_threads(rb_threads(b, 2), 2 * maxt));

  b = rb_arg_name(rb_register("mixed", bm_mixed, NULL), "slots");
  rb_use_real_time(rb_thread_range(rb_add_arg(rb_add_arg(b, 1024), 65536), 1, maxt));

  return rb_main(argc, argv);
}
