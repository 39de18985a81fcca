/*
 * test_co.c - coroutines on a loop: run, spawn (parked, FIFO), yield,
 * sleep, await, cancellation, shields, deadline scopes, the wait_for race,
 * task groups, call_soon_threadsafe, run_in_pool, fd waits, statistics.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>
#include <stdatomic.h>
#include <weft.h>

#include "co_check.h"
#include "co/internal.h"

/* ---- basics ---------------------------------------------------------------- */

static int ret_arg(void *arg, void **result)
{
    *result = arg;
    return 0;
}

static int fail_with(void *arg, void **result)
{
    (void)result;
    return (int)(intptr_t)arg;
}

static const char *expected_backend;

static int main_backend(void *arg, void **result)
{
    (void)arg;
    (void)result;
    const char *b = weft_loop_backend(weft_loop_current());
    CHECK(b != NULL && strcmp(b, expected_backend) == 0);
    return 0;
}

/* The loops of this run use the backend that ctest asked for. */
static void test_backend_used(void)
{
    weft_loop_stats_t st;
    weft_loop_opts_t o = {.stats = &st};
    CHECK_OK(weft_loop_run(main_backend, NULL, &o));
    CHECK(strcmp(st.backend, expected_backend) == 0);
    CHECK_INT(st.backend_note[0], ==, 0);
}

static void test_run_returns_main(void)
{
    CHECK_OK(weft_loop_run(ret_arg, NULL, NULL));
    CHECK_RC(weft_loop_run(fail_with, (void *)(intptr_t)-EIO, NULL), -EIO);
    CHECK_RC(weft_loop_run(NULL, NULL, NULL), -EINVAL);
    CHECK(weft_loop_current() == NULL);
}

/* Spawned tasks start parked and run in FIFO order when the spawner yields. */
struct order {
    int log[64];
    int n;
};
struct order_arg {
    struct order *o;
    int id;
    int yields;
};
static int log_task(void *arg, void **result)
{
    (void)result;
    struct order_arg *a = arg;
    a->o->log[a->o->n++] = a->id;
    for (int i = 0; i < a->yields; i++) {
        weft_co_yield();
        a->o->log[a->o->n++] = a->id;
    }
    return 0;
}

static int main_fifo(void *arg, void **result)
{
    (void)result;
    struct order *o = arg;
    struct order_arg a[3] = {{o, 1, 1}, {o, 2, 1}, {o, 3, 1}};
    weft_task_t *t[3];
    for (int i = 0; i < 3; i++)
        CHECK_OK(weft_co_spawn(&t[i], log_task, &a[i], "logger", 0));
    o->log[o->n++] = 0; /* nothing ran yet: they are parked */
    CHECK_OK(weft_co_yield());
    o->log[o->n++] = 0;
    for (int i = 0; i < 3; i++) {
        CHECK_OK(weft_co_await(t[i], NULL));
        CHECK(weft_task_done(t[i]));
        weft_task_release(t[i]);
    }
    return 0;
}

static void test_spawn_parked_fifo(void)
{
    struct order o = {{0}, 0};
    CHECK_OK(weft_loop_run(main_fifo, &o, NULL));
    int want[] = {0, 1, 2, 3, 0, 1, 2, 3};
    CHECK_INT(o.n, ==, 8);
    for (int i = 0; i < 8; i++)
        CHECK_INT(o.log[i], ==, want[i]);
}

/* Sleeps wake in deadline order, and never early. */
struct sl {
    struct order *o;
    int ms;
    weft_time_t at; /* absolute deadline, or 0: ms from when it starts */
};
static int sleeper(void *arg, void **result)
{
    (void)result;
    struct sl *s = arg;
    weft_time_t d = s->at ? s->at : weft_deadline_in_ms(s->ms);
    CHECK_OK(weft_co_sleep_until(d));
    CHECK_INT(weft_now(), >=, d);
    s->o->log[s->o->n++] = s->ms;
    return 0;
}
static int main_sleep(void *arg, void **result)
{
    (void)result;
    struct order *o = arg;
    static struct sl s[5];
    int ms[5] = {30, 10, 50, 20, 40};
    weft_time_t base = weft_now(); /* absolute: however slowly they start */
    for (int i = 0; i < 5; i++) {
        s[i] = (struct sl){o, ms[i], base + ms[i] * 1000000LL};
        CHECK_OK(weft_co_spawn(NULL, sleeper, &s[i], "sleeper", 0));
    }
    CHECK_OK(weft_co_sleep_until(base + 80000000));
    return 0;
}
static void test_sleep_order(void)
{
    struct order o = {{0}, 0};
    CHECK_OK(weft_loop_run(main_sleep, &o, NULL));
    CHECK_INT(o.n, ==, 5);
    for (int i = 0; i < 5; i++)
        CHECK_INT(o.log[i], ==, 10 * (i + 1));
}

/* ---- await ---------------------------------------------------------------- */

