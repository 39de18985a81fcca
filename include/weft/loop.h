/*
 * weft/loop.h - the event loop (asyncio's loop): one per thread, running
 * coroutines (weft/co.h) until the main one returns.
 *
 *   Python (asyncio)                  weft
 *   asyncio.run(main())               weft_loop_run(main_fn, arg, &opts)
 *   asyncio.get_running_loop()        weft_loop_current()
 *   loop.call_soon_threadsafe(f, a)   weft_loop_call_soon_threadsafe(loop, f, a)
 *   loop.slow_callback_duration,      opts.slow_ms / WEFT_SLOW_MS (a watchdog
 *     debug mode                        that reports WHILE the coroutine runs)
 *
 * A loop lives on the thread that calls weft_loop_run, for the duration of
 * the call. Its coroutines run only on that thread, one at a time, and
 * switch only at suspension points (yield, sleep, await, a blocking weft
 * call). Other threads reach a loop only through
 * weft_loop_call_soon_threadsafe and through the objects it shares with
 * them (channels, futures, every weft primitive: a coroutine and a thread
 * can meet on the same mutex, event or channel).
 *
 * Memory: a loop is reference counted. weft_loop_run holds one reference
 * while it runs, every task of the loop holds one, and a thread that wants
 * to call into a loop from outside takes its own with weft_loop_retain
 * (typically inside a coroutine, before handing the pointer to the thread)
 * and drops it with weft_loop_release. A loop that has finished running
 * stays valid memory while references remain; calls into it return -EPIPE.
 */
#ifndef WEFT_LOOP_H
#define WEFT_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <weft/error.h>
#include <weft/time.h>
#include <weft/version.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weft_loop weft_loop_t;

/*
 * The body of a coroutine: runs fn(arg, &result). Return 0 (the task's
 * future gets *result, which starts as NULL) or a negative error code (the
 * task fails with it; -ECANCELED makes it cancelled). A positive return
 * counts as 0 (success, with *result). The same shape as a pool task
 * (weft_task_fn).
 */
typedef int (*weft_co_fn)(void *arg, void **result);

/* What the starvation watchdog reports (see weft_loop_opts_t.slow_ms). The
 * strings are valid only during the callback. */
typedef struct weft_loop_slow {
    const char *loop_name; /* the loop's name ("loop" by default) */
    const char *task_name; /* the coroutine that is running right now */
    weft_time_t running_ns; /* how long it has run without yielding (so far) */
} weft_loop_slow_t;

/* Loop statistics. Counters since the loop started. */
typedef struct weft_loop_stats {
    uint64_t tasks_spawned;  /* coroutines spawned (main included) */
    uint64_t tasks_finished; /* ... that have finished (any outcome) */
    uint64_t tasks_failed;   /* ... that finished with an error other than -ECANCELED */
    uint64_t tasks_cancelled; /* ... that finished cancelled (-ECANCELED) */
    uint64_t tasks_live;     /* spawned and not finished */
    uint64_t switches;       /* switches into a coroutine */
    uint64_t io_waits;       /* waits on a file descriptor (weft_co_wait_fd) */
    uint64_t polls;          /* calls into the backend (epoll_wait) */
    uint64_t remote_wakes;   /* coroutines woken from other threads */
    uint64_t callbacks;      /* call_soon_threadsafe functions run */
    uint64_t slow_reports;   /* watchdog reports */
    weft_time_t longest_run_ns; /* the longest a coroutine ran without yielding;
                                   measured only with timing (opts.timing, or the
                                   watchdog on), else 0 */
    char longest_run_task[48];  /* its name (read from another thread while the loop
                                   runs, it may belong to a run just after) */
    uint64_t file_ops;       /* weft_co_file_read/write calls that did I/O */
    uint64_t signals;        /* signals received through the loop's signalfd */
    const char *backend;     /* the backend that ran ("epoll", "io_uring"; static) */
    char backend_note[96];   /* "" or why it is not the one asked for, e.g.
                                "io_uring unavailable (Operation not permitted):
                                using epoll" */
} weft_loop_stats_t;

/* weft_loop_opts_t.sigint. */
#define WEFT_LOOP_SIGINT_AUTO 0 /* on when run on the process's main thread
                                   and SIGINT has its default disposition */
#define WEFT_LOOP_SIGINT_ON 1   /* on (unless another loop already handles it) */
#define WEFT_LOOP_SIGINT_OFF (-1)

