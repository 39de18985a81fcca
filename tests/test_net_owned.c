/*
 * test_net_owned.c - the sockets of weft/net.h stay registered in the
 * loop's backend between waits (owned registrations: epoll EPOLLET,
 * io_uring multishot poll; src/loop/backend.h). What that must not break:
 * a reader and a writer waiting on one socket at once, readiness that
 * arrives while nobody waits (not lost, and the loop does not spin on it),
 * weft_co_wait_fd called directly on such a socket (level: data already
 * there is reported at once), a wait given up (deadline) and the socket
 * used again, and a socket closed on another thread whose number comes
 * back as a new connection, and a writer left waiting after the peer's
 * FIN (no spinning). Runs on every backend; fd counts before and
 * after.
 */
#define _GNU_SOURCE /* pipe2 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <weft.h>

#include "net_util.h"

/* ---- full duplex: a reader and a writer on each end of one connection ------------ */

struct pump {
    int fd;
    uint32_t id;   /* pattern of what this side writes */
    uint32_t peer; /* pattern of what it reads */
    size_t total;
    size_t moved;
    int rc;
};

static int pump_writer(void *arg, void **result)
{
    (void)result;
    struct pump *p = arg;
    unsigned char buf[3001];
    size_t off = 0;
    while (off < p->total) {
        size_t n = p->total - off < sizeof buf ? p->total - off : sizeof buf;
        for (size_t i = 0; i < n; i++)
            buf[i] = net_pat(p->id, off + i);
        size_t done = 0;
        ssize_t r = weft_net_write_all(p->fd, buf, n, &done);
        if (r < 0) {
            p->rc = (int)r;
            return 0;
        }
        off += n;
    }
    p->moved = off;
    return 0;
}

static int pump_reader(void *arg, void **result)
{
    (void)result;
    struct pump *p = arg;
    unsigned char buf[1733];
    size_t off = 0;
    while (off < p->total) {
        ssize_t r = weft_net_read(p->fd, buf, sizeof buf);
        if (r <= 0) {
            p->rc = r == 0 ? -EPIPE : (int)r;
            return 0;
        }
        for (ssize_t i = 0; i < r; i++)
            if (buf[i] != net_pat(p->peer, off + (size_t)i)) {
                p->rc = -EILSEQ;
                return 0;
            }
        off += (size_t)r;
    }
    p->moved = off;
    return 0;
}

static int duplex_main(void *arg, void **result)
{
    (void)arg;
    (void)result;
    /* A Unix stream pair (TCP with tiny windows crawls on delayed ACKs),
     * adopted as a caller's own sockets are. Small buffers: both writers
     * block often, while both readers wait on the same sockets. */
    int sv[2];
    CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
    int a = sv[0], b = sv[1];
    CHECK_OK(weft_net_adopt(a));
    CHECK_OK(weft_net_adopt(b));
    int small = 4096;
    CHECK_OK(setsockopt(a, SOL_SOCKET, SO_SNDBUF, &small, sizeof small));
    CHECK_OK(setsockopt(b, SOL_SOCKET, SO_SNDBUF, &small, sizeof small));
    size_t total = (size_t)check_iters("WEFT_BYTES", 1 << 20);
    struct pump p[4] = {
        {.fd = a, .id = 1, .total = total},          /* a writes 1 */
        {.fd = a, .peer = 2, .total = total},        /* a reads 2 */
        {.fd = b, .id = 2, .total = total},          /* b writes 2 */
        {.fd = b, .peer = 1, .total = total},        /* b reads 1 */
    };
    weft_task_t *t[4];
    CHECK_OK(weft_co_spawn(&t[0], pump_writer, &p[0], "a-w", 0));
    CHECK_OK(weft_co_spawn(&t[1], pump_reader, &p[1], "a-r", 0));
    CHECK_OK(weft_co_spawn(&t[2], pump_writer, &p[2], "b-w", 0));
    CHECK_OK(weft_co_spawn(&t[3], pump_reader, &p[3], "b-r", 0));
    for (int i = 0; i < 4; i++) {
        CHECK_OK(weft_co_await(t[i], NULL));
        weft_task_release(t[i]);
        CHECK_RC(p[i].rc, 0);
        CHECK_INT(p[i].moved, ==, total);
    }
    weft_loop_stats_t st;
    CHECK_OK(weft_loop_stats(weft_loop_current(), &st));
    CHECK_INT(st.io_waits, >, 0); /* the sides did wait */
    weft_net_close(a);
    weft_net_close(b);
    return 0;
}

