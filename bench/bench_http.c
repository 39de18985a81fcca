/*
 * bench_http.c - HTTP/1.1 keep-alive "Hello, World!" under wrk, on
 * loopback: weft's coroutine server against a hand-written single-thread
 * epoll server (peers/epoll_http.c), libuv (peers/uv_http.c), Go net/http
 * (go/httpserver), Python asyncio and uvloop (peers/asyncio_http.py).
 *
 * Start every server on a free 127.0.0.1 port; then, in turns (run 1 of
 * every server, then run 2, ...), run `wrk -t1 -c100 -d5s --latency`
 * against each, reading the server's CPU time (utime + stime from
 * /proc/<pid>/stat) before and after; then stop them. Idle servers wait in
 * epoll and cost nothing meanwhile; each turn starts one server further
 * on. One JSON line per server: requests/s and latencies of its median
 * run by requests/s, and the median of its runs' CPU per request:
 *
 *   {"bench": "http_hello", "impl": "weft", "params": {"conns": 100, ...},
 *    "req_per_s": 123456, "p50_us": .., "p90_us": .., "p99_us": ..,
 *    "cpu_us_per_req": .., "requests": .., "errors": .., "runs": 1}
 *
 * The weft server runs once per loop backend that is available (impl
 * "weft" for epoll, "weft_io_uring"). A peer that is not available (no
 * libuv, no go, no python3 or no uvloop) is skipped with a note; without wrk
 * the whole benchmark is skipped with a note (exit 0, no lines).
 *
 * Options (bench.h): --tiny (wrk -c10 -d1s), --http_conns=N,
 * --http_seconds=S, --http_runs=N (default 1: each run is S seconds per
 * server; the median of N is printed). Servers bind 127.0.0.1 only and are
 * killed at the end.
 *
 * bench-needs: src/net
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <weft.h>

#include "bench.h"

#ifndef WEFT_BENCH_SRC
#define WEFT_BENCH_SRC "bench"
#endif

/* ---- the weft server (this program with --serve PORT) -------------------------- */

