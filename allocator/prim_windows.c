/* The platform layer on Windows, beside the memory half (os_windows.c): the heap pointer in a TLS
 * index (TlsAlloc), thread exit through a fiber-local-storage callback (FlsAlloc), no fork; also
 * the allocator's locks (SRW locks), yielding, and its clocks (GetTickCount64), which
 * prim_windows.h declares.
 *
 * Why not __thread: mingw-w64's __thread/_Thread_local is emulated (emutls), and its first touch on
 * every thread calls malloc, which here would be ramalloc itself.
 *
 * The fast paths call _ra_heap_current() on every malloc and free, so it reads the slot straight
 * from the thread environment block, as TlsGetValue does, without TlsGetValue's side effect: on
 * success TlsGetValue clears the thread's last-error value, and a malloc between a failing Win32
 * call and the caller's GetLastError() must not change what GetLastError() says. TEB.TlsSlots holds
 * the first 64 indexes (TLS_MINIMUM_AVAILABLE); a higher index (a process that used up the first 64
 * before ramalloc started) goes through TlsGetValue with the last error saved and restored.
 *
 * An empty slot (NULL, what every new thread starts with) means the static empty heap, so the fast
 * path still needs no "initialised?" test. The FLS slot holds the same heap pointer; the FLS
 * callback runs at thread exit (and when a fiber is deleted) and calls the allocator's `done`.
 * The module holding the callback (ramalloc.dll, or the program linked to libramalloc.a) is pinned:
 * FreeLibrary never unloads it, since threads still to exit would call into it, and the blocks it
 * handed out outlive any handle to it (as -z nodelete on Linux). */
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>
#include <winternl.h>

#include <stdlib.h>

#include "internal.h"

_Static_assert(TLS_MINIMUM_AVAILABLE == 64, "TEB.TlsSlots holds 64 indexes");
#if defined(__x86_64__)
_Static_assert(offsetof(TEB, TlsSlots) == 0x1480, "TEB.TlsSlots at its documented x64 offset");
#endif

/* Written once under the allocator's init lock, before any heap exists; read on every malloc.
 * TLS_OUT_OF_INDEXES until then, which _ra_heap_current() reads as "no heap yet". */
static _Atomic(DWORD) tls_index = TLS_OUT_OF_INDEXES;
static DWORD fls_index = FLS_OUT_OF_INDEXES;
static void (*thread_done)(void *heap);
typedef BOOLEAN(NTAPI *shutdown_fn)(void);
static shutdown_fn dll_shutdown_in_progress; /* ntdll's RtlDllShutdownInProgress, if exported */

/* The calling thread's TEB. NtCurrentTeb() does the same through __readgsqword, whose memory
 * operand at a constant address trips gcc 12's -Warray-bounds. NT_TIB.Self is at gs:0x30 on x64. */
static inline TEB *current_teb(void) {
#if defined(__x86_64__)
  TEB *teb;
  __asm__("movq %%gs:0x30, %0" : "=r"(teb));
  return teb;
#else
  return NtCurrentTeb();
#endif
}

static RA_NOINLINE void *tls_get_slow(DWORD index) {
  if (index == TLS_OUT_OF_INDEXES) return NULL;
  DWORD err = GetLastError();
  void *v = TlsGetValue(index);
  SetLastError(err);
  return v;
}

ra_heap_t *_ra_heap_current(void) {
  DWORD index = atomic_load_explicit(&tls_index, memory_order_relaxed);
  void *h;
  if (RA_LIKELY(index < TLS_MINIMUM_AVAILABLE))
    h = current_teb()->TlsSlots[index];
  else
    h = tls_get_slow(index);
  return h != NULL ? (ra_heap_t *)h : &_ra_heap_empty;
}

void _ra_heap_set_current(ra_heap_t *heap, uint16_t tag) {
  (void)tag;
  DWORD index = atomic_load_explicit(&tls_index, memory_order_relaxed);
  if (index == TLS_OUT_OF_INDEXES) return;
  DWORD err = GetLastError();
  TlsSetValue(index, heap == &_ra_heap_empty ? NULL : heap);
  SetLastError(err);
}

/* FLS callback: the thread (or fiber) is going away. A heap belongs to a thread, FLS to a fiber:
 * only the heap the exiting thread actually uses is handed to `done`; a fiber deleted from another
 * thread, or one that ran on several threads, must not abandon a heap some live thread still
 * uses. At process exit the callback runs for the thread that called ExitProcess (seen under
 * wine 8) after the other threads were ended wherever they were, maybe holding an allocator lock:
 * then nothing is given back (the process is going away) and no lock is taken. */
static void WINAPI fls_callback(void *value) {
  if (value == NULL || thread_done == NULL) return;
  if (dll_shutdown_in_progress != NULL && dll_shutdown_in_progress()) return;
  if (_ra_heap_current() != (ra_heap_t *)value) return;
  thread_done(value);
}

