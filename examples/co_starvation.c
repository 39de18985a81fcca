/*
 * co_starvation.c - cooperative multitasking and starvation.
 *
 * Python (asyncio with debug mode on):
 *   async def ticker():              # wants to run every millisecond
 *       while running:
 *           await asyncio.sleep(0.001)
 *   async def cruncher():            # computes without an await
 *       for x in range(big): work(x)
 *
 * An event loop runs the task that has waited longest, and a task keeps the
 * thread until it yields. A task that computes for a long time without
 * yielding starves all the others: their 1 ms sleeps end only when it
 * stops. weft's watchdog names the culprit while it is still running
 * (asyncio's debug mode can only complain afterwards). Doing the same work
 * with a yield every half millisecond gives the others their turns back.
 *
 * Build and run: build/examples/co_starvation, or `weft demo co_starvation`.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <weft.h>

#include "lesson.h"

enum { NTICKERS = 3, SLOW_MS = 20 };

struct phase {
    bool yielding;            /* the cruncher yields every ~0.5 ms of work */
    weft_time_t min_ns;       /* compute at least this long (first phase) */
    uint64_t work;            /* units to do (second phase: the first's count) */
    uint64_t done;            /* units done */
    _Atomic bool stop;        /* the tickers stop */
    weft_time_t worst_late;   /* the tickers' worst lateness, ns */
    uint64_t ticks;
    double crunch_seconds;
};

struct watch {
    _Atomic int reports;      /* reports naming the cruncher */
    _Atomic int others;       /* reports naming anyone else (a preempted loop) */
    _Atomic int64_t first_ns; /* how long it had run at the first report */
    _Atomic bool phase_one;   /* reports count toward the first phase */
    _Atomic int reports_two;
};

static struct watch watch;

static void on_slow(const weft_loop_slow_t *info, void *arg)
{
    (void)arg;
    if (strcmp(info->task_name, "cruncher") != 0) {
        atomic_fetch_add(&watch.others, 1);
        return;
    }
    if (!atomic_load(&watch.phase_one)) {
        atomic_fetch_add(&watch.reports_two, 1);
        return;
    }
    if (atomic_fetch_add(&watch.reports, 1) == 0)
        atomic_store(&watch.first_ns, (int64_t)info->running_ns);
}

static int ticker(void *arg, void **result)
{
    (void)result;
    struct phase *p = arg;
    while (!atomic_load_explicit(&p->stop, memory_order_relaxed)) {
        weft_time_t want = weft_now() + 1000000;
        int rc = weft_co_sleep_until(want);
        if (rc != 0)
            return rc;
        weft_time_t late = weft_now() - want;
        if (late > p->worst_late)
            p->worst_late = late;
        p->ticks++;
    }
    return 0;
}

/* One unit of arithmetic, about a microsecond. */
static uint64_t unit(uint64_t x)
{
    for (int i = 0; i < 300; i++)
        x = x * 6364136223846793005ull + 1442695040888963407ull;
    return x;
}

static volatile uint64_t sink;

static int cruncher(void *arg, void **result)
{
    (void)result;
    struct phase *p = arg;
    uint64_t x = 1;
    weft_time_t t0 = weft_now(), last_yield = t0;
    if (!p->yielding) {
        /* At least min_ns, and on until the watchdog has named us (a loaded
         * machine may be slow to give its thread a turn), at most 5 s. */
        weft_time_t give_up = t0 + 5000000000LL;
        for (;;) {
            x = unit(x);
            p->done++;
            if ((p->done & 63) == 0) {
                weft_time_t now = weft_now();
                if ((now - t0 >= p->min_ns && atomic_load(&watch.reports) > 0) || now >= give_up)
                    break;
            }
        }
    } else {
        for (; p->done < p->work; p->done++) {
            x = unit(x);
            if ((p->done & 63) == 0) {
                weft_time_t now = weft_now();
                if (now - last_yield >= 500000) {
                    int rc = weft_co_yield();
                    if (rc != 0)
                        return rc;
                    last_yield = weft_now();
                }
            }
        }
    }
    sink = x;
    p->crunch_seconds = weft_seconds_between(t0, weft_now());
    return 0;
}

