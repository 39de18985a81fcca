/*
 * weft/sync.h - synchronisation primitives: Python's `threading` locks and
 * signals for C.
 *
 *   Python                      weft
 *   threading.Lock              weft_mutex_t
 *   threading.RLock             weft_rmutex_t
 *   (none; pthread_rwlock)      weft_rwlock_t
 *   threading.Condition         weft_cond_t (with a weft_mutex_t)
 *   threading.Semaphore         weft_sem_t
 *   threading.BoundedSemaphore  weft_sem_t made with weft_sem_init_bounded
 *   threading.Event             weft_event_t
 *   threading.Barrier           weft_barrier_t
 *   (pthread_once)              weft_once_t
 *   (Go sync.WaitGroup)         weft_waitgroup_t
 *   (C++ std::latch)            weft_latch_t
 *
 * Every primitive blocks through weft's parking layer: on an OS thread a
 * blocked call sleeps on a futex after a short spin; inside a weft coroutine
 * it suspends only the coroutine. A thread
 * and a coroutine may meet on the same primitive.
 *
 * Memory: every type here is a plain struct the caller owns. It may live on
 * the stack, in a struct or in static storage; the *_INIT macros initialise
 * static ones, and weft_*_init initialises any. The fields are private. None
 * of these objects may be copied or moved while in use.
 *
 * Blocking calls come in three forms: the plain call blocks until it
 * succeeds; _try never blocks and returns -EAGAIN where it would have had to;
 * _until(..., deadline) blocks until the absolute deadline (weft/time.h) and
 * returns -ETIMEDOUT then. A deadline < 0 gives -EINVAL.
 *
 * Cancellation: in a coroutine (weft/co.h), every call here that would
 * wait (plain and _until forms; never _try) returns -ECANCELED if the task
 * is cancelled while waiting, or already is when it would have to wait
 * (level-triggered; a shield holds it off). The object is left exactly as
 * after a timeout: the caller is out of the queue, a unit or a hand-off
 * that reached it first is kept (the call then succeeds), a mutex it did
 * not get is not left locked, a condition wait returns with the mutex held,
 * a barrier breaks (as on a timeout). CHECK the result of a lock in code
 * that may run in a cancellable coroutine. On a plain thread these calls
 * never return -ECANCELED. (weft_once is not interrupted.)
 *
 * Every function taking a pointer returns -EINVAL for NULL (functions that
 * return a value rather than an error code document what they return).
 * Any thread may call any function unless its comment says otherwise.
 */
#ifndef WEFT_SYNC_H
#define WEFT_SYNC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <weft/error.h>
#include <weft/time.h>
#include <weft/version.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Mutex (threading.Lock)                                                    */
/* ------------------------------------------------------------------------ */

/*
 * A mutual-exclusion lock. Locking an unheld mutex is one atomic
 * compare-and-swap and no system call; unlocking one that nobody waits for is
 * one atomic operation.
 *
 * Under contention a locker spins briefly, then parks. Unlocking lets a
 * running thread take the lock ahead of parked ones (barging: the lock stays
 * hot in one core's cache, which is why weft's mutex beats a strict FIFO lock
 * on throughput) but never starves anybody: once a parked waiter has waited
 * longer than about a millisecond, the next unlock hands the lock directly to
 * the longest waiter (eventual fairness, as in WebKit's and Rust's
 * parking_lot).
 *
 * The mutex records its owner (the calling thread, or the calling
 * coroutine), which makes misuse detectable:
 *   - weft_mutex_lock on a mutex the caller already holds returns -EDEADLK
 *     instead of hanging (use weft_rmutex_t for recursion);
 *   - weft_mutex_unlock by a caller that does not hold it returns -EPERM and
 *     changes nothing.
 */
typedef struct weft_mutex {
    uint32_t state;  /* private: lock and parked bits */
    uint32_t _pad;
    uint64_t owner;  /* private: id of the holder, 0 when free */
} weft_mutex_t;

#define WEFT_MUTEX_INIT { 0, 0, 0 }

/* Initialise an unlocked mutex. Returns 0 or -EINVAL. */
WEFT_API int weft_mutex_init(weft_mutex_t *m);
/* Check that the mutex is unlocked with no waiters: 0, -EBUSY (held or
 * waited on; nothing changes), -EINVAL. No memory is held, so a mutex that
 * is never destroyed leaks nothing. */
