/*
 * weft/proc.h - the process pool (multiprocessing.Pool and
 * concurrent.futures.ProcessPoolExecutor for C).
 *
 *   Python                                   weft
 *   multiprocessing.set_start_method(        weft_proc_init() at the top of main
 *       "forkserver")
 *   ProcessPoolExecutor(max_workers=4,       weft_proc_pool_create(&p, &opts)
 *       initializer=f, max_tasks_per_child)
 *   ex.submit(fn, arg)                       weft_proc_submit(p, fn, &arg, sizeof arg, &fut)
 *   Pool.map(fn, items, chunksize)           weft_proc_map(p, fn, items, size, n, ...)
 *   Pool.imap_unordered(fn, items, cs)       weft_proc_imap_unordered + weft_proc_iter_next
 *   ex.shutdown(wait, cancel_futures)        weft_proc_shutdown(p, WEFT_PROC_WAIT | ...)
 *   BrokenProcessPool after a crash          only the crashed task fails (WEFT_ECRASHED);
 *                                            its worker is replaced, the pool goes on
 *
 * SAFE START. Workers are never forked from a program that already runs
 * threads (the child of such a fork may inherit a lock held by a thread
 * that does not exist in the child, and deadlock in malloc or stdio).
 * Call weft_proc_init() at the top of main, while the program is still
 * single-threaded: it forks a small *fork server*, which stays
 * single-threaded for ever and forks every worker of every pool. Creating a
 * pool calls weft_proc_init() itself if it was not called; that works only
 * while the program is still single-threaded, and returns WEFT_ETHREADED
 * otherwise (threads are counted in /proc/self/task), never a deadlock.
 *
 * PASS DATA, NOT POINTERS. A worker is a copy of the program as it was
 * when weft_proc_init() ran. Function pointers of the program (and of
 * libraries loaded before weft_proc_init) are valid in workers; arguments
 * and results are BYTES, copied from one process to the other. A pointer
 * inside those bytes points into the worker's own memory, not the
 * parent's: the parent's heap is not there (a pointer to something
 * allocated after weft_proc_init is garbage in the worker; reading it may
 * crash the task, which then fails with WEFT_ECRASHED). The same holds for
 * file descriptors: a descriptor opened after weft_proc_init is a number
 * with no file behind it in the worker (EBADF). The exception is memory in
 * a weft_shm region attached to the pool (weft/shm.h): it is mapped at the
 * same address in the parent and in every worker, so pointers into it are
 * valid everywhere.
 *
 * TRANSPORT. Each pool owns one shared-memory file (memfd_create: nothing
 * appears in /dev/shm; it disappears with the last process that maps it).
 * Tasks go through a shared queue that workers claim from with one
 * compare-and-swap each (so a worker killed at any instant leaves no task
 * in doubt); arguments through a shared byte ring; results through one
 * ring per worker. Sleeping and waking use process-shared futexes (workers)
 * and an eventfd (the pool's dispatcher thread); no pipe is on the path of
 * a task. Buffers too large for the rings go through a shared arena of
 * 64 KiB pages, which the caller may also fill directly
 * (weft_proc_buf_alloc) to pass a large argument without copying it.
 *
 * CRASHES. Each pool has a dispatcher thread that hands out work, collects
 * results and learns from the fork server when a worker exits. When a
 * worker dies (a signal such as SIGSEGV, SIGABRT or SIGKILL from outside,
 * or exit() called by a task), the task it was running fails with
 * WEFT_ECRASHED (weft_proc_exit_info tells the signal or exit status), every
 * other task completes normally, and a new worker replaces the dead one.
 * A task that passes its deadline gets its worker killed and replaced and
 * fails with -ETIMEDOUT; weft_proc_cancel can do the same to a running
 * task (-ECANCELED). Workers die with the parent (PR_SET_PDEATHSIG on the
 * fork server and on each worker, plus a check of getppid() while idle);
 * the fork server reaps every worker (no zombies).
 *
 * A task can write over the pool's shared memory (a stray pointer): the
 * parent checks every length, offset and index it reads from a worker's
 * result ring before using it. A malformed result gets its worker killed
 * and replaced, and its task fails with -EBADMSG; the parent does not
 * crash. (A task that overwrites the job table or the queue can still make
 * tasks fail or wait for ever; the pool's private state is not there.)
 *
 * Thread safety: every function may be called from any thread of the
 * parent, except where said. Functions return 0 (or a count) on success and
 * a negative code on failure (weft/error.h).
 */
