/* A plugin for dropin_dlopen: it allocates in its constructor, frees in its destructor, keeps
 * per-thread state in __thread variables (dynamic TLS: glibc allocates each thread's block with
 * malloc the first time the thread touches it), and trades blocks with the program that loaded it. */
#include <stdlib.h>
#include <string.h>

static char **ctor_strings;
static __thread char tls_scratch[512];
static __thread void *tls_block;
static __thread unsigned long tls_count = 1;

__attribute__((constructor)) static void plugin_init(void) {
  ctor_strings = calloc(64, sizeof *ctor_strings);
  for (int i = 0; ctor_strings && i < 64; i++) {
    ctor_strings[i] = malloc((size_t)i * 8 + 1);
    if (ctor_strings[i]) memset(ctor_strings[i], 'c', (size_t)i * 8);
    if (ctor_strings[i]) ctor_strings[i][i * 8] = '\0';
  }
}

__attribute__((destructor)) static void plugin_fini(void) {
  for (int i = 0; ctor_strings && i < 64; i++) free(ctor_strings[i]);
  free(ctor_strings);
}

/* A block the caller frees (after the plugin may be gone). */
__attribute__((visibility("default"))) void *plugin_make(size_t n, int fill) {
  unsigned char *p = malloc(n);
  if (p) memset(p, fill, n);
  return p;
}

/* Frees a block the caller allocated. */
__attribute__((visibility("default"))) void plugin_take(void *p) { free(p); }

/* Per-thread work through the __thread variables; returns a checksum. */
__attribute__((visibility("default"))) unsigned long plugin_thread_work(unsigned long seed) {
  free(tls_block);
  tls_block = malloc(100 + seed % 1000);
  if (tls_block == NULL) return 0;
  memset(tls_block, (int)(seed & 0xff), 100);
  memset(tls_scratch, (int)(seed & 0x7f), sizeof tls_scratch);
  unsigned long sum = tls_count++;
  for (size_t i = 0; i < sizeof tls_scratch; i++) sum += (unsigned char)tls_scratch[i];
  for (int i = 0; ctor_strings && i < 64; i++) sum += strlen(ctor_strings[i]);
  return sum;
}

/* Leave the thread's block behind on purpose: the thread frees it with plugin_thread_done. */
__attribute__((visibility("default"))) void plugin_thread_done(void) {
  free(tls_block);
  tls_block = NULL;
}
