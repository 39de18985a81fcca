/*
 * net/io.c - waiting for an fd in a coroutine or on a thread, and the calls
 * that move bytes: read, write, read_exact, write_all, sendto, recvfrom.
 *
 * Every call first tries the system call and waits only on EAGAIN (the
 * common case on a busy connection costs no wait at all); in a coroutine
 * the wait is weft__loop_wait_owned (weft_co_wait_fd with the vouch that
 * EAGAIN was just seen), so the call works on every loop backend and the
 * socket stays registered in the kernel between waits.
 */
#include "internal.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <weft/co.h>
#include <weft/loop.h>

#include "../loop/net_support.h"

/* ---- close generations (see internal.h) ------------------------------------ */

_Thread_local struct weft__net_gens *weft__net_gens_tls;
static pthread_key_t gens_key;
static pthread_once_t gens_once = PTHREAD_ONCE_INIT;

static void gens_free(void *p)
{
    struct weft__net_gens *t = p;
    free(t->gen);
    free(t->drained);
    free(t);
}

static void gens_key_make(void)
{
    pthread_key_create(&gens_key, gens_free);
}

/* This thread's table, grown to hold fd; NULL if no memory. */
static struct weft__net_gens *gentab_for(int fd)
{
    struct weft__net_gens *t = weft__net_gens_tls;
    if (!t) {
        pthread_once(&gens_once, gens_key_make);
        t = calloc(1, sizeof *t);
        if (!t)
            return NULL;
        weft__net_gens_tls = t;
        pthread_setspecific(gens_key, t);
    }
    if (fd >= t->n) {
        int n = t->n ? t->n : 256;
        while (n <= fd)
            n *= 2;
        uint32_t *g = realloc(t->gen, (size_t)n * sizeof *g);
        if (!g)
            return NULL;
        t->gen = g;
        uint64_t *d = realloc(t->drained, (size_t)n * sizeof *d);
        if (!d)
            return NULL; /* gen grew, n did not: the next call grows again */
        t->drained = d;
        memset(g + t->n, 0, (size_t)(n - t->n) * sizeof *g);
        memset(d + t->n, 0, (size_t)(n - t->n) * sizeof *d);
        t->n = n;
    }
    return t;
}

void weft__net_gen_bump(int fd)
{
    if (fd < 0)
        return;
    struct weft__net_gens *t = gentab_for(fd);
    if (!t)
        return; /* degraded: a woken waiter then sees -EBADF, not -EPIPE */
    t->gen[fd]++;
    t->drained[fd] = 0;
}

/*
 * Drained TCP sockets. A read of a TCP socket that returns fewer bytes
 * than asked has emptied the receive queue (epoll(7): "if read(2) returns
 * a lower number of bytes, you can be sure of having exhausted the read
 * I/O space"; tokio relies on the same since tokio-rs/tokio#4840). The
 * exception is the urgent mark: a read stops short at a MSG_OOB byte with
 * data behind it, which then waits for the peer's next segment; weft does
 * not support out-of-band data. Unix stream sockets are left out: with
 * SO_PASSCRED a read stops short at each writer's boundary. If the next
 * read of the socket comes
 * before this thread's loop has polled again, it would say EAGAIN unless
 * data came meanwhile, and data that came meanwhile has its readiness
 * report still waiting in the kernel for the next poll, where an owned
 * wait (vouched for READ) receives it. So that read is skipped and the
 * call waits at once: on a keep-alive connection (read the request, write
 * the answer, read again) that is one system call fewer per request.
 * Reads that must not wait (a past deadline: a try) are never skipped.
 * The stamp is the thread's poll count + 1 at the short read; any read of
 * the fd replaces or clears it, and weft_net_close clears it.
 */
static inline bool drained_now(int fd)
{
    struct weft__net_gens *t = weft__net_gens_tls;
    return t && fd < t->n && t->drained[fd] && t->drained[fd] == weft__loop_polls() + 1;
}

static inline void drained_mark(int fd, bool drained)
{
    struct weft__net_gens *t = weft__net_gens_tls;
    if (drained) {
        if (fd >= (t ? t->n : 0) && !(t = gentab_for(fd)))
            return;
        t->drained[fd] = weft__loop_polls() + 1;
    } else if (t && fd < t->n) {
        t->drained[fd] = 0;
    }
}

/* An owned TCP socket, in a coroutine: where drained stamps apply. */
static inline bool stamp_ok(const struct weft__net_op *op)
{
    const uint32_t both = WEFT__EPOCH_OWNED | WEFT__EPOCH_STREAM;
    return op->co && (weft__fd_epoch(op->fd) & both) == both;
}

/* Skip the read and wait at once? (see above) */
static inline bool skip_read(const struct weft__net_op *op, bool stamps)
{
    return stamps && drained_now(op->fd) &&
           (op->deadline == WEFT_FOREVER || op->deadline > weft_now());
}

/* ---- the wait ------------------------------------------------------------------ */

/* Milliseconds until the deadline for poll(2), rounded up (never early);
 * -1 for none; 0 when it has passed. */
