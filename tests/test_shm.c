/*
 * test_shm.c - shared regions and the primitives that live in them: robust
 * mutex, semaphore, event, channel. Each is stressed with threads (which
 * also runs under TSan) and, outside TSan, between processes: plain fork()
 * children, and a process pool whose workers use a region attached to it.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <weft.h>

#include "check.h"
#include "proc/internal.h" /* struct weft_shm_chan */

#ifdef WEFT_SANITIZE_THREAD
#define PROCESSES 0 /* TSan does not follow memory shared with other processes */
#else
#define PROCESSES 1
#endif

/* ---- regions ---------------------------------------------------------------- */

static void test_region(void)
{
    weft_shm_t *r;
    CHECK_RC(weft_shm_create(NULL, 10, "x"), -EINVAL);
    CHECK_RC(weft_shm_create(&r, 0, "x"), -EINVAL);
    CHECK_OK(weft_shm_create(&r, 10000, "weft-test"));
    CHECK(weft_shm_base(r) != NULL);
    CHECK_INT(weft_shm_size(r), >=, 10000);
    char *a = weft_shm_alloc(r, 100, 64);
    CHECK(a != NULL);
    CHECK_INT((uintptr_t)a % 64, ==, 0);
    CHECK(a[0] == 0 && a[99] == 0);
    CHECK(weft_shm_alloc(r, 100, 3) == NULL);
    CHECK(weft_shm_alloc(r, 0, 8) == NULL);
    CHECK(weft_shm_alloc(r, 1 << 20, 8) == NULL);
    CHECK(weft_shm_alloc(NULL, 8, 8) == NULL);
    char *b = weft_shm_alloc_at(weft_shm_base(r), 8, 0);
    CHECK(b >= a + 100);
    CHECK_OK(weft_shm_free(r));
    CHECK_RC(weft_shm_free(NULL), -EINVAL);
}

/* ---- mutex -------------------------------------------------------------------- */

struct counted {
    weft_shm_mutex_t m;
    uint64_t count; /* under m; plain on purpose: TSan checks the lock */
    uint64_t iters;
};

static void count_worker(void *arg, int index)
{
    (void)index;
    struct counted *c = arg;
    for (uint64_t i = 0; i < c->iters; i++) {
        CHECK_OK(weft_shm_mutex_lock(&c->m));
        c->count++;
        CHECK_OK(weft_shm_mutex_unlock(&c->m));
    }
}

static void test_mutex_threads(void)
{
    struct counted c = {WEFT_SHM_MUTEX_INIT, 0, (uint64_t)check_iters("SHM_MUTEX", 50000)};
    check_parallel(4, count_worker, &c);
    CHECK_U64(c.count, ==, c.iters * 4);
    /* Misuse. */
    CHECK_RC(weft_shm_mutex_unlock(&c.m), -EPERM);
    CHECK_OK(weft_shm_mutex_lock(&c.m));
    CHECK_RC(weft_shm_mutex_lock(&c.m), -EDEADLK);
    CHECK_RC(weft_shm_mutex_lock_try(&c.m), -EDEADLK);
    CHECK_RC(weft_shm_mutex_consistent(&c.m), -EINVAL);
    CHECK_OK(weft_shm_mutex_unlock(&c.m));
    CHECK_RC(weft_shm_mutex_consistent(&c.m), -EPERM);
    CHECK_RC(weft_shm_mutex_lock(NULL), -EINVAL);
    CHECK_RC(weft_shm_mutex_lock_until(&c.m, -1), -EINVAL);
    CHECK_RC(weft_shm_mutex_init(NULL), -EINVAL);
}

static void *hold_and_exit(void *arg)
{
    CHECK_OK(weft_shm_mutex_lock(arg));
    return NULL; /* the thread ends holding it */
}

static void *hold_until_told(void *arg)
{
    void **a = arg;
    CHECK_OK(weft_shm_mutex_lock(a[0]));
    weft_event_set(a[1]);
    weft_event_wait(a[2]);
    CHECK_OK(weft_shm_mutex_unlock(a[0]));
    return NULL;
}

