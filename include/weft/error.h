/*
 * weft/error.h - the error convention.
 *
 * Every weft function that can fail returns an int: zero (or a non-negative
 * count) on success, a negative error code on failure. The codes are negated
 * errno values where one fits, and weft's own codes below otherwise:
 *
 *   -EINVAL     a bad argument: NULL handle, zero or absurd size, negative
 *               timeout or deadline. The object is left as it was.
 *   -EAGAIN     a _try call that would have had to block.
 *   -ETIMEDOUT  the deadline of an _until call passed.
 *   -EPIPE      the channel is closed.
 *   -ECANCELED  the operation or task was cancelled.
 *   -ENOMEM     out of memory; nothing was changed.
 *   -EPERM      the caller does not own what it tried to release.
 *   -EOVERFLOW  a counter would pass its bound (bounded semaphore released
 *               too often, wait group or latch counted below zero).
 *   -EBUSY      destroying an object that still has waiters or an owner.
 *   -EDEADLK    the call would wait for itself (relocking a plain mutex that
 *               the caller already holds, joining the calling thread).
 *
 * errno itself is never used as the channel for weft's errors.
 */
#ifndef WEFT_ERROR_H
#define WEFT_ERROR_H

#include <errno.h>
#include <weft/version.h>

#ifdef __cplusplus
extern "C" {
#endif

/* weft's own error codes, outside the errno range. */
enum {
    WEFT_EBROKEN = -1001,  /* the barrier is broken (aborted, reset or timed out) */
    WEFT_ECRASHED = -1002, /* the worker running the task died */
    WEFT_ETHREADED = -1003, /* the program already runs threads: no fork
                               server was started (weft_proc_init) and
                               forking now would not be safe */
    WEFT_EINITFAILED = -1004, /* a process-pool worker's initializer failed */
};

/*
 * weft_strerror - a short English description of an error code.
 *
 * err: a code returned by weft (negative), or 0. Positive values are treated
 * as errno values. Returns a static string; never NULL; thread-safe.
 */
WEFT_API const char *weft_strerror(int err);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_ERROR_H */
