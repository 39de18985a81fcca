/* weft channels: every error code, close, unbuffered rendezvous, select
 * basics and fairness, lifetime (including release with blocked callers). */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <weft.h>

#include "chan/internal.h"
#include "check.h"

/* Wait (without sleeping for a fixed time) until n nodes are registered on
 * ch: the callers are queued and about to sleep or asleep. */
/* Wait until n callers are blocked on ch with their nodes queued. `inside`
 * alone is not enough: weft__chan_register counts a caller in before it
 * takes the lock and queues its node, so a _try in that window finds no
 * partner. The queue counts are set under the lock by q_push. */
/* Nodes queued on both sides, read under the channel's lock. */
static uint64_t queued_nodes(weft_chan_t *ch)
{
    weft__chan_lock(ch);
    uint64_t n = (uint64_t)ch->sq.n + ch->rq.n;
    weft__chan_unlock(ch);
    return n;
}

static void wait_inside(weft_chan_t *ch, uint64_t n)
{
    while ((atomic_load(&ch->inside) & ~WEFT__CHAN_ORPHAN) < n || queued_nodes(ch) < n)
        sched_yield();
}

/* The channel lock's parking path, made to happen: the test holds the lock
 * until another thread's call has parked on it, then releases it; the
 * release must wake that thread (a lost wake-up hangs here). The suite runs
 * with both lock forms (WEFT_CHAN_LOCK=cas in the _caslock variant). */
struct lock_park {
    weft_chan_t *ch;
    _Atomic int done;
    int rc;
};

static void *lock_park_main(void *arg)
{
    struct lock_park *lp = arg;
    int v = 1;
    /* Unbuffered with an expired deadline: one try under the lock (a
     * _try would look at the lock-free waiter count first and leave). */
    lp->rc = weft_chan_send_until(lp->ch, &v, 0);
    atomic_store(&lp->done, 1);
    return NULL;
}

static void lock_contend(void *arg, int index)
{
    weft_chan_t *ch = arg;
    int v = index;
    for (int i = 0; i < 20000; i++) {
        if (index & 1)
            (void)weft_chan_send_until(ch, &v, 0); /* each takes the lock */
        else
            (void)weft_chan_recv_until(ch, &v, 0);
    }
}

static void test_lock_parks(void)
{
    weft_chan_t *ch;
    CHECK_OK(weft_chan_create(&ch, sizeof(int), 0));
    for (int round = 0; round < 20; round++) {
        struct lock_park lp = {.ch = ch};
        weft__chan_lock(ch);
        pthread_t th;
        CHECK_OK(pthread_create(&th, NULL, lock_park_main, &lp));
        while (!weft__is_parked(&ch->lock))
            sched_yield();
        CHECK_INT(atomic_load(&lp.done), ==, 0); /* it cannot pass a held lock */
        weft__chan_unlock(ch);
        pthread_join(th, NULL);
        CHECK_RC(lp.rc, -ETIMEDOUT); /* nobody to meet */
        CHECK(!weft__is_parked(&ch->lock));
    }
    /* Many threads on one lock (2 cores: some park): all return, and the
     * lock is free and unparked at the end. */
    check_parallel(6, lock_contend, ch);
    CHECK(!weft__is_parked(&ch->lock));
    CHECK_U64(queued_nodes(ch), ==, 0);
    CHECK_OK(weft_chan_release(ch));
}

static void test_create_bad_input(void)
{
    weft_chan_t *ch = (weft_chan_t *)&ch;
    CHECK_RC(weft_chan_create(NULL, 4, 4), -EINVAL);
    CHECK_RC(weft_chan_create(&ch, 0, 4), -EINVAL);
    CHECK(ch == NULL);
    CHECK_RC(weft_chan_create(&ch, WEFT_CHAN_MAX_ELEM + 1, 4), -EINVAL);
    CHECK_RC(weft_chan_create(&ch, 4, WEFT_CHAN_MAX_CAP + 1), -EINVAL);
    CHECK_RC(weft_chan_create(&ch, (size_t)-1, 0), -EINVAL);
#if !defined(WEFT_SANITIZE_ADDRESS) && !defined(WEFT_SANITIZE_THREAD)
    /* 2^28 slots of 1 MiB: more than the address space. (Sanitizer
     * allocators abort on such a request instead of failing it.) */
    CHECK_RC(weft_chan_create(&ch, WEFT_CHAN_MAX_ELEM, WEFT_CHAN_MAX_CAP), -ENOMEM);
    CHECK(ch == NULL);
#endif
    CHECK_OK(weft_chan_create(&ch, WEFT_CHAN_MAX_ELEM, 0));
    CHECK_OK(weft_chan_release(ch));
}