static void test_mutex_owner_dead_thread(void)
{
    weft_shm_mutex_t m = WEFT_SHM_MUTEX_INIT;
    /* Held by a live thread: try and a short deadline fail. */
    weft_event_t held = WEFT_EVENT_INIT, go = WEFT_EVENT_INIT;
    void *args[3] = {&m, &held, &go};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, hold_until_told, args) == 0);
    weft_event_wait(&held);
    CHECK_RC(weft_shm_mutex_lock_try(&m), -EAGAIN);
    CHECK_RC(weft_shm_mutex_lock_until(&m, weft_deadline_in(0.02)), -ETIMEDOUT);
    weft_event_set(&go);
    CHECK_OK(weft_shm_mutex_lock(&m));
    CHECK_OK(weft_shm_mutex_unlock(&m));
    pthread_join(th, NULL);
    /* A thread that ends holding it: the next owner is told. */
    CHECK(pthread_create(&th, NULL, hold_and_exit, &m) == 0);
    pthread_join(th, NULL);
    CHECK_RC(weft_shm_mutex_lock(&m), -EOWNERDEAD);
    CHECK_OK(weft_shm_mutex_consistent(&m));
    CHECK_OK(weft_shm_mutex_unlock(&m));
    CHECK_OK(weft_shm_mutex_lock(&m));
    CHECK_OK(weft_shm_mutex_unlock(&m));
    /* Not made consistent: unusable for ever. */
    CHECK(pthread_create(&th, NULL, hold_and_exit, &m) == 0);
    pthread_join(th, NULL);
    CHECK_RC(weft_shm_mutex_lock_try(&m), -EOWNERDEAD);
    CHECK_OK(weft_shm_mutex_unlock(&m));
    CHECK_RC(weft_shm_mutex_lock(&m), -ENOTRECOVERABLE);
    CHECK_RC(weft_shm_mutex_lock_try(&m), -ENOTRECOVERABLE);
}

