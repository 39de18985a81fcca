/*
 * net/sock.c - making and ending sockets: listen, accept, connect, udp,
 * shutdown, close, adopt.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <unistd.h>
#include <weft/co.h>
#include <weft/loop.h>

#include "../loop/net_support.h"

static bool addr_ok(const weft_addr_t *a)
{
    if (!a || a->len == 0 || a->len > sizeof a->u)
        return false;
    int f = a->u.sa.sa_family;
    return f == AF_INET || f == AF_INET6 || f == AF_UNIX;
}

void weft__net_nodelay(int fd, int family)
{
    /* Small writes (a request, a reply) go out at once, as asyncio does by
     * default: Nagle's algorithm would hold them for the peer's ACK. */
    if (family == AF_INET || family == AF_INET6) {
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
}

/* Close a socket this file made and never handed out (an error path),
 * keeping errno: weft_net_close's bookkeeping on this thread, then
 * close(2). Without it the number stayed marked owned (and, after a
 * connect that waited, registered in this loop's backend and noted as its
 * own), so the next file under that number, a pipe say, was taken for an
 * owned socket already registered: a wait on it that never woke, or one
 * that woke at every turn. */
static void abandon(int fd)
{
    int e = errno;
    if (weft_loop_current())
        weft__loop_fd_forget(fd);
    weft__fd_epoch_close(fd);
    weft__fd_owner_reset(fd);
    close(fd);
    errno = e;
}

