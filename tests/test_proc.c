/*
 * test_proc.c - the process pool: results, maps, crashes, deadlines,
 * cancelling, initializers, replacement, bad input, and the safe start.
 *
 * Under TSan: TSan may start a thread of its own; if it already has when
 * main starts, weft_proc_init refuses to fork (WEFT_ETHREADED, by design)
 * and the test is skipped (77). Otherwise everything runs except the
 * refusal test (the server must be started first) and, when the forked
 * child of test_parent_death finds TSan's thread back, that test. TSan does
 * not follow memory shared with the workers; it checks the parent's threads
 * (the dispatcher against the callers).
 */
#include <dirent.h>
#include <errno.h>
#include <sys/resource.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <weft.h>

#include "check.h"
#include "proc/internal.h"

/* Let a crashing task die by its signal, as it does without sanitizers
 * (their handlers would report and exit(1) instead). */
#ifdef WEFT_SANITIZE_ADDRESS
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "handle_segv=0:handle_sigbus=0"; }
#endif
#ifdef WEFT_SANITIZE_THREAD
const char *__tsan_default_options(void);
const char *__tsan_default_options(void) { return "handle_segv=0:handle_sigbus=0"; }
#endif

static int g_init_value; /* set by the initializer, in workers */

static int square(weft_proc_task_t *t, const void *a, size_t n)
{
    int64_t x;
    if (n != sizeof x)
        return -EINVAL;
    memcpy(&x, a, sizeof x);
    x *= x;
    return weft_proc_reply(t, &x, sizeof x);
}

/* square after ~30 us of work, so that a map lasts long enough to be hit. */
static int square_slow(weft_proc_task_t *t, const void *a, size_t n)
{
    weft_time_t end = weft_now() + 30000;
    while (weft_now() < end)
        ;
    return square(t, a, n);
}

static int echo(weft_proc_task_t *t, const void *a, size_t n)
{
    return weft_proc_reply(t, a, n);
}

static int echo_inplace(weft_proc_task_t *t, const void *a, size_t n)
{
    void *buf;
    int rc = weft_proc_reply_buf(t, n, &buf);
    if (rc == 0)
        memcpy(buf, a, n);
    return rc;
}

static int nothing(weft_proc_task_t *t, const void *a, size_t n)
{
    (void)t, (void)a, (void)n;
    return 0;
}

static int fail_eio(weft_proc_task_t *t, const void *a, size_t n)
{
    (void)a, (void)n;
    weft_proc_reply(t, "x", 1); /* dropped: the task fails */
    return -EIO;
}

static int twice(weft_proc_task_t *t, const void *a, size_t n)
{
    (void)a, (void)n;
    weft_proc_reply(t, "first-longer", 12);
    return weft_proc_reply(t, "2nd", 3);
}

static int segv(weft_proc_task_t *t, const void *a, size_t n)
{
    (void)t, (void)a, (void)n;
    raise(SIGSEGV);
    return 0;
}

static int do_abort(weft_proc_task_t *t, const void *a, size_t n)
{
    (void)t, (void)a, (void)n;
    abort();
}

static int do_exit3(weft_proc_task_t *t, const void *a, size_t n)
{
    (void)t, (void)a, (void)n;
    _exit(3);
}

static int sleep_ms(weft_proc_task_t *t, const void *a, size_t n)
{
    (void)t;
    int ms = 0;
    if (n == sizeof ms)
        memcpy(&ms, a, sizeof ms);
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
    return 0;
}

static int report_pid(weft_proc_task_t *t, const void *a, size_t n)
{
    (void)a, (void)n;
    int v[2] = {(int)getpid(), g_init_value};
    return weft_proc_reply(t, v, sizeof v);
}

static int init_ok(const void *a, size_t n)
{
    if (n != sizeof(int))
        return -EINVAL;
    memcpy(&g_init_value, a, sizeof(int));
    return 0;
}

static int init_fail(const void *a, size_t n)
{
    (void)a, (void)n;
    return -EACCES;
}

/* Reads a word through a pointer that was valid in the parent. */
static int deref(weft_proc_task_t *t, const void *a, size_t n)
{
    (void)n;
    const int64_t *p;
    memcpy(&p, a, sizeof p);
    int64_t v = *p;
    return weft_proc_reply(t, &v, sizeof v);
}

/* Checks whether an fd number is open in the worker. */
static int fd_open(weft_proc_task_t *t, const void *a, size_t n)
{
    (void)n;
    int fd;
    memcpy(&fd, a, sizeof fd);
    int r = fcntl(fd, F_GETFD) < 0 ? -errno : 0;
    return weft_proc_reply(t, &r, sizeof r);
}

static int sum_bytes(weft_proc_task_t *t, const void *a, size_t n)
{
    uint64_t s = 0;
    for (size_t i = 0; i < n; i++)
        s += ((const unsigned char *)a)[i];
    return weft_proc_reply(t, &s, sizeof s);
}

/* ---- helpers -------------------------------------------------------------- */

/* Count processes whose parent is ppid; zombies separately. */
static void count_children(int ppid, int *alive, int *zombies)
{
    *alive = *zombies = 0;
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        char path[300], buf[512];
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        size_t k = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[k] = 0;
        char *rp = strrchr(buf, ')');
        if (!rp)
            continue;
        char st;
        int pp;
        if (sscanf(rp + 2, "%c %d", &st, &pp) != 2 || pp != ppid)
            continue;
        if (st == 'Z')
            (*zombies)++;
        else
            (*alive)++;
    }
    if (d)
        closedir(d);
}

static int count_memfds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char path[300], target[256];
        snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
        ssize_t k = readlink(path, target, sizeof target - 1);
        if (k > 0) {
            target[k] = 0;
            n += strncmp(target, "/memfd:", 7) == 0;
        }
    }
    if (d)
        closedir(d);
    return n;
}

static weft_proc_pool_t *make_pool(int workers)
{
    weft_proc_pool_t *p = NULL;
    weft_proc_opts_t o = {.workers = workers};
    int rc = weft_proc_pool_create(&p, &o);
    if (rc != 0) {
        fprintf(stderr, "pool create: %s\n", weft_strerror(rc));
        exit(1);
    }
    return p;
}

/* ---- the safe start -------------------------------------------------------- */

static pthread_barrier_t g_bar;
static void *parked_thread(void *arg)
{
    (void)arg;
    pthread_barrier_wait(&g_bar);
    pthread_barrier_wait(&g_bar);
    return NULL;
}

/* Runs first: with a second thread running and no fork server, both init
 * and pool creation refuse with WEFT_ETHREADED (no deadlock); once the
 * thread is gone, init works. */
static void test_threaded_start_refused(void)
{
    pthread_t th;
    pthread_barrier_init(&g_bar, NULL, 2);
    CHECK(pthread_create(&th, NULL, parked_thread, NULL) == 0);
    pthread_barrier_wait(&g_bar);
    weft_proc_pool_t *p = NULL;
    CHECK_RC(weft_proc_pool_create(&p, NULL), WEFT_ETHREADED);
    CHECK(p == NULL);
    CHECK_RC(weft_proc_init(), WEFT_ETHREADED);
    CHECK_INT(weft_proc_server_pid(), ==, 0);
    pthread_barrier_wait(&g_bar);
    pthread_join(th, NULL);
    pthread_barrier_destroy(&g_bar);
    /* /proc/self/task may show the joined thread for a moment. */
    int rc;
    for (int i = 0; i < 1000 && (rc = weft_proc_init()) == WEFT_ETHREADED; i++)
        usleep(1000);
    CHECK_OK(rc);
    CHECK_OK(weft_proc_init()); /* again: harmless */
    CHECK_INT(weft_proc_server_pid(), >, 0);
}

/* ---- results ------------------------------------------------------------------- */

