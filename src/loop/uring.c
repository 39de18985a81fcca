/*
 * uring.c - the io_uring backend (liburing), chosen at run time with
 * opts.backend = "uring" or WEFT_BACKEND=uring. Built only with
 * WEFT_HAVE_URING (liburing found at configure time); otherwise this file
 * is empty and backend.c falls back to epoll.
 *
 * Readiness. backend.h's one-shot arm is IORING_OP_POLL_ADD, which is
 * one-shot by nature: one completion per request. An arm only queues the
 * SQE; the next poll submits the whole batch and waits in the same
 * io_uring_enter, so a turn that re-arms many fds costs one system call
 * (epoll pays one epoll_ctl per arm). Each fd has a small record (gen,
 * armed, data); a request's user_data is POLL_BIT | fd << 32 | gen, and a
 * completion whose gen is not the fd's current one (re-armed, disarmed) is
 * stale and ignored. Re-arming an armed fd queues a POLL_REMOVE for the old
 * request before the new POLL_ADD. disarm submits its POLL_REMOVE at once,
 * so that the kernel drops its reference to the file before the caller
 * closes the fd (a pending poll would otherwise keep a closed socket open).
 *
 * Owned fds (backend.h's vouch): a vouched arm is served by ONE
 * multishot POLL_ADD (IORING_POLL_ADD_MULTI, kernel 5.13) for POLLIN |
 * POLLOUT | POLLRDHUP, which posts a completion at each wake-up of the
 * socket and stays; the armed directions (`want`) are kept here and
 * completions filtered by them, so re-arming after a report queues
 * nothing. Like epoll's EPOLLET these are edges, which the vouch makes
 * enough (see epoll.c), and the state kept per fd (armed directions,
 * vouches, a hang-up seen) and what is done with it are epoll's too:
 * owned.h. A completion without IORING_CQE_F_MORE ends the request (the
 * kernel may do that, e.g. on a full completion queue): if a direction is
 * still armed a new one is queued at once (a POLL_ADD looks at the current
 * readiness first, so nothing between the two is lost).
 * A pending poll holds a reference to the file, so a multishot must not
 * outlive the waits on it: an fd whose armed directions drop to none
 * (reported, or the waiter gave up) is put on the `idle` list, and the
 * next poll removes its request unless somebody armed it again in the
 * meantime (a keep-alive server always has: the coroutine woken by the
 * report runs, reads, writes, and waits again before the next poll).
 * Without multishot (an older kernel) vouches are ignored.
 *
 * Errors that epoll gives at arm time are checked once per fd with fstat
 * (-EBADF; -EPERM for regular files and directories, which cannot be
 * polled): after that the fd is "known" until disarm. An fd closed and
 * reopened as a regular file under the same number without a disarm
 * between is then reported ready at once (regular files always are).
 *
 * Wake-ups from other threads: an eventfd watched by a POLL_ADD with
 * user_data WAKE, drained and re-armed after each report; eventfd writes
 * are async-signal-safe, as backend.h requires.
 *
 * Deadlines: io_uring_submit_and_wait_timeout with a relative timeout
 * computed from the absolute deadline just before entering (the kernel's
 * hrtimer starts later, so the wait never ends early); a wait woken only
 * by stale completions waits again for the rest of the time.
 *
 * File I/O (backend.h's file_rw): IORING_OP_READ / WRITE with the record's
 * address as user_data (user addresses never have bit 63 set, and are
 * never 1 or 2), cancelled with IORING_OP_ASYNC_CANCEL.
 *
 * Ring setup: only the loop's thread touches the ring, so it is made
 * IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN (6.1; plain
 * otherwise): completions' task work runs only inside our own
 * io_uring_enter with GETEVENTS instead of interrupting the thread at each
 * socket wake-up, and the ring fd is registered (5.18) so that each enter
 * skips the fd lookup. On a deferred ring a poll that does not wait enters
 * with GETEVENTS (io_uring_submit_and_get_events), and so does a removal
 * that must drop the file before a close (submit_removal).
 *
 * Fork: the rings are shared memory; the child must not touch the
 * parent's queues. after_fork unmaps and closes the child's copies without
 * submitting anything and builds a fresh ring.
 */
#ifdef WEFT_HAVE_URING

#include "owned.h"

#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "../platform/platform.h"

#define RING_ENTRIES 256
#define UD_WAKE 1ull
#define UD_IGNORE 2ull
#define UD_POLL (1ull << 63)
/* A POLL_REMOVE's own completion: UD_REMOVE | the removed request's
 * user_data without UD_POLL (see queue_remove). */
