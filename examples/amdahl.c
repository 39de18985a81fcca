/*
 * amdahl.c - Amdahl's law: the serial part of a program bounds its speedup.
 *
 * With a fraction s of the work serial, n workers take at least
 * T1 (s + (1 - s) / n): the speedup is at most 1 / (s + (1 - s) / n), and
 * never more than 1 / s however many workers. The lesson runs a job with a
 * serial phase (a chain of steps, each needing the one before) followed by
 * a parallel phase (independent steps, weft_par_for), at 1, 2, ... workers;
 * it times the serial phase's share of a one-worker run, fits the law to
 * the measured times (weft_tune_fit, through weft_tune_measure) and prints
 * the measured speedups beside the fitted curve. Build and run:
 * build/examples/amdahl, or `weft demo amdahl`.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <weft.h>

#include "lesson.h"

struct job {
    uint64_t serial_steps, parallel_items, item_steps;
    uint64_t chain;        /* result of the serial phase */
    double serial_seconds; /* time of the last serial phase */
    _Atomic uint64_t check; /* xor of the parallel phase's results */
    uint64_t expected;      /* check of the first run */
    int runs, wrong;        /* runs, and runs whose check differed */
};

static uint64_t mix(uint64_t x, uint64_t steps)
{
    for (uint64_t k = 0; k < steps; k++)
        x = x * 6364136223846793005ull + 1442695040888963407ull;
    return x;
}

static int parallel_body(void *ctx, int64_t lo, int64_t hi)
{
    struct job *j = ctx;
    uint64_t acc = 0;
    for (int64_t i = lo; i < hi; i++)
        acc ^= mix((uint64_t)i ^ j->chain, j->item_steps);
    atomic_fetch_xor_explicit(&j->check, acc, memory_order_relaxed);
    return 0;
}

static int job_run(weft_pool_t *pool, void *ctx)
{
    struct job *j = ctx;
    weft_time_t t0 = weft_now();
    j->chain = mix(1, j->serial_steps); /* serial: each step needs the last */
    j->serial_seconds = weft_seconds_between(t0, weft_now());
    atomic_store_explicit(&j->check, 0, memory_order_relaxed);
    int rc = weft_par_for(pool, 0, (int64_t)j->parallel_items, 0, parallel_body, j);
    uint64_t c = atomic_load_explicit(&j->check, memory_order_relaxed);
    if (j->runs++ == 0)
        j->expected = c;
    else if (c != j->expected)
        j->wrong++;
    return rc;
}

static int amdahl_lesson(lesson_run_t *run)
{
    int cpus = weft_cpu_count();
    uint64_t total_steps = lesson_scaled(run, 60000000);
    struct job j = {.serial_steps = total_steps / 4, .item_steps = 200};
    j.parallel_items = total_steps * 3 / 4 / j.item_steps;
    lesson_say(run, "A job with a serial phase (a chain of dependent steps) then a parallel one");
    lesson_say(run, "(independent steps, shared among the workers), run at 1, 2, ... workers.");

    int counts[8], nc = 0;
    int top = 2 * cpus < 4 ? 4 : 2 * cpus;
    for (int c = 1; c <= top && nc < 8; c++)
        counts[nc++] = c;
    weft_tune_opts_t to = {.counts = counts, .ncounts = (size_t)nc, .runs = 3, .warmup = 1};
    weft_tune_point_t pts[8];
    weft_tune_result_t res;
    int n = weft_tune_measure(job_run, &j, &to, pts, 8, &res);
    if (n < 0)
        return lesson_fail_rc(run, "weft_tune_measure", n);

    /* The serial share of a one-worker run, timed directly. */
    weft_pool_t *one;
    weft_pool_opts_t o = {.workers = 1};
    int rc = weft_pool_create(&one, &o);
    if (rc != 0)
        return lesson_fail_rc(run, "weft_pool_create", rc);
    weft_time_t t0 = weft_now();
    rc = job_run(one, &j);
    double whole = weft_seconds_between(t0, weft_now());
    weft_pool_free(one);
    if (rc != 0)
        return lesson_fail_rc(run, "job_run", rc);
    if (j.wrong)
        return lesson_fail(run, "%d of %d runs computed a different result", j.wrong, j.runs);

    lesson_figure_num(run, "serial_share", "serial phase's share of a 1-worker run (timed)",
                      j.serial_seconds / whole, "");
    char measured[160] = "", fitted[160] = "";
    size_t um = 0, uf = 0;
    for (int i = 0; i < n; i++) {
        char key[32], label[64];
        snprintf(key, sizeof key, "speedup_w%d", pts[i].workers);
        snprintf(label, sizeof label, "%d worker%s: measured speedup", pts[i].workers,
                 pts[i].workers > 1 ? "s" : "");
        lesson_figure_num(run, key, label, pts[i].speedup, "x");
        snprintf(key, sizeof key, "fitted_w%d", pts[i].workers);
        snprintf(label, sizeof label, "%d worker%s: fitted Amdahl speedup", pts[i].workers,
                 pts[i].workers > 1 ? "s" : "");
        lesson_figure_num(run, key, label, res.t1 / pts[i].fitted, "x");
        if (um < sizeof measured)
            um += (size_t)snprintf(measured + um, sizeof measured - um, " %5.2f", pts[i].speedup);
        if (uf < sizeof fitted)
            uf += (size_t)snprintf(fitted + uf, sizeof fitted - uf, " %5.2f",
                                   res.t1 / pts[i].fitted);
    }
    char ws[160] = "";
    size_t uw = 0;
    for (int i = 0; i < n && uw < sizeof ws; i++)
        uw += (size_t)snprintf(ws + uw, sizeof ws - uw, " %5d", pts[i].workers);
    lesson_say(run, "workers  :%s", ws);
    lesson_say(run, "measured :%s", measured);
    lesson_say(run, "fitted   :%s", fitted);
    lesson_figure_num(run, "serial_fraction", "fitted serial fraction s", res.serial_fraction, "");
    if (res.serial_fraction > 0)
        lesson_figure_num(run, "ceiling", "the law's ceiling 1/s, with unlimited workers",
                          1.0 / res.serial_fraction, "x");
    if (res.serial_fraction >= j.serial_seconds / whole) {
        lesson_say(run, "The fitted s is above the timed serial share: on %d CPU%s, workers past the",
                   cpus, cpus > 1 ? "s" : "");
        lesson_say(run, "core count add nothing (nor do cores other programs are using), and the");
        lesson_say(run, "fit counts that as serial too.");
    } else {
        lesson_say(run, "The fitted s came out below the timed serial share: the times were noisy");
        lesson_say(run, "(other programs share this machine); run it again to see it move.");
    }
    lesson_key(run, "serial share %.2f timed, s = %.2f fitted", j.serial_seconds / whole,
               res.serial_fraction);
    return 0;
}

WEFT_LESSON(120, "amdahl", "Amdahl's law: the serial part bounds the speedup", amdahl_lesson)
