/*
 * waitgroup.c - weft_waitgroup_t (Go's sync.WaitGroup), and the
 * counter-to-zero wait it shares with the latch (see internal.h for the
 * state word and its invariant).
 */
#include "internal.h"

/* Counts stay within [0, 2^62] so that count << 1 never overflows. */
#define MAX_COUNT (1ll << 62)

static bool validate_nonzero(void *arg)
{
    uint64_t s = atomic_load_explicit((_Atomic uint64_t *)arg, memory_order_relaxed);
    return (s >> 1) != 0 && (s & WEFT__ZW_PARKED);
}

static void timed_out(void *arg, bool was_last)
{
    if (was_last)
        atomic_fetch_and_explicit((_Atomic uint64_t *)arg, ~WEFT__ZW_PARKED,
                                  memory_order_relaxed);
}

int weft__zero_wait(_Atomic uint64_t *state, weft_time_t deadline)
{
    unsigned spins = 0;
    uint64_t s = atomic_load_explicit(state, memory_order_acquire);
    for (;;) {
        if ((s >> 1) == 0)
            return 0;
        if (!(s & WEFT__ZW_PARKED)) {
            if (weft__spin_wait(&spins)) {
                s = atomic_load_explicit(state, memory_order_acquire);
                continue;
            }
            if (!atomic_compare_exchange_weak_explicit(state, &s, s | WEFT__ZW_PARKED,
                                                       memory_order_acquire,
                                                       memory_order_acquire))
                continue;
        }
        int r = weft__park_c(state, validate_nonzero, (void *)state, timed_out, deadline, NULL);
        /* Woken (0) proves nothing: an unpark may be stale, from a wait
         * group, latch, event or task group that lived at this address
         * before (its last count-down unparks by address after the CAS
         * that let its waiters go and free it), or from a pool waking a
         * worker by the key it last parked on. So look at the count again,
         * as after -EAGAIN. */
        if (r == -ETIMEDOUT || r == -ECANCELED) {
            s = atomic_load_explicit(state, memory_order_acquire);
            return (s >> 1) == 0 ? 0 : r;
        }
        s = atomic_load_explicit(state, memory_order_acquire);
    }
}

static inline _Atomic uint64_t *state_of(weft_waitgroup_t *wg) { return WEFT_A64(&wg->state); }

int weft_waitgroup_init(weft_waitgroup_t *wg)
{
    if (!wg)
        return -EINVAL;
    atomic_init(state_of(wg), 0);
    return 0;
}

int weft_waitgroup_destroy(weft_waitgroup_t *wg)
{
    if (!wg)
        return -EINVAL;
    return atomic_load_explicit(state_of(wg), memory_order_acquire) != 0 ? -EBUSY : 0;
}

int weft_waitgroup_add(weft_waitgroup_t *wg, int64_t delta)
{
    if (WEFT_UNLIKELY(!wg))
        return -EINVAL;
    _Atomic uint64_t *st = state_of(wg);
    uint64_t s = atomic_load_explicit(st, memory_order_relaxed);
    for (;;) {
        int64_t c = (int64_t)(s >> 1);
        /* c is in [0, 2^62], so neither comparison can overflow. */
        if (delta < -c || delta > MAX_COUNT - c)
            return -EOVERFLOW;
        int64_t n = c + delta;
        /* Reaching zero clears PARKED: the waiters are unparked below. */
        uint64_t ns = n == 0 ? 0 : ((uint64_t)n << 1) | (s & WEFT__ZW_PARKED);
        /* acq_rel: done() publishes the worker's writes to the waiters
         * (release), and the one reaching zero also needs the others'
         * writes before it wakes anyone (acquire, for a chain of done()). */
        if (atomic_compare_exchange_weak_explicit(st, &s, ns, memory_order_acq_rel,
                                                  memory_order_relaxed)) {
            if (n == 0)
                weft__zero_reached(st, s);
            return 0;
        }
    }
}

int weft_waitgroup_done(weft_waitgroup_t *wg)
{
    return weft_waitgroup_add(wg, -1);
}

int weft_waitgroup_wait(weft_waitgroup_t *wg)
{
    if (WEFT_UNLIKELY(!wg))
        return -EINVAL;
    return weft__zero_wait(state_of(wg), WEFT_FOREVER);
}

int weft_waitgroup_wait_until(weft_waitgroup_t *wg, weft_time_t deadline)
{
    if (WEFT_UNLIKELY(!wg || deadline < 0))
        return -EINVAL;
    return weft__zero_wait(state_of(wg), deadline);
}

int64_t weft_waitgroup_count(const weft_waitgroup_t *wg)
{
    if (!wg)
        return 0;
    return (int64_t)(atomic_load_explicit(WEFT_A64(&wg->state), memory_order_relaxed) >> 1);
}
