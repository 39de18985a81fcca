/*
 * omp_pool.c - the OpenMP peers of the pool benchmarks (gcc's libgomp):
 *
 *   fib, fib_1worker   `#pragma omp task shared(x)` for fib(n-1), fib(n-2)
 *                      inline, `#pragma omp taskwait`, inside
 *                      `parallel num_threads(w)` + `single` (bench_fib.c)
 *   par_sum            `parallel for reduction(+:s) num_threads(w)`, the
 *                      default (static) schedule (bench_sum.c)
 *
 * Same options and bench names as the weft programs; impl "openmp". Built
 * only when OpenMP is found. libgomp's idle threads spin for a while after
 * a parallel region (OMP_WAIT_POLICY, GOMP_SPINCOUNT): this runs in its own
 * process so that the spinning disturbs no other implementation.
 * --only=fib or --only=sum runs one part.
 */
#include <omp.h>

#include "bench.h"
#include "bench_pool.h"

static int g_workers;

static long serial_fib(int n)
{
    return n < 2 ? n : serial_fib(n - 1) + serial_fib(n - 2);
}

static long omp_fib(int n)
{
    if (n < 2)
        return n;
    long x = 0, y;
#pragma omp task shared(x)
    x = omp_fib(n - 1);
    y = omp_fib(n - 2);
#pragma omp taskwait
    return x + y;
}

struct fibarg {
    int n, threads;
};

static double run_fib(void *arg)
{
    struct fibarg *a = arg;
    long v = 0;
    int64_t t0 = bench_now();
#pragma omp parallel num_threads(a->threads)
#pragma omp single
    v = omp_fib(a->n);
    double s = (double)(bench_now() - t0) / 1e9;
    if (v != bench_fib_value(a->n))
        bench_die("openmp fib result", v);
    return s;
}

static double run_serial_fib(void *arg)
{
    struct fibarg *a = arg;
    int64_t t0 = bench_now();
    long v = serial_fib(a->n);
    double s = (double)(bench_now() - t0) / 1e9;
    if (v != bench_fib_value(a->n))
        bench_die("serial fib result", v);
    return s;
}

static double run_sum(void *arg)
{
    long long n = ((long long *)arg)[0];
    int threads = (int)((long long *)arg)[1];
    double s = 0;
    int64_t t0 = bench_now();
#pragma omp parallel for reduction(+ : s) num_threads(threads)
    for (long long i = 0; i < n; i++)
        s += BENCH_SUM_VALUE(i);
    double sec = (double)(bench_now() - t0) / 1e9;
    if (s != bench_sum_expected(n))
        bench_die("openmp sum result", (long long)s);
    return sec;
}

int main(int argc, char **argv)
{
    bench_init(argc, argv);
    g_workers = (int)bench_size("workers", 2, 2);

    if (bench_pool_wanted("fib")) {
    int n = (int)bench_size("fib-n", 32, 20);
    double calls = (double)bench_fib_calls(n);
    struct fibarg one = {n, 1}, many = {n, g_workers};
    double ts = bench_repeat(run_serial_fib, &one, false);
    run_fib(&one);
    double t1 = bench_repeat(run_fib, &one, false);
    run_fib(&many);
    double tp = bench_repeat(run_fib, &many, false);
    bench_fib_json("fib_1worker", "openmp", n, 1, t1, calls, t1 / ts, ts / t1);
    bench_fib_json("fib", "openmp", n, g_workers, tp, calls, t1 / ts, ts / tp);
    }
    if (!bench_pool_wanted("sum"))
        return 0;

    long long sn = bench_size("sum-n", 200000000, 100000);
    long long a1[2] = {sn, 1}, ap[2] = {sn, g_workers};
    run_sum(ap);
    double sp = bench_repeat(run_sum, ap, false);
    double s1 = bench_repeat(run_sum, a1, false);
    bench_speedup_json("par_sum", "openmp", "n", sn, g_workers, sp, s1);
    return 0;
}
