#define _GNU_SOURCE /* dup3 */
/*
 * test_net.c - TCP for coroutines (weft/net.h), on every loop backend:
 * echo with many concurrent clients (every byte exactly once, totals add
 * up), read_exact / write_all through tiny socket buffers (partial writes),
 * deadlines (never early; refused connects leave no fd), cancellation of a
 * coroutine blocked in accept and read (and at a call that could complete),
 * weft_net_close waking waiters (-EPIPE even when the number is reused),
 * one reader per fd (-EBUSY), the blocking fallback on plain threads,
 * shutdown waking another loop's acceptor, bad input, a socket that failed
 * to be made leaving nothing behind, and fd counts.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
#include <weft.h>

#include "net_util.h"

/* ---- echo: many concurrent clients ------------------------------------------- */

struct echo {
    int lfd;
    weft_addr_t addr;
    long clients, rounds;
    uint64_t server_bytes;  /* echoed by the server */
    uint64_t client_bytes;  /* sent and verified by the clients */
    uint64_t expected;
    int conns;              /* accepted */
    int handlers_done;
    int accept_rc;
};
static struct echo *E;

static int echo_conn(void *arg, void **result)
{
    (void)result;
    int fd = (int)(intptr_t)arg;
    char buf[2048];
    for (;;) {
        ssize_t k = weft_net_read(fd, buf, sizeof buf);
        if (k <= 0) {
            CHECK_INT(k, ==, 0);
            break;
        }
        CHECK_INT(weft_net_write_all(fd, buf, (size_t)k, NULL), ==, k);
        E->server_bytes += (uint64_t)k;
    }
    CHECK_OK(weft_net_close(fd));
    E->handlers_done++;
    return 0;
}

static int echo_acceptor(void *arg, void **result)
{
    (void)arg;
    (void)result;
    for (;;) {
        int c = weft_net_accept(E->lfd, NULL);
        if (c < 0) {
            E->accept_rc = c;
            return 0;
        }
        E->conns++;
        int r = weft_co_spawn(NULL, echo_conn, (void *)(intptr_t)c, "echo-conn", 64 * 1024);
        CHECK_OK(r);
        if (r)
            weft_net_close(c);
    }
}

static size_t msg_len(long id, long round)
{
    return 1 + (size_t)((id * 7919 + round * 104729) % 3000);
}

static int echo_client(void *arg, void **result)
{
    (void)result;
    long id = (long)(intptr_t)arg;
    int fd = weft_net_connect(&E->addr);
    CHECK_INT(fd, >=, 0);
    if (fd < 0)
        return fd;
    unsigned char out[3000], in[3000];
    uint64_t off = 0;
    for (long r = 0; r < E->rounds; r++) {
        size_t n = msg_len(id, r);
        for (size_t i = 0; i < n; i++)
            out[i] = net_pat((uint32_t)id, off + i);
        size_t done = 99;
        CHECK_INT(weft_net_write_all(fd, out, n, &done), ==, (long long)n);
        CHECK_U64(done, ==, n);
        CHECK_INT(weft_net_read_exact(fd, in, n, &done), ==, (long long)n);
        CHECK(memcmp(in, out, n) == 0);
        off += n;
        E->client_bytes += n;
    }
    /* write_eof, then the server's end of file. */
    CHECK_OK(weft_net_shutdown(fd, SHUT_WR));
    CHECK_INT(weft_net_read(fd, in, sizeof in), ==, 0);
    CHECK_OK(weft_net_close(fd));
    return 0;
}

