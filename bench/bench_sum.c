/*
 * bench_sum.c - a parallel sum over n doubles computed on the fly (no
 * memory traffic: the value of index i is (i mod 1024) / 2, and the sum is
 * exact in any order, so every implementation is checked against the closed
 * form).
 *
 * bench par_sum: seconds for one sum of --sum-n values (default 2e8) on
 * --workers (default 2):
 *     weft     weft_par_reduce with the default grain (1024 chunks), a
 *              chunk folded by `acc += value(i)`, combined in index order
 *     serial   the same loop on the calling thread
 *   Peers: omp_pool.c (`parallel for reduction`), tbb_pool.cpp
 *   (parallel_reduce over a blocked_range). Extra field: speedup over the
 *   implementation's own one-thread run (serial loop for weft).
 *
 * Target (docs/bench.md): weft within 1.05x of the fastest peer.
 */
#include <weft/par.h>

#include "bench.h"
#include "bench_pool.h"

struct run {
    long long n;
    weft_pool_t *pool;
};

static int sum_map(void *ctx, int64_t lo, int64_t hi, void *acc)
{
    (void)ctx;
    double s = *(double *)acc;
    for (int64_t i = lo; i < hi; i++)
        s += BENCH_SUM_VALUE(i);
    *(double *)acc = s;
    return 0;
}

static void sum_combine(void *ctx, void *acc, const void *other)
{
    (void)ctx;
    *(double *)acc += *(const double *)other;
}

static double run_weft(void *arg)
{
    struct run *r = arg;
    double zero = 0, s;
    int64_t t0 = bench_now();
    int rc = weft_par_reduce(r->pool, 0, r->n, 0, &s, sizeof s, &zero, sum_map, sum_combine, NULL);
    double sec = (double)(bench_now() - t0) / 1e9;
    if (rc != 0 || s != bench_sum_expected(r->n))
        bench_die("weft sum result", rc ? rc : (long long)s);
    return sec;
}

static double run_serial(void *arg)
{
    struct run *r = arg;
    double s = 0;
    int64_t t0 = bench_now();
    sum_map(NULL, 0, r->n, &s);
    double sec = (double)(bench_now() - t0) / 1e9;
    if (s != bench_sum_expected(r->n))
        bench_die("serial sum result", (long long)s);
    return sec;
}

int main(int argc, char **argv)
{
    bench_init(argc, argv);
    long long n = bench_size("sum-n", 200000000, 100000);
    int workers = (int)bench_size("workers", 2, 2);
    weft_pool_t *p;
    weft_pool_opts_t o = {.workers = workers, .name = "sum"};
    if (weft_pool_create(&p, &o) != 0)
        bench_die("weft_pool_create", workers);
    struct run r = {n, p};
    run_weft(&r);
    double tw = bench_repeat(run_weft, &r, false);
    double ts = bench_repeat(run_serial, &r, false);
    weft_pool_free(p);
    bench_speedup_json("par_sum", "weft", "n", n, workers, tw, ts);
    bench_speedup_json("par_sum", "serial", "n", n, workers, ts, ts);
    return 0;
}
