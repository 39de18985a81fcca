/* weft_future_t: resolution exactly once, waits, cancel, callbacks, sets. */
#include <sched.h>
#include <stdatomic.h>
#include <weft.h>

#include "check.h"

static void test_basic(void)
{
    weft_future_t *f;
    CHECK_OK(weft_future_create(&f));
    CHECK(!weft_future_done(f));
    CHECK(!weft_future_running(f));
    void *v = (void *)1;
    CHECK_RC(weft_future_result(f, &v), -EAGAIN);
    CHECK_RC(weft_future_wait_until(f, weft_deadline_in_ms(1)), -ETIMEDOUT);
    CHECK_OK(weft_future_set_running(f));
    CHECK(weft_future_running(f));
    CHECK_RC(weft_future_set_running(f), -EALREADY);
    CHECK_OK(weft_future_set_result(f, (void *)42));
    CHECK(weft_future_done(f));
    CHECK(!weft_future_running(f));
    /* Exactly once: later resolutions are refused and change nothing. */
    CHECK_RC(weft_future_set_result(f, (void *)7), -EALREADY);
    CHECK_RC(weft_future_set_error(f, -EIO), -EALREADY);
    CHECK_RC(weft_future_cancel(f), -EALREADY);
    CHECK(!weft_future_cancelled(f));
    CHECK_OK(weft_future_wait(f));
    CHECK_OK(weft_future_get(f, &v));
    CHECK(v == (void *)42);
    CHECK_OK(weft_future_release(f));

    CHECK_OK(weft_future_create(&f));
    CHECK_OK(weft_future_set_error(f, -EIO));
    CHECK_RC(weft_future_result(f, &v), -EIO);
    CHECK(v == NULL);
    CHECK_RC(weft_future_get(f, NULL), -EIO);
    CHECK_OK(weft_future_release(f));
}

static void test_bad_input(void)
{
    weft_future_t *f;
    CHECK_RC(weft_future_create(NULL), -EINVAL);
    CHECK_RC(weft_future_retain(NULL), -EINVAL);
    CHECK_RC(weft_future_release(NULL), -EINVAL);
    CHECK_RC(weft_future_set_running(NULL), -EINVAL);
    CHECK_RC(weft_future_set_result(NULL, NULL), -EINVAL);
    CHECK_RC(weft_future_set_error(NULL, -EIO), -EINVAL);
    CHECK_RC(weft_future_cancel(NULL), -EINVAL);
    CHECK_RC(weft_future_wait(NULL), -EINVAL);
    CHECK_RC(weft_future_get(NULL, NULL), -EINVAL);
    CHECK_RC(weft_future_result(NULL, NULL), -EINVAL);
    CHECK_RC(weft_future_on_done(NULL, NULL, NULL), -EINVAL);
    CHECK(!weft_future_done(NULL) && !weft_future_running(NULL) && !weft_future_cancelled(NULL));
    CHECK(!weft_future_cancel_requested(NULL));
    CHECK_OK(weft_future_create(&f));
    CHECK_RC(weft_future_set_error(f, 0), -EINVAL);
    CHECK_RC(weft_future_set_error(f, 5), -EINVAL);
    CHECK_RC(weft_future_wait_until(f, -1), -EINVAL);
    CHECK_RC(weft_future_on_done(f, NULL, NULL), -EINVAL);
    CHECK_RC(weft_future_wait_all(NULL, 1, WEFT_FOREVER), -EINVAL);
    CHECK_RC(weft_future_wait_any(NULL, 1, WEFT_FOREVER), -EINVAL);
    CHECK_RC(weft_future_wait_any(&f, 0, WEFT_FOREVER), -EINVAL);
    weft_future_t *withnull[2] = {f, NULL};
    CHECK_RC(weft_future_wait_all(withnull, 2, WEFT_FOREVER), -EINVAL);
    CHECK_RC(weft_future_wait_any(withnull, 2, WEFT_FOREVER), -EINVAL);
    weft_as_completed_t *it;
    CHECK_RC(weft_as_completed_create(&it, withnull, 2), -EINVAL);
    CHECK_RC(weft_as_completed_create(NULL, &f, 1), -EINVAL);
    CHECK_RC(weft_as_completed_next(NULL, NULL, WEFT_FOREVER), -EINVAL);
    CHECK_RC(weft_as_completed_free(NULL), -EINVAL);
    CHECK_OK(weft_future_wait_all(NULL, 0, WEFT_FOREVER));
    /* The future is still usable after all that. */
    CHECK_OK(weft_future_set_result(f, NULL));
    CHECK_OK(weft_future_release(f));
}

