/*
 * future.c - weft_future_t: resolved exactly once, waitable through the
 * parking lot, cancellable, with done-callbacks.
 *
 * The state word holds the kind (PENDING, RUNNING, RESOLVING, DONE) and two
 * flags: CANCEL (cancel was requested) and PARKED (a waiter may be parked
 * on the word's address).
 *
 * Exactly once: a resolver wins by moving the kind from PENDING or RUNNING
 * to RESOLVING with a compare-and-swap; only the winner writes err and
 * value, and it then publishes DONE with a release exchange. Readers that
 * see DONE with acquire see err and value.
 *
 * No lost wake-up: a waiter parks only after setting PARKED under the
 * parking-lot bucket lock while the kind is not DONE (validate_wait). The
 * resolver's exchange to DONE returns the old word; if PARKED was set, the
 * waiter is already queued (it was queued in the same bucket critical
 * section that set the bit), so unpark_all finds it.
 *
 * Callbacks run exactly once: the resolver publishes DONE, then takes the
 * whole list under the future's lock and marks it closed; on_done checks
 * the kind under the same lock and runs the callback itself if DONE. Either
 * the node is in the list when the resolver takes it, or the adder saw DONE.
 */
#include <stdlib.h>
#include <weft/future.h>
#include <weft/sync.h>

#include "../park/park.h"
#include "../sync/internal.h"
#include "internal.h"

#define K_PENDING 0u
#define K_RUNNING 1u
#define K_RESOLVING 2u
#define K_DONE 3u
#define K_MASK 3u
#define F_CANCEL WEFT__F_CANCEL
#define F_PARKED 8u
#define F_HASCB 16u /* a callback node was added (set under the lock, before DONE) */

_Atomic(weft__block_fn) weft__future_block;

void weft__future_set_block(weft__block_fn fn)
{
    atomic_store_explicit(&weft__future_block, fn, memory_order_release);
}

static inline uint32_t kind_of(uint32_t s) { return s & K_MASK; }

static inline uint32_t load_state(const weft_future_t *f)
{
    return atomic_load_explicit(&((weft_future_t *)f)->state, memory_order_acquire);
}

void weft__future_init(weft_future_t *f, void (*on_free)(weft_future_t *f))
{
    atomic_init(&f->state, K_PENDING);
    atomic_init(&f->refs, 1);
    f->err = 0;
    f->value = NULL;
    f->value_free = NULL;
    atomic_init(&f->runner, 0);
    weft_mutex_init(&f->lock);
    f->cb_head = f->cb_tail = NULL;
    f->on_free = on_free;
    f->on_cancel = NULL;
}

int weft_future_create(weft_future_t **out)
{
    if (!out)
        return -EINVAL;
    weft_future_t *f = malloc(sizeof *f);
    if (!f)
        return -ENOMEM;
    weft__future_init(f, NULL); /* NULL: the last release free()s it */
    *out = f;
    return 0;
}

int weft_future_retain(weft_future_t *f)
{
    if (!f)
        return -EINVAL;
    /* Relaxed: the caller already holds a reference, so the count cannot
     * reach zero meanwhile (the usual reference-count argument). */
    atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
    return 0;
}

int weft_future_release(weft_future_t *f)
{
    if (!f)
        return -EINVAL;
    /* Release orders our uses of f before the free; the acquire on the
     * last decrement orders the free after everybody's uses. */
    if (atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) != 1)
        return 0;
    if (f->value_free)
        f->value_free(f->value);
    if (f->on_free)
        f->on_free(f); /* embedded in its owner's record (a task's future) */
    else
        free(f);
    return 0;
}

int weft_future_set_running(weft_future_t *f)
{
    if (!f)
        return -EINVAL;
    /* acquire: seeing DONE, we read err, which resolve wrote before its
     * release of DONE (a cancel racing with the start of the task). */
    uint32_t s = atomic_load_explicit(&f->state, memory_order_acquire);
    for (;;) {
        if (kind_of(s) != K_PENDING)
            return (kind_of(s) == K_DONE && f->err == -ECANCELED) ? -ECANCELED : -EALREADY;
        /* Record the runner first: a wait that sees RUNNING must find it. */
        atomic_store_explicit(&f->runner, weft__self_id(), memory_order_relaxed);
        if (atomic_compare_exchange_weak_explicit(&f->state, &s, (s & ~K_MASK) | K_RUNNING,
                                                  memory_order_acq_rel, memory_order_acquire))
            return 0;
    }
}

