/* ramalloc-demo: allocate through ramalloc and show what its arenas hold.
 * It prints the process's virtual and resident size before and after the first allocation (the
 * arena reservation grows the first, only touched pages grow the second), then the statistics
 * after a mixed workload. */
#include <ramalloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void vm_sizes(long *vsz_kib, long *rss_kib) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  *vsz_kib = *rss_kib = -1;
  if (f == NULL) return;
  while (fgets(line, sizeof line, f)) {
    if (!strncmp(line, "VmSize:", 7)) *vsz_kib = strtol(line + 7, NULL, 10);
    if (!strncmp(line, "VmRSS:", 6)) *rss_kib = strtol(line + 6, NULL, 10);
  }
  fclose(f);
}

int main(void) {
  long v0, r0, v1, r1;
  vm_sizes(&v0, &r0);
  void *first = ra_malloc(100);
  vm_sizes(&v1, &r1);
  printf("first ra_malloc(100) = %p\n", first);
  printf("  virtual size  %8ld KiB -> %8ld KiB  (+%ld KiB: the arena reservation)\n", v0, v1, v1 - v0);
  printf("  resident size %8ld KiB -> %8ld KiB  (+%ld KiB: only what was touched)\n\n", r0, r1, r1 - r0);

  enum { N = 20000 };
  static void *blocks[N];
  unsigned seed = 12345;
  size_t asked = 0;
  for (int i = 0; i < N; i++) {
    seed = seed * 1103515245u + 12345u;
    size_t r = (seed >> 8) % 1000;
    size_t size = r < 900 ? 8 + r % 256 : r < 990 ? 1024 + (r % 90) * 700 : 300000 + r * 1000;
    blocks[i] = ra_malloc(size);
    if (blocks[i] == NULL) {
      perror("ra_malloc");
      return 1;
    }
    memset(blocks[i], (int)(i & 0xff), size);
    asked += size;
  }
  for (int i = 0; i < N; i += 2) ra_free(blocks[i]);
  void *huge = ra_malloc((size_t)48 << 20);
  printf("%d blocks allocated (%zu bytes asked), every other one freed, one 48 MiB block added\n\n", N,
         asked);
  fflush(stdout);
  ra_stats_print(1);
  ra_free(huge);
  for (int i = 1; i < N; i += 2) ra_free(blocks[i]);
  ra_free(first);
  return 0;
}
