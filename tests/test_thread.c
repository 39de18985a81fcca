/* weft_thread_t: start/join, join with a deadline, detach races, names,
 * ids, stack sizes, bad input, and a refused pthread_create. */
#define _GNU_SOURCE
#include <sched.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <weft.h>

#include "check.h"
#include "park/park.h"
#include "thread/internal.h"

/* ---- start and join many ------------------------------------------------- */

struct many {
    _Atomic int *runs; /* runs[i]: how often body i ran */
};

static struct many many_ctx;

static void *many_body(void *arg)
{
    intptr_t i = (intptr_t)arg;
    atomic_fetch_add_explicit(&many_ctx.runs[i], 1, memory_order_relaxed);
    return (void *)(i * 3 + 1);
}

static void test_start_join_many(void)
{
    long n = check_iters("THREAD_MANY", 64);
    long rounds = check_iters("THREAD_ROUNDS", 8);
    many_ctx.runs = calloc((size_t)n, sizeof *many_ctx.runs);
    weft_thread_t **h = calloc((size_t)n, sizeof *h);
    CHECK(many_ctx.runs && h);
    for (long r = 0; r < rounds; r++) {
        for (long i = 0; i < n; i++)
            atomic_store(&many_ctx.runs[i], 0);
        for (long i = 0; i < n; i++)
            CHECK_OK(weft_thread_start(&h[i], many_body, (void *)(intptr_t)i, NULL));
        /* Join in reverse order, half of them with a (far) deadline. */
        for (long i = n - 1; i >= 0; i--) {
            void *res = NULL;
            if (i % 2)
                CHECK_OK(weft_thread_join_until(h[i], &res, weft_deadline_in(60)));
            else
                CHECK_OK(weft_thread_join(h[i], &res));
            CHECK_INT((intptr_t)res, ==, i * 3 + 1);
        }
        for (long i = 0; i < n; i++)
            CHECK_INT(atomic_load(&many_ctx.runs[i]), ==, 1);
    }
    /* A NULL result pointer is allowed. */
    CHECK_OK(weft_thread_start(&h[0], many_body, (void *)0, NULL));
    CHECK_OK(weft_thread_join(h[0], NULL));
    free(h);
    free(many_ctx.runs);
}

/* ---- join_until on a blocked thread ------------------------------------------ */

static weft_mutex_t gate = WEFT_MUTEX_INIT;

/* Blocks until the test releases `gate`. */
static void *gated_body(void *arg)
{
    if (weft_mutex_lock(&gate) != 0)
        return (void *)-1;
    weft_mutex_unlock(&gate);
    return arg;
}

static void test_join_until_timeout(void)
{
    CHECK_OK(weft_mutex_lock(&gate));
    weft_thread_t *t;
    CHECK_OK(weft_thread_start(&t, gated_body, (void *)42, NULL));
    weft_time_t t0 = weft_now();
    weft_time_t dl = weft_deadline_in_ms(50);
    void *res = (void *)7;
    CHECK_RC(weft_thread_join_until(t, &res, dl), -ETIMEDOUT);
    CHECK_INT(weft_now(), >=, dl);
    CHECK_INT(weft_now() - t0, >=, 50000000);
    CHECK((intptr_t)res == 7); /* untouched on timeout */
    CHECK(!weft_thread_is_done(t));
    /* An expired deadline behaves like a try. */
    CHECK_RC(weft_thread_join_until(t, &res, 0), -ETIMEDOUT);
    CHECK_RC(weft_thread_join_until(t, &res, weft_now()), -ETIMEDOUT);
    /* A negative deadline is refused and leaves t joinable. */
    CHECK_RC(weft_thread_join_until(t, &res, -1), -EINVAL);
    CHECK_OK(weft_mutex_unlock(&gate));
    /* Wait for is_done without joining: it must become true. */
    while (!weft_thread_is_done(t))
        weft_thread_yield();
    CHECK_OK(weft_thread_join(t, &res));
    CHECK_INT((intptr_t)res, ==, 42);
}

