/*
 * loop/internal.h - the event loop's tasks and loop record.
 *
 * Files: loop.c (run, scheduling, timers, the remote queue, parking ops,
 * the watchdog), task.c (spawn, await, cancel, scopes, groups, fds),
 * backend.h + backend.c (choosing, fallback) + epoll.c + uring.c
 * (readiness, file I/O on io_uring; owned.h: their owned-socket state),
 * signal.c (signalfd waits, Ctrl-C),
 * file.c (weft_co_file_read/write).
 *
 * Who touches what. A loop and its tasks belong to the loop's thread: run
 * queue, timer heap, scopes, cancellation flags and fd watches are plain
 * fields used only there. Other threads touch exactly three things:
 *   - a task's wait_gen (CAS, to claim a suspended task for waking),
 *   - the loop's remote queue (a Treiber stack) with polling and inflight,
 *   - the refcounts and the atomically read statistics / watchdog fields.
 * Task records are TYPE-STABLE: they are never returned to malloc, only to
 * a process-wide free list, so a late (stale) wake from another thread can
 * always CAS a record's wait_gen safely; a generation that only grows per
 * record (gen_counter) makes that CAS fail for every park but the current.
 */
#ifndef WEFT_LOOP_INTERNAL_H
#define WEFT_LOOP_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <weft/co.h>
#include <weft/loop.h>

#include "../co/internal.h"
#include "../future/internal.h"
#include "../park/park.h"
#include "backend.h"

/* A node of the remote queue: a task to make runnable, or a function. */
struct weft__rnode {
    struct weft__rnode *next;
    int kind; /* RN_TASK, RN_CALL */
};
enum { RN_TASK = 1, RN_CALL = 2, RN_SIGINT = 3 /* signal.c: the first SIGINT */ };

/* Why a suspended task was resumed (written by whoever claimed it). */
enum { R_WAKE = 0, R_TIMEOUT = 1, R_CANCEL = 2 };

/* Task states. */
enum { T_NEW = 0, T_RUNNABLE, T_RUNNING, T_SUSPENDED, T_DONE };

/* Wait modes of weft__cotask_wait. */
enum {
    W_CO = 0,    /* a weft_co_* call: -ECANCELED / scope -ETIME, level-triggered */
    W_PRIM = 1,  /* a primitive's park: finite waits interrupted once, -ETIMEDOUT */
    W_NOINTR = 2, /* not interruptible at all (cleanup waits) */
    W_PRIMC = 3   /* a primitive's cancellable park: -ECANCELED, level-triggered;
                     finite waits cut once by an expired scope, -ETIMEDOUT */
};
/* task_wait's code for "an enclosing scope expired" (mapped by callers). */
#define WEFT__SCOPE_EXPIRED (-ETIME)

struct weft_co_group;

struct weft_task {
    struct weft__rnode rnode;    /* link in the loop's remote queue */
    struct weft_task *next;      /* link in the run queue */
    struct weft_task *all_prev, *all_next; /* the loop's list of live tasks */
    struct weft_loop *loop;      /* owner loop (a reference) */
    struct weft__co *co;         /* NULL until it first runs */
    weft_co_fn fn;               /* body */
    void *arg;
    size_t stack_size;
    weft_future_t *fut;          /* resolved when the task finishes (a reference):
                                    &fut_store, embedded, so no malloc per task */
    _Atomic uint32_t refs;       /* the loop's (until done) + handles */
    int state;                   /* T_* */
    int rc;                      /* fn's return, once done */
    void *result;                /* fn's result, once done */
    uint64_t id;                 /* the self id while it runs (mutex owners) */
    /* Parking. */
    _Atomic uint64_t wait_gen;   /* gen of the park it is suspended in and that
                                    nobody has claimed yet; 0 otherwise */
    uint64_t gen_counter;        /* per record, only grows (type-stable) */
    uint64_t timer_gen;          /* the gen its armed timer is for */
    int resume_reason;           /* R_*, written by the claimer */
    bool interruptible;          /* a cancellation may claim the current wait */
    /* Timer (one at a time: the task waits on one thing). */
    weft_time_t timer_at;
    uint64_t timer_seq;          /* FIFO among equal deadlines */
    int32_t heap_idx;            /* index in the loop's heap, -1 if none */
    /* Cancellation. */
    bool cancelled;              /* weft_task_cancel was called */
    bool cancel_prim_delivered;  /* a primitive wait was interrupted for it */
    bool detached;               /* spawned without a handle */
    weft_co_scope_t *scope;      /* innermost scope */
    struct weft_co_group *group; /* the group it belongs to, or NULL */
    struct weft_task *gnext, *gprev; /* in the group's list of running children */
    struct weft_task *free_next; /* in the process-wide free list */
    char name[WEFT__CO_NAME_MAX]; /* written with atomic byte stores (the watchdog
                                     reads it from its own thread) */
    struct weft_future fut_store; /* the task's future; its last release returns
                                     the record to the free list */
};

/* A wait on an fd: one reader and one writer slot per fd and loop. */
struct weft__watch {
    struct weft__fdwait *rd, *wr;
};
struct weft__fdwait {
    struct weft__waiter w;
    uint32_t got;
};

#define LOOP_NAME_MAX 32

