/* probe: print which shared object provides the process's malloc and free, so the runner can check
 * that an LD_PRELOAD took effect. Output: "malloc=PATH free=PATH". */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

static const char *provider(const char *sym) {
  void *f = dlsym(RTLD_DEFAULT, sym);
  Dl_info info;
  if (!f || !dladdr(f, &info) || !info.dli_fname) return "?";
  return info.dli_fname;
}

int main(void) {
  void *p = malloc(100); /* make sure the allocator works at all */
  if (!p) return 4;
  ((volatile char *)p)[99] = 1;
  free(p);
  printf("malloc=%s free=%s\n", provider("malloc"), provider("free"));
  return 0;
}
