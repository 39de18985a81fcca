/*
 * loop.c - the event loop: run queue, timers, the remote queue, the
 * coroutine side of parking, and the starvation watchdog.
 *
 * The scheduler runs on the loop thread's own context (the "thread
 * context" of src/co) and switches into one task at a time; a task switches
 * back when it suspends (yield, a park, a weft_co_* wait) or finishes. Each
 * turn of the scheduler: take what other threads handed in, fire due
 * timers, run every task that is runnable now in FIFO order (tasks made
 * runnable meanwhile run in the next turn), and poll the backend: without
 * waiting if tasks are runnable, else until the next timer.
 *
 * Parking (src/park/park.h). While a loop runs, its thread's park ops are
 * co_park_ops: a waiter initialised by a task records (task, gen) and the
 * loop as its home, and its wait suspends the task instead of the thread.
 *
 * The invariant: a task is claimed for resumption at most once per park,
 * by whoever changes its wait_gen from that park's gen to 0, and only the
 * claimer enqueues it; a suspended task is resumed exactly once, by the
 * one claim of its park (wake, timer, or cancellation), or, if it claimed
 * itself back, it never suspends for that park. wait_gen is non-zero only
 * while a park is open for claims; gens come from a per-record counter
 * that only grows (records are type-stable), so a stale claim (an older
 * park, or a record since reused) expects a gen that wait_gen never holds
 * again, fails, and touches nothing else of the task.
 *
 * Opening a park, general form (any primitive):
 *
 *   sleeper: wait_gen = gen (release); CAS state expect -> expect|SLEEP
 *            (seq_cst, always a write even if SLEEP was set: it heads a
 *            release sequence that the waker's exchange reads from); then
 *            switch out.
 *   waker:   change state -> final (an RMW, acq_rel); if SLEEP was set,
 *            wake(task, gen): claim wait_gen gen -> 0, and on success
 *            enqueue the task.
 *
 * The waker's RMW reads the sleeper's CAS (or a later value), so it sees
 * wait_gen == gen; if instead the state changed before the sleeper's CAS,
 * that CAS fails and the sleeper claims itself back (wait_gen gen -> 0)
 * and does not suspend, unless the waker claimed first: then the sleeper
 * suspends once to consume that enqueue.
 *
 * Armed form (weft__waiter_arm, co_arm; used by a plain blocking channel
 * send/receive): the sleeper sets wait_gen = gen and SLEEP with plain
 * stores BEFORE its waiter becomes visible to any waker (under the channel
 * lock, before the node is queued). The lock's release/acquire then gives
 * every waker what the seq_cst CAS gave above, so the wait itself only
 * loads the state: unchanged -> suspend (a waker will see SLEEP and find
 * wait_gen == gen); changed -> claim back or consume, as above. Claiming
 * a running task is safe: a waker on this loop's thread cannot run until
 * the task switches out, and a remote waker's enqueue is drained by this
 * thread, so also only after. A wait that ends without suspending (a
 * cancellation or deadline found first, a state already final) must take
 * the arming back the same way (co_disarm_task, weft__waiter_disarm).
 *
 * Claims. Timers and cancellation claim by CAS (they run on the loop
 * thread, but a remote waker may race). A wake from another thread claims
 * by CAS. A wake on the task's own loop thread claims with a load and a
 * store (co_wake): every other party that may claim the current park
 * (timer, cancellation, the sleeper taking itself back, an armed sleeper
 * still running) runs on this thread and cannot act between the two, and
 * another thread's wake of the same task can only be stale (one waker per
 * park) and writes nothing. For the same reason a channel claims a
 * waiter's STATE with a store instead of a CAS when the waiter's home is
 * the caller's loop (weft__waiter_local): its owner, the only other party
 * that changes a queued waiter's state without the channel lock (giving
 * up), is suspended on this thread. So a coroutine-to-coroutine hand-over
 * on one loop takes no locked instruction outside the channel lock. An fd
 * wait (task.c) is armed too, and finished with a load and a store
 * (weft__waiter_finish_sole): only this thread ever finishes it.
 *
 * The remote queue is a Treiber stack (R. K. Treiber, "Systems
 * Programming: Coping with Parallelism", IBM RJ 5118, 1986): pushers CAS
 * the head; the loop takes the whole stack with one exchange and reverses
 * it, so there is no ABA (nothing is ever popped singly) and per-pusher
 * order is FIFO. The sentinel LOOP_CLOSED refuses pushes after the run.
 * Waking a sleeping loop (backend wake, an eventfd write) is needed only if
 * the loop may be sleeping: it sets `polling` and re-checks the queue
 * (both seq_cst) before sleeping, and a pusher reads `polling` after its
 * CAS (seq_cst): in the store-buffering pattern one of the two sees the
 * other. `inflight` counts pushers between "decided to push" and "done with
 * the wake", so the loop can close the backend only when none is left.
 */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../platform/platform.h"
#include "net_support.h"

_Thread_local struct weft_loop *weft__loop_tls;

#define LOOP_CLOSED ((struct weft__rnode *)(uintptr_t)1)

/* Scope flags (weft_co_scope_t.flags_). */
#define SC_SHIELD 1u
#define SC_EXPIRED 2u
#define SC_DELIVERED 4u /* a primitive's wait was interrupted for it */

static inline void stat_inc(_Atomic uint64_t *c)
{
    /* Single writer (the loop's thread): no read-modify-write needed.
     * Release: a reader that acquires one counter sees the increments made
     * before it (fill_stats: tasks_finished, then tasks_spawned). */
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                          memory_order_release);
}

/* ---- task records: type-stable, from a process-wide free list ----------- */

#define TASK_CHUNK 256
#define TASK_CACHE_MAX 512 /* records a thread keeps for itself */
struct task_chunk {
    struct task_chunk *next;
    struct weft_task t[TASK_CHUNK];
};
static atomic_flag free_lock = ATOMIC_FLAG_INIT;
static struct weft_task *free_tasks;
static struct task_chunk *chunks; /* kept for the life of the process */
/* A per-thread cache in front of the global list: a loop spawning and
 * finishing tasks takes and returns records without a lock. A thread that
 * exits gives its cache back to the global list (task_cache_flush, a
 * thread-specific key's destructor): kept there, every thread that ever
 * ran a loop took a chunk of records out of circulation for good. */
static _Thread_local struct weft_task *task_cache;
static _Thread_local unsigned task_cache_n;
static _Thread_local bool task_cache_keyed;
static pthread_key_t task_cache_key;
static pthread_once_t task_cache_once = PTHREAD_ONCE_INIT;

static void free_lock_acquire(void)
{
    while (atomic_flag_test_and_set_explicit(&free_lock, memory_order_acquire))
        weft__cpu_relax();
}

static void task_cache_flush(void *unused)
{
    (void)unused;
    if (!task_cache)
        return;
    struct weft_task *last = task_cache;
    while (last->free_next)
        last = last->free_next;
    free_lock_acquire();
    last->free_next = free_tasks;
    free_tasks = task_cache;
    atomic_flag_clear_explicit(&free_lock, memory_order_release);
    task_cache = NULL;
    task_cache_n = 0;
}

