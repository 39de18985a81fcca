/*
 * pool/internal.h - the pool's task records, workers and shared state.
 */
#ifndef WEFT_POOL_INTERNAL_H
#define WEFT_POOL_INTERNAL_H

#include <weft/pool.h>
#include <weft/sync.h>
#include <weft/thread.h>

#include "../park/park.h"
#include "deque.h"

/*
 * A task record: either a submitted task (ffn, with a future) or a group
 * task (gfn, with a group). Records of tasks spawned inside the pool come
 * from the spawning worker's free list and return to the free list of the
 * worker that ran them; records made outside the pool are malloc'd (heap).
 */
struct weft__task {
    struct weft__task *next;   /* free list / injection queue link */
    weft_task_fn ffn;          /* submitted task, or NULL */
    int (*gfn)(void *arg);     /* group task, or NULL */
    void *arg;
    weft_future_t *future;     /* submitted: the pool's reference */
    weft_group_t *group;       /* group task: its group */
    bool heap;                 /* malloc'd: free() after running */
};

/* A slab of task records, owned by the pool until it is freed. */
struct weft__slab {
    struct weft__slab *next;
    struct weft__task t[63];
};

struct weft__worker {
    struct weft__deque dq;         /* own tasks; thieves steal from the top */
    struct weft_pool *pool;
    int index;
    struct weft__task *free_list;  /* owner only */
    struct weft__slab *slabs;      /* owner only; freed with the pool */
    struct weft__task *current;    /* the task running now (for cancelled) */
    _Atomic(const void *) parked_on; /* key it parks on in a wait, or NULL */
    weft_thread_t *thread;         /* started by weft_thread_start */
    bool started;
} __attribute__((aligned(WEFT_CACHELINE)));

struct weft_pool {
    int nworkers;
    struct weft__worker *workers;
    bool is_default;

    /* The injection queue: submissions from outside threads. */
    weft_mutex_t inj_lock;
    struct weft__task *inj_head, *inj_tail; /* under inj_lock */
    _Alignas(WEFT_CACHELINE) _Atomic int64_t inj_count; /* a hint; exact under the lock */

    /* Set under inj_lock, so that no submission slips in after a worker
     * decided, under the same lock, that the queue is empty for good. */
    _Atomic uint32_t shutdown;
    _Atomic uint32_t cancelling;   /* shutdown(cancel_pending): skip tasks */

    /* Idle workers. See the comment above notify() in pool.c. */
    _Alignas(WEFT_CACHELINE) _Atomic uint32_t epoch;
    _Atomic int32_t sleeping;
    _Atomic int32_t searching;
    _Atomic int32_t live;          /* workers not yet exited */

    weft_mutex_t join_lock;
    bool joined;                   /* under join_lock */
    char name[16];
};

extern _Thread_local struct weft__worker *weft__cur_worker
    __attribute__((tls_model("initial-exec")));

struct weft__task *weft__task_alloc(struct weft__worker *w);
/* Queue t (from worker w of t's pool, or from outside when w is NULL).
 * 0, -EPIPE (outside and shut down: t is not queued), -ENOMEM. */
int weft__pool_enqueue(struct weft_pool *p, struct weft__worker *w, struct weft__task *t);
/* Run one task found anywhere (own deque, injection, one steal sweep):
 * true if one ran. w must be the calling worker. */
bool weft__pool_help(struct weft__worker *w);
/* weft__block_fn for pool workers (see future/internal.h); also used by
 * group waits. */
int weft__pool_block(const void *key, bool (*validate)(void *arg), bool (*done)(void *arg),
                     void *arg, weft_time_t deadline);
/* Wake every sleeping worker (bumps the epoch). */
void weft__pool_wake_all(struct weft_pool *p);
/* Finish a group task slot (called once per spawned task). */
void weft__group_task_done(weft_group_t *g, int rc);

#endif /* WEFT_POOL_INTERNAL_H */
