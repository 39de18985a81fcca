/*
 * internal.h - helpers shared by the primitives in src/sync/.
 *
 * Internal to libweft. Every primitive here blocks only through the parking
 * layer (../park/park.h).
 */
#ifndef WEFT_SYNC_INTERNAL_H
#define WEFT_SYNC_INTERNAL_H

#include <sched.h>
#include <weft/sync.h>

#include "../park/park.h"

/*
 * Spin with growing pauses a few times, then yield a few times; false once
 * spinning should stop and the caller should park. A short spin catches a
 * holder that releases within a few hundred nanoseconds (the common case for
 * short critical sections) without paying for a sleep and a wake-up; the
 * yields let a holder preempted on our core run. The mutex uses it too.
 */
static inline bool weft__spin_wait(unsigned *iter)
{
    if (*iter >= 10)
        return false;
    (*iter)++;
    if (*iter <= 3) {
        for (unsigned i = 0; i < (1u << *iter); i++)
            weft__cpu_relax();
    } else {
        sched_yield();
    }
    return true;
}

/*
 * The counter-to-zero wait shared by the wait group and the latch. Both keep
 * a 64-bit state word: the count shifted left by one, and bit 0 (PARKED) set
 * while a waiter may be parked on the word's address. Invariant: PARKED is
 * set whenever a waiter is parked; it is cleared either by the party that
 * takes the count to zero (which then unparks everyone) or, under the bucket
 * lock, by the last waiter to time out. A waiter parks only after validating,
 * under the bucket lock, that the count is still non-zero and PARKED still
 * set, so a count-down cannot slip between its decision and its sleep.
 */
#define WEFT__ZW_PARKED 1ull

/*
 * weft_mutex_lock without cancellation: for weft's own short critical
 * sections (a pool's queue, a future's callback list, the stack pool, a
 * barrier's or condition's internal lock), which must be entered even by a
 * cancelled coroutine (their callers do not check for -ECANCELED). Returns
 * 0, or -EDEADLK if the caller holds m.
 */
int weft__mutex_lock_nc(weft_mutex_t *m);

/* Block until (*state >> 1) == 0 or the deadline passes: 0, -ETIMEDOUT,
 * or -ECANCELED (a cancelled coroutine). */
int weft__zero_wait(_Atomic uint64_t *state, weft_time_t deadline);

/* Called after a CAS that took the count to zero from `old`: wake the
 * waiters if `old` had PARKED set. */
static inline void weft__zero_reached(_Atomic uint64_t *state, uint64_t old)
{
    if (old & WEFT__ZW_PARKED)
        weft__unpark_all(state, 0);
}

#endif /* WEFT_SYNC_INTERNAL_H */
