/*
 * check.h - the test harness: typed assertions that print both values,
 * iteration counts from the environment, a start gate for stress threads.
 *
 * A test is a program: main runs its cases with RUN(fn) and ends with
 * `return check_done();`. A failed CHECK prints file:line, the expression
 * and both values, and the test exits 1 at the end (the first failure in a
 * case, on the main thread, also stops that case; outside a case, and on
 * other threads, a failure is counted and execution goes on). Exit code 77 means skipped: call
 * check_skip("reason").
 *
 * Stress sizes: check_iters("NAME", default) reads WEFT_TEST_SCALE (a
 * factor, default 1; CI may shrink with 0.1, a soak grow with 100) and an
 * override WEFT_TEST_<NAME>. Stress threads start together on a
 * pthread barrier (not weft's, which may be what is under test).
 */
#ifndef WEFT_TEST_CHECK_H
#define WEFT_TEST_CHECK_H

#include <dirent.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <setjmp.h>

static int check_failures;
static pthread_t check_main_thread;
static int check_in_case; /* a RUN case is running: its jmp_buf is live */
static int check_case_failed;
static const char *check_case_name = "?";
static jmp_buf check_case_jmp;

#define CHECK_FAIL_(...)                                                        \
    do {                                                                        \
        fprintf(stderr, "%s:%d: [%s] ", __FILE__, __LINE__, check_case_name);   \
        fprintf(stderr, __VA_ARGS__);                                           \
        fputc('\n', stderr);                                                    \
        check_failures++;                                                       \
        check_case_failed = 1;                                                  \
        if (check_in_case && pthread_equal(pthread_self(), check_main_thread))  \
            longjmp(check_case_jmp, 1);                                         \
    } while (0)

/* Plain truth. */
#define CHECK(cond)                                                             \
    do {                                                                        \
        if (!(cond))                                                            \
            CHECK_FAIL_("CHECK(%s) failed", #cond);                             \
    } while (0)

/* Integers (signed), printing both sides. */
#define CHECK_INT(a, op, b)                                                     \
    do {                                                                        \
        long long check_a_ = (long long)(a), check_b_ = (long long)(b);         \
        if (!(check_a_ op check_b_))                                            \
            CHECK_FAIL_("CHECK_INT(%s %s %s): %lld vs %lld", #a, #op, #b,       \
                        check_a_, check_b_);                                    \
    } while (0)

/* Unsigned 64-bit values. */
#define CHECK_U64(a, op, b)                                                     \
    do {                                                                        \
        unsigned long long check_a_ = (unsigned long long)(a),                  \
                           check_b_ = (unsigned long long)(b);                  \
        if (!(check_a_ op check_b_))                                            \
            CHECK_FAIL_("CHECK_U64(%s %s %s): %llu vs %llu", #a, #op, #b,       \
                        check_a_, check_b_);                                    \
    } while (0)

/* A weft return code equal to an expected code, printed by name. */
#define CHECK_RC(expr, expected)                                                \
    do {                                                                        \
        int check_r_ = (int)(expr), check_e_ = (int)(expected);                 \
        if (check_r_ != check_e_)                                               \
            CHECK_FAIL_("CHECK_RC(%s): got %d (%s), expected %d (%s)", #expr,   \
                        check_r_, weft_strerror(check_r_), check_e_,            \
                        weft_strerror(check_e_));                               \
    } while (0)

#define CHECK_OK(expr) CHECK_RC(expr, 0)

static inline void check_run(const char *name, void (*fn)(void))
{
    check_main_thread = pthread_self();
    check_case_name = name;
    check_case_failed = 0;
    /* A failed CHECK jumps back here only while the case runs; a CHECK in
     * main after the last RUN must not jump into this returned frame. */
    check_in_case = 1;
    if (setjmp(check_case_jmp) == 0)
        fn();
    check_in_case = 0;
    fprintf(stderr, "%s %s\n", check_case_failed ? "FAIL" : "ok  ", name);
}

#define RUN(fn) check_run(#fn, fn)

static inline int check_done(void)
{
    if (check_failures) {
        fprintf(stderr, "%d check(s) failed\n", check_failures);
        return 1;
    }
    return 0;
}

static inline void check_skip(const char *why)
{
    printf("SKIP: %s\n", why);
    fflush(stdout);
    exit(77);
}

/* Iteration count: default * WEFT_TEST_SCALE, or WEFT_TEST_<name> if set.
 * Never less than 1. */
static inline long check_iters(const char *name, long dflt)
{
    char var[128];
    snprintf(var, sizeof var, "WEFT_TEST_%s", name);
    const char *v = getenv(var);
    if (v && *v)
        return atol(v) > 0 ? atol(v) : 1;
    double scale = 1.0;
    const char *s = getenv("WEFT_TEST_SCALE");
    if (s && *s)
        scale = atof(s);
    long n = (long)((double)dflt * scale);
    return n > 0 ? n : 1;
}

/* Count open file descriptors of this process (for leak checks). */
static inline int check_fd_count(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the DIR's own descriptor */
}

/* Run nthreads copies of fn(arg, index) started together on a barrier, and
 * join them all. */
struct check_gate_arg_ {
    pthread_barrier_t *bar;
    void (*fn)(void *arg, int index);
    void *arg;
    int index;
};

static void *check_gate_main_(void *p)
{
    struct check_gate_arg_ *a = p;
    pthread_barrier_wait(a->bar);
    a->fn(a->arg, a->index);
    return NULL;
}

static inline void check_parallel(int nthreads, void (*fn)(void *arg, int index), void *arg)
{
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, (unsigned)nthreads);
    pthread_t *t = calloc((size_t)nthreads, sizeof *t);
    struct check_gate_arg_ *a = calloc((size_t)nthreads, sizeof *a);
    if (!t || !a) {
        fprintf(stderr, "check_parallel: out of memory\n");
        exit(1);
    }
    for (int i = 0; i < nthreads; i++) {
        a[i] = (struct check_gate_arg_){&bar, fn, arg, i};
        if (pthread_create(&t[i], NULL, check_gate_main_, &a[i]) != 0) {
            fprintf(stderr, "check_parallel: pthread_create failed\n");
            exit(1);
        }
    }
    for (int i = 0; i < nthreads; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&bar);
    free(t);
    free(a);
}

#endif /* WEFT_TEST_CHECK_H */