WEFT_API int weft_mutex_destroy(weft_mutex_t *m);
/* Lock, blocking as long as needed. 0, -EDEADLK, -EINVAL; in a coroutine,
 * -ECANCELED if the task is cancelled while waiting (not locked). */
WEFT_API int weft_mutex_lock(weft_mutex_t *m);
/* Lock if free: 0, -EAGAIN (held by someone, including the caller), -EINVAL. */
WEFT_API int weft_mutex_lock_try(weft_mutex_t *m);
/* Lock, waiting at most until deadline: 0, -ETIMEDOUT, -EDEADLK, -EINVAL;
 * in a coroutine, -ECANCELED if the task is cancelled while waiting. */
WEFT_API int weft_mutex_lock_until(weft_mutex_t *m, weft_time_t deadline);
/* Unlock: 0, -EPERM (the caller does not hold it), -EINVAL. */
WEFT_API int weft_mutex_unlock(weft_mutex_t *m);
/* True if some caller holds the mutex at the moment of the call (a hint). */
WEFT_API bool weft_mutex_is_locked(const weft_mutex_t *m);

/* ------------------------------------------------------------------------ */
/* Recursive mutex (threading.RLock)                                         */
/* ------------------------------------------------------------------------ */

/*
 * A mutex its owner may lock again; it is released when unlocked as many
 * times as it was locked. Unlock by a non-owner returns -EPERM.
 */
typedef struct weft_rmutex {
    weft_mutex_t mutex; /* private */
    uint32_t depth;     /* private: how many times the owner has locked it */
    uint32_t _pad;
} weft_rmutex_t;

#define WEFT_RMUTEX_INIT { WEFT_MUTEX_INIT, 0, 0 }

/* Initialise an unlocked recursive mutex. 0, -EINVAL. */
WEFT_API int weft_rmutex_init(weft_rmutex_t *m);
/* 0, -EBUSY (held or waited on), -EINVAL. */
WEFT_API int weft_rmutex_destroy(weft_rmutex_t *m);
/* 0, -EOVERFLOW (locked 2^32-1 times already), -EINVAL; in a coroutine,
 * -ECANCELED if the task is cancelled while waiting. */
WEFT_API int weft_rmutex_lock(weft_rmutex_t *m);
/* 0, -EAGAIN, -EOVERFLOW, -EINVAL. */
WEFT_API int weft_rmutex_lock_try(weft_rmutex_t *m);
/* 0, -ETIMEDOUT, -EOVERFLOW, -EINVAL, -ECANCELED (a cancelled coroutine). */
WEFT_API int weft_rmutex_lock_until(weft_rmutex_t *m, weft_time_t deadline);
/* 0, -EPERM (not the owner), -EINVAL. */
WEFT_API int weft_rmutex_unlock(weft_rmutex_t *m);

/* ------------------------------------------------------------------------ */
/* Read-write lock                                                           */
/* ------------------------------------------------------------------------ */

/*
 * Many readers or one writer. Policy, writer preference without reader
 * starvation:
 *   - while a writer holds the lock or waits for it, new readers wait;
 *   - when a writer unlocks and readers are waiting, all of those readers
 *     enter together before the next writer;
 *   - otherwise the next waiting writer enters.
 * A writer "waits" once it has parked, after a spin of a few microseconds;
 * readers that arrive during that spin still get in. Parked readers and
 * writers are handed the lock directly (it never looks free in between), so
 * nobody can barge past the order above.
 * A reader that already holds a read lock and asks again while a writer waits
 * will deadlock (as with every writer-preferring lock): do not nest read
 * locks. Unlocking a lock not held in that mode returns -EPERM; read locks
 * are not recorded per caller, so rdunlock can only detect that no reader at
 * all holds the lock.
 * Locking, uncontended, is one compare-and-swap in either mode; so is
 * unlocking when nobody is parked.
 */
typedef struct weft_rwlock {
    uint32_t state;  /* private: readers count and writer/parked bits */
    uint32_t _pad;
    uint64_t writer; /* private: id of the writing owner, 0 if none */
} weft_rwlock_t;

