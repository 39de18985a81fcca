/* weft_waitgroup_t and weft_latch_t: counting, bounds, misuse, deadlines,
 * and stresses where waiters must be released exactly when the count
 * reaches zero (not before, and never missed). */
#include "sync_util.h"

#define MAXC (1ll << 62)

static void test_waitgroup_basic(void)
{
    weft_waitgroup_t wg = WEFT_WAITGROUP_INIT;
    CHECK_RC(weft_waitgroup_init(NULL), -EINVAL);
    CHECK_RC(weft_waitgroup_destroy(NULL), -EINVAL);
    CHECK_RC(weft_waitgroup_add(NULL, 1), -EINVAL);
    CHECK_RC(weft_waitgroup_done(NULL), -EINVAL);
    CHECK_RC(weft_waitgroup_wait(NULL), -EINVAL);
    CHECK_RC(weft_waitgroup_wait_until(NULL, WEFT_FOREVER), -EINVAL);
    CHECK_RC(weft_waitgroup_wait_until(&wg, -1), -EINVAL);
    CHECK_INT(weft_waitgroup_count(NULL), ==, 0);

    CHECK_OK(weft_waitgroup_wait(&wg)); /* zero: returns at once */
    CHECK_RC(weft_waitgroup_done(&wg), -EOVERFLOW);
    CHECK_RC(weft_waitgroup_add(&wg, -1), -EOVERFLOW);
    CHECK_OK(weft_waitgroup_add(&wg, 0));
    CHECK_OK(weft_waitgroup_add(&wg, 3));
    CHECK_INT(weft_waitgroup_count(&wg), ==, 3);
    CHECK_RC(weft_waitgroup_add(&wg, -4), -EOVERFLOW);
    CHECK_RC(weft_waitgroup_add(&wg, MAXC), -EOVERFLOW);
    CHECK_RC(weft_waitgroup_add(&wg, INT64_MAX), -EOVERFLOW);
    CHECK_RC(weft_waitgroup_add(&wg, INT64_MIN), -EOVERFLOW);
    CHECK_INT(weft_waitgroup_count(&wg), ==, 3);
    CHECK_RC(weft_waitgroup_destroy(&wg), -EBUSY);
    weft_time_t dl = weft_deadline_in_ms(20);
    CHECK_RC(weft_waitgroup_wait_until(&wg, dl), -ETIMEDOUT);
    CHECK_INT(weft_now(), >=, dl);
    CHECK_RC(weft_waitgroup_wait_until(&wg, 0), -ETIMEDOUT);
    CHECK_OK(weft_waitgroup_done(&wg));
    CHECK_OK(weft_waitgroup_add(&wg, -2));
    CHECK_INT(weft_waitgroup_count(&wg), ==, 0);
    CHECK_INT(wg.state, ==, 0); /* no PARKED residue from the timeouts */
    CHECK_OK(weft_waitgroup_wait_until(&wg, 0));
    CHECK_OK(weft_waitgroup_add(&wg, MAXC));
    CHECK_RC(weft_waitgroup_add(&wg, 1), -EOVERFLOW);
    CHECK_OK(weft_waitgroup_add(&wg, -MAXC));
    CHECK_OK(weft_waitgroup_destroy(&wg));
    CHECK_OK(weft_waitgroup_init(&wg));
}

static weft_waitgroup_t WG = WEFT_WAITGROUP_INIT;

static void *wg_waiter(void *p)
{
    (void)p;
    probe_install();
    return (void *)(intptr_t)weft_waitgroup_wait(&WG);
}

static void test_waitgroup_wakes_all(void)
{
    enum { N = 3 };
    probe_reset();
    CHECK_OK(weft_waitgroup_add(&WG, 2));
    pthread_t t[N];
    for (int i = 0; i < N; i++)
        t[i] = spawn(wg_waiter, NULL);
    CHECK(wait_count(&probe_parked, N));
    CHECK_RC(weft_waitgroup_destroy(&WG), -EBUSY);
    CHECK_OK(weft_waitgroup_done(&WG));
    CHECK(weft__is_parked(&WG)); /* not yet */
    CHECK_OK(weft_waitgroup_done(&WG));
    for (int i = 0; i < N; i++)
        CHECK_RC(join(t[i]), 0);
    CHECK_OK(weft_waitgroup_destroy(&WG));
}

/* Rounds: the coordinator adds WORKERS, workers do their part and call
 * done, waiters wait; a waiter released before every part is done, or
 * never released, is a failure. The group is reused across rounds. */
enum { WORKERS = 4, WAITERS = 2 };

