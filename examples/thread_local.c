/*
 * thread_local.c - thread-local storage: data each thread keeps for itself.
 *
 * Python:
 *   mydata = threading.local()
 *   def visit():
 *       mydata.visits += 1        # this thread's own attribute, no lock
 *
 * weft:
 *   weft_tls_key_t key;  weft_tls_create(&key, free);    // once
 *   weft_tls_set(&key, tally);                          // in each thread
 *   struct tally *t = weft_tls_get(&key);               // anywhere below
 *
 * A key names a slot of which every thread has its own copy, so code deep
 * inside a thread (visit() below) finds that thread's data without being
 * handed it and without a lock: no other thread can touch it. When a thread
 * exits, the key's destructor frees its value. (For data known at compile
 * time, C11's _Thread_local does the same with no call at all.)
 *
 * The lesson counts visits in each thread's own tally, and the same number
 * of visits in one counter that all threads share, and times both.
 *
 * Build and run: build/examples/thread_local, or `weft demo thread_local`.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <weft.h>

#include "lesson.h"

enum { NTHREADS = 10, VISITS = 1000000 };

struct tally {
    uint64_t visits; /* touched only by the thread that owns this tally */
};

static weft_tls_key_t tally_key;         /* one key; every thread its own value */
static _Atomic uint64_t shared_visits;   /* the alternative: one counter for all */
static atomic_int tallies_freed;         /* destructor calls, to show they happen */

/* The key's destructor: runs in each exiting thread that set a value. */
static void free_tally(void *value)
{
    free(value);
    atomic_fetch_add_explicit(&tallies_freed, 1, memory_order_relaxed);
}

/* Somewhere deep in the program: no argument says which thread this is. */
static void visit_privately(void)
{
    struct tally *t = weft_tls_get(&tally_key);
    t->visits++;
}

static void visit_shared(void)
{
    atomic_fetch_add_explicit(&shared_visits, 1, memory_order_relaxed);
}

struct job {
    uint64_t visits;    /* how many visits to make */
    bool private_tally; /* count in the thread's own tally, or the shared one */
    weft_event_t *go;
};

static void *visitor(void *arg)
{
    struct job *j = arg;
    struct tally *mine = NULL;
    if (j->private_tally) {
        mine = calloc(1, sizeof *mine);
        if (!mine)
            return (void *)(intptr_t)-ENOMEM;
        int rc = weft_tls_set(&tally_key, mine); /* the destructor frees it at exit */
        if (rc != 0) {
            free(mine);
            return (void *)(intptr_t)rc;
        }
    }
    weft_event_wait(j->go);
    for (uint64_t i = 0; i < j->visits; i++) {
        if (j->private_tally)
            visit_privately();
        else
            visit_shared();
    }
    /* Hand this thread's own count back to the joiner. */
    return (void *)(intptr_t)(mine ? (int64_t)mine->visits : 0);
}

/* Run NTHREADS visitors; per-thread counts into counts[], time into *secs. */
static int run_visitors(bool private_tally, uint64_t visits, uint64_t counts[NTHREADS],
                        double *secs)
{
    weft_event_t go;
    weft_event_init(&go);
    struct job job = {visits, private_tally, &go};
    weft_thread_t *threads[NTHREADS];
    int started = 0, rc = 0;
    for (; started < NTHREADS; started++) {
        rc = weft_thread_start(&threads[started], visitor, &job, NULL);
        if (rc != 0)
            break;
    }
    weft_time_t t0 = weft_now();
    weft_event_set(&go);
    for (int i = 0; i < started; i++) {
        void *result = NULL;
        int jr = weft_thread_join(threads[i], &result);
        if (jr != 0 && rc == 0)
            rc = jr;
        if ((intptr_t)result < 0 && rc == 0)
            rc = (int)(intptr_t)result;
        counts[i] = (intptr_t)result > 0 ? (uint64_t)(intptr_t)result : 0;
    }
    *secs = weft_seconds_between(t0, weft_now());
    weft_event_destroy(&go);
    return rc;
}

static int thread_local_lesson(lesson_run_t *run)
{
    uint64_t visits = lesson_scaled(run, VISITS);
    uint64_t expected = NTHREADS * visits;
    char e[32], c[32], t1[32], t2[32];
    lesson_say(run, "%d threads each count %s visits in their own tally (weft_tls, no lock),",
               NTHREADS, lesson_fmt_count(e, sizeof e, visits));
    lesson_say(run, "then the same visits in one shared atomic counter. Counts and times:");

    atomic_store_explicit(&tallies_freed, 0, memory_order_relaxed);
    int rc = weft_tls_create(&tally_key, free_tally);
    if (rc != 0)
        return lesson_fail_rc(run, "weft_tls_create", rc);
    uint64_t counts[NTHREADS] = {0};
    double private_secs, shared_secs;
    rc = run_visitors(true, visits, counts, &private_secs);
    weft_tls_delete(&tally_key);
    if (rc != 0)
        return lesson_fail_rc(run, "the thread-local visitors", rc);
    uint64_t sum = 0, low = UINT64_MAX, high = 0;
    for (int i = 0; i < NTHREADS; i++) {
        sum += counts[i];
        low = counts[i] < low ? counts[i] : low;
        high = counts[i] > high ? counts[i] : high;
    }
    lesson_figure_count(run, "per_thread_min", "own tally, fewest in a thread", low);
    lesson_figure_count(run, "per_thread_max", "own tally, most in a thread", high);
    lesson_figure_count(run, "private_total", "own tallies added up", sum);
    lesson_figure_time(run, "private_seconds", "own tallies: time", private_secs);
    /* join returns after the thread has exited, destructors included. */
    int freed = atomic_load_explicit(&tallies_freed, memory_order_relaxed);
    lesson_figure_count(run, "freed", "tallies freed by the key's destructor", (uint64_t)freed);
    if (sum != expected || low != visits)
        return lesson_fail(run, "the tallies add up to %s, expected %s",
                           lesson_fmt_count(c, sizeof c, sum),
                           lesson_fmt_count(e, sizeof e, expected));
    if (freed != NTHREADS)
        return lesson_fail(run, "the destructor ran %d times for %d threads", freed, NTHREADS);

    atomic_store_explicit(&shared_visits, 0, memory_order_relaxed);
    rc = run_visitors(false, visits, counts, &shared_secs);
    if (rc != 0)
        return lesson_fail_rc(run, "the shared-counter visitors", rc);
    uint64_t shared = atomic_load_explicit(&shared_visits, memory_order_relaxed);
    lesson_figure_count(run, "shared_total", "one shared counter: total", shared);
    lesson_figure_time(run, "shared_seconds", "one shared counter: time", shared_secs);
    lesson_figure_num(run, "shared_vs_private", "shared time / own-tally time",
                      shared_secs / private_secs, "x");
    if (shared != expected)
        return lesson_fail(run, "the shared counter reached %s, expected %s",
                           lesson_fmt_count(c, sizeof c, shared),
                           lesson_fmt_count(e, sizeof e, expected));

    lesson_key(run, "%s counted; own tallies %s, shared %s", lesson_fmt_count(e, sizeof e, expected),
               lesson_fmt_time(t1, sizeof t1, private_secs),
               lesson_fmt_time(t2, sizeof t2, shared_secs));
    return 0;
}

WEFT_LESSON(60, "thread_local", "Thread-local storage: each thread's own data, no lock",
            thread_local_lesson)