#define WEFT_RWLOCK_INIT { 0, 0, 0 }

/* Initialise an unlocked lock. 0, -EINVAL. */
WEFT_API int weft_rwlock_init(weft_rwlock_t *l);
/* 0, -EBUSY (held or waited on), -EINVAL. */
WEFT_API int weft_rwlock_destroy(weft_rwlock_t *l);
/* Shared lock. 0, -EOVERFLOW (2^29-1 readers hold it already), -EINVAL; in a
 * coroutine, -ECANCELED if the task is cancelled while waiting. */
WEFT_API int weft_rwlock_rdlock(weft_rwlock_t *l);
/* Shared lock if no writer holds or waits for it: 0, -EAGAIN, -EOVERFLOW,
 * -EINVAL. */
WEFT_API int weft_rwlock_rdlock_try(weft_rwlock_t *l);
/* Shared lock by the deadline: 0, -ETIMEDOUT, -EOVERFLOW, -EINVAL, and
 * -ECANCELED in a cancelled coroutine. */
WEFT_API int weft_rwlock_rdlock_until(weft_rwlock_t *l, weft_time_t deadline);
/* Release a shared lock. 0, -EPERM (no reader holds it), -EINVAL. */
WEFT_API int weft_rwlock_rdunlock(weft_rwlock_t *l);
/* Exclusive lock. 0, -EDEADLK (the caller is the writer already), -EINVAL;
 * in a coroutine, -ECANCELED if the task is cancelled while waiting. */
WEFT_API int weft_rwlock_wrlock(weft_rwlock_t *l);
/* Exclusive lock if nobody holds it: 0, -EAGAIN (held, by the caller too),
 * -EINVAL. */
WEFT_API int weft_rwlock_wrlock_try(weft_rwlock_t *l);
/* Exclusive lock by the deadline: 0, -ETIMEDOUT, -EDEADLK, -EINVAL, and
 * -ECANCELED in a cancelled coroutine. */
WEFT_API int weft_rwlock_wrlock_until(weft_rwlock_t *l, weft_time_t deadline);
/* Release the exclusive lock. 0, -EPERM (the caller is not the writer),
 * -EINVAL. */
WEFT_API int weft_rwlock_wrunlock(weft_rwlock_t *l);

/* ------------------------------------------------------------------------ */
/* Condition variable (threading.Condition)                                  */
/* ------------------------------------------------------------------------ */

/*
 * Wait for a change made under a mutex. As in Python, the caller must hold
 * the mutex to wait (-EPERM otherwise); notifying without it is allowed.
 * Wake-ups can be spurious: wait in a loop, or use weft_cond_wait_for, which
 * loops on a predicate (Condition.wait_for).
 */
typedef struct weft_cond {
    uint32_t seq; /* private: bumped by every notify */
    uint32_t _pad;
} weft_cond_t;

#define WEFT_COND_INIT { 0, 0 }

/* Initialise a condition variable. 0, -EINVAL. */
WEFT_API int weft_cond_init(weft_cond_t *c);
/* 0, -EBUSY (threads wait on it), -EINVAL. */
WEFT_API int weft_cond_destroy(weft_cond_t *c);
/* Unlock m, wait for a notify, relock m. 0, -EPERM, -EINVAL; in a
 * coroutine, -ECANCELED if the task is cancelled while waiting (m is
 * relocked all the same). */
WEFT_API int weft_cond_wait(weft_cond_t *c, weft_mutex_t *m);
/* The same with a deadline: 0, -ETIMEDOUT (m is relocked either way),
 * -ECANCELED (a cancelled coroutine; m relocked), -EPERM, -EINVAL. */
WEFT_API int weft_cond_wait_until(weft_cond_t *c, weft_mutex_t *m, weft_time_t deadline);
/*
 * Wait until pred(arg) returns true (checked with m held, first before any
 * wait): 0 once it holds, -ETIMEDOUT if the deadline passes first (m is held
 * on return either way), -ECANCELED (a cancelled coroutine, and the
 * predicate still false; m held), -EPERM, -EINVAL. Pass WEFT_FOREVER to wait without
 * a deadline.
 */
