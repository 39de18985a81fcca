/*
 * test_net_dgram.c - UDP round trips (IPv4 and, where the kernel has it,
 * IPv6 loopback), a passing UDP error that must not make waits spin, Unix stream sockets (abstract and path), a Unix datagram
 * round trip, a Unix datagram to a full receiver (no spinning), name resolution of "localhost" (on the pool, with a
 * deadline, from a coroutine and from a thread), address formatting, and
 * fd counts. Every loop test runs on every backend.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <weft.h>

#include "net/internal.h" /* weft__net_resolve_drain */
#include "net_util.h"

/* ---- UDP --------------------------------------------------------------------- */

struct udp {
    int srv;
    weft_addr_t addr;
    long clients, msgs;
    uint64_t echoed, verified;
    int stop;
};
static struct udp *U;

static int udp_server(void *arg, void **result)
{
    (void)arg;
    (void)result;
    unsigned char buf[1500];
    for (;;) {
        weft_addr_t from;
        ssize_t k = weft_net_recvfrom(U->srv, buf, sizeof buf, &from);
        if (k < 0)
            return k == -EPIPE ? 0 : (int)k;
        CHECK_INT(weft_net_sendto(U->srv, buf, (size_t)k, &from), ==, k);
        U->echoed++;
    }
}

static int udp_client(void *arg, void **result)
{
    (void)result;
    long id = (long)(intptr_t)arg;
    weft_addr_t any;
    weft_addr_ip(&any, U->addr.u.sa.sa_family == AF_INET6 ? "::1" : "127.0.0.1", 0);
    int fd = weft_net_udp(&any);
    CHECK_INT(fd, >=, 0);
    if (fd < 0)
        return fd;
    unsigned char out[1200], in[1500];
    for (long m = 0; m < U->msgs; m++) {
        size_t n = 1 + (size_t)((id * 31 + m * 17) % 1200);
        for (size_t i = 0; i < n; i++)
            out[i] = net_pat((uint32_t)id, (uint64_t)(m * 1200) + i);
        CHECK_INT(weft_net_sendto(fd, out, n, &U->addr), ==, (long long)n);
        weft_addr_t from;
        ssize_t k = weft_net_recvfrom_until(fd, in, sizeof in, &from, weft_deadline_in(10));
        CHECK_INT(k, ==, (long long)n);
        if (k == (ssize_t)n && memcmp(in, out, n) == 0)
            U->verified++;
        CHECK_INT(weft_addr_port(&from), ==, weft_addr_port(&U->addr));
    }
    weft_net_close(fd);
    return 0;
}

static int udp_main(void *arg, void **result)
{
    (void)result;
    const char *ip = arg;
    struct udp u = {.clients = check_iters("NET_UDP_CLIENTS", 20),
                    .msgs = check_iters("NET_UDP_MSGS", 50)};
    U = &u;
    weft_addr_t a;
    CHECK_OK(weft_addr_ip(&a, ip, 0));
    u.srv = weft_net_udp(&a);
    CHECK_INT(u.srv, >=, 0);
    CHECK_OK(weft_net_local_addr(u.srv, &u.addr));
    CHECK_INT(weft_addr_port(&u.addr), >, 0);
    weft_task_t *srv;
    CHECK_OK(weft_co_spawn(&srv, udp_server, NULL, "udp-server", 0));
    weft_co_group_t *g;
    CHECK_OK(weft_co_group_create(&g));
    for (long i = 0; i < u.clients; i++)
        weft_co_group_spawn(g, NULL, udp_client, (void *)(intptr_t)i, "udp-client", 64 * 1024);
    CHECK_OK(weft_co_group_wait(g));
    weft_co_group_free(g);
    /* Nothing is lost on loopback with one datagram in flight per client. */
    CHECK_U64(u.verified, ==, (uint64_t)(u.clients * u.msgs));
    CHECK_U64(u.echoed, ==, (uint64_t)(u.clients * u.msgs));
    /* The server coroutine reads u.srv: a second reader is refused. */
    char c;
    CHECK_RC(weft_net_recvfrom_until(u.srv, &c, 1, NULL, weft_deadline_in(0.01)), -EBUSY);
    /* A recvfrom with nothing coming times out, never early. */
    int q = weft_net_udp(&a);
    weft_time_t t0 = weft_now();
    CHECK_RC(weft_net_recvfrom_until(q, &c, 1, NULL, t0 + 10000000), -ETIMEDOUT);
    CHECK(weft_now() - t0 >= 10000000);
    weft_net_close(q);
    CHECK_OK(weft_net_close(u.srv)); /* wakes the server's recvfrom: -EPIPE */
    CHECK_OK(weft_co_await(srv, NULL));
    weft_task_release(srv);
    return 0;
}

