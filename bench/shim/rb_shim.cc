// rb_shim.cc: the one C++ file of the benchmark suite. It implements the C API of rb.h on top of
// Google Benchmark; every benchmark itself is written in C.
#include "rb.h"

#include <benchmark/benchmark.h>

#include <string>
#include <vector>

struct rb_state {};  // never defined: an rb_state* is a benchmark::State* in disguise
struct rb_bench {};  // likewise for benchmark::internal::Benchmark*

namespace {

inline benchmark::State &S(rb_state *st) { return *reinterpret_cast<benchmark::State *>(st); }
inline benchmark::internal::Benchmark *B(rb_bench *b) {
  return reinterpret_cast<benchmark::internal::Benchmark *>(b);
}
inline rb_bench *C(benchmark::internal::Benchmark *b) { return reinterpret_cast<rb_bench *>(b); }

benchmark::Counter::Flags counter_flags(unsigned f) {
  int g = benchmark::Counter::kDefaults;
  if (f & RB_COUNTER_RATE) g |= benchmark::Counter::kIsRate;
  if (f & RB_COUNTER_AVG_THREADS) g |= benchmark::Counter::kAvgThreads;
  if (f & RB_COUNTER_PER_ITERATION) g |= benchmark::Counter::kAvgIterations;
  if (f & RB_COUNTER_INVERT) g |= benchmark::Counter::kInvert;
  return static_cast<benchmark::Counter::Flags>(g);
}

}  // namespace

extern "C" {

void rb_initialize(int *argc, char **argv) { benchmark::Initialize(argc, argv); }
bool rb_report_unrecognized(int argc, char **argv) {
  return benchmark::ReportUnrecognizedArguments(argc, argv);
}
size_t rb_run_all(void) { return benchmark::RunSpecifiedBenchmarks(); }
void rb_shutdown(void) { benchmark::Shutdown(); }

int rb_main(int argc, char **argv) {
  rb_initialize(&argc, argv);
  if (rb_report_unrecognized(argc, argv)) return 1;
  rb_run_all();
  rb_shutdown();
  return 0;
}

rb_bench *rb_register(const char *name, rb_fn fn, void *arg) {
  return C(benchmark::RegisterBenchmark(
      name, [fn, arg](benchmark::State &st) { fn(reinterpret_cast<rb_state *>(&st), arg); }));
}

rb_bench *rb_add_arg(rb_bench *b, int64_t x) { return C(B(b)->Arg(x)); }
rb_bench *rb_add_args2(rb_bench *b, int64_t x, int64_t y) { return C(B(b)->Args({x, y})); }
rb_bench *rb_add_range(rb_bench *b, int64_t lo, int64_t hi) { return C(B(b)->Range(lo, hi)); }
rb_bench *rb_add_dense_range(rb_bench *b, int64_t lo, int64_t hi, int step) {
  return C(B(b)->DenseRange(lo, hi, step));
}
rb_bench *rb_add_ranges2(rb_bench *b, int64_t lo0, int64_t hi0, int64_t lo1, int64_t hi1) {
  return C(B(b)->Ranges({{lo0, hi0}, {lo1, hi1}}));
}
rb_bench *rb_range_multiplier(rb_bench *b, int m) { return C(B(b)->RangeMultiplier(m)); }
rb_bench *rb_arg_name(rb_bench *b, const char *name) { return C(B(b)->ArgName(name)); }
rb_bench *rb_arg_names2(rb_bench *b, const char *name0, const char *name1) {
  return C(B(b)->ArgNames({name0, name1}));
}
rb_bench *rb_threads(rb_bench *b, int n) { return C(B(b)->Threads(n)); }
rb_bench *rb_thread_range(rb_bench *b, int lo, int hi) { return C(B(b)->ThreadRange(lo, hi)); }
rb_bench *rb_use_real_time(rb_bench *b) { return C(B(b)->UseRealTime()); }
rb_bench *rb_measure_process_cpu_time(rb_bench *b) { return C(B(b)->MeasureProcessCPUTime()); }
rb_bench *rb_min_time(rb_bench *b, double seconds) { return C(B(b)->MinTime(seconds)); }
rb_bench *rb_fixed_iterations(rb_bench *b, int64_t n) { return C(B(b)->Iterations(n)); }
rb_bench *rb_repetitions(rb_bench *b, int n) { return C(B(b)->Repetitions(n)); }

rb_bench *rb_unit_of_time(rb_bench *b, rb_unit u) {
  static const benchmark::TimeUnit units[] = {benchmark::kNanosecond, benchmark::kMicrosecond,
                                              benchmark::kMillisecond, benchmark::kSecond};
  return C(B(b)->Unit(units[u]));
}

bool rb_keep_running(rb_state *st) { return S(st).KeepRunning(); }
bool rb_keep_running_batch(rb_state *st, int64_t n) { return S(st).KeepRunningBatch(n); }
void rb_pause_timing(rb_state *st) { S(st).PauseTiming(); }
void rb_resume_timing(rb_state *st) { S(st).ResumeTiming(); }
void rb_skip_with_error(rb_state *st, const char *msg) { S(st).SkipWithError(msg); }
bool rb_error_occurred(rb_state *st) { return S(st).error_occurred(); }

int64_t rb_arg(rb_state *st, size_t pos) { return S(st).range(pos); }
int rb_thread_index(rb_state *st) { return S(st).thread_index(); }
int rb_thread_count(rb_state *st) { return S(st).threads(); }
int64_t rb_iterations(rb_state *st) { return S(st).iterations(); }

void rb_set_items_processed(rb_state *st, int64_t items) { S(st).SetItemsProcessed(items); }
void rb_set_bytes_processed(rb_state *st, int64_t bytes) { S(st).SetBytesProcessed(bytes); }
void rb_set_label(rb_state *st, const char *label) { S(st).SetLabel(label); }
void rb_set_counter(rb_state *st, const char *name, double value, unsigned flags) {
  S(st).counters[std::string(name)] = benchmark::Counter(value, counter_flags(flags));
}

}  // extern "C"