#define UD_REMOVE (1ull << 62)
#define MAX_RW 0x7ffff000u /* Linux's MAX_RW_COUNT: one read moves at most this */

/* One fd's readiness request. */
struct ufd {
    uint32_t gen; /* the current request's generation (stale ones differ) */
    bool armed;   /* a POLL_ADD with gen is pending */
    bool known;   /* fstat said pollable; cleared by disarm */
    bool multi;   /* owned: the request (if armed) is multishot, own.want filters */
    bool idle_q;  /* on the idle list */
    struct weft__owned own; /* multi: the registration's state (owned.h); own.data
                               also for a one-shot request: what arm was given */
};

struct weft__backend {
    struct io_uring ring;
    bool ring_open;
    int evfd;         /* wake eventfd */
    bool wake_armed;  /* a POLL_ADD on evfd is queued or pending */
    bool have_rw;     /* IORING_OP_READ/WRITE/ASYNC_CANCEL supported */
    bool have_multi;  /* multishot poll (5.13) */
    bool deferred;    /* IORING_SETUP_DEFER_TASKRUN: completions are posted
                         only when we enter with GETEVENTS */
    struct ufd *fds;  /* by fd */
    int nfds;
    struct weft__vouch vouch; /* the pending vouch (owned.h) */
    struct weft__fdlist idle; /* owned fds whose want dropped to 0 (see above) */
    struct weft__fdlist pend; /* owned fds with a hang-up to report at the next poll */
};

#define RW (WEFT__IO_READ | WEFT__IO_WRITE)

static inline uint64_t poll_ud(int fd, uint32_t gen)
{
    return UD_POLL | ((uint64_t)(uint32_t)fd << 32) | gen;
}

static void close_ring(struct weft__backend *b)
{
    if (b->ring_open)
        io_uring_queue_exit(&b->ring);
    b->ring_open = false;
    if (b->evfd >= 0)
        close(b->evfd);
    b->evfd = -1;
}

static int open_ring(struct weft__backend *b)
{
    int f = atomic_load_explicit(&weft__uring_init_fail, memory_order_relaxed);
    if (f)
        return f < 0 ? f : -f;
    /* The loop's thread is the only one that touches the ring (other
     * threads wake it through the eventfd), so the ring can be single
     * issuer, and its completions' task work deferred to our own waits
     * (6.1); older kernels refuse the flags with -EINVAL: plain ring. */
    struct io_uring_params prm = {
        .flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
    };
    int r = atomic_load_explicit(&weft__uring_plain_ring, memory_order_relaxed)
                ? -EINVAL /* the test hook: as a kernel before 6.1 */
                : io_uring_queue_init_params(RING_ENTRIES, &b->ring, &prm);
    b->deferred = r == 0;
    if (r == -EINVAL)
        r = io_uring_queue_init(RING_ENTRIES, &b->ring, 0);
    if (r < 0)
        return r; /* -ENOSYS (old kernel, seccomp), -EPERM (io_uring_disabled), -ENOMEM */
    b->ring_open = true;
    /* Enter by a registered index instead of the fd (5.18; saves the fd
     * lookup of every io_uring_enter). Without it liburing uses the fd. */
    (void)io_uring_register_ring_fd(&b->ring);
    /* The probe itself needs 5.6; POLL_ADD is 5.1, READ/WRITE 5.6. */
    struct io_uring_probe *p = io_uring_get_probe_ring(&b->ring);
    if (!p || !io_uring_opcode_supported(p, IORING_OP_POLL_ADD) ||
        !io_uring_opcode_supported(p, IORING_OP_POLL_REMOVE)) {
        if (p)
            io_uring_free_probe(p);
        close_ring(b);
        return -ENOSYS;
    }
    b->have_rw = io_uring_opcode_supported(p, IORING_OP_READ) &&
                 io_uring_opcode_supported(p, IORING_OP_WRITE) &&
                 io_uring_opcode_supported(p, IORING_OP_ASYNC_CANCEL);
    io_uring_free_probe(p);
    b->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (b->evfd < 0) {
        int e = -errno;
        close_ring(b);
        return e;
    }
    b->wake_armed = false;
    return 0;
}