/* Another thread joins a blocked thread with a long deadline and is woken by
 * the thread finishing (the unpark path). */
struct joiner_arg {
    weft_thread_t *target;
    void *result;
};

static void *joiner_body(void *p)
{
    struct joiner_arg *a = p;
    int r = weft_thread_join_until(a->target, &a->result, weft_deadline_in(60));
    return (void *)(intptr_t)r;
}

static void test_join_wakes_parked_joiner(void)
{
    long rounds = check_iters("THREAD_JOIN_WAKE", 20);
    for (long i = 0; i < rounds; i++) {
        CHECK_OK(weft_mutex_lock(&gate));
        struct joiner_arg a = {NULL, NULL};
        CHECK_OK(weft_thread_start(&a.target, gated_body, (void *)(intptr_t)(100 + i), NULL));
        weft_thread_t *j;
        CHECK_OK(weft_thread_start(&j, joiner_body, &a, NULL));
        /* Give the joiner a chance to park (coverage only: either order
         * is correct). */
        if (i % 2)
            weft_sleep(0.002);
        CHECK_OK(weft_mutex_unlock(&gate));
        void *r;
        CHECK_OK(weft_thread_join(j, &r));
        CHECK_RC((intptr_t)r, 0);
        CHECK_INT((intptr_t)a.result, ==, 100 + i);
    }
}

/* ---- joining or detaching oneself ----------------------------------------------- */

struct self_arg {
    weft_mutex_t m;        /* held by the test until `self` is stored */
    weft_thread_t *self;
    _Atomic int detached;  /* set by a self-detaching thread */
};

static void *join_self_body(void *p)
{
    struct self_arg *a = p;
    weft_mutex_lock(&a->m);
    weft_thread_t *self = a->self;
    weft_mutex_unlock(&a->m);
    int r1 = weft_thread_join(self, NULL);
    int r2 = weft_thread_join_until(self, NULL, weft_deadline_in(1));
    return (void *)(intptr_t)(r1 == -EDEADLK && r2 == -EDEADLK ? 1 : 0);
}

static void *detach_self_body(void *p)
{
    struct self_arg *a = p;
    weft_mutex_lock(&a->m);
    weft_thread_t *self = a->self;
    weft_mutex_unlock(&a->m);
    int r = weft_thread_detach(self);
    atomic_store(&a->detached, r == 0 ? 1 : -1);
    return NULL;
}

static void test_join_self(void)
{
    struct self_arg a = {.m = WEFT_MUTEX_INIT};
    CHECK_OK(weft_mutex_lock(&a.m));
    weft_thread_t *t;
    CHECK_OK(weft_thread_start(&t, join_self_body, &a, NULL));
    a.self = t;
    CHECK_OK(weft_mutex_unlock(&a.m));
    void *r;
    CHECK_OK(weft_thread_join(t, &r));
    CHECK_INT((intptr_t)r, ==, 1);

    /* A thread may detach itself; its handle is freed when it ends (the
     * leak checker sees to that). */
    struct self_arg b = {.m = WEFT_MUTEX_INIT};
    CHECK_OK(weft_mutex_lock(&b.m));
    CHECK_OK(weft_thread_start(&t, detach_self_body, &b, NULL));
    b.self = t;
    CHECK_OK(weft_mutex_unlock(&b.m));
    while (atomic_load(&b.detached) == 0)
        weft_thread_yield();
    CHECK_INT(atomic_load(&b.detached), ==, 1);
}

/* ---- detach racing with the thread's end --------------------------------------- */

static _Atomic int *detach_runs;

static void *detach_body(void *arg)
{
    intptr_t i = (intptr_t)arg;
    atomic_fetch_add_explicit(&detach_runs[i], 1, memory_order_relaxed);
    /* Some threads end at once, some after a moment, so that detach lands
     * before, during and after their end. */
    if (i % 3 == 1)
        sched_yield();
    return NULL;
}

