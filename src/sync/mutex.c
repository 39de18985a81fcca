/*
 * mutex.c - weft_mutex_t on the parking lot.
 *
 * The state word has two bits: LOCKED, and PARKED ("some waiter may be
 * parked on this mutex's address"). Invariant: PARKED is set whenever a
 * waiter is parked; it is cleared only under the parking-lot bucket lock by
 * the party that saw the last waiter leave (the unparker when have_more is
 * false, or a timed-out waiter that was last). Hence an unlock that finds
 * PARKED clear needs no system call, and a locker parks only after
 * validating, under the bucket lock, that the state is still LOCKED|PARKED,
 * so no unlock can slip between its decision to sleep and its sleeping.
 *
 * Fairness: unlock normally releases the lock and wakes one waiter, which
 * then competes with running threads (barging). When the lot reports that a
 * fair hand-off is due (about once a millisecond per bucket), unlock instead
 * hands the lock over while it stays LOCKED, so the longest waiter gets it.
 * This is the scheme of WebKit's WTF::Lock and Rust's parking_lot.
 */
#include <sched.h>
#include <weft/sync.h>

#include "../park/park.h"
#include "internal.h"

#define LOCKED 1u
#define PARKED 2u

/* Tokens handed to an unparked waiter. */
#define TOKEN_RETRY 0
#define TOKEN_HANDOFF 1

int weft_mutex_init(weft_mutex_t *m)
{
    if (!m)
        return -EINVAL;
    atomic_init(WEFT_A32(&m->state), 0);
    m->_pad = 0;
    atomic_init(WEFT_A64(&m->owner), 0);
    return 0;
}

int weft_mutex_destroy(weft_mutex_t *m)
{
    if (!m)
        return -EINVAL;
    if (atomic_load_explicit(WEFT_A32(&m->state), memory_order_acquire) != 0)
        return -EBUSY;
    return 0;
}

bool weft_mutex_is_locked(const weft_mutex_t *m)
{
    return m && (atomic_load_explicit(WEFT_A32(&m->state), memory_order_relaxed) & LOCKED);
}

static bool validate_parked(void *arg)
{
    weft_mutex_t *m = arg;
    return atomic_load_explicit(WEFT_A32(&m->state), memory_order_relaxed) == (LOCKED | PARKED);
}

static void timed_out(void *arg, bool was_last)
{
    weft_mutex_t *m = arg;
    if (was_last)
        atomic_fetch_and_explicit(WEFT_A32(&m->state), ~PARKED, memory_order_relaxed);
}

static WEFT_NOINLINE int lock_slow(weft_mutex_t *m, weft_time_t deadline, bool check_self,
                                   bool cancellable)
{
    _Atomic uint32_t *st = WEFT_A32(&m->state);
    uint64_t self = weft__self_id();
    if (check_self &&
        atomic_load_explicit(WEFT_A64(&m->owner), memory_order_relaxed) == self)
        return -EDEADLK;
    unsigned spins = 0;
    uint32_t s = atomic_load_explicit(st, memory_order_relaxed);
    for (;;) {
        if (!(s & LOCKED)) {
            if (atomic_compare_exchange_weak_explicit(st, &s, s | LOCKED, memory_order_acquire,
                                                      memory_order_relaxed))
                break;
            continue;
        }
        if (!(s & PARKED)) {
            if (weft__spin_wait(&spins)) {
                s = atomic_load_explicit(st, memory_order_relaxed);
                continue;
            }
            if (!atomic_compare_exchange_weak_explicit(st, &s, s | PARKED, memory_order_relaxed,
                                                       memory_order_relaxed))
                continue;
        }
        uintptr_t token = TOKEN_RETRY;
        /* A cancelled coroutine leaves the queue as a timed-out waiter does
         * (timed_out clears PARKED if it was the last); a hand-off that won
         * the race is taken (r == 0), so the mutex is never left locked. */
        int r = cancellable ? weft__park_c(m, validate_parked, m, timed_out, deadline, &token)
                            : weft__park(m, validate_parked, m, timed_out, deadline, &token);
        if (r == 0 && token == TOKEN_HANDOFF)
            break; /* the unlocker left LOCKED set for us */
        if (r == -ETIMEDOUT || r == -ECANCELED)
            return r;
        spins = 0;
        s = atomic_load_explicit(st, memory_order_relaxed);
    }
    atomic_store_explicit(WEFT_A64(&m->owner), self, memory_order_relaxed);
    return 0;
}

