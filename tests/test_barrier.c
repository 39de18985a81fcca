/* weft_barrier_t: indices (each exactly once per round, last arrival parties-1),
 * the action, abort, reset, timeouts, the broken state, misuse, and stress
 * over many rounds. */
#include "sync_util.h"

static void count_action(void *arg) { atomic_fetch_add((_Atomic int *)arg, 1); }

static void test_bad_input(void)
{
    weft_barrier_t b;
    CHECK_RC(weft_barrier_init(NULL, 2, NULL, NULL), -EINVAL);
    CHECK_RC(weft_barrier_init(&b, 0, NULL, NULL), -EINVAL);
    CHECK_RC(weft_barrier_init(&b, (unsigned)INT32_MAX + 1, NULL, NULL), -EINVAL);
    CHECK_RC(weft_barrier_destroy(NULL), -EINVAL);
    CHECK_RC(weft_barrier_wait(NULL), -EINVAL);
    CHECK_RC(weft_barrier_wait_until(NULL, WEFT_FOREVER), -EINVAL);
    CHECK_RC(weft_barrier_abort(NULL), -EINVAL);
    CHECK_RC(weft_barrier_reset(NULL), -EINVAL);
    CHECK(!weft_barrier_is_broken(NULL));
    CHECK_INT(weft_barrier_n_waiting(NULL), ==, 0);
    CHECK_OK(weft_barrier_init(&b, 2, NULL, NULL));
    CHECK_RC(weft_barrier_wait_until(&b, -1), -EINVAL);
    CHECK_INT(weft_barrier_n_waiting(&b), ==, 0);
    CHECK(!weft_barrier_is_broken(&b));
    CHECK_OK(weft_barrier_destroy(&b));
}

static void test_one_party(void)
{
    _Atomic int runs = 0;
    weft_barrier_t b;
    CHECK_OK(weft_barrier_init(&b, 1, count_action, &runs));
    for (int i = 0; i < 5; i++)
        CHECK_RC(weft_barrier_wait(&b), 0);
    CHECK_RC(weft_barrier_wait_until(&b, 0), 0); /* never has to wait */
    CHECK_INT(atomic_load(&runs), ==, 6);
    CHECK_OK(weft_barrier_destroy(&b));
}

static weft_barrier_t B;

static void *bwait(void *p)
{
    weft_time_t dl = p ? *(weft_time_t *)p : WEFT_FOREVER;
    return (void *)(intptr_t)weft_barrier_wait_until(&B, dl);
}

/* Wait until n callers are counted in the round and parked. */
static bool wait_waiting(unsigned n)
{
    weft_time_t dl = weft_deadline_in(30);
    while (weft_barrier_n_waiting(&B) < n || !weft__is_parked(&B.word)) {
        if (weft_now() > dl)
            return false;
        sched_yield();
    }
    return true;
}

/* A full round after trouble proves the barrier is usable again. */
static void full_round(unsigned parties)
{
    pthread_t t[8];
    for (unsigned i = 0; i + 1 < parties; i++)
        t[i] = spawn(bwait, NULL);
    int mine = weft_barrier_wait(&B);
    unsigned seen = 1u << mine;
    for (unsigned i = 0; i + 1 < parties; i++) {
        intptr_t r = join(t[i]);
        CHECK_INT(r, >=, 0);
        CHECK_INT(r, <, parties);
        seen |= 1u << r;
    }
    CHECK_INT(seen, ==, (1u << parties) - 1);
}

static void test_basic_round(void)
{
    _Atomic int runs = 0;
    CHECK_OK(weft_barrier_init(&B, 3, count_action, &runs));
    pthread_t t1 = spawn(bwait, NULL);
    CHECK(wait_waiting(1));
    pthread_t t2 = spawn(bwait, NULL);
    CHECK(wait_waiting(2));
    CHECK_INT(weft_barrier_n_waiting(&B), ==, 2);
    CHECK_RC(weft_barrier_destroy(&B), -EBUSY);
    CHECK_INT(atomic_load(&runs), ==, 0);
    /* Indices follow arrival order, as in Python: 0, 1, then 2 for the
     * last arrival (which ran the action). */
    CHECK_RC(weft_barrier_wait(&B), 2);
    CHECK_INT(atomic_load(&runs), ==, 1);
    CHECK_RC(join(t1), 0);
    CHECK_RC(join(t2), 1);
    CHECK_INT(weft_barrier_n_waiting(&B), ==, 0);
    full_round(3);
    CHECK_INT(atomic_load(&runs), ==, 2);
    CHECK_OK(weft_barrier_destroy(&B));
}