static void test_detach_race(void)
{
    long n = check_iters("THREAD_DETACH", 400);
    detach_runs = calloc((size_t)n, sizeof *detach_runs);
    CHECK(detach_runs);
    for (long i = 0; i < n; i++) {
        weft_thread_t *t;
        CHECK_OK(weft_thread_start(&t, detach_body, (void *)(intptr_t)i, NULL));
        if (i % 4 == 0) {
            /* Surely after the end: the detacher frees the handle. */
            while (!weft_thread_is_done(t))
                weft_thread_yield();
        }
        CHECK_OK(weft_thread_detach(t));
    }
    /* Every body ran exactly once. Detached threads are not joinable, so
     * wait for the counts (each is set before its thread ends). */
    for (long i = 0; i < n; i++) {
        while (atomic_load(&detach_runs[i]) == 0)
            weft_thread_yield();
    }
    for (long i = 0; i < n; i++)
        CHECK_INT(atomic_load(&detach_runs[i]), ==, 1);
    /* The array must outlive the threads' last access, which is the
     * increment above: it is safe to free now. */
    free(detach_runs);
    detach_runs = NULL;
}

/* Detached threads ending by pthread_exit free their handle too, and joined
 * ones report the pthread_exit value. */
static void *exit_body(void *arg)
{
    pthread_exit(arg);
    return NULL;
}

static void test_pthread_exit(void)
{
    weft_thread_t *t;
    CHECK_OK(weft_thread_start(&t, exit_body, (void *)77, NULL));
    void *r = NULL;
    CHECK_OK(weft_thread_join_until(t, &r, weft_deadline_in(60)));
    CHECK_INT((intptr_t)r, ==, 77);
    CHECK_OK(weft_thread_start(&t, exit_body, NULL, NULL));
    while (!weft_thread_is_done(t))
        weft_thread_yield();
    CHECK_OK(weft_thread_detach(t));
}

/* ---- names ---------------------------------------------------------------------------- */

struct name_report {
    char via_get[64];
    char via_proc[64];
    char after_set[64];
    char small[4];
    int rc_set, rc_get, rc_small;
    int bad1, bad2, bad3;
};

static void read_comm(char *buf, size_t size)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/comm", weft_thread_native_id());
    buf[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    if (!fgets(buf, (int)size, f))
        buf[0] = '\0';
    fclose(f);
    buf[strcspn(buf, "\n")] = '\0';
}

static void *name_body(void *p)
{
    struct name_report *r = p;
    r->rc_get = weft_thread_get_name(r->via_get, sizeof r->via_get);
    read_comm(r->via_proc, sizeof r->via_proc);
    /* 14 ASCII bytes and a 2-byte character: the cut must not split it. */
    r->rc_set = weft_thread_set_name("abcdefghijklmn\xc3\xa9xyz");
    weft_thread_get_name(r->after_set, sizeof r->after_set);
    r->rc_small = weft_thread_get_name(r->small, sizeof r->small);
    r->bad1 = weft_thread_set_name(NULL);
    r->bad2 = weft_thread_get_name(NULL, 16);
    r->bad3 = weft_thread_get_name(r->small, 0);
    return NULL;
}

