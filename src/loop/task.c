/*
 * task.c - the public coroutine API on top of loop.c: spawn, yield, sleep,
 * await (tasks and any future), run_in_pool, fd waits, cancellation,
 * deadline scopes and shields, task groups.
 *
 * Every suspension point is weft__cotask_wait on a waiter (struct
 * weft__waiter) of the calling task; what finishes the waiter differs: a
 * future's done-callback (await), the loop's fd dispatch (wait_fd), a
 * group's last child (group_wait), nothing at all (sleep: only the timer
 * ends it).
 */
#include "internal.h"

#include <errno.h>
#include <stddef.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../future/internal.h"
#include "../platform/platform.h"
#include "net_support.h"

#define SC_SHIELD 1u
#define SC_EXPIRED 2u

static inline struct weft_task *cur_task(void)
{
    struct weft_loop *L = weft__loop_tls;
    return L ? L->current : NULL;
}

/* ---- tasks ---------------------------------------------------------------- */

int weft_co_spawn(weft_task_t **out, weft_co_fn fn, void *arg, const char *name,
                  size_t stack_size)
{
    if (!fn || stack_size > WEFT__CO_STACK_MAX)
        return -EINVAL;
    struct weft_loop *L = weft__loop_tls;
    if (!L)
        return -EPERM;
    return weft__cotask_spawn(L, out, fn, arg, name, stack_size, NULL);
}

int weft_task_retain(weft_task_t *t)
{
    if (!t)
        return -EINVAL;
    atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
    return 0;
}

int weft_task_release(weft_task_t *t)
{
    if (!t)
        return -EINVAL;
    weft__cotask_unref(t);
    return 0;
}

static void remote_cancel(void *arg)
{
    struct weft_task *t = arg;
    weft__cotask_cancel_local(t);
    weft__cotask_unref(t);
}

void weft__cotask_future_cancelled(weft_future_t *f)
{
    struct weft_task *t = (struct weft_task *)((char *)f - offsetof(struct weft_task, fut_store));
    /* The canceller holds a reference to the future, which keeps the task's
     * record (and its loop); the task's own references may all be gone
     * already (it finished): take one only while some remain. */
    uint32_t r = atomic_load_explicit(&t->refs, memory_order_relaxed);
    do {
        if (r == 0)
            return;
    } while (!atomic_compare_exchange_weak_explicit(&t->refs, &r, r + 1, memory_order_acquire,
                                                    memory_order_relaxed));
    if (weft__loop_tls == t->loop)
        (void)weft__cotask_cancel_local(t);
    else if (weft_loop_call_soon_threadsafe(t->loop, remote_cancel, t) == 0)
        return; /* remote_cancel drops the reference */
    weft__cotask_unref(t);
}

int weft_task_cancel(weft_task_t *t)
{
    if (!t)
        return -EINVAL;
    if (weft__loop_tls == t->loop)
        return weft__cotask_cancel_local(t);
    if (weft_future_done(t->fut))
        return -EALREADY;
    /* Hand the request to the task's loop, which owns the task's state. */
    atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
    int r = weft_loop_call_soon_threadsafe(t->loop, remote_cancel, t);
    if (r) {
        weft__cotask_unref(t);
        return r == -EPIPE ? -EALREADY : r;
    }
    return 0;
}

bool weft_task_done(const weft_task_t *t)
{
    return t && weft_future_done(t->fut);
}

weft_future_t *weft_task_future(weft_task_t *t)
{
    return t ? t->fut : NULL;
}

const char *weft_task_name(const weft_task_t *t)
{
    return t ? t->name : "";
}

weft_task_t *weft_co_current(void)
{
    return cur_task();
}

bool weft_co_cancelled(void)
{
    struct weft_task *t = cur_task();
    return t && (t->cancelled || weft__future_cancel_requested(t->fut));
}

/* ---- suspension points ----------------------------------------------------- */

/* Map task_wait's scope code to the public one. */
static inline int pub(int r)
{
    return r == WEFT__SCOPE_EXPIRED ? -ETIMEDOUT : r;
}

