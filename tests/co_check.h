/*
 * co_check.h - check.h for tests that CHECK inside coroutines: a failed
 * check never longjmps out of a coroutine's stack (that would abandon the
 * loop mid-switch); it records the failure and the coroutine goes on.
 */
#ifndef WEFT_TEST_CO_CHECK_H
#define WEFT_TEST_CO_CHECK_H

#include <stdatomic.h>
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

#endif
