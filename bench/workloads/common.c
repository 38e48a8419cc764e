/* Shared helpers for the workload programs; see common.h. */
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static const char *g_name = "workload";

static void usage(const char *name) {
  fprintf(stderr,
          "usage: %s [tiny|quick|full|FACTOR] [-t THREADS] [-s SEED]\n"
          "  tiny   smoke-test size (well under a second)\n"
          "  quick  default size (about a second)\n"
          "  full   several times quick\n"
          "  FACTOR a number multiplying the quick amount of work (e.g. 0.5, 3)\n",
          name);
}

static int parse_int(const char *s, const char *what) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || *end || v < 1 || v > 4096) {
    fprintf(stderr, "%s: bad %s '%s'\n", g_name, what, s);
    exit(WL_EXIT_USAGE);
  }
  return (int)v;
}

void wl_parse(wl_args *a, const char *name, int argc, char **argv, int default_threads,
              int min_threads) {
  g_name = name;
  a->name = name;
  a->scale_name = "quick";
  a->scale = 1.0;
  a->threads = default_threads;
  a->seed = 42;
  if (a->threads <= 0) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    a->threads = n > 0 ? (int)n : 1;
  }
  for (int i = 1; i < argc; i++) {
    const char *s = argv[i];
    if (!strcmp(s, "-h") || !strcmp(s, "--help")) {
      usage(name);
      exit(0);
    } else if ((!strcmp(s, "-t") || !strcmp(s, "--threads")) && i + 1 < argc) {
      a->threads = parse_int(argv[++i], "thread count");
    } else if ((!strcmp(s, "-s") || !strcmp(s, "--seed")) && i + 1 < argc) {
      a->seed = strtoull(argv[++i], NULL, 0);
    } else if (!strcmp(s, "tiny")) {
      a->scale_name = s;
      a->scale = 0.02;
    } else if (!strcmp(s, "quick")) {
      a->scale_name = s;
      a->scale = 1.0;
    } else if (!strcmp(s, "full")) {
      a->scale_name = s;
      a->scale = 5.0;
    } else {
      char *end;
      double v = strtod(s, &end);
      if (end == s || *end || !(v > 0) || v > 1e6) {
        usage(name);
        exit(WL_EXIT_USAGE);
      }
      a->scale_name = s;
      a->scale = v;
    }
  }
  if (a->threads < min_threads) a->threads = min_threads;
}

size_t wl_scaled(const wl_args *a, double base, size_t min) {
  double v = base * a->scale;
  return v < (double)min ? min : (size_t)v;
}

/* ---- Failure ------------------------------------------------------------------------------------ */

void wl_corrupt(const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "%s: CORRUPTION: ", g_name);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  fflush(stderr);
  _exit(WL_EXIT_CORRUPT);
}

void wl_nomem(size_t size) {
  fprintf(stderr, "%s: ALLOCATION FAILED: %zu bytes (errno %d)\n", g_name, size, errno);
  fflush(stderr);
  _exit(WL_EXIT_NOMEM);
}

void wl_die(const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "%s: error: ", g_name);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  exit(1);
}

void *wl_malloc(size_t n) {
  void *p = malloc(n);
  if (!p) wl_nomem(n);
  return p;
}

void *wl_calloc(size_t count, size_t n) {
  void *p = calloc(count, n);
  if (!p) wl_nomem(count * n);
  return p;
}

void *wl_realloc(void *p, size_t n) {
  void *q = realloc(p, n);
  if (!q && n) wl_nomem(n);
  return q;
}

/* ---- Random numbers ------------------------------------------------------------------------------ */

