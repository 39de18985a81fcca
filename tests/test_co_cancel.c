/*
 * test_co_cancel.c - cancellation reaches a coroutine blocked in any weft
 * primitive: the blocking call returns -ECANCELED, its registration is
 * undone exactly as on a timeout, and the object stays consistent and
 * usable (a semaphore's count unchanged, a channel element neither lost
 * nor duplicated, a mutex not left locked). A shield holds cancellation
 * off; a plain thread never sees -ECANCELED; weft_loop_run's final cancel
 * and a task group's cancel end children blocked in primitives.
 *
 * The pattern: main spawns a child that blocks in the primitive, yields
 * until the child is suspended in it, cancels it and awaits its result.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <weft.h>

#include "co_check.h"

/* Spawn fn(arg), let it block, cancel it; its return value. */
static int cancel_blocked(weft_co_fn fn, void *arg)
{
    weft_task_t *t;
    CHECK_OK(weft_co_spawn(&t, fn, arg, "blocked", 0));
    for (int i = 0; i < 3; i++)
        CHECK_OK(weft_co_yield()); /* it runs and suspends in the primitive */
    CHECK(!weft_task_done(t));
    weft_time_t t0 = weft_now();
    CHECK_OK(weft_task_cancel(t));
    void *res = NULL;
    int rc = weft_co_await(t, &res);
    CHECK_INT(weft_now() - t0, <, 5000000000LL); /* promptly, not at a deadline */
    weft_task_release(t);
    return rc;
}

/* ---- mutex, recursive mutex, rwlock ----------------------------------------------- */

static int lock_mutex(void *arg, void **result)
{
    (void)result;
    return weft_mutex_lock(arg);
}
static int lock_mutex_until(void *arg, void **result)
{
    (void)result;
    return weft_mutex_lock_until(arg, weft_deadline_in(30));
}
static int main_mutex(void *arg, void **result)
{
    (void)arg;
    (void)result;
    weft_mutex_t m;
    weft_mutex_init(&m);
    CHECK_OK(weft_mutex_lock(&m));
    CHECK_RC(cancel_blocked(lock_mutex, &m), -ECANCELED);
    CHECK_RC(cancel_blocked(lock_mutex_until, &m), -ECANCELED);
    /* Still ours, and nobody is queued: unlock, lock again, destroy. */
    CHECK(weft_mutex_is_locked(&m));
    CHECK_OK(weft_mutex_unlock(&m));
    CHECK(!weft_mutex_is_locked(&m));
    CHECK_OK(weft_mutex_lock_try(&m));
    CHECK_OK(weft_mutex_unlock(&m));
    CHECK_OK(weft_mutex_destroy(&m));
    return 0;
}
static void test_mutex(void)
{
    CHECK_OK(weft_loop_run(main_mutex, NULL, NULL));
}

static int lock_rmutex(void *arg, void **result)
{
    (void)result;
    return weft_rmutex_lock(arg);
}
static int main_rmutex(void *arg, void **result)
{
    (void)arg;
    (void)result;
    weft_rmutex_t m;
    weft_rmutex_init(&m);
    CHECK_OK(weft_rmutex_lock(&m));
    CHECK_OK(weft_rmutex_lock(&m)); /* twice: recursive */
    CHECK_RC(cancel_blocked(lock_rmutex, &m), -ECANCELED);
    CHECK_OK(weft_rmutex_unlock(&m));
    CHECK_OK(weft_rmutex_unlock(&m));
    CHECK_OK(weft_rmutex_lock_try(&m));
    CHECK_OK(weft_rmutex_unlock(&m));
    CHECK_OK(weft_rmutex_destroy(&m));
    return 0;
}
static void test_rmutex(void)
{
    CHECK_OK(weft_loop_run(main_rmutex, NULL, NULL));
}

