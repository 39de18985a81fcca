/* weft_cond_t: misuse, deadlines, wait_for, exact notify counts, and a
 * producer/consumer stress that loses no wake-up. */
#include "sync_util.h"

static bool is_true(void *arg) { return *(bool *)arg; }

static void test_basic_and_bad_input(void)
{
    weft_cond_t c = WEFT_COND_INIT;
    weft_mutex_t m = WEFT_MUTEX_INIT;
    bool yes = true;
    CHECK_RC(weft_cond_init(NULL), -EINVAL);
    CHECK_RC(weft_cond_destroy(NULL), -EINVAL);
    CHECK_RC(weft_cond_wait(NULL, &m), -EINVAL);
    CHECK_RC(weft_cond_wait(&c, NULL), -EINVAL);
    CHECK_RC(weft_cond_wait_until(NULL, &m, WEFT_FOREVER), -EINVAL);
    CHECK_RC(weft_cond_wait_until(&c, NULL, WEFT_FOREVER), -EINVAL);
    CHECK_RC(weft_cond_wait_for(NULL, &m, is_true, &yes, WEFT_FOREVER), -EINVAL);
    CHECK_RC(weft_cond_wait_for(&c, NULL, is_true, &yes, WEFT_FOREVER), -EINVAL);
    CHECK_RC(weft_cond_wait_for(&c, &m, NULL, &yes, WEFT_FOREVER), -EINVAL);
    CHECK_RC(weft_cond_notify(NULL), -EINVAL);
    CHECK_RC(weft_cond_notify_n(NULL, 1), -EINVAL);
    CHECK_RC(weft_cond_notify_n(NULL, 0), -EINVAL);
    CHECK_RC(weft_cond_notify_all(NULL), -EINVAL);
    /* Waiting without holding the mutex. */
    CHECK_RC(weft_cond_wait(&c, &m), -EPERM);
    CHECK_RC(weft_cond_wait_until(&c, &m, WEFT_FOREVER), -EPERM);
    CHECK_RC(weft_cond_wait_for(&c, &m, is_true, &yes, WEFT_FOREVER), -EPERM);
    CHECK_OK(weft_mutex_lock(&m));
    CHECK_RC(weft_cond_wait_until(&c, &m, -1), -EINVAL);
    CHECK_RC(weft_cond_wait_for(&c, &m, is_true, &yes, -1), -EINVAL);
    CHECK(weft_mutex_is_locked(&m));
    /* Nobody waits: notifies wake no one. */
    CHECK_RC(weft_cond_notify(&c), 0);
    CHECK_RC(weft_cond_notify_n(&c, 5), 0);
    CHECK_RC(weft_cond_notify_n(&c, 0), 0);
    CHECK_RC(weft_cond_notify_all(&c), 0);
    /* A true predicate returns at once, past its deadline too. */
    CHECK_OK(weft_cond_wait_for(&c, &m, is_true, &yes, 0));
    CHECK_OK(weft_mutex_unlock(&m));
    CHECK_OK(weft_cond_destroy(&c));
    CHECK_OK(weft_cond_init(&c));
    CHECK_OK(weft_mutex_destroy(&m));
}

static void test_timeouts(void)
{
    weft_cond_t c = WEFT_COND_INIT;
    weft_mutex_t m = WEFT_MUTEX_INIT;
    bool no = false;
    CHECK_OK(weft_mutex_lock(&m));
    weft_time_t dl = weft_deadline_in_ms(20);
    CHECK_RC(weft_cond_wait_until(&c, &m, dl), -ETIMEDOUT);
    CHECK_INT(weft_now(), >=, dl);
    CHECK(weft_mutex_is_locked(&m));
    CHECK_RC(weft_mutex_lock_try(&m), -EAGAIN);
    CHECK_RC(weft_cond_wait_until(&c, &m, 0), -ETIMEDOUT); /* already past */
    CHECK_RC(weft_cond_wait_for(&c, &m, is_true, &no, weft_deadline_in_ms(10)), -ETIMEDOUT);
    /* Still ours: unlock works, and the condition is clean. */
    CHECK_OK(weft_mutex_unlock(&m));
    CHECK_OK(weft_cond_destroy(&c));
    CHECK_OK(weft_mutex_destroy(&m));
}

static weft_cond_t C = WEFT_COND_INIT;
static weft_mutex_t M = WEFT_MUTEX_INIT;
static _Atomic int woken;

static void *wait_once(void *p)
{
    (void)p;
    probe_install();
    weft_mutex_lock(&M);
    int r = weft_cond_wait(&C, &M);
    /* m is held again on return. */
    if (r == 0 && weft_mutex_lock_try(&M) != -EAGAIN)
        r = -1000;
    atomic_fetch_add(&woken, 1);
    weft_mutex_unlock(&M);
    return (void *)(intptr_t)r;
}

static void *wait_other_thread_holds(void *p)
{
    (void)p;
    return (void *)(intptr_t)weft_cond_wait(&C, &M);
}

static void test_notify_counts(void)
{
    enum { N = 4 };
    probe_reset();
    atomic_store(&woken, 0);
    pthread_t t[N];
    for (int i = 0; i < N; i++)
        t[i] = spawn(wait_once, NULL);
    CHECK(wait_count(&probe_parked, N));
    CHECK_RC(weft_cond_destroy(&C), -EBUSY);
    /* Another thread holds the mutex: waiting on it is refused. */
    CHECK_OK(weft_mutex_lock(&M));
    CHECK_RC(join(spawn(wait_other_thread_holds, NULL)), -EPERM);
    CHECK_OK(weft_mutex_unlock(&M));
    CHECK_RC(weft_cond_notify(&C), 1);
    CHECK(wait_count(&woken, 1));
    CHECK_RC(weft_cond_notify_n(&C, 2), 2);
    CHECK(wait_count(&woken, 3));
    CHECK_INT(atomic_load(&woken), ==, 3);
    CHECK_RC(weft_cond_notify_all(&C), 1);
    for (int i = 0; i < N; i++)
        CHECK_RC(join(t[i]), 0);
    CHECK_INT(atomic_load(&woken), ==, N);
    CHECK_RC(weft_cond_notify_all(&C), 0);
    CHECK_OK(weft_cond_destroy(&C));
}

