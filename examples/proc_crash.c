/*
 * proc_crash.c - crash isolation: a task that segfaults fails alone, and
 * the process pool carries on.
 *
 * Python: a worker of concurrent.futures.ProcessPoolExecutor that dies
 * breaks the whole pool (BrokenProcessPool: every pending future fails and
 * the pool must be rebuilt); a multiprocessing.Pool can hang waiting for the
 * lost task.
 *
 * weft's pool learns from its fork server that the worker died, fails only
 * the task that worker was running (WEFT_ECRASHED, with the signal), lets
 * every other task finish, and starts a replacement worker.
 *
 * Build and run: build/examples/proc_crash, or `weft demo proc_crash`.
 */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <weft.h>

#include "lesson.h"

/* The fork server must start while there is one thread: see the
 * WEFT_LESSON_USES_PROCESSES line at the end, and proc_cpu.c. */
static int work(weft_proc_task_t *t, const void *arg, size_t len)
{
    int64_t x;
    memcpy(&x, arg, len < sizeof x ? len : sizeof x);
    if (x == 13) {
        volatile int *nowhere = NULL;
        *nowhere = 1; /* a real segfault */
    }
    x *= 2;
    return weft_proc_reply(t, &x, sizeof x);
}

static int proc_crash_lesson(lesson_run_t *run)
{
    weft_proc_pool_t *pool;
    weft_proc_opts_t opts = {.workers = 2};
    int rc = weft_proc_pool_create(&pool, &opts);
    if (rc == WEFT_ETHREADED) {
        /* Under TSan (a thread of its own from the start) the fork server
         * cannot start: say so rather than fail. */
        lesson_say(run, "Skipped: the program ran threads before the fork server could start.");
        lesson_key(run, "skipped (no fork server)");
        return 0;
    }
    if (rc)
        return lesson_fail_rc(run, "weft_proc_pool_create", rc);
    enum { N = 40 };
    weft_future_t *fs[N];
    lesson_say(run, "Submit %d tasks to 2 worker processes; task 13 dereferences NULL.", N);
    for (int64_t i = 0; i < N; i++)
        if ((rc = weft_proc_submit(pool, work, &i, sizeof i, &fs[i])) != 0)
            return lesson_fail_rc(run, "weft_proc_submit", rc);
    int ok = 0, crashed = 0, sig = 0;
    for (int64_t i = 0; i < N; i++) {
        const void *d;
        rc = weft_proc_result(fs[i], &d, NULL);
        if (rc == 0) {
            int64_t v;
            memcpy(&v, d, sizeof v);
            ok += v == 2 * i;
        } else if (rc == WEFT_ECRASHED && i == 13) {
            weft_proc_exit_t x;
            weft_proc_exit_info(pool, fs[i], &x);
            sig = x.signal;
            crashed++;
        }
        weft_future_release(fs[i]);
    }
    /* The pool goes on with a new worker. */
    int64_t after = 21;
    weft_future_t *f;
    const void *d;
    int rc2 = weft_proc_submit(pool, work, &after, sizeof after, &f);
    if (rc2 == 0)
        rc2 = weft_proc_result(f, &d, NULL);
    int64_t v = 0;
    if (rc2 == 0)
        memcpy(&v, d, sizeof v);
    if (rc2 == 0)
        weft_future_release(f);
    weft_proc_stats_t st;
    weft_proc_stats(pool, &st);
    weft_proc_pool_free(pool);
    if (ok != N - 1 || crashed != 1)
        return lesson_fail(run, "%d tasks right and %d crashed; expected %d and 1", ok, crashed,
                           N - 1);
    if (rc2 != 0 || v != 42)
        return lesson_fail(run, "the pool did not carry on (%s)", weft_strerror(rc2));
    lesson_figure_count(run, "ok", "tasks with their right result", (uint64_t)ok);
    lesson_figure_count(run, "crashed", "tasks failed with WEFT_ECRASHED", (uint64_t)crashed);
    lesson_figure_count(run, "signal", "signal that killed the worker", (uint64_t)sig);
    lesson_figure_count(run, "spawned", "workers started (one replacement)", st.spawned);
    lesson_figure_text(run, "after", "a task submitted afterwards", "ran on the replacement");
    lesson_key(run, "%d ok, 1 crashed (signal %d), pool went on", ok, sig);
    return 0;
}

WEFT_LESSON(131, "proc_crash", "Crash isolation: a task segfaults, the pool reports it and goes on",
            proc_crash_lesson)
WEFT_LESSON_USES_PROCESSES(proc_crash_lesson)
