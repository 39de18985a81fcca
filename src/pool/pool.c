/*
 * pool.c - the work-stealing pool: workers, the injection queue, idling,
 * submission and shutdown.
 *
 * A worker looks for work in this order: its own deque (bottom, LIFO), the
 * injection queue, then the other workers' deques (top, FIFO) starting at a
 * random victim. Finding nothing, it keeps searching for a while (spinning
 * with pauses, then yielding), then sleeps: an idle pool costs no CPU.
 *
 * Sleeping and waking (an event count, as in Go's scheduler and TBB's
 * arena): a worker about to sleep reads `epoch`, increments `sleeping`
 * (seq_cst), looks everywhere for work once more, and parks on &epoch only
 * if epoch is unchanged. A producer that wants a sleeper woken increments
 * epoch and unparks one. Since the sleeper's increment of `sleeping` and
 * its final look are seq_cst, and an outside submitter puts its task in the
 * injection queue, issues a seq_cst fence and then reads `sleeping`, one of
 * the two always sees the other: an outside submission is never left with
 * every worker asleep.
 *
 * Spawns from inside the pool skip that fence (it would cost every spawn a
 * full barrier) and wake a sleeper only when nobody is searching; as in
 * TBB, a wake-up may then be missed, which costs parallelism but never a
 * task: the spawning worker always empties its own deque before it sleeps,
 * and a searching worker that finds work wakes one sleeper so that the
 * search goes on (Go's "spinning thread" rule).
 *
 * Shutdown: the flag is set under the injection lock; a worker exits only
 * after seeing the flag, finding the injection queue empty under that lock
 * (so no submission can follow) and its own deque empty. Tasks still in
 * other deques are run by their owners, which do the same before exiting.
 * shutdown(wait) parks until `live` reaches zero, then joins the threads
 * (which have nothing left to do but return).
 */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <weft/thread.h>

#include "../future/internal.h"
#include "../sync/internal.h"
#include "internal.h"

_Thread_local struct weft__worker *weft__cur_worker __attribute__((tls_model("initial-exec")));

/* Search rounds before sleeping: the first few pause, the rest yield. */
#define SEARCH_PAUSE_ROUNDS 16
#define SEARCH_YIELD_ROUNDS 64
#define MIN_STACK (16 * 1024)

/* ---- task records ------------------------------------------------------- */

struct weft__task *weft__task_alloc(struct weft__worker *w)
{
    struct weft__task *t = w->free_list;
    if (WEFT_LIKELY(t != NULL)) {
        w->free_list = t->next;
        return t;
    }
    struct weft__slab *s = malloc(sizeof *s);
    if (!s)
        return NULL;
    s->next = w->slabs;
    w->slabs = s;
    size_t n = sizeof s->t / sizeof s->t[0];
    for (size_t i = 1; i < n; i++) {
        s->t[i].heap = false;
        s->t[i].next = w->free_list;
        w->free_list = &s->t[i];
    }
    s->t[0].heap = false;
    return &s->t[0];
}

static void task_free(struct weft__worker *w, struct weft__task *t)
{
    if (t->heap) {
        free(t);
        return;
    }
    /* Slab records all return to some worker of the same pool: w is never
     * NULL for them (they only ever run on workers). */
    t->next = w->free_list;
    w->free_list = t;
}

/* ---- waking ------------------------------------------------------------------ */

/*
 * Workers blocked in a wait (future, group, as_completed) park on the
 * waited object's address, not on the epoch, and publish it in parked_on.
 * Waking them is a spurious unpark for that address's other waiters, which
 * all re-check their condition. A worker stores parked_on before it reads
 * the epoch and looks for work once more; a waker bumps the epoch before it
 * scans parked_on (both seq_cst), so either the waker sees parked_on or
 * the worker sees the new epoch and the work published before it.
 */
static void wake_one(struct weft_pool *p)
{
    atomic_fetch_add_explicit(&p->epoch, 1, memory_order_seq_cst);
    if (weft__unpark_one(&p->epoch, NULL, NULL))
        return;
    for (int i = 0; i < p->nworkers; i++) {
        const void *k = atomic_load_explicit(&p->workers[i].parked_on, memory_order_seq_cst);
        if (k) {
            weft__unpark_all(k, 0);
            return;
        }
    }
}