size_t weft__cotask_chunks(void)
{
    free_lock_acquire();
    size_t n = 0;
    for (struct task_chunk *c = chunks; c; c = c->next)
        n++;
    atomic_flag_clear_explicit(&free_lock, memory_order_release);
    return n;
}

static void task_cache_key_make(void)
{
    (void)pthread_key_create(&task_cache_key, task_cache_flush);
}

static void task_future_freed(weft_future_t *f);

static WEFT_NOINLINE struct weft_task *task_alloc_slow(void)
{
    /* The batch taken below goes back at the thread's exit (a key with a
     * non-NULL value runs its destructor there). */
    if (!task_cache_keyed) {
        pthread_once(&task_cache_once, task_cache_key_make);
        task_cache_keyed = pthread_setspecific(task_cache_key, (void *)1) == 0;
    }
    free_lock_acquire();
    if (!free_tasks) {
        struct task_chunk *c = calloc(1, sizeof *c);
        if (!c) {
            atomic_flag_clear_explicit(&free_lock, memory_order_release);
            return NULL;
        }
        c->next = chunks;
        chunks = c;
        for (int i = TASK_CHUNK - 1; i >= 0; i--) {
            c->t[i].free_next = free_tasks;
            free_tasks = &c->t[i];
        }
    }
    /* Take a batch: the next allocations are local. */
    struct weft_task *t = free_tasks;
    free_tasks = t->free_next;
    for (unsigned k = 0; free_tasks && k < TASK_CACHE_MAX / 2; k++) {
        struct weft_task *x = free_tasks;
        free_tasks = x->free_next;
        x->free_next = task_cache;
        task_cache = x;
        task_cache_n++;
    }
    atomic_flag_clear_explicit(&free_lock, memory_order_release);
    return t;
}

struct weft_task *weft__cotask_alloc(void)
{
    struct weft_task *t = task_cache;
    if (WEFT_LIKELY(t != NULL)) {
        task_cache = t->free_next;
        task_cache_n--;
    } else {
        t = task_alloc_slow();
        if (!t)
            return NULL;
    }
    /* Keep gen_counter (it only grows) and wait_gen (0 in the free list:
     * a stale waker may be CASing it right now, and fails). */
    uint64_t gc = t->gen_counter;
    struct weft__rnode rn = {0};
    t->rnode = rn;
    t->next = t->all_prev = t->all_next = NULL;
    __atomic_store_n(&t->loop, NULL, __ATOMIC_RELAXED); /* see co_wake */
    t->co = NULL;
    t->fn = NULL;
    t->arg = t->result = NULL;
    t->stack_size = 0;
    weft__future_init(&t->fut_store, task_future_freed);
    t->fut_store.on_cancel = weft__cotask_future_cancelled;
    t->fut = &t->fut_store;
    atomic_store_explicit(&t->refs, 1, memory_order_relaxed);
    t->state = T_NEW;
    t->rc = 0;
    t->id = weft__id_new();
    t->gen_counter = gc;
    t->timer_gen = 0;
    t->resume_reason = R_WAKE;
    t->interruptible = false;
    t->timer_at = 0;
    t->timer_seq = 0;
    t->heap_idx = -1;
    t->cancelled = t->cancel_prim_delivered = t->detached = false;
    t->scope = NULL;
    t->group = NULL;
    t->gnext = t->gprev = NULL;
    t->free_next = NULL;
    return t;
}

static void task_free_record(struct weft_task *t)
{
    if (task_cache_n < TASK_CACHE_MAX) {
        t->free_next = task_cache;
        task_cache = t;
        task_cache_n++;
        return;
    }
    free_lock_acquire();
    t->free_next = free_tasks;
    free_tasks = t;
    atomic_flag_clear_explicit(&free_lock, memory_order_release);
}

/* The last reference to the task's future is gone (the task's own, dropped
 * when the task's last reference went, or a user's that outlived it). */
static void task_future_freed(weft_future_t *f)
{
    struct weft_task *t =
        (struct weft_task *)((char *)f - offsetof(struct weft_task, fut_store));
    struct weft_loop *L = t->loop;
    t->fut = NULL;
    task_free_record(t);
    if (L)
        weft__loop_unref(L);
}

void weft__cotask_unref(struct weft_task *t)
{
    if (atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) != 1)
        return;
    weft_future_release(t->fut); /* usually the last: returns the record */
}

/* Names are read by the watchdog from its own thread: byte-wise atomics.
 * The release fence first: a reader that sees any of the new bytes (and
 * then fences with acquire) also sees what this thread stored before, the
 * turn count the watchdog re-reads to tell that the record it read the
 * name from now belongs to another task (not needed on x86, whose stores
 * are seen in order; it is on AArch64). */
static void name_store(char *dst, const char *src)
{
    atomic_thread_fence(memory_order_release);
    size_t i = 0;
    for (; src[i] && i < WEFT__CO_NAME_MAX - 1; i++)
        __atomic_store_n(&dst[i], src[i], __ATOMIC_RELAXED);
    __atomic_store_n(&dst[i], '\0', __ATOMIC_RELAXED);
}

static void name_load(char *dst, const char *src)
{
    for (size_t i = 0; i < WEFT__CO_NAME_MAX; i++)
        dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
    dst[WEFT__CO_NAME_MAX - 1] = '\0';
}

/* ---- the loop record ------------------------------------------------------ */

void weft__loop_unref(struct weft_loop *L)
{
    if (atomic_fetch_sub_explicit(&L->refs, 1, memory_order_acq_rel) != 1)
        return;
    free(L);
}

int weft_loop_retain(weft_loop_t *L)
{
    if (!L)
        return -EINVAL;
    atomic_fetch_add_explicit(&L->refs, 1, memory_order_relaxed);
    return 0;
}

int weft_loop_release(weft_loop_t *L)
{
    if (!L)
        return -EINVAL;
    weft__loop_unref(L);
    return 0;
}

weft_loop_t *weft_loop_current(void)
{
    return weft__loop_tls;
}

const char *weft_loop_backend(const weft_loop_t *L)
{
    return L ? L->bops->name : NULL;
}

/* ---- run queue and timers (loop thread only) ------------------------------ */

void weft__loop_runq_push(struct weft_loop *L, struct weft_task *t)
{
    t->next = NULL;
    if (L->runq_tail)
        L->runq_tail->next = t;
    else
        L->runq_head = t;
    L->runq_tail = t;
    if (t->state != T_NEW)
        t->state = T_RUNNABLE;
}

static struct weft_task *runq_pop(struct weft_loop *L)
{
    struct weft_task *t = L->runq_head;
    if (t) {
        L->runq_head = t->next;
        if (!L->runq_head)
            L->runq_tail = NULL;
        t->next = NULL;
    }
    return t;
}

