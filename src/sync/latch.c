/*
 * latch.c - weft_latch_t (C++ std::latch): a count that only goes down;
 * waiters are released when it reaches zero, for good. Shares the
 * counter-to-zero wait with the wait group (internal.h).
 */
#include "internal.h"

#define MAX_COUNT (1ull << 62)

static inline _Atomic uint64_t *state_of(weft_latch_t *l) { return WEFT_A64(&l->state); }

int weft_latch_init(weft_latch_t *l, uint64_t count)
{
    if (!l || count > MAX_COUNT)
        return -EINVAL;
    atomic_init(state_of(l), count << 1);
    return 0;
}

int weft_latch_destroy(weft_latch_t *l)
{
    if (!l)
        return -EINVAL;
    return (atomic_load_explicit(state_of(l), memory_order_acquire) & WEFT__ZW_PARKED) ? -EBUSY
                                                                                         : 0;
}

int weft_latch_count_down(weft_latch_t *l, uint64_t n)
{
    if (WEFT_UNLIKELY(!l))
        return -EINVAL;
    _Atomic uint64_t *st = state_of(l);
    uint64_t s = atomic_load_explicit(st, memory_order_relaxed);
    for (;;) {
        uint64_t c = s >> 1;
        if (n > c)
            return -EOVERFLOW;
        if (n == 0)
            return 0;
        uint64_t ns = c == n ? 0 : ((c - n) << 1) | (s & WEFT__ZW_PARKED);
        /* acq_rel: as in the wait group, each count-down publishes its
         * writes, and the last one passes them all on to the waiters. */
        if (atomic_compare_exchange_weak_explicit(st, &s, ns, memory_order_acq_rel,
                                                  memory_order_relaxed)) {
            if (ns == 0)
                weft__zero_reached(st, s);
            return 0;
        }
    }
}

int weft_latch_wait(weft_latch_t *l)
{
    if (WEFT_UNLIKELY(!l))
        return -EINVAL;
    return weft__zero_wait(state_of(l), WEFT_FOREVER);
}

int weft_latch_wait_until(weft_latch_t *l, weft_time_t deadline)
{
    if (WEFT_UNLIKELY(!l || deadline < 0))
        return -EINVAL;
    return weft__zero_wait(state_of(l), deadline);
}

int weft_latch_wait_try(weft_latch_t *l)
{
    if (WEFT_UNLIKELY(!l))
        return -EINVAL;
    return (atomic_load_explicit(state_of(l), memory_order_acquire) >> 1) == 0 ? 0 : -EAGAIN;
}

int weft_latch_arrive_and_wait(weft_latch_t *l)
{
    int r = weft_latch_count_down(l, 1);
    if (r != 0)
        return r;
    return weft__zero_wait(state_of(l), WEFT_FOREVER);
}