void weft__pool_wake_all(struct weft_pool *p)
{
    atomic_fetch_add_explicit(&p->epoch, 1, memory_order_seq_cst);
    weft__unpark_all(&p->epoch, 0);
    for (int i = 0; i < p->nworkers; i++) {
        const void *k = atomic_load_explicit(&p->workers[i].parked_on, memory_order_seq_cst);
        if (k)
            weft__unpark_all(k, 0);
    }
}

/* A worker spawned: wake a sleeper only if nobody is already searching. */
static inline void notify_spawn(struct weft_pool *p)
{
    if (atomic_load_explicit(&p->sleeping, memory_order_relaxed) > 0 &&
        atomic_load_explicit(&p->searching, memory_order_relaxed) == 0)
        wake_one(p);
}

/*
 * An outside thread queued work: must not be missed (see the top). A
 * worker that is searching will find it, so no sleeper is woken then (a
 * submission per round trip would otherwise wake a sleeper that finds
 * nothing, burns its search on a core the submitter needs, and sleeps
 * again). Why that is safe: the submitter's inj_count increment and
 * `searching` load are seq_cst (with this fence between them), and so is a
 * searcher's decrement of `searching` when it gives up; if the load saw the
 * searcher still counted, the decrement comes later in the single total
 * order, and the searcher's final look (after its seq_cst increment of
 * `sleeping`) reads inj_count after it, so it finds the task.
 */
static void notify_external(struct weft_pool *p)
{
    /* Orders the queued task before the reads of `searching` and
     * `sleeping`, against the sleeper's seq_cst increment and re-check.
     * Every caller has just done a seq_cst RMW of inj_count, which already
     * precedes these seq_cst loads in the single total order, so the fence
     * only spells that out; TSan does not model standalone fences (gcc
     * warns), and the build under it relies on the RMW alone. */
#ifndef WEFT_SANITIZE_THREAD
    atomic_thread_fence(memory_order_seq_cst);
#endif
    if (atomic_load_explicit(&p->searching, memory_order_seq_cst) > 0)
        return;
    if (atomic_load_explicit(&p->sleeping, memory_order_seq_cst) > 0)
        wake_one(p);
}

static void run_task(struct weft__worker *w, struct weft__task *t);

/* ---- queues ---------------------------------------------------------------- */

int weft__pool_enqueue(struct weft_pool *p, struct weft__worker *w, struct weft__task *t)
{
    if (w) {
        int r = weft__deque_push(&w->dq, t);
        if (WEFT_UNLIKELY(r < 0))
            return r;
        notify_spawn(p);
        return 0;
    }
    weft__mutex_lock_nc(&p->inj_lock);
    if (atomic_load_explicit(&p->shutdown, memory_order_relaxed)) {
        weft_mutex_unlock(&p->inj_lock);
        return -EPIPE;
    }
    t->next = NULL;
    if (p->inj_tail)
        p->inj_tail->next = t;
    else
        p->inj_head = t;
    p->inj_tail = t;
    atomic_fetch_add_explicit(&p->inj_count, 1, memory_order_seq_cst);
    weft_mutex_unlock(&p->inj_lock);
    notify_external(p);
    return 0;
}

/* Most tasks one worker moves from the injection queue per visit. */
#define INJ_BATCH 32

/*
 * Take work from the injection queue: the oldest task, plus (when more are
 * queued) a batch of the next ones, up to this worker's share, moved to
 * its own deque, where the other workers can steal them. One lock round
 * trip then serves many tasks, so a thread submitting a stream of tasks
 * does not fight the workers for the lock on every one (Go's scheduler
 * takes from its global queue in batches for the same reason).
 */
