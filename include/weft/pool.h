/*
 * weft/pool.h - the work-stealing thread pool (concurrent.futures'
 * ThreadPoolExecutor, with Cilk/TBB-style fork-join).
 *
 *   Python                                  weft
 *   ThreadPoolExecutor(max_workers=4)       weft_pool_create(&p, &opts) (opts.workers = 4)
 *   ex.submit(fn, arg)                      weft_pool_submit(p, fn, arg, &future)
 *   ex.shutdown(wait, cancel_futures)       weft_pool_shutdown(p, wait, cancel_pending)
 *   with ex: ...                            weft_pool_free(p) at the end
 *   asyncio.TaskGroup / Trio nursery        weft_group_t (fork-join)
 *
 * Each worker owns a Chase-Lev deque. A task spawned or submitted from
 * inside a pool task goes to the spawning worker's own deque (LIFO: the
 * newest, cache-hot task runs next); idle workers steal the oldest tasks of
 * a randomly chosen victim. Submissions from threads outside the pool go
 * through a shared injection queue. Idle workers spin briefly, then park:
 * an idle pool uses no CPU.
 *
 * Parallelism is offered, not promised (as in TBB): a task spawned while
 * every other worker is falling asleep may run on the spawning worker
 * rather than wake one up (waking on every spawn would need a full memory
 * fence per spawn). Every task runs; nothing is ever stranded; but a task
 * that blocks waiting for another task by means other than a future or a
 * group (a mutex, a channel) can hold that other task up when it sits in
 * the blocked worker's own deque. Futures and groups help: a worker that
 * waits on them runs other tasks meanwhile.
 *
 * The pool's size is fixed at creation: resizing a running pool is refused
 * (weft_pool_resize returns -ENOTSUP). Create another pool instead; several
 * pools coexist independently.
 *
 * Every function taking a pool accepts NULL for the process-wide default
 * pool (weft_pool_default), except weft_pool_free and weft_pool_shutdown,
 * which refuse to act on the default pool.
 */
#ifndef WEFT_POOL_H
#define WEFT_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <weft/error.h>
#include <weft/future.h>
#include <weft/time.h>
#include <weft/version.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weft_pool weft_pool_t;

/* Options for weft_pool_create. NULL or a zeroed struct means defaults. */
typedef struct weft_pool_opts {
    int workers;        /* > 0: that many workers (at most WEFT_POOL_MAX_WORKERS);
                           0: $WEFT_WORKERS if it is a valid count, else
                           weft_cpu_count() (affinity and cgroup quota) */
    const char *name;   /* thread name prefix ("weft" if NULL); workers are
                           named "<prefix>-<index>", cut to 15 bytes */
    size_t stack_size;  /* worker stack in bytes; 0 = the system default;
                           otherwise at least 16 KiB */
    bool pin;           /* pin worker i to the i-th CPU of the process's
                           affinity mask (modulo its size) */
} weft_pool_opts_t;

#define WEFT_POOL_MAX_WORKERS 4096

/*
 * A submitted task: runs fn(arg, &result). Return 0 (the future gets
 * *result, which starts as NULL) or a negative error code (the future
 * fails with it; -ECANCELED makes it cancelled).
 */
typedef int (*weft_task_fn)(void *arg, void **result);

/*
 * Create a pool and start its workers (with weft_thread_start: named,
 * sized and pinned through the common thread path). 0; -EINVAL (out NULL,
 * workers < 0 or > WEFT_POOL_MAX_WORKERS, stack_size below 16 KiB, or
 * pin and the kernel refused a CPU of the process's own mask); -ENOMEM;
 * -EAGAIN (the system refused a thread). On failure nothing is left running.
 */
WEFT_API int weft_pool_create(weft_pool_t **out, const weft_pool_opts_t *opts);

/*
 * The process-wide default pool, created on first use with default
 * options; it lives until the process exits and cannot be shut down or
 * freed. NULL only if it could not be created (out of memory or threads);
 * calls given a NULL pool then return -ENOMEM.
 */
WEFT_API weft_pool_t *weft_pool_default(void);

/* Number of workers. -EINVAL is impossible (NULL means the default pool);
 * -ENOMEM if the default pool cannot be created. */
WEFT_API int weft_pool_workers(weft_pool_t *pool);

/* Resizing is not supported: always -ENOTSUP (-EINVAL for n <= 0). */
WEFT_API int weft_pool_resize(weft_pool_t *pool, int n);

/*
 * Submit fn(arg) (Executor.submit). If out is not NULL it receives a new
 * future holding the task's outcome (the caller owns that reference and
 * releases it). out NULL: fire and forget.
 * 0; -EINVAL (fn NULL); -EPIPE (the pool is shut down: the task never
 * runs); -ENOMEM. On failure fn never runs and *out is untouched.
 * Any thread, including the pool's own tasks.
 */
WEFT_API int weft_pool_submit(weft_pool_t *pool, weft_task_fn fn, void *arg,
                              weft_future_t **out);

