/* weft_sleep / weft_sleep_until: never early, bad input refused, sleepers in
 * parallel, and sleeping does not burn the CPU. */
#define _GNU_SOURCE
#include <math.h>
#include <stdatomic.h>
#include <time.h>
#include <weft.h>

#include "check.h"

static void test_bad_input(void)
{
    CHECK_RC(weft_sleep(-1.0), -EINVAL);
    CHECK_RC(weft_sleep(-1e-9), -EINVAL);
    CHECK_RC(weft_sleep(NAN), -EINVAL);
    CHECK_RC(weft_sleep(-INFINITY), -EINVAL);
    CHECK_RC(weft_sleep_until(-1), -EINVAL);
    CHECK_RC(weft_sleep_until(WEFT_DEADLINE_INVALID), -EINVAL);
    CHECK_RC(weft_sleep_until(INT64_MIN), -EINVAL);
}

static void test_zero_and_past(void)
{
    CHECK_OK(weft_sleep(0));
    CHECK_OK(weft_sleep(-0.0));
    CHECK_OK(weft_sleep_until(0));
    CHECK_OK(weft_sleep_until(weft_now()));
}

static void test_not_early(void)
{
    double secs[] = {0.001, 0.01, 0.03};
    for (size_t i = 0; i < sizeof secs / sizeof secs[0]; i++) {
        weft_time_t t0 = weft_now();
        CHECK_OK(weft_sleep(secs[i]));
        CHECK_INT(weft_now() - t0, >=, (int64_t)(secs[i] * 1e9));
    }
    weft_time_t dl = weft_deadline_in_ms(20);
    CHECK_OK(weft_sleep_until(dl));
    CHECK_INT(weft_now(), >=, dl);
}

static _Atomic int early;

static void sleeper(void *arg, int index)
{
    (void)arg;
    long n = check_iters("SLEEP_ROUNDS", 20);
    for (long i = 0; i < n; i++) {
        weft_time_t dl = weft_deadline_in_ns(100000 * (1 + (index + i) % 5));
        if (weft_sleep_until(dl) != 0 || weft_now() < dl)
            atomic_fetch_add(&early, 1);
    }
}

static void test_parallel_sleepers(void)
{
    atomic_store(&early, 0);
    check_parallel(8, sleeper, NULL);
    CHECK_INT(atomic_load(&early), ==, 0);
}

static int64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void test_does_not_spin(void)
{
    /* A busy-waiting sleep would use about 100 ms of CPU here; a parked one
     * uses microseconds. The bound is generous (sanitizers, slow hosts):
     * CPU time is not inflated by a loaded machine, only by spinning. */
    int64_t c0 = thread_cpu_ns();
    CHECK_OK(weft_sleep(0.1));
    CHECK_INT(thread_cpu_ns() - c0, <, 30000000);
}

int main(void)
{
    RUN(test_bad_input);
    RUN(test_zero_and_past);
    RUN(test_not_early);
    RUN(test_parallel_sleepers);
    RUN(test_does_not_spin);
    return check_done();
}