static struct weft__task *inj_take(struct weft__worker *w)
{
    struct weft_pool *p = w->pool;
    if (atomic_load_explicit(&p->inj_count, memory_order_seq_cst) <= 0)
        return NULL;
    struct weft__task *batch[INJ_BATCH];
    int nb = 0;
    weft__mutex_lock_nc(&p->inj_lock);
    struct weft__task *t = p->inj_head;
    if (t) {
        int64_t left = atomic_load_explicit(&p->inj_count, memory_order_relaxed) - 1;
        int64_t share = left / p->nworkers + 1;
        if (share > INJ_BATCH)
            share = INJ_BATCH;
        struct weft__task *x = t->next;
        while (x && nb < share) {
            batch[nb++] = x;
            x = x->next;
        }
        p->inj_head = x;
        if (!x)
            p->inj_tail = NULL;
        atomic_fetch_sub_explicit(&p->inj_count, 1 + nb, memory_order_relaxed);
    }
    weft_mutex_unlock(&p->inj_lock);
    /* Newest first, so that the owner's LIFO pops run them oldest first. A
     * push that fails (no memory to grow the deque) runs the task here
     * instead of losing it. */
    for (int i = nb - 1; i >= 0; i--)
        if (WEFT_UNLIKELY(weft__deque_push(&w->dq, batch[i]) < 0))
            run_task(w, batch[i]);
    if (nb)
        notify_spawn(p);
    return t;
}

/* One sweep over the other workers from a random start. */
static struct weft__task *steal_sweep(struct weft__worker *w)
{
    struct weft_pool *p = w->pool;
    int n = p->nworkers;
    if (n <= 1)
        return NULL;
    int start = (int)(weft__rand() % (uint64_t)n);
    for (int i = 0; i < n; i++) {
        int v = start + i;
        if (v >= n)
            v -= n;
        if (v == w->index)
            continue;
        for (int tries = 0; tries < 4; tries++) {
            void *x = weft__deque_steal(&p->workers[v].dq);
            if (x == NULL)
                break;
            if (x != WEFT__DEQUE_ABORT)
                return x;
        }
    }
    return NULL;
}

static struct weft__task *find_work(struct weft__worker *w)
{
    struct weft__task *t = weft__deque_pop(&w->dq);
    if (t)
        return t;
    t = inj_take(w);
    if (t)
        return t;
    return steal_sweep(w);
}

/* ---- running ------------------------------------------------------------------ */

static void run_task(struct weft__worker *w, struct weft__task *t)
{
    struct weft_pool *p = w->pool;
    struct weft__task *prev = w->current;
    bool skip = atomic_load_explicit(&p->cancelling, memory_order_relaxed);
    w->current = t;
    if (t->ffn) {
        weft_future_t *f = t->future;
        if (skip) {
            weft_future_cancel(f);
        } else if (weft_future_set_running(f) == 0) {
            void *res = NULL;
            int rc = t->ffn(t->arg, &res);
            if (rc < 0)
                weft_future_set_error(f, rc);
            else
                weft_future_set_result(f, res);
        } /* else: cancelled before it started; never runs */
        w->current = prev;
        task_free(w, t);
        weft_future_release(f);
    } else {
        weft_group_t *g = t->group;
        int rc = -ECANCELED;
        if (!skip && !weft_group_cancelled(g))
            rc = t->gfn(t->arg);
        else
            weft_group_cancel(g);
        w->current = prev;
        task_free(w, t);
        weft__group_task_done(g, rc);
    }
}

bool weft__pool_help(struct weft__worker *w)
{
    struct weft__task *t = find_work(w);
    if (!t)
        return false;
    run_task(w, t);
    return true;
}

struct block_arg {
    bool (*validate)(void *arg);
    void *arg;
    struct weft_pool *p;
    uint32_t epoch;
};

/* Park only if no new work was announced (epoch) and the waited-for
 * condition still holds (the caller's validate, which announces us). */
static bool validate_block(void *arg)
{
    struct block_arg *a = arg;
    return atomic_load_explicit(&a->p->epoch, memory_order_seq_cst) == a->epoch &&
           a->validate(a->arg);
}

int weft__pool_block(const void *key, bool (*validate)(void *arg), bool (*done)(void *arg),
                     void *arg, weft_time_t deadline)
{
    struct weft__worker *w = weft__cur_worker;
    if (!w)
        return -ENOSYS;
    struct weft_pool *p = w->pool;
    unsigned idle = 0;
    while (!done(arg)) {
        if (weft__pool_help(w)) {
            idle = 0;
            continue;
        }
        if (weft__deadline_passed(deadline))
            return -ETIMEDOUT;
        /* Nothing to help with: the rest runs elsewhere and often ends
         * soon. Spin a little, then park. */
        if (++idle < 64) {
            for (int i = 0; i < 16; i++)
                weft__cpu_relax();
            continue;
        }
        if (idle < 80) {
            sched_yield();
            continue;
        }
        atomic_store_explicit(&w->parked_on, key, memory_order_seq_cst);
        struct block_arg a = {validate, arg, p, atomic_load_explicit(&p->epoch, memory_order_seq_cst)};
        atomic_fetch_add_explicit(&p->sleeping, 1, memory_order_seq_cst);
        struct weft__task *t = find_work(w);
        int r = 0;
        if (!t)
            r = weft__park(key, validate_block, &a, NULL, deadline, NULL);
        atomic_fetch_sub_explicit(&p->sleeping, 1, memory_order_seq_cst);
        atomic_store_explicit(&w->parked_on, NULL, memory_order_relaxed);
        if (t)
            run_task(w, t);
        if (r == -ETIMEDOUT && !done(arg))
            return -ETIMEDOUT;
        idle = 0;
    }
    return 0;
}

