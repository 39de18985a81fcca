/*
 * proc_cpu.c - CPU-bound work three ways: one thread, a pool of threads,
 * a pool of processes; and what processes cost on top.
 *
 * Python (the course notes' point): because of the GIL, CPU-bound Python
 * code gains nothing from threads and needs processes
 * (multiprocessing.Pool) to use several cores, paying to start them and to
 * pickle every argument and result across.
 *
 * In C there is no GIL: threads already run on every core. Processes run
 * in parallel too, so both scale; what processes add is isolation (a crash
 * stays in its worker: see proc_crash.c) and costs: starting the workers,
 * and copying every argument and result between address spaces. This
 * lesson counts the primes below N by trial division sequentially, with
 * weft_par_reduce (threads) and with weft_proc_map (processes), checks that
 * the three counts agree, and measures the process pool's start-up time and
 * its cost per tiny task.
 *
 * A program calls weft_proc_init() at the top of main, while it has one
 * thread. `weft tour` runs many lessons in one process (some leave threads
 * behind), so this lesson says WEFT_LESSON_USES_PROCESSES and the tour
 * starts the fork server before its first lesson.
 *
 * Build and run: build/examples/proc_cpu, or `weft demo proc_cpu`.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <weft.h>

#include "lesson.h"

static int64_t count_primes(int64_t lo, int64_t hi)
{
    int64_t n = 0;
    for (int64_t x = lo < 2 ? 2 : lo; x < hi; x++) {
        bool prime = x == 2 || x % 2;
        for (int64_t d = 3; prime && d * d <= x; d += 2)
            prime = x % d != 0;
        n += prime;
    }
    return n;
}

/* Threads: a reduce over [2, N). */
static int reduce_map(void *ctx, int64_t lo, int64_t hi, void *acc)
{
    (void)ctx;
    *(int64_t *)acc += count_primes(lo, hi);
    return 0;
}
static void reduce_combine(void *ctx, void *acc, const void *other)
{
    (void)ctx;
    *(int64_t *)acc += *(const int64_t *)other;
}

/* Processes: each item is a range; the result its count. */
struct range {
    int64_t lo, hi;
};
static int primes_task(weft_proc_task_t *t, const void *arg, size_t len)
{
    struct range r;
    if (len != sizeof r)
        return -EINVAL;
    memcpy(&r, arg, sizeof r);
    int64_t n = count_primes(r.lo, r.hi);
    return weft_proc_reply(t, &n, sizeof n);
}

static int square_task(weft_proc_task_t *t, const void *arg, size_t len)
{
    int64_t x;
    memcpy(&x, arg, len < sizeof x ? len : sizeof x);
    x *= x;
    return weft_proc_reply(t, &x, sizeof x);
}