static void test_null_everywhere(void)
{
    int v = 0;
    weft_chan_t *ch;
    CHECK_OK(weft_chan_create(&ch, sizeof(int), 2));
    CHECK_RC(weft_chan_retain(NULL), -EINVAL);
    CHECK_RC(weft_chan_release(NULL), -EINVAL);
    CHECK_RC(weft_chan_send(NULL, &v), -EINVAL);
    CHECK_RC(weft_chan_send(ch, NULL), -EINVAL);
    CHECK_RC(weft_chan_send_try(NULL, &v), -EINVAL);
    CHECK_RC(weft_chan_send_try(ch, NULL), -EINVAL);
    CHECK_RC(weft_chan_send_until(NULL, &v, WEFT_FOREVER), -EINVAL);
    CHECK_RC(weft_chan_send_until(ch, NULL, WEFT_FOREVER), -EINVAL);
    CHECK_RC(weft_chan_send_until(ch, &v, -1), -EINVAL);
    CHECK_RC(weft_chan_send_until(ch, &v, WEFT_DEADLINE_INVALID), -EINVAL);
    CHECK_RC(weft_chan_recv(NULL, &v), -EINVAL);
    CHECK_RC(weft_chan_recv(ch, NULL), -EINVAL);
    CHECK_RC(weft_chan_recv_try(NULL, &v), -EINVAL);
    CHECK_RC(weft_chan_recv_try(ch, NULL), -EINVAL);
    CHECK_RC(weft_chan_recv_until(NULL, &v, WEFT_FOREVER), -EINVAL);
    CHECK_RC(weft_chan_recv_until(ch, NULL, WEFT_FOREVER), -EINVAL);
    CHECK_RC(weft_chan_recv_until(ch, &v, weft_deadline_in(-1.0)), -EINVAL);
    CHECK_RC(weft_chan_close(NULL), -EINVAL);
    CHECK(!weft_chan_is_closed(NULL));
    CHECK_U64(weft_chan_len(NULL), ==, 0);
    CHECK_U64(weft_chan_cap(NULL), ==, 0);
    CHECK_U64(weft_chan_elem_size(NULL), ==, 0);
    /* Still usable after all that. */
    v = 42;
    CHECK_OK(weft_chan_send(ch, &v));
    v = 0;
    CHECK_OK(weft_chan_recv(ch, &v));
    CHECK_INT(v, ==, 42);
    CHECK_OK(weft_chan_release(ch));
}

static void test_buffered_basic(void)
{
    weft_chan_t *ch;
    CHECK_OK(weft_chan_create(&ch, sizeof(int), 4));
    CHECK_U64(weft_chan_cap(ch), ==, 4);
    CHECK_U64(weft_chan_elem_size(ch), ==, sizeof(int));
    CHECK_U64(weft_chan_len(ch), ==, 0);
    CHECK(!weft_chan_is_closed(ch));
    int v;
    CHECK_RC(weft_chan_recv_try(ch, &v), -EAGAIN);
    for (int i = 0; i < 4; i++) {
        CHECK_OK(weft_chan_send_try(ch, &i));
        CHECK_U64(weft_chan_len(ch), ==, (unsigned)i + 1);
    }
    v = 99;
    CHECK_RC(weft_chan_send_try(ch, &v), -EAGAIN);
    /* A deadline: short, and already passed (behaves as _try). */
    weft_time_t t0 = weft_now();
    CHECK_RC(weft_chan_send_until(ch, &v, weft_deadline_in_ms(10)), -ETIMEDOUT);
    CHECK_INT(weft_now() - t0, >=, 10000000);
    CHECK_RC(weft_chan_send_until(ch, &v, 0), -ETIMEDOUT);
    CHECK_U64(weft_chan_len(ch), ==, 4);
    for (int i = 0; i < 4; i++) {
        CHECK_OK(weft_chan_recv_until(ch, &v, 0)); /* need not wait: succeeds */
        CHECK_INT(v, ==, i);
    }
    CHECK_RC(weft_chan_recv_try(ch, &v), -EAGAIN);
    CHECK_RC(weft_chan_recv_until(ch, &v, weft_deadline_in_ms(5)), -ETIMEDOUT);
    CHECK_RC(weft_chan_recv_until(ch, &v, 0), -ETIMEDOUT);
    /* Usable after every error, and len is right across many wraps. */
    for (int i = 0; i < 1000; i++) {
        int k = i % 5;
        for (int j = 0; j < k && j < 4; j++)
            CHECK_OK(weft_chan_send(ch, &j));
        CHECK_U64(weft_chan_len(ch), ==, (unsigned)(k < 4 ? k : 4));
        for (int j = 0; j < k && j < 4; j++) {
            CHECK_OK(weft_chan_recv(ch, &v));
            CHECK_INT(v, ==, j);
        }
    }
    CHECK_OK(weft_chan_release(ch));
}

