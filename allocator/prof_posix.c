/* The sampling heap profiler (POSIX): which call stacks hold the live heap. docs/profiling.md has
 * the user's side; this comment has the machinery.
 *
 * Sampling. Allocated bytes are treated as a Poisson process of rate 1/R per byte (R =
 * RAMALLOC_PROFILE): an allocation of s bytes is sampled when at least one point of the process
 * falls inside it, which happens with probability p(s) = 1 - exp(-s/R), independently of every
 * other allocation (the gaps between points are exponential, so memoryless). Each thread keeps a
 * countdown of bytes to the next point, drawn from Exp(mean R); every allocation subtracts its
 * size; an allocation that takes the countdown below zero is sampled, and a fresh countdown is drawn
 * from its end (memorylessness again: where the next point lies past the end does not depend on how
 * many points fell inside). A sample then stands for 1/p(s) allocations and s/p(s) bytes: summed
 * over the samples of a call site, E[sum 1/p(s_i) * X_i] = sum over its allocations of
 * p(s)/p(s) = their number (X_i the indicator of being sampled), and likewise for bytes, so the
 * estimates are unbiased. Large allocations (s >> R) are sampled almost surely and count about once;
 * small ones (s << R) count about R/s times. The relative error of a site's estimate shrinks as the
 * square root of its sample count: a site holding B live bytes has about B/R samples.
 *
 * Where the countdown runs: _ra_prof_route is set at initialisation, before the first heap exists,
 * and _ra_direct_bound with it, the size below which malloc and calloc take their fast path: 0
 * sends every allocation to _ra_alloc_generic, which runs a copy of the fast path that also counts
 * the size down (alloc.c). Profiling off runs the fast paths' instructions unchanged (their size
 * test reads the bound instead of a constant); on, a small allocation costs about 15 instructions
 * more (docs/performance.md).
 *
 * Frees. A page holding sampled blocks carries RA_PAGE_SAMPLED, which sends every free of that page
 * off the fast path to _ra_free_generic; there the block's address is looked up in the sample table
 * (huge blocks are always looked up: they always take the generic path). A count of live samples
 * per page takes the flag off when the page's last sampled block is freed. The flag is an atomic
 * read-modify-write of the page's flags byte, done under the profiler's lock together with the
 * count, by whichever thread adds or removes the sample (the page cannot be reused meanwhile: the
 * block is live until its free has finished). Blocks of unsampled pages are freed as before.
 *
 * Stacks. libunwind (Debian's libunwind8), loaded with dlopen when profiling starts, so the library
 * itself still links libc and pthreads alone: unw_backtrace walks the stack from the DWARF unwind
 * tables (.eh_frame), so no frame pointers are needed, and caches what it learned per address. It
 * may allocate on a thread's first unwind (glibc allocates the TLS block of a dlopen'ed library on
 * first use): a thread-local flag marks the profiler's own work, and an allocation made while it is
 * set is served as usual but neither counted nor sampled, so nothing recurses. Without libunwind
 * the profiler says so once and falls back to glibc's backtrace() (libgcc's unwinder, same tables),
 * warmed up at start (its first call loads libgcc_s); so does a static program (libramalloc.a),
 * which has no dlopen of libunwind (prof_unwind_posix.c). The frames inside libramalloc
 * itself are dropped when it is a shared library (preloaded or linked); statically linked, the top
 * two frames are dropped (see _ra_prof_sample).
 *
 * Memory. Samples, stacks and frames live in the profiler's own anonymous mapping, reserved at start
 * (MAP_NORESERVE: only pages touched are used), never in blocks of the heap it measures. One mutex
 * guards the tables; it is a leaf (nothing is called under it that takes another lock or allocates)
 * and is held across fork(), so a child profiles too, starting from its parent's samples.
 *
 * Output. ra_profile_write (and the exit and signal dumps) writes the legacy text heap-profile
 * format that google-pprof reads: a "heap profile:" line, one line per stack with its estimated
 * in-use and allocated objects and bytes, then MAPPED_LIBRARIES: and /proc/self/maps. The leak report
 * (RAMALLOC_LEAKS) prints the stacks that still hold sampled blocks at exit, most bytes first,
 * symbolised with dladdr (exported symbols; tools/ramalloc-fold names static functions too, with
 * addr2line). */
#define _GNU_SOURCE
#include <dlfcn.h> /* dladdr and Dl_info; dlopen is in prof_unwind_posix.c */
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <link.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* prof_unwind_posix.c, linked into libramalloc.so only (a static program then never names dlopen,
 * which glibc warns about in static links): unw_backtrace from libunwind, or NULL. */
extern void *_ra_prof_unwind_find(void) __attribute__((weak));
/* Weak, so that a static program that never uses dladdr does not pull in the loader's code. */
extern int dladdr(const void *addr, Dl_info *info) __attribute__((weak));

bool _ra_prof_route;
__thread int64_t _ra_prof_countdown __attribute__((tls_model(RA_TLS_MODEL)));

