/* Options: one table (name, default, meaning), read once from RAMALLOC_<NAME> without allocating. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* OPT_STRING keeps a copy of the text (_ra_option_str; _ra_option gives 1 when set, else 0);
 * OPT_SIGNAL takes a number or a name such as SIGUSR2 or USR2 (0: none). */
typedef enum opt_kind_e { OPT_BOOL, OPT_INT, OPT_SIZE, OPT_ENUM, OPT_STRING, OPT_SIGNAL } opt_kind_t;

typedef struct opt_desc_s {
  const char *name;          /* environment variable, without the RAMALLOC_ prefix */
  opt_kind_t kind;
  long long def;
  const char *const *choices; /* OPT_ENUM: names, index = value */
  const char *meaning;
} opt_desc_t;

static const char *const commit_choices[] = {"auto", "overcommit", "protect", NULL};
static const char *const purge_choices[] = {"reset", "decommit", NULL};
static const char *const on_error_choices[] = {"abort", "warn", NULL};

static const opt_desc_t opt_table[RA_OPT_COUNT] = {
  [RA_OPT_VERBOSE] = {"VERBOSE", OPT_BOOL, 0, NULL,
                      "print the options and every reservation to stderr"},
  [RA_OPT_ARENA_RESERVE] = {"ARENA_RESERVE", OPT_SIZE, (long long)RA_ARENA_DEFAULT, NULL,
                            "bytes of address space reserved per arena (K/M/G suffixes; min 16M)"},
  [RA_OPT_COMMIT] = {"COMMIT", OPT_ENUM, RA_COMMIT_OPT_AUTO, commit_choices,
                     "auto|overcommit|protect: how committing works on Linux (auto: overcommit "
                     "unless vm.overcommit_memory is 2)"},
  [RA_OPT_PURGE_DELAY_MS] = {"PURGE_DELAY_MS", OPT_INT, 100, NULL,
                             "milliseconds a free page or chunk waits before it is purged (0: at once, -1: never)"},
  [RA_OPT_PURGE] = {"PURGE", OPT_ENUM, RA_PURGE_DECOMMIT, purge_choices,
                    "reset|decommit: how free memory goes back (reset keeps the commit charge)"},
  [RA_OPT_PURGE_THREAD] = {"PURGE_THREAD", OPT_BOOL, 1, NULL,
                           "a background thread gives free memory back on a clock (0: only slow paths do)"},
  [RA_OPT_ON_ERROR] = {"ON_ERROR", OPT_ENUM, RA_ON_ERROR_ABORT, on_error_choices,
                       "abort|warn: what follows the report of a misuse (double free, bad pointer, corrupted list)"},
  [RA_OPT_LIMIT] = {"LIMIT", OPT_SIZE, 0, NULL,
                    "cap on committed bytes (K/M/G suffixes; 0: none): past it allocation fails with ENOMEM"},
  [RA_OPT_SHOW_STATS] = {"SHOW_STATS", OPT_BOOL, 0, NULL, "print the statistics to stderr at exit"},
  [RA_OPT_DUMP_LAYOUT] = {"DUMP_LAYOUT", OPT_STRING, 0, NULL,
                          "write the layout as JSON to this file at exit (%p: the process id)"},
  [RA_OPT_DUMP_SIGNAL] = {"DUMP_SIGNAL", OPT_SIGNAL, 0, NULL,
                          "on this signal (e.g. SIGUSR2) write a numbered layout dump while running"},
  [RA_OPT_GUARD_PAGES] = {"GUARD_PAGES", OPT_BOOL, 0, NULL,
                          "put an inaccessible OS page at the end of every page and after every huge "
                          "block, so that running off the end faults (costs memory and mappings)"},
  [RA_OPT_PROTECT_FREED] = {"PROTECT_FREED", OPT_SIZE, (long long)RA_PROTECT_FREED_DEFAULT, NULL,
                            "freed blocks larger than 64 KiB and at most this size (K/M/G; 0: none) are "
                            "inaccessible until their memory is reused, so a use after free faults"},
  [RA_OPT_PROFILE] = {"PROFILE", OPT_SIZE, 0, NULL,
                      "heap profiler: sample one allocation per this many bytes on average (K/M/G; 0: off)"},
  [RA_OPT_PROFILE_FILE] = {"PROFILE_FILE", OPT_STRING, 0, NULL,
                           "heap profile (google-pprof's format) written at exit; default ramalloc.%p.heap "
                           "when profiling (%p: the process id)"},
  [RA_OPT_LEAKS] = {"LEAKS", OPT_BOOL, 0, NULL,
                    "list the sampled call sites whose blocks are still live at exit (profiles at the "
                    "default rate unless RAMALLOC_PROFILE says otherwise)"},
  [RA_OPT_TIMELINE] = {"TIMELINE", OPT_STRING, 0, NULL,
                       "write reserved, committed, resident, live and purged bytes over time to this CSV "
                       "file (%p: the process id)"},
  [RA_OPT_TIMELINE_MS] = {"TIMELINE_MS", OPT_INT, 10, NULL, "milliseconds between timeline rows"},
  [RA_OPT_CANARY] = {"CANARY", OPT_BOOL, 0, NULL,
                     "end every block of a page with a secret canary, checked at free and reuse, so that an "
                     "overflow past a block's usable size or an underflow before its start is reported"},
  [RA_OPT_SECURE] = {"SECURE", OPT_BOOL, 0, NULL,
                     "every detection: CANARY=1, GUARD_PAGES=1, PROTECT_FREED=1T, and freed small and medium "
                     "blocks zeroed and checked at reuse (a write after free is reported); options set "
                     "explicitly win"},
};