static void test_odd_and_large_elements(void)
{
    struct big {
        unsigned char b[1000];
    };
    weft_chan_t *ch;
    CHECK_OK(weft_chan_create(&ch, sizeof(struct big), 3));
    for (int round = 0; round < 20; round++) {
        for (int k = 0; k < 3; k++) {
            struct big x;
            memset(x.b, round * 3 + k, sizeof x.b);
            CHECK_OK(weft_chan_send(ch, &x));
        }
        for (int k = 0; k < 3; k++) {
            struct big y;
            CHECK_OK(weft_chan_recv(ch, &y));
            CHECK_INT(y.b[0], ==, (unsigned char)(round * 3 + k));
            CHECK_INT(y.b[999], ==, (unsigned char)(round * 3 + k));
        }
    }
    CHECK_OK(weft_chan_release(ch));
    /* 3-byte elements: the stride rounds, copies stay exact. */
    CHECK_OK(weft_chan_create(&ch, 3, 5));
    unsigned char in[3] = {1, 2, 3}, out[4] = {9, 9, 9, 9};
    CHECK_OK(weft_chan_send(ch, in));
    CHECK_OK(weft_chan_recv(ch, out));
    CHECK(out[0] == 1 && out[1] == 2 && out[2] == 3 && out[3] == 9);
    CHECK_OK(weft_chan_release(ch));
}

static void test_close_buffered(void)
{
    weft_chan_t *ch;
    CHECK_OK(weft_chan_create(&ch, sizeof(int), 4));
    for (int i = 0; i < 3; i++)
        CHECK_OK(weft_chan_send(ch, &i));
    CHECK_OK(weft_chan_close(ch));
    CHECK(weft_chan_is_closed(ch));
    CHECK_RC(weft_chan_close(ch), -EPIPE);
    int v = 7;
    CHECK_RC(weft_chan_send(ch, &v), -EPIPE);
    CHECK_RC(weft_chan_send_try(ch, &v), -EPIPE);
    CHECK_RC(weft_chan_send_until(ch, &v, weft_deadline_in(1)), -EPIPE);
    CHECK_U64(weft_chan_len(ch), ==, 3);
    /* Receivers drain what was accepted, in order, then get -EPIPE. */
    CHECK_OK(weft_chan_recv(ch, &v));
    CHECK_INT(v, ==, 0);
    CHECK_OK(weft_chan_recv_try(ch, &v));
    CHECK_INT(v, ==, 1);
    CHECK_OK(weft_chan_recv_until(ch, &v, weft_deadline_in(1)));
    CHECK_INT(v, ==, 2);
    CHECK_RC(weft_chan_recv(ch, &v), -EPIPE);
    CHECK_RC(weft_chan_recv_try(ch, &v), -EPIPE);
    CHECK_RC(weft_chan_recv_until(ch, &v, weft_deadline_in(1)), -EPIPE);
    CHECK_U64(weft_chan_len(ch), ==, 0);
    CHECK_OK(weft_chan_release(ch));
}

/* ---- threads blocked in a call ------------------------------------------ */

