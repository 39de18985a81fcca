// tbb_pool.cpp - the oneTBB peers of the pool benchmarks (bench_fib.c,
// bench_sum.c, bench_submit.c, bench_idle.c, bench_sort.c): the same
// workloads, sizes and options, the same bench names, impl "tbb" (and
// "std_sort"). Built only when oneTBB is found (bench/CMakeLists.txt).
//
// Thread counts: tbb::global_control(max_allowed_parallelism, w) lets w
// threads work, the calling thread included (it joins the arena when it
// waits), as weft's w workers do while the caller sleeps in the wait.
//
// --only=fib,sum,submit,idle,sort runs only those parts (default: all).
#include <tbb/blocked_range.h>
#include <tbb/global_control.h>
#include <tbb/parallel_reduce.h>
#include <tbb/parallel_sort.h>
#include <tbb/task_arena.h>
#include <tbb/task_group.h>

#include <algorithm>
#include <atomic>
#include <future>
#include <vector>

#include "bench.h"
#include "bench_pool.h"

static int g_workers;

// ---- fib -----------------------------------------------------------------

static long serial_fib(int n)
{
    return n < 2 ? n : serial_fib(n - 1) + serial_fib(n - 2);
}

static long tbb_fib(int n)
{
    if (n < 2)
        return n;
    long x = 0, y;
    tbb::task_group g;
    g.run([&] { x = tbb_fib(n - 1); });
    y = tbb_fib(n - 2);
    g.wait();
    return x + y;
}

static double run_fib(void *arg)
{
    int n = *static_cast<int *>(arg);
    int64_t t0 = bench_now();
    long v = tbb_fib(n);
    double s = (double)(bench_now() - t0) / 1e9;
    if (v != bench_fib_value(n))
        bench_die("tbb fib result", v);
    return s;
}

static double run_serial_fib(void *arg)
{
    int n = *static_cast<int *>(arg);
    int64_t t0 = bench_now();
    long v = serial_fib(n);
    double s = (double)(bench_now() - t0) / 1e9;
    if (v != bench_fib_value(n))
        bench_die("serial fib result", v);
    return s;
}

static void fib_bench()
{
    int n = (int)bench_size("fib-n", 32, 20);
    double calls = (double)bench_fib_calls(n);
    double ts = bench_repeat(run_serial_fib, &n, false);
    double t1, tp;
    {
        tbb::global_control gc(tbb::global_control::max_allowed_parallelism, 1);
        run_fib(&n);
        t1 = bench_repeat(run_fib, &n, false);
    }
    {
        tbb::global_control gc(tbb::global_control::max_allowed_parallelism, g_workers);
        run_fib(&n);
        tp = bench_repeat(run_fib, &n, false);
    }
    bench_fib_json("fib_1worker", "tbb", n, 1, t1, calls, t1 / ts, ts / t1);
    bench_fib_json("fib", "tbb", n, g_workers, tp, calls, t1 / ts, ts / tp);
}

// ---- sum -------------------------------------------------------------------

static double run_sum(void *arg)
{
    long long n = *static_cast<long long *>(arg);
    int64_t t0 = bench_now();
    double s = tbb::parallel_reduce(
        tbb::blocked_range<long long>(0, n), 0.0,
        [](const tbb::blocked_range<long long> &r, double acc) {
            for (long long i = r.begin(); i < r.end(); i++)
                acc += BENCH_SUM_VALUE(i);
            return acc;
        },
        [](double a, double b) { return a + b; });
    double sec = (double)(bench_now() - t0) / 1e9;
    if (s != bench_sum_expected(n))
        bench_die("tbb sum result", (long long)s);
    return sec;
}

static void sum_bench()
{
    long long n = bench_size("sum-n", 200000000, 100000);
    tbb::global_control gc(tbb::global_control::max_allowed_parallelism, g_workers);
    run_sum(&n);
    double t = bench_repeat(run_sum, &n, false);
    // The serial time comes from bench_sum.c; here the speedup field is
    // relative to this program's own one-thread run.
    double t1;
    {
        tbb::global_control one(tbb::global_control::max_allowed_parallelism, 1);
        t1 = bench_repeat(run_sum, &n, false);
    }
    bench_speedup_json("par_sum", "tbb", "n", n, g_workers, t, t1);
}

// ---- submit + wait latency, throughput ---------------------------------------

struct lat {
    long long iters;
    tbb::task_arena *arena;
};

// task_group.run + wait from the main thread: what a TBB user writes. The
// waiting thread joins the arena and usually runs the task itself.
static double run_latency_tg(void *arg)
{
    lat *a = static_cast<lat *>(arg);
    std::atomic<long long> ran{0};
    int64_t t0 = bench_now();
    for (long long i = 0; i < a->iters; i++) {
        tbb::task_group g;
        g.run([&] { ran.fetch_add(1, std::memory_order_relaxed); });
        g.wait();
    }
    double ns = (double)(bench_now() - t0) / (double)a->iters;
    if (ran.load() != a->iters)
        bench_die("tbb latency count", ran.load());
    return ns;
}

