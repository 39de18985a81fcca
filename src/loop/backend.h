/*
 * loop/backend.h - the one small interface between the event loop and the
 * kernel's readiness mechanism.
 *
 * A backend watches file descriptors for readiness and sleeps until one is
 * ready, a deadline passes, or another thread wakes it. Each backend is one
 * translation unit (epoll.c; uring.c when liburing is built in) that
 * fills a struct weft__backend_ops; the loop never calls the kernel for
 * readiness itself. The interface follows redis's aeApi* and libuv's
 * uv__io_poll: init, fini, arm, disarm, poll, wake, after-fork.
 *
 * Interest is ONE-SHOT: arm(fd, events, data) asks for one report of
 * whichever of `events` becomes ready; after poll has reported fd, the fd
 * stays registered but reports nothing until it is armed again. Arming an
 * fd that is already armed replaces its events and data. One-shot is what
 * both epoll (EPOLLONESHOT) and io_uring (IORING_OP_POLL_ADD) do natively,
 * and what a loop that wakes one waiter per readiness needs.
 *
 * Callers may close(2) an fd without disarming it once no report is
 * pending for it (weft_co_wait_fd allows that after a wait), and the
 * number may then be reused: arm must register the new file, so a backend
 * may not skip the kernel on arm on the belief that fd is still registered
 * (tests/test_loop_backend.c: test_close_reuse).
 *
 * OWNED fds (vouch / forget) are the exception that makes a busy socket
 * cheap: the sockets of src/net, whose close the loop is told about
 * (weft_net_close calls forget first; a close elsewhere bumps the fd's
 * epoch, see net_support.h). Before such an arm the caller vouches for it:
 * "fd is owned, its epoch is E, and every direction in `events` was seen
 * NOT ready (a system call said EAGAIN) after the last poll". A vouched arm
 * may then be served by a registration that stays in the kernel and
 * reports EDGES (epoll: EPOLLET, one epoll_ctl per connection instead of
 * one per wait; io_uring: a multishot POLL_ADD instead of one SQE per
 * wait). Edge reports are enough for a vouched direction: it was not ready
 * after the last poll, so its becoming ready is an edge that a later poll
 * reports, and no poll runs between the vouch and the arm. Everything the
 * loop sees stays as described above: reports are filtered by the armed
 * directions in the backend (one report, then nothing until armed again),
 * readiness that arrives while nothing is armed is dropped (the next
 * vouched arm has seen EAGAIN after it, so nothing is lost, and an edge
 * comes once, so nothing spins), and an arm that is NOT vouched for every
 * direction it asks (weft_co_wait_fd called directly on a socket, which
 * may be ready already) goes back to the one-shot, level path.
 *
 * Threads: every function except wake is called only by the thread that
 * runs the loop. wake may be called from any thread, at any time between
 * init and fini; the loop makes sure no wake is in flight when it calls
 * fini.
 */
#ifndef WEFT_LOOP_BACKEND_H
#define WEFT_LOOP_BACKEND_H

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <weft/time.h>

/* Readiness bits (the same values as weft_co_wait_fd's). */
#define WEFT__IO_READ 0x1u  /* readable, or the peer hung up, or an error */
#define WEFT__IO_WRITE 0x2u /* writable, or an error */
#define WEFT__IO_ERROR 0x4u /* reported only: error or hang-up on the fd */

/* One readiness report. */
struct weft__io_event {
    void *data;      /* what was given to arm */
    uint32_t events; /* WEFT__IO_* that are ready */
};

struct weft__backend;

/*
 * Optional: positional file I/O that the backend completes itself (io_uring
 * does; epoll cannot, and the loop hands such I/O to the pool). The caller
 * owns the record and keeps it (and the buffer) alive until done has run.
 */
struct weft__file_op {
    void (*done)(struct weft__file_op *op); /* called on the loop's thread, from
                                               poll, once res is set */
    int64_t res; /* bytes moved, or a negative errno */
};

