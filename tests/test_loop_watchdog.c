/*
 * test_loop_watchdog.c - starvation is named while it happens: a coroutine
 * that computes without yielding is reported by name, with its running
 * time, while it still runs; loop statistics.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <weft.h>

#include "co_check.h"

struct wd {
    _Atomic int reports;     /* every report, whoever it names */
    _Atomic int hog_reports; /* reports naming the hog */
    _Atomic int hog_running; /* the hog had not returned when reported */
    char name[48];
    char loop[32];
    weft_time_t ns;
};

static _Atomic int hog_state; /* 1 while the hog spins */

/* On a loaded machine the OS may preempt the loop's thread for longer than
 * the threshold while some other coroutine runs, and that is a real stall
 * too: the tests count reports naming the hog separately, and assert only
 * on those exactly. */
static void on_slow(const weft_loop_slow_t *info, void *arg)
{
    struct wd *w = arg;
    if (strcmp(info->task_name, "hog-the-cpu") == 0) {
        /* Read whether the hog still runs BEFORE counting the report: the
         * count is what lets the hog stop. */
        int running = atomic_load(&hog_state);
        if (atomic_load(&w->hog_reports) == 0) {
            snprintf(w->name, sizeof w->name, "%s", info->task_name);
            snprintf(w->loop, sizeof w->loop, "%s", info->loop_name);
            w->ns = info->running_ns;
            atomic_store(&w->hog_running, running);
        }
        atomic_fetch_add(&w->hog_reports, 1);
    }
    atomic_fetch_add(&w->reports, 1);
}

static int hog(void *arg, void **result)
{
    (void)result;
    struct wd *w = arg;
    atomic_store(&hog_state, 1);
    /* Compute without yielding until the watchdog has named us (or give up
     * after 10 s: the test then fails on the counts). */
    weft_time_t give_up = weft_deadline_in(10);
    while (atomic_load(&w->hog_reports) == 0 && weft_now() < give_up)
        ;
    atomic_store(&hog_state, 0);
    return 0;
}

static int polite(void *arg, void **result)
{
    (void)arg;
    (void)result;
    for (int i = 0; i < 100; i++)
        weft_co_yield();
    return 0;
}

static int main_hog(void *arg, void **result)
{
    (void)result;
    weft_task_t *a, *b;
    CHECK_OK(weft_co_spawn(&b, polite, arg, "polite", 0));
    CHECK_OK(weft_co_spawn(&a, hog, arg, "hog-the-cpu", 0));
    CHECK_OK(weft_co_await(a, NULL));
    CHECK_OK(weft_co_await(b, NULL));
    weft_task_release(a);
    weft_task_release(b);
    return 0;
}

static void test_watchdog_names_hog(void)
{
    struct wd w;
    memset(&w, 0, sizeof w);
    weft_loop_stats_t st;
    weft_loop_opts_t o = {.name = "busy", .slow_ms = 20, .on_slow = on_slow, .on_slow_arg = &w,
                          .stats = &st};
    CHECK_OK(weft_loop_run(main_hog, &w, &o));
    CHECK_INT(atomic_load(&w.hog_reports), ==, 1); /* once per stall */
    CHECK_INT(atomic_load(&w.reports), >=, 1);
    CHECK(strcmp(w.name, "hog-the-cpu") == 0);
    CHECK(strcmp(w.loop, "busy") == 0);
    CHECK_INT(atomic_load(&w.hog_running), ==, 1); /* reported WHILE it ran */
    CHECK_INT(w.ns, >=, 20000000);
    CHECK_U64(st.slow_reports, ==, (uint64_t)atomic_load(&w.reports));
    CHECK_INT(st.longest_run_ns, >=, 20000000);
    CHECK(strcmp(st.longest_run_task, "hog-the-cpu") == 0);
    CHECK_U64(st.tasks_spawned, ==, 3);
    CHECK_U64(st.switches, >=, 100);
}

/* weft_loop_stats from another thread while the loop runs: the longest
 * run's task is named there too (it used to be filled only on the loop's
 * own thread), and tasks_live is never above tasks_spawned. */
