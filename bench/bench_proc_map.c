/*
 * bench_proc_map.c - process pool map throughput: x -> x*x over 100,000
 * integers with 2 worker processes, at chunk size 1 and 1000.
 *
 * impls (unit req_per_s = tasks per second, higher is better):
 *   weft         weft_proc_map (shared-memory queue and rings, futex and
 *                eventfd wake-ups)
 *   fork_pipes   the floor: a plain C pool of 2 forked workers, a request
 *                pipe and a result pipe each, one write() per task (one per
 *                chunk at chunk size 1000), up to 64 tasks (16 KiB) in
 *                flight per worker
 *   python_pool  multiprocessing.Pool(2).map(f, range(n), chunksize)
 *   python_ppe   concurrent.futures.ProcessPoolExecutor(2).map(...)
 *                (the Python peers run bench/proc_peers.py with python3
 *                if it is installed; skipped with a note otherwise)
 * Targets (issue 5): weft at chunk size 1 >= 50x python_pool and >= 2.5x
 * fork_pipes.
 *
 * Sizes: --n (100,000), --workers (2). Every result is checked.
 *
 * bench-needs: src/proc
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>
#include <weft.h>

#include "bench.h"

struct cfg {
    long long n, workers, chunk;
    int64_t *in, *out;
    weft_proc_pool_t *pool;
};

static int square(weft_proc_task_t *t, const void *a, size_t len)
{
    int64_t x;
    if (len != sizeof x)
        return -EINVAL;
    memcpy(&x, a, sizeof x);
    x *= x;
    return weft_proc_reply(t, &x, sizeof x);
}

static void check(struct cfg *c, const char *who)
{
    for (long long i = 0; i < c->n; i++)
        if (c->out[i] != c->in[i] * c->in[i])
            bench_die(who, i);
}

static double run_weft(void *arg)
{
    struct cfg *c = arg;
    memset(c->out, 0, (size_t)c->n * 8);
    int64_t t0 = bench_now();
    int rc = weft_proc_map(c->pool, square, c->in, 8, (size_t)c->n, c->out, 8, NULL,
                           (size_t)c->chunk);
    int64_t t1 = bench_now();
    if (rc)
        bench_die("weft_proc_map failed", rc);
    check(c, "weft: wrong result");
    return (double)c->n / ((double)(t1 - t0) * 1e-9);
}

/* ---- the fork+pipes floor -------------------------------------------------------- */

static ssize_t full_io(int fd, void *buf, size_t n, bool wr)
{
    size_t done = 0;
    while (done < n) {
        ssize_t r = wr ? write(fd, (char *)buf + done, n - done) : read(fd, (char *)buf + done, n - done);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        done += (size_t)r;
    }
    return (ssize_t)done;
}

/* A request: index of the first item, count, then count items. The result:
 * first, count, then count squares. */
static void pipe_worker(int rfd, int wfd, int64_t *buf)
{
    /* buf was allocated before fork: the parent runs other threads (the
     * weft pool's dispatcher), so the child calls nothing but read/write. */
    for (;;) {
        if (full_io(rfd, buf, 16, false) < 0)
            _exit(0);
        int64_t k = buf[1];
        if (full_io(rfd, buf + 2, (size_t)k * 8, false) < 0)
            _exit(1);
        for (int64_t i = 0; i < k; i++)
            buf[2 + i] *= buf[2 + i];
        if (full_io(wfd, buf, (size_t)(k + 2) * 8, true) < 0)
            _exit(1);
    }
}