#define TLS __thread __attribute__((tls_model(RA_TLS_MODEL)))
static TLS bool in_prof;     /* the profiler's own work is running on this thread */
static TLS bool seeded;      /* rng_state and the countdown are set up */
static TLS uint64_t rng_state;

#define MAX_DEPTH 64                      /* frames kept per stack */
#define SKIP_MAX 16                       /* frames of ramalloc itself looked past at most */
#define STACKS_MAX ((size_t)1 << 16)
#define STACK_SLOTS ((size_t)1 << 17)     /* open addressing, load <= 1/2 */
#define FRAMES_MAX ((size_t)1 << 21)
#define SAMPLES_MAX ((size_t)1 << 20)
#define SAMPLE_BUCKETS ((size_t)1 << 18)
#define PAGE_SLOTS ((size_t)1 << 21)      /* > 2 * SAMPLES_MAX: load stays under 1/2 */
#define NIL UINT32_MAX

typedef struct pstack_s {
  uint64_t hash;
  uint32_t depth, frames;      /* frames: index of the first in the frame pool */
  uint32_t live_samples;
  uint32_t _pad;
  double alloc_count, alloc_bytes; /* estimated, since the start */
  double live_count, live_bytes;   /* estimated, blocks not freed yet */
} pstack_t;

typedef struct sample_s {
  uintptr_t addr;
  size_t size;
  uint32_t stack;
  uint32_t next;               /* bucket chain, or the free list */
} sample_t;

/* How many live samples a page holds: its RA_PAGE_SAMPLED flag goes when the last one is freed, so
 * the page's frees take the fast path again. */
typedef struct page_count_s {
  uintptr_t page; /* descriptor address, 0: empty */
  size_t count;
} page_count_t;

/* A live sample as a layout dump sees it. */
typedef struct snap_s {
  uintptr_t addr;
  double bytes;   /* estimated bytes it stands for */
  uint32_t stack;
} snap_t;

typedef struct tables_s {
  pstack_t stacks[STACKS_MAX];
  uint32_t stack_slots[STACK_SLOTS]; /* index + 1, 0: empty */
  uintptr_t frames[FRAMES_MAX];
  sample_t samples[SAMPLES_MAX];
  uint32_t buckets[SAMPLE_BUCKETS];  /* first sample of the chain, NIL: none (set at start) */
  uint32_t order[STACKS_MAX];        /* scratch for sorting (under the lock) */
  page_count_t pages[PAGE_SLOTS];    /* live samples per page descriptor (open addressing) */
  snap_t snap[SAMPLES_MAX];          /* live samples by address, for a layout dump (snap_lock) */
} tables_t;

static pthread_mutex_t prof_lock = PTHREAD_MUTEX_INITIALIZER;
static tables_t *tab;
static size_t n_stacks, n_frames, n_samples_used; /* n_samples_used: slots ever taken */
static uint32_t sample_free = NIL;
static size_t live_samples, total_samples, dropped_samples;
static atomic_size_t nested_allocs; /* allocations made while the profiler unwound a stack */

static atomic_bool prof_ready;
static double rate;                /* R in bytes */
static uint64_t seed_base;
static atomic_uint_fast64_t seed_counter;
static int (*unwind)(void **buf, int size);
static const char *unwinder_name = "none";
static uintptr_t own_lo[4], own_hi[4]; /* executable ranges of libramalloc (shared library only) */
static int own_ranges;

/* ---- Arithmetic without libm ----------------------------------------------------------------- */

#define LN2 0.69314718055994530942

/* 2^k for -1022 <= k <= 1023. */
static double pow2(int k) {
  union {
    double d;
    uint64_t u;
  } v;
  v.u = (uint64_t)(k + 1023) << 52;
  return v.d;
}

/* Natural logarithm of x > 0 (a normal double): x = m * 2^e with m in [0.707, 1.414], then
 * ln m = 2 atanh(z), z = (m - 1) / (m + 1), |z| < 0.172, by its series to z^11 (error < 1e-11). */
static double log_pos(double x) {
  union {
    double d;
    uint64_t u;
  } v = {x};
  int e = (int)((v.u >> 52) & 0x7ff) - 1023;
  v.u = (v.u & (((uint64_t)1 << 52) - 1)) | ((uint64_t)1023 << 52);
  double m = v.d;
  if (m > 1.4142135623730951) {
    m *= 0.5;
    e++;
  }
  double z = (m - 1) / (m + 1), z2 = z * z;
  double s = z * (2 + z2 * (2.0 / 3 + z2 * (2.0 / 5 + z2 * (2.0 / 7 + z2 * (2.0 / 9 + z2 * (2.0 / 11))))));
  return s + e * LN2;
}

/* 1 - exp(-x) for x >= 0: a short series near 0 (where the subtraction would cancel), otherwise
 * exp(-x) = 2^-k exp(-r) with |r| <= ln2 / 2 and exp(-r) by its Taylor series (error < 1e-13). */
