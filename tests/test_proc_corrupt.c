/*
 * test_proc_corrupt.c - a task that writes over the pool's shared memory
 * (its own result ring, its result descriptor) makes that task fail with
 * -EBADMSG; the parent neither crashes nor hangs, and the pool goes on.
 *
 * White-box: the tasks forge records in the layout of src/proc/internal.h,
 * as a buggy task with a stray pointer could. Before the parent checked
 * what it reads there, the forged lengths and offsets made it memcpy or
 * free outside the mapping (SIGSEGV), or spin for ever on a record it
 * could not parse.
 */
#include <errno.h>
#include <stddef.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <weft.h>

#include "../src/proc/internal.h"
#include "check.h"

#ifdef WEFT_SANITIZE_THREAD
const char *__tsan_default_options(void);
const char *__tsan_default_options(void) { return "handle_segv=0:handle_sigbus=0"; }
#endif

static int square(weft_proc_task_t *t, const void *a, size_t n)
{
    int64_t x;
    if (n != sizeof x)
        return -EINVAL;
    memcpy(&x, a, sizeof x);
    x *= x;
    return weft_proc_reply(t, &x, sizeof x);
}

static void sleep_forever(void)
{
    /* Until the pool kills this worker. */
    struct timespec ts = {1000, 0};
    for (;;)
        nanosleep(&ts, NULL);
}

/* Ways to lie in the result descriptor (the task handle's fields, written
 * into the item by the worker after the task returns). */
enum { D_ARENA_OUTSIDE = 1, D_ARENA_NOT_OURS, D_ARENA_TOO_LONG, D_ARENA_HUGE };

static int lie_in_descriptor(weft_proc_task_t *t, const void *a, size_t n)
{
    int how;
    if (n != sizeof how)
        return -EINVAL;
    memcpy(&how, a, sizeof how);
    const struct wp_view *h = t->v;
    size_t big = (size_t)h->inline_max + 1; /* in the arena */
    void *buf;
    int rc = weft_proc_reply_buf(t, big, &buf);
    if (rc != 0)
        return rc;
    switch (how) {
    case D_ARENA_OUTSIDE: /* the header, as if it were a result */
        t->arena = 8 + 1;
        t->len = 4096;
        break;
    case D_ARENA_NOT_OURS: /* a page of the arena we do not own */
        t->arena = t->arena - 1 + WP_PAGE * 4 + 1;
        break;
    case D_ARENA_TOO_LONG: /* our run, but longer than it is */
        t->len = (size_t)wp_runlen(h)[(t->arena - 1 - h->off_arena) / WP_PAGE] * WP_PAGE + 1;
        break;
    case D_ARENA_HUGE: /* far past the mapping */
        t->arena = ((uint64_t)1 << 46) + 1;
        t->len = (size_t)1 << 30;
        break;
    }
    return 0;
}

/* Ways to forge a record in our own result ring (then publish it and wait
 * to be killed). */
enum {
    F_SIZE_ODD = 1, F_SIZE_PAST_END, F_TYPE, F_JOB_RANGE, F_JOB_OTHER, F_GEN, F_SPAN_ZERO,
    F_LEN_PAST_SPAN, F_STATUS_POSITIVE, F_ITEMS_PAST_N, F_TAIL_BEHIND, F_TAIL_AHEAD,
    F_COUNT
};