static int main_await(void *arg, void **result)
{
    (void)arg;
    (void)result;
    weft_task_t *t;
    CHECK_OK(weft_co_spawn(&t, ret_arg, (void *)0x1234, "ret", 0));
    void *v = NULL;
    CHECK_OK(weft_co_await(t, &v));
    CHECK(v == (void *)0x1234);
    CHECK_OK(weft_co_await(t, &v)); /* again: same outcome */
    CHECK(weft_future_done(weft_task_future(t)));
    CHECK(strcmp(weft_task_name(t), "ret") == 0);
    weft_task_release(t);
    CHECK_OK(weft_co_spawn(&t, fail_with, (void *)(intptr_t)-EIO, NULL, 0));
    CHECK_RC(weft_co_await(t, &v), -EIO);
    CHECK(strncmp(weft_task_name(t), "co#", 3) == 0);
    weft_task_release(t);
    CHECK_RC(weft_co_await(weft_co_current(), NULL), -EDEADLK);
    CHECK_RC(weft_co_await(NULL, NULL), -EINVAL);
    CHECK_RC(weft_co_await_until(weft_co_current(), NULL, -1), -EINVAL);
    /* A timeout on await: the task goes on. */
    struct order so = {{0}, 0};
    struct sl slow = {&so, 30, 0};
    CHECK_OK(weft_co_spawn(&t, sleeper, &slow, "slow", 0));
    CHECK_RC(weft_co_await_until(t, NULL, weft_deadline_in_ms(5)), -ETIMEDOUT);
    CHECK(!weft_task_done(t));
    CHECK_OK(weft_co_await(t, NULL));
    weft_task_release(t);
    return 0;
}
static void test_await(void)
{
    CHECK_OK(weft_loop_run(main_await, NULL, NULL));
}

/* A thread resolves a future; the coroutine awaits it without blocking the
 * loop (another coroutine keeps ticking meanwhile). The thread resolves once
 * it has seen three ticks (or after 10 s: the check below then fails), so
 * the test does not depend on how fast a loaded machine ticks. */
static _Atomic int ticks_seen;
static weft_future_t *await_fut;
static void *resolve_later(void *arg)
{
    (void)arg;
    weft_time_t give_up = weft_now() + 10000000000LL;
    while (atomic_load(&ticks_seen) <= 2 && weft_now() < give_up)
        weft_sleep(0.001);
    weft_future_set_result(await_fut, (void *)0x77);
    return NULL;
}
static int ticker(void *arg, void **result)
{
    (void)result;
    int *ticks = arg;
    while (weft_co_sleep(0.001) == 0)
        atomic_store(&ticks_seen, ++(*ticks));
    return 0;
}
static int main_await_future(void *arg, void **result)
{
    (void)arg;
    (void)result;
    int ticks = 0;
    atomic_store(&ticks_seen, 0);
    weft_task_t *tk;
    CHECK_OK(weft_co_spawn(&tk, ticker, &ticks, "ticker", 0));
    weft_future_t *f;
    CHECK_OK(weft_future_create(&f));
    await_fut = f;
    pthread_t th;
    pthread_create(&th, NULL, resolve_later, f);
    void *v;
    CHECK_OK(weft_co_await_future(f, &v));
    CHECK(v == (void *)0x77);
    CHECK_INT(ticks, >, 2);
    pthread_join(th, NULL);
    weft_future_release(f);
    weft_task_cancel(tk);
    CHECK_OK(weft_co_await(tk, NULL));
    weft_task_release(tk);
    return 0;
}
static void test_await_future(void)
{
    CHECK_OK(weft_loop_run(main_await_future, NULL, NULL));
}

/* ---- cancellation ------------------------------------------------------------ */

static int sleep_long(void *arg, void **result)
{
    (void)result;
    int *seen = arg;
    int r = weft_co_sleep(10);
    if (seen)
        *seen = r;
    /* Level-triggered: every later suspension point sees it too. */
    CHECK_RC(weft_co_yield(), -ECANCELED);
    CHECK_RC(weft_co_sleep(0), -ECANCELED);
    CHECK(weft_co_cancelled());
    return r;
}
static int never_runs(void *arg, void **result)
{
    (void)result;
    *(int *)arg = 1;
    return 0;
}
static void *cancel_future_thread(void *arg)
{
    CHECK_RC(weft_future_cancel(arg), -EBUSY);
    return NULL;
}
static int main_cancel(void *arg, void **result)
{
    (void)arg;
    (void)result;
    int seen = 0;
    weft_task_t *t;
    CHECK_OK(weft_co_spawn(&t, sleep_long, &seen, "sleep-long", 0));
    CHECK_OK(weft_co_yield()); /* it starts and sleeps */
    weft_time_t t0 = weft_now();
    CHECK_OK(weft_task_cancel(t));
    CHECK_OK(weft_task_cancel(t)); /* twice: harmless */
    CHECK_RC(weft_co_await(t, NULL), -ECANCELED);
    CHECK_INT(weft_now() - t0, <, 5000000000LL);
    CHECK_RC(seen, -ECANCELED);
    CHECK(weft_future_cancelled(weft_task_future(t)));
    CHECK_RC(weft_task_cancel(t), -EALREADY); /* finished */
    weft_task_release(t);
    /* Cancelled before it first runs: never runs. */
    int ran = 0;
    CHECK_OK(weft_co_spawn(&t, never_runs, &ran, "never", 0));
    CHECK_OK(weft_task_cancel(t));
    CHECK_RC(weft_co_await(t, NULL), -ECANCELED);
    CHECK_INT(ran, ==, 0);
    weft_task_release(t);
    CHECK_RC(weft_task_cancel(NULL), -EINVAL);

    /* weft_future_cancel on the task's future acts as weft_task_cancel:
     * it ends a wait in progress (it used to set a flag that only the next
     * suspension point saw: a sleep ran to its end and said 0). On this
     * loop, and from another thread. */
    for (int from_thread = 0; from_thread < 2; from_thread++) {
        seen = 0;
        CHECK_OK(weft_co_spawn(&t, sleep_long, &seen, "sleep-long", 0));
        CHECK_OK(weft_co_yield()); /* it starts and sleeps */
        weft_future_t *f = weft_task_future(t);
        if (from_thread) {
            pthread_t th;
            CHECK_OK(pthread_create(&th, NULL, cancel_future_thread, f));
            CHECK_OK(pthread_join(th, NULL));
        } else {
            CHECK_RC(weft_future_cancel(f), -EBUSY); /* running: asked to stop */
        }
        CHECK_RC(weft_co_await_until(t, NULL, weft_deadline_in(5)), -ECANCELED);
        CHECK_RC(seen, -ECANCELED);
        CHECK(weft_future_cancelled(f));
        CHECK_OK(weft_future_cancel(f)); /* already cancelled: 0 */
        weft_task_release(t);
    }
    return 0;
}
static void test_cancel(void)
{
    CHECK_OK(weft_loop_run(main_cancel, NULL, NULL));
}

