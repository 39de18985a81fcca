/*
 * weft/co.h - coroutines on an event loop (asyncio's tasks), with
 * cancellation, deadline scopes, shields and task groups.
 *
 *   Python (asyncio)                    weft
 *   asyncio.create_task(coro, name=)    weft_co_spawn(&t, fn, arg, name, stack)
 *   await asyncio.sleep(0)              weft_co_yield()
 *   await asyncio.sleep(s)              weft_co_sleep(s)
 *   await task / task.result()          weft_co_await(t, &result)
 *   await wrap_future(f)                weft_co_await_future(f, &value)
 *   loop.run_in_executor(pool, fn, a)   weft_co_run_in_pool(pool, fn, a, &result)
 *   loop.add_reader(fd) + a future      weft_co_wait_fd(fd, WEFT_IO_READ, deadline)
 *   task.cancel()                       weft_task_cancel(t)
 *   asyncio.shield / cleanup            weft_co_shield_begin / weft_co_scope_end
 *   async with asyncio.timeout(s):      weft_co_scope_begin(&s, weft_deadline_in(s))
 *   async with asyncio.TaskGroup():     weft_co_group_create / _spawn / _wait
 *   loop.add_signal_handler(sig, ...)   weft_co_signal_wait(WEFT_SIGNAL(sig))
 *   aiofiles / run_in_executor(pread)   weft_co_file_read / weft_co_file_write
 *
 * A coroutine runs on one loop's thread and switches only at SUSPENSION
 * POINTS: the weft_co_* calls below that wait (yield, sleep, await, wait_fd,
 * run_in_pool, group_wait) and every blocking call of a weft primitive
 * (mutex, semaphore, event, condition, channel, future, sleep...), which
 * suspends only the calling coroutine: the loop runs others meanwhile, and a
 * thread or a coroutine of another loop may wake it.
 *
 * CANCELLATION is a request recorded on the task (weft_task_cancel) and
 * delivered at suspension points; it is level-triggered, as in Trio: once
 * cancelled, EVERY unshielded weft_co_* suspension point of the task
 * returns -ECANCELED at once, so a cancellation cannot be lost by code that
 * swallows one error. (Awaiting a task or future that has already finished
 * does not wait and is not one: it returns that outcome, as awaiting a done
 * future does in asyncio; nor is a group_wait with no child left.) Shield
 * scopes (weft_co_shield_begin) hold it off for
 * cleanup. The blocking calls of weft's primitives are suspension points
 * too: in a cancelled coroutine a mutex lock, semaphore acquire, condition
 * / event / barrier / latch / wait-group wait, channel send / receive /
 * select, future wait or weft_sleep that must wait returns -ECANCELED,
 * level-triggered as well, leaving the object as a timeout would (see
 * weft/sync.h). (weft_once and thread joins are not interrupted; a
 * finite weft_thread_join_until or pool weft_group_wait_until in a
 * cancelled coroutine ends once early with -ETIMEDOUT: docs/loop.md.)
 *
 * DEADLINE SCOPES cover several operations: every suspension point inside
 * weft_co_scope_begin(&s, deadline) ... weft_co_scope_end(&s) is cut short
 * when the deadline passes (weft_co_* calls return -ETIMEDOUT, level-
 * triggered like cancellation; primitives' finite _until waits return
 * -ETIMEDOUT once, their waits without a deadline are not cut by scopes),
 * and weft_co_scope_end reports -ETIMEDOUT. A
 * cancellation always wins over a timeout (the asyncio.wait_for race):
 * scope_end returns -ECANCELED when the task was cancelled, whether or not
 * the deadline also passed, and the cancellation stays pending.
 *
 * Outside a coroutine (a plain thread, or a loop's call_soon function) the
 * weft_co_* suspension points return -EPERM and do nothing.
 *
 * Memory: a task is reference counted. weft_co_spawn with a non-NULL out
 * hands the caller a reference (release it with weft_task_release, from any
 * thread); the loop holds its own until the task finishes. A task's future
 * (weft_task_future) lives as long as the task. A handle is not used after
 * its last release (the record may already be another task's).
 */