int weft_co_yield(void)
{
    struct weft_task *t = cur_task();
    if (!t)
        return -EPERM;
    /* Fast path: no scope and no cancellation (requested on the task or on
     * its future): nothing to deliver, just go to the back of the queue. */
    if (WEFT_LIKELY(!t->scope && !t->cancelled && !weft__future_cancel_requested(t->fut))) {
        weft__cotask_suspend_yield(t);
        return 0;
    }
    /* A yield is a suspension point: deliver a pending cancellation. A
     * zero-length wait checks without suspending. */
    struct weft__waiter w;
    weft__waiter_init(&w);
    atomic_store_explicit(&w.state, WEFT__W_WOKEN, memory_order_relaxed);
    int r = weft__cotask_wait(t, &w, WEFT__W_WAITING, WEFT_FOREVER, W_CO);
    if (r < 0)
        return pub(r);
    weft__cotask_suspend_yield(t);
    return 0;
}

int weft_co_sleep_until(weft_time_t deadline)
{
    if (deadline < 0)
        return -EINVAL;
    struct weft_task *t = cur_task();
    if (!t)
        return -EPERM;
    struct weft__waiter w; /* nobody finishes it: only the timer ends the sleep */
    weft__waiter_init(&w);
    for (;;) {
        int r = weft__cotask_wait(t, &w, WEFT__W_WAITING, deadline, W_CO);
        if (r == -ETIMEDOUT)
            return 0;
        if (r < 0)
            return pub(r);
    }
}

int weft_co_sleep(double seconds)
{
    if (isnan(seconds) || seconds < 0)
        return -EINVAL;
    if (!cur_task())
        return -EPERM;
    return weft_co_sleep_until(weft_deadline_in(seconds));
}

struct fwait {
    struct weft__fnode node;
    struct weft__waiter w;
};

static void fwait_cb(weft_future_t *f, void *arg)
{
    (void)f;
    struct fwait *fw = arg;
    weft__waiter_finish(&fw->w, WEFT__W_WOKEN);
}

/* Wait for f in the calling task. 0 when resolved; else the wait's error
 * (the node is then unregistered, or its callback has run). */
static int await_resolved(struct weft_task *t, weft_future_t *f, weft_time_t deadline)
{
    if (weft_future_done(f))
        return 0;
    struct fwait fw;
    weft__waiter_init(&fw.w);
    fw.node.next = NULL;
    fw.node.cb = fwait_cb;
    fw.node.arg = &fw;
    fw.node.internal = true;
    weft__future_add_node(f, &fw.node);
    for (;;) {
        int r = weft__cotask_wait(t, &fw.w, WEFT__W_WAITING, deadline, W_CO);
        if (weft__waiter_state(&fw.w) != WEFT__W_WAITING)
            return 0;
        if (r < 0) {
            if (!weft__future_remove_node(f, &fw.node)) {
                /* The resolver has taken the node: its callback is about to
                 * finish our waiter, which lives in this frame. Wait for it. */
                while (weft__waiter_state(&fw.w) == WEFT__W_WAITING)
                    weft__cotask_wait(t, &fw.w, WEFT__W_WAITING, WEFT_FOREVER, W_NOINTR);
            }
            return pub(r);
        }
    }
}

int weft_co_await_future_until(weft_future_t *f, void **value, weft_time_t deadline)
{
    if (!f || deadline < 0)
        return -EINVAL;
    struct weft_task *t = cur_task();
    if (!t)
        return -EPERM;
    if (f == t->fut)
        return -EDEADLK;
    int r = await_resolved(t, f, deadline);
    if (r < 0)
        return r;
    return weft_future_result(f, value);
}

int weft_co_await_future(weft_future_t *f, void **value)
{
    return weft_co_await_future_until(f, value, WEFT_FOREVER);
}

int weft_co_await_until(weft_task_t *task, void **result, weft_time_t deadline)
{
    if (!task || deadline < 0)
        return -EINVAL;
    struct weft_task *t = cur_task();
    if (!t)
        return -EPERM;
    if (task == t)
        return -EDEADLK;
    return weft_co_await_future_until(task->fut, result, deadline);
}

int weft_co_await(weft_task_t *task, void **result)
{
    return weft_co_await_until(task, result, WEFT_FOREVER);
}

int weft_co_run_in_pool(weft_pool_t *pool, weft_task_fn fn, void *arg, void **result)
{
    if (!fn)
        return -EINVAL;
    struct weft_task *t = cur_task();
    if (!t)
        return -EPERM;
    /* A cancelled coroutine (or an expired scope) submits nothing: the
     * checkpoint of a call that has to wait. */
    int r = weft__co_enter();
    if (r < 0)
        return r;
    weft_future_t *f;
    r = weft_pool_submit(pool, fn, arg, &f);
    if (r)
        return r;
    r = await_resolved(t, f, WEFT_FOREVER);
    if (r < 0)
        weft_future_cancel(f); /* not started: never runs; running: asked to stop */
    else
        r = weft_future_result(f, result);
    /* A value with a free function is freed with the future: the pool
     * task's value is a plain pointer here, handed over as is. */
    weft_future_release(f);
    return r;
}

