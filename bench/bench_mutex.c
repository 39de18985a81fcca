/*
 * bench_mutex.c - weft_mutex_t against pthread_mutex_t (and a C11 atomic).
 *
 * mutex_uncontended: one thread locks and unlocks a free mutex `iters` times;
 *   ns_per_op is one lock+unlock pair. This is the fast path every program
 *   pays: one compare-and-swap to lock, one to unlock. Target: weft within
 *   1.1x of pthread.
 *
 * mutex_counter: `threads` threads each add 1 to a shared counter `iters`
 *   times, taking the lock around each increment (100 x 100,000 as in the
 *   classic exercise). The threads are started first and released together
 *   from a barrier; the clock runs from the first thread's start to the last
 *   thread's finish (bench_span_t).
 *   ns_per_op is the wall time divided by threads x iters. The counter must
 *   come out exact, or the program fails. The "atomic" impl replaces the lock
 *   with atomic_fetch_add (relaxed): the floor for this job. Target: weft at
 *   most 0.8x pthread's time (barging and spinning before parking keep the
 *   lock on one core for many increments; glibc's default mutex parks sooner).
 *
 * Sizes: --iters (uncontended, default 10M), --threads (100), --per-thread
 * (100,000). Threads are plain pthreads: what is measured is the lock.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <weft/sync.h>

#include "bench.h"

/* ---- uncontended -------------------------------------------------------- */

struct uncontended {
    long long iters;
};

static double weft_uncontended(void *arg)
{
    struct uncontended *u = arg;
    weft_mutex_t m = WEFT_MUTEX_INIT;
    int64_t t0 = bench_now();
    for (long long i = 0; i < u->iters; i++) {
        weft_mutex_lock(&m);
        weft_mutex_unlock(&m);
    }
    int64_t t1 = bench_now();
    if (weft_mutex_destroy(&m) != 0)
        bench_die("weft mutex left locked", 0);
    return (double)(t1 - t0) / (double)u->iters;
}

static double pthread_uncontended(void *arg)
{
    struct uncontended *u = arg;
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    int64_t t0 = bench_now();
    for (long long i = 0; i < u->iters; i++) {
        pthread_mutex_lock(&m);
        pthread_mutex_unlock(&m);
    }
    int64_t t1 = bench_now();
    if (pthread_mutex_destroy(&m) != 0)
        bench_die("pthread mutex left locked", 0);
    return (double)(t1 - t0) / (double)u->iters;
}

/* ---- the contended counter --------------------------------------------- */

enum impl { IMPL_WEFT, IMPL_PTHREAD, IMPL_ATOMIC };

struct counter {
    enum impl impl;
    long long threads, per_thread;
    pthread_barrier_t start;
    bench_span_t span;
    weft_mutex_t wm;
    pthread_mutex_t pm;
    /* The counter sits on its own cache line, away from the locks' words,
     * as a careful program would put it. */
    _Alignas(64) long long value;
    _Alignas(64) _Atomic long long avalue;
};

static void *counter_worker(void *arg)
{
    struct counter *c = arg;
    long long n = c->per_thread;
    pthread_barrier_wait(&c->start);
    bench_span_begin(&c->span);
    switch (c->impl) {
    case IMPL_WEFT:
        for (long long i = 0; i < n; i++) {
            weft_mutex_lock(&c->wm);
            c->value++;
            weft_mutex_unlock(&c->wm);
        }
        break;
    case IMPL_PTHREAD:
        for (long long i = 0; i < n; i++) {
            pthread_mutex_lock(&c->pm);
            c->value++;
            pthread_mutex_unlock(&c->pm);
        }
        break;
    case IMPL_ATOMIC:
        for (long long i = 0; i < n; i++)
            atomic_fetch_add_explicit(&c->avalue, 1, memory_order_relaxed);
        break;
    }
    bench_span_end(&c->span);
    return NULL;
}

static double counter_run(void *arg)
{
    struct counter *c = arg;
    size_t nt = (size_t)c->threads;
    pthread_t *tids = calloc(nt, sizeof *tids);
    if (!tids)
        bench_die("out of memory", 0);
    c->value = 0;
    atomic_store(&c->avalue, 0);
    weft_mutex_init(&c->wm);
    pthread_mutex_init(&c->pm, NULL);
    bench_span_reset(&c->span);
    pthread_barrier_init(&c->start, NULL, (unsigned)nt);
    for (size_t i = 0; i < nt; i++) {
        int r = pthread_create(&tids[i], NULL, counter_worker, c);
        if (r)
            bench_die("pthread_create", r);
    }
    for (size_t i = 0; i < nt; i++)
        pthread_join(tids[i], NULL);
    pthread_barrier_destroy(&c->start);
    free(tids);
    long long want = c->threads * c->per_thread;
    long long got = c->impl == IMPL_ATOMIC ? atomic_load(&c->avalue) : c->value;
    if (got != want)
        bench_die("counter lost increments", want - got);
    if (weft_mutex_destroy(&c->wm) != 0 || pthread_mutex_destroy(&c->pm) != 0)
        bench_die("mutex left locked", 0);
    return bench_span_ns(&c->span) / (double)want;
}

int main(int argc, char **argv)
{
    bench_init(argc, argv);

    struct uncontended u = {.iters = bench_size("iters", 10000000, 100000)};
    /* Warm up (page in, settle the frequency) before the first measurement. */
    struct uncontended warm = {.iters = u.iters / 10 + 1};
    weft_uncontended(&warm);
    pthread_uncontended(&warm);
    bench_compare("mutex_uncontended", BENCH_PARAMS({"iters", u.iters}), "ns_per_op", false,
                  (const bench_case_t[]){{"weft", weft_uncontended, &u},
                                         {"pthread", pthread_uncontended, &u}},
                  2);

    static struct counter c[3];
    long long threads = bench_size("threads", 100, 8);
    long long per_thread = bench_size("per-thread", 100000, 2000);
    const enum impl impls[3] = {IMPL_WEFT, IMPL_PTHREAD, IMPL_ATOMIC};
    for (int i = 0; i < 3; i++) {
        c[i].impl = impls[i];
        c[i].threads = threads;
        c[i].per_thread = per_thread;
    }
    bench_compare("mutex_counter", BENCH_PARAMS({"threads", threads}, {"per_thread", per_thread}),
                  "ns_per_op", false,
                  (const bench_case_t[]){{"weft", counter_run, &c[0]},
                                         {"pthread", counter_run, &c[1]},
                                         {"atomic", counter_run, &c[2]}},
                  3);
    return 0;
}
