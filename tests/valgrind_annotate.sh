#!/bin/sh
# Run tests/valgrind_annotate.c in one mode under memcheck and check memcheck's report (ctest label
# `valgrind`, registered with -DRAMALLOC_VALGRIND=ON). Usage: valgrind_annotate.sh VALGRIND PROGRAM MODE
set -u
vg=$1 prog=$2 mode=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
RAMALLOC_ARENA_RESERVE=64M "$vg" --tool=memcheck --error-exitcode=99 --leak-check=full \
  --show-leak-kinds=definite --errors-for-leak-kinds=definite --num-callers=8 \
  "$prog" "$mode" >"$tmp/out" 2>"$tmp/err"
rc=$?
cat "$tmp/out" "$tmp/err"
addr=$(sed -n 's/^\(at\|block\) \(0x[0-9a-f]*\)$/\2/p' "$tmp/out" | head -n 1)
bad=0
want() { # the report must hold this line (fixed string, case-insensitive: memcheck's hex digits)
  grep -qiF -- "$1" "$tmp/err" || { echo "MISSING in memcheck's report: $1"; bad=1; }
}
case $mode in
  clean)
    [ "$rc" -eq 0 ] || { echo "exit status $rc, want 0"; bad=1; }
    grep -q '^clean-done$' "$tmp/out" || { echo "the program did not finish"; bad=1; }
    want "ERROR SUMMARY: 0 errors from 0 contexts"
    if grep -qE 'definitely lost: [1-9]' "$tmp/err"; then echo "definitely lost bytes"; bad=1; fi ;;
  uaf)
    [ "$rc" -eq 99 ] || { echo "exit status $rc, want 99 (errors)"; bad=1; }
    want "Invalid read of size 1"
    want "Address $addr is 16 bytes inside a block of size 40 free'd" ;;
  uaf_huge)
    [ "$rc" -eq 99 ] || { echo "exit status $rc, want 99 (errors)"; bad=1; }
    want "Invalid read of size 1"
    want "Address $addr is 1,000 bytes inside a block of size 5,242,880 free'd" ;;
  past_end)
    [ "$rc" -eq 99 ] || { echo "exit status $rc, want 99 (errors)"; bad=1; }
    want "Invalid read of size 1"
    want "Address $addr is 0 bytes after a block of size 20 alloc'd" ;;
  leak)
    [ "$rc" -eq 99 ] || { echo "exit status $rc, want 99 (errors)"; bad=1; }
    want "100 bytes in 1 blocks are definitely lost in loss record"
    want "definitely lost: 100 bytes in 1 blocks" ;;
  double_free)
    [ "$rc" -ne 0 ] || { echo "exit status 0: the double free went through"; bad=1; }
    want "Invalid free() / delete / delete[] / realloc()"
    want "Address $addr is 0 bytes inside a block of size 64 free'd"
    want "ramalloc: double free of $addr" ;;
  uninit)
    [ "$rc" -eq 99 ] || { echo "exit status $rc, want 99 (errors)"; bad=1; }
    want "Conditional jump or move depends on uninitialised value(s)" ;;
  *) echo "unknown mode $mode"; bad=1 ;;
esac
if [ "$mode" != clean ] && [ -z "$addr" ] && [ "$mode" != uninit ]; then echo "the program printed no address"; bad=1; fi
[ $bad -eq 0 ] && echo "valgrind_annotate $mode: ok"
exit $bad