static int rdlock(void *arg, void **result)
{
    (void)result;
    return weft_rwlock_rdlock(arg);
}
static int wrlock(void *arg, void **result)
{
    (void)result;
    return weft_rwlock_wrlock(arg);
}
static int main_rwlock(void *arg, void **result)
{
    (void)arg;
    (void)result;
    weft_rwlock_t l;
    weft_rwlock_init(&l);
    CHECK_OK(weft_rwlock_wrlock(&l));
    CHECK_RC(cancel_blocked(rdlock, &l), -ECANCELED);
    CHECK_RC(cancel_blocked(wrlock, &l), -ECANCELED);
    CHECK_OK(weft_rwlock_wrunlock(&l));
    /* Nothing left behind: readers and a writer get in. */
    CHECK_OK(weft_rwlock_rdlock_try(&l));
    CHECK_OK(weft_rwlock_rdlock_try(&l));
    CHECK_OK(weft_rwlock_rdunlock(&l));
    CHECK_OK(weft_rwlock_rdunlock(&l));
    /* A writer cancelled while readers hold the lock does not keep later
     * readers out (a departing writer wakes stuck readers). */
    CHECK_OK(weft_rwlock_rdlock(&l));
    CHECK_RC(cancel_blocked(wrlock, &l), -ECANCELED);
    CHECK_OK(weft_rwlock_rdlock_try(&l));
    CHECK_OK(weft_rwlock_rdunlock(&l));
    CHECK_OK(weft_rwlock_rdunlock(&l));
    CHECK_OK(weft_rwlock_wrlock_try(&l));
    CHECK_OK(weft_rwlock_wrunlock(&l));
    CHECK_OK(weft_rwlock_destroy(&l));
    return 0;
}
static void test_rwlock(void)
{
    CHECK_OK(weft_loop_run(main_rwlock, NULL, NULL));
}

/* ---- semaphore, condition, event, barrier, latch, wait group ----------------------- */

static int sem_acquire(void *arg, void **result)
{
    (void)result;
    return weft_sem_acquire(arg);
}
static int main_sem(void *arg, void **result)
{
    (void)arg;
    (void)result;
    weft_sem_t s;
    weft_sem_init(&s, 0);
    CHECK_RC(cancel_blocked(sem_acquire, &s), -ECANCELED);
    CHECK_INT(weft_sem_value(&s), ==, 0); /* the cancelled acquire took nothing */
    /* The unit of a release goes to the next acquirer, not to the ghost of
     * the cancelled one. */
    CHECK_OK(weft_sem_release(&s));
    CHECK_INT(weft_sem_value(&s), ==, 1);
    CHECK_OK(weft_sem_acquire_try(&s));
    CHECK_RC(weft_sem_acquire_try(&s), -EAGAIN);
    CHECK_OK(weft_sem_destroy(&s));
    return 0;
}
static void test_sem(void)
{
    CHECK_OK(weft_loop_run(main_sem, NULL, NULL));
}

struct condarg {
    weft_mutex_t m;
    weft_cond_t c;
    int held_after; /* 1 if the waiter held m when its wait returned */
};
static int cond_waiter(void *arg, void **result)
{
    (void)result;
    struct condarg *a = arg;
    CHECK_OK(weft_mutex_lock(&a->m));
    int r = weft_cond_wait(&a->c, &a->m);
    /* Returned with the mutex held, as always: unlocking it succeeds. */
    a->held_after = weft_mutex_unlock(&a->m) == 0;
    return r;
}
static int main_cond(void *arg, void **result)
{
    (void)arg;
    (void)result;
    struct condarg a;
    weft_mutex_init(&a.m);
    weft_cond_init(&a.c);
    a.held_after = 0;
    CHECK_RC(cancel_blocked(cond_waiter, &a), -ECANCELED);
    CHECK_INT(a.held_after, ==, 1);
    CHECK(!weft_mutex_is_locked(&a.m));
    CHECK_INT(weft_cond_notify(&a.c), ==, 0); /* nobody left waiting */
    CHECK_OK(weft_cond_destroy(&a.c));
    CHECK_OK(weft_mutex_destroy(&a.m));
    return 0;
}
static void test_cond(void)
{
    CHECK_OK(weft_loop_run(main_cond, NULL, NULL));
}

static int event_wait(void *arg, void **result)
{
    (void)result;
    return weft_event_wait(arg);
}
static int main_event(void *arg, void **result)
{
    (void)arg;
    (void)result;
    weft_event_t e;
    weft_event_init(&e);
    CHECK_RC(cancel_blocked(event_wait, &e), -ECANCELED);
    CHECK(!weft_event_is_set(&e));
    CHECK_OK(weft_event_set(&e));
    CHECK_OK(weft_event_wait(&e));
    CHECK_OK(weft_event_destroy(&e));
    return 0;
}
static void test_event(void)
{
    CHECK_OK(weft_loop_run(main_event, NULL, NULL));
}

