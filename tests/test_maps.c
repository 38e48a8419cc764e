/* Scale: 4 GiB live in blocks of 1..64 KiB must not fragment the address space into many mappings
 * (the kernel limits a process to ~65530 of them, and every mapping costs). Registered twice with
 * ctest: default settings and RAMALLOC_COMMIT=protect, where commits change page protection and
 * could split mappings. Heavy: skipped under sanitizers and when less than 5 GiB is available (the
 * program says why and exits 77, which ctest reports as skipped). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test_common.h"
#include "ramalloc.h"

static char buf[1 << 16];

static size_t count_maps(void) {
  int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  assert_true(fd >= 0);
  size_t lines = 0;
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0)
    for (ssize_t i = 0; i < n; i++) lines += buf[i] == '\n';
  close(fd);
  return lines;
}

/* MemAvailable from /proc/meminfo in bytes, 0 if unknown. */
static size_t mem_available(void) {
  int fd = open("/proc/meminfo", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = 0;
  const char *s = strstr(buf, "MemAvailable:");
  if (!s) return 0;
  return (size_t)strtoull(s + 13, NULL, 10) * 1024;
}

enum { MAXB = 300000 };
static uint8_t *blocks[MAXB];
static size_t sizes[MAXB];

static void test_4g_few_mappings(void **state) {
  (void)state;
  const size_t target = 4 * RA_GiB;
  ra_stats_t st0, st1, st2;
  ra_stats_get(&st0);
  size_t maps_before = count_maps();

  rt_rng_t r;
  rt_rng_seed(&r, 2024);
  size_t total = 0, nb = 0;
  while (total < target) {
    assert_true(nb < MAXB);
    size_t n = rt_rng_range(&r, RA_KiB, 64 * RA_KiB);
    uint8_t *p = ra_malloc(n);
    if (!p) fail_msg("ra_malloc(%zu) failed with %zu MiB live in %zu blocks (%zu mappings)", n, total >> 20, nb, count_maps());
    /* one byte per 4 KiB makes every page real without filling the whole block */
    for (size_t i = 0; i < n; i += 4096) p[i] = (uint8_t)(nb + i);
    p[n - 1] = (uint8_t)nb;
    blocks[nb] = p;
    sizes[nb] = n;
    nb++;
    total += n;
  }

  size_t maps_live = count_maps();
  ra_stats_get(&st1);
  print_message("%zu blocks, %zu MiB live, %zu arenas, %zu MiB committed, %zu mappings (%zu before)\n", nb,
                total >> 20, st1.arenas, st1.committed >> 20, maps_live, maps_before);
  if (maps_live >= 1000) fail_msg("%zu lines in /proc/self/maps with 4 GiB live", maps_live);
  assert_true(st1.live_bytes >= st0.live_bytes + total);
  assert_int_equal(st1.live_blocks, st0.live_blocks + nb);
  assert_true(st1.committed >= total);

  /* the content is still there: spot-check every block's first and last byte */
  for (size_t k = 0; k < nb; k++) {
    if (sizes[k] > 1 && blocks[k][0] != (uint8_t)k) fail_msg("block %zu lost its first byte", k);
    if (blocks[k][sizes[k] - 1] != (uint8_t)k) fail_msg("block %zu lost its last byte", k);
  }

  /* free in an interleaved order (evens, then odds) so pages empty out late */
  for (size_t k = 0; k < nb; k += 2) ra_free(blocks[k]);
  size_t maps_half = count_maps();
  if (maps_half >= 1000) fail_msg("%zu lines in /proc/self/maps with half of 4 GiB freed", maps_half);
  for (size_t k = 1; k < nb; k += 2) ra_free(blocks[k]);
  size_t maps_after = count_maps();
  if (maps_after >= 1000) fail_msg("%zu lines in /proc/self/maps after freeing 4 GiB", maps_after);
  ra_stats_get(&st2);
  print_message("after freeing: %zu mappings, %zu MiB committed, %zu arenas\n", maps_after, st2.committed >> 20,
                st2.arenas);
  assert_int_equal(st2.live_blocks, st0.live_blocks);
  assert_int_equal(st2.live_bytes, st0.live_bytes);
}

int main(void) {
#if RA_TEST_SANITIZED
  printf("SKIP: 4 GiB live is too heavy under a sanitizer\n");
  return 77; /* ctest's SKIP_RETURN_CODE */
#endif
  size_t avail = mem_available();
  if (avail != 0 && avail < 5 * RA_GiB) {
    printf("SKIP: only %zu MiB available, the test needs 5 GiB\n", avail >> 20);
    return 77;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_4g_few_mappings),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
