# The wine fixture of the Windows tests (see cmake/win/wine.cmake), run by ctest as
#   cmake -DRA_ACTION=start|stop -DRA_WINE=... -DRA_WINESERVER=... -DRA_ENV=... -DRA_WINEPREFIX=... -P
#
# start: make the prefix if it is missing, start a persistent wineserver and one wine command with
#        all three standard streams on /dev/null (nothing that outlives this test holds ctest's
#        pipe), and set the prefix's AeDebug debugger to "false".
# stop:  wineserver -k, then wait for the server to be gone.

foreach(v RA_ACTION RA_WINE RA_WINESERVER RA_ENV RA_WINEPREFIX)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "wine-server.cmake: ${v} is not set")
  endif()
endforeach()

set(env ${RA_ENV} -u DISPLAY -u WAYLAND_DISPLAY WINEPREFIX=${RA_WINEPREFIX} WINEDEBUG=-all
  WINEDLLOVERRIDES=mscoree,mshtml,winemenubuilder.exe= WINEARCH=win64)

# A command detached from ctest's pipes; fails the test when it fails (unless OPTIONAL).
function(run what)
  cmake_parse_arguments(R "OPTIONAL" "" "" ${ARGN})
  string(TIMESTAMP t0 "%s")
  execute_process(COMMAND ${env} ${R_UNPARSED_ARGUMENTS}
    INPUT_FILE /dev/null OUTPUT_FILE /dev/null ERROR_FILE /dev/null
    RESULT_VARIABLE rc TIMEOUT 150)
  string(TIMESTAMP t1 "%s")
  math(EXPR dt "${t1} - ${t0}")
  message(STATUS "${what}: exit ${rc}, ${dt} s")
  if(NOT rc EQUAL 0 AND NOT R_OPTIONAL)
    message(FATAL_ERROR "${what} failed: ${rc}")
  endif()
endfunction()

if(RA_ACTION STREQUAL "stop")
  run("wineserver -k" ${RA_WINESERVER} -k OPTIONAL)
  run("wineserver -w" ${RA_WINESERVER} -w OPTIONAL)
  return()
endif()

if(NOT RA_ACTION STREQUAL "start")
  message(FATAL_ERROR "wine-server.cmake: RA_ACTION is start or stop, not ${RA_ACTION}")
endif()

file(MAKE_DIRECTORY ${RA_WINEPREFIX})
# Persistent until `wineserver -k`. If one already runs for this prefix (a run that was
# interrupted), this one exits at once and the running one serves.
run("wineserver -p" ${RA_WINESERVER} -p OPTIONAL)
if(NOT EXISTS ${RA_WINEPREFIX}/system.reg)
  run("wineboot --init (new prefix ${RA_WINEPREFIX})" ${RA_WINE} wineboot --init)
endif()

# (b) no debugger on an unhandled exception: the process ends with the exception code
set(reg ${RA_WINEPREFIX}/ramalloc-aedebug.reg)
file(WRITE ${reg} "Windows Registry Editor Version 5.00\r\n\r\n"
  "[HKEY_LOCAL_MACHINE\\Software\\Microsoft\\Windows NT\\CurrentVersion\\AeDebug]\r\n"
  "\"Debugger\"=\"false\"\r\n"
  "\"Auto\"=\"1\"\r\n")
run("regedit /S (AeDebug Debugger=false)" ${RA_WINE} regedit /S ${reg})

execute_process(COMMAND ${env} ${RA_WINE} reg query
  "HKLM\\Software\\Microsoft\\Windows NT\\CurrentVersion\\AeDebug" /v Debugger
  INPUT_FILE /dev/null OUTPUT_VARIABLE out ERROR_QUIET TIMEOUT 60)
if(NOT out MATCHES "Debugger[ \t]+REG_SZ[ \t]+false")
  message(FATAL_ERROR "AeDebug Debugger is not \"false\" in ${RA_WINEPREFIX}:\n${out}")
endif()
message(STATUS "AeDebug Debugger=false in ${RA_WINEPREFIX}")