static bool have_ipv6_loopback(void)
{
    weft_addr_t a;
    weft_addr_ip(&a, "::1", 0);
    int fd = weft_net_udp(&a);
    if (fd < 0)
        return false;
    weft_net_close(fd);
    return true;
}

static void test_udp(void)
{
    int fds = check_fd_count();
    net_each_backend(udp_main, "127.0.0.1");
    if (have_ipv6_loopback())
        net_each_backend(udp_main, "::1");
    else
        fprintf(stderr, "  (no IPv6 loopback here: ::1 skipped)\n");
    CHECK_INT(check_fd_count(), ==, fds);
}

/* A connected UDP socket whose peer port is closed: the ICMP "port
 * unreachable" sets an error (EPOLLERR without a hang-up) that the next
 * recv returns and clears. The loop used to keep it as a hang-up: every
 * later wait on the socket was reported at once, a wait that spun. */
static int icmp_sender(void *arg, void **result)
{
    (void)result;
    return (int)weft_net_sendto((int)(intptr_t)arg, "x", 1, NULL) == 1 ? 0 : -EIO;
}

static int udp_error_main(void *arg, void **result)
{
    (void)arg;
    (void)result;
    weft_addr_t la, gone;
    weft_addr_ip(&la, "127.0.0.1", 0);
    weft_addr_ip(&gone, "127.0.0.1", 0);
    int a = weft_net_udp(&la), b = weft_net_udp(&gone);
    CHECK(a >= 0 && b >= 0);
    CHECK_OK(weft_net_local_addr(b, &gone));
    CHECK_OK(weft_net_close(b)); /* nobody on that port now */
    CHECK(connect(a, &gone.u.sa, gone.len) == 0);
    weft_task_t *t;
    CHECK_OK(weft_co_spawn(&t, icmp_sender, (void *)(intptr_t)a, "sender", 0));
    char buf[8];
    /* The receiver waits first (the sender runs when it suspends). */
    CHECK_RC(weft_net_recvfrom_until(a, buf, sizeof buf, NULL, weft_deadline_in(10)),
             -ECONNREFUSED);
    CHECK_OK(weft_co_await(t, NULL));
    weft_task_release(t);
    weft_loop_stats_t s0, s1;
    CHECK_OK(weft_loop_stats(weft_loop_current(), &s0));
    CHECK_RC(weft_net_recvfrom_until(a, buf, sizeof buf, NULL, weft_deadline_in(0.1)),
             -ETIMEDOUT);
    CHECK_OK(weft_loop_stats(weft_loop_current(), &s1));
    CHECK_U64(s1.io_waits - s0.io_waits, <=, 2); /* waited, did not spin */
    CHECK_OK(weft_net_close(a));
    return 0;
}

static void test_udp_error_passes(void)
{
    int fds = check_fd_count();
    net_each_backend(udp_error_main, NULL);
    CHECK_INT(check_fd_count(), ==, fds);
}

/* A Unix datagram sent to an address whose receiver's queue is full: the
 * sender polls writable all the same (the kernel ties only connected
 * senders to the receiver's queue), so waiting for writability returned at
 * once, again and again. The send now looks again every millisecond. */
struct ux_full {
    int r;
    int drained;
};
static int ux_drainer(void *arg, void **result)
{
    (void)result;
    struct ux_full *u = arg;
    for (int i = 0; i < 50; i++) /* turns in which a spinning sender would wait */
        weft_co_yield();
    char b[16];
    while (weft_net_recvfrom_until(u->r, b, sizeof b, NULL, 0) >= 0)
        u->drained++;
    return 0;
}

