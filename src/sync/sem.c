/*
 * sem.c - weft_sem_t, counting and bounded semaphores (threading.Semaphore,
 * threading.BoundedSemaphore).
 *
 * The count word holds the number of available units, 0 .. UINT32_MAX-1, or
 * the value PARKED (UINT32_MAX): "no unit available, and acquirers may be
 * parked on this address". Waiters exist only while no unit is available,
 * so one word says both things, and the header's bound of UINT32_MAX-1
 * leaves room for the marker.
 *
 * Invariants:
 *   - PARKED is set whenever an acquirer is parked. Acquirers set it only
 *     from 0 and park only after validating, under the bucket lock, that the
 *     word is still PARKED.
 *   - While the word is PARKED it changes only under the bucket lock: by a
 *     release handing its unit over, or by the last waiter timing out.
 *   - A release that finds PARKED never makes the unit available to
 *     everyone: it hands it directly to the longest-parked acquirer (token
 *     HANDOFF), and the word stays PARKED while others remain. Parked
 *     acquirers are therefore served strictly in arrival order, and a
 *     running thread cannot barge past them; with nobody parked, acquire and
 *     release are one CAS each.
 */
#include "internal.h"

#define PARKED UINT32_MAX
#define TOKEN_RETRY 0
#define TOKEN_HANDOFF 1

static inline _Atomic uint32_t *count_of(weft_sem_t *s) { return WEFT_A32(&s->count); }

/* The largest count a release may reach. */
static inline uint32_t bound_of(const weft_sem_t *s)
{
    return s->max < UINT32_MAX - 1 ? s->max : UINT32_MAX - 1;
}

int weft_sem_init(weft_sem_t *s, unsigned value)
{
    if (!s || value >= UINT32_MAX)
        return -EINVAL;
    atomic_init(count_of(s), value);
    s->max = UINT32_MAX;
    return 0;
}

int weft_sem_init_bounded(weft_sem_t *s, unsigned value, unsigned max)
{
    if (!s || max == 0 || value > max || value >= UINT32_MAX)
        return -EINVAL;
    atomic_init(count_of(s), value);
    s->max = max;
    return 0;
}

int weft_sem_destroy(weft_sem_t *s)
{
    if (!s)
        return -EINVAL;
    return atomic_load_explicit(count_of(s), memory_order_acquire) == PARKED ? -EBUSY : 0;
}

unsigned weft_sem_value(const weft_sem_t *s)
{
    if (!s)
        return 0;
    uint32_t c = atomic_load_explicit(WEFT_A32(&s->count), memory_order_relaxed);
    return c == PARKED ? 0 : c;
}

int weft_sem_acquire_try(weft_sem_t *s)
{
    if (WEFT_UNLIKELY(!s))
        return -EINVAL;
    _Atomic uint32_t *cnt = count_of(s);
    uint32_t c = atomic_load_explicit(cnt, memory_order_relaxed);
    while (c != 0 && c != PARKED) {
        if (atomic_compare_exchange_weak_explicit(cnt, &c, c - 1, memory_order_acquire,
                                                  memory_order_relaxed))
            return 0;
    }
    return -EAGAIN;
}

static bool validate_parked(void *arg)
{
    weft_sem_t *s = arg;
    return atomic_load_explicit(count_of(s), memory_order_relaxed) == PARKED;
}

static void timed_out(void *arg, bool was_last)
{
    weft_sem_t *s = arg;
    if (was_last) {
        uint32_t c = PARKED;
        atomic_compare_exchange_strong_explicit(count_of(s), &c, 0, memory_order_relaxed,
                                                memory_order_relaxed);
    }
}

static WEFT_NOINLINE int acquire_slow(weft_sem_t *s, weft_time_t deadline)
{
    _Atomic uint32_t *cnt = count_of(s);
    unsigned spins = 0;
    uint32_t c = atomic_load_explicit(cnt, memory_order_relaxed);
    for (;;) {
        if (c != 0 && c != PARKED) {
            if (atomic_compare_exchange_weak_explicit(cnt, &c, c - 1, memory_order_acquire,
                                                      memory_order_relaxed))
                return 0;
            continue;
        }
        if (c == 0) {
            if (weft__spin_wait(&spins)) {
                c = atomic_load_explicit(cnt, memory_order_relaxed);
                continue;
            }
            if (!atomic_compare_exchange_weak_explicit(cnt, &c, PARKED, memory_order_relaxed,
                                                       memory_order_relaxed))
                continue;
        }
        uintptr_t token = TOKEN_RETRY;
        /* Cancelled: we leave the queue as on a timeout; a unit handed to
         * us before that is taken (r == 0), never lost. */
        int r = weft__park_c(s, validate_parked, s, timed_out, deadline, &token);
        if (r == 0 && token == TOKEN_HANDOFF)
            return 0; /* a release gave us its unit */
        if (r == -ETIMEDOUT || r == -ECANCELED)
            return r;
        spins = 0;
        c = atomic_load_explicit(cnt, memory_order_relaxed);
    }
}

