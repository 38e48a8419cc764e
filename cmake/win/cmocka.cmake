# cmocka for the Windows test suite, built from Debian's source package with the same mingw-w64
# toolchain, at configure time, once per build folder (cached in <build>/_cmocka).
#
#   1. source: `apt-get source cmocka` through a private deb-src list pointing at the Debian archive
#      this machine already uses (apt's -o Dir::Etc::SourceList/SourceParts/State::Lists/Cache
#      options: /etc/apt and the system's package lists are not touched, no root needed);
#      or -DRAMALLOC_CMOCKA_SOURCE=<unpacked cmocka source> to skip the download.
#   2. build: cmocka's own CMake project, static library only, copied into <build>/_cmocka/install
#      (cmocka.h with its printf format checks set to GNU printf, which is what the library uses).
#   3. result: CMOCKA_INCLUDE_DIR and CMOCKA_LIBRARY (cache), which tests/CMakeLists.txt's ordinary
#      cmocka search then takes as found.
#
# Delete <build>/_cmocka to fetch and build again.

set(RAMALLOC_CMOCKA_SOURCE "" CACHE PATH "Unpacked cmocka source for the Windows tests (empty: apt-get source)")

set(RA_CMOCKA_ROOT ${CMAKE_BINARY_DIR}/_cmocka)
set(RA_CMOCKA_PREFIX ${RA_CMOCKA_ROOT}/install)
set(RA_CMOCKA_LIB ${RA_CMOCKA_PREFIX}/lib/libcmocka-static.a)

function(ra_cmocka_run what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "cmocka for Windows: ${what} failed (${rc}):\n${out}")
  endif()
endfunction()