static int echo_main(void *arg, void **result)
{
    (void)arg;
    (void)result;
    struct echo e = {.clients = check_iters("NET_CLIENTS", 100),
                     .rounds = check_iters("NET_ROUNDS", 20)};
    E = &e;
    for (long id = 0; id < e.clients; id++)
        for (long r = 0; r < e.rounds; r++)
            e.expected += msg_len(id, r);
    e.lfd = net_listen_loopback(&e.addr);
    CHECK_INT(e.lfd, >=, 0);
    weft_task_t *acc;
    CHECK_OK(weft_co_spawn(&acc, echo_acceptor, NULL, "acceptor", 0));
    weft_co_group_t *g;
    CHECK_OK(weft_co_group_create(&g));
    for (long id = 0; id < e.clients; id++)
        CHECK_OK(weft_co_group_spawn(g, NULL, echo_client, (void *)(intptr_t)id, "client",
                                     64 * 1024));
    CHECK_OK(weft_co_group_wait(g));
    CHECK_OK(weft_co_group_free(g));
    /* Every client saw its end of file, so every handler has closed: let
     * them return. */
    while (e.handlers_done < e.conns)
        weft_co_yield();
    /* The acceptor waits in accept: closing the listener wakes it (-EPIPE). */
    CHECK_OK(weft_net_close(e.lfd));
    CHECK_RC(weft_co_await(acc, NULL), 0);
    weft_task_release(acc);
    CHECK_RC(e.accept_rc, -EPIPE);
    CHECK_INT(e.conns, ==, e.clients);
    CHECK_INT(e.handlers_done, ==, e.clients);
    CHECK_U64(e.client_bytes, ==, e.expected);
    CHECK_U64(e.server_bytes, ==, e.expected);
    return 0;
}

static void test_echo_many_clients(void)
{
    int fds = check_fd_count();
    net_each_backend(echo_main, NULL);
    CHECK_INT(check_fd_count(), ==, fds);
}

/* ---- read_exact / write_all with partial writes -------------------------------- */

struct bulk {
    int fd;
    size_t n;
    size_t done;
    ssize_t rc;
    uint64_t reads;
};

static int bulk_writer(void *arg, void **result)
{
    (void)result;
    struct bulk *b = arg;
    unsigned char *buf = malloc(b->n);
    for (size_t i = 0; i < b->n; i++)
        buf[i] = net_pat(7, i);
    b->rc = weft_net_write_all(b->fd, buf, b->n, &b->done);
    free(buf);
    return 0;
}

static int bulk_main(void *arg, void **result)
{
    (void)arg;
    (void)result;
    int a, b;
    CHECK_OK(net_tcp_pair(&a, &b));
    int small = 4096;
    CHECK_OK(setsockopt(a, SOL_SOCKET, SO_SNDBUF, &small, sizeof small));
    /* (A tiny receive buffer would make TCP crawl: delayed ACKs and window
     * probes. The send side alone forces partial writes.) */
    int rcv = 64 * 1024;
    CHECK_OK(setsockopt(b, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv));
    weft_loop_stats_t s0, s1;
    weft_loop_stats(weft_loop_current(), &s0);

    struct bulk w = {.fd = a, .n = (size_t)check_iters("NET_BULK", 1 << 20)};
    weft_task_t *t;
    CHECK_OK(weft_co_spawn(&t, bulk_writer, &w, "writer", 0));
    /* Read it back in odd-sized exact pieces. */
    unsigned char buf[9001];
    size_t got = 0, piece = 1;
    while (got < w.n) {
        size_t want = piece < w.n - got ? piece : w.n - got;
        size_t done = 0;
        ssize_t k = weft_net_read_exact(b, buf, want, &done);
        CHECK_INT(k, ==, (long long)want);
        CHECK_U64(done, ==, want);
        if (k != (ssize_t)want)
            break;
        for (size_t i = 0; i < want; i++)
            if (buf[i] != net_pat(7, got + i)) {
                CHECK_FAIL_("byte %zu differs", got + i);
                break;
            }
        got += want;
        piece = piece * 3 % 9001 + 1;
    }
    CHECK_OK(weft_co_await(t, NULL));
    weft_task_release(t);
    CHECK_INT(w.rc, ==, (long long)w.n);
    CHECK_U64(w.done, ==, w.n);
    weft_loop_stats(weft_loop_current(), &s1);
    /* 1 MiB through a few KiB of buffer: the writer must have waited. */
    CHECK_U64(s1.io_waits - s0.io_waits, >=, 4);
    fprintf(stderr, "  %s: %llu fd waits for %zu bytes\n", net_backend_now,
            (unsigned long long)(s1.io_waits - s0.io_waits), w.n);

    /* read_exact at end of file: -EPIPE with what was read. */
    CHECK_INT(weft_net_write_all(a, "abc", 3, NULL), ==, 3);
    CHECK_OK(weft_net_shutdown(a, SHUT_WR));
    size_t done = 0;
    CHECK_RC(weft_net_read_exact(b, buf, 10, &done), -EPIPE);
    CHECK_U64(done, ==, 3);
    CHECK(memcmp(buf, "abc", 3) == 0);

    /* write_all to a peer that does not read: the deadline reports the
     * partial count. */
    int c, d;
    CHECK_OK(net_tcp_pair(&c, &d));
    CHECK_OK(setsockopt(c, SOL_SOCKET, SO_SNDBUF, &small, sizeof small));
    size_t big = 8u << 20;
    unsigned char *junk = calloc(1, big);
    done = 0;
    weft_time_t t0 = weft_now();
    CHECK_RC(weft_net_write_all_until(c, junk, big, &done, weft_deadline_in(0.05)), -ETIMEDOUT);
    CHECK(weft_now() - t0 >= 50000000);
    CHECK_U64(done, >, 0);
    CHECK_U64(done, <, big);
    free(junk);
    weft_net_close(c);
    weft_net_close(d);
    weft_net_close(a);
    weft_net_close(b);
    return 0;
}

