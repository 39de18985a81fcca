/*
 * weft/time.h - monotonic time and deadlines.
 *
 * Every blocking call in weft has a twin ending in _until that takes an
 * absolute deadline on the monotonic clock, in nanoseconds (weft_time_t).
 * Python code thinks in timeouts; the helpers below turn a timeout into a
 * deadline, so `q.get(timeout=0.5)` becomes
 *
 *     weft_chan_recv_until(ch, &v, weft_deadline_in(0.5));
 *
 * A deadline that has already passed makes an _until call behave like its
 * _try twin (it still succeeds if it need not wait). A negative deadline is
 * invalid: the _until calls return -EINVAL for it. The helpers return
 * WEFT_DEADLINE_INVALID for a negative or NaN timeout, so a negative timeout
 * reaches the caller as -EINVAL rather than as "already expired".
 */
#ifndef WEFT_TIME_H
#define WEFT_TIME_H

#include <stdint.h>
#include <weft/version.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Nanoseconds on CLOCK_MONOTONIC. */
typedef int64_t weft_time_t;

/* A deadline that never passes: the plain blocking calls use it. */
#define WEFT_FOREVER INT64_MAX
/* What the helpers return for a negative or NaN timeout. */
#define WEFT_DEADLINE_INVALID ((weft_time_t)-1)

/* The monotonic clock now, in nanoseconds. Any thread. */
WEFT_API weft_time_t weft_now(void);

/*
 * Deadlines from timeouts, measured from now. A timeout that does not fit
 * saturates to WEFT_FOREVER (so does +infinity); a negative or NaN timeout
 * gives WEFT_DEADLINE_INVALID.
 */
WEFT_API weft_time_t weft_deadline_in(double seconds);
WEFT_API weft_time_t weft_deadline_in_ms(int64_t milliseconds);
WEFT_API weft_time_t weft_deadline_in_ns(int64_t nanoseconds);

/* Seconds between two weft_time_t values (b - a), as a double. */
static inline double weft_seconds_between(weft_time_t a, weft_time_t b)
{
    return (double)(b - a) * 1e-9;
}

#ifdef __cplusplus
}
#endif

#endif /* WEFT_TIME_H */
