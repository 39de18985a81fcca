/*
 * bench_sort.c - weft_par_sort of --sort-n (default 1e7) pseudo-random
 * 64-bit integers (splitmix64, the same keys in every implementation),
 * checked sorted and a permutation of the input.
 *
 * bench par_sort: seconds for one sort on --workers (default 2):
 *     weft     weft_par_sort with a comparator function (chunks sorted by
 *              qsort_r, merged in parallel by merge path)
 *     qsort    glibc qsort with the same comparator, one thread
 *   Peers: tbb_pool.cpp (tbb::parallel_sort, and std::sort on one
 *   thread: both inline the comparison, which a C comparator function
 *   cannot). Extra field: speedup over qsort (over std::sort for the C++
 *   rows). The input is refilled before every run, outside the clock.
 */
#include <stdlib.h>
#include <weft/par.h>

#include "bench.h"
#include "bench_pool.h"

struct run {
    int64_t *a;
    long long n;
    weft_pool_t *pool; /* NULL: qsort */
};

static int cmp_i64(const void *x, const void *y, void *ctx)
{
    (void)ctx;
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return (a > b) - (a < b);
}

static int cmp_i64_qsort(const void *x, const void *y)
{
    return cmp_i64(x, y, NULL);
}

static double run_sort(void *arg)
{
    struct run *r = arg;
    bench_sort_fill(r->a, r->n, 42);
    int64_t t0 = bench_now();
    if (r->pool) {
        int rc = weft_par_sort(r->pool, r->a, (size_t)r->n, sizeof *r->a, cmp_i64, NULL);
        if (rc != 0)
            bench_die("weft_par_sort", rc);
    } else {
        qsort(r->a, (size_t)r->n, sizeof *r->a, cmp_i64_qsort);
    }
    double s = (double)(bench_now() - t0) / 1e9;
    if (!bench_sort_check(r->a, r->n, 42))
        bench_die("sort result", 0);
    return s;
}

int main(int argc, char **argv)
{
    bench_init(argc, argv);
    long long n = bench_size("sort-n", 10000000, 10000);
    int workers = (int)bench_size("workers", 2, 2);
    int64_t *a = malloc((size_t)n * sizeof *a);
    if (!a)
        bench_die("malloc", n);
    weft_pool_t *p;
    weft_pool_opts_t o = {.workers = workers, .name = "sort"};
    if (weft_pool_create(&p, &o) != 0)
        bench_die("weft_pool_create", workers);
    struct run w = {a, n, p}, q = {a, n, NULL};
    double tw = bench_repeat(run_sort, &w, false);
    double tq = bench_repeat(run_sort, &q, false);
    weft_pool_free(p);
    free(a);
    bench_speedup_json("par_sort", "weft", "n", n, workers, tw, tq);
    bench_speedup_json("par_sort", "qsort", "n", n, workers, tq, tq);
    return 0;
}