static int ms_until(weft_time_t deadline)
{
    if (deadline == WEFT_FOREVER)
        return -1;
    weft_time_t now = weft_now();
    if (now >= deadline)
        return 0;
    weft_time_t ms = (deadline - now + 999999) / 1000000;
    return ms > INT_MAX ? INT_MAX : (int)ms;
}

static int thread_wait(int fd, unsigned events, weft_time_t deadline)
{
    struct pollfd p = {.fd = fd,
                       .events = (short)(((events & WEFT_IO_READ) ? POLLIN : 0) |
                                         ((events & WEFT_IO_WRITE) ? POLLOUT : 0))};
    for (;;) {
        int ms = ms_until(deadline);
        if (ms == 0 && deadline != WEFT_FOREVER)
            return -ETIMEDOUT;
        p.revents = 0;
        int r = poll(&p, 1, ms);
        if (r > 0)
            return (p.revents & POLLNVAL) ? -EBADF : 0;
        if (r < 0 && errno != EINTR)
            return -errno;
        /* r == 0 (poll's rounding) or EINTR: the deadline is checked again. */
    }
}

/* weft__net_wait, inlined into this file's calls (a socket wait per
 * request: one call less); sock.c's calls take the function below. */
static inline __attribute__((always_inline)) int net_wait(struct weft__net_op *op,
                                                          unsigned events)
{
    if (!op->co)
        return thread_wait(op->fd, events, op->deadline);
    /* Every caller has just seen EAGAIN (or EINPROGRESS) on op->fd with no
     * suspension since: an owned wait (net_support.h), which on a busy
     * connection costs no system call to arm. */
    uint32_t gen = weft__net_gen(op->fd); /* the call's: see internal.h */
    int r = weft__loop_wait_owned(op->fd, events, op->deadline);
    if (r < 0)
        return r;
    /* Woken: by readiness, or by weft_net_close of this fd (which also
     * bumps its generation; the fd number may already be someone else's). */
    if (weft__net_gen(op->fd) != gen)
        return -EPIPE;
    return 0;
}

int weft__net_wait(struct weft__net_op *op, unsigned events)
{
    return net_wait(op, events);
}

int weft__net_pause(struct weft__net_op *op)
{
    weft_time_t at = weft_now() + 1000000;
    if (op->deadline <= weft_now())
        return -ETIMEDOUT;
    if (at > op->deadline)
        at = op->deadline;
    if (op->co) {
        uint32_t gen = weft__net_gen(op->fd); /* the call's: see internal.h */
        int r = weft_co_sleep_until(at);
        if (r)
            return r;
        return weft__net_gen(op->fd) != gen ? -EPIPE : 0;
    }
    /* Until at: a millisecond, or what is left to the deadline if less. */
    weft_time_t left = at - weft_now();
    if (left > 0) {
        struct timespec ts = {0, (long)left};
        nanosleep(&ts, NULL);
    }
    return 0;
}

static inline bool would_block(int e)
{
    return e == EAGAIN || e == EWOULDBLOCK;
}

/* ---- bytes ------------------------------------------------------------------- */

ssize_t weft_net_read_until(int fd, void *buf, size_t n, weft_time_t deadline)
{
    if (!buf && n)
        return -EINVAL;
    struct weft__net_op op;
    int r = weft__net_begin(&op, fd, deadline);
    if (r)
        return r;
    bool stamps = stamp_ok(&op);
    if (skip_read(&op, stamps) && (r = net_wait(&op, WEFT_IO_READ)) != 0)
        return r;
    for (;;) {
        ssize_t k = read(fd, buf, n);
        if (k >= 0) {
            if (stamps)
                drained_mark(fd, k > 0 && (size_t)k < n);
            return k;
        }
        if (errno == EINTR)
            continue;
        if (stamps)
            drained_mark(fd, false);
        if (!would_block(errno))
            return -errno;
        if ((r = net_wait(&op, WEFT_IO_READ)) != 0)
            return r;
    }
}

ssize_t weft_net_read(int fd, void *buf, size_t n)
{
    return weft_net_read_until(fd, buf, n, WEFT_FOREVER);
}

/* One write: send with MSG_NOSIGNAL on sockets (so a gone peer is -EPIPE,
 * not SIGPIPE), write(2) on anything else. */