static int ur_init(struct weft__backend **out)
{
    struct weft__backend *b = calloc(1, sizeof *b);
    if (!b)
        return -ENOMEM;
    b->evfd = -1;
    b->vouch.fd = -1;
    int r = open_ring(b);
    if (r) {
        free(b);
        return r;
    }
    /* No probe bit says whether POLL_ADD takes IORING_POLL_ADD_MULTI: the
     * kernel version does (5.13). */
    struct utsname u;
    int maj = 0, min = 0;
    if (uname(&u) == 0 && sscanf(u.release, "%d.%d", &maj, &min) == 2)
        b->have_multi = maj > 5 || (maj == 5 && min >= 13);
    *out = b;
    return 0;
}

static void ur_fini(struct weft__backend *b)
{
    if (!b)
        return;
    close_ring(b); /* the kernel cancels what is still pending */
    free(b->fds);
    weft__fdlist_free(&b->idle);
    weft__fdlist_free(&b->pend);
    free(b);
}

/* An SQE, submitting the queue to make room if it is full. NULL if even
 * that fails. */
static struct io_uring_sqe *get_sqe(struct weft__backend *b)
{
    struct io_uring_sqe *s = io_uring_get_sqe(&b->ring);
    if (!s) {
        io_uring_submit(&b->ring);
        s = io_uring_get_sqe(&b->ring);
    }
    return s;
}

/* Submit a queued POLL_REMOVE so that the kernel drops the request's
 * reference to the file before the caller closes the fd. On a deferred
 * ring the removed request completes in task work that runs only when we
 * enter with GETEVENTS: a listening socket closed with its poll still
 * pending would go on listening (and accepting) until the next poll. */
static void submit_removal(struct weft__backend *b)
{
    if (b->deferred)
        io_uring_submit_and_get_events(&b->ring);
    else
        io_uring_submit(&b->ring);
}

static int grow(struct weft__backend *b, int fd)
{
    if (fd < b->nfds)
        return 0;
    int n = b->nfds ? b->nfds : 64;
    while (n <= fd)
        n *= 2;
    struct ufd *f = realloc(b->fds, (size_t)n * sizeof *f);
    if (!f)
        return -ENOMEM;
    memset(f + b->nfds, 0, (size_t)(n - b->nfds) * sizeof *f);
    b->fds = f;
    b->nfds = n;
    return 0;
}

/* Queue a POLL_REMOVE of the request with user_data `target`. Its own
 * completion comes back tagged (UD_REMOVE) so that a refusal can be
 * retried: the kernel says -EALREADY while the poll has a wake-up of its
 * own in flight (with DEFER_TASKRUN, until our next wait runs it), and a
 * multishot then re-arms and would hold its file, the socket, open after
 * weft_net_close: the peer never saw the close. */
static void queue_remove(struct weft__backend *b, uint64_t target)
{
    struct io_uring_sqe *s = get_sqe(b);
    if (s) {
        io_uring_prep_poll_remove(s, target);
        s->user_data = UD_REMOVE | (target & ~UD_POLL);
    }
}

/* Queue the removal of fd's pending request; whatever it completes with
 * later is stale. */
static void remove_req(struct weft__backend *b, struct ufd *u, int fd)
{
    if (!u->armed)
        return;
    queue_remove(b, poll_ud(fd, u->gen));
    u->armed = false;
    u->gen++;
}

/* Queue fd's multishot request (owned, both directions). */
static int add_multi(struct weft__backend *b, struct ufd *u, int fd)
{
    struct io_uring_sqe *s = get_sqe(b);
    if (!s)
        return -ENOMEM;
    u->gen++;
    u->armed = true;
    io_uring_prep_poll_multishot(s, fd, POLLIN | POLLOUT | POLLRDHUP);
    s->user_data = poll_ud(fd, u->gen);
    return 0;
}

/* fd's want dropped to 0: its multishot goes at the next poll unless
 * armed again before (see the top of the file). */
static void idle_push(struct weft__backend *b, struct ufd *u, int fd)
{
    if (u->idle_q || !u->armed)
        return;
    if (weft__fdlist_push(&b->idle, fd) != 0) {
        remove_req(b, u, fd); /* no list: remove it now */
        return;
    }
    u->idle_q = true;
}

static void idle_sweep(struct weft__backend *b)
{
    for (int i = 0; i < b->idle.n; i++) {
        int fd = b->idle.v[i];
        if (fd >= b->nfds)
            continue;
        struct ufd *u = &b->fds[fd];
        u->idle_q = false;
        if (u->multi && !u->own.want)
            remove_req(b, u, fd);
    }
    b->idle.n = 0;
}

/* The hang-ups that vouched arms listed (owned.h: weft__owned_hup_pending,
 * which says why a vouched reader must still hear of one), reported at
 * once by the next poll (at most max); the rest stay listed. A reported
 * fd's want is 0: it goes idle. */