static void test_exact_all_partial(void)
{
    int fds = check_fd_count();
    net_each_backend(bulk_main, NULL);
    CHECK_INT(check_fd_count(), ==, fds);
}

/* ---- deadlines --------------------------------------------------------------- */

static int deadline_main(void *arg, void **result)
{
    (void)arg;
    (void)result;
    int a, b;
    CHECK_OK(net_tcp_pair(&a, &b));
    char c;
    /* A read with nobody writing times out, never early. */
    weft_time_t t0 = weft_now();
    CHECK_RC(weft_net_read_until(b, &c, 1, t0 + 50000000), -ETIMEDOUT);
    CHECK(weft_now() - t0 >= 50000000);
    /* A deadline already past is a try: it fails without data... */
    CHECK_RC(weft_net_read_until(b, &c, 1, 0), -ETIMEDOUT);
    /* ... and succeeds with it. */
    CHECK_INT(weft_net_write(a, "x", 1), ==, 1);
    for (int i = 0; i < 1000; i++) { /* loopback delivery is not instant for the reader */
        ssize_t k = weft_net_read_until(b, &c, 1, 0);
        if (k != -ETIMEDOUT) {
            CHECK_INT(k, ==, 1);
            break;
        }
        weft_co_sleep(0.001);
    }
    CHECK_INT(c, ==, 'x');
    /* A deadline scope covers a read without a deadline of its own. */
    weft_co_scope_t s;
    CHECK_OK(weft_co_scope_begin(&s, weft_deadline_in(0.03)));
    CHECK_RC(weft_net_read(b, &c, 1), -ETIMEDOUT);
    CHECK_RC(weft_net_read(b, &c, 1), -ETIMEDOUT); /* level-triggered */
    CHECK_RC(weft_co_scope_end(&s), -ETIMEDOUT);

    /* Accept with nobody connecting. */
    weft_addr_t addr;
    int l = net_listen_loopback(&addr);
    CHECK_INT(l, >=, 0);
    t0 = weft_now();
    CHECK_RC(weft_net_accept_until(l, NULL, weft_deadline_in(0.02)), -ETIMEDOUT);
    CHECK(weft_now() - t0 >= 20000000);
    /* Connect to a port nobody listens on: refused, no fd left behind. */
    CHECK_OK(weft_net_close(l));
    int fds = check_fd_count();
    CHECK_RC(weft_net_connect_until(&addr, weft_deadline_in(2)), -ECONNREFUSED);
    CHECK_RC(weft_net_connect(&addr), -ECONNREFUSED);
    CHECK_INT(check_fd_count(), ==, fds);
    weft_net_close(a);
    weft_net_close(b);
    return 0;
}

