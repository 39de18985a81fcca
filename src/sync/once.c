/*
 * once.c - weft_once_t: run an initialiser exactly once.
 *
 * The state word: NEW, RUNNING or DONE, plus PARKED ("callers may be parked
 * on this address", only alongside RUNNING). The first caller moves NEW to
 * RUNNING with a CAS and runs fn; later callers find DONE (one acquire load:
 * the fast path) or wait. The runner publishes DONE with a release exchange,
 * so everything fn wrote is visible to whoever sees DONE; if the exchange
 * returns PARKED, it unparks everyone. Waiters park only after validating,
 * under the bucket lock, that the word is still RUNNING|PARKED.
 *
 * The runner's id is recorded so that weft_once on the same object from
 * inside fn returns -EDEADLK instead of waiting for itself.
 */
#include "internal.h"

#define NEW 0u
#define RUNNING 1u
#define DONE 2u
#define PARKED 4u

static inline _Atomic uint32_t *state_of(weft_once_t *o) { return WEFT_A32(&o->state); }

bool weft_once_done(const weft_once_t *o)
{
    return o && atomic_load_explicit(WEFT_A32(&o->state), memory_order_acquire) == DONE;
}

static bool validate_running(void *arg)
{
    weft_once_t *o = arg;
    return atomic_load_explicit(state_of(o), memory_order_relaxed) == (RUNNING | PARKED);
}

static WEFT_NOINLINE int once_slow(weft_once_t *o, void (*fn)(void *arg), void *arg)
{
    _Atomic uint32_t *st = state_of(o);
    _Atomic uint64_t *runner = WEFT_A64(&o->runner);
    uint64_t self = weft__self_id();
    uint32_t s = NEW;
    if (atomic_compare_exchange_strong_explicit(st, &s, RUNNING, memory_order_acquire,
                                                memory_order_acquire)) {
        atomic_store_explicit(runner, self, memory_order_relaxed);
        fn(arg);
        atomic_store_explicit(runner, 0, memory_order_relaxed);
        if (atomic_exchange_explicit(st, DONE, memory_order_release) & PARKED)
            weft__unpark_all(o, 0);
        return 0;
    }
    /* Only the runner can find its own id here. */
    if (s != DONE && atomic_load_explicit(runner, memory_order_relaxed) == self)
        return -EDEADLK;
    unsigned spins = 0;
    for (;;) {
        if (s == DONE)
            return 0;
        if (!(s & PARKED)) {
            if (weft__spin_wait(&spins)) {
                s = atomic_load_explicit(st, memory_order_acquire);
                continue;
            }
            if (!atomic_compare_exchange_weak_explicit(st, &s, RUNNING | PARKED,
                                                       memory_order_acquire,
                                                       memory_order_acquire))
                continue;
        }
        weft__park(o, validate_running, o, NULL, WEFT_FOREVER, NULL);
        s = atomic_load_explicit(st, memory_order_acquire);
    }
}

int weft_once(weft_once_t *o, void (*fn)(void *arg), void *arg)
{
    if (WEFT_UNLIKELY(!o || !fn))
        return -EINVAL;
    if (WEFT_LIKELY(atomic_load_explicit(state_of(o), memory_order_acquire) == DONE))
        return 0;
    return once_slow(o, fn, arg);
}
