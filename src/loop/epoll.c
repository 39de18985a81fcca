/*
 * epoll.c - the epoll backend (the default).
 *
 * One epoll instance and one eventfd for cross-thread wake-ups, registered
 * level-triggered with a NULL tag so that poll can tell it from user fds.
 * Deadlines go to epoll_pwait2 (nanoseconds) when the kernel has it, else
 * to epoll_wait rounded UP to whole milliseconds, so that a poll never
 * returns before its deadline and the loop's timers never fire early.
 *
 * Two kinds of registration, tracked per fd in `fds`:
 *
 *  - ONE-SHOT (every arm that is not vouched; backend.h): EPOLLONESHOT,
 *    level-triggered, data.ptr = the caller's data. After a report the fd
 *    stays in the set, disabled; arm re-enables it with EPOLL_CTL_MOD
 *    (falling back to ADD: the number may be a new file, test_close_reuse).
 *    One epoll_ctl per wait.
 *
 *  - EDGE (a vouched arm of an owned socket): EPOLLIN | EPOLLOUT |
 *    EPOLLRDHUP | EPOLLET, registered once and left alone, data.u64 =
 *    TAG_EDGE | fd. The armed directions (`want`) live here, not in the
 *    kernel, so re-arming after each report costs nothing. Why edge- and
 *    not level-triggered: with level, a socket that stays readable while
 *    its coroutine is busy elsewhere (or writable, always, for a reader)
 *    would be reported at every poll, and the only cure is an epoll_ctl to
 *    drop the direction and another to add it back, which is the cost we
 *    are removing. With edges each change of readiness is reported once;
 *    the vouch (the caller saw EAGAIN after the last poll) is what makes
 *    that enough. Readiness reported while no direction is armed means
 *    nobody has waited since the last report: the registration is dropped
 *    (EPOLL_CTL_DEL) and the next vouched arm adds it again, so an fd that
 *    a coroutine stopped waiting on (handed to another loop, say) does not
 *    wake this loop for ever. Registering both directions at once lets a
 *    reader and a writer of one socket share it with no epoll_ctl at all.
 *
 * An EDGE registration stays valid while its epoch (net_support.h) is the
 * fd's current one; a vouch with another epoch means the number may now
 * be another file, and the arm registers again (MOD, else ADD). Its state
 * (armed directions, vouches, a hang-up seen) and what is done with it are
 * owned.h's, shared with the io_uring backend's multishot registrations.
 */
#include "owned.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "../platform/platform.h"

#define MAX_BATCH 256
#define TAG_EDGE (1ull << 63) /* user addresses never have bit 63 set */
#define RW (WEFT__IO_READ | WEFT__IO_WRITE)

enum { M_NONE = 0, M_ONESHOT, M_EDGE };

/* What this backend registered for one fd number. */
struct efd {
    uint8_t mode;           /* M_*: what the kernel holds for this number */
    struct weft__owned own; /* M_EDGE: the registration's state (owned.h) */
};

struct weft__backend {
    int epfd;     /* the epoll instance */
    int evfd;     /* eventfd for wake; registered with data.ptr == NULL */
    bool have_pwait2; /* epoll_pwait2 worked (or has not been tried) */
    struct weft__vouch vouch; /* the pending vouch (owned.h) */
    struct efd *fds;  /* by fd number */
    int nfds;
    struct weft__fdlist pend; /* fds with a hang-up to report at the next poll */
    struct epoll_event buf[MAX_BATCH];
};

static int open_fds(struct weft__backend *b)
{
    b->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (b->epfd < 0)
        return -errno;
    b->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (b->evfd < 0) {
        int e = -errno;
        close(b->epfd);
        return e;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(b->epfd, EPOLL_CTL_ADD, b->evfd, &ev) != 0) {
        int e = -errno;
        close(b->evfd);
        close(b->epfd);
        return e;
    }
    return 0;
}

