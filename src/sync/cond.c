/*
 * cond.c - weft_cond_t, the condition variable (threading.Condition).
 *
 * A sequence word bumped by every notify, and waiters parked on its address.
 * A waiter reads the sequence while it still holds the mutex, unlocks, and
 * parks only after validating, under the bucket lock, that the sequence has
 * not moved. A notifier that changed the predicate under the mutex bumps the
 * sequence after the waiter read it, and then unparks: either the waiter is
 * already queued (and is found) or its validation sees the new sequence (and
 * it returns at once, as if woken). So no notify made after a waiter has
 * released the mutex is ever lost; the price is an occasional extra wake-up,
 * which condition-variable users must tolerate anyway.
 *
 * The sequence is 32 bits: a waiter could miss a wake-up only if exactly
 * 2^32 notifies happened between its unlock and its validation.
 *
 * notify_all wakes every waiter, and they then contend for the mutex (no
 * requeueing onto the mutex's queue: the parking lot has no requeue yet).
 *
 * This is the sequence-counter condition variable of futex lore (U. Drepper,
 * "Futexes Are Tricky", 2011; Rust std's futex Condvar), with the parking
 * lot's validation in place of the futex's compare.
 */
#include "internal.h"

int weft_cond_init(weft_cond_t *c)
{
    if (!c)
        return -EINVAL;
    atomic_init(WEFT_A32(&c->seq), 0);
    c->_pad = 0;
    return 0;
}

int weft_cond_destroy(weft_cond_t *c)
{
    if (!c)
        return -EINVAL;
    return weft__is_parked(&c->seq) ? -EBUSY : 0;
}

struct cond_wait {
    weft_cond_t *c;
    uint32_t seq; /* the sequence read under the mutex */
};

static bool validate_seq(void *arg)
{
    struct cond_wait *w = arg;
    return atomic_load_explicit(WEFT_A32(&w->c->seq), memory_order_relaxed) == w->seq;
}

static bool holds(weft_mutex_t *m)
{
    return atomic_load_explicit(WEFT_A64(&m->owner), memory_order_relaxed) == weft__self_id();
}

/* The wait itself; the caller has checked its arguments and ownership. */
static int cond_wait(weft_cond_t *c, weft_mutex_t *m, weft_time_t deadline)
{
    /* Relaxed is enough: the notifier's bump is ordered after our read by
     * the mutex (if it changed the predicate under it) or by the bucket
     * lock (validation). */
    struct cond_wait w = {c, atomic_load_explicit(WEFT_A32(&c->seq), memory_order_relaxed)};
    weft_mutex_unlock(m);
    int r = weft__park_c(&c->seq, validate_seq, &w, NULL, deadline, NULL);
    /* We do not hold m, so this cannot return -EDEADLK: it succeeds. Not
     * cancellable: the caller gets m back whatever happened (as Python's
     * Condition.wait re-acquires before raising CancelledError). */
    weft__mutex_lock_nc(m);
    return r == -ETIMEDOUT || r == -ECANCELED ? r : 0;
}

int weft_cond_wait(weft_cond_t *c, weft_mutex_t *m)
{
    if (WEFT_UNLIKELY(!c || !m))
        return -EINVAL;
    if (!holds(m))
        return -EPERM;
    return cond_wait(c, m, WEFT_FOREVER);
}

int weft_cond_wait_until(weft_cond_t *c, weft_mutex_t *m, weft_time_t deadline)
{
    if (WEFT_UNLIKELY(!c || !m || deadline < 0))
        return -EINVAL;
    if (!holds(m))
        return -EPERM;
    return cond_wait(c, m, deadline);
}

int weft_cond_wait_for(weft_cond_t *c, weft_mutex_t *m, bool (*pred)(void *arg), void *arg,
                       weft_time_t deadline)
{
    if (WEFT_UNLIKELY(!c || !m || !pred || deadline < 0))
        return -EINVAL;
    if (!holds(m))
        return -EPERM;
    while (!pred(arg)) {
        int r = cond_wait(c, m, deadline);
        if (r == -ETIMEDOUT || r == -ECANCELED)
            /* As Condition.wait_for: the predicate's last word decides. */
            return pred(arg) ? 0 : r;
    }
    return 0;
}

static int notify(weft_cond_t *c, unsigned n)
{
    if (WEFT_UNLIKELY(!c))
        return -EINVAL;
    /* Relaxed: the bucket lock taken by the unpark orders the bump before
     * any validation that comes after it. */
    atomic_fetch_add_explicit(WEFT_A32(&c->seq), 1, memory_order_relaxed);
    unsigned woken = n == 1 ? weft__unpark_one(&c->seq, NULL, NULL)
                            : weft__unpark_n(&c->seq, n, 0);
    return woken > INT32_MAX ? INT32_MAX : (int)woken;
}

int weft_cond_notify(weft_cond_t *c) { return notify(c, 1); }

int weft_cond_notify_n(weft_cond_t *c, unsigned n)
{
    if (n == 0)
        return c ? 0 : -EINVAL;
    return notify(c, n);
}

int weft_cond_notify_all(weft_cond_t *c) { return notify(c, ~0u); }