/* Options for weft_loop_run. NULL or a zeroed struct gives the defaults. */
typedef struct weft_loop_opts {
    const char *name;       /* shown in reports; copied; NULL = "loop" */
    const char *backend;    /* "epoll" or "uring" (also "io_uring"); NULL =
                               the WEFT_BACKEND variable, else epoll. One not
                               built in (no liburing) or that cannot start here
                               (old kernel, seccomp, the io_uring_disabled
                               sysctl) falls back to epoll: stats.backend says
                               which runs and stats.backend_note why */
    size_t main_stack_size; /* the main coroutine's stack; 0 = default (256 KiB) */
    int slow_ms;            /* starvation watchdog threshold in ms: a report when
                               one coroutine runs longer without yielding. 0 =
                               the WEFT_SLOW_MS variable, or off; < 0 = off */
    void (*on_slow)(const weft_loop_slow_t *info, void *arg);
                            /* the report, called on the watchdog's own thread
                               while the coroutine still runs; NULL = one line
                               on stderr */
    void *on_slow_arg;
    bool timing;            /* measure every run (longest_run_ns) even without
                               the watchdog: two clock reads per switch */
    void (*on_failure)(const char *task_name, int err, void *arg);
                            /* a task nobody awaits (spawned without a handle,
                               outside a group) failed with err (not
                               -ECANCELED); NULL = one line on stderr */
    void *on_failure_arg;
    weft_loop_stats_t *stats; /* if not NULL, filled when the run ends */
    int sigint;             /* asyncio.run's Ctrl-C: WEFT_LOOP_SIGINT_AUTO (0,
                               the default), _ON or _OFF. When on, the first
                               SIGINT cancels the main task (weft_loop_run then
                               returns -EINTR if main returns -ECANCELED) and
                               a second one gets SIGINT's previous disposition
                               (by default: the process ends by SIGINT), even
                               if a coroutine never yields. The previous
                               handler is restored when the run ends. */
} weft_loop_opts_t;

/*
 * asyncio.run: make a loop on the calling thread, run main_fn(arg, &result)
 * as its main coroutine, and run every coroutine until the main one has
 * returned. Then cancel every task that is left (tasks spawned from then on
 * start cancelled and never run), run until they have all finished, run
 * the call_soon_threadsafe functions that were accepted, and close the
 * loop. Detached tasks that failed are reported as they fail (on_failure).
 *
 * SIGINT (opts.sigint, on by default on the main thread as in asyncio.run):
 * the first cancels main, a second interrupts; see weft_loop_opts_t. Any
 * signal handler or signal mask the loop changed is restored when it ends.
 *
 * Returns main_fn's return value (0 or its negative error; -ECANCELED if it
 * was cancelled; -EINTR if a SIGINT cancelled it and it returned
 * -ECANCELED), or, with nothing run: -EINVAL (main_fn NULL), -EBUSY (a
 * loop already runs on this thread: loops do not nest), -ENOMEM, or the
 * backend's error (-EMFILE...). main's result pointer is not returned: let
 * main store what it produces through arg.
 *
 * Any thread may run a loop; several threads may each run one at once.
 */
WEFT_API int weft_loop_run(weft_co_fn main_fn, void *arg, const weft_loop_opts_t *opts);

/* The loop running on the calling thread (borrowed: valid while it runs),
 * or NULL. */
WEFT_API weft_loop_t *weft_loop_current(void);

/* Add / drop a reference (see the memory note above). 0, -EINVAL (NULL). */
WEFT_API int weft_loop_retain(weft_loop_t *loop);
WEFT_API int weft_loop_release(weft_loop_t *loop);

/*
 * Have fn(arg) called on the loop's thread, outside any coroutine, soon
 * (call_soon_threadsafe). Any thread, including the loop's own; functions
 * handed in by one thread run in the order given. fn runs on the loop's
 * thread context: it may spawn coroutines (weft_co_spawn), cancel tasks,
 * resolve futures; it must not block for long (it would block the loop)
 * and cannot suspend. Once accepted (0), fn runs exactly once, even if the
 * loop is finishing.
 * 0; -EINVAL (loop or fn NULL); -EPIPE (the loop has finished: fn never
 * runs); -ENOMEM (fn never runs).
 */
WEFT_API int weft_loop_call_soon_threadsafe(weft_loop_t *loop, void (*fn)(void *arg),
                                            void *arg);

/* A snapshot of the loop's statistics (each counter read atomically). Any
 * thread holding a reference. 0, -EINVAL. */
WEFT_API int weft_loop_stats(weft_loop_t *loop, weft_loop_stats_t *out);

/* The backend the loop uses ("epoll" or "io_uring"), or NULL for a NULL
 * loop. */
WEFT_API const char *weft_loop_backend(const weft_loop_t *loop);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_LOOP_H */
