/*
 * park.h - parking: the single mechanism by which anything in weft blocks.
 *
 * Two levels.
 *
 * 1. The waiter (struct weft__waiter) is one blocked context: a state word
 *    that other parties change, and the means to sleep until it changes. How
 *    a context sleeps and wakes is a small table of functions
 *    (struct weft__park_ops) chosen per thread: by default an OS thread spins
 *    briefly and then sleeps on a futex; the coroutine layer installs its own
 *    table on the threads that run a loop, so that a coroutine suspends
 *    instead. No primitive knows which kind of context it blocks.
 *
 * 2. The parking lot (weft__park / weft__unpark_*) queues waiters by address,
 *    as WebKit's ParkingLot and Rust's parking_lot do: a primitive keeps only
 *    a word or two of state, and whoever must wait parks on the primitive's
 *    address after validating, under the lot's bucket lock, that it still
 *    must. Channels keep their own queues of waiters (a select waits on
 *    several at once) but block through the same waiter.
 *
 * The waiter's state word: WAITING until another party changes it. A party
 * that needs time to hand something over first claims the waiter
 * (WAITING -> BUSY) and then finishes it (-> a final state). The sleeping
 * context sets the SLEEP bit before it sleeps; finishing clears it and wakes
 * the sleeper only if it was set, so a waiter that is still spinning costs
 * the waker no system call. All helpers below treat SLEEP as transparent.
 */
#ifndef WEFT_PARK_H
#define WEFT_PARK_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

#include "../platform/platform.h"

enum {
    WEFT__W_WAITING = 0,  /* nobody has acted on the waiter yet */
    WEFT__W_BUSY = 1,     /* claimed: a waker is handing something over */
    WEFT__W_WOKEN = 2,    /* final: woken; see the owner's protocol for why */
    WEFT__W_TIMEDOUT = 3, /* final: the owner gave up (set by the owner) */
    WEFT__W_CLOSED = 4,   /* final: woken because the object was closed */
};
#define WEFT__W_SLEEP 0x80000000u

struct weft__waiter;

/*
 * How a context blocks. Installed per thread with weft__park_set_ops.
 *
 * prepare: record in w->ctx and w->gen whatever wake needs to find the
 *          calling context.
 * wait:    block the calling context while the state (without SLEEP) equals
 *          expect, until the absolute deadline; set WEFT__W_SLEEP in the
 *          state (with weft__waiter_mark_sleep) before actually sleeping, so
 *          that wakers know to call wake. May return early; the caller loops.
 *          Returns 0, or -ETIMEDOUT when the deadline has passed, or, only
 *          if w->cancellable, -ECANCELED when the context's task has been
 *          cancelled (the coroutine ops do; OS threads never return it).
 * wake:    make the context recorded as (ctx, gen) runnable. Called only
 *          after the state was changed with SLEEP set. The waiter may
 *          already have returned (after a timeout, say) and even be parked
 *          again elsewhere: an implementation must recognise a stale wake by
 *          gen and ignore it. Must be callable from any thread.
 *
 * The two below are optional (NULL: not supported; weft__waiter_arm then
 * does nothing).
 *
 * arm:     declare, before w is published to any waker, that the context
 *          will sleep on w: make it wakeable by (ctx, gen) right now, so the
 *          wait that follows needs no read-modify-write to set SLEEP. True
 *          if armed (the caller then sets SLEEP in the state before
 *          publishing w, and must end with weft__waiter_disarm).
 * disarm:  end an armed wait that the context did not sleep through: take
 *          the arming back, or, if a waker already claimed it, consume that
 *          wake. Called by the owner only, on its own context.
 * prepare_armed: optional even where arm exists: prepare, then arm, in one
 *          call (weft__waiter_init_armed); returns what arm would.
 * wake_local: optional: wake's work for a waiter that takes turns with the
 *          caller on the calling thread (weft__waiter_local(w) true, and
 *          w still valid: read under the lock that queues it), without
 *          wake's checks of which thread calls it.
 *
 * prepare may also set w->home (weft__waiter_init clears it): a token for a
 * group of contexts that take turns on one thread (a loop's coroutines).
 * weft__waiter_local compares it with weft__park_home_tls, which whoever
 * runs such a group sets on its thread (NULL elsewhere).
 */
struct weft__park_ops {
    const char *name;
    void (*prepare)(struct weft__waiter *w);
    int (*wait)(struct weft__waiter *w, uint32_t expect, weft_time_t deadline);
    void (*wake)(void *ctx, uint64_t gen, _Atomic uint32_t *state);
    bool (*arm)(struct weft__waiter *w);
    void (*disarm)(struct weft__waiter *w);
    bool (*prepare_armed)(struct weft__waiter *w);
    void (*wake_local)(struct weft__waiter *w);
};