static void test_mutex_processes(void)
{
    if (!PROCESSES)
        return;
    weft_shm_t *r;
    CHECK_OK(weft_shm_create(&r, 4096, "weft-test-mutex"));
    struct counted *c = weft_shm_alloc(r, sizeof *c, 64);
    weft_shm_mutex_init(&c->m);
    c->iters = (uint64_t)check_iters("SHM_MUTEX_PROC", 20000);
    enum { P = 3 };
    pid_t kids[P];
    for (int i = 0; i < P; i++) {
        kids[i] = fork();
        if (kids[i] == 0) {
            for (uint64_t k = 0; k < c->iters; k++) {
                if (weft_shm_mutex_lock(&c->m) != 0)
                    _exit(2);
                c->count++;
                weft_shm_mutex_unlock(&c->m);
            }
            _exit(0);
        }
    }
    for (uint64_t k = 0; k < c->iters; k++) {
        CHECK_OK(weft_shm_mutex_lock(&c->m));
        c->count++;
        CHECK_OK(weft_shm_mutex_unlock(&c->m));
    }
    for (int i = 0; i < P; i++) {
        int st;
        CHECK_INT(waitpid(kids[i], &st, 0), ==, kids[i]);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    CHECK_U64(c->count, ==, c->iters * (P + 1));
    /* A process killed while holding it: the next owner is told, once. */
    pid_t k = fork();
    if (k == 0) {
        weft_shm_mutex_lock(&c->m);
        raise(SIGKILL);
    }
    int st;
    waitpid(k, &st, 0);
    CHECK(WIFSIGNALED(st));
    CHECK_RC(weft_shm_mutex_lock(&c->m), -EOWNERDEAD);
    CHECK_OK(weft_shm_mutex_consistent(&c->m));
    CHECK_OK(weft_shm_mutex_unlock(&c->m));
    CHECK_OK(weft_shm_mutex_lock(&c->m));
    CHECK_OK(weft_shm_mutex_unlock(&c->m));
    weft_shm_free(r);
}

/* ---- semaphore and event ---------------------------------------------------------- */

struct semtest {
    weft_shm_sem_t s;
    _Atomic int inside, max_inside;
    int iters;
};

static void sem_worker(void *arg, int index)
{
    (void)index;
    struct semtest *t = arg;
    for (int i = 0; i < t->iters; i++) {
        CHECK_OK(weft_shm_sem_acquire(&t->s));
        int in = atomic_fetch_add(&t->inside, 1) + 1;
        int mx = atomic_load(&t->max_inside);
        while (in > mx && !atomic_compare_exchange_weak(&t->max_inside, &mx, in))
            ;
        atomic_fetch_sub(&t->inside, 1);
        CHECK_OK(weft_shm_sem_release(&t->s, 1));
    }
}

static void test_sem(void)
{
    struct semtest t;
    memset(&t, 0, sizeof t);
    CHECK_OK(weft_shm_sem_init(&t.s, 2));
    t.iters = (int)check_iters("SHM_SEM", 20000);
    check_parallel(4, sem_worker, &t);
    CHECK_INT(atomic_load(&t.max_inside), <=, 2);
    CHECK_INT(weft_shm_sem_value(&t.s), ==, 2);
    CHECK_OK(weft_shm_sem_acquire_try(&t.s));
    CHECK_OK(weft_shm_sem_acquire_try(&t.s));
    CHECK_RC(weft_shm_sem_acquire_try(&t.s), -EAGAIN);
    CHECK_RC(weft_shm_sem_acquire_until(&t.s, weft_deadline_in(0.01)), -ETIMEDOUT);
    CHECK_OK(weft_shm_sem_release(&t.s, 2));
    CHECK_RC(weft_shm_sem_release(&t.s, INT32_MAX), -EOVERFLOW);
    CHECK_INT(weft_shm_sem_value(&t.s), ==, 2);
    CHECK_RC(weft_shm_sem_init(&t.s, 0x80000000u), -EINVAL);
    CHECK_RC(weft_shm_sem_acquire(NULL), -EINVAL);
}

static void *event_setter(void *arg)
{
    weft_shm_event_set(arg);
    return NULL;
}

static void test_event(void)
{
    weft_shm_event_t e;
    CHECK_OK(weft_shm_event_init(&e));
    CHECK(!weft_shm_event_is_set(&e));
    CHECK_RC(weft_shm_event_wait_until(&e, weft_deadline_in(0.01)), -ETIMEDOUT);
    pthread_t th;
    CHECK(pthread_create(&th, NULL, event_setter, &e) == 0);
    CHECK_OK(weft_shm_event_wait(&e));
    pthread_join(th, NULL);
    CHECK(weft_shm_event_is_set(&e));
    CHECK_OK(weft_shm_event_wait(&e));
    CHECK_OK(weft_shm_event_clear(&e));
    CHECK(!weft_shm_event_is_set(&e));
    CHECK_RC(weft_shm_event_wait(NULL), -EINVAL);
}

/* ---- channel ------------------------------------------------------------------------- */

struct chtest {
    weft_shm_chan_t *c;
    int per_sender, total;
    _Atomic uint64_t sum;
    _Atomic int received;
};

static void chan_worker(void *arg, int index)
{
    struct chtest *t = arg;
    if (index < 2) {
        for (int i = 0; i < t->per_sender; i++) {
            uint64_t v = (uint64_t)index * 1000000 + (uint64_t)i + 1;
            CHECK_OK(weft_shm_chan_send(t->c, &v));
        }
        return;
    }
    uint64_t v;
    int rc;
    while ((rc = weft_shm_chan_recv(t->c, &v)) == 0) {
        atomic_fetch_add(&t->sum, v);
        /* Whoever receives the last element closes the channel, which
         * ends the other receiver. */
        if (atomic_fetch_add(&t->received, 1) + 1 == t->total)
            CHECK_OK(weft_shm_chan_close(t->c));
    }
    CHECK_RC(rc, -EPIPE);
}

static void test_chan_threads(void)
{
    size_t sz = weft_shm_chan_size(8, sizeof(uint64_t));
    CHECK_INT(sz, >, 64);
    void *mem = aligned_alloc(64, (sz + 63) / 64 * 64);
    struct chtest t;
    memset(&t, 0, sizeof t);
    CHECK_OK(weft_shm_chan_init(mem, 8, sizeof(uint64_t), &t.c));
    t.per_sender = (int)check_iters("SHM_CHAN", 20000);
    t.total = 2 * t.per_sender;
    check_parallel(4, chan_worker, &t);
    uint64_t expect = 0;
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < t.per_sender; i++)
            expect += (uint64_t)s * 1000000 + (uint64_t)i + 1;
    CHECK_INT(atomic_load(&t.received), ==, t.total);
    CHECK_U64(atomic_load(&t.sum), ==, expect);
    uint64_t v = 1;
    CHECK_RC(weft_shm_chan_send(t.c, &v), -EPIPE);
    CHECK_RC(weft_shm_chan_recv(t.c, &v), -EPIPE);
    CHECK_INT(weft_shm_chan_len(t.c), ==, 0);
    /* try and deadlines on a fresh channel. */
    weft_shm_chan_t *c;
    CHECK_OK(weft_shm_chan_init(mem, 1, sizeof v, &c));
    CHECK_RC(weft_shm_chan_recv_try(c, &v), -EAGAIN);
    CHECK_OK(weft_shm_chan_send_try(c, &v));
    CHECK_RC(weft_shm_chan_send_try(c, &v), -EAGAIN);
    CHECK_RC(weft_shm_chan_send_until(c, &v, weft_deadline_in(0.01)), -ETIMEDOUT);
    CHECK_INT(weft_shm_chan_len(c), ==, 1);
    CHECK_RC(weft_shm_chan_init(mem, 0, 8, &c), -EINVAL);
    CHECK_RC(weft_shm_chan_init((char *)mem + 1, 1, 8, &c), -EINVAL);
    CHECK_INT(weft_shm_chan_size(SIZE_MAX, 2), ==, 0);
    CHECK_RC(weft_shm_chan_send(NULL, &v), -EINVAL);
    free(mem);
}

