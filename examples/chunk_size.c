/*
 * chunk_size.c - how big should the pieces of a parallel map be?
 *
 * Python:                                  weft:
 *   pool.imap_unordered(f, xs, chunksize)    weft_par_imap_unordered(&it, pool, xs, n, ...,
 *                                                                    chunksize, f, ctx)
 *   pool.map(f, xs)  (adaptive here)         weft_par_map(pool, xs, n, ..., 0, f, ctx)
 *
 * Each chunk is one task: too small, and handing out the tasks costs more
 * than the work in them (overhead); too large, and there are too few to
 * share out evenly, so workers sit idle while one finishes (imbalance).
 * The elements here get heavier towards the end of the array, as real
 * work often does, so two big chunks split it badly. The lesson times the
 * same map with several chunk sizes, and weft_par_map's adaptive splitting,
 * which needs no chunk size. Build and run: build/examples/chunk_size, or
 * `weft demo chunk_size`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <weft.h>

#include "lesson.h"

struct map_ctx {
    size_t n;
};

/* out = a value that takes about 600 (i/n)^2 steps to compute: the last
 * half of the array holds 7/8 of the work. */
static int heavy(void *ctx, const void *in, void *out)
{
    const struct map_ctx *m = ctx;
    uint64_t i = *(const uint64_t *)in, x = i, steps = 1 + (i * i / m->n) * 600 / m->n;
    for (uint64_t k = 0; k < steps; k++)
        x = x * 6364136223846793005ull + 1442695040888963407ull;
    *(uint64_t *)out = x;
    return 0;
}

/* Run the map as unordered chunks; check every result. */
static int run_chunks(weft_pool_t *pool, const uint64_t *in, const uint64_t *want, size_t n,
                      int64_t chunk, struct map_ctx *m, double *seconds)
{
    weft_time_t t0 = weft_now();
    weft_par_iter_t *it;
    int rc = weft_par_imap_unordered(&it, pool, in, n, sizeof *in, sizeof(uint64_t), chunk, heavy, m);
    if (rc != 0)
        return rc;
    size_t idx, seen = 0;
    void *out;
    while ((rc = weft_par_iter_next(it, &idx, &out, WEFT_FOREVER)) == 0) {
        if (*(uint64_t *)out != want[idx])
            rc = -EIO;
        seen++;
    }
    weft_par_iter_free(it);
    *seconds = weft_seconds_between(t0, weft_now());
    if (rc != -EPIPE)
        return rc;
    return seen == n ? 0 : -EIO;
}

static int chunk_size_lesson(lesson_run_t *run)
{
    int cpus = weft_cpu_count(), workers = cpus < 2 ? 2 : cpus;
    size_t n = lesson_scaled(run, 200000);
    struct map_ctx m = {n};
    uint64_t *in = malloc(n * sizeof *in), *want = malloc(n * sizeof *want),
             *out = malloc(n * sizeof *out);
    if (!in || !want || !out) {
        free(in), free(want), free(out);
        return lesson_fail(run, "out of memory");
    }
    for (size_t i = 0; i < n; i++)
        in[i] = i;
    lesson_say(run, "Map %zu elements, each heavier than the one before, on %d workers,", n, workers);
    lesson_say(run, "cut into chunks of several sizes; each chunk is one task.");

    weft_time_t t0 = weft_now();
    for (size_t i = 0; i < n; i++)
        heavy(&m, &in[i], &want[i]);
    double seq = weft_seconds_between(t0, weft_now());
    lesson_figure_time(run, "sequential", "sequential loop", seq);

    weft_pool_t *pool;
    weft_pool_opts_t o = {.workers = workers};
    int rc = weft_pool_create(&pool, &o);
    if (rc != 0) {
        free(in), free(want), free(out);
        return lesson_fail_rc(run, "weft_pool_create", rc);
    }
    struct {
        int64_t chunk;
        const char *key, *label;
    } sizes[] = {
        {1, "chunk_1", "chunk of 1 element (too small)"},
        {16, "chunk_16", "chunks of 16 elements"},
        {(int64_t)(n / ((size_t)workers * 16)), "chunk_good", "16 chunks per worker"},
        {(int64_t)((n + (size_t)workers - 1) / (size_t)workers), "chunk_per_worker",
         "one chunk per worker (too large)"},
    };
    double best = 1e30, t_small = 0, t_large = 0;
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        double s = 0;
        if (sizes[k].chunk < 1)
            sizes[k].chunk = 1;
        rc = run_chunks(pool, in, want, n, sizes[k].chunk, &m, &s);
        if (rc != 0)
            break;
        char label[96];
        snprintf(label, sizeof label, "%s, %llu tasks", sizes[k].label,
                 (unsigned long long)((n + (size_t)sizes[k].chunk - 1) / (size_t)sizes[k].chunk));
        lesson_figure_time(run, sizes[k].key, label, s);
        if (s < best)
            best = s;
        if (k == 0)
            t_small = s;
        if (k == 3)
            t_large = s;
    }
    double adaptive = 0;
    if (rc == 0) {
        t0 = weft_now();
        rc = weft_par_map(pool, in, n, sizeof *in, out, sizeof *out, 0, heavy, &m);
        adaptive = weft_seconds_between(t0, weft_now());
        for (size_t i = 0; rc == 0 && i < n; i++)
            if (out[i] != want[i])
                rc = -EIO;
    }
    weft_pool_free(pool);
    free(in), free(want), free(out);
    if (rc != 0)
        return lesson_fail_rc(run, "the parallel map", rc);
    lesson_figure_time(run, "adaptive", "weft_par_map, adaptive splitting (no chunk size)", adaptive);
    lesson_figure_num(run, "small_vs_best", "chunk of 1 / the best chunked time", t_small / best, "x");
    lesson_figure_num(run, "large_vs_best", "one chunk per worker / the best chunked time",
                      t_large / best, "x");
    lesson_say(run, "Chunks of 1 pay a task's cost (a record, a future, a hand-off) per element.");
    if (t_large > best * 1.1) {
        lesson_say(run, "One chunk per worker leaves the worker with the light first half idle while");
        lesson_say(run, "the other grinds through the heavy end. Many chunks per worker balance it.");
    } else {
        lesson_say(run, "One chunk per worker was not slower in this run: the imbalance (one worker");
        lesson_say(run, "gets 7/8 of the work) shows only when the workers really run at once, and");
        lesson_say(run, "other programs are using this machine's cores right now.");
    }
    char a[32];
    lesson_key(run, "best chunked %s; chunk 1 %.1fx, per-worker %.1fx slower",
               lesson_fmt_time(a, sizeof a, best), t_small / best, t_large / best);
    return 0;
}

WEFT_LESSON(100, "chunk_size", "Chunk size: too small costs overhead, too large costs balance",
            chunk_size_lesson)
