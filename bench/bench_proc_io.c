/*
 * bench_proc_io.c - moving a large buffer to a worker process and back, and
 * how long a crashed worker takes to be replaced.
 *
 * proc_roundtrip_1mib (ns_per_op: one round trip of --size bytes, default
 * 1 MiB, there and back; MB/s on stderr):
 *   weft_ring    weft_proc_submit of the bytes with 8 MiB rings, so that
 *                they travel inline through the argument ring and the
 *                result ring (copied at submit, into the ring, by the task
 *                into its reply, and out of the ring)
 *   weft_arena   the argument placed in the shared arena by the caller
 *                (weft_proc_buf_alloc, filled from the source buffer, passed
 *                with WEFT_PROC_ARG_SHARED: no copy by weft), the result
 *                written in place with weft_proc_reply_buf (into the arena,
 *                as it is larger than a quarter of the default 1 MiB ring)
 *   pipe         a forked worker that reads the bytes from a pipe and
 *                writes them back on another
 *
 * proc_crash_replace (ns_per_op per crash): from SIGKILL to a worker of a
 * 1-worker pool until a task submitted right after the kill has returned
 * its result from the replacement (reaping, fork, mapping, the new worker's
 * start and one task).
 *
 * bench-needs: src/proc
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>
#include <weft.h>

#include "bench.h"

struct cfg {
    long long size, iters;
    unsigned char *src, *dst;
    weft_proc_pool_t *ring_pool, *arena_pool, *one;
    int to[2], from[2];
};

static int echo(weft_proc_task_t *t, const void *a, size_t n)
{
    return weft_proc_reply(t, a, n);
}

static int echo_inplace(weft_proc_task_t *t, const void *a, size_t n)
{
    void *buf;
    int rc = weft_proc_reply_buf(t, n, &buf);
    if (rc == 0)
        memcpy(buf, a, n);
    return rc;
}

static int nothing(weft_proc_task_t *t, const void *a, size_t n)
{
    (void)t, (void)a, (void)n;
    return 0;
}

static void verify(struct cfg *c, const void *d, size_t len, const char *who)
{
    if (len != (size_t)c->size || memcmp(d, c->src, len) != 0)
        bench_die(who, (long long)len);
}

static double run_ring(void *arg)
{
    struct cfg *c = arg;
    int64_t t0 = bench_now();
    for (long long i = 0; i < c->iters; i++) {
        weft_future_t *f;
        int rc = weft_proc_submit(c->ring_pool, echo, c->src, (size_t)c->size, &f);
        const void *d;
        size_t len;
        if (rc == 0)
            rc = weft_proc_result(f, &d, &len);
        if (rc)
            bench_die("weft_ring: task failed", rc);
        if (i == 0)
            verify(c, d, len, "weft_ring: wrong bytes");
        weft_future_release(f);
    }
    return (double)(bench_now() - t0) / (double)c->iters;
}

static double run_arena(void *arg)
{
    struct cfg *c = arg;
    int64_t t0 = bench_now();
    for (long long i = 0; i < c->iters; i++) {
        void *buf;
        int rc = weft_proc_buf_alloc(c->arena_pool, (size_t)c->size, &buf);
        if (rc)
            bench_die("weft_proc_buf_alloc", rc);
        memcpy(buf, c->src, (size_t)c->size); /* producing the data in place */
        weft_future_t *f;
        rc = weft_proc_submit_ex(c->arena_pool, echo_inplace, buf, (size_t)c->size, 0,
                                 WEFT_PROC_ARG_SHARED, &f);
        const void *d;
        size_t len;
        if (rc == 0)
            rc = weft_proc_result(f, &d, &len);
        if (rc)
            bench_die("weft_arena: task failed", rc);
        if (i == 0)
            verify(c, d, len, "weft_arena: wrong bytes");
        weft_future_release(f);
    }
    return (double)(bench_now() - t0) / (double)c->iters;
}

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

static double run_pipe(void *arg)
{
    struct cfg *c = arg;
    int64_t t0 = bench_now();
    for (long long i = 0; i < c->iters; i++) {
        /* Write and read at once would need two threads or nonblocking
         * I/O: the worker echoes in 64 KiB pieces, and so do we. */
        size_t off = 0, piece = 65536;
        while (off < (size_t)c->size) {
            size_t k = (size_t)c->size - off < piece ? (size_t)c->size - off : piece;
            if (full_io(c->to[1], c->src + off, k, true) < 0 ||
                full_io(c->from[0], c->dst + off, k, false) < 0)
                bench_die("pipe round trip", errno);
            off += k;
        }
        if (i == 0)
            verify(c, c->dst, (size_t)c->size, "pipe: wrong bytes");
    }
    return (double)(bench_now() - t0) / (double)c->iters;
}

