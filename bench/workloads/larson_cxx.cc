// The C++ allocation calls of wl-larson-cxx (larson.c built with LARSON_CXX): plain operator new
// and sized operator delete, as a C++ server would allocate its request buffers.
#include <cstddef>
#include <new>

extern "C" void *larson_new(std::size_t n) { return ::operator new(n); }
extern "C" void larson_delete(void *p, std::size_t n) { ::operator delete(p, n); }
