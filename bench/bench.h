/*
 * bench.h - the little that every benchmark in bench/ shares: a clock, sizes
 * from the command line or the environment, repeated runs summarised as a
 * median (or the best), and one JSON line per result.
 *
 * A benchmark is a program. main calls bench_init(argc, argv) first, reads
 * its sizes with bench_size(), and either measures weft and its peers with
 * bench_compare() (runs interleaved, one JSON line per implementation) or
 * one implementation with bench_repeat() and prints it with bench_json().
 * Every line a
 * benchmark prints to stdout is one JSON object:
 *
 *   {"bench": "mutex_uncontended", "impl": "weft",
 *    "params": {"iters": 10000000, "stat": "median"}, "ns_per_op": 12.3, "runs": 5,
 *    "steal": 0.021}
 *
 * (on one line). "steal" is the share of the machine's CPU time that a
 * virtual machine's host held back since the previous line (or the start):
 * the eighth number of /proc/stat's cpu line over all of them, 0 where it
 * cannot be read; on a busy host every figure stretches with it, peers'
 * alike. Notes for people go to stderr. bench/run.sh collects the
 * lines, bench/report.py turns them into a table of ratios.
 *
 * Options, each also an environment variable (the option wins):
 *   --tiny          WEFT_BENCH_TINY=1   one run at a tiny size: CI checks that
 *                                       the benchmarks still work, in seconds
 *   --runs=N        WEFT_BENCH_RUNS=N   measured runs per result (default 5)
 *   --stat=S        WEFT_BENCH_STAT=S   "median" (default) or "best"
 *   --verbose       WEFT_BENCH_VERBOSE=1  every run's value on stderr (spread)
 *   --NAME=V        WEFT_BENCH_NAME=V   a size, read by bench_size("name", ...)
 *
 * A peer in another language can be measured inside bench_compare too: its
 * case's run function calls bench_external(), which runs the peer's program
 * once and reads the value from the JSON line it prints.
 *
 * The header is self-contained (static functions, libc and pthreads only) so
 * that peers which do not link weft (OpenMP, C++) can use it as well.
 */
#ifndef WEFT_BENCH_H
#define WEFT_BENCH_H

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "steal.h"

#if defined(__GNUC__)
#define BENCH_UNUSED __attribute__((unused))
#define BENCH_NORETURN __attribute__((noreturn))
#else
#define BENCH_UNUSED
#define BENCH_NORETURN
#endif

#define BENCH_MAX_RUNS 101

static int bench_argc_;
static char **bench_argv_;
static bool bench_tiny_;
static int bench_runs_ = 5;
static bool bench_best_; /* report the best run instead of the median */
static bool bench_verbose_; /* print every run's value to stderr */

/* Nanoseconds on CLOCK_MONOTONIC (the clock weft_now() reads). */
static BENCH_UNUSED int64_t bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/*
 * The span of a multi-threaded run, measured by the workers themselves: each
 * calls bench_span_begin right after the start barrier and bench_span_end
 * when its work is done; the span runs from the earliest begin to the latest
 * end. The main thread's own clock would include the time it waits to be
 * scheduled after the barrier releases (on a loaded machine the workers can
 * finish before main even reads the clock).
 */
typedef struct bench_span {
    int64_t start, end; /* accessed with __atomic builtins (C and C++ alike) */
} bench_span_t;

static BENCH_UNUSED void bench_span_reset(bench_span_t *s)
{
    __atomic_store_n(&s->start, INT64_MAX, __ATOMIC_RELAXED);
    __atomic_store_n(&s->end, INT64_MIN, __ATOMIC_RELAXED);
}

