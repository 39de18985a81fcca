/*
 * par.c - parallel for, reduce, map, imap_unordered and sort on the pool.
 *
 * par_for uses lazy binary splitting (Tzannes, Caragea, Barua, Vishkin,
 * "Lazy Binary-Splitting", PPoPP 2010): a range task processes its range a
 * grain at a time, and before each grain, if its worker's deque is empty
 * (nobody has work to steal, so thieves may be idle), it gives away the
 * upper half of what is left as a new task. Tasks are created only when
 * somebody may take them; with all workers busy a range runs sequentially.
 */
#include <stdlib.h>
#include <string.h>
#include <weft/par.h>

#include "../future/internal.h"
#include "../pool/internal.h"

struct pf {
    int (*body)(void *ctx, int64_t lo, int64_t hi);
    void *ctx;
    int64_t grain;
    _Atomic int err;       /* first error, 0 if none */
};

struct range {
    struct pf *pf;
    int64_t lo, hi;
};

static inline bool stopped(struct pf *pf)
{
    return atomic_load_explicit(&pf->err, memory_order_relaxed) != 0;
}

static void fail(struct pf *pf, int err)
{
    int zero = 0;
    atomic_compare_exchange_strong_explicit(&pf->err, &zero, err, memory_order_relaxed,
                                            memory_order_relaxed);
}

static int range_run(void *arg)
{
    struct range *r = arg;
    struct pf *pf = r->pf;
    int64_t lo = r->lo, hi = r->hi, grain = pf->grain;
    struct weft__worker *w = weft__cur_worker;
    /* Each split halves the range: 64 splits cover any int64 range. */
    struct range kids[64];
    int nk = 0;
    weft_group_t g;
    weft_group_init(&g, w ? (weft_pool_t *)w->pool : NULL);
    while (lo < hi && !stopped(pf)) {
        if (hi - lo > grain && nk < 64 && w && weft__deque_size(&w->dq) == 0) {
            int64_t mid = lo + (hi - lo) / 2;
            kids[nk] = (struct range){pf, mid, hi};
            if (weft_group_spawn(&g, range_run, &kids[nk]) == 0) {
                nk++;
                hi = mid;
                continue;
            }
        }
        int64_t end = hi - lo > grain ? lo + grain : hi;
        int rc = pf->body(pf->ctx, lo, end);
        if (rc < 0) {
            fail(pf, rc);
            break;
        }
        lo = end;
    }
    /* A child the pool skipped (shutdown with cancel_pending) never ran
     * its part: say so, or the caller would take the range as done. */
    int gr = weft_group_wait(&g);
    if (gr < 0)
        fail(pf, gr);
    return 0;
}

static int resolve_pool(weft_pool_t **pool)
{
    if (!*pool) {
        struct weft__worker *w = weft__cur_worker;
        *pool = w ? w->pool : weft_pool_default();
        if (!*pool)
            return -ENOMEM;
    }
    return 0;
}

static int run_pf(weft_pool_t *pool, struct pf *pf, int64_t begin, int64_t end)
{
    struct range root = {pf, begin, end};
    struct weft__worker *w = weft__cur_worker;
    if (w && w->pool == pool) {
        range_run(&root);
    } else {
        weft_group_t g;
        weft_group_init(&g, pool);
        int r = weft_group_spawn(&g, range_run, &root);
        if (r < 0)
            return r;
        r = weft_group_wait(&g);
        if (r < 0)
            fail(pf, r); /* the root itself was skipped (-ECANCELED) */
    }
    return atomic_load_explicit(&pf->err, memory_order_relaxed);
}

int weft_par_for(weft_pool_t *pool, int64_t begin, int64_t end, int64_t grain,
                 int (*body)(void *ctx, int64_t lo, int64_t hi), void *ctx)
{
    if (!body || end < begin)
        return -EINVAL;
    if ((uint64_t)end - (uint64_t)begin > (uint64_t)INT64_MAX)
        return -ERANGE; /* more indices than an int64_t counts */
    if (begin == end)
        return 0;
    int r = resolve_pool(&pool);
    if (r < 0)
        return r;
    int64_t n = end - begin;
    if (grain <= 0) {
        grain = n / ((int64_t)pool->nworkers * 128);
        if (grain < 1)
            grain = 1;
    }
    struct pf pf = {body, ctx, grain, 0};
    return run_pf(pool, &pf, begin, end);
}

