/* weft_tune_fit recovers Amdahl's law from exact timings; weft_tune_measure
 * runs the workload the right number of times on pools of the right sizes,
 * reports consistent points, stops at a workload error; bad input. */
#include <math.h>
#include <stdatomic.h>
#include <weft.h>

#include "check.h"

static double amdahl_time(double t1, double s, int n)
{
    return t1 * (s + (1 - s) / n);
}

static void test_fit_exact(void)
{
    const double fractions[] = {0.0, 0.01, 0.1, 0.25, 0.5, 0.9, 1.0};
    const int sets[][5] = {{1, 2, 3, 4, 8}, {2, 5, 7, 0, 0}, {1, 16, 0, 0, 0}, {8, 4, 2, 1, 3}};
    const size_t lens[] = {5, 3, 2, 5};
    for (size_t f = 0; f < sizeof fractions / sizeof fractions[0]; f++)
        for (size_t k = 0; k < 4; k++) {
            double t[5], s = -1, t1 = -1;
            for (size_t i = 0; i < lens[k]; i++)
                t[i] = amdahl_time(2.5, fractions[f], sets[k][i]);
            CHECK_OK(weft_tune_fit(sets[k], t, lens[k], &s, &t1));
            if (fabs(s - fractions[f]) > 1e-12 || fabs(t1 - 2.5) > 1e-12) {
                fprintf(stderr, "s %.17g want %.17g, t1 %.17g (set %zu)\n", s, fractions[f], t1, k);
                CHECK(0);
            }
            /* NULL outputs are allowed. */
            CHECK_OK(weft_tune_fit(sets[k], t, lens[k], NULL, NULL));
        }
    /* Only the ratios matter: the same law at 1e-160 s or 1e170 s fits the
     * same s (the weights 1/T^2 used to overflow or vanish: NaN, and 0
     * returned); times too far apart to weigh are -ERANGE, not NaN. */
    for (int e = 0; e < 2; e++) {
        double scale = e ? 1e170 : 1e-160, t[4], s = -1, t1 = -1;
        int w[] = {1, 2, 4, 8};
        for (size_t i = 0; i < 4; i++)
            t[i] = amdahl_time(2.5, 0.25, w[i]) * scale;
        CHECK_OK(weft_tune_fit(w, t, 4, &s, &t1));
        CHECK(fabs(s - 0.25) < 1e-12);
        CHECK(fabs(t1 / scale - 2.5) < 1e-9);
    }
    {
        int w[] = {1, 2, 4};
        double far[] = {1.0, 0.6, 1e-200}, s = -1;
        CHECK_RC(weft_tune_fit(w, far, 3, &s, NULL), -ERANGE);
    }
    /* Times that rise with the count: more workers only hurt, s = 1. */
    int c[] = {1, 2, 4};
    double up[] = {1.0, 1.5, 2.0}, s;
    CHECK_OK(weft_tune_fit(c, up, 3, &s, NULL));
    CHECK(s == 1.0);
    /* Better than linear (noise): s clamps to 0. */
    double super[] = {1.0, 0.4, 0.1};
    CHECK_OK(weft_tune_fit(c, super, 3, &s, NULL));
    CHECK(s == 0.0);
}

static void test_fit_bad(void)
{
    int c[] = {1, 2, 4}, same[] = {2, 2, 2}, zero[] = {1, 0, 4};
    double t[] = {1.0, 0.6, 0.4}, neg[] = {1.0, -0.6, 0.4}, nan_[] = {1.0, NAN, 0.4},
           inf_[] = {1.0, INFINITY, 0.4}, z[] = {1.0, 0.0, 0.4};
    double s = 7;
    CHECK_RC(weft_tune_fit(NULL, t, 3, &s, NULL), -EINVAL);
    CHECK_RC(weft_tune_fit(c, NULL, 3, &s, NULL), -EINVAL);
    CHECK_RC(weft_tune_fit(c, t, 1, &s, NULL), -EINVAL);
    CHECK_RC(weft_tune_fit(c, t, 0, &s, NULL), -EINVAL);
    CHECK_RC(weft_tune_fit(same, t, 3, &s, NULL), -EINVAL);
    CHECK_RC(weft_tune_fit(zero, t, 3, &s, NULL), -EINVAL);
    CHECK_RC(weft_tune_fit(c, neg, 3, &s, NULL), -EINVAL);
    CHECK_RC(weft_tune_fit(c, nan_, 3, &s, NULL), -EINVAL);
    CHECK_RC(weft_tune_fit(c, inf_, 3, &s, NULL), -EINVAL);
    CHECK_RC(weft_tune_fit(c, z, 3, &s, NULL), -EINVAL);
    CHECK(s == 7); /* untouched on failure */
}