static int ux_full_main(void *arg, void **result)
{
    (void)arg;
    (void)result;
    weft_addr_t ra, s1a, s2a;
    char name[96];
    snprintf(name, sizeof name, "@weft-test-ux-full-r-%d", (int)getpid());
    CHECK_OK(weft_addr_unix(&ra, name));
    snprintf(name, sizeof name, "@weft-test-ux-full-s1-%d", (int)getpid());
    CHECK_OK(weft_addr_unix(&s1a, name));
    snprintf(name, sizeof name, "@weft-test-ux-full-s2-%d", (int)getpid());
    CHECK_OK(weft_addr_unix(&s2a, name));
    struct ux_full u = {weft_net_udp(&ra), 0};
    int s1 = weft_net_udp(&s1a), s2 = weft_net_udp(&s2a);
    CHECK(u.r >= 0 && s1 >= 0 && s2 >= 0);
    /* Fill the receiver: from s1 until it says EAGAIN, which may be s1's
     * own send buffer first (net.unix.max_dgram_qlen raised, as systemd
     * does: 512); then from more senders until s2 itself, whose buffer is
     * empty, is refused: only then is it the receiver that is full. */
    int n = 0, fill[8], nfill = 0;
    fill[nfill++] = s1;
    for (;;) {
        while (weft_net_sendto_until(fill[nfill - 1], "a", 1, &ra, 0) == 1)
            n++;
        if (weft_net_sendto_until(s2, "a", 1, &ra, 0) != 1)
            break; /* s2 refused: the receiver is full */
        n++;
        if (nfill == 8)
            break;
        weft_addr_t fa;
        snprintf(name, sizeof name, "@weft-test-ux-full-f%d-%d", nfill, (int)getpid());
        CHECK_OK(weft_addr_unix(&fa, name));
        fill[nfill] = weft_net_udp(&fa);
        CHECK(fill[nfill] >= 0);
        nfill++;
    }
    CHECK_INT(n, >, 0);
    CHECK_RC(weft_net_sendto_until(s2, "b", 1, &ra, 0), -ETIMEDOUT); /* full */
    weft_task_t *t;
    CHECK_OK(weft_co_spawn(&t, ux_drainer, &u, "drainer", 0));
    weft_loop_stats_t s0, s1s;
    CHECK_OK(weft_loop_stats(weft_loop_current(), &s0));
    CHECK_INT(weft_net_sendto_until(s2, "b", 1, &ra, weft_deadline_in(10)), ==, 1);
    CHECK_OK(weft_loop_stats(weft_loop_current(), &s1s));
    CHECK_U64(s1s.io_waits - s0.io_waits, <=, 2); /* no wait per turn */
    CHECK_OK(weft_co_await(t, NULL));
    weft_task_release(t);
    CHECK_INT(u.drained, ==, n);
    weft_net_close(u.r);
    for (int i = 0; i < nfill; i++)
        weft_net_close(fill[i]); /* s1 among them */
    weft_net_close(s2);
    return 0;
}

static void test_unix_dgram_full(void)
{
    int fds = check_fd_count();
    net_each_backend(ux_full_main, NULL);
    CHECK_INT(check_fd_count(), ==, fds);
}

/* ---- Unix stream sockets ---------------------------------------------------------- */

struct ux {
    weft_addr_t addr;
    int lfd;
    uint64_t bytes;
};

static int ux_conn(void *arg, void **result)
{
    (void)result;
    int fd = (int)(intptr_t)arg;
    char buf[1024];
    ssize_t k;
    while ((k = weft_net_read(fd, buf, sizeof buf)) > 0)
        CHECK_INT(weft_net_write_all(fd, buf, (size_t)k, NULL), ==, k);
    CHECK_INT(k, ==, 0);
    weft_net_close(fd);
    return 0;
}

static int ux_acceptor(void *arg, void **result)
{
    (void)result;
    struct ux *x = arg;
    for (;;) {
        weft_addr_t peer;
        int c = weft_net_accept(x->lfd, &peer);
        if (c < 0)
            return c == -EPIPE ? 0 : c;
        CHECK_INT(peer.u.sa.sa_family, ==, AF_UNIX);
        weft_co_spawn(NULL, ux_conn, (void *)(intptr_t)c, "ux-conn", 64 * 1024);
    }
}

static int ux_client(void *arg, void **result)
{
    (void)result;
    struct ux *x = arg;
    int fd = weft_net_connect_until(&x->addr, weft_deadline_in(10));
    CHECK_INT(fd, >=, 0);
    if (fd < 0)
        return fd;
    unsigned char out[5000], in[5000];
    for (int i = 0; i < 5000; i++)
        out[i] = net_pat((uint32_t)fd, (uint64_t)i);
    CHECK_INT(weft_net_write_all(fd, out, sizeof out, NULL), ==, 5000);
    CHECK_INT(weft_net_read_exact(fd, in, sizeof in, NULL), ==, 5000);
    CHECK(memcmp(in, out, sizeof in) == 0);
    x->bytes += sizeof in;
    weft_net_close(fd);
    return 0;
}