static void test_cancel(void)
{
    weft_future_t *f;
    CHECK_OK(weft_future_create(&f));
    CHECK_OK(weft_future_cancel(f));
    CHECK(weft_future_cancelled(f));
    CHECK(weft_future_done(f));
    CHECK(weft_future_cancel_requested(f));
    /* Cancelling twice is harmless. */
    CHECK_OK(weft_future_cancel(f));
    CHECK_RC(weft_future_set_running(f), -ECANCELED);
    CHECK_RC(weft_future_set_result(f, NULL), -EALREADY);
    CHECK_RC(weft_future_get(f, NULL), -ECANCELED);
    CHECK_OK(weft_future_release(f));

    /* A running future is only asked. */
    CHECK_OK(weft_future_create(&f));
    CHECK_OK(weft_future_set_running(f));
    CHECK_RC(weft_future_cancel(f), -EBUSY);
    CHECK(weft_future_cancel_requested(f));
    CHECK(!weft_future_done(f));
    CHECK_RC(weft_future_cancel(f), -EBUSY);
    CHECK_OK(weft_future_set_error(f, -ECANCELED));
    CHECK(weft_future_cancelled(f));
    CHECK_OK(weft_future_cancel(f));
    CHECK_OK(weft_future_release(f));
}

static void test_self_wait(void)
{
    weft_future_t *f;
    CHECK_OK(weft_future_create(&f));
    CHECK_OK(weft_future_set_running(f));
    /* The producer waiting on its own future would wait forever. */
    CHECK_RC(weft_future_wait(f), -EDEADLK);
    CHECK_RC(weft_future_get_until(f, NULL, weft_deadline_in(5)), -EDEADLK);
    /* wait_any too, when every pending future is its own (it used to wait
     * to its deadline); with another that may resolve, it waits. */
    weft_future_t *one[1] = {f};
    CHECK_RC(weft_future_wait_any(one, 1, weft_deadline_in(5)), -EDEADLK);
    weft_future_t *g;
    CHECK_OK(weft_future_create(&g));
    weft_future_t *two[2] = {f, g};
    CHECK_RC(weft_future_wait_any(two, 2, weft_now()), -ETIMEDOUT);
    CHECK_OK(weft_future_set_result(g, NULL));
    CHECK_INT(weft_future_wait_any(two, 2, weft_deadline_in(5)), ==, 1);
    CHECK_OK(weft_future_release(g));
    CHECK_OK(weft_future_set_result(f, NULL));
    CHECK_OK(weft_future_wait(f));
    CHECK_OK(weft_future_release(f));
}

static _Atomic int cb_count;
static void count_cb(weft_future_t *f, void *arg)
{
    CHECK(weft_future_done(f));
    atomic_fetch_add((_Atomic int *)arg, 1);
    atomic_fetch_add(&cb_count, 1);
}

static int order[8], norder;
static void order_cb(weft_future_t *f, void *arg)
{
    (void)f;
    order[norder++] = (int)(intptr_t)arg;
}