static double one_minus_exp_neg(double x) {
  if (x < 1e-4) return x * (1 - x * (0.5 - x * (1.0 / 6 - x / 24)));
  if (x > 700) return 1;
  int k = (int)(x / LN2 + 0.5);
  double r = x - k * LN2, t = 1, s = 1;
  for (int i = 1; i <= 14; i++) {
    t *= -r / i;
    s += t;
  }
  return 1 - s * pow2(-k);
}

/* How many allocations of `size` bytes one sample stands for: 1 / p(size). */
static double weight(size_t size) { return 1 / one_minus_exp_neg((double)size / rate); }

/* xorshift64*: the thread's own sequence, seeded from the process secret and a counter. */
static uint64_t rng_next(void) {
  uint64_t x = rng_state;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  rng_state = x;
  return x * 0x2545f4914f6cdd1dULL;
}

/* Bytes to the next sample point: Exp(mean R), at least 1. */
static int64_t draw_countdown(void) {
  double u = (double)((rng_next() >> 11) + 1) * (1.0 / 9007199254740992.0); /* (0, 1] */
  double c = -log_pos(u) * rate;
  if (c > 9e18) c = 9e18;
  return (int64_t)c + 1;
}

static void thread_seed(void) {
  uint64_t z = seed_base + atomic_fetch_add(&seed_counter, 1) * 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL; /* splitmix64 finaliser */
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  rng_state = (z ^ (z >> 31)) | 1;
  seeded = true;
}

/* ---- Tables (prof_lock held) ---------------------------------------------------------------- */

static uint64_t hash_frames(void *const *f, int n) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (int i = 0; i < n; i++) {
    h ^= (uintptr_t)f[i];
    h *= 0x100000001b3ULL;
    h ^= h >> 29;
  }
  return h;
}

/* The stack's index, added if new; NIL when the tables are full. */
static uint32_t stack_find_add(void *const *f, int n, uint64_t h) {
  size_t mask = STACK_SLOTS - 1;
  for (size_t i = h & mask;; i = (i + 1) & mask) {
    uint32_t v = tab->stack_slots[i];
    if (v == 0) {
      if (n_stacks == STACKS_MAX || n_frames + (size_t)n > FRAMES_MAX) return NIL;
      pstack_t *s = &tab->stacks[n_stacks];
      s->hash = h;
      s->depth = (uint32_t)n;
      s->frames = (uint32_t)n_frames;
      for (int k = 0; k < n; k++) tab->frames[n_frames + (size_t)k] = (uintptr_t)f[k];
      n_frames += (size_t)n;
      tab->stack_slots[i] = (uint32_t)++n_stacks;
      return (uint32_t)(n_stacks - 1);
    }
    pstack_t *s = &tab->stacks[v - 1];
    if (s->hash == h && s->depth == (uint32_t)n &&
        !memcmp(&tab->frames[s->frames], f, (size_t)n * sizeof(uintptr_t)))
      return v - 1;
  }
}

static size_t page_slot(uintptr_t page) { return (size_t)((page >> 6) * 0x9e3779b97f4a7c15ULL >> 40) & (PAGE_SLOTS - 1); }

/* Add d (+1 or -1) to the page's live samples; returns the new count. */
static size_t page_count_add(uintptr_t page, int d) {
  size_t mask = PAGE_SLOTS - 1, i = page_slot(page);
  while (tab->pages[i].page != 0 && tab->pages[i].page != page) i = (i + 1) & mask;
  page_count_t *e = &tab->pages[i];
  if (e->page == 0) {
    if (d < 0) return 0; /* not counted (cannot happen) */
    e->page = page;
    e->count = 0;
  }
  e->count += (size_t)(ptrdiff_t)d;
  if (e->count != 0) return e->count;
  /* Delete by shifting back the entries of the probe run that follows (no tombstones). */
  size_t hole = i;
  for (size_t j = (i + 1) & mask; tab->pages[j].page != 0; j = (j + 1) & mask) {
    size_t home = page_slot(tab->pages[j].page);
    /* j's entry may fill the hole if its home is not cyclically inside (hole, j] */
    if (((j - home) & mask) >= ((j - hole) & mask)) {
      tab->pages[hole] = tab->pages[j];
      hole = j;
    }
  }
  tab->pages[hole].page = 0;
  tab->pages[hole].count = 0;
  return 0;
}

/* The descriptor of the page holding a block, NULL for a huge block. */
static ra_page_t *page_of_block(uintptr_t addr) {
  ra_chunk_t *chunk = _ra_chunk_of((void *)addr);
  return chunk->kind == RA_CHUNK_HUGE ? NULL : _ra_page_of(chunk, (void *)addr);
}

static size_t bucket_of(uintptr_t addr) {
  return (size_t)((addr >> 4) * 0x9e3779b97f4a7c15ULL >> 46) & (SAMPLE_BUCKETS - 1);
}