static double run_crash(void *arg)
{
    struct cfg *c = arg;
    long long n = c->iters < 20 ? c->iters : 20;
    int64_t total = 0;
    for (long long i = 0; i < n; i++) {
        /* Let the previous replacement finish starting. */
        weft_future_t *f;
        if (weft_proc_submit(c->one, nothing, NULL, 0, &f) || weft_proc_result(f, NULL, NULL))
            bench_die("warm-up task failed", 0);
        weft_future_release(f);
        /* The warm-up task can finish before the parent has taken the
         * replacement's "spawned" report; until then the slot shows no
         * live worker and the kill would say -ESRCH. Wait for the report
         * (at most ~5 s). */
        for (int w = 0; w < 5000 && weft_proc_worker_pid(c->one, 0) <= 0; w++)
            usleep(1000);
        int64_t t0 = bench_now();
        if (weft_proc_signal_worker(c->one, 0, SIGKILL) != 0)
            bench_die("kill", 0);
        int rc = weft_proc_submit(c->one, nothing, NULL, 0, &f);
        if (rc == 0)
            rc = weft_proc_result(f, NULL, NULL);
        total += bench_now() - t0;
        weft_future_release(f);
        /* The task may have been claimed by the dying worker (it was idle,
         * so rarely): then it failed with the crash, which is fine here. */
        if (rc && rc != WEFT_ECRASHED)
            bench_die("task after the kill failed", rc);
    }
    return (double)total / (double)n;
}

int main(int argc, char **argv)
{
    int rc = weft_proc_init();
    if (rc)
        bench_die("weft_proc_init", rc);
    /* The pipe worker is forked now, while single-threaded. */
    struct cfg c;
    if (pipe(c.to) || pipe(c.from))
        bench_die("pipe", errno);
    pid_t pw = fork();
    if (pw == 0) {
        close(c.to[1]);
        close(c.from[0]);
        static unsigned char buf[65536];
        for (;;) {
            ssize_t r = read(c.to[0], buf, sizeof buf);
            if (r <= 0)
                _exit(0);
            if (full_io(c.from[1], buf, (size_t)r, true) < 0)
                _exit(1);
        }
    }
    close(c.to[0]);
    close(c.from[1]);
    bench_init(argc, argv);
    c.size = bench_size("size", 1 << 20, 1 << 20);
    c.iters = bench_size("iters", 200, 5);
    c.src = malloc((size_t)c.size);
    c.dst = malloc((size_t)c.size);
    for (long long i = 0; i < c.size; i++)
        c.src[i] = (unsigned char)(i * 31 + 7);
    weft_proc_opts_t ro = {.workers = 1, .ring_size = (size_t)8 << 20};
    weft_proc_opts_t ao = {.workers = 1};
    if ((rc = weft_proc_pool_create(&c.ring_pool, &ro)) ||
        (rc = weft_proc_pool_create(&c.arena_pool, &ao)) ||
        (rc = weft_proc_pool_create(&c.one, &ao)))
        bench_die("weft_proc_pool_create", rc);

    const bench_kv_t *params = BENCH_PARAMS({"bytes", c.size}, {"iters", c.iters});
    struct {
        const char *name;
        double (*fn)(void *);
    } impls[] = {{"weft_ring", run_ring}, {"weft_arena", run_arena}, {"pipe", run_pipe}};
    for (int i = 0; i < 3; i++) {
        double ns = bench_repeat(impls[i].fn, &c, false);
        bench_json("proc_roundtrip_1mib", impls[i].name, params, "ns_per_op", ns);
        fprintf(stderr, "  %-10s %8.1f us per round trip, %6.0f MB/s each way\n", impls[i].name,
                ns / 1000, (double)c.size / (ns * 1e-9) / 1e6);
    }
    double crash = bench_repeat(run_crash, &c, false);
    bench_json("proc_crash_replace", "weft", BENCH_PARAMS({"workers", 1}), "ns_per_op", crash);
    fprintf(stderr, "  crash to replacement's first result: %.0f us\n", crash / 1000);

    weft_proc_pool_free(c.ring_pool);
    weft_proc_pool_free(c.arena_pool);
    weft_proc_pool_free(c.one);
    weft_proc_fini();
    close(c.to[1]);
    close(c.from[0]);
    waitpid(pw, NULL, 0);
    free(c.src);
    free(c.dst);
    return 0;
}
