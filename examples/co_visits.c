/*
 * co_visits.c - cooperative versus preemptive: the counter race of
 * thread_visits.c, run by coroutines.
 *
 * Python:
 *   async def visit():
 *       global counter
 *       for _ in range(100_000):
 *           counter += 1            # no await inside: nobody can come between
 *           if _ % 1000 == 0:
 *               await asyncio.sleep(0)
 *
 * Threads are switched by the OS at any instruction, so the read and the
 * write of `counter += 1` can be split and updates are lost. Coroutines on
 * one loop switch only where they say so (a yield, an await): with no
 * suspension point between the read and the write, no other coroutine can
 * run in between, and the total is exact without any lock. Put the
 * suspension point between them (`x = counter; await ...; counter = x + 1`)
 * and updates are lost again, deterministically: a cooperative race.
 *
 * Build and run: build/examples/co_visits, or `weft demo co_visits`.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <weft.h>

#include "lesson.h"

enum { NCOROS = 100, VISITS = 100000, YIELD_EVERY = 1000 };

struct visits {
    bool yield_inside;        /* suspend between the read and the write */
    uint64_t per_coro;        /* increments each coroutine makes */
    _Atomic uint64_t counter; /* relaxed accesses: one thread, no data race */
    _Atomic int error;        /* first error a coroutine met, or 0 */
};

static int visit(void *arg, void **result)
{
    (void)result;
    struct visits *v = arg;
    for (uint64_t i = 0; i < v->per_coro; i++) {
        uint64_t seen = atomic_load_explicit(&v->counter, memory_order_relaxed);
        if (v->yield_inside) {
            int rc = weft_co_yield(); /* the others run here, and read too */
            if (rc != 0) {
                atomic_store_explicit(&v->error, rc, memory_order_relaxed);
                return rc;
            }
        }
        atomic_store_explicit(&v->counter, seen + 1, memory_order_relaxed);
        if (!v->yield_inside && i % YIELD_EVERY == YIELD_EVERY - 1) {
            int rc = weft_co_yield(); /* outside the read-write pair */
            if (rc != 0) {
                atomic_store_explicit(&v->error, rc, memory_order_relaxed);
                return rc;
            }
        }
    }
    return 0;
}

struct run {
    struct visits v;
    uint64_t switches;
};

static int main_co(void *arg, void **result)
{
    (void)result;
    struct run *r = arg;
    weft_task_t *t[NCOROS];
    int n = 0, rc = 0;
    for (; n < NCOROS; n++) {
        rc = weft_co_spawn(&t[n], visit, &r->v, "visitor", 0);
        if (rc != 0)
            break;
    }
    for (int i = 0; i < n; i++) {
        int ar = weft_co_await(t[i], NULL);
        if (ar != 0 && rc == 0)
            rc = ar;
        weft_task_release(t[i]);
    }
    return rc;
}

/* One way: the total, or a negative weft error; the time and switches. */
static int64_t run_way(bool yield_inside, uint64_t per_coro, double *seconds, uint64_t *switches)
{
    struct run r = {.v = {.yield_inside = yield_inside, .per_coro = per_coro}};
    weft_loop_stats_t st;
    weft_loop_opts_t o = {.name = "visits", .stats = &st};
    weft_time_t t0 = weft_now();
    int rc = weft_loop_run(main_co, &r, &o);
    *seconds = weft_seconds_between(t0, weft_now());
    *switches = st.switches;
    if (rc == 0)
        rc = atomic_load_explicit(&r.v.error, memory_order_relaxed);
    return rc != 0 ? rc : (int64_t)atomic_load_explicit(&r.v.counter, memory_order_relaxed);
}

static int co_visits_lesson(lesson_run_t *run)
{
    char a[32], b[32];
    uint64_t per = lesson_scaled(run, VISITS);
    uint64_t expected = NCOROS * per;
    lesson_say(run, "%d coroutines on one loop x %s unprotected increments (a read, then a",
               NCOROS, lesson_fmt_count(a, sizeof a, per));
    lesson_say(run, "write), yielding every %d increments but never between the read and the write:",
               YIELD_EVERY);
    double secs;
    uint64_t switches;
    int64_t got = run_way(false, per, &secs, &switches);
    if (got < 0)
        return lesson_fail_rc(run, "coroutines yielding between increments", (int)got);
    lesson_figure_count(run, "expected", "expected total", expected);
    lesson_figure_count(run, "cooperative_total", "total, no lock", (uint64_t)got);
    lesson_figure_count(run, "cooperative_switches", "switches between coroutines", switches);
    lesson_figure_time(run, "cooperative_seconds", "time", secs);
    if ((uint64_t)got != expected)
        return lesson_fail(run, "the total is %s, not exactly %s",
                           lesson_fmt_count(a, sizeof a, (uint64_t)got),
                           lesson_fmt_count(b, sizeof b, expected));

    /* Every increment now suspends between its read and its write. */
    uint64_t per_in = lesson_scaled(run, VISITS / 10);
    uint64_t expected_in = NCOROS * per_in;
    lesson_say(run, "Now each coroutine yields between its read and its write (%s increments each):",
               lesson_fmt_count(a, sizeof a, per_in));
    double secs_in;
    uint64_t switches_in;
    int64_t got_in = run_way(true, per_in, &secs_in, &switches_in);
    if (got_in < 0)
        return lesson_fail_rc(run, "coroutines yielding inside the increment", (int)got_in);
    lesson_figure_count(run, "split_expected", "expected total", expected_in);
    lesson_figure_count(run, "split_total", "total", (uint64_t)got_in);
    lesson_figure_count(run, "split_switches", "switches between coroutines", switches_in);
    if ((uint64_t)got_in > expected_in)
        return lesson_fail(run, "the total %s is above the expected %s",
                           lesson_fmt_count(a, sizeof a, (uint64_t)got_in),
                           lesson_fmt_count(b, sizeof b, expected_in));
    lesson_say(run, "Threads are switched by the OS anywhere, even between a read and its write;");
    lesson_say(run, "coroutines only where they yield, so with no yield inside, no lock is needed.");
    if ((uint64_t)got_in < expected_in)
        lesson_say(run, "A yield inside the read-modify-write lets the others in: %s of %s updates lost.",
                   lesson_fmt_count(a, sizeof a, expected_in - (uint64_t)got_in),
                   lesson_fmt_count(b, sizeof b, expected_in));
    else
        lesson_say(run, "(With one coroutine per loop turn nothing was lost this time.)");
    lesson_key(run, "exact %s without a lock; yield inside: %s lost",
               lesson_fmt_count(a, sizeof a, expected),
               lesson_fmt_count(b, sizeof b, expected_in - (uint64_t)got_in));
    return 0;
}

WEFT_LESSON(106, "co_visits", "Cooperative vs preemptive: coroutines need no lock between yields",
            co_visits_lesson)
