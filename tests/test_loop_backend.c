/*
 * test_loop_backend.c - the loop's readiness backends, directly: one-shot
 * reports, deadlines never early, wake from another thread, disarm,
 * after-fork in a child, no fd leaks. Runs for every backend built in.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
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

/*
 * An fd that was armed and reported, then closed with close(2) (no disarm:
 * weft_co_wait_fd allows that once the wait is over), and whose number a
 * new fd takes: arming the new fd must watch the NEW file. A backend that
 * remembered "already registered" without asking the kernel would skip the
 * registration and never report.
 */
static void test_close_reuse(void)
{
    struct weft__backend *b;
    CHECK_OK(B->init(&b));
    int tag;
    struct weft__io_event ev[4];
    for (int i = 0; i < 20; i++) {
        int p[2];
        CHECK_OK(pipe(p));
        CHECK_OK(B->arm(b, p[0], WEFT__IO_READ, &tag));
        CHECK_INT(write(p[1], "x", 1), ==, 1);
        CHECK_INT(B->poll(b, weft_deadline_in(5), ev, 4), ==, 1);
        int q[2];
        close(p[0]);
        close(p[1]);
        CHECK_OK(pipe(q)); /* takes the same numbers */
        CHECK_INT(q[0], ==, p[0]);
        CHECK_OK(B->arm(b, q[0], WEFT__IO_READ, &tag));
        CHECK_INT(B->poll(b, 0, ev, 4), ==, 0);
        CHECK_INT(write(q[1], "y", 1), ==, 1);
        CHECK_INT(B->poll(b, weft_deadline_in(5), ev, 4), ==, 1);
        CHECK(ev[0].data == &tag);
        close(q[0]);
        close(q[1]);
    }
    B->fini(b);
}

/*
 * No lost wake-up when data arrives between the reader's EAGAIN and its
 * arm, and none when it arrives while nobody is armed: each round drains
 * the pipe to EAGAIN, writes, then arms; the poll must report.
 */
