/* A library the dropin_hard program is linked to. Its constructor runs while the dynamic loader is
 * still starting the program (before main, maybe before ramalloc's own constructor): it allocates,
 * and it loads a plugin with dlopen from inside the loader's initialisation. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

static void *early_blocks[32];
static char *early_string;
static void *early_plugin;

__attribute__((constructor)) static void early_init(void) {
  for (int i = 0; i < 32; i++) early_blocks[i] = malloc((size_t)(i + 1) * 100);
  early_string = strdup("allocated while the loader ran constructors");
  early_blocks[0] = realloc(early_blocks[0], 100000);
  const char *plugin = getenv("DROPIN_PLUGIN");
  if (plugin != NULL) early_plugin = dlopen(plugin, RTLD_NOW | RTLD_LOCAL);
}

__attribute__((destructor)) static void early_fini(void) {
  for (int i = 0; i < 32; i++) free(early_blocks[i]);
  free(early_string);
  if (early_plugin) dlclose(early_plugin);
}

__attribute__((visibility("default"))) void *early_block(int i) { return early_blocks[i]; }
__attribute__((visibility("default"))) const char *early_text(void) { return early_string; }
__attribute__((visibility("default"))) void *early_plugin_handle(void) { return early_plugin; }