struct wg_stress {
    weft_waitgroup_t wg;
    long rounds;
    pthread_barrier_t gate;
    _Atomic long parts;
    _Atomic int violations;
};

static void wg_worker(void *p, int idx)
{
    struct wg_stress *s = p;
    for (long r = 0; r < s->rounds; r++) {
        if (idx == 0 && weft_waitgroup_add(&s->wg, WORKERS) != 0)
            atomic_fetch_add(&s->violations, 1);
        pthread_barrier_wait(&s->gate); /* the round's add is done */
        if (idx < WORKERS) {
            if (r % 5 == 0)
                sched_yield();
            atomic_fetch_add(&s->parts, 1);
            if (weft_waitgroup_done(&s->wg) != 0)
                atomic_fetch_add(&s->violations, 1);
        } else {
            int rc = (r % 2) ? weft_waitgroup_wait(&s->wg)
                             : weft_waitgroup_wait_until(&s->wg, weft_deadline_in(60));
            if (rc != 0 || atomic_load(&s->parts) < (r + 1) * WORKERS)
                atomic_fetch_add(&s->violations, 1);
        }
        pthread_barrier_wait(&s->gate); /* everyone is out before the next add */
    }
}

static void test_waitgroup_stress(void)
{
    struct wg_stress s = {.wg = WEFT_WAITGROUP_INIT};
    s.rounds = check_iters("WAITGROUP_ROUNDS", 3000);
    pthread_barrier_init(&s.gate, NULL, WORKERS + WAITERS);
    check_parallel(WORKERS + WAITERS, wg_worker, &s);
    pthread_barrier_destroy(&s.gate);
    CHECK_INT(atomic_load(&s.violations), ==, 0);
    CHECK_INT(atomic_load(&s.parts), ==, s.rounds * WORKERS);
    CHECK_OK(weft_waitgroup_destroy(&s.wg));
}

/* ---- latch ------------------------------------------------------------------ */

static void test_latch_basic(void)
{
    weft_latch_t l = WEFT_LATCH_INIT(2);
    CHECK_RC(weft_latch_init(NULL, 1), -EINVAL);
    CHECK_RC(weft_latch_init(&l, (1ull << 62) + 1), -EINVAL);
    CHECK_RC(weft_latch_destroy(NULL), -EINVAL);
    CHECK_RC(weft_latch_count_down(NULL, 1), -EINVAL);
    CHECK_RC(weft_latch_wait(NULL), -EINVAL);
    CHECK_RC(weft_latch_wait_until(NULL, WEFT_FOREVER), -EINVAL);
    CHECK_RC(weft_latch_wait_until(&l, -1), -EINVAL);
    CHECK_RC(weft_latch_wait_try(NULL), -EINVAL);
    CHECK_RC(weft_latch_arrive_and_wait(NULL), -EINVAL);

    CHECK_RC(weft_latch_wait_try(&l), -EAGAIN);
    CHECK_RC(weft_latch_count_down(&l, 3), -EOVERFLOW);
    CHECK_OK(weft_latch_count_down(&l, 0));
    weft_time_t dl = weft_deadline_in_ms(20);
    CHECK_RC(weft_latch_wait_until(&l, dl), -ETIMEDOUT);
    CHECK_INT(weft_now(), >=, dl);
    CHECK_OK(weft_latch_count_down(&l, 1));
    CHECK_RC(weft_latch_wait_try(&l), -EAGAIN);
    CHECK_OK(weft_latch_arrive_and_wait(&l)); /* takes it to zero: no wait */
    CHECK_OK(weft_latch_wait_try(&l));
    CHECK_OK(weft_latch_wait(&l));
    CHECK_OK(weft_latch_wait_until(&l, 0));
    /* Zero for good: further count-downs are refused. */
    CHECK_RC(weft_latch_count_down(&l, 1), -EOVERFLOW);
    CHECK_RC(weft_latch_arrive_and_wait(&l), -EOVERFLOW);
    CHECK_OK(weft_latch_destroy(&l));
    CHECK_OK(weft_latch_init(&l, 1ull << 62));
    CHECK_OK(weft_latch_count_down(&l, 1ull << 62));
    CHECK_OK(weft_latch_wait_try(&l));
    CHECK_OK(weft_latch_init(&l, 0));
    CHECK_OK(weft_latch_wait(&l));
}

static weft_latch_t LT;

static void *latch_waiter(void *p)
{
    (void)p;
    probe_install();
    return (void *)(intptr_t)weft_latch_wait(&LT);
}