struct remote_stats {
    weft_loop_t *loop;
    weft_event_t ready, done;
};
static int spin_named(void *arg, void **result)
{
    (void)arg;
    (void)result;
    weft_time_t until = weft_deadline_in(0.02);
    while (weft_now() < until)
        ;
    return 0;
}
static int main_remote_stats(void *arg, void **result)
{
    (void)result;
    struct remote_stats *r = arg;
    weft_task_t *t;
    CHECK_OK(weft_co_spawn(&t, spin_named, NULL, "spin-20-ms", 0));
    CHECK_OK(weft_co_await(t, NULL));
    weft_task_release(t);
    r->loop = weft_loop_current();
    CHECK_OK(weft_loop_retain(r->loop));
    CHECK_OK(weft_event_set(&r->ready));
    return weft_event_wait(&r->done); /* suspends: the reader reads meanwhile */
}
static void *run_remote_stats(void *arg)
{
    weft_loop_opts_t o = {.timing = true};
    return (void *)(intptr_t)weft_loop_run(main_remote_stats, arg, &o);
}
static void test_stats_other_thread(void)
{
    struct remote_stats r = {0};
    weft_event_init(&r.ready);
    weft_event_init(&r.done);
    weft_thread_t *th;
    CHECK_OK(weft_thread_start(&th, run_remote_stats, &r, NULL));
    CHECK_OK(weft_event_wait(&r.ready));
    weft_loop_stats_t st;
    CHECK_OK(weft_loop_stats(r.loop, &st));
    CHECK_INT(st.longest_run_ns, >=, 20000000);
    CHECK(strcmp(st.longest_run_task, "spin-20-ms") == 0);
    CHECK_U64(st.tasks_live, <=, st.tasks_spawned);
    CHECK_OK(weft_event_set(&r.done));
    void *rc;
    CHECK_OK(weft_thread_join(th, &rc));
    CHECK_OK((int)(intptr_t)rc);
    CHECK_OK(weft_loop_release(r.loop));
    weft_event_destroy(&r.ready);
    weft_event_destroy(&r.done);
}

/* WEFT_SLOW_MS turns the watchdog on (with opts.slow_ms 0). */
static int main_env_hog(void *arg, void **result)
{
    (void)result;
    weft_task_t *a;
    CHECK_OK(weft_co_spawn(&a, hog, arg, "hog-the-cpu", 0));
    CHECK_OK(weft_co_await(a, NULL));
    weft_task_release(a);
    return 0;
}

static int short_hog(void *arg, void **result)
{
    (void)arg;
    (void)result;
    weft_time_t end = weft_deadline_in_ms(60);
    while (weft_now() < end)
        ;
    return 0;
}
static void test_env_threshold(void)
{
    struct wd w;
    memset(&w, 0, sizeof w);
    setenv("WEFT_SLOW_MS", "10", 1);
    weft_loop_stats_t st;
    weft_loop_opts_t o = {.stats = &st, .on_slow = on_slow, .on_slow_arg = &w};
    /* The hog spins until it has been named (not for a fixed time, which a
     * loaded machine may not give the watchdog thread a turn in). */
    CHECK_OK(weft_loop_run(main_env_hog, &w, &o));
    unsetenv("WEFT_SLOW_MS");
    CHECK_INT(atomic_load(&w.hog_reports), ==, 1);
    CHECK_INT(atomic_load(&w.hog_running), ==, 1);
    CHECK_U64(st.slow_reports, >=, 1);
    /* Off: no reports, no timing. */
    o.on_slow = NULL;
    CHECK_OK(weft_loop_run(short_hog, NULL, &o));
    CHECK_U64(st.slow_reports, ==, 0);
    CHECK_INT(st.longest_run_ns, ==, 0);
    /* Timing without the watchdog. */
    o.timing = true;
    o.slow_ms = -1;
    CHECK_OK(weft_loop_run(short_hog, NULL, &o));
    CHECK_U64(st.slow_reports, ==, 0);
    CHECK_INT(st.longest_run_ns, >=, 60000000);
}

int main(void)
{
    co_check_backend();
    RUN(test_watchdog_names_hog);
    RUN(test_env_threshold);
    RUN(test_stats_other_thread);
    return check_done();
}
