/*
 * bench_fib.c - fork-join fib(n) with a task spawned at every call (no
 * cutoff): what one spawn + wait costs, the classic Cilk/TBB measure.
 *
 * bench fib (--workers, default 2 workers) and fib_1worker (1 worker):
 *   seconds for one fib(n) (--fib-n, default 32; 7 million calls at n = 32).
 *     weft     weft_group_spawn(fib(n-1)), fib(n-2) inline, weft_group_wait,
 *              on a pool of that many workers
 *     serial   the plain recursive function (the same at both counts)
 *   Peers in other programs of the same run: omp_pool.c (OpenMP tasks,
 *   `#pragma omp task` + `taskwait`), tbb_pool.cpp (oneTBB task_group).
 *   Extra fields: ns_per_call (time / calls), t1_over_serial (the work
 *   overhead: time on one worker / serial time) and speedup (serial time /
 *   time).
 *
 * Target (docs/bench.md): fib with 2 workers at most 0.5x oneTBB's time.
 */
#include <weft/pool.h>

#include "bench.h"
#include "bench_pool.h"

static long serial_fib(int n)
{
    return n < 2 ? n : serial_fib(n - 1) + serial_fib(n - 2);
}

struct fib {
    int n;
    long r;
};

static int fib_task(void *p)
{
    struct fib *a = p;
    if (a->n < 2) {
        a->r = a->n;
        return 0;
    }
    struct fib x = {a->n - 1, 0}, y = {a->n - 2, 0};
    weft_group_t g;
    weft_group_init(&g, NULL);
    weft_group_spawn(&g, fib_task, &x);
    fib_task(&y);
    weft_group_wait(&g);
    a->r = x.r + y.r;
    return 0;
}

struct run {
    int n;
    weft_pool_t *pool;
};

static double run_weft(void *arg)
{
    struct run *r = arg;
    struct fib a = {r->n, 0};
    weft_group_t g;
    weft_group_init(&g, r->pool);
    int64_t t0 = bench_now();
    if (weft_group_spawn(&g, fib_task, &a) != 0 || weft_group_wait(&g) != 0)
        bench_die("weft group", 0);
    double s = (double)(bench_now() - t0) / 1e9;
    if (a.r != bench_fib_value(r->n))
        bench_die("weft fib result", a.r);
    return s;
}

static double run_serial(void *arg)
{
    struct run *r = arg;
    int64_t t0 = bench_now();
    long v = serial_fib(r->n);
    double s = (double)(bench_now() - t0) / 1e9;
    if (v != bench_fib_value(r->n))
        bench_die("serial fib result", v);
    return s;
}

static double measure(int n, int workers)
{
    weft_pool_t *p;
    weft_pool_opts_t o = {.workers = workers, .name = "fib"};
    if (weft_pool_create(&p, &o) != 0)
        bench_die("weft_pool_create", workers);
    struct run r = {n, p};
    run_weft(&r); /* warm up: the workers' task records and stacks */
    double s = bench_repeat(run_weft, &r, false);
    weft_pool_free(p);
    return s;
}

int main(int argc, char **argv)
{
    bench_init(argc, argv);
    int n = (int)bench_size("fib-n", 32, 20);
    int workers = (int)bench_size("workers", 2, 2);
    struct run r = {n, NULL};
    run_serial(&r);
    double ts = bench_repeat(run_serial, &r, false);
    double t1 = measure(n, 1);
    double tp = measure(n, workers);
    double calls = (double)bench_fib_calls(n);
    bench_fib_json("fib_1worker", "weft", n, 1, t1, calls, t1 / ts, ts / t1);
    bench_fib_json("fib_1worker", "serial", n, 1, ts, calls, 1.0, 1.0);
    bench_fib_json("fib", "weft", n, workers, tp, calls, t1 / ts, ts / tp);
    bench_fib_json("fib", "serial", n, workers, ts, calls, 1.0, 1.0);
    return 0;
}
