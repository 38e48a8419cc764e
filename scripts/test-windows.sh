#!/usr/bin/env bash
# The Windows suite: ramalloc cross-built with mingw-w64 (cmake/mingw-w64-x86_64.cmake) and the
# test suite run by ctest under wine, headless.
#   - cmocka for Windows is built from Debian's source package when the build folder is configured
#     (cmake/win/cmocka.cmake), the wine prefix is made by the suite's first test (cmake/win/wine.cmake);
#     both stay in the build folder, so later runs skip them. Delete the folder to start over.
#   - Build folder: $RAMALLOC_WIN_DIR, else $RAMALLOC_TEST_DIR/windows, else build-test/windows.
#   - Extra arguments go to ctest (e.g. -R win_ or -L windows).
# Needs: mingw-w64, wine and wine64 (8.0), cmake, dpkg-dev and network access to the Debian archive
# for the first configure (scripts/install-deps.sh installs them).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${RAMALLOC_WIN_DIR:-${RAMALLOC_TEST_DIR:-$root/build-test}/windows}
jobs=$(nproc)

for tool in x86_64-w64-mingw32-gcc cmake apt-get dpkg-source; do
  command -v "$tool" >/dev/null || { echo "test-windows.sh: $tool is missing (bash scripts/install-deps.sh)" >&2; exit 1; }
done
wineserver=$(command -v wineserver || echo /usr/lib/wine/wineserver)
[ -x "$wineserver" ] || { echo "test-windows.sh: wine is missing (bash scripts/install-deps.sh)" >&2; exit 1; }

# If the run is interrupted before ctest's cleanup test, do not leave this prefix's server behind.
trap 'WINEPREFIX="$out/wineprefix" "$wineserver" -k >/dev/null 2>&1 || true' EXIT

t0=$(date +%s)
cmake -S "$root" -B "$out" -DCMAKE_TOOLCHAIN_FILE="$root/cmake/mingw-w64-x86_64.cmake" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRAMALLOC_WERROR=ON -DRAMALLOC_BENCH=OFF 2>&1 |
  sed -u -E '/^-- (The (C|CXX) compiler identification|Detecting |Check for working |Performing Test |Found Threads|Looking for )/d'
# (the compiler checks are left out; shown: "cmocka for Windows: ..." while it is fetched and built)
t1=$(date +%s)
cmake --build "$out" -j"$jobs"
t2=$(date +%s)
(cd "$out" && ctest --output-on-failure -j"$jobs" --timeout 300 "$@")
t3=$(date +%s)
echo "windows suite: configure $((t1 - t0)) s (cmocka included when not cached), build $((t2 - t1)) s," \
  "tests under wine $((t3 - t2)) s (build folder $out)"