WEFT_API int weft_cond_wait_for(weft_cond_t *c, weft_mutex_t *m,
                                bool (*pred)(void *arg), void *arg,
                                weft_time_t deadline);
/* Wake one waiter / up to n waiters / all waiters. Return how many were
 * woken (>= 0), or -EINVAL. */
WEFT_API int weft_cond_notify(weft_cond_t *c);
WEFT_API int weft_cond_notify_n(weft_cond_t *c, unsigned n);
WEFT_API int weft_cond_notify_all(weft_cond_t *c);

/* ------------------------------------------------------------------------ */
/* Semaphore (threading.Semaphore, threading.BoundedSemaphore)               */
/* ------------------------------------------------------------------------ */

/*
 * A counter that acquire decrements, waiting while it is zero, and release
 * increments. Callers that had to wait are served strictly in arrival order:
 * a release finding waiters hands its unit directly to the longest waiting
 * one, so a caller arriving later cannot take it first (acquire_try returns
 * -EAGAIN meanwhile). With nobody waiting, acquire and release are one
 * compare-and-swap each. A bounded
 * semaphore refuses a release that would take the count above its bound with
 * -EOVERFLOW (Python raises ValueError) and leaves the count unchanged.
 */
typedef struct weft_sem {
    uint32_t count; /* private: free units, or UINT32_MAX while callers wait */
    uint32_t max;   /* private: the bound; UINT32_MAX when unbounded */
} weft_sem_t;

/* value (and max) below UINT32_MAX, value <= max. */
#define WEFT_SEM_INIT(value) { (value), UINT32_MAX }
#define WEFT_SEM_INIT_BOUNDED(value, max) { (value), (max) }

/* 0, -EINVAL (value == UINT32_MAX). */
WEFT_API int weft_sem_init(weft_sem_t *s, unsigned value);
/* 0, -EINVAL (value > max, or max == 0). */
WEFT_API int weft_sem_init_bounded(weft_sem_t *s, unsigned value, unsigned max);
/* 0, -EBUSY (waiters), -EINVAL. */
WEFT_API int weft_sem_destroy(weft_sem_t *s);
/* Take one unit, waiting while there is none: 0, -EINVAL; in a coroutine,
 * -ECANCELED if the task is cancelled while waiting (nothing taken). */
WEFT_API int weft_sem_acquire(weft_sem_t *s);
/* Take one unit if one is free: 0, -EAGAIN, -EINVAL. */
WEFT_API int weft_sem_acquire_try(weft_sem_t *s);
/* Take one unit by the deadline: 0, -ETIMEDOUT, -EINVAL, -ECANCELED (a
 * cancelled coroutine; nothing taken). */
WEFT_API int weft_sem_acquire_until(weft_sem_t *s, weft_time_t deadline);
/* Add 1 / add n: 0, -EOVERFLOW (past the bound or UINT32_MAX-1; nothing
 * changes), -EINVAL (n == 0). Units go first to waiting callers, oldest
 * first; release_n releases all n units or none. */
WEFT_API int weft_sem_release(weft_sem_t *s);
WEFT_API int weft_sem_release_n(weft_sem_t *s, unsigned n);
/* The count at the moment of the call (a hint); 0 for NULL. */
WEFT_API unsigned weft_sem_value(const weft_sem_t *s);

/* ------------------------------------------------------------------------ */
/* Event (threading.Event)                                                   */
/* ------------------------------------------------------------------------ */

/*
 * A flag threads can wait for. set wakes every waiter; wait returns at once
 * while the flag is set; clear resets it.
 */
typedef struct weft_event {
    uint32_t state; /* private: set bit, parked bit, set generation */
} weft_event_t;

#define WEFT_EVENT_INIT { 0 }

/* Initialise an event, clear. 0, -EINVAL. */
WEFT_API int weft_event_init(weft_event_t *e);
/* 0, -EBUSY (waiters), -EINVAL. */
WEFT_API int weft_event_destroy(weft_event_t *e);
/* Set the flag and wake every waiter. 0, -EINVAL. */
WEFT_API int weft_event_set(weft_event_t *e);
/* Clear the flag. 0, -EINVAL. */
WEFT_API int weft_event_clear(weft_event_t *e);
/* False for NULL. */
WEFT_API bool weft_event_is_set(const weft_event_t *e);
/* 0 once set, -EINVAL. A waiter woken by set returns 0 even if the event was
 * cleared again before it ran (as in Python: the flag was set while it
 * waited). In a coroutine, -ECANCELED if the task is cancelled while the
 * flag is clear. */