static int forge(weft_proc_task_t *t, const void *a, size_t n)
{
    int how;
    if (n != sizeof how)
        return -EINVAL;
    memcpy(&how, a, sizeof how);
    const struct wp_view *h = t->v;
    int idx = weft_proc_worker_index();
    struct wp_slot *slot = &wp_slots(h)[idx];
    unsigned char *ring = wp_cq(h, (uint32_t)idx);
    uint64_t tail = atomic_load(&slot->cq_tail);
    uint64_t run = atomic_load(&slot->running);
    uint32_t job = (uint32_t)(run & 0xffffffffu) - 1, gen = (uint32_t)(run >> 32);
    struct {
        struct wp_rec r;
        struct wp_item e;
        uint64_t data;
    } f = {{sizeof f, WR_RESULTS, job, gen, 0, 1, 1, 0}, {0, sizeof f.e + 8, 8, 0}, 42};
    uint64_t new_tail = tail + sizeof f;
    switch (how) {
    case F_SIZE_ODD: f.r.size = 12; break;
    case F_SIZE_PAST_END: f.r.size = (uint32_t)(h->ring_size - tail % h->ring_size + 8); break;
    case F_TYPE: f.r.type = 99; break;
    case F_JOB_RANGE: f.r.job = 50000; break;
    case F_JOB_OTHER: f.r.job = (job + 1) % WP_JOBS; break;
    case F_GEN: f.r.gen = gen + 7; break;
    case F_SPAN_ZERO: f.e.span = 0; break;
    case F_LEN_PAST_SPAN: f.e.len = 1 << 20; break;
    case F_STATUS_POSITIVE: /* set_error refuses it: the future never resolved */
        f.e.status = 5;
        f.e.len = 0;
        break;
    case F_ITEMS_PAST_N: f.r.first = 3; break;
    case F_TAIL_BEHIND: new_tail = tail - 8; break;
    case F_TAIL_AHEAD: new_tail = tail + 3 * h->ring_size; break;
    }
    memcpy(ring + tail % h->ring_size, &f, sizeof f);
    atomic_store(&slot->cq_tail, new_tail);
    sleep_forever();
    return 0;
}

static weft_proc_pool_t *g_pool;

/* The pool still works: a plain task on every worker. */
static void pool_still_works(void)
{
    enum { N = 8 };
    weft_future_t *fs[N];
    for (int64_t i = 0; i < N; i++)
        CHECK_OK(weft_proc_submit(g_pool, square, &i, sizeof i, &fs[i]));
    for (int64_t i = 0; i < N; i++) {
        const void *d;
        size_t len;
        CHECK_OK(weft_proc_result(fs[i], &d, &len));
        CHECK_INT(len, ==, 8);
        int64_t v;
        memcpy(&v, d, 8);
        CHECK_INT(v, ==, i * i);
        weft_future_release(fs[i]);
    }
}

/* Submit fn(how) with a deadline (it keeps the dispatcher looking at the
 * rings while the task waits to be killed) and expect -EBADMSG. */
static void expect_badmsg(weft_proc_fn fn, int how)
{
    weft_future_t *f;
    CHECK_OK(weft_proc_submit_ex(g_pool, fn, &how, sizeof how, (int64_t)60 * 1000000000, 0, &f));
    int rc = weft_proc_result(f, NULL, NULL);
    if (rc != -EBADMSG)
        fprintf(stderr, "  case %d\n", how);
    CHECK_RC(rc, -EBADMSG);
    weft_proc_exit_t x;
    CHECK_OK(weft_proc_exit_info(g_pool, f, &x));
    CHECK_RC(x.error, -EBADMSG);
    CHECK_INT(x.signal, ==, SIGKILL);
    weft_future_release(f);
}

static void test_descriptor_lies(void)
{
    for (int how = D_ARENA_OUTSIDE; how <= D_ARENA_HUGE; how++) {
        expect_badmsg(lie_in_descriptor, how);
        pool_still_works();
    }
}

static void test_forged_records(void)
{
    for (int how = 1; how < F_COUNT; how++) {
        expect_badmsg(forge, how);
        pool_still_works();
    }
    weft_proc_stats_t st;
    CHECK_OK(weft_proc_stats(g_pool, &st));
    CHECK_U64(st.killed, >=, F_COUNT - 1);
}