static void test_submit_results(void)
{
    weft_proc_pool_t *p = make_pool(2);
    enum { N = 200 };
    weft_future_t *fs[N];
    for (int64_t i = 0; i < N; i++)
        CHECK_OK(weft_proc_submit(p, square, &i, sizeof i, &fs[i]));
    for (int64_t i = 0; i < N; i++) {
        const void *d;
        size_t len;
        CHECK_OK(weft_proc_result(fs[i], &d, &len));
        CHECK_INT(len, ==, 8);
        int64_t v;
        memcpy(&v, d, 8);
        CHECK_INT(v, ==, i * i);
        /* The raw future value is a weft_proc_bytes_t. */
        void *raw;
        CHECK_OK(weft_future_get(fs[i], &raw));
        CHECK_INT(((weft_proc_bytes_t *)raw)->len, ==, 8);
        CHECK_INT((uintptr_t)((weft_proc_bytes_t *)raw)->data % 16, ==, 0);
        weft_future_release(fs[i]);
    }
    /* Empty result, task error, reply twice. */
    weft_future_t *f;
    const void *d;
    size_t len = 99;
    CHECK_OK(weft_proc_submit(p, nothing, NULL, 0, &f));
    CHECK_OK(weft_proc_result(f, &d, &len));
    CHECK(d != NULL);
    CHECK_INT(len, ==, 0);
    weft_future_release(f);
    CHECK_OK(weft_proc_submit(p, fail_eio, NULL, 0, &f));
    CHECK_RC(weft_proc_result(f, &d, &len), -EIO);
    CHECK(d == NULL);
    weft_future_release(f);
    CHECK_OK(weft_proc_submit(p, twice, NULL, 0, &f));
    CHECK_OK(weft_proc_result(f, &d, &len));
    CHECK_INT(len, ==, 3);
    CHECK(memcmp(d, "2nd", 3) == 0);
    weft_future_release(f);
    CHECK_OK(weft_proc_pool_free(p));
}

static void test_large_buffers(void)
{
    weft_proc_opts_t o = {.workers = 2, .ring_size = 64 * 1024, .arena_size = 4 << 20};
    weft_proc_pool_t *p;
    CHECK_OK(weft_proc_pool_create(&p, &o));
    /* 1 MiB: larger than the ring's inline limit, so through the arena, in
     * both directions, copying and in place. */
    size_t n = 1 << 20;
    unsigned char *buf = malloc(n);
    for (size_t i = 0; i < n; i++)
        buf[i] = (unsigned char)(i * 7 + 3);
    weft_proc_fn fns[2] = {echo, echo_inplace};
    for (int k = 0; k < 2; k++) {
        weft_future_t *f;
        CHECK_OK(weft_proc_submit(p, fns[k], buf, n, &f));
        const void *d;
        size_t len;
        CHECK_OK(weft_proc_result(f, &d, &len));
        CHECK_INT(len, ==, n);
        CHECK(memcmp(d, buf, n) == 0);
        weft_future_release(f);
    }
    /* Zero copy: fill an arena buffer and pass it. */
    void *sb;
    CHECK_OK(weft_proc_buf_alloc(p, n, &sb));
    CHECK_INT((uintptr_t)sb % 64, ==, 0);
    memcpy(sb, buf, n);
    uint64_t expect = 0;
    for (size_t i = 0; i < n; i++)
        expect += buf[i];
    weft_future_t *f;
    CHECK_OK(weft_proc_submit_ex(p, sum_bytes, sb, n, 0, WEFT_PROC_ARG_SHARED, &f));
    const void *d;
    CHECK_OK(weft_proc_result(f, &d, NULL));
    uint64_t got;
    memcpy(&got, d, 8);
    CHECK_U64(got, ==, expect);
    weft_future_release(f);
    /* A submitted buffer belongs to the pool: freeing it is refused. */
    CHECK_RC(weft_proc_buf_free(p, sb), -EINVAL);
    CHECK_OK(weft_proc_buf_alloc(p, 100, &sb));
    CHECK_OK(weft_proc_buf_free(p, sb));
    CHECK_RC(weft_proc_buf_free(p, sb), -EINVAL);
    /* Too large for the arena: a clear error, nothing runs. */
    size_t big = (size_t)8 << 20;
    unsigned char *huge = calloc(1, big);
    f = NULL;
    CHECK_RC(weft_proc_submit(p, echo, huge, big, &f), -EMSGSIZE);
    CHECK(f == NULL);
    CHECK_RC(weft_proc_buf_alloc(p, big, &sb), -EMSGSIZE);
    /* Result too large for the arena: the task sees the error. */
    free(huge);
    free(buf);
    CHECK_OK(weft_proc_pool_free(p));
}

/* A done-callback runs on the dispatcher at the instant the future
 * resolves: it records whether the whole arena could be taken then. */
struct arena_probe {
    weft_proc_pool_t *p;
    size_t size;
    int rc;
    weft_event_t ran; /* callbacks run after the waiters are woken */
};

static void probe_arena(weft_future_t *f, void *arg)
{
    (void)f;
    struct arena_probe *a = arg;
    void *b;
    a->rc = weft_proc_buf_alloc(a->p, a->size, &b);
    if (a->rc == 0)
        weft_proc_buf_free(a->p, b);
    weft_event_set(&a->ran);
}

/* A task's arena runs (its argument's and its result's) are given back
 * before its future resolves: whoever the result wakes may allocate the
 * whole arena at once. (They used to be given back just after: on a
 * loaded machine the woken caller's allocation failed with -ENOMEM.) */
static void test_arena_free_before_resolve(void)
{
    size_t arena = (size_t)4 << 20, n = (size_t)1 << 20;
    weft_proc_opts_t o = {.workers = 1, .ring_size = 64 * 1024, .arena_size = arena};
    weft_proc_pool_t *p;
    CHECK_OK(weft_proc_pool_create(&p, &o));
    unsigned char *buf = malloc(n);
    for (size_t i = 0; i < n; i++)
        buf[i] = (unsigned char)(i * 13 + 1);
    int rounds = (int)check_iters("PROC_ARENA_ROUNDS", 20);
    weft_proc_fn fns[2] = {echo, echo_inplace};
    for (int r = 0; r < rounds; r++) {
        /* Copied and zero-copy arguments; copied and in-place results. */
        struct arena_probe a = {p, arena, 1, {0}};
        weft_event_init(&a.ran);
        weft_future_t *f;
        if (r % 2 == 0) {
            CHECK_OK(weft_proc_submit(p, fns[(r / 2) % 2], buf, n, &f));
        } else {
            void *sb;
            CHECK_OK(weft_proc_buf_alloc(p, n, &sb));
            memcpy(sb, buf, n);
            CHECK_OK(weft_proc_submit_ex(p, fns[(r / 2) % 2], sb, n, 0, WEFT_PROC_ARG_SHARED,
                                         &f));
        }
        CHECK_OK(weft_future_on_done(f, probe_arena, &a));
        const void *d;
        size_t len;
        int rc = weft_proc_result(f, &d, &len);
        weft_event_wait(&a.ran); /* before any CHECK: a is on this stack */
        CHECK_OK(rc);
        CHECK_INT(len, ==, n);
        CHECK(memcmp(d, buf, n) == 0);
        weft_future_release(f);
        CHECK_OK(a.rc);
        /* And from the caller's side, at once. */
        void *all;
        CHECK_OK(weft_proc_buf_alloc(p, arena, &all));
        CHECK_OK(weft_proc_buf_free(p, all));
    }
    free(buf);
    CHECK_OK(weft_proc_pool_free(p));
}

static void test_map(void)
{
    weft_proc_pool_t *p = make_pool(2);
    size_t n = (size_t)check_iters("PROC_MAP", 20000);
    int64_t *in = malloc(n * 8), *out = malloc(n * 8);
    int *errs = malloc(n * sizeof(int));
    for (size_t i = 0; i < n; i++)
        in[i] = (int64_t)i - 5;
    size_t chunks[] = {1, 7, 1000, 0, n + 5};
    for (size_t c = 0; c < sizeof chunks / sizeof *chunks; c++) {
        memset(out, 0xff, n * 8);
        CHECK_OK(weft_proc_map(p, square, in, 8, n, out, 8, errs, chunks[c]));
        for (size_t i = 0; i < n; i++) {
            CHECK_INT(errs[i], ==, 0);
            CHECK_INT(out[i], ==, in[i] * in[i]);
        }
    }
    /* Wrong result size: every item fails with -EMSGSIZE. */
    int32_t small[4];
    CHECK_RC(weft_proc_map(p, square, in, 8, 4, small, 4, errs, 2), -EMSGSIZE);
    for (int i = 0; i < 4; i++)
        CHECK_RC(errs[i], -EMSGSIZE);
    /* Per-item errors: the wrong item size makes square fail with -EINVAL. */
    CHECK_RC(weft_proc_map(p, square, in, 4, 6, NULL, 0, errs, 4), -EINVAL);
    /* Empty map. */
    CHECK_OK(weft_proc_map(p, square, NULL, 8, 0, NULL, 0, NULL, 1));
    /* Unordered: every index exactly once, results right. */
    weft_proc_iter_t *it;
    CHECK_OK(weft_proc_imap_unordered(p, square, in, 8, n, 3, &it));
    char *seen = calloc(n, 1);
    size_t idx, len, count = 0;
    int err;
    const void *d;
    while (weft_proc_iter_next(it, &idx, &err, &d, &len, weft_deadline_in(30)) == 0) {
        CHECK_INT(err, ==, 0);
        CHECK(idx < n);
        CHECK_INT(seen[idx], ==, 0);
        seen[idx] = 1;
        int64_t v;
        memcpy(&v, d, 8);
        CHECK_INT(v, ==, in[idx] * in[idx]);
        count++;
    }
    CHECK_INT(count, ==, n);
    CHECK_RC(weft_proc_iter_next(it, &idx, &err, &d, &len, WEFT_FOREVER), -EPIPE);
    CHECK_OK(weft_proc_iter_free(it));
    /* Freed early: the rest is cancelled, and free returns. */
    CHECK_OK(weft_proc_imap_unordered(p, square, in, 8, n, 1, &it));
    CHECK_OK(weft_proc_iter_next(it, &idx, &err, &d, &len, weft_deadline_in(30)));
    CHECK_OK(weft_proc_iter_free(it));
    free(seen);
    free(in);
    free(out);
    free(errs);
    CHECK_OK(weft_proc_pool_free(p));
}