/* wait_for sees the predicate change made by another thread. */
struct flag {
    weft_mutex_t m;
    weft_cond_t c;
    bool ready;
};

static void *set_ready(void *p)
{
    struct flag *f = p;
    weft_mutex_lock(&f->m);
    f->ready = true;
    weft_mutex_unlock(&f->m);
    return (void *)(intptr_t)weft_cond_notify(&f->c);
}

static void test_wait_for(void)
{
    struct flag f = {WEFT_MUTEX_INIT, WEFT_COND_INIT, false};
    CHECK_OK(weft_mutex_lock(&f.m));
    pthread_t t = spawn(set_ready, &f);
    CHECK_OK(weft_cond_wait_for(&f.c, &f.m, is_true, &f.ready, WEFT_FOREVER));
    CHECK(f.ready);
    CHECK_OK(weft_mutex_unlock(&f.m));
    CHECK_INT(join(t), >=, 0);
}

/* ---- producer/consumer ----------------------------------------------------- */

enum { QCAP = 8, PRODUCERS = 3, CONSUMERS = 3 };

struct pc {
    weft_mutex_t m;
    weft_cond_t not_empty, not_full;
    long buf[QCAP];
    unsigned head, len;      /* protected by m */
    int producers_left;      /* protected by m */
    long per_producer;
    _Atomic unsigned char *seen;
    _Atomic long consumed;
    _Atomic int failures;
};

static bool has_room(void *arg) { struct pc *q = arg; return q->len < QCAP; }
static bool has_item_or_done(void *arg)
{
    struct pc *q = arg;
    return q->len > 0 || q->producers_left == 0;
}

static void pc_worker(void *p, int idx)
{
    struct pc *q = p;
    if (idx < PRODUCERS) {
        for (long i = 0; i < q->per_producer; i++) {
            long item = idx * q->per_producer + i;
            weft_mutex_lock(&q->m);
            int r;
            if (i % 2)
                r = weft_cond_wait_for(&q->not_full, &q->m, has_room, q, weft_deadline_in(30));
            else {
                r = 0;
                while (r == 0 && !has_room(q))
                    r = weft_cond_wait_until(&q->not_full, &q->m, weft_deadline_in(30));
            }
            if (r != 0) /* a lost wake-up shows as a 30 s time-out */
                atomic_fetch_add(&q->failures, 1);
            q->buf[(q->head + q->len) % QCAP] = item;
            q->len++;
            weft_mutex_unlock(&q->m);
            /* notify outside the mutex half of the time: both are allowed */
            if (i % 3 == 0) {
                weft_mutex_lock(&q->m);
                weft_cond_notify(&q->not_empty);
                weft_mutex_unlock(&q->m);
            } else {
                weft_cond_notify(&q->not_empty);
            }
        }
        weft_mutex_lock(&q->m);
        if (--q->producers_left == 0)
            weft_cond_notify_all(&q->not_empty);
        weft_mutex_unlock(&q->m);
    } else {
        for (;;) {
            weft_mutex_lock(&q->m);
            if (weft_cond_wait_for(&q->not_empty, &q->m, has_item_or_done, q,
                                   weft_deadline_in(30)) != 0)
                atomic_fetch_add(&q->failures, 1);
            if (q->len == 0) { /* producers are done and the queue drained */
                weft_mutex_unlock(&q->m);
                break;
            }
            long item = q->buf[q->head];
            q->head = (q->head + 1) % QCAP;
            q->len--;
            weft_mutex_unlock(&q->m);
            weft_cond_notify(&q->not_full);
            if (atomic_fetch_add(&q->seen[item], 1) != 0)
                atomic_fetch_add(&q->failures, 1); /* duplicated */
            atomic_fetch_add(&q->consumed, 1);
        }
    }
}

static void test_producer_consumer(void)
{
    struct pc q = {.m = WEFT_MUTEX_INIT, .not_empty = WEFT_COND_INIT,
                   .not_full = WEFT_COND_INIT, .producers_left = PRODUCERS};
    q.per_producer = check_iters("COND_ITEMS", 30000);
    long total = PRODUCERS * q.per_producer;
    q.seen = calloc((size_t)total, 1);
    CHECK(q.seen != NULL);
    check_parallel(PRODUCERS + CONSUMERS, pc_worker, &q);
    CHECK_INT(atomic_load(&q.failures), ==, 0);
    CHECK_INT(atomic_load(&q.consumed), ==, total);
    long missing = 0;
    for (long i = 0; i < total; i++)
        missing += atomic_load(&q.seen[i]) != 1;
    free((void *)q.seen);
    CHECK_INT(missing, ==, 0);
    CHECK_INT(q.len, ==, 0);
    CHECK_OK(weft_cond_destroy(&q.not_empty));
    CHECK_OK(weft_cond_destroy(&q.not_full));
    CHECK_OK(weft_mutex_destroy(&q.m));
}

int main(void)
{
    RUN(test_basic_and_bad_input);
    RUN(test_timeouts);
    RUN(test_notify_counts);
    RUN(test_wait_for);
    RUN(test_producer_consumer);
    return check_done();
}