// arena.enqueue + a std::future: the task runs on a worker thread, as a
// task submitted to weft's pool from outside does.
static double run_latency_enqueue(void *arg)
{
    lat *a = static_cast<lat *>(arg);
    long long ran = 0;
    int64_t t0 = bench_now();
    for (long long i = 0; i < a->iters; i++) {
        std::promise<void> p;
        std::future<void> f = p.get_future();
        a->arena->enqueue([&] {
            ran++;
            p.set_value();
        });
        f.wait();
    }
    double ns = (double)(bench_now() - t0) / (double)a->iters;
    if (ran != a->iters)
        bench_die("tbb enqueue count", ran);
    return ns;
}

static double run_throughput(void *arg)
{
    long long n = *static_cast<long long *>(arg);
    std::atomic<long long> ran{0};
    int64_t t0 = bench_now();
    tbb::task_group g;
    for (long long i = 0; i < n; i++)
        g.run([&] { ran.fetch_add(1, std::memory_order_relaxed); });
    g.wait();
    double ns = (double)(bench_now() - t0) / (double)n;
    if (ran.load() != n)
        bench_die("tbb throughput count", ran.load());
    return ns;
}

static void submit_bench()
{
    long long iters = bench_size("latency-iters", 100000, 1000);
    long long tasks = bench_size("tasks", 1000000, 10000);
    // BENCH_PARAMS is C only (a compound literal): named arrays in C++.
    const bench_kv_t lat_params[] = {{"iters", iters}, {"workers", g_workers}, {nullptr, 0}};
    const bench_kv_t thr_params[] = {{"tasks", tasks}, {"workers", g_workers}, {nullptr, 0}};
    {
        tbb::global_control gc(tbb::global_control::max_allowed_parallelism, g_workers);
        lat a = {iters, nullptr};
        run_latency_tg(&a);
        bench_json("submit_wait_latency", "tbb", lat_params, "ns_per_op",
                   bench_repeat(run_latency_tg, &a, false));
        run_throughput(&tasks);
        bench_json("submit_throughput", "tbb", thr_params, "ns_per_op",
                   bench_repeat(run_throughput, &tasks, false));
    }
    {
        // g_workers worker threads serve the arena; main only enqueues.
        tbb::global_control gc(tbb::global_control::max_allowed_parallelism, g_workers + 1);
        tbb::task_arena arena(g_workers, 0);
        lat a = {iters, &arena};
        run_latency_enqueue(&a);
        bench_json("submit_wait_latency", "tbb_enqueue", lat_params, "ns_per_op",
                   bench_repeat(run_latency_enqueue, &a, false));
    }
}

// ---- idle CPU -----------------------------------------------------------------

static double run_idle(void *arg)
{
    long long ms = *static_cast<long long *>(arg);
    // Wake the workers with a little work, then let them go idle.
    std::atomic<long long> ran{0};
    tbb::task_group g;
    for (int i = 0; i < 64; i++)
        g.run([&] { ran.fetch_add(1, std::memory_order_relaxed); });
    g.wait();
    double c0 = bench_cpu_seconds();
    bench_sleep_ms(ms);
    return bench_cpu_seconds() - c0;
}

static void idle_bench()
{
    long long ms = bench_size("idle-ms", 1000, 100);
    tbb::global_control gc(tbb::global_control::max_allowed_parallelism, g_workers);
    bench_idle_json("tbb", g_workers, ms, bench_repeat(run_idle, &ms, false));
}

// ---- sort ------------------------------------------------------------------------

struct sortarg {
    std::vector<int64_t> *v;
    bool parallel;
};

static double run_sort(void *arg)
{
    sortarg *a = static_cast<sortarg *>(arg);
    std::vector<int64_t> &v = *a->v;
    bench_sort_fill(v.data(), (long long)v.size(), 42);
    int64_t t0 = bench_now();
    if (a->parallel)
        tbb::parallel_sort(v.begin(), v.end());
    else
        std::sort(v.begin(), v.end());
    double s = (double)(bench_now() - t0) / 1e9;
    if (!bench_sort_check(v.data(), (long long)v.size(), 42))
        bench_die("sort result", 0);
    return s;
}

static void sort_bench()
{
    long long n = bench_size("sort-n", 10000000, 10000);
    std::vector<int64_t> v((size_t)n);
    tbb::global_control gc(tbb::global_control::max_allowed_parallelism, g_workers);
    sortarg seq = {&v, false}, par = {&v, true};
    double ts = bench_repeat(run_sort, &seq, false);
    double tp = bench_repeat(run_sort, &par, false);
    bench_speedup_json("par_sort", "std_sort", "n", n, g_workers, ts, ts);
    bench_speedup_json("par_sort", "tbb", "n", n, g_workers, tp, ts);
}

int main(int argc, char **argv)
{
    bench_init(argc, argv);
    g_workers = (int)bench_size("workers", 2, 2);
    if (bench_pool_wanted("fib"))
        fib_bench();
    if (bench_pool_wanted("sum"))
        sum_bench();
    if (bench_pool_wanted("submit"))
        submit_bench();
    if (bench_pool_wanted("idle"))
        idle_bench();
    if (bench_pool_wanted("sort"))
        sort_bench();
    return 0;
}