#ifndef WEFT_CO_H
#define WEFT_CO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <weft/error.h>
#include <weft/future.h>
#include <weft/loop.h>
#include <weft/pool.h>
#include <weft/time.h>
#include <weft/version.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weft_task weft_task_t;

/* Readiness for weft_co_wait_fd. */
#define WEFT_IO_READ 0x1u  /* readable (or end of file, hang-up, error) */
#define WEFT_IO_WRITE 0x2u /* writable (or error) */
#define WEFT_IO_ERROR 0x4u /* returned only: error or hang-up on the fd */

/* ---- tasks --------------------------------------------------------------- */

/*
 * Spawn fn(arg, &result) as a coroutine on the calling thread's loop
 * (create_task). It starts PARKED: queued at the end of the run queue, it
 * first runs when the spawner reaches a suspension point (or, from a
 * call_soon function, when that returns). Spawning is O(1), and the stack
 * (stack_size usable bytes, 0 = 256 KiB, at least 16 KiB; mmap'd with a
 * guard page, committed lazily, pooled) is taken only when the task first
 * runs, so a task cancelled before it runs costs no stack. name (NULL =
 * "co#ID") is copied, cut to 47 bytes; it names the task in the
 * watchdog's and the stack-overflow's reports.
 * If out is not NULL it receives a new reference to the task (release it);
 * if it is NULL the task is detached: if it fails, the loop reports it
 * (weft_loop_opts_t.on_failure).
 * A task that cannot get its stack when it first runs finishes with
 * -ENOMEM without running.
 * 0; -EINVAL (fn NULL, stack_size above 1 GiB); -EPERM (no loop runs on
 * this thread: use weft_loop_call_soon_threadsafe to spawn from outside);
 * -ENOMEM. On failure fn never runs and *out is untouched.
 */
WEFT_API int weft_co_spawn(weft_task_t **out, weft_co_fn fn, void *arg, const char *name,
                           size_t stack_size);

/* Add / drop a reference to a task. Any thread. 0, -EINVAL. Using a handle
 * after its last release (awaiting, cancelling, releasing it again) is
 * undefined: task records are reused at once, so the handle may already
 * name another task. */
WEFT_API int weft_task_retain(weft_task_t *t);
WEFT_API int weft_task_release(weft_task_t *t);

/*
 * Ask the task to stop (Task.cancel). It sees -ECANCELED at its next
 * suspension point (at once if it is suspended in an interruptible wait),
 * and from then on at every unshielded one. A task cancelled before it
 * first runs never runs. Cancelling twice is harmless.
 * Any thread (from another thread the request is handed to the loop).
 * 0 (recorded); -EALREADY (the task has finished: nothing changes);
 * -ENOMEM (from another thread: the request could not be queued; nothing
 * changes); -EINVAL (NULL).
 */
WEFT_API int weft_task_cancel(weft_task_t *t);

/* True once the task has finished (any outcome). False for NULL. Any
 * thread. */
WEFT_API bool weft_task_done(const weft_task_t *t);

/*
 * The task's future (borrowed, valid while you hold the task): resolved
 * when the task finishes, with its result, its error, or cancelled.
 * Threads wait for a coroutine with it (weft_future_wait), and it composes
 * with weft_future_wait_any / as_completed. weft_future_cancel on it acts
 * as weft_task_cancel, from any thread: a task not started never runs; a
 * started one (weft_future_cancel says -EBUSY) is cancelled, and a wait
 * it is in ends with -ECANCELED. NULL for NULL.
 */
WEFT_API weft_future_t *weft_task_future(weft_task_t *t);

/* The task's name (valid while you hold the task), "" for NULL. */
WEFT_API const char *weft_task_name(const weft_task_t *t);

/* The task running on the calling thread, or NULL outside a coroutine
 * (borrowed). */