static ssize_t write_once(int fd, const void *buf, size_t n)
{
    ssize_t k = send(fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (k < 0 && errno == ENOTSOCK)
        k = write(fd, buf, n);
    return k;
}

ssize_t weft_net_write_until(int fd, const void *buf, size_t n, weft_time_t deadline)
{
    if (!buf && n)
        return -EINVAL;
    struct weft__net_op op;
    int r = weft__net_begin(&op, fd, deadline);
    if (r)
        return r;
    for (;;) {
        ssize_t k = write_once(fd, buf, n);
        if (k >= 0)
            return k;
        if (errno == EINTR)
            continue;
        if (!would_block(errno))
            return -errno;
        if ((r = net_wait(&op, WEFT_IO_WRITE)) != 0)
            return r;
    }
}

ssize_t weft_net_write(int fd, const void *buf, size_t n)
{
    return weft_net_write_until(fd, buf, n, WEFT_FOREVER);
}

ssize_t weft_net_read_exact_until(int fd, void *buf, size_t n, size_t *done,
                                  weft_time_t deadline)
{
    size_t got = 0;
    if (done)
        *done = 0;
    if ((!buf && n) || n > (size_t)SSIZE_MAX)
        return -EINVAL;
    struct weft__net_op op;
    int r = weft__net_begin(&op, fd, deadline);
    if (r)
        return r;
    bool stamps = stamp_ok(&op);
    bool skip = skip_read(&op, stamps);
    if (stamps)
        drained_mark(fd, false); /* whatever happens below, the stamp is used */
    while (got < n) {
        if (skip) {
            /* Drained just now, no poll since: wait at once (see above). */
            skip = false;
            if ((r = net_wait(&op, WEFT_IO_READ)) != 0)
                return r;
        }
        ssize_t k = read(fd, (char *)buf + got, n - got);
        if (k > 0) {
            got += (size_t)k;
            if (done)
                *done = got;
            skip = stamps && got < n &&
                   (op.deadline == WEFT_FOREVER || op.deadline > weft_now());
            continue;
        }
        if (k == 0)
            return -EPIPE; /* end of file before n bytes */
        if (errno == EINTR)
            continue;
        if (!would_block(errno))
            return -errno;
        if ((r = net_wait(&op, WEFT_IO_READ)) != 0)
            return r;
    }
    return (ssize_t)n;
}

ssize_t weft_net_read_exact(int fd, void *buf, size_t n, size_t *done)
{
    return weft_net_read_exact_until(fd, buf, n, done, WEFT_FOREVER);
}

ssize_t weft_net_write_all_until(int fd, const void *buf, size_t n, size_t *done,
                                 weft_time_t deadline)
{
    size_t put = 0;
    if (done)
        *done = 0;
    if ((!buf && n) || n > (size_t)SSIZE_MAX)
        return -EINVAL;
    struct weft__net_op op;
    int r = weft__net_begin(&op, fd, deadline);
    if (r)
        return r;
    while (put < n) {
        ssize_t k = write_once(fd, (const char *)buf + put, n - put);
        if (k >= 0) {
            put += (size_t)k;
            if (done)
                *done = put;
            continue;
        }
        if (errno == EINTR)
            continue;
        if (!would_block(errno))
            return -errno;
        if ((r = net_wait(&op, WEFT_IO_WRITE)) != 0)
            return r;
    }
    return (ssize_t)n;
}

ssize_t weft_net_write_all(int fd, const void *buf, size_t n, size_t *done)
{
    return weft_net_write_all_until(fd, buf, n, done, WEFT_FOREVER);
}

/* ---- datagrams ------------------------------------------------------------------ */

ssize_t weft_net_sendto_until(int fd, const void *buf, size_t n, const weft_addr_t *to,
                              weft_time_t deadline)
{
    if ((!buf && n) || (to && (to->len == 0 || to->len > sizeof to->u)))
        return -EINVAL;
    struct weft__net_op op;
    int r = weft__net_begin(&op, fd, deadline);
    if (r)
        return r;
    for (;;) {
        ssize_t k = sendto(fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT, to ? &to->u.sa : NULL,
                           to ? to->len : 0);
        if (k >= 0)
            return k;
        if (errno == EINTR)
            continue;
        if (!would_block(errno))
            return -errno;
        /* A Unix datagram sent to an address (not through connect) whose
         * receiver's queue is full: the sending socket still polls
         * writable (the kernel looks at the peer's queue only for a
         * connected socket), so a wait would return at once, again and
         * again. Look again shortly instead, as for a Unix listener's full
         * backlog. */
        if (to && to->u.sa.sa_family == AF_UNIX)
            r = weft__net_pause(&op);
        else
            r = net_wait(&op, WEFT_IO_WRITE);
        if (r != 0)
            return r;
    }
}

ssize_t weft_net_sendto(int fd, const void *buf, size_t n, const weft_addr_t *to)
{
    return weft_net_sendto_until(fd, buf, n, to, WEFT_FOREVER);
}

ssize_t weft_net_recvfrom_until(int fd, void *buf, size_t n, weft_addr_t *from,
                                weft_time_t deadline)
{
    if (!buf && n)
        return -EINVAL;
    struct weft__net_op op;
    int r = weft__net_begin(&op, fd, deadline);
    if (r)
        return r;
    for (;;) {
        socklen_t len = sizeof from->u;
        ssize_t k = recvfrom(fd, buf, n, MSG_DONTWAIT, from ? &from->u.sa : NULL,
                             from ? &len : NULL);
        if (k >= 0) {
            if (from)
                from->len = len;
            return k;
        }
        if (errno == EINTR)
            continue;
        if (!would_block(errno))
            return -errno;
        if ((r = net_wait(&op, WEFT_IO_READ)) != 0)
            return r;
    }
}

ssize_t weft_net_recvfrom(int fd, void *buf, size_t n, weft_addr_t *from)
{
    return weft_net_recvfrom_until(fd, buf, n, from, WEFT_FOREVER);
}
