# CMake toolchain file: cross-build ramalloc for 64-bit Windows with Debian's mingw-w64 (gcc 12).
#
#   cmake -S . -B build-win -DCMAKE_TOOLCHAIN_FILE=cmake/mingw-w64-x86_64.cmake
#
# Builds ramalloc.dll, libramalloc.a and the test executables. Every executable and the DLL link the
# GCC and winpthreads runtimes statically (-static -static-libgcc), so they run under wine or on
# Windows without libgcc_s_seh-1.dll / libwinpthread-1.dll next to them. Tests run through wine
# (CMAKE_CROSSCOMPILING_EMULATOR, set by cmake/win/wine.cmake when the test suite is configured).
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR x86_64)

set(RA_MINGW_TRIPLE x86_64-w64-mingw32)
# Debian ships a "-win32" and a "-posix" flavour of the compilers; ramalloc needs neither thread
# model (it links winpthreads itself), so take whichever the alternatives point at.
find_program(CMAKE_C_COMPILER NAMES ${RA_MINGW_TRIPLE}-gcc ${RA_MINGW_TRIPLE}-gcc-win32 REQUIRED)
find_program(CMAKE_CXX_COMPILER NAMES ${RA_MINGW_TRIPLE}-g++ ${RA_MINGW_TRIPLE}-g++-win32)
find_program(CMAKE_RC_COMPILER NAMES ${RA_MINGW_TRIPLE}-windres)
find_program(CMAKE_AR NAMES ${RA_MINGW_TRIPLE}-gcc-ar ${RA_MINGW_TRIPLE}-ar)
find_program(CMAKE_RANLIB NAMES ${RA_MINGW_TRIPLE}-gcc-ranlib ${RA_MINGW_TRIPLE}-ranlib)

# Libraries and headers come from the mingw-w64 sysroot (and whatever a caller adds to
# CMAKE_FIND_ROOT_PATH or CMAKE_PREFIX_PATH, e.g. the cmocka built for Windows); programs from the host.
list(APPEND CMAKE_FIND_ROOT_PATH /usr/${RA_MINGW_TRIPLE})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# pkg-config must not answer with the host's (Linux) libraries: only the sysroot's .pc files.
# (An empty value would unset the variable and bring back the host's default path.)
set(ENV{PKG_CONFIG_LIBDIR} /usr/${RA_MINGW_TRIPLE}/lib/pkgconfig)
unset(ENV{PKG_CONFIG_PATH})

# C99 printf/scanf from mingw (%zu, %lld, %Lf) instead of msvcrt's own.
set(CMAKE_C_FLAGS_INIT "-D__USE_MINGW_ANSI_STDIO=1")
set(CMAKE_CXX_FLAGS_INIT "-D__USE_MINGW_ANSI_STDIO=1")
set(CMAKE_EXE_LINKER_FLAGS_INIT "-static -static-libgcc")
set(CMAKE_SHARED_LINKER_FLAGS_INIT "-static -static-libgcc")
set(CMAKE_MODULE_LINKER_FLAGS_INIT "-static -static-libgcc")
