/*
 * weft/par.h - parallel algorithms on the pool: "break the problem into
 * chunks, execute chunks in parallel, reassemble the output".
 *
 *   Python / other                         weft
 *   for i in range(a, b): body(i)          weft_par_for
 *   functools.reduce over a range          weft_par_reduce
 *   Pool.map(fn, xs, chunksize)            weft_par_map
 *   Pool.imap_unordered(fn, xs, chunksize) weft_par_imap_unordered + weft_par_iter_*
 *   sorted(xs, key=...)                    weft_par_sort
 *
 * Every call runs on a pool (NULL: the calling worker's pool inside a pool
 * task, else the default pool), may be called from any thread including
 * pool tasks (nested parallelism is fine: a waiting worker helps), and
 * returns when all the work is done.
 *
 * Splitting. grain (or chunksize) <= 0 picks a good default. weft_par_for
 * and weft_par_map split adaptively (lazy binary splitting, Tzannes et al.,
 * PPoPP 2010): a task works through its range grain by grain, and splits
 * off the upper half of what is left for a thief only when its worker's
 * deque is empty, i.e. when other workers may be idle. So a caller rarely
 * needs a grain; the default is about 1/128 of a worker's share. Set it
 * when one element's work is very uneven or tiny.
 *
 * Errors. A body returns 0 or a negative code. The first error stops the
 * chunks not yet started (running ones finish theirs) and is returned; the
 * output is then partial. Other errors: -EINVAL (NULL function or array
 * with n > 0, end < begin, zero element size), -ERANGE (par_for and
 * par_reduce: end - begin above INT64_MAX), -ENOMEM, -EPIPE (the pool
 * is shut down), -ECANCELED (a shutdown with cancel_pending skipped chunks
 * of the call: the work is not done).
 */
#ifndef WEFT_PAR_H
#define WEFT_PAR_H

#include <stddef.h>
#include <stdint.h>
#include <weft/error.h>
#include <weft/pool.h>
#include <weft/time.h>
#include <weft/version.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * body(ctx, lo, hi) for disjoint subranges [lo, hi) covering [begin, end),
 * each exactly once (unless an error stops them). begin == end: 0 at once.
 */
WEFT_API int weft_par_for(weft_pool_t *pool, int64_t begin, int64_t end, int64_t grain,
                          int (*body)(void *ctx, int64_t lo, int64_t hi), void *ctx);

/*
 * Reduce [begin, end) to one value of `size` bytes in *result.
 *
 * The range is cut into fixed chunks of `grain` indices (default: about
 * 1/1024 of the range, at least 1); for each chunk an accumulator is set to
 * *identity and map(ctx, lo, hi, acc) folds the chunk into it; then the
 * chunk accumulators are combined in index order, left to right:
 * result = identity (+) acc_0 (+) acc_1 (+) ... with combine(ctx, acc,
 * other) doing acc = acc (+) other.
 *
 * Determinism: the chunks depend only on (begin, end, grain), never on the
 * number of workers or on scheduling, and the combining order is fixed. So
 * the result is bit-for-bit reproducible for the same inputs and grain,
 * even for operations that are not exactly associative (floating-point
 * sums), and equal to the sequential result for associative ones.
 * result and identity may not overlap. -EINVAL also for size 0 or NULL
 * result/identity/map/combine.
 */
WEFT_API int weft_par_reduce(weft_pool_t *pool, int64_t begin, int64_t end, int64_t grain,
                             void *result, size_t size, const void *identity,
                             int (*map)(void *ctx, int64_t lo, int64_t hi, void *acc),
                             void (*combine)(void *ctx, void *acc, const void *other),
                             void *ctx);

/*
 * Pool.map: out[i] = fn(in[i]) for i < n, in order: fn(ctx, in + i*in_size,
 * out + i*out_size). chunksize: elements per piece of work (<= 0: adaptive).
 * in_size may be 0: then fn gets in == NULL (a map over indices, the
 * index being (out - base) / out_size). With n > 0: out not NULL,
 * out_size > 0, and in not NULL when in_size > 0.
 */
WEFT_API int weft_par_map(weft_pool_t *pool, const void *in, size_t n, size_t in_size,
                          void *out, size_t out_size, int64_t chunksize,
                          int (*fn)(void *ctx, const void *in, void *out), void *ctx);

/*
 * Pool.imap_unordered: start mapping at once and yield results in the order
 * chunks finish. Chunks of chunksize elements (<= 0: about n / (16 *
 * workers)) run as pool tasks; the results live in the iterator.
 *
 *   weft_par_iter_t *it;
 *   weft_par_imap_unordered(&it, NULL, in, n, sizeof *in, sizeof(double), 0, fn, ctx);
 *   size_t i; double *r;
 *   while (weft_par_iter_next(it, &i, (void **)&r, WEFT_FOREVER) == 0)
 *       use(i, *r);
 *   weft_par_iter_free(it);
 */
typedef struct weft_par_iter weft_par_iter_t;

WEFT_API int weft_par_imap_unordered(weft_par_iter_t **out, weft_pool_t *pool, const void *in,
                                     size_t n, size_t in_size, size_t out_size,
                                     int64_t chunksize,
                                     int (*fn)(void *ctx, const void *in, void *out),
                                     void *ctx);
/*
 * The next result: its input index in *index and a pointer to it (owned by
 * the iterator, valid until it is freed) in *out. Returns 0; -EPIPE when
 * all were yielded; the error of a failed chunk (the chunks not yet started
 * are then cancelled, and later calls return -EPIPE); -ETIMEDOUT; -EINVAL.
 * One thread at a time per iterator.
 */
WEFT_API int weft_par_iter_next(weft_par_iter_t *it, size_t *index, void **out,
                                weft_time_t deadline);
/* Cancel the chunks not yet started, wait for running ones, free. 0, -EINVAL. */
WEFT_API int weft_par_iter_free(weft_par_iter_t *it);

/*
 * Sort n elements of `size` bytes at base with cmp(a, b, ctx) (< 0, 0,
 * > 0), in parallel: chunks sorted with qsort_r, then merged pairwise with
 * every merge itself split across workers (merge path). Not stable. Uses
 * n * size bytes of scratch memory (-ENOMEM if unavailable; base is then
 * unchanged). cmp must not fail.
 */
WEFT_API int weft_par_sort(weft_pool_t *pool, void *base, size_t n, size_t size,
                           int (*cmp)(const void *a, const void *b, void *ctx), void *ctx);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_PAR_H */
