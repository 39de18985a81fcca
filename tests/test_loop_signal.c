/*
 * test_loop_signal.c - signals on the loop: weft_co_signal_wait through the
 * signalfd (one delivery wakes every waiter, a signal with nobody waiting
 * is kept, timeouts, cancellation, bad input, one owner loop per signal,
 * handlers and masks restored), and asyncio.run's Ctrl-C: the first SIGINT
 * cancels main (weft_loop_run returns -EINTR), a second ends the process
 * even while a coroutine never yields (in a forked child).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>
#include <weft.h>

#include "co_check.h"

static bool blocked(int sig)
{
    sigset_t cur;
    pthread_sigmask(SIG_BLOCK, NULL, &cur);
    return sigismember(&cur, sig);
}

static void (*handler_of(int sig))(int)
{
    struct sigaction sa;
    sigaction(sig, NULL, &sa);
    return sa.sa_handler;
}

static void marker(int sig)
{
    (void)sig;
}

/* ---- awaitable signals ------------------------------------------------------ */

static void *send_usr1(void *arg)
{
    (void)arg;
    kill(getpid(), SIGUSR1); /* process-directed: any thread may take it */
    return NULL;
}

static int waiter(void *arg, void **result)
{
    (void)arg;
    *result = (void *)(intptr_t)weft_co_signal_wait(WEFT_SIGNAL(SIGUSR1));
    return 0;
}

static int main_signals(void *arg, void **result)
{
    (void)arg;
    (void)result;
    /* Claim first (the wait times out), so the signal cannot kill us. */
    CHECK_RC(weft_co_signal_wait_until(WEFT_SIGNAL(SIGUSR1) | WEFT_SIGNAL(SIGUSR2), weft_now()),
             -ETIMEDOUT);
    CHECK(blocked(SIGUSR1) && blocked(SIGUSR2));
    CHECK(handler_of(SIGUSR1) != SIG_DFL);

    /* From another thread, while we wait. */
    pthread_t th;
    pthread_create(&th, NULL, send_usr1, NULL);
    CHECK_INT(weft_co_signal_wait_until(WEFT_SIGNAL(SIGUSR1), weft_deadline_in(10)), ==, SIGUSR1);
    pthread_join(th, NULL);

    /* Sent while nobody waits: kept for the next wait (once). */
    kill(getpid(), SIGUSR2);
    CHECK_OK(weft_co_sleep(0.002));
    CHECK_INT(weft_co_signal_wait_until(WEFT_SIGNAL(SIGUSR2), weft_deadline_in(10)), ==, SIGUSR2);
    CHECK_RC(weft_co_signal_wait_until(WEFT_SIGNAL(SIGUSR2), weft_deadline_in_ms(5)), -ETIMEDOUT);

    /* One delivery wakes every waiter. */
    weft_task_t *t[3];
    for (int i = 0; i < 3; i++)
        CHECK_OK(weft_co_spawn(&t[i], waiter, NULL, "sigwaiter", 0));
    CHECK_OK(weft_co_yield()); /* each has run once: all wait now */
    kill(getpid(), SIGUSR1);
    for (int i = 0; i < 3; i++) {
        void *v = NULL;
        CHECK_OK(weft_co_await_until(t[i], &v, weft_deadline_in(10)));
        CHECK_INT((intptr_t)v, ==, SIGUSR1);
        weft_task_release(t[i]);
    }

    /* Cancelled while waiting. */
    weft_task_t *c;
    CHECK_OK(weft_co_spawn(&c, waiter, NULL, "cancelled", 0));
    CHECK_OK(weft_co_yield());
    CHECK_OK(weft_task_cancel(c));
    void *v = NULL;
    CHECK_OK(weft_co_await(c, &v));
    CHECK_INT((intptr_t)v, ==, -ECANCELED);
    weft_task_release(c);

    /* A scope's deadline. */
    weft_co_scope_t s;
    weft_co_scope_begin(&s, weft_deadline_in_ms(3));
    CHECK_RC(weft_co_signal_wait(WEFT_SIGNAL(SIGUSR1)), -ETIMEDOUT);
    CHECK_RC(weft_co_scope_end(&s), -ETIMEDOUT);

    /* Bad input. */
    CHECK_RC(weft_co_signal_wait(0), -EINVAL);
    CHECK_RC(weft_co_signal_wait(WEFT_SIGNAL(SIGKILL)), -EINVAL);
    CHECK_RC(weft_co_signal_wait(WEFT_SIGNAL(SIGSEGV)), -EINVAL);
    CHECK_RC(weft_co_signal_wait(WEFT_SIGNAL(33)), -EINVAL);
    CHECK_RC(weft_co_signal_wait_until(WEFT_SIGNAL(SIGUSR1), -1), -EINVAL);

    return 0;
}