struct weft__backend_ops {
    const char *name; /* "epoll", "io_uring" */
    /* Create a backend. 0 and *out; -ENOMEM, -EMFILE/-ENFILE (no fds),
     * -ENOSYS (the kernel lacks the mechanism: try another backend). */
    int (*init)(struct weft__backend **out);
    /* Release everything init acquired (fds included). */
    void (*fini)(struct weft__backend *b);
    /* Ask for one report when fd is ready for any of events (READ|WRITE),
     * with data. 0; -EINVAL (events empty); -EBADF; -EPERM (the fd does not
     * support readiness, a regular file for instance); -ENOMEM. */
    int (*arm)(struct weft__backend *b, int fd, uint32_t events, void *data);
    /* Forget fd: no report will come for it after this returns (reports
     * already returned by poll are the caller's business). 0 also when fd
     * was not registered, or is already closed. For an owned fd (vouch)
     * the kernel registration may stay: use forget before a close. */
    int (*disarm)(struct weft__backend *b, int fd);
    /*
     * Wait until at least one armed fd is ready, the absolute monotonic
     * deadline passes (0 or any past time: do not wait; WEFT_FOREVER: no
     * deadline), or wake is called. Stores up to max reports in ev and
     * returns their number (0 on timeout or wake), or a negative errno on
     * a failure of the mechanism. A signal does not end the wait early
     * with an error: it returns 0.
     */
    int (*poll)(struct weft__backend *b, weft_time_t deadline, struct weft__io_event *ev,
                int max);
    /* Make a current or the next poll return at once. Any thread;
     * async-signal-safe. Several wakes before a poll count as one. */
    void (*wake)(struct weft__backend *b);
    /* In a child after fork(): drop the kernel objects shared with the
     * parent and make fresh ones; every fd must be armed again. 0 or a
     * negative errno (the backend is then unusable but may be fini'd). */
    int (*after_fork)(struct weft__backend *b);
    /*
     * Optional (NULL: the backend has no file I/O). Start pread (write
     * false) or pwrite of len bytes at offset off on fd into / from buf;
     * op->done runs from a later poll with op->res. Reported by poll as
     * neither a report nor a wake: poll may return 0 after running done.
     * 0 (started: done WILL run); -ENOTSUP (this kernel lacks it: use the
     * pool; done never runs); -ENOMEM (no room to queue it now: the loop
     * hands it to the pool as well).
     */
    int (*file_rw)(struct weft__backend *b, struct weft__file_op *op, bool write, int fd,
                   void *buf, size_t len, int64_t off);
    /* Ask the kernel to stop op early. done still runs exactly once, with
     * -ECANCELED or with what the I/O did before it could be stopped. */
    void (*file_cancel)(struct weft__backend *b, struct weft__file_op *op);
    /*
     * Optional (NULL: every arm is one-shot). Vouch for the NEXT arm, which
     * the caller makes before any other arm or poll: fd is owned, its
     * epoch is `epoch`, and `events` were seen not ready since the last
     * poll (see "OWNED fds" above). fd < 0 drops a vouch no arm used (the
     * caller's arm did not happen). A vouch for another fd than the next
     * arm's is dropped by that arm. The vouch holds, per direction, until
     * that direction is reported or no longer armed.
     */
    void (*vouch)(struct weft__backend *b, int fd, uint32_t events, uint32_t epoch);
    /*
     * Optional (NULL: vouch, then arm). vouch(b, fd, events, epoch)
     * followed by arm(b, fd, all, data) in one call (all: every direction
     * waited on, events among them), with the same result: the fast path
     * of a wait on an owned socket, usually no more than storing `all`.
     */
    int (*arm_owned)(struct weft__backend *b, int fd, uint32_t events, uint32_t all,
                     void *data, uint32_t epoch);
    /*
     * Optional (NULL: use disarm). fd is about to be closed: remove every
     * registration of it, kernel side included, before this returns (an
     * owned fd's registration outlives its waits; disarm only filters).
     * 0 also when nothing was registered.
     */
    int (*forget)(struct weft__backend *b, int fd);
};

/* The backends built in (weft__uring_backend only with WEFT_HAVE_URING). */
extern const struct weft__backend_ops weft__epoll_backend;
#ifdef WEFT_HAVE_URING
extern const struct weft__backend_ops weft__uring_backend;
#endif

/* The backend called `name` ("epoll"; "uring" or "io_uring"), or NULL if
 * no such backend is built in. */
const struct weft__backend_ops *weft__backend_find(const char *name);

/*
 * The backend to use: `name` ("epoll", "uring"; NULL or "" = the
 * WEFT_BACKEND environment variable, else epoll). An unknown name, or one
 * not built in, falls back to epoll. Never NULL.
 */
const struct weft__backend_ops *weft__backend_choose(const char *name);

/*
 * Open the backend chosen for `name` (as weft__backend_choose), falling
 * back to epoll when it cannot start (io_uring: an old kernel, seccomp,
 * the io_uring_disabled sysctl). *ops and *out on success; note (cap
 * bytes) receives "" or one line saying what was asked for and why another
 * backend runs. Returns 0 or the epoll backend's error.
 */
int weft__backend_open(const char *name, const struct weft__backend_ops **ops,
                       struct weft__backend **out, char *note, size_t cap);

/*
 * Can backend `name` run here? 0; or a negative errno with the reason in
 * why (cap bytes): -ENOENT (not built in) or the backend's init error.
 * For tests that must skip a backend the machine lacks.
 */
int weft__backend_probe(const char *name, char *why, size_t cap);

/* The wake eventfd both backends keep: add one to it (from any thread; a
 * saturated counter, EAGAIN, means a wake is pending anyway), and empty it
 * once its readiness has been reported. The fd is non-blocking. */
void weft__backend_eventfd_wake(int fd);
void weft__backend_eventfd_drain(int fd);

/* A growable list of fd numbers, for a backend's deferred work (owned fds
 * with a hang-up to report, io_uring's idle multishots). Zero-initialised
 * is empty. push: 0, or -ENOMEM with the list unchanged. consume drops the
 * first k entries, keeping the order of the rest. */
struct weft__fdlist {
    int *v;
    int n, cap;
};
int weft__fdlist_grow(struct weft__fdlist *l);
static inline int weft__fdlist_push(struct weft__fdlist *l, int fd)
{
    if (l->n == l->cap && weft__fdlist_grow(l) != 0)
        return -ENOMEM;
    l->v[l->n++] = fd;
    return 0;
}
void weft__fdlist_consume(struct weft__fdlist *l, int k);
void weft__fdlist_free(struct weft__fdlist *l);

/* Test hook: when not 0, the io_uring backend's init fails with this
 * (negative) error, as on a kernel without io_uring. */
extern _Atomic int weft__uring_init_fail;
/* Test hook: when not 0, the io_uring backend opens a plain ring (no
 * DEFER_TASKRUN), as on a kernel before 6.1. */
extern _Atomic int weft__uring_plain_ring;

#endif /* WEFT_LOOP_BACKEND_H */