/* ---- fds --------------------------------------------------------------------- */

/*
 * An fd wait's waiter (struct weft__fdwait) is finished only by this loop's
 * thread (the dispatch below, weft__loop_fd_forget), and its owner is a
 * task of this loop, so it goes without park ops: fw.w.ctx is the task,
 * fw.w.gen the park's generation (from the task's counter, as co_prepare
 * takes it), fw.w.state WAITING until a finisher makes it WOKEN. It is
 * armed from the start (loop.c's armed form): the task's wait_gen holds
 * the gen and the state has SLEEP before the waiter goes into the watch
 * table, so weft__cotask_wait needs no RMW, and the finisher claims the
 * task with a load and a store (fd_finish): every other party that may
 * claim it (its timer, a cancellation) runs on this thread too, and a
 * remote wake of the task can only be a stale one (an older gen).
 */
static inline void fd_waiter_arm(struct weft_task *t, struct weft__fdwait *fw)
{
    fw->got = 0;
    fw->w.ops = NULL; /* never used: see above */
    fw->w.ctx = t;
    fw->w.gen = ++t->gen_counter;
    fw->w.spin = 0;
    fw->w.cancellable = false;
    fw->w.armed = true;
    fw->w.home = t->loop;
    /* release, as co_arm: a claim by CAS (timer, cancel) then sees all of
     * this task's writes. */
    atomic_store_explicit(&t->wait_gen, fw->w.gen, memory_order_release);
    atomic_store_explicit(&fw->w.state, WEFT__W_WAITING | WEFT__W_SLEEP, memory_order_relaxed);
}

/* Finish f with events ev and make its task runnable, unless another claim
 * (timer, cancellation) was first: then the task is already queued and
 * finds the state WOKEN when it runs. Loop thread only. */
static inline void fd_finish(struct weft_loop *L, struct weft__fdwait *f, uint32_t ev)
{
    f->got = ev;
    atomic_store_explicit(&f->w.state, WEFT__W_WOKEN, memory_order_relaxed);
    weft__cotask_wake_here(L, f->w.ctx, f->w.gen);
}

static WEFT_NOINLINE int watch_grow(struct weft_loop *L, int fd)
{
    if (fd < L->nwatch)
        return 0;
    int n = L->nwatch ? L->nwatch : 64;
    while (n <= fd)
        n *= 2;
    struct weft__watch *w = realloc(L->watch, (size_t)n * sizeof *w);
    if (!w)
        return -ENOMEM;
    memset(w + L->nwatch, 0, (size_t)(n - L->nwatch) * sizeof *w);
    L->watch = w;
    L->nwatch = n;
    return 0;
}

static inline uint32_t interest(const struct weft__watch *w)
{
    return (w->rd ? WEFT__IO_READ : 0) | (w->wr ? WEFT__IO_WRITE : 0);
}

/* The waiter left on fd after the other direction's was finished or gave
 * up: arm for it again. An owned fd stays on its owned registration: the
 * direction left was armed there and not in the report, so it was seen
 * not ready and its vouch holds (owned.h: weft__owned_report); and a new
 * registration, should the backend make one, looks at the current state
 * itself. Re-armed one-shot instead, a writer of a socket whose peer has
 * sent its FIN was reported (io_uring always reports RDHUP) at every poll:
 * a loop that spun. */
static void rearm(struct weft_loop *L, int fd)
{
    struct weft__watch *w = &L->watch[fd];
    uint32_t ev = interest(w);
    if (!ev)
        return;
    void *data = (void *)(intptr_t)(fd + 1);
    uint32_t epoch = weft__fd_epoch(fd);
    int r = (epoch & WEFT__EPOCH_OWNED) && L->bops->arm_owned
                ? L->bops->arm_owned(L->be, fd, ev, ev, data, epoch)
                : L->bops->arm(L->be, fd, ev, data);
    if (WEFT_UNLIKELY(r != 0)) {
        /* Not armed (no memory, the fd gone): no report would ever come.
         * Wake the waiter with an error instead; its call looks again. */
        struct weft__fdwait *rd = w->rd, *wr = w->wr;
        w->rd = w->wr = NULL;
        if (rd)
            fd_finish(L, rd, WEFT__IO_ERROR);
        if (wr && wr != rd)
            fd_finish(L, wr, WEFT__IO_ERROR);
    }
}