struct weft__waiter {
    _Atomic uint32_t state;            /* WEFT__W_* plus the SLEEP bit */
    uint32_t spin;                     /* spins before sleeping (thread ops) */
    const struct weft__park_ops *ops;  /* how this waiter's context blocks */
    void *ctx;                         /* ops-specific: who to wake */
    uint64_t gen;                      /* ops-specific: which park of ctx */
    bool cancellable;                  /* a wait may end with -ECANCELED (set by
                                          the owner after init; default false) */
    bool armed;                        /* owner only: armed (weft__waiter_arm),
                                          not yet slept through or disarmed */
    const void *home;                  /* set by prepare: the thread domain whose
                                          contexts take turns on one thread (a
                                          coroutine's loop), NULL for a thread */
};

/* The ops of the calling thread (never NULL) and a way to replace them;
 * NULL restores OS-thread parking. Inline: every blocking call reads them. */
extern const struct weft__park_ops weft__thread_park_ops;
extern _Thread_local const struct weft__park_ops *weft__park_ops_tls;
static inline const struct weft__park_ops *weft__park_ops_current(void)
{
    const struct weft__park_ops *ops = weft__park_ops_tls;
    return ops ? ops : &weft__thread_park_ops;
}
void weft__park_set_ops(const struct weft__park_ops *ops);

/*
 * The id of the calling context (thread, or coroutine once the coroutine
 * layer sets it), never 0. Owner fields of primitives hold these.
 */
extern _Thread_local uint64_t weft__self_id_tls;
uint64_t weft__self_id_slow(void);
static inline uint64_t weft__self_id(void)
{
    uint64_t id = weft__self_id_tls;
    return WEFT_LIKELY(id != 0) ? id : weft__self_id_slow();
}
/* A fresh unique id (for the coroutine layer). */
uint64_t weft__id_new(void);
/* Replace the calling thread's current id (the coroutine layer does this on
 * every switch); 0 restores the thread's own id. */
void weft__self_id_set(uint64_t id);
/* The calling thread's own id, whatever runs on it now. */
uint64_t weft__thread_id(void);

/* The fields every waiter starts with, before its ops prepare it. */
static inline const struct weft__park_ops *weft__waiter_reset(struct weft__waiter *w)
{
    atomic_init(&w->state, WEFT__W_WAITING);
    w->cancellable = false;
    w->armed = false;
    w->home = NULL;
    return w->ops = weft__park_ops_current();
}

/* Make w a waiter of the calling context, in state WAITING. */
static inline void weft__waiter_init(struct weft__waiter *w)
{
    weft__waiter_reset(w)->prepare(w);
}

/* The state without the SLEEP bit. */
static inline uint32_t weft__waiter_state(struct weft__waiter *w)
{
    return atomic_load_explicit(&w->state, memory_order_acquire) & ~WEFT__W_SLEEP;
}

/*
 * Block while the state equals expect, until deadline. Returns the new
 * state (>= 0), or -ETIMEDOUT with the state still equal to expect: the
 * caller then settles, by its own protocol, whether it really timed out
 * (typically by claiming itself with weft__waiter_cas, or by finding itself
 * still queued under a lock). If w->cancellable, it may also return
 * -ECANCELED (a cancelled coroutine; never on an OS thread), with the state
 * still equal to expect, to be settled exactly as a timeout.
 */
static inline int weft__waiter_wait(struct weft__waiter *w, uint32_t expect,
                                    weft_time_t deadline)
{
    /* Inline: a blocking call then goes straight to its context's wait. */
    for (;;) {
        uint32_t s = weft__waiter_state(w);
        if (s != expect)
            return (int)s;
        if (weft__deadline_passed(deadline))
            return -ETIMEDOUT;
        int r = w->ops->wait(w, expect, deadline);
        if (r == -ETIMEDOUT || r == -ECANCELED) {
            s = weft__waiter_state(w);
            return s != expect ? (int)s : r;
        }
    }
}

/* Change the state from `from` to `to` if it is `from` (SLEEP is kept).
 * True if it changed. Used to claim a waiter (WAITING -> BUSY), or by the
 * owner to give up (WAITING -> TIMEDOUT). */
static inline bool weft__waiter_cas(struct weft__waiter *w, uint32_t from, uint32_t to)
{
    uint32_t cur = atomic_load_explicit(&w->state, memory_order_relaxed);
    for (;;) {
        if ((cur & ~WEFT__W_SLEEP) != from)
            return false;
        if (atomic_compare_exchange_weak_explicit(&w->state, &cur,
                                                  to | (cur & WEFT__W_SLEEP),
                                                  memory_order_acq_rel,
                                                  memory_order_relaxed))
            return true;
    }
}