struct blocked {
    weft_chan_t *ch;
    int op;    /* 0 recv, 1 send, 2 select over recv and send */
    int value; /* in: what to send; out: what was received */
    int rc;
    pthread_t t;
};

static void *blocked_main(void *p)
{
    struct blocked *b = p;
    int v = b->value;
    if (b->op == 0) {
        b->rc = weft_chan_recv(b->ch, &v);
        b->value = v;
    } else if (b->op == 1) {
        b->rc = weft_chan_send(b->ch, &v);
    } else {
        int in = 0;
        weft_select_case_t c[2] = {
            {b->ch, WEFT_SELECT_RECV, &in, 1},
            {b->ch, WEFT_SELECT_SEND, &v, 1},
        };
        int r = weft_chan_select(c, 2);
        b->rc = r < 0 ? r : c[r].result;
    }
    return NULL;
}

static void start_blocked(struct blocked *b, weft_chan_t *ch, int op, int value)
{
    b->ch = ch;
    b->op = op;
    b->value = value;
    b->rc = 12345;
    pthread_create(&b->t, NULL, blocked_main, b);
}

static void test_close_wakes_blocked(void)
{
    for (size_t cap = 0; cap <= 2; cap += 2) {
        weft_chan_t *ch;
        CHECK_OK(weft_chan_create(&ch, sizeof(int), cap));
        struct blocked r[3];
        for (int i = 0; i < 3; i++)
            start_blocked(&r[i], ch, 0, 0);
        wait_inside(ch, 3);
        CHECK_OK(weft_chan_close(ch));
        for (int i = 0; i < 3; i++) {
            pthread_join(r[i].t, NULL);
            CHECK_RC(r[i].rc, -EPIPE);
        }
        CHECK_OK(weft_chan_release(ch));

        /* Blocked senders: a full (or unbuffered) channel, then close. */
        CHECK_OK(weft_chan_create(&ch, sizeof(int), cap));
        for (int i = 0; i < (int)cap; i++)
            CHECK_OK(weft_chan_send(ch, &i));
        struct blocked s[3];
        for (int i = 0; i < 3; i++)
            start_blocked(&s[i], ch, 1, 100 + i);
        wait_inside(ch, 3);
        CHECK_OK(weft_chan_close(ch));
        for (int i = 0; i < 3; i++) {
            pthread_join(s[i].t, NULL);
            CHECK_RC(s[i].rc, -EPIPE);
        }
        /* What was accepted before close is still there. */
        int v;
        for (int i = 0; i < (int)cap; i++) {
            CHECK_OK(weft_chan_recv(ch, &v));
            CHECK_INT(v, ==, i);
        }
        CHECK_RC(weft_chan_recv(ch, &v), -EPIPE);
        CHECK_OK(weft_chan_release(ch));
    }
}

static void test_blocked_handoff(void)
{
    /* A receiver blocked on an empty buffered channel gets the next send. */
    weft_chan_t *ch;
    CHECK_OK(weft_chan_create(&ch, sizeof(int), 1));
    struct blocked r;
    start_blocked(&r, ch, 0, 0);
    wait_inside(ch, 1);
    int v = 77;
    CHECK_OK(weft_chan_send(ch, &v));
    pthread_join(r.t, NULL);
    CHECK_OK(r.rc);
    CHECK_INT(r.value, ==, 77);
    /* A sender blocked on a full channel gets in after a receive. */
    v = 1;
    CHECK_OK(weft_chan_send(ch, &v));
    struct blocked s;
    start_blocked(&s, ch, 1, 2);
    wait_inside(ch, 1);
    CHECK_OK(weft_chan_recv(ch, &v));
    CHECK_INT(v, ==, 1);
    pthread_join(s.t, NULL);
    CHECK_OK(s.rc);
    CHECK_OK(weft_chan_recv(ch, &v));
    CHECK_INT(v, ==, 2);
    CHECK_OK(weft_chan_release(ch));
}

/* ---- unbuffered ----------------------------------------------------------- */

