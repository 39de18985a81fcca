/*
 * sync_util.h - helpers for the tests of weft's synchronisation primitives.
 *
 * The park probe: a thread that installs probe_ops (probe_install) counts in
 * probe_parked each time it really goes to sleep in the parking lot. The
 * parking ops' wait is called only after the waiter is queued, so once
 * probe_parked reaches n, n probe threads are queued on their keys. Tests
 * use it to set up an exact situation (three readers and then a writer
 * parked, say) without sleeping and hoping.
 */
#ifndef WEFT_TEST_SYNC_UTIL_H
#define WEFT_TEST_SYNC_UTIL_H

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <weft.h>

#include "check.h"
#include "park/park.h"

static _Atomic int probe_parked;
static _Thread_local bool probe_counted;

static void probe_prepare(struct weft__waiter *w)
{
    probe_counted = false;
    weft__thread_park_ops.prepare(w);
}

static int probe_wait(struct weft__waiter *w, uint32_t expect, weft_time_t deadline)
{
    if (!probe_counted) {
        probe_counted = true;
        atomic_fetch_add(&probe_parked, 1);
    }
    return weft__thread_park_ops.wait(w, expect, deadline);
}

static void probe_wake(void *ctx, uint64_t gen, _Atomic uint32_t *state)
{
    weft__thread_park_ops.wake(ctx, gen, state);
}

static const struct weft__park_ops probe_ops = {
    .name = "probe",
    .prepare = probe_prepare,
    .wait = probe_wait,
    .wake = probe_wake,
};

static inline void probe_install(void) { weft__park_set_ops(&probe_ops); }
static inline void probe_reset(void) { atomic_store(&probe_parked, 0); }

/* Spin (yielding) until *counter >= n, for at most 30 s; false on time-out
 * (the caller CHECKs it, so a bug fails the test instead of hanging it). */
static inline bool wait_count(_Atomic int *counter, int n)
{
    weft_time_t dl = weft_deadline_in(30);
    while (atomic_load(counter) < n) {
        if (weft_now() > dl)
            return false;
        sched_yield();
    }
    return true;
}

static inline bool wait_parked_key(const void *key)
{
    weft_time_t dl = weft_deadline_in(30);
    while (!weft__is_parked(key)) {
        if (weft_now() > dl)
            return false;
        sched_yield();
    }
    return true;
}

/* Burn a little time inside a critical section, so that the other core
 * runs into the held primitive. (sched_yield would do it too, but on a
 * loaded machine each yield can cost a whole time slice.) */
static inline void busy(unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        weft__cpu_relax();
}

static inline pthread_t spawn(void *(*fn)(void *), void *arg)
{
    pthread_t t;
    if (pthread_create(&t, NULL, fn, arg) != 0) {
        fprintf(stderr, "pthread_create failed\n");
        exit(1);
    }
    return t;
}

static inline intptr_t join(pthread_t t)
{
    void *r;
    pthread_join(t, &r);
    return (intptr_t)r;
}

#endif /* WEFT_TEST_SYNC_UTIL_H */
