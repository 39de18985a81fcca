/*
 * weft/tune.h - find a good worker count for a workload by measuring it.
 *
 * "There is an optimal number of threads for each problem in each
 * environment, so make it tunable." weft_tune_measure runs a workload on
 * pools of several sizes, reports the time and speedup at each count, fits
 * Amdahl's law to the times and recommends a count:
 *
 *   static int work(weft_pool_t *pool, void *ctx)
 *   {
 *       return weft_par_for(pool, 0, N, 0, body, ctx);
 *   }
 *   ...
 *   weft_tune_point_t pts[16];
 *   weft_tune_result_t res;
 *   int n = weft_tune_measure(work, ctx, NULL, pts, 16, &res);
 *   for (int i = 0; i < n; i++)
 *       printf("%d workers: %.3f s, speedup %.2f\n", pts[i].workers,
 *              pts[i].seconds, pts[i].speedup);
 *   printf("serial fraction %.3f, use %d workers\n", res.serial_fraction,
 *          res.recommended);
 *
 * Amdahl's law: if a fraction s of the work is serial, n workers take
 * T(n) = T1 * (s + (1 - s) / n), so the speedup T1 / T(n) is at most
 * 1 / (s + (1 - s) / n), and never more than 1 / s however many workers.
 * The fit (weft_tune_fit) estimates s and T1 from measured times; on a
 * machine with fewer cores than the largest count, or with other load, the
 * times stop falling at the core count, which the fit reads as a larger
 * serial fraction: it describes this workload on this machine, which is
 * what a tuning helper is for.
 */
#ifndef WEFT_TUNE_H
#define WEFT_TUNE_H

#include <stddef.h>
#include <weft/error.h>
#include <weft/pool.h>
#include <weft/version.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The most counts one weft_tune_measure call measures. */
#define WEFT_TUNE_MAX_COUNTS 64

/* One measured worker count. */
typedef struct weft_tune_point {
    int workers;     /* the pool's worker count */
    double seconds;  /* the median of the measured runs' wall times */
    double best;     /* the fastest measured run */
    double speedup;  /* baseline / seconds (see weft_tune_result_t.baseline) */
    double fitted;   /* the fitted Amdahl time at this count, T1 (s + (1-s)/n) */
} weft_tune_point_t;

/* What the measurements say. */
typedef struct weft_tune_result {
    double serial_fraction; /* Amdahl's s, in [0, 1] */
    double t1;              /* the fitted one-worker time, seconds */
    double baseline;        /* the time speedups are relative to: the measured
                               time at 1 worker if 1 was measured, else t1 */
    double max_speedup;     /* 1 / s (infinity when s is 0) */
    int fastest;            /* the count with the lowest median time */
    int recommended;        /* the fewest workers whose median time is within
                               the tolerance of the fastest count's */
} weft_tune_result_t;

/* The workload: run it once on the given pool; 0, or a negative error code
 * that stops the measuring. It should do the same work on every call. */
typedef int (*weft_tune_fn)(weft_pool_t *pool, void *ctx);

/* Options for weft_tune_measure. NULL or a zeroed struct means defaults. */
typedef struct weft_tune_opts {
    const int *counts;  /* the worker counts to measure, each > 0 and at most
                           WEFT_POOL_MAX_WORKERS, in any order; NULL: 1, 2,
                           ... up to twice weft_cpu_count() (past the core
                           count, to show where adding workers stops
                           helping), or powers of two beyond 8 CPUs */
    size_t ncounts;     /* entries in counts (1 .. WEFT_TUNE_MAX_COUNTS) */
    int runs;           /* measured runs per count (median); 0 = 3 */
    int warmup;         /* unmeasured runs first at each count; 0 = 1,
                           negative = none */
    double tolerance;   /* recommend the fewest workers within this fraction
                           of the fastest time; 0 = 0.05 (5%) */
} weft_tune_opts_t;

/*
 * Measure fn(pool, ctx) at each worker count: for each count, create a pool
 * of that many workers (named "tune"), call fn warmup times unmeasured,
 * then runs times, timing each call on the monotonic clock; free the pool.
 * Then fit Amdahl's law to the median times (weft_tune_fit) and fill *out.
 *
 * points (if not NULL) receives one entry per count, in the order measured
 * (the order of opts.counts, or ascending for the default counts); cap is
 * its size and must be at least the number of counts.
 *
 * Returns the number of counts measured (> 0); -EINVAL (fn or out NULL,
 * a count <= 0 or > WEFT_POOL_MAX_WORKERS, ncounts 0 or above
 * WEFT_TUNE_MAX_COUNTS with counts set, runs < 0, tolerance < 0 or not a
 * number, points not NULL with cap below the number of counts); -ENOMEM or -EAGAIN
 * (a pool could not be created); or the first negative code fn returned
 * (the measuring stops there; *out is untouched). The counts must hold
 * at least two distinct values (-EINVAL otherwise): one count cannot be
 * fitted. A count may repeat; its points are fitted as they are.
 *
 * Call from a thread that is not a worker of a pool fn uses (it waits for
 * each run). It takes as long as the runs do: (warmup + runs) * counts
 * calls of fn.
 */
WEFT_API int weft_tune_measure(weft_tune_fn fn, void *ctx, const weft_tune_opts_t *opts,
                               weft_tune_point_t *points, size_t cap, weft_tune_result_t *out);

/*
 * Fit Amdahl's law T(n) = t1 * (s + (1 - s) / n) to n measured times
 * seconds[i] at workers[i]: a weighted least-squares fit of the line
 * T = a + b / n (a = t1 s, b = t1 (1 - s)), each point weighted by
 * 1 / seconds[i]^2 so that the relative error is what is minimised (a
 * slow one-worker run does not drown the fast ones). s = a / (a + b),
 * clamped to [0, 1] (a negative a, which noise can produce, means s = 0;
 * a negative b means more workers only slowed it down: s = 1).
 * Times generated exactly by the law are fitted exactly.
 *
 * serial_fraction and t1 receive the results (either may be NULL).
 * 0; -EINVAL (workers or seconds NULL, n < 2, a count <= 0, a time <= 0
 * or not finite, fewer than two distinct counts); -ERANGE (times so far
 * apart, over about 1e150 to 1, that their weights cannot be formed).
 * Only their ratios matter: times of any magnitude fit alike.
 */
WEFT_API int weft_tune_fit(const int *workers, const double *seconds, size_t n,
                           double *serial_fraction, double *t1);

/* The speedup Amdahl's law allows on n workers with serial fraction s:
 * 1 / (s + (1 - s) / n). NaN if s is outside [0, 1] or n <= 0. */
WEFT_API double weft_tune_amdahl(double s, double n);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_TUNE_H */