static void test_deadlines(void)
{
    int fds = check_fd_count();
    net_each_backend(deadline_main, NULL);
    CHECK_INT(check_fd_count(), ==, fds);
}

/* ---- cancellation -------------------------------------------------------------- */

struct blocked {
    int fd;
    ssize_t rc;
    int started;
};

static int blocked_accept(void *arg, void **result)
{
    (void)result;
    struct blocked *b = arg;
    b->started = 1;
    b->rc = weft_net_accept(b->fd, NULL);
    return b->rc < 0 ? (int)b->rc : 0;
}

static int blocked_read(void *arg, void **result)
{
    (void)result;
    struct blocked *b = arg;
    char c;
    b->started = 1;
    b->rc = weft_net_read(b->fd, &c, 1);
    return b->rc < 0 ? (int)b->rc : 0;
}

/* Cancelled while asleep; then every net call, even one that could
 * complete at once, is -ECANCELED; under a shield it works. */
static int cancelled_then_io(void *arg, void **result)
{
    (void)result;
    struct blocked *b = arg;
    b->started = 1;
    CHECK_RC(weft_co_sleep(100), -ECANCELED);
    char c;
    CHECK_RC(weft_net_read(b->fd, &c, 1), -ECANCELED);
    CHECK_RC(weft_net_write(b->fd, "y", 1), -ECANCELED);
    weft_co_scope_t sh;
    CHECK_OK(weft_co_shield_begin(&sh));
    b->rc = weft_net_read(b->fd, &c, 1); /* a byte is waiting: 1 */
    CHECK_RC(weft_co_scope_end(&sh), -ECANCELED);
    return -ECANCELED;
}

static int cancel_main(void *arg, void **result)
{
    (void)arg;
    (void)result;
    weft_addr_t addr;
    int l = net_listen_loopback(&addr);
    int a, b;
    CHECK_OK(net_tcp_pair(&a, &b));
    struct blocked ba = {.fd = l}, br = {.fd = b}, bc = {.fd = a};
    weft_task_t *ta, *tr, *tc;
    CHECK_OK(weft_co_spawn(&ta, blocked_accept, &ba, "accepting", 0));
    CHECK_OK(weft_co_spawn(&tr, blocked_read, &br, "reading", 0));
    CHECK_OK(weft_co_spawn(&tc, cancelled_then_io, &bc, "cancelled-io", 0));
    while (!ba.started || !br.started || !bc.started)
        weft_co_yield();
    weft_co_sleep(0.01); /* they are waiting in the kernel's readiness now */
    CHECK(!weft_task_done(ta) && !weft_task_done(tr));
    CHECK_INT(weft_net_write(b, "z", 1), ==, 1); /* for cancelled_then_io's shielded read */
    CHECK_OK(weft_task_cancel(ta));
    CHECK_OK(weft_task_cancel(tr));
    CHECK_OK(weft_task_cancel(tc));
    CHECK_RC(weft_co_await(ta, NULL), -ECANCELED);
    CHECK_RC(weft_co_await(tr, NULL), -ECANCELED);
    CHECK_RC(weft_co_await(tc, NULL), -ECANCELED);
    CHECK_RC(ba.rc, -ECANCELED);
    CHECK_RC(br.rc, -ECANCELED);
    CHECK_INT(bc.rc, ==, 1);
    weft_task_release(ta);
    weft_task_release(tr);
    weft_task_release(tc);
    /* The fds are still usable after the cancelled waits. */
    CHECK_INT(weft_net_write(a, "q", 1), ==, 1);
    char c = 0;
    CHECK_INT(weft_net_read_until(b, &c, 1, weft_deadline_in(5)), ==, 1);
    CHECK_INT(c, ==, 'q');
    weft_net_close(l);
    weft_net_close(a);
    weft_net_close(b);
    return 0;
}

static void test_cancel_blocked(void)
{
    int fds = check_fd_count();
    net_each_backend(cancel_main, NULL);
    CHECK_INT(check_fd_count(), ==, fds);
}