static void test_abort(void)
{
    CHECK_OK(weft_barrier_init(&B, 3, NULL, NULL));
    pthread_t t1 = spawn(bwait, NULL);
    pthread_t t2 = spawn(bwait, NULL);
    CHECK(wait_waiting(2));
    CHECK_OK(weft_barrier_abort(&B));
    CHECK_RC(join(t1), WEFT_EBROKEN);
    CHECK_RC(join(t2), WEFT_EBROKEN);
    CHECK(weft_barrier_is_broken(&B));
    CHECK_INT(weft_barrier_n_waiting(&B), ==, 0);
    CHECK_RC(weft_barrier_wait(&B), WEFT_EBROKEN);
    CHECK_RC(weft_barrier_wait_until(&B, 0), WEFT_EBROKEN);
    CHECK_OK(weft_barrier_abort(&B)); /* again: still broken, no harm */
    CHECK_OK(weft_barrier_reset(&B));
    CHECK(!weft_barrier_is_broken(&B));
    full_round(3);
    CHECK_OK(weft_barrier_destroy(&B));
}

static void test_timeout_breaks(void)
{
    CHECK_OK(weft_barrier_init(&B, 3, NULL, NULL));
    /* Alone: the waiter whose deadline passes gets -ETIMEDOUT. */
    weft_time_t dl = weft_deadline_in_ms(20);
    CHECK_RC(weft_barrier_wait_until(&B, dl), -ETIMEDOUT);
    CHECK_INT(weft_now(), >=, dl);
    CHECK(weft_barrier_is_broken(&B));
    CHECK_RC(weft_barrier_wait(&B), WEFT_EBROKEN);
    CHECK_OK(weft_barrier_reset(&B));
    CHECK(!weft_barrier_is_broken(&B));

    /* With another waiter: it gets WEFT_EBROKEN. */
    pthread_t t = spawn(bwait, NULL);
    CHECK(wait_waiting(1));
    CHECK_RC(weft_barrier_wait_until(&B, weft_deadline_in_ms(10)), -ETIMEDOUT);
    CHECK_RC(join(t), WEFT_EBROKEN);
    CHECK(weft_barrier_is_broken(&B));
    CHECK_OK(weft_barrier_reset(&B));
    full_round(3);
    CHECK_OK(weft_barrier_destroy(&B));
}

/* reset while callers wait: they get WEFT_EBROKEN, the barrier is at once
 * unbroken, and the next round works even if they are slow to leave. */
static void test_reset_with_waiters(void)
{
    CHECK_OK(weft_barrier_init(&B, 3, NULL, NULL));
    pthread_t t1 = spawn(bwait, NULL);
    pthread_t t2 = spawn(bwait, NULL);
    CHECK(wait_waiting(2));
    CHECK_OK(weft_barrier_reset(&B));
    CHECK(!weft_barrier_is_broken(&B));
    full_round(3);
    CHECK_RC(join(t1), WEFT_EBROKEN);
    CHECK_RC(join(t2), WEFT_EBROKEN);
    CHECK_OK(weft_barrier_reset(&B)); /* nobody waits: a no-op */
    full_round(3);
    CHECK_OK(weft_barrier_destroy(&B));
}

/* The action runs under the barrier's lock: calls on the same barrier from
 * it are refused, not deadlocked. */
struct self_call {
    weft_barrier_t *b;
    int wait_rc, abort_rc, reset_rc;
    bool broken;
};

static void self_action(void *arg)
{
    struct self_call *s = arg;
    s->wait_rc = weft_barrier_wait(s->b);
    s->abort_rc = weft_barrier_abort(s->b);
    s->reset_rc = weft_barrier_reset(s->b);
    s->broken = weft_barrier_is_broken(s->b);
}

static void test_action_self_calls(void)
{
    struct self_call s = {.b = &B};
    CHECK_OK(weft_barrier_init(&B, 1, self_action, &s));
    CHECK_RC(weft_barrier_wait(&B), 0);
    CHECK_RC(s.wait_rc, -EDEADLK);
    CHECK_RC(s.abort_rc, -EDEADLK);
    CHECK_RC(s.reset_rc, -EDEADLK);
    CHECK(!s.broken);
    CHECK(!weft_barrier_is_broken(&B));
    CHECK_OK(weft_barrier_destroy(&B));
}

/* ---- stress: parties threads, many rounds -------------------------------- */

enum { PARTIES = 4 };

struct bstress {
    weft_barrier_t b;
    long rounds;
    _Atomic unsigned char *seen; /* [round][index] */
    _Atomic long actions;        /* rounds completed, counted by the action */
    pthread_t action_thread;     /* who ran the last action */
    _Atomic int violations;
};

