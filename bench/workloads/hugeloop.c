/* hugeloop: allocate a huge block (5-25 MiB), write every page of it, check it, free it; again.
 *
 * One thread. Nothing else is live, so an allocator that keeps the memory of the block it was
 * just given back (and reuses it for the next one) pays for neither the system calls nor the page
 * faults of fresh memory; one that returns it to the OS at once pays both every time. */
#include "common.h"

#define MIN_SIZE ((size_t)5 << 20)
#define MAX_SIZE ((size_t)25 << 20)

int main(int argc, char **argv) {
  wl_args a;
  wl_parse(&a, "hugeloop", argc, argv, 1, 1);
  a.threads = 1;
  wl_rng r;
  wl_rng_seed(&r, a.seed, 0);
  size_t loops = wl_scaled(&a, 400, 5);
  uint64_t bytes = 0;
  double t0 = wl_now();
  for (size_t i = 0; i < loops; i++) {
    size_t n = wl_between(&r, MIN_SIZE, MAX_SIZE);
    unsigned char *p = wl_malloc(n);
    wl_fill_sparse(p, n, i + 1);
    wl_verify_sparse(p, n, i + 1, "huge block");
    free(p);
    bytes += n;
  }
  double t = wl_now() - t0;
  wl_summary(&a, t, "loops=%zu mib_allocated=%.0f", loops, wl_mib(bytes));
  return 0;
}
