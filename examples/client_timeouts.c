/*
 * client_timeouts.c - a client that never hangs: deadlines on each call,
 * one deadline scope over several calls (asyncio.timeout), and
 * cancellation, against servers that misbehave on purpose (all on
 * loopback, in this program).
 *
 *   client_timeouts [--selftest]   run the cases, print what each returned
 *                                  and how long it took; exit 0 if every
 *                                  case ended as it should
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <weft.h>

/* A server that accepts, waits `delay` seconds, then answers "pong\n"
 * (or never answers if delay < 0). */
struct server {
    int lfd;
    double delay;
    weft_addr_t addr;
};

struct conn {
    int fd;
    double delay;
};

static int handle(void *arg, void **result)
{
    (void)result;
    struct conn c = *(struct conn *)arg;
    free(arg);
    char req[64];
    weft_net_read(c.fd, req, sizeof req);
    if (c.delay >= 0 && weft_co_sleep(c.delay) == 0)
        weft_net_write_all(c.fd, "pong\n", 5, NULL);
    else if (c.delay < 0)
        weft_co_sleep(1e9); /* silent until cancelled */
    weft_net_close(c.fd);
    return 0;
}

/* Accept and hand each connection to its own coroutine, until cancelled.
 * The handlers are detached: when the loop ends it cancels what is left. */
static int serve_one(void *arg, void **result)
{
    (void)result;
    struct server *s = arg;
    for (;;) {
        int fd = weft_net_accept(s->lfd, NULL);
        if (fd < 0)
            return 0;
        struct conn *c = malloc(sizeof *c);
        if (!c) {
            weft_net_close(fd);
            continue;
        }
        *c = (struct conn){fd, s->delay};
        if (weft_co_spawn(NULL, handle, c, "handler", 0) != 0) {
            free(c);
            weft_net_close(fd);
        }
    }
}

static int start(struct server *s, double delay, weft_task_t **t)
{
    weft_addr_t any;
    weft_addr_ip(&any, "127.0.0.1", 0);
    s->delay = delay;
    s->lfd = weft_net_listen(&any, 0);
    if (s->lfd < 0)
        return s->lfd;
    weft_net_local_addr(s->lfd, &s->addr);
    return weft_co_spawn(t, serve_one, s, "server", 0);
}

static void stop(struct server *s, weft_task_t *t)
{
    weft_task_cancel(t);
    weft_co_await(t, NULL);
    weft_task_release(t);
    weft_net_close(s->lfd);
}

/* Ask for a pong: connect, write, read, with no deadline of its own (the
 * caller's scope bounds it). 0 or an error. */
static int ping(const weft_addr_t *a)
{
    int fd = weft_net_connect(a);
    if (fd < 0)
        return fd;
    char buf[8];
    ssize_t r = weft_net_write_all(fd, "ping\n", 5, NULL);
    if (r >= 0)
        r = weft_net_read_exact(fd, buf, 5, NULL);
    weft_net_close(fd);
    return r < 0 ? (int)r : 0;
}

static int failures;

static void report(const char *what, int got, int want, weft_time_t t0)
{
    int ok = got == want;
    failures += !ok;
    printf("%-52s %-22s %6.1f ms %s\n", what, weft_strerror(got),
           weft_seconds_between(t0, weft_now()) * 1e3, ok ? "" : "  <- UNEXPECTED");
}

static int reader(void *arg, void **result)
{
    (void)result;
    int fd = weft_net_connect(arg);
    if (fd < 0)
        return fd;
    char c;
    int r = (int)weft_net_read(fd, &c, 1); /* no deadline: only cancellation ends it */
    weft_net_close(fd);
    return r;
}

static int demo(void *arg, void **result)
{
    (void)arg;
    (void)result;
    struct server silent, slow;
    weft_task_t *ts, *tl;
    if (start(&silent, -1, &ts) || start(&slow, 0.3, &tl))
        return -EIO;

    /* 1. Nobody listens: refused at once, no fd left. */
    weft_addr_t nobody;
    {
        struct server tmp;
        weft_task_t *tt;
        start(&tmp, 0, &tt);
        nobody = tmp.addr;
        stop(&tmp, tt); /* the port is free again */
    }
    weft_time_t t0 = weft_now();
    report("connect to a port nobody listens on", weft_net_connect_until(&nobody, weft_deadline_in(1)),
           -ECONNREFUSED, t0);

    /* 2. A server that never answers: the read's own deadline. */
    t0 = weft_now();
    int fd = weft_net_connect_until(&silent.addr, weft_deadline_in(1));
    char buf[8];
    weft_net_write_all(fd, "ping\n", 5, NULL);
    report("read from a silent server, 200 ms deadline",
           (int)weft_net_read_until(fd, buf, sizeof buf, weft_deadline_in(0.2)), -ETIMEDOUT, t0);
    weft_net_close(fd);

    /* 3. One deadline over connect + write + read (asyncio.timeout). */
    weft_co_scope_t sc;
    t0 = weft_now();
    weft_co_scope_begin(&sc, weft_deadline_in(0.1));
    int r = ping(&slow.addr);
    weft_co_scope_end(&sc);
    report("ping a 300 ms server within 100 ms (one scope)", r, -ETIMEDOUT, t0);
    t0 = weft_now();
    weft_co_scope_begin(&sc, weft_deadline_in(2));
    r = ping(&slow.addr);
    weft_co_scope_end(&sc);
    report("ping a 300 ms server within 2 s", r, 0, t0);

    /* 4. Cancel a client that waits with no deadline at all. */
    weft_task_t *rt;
    t0 = weft_now();
    weft_co_spawn(&rt, reader, &silent.addr, "reader", 0);
    weft_co_sleep(0.05);
    weft_task_cancel(rt);
    report("cancel a read that has no deadline, after 50 ms", weft_co_await(rt, NULL), -ECANCELED,
           t0);
    weft_task_release(rt);

    /* 5. Name resolution (on the pool) with a deadline. */
    weft_addr_t la;
    t0 = weft_now();
    r = weft_net_resolve_until("localhost", 80, 0, &la, 1, weft_deadline_in(5));
    report("resolve \"localhost\" within 5 s", r == 1 ? 0 : r, 0, t0);

    stop(&silent, ts);
    stop(&slow, tl);
    return failures ? -EIO : 0;
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv; /* --selftest and no argument do the same: every case is local */
    int r = weft_loop_run(demo, NULL, NULL);
    printf("%s\n", r == 0 ? "every case ended as expected" : "some case did not end as expected");
    return r == 0 ? 0 : 1;
}