/* A shield holds cancellation off for cleanup; it takes effect after. */
static int shielded(void *arg, void **result)
{
    (void)result;
    int *stage = arg;
    int r = weft_co_sleep(10);
    CHECK_RC(r, -ECANCELED);
    weft_co_scope_t sh;
    CHECK_OK(weft_co_shield_begin(&sh));
    CHECK_OK(weft_co_sleep(0.005)); /* cleanup that must suspend */
    CHECK_OK(weft_co_yield());
    *stage = 1;
    CHECK_RC(weft_co_scope_end(&sh), -ECANCELED); /* still cancelled after */
    CHECK_RC(weft_co_yield(), -ECANCELED);
    return -ECANCELED;
}
static int main_shield(void *arg, void **result)
{
    (void)arg;
    (void)result;
    int stage = 0;
    weft_task_t *t;
    CHECK_OK(weft_co_spawn(&t, shielded, &stage, "shielded", 0));
    CHECK_OK(weft_co_yield());
    CHECK_OK(weft_task_cancel(t));
    CHECK_RC(weft_co_await(t, NULL), -ECANCELED);
    CHECK_INT(stage, ==, 1);
    weft_task_release(t);
    return 0;
}
static void test_shield(void)
{
    CHECK_OK(weft_loop_run(main_shield, NULL, NULL));
}

/* A deadline scope covers several operations. */
static int main_scope(void *arg, void **result)
{
    (void)arg;
    (void)result;
    weft_co_scope_t s;
    weft_time_t t0 = weft_now();
    CHECK_OK(weft_co_scope_begin(&s, weft_deadline_in_ms(200)));
    int done = 0;
    for (int i = 0; i < 10; i++) {
        int r = weft_co_sleep(0.05); /* 10 x 50 ms does not fit in 200 ms */
        if (r == -ETIMEDOUT)
            break;
        CHECK_OK(r);
        done++;
    }
    CHECK_RC(weft_co_yield(), -ETIMEDOUT); /* level-triggered inside */
    CHECK_RC(weft_co_scope_end(&s), -ETIMEDOUT);
    CHECK_INT(done, <=, 4); /* (at least one only if the host let it run in time) */
    CHECK_INT(weft_now() - t0, >=, 200000000);
    CHECK_OK(weft_co_yield()); /* outside the scope: fine again */
    /* A scope that does not expire. */
    CHECK_OK(weft_co_scope_begin(&s, weft_deadline_in(10)));
    CHECK_OK(weft_co_sleep(0.001));
    CHECK_OK(weft_co_scope_end(&s));
    /* Nesting: the inner ends first; ending the outer first is refused. */
    weft_co_scope_t a, b;
    CHECK_OK(weft_co_scope_begin(&a, WEFT_FOREVER));
    CHECK_OK(weft_co_scope_begin(&b, weft_deadline_in_ms(1)));
    CHECK_RC(weft_co_scope_end(&a), -EINVAL);
    CHECK_RC(weft_co_sleep(1), -ETIMEDOUT);
    CHECK_RC(weft_co_scope_end(&b), -ETIMEDOUT);
    CHECK_OK(weft_co_scope_end(&a));
    /* An already-passed deadline, and misuse. */
    CHECK_OK(weft_co_scope_begin(&s, 0));
    CHECK_RC(weft_co_sleep(0), -ETIMEDOUT);
    CHECK_RC(weft_co_scope_end(&s), -ETIMEDOUT);
    CHECK_RC(weft_co_scope_begin(&s, -5), -EINVAL);
    CHECK_RC(weft_co_scope_begin(NULL, 0), -EINVAL);
    CHECK_RC(weft_co_scope_end(NULL), -EINVAL);
    return 0;
}
static void test_scope(void)
{
    CHECK_OK(weft_loop_run(main_scope, NULL, NULL));
}

/* The wait_for race: a cancellation and the scope's deadline at the same
 * time. The cancellation must never be lost: either scope_end reports it
 * (it wins over the timeout), or, if the timeout was reported before the
 * cancellation arrived, the next suspension point reports it. */