static BENCH_UNUSED void bench_span_begin(bench_span_t *s)
{
    int64_t now = bench_now(), old = __atomic_load_n(&s->start, __ATOMIC_RELAXED);
    while (now < old &&
           !__atomic_compare_exchange_n(&s->start, &old, now, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
}

static BENCH_UNUSED void bench_span_end(bench_span_t *s)
{
    int64_t now = bench_now(), old = __atomic_load_n(&s->end, __ATOMIC_RELAXED);
    while (now > old &&
           !__atomic_compare_exchange_n(&s->end, &old, now, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
}

/* Nanoseconds from the first begin to the last end; call after joining. */
static BENCH_UNUSED double bench_span_ns(const bench_span_t *s)
{
    return (double)(__atomic_load_n(&s->end, __ATOMIC_RELAXED) -
                    __atomic_load_n(&s->start, __ATOMIC_RELAXED));
}

/* Stop the program with a message: a benchmark whose result is wrong (a
 * count that does not add up, a call that failed) must not print a number. */
static BENCH_UNUSED BENCH_NORETURN void bench_die(const char *what, long long detail)
{
    fprintf(stderr, "bench: FAILED: %s (%lld)\n", what, detail);
    exit(1);
}

/* The value of option --name=V, else of $WEFT_BENCH_NAME, else NULL. */
static BENCH_UNUSED const char *bench_opt_(const char *name)
{
    size_t n = strlen(name);
    for (int i = 1; i < bench_argc_; i++) {
        const char *a = bench_argv_[i];
        if (a[0] == '-' && a[1] == '-' && strncmp(a + 2, name, n) == 0 && a[2 + n] == '=')
            return a + 3 + n;
    }
    char env[128] = "WEFT_BENCH_";
    size_t k = strlen(env);
    for (size_t i = 0; name[i] && k + 1 < sizeof env; i++)
        env[k++] = (char)toupper((unsigned char)(name[i] == '-' ? '_' : name[i]));
    env[k] = '\0';
    const char *v = getenv(env);
    return v && *v ? v : NULL;
}

static BENCH_UNUSED long long bench_parse_(const char *name, const char *v)
{
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    /* Accept a k/M/G suffix: --items=10M. */
    if (*end == 'k' || *end == 'K')
        x *= 1000, end++;
    else if (*end == 'M')
        x *= 1000000, end++;
    else if (*end == 'G')
        x *= 1000000000, end++;
    if (errno || *end || x <= 0) {
        fprintf(stderr, "bench: bad value '%s' for %s (a positive integer)\n", v, name);
        exit(2);
    }
    return x;
}

static void *bench_nothing_(void *arg) { return arg; }

/* The steal reading at the previous JSON line (bench_json). */
static steal_sample_t bench_steal_at_;

/* The steal share since the previous mark, and a new mark. */
static double bench_steal_mark_(void)
{
    steal_sample_t now = steal_sample();
    double share = steal_share(bench_steal_at_, now, 1);
    if (now.ok)
        bench_steal_at_ = now;
    return share;
}

/*
 * Parse the common options. Call first.
 *
 * It also starts and joins one thread. glibc notices that a process has
 * never had a second thread and then takes a pthread mutex without atomic
 * instructions (3-5 ns instead of ~17 here); every program that needs a lock
 * has threads, so the benchmarks measure the multi-threaded case.
 */
static BENCH_UNUSED void bench_init(int argc, char **argv)
{
    pthread_t thread;
    if (pthread_create(&thread, NULL, bench_nothing_, NULL) == 0)
        pthread_join(thread, NULL);
    bench_steal_mark_();
    bench_argc_ = argc;
    bench_argv_ = argv;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--tiny") == 0)
            bench_tiny_ = true;
        else if (strcmp(argv[i], "--verbose") == 0)
            bench_verbose_ = true;
        else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fprintf(stderr, "usage: %s [--tiny] [--verbose] [--runs=N] [--stat=median|best] [--SIZE=N]...\n"
                            "(see bench/bench.h and docs/bench.md)\n", argv[0]);
            exit(0);
        } else if (strncmp(argv[i], "--", 2) != 0 || !strchr(argv[i], '=')) {
            fprintf(stderr, "bench: unknown argument '%s'\n", argv[i]);
            exit(2);
        }
    }
    const char *t = getenv("WEFT_BENCH_TINY");
    if (t && *t && strcmp(t, "0") != 0)
        bench_tiny_ = true;
    const char *vb = getenv("WEFT_BENCH_VERBOSE");
    if (vb && *vb && strcmp(vb, "0") != 0)
        bench_verbose_ = true;
    const char *r = bench_opt_("runs");
    if (r) {
        long long n = bench_parse_("runs", r);
        bench_runs_ = n > BENCH_MAX_RUNS ? BENCH_MAX_RUNS : (int)n;
    }
    if (bench_tiny_)
        bench_runs_ = 1;
    const char *s = bench_opt_("stat");
    if (s) {
        if (strcmp(s, "best") == 0)
            bench_best_ = true;
        else if (strcmp(s, "median") != 0) {
            fprintf(stderr, "bench: --stat must be median or best\n");
            exit(2);
        }
    }
}

static BENCH_UNUSED bool bench_tiny(void) { return bench_tiny_; }
static BENCH_UNUSED int bench_runs(void) { return bench_runs_; }

/* A size: --name=V or $WEFT_BENCH_NAME if given, else tiny_value under
 * --tiny, else value. */
static BENCH_UNUSED long long bench_size(const char *name, long long value, long long tiny_value)
{
    const char *v = bench_opt_(name);
    if (v)
        return bench_parse_(name, v);
    return bench_tiny_ ? tiny_value : value;
}

static int bench_cmp_(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median (or best) of n values; sorts v. */
static BENCH_UNUSED double bench_summary_(double *v, int n, bool higher_is_better, const char *label)
{
    qsort(v, (size_t)n, sizeof v[0], bench_cmp_);
    if (bench_verbose_) {
        fprintf(stderr, "  %s runs (sorted):", label ? label : "");
        for (int i = 0; i < n; i++)
            fprintf(stderr, " %.4g", v[i]);
        fputc('\n', stderr);
    }
    if (bench_best_)
        return higher_is_better ? v[n - 1] : v[0];
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/*
 * Run fn(arg) bench_runs() times; each call measures one run and returns its
 * result (ns per op, seconds, ...). Returns the median of the runs, or the
 * best when --stat=best; higher_is_better says which end is best (true for
 * rates such as req_per_s).
 */
static BENCH_UNUSED double bench_repeat(double (*fn)(void *arg), void *arg, bool higher_is_better)
{
    double v[BENCH_MAX_RUNS];
    int n = bench_runs_;
    for (int i = 0; i < n; i++)
        v[i] = fn(arg);
    return bench_summary_(v, n, higher_is_better, NULL);
}

/* One parameter of a result: an integer size. */
typedef struct bench_kv {
    const char *key;
    long long value;
} bench_kv_t;

/* The parameters of a result, for bench_json: BENCH_PARAMS({"iters", n},
 * {"threads", t}). In C the array lives until the end of the enclosing
 * block; C++ compilers accept it as an extension but destroy it at the end
 * of the full expression, so in a C++ peer pass it straight to bench_json. */
#define BENCH_PARAMS(...) ((const bench_kv_t[]){__VA_ARGS__, {NULL, 0}})

/*
 * Print one result as a JSON line on stdout:
 *   bench   what is measured ("mutex_uncontended"), the same for every impl
 *   impl    who is measured ("weft", "pthread", "atomic", ...)
 *   params  the sizes (BENCH_PARAMS), to which "stat" is added
 *   unit    "ns_per_op", "seconds" or "req_per_s"
 *   value   the summarised result (bench_repeat)
 * Names are printed as given: keep them to letters, digits and '_'.
 */
static void bench_json_steal_(const char *bench, const char *impl, const bench_kv_t *params,
                              const char *unit, double value, double steal)
{
    printf("{\"bench\": \"%s\", \"impl\": \"%s\", \"params\": {", bench, impl);
    for (const bench_kv_t *p = params; p && p->key; p++)
        printf("\"%s\": %lld, ", p->key, p->value);
    printf("\"stat\": \"%s\"}, \"%s\": %.4g, \"runs\": %d, \"steal\": %.3f}\n",
           bench_best_ ? "best" : "median", unit, value, bench_runs_, steal);
    fflush(stdout);
}

static BENCH_UNUSED void bench_json(const char *bench, const char *impl, const bench_kv_t *params,
                                    const char *unit, double value)
{
    bench_json_steal_(bench, impl, params, unit, value, bench_steal_mark_());
}

/* One implementation in a bench_compare. */
typedef struct bench_case {
    const char *impl;         /* its name in the "impl" field */
    double (*fn)(void *arg);  /* one measured run, as for bench_repeat */
    void *arg;
} bench_case_t;

#define BENCH_MAX_CASES 16

/*
 * Measure n implementations of one benchmark and print a JSON line for each
 * (bench_json). The runs are interleaved: the first run of every case, then
 * the second of every case, and so on, so that a burst of load from
 * elsewhere on a shared machine hits all of them alike rather than the one
 * that happened to be running.
 */
static BENCH_UNUSED void bench_compare(const char *bench, const bench_kv_t *params, const char *unit,
                                       bool higher_is_better, const bench_case_t *cases, size_t n)
{
    static double v[BENCH_MAX_CASES][BENCH_MAX_RUNS];
    if (n > BENCH_MAX_CASES)
        bench_die("bench_compare: too many cases", (long long)n);
    for (int r = 0; r < bench_runs_; r++)
        for (size_t i = 0; i < n; i++)
            v[i][r] = cases[i].fn(cases[i].arg);
    /* The runs were interleaved: one steal share for all their lines. */
    double steal = bench_steal_mark_();
    for (size_t i = 0; i < n; i++)
        bench_json_steal_(bench, cases[i].impl, params, unit,
                          bench_summary_(v[i], bench_runs_, higher_is_better, cases[i].impl),
                          steal);
}

#ifdef __cplusplus
extern "C" char **environ;
#else
extern char **environ;
#endif

/* In a JSON line, the text after "key" and its colon, or NULL. */
static BENCH_UNUSED const char *bench_json_field_(const char *line, const char *key)
{
    size_t n = strlen(key);
    for (const char *p = strchr(line, '"'); p; p = strchr(p + 1, '"')) {
        if (strncmp(p + 1, key, n) != 0 || p[1 + n] != '"')
            continue;
        const char *q = p + 2 + n;
        while (*q == ' ')
            q++;
        if (*q != ':')
            continue;
        q++;
        while (*q == ' ')
            q++;
        return q;
    }
    return NULL;
}

/*
 * Run an external peer once and return the value it reports: argv[0] is
 * the program's path (started with posix_spawn, no shell; it inherits the
 * environment and stderr), argv ends with NULL. The peer prints JSON lines
 * as bench_json does; the result is the field `unit` ("ns_per_op", ...) of
 * the first line whose "bench" is `bench`. Stops the program (bench_die)
 * if the peer cannot be started, fails, or prints no such line.
 *
 * Meant for the run function of a bench_compare case, so that a peer in
 * another language (Go) runs interleaved with weft: pass it --runs=1 and
 * the same sizes, so that the one value is one run at weft's size.
 */
static BENCH_UNUSED double bench_external(const char *const argv[], const char *bench, const char *unit)
{
    char msg[512];
    int fd[2];
    if (pipe(fd) != 0)
        bench_die("bench_external: pipe", errno);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addclose(&fa, fd[0]);
    posix_spawn_file_actions_adddup2(&fa, fd[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&fa, fd[1]);
    fflush(stdout);
    fflush(stderr);
    pid_t pid;
    int err = posix_spawn(&pid, argv[0], &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fd[1]);
    if (err != 0) {
        close(fd[0]);
        snprintf(msg, sizeof msg, "bench_external: cannot start %s: %s", argv[0], strerror(err));
        bench_die(msg, err);
    }

    /* All of its stdout, NUL-terminated. */
    size_t len = 0, cap = 4096;
    char *out = (char *)malloc(cap);
    for (;;) {
        if (out && len + 1 == cap)
            out = (char *)realloc(out, cap *= 2);
        if (!out)
            bench_die("bench_external: out of memory", (long long)cap);
        ssize_t r = read(fd[0], out + len, cap - len - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            bench_die("bench_external: read", errno);
        if (r == 0)
            break;
        len += (size_t)r;
    }
    out[len] = '\0';
    close(fd[0]);

    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            bench_die("bench_external: waitpid", errno);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        bool sig = WIFSIGNALED(status);
        snprintf(msg, sizeof msg, "bench_external: %s %s %d", argv[0],
                 sig ? "was killed by signal" : "exited with status",
                 sig ? WTERMSIG(status) : WEXITSTATUS(status));
        bench_die(msg, sig ? WTERMSIG(status) : WEXITSTATUS(status));
    }

    for (char *line = out, *next; *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        else
            next = line + strlen(line);
        const char *b = line[0] == '{' ? bench_json_field_(line, "bench") : NULL;
        size_t n = strlen(bench);
        if (!b || b[0] != '"' || strncmp(b + 1, bench, n) != 0 || b[1 + n] != '"')
            continue;
        const char *v = bench_json_field_(line, unit);
        char *end;
        double x = v ? strtod(v, &end) : 0;
        if (!v || end == v) {
            snprintf(msg, sizeof msg, "bench_external: %s: no \"%s\" in its %s line", argv[0], unit,
                     bench);
            bench_die(msg, 0);
        }
        free(out);
        return x;
    }
    free(out);
    snprintf(msg, sizeof msg, "bench_external: %s printed no \"%s\" line", argv[0], bench);
    bench_die(msg, 0);
}

#endif /* WEFT_BENCH_H */