static void test_ready_before_arm(void)
{
    struct weft__backend *b;
    CHECK_OK(B->init(&b));
    int p[2];
    CHECK_OK(pipe(p));
    int tag;
    struct weft__io_event ev[4];
    char c[8];
    int rounds = (int)check_iters("WEFT_ROUNDS", 2000);
    for (int i = 0; i < rounds; i++) {
        CHECK_OK(B->arm(b, p[0], WEFT__IO_READ, &tag));
        if (i & 1) {
            CHECK_INT(write(p[1], "x", 1), ==, 1);
            CHECK_INT(B->poll(b, weft_deadline_in(5), ev, 4), ==, 1);
        } else {
            /* Reported, not read: still readable, so the next arm reports
             * at once (level semantics). */
            CHECK_INT(write(p[1], "x", 1), ==, 1);
            CHECK_INT(B->poll(b, weft_deadline_in(5), ev, 4), ==, 1);
            CHECK_INT(B->poll(b, 0, ev, 4), ==, 0);
            CHECK_OK(B->arm(b, p[0], WEFT__IO_READ, &tag));
            CHECK_INT(B->poll(b, weft_deadline_in(5), ev, 4), ==, 1);
        }
        CHECK_INT(read(p[0], c, sizeof c), ==, 1);
        /* Written while nobody is armed, then armed. */
        CHECK_INT(write(p[1], "z", 1), ==, 1);
        CHECK_INT(B->poll(b, 0, ev, 4), ==, 0);
        CHECK_OK(B->arm(b, p[0], WEFT__IO_READ, &tag));
        CHECK_INT(B->poll(b, weft_deadline_in(5), ev, 4), ==, 1);
        CHECK_INT(read(p[0], c, sizeof c), ==, 1);
    }
    close(p[0]);
    close(p[1]);
    B->fini(b);
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

/* Arming an armed fd replaces its events and data: one report, the new. */
static void test_rearm_replaces(void)
{
    struct weft__backend *b;
    CHECK_OK(B->init(&b));
    int p[2];
    CHECK_OK(pipe(p));
    int tag1, tag2;
    struct weft__io_event ev[8];
    CHECK_OK(B->arm(b, p[0], WEFT__IO_READ, &tag1));
    CHECK_OK(B->arm(b, p[0], WEFT__IO_READ, &tag2));
    CHECK_INT(write(p[1], "x", 1), ==, 1);
    CHECK_INT(B->poll(b, weft_deadline_in(5), ev, 8), ==, 1);
    CHECK(ev[0].data == &tag2);
    CHECK_INT(B->poll(b, 0, ev, 8), ==, 0);
    /* Many fds at once, reported in batches no larger than max. */
    enum { N = 40 };
    int q[N][2];
    int tags[N];
    for (int i = 0; i < N; i++) {
        CHECK_OK(pipe(q[i]));
        CHECK_OK(B->arm(b, q[i][0], WEFT__IO_READ, &tags[i]));
        CHECK_INT(write(q[i][1], "y", 1), ==, 1);
    }
    int seen[N] = {0}, total = 0;
    while (total < N) {
        int n = B->poll(b, weft_deadline_in(5), ev, 8);
        CHECK_INT(n, >, 0);
        CHECK_INT(n, <=, 8);
        for (int i = 0; i < n; i++) {
            int k = (int *)ev[i].data - tags;
            CHECK(k >= 0 && k < N);
            seen[k]++;
        }
        total += n;
    }
    for (int i = 0; i < N; i++) {
        CHECK_INT(seen[i], ==, 1);
        close(q[i][0]);
        close(q[i][1]);
    }
    close(p[0]);
    close(p[1]);
    B->fini(b);
}

/* A regular file cannot be polled: -EPERM, as epoll_ctl says. */
static void test_regular_file(void)
{
    struct weft__backend *b;
    CHECK_OK(B->init(&b));
    char path[] = "/tmp/weft-backend-XXXXXX";
    int fd = mkstemp(path);
    CHECK_INT(fd, >=, 0);
    unlink(path);
    int tag;
    CHECK_RC(B->arm(b, fd, WEFT__IO_READ, &tag), -EPERM);
    close(fd);
    B->fini(b);
}

struct fop {
    struct weft__file_op op;
    int done;
};
static void fop_done(struct weft__file_op *op)
{
    ((struct fop *)op)->done++;
}

/* file_rw (backends that have it): pread/pwrite semantics, done once. */
static void test_file_rw(void)
{
    if (!B->file_rw)
        return;
    int fds0 = check_fd_count();
    struct weft__backend *b;
    CHECK_OK(B->init(&b));
    char path[] = "/tmp/weft-backend-XXXXXX";
    int fd = mkstemp(path);
    CHECK_INT(fd, >=, 0);
    unlink(path);
    struct weft__io_event ev[4];
    struct fop w = {.op.done = fop_done};
    CHECK_OK(B->file_rw(b, &w.op, true, fd, "hello world", 11, 5));
    while (!w.done)
        CHECK_INT(B->poll(b, weft_deadline_in(5), ev, 4), >=, 0);
    CHECK_INT(w.done, ==, 1);
    CHECK_INT(w.op.res, ==, 11);
    char buf[32] = {0};
    struct fop r = {.op.done = fop_done};
    CHECK_OK(B->file_rw(b, &r.op, false, fd, buf, sizeof buf, 5));
    while (!r.done)
        CHECK_INT(B->poll(b, weft_deadline_in(5), ev, 4), >=, 0);
    CHECK_INT(r.op.res, ==, 11);
    CHECK(memcmp(buf, "hello world", 11) == 0);
    CHECK_INT(lseek(fd, 0, SEEK_CUR), ==, 0); /* the position is not used */
    /* Errors come back in res. */
    struct fop e = {.op.done = fop_done};
    CHECK_OK(B->file_rw(b, &e.op, false, 1000000, buf, 4, 0));
    while (!e.done)
        CHECK_INT(B->poll(b, weft_deadline_in(5), ev, 4), >=, 0);
    CHECK_INT(e.op.res, ==, -EBADF);
    /* A cancel on a finished or unstarted request: done exactly once. */
    struct fop c = {.op.done = fop_done};
    CHECK_OK(B->file_rw(b, &c.op, false, fd, buf, 4, 0));
    B->file_cancel(b, &c.op);
    while (!c.done)
        CHECK_INT(B->poll(b, weft_deadline_in(5), ev, 4), >=, 0);
    CHECK(c.op.res == 4 || c.op.res == -ECANCELED);
    CHECK_INT(B->poll(b, 0, ev, 4), ==, 0);
    CHECK_INT(c.done, ==, 1);
    close(fd);
    B->fini(b);
    CHECK_INT(check_fd_count(), ==, fds0);
}

static void test_choose(void)
{
    CHECK(weft__backend_choose(NULL) != NULL);
    CHECK(weft__backend_choose("no-such-backend") == &weft__epoll_backend);
    CHECK(weft__backend_choose("epoll") == &weft__epoll_backend);
    const struct weft__backend_ops *u = weft__backend_find("uring");
    CHECK(weft__backend_choose("uring") == (u ? u : &weft__epoll_backend));
    CHECK(weft__backend_find("io_uring") == u);
    CHECK(weft__backend_find("nope") == NULL);
}

/* io_uring that cannot start (the test hook: as an old kernel, seccomp or
 * io_uring_disabled would) falls back to epoll and says why. */
static void test_open_fallback(void)
{
    int fds0 = check_fd_count();
    const struct weft__backend_ops *ops;
    struct weft__backend *b;
    char note[96];
    atomic_store(&weft__uring_init_fail, -ENOSYS);
    CHECK_OK(weft__backend_open("uring", &ops, &b, note, sizeof note));
    CHECK(ops == &weft__epoll_backend);
    fprintf(stderr, "  note: %s\n", note);
    CHECK(strstr(note, "epoll") != NULL);
    CHECK(strstr(note, weft__backend_find("uring") ? "unavailable" : "not built in") != NULL);
    ops->fini(b);
    char why[128];
    if (weft__backend_find("uring"))
        CHECK_RC(weft__backend_probe("uring", why, sizeof why), -ENOSYS);
    atomic_store(&weft__uring_init_fail, 0);
    CHECK_OK(weft__backend_open("no-such", &ops, &b, note, sizeof note));
    CHECK(ops == &weft__epoll_backend);
    CHECK(strstr(note, "unknown backend") != NULL);
    ops->fini(b);
    CHECK_OK(weft__backend_open("epoll", &ops, &b, note, sizeof note));
    CHECK_INT(note[0], ==, 0);
    ops->fini(b);
    CHECK_RC(weft__backend_probe("nope", why, sizeof why), -ENOENT);
    CHECK_INT(check_fd_count(), ==, fds0);
}

/* io_uring on a plain ring (no DEFER_TASKRUN, as before Linux 6.1):
 * completions arrive with any system call of the loop's thread, so a busy
 * loop (two coroutines in a ping-pong over a socket) finds some at every
 * poll. The poll used to return them without submitting what was queued:
 * a new arm (here: a wait on a pipe) was never submitted, and its
 * readiness never came. */
static int pp_sock[2], pp_pipe[2];
static _Atomic int pp_stop;
static _Atomic long pp_rounds;
static int pp_pinger(void *arg, void **result)
{
    (void)result;
    int fd = (int)(intptr_t)arg;
    char c = 'x';
    while (!atomic_load(&pp_stop)) {
        if (weft_net_write(fd, &c, 1) != 1 || weft_net_read(fd, &c, 1) != 1)
            return -EIO;
        atomic_fetch_add(&pp_rounds, 1);
    }
    return 0;
}
static int pp_ponger(void *arg, void **result)
{
    (void)result;
    int fd = (int)(intptr_t)arg;
    char c;
    while (!atomic_load(&pp_stop)) {
        if (weft_net_read(fd, &c, 1) != 1 || weft_net_write(fd, &c, 1) != 1)
            return -EIO;
    }
    return 0;
}
static void *pp_writer(void *arg)
{
    (void)arg;
    while (atomic_load(&pp_rounds) < 2000) /* the wait below is armed by now */
        sched_yield();
    return write(pp_pipe[1], "!", 1) == 1 ? NULL : (void *)1;
}
static int main_plain_ring(void *arg, void **result)
{
    (void)arg;
    (void)result;
    CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pp_sock));
    CHECK_OK(pipe(pp_pipe));
    CHECK_OK(weft_net_adopt(pp_sock[0]));
    CHECK_OK(weft_net_adopt(pp_sock[1]));
    weft_task_t *a, *b;
    CHECK_OK(weft_co_spawn(&a, pp_pinger, (void *)(intptr_t)pp_sock[0], "ping", 0));
    CHECK_OK(weft_co_spawn(&b, pp_ponger, (void *)(intptr_t)pp_sock[1], "pong", 0));
    while (atomic_load(&pp_rounds) < 1000) /* the ping-pong is going: completions at every poll */
        CHECK_OK(weft_co_yield());
    pthread_t th;
    CHECK_OK(pthread_create(&th, NULL, pp_writer, NULL));
    int r = weft_co_wait_fd(pp_pipe[0], WEFT_IO_READ, weft_deadline_in(10));
    CHECK(r > 0 && (r & WEFT_IO_READ));
    atomic_store(&pp_stop, 1);
    CHECK_OK(pthread_join(th, NULL));
    /* One may be blocked in its read: closing wakes it (-EPIPE). */
    CHECK_OK(weft_net_close(pp_sock[0]));
    CHECK_OK(weft_net_close(pp_sock[1]));
    weft_co_await(a, NULL);
    weft_co_await(b, NULL);
    weft_task_release(a);
    weft_task_release(b);
    close(pp_pipe[0]);
    close(pp_pipe[1]);
    return 0;
}
static void test_uring_plain_ring_submits(void)
{
    if (!weft__backend_find("uring")) {
        fprintf(stderr, "  (io_uring not built in: skipped)\n");
        return;
    }
    int fds0 = check_fd_count();
    atomic_store(&weft__uring_plain_ring, 1);
    weft_loop_stats_t st;
    weft_loop_opts_t o = {.backend = "io_uring", .stats = &st};
    int rc = weft_loop_run(main_plain_ring, NULL, &o);
    atomic_store(&weft__uring_plain_ring, 0);
    CHECK_OK(rc);
    if (strcmp(st.backend, "io_uring") != 0)
        fprintf(stderr, "  (io_uring unavailable here: ran on %s)\n", st.backend);
    CHECK_INT(check_fd_count(), ==, fds0);
}