static int racer(void *arg, void **result)
{
    (void)result;
    weft_time_t d = ((weft_time_t *)arg)[0];
    bool both = ((weft_time_t *)arg)[1];
    weft_co_scope_t s;
    CHECK_OK(weft_co_scope_begin(&s, d));
    /* On a slow machine (TSan, load) the racer may get here only after d:
     * its sleep then times out before the cancel can come, which is the
     * other legal outcome, not the race under test. */
    bool in_time = weft_now() < d;
    int r = weft_co_sleep_until(d + 1000000000); /* cut short by d or by cancel */
    CHECK(r == -ETIMEDOUT || r == -ECANCELED);
    int e = weft_co_scope_end(&s);
    CHECK(e == -ETIMEDOUT || e == -ECANCELED);
    if (both && in_time)
        CHECK_RC(e, -ECANCELED); /* cancel and deadline together: cancel wins */
    if (e == -ETIMEDOUT)
        CHECK(!weft_co_cancelled()); /* a timeout is reported only if not cancelled */
    int later = weft_co_sleep(10);
    CHECK_RC(later, -ECANCELED); /* never swallowed */
    return later;
}
static int main_race(void *arg, void **result)
{
    (void)arg;
    (void)result;
    for (int i = 0; i < 60; i++) {
        weft_time_t a[2] = {weft_deadline_in_ms(2), i % 3 == 0};
        weft_time_t d = a[0];
        weft_task_t *t;
        CHECK_OK(weft_co_spawn(&t, racer, a, "racer", 0));
        if (i % 3 == 0) {
            /* Both at once: wake a little before d and spin past it, so the
             * racer's timer is due but has not fired when the cancel comes. */
            CHECK_OK(weft_co_sleep_until(d - 500000));
            while (weft_now() < d)
                ;
        } else {
            CHECK_OK(weft_co_sleep_until(d + (i % 3 - 1) * 100000));
        }
        weft_task_cancel(t);
        CHECK_RC(weft_co_await(t, NULL), -ECANCELED);
        weft_task_release(t);
    }
    return 0;
}
/* The same race with a call's own deadline: the victim's timer has fired
 * (it is queued to run again) when the cancellation comes. Its wait says
 * -ECANCELED, not -ETIMEDOUT: cancellation wins here too. For a weft_co_*
 * wait (weft_co_wait_fd) and a primitive's (event_wait_until). */
static weft_event_t never_set;
static int never_read; /* a pipe's read end that nothing is written to */
static int own_deadline_victim(void *arg, void **result)
{
    (void)result;
    weft_time_t d = ((weft_time_t *)arg)[0];
    if (((weft_time_t *)arg)[1])
        return weft_event_wait_until(&never_set, d);
    return weft_co_wait_fd(never_read, WEFT_IO_READ, d);
}
static int main_race_own(void *arg, void **result)
{
    (void)arg;
    (void)result;
    weft_event_init(&never_set);
    int p[2];
    CHECK_OK(pipe(p));
    never_read = p[0];
    int raced = 0;
    for (int i = 0; i < 20; i++) {
        weft_time_t a[2] = {weft_deadline_in_ms(5), i & 1};
        weft_task_t *t;
        CHECK_OK(weft_co_spawn(&t, own_deadline_victim, a, "victim", 0));
        CHECK_OK(weft_co_yield()); /* it waits, until a[0] */
        if (weft_task_done(t)) {
            /* It ran only after a[0] (a slow machine): it timed out at
             * once, which is not the race under test. */
            CHECK_RC(weft_co_await(t, NULL), -ETIMEDOUT);
            weft_task_release(t);
            continue;
        }
        while (weft_now() < a[0] + 200000)
            ; /* past its deadline without a turn: its timer is due */
        CHECK_OK(weft_co_yield()); /* the turn fires it: queued behind us */
        CHECK(!weft_task_done(t));
        CHECK_OK(weft_task_cancel(t));
        CHECK_RC(weft_co_await(t, NULL), -ECANCELED);
        weft_task_release(t);
        raced++;
    }
    CHECK_INT(raced, >, 0);
    weft_event_destroy(&never_set);
    close(p[0]);
    close(p[1]);
    return 0;
}
static void test_wait_for_race(void)
{
    CHECK_OK(weft_loop_run(main_race, NULL, NULL));
    CHECK_OK(weft_loop_run(main_race_own, NULL, NULL));
}

/* ---- task groups --------------------------------------------------------------- */

struct gstat {
    int cancelled;
    int finished;
};
static int g_sleeper(void *arg, void **result)
{
    (void)result;
    struct gstat *s = arg;
    int r = weft_co_sleep(5);
    if (r == -ECANCELED)
        s->cancelled++;
    else
        s->finished++;
    return r;
}
static int g_fail(void *arg, void **result)
{
    (void)arg;
    (void)result;
    weft_co_sleep(0.005);
    return -EIO;
}
static int g_fail2(void *arg, void **result)
{
    (void)arg;
    (void)result;
    weft_co_sleep(0.010);
    return -ENOSPC; /* cancelled before it fails, or a later error: never first */
}
static int main_group(void *arg, void **result)
{
    (void)arg;
    (void)result;
    struct gstat s = {0, 0};
    weft_co_group_t *g;
    CHECK_OK(weft_co_group_create(&g));
    for (int i = 0; i < 10; i++)
        CHECK_OK(weft_co_group_spawn(g, NULL, g_sleeper, &s, "child", 0));
    CHECK_OK(weft_co_group_spawn(g, NULL, g_fail, NULL, "failer", 0));
    CHECK_OK(weft_co_group_spawn(g, NULL, g_fail2, NULL, "failer2", 0));
    weft_time_t t0 = weft_now();
    CHECK_RC(weft_co_group_wait(g), -EIO);
    CHECK_INT(weft_now() - t0, <, 2000000000LL);
    CHECK_INT(s.cancelled, ==, 10);
    CHECK_RC(weft_co_group_spawn(g, NULL, g_sleeper, &s, "late", 0), -ECANCELED);
    CHECK_OK(weft_co_group_free(g));
    /* All succeed. */
    CHECK_OK(weft_co_group_create(&g));
    for (int i = 0; i < 5; i++)
        CHECK_OK(weft_co_group_spawn(g, NULL, ret_arg, NULL, "ok", 0));
    CHECK_RC(weft_co_group_free(g), -EBUSY);
    CHECK_OK(weft_co_group_wait(g));
    CHECK_OK(weft_co_group_wait(g)); /* again: nothing pending */
    CHECK_OK(weft_co_group_free(g));
    return 0;
}
static void test_group(void)
{
    CHECK_OK(weft_loop_run(main_group, NULL, NULL));
}