/* ---- workers ------------------------------------------------------------------ */

struct sleep_arg {
    struct weft_pool *p;
    uint32_t epoch;
};

static bool validate_sleep(void *arg)
{
    struct sleep_arg *a = arg;
    return atomic_load_explicit(&a->p->epoch, memory_order_seq_cst) == a->epoch &&
           !atomic_load_explicit(&a->p->shutdown, memory_order_acquire);
}

/* Under the injection lock: may this worker exit? */
static bool may_exit(struct weft__worker *w)
{
    struct weft_pool *p = w->pool;
    if (!atomic_load_explicit(&p->shutdown, memory_order_acquire))
        return false;
    weft__mutex_lock_nc(&p->inj_lock);
    bool empty = p->inj_head == NULL;
    weft_mutex_unlock(&p->inj_lock);
    return empty && weft__deque_size(&w->dq) == 0;
}

static void *worker_main(void *arg)
{
    struct weft__worker *w = arg;
    struct weft_pool *p = w->pool;
    weft__cur_worker = w;

    for (;;) {
        struct weft__task *t = find_work(w);
        if (t) {
            run_task(w, t);
            continue;
        }
        /* Search a while before sleeping. */
        atomic_fetch_add_explicit(&p->searching, 1, memory_order_relaxed);
        for (int r = 0; r < SEARCH_PAUSE_ROUNDS + SEARCH_YIELD_ROUNDS && !t; r++) {
            if (r < SEARCH_PAUSE_ROUNDS)
                for (int i = 0; i < 4; i++)
                    weft__cpu_relax();
            else
                sched_yield();
            t = find_work(w);
            if (!t && atomic_load_explicit(&p->shutdown, memory_order_relaxed))
                break;
        }
        /* The last searcher to find work wakes a sleeper to keep searching.
         * Seq_cst: see notify_external (a submitter that saw us searching
         * relies on our final look coming after this). */
        if (atomic_fetch_sub_explicit(&p->searching, 1, memory_order_seq_cst) == 1 && t)
            notify_spawn(p);
        if (t) {
            run_task(w, t);
            continue;
        }
        if (may_exit(w))
            break;
        struct sleep_arg sa = {p, atomic_load_explicit(&p->epoch, memory_order_seq_cst)};
        atomic_fetch_add_explicit(&p->sleeping, 1, memory_order_seq_cst);
        t = find_work(w);
        if (!t && !atomic_load_explicit(&p->shutdown, memory_order_seq_cst))
            weft__park(&p->epoch, validate_sleep, &sa, NULL, WEFT_FOREVER, NULL);
        atomic_fetch_sub_explicit(&p->sleeping, 1, memory_order_seq_cst);
        if (t)
            run_task(w, t);
    }
    weft__cur_worker = NULL;
    /* Last touch of the pool: shutdown(wait) may free it once live is 0;
     * the unpark uses the address only as a key. */
    const void *key = &p->live;
    if (atomic_fetch_sub_explicit(&p->live, 1, memory_order_acq_rel) == 1)
        weft__unpark_all(key, 0);
    return NULL;
}

/* ---- creating and freeing ---------------------------------------------------------- */

static int default_workers(void)
{
    const char *e = getenv("WEFT_WORKERS");
    if (e && *e) {
        char *end;
        long n = strtol(e, &end, 10);
        if (*end == '\0' && n > 0 && n <= WEFT_POOL_MAX_WORKERS)
            return (int)n;
    }
    return weft__cpu_count();
}

