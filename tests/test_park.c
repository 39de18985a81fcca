/* The parking layer: waiters and the parking lot, including the race
 * between an unpark and a timeout. */
#include <sched.h>
#include <stdatomic.h>
#include <weft.h>

#include "check.h"
#include "park/park.h"

static bool always_false(void *arg)
{
    (void)arg;
    return false;
}

static void test_validate_false_returns_eagain(void)
{
    int key = 0;
    CHECK_RC(weft__park(&key, always_false, NULL, NULL, WEFT_FOREVER, NULL), -EAGAIN);
    CHECK(!weft__is_parked(&key));
}

static bool timed_out_last;
static void on_timeout(void *arg, bool was_last)
{
    (void)arg;
    timed_out_last = was_last;
}

static void test_timeout(void)
{
    int key = 0;
    weft_time_t dl = weft_deadline_in_ms(10);
    timed_out_last = false;
    CHECK_RC(weft__park(&key, NULL, NULL, on_timeout, dl, NULL), -ETIMEDOUT);
    CHECK_INT(weft_now(), >=, dl);
    CHECK(timed_out_last);
    CHECK(!weft__is_parked(&key));
    /* An expired deadline still times out cleanly. */
    CHECK_RC(weft__park(&key, NULL, NULL, NULL, 0, NULL), -ETIMEDOUT);
}

struct park_pair {
    int key;
    _Atomic int parked;
    _Atomic int woken;
    uintptr_t token;
};

static void *parker(void *p)
{
    struct park_pair *pp = p;
    atomic_fetch_add(&pp->parked, 1);
    uintptr_t tok = 0;
    int r = weft__park(&pp->key, NULL, NULL, NULL, WEFT_FOREVER, &tok);
    if (r == 0) {
        pp->token = tok;
        atomic_fetch_add(&pp->woken, 1);
    }
    return NULL;
}

static void wait_parked(const void *key)
{
    while (!weft__is_parked(key))
        sched_yield();
}

static uintptr_t token_cb(void *arg, struct weft__unpark_result r)
{
    (void)arg;
    return r.unparked ? 42 : 0;
}

static void test_unpark_one_token(void)
{
    struct park_pair pp = {0};
    pthread_t t;
    pthread_create(&t, NULL, parker, &pp);
    wait_parked(&pp.key);
    CHECK_INT(weft__unpark_one(&pp.key, token_cb, NULL), ==, 1);
    pthread_join(t, NULL);
    CHECK_INT(atomic_load(&pp.woken), ==, 1);
    CHECK_U64(pp.token, ==, 42);
    CHECK_INT(weft__unpark_one(&pp.key, NULL, NULL), ==, 0);
}

struct many {
    int key;
    _Atomic int woken;
};

static void *many_parker(void *p)
{
    struct many *m = p;
    if (weft__park(&m->key, NULL, NULL, NULL, WEFT_FOREVER, NULL) == 0)
        atomic_fetch_add(&m->woken, 1);
    return NULL;
}

static void test_unpark_all_and_n(void)
{
    enum { N = 8 };
    struct many m = {0};
    pthread_t t[N];
    for (int i = 0; i < N; i++)
        pthread_create(&t[i], NULL, many_parker, &m);
    /* Wait until all are queued: unpark_n only counts queued ones. */
    unsigned got = 0;
    while (got < 3) {
        got += weft__unpark_n(&m.key, 3 - got, 0);
        sched_yield();
    }
    CHECK_INT(got, ==, 3);
    unsigned rest = 0;
    while (rest < N - 3) {
        rest += weft__unpark_all(&m.key, 0);
        sched_yield();
    }
    for (int i = 0; i < N; i++)
        pthread_join(t[i], NULL);
    CHECK_INT(rest, ==, N - 3);
    CHECK_INT(atomic_load(&m.woken), ==, N);
}

/* Stress the unpark/timeout race: waiters park with tiny deadlines while an
 * unparker keeps unparking. Invariant: every park returns exactly once, as
 * either woken or timed out, and the number of woken parks equals the number
 * of unparks that reported a waiter (no wake-up is lost or invented). */
struct race {
    int key;
    _Atomic long woken, timeouts, unparked;
    _Atomic int stop;
    long rounds;
};

static void *race_unparker(void *p)
{
    struct race *r = p;
    while (!atomic_load(&r->stop))
        atomic_fetch_add(&r->unparked, weft__unpark_one(&r->key, NULL, NULL));
    return NULL;
}

static void race_parker(void *p, int idx)
{
    (void)idx;
    struct race *r = p;
    for (long i = 0; i < r->rounds; i++) {
        int rc = weft__park(&r->key, NULL, NULL, NULL,
                            weft_deadline_in_ns((int64_t)(weft__rand() % 20000)), NULL);
        if (rc == 0)
            atomic_fetch_add(&r->woken, 1);
        else if (rc == -ETIMEDOUT)
            atomic_fetch_add(&r->timeouts, 1);
    }
}

static void test_unpark_timeout_race(void)
{
    struct race r = {0};
    r.rounds = check_iters("PARK_RACE", 20000);
    pthread_t unparker;
    pthread_create(&unparker, NULL, race_unparker, &r);
    check_parallel(3, race_parker, &r);
    atomic_store(&r.stop, 1);
    pthread_join(unparker, NULL);
    CHECK_INT(atomic_load(&r.woken) + atomic_load(&r.timeouts), ==, 3 * r.rounds);
    CHECK_INT(atomic_load(&r.woken), ==, atomic_load(&r.unparked));
    CHECK(!weft__is_parked(&r.key));
}

int main(void)
{
    RUN(test_validate_false_returns_eagain);
    RUN(test_timeout);
    RUN(test_unpark_one_token);
    RUN(test_unpark_all_and_n);
    RUN(test_unpark_timeout_race);
    return check_done();
}
