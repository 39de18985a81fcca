/*
 * bench_co.c - coroutines on the loop (issue 4's benchmarks):
 *
 *   co_spawn       spawn N coroutines that each yield once and finish; the
 *                  spawner yields after every 1,000 spawns (a cooperative
 *                  program lets what it spawned run, as Go's scheduler does
 *                  by itself), so about 1,000 are alive at a time. ns per
 *                  coroutine; peer: Go goroutines (bench/go), Python asyncio
 *                  (bench/bench_asyncio.py, smaller N).
 *   co_spawn_all   the same with all N spawned before any runs: N alive at
 *                  once (N stacks), the worst case for memory.
 *   co_spawn_rss / co_spawn_all_rss
 *                  peak RSS (getrusage ru_maxrss, KiB) of the process after
 *                  the runs of each (a high-water mark: co_spawn runs first).
 *   chan_pingpong_co
 *                  two coroutines of one loop bounce a long through two
 *                  unbuffered weft channels, ns per round trip; peers: Go
 *                  unbuffered channels, a pthread mutex+condvar pair, weft
 *                  channels between two OS threads. When WEFT_BENCH_GO
 *                  names the program bench/go builds (bench/run.sh sets
 *                  it), the Go peer is measured here too: each of its runs
 *                  is one run of that program (--only=chan_pingpong_co
 *                  --runs=1 at weft's size), interleaved with weft's runs
 *                  by bench_compare, and run.sh then skips it in the Go
 *                  program's own run. Without WEFT_BENCH_GO the Go line
 *                  comes from that run alone.
 *   timers         C coroutines each sleep K times for a random 0-50 us:
 *                  C*K timers armed and fired. ns of CPU (user+sys) per
 *                  timer; wall time per timer as a note. Peer: Go, the
 *                  same shape with goroutines and time.Sleep.
 *
 * Coroutine stacks are 16 KiB (stated as a parameter).
 *
 * bench-needs: src/loop
 */
#include <sys/resource.h>
#include <sys/stat.h>
#include <weft.h>

#include "bench.h"

#define STACK (16 * 1024)
#define BATCH 1000

static long long n_spawn, n_spawn_all, n_pp, n_tco, n_tk;

static long peak_rss_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static double cpu_ns(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e9 +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e3;
}

/* ---- spawn ----------------------------------------------------------------- */

static long long finished;

static int yield_once(void *arg, void **result)
{
    (void)arg;
    (void)result;
    weft_co_yield();
    finished++; /* one loop: no race */
    return 0;
}

struct spawn_arg {
    long long n;
    bool all;
};

static int spawn_main(void *arg, void **result)
{
    (void)result;
    struct spawn_arg *a = arg;
    finished = 0;
    for (long long i = 0; i < a->n; i++) {
        if (weft_co_spawn(NULL, yield_once, NULL, "y", STACK) != 0)
            bench_die("spawn", i);
        if (!a->all && (i + 1) % BATCH == 0)
            weft_co_yield(); /* let them start; they finish on our next yield */
    }
    while (finished < a->n)
        weft_co_yield();
    return 0;
}

static double run_spawn(void *arg)
{
    struct spawn_arg *a = arg;
    weft_loop_stats_t st;
    weft_loop_opts_t o = {.stats = &st};
    int64_t t0 = bench_now();
    if (weft_loop_run(spawn_main, a, &o) != 0 || st.tasks_finished != (uint64_t)a->n + 1 ||
        finished != a->n)
        bench_die("spawn count", (long long)st.tasks_finished);
    return (double)(bench_now() - t0) / (double)a->n;
}

/* ---- ping-pong ----------------------------------------------------------------- */

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

static double pp_ns;