static void test_duplex_one_socket(void)
{
    int fds = check_fd_count();
    net_each_backend(duplex_main, NULL);
    CHECK_INT(check_fd_count(), ==, fds);
}

/* ---- readiness while nobody waits; direct waits; given-up waits ------------------- */

static int idle_main(void *arg, void **result)
{
    (void)arg;
    (void)result;
    int a, b;
    CHECK_OK(net_tcp_pair(&a, &b));
    char c[16];
    int rounds = (int)check_iters("WEFT_ROUNDS", 20);
    for (int i = 0; i < rounds; i++) {
        /* A wait that gives up (the registration stays), then data that
         * comes while nobody waits: the loop must not spin on it, and the
         * next read gets it at once. */
        CHECK_RC(weft_net_read_until(a, c, sizeof c, weft_deadline_in(0.002)), -ETIMEDOUT);
        CHECK_INT(weft_net_write(b, "ab", 2), ==, 2);
        weft_loop_stats_t s0, s1;
        CHECK_OK(weft_loop_stats(weft_loop_current(), &s0));
        CHECK_OK(weft_co_sleep(0.02));
        CHECK_OK(weft_loop_stats(weft_loop_current(), &s1));
        /* A sleep is one poll (or a few: early timeouts, wake-ups); a loop
         * spinning on level-triggered readiness would make thousands. */
        CHECK_INT(s1.polls - s0.polls, <, 50);
        /* weft_co_wait_fd called directly: the data is there: at once. */
        int r = weft_co_wait_fd(a, WEFT_IO_READ, weft_deadline_in(5));
        CHECK_INT(r & WEFT_IO_READ, ==, WEFT_IO_READ);
        CHECK_INT(weft_net_read(a, c, sizeof c), ==, 2);
        CHECK(c[0] == 'a' && c[1] == 'b');
        /* And a read that waits is woken by the next write. */
        CHECK_INT(weft_net_write(b, "c", 1), ==, 1);
        CHECK_INT(weft_net_read_until(a, c, sizeof c, weft_deadline_in(5)), ==, 1);
        CHECK_RC(weft_net_read_until(a, c, sizeof c, 0), -ETIMEDOUT); /* empty now */
    }
    weft_net_close(a);
    weft_net_close(b);
    return 0;
}

static void test_idle_readiness(void)
{
    int fds = check_fd_count();
    net_each_backend(idle_main, NULL);
    CHECK_INT(check_fd_count(), ==, fds);
}

/* A reader woken by a later write, written from another coroutine while the
 * reader waits (the plain keep-alive pattern, many rounds). */
struct pingpong {
    int fd;
    long rounds;
    int rc;
};

static int pong(void *arg, void **result)
{
    (void)result;
    struct pingpong *p = arg;
    char c;
    for (long i = 0; i < p->rounds; i++) {
        ssize_t r = weft_net_read(p->fd, &c, 1);
        if (r != 1 || c != (char)i) {
            p->rc = r < 0 ? (int)r : -EILSEQ;
            return 0;
        }
        if (weft_net_write(p->fd, &c, 1) != 1) {
            p->rc = -EIO;
            return 0;
        }
    }
    return 0;
}

