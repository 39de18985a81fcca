/* par_for, par_reduce, par_map, imap_unordered, par_sort: exactly-once
 * coverage, determinism, ordering, first error, bad input, a pool shut
 * down under them. */
#include <math.h>
#include <stdatomic.h>
#include <weft.h>

#include "check.h"
#include "pool/internal.h" /* the pool's queue count */

static weft_pool_t *pool;

struct cover {
    _Atomic unsigned char *hit;
    int64_t begin;
    int64_t fail_at; /* INT64_MIN: never */
    _Atomic long calls_after_fail;
};

static int cover_body(void *ctx, int64_t lo, int64_t hi)
{
    struct cover *c = ctx;
    for (int64_t i = lo; i < hi; i++) {
        if (i == c->fail_at)
            return -EIO;
        atomic_fetch_add(&c->hit[i - c->begin], 1);
    }
    return 0;
}

static void test_for(void)
{
    int64_t sizes[] = {1, 2, 7, 1000, 100003};
    int64_t grains[] = {0, 1, 3, 5000};
    for (int a = 0; a < 5; a++)
        for (int b = 0; b < 4; b++) {
            int64_t n = sizes[a];
            struct cover c = {calloc((size_t)n, 1), -5, INT64_MIN, 0};
            CHECK_OK(weft_par_for(pool, -5, -5 + n, grains[b], cover_body, &c));
            for (int64_t i = 0; i < n; i++)
                if (atomic_load(&c.hit[i]) != 1)
                    CHECK_INT(atomic_load(&c.hit[i]), ==, 1);
            free((void *)c.hit);
        }
    CHECK_OK(weft_par_for(pool, 5, 5, 0, cover_body, NULL));
    CHECK_RC(weft_par_for(pool, 5, 4, 0, cover_body, NULL), -EINVAL);
    CHECK_RC(weft_par_for(pool, 0, 4, 0, NULL, NULL), -EINVAL);
    /* The first error is returned; not every index is visited. */
    int64_t n = 1000000;
    struct cover c = {calloc((size_t)n, 1), 0, 1000, 0};
    CHECK_RC(weft_par_for(pool, 0, n, 100, cover_body, &c), -EIO);
    long visited = 0;
    for (int64_t i = 0; i < n; i++)
        visited += atomic_load(&c.hit[i]);
    CHECK_INT(visited, <, n);
    free((void *)c.hit);
}

static int sum_map(void *ctx, int64_t lo, int64_t hi, void *acc)
{
    (void)ctx;
    double s = *(double *)acc;
    for (int64_t i = lo; i < hi; i++)
        s += 1.0 / (double)(i + 1);
    *(double *)acc = s;
    return 0;
}

static void sum_combine(void *ctx, void *acc, const void *other)
{
    (void)ctx;
    *(double *)acc += *(const double *)other;
}

/* String concatenation: associative, not commutative. */
static int cat_map(void *ctx, int64_t lo, int64_t hi, void *acc)
{
    (void)ctx;
    uint64_t h = *(uint64_t *)acc;
    for (int64_t i = lo; i < hi; i++)
        h = h * 31 + (uint64_t)i; /* a polynomial hash is a fold... */
    *(uint64_t *)acc = h;
    return 0;
}

static int fail_map(void *ctx, int64_t lo, int64_t hi, void *acc)
{
    (void)ctx; (void)acc;
    return (lo <= 777 && 777 < hi) ? -ERANGE : 0;
}