static void test_callbacks(void)
{
    weft_future_t *f;
    _Atomic int n = 0;
    CHECK_OK(weft_future_create(&f));
    norder = 0;
    for (int i = 0; i < 4; i++)
        CHECK_OK(weft_future_on_done(f, order_cb, (void *)(intptr_t)i));
    CHECK_OK(weft_future_on_done(f, count_cb, &n));
    CHECK_INT(norder, ==, 0);
    CHECK_OK(weft_future_set_result(f, NULL));
    CHECK_INT(norder, ==, 4);
    for (int i = 0; i < 4; i++)
        CHECK_INT(order[i], ==, i);
    CHECK_INT(n, ==, 1);
    /* Added after completion: runs at once, exactly once. */
    CHECK_OK(weft_future_on_done(f, count_cb, &n));
    CHECK_INT(n, ==, 2);
    CHECK_RC(weft_future_cancel(f), -EALREADY);
    CHECK_INT(n, ==, 2);
    CHECK_OK(weft_future_release(f));

    /* Releasing the last reference with callbacks pending: the callbacks
     * keep the future alive and still run when it resolves. */
    weft_future_t *g, *keep;
    CHECK_OK(weft_future_create(&g));
    keep = g;
    CHECK_OK(weft_future_on_done(g, count_cb, &n));
    CHECK_OK(weft_future_retain(g));  /* a producer's reference */
    CHECK_OK(weft_future_release(g)); /* the consumer lets go */
    CHECK_OK(weft_future_cancel(keep));
    CHECK_INT(n, ==, 3);
    CHECK_OK(weft_future_release(keep));
}

struct resolver {
    weft_future_t **fs;
    int n;
};

static void resolve_all(void *arg, int index)
{
    struct resolver *r = arg;
    for (int i = index; i < r->n; i += 2) {
        sched_yield();
        if (i != 17)
            CHECK_OK(weft_future_set_result(r->fs[i], (void *)(intptr_t)i));
    }
}

static void test_sets(void)
{
    enum { N = 64 };
    weft_future_t *fs[N];
    for (int i = 0; i < N; i++)
        CHECK_OK(weft_future_create(&fs[i]));
    CHECK_RC(weft_future_wait_any(fs, N, weft_deadline_in_ms(2)), -ETIMEDOUT);
    CHECK_RC(weft_future_wait_all(fs, N, weft_deadline_in_ms(2)), -ETIMEDOUT);
    weft_as_completed_t *it;
    CHECK_OK(weft_as_completed_create(&it, fs, N));
    CHECK_RC(weft_as_completed_next(it, NULL, weft_deadline_in_ms(1)), -ETIMEDOUT);
    CHECK_OK(weft_future_set_result(fs[17], NULL));
    CHECK_INT(weft_future_wait_any(fs, N, WEFT_FOREVER), ==, 17);
    weft_future_t *got;
    CHECK_INT(weft_as_completed_next(it, &got, WEFT_FOREVER), ==, 17);
    CHECK(got == fs[17]);
    struct resolver r = {fs, N};
    int seen[N] = {0};
    seen[17] = 1;
    /* Resolve the rest from two threads; then iterate here. */
    check_parallel(2, resolve_all, &r);
    for (int k = 0; k < N - 1; k++) {
        int i = weft_as_completed_next(it, &got, weft_deadline_in(10));
        CHECK_INT(i, >=, 0);
        CHECK(got == fs[i]);
        CHECK(weft_future_done(got));
        CHECK_INT(seen[i], ==, 0);
        seen[i] = 1;
    }
    CHECK_RC(weft_as_completed_next(it, &got, WEFT_FOREVER), -EPIPE);
    CHECK_OK(weft_as_completed_free(it));
    CHECK_OK(weft_future_wait_all(fs, N, WEFT_FOREVER));
    for (int i = 0; i < N; i++)
        CHECK_OK(weft_future_release(fs[i]));
}

/* Stress: many futures, each resolved by one of several racing threads
 * (set_result, set_error, cancel), waited on by others and watched by
 * callbacks and an as_completed iterator freed early. Every future must
 * resolve exactly once and every callback fire exactly once. */
struct stress {
    weft_future_t **fs;
    long n;
    _Atomic long cb_fired;
};

static void stress_cb(weft_future_t *f, void *arg)
{
    (void)f;
    atomic_fetch_add(&((struct stress *)arg)->cb_fired, 1);
}

