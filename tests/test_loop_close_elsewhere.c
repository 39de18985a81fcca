/*
 * test_loop_close_elsewhere.c - weft_net_close of a socket that a coroutine
 * of another loop waits on (docs/net.md, "Closing"): the close is handed
 * to that loop, which wakes its waiter (-EPIPE) and closes the fd at its
 * next turn; a socket whose loop has finished, or that a parent's loop
 * waits on (in a forked child), is closed at once.
 *
 * Runs on the backend WEFT_BACKEND names (ctest runs it on both).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>
#include <weft.h>

#include "check.h"
#include "net_util.h"

struct reader {
    int fd;                        /* the loop's end of the pair */
    _Atomic(weft_loop_t *) loop;   /* published (retained) by the loop */
    _Atomic int waiting;           /* set once the read has started waiting */
    ssize_t rc;                    /* what its read returned */
    char got;
};

/* Spawned before the read: the FIFO run queue runs it once the reader has
 * suspended in its read, i.e. after the reader's wait noted its loop as
 * the fd's owner; its release store orders that before the test's close. */
static int signal_waiting(void *arg, void **result)
{
    (void)result;
    struct reader *r = arg;
    atomic_store_explicit(&r->waiting, 1, memory_order_release);
    return 0;
}

static int reader_main(void *arg, void **result)
{
    (void)result;
    struct reader *r = arg;
    weft_loop_t *L = weft_loop_current();
    weft_loop_retain(L);
    atomic_store_explicit(&r->loop, L, memory_order_release);
    if (weft_co_spawn(NULL, signal_waiting, r, "signal", 0) != 0)
        return -1;
    /* A deadline, so that a close that never wakes it fails the test
     * (-ETIMEDOUT) instead of hanging it. */
    r->rc = weft_net_read_until(r->fd, &r->got, 1, weft_deadline_in(20));
    return 0;
}

static void *reader_thread(void *arg)
{
    int rc = weft_loop_run(reader_main, arg, NULL);
    return (void *)(intptr_t)rc;
}

/* Make a socket pair, start a reader on a loop of its own thread (*th) on
 * one end (r->fd), and wait (no sleep) until its loop has started the
 * socket wait: from then on that loop is the fd's owner. *peer: the other
 * end. Returns the reader's loop (retained). */
static weft_loop_t *start_reader(struct reader *r, pthread_t *th, int *peer)
{
    CHECK_OK(net_tcp_pair(&r->fd, peer));
    CHECK_OK(pthread_create(th, NULL, reader_thread, r));
    while (!atomic_load_explicit(&r->waiting, memory_order_acquire))
        sched_yield();
    return atomic_load_explicit(&r->loop, memory_order_acquire);
}

/* Join the reader's thread; its loop must have run cleanly. */
static void join_reader(pthread_t th)
{
    void *rc;
    pthread_join(th, &rc);
    CHECK_INT((int)(intptr_t)rc, ==, 0);
}

/* A coroutine of a second loop closes the socket. */
static int closer_main(void *arg, void **result)
{
    (void)result;
    return weft_net_close(*(int *)arg);
}

/* closer: 0 this plain thread, 1 a coroutine of a loop on this thread. */
static void close_while_waiting(int closer)
{
    struct reader r = {0};
    pthread_t th;
    int b;
    weft_loop_t *L = start_reader(&r, &th, &b);
    int a = r.fd;
    if (closer == 0)
        CHECK_OK(weft_net_close(a)); /* handed to the reader's loop */
    else
        CHECK_OK(weft_loop_run(closer_main, &a, NULL));
    join_reader(th);
    /* The waiting read was woken and told the fd is closed. */
    CHECK_RC((int)r.rc, -EPIPE);
    /* And it was really closed: the peer reads end of file. */
    char c;
    CHECK_INT((int)weft_net_read_until(b, &c, 1, weft_deadline_in(5)), ==, 0);
    CHECK_OK(weft_loop_release(L));
    CHECK_OK(weft_net_close(b));
}

/* Many rounds of close_while_waiting(closer); no fd left behind. */
static void close_many(int closer)
{
    int fds = check_fd_count();
    long n = check_iters("CLOSE_ELSEWHERE", 100);
    for (long i = 0; i < n; i++)
        close_while_waiting(closer);
    CHECK_INT(check_fd_count(), ==, fds);
}

static void test_close_from_thread(void)
{
    close_many(0);
}

static void test_close_from_other_loop(void)
{
    close_many(1);
}

/* The loop that last waited on the socket has finished: nobody to hand the
 * close to, so it happens at once, on the calling thread. */
static void test_owner_finished(void)
{
    int fds = check_fd_count();
    struct reader r = {0};
    pthread_t th;
    int b;
    start_reader(&r, &th, &b); /* its loop is the owner now */
    int a = r.fd;
    CHECK_INT((int)weft_net_write_all(b, "x", 1, NULL), ==, 1);
    join_reader(th);
    CHECK_INT((int)r.rc, ==, 1);
    CHECK_INT(r.got, ==, 'x');
    CHECK_OK(weft_loop_release(atomic_load(&r.loop)));
    CHECK_OK(weft_net_close(a));
    errno = 0;
    CHECK_INT(fcntl(a, F_GETFD), ==, -1); /* closed already, not handed on */
    CHECK_INT(errno, ==, EBADF);
    CHECK_OK(weft_net_close(b));
    CHECK_INT(check_fd_count(), ==, fds);
}

/* A forked child runs none of its parent's loops: its close of a socket
 * that a parent's loop waits on happens at once, in the child. */
static void test_forked_child(void)
{
    struct reader r = {0};
    pthread_t th;
    int b;
    weft_loop_t *L = start_reader(&r, &th, &b);
    int a = r.fd;
    pid_t pid = fork();
    CHECK_INT(pid, >=, 0);
    if (pid == 0) {
        int ok = weft_net_close(a) == 0 && fcntl(a, F_GETFD) == -1 && errno == EBADF;
        _exit(ok ? 0 : 1);
    }
    int st = 0;
    CHECK_INT((int)waitpid(pid, &st, 0), ==, (int)pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    /* The parent's socket is untouched; its own close still reaches the
     * waiting loop. */
    CHECK_INT(fcntl(a, F_GETFD), >=, 0);
    CHECK_OK(weft_net_close(a));
    join_reader(th);
    CHECK_RC((int)r.rc, -EPIPE);
    CHECK_OK(weft_loop_release(L));
    CHECK_OK(weft_net_close(b));
}

int main(void)
{
    co_check_backend(); /* skips where io_uring cannot start; fails on a silent fallback */
    RUN(test_close_from_thread);
    RUN(test_close_from_other_loop);
    RUN(test_owner_finished);
    RUN(test_forked_child);
    return check_done();
}
