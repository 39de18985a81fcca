/*
 * test_loop_file.c - weft_co_file_read / _write (pread / pwrite that do
 * not block the loop), through io_uring or the pool depending on the
 * backend (ctest runs this once per backend): contents at offsets, end of
 * file, many coroutines at once while the loop keeps turning, errors, bad
 * input, cancellation and deadlines that never lie about the file, no fd
 * leaks.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>
#include <weft.h>

#include "co_check.h"

static const char *backend;

static int tmpfile_fd(void)
{
    char path[] = "/tmp/weft-file-XXXXXX";
    int fd = mkstemp(path);
    if (fd >= 0)
        unlink(path);
    return fd;
}

/* ---- contents, offsets, end of file -------------------------------------- */

static int main_basic(void *arg, void **result)
{
    (void)result;
    int fd = *(int *)arg;
    CHECK_INT(weft_co_file_write(fd, "hello, world", 12, 0), ==, 12);
    CHECK_INT(weft_co_file_write(fd, "WORLD", 5, 7), ==, 5);
    char buf[64] = {0};
    CHECK_INT(weft_co_file_read(fd, buf, sizeof buf, 0), ==, 12); /* short: EOF */
    CHECK(memcmp(buf, "hello, WORLD", 12) == 0);
    CHECK_INT(weft_co_file_read(fd, buf, 4, 7), ==, 4);
    CHECK(memcmp(buf, "WORL", 4) == 0);
    CHECK_INT(weft_co_file_read(fd, buf, 4, 12), ==, 0); /* at EOF */
    CHECK_INT(weft_co_file_read(fd, buf, 0, 0), ==, 0);
    CHECK_INT(lseek(fd, 0, SEEK_CUR), ==, 0); /* the position is not used */
    CHECK_INT(weft_co_file_read_until(fd, buf, 5, 0, weft_deadline_in(10)), ==, 5);
    CHECK_INT(weft_co_file_write_until(fd, "!", 1, 12, weft_deadline_in(10)), ==, 1);
    CHECK_INT(weft_co_file_read(fd, buf, 64, 0), ==, 13);
    /* Errors from the kernel. */
    int dfd = open("/tmp", O_RDONLY | O_DIRECTORY);
    CHECK_RC(weft_co_file_read(dfd, buf, 4, 0), -EISDIR);
    close(dfd);
    int wfd = open("/dev/null", O_WRONLY);
    CHECK_RC(weft_co_file_read(wfd, buf, 4, 0), -EBADF); /* not open for reading */
    close(wfd);
    CHECK_RC(weft_co_file_read(1000000, buf, 4, 0), -EBADF);
    /* Bad input. */
    CHECK_RC(weft_co_file_read(-1, buf, 4, 0), -EINVAL);
    CHECK_RC(weft_co_file_read(fd, buf, 4, -1), -EINVAL);
    CHECK_RC(weft_co_file_read(fd, NULL, 4, 0), -EINVAL);
    CHECK_RC(weft_co_file_write_until(fd, buf, 4, 0, -5), -EINVAL);
    CHECK_RC(weft_co_file_read_until(fd, buf, 4, 0, weft_now() - 1), -ETIMEDOUT);
    CHECK_INT(weft_co_file_read(fd, buf, 64, 0), ==, 13); /* unchanged */
    return 0;
}

static void test_basic(void)
{
    int fd = tmpfile_fd();
    CHECK_INT(fd, >=, 0);
    weft_loop_stats_t st;
    weft_loop_opts_t o = {.stats = &st};
    CHECK_OK(weft_loop_run(main_basic, &fd, &o));
    CHECK(strcmp(st.backend, backend) == 0);
    CHECK_U64(st.file_ops, >=, 10);
    char buf[4];
    CHECK_RC(weft_co_file_read(fd, buf, 4, 0), -EPERM); /* not in a coroutine */
    close(fd);
}

/* ---- many at once; the loop keeps turning ------------------------------------- */

#define BLOCK 4096
struct many {
    int fd;
    int nblocks;
    int readers;
    _Atomic long ok;       /* blocks read back and checked */
    _Atomic long ticks;    /* a ticker's turns while I/O runs */
    bool stop;
};

static void fill(unsigned char *b, int block)
{
    for (int i = 0; i < BLOCK; i++)
        b[i] = (unsigned char)(block * 31 + i * 7);
}

