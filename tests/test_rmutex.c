/* weft_rmutex_t: recursion, ownership, overflow, deadlines, a nested stress. */
#include "sync_util.h"

static void test_basic(void)
{
    weft_rmutex_t m = WEFT_RMUTEX_INIT;
    CHECK_OK(weft_rmutex_lock(&m));
    CHECK_OK(weft_rmutex_lock(&m));
    CHECK_OK(weft_rmutex_lock_try(&m));
    CHECK_OK(weft_rmutex_lock_until(&m, weft_deadline_in(1)));
    CHECK_INT(m.depth, ==, 4);
    CHECK_RC(weft_rmutex_destroy(&m), -EBUSY);
    for (int i = 0; i < 3; i++) {
        CHECK_OK(weft_rmutex_unlock(&m));
        CHECK(weft_mutex_is_locked(&m.mutex));
    }
    CHECK_OK(weft_rmutex_unlock(&m));
    CHECK(!weft_mutex_is_locked(&m.mutex));
    CHECK_RC(weft_rmutex_unlock(&m), -EPERM);
    CHECK_OK(weft_rmutex_destroy(&m));
    CHECK_OK(weft_rmutex_init(&m));
    CHECK_OK(weft_rmutex_lock_try(&m));
    CHECK_OK(weft_rmutex_unlock(&m));
    CHECK_OK(weft_rmutex_destroy(&m));
}

static void test_bad_input(void)
{
    weft_rmutex_t m = WEFT_RMUTEX_INIT;
    CHECK_RC(weft_rmutex_init(NULL), -EINVAL);
    CHECK_RC(weft_rmutex_destroy(NULL), -EINVAL);
    CHECK_RC(weft_rmutex_lock(NULL), -EINVAL);
    CHECK_RC(weft_rmutex_lock_try(NULL), -EINVAL);
    CHECK_RC(weft_rmutex_lock_until(NULL, WEFT_FOREVER), -EINVAL);
    CHECK_RC(weft_rmutex_lock_until(&m, -1), -EINVAL);
    CHECK_RC(weft_rmutex_unlock(NULL), -EINVAL);
    CHECK_OK(weft_rmutex_lock(&m));
    /* A negative deadline is refused even for the owner, and changes
     * nothing. */
    CHECK_RC(weft_rmutex_lock_until(&m, -5), -EINVAL);
    CHECK_INT(m.depth, ==, 1);
    CHECK_OK(weft_rmutex_unlock(&m));
    CHECK_OK(weft_rmutex_destroy(&m));
}

static void test_overflow(void)
{
    weft_rmutex_t m = WEFT_RMUTEX_INIT;
    CHECK_OK(weft_rmutex_lock(&m));
    /* White box: 2^32-1 real relocks would take too long. */
    m.depth = UINT32_MAX - 1;
    CHECK_OK(weft_rmutex_lock(&m));
    CHECK_U64(m.depth, ==, UINT32_MAX);
    CHECK_RC(weft_rmutex_lock(&m), -EOVERFLOW);
    CHECK_RC(weft_rmutex_lock_try(&m), -EOVERFLOW);
    CHECK_RC(weft_rmutex_lock_until(&m, WEFT_FOREVER), -EOVERFLOW);
    CHECK_U64(m.depth, ==, UINT32_MAX);
    CHECK_OK(weft_rmutex_unlock(&m));
    m.depth = 1;
    CHECK_OK(weft_rmutex_unlock(&m));
    CHECK(!weft_mutex_is_locked(&m.mutex));
    CHECK_OK(weft_rmutex_lock(&m));
    CHECK_OK(weft_rmutex_unlock(&m));
    CHECK_OK(weft_rmutex_destroy(&m));
}

static weft_rmutex_t shared = WEFT_RMUTEX_INIT;

static void *other_unlock(void *p)
{
    (void)p;
    return (void *)(intptr_t)weft_rmutex_unlock(&shared);
}
static void *other_try(void *p)
{
    (void)p;
    return (void *)(intptr_t)weft_rmutex_lock_try(&shared);
}
static void *other_until(void *p)
{
    (void)p;
    return (void *)(intptr_t)weft_rmutex_lock_until(&shared, weft_deadline_in_ms(20));
}
static void *other_lock(void *p)
{
    (void)p;
    int r = weft_rmutex_lock(&shared);
    if (r == 0)
        r = weft_rmutex_lock(&shared);
    if (r == 0)
        r = weft_rmutex_unlock(&shared);
    if (r == 0)
        r = weft_rmutex_unlock(&shared);
    return (void *)(intptr_t)r;
}

static void test_other_threads(void)
{
    CHECK_OK(weft_rmutex_lock(&shared));
    CHECK_OK(weft_rmutex_lock(&shared));
    CHECK_RC(join(spawn(other_unlock, NULL)), -EPERM);
    CHECK_RC(join(spawn(other_try, NULL)), -EAGAIN);
    CHECK_RC(join(spawn(other_until, NULL)), -ETIMEDOUT);
    CHECK_INT(shared.depth, ==, 2);
    /* A blocked locker gets it once both levels are released. */
    pthread_t t = spawn(other_lock, NULL);
    CHECK(wait_parked_key(&shared.mutex));
    CHECK_OK(weft_rmutex_unlock(&shared));
    CHECK(weft__is_parked(&shared.mutex)); /* still held once */
    CHECK_OK(weft_rmutex_unlock(&shared));
    CHECK_RC(join(t), 0);
    CHECK_OK(weft_rmutex_destroy(&shared));
}

struct nested {
    weft_rmutex_t m;
    long per_thread;
    long value; /* protected by m */
    _Atomic int inside;
    _Atomic int violations;
};

static void nested_worker(void *p, int idx)
{
    struct nested *n = p;
    for (long i = 0; i < n->per_thread; i++) {
        int depth = 1 + (int)((i + idx) % 3);
        int r = 0;
        for (int d = 0; d < depth && r == 0; d++) {
            if ((i + d) % 16 == 5)
                r = weft_rmutex_lock_until(&n->m, weft_deadline_in(60));
            else if ((i + d) % 16 == 9) {
                while ((r = weft_rmutex_lock_try(&n->m)) == -EAGAIN)
                    sched_yield();
            } else
                r = weft_rmutex_lock(&n->m);
            if (r != 0)
                atomic_fetch_add(&n->violations, 1);
            else if (d == 0 && atomic_fetch_add(&n->inside, 1) != 0)
                atomic_fetch_add(&n->violations, 1);
        }
        n->value++;
        if (n->m.depth != (uint32_t)depth)
            atomic_fetch_add(&n->violations, 1);
        atomic_fetch_sub(&n->inside, 1);
        for (int d = 0; d < depth; d++)
            if (weft_rmutex_unlock(&n->m) != 0)
                atomic_fetch_add(&n->violations, 1);
    }
}

static void test_stress_nested(void)
{
    struct nested n = {.m = WEFT_RMUTEX_INIT};
    n.per_thread = check_iters("RMUTEX_ITERS", 50000);
    check_parallel(4, nested_worker, &n);
    CHECK_INT(atomic_load(&n.violations), ==, 0);
    CHECK_INT(n.value, ==, 4 * n.per_thread);
    CHECK_OK(weft_rmutex_destroy(&n.m));
}

int main(void)
{
    RUN(test_basic);
    RUN(test_bad_input);
    RUN(test_overflow);
    RUN(test_other_threads);
    RUN(test_stress_nested);
    return check_done();
}
