/* weft_pool_t: options, submit, cancel, errors, shutdown, idling, misuse. */
#include <sched.h>
#include <stdatomic.h>
#include <time.h>
#include <string.h>
#include <weft.h>

#include "check.h"

static int inc_task(void *arg, void **result)
{
    atomic_fetch_add((_Atomic long *)arg, 1);
    *result = arg;
    return 0;
}

static int inc_group_task(void *arg)
{
    atomic_fetch_add((_Atomic long *)arg, 1);
    return 0;
}

static int fail_task(void *arg, void **result)
{
    (void)arg;
    (void)result;
    return -EIO;
}

/* A task that reports the name of the worker thread running it. */
static int name_task(void *arg, void **result)
{
    (void)result;
    return weft_thread_get_name(arg, 16);
}

/* Each worker is named "<prefix>-<index>" (cut to 15 bytes), and a
 * pinned worker runs only on the CPU it was given. */
static void check_worker_names(weft_pool_t *p, const char *prefix)
{
    char names[64][16];
    weft_future_t *fs[64];
    for (int i = 0; i < 64; i++) {
        memset(names[i], 0, 16);
        CHECK_OK(weft_pool_submit(p, name_task, names[i], &fs[i]));
    }
    CHECK_OK(weft_future_wait_all(fs, 64, WEFT_FOREVER));
    for (int i = 0; i < 64; i++) {
        CHECK_RC(weft_future_result(fs[i], NULL), 0);
        CHECK_OK(weft_future_release(fs[i]));
        char want[64];
        int idx = -1;
        /* Whichever worker ran it: the name must be prefix-<0..n-1>. */
        for (int k = 0; k < weft_pool_workers(p); k++) {
            snprintf(want, sizeof want, "%s-%d", prefix, k);
            want[15] = '\0';
            if (strcmp(names[i], want) == 0)
                idx = k;
        }
        if (idx < 0) {
            fprintf(stderr, "worker named '%s', prefix '%s'\n", names[i], prefix);
            CHECK(idx >= 0);
        }
    }
}

static void test_create_options(void)
{
    weft_pool_t *p;
    weft_pool_opts_t o = {.workers = 3, .name = "tp", .stack_size = 64 * 1024, .pin = true};
    CHECK_OK(weft_pool_create(&p, &o));
    CHECK_INT(weft_pool_workers(p), ==, 3);
    _Atomic long n = 0;
    weft_future_t *f;
    CHECK_OK(weft_pool_submit(p, inc_task, &n, &f));
    void *v;
    CHECK_OK(weft_future_get(f, &v));
    CHECK(v == &n);
    CHECK_OK(weft_future_release(f));
    check_worker_names(p, "tp");
    CHECK_OK(weft_pool_free(p));
    /* A long prefix is cut to the kernel's 15 bytes. */
    o = (weft_pool_opts_t){.workers = 2, .name = "a-very-long-pool-name"};
    CHECK_OK(weft_pool_create(&p, &o));
    check_worker_names(p, "a-very-long-pool-name");
    CHECK_OK(weft_pool_free(p));

    /* WEFT_WORKERS, then the CPU count; a bad value is ignored. */
    setenv("WEFT_WORKERS", "5", 1);
    CHECK_OK(weft_pool_create(&p, NULL));
    CHECK_INT(weft_pool_workers(p), ==, 5);
    CHECK_OK(weft_pool_free(p));
    setenv("WEFT_WORKERS", "0", 1);
    CHECK_OK(weft_pool_create(&p, NULL));
    CHECK_INT(weft_pool_workers(p), ==, weft_cpu_count());
    CHECK_OK(weft_pool_free(p));
    setenv("WEFT_WORKERS", "junk", 1);
    o = (weft_pool_opts_t){0};
    CHECK_OK(weft_pool_create(&p, &o));
    CHECK_INT(weft_pool_workers(p), ==, weft_cpu_count());
    CHECK_OK(weft_pool_free(p));
    unsetenv("WEFT_WORKERS");
}