static void run_node(weft_future_t *f, struct weft__fnode *n)
{
    bool internal = n->internal;
    n->cb(f, n->arg);
    /* An internal node may be gone once its callback returned. */
    if (!internal) {
        free(n);
        weft_future_release(f); /* the reference the callback held */
    }
}

/*
 * Resolve if the kind is one of `from` (a bit mask of 1 << kind). Returns
 * true if this call resolved it. The caller must hold a reference (it uses
 * f after publishing DONE).
 */
static bool resolve(weft_future_t *f, unsigned from, int err, void *value,
                    void (*value_free)(void *))
{
    uint32_t s = atomic_load_explicit(&f->state, memory_order_relaxed);
    for (;;) {
        if (!(from & (1u << kind_of(s))))
            return false;
        if (atomic_compare_exchange_weak_explicit(&f->state, &s, (s & ~K_MASK) | K_RESOLVING,
                                                  memory_order_acquire, memory_order_relaxed))
            break;
    }
    f->err = err;
    f->value = value;
    f->value_free = value_free;
    /* Release: err and value are visible to whoever sees DONE. PARKED and
     * HASCB are cleared: the waiters and callbacks they announce are dealt
     * with just below. A CAS loop rather than an exchange keeps a CANCEL
     * flag set meanwhile. */
    uint32_t old = atomic_load_explicit(&f->state, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(&f->state, &old, (old & F_CANCEL) | K_DONE,
                                                  memory_order_acq_rel, memory_order_relaxed))
        ;
    if (old & F_PARKED)
        weft__unpark_all(&f->state, 0);
    /* Callbacks only if an adder set HASCB before our DONE: an adder sets
     * it under the lock with a CAS that fails once DONE is published, and
     * then runs its node itself, so a list nobody announced is empty and
     * the lock is not needed (the common case: a task nobody awaits). */
    if (!(old & F_HASCB))
        return true;
    weft__mutex_lock_nc(&f->lock);
    struct weft__fnode *n = f->cb_head;
    f->cb_head = f->cb_tail = NULL;
    weft_mutex_unlock(&f->lock);
    while (n) {
        struct weft__fnode *next = n->next; /* n may be freed by run_node */
        run_node(f, n);
        n = next;
    }
    return true;
}

static int resolve_checked(weft_future_t *f, int err, void *value, void (*value_free)(void *))
{
    if (resolve(f, (1u << K_PENDING) | (1u << K_RUNNING), err, value, value_free))
        return 0;
    return -EALREADY;
}

int weft_future_set_result(weft_future_t *f, void *value)
{
    if (!f)
        return -EINVAL;
    return resolve_checked(f, 0, value, NULL);
}

int weft_future_set_result_free(weft_future_t *f, void *value, void (*value_free)(void *))
{
    if (!f)
        return -EINVAL;
    return resolve_checked(f, 0, value, value_free);
}

int weft_future_set_error(weft_future_t *f, int err)
{
    if (!f || err >= 0)
        return -EINVAL;
    return resolve_checked(f, err, NULL, NULL);
}

/* RESOLVING lasts a few stores, but the resolver may be preempted inside
 * it: weft__backoff (pauses, yields, then sleeps). Used only by cancel,
 * never by waits. */
static uint32_t wait_resolved(weft_future_t *f)
{
    unsigned step = 0;
    uint32_t s;
    while (kind_of(s = load_state(f)) == K_RESOLVING)
        weft__backoff(&step);
    return s;
}

int weft_future_cancel(weft_future_t *f)
{
    if (!f)
        return -EINVAL;
    uint32_t s = atomic_fetch_or_explicit(&f->state, F_CANCEL, memory_order_acq_rel);
    bool first = !(s & F_CANCEL);
    for (;;) {
        switch (kind_of(s)) {
        case K_PENDING:
            if (resolve(f, 1u << K_PENDING, -ECANCELED, NULL, NULL))
                return 0;
            s = load_state(f);
            continue;
        case K_RUNNING:
            if (first && f->on_cancel)
                f->on_cancel(f); /* its producer is told now (a task's coroutine) */
            return -EBUSY;
        case K_RESOLVING:
            s = wait_resolved(f);
            continue;
        default:
            return f->err == -ECANCELED ? 0 : -EALREADY;
        }
    }
}