WEFT_API int weft_event_wait(weft_event_t *e);
/* 0 once set, -ETIMEDOUT, -EINVAL, -ECANCELED (a cancelled coroutine). */
WEFT_API int weft_event_wait_until(weft_event_t *e, weft_time_t deadline);

/* ------------------------------------------------------------------------ */
/* Barrier (threading.Barrier)                                               */
/* ------------------------------------------------------------------------ */

/*
 * `parties` callers meet; each wait returns a distinct arrival index in
 * [0, parties), numbered in order of arrival as in Python (the first to
 * arrive gets 0, the last gets parties-1), and the barrier resets itself for
 * the next round. If an action was given, the last arrival
 * runs it before anyone is released.
 *
 * Broken state, as in Python: weft_barrier_abort, a wait that times out, or
 * weft_barrier_reset while callers wait, breaks the barrier; every waiter and
 * every later wait returns WEFT_EBROKEN until weft_barrier_reset. The waiter
 * whose deadline passed returns -ETIMEDOUT (and breaks it for the others).
 * After a reset, callers still inside the broken round leave first (they
 * are already woken); a wait that arrives meanwhile waits for them, and if
 * its deadline passes then, returns -ETIMEDOUT without breaking anything.
 *
 * The action runs in the last arrival's thread with the barrier's internal
 * lock held: it must not block on the other parties, and wait, abort and
 * reset of the same barrier called from it return -EDEADLK.
 */
typedef struct weft_barrier {
    weft_mutex_t lock;          /* private */
    uint32_t word;              /* private: parking key, bumped per round */
    uint32_t parties;           /* private */
    uint32_t count;             /* private: arrivals this round */
    uint32_t broken;            /* private */
    uint64_t generation;        /* private */
    void (*action)(void *arg);  /* private */
    void *action_arg;           /* private */
} weft_barrier_t;

/* parties >= 1; action may be NULL. 0, -EINVAL. */
WEFT_API int weft_barrier_init(weft_barrier_t *b, unsigned parties,
                               void (*action)(void *arg), void *arg);
/* 0, -EBUSY (callers wait on it), -EINVAL. */
WEFT_API int weft_barrier_destroy(weft_barrier_t *b);
/* Arrival index >= 0, WEFT_EBROKEN, -EDEADLK (from the action), -EINVAL; in
 * a coroutine, -ECANCELED if the task is cancelled while waiting (the
 * barrier breaks for the others, as on a timeout). */
WEFT_API int weft_barrier_wait(weft_barrier_t *b);
/* Arrival index >= 0, -ETIMEDOUT, WEFT_EBROKEN, -EDEADLK, -EINVAL, and
 * -ECANCELED (a cancelled coroutine; the barrier breaks as on a timeout). */
WEFT_API int weft_barrier_wait_until(weft_barrier_t *b, weft_time_t deadline);
/* Break the barrier: waiters return WEFT_EBROKEN. 0, -EDEADLK, -EINVAL. */
WEFT_API int weft_barrier_abort(weft_barrier_t *b);
/* Back to the empty, unbroken state; current waiters get WEFT_EBROKEN.
 * 0, -EDEADLK, -EINVAL. */
WEFT_API int weft_barrier_reset(weft_barrier_t *b);
/* False for NULL. */
WEFT_API bool weft_barrier_is_broken(weft_barrier_t *b);
/* Callers waiting now (a hint); 0 for NULL. */
WEFT_API unsigned weft_barrier_n_waiting(weft_barrier_t *b);

/* ------------------------------------------------------------------------ */
/* Once                                                                       */
/* ------------------------------------------------------------------------ */

/*
 * Run an initialiser exactly once however many callers race; every caller
 * returns only after it has finished. Calling weft_once on the same object
 * from inside fn returns -EDEADLK.
 */
typedef struct weft_once {
    uint32_t state; /* private: new, running, done, parked bit */
    uint32_t _pad;
    uint64_t runner; /* private: id of the caller running fn */
} weft_once_t;