static int writer(void *arg, void **result)
{
    (void)result;
    struct many *m = arg;
    unsigned char b[BLOCK];
    for (int k = 0; k < m->nblocks; k++) {
        fill(b, k);
        int64_t n = weft_co_file_write(m->fd, b, BLOCK, (int64_t)k * BLOCK);
        if (n != BLOCK)
            return n < 0 ? (int)n : -EIO;
    }
    return 0;
}

struct reader_arg {
    struct many *m;
    int id;
};

static int reader(void *arg, void **result)
{
    (void)result;
    struct reader_arg *a = arg;
    struct many *m = a->m;
    unsigned char b[BLOCK], want[BLOCK];
    for (int k = a->id; k < m->nblocks; k += m->readers) {
        int64_t n = weft_co_file_read(m->fd, b, BLOCK, (int64_t)k * BLOCK);
        CHECK_INT(n, ==, BLOCK);
        fill(want, k);
        if (n == BLOCK && memcmp(b, want, BLOCK) == 0)
            atomic_fetch_add(&m->ok, 1);
    }
    return 0;
}

static int ticker(void *arg, void **result)
{
    (void)result;
    struct many *m = arg;
    while (!m->stop && weft_co_yield() == 0)
        atomic_fetch_add(&m->ticks, 1);
    return 0;
}

static int main_many(void *arg, void **result)
{
    (void)result;
    struct many *m = arg;
    weft_task_t *w, *tk;
    CHECK_OK(weft_co_spawn(&w, writer, m, "writer", 0));
    CHECK_OK(weft_co_await(w, NULL));
    weft_task_release(w);
    CHECK_OK(weft_co_spawn(&tk, ticker, m, "ticker", 0));
    weft_co_group_t *g;
    CHECK_OK(weft_co_group_create(&g));
    struct reader_arg ra[64];
    for (int i = 0; i < m->readers; i++) {
        ra[i] = (struct reader_arg){m, i};
        CHECK_OK(weft_co_group_spawn(g, NULL, reader, &ra[i], "reader", 0));
    }
    CHECK_OK(weft_co_group_wait(g));
    weft_co_group_free(g);
    m->stop = true;
    CHECK_OK(weft_co_await(tk, NULL));
    weft_task_release(tk);
    return 0;
}

static void test_many(void)
{
    struct many m = {.fd = tmpfile_fd(), .readers = 32};
    m.nblocks = (int)check_iters("LOOP_FILE_BLOCKS", 1024);
    CHECK_INT(m.fd, >=, 0);
    CHECK_OK(weft_loop_run(main_many, &m, NULL));
    CHECK_INT(atomic_load(&m.ok), ==, m.nblocks); /* every block exactly once */
    CHECK_INT(atomic_load(&m.ticks), >, 0);       /* the loop was not blocked */
    close(m.fd);
}

/* ---- cancellation and deadlines never lie about the file -------------------------- */

static weft_event_t gate;

static _Atomic int blockers_running;

static int blocker(void *arg, void **result)
{
    (void)arg;
    (void)result;
    atomic_fetch_add(&blockers_running, 1);
    weft_event_wait(&gate);
    return 0;
}

struct cw {
    int fd;
    int64_t r;
};

static int cancelled_writer(void *arg, void **result)
{
    (void)result;
    struct cw *c = arg;
    c->r = weft_co_file_write(c->fd, "XXXX", 4, 0);
    return 0;
}