bool weft_future_cancel_requested(const weft_future_t *f)
{
    return weft__future_cancel_requested(f);
}

bool weft_future_done(const weft_future_t *f)
{
    return f && kind_of(load_state(f)) == K_DONE;
}

bool weft_future_running(const weft_future_t *f)
{
    if (!f)
        return false;
    uint32_t k = kind_of(load_state(f));
    return k == K_RUNNING || k == K_RESOLVING;
}

bool weft_future_cancelled(const weft_future_t *f)
{
    return f && kind_of(load_state(f)) == K_DONE && f->err == -ECANCELED;
}

int weft_future_result(const weft_future_t *f, void **value)
{
    if (!f)
        return -EINVAL;
    if (kind_of(load_state(f)) != K_DONE)
        return -EAGAIN;
    if (value)
        *value = f->err ? NULL : f->value;
    return f->err;
}

static bool future_is_done(void *arg)
{
    return kind_of(load_state(arg)) == K_DONE;
}

/* Under the bucket lock: still not DONE? Then announce a parked waiter. */
static bool validate_wait(void *arg)
{
    weft_future_t *f = arg;
    uint32_t s = atomic_load_explicit(&f->state, memory_order_relaxed);
    for (;;) {
        if (kind_of(s) == K_DONE)
            return false;
        if (s & F_PARKED)
            return true;
        if (atomic_compare_exchange_weak_explicit(&f->state, &s, s | F_PARKED,
                                                  memory_order_acq_rel, memory_order_relaxed))
            return true;
    }
}

static int wait_impl(weft_future_t *f, weft_time_t deadline, bool cancellable);

int weft_future_wait_until(weft_future_t *f, weft_time_t deadline)
{
    if (!f || deadline < 0)
        return -EINVAL;
    return wait_impl(f, deadline, true);
}

int weft__future_wait_nc(weft_future_t *f)
{
    return wait_impl(f, WEFT_FOREVER, false);
}

static int wait_impl(weft_future_t *f, weft_time_t deadline, bool cancellable)
{
    uint32_t s = load_state(f);
    if (WEFT_LIKELY(kind_of(s) == K_DONE))
        return 0;
    if (kind_of(s) == K_RUNNING &&
        atomic_load_explicit(&f->runner, memory_order_relaxed) == weft__self_id())
        return -EDEADLK;
    /* A pool worker helps while it waits: the future is often resolved by
     * a task queued behind it. */
    weft__block_fn block = atomic_load_explicit(&weft__future_block, memory_order_acquire);
    if (block) {
        int r = block(&f->state, validate_wait, future_is_done, f, deadline);
        if (r != -ENOSYS)
            return r;
    }
    /* A short spin catches a future resolved by another core right now. */
    for (int i = 0; i < 64; i++) {
        if (kind_of(load_state(f)) == K_DONE)
            return 0;
        weft__cpu_relax();
    }
    for (;;) {
        int r = cancellable ? weft__park_c(&f->state, validate_wait, f, NULL, deadline, NULL)
                            : weft__park(&f->state, validate_wait, f, NULL, deadline, NULL);
        if (r == -EAGAIN || kind_of(load_state(f)) == K_DONE)
            return 0;
        if (r == -ETIMEDOUT || r == -ECANCELED)
            return r; /* PARKED may stay set: the resolver's unpark finds nobody */
    }
}

int weft_future_wait(weft_future_t *f)
{
    return weft_future_wait_until(f, WEFT_FOREVER);
}

int weft_future_get_until(weft_future_t *f, void **value, weft_time_t deadline)
{
    int r = weft_future_wait_until(f, deadline);
    if (r < 0)
        return r;
    return weft_future_result(f, value);
}

int weft_future_get(weft_future_t *f, void **value)
{
    return weft_future_get_until(f, value, WEFT_FOREVER);
}

