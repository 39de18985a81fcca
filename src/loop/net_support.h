/*
 * loop/net_support.h - what the socket layer (src/net) needs from the loop
 * beyond the public co API. Everything here acts on the calling thread's
 * loop and must be called from that thread (the epochs, the owners and
 * weft__loop_close_elsewhere: any thread).
 */
#ifndef WEFT_LOOP_NET_SUPPORT_H
#define WEFT_LOOP_NET_SUPPORT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <weft/time.h>

struct weft_loop;

/*
 * Where a socket call starts, in one look at the thread's loop: a
 * suspension point that does not suspend. 1 in a coroutine with nothing to
 * deliver; 0 on a thread that runs no loop (the call may block the thread);
 * -EPERM on a loop's thread outside a coroutine (a call_soon function:
 * waiting would stall the loop); -ECANCELED if the coroutine is cancelled
 * (and no shield holds it off), -ETIMEDOUT if an enclosing deadline scope
 * has expired. So an operation that can complete at once still delivers
 * cancellation, and a coroutine looping over always-ready I/O stays
 * cancellable.
 */
int weft__co_enter(void);

/*
 * fd is about to be closed by the calling thread: wake every coroutine of
 * this thread's loop that waits on fd in weft_co_wait_fd (it returns
 * WEFT_IO_ERROR) and forget fd in the backend (its owned registration
 * too: backend.h's forget). Returns how many waiters were woken; 0 (and
 * nothing done) when no loop runs on this thread.
 */
int weft__loop_fd_forget(int fd);

/*
 * Owned waits. weft__loop_wait_owned is weft_co_wait_fd for an fd that the
 * caller has just found not ready (a system call said EAGAIN or
 * EINPROGRESS, with no suspension since). If the fd is OWNED (below), the
 * backend may serve it with a registration that stays in the kernel across
 * waits (one epoll_ctl per connection, not one per wait; backend.h "OWNED
 * fds"); other fds get the one-shot wait. Same results as weft_co_wait_fd;
 * the arguments must be valid (fd >= 0, events READ and/or WRITE, deadline
 * >= 0: the socket layer's calls have checked them). Lives in task.c.
 *
 * Owned fds and epochs. A process-wide word per fd number (a table that
 * grows by chunks, exact up to 4 Mi fds), moved on any thread: a counter
 * (bits 2..31) that every move changes, WEFT__EPOCH_OWNED and
 * WEFT__EPOCH_STREAM. weft__fd_epoch_open when src/net makes an fd
 * (socket, accept) or adopts one sets OWNED (and STREAM for a TCP socket:
 * one where a short read means the receive queue is empty, io.c),
 * weft__fd_epoch_close when weft_net_close closes one clears them. Only
 * OWNED fds get owned waits, so an fd that weft_net never made nor adopted
 * (a pipe the caller made non-blocking itself, closed with close(2)) keeps the
 * one-shot waits, whose registration a close(2) cannot leave stale. A
 * loop's owned registration records the epoch it was made in; a wait that
 * finds another one registers again, so a socket closed on another thread
 * (whose weft_net_close cannot reach this loop's backend) and whose number
 * comes back as a new socket is never believed registered. The rule left
 * to the user: an owned fd is closed with weft_net_close (docs/net.md).
 * Relaxed atomics: whoever uses an fd learned its number after it was
 * made, through some synchronisation, so it sees the epoch of its making.
 */
int weft__loop_wait_owned(int fd, unsigned events, weft_time_t deadline);
#define WEFT__EPOCH_OWNED 0x1u
#define WEFT__EPOCH_STREAM 0x2u
void weft__fd_epoch_open(int fd, bool stream);
void weft__fd_epoch_close(int fd);

/* The epoch table (net_support.c): chunks of WEFT__EPOCH_CHUNK words, made
 * on first use and never freed, published with release. Inline: every
 * socket wait reads it. */
#define WEFT__EPOCH_CHUNK 4096
#define WEFT__EPOCH_NCHUNK 1024 /* fds up to 4 Mi; beyond, no fd is owned (one-shot) */
extern _Atomic(_Atomic uint32_t *) weft__fd_epochs[WEFT__EPOCH_NCHUNK];
/* fd's word in a table of that layout (the epochs, the owners below), or
 * NULL if its chunk was never made. */
static inline _Atomic uint32_t *weft__fd_word(_Atomic(_Atomic uint32_t *) *table, int fd)
{
    if (fd < 0 || (unsigned)fd / WEFT__EPOCH_CHUNK >= WEFT__EPOCH_NCHUNK)
        return NULL;
    _Atomic uint32_t *c =
        atomic_load_explicit(&table[(unsigned)fd / WEFT__EPOCH_CHUNK], memory_order_acquire);
    return c ? &c[(unsigned)fd % WEFT__EPOCH_CHUNK] : NULL;
}
static inline uint32_t weft__fd_epoch(int fd)
{
    _Atomic uint32_t *e = weft__fd_word(weft__fd_epochs, fd);
    return e ? atomic_load_explicit(e, memory_order_relaxed) : 0;
}

/*
 * Which loop last waited on an fd, and closing there. A second process-wide
 * word per fd number (the epoch table's layout) holds the registry id of
 * the running loop that last made an owned wait on it (0: none, or closed
 * since). weft__loop_close_elsewhere(fd, fn, arg): if that loop is another
 * than the caller's and still running, hand it fn(arg) (which closes fd
 * there, at its next turn) and return 0; else -ESRCH or -EPIPE, and the
 * caller closes fd itself. weft__fd_owner_reset: the number is made or
 * closed (owner 0). weft__loop_registry_add/_remove: weft_loop_run, around
 * the scheduler.
 */
int weft__loop_close_elsewhere(int fd, void (*fn)(void *arg), void *arg);
void weft__fd_owner_reset(int fd);
void weft__loop_registry_add(struct weft_loop *L);
void weft__loop_registry_remove(struct weft_loop *L);
extern _Atomic(_Atomic uint32_t *) weft__fd_owners[WEFT__EPOCH_NCHUNK];
/* Note that loop L waits on fd (owned): a load, and a store when it changes. */
static inline void weft__fd_owner_note(uint32_t loop_id, int fd)
{
    /* The chunk is made by weft__fd_epoch_open with the epoch's; none: not
     * owned. */
    _Atomic uint32_t *o = weft__fd_word(weft__fd_owners, fd);
    if (!o)
        return;
    /* Relaxed: a thread that learns (through any synchronisation) that this
     * wait has begun sees it, as the fd's epoch (above). */
    if (atomic_load_explicit(o, memory_order_relaxed) != loop_id)
        atomic_store_explicit(o, loop_id, memory_order_relaxed);
}

/*
 * How many times loops have polled their backends on the calling thread
 * (it only grows, across loops). Readiness reaches a loop only in a poll:
 * a socket seen drained when this count was c and waited on while it is
 * still c cannot have had a report dropped in between (src/net/io.c:
 * reads that skip the EAGAIN). A thread-local, not the loop's statistic,
 * so that a stamp left by one loop can never match the count of a later
 * loop on the same thread.
 */
extern _Thread_local uint64_t weft__loop_polls_tls;
static inline uint64_t weft__loop_polls(void)
{
    return weft__loop_polls_tls;
}

#endif /* WEFT_LOOP_NET_SUPPORT_H */