static int barrier_wait(void *arg, void **result)
{
    (void)result;
    return weft_barrier_wait(arg);
}
static int main_barrier(void *arg, void **result)
{
    (void)arg;
    (void)result;
    weft_barrier_t b;
    CHECK_OK(weft_barrier_init(&b, 2, NULL, NULL));
    CHECK_RC(cancel_blocked(barrier_wait, &b), -ECANCELED);
    /* As on a timeout: the round cannot complete, so the barrier breaks. */
    CHECK(weft_barrier_is_broken(&b));
    CHECK_INT(weft_barrier_n_waiting(&b), ==, 0);
    CHECK_OK(weft_barrier_reset(&b));
    CHECK(!weft_barrier_is_broken(&b));
    CHECK_OK(weft_barrier_destroy(&b));
    return 0;
}
static void test_barrier(void)
{
    CHECK_OK(weft_loop_run(main_barrier, NULL, NULL));
}

static int latch_wait(void *arg, void **result)
{
    (void)result;
    return weft_latch_wait(arg);
}
static int wg_wait(void *arg, void **result)
{
    (void)result;
    return weft_waitgroup_wait(arg);
}
static int main_latch_wg(void *arg, void **result)
{
    (void)arg;
    (void)result;
    weft_latch_t l;
    weft_latch_init(&l, 1);
    CHECK_RC(cancel_blocked(latch_wait, &l), -ECANCELED);
    CHECK_RC(weft_latch_wait_try(&l), -EAGAIN);
    CHECK_OK(weft_latch_count_down(&l, 1));
    CHECK_OK(weft_latch_wait(&l));
    CHECK_OK(weft_latch_destroy(&l));

    weft_waitgroup_t wg;
    weft_waitgroup_init(&wg);
    CHECK_OK(weft_waitgroup_add(&wg, 1));
    CHECK_RC(cancel_blocked(wg_wait, &wg), -ECANCELED);
    CHECK_INT(weft_waitgroup_count(&wg), ==, 1);
    CHECK_OK(weft_waitgroup_done(&wg));
    CHECK_OK(weft_waitgroup_wait(&wg));
    CHECK_OK(weft_waitgroup_destroy(&wg));
    return 0;
}
static void test_latch_waitgroup(void)
{
    CHECK_OK(weft_loop_run(main_latch_wg, NULL, NULL));
}

/* ---- channels and select ------------------------------------------------------------- */