/* ---- crashes, deadlines, cancelling -------------------------------------------------- */

static void test_crashes(void)
{
    weft_proc_pool_t *p = make_pool(2);
    struct {
        weft_proc_fn fn;
        int sig, code;
    } cases[] = {{segv, SIGSEGV, 0}, {do_abort, SIGABRT, 0}, {do_exit3, 0, 3}};
    for (int c = 0; c < 3; c++) {
        /* A crash among good tasks: only the crashing one fails. */
        weft_future_t *good[20], *bad;
        for (int64_t i = 0; i < 10; i++)
            CHECK_OK(weft_proc_submit(p, square, &i, 8, &good[i]));
        CHECK_OK(weft_proc_submit(p, cases[c].fn, NULL, 0, &bad));
        for (int64_t i = 10; i < 20; i++)
            CHECK_OK(weft_proc_submit(p, square, &i, 8, &good[i]));
        CHECK_RC(weft_proc_result(bad, NULL, NULL), WEFT_ECRASHED);
        weft_proc_exit_t x;
        CHECK_OK(weft_proc_exit_info(p, bad, &x));
        CHECK_INT(x.signal, ==, cases[c].sig);
        CHECK_INT(x.exit_code, ==, cases[c].code);
        CHECK_RC(x.error, WEFT_ECRASHED);
        CHECK_INT(x.pid, >, 0);
        for (int64_t i = 0; i < 20; i++) {
            const void *d;
            CHECK_OK(weft_proc_result(good[i], &d, NULL));
            int64_t v;
            memcpy(&v, d, 8);
            CHECK_INT(v, ==, i * i);
            CHECK_RC(weft_proc_exit_info(p, good[i], &x), -ENOENT);
            weft_future_release(good[i]);
        }
        weft_future_release(bad);
    }
    weft_proc_stats_t st;
    CHECK_OK(weft_proc_stats(p, &st));
    CHECK_U64(st.crashed, ==, 3);
    /* The third replacement may still be starting. */
    for (int i = 0; i < 5000 && st.spawned < 5; i++) {
        usleep(1000);
        weft_proc_stats(p, &st);
    }
    CHECK_U64(st.spawned, ==, 5);
    /* SIGKILL from outside, to an idle worker: it is replaced. */
    int pid0 = weft_proc_worker_pid(p, 0);
    CHECK_INT(pid0, >, 0);
    CHECK_OK(weft_proc_signal_worker(p, 0, SIGKILL));
    for (int i = 0; i < 5000; i++) {
        int pid = weft_proc_worker_pid(p, 0);
        if (pid > 0 && pid != pid0)
            break;
        usleep(1000);
    }
    CHECK_INT(weft_proc_worker_pid(p, 0), !=, pid0);
    weft_future_t *f;
    int64_t x = 9;
    CHECK_OK(weft_proc_submit(p, square, &x, 8, &f));
    CHECK_OK(weft_proc_result(f, NULL, NULL));
    weft_future_release(f);
    CHECK_OK(weft_proc_pool_free(p));
}

static int crash_once(weft_proc_task_t *t, const void *a, size_t n)
{
    _Atomic int *count;
    if (n != sizeof count)
        return -EINVAL;
    memcpy(&count, a, sizeof count);
    if (atomic_fetch_add(count, 1) == 0)
        raise(SIGSEGV);
    return weft_proc_reply(t, "second time", 11);
}

static void test_retry(void)
{
    weft_shm_t *r;
    CHECK_OK(weft_shm_create(&r, 4096, "weft-test-retry"));
    _Atomic int *count = weft_shm_alloc(r, sizeof *count, 64);
    weft_proc_opts_t o = {.workers = 1, .max_retries = 1, .shm = &r, .nshm = 1};
    weft_proc_pool_t *p;
    CHECK_OK(weft_proc_pool_create(&p, &o));
    weft_future_t *f;
    CHECK_OK(weft_proc_submit(p, crash_once, &count, sizeof count, &f));
    const void *d;
    size_t len;
    CHECK_OK(weft_proc_result(f, &d, &len));
    CHECK_INT(len, ==, 11);
    CHECK_INT(atomic_load(count), ==, 2);
    weft_proc_exit_t x;
    CHECK_OK(weft_proc_exit_info(p, f, &x)); /* the crash it survived */
    CHECK_INT(x.signal, ==, SIGSEGV);
    weft_future_release(f);
    /* A task killed by its deadline is not retried. */
    int forever = 100000;
    CHECK_OK(weft_proc_submit_ex(p, sleep_ms, &forever, sizeof forever, 50000000, 0, &f));
    CHECK_RC(weft_proc_result(f, NULL, NULL), -ETIMEDOUT);
    weft_future_release(f);
    CHECK_OK(weft_proc_pool_free(p));
    CHECK_OK(weft_shm_free(r));
}

/* A retried map chunk resumes after the items its first run reported:
 * those ran once (running them again would repeat their effects). Eight
 * items in one chunk, 12000-byte results in a 64 KiB ring: the first five
 * are delivered when the sixth does not fit; the worker dies at item 6,
 * once. Items 5 (done, not yet delivered) and 6 run twice. */
struct rmap_item {
    int i;
    _Atomic int *runs; /* runs[0..7], runs[8]: crashed once */
};
static int rmap_fn(weft_proc_task_t *t, const void *a, size_t n)
{
    struct rmap_item it;
    if (n != sizeof it)
        return -EINVAL;
    memcpy(&it, a, sizeof it);
    atomic_fetch_add(&it.runs[it.i], 1);
    if (it.i == 6 && atomic_exchange(&it.runs[8], 1) == 0)
        raise(SIGKILL);
    void *buf;
    int rc = weft_proc_reply_buf(t, 12000, &buf);
    if (rc == 0)
        memset(buf, it.i, 12000);
    return rc;
}

static void test_retry_map_resumes(void)
{
    weft_shm_t *r;
    CHECK_OK(weft_shm_create(&r, 4096, "weft-test-retry-map"));
    _Atomic int *runs = weft_shm_alloc(r, 9 * sizeof *runs, 64);
    weft_proc_opts_t o = {.workers = 1, .ring_size = 64 * 1024, .max_retries = 1, .shm = &r,
                          .nshm = 1};
    weft_proc_pool_t *p;
    CHECK_OK(weft_proc_pool_create(&p, &o));
    struct rmap_item in[8];
    int err[8];
    static unsigned char out[8][12000];
    for (int i = 0; i < 8; i++)
        in[i] = (struct rmap_item){i, runs};
    CHECK_OK(weft_proc_map(p, rmap_fn, in, sizeof in[0], 8, out, 12000, err, 8));
    for (int i = 0; i < 8; i++) {
        CHECK_RC(err[i], 0);
        CHECK_INT(out[i][0], ==, i);
        CHECK_INT(out[i][11999], ==, i);
        CHECK_INT(atomic_load(&runs[i]), ==, i == 5 || i == 6 ? 2 : 1);
    }
    CHECK_OK(weft_proc_pool_free(p));
    CHECK_OK(weft_shm_free(r));
}

/* weft_proc_iter_free cancels the chunks not yet started, also those
 * already published to the workers' queue (it used to let those run, all
 * of them, before returning): of 200 chunks of 20 ms on 2 workers, freed
 * after the first result, only the few running meanwhile run. */
struct slow_item {
    _Atomic int *runs;
};
static int slow_counted(weft_proc_task_t *t, const void *a, size_t n)
{
    (void)t;
    struct slow_item it;
    if (n != sizeof it)
        return -EINVAL;
    memcpy(&it, a, sizeof it);
    atomic_fetch_add(it.runs, 1);
    usleep(20000);
    return 0;
}