/* One waiter at a time: a second coroutine's group_wait is -EBUSY (it used
 * to overwrite the first's wake, which then never came), and group_free
 * is -EBUSY while the woken waiter has not returned yet (it still reads
 * the group: freeing it there was a use after free). */
static weft_event_t g_go;
static int g_until_go(void *arg, void **result)
{
    (void)arg;
    (void)result;
    return weft_event_wait(&g_go);
}
static int g_first_waiter(void *arg, void **result)
{
    (void)result;
    return weft_co_group_wait(arg);
}
static int main_group_waiters(void *arg, void **result)
{
    (void)arg;
    (void)result;
    weft_event_init(&g_go);
    weft_co_group_t *g;
    CHECK_OK(weft_co_group_create(&g));
    CHECK_OK(weft_co_group_spawn(g, NULL, g_until_go, NULL, "child", 0));
    weft_task_t *w;
    CHECK_OK(weft_co_spawn(&w, g_first_waiter, g, "waiter", 0));
    CHECK_OK(weft_co_yield()); /* the child, then the waiter, run and wait */
    /* A scope: without the -EBUSY this wait would take the wake away and
     * last until the scope ends. */
    weft_co_scope_t sc;
    CHECK_OK(weft_co_scope_begin(&sc, weft_deadline_in(2.0)));
    CHECK_RC(weft_co_group_wait(g), -EBUSY);
    CHECK_OK(weft_co_scope_end(&sc));
    CHECK_RC(weft_co_group_free(g), -EBUSY); /* a child runs */
    CHECK_OK(weft_event_set(&g_go));
    /* FIFO: the child runs (and finishes, which wakes the waiter) before
     * this coroutine; the waiter runs after it. */
    CHECK_OK(weft_co_yield());
    CHECK_RC(weft_co_group_free(g), -EBUSY); /* the waiter has not returned */
    CHECK_OK(weft_co_await(w, NULL));
    weft_task_release(w);
    CHECK_OK(weft_co_group_free(g));
    return 0;
}
static void test_group_waiters(void)
{
    for (int i = 0; i < 20; i++)
        CHECK_OK(weft_loop_run(main_group_waiters, NULL, NULL));
}

/* The waiter of a group is cancelled: children are cancelled, all waited. */
static int group_owner(void *arg, void **result)
{
    (void)result;
    struct gstat *s = arg;
    weft_co_group_t *g;
    CHECK_OK(weft_co_group_create(&g));
    for (int i = 0; i < 4; i++)
        CHECK_OK(weft_co_group_spawn(g, NULL, g_sleeper, s, "child", 0));
    int r = weft_co_group_wait(g);
    CHECK_INT(s->cancelled, ==, 4); /* all finished before wait returned */
    CHECK_OK(weft_co_group_free(g));
    return r;
}
static int main_group_cancel(void *arg, void **result)
{
    (void)arg;
    (void)result;
    struct gstat s = {0, 0};
    weft_task_t *t;
    CHECK_OK(weft_co_spawn(&t, group_owner, &s, "owner", 0));
    CHECK_OK(weft_co_sleep(0.005));
    CHECK_OK(weft_task_cancel(t));
    CHECK_RC(weft_co_await(t, NULL), -ECANCELED);
    weft_task_release(t);
    return 0;
}
static void test_group_cancel(void)
{
    CHECK_OK(weft_loop_run(main_group_cancel, NULL, NULL));
}

/* ---- asyncio.run's end: leftovers cancelled, failures reported --------------- */

struct fails {
    int n;
    int err;
    char name[48];
};
static void on_failure(const char *name, int err, void *arg)
{
    struct fails *f = arg;
    f->n++;
    f->err = err;
    snprintf(f->name, sizeof f->name, "%s", name);
}
static int main_leftovers(void *arg, void **result)
{
    (void)result;
    int *seen = arg;
    CHECK_OK(weft_co_spawn(NULL, sleep_long, seen, "leftover", 0));
    CHECK_OK(weft_co_spawn(NULL, fail_with, (void *)(intptr_t)-EPROTO, "doomed", 0));
    CHECK_OK(weft_co_yield());
    return 42;
}
static void test_run_end(void)
{
    int seen = 0;
    struct fails f = {0, 0, ""};
    weft_loop_stats_t st;
    weft_loop_opts_t o = {.on_failure = on_failure, .on_failure_arg = &f, .stats = &st,
                          .name = "end"};
    CHECK_RC(weft_loop_run(main_leftovers, &seen, &o), 42);
    CHECK_RC(seen, -ECANCELED);
    CHECK_INT(f.n, ==, 1);
    CHECK_RC(f.err, -EPROTO);
    CHECK(strcmp(f.name, "doomed") == 0);
    CHECK_U64(st.tasks_spawned, ==, 3);
    CHECK_U64(st.tasks_finished, ==, 3);
    CHECK_U64(st.tasks_live, ==, 0);
    CHECK_U64(st.tasks_failed, ==, 1);
    CHECK_U64(st.tasks_cancelled, ==, 1);
    CHECK_U64(st.switches, >=, 4);
}