WEFT_API weft_task_t *weft_co_current(void);

/* True if the calling coroutine has been cancelled (whether or not a
 * shield holds the cancellation off). False outside a coroutine. */
WEFT_API bool weft_co_cancelled(void);

/* ---- suspension points ---------------------------------------------------- */

/*
 * Let every other runnable coroutine run once, then continue (sleep(0)).
 * 0; -ECANCELED (cancelled: returns at once, without yielding);
 * -ETIMEDOUT (an enclosing deadline scope has expired); -EPERM (not in a
 * coroutine).
 */
WEFT_API int weft_co_yield(void);

/*
 * Suspend the coroutine for `seconds`, or until the absolute monotonic
 * deadline. 0 once the time has come; -ECANCELED; -ETIMEDOUT (an enclosing
 * scope's deadline came first); -EINVAL (negative or NaN seconds, negative
 * deadline); -EPERM (not in a coroutine: use weft_sleep on a thread).
 * (weft_sleep itself inside a coroutine also suspends only the coroutine,
 * and is cancelled as this is: -ECANCELED.)
 */
WEFT_API int weft_co_sleep(double seconds);
WEFT_API int weft_co_sleep_until(weft_time_t deadline);

/*
 * Wait for a task to finish and get its outcome: the task's value in
 * *result (if result is not NULL), and 0 or the task's error (-ECANCELED if
 * the task was cancelled). The task may belong to another loop.
 * Other returns: -ECANCELED (the caller was cancelled: use
 * weft_co_cancelled() to tell it from a cancelled task); -ETIMEDOUT (the
 * deadline, or an enclosing scope's, came first: the task goes on);
 * -EDEADLK (awaiting itself); -EINVAL (NULL, negative deadline); -EPERM
 * (not in a coroutine: threads use weft_future_wait(weft_task_future(t))).
 */
WEFT_API int weft_co_await(weft_task_t *t, void **result);
WEFT_API int weft_co_await_until(weft_task_t *t, void **result, weft_time_t deadline);

/*
 * Await any weft future (a pool task's, a process's, a promise resolved by
 * a thread) without blocking the loop: the value in *value (if not NULL),
 * and 0 or the future's error. Also -ECANCELED (the caller was cancelled;
 * the future is left alone), -ETIMEDOUT, -EINVAL, -EPERM as for
 * weft_co_await.
 */
WEFT_API int weft_co_await_future(weft_future_t *f, void **value);
WEFT_API int weft_co_await_future_until(weft_future_t *f, void **value,
                                        weft_time_t deadline);

/*
 * run_in_executor: submit fn(arg, &result) to a weft pool (NULL = the
 * default pool) and await it; the loop runs other coroutines meanwhile.
 * Returns the task's outcome as weft_co_await_future does. If the caller
 * is cancelled (or a scope expires) the pool task is cancelled too if it
 * has not started (a running one is asked to stop: weft_task_cancelled())
 * and -ECANCELED (-ETIMEDOUT) returns at once. Also -EPIPE (the pool is
 * shut down), -ENOMEM, -EINVAL (fn NULL), -EPERM.
 */
WEFT_API int weft_co_run_in_pool(weft_pool_t *pool, weft_task_fn fn, void *arg,
                                 void **result);

/*
 * Suspend until fd is ready for any of events (WEFT_IO_READ |
 * WEFT_IO_WRITE), or the deadline (WEFT_FOREVER: none). Returns the ready
 * bits (> 0, possibly with WEFT_IO_ERROR), or -ETIMEDOUT, -ECANCELED,
 * -EINVAL (fd < 0, events empty or unknown, negative deadline), -EBUSY
 * (another coroutine of this loop already waits on fd for one of these
 * directions), -EPERM (not in a coroutine; or the fd does not support
 * readiness, such as a regular file), -EBADF (not an open fd), -ENOMEM.
 * The fd should be non-blocking for the read or write that follows.
 * Closing an fd with close(2) while a coroutine waits on it is undefined at
 * the kernel level (epoll forgets the fd silently): close it with
 * weft_net_close (weft/net.h) on the loop's thread, which wakes the waiter
 * (this call then returns WEFT_IO_ERROR), or wake the waiter first (cancel it).
 */
