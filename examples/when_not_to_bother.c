/*
 * when_not_to_bother.c - a job too small to be worth parallelising.
 *
 * Handing work to another thread costs something: a task record, a queue,
 * often waking a sleeping worker (a system call and a trip through the
 * scheduler) and waiting for it to report back. For a job of a few
 * microseconds that cost is the whole bill, and the parallel version is
 * slower than the plain loop. The lesson sums arrays of growing size both
 * ways (a loop; weft_par_reduce on a pool) and shows where, on this
 * machine, the pool starts to pay. Below that: leave the code sequential,
 * which is also simpler to read and debug. Build and run:
 * build/examples/when_not_to_bother, or `weft demo when_not_to_bother`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <weft.h>

#include "lesson.h"

static int sum_map(void *ctx, int64_t lo, int64_t hi, void *acc)
{
    const double *a = ctx;
    double s = *(double *)acc;
    for (int64_t i = lo; i < hi; i++)
        s += a[i];
    *(double *)acc = s;
    return 0;
}

static void sum_combine(void *ctx, void *acc, const void *other)
{
    (void)ctx;
    *(double *)acc += *(const double *)other;
}

/* Median of three timings, each of `reps` calls, in seconds per call. */
static int time_both(weft_pool_t *pool, const double *a, int64_t n, uint64_t reps, double *seq,
                     double *par)
{
    double ts[3], tp[3];
    for (int r = 0; r < 3; r++) {
        volatile double sink = 0;
        weft_time_t t0 = weft_now();
        for (uint64_t k = 0; k < reps; k++) {
            double s = 0;
            sum_map((void *)a, 0, n, &s);
            sink += s;
        }
        ts[r] = weft_seconds_between(t0, weft_now()) / (double)reps;
        t0 = weft_now();
        for (uint64_t k = 0; k < reps; k++) {
            double s, zero = 0;
            int rc = weft_par_reduce(pool, 0, n, 0, &s, sizeof s, &zero, sum_map, sum_combine,
                                     (void *)a);
            if (rc != 0)
                return rc;
            if (s != (double)n) /* every element is 1.0: exact */
                return -EIO;
            sink += s;
        }
        tp[r] = weft_seconds_between(t0, weft_now()) / (double)reps;
        /* Both ways summed reps arrays of n ones (this also keeps the
         * compiler from dropping the loop's sums). */
        if (sink != 2.0 * (double)reps * (double)n)
            return -EIO;
    }
    for (int i = 0; i < 3; i++)
        for (int k = i + 1; k < 3; k++) {
            if (ts[k] < ts[i]) {
                double x = ts[i];
                ts[i] = ts[k], ts[k] = x;
            }
            if (tp[k] < tp[i]) {
                double x = tp[i];
                tp[i] = tp[k], tp[k] = x;
            }
        }
    *seq = ts[1];
    *par = tp[1];
    return 0;
}

static int when_not_to_bother_lesson(lesson_run_t *run)
{
    int cpus = weft_cpu_count();
    int64_t sizes[] = {100, 1000, 10000, 100000, 1000000};
    int64_t maxn = sizes[4];
    double *a = malloc((size_t)maxn * sizeof *a);
    if (!a)
        return lesson_fail(run, "out of memory");
    for (int64_t i = 0; i < maxn; i++)
        a[i] = 1.0;
    weft_pool_t *pool;
    weft_pool_opts_t o = {.workers = cpus < 2 ? 2 : cpus};
    int rc = weft_pool_create(&pool, &o);
    if (rc != 0) {
        free(a);
        return lesson_fail_rc(run, "weft_pool_create", rc);
    }
    lesson_say(run, "Sum n numbers with a plain loop, and with weft_par_reduce on %d workers.",
               o.workers);
    int64_t first_win = -1;
    double tiny_seq = 0, tiny_par = 0;
    for (int k = 0; k < 5; k++) {
        int64_t n = sizes[k];
        /* About the same total work per size: many repeats of small sums. */
        uint64_t reps = lesson_scaled(run, (uint64_t)(5000000 / n));
        if (reps > 300)
            reps = lesson_scaled(run, 300);
        double seq, par;
        rc = time_both(pool, a, n, reps, &seq, &par);
        if (rc != 0)
            break;
        char key[32], label[64];
        snprintf(key, sizeof key, "seq_%lld", (long long)n);
        snprintf(label, sizeof label, "n = %lld: loop", (long long)n);
        lesson_figure_time(run, key, label, seq);
        snprintf(key, sizeof key, "par_%lld", (long long)n);
        snprintf(label, sizeof label, "n = %lld: pool", (long long)n);
        lesson_figure_time(run, key, label, par);
        if (k == 0)
            tiny_seq = seq, tiny_par = par;
        if (first_win < 0 && par < seq)
            first_win = n;
    }
    weft_pool_free(pool);
    free(a);
    if (rc != 0)
        return lesson_fail_rc(run, "weft_par_reduce", rc);
    lesson_figure_num(run, "tiny_ratio", "n = 100: pool time / loop time", tiny_par / tiny_seq, "x");
    if (tiny_par > tiny_seq)
        lesson_say(run, "At n = 100 the loop takes %.0f ns; the pool spends more than that just",
                   tiny_seq * 1e9);
    else
        lesson_say(run, "At n = 100 the pool kept up with the loop in this run (its workers were");
    if (tiny_par > tiny_seq)
        lesson_say(run, "handing the work over and collecting the result.");
    else
        lesson_say(run, "already awake); it still cannot do better than a loop this short.");
    if (first_win > 0)
        lesson_say(run, "The pool first won at n = %lld here.", (long long)first_win);
    else
        lesson_say(run, "The pool never won here (other programs may hold the other cores).");
    lesson_say(run, "For code that is fast enough or rarely run, leave it sequential: simpler,");
    lesson_say(run, "and no slower.");
    if (first_win > 0)
        lesson_key(run, "pool %.0fx slower at n=100; wins from n=%lld", tiny_par / tiny_seq,
                   (long long)first_win);
    else
        lesson_key(run, "pool %.0fx slower at n=100; never won here", tiny_par / tiny_seq);
    return 0;
}

WEFT_LESSON(140, "when_not_to_bother", "When not to bother: a job too small for a pool",
            when_not_to_bother_lesson)
