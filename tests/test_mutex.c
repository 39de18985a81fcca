/* weft_mutex_t: basics, misuse, deadlines, and a counting stress. */
#include <sched.h>
#include <stdatomic.h>
#include <weft.h>

#include "check.h"

static void test_basic(void)
{
    weft_mutex_t m = WEFT_MUTEX_INIT;
    CHECK(!weft_mutex_is_locked(&m));
    CHECK_OK(weft_mutex_lock(&m));
    CHECK(weft_mutex_is_locked(&m));
    CHECK_RC(weft_mutex_lock_try(&m), -EAGAIN);
    CHECK_RC(weft_mutex_destroy(&m), -EBUSY);
    CHECK_OK(weft_mutex_unlock(&m));
    CHECK_OK(weft_mutex_lock_try(&m));
    CHECK_OK(weft_mutex_unlock(&m));
    CHECK_OK(weft_mutex_destroy(&m));
    CHECK_OK(weft_mutex_init(&m));
}

static void test_bad_input(void)
{
    weft_mutex_t m = WEFT_MUTEX_INIT;
    CHECK_RC(weft_mutex_init(NULL), -EINVAL);
    CHECK_RC(weft_mutex_lock(NULL), -EINVAL);
    CHECK_RC(weft_mutex_lock_try(NULL), -EINVAL);
    CHECK_RC(weft_mutex_lock_until(NULL, WEFT_FOREVER), -EINVAL);
    CHECK_RC(weft_mutex_lock_until(&m, -1), -EINVAL);
    CHECK_RC(weft_mutex_unlock(NULL), -EINVAL);
    CHECK_RC(weft_mutex_destroy(NULL), -EINVAL);
    CHECK(!weft_mutex_is_locked(NULL));
    /* Unlocking a free mutex is refused and changes nothing. */
    CHECK_RC(weft_mutex_unlock(&m), -EPERM);
    CHECK_OK(weft_mutex_lock(&m));
    /* Relocking from the owner is reported, not a hang. */
    CHECK_RC(weft_mutex_lock(&m), -EDEADLK);
    CHECK_RC(weft_mutex_lock_until(&m, weft_deadline_in(10)), -EDEADLK);
    CHECK_OK(weft_mutex_unlock(&m));
    CHECK(!weft_mutex_is_locked(&m));
}

static weft_mutex_t shared_m = WEFT_MUTEX_INIT;

static void *unlock_from_other(void *p)
{
    (void)p;
    return (void *)(intptr_t)weft_mutex_unlock(&shared_m);
}

static void *lock_until_short(void *p)
{
    (void)p;
    return (void *)(intptr_t)weft_mutex_lock_until(&shared_m, weft_deadline_in_ms(20));
}

static void test_non_owner_and_deadline(void)
{
    CHECK_OK(weft_mutex_lock(&shared_m));
    pthread_t t;
    void *r;
    pthread_create(&t, NULL, unlock_from_other, NULL);
    pthread_join(t, &r);
    CHECK_RC((intptr_t)r, -EPERM);
    CHECK(weft_mutex_is_locked(&shared_m));
    weft_time_t t0 = weft_now();
    pthread_create(&t, NULL, lock_until_short, NULL);
    pthread_join(t, &r);
    CHECK_RC((intptr_t)r, -ETIMEDOUT);
    CHECK_INT(weft_now() - t0, >=, 20000000);
    /* The timed-out waiter left no PARKED residue: unlock and relock work. */
    CHECK_OK(weft_mutex_unlock(&shared_m));
    CHECK_OK(weft_mutex_destroy(&shared_m));
}

struct counter {
    weft_mutex_t m;
    long value;      /* protected by m */
    long per_thread;
    _Atomic int inside;
    _Atomic int violations;
};

static void count_worker(void *p, int idx)
{
    struct counter *c = p;
    for (long i = 0; i < c->per_thread; i++) {
        int r;
        if ((i + idx) % 64 == 0)
            r = weft_mutex_lock_until(&c->m, weft_deadline_in(60));
        else if ((i + idx) % 64 == 1) {
            while ((r = weft_mutex_lock_try(&c->m)) == -EAGAIN)
                sched_yield();
        } else
            r = weft_mutex_lock(&c->m);
        if (r != 0) {
            atomic_fetch_add(&c->violations, 1);
            continue;
        }
        if (atomic_fetch_add(&c->inside, 1) != 0)
            atomic_fetch_add(&c->violations, 1);
        c->value++;
        atomic_fetch_sub(&c->inside, 1);
        weft_mutex_unlock(&c->m);
    }
}

static void test_stress_counter(void)
{
    struct counter c = {.m = WEFT_MUTEX_INIT};
    int threads = 8;
    c.per_thread = check_iters("MUTEX_ITERS", 200000);
    check_parallel(threads, count_worker, &c);
    CHECK_INT(atomic_load(&c.violations), ==, 0);
    CHECK_INT(c.value, ==, threads * c.per_thread);
    CHECK(!weft_mutex_is_locked(&c.m));
    CHECK_OK(weft_mutex_destroy(&c.m));
}

/* Anti-starvation: one thread hammers the lock in a tight loop; another
 * must still get it a fair number of times within a bounded number of the
 * hammer's acquisitions. */
struct starve {
    weft_mutex_t m;
    _Atomic int stop;
    _Atomic long hammer, other;
};

static void starve_worker(void *p, int idx)
{
    struct starve *s = p;
    if (idx == 0) {
        while (!atomic_load(&s->stop)) {
            weft_mutex_lock(&s->m);
            atomic_fetch_add(&s->hammer, 1);
            weft_mutex_unlock(&s->m);
        }
    } else {
        long want = check_iters("MUTEX_STARVE", 200);
        for (long i = 0; i < want; i++) {
            weft_mutex_lock(&s->m);
            atomic_fetch_add(&s->other, 1);
            weft_mutex_unlock(&s->m);
        }
        atomic_store(&s->stop, 1);
    }
}

static void test_no_starvation(void)
{
    struct starve s = {.m = WEFT_MUTEX_INIT};
    check_parallel(2, starve_worker, &s);
    CHECK_INT(atomic_load(&s.other), ==, check_iters("MUTEX_STARVE", 200));
}

int main(void)
{
    RUN(test_basic);
    RUN(test_bad_input);
    RUN(test_non_owner_and_deadline);
    RUN(test_stress_counter);
    RUN(test_no_starvation);
    return check_done();
}