static int ep_init(struct weft__backend **out)
{
    struct weft__backend *b = calloc(1, sizeof *b);
    if (!b)
        return -ENOMEM;
    int r = open_fds(b);
    if (r) {
        free(b);
        return r;
    }
    b->have_pwait2 = true;
    b->vouch.fd = -1;
    *out = b;
    return 0;
}

static void ep_fini(struct weft__backend *b)
{
    if (!b)
        return;
    if (b->evfd >= 0)
        close(b->evfd);
    if (b->epfd >= 0)
        close(b->epfd);
    free(b->fds);
    weft__fdlist_free(&b->pend);
    free(b);
}

/* The record of fd, growing the table; NULL if fd < 0 or no memory. */
static struct efd *rec(struct weft__backend *b, int fd)
{
    if (fd < 0)
        return NULL;
    if (fd >= b->nfds) {
        int n = b->nfds ? b->nfds : 64;
        while (n <= fd)
            n *= 2;
        struct efd *f = realloc(b->fds, (size_t)n * sizeof *f);
        if (!f)
            return NULL;
        memset(f + b->nfds, 0, (size_t)(n - b->nfds) * sizeof *f);
        b->fds = f;
        b->nfds = n;
    }
    return &b->fds[fd];
}

/* The hang-ups that vouched arms listed (owned.h: weft__owned_hup_pending,
 * which says why), reported at once by the next poll (at most max); the
 * rest stay listed. */
static int take_pending(struct weft__backend *b, struct weft__io_event *out, int max)
{
    int k = 0, i = 0;
    for (; i < b->pend.n && k < max; i++) {
        int fd = b->pend.v[i];
        if (fd < b->nfds && weft__owned_take(&b->fds[fd].own, b->fds[fd].mode == M_EDGE, &out[k]))
            k++;
    }
    weft__fdlist_consume(&b->pend, i);
    return k;
}

/* MOD, or ADD if the number is not in the set (a new file). */
static int ctl_set(struct weft__backend *b, int fd, struct epoll_event *ev)
{
    if (epoll_ctl(b->epfd, EPOLL_CTL_MOD, fd, ev) == 0)
        return 0;
    if (errno == ENOENT && epoll_ctl(b->epfd, EPOLL_CTL_ADD, fd, ev) == 0)
        return 0;
    return -errno;
}

static int ep_arm(struct weft__backend *b, int fd, uint32_t events, void *data)
{
    if (!(events & RW) || !data)
        return -EINVAL;
    events &= RW;
    /* Take the vouch (backend.h): it is for this arm or for none. */
    uint32_t v_epoch;
    uint32_t v = weft__vouch_take(&b->vouch, fd, &v_epoch);
    struct efd *r = fd >= 0 && fd < b->nfds ? &b->fds[fd] : NULL;
    if (v) {
        if (r && r->mode == M_EDGE && weft__owned_serves(&r->own, v_epoch, v, events)) {
            weft__owned_arm(&r->own, events, data); /* the common case: no system call */
            if (r->own.hup & events)
                return weft__owned_hup_pending(&b->pend, &r->own, fd);
            return 0;
        }
        if (!(events & ~v)) {
            /* Vouched now for all it asks, not registered owned (or with
             * another epoch): register, once. */
            struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                                     .data.u64 = TAG_EDGE | (uint64_t)(uint32_t)fd};
            int e = ctl_set(b, fd, &ev);
            if (e)
                return e;
            r = rec(b, fd);
            if (!r) {
                /* Cannot track it: take it out again, fail the arm. */
                epoll_ctl(b->epfd, EPOLL_CTL_DEL, fd, NULL);
                return -ENOMEM;
            }
            *r = (struct efd){.mode = M_EDGE, .own.epoch = v_epoch}; /* no hang-up seen */
            weft__owned_arm(&r->own, events, data);
            return 0;
        }
    }
    /* One-shot, level: also what an EDGE fd becomes when an arm is not
     * vouched for all it asks (it may be ready already). */
    /* EPOLLRDHUP only for a reader: it is reported as READ, so a writer
     * armed with it on a socket whose peer has sent its FIN would be
     * reported, not finished and armed again at every poll. */
    struct epoll_event ev = {.events = EPOLLONESHOT, .data.ptr = data};
    if (events & WEFT__IO_READ)
        ev.events |= EPOLLIN | EPOLLRDHUP;
    if (events & WEFT__IO_WRITE)
        ev.events |= EPOLLOUT;
    int e = ctl_set(b, fd, &ev);
    if (e)
        return e;
    if ((r = rec(b, fd)) != NULL)
        *r = (struct efd){.mode = M_ONESHOT};
    return 0;
}

