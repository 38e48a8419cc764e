#!/usr/bin/env bash
# Install the Debian 12 packages the build, tests and benchmarks need, when missing (root or sudo).
set -euo pipefail
pkgs=(build-essential cmake pkg-config python3 valgrind libcmocka-dev libbenchmark-dev
      libmimalloc-dev libjemalloc-dev libgoogle-perftools-dev gnuplot-nox mingw-w64
      wine wine64 dpkg-dev clang libclang-rt-14-dev)
# the drop-in tests (tests/dropin): real programs run on glibc and on ramalloc, and figures
pkgs+=(libpython3.11-testsuite sqlite3 lua5.4 redis-server redis-tools time)
# the heap profiler (docs/profiling.md): libunwind, dlopen'ed when profiling is on; google-pprof
# reads its profiles (graphviz draws its --svg graphs); binutils' addr2line symbolises the collapsed stacks
pkgs+=(libunwind8 google-perftools graphviz binutils)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}" >&2
sudo_=""
[ "$(id -u)" -eq 0 ] || sudo_=sudo
export DEBIAN_FRONTEND=noninteractive
$sudo_ apt-get update -qq
$sudo_ apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