WEFT_API int weft_co_wait_fd(int fd, unsigned events, weft_time_t deadline);

/* ---- signals ------------------------------------------------------------------ */

/* A set of signals for weft_co_signal_wait: WEFT_SIGNAL(SIGINT) |
 * WEFT_SIGNAL(SIGTERM). Signals 1 to 64. */
#define WEFT_SIGNAL(signo) (UINT64_C(1) << ((signo) - 1))

/*
 * Suspend until one of the signals in `signals` (a WEFT_SIGNAL set) is
 * delivered to the process, or the deadline; returns its number (> 0).
 * Signals go through a signalfd on the loop. The first wait for a signal
 * makes the loop its owner until the run ends: the signal is blocked on
 * the loop's thread, a handler forwards it there from other threads, and
 * one delivery wakes EVERY coroutine of the loop waiting for it; one that
 * arrives while none waits is kept (once, as the kernel keeps a pending
 * signal) for the next wait. When the run ends the previous handlers and
 * the thread's signal mask are restored (a signal kept but never waited
 * for then meets the previous disposition). Awaiting SIGINT turns the
 * loop's built-in SIGINT handling (weft_loop_opts_t.sigint) off.
 * Returns the signal; -ETIMEDOUT; -ECANCELED; -EINVAL (empty set, a
 * signal that cannot be caught or is synchronous: SIGKILL, SIGSTOP,
 * SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, or reserved by the C library;
 * negative deadline); -EBUSY (another loop owns one of the signals, or
 * has SIGINT for its built-in Ctrl-C handling: none
 * of the set is claimed then, and the built-in SIGINT handling stays);
 * -EPERM (not in a coroutine); -EMFILE/-ENFILE/-ENOMEM.
 */
WEFT_API int weft_co_signal_wait(uint64_t signals);
WEFT_API int weft_co_signal_wait_until(uint64_t signals, weft_time_t deadline);

/* ---- regular files ------------------------------------------------------------- */

/*
 * pread / pwrite that do not block the loop: the coroutine suspends while
 * the I/O runs, through io_uring (IORING_OP_READ / WRITE) when the loop's
 * backend is io_uring, else on a thread of the default pool. Reads up to
 * len bytes from fd at offset into buf (write: writes from buf); the file
 * position is not used or changed. Returns the bytes moved (>= 0; short
 * counts as with pread/pwrite, at most 0x7ffff000 per call; 0 at end of
 * file) or a negative errno from the kernel (-EBADF, -EISDIR, -EIO, ...).
 * fd is a regular file or a block device; for pipes and sockets use
 * weft_co_wait_fd (through the pool they give -ESPIPE; through io_uring
 * the offset is ignored).
 * Cancellation and deadlines: -ECANCELED / -ETIMEDOUT (also an enclosing
 * scope's) if the I/O did not happen; the kernel or the pool thread is
 * stopped, or waited for, before the call returns, so buf is never touched
 * after it. If the I/O had already happened its count is returned, and the
 * cancellation is seen at the next suspension point (level-triggered).
 * Also -EINVAL (fd < 0, offset < 0, buf NULL with len > 0, negative
 * deadline); -EPERM (not in a coroutine); -ENOMEM.
 */
WEFT_API int64_t weft_co_file_read(int fd, void *buf, size_t len, int64_t offset);
WEFT_API int64_t weft_co_file_read_until(int fd, void *buf, size_t len, int64_t offset,
                                         weft_time_t deadline);
WEFT_API int64_t weft_co_file_write(int fd, const void *buf, size_t len, int64_t offset);
WEFT_API int64_t weft_co_file_write_until(int fd, const void *buf, size_t len, int64_t offset,
                                          weft_time_t deadline);

