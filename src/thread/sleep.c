/*
 * sleep.c - weft_sleep and weft_sleep_until (time.sleep).
 *
 * Sleeping is parking with a deadline on a key nobody unparks. It goes
 * through the parking layer rather than nanosleep so that, once the
 * coroutine layer installs its park ops, a sleeping coroutine suspends and
 * its loop runs others instead of the whole OS thread stopping.
 *
 * The key is the address of a local variable of the sleeper: unique to this
 * sleep while it lasts, so sleepers never share a parking-lot queue and a
 * timed-out sleeper finds itself without scanning past others. An unpark
 * may still reach it by accident (a primitive that unparks an address after
 * its memory was freed and reused as this stack slot), so the wait loops
 * until the deadline has really passed. Signals do not shorten the sleep
 * (the futex wait is restarted), as with Python's time.sleep since PEP 475.
 */
#include <errno.h>
#include <math.h>
#include <weft/thread.h>

#include "../park/park.h"

int weft_sleep_until(weft_time_t deadline)
{
    if (deadline < 0)
        return -EINVAL;
    char key;
    while (!weft__deadline_passed(deadline))
        if (weft__park_c(&key, NULL, NULL, NULL, deadline, NULL) == -ECANCELED)
            return -ECANCELED; /* a cancelled coroutine (never a thread) */
    return 0;
}

int weft_sleep(double seconds)
{
    if (isnan(seconds) || seconds < 0)
        return -EINVAL;
    return weft_sleep_until(weft_deadline_in(seconds));
}