static int ep_disarm(struct weft__backend *b, int fd)
{
    if (fd >= 0 && fd < b->nfds && b->fds[fd].mode == M_EDGE) {
        /* Owned: filter from now on, keep the registration (the next
         * vouched arm is free; forget removes it before a close). */
        b->fds[fd].own.want = b->fds[fd].own.vouched = 0;
        return 0;
    }
    if (fd >= 0 && fd < b->nfds)
        b->fds[fd].mode = M_NONE;
    if (epoll_ctl(b->epfd, EPOLL_CTL_DEL, fd, NULL) == 0 || errno == ENOENT || errno == EBADF)
        return 0;
    return -errno;
}

static void ep_vouch(struct weft__backend *b, int fd, uint32_t events, uint32_t epoch)
{
    weft__vouch_set(&b->vouch, fd, events, epoch);
}

/*
 * backend.h's arm_owned: the common case without the vouch's round trip
 * through the backend record. The fd's EDGE registration of this epoch
 * holds, every direction asked for is vouched (now, or still from before),
 * no hang-up is pending: store the directions, no system call. Anything
 * else is vouch + arm, which decide the same for this case.
 */
static int ep_arm_owned(struct weft__backend *b, int fd, uint32_t events, uint32_t all,
                        void *data, uint32_t epoch)
{
    if ((unsigned)fd < (unsigned)b->nfds && (events & RW) && all && !(all & ~RW) && data) {
        struct efd *r = &b->fds[fd];
        if (r->mode == M_EDGE && weft__owned_arm_held(&r->own, epoch, events & RW, all, data))
            return 0;
    }
    ep_vouch(b, fd, events, epoch);
    return ep_arm(b, fd, all, data);
}

static int ep_forget(struct weft__backend *b, int fd)
{
    weft__vouch_forget(&b->vouch, fd);
    if (fd >= 0 && fd < b->nfds && b->fds[fd].mode == M_NONE)
        return 0; /* never registered here (or already removed): no system call */
    if (fd >= 0 && fd < b->nfds)
        b->fds[fd] = (struct efd){.mode = M_NONE};
    if (epoll_ctl(b->epfd, EPOLL_CTL_DEL, fd, NULL) == 0 || errno == ENOENT || errno == EBADF)
        return 0;
    return -errno;
}

static uint32_t to_io(uint32_t e)
{
    uint32_t ev = 0;
    if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        ev |= WEFT__IO_READ;
    if (e & (EPOLLOUT | EPOLLHUP | EPOLLERR))
        ev |= WEFT__IO_WRITE;
    if (e & (EPOLLERR | EPOLLHUP))
        ev |= WEFT__IO_ERROR;
    return ev;
}

/* An edge on an owned fd: a report if an armed direction (or an error) is
 * in it, else nothing; with nothing armed at all, drop the registration. */
static bool edge_event(struct weft__backend *b, int fd, uint32_t e, struct weft__io_event *out)
{
    if (fd < 0 || fd >= b->nfds || b->fds[fd].mode != M_EDGE)
        return false; /* forgotten meanwhile (cannot happen within one poll) */
    struct efd *r = &b->fds[fd];
    uint32_t ev = to_io(e);
    weft__owned_hung_up(&r->own, e & EPOLLHUP, e & EPOLLRDHUP);
    if (!r->own.want) {
        epoll_ctl(b->epfd, EPOLL_CTL_DEL, fd, NULL);
        r->mode = M_NONE;
        return false;
    }
    return weft__owned_report(&r->own, ev, out);
}