/* ---- reduce ------------------------------------------------------------------ */

struct red {
    int (*map)(void *ctx, int64_t lo, int64_t hi, void *acc);
    void *ctx;
    const void *identity;
    size_t size;
    unsigned char *accs;
    int64_t begin, end, grain;
};

static int red_body(void *arg, int64_t c0, int64_t c1)
{
    struct red *rd = arg;
    for (int64_t c = c0; c < c1; c++) {
        void *acc = rd->accs + (size_t)c * rd->size;
        memcpy(acc, rd->identity, rd->size);
        int64_t lo = rd->begin + c * rd->grain;
        int64_t hi = rd->end - lo > rd->grain ? lo + rd->grain : rd->end;
        int r = rd->map(rd->ctx, lo, hi, acc);
        if (r < 0)
            return r;
    }
    return 0;
}

int weft_par_reduce(weft_pool_t *pool, int64_t begin, int64_t end, int64_t grain, void *result,
                    size_t size, const void *identity,
                    int (*map)(void *ctx, int64_t lo, int64_t hi, void *acc),
                    void (*combine)(void *ctx, void *acc, const void *other), void *ctx)
{
    if (!result || !size || !identity || !map || !combine || end < begin)
        return -EINVAL;
    if ((uint64_t)end - (uint64_t)begin > (uint64_t)INT64_MAX)
        return -ERANGE; /* more indices than an int64_t counts */
    int r = resolve_pool(&pool);
    if (r < 0)
        return r;
    memmove(result, identity, size);
    int64_t n = end - begin;
    if (n == 0)
        return 0;
    if (grain <= 0) {
        grain = n / 1024 + (n % 1024 != 0);
        if (grain < 1)
            grain = 1;
    }
    int64_t chunks = n / grain + (n % grain != 0); /* (n + grain - 1) could overflow */
    struct red rd = {map, ctx, identity, size, NULL, begin, end, grain};
    if ((uint64_t)chunks > SIZE_MAX / size)
        return -ENOMEM;
    rd.accs = malloc((size_t)chunks * size);
    if (!rd.accs)
        return -ENOMEM;
    struct pf pf = {red_body, &rd, 1, 0};
    r = run_pf(pool, &pf, 0, chunks);
    if (r == 0)
        for (int64_t c = 0; c < chunks; c++)
            combine(ctx, result, rd.accs + (size_t)c * size);
    free(rd.accs);
    return r;
}

/* ---- map ------------------------------------------------------------------------ */

struct map {
    int (*fn)(void *ctx, const void *in, void *out);
    void *ctx;
    const unsigned char *in;
    unsigned char *out;
    size_t in_size, out_size;
};

static int map_body(void *arg, int64_t lo, int64_t hi)
{
    struct map *m = arg;
    for (int64_t i = lo; i < hi; i++) {
        int r = m->fn(m->ctx, m->in ? m->in + (size_t)i * m->in_size : NULL,
                      m->out + (size_t)i * m->out_size);
        if (r < 0)
            return r;
    }
    return 0;
}

int weft_par_map(weft_pool_t *pool, const void *in, size_t n, size_t in_size, void *out,
                 size_t out_size, int64_t chunksize,
                 int (*fn)(void *ctx, const void *in, void *out), void *ctx)
{
    if (!fn || n > INT64_MAX || (n && (!out || !out_size || (in_size && !in))))
        return -EINVAL;
    struct map m = {fn, ctx, in_size ? in : NULL, out, in_size, out_size};
    return weft_par_for(pool, 0, (int64_t)n, chunksize, map_body, &m);
}

/* ---- imap_unordered ------------------------------------------------------------------ */

struct chunk {
    struct weft_par_iter *it;
    size_t lo, hi;
};

struct weft_par_iter {
    struct map m;
    size_t n, nchunks;
    struct chunk *chunks;
    weft_future_t **fs;
    weft_as_completed_t *ac;
    struct chunk *cur;     /* chunk being yielded */
    size_t pos;            /* next index in cur */
    bool failed;
};

static int chunk_task(void *arg, void **result)
{
    (void)result;
    struct chunk *c = arg;
    return map_body(&c->it->m, (int64_t)c->lo, (int64_t)c->hi);
}

static void iter_cancel_all(struct weft_par_iter *it)
{
    for (size_t i = 0; i < it->nchunks; i++)
        weft_future_cancel(it->fs[i]);
}

