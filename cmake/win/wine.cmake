# Running the cross-built Windows tests under wine, headless, from ctest.
#
# Included by tests/CMakeLists.txt when building for Windows from Linux. It sets
# CMAKE_CROSSCOMPILING_EMULATOR (so add_test(NAME x COMMAND <target>) runs the .exe under wine) and
# defines ra_wine_tests(), which registers the wine fixture: a FIXTURES_SETUP test that prepares the
# prefix and starts the wine server, and a FIXTURES_CLEANUP test that stops it. It handles these
# wine traps:
#
#  (a) ctest waits for EOF on every test's output pipe. A wineserver (and the wine services:
#      services.exe, explorer.exe, winedevice.exe...) started by a test inherits that pipe and outlives
#      the test, so ctest would wait for it to exit. The setup test starts `wineserver -p`
#      (persistent) and the first wine command with stdin/stdout/stderr on /dev/null; every later
#      test finds them running. The cleanup test runs `wineserver -k`.
#  (b) An unhandled exception starts the debugger named in the prefix's AeDebug key (winedbg by
#      default), and what the crashing process then exits with depends on the debugger. The setup sets
#      AeDebug\Debugger to "false": no debugger; the process ends with the exception code (of which a
#      Unix exit status keeps the low byte: 5 for an access violation). tests/win checks that a crash
#      fails its test.
#  (c) MEM_RESET_UNDO is rejected by wine 8 (error 87): handled in allocator/os_windows.c, whose
#      probe the tests print.
#
# The prefix lives in the build folder (<build>/wineprefix, ~700 MB, made once in ~6 s);
# WINEDEBUG=-all keeps wine's own messages out of the test output, DISPLAY is unset (no window, no
# dialog), and mscoree/mshtml are disabled so the prefix is made without asking for Mono or Gecko.

find_program(RA_WINE NAMES wine64 wine PATHS /usr/lib/wine /usr/lib64/wine NO_CMAKE_FIND_ROOT_PATH)
find_program(RA_WINESERVER NAMES wineserver wineserver64 PATHS /usr/lib/wine /usr/lib64/wine NO_CMAKE_FIND_ROOT_PATH)
find_program(RA_ENV env NO_CMAKE_FIND_ROOT_PATH)
if(NOT RA_WINE OR NOT RA_WINESERVER)
  message(WARNING "wine not found (apt-get install wine wine64): the Windows tests are built but not run")
  return()
endif()

set(RA_WINEPREFIX ${CMAKE_BINARY_DIR}/wineprefix CACHE PATH "WINEPREFIX for the Windows tests")
set(RA_WINE_ENV
  WINEPREFIX=${RA_WINEPREFIX}
  WINEDEBUG=-all
  WINEDLLOVERRIDES=mscoree,mshtml,winemenubuilder.exe=
  WINEARCH=win64)
set(CMAKE_CROSSCOMPILING_EMULATOR ${RA_ENV} -u DISPLAY -u WAYLAND_DISPLAY ${RA_WINE_ENV} ${RA_WINE})

# Register the fixture tests and attach every test of the calling directory to it, with a timeout
# (a test that hangs under wine must end): ra_wine_tests([TIMEOUT seconds]). Tests that set their
# own TIMEOUT keep it. It runs by itself at the end of the directory that includes this file (so
# tests added anywhere in tests/CMakeLists.txt get it); other directories call it at their end.
function(ra_wine_tests)
  cmake_parse_arguments(W "" "TIMEOUT" "" ${ARGN})
  if(NOT W_TIMEOUT)
    set(W_TIMEOUT 120)
  endif()
  get_property(tests DIRECTORY PROPERTY TESTS)
  foreach(t IN LISTS tests)
    get_test_property(${t} TIMEOUT timeout)
    if(NOT timeout)
      set_tests_properties(${t} PROPERTIES TIMEOUT ${W_TIMEOUT})
    endif()
    get_test_property(${t} FIXTURES_REQUIRED fixtures)
    if(fixtures)
      list(APPEND fixtures wine)
    else()
      set(fixtures wine)
    endif()
    set_tests_properties(${t} PROPERTIES FIXTURES_REQUIRED "${fixtures}")
  endforeach()
  get_property(done GLOBAL PROPERTY RA_WINE_FIXTURE_DEFINED)
  if(done)
    return()
  endif()
  set_property(GLOBAL PROPERTY RA_WINE_FIXTURE_DEFINED TRUE)
  set(script ${PROJECT_SOURCE_DIR}/cmake/win/wine-server.cmake)
  set(args -DRA_WINE=${RA_WINE} -DRA_WINESERVER=${RA_WINESERVER} -DRA_ENV=${RA_ENV}
    -DRA_WINEPREFIX=${RA_WINEPREFIX})
  add_test(NAME wine_start COMMAND ${CMAKE_COMMAND} ${args} -DRA_ACTION=start -P ${script})
  add_test(NAME wine_stop COMMAND ${CMAKE_COMMAND} ${args} -DRA_ACTION=stop -P ${script})
  # prefix creation takes ~6 s (more on a slow disk); the server is then running
  set_tests_properties(wine_start PROPERTIES FIXTURES_SETUP wine TIMEOUT 180)
  set_tests_properties(wine_stop PROPERTIES FIXTURES_CLEANUP wine TIMEOUT 60)
endfunction()

cmake_language(DEFER CALL ra_wine_tests)
