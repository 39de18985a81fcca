/*
 * tune.c - measure a workload at several worker counts and fit Amdahl's
 * law to the times (weft/tune.h).
 *
 * The fit: T(n) = a + b x with x = 1/n is a straight line, so Amdahl's two
 * parameters come from a linear least-squares fit, weighted by 1/T^2 so
 * that each point's relative error counts equally. Data that follow the
 * law exactly give a zero residual, hence the exact a and b, up to
 * rounding.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <weft/thread.h>
#include <weft/time.h>
#include <weft/tune.h>

int weft_tune_fit(const int *workers, const double *seconds, size_t n, double *serial_fraction,
                  double *t1)
{
    if (!workers || !seconds || n < 2)
        return -EINVAL;
    bool distinct = false;
    for (size_t i = 0; i < n; i++) {
        if (workers[i] <= 0 || !isfinite(seconds[i]) || seconds[i] <= 0)
            return -EINVAL;
        if (workers[i] != workers[0])
            distinct = true;
    }
    if (!distinct)
        return -EINVAL;
    /* In units of the longest time (the fit scales with them): the weights
     * 1 / T^2 of very small or very large times would overflow or vanish
     * and turn everything into NaN. */
    double unit = 0;
    for (size_t i = 0; i < n; i++)
        if (seconds[i] > unit)
            unit = seconds[i];
    /* Weighted normal equations for T = a + b x. Centred on the weighted
     * means, which keeps the arithmetic well conditioned. */
    double sw = 0, sx = 0, sy = 0;
    for (size_t i = 0; i < n; i++) {
        double y = seconds[i] / unit, w = 1.0 / (y * y);
        sw += w;
        sx += w / workers[i];
        sy += w * y;
    }
    double mx = sx / sw, my = sy / sw, sxx = 0, sxy = 0;
    for (size_t i = 0; i < n; i++) {
        double y = seconds[i] / unit, w = 1.0 / (y * y);
        double dx = 1.0 / workers[i] - mx;
        sxx += w * dx * dx;
        sxy += w * dx * (y - my);
    }
    if (!isfinite(sxy) || !isfinite(sxx) || !isfinite(my) || !(sxx > 0))
        return -ERANGE; /* times too far apart to weigh (over ~1e150 to 1) */
    double b = sxy / sxx; /* sxx > 0: two distinct counts */
    double a = my - b * mx;
    double total = a + b, s;
    if (b <= 0)
        s = 1; /* more workers never helped */
    else if (a <= 0)
        s = 0; /* noise made the serial part look negative */
    else
        s = a / total;
    if (!(total > 0))
        total = my; /* only for absurd data: keep t1 positive */
    if (serial_fraction)
        *serial_fraction = s;
    if (t1)
        *t1 = total * unit;
    return 0;
}