static void test_latch_wakes_all(void)
{
    probe_reset();
    CHECK_OK(weft_latch_init(&LT, 3));
    pthread_t t[2] = {spawn(latch_waiter, NULL), spawn(latch_waiter, NULL)};
    CHECK(wait_count(&probe_parked, 2));
    CHECK_RC(weft_latch_destroy(&LT), -EBUSY);
    CHECK_OK(weft_latch_count_down(&LT, 2));
    CHECK(weft__is_parked(&LT));
    CHECK_OK(weft_latch_count_down(&LT, 1));
    for (int i = 0; i < 2; i++)
        CHECK_RC(join(t[i]), 0);
    CHECK_OK(weft_latch_destroy(&LT));
}

/* Many threads arrive_and_wait on fresh latches: nobody leaves before all
 * have arrived, and everybody leaves. */
enum { LATCH_THREADS = 6 };

struct latch_stress {
    weft_latch_t *latches;
    _Atomic int *arrived;
    long rounds;
    _Atomic int violations;
};

static void latch_worker(void *p, int idx)
{
    struct latch_stress *s = p;
    for (long r = 0; r < s->rounds; r++) {
        atomic_fetch_add(&s->arrived[r], 1);
        int rc = (idx % 2) ? weft_latch_arrive_and_wait(&s->latches[r])
                           : (weft_latch_count_down(&s->latches[r], 1) == 0
                                  ? weft_latch_wait_until(&s->latches[r], weft_deadline_in(60))
                                  : -1);
        if (rc != 0 || atomic_load(&s->arrived[r]) != LATCH_THREADS)
            atomic_fetch_add(&s->violations, 1);
    }
}

static void test_latch_stress(void)
{
    struct latch_stress s = {0};
    s.rounds = check_iters("LATCH_ROUNDS", 3000);
    s.latches = calloc((size_t)s.rounds, sizeof *s.latches);
    s.arrived = calloc((size_t)s.rounds, sizeof *s.arrived);
    CHECK(s.latches && s.arrived);
    for (long r = 0; r < s.rounds; r++)
        weft_latch_init(&s.latches[r], LATCH_THREADS);
    check_parallel(LATCH_THREADS, latch_worker, &s);
    long bad = 0;
    for (long r = 0; r < s.rounds; r++)
        bad += s.latches[r].state != 0 || weft_latch_destroy(&s.latches[r]) != 0;
    free(s.latches);
    free((void *)s.arrived);
    CHECK_INT(atomic_load(&s.violations), ==, 0);
    CHECK_INT(bad, ==, 0);
}

/* A stale unpark (one meant for an object that lived at this address
 * before, or a pool waking a worker by an old key) must not release a
 * waiter while the count is not zero: it looks again and parks again. The
 * test plays the stale unparker with weft__unpark_all on the word. */
static _Atomic int released;

static void *wg_checked_waiter(void *p)
{
    (void)p;
    probe_install();
    int r = weft_waitgroup_wait(&WG);
    return (void *)(intptr_t)(r == 0 && atomic_load(&released) ? 1 : r == 0 ? -1000 : r);
}

static void *latch_checked_waiter(void *p)
{
    (void)p;
    probe_install();
    int r = weft_latch_wait((weft_latch_t *)p);
    return (void *)(intptr_t)(r == 0 && atomic_load(&released) ? 1 : r == 0 ? -1000 : r);
}

static void test_stale_unpark(void)
{
    long rounds = check_iters("ZW_STALE_ROUNDS", 20);
    for (long i = 0; i < rounds; i++) {
        probe_reset();
        atomic_store(&released, 0);
        CHECK_OK(weft_waitgroup_add(&WG, 1));
        weft_latch_t l;
        CHECK_OK(weft_latch_init(&l, 1));
        pthread_t a = spawn(wg_checked_waiter, NULL);
        pthread_t b = spawn(latch_checked_waiter, &l);
        CHECK(wait_count(&probe_parked, 2));
        weft__unpark_all(&WG.state, 0); /* stale: the count is still 1 */
        weft__unpark_all(&l.state, 0);
        CHECK(wait_count(&probe_parked, 4)); /* both parked again */
        atomic_store(&released, 1);
        CHECK_OK(weft_waitgroup_done(&WG));
        CHECK_OK(weft_latch_count_down(&l, 1));
        CHECK_RC(join(a), 1);
        CHECK_RC(join(b), 1);
        CHECK_OK(weft_latch_destroy(&l));
    }
    CHECK_OK(weft_waitgroup_destroy(&WG));
}

int main(void)
{
    RUN(test_waitgroup_basic);
    RUN(test_waitgroup_wakes_all);
    RUN(test_waitgroup_stress);
    RUN(test_latch_basic);
    RUN(test_latch_wakes_all);
    RUN(test_latch_stress);
    RUN(test_stale_unpark);
    return check_done();
}
