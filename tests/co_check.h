/*
 * co_check.h - check.h for tests that CHECK inside coroutines: a failed
 * check never longjmps out of a coroutine's stack (that would abandon the
 * loop mid-switch); it records the failure and the coroutine goes on.
 */
#ifndef WEFT_TEST_CO_CHECK_H
#define WEFT_TEST_CO_CHECK_H

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <weft.h>

#include "check.h"

#undef CHECK_FAIL_
#define CHECK_FAIL_(...)                                                        \
    do {                                                                        \
        fprintf(stderr, "%s:%d: [%s] ", __FILE__, __LINE__, check_case_name);   \
        fprintf(stderr, __VA_ARGS__);                                           \
        fputc('\n', stderr);                                                    \
        check_failures++;                                                       \
        check_case_failed = 1;                                                  \
        if (pthread_equal(pthread_self(), check_main_thread) &&                 \
            !weft_co_current() && !weft_loop_current())                         \
            longjmp(check_case_jmp, 1);                                         \
    } while (0)

/*
 * Every loop test runs once per backend: ctest registers test_loop* and
 * test_co* twice, the second time as NAME_uring with WEFT_BACKEND=uring
 * (tests/CMakeLists.txt). Call this first in main: it returns the backend
 * the loops of this run must use ("epoll" or "io_uring"), and skips the
 * test (exit 77, with the reason) when io_uring was asked for but is not
 * built in or cannot start on this machine.
 */
#include "loop/backend.h"

static inline int co_check_backend_main_(void *arg, void **result)
{
    (void)arg;
    (void)result;
    return 0;
}

static inline const char *co_check_backend(void)
{
    const char *b = getenv("WEFT_BACKEND");
    const char *want = "epoll";
    if (b && (strcmp(b, "uring") == 0 || strcmp(b, "io_uring") == 0)) {
        char why[160];
        if (weft__backend_probe("uring", why, sizeof why) != 0)
            check_skip(why);
        fprintf(stderr, "backend io_uring\n");
        want = "io_uring";
    }
    /* The probe said it works: a loop of this run must then really get
     * it (a silent fallback would pass every _uring test on epoll). */
    weft_loop_stats_t st;
    weft_loop_opts_t o = {.stats = &st};
    if (weft_loop_run(co_check_backend_main_, NULL, &o) != 0 || !st.backend ||
        strcmp(st.backend, want) != 0) {
        fprintf(stderr, "FAIL: a loop ran on %s, not on %s (%s)\n",
                st.backend ? st.backend : "?", want, st.backend_note);
        exit(1);
    }
    return want;
}

#endif
