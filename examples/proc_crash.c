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
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <weft.h>

#include "lesson.h"

/* The fork server must start while there is one thread: see the
 * WEFT_LESSON_USES_PROCESSES line at the end, and proc_cpu.c. */
struct reply {
    int64_t v;  /* twice the argument */
    int32_t pid; /* the worker that computed it */
    int32_t pad_;
};

static int work(weft_proc_task_t *t, const void *arg, size_t len)
{
    int64_t x;
    memcpy(&x, arg, len < sizeof x ? len : sizeof x);
    if (x == 13) {
        volatile int *nowhere = NULL;
        *nowhere = 1; /* a real segfault */
    }
    struct reply r = {2 * x, (int32_t)getpid(), 0};
    return weft_proc_reply(t, &r, sizeof r);
}

/* Both slots have a live worker, and neither is the dead one: the
 * replacement has started (a few seconds at most). */
static bool replaced(weft_proc_pool_t *pool, int dead)
{
    for (int k = 0; k < 5000; k++) {
        int a = weft_proc_worker_pid(pool, 0), b = weft_proc_worker_pid(pool, 1);
        if (a > 0 && b > 0 && a != dead && b != dead)
            return true;
        weft_sleep(0.001);
    }
    return false;
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
    enum { N = 40, AFTER = 8 };
    weft_future_t *fs[N];
    int first[2] = {weft_proc_worker_pid(pool, 0), weft_proc_worker_pid(pool, 1)};
    lesson_say(run, "Submit %d tasks to 2 worker processes; task 13 dereferences NULL.", N);
    int submitted = 0;
    for (int64_t i = 0; i < N && rc == 0; i++)
        if ((rc = weft_proc_submit(pool, work, &i, sizeof i, &fs[i])) == 0)
            submitted++;
    int ok = 0, crashed = 0, sig = 0, dead = 0;
    for (int64_t i = 0; i < submitted; i++) {
        const void *d;
        int r = weft_proc_result(fs[i], &d, NULL);
        if (r == 0) {
            struct reply v;
            memcpy(&v, d, sizeof v);
            ok += v.v == 2 * i;
        } else if (r == WEFT_ECRASHED && i == 13) {
            weft_proc_exit_t x;
            if (weft_proc_exit_info(pool, fs[i], &x) == 0) {
                sig = x.signal;
                dead = x.pid;
            }
            crashed++;
        }
        weft_future_release(fs[i]);
    }
    if (rc != 0) {
        weft_proc_pool_free(pool);
        return lesson_fail_rc(run, "weft_proc_submit", rc);
    }
    /* The pool goes on with a new worker: wait for it, then give both
     * workers tasks and see which ran them. */
    bool have_new = dead > 0 && replaced(pool, dead);
    int on_new = 0, right_after = 0, rc2 = 0, new_pid = 0;
    for (int64_t i = 0; i < AFTER && rc2 == 0; i++) {
        weft_future_t *f;
        const void *d;
        int64_t a = 100 + i;
        rc2 = weft_proc_submit(pool, work, &a, sizeof a, &f);
        if (rc2 != 0)
            break;
        rc2 = weft_proc_result(f, &d, NULL);
        if (rc2 == 0) {
            struct reply v;
            memcpy(&v, d, sizeof v);
            right_after += v.v == 2 * a;
            if (v.pid != first[0] && v.pid != first[1] && v.pid != dead) {
                on_new++;
                new_pid = v.pid;
            }
        }
        weft_future_release(f);
    }
    weft_proc_stats_t st;
    weft_proc_stats(pool, &st);
    weft_proc_pool_free(pool);
    if (ok != N - 1 || crashed != 1)
        return lesson_fail(run, "%d tasks right and %d crashed; expected %d and 1", ok, crashed,
                           N - 1);
    if (rc2 != 0 || right_after != AFTER)
        return lesson_fail(run, "the pool did not carry on (%s)", weft_strerror(rc2));
    if (!have_new)
        return lesson_fail(run, "no replacement for the crashed worker (pid %d)", dead);
    lesson_figure_count(run, "ok", "tasks with their right result", (uint64_t)ok);
    lesson_figure_count(run, "crashed", "tasks failed with WEFT_ECRASHED", (uint64_t)crashed);
    lesson_figure_count(run, "signal", "signal that killed the worker", (uint64_t)sig);
    lesson_figure_count(run, "spawned", "workers started (2, then the replacements)", st.spawned);
    lesson_figure_count(run, "after", "tasks submitted afterwards, all right", (uint64_t)AFTER);
    lesson_figure_count(run, "after_on_new", "of those, run by the replacement", (uint64_t)on_new);
    if (on_new)
        lesson_say(run, "The replacement (pid %d) took over the crashed worker's (pid %d) share.",
                   new_pid, dead);
    else
        lesson_say(run, "The surviving worker ran every task afterwards; the replacement stood by.");
    lesson_key(run, "%d ok, 1 crashed (signal %d), pool went on", ok, sig);
    return 0;
}

WEFT_LESSON(131, "proc_crash", "Crash isolation: a task segfaults, the pool reports it and goes on",
            proc_crash_lesson)
WEFT_LESSON_USES_PROCESSES(proc_crash_lesson)