/*
 * Stop accepting work (Executor.shutdown). Afterwards submit and spawn from
 * outside the pool return -EPIPE; tasks already running may still spawn
 * into their groups (their work completes). With cancel_pending, every
 * task not yet started is cancelled instead of run: its future becomes
 * cancelled, a group task is skipped and its group reports -ECANCELED.
 * Without it, queued tasks all run. With wait, returns once every task has
 * finished and every worker has exited (bounded by the work queued, never
 * by a timer). Calling it again is harmless (a later call may add
 * cancel_pending or wait).
 * 0; -EPERM (the default pool); -EDEADLK (wait from one of the pool's own
 * workers: the shutdown was started but cannot be waited for there);
 * -EINVAL (pool NULL).
 */
WEFT_API int weft_pool_shutdown(weft_pool_t *pool, bool wait, bool cancel_pending);

/*
 * Shut down (wait, without cancelling), join the workers, free the pool.
 * 0; -EINVAL (NULL); -EPERM (the default pool); -EDEADLK (called from one of
 * the pool's workers; nothing is freed). Not concurrently with other calls
 * on the same pool; groups must be finished first.
 */
WEFT_API int weft_pool_free(weft_pool_t *pool);

/* True when called from inside a pool task whose future was asked to
 * cancel or whose group was cancelled: the task should stop early,
 * returning -ECANCELED. False outside pool tasks. */
WEFT_API bool weft_task_cancelled(void);

/* The index of the calling worker in its pool (0..workers-1), or -1 when
 * the caller is not a pool worker. */
WEFT_API int weft_pool_worker_index(void);

/* ------------------------------------------------------------------------ */
/* Task groups: fork-join                                                    */
/* ------------------------------------------------------------------------ */

/*
 * A group counts the tasks spawned into it; weft_group_wait returns when
 * all have finished. Spawning from inside a pool task pushes onto the
 * worker's own deque and allocates nothing (task records come from
 * per-worker free lists), so spawning a task per call of a recursive
 * function is affordable:
 *
 *   static int fib(void *p) {
 *       struct fib *a = p;
 *       if (a->n < 2) { a->r = a->n; return 0; }
 *       struct fib x = {a->n - 1}, y = {a->n - 2};
 *       weft_group_t g;
 *       weft_group_init(&g, NULL);
 *       weft_group_spawn(&g, fib, &x);
 *       fib(&y);
 *       weft_group_wait(&g);
 *       a->r = x.r + y.r;
 *       return 0;
 *   }
 *
 * Waiting inside a pool task never blocks the worker while it can help:
 * it runs tasks (its own deque first, then stolen ones) until the group is
 * done, so nested fork-join never deadlocks. Waiting from outside the pool
 * parks after a short spin.
 *
 * Errors: the first task to return a negative code sets the group's error
 * and cancels the group (like asyncio.TaskGroup): tasks not yet started are
 * skipped, running ones see weft_task_cancelled(). weft_group_cancel does
 * the same without an error. weft_group_wait returns the first error, else
 * -ECANCELED if the group was cancelled, else 0; the outcome stays until
 * weft_group_init is called again.
 *
 * Memory: the caller owns the struct (stack is fine) and must keep it alive
 * until weft_group_wait has returned 0-or-an-error with nothing pending
 * (a wait_until that timed out does not count). The fields are private.
 * Spawn may be called from any thread; while a wait is in progress, only
 * tasks of the group itself may spawn into it.
 */
typedef struct weft_group {
    void *pool;       /* private: the pool tasks go to */
    uint64_t word;    /* private: pending tasks and waiter bits */
    int32_t err;      /* private: first error */
    uint32_t flags;   /* private: cancelled */
} weft_group_t;

/* Initialise g for the pool (NULL: the calling worker's pool when called
 * from a pool task, else the default pool). 0; -EINVAL (g NULL); -ENOMEM
 * (the default pool could not be created). */
WEFT_API int weft_group_init(weft_group_t *g, weft_pool_t *pool);

/* Spawn fn(arg) into the group. 0; -EINVAL (g or fn NULL); -EPIPE (the pool
 * is shut down and the caller is not one of its tasks); -ENOMEM. If the
 * group is already cancelled the task is still accepted and skipped. */
WEFT_API int weft_group_spawn(weft_group_t *g, int (*fn)(void *arg), void *arg);

/* Wait for every task of the group (helping, inside a pool task). Returns
 * the group's outcome (see above), -EINVAL (g NULL, deadline < 0),
 * -ETIMEDOUT (_until only; tasks are still pending: wait again before
 * letting g go). */
WEFT_API int weft_group_wait(weft_group_t *g);
WEFT_API int weft_group_wait_until(weft_group_t *g, weft_time_t deadline);

/* Cancel the group's tasks not yet started. Cancelling twice is harmless.
 * 0, -EINVAL. */
WEFT_API int weft_group_cancel(weft_group_t *g);
/* True once the group was cancelled (by weft_group_cancel or an error). */
WEFT_API bool weft_group_cancelled(const weft_group_t *g);
/* Tasks spawned and not yet finished (a snapshot). -EINVAL for NULL. */
WEFT_API int64_t weft_group_pending(const weft_group_t *g);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_POOL_H */