static int take_pending(struct weft__backend *b, struct weft__io_event *out, int max)
{
    int k = 0, i = 0;
    for (; i < b->pend.n && k < max; i++) {
        int fd = b->pend.v[i];
        if (fd >= b->nfds)
            continue;
        struct ufd *u = &b->fds[fd];
        if (weft__owned_take(&u->own, u->multi, &out[k])) {
            idle_push(b, u, fd);
            k++;
        }
    }
    weft__fdlist_consume(&b->pend, i);
    return k;
}

static int ur_arm(struct weft__backend *b, int fd, uint32_t events, void *data)
{
    if (!(events & RW) || !data)
        return -EINVAL;
    events &= RW;
    if (fd < 0)
        return -EBADF;
    /* Take the vouch (backend.h): it is for this arm or for none. */
    uint32_t v_epoch;
    uint32_t v = weft__vouch_take(&b->vouch, fd, &v_epoch);
    if (v && fd < b->nfds) {
        struct ufd *u = &b->fds[fd];
        if (u->multi && weft__owned_serves(&u->own, v_epoch, v, events)) {
            /* The common case: nothing to submit, unless the request ended. */
            weft__owned_arm(&u->own, events, data);
            if (u->own.hup & events)
                return weft__owned_hup_pending(&b->pend, &u->own, fd);
            return u->armed ? 0 : add_multi(b, u, fd);
        }
        if (u->own.epoch != v_epoch)
            u->known = false; /* the number may be another file now: check again */
    }
    if (fd >= b->nfds || !b->fds[fd].known) {
        /* Before growing the table: a bad fd number must not size it. */
        struct stat st;
        if (fstat(fd, &st) != 0)
            return -errno;
        if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode))
            return -EPERM; /* as epoll_ctl says for files that cannot be polled */
        int r = grow(b, fd);
        if (r)
            return r;
        b->fds[fd].known = true;
    }
    struct ufd *u = &b->fds[fd];
    remove_req(b, u, fd); /* re-arm: the old request goes first */
    if (v && b->have_multi && !(events & ~v)) {
        u->multi = true;
        u->own.hup = 0; /* a new request looks at the current state itself */
        u->own.epoch = v_epoch;
        weft__owned_arm(&u->own, events, data);
        return add_multi(b, u, fd);
    }
    u->multi = false;
    u->own.want = u->own.vouched = 0;
    struct io_uring_sqe *s = get_sqe(b);
    if (!s)
        return -ENOMEM;
    unsigned mask = 0;
    if (events & WEFT__IO_READ)
        mask |= POLLIN | POLLRDHUP;
    if (events & WEFT__IO_WRITE)
        mask |= POLLOUT;
    u->gen++;
    u->armed = true;
    u->own.data = data;
    io_uring_prep_poll_add(s, fd, mask);
    s->user_data = poll_ud(fd, u->gen);
    return 0;
}

static int ur_disarm(struct weft__backend *b, int fd)
{
    if (fd < 0 || fd >= b->nfds)
        return 0;
    struct ufd *u = &b->fds[fd];
    if (u->multi) {
        /* Owned: filter from now on; the request goes at the next poll
         * unless armed again (forget removes it at once). */
        u->own.want = u->own.vouched = 0;
        idle_push(b, u, fd);
        return 0;
    }
    u->known = false;
    if (!u->armed)
        return 0;
    remove_req(b, u, fd);
    /* Now, not at the next poll: the kernel's reference to the file goes
     * with the request, and the caller may be about to close the fd. */
    submit_removal(b);
    return 0;
}

static void ur_vouch(struct weft__backend *b, int fd, uint32_t events, uint32_t epoch)
{
    if (!b->have_multi)
        return;
    weft__vouch_set(&b->vouch, fd, events, epoch);
}

/* backend.h's arm_owned: the common case first (epoll.c's ep_arm_owned):
 * the fd's multishot of this epoch is pending, every direction asked for
 * is vouched, no hang-up is pending: store the directions, queue nothing.
 * Anything else is vouch + arm, which decide the same for this case. */
static int ur_arm_owned(struct weft__backend *b, int fd, uint32_t events, uint32_t all,
                        void *data, uint32_t epoch)
{
    if ((unsigned)fd < (unsigned)b->nfds && b->have_multi && (events & RW) && all &&
        !(all & ~RW) && data) {
        struct ufd *u = &b->fds[fd];
        if (u->multi && u->armed && weft__owned_arm_held(&u->own, epoch, events & RW, all, data))
            return 0;
    }
    ur_vouch(b, fd, events, epoch);
    return ur_arm(b, fd, all, data);
}