/*
 * Set a final state and wake the waiter if it sleeps. Everything the waker
 * wrote before this call (a token, a copied element) is visible to the
 * waiter when it sees the new state (release). After this call the waiter
 * may return at any moment: the caller must not touch *w again.
 */
void weft__waiter_finish(struct weft__waiter *w, uint32_t final_state);

/* The ops armed w (arm or prepare_armed said so): owner-side bookkeeping. */
static inline void weft__waiter_mark_armed(struct weft__waiter *w)
{
    w->armed = true;
    atomic_store_explicit(&w->state, WEFT__W_WAITING | WEFT__W_SLEEP, memory_order_relaxed);
}

/*
 * Arm w (state WAITING, not yet visible to any waker: call it before
 * publishing w, e.g. under the lock that queues it): if the context's ops
 * can, it becomes wakeable at once and SLEEP is set now with a plain store,
 * so its wait needs no read-modify-write to announce the sleep. The price:
 * every finish of w calls wake even if the owner never sleeps, so arm only
 * where the owner is about to wait anyway. An armed waiter must be
 * disarmed (weft__waiter_disarm) after its first weft__waiter_wait.
 */
static inline void weft__waiter_arm(struct weft__waiter *w)
{
    if (w->ops->arm && w->ops->arm(w))
        weft__waiter_mark_armed(w);
}

/* weft__waiter_init, then weft__waiter_arm: one call into the ops where
 * they have prepare_armed (the coroutine ops). */
static inline void weft__waiter_init_armed(struct weft__waiter *w)
{
    const struct weft__park_ops *ops = weft__waiter_reset(w);
    if (!ops->prepare_armed) {
        ops->prepare(w);
        weft__waiter_arm(w);
    } else if (WEFT_LIKELY(ops->prepare_armed(w))) {
        weft__waiter_mark_armed(w);
    }
}

/* After the first weft__waiter_wait of an armed waiter: if that wait did not
 * sleep through the arming, take it back (or consume the wake it caused). */
static inline void weft__waiter_disarm(struct weft__waiter *w)
{
    if (w->armed)
        w->ops->disarm(w);
}

/* The home of the contexts that take turns on the calling thread (a
 * running loop), or NULL. */
extern _Thread_local const void *weft__park_home_tls;
void weft__park_set_home(const void *home);

/* True if w's context cannot change w's state while the caller runs: it
 * takes turns with the caller on the calling thread, so, not being the
 * caller (the caller must know that: a context never completes its own
 * waiter), it is suspended. */
static inline bool weft__waiter_local(const struct weft__waiter *w)
{
    return w->home != NULL && w->home == weft__park_home_tls;
}

/*
 * weft__waiter_finish for a finisher that is the only party, besides w's
 * owner, that may change w's state (a loop's fd readiness dispatch): if the
 * owner takes turns with the caller on this thread (weft__waiter_local), it
 * cannot act now either, so a load and a store do what the exchange does.
 */
static inline void weft__waiter_finish_sole(struct weft__waiter *w, uint32_t final_state)
{
    if (!weft__waiter_local(w)) {
        weft__waiter_finish(w, final_state);
        return;
    }
    const struct weft__park_ops *ops = w->ops;
    void *ctx = w->ctx;
    uint64_t gen = w->gen;
    uint32_t old = atomic_load_explicit(&w->state, memory_order_relaxed);
    /* release: what the finisher wrote (the events) is visible with it. */
    atomic_store_explicit(&w->state, final_state, memory_order_release);
    if (old & WEFT__W_SLEEP)
        ops->wake(ctx, gen, &w->state);
}

/* For wait implementations: set SLEEP if the state (without SLEEP) is still
 * expect. True if set (and so a finish will call wake). */
static inline bool weft__waiter_mark_sleep(struct weft__waiter *w, uint32_t expect)
{
    uint32_t cur = atomic_load_explicit(&w->state, memory_order_relaxed);
    for (;;) {
        if ((cur & ~WEFT__W_SLEEP) != expect)
            return false;
        if (cur & WEFT__W_SLEEP)
            return true;
        if (atomic_compare_exchange_weak_explicit(&w->state, &cur, cur | WEFT__W_SLEEP,
                                                  memory_order_seq_cst,
                                                  memory_order_relaxed))
            return true;
    }
}

/* ------------------------------------------------------------------------ */
/* The parking lot: waiters queued by address.                               */
/* ------------------------------------------------------------------------ */