/* ---- from outside a coroutine ------------------------------------------------ */

static int main_nested(void *arg, void **result)
{
    (void)arg;
    (void)result;
    CHECK_RC(weft_loop_run(ret_arg, NULL, NULL), -EBUSY);
    return 0;
}
static int mark_ran(void *arg, void **result)
{
    (void)result;
    *(int *)arg = 1;
    return 0;
}

/* More misuse, each with its documented result: the weft_co_* calls of a
 * call_soon function (-EPERM: it must not wait); NaN and negative seconds
 * in a coroutine (-EINVAL); a group child waiting for its own group
 * (-EDEADLK: it used to wait for itself, forever, and the run with it);
 * cancelling a finished task from another thread (-EALREADY); and the
 * mutex a finished coroutine still owns: unlocking it from a plain thread
 * is -EPERM too. */
struct misuse {
    int r_yield, r_sleep, r_wait_fd, r_scope;
    weft_event_t done;
};
static void misuse_soon(void *arg)
{
    struct misuse *m = arg;
    weft_co_scope_t sc;
    m->r_yield = weft_co_yield();
    m->r_sleep = weft_co_sleep(0.001);
    m->r_wait_fd = weft_co_wait_fd(0, WEFT_IO_READ, WEFT_FOREVER);
    m->r_scope = weft_co_scope_begin(&sc, WEFT_FOREVER);
    weft_event_set(&m->done);
}
static weft_co_group_t *self_group;
static int waits_own_group(void *arg, void **result)
{
    (void)arg;
    (void)result;
    return weft_co_group_wait(self_group);
}
static weft_mutex_t kept_mutex;
static int keeps_mutex(void *arg, void **result)
{
    (void)arg;
    (void)result;
    return weft_mutex_lock(&kept_mutex); /* and returns holding it */
}
static void *cancel_finished_thread(void *arg)
{
    return (void *)(intptr_t)weft_task_cancel(arg);
}
static void *unlock_from_thread(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)weft_mutex_unlock(&kept_mutex);
}
static int main_misuse(void *arg, void **result)
{
    (void)arg;
    (void)result;
    struct misuse m = {.r_yield = 1, .r_sleep = 1, .r_wait_fd = 1, .r_scope = 1};
    weft_event_init(&m.done);
    CHECK_OK(weft_loop_call_soon_threadsafe(weft_loop_current(), misuse_soon, &m));
    CHECK_OK(weft_event_wait(&m.done));
    CHECK_RC(m.r_yield, -EPERM);
    CHECK_RC(m.r_sleep, -EPERM);
    CHECK_RC(m.r_wait_fd, -EPERM);
    CHECK_RC(m.r_scope, -EPERM);
    weft_event_destroy(&m.done);

    CHECK_RC(weft_co_sleep(NAN), -EINVAL);
    CHECK_RC(weft_co_sleep(-0.5), -EINVAL);
    CHECK_RC(weft_co_sleep_until(-1), -EINVAL);

    CHECK_OK(weft_co_group_create(&self_group));
    weft_task_t *child;
    CHECK_OK(weft_co_group_spawn(self_group, &child, waits_own_group, NULL, "child", 0));
    CHECK_RC(weft_co_group_wait(self_group), -EDEADLK); /* the child's failure, first */
    CHECK_RC(weft_co_await(child, NULL), -EDEADLK);
    weft_task_release(child);
    CHECK_OK(weft_co_group_free(self_group));

    weft_task_t *t;
    CHECK_OK(weft_co_spawn(&t, ret_arg, NULL, "done", 0));
    CHECK_OK(weft_co_await(t, NULL));
    pthread_t th;
    CHECK_OK(pthread_create(&th, NULL, cancel_finished_thread, t));
    void *v;
    CHECK_OK(pthread_join(th, &v));
    CHECK_RC((int)(intptr_t)v, -EALREADY);
    weft_task_release(t);

    weft_mutex_init(&kept_mutex);
    CHECK_OK(weft_co_spawn(&t, keeps_mutex, NULL, "keeper", 0));
    CHECK_OK(weft_co_await(t, NULL));
    weft_task_release(t);
    CHECK_OK(pthread_create(&th, NULL, unlock_from_thread, NULL));
    CHECK_OK(pthread_join(th, &v));
    CHECK_RC((int)(intptr_t)v, -EPERM);
    CHECK_RC(weft_mutex_unlock(&kept_mutex), -EPERM); /* nor from this coroutine */
    CHECK_RC(weft_mutex_destroy(&kept_mutex), -EBUSY);
    return 0;
}

static void test_outside(void)
{
    CHECK_RC(weft_co_yield(), -EPERM);
    CHECK_RC(weft_co_sleep(0.001), -EPERM);
    CHECK_RC(weft_co_sleep(-1), -EINVAL);
    CHECK_RC(weft_co_sleep_until(-1), -EINVAL);
    weft_future_t *f;
    CHECK_OK(weft_future_create(&f));
    CHECK_RC(weft_co_await_future(f, NULL), -EPERM);
    weft_future_release(f);
    CHECK_RC(weft_co_spawn(NULL, ret_arg, NULL, "x", 0), -EPERM);
    CHECK_RC(weft_co_wait_fd(0, WEFT_IO_READ, WEFT_FOREVER), -EPERM);
    weft_co_scope_t s;
    CHECK_RC(weft_co_scope_begin(&s, WEFT_FOREVER), -EPERM);
    CHECK_RC(weft_co_scope_end(&s), -EPERM);
    weft_co_group_t *g;
    CHECK_RC(weft_co_group_create(&g), -EPERM);
    CHECK(weft_co_current() == NULL);
    CHECK(!weft_co_cancelled());
    CHECK_RC(weft_co_run_in_pool(NULL, NULL, NULL, NULL), -EINVAL);
    int ran_outside = 0;
    CHECK_RC(weft_co_run_in_pool(NULL, mark_ran, &ran_outside, NULL), -EPERM);
    CHECK_RC(weft_co_shield_begin(&s), -EPERM);
    CHECK_INT(ran_outside, ==, 0); /* refused: never submitted */
    CHECK_OK(weft_loop_run(main_nested, NULL, NULL));
    CHECK_OK(weft_loop_run(main_misuse, NULL, NULL));
}

