/*
 * time.c - the monotonic clock and timeout-to-deadline helpers.
 */
#include "platform.h"

#include <math.h>
#include <time.h>

weft_time_t weft_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (weft_time_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

weft_time_t weft_deadline_in_ns(int64_t ns)
{
    if (ns < 0)
        return WEFT_DEADLINE_INVALID;
    weft_time_t now = weft_now();
    if (ns > WEFT_FOREVER - now)
        return WEFT_FOREVER;
    return now + ns;
}

weft_time_t weft_deadline_in_ms(int64_t ms)
{
    if (ms < 0)
        return WEFT_DEADLINE_INVALID;
    if (ms > INT64_MAX / 1000000)
        return WEFT_FOREVER;
    return weft_deadline_in_ns(ms * 1000000);
}

weft_time_t weft_deadline_in(double seconds)
{
    if (isnan(seconds) || seconds < 0)
        return WEFT_DEADLINE_INVALID;
    if (seconds >= 9.2e9) /* past INT64_MAX nanoseconds */
        return WEFT_FOREVER;
    return weft_deadline_in_ns((int64_t)(seconds * 1e9));
}
