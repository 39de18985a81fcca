/* weft_event_t: set/clear/wait, deadlines, misuse, set waking every waiter
 * even when clear follows at once, and a set/clear/wait race. */
#include "sync_util.h"

static void test_basic_and_bad_input(void)
{
    weft_event_t e = WEFT_EVENT_INIT;
    CHECK_RC(weft_event_init(NULL), -EINVAL);
    CHECK_RC(weft_event_destroy(NULL), -EINVAL);
    CHECK_RC(weft_event_set(NULL), -EINVAL);
    CHECK_RC(weft_event_clear(NULL), -EINVAL);
    CHECK_RC(weft_event_wait(NULL), -EINVAL);
    CHECK_RC(weft_event_wait_until(NULL, WEFT_FOREVER), -EINVAL);
    CHECK_RC(weft_event_wait_until(&e, -1), -EINVAL);
    CHECK(!weft_event_is_set(NULL));
    CHECK(!weft_event_is_set(&e));
    weft_time_t dl = weft_deadline_in_ms(20);
    CHECK_RC(weft_event_wait_until(&e, dl), -ETIMEDOUT);
    CHECK_INT(weft_now(), >=, dl);
    CHECK_RC(weft_event_wait_until(&e, 0), -ETIMEDOUT);
    CHECK_INT(e.state & 3, ==, 0); /* no PARKED residue (above: the set generation) */
    CHECK_OK(weft_event_set(&e));
    CHECK(weft_event_is_set(&e));
    CHECK_OK(weft_event_set(&e)); /* idempotent */
    CHECK_OK(weft_event_wait(&e));
    CHECK_OK(weft_event_wait_until(&e, 0));
    CHECK_OK(weft_event_clear(&e));
    CHECK(!weft_event_is_set(&e));
    CHECK_OK(weft_event_clear(&e));
    CHECK_OK(weft_event_destroy(&e));
    CHECK_OK(weft_event_init(&e));
    CHECK(!weft_event_is_set(&e));
}

static weft_event_t E = WEFT_EVENT_INIT;

static void *waiter(void *p)
{
    probe_install();
    weft_time_t dl = p ? *(weft_time_t *)p : WEFT_FOREVER;
    return (void *)(intptr_t)weft_event_wait_until(&E, dl);
}

/* set() wakes every waiter, even though clear() follows at once: wait
 * reports that the flag was set while it waited. Many rounds. */
static void test_set_wakes_all(void)
{
    enum { N = 4 };
    long rounds = check_iters("EVENT_ROUNDS", 200);
    weft_time_t dl = weft_deadline_in(60); /* a lost wake-up shows as -ETIMEDOUT */
    for (long r = 0; r < rounds; r++) {
        probe_reset();
        pthread_t t[N];
        for (int i = 0; i < N; i++)
            t[i] = spawn(waiter, &dl);
        CHECK(wait_count(&probe_parked, N));
        if (r == 0)
            CHECK_RC(weft_event_destroy(&E), -EBUSY);
        CHECK_OK(weft_event_set(&E));
        CHECK_OK(weft_event_clear(&E));
        for (int i = 0; i < N; i++)
            CHECK_RC(join(t[i]), 0);
        CHECK(!weft_event_is_set(&E));
    }
    CHECK_OK(weft_event_destroy(&E));
}

static void test_waiter_timeouts(void)
{
    weft_time_t dl[3];
    pthread_t t[3];
    for (int i = 0; i < 3; i++) {
        dl[i] = weft_deadline_in_ms(5 + 5 * i);
        t[i] = spawn(waiter, &dl[i]);
    }
    for (int i = 0; i < 3; i++)
        CHECK_RC(join(t[i]), -ETIMEDOUT);
    CHECK_INT(E.state & 3, ==, 0);
    CHECK_OK(weft_event_destroy(&E));
}

/* ---- race: setters, clearers and waiters at once ------------------------- */

struct race {
    weft_event_t e;
    weft_event_t stop;
    long iters;
    _Atomic int bad;
    _Atomic long waits_ok, waits_timeout;
};

static void race_worker(void *p, int idx)
{
    struct race *r = p;
    if (idx == 0) { /* toggler */
        for (long i = 0; i < r->iters; i++) {
            weft_event_set(&r->e);
            if (i % 8 == 0)
                busy(100);
            weft_event_clear(&r->e);
        }
        weft_event_set(&r->e); /* leave it set: every waiter must now return */
        weft_event_set(&r->stop);
        return;
    }
    long n = 0;
    while (!weft_event_is_set(&r->stop) || n == 0) {
        int rc = (n % 2) ? weft_event_wait(&r->e)
                         : weft_event_wait_until(&r->e, weft_deadline_in_ms(1));
        if (rc == 0)
            atomic_fetch_add(&r->waits_ok, 1);
        else if (rc == -ETIMEDOUT)
            atomic_fetch_add(&r->waits_timeout, 1);
        else
            atomic_fetch_add(&r->bad, 1);
        n++;
    }
    /* The final set is permanent: this must not block. */
    if (weft_event_wait_until(&r->e, weft_deadline_in(30)) != 0)
        atomic_fetch_add(&r->bad, 1);
}

static void test_race(void)
{
    struct race r = {.e = WEFT_EVENT_INIT, .stop = WEFT_EVENT_INIT};
    r.iters = check_iters("EVENT_ITERS", 100000);
    check_parallel(4, race_worker, &r);
    CHECK_INT(atomic_load(&r.bad), ==, 0);
    CHECK(weft_event_is_set(&r.e));
    CHECK_INT(r.e.state & 3, ==, 1); /* SET, and no PARKED left behind */
    CHECK_OK(weft_event_destroy(&r.e));
    CHECK_INT(atomic_load(&r.waits_ok), >, 0);
}

int main(void)
{
    RUN(test_basic_and_bad_input);
    RUN(test_set_wakes_all);
    RUN(test_waiter_timeouts);
    RUN(test_race);
    return check_done();
}
