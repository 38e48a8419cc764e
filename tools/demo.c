/* ramalloc-demo: allocate through ramalloc and show what its arenas hold.
 * It prints the process's virtual and resident size before and after the first allocation (the
 * arena reservation grows the first, only touched pages grow the second), then the statistics
 * after a mixed workload, without the table of size classes, and a short summary.
 *   ramalloc-demo [--classes]     --classes: the statistics with the whole table of size classes */
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

/* ra_stats_print_out callback: the text up to the table of size classes (its header line starts
 * with "  class size"); the table itself is dropped. */
typedef struct cut_s {
  char line[512];
  size_t len;
  int in_table;
} cut_t;

static void print_until_classes(const char *text, size_t len, void *arg) {
  cut_t *c = arg;
  for (size_t i = 0; i < len; i++) {
    if (c->len < sizeof c->line - 1) c->line[c->len++] = text[i];
    if (text[i] != '\n') continue;
    c->line[c->len] = 0;
    if (!strncmp(c->line, "  class size", 12)) c->in_table = 1;
    if (!c->in_table) fputs(c->line, stdout);
    c->len = 0;
  }
}

static void summary(void) {
  ra_stats_t st;
  ra_stats_get(&st);
  size_t classes = 0, smallest = 0, largest = 0;
  for (size_t i = 0; i < st.class_count; i++) {
    const ra_class_stats_t *c = &st.classes[i];
    if (c->block_size == 0 || c->pages == 0) continue;
    if (classes++ == 0) smallest = c->block_size;
    largest = c->block_size;
  }
  printf("  size classes:       %zu of %zu in use (blocks of %zu to %zu bytes); ramalloc-demo --classes\n"
         "                      prints them one a line\n\n",
         classes, st.class_count, smallest, largest);
  printf("Summary: %zu MiB of address space reserved, %zu MiB of it committed (%.1f%%) for %zu MiB\n"
         "in live blocks: committed memory is %.2f times the live bytes (free blocks kept in their pages,\n"
         "metadata, rounding).\n",
         st.reserved >> 20, st.committed >> 20,
         st.reserved ? 100.0 * (double)st.committed / (double)st.reserved : 0.0, st.live_bytes >> 20, st.live_bytes ? (double)st.committed / (double)st.live_bytes : 0.0);
}

int main(int argc, char **argv) {
  int classes = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--classes")) {
      classes = 1;
    } else {
      fprintf(stderr, "usage: ramalloc-demo [--classes]\n");
      return 2;
    }
  }
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
  if (classes) {
    ra_stats_print(1);
    printf("\nPer size class: the pages holding it and their blocks, used and free. tail bytes: what is\n"
           "left at the end of those pages, too small for one more block (exact). rounding max: at most\n"
           "this many bytes of the used blocks lie past what was asked (a bound: each block counts its\n"
           "size minus the smallest request its class serves).\n");
  } else {
    cut_t cut = {.len = 0, .in_table = 0};
    ra_stats_print_out(print_until_classes, &cut);
    summary();
  }
  ra_free(huge);
  for (int i = 1; i < N; i += 2) ra_free(blocks[i]);
  ra_free(first);
  return 0;
}
