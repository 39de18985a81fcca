/*
 * bench_co.c - coroutines on the loop: spawning many (each yields once and
 * finishes), and a ping-pong through unbuffered weft channels between two
 * coroutines of one loop, with two OS threads on the same channels as the
 * peer in the same run. (Go goroutines and Python asyncio peers: not yet.)
 *
 * bench-needs: src/loop
 */
#include <weft.h>

#include "bench.h"

static long long n_spawn, n_pp;

static int yield_once(void *arg, void **result)
{
    (void)arg;
    (void)result;
    weft_co_yield();
    return 0;
}

static int spawn_main(void *arg, void **result)
{
    (void)result;
    double *ns = arg;
    int64_t t0 = bench_now();
    /* Spawn in batches: a parked task costs no stack, but a task that has
     * run once holds one until it finishes. */
    const long long batch = 10000;
    for (long long i = 0; i < n_spawn; i += batch) {
        for (long long k = i; k < i + batch && k < n_spawn; k++)
            if (weft_co_spawn(NULL, yield_once, NULL, "y", 16 * 1024) != 0)
                bench_die("spawn", k);
        weft_co_sleep(0); /* let them all run and finish */
        weft_co_yield();
        weft_co_yield();
    }
    *ns = (double)(bench_now() - t0) / (double)n_spawn;
    return 0;
}

static double run_spawn(void *arg)
{
    (void)arg;
    double ns = 0;
    weft_loop_stats_t st;
    weft_loop_opts_t o = {.stats = &st};
    if (weft_loop_run(spawn_main, &ns, &o) != 0 || st.tasks_finished != (uint64_t)n_spawn + 1)
        bench_die("spawn count", (long long)st.tasks_finished);
    return ns;
}

struct pp {
    weft_chan_t *a, *b;
};

static int ponger(void *arg, void **result)
{
    (void)result;
    struct pp *p = arg;
    long v;
    while (weft_chan_recv(p->a, &v) == 0) {
        v++;
        weft_chan_send(p->b, &v);
    }
    return 0;
}

static long pinger(struct pp *p)
{
    long v = 0;
    for (long long i = 0; i < n_pp; i++) {
        weft_chan_send(p->a, &v);
        weft_chan_recv(p->b, &v);
    }
    weft_chan_close(p->a);
    return v;
}

static int pp_main(void *arg, void **result)
{
    (void)result;
    weft_task_t *t;
    if (weft_co_spawn(&t, ponger, arg, "ponger", 0) != 0)
        bench_die("spawn", 0);
    if (pinger(arg) != n_pp)
        bench_die("ping-pong count", 0);
    weft_co_await(t, NULL);
    weft_task_release(t);
    return 0;
}

static void pp_make(struct pp *p)
{
    if (weft_chan_create(&p->a, sizeof(long), 0) || weft_chan_create(&p->b, sizeof(long), 0))
        bench_die("chan", 0);
}

static void pp_free(struct pp *p)
{
    weft_chan_release(p->a);
    weft_chan_release(p->b);
}

static double run_pp_co(void *arg)
{
    (void)arg;
    struct pp p;
    pp_make(&p);
    int64_t t0 = bench_now();
    if (weft_loop_run(pp_main, &p, NULL) != 0)
        bench_die("loop", 0);
    double ns = (double)(bench_now() - t0) / (double)n_pp;
    pp_free(&p);
    return ns;
}

static void *ponger_thread(void *arg)
{
    ponger(arg, NULL);
    return NULL;
}

static double run_pp_threads(void *arg)
{
    (void)arg;
    struct pp p;
    pp_make(&p);
    pthread_t th;
    pthread_create(&th, NULL, ponger_thread, &p);
    int64_t t0 = bench_now();
    if (pinger(&p) != n_pp)
        bench_die("ping-pong count", 0);
    double ns = (double)(bench_now() - t0) / (double)n_pp;
    pthread_join(th, NULL);
    pp_free(&p);
    return ns;
}

int main(int argc, char **argv)
{
    bench_init(argc, argv);
    n_spawn = bench_size("spawn", 1000000, 10000);
    n_pp = bench_size("pingpong", 1000000, 10000);
    bench_json("co_spawn", "weft", BENCH_PARAMS({"n", n_spawn}), "ns_per_op",
               bench_repeat(run_spawn, NULL, false));
    bench_json("chan_pingpong_co", "weft_co", BENCH_PARAMS({"iters", n_pp}), "ns_per_op",
               bench_repeat(run_pp_co, NULL, false));
    bench_json("chan_pingpong_co", "weft_threads", BENCH_PARAMS({"iters", n_pp}), "ns_per_op",
               bench_repeat(run_pp_threads, NULL, false));
    return 0;
}