static void sample_add(uintptr_t addr, size_t size, uint32_t stack) {
  uint32_t i;
  if (sample_free != NIL) {
    i = sample_free;
    sample_free = tab->samples[i].next;
  } else if (n_samples_used < SAMPLES_MAX) {
    i = (uint32_t)n_samples_used++;
  } else {
    dropped_samples++;
    return;
  }
  sample_t *s = &tab->samples[i];
  size_t b = bucket_of(addr);
  s->addr = addr;
  s->size = size;
  s->stack = stack;
  s->next = tab->buckets[b];
  __atomic_store_n(&tab->buckets[b], i, __ATOMIC_RELAXED); /* read without the lock: _ra_prof_free */
  /* The flag changes under the lock, with the count, so a set and a clear cannot cross. */
  ra_page_t *pg = page_of_block(addr);
  if (pg != NULL && page_count_add((uintptr_t)pg, 1) == 1) _ra_page_set_flag(pg, RA_PAGE_SAMPLED, true);
  pstack_t *st = &tab->stacks[stack];
  double w = weight(size);
  st->live_samples++;
  st->live_count += w;
  st->live_bytes += w * (double)size;
  live_samples++;
}

static bool sample_remove(uintptr_t addr) {
  uint32_t *link = &tab->buckets[bucket_of(addr)];
  for (uint32_t i = *link; i != NIL; link = &tab->samples[i].next, i = *link) {
    sample_t *s = &tab->samples[i];
    if (s->addr != addr) continue;
    __atomic_store_n(link, s->next, __ATOMIC_RELAXED); /* maybe a bucket's head: _ra_prof_free */
    /* The block is still live (its free has not pushed it anywhere yet): the page stays its page. */
    ra_page_t *pg = page_of_block(addr);
    if (pg != NULL && page_count_add((uintptr_t)pg, -1) == 0) _ra_page_set_flag(pg, RA_PAGE_SAMPLED, false);
    pstack_t *st = &tab->stacks[s->stack];
    if (--st->live_samples == 0) {
      st->live_count = st->live_bytes = 0; /* no rounding left over */
    } else {
      double w = weight(s->size);
      st->live_count -= w;
      st->live_bytes -= w * (double)s->size;
    }
    s->next = sample_free;
    sample_free = i;
    live_samples--;
    return true;
  }
  return false;
}

/* ---- Sampling --------------------------------------------------------------------------------- */

static bool own_frame(uintptr_t a) {
  for (int i = 0; i < own_ranges; i++)
    if (a >= own_lo[i] && a < own_hi[i]) return true;
  return false;
}

void _ra_prof_sample(void *p, size_t size) {
  if (in_prof) {
    /* An allocation made by the unwinder (the countdown is held at -1 while it runs, so every one
     * comes here): served as usual, neither counted nor sampled. */
    atomic_fetch_add_explicit(&nested_allocs, 1, memory_order_relaxed);
    return;
  }
  if (!atomic_load_explicit(&prof_ready, memory_order_acquire)) {
    _ra_prof_countdown = 0; /* not started yet: nothing sampled, and ask again next time */
    return;
  }
  if (!seeded) {
    thread_seed();
    _ra_prof_countdown = draw_countdown() - (int64_t)size;
    if (_ra_prof_countdown >= 0) return;
  }
  int64_t next = draw_countdown();
  _ra_prof_countdown = -1;
  in_prof = true;
  void *buf[MAX_DEPTH + SKIP_MAX];
  int n = unwind(buf, MAX_DEPTH + SKIP_MAX);
  /* Up to and including the last of ramalloc's own frames near the top (the unwinder's entry point
   * may come first: a sanitizer intercepts backtrace()). */
  int skip = 0;
  for (int i = 0; i < n && i < SKIP_MAX; i++)
    if (own_frame((uintptr_t)buf[i])) skip = i + 1;
  /* Statically linked, ramalloc's frames cannot be told from the program's: drop this function and
   * its caller, the allocation path that ran the countdown (ra_malloc and ra_calloc reach it by a
   * tail call, so the next frame is the program's; ra_realloc and the aligned calls stay). */
  if (own_ranges == 0) skip = n < 2 ? n : 2;
  int depth = n - skip;
  if (depth > MAX_DEPTH) depth = MAX_DEPTH;
  if (depth < 0) depth = 0;
  uint64_t h = hash_frames(buf + skip, depth);
  pthread_mutex_lock(&prof_lock);
  uint32_t st = stack_find_add(buf + skip, depth, h);
  if (st == NIL) {
    dropped_samples++;
  } else {
    double w = weight(size);
    tab->stacks[st].alloc_count += w;
    tab->stacks[st].alloc_bytes += w * (double)size;
    total_samples++;
    sample_add((uintptr_t)p, size, st);
  }
  pthread_mutex_unlock(&prof_lock);
  in_prof = false;
  _ra_prof_countdown = next;
}

void _ra_prof_free(void *block) {
  if (!atomic_load_explicit(&prof_ready, memory_order_acquire)) return;
  /* Most blocks of a sampled page were not sampled: an empty bucket says so without the lock, which
   * threads freeing at once would otherwise queue on. A sample of this block was added before the
   * block was handed out, so before its free (the program orders the two), and keeps the bucket's
   * head set until it is removed, here. */
  if (__atomic_load_n(&tab->buckets[bucket_of((uintptr_t)block)], __ATOMIC_RELAXED) == NIL) return;
  pthread_mutex_lock(&prof_lock);
  sample_remove((uintptr_t)block);
  pthread_mutex_unlock(&prof_lock);
}

