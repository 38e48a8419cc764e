#!/usr/bin/env bash
# The whole test suite: a warnings-as-errors build with every test, the suite again under
# AddressSanitizer, the threaded tests under ThreadSanitizer, and the Windows OS layer cross-built
# with mingw-w64 so it cannot rot.
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

step "AddressSanitizer build, all tests"
cmake -S "$root" -B "$out/asan" -DCMAKE_BUILD_TYPE=Debug -DRAMALLOC_SANITIZE=address -DRAMALLOC_DEBUG=2 \
  -DRAMALLOC_WERROR=ON -DRAMALLOC_BENCH=OFF >/dev/null
cmake --build "$out/asan" -j"$jobs"
run_ctest "$out/asan" -j"$jobs"

step "ThreadSanitizer build, threaded tests"
cmake -S "$root" -B "$out/tsan" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRAMALLOC_SANITIZE=thread \
  -DRAMALLOC_WERROR=ON -DRAMALLOC_BENCH=OFF >/dev/null
cmake --build "$out/tsan" -j"$jobs"
run_ctest "$out/tsan" -L threads

step "Windows OS layer, cross-built with mingw-w64"
x86_64-w64-mingw32-gcc -std=gnu11 -Wall -Wextra -Werror -static -static-libgcc -I"$root/allocator" \
  "$root/tests/win/os_windows_smoke.c" "$root/allocator/os_windows.c" -o "$out/os_windows_smoke.exe"
echo "built $out/os_windows_smoke.exe (run under wine: issue 'The Windows build')"

total=$(awk '/tests passed, .* tests failed out of/ {n += $NF} END {print n + 0}' "$log")
echo
echo "all suites: $total passed, 0 failed"
