#!/usr/bin/env bash
# install_test.sh LIBRAMALLOC WORKDIR BUILD-DIR LINKED.C CMAKE CC: `cmake --install` into a
# temporary prefix, then build a small program against the installed copy both ways, with
# find_package(ramalloc) and with pkg-config, each against the shared and the static library, and
# run them (malloc in them must be ramalloc's). The prefix is then moved elsewhere and used again:
# the package files, the .pc files and ramalloc-run are relocatable.
. "$(dirname "$0")/common.sh"
BUILD=$3
LINKED_C=$4
CMAKE=$5
CC=$6
prefix=$WORK/prefix

"$CMAKE" --install "$BUILD" --prefix "$prefix" > install.log || fail "cmake --install failed: $(cat install.log)"
static=$(find "$prefix" -name libramalloc.a | head -n 1)
[ -n "$static" ] || fail "no libramalloc.a installed"
libdir=$(dirname "$static")
for f in "$prefix/include/ramalloc.h" "$prefix/bin/ramalloc-run" "$libdir/libramalloc.so" \
  "$libdir/libramalloc.so.0" "$libdir/cmake/ramalloc/ramallocConfig.cmake" \
  "$libdir/cmake/ramalloc/ramallocConfigVersion.cmake" "$libdir/pkgconfig/ramalloc.pc" \
  "$libdir/pkgconfig/ramalloc-static.pc"; do
  [ -e "$f" ] || fail "not installed: $f"
done
[ -x "$prefix/bin/ramalloc-run" ] || fail "ramalloc-run is not executable"
real=$(readlink -f "$libdir/libramalloc.so")
case "$real" in *libramalloc.so.0.*) ;; *) fail "libramalloc.so points at $real, not a versioned file" ;; esac
if command -v readelf > /dev/null; then
  grep -q 'SONAME.*\[libramalloc.so.0\]' <<<"$(readelf -d "$real")" || fail "the soname is not libramalloc.so.0"
fi
if command -v nm > /dev/null; then
  grep -q ' T malloc$' <<<"$(nm "$static" 2> /dev/null)" || fail "libramalloc.a does not define malloc"
fi

# find_package(ramalloc): shared, static, and a C++ program that only uses new, static
mkdir consumer
cp "$LINKED_C" consumer/linked.c
cp "$(dirname "$0")/dropin_linked_cxx.cpp" consumer/linked_cxx.cpp
cat > consumer/CMakeLists.txt <<'CM'
cmake_minimum_required(VERSION 3.20)
project(consumer C CXX)
find_package(ramalloc 0.1 REQUIRED)
add_executable(app_shared linked.c)
target_link_libraries(app_shared PRIVATE ramalloc::ramalloc)
add_executable(app_static linked.c)
target_link_libraries(app_static PRIVATE ramalloc::ramalloc_static)
add_executable(app_cxx_static linked_cxx.cpp)
target_link_libraries(app_cxx_static PRIVATE ramalloc::ramalloc_static)
CM
"$CMAKE" -S consumer -B consumer/build -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_COMPILER="$CC" > consumer.log 2>&1 ||
  fail "configuring against the installed package failed: $(tail -n 30 consumer.log)"
"$CMAKE" --build consumer/build >> consumer.log 2>&1 || fail "building against the installed package failed: $(tail -n 30 consumer.log)"
for app in app_shared app_static app_cxx_static; do
  out=$(consumer/build/$app) || fail "$app failed: $out"
  echo "find_package, $app: $out"
done
if command -v readelf > /dev/null; then
  grep -q 'NEEDED.*libramalloc.so.0' <<<"$(readelf -d consumer/build/app_shared)" ||
    fail "app_shared does not load libramalloc.so.0"
  if grep -q 'NEEDED.*libramalloc' <<<"$(readelf -d consumer/build/app_static)"; then
    fail "app_static needs libramalloc.so"
  fi
fi

# ramalloc-run, installed: preloads the installed library
lp=$("$prefix/bin/ramalloc-run" -- sh -c 'echo "$LD_PRELOAD"')
[ "$(readlink -f "$lp")" = "$(readlink -f "$libdir/libramalloc.so.0")" ] || fail "installed ramalloc-run preloads $lp"
grep -q '^ramalloc: option' <<<"$("$prefix/bin/ramalloc-run" --verbose -- true 2>&1)" || fail "installed ramalloc-run did not start ramalloc"

# pkg-config, before and after the prefix moves
pc_build() { # LIBDIR SUFFIX
  local ld=$1 sfx=$2
  PKG_CONFIG_PATH="$ld/pkgconfig" pkg-config --exact-version=0.1.0 ramalloc || fail "pkg-config does not find ramalloc 0.1.0"
  # shellcheck disable=SC2046
  "$CC" -o "pc_shared$sfx" "$LINKED_C" $(PKG_CONFIG_PATH="$ld/pkgconfig" pkg-config --cflags --libs ramalloc) \
    -Wl,-rpath,"$ld" || fail "building with pkg-config ramalloc failed"
  # shellcheck disable=SC2046
  "$CC" -o "pc_static$sfx" "$LINKED_C" $(PKG_CONFIG_PATH="$ld/pkgconfig" pkg-config --cflags --libs ramalloc-static) ||
    fail "building with pkg-config ramalloc-static failed"
  for app in "pc_shared$sfx" "pc_static$sfx"; do
    out=$("./$app") || fail "$app failed: $out"
    echo "pkg-config, $app: $out"
  done
}
if command -v pkg-config > /dev/null; then
  pc_build "$libdir" ""
else
  echo "pkg-config is not installed: the pkg-config builds are left out"
fi

mv "$prefix" "$WORK/moved"
moved_libdir=${libdir/#$prefix/$WORK/moved}
command -v pkg-config > /dev/null && pc_build "$moved_libdir" "_moved"
lp=$("$WORK/moved/bin/ramalloc-run" -- sh -c 'echo "$LD_PRELOAD"')
[ "$(readlink -f "$lp")" = "$(readlink -f "$moved_libdir/libramalloc.so.0")" ] || fail "moved ramalloc-run preloads $lp"
rm -rf consumer/build
"$CMAKE" -S consumer -B consumer/build -DCMAKE_PREFIX_PATH="$WORK/moved" -DCMAKE_C_COMPILER="$CC" > consumer2.log 2>&1 &&
  "$CMAKE" --build consumer/build >> consumer2.log 2>&1 || fail "the moved package does not build: $(tail -n 30 consumer2.log)"
consumer/build/app_static > /dev/null || fail "app_static from the moved package failed"
echo "install-ok"
