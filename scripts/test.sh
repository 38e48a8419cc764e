#!/usr/bin/env bash
# The whole test suite: a warnings-as-errors build with every test, the suite again under
# AddressSanitizer, the valgrind build's programs under memcheck, the threaded tests under
# ThreadSanitizer (both sanitizer builds with RAMALLOC_DEBUG=2: the invariant checks run at every
# state change), and the Windows build (mingw-w64) with its whole suite run under wine
# (scripts/test-windows.sh). Every suite runs even when an earlier one has failing tests; the last
# line counts the tests of all suites: "all suites: N passed, N failed, N skipped" (set-up steps such
# as the wine fixture are not counted), and the exit status is 1 if any test or suite failed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${RAMALLOC_TEST_DIR:-$root/build-test}
jobs=$(nproc)
bash "$root/scripts/install-deps.sh"

step() { printf '\n=== %s\n' "$*"; }
log=$(mktemp)
skips=$(mktemp)
trap 'rm -f "$log" "$skips"' EXIT
failed_suites=()
# CMake's configure output without the compiler and library checks (kept: warnings, errors, the
# project's own messages and "Configuring done")
configure() {
  cmake "$@" 2>&1 | sed -u -E '/^-- (The (C|CXX) compiler identification|Detecting |Check for working |Performing Test |Found Threads|Looking for )/d'
}
# ctest with its output kept, so the totals of all runs can be summed at the end; a suite with
# failing tests is noted and the next one runs
run_ctest() {
  local dir=$1
  shift
  (cd "$dir" && ctest --output-on-failure "$@") | tee -a "$log" || failed_suites+=("$(basename "$dir")")
  skip_reasons "$dir"
}
# the reason each skipped test gave (a line "SKIP: ..." in its output, kept in ctest's LastTest.log)
skip_reasons() {
  awk -v suite="$(basename "$1")" '/^[0-9]+\/[0-9]+ Testing: / { name = $3 }
    /^SKIP: / { sub(/^SKIP: /, ""); print "skipped: " name " (" suite "): " $0 }' \
    "$1/Testing/Temporary/LastTest.log" >>"$skips" 2>/dev/null || true
}

step "release build, all tests"
configure -S "$root" -B "$out/release" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRAMALLOC_WERROR=ON
cmake --build "$out/release" -j"$jobs"
run_ctest "$out/release" -j"$jobs"

step "AddressSanitizer and UBSan build, all tests"
configure -S "$root" -B "$out/asan" -DCMAKE_BUILD_TYPE=Debug -DRAMALLOC_SANITIZE=address,undefined -DRAMALLOC_DEBUG=2 \
  -DRAMALLOC_WERROR=ON -DRAMALLOC_BENCH=OFF
cmake --build "$out/asan" -j"$jobs"
run_ctest "$out/asan" -j"$jobs"

step "valgrind build (memcheck client requests), its programs under memcheck"
configure -S "$root" -B "$out/valgrind" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRAMALLOC_VALGRIND=ON \
  -DRAMALLOC_WERROR=ON -DRAMALLOC_BENCH=OFF
cmake --build "$out/valgrind" -j"$jobs" --target valgrind_annotate
run_ctest "$out/valgrind" -L valgrind -j"$jobs"

step "libFuzzer (clang), 60 seconds from the seed corpus"
CC=clang CXX=clang++ configure -S "$root" -B "$out/fuzz" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRAMALLOC_FUZZ=ON \
  -DRAMALLOC_BENCH=OFF
cmake --build "$out/fuzz" -j"$jobs" --target fuzz_alloc
run_ctest "$out/fuzz" -R '^fuzz_60s$'

step "ThreadSanitizer build, threaded tests"
configure -S "$root" -B "$out/tsan" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRAMALLOC_SANITIZE=thread -DRAMALLOC_DEBUG=2 \
  -DRAMALLOC_WERROR=ON -DRAMALLOC_BENCH=OFF
cmake --build "$out/tsan" -j"$jobs"
run_ctest "$out/tsan" -L threads

step "Windows build (mingw-w64), all tests under wine"
RAMALLOC_WIN_DIR="$out/windows" bash "$root/scripts/test-windows.sh" | tee -a "$log" || failed_suites+=(windows)
skip_reasons "$out/windows"

# One line per test in ctest's output: "12/150 Test  #12: name .....   Passed    0.02 sec" (or
# ***Failed, ***Skipped, ***Timeout, ***Exception: ..., ***Not Run). The wine fixture's set-up and
# clean-up steps (wine_start, wine_stop) are registered as tests but check nothing: not counted.
read -r passed failed skipped < <(awk '
  /^ *[0-9]+\/[0-9]+ Test +#[0-9]+: / {
    if ($4 ~ /^wine_(start|stop)$/) next
    if ($0 ~ /\*\*\*Skipped/) s++; else if ($0 ~ / Passed +[0-9.]+ sec/) p++; else f++
  }
  END { print p + 0, f + 0, s + 0 }' "$log")
echo
if [ ${#failed_suites[@]} -gt 0 ]; then
  echo "failing suites: ${failed_suites[*]}"
fi
cat "$skips"
echo "all suites: $passed passed, $failed failed, $skipped skipped"
[ ${#failed_suites[@]} -eq 0 ] && [ "$failed" -eq 0 ]