static inline bool timer_less(const struct weft_task *a, const struct weft_task *b)
{
    return a->timer_at < b->timer_at || (a->timer_at == b->timer_at && a->timer_seq < b->timer_seq);
}

static void heap_set(struct weft_loop *L, uint32_t i, struct weft_task *t)
{
    L->heap[i] = t;
    t->heap_idx = (int32_t)i;
}

static void heap_up(struct weft_loop *L, uint32_t i)
{
    struct weft_task *t = L->heap[i];
    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (!timer_less(t, L->heap[p]))
            break;
        heap_set(L, i, L->heap[p]);
        i = p;
    }
    heap_set(L, i, t);
}

static void heap_down(struct weft_loop *L, uint32_t i)
{
    struct weft_task *t = L->heap[i];
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= L->heap_len)
            break;
        if (c + 1 < L->heap_len && timer_less(L->heap[c + 1], L->heap[c]))
            c++;
        if (!timer_less(L->heap[c], t))
            break;
        heap_set(L, i, L->heap[c]);
        i = c;
    }
    heap_set(L, i, t);
}

static int timer_add(struct weft_loop *L, struct weft_task *t, weft_time_t at, uint64_t gen)
{
    if (L->heap_len == L->heap_cap) {
        uint32_t cap = L->heap_cap ? L->heap_cap * 2 : 64;
        struct weft_task **h = realloc(L->heap, cap * sizeof *h);
        if (!h)
            return -ENOMEM;
        L->heap = h;
        L->heap_cap = cap;
    }
    t->timer_at = at;
    t->timer_seq = L->timer_seq++;
    t->timer_gen = gen;
    L->heap[L->heap_len] = t;
    heap_up(L, L->heap_len++);
    return 0;
}

static void timer_remove(struct weft_loop *L, struct weft_task *t)
{
    uint32_t i = (uint32_t)t->heap_idx;
    t->heap_idx = -1;
    struct weft_task *last = L->heap[--L->heap_len];
    if (i == L->heap_len)
        return;
    L->heap[i] = last;
    last->heap_idx = (int32_t)i;
    if (i > 0 && timer_less(last, L->heap[(i - 1) / 2]))
        heap_up(L, i);
    else
        heap_down(L, i);
}

static void fire_timers(struct weft_loop *L, weft_time_t now)
{
    while (L->heap_len && L->heap[0]->timer_at <= now) {
        struct weft_task *t = L->heap[0];
        timer_remove(L, t);
        uint64_t g = t->timer_gen;
        if (g && atomic_compare_exchange_strong_explicit(&t->wait_gen, &g, 0,
                                                         memory_order_acq_rel,
                                                         memory_order_relaxed)) {
            t->resume_reason = R_TIMEOUT;
            weft__loop_runq_push(L, t);
        }
    }
}

/* ---- the remote queue -------------------------------------------------------- */

int weft__loop_remote_push(struct weft_loop *L, struct weft__rnode *n)
{
    atomic_fetch_add_explicit(&L->inflight, 1, memory_order_seq_cst);
    struct weft__rnode *head = atomic_load_explicit(&L->remote, memory_order_relaxed);
    do {
        if (head == LOOP_CLOSED) {
            atomic_fetch_sub_explicit(&L->inflight, 1, memory_order_release);
            return -EPIPE;
        }
        n->next = head;
    } while (!atomic_compare_exchange_weak_explicit(&L->remote, &head, n, memory_order_seq_cst,
                                                    memory_order_relaxed));
    /* Store-buffering with the loop's polling/remote check: see the top. */
    if (atomic_load_explicit(&L->polling, memory_order_seq_cst))
        L->bops->wake(L->be);
    /* Release: the loop's acquire of 0 orders our wake before its fini. */
    atomic_fetch_sub_explicit(&L->inflight, 1, memory_order_release);
    return 0;
}

struct call_node {
    struct weft__rnode rn; /* first: the node is freed through it */
    void (*fn)(void *arg);
    void *arg;
};

/* Take everything handed in; tasks go to the run queue, calls run now.
 * Returns how many nodes there were. */
static int drain_remote(struct weft_loop *L, struct weft__rnode *replace)
{
    /* The common case under load is an empty stack: a plain load avoids a
     * locked exchange on every scheduler turn. Relaxed: reading NULL takes
     * nothing, so there is nothing to synchronise with; a push that lands
     * just after is taken by the next turn (or the pre-poll check). */
    if (replace == NULL && atomic_load_explicit(&L->remote, memory_order_relaxed) == NULL)
        return 0;
    struct weft__rnode *n = atomic_exchange_explicit(&L->remote, replace, memory_order_acquire);
    if (!n || n == LOOP_CLOSED)
        return 0;
    struct weft__rnode *rev = NULL;
    while (n) {
        struct weft__rnode *next = n->next;
        n->next = rev;
        rev = n;
        n = next;
    }
    int count = 0;
    for (n = rev; n; count++) {
        struct weft__rnode *next = n->next;
        if (n->kind == RN_TASK) {
            struct weft_task *t = (struct weft_task *)((char *)n - offsetof(struct weft_task, rnode));
            stat_inc(&L->st_remote_wakes);
            weft__loop_runq_push(L, t);
        } else if (n->kind == RN_SIGINT) {
            weft__loop_sigint_event(L); /* signal.c; the node is not ours to free */
        } else {
            struct call_node *c = (struct call_node *)n;
            stat_inc(&L->st_callbacks);
            c->fn(c->arg);
            free(c);
        }
        n = next;
    }
    return count;
}

int weft_loop_call_soon_threadsafe(weft_loop_t *L, void (*fn)(void *arg), void *arg)
{
    if (!L || !fn)
        return -EINVAL;
    struct call_node *c = malloc(sizeof *c);
    if (!c)
        return -ENOMEM;
    c->rn.kind = RN_CALL;
    c->fn = fn;
    c->arg = arg;
    int r = weft__loop_remote_push(L, &c->rn);
    if (r)
        free(c);
    return r;
}

void weft__cotask_enqueue(struct weft_task *t)
{
    struct weft_loop *L = t->loop;
    if (weft__loop_tls == L) {
        weft__loop_runq_push(L, t);
        return;
    }
    t->rnode.kind = RN_TASK;
    /* Cannot fail: the task is suspended, so its loop is still running. */
    weft__loop_remote_push(L, &t->rnode);
}

/* ---- cancellation state -------------------------------------------------------- */

enum { CS_NONE = 0, CS_CANCEL, CS_SCOPE };

/*
 * What cuts the current task's suspension points short now: CS_CANCEL (the
 * task is cancelled and no shield holds it off), CS_SCOPE (*which: an
 * enclosing scope whose deadline has passed), or CS_NONE. *limit: the
 * earliest deadline of scopes in force that have not expired (a wait must
 * end there); *reach: a cancellation arriving now would be in force.
 */