#ifndef WEFT_PROC_H
#define WEFT_PROC_H

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

struct weft_shm;

/* ---- the fork server ------------------------------------------------------ */

/*
 * Start the fork server. Call it at the top of main, before any thread is
 * started (by you or by a library). Calling it again is harmless (0).
 * Output buffered in stdio is flushed first, so that no worker writes it a
 * second time.
 * 0; WEFT_ETHREADED (the program already runs more than one thread: the
 * server was not started; pools cannot be created); -ENOSYS (/proc is not
 * mounted, or the kernel lacks pidfd support, Linux 5.3); -EAGAIN or
 * -ENOMEM (fork or socketpair failed); -EMFILE / -ENFILE (no descriptor
 * for the socketpair).
 * Main thread only: the server is told to exit when the thread that
 * started it exits (PR_SET_PDEATHSIG follows the thread).
 */
WEFT_API int weft_proc_init(void);

/*
 * Stop the fork server and reap it. 0; -EBUSY (a pool still exists);
 * 0 if it was not running. After this, weft_proc_init may start a new one
 * only if the program is single-threaded again.
 */
WEFT_API int weft_proc_fini(void);

/* The fork server's pid, or 0 if it is not running. Every worker of every
 * pool is its child. */
WEFT_API int weft_proc_server_pid(void);

/* ---- tasks ------------------------------------------------------------------ */

/* What a task receives to hand back its result. Valid during the call. */
typedef struct weft_proc_task weft_proc_task_t;

/*
 * A task, run in a worker process: fn(task, arg, len). arg points to the
 * argument bytes (read-only, aligned to 8 bytes, valid during the call;
 * NULL when len is 0). The task hands back its result with weft_proc_reply
 * or weft_proc_reply_buf (no call: an empty result) and returns 0, or a
 * negative error code with which its future fails (a result handed back is
 * then dropped).
 */
typedef int (*weft_proc_fn)(weft_proc_task_t *task, const void *arg, size_t len);

/*
 * In a task: the result bytes are a copy of data[0..len). Calling it again
 * replaces the result. 0; -EINVAL (task NULL, data NULL with len > 0);
 * -EMSGSIZE (len larger than the pool's arena); -ENOMEM (no space left in
 * the arena for a large result; the task may return that code).
 */
WEFT_API int weft_proc_reply(weft_proc_task_t *task, const void *data, size_t len);

/*
 * In a task: reserve len result bytes and write them in place (no copy on
 * the worker's side): *buf gets the space, aligned to 8 bytes. Errors as
 * weft_proc_reply (*buf is then NULL).
 */
WEFT_API int weft_proc_reply_buf(weft_proc_task_t *task, size_t len, void **buf);

/* The index of the calling worker in its pool (0..workers-1), -1 outside a
 * worker process. */
WEFT_API int weft_proc_worker_index(void);

/*
 * The bytes a process-pool future resolves to: weft_future_get gives a
 * weft_proc_bytes_t * (never NULL on success), owned by the future and freed
 * with it. data is aligned to 16 bytes. weft_proc_result reads it for you.
 */
typedef struct weft_proc_bytes {
    size_t len;              /* number of result bytes */
    size_t reserved_;        /* keeps data 16-aligned */
    unsigned char data[];    /* the bytes (a 0 byte follows them) */
} weft_proc_bytes_t;

/* ---- the pool --------------------------------------------------------------- */

typedef struct weft_proc_pool weft_proc_pool_t;

/* Run once in each worker before its first task (including replacements).
 * Return 0, or a negative code: the worker exits, see WEFT_EINITFAILED. */
typedef int (*weft_proc_init_fn)(const void *arg, size_t len);