/* A real seccomp filter that refuses io_uring_setup (as container runtimes
 * do), in a child: a loop asked for io_uring runs on epoll and says why. */
static int main_note(void *arg, void **result)
{
    (void)arg;
    (void)result;
    return weft_co_yield();
}

static void test_seccomp_fallback(void)
{
#if defined(__NR_io_uring_setup) && defined(SECCOMP_MODE_FILTER)
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        struct sock_filter f[] = {
            BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        };
        struct sock_fprog prog = {.len = sizeof f / sizeof f[0], .filter = f};
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
            prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
            _exit(77);
        int fds0 = check_fd_count();
        weft_loop_stats_t st;
        weft_loop_opts_t o = {.backend = "uring", .stats = &st};
        int ok = weft_loop_run(main_note, NULL, &o) == 0;
        ok = ok && strcmp(st.backend, "epoll") == 0;
        fprintf(stderr, "  child: backend %s, note: %s\n", st.backend, st.backend_note);
        if (weft__backend_find("uring"))
            ok = ok && strstr(st.backend_note, "Operation not permitted") != NULL;
        ok = ok && check_fd_count() == fds0;
        _exit(ok ? 0 : 1);
    }
    CHECK_INT(pid, >, 0);
    int st;
    CHECK_INT(waitpid(pid, &st, 0), ==, pid);
    CHECK(WIFEXITED(st));
    if (WEXITSTATUS(st) == 77)
        fprintf(stderr, "  (seccomp not available here: not checked)\n");
    else
        CHECK_INT(WEXITSTATUS(st), ==, 0);