/* ---- between a pool's workers and the parent ----------------------------------------- */

struct shared {
    weft_shm_mutex_t m;
    weft_shm_sem_t sem;
    weft_shm_event_t ev;
    uint64_t counter;      /* under m */
    weft_shm_chan_t *chan; /* pointer into the region: valid in workers */
    int64_t array[1000];   /* a shared array */
};

static int worker_task(weft_proc_task_t *t, const void *arg, size_t len)
{
    (void)t;
    (void)len;
    struct shared *s;
    memcpy(&s, arg, sizeof s);
    int idx;
    memcpy(&idx, (const char *)arg + sizeof s, sizeof idx);
    int rc = weft_shm_mutex_lock(&s->m);
    if (rc != 0 && rc != -EOWNERDEAD)
        return rc;
    if (rc == -EOWNERDEAD)
        weft_shm_mutex_consistent(&s->m);
    s->counter++;
    weft_shm_mutex_unlock(&s->m);
    s->array[idx] = (int64_t)idx * 3;
    int64_t v = idx;
    rc = weft_shm_chan_send(s->chan, &v);
    if (rc)
        return rc;
    weft_shm_sem_release(&s->sem, 1);
    return 0;
}

static int wait_event(weft_proc_task_t *t, const void *arg, size_t len)
{
    (void)t;
    (void)len;
    struct shared *s;
    memcpy(&s, arg, sizeof s);
    return weft_shm_event_wait_until(&s->ev, weft_deadline_in(30));
}

/* Lock, and report what the lock said. */
static int lock_report(weft_proc_task_t *t, const void *arg, size_t len)
{
    (void)len;
    struct shared *s;
    memcpy(&s, arg, sizeof s);
    int rc = weft_shm_mutex_lock(&s->m);
    if (rc == -EOWNERDEAD)
        weft_shm_mutex_consistent(&s->m);
    if (rc == 0 || rc == -EOWNERDEAD)
        weft_shm_mutex_unlock(&s->m);
    return weft_proc_reply(t, &rc, sizeof rc);
}