/* Options for weft_proc_pool_create. NULL or zeroed means defaults. */
typedef struct weft_proc_opts {
    int workers;                  /* > 0: that many (at most WEFT_PROC_MAX_WORKERS);
                                     0: $WEFT_WORKERS if valid, else weft_cpu_count() */
    weft_proc_init_fn initializer; /* may be NULL */
    const void *init_arg;         /* copied: the initializer's argument bytes */
    size_t init_arg_len;          /* at most 64 KiB */
    uint64_t max_tasks_per_worker; /* 0: unlimited; else a worker exits after
                                     that many tasks (map chunks count as one)
                                     and is replaced (max_tasks_per_child) */
    int64_t task_timeout_ns;      /* 0: none; > 0: default deadline of each
                                     task, counted from its start in a worker */
    size_t ring_size;             /* bytes of the argument ring and of each
                                     result ring; 0: 1 MiB; at least 64 KiB */
    size_t arena_size;            /* bytes of the shared arena for large
                                     buffers; 0: 64 MiB (memory is used only
                                     when touched) */
    struct weft_shm *const *shm;  /* regions mapped in every worker at the
                                     parent's address (weft/shm.h) */
    int nshm;                     /* how many; at most 16 */
    unsigned max_retries;         /* a task (or map chunk) whose worker died
                                     unasked is run again, up to this many
                                     times, before it fails with
                                     WEFT_ECRASHED; 0: never. Tasks killed
                                     by the pool (deadline, cancel) are not
                                     retried. A retried map chunk resumes
                                     after its last item reported. */
} weft_proc_opts_t;

#define WEFT_PROC_MAX_WORKERS 256

/*
 * Create a pool and start its workers; returns once each worker has run its
 * initializer. Starts the fork server if needed (see weft_proc_init).
 * 0; -EINVAL (out NULL, workers < 0 or too many, ring_size below 64 KiB,
 * init_arg_len over 64 KiB, init_arg NULL with a length, nshm out of range or
 * a NULL region, task_timeout_ns < 0); WEFT_ETHREADED; WEFT_EINITFAILED (a
 * worker's initializer failed, crashed or exited: nothing is left
 * running); -EADDRINUSE (a region could not be mapped at its address in a
 * worker); -ENOMEM; -EAGAIN (a process or thread could not be started);
 * -EMFILE / -ENFILE (no descriptor for the pool's sockets); -ECHILD (the
 * fork server is gone).
 */
WEFT_API int weft_proc_pool_create(weft_proc_pool_t **out, const weft_proc_opts_t *opts);

/*
 * Submit fn(arg[0..len)) (Executor.submit). The argument bytes are copied
 * before this returns (arg may be reused at once). *out gets a new future
 * (the caller's reference) that resolves to the result bytes
 * (weft_proc_bytes_t, see weft_proc_result), or fails with the task's error
 * code, WEFT_ECRASHED, -ETIMEDOUT (deadline), -ECANCELED, or -EBADMSG (the
 * worker wrote a malformed result into the pool's memory: it was killed).
 * 0; -EINVAL (pool, fn or out NULL; arg NULL with len > 0); -EPIPE (the
 * pool is shut down); WEFT_EINITFAILED (the pool is broken: a replacement
 * worker's initializer failed); -EMSGSIZE (len larger than the arena);
 * -ENOMEM. On failure fn never runs and *out is untouched.
 */
WEFT_API int weft_proc_submit(weft_proc_pool_t *pool, weft_proc_fn fn, const void *arg,
                              size_t len, weft_future_t **out);

/* Flags of weft_proc_submit_ex. */
enum {
    /* arg is a buffer from weft_proc_buf_alloc of this pool, passed without
     * copying: the pool owns it from now on (also if this fails) and frees
     * it when the task is done. */
    WEFT_PROC_ARG_SHARED = 1,
};

/*
 * weft_proc_submit with a per-task deadline and flags. timeout_ns: 0 takes
 * the pool's default; > 0 this task's limit, counted from its start in a
 * worker; WEFT_PROC_NO_TIMEOUT: none. Errors as weft_proc_submit, and
 * -EINVAL for other negative timeouts, unknown flags, or a SHARED arg that
 * is not a live weft_proc_buf_alloc buffer of this pool or is shorter than
 * len (the buffer is freed then too).
 */
#define WEFT_PROC_NO_TIMEOUT ((int64_t)-1)
WEFT_API int weft_proc_submit_ex(weft_proc_pool_t *pool, weft_proc_fn fn, const void *arg,
                                 size_t len, int64_t timeout_ns, unsigned flags,
                                 weft_future_t **out);

/*
 * A buffer of len bytes in the pool's shared arena, for an argument passed
 * without copying (WEFT_PROC_ARG_SHARED). *buf is 64-byte aligned. Free it
 * with weft_proc_buf_free unless it was submitted. 0; -EINVAL (pool or buf
 * NULL, len 0); -EMSGSIZE (len larger than the arena); -ENOMEM (no room now).
 */