static int pingpong_main(void *arg, void **result)
{
    (void)arg;
    (void)result;
    int a, b;
    CHECK_OK(net_tcp_pair(&a, &b));
    struct pingpong p = {.fd = b, .rounds = check_iters("WEFT_ROUNDS", 3000)};
    weft_task_t *t;
    CHECK_OK(weft_co_spawn(&t, pong, &p, "pong", 0));
    for (long i = 0; i < p.rounds; i++) {
        char c = (char)i, d;
        CHECK_INT(weft_net_write(a, &c, 1), ==, 1);
        CHECK_INT(weft_net_read(a, &d, 1), ==, 1);
        CHECK_INT(d, ==, c);
    }
    CHECK_OK(weft_co_await(t, NULL));
    weft_task_release(t);
    CHECK_RC(p.rc, 0);
    weft_net_close(a);
    weft_net_close(b);
    return 0;
}

static void test_pingpong(void)
{
    int fds = check_fd_count();
    net_each_backend(pingpong_main, NULL);
    CHECK_INT(check_fd_count(), ==, fds);
}

/* ---- closed on another thread, number reused ------------------------------------- */

struct closer {
    int fd;
    int note; /* write end of a pipe: one byte when closed */
};

static void *close_on_thread(void *arg)
{
    struct closer *c = arg;
    weft_net_close(c->fd); /* no loop here: only the fd's epoch moves */
    char x = 1;
    (void)!write(c->note, &x, 1);
    return NULL;
}

static int reuse_main(void *arg, void **result)
{
    (void)arg;
    (void)result;
    weft_addr_t addr;
    int l = net_listen_loopback(&addr);
    CHECK_INT(l, >=, 0);
    int note[2];
    CHECK_OK(pipe(note));
    CHECK_OK(weft_net_adopt(note[0]));
    int rounds = (int)check_iters("WEFT_ROUNDS", 10);
    for (int i = 0; i < rounds; i++) {
        int cl = weft_net_connect(&addr);
        CHECK_INT(cl, >=, 0);
        int s = weft_net_accept(l, NULL);
        CHECK_INT(s, >=, 0);
        /* s waits once on this loop: its registration stays. */
        char c[8];
        CHECK_RC(weft_net_read_until(s, c, sizeof c, weft_deadline_in(0.002)), -ETIMEDOUT);
        /* Another thread closes it (with no loop there, this loop is not
         * told; io_uring's request must not keep the socket open). */
        struct closer k = {s, note[1]};
        pthread_t th;
        CHECK_OK(pthread_create(&th, NULL, close_on_thread, &k));
        CHECK_INT(weft_net_read(note[0], c, 1), ==, 1);
        CHECK_OK(pthread_join(th, NULL));
        /* The client sees the close: nothing holds the socket open. */
        CHECK_INT(weft_net_read_until(cl, c, sizeof c, weft_deadline_in(5)), ==, 0);
        weft_net_close(cl);
        /* A new connection takes the number; waits on it must work. */
        int cl2 = weft_net_connect(&addr);
        CHECK_INT(cl2, >=, 0);
        int s2 = weft_net_accept(l, NULL);
        CHECK_INT(s2, >=, 0);
        CHECK_INT(s2, ==, s);
        CHECK_RC(weft_net_read_until(s2, c, sizeof c, 0), -ETIMEDOUT); /* EAGAIN seen */
        weft_task_t *t;
        struct pingpong p = {.fd = s2, .rounds = 3};
        CHECK_OK(weft_co_spawn(&t, pong, &p, "pong", 0));
        for (int j = 0; j < 3; j++) {
            char x = (char)j, y;
            weft_co_sleep(0.001); /* the pong waits first */
            CHECK_INT(weft_net_write(cl2, &x, 1), ==, 1);
            CHECK_INT(weft_net_read_until(cl2, &y, 1, weft_deadline_in(5)), ==, 1);
            CHECK_INT(y, ==, x);
        }
        CHECK_OK(weft_co_await(t, NULL));
        weft_task_release(t);
        CHECK_RC(p.rc, 0);
        weft_net_close(s2);
        weft_net_close(cl2);
    }
    weft_net_close(note[0]);
    close(note[1]);
    weft_net_close(l);
    return 0;
}

static void test_closed_elsewhere_reused(void)
{
    int fds = check_fd_count();
    net_each_backend(reuse_main, NULL);
    CHECK_INT(check_fd_count(), ==, fds);
}

/* ---- fds weft_net did not make: one-shot, close(2) allowed between waits ---------- */