static int main_busy(void *arg, void **result)
{
    (void)result;
    (void)arg;
    /* Claim SIGUSR1 and return at once: the other loop holds it meanwhile. */
    return weft_co_signal_wait_until(WEFT_SIGNAL(SIGUSR1), weft_now());
}

struct busy_arg {
    weft_event_t claimed, done;
    int sig; /* the signal the other loop holds */
    int r;
};

static int holder_main(void *arg, void **result)
{
    (void)result;
    struct busy_arg *b = arg;
    b->r = weft_co_signal_wait_until(WEFT_SIGNAL(b->sig), weft_now());
    weft_event_set(&b->claimed);
    weft_event_wait(&b->done);
    return 0;
}

static void *holder_thread(void *arg)
{
    weft_loop_run(holder_main, arg, NULL);
    return NULL;
}

/* The other loop holds SIGUSR2: a claim of SIGUSR1 | SIGUSR2 takes SIGUSR1
 * first, then fails, and must give SIGUSR1 back whole (it used to stay
 * blocked and forwarded here but outside the signalfd, so that no later
 * wait could ever see it). */
static int main_busy_partial(void *arg, void **result)
{
    (void)arg;
    (void)result;
    CHECK_RC(weft_co_signal_wait_until(WEFT_SIGNAL(SIGUSR1) | WEFT_SIGNAL(SIGUSR2), weft_now()),
             -EBUSY);
    CHECK(!blocked(SIGUSR1));
    CHECK(handler_of(SIGUSR1) == SIG_DFL);
    /* Claimed alone now, it reaches a wait. Sent to this thread (raise):
     * sent to the process, it may land on the other loop's thread, whose
     * forwarding handler TSan delays while that thread sits in a system
     * call it does not intercept (io_uring_enter). */
    CHECK_RC(weft_co_signal_wait_until(WEFT_SIGNAL(SIGUSR1), weft_now()), -ETIMEDOUT);
    raise(SIGUSR1);
    CHECK_INT(weft_co_signal_wait_until(WEFT_SIGNAL(SIGUSR1), weft_deadline_in(10)), ==, SIGUSR1);
    return 0;
}

/* The same with SIGINT, whose built-in handling (cancel main) the claim
 * stops first: it comes back when the claim fails. */
static int main_busy_sigint(void *arg, void **result)
{
    (void)arg;
    (void)result;
    void (*builtin)(int) = handler_of(SIGINT);
    CHECK(builtin != SIG_DFL);
    CHECK_RC(weft_co_signal_wait_until(WEFT_SIGNAL(SIGINT) | WEFT_SIGNAL(SIGUSR2), weft_now()),
             -EBUSY);
    CHECK(handler_of(SIGINT) == builtin);
    CHECK(!blocked(SIGINT));
    return 0;
}

/* Another loop's built-in Ctrl-C handling holds SIGINT: awaiting it here
 * is -EBUSY (it used to take SIGINT from under that loop). */
static int main_sigint_elsewhere(void *arg, void **result)
{
    (void)arg;
    (void)result;
    CHECK_RC(weft_co_signal_wait_until(WEFT_SIGNAL(SIGINT), weft_now()), -EBUSY);
    CHECK(!blocked(SIGINT));
    return 0;
}

static int sigint_holder_main(void *arg, void **result)
{
    (void)result;
    struct busy_arg *b = arg;
    weft_event_set(&b->claimed); /* the built-in handling is on from the start */
    weft_event_wait(&b->done);
    return 0;
}

static void *sigint_holder_thread(void *arg)
{
    weft_loop_opts_t on = {.sigint = WEFT_LOOP_SIGINT_ON};
    ((struct busy_arg *)arg)->r = weft_loop_run(sigint_holder_main, arg, &on);
    return NULL;
}

static void (*sigint_waiter_handler)(int);
static int main_sigint_untouched(void *arg, void **result)
{
    (void)arg;
    (void)result;
    CHECK(handler_of(SIGINT) == sigint_waiter_handler);
    return 0;
}