static void stress_fn(void *arg, int index)
{
    struct stress *s = arg;
    for (long i = 0; i < s->n; i++) {
        weft_future_t *f = s->fs[i];
        int r;
        switch ((index + i) % 4) {
        case 0: r = weft_future_set_result(f, (void *)(intptr_t)i); break;
        case 1: r = weft_future_set_error(f, -EIO); break;
        case 2: r = weft_future_cancel(f); r = (r == 0 && weft_future_cancelled(f)) ? 0 : -1; break;
        default:
            weft_future_on_done(f, stress_cb, s);
            r = weft_future_wait(f) == 0 ? -1 : -2; /* a waiter never wins */
            break;
        }
        (void)r;
    }
}

static void test_stress(void)
{
    long n = check_iters("FUTURE_STRESS", 20000);
    struct stress s = {calloc((size_t)n, sizeof(weft_future_t *)), n, 0};
    for (long i = 0; i < n; i++) {
        CHECK_OK(weft_future_create(&s.fs[i]));
        CHECK_OK(weft_future_on_done(s.fs[i], stress_cb, &s));
    }
    weft_as_completed_t *it;
    CHECK_OK(weft_as_completed_create(&it, s.fs, (size_t)n));
    check_parallel(4, stress_fn, &s);
    long outcomes[3] = {0};
    for (long i = 0; i < n; i++) {
        void *v;
        CHECK(weft_future_done(s.fs[i]));
        int r = weft_future_result(s.fs[i], &v);
        if (r == 0) {
            CHECK(v == (void *)(intptr_t)i);
            outcomes[0]++;
        } else if (r == -EIO) {
            outcomes[1]++;
        } else {
            CHECK_RC(r, -ECANCELED);
            outcomes[2]++;
        }
    }
    CHECK_INT(outcomes[0] + outcomes[1] + outcomes[2], ==, n);
    /* One callback per future from setup, one per future from the waiter. */
    CHECK_INT(atomic_load(&s.cb_fired), ==, 2 * n);
    /* The iterator yields each exactly once. */
    char *seen = calloc((size_t)n, 1);
    for (long k = 0; k < n / 2; k++) {
        int i = weft_as_completed_next(it, NULL, WEFT_FOREVER);
        CHECK_INT(i, >=, 0);
        CHECK_INT(seen[i], ==, 0);
        seen[i] = 1;
    }
    CHECK_OK(weft_as_completed_free(it)); /* freed with entries unyielded */
    for (long i = 0; i < n; i++)
        CHECK_OK(weft_future_release(s.fs[i]));
    free(seen);
    free(s.fs);
}

/* as_completed freed while resolutions race with it. */
static weft_future_t *race_fs[256];
static void race_resolve(void *arg, int index)
{
    (void)arg;
    if (index == 0)
        for (int i = 0; i < 256; i++)
            weft_future_set_result(race_fs[i], NULL);
}

static void race_free(void *arg, int index)
{
    weft_as_completed_t *it = arg;
    if (index == 1)
        weft_as_completed_free(it);
}

static void both(void *arg, int index)
{
    if (index == 0)
        race_resolve(arg, index);
    else
        race_free(arg, index);
}

static void test_free_races_resolve(void)
{
    long rounds = check_iters("FUTURE_FREE_RACE", 200);
    for (long r = 0; r < rounds; r++) {
        for (int i = 0; i < 256; i++)
            CHECK_OK(weft_future_create(&race_fs[i]));
        weft_as_completed_t *it;
        CHECK_OK(weft_as_completed_create(&it, race_fs, 256));
        check_parallel(2, both, it);
        for (int i = 0; i < 256; i++)
            CHECK_OK(weft_future_release(race_fs[i]));
    }
}

int main(void)
{
    RUN(test_basic);
    RUN(test_bad_input);
    RUN(test_cancel);
    RUN(test_self_wait);
    RUN(test_callbacks);
    RUN(test_sets);
    RUN(test_stress);
    RUN(test_free_races_resolve);
    return check_done();
}
