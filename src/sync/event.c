/*
 * event.c - weft_event_t (threading.Event).
 *
 * The state word has two bits, SET and PARKED ("waiters may be parked on
 * this address"). They are both set only for a moment inside set(): a
 * waiter sets PARKED only while SET is clear, and a set() that finds PARKED
 * replaces the whole word with SET before unparking. Invariant:
 * PARKED is set whenever a waiter is parked; it is cleared by set() (which
 * then unparks everyone) or, under the bucket lock, by the last waiter to
 * time out. A waiter parks only after validating, under the bucket lock,
 * that the word is still exactly PARKED, so a set() cannot slip between its
 * decision to sleep and its sleeping.
 *
 * A waiter woken by set() returns 0 even if clear() ran before it got the
 * CPU back, as in Python: wait() reports that the flag was set while it
 * waited, not that it is set now.
 */
#include "internal.h"

#define SET 1u
#define PARKED 2u

static inline _Atomic uint32_t *state_of(weft_event_t *e) { return WEFT_A32(&e->state); }

int weft_event_init(weft_event_t *e)
{
    if (!e)
        return -EINVAL;
    atomic_init(state_of(e), 0);
    e->seq = 0;
    return 0;
}

int weft_event_destroy(weft_event_t *e)
{
    if (!e)
        return -EINVAL;
    return (atomic_load_explicit(state_of(e), memory_order_acquire) & PARKED) ? -EBUSY : 0;
}

int weft_event_set(weft_event_t *e)
{
    if (WEFT_UNLIKELY(!e))
        return -EINVAL;
    _Atomic uint32_t *st = state_of(e);
    /* Fast path: already set, or nobody parked: one atomic (release, so a
     * waiter that sees SET sees what was written before set()). */
    uint32_t s = atomic_load_explicit(st, memory_order_relaxed);
    if (s == SET)
        return 0;
    if (!(s & PARKED)) {
        s = atomic_fetch_or_explicit(st, SET, memory_order_release);
        if (!(s & PARKED))
            return 0;
        /* A waiter parked between our load and our OR: the word is now
         * SET|PARKED, which the exchange below repairs. */
    }
    /* seq first (release): a parked waiter woken below tells this wake from
     * a stale one by it (see wait_slow). */
    atomic_fetch_add_explicit(WEFT_A32(&e->seq), 1, memory_order_release);
    atomic_exchange_explicit(st, SET, memory_order_release);
    weft__unpark_all(e, 0);
    return 0;
}

int weft_event_clear(weft_event_t *e)
{
    if (WEFT_UNLIKELY(!e))
        return -EINVAL;
    atomic_fetch_and_explicit(state_of(e), ~SET, memory_order_relaxed);
    return 0;
}

bool weft_event_is_set(const weft_event_t *e)
{
    return e && (atomic_load_explicit(WEFT_A32(&e->state), memory_order_acquire) & SET);
}

static bool validate_parked(void *arg)
{
    weft_event_t *e = arg;
    return atomic_load_explicit(state_of(e), memory_order_relaxed) == PARKED;
}

static void timed_out(void *arg, bool was_last)
{
    weft_event_t *e = arg;
    if (was_last)
        atomic_fetch_and_explicit(state_of(e), ~PARKED, memory_order_relaxed);
}

static WEFT_NOINLINE int wait_slow(weft_event_t *e, weft_time_t deadline)
{
    _Atomic uint32_t *st = state_of(e);
    unsigned spins = 0;
    /* A wake-up is ours only if a set() bumped seq since we came. An
     * unpark can also be stale: a caller that reuses an event's memory
     * (a completion event on the stack, re-initialised for the next call)
     * may park while the previous event's set() is still finishing its
     * unpark of that address. */
    uint32_t seq0 = atomic_load_explicit(WEFT_A32(&e->seq), memory_order_acquire);
    uint32_t s = atomic_load_explicit(st, memory_order_acquire);
    for (;;) {
        if (s & SET)
            return 0;
        if (!(s & PARKED)) {
            if (weft__spin_wait(&spins)) {
                s = atomic_load_explicit(st, memory_order_acquire);
                continue;
            }
            if (!atomic_compare_exchange_weak_explicit(st, &s, s | PARKED,
                                                       memory_order_acquire,
                                                       memory_order_acquire))
                continue;
        }
        int r = weft__park_c(e, validate_parked, e, timed_out, deadline, NULL);
        if (r == 0 && atomic_load_explicit(WEFT_A32(&e->seq), memory_order_acquire) != seq0)
            return 0; /* set() woke us: the flag was set while we waited */
        if (r == -ETIMEDOUT || r == -ECANCELED)
            return weft_event_is_set(e) ? 0 : r;
        s = atomic_load_explicit(st, memory_order_acquire);
    }
}

int weft_event_wait(weft_event_t *e)
{
    if (WEFT_UNLIKELY(!e))
        return -EINVAL;
    if (WEFT_LIKELY(atomic_load_explicit(state_of(e), memory_order_acquire) & SET))
        return 0;
    return wait_slow(e, WEFT_FOREVER);
}

int weft_event_wait_until(weft_event_t *e, weft_time_t deadline)
{
    if (WEFT_UNLIKELY(!e || deadline < 0))
        return -EINVAL;
    if (atomic_load_explicit(state_of(e), memory_order_acquire) & SET)
        return 0;
    return wait_slow(e, deadline);
}