void weft__future_add_node(weft_future_t *f, struct weft__fnode *n)
{
    n->next = NULL;
    weft__mutex_lock_nc(&f->lock);
    /* Announce the node (HASCB) unless the future is DONE already: the CAS
     * orders the announcement before the resolver's DONE, which then takes
     * the list under this lock (after we append). */
    uint32_t s = atomic_load_explicit(&f->state, memory_order_acquire);
    for (;;) {
        if (kind_of(s) == K_DONE) {
            weft_mutex_unlock(&f->lock);
            run_node(f, n);
            return;
        }
        if ((s & F_HASCB) ||
            atomic_compare_exchange_weak_explicit(&f->state, &s, s | F_HASCB,
                                                  memory_order_acq_rel, memory_order_acquire))
            break;
    }
    if (f->cb_tail)
        f->cb_tail->next = n;
    else
        f->cb_head = n;
    f->cb_tail = n;
    weft_mutex_unlock(&f->lock);
}

bool weft__future_remove_node(weft_future_t *f, struct weft__fnode *n)
{
    bool found = false;
    weft__mutex_lock_nc(&f->lock);
    struct weft__fnode *prev = NULL;
    for (struct weft__fnode *p = f->cb_head; p; prev = p, p = p->next) {
        if (p != n)
            continue;
        if (prev)
            prev->next = p->next;
        else
            f->cb_head = p->next;
        if (f->cb_tail == p)
            f->cb_tail = prev;
        found = true;
        break;
    }
    weft_mutex_unlock(&f->lock);
    return found;
}

int weft_future_on_done(weft_future_t *f, weft_future_cb cb, void *arg)
{
    if (!f || !cb)
        return -EINVAL;
    struct weft__fnode *n = malloc(sizeof *n);
    if (!n)
        return -ENOMEM;
    n->cb = cb;
    n->arg = arg;
    n->internal = false;
    weft_future_retain(f); /* dropped by run_node after cb ran */
    weft__future_add_node(f, n);
    return 0;
}

/* ---- sets ------------------------------------------------------------------ */

int weft_future_wait_all(weft_future_t *const *fs, size_t n, weft_time_t deadline)
{
    if ((!fs && n) || deadline < 0)
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!fs[i])
            return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        int r = weft_future_wait_until(fs[i], deadline);
        if (r < 0)
            return r;
    }
    return 0;
}

/*
 * as_completed. Each entry's internal callback pushes the entry on a
 * Treiber stack (done_head; pushes only, the consumer takes the whole stack
 * with an exchange, so there is no ABA) and unparks the consumer. `live`
 * counts entries whose callback may still run; free waits for it to reach
 * zero, so no callback touches a freed iterator. A callback's last touch of
 * the iterator is its decrement of live; the unpark after it uses the
 * address only as a key, which the parking lot never dereferences.
 */
struct ac_entry {
    struct weft__fnode node;   /* registered on the future */
    weft_future_t *f;          /* the future (the iterator holds a reference) */
    struct weft_as_completed *it;
    struct ac_entry *next_done;/* link in done_head / the local list */
    uint32_t index;            /* position in the caller's array */
};

struct weft_as_completed {
    _Atomic(struct ac_entry *) done_head; /* resolved, not yet taken */
    _Atomic uint32_t live;     /* callbacks registered and not finished */
    struct ac_entry *local;    /* taken from done_head, not yet yielded */
    size_t n, yielded;
    struct ac_entry e[];
};

static void ac_fire(weft_future_t *f, void *arg)
{
    (void)f;
    struct ac_entry *e = arg;
    struct weft_as_completed *it = e->it;
    const void *done_key = &it->done_head, *live_key = &it->live;
    struct ac_entry *head = atomic_load_explicit(&it->done_head, memory_order_relaxed);
    do
        e->next_done = head;
    while (!atomic_compare_exchange_weak_explicit(&it->done_head, &head, e,
                                                  memory_order_release, memory_order_relaxed));
    /* The consumer may take e and return before this unpark: harmless. But
     * it cannot free `it` until live drops, which happens after. */
    weft__unpark_all(done_key, 0);
    if (atomic_fetch_sub_explicit(&it->live, 1, memory_order_acq_rel) == 1)
        weft__unpark_all(live_key, 0);
}

