/*
 * weft/future.h - the one future type: the result of a piece of work,
 * whoever runs it (a pool worker, a worker process or a coroutine).
 *
 *   Python (concurrent.futures)      weft
 *   f = pool.submit(fn, arg)         weft_pool_submit(pool, fn, arg, &f)
 *   f.result(timeout)                weft_future_get_until(f, &v, deadline)
 *   f.exception()                    weft_future_result(f, NULL) (the error)
 *   f.done() / f.running()           weft_future_done / weft_future_running
 *   f.cancel() / f.cancelled()       weft_future_cancel / weft_future_cancelled
 *   f.add_done_callback(cb)          weft_future_on_done(f, cb, arg)
 *   f.set_result / set_exception     weft_future_set_result / _set_error
 *   set_running_or_notify_cancel()   weft_future_set_running
 *   wait(fs, ALL_COMPLETED)          weft_future_wait_all(fs, n, deadline)
 *   wait(fs, FIRST_COMPLETED)        weft_future_wait_any(fs, n, deadline)
 *   as_completed(fs)                 weft_as_completed_*
 *
 * A future is resolved exactly once, to one of three outcomes:
 *   - a result: an opaque `void *` value (0 error), optionally with a
 *     function that frees the value when the future itself is freed;
 *   - an error: a negative error code (a task returned it);
 *   - cancelled: the error code is -ECANCELED.
 * Why `void *` and not bytes: in one address space a pointer is what C code
 * hands around, and it costs nothing. Work that produces bytes (the process
 * pool) resolves the future with a malloc'd buffer and `free` as the
 * value's free function (weft_future_set_result_free), so the bytes live
 * exactly as long as the future.
 *
 * States: PENDING -> (RUNNING) -> DONE. RUNNING is optional (a future
 * resolved by hand may skip it); a PENDING future may be cancelled, a
 * RUNNING one only asked to stop (it sees weft_future_cancel_requested, and
 * pool tasks weft_task_cancelled), because C cannot interrupt a function;
 * a coroutine's future (weft_task_future) cancels the coroutine as
 * weft_task_cancel does, which ends a wait it is suspended in.
 *
 * Blocking goes through weft's parking layer: a waiting thread spins briefly
 * then sleeps on a futex; a waiting coroutine suspends.
 * A waiting pool worker first helps: it runs other tasks of its pool while
 * the future is pending, so a task that waits for another task's future
 * does not tie up a worker and cannot deadlock a pool by waiting.
 *
 * Memory: futures are reference counted. A new future has one reference,
 * owned by whoever created it (weft_future_create, weft_pool_submit).
 * weft_future_retain adds one, weft_future_release drops one; the last
 * release frees the future (and its value, if a free function was set).
 * A pool keeps its own reference while the task is queued or running, so
 * releasing a submitted future early is fine: the task still runs.
 *
 * Every function may be called from any thread. Functions returning int
 * return 0 (or a non-negative count/index) on success and a negative code on
 * failure; every function taking a future returns -EINVAL for NULL.
 */
#ifndef WEFT_FUTURE_H
#define WEFT_FUTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <weft/error.h>
#include <weft/time.h>
#include <weft/version.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weft_future weft_future_t;

/* A done-callback: called exactly once with the (resolved) future. It may
 * call any non-blocking function on the future (result, retain, release of
 * a reference it owns); it must not block for long, it runs on the thread
 * that resolved the future (or the adding thread, see weft_future_on_done). */
typedef void (*weft_future_cb)(weft_future_t *f, void *arg);

/* ---- creating, sharing, freeing -------------------------------------- */

/*
 * Create a pending future (a "promise"): somebody will resolve it with
 * weft_future_set_result / _set_error. *out gets the only reference.
 * 0, -EINVAL (out NULL), -ENOMEM.
 */
WEFT_API int weft_future_create(weft_future_t **out);

/* Add a reference. 0, -EINVAL. */
WEFT_API int weft_future_retain(weft_future_t *f);

