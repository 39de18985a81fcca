/* Platform layer: clock, deadlines, CPU count, page size, error strings,
 * backoff. */
#include <math.h>
#include <weft.h>

#include "check.h"
#include "platform/platform.h"

static void test_clock_monotonic(void)
{
    weft_time_t a = weft_now();
    for (int i = 0; i < 1000; i++) {
        weft_time_t b = weft_now();
        CHECK_INT(b, >=, a);
        a = b;
    }
    CHECK_INT(a, >, 0);
}

static void test_deadlines(void)
{
    weft_time_t now = weft_now();
    weft_time_t d = weft_deadline_in(0.5);
    CHECK_INT(d - now, >=, 500000000LL);
    CHECK_INT(d - now, <, 600000000LL);
    d = weft_deadline_in_ms(20);
    CHECK_INT(d - now, >=, 20000000LL);
    d = weft_deadline_in_ns(7);
    CHECK_INT(d - now, >=, 7);
    CHECK_INT(weft_deadline_in(-1.0), ==, WEFT_DEADLINE_INVALID);
    CHECK_INT(weft_deadline_in(NAN), ==, WEFT_DEADLINE_INVALID);
    CHECK_INT(weft_deadline_in_ms(-5), ==, WEFT_DEADLINE_INVALID);
    CHECK_INT(weft_deadline_in_ns(-1), ==, WEFT_DEADLINE_INVALID);
    CHECK_INT(weft_deadline_in(INFINITY), ==, WEFT_FOREVER);
    CHECK_INT(weft_deadline_in(1e300), ==, WEFT_FOREVER);
    CHECK_INT(weft_deadline_in_ms(INT64_MAX), ==, WEFT_FOREVER);
    CHECK_INT(weft_deadline_in_ns(INT64_MAX), ==, WEFT_FOREVER);
    CHECK_INT(weft_deadline_in(0), >=, now);
}

static void test_cpu_and_page(void)
{
    int n = weft_cpu_count();
    CHECK_INT(n, >=, 1);
    CHECK_INT(n, <=, 4096);
    size_t p = weft_page_size();
    CHECK_U64(p, >=, 4096);
    CHECK_U64(p & (p - 1), ==, 0);
}

static void test_futex_timeout(void)
{
    _Atomic uint32_t word = 5;
    /* A value mismatch returns at once. */
    CHECK_RC(weft__futex_wait(&word, 4, WEFT_FOREVER, false), -EAGAIN);
    /* A deadline in the past times out at once; a near one after it. */
    CHECK_RC(weft__futex_wait(&word, 5, 0, false), -ETIMEDOUT);
    weft_time_t dl = weft_deadline_in_ms(20);
    int r;
    do
        r = weft__futex_wait(&word, 5, dl, false);
    while (r == 0 || r == -EINTR);
    CHECK_RC(r, -ETIMEDOUT);
    CHECK_INT(weft_now(), >=, dl);
    CHECK_INT(weft__futex_wake(&word, 1, false), ==, 0);
}

static void test_strerror(void)
{
    CHECK(strcmp(weft_strerror(0), "success") == 0);
    CHECK(strcmp(weft_strerror(-EPIPE), "channel closed") == 0);
    CHECK(strcmp(weft_strerror(WEFT_EBROKEN), "barrier broken") == 0);
    CHECK(strcmp(weft_strerror(EINVAL), weft_strerror(-EINVAL)) == 0);
    CHECK(weft_strerror(-ENOENT) != NULL);
    CHECK(strcmp(weft_strerror(-123456), "unknown error") == 0);
    CHECK(strcmp(weft_version(), WEFT_VERSION_STRING) == 0);
}

static void test_rand(void)
{
    uint64_t a = weft__rand(), b = weft__rand();
    CHECK(a != 0);
    CHECK(a != b);
}

/* weft__backoff: pauses and yields first (a caller that parks after a
 * few calls never sleeps), then every call sleeps. */
static void test_backoff(void)
{
    unsigned long s0 = atomic_load(&weft__backoff_sleeps);
    unsigned step = 0;
    for (int i = 0; i < 38; i++)
        weft__backoff(&step);
    CHECK_U64(atomic_load(&weft__backoff_sleeps), ==, s0);
    CHECK_U64(step, ==, 38);
    for (int i = 0; i < 3; i++)
        weft__backoff(&step);
    CHECK_U64(atomic_load(&weft__backoff_sleeps), ==, s0 + 3);
    CHECK_U64(step, ==, 38);
}

int main(void)
{
    RUN(test_clock_monotonic);
    RUN(test_deadlines);
    RUN(test_cpu_and_page);
    RUN(test_futex_timeout);
    RUN(test_strerror);
    RUN(test_rand);
    RUN(test_backoff);
    return check_done();
}