static int cancel_state(struct weft_task *t, weft_time_t *limit, weft_co_scope_t **which,
                        bool *reach, bool mark)
{
    *limit = WEFT_FOREVER;
    *which = NULL;
    weft_time_t now = 0;
    bool shielded = false;
    for (weft_co_scope_t *s = t->scope; s; s = s->outer_) {
        if (!*which && (s->flags_ & SC_EXPIRED)) {
            *which = s;
        } else if (!*which && s->deadline_ != WEFT_FOREVER) {
            if (!now)
                now = weft_now();
            if (now >= s->deadline_) {
                if (mark)
                    s->flags_ |= SC_EXPIRED;
                *which = s;
            } else if (s->deadline_ < *limit) {
                *limit = s->deadline_;
            }
        }
        if (s->flags_ & SC_SHIELD) {
            shielded = true;
            break;
        }
    }
    if (!shielded && !t->cancelled && t->fut && weft__future_cancel_requested(t->fut))
        t->cancelled = true; /* weft_future_cancel on the task's future */
    *reach = !shielded;
    if (!shielded && t->cancelled)
        return CS_CANCEL;
    return *which ? CS_SCOPE : CS_NONE;
}

/* ---- suspending a task ----------------------------------------------------------- */

/* What the scheduler does around running a task, shared by run_task and
 * the direct hand-off below. */