/* ---- closing an fd that coroutines wait on --------------------------------------- */

static int raw_wait(void *arg, void **result)
{
    (void)result;
    struct blocked *b = arg;
    b->started = 1;
    b->rc = weft_co_wait_fd(b->fd, WEFT_IO_READ, WEFT_FOREVER);
    return 0;
}

static int close_main(void *arg, void **result)
{
    (void)arg;
    (void)result;
    int a, b;
    CHECK_OK(net_tcp_pair(&a, &b));
    struct blocked br = {.fd = b};
    weft_task_t *tr;
    CHECK_OK(weft_co_spawn(&tr, blocked_read, &br, "reader", 0));
    while (!br.started)
        weft_co_yield();
    weft_co_yield();
    CHECK_OK(weft_net_close(b));
    /* Reuse the number at once, and make the new fd readable: the woken
     * reader must not read from it. */
    int sp[2];
    CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sp));
    if (sp[1] == b) { /* either end may have taken b's number */
        int t = sp[0];
        sp[0] = sp[1];
        sp[1] = t;
    }
    if (sp[0] != b) { /* a lower number was free: put it at b's */
        CHECK_INT(dup3(sp[0], b, O_CLOEXEC), ==, b);
        close(sp[0]);
        sp[0] = b;
    }
    CHECK_INT(weft_net_write(sp[1], "n", 1), ==, 1);
    CHECK_INT(weft_net_write(sp[0], "n", 1), ==, 1);
    CHECK_RC(weft_co_await(tr, NULL), -EPIPE);
    CHECK_RC(br.rc, -EPIPE);
    weft_task_release(tr);
    char c;
    CHECK_INT(weft_net_read(sp[0], &c, 1), ==, 1); /* still there */
    CHECK_INT(weft_net_read(sp[1], &c, 1), ==, 1);

    /* A plain weft_co_wait_fd waiter is woken with WEFT_IO_ERROR. */
    struct blocked bw = {.fd = sp[0]};
    CHECK_OK(weft_co_spawn(&tr, raw_wait, &bw, "raw-wait", 0));
    while (!bw.started)
        weft_co_yield();
    CHECK_OK(weft_net_close(sp[0]));
    CHECK_OK(weft_co_await(tr, NULL));
    CHECK_INT(bw.rc, ==, WEFT_IO_ERROR);
    weft_task_release(tr);
    CHECK_RC(weft_net_close(sp[0]), -EBADF); /* already closed */
    weft_net_close(sp[1]);

    /* One reader per fd: a second one is told -EBUSY. (a's peer b is
     * closed: a reads end of file; use a fresh pair.) */
    weft_net_close(a);
    CHECK_OK(net_tcp_pair(&a, &b));
    struct blocked b1 = {.fd = a};
    CHECK_OK(weft_co_spawn(&tr, blocked_read, &b1, "reader-1", 0));
    while (!b1.started)
        weft_co_yield();
    weft_co_yield();
    CHECK_RC(weft_net_read(a, &c, 1), -EBUSY);
    weft_task_cancel(tr);
    CHECK_RC(weft_co_await(tr, NULL), -ECANCELED);
    weft_task_release(tr);
    weft_net_close(a);
    weft_net_close(b);
    return 0;
}

static void test_close_wakes_waiters(void)
{
    int fds = check_fd_count();
    net_each_backend(close_main, NULL);
    CHECK_INT(check_fd_count(), ==, fds);
}

/* ---- plain threads, and two loops ------------------------------------------------ */

struct tsrv {
    int lfd;
    int accept_rc;
    uint64_t bytes;
};

static int tsrv_conn(void *arg, void **result)
{
    (void)result;
    int fd = (int)(intptr_t)arg;
    char buf[512];
    ssize_t k;
    while ((k = weft_net_read(fd, buf, sizeof buf)) > 0)
        weft_net_write_all(fd, buf, (size_t)k, NULL);
    weft_net_close(fd);
    return 0;
}