static long long opt_value[RA_OPT_COUNT];
static bool opt_from_env[RA_OPT_COUNT];
static atomic_bool opt_ready;

/* The text of string options, copied (the environment may change later). */
static char str_pool[4096];
static size_t str_used;
static const char *opt_str[RA_OPT_COUNT];

static bool save_string(int opt, const char *s) {
  size_t n = strlen(s) + 1;
  if (n > sizeof str_pool - str_used) return false;
  memcpy(str_pool + str_used, s, n);
  opt_str[opt] = str_pool + str_used;
  str_used += n;
  return true;
}

/* Signals worth asking for by name, where the OS has them (any number is accepted too). */
#define SIGNAL_NAME(n) {#n, SIG##n}
static const struct {
  const char *name;
  int number;
} signal_names[] = {
  SIGNAL_NAME(INT), SIGNAL_NAME(TERM),
#ifdef SIGUSR2
  SIGNAL_NAME(HUP), SIGNAL_NAME(QUIT), SIGNAL_NAME(USR1), SIGNAL_NAME(USR2), SIGNAL_NAME(ALRM),
  SIGNAL_NAME(WINCH), SIGNAL_NAME(URG), SIGNAL_NAME(PROF), SIGNAL_NAME(VTALRM),
#endif
};
#undef SIGNAL_NAME

static bool parse_signal(const char *s, long long *out) {
  if (*s >= '0' && *s <= '9') {
    long long v = 0;
    for (; *s >= '0' && *s <= '9' && v < 1000; s++) v = v * 10 + (*s - '0');
    if (*s != '\0' || v >= 65) return false;
    *out = v;
    return true;
  }
  if (!strncasecmp(s, "SIG", 3)) s += 3;
  for (size_t i = 0; i < sizeof signal_names / sizeof signal_names[0]; i++) {
    if (!strcasecmp(s, signal_names[i].name)) {
      *out = signal_names[i].number;
      return true;
    }
  }
  return false;
}

static const char *signal_name(long long v) {
  for (size_t i = 0; i < sizeof signal_names / sizeof signal_names[0]; i++)
    if (signal_names[i].number == v) return signal_names[i].name;
  return "?";
}

static bool parse_size(const char *s, long long *out) {
  if (*s < '0' || *s > '9') return false;
  unsigned long long v = 0;
  for (; *s >= '0' && *s <= '9'; s++) {
    if (v > (1ULL << 50)) return false;
    v = v * 10 + (unsigned)(*s - '0');
  }
  unsigned shift = 0;
  switch (*s) {
    case 'k': case 'K': shift = 10; s++; break;
    case 'm': case 'M': shift = 20; s++; break;
    case 'g': case 'G': shift = 30; s++; break;
    case 't': case 'T': shift = 40; s++; break;
    default: break;
  }
  if (*s == 'i' || *s == 'I') s++;
  if (*s == 'b' || *s == 'B') s++;
  if (*s != '\0' || (shift > 0 && v > (1ULL << (62 - shift)))) return false;
  *out = (long long)(v << shift);
  return true;
}