# The Debian archive and release this machine installs from (first "deb" entry for its codename).
function(ra_cmocka_archive out_uri out_suite)
  set(codename "")
  if(EXISTS /etc/os-release)
    file(STRINGS /etc/os-release line REGEX "^VERSION_CODENAME=")
    string(REGEX REPLACE "^VERSION_CODENAME=\"?([^\"]*)\"?$" "\\1" codename "${line}")
  endif()
  execute_process(COMMAND apt-get indextargets --format "$(TARGET-OF) $(REPO_URI) $(RELEASE)"
    OUTPUT_VARIABLE targets ERROR_QUIET)
  string(REPLACE "\n" ";" targets "${targets}")
  set(uri "")
  foreach(t IN LISTS targets)
    if(t MATCHES "^deb ([^ ]+) ([^ ]+)$" AND (codename STREQUAL "" OR CMAKE_MATCH_2 STREQUAL codename))
      set(uri ${CMAKE_MATCH_1})
      set(codename ${CMAKE_MATCH_2})
      break()
    endif()
  endforeach()
  if(uri STREQUAL "")
    set(uri http://deb.debian.org/debian/)
  endif()
  if(codename STREQUAL "")
    set(codename bookworm)
  endif()
  set(${out_uri} ${uri} PARENT_SCOPE)
  set(${out_suite} ${codename} PARENT_SCOPE)
endfunction()

function(ra_cmocka_fetch out_dir)
  set(apt ${RA_CMOCKA_ROOT}/apt)
  file(REMOVE_RECURSE ${apt})
  file(MAKE_DIRECTORY ${apt}/lists/partial ${apt}/cache/archives/partial ${apt}/sources.list.d ${apt}/src)
  ra_cmocka_archive(uri suite)
  set(opts "")
  if(EXISTS /usr/share/keyrings/debian-archive-keyring.gpg)
    set(opts " [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg]")
  endif()
  file(WRITE ${apt}/sources.list "deb-src${opts} ${uri} ${suite} main\n")
  set(apt_get apt-get -q
    -o Dir::Etc::SourceList=${apt}/sources.list
    -o Dir::Etc::SourceParts=${apt}/sources.list.d
    -o Dir::State::Lists=${apt}/lists
    -o Dir::Cache=${apt}/cache)
  execute_process(COMMAND id -u OUTPUT_VARIABLE uid OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(uid STREQUAL "0")
    # root: keep apt from handing the download to the _apt user, who cannot write here
    list(APPEND apt_get -o APT::Sandbox::User=root)
  endif()
  message(STATUS "cmocka for Windows: apt-get source cmocka (deb-src ${uri} ${suite} main)")
  ra_cmocka_run("apt-get update (private deb-src list)" ${apt_get} update)
  execute_process(COMMAND ${apt_get} source cmocka WORKING_DIRECTORY ${apt}/src
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  file(GLOB dirs LIST_DIRECTORIES true ${apt}/src/cmocka-*)
  list(FILTER dirs EXCLUDE REGEX "\\.(tar|dsc|asc)")
  if(NOT rc EQUAL 0 OR dirs STREQUAL "")
    message(FATAL_ERROR "cmocka for Windows: apt-get source cmocka failed (${rc}; needs dpkg-dev):\n${out}")
  endif()
  list(GET dirs 0 dir)
  set(${out_dir} ${dir} PARENT_SCOPE)
endfunction()

if(NOT EXISTS ${RA_CMOCKA_LIB})
  if(RAMALLOC_CMOCKA_SOURCE)
    set(src ${RAMALLOC_CMOCKA_SOURCE})
  else()
    ra_cmocka_fetch(src)
  endif()
  set(toolchain ${CMAKE_TOOLCHAIN_FILE})
  if(NOT IS_ABSOLUTE "${toolchain}" OR NOT EXISTS "${toolchain}")
    set(toolchain ${CMAKE_CURRENT_LIST_DIR}/../mingw-w64-x86_64.cmake)
  endif()
  message(STATUS "cmocka for Windows: building ${src}")
  file(REMOVE_RECURSE ${RA_CMOCKA_ROOT}/build)
  ra_cmocka_run("configure" ${CMAKE_COMMAND} -S ${src} -B ${RA_CMOCKA_ROOT}/build
    -DCMAKE_TOOLCHAIN_FILE=${toolchain} -DCMAKE_BUILD_TYPE=Release
    -DCMAKE_INSTALL_PREFIX=${RA_CMOCKA_PREFIX} -DWITH_STATIC_LIB=ON -DWITH_EXAMPLES=OFF -DUNIT_TESTING=OFF)
  ra_cmocka_run("build" ${CMAKE_COMMAND} --build ${RA_CMOCKA_ROOT}/build --target cmocka-static)
  file(MAKE_DIRECTORY ${RA_CMOCKA_PREFIX}/include ${RA_CMOCKA_PREFIX}/lib)
  # The library is built with __USE_MINGW_ANSI_STDIO (the toolchain file), so its print_message
  # and fail_msg format with mingw's C99 printf; the header's format checks must say so too, or
  # gcc checks every %zu against msvcrt's printf and warns.
  file(READ ${src}/include/cmocka.h header)
  string(REPLACE "__format__ (__printf__," "__format__ (__gnu_printf__," header "${header}")
  file(WRITE ${RA_CMOCKA_PREFIX}/include/cmocka.h "${header}")
  file(GLOB_RECURSE built ${RA_CMOCKA_ROOT}/build/libcmocka-static.a)
  if(built STREQUAL "")
    message(FATAL_ERROR "cmocka for Windows: the build made no libcmocka-static.a")
  endif()
  list(GET built 0 built)
  file(COPY ${built} DESTINATION ${RA_CMOCKA_PREFIX}/lib)
  file(WRITE ${RA_CMOCKA_ROOT}/SOURCE "${src}\n")
endif()

set(CMOCKA_INCLUDE_DIR ${RA_CMOCKA_PREFIX}/include CACHE PATH "cmocka.h (Windows build)" FORCE)
set(CMOCKA_LIBRARY ${RA_CMOCKA_LIB} CACHE FILEPATH "cmocka static library (Windows build)" FORCE)
