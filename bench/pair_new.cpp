// The steady-state pair of bench/pair_instructions.c through C++'s operator new and delete: 1,024
// live 32-byte blocks, each step deletes a random one (sized delete, or plain delete with
// -DPAIR_UNSIZED) and news its replacement. Run preloaded under callgrind by pair_instructions.sh.
#include <cstdlib>
#include <new>

int main(int argc, char **argv) {
  long steps = argc > 1 ? std::atol(argv[1]) : 1000000;
  static void *live[1024];
  for (int i = 0; i < 1024; i++) live[i] = ::operator new(32);
  unsigned x = 2463534242u;
  for (long s = 0; s < steps; s++) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    unsigned i = x & 1023;
#ifdef PAIR_UNSIZED
    ::operator delete(live[i]);
#else
    ::operator delete(live[i], 32);
#endif
    live[i] = ::operator new(32);
    *(volatile char *)live[i] = (char)s;
  }
  for (int i = 0; i < 1024; i++) ::operator delete(live[i]);
  return 0;
}
