/*
 * futex.c - Linux futex wait and wake with absolute monotonic deadlines.
 *
 * FUTEX_WAIT_BITSET takes an absolute timeout on CLOCK_MONOTONIC, so a
 * spurious wake-up does not stretch the wait: the caller loops with the same
 * deadline.
 */
#include "platform.h"

#include <errno.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int weft__futex_wait(_Atomic uint32_t *addr, uint32_t expected, weft_time_t deadline,
                     bool shared)
{
    struct timespec ts, *tsp = NULL;
    if (deadline != WEFT_FOREVER) {
        if (deadline < 0)
            deadline = 0;
        ts.tv_sec = (time_t)(deadline / 1000000000);
        ts.tv_nsec = (long)(deadline % 1000000000);
        tsp = &ts;
    }
    int op = FUTEX_WAIT_BITSET | (shared ? 0 : FUTEX_PRIVATE_FLAG);
    long r = syscall(SYS_futex, (uint32_t *)addr, op, expected, tsp, NULL,
                     FUTEX_BITSET_MATCH_ANY);
    if (r == 0)
        return 0;
    switch (errno) {
    case EAGAIN:
        return -EAGAIN;
    case ETIMEDOUT:
        return -ETIMEDOUT;
    case EINTR:
        return -EINTR;
    default:
        return -errno;
    }
}

int weft__futex_wake(_Atomic uint32_t *addr, int n, bool shared)
{
    int op = FUTEX_WAKE | (shared ? 0 : FUTEX_PRIVATE_FLAG);
    long r = syscall(SYS_futex, (uint32_t *)addr, op, n, NULL, NULL, 0);
    return r < 0 ? 0 : (int)r;
}