static int tsrv_main(void *arg, void **result)
{
    (void)result;
    struct tsrv *s = arg;
    for (;;) {
        int c = weft_net_accept(s->lfd, NULL);
        if (c < 0) {
            s->accept_rc = c;
            return 0;
        }
        weft_co_spawn(NULL, tsrv_conn, (void *)(intptr_t)c, "conn", 0);
    }
}

static void *tsrv_thread(void *arg)
{
    weft_loop_run(tsrv_main, arg, NULL);
    return NULL;
}

static void test_plain_thread(void)
{
    int fds = check_fd_count();
    /* A coroutine server on another thread's loop; this thread is a plain
     * client whose calls block it (poll). */
    struct tsrv s = {0};
    weft_addr_t addr;
    s.lfd = net_listen_loopback(&addr);
    CHECK_INT(s.lfd, >=, 0);
    pthread_t th;
    pthread_create(&th, NULL, tsrv_thread, &s);
    for (int i = 0; i < 5; i++) {
        int fd = weft_net_connect_until(&addr, weft_deadline_in(5));
        CHECK_INT(fd, >=, 0);
        char out[1000], in[1000];
        for (int j = 0; j < 1000; j++)
            out[j] = (char)net_pat((uint32_t)i, (uint64_t)j);
        CHECK_INT(weft_net_write_all_until(fd, out, sizeof out, NULL, weft_deadline_in(5)), ==,
                  1000);
        CHECK_INT(weft_net_read_exact_until(fd, in, sizeof in, NULL, weft_deadline_in(5)), ==,
                  1000);
        CHECK(memcmp(in, out, sizeof in) == 0);
        /* Nothing more is coming: a thread's read times out too. */
        weft_time_t t0 = weft_now();
        CHECK_RC(weft_net_read_until(fd, in, 1, t0 + 20000000), -ETIMEDOUT);
        CHECK(weft_now() - t0 >= 20000000);
        CHECK_OK(weft_net_close(fd));
    }
    /* Wake the other loop's acceptor from this thread with shutdown (a
     * close would be handed to that loop: test_loop_close_elsewhere.c). */
    CHECK_OK(weft_net_shutdown(s.lfd, SHUT_RDWR));
    pthread_join(th, NULL);
    CHECK_INT(s.accept_rc, <, 0);
    CHECK_OK(weft_net_close(s.lfd));
    CHECK_INT(check_fd_count(), ==, fds);
}

/* ---- bad input --------------------------------------------------------------------- */

struct perm {
    int fd;
    int r_read, r_accept, r_connect, r_resolve, r_close;
    weft_addr_t addr;
};

static void in_call_soon(void *arg)
{
    struct perm *p = arg;
    char c;
    weft_addr_t out;
    p->r_read = (int)weft_net_read(p->fd, &c, 1);
    p->r_accept = weft_net_accept(p->fd, NULL);
    p->r_connect = weft_net_connect(&p->addr);
    p->r_resolve = weft_net_resolve("localhost", 80, 0, &out, 1);
    p->r_close = weft_net_close(p->fd); /* works anywhere */
}