double weft_tune_amdahl(double s, double n)
{
    if (!(s >= 0 && s <= 1) || !(n > 0))
        return NAN;
    return 1.0 / (s + (1.0 - s) / n);
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* The default counts: 1 .. 2 * CPUs, or powers of two (plus the CPU
 * count) beyond 8 CPUs. */
static size_t default_counts(int *counts)
{
    int cpus = weft_cpu_count();
    if (cpus < 1)
        cpus = 1;
    size_t n = 0;
    if (cpus <= 8) {
        for (int c = 1; c <= 2 * cpus; c++)
            counts[n++] = c;
        return n;
    }
    for (int c = 1; c <= 2 * cpus && c <= WEFT_POOL_MAX_WORKERS && n < WEFT_TUNE_MAX_COUNTS - 1;
         c *= 2) {
        if (c > cpus && (n == 0 || counts[n - 1] < cpus))
            counts[n++] = cpus;
        counts[n++] = c;
    }
    if (counts[n - 1] < cpus)
        counts[n++] = cpus;
    return n;
}

/* Measure fn at one count: the median and best of `runs` timed calls. */
static int measure_one(weft_tune_fn fn, void *ctx, int workers, int warmup, int runs,
                       double *times, double *median, double *best)
{
    weft_pool_t *pool;
    weft_pool_opts_t o = {.workers = workers, .name = "tune"};
    int r = weft_pool_create(&pool, &o);
    if (r < 0)
        return r;
    for (int i = 0; i < warmup && r >= 0; i++)
        r = fn(pool, ctx);
    for (int i = 0; i < runs && r >= 0; i++) {
        weft_time_t t0 = weft_now();
        r = fn(pool, ctx);
        times[i] = weft_seconds_between(t0, weft_now());
    }
    weft_pool_free(pool);
    if (r < 0)
        return r;
    qsort(times, (size_t)runs, sizeof *times, cmp_double);
    *best = times[0];
    *median = runs % 2 ? times[runs / 2] : (times[runs / 2 - 1] + times[runs / 2]) / 2;
    /* A workload too quick for the clock would make a zero time, which
     * no fit can use: count it as one nanosecond. */
    if (*median <= 0)
        *median = 1e-9;
    if (*best <= 0)
        *best = 1e-9;
    return 0;
}

int weft_tune_measure(weft_tune_fn fn, void *ctx, const weft_tune_opts_t *opts,
                      weft_tune_point_t *points, size_t cap, weft_tune_result_t *out)
{
    weft_tune_opts_t o = {0};
    if (opts)
        o = *opts;
    if (!fn || !out || o.runs < 0 || !(o.tolerance >= 0))
        return -EINVAL;
    int counts[WEFT_TUNE_MAX_COUNTS];
    size_t nc;
    if (o.counts) {
        if (o.ncounts == 0 || o.ncounts > WEFT_TUNE_MAX_COUNTS)
            return -EINVAL;
        nc = o.ncounts;
        memcpy(counts, o.counts, nc * sizeof *counts);
    } else {
        nc = default_counts(counts);
    }
    bool distinct = false;
    for (size_t i = 0; i < nc; i++) {
        if (counts[i] <= 0 || counts[i] > WEFT_POOL_MAX_WORKERS)
            return -EINVAL;
        if (counts[i] != counts[0])
            distinct = true;
    }
    if (!distinct || (points && cap < nc))
        return -EINVAL;
    int runs = o.runs ? o.runs : 3;
    int warmup = o.warmup == 0 ? 1 : (o.warmup < 0 ? 0 : o.warmup);
    double tol = o.tolerance ? o.tolerance : 0.05;

    double *times = malloc((size_t)runs * sizeof *times);
    if (!times)
        return -ENOMEM;
    double med[WEFT_TUNE_MAX_COUNTS], best[WEFT_TUNE_MAX_COUNTS];
    for (size_t i = 0; i < nc; i++) {
        int r = measure_one(fn, ctx, counts[i], warmup, runs, times, &med[i], &best[i]);
        if (r < 0) {
            free(times);
            return r;
        }
    }
    free(times);

    weft_tune_result_t res;
    int r = weft_tune_fit(counts, med, nc, &res.serial_fraction, &res.t1);
    if (r < 0)
        return r;
    res.baseline = res.t1;
    for (size_t i = 0; i < nc; i++)
        if (counts[i] == 1) {
            res.baseline = med[i];
            break;
        }
    res.max_speedup = res.serial_fraction > 0 ? 1.0 / res.serial_fraction : INFINITY;
    size_t fast = 0;
    for (size_t i = 1; i < nc; i++)
        if (med[i] < med[fast])
            fast = i;
    res.fastest = counts[fast];
    res.recommended = counts[fast];
    for (size_t i = 0; i < nc; i++)
        if (med[i] <= med[fast] * (1 + tol) && counts[i] < res.recommended)
            res.recommended = counts[i];
    if (points)
        for (size_t i = 0; i < nc; i++) {
            double n = counts[i];
            points[i] = (weft_tune_point_t){counts[i], med[i], best[i], res.baseline / med[i],
                                            res.t1 * (res.serial_fraction +
                                                      (1 - res.serial_fraction) / n)};
        }
    *out = res;
    return (int)nc;
}