static void test_iter_free_cancels_queued(void)
{
    weft_shm_t *r;
    CHECK_OK(weft_shm_create(&r, 4096, "weft-test-iter-free"));
    _Atomic int *runs = weft_shm_alloc(r, sizeof *runs, 64);
    weft_proc_opts_t o = {.workers = 2, .shm = &r, .nshm = 1};
    weft_proc_pool_t *p;
    CHECK_OK(weft_proc_pool_create(&p, &o));
    enum { N = 200 };
    static struct slow_item in[N];
    for (int i = 0; i < N; i++)
        in[i].runs = runs;
    weft_proc_iter_t *it;
    CHECK_OK(weft_proc_imap_unordered(p, slow_counted, in, sizeof in[0], N, 1, &it));
    size_t idx;
    int err;
    CHECK_OK(weft_proc_iter_next(it, &idx, &err, NULL, NULL, weft_deadline_in(30)));
    CHECK_OK(weft_proc_iter_free(it));
    int ran = atomic_load(runs);
    CHECK_INT(ran, <=, 20); /* the first, those running, a few claimed meanwhile */
    CHECK_OK(weft_proc_pool_free(p));
    CHECK_INT(atomic_load(runs), ==, ran); /* nothing ran after free returned */
    CHECK_OK(weft_shm_free(r));
}

static void test_deadline_and_cancel(void)
{
    weft_proc_opts_t o = {.workers = 2, .task_timeout_ns = 100000000};
    weft_proc_pool_t *p;
    CHECK_OK(weft_proc_pool_create(&p, &o));
    int forever = 100000;
    weft_future_t *f, *g;
    weft_time_t t0 = weft_now();
    CHECK_OK(weft_proc_submit(p, sleep_ms, &forever, sizeof forever, &f));
    CHECK_RC(weft_proc_result(f, NULL, NULL), -ETIMEDOUT);
    CHECK(weft_seconds_between(t0, weft_now()) < 20);
    weft_proc_exit_t x;
    CHECK_OK(weft_proc_exit_info(p, f, &x));
    CHECK_INT(x.signal, ==, SIGKILL);
    CHECK_RC(x.error, -ETIMEDOUT);
    weft_future_release(f);
    /* A per-task limit overrides the default; NO_TIMEOUT lifts it. */
    int ms = 300;
    CHECK_OK(weft_proc_submit_ex(p, sleep_ms, &ms, sizeof ms, WEFT_PROC_NO_TIMEOUT, 0, &f));
    CHECK_OK(weft_proc_result(f, NULL, NULL));
    weft_future_release(f);
    /* Cancel a running task: refused without kill, done with it. */
    CHECK_OK(weft_proc_submit_ex(p, sleep_ms, &forever, sizeof forever, WEFT_PROC_NO_TIMEOUT, 0,
                                 &f));
    while (!weft_future_running(f))
        usleep(1000);
    /* Wait until a worker has claimed it (the pool marks it running when
     * queued); a claimed task answers -EBUSY. */
    int rc;
    for (int i = 0; i < 5000 && (rc = weft_proc_cancel(p, f, false)) == 0; i++) {
        /* It was still queued and got cancelled: try again. */
        weft_future_release(f);
        CHECK_OK(weft_proc_submit_ex(p, sleep_ms, &forever, sizeof forever,
                                     WEFT_PROC_NO_TIMEOUT, 0, &f));
        usleep(2000);
    }
    CHECK_RC(rc, -EBUSY);
    CHECK_OK(weft_proc_cancel(p, f, true));
    CHECK_RC(weft_proc_result(f, NULL, NULL), -ECANCELED);
    CHECK_OK(weft_proc_exit_info(p, f, &x));
    CHECK_RC(x.error, -ECANCELED);
    CHECK_RC(weft_proc_cancel(p, f, true), -EALREADY);
    weft_future_release(f);
    /* Cancel pending: occupy both workers, queue one more, cancel it. */
    int ms2 = 400;
    weft_future_t *busy[2];
    for (int i = 0; i < 2; i++)
        CHECK_OK(weft_proc_submit_ex(p, sleep_ms, &ms2, sizeof ms2, WEFT_PROC_NO_TIMEOUT, 0,
                                     &busy[i]));
    (void)g;
    int64_t v = 3;
    CHECK_OK(weft_proc_submit(p, square, &v, 8, &g));
    rc = weft_proc_cancel(p, g, false);
    /* Either it was still waiting (0) or a worker already took it. */
    CHECK(rc == 0 || rc == -EBUSY || rc == -EALREADY);
    if (rc == 0)
        CHECK_RC(weft_proc_result(g, NULL, NULL), -ECANCELED);
    else
        CHECK_OK(weft_proc_result(g, NULL, NULL));
    weft_future_release(g);
    for (int i = 0; i < 2; i++) {
        CHECK_OK(weft_proc_result(busy[i], NULL, NULL));
        weft_future_release(busy[i]);
    }
    /* Plain weft_future_cancel on a task still in the parent's queue. */
    CHECK_RC(weft_proc_cancel(p, NULL, false), -EINVAL);
    weft_future_t *other;
    CHECK_OK(weft_future_create(&other));
    CHECK_RC(weft_proc_cancel(p, other, false), -ENOENT);
    weft_future_release(other);
    CHECK_OK(weft_proc_pool_free(p));
}

/* ---- initializer, max tasks, shutdown ---------------------------------------------- */

static void test_initializer_and_recycling(void)
{
    int v = 4242;
    weft_proc_opts_t o = {.workers = 2, .initializer = init_ok, .init_arg = &v,
                          .init_arg_len = sizeof v, .max_tasks_per_worker = 3};
    weft_proc_pool_t *p;
    CHECK_OK(weft_proc_pool_create(&p, &o));
    enum { N = 30 };
    int pids[N];
    for (int i = 0; i < N; i++) {
        weft_future_t *f;
        CHECK_OK(weft_proc_submit(p, report_pid, NULL, 0, &f));
        const void *d;
        CHECK_OK(weft_proc_result(f, &d, NULL));
        int r[2];
        memcpy(r, d, sizeof r);
        pids[i] = r[0];
        CHECK_INT(r[1], ==, 4242);
        weft_future_release(f);
    }
    /* No pid ran more than 3 tasks. */
    for (int i = 0; i < N; i++) {
        int same = 0;
        for (int k = 0; k < N; k++)
            same += pids[k] == pids[i];
        CHECK_INT(same, <=, 3);
    }
    weft_proc_stats_t st;
    CHECK_OK(weft_proc_stats(p, &st));
    CHECK_U64(st.retired, >=, 8);
    CHECK_U64(st.crashed, ==, 0);
    CHECK_OK(weft_proc_pool_free(p));

    /* A failing initializer: creation fails, nothing is left running. */
    int server = weft_proc_server_pid();
    o = (weft_proc_opts_t){.workers = 3, .initializer = init_fail};
    p = NULL;
    CHECK_RC(weft_proc_pool_create(&p, &o), WEFT_EINITFAILED);
    CHECK(p == NULL);
    int alive, zombies;
    for (int i = 0; i < 2000; i++) {
        count_children(server, &alive, &zombies);
        if (alive + zombies == 0)
            break;
        usleep(1000);
    }
    CHECK_INT(alive + zombies, ==, 0);
}

/* Succeeds for the first two workers only: the count lives in a region
 * whose address comes as the initializer's argument. */
static int init_twice(const void *a, size_t n)
{
    _Atomic int *count;
    if (n != sizeof count)
        return -EINVAL;
    memcpy(&count, a, sizeof count);
    return atomic_fetch_add(count, 1) < 2 ? 0 : -EMFILE;
}

/* Counts itself started in the region (pointer in the argument), then
 * sleeps until killed. */
static int block_forever(weft_proc_task_t *t, const void *a, size_t n)
{
    (void)t;
    _Atomic int *count;
    if (n != sizeof count)
        return -EINVAL;
    memcpy(&count, a, sizeof count);
    atomic_fetch_add(&count[16], 1);
    for (;;)
        pause();
}

/* weft_proc_worker_pid names a replacement worker as soon as it can run a
 * task, before the dispatcher has read the fork server's SPAWNED for it:
 * that message is held back (weft__proc_hold_spawned) while the worker
 * that replaced a crashed one runs a task, and the pid the task reports
 * must be the one the pool gives for its slot. A signal needs the pidfd
 * that comes with the message: -ESRCH until then. */