void weft__loop_fd_event(struct weft_loop *L, int fd, uint32_t ev)
{
    if (WEFT_UNLIKELY(L->sig != NULL) && weft__loop_signal_fd_event(L, fd))
        return; /* the loop's signalfd (signal.c) */
    if ((unsigned)fd >= (unsigned)L->nwatch)
        return;
    struct weft__watch *w = &L->watch[fd];
    struct weft__fdwait *rd = w->rd, *wr = w->wr;
    if (rd && (ev & (WEFT__IO_READ | WEFT__IO_ERROR))) {
        w->rd = NULL;
        if (wr == rd) {
            /* One waiter for both directions: finished once, out of both
             * slots (left in the writer's slot it would dangle once its
             * task returns, and make the next writer's wait -EBUSY). */
            w->wr = wr = NULL;
        }
        fd_finish(L, rd, ev);
        rd = NULL;
    }
    if (wr && (ev & (WEFT__IO_WRITE | WEFT__IO_ERROR))) {
        w->wr = NULL;
        if (rd == wr) {
            /* The same, woken by writability alone: out of the reader's
             * slot too (left there, it dangled once its task returned,
             * made the next reader's wait -EBUSY, and a later READ report
             * finished a dead waiter). */
            w->rd = rd = NULL;
        }
        fd_finish(L, wr, ev);
        wr = NULL;
    }
    /* One-shot: someone still waiting (the other direction) needs a new arm. */
    if (WEFT_UNLIKELY(rd || wr))
        rearm(L, fd);
}

int weft__loop_fd_forget(int fd)
{
    struct weft_loop *L = weft__loop_tls;
    if (!L || fd < 0)
        return 0;
    int woken = 0;
    if (fd < L->nwatch) {
        /* A woken waiter sees WEFT_IO_ERROR from weft_co_wait_fd; its slot is
         * cleared here, exactly as the loop's own dispatch does. */
        struct weft__watch *w = &L->watch[fd];
        struct weft__fdwait *rd = w->rd, *wr = w->wr;
        w->rd = w->wr = NULL;
        if (rd) {
            fd_finish(L, rd, WEFT__IO_ERROR);
            woken++;
        }
        if (wr && wr != rd) {
            fd_finish(L, wr, WEFT__IO_ERROR);
            woken++;
        }
    }
    /* The fd may have been armed earlier and reported nothing yet: forget it
     * in the kernel before it is closed, so that a later fd with the same
     * number starts clean. */
    if (L->bops->forget)
        L->bops->forget(L->be, fd);
    else
        L->bops->disarm(L->be, fd);
    return woken;
}

/*
 * weft_co_wait_fd for task t of loop L, arguments checked. vouch: the
 * caller saw `events` not ready on the owned fd (epoch `epoch`) with no
 * suspension since (weft__loop_wait_owned): the backend is told with the
 * arm (arm_owned, or vouch then arm). Inlined into both callers: the owned
 * wait is every socket wait, one call less per request.
 */