static bool parse_value(const opt_desc_t *d, const char *s, long long *out) {
  switch (d->kind) {
    case OPT_BOOL:
      if (!strcmp(s, "1") || !strcasecmp(s, "true") || !strcasecmp(s, "on") || !strcasecmp(s, "yes")) {
        *out = 1;
        return true;
      }
      if (!strcmp(s, "0") || !strcasecmp(s, "false") || !strcasecmp(s, "off") || !strcasecmp(s, "no")) {
        *out = 0;
        return true;
      }
      return false;
    case OPT_SIZE:
      return parse_size(s, out);
    case OPT_INT: {
      bool neg = *s == '-';
      long long v;
      if (!parse_size(neg ? s + 1 : s, &v)) return false;
      *out = neg ? -v : v;
      return true;
    }
    case OPT_ENUM:
      for (long long i = 0; d->choices[i] != NULL; i++) {
        if (!strcasecmp(s, d->choices[i])) {
          *out = i;
          return true;
        }
      }
      return false;
    case OPT_STRING:
      *out = 1;
      return true;
    case OPT_SIGNAL:
      return parse_signal(s, out);
  }
  return false;
}

void _ra_options_init(void) {
  if (atomic_load_explicit(&opt_ready, memory_order_acquire)) return;
  for (int i = 0; i < RA_OPT_COUNT; i++) {
    const opt_desc_t *d = &opt_table[i];
    char var[64];
    _ra_fmt(var, sizeof var, "RAMALLOC_%s", d->name);
    long long v = d->def;
    const char *s = getenv(var); /* getenv does not allocate */
    if (s != NULL && *s != '\0') {
      if (parse_value(d, s, &v) && (d->kind != OPT_STRING || save_string(i, s))) {
        opt_from_env[i] = true;
      } else {
        _ra_fmt_write(2, "ramalloc: ignoring %s=%s (not a valid value); using the default\n", var, s);
        v = d->def;
      }
    }
    opt_value[i] = v;
  }
  /* RAMALLOC_SECURE turns on every detection the environment did not set itself. */
  if (opt_value[RA_OPT_SECURE]) {
    if (!opt_from_env[RA_OPT_CANARY]) opt_value[RA_OPT_CANARY] = 1;
    if (!opt_from_env[RA_OPT_GUARD_PAGES]) opt_value[RA_OPT_GUARD_PAGES] = 1;
    if (!opt_from_env[RA_OPT_PROTECT_FREED]) opt_value[RA_OPT_PROTECT_FREED] = (long long)1 << 40;
  }
  /* Arena reserve: at least RA_ARENA_MIN, a whole number of chunks. */
  long long ar = opt_value[RA_OPT_ARENA_RESERVE];
  if (ar < (long long)RA_ARENA_MIN) ar = (long long)RA_ARENA_MIN;
  opt_value[RA_OPT_ARENA_RESERVE] = (long long)_ra_align_up((size_t)ar, RA_CHUNK_SIZE);
  atomic_store_explicit(&opt_ready, true, memory_order_release);
}

long long _ra_option(ra_option_t opt) { return opt_value[opt]; }

const char *_ra_option_str(ra_option_t opt) { return opt_str[opt]; }

void _ra_options_print(void) {
  for (int i = 0; i < RA_OPT_COUNT; i++) {
    const opt_desc_t *d = &opt_table[i];
    long long v = opt_value[i];
    if (d->kind == OPT_ENUM)
      _ra_fmt_write(2, "ramalloc: option RAMALLOC_%s=%s%s  # %s\n", d->name, d->choices[v],
                opt_from_env[i] ? "" : " (default)", d->meaning);
    else if (d->kind == OPT_STRING)
      _ra_fmt_write(2, "ramalloc: option RAMALLOC_%s=%s%s  # %s\n", d->name, opt_str[i] ? opt_str[i] : "",
                opt_from_env[i] ? "" : " (default)", d->meaning);
    else if (d->kind == OPT_SIGNAL && v != 0)
      _ra_fmt_write(2, "ramalloc: option RAMALLOC_%s=%lld (SIG%s)%s  # %s\n", d->name, v, signal_name(v),
                opt_from_env[i] ? "" : " (default)", d->meaning);
    else
      _ra_fmt_write(2, "ramalloc: option RAMALLOC_%s=%lld%s  # %s\n", d->name, v,
                opt_from_env[i] ? "" : " (default)", d->meaning);
  }
}
