/*
 * net/internal.h - what the socket layer's files share: one "operation" on
 * an fd, which knows whether it runs in a coroutine or on a plain thread,
 * and how it waits for readiness in each case.
 *
 * Files: addr.c (addresses, name resolution on the pool), io.c (the wait,
 * read/write and their exact/all forms, datagrams), sock.c (listen, accept,
 * connect, shutdown, close, adopt, udp).
 *
 * Close generations. weft_net_close on a loop's thread must make every call
 * of that loop still in progress on the fd fail with -EPIPE, even one that
 * was already woken (and so is no longer in the loop's fd table) and has
 * not run yet, and even if the fd number is reused by then. Each thread
 * keeps a table of per-fd generations: weft_net_close bumps it, and a call
 * reads it just before each wait and compares after. That is the value the
 * call started with (nothing on this thread can close the fd while the call
 * runs without suspending, and a change during an earlier wait of the call
 * has ended it with -EPIPE), and a call that never waits (the common case
 * on a busy connection) never looks. All of this happens on the loop's
 * thread only, so the table needs no atomics; it is thread-local (freed
 * when the thread exits).
 */
#ifndef WEFT_NET_INTERNAL_H
#define WEFT_NET_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <weft/net.h>

#include "../loop/net_support.h"

/* One call in progress on fd. */
struct weft__net_op {
    int fd;
    bool co;              /* in a coroutine (else a plain thread) */
    uint32_t gen;         /* connect: fd's close generation when it made fd */
    weft_time_t deadline; /* absolute; WEFT_FOREVER for none */
};

/* This thread's close generations and drained stamps (io.c), by fd; NULL
 * until the first weft_net_close or drained stamp on this thread. */
struct weft__net_gens {
    uint32_t *gen;
    uint64_t *drained; /* io.c: "drained stream sockets"; 0: none */
    int n;
};
extern _Thread_local struct weft__net_gens *weft__net_gens_tls;

/* The current close generation of fd on this thread; bump it. */
static inline uint32_t weft__net_gen(int fd)
{
    struct weft__net_gens *t = weft__net_gens_tls;
    return t && fd >= 0 && fd < t->n ? t->gen[fd] : 0;
}
void weft__net_gen_bump(int fd);

/*
 * Start a call: -EINVAL (fd < 0, negative deadline); -EPERM (a loop's
 * thread outside a coroutine); in a coroutine, a checkpoint (-ECANCELED,
 * -ETIMEDOUT for an expired scope). 0 when the call may go on. Inline:
 * every call starts here, and one look at the thread's loop
 * (weft__co_enter) tells all of it.
 */
static inline int weft__net_begin(struct weft__net_op *op, int fd, weft_time_t deadline)
{
    if (fd < 0 || deadline < 0)
        return -EINVAL;
    int r = weft__co_enter();
    if (r < 0)
        return r;
    op->fd = fd;
    op->deadline = deadline;
    op->co = r != 0;
    op->gen = 0;
    return 0;
}

/*
 * Wait until op->fd is ready for events (WEFT_IO_READ or WEFT_IO_WRITE) or
 * the deadline passes. 0: try the system call again; -ETIMEDOUT,
 * -ECANCELED, -EBUSY, -EPIPE (closed by weft_net_close meanwhile), or
 * another error.
 */
int weft__net_wait(struct weft__net_op *op, unsigned events);

/* A short pause (1 ms, or to the deadline) in either mode: for the one
 * case with no readiness to wait for (a Unix listener's full backlog). */
int weft__net_pause(struct weft__net_op *op);

/* Set TCP_NODELAY on an IP stream socket (ignored for others). */
void weft__net_nodelay(int fd, int family);

/* Wait until no name lookup handed to the pool is still running (a caller
 * that gave up leaves its getaddrinfo running, holding descriptors): for
 * the tests' descriptor counts. Any thread. */
void weft__net_resolve_drain(void);

#endif /* WEFT_NET_INTERNAL_H */