static inline void task_enter(struct weft_loop *L, struct weft_task *t)
{
    t->state = T_RUNNING;
    L->current = t;
    weft__self_id_tls = t->id; /* never 0: ids start at 1 */
    atomic_store_explicit(&L->turn, atomic_load_explicit(&L->turn, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    if (L->timing)
        atomic_store_explicit(&L->run_start, weft_now(), memory_order_relaxed);
    atomic_store_explicit(&L->running, t, memory_order_release);
    /* (turn doubles as the switch count of weft_loop_stats) */
}

static inline void task_leave(struct weft_loop *L, struct weft_task *t)
{
    atomic_store_explicit(&L->running, NULL, memory_order_relaxed);
    if (L->timing) {
        weft_time_t d = weft_now() - atomic_load_explicit(&L->run_start, memory_order_relaxed);
        if (d > atomic_load_explicit(&L->st_longest, memory_order_relaxed)) {
            atomic_store_explicit(&L->st_longest, d, memory_order_relaxed);
            name_store(L->longest_name, t->name);
        }
    }
}

/*
 * The next task to run if the scheduler would run it right now with nothing
 * in between, popped, or NULL. Within a turn (turn_end set) that is the
 * head of the run queue. Between turns the scheduler would drain the remote
 * queue, fire due timers, and (after a turn, if fds are armed) poll the
 * backend before starting the next turn with the head: so only when there
 * is nothing remote, no timer and no armed fd does the head start the next
 * turn at once. A task not yet started (T_NEW) needs the scheduler to make
 * its coroutine. So a hand-off never reorders the run queue nor skips
 * work of the scheduler: the FIFO turns of docs/loop.md hold as they are.
 */
static inline struct weft_task *handoff_next(struct weft_loop *L)
{
    struct weft_task *n = L->runq_head;
    if (!n || n->state != T_RUNNABLE || n == L->current)
        return NULL; /* (a task that yields alone finds itself at the head) */
    if (!L->turn_end) {
        if (L->armed || L->heap_len ||
            atomic_load_explicit(&L->remote, memory_order_relaxed) != NULL)
            return NULL;
        L->turn_end = L->runq_tail; /* the next turn starts here */
    }
    runq_pop(L);
    if (n == L->turn_end)
        L->turn_end = NULL;
    return n;
}

/* Leave the running task t: switch straight to the next task when the
 * scheduler would run it next anyway (saving a switch into the scheduler
 * and back), else to the scheduler. */
static inline void switch_out(struct weft_task *t)
{
    struct weft_loop *L = t->loop;
    struct weft_task *n = handoff_next(L);
    if (n) {
        /* task_leave then task_enter; running goes from t to n directly. */
        if (WEFT_UNLIKELY(L->timing))
            task_leave(L, t);
        task_enter(L, n);
        weft__co_switch(t->co, n->co, NULL);
        return;
    }
    weft__co_switch(t->co, L->sched, NULL);
}

static inline void to_scheduler(struct weft_task *t)
{
    t->state = T_SUSPENDED;
    switch_out(t);
}

/* Set SLEEP with a CAS that writes even when SLEEP is already set (see the
 * protocol at the top). False if the state is no longer expect. */
static bool mark_sleep_rmw(struct weft__waiter *w, uint32_t expect)
{
    uint32_t cur = atomic_load_explicit(&w->state, memory_order_relaxed);
    for (;;) {
        if ((cur & ~WEFT__W_SLEEP) != expect)
            return false;
        if (atomic_compare_exchange_weak_explicit(&w->state, &cur, cur | WEFT__W_SLEEP,
                                                  memory_order_seq_cst, memory_order_relaxed))
            return true;
    }
}

/* The task armed its park (co_arm) and will not sleep through it: claim
 * the arming back; if a waker was first, it has enqueued (or is enqueuing)
 * the task, so suspend once to consume that wake. */
static WEFT_NOINLINE void co_disarm_task(struct weft_task *t, struct weft__waiter *w)
{
    w->armed = false;
    uint64_t g = w->gen;
    if (atomic_compare_exchange_strong_explicit(&t->wait_gen, &g, 0, memory_order_acq_rel,
                                                memory_order_relaxed))
        return;
    to_scheduler(t); /* resume_reason is R_WAKE: the waker set it */
}

/* A wait that ends before suspending: an armed park must be taken back. */
static inline int early_return(struct weft_task *t, struct weft__waiter *w, int r)
{
    if (WEFT_UNLIKELY(w->armed))
        co_disarm_task(t, w);
    return r;
}

int weft__cotask_wait(struct weft_task *t, struct weft__waiter *w, uint32_t expect,
                    weft_time_t deadline, int mode)
{
    struct weft_loop *L = t->loop;
    weft_time_t limit = WEFT_FOREVER;
    weft_co_scope_t *sc = NULL;
    bool reach = false, intr = false;
    if (mode == W_CO) {
        /* No scope and not cancelled: what cancel_state would conclude
         * (nothing cuts the wait short, no scope limit, a cancellation
         * would reach us), without the call (every fd wait comes here). */
        if (WEFT_LIKELY(!t->scope && !t->cancelled && !weft__future_cancel_requested(t->fut))) {
            intr = true;
        } else {
            int why = cancel_state(t, &limit, &sc, &reach, true);
            if (why == CS_CANCEL)
                return early_return(t, w, -ECANCELED);
            if (why == CS_SCOPE)
                return early_return(t, w, WEFT__SCOPE_EXPIRED);
            intr = reach;
        }
    } else if (mode == W_PRIMC) {
        /* Cancellation is level-triggered here as for W_CO; scopes cut only
         * finite waits, once (as W_PRIM), and an infinite wait ignores
         * their deadlines. Skip the scan when there is nothing to find. */
        if (t->scope || t->cancelled || weft__future_cancel_requested(t->fut)) {
            /* An infinite wait is not cut by a scope: an expired one is not
             * marked for it either (weft_co_scope_end says -ETIMEDOUT only
             * for a cut). */
            int why = cancel_state(t, &limit, &sc, &reach, deadline != WEFT_FOREVER);
            if (why == CS_CANCEL)
                return early_return(t, w, -ECANCELED);
            if (deadline == WEFT_FOREVER)
                limit = WEFT_FOREVER;
            if (why == CS_SCOPE && deadline != WEFT_FOREVER) {
                if (!(sc->flags_ & SC_DELIVERED)) {
                    sc->flags_ |= SC_DELIVERED;
                    return early_return(t, w, -ETIMEDOUT);
                }
                limit = WEFT_FOREVER;
            }
            intr = reach;
        } else {
            intr = true;
        }
    } else if (mode == W_PRIM && deadline != WEFT_FOREVER) {
        int why = cancel_state(t, &limit, &sc, &reach, true);
        if (why == CS_CANCEL && !t->cancel_prim_delivered) {
            t->cancel_prim_delivered = true;
            return early_return(t, w, -ETIMEDOUT);
        }
        if (why == CS_SCOPE && !(sc->flags_ & SC_DELIVERED)) {
            sc->flags_ |= SC_DELIVERED;
            return early_return(t, w, -ETIMEDOUT);
        }
        if (why != CS_NONE)
            limit = WEFT_FOREVER; /* delivered once already: just wait */
        intr = reach && !t->cancelled;
    }
    weft_time_t at = deadline < limit ? deadline : limit;

    uint64_t gen = w->gen;
    bool sleep;
    if (w->armed) {
        /* Armed (co_arm): wait_gen and SLEEP were set before any waker could
         * see the waiter, so only check that nobody finished it meanwhile.
         * If someone did, it saw SLEEP and wakes (or woke) us: the same
         * claim-back as a failed mark. */
        w->armed = false;
        sleep = (atomic_load_explicit(&w->state, memory_order_relaxed) & ~WEFT__W_SLEEP) ==
                expect;
    } else {
        /* release: a waker's CAS on wait_gen (another thread's, say) then
         * comes after everything this thread did to t, resume_reason
         * included. */
        atomic_store_explicit(&t->wait_gen, gen, memory_order_release);
        sleep = mark_sleep_rmw(w, expect);
    }
    if (!sleep) {
        uint64_t g = gen;
        if (atomic_compare_exchange_strong_explicit(&t->wait_gen, &g, 0, memory_order_acq_rel,
                                                    memory_order_relaxed))
            return 0;
        /* A waker claimed us between the two: it enqueues us; suspend to
         * consume that. */
    } else {
        t->interruptible = intr;
        if (at != WEFT_FOREVER && timer_add(L, t, at, gen) != 0) {
            /* No memory for the timer: wait a turn instead of sleeping. */
            uint64_t g = gen;
            if (atomic_compare_exchange_strong_explicit(&t->wait_gen, &g, 0,
                                                        memory_order_acq_rel,
                                                        memory_order_relaxed)) {
                t->resume_reason = R_TIMEOUT;
                weft__loop_runq_push(L, t);
            }
        }
    }
    to_scheduler(t);
    t->interruptible = false;
    if (t->heap_idx >= 0)
        timer_remove(L, t);
    switch (t->resume_reason) {
    case R_WAKE:
        return 0;
    case R_CANCEL:
        if (mode == W_CO || mode == W_PRIMC)
            return -ECANCELED;
        t->cancel_prim_delivered = true;
        return -ETIMEDOUT;
    default:
        break;
    }
    /* R_TIMEOUT: our deadline, or a scope's. A cancellable wait whose task
     * was cancelled after its timer fired (before it ran again) says
     * -ECANCELED, not -ETIMEDOUT: the cancellation wins, as it does over
     * a scope's deadline. */
    bool own = deadline != WEFT_FOREVER && weft_now() >= deadline;
    if (own && ((mode != W_CO && mode != W_PRIMC) ||
                (!t->scope && !t->cancelled && !weft__future_cancel_requested(t->fut))))
        return -ETIMEDOUT; /* (the common case: nothing to scan) */
    if (mode == W_NOINTR)
        return 0;
    int why = cancel_state(t, &limit, &sc, &reach, !own);
    if (why == CS_CANCEL && (mode == W_CO || mode == W_PRIMC))
        return -ECANCELED;
    if (own)
        return -ETIMEDOUT;
    if (mode == W_CO)
        return why == CS_SCOPE ? WEFT__SCOPE_EXPIRED : 0;
    if (why == CS_SCOPE && !(sc->flags_ & SC_DELIVERED)) {
        sc->flags_ |= SC_DELIVERED;
        return -ETIMEDOUT;
    }
    if (why == CS_CANCEL && !t->cancel_prim_delivered) {
        t->cancel_prim_delivered = true;
        return -ETIMEDOUT;
    }
    return 0;
}

void weft__cotask_suspend_yield(struct weft_task *t)
{
    weft__loop_runq_push(t->loop, t); /* T_RUNNABLE */
    switch_out(t);
}

int weft__cotask_cancel_local(struct weft_task *t)
{
    if (t->state == T_DONE)
        return -EALREADY;
    t->cancelled = true;
    if (t->state == T_SUSPENDED && t->interruptible) {
        uint64_t g = atomic_load_explicit(&t->wait_gen, memory_order_relaxed);
        if (g && atomic_compare_exchange_strong_explicit(&t->wait_gen, &g, 0,
                                                         memory_order_acq_rel,
                                                         memory_order_relaxed)) {
            t->resume_reason = R_CANCEL;
            weft__loop_runq_push(t->loop, t);
        }
    }
    return 0;
}

/* ---- the park ops of a loop's thread ----------------------------------------------- */

static void co_prepare(struct weft__waiter *w)
{
    struct weft_loop *L = weft__loop_tls;
    struct weft_task *t = L ? L->current : NULL;
    if (!t) { /* the scheduler context (a call_soon function): block the thread */
        weft__thread_park_ops.prepare(w);
        return;
    }
    w->ctx = t;
    w->gen = ++t->gen_counter;
    w->spin = 0;
    w->home = L; /* weft__waiter_local: this loop's tasks take turns */
}

/*
 * The common coroutine wait, in full: an armed park (its wait_gen and SLEEP
 * set before any waker could see the waiter), no deadline, cancellable,
 * and nothing that could cut it short now (no scope, not cancelled): no
 * timer, no scope scan, no RMW. It is weft__cotask_wait's W_PRIMC path for
 * that case, step for step. cotask_wait_lean_applies says whether it
 * applies; cotask_wait_lean does it.
 */
static inline bool cotask_wait_lean_applies(struct weft_task *t, struct weft__waiter *w,
                                            weft_time_t deadline)
{
    return w->armed && deadline == WEFT_FOREVER && w->cancellable && !t->scope &&
           !t->cancelled && !weft__future_cancel_requested(t->fut);
}

/* The lean wait, where cotask_wait_lean_applies: 0 (woken) or -ECANCELED. */
static WEFT_NOINLINE int cotask_wait_lean(struct weft_task *t, struct weft__waiter *w,
                                          uint32_t expect)
{
    w->armed = false;
    if ((atomic_load_explicit(&w->state, memory_order_relaxed) & ~WEFT__W_SLEEP) != expect) {
        /* Finished already; its waker saw SLEEP and claims us, unless we
         * claim ourselves back first. */
        uint64_t g = w->gen;
        if (atomic_compare_exchange_strong_explicit(&t->wait_gen, &g, 0, memory_order_acq_rel,
                                                    memory_order_relaxed))
            return 0;
        to_scheduler(t); /* consume the waker's enqueue */
        return 0;        /* R_WAKE: interruptible was false */
    }
    t->interruptible = true;
    to_scheduler(t);
    t->interruptible = false;
    /* No timer was armed, and a stale one cannot claim this park: R_WAKE
     * or R_CANCEL. */
    return t->resume_reason == R_CANCEL ? -ECANCELED : 0;
}

static WEFT_NOINLINE int co_wait_full(struct weft__waiter *w, uint32_t expect,
                                      weft_time_t deadline)
{
    struct weft_task *t = w->ctx;
    int mode = w->cancellable ? W_PRIMC : W_PRIM;
    for (;;) {
        int r = weft__cotask_wait(t, w, expect, deadline, mode);
        if (r == -ETIMEDOUT || r == -ECANCELED)
            return r;
        if (weft__waiter_state(w) != expect)
            return 0;
        if (r == 0)
            return 0; /* spurious: weft__waiter_wait re-checks and calls again */
    }
}

/* Only tail calls here, so that the common (lean) wait pays for no more
 * saved registers than it needs itself. */
static int co_wait(struct weft__waiter *w, uint32_t expect, weft_time_t deadline)
{
    struct weft_task *t = w->ctx;
    if (!t)
        return weft__thread_park_ops.wait(w, expect, deadline);
    if (WEFT_LIKELY(cotask_wait_lean_applies(t, w, deadline)))
        return cotask_wait_lean(t, w, expect); /* 0: woken (the caller re-reads
                                                  the state), or -ECANCELED */
    return co_wait_full(w, expect, deadline);
}

static void co_wake(void *ctx, uint64_t gen, _Atomic uint32_t *state)
{
    if (!ctx) {
        weft__thread_park_ops.wake(ctx, gen, state);
        return;
    }
    struct weft_task *t = ctx;
    /* acquire: pairs with the sleeper's release store of wait_gen, so that
     * t->loop (set before the task first ran) is visible; a stale wake (the
     * record may even have been reused: records are type-stable and gens
     * only grow) sees another value and reads nothing else of t. */
    if (atomic_load_explicit(&t->wait_gen, memory_order_acquire) != gen)
        return; /* stale */
    /* Relaxed atomic: between the check above and this read the task may
     * finish on its loop and its record be reused by another loop's thread,
     * which writes loop. Then L is that other loop (never this thread's:
     * this thread is busy here, so it cannot be the one reusing it), and
     * the CAS below fails on the new gen. */
    struct weft_loop *L = __atomic_load_n(&t->loop, __ATOMIC_RELAXED);
    if (!L)
        return; /* reused meanwhile and not spawned yet (alloc clears loop):
                   stale; on a thread with no loop it would match below */
    if (weft__loop_tls == L) {
        /* On the task's own loop thread: no locked RMW needed
         * (weft__cotask_wake_here, whose check is the one above). */
        weft__cotask_claimed_here(L, t);
        return;
    }
    uint64_t g = gen;
    if (!atomic_compare_exchange_strong_explicit(&t->wait_gen, &g, 0, memory_order_acq_rel,
                                                 memory_order_relaxed))
        return; /* stale: not suspended in that park any more */
    t->resume_reason = R_WAKE;
    weft__cotask_enqueue(t);
}

/* co_wake's same-loop path, for a waiter of a task of the calling thread's
 * loop (weft__waiter_local). */
static void co_wake_local(struct weft__waiter *w)
{
    weft__cotask_wake_here(weft__loop_tls, w->ctx, w->gen);
}

/* Arm the park now (the waiter is not yet visible to any waker): from here
 * on a wake of (t, gen) claims the task exactly as if it had suspended, so
 * weft__cotask_wait need not write wait_gen nor set SLEEP with a locked
 * RMW. Safe while the task still runs: a waker on this loop's thread cannot
 * run before the task suspends, and a remote waker's enqueue is drained by
 * this thread, so also after. An OS-thread context (no task) cannot arm. */
static bool co_arm(struct weft__waiter *w)
{
    struct weft_task *t = w->ctx;
    if (!t)
        return false;
    /* release, as in weft__cotask_wait; what really publishes it to the
     * waker is the release that publishes the waiter (a lock's unlock). */
    atomic_store_explicit(&t->wait_gen, w->gen, memory_order_release);
    return true;
}

static void co_disarm(struct weft__waiter *w)
{
    co_disarm_task(w->ctx, w);
}

/* co_prepare, then co_arm, in one call. */
static bool co_prepare_armed(struct weft__waiter *w)
{
    struct weft_loop *L = weft__loop_tls;
    struct weft_task *t = L ? L->current : NULL;
    if (!t) { /* the scheduler context: a thread's waiter, never armed */
        weft__thread_park_ops.prepare(w);
        return false;
    }
    w->ctx = t;
    w->gen = ++t->gen_counter;
    w->spin = 0;
    w->home = L;
    atomic_store_explicit(&t->wait_gen, w->gen, memory_order_release); /* as co_arm */
    return true;
}

static const struct weft__park_ops co_park_ops = {
    .name = "coroutine",
    .prepare = co_prepare,
    .wait = co_wait,
    .wake = co_wake,
    .arm = co_arm,
    .disarm = co_disarm,
    .prepare_armed = co_prepare_armed,
    .wake_local = co_wake_local,
};

/* ---- running tasks ----------------------------------------------------------------- */

static void *co_entry(void *arg, void *first)
{
    (void)first;
    struct weft_task *t = arg;
    void *res = NULL;
    t->rc = t->fn(t->arg, &res);
    t->result = res;
    return NULL; /* ends into the scheduler, its resumer */
}

static void report_failure(struct weft_loop *L, struct weft_task *t)
{
    if (L->on_failure)
        L->on_failure(t->name, t->rc, L->on_failure_arg);
    else
        fprintf(stderr, "weft: task '%s' failed: %s (%d); nobody awaits it\n", t->name,
                weft_strerror(t->rc), t->rc);
}

static void task_finished(struct weft_loop *L, struct weft_task *t)
{
    t->state = T_DONE;
    if (t->co) {
        weft__co_free(t->co);
        t->co = NULL;
    }
    if (t->all_prev)
        t->all_prev->all_next = t->all_next;
    else
        L->all_head = t->all_next;
    if (t->all_next)
        t->all_next->all_prev = t->all_prev;
    L->live--;
    stat_inc(&L->st_finished);
    if (t->rc == -ECANCELED)
        stat_inc(&L->st_cancelled);
    else if (t->rc < 0)
        stat_inc(&L->st_failed);
    if (t->rc >= 0)
        weft_future_set_result(t->fut, t->result);
    else
        weft_future_set_error(t->fut, t->rc);
    if (t->group)
        weft__group_child_done(t->group, t);
    else if (t->detached && t->rc < 0 && t->rc != -ECANCELED)
        report_failure(L, t);
    if (t == L->main) {
        L->main_done = true;
        L->main_rc = t->rc;
        L->main = NULL;
        for (struct weft_task *o = L->all_head; o; o = o->all_next)
            weft__cotask_cancel_local(o);
    }
    weft__cotask_unref(t); /* the loop's reference */
}

static void run_task(struct weft_loop *L, struct weft_task *t)
{
    if (t->state == T_NEW) {
        int r = 0;
        if (t->cancelled || weft_future_set_running(t->fut) != 0)
            r = -ECANCELED;
        else
            r = weft__co_create(&t->co, co_entry, t, t->name, t->stack_size);
        if (r) {
            t->rc = r;
            task_finished(L, t);
            return;
        }
        /* A task may be resumed by another task (to_scheduler's hand-off),
         * which then is its resumer: it must end into the scheduler. */
        weft__co_set_exit_to(t->co, L->sched);
    }
    task_enter(L, t);
    weft__co_switch(L->sched, t->co, NULL);
    /* Back from whichever task ran last: hand-offs may have run others. */
    t = L->current;
    task_leave(L, t);
    /* Back to the thread's own id (weft__self_id_set(0) would look it up
     * again: this runs on every switch). */
    weft__self_id_tls = L->owner_tid;
    L->current = NULL;
    if (t->co->state == WEFT__CO_DONE)
        task_finished(L, t);
}

int weft__cotask_spawn(struct weft_loop *L, struct weft_task **out, weft_co_fn fn, void *arg,
                     const char *name, size_t stack_size, struct weft_co_group *g)
{
    if (!fn || stack_size > WEFT__CO_STACK_MAX)
        return -EINVAL;
    struct weft_task *t = weft__cotask_alloc();
    if (!t)
        return -ENOMEM;
    t->fn = fn;
    t->arg = arg;
    t->stack_size = stack_size;
    if (name) {
        name_store(t->name, name);
    } else {
        char buf[WEFT__CO_NAME_MAX];
        snprintf(buf, sizeof buf, "co#%llu", (unsigned long long)t->id);
        name_store(t->name, buf);
    }
    atomic_fetch_add_explicit(&L->refs, 1, memory_order_relaxed);
    __atomic_store_n(&t->loop, L, __ATOMIC_RELAXED); /* see co_wake */
    t->group = g;
    t->detached = !out;
    if (out) {
        atomic_store_explicit(&t->refs, 2, memory_order_relaxed);
        *out = t;
    }
    if (L->main_done)
        t->cancelled = true; /* asyncio.run is finishing: start cancelled */
    t->all_next = L->all_head;
    if (L->all_head)
        L->all_head->all_prev = t;
    L->all_head = t;
    L->live++;
    stat_inc(&L->st_spawned);
    weft__loop_runq_push(L, t);
    return 0;
}

/* ---- fd readiness ------------------------------------------------------------------ */

static void dispatch_events(struct weft_loop *L, struct weft__io_event *ev, int n)
{
    for (int i = 0; i < n; i++)
        weft__loop_fd_event(L, (int)((intptr_t)ev[i].data - 1), ev[i].events);
}

static void poll_backend(struct weft_loop *L, weft_time_t deadline)
{
    struct weft__io_event ev[64];
    stat_inc(&L->st_polls);
    weft__loop_polls_tls++; /* net_support.h: the count drained stamps use */
    int n = L->bops->poll(L->be, deadline, ev, 64);
    if (n > 0)
        dispatch_events(L, ev, n);
}

/* ---- the scheduler -------------------------------------------------------------------- */

static void schedule(struct weft_loop *L)
{
    for (;;) {
        drain_remote(L, NULL);
        if (L->heap_len)
            fire_timers(L, weft_now());
        if (L->runq_head) {
            /* One turn: the tasks runnable now, in FIFO order. turn_end
             * is the last of them; a hand-off (to_scheduler) may pop some
             * of them itself, and clears turn_end when it pops the last. */
            L->turn_end = L->runq_tail;
            while (L->turn_end) {
                struct weft_task *t = runq_pop(L);
                if (t == L->turn_end)
                    L->turn_end = NULL;
                run_task(L, t);
            }
            /* Busy (tasks runnable again): look at I/O without sleeping,
             * so that runnable tasks cannot starve it. Idle: go round to
             * the sleeping poll below, which takes the same events; a
             * zero-timeout poll first would be one more epoll_wait or
             * io_uring_enter per idle transition for nothing. */
            if (L->armed && L->runq_head)
                poll_backend(L, 0);
            continue;
        }
        if (L->live == 0) {
            /* Done: close only an empty queue, in one step. Anything queued
             * runs first with the queue still open (closing first, then
             * running what was taken, made a call queued by one of those
             * -EPIPE while the loop went on: loop.h says -EPIPE means fn
             * never runs because the loop has finished). */
            struct weft__rnode *empty = NULL;
            if (atomic_compare_exchange_strong_explicit(&L->remote, &empty, LOOP_CLOSED,
                                                        memory_order_acq_rel,
                                                        memory_order_relaxed))
                break;
            drain_remote(L, NULL);
            continue;
        }
        weft_time_t deadline = L->heap_len ? L->heap[0]->timer_at : WEFT_FOREVER;
        atomic_store_explicit(&L->polling, 1, memory_order_seq_cst);
        if (atomic_load_explicit(&L->remote, memory_order_seq_cst) == NULL)
            poll_backend(L, deadline);
        atomic_store_explicit(&L->polling, 0, memory_order_relaxed);
    }
}

/* ---- the watchdog ------------------------------------------------------------------------ */

static bool wd_validate(void *arg)
{
    struct weft_loop *L = arg;
    return atomic_load_explicit(&L->wd_stop, memory_order_relaxed) == 0;
}

static void *watchdog(void *arg)
{
    struct weft_loop *L = arg;
    weft_time_t threshold = (weft_time_t)L->slow_ms * 1000000;
    weft_time_t period = threshold / 4;
    if (period < 1000000)
        period = 1000000;
    uint64_t reported = UINT64_MAX;
    while (!atomic_load_explicit(&L->wd_stop, memory_order_acquire)) {
        weft__park(&L->wd_stop, wd_validate, L, NULL, weft_now() + period, NULL);
        uint64_t turn = atomic_load_explicit(&L->turn, memory_order_relaxed);
        struct weft_task *t = atomic_load_explicit(&L->running, memory_order_acquire);
        if (!t || turn == reported)
            continue;
        weft_time_t start = atomic_load_explicit(&L->run_start, memory_order_relaxed);
        weft_time_t now = weft_now();
        if (now - start < threshold)
            continue;
        char name[WEFT__CO_NAME_MAX];
        name_load(name, t->name); /* records are type-stable: always readable */
        /* Still the same run? (Else the name may belong to another task.)
         * The fence keeps the name's loads before the re-reads (name_store). */
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&L->turn, memory_order_relaxed) != turn ||
            atomic_load_explicit(&L->running, memory_order_relaxed) != t)
            continue;
        reported = turn;
        atomic_fetch_add_explicit(&L->st_slow_reports, 1, memory_order_relaxed);
        weft_loop_slow_t info = {.loop_name = L->name, .task_name = name, .running_ns = now - start};
        if (L->on_slow)
            L->on_slow(&info, L->on_slow_arg);
        else
            fprintf(stderr,
                    "weft: loop '%s' stalled: coroutine '%s' has been running for %lld ms "
                    "without yielding\n",
                    L->name, name, (long long)(info.running_ns / 1000000));
    }
    return NULL;
}