static inline bool acquire_fast(weft_sem_t *s)
{
    uint32_t c = atomic_load_explicit(count_of(s), memory_order_relaxed);
    return c != 0 && c != PARKED &&
           atomic_compare_exchange_weak_explicit(count_of(s), &c, c - 1, memory_order_acquire,
                                                 memory_order_relaxed);
}

int weft_sem_acquire(weft_sem_t *s)
{
    if (WEFT_UNLIKELY(!s))
        return -EINVAL;
    if (WEFT_LIKELY(acquire_fast(s)))
        return 0;
    return acquire_slow(s, WEFT_FOREVER);
}

int weft_sem_acquire_until(weft_sem_t *s, weft_time_t deadline)
{
    if (WEFT_UNLIKELY(!s || deadline < 0))
        return -EINVAL;
    if (acquire_fast(s))
        return 0;
    return acquire_slow(s, deadline);
}

/* What a release hands over, for handoff_cb. */
struct release_arg {
    weft_sem_t *s;
    unsigned n;  /* units to release, n >= 1 */
    bool done;   /* set by handoff_cb: all n released */
};

/* Under the bucket lock, with up to n parked waiters taken (r.unparked of
 * them, oldest first): each gets one unit. If waiters remain parked, all
 * n went out (n were taken) and the word stays PARKED. Else the rest
 * (n - r.unparked units) is published in the same store: the woken may
 * run, see their units and free the semaphore the moment they are
 * finished, so the whole release is done before any of them can run (a
 * release that went on handing out its units one by one, as this did,
 * read the freed semaphore when a waiter left parked timed out meanwhile
 * and the woken one freed it).
 *
 * With nobody found (they timed out, or one is between marking and
 * validating), the word goes back to 0 and the caller adds its units the
 * ordinary way. The word is PARKED here only if it still is: the release
 * saw PARKED before taking the bucket lock, and meanwhile the last parked
 * waiter may have timed out (its callback turns PARKED into 0 under this
 * lock) and a fast-path release may have added a unit to that 0. Hence a
 * CAS from PARKED, never a plain store, which would wipe that unit out.
 * With a waiter found the word is certainly PARKED (a parked waiter
 * implies it, and a PARKED word changes only under this lock), so a store
 * is exact (release: the releaser's writes happen before the sections of
 * those who take the remaining units on the fast path). */
static uintptr_t handoff_cb(void *arg, struct weft__unpark_result r)
{
    struct release_arg *a = arg;
    if (r.unparked) {
        if (!r.have_more)
            atomic_store_explicit(count_of(a->s), a->n - r.unparked, memory_order_release);
        a->done = true;
        return TOKEN_HANDOFF;
    }
    uint32_t c = PARKED;
    atomic_compare_exchange_strong_explicit(count_of(a->s), &c, 0, memory_order_relaxed,
                                            memory_order_relaxed);
    return TOKEN_RETRY;
}

int weft_sem_release_n(weft_sem_t *s, unsigned n)
{
    if (WEFT_UNLIKELY(!s || n == 0))
        return -EINVAL;
    _Atomic uint32_t *cnt = count_of(s);
    uint32_t bound = bound_of(s);
    uint32_t c = atomic_load_explicit(cnt, memory_order_relaxed);
    for (;;) {
        if (c == PARKED) {
            /* No unit is available, so the bound check is n <= bound. Up
             * to n parked waiters get a unit each, and the rest is
             * published with them, all under one bucket lock (handoff_cb):
             * we return without touching s again. If the waiters are gone
             * (timed out), the units are added below, where the bound is
             * checked again against what concurrent releases have added
             * meanwhile. */
            if (n > bound)
                return -EOVERFLOW;
            struct release_arg a = {s, n, false};
            weft__unpark_n_cb(s, n, handoff_cb, &a);
            if (a.done)
                return 0;
            c = atomic_load_explicit(cnt, memory_order_relaxed);
            continue;
        }
        if (n > bound || c > bound - n)
            return -EOVERFLOW;
        /* Release: the releaser's writes happen before the acquirer's
         * section. */
        if (atomic_compare_exchange_weak_explicit(cnt, &c, c + n, memory_order_release,
                                                  memory_order_relaxed))
            return 0;
    }
}

int weft_sem_release(weft_sem_t *s)
{
    if (WEFT_UNLIKELY(!s))
        return -EINVAL;
    uint32_t c = atomic_load_explicit(count_of(s), memory_order_relaxed);
    if (WEFT_LIKELY(c < bound_of(s)) &&
        atomic_compare_exchange_weak_explicit(count_of(s), &c, c + 1, memory_order_release,
                                              memory_order_relaxed))
        return 0;
    return weft_sem_release_n(s, 1);
}
