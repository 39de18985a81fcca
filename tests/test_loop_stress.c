/*
 * test_loop_stress.c - invariant stress: many coroutines with random
 * sleeps, cancellations and timeouts on several loops on several threads.
 * Every task finishes exactly once (one that never ran was cancelled
 * before it started), every stack is returned (to the pool or unmapped),
 * the fd count is unchanged (some tasks wait on pipes they make), the
 * loops ran on the backend asked for, their statistics add up.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>
#include <string.h>
#include <stdbool.h>
#include <weft.h>

#include "co/internal.h"
#include "loop/internal.h"
#include "co_check.h"

#define LOOPS 4

static const char *expected_backend;

/* TSan keeps several hundred KiB and an mmap per fiber: scale down there. */
#if defined(WEFT_SANITIZE_THREAD)
#define STRESS_DEFAULT 20000
#else
#define STRESS_DEFAULT 100000
#endif

struct stress {
    long per_loop;
    long window; /* live tasks per loop at most (stacks are mappings: bounded) */
    _Atomic long finished_ok, finished_cancelled, finished_timeout;
    _Atomic unsigned char *done; /* per task: how many times it finished */
    unsigned char *cancel_asked; /* per task: its spawner cancelled it, or left
                                    it to the loop's end (which cancels) */
};

struct job {
    struct stress *s;
    long id;
    uint32_t seed;
};