static int bad_main(void *arg, void **result)
{
    (void)arg;
    (void)result;
    char c;
    weft_addr_t a;
    CHECK_RC(weft_net_read(-1, &c, 1), -EINVAL);
    CHECK_RC(weft_net_write(-1, &c, 1), -EINVAL);
    CHECK_RC(weft_net_read_until(0, &c, 1, -1), -EINVAL);
    CHECK_RC(weft_net_read(0, NULL, 1), -EINVAL);
    CHECK_RC(weft_net_write(0, NULL, 1), -EINVAL);
    CHECK_RC(weft_net_read_exact(0, NULL, 1, NULL), -EINVAL);
    CHECK_RC(weft_net_write_all(0, NULL, 1, NULL), -EINVAL);
    CHECK_RC(weft_net_write_all_until(0, "x", 1, NULL, WEFT_DEADLINE_INVALID), -EINVAL);
    CHECK_RC(weft_net_accept(-5, NULL), -EINVAL);
    CHECK_RC(weft_net_accept_until(0, NULL, -3), -EINVAL);
    CHECK_RC(weft_net_connect(NULL), -EINVAL);
    CHECK_RC(weft_net_listen(NULL, 0), -EINVAL);
    CHECK_RC(weft_net_udp(NULL), -EINVAL);
    CHECK_RC(weft_net_close(-1), -EINVAL);
    CHECK_RC(weft_net_shutdown(-1, SHUT_RD), -EINVAL);
    CHECK_RC(weft_net_adopt(-1), -EINVAL);
    CHECK_RC(weft_net_local_addr(-1, &a), -EINVAL);
    CHECK_RC(weft_net_local_addr(0, NULL), -EINVAL);
    weft_addr_t zero;
    memset(&zero, 0, sizeof zero);
    CHECK_RC(weft_net_connect(&zero), -EINVAL);
    CHECK_RC(weft_net_listen(&zero, 0), -EINVAL);
    CHECK_RC(weft_addr_ip(&a, "localhost", 1), -EINVAL); /* numeric only */
    CHECK_RC(weft_addr_ip(&a, "127.0.0.1", 65536), -EINVAL);
    CHECK_RC(weft_addr_ip(&a, "127.0.0.1", -1), -EINVAL);
    CHECK_RC(weft_addr_ip(NULL, "127.0.0.1", 1), -EINVAL);
    CHECK_RC(weft_addr_ip(&a, NULL, 1), -EINVAL);
    CHECK_RC(weft_addr_unix(&a, ""), -EINVAL);
    char longp[200];
    memset(longp, 'p', sizeof longp - 1);
    longp[sizeof longp - 1] = 0;
    CHECK_RC(weft_addr_unix(&a, longp), -EINVAL);
    CHECK_RC(weft_addr_port(NULL), -EINVAL);
    char buf[8];
    CHECK_RC(weft_addr_format(NULL, buf, sizeof buf), -EINVAL);
    CHECK_RC(weft_addr_format(&zero, buf, sizeof buf), -EINVAL);

    /* A closed (but plausible) fd: the kernel's -EBADF; nothing breaks. */
    int a1, b1;
    CHECK_OK(net_tcp_pair(&a1, &b1));
    int dead = b1;
    CHECK_OK(weft_net_close(b1));
    CHECK_RC(weft_net_read(dead, &c, 1), -EBADF);
    CHECK_RC(weft_net_write(dead, &c, 1), -EBADF);
    CHECK_RC(weft_net_accept(dead, NULL), -EBADF);
    CHECK_RC(weft_net_close(dead), -EBADF);
    CHECK_RC(weft_net_shutdown(dead, SHUT_RDWR), -EBADF);
    CHECK_RC(weft_net_shutdown(a1, 42), -EINVAL);
    /* Accept on a socket that does not listen. */
    CHECK_RC(weft_net_accept(a1, NULL), -EINVAL);
    /* Writing to a peer that has gone: -EPIPE, never SIGPIPE. */
    ssize_t w = 0;
    for (int i = 0; i < 100 && w >= 0; i++) {
        w = weft_net_write(a1, "data", 4);
        weft_co_sleep(0.001);
    }
    CHECK(w == -EPIPE || w == -ECONNRESET);

    /* A call_soon function may not wait: -EPERM; close works there. */
    struct perm p = {.fd = a1};
    weft_addr_ip(&p.addr, "127.0.0.1", 9);
    p.r_read = 1;
    CHECK_OK(weft_loop_call_soon_threadsafe(weft_loop_current(), in_call_soon, &p));
    while (p.r_read == 1)
        weft_co_yield();
    CHECK_RC(p.r_read, -EPERM);
    CHECK_RC(p.r_accept, -EPERM);
    CHECK_RC(p.r_connect, -EPERM);
    CHECK_RC(p.r_resolve, -EPERM);
    CHECK_RC(p.r_close, 0);
    return 0;
}

