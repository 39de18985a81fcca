/*
 * bench_idle.c - what an idle pool costs: a pool of --workers workers (the
 * default: 2, and also 8, past the core count) runs a little work, then has
 * nothing to do for --idle-ms (default 1000) while the main thread sleeps.
 *
 * bench pool_idle_cpu: the process's CPU time during the sleep
 * (CLOCK_PROCESS_CPUTIME_ID, all threads), in seconds, and as a percentage
 * of one core (extra field core_percent). The idle workers' searching
 * (a few microseconds of spinning before they park) falls before the
 * sleep's first millisecond; after that they should use nothing.
 *   Peer: tbb_pool.cpp (TBB's workers after the same burst of work).
 *
 * Target (docs/bench.md): under 1% of a core, i.e. under 0.01 s of CPU
 * time per idle second.
 */
#include <weft/pool.h>

#include "bench.h"
#include "bench_pool.h"

struct run {
    weft_pool_t *pool;
    long long ms;
};

static int nothing(void *arg)
{
    (void)arg;
    return 0;
}

static double run_idle(void *arg)
{
    struct run *r = arg;
    /* Wake every worker with a burst of small tasks, then let them idle. */
    weft_group_t g;
    weft_group_init(&g, r->pool);
    for (int i = 0; i < 64; i++)
        if (weft_group_spawn(&g, nothing, NULL) != 0)
            bench_die("weft_group_spawn", i);
    if (weft_group_wait(&g) != 0)
        bench_die("weft_group_wait", 0);
    double c0 = bench_cpu_seconds();
    bench_sleep_ms(r->ms);
    return bench_cpu_seconds() - c0;
}

static void measure(int workers, long long ms)
{
    weft_pool_t *p;
    weft_pool_opts_t o = {.workers = workers, .name = "idle"};
    if (weft_pool_create(&p, &o) != 0)
        bench_die("weft_pool_create", workers);
    struct run r = {p, ms};
    bench_idle_json("weft", workers, ms, bench_repeat(run_idle, &r, false));
    weft_pool_free(p);
}

int main(int argc, char **argv)
{
    bench_init(argc, argv);
    long long ms = bench_size("idle-ms", 1000, 100);
    int workers = (int)bench_size("workers", 2, 2);
    measure(workers, ms);
    if (workers != 8)
        measure(8, ms);
    return 0;
}