static void test_worker_pid_at_once(void)
{
    weft_proc_opts_t o = {.workers = 1};
    weft_proc_pool_t *p;
    CHECK_OK(weft_proc_pool_create(&p, &o));
    enum { ROUNDS = 5 };
    int last = weft_proc_worker_pid(p, 0);
    CHECK_INT(last, >, 0);
    for (int i = 0; i < ROUNDS; i++) {
        weft__proc_hold_spawned(p, true);
        weft_future_t *f;
        CHECK_OK(weft_proc_submit(p, segv, NULL, 0, &f));
        CHECK_RC(weft_proc_result(f, NULL, NULL), WEFT_ECRASHED);
        weft_future_release(f);
        CHECK_OK(weft_proc_submit(p, report_pid, NULL, 0, &f));
        const void *d;
        CHECK_OK(weft_proc_result(f, &d, NULL));
        int r[2];
        memcpy(r, d, sizeof r);
        weft_future_release(f);
        CHECK_INT(r[0], !=, last); /* the replacement ran it */
        CHECK_INT(weft_proc_worker_pid(p, 0), ==, r[0]);
        CHECK_RC(weft_proc_signal_worker(p, 0, SIGCONT), -ESRCH);
        weft_proc_stats_t st;
        CHECK_OK(weft_proc_stats(p, &st));
        CHECK_U64(st.spawned, ==, (uint64_t)i + 1); /* its SPAWNED is unread */
        weft__proc_hold_spawned(p, false);
        /* Read now: the same pid, and the pidfd to signal it with. */
        for (int k = 0; k < 5000 && weft_proc_signal_worker(p, 0, SIGCONT) != 0; k++)
            usleep(1000);
        CHECK_OK(weft_proc_signal_worker(p, 0, SIGCONT));
        CHECK_INT(weft_proc_worker_pid(p, 0), ==, r[0]);
        last = r[0];
    }
    weft_proc_stats_t st;
    CHECK_OK(weft_proc_stats(p, &st));
    CHECK_U64(st.crashed, ==, ROUNDS);
    CHECK_U64(st.spawned, ==, ROUNDS + 1);
    CHECK_OK(weft_proc_pool_free(p));
}

/* A crash of the initializer's own: abort(), without a core file. */
static void init_crash(void)
{
    struct rlimit none = {0, 0};
    setrlimit(RLIMIT_CORE, &none);
    abort();
}

/* Succeeds for the first worker only; the others' initializer crashes (a
 * crash, not an error code). */
static int init_dies_after_first(const void *a, size_t n)
{
    _Atomic int *count;
    if (n != sizeof count)
        return -EINVAL;
    memcpy(&count, a, sizeof count);
    if (atomic_fetch_add(count, 1) >= 1)
        init_crash();
    return 0;
}

static int init_dies(const void *a, size_t n)
{
    (void)a;
    (void)n;
    init_crash();
    return 0;
}

/* The first worker's initializer returns at once; later ones count
 * themselves in and then sleep (until killed from outside). */
static int init_slow_after_first(const void *a, size_t n)
{
    _Atomic int *count;
    if (n != sizeof count)
        return -EINVAL;
    memcpy(&count, a, sizeof count);
    if (atomic_fetch_add(count, 1) >= 1)
        for (int i = 0; i < 10000; i++)
            usleep(1000);
    return 0;
}

/* An initializer that crashes is an initializer that failed: at creation
 * (it used to say -ECHILD, "the fork server is gone"), and in a
 * replacement worker, which used to be forked again and again, forever,
 * with the queued tasks never resolved. */
static void test_initializer_crash(void)
{
    weft_proc_opts_t o = {.workers = 2, .initializer = init_dies};
    weft_proc_pool_t *p = NULL;
    CHECK_RC(weft_proc_pool_create(&p, &o), WEFT_EINITFAILED);

    weft_shm_t *r;
    CHECK_OK(weft_shm_create(&r, 4096, "weft-test-init-crash"));
    _Atomic int *count = weft_shm_alloc(r, sizeof *count, 64);
    weft_shm_t *regions[1] = {r};
    o = (weft_proc_opts_t){.workers = 1, .initializer = init_dies_after_first,
                           .init_arg = &count, .init_arg_len = sizeof count, .shm = regions,
                           .nshm = 1};
    CHECK_OK(weft_proc_pool_create(&p, &o));
    weft_future_t *f;
    CHECK_OK(weft_proc_submit(p, segv, NULL, 0, &f));
    CHECK_RC(weft_proc_result(f, NULL, NULL), WEFT_ECRASHED);
    weft_future_release(f);
    /* The replacement's initializer may have died already (the pool is
     * broken: the submission says so) or not yet (the task fails with it). */
    f = NULL;
    int rc = weft_proc_submit(p, nothing, NULL, 0, &f);
    if (rc == 0) {
        CHECK_OK(weft_future_wait_until(f, weft_deadline_in(30))); /* resolved, not forgotten */
        CHECK_RC(weft_proc_result(f, NULL, NULL), WEFT_EINITFAILED);
        weft_future_release(f);
    } else {
        CHECK_RC(rc, WEFT_EINITFAILED);
    }
    weft_proc_stats_t st;
    CHECK_OK(weft_proc_stats(p, &st));
    CHECK_U64(st.spawned, <=, 2); /* the first worker and one replacement */
    CHECK_INT(atomic_load(count), ==, 2);
    CHECK_OK(weft_proc_pool_free(p));

    /* A replacement killed from outside while in its initializer (the OOM
     * killer, a stray kill) is a crash like any other, not its
     * initializer's failure: the pool goes on. */
    atomic_store(count, 0);
    o.initializer = init_slow_after_first;
    CHECK_OK(weft_proc_pool_create(&p, &o));
    CHECK_OK(weft_proc_submit(p, segv, NULL, 0, &f));
    CHECK_RC(weft_proc_result(f, NULL, NULL), WEFT_ECRASHED);
    weft_future_release(f);
    for (int i = 0; i < 10000 && atomic_load(count) < 2; i++)
        usleep(1000); /* the replacement is in its initializer */
    CHECK_INT(atomic_load(count), ==, 2);
    int pid = 0;
    for (int i = 0; i < 10000 && (pid = weft_proc_worker_pid(p, 0)) <= 0; i++)
        usleep(1000);
    CHECK(pid > 0);
    CHECK(kill(pid, SIGKILL) == 0);
    atomic_store(count, 0); /* the next replacement starts at once */
    CHECK_OK(weft_proc_submit(p, nothing, NULL, 0, &f));
    CHECK_OK(weft_proc_result(f, NULL, NULL));
    weft_future_release(f);
    CHECK_OK(weft_proc_pool_free(p));
    CHECK_OK(weft_shm_free(r));
}

static void test_broken_by_replacement_initializer(void)
{
    weft_shm_t *r;
    CHECK_OK(weft_shm_create(&r, 4096, "weft-test-init"));
    _Atomic int *count = weft_shm_alloc(r, 32 * sizeof *count, 64);
    weft_shm_t *regions[1] = {r};
    weft_proc_opts_t o = {.workers = 2, .initializer = init_twice, .init_arg = &count,
                          .init_arg_len = sizeof count, .shm = regions, .nshm = 1};
    weft_proc_pool_t *p;
    CHECK_OK(weft_proc_pool_create(&p, &o));
    /* Both workers blocked, five tasks queued behind them; then one worker
     * is killed and its replacement's initializer fails: the pool is
     * broken, the queued tasks fail with WEFT_EINITFAILED. */
    weft_future_t *blocked[2], *queued[5];
    for (int i = 0; i < 2; i++)
        CHECK_OK(weft_proc_submit(p, block_forever, &count, sizeof count, &blocked[i]));
    for (int i = 0; i < 5; i++)
        CHECK_OK(weft_proc_submit(p, nothing, NULL, 0, &queued[i]));
    for (int i = 0; i < 10000 && atomic_load(&count[16]) < 2; i++)
        usleep(1000);
    CHECK_INT(atomic_load(&count[16]), ==, 2);
    CHECK_OK(weft_proc_signal_worker(p, 0, SIGKILL));
    for (int i = 0; i < 5; i++) {
        CHECK_RC(weft_proc_result(queued[i], NULL, NULL), WEFT_EINITFAILED);
        weft_future_release(queued[i]);
    }
    weft_future_t *f = NULL;
    CHECK_RC(weft_proc_submit(p, nothing, NULL, 0, &f), WEFT_EINITFAILED);
    CHECK(f == NULL);
    CHECK_INT(atomic_load(count), ==, 3);
    /* One blocked task died with its worker; the other is still running
     * until terminated. */
    int crashed = 0;
    for (int i = 0; i < 2; i++)
        if (weft_future_done(blocked[i])) {
            CHECK_RC(weft_proc_result(blocked[i], NULL, NULL), WEFT_ECRASHED);
            crashed++;
        }
    CHECK_INT(crashed, <=, 1);
    CHECK_OK(weft_proc_shutdown(p, WEFT_PROC_WAIT | WEFT_PROC_TERMINATE));
    int ecrashed = 0, ecanceled = 0;
    for (int i = 0; i < 2; i++) {
        int rc = weft_proc_result(blocked[i], NULL, NULL);
        ecrashed += rc == WEFT_ECRASHED;
        ecanceled += rc == -ECANCELED;
        weft_future_release(blocked[i]);
    }
    CHECK_INT(ecrashed, ==, 1);
    CHECK_INT(ecanceled, ==, 1);
    CHECK_OK(weft_proc_pool_free(p));
    CHECK_OK(weft_shm_free(r));
}