#endif
}

/* ---- owned fds: vouched arms, edges, forget, epochs -------------------------------- */

/* CPU time of this thread, in ns. */
static int64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Read fd (non-blocking) until EAGAIN; returns the bytes read. */
static int drain(int fd)
{
    char c[256];
    int n = 0;
    ssize_t k;
    while ((k = read(fd, c, sizeof c)) > 0)
        n += (int)k;
    return n;
}

/* A vouched arm: vouch then arm, or (second pass over the owned tests)
 * arm_owned, which must behave exactly the same. */
static bool use_arm_owned;

static int varm(struct weft__backend *b, int fd, uint32_t ev, void *tag, uint32_t epoch)
{
    if (use_arm_owned) {
        CHECK(B->arm_owned != NULL);
        return B->arm_owned(b, fd, ev, ev, tag, epoch);
    }
    B->vouch(b, fd, ev, epoch);
    return B->arm(b, fd, ev, tag);
}

/*
 * A vouched arm reports readiness that comes after it, once; readiness that
 * comes while nothing is armed is dropped without spinning the backend; an
 * arm that is not vouched still sees readiness that is already there
 * (level); a vouch for another fd, or a dropped one, vouches for nothing.
 */
static void test_owned_edges(void)
{
    int fds0 = check_fd_count();
    struct weft__backend *b;
    CHECK_OK(B->init(&b));
    int sv[2];
    CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv));
    int tag;
    struct weft__io_event ev[4];
    int rounds = (int)check_iters("WEFT_ROUNDS", 500);
    for (int i = 0; i < rounds; i++) {
        CHECK_INT(drain(sv[0]), >=, 0); /* the caller saw EAGAIN: then vouches */
        CHECK_OK(varm(b, sv[0], WEFT__IO_READ, &tag, 7));
        CHECK_INT(B->poll(b, 0, ev, 4), ==, 0); /* writable is not asked for */
        CHECK_INT(write(sv[1], "x", 1), ==, 1);
        CHECK_INT(B->poll(b, weft_deadline_in(5), ev, 4), ==, 1);
        CHECK(ev[0].data == &tag);
        CHECK(ev[0].events & WEFT__IO_READ);
        /* One report: still readable, not armed, nothing more. */
        CHECK_INT(B->poll(b, 0, ev, 4), ==, 0);
        if (i % 3 == 0) {
            /* Not vouched (weft_co_wait_fd called directly): the data that
             * is there already is reported at once. */
            CHECK_OK(B->arm(b, sv[0], WEFT__IO_READ, &tag));
            CHECK_INT(B->poll(b, weft_deadline_in(5), ev, 4), ==, 1);
        } else if (i % 3 == 1) {
            /* A vouch for another fd is not one for this arm. */
            B->vouch(b, sv[1], WEFT__IO_READ, 7);
            CHECK_OK(B->arm(b, sv[0], WEFT__IO_READ, &tag));
            CHECK_INT(B->poll(b, weft_deadline_in(5), ev, 4), ==, 1);
        } else {
            /* A dropped vouch neither. */
            B->vouch(b, sv[0], WEFT__IO_READ, 7);
            B->vouch(b, -1, 0, 0);
            CHECK_OK(B->arm(b, sv[0], WEFT__IO_READ, &tag));
            CHECK_INT(B->poll(b, weft_deadline_in(5), ev, 4), ==, 1);
        }
        CHECK_INT(drain(sv[0]), ==, 1);
    }
    /* Readiness while nothing is armed: dropped, and no spinning. */
    CHECK_OK(varm(b, sv[0], WEFT__IO_READ, &tag, 7));
    CHECK_INT(write(sv[1], "a", 1), ==, 1);
    CHECK_INT(B->poll(b, weft_deadline_in(5), ev, 4), ==, 1);
    CHECK_INT(write(sv[1], "b", 1), ==, 1); /* an edge nobody armed for */
    int64_t c0 = thread_cpu_ns();
    CHECK_INT(B->poll(b, weft_deadline_in(0.1), ev, 4), ==, 0);
    CHECK_INT(B->poll(b, weft_deadline_in(0.1), ev, 4), ==, 0);
    int64_t spent = thread_cpu_ns() - c0;
    CHECK_INT(spent, <, 100000000); /* a spinning poll would burn the 200 ms */
    CHECK_INT(drain(sv[0]), ==, 2);
    /* ... and the next vouched arm (after EAGAIN) sees what comes next. */
    CHECK_OK(varm(b, sv[0], WEFT__IO_READ, &tag, 7));
    CHECK_INT(B->poll(b, 0, ev, 4), ==, 0);
    CHECK_INT(write(sv[1], "c", 1), ==, 1);
    CHECK_INT(B->poll(b, weft_deadline_in(5), ev, 4), ==, 1);
    CHECK_INT(drain(sv[0]), ==, 1);
    /* disarm of an owned fd: no report after it. */
    CHECK_OK(varm(b, sv[0], WEFT__IO_READ, &tag, 7));
    CHECK_OK(B->disarm(b, sv[0]));
    CHECK_INT(write(sv[1], "d", 1), ==, 1);
    CHECK_INT(B->poll(b, weft_deadline_in(0.02), ev, 4), ==, 0);
    CHECK_INT(drain(sv[0]), ==, 1);
    /* Hang-up: reported to a vouched reader, as READ and ERROR or as end of
     * file (READ). */
    CHECK_OK(varm(b, sv[0], WEFT__IO_READ, &tag, 7));
    close(sv[1]);
    CHECK_INT(B->poll(b, weft_deadline_in(5), ev, 4), ==, 1);
    CHECK(ev[0].events & WEFT__IO_READ);
    CHECK_OK(B->forget(b, sv[0]));
    close(sv[0]);
    B->fini(b);
    CHECK_INT(check_fd_count(), ==, fds0);
}

