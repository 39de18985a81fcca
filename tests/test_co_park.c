/*
 * test_co_park.c - the coroutine side of parking: every weft primitive
 * suspends the calling coroutine instead of its thread; threads and
 * coroutines (of one loop or of several) meet on the same mutex, channel
 * and event; mutex owners are coroutines; cancellation and deadline scopes
 * interrupt a primitive's finite wait once.
 */
#include <errno.h>
#include <pthread.h>
#include <weft.h>

#include "co_check.h"
#include "park/park.h"

/* ---- weft_sleep in a coroutine suspends only the coroutine ---------------- */

static int counter_task(void *arg, void **result)
{
    (void)result;
    int *ticks = arg;
    while (weft_co_yield() == 0)
        (*ticks)++;
    return 0;
}
static int main_weft_sleep(void *arg, void **result)
{
    (void)arg;
    (void)result;
    int ticks = 0;
    weft_task_t *t;
    CHECK_OK(weft_co_spawn(&t, counter_task, &ticks, "counter", 0));
    weft_time_t d = weft_deadline_in_ms(20);
    CHECK_OK(weft_sleep_until(d)); /* the thread-side call, from a coroutine */
    CHECK_INT(weft_now(), >=, d);
    CHECK_INT(ticks, >, 0); /* the loop ran the counter meanwhile */
    weft_task_cancel(t);
    weft_co_await(t, NULL);
    weft_task_release(t);
    return 0;
}
static void test_weft_sleep_suspends(void)
{
    CHECK_OK(weft_loop_run(main_weft_sleep, NULL, NULL));
}

/* ---- a mutex shared by coroutines and threads ---------------------------------- */

struct shared {
    weft_mutex_t m;
    long counter;
    long iters;
};
static int co_incr(void *arg, void **result)
{
    (void)result;
    struct shared *s = arg;
    for (long i = 0; i < s->iters; i++) {
        CHECK_OK(weft_mutex_lock(&s->m));
        long v = s->counter;
        if (i % 7 == 0)
            weft_co_yield(); /* hold the lock across a switch: others must park */
        s->counter = v + 1;
        CHECK_OK(weft_mutex_unlock(&s->m));
    }
    return 0;
}
static int main_mutex(void *arg, void **result)
{
    (void)result;
    weft_co_group_t *g;
    CHECK_OK(weft_co_group_create(&g));
    for (int i = 0; i < 8; i++)
        CHECK_OK(weft_co_group_spawn(g, NULL, co_incr, arg, "incr", 0));
    CHECK_OK(weft_co_group_wait(g));
    weft_co_group_free(g);
    return 0;
}
static void *thread_loop(void *arg)
{
    return (void *)(intptr_t)weft_loop_run(main_mutex, arg, NULL);
}
static void *thread_incr(void *arg)
{
    struct shared *s = arg;
    for (long i = 0; i < s->iters * 4; i++) {
        weft_mutex_lock(&s->m);
        s->counter++;
        weft_mutex_unlock(&s->m);
    }
    return NULL;
}
static void test_mutex_threads_and_coroutines(void)
{
    struct shared s;
    weft_mutex_init(&s.m);
    s.counter = 0;
    s.iters = check_iters("CO_MUTEX", 2000);
    pthread_t a, b, c;
    pthread_create(&a, NULL, thread_loop, &s); /* loop 1: 8 coroutines */
    pthread_create(&b, NULL, thread_loop, &s); /* loop 2: 8 coroutines */
    pthread_create(&c, NULL, thread_incr, &s); /* a plain thread */
    void *ra, *rb;
    pthread_join(a, &ra);
    pthread_join(b, &rb);
    pthread_join(c, NULL);
    CHECK_INT((intptr_t)ra, ==, 0);
    CHECK_INT((intptr_t)rb, ==, 0);
    CHECK_INT(s.counter, ==, 2 * 8 * s.iters + 4 * s.iters);
    CHECK_OK(weft_mutex_destroy(&s.m));
}