static int ur_forget(struct weft__backend *b, int fd)
{
    weft__vouch_forget(&b->vouch, fd);
    if (fd < 0 || fd >= b->nfds)
        return 0;
    struct ufd *u = &b->fds[fd];
    bool was = u->armed;
    remove_req(b, u, fd);
    u->known = u->multi = false;
    u->own.want = u->own.vouched = u->own.hup = 0;
    if (was)
        submit_removal(b); /* before the close: see ur_disarm */
    return 0;
}

static void arm_wake(struct weft__backend *b)
{
    struct io_uring_sqe *s = get_sqe(b);
    if (!s)
        return; /* retried at the next poll */
    io_uring_prep_poll_add(s, b->evfd, POLLIN);
    s->user_data = UD_WAKE;
    b->wake_armed = true;
}

static uint32_t poll_events(int res)
{
    if (res < 0)
        return WEFT__IO_READ | WEFT__IO_WRITE | WEFT__IO_ERROR;
    uint32_t ev = 0;
    if (res & (POLLIN | POLLRDHUP | POLLHUP | POLLERR))
        ev |= WEFT__IO_READ;
    if (res & (POLLOUT | POLLHUP | POLLERR))
        ev |= WEFT__IO_WRITE;
    if (res & (POLLERR | POLLHUP))
        ev |= WEFT__IO_ERROR;
    return ev;
}

/* Take completions: readiness reports into out (at most max), wake-ups and
 * file I/O completions handled here (*other set). Returns the reports. */
static int reap(struct weft__backend *b, struct weft__io_event *out, int max, bool *other)
{
    unsigned head, seen = 0;
    int k = 0;
    struct io_uring_cqe *cqe;
    io_uring_for_each_cqe(&b->ring, head, cqe)
    {
        uint64_t ud = cqe->user_data;
        if (ud == LIBURING_UDATA_TIMEOUT || ud == UD_IGNORE || ud == 0) {
            seen++;
        } else if ((ud & UD_REMOVE) && !(ud & UD_POLL)) {
            seen++;
            if (cqe->res == -EALREADY) /* its wake-up was in flight: again */
                queue_remove(b, (ud & ~UD_REMOVE) | UD_POLL);
        } else if (ud & UD_POLL) {
            if (k == max)
                break; /* the rest stays for the next poll */
            seen++;
            int fd = (int)((ud >> 32) & 0x7fffffffu);
            uint32_t gen = (uint32_t)ud;
            if (fd >= b->nfds || !b->fds[fd].armed || b->fds[fd].gen != gen)
                continue; /* stale */
            struct ufd *u = &b->fds[fd];
            uint32_t ev = poll_events(cqe->res);
            if (!u->multi) {
                u->armed = false;
                out[k].data = u->own.data;
                out[k].events = ev;
                k++;
                continue;
            }
            /* Owned (multishot): filter by the armed directions. */
            if (!(cqe->flags & IORING_CQE_F_MORE))
                u->armed = false; /* the request ended */
            if (cqe->res > 0)
                weft__owned_hung_up(&u->own, cqe->res & POLLHUP, cqe->res & POLLRDHUP);
            if (cqe->res == -EINVAL) {
                /* The kernel refuses multishot after all: one-shot from now
                 * on. A waiter gets a spurious report and arms again. */
                b->have_multi = false;
                u->multi = false;
                if (u->own.want) {
                    out[k].data = u->own.data;
                    out[k].events = u->own.want;
                    k++;
                }
                u->own.want = u->own.vouched = 0;
                continue;
            }
            if (u->own.want && weft__owned_report(&u->own, ev, &out[k])) {
                k++;
                idle_push(b, u, fd);
            } else if (!u->armed && u->own.want) {
                add_multi(b, u, fd); /* ended while still armed: go on */
            }
        } else if (ud == UD_WAKE) {
            seen++;
            weft__backend_eventfd_drain(b->evfd);
            b->wake_armed = false;
            *other = true;
        } else {
            seen++;
            struct weft__file_op *op = (struct weft__file_op *)(uintptr_t)ud;
            op->res = cqe->res;
            op->done(op); /* finishes a waiter: never re-enters the backend */
            *other = true;
        }
    }
    io_uring_cq_advance(&b->ring, seen);
    return k;
}