/*
 * Drop a reference; the last one frees the future. Freeing a future whose
 * callbacks have not yet run (it is still pending) is allowed only for the
 * last reference of a future nobody can resolve any more; as the holder of
 * a reference can never know that, the rule is: a pending future with
 * registered callbacks is never freed by release. Its callbacks keep it
 * alive (each registered callback holds a reference, dropped after it ran),
 * so they still run exactly once when the future resolves, and a future
 * that is never resolved leaks (cancel it first if you mean to abandon it:
 * cancelling runs the callbacks). 0, -EINVAL.
 */
WEFT_API int weft_future_release(weft_future_t *f);

/* ---- resolving (the producer side) ------------------------------------ */

/*
 * Mark the future RUNNING, as the producer starts the work
 * (set_running_or_notify_cancel). Records the calling context as the
 * runner, so that it cannot wait on its own future.
 * 0; -ECANCELED if the future was cancelled (do not run the work);
 * -EALREADY if it is already running or resolved; -EINVAL.
 */
WEFT_API int weft_future_set_running(weft_future_t *f);

/*
 * Resolve with a value (set_result). Wakes every waiter and runs the
 * callbacks, in the order they were added, on the calling thread.
 * The caller must own a reference for the whole call (as for every call on
 * a future): the waiters it wakes may return and drop theirs at once, and
 * the callbacks run after that. The same holds for _set_result_free,
 * _set_error and weft_future_cancel.
 * 0; -EALREADY if the future was already resolved (including cancelled):
 * nothing changes, the first resolution stands; -EINVAL.
 */
WEFT_API int weft_future_set_result(weft_future_t *f, void *value);

/* The same, and value_free(value) is called when the future is freed (not
 * called if this returns an error: the caller still owns the value). */
WEFT_API int weft_future_set_result_free(weft_future_t *f, void *value,
                                         void (*value_free)(void *value));

/* Resolve with an error code err < 0 (set_exception). -ECANCELED makes the
 * future cancelled. 0; -EALREADY as above; -EINVAL (err >= 0). */
WEFT_API int weft_future_set_error(weft_future_t *f, int err);

/* ---- cancelling --------------------------------------------------------- */

/*
 * Cancel (Future.cancel). A PENDING future is resolved as cancelled at once
 * (error -ECANCELED; waiters wake, callbacks run) and its task will never
 * run. A RUNNING future cannot be stopped: the request is recorded, the
 * task can see it (weft_future_cancel_requested, weft_task_cancelled) and
 * decide to stop by returning -ECANCELED.
 * Returns 0 if the future is cancelled (now, or already: cancelling twice
 * is harmless and returns 0 again); -EBUSY if it is running (the request
 * was recorded); -EALREADY if it already finished with a result or another
 * error (nothing changes); -EINVAL.
 */
WEFT_API int weft_future_cancel(weft_future_t *f);

/* True once cancel was called on the future, whatever its state. False for
 * NULL. For a task that wants to poll. */
WEFT_API bool weft_future_cancel_requested(const weft_future_t *f);

/* ---- observing ------------------------------------------------------------ */

/* State queries; each is false for NULL. done: resolved (any outcome).
 * running: RUNNING and not yet resolved. cancelled: resolved with
 * -ECANCELED. */
WEFT_API bool weft_future_done(const weft_future_t *f);
WEFT_API bool weft_future_running(const weft_future_t *f);
WEFT_API bool weft_future_cancelled(const weft_future_t *f);

/*
 * The outcome of a resolved future, without blocking. If value is not NULL
 * it receives the value (NULL for an error). Returns 0 (resolved with a
 * value), the error code it was resolved with (-ECANCELED if cancelled),
 * -EAGAIN if it is not resolved yet, or -EINVAL for a NULL future. The
 * value stays owned by the future.
 */
WEFT_API int weft_future_result(const weft_future_t *f, void **value);

/*
 * Wait until the future is resolved. Returns 0 once it is (whatever the
 * outcome: read it with weft_future_result); -ETIMEDOUT if the deadline
 * passed first (_until only); -EINVAL (NULL, deadline < 0); -EDEADLK if
 * the caller is the very task that must resolve it (it is RUNNING on the
 * calling context): waiting would never end. In a coroutine, -ECANCELED if
 * the task is cancelled while waiting (the future is untouched).
 * A pool worker calling this helps run its pool's tasks while it waits.
 */