int weft_net_listen(const weft_addr_t *addr, int backlog)
{
    if (!addr_ok(addr))
        return -EINVAL;
    int fam = addr->u.sa.sa_family;
    int fd = socket(fam, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    weft__fd_epoch_open(fd, fam != AF_UNIX); /* a new file under this number, owned */
    if (fam != AF_UNIX) {
        int one = 1;
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    }
    if (bind(fd, &addr->u.sa, addr->len) != 0 ||
        listen(fd, backlog > 0 ? backlog : SOMAXCONN) != 0) {
        int e = -errno;
        abandon(fd);
        return e;
    }
    return fd;
}

int weft_net_accept_until(int fd, weft_addr_t *peer, weft_time_t deadline)
{
    struct weft__net_op op;
    int r = weft__net_begin(&op, fd, deadline);
    if (r)
        return r;
    for (;;) {
        weft_addr_t a;
        socklen_t len = sizeof a.u;
        int c = accept4(fd, &a.u.sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (c >= 0) {
            /* A new file under this number, owned; TCP (STREAM in
             * net_support.h's sense) if the listener is a TCP one weft knows. */
            weft__fd_epoch_open(c, (weft__fd_epoch(fd) & WEFT__EPOCH_STREAM) != 0);
            a.len = len;
            weft__net_nodelay(c, len ? a.u.sa.sa_family : AF_UNIX);
            if (peer)
                *peer = a;
            return c;
        }
        switch (errno) {
        case EINTR:
        case ECONNABORTED: /* reset before we took it: take the next */
        case EPROTO:
            continue;
        case EAGAIN:
#if EWOULDBLOCK != EAGAIN
        case EWOULDBLOCK:
#endif
            if ((r = weft__net_wait(&op, WEFT_IO_READ)) != 0)
                return r;
            continue;
        default:
            return -errno;
        }
    }
}

int weft_net_accept(int fd, weft_addr_t *peer)
{
    return weft_net_accept_until(fd, peer, WEFT_FOREVER);
}

int weft_net_connect_until(const weft_addr_t *addr, weft_time_t deadline)
{
    if (!addr_ok(addr) || deadline < 0)
        return -EINVAL;
    int fam = addr->u.sa.sa_family;
    /* Check the context before making anything: nothing to undo then. */
    struct weft__net_op op;
    int r = weft__net_begin(&op, 0, deadline);
    if (r)
        return r;
    int fd = socket(fam, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    weft__fd_epoch_open(fd, fam != AF_UNIX); /* a new file under this number, owned */
    op.fd = fd;
    op.gen = op.co ? weft__net_gen(fd) : 0;
    weft__net_nodelay(fd, fam);
    for (;;) {
        if (connect(fd, &addr->u.sa, addr->len) == 0)
            return fd;
        if (errno == EINTR || errno == EINPROGRESS)
            break; /* the handshake goes on: wait for it below */
        if (fam == AF_UNIX && errno == EAGAIN) {
            /* The listener's backlog is full. A Unix socket reports no
             * readiness for that: look again shortly. */
            if ((r = weft__net_pause(&op)) != 0)
                goto fail;
            continue;
        }
        r = -errno;
        goto fail;
    }
    for (;;) {
        if ((r = weft__net_wait(&op, WEFT_IO_WRITE)) != 0)
            goto fail;
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
            r = -errno;
            goto fail;
        }
        if (err == 0)
            return fd;
        if (err != EINPROGRESS && err != EALREADY) {
            r = -err;
            goto fail;
        }
    }
fail:
    /* -EPIPE from the wait means somebody weft_net_close'd our fd (it was
     * never handed out, but a stray close can still hit its number): it is
     * not ours to close again. */
    if (r != -EPIPE || !op.co || weft__net_gen(fd) == op.gen)
        abandon(fd);
    return r;
}

int weft_net_connect(const weft_addr_t *addr)
{
    return weft_net_connect_until(addr, WEFT_FOREVER);
}

int weft_net_udp(const weft_addr_t *addr)
{
    if (!addr_ok(addr))
        return -EINVAL;
    int fd = socket(addr->u.sa.sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    weft__fd_epoch_open(fd, false); /* a new file under this number, owned */
    if (bind(fd, &addr->u.sa, addr->len) != 0) {
        int e = -errno;
        abandon(fd);
        return e;
    }
    return fd;
}

int weft_net_shutdown(int fd, int how)
{
    if (fd < 0 || (how != SHUT_RD && how != SHUT_WR && how != SHUT_RDWR))
        return -EINVAL;
    return shutdown(fd, how) == 0 ? 0 : -errno;
}

/* weft_net_close handed to the loop that waits on the fd: runs there, as a
 * call_soon function, and closes on that loop's thread. */
static void close_on_owner(void *arg)
{
    (void)weft_net_close((int)(intptr_t)arg);
}

int weft_net_close(int fd)
{
    if (fd < 0)
        return -EINVAL;
    /* Another running loop waited on fd last: the close is its to do (it
     * wakes its waiters and drops its registration before the number can
     * be reused), at its next turn. */
    if (weft__loop_close_elsewhere(fd, close_on_owner, (void *)(intptr_t)fd) == 0)
        return 0;
    if (weft_loop_current()) {
        /* On the loop's thread: make every call of this loop on fd fail
         * with -EPIPE (generation), wake the ones that wait, and forget fd
         * in the backend before the number can be reused. */
        weft__net_gen_bump(fd);
        weft__loop_fd_forget(fd);
    }
    /* On any thread: no longer owned; a loop that keeps fd registered (an
     * owned wait, maybe on another thread, which forget above cannot
     * reach) registers again at its next wait on this number
     * (net_support.h: epochs). */
    weft__fd_epoch_close(fd);
    weft__fd_owner_reset(fd);
    /* Linux releases the fd even when close reports EINTR: never retry. */
    if (close(fd) != 0 && errno != EINTR)
        return -errno;
    return 0;
}

int weft_net_adopt(int fd)
{
    if (fd < 0)
        return -EINVAL;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return -errno;
    if (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0)
        return -errno;
    int fdfl = fcntl(fd, F_GETFD);
    if (fdfl < 0 || fcntl(fd, F_SETFD, fdfl | FD_CLOEXEC) != 0)
        return -errno;
    /* STREAM (net_support.h) means TCP: a short read empties the queue.
     * Not any IP stream socket: an SCTP one-to-one socket is one too, and
     * its reads stop at message boundaries. */
    int type = 0, dom = 0, proto = 0;
    socklen_t tl = sizeof type, dl = sizeof dom, pl = sizeof proto;
    bool stream = getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) == 0 && type == SOCK_STREAM &&
                  getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &dom, &dl) == 0 &&
                  (dom == AF_INET || dom == AF_INET6) &&
                  getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &pl) == 0 &&
                  proto == IPPROTO_TCP;
    weft__fd_epoch_open(fd, stream); /* owned from now on (maybe a new file to the loops) */
    return 0;
}
