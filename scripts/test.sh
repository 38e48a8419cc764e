#!/usr/bin/env bash
# The whole test suite: a warnings-as-errors build with every test, the suite again under
# AddressSanitizer, the valgrind build's programs under memcheck, the threaded tests under
# ThreadSanitizer, and the Windows build (mingw-w64) with its whole suite run under wine
# (scripts/test-windows.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${RAMALLOC_TEST_DIR:-$root/build-test}
jobs=$(nproc)
bash "$root/scripts/install-deps.sh"

step() { printf '\n=== %s\n' "$*"; }
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# ctest with its output kept, so the totals of all runs can be summed at the end
run_ctest() { (cd "$1" && shift && ctest --output-on-failure "$@") | tee -a "$log"; }

step "release build, all tests"
cmake -S "$root" -B "$out/release" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRAMALLOC_WERROR=ON >/dev/null
cmake --build "$out/release" -j"$jobs"
run_ctest "$out/release" -j"$jobs"

step "AddressSanitizer and UBSan build, all tests"
cmake -S "$root" -B "$out/asan" -DCMAKE_BUILD_TYPE=Debug -DRAMALLOC_SANITIZE=address,undefined -DRAMALLOC_DEBUG=2 \
  -DRAMALLOC_WERROR=ON -DRAMALLOC_BENCH=OFF >/dev/null
cmake --build "$out/asan" -j"$jobs"
run_ctest "$out/asan" -j"$jobs"

step "valgrind build (memcheck client requests), its programs under memcheck"
cmake -S "$root" -B "$out/valgrind" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRAMALLOC_VALGRIND=ON \
  -DRAMALLOC_WERROR=ON -DRAMALLOC_BENCH=OFF >/dev/null
cmake --build "$out/valgrind" -j"$jobs" --target valgrind_annotate
run_ctest "$out/valgrind" -L valgrind -j"$jobs"

step "libFuzzer (clang), 60 seconds from the seed corpus"
CC=clang CXX=clang++ cmake -S "$root" -B "$out/fuzz" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRAMALLOC_FUZZ=ON \
  -DRAMALLOC_BENCH=OFF >/dev/null
cmake --build "$out/fuzz" -j"$jobs" --target fuzz_alloc
run_ctest "$out/fuzz" -R '^fuzz_60s$'

step "ThreadSanitizer build, threaded tests"
cmake -S "$root" -B "$out/tsan" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRAMALLOC_SANITIZE=thread \
  -DRAMALLOC_WERROR=ON -DRAMALLOC_BENCH=OFF >/dev/null
cmake --build "$out/tsan" -j"$jobs"
run_ctest "$out/tsan" -L threads

step "Windows build (mingw-w64), all tests under wine"
RAMALLOC_WIN_DIR="$out/windows" bash "$root/scripts/test-windows.sh" | tee -a "$log"

total=$(awk '/tests passed, .* tests failed out of/ {n += $NF} END {print n + 0}' "$log")
echo
echo "all suites: $total passed, 0 failed"
