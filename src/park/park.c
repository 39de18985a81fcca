/*
 * park.c - waiters, the OS-thread parking ops, and context ids.
 */
#include "park.h"

#include <errno.h>

/* ---- context ids ------------------------------------------------------- */

static _Atomic uint64_t next_id = 1;
_Thread_local uint64_t weft__self_id_tls;
static _Thread_local uint64_t thread_id_tls;

/* Ids are handed to each thread in blocks, so that a loop spawning tasks
 * (an id each) does one atomic add per ID_BLOCK of them. Unique, not
 * ordered across threads. */
#define ID_BLOCK 256
static _Thread_local uint64_t id_next, id_end;

uint64_t weft__id_new(void)
{
    if (WEFT_UNLIKELY(id_next == id_end)) {
        id_next = atomic_fetch_add_explicit(&next_id, ID_BLOCK, memory_order_relaxed);
        id_end = id_next + ID_BLOCK;
    }
    return id_next++;
}

uint64_t weft__thread_id(void)
{
    if (WEFT_UNLIKELY(thread_id_tls == 0))
        thread_id_tls = weft__id_new();
    return thread_id_tls;
}

uint64_t weft__self_id_slow(void)
{
    weft__self_id_tls = weft__thread_id();
    return weft__self_id_tls;
}

void weft__self_id_set(uint64_t id)
{
    weft__self_id_tls = id ? id : weft__thread_id();
}

/* ---- OS-thread parking ---------------------------------------------------- */

/* How long a thread spins on its waiter before the futex: long enough to
 * catch a partner on the other core answering at once (a channel ping-pong,
 * a lock handed over), short enough not to matter when it does not. */
#define THREAD_SPIN 128

static void thread_prepare(struct weft__waiter *w)
{
    w->ctx = NULL;
    w->gen = 0;
    w->spin = THREAD_SPIN;
}

static int thread_wait(struct weft__waiter *w, uint32_t expect, weft_time_t deadline)
{
    for (uint32_t i = 0; i < w->spin; i++) {
        if (weft__waiter_state(w) != expect)
            return 0;
        weft__cpu_relax();
    }
    if (!weft__waiter_mark_sleep(w, expect))
        return 0;
    int r = weft__futex_wait(&w->state, expect | WEFT__W_SLEEP, deadline, false);
    return r == -ETIMEDOUT ? -ETIMEDOUT : 0;
}

static void thread_wake(void *ctx, uint64_t gen, _Atomic uint32_t *state)
{
    (void)ctx;
    (void)gen;
    /* The waiter may have returned and its stack be reused: a futex wake on
     * that address is harmless (every futex sleeper in weft re-checks its
     * condition), and no memory is read. */
    weft__futex_wake(state, 1, false);
}

const struct weft__park_ops weft__thread_park_ops = {
    .name = "thread",
    .prepare = thread_prepare,
    .wait = thread_wait,
    .wake = thread_wake,
};

_Thread_local const struct weft__park_ops *weft__park_ops_tls;
_Thread_local const void *weft__park_home_tls;

void weft__park_set_home(const void *home)
{
    weft__park_home_tls = home;
}

void weft__park_set_ops(const struct weft__park_ops *ops)
{
    weft__park_ops_tls = ops;
}

/* ---- waiters ---------------------------------------------------------------- */

/* weft__waiter_init and weft__waiter_wait are inline (park.h). */

void weft__waiter_finish(struct weft__waiter *w, uint32_t final_state)
{
    /* Read what wake needs before publishing: once the state changes the
     * waiter may return and its memory be gone. */
    const struct weft__park_ops *ops = w->ops;
    void *ctx = w->ctx;
    uint64_t gen = w->gen;
    uint32_t old = atomic_exchange_explicit(&w->state, final_state, memory_order_acq_rel);
    if (old & WEFT__W_SLEEP)
        ops->wake(ctx, gen, &w->state);
}