static void test_unbuffered_basic(void)
{
    weft_chan_t *ch;
    CHECK_OK(weft_chan_create(&ch, sizeof(int), 0));
    CHECK_U64(weft_chan_cap(ch), ==, 0);
    CHECK_U64(weft_chan_len(ch), ==, 0);
    int v = 5;
    CHECK_RC(weft_chan_send_try(ch, &v), -EAGAIN);
    CHECK_RC(weft_chan_recv_try(ch, &v), -EAGAIN);
    CHECK_RC(weft_chan_send_until(ch, &v, weft_deadline_in_ms(5)), -ETIMEDOUT);
    CHECK_RC(weft_chan_recv_until(ch, &v, weft_deadline_in_ms(5)), -ETIMEDOUT);
    CHECK_RC(weft_chan_send_until(ch, &v, 0), -ETIMEDOUT);
    /* A timed-out sender left nothing behind. */
    CHECK_RC(weft_chan_recv_try(ch, &v), -EAGAIN);
    CHECK_U64(queued_nodes(ch), ==, 0);

    /* A blocked receiver makes _try and an expired _until succeed. */
    struct blocked r;
    start_blocked(&r, ch, 0, 0);
    wait_inside(ch, 1);
    v = 31;
    CHECK_OK(weft_chan_send_until(ch, &v, 0));
    pthread_join(r.t, NULL);
    CHECK_OK(r.rc);
    CHECK_INT(r.value, ==, 31);
    struct blocked s;
    start_blocked(&s, ch, 1, 32);
    wait_inside(ch, 1);
    CHECK_OK(weft_chan_recv_try(ch, &v));
    CHECK_INT(v, ==, 32);
    pthread_join(s.t, NULL);
    CHECK_OK(s.rc);
    CHECK_OK(weft_chan_close(ch));
    CHECK_RC(weft_chan_send(ch, &v), -EPIPE);
    CHECK_RC(weft_chan_recv(ch, &v), -EPIPE);
    CHECK_RC(weft_chan_send_try(ch, &v), -EPIPE);
    CHECK_RC(weft_chan_recv_try(ch, &v), -EPIPE);
    CHECK_OK(weft_chan_release(ch));
}

/* Rendezvous: when send returns, the receiver already holds the element. */
static weft_chan_t *rv_ch;
static long rv_slot; /* written only by the channel's copy into recv's out */
static long rv_n;

static void *rv_receiver(void *p)
{
    (void)p;
    for (long i = 0; i < rv_n; i++) {
        if (weft_chan_recv(rv_ch, &rv_slot) != 0)
            return (void *)1;
    }
    return NULL;
}

static void test_unbuffered_rendezvous(void)
{
    rv_n = check_iters("CHAN_RENDEZVOUS", 20000);
    CHECK_OK(weft_chan_create(&rv_ch, sizeof(long), 0));
    pthread_t t;
    pthread_create(&t, NULL, rv_receiver, NULL);
    long bad = 0;
    for (long i = 0; i < rv_n; i++) {
        long v = i + 1;
        CHECK_OK(weft_chan_send(rv_ch, &v));
        /* The receiver cannot have received i + 2 yet: we have not sent it.
         * So the slot holds exactly our element. */
        if (rv_slot != i + 1)
            bad++;
    }
    void *tr;
    pthread_join(t, &tr);
    CHECK(tr == NULL);
    CHECK_INT(bad, ==, 0);
    CHECK_OK(weft_chan_release(rv_ch));
}

/* ---- select ------------------------------------------------------------------ */

static void test_select_bad_input(void)
{
    weft_chan_t *a;
    CHECK_OK(weft_chan_create(&a, sizeof(int), 1));
    int v = 0;
    weft_select_case_t c[2] = {{a, WEFT_SELECT_RECV, &v, 0}, {a, WEFT_SELECT_SEND, &v, 0}};
    CHECK_RC(weft_chan_select(NULL, 1), -EINVAL);
    CHECK_RC(weft_chan_select(c, 0), -EINVAL);
    CHECK_RC(weft_chan_select(c, 4097), -EINVAL);
    CHECK_RC(weft_chan_select_try(NULL, 1), -EINVAL);
    CHECK_RC(weft_chan_select_until(c, 0, WEFT_FOREVER), -EINVAL);
    CHECK_RC(weft_chan_select_until(c, 2, -1), -EINVAL);
    c[1].op = (weft_select_op_t)3;
    CHECK_RC(weft_chan_select(c, 2), -EINVAL);
    CHECK_RC(weft_chan_select_try(c, 2), -EINVAL);
    c[1].op = WEFT_SELECT_SEND;
    c[1].elem = NULL;
    CHECK_RC(weft_chan_select(c, 2), -EINVAL);
    /* A NULL elem is fine in a switched-off case (NULL chan). */
    c[1].chan = NULL;
    CHECK_RC(weft_chan_select_try(c, 2), -EAGAIN);
    /* Every chan NULL: _try -EAGAIN, _until waits out its deadline. */
    c[0].chan = NULL;
    CHECK_RC(weft_chan_select_try(c, 2), -EAGAIN);
    CHECK_RC(weft_chan_select_until(c, 2, weft_deadline_in_ms(5)), -ETIMEDOUT);
    /* Nothing was touched by any of it. */
    CHECK_U64(weft_chan_len(a), ==, 0);
    CHECK_OK(weft_chan_release(a));
}