/* ---- weft_loop_run ------------------------------------------------------------------------- */

static void fill_stats(struct weft_loop *L, weft_loop_stats_t *o)
{
    memset(o, 0, sizeof *o);
    /* Finished before spawned (both only grow, and a task is spawned
     * before it finishes): read in this order from another thread, live
     * never comes out below zero (read the other way, a task spawned and
     * finished in between made it wrap to 2^64 - 1). */
    o->tasks_finished = atomic_load_explicit(&L->st_finished, memory_order_acquire);
    o->tasks_spawned = atomic_load_explicit(&L->st_spawned, memory_order_acquire);
    o->tasks_failed = atomic_load_explicit(&L->st_failed, memory_order_relaxed);
    o->tasks_cancelled = atomic_load_explicit(&L->st_cancelled, memory_order_relaxed);
    o->tasks_live = o->tasks_spawned > o->tasks_finished ? o->tasks_spawned - o->tasks_finished : 0;
    o->switches = atomic_load_explicit(&L->turn, memory_order_relaxed);
    o->io_waits = atomic_load_explicit(&L->st_io_waits, memory_order_relaxed);
    o->polls = atomic_load_explicit(&L->st_polls, memory_order_relaxed);
    o->remote_wakes = atomic_load_explicit(&L->st_remote_wakes, memory_order_relaxed);
    o->callbacks = atomic_load_explicit(&L->st_callbacks, memory_order_relaxed);
    o->slow_reports = atomic_load_explicit(&L->st_slow_reports, memory_order_relaxed);
    o->longest_run_ns = atomic_load_explicit(&L->st_longest, memory_order_relaxed);
    /* Byte-wise atomics (task_leave writes it on the loop's thread): from
     * another thread too, not only on the loop's own while it runs. */
    char name[WEFT__CO_NAME_MAX];
    name_load(name, L->longest_name);
    snprintf(o->longest_run_task, sizeof o->longest_run_task, "%s", name);
    o->file_ops = atomic_load_explicit(&L->st_file_ops, memory_order_relaxed);
    o->signals = atomic_load_explicit(&L->st_signals, memory_order_relaxed);
    o->backend = L->bops->name;
    memcpy(o->backend_note, L->backend_note, sizeof o->backend_note);
}

