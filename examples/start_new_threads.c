/*
 * start_new_threads.c - start ten threads; watch their output interleave;
 * join waits for each.
 *
 * Python:
 *   threads = [threading.Thread(target=work, args=(i,)) for i in range(10)]
 *   for t in threads: t.start()
 *   for t in threads: t.join()
 *
 * Each thread says it is starting, sleeps a moment, says it is finishing.
 * The operating system decides when each runs, so the lines come out in an
 * order nobody chose, different from run to run. Because the threads sleep
 * at the same time, ten sleeps take about as long as one. Build and run:
 * build/examples/start_new_threads, or `weft demo start_new_threads`.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <weft.h>

#include "lesson.h"

enum { NTHREADS = 10 };

struct crowd {
    lesson_run_t *run;
    double nap;                 /* seconds each thread sleeps */
    atomic_int finished;        /* tickets: the order threads finish in */
    int finish_rank[NTHREADS];  /* written by thread i only, read after join */
};

struct worker {
    struct crowd *crowd;
    int index;
};

static void *work(void *arg)
{
    struct worker *w = arg;
    lesson_say(w->crowd->run, "  thread %d: starting", w->index);
    int rc = weft_sleep(w->crowd->nap); /* stands for waiting on I/O */
    /* relaxed: the ticket only orders the finishes; join publishes it. */
    int rank = atomic_fetch_add_explicit(&w->crowd->finished, 1, memory_order_relaxed);
    w->crowd->finish_rank[w->index] = rank;
    lesson_say(w->crowd->run, "  thread %d: finishing (number %d to finish)", w->index,
               rank + 1);
    return (void *)(intptr_t)rc;
}

static int start_new_threads_lesson(lesson_run_t *run)
{
    lesson_say(run, "main starts %d threads that each sleep a moment; their lines interleave", NTHREADS);
    lesson_say(run, "in an order the OS picks. main joins them in order 0..9: each join waits.");

    struct crowd crowd = {.run = run, .nap = 0.05 * lesson_scale(run)};
    if (crowd.nap > 1.0)
        crowd.nap = 1.0;
    atomic_init(&crowd.finished, 0);
    struct worker workers[NTHREADS];
    weft_thread_t *threads[NTHREADS];
    int started = 0, rc = 0;

    weft_time_t t0 = weft_now();
    for (int i = 0; i < NTHREADS; i++) {
        char name[16];
        snprintf(name, sizeof name, "worker-%d", i);
        weft_thread_opts_t opts = {.name = name};
        workers[i] = (struct worker){&crowd, i};
        lesson_say(run, "main: starting thread %d", i);
        rc = weft_thread_start(&threads[i], work, &workers[i], &opts);
        if (rc != 0)
            break;
        started++;
    }
    int join_rc = 0, sleep_rc = 0;
    for (int i = 0; i < started; i++) {
        void *result;
        int jr = weft_thread_join(threads[i], &result);
        if (jr != 0 && !join_rc)
            join_rc = jr;
        if (jr == 0 && (intptr_t)result != 0)
            sleep_rc = (int)(intptr_t)result;
        lesson_say(run, "main: joined thread %d", i);
    }
    double wall = weft_seconds_between(t0, weft_now());
    if (rc != 0)
        return lesson_fail_rc(run, "weft_thread_start", rc);
    if (join_rc != 0)
        return lesson_fail_rc(run, "weft_thread_join", join_rc);
    if (sleep_rc != 0)
        return lesson_fail_rc(run, "weft_sleep", sleep_rc);

    /* What the run showed: the order of finishing, and how far it strays
     * from the order of starting. */
    char order[64] = "";
    int by_rank[NTHREADS], out_of_place = 0;
    for (int i = 0; i < NTHREADS; i++)
        by_rank[crowd.finish_rank[i]] = i;
    for (int r = 0; r < NTHREADS; r++) {
        char num[8];
        snprintf(num, sizeof num, r ? " %d" : "%d", by_rank[r]);
        strncat(order, num, sizeof order - strlen(order) - 1);
        out_of_place += by_rank[r] != r;
    }
    lesson_figure_text(run, "finish_order", "threads finished in this order", order);
    lesson_figure_count(run, "out_of_place", "threads not finishing in start order",
                        (uint64_t)out_of_place);
    lesson_figure_time(run, "nap", "each thread slept", crowd.nap);
    lesson_figure_time(run, "wall", "all ten, start to last join", wall);
    lesson_figure_num(run, "overlap", "ten sleeps in the time of", wall / crowd.nap, "sleeps");

    char a[32];
    lesson_key(run, "10 x %s sleeps took %s in all", lesson_fmt_time(a, sizeof a, crowd.nap),
               lesson_fmt_time((char[32]){0}, 32, wall));
    return 0;
}

WEFT_LESSON(35, "start_new_threads", "Start ten threads; output interleaves; join waits",
            start_new_threads_lesson)