int weft_par_iter_free(weft_par_iter_t *it)
{
    if (!it)
        return -EINVAL;
    iter_cancel_all(it);
    /* Not cancellable: the chunks use what is freed below. */
    for (size_t i = 0; i < it->nchunks; i++)
        weft__future_wait_nc(it->fs[i]);
    if (it->ac)
        weft_as_completed_free(it->ac);
    for (size_t i = 0; i < it->nchunks; i++)
        weft_future_release(it->fs[i]);
    free(it->fs);
    free(it->chunks);
    free(it->m.out);
    free(it);
    return 0;
}

int weft_par_imap_unordered(weft_par_iter_t **out, weft_pool_t *pool, const void *in,
                            size_t n, size_t in_size, size_t out_size, int64_t chunksize,
                            int (*fn)(void *ctx, const void *in, void *out), void *ctx)
{
    if (!out || !fn || !out_size || (n && in_size && !in) || n > SIZE_MAX / out_size)
        return -EINVAL;
    int r = resolve_pool(&pool);
    if (r < 0)
        return r;
    size_t cs = chunksize > 0 ? (size_t)chunksize : n / ((size_t)pool->nworkers * 16);
    if (cs < 1)
        cs = 1;
    struct weft_par_iter *it = calloc(1, sizeof *it);
    if (!it)
        return -ENOMEM;
    it->n = n;
    it->nchunks = n ? (n + cs - 1) / cs : 0;
    it->m = (struct map){fn, ctx, in_size ? in : NULL, malloc(n ? n * out_size : 1), in_size,
                         out_size};
    it->chunks = calloc(it->nchunks ? it->nchunks : 1, sizeof *it->chunks);
    it->fs = calloc(it->nchunks ? it->nchunks : 1, sizeof *it->fs);
    if (!it->m.out || !it->chunks || !it->fs) {
        free(it->m.out);
        free(it->chunks);
        free(it->fs);
        free(it);
        return -ENOMEM;
    }
    for (size_t i = 0; i < it->nchunks; i++) {
        it->chunks[i] = (struct chunk){it, i * cs, (i + 1) * cs < n ? (i + 1) * cs : n};
        r = weft_pool_submit(pool, chunk_task, &it->chunks[i], &it->fs[i]);
        if (r < 0) {
            it->nchunks = i;
            weft_par_iter_free(it);
            return r;
        }
    }
    r = weft_as_completed_create(&it->ac, it->fs, it->nchunks);
    if (r < 0) {
        it->ac = NULL;
        weft_par_iter_free(it);
        return r;
    }
    *out = it;
    return 0;
}

int weft_par_iter_next(weft_par_iter_t *it, size_t *index, void **out, weft_time_t deadline)
{
    if (!it || deadline < 0)
        return -EINVAL;
    while (!it->cur || it->pos == it->cur->hi) {
        if (it->failed)
            return -EPIPE;
        weft_future_t *f;
        int i = weft_as_completed_next(it->ac, &f, deadline);
        if (i < 0)
            return i;
        int r = weft_future_result(f, NULL);
        if (r < 0) {
            it->failed = true;
            iter_cancel_all(it);
            return r;
        }
        it->cur = &it->chunks[i];
        it->pos = it->cur->lo;
    }
    size_t k = it->pos++;
    if (index)
        *index = k;
    if (out)
        *out = it->m.out + k * it->m.out_size;
    return 0;
}

/* ---- sort ---------------------------------------------------------------------------- */

struct sorter {
    unsigned char *a, *b;  /* source and destination of the current pass */
    size_t n, size, width, piece;
    int (*cmp)(const void *, const void *, void *);
    void *ctx;
};

static int sort_chunk(void *arg, int64_t c0, int64_t c1)
{
    struct sorter *s = arg;
    for (int64_t c = c0; c < c1; c++) {
        size_t lo = (size_t)c * s->width;
        size_t hi = lo + s->width < s->n ? lo + s->width : s->n;
        qsort_r(s->a + lo * s->size, hi - lo, s->size, s->cmp, s->ctx);
    }
    return 0;
}

/*
 * Merge path (Odeh, Green, Mwassi, Shmueli, Birk, "Merge Path", 2012): the
 * number of elements taken from A among the first k outputs of a stable
 * merge of A and B (ties taken from A first).
 */