int weft_loop_stats(weft_loop_t *L, weft_loop_stats_t *out)
{
    if (!L || !out)
        return -EINVAL;
    fill_stats(L, out);
    return 0;
}

int weft_loop_run(weft_co_fn main_fn, void *arg, const weft_loop_opts_t *opts)
{
    if (!main_fn)
        return -EINVAL;
    if (weft__loop_tls)
        return -EBUSY;
    weft_loop_opts_t o = {0};
    if (opts)
        o = *opts;
    struct weft__co *self = weft__co_self();
    if (!self)
        return -ENOMEM;
    struct weft_loop *L = calloc(1, sizeof *L);
    if (!L)
        return -ENOMEM;
    atomic_init(&L->refs, 1);
    snprintf(L->name, sizeof L->name, "%s", o.name ? o.name : "loop");
    int r = weft__backend_open(o.backend, &L->bops, &L->be, L->backend_note,
                               sizeof L->backend_note);
    if (r) {
        free(L);
        return r;
    }
    L->sched = self;
    L->on_failure = o.on_failure;
    L->on_failure_arg = o.on_failure_arg;
    L->slow_ms = o.slow_ms;
    if (L->slow_ms == 0) {
        const char *e = getenv("WEFT_SLOW_MS");
        L->slow_ms = e && *e ? atoi(e) : 0;
    }
    if (L->slow_ms < 0)
        L->slow_ms = 0;
    L->on_slow = o.on_slow;
    L->on_slow_arg = o.on_slow_arg;
    L->timing = o.timing || L->slow_ms > 0;
    L->owner_tid = weft__thread_id();

    const struct weft__park_ops *prev_ops = weft__park_ops_current();
    weft__park_set_ops(&co_park_ops);
    weft__park_set_home(L);
    weft__loop_tls = L;
    weft__loop_registry_add(L); /* weft_net_close on other threads finds us */

    struct weft_task *main_task = NULL;
    r = weft__cotask_spawn(L, &main_task, main_fn, arg, "main", o.main_stack_size, NULL);
    if (r == 0) {
        L->main = main_task;
        if (L->slow_ms > 0 &&
            pthread_create(&L->wd_thread, NULL, watchdog, L) == 0)
            L->wd_started = true;
        weft__loop_signals_start(L, &o);
        schedule(L);
        r = L->main_rc;
        if (weft__loop_signals_stop(L) && r == -ECANCELED)
            r = -EINTR; /* asyncio.run's KeyboardInterrupt */
        weft__cotask_unref(main_task);
    }
    /* No task left to wait on an fd: closes from elsewhere close at once. */
    weft__loop_registry_remove(L);
    if (L->wd_started) {
        atomic_store_explicit(&L->wd_stop, 1, memory_order_release);
        weft__unpark_all(&L->wd_stop, 0);
        pthread_join(L->wd_thread, NULL);
    }
    /* Refuse pushes (schedule did, unless spawning main failed), wait for
     * pushers still inside push, and only then close the backend. */
    drain_remote(L, LOOP_CLOSED);
    unsigned step = 0;
    while (atomic_load_explicit(&L->inflight, memory_order_acquire) != 0)
        weft__backoff(&step);
    atomic_store_explicit(&L->closed, 1, memory_order_relaxed);
    L->bops->fini(L->be);
    L->be = NULL;
    weft__park_set_ops(prev_ops == &weft__thread_park_ops ? NULL : prev_ops);
    if (o.stats)
        fill_stats(L, o.stats);
    weft__loop_tls = NULL;
    weft__park_set_home(NULL);
    weft__self_id_set(0);
    free(L->watch);
    free(L->heap);
    L->watch = NULL;
    L->heap = NULL;
    weft__loop_unref(L);
    return r;
}