static void test_signal_wait(void)
{
    int fds0 = check_fd_count();
    struct sigaction mark = {.sa_handler = marker};
    sigemptyset(&mark.sa_mask);
    struct sigaction old2;
    sigaction(SIGUSR2, &mark, &old2);
    weft_loop_stats_t st;
    weft_loop_opts_t opts = {.sigint = WEFT_LOOP_SIGINT_OFF, .stats = &st};
    CHECK_OK(weft_loop_run(main_signals, NULL, &opts));
    CHECK_U64(st.signals, >=, 3);
    /* Everything restored: handlers (default, and the marker), the mask. */
    CHECK(handler_of(SIGUSR1) == SIG_DFL);
    CHECK(handler_of(SIGUSR2) == marker);
    CHECK(!blocked(SIGUSR1) && !blocked(SIGUSR2));
    CHECK_INT(check_fd_count(), ==, fds0);
    sigaction(SIGUSR2, &old2, NULL);
    CHECK_RC(weft_co_signal_wait(WEFT_SIGNAL(SIGUSR1)), -EPERM); /* outside */

    /* -EBUSY while another loop (another thread) owns the signal. */
    for (int round = 0; round < 2; round++) {
        struct busy_arg b = {.sig = round == 0 ? SIGUSR1 : SIGUSR2, .r = 0};
        weft_event_init(&b.claimed);
        weft_event_init(&b.done);
        pthread_t th;
        pthread_create(&th, NULL, holder_thread, &b);
        CHECK_OK(weft_event_wait(&b.claimed));
        CHECK_RC(b.r, -ETIMEDOUT);
        if (round == 0)
            CHECK_RC(weft_loop_run(main_busy, NULL, &opts), -EBUSY);
        else {
            CHECK_OK(weft_loop_run(main_busy_partial, NULL, &opts));
            weft_loop_opts_t on = {.sigint = WEFT_LOOP_SIGINT_ON};
            CHECK_OK(weft_loop_run(main_busy_sigint, NULL, &on));
            CHECK(handler_of(SIGINT) == SIG_DFL);
        }
        weft_event_set(&b.done);
        pthread_join(th, NULL);
        weft_event_destroy(&b.claimed);
        weft_event_destroy(&b.done);
        CHECK(handler_of(SIGUSR1) == SIG_DFL && handler_of(SIGUSR2) == SIG_DFL);
        CHECK(!blocked(SIGUSR1) && !blocked(SIGUSR2));
    }

    struct busy_arg b = {.r = 1};
    weft_event_init(&b.claimed);
    weft_event_init(&b.done);
    pthread_t th;
    pthread_create(&th, NULL, sigint_holder_thread, &b);
    CHECK_OK(weft_event_wait(&b.claimed));
    void (*builtin)(int) = handler_of(SIGINT);
    CHECK(builtin != SIG_DFL);
    CHECK_OK(weft_loop_run(main_sigint_elsewhere, NULL, &opts));
    CHECK(handler_of(SIGINT) == builtin); /* the other loop's, untouched */
    weft_event_set(&b.done);
    pthread_join(th, NULL);
    CHECK_OK(b.r);
    CHECK(handler_of(SIGINT) == SIG_DFL);
    weft_event_destroy(&b.claimed);
    weft_event_destroy(&b.done);

    /* The other way round: a loop awaits SIGINT; another starting with the
     * built-in handling on leaves it alone (it used to put its handler
     * over the waiting loop's). */
    struct busy_arg h = {.sig = SIGINT, .r = 0};
    weft_event_init(&h.claimed);
    weft_event_init(&h.done);
    CHECK_OK(pthread_create(&th, NULL, holder_thread, &h));
    CHECK_OK(weft_event_wait(&h.claimed));
    CHECK_RC(h.r, -ETIMEDOUT); /* claimed */
    sigint_waiter_handler = handler_of(SIGINT);
    CHECK(sigint_waiter_handler != SIG_DFL);
    weft_loop_opts_t on = {.sigint = WEFT_LOOP_SIGINT_ON};
    CHECK_OK(weft_loop_run(main_sigint_untouched, NULL, &on));
    CHECK(handler_of(SIGINT) == sigint_waiter_handler);
    weft_event_set(&h.done);
    pthread_join(th, NULL);
    CHECK(handler_of(SIGINT) == SIG_DFL);
    weft_event_destroy(&h.claimed);
    weft_event_destroy(&h.done);
}

/* ---- Ctrl-C: the first SIGINT cancels main ------------------------------------- */

static void *raise_sigint(void *arg)
{
    (void)arg;
    raise(SIGINT); /* to this thread: the loop's handler runs here */
    return NULL;
}

static int main_sigint(void *arg, void **result)
{
    (void)result;
    int *got = arg;
    CHECK(handler_of(SIGINT) != SIG_DFL);
    pthread_t th;
    pthread_create(&th, NULL, raise_sigint, NULL);
    *got = weft_co_sleep(30); /* cut short: -ECANCELED */
    pthread_join(th, NULL);
    return *got;
}

