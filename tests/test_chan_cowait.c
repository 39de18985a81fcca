/*
 * test_chan_cowait.c - armed coroutine waits on unbuffered channels (a
 * blocked plain send/receive of a coroutine sets its wake-up word and SLEEP
 * under the channel lock; see src/loop/loop.c and docs/chan.md). Each way
 * such a wait can end is checked to leave the task and the channel usable:
 * a partner, cancellation before the wait (the arming taken back), while
 * waiting, a timeout, close, and wakers on other threads that may act
 * before the coroutine has suspended.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <weft.h>

#include "co_check.h"

struct one {
    weft_chan_t *ch;
    long v;
    int rc;
    weft_time_t deadline;
    bool pre_yield; /* yield once first (to be cancelled there) */
};

static int recv_body(void *arg, void **res)
{
    (void)res;
    struct one *o = arg;
    if (o->pre_yield)
        (void)weft_co_yield(); /* may return -ECANCELED: level-triggered */
    o->rc = o->deadline ? weft_chan_recv_until(o->ch, &o->v, o->deadline)
                        : weft_chan_recv(o->ch, &o->v);
    return 0;
}

static int send_body(void *arg, void **res)
{
    (void)res;
    struct one *o = arg;
    o->rc = weft_chan_send(o->ch, &o->v);
    return 0;
}

/* The channel still pairs a fresh receiver with a send, and nothing stale
 * is queued (a dead node must not be matched). */
static void check_usable(weft_chan_t *ch)
{
    long x = 5;
    CHECK_RC(weft_chan_send_try(ch, &x), -EAGAIN);
    struct one r = {ch, 0, 1, 0, false};
    weft_task_t *t;
    CHECK_OK(weft_co_spawn(&t, recv_body, &r, "r", 0));
    x = 77;
    CHECK_OK(weft_chan_send(ch, &x));
    CHECK_OK(weft_co_await(t, NULL));
    weft_task_release(t);
    CHECK_INT(r.rc, ==, 0);
    CHECK_INT(r.v, ==, 77);
}

static int main_ends(void *arg, void **res)
{
    (void)arg;
    (void)res;
    weft_chan_t *ch;
    CHECK_OK(weft_chan_create(&ch, sizeof(long), 0));
    long rounds = check_iters("rounds", 200);
    for (long i = 0; i < rounds; i++) {
        weft_task_t *t;
        /* Cancelled before the receive suspends: it arms, finds the
         * cancellation, takes the arming back. */
        struct one a = {ch, 0, 1, 0, true};
        CHECK_OK(weft_co_spawn(&t, recv_body, &a, "a", 0));
        weft_co_yield(); /* a runs up to its yield */
        CHECK_OK(weft_task_cancel(t));
        (void)weft_co_await(t, NULL); /* 0 or -ECANCELED: a's choice */
        weft_task_release(t);
        CHECK_INT(a.rc, ==, -ECANCELED);
        check_usable(ch);

        /* Cancelled while suspended in the lean wait. */
        struct one b = {ch, 0, 1, 0, false};
        CHECK_OK(weft_co_spawn(&t, recv_body, &b, "b", 0));
        for (long k = 0; k < 1 + i % 3; k++)
            weft_co_yield();
        CHECK_OK(weft_task_cancel(t));
        (void)weft_co_await(t, NULL);
        weft_task_release(t);
        CHECK_INT(b.rc, ==, -ECANCELED);
        check_usable(ch);

        /* A deadline: the armed wait with a timer. */
        struct one c = {ch, 0, 1, weft_deadline_in_ms(1), false};
        CHECK_OK(weft_co_spawn(&t, recv_body, &c, "c", 0));
        CHECK_OK(weft_co_await(t, NULL));
        weft_task_release(t);
        CHECK_INT(c.rc, ==, -ETIMEDOUT);
        check_usable(ch);

        /* An expired deadline: one try, then -ETIMEDOUT without waiting. */
        struct one d = {ch, 0, 1, weft_now(), false};
        CHECK_OK(weft_co_spawn(&t, recv_body, &d, "d", 0));
        CHECK_OK(weft_co_await(t, NULL));
        weft_task_release(t);
        CHECK_INT(d.rc, ==, -ETIMEDOUT);
        check_usable(ch);

        /* A blocked sender met by this task (a same-loop claim by store). */
        struct one e = {ch, 1000 + i, 1, 0, false};
        CHECK_OK(weft_co_spawn(&t, send_body, &e, "e", 0));
        weft_co_yield();
        long got = 0;
        CHECK_OK(weft_chan_recv(ch, &got));
        CHECK_OK(weft_co_await(t, NULL));
        weft_task_release(t);
        CHECK_INT(e.rc, ==, 0);
        CHECK_INT(got, ==, 1000 + i);
    }
    /* Close wakes an armed waiter with -EPIPE. */
    struct one f = {ch, 0, 1, 0, false};
    weft_task_t *t;
    CHECK_OK(weft_co_spawn(&t, recv_body, &f, "f", 0));
    weft_co_yield();
    CHECK_OK(weft_chan_close(ch));
    CHECK_OK(weft_co_await(t, NULL));
    weft_task_release(t);
    CHECK_INT(f.rc, ==, -EPIPE);
    CHECK_OK(weft_chan_release(ch));
    return 0;
}

static void test_every_end_of_an_armed_wait(void)
{
    CHECK_OK(weft_loop_run(main_ends, NULL, NULL));
}

/* ---- remote wakers: an OS thread plays ping-pong with a coroutine -------- */

struct remote {
    weft_chan_t *to_co, *to_th;
    long n;
};

static void *remote_thread(void *arg)
{
    struct remote *r = arg;
    for (long i = 0; i < r->n; i++) {
        long v = i;
        if (weft_chan_send(r->to_co, &v) != 0)
            return (void *)1;
        if (weft_chan_recv(r->to_th, &v) != 0 || v != 3 * i + 1)
            return (void *)2;
    }
    return NULL;
}

static int main_remote(void *arg, void **res)
{
    (void)res;
    struct remote *r = arg;
    /* The thread's sends meet this coroutine either queued and asleep, or
     * armed but still running (the wake then arrives through the remote
     * queue, or the coroutine takes its arming back and sees the element). */
    for (long i = 0; i < r->n; i++) {
        long v = -1;
        CHECK_OK(weft_chan_recv(r->to_co, &v));
        CHECK_INT(v, ==, i);
        v = 3 * i + 1;
        CHECK_OK(weft_chan_send(r->to_th, &v));
    }
    return 0;
}

static void test_remote_pingpong(void)
{
    struct remote r;
    CHECK_OK(weft_chan_create(&r.to_co, sizeof(long), 0));
    CHECK_OK(weft_chan_create(&r.to_th, sizeof(long), 0));
    r.n = check_iters("remote", 20000);
    pthread_t th;
    CHECK_INT(pthread_create(&th, NULL, remote_thread, &r), ==, 0);
    CHECK_OK(weft_loop_run(main_remote, &r, NULL));
    void *ret = (void *)9;
    pthread_join(th, &ret);
    CHECK(ret == NULL);
    CHECK_OK(weft_chan_release(r.to_co));
    CHECK_OK(weft_chan_release(r.to_th));
}

int main(void)
{
    co_check_backend();
    RUN(test_every_end_of_an_armed_wait);
    RUN(test_remote_pingpong);
    return check_done();
}