/* The layout and start-up fields of the pool's header, overwritten. */
static int scribble_header(weft_proc_task_t *t, const void *a, size_t n)
{
    memset(t->h, 0xab, offsetof(struct wp_hdr, pad0_));
    return square(t, a, n);
}

/* The parent finds nothing through the shared header (it used to take the
 * offsets of the rings and the job table from there, and crashed), and
 * replacement workers start from the parent's copy, not the damaged one. */
static void test_header_scribbled(void)
{
    int64_t x = 7;
    weft_future_t *f;
    CHECK_OK(weft_proc_submit(g_pool, scribble_header, &x, sizeof x, &f));
    const void *d;
    size_t len;
    CHECK_OK(weft_proc_result(f, &d, &len));
    CHECK_INT(len, ==, 8);
    int64_t v;
    memcpy(&v, d, 8);
    CHECK_INT(v, ==, 49);
    weft_future_release(f);
    for (int i = 0; i < weft_proc_workers(g_pool); i++) {
        int pid0 = weft_proc_worker_pid(g_pool, i);
        CHECK_OK(weft_proc_signal_worker(g_pool, i, SIGKILL));
        int pid = 0;
        for (int k = 0; k < 5000; k++) {
            pid = weft_proc_worker_pid(g_pool, i);
            if (pid > 0 && pid != pid0)
                break;
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
        CHECK_INT(pid, !=, pid0);
    }
    pool_still_works();
    weft_proc_stats_t st;
    CHECK_OK(weft_proc_stats(g_pool, &st));
    uint64_t spawned = st.spawned;
    pool_still_works();
    CHECK_OK(weft_proc_stats(g_pool, &st));
    CHECK_U64(st.spawned, ==, spawned); /* no worker failed to start since */
}

/* In a map, only the chunk of the lying item fails; the rest is right
 * (the other chunks the killed worker held are run again: max_retries). */
static int map_item(weft_proc_task_t *t, const void *a, size_t n)
{
    int64_t x;
    memcpy(&x, a, sizeof x);
    if (x == 5) {
        int how = D_ARENA_OUTSIDE;
        return lie_in_descriptor(t, &how, sizeof how);
    }
    return square(t, a, n);
}

static void test_map_with_a_liar(void)
{
    enum { N = 40 };
    int64_t in[N], out[N];
    int errs[N];
    for (int i = 0; i < N; i++)
        in[i] = i;
    weft_proc_opts_t o = {.workers = 2, .max_retries = 5};
    weft_proc_pool_t *p;
    CHECK_OK(weft_proc_pool_create(&p, &o));
    int rc = weft_proc_map(p, map_item, in, 8, N, out, 8, errs, 1);
    CHECK_RC(rc, -EBADMSG);
    for (int i = 0; i < N; i++) {
        if (i == 5) {
            CHECK_RC(errs[i], -EBADMSG);
        } else {
            CHECK_OK(errs[i]);
            CHECK_INT(out[i], ==, (int64_t)i * i);
        }
    }
    CHECK_OK(weft_proc_pool_free(p));
    pool_still_works();
}

int main(void)
{
    int rc = weft_proc_init();
    if (rc == WEFT_ETHREADED)
        check_skip("this process already runs threads (TSan's, qemu-user's): "
                   "weft_proc_init refuses to fork (WEFT_ETHREADED), by design");
    weft_proc_opts_t o = {.workers = 2, .ring_size = 64 * 1024, .arena_size = 4 << 20};
    rc = weft_proc_pool_create(&g_pool, &o);
    if (rc == -EADDRINUSE)
        check_skip("the pool's memory cannot be mapped in a worker here (TSan)");
    CHECK_OK(rc);
    if (rc != 0)
        return check_done();
    RUN(test_descriptor_lies);
    RUN(test_forged_records);
    RUN(test_map_with_a_liar);
    RUN(test_header_scribbled);
    CHECK_OK(weft_proc_pool_free(g_pool));
    CHECK_OK(weft_proc_fini());
    return check_done();
}