int weft_as_completed_create(weft_as_completed_t **out, weft_future_t *const *fs, size_t n)
{
    if (!out || (!fs && n) || n > INT32_MAX)
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!fs[i])
            return -EINVAL;
    struct weft_as_completed *it = malloc(sizeof *it + n * sizeof(struct ac_entry));
    if (!it)
        return -ENOMEM;
    atomic_init(&it->done_head, NULL);
    atomic_init(&it->live, (uint32_t)n);
    it->local = NULL;
    it->n = n;
    it->yielded = 0;
    for (size_t i = 0; i < n; i++) {
        struct ac_entry *e = &it->e[i];
        e->node.cb = ac_fire;
        e->node.arg = e;
        e->node.internal = true;
        e->f = fs[i];
        e->it = it;
        e->next_done = NULL;
        e->index = (uint32_t)i;
        weft_future_retain(fs[i]);
    }
    /* Register after every entry is complete: a callback may fire at once. */
    for (size_t i = 0; i < n; i++)
        weft__future_add_node(fs[i], &it->e[i].node);
    *out = it;
    return 0;
}

static bool validate_empty(void *arg)
{
    struct weft_as_completed *it = arg;
    return atomic_load_explicit(&it->done_head, memory_order_acquire) == NULL;
}

static bool ac_nonempty(void *arg)
{
    return !validate_empty(arg);
}

int weft_as_completed_next(weft_as_completed_t *it, weft_future_t **f, weft_time_t deadline)
{
    if (!it || deadline < 0)
        return -EINVAL;
    if (it->yielded == it->n)
        return -EPIPE;
    while (!it->local) {
        struct ac_entry *got = atomic_exchange_explicit(&it->done_head, NULL, memory_order_acquire);
        if (got) {
            /* The stack is newest first: reverse it to yield in order of
             * completion. */
            struct ac_entry *rev = NULL;
            while (got) {
                struct ac_entry *nx = got->next_done;
                got->next_done = rev;
                rev = got;
                got = nx;
            }
            it->local = rev;
            break;
        }
        weft__block_fn block = atomic_load_explicit(&weft__future_block, memory_order_acquire);
        int r = block ? block(&it->done_head, validate_empty, ac_nonempty, it, deadline) : -ENOSYS;
        if (r == -ENOSYS)
            r = weft__park_c(&it->done_head, validate_empty, it, NULL, deadline, NULL);
        if ((r == -ETIMEDOUT || r == -ECANCELED) &&
            atomic_load_explicit(&it->done_head, memory_order_acquire) == NULL)
            return r;
    }
    struct ac_entry *e = it->local;
    it->local = e->next_done;
    it->yielded++;
    if (f)
        *f = e->f;
    return (int)e->index;
}

static bool validate_live(void *arg)
{
    struct weft_as_completed *it = arg;
    return atomic_load_explicit(&it->live, memory_order_acquire) != 0;
}

int weft_as_completed_free(weft_as_completed_t *it)
{
    if (!it)
        return -EINVAL;
    for (size_t i = 0; i < it->n; i++)
        if (weft__future_remove_node(it->e[i].f, &it->e[i].node))
            atomic_fetch_sub_explicit(&it->live, 1, memory_order_acq_rel);
    /* Callbacks already taken by a resolver are running or about to. */
    while (atomic_load_explicit(&it->live, memory_order_acquire) != 0)
        weft__park(&it->live, validate_live, it, NULL, WEFT_FOREVER, NULL);
    for (size_t i = 0; i < it->n; i++)
        weft_future_release(it->e[i].f);
    free(it);
    return 0;
}

int weft_future_wait_any(weft_future_t *const *fs, size_t n, weft_time_t deadline)
{
    if (!fs || n == 0 || n > INT32_MAX || deadline < 0)
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!fs[i])
            return -EINVAL;
    bool all_mine = true; /* every pending one is run by the caller itself */
    uint64_t self = weft__self_id();
    for (size_t i = 0; i < n; i++) {
        uint32_t s = load_state(fs[i]);
        if (kind_of(s) == K_DONE)
            return (int)i;
        if (kind_of(s) != K_RUNNING ||
            atomic_load_explicit(&fs[i]->runner, memory_order_relaxed) != self)
            all_mine = false;
    }
    if (all_mine)
        return -EDEADLK; /* as weft_future_wait: none can resolve while we wait */
    weft_as_completed_t *it;
    int r = weft_as_completed_create(&it, fs, n);
    if (r < 0)
        return r;
    r = weft_as_completed_next(it, NULL, deadline);
    weft_as_completed_free(it);
    return r;
}