WEFT_API int weft_future_wait(weft_future_t *f);
WEFT_API int weft_future_wait_until(weft_future_t *f, weft_time_t deadline);

/*
 * Wait, then return the outcome (Future.result): the value in *value (if
 * value is not NULL), and 0 or the future's error. The waiting errors of
 * weft_future_wait_until (-ETIMEDOUT, -EINVAL, -EDEADLK) are returned as
 * they are; when a task may itself fail with one of those codes, use
 * weft_future_wait_until and weft_future_result to tell them apart.
 */
WEFT_API int weft_future_get(weft_future_t *f, void **value);
WEFT_API int weft_future_get_until(weft_future_t *f, void **value, weft_time_t deadline);

/* ---- callbacks ---------------------------------------------------------------- */

/*
 * Run cb(f, arg) exactly once when the future resolves
 * (add_done_callback). If it is already resolved, cb runs now, on the
 * calling thread, before this returns. Otherwise it runs on the thread that
 * resolves it, after the waiters were woken, in the order added. The
 * callback holds a reference to the future until it has run.
 * 0; -EINVAL (f or cb NULL); -ENOMEM (cb will never run).
 */
WEFT_API int weft_future_on_done(weft_future_t *f, weft_future_cb cb, void *arg);

/* ---- sets of futures ---------------------------------------------------------- */

/*
 * Wait until every future of fs[0..n) is resolved, or the deadline passes
 * (wait(ALL_COMPLETED)). 0; -ETIMEDOUT; -ECANCELED (a cancelled
 * coroutine); -EINVAL (fs NULL with n > 0, a NULL entry, deadline < 0);
 * -EDEADLK (see weft_future_wait).
 * n == 0 returns 0 at once.
 */
WEFT_API int weft_future_wait_all(weft_future_t *const *fs, size_t n, weft_time_t deadline);

/*
 * Wait until at least one future of fs[0..n) is resolved
 * (wait(FIRST_COMPLETED)). Returns the index (>= 0) of a resolved one (the
 * lowest index among those resolved when it looked); -ETIMEDOUT; -ECANCELED
 * (a cancelled coroutine); -EDEADLK (every pending one is RUNNING on the
 * calling context, as in weft_future_wait: none could resolve); -EINVAL
 * (fs NULL, n == 0, n > INT32_MAX, a NULL entry, deadline < 0); -ENOMEM.
 */
WEFT_API int weft_future_wait_any(weft_future_t *const *fs, size_t n, weft_time_t deadline);

/*
 * as_completed: an iterator that yields the futures of a set in the order
 * they resolve. It holds a reference to each future until it is freed.
 *
 *   weft_as_completed_t *it;
 *   weft_as_completed_create(&it, fs, n);
 *   weft_future_t *f;
 *   while (weft_as_completed_next(it, &f, deadline) >= 0) { ... } (the index)
 *   weft_as_completed_free(it);
 */
typedef struct weft_as_completed weft_as_completed_t;

/* 0; -EINVAL (out NULL, fs NULL with n > 0, a NULL entry, n > INT32_MAX);
 * -ENOMEM. The same future may appear several times; it is yielded once
 * per appearance. */
WEFT_API int weft_as_completed_create(weft_as_completed_t **out, weft_future_t *const *fs,
                                      size_t n);
/*
 * The next resolved future, in *f (not a new reference: the iterator's own,
 * valid until the iterator is freed), and returns its index in the set
 * (>= 0). -EPIPE when every future was yielded; -ETIMEDOUT; -ECANCELED (a
 * cancelled coroutine); -EINVAL.
 * One thread at a time may call next on one iterator.
 */
WEFT_API int weft_as_completed_next(weft_as_completed_t *it, weft_future_t **f,
                                    weft_time_t deadline);
/* Free the iterator (futures not yet yielded are left alone; their
 * callbacks are removed). Any thread, once; not concurrently with next.
 * 0, -EINVAL. */
WEFT_API int weft_as_completed_free(weft_as_completed_t *it);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_FUTURE_H */
