/*
 * loop/net_support.c - what the socket layer (src/net) needs from the loop
 * that the public co API does not give: a cancellation checkpoint that does
 * not suspend (weft__co_enter), the fd epochs and the
 * poll count. The fd waits themselves (weft__loop_wait_owned,
 * weft__loop_fd_forget) live with weft_co_wait_fd in task.c. All of it acts
 * only on the calling thread's loop, from its own thread.
 */
#include "internal.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include "net_support.h"

_Thread_local uint64_t weft__loop_polls_tls;

/* The checkpoint when there may be something to deliver: the same trick as
 * weft_co_yield, a waiter that is already WOKEN makes weft__cotask_wait
 * check cancellation and expired scopes and return without suspending. */
static WEFT_NOINLINE int checkpoint_slow(struct weft_task *t)
{
    struct weft__waiter w;
    weft__waiter_init(&w);
    atomic_store_explicit(&w.state, WEFT__W_WOKEN, memory_order_relaxed);
    int r = weft__cotask_wait(t, &w, WEFT__W_WAITING, WEFT_FOREVER, W_CO);
    if (r == WEFT__SCOPE_EXPIRED)
        return -ETIMEDOUT;
    return r < 0 ? r : 0;
}

int weft__co_enter(void)
{
    struct weft_loop *L = weft__loop_tls;
    if (!L)
        return 0; /* a plain thread */
    struct weft_task *t = L->current;
    if (WEFT_UNLIKELY(!t))
        return -EPERM;
    if (WEFT_LIKELY(!t->scope && !t->cancelled && !weft__future_cancel_requested(t->fut)))
        return 1;
    int r = checkpoint_slow(t);
    return r ? r : 1;
}

/* ---- owned waits and epochs (net_support.h) ------------------------------------ */

/* The epoch table: chunks of CHUNK counters, made on first use and never
 * freed (a process has few), so readers on any thread need no lock: the
 * chunk pointer is published with release and read with acquire. */
#define CHUNK WEFT__EPOCH_CHUNK
#define NCHUNK WEFT__EPOCH_NCHUNK
_Atomic(_Atomic uint32_t *) weft__fd_epochs[WEFT__EPOCH_NCHUNK];

static _Atomic uint32_t *epoch_slot(int fd, bool make)
{
    if (fd < 0 || (unsigned)fd / CHUNK >= NCHUNK)
        return NULL;
    _Atomic(_Atomic uint32_t *) *cp = &weft__fd_epochs[(unsigned)fd / CHUNK];
    _Atomic uint32_t *c = atomic_load_explicit(cp, memory_order_acquire);
    if (!c && make) {
        _Atomic uint32_t *n = calloc(CHUNK, sizeof *n);
        if (!n)
            return NULL;
        if (atomic_compare_exchange_strong_explicit(cp, &c, n, memory_order_acq_rel,
                                                    memory_order_acquire))
            c = n;
        else
            free(n); /* another thread made it: c is theirs */
    }
    return c ? &c[(unsigned)fd % CHUNK] : NULL;
}

/* Move the epoch on (relaxed: see net_support.h): open makes it owned
 * (and stream or not), close not owned; the counter part always changes. */
static void epoch_move(int fd, bool open, bool stream)
{
    _Atomic uint32_t *e = epoch_slot(fd, open);
    if (!e)
        return; /* closing an fd no one opened here; or no memory: not owned */
    uint32_t old = atomic_load_explicit(e, memory_order_relaxed), nw;
    do {
        nw = ((old >> 2) + 1) << 2;
        if (open)
            nw |= WEFT__EPOCH_OWNED | (stream ? WEFT__EPOCH_STREAM : 0);
    } while (!atomic_compare_exchange_weak_explicit(e, &old, nw, memory_order_relaxed,
                                                    memory_order_relaxed));
}

void weft__fd_epoch_open(int fd, bool stream)
{
    epoch_move(fd, true, stream);
}

void weft__fd_epoch_close(int fd)
{
    epoch_move(fd, false, false);
}
