/* The heap profiler's unwinder, loaded with dlopen (prof_posix.c): in libramalloc.so only. A static
 * program never gets this file, so it never names dlopen (glibc warns at link time about dlopen in
 * static programs); its profiler takes glibc's backtrace() instead. */
#include <dlfcn.h>
#include <stddef.h>

/* unw_backtrace of Debian's libunwind (libunwind8), or NULL when it cannot be loaded. */
__attribute__((visibility("hidden"))) void *_ra_prof_unwind_find(void);

void *_ra_prof_unwind_find(void) {
  void *lib = dlopen("libunwind.so.8", RTLD_NOW | RTLD_LOCAL);
  return lib != NULL ? dlsym(lib, "unw_backtrace") : NULL;
}