/* ---- Start ------------------------------------------------------------------------------------ */

void _ra_prof_init(void) {
  long long r = _ra_option(RA_OPT_PROFILE);
  if (r <= 0 && _ra_option(RA_OPT_LEAKS)) r = (long long)RA_PROF_DEFAULT_RATE;
  if (r > 0) {
    rate = (double)r;
    _ra_prof_route = true;
    _ra_direct_bound = 0;
  }
}

static int own_ranges_cb(struct dl_phdr_info *info, size_t size, void *arg) {
  (void)size;
  uintptr_t me = (uintptr_t)arg;
  bool has_me = false;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
    if (ph->p_type == PT_LOAD && me >= lo && me < lo + ph->p_memsz) has_me = true;
  }
  if (!has_me) return 0;
  /* The main program has an empty name: ramalloc is linked into it statically. */
  if (info->dlpi_name == NULL || info->dlpi_name[0] == '\0') return 1;
  for (int i = 0; i < info->dlpi_phnum && own_ranges < 4; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X)) continue;
    own_lo[own_ranges] = info->dlpi_addr + ph->p_vaddr;
    own_hi[own_ranges] = own_lo[own_ranges] + ph->p_memsz;
    own_ranges++;
  }
  return 1;
}

void _ra_prof_fork_prepare(void) { pthread_mutex_lock(&prof_lock); }
void _ra_prof_fork_parent(void) { pthread_mutex_unlock(&prof_lock); }

/* The leak report goes to a copy of stderr made at load time: programs may close stderr on their
 * way out. */
static int report_fd = 2;

/* At load time (init.c; dlopen and the first unwind may allocate, which is safe here). */
void _ra_prof_start(void) {
  if (!_ra_prof_route) return;
  void *m = mmap(NULL, sizeof(tables_t), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED) {
    _ra_fmt_write(2, "ramalloc: profiler: cannot map its tables (errno %d); profiling is off\n", errno);
    return;
  }
  tab = m;
  if (_ra_option(RA_OPT_LEAKS)) {
    report_fd = fcntl(2, F_DUPFD_CLOEXEC, 100);
    if (report_fd < 0) report_fd = 2;
  }
  memset(tab->buckets, 0xff, sizeof tab->buckets);
  seed_base = _ra_os_random();
  dl_iterate_phdr(own_ranges_cb, (void *)(uintptr_t)&_ra_prof_sample);
  in_prof = true;
#if !defined(__SANITIZE_THREAD__)
  /* (ThreadSanitizer builds: libunwind's per-thread cache has a thread-exit destructor that locks a
   * mutex after TSan has let go of the thread, which crashes inside TSan's interceptor.) */
  if (_ra_prof_unwind_find != NULL) {
    *(void **)&unwind = _ra_prof_unwind_find();
    unwinder_name = "libunwind";
    if (unwind == NULL)
      _ra_fmt_write(2, "ramalloc: profiler: libunwind.so.8 not found (Debian: libunwind8); "
                   "stacks come from glibc's backtrace()\n");
  }
#endif
  if (unwind == NULL) {
    unwind = backtrace;
    unwinder_name = "glibc backtrace";
  }
  void *warm[8];
  unwind(warm, 8);
  in_prof = false;
  _ra_report_verbose("ramalloc: profiler on: one sample per %llu bytes on average, stacks from %s\n",
              (unsigned long long)rate, unwinder_name);
  atomic_store_explicit(&prof_ready, true, memory_order_release);
}

/* ---- Output ------------------------------------------------------------------------------------ */

typedef struct wbuf_s {
  int fd;
  int err;
  size_t len;
  char buf[8192];
} wbuf_t;

static void wflush(wbuf_t *w) {
  size_t off = 0;
  while (off < w->len && w->err == 0) {
    ssize_t n = write(w->fd, w->buf + off, w->len - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) w->err = n < 0 ? errno : EIO;
    else off += (size_t)n;
  }
  w->len = 0;
}

static void wraw(wbuf_t *w, const char *s, size_t n) {
  while (n > 0) {
    if (w->len == sizeof w->buf) wflush(w);
    size_t k = sizeof w->buf - w->len;
    if (k > n) k = n;
    memcpy(w->buf + w->len, s, k);
    w->len += k;
    s += k;
    n -= k;
  }
}

#define WFMT(w, ...)                                  \
  do {                                                \
    char line_[512];                                  \
    size_t n_ = _ra_fmt(line_, sizeof line_, __VA_ARGS__); \
    wraw((w), line_, n_ < sizeof line_ ? n_ : sizeof line_ - 1); \
  } while (0)

static unsigned long long round_est(double v) { return v <= 0 ? 0 : (unsigned long long)(v + 0.5); }