static uint32_t xs(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

static int worker(void *arg, void **result)
{
    (void)result;
    struct job *j = arg;
    uint32_t seed = j->seed;
    int rc = 0;
    switch (xs(&seed) % 5) {
    case 0: /* a short sleep */
        rc = weft_co_sleep_until(weft_now() + (xs(&seed) % 2000) * 1000);
        break;
    case 1: /* a few yields */
        for (int i = 0; i < 3 && rc == 0; i++)
            rc = weft_co_yield();
        break;
    case 2: { /* a deadline scope that may expire */
        weft_co_scope_t sc;
        weft_co_scope_begin(&sc, weft_now() + (xs(&seed) % 1000) * 1000);
        weft_co_sleep_until(weft_now() + (xs(&seed) % 1000) * 1000);
        rc = weft_co_scope_end(&sc);
        break;
    }
    case 3: { /* a wait on a pipe nobody writes to: times out or is cancelled */
        int p[2];
        CHECK_OK(pipe(p));
        int r = weft_co_wait_fd(p[0], WEFT_IO_READ, weft_now() + (xs(&seed) % 1000) * 1000);
        CHECK(r == -ETIMEDOUT || r == -ECANCELED);
        rc = r;
        close(p[0]);
        close(p[1]);
        break;
    }
    default: /* a long sleep: the spawner will cancel it */
        rc = weft_co_sleep(30);
        break;
    }
    unsigned char prev = atomic_fetch_add(&j->s->done[j->id], 1);
    CHECK_INT(prev, ==, 0);
    if (rc == 0)
        atomic_fetch_add(&j->s->finished_ok, 1);
    else if (rc == -ECANCELED)
        atomic_fetch_add(&j->s->finished_cancelled, 1);
    else if (rc == -ETIMEDOUT)
        atomic_fetch_add(&j->s->finished_timeout, 1);
    else
        CHECK_RC(rc, 0);
    free(j);
    return rc == -ETIMEDOUT ? 0 : rc;
}

struct loop_arg {
    struct stress *s;
    int index;
    weft_loop_stats_t st;
};

static int loop_main(void *arg, void **result)
{
    (void)result;
    struct loop_arg *la = arg;
    struct stress *s = la->s;
    long base = la->index * s->per_loop;
    weft_task_t **win = calloc((size_t)s->window, sizeof *win);
    long *win_id = calloc((size_t)s->window, sizeof *win_id);
    uint32_t seed = 0x9e3779b9u * (uint32_t)(la->index + 1);
    for (long i = 0; i < s->per_loop; i++) {
        long slot = i % s->window;
        if (win[slot]) {
            /* Keep at most `window` alive: cancel the oldest if slow, or
             * let it finish, then await it. */
            long id = win_id[slot];
            if (xs(&seed) % 4 != 0 ||
                weft_co_await_until(win[slot], NULL, weft_deadline_in_ns(200000)) == -ETIMEDOUT) {
                s->cancel_asked[id] = 1;
                weft_task_cancel(win[slot]);
            }
            int r = weft_co_await(win[slot], NULL);
            CHECK(r == 0 || r == -ECANCELED);
            /* Finished by running: exactly once; a task that says 0 ran. */
            CHECK_INT(atomic_load(&s->done[id]), <=, 1);
            if (r == 0)
                CHECK_INT(atomic_load(&s->done[id]), ==, 1);
            weft_task_release(win[slot]);
            win[slot] = NULL;
        }
        struct job *j = malloc(sizeof *j);
        j->s = s;
        j->id = base + i;
        j->seed = xs(&seed) | 1;
        CHECK_OK(weft_co_spawn(&win[slot], worker, j, "worker", 16 * 1024));
        win_id[slot] = base + i;
        if (i % 64 == 0)
            weft_co_yield();
    }
    /* Leave the rest: asyncio.run's end cancels them. Release handles. */
    for (long k = 0; k < s->window; k++)
        if (win[k]) {
            s->cancel_asked[win_id[k]] = 1; /* the loop's end cancels it */
            weft_task_release(win[k]);
        }
    free(win);
    free(win_id);
    weft_loop_stats(weft_loop_current(), &la->st);
    return 0;
}

static void *loop_thread(void *arg)
{
    struct loop_arg *la = arg;
    weft_loop_opts_t o = {.stats = &la->st};
    return (void *)(intptr_t)weft_loop_run(loop_main, la, &o);
}

static void test_stress(void)
{
    int fds0 = check_fd_count();
    struct weft__co_stack_stats before;
    weft__co_stack_stats(&before);
    struct stress s;
    s.per_loop = check_iters("LOOP_STRESS", STRESS_DEFAULT) / LOOPS;
    s.window = 500;
    atomic_init(&s.finished_ok, 0);
    atomic_init(&s.finished_cancelled, 0);
    atomic_init(&s.finished_timeout, 0);
    long total = s.per_loop * LOOPS;
    s.done = calloc((size_t)total, 1);
    s.cancel_asked = calloc((size_t)total, 1);
    struct loop_arg la[LOOPS];
    pthread_t th[LOOPS];
    for (int i = 0; i < LOOPS; i++) {
        la[i] = (struct loop_arg){.s = &s, .index = i};
        pthread_create(&th[i], NULL, loop_thread, &la[i]);
    }
    uint64_t spawned = 0, finished = 0;
    for (int i = 0; i < LOOPS; i++) {
        void *r;
        pthread_join(th[i], &r);
        CHECK_INT((intptr_t)r, ==, 0);
        /* On the backend asked for (a fallback to epoll would pass as an
         * io_uring run otherwise). */
        CHECK(strcmp(la[i].st.backend, expected_backend) == 0);
        CHECK_U64(la[i].st.tasks_live, ==, 0);
        CHECK_U64(la[i].st.tasks_spawned, ==, la[i].st.tasks_finished);
        spawned += la[i].st.tasks_spawned;
        finished += la[i].st.tasks_finished;
    }
    /* Every worker ran exactly once (tasks cancelled before they started
     * never ran and are counted as cancelled by the loop, not here). */
    long ran = atomic_load(&s.finished_ok) + atomic_load(&s.finished_cancelled) +
               atomic_load(&s.finished_timeout);
    long never = 0;
    for (long i = 0; i < total; i++) {
        CHECK_INT(s.done[i], <=, 1);
        never += s.done[i] == 0;
        /* A task that never ran was cancelled before it started: never
         * dropped. */
        if (s.done[i] == 0 && !s.cancel_asked[i]) {
            fprintf(stderr, "  task %ld never ran and nobody cancelled it\n", i);
            CHECK(false);
        }
    }
    CHECK_INT(ran + never, ==, total);
    CHECK_U64(spawned, ==, (uint64_t)total + LOOPS); /* + each main */
    CHECK_U64(finished, ==, spawned);
    fprintf(stderr, "  %ld tasks: %ld ok, %ld cancelled, %ld timed out, %ld never ran\n", total,
            atomic_load(&s.finished_ok), atomic_load(&s.finished_cancelled),
            atomic_load(&s.finished_timeout), never);
    struct weft__co_stack_stats after;
    weft__co_stack_stats(&after);
    CHECK_U64(after.in_use, ==, before.in_use); /* every stack returned */
    CHECK_U64(after.mapped, ==, after.in_use + after.pooled); /* ... to the pool or unmapped */
    CHECK_INT(check_fd_count(), ==, fds0);
    free(s.done);
    free(s.cancel_asked);
}

/* Threads that each run a loop, one after another: the task records a
 * thread took for itself go back when it exits (they used to stay in its
 * cache for good, a chunk of 256 records per thread: 88 KiB each, 26 MiB
 * for these 300). Counted in chunks, not RSS (qemu-user's own memory
 * grows with threads). */
static int one_task(void *arg, void **result)
{
    (void)arg;
    (void)result;
    return weft_co_yield();
}
static int churn_main(void *arg, void **result)
{
    (void)arg;
    (void)result;
    weft_task_t *t;
    CHECK_OK(weft_co_spawn(&t, one_task, NULL, "one", 0));
    CHECK_OK(weft_co_await(t, NULL));
    weft_task_release(t);
    return 0;
}
static void *churn_thread(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)weft_loop_run(churn_main, NULL, NULL);
}
static void test_thread_churn(void)
{
    for (int warm = 0; warm < 10; warm++) {
        pthread_t th;
        CHECK_OK(pthread_create(&th, NULL, churn_thread, NULL));
        CHECK_OK(pthread_join(th, NULL));
    }
    size_t before = weft__cotask_chunks();
    for (int i = 0; i < 300; i++) {
        pthread_t th;
        void *r;
        CHECK_OK(pthread_create(&th, NULL, churn_thread, NULL));
        CHECK_OK(pthread_join(th, &r));
        CHECK_INT((intptr_t)r, ==, 0);
    }
    size_t grown = weft__cotask_chunks() - before;
    fprintf(stderr, "  300 threads, a loop each: %zu more chunks of task records\n", grown);
    CHECK_U64(grown, <=, 1); /* it was one per thread: 300 */
}

int main(void)
{
    expected_backend = co_check_backend();
    RUN(test_stress);
    RUN(test_thread_churn);
    return check_done();
}