static void stress_action(void *arg)
{
    struct bstress *s = arg;
    atomic_fetch_add(&s->actions, 1);
    s->action_thread = pthread_self(); /* ordered before the release */
}

static void bstress_worker(void *p, int idx)
{
    (void)idx;
    struct bstress *s = p;
    for (long r = 0; r < s->rounds; r++) {
        int i = (r % 7 == 3) ? weft_barrier_wait_until(&s->b, weft_deadline_in(60))
                             : weft_barrier_wait(&s->b);
        if (i < 0 || i >= PARTIES) {
            atomic_fetch_add(&s->violations, 1);
            return;
        }
        /* The action of round r ran before anyone left round r. */
        if (atomic_load(&s->actions) < r + 1)
            atomic_fetch_add(&s->violations, 1);
        if (i == PARTIES - 1 && !pthread_equal(s->action_thread, pthread_self()))
            atomic_fetch_add(&s->violations, 1); /* parties-1 is the last arrival */
        if (atomic_fetch_add(&s->seen[r * PARTIES + i], 1) != 0)
            atomic_fetch_add(&s->violations, 1);
    }
}

static void test_stress_rounds(void)
{
    struct bstress s = {0};
    s.rounds = check_iters("BARRIER_ROUNDS", 5000);
    s.seen = calloc((size_t)(s.rounds * PARTIES), 1);
    CHECK(s.seen != NULL);
    CHECK_OK(weft_barrier_init(&s.b, PARTIES, stress_action, &s));
    check_parallel(PARTIES, bstress_worker, &s);
    long bad = 0;
    for (long i = 0; i < s.rounds * PARTIES; i++)
        bad += atomic_load(&s.seen[i]) != 1;
    free((void *)s.seen);
    CHECK_INT(atomic_load(&s.violations), ==, 0);
    CHECK_INT(bad, ==, 0);
    CHECK_INT(atomic_load(&s.actions), ==, s.rounds);
    CHECK_OK(weft_barrier_destroy(&s.b));
}

/* More threads than parties: rounds overlap in the parking queue. A
 * controller aborts the barrier once enough rounds have completed (a fixed
 * quota per thread could strand the last two threads without a third).
 * Every completed round must have handed out each index exactly once. */
struct bmany {
    weft_barrier_t b;
    long target;
    weft_event_t enough;
    _Atomic long by_index[3];
    _Atomic long actions;
    _Atomic int violations;
};

static void bmany_action(void *arg)
{
    struct bmany *s = arg;
    if (atomic_fetch_add(&s->actions, 1) + 1 == s->target)
        weft_event_set(&s->enough);
}

static void bmany_worker(void *p, int idx)
{
    struct bmany *s = p;
    if (idx == 0) {
        if (weft_event_wait(&s->enough) != 0 || weft_barrier_abort(&s->b) != 0)
            atomic_fetch_add(&s->violations, 1);
        return;
    }
    for (;;) {
        int i = weft_barrier_wait(&s->b);
        if (i == WEFT_EBROKEN)
            return;
        if (i < 0 || i >= 3)
            atomic_fetch_add(&s->violations, 1);
        else
            atomic_fetch_add(&s->by_index[i], 1);
    }
}

static void test_stress_more_threads(void)
{
    struct bmany s = {.enough = WEFT_EVENT_INIT};
    s.target = check_iters("BARRIER_MANY", 5000);
    CHECK_OK(weft_barrier_init(&s.b, 3, bmany_action, &s));
    check_parallel(1 + 6, bmany_worker, &s);
    CHECK_INT(atomic_load(&s.violations), ==, 0);
    long rounds = atomic_load(&s.actions);
    CHECK_INT(rounds, >=, s.target);
    for (int i = 0; i < 3; i++)
        CHECK_INT(atomic_load(&s.by_index[i]), ==, rounds);
    CHECK(weft_barrier_is_broken(&s.b));
    CHECK_OK(weft_barrier_reset(&s.b));
    CHECK_OK(weft_barrier_destroy(&s.b));
}

/* Aborts and resets racing with rounds: every wait returns a valid index,
 * WEFT_EBROKEN or -ETIMEDOUT, and nothing hangs. */
struct bchaos {
    weft_barrier_t b;
    long iters;
    _Atomic int stop;
    _Atomic long ok, broken, timeouts;
    _Atomic int violations;
};