static void test_bad_input(void)
{
    int fds = check_fd_count();
    net_each_backend(bad_main, NULL);
    CHECK_INT(check_fd_count(), ==, fds);
    /* On a plain thread too. */
    char c;
    CHECK_RC(weft_net_read(-1, &c, 1), -EINVAL);
    CHECK_RC(weft_net_read_until(0, &c, 1, -1), -EINVAL);
    CHECK_RC(weft_net_resolve(NULL, 1, 0, NULL, 1), -EINVAL);
}

/* ---- a socket that failed to be made leaves nothing behind -------------------- */

/* weft_net_listen and weft_net_udp (address in use) and weft_net_connect
 * (refused, after waiting for the handshake) close their socket on
 * failure. They used to close(2) it with its number still marked as
 * weft's own socket (and, after the connect's wait, registered in the
 * loop): a pipe that got the number next was taken for an owned socket
 * already registered, so a read on it never woke, or woke at every turn. */
static int pipe_writer(void *arg, void **result)
{
    (void)result;
    for (int i = 0; i < 100; i++) /* turns in which a wrongly woken reader spins */
        weft_co_yield();
    return write((int)(intptr_t)arg, "x", 1) == 1 ? 0 : -errno;
}

/* Two pipes in turn under the number the failed call left free; each
 * closed with close(2) (weft did not make them). */
static void read_two_pipes(int freed)
{
    for (int round = 0; round < 2; round++) {
        int p[2];
        CHECK_OK(pipe(p));
        CHECK_INT(p[0], ==, freed); /* under the number the failed call left */
        CHECK(fcntl(p[0], F_SETFL, O_NONBLOCK) == 0);
        weft_loop_stats_t a, b;
        CHECK_OK(weft_loop_stats(weft_loop_current(), &a));
        weft_task_t *w;
        CHECK_OK(weft_co_spawn(&w, pipe_writer, (void *)(intptr_t)p[1], "writer", 0));
        char c = 0;
        CHECK_INT(weft_net_read_until(p[0], &c, 1, weft_deadline_in(10)), ==, 1);
        CHECK_OK(weft_loop_stats(weft_loop_current(), &b));
        CHECK_U64(b.io_waits - a.io_waits, <=, 3); /* one wait, not one per turn */
        CHECK_OK(weft_co_await(w, NULL));
        weft_task_release(w);
        close(p[0]);
        close(p[1]);
    }
}

/* The number the next new fd gets (the lowest free one). */
static int lowest_free_fd(void)
{
    int fd = dup(0);
    if (fd >= 0)
        close(fd);
    return fd;
}

static int failed_main(void *arg, void **result)
{
    (void)arg;
    (void)result;
    weft_addr_t a;
    int l = net_listen_loopback(&a);
    CHECK(l >= 0);
    int next = lowest_free_fd(); /* the failing call's socket gets it */
    CHECK_RC(weft_net_listen(&a, 0), -EADDRINUSE);
    read_two_pipes(next);

    weft_addr_t u;
    weft_addr_ip(&u, "127.0.0.1", 0);
    int ufd = weft_net_udp(&u);
    CHECK(ufd >= 0);
    CHECK_OK(weft_net_local_addr(ufd, &u));
    next = lowest_free_fd();
    CHECK_RC(weft_net_udp(&u), -EADDRINUSE);
    read_two_pipes(next);
    CHECK_OK(weft_net_close(ufd));

    /* Nobody listens on l's port once l is closed: refused. */
    CHECK_OK(weft_net_close(l));
    next = lowest_free_fd();
    CHECK_RC(weft_net_connect_until(&a, weft_deadline_in(10)), -ECONNREFUSED);
    read_two_pipes(next);
    return 0;
}

static void test_failed_socket_forgotten(void)
{
    int fds = check_fd_count();
    net_each_backend(failed_main, NULL);
    CHECK_INT(check_fd_count(), ==, fds);
}

int main(void)
{
    RUN(test_echo_many_clients);
    RUN(test_exact_all_partial);
    RUN(test_deadlines);
    RUN(test_cancel_blocked);
    RUN(test_close_wakes_waiters);
    RUN(test_plain_thread);
    RUN(test_bad_input);
    RUN(test_failed_socket_forgotten);
    return check_done();
}