/* Owners are coroutines, not the thread that runs them. */
static int lock_and_return(void *arg, void **result)
{
    (void)result;
    CHECK_OK(weft_mutex_lock(arg));
    return 0; /* returns while owning the mutex: documented misuse */
}
static int main_owner(void *arg, void **result)
{
    (void)arg;
    (void)result;
    weft_mutex_t m;
    weft_mutex_init(&m);
    CHECK_OK(weft_mutex_lock(&m));
    weft_task_t *t;
    CHECK_OK(weft_co_spawn(&t, lock_and_return, &m, "locker", 0));
    /* The other coroutine on this same thread is not the owner. */
    CHECK_OK(weft_co_yield()); /* it tries to lock, parks */
    CHECK(!weft_task_done(t));
    CHECK_OK(weft_mutex_unlock(&m)); /* hand it over */
    CHECK_OK(weft_co_await(t, NULL));
    weft_task_release(t);
    /* It returned while owning m: m stays locked by a finished coroutine. */
    CHECK(weft_mutex_is_locked(&m));
    CHECK_RC(weft_mutex_unlock(&m), -EPERM);
    CHECK_RC(weft_mutex_lock_until(&m, weft_deadline_in_ms(5)), -ETIMEDOUT);
    CHECK_RC(weft_mutex_lock_try(&m), -EAGAIN);
    CHECK_RC(weft_mutex_destroy(&m), -EBUSY);
    return 0;
}
static void test_mutex_owner_is_coroutine(void)
{
    CHECK_OK(weft_loop_run(main_owner, NULL, NULL));
}

/* ---- a channel between a thread and coroutines, and between two loops ---------- */

struct chan_test {
    weft_chan_t *ch;
    long n;
    _Atomic long sum;
    _Atomic long count;
    unsigned char *seen;
};
static int co_consumer(void *arg, void **result)
{
    (void)result;
    struct chan_test *c = arg;
    long v;
    while (weft_chan_recv(c->ch, &v) == 0) {
        CHECK(v >= 0 && v < c->n);
        if (v >= 0 && v < c->n) {
            CHECK_INT(c->seen[v], ==, 0);
            c->seen[v] = 1;
        }
        atomic_fetch_add(&c->sum, v);
        atomic_fetch_add(&c->count, 1);
    }
    return 0;
}
static int main_consumers(void *arg, void **result)
{
    (void)result;
    weft_co_group_t *g;
    CHECK_OK(weft_co_group_create(&g));
    for (int i = 0; i < 4; i++)
        CHECK_OK(weft_co_group_spawn(g, NULL, co_consumer, arg, "consumer", 0));
    CHECK_OK(weft_co_group_wait(g));
    weft_co_group_free(g);
    return 0;
}
static int co_producer(void *arg, void **result)
{
    (void)result;
    struct chan_test *c = arg;
    for (long i = 0; i < c->n; i++)
        CHECK_OK(weft_chan_send(c->ch, &i));
    weft_chan_close(c->ch);
    return 0;
}
static void *run_consumers(void *arg)
{
    return (void *)(intptr_t)weft_loop_run(main_consumers, arg, NULL);
}
static void *run_producer_loop(void *arg)
{
    return (void *)(intptr_t)weft_loop_run(co_producer, arg, NULL);
}
static void *thread_producer(void *arg)
{
    struct chan_test *c = arg;
    for (long i = 0; i < c->n; i++)
        weft_chan_send(c->ch, &i);
    weft_chan_close(c->ch);
    return NULL;
}
static void chan_case(size_t cap, bool producer_is_loop)
{
    struct chan_test c;
    c.n = check_iters("CO_CHAN", 20000);
    c.seen = calloc((size_t)c.n, 1);
    atomic_init(&c.sum, 0);
    atomic_init(&c.count, 0);
    CHECK_OK(weft_chan_create(&c.ch, sizeof(long), cap));
    pthread_t p, q;
    pthread_create(&q, NULL, run_consumers, &c);
    pthread_create(&p, NULL, producer_is_loop ? run_producer_loop : thread_producer, &c);
    pthread_join(p, NULL);
    void *r;
    pthread_join(q, &r);
    CHECK_INT((intptr_t)r, ==, 0);
    CHECK_INT(atomic_load(&c.count), ==, c.n);
    CHECK_INT(atomic_load(&c.sum), ==, c.n * (c.n - 1) / 2);
    weft_chan_release(c.ch);
    free(c.seen);
}
static void test_chan_thread_to_coroutines(void)
{
    chan_case(0, false);
    chan_case(16, false);
}
static void test_chan_loop_to_loop(void)
{
    chan_case(0, true);
    chan_case(16, true);
}

