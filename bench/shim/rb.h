/* rb.h: a C interface to Google Benchmark, so that ramalloc's microbenchmarks are written in C.
 *
 * A benchmark is a C function `void fn(rb_state *st, void *arg)` registered under a name with
 * rb_register(). Its body looks like Google Benchmark's:
 *
 *     static void bm_pair(rb_state *st, void *arg) {
 *       size_t n = (size_t)rb_arg(st, 0);
 *       while (rb_keep_running_batch(st, 32))
 *         for (int i = 0; i < 32; i++) { void *p = malloc(n); rb_escape(p); free(p); }
 *       rb_set_items_processed(st, rb_iterations(st));
 *     }
 *
 * The registration helpers return the rb_bench they were given so calls can be nested:
 *     rb_add_range(rb_range_multiplier(rb_register("pair", bm_pair, NULL), 4), 8, 1 << 20);
 *
 * Multi-threaded benchmarks (rb_threads / rb_thread_range) run the function in every thread at
 * once. Code before the first rb_keep_running* call runs before a barrier that all threads cross
 * together, and the loop ends with another barrier, so thread 0 may set shared state up before
 * the loop and tear it down after it. */
#ifndef RB_H
#define RB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rb_state rb_state; /* a running benchmark::State (one per thread) */
typedef struct rb_bench rb_bench; /* a registered benchmark family */
typedef void (*rb_fn)(rb_state *st, void *arg);

/* ---- Program entry --------------------------------------------------------------------------- */

/* Parse and remove --benchmark_* options from argv (see --help). */
void rb_initialize(int *argc, char **argv);
/* Complain about arguments left over after rb_initialize; true if there were any. */
bool rb_report_unrecognized(int argc, char **argv);
/* Run every registered benchmark that matches --benchmark_filter; returns how many ran. */
size_t rb_run_all(void);
void rb_shutdown(void);
/* rb_initialize + rb_report_unrecognized + rb_run_all + rb_shutdown; returns an exit status. */
int rb_main(int argc, char **argv);

/* ---- Registration ---------------------------------------------------------------------------- */

rb_bench *rb_register(const char *name, rb_fn fn, void *arg);
rb_bench *rb_add_arg(rb_bench *b, int64_t x);              /* one run with range(0) = x */
rb_bench *rb_add_args2(rb_bench *b, int64_t x, int64_t y); /* one run with range(0,1) = x,y */
rb_bench *rb_add_range(rb_bench *b, int64_t lo, int64_t hi);          /* lo, lo*m, ..., hi */
rb_bench *rb_add_dense_range(rb_bench *b, int64_t lo, int64_t hi, int step);
rb_bench *rb_add_ranges2(rb_bench *b, int64_t lo0, int64_t hi0, int64_t lo1, int64_t hi1);
rb_bench *rb_range_multiplier(rb_bench *b, int m);
rb_bench *rb_arg_name(rb_bench *b, const char *name);
rb_bench *rb_arg_names2(rb_bench *b, const char *name0, const char *name1);
rb_bench *rb_threads(rb_bench *b, int n);                /* run in exactly n threads */
rb_bench *rb_thread_range(rb_bench *b, int lo, int hi);  /* lo, 2*lo, ..., hi threads */
rb_bench *rb_use_real_time(rb_bench *b);                 /* wall clock (use for threads) */
rb_bench *rb_measure_process_cpu_time(rb_bench *b);
rb_bench *rb_min_time(rb_bench *b, double seconds);
rb_bench *rb_fixed_iterations(rb_bench *b, int64_t n);
rb_bench *rb_repetitions(rb_bench *b, int n);

typedef enum { RB_NS, RB_US, RB_MS, RB_S } rb_unit;
rb_bench *rb_unit_of_time(rb_bench *b, rb_unit u);

/* ---- Inside a benchmark function ------------------------------------------------------------- */

bool rb_keep_running(rb_state *st);
/* True while n more iterations should run (the last batch may overshoot the target). */
bool rb_keep_running_batch(rb_state *st, int64_t n);
void rb_pause_timing(rb_state *st);
void rb_resume_timing(rb_state *st);
void rb_skip_with_error(rb_state *st, const char *msg);
bool rb_error_occurred(rb_state *st);

int64_t rb_arg(rb_state *st, size_t pos); /* range(pos) */
int rb_thread_index(rb_state *st);
int rb_thread_count(rb_state *st);
int64_t rb_iterations(rb_state *st); /* iterations completed by this thread so far */

void rb_set_items_processed(rb_state *st, int64_t items);
void rb_set_bytes_processed(rb_state *st, int64_t bytes);
void rb_set_label(rb_state *st, const char *label);

/* User counter flags (combine with |); they mirror benchmark::Counter::Flags. */
enum {
  RB_COUNTER_DEFAULT = 0,
  RB_COUNTER_RATE = 1 << 0,           /* divided by the run's duration */
  RB_COUNTER_AVG_THREADS = 1 << 1,    /* divided by the number of threads */
  RB_COUNTER_PER_ITERATION = 1 << 2,  /* divided by the number of iterations */
  RB_COUNTER_INVERT = 1 << 3          /* 1/x, applied last */
};
void rb_set_counter(rb_state *st, const char *name, double value, unsigned flags);

/* ---- Optimisation barriers ------------------------------------------------------------------- */

/* Make the compiler believe p escapes and memory it points to may be read and written, so an
 * allocation whose result is otherwise unused cannot be removed. */
static inline void rb_escape(const void *p) {
#if defined(__GNUC__) || defined(__clang__)
  __asm__ __volatile__("" : : "r"(p) : "memory");
#else
  static volatile const void *sink;
  sink = p;
#endif
}

/* Make the compiler assume all memory was read and written. */
static inline void rb_clobber(void) {
#if defined(__GNUC__) || defined(__clang__)
  __asm__ __volatile__("" : : : "memory");
#endif
}

#ifdef __cplusplus
}
#endif

#endif /* RB_H */