/* What an unpark callback learns, under the bucket lock. */
struct weft__unpark_result {
    unsigned unparked; /* how many waiters are being woken (0 or 1 for one) */
    bool have_more;    /* waiters remain parked on the key */
    bool be_fair;      /* a waiter has waited long enough to deserve a
                          direct hand-off (about every millisecond) */
};

/*
 * Park the calling context on key.
 *
 * Under the bucket lock, validate(arg) is called (if not NULL): false means
 * "no need to wait" and park returns -EAGAIN at once. Otherwise the caller
 * is queued (FIFO per key) and sleeps until an unpark of key or the deadline.
 * If the deadline passes while still queued, timed_out(arg, was_last) is
 * called under the bucket lock (if not NULL; was_last: no other waiter on
 * key remains) and park returns -ETIMEDOUT. Returns 0 when unparked, with the
 * unparker's token in *token (if token is not NULL).
 *
 * The callbacks run with a bucket lock held: they must not block or park.
 */
int weft__park(const void *key, bool (*validate)(void *arg), void *arg,
               void (*timed_out)(void *arg, bool was_last), weft_time_t deadline,
               uintptr_t *token);

/*
 * The same, cancellable: in a coroutine whose task is cancelled (and not
 * shielded), the park ends as a timeout does (dequeued, timed_out(arg,
 * was_last) called under the bucket lock) and returns -ECANCELED; if the
 * task is cancelled already, at once. An unpark that won the race still
 * wins (0). On an OS thread it is exactly weft__park. The blocking calls of
 * the primitives use this one; internal waits that must finish (a lock
 * held for a few instructions, a hand-over in progress) use weft__park.
 */
int weft__park_c(const void *key, bool (*validate)(void *arg), void *arg,
                 void (*timed_out)(void *arg, bool was_last), weft_time_t deadline,
                 uintptr_t *token);

/*
 * The lot's table has 1 << WEFT__LOT_BITS buckets; a key's bucket is
 * weft__lot_index(key). Beside each bucket is an ANNOUNCE word: a count
 * of contexts that are about to park on some key of that bucket, for a
 * lock whose release is a plain store followed by a load (the asymmetric
 * channel lock, src/chan/chan.c): the parker increments it, runs
 * weft__heavy_barrier, parks, and decrements it after; a releaser that
 * finds it non-zero unparks the key. The words are global and never
 * freed, so a releaser may read one after the lock's own memory may have
 * gone; a collision costs a needless unpark, never a lost one.
 */
#define WEFT__LOT_BITS 12
static inline unsigned weft__lot_index(const void *key)
{
    uint64_t h = (uint64_t)(uintptr_t)key * 0x9e3779b97f4a7c15ull;
    return (unsigned)(h >> (64 - WEFT__LOT_BITS));
}
extern _Atomic uint32_t weft__park_announce[1u << WEFT__LOT_BITS];
static inline _Atomic uint32_t *weft__park_announce_word(const void *key)
{
    return &weft__park_announce[weft__lot_index(key)];
}

/*
 * Unpark the longest-waiting waiter on key. callback(arg, result), if not
 * NULL, is called under the bucket lock whether or not a waiter was found,
 * and returns the token handed to the waiter. Returns 1 if a waiter was
 * unparked, else 0.
 */
unsigned weft__unpark_one(const void *key,
                          uintptr_t (*callback)(void *arg, struct weft__unpark_result r),
                          void *arg);

/* Unpark every waiter on key, each receiving token. Returns how many. */
unsigned weft__unpark_all(const void *key, uintptr_t token);

/* Unpark up to n waiters on key, oldest first, each receiving token. */
unsigned weft__unpark_n(const void *key, unsigned n, uintptr_t token);

/* Unpark up to max waiters on key, oldest first; callback(arg, r) is
 * called under the bucket lock whether or not any was found (r.unparked:
 * how many, r.have_more: waiters remain) and returns the token every one
 * of them receives. For a primitive that hands several of them a share
 * of itself at once: nothing of the primitive is touched after the
 * callback, when the first of them may already run (and free it). */
unsigned weft__unpark_n_cb(const void *key, unsigned max,
                           uintptr_t (*callback)(void *arg, struct weft__unpark_result r),
                           void *arg);

/*
 * Unpark every waiter on key; callback(arg, count) is called under the
 * bucket lock with the number about to be woken (possibly 0) and returns
 * their token. Lets a primitive hand itself to all of them at once.
 */
unsigned weft__unpark_all_cb(const void *key, uintptr_t (*callback)(void *arg, unsigned count),
                             void *arg);

/* True if some waiter is parked on key now. */
bool weft__is_parked(const void *key);

#endif /* WEFT_PARK_H */
