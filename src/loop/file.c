/*
 * file.c - regular-file reads and writes that do not block the loop
 * (weft_co_file_read / _write): through the backend's file_rw when it has
 * one (io_uring), else on a thread of the default pool.
 *
 * The one rule both paths keep: when the call returns, nobody touches the
 * caller's buffer any more. A wait cut short (cancellation, deadline,
 * scope) therefore stops the I/O first: io_uring gets an ASYNC_CANCEL and
 * the coroutine waits, not interruptibly, for the completion (which comes
 * at once if the request had not started, or when the running read ends);
 * a pool task that has not started is cancelled (it never runs), and one
 * that runs is waited for under a shield. If the I/O happened anyway, its
 * count is returned (the data moved must not be lost); the cancellation is
 * level-triggered and is seen at the next suspension point.
 */
#include "internal.h"

#include <errno.h>
#include <unistd.h>

#include "../platform/platform.h"

#define MAX_RW 0x7ffff000u /* Linux moves at most this per read/write */

static inline int pub(int r)
{
    return r == WEFT__SCOPE_EXPIRED ? -ETIMEDOUT : r;
}

/* A pending cancellation or expired scope, without suspending (as yield). */
static int check_now(struct weft_task *t)
{
    struct weft__waiter w;
    weft__waiter_init(&w);
    atomic_store_explicit(&w.state, WEFT__W_WOKEN, memory_order_relaxed);
    int r = weft__cotask_wait(t, &w, WEFT__W_WAITING, WEFT_FOREVER, W_CO);
    return r < 0 ? pub(r) : 0;
}

/* ---- through the backend (io_uring) ------------------------------------- */

struct bop {
    struct weft__file_op op; /* first: done gets &op */
    struct weft__waiter w;
};

static void bop_done(struct weft__file_op *op)
{
    struct bop *b = (struct bop *)op;
    weft__waiter_finish(&b->w, WEFT__W_WOKEN);
}

static int64_t via_backend(struct weft_task *t, int fd, void *buf, size_t len, int64_t off,
                           bool write, weft_time_t deadline)
{
    struct weft_loop *L = t->loop;
    struct bop b;
    b.op.done = bop_done;
    b.op.res = 0;
    weft__waiter_init(&b.w);
    int r = L->bops->file_rw(L->be, &b.op, write, fd, buf, len, off);
    if (r) /* -ENOTSUP: the caller uses the pool; so does -ENOMEM (no room
              to queue it now), rather than failing a read that can be done */
        return r == -ENOMEM ? -ENOTSUP : r;
    L->armed++; /* busy turns poll the backend too, which submits and reaps */
    for (;;) {
        r = weft__cotask_wait(t, &b.w, WEFT__W_WAITING, deadline, W_CO);
        if (weft__waiter_state(&b.w) != WEFT__W_WAITING || r < 0)
            break;
    }
    if (weft__waiter_state(&b.w) == WEFT__W_WAITING) {
        /* Gave up: stop the kernel, and wait until it is done with buf. */
        L->bops->file_cancel(L->be, &b.op);
        while (weft__waiter_state(&b.w) == WEFT__W_WAITING)
            weft__cotask_wait(t, &b.w, WEFT__W_WAITING, WEFT_FOREVER, W_NOINTR);
    } else {
        r = 0;
    }
    L->armed--;
    if (r < 0 && b.op.res < 0)
        return pub(r); /* nothing moved: the cancellation or the timeout */
    return b.op.res;
}

/* ---- through the pool ------------------------------------------------------- */

struct job {
    int fd;
    bool write;
    void *buf;
    size_t len;
    int64_t off;
    int64_t res;
    bool ran; /* read by the coroutine after the future resolved */
};

static int job_fn(void *arg, void **result)
{
    (void)result;
    struct job *j = arg;
    ssize_t n = j->write ? pwrite(j->fd, j->buf, j->len, (off_t)j->off)
                         : pread(j->fd, j->buf, j->len, (off_t)j->off);
    j->res = n < 0 ? -errno : n;
    j->ran = true;
    return 0;
}

static int64_t via_pool(int fd, void *buf, size_t len, int64_t off, bool write,
                        weft_time_t deadline)
{
    struct job j = {.fd = fd, .write = write, .buf = buf, .len = len, .off = off};
    weft_future_t *f;
    int r = weft_pool_submit(NULL, job_fn, &j, &f);
    if (r)
        return r;
    r = weft_co_await_future_until(f, NULL, deadline);
    if (r < 0 && !weft_future_done(f) && weft_future_cancel(f) != 0) {
        /* It runs (or has just finished): it owns buf until it returns. */
        weft_co_scope_t s;
        weft_co_shield_begin(&s);
        while (!weft_future_done(f))
            weft_co_await_future(f, NULL);
        weft_co_scope_end(&s);
    }
    weft_future_release(f);
    if (j.ran && (r == 0 || j.res >= 0))
        return j.res;
    return r;
}

/* ---- the API ------------------------------------------------------------------- */

static int64_t file_io(int fd, void *buf, size_t len, int64_t off, bool write,
                       weft_time_t deadline)
{
    if (fd < 0 || off < 0 || deadline < 0 || (!buf && len))
        return -EINVAL;
    struct weft_loop *L = weft__loop_tls;
    struct weft_task *t = L ? L->current : NULL;
    if (!t)
        return -EPERM;
    int r = check_now(t);
    if (r)
        return r;
    if (deadline != WEFT_FOREVER && weft_now() >= deadline)
        return -ETIMEDOUT;
    if (len > MAX_RW)
        len = MAX_RW;
    int64_t n = -ENOTSUP;
    if (L->bops->file_rw)
        n = via_backend(t, fd, buf, len, off, write, deadline);
    if (n == -ENOTSUP)
        n = via_pool(fd, buf, len, off, write, deadline);
    /* Counted when it did I/O (loop.h: file_ops), not when it failed or
     * timed out before any. */
    if (n >= 0)
        atomic_store_explicit(&L->st_file_ops,
                              atomic_load_explicit(&L->st_file_ops, memory_order_relaxed) + 1,
                              memory_order_relaxed);
    return n;
}

int64_t weft_co_file_read_until(int fd, void *buf, size_t len, int64_t offset,
                                weft_time_t deadline)
{
    return file_io(fd, buf, len, offset, false, deadline);
}

int64_t weft_co_file_read(int fd, void *buf, size_t len, int64_t offset)
{
    return file_io(fd, buf, len, offset, false, WEFT_FOREVER);
}

int64_t weft_co_file_write_until(int fd, const void *buf, size_t len, int64_t offset,
                                 weft_time_t deadline)
{
    return file_io(fd, (void *)buf, len, offset, true, deadline);
}

int64_t weft_co_file_write(int fd, const void *buf, size_t len, int64_t offset)
{
    return file_io(fd, (void *)buf, len, offset, true, WEFT_FOREVER);
}