static void test_select_basic(void)
{
    weft_chan_t *a, *b;
    CHECK_OK(weft_chan_create(&a, sizeof(int), 1));
    CHECK_OK(weft_chan_create(&b, sizeof(int), 1));
    int out = -1, in = 5;
    weft_select_case_t c[2] = {{a, WEFT_SELECT_RECV, &out, 99}, {b, WEFT_SELECT_SEND, &in, 99}};
    /* b has room: the send is the only ready case. */
    CHECK_RC(weft_chan_select(c, 2), 1);
    CHECK_INT(c[1].result, ==, 0);
    CHECK_INT(c[0].result, ==, 99); /* untouched */
    CHECK_U64(weft_chan_len(b), ==, 1);
    /* Now b is full and a empty: nothing is ready. */
    CHECK_RC(weft_chan_select_try(c, 2), -EAGAIN);
    CHECK_RC(weft_chan_select_until(c, 2, weft_deadline_in_ms(5)), -ETIMEDOUT);
    CHECK_RC(weft_chan_select_until(c, 2, 0), -ETIMEDOUT);
    int v = 8;
    CHECK_OK(weft_chan_send(a, &v));
    c[1].result = 99;
    CHECK_RC(weft_chan_select_until(c, 2, 0), 0);
    CHECK_INT(out, ==, 8);
    CHECK_INT(c[0].result, ==, 0);
    /* A closed channel is ready: receive gets -EPIPE once drained. */
    CHECK_OK(weft_chan_close(a));
    CHECK_RC(weft_chan_select(c, 2), 0);
    CHECK_INT(c[0].result, ==, -EPIPE);
    /* A send case on a closed channel is ready with -EPIPE. */
    CHECK_OK(weft_chan_recv(b, &v));
    CHECK_OK(weft_chan_close(b));
    weft_select_case_t s[1] = {{b, WEFT_SELECT_SEND, &in, 99}};
    CHECK_RC(weft_chan_select(s, 1), 0);
    CHECK_INT(s[0].result, ==, -EPIPE);
    CHECK_OK(weft_chan_release(a));
    CHECK_OK(weft_chan_release(b));
}

/* A blocked select is completed by another thread's send, and a select with a
 * send and a receive on one unbuffered channel never meets itself. */
struct sel_thread {
    weft_chan_t *a, *b;
    int got, rc, idx;
};

static void *sel_thread_main(void *p)
{
    struct sel_thread *s = p;
    int out = 0, in = 1;
    weft_select_case_t c[3] = {
        {s->a, WEFT_SELECT_RECV, &out, 0},
        {s->a, WEFT_SELECT_SEND, &in, 0},
        {s->b, WEFT_SELECT_RECV, &out, 0},
    };
    s->idx = weft_chan_select(c, 3);
    s->rc = s->idx >= 0 ? c[s->idx].result : s->idx;
    s->got = out;
    return NULL;
}