struct late_writer {
    int fd;
    char byte;
};

static int write_later(void *arg, void **result)
{
    (void)result;
    struct late_writer *w = arg;
    weft_co_sleep(0.002);
    return weft_net_write(w->fd, &w->byte, 1) == 1 ? 0 : -EIO;
}

static int foreign_main(void *arg, void **result)
{
    (void)arg;
    (void)result;
    int rounds = (int)check_iters("WEFT_ROUNDS", 10);
    int first = -1;
    for (int i = 0; i < rounds; i++) {
        /* A pipe made non-blocking by the caller, never adopted: read with a
         * wait, then closed with close(2), as weft_co_wait_fd allows. Its
         * number comes back at once as the next pipe: that wait must be
         * registered anew, not believed registered. */
        int p[2];
        CHECK_OK(pipe2(p, O_NONBLOCK | O_CLOEXEC));
        if (first < 0)
            first = p[0];
        CHECK_INT(p[0], ==, first);
        struct late_writer w = {p[1], (char)('a' + i)};
        weft_task_t *t;
        CHECK_OK(weft_co_spawn(&t, write_later, &w, "writer", 0));
        char c = 0;
        CHECK_INT(weft_net_read_until(p[0], &c, 1, weft_deadline_in(5)), ==, 1);
        CHECK_INT(c, ==, w.byte);
        CHECK_OK(weft_co_await(t, NULL));
        weft_task_release(t);
        close(p[0]);
        close(p[1]);
    }
    return 0;
}

static void test_foreign_fd_close_reuse(void)
{
    int fds = check_fd_count();
    net_each_backend(foreign_main, NULL);
    CHECK_INT(check_fd_count(), ==, fds);
}

/* ---- reads that skip the EAGAIN (drained TCP sockets, src/net/io.c) --------------- */

static int drained_main(void *arg, void **result)
{
    (void)arg;
    (void)result;
    int a, b;
    CHECK_OK(net_tcp_pair(&a, &b));
    char c[64];
    int rounds = (int)check_iters("WEFT_ROUNDS", 200);
    for (int i = 0; i < rounds; i++) {
        /* A short read drains a; then data comes with no poll in between
         * (this coroutine writes it): the next read, which skips its
         * read(2) and waits, must be woken by it, not hang. */
        CHECK_INT(weft_net_write(b, "x", 1), ==, 1);
        CHECK_INT(weft_net_read(a, c, sizeof c), ==, 1);
        CHECK_INT(weft_net_write(b, "yz", 2), ==, 2);
        if (i % 3 == 0) {
            CHECK_INT(weft_net_read_until(a, c, sizeof c, weft_deadline_in(5)), ==, 2);
        } else if (i % 3 == 1) {
            /* A try (past deadline) never skips: the data is there. */
            ssize_t k = 0;
            for (int j = 0; j < 1000 && k <= 0; j++) {
                k = weft_net_read_until(a, c, sizeof c, 0);
                if (k == -ETIMEDOUT)
                    weft_co_yield(); /* loopback delivery can lag a moment */
            }
            CHECK_INT(k, ==, 2);
        } else {
            /* read_exact: the same, and a partial read inside it. */
            size_t done = 0;
            CHECK_INT(weft_net_read_exact_until(a, c, 2, &done, weft_deadline_in(5)), ==, 2);
            CHECK_INT(weft_net_write(b, "p", 1), ==, 1);
            struct late_writer w = {b, 'q'};
            weft_task_t *t;
            CHECK_OK(weft_co_spawn(&t, write_later, &w, "writer", 0));
            CHECK_INT(weft_net_read_exact_until(a, c, 2, &done, weft_deadline_in(5)), ==, 2);
            CHECK(c[0] == 'p' && c[1] == 'q');
            CHECK_OK(weft_co_await(t, NULL));
            weft_task_release(t);
        }
        /* Empty again: a try says so. */
        CHECK_RC(weft_net_read_until(a, c, sizeof c, 0), -ETIMEDOUT);
    }
    weft_net_close(a);
    weft_net_close(b);
    return 0;
}