static void test_amdahl(void)
{
    CHECK(fabs(weft_tune_amdahl(0.0, 8) - 8.0) < 1e-12);
    CHECK(fabs(weft_tune_amdahl(1.0, 8) - 1.0) < 1e-12);
    CHECK(fabs(weft_tune_amdahl(0.5, 2) - 4.0 / 3.0) < 1e-12);
    CHECK(fabs(weft_tune_amdahl(0.1, 1e9) - 10.0) < 1e-6);
    CHECK(isnan(weft_tune_amdahl(-0.1, 2)));
    CHECK(isnan(weft_tune_amdahl(1.1, 2)));
    CHECK(isnan(weft_tune_amdahl(NAN, 2)));
    CHECK(isnan(weft_tune_amdahl(0.5, 0)));
}

/* A workload that records, per call, the size of the pool it was given,
 * and does a little real parallel work on it. */
struct rec {
    int calls;
    int sizes[256];
    int fail_at; /* call index that fails, or -1 */
    _Atomic long items;
};

static int rec_body(void *ctx, int64_t lo, int64_t hi)
{
    struct rec *r = ctx;
    atomic_fetch_add(&r->items, (long)(hi - lo));
    return 0;
}

static int rec_work(weft_pool_t *pool, void *ctx)
{
    struct rec *r = ctx;
    int i = r->calls++;
    if (i < 256)
        r->sizes[i] = weft_pool_workers(pool);
    if (i == r->fail_at)
        return -EIO;
    return weft_par_for(pool, 0, 1000, 10, rec_body, r);
}

static void test_measure_counts(void)
{
    struct rec r = {.fail_at = -1};
    int counts[] = {1, 3, 2};
    weft_tune_opts_t o = {.counts = counts, .ncounts = 3, .runs = 4, .warmup = 2};
    weft_tune_point_t pts[3];
    weft_tune_result_t res;
    CHECK_INT(weft_tune_measure(rec_work, &r, &o, pts, 3, &res), ==, 3);
    CHECK_INT(r.calls, ==, 3 * (2 + 4));
    CHECK_INT(atomic_load(&r.items), ==, 3L * 6 * 1000);
    for (int c = 0; c < 3; c++)
        for (int k = 0; k < 6; k++)
            CHECK_INT(r.sizes[c * 6 + k], ==, counts[c]);
    for (int i = 0; i < 3; i++) {
        CHECK_INT(pts[i].workers, ==, counts[i]);
        CHECK(pts[i].seconds > 0 && pts[i].best > 0 && pts[i].best <= pts[i].seconds);
        CHECK(fabs(pts[i].speedup - res.baseline / pts[i].seconds) < 1e-9 * pts[i].speedup);
        CHECK(fabs(pts[i].fitted - res.t1 * (res.serial_fraction +
                                             (1 - res.serial_fraction) / counts[i])) < 1e-12);
    }
    CHECK(res.baseline == pts[0].seconds); /* 1 was measured */
    CHECK(res.serial_fraction >= 0 && res.serial_fraction <= 1);
    CHECK(res.t1 > 0);
    /* The recommendation: no more workers than the fastest count, and
     * within the tolerance of its time. */
    double fastest = 0, rec = 0;
    for (int i = 0; i < 3; i++) {
        if (pts[i].workers == res.fastest)
            fastest = pts[i].seconds;
        if (pts[i].workers == res.recommended)
            rec = pts[i].seconds;
    }
    for (int i = 0; i < 3; i++)
        CHECK(pts[i].seconds >= fastest);
    CHECK(res.recommended <= res.fastest);
    CHECK(rec <= fastest * 1.05);

    /* Defaults: 1 warmup + 3 runs per count; warmup < 0: none. */
    struct rec d = {.fail_at = -1};
    int two[] = {2, 1};
    weft_tune_opts_t od = {.counts = two, .ncounts = 2};
    CHECK_INT(weft_tune_measure(rec_work, &d, &od, NULL, 0, &res), ==, 2);
    CHECK_INT(d.calls, ==, 2 * 4);
    struct rec nw = {.fail_at = -1};
    weft_tune_opts_t on = {.counts = two, .ncounts = 2, .runs = 1, .warmup = -1};
    CHECK_INT(weft_tune_measure(rec_work, &nw, &on, NULL, 0, &res), ==, 2);
    CHECK_INT(nw.calls, ==, 2);
}

