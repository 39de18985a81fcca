/*
 * group.c - task groups (fork-join).
 *
 * The group's word counts pending tasks times two, plus a PARKED bit set by
 * a waiter that is about to park on the word's address (under the
 * parking-lot bucket lock, after checking that tasks are pending). The task
 * that finishes last sees, in the value its fetch_sub returns, whether a
 * waiter parked, and only then unparks (by address only: once the count is
 * zero the waiter may return and the group, often on its stack, be gone,
 * so the finisher touches nothing of the group after its decrement).
 * A waiting pool worker helps and parks through weft__pool_block.
 */
#include <sched.h>
#include <stdlib.h>
#include <weft/pool.h>

#include "internal.h"

#define PARKED 1u
#define ONE 2u
#define G_CANCELLED 1u

#define GWORD(g) WEFT_A64(&(g)->word)
#define GFLAGS(g) WEFT_A32(&(g)->flags)
#define GERR(g) ((_Atomic int32_t *)&(g)->err)

int weft_group_init(weft_group_t *g, weft_pool_t *pool)
{
    if (!g)
        return -EINVAL;
    if (!pool) {
        struct weft__worker *w = weft__cur_worker;
        pool = w ? w->pool : weft_pool_default();
        if (!pool)
            return -ENOMEM;
    }
    g->pool = pool;
    atomic_init(GWORD(g), 0);
    atomic_init(GERR(g), 0);
    atomic_init(GFLAGS(g), 0);
    return 0;
}

int weft_group_cancel(weft_group_t *g)
{
    if (!g)
        return -EINVAL;
    atomic_fetch_or_explicit(GFLAGS(g), G_CANCELLED, memory_order_relaxed);
    return 0;
}

bool weft_group_cancelled(const weft_group_t *g)
{
    return g && (atomic_load_explicit(GFLAGS((weft_group_t *)g), memory_order_relaxed) &
                 G_CANCELLED);
}

int64_t weft_group_pending(const weft_group_t *g)
{
    if (!g)
        return -EINVAL;
    return (int64_t)(atomic_load_explicit(GWORD((weft_group_t *)g), memory_order_acquire) / ONE);
}

void weft__group_task_done(weft_group_t *g, int rc)
{
    if (rc < 0 && rc != -ECANCELED) {
        int32_t zero = 0;
        atomic_compare_exchange_strong_explicit(GERR(g), &zero, rc, memory_order_relaxed,
                                                memory_order_relaxed);
        atomic_fetch_or_explicit(GFLAGS(g), G_CANCELLED, memory_order_relaxed);
    }
    const void *key = GWORD(g);
    /* Release: the task's effects (and the error above) are visible to the
     * waiter that sees the count reach zero (acquire). */
    uint64_t old = atomic_fetch_sub_explicit(GWORD(g), ONE, memory_order_acq_rel);
    if (old == (ONE | PARKED))
        weft__unpark_all(key, 0);
}

int weft_group_spawn(weft_group_t *g, int (*fn)(void *arg), void *arg)
{
    if (!g || !fn)
        return -EINVAL;
    struct weft_pool *p = g->pool;
    struct weft__worker *w = weft__cur_worker;
    if (w && w->pool != p)
        w = NULL;
    struct weft__task *t;
    if (WEFT_LIKELY(w != NULL)) {
        t = weft__task_alloc(w);
        if (WEFT_UNLIKELY(!t))
            return -ENOMEM;
    } else {
        t = malloc(sizeof *t);
        if (!t)
            return -ENOMEM;
        t->heap = true;
    }
    t->ffn = NULL;
    t->gfn = fn;
    t->arg = arg;
    t->future = NULL;
    t->group = g;
    /* Counted before it is visible to any thief (the deque's release
     * publishes the count too), so the count never dips to zero early. */
    atomic_fetch_add_explicit(GWORD(g), ONE, memory_order_relaxed);
    int r = weft__pool_enqueue(p, w, t);
    if (WEFT_UNLIKELY(r < 0)) {
        atomic_fetch_sub_explicit(GWORD(g), ONE, memory_order_relaxed);
        if (t->heap) {
            free(t);
        } else {
            t->next = w->free_list;
            w->free_list = t;
        }
        return r;
    }
    return 0;
}

static int outcome(weft_group_t *g)
{
    int e = atomic_load_explicit(GERR(g), memory_order_relaxed);
    if (e)
        return e;
    return weft_group_cancelled(g) ? -ECANCELED : 0;
}

/* Under the bucket lock: tasks still pending? Then set `bit` to announce
 * the waiter. */
static bool announce(weft_group_t *g, uint64_t bit)
{
    uint64_t v = atomic_load_explicit(GWORD(g), memory_order_relaxed);
    for (;;) {
        if (v < ONE)
            return false;
        if (v & bit)
            return true;
        if (atomic_compare_exchange_weak_explicit(GWORD(g), &v, v | bit, memory_order_acq_rel,
                                                  memory_order_relaxed))
            return true;
    }
}

static bool validate_wait(void *arg)
{
    return announce(arg, PARKED);
}


static inline bool group_done(weft_group_t *g)
{
    return atomic_load_explicit(GWORD(g), memory_order_acquire) < ONE;
}

static bool group_done_cb(void *arg)
{
    return group_done(arg);
}

int weft_group_wait_until(weft_group_t *g, weft_time_t deadline)
{
    if (!g || deadline < 0)
        return -EINVAL;
    if (group_done(g))
        return outcome(g);
    struct weft__worker *w = weft__cur_worker;
    int r = -ENOSYS;
    /* A worker of this pool helps: the group's own tasks are usually at
     * the bottom of its deque, so this mostly runs them inline. A worker of
     * another pool waits like an outside thread. */
    if (w && w->pool == g->pool)
        r = weft__pool_block(GWORD(g), validate_wait, group_done_cb, g, deadline);
    if (r == -ENOSYS) {
        for (int i = 0; i < 256 && !group_done(g); i++)
            weft__cpu_relax();
        while (!group_done(g)) {
            r = weft__park(GWORD(g), validate_wait, g, NULL, deadline, NULL);
            if (r == -ETIMEDOUT && !group_done(g))
                return -ETIMEDOUT;
        }
    } else if (r == -ETIMEDOUT) {
        return -ETIMEDOUT;
    }
    /* Clear a PARKED bit left by us or another waiter (the count is zero;
     * only the group's own tasks could spawn again, and there are none). */
    atomic_fetch_and_explicit(GWORD(g), ~(uint64_t)PARKED, memory_order_relaxed);
    return outcome(g);
}

int weft_group_wait(weft_group_t *g)
{
    return weft_group_wait_until(g, WEFT_FOREVER);
}
