/*
 * bench_pool.h - what the pool benchmarks (bench_fib.c, bench_sum.c,
 * bench_submit.c, bench_idle.c, bench_sort.c) share with their OpenMP and
 * oneTBB peers (omp_pool.c, tbb_pool.cpp): the exact answers to check, the
 * workload kernels (identical code in every implementation), and JSON lines
 * with extra fields. C and C++; include after bench.h.
 */
#ifndef WEFT_BENCH_POOL_H
#define WEFT_BENCH_POOL_H

#include <stdint.h>
#include <stdio.h>
#include <time.h>

/* True if part `name` should run: no --only=a,b (or $WEFT_BENCH_ONLY), or
 * name is in its comma-separated list. For the peers that measure several
 * things in one program (omp_pool.c, tbb_pool.cpp). */
static BENCH_UNUSED int bench_pool_wanted(const char *name)
{
    const char *only = bench_opt_("only");
    if (!only)
        return 1;
    size_t n = strlen(name);
    for (const char *p = only; *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && strncmp(p, name, n) == 0)
            return 1;
        if (!e)
            break;
        p = e + 1;
    }
    return 0;
}

/* ---- fib ------------------------------------------------------------- */

static BENCH_UNUSED long bench_fib_value(int n)
{
    long a = 0, b = 1;
    for (int i = 0; i < n; i++) {
        long c = a + b;
        a = b;
        b = c;
    }
    return a;
}

/* Calls made by the naive recursion: calls(n) = 2 fib(n+1) - 1. */
static BENCH_UNUSED long long bench_fib_calls(int n)
{
    return 2 * (long long)bench_fib_value(n + 1) - 1;
}

/* One fib result: seconds, plus ns per call, the work overhead T1/Tserial
 * and the speedup Tserial/T (extra fields report.py shows as notes). */
static BENCH_UNUSED void bench_fib_json(const char *bench, const char *impl, int n, int workers,
                                        double seconds, double calls, double t1_over_serial,
                                        double speedup)
{
    printf("{\"bench\": \"%s\", \"impl\": \"%s\", \"params\": {\"n\": %d, \"workers\": %d, "
           "\"stat\": \"%s\"}, \"seconds\": %.4g, \"runs\": %d, \"ns_per_call\": %.3g, "
           "\"t1_over_serial\": %.3g, \"speedup\": %.3g, \"steal\": %.3f}\n",
           bench, impl, n, workers, bench_best_ ? "best" : "median", seconds, bench_runs_,
           seconds * 1e9 / calls, t1_over_serial, speedup, bench_steal_mark_());
    fflush(stdout);
}

/* ---- sum over values computed on the fly ------------------------------ */

/*
 * The i-th value: (i mod 1024) / 2. Every partial sum of such values is a
 * multiple of 0.5 below 2^52 for n up to 10^12, so every summation order
 * gives the same, exact result, which the benchmark checks. The loop
 * `acc += BENCH_SUM_VALUE(i)` is the same in every implementation.
 */
#define BENCH_SUM_VALUE(i) ((double)((i) & 1023) * 0.5)

static BENCH_UNUSED double bench_sum_expected(long long n)
{
    long long full = n / 1024, rest = n % 1024;
    /* sum of k for k < 1024 is 523776 */
    return ((double)full * 523776.0 + (double)(rest * (rest - 1) / 2)) * 0.5;
}

/* A result with a speedup over the serial loop as an extra field. */
static BENCH_UNUSED void bench_speedup_json(const char *bench, const char *impl,
                                            const char *size_key, long long size, int workers,
                                            double seconds, double serial_seconds)
{
    printf("{\"bench\": \"%s\", \"impl\": \"%s\", \"params\": {\"%s\": %lld, \"workers\": %d, "
           "\"stat\": \"%s\"}, \"seconds\": %.4g, \"runs\": %d, \"speedup\": %.3g, "
           "\"steal\": %.3f}\n",
           bench, impl, size_key, size, workers, bench_best_ ? "best" : "median", seconds,
           bench_runs_, serial_seconds / seconds, bench_steal_mark_());
    fflush(stdout);
}

/* ---- sort input --------------------------------------------------------- */

/* splitmix64: the same pseudo-random 64-bit keys in every implementation. */
static BENCH_UNUSED void bench_sort_fill(int64_t *a, long long n, uint64_t seed)
{
    uint64_t x = seed;
    for (long long i = 0; i < n; i++) {
        uint64_t z = (x += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        a[i] = (int64_t)(z ^ (z >> 31));
    }
}

/* Sorted ascending, and the same multiset as the input (a checksum that
 * does not depend on order: the sum and the xor of all keys). */
static BENCH_UNUSED int bench_sort_check(const int64_t *a, long long n, uint64_t seed)
{
    uint64_t x = seed, sum = 0, xr = 0, sum2 = 0, xr2 = 0;
    for (long long i = 0; i < n; i++) {
        uint64_t z = (x += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        sum += z;
        xr ^= z;
        sum2 += (uint64_t)a[i];
        xr2 ^= (uint64_t)a[i];
        if (i && a[i - 1] > a[i])
            return 0;
    }
    return sum == sum2 && xr == xr2;
}

/* ---- CPU time ------------------------------------------------------------- */

static BENCH_UNUSED double bench_cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Sleep ms milliseconds (nanosleep, restarted on signals). */
static BENCH_UNUSED void bench_sleep_ms(long long ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* An idle-CPU result: the CPU time the process used while it slept for
 * `ms` ms with the pool idle, in seconds, and as % of one core. */
static BENCH_UNUSED void bench_idle_json(const char *impl, int workers, long long ms,
                                         double cpu_seconds)
{
    printf("{\"bench\": \"pool_idle_cpu\", \"impl\": \"%s\", \"params\": {\"workers\": %d, "
           "\"ms\": %lld, \"stat\": \"%s\"}, \"seconds\": %.4g, \"runs\": %d, "
           "\"core_percent\": %.3g, \"steal\": %.3f}\n",
           impl, workers, ms, bench_best_ ? "best" : "median", cpu_seconds, bench_runs_,
           cpu_seconds * 100.0 / ((double)ms / 1000.0), bench_steal_mark_());
    fflush(stdout);
}

#endif /* WEFT_BENCH_POOL_H */