/* Fill fd's send buffer; the caller then saw EAGAIN for writing. */
static void fill(int fd)
{
    static char blob[65536];
    while (write(fd, blob, sizeof blob) > 0)
        ;
}

/*
 * A reader and a writer on one owned fd: each report goes to the armed
 * direction; the other direction stays armed through the loop's re-arm,
 * which is not vouched itself (task.c re-arms what is left after a report).
 */
static void test_owned_two_directions(void)
{
    struct weft__backend *b;
    CHECK_OK(B->init(&b));
    int sv[2];
    CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv));
    int tag;
    struct weft__io_event ev[4];
    int rounds = (int)check_iters("WEFT_ROUNDS", 200);
    for (int i = 0; i < rounds; i++) {
        fill(sv[0]);
        CHECK_OK(varm(b, sv[0], WEFT__IO_READ, &tag, 3));
        /* The writer comes: the arm asks both, vouched for WRITE. */
        CHECK_OK(varm(b, sv[0], WEFT__IO_WRITE, &tag, 3));
        CHECK_OK(B->arm(b, sv[0], WEFT__IO_READ | WEFT__IO_WRITE, &tag));
        CHECK_INT(B->poll(b, 0, ev, 4), ==, 0);
        if (i & 1) {
            CHECK_INT(write(sv[1], "r", 1), ==, 1);
            CHECK_INT(B->poll(b, weft_deadline_in(5), ev, 4), ==, 1);
            CHECK_INT(ev[0].events & (WEFT__IO_READ | WEFT__IO_WRITE), ==, WEFT__IO_READ);
            CHECK_INT(drain(sv[0]), ==, 1);
            /* The loop re-arms the writer that is still there (no vouch). */
            CHECK_OK(B->arm(b, sv[0], WEFT__IO_WRITE, &tag));
            CHECK_INT(B->poll(b, 0, ev, 4), ==, 0);
            CHECK_INT(drain(sv[1]), >, 0); /* room to write */
            CHECK_INT(B->poll(b, weft_deadline_in(5), ev, 4), ==, 1);
            CHECK(ev[0].events & WEFT__IO_WRITE);
        } else {
            CHECK_INT(drain(sv[1]), >, 0);
            CHECK_INT(B->poll(b, weft_deadline_in(5), ev, 4), ==, 1);
            CHECK(ev[0].events & WEFT__IO_WRITE);
            /* The reader is re-armed; then data comes. */
            CHECK_OK(B->arm(b, sv[0], WEFT__IO_READ, &tag));
            CHECK_INT(B->poll(b, 0, ev, 4), ==, 0);
            CHECK_INT(write(sv[1], "r", 1), ==, 1);
            CHECK_INT(B->poll(b, weft_deadline_in(5), ev, 4), ==, 1);
            CHECK(ev[0].events & WEFT__IO_READ);
            CHECK_INT(drain(sv[0]), ==, 1);
        }
        CHECK_INT(drain(sv[1]), >=, 0);
    }
    CHECK_OK(B->forget(b, sv[0]));
    close(sv[0]);
    close(sv[1]);
    B->fini(b);
}

