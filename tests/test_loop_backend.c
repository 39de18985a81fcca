/*
 * test_loop_backend.c - the loop's readiness backends, directly: one-shot
 * reports, deadlines never early, wake from another thread, disarm,
 * after-fork in a child, no fd leaks. Runs for every backend built in.
 */
#include <errno.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <weft.h>

#include "check.h"
#include "loop/backend.h"

static const struct weft__backend_ops *B;

static void test_oneshot_read(void)
{
    int fds0 = check_fd_count();
    struct weft__backend *b;
    CHECK_OK(B->init(&b));
    int p[2];
    CHECK_OK(pipe(p));
    int tag;
    struct weft__io_event ev[8];
    CHECK_OK(B->arm(b, p[0], WEFT__IO_READ, &tag));
    CHECK_INT(B->poll(b, 0, ev, 8), ==, 0); /* nothing to read yet */
    CHECK_INT(write(p[1], "x", 1), ==, 1);
    CHECK_INT(B->poll(b, weft_deadline_in(5), ev, 8), ==, 1);
    CHECK(ev[0].data == &tag);
    CHECK(ev[0].events & WEFT__IO_READ);
    /* One-shot: still readable, but not reported until armed again. */
    CHECK_INT(B->poll(b, 0, ev, 8), ==, 0);
    CHECK_OK(B->arm(b, p[0], WEFT__IO_READ, &tag));
    CHECK_INT(B->poll(b, 0, ev, 8), ==, 1);
    /* Disarm: never reported again. */
    CHECK_OK(B->arm(b, p[0], WEFT__IO_READ, &tag));
    CHECK_OK(B->disarm(b, p[0]));
    CHECK_INT(B->poll(b, 0, ev, 8), ==, 0);
    CHECK_OK(B->disarm(b, p[0])); /* not registered: still 0 */
    /* Write interest, then both. */
    CHECK_OK(B->arm(b, p[1], WEFT__IO_WRITE, &tag));
    CHECK_INT(B->poll(b, 0, ev, 8), ==, 1);
    CHECK(ev[0].events & WEFT__IO_WRITE);
    /* Hang-up reads as readable (and error). */
    close(p[1]);
    CHECK_OK(B->arm(b, p[0], WEFT__IO_READ, &tag));
    CHECK_INT(B->poll(b, 0, ev, 8), ==, 1);
    CHECK(ev[0].events & WEFT__IO_READ);
    close(p[0]);
    CHECK_RC(B->arm(b, 1000000, WEFT__IO_READ, &tag), -EBADF);
    CHECK_RC(B->arm(b, 0, 0, &tag), -EINVAL);
    B->fini(b);
    CHECK_INT(check_fd_count(), ==, fds0);
}

static void test_deadline_not_early(void)
{
    struct weft__backend *b;
    CHECK_OK(B->init(&b));
    struct weft__io_event ev[4];
    for (int i = 0; i < 5; i++) {
        weft_time_t d = weft_now() + 1500000; /* 1.5 ms */
        int n = B->poll(b, d, ev, 4);
        CHECK_INT(n, ==, 0);
        CHECK_INT(weft_now(), >=, d);
    }
    /* A past deadline does not wait. */
    weft_time_t t0 = weft_now();
    CHECK_INT(B->poll(b, 1, ev, 4), ==, 0);
    CHECK_INT(weft_now() - t0, <, 1000000000);
    B->fini(b);
}

static void *waker(void *arg)
{
    struct weft__backend *b = arg;
    weft_sleep(0.01);
    B->wake(b);
    return NULL;
}

static void test_wake_other_thread(void)
{
    struct weft__backend *b;
    CHECK_OK(B->init(&b));
    struct weft__io_event ev[4];
    for (int i = 0; i < 20; i++) {
        pthread_t t;
        pthread_create(&t, NULL, waker, b);
        /* Without the wake this would sleep forever. */
        CHECK_INT(B->poll(b, WEFT_FOREVER, ev, 4), ==, 0);
        pthread_join(t, NULL);
    }
    /* Several wakes before a poll count as one (and are drained). */
    B->wake(b);
    B->wake(b);
    CHECK_INT(B->poll(b, WEFT_FOREVER, ev, 4), ==, 0);
    weft_time_t d = weft_deadline_in_ms(2);
    CHECK_INT(B->poll(b, d, ev, 4), ==, 0);
    CHECK_INT(weft_now(), >=, d);
    B->fini(b);
}

static void test_after_fork(void)
{
    struct weft__backend *b;
    CHECK_OK(B->init(&b));
    int sv[2];
    CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
    int tag;
    CHECK_OK(B->arm(b, sv[0], WEFT__IO_READ, &tag));
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int fds0 = check_fd_count();
        int ok = B->after_fork(b) == 0;
        ok = ok && check_fd_count() == fds0; /* two closed, two opened */
        struct weft__io_event ev[4];
        /* The parent's registration is gone: arm again in the child. */
        ok = ok && B->arm(b, sv[0], WEFT__IO_READ, &tag) == 0;
        ok = ok && write(sv[1], "y", 1) == 1;
        ok = ok && B->poll(b, weft_deadline_in(5), ev, 4) == 1 && ev[0].data == &tag;
        B->fini(b);
        _exit(ok ? 0 : 1);
    }
    CHECK_INT(pid, >, 0);
    int st;
    CHECK_INT(waitpid(pid, &st, 0), ==, pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    /* The parent's set is unaffected by the child's. */
    struct weft__io_event ev[4];
    char c;
    CHECK_INT(read(sv[0], &c, 1), ==, 1); /* the child's byte */
    CHECK_INT(B->poll(b, 0, ev, 4), ==, 0);
    CHECK_INT(write(sv[1], "z", 1), ==, 1);
    CHECK_INT(B->poll(b, weft_deadline_in(5), ev, 4), ==, 1);
    close(sv[0]);
    close(sv[1]);
    B->fini(b);
}

static void test_choose(void)
{
    CHECK(weft__backend_choose(NULL) != NULL);
    CHECK(weft__backend_choose("no-such-backend") == &weft__epoll_backend);
    CHECK(weft__backend_choose("epoll") == &weft__epoll_backend);
}

int main(void)
{
    const struct weft__backend_ops *all[] = {&weft__epoll_backend};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        B = all[i];
        fprintf(stderr, "backend %s\n", B->name);
        RUN(test_oneshot_read);
        RUN(test_deadline_not_early);
        RUN(test_wake_other_thread);
        RUN(test_after_fork);
    }
    RUN(test_choose);
    return check_done();
}