WEFT_API int weft_proc_buf_alloc(weft_proc_pool_t *pool, size_t len, void **buf);
/* 0; -EINVAL (not a live, unsubmitted buffer of this pool). */
WEFT_API int weft_proc_buf_free(weft_proc_pool_t *pool, void *buf);

/*
 * Wait for a process-pool future and read its bytes: *data and *len (either
 * may be NULL) get the result, valid as long as the future. Returns 0 or the
 * future's error code (then *data is NULL and *len 0), or -EINVAL (f NULL).
 */
WEFT_API int weft_proc_result(weft_future_t *f, const void **data, size_t *len);

/*
 * Cancel a task of this pool. A task not yet claimed by a worker is
 * cancelled (its future fails with -ECANCELED, 0 returned). A running task
 * is stopped only if kill_running: its worker is killed (SIGKILL) and
 * replaced, its future fails with -ECANCELED (0); otherwise -EBUSY. The
 * kill never hits another task (the worker claims nothing new while the
 * pool decides); if the task's result was already on its way when the kill
 * landed, the future gets that result although 0 was returned.
 * -EALREADY (already finished, or finished while being cancelled);
 * -ENOENT (not a future of this pool's submissions); -EINVAL (NULL).
 */
WEFT_API int weft_proc_cancel(weft_proc_pool_t *pool, weft_future_t *f, bool kill_running);

/*
 * Map fn over n items of item_size bytes each, items[i] at
 * (char *)items + i * item_size, in chunks of chunksize items
 * (Pool.map(fn, items, chunksize)); 0 picks a chunk size as Python does
 * (n / (4 * workers), at least 1). Blocks until every item is done. The
 * result of item i, which must be exactly result_size bytes, is copied to
 * (char *)results + i * result_size (results may be NULL when result_size
 * is 0: results are then dropped). errors, if not NULL, gets each item's
 * code: 0, the task's error, -EMSGSIZE (wrong result size), WEFT_ECRASHED
 * (its worker died while running its chunk: every item of that chunk not
 * yet reported fails so), -ETIMEDOUT (the chunk passed the pool's task
 * deadline), -ECANCELED (shutdown cancelled it), -EBADMSG (its worker wrote
 * a malformed result for that chunk and was killed).
 * Returns 0 if every item succeeded, else the error of the lowest failed
 * index; -EINVAL (pool or fn NULL, items NULL with n > 0, item_size 0 with
 * n > 0, results NULL with result_size > 0); -EPIPE (shut down);
 * WEFT_EINITFAILED; -EMSGSIZE (a chunk larger than the arena); -EDEADLK
 * (called from a callback run by the pool's dispatcher thread); -ENOMEM.
 * items must stay unchanged until it returns. Not from inside a task.
 */
WEFT_API int weft_proc_map(weft_proc_pool_t *pool, weft_proc_fn fn, const void *items,
                           size_t item_size, size_t n, void *results, size_t result_size,
                           int *errors, size_t chunksize);

/* An iterator over results in the order they complete. */
typedef struct weft_proc_iter weft_proc_iter_t;

/*
 * Start mapping fn over items like weft_proc_map, and return at once with
 * an iterator yielding each item's result as it completes
 * (Pool.imap_unordered). items must stay unchanged until the iterator is
 * freed. Errors as weft_proc_map (without the per-item ones).
 */
WEFT_API int weft_proc_imap_unordered(weft_proc_pool_t *pool, weft_proc_fn fn,
                                      const void *items, size_t item_size, size_t n,
                                      size_t chunksize, weft_proc_iter_t **out);

/*
 * The next completed item: *index gets its index, *err its code (0 or an
 * item error as in weft_proc_map), *data and *len its result bytes (NULL
 * and 0 on error), valid until the next call or weft_proc_iter_free. Any of
 * the out pointers may be NULL. Returns 0 (an item; if its result bytes
 * could not be kept for lack of memory, *err is -ENOMEM and no bytes come
 * with it); -EPIPE (every item was yielded); -ETIMEDOUT; -ENOMEM (not even
 * the item's record could be kept: the item is lost to the iterator);
 * -EINVAL. One thread at a time per iterator.
 */
WEFT_API int weft_proc_iter_next(weft_proc_iter_t *it, size_t *index, int *err,
                                 const void **data, size_t *len, weft_time_t deadline);

/* Free the iterator. Chunks not yet started are cancelled; returns once
 * the running ones are done. 0; -EINVAL. */