static const char RESPONSE[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                               "Content-Length: 13\r\n\r\nHello, World!";

static int conn(void *arg, void **result)
{
    (void)result;
    int fd = (int)(intptr_t)arg;
    char buf[4096];
    char out[sizeof RESPONSE * 32];
    size_t have = 0;
    for (;;) {
        ssize_t n = weft_net_read(fd, buf + have, sizeof buf - 1 - have);
        if (n <= 0)
            break;
        have += (size_t)n;
        buf[have] = '\0';
        size_t used = 0, nout = 0;
        char *end;
        while ((end = strstr(buf + used, "\r\n\r\n")) != NULL &&
               nout + sizeof RESPONSE < sizeof out) {
            used = (size_t)(end - buf) + 4;
            memcpy(out + nout, RESPONSE, sizeof RESPONSE - 1);
            nout += sizeof RESPONSE - 1;
        }
        if (nout && weft_net_write_all(fd, out, nout, NULL) < 0)
            break;
        memmove(buf, buf + used, have - used);
        have -= used;
        if (have == sizeof buf - 1)
            break;
    }
    weft_net_close(fd);
    return 0;
}

static int serve(void *arg, void **result)
{
    (void)result;
    weft_addr_t a;
    weft_addr_ip(&a, "127.0.0.1", (int)(intptr_t)arg);
    int lfd = weft_net_listen(&a, 0);
    if (lfd < 0)
        return lfd;
    /* Tell the driver we listen, and on which backend. */
    printf("ready %s\n", weft_loop_backend(weft_loop_current()));
    fflush(stdout);
    for (;;) {
        int c = weft_net_accept(lfd, NULL);
        if (c == -ECANCELED || c == -EPIPE || c == -EBADF)
            return 0; /* SIGINT (weft_loop_run cancels main), or the listener is gone */
        if (c < 0) {
            /* EMFILE and the like: let connections close, then try again
             * (a bare retry would spin). */
            if (weft_co_sleep(0.001) == -ECANCELED)
                return 0;
            continue;
        }
        if (weft_co_spawn(NULL, conn, (void *)(intptr_t)c, "http", 32 * 1024) != 0)
            weft_net_close(c);
    }
}

/* ---- the driver ------------------------------------------------------------------ */

static char exe_dir[PATH_MAX];

static int free_port(void)
{
    weft_addr_t a;
    weft_addr_ip(&a, "127.0.0.1", 0);
    int fd = weft_net_listen(&a, 1);
    if (fd < 0)
        return -1;
    weft_net_local_addr(fd, &a);
    int p = weft_addr_port(&a);
    weft_net_close(fd);
    return p;
}

static bool can_connect(int port)
{
    weft_addr_t a;
    weft_addr_ip(&a, "127.0.0.1", port);
    int fd = weft_net_connect_until(&a, weft_deadline_in(0.2));
    if (fd < 0)
        return false;
    weft_net_close(fd);
    return true;
}

/* Start argv with env_kv ("NAME=V" or NULL) set; stdout to *out_fd if not
 * NULL (a pipe), else to /dev/null. Returns the pid or -1. */
static pid_t start(char *const argv[], const char *env_kv, int *out_fd)
{
    int p[2] = {-1, -1};
    if (out_fd && pipe(p) != 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        if (env_kv)
            putenv((char *)env_kv);
        int devnull = open("/dev/null", O_RDWR);
        dup2(out_fd ? p[1] : devnull, 1);
        if (out_fd)
            close(p[0]);
        execvp(argv[0], argv);
        _exit(127);
    }
    if (out_fd) {
        close(p[1]);
        *out_fd = p[0];
    }
    return pid;
}

static void stop(pid_t pid)
{
    kill(pid, SIGTERM);
    for (int i = 0; i < 200; i++) {
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return;
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

/* utime + stime of pid, in seconds. */
static double cpu_of(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    if (!p)
        return -1;
    unsigned long long ut = 0, st = 0;
    /* Fields after ")": state(3) ... utime is field 14, stime 15. */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* A wrk latency figure ("123.45us", "1.20ms", "2.00s") in microseconds. */
static double to_us(const char *s)
{
    char *end;
    double v = strtod(s, &end);
    if (strncmp(end, "us", 2) == 0)
        return v;
    if (strncmp(end, "ms", 2) == 0)
        return v * 1e3;
    if (*end == 's')
        return v * 1e6;
    if (strncmp(end, "m", 1) == 0)
        return v * 60e6;
    return v;
}

struct result {
    double rps, p50, p75, p90, p99, cpu_us_per_req;
    double steal; /* the host's steal share during the run (bench.h) */
    long long requests, errors;
};

static int run_wrk(int port, int conns, int seconds, pid_t server, struct result *r)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "wrk -t1 -c%d -d%ds --latency http://127.0.0.1:%d/ 2>&1", conns,
             seconds, port);
    double c0 = cpu_of(server);
    bench_steal_mark_();
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    char line[512];
    memset(r, 0, sizeof *r);
    while (fgets(line, sizeof line, p)) {
        char pct[16], val[32];
        long long a, b, c, d;
        if (sscanf(line, " %15[0-9]%% %31s", pct, val) == 2) {
            int q = atoi(pct);
            double us = to_us(val);
            if (q == 50)
                r->p50 = us;
            else if (q == 75)
                r->p75 = us;
            else if (q == 90)
                r->p90 = us;
            else if (q == 99)
                r->p99 = us;
        } else if (sscanf(line, " %lld requests in", &a) == 1) {
            r->requests = a;
        } else if (sscanf(line, "Requests/sec: %lf", &r->rps) == 1) {
        } else if (sscanf(line, " Socket errors: connect %lld, read %lld, write %lld, timeout %lld",
                          &a, &b, &c, &d) == 4) {
            r->errors += a + b + c + d;
        } else if (sscanf(line, " Non-2xx or 3xx responses: %lld", &a) == 1) {
            r->errors += a;
        }
    }
    int st = pclose(p);
    double c1 = cpu_of(server);
    r->steal = bench_steal_mark_();
    if (st != 0 || r->requests <= 0)
        return -1;
    r->cpu_us_per_req = c0 >= 0 && c1 >= 0 ? (c1 - c0) * 1e6 / (double)r->requests : -1;
    return 0;
}

static int cmp_res(const void *a, const void *b)
{
    double x = ((const struct result *)a)->rps, y = ((const struct result *)b)->rps;
    return (x > y) - (x < y);
}

/* A started server and its results: res[0..ok) in the order measured,
 * and turn[i], the turn res[i] was measured in (a failed run leaves a gap). */
struct server {
    const char *impl;
    pid_t pid;
    int port;
    int ok;
    struct result res[BENCH_MAX_RUNS];
    int turn[BENCH_MAX_RUNS];
};
#define MAX_SERVERS 8
static struct server servers[MAX_SERVERS];
static int nservers;

/* Start a server (argv, or this program's weft server) and wait until it
 * listens; it is measured later, in turn with the others (see main). Names
 * are string literals. want_backend: for weft, the backend the server must
 * report. */
static void launch(const char *impl, char *const argv[], const char *env_kv, bool weft_server,
                   const char *want_backend, int port)
{
    int out = -1;
    pid_t pid = start(argv, env_kv, weft_server ? &out : NULL);
    if (pid < 0) {
        fprintf(stderr, "bench_http: %s: cannot start\n", impl);
        return;
    }
    bool ready = false;
    if (weft_server) {
        char line[64] = "";
        FILE *f = fdopen(out, "r");
        if (f && fgets(line, sizeof line, f)) {
            line[strcspn(line, "\n")] = '\0';
            if (strncmp(line, "ready ", 6) == 0 && strcmp(line + 6, want_backend) != 0) {
                fprintf(stderr, "bench_http: %s: backend %s not available (got %s): skipped\n",
                        impl, want_backend, line + 6);
                if (f)
                    fclose(f);
                stop(pid);
                return;
            }
            ready = strncmp(line, "ready ", 6) == 0;
        }
        if (f)
            fclose(f);
    }
    for (int i = 0; i < 500 && !ready; i++) {
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            fprintf(stderr, "bench_http: %s: the server exited at start: skipped\n", impl);
            return;
        }
        ready = can_connect(port);
        if (!ready)
            usleep(20000);
    }
    if (!ready) {
        fprintf(stderr, "bench_http: %s: the server did not start listening: skipped\n", impl);
        stop(pid);
        return;
    }
    if (nservers == MAX_SERVERS) {
        stop(pid);
        return;
    }
    servers[nservers++] = (struct server){.impl = impl, .pid = pid, .port = port};
}

static struct server *server_named(const char *impl)
{
    for (int k = 0; k < nservers; k++)
        if (strcmp(servers[k].impl, impl) == 0 && servers[k].ok)
            return &servers[k];
    return NULL;
}

/*
 * Paired comparison of a weft server with a peer, turn by turn: in each
 * turn both measured, the ratio weft/peer of CPU per request (cpu) or of
 * requests/s; their median into *median and the number of turns in which
 * weft met the target (cpu: at most the peer's; else at least) into
 * *wins. Returns the number of paired turns (0: no pair). Servers of one
 * turn run seconds apart, so this takes out the host's drift over minutes
 * that the per-server medians keep.
 */
/* The median of n > 0 values (sorts v). */
static double median_of(double *v, int n)
{
    qsort(v, (size_t)n, sizeof v[0], bench_cmp_);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int pair(const struct server *w, const struct server *peer, bool cpu, double *median,
                int *wins)
{
    double v[BENCH_MAX_RUNS];
    int n = 0;
    *wins = 0;
    for (int i = 0; i < w->ok; i++)
        for (int j = 0; j < peer->ok; j++) {
            if (peer->turn[j] != w->turn[i])
                continue;
            double a = cpu ? w->res[i].cpu_us_per_req : w->res[i].rps;
            double b = cpu ? peer->res[j].cpu_us_per_req : peer->res[j].rps;
            if (a <= 0 || b <= 0)
                continue;
            v[n++] = a / b;
            *wins += cpu ? a <= b : a >= b;
        }
    if (n)
        *median = median_of(v, n);
    return n;
}

/* For a weft server: its paired comparisons with the peers its targets
 * name (docs/bench.md), as JSON fields for its line into out, and one
 * line each on stderr. */
static void paired_notes(const struct server *sv, char *out, size_t cap)
{
    static const struct {
        const char *peer, *field;
        bool cpu;
    } targets[] = {{"epoll", "cpu_vs_epoll", true},
                   {"libuv", "rps_vs_libuv", false},
                   {"uvloop", "rps_vs_uvloop", false}};
    out[0] = '\0';
    if (strncmp(sv->impl, "weft", 4) != 0)
        return;
    size_t len = 0;
    for (size_t t = 0; t < sizeof targets / sizeof targets[0]; t++) {
        const struct server *peer = server_named(targets[t].peer);
        double median;
        int wins;
        int n = peer ? pair(sv, peer, targets[t].cpu, &median, &wins) : 0;
        if (!n || len >= cap)
            continue;
        len += (size_t)snprintf(out + len, cap - len,
                                ", \"%s_paired\": %.3f, \"%s_turns_met\": \"%d/%d\"",
                                targets[t].field, median, targets[t].field, wins, n);
        fprintf(stderr, "  %-14s paired with %-6s over %d turns: median %s ratio %.3f, "
                "target met in %d\n", sv->impl, targets[t].peer, n,
                targets[t].cpu ? "CPU/req" : "req/s", median, wins);
    }
}

/* Print one server's median run (by requests/s). */
static void report(struct server *sv, int conns, int seconds)
{
    if (!sv->ok) {
        fprintf(stderr, "bench_http: %s: wrk failed\n", sv->impl);
        return;
    }
    if (bench_verbose_) {
        fprintf(stderr, "  %s runs (in order):", sv->impl);
        for (int i = 0; i < sv->ok; i++)
            fprintf(stderr, " %.0f/%.2f", sv->res[i].rps, sv->res[i].cpu_us_per_req);
        fprintf(stderr, " (req/s / us CPU per request)\n");
    }
    /* CPU per request: its own median (not the median run's), the sharper
     * figure and the one a target is set on; and the median of the host's
     * steal share over this server's runs. */
    double cpu[BENCH_MAX_RUNS], stl[BENCH_MAX_RUNS];
    for (int i = 0; i < sv->ok; i++) {
        cpu[i] = sv->res[i].cpu_us_per_req;
        stl[i] = sv->res[i].steal;
    }
    double cpu_median = median_of(cpu, sv->ok), steal_median = median_of(stl, sv->ok);
    /* Requests/s and the latencies: the median run by requests/s (sorted
     * in a copy: pair() needs the runs in turn order). */
    struct result by_rps[BENCH_MAX_RUNS];
    memcpy(by_rps, sv->res, (size_t)sv->ok * sizeof by_rps[0]);
    qsort(by_rps, (size_t)sv->ok, sizeof by_rps[0], cmp_res);
    const struct result *m = &by_rps[sv->ok / 2];
    char paired[512];
    paired_notes(sv, paired, sizeof paired);
    printf("{\"bench\": \"http_hello\", \"impl\": \"%s\", \"params\": {\"conns\": %d, "
           "\"threads\": 1, \"seconds\": %d, \"stat\": \"median\"}, \"req_per_s\": %.0f, "
           "\"p50_us\": %.1f, \"p75_us\": %.1f, \"p90_us\": %.1f, \"p99_us\": %.1f, "
           "\"cpu_us_per_req\": %.2f, \"requests\": %lld, \"errors\": %lld%s, \"runs\": %d, "
           "\"steal\": %.3f}\n",
           sv->impl, conns, seconds, m->rps, m->p50, m->p75, m->p90, m->p99, cpu_median,
           m->requests, m->errors, paired, sv->ok, steal_median);
    fflush(stdout);
    fprintf(stderr, "  %-14s %9.0f req/s  p50 %7.1f us  p99 %8.1f us  %5.2f us CPU/req%s\n",
            sv->impl, m->rps, m->p50, m->p99, cpu_median, m->errors ? "  (errors!)" : "");
}

static bool have_cmd(const char *cmd)
{
    char buf[256];
    snprintf(buf, sizeof buf, "command -v %s >/dev/null 2>&1", cmd);
    return system(buf) == 0;
}

int main(int argc, char **argv)
{
    if (argc > 2 && strcmp(argv[1], "--serve") == 0) {
        signal(SIGPIPE, SIG_IGN);
        return weft_loop_run(serve, (void *)(intptr_t)atoi(argv[2]), NULL) == 0 ? 0 : 1;
    }
    bench_init(argc, argv);
    if (!have_cmd("wrk")) {
        fprintf(stderr, "note: wrk is not installed: bench_http skipped\n");
        return 0;
    }
    int conns = (int)bench_size("http_conns", 100, 10);
    int seconds = (int)bench_size("http_seconds", 5, 1);
    int runs = (int)bench_size("http_runs", 1, 1);
    if (runs < 1 || runs > BENCH_MAX_RUNS || conns < 1 || seconds < 1)
        bench_die("bad --http_* size", runs);

    ssize_t n = readlink("/proc/self/exe", exe_dir, sizeof exe_dir - 1);
    if (n <= 0)
        bench_die("readlink /proc/self/exe", n);
    exe_dir[n] = '\0';
    char self[PATH_MAX];
    snprintf(self, sizeof self, "%s", exe_dir);
    dirname(exe_dir);
    char port_s[16], path[PATH_MAX + 64];

    /* weft, on each backend. */
    static const char *const backends[][2] = {{"weft", "epoll"}, {"weft_io_uring", "io_uring"}};
    for (size_t i = 0; i < 2; i++) {
        int port = free_port();
        snprintf(port_s, sizeof port_s, "%d", port);
        char env[64];
        snprintf(env, sizeof env, "WEFT_BACKEND=%s", backends[i][1]);
        char *av[] = {self, "--serve", port_s, NULL};
        launch(backends[i][0], av, env, true, backends[i][1], port);
    }
    /* The hand-written epoll server and libuv. */
    const char *peers[][2] = {{"epoll", "epoll_http"}, {"libuv", "uv_http"}};
    for (size_t i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/peers/%s", exe_dir, peers[i][1]);
        if (access(path, X_OK) != 0) {
            fprintf(stderr, "note: %s not built: %s skipped\n", path, peers[i][0]);
            continue;
        }
        int port = free_port();
        snprintf(port_s, sizeof port_s, "%d", port);
        char *av[] = {path, port_s, NULL};
        launch(peers[i][0], av, NULL, false, NULL, port);
    }
    /* Go net/http, built from bench/go/httpserver (standard library only). */
    if (have_cmd("go")) {
        char cmd[3 * PATH_MAX];
        snprintf(path, sizeof path, "%s/peers/go_http", exe_dir);
        snprintf(cmd, sizeof cmd,
                 "cd '%s/go' && export GOPROXY=off GOFLAGS= GO111MODULE=on GOTOOLCHAIN=local && "
                 "{ [ -n \"$(go env GOCACHE 2>/dev/null)\" ] && [ \"$(go env GOCACHE)\" != off ] || "
                 "export GOCACHE='%s/go/cache'; } && go build -o '%s' ./httpserver",
                 WEFT_BENCH_SRC, exe_dir, path);
        if (system(cmd) == 0) {
            int port = free_port();
            snprintf(port_s, sizeof port_s, "%d", port);
            char *av[] = {path, port_s, NULL};
            launch("go", av, "GOMAXPROCS=1", false, NULL, port);
        } else {
            fprintf(stderr, "note: building bench/go/httpserver failed: go skipped\n");
        }
    } else {
        fprintf(stderr, "note: go is not installed: the Go peer is skipped\n");
    }
    /* Python asyncio, and uvloop where some python3 can import it. */
    snprintf(path, sizeof path, "%s/peers/asyncio_http.py", WEFT_BENCH_SRC);
    if (have_cmd("python3")) {
        int port = free_port();
        snprintf(port_s, sizeof port_s, "%d", port);
        char *av[] = {"python3", path, port_s, NULL};
        launch("asyncio", av, NULL, false, NULL, port);
        const char *py = NULL;
        if (system("python3 -c 'import uvloop' >/dev/null 2>&1") == 0)
            py = "python3";
        else if (system("/usr/bin/python3 -c 'import uvloop' >/dev/null 2>&1") == 0)
            py = "/usr/bin/python3";
        if (py) {
            port = free_port();
            snprintf(port_s, sizeof port_s, "%d", port);
            char *av2[] = {(char *)py, path, port_s, "--uvloop", NULL};
            launch("uvloop", av2, NULL, false, NULL, port);
        } else {
            fprintf(stderr, "note: uvloop is not importable: the uvloop peer is skipped\n");
        }
    } else {
        fprintf(stderr, "note: python3 is not installed: the asyncio peers are skipped\n");
    }
    /* Measure in turns: run r of every server, then run r + 1. The machine
     * drifts over minutes (other VMs on the host); taking each server's
     * runs back to back would put that drift between the servers. Each
     * turn starts one server further on, so that no server always follows
     * the same one (whose connections are still closing). */
    for (int r = 0; r < runs; r++)
        for (int j = 0; j < nservers; j++) {
            int k = (j + r) % nservers;
            struct server *sv = &servers[k];
            if (run_wrk(sv->port, conns, seconds, sv->pid, &sv->res[sv->ok]) == 0)
                sv->turn[sv->ok++] = r;
        }
    for (int k = 0; k < nservers; k++)
        stop(servers[k].pid);
    for (int k = 0; k < nservers; k++)
        report(&servers[k], conns, seconds);
    return 0;
}