static int proc_cpu_lesson(lesson_run_t *run)
{
    int64_t N = (int64_t)lesson_scaled(run, 2000000);
    int workers = weft_cpu_count();
    char a[32], b[32];
    lesson_say(run, "Count the primes below %s by trial division: one thread, %d threads, "
                    "%d processes.", lesson_fmt_count(a, sizeof a, (uint64_t)N), workers, workers);

    weft_time_t t0 = weft_now();
    int64_t seq = count_primes(2, N);
    double t_seq = weft_seconds_between(t0, weft_now());

    t0 = weft_now();
    int64_t thr = 0, zero = 0;
    int rc = weft_par_reduce(NULL, 2, N, 0, &thr, sizeof thr, &zero, reduce_map, reduce_combine,
                             NULL);
    double t_thr = weft_seconds_between(t0, weft_now());
    if (rc)
        return lesson_fail_rc(run, "weft_par_reduce", rc);

    /* The process pool: its start-up is measured apart. */
    t0 = weft_now();
    weft_proc_pool_t *pool;
    weft_proc_opts_t opts = {.workers = workers};
    rc = weft_proc_pool_create(&pool, &opts);
    double t_start = weft_seconds_between(t0, weft_now());
    if (rc == WEFT_ETHREADED) {
        /* Under TSan (a thread of its own from the start) the fork server
         * cannot start: say so rather than fail. */
        lesson_say(run, "Skipped: the program ran threads before the fork server could start.");
        lesson_key(run, "skipped (no fork server)");
        return 0;
    }
    if (rc)
        return lesson_fail_rc(run, "weft_proc_pool_create", rc);
    enum { PIECES = 256 };
    struct range pieces[PIECES];
    int64_t counts[PIECES];
    for (int i = 0; i < PIECES; i++) {
        pieces[i].lo = 2 + (N - 2) * i / PIECES;
        pieces[i].hi = 2 + (N - 2) * (i + 1) / PIECES;
    }
    t0 = weft_now();
    rc = weft_proc_map(pool, primes_task, pieces, sizeof pieces[0], PIECES, counts,
                       sizeof counts[0], NULL, 1);
    double t_proc = weft_seconds_between(t0, weft_now());
    int64_t proc = 0;
    for (int i = 0; i < PIECES; i++)
        proc += counts[i];

    /* What one tiny task costs: map x -> x*x, one task per item. */
    size_t M = (size_t)lesson_scaled(run, 200000);
    int64_t *in = malloc(M * sizeof *in), *out = malloc(M * sizeof *out);
    if (!in || !out) {
        free(in);
        free(out);
        weft_proc_pool_free(pool);
        return lesson_fail_rc(run, "the tiny tasks' arrays", -ENOMEM);
    }
    for (size_t i = 0; i < M; i++)
        in[i] = (int64_t)i;
    t0 = weft_now();
    int rc2 = weft_proc_map(pool, square_task, in, sizeof *in, M, out, sizeof *out, NULL, 1);
    double t_tiny = weft_seconds_between(t0, weft_now());
    bool tiny_ok = rc2 == 0;
    for (size_t i = 0; tiny_ok && i < M; i++)
        tiny_ok = out[i] == in[i] * in[i];
    free(in);
    free(out);
    weft_proc_pool_free(pool);
    if (rc)
        return lesson_fail_rc(run, "weft_proc_map", rc);
    if (!tiny_ok)
        return lesson_fail(run, "map x -> x*x gave a wrong result (%s)", weft_strerror(rc2));
    if (thr != seq || proc != seq)
        return lesson_fail(run, "counts differ: %lld sequential, %lld threads, %lld processes",
                           (long long)seq, (long long)thr, (long long)proc);

    lesson_figure_count(run, "primes", "primes found (all three agree)", (uint64_t)seq);
    lesson_figure_time(run, "sequential", "one thread", t_seq);
    lesson_figure_time(run, "threads", "threads (weft_par_reduce)", t_thr);
    lesson_figure_time(run, "processes", "processes (weft_proc_map, 256 pieces)", t_proc);
    lesson_figure_num(run, "speedup_threads", "speed-up with threads", t_seq / t_thr, "x");
    lesson_figure_num(run, "speedup_processes", "speed-up with processes", t_seq / t_proc, "x");
    lesson_figure_time(run, "pool_start", "starting the process pool", t_start);
    lesson_figure_num(run, "ns_per_tiny_task", "one tiny task's cost (argument, result copied)",
                      t_tiny * 1e9 / (double)M, "ns");
    lesson_say(run, "Both scale: in C, threads are not held back by a lock. Processes add "
                    "start-up and a copy per argument and result; they buy isolation.");
    lesson_key(run, "threads %.1fx, processes %.1fx (+%s to start)", t_seq / t_thr,
               t_seq / t_proc, lesson_fmt_time(b, sizeof b, t_start));
    return 0;
}

WEFT_LESSON(130, "proc_cpu", "CPU-bound work: one thread, threads, processes (and their costs)",
            proc_cpu_lesson)
WEFT_LESSON_USES_PROCESSES(proc_cpu_lesson)
