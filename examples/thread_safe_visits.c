/*
 * thread_safe_visits.c - fixing the race of thread_visits.c, and what the
 * fix costs.
 *
 * Python:
 *   lock = threading.Lock()
 *   def visit():
 *       global counter
 *       for _ in range(100_000):
 *           with lock:
 *               counter += 1
 *
 * A lock makes the read and the write one step that no other thread can
 * split: the total is exact. The price: the protected block runs on one
 * thread at a time, and each lock and unlock costs time. For a single
 * counter an atomic add (one indivisible read-modify-write instruction) is
 * the cheaper fix. The lesson runs the three side by side on 100 threads and
 * times them.
 *
 * Build and run: build/examples/thread_safe_visits, or
 * `weft demo thread_safe_visits`.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <weft.h>

#include "lesson.h"

enum { NTHREADS = 100, VISITS = 100000 };

enum way { UNPROTECTED, WITH_MUTEX, WITH_ATOMIC_ADD, NWAYS };

static const char *const way_name[NWAYS] = {"unprotected", "with a mutex", "with an atomic add"};
static const char *const way_key[NWAYS] = {"unprotected", "mutex", "atomic"};

struct visits {
    enum way way;
    uint64_t per_thread;      /* visits each thread makes */
    weft_event_t go;          /* all threads begin together */
    weft_mutex_t lock;        /* guards `counter` in the WITH_MUTEX way */
    _Atomic uint64_t counter; /* the shared count */
    _Atomic int error;        /* first error a thread met, or 0 */
};

static void *visit(void *arg)
{
    struct visits *v = arg;
    weft_event_wait(&v->go);
    switch (v->way) {
    case UNPROTECTED: /* thread_visits.c: read, then write; updates get lost */
        for (uint64_t i = 0; i < v->per_thread; i++) {
            uint64_t seen = atomic_load_explicit(&v->counter, memory_order_relaxed);
            atomic_store_explicit(&v->counter, seen + 1, memory_order_relaxed);
        }
        break;
    case WITH_MUTEX: /* the same read and write, but nobody can come between */
        for (uint64_t i = 0; i < v->per_thread; i++) {
            int rc = weft_mutex_lock(&v->lock);
            if (rc != 0) {
                atomic_store_explicit(&v->error, rc, memory_order_relaxed);
                break;
            }
            /* relaxed suffices: the mutex orders these accesses. */
            uint64_t seen = atomic_load_explicit(&v->counter, memory_order_relaxed);
            atomic_store_explicit(&v->counter, seen + 1, memory_order_relaxed);
            rc = weft_mutex_unlock(&v->lock);
            if (rc != 0) {
                atomic_store_explicit(&v->error, rc, memory_order_relaxed);
                break;
            }
        }
        break;
    case WITH_ATOMIC_ADD: /* one indivisible read-modify-write */
        for (uint64_t i = 0; i < v->per_thread; i++)
            atomic_fetch_add_explicit(&v->counter, 1, memory_order_relaxed);
        break;
    default:
        break;
    }
    return NULL;
}

/* Run one way on NTHREADS threads; the total, or a negative weft error. */
static int64_t run_way(enum way way, uint64_t per_thread, double *seconds)
{
    struct visits v = {.way = way, .per_thread = per_thread};
    weft_event_init(&v.go);
    weft_mutex_init(&v.lock);
    atomic_init(&v.counter, 0);
    atomic_init(&v.error, 0);
    weft_thread_t *threads[NTHREADS];
    int started = 0, rc = 0;
    for (; started < NTHREADS; started++) {
        rc = weft_thread_start(&threads[started], visit, &v, NULL);
        if (rc != 0)
            break;
    }
    weft_time_t t0 = weft_now();
    weft_event_set(&v.go);
    for (int i = 0; i < started; i++) {
        int jr = weft_thread_join(threads[i], NULL);
        if (jr != 0 && rc == 0)
            rc = jr;
    }
    *seconds = weft_seconds_between(t0, weft_now());
    if (rc == 0)
        rc = atomic_load_explicit(&v.error, memory_order_relaxed);
    int dr = weft_mutex_destroy(&v.lock);
    if (rc == 0)
        rc = dr;
    weft_event_destroy(&v.go);
    return rc != 0 ? rc : (int64_t)atomic_load_explicit(&v.counter, memory_order_relaxed);
}

static int thread_safe_visits_lesson(lesson_run_t *run)
{
    uint64_t per_thread = lesson_scaled(run, VISITS);
    uint64_t expected = NTHREADS * per_thread;
    char e[32], c[32], t1[32], t2[32];
    lesson_say(run, "The same %d threads x %s increments, three ways: unprotected, with a",
               NTHREADS, lesson_fmt_count(e, sizeof e, per_thread));
    lesson_say(run, "mutex around the read and write, and with one atomic add. Totals and times:");

    lesson_figure_count(run, "expected", "expected total", expected);
    uint64_t total[NWAYS];
    double secs[NWAYS];
    for (int w = 0; w < NWAYS; w++) {
        int64_t got = run_way((enum way)w, per_thread, &secs[w]);
        if (got < 0)
            return lesson_fail_rc(run, way_name[w], (int)got);
        total[w] = (uint64_t)got;
        char key[32], label[64];
        snprintf(key, sizeof key, "%s_total", way_key[w]);
        snprintf(label, sizeof label, "%s: total", way_name[w]);
        lesson_figure_count(run, key, label, total[w]);
        snprintf(key, sizeof key, "%s_seconds", way_key[w]);
        snprintf(label, sizeof label, "%s: time", way_name[w]);
        lesson_figure_time(run, key, label, secs[w]);
    }
    if (total[UNPROTECTED] > expected)
        return lesson_fail(run, "unprotected total %s is above the expected %s",
                           lesson_fmt_count(c, sizeof c, total[UNPROTECTED]),
                           lesson_fmt_count(e, sizeof e, expected));
    for (int w = WITH_MUTEX; w < NWAYS; w++)
        if (total[w] != expected)
            return lesson_fail(run, "%s the total is %s, not exactly %s", way_name[w],
                               lesson_fmt_count(c, sizeof c, total[w]),
                               lesson_fmt_count(e, sizeof e, expected));
    lesson_figure_num(run, "mutex_per_op", "mutex: time per increment",
                      secs[WITH_MUTEX] * 1e9 / (double)expected, "ns");
    lesson_figure_num(run, "atomic_per_op", "atomic add: time per increment",
                      secs[WITH_ATOMIC_ADD] * 1e9 / (double)expected, "ns");
    lesson_figure_num(run, "mutex_vs_atomic", "mutex time / atomic add time",
                      secs[WITH_MUTEX] / secs[WITH_ATOMIC_ADD], "x");
    lesson_say(run, "Both fixes give exactly %s; the unprotected run lost %s updates.",
               lesson_fmt_count(e, sizeof e, expected),
               lesson_fmt_count(c, sizeof c, expected - total[UNPROTECTED]));

    lesson_key(run, "exact %s; mutex %s, atomic %s", lesson_fmt_count(e, sizeof e, expected),
               lesson_fmt_time(t1, sizeof t1, secs[WITH_MUTEX]),
               lesson_fmt_time(t2, sizeof t2, secs[WITH_ATOMIC_ADD]));
    return 0;
}

WEFT_LESSON(50, "thread_safe_visits", "A lock fixes the race, at a cost; an atomic add is cheaper",
            thread_safe_visits_lesson)