static void test_drained_skip(void)
{
    int fds = check_fd_count();
    net_each_backend(drained_main, NULL);
    CHECK_INT(check_fd_count(), ==, fds);
}

/* The peer writes and closes at once: one readiness report (data and the
 * hang-up together) wakes the reader, whose read is short; its next read
 * skips the read(2) and waits: it must see end of file, not hang. */
struct write_close {
    int fd;
    int how; /* 0: close; 1: shutdown(SHUT_WR) */
};

static int write_then_close(void *arg, void **result)
{
    (void)result;
    struct write_close *w = arg;
    if (weft_net_write(w->fd, "data", 4) != 4)
        return -EIO;
    return w->how ? weft_net_shutdown(w->fd, SHUT_WR) : weft_net_close(w->fd);
}

static int eof_main(void *arg, void **result)
{
    (void)arg;
    (void)result;
    int rounds = (int)check_iters("WEFT_ROUNDS", 50);
    for (int i = 0; i < rounds; i++) {
        int a, b;
        CHECK_OK(net_tcp_pair(&a, &b));
        char c[64];
        CHECK_RC(weft_net_read_until(a, c, sizeof c, 0), -ETIMEDOUT); /* registered */
        struct write_close w = {b, i & 1};
        weft_task_t *t;
        CHECK_OK(weft_co_spawn(&t, write_then_close, &w, "writer", 0));
        size_t have = 0;
        ssize_t k;
        while ((k = weft_net_read_until(a, c + have, sizeof c - have, weft_deadline_in(5))) > 0)
            have += (size_t)k;
        CHECK_INT(k, ==, 0); /* end of file, not -ETIMEDOUT */
        CHECK_INT(have, ==, 4);
        CHECK_OK(weft_co_await(t, NULL));
        weft_task_release(t);
        if (i & 1) {
            /* Half-closed: a's writes still go through; b reads them. */
            CHECK_INT(weft_net_write(a, "back", 4), ==, 4);
            CHECK_INT(weft_net_read_exact_until(b, c, 4, NULL, weft_deadline_in(5)), ==, 4);
            weft_net_close(b);
        }
        weft_net_close(a);
    }
    return 0;
}

static void test_data_then_eof(void)
{
    int fds = check_fd_count();
    net_each_backend(eof_main, NULL);
    CHECK_INT(check_fd_count(), ==, fds);
}

/* ---- a writer left waiting after the peer's FIN does not spin the loop ------------- */

/* A reader and a writer wait on one socket (the writer on a full send
 * buffer); the peer sends its FIN: the reader wakes with end of file, and
 * the writer, left waiting, must wait quietly. The loop used to arm it
 * again one-shot, whose report of the FIN (epoll: EPOLLRDHUP armed for a
 * writer too; io_uring reports RDHUP always) is READ: not the writer's,
 * armed again, reported again, at every poll. */
struct fin_pair {
    int fd;
    size_t sent;
};

static int fin_writer(void *arg, void **result)
{
    (void)result;
    struct fin_pair *p = arg;
    static char big[4 << 20];
    /* Ends with -EPIPE when main closes the socket. */
    return (int)weft_net_write_all_until(p->fd, big, sizeof big, &p->sent, weft_deadline_in(30));
}

static int fin_reader(void *arg, void **result)
{
    (void)result;
    char c[16];
    return (int)weft_net_read_until(((struct fin_pair *)arg)->fd, c, sizeof c, weft_deadline_in(30));
}

/* The loop's polls while it has nothing to do but wait for ms. */
static uint64_t polls_while_idle(double seconds)
{
    weft_loop_stats_t s0, s1;
    CHECK_OK(weft_loop_stats(weft_loop_current(), &s0));
    CHECK_OK(weft_co_sleep(seconds));
    CHECK_OK(weft_loop_stats(weft_loop_current(), &s1));
    return s1.polls - s0.polls;
}