static void test_shutdown(void)
{
    /* WAIT: queued tasks still run. */
    weft_proc_pool_t *p = make_pool(2);
    enum { N = 50 };
    weft_future_t *fs[N];
    int ms = 2;
    for (int i = 0; i < N; i++)
        CHECK_OK(weft_proc_submit(p, sleep_ms, &ms, sizeof ms, &fs[i]));
    CHECK_OK(weft_proc_shutdown(p, WEFT_PROC_WAIT));
    for (int i = 0; i < N; i++) {
        CHECK(weft_future_done(fs[i]));
        CHECK_OK(weft_proc_result(fs[i], NULL, NULL));
        weft_future_release(fs[i]);
    }
    weft_future_t *f = NULL;
    CHECK_RC(weft_proc_submit(p, nothing, NULL, 0, &f), -EPIPE);
    CHECK(f == NULL);
    int64_t x = 1, y;
    CHECK_RC(weft_proc_map(p, square, &x, 8, 1, &y, 8, NULL, 1), -EPIPE);
    CHECK_OK(weft_proc_shutdown(p, WEFT_PROC_WAIT)); /* again: harmless */
    CHECK_OK(weft_proc_pool_free(p));

    /* CANCEL_PENDING | TERMINATE: running ones are killed, the rest
     * cancelled; returns promptly. */
    p = make_pool(2);
    int forever = 100000;
    for (int i = 0; i < N; i++)
        CHECK_OK(weft_proc_submit(p, sleep_ms, &forever, sizeof forever, &fs[i]));
    usleep(20000);
    weft_time_t t0 = weft_now();
    CHECK_OK(weft_proc_shutdown(p, WEFT_PROC_WAIT | WEFT_PROC_TERMINATE));
    CHECK(weft_seconds_between(t0, weft_now()) < 20);
    for (int i = 0; i < N; i++) {
        CHECK_RC(weft_proc_result(fs[i], NULL, NULL), -ECANCELED);
        weft_future_release(fs[i]);
    }
    CHECK_RC(weft_proc_shutdown(p, 99), -EINVAL);
    CHECK_OK(weft_proc_pool_free(p));
}

/* weft_proc_cancel racing with the dispatcher's exit: every call returns
 * (a request queued just before the dispatcher quit was never answered:
 * its caller hung). */
struct canceller {
    weft_proc_pool_t *p;
    weft_future_t *f;
    _Atomic int stop;
    int calls, bad;
};

static void *canceller_main(void *arg)
{
    struct canceller *c = arg;
    while (!atomic_load(&c->stop)) {
        int rc = weft_proc_cancel(c->p, c->f, false);
        c->bad += rc != -EALREADY;
        c->calls++;
    }
    return NULL;
}

static void test_cancel_during_exit(void)
{
    int rounds = (int)check_iters("PROC_CANCEL_EXIT_ROUNDS", 30);
    for (int r = 0; r < rounds; r++) {
        weft_proc_pool_t *p = make_pool(1);
        int64_t x = 5;
        weft_future_t *f;
        CHECK_OK(weft_proc_submit(p, square, &x, 8, &f));
        CHECK_OK(weft_proc_result(f, NULL, NULL));
        struct canceller c = {p, f, 0, 0, 0};
        pthread_t th;
        CHECK(pthread_create(&th, NULL, canceller_main, &c) == 0);
        int rc = weft_proc_shutdown(p, WEFT_PROC_WAIT);
        atomic_store(&c.stop, 1);
        pthread_join(th, NULL);
        CHECK_OK(rc);
        CHECK_INT(c.bad, ==, 0);
        weft_future_release(f);
        CHECK_OK(weft_proc_pool_free(p));
    }
}

/* Records when it starts (in shared memory), is busy for us microseconds,
 * then replies. */
struct busy_arg {
    _Atomic int64_t *started;
    int64_t us;
};

static int busy_us(weft_proc_task_t *t, const void *a, size_t n)
{
    struct busy_arg b;
    if (n != sizeof b)
        return -EINVAL;
    memcpy(&b, a, sizeof b);
    weft_time_t now = weft_now();
    atomic_store(b.started, now);
    while (weft_now() < now + b.us * 1000)
        ;
    return weft_proc_reply(t, "done", 4);
}

/* weft_proc_cancel(kill_running) racing with the task's end: the kill
 * never hits the task the worker claims next. (It did: the worker finished
 * the task between the dispatcher's look and its SIGKILL, claimed the next
 * one, and that one failed with WEFT_ECRASHED.) Each cancel is aimed at
 * the task's end, learnt from the start time it writes to shared memory.
 * The cancelled task either finished (its result; the cancel returned
 * -EALREADY, or 0 if the kill came too late) or was killed (-ECANCELED). */
static void test_cancel_kill_spares_the_next_task(void)
{
    weft_shm_t *r;
    CHECK_OK(weft_shm_create(&r, 4096, "weft-test-killrace"));
    _Atomic int64_t *started = weft_shm_alloc(r, sizeof *started, 64);
    weft_proc_opts_t o = {.workers = 1, .shm = &r, .nshm = 1};
    weft_proc_pool_t *p;
    CHECK_OK(weft_proc_pool_create(&p, &o));
    int rounds = (int)check_iters("PROC_KILL_RACE_ROUNDS", 500);
    int killed = 0, finished = 0;
    /* How long before the task's end to send the cancel: the request takes
     * a while to reach the dispatcher, so the aim follows the boundary
     * (earlier after a cancel that came too late, later after a kill),
     * which is where the race is. */
    int64_t lead = 100;
    for (int i = 0; i < rounds; i++) {
        struct busy_arg b = {started, 1000};
        atomic_store(started, 0);
        weft_future_t *a, *next[2];
        CHECK_OK(weft_proc_submit(p, busy_us, &b, sizeof b, &a));
        for (int64_t k = 0; k < 2; k++)
            CHECK_OK(weft_proc_submit(p, square, &k, sizeof k, &next[k]));
        int64_t t0;
        while ((t0 = atomic_load(started)) == 0)
            ;
        weft_time_t aim = t0 + (b.us - lead) * 1000;
        while (weft_now() < aim)
            ;
        int rc = weft_proc_cancel(p, a, true);
        CHECK(rc == 0 || rc == -EALREADY);
        const void *d;
        size_t len;
        int ra = weft_proc_result(a, &d, &len);
        if (ra == 0) {
            CHECK_INT(len, ==, 4);
            finished++;
            lead = lead + 3 < b.us - 10 ? lead + 3 : b.us - 10;
        } else {
            CHECK_RC(ra, -ECANCELED);
            CHECK_RC(rc, 0);
            killed++;
            lead = lead > 2 ? lead - 2 : 0;
        }
        for (int k = 0; k < 2; k++) {
            int rb = weft_proc_result(next[k], NULL, NULL);
            if (rb != 0)
                fprintf(stderr, "  round %d: the next task failed: %s\n", i, weft_strerror(rb));
            CHECK_OK(rb);
            weft_future_release(next[k]);
        }
        weft_future_release(a);
    }
    fprintf(stderr, "  %d rounds: %d killed, %d finished first (cancel sent %lld us before "
                    "the end at last)\n", rounds, killed, finished, (long long)lead);
    CHECK_OK(weft_proc_pool_free(p));
    CHECK_OK(weft_shm_free(r));
}

/* A done-callback (run by the dispatcher as the outcome is delivered, in
 * the middle of reading a result ring) that cancels and kills another
 * task: the ring is not read again from inside that read, and the kill
 * still happens. */
struct cb_cancel {
    weft_proc_pool_t *p;
    weft_future_t *victim;
    int rc;
    weft_event_t ran;
};

static void cancel_from_callback(weft_future_t *f, void *arg)
{
    (void)f;
    struct cb_cancel *c = arg;
    c->rc = weft_proc_cancel(c->p, c->victim, true);
    weft_event_set(&c->ran);
}

