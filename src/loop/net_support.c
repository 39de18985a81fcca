/*
 * loop/net_support.c - what the socket layer (src/net) needs from the loop
 * that the public co API does not give: a cancellation checkpoint that does
 * not suspend (weft__co_enter), the fd epochs and the
 * poll count, and which loop to close an fd on (the registry of running
 * loops). The fd waits themselves (weft__loop_wait_owned,
 * weft__loop_fd_forget) live with weft_co_wait_fd in task.c. The waits act
 * only on the calling thread's loop, from its own thread; the epochs, the
 * owners and the registry on any thread.
 */
#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <weft/sync.h>

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
_Atomic(_Atomic uint32_t *) weft__fd_owners[WEFT__EPOCH_NCHUNK];

/* fd's word in table (weft__fd_word), making its chunk if `make`. */
static _Atomic uint32_t *table_slot(_Atomic(_Atomic uint32_t *) *table, int fd, bool make)
{
    _Atomic uint32_t *w = weft__fd_word(table, fd);
    if (w || !make || fd < 0 || (unsigned)fd / CHUNK >= NCHUNK)
        return w;
    _Atomic(_Atomic uint32_t *) *cp = &table[(unsigned)fd / CHUNK];
    _Atomic uint32_t *c = NULL, *n = calloc(CHUNK, sizeof *n);
    if (!n)
        return NULL;
    if (atomic_compare_exchange_strong_explicit(cp, &c, n, memory_order_acq_rel,
                                                memory_order_acquire))
        c = n;
    else
        free(n); /* another thread made it: c is theirs */
    return &c[(unsigned)fd % CHUNK];
}

static _Atomic uint32_t *epoch_slot(int fd, bool make)
{
    return table_slot(weft__fd_epochs, fd, make);
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
    /* The owner word's chunk too (so that waits can note themselves
     * without allocating), starting at "nobody waited yet". */
    _Atomic uint32_t *o = table_slot(weft__fd_owners, fd, true);
    if (o)
        atomic_store_explicit(o, 0, memory_order_relaxed);
}

void weft__fd_epoch_close(int fd)
{
    epoch_move(fd, false, false);
}

/* ---- closing a socket where it is waited on (net_support.h) -------------------- */

/* The running loops by registry id: few, so a list under a lock; looked up
 * only by a weft_net_close of an fd that another loop waited on last. */
static weft_mutex_t reg_lock = WEFT_MUTEX_INIT;
static struct weft_loop **reg;
static size_t reg_n, reg_cap;
static uint32_t reg_next = 1;

/* A forked child runs none of its parent's loops (only the forking thread
 * exists there; if it was a loop's, its own closes are local anyway): it
 * starts with an empty registry, and a lock nobody holds. */
static pthread_once_t reg_fork_once = PTHREAD_ONCE_INIT;
static void reg_after_fork_child(void)
{
    weft_mutex_t fresh = WEFT_MUTEX_INIT;
    reg_lock = fresh;
    reg_n = 0;
}
static void reg_fork_register(void)
{
    pthread_atfork(NULL, NULL, reg_after_fork_child);
}

void weft__loop_registry_add(struct weft_loop *L)
{
    pthread_once(&reg_fork_once, reg_fork_register);
    weft_mutex_lock(&reg_lock);
    if (reg_n == reg_cap) {
        size_t cap = reg_cap ? reg_cap * 2 : 8;
        struct weft_loop **n = realloc(reg, cap * sizeof *n);
        if (!n) {
            /* Not registered: closes from elsewhere then close at once
             * (as if this loop had never waited), nothing worse. */
            weft_mutex_unlock(&reg_lock);
            L->reg_id = 0;
            return;
        }
        reg = n;
        reg_cap = cap;
    }
    L->reg_id = reg_next++;
    if (reg_next == 0)
        reg_next = 1; /* after 4 billion loops: ids of long-gone loops come back */
    reg[reg_n++] = L;
    weft_mutex_unlock(&reg_lock);
}

void weft__loop_registry_remove(struct weft_loop *L)
{
    if (!L->reg_id)
        return;
    weft_mutex_lock(&reg_lock);
    for (size_t i = 0; i < reg_n; i++)
        if (reg[i] == L) {
            reg[i] = reg[--reg_n];
            break;
        }
    if (reg_n == 0) {
        free(reg); /* nothing left behind at exit (leak checkers) */
        reg = NULL;
        reg_cap = 0;
    }
    weft_mutex_unlock(&reg_lock);
    L->reg_id = 0;
}

void weft__fd_owner_reset(int fd)
{
    _Atomic uint32_t *o = weft__fd_word(weft__fd_owners, fd);
    if (o)
        atomic_store_explicit(o, 0, memory_order_relaxed);
}

int weft__loop_close_elsewhere(int fd, void (*fn)(void *arg), void *arg)
{
    _Atomic uint32_t *o = weft__fd_word(weft__fd_owners, fd);
    uint32_t id = o ? atomic_load_explicit(o, memory_order_relaxed) : 0;
    struct weft_loop *cur = weft__loop_tls;
    if (id == 0 || (cur && cur->reg_id == id))
        return -ESRCH; /* nobody else: the caller closes it */
    struct weft_loop *L = NULL;
    weft_mutex_lock(&reg_lock);
    for (size_t i = 0; i < reg_n; i++)
        if (reg[i]->reg_id == id) {
            L = reg[i];
            atomic_fetch_add_explicit(&L->refs, 1, memory_order_relaxed);
            break;
        }
    weft_mutex_unlock(&reg_lock);
    if (!L)
        return -ESRCH; /* that loop has finished */
    int r = weft_loop_call_soon_threadsafe(L, fn, arg); /* -EPIPE: finishing */
    weft__loop_unref(L);
    return r;
}