/* ---- call_soon_threadsafe ------------------------------------------------------- */

struct cs {
    weft_loop_t *loop;
    weft_event_t ev;
    _Atomic int calls;
    int order[100];
    int n;
};
static void cs_fn(void *arg)
{
    struct cs *c = (struct cs *)((intptr_t *)arg)[0];
    int i = (int)((intptr_t *)arg)[1];
    c->order[c->n++] = i;
    atomic_fetch_add(&c->calls, 1);
    if (i == 99)
        weft_event_set(&c->ev);
    free(arg);
}
static void *cs_thread(void *arg)
{
    struct cs *c = arg;
    for (int i = 0; i < 100; i++) {
        intptr_t *a = malloc(2 * sizeof *a);
        a[0] = (intptr_t)c;
        a[1] = i;
        if (weft_loop_call_soon_threadsafe(c->loop, cs_fn, a) != 0)
            free(a);
    }
    return NULL;
}
static int main_cs(void *arg, void **result)
{
    (void)result;
    struct cs *c = arg;
    c->loop = weft_loop_current();
    weft_loop_retain(c->loop);
    pthread_t th;
    pthread_create(&th, NULL, cs_thread, c);
    /* The event is set by a call_soon function: a thread-side primitive
     * waited for by a coroutine. */
    CHECK_OK(weft_event_wait(&c->ev));
    pthread_join(th, NULL);
    return 0;
}
/* Calls queued by calls that run while the loop ends (main has returned):
 * accepted and run (the end used to close the queue first and then run
 * what it had taken, so a call queued from one of those said -EPIPE, "the
 * loop has finished", while the loop went on). */
static weft_loop_t *chain_loop;
static int chain_rc[3] = {1, 1, 1};
static int chain_ran;
static void chain_fn(void *arg)
{
    int d = (int)(intptr_t)arg;
    chain_ran++;
    if (d < 3)
        chain_rc[d] = weft_loop_call_soon_threadsafe(chain_loop, chain_fn, (void *)(intptr_t)(d + 1));
}
static int main_chain(void *arg, void **result)
{
    (void)arg;
    (void)result;
    chain_loop = weft_loop_current();
    return weft_loop_call_soon_threadsafe(chain_loop, chain_fn, (void *)(intptr_t)0);
}

static void test_call_soon_threadsafe(void)
{
    struct cs c;
    memset(&c, 0, sizeof c);
    weft_event_init(&c.ev);
    weft_loop_stats_t st;
    weft_loop_opts_t o = {.stats = &st};
    CHECK_OK(weft_loop_run(main_cs, &c, &o));
    CHECK_INT(atomic_load(&c.calls), ==, 100);
    for (int i = 0; i < 100; i++)
        CHECK_INT(c.order[i], ==, i); /* one thread's calls run in order */
    CHECK_U64(st.callbacks, ==, 100);
    /* The loop has finished: calls are refused, fn never runs. */
    CHECK_RC(weft_loop_call_soon_threadsafe(c.loop, cs_fn, NULL), -EPIPE);
    CHECK_RC(weft_loop_call_soon_threadsafe(NULL, cs_fn, NULL), -EINVAL);
    CHECK_OK(weft_loop_release(c.loop));
    weft_event_destroy(&c.ev);
    CHECK_OK(weft_loop_run(main_chain, NULL, NULL));
    for (int i = 0; i < 3; i++)
        CHECK_RC(chain_rc[i], 0); /* each accepted... */
    CHECK_INT(chain_ran, ==, 4);  /* ...and run, the last ones during the loop's end */
}

/* ---- run_in_pool ------------------------------------------------------------------- */

static int pool_work(void *arg, void **result)
{
    weft_sleep(0.01); /* blocking: fine on a pool thread */
    *result = (void *)((intptr_t)arg * 2);
    return 0;
}
static int count_run(void *arg, void **result)
{
    (void)result;
    atomic_fetch_add((_Atomic int *)arg, 1);
    return 0;
}
static int pool_after_cancel(void *arg, void **result)
{
    (void)result;
    CHECK_RC(weft_co_sleep(30), -ECANCELED);
    return weft_co_run_in_pool(NULL, count_run, arg, NULL); /* -ECANCELED, not run */
}
static int main_pool(void *arg, void **result)
{
    (void)arg;
    (void)result;
    int ticks = 0;
    weft_task_t *tk;
    CHECK_OK(weft_co_spawn(&tk, ticker, &ticks, "ticker", 0));
    void *v = NULL;
    CHECK_OK(weft_co_run_in_pool(NULL, pool_work, (void *)21, &v));
    CHECK(v == (void *)42);
    CHECK_RC(weft_co_run_in_pool(NULL, fail_with, (void *)(intptr_t)-EIO, &v), -EIO);
    CHECK_INT(ticks, >=, 1);
    weft_task_cancel(tk);
    weft_co_await(tk, NULL);
    weft_task_release(tk);
    /* Cancelled: nothing is submitted (the work used to run all the same). */
    weft_task_t *c;
    int ran = 0;
    CHECK_OK(weft_co_spawn(&c, pool_after_cancel, &ran, "cancelled", 0));
    CHECK_OK(weft_task_cancel(c)); /* before it first runs: it never runs */
    CHECK_RC(weft_co_await(c, NULL), -ECANCELED);
    weft_task_release(c);
    CHECK_OK(weft_co_spawn(&c, pool_after_cancel, &ran, "cancelled-later", 0));
    CHECK_OK(weft_co_yield()); /* it runs, sleeps; cancel it there */
    CHECK_OK(weft_task_cancel(c));
    CHECK_RC(weft_co_await(c, NULL), -ECANCELED);
    weft_task_release(c);
    CHECK_INT(ran, ==, 0);
    return 0;
}
static void test_run_in_pool(void)
{
    CHECK_OK(weft_loop_run(main_pool, NULL, NULL));
}