static void test_reduce(void)
{
    double id = 0, r1, r2, seq = 0;
    int64_t n = 3000000;
    for (int64_t i = 0; i < n; i++)
        seq += 1.0 / (double)(i + 1);
    CHECK_OK(weft_par_reduce(pool, 0, n, 0, &r1, sizeof r1, &id, sum_map, sum_combine, NULL));
    CHECK(fabs(r1 - seq) < 1e-9);
    /* Bit-for-bit the same on another pool size and on repeat. */
    weft_pool_t *p1;
    weft_pool_opts_t o = {.workers = 1};
    CHECK_OK(weft_pool_create(&p1, &o));
    CHECK_OK(weft_par_reduce(p1, 0, n, 0, &r2, sizeof r2, &id, sum_map, sum_combine, NULL));
    CHECK(memcmp(&r1, &r2, sizeof r1) == 0);
    for (int k = 0; k < 5; k++) {
        CHECK_OK(weft_par_reduce(pool, 0, n, 0, &r2, sizeof r2, &id, sum_map, sum_combine, NULL));
        CHECK(memcmp(&r1, &r2, sizeof r1) == 0);
    }
    CHECK_OK(weft_pool_free(p1));
    /* Empty range: the identity. */
    r2 = 5;
    id = 42;
    CHECK_OK(weft_par_reduce(pool, 3, 3, 0, &r2, sizeof r2, &id, sum_map, sum_combine, NULL));
    CHECK(r2 == 42);
    CHECK_RC(weft_par_reduce(pool, 0, 10, 0, &r2, 0, &id, sum_map, sum_combine, NULL), -EINVAL);
    CHECK_RC(weft_par_reduce(pool, 0, 10, 0, NULL, 8, &id, sum_map, sum_combine, NULL), -EINVAL);
    CHECK_RC(weft_par_reduce(pool, 0, 10, 0, &r2, 8, &id, NULL, sum_combine, NULL), -EINVAL);
    CHECK_RC(weft_par_reduce(pool, 0, 10000, 10, &r2, 8, &id, fail_map, sum_combine, NULL), -ERANGE);
    (void)cat_map;
}

static int square(void *ctx, const void *in, void *out)
{
    (void)ctx;
    int64_t v = *(const int64_t *)in;
    if (v < 0)
        return -EDOM;
    *(int64_t *)out = v * v;
    return 0;
}

static void test_map(void)
{
    size_t n = 100000;
    int64_t *in = malloc(n * sizeof *in), *out = calloc(n, sizeof *out);
    for (size_t i = 0; i < n; i++)
        in[i] = (int64_t)i;
    int64_t chunks[] = {0, 1, 17, 100000};
    for (int k = 0; k < 4; k++) {
        memset(out, 0, n * sizeof *out);
        CHECK_OK(weft_par_map(pool, in, n, sizeof *in, out, sizeof *out, chunks[k], square, NULL));
        for (size_t i = 0; i < n; i++)
            if (out[i] != (int64_t)(i * i))
                CHECK_INT(out[i], ==, i * i);
    }
    in[500] = -1;
    CHECK_RC(weft_par_map(pool, in, n, sizeof *in, out, sizeof *out, 10, square, NULL), -EDOM);
    CHECK_RC(weft_par_map(pool, in, n, sizeof *in, NULL, sizeof *out, 10, square, NULL), -EINVAL);
    CHECK_RC(weft_par_map(pool, in, n, sizeof *in, out, sizeof *out, 10, NULL, NULL), -EINVAL);
    CHECK_OK(weft_par_map(pool, NULL, 0, 8, NULL, 0, 0, square, NULL));

    /* Unordered: every index exactly once, with the right value. */
    in[500] = 500;
    weft_par_iter_t *it;
    CHECK_OK(weft_par_imap_unordered(&it, pool, in, n, sizeof *in, sizeof(int64_t), 0, square, NULL));
    char *seen = calloc(n, 1);
    size_t idx, count = 0;
    void *res;
    int r;
    while ((r = weft_par_iter_next(it, &idx, &res, WEFT_FOREVER)) == 0) {
        CHECK_INT(seen[idx], ==, 0);
        seen[idx] = 1;
        CHECK_INT(*(int64_t *)res, ==, (int64_t)(idx * idx));
        count++;
    }
    CHECK_RC(r, -EPIPE);
    CHECK_INT(count, ==, n);
    CHECK_OK(weft_par_iter_free(it));
    /* A failing chunk: its error, then -EPIPE; free cancels the rest. */
    in[99999] = -3;
    CHECK_OK(weft_par_imap_unordered(&it, pool, in, n, sizeof *in, sizeof(int64_t), 1000, square, NULL));
    while ((r = weft_par_iter_next(it, &idx, &res, WEFT_FOREVER)) == 0)
        ;
    CHECK_RC(r, -EDOM);
    CHECK_RC(weft_par_iter_next(it, &idx, &res, WEFT_FOREVER), -EPIPE);
    CHECK_OK(weft_par_iter_free(it));
    CHECK_RC(weft_par_imap_unordered(NULL, pool, in, n, 8, 8, 0, square, NULL), -EINVAL);
    CHECK_RC(weft_par_iter_next(NULL, &idx, &res, WEFT_FOREVER), -EINVAL);
    CHECK_RC(weft_par_iter_free(NULL), -EINVAL);
    free(seen);
    free(in);
    free(out);
}

