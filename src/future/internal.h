/*
 * future/internal.h - what other layers (pool, par, later co and proc) use
 * of the future besides its public API.
 */
#ifndef WEFT_FUTURE_INTERNAL_H
#define WEFT_FUTURE_INTERNAL_H

#include <stdbool.h>
#include <weft/future.h>

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

/* Register node; if the future is already resolved, run it now instead. */
void weft__future_add_node(weft_future_t *f, struct weft__fnode *node);

/* Unregister node. True if it was still registered (it will never run);
 * false if the future's resolver has taken it (it has run or is about to:
 * the owner must wait for it by its own means). */
bool weft__future_remove_node(weft_future_t *f, struct weft__fnode *node);

/*
 * Set by the pool: called by a context about to block in a future wait,
 * it runs one task of the caller's pool if the caller is a pool worker and
 * a task can be found, and returns true if it ran one. NULL until the first
 * pool exists.
 */
typedef bool (*weft__help_fn)(void);
void weft__future_set_help(weft__help_fn fn);

#endif /* WEFT_FUTURE_INTERNAL_H */