/* ---- scopes: deadlines and shields ----------------------------------------- */

/* A scope lives in the coroutine's frame between begin and end; the fields
 * are private. Scopes nest strictly (end the innermost first). */
typedef struct weft_co_scope {
    weft_time_t deadline_;          /* WEFT_FOREVER for none */
    struct weft_co_scope *outer_;   /* the enclosing scope of the task */
    void *task_;                    /* the task that began it */
    uint32_t flags_;                /* shield, expired, delivered */
} weft_co_scope_t;

/*
 * Begin a deadline scope (asyncio.timeout / Trio's fail_after): until
 * weft_co_scope_end, every suspension point of this coroutine is cut short
 * at the deadline (see the header comment). WEFT_FOREVER makes a scope that
 * never expires. 0; -EINVAL (s NULL, deadline < 0); -EPERM (not in a
 * coroutine).
 */
WEFT_API int weft_co_scope_begin(weft_co_scope_t *s, weft_time_t deadline);

/*
 * Begin a shield (asyncio.shield for cleanup code): until the matching
 * weft_co_scope_end, a cancellation of the task and the deadlines of
 * scopes outside the shield are held off (they take effect again after
 * it); scopes begun inside still apply. 0; -EINVAL; -EPERM.
 */
WEFT_API int weft_co_shield_begin(weft_co_scope_t *s);

/*
 * End the innermost scope s. Returns -ECANCELED if the task is cancelled
 * (and no enclosing shield holds that off): a cancellation always wins and
 * stays pending; otherwise -ETIMEDOUT if this scope's deadline cut a
 * suspension point short; otherwise 0. -EINVAL: s NULL, or not the
 * innermost scope of the calling coroutine (nothing changes); -EPERM: not
 * in a coroutine.
 */
WEFT_API int weft_co_scope_end(weft_co_scope_t *s);

/* ---- task groups ------------------------------------------------------------ */

typedef struct weft_co_group weft_co_group_t;

/* Create a group (asyncio.TaskGroup) owned by the calling coroutine's
 * loop. 0; -EINVAL (out NULL); -EPERM (no loop on this thread); -ENOMEM. */
WEFT_API int weft_co_group_create(weft_co_group_t **out);

/*
 * Spawn a child into the group, as weft_co_spawn (out may be NULL). If a
 * child fails (returns an error other than -ECANCELED), every other child
 * is cancelled. 0; -ECANCELED (the group is already cancelling: nothing is
 * spawned); -EPERM (not on the group's loop); -EINVAL; -ENOMEM.
 */
WEFT_API int weft_co_group_spawn(weft_co_group_t *g, weft_task_t **out, weft_co_fn fn,
                                 void *arg, const char *name, size_t stack_size);

/*
 * Wait until every child has finished. Returns the FIRST error a child
 * failed with (children cancelled because of it do not count), or 0. If the
 * waiter is cancelled while it waits, every child is cancelled, the wait
 * still lasts until they have all finished, and -ECANCELED is returned.
 * Children spawned during the wait are waited for too. -ETIMEDOUT: an
 * enclosing deadline scope expired during the wait (the children were
 * cancelled and waited for, as for a cancellation). One coroutine waits at
 * a time: -EBUSY if another is in group_wait on g already. -EDEADLK (the
 * caller is a child of g: it would wait for itself). -EPERM (not a
 * coroutine of the group's loop); -EINVAL (NULL).
 */
WEFT_API int weft_co_group_wait(weft_co_group_t *g);

/* Cancel every child now (the group's error stays as it is). 0, -EINVAL,
 * -EPERM (not on the group's loop). */
WEFT_API int weft_co_group_cancel(weft_co_group_t *g);

/* Free a group whose children have all finished and that no coroutine
 * waits on. 0; -EBUSY (children still run, or a coroutine is still in
 * group_wait, even one already woken that has not run yet: nothing is
 * freed); -EINVAL. */
WEFT_API int weft_co_group_free(weft_co_group_t *g);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_CO_H */