/* ---- fds ------------------------------------------------------------------------------ */

static void *write_later(void *arg)
{
    weft_sleep(0.01);
    ssize_t r = write((int)(intptr_t)arg, "x", 1);
    (void)r;
    return NULL;
}
static int main_fd(void *arg, void **result)
{
    (void)arg;
    (void)result;
    int p[2];
    CHECK_OK(pipe(p));
    CHECK_RC(weft_co_wait_fd(p[0], WEFT_IO_READ, weft_deadline_in_ms(5)), -ETIMEDOUT);
    pthread_t th;
    pthread_create(&th, NULL, write_later, (void *)(intptr_t)p[1]);
    int r = weft_co_wait_fd(p[0], WEFT_IO_READ, weft_deadline_in(5));
    CHECK(r > 0 && (r & WEFT_IO_READ));
    pthread_join(th, NULL);
    r = weft_co_wait_fd(p[1], WEFT_IO_WRITE, WEFT_FOREVER);
    CHECK(r > 0 && (r & WEFT_IO_WRITE));
    /* One waiter for both directions, woken by one of them (the "x" is
     * still there; a pipe's read end is never writable): it leaves both
     * slots, so a writer may wait next (it used to find the slot taken). */
    r = weft_co_wait_fd(p[0], WEFT_IO_READ | WEFT_IO_WRITE, weft_deadline_in(5));
    CHECK_INT(r, ==, WEFT_IO_READ);
    CHECK_RC(weft_co_wait_fd(p[0], WEFT_IO_WRITE, weft_deadline_in_ms(5)), -ETIMEDOUT);
    /* And woken by the other direction, writability (a socket with room,
     * nothing to read): out of the reader's slot too, so a reader may
     * wait next and is woken by its data (it used to get -EBUSY, and the
     * data's report went to the dead waiter). */
    int sp[2];
    CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sp));
    r = weft_co_wait_fd(sp[0], WEFT_IO_READ | WEFT_IO_WRITE, weft_deadline_in(5));
    CHECK_INT(r, ==, WEFT_IO_WRITE);
    CHECK_RC(weft_co_wait_fd(sp[0], WEFT_IO_READ, weft_deadline_in_ms(5)), -ETIMEDOUT);
    CHECK_INT(write(sp[1], "y", 1), ==, 1);
    r = weft_co_wait_fd(sp[0], WEFT_IO_READ, weft_deadline_in(5));
    CHECK(r > 0 && (r & WEFT_IO_READ));
    close(sp[0]);
    close(sp[1]);
    CHECK_RC(weft_co_wait_fd(-1, WEFT_IO_READ, WEFT_FOREVER), -EINVAL);
    CHECK_RC(weft_co_wait_fd(p[0], 0, WEFT_FOREVER), -EINVAL);
    CHECK_RC(weft_co_wait_fd(p[0], 0x80, WEFT_FOREVER), -EINVAL);
    CHECK_RC(weft_co_wait_fd(p[0], WEFT_IO_READ, -1), -EINVAL);
    CHECK_RC(weft_co_wait_fd(100000, WEFT_IO_READ, WEFT_FOREVER), -EBADF);
    close(p[0]);
    close(p[1]);
    return 0;
}
static void test_wait_fd(void)
{
    int fds0 = check_fd_count();
    weft_loop_stats_t st;
    weft_loop_opts_t o = {.stats = &st};
    CHECK_OK(weft_loop_run(main_fd, NULL, &o));
    CHECK_U64(st.io_waits, ==, 8);
    CHECK_INT(check_fd_count(), ==, fds0);
}

int main(void)
{
    expected_backend = co_check_backend();
    RUN(test_backend_used);
    RUN(test_run_returns_main);
    RUN(test_spawn_parked_fifo);
    RUN(test_sleep_order);
    RUN(test_await);
    RUN(test_await_future);
    RUN(test_cancel);
    RUN(test_shield);
    RUN(test_scope);
    RUN(test_wait_for_race);
    RUN(test_group);
    RUN(test_group_waiters);
    RUN(test_group_cancel);
    RUN(test_run_end);
    RUN(test_outside);
    RUN(test_call_soon_threadsafe);
    RUN(test_run_in_pool);
    RUN(test_wait_fd);
    struct weft__co_stack_stats ss;
    weft__co_stack_stats(&ss);
    CHECK_U64(ss.in_use, ==, 0); /* every stack was returned */
    return check_done();
}