int weft_mutex_lock(weft_mutex_t *m)
{
    if (WEFT_UNLIKELY(!m))
        return -EINVAL;
    uint32_t s = 0;
    if (WEFT_LIKELY(atomic_compare_exchange_weak_explicit(WEFT_A32(&m->state), &s, LOCKED,
                                                          memory_order_acquire,
                                                          memory_order_relaxed))) {
        atomic_store_explicit(WEFT_A64(&m->owner), weft__self_id(), memory_order_relaxed);
        return 0;
    }
    return lock_slow(m, WEFT_FOREVER, true, true);
}

int weft__mutex_lock_nc(weft_mutex_t *m)
{
    uint32_t s = 0;
    if (WEFT_LIKELY(atomic_compare_exchange_weak_explicit(WEFT_A32(&m->state), &s, LOCKED,
                                                          memory_order_acquire,
                                                          memory_order_relaxed))) {
        atomic_store_explicit(WEFT_A64(&m->owner), weft__self_id(), memory_order_relaxed);
        return 0;
    }
    return lock_slow(m, WEFT_FOREVER, true, false);
}

int weft_mutex_lock_until(weft_mutex_t *m, weft_time_t deadline)
{
    if (WEFT_UNLIKELY(!m || deadline < 0))
        return -EINVAL;
    uint32_t s = 0;
    if (atomic_compare_exchange_strong_explicit(WEFT_A32(&m->state), &s, LOCKED,
                                                memory_order_acquire, memory_order_relaxed)) {
        atomic_store_explicit(WEFT_A64(&m->owner), weft__self_id(), memory_order_relaxed);
        return 0;
    }
    return lock_slow(m, deadline, true, true);
}

int weft_mutex_lock_try(weft_mutex_t *m)
{
    if (WEFT_UNLIKELY(!m))
        return -EINVAL;
    _Atomic uint32_t *st = WEFT_A32(&m->state);
    uint32_t s = atomic_load_explicit(st, memory_order_relaxed);
    while (!(s & LOCKED)) {
        if (atomic_compare_exchange_weak_explicit(st, &s, s | LOCKED, memory_order_acquire,
                                                  memory_order_relaxed)) {
            atomic_store_explicit(WEFT_A64(&m->owner), weft__self_id(), memory_order_relaxed);
            return 0;
        }
    }
    return -EAGAIN;
}

static uintptr_t unlock_cb(void *arg, struct weft__unpark_result r)
{
    weft_mutex_t *m = arg;
    _Atomic uint32_t *st = WEFT_A32(&m->state);
    if (r.unparked && r.be_fair) {
        /* Hand over: stay LOCKED; keep PARKED only if others still wait. */
        if (!r.have_more)
            atomic_store_explicit(st, LOCKED, memory_order_relaxed);
        return TOKEN_HANDOFF;
    }
    atomic_store_explicit(st, r.have_more ? PARKED : 0, memory_order_release);
    return TOKEN_RETRY;
}

int weft_mutex_unlock(weft_mutex_t *m)
{
    if (WEFT_UNLIKELY(!m))
        return -EINVAL;
    _Atomic uint64_t *owner = WEFT_A64(&m->owner);
    if (WEFT_UNLIKELY(atomic_load_explicit(owner, memory_order_relaxed) != weft__self_id()))
        return -EPERM;
    atomic_store_explicit(owner, 0, memory_order_relaxed);
    uint32_t s = LOCKED;
    if (WEFT_LIKELY(atomic_compare_exchange_strong_explicit(WEFT_A32(&m->state), &s, 0,
                                                            memory_order_release,
                                                            memory_order_relaxed)))
        return 0;
    weft__unpark_one(m, unlock_cb, m);
    return 0;
}