/* Coroutines of one loop ping-pong through an unbuffered channel. */
struct pp {
    weft_chan_t *a, *b;
    long n;
};
static int ponger(void *arg, void **result)
{
    (void)result;
    struct pp *p = arg;
    long v;
    while (weft_chan_recv(p->a, &v) == 0) {
        v++;
        weft_chan_send(p->b, &v);
    }
    return 0;
}
static int main_pingpong(void *arg, void **result)
{
    (void)result;
    struct pp *p = arg;
    weft_task_t *t;
    CHECK_OK(weft_co_spawn(&t, ponger, p, "ponger", 0));
    long v = 0;
    for (long i = 0; i < p->n; i++) {
        CHECK_OK(weft_chan_send(p->a, &v));
        CHECK_OK(weft_chan_recv(p->b, &v));
    }
    CHECK_INT(v, ==, p->n);
    weft_chan_close(p->a);
    CHECK_OK(weft_co_await(t, NULL));
    weft_task_release(t);
    return 0;
}
static void test_chan_pingpong_same_loop(void)
{
    struct pp p;
    p.n = check_iters("CO_PINGPONG", 20000);
    CHECK_OK(weft_chan_create(&p.a, sizeof(long), 0));
    CHECK_OK(weft_chan_create(&p.b, sizeof(long), 0));
    CHECK_OK(weft_loop_run(main_pingpong, &p, NULL));
    weft_chan_release(p.a);
    weft_chan_release(p.b);
}

/* ---- an event set by a thread, awaited by coroutines ------------------------------- */

struct evt {
    weft_event_t ev;
    _Atomic int woken, entered;
};
static int ev_waiter(void *arg, void **result)
{
    (void)result;
    struct evt *e = arg;
    atomic_fetch_add(&e->entered, 1);
    CHECK_OK(weft_event_wait(&e->ev));
    atomic_fetch_add(&e->woken, 1);
    return 0;
}
static void *ev_setter(void *arg)
{
    struct evt *e = arg;
    /* Set it once a coroutine sleeps on it (so that the wake-up crosses
     * from this thread to the loop), however slowly the loop gets there;
     * give up after 10 s (the remote_wakes check then fails). A waiter
     * that is queued may not be asleep yet, and a set then finds it
     * awake: no wake-up to hand over. But the second waiter runs only
     * once the first has suspended, so when two have entered, the first
     * sleeps. */
    weft_time_t give_up = weft_now() + 10000000000LL;
    while ((atomic_load(&e->entered) < 2 || !weft__is_parked(&e->ev)) && weft_now() < give_up)
        weft_sleep(0.001);
    weft_event_set(&e->ev);
    return NULL;
}
static int main_event(void *arg, void **result)
{
    (void)result;
    struct evt *e = arg;
    weft_co_group_t *g;
    CHECK_OK(weft_co_group_create(&g));
    for (int i = 0; i < 50; i++)
        CHECK_OK(weft_co_group_spawn(g, NULL, ev_waiter, e, "waiter", 0));
    pthread_t th;
    pthread_create(&th, NULL, ev_setter, e);
    CHECK_OK(weft_co_group_wait(g));
    pthread_join(th, NULL);
    weft_co_group_free(g);
    return 0;
}
static void test_event_thread_sets(void)
{
    struct evt e;
    weft_event_init(&e.ev);
    atomic_init(&e.woken, 0);
    atomic_init(&e.entered, 0);
    weft_loop_stats_t st;
    weft_loop_opts_t o = {.stats = &st};
    CHECK_OK(weft_loop_run(main_event, &e, &o));
    CHECK_INT(atomic_load(&e.woken), ==, 50);
    CHECK_U64(st.remote_wakes, >=, 1);
    weft_event_destroy(&e.ev);
}