static double run_pipes(void *arg)
{
    struct cfg *c = arg;
    int W = (int)c->workers;
    int req[64][2], res[64][2];
    pid_t pid[64];
    int64_t *wbuf = malloc((size_t)(c->chunk + 2) * 8);
    int64_t t0 = bench_now();
    for (int w = 0; w < W; w++) {
        if (pipe(req[w]) || pipe(res[w]))
            bench_die("pipe", errno);
        pid[w] = fork();
        if (pid[w] == 0) {
            for (int k = 0; k <= w; k++) {
                close(req[k][1]);
                close(res[k][0]);
            }
            pipe_worker(req[w][0], res[w][1], wbuf);
        }
        close(req[w][0]);
        close(res[w][1]);
    }
    memset(c->out, 0, (size_t)c->n * 8);
    long long next = 0, done = 0;
    int inflight[64] = {0};
    int64_t *msg = malloc((size_t)(c->chunk + 2) * 8);
    int64_t *rbuf = malloc((size_t)(c->chunk + 2) * 8);
    /* In flight per worker: at most 64 tasks and about 16 KiB, so that
     * neither pipe (64 KiB) can fill while the other side waits. */
    int limit = (int)(16384 / ((c->chunk + 2) * 8));
    limit = limit < 1 ? 1 : limit > 64 ? 64 : limit;
    while (done < c->n) {
        for (int w = 0; w < W; w++)
            while (inflight[w] < limit && next < c->n) {
                long long k = c->chunk < c->n - next ? c->chunk : c->n - next;
                msg[0] = next;
                msg[1] = k;
                memcpy(msg + 2, c->in + next, (size_t)k * 8);
                if (full_io(req[w][1], msg, (size_t)(k + 2) * 8, true) < 0)
                    bench_die("pipe write", errno);
                next += k;
                inflight[w]++;
            }
        struct pollfd pf[64];
        for (int w = 0; w < W; w++)
            pf[w] = (struct pollfd){res[w][0], POLLIN, 0};
        poll(pf, (nfds_t)W, -1);
        for (int w = 0; w < W; w++) {
            if (!pf[w].revents)
                continue;
            /* Read every result already there. */
            do {
                if (full_io(res[w][0], rbuf, 16, false) < 0)
                    bench_die("pipe read", errno);
                if (full_io(res[w][0], rbuf + 2, (size_t)rbuf[1] * 8, false) < 0)
                    bench_die("pipe read", errno);
                memcpy(c->out + rbuf[0], rbuf + 2, (size_t)rbuf[1] * 8);
                done += rbuf[1];
                inflight[w]--;
                pf[w].revents = 0;
            } while (inflight[w] > 0 && poll(&pf[w], 1, 0) == 1);
        }
    }
    int64_t t1 = bench_now();
    for (int w = 0; w < W; w++) {
        close(req[w][1]);
        close(res[w][0]);
        waitpid(pid[w], NULL, 0);
    }
    free(msg);
    free(rbuf);
    free(wbuf);
    check(c, "fork_pipes: wrong result");
    /* Starting the workers is counted, as it is not for weft's pool (made
     * once); it is a few hundred microseconds. */
    return (double)c->n / ((double)(t1 - t0) * 1e-9);
}

static void run_python(long long n, long long workers)
{
    /* bench/proc_peers.py beside this file. */
    char script[4096];
    snprintf(script, sizeof script, "%s", __FILE__);
    char *slash = strrchr(script, '/');
    if (!slash) {
        fprintf(stderr, "note: cannot locate bench/proc_peers.py: Python peers skipped\n");
        return;
    }
    snprintf(slash + 1, sizeof script - (size_t)(slash + 1 - script), "proc_peers.py");
    if (access(script, R_OK) != 0 || system("command -v python3 >/dev/null 2>&1") != 0) {
        fprintf(stderr, "note: python3 or %s missing: Python peers skipped\n", script);
        return;
    }
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "python3 '%s' --n=%lld --workers=%lld --runs=%d%s%s", script, n,
             workers, bench_runs(), bench_tiny() ? " --tiny" : "",
             bench_best_ ? " --stat=best" : "");
    fflush(stdout);
    if (system(cmd) != 0)
        bench_die("the Python peers failed", 0);
}

int main(int argc, char **argv)
{
    /* First, while single-threaded (bench_init starts a thread). */
    int rc = weft_proc_init();
    if (rc)
        bench_die("weft_proc_init", rc);
    bench_init(argc, argv);
    struct cfg c;
    c.n = bench_size("n", 100000, 2000);
    c.workers = bench_size("workers", 2, 2);
    if (c.workers < 1 || c.workers > 64)
        bench_die("--workers must be 1..64", c.workers);
    c.in = malloc((size_t)c.n * 8);
    c.out = malloc((size_t)c.n * 8);
    for (long long i = 0; i < c.n; i++)
        c.in[i] = i;
    weft_proc_opts_t o = {.workers = (int)c.workers};
    rc = weft_proc_pool_create(&c.pool, &o);
    if (rc)
        bench_die("weft_proc_pool_create", rc);
    long long chunks[2] = {1, 1000};
    for (int k = 0; k < 2; k++) {
        c.chunk = chunks[k];
        const bench_kv_t *params =
            BENCH_PARAMS({"n", c.n}, {"workers", c.workers}, {"chunksize", c.chunk});
        double w = bench_repeat(run_weft, &c, true);
        bench_json("proc_map_square", "weft", params, "req_per_s", w);
        double p = bench_repeat(run_pipes, &c, true);
        bench_json("proc_map_square", "fork_pipes", params, "req_per_s", p);
        fprintf(stderr, "  chunksize %lld: weft %.0f tasks/s, fork+pipes %.0f tasks/s (%.1fx)\n",
                c.chunk, w, p, w / p);
    }
    weft_proc_pool_free(c.pool);
    weft_proc_fini();
    run_python(c.n, c.workers);
    free(c.in);
    free(c.out);
    return 0;
}