static void bchaos_worker(void *p, int idx)
{
    struct bchaos *s = p;
    if (idx == 0) {
        for (long i = 0; i < s->iters / 10; i++) {
            busy(20000); /* let a few rounds pass */
            if (i % 2)
                weft_barrier_abort(&s->b);
            weft_barrier_reset(&s->b);
        }
        atomic_store(&s->stop, 1);
        weft_barrier_abort(&s->b); /* release whoever still waits */
        return;
    }
    while (!atomic_load(&s->stop)) {
        int r = weft_barrier_wait_until(&s->b, weft_deadline_in_ms(50));
        if (r >= 0 && r < 3)
            atomic_fetch_add(&s->ok, 1);
        else if (r == WEFT_EBROKEN) {
            atomic_fetch_add(&s->broken, 1);
            sched_yield();
        } else if (r == -ETIMEDOUT)
            atomic_fetch_add(&s->timeouts, 1);
        else
            atomic_fetch_add(&s->violations, 1);
    }
}

static void test_stress_abort_reset(void)
{
    struct bchaos s = {0};
    s.iters = check_iters("BARRIER_CHAOS", 2000);
    CHECK_OK(weft_barrier_init(&s.b, 3, NULL, NULL));
    check_parallel(4, bchaos_worker, &s);
    fprintf(stderr, "  %ld rounds passed, %ld broken, %ld timed out\n", atomic_load(&s.ok),
            atomic_load(&s.broken), atomic_load(&s.timeouts));
    CHECK_INT(atomic_load(&s.violations), ==, 0);
    CHECK_INT(weft_barrier_n_waiting(&s.b), ==, 0);
    CHECK_OK(weft_barrier_reset(&s.b));
    CHECK_OK(weft_barrier_destroy(&s.b));
}

/* Once every party has returned from its wait, the barrier may be freed (a
 * barrier on the stack or in a block of the party that waits last). Here
 * main arrives first and another thread arrives last and releases the
 * round; main frees the barrier as soon as its wait returns: the releaser
 * must be done with it by then (ASan: use after free; TSan: a race with
 * the free). To hit the window every time, main's park is held back (in
 * the park ops' prepare, which runs before the lot validates) until the
 * releaser has bumped the word: main then sees the round completed without
 * sleeping, while the releaser may still be unlocking the mutex. */
static _Atomic(_Atomic uint32_t *) hold_word; /* armed: spin while it is 0 */

static void hold_prepare(struct weft__waiter *w)
{
    _Atomic uint32_t *word = atomic_exchange(&hold_word, NULL); /* one shot */
    weft_time_t dl = weft_deadline_in(10);
    /* A tight spin: leave the moment the releaser bumps the word. */
    for (unsigned n = 0; word && atomic_load(word) == 0; n++)
        if ((n & 0xffff) == 0 && weft_now() > dl)
            break;
    weft__thread_park_ops.prepare(w);
}

static const struct weft__park_ops hold_ops = {
    .name = "hold",
    .prepare = hold_prepare,
    .wait = probe_wait,
    .wake = probe_wake,
};

static void *last_arrival(void *p)
{
    weft_barrier_t *b = p;
    weft_time_t dl = weft_deadline_in(30);
    while (weft_barrier_n_waiting(b) < 1 && weft_now() < dl)
        sched_yield(); /* main is counted in the round */
    return (void *)(intptr_t)weft_barrier_wait(b); /* releases the round */
}

static void test_free_after_wait(void)
{
    long rounds = check_iters("BARRIER_FREE_ROUNDS", 300);
    weft__park_set_ops(&hold_ops);
    for (long i = 0; i < rounds; i++) {
        weft_barrier_t *b = malloc(sizeof *b);
        CHECK(b != NULL);
        CHECK_OK(weft_barrier_init(b, 2, NULL, NULL));
        atomic_store(&hold_word, (_Atomic uint32_t *)&b->word);
        pthread_t t = spawn(last_arrival, b);
        CHECK_RC(weft_barrier_wait(b), 0);
        CHECK_OK(weft_barrier_destroy(b));
        free(b); /* the releaser may still be in its wait: it must be done with b */
        CHECK_RC(join(t), 1);
    }
    weft__park_set_ops(NULL);
}

int main(void)
{
    RUN(test_bad_input);
    RUN(test_one_party);
    RUN(test_basic_round);
    RUN(test_abort);
    RUN(test_timeout_breaks);
    RUN(test_reset_with_waiters);
    RUN(test_action_self_calls);
    RUN(test_free_after_wait);
    RUN(test_stress_rounds);
    RUN(test_stress_more_threads);
    RUN(test_stress_abort_reset);
    return check_done();
}
