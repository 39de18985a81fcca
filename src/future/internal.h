/*
 * future/internal.h - what other layers (pool, par, later co and proc) use
 * of the future besides its public API.
 */
#ifndef WEFT_FUTURE_INTERNAL_H
#define WEFT_FUTURE_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <weft/future.h>
#include <weft/sync.h>

/* The future record (future.c). Visible here so that an owner can embed
 * one (a coroutine task embeds its own: no malloc per task). */
struct weft__fnode;
struct weft_future {
    _Atomic uint32_t state;    /* kind and flags, see future.c */
    _Atomic uint32_t refs;     /* references; the last release frees */
    int err;                   /* outcome: 0 or the error; valid once DONE */
    void *value;               /* outcome value; valid once DONE */
    void (*value_free)(void *);/* frees value with the future, or NULL */
    _Atomic uint64_t runner;   /* context id of the producer while RUNNING */
    weft_mutex_t lock;         /* protects the callback list */
    struct weft__fnode *cb_head, *cb_tail; /* callbacks, in order added */
    void (*on_free)(weft_future_t *f); /* embedded: called instead of free() */
    /* Or NULL. Called by the first weft_future_cancel of a RUNNING future
     * (any thread, the caller holding a reference): a task's future asks
     * its coroutine to stop, as weft_task_cancel. */
    void (*on_cancel)(weft_future_t *f);
};

/* The state's cancel-requested flag (future.c's F_CANCEL). */
#define WEFT__F_CANCEL 4u

/* weft_future_cancel_requested, inline for weft's own hot paths (every
 * coroutine wait and socket call checks its task's future). f may be NULL. */
static inline bool weft__future_cancel_requested(const weft_future_t *f)
{
    return f && (atomic_load_explicit(&((weft_future_t *)f)->state, memory_order_relaxed) &
                 WEFT__F_CANCEL);
}

/* Initialise an embedded future (pending, one reference). When its last
 * reference goes, on_free(f) is called instead of free(). */
void weft__future_init(weft_future_t *f, void (*on_free)(weft_future_t *f));

/*
 * A callback node. weft_future_on_done allocates one per callback; weft's
 * own code may embed nodes in its objects (internal = true) and remove them
 * again, which public callbacks cannot. An internal node holds no reference
 * to the future: its owner must.
 */
struct weft__fnode {
    struct weft__fnode *next; /* in the future's list, under its lock */
    weft_future_cb cb;        /* what to run */
    void *arg;                /* its argument */
    bool internal;            /* embedded by weft: not freed, no reference */
};

/* Wait for f without cancellation (weft's own cleanup waits, which must
 * not end early in a cancelled coroutine). Returns 0. */
int weft__future_wait_nc(weft_future_t *f);

/* Register node; if the future is already resolved, run it now instead. */
void weft__future_add_node(weft_future_t *f, struct weft__fnode *node);

/* Unregister node. True if it was still registered (it will never run);
 * false if the future's resolver has taken it (it has run or is about to:
 * the owner must wait for it by its own means). */
bool weft__future_remove_node(weft_future_t *f, struct weft__fnode *node);

/*
 * Set by the pool: block the calling context until done(arg) is true or
 * the deadline passes, if the caller is a pool worker. The pool version
 * runs other tasks meanwhile and parks on key (validate(arg) under the
 * bucket lock, as weft__park) counted among its idle workers, so that new
 * work wakes it to help. Returns 0 (done), -ETIMEDOUT, or -ENOSYS when the
 * caller is not a worker (the caller then parks by itself).
 */
typedef int (*weft__block_fn)(const void *key, bool (*validate)(void *arg),
                              bool (*done)(void *arg), void *arg, weft_time_t deadline);
void weft__future_set_block(weft__block_fn fn);
extern _Atomic(weft__block_fn) weft__future_block;

#endif /* WEFT_FUTURE_INTERNAL_H */