static void test_select_blocking(void)
{
    weft_chan_t *a, *b;
    CHECK_OK(weft_chan_create(&a, sizeof(int), 0));
    CHECK_OK(weft_chan_create(&b, sizeof(int), 4));
    int in = 1, out = 0;
    /* Self-meeting: send and receive on one unbuffered channel alone. */
    weft_select_case_t self[2] = {{a, WEFT_SELECT_SEND, &in, 0}, {a, WEFT_SELECT_RECV, &out, 0}};
    CHECK_RC(weft_chan_select_until(self, 2, weft_deadline_in_ms(10)), -ETIMEDOUT);
    CHECK_U64(queued_nodes(a), ==, 0);

    for (int round = 0; round < 3; round++) {
        struct sel_thread s = {a, b, -1, 1, -1};
        pthread_t t;
        pthread_create(&t, NULL, sel_thread_main, &s);
        wait_inside(a, 2);
        wait_inside(b, 1);
        int v = 40 + round;
        if (round == 0) {
            CHECK_OK(weft_chan_send(b, &v)); /* completes case 2 */
        } else if (round == 1) {
            CHECK_OK(weft_chan_send(a, &v)); /* completes case 0 */
        } else {
            CHECK_OK(weft_chan_recv(a, &v)); /* completes case 1 */
            CHECK_INT(v, ==, 1);
        }
        pthread_join(t, NULL);
        CHECK_OK(s.rc);
        CHECK_INT(s.idx, ==, round == 0 ? 2 : round == 1 ? 0 : 1);
        if (round < 2)
            CHECK_INT(s.got, ==, 40 + round);
        /* The select left no node behind on any channel. */
        CHECK_U64(atomic_load(&a->inside), ==, 0);
        CHECK_U64(atomic_load(&b->inside), ==, 0);
        CHECK_U64(weft_chan_len(b), ==, 0);
    }
    CHECK_OK(weft_chan_release(a));
    CHECK_OK(weft_chan_release(b));
}

static void test_select_fairness(void)
{
    long n = check_iters("CHAN_FAIR", 10000);
    weft_chan_t *ch[3];
    for (int i = 0; i < 3; i++)
        CHECK_OK(weft_chan_create(&ch[i], sizeof(int), 2));
    int v = 0;
    /* Cases 0 and 2 always ready (refilled), case 1 never. */
    CHECK_OK(weft_chan_send(ch[0], &v));
    CHECK_OK(weft_chan_send(ch[2], &v));
    long count[3] = {0, 0, 0};
    weft_select_case_t c[3] = {
        {ch[0], WEFT_SELECT_RECV, &v, 0},
        {ch[1], WEFT_SELECT_RECV, &v, 0},
        {ch[2], WEFT_SELECT_RECV, &v, 0},
    };
    for (long i = 0; i < n; i++) {
        int r = weft_chan_select(c, 3);
        CHECK(r == 0 || r == 2);
        count[r]++;
        CHECK_OK(weft_chan_send(ch[r], &v));
    }
    CHECK_INT(count[1], ==, 0);
    CHECK_INT(count[0] * 10, >=, n * 3);
    CHECK_INT(count[2] * 10, >=, n * 3);
    /* Two ready sends among many switched-off cases. */
    weft_select_case_t many[100];
    for (int i = 0; i < 100; i++)
        many[i] = (weft_select_case_t){NULL, WEFT_SELECT_SEND, &v, 0};
    many[17].chan = ch[1];
    many[83].chan = ch[1];
    long c17 = 0, c83 = 0;
    for (long i = 0; i < n; i++) {
        int r = weft_chan_select_try(many, 100);
        CHECK(r == 17 || r == 83);
        if (r == 17)
            c17++;
        else
            c83++;
        CHECK_OK(weft_chan_recv(ch[1], &v));
    }
    CHECK_INT(c17 * 10, >=, n * 3);
    CHECK_INT(c83 * 10, >=, n * 3);
    for (int i = 0; i < 3; i++)
        CHECK_OK(weft_chan_release(ch[i]));
}

/* ---- lifetime ------------------------------------------------------------------ */

static void test_refcount(void)
{
    weft_chan_t *ch;
    CHECK_OK(weft_chan_create(&ch, sizeof(int), 8));
    CHECK_OK(weft_chan_retain(ch));
    CHECK_OK(weft_chan_retain(ch));
    CHECK_OK(weft_chan_release(ch));
    CHECK_OK(weft_chan_release(ch));
    int v = 3;
    CHECK_OK(weft_chan_send(ch, &v)); /* still alive: one reference left */
    CHECK_OK(weft_chan_send(ch, &v));
    /* The last release frees the channel and what it still buffers
     * (LeakSanitizer checks). */
    CHECK_OK(weft_chan_release(ch));
}