static int ep_poll(struct weft__backend *b, weft_time_t deadline, struct weft__io_event *out,
                   int max)
{
    if (max > MAX_BATCH)
        max = MAX_BATCH;
    if (max <= 0)
        return -EINVAL;
    if (b->pend.n) {
        int k = take_pending(b, out, max);
        if (k)
            return k; /* at once: the next poll takes what the kernel has */
    }
    /* Wait again for the remainder whenever the wait ended with nothing
     * before the deadline: an EINTR ends it early, and so, on some
     * virtualised kernels seen here, does the timeout itself (by up to a
     * millisecond), and so does an edge that nobody armed for. The contract
     * is that an empty poll means the deadline has passed or a wake came. */
    for (;;) {
        weft_time_t wait_ns = 0;
        if (deadline == WEFT_FOREVER) {
            wait_ns = -1;
        } else if (deadline > 0) {
            weft_time_t now = weft_now();
            wait_ns = deadline > now ? deadline - now : 0;
        }
        int n = -1;
#ifdef __GLIBC__
        if (b->have_pwait2 && wait_ns > 0) {
            struct timespec ts = {.tv_sec = wait_ns / 1000000000, .tv_nsec = wait_ns % 1000000000};
            n = epoll_pwait2(b->epfd, b->buf, max, &ts, NULL);
            if (n < 0 && errno == ENOSYS)
                b->have_pwait2 = false;
        }
#endif
        if (n < 0 && !(b->have_pwait2 && wait_ns > 0)) {
            int ms;
            if (wait_ns < 0)
                ms = -1;
            else if (wait_ns / 1000000 >= 0x7fffffff)
                ms = 0x7fffffff;
            else
                ms = (int)((wait_ns + 999999) / 1000000); /* round up: never early */
            n = epoll_wait(b->epfd, b->buf, max, ms);
        }
        if (n < 0 && errno != EINTR)
            return -errno;
        int k = 0;
        bool woke = false;
        for (int i = 0; i < n; i++) {
            struct epoll_event *e = &b->buf[i];
            if (e->data.u64 & TAG_EDGE) {
                if (edge_event(b, (int)(uint32_t)e->data.u64, e->events, &out[k]))
                    k++;
                continue;
            }
            if (!e->data.ptr) {
                weft__backend_eventfd_drain(b->evfd);
                woke = true;
                continue;
            }
            out[k].data = e->data.ptr;
            out[k].events = to_io(e->events);
            k++;
        }
        if (k > 0 || woke || wait_ns == 0 ||
            (deadline != WEFT_FOREVER && weft_now() >= deadline))
            return k;
    }
}

static void ep_wake(struct weft__backend *b)
{
    weft__backend_eventfd_wake(b->evfd);
}

static int ep_after_fork(struct weft__backend *b)
{
    /* The child shares the parent's epoll set (and eventfd): registrations
     * made in one would show up in the other. Start over. */
    close(b->evfd);
    close(b->epfd);
    b->evfd = b->epfd = -1;
    b->vouch.fd = -1;
    b->pend.n = 0;
    if (b->nfds)
        memset(b->fds, 0, (size_t)b->nfds * sizeof *b->fds);
    return open_fds(b);
}

const struct weft__backend_ops weft__epoll_backend = {
    .name = "epoll",
    .init = ep_init,
    .fini = ep_fini,
    .arm = ep_arm,
    .disarm = ep_disarm,
    .poll = ep_poll,
    .wake = ep_wake,
    .after_fork = ep_after_fork,
    .file_rw = NULL, /* epoll has no file I/O: the loop uses the pool */
    .file_cancel = NULL,
    .vouch = ep_vouch,
    .arm_owned = ep_arm_owned,
    .forget = ep_forget,
};