static int main_co(void *arg, void **result)
{
    (void)result;
    struct phase *p = arg;
    weft_task_t *tick[NTICKERS], *crunch = NULL;
    int n = 0, rc = 0;
    for (; n < NTICKERS; n++)
        if ((rc = weft_co_spawn(&tick[n], ticker, p, "ticker", 0)) != 0)
            break;
    /* Let the tickers settle into their rhythm first. */
    if (rc == 0)
        rc = weft_co_sleep(0.005);
    if (rc == 0)
        rc = weft_co_spawn(&crunch, cruncher, p, "cruncher", 0);
    if (crunch) {
        int ar = weft_co_await(crunch, NULL);
        if (rc == 0)
            rc = ar;
        weft_task_release(crunch);
    }
    atomic_store(&p->stop, true);
    for (int i = 0; i < n; i++) {
        int ar = weft_co_await(tick[i], NULL);
        if (rc == 0)
            rc = ar;
        weft_task_release(tick[i]);
    }
    return rc;
}

static int run_phase(struct phase *p)
{
    weft_loop_opts_t o = {.name = "starve", .slow_ms = SLOW_MS, .on_slow = on_slow};
    return weft_loop_run(main_co, p, &o);
}

static int co_starvation_lesson(lesson_run_t *run)
{
    char a[32], b[32];
    memset(&watch, 0, sizeof watch);
    struct phase one = {.yielding = false,
                        .min_ns = (weft_time_t)lesson_scaled(run, 200) * 1000000};
    if (one.min_ns < 60000000)
        one.min_ns = 60000000; /* well past the watchdog's 20 ms, even --quick */
    lesson_say(run, "%d ticker coroutines want to wake every 1 ms; a cruncher computes on the same",
               NTICKERS);
    lesson_say(run, "loop, first without ever yielding, then the same work yielding every 0.5 ms.");
    atomic_store(&watch.phase_one, true);
    int rc = run_phase(&one);
    atomic_store(&watch.phase_one, false);
    if (rc != 0)
        return lesson_fail_rc(run, "the loop without yields", rc);
    int reports = atomic_load(&watch.reports);
    lesson_figure_time(run, "hog_seconds", "no yield: the cruncher ran for", one.crunch_seconds);
    lesson_figure_time(run, "hog_worst_late", "no yield: a ticker's sleep ended late by",
                       (double)one.worst_late * 1e-9);
    lesson_figure_count(run, "hog_reports", "no yield: watchdog reports naming 'cruncher'",
                        (uint64_t)reports);
    if (reports > 0)
        lesson_figure_time(run, "hog_named_after", "no yield: named while running, after",
                           (double)atomic_load(&watch.first_ns) * 1e-9);

    struct phase two = {.yielding = true, .work = one.done};
    rc = run_phase(&two);
    if (rc != 0)
        return lesson_fail_rc(run, "the loop with yields", rc);
    lesson_figure_time(run, "polite_seconds", "yield every 0.5 ms: the same work took",
                       two.crunch_seconds);
    lesson_figure_time(run, "polite_worst_late", "yield every 0.5 ms: worst lateness",
                       (double)two.worst_late * 1e-9);
    lesson_figure_count(run, "polite_ticks", "yield every 0.5 ms: ticks the tickers got",
                        two.ticks);
    lesson_figure_count(run, "polite_reports", "yield every 0.5 ms: watchdog reports",
                        (uint64_t)atomic_load(&watch.reports_two));

    if (reports == 0)
        return lesson_fail(run, "the watchdog never named the cruncher in %s",
                           lesson_fmt_time(a, sizeof a, one.crunch_seconds));
    lesson_say(run, "Without a yield the others wait as long as the cruncher runs (%s here), and",
               lesson_fmt_time(a, sizeof a, (double)one.worst_late * 1e-9));
    lesson_say(run, "the watchdog named it while it ran. With yields the worst wait was %s.",
               lesson_fmt_time(b, sizeof b, (double)two.worst_late * 1e-9));
    if (two.worst_late >= one.worst_late)
        lesson_say(run, "(This machine was busy: the OS, not the cruncher, delayed the tickers.)");
    if (atomic_load(&watch.others) > 0)
        lesson_say(run, "(%d report(s) named another coroutine: the OS paused the whole loop.)",
                   atomic_load(&watch.others));
    lesson_key(run, "no yield: others late %s, named; yield: %s",
               lesson_fmt_time(a, sizeof a, (double)one.worst_late * 1e-9),
               lesson_fmt_time(b, sizeof b, (double)two.worst_late * 1e-9));
    return 0;
}

WEFT_LESSON(105, "co_starvation", "Cooperative multitasking: a task that never yields starves the rest",
            co_starvation_lesson)
