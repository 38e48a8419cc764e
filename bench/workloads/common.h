/* Shared helpers for ramalloc's workload programs.
 *
 * Each workload is a standalone program that uses the plain malloc family, so any allocator can be
 * put under it with LD_PRELOAD. Usage of every workload:
 *
 *     wl-NAME [tiny|quick|full|FACTOR] [-t THREADS] [-s SEED]
 *
 * The scale sets the amount of work: tiny (a smoke test, well under a second), quick (the default,
 * about a second), full (several times quick), or a number that multiplies quick's amount. Each
 * program checks what it reads back against what it wrote, exits 3 on corruption and 4 when an
 * allocation fails, and on success prints one line to stdout:
 *
 *     NAME: ok scale=quick threads=2 time=0.532s maxrss_mib=45.1 key=value ...
 *
 * The key=value pairs after the fixed fields are workload-specific results (the runner parses them). */
#ifndef WL_COMMON_H
#define WL_COMMON_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define WL_EXIT_USAGE 2
#define WL_EXIT_CORRUPT 3
#define WL_EXIT_NOMEM 4

typedef struct wl_args {
  const char *name;       /* workload name, for messages */
  const char *scale_name; /* "tiny", "quick", "full" or the number given */
  double scale;           /* multiplier of the quick amount of work */
  int threads;
  uint64_t seed;
} wl_args;

/* Parse the command line. default_threads <= 0 means the number of online CPUs; min_threads is
 * the smallest count the workload accepts (raised silently). */
void wl_parse(wl_args *a, const char *name, int argc, char **argv, int default_threads,
              int min_threads);

/* base * scale, at least `min`. */
size_t wl_scaled(const wl_args *a, double base, size_t min);

/* ---- Failure ---------------------------------------------------------------------------------- */

/* Report corruption and exit WL_EXIT_CORRUPT. */
__attribute__((noreturn, format(printf, 1, 2))) void wl_corrupt(const char *fmt, ...);
/* Report an allocation failure and exit WL_EXIT_NOMEM. */
__attribute__((noreturn)) void wl_nomem(size_t size);
/* Report a harness error (a system call failed) and exit 1. */
__attribute__((noreturn, format(printf, 1, 2))) void wl_die(const char *fmt, ...);

/* malloc/calloc/realloc that exit on failure. */
void *wl_malloc(size_t n);
void *wl_calloc(size_t count, size_t n);
void *wl_realloc(void *p, size_t n);

/* ---- Random numbers: xorshift64* seeded through splitmix64 ----------------------------------- */

typedef struct wl_rng {
  uint64_t s;
} wl_rng;

void wl_rng_seed(wl_rng *r, uint64_t seed, uint64_t stream);
static inline uint64_t wl_rand(wl_rng *r) {
  uint64_t x = r->s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  r->s = x;
  return x * 0x2545F4914F6CDD1DULL;
}
/* Uniform in [0, n) (n > 0). */
static inline uint64_t wl_below(wl_rng *r, uint64_t n) {
  return (uint64_t)(((unsigned __int128)wl_rand(r) * n) >> 64);
}
/* Uniform in [lo, hi]. */
static inline uint64_t wl_between(wl_rng *r, uint64_t lo, uint64_t hi) {
  return lo + wl_below(r, hi - lo + 1);
}
/* Log-uniform in [lo, hi]: every power of two between them is about equally likely. */
uint64_t wl_log_uniform(wl_rng *r, uint64_t lo, uint64_t hi);
/* A size drawn from a distribution shaped like a typical program's: mostly small blocks
 * (16-128 B), fewer medium ones, rarely up to `max`. */
size_t wl_typical_size(wl_rng *r, size_t max);

/* ---- Content patterns -------------------------------------------------------------------------- */

/* 64-bit mix of a tag, used to derive a block's content from a tag. */
static inline uint64_t wl_mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

/* Fill all n bytes of p with a pattern derived from tag; wl_check verifies it and returns the
 * offset of the first wrong byte, or (size_t)-1 when all are right. */
void wl_fill(void *p, size_t n, uint64_t tag);
size_t wl_check(const void *p, size_t n, uint64_t tag);

/* Sparse variant for big blocks: the first and last 64 bytes and one 8-byte word in every 4 KiB
 * page (so every page is touched). For n <= 4096 it is wl_fill / wl_check. */
void wl_fill_sparse(void *p, size_t n, uint64_t tag);
size_t wl_check_sparse(const void *p, size_t n, uint64_t tag);

/* Check what wl_fill_sparse(p, n, tag) wrote below offset keep (after a realloc to keep bytes). */
size_t wl_check_sparse_prefix(const void *p, size_t n, size_t keep, uint64_t tag);

/* Check and die with a precise message when wrong. what: a short description of the block. */
void wl_verify(const void *p, size_t n, uint64_t tag, const char *what);
void wl_verify_sparse(const void *p, size_t n, uint64_t tag, const char *what);

/* ---- Time and memory ----------------------------------------------------------------------------- */

double wl_now(void);                 /* monotonic seconds */
void wl_sleep(double seconds);
size_t wl_rss_bytes(void);           /* resident set size now (/proc/self/statm) */
size_t wl_maxrss_bytes(void);        /* peak resident set size (getrusage) */
double wl_mib(size_t bytes);

/* ---- Threads ------------------------------------------------------------------------------------- */

/* Run fn in n threads and join them; thread i gets (char *)args + i * stride. */
void wl_run_threads(int n, void *(*fn)(void *), void *args, size_t stride);

/* ---- Summary --------------------------------------------------------------------------------------- */

/* Print the one-line summary. extra_fmt formats the workload-specific key=value pairs (may be
 * NULL). */
__attribute__((format(printf, 3, 4))) void wl_summary(const wl_args *a, double seconds,
                                                      const char *extra_fmt, ...);

#endif /* WL_COMMON_H */
