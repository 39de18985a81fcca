/*
 * cpu_bound_pool.c - CPU-bound work on a pool of 1..N workers.
 *
 * Python:                                   weft:
 *   with ThreadPoolExecutor(n) as ex:         weft_pool_create(&p, &(opts){.workers = n})
 *       sum(ex.map(count_primes, chunks))     weft_par_reduce(p, ..., count_primes, ...)
 *
 * Counting primes by trial division only keeps the processor busy: nothing
 * to wait for, so only more cores make it faster. In CPython, threads do
 * not help here: the Global Interpreter Lock lets one thread run Python
 * code at a time. C has no such lock, so the same pool of threads runs on
 * every core at once. The lesson times the sequential loop, then the pool
 * at 1, 2, ... workers, past the number of cores, and fits Amdahl's law to
 * the times (weft_tune_measure). Build and run: build/examples/cpu_bound_pool,
 * or `weft demo cpu_bound_pool`.
 */
#include <stdio.h>
#include <time.h>
#include <weft.h>

#include "lesson.h"

static int is_prime(uint64_t n)
{
    if (n < 2)
        return 0;
    if (n % 2 == 0)
        return n == 2;
    for (uint64_t d = 3; d * d <= n; d += 2)
        if (n % d == 0)
            return 0;
    return 1;
}

/* par_reduce's map: count the primes in [lo, hi). */
static int count_primes(void *ctx, int64_t lo, int64_t hi, void *acc)
{
    (void)ctx;
    uint64_t c = 0;
    for (int64_t i = lo; i < hi; i++)
        c += (uint64_t)is_prime((uint64_t)i);
    *(uint64_t *)acc += c;
    return 0;
}

static void add_counts(void *ctx, void *acc, const void *other)
{
    (void)ctx;
    *(uint64_t *)acc += *(const uint64_t *)other;
}

struct job {
    int64_t limit;
    uint64_t expected;
    int wrong; /* runs whose count differed from the sequential one */
};

/* The workload weft_tune_measure runs on each pool. */
static int primes_on_pool(weft_pool_t *pool, void *ctx)
{
    struct job *j = ctx;
    uint64_t zero = 0, n = 0;
    int rc = weft_par_reduce(pool, 0, j->limit, 0, &n, sizeof n, &zero, count_primes, add_counts,
                             NULL);
    if (rc == 0 && n != j->expected)
        j->wrong++;
    return rc;
}