static int die_holding(weft_proc_task_t *t, const void *arg, size_t len)
{
    (void)t;
    (void)len;
    struct shared *s;
    memcpy(&s, arg, sizeof s);
    weft_shm_mutex_lock(&s->m);
    raise(SIGKILL);
    return 0;
}

static void test_with_pool(void)
{
    if (!PROCESSES)
        return;
    weft_shm_t *r;
    CHECK_OK(weft_shm_create(&r, 1 << 20, "weft-test-pool"));
    struct shared *s = weft_shm_alloc(r, sizeof *s, 64);
    weft_shm_mutex_init(&s->m);
    weft_shm_sem_init(&s->sem, 0);
    weft_shm_event_init(&s->ev);
    enum { N = 1000 };
    size_t csz = weft_shm_chan_size(16, sizeof(int64_t));
    CHECK_OK(weft_shm_chan_init(weft_shm_alloc(r, csz, 64), 16, sizeof(int64_t), &s->chan));
    weft_proc_pool_t *p;
    weft_proc_opts_t o = {.workers = 2, .shm = &r, .nshm = 1};
    CHECK_OK(weft_proc_pool_create(&p, &o));
    weft_future_t *fs[N];
    for (int i = 0; i < N; i++) {
        char arg[sizeof s + sizeof i];
        memcpy(arg, &s, sizeof s);
        memcpy(arg + sizeof s, &i, sizeof i);
        CHECK_OK(weft_proc_submit(p, worker_task, arg, sizeof arg, &fs[i]));
    }
    /* Receive every element exactly once through the shared channel. */
    char *seen = calloc(N, 1);
    for (int i = 0; i < N; i++) {
        int64_t v;
        CHECK_OK(weft_shm_chan_recv_until(s->chan, &v, weft_deadline_in(30)));
        CHECK(v >= 0 && v < N);
        CHECK_INT(seen[v], ==, 0);
        seen[v] = 1;
    }
    for (int i = 0; i < N; i++)
        CHECK_OK(weft_shm_sem_acquire_until(&s->sem, weft_deadline_in(30)));
    for (int i = 0; i < N; i++) {
        CHECK_OK(weft_proc_result(fs[i], NULL, NULL));
        weft_future_release(fs[i]);
        CHECK_INT(s->array[i], ==, (int64_t)i * 3);
    }
    CHECK_OK(weft_shm_mutex_lock(&s->m));
    CHECK_U64(s->counter, ==, N);
    CHECK_OK(weft_shm_mutex_unlock(&s->m));
    /* A task dies holding the mutex; the next locker, in another worker, is
     * told and repairs it; then everyone can lock it. */
    weft_future_t *d;
    CHECK_OK(weft_proc_submit(p, die_holding, &s, sizeof s, &d));
    CHECK_RC(weft_proc_result(d, NULL, NULL), WEFT_ECRASHED);
    weft_future_release(d);
    CHECK_OK(weft_proc_submit(p, lock_report, &s, sizeof s, &d));
    const void *data;
    CHECK_OK(weft_proc_result(d, &data, NULL));
    int lrc;
    memcpy(&lrc, data, sizeof lrc);
    CHECK_RC(lrc, -EOWNERDEAD);
    weft_future_release(d);
    CHECK_OK(weft_shm_mutex_lock(&s->m));
    CHECK_OK(weft_shm_mutex_unlock(&s->m));
    /* An event set by the parent wakes a worker. */
    CHECK_OK(weft_proc_submit(p, wait_event, &s, sizeof s, &d));
    weft_shm_event_set(&s->ev);
    CHECK_OK(weft_proc_result(d, NULL, NULL));
    weft_future_release(d);
    free(seen);
    CHECK_OK(weft_proc_pool_free(p));
    CHECK_OK(weft_shm_free(r));
}