int _ra_thread_init(void (*done)(void *heap)) {
  if (atomic_load_explicit(&tls_index, memory_order_relaxed) != TLS_OUT_OF_INDEXES) return 0;
  DWORD err = GetLastError();
  thread_done = done;
  DWORD fls = FlsAlloc(fls_callback);
  DWORD tls = TlsAlloc();
  if (fls == FLS_OUT_OF_INDEXES || tls == TLS_OUT_OF_INDEXES) {
    /* Without a slot no thread could keep its heap, and every allocation would make a new one. */
    _ra_fmt_write(2, "ramalloc: TlsAlloc/FlsAlloc failed (error %lu)\n", (unsigned long)GetLastError());
    abort();
  }
  HMODULE ntdll = GetModuleHandleW(L"ntdll.dll");
  if (ntdll != NULL)
    dll_shutdown_in_progress = (shutdown_fn)(void (*)(void))GetProcAddress(ntdll, "RtlDllShutdownInProgress");
  HMODULE self;
  GetModuleHandleExW(GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_PIN,
                     (LPCWSTR)(void *)fls_callback, &self);
  fls_index = fls;
  atomic_store_explicit(&tls_index, tls, memory_order_release);
  SetLastError(err);
  return 0;
}

void _ra_thread_register(ra_heap_t *heap) {
  if (fls_index == FLS_OUT_OF_INDEXES) return;
  DWORD err = GetLastError();
  FlsSetValue(fls_index, heap);
  SetLastError(err);
}

/* Windows has no fork(). */
void _ra_thread_atfork(void (*prepare)(void), void (*parent)(void), void (*child)(void)) {
  (void)prepare;
  (void)parent;
  (void)child;
}

/* The allocator's own thread (the purger; there is one): CreateThread, which does not go through
 * the C runtime and so allocates nothing with malloc. */
static void *(*start_fn)(void *);
static void *start_arg;

static DWORD WINAPI thread_trampoline(LPVOID unused) {
  (void)unused;
  start_fn(start_arg);
  return 0;
}

int _ra_thread_start(void *(*fn)(void *), void *arg) {
  start_fn = fn;
  start_arg = arg;
  HANDLE h = CreateThread(NULL, 64 * 1024, thread_trampoline, NULL, STACK_SIZE_PARAM_IS_A_RESERVATION, NULL);
  if (h == NULL) return (int)GetLastError();
  CloseHandle(h);
  return 0;
}

/* One condition variable serves the (single) sleeper. A waker changes the word and then takes the
 * lock before waking, so a wake between the sleeper's check and its sleep is not lost. */
static SRWLOCK wait_lock = SRWLOCK_INIT;
static CONDITION_VARIABLE wait_cv = CONDITION_VARIABLE_INIT;

void _ra_thread_wait(_Atomic(uint32_t) *word, uint32_t expected, uint64_t timeout_ms) {
  AcquireSRWLockExclusive(&wait_lock);
  if (atomic_load_explicit(word, memory_order_acquire) == expected)
    SleepConditionVariableSRW(&wait_cv, &wait_lock, timeout_ms > 0 ? (DWORD)timeout_ms : INFINITE, 0);
  ReleaseSRWLockExclusive(&wait_lock);
}

void _ra_thread_wake(_Atomic(uint32_t) *word) {
  (void)word;
  AcquireSRWLockExclusive(&wait_lock);
  ReleaseSRWLockExclusive(&wait_lock);
  WakeAllConditionVariable(&wait_cv);
}

/* The allocator's locks (prim_windows.h explains why not pthread mutexes here). An SRW lock is one
 * pointer, zero when free; it needs no initialisation call and never allocates. */
_Static_assert(sizeof(ra_lock_t) == sizeof(SRWLOCK), "ra_lock_t holds an SRWLOCK");

void _ra_lock_init(ra_lock_t *l) { InitializeSRWLock((PSRWLOCK)l); }
void _ra_lock(ra_lock_t *l) { AcquireSRWLockExclusive((PSRWLOCK)l); }
bool _ra_trylock(ra_lock_t *l) { return TryAcquireSRWLockExclusive((PSRWLOCK)l) != 0; }
void _ra_unlock(ra_lock_t *l) { ReleaseSRWLockExclusive((PSRWLOCK)l); }

void _ra_yield(void) { SwitchToThread(); }

/* Milliseconds for the purge delays (prim_windows.h). */
uint64_t _ra_now_ms(void) { return GetTickCount64(); }

/* Milliseconds since 1970 (the dumps' time stamp): FILETIME counts 100 ns steps since 1601. */
uint64_t _ra_wall_ms(void) {
  FILETIME ft;
  GetSystemTimeAsFileTime(&ft);
  uint64_t t = ((uint64_t)ft.dwHighDateTime << 32) | ft.dwLowDateTime;
  return (t - 116444736000000000ULL) / 10000u;
}

int _ra_process_id(void) { return (int)GetCurrentProcessId(); }