static int ux_main(void *arg, void **result)
{
    (void)result;
    const char *path = arg;
    struct ux x = {0};
    CHECK_OK(weft_addr_unix(&x.addr, path));
    x.lfd = weft_net_listen(&x.addr, 4); /* a small backlog: connects may wait */
    CHECK_INT(x.lfd, >=, 0);
    char text[128];
    CHECK_INT(weft_addr_format(&x.addr, text, sizeof text), >, 0);
    CHECK(strncmp(text, "unix:", 5) == 0 && strcmp(text + 5, path) == 0);
    weft_task_t *acc;
    CHECK_OK(weft_co_spawn(&acc, ux_acceptor, &x, "ux-acceptor", 0));
    long n = check_iters("NET_UNIX_CLIENTS", 50);
    weft_co_group_t *g;
    weft_co_group_create(&g);
    for (long i = 0; i < n; i++)
        weft_co_group_spawn(g, NULL, ux_client, &x, "ux-client", 64 * 1024);
    CHECK_OK(weft_co_group_wait(g));
    weft_co_group_free(g);
    CHECK_U64(x.bytes, ==, (uint64_t)n * 5000);
    /* Listening twice on the same name is refused. */
    CHECK_RC(weft_net_listen(&x.addr, 0), -EADDRINUSE);
    CHECK_OK(weft_net_close(x.lfd));
    CHECK_OK(weft_co_await(acc, NULL));
    weft_task_release(acc);
    /* Nobody listens any more: an abstract name is gone (-ECONNREFUSED), a
     * path's file stays but refuses. */
    CHECK_RC(weft_net_connect(&x.addr), -ECONNREFUSED);

    /* A Unix datagram round trip. */
    char dpath[64];
    snprintf(dpath, sizeof dpath, "@weft-test-dgram-%d", (int)getpid());
    weft_addr_t da;
    weft_addr_unix(&da, dpath);
    int d1 = weft_net_udp(&da);
    CHECK_INT(d1, >=, 0);
    weft_addr_t da2;
    snprintf(dpath, sizeof dpath, "@weft-test-dgram2-%d", (int)getpid());
    weft_addr_unix(&da2, dpath);
    int d2 = weft_net_udp(&da2);
    CHECK_INT(d2, >=, 0);
    CHECK_INT(weft_net_sendto(d2, "hello", 5, &da), ==, 5);
    char buf[16];
    weft_addr_t from;
    CHECK_INT(weft_net_recvfrom_until(d1, buf, sizeof buf, &from, weft_deadline_in(5)), ==, 5);
    CHECK(memcmp(buf, "hello", 5) == 0);
    weft_net_close(d1);
    weft_net_close(d2);
    return 0;
}

static void test_unix(void)
{
    int fds = check_fd_count();
    char name[64];
    snprintf(name, sizeof name, "@weft-test-%d", (int)getpid());
    net_each_backend(ux_main, name);
    /* A path in a private temporary directory. */
    char dir[] = "/tmp/weft-net-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[128];
    snprintf(path, sizeof path, "%s/sock", dir);
    /* Each backend run listens afresh: the file must go between runs. */
    const char *only = getenv("WEFT_BACKEND");
    for (size_t i = 0; i < sizeof NET_BACKENDS / sizeof NET_BACKENDS[0]; i++) {
        if (only && *only && strcmp(only, NET_BACKENDS[i]) != 0)
            continue;
        weft_loop_opts_t o = {.backend = NET_BACKENDS[i]};
        struct net_run_ r = {ux_main, path, NET_BACKENDS[i], 0};
        CHECK_OK(weft_loop_run(net_run_main_, &r, &o));
        unlink(path);
    }
    rmdir(dir);
    CHECK_INT(check_fd_count(), ==, fds);
}

/* ---- name resolution -------------------------------------------------------------- */

static bool is_loopback(const weft_addr_t *a)
{
    if (a->u.sa.sa_family == AF_INET)
        return (ntohl(a->u.in.sin_addr.s_addr) >> 24) == 127;
    if (a->u.sa.sa_family == AF_INET6)
        return memcmp(&a->u.in6.sin6_addr, &in6addr_loopback, sizeof in6addr_loopback) == 0;
    return false;
}

static void check_localhost(weft_addr_t *out, int n, int port)
{
    CHECK_INT(n, >=, 1);
    for (int i = 0; i < n; i++) {
        CHECK(is_loopback(&out[i]));
        CHECK_INT(weft_addr_port(&out[i]), ==, port);
    }
}