/* A sender that dies between putting its element in and waking the
 * receiver (a process can be killed at any instruction): played here by
 * putting an element in by hand, under the lock, and waking nobody. The
 * receiver, asleep already, must still get it (waits look again every
 * 50 ms); it used to sleep for good. The same for a sender and a dead
 * receiver's room. */
struct dead_peer {
    weft_shm_chan_t *c;
    int rc;
    uint64_t v;
};
static void *lone_receiver(void *arg)
{
    struct dead_peer *d = arg;
    d->rc = weft_shm_chan_recv_until(d->c, &d->v, weft_deadline_in(20));
    return NULL;
}
static void *lone_sender(void *arg)
{
    struct dead_peer *d = arg;
    d->rc = weft_shm_chan_send_until(d->c, &d->v, weft_deadline_in(20));
    return NULL;
}
static void test_chan_dead_peer(void)
{
    size_t sz = weft_shm_chan_size(1, sizeof(uint64_t));
    void *mem = aligned_alloc(64, (sz + 63) & ~(size_t)63);
    weft_shm_chan_t *c;
    CHECK_OK(weft_shm_chan_init(mem, 1, sizeof(uint64_t), &c));
    struct weft_shm_chan *in = (struct weft_shm_chan *)c;

    /* A receiver waits; the "sender" puts 42 in and dies before the wake. */
    struct dead_peer d = {c, 1, 0};
    pthread_t th;
    CHECK_OK(pthread_create(&th, NULL, lone_receiver, &d));
    while (atomic_load(&in->recv_waiting) == 0)
        usleep(100);
    CHECK_OK(weft_shm_mutex_lock(&in->lock));
    uint64_t v = 42;
    memcpy(in->buf, &v, sizeof v);
    in->tail++;
    CHECK_OK(weft_shm_mutex_unlock(&in->lock));
    weft_time_t t0 = weft_now();
    CHECK_OK(pthread_join(th, NULL));
    CHECK_OK(d.rc);
    CHECK_U64(d.v, ==, 42);
    /* Woken by its next look, not by its 20 s deadline (after which it
     * would find the element too). */
    CHECK(weft_seconds_between(t0, weft_now()) < 10);

    /* Full; a sender waits; the "receiver" takes the element and dies
     * before the wake. */
    v = 7;
    CHECK_OK(weft_shm_chan_send(c, &v));
    d = (struct dead_peer){c, 1, 8};
    CHECK_OK(pthread_create(&th, NULL, lone_sender, &d));
    while (atomic_load(&in->send_waiting) == 0)
        usleep(100);
    CHECK_OK(weft_shm_mutex_lock(&in->lock));
    in->head++;
    CHECK_OK(weft_shm_mutex_unlock(&in->lock));
    t0 = weft_now();
    CHECK_OK(pthread_join(th, NULL));
    CHECK_OK(d.rc);
    CHECK(weft_seconds_between(t0, weft_now()) < 10);
    CHECK_OK(weft_shm_chan_recv(c, &v));
    CHECK_U64(v, ==, 8);
    free(mem);
}

int main(void)
{
    if (PROCESSES) {
        int r = weft_proc_init();
        /* qemu-user (the AArch64 run) and TSan start threads of their own
         * before main; the fork server then refuses to start, by design. */
        if (r == WEFT_ETHREADED)
            check_skip("this process already runs threads it did not start (qemu-user's or "
                       "TSan's): weft_proc_init refuses to fork (WEFT_ETHREADED), by design");
        if (r != 0) {
            fprintf(stderr, "weft_proc_init: %s\n", weft_strerror(r));
            return 1;
        }
    }
    RUN(test_region);
    RUN(test_mutex_threads);
    RUN(test_mutex_owner_dead_thread);
    RUN(test_mutex_processes);
    RUN(test_sem);
    RUN(test_event);
    RUN(test_chan_threads);
    RUN(test_chan_dead_peer);
    RUN(test_with_pool);
    return check_done();
}
