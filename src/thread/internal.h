/*
 * thread/internal.h - what the thread layer shares with the rest of libweft
 * and with the tests.
 */
#ifndef WEFT_THREAD_INTERNAL_H
#define WEFT_THREAD_INTERNAL_H

#include <stdatomic.h>

/*
 * Test seam: while positive, each weft_thread_start decrements it and fails
 * as if pthread_create had refused (EAGAIN), after the handle and attributes
 * were built, so that the error path's cleanup is exercised. 0 in
 * production; only tests set it.
 */
extern _Atomic int weft__thread_fail_create;

#endif /* WEFT_THREAD_INTERNAL_H */