/*
 * The number of an owned fd comes back as another file: after forget (the
 * weft_net_close path) with the same epoch, and after a close that forget
 * did not see (another thread's weft_net_close) with a new epoch. Either
 * way the new file is registered and reported; no fd is left open (io_uring:
 * the old request's reference to the file is gone).
 */
static void test_owned_reuse(void)
{
    int fds0 = check_fd_count();
    struct weft__backend *b;
    CHECK_OK(B->init(&b));
    int tag;
    struct weft__io_event ev[4];
    uint32_t epoch = 1;
    for (int i = 0; i < 40; i++) {
        int p[2];
        CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, p));
        CHECK_OK(varm(b, p[0], WEFT__IO_READ, &tag, epoch));
        CHECK_INT(write(p[1], "x", 1), ==, 1);
        CHECK_INT(B->poll(b, weft_deadline_in(5), ev, 4), ==, 1);
        if (i & 1)
            CHECK_OK(B->forget(b, p[0]));
        else
            epoch++; /* closed behind the backend's back: the epoch moves */
        close(p[0]);
        close(p[1]);
        int q[2];
        CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, q));
        CHECK_INT(q[0], ==, p[0]);
        CHECK_OK(varm(b, q[0], WEFT__IO_READ, &tag, epoch));
        CHECK_INT(B->poll(b, 0, ev, 4), ==, 0);
        CHECK_INT(write(q[1], "y", 1), ==, 1);
        CHECK_INT(B->poll(b, weft_deadline_in(5), ev, 4), ==, 1);
        CHECK(ev[0].data == &tag);
        /* The peer of the first pair saw its end: nothing holds it. */
        CHECK_OK(B->forget(b, q[0]));
        close(q[0]);
        close(q[1]);
    }
    B->fini(b);
    CHECK_INT(check_fd_count(), ==, fds0);
}

