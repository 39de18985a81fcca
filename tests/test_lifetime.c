/* Lifetimes: once a waiter's wait returns, the object it waited on may be
 * freed at once (a completion object in a block the waiter owns, or on its
 * stack). The party that released the waiter must be done with the object
 * by then: after the store that lets the waiter go it may use the address
 * only as a parking key. Each case parks a waiter on a fresh heap block,
 * lets another thread release it, and frees the block the moment the wait
 * returns; ASan (a use after free) or TSan (a race with the free) catches
 * any later touch by the releaser. The counts checked make each case fail
 * on a wrong wake-up too. Rounds scale with LIFETIME_ROUNDS. */
#include "sync_util.h"

#include <weft/future.h>
#include <weft/pool.h>

#include "future/internal.h" /* the future's state word: its parking key */

static long rounds(void) { return check_iters("LIFETIME_ROUNDS", 200); }

/*
 * Two ways to meet the releaser. Parked: the waiter is queued in the
 * parking lot before the release, so it returns only after being unparked.
 * Held: the waiter is stopped inside its park (the park ops' prepare, which
 * runs before the lot validates) until the release is visible; it then
 * fails validation and returns at once, while the releaser may still be
 * finishing its call: the window in which a late touch hits freed memory.
 */
static int hold_mode;
static _Atomic int in_prepare;
static bool (*hold_pred)(void *arg);
static void *hold_arg;
static _Thread_local bool hold_armed;

static void hold_prepare(struct weft__waiter *w)
{
    if (hold_armed) {
        hold_armed = false; /* one shot: later parks of this call run freely */
        atomic_store(&in_prepare, 1);
        weft_time_t dl = weft_deadline_in(10);
        for (unsigned n = 0; !hold_pred(hold_arg); n++)
            if ((n & 0xffff) == 0 && weft_now() > dl)
                break;
    }
    weft__thread_park_ops.prepare(w);
}

static const struct weft__park_ops hold_ops = {
    .name = "hold",
    .prepare = hold_prepare,
    .wait = probe_wait,
    .wake = probe_wake,
};

/* The waiting thread, before its wait. */
static void waiter_arm(bool (*pred)(void *arg), void *arg)
{
    if (!hold_mode)
        return;
    hold_pred = pred;
    hold_arg = arg;
    weft__park_set_ops(&hold_ops);
    hold_armed = true;
}

static void waiter_disarm(void)
{
    hold_armed = false;
    weft__park_set_ops(NULL);
}

/* The releasing thread, before its release: the waiter is about to wait. */
static bool releaser_ready(const void *key)
{
    if (!hold_mode)
        return wait_parked_key(key);
    return wait_count(&in_prepare, 1);
}

/* ---- mutex: the unlocker lets the parked locker in --------------------- */

struct mbox {
    weft_mutex_t m;
    int value; /* written under m */
};

static bool mutex_free(void *p)
{
    return !weft_mutex_is_locked(&((struct mbox *)p)->m);
}

static void *mutex_locker(void *p)
{
    struct mbox *b = p;
    waiter_arm(mutex_free, b);
    int r = weft_mutex_lock(&b->m);
    waiter_disarm();
    int v = b->value;
    if (r == 0)
        r = weft_mutex_unlock(&b->m);
    if (r == 0)
        r = weft_mutex_destroy(&b->m);
    free(b);
    return (void *)(intptr_t)(r == 0 ? v : -1);
}

static void test_mutex(void)
{
    for (long i = 0; i < rounds(); i++) {
        struct mbox *b = calloc(1, sizeof *b);
        CHECK_OK(weft_mutex_init(&b->m));
        CHECK_OK(weft_mutex_lock(&b->m));
        atomic_store(&in_prepare, 0);
        pthread_t t = spawn(mutex_locker, b);
        CHECK(releaser_ready(&b->m));
        b->value = 7;
        CHECK_OK(weft_mutex_unlock(&b->m)); /* b may be gone after this */
        CHECK_RC(join(t), 7);
    }
}

/* ---- event, latch, wait group, once: the setter lets waiters go -------- */

enum { K_EVENT, K_LATCH, K_WG, K_ONCE };

struct cbox {
    weft_event_t e;
    weft_latch_t l;
    weft_waitgroup_t wg;
    weft_once_t o;
    _Atomic int gate; /* once: fn runs until the waiter is parked */
    int value;
};

static void once_fn(void *p)
{
    struct cbox *b = p;
    weft_time_t dl = weft_deadline_in(30);
    while (!atomic_load(&b->gate) && weft_now() < dl)
        sched_yield();
    b->value = 5;
}

static int kind_of_test;

static bool cbox_released(void *p)
{
    struct cbox *b = p;
    switch (kind_of_test) {
    case K_EVENT: return weft_event_is_set(&b->e);
    case K_LATCH: return weft_latch_wait_try(&b->l) == 0;
    case K_WG: return weft_waitgroup_count(&b->wg) == 0;
    default: return weft_once_done(&b->o);
    }
}

