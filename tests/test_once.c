/* weft_once_t: exactly once under a race of many threads, every caller
 * returning only after fn has finished, recursion refused. */
#include "sync_util.h"

static void bump(void *arg) { (*(int *)arg)++; }

static void test_basic_and_bad_input(void)
{
    weft_once_t o = WEFT_ONCE_INIT;
    int n = 0;
    CHECK_RC(weft_once(NULL, bump, &n), -EINVAL);
    CHECK_RC(weft_once(&o, NULL, &n), -EINVAL);
    CHECK(!weft_once_done(NULL));
    CHECK(!weft_once_done(&o));
    CHECK_OK(weft_once(&o, bump, &n));
    CHECK(weft_once_done(&o));
    CHECK_OK(weft_once(&o, bump, &n));
    CHECK_OK(weft_once(&o, bump, &n));
    CHECK_INT(n, ==, 1);
}

static weft_once_t R = WEFT_ONCE_INIT;
static int recursive_rc = 1;

static void recurse(void *arg)
{
    (void)arg;
    recursive_rc = weft_once(&R, recurse, NULL);
}

static void test_recursion(void)
{
    CHECK_OK(weft_once(&R, recurse, NULL));
    CHECK_RC(recursive_rc, -EDEADLK);
    CHECK(weft_once_done(&R));
    CHECK_OK(weft_once(&R, recurse, NULL));
}

/* ---- the race: many threads, many once objects --------------------------- */

enum { THREADS = 8 };

struct slot {
    weft_once_t once;
    int runs;      /* written by fn only */
    long payload;  /* written by fn: every caller must see it on return */
};

struct once_race {
    struct slot *slots;
    long rounds;
    pthread_barrier_t gate;
    _Atomic int violations;
};

static void init_slot(void *arg)
{
    struct slot *s = arg;
    s->runs++;
    /* Take a little while, so that others arrive and park. */
    for (int i = 0; i < 3; i++)
        sched_yield();
    s->payload = 42;
}

static void once_worker(void *p, int idx)
{
    (void)idx;
    struct once_race *r = p;
    for (long k = 0; k < r->rounds; k++) {
        pthread_barrier_wait(&r->gate); /* all threads race on slot k */
        struct slot *s = &r->slots[k];
        if (weft_once(&s->once, init_slot, s) != 0)
            atomic_fetch_add(&r->violations, 1);
        if (s->payload != 42 || s->runs != 1 || !weft_once_done(&s->once))
            atomic_fetch_add(&r->violations, 1);
    }
}

static void test_race(void)
{
    struct once_race r = {0};
    r.rounds = check_iters("ONCE_ROUNDS", 2000);
    r.slots = calloc((size_t)r.rounds, sizeof *r.slots);
    CHECK(r.slots != NULL);
    pthread_barrier_init(&r.gate, NULL, THREADS);
    check_parallel(THREADS, once_worker, &r);
    pthread_barrier_destroy(&r.gate);
    long bad = 0;
    for (long k = 0; k < r.rounds; k++)
        bad += r.slots[k].runs != 1 || r.slots[k].once.state != 2 /* DONE, no PARKED */;
    free(r.slots);
    CHECK_INT(atomic_load(&r.violations), ==, 0);
    CHECK_INT(bad, ==, 0);
}

int main(void)
{
    RUN(test_basic_and_bad_input);
    RUN(test_recursion);
    RUN(test_race);
    return check_done();
}