static void test_bad_input(void)
{
    weft_pool_t *p;
    weft_pool_opts_t o = {.workers = -1};
    CHECK_RC(weft_pool_create(NULL, NULL), -EINVAL);
    CHECK_RC(weft_pool_create(&p, &o), -EINVAL);
    o.workers = WEFT_POOL_MAX_WORKERS + 1;
    CHECK_RC(weft_pool_create(&p, &o), -EINVAL);
    o = (weft_pool_opts_t){.workers = 1, .stack_size = 100};
    CHECK_RC(weft_pool_create(&p, &o), -EINVAL);
    o.stack_size = 0;
    CHECK_OK(weft_pool_create(&p, &o));
    CHECK_RC(weft_pool_submit(p, NULL, NULL, NULL), -EINVAL);
    CHECK_RC(weft_pool_resize(p, 4), -ENOTSUP);
    CHECK_RC(weft_pool_resize(p, 0), -EINVAL);
    CHECK_RC(weft_pool_shutdown(NULL, true, false), -EINVAL);
    CHECK_RC(weft_pool_free(NULL), -EINVAL);
    CHECK_RC(weft_pool_shutdown(weft_pool_default(), true, false), -EPERM);
    CHECK_RC(weft_pool_free(weft_pool_default()), -EPERM);
    CHECK_INT(weft_pool_worker_index(), ==, -1);
    CHECK(!weft_task_cancelled());
    /* Submit after shutdown: refused, the task never runs. */
    CHECK_OK(weft_pool_shutdown(p, true, false));
    CHECK_OK(weft_pool_shutdown(p, true, true)); /* again: harmless */
    _Atomic long n = 0;
    weft_future_t *f = (weft_future_t *)&n;
    CHECK_RC(weft_pool_submit(p, inc_task, &n, &f), -EPIPE);
    CHECK(f == (weft_future_t *)&n); /* untouched */
    weft_group_t g;
    CHECK_OK(weft_group_init(&g, p));
    CHECK_RC(weft_group_spawn(&g, NULL, NULL), -EINVAL);
    CHECK_RC(weft_group_spawn(&g, inc_group_task, &n), -EPIPE);
    CHECK_OK(weft_group_wait(&g));
    CHECK_INT(n, ==, 0);
    CHECK_OK(weft_pool_free(p));
}

static void test_many_and_errors(void)
{
    weft_pool_t *p;
    weft_pool_opts_t o = {.workers = 2};
    CHECK_OK(weft_pool_create(&p, &o));
    long n = check_iters("POOL_MANY", 20000);
    weft_future_t **fs = calloc((size_t)n, sizeof *fs);
    _Atomic long ran = 0;
    for (long i = 0; i < n; i++)
        CHECK_OK(weft_pool_submit(p, i % 7 == 0 ? fail_task : inc_task, &ran, &fs[i]));
    CHECK_OK(weft_future_wait_all(fs, (size_t)n, WEFT_FOREVER));
    long ok = 0, failed = 0;
    for (long i = 0; i < n; i++) {
        int r = weft_future_result(fs[i], NULL);
        if (r == 0)
            ok++;
        else if (r == -EIO)
            failed++;
        CHECK_OK(weft_future_release(fs[i]));
    }
    CHECK_INT(ok, ==, ran);
    CHECK_INT(failed, ==, (n + 6) / 7);
    CHECK_INT(ok + failed, ==, n);
    /* Fire and forget, then free: free waits for them all. */
    _Atomic long ran2 = 0;
    for (long i = 0; i < 1000; i++)
        CHECK_OK(weft_pool_submit(p, inc_task, &ran2, NULL));
    CHECK_OK(weft_pool_free(p));
    CHECK_INT(ran2, ==, 1000);
    free(fs);
}

/* A task that holds its worker until released (without a future wait,
 * which would help run the tasks queued behind it). */
struct gate {
    _Atomic int open;
    _Atomic int entered;
};

static int gate_task(void *arg, void **result)
{
    struct gate *g = arg;
    (void)result;
    atomic_store(&g->entered, 1);
    while (!atomic_load(&g->open))
        sched_yield();
    return 0;
}

static int poll_cancel_task(void *arg, void **result)
{
    (void)result;
    atomic_store((_Atomic int *)arg, 1);
    while (!weft_task_cancelled())
        sched_yield();
    return -ECANCELED;
}

