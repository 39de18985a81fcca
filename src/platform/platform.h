/*
 * platform.h - the lowest layer: futex, clock, CPU facts, atomics helpers.
 *
 * Internal to libweft. Nothing here knows about any other layer.
 */
#ifndef WEFT_PLATFORM_H
#define WEFT_PLATFORM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <weft/time.h>

#define WEFT_CACHELINE 64

#if defined(__GNUC__) || defined(__clang__)
#define WEFT_LIKELY(x) __builtin_expect(!!(x), 1)
#define WEFT_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define WEFT_INTERNAL __attribute__((visibility("hidden")))
#define WEFT_NOINLINE __attribute__((noinline))
#else
#define WEFT_LIKELY(x) (x)
#define WEFT_UNLIKELY(x) (x)
#define WEFT_INTERNAL
#define WEFT_NOINLINE
#endif

/* View a public struct's private integer field as an atomic. Public headers
 * keep plain integers so that C++ can include them; the representation of
 * _Atomic uint32_t/uint64_t is the plain integer on every target we build. */
#define WEFT_A32(p) ((_Atomic uint32_t *)(p))
#define WEFT_A64(p) ((_Atomic uint64_t *)(p))

/* Tell the CPU we are spinning (PAUSE on x86, YIELD on AArch64). */
static inline void weft__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#else
    atomic_signal_fence(memory_order_seq_cst);
#endif
}

/*
 * Wait for a few instructions of another thread (a store it is about to
 * make): call in a loop until the condition holds, with *step = 0 before
 * the first call. Pauses that double, then 32 sched_yield()s,
 * then a 50 us sleep per call. The pauses and yields nearly always
 * suffice; a wait that outlasts them is one whose other thread is not
 * running: preempted, or unable to run at all because the waiter has a
 * higher real-time priority on the same CPU (SCHED_FIFO), where
 * sched_yield never gives way to it. The sleep lets any thread run. A
 * caller that stops after a few calls (to park instead) never sleeps: the
 * first 6 + 32 calls do not (*step < 38).
 */
void weft__backoff(unsigned *step);
/* How many of the process's weft__backoff calls have slept. For tests. */
extern _Atomic unsigned long weft__backoff_sleeps;

/*
 * Futex wait: sleep while *addr == expected, until woken or the absolute
 * monotonic deadline passes. Returns 0 (woken, or spuriously: the caller
 * re-checks), -EAGAIN (*addr != expected on entry), -ETIMEDOUT, -EINTR.
 * `shared` selects a process-shared futex (for memory shared between
 * processes); otherwise the private, cheaper kind.
 */
int weft__futex_wait(_Atomic uint32_t *addr, uint32_t expected, weft_time_t deadline,
                     bool shared);
/* Wake up to n sleepers on addr. Returns how many were woken. */
int weft__futex_wake(_Atomic uint32_t *addr, int n, bool shared);

/* True if deadline has passed (WEFT_FOREVER never does). */
static inline bool weft__deadline_passed(weft_time_t deadline)
{
    return deadline != WEFT_FOREVER && weft_now() >= deadline;
}

/*
 * The asymmetric barrier (barrier.c): weft__heavy_barrier() makes every
 * running thread of the process execute a full memory barrier, so that the
 * other side of a Dekker handshake needs only a compiler barrier. True from
 * weft__asym_available() if it works here (decided once, on first call; call
 * it before any object that relies on it exists). weft__heavy_barrier
 * returns 0 or -errno (the caller must then fall back to something that does
 * not rely on it).
 */
bool weft__asym_available(void);
int weft__heavy_barrier(void);

/* CPUs this process may use (the process's affinity mask, read on each
 * call, and the cgroup quota, read once), >= 1. */
int weft__cpu_count(void);
/* The cgroup CPU quota (in CPUs; 0: none) of the process whose
 * /proc/<pid>/cgroup is the file self, under the cgroup mount root (v2, or
 * v1's cpu controller under root/cpu or root/cpu,cpuacct): the smallest on
 * its cgroup and the ancestors. weft__cpu_count reads
 * ("/sys/fs/cgroup", "/proc/self/cgroup") once; the tests give fake trees. */
double weft__cgroup_quota(const char *root, const char *self);
size_t weft__page_size(void);

/* A cheap per-thread pseudo-random number (xorshift), for backoff and
 * victim selection. Never 0. */
uint64_t weft__rand(void);

#endif /* WEFT_PLATFORM_H */