struct chanarg {
    weft_chan_t *ch, *ch2;
    long v;
};
static int chan_recv(void *arg, void **result)
{
    (void)result;
    struct chanarg *a = arg;
    return weft_chan_recv(a->ch, &a->v);
}
static int chan_send(void *arg, void **result)
{
    (void)result;
    struct chanarg *a = arg;
    return weft_chan_send(a->ch, &a->v);
}
static int chan_select(void *arg, void **result)
{
    (void)result;
    struct chanarg *a = arg;
    long x = 0, y = 0;
    weft_select_case_t cs[2] = {{a->ch, WEFT_SELECT_RECV, &x, 0},
                                {a->ch2, WEFT_SELECT_RECV, &y, 0}};
    return weft_chan_select(cs, 2);
}
static int main_chan(void *arg, void **result)
{
    (void)arg;
    (void)result;
    struct chanarg a = {0};
    /* Unbuffered: a cancelled receiver leaves the queue; a later send
     * finds nobody (the element is not swallowed by the ghost). */
    CHECK_OK(weft_chan_create(&a.ch, sizeof(long), 0));
    CHECK_RC(cancel_blocked(chan_recv, &a), -ECANCELED);
    long v = 42;
    CHECK_RC(weft_chan_send_try(a.ch, &v), -EAGAIN);
    /* A cancelled sender: its element is not delivered to a later receiver. */
    a.v = 7;
    CHECK_RC(cancel_blocked(chan_send, &a), -ECANCELED);
    CHECK_RC(weft_chan_recv_try(a.ch, &v), -EAGAIN);
    weft_chan_release(a.ch);

    /* Buffered and full: the cancelled send adds nothing; the element
     * already there is received exactly once. */
    CHECK_OK(weft_chan_create(&a.ch, sizeof(long), 1));
    v = 1;
    CHECK_OK(weft_chan_send(a.ch, &v));
    a.v = 2;
    CHECK_RC(cancel_blocked(chan_send, &a), -ECANCELED);
    CHECK_INT(weft_chan_len(a.ch), ==, 1);
    v = 0;
    CHECK_OK(weft_chan_recv_try(a.ch, &v));
    CHECK_INT(v, ==, 1);
    CHECK_RC(weft_chan_recv_try(a.ch, &v), -EAGAIN);
    /* Buffered and empty: a cancelled receive; a later element stays. */
    CHECK_RC(cancel_blocked(chan_recv, &a), -ECANCELED);
    v = 3;
    CHECK_OK(weft_chan_send(a.ch, &v));
    CHECK_INT(weft_chan_len(a.ch), ==, 1);
    CHECK_OK(weft_chan_recv(a.ch, &v));
    CHECK_INT(v, ==, 3);

    /* Select over two channels. */
    CHECK_OK(weft_chan_create(&a.ch2, sizeof(long), 0));
    CHECK_RC(cancel_blocked(chan_select, &a), -ECANCELED);
    v = 4;
    CHECK_RC(weft_chan_send_try(a.ch2, &v), -EAGAIN);
    CHECK_OK(weft_chan_send(a.ch, &v));
    CHECK_INT(weft_chan_len(a.ch), ==, 1);
    weft_chan_release(a.ch);
    weft_chan_release(a.ch2);
    return 0;
}
static void test_chan(void)
{
    CHECK_OK(weft_loop_run(main_chan, NULL, NULL));
}

/* ---- futures and weft_sleep ------------------------------------------------------------ */

static int future_wait(void *arg, void **result)
{
    (void)result;
    return weft_future_wait(arg);
}
static int sleep_long(void *arg, void **result)
{
    (void)arg;
    (void)result;
    return weft_sleep(30);
}
static int main_future_sleep(void *arg, void **result)
{
    (void)arg;
    (void)result;
    weft_future_t *f;
    CHECK_OK(weft_future_create(&f));
    CHECK_RC(cancel_blocked(future_wait, f), -ECANCELED);
    CHECK(!weft_future_done(f));
    CHECK_OK(weft_future_set_result(f, (void *)5));
    CHECK_OK(weft_future_wait(f));
    weft_future_release(f);
    CHECK_RC(cancel_blocked(sleep_long, NULL), -ECANCELED);
    return 0;
}
static void test_future_sleep(void)
{
    CHECK_OK(weft_loop_run(main_future_sleep, NULL, NULL));
}

/* ---- a shield holds it off ------------------------------------------------------------------ */

struct shieldarg {
    weft_sem_t s;
    int in_shield;  /* what the acquire inside the shield returned */
    int after;      /* what the next wait returned after the shield */
};
static int shielded_acquire(void *arg, void **result)
{
    (void)result;
    struct shieldarg *a = arg;
    weft_co_scope_t sh;
    CHECK_OK(weft_co_shield_begin(&sh));
    a->in_shield = weft_sem_acquire(&a->s);
    int e = weft_co_scope_end(&sh);
    CHECK_RC(e, -ECANCELED); /* the cancellation is in force again */
    a->after = weft_sem_acquire(&a->s);
    return a->after;
}
static int main_shield(void *arg, void **result)
{
    (void)arg;
    (void)result;
    struct shieldarg a = {.in_shield = 99, .after = 99};
    weft_sem_init(&a.s, 0);
    weft_task_t *t;
    CHECK_OK(weft_co_spawn(&t, shielded_acquire, &a, "shielded", 0));
    for (int i = 0; i < 3; i++)
        CHECK_OK(weft_co_yield());
    CHECK_OK(weft_task_cancel(t));
    for (int i = 0; i < 3; i++)
        CHECK_OK(weft_co_yield());
    CHECK(!weft_task_done(t)); /* still waiting inside the shield */
    CHECK_INT(a.in_shield, ==, 99);
    CHECK_OK(weft_sem_release(&a.s));
    CHECK_RC(weft_co_await(t, NULL), -ECANCELED);
    weft_task_release(t);
    CHECK_INT(a.in_shield, ==, 0);
    CHECK_RC(a.after, -ECANCELED);
    CHECK_INT(weft_sem_value(&a.s), ==, 0);
    weft_sem_destroy(&a.s);
    return 0;
}
static void test_shield(void)
{
    CHECK_OK(weft_loop_run(main_shield, NULL, NULL));
}