/* An owned registration in the parent is not the child's: after fork the
 * child's vouched arm registers anew. */
static void test_owned_after_fork(void)
{
    struct weft__backend *b;
    CHECK_OK(B->init(&b));
    int sv[2];
    CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv));
    int tag;
    CHECK_OK(varm(b, sv[0], WEFT__IO_READ, &tag, 5));
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        struct weft__io_event ev[4];
        int ok = B->after_fork(b) == 0;
        B->vouch(b, sv[0], WEFT__IO_READ, 5);
        ok = ok && B->arm(b, sv[0], WEFT__IO_READ, &tag) == 0;
        ok = ok && B->poll(b, 0, ev, 4) == 0;
        ok = ok && write(sv[1], "y", 1) == 1;
        ok = ok && B->poll(b, weft_deadline_in(5), ev, 4) == 1 && ev[0].data == &tag;
        B->fini(b);
        _exit(ok ? 0 : 1);
    }
    CHECK_INT(pid, >, 0);
    int st;
    CHECK_INT(waitpid(pid, &st, 0), ==, pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    struct weft__io_event ev[4];
    /* The parent was armed all along: the child's byte is reported here. */
    CHECK_INT(B->poll(b, weft_deadline_in(5), ev, 4), ==, 1);
    CHECK_INT(drain(sv[0]), ==, 1);
    CHECK_OK(varm(b, sv[0], WEFT__IO_READ, &tag, 5));
    CHECK_INT(B->poll(b, 0, ev, 4), ==, 0);
    CHECK_INT(write(sv[1], "z", 1), ==, 1);
    CHECK_INT(B->poll(b, weft_deadline_in(5), ev, 4), ==, 1);
    CHECK_OK(B->forget(b, sv[0]));
    close(sv[0]);
    close(sv[1]);
    B->fini(b);
}

int main(void)
{
    const struct weft__backend_ops *all[2] = {&weft__epoll_backend, NULL};
    size_t n = 1;
    char why[160];
    if (weft__backend_probe("uring", why, sizeof why) == 0)
        all[n++] = weft__backend_find("uring");
    else if (getenv("WEFT_BACKEND") && strcmp(getenv("WEFT_BACKEND"), "uring") == 0)
        check_skip(why); /* the _uring variant (every backend is tested anyway) */
    else
        fprintf(stderr, "io_uring not tested: %s\n", why);
    for (size_t i = 0; i < n; i++) {
        B = all[i];
        fprintf(stderr, "backend %s\n", B->name);
        RUN(test_oneshot_read);
        RUN(test_close_reuse);
        RUN(test_ready_before_arm);
        RUN(test_deadline_not_early);
        RUN(test_wake_other_thread);
        RUN(test_after_fork);
        RUN(test_rearm_replaces);
        RUN(test_regular_file);
        RUN(test_file_rw);
        for (int k = 0; k < 2; k++) {
            use_arm_owned = k == 1;
            RUN(test_owned_edges);
            RUN(test_owned_two_directions);
            RUN(test_owned_reuse);
            RUN(test_owned_after_fork);
        }
        use_arm_owned = false;
    }
    RUN(test_choose);
    RUN(test_open_fallback);
    RUN(test_seccomp_fallback);
    RUN(test_uring_plain_ring_submits);
    return check_done();
}