static int cmp_u64(const void *a, const void *b, void *ctx)
{
    (void)ctx;
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

struct rec {
    uint32_t key;
    char pad[13];
};

static int cmp_rec(const void *a, const void *b, void *ctx)
{
    (void)ctx;
    const struct rec *x = a, *y = b;
    return x->key < y->key ? -1 : x->key > y->key;
}

static void test_sort(void)
{
    size_t sizes[] = {0, 1, 2, 1000, 5000, 300001};
    uint64_t seed = 12345;
    for (int k = 0; k < 6; k++) {
        size_t n = sizes[k];
        uint64_t *a = malloc((n ? n : 1) * sizeof *a);
        uint64_t sum = 0, sum2 = 0;
        for (size_t i = 0; i < n; i++) {
            seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17;
            a[i] = (k & 1) ? seed % 100 : seed; /* many duplicates sometimes */
            sum += a[i];
        }
        CHECK_OK(weft_par_sort(pool, a, n, sizeof *a, cmp_u64, NULL));
        for (size_t i = 0; i < n; i++) {
            sum2 += a[i];
            if (i && a[i - 1] > a[i])
                CHECK_U64(a[i - 1], <=, a[i]);
        }
        CHECK_U64(sum, ==, sum2); /* a permutation (checksum) */
        free(a);
    }
    /* An odd element size. */
    size_t n = 100000;
    struct rec *r = malloc(n * sizeof *r);
    for (size_t i = 0; i < n; i++) {
        r[i].key = (uint32_t)((i * 2654435761u) % 100003);
        memset(r[i].pad, (int)(r[i].key & 0x7f), sizeof r[i].pad);
    }
    CHECK_OK(weft_par_sort(pool, r, n, sizeof *r, cmp_rec, NULL));
    for (size_t i = 0; i < n; i++) {
        if (i && r[i - 1].key > r[i].key)
            CHECK_INT(r[i - 1].key, <=, r[i].key);
        if (r[i].pad[12] != (char)(r[i].key & 0x7f))
            CHECK_INT(r[i].pad[12], ==, r[i].key & 0x7f);
    }
    free(r);
    CHECK_RC(weft_par_sort(pool, NULL, 5, 8, cmp_u64, NULL), -EINVAL);
    CHECK_RC(weft_par_sort(pool, &n, 1, 0, cmp_u64, NULL), -EINVAL);
    CHECK_RC(weft_par_sort(pool, &n, 1, 8, NULL, NULL), -EINVAL);
}

/* Nested: a par_for inside a par_for body (inside pool tasks). */
static int inner_body(void *ctx, int64_t lo, int64_t hi)
{
    atomic_fetch_add((_Atomic long *)ctx, hi - lo);
    return 0;
}

static int outer_body(void *ctx, int64_t lo, int64_t hi)
{
    for (int64_t i = lo; i < hi; i++) {
        int r = weft_par_for(NULL, 0, 1000, 0, inner_body, ctx);
        if (r < 0)
            return r;
    }
    return 0;
}

static void test_nested(void)
{
    _Atomic long total = 0;
    CHECK_OK(weft_par_for(pool, 0, 200, 1, outer_body, (void *)&total));
    CHECK_INT(total, ==, 200 * 1000);
}

/* A pool shut down with cancel_pending skips par_for's and par_reduce's
 * queued tasks: they say -ECANCELED (they used to say 0, par_reduce with a
 * result made of accumulators that were never filled). */
static weft_event_t sd_go, sd_started;
static _Atomic long sd_ran;
static weft_pool_t *sd_pool;
static int sd_for_rc = 1, sd_reduce_rc = 1;
static int sd_blocker(void *arg, void **res)
{
    (void)arg;
    (void)res;
    weft_event_set(&sd_started);
    return weft_event_wait(&sd_go);
}
static int sd_body(void *ctx, int64_t lo, int64_t hi)
{
    (void)ctx;
    atomic_fetch_add(&sd_ran, hi - lo);
    return 0;
}
static int sd_map(void *ctx, int64_t lo, int64_t hi, void *acc)
{
    (void)ctx;
    *(long *)acc += hi - lo;
    atomic_fetch_add(&sd_ran, hi - lo);
    return 0;
}
static void sd_comb(void *ctx, void *acc, const void *o)
{
    (void)ctx;
    *(long *)acc += *(const long *)o;
}
static void *sd_for_thread(void *a)
{
    (void)a;
    sd_for_rc = weft_par_for(sd_pool, 0, 1000, 0, sd_body, NULL);
    return NULL;
}
static void *sd_reduce_thread(void *a)
{
    (void)a;
    long out = -1, id = 0;
    sd_reduce_rc = weft_par_reduce(sd_pool, 0, 100000, 0, &out, sizeof out, &id, sd_map,
                                   sd_comb, NULL);
    return NULL;
}
/* A range of more indices than an int64_t counts: -ERANGE, not an
 * overflow in the splitting. */
static int never_body(void *ctx, int64_t lo, int64_t hi)
{
    (void)ctx;
    (void)lo;
    (void)hi;
    return -EIO;
}
static void test_huge_range(void)
{
    CHECK_RC(weft_par_for(pool, INT64_MIN, INT64_MAX, 0, never_body, NULL), -ERANGE);
    CHECK_RC(weft_par_for(pool, -1, INT64_MAX, 0, never_body, NULL), -ERANGE);
    long acc = 0, id = 0;
    CHECK_RC(weft_par_reduce(pool, INT64_MIN, 1, 0, &acc, sizeof acc, &id, sd_map, sd_comb, NULL),
             -ERANGE);
}

static void test_shutdown_cancels(void)
{
    weft_event_init(&sd_go);
    weft_event_init(&sd_started);
    weft_pool_opts_t o = {.workers = 1};
    CHECK_OK(weft_pool_create(&sd_pool, &o));
    weft_future_t *f;
    CHECK_OK(weft_pool_submit(sd_pool, sd_blocker, NULL, &f));
    CHECK_OK(weft_event_wait(&sd_started)); /* the only worker is busy */
    weft_thread_t *t1, *t2;
    CHECK_OK(weft_thread_start(&t1, sd_for_thread, NULL, NULL));
    CHECK_OK(weft_thread_start(&t2, sd_reduce_thread, NULL, NULL));
    /* Until both calls have queued their root task. */
    while (atomic_load(&sd_pool->inj_count) < 2)
        weft_sleep(0.001);
    CHECK_OK(weft_pool_shutdown(sd_pool, false, true));
    CHECK_OK(weft_event_set(&sd_go));
    CHECK_OK(weft_thread_join(t1, NULL));
    CHECK_OK(weft_thread_join(t2, NULL));
    CHECK_RC(sd_for_rc, -ECANCELED);
    CHECK_RC(sd_reduce_rc, -ECANCELED);
    CHECK_INT(atomic_load(&sd_ran), ==, 0);
    CHECK_OK(weft_future_get(f, NULL));
    weft_future_release(f);
    CHECK_OK(weft_pool_free(sd_pool));
    weft_event_destroy(&sd_go);
    weft_event_destroy(&sd_started);
}

int main(void)
{
    weft_pool_opts_t o = {.workers = 3};
    if (weft_pool_create(&pool, &o) != 0)
        return 1;
    RUN(test_for);
    RUN(test_reduce);
    RUN(test_map);
    RUN(test_sort);
    RUN(test_nested);
    RUN(test_shutdown_cancels);
    RUN(test_huge_range);
    weft_pool_free(pool);
    return check_done();
}
