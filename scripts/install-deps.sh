#!/usr/bin/env bash
# Install the Debian 12 packages the build, tests and benchmarks need, when missing (root or sudo).
# It says what it installs and shows apt's progress, one line per package downloaded and per
# package set up (counted against the total apt announces), without dpkg's other chatter.
set -euo pipefail
pkgs=(build-essential cmake pkg-config python3 git valgrind libcmocka-dev libbenchmark-dev
      libmimalloc-dev libjemalloc-dev libgoogle-perftools-dev gnuplot-nox mingw-w64
      wine wine64 dpkg-dev clang libclang-rt-14-dev)
# the drop-in tests (tests/dropin): real programs run on glibc and on ramalloc, and figures
pkgs+=(libpython3.11-testsuite sqlite3 lua5.4 redis-server redis-tools time)
# the heap profiler (docs/profiling.md): libunwind, dlopen'ed when profiling is on; google-pprof
# reads its profiles (graphviz draws its --svg graphs); binutils' addr2line symbolises the collapsed stacks
pkgs+=(libunwind8 google-perftools graphviz binutils)
if [ "${1:-}" = "--list" ]; then # the list, one a line (tests/check_install_list.py reads it)
  printf '%s\n' "${pkgs[@]}"
  exit 0
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#pkgs[@]} packages are installed"
  exit 0
fi
echo "install-deps: installing ${#missing[@]} of ${#pkgs[@]} packages, with what they depend on:"
echo "  ${missing[*]}" | fold -s -w 100
sudo_=""
[ "$(id -u)" -eq 0 ] || sudo_=sudo
export DEBIAN_FRONTEND=noninteractive
t0=$(date +%s)

# apt's -q output, one line per package: "get" while downloading, "set up" while configuring. The
# debconf notice about apt-utils (configuration is only delayed, nothing is wrong) and dpkg's
# per-file lines are left out; anything else (errors, warnings, triggers) passes through.
filter() {
  awk '
    /newly installed/ { total = $3 + $1; print "  " $0; fflush(); next }
    /^Get:[0-9]+ / && NF >= 8 { n++; size = $0; sub(/.*\[/, "", size); sub(/\].*/, "", size)
      printf "  [%3d/%s] get    %s %s (%s)\n", n, total ? total : "?", $5, $7, size; fflush(); next }
    /^Setting up / { s++; name = $3; sub(/:.*/, "", name)
      printf "  [%3d/%s] set up %s\n", s, total ? total : "?", name; fflush(); next }
    /^debconf: delaying package configuration/ || /^\(Reading database/ || /^Preparing to unpack/ { next }
    /^Selecting previously unselected/ || /^Unpacking / || /^update-alternatives: / { next }
    /^(Reading package lists|Building dependency tree|Reading state information)/ { next }
    /^The following / || /^Use .apt autoremove/ || /^  / { next }
    { print "  " $0; fflush() }'
}

echo "install-deps: apt-get update"
$sudo_ apt-get update -q 2>&1 | sed -u 's/^/  /'
echo "install-deps: apt-get install"
$sudo_ apt-get install -y -q --no-install-recommends "${missing[@]}" 2>&1 | filter
echo "install-deps: done in $(( $(date +%s) - t0 )) s"