static int main_sigint_busy(void *arg, void **result)
{
    (void)result;
    int *got = arg;
    pthread_t th;
    pthread_create(&th, NULL, raise_sigint, NULL);
    pthread_join(th, NULL); /* the handler has run; we never yielded */
    /* The loop takes the request at its next turn: the first suspension
     * point after that sees the cancellation. */
    int r = 0;
    for (int i = 0; i < 10 && r == 0; i++)
        r = weft_co_yield();
    *got = r;
    return r;
}

static int main_no_handler(void *arg, void **result)
{
    (void)arg;
    (void)result;
    CHECK(handler_of(SIGINT) == SIG_DFL);
    return 0;
}

static int main_marker_kept(void *arg, void **result)
{
    (void)arg;
    (void)result;
    CHECK(handler_of(SIGINT) == marker);
    return 0;
}

static void *off_main_thread(void *arg)
{
    (void)arg;
    /* AUTO is off away from the main thread (asyncio.run's rule). */
    return (void *)(intptr_t)weft_loop_run(main_no_handler, NULL, NULL);
}

static void test_sigint_cancels_main(void)
{
    CHECK(handler_of(SIGINT) == SIG_DFL);
    int got = 0;
    CHECK_RC(weft_loop_run(main_sigint, &got, NULL), -EINTR); /* AUTO: on here */
    CHECK_RC(got, -ECANCELED);
    CHECK(handler_of(SIGINT) == SIG_DFL);
    CHECK(!blocked(SIGINT));

    weft_loop_opts_t on = {.sigint = WEFT_LOOP_SIGINT_ON};
    got = 0;
    CHECK_RC(weft_loop_run(main_sigint_busy, &got, &on), -EINTR);
    CHECK_RC(got, -ECANCELED);
    CHECK(handler_of(SIGINT) == SIG_DFL);

    weft_loop_opts_t off = {.sigint = WEFT_LOOP_SIGINT_OFF};
    CHECK_OK(weft_loop_run(main_no_handler, NULL, &off));
    pthread_t th;
    void *r;
    pthread_create(&th, NULL, off_main_thread, NULL);
    pthread_join(th, &r);
    CHECK_INT((intptr_t)r, ==, 0);

    /* A handler of the user's own: AUTO leaves SIGINT alone, and ON
     * restores the user's handler afterwards. */
    struct sigaction mark = {.sa_handler = marker}, old;
    sigemptyset(&mark.sa_mask);
    sigaction(SIGINT, &mark, &old);
    CHECK_OK(weft_loop_run(main_marker_kept, NULL, NULL));
    got = 0;
    CHECK_RC(weft_loop_run(main_sigint, &got, &on), -EINTR);
    CHECK(handler_of(SIGINT) == marker);
    sigaction(SIGINT, &old, NULL);
}

/* ---- Ctrl-C: a second SIGINT interrupts, even a coroutine that never yields ---- */

static weft_event_t first_seen;

static void *raise_twice(void *arg)
{
    (void)arg;
    raise(SIGINT);
    weft_event_wait(&first_seen); /* main has seen -ECANCELED */
    raise(SIGINT);                /* the previous disposition: the process ends */
    return NULL;
}

static int main_hog(void *arg, void **result)
{
    (void)arg;
    (void)result;
    pthread_t th;
    pthread_create(&th, NULL, raise_twice, NULL);
    int r = weft_co_sleep(30);
    if (r != -ECANCELED)
        _exit(3);
    weft_event_set(&first_seen);
    /* Compute without ever yielding: only the second SIGINT ends this. */
    volatile unsigned long spin = 0;
    for (;;)
        spin++;
    return 0;
}

static void test_second_sigint_interrupts(void)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        alarm(60); /* if the second SIGINT did nothing: SIGALRM, a failure */
        weft_event_init(&first_seen);
        weft_loop_opts_t on = {.sigint = WEFT_LOOP_SIGINT_ON};
        weft_loop_run(main_hog, NULL, &on);
        _exit(4);
    }
    CHECK_INT(pid, >, 0);
    int st = 0;
    CHECK_INT(waitpid(pid, &st, 0), ==, pid);
    if (WIFEXITED(st))
        fprintf(stderr, "child exited with %d\n", WEXITSTATUS(st));
    CHECK(WIFSIGNALED(st));
    CHECK_INT(WTERMSIG(st), ==, SIGINT);
}

int main(void)
{
    co_check_backend();
    RUN(test_second_sigint_interrupts); /* first: fork before any thread exists */
    RUN(test_signal_wait);
    RUN(test_sigint_cancels_main);
    return check_done();
}
