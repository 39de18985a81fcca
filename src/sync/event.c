/*
 * event.c - weft_event_t (threading.Event).
 *
 * The state word has two bits, SET and PARKED ("waiters may be parked on
 * this address"), and above them a generation that every set() moves.
 * set() is one compare-and-swap (SET on, PARKED off, generation + 1) and
 * then, if PARKED was on, an unpark by address: it never touches the event
 * after the swap, because a waiter that sees it may return and free the
 * event (a completion event on the waiter's stack is the common case).
 * Invariant: PARKED is set whenever a waiter is parked; it is cleared by
 * set() (which then unparks everyone) or, under the bucket lock, by the
 * last waiter to time out. A waiter parks only after validating, under the
 * bucket lock, that the word is still exactly its generation | PARKED, so
 * a set() cannot slip between its decision to sleep and its sleeping.
 *
 * A waiter returns 0 once the generation moved, even if clear() ran before
 * it got the CPU back, as in Python: wait() reports that the flag was set
 * while it waited, not that it is set now. Being woken proves nothing: an
 * unpark may be stale (a set() of an earlier event at the same address).
 */
#include "internal.h"

#define SET 1u
#define PARKED 2u
#define GEN1 4u /* the set generation: the upper 30 bits of the state word */
#define FLAGS (SET | PARKED)

static inline _Atomic uint32_t *state_of(weft_event_t *e) { return WEFT_A32(&e->state); }

int weft_event_init(weft_event_t *e)
{
    if (!e)
        return -EINVAL;
    atomic_init(state_of(e), 0);
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
    /* One compare-and-swap sets the flag, bumps the generation and clears
     * PARKED, and the event's memory is not touched after it: a waiter
     * that sees it may return at once and free or reuse the event (a
     * completion event on its stack). The unpark below uses the address
     * only as a key. (release: a waiter that sees SET sees what was
     * written before set().) */
    uint32_t s = atomic_load_explicit(st, memory_order_relaxed);
    do {
        if (s & SET)
            return 0;
    } while (!atomic_compare_exchange_weak_explicit(st, &s, ((s & ~FLAGS) + GEN1) | SET,
                                                    memory_order_release,
                                                    memory_order_relaxed));
    if (s & PARKED)
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

struct event_wait {
    weft_event_t *e;
    uint32_t parked; /* the word it parks on: its generation | PARKED */
};

static bool validate_parked(void *arg)
{
    struct event_wait *w = arg;
    return atomic_load_explicit(state_of(w->e), memory_order_relaxed) == w->parked;
}

static void timed_out(void *arg, bool was_last)
{
    struct event_wait *w = arg;
    if (was_last)
        atomic_fetch_and_explicit(state_of(w->e), ~PARKED, memory_order_relaxed);
}

static WEFT_NOINLINE int wait_slow(weft_event_t *e, weft_time_t deadline)
{
    _Atomic uint32_t *st = state_of(e);
    unsigned spins = 0;
    /* Done when the flag is set or the generation moved (a set() since we
     * came, even if clear() followed, as in Python). A wake-up alone
     * proves nothing: an unpark can be stale, from a set() of an earlier
     * event at the same (reused) address still finishing. */
    uint32_t s = atomic_load_explicit(st, memory_order_acquire);
    const uint32_t gen0 = s & ~FLAGS;
    struct event_wait w = {e, gen0 | PARKED};
    for (;;) {
        if ((s & SET) || (s & ~FLAGS) != gen0)
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
        int r = weft__park_c(e, validate_parked, &w, timed_out, deadline, NULL);
        s = atomic_load_explicit(st, memory_order_acquire);
        if ((r == -ETIMEDOUT || r == -ECANCELED) && !(s & SET) && (s & ~FLAGS) == gen0)
            return r;
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