static void test_cancel(void)
{
    weft_pool_t *p;
    weft_pool_opts_t o = {.workers = 1};
    CHECK_OK(weft_pool_create(&p, &o));
    struct gate g = {0, 0};
    weft_future_t *blocker, *f;
    _Atomic long ran = 0;
    CHECK_OK(weft_pool_submit(p, gate_task, &g, &blocker));
    while (!atomic_load(&g.entered))
        sched_yield();
    CHECK_OK(weft_pool_submit(p, inc_task, &ran, &f));
    /* Not started: cancelled now, never runs. */
    CHECK_OK(weft_future_cancel(f));
    CHECK_OK(weft_future_cancel(f));
    CHECK(weft_future_cancelled(f));
    CHECK_RC(weft_future_cancel(blocker), -EBUSY);
    atomic_store(&g.open, 1);
    CHECK_OK(weft_future_get(blocker, NULL)); /* finished normally */
    CHECK_OK(weft_future_release(blocker));
    /* A later task still runs, the cancelled one did not. */
    weft_future_t *h;
    CHECK_OK(weft_pool_submit(p, inc_task, &ran, &h));
    CHECK_OK(weft_future_get(h, NULL));
    CHECK_INT(ran, ==, 1);
    CHECK_OK(weft_future_release(h));
    CHECK_OK(weft_future_release(f));

    /* A running task polls the flag. */
    _Atomic int started = 0;
    CHECK_OK(weft_pool_submit(p, poll_cancel_task, &started, &f));
    while (!atomic_load(&started))
        sched_yield();
    CHECK_RC(weft_future_cancel(f), -EBUSY);
    CHECK_RC(weft_future_get(f, NULL), -ECANCELED);
    CHECK(weft_future_cancelled(f));
    CHECK_OK(weft_future_release(f));
    CHECK_OK(weft_pool_free(p));
}

static weft_future_t *_Atomic self_future;

static int self_wait_task(void *arg, void **result)
{
    (void)arg;
    weft_future_t *f;
    while (!(f = atomic_load(&self_future)))
        sched_yield();
    *result = (void *)(intptr_t)weft_future_wait(f);
    return 0;
}

static int sub_task(void *arg, void **result)
{
    /* Submit into the same pool from inside and wait: with one worker this
     * only finishes because the waiting worker runs the subtask itself. */
    weft_pool_t *p = arg;
    _Atomic long n = 0;
    weft_future_t *f;
    int r = weft_pool_submit(p, inc_task, &n, &f);
    if (r < 0)
        return r;
    r = weft_future_get(f, NULL);
    weft_future_release(f);
    *result = (void *)(intptr_t)atomic_load(&n);
    return r;
}

static void test_waits_inside(void)
{
    weft_pool_t *p;
    weft_pool_opts_t o = {.workers = 1};
    CHECK_OK(weft_pool_create(&p, &o));
    weft_future_t *f;
    CHECK_OK(weft_pool_submit(p, self_wait_task, NULL, &f));
    atomic_store(&self_future, f);
    void *v;
    CHECK_OK(weft_future_get(f, &v));
    CHECK_RC((intptr_t)v, -EDEADLK);
    CHECK_OK(weft_future_release(f));

    CHECK_OK(weft_pool_submit(p, sub_task, p, &f));
    CHECK_OK(weft_future_get(f, &v));
    CHECK_INT((intptr_t)v, ==, 1);
    CHECK_OK(weft_future_release(f));
    CHECK_OK(weft_pool_free(p));
}

static void test_shutdown_cancel_pending(void)
{
    weft_pool_t *p;
    weft_pool_opts_t o = {.workers = 1};
    CHECK_OK(weft_pool_create(&p, &o));
    struct gate g = {0, 0};
    weft_future_t *blocker, *fs[100];
    _Atomic long ran = 0;
    CHECK_OK(weft_pool_submit(p, gate_task, &g, &blocker));
    while (!atomic_load(&g.entered))
        sched_yield();
    for (int i = 0; i < 100; i++)
        CHECK_OK(weft_pool_submit(p, inc_task, &ran, &fs[i]));
    CHECK_OK(weft_pool_shutdown(p, false, true));
    CHECK_RC(weft_pool_submit(p, inc_task, &ran, NULL), -EPIPE);
    atomic_store(&g.open, 1);
    CHECK_OK(weft_pool_shutdown(p, true, false));
    CHECK_OK(weft_future_get(blocker, NULL));
    for (int i = 0; i < 100; i++) {
        CHECK(weft_future_cancelled(fs[i]));
        CHECK_OK(weft_future_release(fs[i]));
    }
    CHECK_INT(ran, ==, 0);
    CHECK_OK(weft_future_release(blocker));
    CHECK_OK(weft_pool_free(p));
}

/* Shutdown while three threads submit: every accepted task runs exactly
 * once, every refused one never. */
struct sub_race {
    weft_pool_t *p;
    _Atomic long accepted, ran, refused;
    _Atomic int go_shutdown;
};

static int count_task(void *arg, void **result)
{
    (void)result;
    atomic_fetch_add(&((struct sub_race *)arg)->ran, 1);
    return 0;
}