static int ur_poll(struct weft__backend *b, weft_time_t deadline, struct weft__io_event *out,
                   int max)
{
    if (max <= 0)
        return -EINVAL;
    if (b->pend.n) {
        int k = take_pending(b, out, max);
        if (k)
            return k; /* at once: the next poll takes what the kernel has */
    }
    if (b->idle.n)
        idle_sweep(b);
    for (;;) {
        if (!b->wake_armed)
            arm_wake(b);
        bool other = false;
        int k = reap(b, out, max, &other);
        if (k > 0 || other) {
            /* Going back with what was there: what is queued goes in now.
             * On a ring without DEFER_TASKRUN completions arrive with any
             * system call of this thread, so a busy loop can find some at
             * every poll; returning without a submit then left new arms
             * (and file I/O) unsubmitted: a readiness never reported. */
            if (!b->deferred && io_uring_sq_ready(&b->ring))
                io_uring_submit(&b->ring);
            return k;
        }
        weft_time_t now = weft_now();
        if (deadline != WEFT_FOREVER && deadline <= now) {
            /* Do not wait: submit what is queued (a poll on a ready fd
             * completes inside the submit) and take what is there. */
            if (b->deferred)
                io_uring_submit_and_get_events(&b->ring);
            else if (io_uring_sq_ready(&b->ring))
                io_uring_submit(&b->ring);
            return reap(b, out, max, &other);
        }
        struct __kernel_timespec ts, *tsp = NULL;
        if (deadline != WEFT_FOREVER) {
            weft_time_t rel = deadline - now;
            ts.tv_sec = rel / 1000000000;
            ts.tv_nsec = rel % 1000000000;
            tsp = &ts;
        }
        struct io_uring_cqe *cqe;
        int r = io_uring_submit_and_wait_timeout(&b->ring, &cqe, 1, tsp, NULL);
        if (r < 0 && r != -ETIME && r != -EINTR && r != -EAGAIN && r != -EBUSY)
            return r;
        /* Something completed (maybe only stale requests), the timeout
         * fired, or a signal came: look again. The top of the loop returns
         * what is there, and returns empty only once the deadline has
         * passed (a timeout can end early on some virtualised kernels, and
         * EINTR does; see the same loop in epoll.c). */
    }
}

static void ur_wake(struct weft__backend *b)
{
    weft__backend_eventfd_wake(b->evfd);
}

static int ur_after_fork(struct weft__backend *b)
{
    /* Unmap and close the child's copies; nothing is submitted on the
     * parent's (shared) queues. Every fd must be armed again. */
    close_ring(b);
    for (int i = 0; i < b->nfds; i++)
        b->fds[i] = (struct ufd){.gen = b->fds[i].gen + 1};
    b->idle.n = 0;
    b->pend.n = 0;
    b->vouch.fd = -1;
    return open_ring(b);
}

static int ur_file_rw(struct weft__backend *b, struct weft__file_op *op, bool write, int fd,
                      void *buf, size_t len, int64_t off)
{
    if (!b->have_rw)
        return -ENOTSUP;
    struct io_uring_sqe *s = get_sqe(b);
    if (!s)
        return -ENOMEM;
    unsigned n = len > MAX_RW ? MAX_RW : (unsigned)len;
    if (write)
        io_uring_prep_write(s, fd, buf, n, (uint64_t)off);
    else
        io_uring_prep_read(s, fd, buf, n, (uint64_t)off);
    s->user_data = (uint64_t)(uintptr_t)op;
    return 0;
}

static void ur_file_cancel(struct weft__backend *b, struct weft__file_op *op)
{
    struct io_uring_sqe *s = get_sqe(b);
    if (!s)
        return; /* the I/O runs to its end; done still runs */
    io_uring_prep_cancel64(s, (uint64_t)(uintptr_t)op, 0);
    s->user_data = UD_IGNORE;
}

const struct weft__backend_ops weft__uring_backend = {
    .name = "io_uring",
    .init = ur_init,
    .fini = ur_fini,
    .arm = ur_arm,
    .disarm = ur_disarm,
    .poll = ur_poll,
    .wake = ur_wake,
    .after_fork = ur_after_fork,
    .file_rw = ur_file_rw,
    .file_cancel = ur_file_cancel,
    .vouch = ur_vouch,
    .arm_owned = ur_arm_owned,
    .forget = ur_forget,
};

#else
/* Without liburing this translation unit is empty (ISO C wants a declaration). */
typedef int weft__uring_not_built;
#endif /* WEFT_HAVE_URING */