static void *cbox_waiter(void *p)
{
    struct cbox *b = p;
    int r = -1;
    waiter_arm(cbox_released, b);
    switch (kind_of_test) {
    case K_EVENT: r = weft_event_wait(&b->e); break;
    case K_LATCH: r = weft_latch_wait(&b->l); break;
    case K_WG: r = weft_waitgroup_wait(&b->wg); break;
    case K_ONCE: r = weft_once(&b->o, once_fn, b); break; /* a second caller: waits */
    }
    waiter_disarm();
    int v = b->value;
    free(b);
    return (void *)(intptr_t)(r == 0 ? v : -100 + r);
}

static void *cbox_once_runner(void *p)
{
    struct cbox *b = p;
    return (void *)(intptr_t)weft_once(&b->o, once_fn, b);
}

static void run_cbox(int kind)
{
    kind_of_test = kind;
    for (long i = 0; i < rounds(); i++) {
        struct cbox *b = calloc(1, sizeof *b);
        CHECK_OK(weft_event_init(&b->e));
        CHECK_OK(weft_latch_init(&b->l, 1));
        CHECK_OK(weft_waitgroup_init(&b->wg));
        CHECK_OK(weft_waitgroup_add(&b->wg, 1));
        weft_once_t o0 = WEFT_ONCE_INIT;
        b->o = o0;
        pthread_t runner = 0;
        const void *key = kind == K_EVENT ? (const void *)&b->e
                        : kind == K_LATCH ? (const void *)&b->l.state
                        : kind == K_WG    ? (const void *)&b->wg.state
                                          : (const void *)&b->o;
        if (kind == K_ONCE) {
            runner = spawn(cbox_once_runner, b);
            /* fn is running (it waits for the gate): the waiter queues. */
            weft_time_t dl = weft_deadline_in(30);
            while (atomic_load((_Atomic uint32_t *)&b->o.state) == 0 && weft_now() < dl)
                sched_yield();
        }
        atomic_store(&in_prepare, 0);
        pthread_t t = spawn(cbox_waiter, b);
        CHECK(releaser_ready(key));
        b->value = 5;
        switch (kind) { /* b may be gone after each of these */
        case K_EVENT: CHECK_OK(weft_event_set(&b->e)); break;
        case K_LATCH: CHECK_OK(weft_latch_count_down(&b->l, 1)); break;
        case K_WG: CHECK_OK(weft_waitgroup_done(&b->wg)); break;
        case K_ONCE: atomic_store(&b->gate, 1); break;
        }
        if (runner)
            CHECK_RC(join(runner), 0);
        CHECK_RC(join(t), 5);
    }
}

static void test_event(void) { run_cbox(K_EVENT); }
static void test_latch(void) { run_cbox(K_LATCH); }
static void test_waitgroup(void) { run_cbox(K_WG); }
static void test_once(void) { run_cbox(K_ONCE); }

/* ---- task group: the last task lets the joiner go ---------------------- */

struct gbox {
    weft_group_t g;
    _Atomic int ran;
};

static int group_task(void *p)
{
    struct gbox *b = p;
    atomic_fetch_add(&b->ran, 1);
    return 0;
}

static void test_group(void)
{
    for (long i = 0; i < rounds(); i++) {
        struct gbox *b = calloc(1, sizeof *b);
        CHECK_OK(weft_group_init(&b->g, NULL));
        for (int k = 0; k < 4; k++)
            CHECK_OK(weft_group_spawn(&b->g, group_task, b));
        CHECK_OK(weft_group_wait(&b->g));
        CHECK_INT(atomic_load(&b->ran), ==, 4);
        free(b); /* the last task may still be finishing: it must be done with g */
    }
}

/* ---- future: the resolver lets the waiter go, which drops the last
 * reference but its own (the resolver keeps one for the call) ---------- */

static void *resolver(void *p)
{
    weft_future_t *f = p;
    if (!releaser_ready(&f->state))
        return (void *)(intptr_t)-1;
    int r = weft_future_set_result(f, (void *)(intptr_t)9);
    weft_future_release(f);
    return (void *)(intptr_t)r;
}

static bool future_done(void *p) { return weft_future_done(p); }

static void test_future(void)
{
    for (long i = 0; i < rounds(); i++) {
        weft_future_t *f;
        CHECK_OK(weft_future_create(&f));
        CHECK_OK(weft_future_retain(f)); /* the resolver's */
        atomic_store(&in_prepare, 0);
        pthread_t t = spawn(resolver, f);
        void *v = NULL;
        waiter_arm(future_done, f);
        CHECK_OK(weft_future_get(f, &v));
        waiter_disarm();
        CHECK(v == (void *)(intptr_t)9);
        CHECK_OK(weft_future_release(f));
        CHECK_RC(join(t), 0);
    }
}

int main(void)
{
    for (hold_mode = 0; hold_mode < 2; hold_mode++) {
        fprintf(stderr, "%s:\n", hold_mode ? "held in the park" : "parked");
        RUN(test_mutex);
        RUN(test_event);
        RUN(test_latch);
        RUN(test_waitgroup);
        RUN(test_once);
        RUN(test_group);
        RUN(test_future);
    }
    return check_done();
}