static void test_names(void)
{
    struct name_report r;
    memset(&r, 0, sizeof r);
    weft_thread_opts_t o = {.name = "weft-worker-1234567890"};
    weft_thread_t *t;
    CHECK_OK(weft_thread_start(&t, name_body, &r, &o));
    CHECK_OK(weft_thread_join(t, NULL));
    CHECK_OK(r.rc_get);
    CHECK(strcmp(r.via_get, "weft-worker-123") == 0);
    CHECK(strcmp(r.via_proc, "weft-worker-123") == 0);
    CHECK_OK(r.rc_set);
    CHECK(strcmp(r.after_set, "abcdefghijklmn") == 0);
    CHECK_OK(r.rc_small);
    CHECK(strcmp(r.small, "abc") == 0);
    CHECK_RC(r.bad1, -EINVAL);
    CHECK_RC(r.bad2, -EINVAL);
    CHECK_RC(r.bad3, -EINVAL);

    /* A short name is kept whole; the name string may be freed after start. */
    char *name = strdup("short");
    o.name = name;
    CHECK_OK(weft_thread_start(&t, name_body, &r, &o));
    free(name);
    CHECK_OK(weft_thread_join(t, NULL));
    CHECK(strcmp(r.via_get, "short") == 0);
    CHECK(strcmp(r.via_proc, "short") == 0);
}

/* ---- ids ------------------------------------------------------------------------------------ */

struct id_report {
    uint64_t id, self_id, thread_id;
    int native, gettid_;
};

static void *id_body(void *p)
{
    struct id_report *r = p;
    r->id = weft_thread_id();
    r->self_id = weft__self_id();
    r->thread_id = weft__thread_id();
    r->native = weft_thread_native_id();
    r->gettid_ = (int)syscall(SYS_gettid);
    return NULL;
}

static void test_ids(void)
{
    enum { N = 8 };
    struct id_report r[N];
    weft_thread_t *t[N];
    for (int i = 0; i < N; i++)
        CHECK_OK(weft_thread_start(&t[i], id_body, &r[i], NULL));
    for (int i = 0; i < N; i++)
        CHECK_OK(weft_thread_join(t[i], NULL));
    uint64_t main_id = weft_thread_id();
    CHECK_U64(main_id, !=, 0);
    CHECK_U64(main_id, ==, weft__self_id());
    CHECK_U64(main_id, ==, weft_thread_id());
    CHECK_INT(weft_thread_native_id(), ==, getpid());
    for (int i = 0; i < N; i++) {
        CHECK_U64(r[i].id, !=, 0);
        CHECK_U64(r[i].id, ==, r[i].self_id);
        CHECK_U64(r[i].id, ==, r[i].thread_id);
        CHECK_U64(r[i].id, !=, main_id);
        CHECK_INT(r[i].native, ==, r[i].gettid_);
        CHECK_INT(r[i].native, !=, getpid());
        for (int j = 0; j < i; j++) {
            CHECK_U64(r[i].id, !=, r[j].id);
        }
    }
}

/* ---- stack size -------------------------------------------------------------------------------- */

static void *stack_body(void *p)
{
    size_t *got = p;
    pthread_attr_t a;
    *got = 0;
    if (pthread_getattr_np(pthread_self(), &a) == 0) {
        pthread_attr_getstacksize(&a, got);
        pthread_attr_destroy(&a);
    }
    /* Use some of it. */
    volatile char buf[4096];
    buf[0] = 1;
    buf[sizeof buf - 1] = buf[0];
    return NULL;
}

static void test_stack_size(void)
{
    size_t sizes[] = {64 * 1024, 1024 * 1024 + 1, 8u << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t got = 0;
        weft_thread_opts_t o = {.stack_size = sizes[i]};
        weft_thread_t *t;
        CHECK_OK(weft_thread_start(&t, stack_body, &got, &o));
        CHECK_OK(weft_thread_join(t, NULL));
        CHECK_U64(got, >=, sizes[i]);
    }
}

/* ---- bad input and a refused create ----------------------------------------------------------- */

static _Atomic int never_runs;

static void *never_body(void *p)
{
    (void)p;
    atomic_fetch_add(&never_runs, 1);
    return NULL;
}