static void test_cancel_from_done_callback(void)
{
    int rounds = (int)check_iters("PROC_CB_CANCEL_ROUNDS", 20);
    weft_proc_pool_t *p = make_pool(1);
    for (int r = 0; r < rounds; r++) {
        int64_t x = r;
        int forever = 100000;
        weft_future_t *a, *b;
        struct cb_cancel c = {p, NULL, 1, {0}};
        weft_event_init(&c.ran);
        CHECK_OK(weft_proc_submit(p, square, &x, sizeof x, &a));
        CHECK_OK(weft_proc_submit(p, sleep_ms, &forever, sizeof forever, &b));
        c.victim = b;
        CHECK_OK(weft_future_on_done(a, cancel_from_callback, &c));
        int ra = weft_proc_result(a, NULL, NULL);
        weft_event_wait(&c.ran); /* before any CHECK: c is on this stack */
        CHECK_OK(ra);
        CHECK_OK(c.rc); /* b was queued, claimed or running: cancelled or killed */
        CHECK_RC(weft_proc_result(b, NULL, NULL), -ECANCELED);
        weft_future_release(a);
        weft_future_release(b);
    }
    /* The pool goes on. */
    int64_t x = 3;
    weft_future_t *f;
    CHECK_OK(weft_proc_submit(p, square, &x, sizeof x, &f));
    CHECK_OK(weft_proc_result(f, NULL, NULL));
    weft_future_release(f);
    CHECK_OK(weft_proc_pool_free(p));
}

/* ---- bad input ------------------------------------------------------------------------ */

static void test_bad_input(void)
{
    weft_proc_pool_t *p = make_pool(1);
    weft_future_t *f = NULL;
    int64_t x = 2;
    CHECK_RC(weft_proc_submit(NULL, square, &x, 8, &f), -EINVAL);
    CHECK_RC(weft_proc_submit(p, NULL, &x, 8, &f), -EINVAL);
    CHECK_RC(weft_proc_submit(p, square, NULL, 8, &f), -EINVAL);
    CHECK_RC(weft_proc_submit(p, square, &x, 8, NULL), -EINVAL);
    CHECK_RC(weft_proc_submit_ex(p, square, &x, 8, -5, 0, &f), -EINVAL);
    CHECK_RC(weft_proc_submit_ex(p, square, &x, 8, 0, 0x80, &f), -EINVAL);
    CHECK_RC(weft_proc_submit_ex(p, square, &x, 8, 0, WEFT_PROC_ARG_SHARED, &f), -EINVAL);
    CHECK(f == NULL);
    /* A shared buffer passed with more bytes than it has: -EINVAL (the
     * worker would read beyond it), and the buffer is freed (the pool owned
     * it from the call on): freeing it again says -EINVAL. */
    void *sbuf;
    CHECK_OK(weft_proc_buf_alloc(p, 64, &sbuf));
    CHECK_RC(weft_proc_submit_ex(p, square, sbuf, 1 << 20, 0, WEFT_PROC_ARG_SHARED, &f), -EINVAL);
    CHECK(f == NULL);
    CHECK_RC(weft_proc_buf_free(p, sbuf), -EINVAL);
    CHECK_RC(weft_proc_map(p, NULL, &x, 8, 1, NULL, 0, NULL, 1), -EINVAL);
    CHECK_RC(weft_proc_map(p, square, NULL, 8, 1, NULL, 0, NULL, 1), -EINVAL);
    CHECK_RC(weft_proc_map(p, square, &x, 0, 1, NULL, 0, NULL, 1), -EINVAL);
    CHECK_RC(weft_proc_map(p, square, &x, 8, 1, NULL, 8, NULL, 1), -EINVAL);
    CHECK_RC(weft_proc_imap_unordered(p, square, &x, 8, 1, 1, NULL), -EINVAL);
    CHECK_RC(weft_proc_iter_next(NULL, NULL, NULL, NULL, NULL, 0), -EINVAL);
    CHECK_RC(weft_proc_iter_free(NULL), -EINVAL);
    CHECK_RC(weft_proc_shutdown(NULL, 0), -EINVAL);
    CHECK_RC(weft_proc_pool_free(NULL), -EINVAL);
    CHECK_RC(weft_proc_result(NULL, NULL, NULL), -EINVAL);
    CHECK_RC(weft_proc_worker_pid(p, 1), -EINVAL);
    CHECK_RC(weft_proc_worker_pid(p, -1), -EINVAL);
    CHECK_RC(weft_proc_signal_worker(p, 0, 0), -EINVAL);
    CHECK_RC(weft_proc_stats(p, NULL), -EINVAL);
    CHECK_RC(weft_proc_last_exit(p, NULL), -EINVAL);
    weft_proc_exit_t xi;
    CHECK_RC(weft_proc_last_exit(p, &xi), -ENOENT);
    CHECK_RC(weft_proc_reply(NULL, "x", 1), -EINVAL);
    CHECK_INT(weft_proc_worker_index(), ==, -1);
    weft_proc_opts_t bad[] = {
        {.workers = -1}, {.workers = WEFT_PROC_MAX_WORKERS + 1}, {.ring_size = 1000},
        {.init_arg_len = 4}, {.task_timeout_ns = -1}, {.nshm = 1},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        weft_proc_pool_t *q = NULL;
        CHECK_RC(weft_proc_pool_create(&q, &bad[i]), -EINVAL);
        CHECK(q == NULL);
    }
    CHECK_RC(weft_proc_pool_create(NULL, NULL), -EINVAL);

    /* A pointer into the parent's heap means nothing in a worker: the task
     * reads the worker's own memory (another value) or crashes. */
    int64_t *secret = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    *secret = 0x5eC12e7;
    CHECK_OK(weft_proc_submit(p, deref, &secret, sizeof secret, &f));
    const void *d;
    int rc = weft_proc_result(f, &d, NULL);
    if (rc == 0) {
        int64_t v;
        memcpy(&v, d, 8);
        CHECK_INT(v, !=, 0x5eC12e7);
    } else {
        CHECK_RC(rc, WEFT_ECRASHED);
    }
    weft_future_release(f);
    munmap(secret, 4096);
    /* A descriptor opened after weft_proc_init is not open in a worker. */
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    int high = fcntl(fd, F_DUPFD_CLOEXEC, 900);
    CHECK_OK(weft_proc_submit(p, fd_open, &high, sizeof high, &f));
    CHECK_OK(weft_proc_result(f, &d, NULL));
    int r;
    memcpy(&r, d, sizeof r);
    CHECK_RC(r, -EBADF);
    weft_future_release(f);
    close(fd);
    close(high);
    CHECK_OK(weft_proc_pool_free(p));
}

/* ---- stress: SIGKILL random workers during a map ------------------------------------------- */

struct killer {
    weft_proc_pool_t *p;
    _Atomic int stop;
    int kills;
};

static void *killer_main(void *arg)
{
    struct killer *k = arg;
    unsigned seed = 12345;
    while (!atomic_load(&k->stop)) {
        usleep(2000 + rand_r(&seed) % 8000);
        int i = (int)(rand_r(&seed) % (unsigned)weft_proc_workers(k->p));
        if (weft_proc_signal_worker(k->p, i, SIGKILL) == 0)
            k->kills++;
    }
    return NULL;
}

