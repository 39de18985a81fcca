/*
 * loop/net_support.c - the two things the socket layer (src/net) needs from
 * the loop that the public co API does not give: a cancellation checkpoint
 * that does not suspend, and "this fd is being closed: wake whoever waits on
 * it". Both act only on the calling thread's loop, from its own thread.
 */
#include "internal.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include "net_support.h"

int weft__co_checkpoint(void)
{
    struct weft_loop *L = weft__loop_tls;
    struct weft_task *t = L ? L->current : NULL;
    if (!t)
        return -EPERM;
    /* Nothing to find (no scope, not cancelled): what the wait below would
     * conclude, without its atomics. Every net call starts here. */
    if (!t->scope && !t->cancelled && !weft_future_cancel_requested(t->fut))
        return 0;
    /* The same trick as weft_co_yield: a waiter that is already WOKEN makes
     * weft__cotask_wait check cancellation and expired scopes and then
     * return without suspending. */
    struct weft__waiter w;
    weft__waiter_init(&w);
    atomic_store_explicit(&w.state, WEFT__W_WOKEN, memory_order_relaxed);
    int r = weft__cotask_wait(t, &w, WEFT__W_WAITING, WEFT_FOREVER, W_CO);
    if (r == WEFT__SCOPE_EXPIRED)
        return -ETIMEDOUT;
    return r < 0 ? r : 0;
}

int weft__loop_fd_forget(int fd)
{
    struct weft_loop *L = weft__loop_tls;
    if (!L || fd < 0)
        return 0;
    int woken = 0;
    if (fd < L->nwatch) {
        /* A woken waiter sees WEFT_IO_ERROR from weft_co_wait_fd; its slot is
         * cleared here, exactly as the loop's own dispatch does. */
        struct weft__watch *w = &L->watch[fd];
        struct weft__fdwait *rd = w->rd, *wr = w->wr;
        w->rd = w->wr = NULL;
        if (rd) {
            rd->got = WEFT__IO_ERROR;
            weft__waiter_finish(&rd->w, WEFT__W_WOKEN);
            woken++;
        }
        if (wr && wr != rd) {
            wr->got = WEFT__IO_ERROR;
            weft__waiter_finish(&wr->w, WEFT__W_WOKEN);
            woken++;
        }
    }
    /* The fd may have been armed earlier and reported nothing yet: forget it
     * in the kernel before it is closed, so that a later fd with the same
     * number starts clean. */
    if (L->bops->forget)
        L->bops->forget(L->be, fd);
    else
        L->bops->disarm(L->be, fd);
    return woken;
}

/* ---- owned waits and epochs (net_support.h) ------------------------------------ */

/* The epoch table: chunks of CHUNK counters, made on first use and never
 * freed (a process has few), so readers on any thread need no lock: the
 * chunk pointer is published with release and read with acquire. */
#define CHUNK 4096
#define NCHUNK 1024 /* fds up to 4 Mi; beyond, no fd is owned (one-shot waits) */
static _Atomic(_Atomic uint32_t *) chunks[NCHUNK];

static _Atomic uint32_t *epoch_slot(int fd, bool make)
{
    if (fd < 0 || (unsigned)fd / CHUNK >= NCHUNK)
        return NULL;
    _Atomic(_Atomic uint32_t *) *cp = &chunks[(unsigned)fd / CHUNK];
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

uint32_t weft__fd_epoch(int fd)
{
    _Atomic uint32_t *e = epoch_slot(fd, false);
    return e ? atomic_load_explicit(e, memory_order_relaxed) : 0;
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

uint64_t weft__loop_polls(void)
{
    struct weft_loop *L = weft__loop_tls;
    return L ? atomic_load_explicit(&L->st_polls, memory_order_relaxed) : 0;
}

int weft__loop_wait_owned(int fd, unsigned events, weft_time_t deadline)
{
    struct weft_loop *L = weft__loop_tls;
    uint32_t epoch = weft__fd_epoch(fd);
    if (!L || !L->bops->vouch || !(epoch & WEFT__EPOCH_OWNED))
        return weft_co_wait_fd(fd, events, deadline); /* not owned: one-shot */
    /* The vouch is taken by the arm weft_co_wait_fd makes before it
     * suspends; if it returns without arming (-EBUSY, -EINVAL, -ENOMEM) it
     * did not suspend either, and the drop below keeps the vouch from
     * reaching another arm. */
    L->bops->vouch(L->be, fd, events, epoch);
    int r = weft_co_wait_fd(fd, events, deadline);
    L->bops->vouch(L->be, -1, 0, 0);
    return r;
}