static int pp_main(void *arg, void **result)
{
    (void)result;
    weft_task_t *t;
    if (weft_co_spawn(&t, ponger, arg, "ponger", 0) != 0)
        bench_die("spawn", 0);
    weft_co_yield(); /* the ponger waits in its first receive */
    int64_t t0 = bench_now();
    if (pinger(arg) != n_pp)
        bench_die("ping-pong count", 0);
    pp_ns = (double)(bench_now() - t0) / (double)n_pp;
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
    if (weft_loop_run(pp_main, &p, NULL) != 0)
        bench_die("loop", 0);
    pp_free(&p);
    return pp_ns;
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

/* A pthread mutex + condition variable pair: a turn variable handed back
 * and forth, the classic way two threads ping-pong without channels. */
struct cvpp {
    pthread_mutex_t m;
    pthread_cond_t c;
    long turn; /* even: the pinger's turn, odd: the ponger's */
    long v;
};

static void *cv_ponger(void *arg)
{
    struct cvpp *p = arg;
    pthread_mutex_lock(&p->m);
    for (long long i = 0; i < n_pp; i++) {
        while (!(p->turn & 1))
            pthread_cond_wait(&p->c, &p->m);
        p->v++;
        p->turn++;
        pthread_cond_signal(&p->c);
    }
    pthread_mutex_unlock(&p->m);
    return NULL;
}

static double run_pp_condvar(void *arg)
{
    (void)arg;
    struct cvpp p = {.turn = 0, .v = 0};
    pthread_mutex_init(&p.m, NULL);
    pthread_cond_init(&p.c, NULL);
    pthread_t th;
    pthread_create(&th, NULL, cv_ponger, &p);
    int64_t t0 = bench_now();
    pthread_mutex_lock(&p.m);
    for (long long i = 0; i < n_pp; i++) {
        p.turn++; /* odd: the ponger's */
        pthread_cond_signal(&p.c);
        while (p.turn & 1)
            pthread_cond_wait(&p.c, &p.m);
    }
    pthread_mutex_unlock(&p.m);
    double ns = (double)(bench_now() - t0) / (double)n_pp;
    pthread_join(th, NULL);
    if (p.v != n_pp)
        bench_die("condvar ping-pong count", p.v);
    pthread_cond_destroy(&p.c);
    pthread_mutex_destroy(&p.m);
    return ns;
}

/* The Go peer: the program bench/go builds, from WEFT_BENCH_GO, or NULL. */
static const char *go_peer;

static const char *go_peer_path(void)
{
    const char *p = getenv("WEFT_BENCH_GO");
    struct stat st;
    if (!p || !*p)
        return NULL;
    if (stat(p, &st) != 0 || !S_ISREG(st.st_mode) || access(p, X_OK) != 0) {
        fprintf(stderr, "note: WEFT_BENCH_GO=%s is not an executable file: chan_pingpong_co's "
                        "Go peer is left to the Go program's own run\n", p);
        return NULL;
    }
    return p;
}

/* One run of Go's chan_pingpong_co, in a process of its own, at weft's
 * size. --skip= overrides a WEFT_BENCH_SKIP in the environment. */
static double run_pp_go(void *arg)
{
    (void)arg;
    char size[64];
    snprintf(size, sizeof size, "--pingpong=%lld", n_pp);
    const char *argv[] = {go_peer, "--only=chan_pingpong_co", "--skip=", "--runs=1", "--quiet", size,
                          bench_tiny() ? "--tiny" : NULL, NULL};
    return bench_external(argv, "chan_pingpong_co", "ns_per_op");
}

/* ---- timers -------------------------------------------------------------------- */

static long long timers_fired;
static double timers_wall_ns;

static int sleeper(void *arg, void **result)
{
    (void)result;
    uint64_t x = (uint64_t)(uintptr_t)arg * 0x9e3779b97f4a7c15ull + 1;
    for (long long k = 0; k < n_tk; k++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        weft_time_t d = weft_now() + (weft_time_t)(x % 50000); /* 0-50 us */
        if (weft_co_sleep_until(d) != 0)
            bench_die("sleep", k);
        if (weft_now() < d)
            bench_die("timer fired early", k);
        timers_fired++;
    }
    return 0;
}

static int timers_main_wait(void *arg, void **result)
{
    (void)arg;
    (void)result;
    timers_fired = 0;
    weft_co_group_t *g;
    if (weft_co_group_create(&g) != 0)
        bench_die("group", 0);
    for (long long i = 0; i < n_tco; i++)
        if (weft_co_group_spawn(g, NULL, sleeper, (void *)(uintptr_t)(i + 1), "sleeper",
                                STACK) != 0)
            bench_die("spawn", i);
    if (weft_co_group_wait(g) != 0)
        bench_die("group wait", 0);
    weft_co_group_free(g);
    return 0;
}

static double run_timers_cpu(void *arg)
{
    (void)arg;
    double c0 = cpu_ns();
    int64_t t0 = bench_now();
    if (weft_loop_run(timers_main_wait, NULL, NULL) != 0)
        bench_die("loop", 0);
    timers_wall_ns = (double)(bench_now() - t0) / (double)(n_tco * n_tk);
    if (timers_fired != n_tco * n_tk)
        bench_die("timers fired", timers_fired);
    return (cpu_ns() - c0) / (double)(n_tco * n_tk);
}

int main(int argc, char **argv)
{
    bench_init(argc, argv);
    n_spawn = bench_size("spawn", 1000000, 10000);
    n_spawn_all = bench_size("spawn-all", 1000000, 10000);
    n_pp = bench_size("pingpong", 1000000, 10000);
    n_tco = bench_size("timer-coroutines", 1000, 10);
    n_tk = bench_size("timers-each", 1000, 10);

    /* Spawning first: ru_maxrss is a high-water mark. */
    struct spawn_arg sa = {n_spawn, false};
    bench_json("co_spawn", "weft", BENCH_PARAMS({"n", n_spawn}),
               "ns_per_op", bench_repeat(run_spawn, &sa, false));
    bench_json("co_spawn_rss", "weft", BENCH_PARAMS({"n", n_spawn}), "kib",
               (double)peak_rss_kib());
    struct spawn_arg sall = {n_spawn_all, true};
    bench_json("co_spawn_all", "weft",
               BENCH_PARAMS({"n", n_spawn_all}), "ns_per_op",
               bench_repeat(run_spawn, &sall, false));
    bench_json("co_spawn_all_rss", "weft", BENCH_PARAMS({"n", n_spawn_all}), "kib",
               (double)peak_rss_kib());

    /* Go right after weft_co: the pair compared with a target runs
     * closest in time. */
    go_peer = go_peer_path();
    bench_case_t pp[4] = {{"weft_co", run_pp_co, NULL}};
    size_t npp = 1;
    if (go_peer)
        pp[npp++] = (bench_case_t){"go", run_pp_go, NULL};
    pp[npp++] = (bench_case_t){"pthread_condvar", run_pp_condvar, NULL};
    pp[npp++] = (bench_case_t){"weft_threads", run_pp_threads, NULL};
    bench_compare("chan_pingpong_co", BENCH_PARAMS({"iters", n_pp}), "ns_per_op", false, pp, npp);

    double cpu = bench_repeat(run_timers_cpu, NULL, false);
    printf("{\"bench\": \"timers\", \"impl\": \"weft\", \"params\": {\"coroutines\": %lld, "
           "\"each\": %lld, \"stat\": \"%s\"}, \"ns_per_op\": %.4g, \"wall_ns_per_timer\": %.4g, "
           "\"runs\": %d, \"steal\": %.3f}\n",
           n_tco, n_tk, bench_best_ ? "best" : "median", cpu, timers_wall_ns, bench_runs(),
           bench_steal_mark_());
    fflush(stdout);
    return 0;
}