/* ---- a plain thread never sees -ECANCELED ------------------------------------------------- */

static void *thread_locker(void *arg)
{
    int r = weft_mutex_lock_until(arg, weft_deadline_in_ms(20));
    return (void *)(intptr_t)r;
}
static void test_thread_unchanged(void)
{
    weft_mutex_t m;
    weft_mutex_init(&m);
    CHECK_OK(weft_mutex_lock(&m));
    pthread_t th;
    pthread_create(&th, NULL, thread_locker, &m);
    void *r;
    pthread_join(th, &r);
    CHECK_RC((int)(intptr_t)r, -ETIMEDOUT);
    CHECK_OK(weft_mutex_unlock(&m));
    weft_mutex_destroy(&m);
}

/* ---- a scope and a primitive's infinite wait ------------------------------------------ */

/* An expired scope does not cut a primitive's wait without a deadline, and
 * then weft_co_scope_end says 0, not -ETIMEDOUT (it used to mark the scope
 * expired for that wait all the same). */
static weft_mutex_t scope_m = WEFT_MUTEX_INIT;
static int scope_holder(void *arg, void **result)
{
    (void)arg;
    (void)result;
    CHECK_OK(weft_mutex_lock(&scope_m));
    CHECK_OK(weft_co_yield()); /* main blocks on scope_m meanwhile */
    CHECK_OK(weft_mutex_unlock(&scope_m));
    return 0;
}
static int main_scope_infinite(void *arg, void **result)
{
    (void)arg;
    (void)result;
    weft_task_t *h;
    CHECK_OK(weft_co_spawn(&h, scope_holder, NULL, "holder", 0));
    CHECK_OK(weft_co_yield()); /* the holder takes the lock */
    weft_co_scope_t sc;
    CHECK_OK(weft_co_scope_begin(&sc, weft_now())); /* expired already */
    CHECK_OK(weft_mutex_lock(&scope_m));            /* waits: not cut */
    CHECK_OK(weft_mutex_unlock(&scope_m));
    CHECK_OK(weft_co_scope_end(&sc));               /* nothing was cut */
    /* A finite wait is cut, and then the scope says so. */
    CHECK_OK(weft_co_scope_begin(&sc, weft_now()));
    CHECK_RC(weft_co_sleep(1), -ETIMEDOUT);
    CHECK_RC(weft_co_scope_end(&sc), -ETIMEDOUT);
    CHECK_OK(weft_co_await(h, NULL));
    weft_task_release(h);
    return 0;
}
static void test_scope_infinite_wait(void)
{
    CHECK_OK(weft_loop_run(main_scope_infinite, NULL, NULL));
}

/* ---- a thread join in a cancelled coroutine ------------------------------------------- */

/* weft_thread_join cannot say -ECANCELED: a finite join_until in a
 * cancelled coroutine ends once at once with -ETIMEDOUT (so the task can
 * go on to a suspension point that says -ECANCELED); later ones wait to
 * their deadline, and a join without a deadline is not interrupted
 * (docs/loop.md, co.h). */