static int main_cancel(void *arg, void **result)
{
    (void)result;
    int fd = *(int *)arg;
    char buf[8];
    /* Cancelled before the call: nothing happens. */
    struct cw c1 = {fd, 0};
    weft_task_t *t;
    CHECK_OK(weft_co_spawn(&t, cancelled_writer, &c1, "w1", 0));
    CHECK_OK(weft_task_cancel(t)); /* before it runs: it never runs */
    weft_co_await(t, NULL);
    weft_task_release(t);
    CHECK_INT(weft_co_file_read(fd, buf, 4, 0), ==, 4);
    CHECK(memcmp(buf, "aaaa", 4) == 0);

    /* Cancelled while the I/O is queued or running: the result says what
     * the file got. With the pool, the default pool's workers are kept busy
     * so the write is still queued: it must never run. */
    int workers = weft_pool_workers(NULL);
    weft_future_t *busy[64];
    if (strcmp(backend, "epoll") == 0) {
        atomic_store(&blockers_running, 0);
        for (int i = 0; i < workers && i < 64; i++)
            CHECK_OK(weft_pool_submit(NULL, blocker, NULL, &busy[i]));
        /* Submitted is not running: a worker may take several blockers at
         * once and leave another free to run the write. Wait until every
         * worker is inside a blocker. */
        while (atomic_load(&blockers_running) < (workers < 64 ? workers : 64))
            CHECK_OK(weft_co_sleep(0.0005));
    }
    struct cw c2 = {fd, 0};
    CHECK_OK(weft_co_spawn(&t, cancelled_writer, &c2, "w2", 0));
    CHECK_OK(weft_co_yield()); /* it has started its write and waits */
    CHECK_OK(weft_task_cancel(t));
    weft_co_await(t, NULL);
    weft_task_release(t);
    if (strcmp(backend, "epoll") == 0) {
        weft_event_set(&gate);
        for (int i = 0; i < workers && i < 64; i++) {
            CHECK_OK(weft_co_await_future(busy[i], NULL));
            weft_future_release(busy[i]);
        }
        CHECK_RC(c2.r, -ECANCELED);
    }
    CHECK_INT(weft_co_file_read(fd, buf, 4, 0), ==, 4);
    if (c2.r == 4)
        CHECK(memcmp(buf, "XXXX", 4) == 0);
    else {
        CHECK_RC(c2.r, -ECANCELED);
        CHECK(memcmp(buf, "aaaa", 4) == 0);
    }
    return 0;
}

static void test_cancel(void)
{
    int fd = tmpfile_fd();
    CHECK_INT(fd, >=, 0);
    CHECK_INT(pwrite(fd, "aaaa", 4, 0), ==, 4);
    weft_event_init(&gate);
    CHECK_OK(weft_loop_run(main_cancel, &fd, NULL));
    weft_event_destroy(&gate);
    close(fd);
}

/* io_uring only: a read that cannot complete (an empty pipe: io_uring
 * waits for data) is cancelled in flight; the buffer is never written
 * after the call returns, and the data stays in the pipe. */
static int main_inflight(void *arg, void **result)
{
    (void)result;
    int *p = arg;
    char buf[4] = {'-', '-', '-', '-'};
    CHECK_RC(weft_co_file_read_until(p[0], buf, 4, 0, weft_deadline_in_ms(20)), -ETIMEDOUT);
    CHECK_INT(write(p[1], "data", 4), ==, 4);
    CHECK_OK(weft_co_sleep(0.01));
    CHECK(memcmp(buf, "----", 4) == 0);
    char got[4];
    /* Non-blocking for this read: if the cancelled read had taken the data,
     * it fails at once instead of blocking to the test's timeout. */
    int fl = fcntl(p[0], F_GETFL);
    CHECK_OK(fcntl(p[0], F_SETFL, fl | O_NONBLOCK));
    CHECK_INT(read(p[0], got, 4), ==, 4); /* still in the pipe */
    CHECK_OK(fcntl(p[0], F_SETFL, fl));
    CHECK(memcmp(got, "data", 4) == 0);
    weft_co_scope_t s;
    weft_co_scope_begin(&s, weft_deadline_in_ms(5));
    CHECK_RC(weft_co_file_read(p[0], buf, 4, 0), -ETIMEDOUT);
    CHECK_RC(weft_co_scope_end(&s), -ETIMEDOUT);
    return 0;
}

static void test_inflight_cancel(void)
{
    if (strcmp(backend, "io_uring") != 0)
        return; /* the pool path cannot wait on a pipe (pread: -ESPIPE) */
    int p[2];
    CHECK_OK(pipe(p));
    CHECK_OK(weft_loop_run(main_inflight, p, NULL));
    close(p[0]);
    close(p[1]);
}

static int fds0;

static void test_no_fd_leak(void)
{
    CHECK_INT(check_fd_count(), ==, fds0);
}

int main(void)
{
    backend = co_check_backend();
    weft_pool_default(); /* its threads and fds exist before we count */
    fds0 = check_fd_count();
    RUN(test_basic);
    RUN(test_many);
    RUN(test_cancel);
    RUN(test_inflight_cancel);
    RUN(test_no_fd_leak);
    return check_done();
}