/* The profile, prof_lock held. */
static void write_profile_locked(wbuf_t *w) {
  double lc = 0, lb = 0, ac = 0, ab = 0;
  for (size_t i = 0; i < n_stacks; i++) {
    const pstack_t *s = &tab->stacks[i];
    lc += s->live_count;
    lb += s->live_bytes;
    ac += s->alloc_count;
    ab += s->alloc_bytes;
  }
  WFMT(w, "heap profile: %llu: %llu [%llu: %llu] @ heapprofile\n", round_est(lc), round_est(lb), round_est(ac),
       round_est(ab));
  for (size_t i = 0; i < n_stacks; i++) {
    const pstack_t *s = &tab->stacks[i];
    WFMT(w, "%llu: %llu [%llu: %llu] @", round_est(s->live_count), round_est(s->live_bytes),
         round_est(s->alloc_count), round_est(s->alloc_bytes));
    for (uint32_t k = 0; k < s->depth; k++) {
      uintptr_t a = tab->frames[s->frames + k];
      /* Return addresses; pprof moves all but the first back into the call itself. */
      WFMT(w, " 0x%lx", (unsigned long)(k == 0 && a > 0 ? a - 1 : a));
    }
    wraw(w, "\n", 1);
  }
}

static void write_maps(wbuf_t *w) {
  wraw(w, "\nMAPPED_LIBRARIES:\n", 19);
  int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  for (;;) {
    if (w->len == sizeof w->buf) wflush(w);
    ssize_t n = read(fd, w->buf + w->len, sizeof w->buf - w->len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    w->len += (size_t)n;
  }
  close(fd);
}

int ra_profile_write(int fd) {
  if (!atomic_load_explicit(&prof_ready, memory_order_acquire)) return EINVAL;
  wbuf_t w;
  w.fd = fd;
  w.err = 0;
  w.len = 0;
  bool was = in_prof;
  in_prof = true;
  pthread_mutex_lock(&prof_lock);
  write_profile_locked(&w);
  pthread_mutex_unlock(&prof_lock);
  write_maps(&w); /* without the lock: reading /proc/self/maps takes the kernel's mmap lock */
  wflush(&w);
  in_prof = was;
  return w.err;
}

/* The profile file: RAMALLOC_PROFILE_FILE or ramalloc.%p.heap, "%p" the process id, ".n" added for
 * the n-th signal dump. Written to a temporary name and renamed into place. */
static int write_profile_file(unsigned serial) {
  const char *pattern = _ra_option_str(RA_OPT_PROFILE_FILE);
  if (pattern == NULL) pattern = "ramalloc.%p.heap";
  char path[4096], tmp[4200];
  size_t len = 0;
  for (const char *p = pattern; *p != '\0' && len + 32 < sizeof path; p++) {
    if (p[0] == '%' && p[1] == 'p') {
      len += _ra_fmt(path + len, sizeof path - len, "%d", (int)getpid());
      p++;
    } else {
      path[len++] = *p;
    }
  }
  path[len] = '\0';
  if (serial > 0) _ra_fmt(path + len, sizeof path - len, ".%u", serial);
  _ra_fmt(tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid());
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  int err = fd < 0 ? errno : ra_profile_write(fd);
  if (fd >= 0 && close(fd) != 0 && err == 0) err = errno;
  if (fd >= 0 && err == 0 && rename(tmp, path) != 0) err = errno;
  if (fd >= 0 && err != 0) unlink(tmp);
  if (err != 0) _ra_fmt_write(2, "ramalloc: could not write the heap profile to %s (errno %d)\n", path, err);
  else _ra_report_verbose("ramalloc: heap profile written to %s\n", path);
  return err;
}

void _ra_prof_dump_configured(unsigned serial) {
  if (atomic_load_explicit(&prof_ready, memory_order_acquire)) write_profile_file(serial);
}

/* ---- Leak report ------------------------------------------------------------------------------ */

#define LEAK_SITES 25

typedef struct leak_site_s {
  double bytes, count;
  uint32_t samples, depth;
  uintptr_t frames[MAX_DEPTH];
} leak_site_t;

static leak_site_t leak_sites[LEAK_SITES];

/* "0x...  function+0x12 (module+0x3456)" from dladdr: exported symbols only, nothing allocated. */
static void write_frame(wbuf_t *w, uintptr_t a) {
  Dl_info di;
  uintptr_t q = a > 0 ? a - 1 : a; /* inside the call instruction */
  WFMT(w, "      0x%lx", (unsigned long)a);
  if (dladdr == NULL || dladdr((void *)q, &di) == 0) {
    wraw(w, "\n", 1);
    return;
  }
  if (di.dli_sname != NULL) WFMT(w, " %s+0x%lx", di.dli_sname, (unsigned long)(q - (uintptr_t)di.dli_saddr));
  const char *mod = di.dli_fname != NULL ? di.dli_fname : "?";
  const char *slash = strrchr(mod, '/');
  WFMT(w, " (%s+0x%lx)\n", slash ? slash + 1 : mod, (unsigned long)(q - (uintptr_t)di.dli_fbase));
}

static void leak_report(int fd) {
  wbuf_t w;
  w.fd = fd;
  w.err = 0;
  w.len = 0;
  size_t nsites = 0, shown = 0;
  double bytes = 0, count = 0;
  size_t samples;
  pthread_mutex_lock(&prof_lock);
  for (size_t i = 0; i < n_stacks; i++) {
    const pstack_t *s = &tab->stacks[i];
    if (s->live_samples == 0) continue;
    bytes += s->live_bytes;
    count += s->live_count;
    /* insertion into the sorted prefix of `order` (most bytes first) */
    size_t j = nsites++;
    while (j > 0 && tab->stacks[tab->order[j - 1]].live_bytes < s->live_bytes) {
      tab->order[j] = tab->order[j - 1];
      j--;
    }
    tab->order[j] = (uint32_t)i;
  }
  samples = live_samples;
  for (; shown < nsites && shown < LEAK_SITES; shown++) {
    const pstack_t *s = &tab->stacks[tab->order[shown]];
    leak_site_t *l = &leak_sites[shown];
    l->bytes = s->live_bytes;
    l->count = s->live_count;
    l->samples = s->live_samples;
    l->depth = s->depth;
    memcpy(l->frames, &tab->frames[s->frames], s->depth * sizeof(uintptr_t));
  }
  pthread_mutex_unlock(&prof_lock);
  /* Symbolised with the lock released: dladdr takes the dynamic loader's lock, and a thread inside
   * dlopen may be allocating (and sampling) while it holds it. */
  if (nsites == 0) {
    WFMT(&w, "ramalloc: leak report: no sampled block is live at exit (one sample per %llu bytes)\n",
         (unsigned long long)rate);
  } else {
    WFMT(&w,
         "ramalloc: leak report: %zu call sites hold sampled blocks at exit: about %llu bytes in %llu blocks "
         "(estimated from %zu samples, one per %llu bytes)\n",
         nsites, round_est(bytes), round_est(count), samples, (unsigned long long)rate);
  }
  for (size_t i = 0; i < shown; i++) {
    const leak_site_t *l = &leak_sites[i];
    WFMT(&w, "  about %llu bytes in %llu blocks (%u samples) allocated at:\n", round_est(l->bytes),
         round_est(l->count), l->samples);
    for (uint32_t k = 0; k < l->depth; k++) write_frame(&w, l->frames[k]);
  }
  if (shown < nsites) WFMT(&w, "  [%zu more call sites]\n", nsites - shown);
  wflush(&w);
}

/* At exit (init.c). */
void _ra_prof_end(void) {
  if (!atomic_load_explicit(&prof_ready, memory_order_acquire)) return;
  in_prof = true; /* nothing more is sampled on this thread */
  if (_ra_option(RA_OPT_PROFILE) > 0 || _ra_option_str(RA_OPT_PROFILE_FILE) != NULL) write_profile_file(0);
  if (_ra_option(RA_OPT_LEAKS)) leak_report(report_fd);
  _ra_report_verbose("ramalloc: profiler: %zu samples taken, %zu live, %zu stacks, %zu dropped (tables full), "
              "%zu allocations by the unwinder\n",
              total_samples, live_samples, n_stacks, dropped_samples, atomic_load(&nested_allocs));
}

/* ---- Call sites for the layout dump (inspect.c) ------------------------------------------------ */

/* A dump takes a snapshot of the live samples sorted by address (under prof_lock, then released),
 * so that each page finds its samples by a binary search while the walk holds the allocator's locks.
 * snap_lock keeps one dump at a time on the scratch array. */
static pthread_mutex_t snap_lock = PTHREAD_MUTEX_INITIALIZER;
static size_t snap_n;
static bool snap_active;

static void snap_sort(snap_t *a, size_t n) {
  /* heap sort by address: no allocation, n log n for a million samples */
  for (size_t start = n / 2; start-- > 0;) {
    for (size_t root = start;;) {
      size_t child = 2 * root + 1;
      if (child >= n) break;
      if (child + 1 < n && a[child + 1].addr > a[child].addr) child++;
      if (a[root].addr >= a[child].addr) break;
      snap_t t = a[root];
      a[root] = a[child];
      a[child] = t;
      root = child;
    }
  }
  for (size_t end = n; end-- > 1;) {
    snap_t t = a[0];
    a[0] = a[end];
    a[end] = t;
    for (size_t root = 0;;) {
      size_t child = 2 * root + 1;
      if (child >= end) break;
      if (child + 1 < end && a[child + 1].addr > a[child].addr) child++;
      if (a[root].addr >= a[child].addr) break;
      t = a[root];
      a[root] = a[child];
      a[child] = t;
      root = child;
    }
  }
}

bool _ra_prof_sites_begin(void) {
  if (!atomic_load_explicit(&prof_ready, memory_order_acquire)) return false;
  bool was = in_prof;
  in_prof = true;
  pthread_mutex_lock(&snap_lock);
  pthread_mutex_lock(&prof_lock);
  size_t n = 0;
  for (size_t b = 0; b < SAMPLE_BUCKETS; b++)
    for (uint32_t i = tab->buckets[b]; i != NIL; i = tab->samples[i].next) {
      const sample_t *sm = &tab->samples[i];
      tab->snap[n].addr = sm->addr;
      tab->snap[n].bytes = weight(sm->size) * (double)sm->size;
      tab->snap[n].stack = sm->stack;
      n++;
    }
  pthread_mutex_unlock(&prof_lock);
  snap_sort(tab->snap, n);
  snap_n = n;
  snap_active = true;
  in_prof = was;
  return true;
}

/* The child of a fork: a layout dump another thread had under way (holding snap_lock) does not
 * exist there, so the child's own dumps must not wait for it. (snap_lock is not taken in the fork's
 * prepare: a dump holds it while it takes the allocator's locks, which the prepare of the
 * allocator's own handlers may already hold.) */
void _ra_prof_fork_child(void) {
  pthread_mutex_unlock(&prof_lock);
  pthread_mutex_init(&snap_lock, NULL);
  snap_active = false;
}

void _ra_prof_sites_end(void) {
  if (!snap_active) return;
  snap_active = false;
  pthread_mutex_unlock(&snap_lock);
}

uint32_t _ra_prof_range_site(uintptr_t lo, uintptr_t hi, size_t *bytes) {
  *bytes = 0;
  if (!snap_active) return UINT32_MAX;
  size_t a = 0, b = snap_n; /* first sample at or above lo */
  while (a < b) {
    size_t m = a + (b - a) / 2;
    if (tab->snap[m].addr < lo) a = m + 1;
    else b = m;
  }
  enum { K = 16 };
  uint32_t ids[K];
  double sums[K];
  int k = 0;
  for (size_t i = a; i < snap_n && tab->snap[i].addr < hi; i++) {
    int j = 0;
    while (j < k && ids[j] != tab->snap[i].stack) j++;
    if (j == k) {
      if (k == K) continue; /* more than 16 sites on one page: the rest are not weighed */
      ids[k] = tab->snap[i].stack;
      sums[k++] = 0;
    }
    sums[j] += tab->snap[i].bytes;
  }
  if (k == 0) return UINT32_MAX;
  int best = 0;
  for (int j = 1; j < k; j++)
    if (sums[j] > sums[best]) best = j;
  *bytes = (size_t)round_est(sums[best]);
  return ids[best];
}

/* The sites (stacks with live samples) as JSON objects, most bytes first, each with its frames and
 * its first frame named by dladdr. Called between _ra_prof_sites_begin and _end, with none of the
 * allocator's locks held (dladdr takes the loader's lock). */
void _ra_prof_sites_json(void (*emit)(void *arg, const char *text), void *arg) {
  if (!snap_active) return;
  pthread_mutex_lock(&prof_lock);
  size_t nsites = 0;
  for (size_t i = 0; i < n_stacks; i++) {
    const pstack_t *s = &tab->stacks[i];
    if (s->live_samples == 0) continue;
    size_t j = nsites++;
    while (j > 0 && tab->stacks[tab->order[j - 1]].live_bytes < s->live_bytes) {
      tab->order[j] = tab->order[j - 1];
      j--;
    }
    tab->order[j] = (uint32_t)i;
  }
  pthread_mutex_unlock(&prof_lock);
  /* order[] and the stacks' frames stay valid: order is only written under snap_lock by a dump, and
   * frames are never moved; the estimates are read again without the lock (a moment's view). */
  char line[768];
  for (size_t n = 0; n < nsites; n++) {
    uint32_t id = tab->order[n];
    const pstack_t *s = &tab->stacks[id];
    size_t len = _ra_fmt(line, sizeof line, "%s\n    {\"id\": %u, \"live_bytes\": %llu, \"live_blocks\": %llu, \"where\": \"",
                         n ? "," : "", id, round_est(s->live_bytes), round_est(s->live_count));
    Dl_info di;
    uintptr_t a = s->depth > 0 ? tab->frames[s->frames] : 0;
    if (a != 0 && dladdr != NULL && dladdr((void *)(a - 1), &di) != 0) {
      const char *mod = di.dli_fname != NULL ? di.dli_fname : "?";
      const char *slash = strrchr(mod, '/');
      if (di.dli_sname != NULL)
        len += _ra_fmt(line + len, sizeof line - len, "%s+0x%lx ", di.dli_sname,
                       (unsigned long)(a - 1 - (uintptr_t)di.dli_saddr));
      len += _ra_fmt(line + len, sizeof line - len, "(%s+0x%lx)", slash ? slash + 1 : mod,
                     (unsigned long)(a - 1 - (uintptr_t)di.dli_fbase));
    } else {
      len += _ra_fmt(line + len, sizeof line - len, "0x%lx", (unsigned long)a);
    }
    _ra_fmt(line + len, sizeof line - len, "\", \"frames\": [");
    emit(arg, line);
    for (uint32_t k = 0; k < s->depth; k++) {
      _ra_fmt(line, sizeof line, "%s\"0x%lx\"", k ? ", " : "", (unsigned long)tab->frames[s->frames + k]);
      emit(arg, line);
    }
    emit(arg, "]}");
  }
}