/* ---- cancellation reaches a primitive's wait; scopes its finite wait, once ------------- */

static int wait_event_until(void *arg, void **result)
{
    (void)result;
    weft_event_t *e = arg;
    weft_time_t t0 = weft_now();
    int r = weft_event_wait_until(e, weft_deadline_in(10));
    CHECK_RC(r, -ECANCELED);
    CHECK_INT(weft_now() - t0, <, 5000000000LL);
    CHECK(weft_co_cancelled());
    /* Level-triggered: a second wait (finite or not) ends at once too. */
    t0 = weft_now();
    CHECK_RC(weft_event_wait_until(e, weft_deadline_in(10)), -ECANCELED);
    CHECK_RC(weft_event_wait(e), -ECANCELED);
    CHECK_INT(weft_now() - t0, <, 5000000000LL);
    return -ECANCELED;
}
static int main_prim_cancel(void *arg, void **result)
{
    (void)arg;
    (void)result;
    weft_event_t e;
    weft_event_init(&e);
    weft_task_t *t;
    CHECK_OK(weft_co_spawn(&t, wait_event_until, &e, "ev-wait", 0));
    CHECK_OK(weft_co_yield());
    CHECK_OK(weft_task_cancel(t));
    CHECK_RC(weft_co_await(t, NULL), -ECANCELED);
    weft_task_release(t);
    /* A deadline scope cuts a channel receive short. */
    weft_chan_t *ch;
    CHECK_OK(weft_chan_create(&ch, sizeof(int), 1));
    weft_co_scope_t s;
    CHECK_OK(weft_co_scope_begin(&s, weft_deadline_in_ms(5)));
    int v;
    CHECK_RC(weft_chan_recv_until(ch, &v, weft_deadline_in(10)), -ETIMEDOUT);
    CHECK_RC(weft_co_scope_end(&s), -ETIMEDOUT);
    weft_chan_release(ch);
    weft_event_destroy(&e);
    return 0;
}
static void test_prim_interrupted(void)
{
    CHECK_OK(weft_loop_run(main_prim_cancel, NULL, NULL));
}

/* ---- a future awaited by a coroutine of another loop ---------------------------------- */

static int produce_value(void *arg, void **result)
{
    (void)arg;
    weft_co_sleep(0.005);
    *result = (void *)0x99;
    return 0;
}
struct xloop {
    weft_task_t *task;
    weft_event_t ready;
};
static int main_a(void *arg, void **result)
{
    (void)result;
    struct xloop *x = arg;
    CHECK_OK(weft_co_spawn(&x->task, produce_value, NULL, "producer", 0));
    weft_event_set(&x->ready);
    void *v;
    CHECK_OK(weft_co_await(x->task, &v));
    return 0;
}
static int main_b(void *arg, void **result)
{
    (void)result;
    struct xloop *x = arg;
    CHECK_OK(weft_event_wait(&x->ready));
    void *v = NULL;
    CHECK_OK(weft_co_await(x->task, &v)); /* a task of another loop */
    CHECK(v == (void *)0x99);
    return 0;
}
static void *run_a(void *arg)
{
    return (void *)(intptr_t)weft_loop_run(main_a, arg, NULL);
}
static void test_await_across_loops(void)
{
    struct xloop x;
    weft_event_init(&x.ready);
    pthread_t th;
    pthread_create(&th, NULL, run_a, &x);
    CHECK_OK(weft_loop_run(main_b, &x, NULL));
    pthread_join(th, NULL);
    weft_task_release(x.task);
    weft_event_destroy(&x.ready);
}

int main(void)
{
    co_check_backend();
    RUN(test_weft_sleep_suspends);
    RUN(test_mutex_threads_and_coroutines);
    RUN(test_mutex_owner_is_coroutine);
    RUN(test_chan_thread_to_coroutines);
    RUN(test_chan_loop_to_loop);
    RUN(test_chan_pingpong_same_loop);
    RUN(test_event_thread_sets);
    RUN(test_prim_interrupted);
    RUN(test_await_across_loops);
    return check_done();
}
