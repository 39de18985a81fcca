/*
 * thread_visits.c - a race condition: updates lost by unprotected threads.
 *
 * Python (the course notes' example):
 *   counter = 0
 *   def visit():
 *       global counter
 *       for _ in range(100_000):
 *           counter += 1          # read, add, write: three steps
 *   100 threads run visit(); expected 10,000,000, obtained less.
 *
 * `counter += 1` is a read followed by a write. If another thread writes
 * between the two, this thread's write puts back an old value plus one and
 * the other thread's increments are lost.
 *
 * In C a plain `counter++` from several threads is a data race, which is
 * undefined behaviour: the compiler may assume it never happens and, for
 * example, add 100,000 once. So this lesson keeps every step defined: a
 * relaxed atomic load, then a relaxed atomic store. Each step is atomic; the
 * pair is not, and that gap is the race. (thread_safe_visits.c closes it.)
 *
 * Build and run: build/examples/thread_visits, or `weft demo thread_visits`.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <weft.h>

#include "lesson.h"

enum { NTHREADS = 100, VISITS = 100000, RUNS = 3 };

struct visits {
    _Atomic uint64_t counter; /* the shared count, read and written unprotected */
    uint64_t per_thread;      /* visits each thread makes */
    weft_event_t go;          /* the starting gun: all threads begin together */
};

static void *visit_unprotected(void *arg)
{
    struct visits *v = arg;
    /* Wait for every thread to exist, so that they overlap; otherwise the
     * first threads could finish before the last ones start. */
    weft_event_wait(&v->go);
    for (uint64_t i = 0; i < v->per_thread; i++) {
        uint64_t seen = atomic_load_explicit(&v->counter, memory_order_relaxed);
        /* another thread may store here, between our read and our write */
        atomic_store_explicit(&v->counter, seen + 1, memory_order_relaxed);
    }
    return NULL;
}

/* One run: NTHREADS threads, per_thread visits each. The count obtained, or
 * a negative weft error. *seconds is the time from the gun to the last join. */
static int64_t run_visits(uint64_t per_thread, double *seconds)
{
    struct visits v = {.per_thread = per_thread};
    atomic_init(&v.counter, 0);
    weft_event_init(&v.go);
    weft_thread_t *threads[NTHREADS];
    int started = 0, rc = 0;
    for (; started < NTHREADS; started++) {
        rc = weft_thread_start(&threads[started], visit_unprotected, &v, NULL);
        if (rc != 0)
            break;
    }
    weft_time_t t0 = weft_now();
    weft_event_set(&v.go); /* also releases the started ones if a start failed */
    for (int i = 0; i < started; i++) {
        int jr = weft_thread_join(threads[i], NULL);
        if (jr != 0 && rc == 0)
            rc = jr;
    }
    *seconds = weft_seconds_between(t0, weft_now());
    weft_event_destroy(&v.go);
    return rc != 0 ? rc : (int64_t)atomic_load_explicit(&v.counter, memory_order_relaxed);
}

static int thread_visits_lesson(lesson_run_t *run)
{
    uint64_t per_thread = lesson_scaled(run, VISITS);
    uint64_t expected = NTHREADS * per_thread;
    char e[32], c[32], t[32];
    lesson_say(run, "%d threads each add 1 to a shared counter %s times, unprotected:", NTHREADS,
               lesson_fmt_count(e, sizeof e, per_thread));
    lesson_say(run, "read, then write. A write between them is lost. Three runs:");
    int cpus = weft_cpu_count();
    if (cpus < 2) {
        lesson_say(run, "Only one CPU is usable here: the threads take turns instead of");
        lesson_say(run, "running at once, so the race rarely shows.");
    }

    lesson_figure_count(run, "expected", "expected total", expected);
    uint64_t worst = expected, obtained[RUNS];
    for (int i = 0; i < RUNS; i++) {
        double s;
        int64_t got = run_visits(per_thread, &s);
        if (got < 0)
            return lesson_fail_rc(run, "starting or joining the threads", (int)got);
        obtained[i] = (uint64_t)got;
        if (obtained[i] > expected)
            return lesson_fail(run, "obtained %s, more than the %s increments made",
                               lesson_fmt_count(c, sizeof c, obtained[i]),
                               lesson_fmt_count(e, sizeof e, expected));
        if (obtained[i] < worst)
            worst = obtained[i];
        char key[16], label[64];
        snprintf(key, sizeof key, "total_%d", i + 1);
        snprintf(label, sizeof label, "run %d: count obtained (in %s)", i + 1,
                 lesson_fmt_time(t, sizeof t, s));
        lesson_figure_count(run, key, label, obtained[i]);
    }
    int distinct = 1;
    for (int i = 1; i < RUNS; i++) {
        int seen = 0;
        for (int j = 0; j < i; j++)
            seen |= obtained[j] == obtained[i];
        distinct += !seen;
    }
    lesson_figure_count(run, "total", "count obtained (run 1)", obtained[0]);
    lesson_figure_count(run, "lost_max", "most updates lost in a run", expected - worst);
    lesson_figure_num(run, "lost_max_pct", "as a share of the expected total",
                      100.0 * (double)(expected - worst) / (double)expected, "%");
    lesson_figure_count(run, "distinct", "different totals in 3 runs", (uint64_t)distinct);
    lesson_figure_count(run, "cpus", "CPUs usable", (uint64_t)cpus);
    if (worst == expected)
        lesson_say(run, "No update was lost this time%s.",
                   cpus < 2 ? " (one CPU: expected)" : "; the race is still there");

    lesson_key(run, "%s of %s (lost up to %.2f%%)", lesson_fmt_count(c, sizeof c, obtained[0]),
               lesson_fmt_count(e, sizeof e, expected),
               100.0 * (double)(expected - worst) / (double)expected);
    return 0;
}

WEFT_LESSON(40, "thread_visits", "A race condition: unprotected threads lose updates",
            thread_visits_lesson)