#define WEFT_ONCE_INIT { 0, 0, 0 }

/* 0, -EDEADLK, -EINVAL (o or fn NULL). */
WEFT_API int weft_once(weft_once_t *o, void (*fn)(void *arg), void *arg);
/* True once fn has returned. */
WEFT_API bool weft_once_done(const weft_once_t *o);

/* ------------------------------------------------------------------------ */
/* Wait group and latch                                                       */
/* ------------------------------------------------------------------------ */

/*
 * A wait group (Go's sync.WaitGroup) counts outstanding work: add before
 * starting it, done when it finishes, wait for the count to reach zero. A
 * done or negative add that would take the count below zero returns
 * -EOVERFLOW and changes nothing.
 */
typedef struct weft_waitgroup {
    uint64_t state; /* private: count and parked bit */
} weft_waitgroup_t;

#define WEFT_WAITGROUP_INIT { 0 }

/* Initialise a wait group with count 0. 0, -EINVAL. */
WEFT_API int weft_waitgroup_init(weft_waitgroup_t *wg);
/* 0, -EBUSY (waiters, or count not zero), -EINVAL. */
WEFT_API int weft_waitgroup_destroy(weft_waitgroup_t *wg);
/* Add delta (may be negative; 0 is a no-op). 0, -EOVERFLOW (the count would
 * leave [0, 2^62]; nothing changes), -EINVAL. Reaching zero releases every
 * waiter. */
WEFT_API int weft_waitgroup_add(weft_waitgroup_t *wg, int64_t delta);
/* add(-1): 0, -EOVERFLOW (the count is zero), -EINVAL. */
WEFT_API int weft_waitgroup_done(weft_waitgroup_t *wg);
/* Wait until the count is zero: 0, -EINVAL. The waiter returns once it
 * sees the count at zero; as in Go, adding work again before the waiters
 * of the previous zero have returned is a misuse: they may miss that zero
 * and wait for the next one. In a coroutine, -ECANCELED if the task is
 * cancelled while waiting. */
WEFT_API int weft_waitgroup_wait(weft_waitgroup_t *wg);
/* The same by the deadline: 0, -ETIMEDOUT, -EINVAL, -ECANCELED (a cancelled
 * coroutine). */
WEFT_API int weft_waitgroup_wait_until(weft_waitgroup_t *wg, weft_time_t deadline);
/* The count now (a hint); 0 for NULL. */
WEFT_API int64_t weft_waitgroup_count(const weft_waitgroup_t *wg);

/*
 * A latch (C++ std::latch): a count fixed at creation that only goes down;
 * waiters are released when it reaches zero, and for good.
 */
typedef struct weft_latch {
    uint64_t state; /* private: count and parked bit */
} weft_latch_t;

#define WEFT_LATCH_INIT(count) { (uint64_t)(count) << 1 }

/* 0, -EINVAL (count > 2^62). */
WEFT_API int weft_latch_init(weft_latch_t *l, uint64_t count);
/* 0, -EBUSY (waiters), -EINVAL. */
WEFT_API int weft_latch_destroy(weft_latch_t *l);
/* Subtract n (0 is a no-op): 0, -EOVERFLOW (more than remains; nothing
 * changes), -EINVAL. */
WEFT_API int weft_latch_count_down(weft_latch_t *l, uint64_t n);
/* 0 once the count is zero, -EINVAL; -ECANCELED in a coroutine cancelled
 * while waiting. */
WEFT_API int weft_latch_wait(weft_latch_t *l);
/* 0, -ETIMEDOUT, -EINVAL, -ECANCELED (a cancelled coroutine). */
WEFT_API int weft_latch_wait_until(weft_latch_t *l, weft_time_t deadline);
/* 0 if the count is zero, -EAGAIN otherwise, -EINVAL. */
WEFT_API int weft_latch_wait_try(weft_latch_t *l);
/* count_down(1) then wait: 0, -EOVERFLOW (the count was zero already),
 * -EINVAL, -ECANCELED (a cancelled coroutine; its count_down stands). */
WEFT_API int weft_latch_arrive_and_wait(weft_latch_t *l);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_SYNC_H */