void wl_rng_seed(wl_rng *r, uint64_t seed, uint64_t stream) {
  /* splitmix64 step: spreads nearby (seed, stream) pairs apart; never yields a zero state. */
  uint64_t z = seed + 0x9E3779B97F4A7C15ULL * (stream + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  z ^= z >> 31;
  r->s = z ? z : 0x1234567;
}

uint64_t wl_log_uniform(wl_rng *r, uint64_t lo, uint64_t hi) {
  if (lo < 1) lo = 1;
  if (hi <= lo) return lo;
  int blo = 63 - __builtin_clzll(lo), bhi = 63 - __builtin_clzll(hi);
  int b = blo + (int)wl_below(r, (uint64_t)(bhi - blo + 1));
  uint64_t base = 1ULL << b;
  uint64_t v = base + wl_below(r, base); /* uniform within [2^b, 2^(b+1)) */
  if (v < lo) v = lo;
  if (v > hi) v = hi;
  return v;
}

size_t wl_typical_size(wl_rng *r, size_t max) {
  uint64_t k = wl_below(r, 100);
  size_t n;
  if (k < 60)
    n = wl_between(r, 8, 128);
  else if (k < 85)
    n = wl_between(r, 129, 1024);
  else if (k < 97)
    n = wl_between(r, 1025, 8192);
  else
    n = wl_log_uniform(r, 8193, max > 8193 ? max : 8193);
  return n > max ? max : n;
}

/* ---- Content patterns ---------------------------------------------------------------------------- */

/* Word k of a block with tag t holds base(t) ^ (k * K): cheap, vectorisable, and distinct for
 * different tags and positions. A trailing partial word holds the low bytes of its value. */
#define WL_K 0x9E3779B97F4A7C15ULL

static inline uint64_t word_at(uint64_t base, size_t k) { return base ^ ((uint64_t)k * WL_K); }

static void fill_words(unsigned char *p, size_t from, size_t to, uint64_t base) {
  /* bytes [from, to), from a multiple of 8 */
  size_t k = from / 8, nfull = to / 8;
  for (; k < nfull; k++) {
    uint64_t v = word_at(base, k);
    memcpy(p + 8 * k, &v, 8);
  }
  if (to % 8 && to > 8 * nfull && 8 * nfull >= from) {
    uint64_t v = word_at(base, nfull);
    memcpy(p + 8 * nfull, &v, to % 8);
  }
}

static size_t check_words(const unsigned char *p, size_t from, size_t to, uint64_t base) {
  size_t k = from / 8, nfull = to / 8;
  for (; k < nfull; k++) {
    uint64_t v;
    memcpy(&v, p + 8 * k, 8);
    if (v != word_at(base, k)) {
      uint64_t w = word_at(base, k);
      for (size_t b = 0; b < 8; b++)
        if (((v ^ w) >> (8 * b)) & 0xff) return 8 * k + b;
    }
  }
  if (to % 8 && 8 * nfull >= from) {
    uint64_t v = 0, w = word_at(base, nfull);
    memcpy(&v, p + 8 * nfull, to % 8);
    for (size_t b = 0; b < to % 8; b++)
      if (((v ^ w) >> (8 * b)) & 0xff) return 8 * nfull + b;
  }
  return (size_t)-1;
}

void wl_fill(void *p, size_t n, uint64_t tag) { fill_words(p, 0, n, wl_mix(tag)); }

size_t wl_check(const void *p, size_t n, uint64_t tag) { return check_words(p, 0, n, wl_mix(tag)); }

void wl_fill_sparse(void *p, size_t n, uint64_t tag) {
  if (n <= 4096) {
    wl_fill(p, n, tag);
    return;
  }
  unsigned char *c = p;
  uint64_t base = wl_mix(tag);
  fill_words(c, 0, 64, base);
  for (size_t o = 4096; o + 8 <= n - 64; o += 4096) fill_words(c, o, o + 8, base);
  fill_words(c, (n - 64) & ~(size_t)7, n, base);
}

size_t wl_check_sparse(const void *p, size_t n, uint64_t tag) {
  if (n <= 4096) return wl_check(p, n, tag);
  const unsigned char *c = p;
  uint64_t base = wl_mix(tag);
  size_t bad = check_words(c, 0, 64, base);
  if (bad != (size_t)-1) return bad;
  for (size_t o = 4096; o + 8 <= n - 64; o += 4096)
    if ((bad = check_words(c, o, o + 8, base)) != (size_t)-1) return bad;
  return check_words(c, (n - 64) & ~(size_t)7, n, base);
}

size_t wl_check_sparse_prefix(const void *p, size_t n, size_t keep, uint64_t tag) {
  if (keep >= n) return wl_check_sparse(p, n, tag);
  if (n <= 4096) return wl_check(p, keep, tag);
  const unsigned char *c = p;
  uint64_t base = wl_mix(tag);
  size_t bad = check_words(c, 0, keep < 64 ? keep : 64, base);
  if (bad != (size_t)-1) return bad;
  for (size_t o = 4096; o + 8 <= n - 64 && o + 8 <= keep; o += 4096)
    if ((bad = check_words(c, o, o + 8, base)) != (size_t)-1) return bad;
  return (size_t)-1;
}

static void report_bad(const void *p, size_t n, uint64_t tag, size_t bad, const char *what) {
  const unsigned char *c = p;
  uint64_t base = wl_mix(tag);
  unsigned want = (unsigned)((word_at(base, bad / 8) >> (8 * (bad % 8))) & 0xff);
  wl_corrupt("%s: block %p of %zu bytes (tag %#llx): byte %zu is 0x%02x, expected 0x%02x", what,
             p, n, (unsigned long long)tag, bad, c[bad], want);
}

void wl_verify(const void *p, size_t n, uint64_t tag, const char *what) {
  size_t bad = wl_check(p, n, tag);
  if (bad != (size_t)-1) report_bad(p, n, tag, bad, what);
}

void wl_verify_sparse(const void *p, size_t n, uint64_t tag, const char *what) {
  size_t bad = wl_check_sparse(p, n, tag);
  if (bad != (size_t)-1) report_bad(p, n, tag, bad, what);
}

/* ---- Time and memory ----------------------------------------------------------------------------- */

double wl_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void wl_sleep(double seconds) {
  struct timespec ts;
  ts.tv_sec = (time_t)seconds;
  ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
  while (nanosleep(&ts, &ts) && errno == EINTR) {
  }
}

size_t wl_rss_bytes(void) {
  /* read(2) into a stack buffer: no stdio, so measuring does not allocate */
  char buf[128];
  int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = 0;
  unsigned long size = 0, resident = 0;
  if (sscanf(buf, "%lu %lu", &size, &resident) != 2) return 0;
  return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

double wl_mib(size_t bytes) { return (double)bytes / (1024.0 * 1024.0); }

size_t wl_maxrss_bytes(void) {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru)) return 0;
  return (size_t)ru.ru_maxrss * 1024; /* Linux reports KiB */
}

/* ---- Threads ------------------------------------------------------------------------------------- */

void wl_run_threads(int n, void *(*fn)(void *), void *args, size_t stride) {
  pthread_t *t = wl_malloc(sizeof(pthread_t) * (size_t)n);
  for (int i = 0; i < n; i++) {
    int e = pthread_create(&t[i], NULL, fn, (char *)args + (size_t)i * stride);
    if (e) wl_die("pthread_create: %s", strerror(e));
  }
  for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
  free(t);
}

/* ---- Summary --------------------------------------------------------------------------------------- */

void wl_summary(const wl_args *a, double seconds, const char *extra_fmt, ...) {
  char extra[512] = "";
  if (extra_fmt) {
    va_list ap;
    va_start(ap, extra_fmt);
    vsnprintf(extra, sizeof extra, extra_fmt, ap);
    va_end(ap);
  }
  printf("%s: ok scale=%s threads=%d time=%.3fs maxrss_mib=%.1f%s%s\n", a->name, a->scale_name,
         a->threads, seconds, wl_mib(wl_maxrss_bytes()), extra[0] ? " " : "", extra);
  fflush(stdout);
}
