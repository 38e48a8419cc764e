#!/usr/bin/env bash
# launcher.sh LIBRAMALLOC WORKDIR RAMALLOC-RUN FAMILY-PROGRAM: the ramalloc-run launcher preloads
# ramalloc, passes the exit status through, and its options set what they promise; --stats prints
# reserved, committed, peak committed and live bytes and the OS call counts at exit.
. "$(dirname "$0")/common.sh"
RUN=$3
FAMILY=$4

expect_status() { # STATUS CMD...
  local want=$1 rc=0
  shift
  "$@" > out.txt 2> err.txt || rc=$?
  [ "$rc" -eq "$want" ] || fail "'$*' exited $rc, expected $want: $(cat err.txt)"
}

# runs a program on ramalloc, with and without the "--"
expect_status 0 "$RUN" -- "$FAMILY"
grep -q family-ok out.txt || fail "the family test did not pass under ramalloc-run"
expect_status 0 "$RUN" "$FAMILY"
grep -q family-ok out.txt || fail "ramalloc-run PROGRAM (without --) did not run it"

# the exit status is the program's; the arguments arrive untouched
expect_status 7 "$RUN" -- sh -c 'exit 7'
expect_status 0 "$RUN" -- sh -c 'printf "%s|" "$@"' argv0 "a b" "" '$x' --stats
[ "$(cat out.txt)" = 'a b||$x|--stats|' ] || fail "arguments changed on the way: $(cat out.txt)"

# LD_PRELOAD: ramalloc first, anything already there kept after it
LD_PRELOAD= expect_status 0 "$RUN" -- sh -c 'echo "$LD_PRELOAD"'
case "$(cat out.txt)" in /*libramalloc.so*) ;; *) fail "LD_PRELOAD is $(cat out.txt)" ;; esac
LD_PRELOAD="$RA_LIB" expect_status 0 "$RUN" --lib="$RA_LIB" -- sh -c 'echo "$LD_PRELOAD"'
[ "$(cat out.txt)" = "$RA_LIB:$RA_LIB" ] || fail "LD_PRELOAD is $(cat out.txt)"

# --stats: the statistics at exit, on stderr
expect_status 0 "$RUN" --stats -- sh -c 'ls -l / > /dev/null'
for what in 'reserved' 'committed' 'committed peak' 'live bytes' 'reserve [0-9]' 'commit [0-9]' \
  'decommit [0-9]' 'reset [0-9]'; do
  grep -q "$what" err.txt || fail "--stats did not print '$what'; stderr was: $(cat err.txt)"
done
grep -q 'ramalloc' out.txt && fail "--stats wrote to stdout"
echo "--- ramalloc-run --stats -- sh -c 'ls -l / > /dev/null' (stderr)"
cat err.txt

# --verbose, --dump-layout
expect_status 0 "$RUN" --verbose -- true
grep -q '^ramalloc: option' err.txt || fail "--verbose printed no options: $(cat err.txt)"
expect_status 0 "$RUN" --dump-layout="$WORK/layout.json" -- sh -c 'echo "$RAMALLOC_DUMP_LAYOUT"'
[ "$(cat out.txt)" = "$WORK/layout.json" ] || fail "--dump-layout=FILE did not set RAMALLOC_DUMP_LAYOUT"

# usage errors
expect_status 0 "$RUN" --help
grep -q '^usage: ramalloc-run' out.txt || fail "--help printed no usage"
expect_status 2 "$RUN"
expect_status 2 "$RUN" --no-such-option -- true
expect_status 127 "$RUN" -- "$WORK/no-such-program"
RAMALLOC_LIB="$WORK/none.so" expect_status 127 "$RUN" -- true
echo "launcher-ok"
