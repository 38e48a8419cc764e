#!/usr/bin/env bash
# A slice of CPython's own regression suite (python3 -m test) with PYTHONMALLOC=malloc, so every
# object allocation goes through malloc (pymalloc would otherwise serve small objects itself):
# once on glibc and once with ramalloc preloaded (into the test workers too). Every test that
# passes on glibc must pass on ramalloc; a test failing only on ramalloc is run again alone on
# both, to tell a real difference from a flaky test. Uses Debian's /usr/bin/python3 and its
# libpython3.11-testsuite package.
. "$(dirname "$0")/common.sh"

PY=${DROPIN_PYTHON:-/usr/bin/python3}
[ -x "$PY" ] || skip "$PY is not installed"
"$PY" -c 'import test.libregrtest, test.test_dict' 2>/dev/null || skip "python's test package is not installed (libpython3.11-testsuite)"

TESTS=(test_dict test_list test_set test_tuple test_unicode test_bytes test_re test_json test_collections
  test_ordered_dict test_deque test_itertools test_functools test_sort test_heapq test_array test_struct
  test_memoryview test_pickle test_weakref test_gc test_decimal test_long test_float test_builtin
  test_zlib test_bz2 test_hashlib test_csv test_xml_etree test_ctypes test_mmap test_tracemalloc
  test_threading test_threading_local test_thread test_queue test_fork1 test_os test_sys)
export PYTHONMALLOC=malloc
unset PYTHONPATH PYTHONHOME

# The tests that did not pass, from regrtest's progress lines ("[3/40] test_x failed ...").
not_passed() {
  tr '\r' '\n' < "$1" | sed -n 's/.*\] \(test_[A-Za-z0-9_.]*\) \(failed\|crashed\|timed out\|interrupted\).*/\1/p' |
    sort -u
}

REGRTEST=("$PY" -m test -j2 --timeout 600 "${TESTS[@]}")

rc_sys=0
rc_ra=0
timed "python3 -m test, ${#TESTS[@]} tests (glibc)" "${REGRTEST[@]}" > glibc.log 2>&1 || rc_sys=$?
timed "python3 -m test, ${#TESTS[@]} tests (ramalloc)" "${RAMALLOC[@]}" "${REGRTEST[@]}" > ramalloc.log 2>&1 || rc_ra=$?
assert_ramalloc_active "$PY" -c 'pass'
# Is every object really ramalloc's? A block from malloc, through ctypes, inside the interpreter.
owned=$("${RAMALLOC[@]}" "$PY" -c '
import ctypes
c = ctypes.CDLL(None)
c.malloc.restype = ctypes.c_void_p
c.ra_owns.argtypes = [ctypes.c_void_p]
c.ra_owns.restype = ctypes.c_bool  # a C bool: only the low byte of the return register is set
print(int(c.ra_owns(c.malloc(10))), int(c.ra_owns(id(object()))))')
[ "$owned" = "1 1" ] || fail "python's allocations are not ramalloc's under preload ($owned)"

grep -q 'Tests result' ramalloc.log || fail "regrtest did not finish under ramalloc (status $rc_ra): $(tail -n 20 ramalloc.log)"
not_passed glibc.log > glibc.failed
not_passed ramalloc.log > ramalloc.failed
echo "glibc: status $rc_sys, not passed: $(tr '\n' ' ' < glibc.failed)"
echo "ramalloc: status $rc_ra, not passed: $(tr '\n' ' ' < ramalloc.failed)"
only_ra=$(comm -13 glibc.failed ramalloc.failed)
for t in $only_ra; do
  echo "--- $t failed only under ramalloc; running it again alone on both"
  if "${RAMALLOC[@]}" "$PY" -m test --timeout 600 "$t" > "rerun-$t.log" 2>&1; then
    echo "$t passes on a second run under ramalloc (flaky)"
  else
    tail -n 40 "rerun-$t.log"
    "$PY" -m test --timeout 600 "$t" > "rerun-glibc-$t.log" 2>&1 || { echo "$t fails alone on glibc too"; continue; }
    fail "$t fails under ramalloc and passes under glibc"
  fi
done
[ "$rc_ra" -eq 0 ] || [ -s ramalloc.failed ] || fail "regrtest exited $rc_ra under ramalloc without a failed test: $(tail -n 20 ramalloc.log)"
grep -E '^(All [0-9]+ tests OK|[0-9]+ tests? (OK|failed))' ramalloc.log || true
show_figures
echo "python: every test that passes on glibc passes on ramalloc"