static void test_release_with_blocked(void)
{
    /* Receivers (buffered and unbuffered) and senders blocked on a channel
     * whose last reference goes: each is released with -EPIPE and the last
     * one to leave frees the channel (ASan/LSan check that). */
    for (int kind = 0; kind < 4; kind++) {
        weft_chan_t *ch;
        size_t cap = kind == 1 || kind == 3 ? 0 : 1;
        int op = kind < 2 ? 0 : 1;
        CHECK_OK(weft_chan_create(&ch, sizeof(int), cap));
        if (cap && op == 1) {
            int v = 0;
            CHECK_OK(weft_chan_send(ch, &v)); /* full: sends block */
        }
        struct blocked b[2];
        for (int i = 0; i < 2; i++)
            start_blocked(&b[i], ch, op, 0);
        wait_inside(ch, 2);
        CHECK_RC(weft_chan_release(ch), -EBUSY);
        for (int i = 0; i < 2; i++) {
            pthread_join(b[i].t, NULL);
            CHECK_RC(b[i].rc, -EPIPE);
        }
        /* ch is gone now; do not touch it. */
    }
}

static void test_release_with_blocked_select(void)
{
    weft_chan_t *a, *keep;
    CHECK_OK(weft_chan_create(&a, sizeof(int), 0));
    CHECK_OK(weft_chan_create(&keep, sizeof(int), 0));
    struct sel_thread s = {a, keep, 0, 0, 0};
    pthread_t t;
    pthread_create(&t, NULL, sel_thread_main, &s);
    wait_inside(a, 2);
    wait_inside(keep, 1);
    CHECK_RC(weft_chan_release(a), -EBUSY);
    pthread_join(t, NULL);
    /* The select saw the close through its receive (0) or send (1) on a. */
    CHECK(s.idx == 0 || s.idx == 1);
    CHECK_RC(s.rc, -EPIPE);
    CHECK_U64(atomic_load(&keep->inside), ==, 0);
    CHECK_OK(weft_chan_release(keep));
}

static void test_over_release(void)
{
    /* An orphan that is still alive (a caller is blocked in it) refuses
     * further releases and retains with -EINVAL. */
    weft_chan_t *ch;
    CHECK_OK(weft_chan_create(&ch, sizeof(int), 0));
    struct blocked b;
    start_blocked(&b, ch, 0, 0);
    wait_inside(ch, 1);
    /* Hold the channel alive as a "blocked caller" ourselves (a stake, taken
     * under the lock as every stake is), so that it outlives the release
     * for the checks below. */
    weft__chan_lock(ch);
    weft__chan_stake_add(ch);
    weft__chan_unlock(ch);
    CHECK_RC(weft_chan_release(ch), -EBUSY);
    pthread_join(b.t, NULL);
    CHECK_RC(b.rc, -EPIPE);
    CHECK_RC(weft_chan_release(ch), -EINVAL);
    CHECK_RC(weft_chan_retain(ch), -EINVAL);
    int v = 0;
    CHECK_RC(weft_chan_send(ch, &v), -EPIPE);
    CHECK_RC(weft_chan_recv(ch, &v), -EPIPE);
    /* Leave as a blocked caller would: the last one frees. */
    struct weft__chan_node n;
    atomic_init(&n.queued, false);
    weft__chan_leave(ch, &n, WEFT__CHAN_LEAVE_KEPT); /* our stake: the last frees */
}

int main(void)
{
    RUN(test_create_bad_input);
    RUN(test_null_everywhere);
    RUN(test_buffered_basic);
    RUN(test_odd_and_large_elements);
    RUN(test_close_buffered);
    RUN(test_close_wakes_blocked);
    RUN(test_blocked_handoff);
    RUN(test_unbuffered_basic);
    RUN(test_lock_parks);
    RUN(test_unbuffered_rendezvous);
    RUN(test_select_bad_input);
    RUN(test_select_basic);
    RUN(test_select_blocking);
    RUN(test_select_fairness);
    RUN(test_refcount);
    RUN(test_release_with_blocked);
    RUN(test_release_with_blocked_select);
    RUN(test_over_release);
    return check_done();
}