static inline __attribute__((always_inline)) int
wait_fd(struct weft_loop *L, struct weft_task *t, int fd, unsigned events, weft_time_t deadline,
        bool vouch, uint32_t epoch)
{
    if (WEFT_UNLIKELY(fd >= L->nwatch) && watch_grow(L, fd) != 0)
        return -ENOMEM;
    struct weft__watch *w = &L->watch[fd];
    if (((events & WEFT_IO_READ) && w->rd) || ((events & WEFT_IO_WRITE) && w->wr))
        return -EBUSY;
    struct weft__fdwait fw;
    if (events & WEFT_IO_READ)
        w->rd = &fw;
    if (events & WEFT_IO_WRITE)
        w->wr = &fw;
    int r;
    if (vouch && L->bops->arm_owned) {
        r = L->bops->arm_owned(L->be, fd, events, interest(w), (void *)(intptr_t)(fd + 1), epoch);
    } else {
        if (vouch)
            L->bops->vouch(L->be, fd, events, epoch);
        r = L->bops->arm(L->be, fd, interest(w), (void *)(intptr_t)(fd + 1));
    }
    if (WEFT_UNLIKELY(r != 0)) {
        if (vouch)
            L->bops->vouch(L->be, -1, 0, 0); /* no arm took it: drop it */
        if (w->rd == &fw)
            w->rd = NULL;
        if (w->wr == &fw)
            w->wr = NULL;
        return r;
    }
    /* Only this loop's thread finishes fw, so not before we switch out:
     * armed, the first wait below consumes or takes back the arming,
     * whatever it returns. */
    fd_waiter_arm(t, &fw);
    L->armed++;
    atomic_store_explicit(&L->st_io_waits,
                          atomic_load_explicit(&L->st_io_waits, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    for (;;) {
        r = weft__cotask_wait(t, &fw.w, WEFT__W_WAITING, deadline, W_CO);
        if (WEFT_LIKELY(weft__waiter_state(&fw.w) != WEFT__W_WAITING) || r < 0)
            break;
    }
    L->armed--;
    if (WEFT_LIKELY(weft__waiter_state(&fw.w) != WEFT__W_WAITING))
        return (int)(fw.got & (WEFT_IO_READ | WEFT_IO_WRITE | WEFT_IO_ERROR)) & (int)(events | WEFT_IO_ERROR)
                   ? (int)(fw.got & (events | WEFT_IO_ERROR))
                   : (int)events;
    /* Gave up (timeout, cancel): withdraw from the watch (watch may have
     * moved: re-read it). The backend keeps no stale report that matters:
     * a report for an fd nobody waits on is ignored. */
    w = &L->watch[fd];
    if (w->rd == &fw)
        w->rd = NULL;
    if (w->wr == &fw)
        w->wr = NULL;
    if (!interest(w))
        L->bops->disarm(L->be, fd);
    else
        rearm(L, fd);
    return pub(r);
}

int weft_co_wait_fd(int fd, unsigned events, weft_time_t deadline)
{
    if (fd < 0 || !events || (events & ~(WEFT_IO_READ | WEFT_IO_WRITE)) || deadline < 0)
        return -EINVAL;
    struct weft_task *t = cur_task();
    if (!t)
        return -EPERM;
    return wait_fd(t->loop, t, fd, events, deadline, false, 0);
}

int weft__loop_wait_owned(int fd, unsigned events, weft_time_t deadline)
{
    struct weft_loop *L = weft__loop_tls;
    struct weft_task *t = L ? L->current : NULL;
    if (!t)
        return -EPERM;
    uint32_t epoch = weft__fd_epoch(fd);
    if (epoch & WEFT__EPOCH_OWNED)
        weft__fd_owner_note(L->reg_id, fd); /* weft_net_close elsewhere hands it here */
    /* Not owned (or a backend without owned registrations): one-shot. */
    bool vouch = L->bops->vouch && (epoch & WEFT__EPOCH_OWNED);
    return wait_fd(L, t, fd, events, deadline, vouch, epoch);
}

/* ---- scopes ------------------------------------------------------------------- */

static int scope_push(weft_co_scope_t *s, weft_time_t deadline, uint32_t flags)
{
    if (!s || deadline < 0)
        return -EINVAL;
    struct weft_task *t = cur_task();
    if (!t)
        return -EPERM;
    s->deadline_ = deadline;
    s->flags_ = flags;
    s->task_ = t;
    s->outer_ = t->scope;
    t->scope = s;
    return 0;
}

int weft_co_scope_begin(weft_co_scope_t *s, weft_time_t deadline)
{
    return scope_push(s, deadline, 0);
}

int weft_co_shield_begin(weft_co_scope_t *s)
{
    return scope_push(s, WEFT_FOREVER, SC_SHIELD);
}

int weft_co_scope_end(weft_co_scope_t *s)
{
    if (!s)
        return -EINVAL;
    struct weft_task *t = cur_task();
    if (!t)
        return -EPERM;
    if (t->scope != s || s->task_ != t)
        return -EINVAL;
    t->scope = s->outer_;
    bool shielded = false;
    for (weft_co_scope_t *o = t->scope; o; o = o->outer_)
        if (o->flags_ & SC_SHIELD) {
            shielded = true;
            break;
        }
    if (!shielded && (t->cancelled || weft__future_cancel_requested(t->fut)))
        return -ECANCELED;
    if (s->flags_ & SC_EXPIRED)
        return -ETIMEDOUT;
    return 0;
}

/* ---- task groups -------------------------------------------------------------------- */

struct weft_co_group {
    struct weft_loop *loop;          /* a reference */
    struct weft_task *children;      /* running children (gnext/gprev) */
    uint64_t pending;                /* children not finished */
    int first_err;                   /* the first failure, or 0 */
    bool cancelling;                 /* cancel_all was done for a failure or a cancel */
    struct weft__waiter *waiter;     /* the coroutine in group_wait, or NULL */
    bool waiting;                    /* a coroutine is inside group_wait (until it
                                        returns: woken, it still reads g) */
};

int weft_co_group_create(weft_co_group_t **out)
{
    if (!out)
        return -EINVAL;
    struct weft_loop *L = weft__loop_tls;
    if (!L)
        return -EPERM;
    struct weft_co_group *g = calloc(1, sizeof *g);
    if (!g)
        return -ENOMEM;
    atomic_fetch_add_explicit(&L->refs, 1, memory_order_relaxed);
    g->loop = L;
    *out = g;
    return 0;
}

static void group_cancel_all(struct weft_co_group *g)
{
    for (struct weft_task *c = g->children; c; c = c->gnext)
        weft__cotask_cancel_local(c);
}

int weft_co_group_spawn(weft_co_group_t *g, weft_task_t **out, weft_co_fn fn, void *arg,
                        const char *name, size_t stack_size)
{
    if (!g || !fn)
        return -EINVAL;
    if (weft__loop_tls != g->loop)
        return -EPERM;
    if (g->cancelling)
        return -ECANCELED;
    struct weft_task *c;
    int r = weft__cotask_spawn(g->loop, &c, fn, arg, name, stack_size, g);
    if (r)
        return r;
    c->gnext = g->children;
    if (g->children)
        g->children->gprev = c;
    g->children = c;
    g->pending++;
    if (out)
        *out = c;
    else
        weft__cotask_unref(c);
    return 0;
}

void weft__group_child_done(struct weft_co_group *g, struct weft_task *t)
{
    if (t->gprev)
        t->gprev->gnext = t->gnext;
    else
        g->children = t->gnext;
    if (t->gnext)
        t->gnext->gprev = t->gprev;
    t->gnext = t->gprev = NULL;
    t->group = NULL;
    g->pending--;
    if (t->rc < 0 && t->rc != -ECANCELED && g->first_err == 0) {
        g->first_err = t->rc;
        g->cancelling = true;
        group_cancel_all(g);
    }
    if (g->pending == 0 && g->waiter) {
        struct weft__waiter *w = g->waiter;
        g->waiter = NULL;
        weft__waiter_finish(w, WEFT__W_WOKEN);
    }
}

int weft_co_group_cancel(weft_co_group_t *g)
{
    if (!g)
        return -EINVAL;
    if (weft__loop_tls != g->loop)
        return -EPERM;
    g->cancelling = true;
    group_cancel_all(g);
    return 0;
}

int weft_co_group_wait(weft_co_group_t *g)
{
    if (!g)
        return -EINVAL;
    struct weft_task *t = cur_task();
    if (!t || t->loop != g->loop)
        return -EPERM;
    if (t->group == g)
        return -EDEADLK; /* a child waiting for its own group waits for itself */
    if (g->waiting)
        return -EBUSY; /* one waiter at a time: the wake would reach only one */
    g->waiting = true;
    bool cancelled = false;
    while (g->pending > 0) {
        struct weft__waiter w;
        weft__waiter_init(&w);
        g->waiter = &w;
        int r = weft__cotask_wait(t, &w, WEFT__W_WAITING,  WEFT_FOREVER,
                                cancelled ? W_NOINTR : W_CO);
        if (g->waiter == &w)
            g->waiter = NULL;
        if (r < 0 && !cancelled) {
            /* The waiter was cancelled (or its scope expired): cancel the
             * children and still wait for every one of them. */
            cancelled = true;
            g->cancelling = true;
            group_cancel_all(g);
        }
    }
    g->waiting = false;
    if (cancelled)
        return (t->cancelled || weft__future_cancel_requested(t->fut)) ? -ECANCELED : -ETIMEDOUT;
    return g->first_err;
}

int weft_co_group_free(weft_co_group_t *g)
{
    if (!g)
        return -EINVAL;
    if (g->pending > 0 || g->waiting)
        return -EBUSY;
    weft__loop_unref(g->loop);
    free(g);
    return 0;
}
