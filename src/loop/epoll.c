/*
 * epoll.c - the epoll backend (the default).
 *
 * One epoll instance and one eventfd for cross-thread wake-ups, registered
 * level-triggered with a NULL tag so that poll can tell it from user fds.
 * User fds are registered with EPOLLONESHOT (see backend.h: interest is
 * one-shot): after a report the fd stays in the set, disabled, and arm
 * re-enables it with EPOLL_CTL_MOD (falling back to ADD the first time).
 * Deadlines go to epoll_pwait2 (nanoseconds) when the kernel has it, else
 * to epoll_wait rounded UP to whole milliseconds, so that a poll never
 * returns before its deadline and the loop's timers never fire early.
 */
#include "backend.h"

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

struct weft__backend {
    int epfd;     /* the epoll instance */
    int evfd;     /* eventfd for wake; registered with data.ptr == NULL */
    bool have_pwait2; /* epoll_pwait2 worked (or has not been tried) */
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
    free(b);
}

static int ep_arm(struct weft__backend *b, int fd, uint32_t events, void *data)
{
    if (!(events & (WEFT__IO_READ | WEFT__IO_WRITE)) || !data)
        return -EINVAL;
    struct epoll_event ev = {.events = EPOLLONESHOT | EPOLLRDHUP, .data.ptr = data};
    if (events & WEFT__IO_READ)
        ev.events |= EPOLLIN;
    if (events & WEFT__IO_WRITE)
        ev.events |= EPOLLOUT;
    if (epoll_ctl(b->epfd, EPOLL_CTL_MOD, fd, &ev) == 0)
        return 0;
    if (errno == ENOENT && epoll_ctl(b->epfd, EPOLL_CTL_ADD, fd, &ev) == 0)
        return 0;
    return -errno;
}

static int ep_disarm(struct weft__backend *b, int fd)
{
    if (epoll_ctl(b->epfd, EPOLL_CTL_DEL, fd, NULL) == 0 || errno == ENOENT || errno == EBADF)
        return 0;
    return -errno;
}

static int ep_poll(struct weft__backend *b, weft_time_t deadline, struct weft__io_event *out,
                   int max)
{
    if (max > MAX_BATCH)
        max = MAX_BATCH;
    if (max <= 0)
        return -EINVAL;
    int n;
    /* Wait again for the remainder whenever the wait ended with nothing
     * before the deadline: an EINTR ends it early, and so, on some
     * virtualised kernels seen here, does the timeout itself (by up to a
     * millisecond). The contract is that an empty poll means the deadline
     * has passed. */
    for (;;) {
        weft_time_t wait_ns = 0;
        if (deadline == WEFT_FOREVER) {
            wait_ns = -1;
        } else if (deadline > 0) {
            weft_time_t now = weft_now();
            wait_ns = deadline > now ? deadline - now : 0;
        }
        n = -1;
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
        if (n > 0 || wait_ns == 0 || (deadline != WEFT_FOREVER && weft_now() >= deadline))
            break;
    }
    if (n < 0)
        return 0;
    int k = 0;
    for (int i = 0; i < n; i++) {
        struct epoll_event *e = &b->buf[i];
        if (!e->data.ptr) {
            weft__backend_eventfd_drain(b->evfd);
            continue;
        }
        uint32_t ev = 0;
        if (e->events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
            ev |= WEFT__IO_READ;
        if (e->events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
            ev |= WEFT__IO_WRITE;
        if (e->events & (EPOLLERR | EPOLLHUP))
            ev |= WEFT__IO_ERROR;
        out[k].data = e->data.ptr;
        out[k].events = ev;
        k++;
    }
    return k;
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
};