struct weft_loop {
    _Atomic uint32_t refs;
    uint32_t reg_id;             /* in the registry of running loops (net_support.c),
                                    never reused; 0 before and after the run */
    char name[LOOP_NAME_MAX];
    const struct weft__backend_ops *bops;
    struct weft__backend *be;
    _Atomic int closed;          /* the run has ended: calls return -EPIPE */
    struct weft__co *sched;      /* the thread context the scheduler runs on */
    struct weft_task *current;   /* the running task, or NULL */
    struct weft_task *runq_head, *runq_tail;
    struct weft_task *turn_end;  /* last task of the running turn, NULL between turns */
    struct weft_task *all_head;  /* live tasks */
    struct weft_task **heap;     /* timer min-heap by (timer_at, timer_seq) */
    uint32_t heap_len, heap_cap;
    uint64_t timer_seq;
    /* Remote queue (Treiber stack; LOOP_CLOSED when closed), the polling
     * flag (the loop is about to sleep in the backend) and the number of
     * remote pushers inside push (the loop waits for 0 before fini). */
    _Atomic(struct weft__rnode *) remote;
    _Atomic uint32_t polling;
    _Atomic uint32_t inflight;
    uint64_t live;               /* tasks not finished */
    struct weft_task *main;
    bool main_done;
    int main_rc;
    struct weft__watch *watch;   /* by fd */
    int nwatch;
    uint64_t armed;              /* waiters on fds */
    uint64_t owner_tid;          /* weft__thread_id of the loop's thread */
    /* Reports. */
    void (*on_failure)(const char *task_name, int err, void *arg);
    void *on_failure_arg;
    /* Statistics: written by the loop's thread only (relaxed), read anywhere. */
    _Atomic uint64_t st_spawned, st_finished, st_failed, st_cancelled, /* switches: turn */
        st_io_waits, st_polls, st_remote_wakes, st_callbacks, st_slow_reports;
    _Atomic int64_t st_longest;
    char longest_name[WEFT__CO_NAME_MAX]; /* written by the loop thread, byte-wise atomics */
    bool timing;
    /* The watchdog: it reads turn/running/run_start from its own thread. */
    _Atomic uint64_t turn;       /* switches into tasks so far */
    _Atomic(struct weft_task *) running;
    _Atomic int64_t run_start;   /* when `running` was switched in (timing only) */
    int slow_ms;
    void (*on_slow)(const weft_loop_slow_t *info, void *arg);
    void *on_slow_arg;
    _Atomic uint32_t wd_stop;
    pthread_t wd_thread;
    bool wd_started;
    /* Backends, signals, file I/O (backend.c, signal.c, file.c). */
    char backend_note[96];       /* why another backend than the one asked for runs */
    struct weft__loop_signals *sig; /* NULL until signals are handled (signal.c) */
    struct weft__rnode sigint_node; /* pushed by the SIGINT handler, once */
    _Atomic uint64_t st_file_ops, st_signals;
};

/* The loop of the calling thread while one runs. */
extern _Thread_local struct weft_loop *weft__loop_tls;

/* loop.c */
void weft__loop_runq_push(struct weft_loop *L, struct weft_task *t);

/* Wake t, suspended in park `gen` on loop L, from L's own thread: every
 * other party that may claim that park (its timer, a cancellation, the
 * task taking itself back) runs on this thread too, and another thread's
 * wake of it can only be a stale one (its CAS expects an older gen), so a
 * load and a store claim it, no locked RMW. Nothing if the park was claimed
 * already. The same-loop wake of co_wake, co_wake_local and fd waits;
 * weft__cotask_claimed_here is its second half, for a caller that has
 * checked wait_gen itself. */
static inline void weft__cotask_claimed_here(struct weft_loop *L, struct weft_task *t)
{
    atomic_store_explicit(&t->wait_gen, 0, memory_order_relaxed);
    t->resume_reason = R_WAKE;
    weft__loop_runq_push(L, t);
}
static inline void weft__cotask_wake_here(struct weft_loop *L, struct weft_task *t, uint64_t gen)
{
    if (atomic_load_explicit(&t->wait_gen, memory_order_relaxed) == gen)
        weft__cotask_claimed_here(L, t);
}
void weft__cotask_enqueue(struct weft_task *t); /* from any thread, task claimed */
int weft__cotask_wait(struct weft_task *t, struct weft__waiter *w, uint32_t expect,
                    weft_time_t deadline, int mode);
void weft__cotask_suspend_yield(struct weft_task *t);
int weft__cotask_cancel_local(struct weft_task *t);
int weft__loop_remote_push(struct weft_loop *L, struct weft__rnode *n);
struct weft_task *weft__cotask_alloc(void);
void weft__cotask_unref(struct weft_task *t);
/* A task's future's on_cancel (task.c): the first weft_future_cancel of
 * the running task's future acts as weft_task_cancel, from any thread. */
void weft__cotask_future_cancelled(weft_future_t *f);
/* How many chunks of task records the process has made (for the tests:
 * they are never freed, so a leak of records shows as growth here). */
size_t weft__cotask_chunks(void);
void weft__loop_unref(struct weft_loop *L);
int weft__cotask_spawn(struct weft_loop *L, struct weft_task **out, weft_co_fn fn, void *arg,
                     const char *name, size_t stack_size, struct weft_co_group *g);
void weft__loop_fd_event(struct weft_loop *L, int fd, uint32_t ev);

/* signal.c (loop thread). start: the built-in SIGINT handling per opts
 * (after main is spawned); stop: undo everything signal.c did on this
 * thread and process (before the backend closes), true if a SIGINT
 * cancelled main; fd_event: true if fd was the loop's signalfd (handled);
 * sigint_event: the RN_SIGINT node came through the remote queue. */
struct weft__loop_signals;
void weft__loop_signals_start(struct weft_loop *L, const weft_loop_opts_t *o);
bool weft__loop_signals_stop(struct weft_loop *L);
bool weft__loop_signal_fd_event(struct weft_loop *L, int fd);
void weft__loop_sigint_event(struct weft_loop *L);

/* task.c: a child of g finished (loop thread). */
void weft__group_child_done(struct weft_co_group *g, struct weft_task *t);

#endif /* WEFT_LOOP_INTERNAL_H */