static void pool_release_memory(struct weft_pool *p)
{
    for (int i = 0; i < p->nworkers; i++) {
        struct weft__worker *w = &p->workers[i];
        weft__deque_destroy(&w->dq);
        struct weft__slab *s = w->slabs;
        while (s) {
            struct weft__slab *n = s->next;
            free(s);
            s = n;
        }
    }
    free(p->workers);
    free(p);
}

static bool validate_live(void *arg)
{
    struct weft_pool *p = arg;
    return atomic_load_explicit(&p->live, memory_order_acquire) != 0;
}

/* Wait for every started worker to exit, then join them. Once. */
static void join_workers(struct weft_pool *p)
{
    weft__mutex_lock_nc(&p->join_lock);
    if (!p->joined) {
        while (atomic_load_explicit(&p->live, memory_order_acquire) != 0)
            weft__park(&p->live, validate_live, p, NULL, WEFT_FOREVER, NULL);
        for (int i = 0; i < p->nworkers; i++)
            if (p->workers[i].started)
                weft_thread_join(p->workers[i].thread, NULL);
        p->joined = true;
    }
    weft_mutex_unlock(&p->join_lock);
}

static void start_shutdown(struct weft_pool *p, bool cancel_pending)
{
    if (cancel_pending)
        atomic_store_explicit(&p->cancelling, 1, memory_order_relaxed);
    weft__mutex_lock_nc(&p->inj_lock);
    atomic_store_explicit(&p->shutdown, 1, memory_order_release);
    weft_mutex_unlock(&p->inj_lock);
    weft__pool_wake_all(p);
}

int weft_pool_create(weft_pool_t **out, const weft_pool_opts_t *opts)
{
    weft_pool_opts_t o = {0};
    if (opts)
        o = *opts;
    if (!out || o.workers < 0 || o.workers > WEFT_POOL_MAX_WORKERS ||
        (o.stack_size && o.stack_size < MIN_STACK))
        return -EINVAL;
    int n = o.workers ? o.workers : default_workers();
    struct weft_pool *p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    p->workers = aligned_alloc(WEFT_CACHELINE, sizeof(struct weft__worker) * (size_t)n);
    if (!p->workers) {
        free(p);
        return -ENOMEM;
    }
    memset(p->workers, 0, sizeof(struct weft__worker) * (size_t)n);
    p->nworkers = n;
    weft_mutex_init(&p->inj_lock);
    weft_mutex_init(&p->join_lock);
    snprintf(p->name, sizeof p->name, "%s", o.name ? o.name : "weft");
    for (int i = 0; i < n; i++) {
        struct weft__worker *w = &p->workers[i];
        w->pool = p;
        w->index = i;
        if (weft__deque_init(&w->dq, 256) < 0) {
            p->nworkers = i;
            pool_release_memory(p);
            return -ENOMEM;
        }
    }
    weft__future_set_block(weft__pool_block);

    /* Pinning: worker i goes to the i-th CPU of the process's affinity
     * mask (modulo its size), applied by weft_thread_start before the
     * worker runs. */
    int *cpus = NULL, nc = 0;
    if (o.pin) {
        cpu_set_t set;
        CPU_ZERO(&set);
        if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) {
            cpus = malloc(sizeof *cpus * (size_t)CPU_COUNT(&set));
            if (!cpus) {
                pool_release_memory(p);
                return -ENOMEM;
            }
            for (int c = 0; c < CPU_SETSIZE; c++)
                if (CPU_ISSET(c, &set))
                    cpus[nc++] = c;
        }
    }
    int err = 0;
    for (int i = 0; i < n; i++) {
        struct weft__worker *w = &p->workers[i];
        /* Named through the common thread path: "<prefix>-<index>", which
         * weft_thread_start cuts to the kernel's 15 bytes. */
        char name[48];
        snprintf(name, sizeof name, "%s-%d", p->name, i);
        weft_thread_opts_t to = {.name = name, .stack_size = o.stack_size,
                                 .cpus = nc ? &cpus[i % nc] : NULL, .ncpus = nc ? 1 : 0};
        atomic_fetch_add_explicit(&p->live, 1, memory_order_relaxed);
        int r = weft_thread_start(&w->thread, worker_main, w, &to);
        if (r != 0) {
            atomic_fetch_sub_explicit(&p->live, 1, memory_order_relaxed);
            err = r == -ENOMEM || r == -EINVAL ? r : -EAGAIN;
            break;
        }
        w->started = true;
    }
    free(cpus);
    if (err) {
        start_shutdown(p, true);
        join_workers(p);
        pool_release_memory(p);
        return err;
    }
    *out = p;
    return 0;
}