static int resolve_main(void *arg, void **result)
{
    (void)arg;
    (void)result;
    weft_addr_t out[8];
    int n = weft_net_resolve("localhost", 8080, SOCK_STREAM, out, 8);
    check_localhost(out, n, 8080);
    /* Listen on what localhost resolved to and connect through the name. */
    weft_addr_t la;
    n = weft_net_resolve_until("localhost", 0, 0, &la, 1, weft_deadline_in(10));
    CHECK_INT(n, ==, 1);
    int l = weft_net_listen(&la, 0);
    CHECK_INT(l, >=, 0);
    weft_addr_t bound;
    weft_net_local_addr(l, &bound);
    weft_addr_t ca;
    CHECK_INT(weft_net_resolve("localhost", weft_addr_port(&bound), 0, &ca, 1), ==, 1);
    int c = weft_net_connect(&ca);
    CHECK_INT(c, >=, 0);
    int s = weft_net_accept_until(l, NULL, weft_deadline_in(5));
    CHECK_INT(s, >=, 0);
    weft_net_close(s);
    weft_net_close(c);
    weft_net_close(l);
    /* Numeric addresses need no pool. */
    CHECK_INT(weft_net_resolve("127.0.0.1", 80, SOCK_DGRAM, out, 8), ==, 1);
    CHECK_INT(weft_net_resolve("::1", 80, 0, out, 8), ==, 1);
    char text[64];
    weft_addr_format(&out[0], text, sizeof text);
    CHECK(strcmp(text, "[::1]:80") == 0);
    /* A deadline already past: the lookup may or may not be done at once;
     * either way nothing leaks (the pool task finishes on its own). */
    for (int i = 0; i < 20; i++) {
        int r = weft_net_resolve_until("localhost", 1, 0, out, 8, weft_now());
        CHECK(r == -ETIMEDOUT || r >= 1);
    }
    /* Cancelled: -ECANCELED at once. */
    weft_co_scope_t sc;
    weft_co_scope_begin(&sc, 0); /* expired from the start */
    CHECK_RC(weft_net_resolve("localhost", 1, 0, out, 8), -ETIMEDOUT);
    CHECK_RC(weft_co_scope_end(&sc), -ETIMEDOUT);
    /* Bad input. */
    CHECK_RC(weft_net_resolve("", 1, 0, out, 8), -EINVAL);
    CHECK_RC(weft_net_resolve("localhost", 1, 0, NULL, 8), -EINVAL);
    CHECK_RC(weft_net_resolve("localhost", 1, 0, out, 0), -EINVAL);
    CHECK_RC(weft_net_resolve("localhost", 70000, 0, out, 8), -EINVAL);
    CHECK_RC(weft_net_resolve("localhost", 1, SOCK_RAW, out, 8), -EINVAL);
    CHECK_RC(weft_net_resolve_until("localhost", 1, 0, out, 8, -1), -EINVAL);
    return 0;
}

static void test_resolve(void)
{
    weft__net_resolve_drain();
    int fds = check_fd_count();
    net_each_backend(resolve_main, NULL);
    /* From a plain thread: without a deadline on the thread itself, with
     * one through the pool. */
    weft_addr_t out[4];
    check_localhost(out, weft_net_resolve("localhost", 443, 0, out, 4), 443);
    check_localhost(out, weft_net_resolve_until("localhost", 443, 0, out, 4, weft_deadline_in(10)),
                    443);
    /* The lookups given up on (the deadlines already past in resolve_main)
     * may still be running on the pool, holding a descriptor of
     * getaddrinfo's (/etc/hosts): that is no leak, and they end on their
     * own. Wait for them, then the count is exact. */
    weft__net_resolve_drain();
    CHECK_INT(check_fd_count(), ==, fds);
}

static void test_addr_format(void)
{
    weft_addr_t a;
    char buf[64];
    CHECK_OK(weft_addr_ip(&a, "127.0.0.1", 8080));
    CHECK_INT(weft_addr_format(&a, buf, sizeof buf), ==, 14);
    CHECK(strcmp(buf, "127.0.0.1:8080") == 0);
    CHECK_INT(weft_addr_port(&a), ==, 8080);
    /* Cut to size, still terminated. */
    CHECK_INT(weft_addr_format(&a, buf, 5), ==, 4);
    CHECK(strcmp(buf, "127.") == 0);
    CHECK_OK(weft_addr_unix(&a, "@abc"));
    weft_addr_format(&a, buf, sizeof buf);
    CHECK(strcmp(buf, "unix:@abc") == 0);
    CHECK_RC(weft_addr_port(&a), -EINVAL);
}

int main(void)
{
    RUN(test_addr_format);
    RUN(test_udp);
    RUN(test_udp_error_passes);
    RUN(test_unix);
    RUN(test_unix_dgram_full);
    RUN(test_resolve);
    return check_done();
}
