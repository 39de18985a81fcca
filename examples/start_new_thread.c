/*
 * start_new_thread.c - start one thread and wait for it to finish.
 *
 * Python:                                 weft:
 *   t = threading.Thread(target=f,          weft_thread_start(&t, f, arg, &opts);
 *                        name="greeter")
 *   t.start()
 *   t.join()                                weft_thread_join(t, &result);
 *
 * A thread runs a function beside the one that started it, sharing the same
 * memory. join waits until that function has returned and hands back what
 * it returned. Build and run: build/examples/start_new_thread, or
 * `weft demo start_new_thread`.
 */
#include <inttypes.h>
#include <stdio.h>
#include <weft.h>

#include "lesson.h"

struct greeting {
    lesson_run_t *run;    /* where to print; NULL for a silent repeat */
    weft_time_t started;  /* when weft_thread_start was called */
    weft_time_t ran;      /* when the new thread's function began */
    uint64_t id;          /* the new thread's weft_thread_id() */
};

/* The body of the thread: it runs concurrently with main. */
static void *greet(void *arg)
{
    struct greeting *g = arg;
    g->ran = weft_now();
    g->id = weft_thread_id();
    if (g->run) {
        char name[16] = "";
        weft_thread_get_name(name, sizeof name);
        lesson_say(g->run, "  [thread '%s', id %" PRIu64 "] hello from the new thread",
                   name, g->id);
    }
    return g; /* handed to whoever joins */
}

static int start_new_thread_lesson(lesson_run_t *run)
{
    lesson_say(run, "main starts one thread, which prints a line; main then joins it,");
    lesson_say(run, "waiting until the thread's function returns, and gets its result.");

    struct greeting g = {.run = run};
    weft_thread_opts_t opts = {.name = "greeter"};
    weft_thread_t *t;
    g.started = weft_now();
    int rc = weft_thread_start(&t, greet, &g, &opts);
    if (rc != 0)
        return lesson_fail_rc(run, "weft_thread_start", rc);
    lesson_say(run, "  [main, id %" PRIu64 "] started the thread; now joining it", weft_thread_id());
    void *result = NULL;
    rc = weft_thread_join(t, &result);
    weft_time_t joined = weft_now();
    if (rc != 0)
        return lesson_fail_rc(run, "weft_thread_join", rc);
    if (result != &g)
        return lesson_fail(run, "join returned %p, not the thread's return value %p", result,
                           (void *)&g);
    if (g.id == weft_thread_id())
        return lesson_fail(run, "the thread reported main's id");
    lesson_say(run, "  [main] joined: the thread returned its result and has finished");

    lesson_figure_time(run, "first_run_delay", "start call to the thread running", 
                       weft_seconds_between(g.started, g.ran));
    lesson_figure_time(run, "first_start_join", "start call to join returning",
                       weft_seconds_between(g.started, joined));

    /* The cost of a thread: start and join many, one after another. */
    uint64_t n = lesson_scaled(run, 2000);
    weft_time_t t0 = weft_now();
    for (uint64_t i = 0; i < n; i++) {
        struct greeting quiet = {0};
        rc = weft_thread_start(&t, greet, &quiet, NULL);
        if (rc != 0)
            return lesson_fail_rc(run, "weft_thread_start", rc);
        rc = weft_thread_join(t, NULL);
        if (rc != 0)
            return lesson_fail_rc(run, "weft_thread_join", rc);
    }
    double each = weft_seconds_between(t0, weft_now()) / (double)n;
    lesson_figure_count(run, "repeats", "threads started and joined again", n);
    lesson_figure_time(run, "start_join_avg", "average start + join", each);

    char a[32];
    lesson_key(run, "a thread starts and joins in %s", lesson_fmt_time(a, sizeof a, each));
    return 0;
}

WEFT_LESSON(30, "start_new_thread", "Start one thread and join it", start_new_thread_lesson)
