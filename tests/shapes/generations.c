/* Thread generations (issue 12, docs/memory-return.md): generations of 4 short-lived threads; each
 * frees the blocks the previous generation left for it, then allocates 20,000 blocks of 16-128
 * bytes; after the join, the main thread frees every other block of the finished generation and
 * the rest waits for the next one. Prints the peak RSS. Run it on any malloc:
 *   cc -O2 -pthread tests/shapes/generations.c -o gens
 *   ./gens 200; LD_PRELOAD=build/libramalloc.so ./gens 200
 * tests/test_shapes.c runs the same pattern through the ra_* API and checks the committed bytes. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
enum { T = 4, N = 20000 };
static void **left[T];   /* what the previous generation left for thread i */
static void **made[T];
static void *worker(void *arg) {
  long i = (long)arg;
  if (left[i]) for (int k = 0; k < N; k++) free(left[i][k]);
  unsigned s = (unsigned)i * 7919u + 1;
  for (int k = 0; k < N; k++) { s = s * 1103515245u + 12345u; size_t n = 16 + (s >> 16) % 113; made[i][k] = malloc(n); memset(made[i][k], 1, n); }
  return NULL;
}
static long hwm(void) { FILE *f = fopen("/proc/self/status", "r"); char l[256]; long v = 0; while (fgets(l, sizeof l, f)) if (!strncmp(l, "VmHWM:", 6)) v = atol(l + 6); fclose(f); return v; }
int main(int argc, char **argv) {
  int gens = argc > 1 ? atoi(argv[1]) : 25;
  for (int i = 0; i < T; i++) { left[i] = calloc(N, sizeof(void *)); made[i] = calloc(N, sizeof(void *)); }
  void **tmp[T];
  for (int g = 0; g < gens; g++) {
    pthread_t t[T];
    for (long i = 0; i < T; i++) pthread_create(&t[i], NULL, worker, (void *)i);
    for (int i = 0; i < T; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < T; i++) {
      /* main frees every other block; the rest waits for the next generation */
      for (int k = 0; k < N; k += 2) { free(made[i][k]); made[i][k] = NULL; }
      int m = 0; for (int k = 0; k < N; k++) if (made[i][k]) made[i][m++] = made[i][k];
      for (; m < N; m++) made[i][m] = NULL;
      tmp[i] = left[i]; left[i] = made[i]; made[i] = tmp[i];
      memset(made[i], 0, N * sizeof(void *));
    }
    /* the next generation frees N/2 left blocks + NULLs */
  }
  printf("gens %d peak RSS %ld KiB\n", gens, hwm());
  return 0;
}