static void sub_race_fn(void *arg, int index)
{
    struct sub_race *s = arg;
    if (index == 0) {
        while (atomic_load(&s->accepted) < 2000)
            sched_yield();
        CHECK_OK(weft_pool_shutdown(s->p, true, false));
        return;
    }
    for (;;) {
        int r = weft_pool_submit(s->p, count_task, s, NULL);
        if (r == -EPIPE) {
            atomic_fetch_add(&s->refused, 1);
            break;
        }
        CHECK_OK(r);
        atomic_fetch_add(&s->accepted, 1);
    }
}

static void test_shutdown_while_submitting(void)
{
    long rounds = check_iters("POOL_SHUTDOWN_RACE", 10);
    for (long i = 0; i < rounds; i++) {
        struct sub_race s = {0};
        weft_pool_opts_t o = {.workers = 2};
        CHECK_OK(weft_pool_create(&s.p, &o));
        check_parallel(4, sub_race_fn, &s);
        CHECK_INT(s.ran, ==, s.accepted);
        CHECK_INT(s.refused, ==, 3);
        CHECK_OK(weft_pool_free(s.p));
    }
}

static void test_idle_uses_no_cpu(void)
{
    weft_pool_t *p;
    weft_pool_opts_t o = {.workers = 4};
    CHECK_OK(weft_pool_create(&p, &o));
    _Atomic long n = 0;
    weft_future_t *f;
    CHECK_OK(weft_pool_submit(p, inc_task, &n, &f));
    CHECK_OK(weft_future_wait(f));
    CHECK_OK(weft_future_release(f));
    /* Let the workers finish searching and fall asleep, then measure. */
    struct timespec d = {0, 50 * 1000 * 1000};
    nanosleep(&d, NULL);
    struct timespec c0, c1;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
    d.tv_nsec = 300 * 1000 * 1000;
    nanosleep(&d, NULL);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
    double used = (double)(c1.tv_sec - c0.tv_sec) + (double)(c1.tv_nsec - c0.tv_nsec) * 1e-9;
    /* Under 1% of a core over 0.3 s, generously: 3 ms. */
    fprintf(stderr, "idle pool of 4: %.3f ms CPU in 300 ms\n", used * 1e3);
    CHECK(used < 0.003);
    CHECK_OK(weft_pool_free(p));
}

static int cross_task(void *arg, void **result)
{
    /* A task of pool A submits to pool B and waits. */
    weft_pool_t *b = arg;
    _Atomic long n = 0;
    weft_future_t *f;
    int r = weft_pool_submit(b, inc_task, &n, &f);
    if (r < 0)
        return r;
    r = weft_future_get(f, NULL);
    weft_future_release(f);
    *result = (void *)(intptr_t)weft_pool_worker_index();
    return r;
}

static void test_pools_coexist(void)
{
    weft_pool_t *a, *b;
    weft_pool_opts_t o = {.workers = 1};
    CHECK_OK(weft_pool_create(&a, &o));
    CHECK_OK(weft_pool_create(&b, &o));
    weft_future_t *fs[50];
    for (int i = 0; i < 50; i++)
        CHECK_OK(weft_pool_submit(i % 2 ? a : b, cross_task, i % 2 ? b : a, &fs[i]));
    for (int i = 0; i < 50; i++) {
        void *v;
        CHECK_OK(weft_future_get(fs[i], &v));
        CHECK_INT((intptr_t)v, ==, 0);
        CHECK_OK(weft_future_release(fs[i]));
    }
    CHECK_OK(weft_pool_free(a));
    CHECK_OK(weft_pool_free(b));
    /* The default pool. */
    weft_pool_t *d = weft_pool_default();
    CHECK(d != NULL);
    CHECK(weft_pool_default() == d);
    _Atomic long n = 0;
    weft_future_t *f;
    CHECK_OK(weft_pool_submit(NULL, inc_task, &n, &f));
    CHECK_OK(weft_future_get(f, NULL));
    CHECK_OK(weft_future_release(f));
    CHECK_INT(weft_pool_workers(NULL), ==, weft_cpu_count());
}

int main(void)
{
    unsetenv("WEFT_WORKERS");
    RUN(test_create_options);
    RUN(test_bad_input);
    RUN(test_many_and_errors);
    RUN(test_cancel);
    RUN(test_waits_inside);
    RUN(test_shutdown_cancel_pending);
    RUN(test_shutdown_while_submitting);
    RUN(test_idle_uses_no_cpu);
    RUN(test_pools_coexist);
    return check_done();
}