static size_t corank(struct sorter *s, const unsigned char *A, size_t na,
                     const unsigned char *B, size_t nb, size_t k)
{
    size_t lo = k > nb ? k - nb : 0, hi = k < na ? k : na;
    while (lo < hi) {
        size_t i = lo + (hi - lo) / 2, j = k - i - 1;
        /* Take A[i] before B[j] iff A[i] <= B[j]. */
        if (s->cmp(A + i * s->size, B + j * s->size, s->ctx) <= 0)
            lo = i + 1;
        else
            hi = i;
    }
    return lo;
}

static int merge_piece(void *arg, int64_t p0, int64_t p1)
{
    struct sorter *s = arg;
    size_t pair_len = 2 * s->width;
    size_t pieces_per_pair = (pair_len + s->piece - 1) / s->piece;
    for (int64_t p = p0; p < p1; p++) {
        size_t pair = (size_t)p / pieces_per_pair, k = (size_t)p % pieces_per_pair;
        size_t base = pair * pair_len;
        if (base >= s->n)
            continue;
        size_t mid = base + s->width < s->n ? base + s->width : s->n;
        size_t end = base + pair_len < s->n ? base + pair_len : s->n;
        const unsigned char *A = s->a + base * s->size, *B = s->a + mid * s->size;
        size_t na = mid - base, nb = end - mid, total = na + nb;
        size_t k0 = k * s->piece, k1 = k0 + s->piece < total ? k0 + s->piece : total;
        if (k0 >= total)
            continue;
        size_t i = corank(s, A, na, B, nb, k0), j = k0 - i;
        size_t i1 = corank(s, A, na, B, nb, k1), j1 = k1 - i1;
        unsigned char *o = s->b + (base + k0) * s->size;
        while (i < i1 && j < j1) {
            if (s->cmp(A + i * s->size, B + j * s->size, s->ctx) <= 0)
                memcpy(o, A + i++ * s->size, s->size);
            else
                memcpy(o, B + j++ * s->size, s->size);
            o += s->size;
        }
        memcpy(o, A + i * s->size, (i1 - i) * s->size);
        o += (i1 - i) * s->size;
        memcpy(o, B + j * s->size, (j1 - j) * s->size);
    }
    return 0;
}

static int copy_body(void *arg, int64_t lo, int64_t hi)
{
    struct sorter *s = arg;
    memcpy(s->b + (size_t)lo * s->size, s->a + (size_t)lo * s->size, (size_t)(hi - lo) * s->size);
    return 0;
}

int weft_par_sort(weft_pool_t *pool, void *base, size_t n, size_t size,
                  int (*cmp)(const void *a, const void *b, void *ctx), void *ctx)
{
    if (!cmp || !size || (n && !base) || n > INT64_MAX / 2 || (n && size > SIZE_MAX / n))
        return -EINVAL;
    if (n < 2)
        return 0;
    int r = resolve_pool(&pool);
    if (r < 0)
        return r;
    size_t workers = (size_t)pool->nworkers;
    size_t chunk = n / (workers * 4);
    if (chunk < 2048)
        chunk = 2048;
    if (chunk >= n || workers == 1) {
        qsort_r(base, n, size, cmp, ctx);
        return 0;
    }
    unsigned char *tmp = malloc(n * size);
    if (!tmp)
        return -ENOMEM;
    struct sorter s = {base, tmp, n, size, chunk, 0, cmp, ctx};
    int64_t nchunks = (int64_t)((n + chunk - 1) / chunk);
    r = weft_par_for(pool, 0, nchunks, 1, sort_chunk, &s);
    /* Merge passes, each split into pieces of about n / (4 * workers). */
    s.piece = n / (workers * 4);
    if (s.piece < 4096)
        s.piece = 4096;
    while (r == 0 && s.width < n) {
        size_t pair_len = 2 * s.width;
        size_t pairs = (n + pair_len - 1) / pair_len;
        size_t per = (pair_len + s.piece - 1) / s.piece;
        r = weft_par_for(pool, 0, (int64_t)(pairs * per), 1, merge_piece, &s);
        unsigned char *t = s.a;
        s.a = s.b;
        s.b = t;
        s.width = pair_len;
    }
    if (r == 0 && s.a != (unsigned char *)base) {
        s.b = base;
        r = weft_par_for(pool, 0, (int64_t)n, 0, copy_body, &s);
    }
    free(tmp);
    return r;
}