static int fin_main(void *arg, void **result)
{
    (void)arg;
    (void)result;
    int a, b;
    CHECK_OK(net_tcp_pair(&a, &b));
    struct fin_pair p = {a, 0};
    weft_task_t *w, *r;
    CHECK_OK(weft_co_spawn(&w, fin_writer, &p, "writer", 0));
    CHECK_OK(weft_co_spawn(&r, fin_reader, &p, "reader", 0));
    CHECK_OK(weft_co_yield()); /* the writer fills the buffers and waits; the reader waits */
    CHECK(p.sent > 0 && p.sent < sizeof(char[4 << 20]));
    CHECK_OK(weft_net_shutdown(b, SHUT_WR)); /* the peer's FIN */
    CHECK_OK(weft_co_await(r, NULL)); /* the reader's read: 0, end of file */
    /* The writer still waits: the loop is idle, a poll or two, not
     * thousands. */
    CHECK_U64(polls_while_idle(0.1), <=, 5);
    CHECK_OK(weft_net_close(a)); /* the writer: -EPIPE */
    CHECK_RC(weft_co_await(w, NULL), -EPIPE);
    weft_task_release(w);
    weft_task_release(r);
    weft_net_close(b);

    /* weft_co_wait_fd(WRITE) itself on a half-closed socket weft does not
     * own (a one-shot arm). On epoll only: io_uring's poll reports RDHUP
     * whatever it was asked for, so there it is reported at every poll
     * (docs/loop.md). */
    if (strcmp(net_backend_now, "epoll") == 0) {
        int sv[2];
        CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv));
        char junk[4096] = {0};
        while (write(sv[0], junk, sizeof junk) > 0)
            ;
        CHECK_OK(shutdown(sv[1], SHUT_WR));
        weft_loop_stats_t s0, s1;
        CHECK_OK(weft_loop_stats(weft_loop_current(), &s0));
        CHECK_RC(weft_co_wait_fd(sv[0], WEFT_IO_WRITE, weft_deadline_in(0.1)), -ETIMEDOUT);
        CHECK_OK(weft_loop_stats(weft_loop_current(), &s1));
        CHECK_U64(s1.polls - s0.polls, <=, 5);
        close(sv[0]);
        close(sv[1]);
    }
    return 0;
}

static void test_writer_after_fin(void)
{
    int fds = check_fd_count();
    net_each_backend(fin_main, NULL);
    CHECK_INT(check_fd_count(), ==, fds);
}

/* A connected socket closed with weft_net_close while its registration
 * has a wake-up in flight (data came just before): the peer sees the close.
 * On io_uring the removal of the socket's poll was refused then
 * (-EALREADY) and never retried: the poll kept the socket open, and the
 * peer waited for an end of file that never came. */
static int close_seen_main(void *arg, void **result)
{
    (void)arg;
    (void)result;
    for (int round = 0; round < 20; round++) {
        int a, b;
        CHECK_OK(net_tcp_pair(&a, &b));
        CHECK_INT(weft_net_write(b, "hi", 2), ==, 2);
        char c[4];
        CHECK_INT(weft_net_read_exact_until(a, c, 2, NULL, weft_deadline_in(5)), ==, 2);
        CHECK_INT(weft_net_write(b, "x", 1), ==, 1); /* a wake-up for a's poll */
        CHECK_OK(weft_net_close(a));
        ssize_t r = weft_net_read_until(b, c, sizeof c, weft_deadline_in(5));
        CHECK(r == 0 || r == -ECONNRESET); /* the close, not -ETIMEDOUT */
        CHECK_OK(weft_net_close(b));
    }
    return 0;
}

static void test_close_seen_by_peer(void)
{
    int fds = check_fd_count();
    net_each_backend(close_seen_main, NULL);
    CHECK_INT(check_fd_count(), ==, fds);
}

int main(void)
{
    RUN(test_duplex_one_socket);
    RUN(test_idle_readiness);
    RUN(test_pingpong);
    RUN(test_closed_elsewhere_reused);
    RUN(test_foreign_fd_close_reuse);
    RUN(test_drained_skip);
    RUN(test_data_then_eof);
    RUN(test_writer_after_fin);
    RUN(test_close_seen_by_peer);
    return check_done();
}
