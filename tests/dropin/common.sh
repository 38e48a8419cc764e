# Sourced by the real-program tests: bash TEST.sh LIBRAMALLOC WORKDIR
# Each test runs a program under the system allocator and with ramalloc preloaded, and compares.
# Exit 77 (ctest SKIP_RETURN_CODE) when the program is not installed.
set -euo pipefail

RA_LIB=${1:?usage: $0 LIBRAMALLOC.so WORKDIR}
WORK=${2:?usage: $0 LIBRAMALLOC.so WORKDIR}
case "$RA_LIB" in /*) ;; *) RA_LIB="$PWD/$RA_LIB" ;; esac
[ -f "$RA_LIB" ] || { echo "no library at $RA_LIB" >&2; exit 1; }
rm -rf "$WORK"
mkdir -p "$WORK"
cd "$WORK"

skip() {
  echo "SKIP: $*"
  exit 77
}
fail() {
  echo "FAIL: $*" >&2
  exit 1
}
need() {
  for p in "$@"; do command -v "$p" >/dev/null 2>&1 || skip "$p is not installed"; done
}

# "${RAMALLOC[@]}" CMD...: run CMD with ramalloc preloaded (first, ahead of anything preloaded).
RAMALLOC=(env "LD_PRELOAD=$RA_LIB${LD_PRELOAD:+:$LD_PRELOAD}")

# timed LABEL CMD...: run CMD; append "LABEL: S s, M KiB peak RSS" to $WORK/figures (wall time and
# the largest RSS of any process in it, from /usr/bin/time when it is installed). Returns CMD's
# status.
timed() {
  local label=$1 rc=0
  shift
  if [ -x /usr/bin/time ]; then
    /usr/bin/time -o "$WORK/.time" -f "%e s, %M KiB peak RSS" "$@" || rc=$?
    echo "$label: $(tail -n 1 "$WORK/.time")" >> "$WORK/figures"
  else
    local t0=$SECONDS
    "$@" || rc=$?
    echo "$label: $((SECONDS - t0)) s" >> "$WORK/figures"
  fi
  return $rc
}

# assert_ramalloc_active CMD...: CMD (a quick run of the program) must start ramalloc when it is
# preloaded; RAMALLOC_VERBOSE makes ramalloc say so on stderr at its initialisation.
assert_ramalloc_active() {
  local err
  err=$(RAMALLOC_VERBOSE=1 "${RAMALLOC[@]}" "$@" 2>&1 >/dev/null) || true
  grep -q '^ramalloc: option' <<<"$err" || fail "ramalloc did not start in: $*"
}

show_figures() {
  echo "--- figures"
  cat "$WORK/figures"
}
