/*
 * bench_submit.c - the cost of handing work to the pool from a thread
 * outside it, on a pool of --workers (default 2).
 *
 * submit_wait_latency: one round trip, ns_per_op over --latency-iters
 *   (default 100,000): submit an empty task from the main thread, wait for
 *   its future, release it. The task runs on a worker: the round trip is a
 *   hand-off to another thread and back (a wake-up when the worker has
 *   gone to sleep).
 *     weft          weft_pool_submit + weft_future_wait + release
 *   Peers (tbb_pool.cpp): tbb (task_group run + wait from the main thread,
 *   which joins the arena and usually runs the task itself: no hand-off),
 *   tbb_enqueue (task_arena::enqueue + std::future: the task runs on a
 *   worker thread, the same hand-off as weft's).
 *
 * submit_throughput: ns_per_op for --tasks (default 1,000,000) empty tasks
 *   spawned into one task group, then one wait for them all.
 *     weft          spawned by the main thread, from outside the pool
 *                   (the injection queue)
 *     weft_inside   spawned by one pool task (its worker's own deque:
 *                   no lock, no allocation; what TBB's task_group.run from
 *                   the main thread does, as the main thread is an arena
 *                   thread in TBB)
 *   Peer: tbb (task_group run x tasks, then wait, from the main thread).
 */
#include <stdatomic.h>
#include <weft/pool.h>

#include "bench.h"
#include "bench_pool.h"

static _Atomic long long ran;

static int empty_task(void *arg, void **result)
{
    (void)arg;
    (void)result;
    atomic_fetch_add_explicit(&ran, 1, memory_order_relaxed);
    return 0;
}

static int empty_group_task(void *arg)
{
    (void)arg;
    atomic_fetch_add_explicit(&ran, 1, memory_order_relaxed);
    return 0;
}

struct run {
    weft_pool_t *pool;
    long long n;
};

static double run_latency(void *arg)
{
    struct run *r = arg;
    atomic_store(&ran, 0);
    int64_t t0 = bench_now();
    for (long long i = 0; i < r->n; i++) {
        weft_future_t *f;
        if (weft_pool_submit(r->pool, empty_task, NULL, &f) != 0)
            bench_die("weft_pool_submit", i);
        if (weft_future_wait(f) != 0 || weft_future_result(f, NULL) != 0)
            bench_die("weft_future_wait", i);
        weft_future_release(f);
    }
    double ns = (double)(bench_now() - t0) / (double)r->n;
    if (atomic_load(&ran) != r->n)
        bench_die("latency count", atomic_load(&ran));
    return ns;
}

static double run_throughput(void *arg)
{
    struct run *r = arg;
    atomic_store(&ran, 0);
    weft_group_t g;
    weft_group_init(&g, r->pool);
    int64_t t0 = bench_now();
    for (long long i = 0; i < r->n; i++)
        if (weft_group_spawn(&g, empty_group_task, NULL) != 0)
            bench_die("weft_group_spawn", i);
    if (weft_group_wait(&g) != 0)
        bench_die("weft_group_wait", 0);
    double ns = (double)(bench_now() - t0) / (double)r->n;
    if (atomic_load(&ran) != r->n)
        bench_die("throughput count", atomic_load(&ran));
    return ns;
}

static int spawner(void *arg)
{
    struct run *r = arg;
    weft_group_t g;
    weft_group_init(&g, NULL);
    for (long long i = 0; i < r->n; i++)
        if (weft_group_spawn(&g, empty_group_task, NULL) != 0)
            return -ENOMEM;
    return weft_group_wait(&g);
}

static double run_throughput_inside(void *arg)
{
    struct run *r = arg;
    atomic_store(&ran, 0);
    weft_group_t g;
    weft_group_init(&g, r->pool);
    int64_t t0 = bench_now();
    if (weft_group_spawn(&g, spawner, r) != 0 || weft_group_wait(&g) != 0)
        bench_die("weft inside spawn", 0);
    double ns = (double)(bench_now() - t0) / (double)r->n;
    if (atomic_load(&ran) != r->n)
        bench_die("inside throughput count", atomic_load(&ran));
    return ns;
}

int main(int argc, char **argv)
{
    bench_init(argc, argv);
    long long iters = bench_size("latency-iters", 100000, 1000);
    long long tasks = bench_size("tasks", 1000000, 10000);
    int workers = (int)bench_size("workers", 2, 2);
    weft_pool_t *p;
    weft_pool_opts_t o = {.workers = workers, .name = "submit"};
    if (weft_pool_create(&p, &o) != 0)
        bench_die("weft_pool_create", workers);
    struct run lat = {p, iters}, thr = {p, tasks};
    run_latency(&lat);
    bench_json("submit_wait_latency", "weft", BENCH_PARAMS({"iters", iters}, {"workers", workers}),
               "ns_per_op", bench_repeat(run_latency, &lat, false));
    run_throughput(&thr);
    bench_json("submit_throughput", "weft", BENCH_PARAMS({"tasks", tasks}, {"workers", workers}),
               "ns_per_op", bench_repeat(run_throughput, &thr, false));
    run_throughput_inside(&thr);
    bench_json("submit_throughput", "weft_inside",
               BENCH_PARAMS({"tasks", tasks}, {"workers", workers}), "ns_per_op",
               bench_repeat(run_throughput_inside, &thr, false));
    weft_pool_free(p);
    return 0;
}