static _Atomic(struct weft_pool *) default_pool;
static weft_mutex_t default_lock = WEFT_MUTEX_INIT;

weft_pool_t *weft_pool_default(void)
{
    struct weft_pool *p = atomic_load_explicit(&default_pool, memory_order_acquire);
    if (WEFT_LIKELY(p != NULL))
        return p;
    weft__mutex_lock_nc(&default_lock);
    p = atomic_load_explicit(&default_pool, memory_order_relaxed);
    if (!p) {
        weft_pool_opts_t o = {.name = "weft"};
        if (weft_pool_create(&p, &o) == 0) {
            p->is_default = true;
            atomic_store_explicit(&default_pool, p, memory_order_release);
        } else {
            p = NULL;
        }
    }
    weft_mutex_unlock(&default_lock);
    return p;
}

/* NULL -> the default pool. */
static struct weft_pool *pool_or_default(weft_pool_t *pool)
{
    return pool ? pool : weft_pool_default();
}

int weft_pool_workers(weft_pool_t *pool)
{
    struct weft_pool *p = pool_or_default(pool);
    return p ? p->nworkers : -ENOMEM;
}

int weft_pool_resize(weft_pool_t *pool, int n)
{
    (void)pool;
    return n <= 0 ? -EINVAL : -ENOTSUP;
}

int weft_pool_worker_index(void)
{
    struct weft__worker *w = weft__cur_worker;
    return w ? w->index : -1;
}

bool weft_task_cancelled(void)
{
    struct weft__worker *w = weft__cur_worker;
    struct weft__task *t = w ? w->current : NULL;
    if (!t)
        return false;
    if (t->ffn)
        return weft__future_cancel_requested(t->future);
    return weft_group_cancelled(t->group);
}

int weft_pool_submit(weft_pool_t *pool, weft_task_fn fn, void *arg, weft_future_t **out)
{
    if (!fn)
        return -EINVAL;
    struct weft_pool *p = pool_or_default(pool);
    if (!p)
        return -ENOMEM;
    if (atomic_load_explicit(&p->shutdown, memory_order_acquire))
        return -EPIPE;
    weft_future_t *f;
    int r = weft_future_create(&f);
    if (r < 0)
        return r;
    struct weft__worker *w = weft__cur_worker;
    if (w && w->pool != p)
        w = NULL;
    struct weft__task *t = w ? weft__task_alloc(w) : malloc(sizeof *t);
    if (!t) {
        weft_future_release(f);
        return -ENOMEM;
    }
    if (!w)
        t->heap = true;
    t->ffn = fn;
    t->gfn = NULL;
    t->arg = arg;
    t->future = f; /* the pool's reference */
    t->group = NULL;
    if (out)
        weft_future_retain(f);
    r = weft__pool_enqueue(p, w, t);
    if (r < 0) {
        if (out)
            weft_future_release(f);
        weft_future_release(f);
        if (w)
            task_free(w, t);
        else
            free(t);
        return r;
    }
    if (out)
        *out = f;
    return 0;
}

int weft_pool_shutdown(weft_pool_t *pool, bool wait, bool cancel_pending)
{
    if (!pool)
        return -EINVAL;
    if (pool->is_default)
        return -EPERM;
    start_shutdown(pool, cancel_pending);
    if (!wait)
        return 0;
    struct weft__worker *w = weft__cur_worker;
    if (w && w->pool == pool)
        return -EDEADLK;
    join_workers(pool);
    return 0;
}

int weft_pool_free(weft_pool_t *pool)
{
    if (!pool)
        return -EINVAL;
    if (pool->is_default)
        return -EPERM;
    struct weft__worker *w = weft__cur_worker;
    if (w && w->pool == pool)
        return -EDEADLK;
    start_shutdown(pool, false);
    join_workers(pool);
    weft_mutex_destroy(&pool->inj_lock);
    weft_mutex_destroy(&pool->join_lock);
    pool_release_memory(pool);
    return 0;
}