static double cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cpu_bound_pool_lesson(lesson_run_t *run)
{
    int cpus = weft_cpu_count();
    struct job j = {(int64_t)lesson_scaled(run, 600000), 0, 0};
    lesson_say(run, "Count the primes below %lld by trial division: pure computation.",
               (long long)j.limit);
    lesson_say(run, "In CPython a thread pool cannot speed this up (the GIL runs one thread at");
    lesson_say(run, "a time); C has no GIL, so the pool's threads compute on every core at once.");

    weft_time_t t0 = weft_now();
    count_primes(NULL, 0, j.limit, &j.expected);
    double seq = weft_seconds_between(t0, weft_now());
    lesson_figure_count(run, "primes", "primes found", j.expected);
    lesson_figure_count(run, "cpus", "CPUs this process may use", (uint64_t)cpus);
    lesson_figure_time(run, "sequential", "sequential loop, no pool", seq);

    /* No GIL, shown: CPU time used per second of wall time with a pool of
     * one worker per CPU. Two threads computing at once burn two seconds
     * of CPU per second. */
    weft_pool_t *p;
    weft_pool_opts_t o = {.workers = cpus};
    int rc = weft_pool_create(&p, &o);
    if (rc != 0)
        return lesson_fail_rc(run, "weft_pool_create", rc);
    double c0 = cpu_seconds();
    t0 = weft_now();
    rc = primes_on_pool(p, &j);
    double wall = weft_seconds_between(t0, weft_now()), cpu = cpu_seconds() - c0;
    weft_pool_free(p);
    if (rc != 0)
        return lesson_fail_rc(run, "weft_par_reduce", rc);
    lesson_figure_num(run, "cpu_per_wall", "CPU seconds per wall second (one worker per CPU)",
                      cpu / wall, "x");
    if (cpus > 1 && cpu / wall < 1.2)
        lesson_say(run, "Near 1 or below: other programs are using the other cores right now; the "
                        "speedups below are what is left for this one.");
    else if (cpus > 1)
        lesson_say(run, "Above 1 means threads really ran at the same instant (a GIL would keep it near 1).");
    else
        lesson_say(run, "Only one CPU is usable here, so no pool can beat the sequential loop.");

    /* 1, 2, ... workers, past the core count: time, speedup, Amdahl fit. */
    int counts[WEFT_TUNE_MAX_COUNTS], nc = 0;
    int top = 2 * cpus < 4 ? 4 : 2 * cpus;
    for (int c = 1; c <= top && nc < 8; c++)
        counts[nc++] = c;
    weft_tune_opts_t to = {.counts = counts, .ncounts = (size_t)nc, .runs = 3, .warmup = 1};
    weft_tune_point_t pts[WEFT_TUNE_MAX_COUNTS];
    weft_tune_result_t res;
    int n = weft_tune_measure(primes_on_pool, &j, &to, pts, WEFT_TUNE_MAX_COUNTS, &res);
    if (n < 0)
        return lesson_fail_rc(run, "weft_tune_measure", n);
    if (j.wrong)
        return lesson_fail(run, "%d pool runs counted a different number of primes", j.wrong);
    char curve[256] = "";
    size_t used = 0;
    for (int i = 0; i < n; i++) {
        char key[32], label[80];
        snprintf(key, sizeof key, "time_w%d", pts[i].workers);
        snprintf(label, sizeof label, "%d worker%s%s: time (median of 3)", pts[i].workers,
                 pts[i].workers > 1 ? "s" : "", pts[i].workers > cpus ? ", more than CPUs" : "");
        lesson_figure_time(run, key, label, pts[i].seconds);
        snprintf(key, sizeof key, "speedup_w%d", pts[i].workers);
        snprintf(label, sizeof label, "%d worker%s: speedup over 1 worker", pts[i].workers,
                 pts[i].workers > 1 ? "s" : "");
        lesson_figure_num(run, key, label, pts[i].speedup, "x");
        if (used < sizeof curve)
            used += (size_t)snprintf(curve + used, sizeof curve - used, " %.2f",
                                     res.t1 / pts[i].fitted);
    }
    lesson_figure_num(run, "serial_fraction", "Amdahl fit: estimated serial fraction",
                      res.serial_fraction, "");
    lesson_figure_count(run, "fastest", "fastest worker count", (uint64_t)res.fastest);
    lesson_figure_count(run, "recommended", "fewest workers within 5% of the fastest",
                        (uint64_t)res.recommended);
    lesson_say(run, "The fitted Amdahl curve at the same counts:%s", curve);
    lesson_say(run, "Past %d worker%s there are no more cores to run on: the time stops falling,", cpus,
               cpus > 1 ? "s" : "");
    lesson_say(run, "which the fit reads as a serial fraction. Tune the count on the machine that runs it.");
    double best_speedup = 0;
    for (int i = 0; i < n; i++)
        if (pts[i].workers == res.recommended)
            best_speedup = pts[i].speedup;
    lesson_key(run, "use %d worker%s: %.2fx; serial fraction %.2f", res.recommended,
               res.recommended > 1 ? "s" : "", best_speedup,
               res.serial_fraction);
    return 0;
}

WEFT_LESSON(82, "cpu_bound_pool", "CPU-bound work on a pool of 1..N workers (no GIL in C)",
            cpu_bound_pool_lesson)