static void test_bad_input(void)
{
    weft_thread_t *const sentinel = (weft_thread_t *)(uintptr_t)0x1234;
    weft_thread_t *t = sentinel;
    CHECK_RC(weft_thread_start(NULL, never_body, NULL, NULL), -EINVAL);
    CHECK_RC(weft_thread_start(&t, NULL, NULL, NULL), -EINVAL);
    CHECK(t == sentinel);

    weft_thread_opts_t o = {.stack_size = 1024};
    CHECK_RC(weft_thread_start(&t, never_body, NULL, &o), -EINVAL);
    o.stack_size = 16 * 1024 - 1;
    CHECK_RC(weft_thread_start(&t, never_body, NULL, &o), -EINVAL);
    o.stack_size = SIZE_MAX;
    int r = weft_thread_start(&t, never_body, NULL, &o);
    CHECK(r == -EINVAL || r == -EAGAIN || r == -ENOMEM);

    long nconf = sysconf(_SC_NPROCESSORS_CONF);
    int bad_cpus[] = {-1, (int)nconf, 100000, INT32_MAX};
    for (size_t i = 0; i < sizeof bad_cpus / sizeof bad_cpus[0]; i++) {
        int cpus[2] = {0, bad_cpus[i]};
        weft_thread_opts_t oc = {.cpus = cpus, .ncpus = 2};
        CHECK_RC(weft_thread_start(&t, never_body, NULL, &oc), -EINVAL);
    }
    weft_thread_opts_t on = {.cpus = NULL, .ncpus = 1};
    CHECK_RC(weft_thread_start(&t, never_body, NULL, &on), -EINVAL);
    int zero = 0;
    weft_thread_opts_t oz = {.cpus = &zero, .ncpus = 0};
    CHECK_RC(weft_thread_start(&t, never_body, NULL, &oz), -EINVAL);
    CHECK(t == sentinel);

    CHECK_RC(weft_thread_join(NULL, NULL), -EINVAL);
    CHECK_RC(weft_thread_join_until(NULL, NULL, WEFT_FOREVER), -EINVAL);
    CHECK_RC(weft_thread_detach(NULL), -EINVAL);
    CHECK(!weft_thread_is_done(NULL));
    CHECK_INT(atomic_load(&never_runs), ==, 0);

    /* A zeroed options struct means the defaults. */
    weft_thread_opts_t od;
    memset(&od, 0, sizeof od);
    CHECK_OK(weft_thread_start(&t, never_body, NULL, &od));
    CHECK_OK(weft_thread_join(t, NULL));
    CHECK_INT(atomic_load(&never_runs), ==, 1);
    atomic_store(&never_runs, 0);
}

static void test_create_refused(void)
{
    weft_thread_t *const sentinel = (weft_thread_t *)(uintptr_t)0x1234;
    weft_thread_t *t = sentinel;
    weft_thread_opts_t o = {.name = "refused", .stack_size = 1 << 20};
    int cpu0 = 0;
    atomic_store(&weft__thread_fail_create, 2);
    CHECK_RC(weft_thread_start(&t, never_body, NULL, &o), -EAGAIN);
    o.cpus = &cpu0;
    o.ncpus = 1;
    CHECK_RC(weft_thread_start(&t, never_body, NULL, &o), -EAGAIN);
    CHECK(t == sentinel);
    CHECK_INT(atomic_load(&weft__thread_fail_create), ==, 0);
    /* Nothing ran, nothing leaked (LeakSanitizer), and the next start works. */
    CHECK_INT(atomic_load(&never_runs), ==, 0);
    CHECK_OK(weft_thread_start(&t, never_body, NULL, NULL));
    CHECK_OK(weft_thread_join(t, NULL));
    CHECK_INT(atomic_load(&never_runs), ==, 1);
}

int main(void)
{
    RUN(test_start_join_many);
    RUN(test_join_until_timeout);
    RUN(test_join_wakes_parked_joiner);
    RUN(test_join_self);
    RUN(test_detach_race);
    RUN(test_pthread_exit);
    RUN(test_names);
    RUN(test_ids);
    RUN(test_stack_size);
    RUN(test_bad_input);
    RUN(test_create_refused);
    return check_done();
}