WEFT_API int weft_proc_iter_free(weft_proc_iter_t *it);

/* ---- shutting down ------------------------------------------------------------- */

enum {
    WEFT_PROC_WAIT = 1,           /* return once every worker has exited */
    WEFT_PROC_CANCEL_PENDING = 2, /* tasks not yet claimed fail with -ECANCELED */
    WEFT_PROC_TERMINATE = 4,      /* kill running tasks' workers too: their
                                     futures fail with -ECANCELED (implies
                                     CANCEL_PENDING) */
};

/*
 * Stop accepting work (Executor.shutdown). Afterwards submit and map return
 * -EPIPE. Without CANCEL_PENDING every queued task still runs. With WAIT,
 * returns once every future of the pool is resolved and every worker has
 * exited and been reaped (bounded by the tasks still to run, or at once
 * with TERMINATE). Calling it again is harmless and may add flags.
 * 0; -EINVAL (pool NULL, unknown flags); -EDEADLK (WAIT from inside a
 * callback run by the pool's dispatcher thread).
 */
WEFT_API int weft_proc_shutdown(weft_proc_pool_t *pool, unsigned how);

/* Shut down with WAIT (tasks still queued run), stop the dispatcher, free
 * everything. 0; -EINVAL; -EDEADLK (from the dispatcher thread: nothing is
 * freed). Not concurrently with other calls on the same pool; free its
 * iterators first. Futures of the pool stay valid (they own their bytes). */
WEFT_API int weft_proc_pool_free(weft_proc_pool_t *pool);

/* ---- looking inside ------------------------------------------------------------- */

/* Why a worker process ended. */
typedef struct weft_proc_exit {
    int pid;       /* the worker's pid */
    int signal;    /* the signal that killed it, or 0 */
    int exit_code; /* its exit status when signal is 0 */
    int error;     /* what its task got: WEFT_ECRASHED, -ETIMEDOUT (killed at
                      the deadline), -ECANCELED (killed by cancel) or
                      -EBADMSG (killed for a malformed result) */
} weft_proc_exit_t;

/*
 * How the worker that ran f's task ended, for a future that failed with
 * WEFT_ECRASHED, -ETIMEDOUT, -ECANCELED or -EBADMSG because its worker was killed
 * (or whose task was retried after a crash: then the last crash).
 * The pool keeps a reference to each such future (and this record) until
 * it is freed. 0; -ENOENT (f's task did not kill its worker); -EINVAL.
 */
WEFT_API int weft_proc_exit_info(weft_proc_pool_t *pool, const weft_future_t *f,
                                 weft_proc_exit_t *out);

/* The most recent worker death that failed a task (map chunks included).
 * 0; -ENOENT (none yet); -EINVAL. */
WEFT_API int weft_proc_last_exit(weft_proc_pool_t *pool, weft_proc_exit_t *out);

/* Counters of a pool. */
typedef struct weft_proc_stats {
    int workers;          /* configured worker count */
    uint64_t spawned;     /* workers started, replacements included */
    uint64_t crashed;     /* workers that died unasked (signal or exit) */
    uint64_t killed;      /* workers the pool killed (deadline, cancel, terminate) */
    uint64_t retired;     /* workers that exited after max_tasks_per_worker */
    uint64_t tasks_done;  /* jobs finished (a map chunk counts one) */
} weft_proc_stats_t;

/* 0; -EINVAL. */
WEFT_API int weft_proc_stats(weft_proc_pool_t *pool, weft_proc_stats_t *out);

/* Number of workers (the configured count). -EINVAL. */
WEFT_API int weft_proc_workers(weft_proc_pool_t *pool);

/* The pid of worker i now (> 0), 0 if that slot has no live worker at the
 * moment (being replaced), -EINVAL (pool NULL, i out of range). A
 * replacement is named from the moment its process starts, so a task it
 * runs always finds its getpid() here; weft_proc_signal_worker may still
 * say -ESRCH for it for a moment (until the pool holds its pidfd). */
WEFT_API int weft_proc_worker_pid(weft_proc_pool_t *pool, int i);

/* Send signal sig to worker i through its pidfd (never to a recycled pid).
 * 0; -ESRCH (no live worker in that slot); -EINVAL. For tests and tools:
 * the pool treats the worker's death like any other crash. */
WEFT_API int weft_proc_signal_worker(weft_proc_pool_t *pool, int i, int sig);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_PROC_H */