static weft_event_t join_go;
static void *join_target(void *arg)
{
    (void)arg;
    weft_event_wait(&join_go);
    return (void *)42;
}
static int joiner(void *arg, void **result)
{
    (void)result;
    weft_thread_t *th = arg;
    CHECK_RC(weft_co_sleep(30), -ECANCELED); /* cancelled here */
    void *v = NULL;
    CHECK_RC(weft_thread_join_until(th, &v, weft_deadline_in(30)), -ETIMEDOUT); /* at once */
    CHECK(v == NULL);
    CHECK_OK(weft_event_set(&join_go));
    CHECK_OK(weft_thread_join_until(th, &v, weft_deadline_in(30))); /* waits: the thread ends */
    CHECK(v == (void *)42);
    return -ECANCELED;
}
static int main_join(void *arg, void **result)
{
    (void)arg;
    (void)result;
    weft_event_init(&join_go);
    weft_thread_t *th;
    CHECK_OK(weft_thread_start(&th, join_target, NULL, NULL));
    weft_task_t *t;
    CHECK_OK(weft_co_spawn(&t, joiner, th, "joiner", 0));
    CHECK_OK(weft_co_yield()); /* it sleeps */
    weft_time_t t0 = weft_now();
    CHECK_OK(weft_task_cancel(t));
    CHECK_RC(weft_co_await(t, NULL), -ECANCELED);
    CHECK_INT(weft_now() - t0, <, 20000000000LL); /* not the 30 s deadline */
    weft_task_release(t);
    weft_event_destroy(&join_go);
    return 0;
}
static void test_thread_join_cancelled(void)
{
    CHECK_OK(weft_loop_run(main_join, NULL, NULL));
}

/* ---- the end of weft_loop_run and task groups reach blocked children --------------------- */

static weft_mutex_t held_forever = WEFT_MUTEX_INIT;
static _Atomic int stuck_rc = 1;
static int stuck(void *arg, void **result)
{
    (void)arg;
    (void)result;
    int r = weft_mutex_lock(&held_forever);
    atomic_store(&stuck_rc, r);
    return r;
}
static int main_leaves_stuck(void *arg, void **result)
{
    (void)arg;
    (void)result;
    CHECK_OK(weft_co_spawn(NULL, stuck, NULL, "stuck", 0));
    CHECK_OK(weft_co_yield());
    return 0; /* the loop's final cancel must end the stuck child */
}
static _Atomic int members_cancelled;
static int group_member(void *arg, void **result)
{
    (void)result;
    int r = weft_sem_acquire(arg);
    if (r == -ECANCELED)
        atomic_fetch_add(&members_cancelled, 1);
    return r;
}
static int main_group(void *arg, void **result)
{
    (void)arg;
    (void)result;
    weft_sem_t s;
    weft_sem_init(&s, 0);
    weft_co_group_t *g;
    CHECK_OK(weft_co_group_create(&g));
    atomic_store(&members_cancelled, 0);
    for (int i = 0; i < 10; i++)
        CHECK_OK(weft_co_group_spawn(g, NULL, group_member, &s, "member", 0));
    CHECK_OK(weft_co_yield());
    CHECK_OK(weft_co_group_cancel(g));
    CHECK_OK(weft_co_group_wait(g));
    CHECK_INT(atomic_load(&members_cancelled), ==, 10); /* every child's acquire: -ECANCELED */
    CHECK_OK(weft_co_group_free(g));
    CHECK_INT(weft_sem_value(&s), ==, 0);
    weft_sem_destroy(&s);
    return 0;
}
static void test_run_end_and_group(void)
{
    CHECK_OK(weft_mutex_lock(&held_forever)); /* held by the test thread */
    weft_loop_stats_t st;
    weft_loop_opts_t o = {.stats = &st};
    CHECK_OK(weft_loop_run(main_leaves_stuck, NULL, &o));
    CHECK_RC(atomic_load(&stuck_rc), -ECANCELED);
    CHECK_U64(st.tasks_cancelled, ==, 1);
    CHECK_OK(weft_mutex_unlock(&held_forever));
    CHECK(!weft_mutex_is_locked(&held_forever));
    CHECK_OK(weft_loop_run(main_group, NULL, NULL));
}

int main(void)
{
    co_check_backend(); /* skips where io_uring cannot start; fails on a silent fallback */
    RUN(test_mutex);
    RUN(test_rmutex);
    RUN(test_rwlock);
    RUN(test_sem);
    RUN(test_cond);
    RUN(test_event);
    RUN(test_barrier);
    RUN(test_latch_waitgroup);
    RUN(test_chan);
    RUN(test_future_sleep);
    RUN(test_shield);
    RUN(test_thread_unchanged);
    RUN(test_thread_join_cancelled);
    RUN(test_scope_infinite_wait);
    RUN(test_run_end_and_group);
    return check_done();
}