static void test_measure_default_counts(void)
{
    struct rec r = {.fail_at = -1};
    weft_tune_opts_t o = {.runs = 1, .warmup = -1};
    weft_tune_point_t pts[WEFT_TUNE_MAX_COUNTS];
    weft_tune_result_t res;
    int n = weft_tune_measure(rec_work, &r, &o, pts, WEFT_TUNE_MAX_COUNTS, &res);
    CHECK(n >= 2);
    int cpus = weft_cpu_count();
    if (cpus <= 8) {
        CHECK_INT(n, ==, 2 * cpus);
        for (int i = 0; i < n; i++)
            CHECK_INT(pts[i].workers, ==, i + 1);
    }
    CHECK_INT(r.calls, ==, n);
    CHECK_INT(pts[n - 1].workers, >=, cpus);
}

static void test_measure_error(void)
{
    struct rec r = {.fail_at = 5};
    int counts[] = {1, 2};
    weft_tune_opts_t o = {.counts = counts, .ncounts = 2, .runs = 3, .warmup = 1};
    weft_tune_result_t res = {.recommended = -42};
    CHECK_RC(weft_tune_measure(rec_work, &r, &o, NULL, 0, &res), -EIO);
    CHECK_INT(r.calls, ==, 6); /* stopped at the failing call */
    CHECK_INT(res.recommended, ==, -42);
}

static void test_measure_bad(void)
{
    struct rec r = {.fail_at = -1};
    weft_tune_result_t res;
    weft_tune_point_t pts[4];
    int ok[] = {1, 2}, zero[] = {1, 0}, big[] = {1, WEFT_POOL_MAX_WORKERS + 1}, same[] = {2, 2};
    weft_tune_opts_t o = {.counts = ok, .ncounts = 2, .runs = 1};
    CHECK_RC(weft_tune_measure(NULL, &r, &o, pts, 4, &res), -EINVAL);
    CHECK_RC(weft_tune_measure(rec_work, &r, &o, pts, 4, NULL), -EINVAL);
    CHECK_RC(weft_tune_measure(rec_work, &r, &o, pts, 1, &res), -EINVAL); /* cap too small */
    weft_tune_opts_t b = o;
    b.counts = zero;
    CHECK_RC(weft_tune_measure(rec_work, &r, &b, pts, 4, &res), -EINVAL);
    b.counts = big;
    CHECK_RC(weft_tune_measure(rec_work, &r, &b, pts, 4, &res), -EINVAL);
    b.counts = same;
    CHECK_RC(weft_tune_measure(rec_work, &r, &b, pts, 4, &res), -EINVAL);
    b = o;
    b.ncounts = 0;
    CHECK_RC(weft_tune_measure(rec_work, &r, &b, pts, 4, &res), -EINVAL);
    b.ncounts = WEFT_TUNE_MAX_COUNTS + 1;
    CHECK_RC(weft_tune_measure(rec_work, &r, &b, pts, 4, &res), -EINVAL);
    b = o;
    b.runs = -1;
    CHECK_RC(weft_tune_measure(rec_work, &r, &b, pts, 4, &res), -EINVAL);
    b = o;
    b.tolerance = -0.1;
    CHECK_RC(weft_tune_measure(rec_work, &r, &b, pts, 4, &res), -EINVAL);
    b.tolerance = NAN;
    CHECK_RC(weft_tune_measure(rec_work, &r, &b, pts, 4, &res), -EINVAL);
    CHECK_INT(r.calls, ==, 0); /* bad input never runs the workload */
    /* Still usable afterwards. */
    CHECK_INT(weft_tune_measure(rec_work, &r, &o, pts, 4, &res), ==, 2);
}

int main(void)
{
    RUN(test_fit_exact);
    RUN(test_fit_bad);
    RUN(test_amdahl);
    RUN(test_measure_counts);
    RUN(test_measure_default_counts);
    RUN(test_measure_error);
    RUN(test_measure_bad);
    return check_done();
}