static void test_kill_during_map(void)
{
    int fds0 = check_fd_count(), memfds0 = count_memfds();
    int server = weft_proc_server_pid();
    weft_proc_pool_t *p = make_pool(3);
    /* The figure is 100,000 tasks: WEFT_TEST_PROC_KILL_TASKS=100000
     * (or WEFT_TEST_SCALE=5) for the soak. */
    size_t n = (size_t)check_iters("PROC_KILL_TASKS", 20000);
    int64_t *in = malloc(n * 8), *out = malloc(n * 8);
    int *errs = malloc(n * sizeof(int));
    for (size_t i = 0; i < n; i++)
        in[i] = (int64_t)i;
    struct killer k = {p, 0, 0};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, killer_main, &k) == 0);
    size_t chunk = 4;
    int rc = weft_proc_map(p, square_slow, in, 8, n, out, 8, errs, chunk);
    atomic_store(&k.stop, 1);
    pthread_join(th, NULL);
    size_t ok = 0, crashed = 0;
    for (size_t i = 0; i < n; i++) {
        if (errs[i] == 0) {
            ok++;
            CHECK_INT(out[i], ==, in[i] * in[i]);
        } else {
            CHECK_RC(errs[i], WEFT_ECRASHED);
            crashed++;
        }
    }
    CHECK_INT(ok + crashed, ==, n);
    CHECK(rc == 0 || rc == WEFT_ECRASHED);
    /* Every crash failed at most one chunk. */
    CHECK_INT(crashed, <=, (size_t)k.kills * chunk);
    fprintf(stderr, "  %zu tasks, %d kills, %zu items failed with the crash\n", n, k.kills,
            crashed);
    /* Also futures, with kills, all resolve. */
    enum { F = 300 };
    weft_future_t *fs[F];
    for (int64_t i = 0; i < F; i++) {
        CHECK_OK(weft_proc_submit(p, square, &i, 8, &fs[i]));
        if (i % 50 == 25)
            weft_proc_signal_worker(p, (int)(i % 3), SIGKILL);
    }
    for (int64_t i = 0; i < F; i++) {
        const void *d;
        rc = weft_proc_result(fs[i], &d, NULL);
        if (rc == 0) {
            int64_t v;
            memcpy(&v, d, 8);
            CHECK_INT(v, ==, i * i);
        } else {
            CHECK_RC(rc, WEFT_ECRASHED);
        }
        weft_future_release(fs[i]);
    }
    CHECK_OK(weft_proc_pool_free(p));

    /* With retries asked for, every item succeeds despite the kills. */
    /* A small argument ring (64 KiB: 2048 chunk records) wraps many times
     * while retried chunks wait in the queue with their old records. */
    weft_proc_opts_t ro = {.workers = 3, .max_retries = 1000000, .ring_size = 64 * 1024};
    CHECK_OK(weft_proc_pool_create(&p, &ro));
    k = (struct killer){p, 0, 0};
    CHECK(pthread_create(&th, NULL, killer_main, &k) == 0);
    rc = weft_proc_map(p, square_slow, in, 8, n, out, 8, errs, chunk);
    atomic_store(&k.stop, 1);
    pthread_join(th, NULL);
    if (rc) {
        size_t bad = 0, first = n;
        for (size_t i = 0; i < n; i++)
            if (errs[i]) {
                bad++;
                if (first == n)
                    first = i;
            }
        weft_proc_exit_t lx;
        weft_proc_last_exit(p, &lx);
        fprintf(stderr, "  retry map: %zu items failed, first %zu (%d); last exit pid %d sig %d "
                        "code %d err %d\n", bad, first, errs[first], lx.pid, lx.signal,
                lx.exit_code, lx.error);
    }
    CHECK_OK(rc);
    for (size_t i = 0; i < n; i++) {
        CHECK_INT(errs[i], ==, 0);
        CHECK_INT(out[i], ==, in[i] * in[i]);
    }
    weft_proc_stats_t st;
    CHECK_OK(weft_proc_stats(p, &st));
    fprintf(stderr, "  with retries: %d kills, %llu crashes seen, every item right\n", k.kills,
            (unsigned long long)st.crashed);
    CHECK_OK(weft_proc_pool_free(p));
    free(in);
    free(out);
    free(errs);
    /* No zombies, no workers left, no descriptors or memfds leaked. */
    int alive, zombies;
    for (int i = 0; i < 2000; i++) {
        count_children(server, &alive, &zombies);
        if (alive + zombies == 0)
            break;
        usleep(1000);
    }
    CHECK_INT(alive, ==, 0);
    CHECK_INT(zombies, ==, 0);
    count_children(getpid(), &alive, &zombies);
    CHECK_INT(zombies, ==, 0);
    CHECK_INT(check_fd_count(), ==, fds0);
    CHECK_INT(count_memfds(), ==, memfds0);
}

/* ---- the parent dies: its workers follow ------------------------------------------------------ */

static void test_parent_death(void)
{
    int pfd[2];
    CHECK(pipe(pfd) == 0);
    pid_t child = fork();
    if (child == 0) {
        /* A fresh program: its own fork server and pool. */
        close(pfd[0]);
        weft_proc_fini(); /* forget the inherited server: it is not ours */
        weft_proc_pool_t *p;
        weft_proc_opts_t o = {.workers = 2};
        int rc = weft_proc_pool_create(&p, &o);
        if (rc == WEFT_ETHREADED)
            _exit(77); /* under TSan, whose own thread may come back in a child */
        if (rc != 0)
            _exit(2);
        int pids[3] = {weft_proc_worker_pid(p, 0), weft_proc_worker_pid(p, 1),
                       weft_proc_server_pid()};
        if (write(pfd[1], pids, sizeof pids) != (ssize_t)sizeof pids)
            _exit(3);
        pause();
        _exit(0);
    }
    close(pfd[1]);
    int pids[3];
    ssize_t got = read(pfd[0], pids, sizeof pids);
    close(pfd[0]);
    if (got == 0) {
        int st;
        waitpid(child, &st, 0);
        if (WIFEXITED(st) && WEXITSTATUS(st) == 77) {
            fprintf(stderr, "  skipped: the forked child runs a thread (TSan)\n");
            return;
        }
    }
    CHECK_INT(got, ==, sizeof pids);
    kill(child, SIGKILL);
    int st;
    waitpid(child, &st, 0);
    /* Within a few seconds, the server and both workers are gone (or
     * zombies waiting for init to reap them). */
    for (int k = 0; k < 3; k++) {
        bool gone = false;
        for (int i = 0; i < 5000 && !gone; i++) {
            char path[64], buf[256];
            snprintf(path, sizeof path, "/proc/%d/stat", pids[k]);
            FILE *f = fopen(path, "r");
            if (!f) {
                gone = true;
                break;
            }
            size_t n = fread(buf, 1, sizeof buf - 1, f);
            fclose(f);
            buf[n] = 0;
            char *rp = strrchr(buf, ')');
            gone = rp && (rp[2] == 'Z' || rp[2] == 'X');
            if (!gone)
                usleep(1000);
        }
        CHECK(gone);
    }
}

/* ---- fini ---------------------------------------------------------------------------------- */

/* A child forked after weft_proc_init holds a copy of the server's socket:
 * fini must still stop the server (it does not wait for EOF). */
static void test_fini(void)
{
    int hold[2];
    CHECK(pipe(hold) == 0);
    pid_t child = fork();
    if (child == 0) {
        char b;
        close(hold[1]);
        ssize_t r = read(hold[0], &b, 1);
        _exit(r < 0);
    }
    close(hold[0]);
    int server = weft_proc_server_pid();
    CHECK_OK(weft_proc_fini());
    CHECK(kill(server, 0) != 0); /* reaped */
    close(hold[1]);
    waitpid(child, NULL, 0);
    CHECK_INT(weft_proc_server_pid(), ==, 0);
}

int main(void)
{
#ifdef WEFT_SANITIZE_THREAD
    /* TSan may start a thread of its own; if it has, the fork server cannot
     * start (by design) and there is nothing to test here. If not, start
     * it now and skip only the test that needs it not started. */
    if (weft_proc_init() == WEFT_ETHREADED)
        check_skip("TSan already runs a thread of its own: weft_proc_init refuses to fork "
                   "(WEFT_ETHREADED), by design");
    {
        weft_proc_pool_t *probe;
        weft_proc_opts_t o = {.workers = 1};
        int rc = weft_proc_pool_create(&probe, &o);
        if (rc == -EADDRINUSE)
            check_skip("under TSan, the pool's memory cannot be mapped at the parent's address "
                       "in a worker (TSan's runtime uses that range in forked children)");
        if (rc == 0)
            weft_proc_pool_free(probe);
    }
    (void)test_threaded_start_refused;
#else
    /* qemu-user (the AArch64 run) starts threads of its own before main:
     * the fork server then refuses to start, by design. */
    if (weft_proc_init() == WEFT_ETHREADED)
        check_skip("this process already runs threads it did not start (qemu-user's): "
                   "weft_proc_init refuses to fork (WEFT_ETHREADED), by design");
    weft_proc_fini();
    RUN(test_threaded_start_refused);
#endif
    RUN(test_submit_results);
    RUN(test_large_buffers);
    RUN(test_arena_free_before_resolve);
    RUN(test_map);
    RUN(test_crashes);
    RUN(test_retry);
    RUN(test_retry_map_resumes);
    RUN(test_iter_free_cancels_queued);
    RUN(test_deadline_and_cancel);
    RUN(test_initializer_and_recycling);
    RUN(test_worker_pid_at_once);
    RUN(test_broken_by_replacement_initializer);
    RUN(test_initializer_crash);
    RUN(test_shutdown);
    RUN(test_cancel_during_exit);
    RUN(test_cancel_kill_spares_the_next_task);
    RUN(test_cancel_from_done_callback);
    RUN(test_bad_input);
    RUN(test_kill_during_map);
    RUN(test_parent_death);
    /* Last: stops the fork server. A case of its own, because a failed
     * CHECK jumps back into the case that runs it (in main, after the
     * cases, it jumped into a returned frame: the test died with SIGSEGV). */
    RUN(test_fini);
    return check_done();
}
