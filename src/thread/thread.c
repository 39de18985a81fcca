/*
 * thread.c - weft_thread_t: OS threads with a name, a stack size and CPU
 * affinity, joinable with a deadline.
 *
 * A handle is a small heap block shared by the thread and its owner. Its
 * state word has three bits:
 *
 *   DONE      the thread's function has returned (or the thread ended with
 *             pthread_exit or was cancelled): set once, by the thread.
 *   DETACHED  the owner gave the handle to the thread: set once, by
 *             weft_thread_detach.
 *   PARKED    a joiner may be parked on the state word's address.
 *
 * Joining never polls and never blocks outside the parking layer until the
 * thread is known to be finished: the joiner sets PARKED and parks on
 * &t->state, validating under the parking-lot bucket lock that DONE is still
 * clear; the thread sets DONE with one read-modify-write and unparks the
 * joiner if that RMW saw PARKED. Both bits live in one word, so the RMWs are
 * totally ordered: either the thread's sees PARKED (and its unpark, which
 * takes the bucket lock, either finds the joiner queued or makes the
 * joiner's validation fail), or the joiner's sees DONE (and it does not
 * park). Once DONE is seen the joiner calls pthread_join, which then waits
 * at most for the thread's exit path (its TLS destructors), and frees the
 * handle. Inside a coroutine, the wait for DONE suspends only the coroutine.
 *
 * Who frees the handle: exactly one of "DONE was set first" and "DETACHED
 * was set first" holds, again because both are RMWs on one word. The thread,
 * if its RMW finds DETACHED, frees the handle; weft_thread_detach, if its RMW
 * finds DONE, frees it. weft_thread_detach calls pthread_detach *before*
 * setting DETACHED, because afterwards the handle (and the pthread_t in it)
 * may already be gone.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <weft/thread.h>

#include "../park/park.h"
#include "internal.h"

#define DONE 1u
#define DETACHED 2u
#define PARKED 4u

/* The smallest stack a caller may ask for (the header's promise). */
#define MIN_STACK (16u * 1024u)
/* Linux keeps 15 bytes of a thread's name plus the terminating NUL. */
#define NAME_MAX_LEN 15

struct weft_thread {
    pthread_t pt;             /* written by pthread_create; the thread never reads it */
    _Atomic uint32_t state;   /* DONE | DETACHED | PARKED */
    weft_thread_fn fn;        /* what to run, read by the thread at start */
    void *arg;
    char name[NAME_MAX_LEN + 1]; /* empty: leave the inherited name */
};

_Atomic int weft__thread_fail_create;

/* The handle of the weft thread running on this OS thread, while its
 * function runs: lets join detect a thread joining itself without reading
 * the pthread_t that pthread_create writes concurrently. */
static _Thread_local weft_thread_t *current_handle;

/* Copy name into dst (NAME_MAX_LEN + 1 bytes), cut to the kernel's limit at
 * a UTF-8 character boundary so that what is kept is still valid text. */
static void copy_name(char *dst, const char *name)
{
    size_t n = strlen(name);
    if (n > NAME_MAX_LEN) {
        n = NAME_MAX_LEN;
        /* name[n] is the first byte dropped: if it continues a multi-byte
         * character, drop that character's leading bytes too. */
        while (n > 0 && ((unsigned char)name[n] & 0xC0u) == 0x80u)
            n--;
    }
    memcpy(dst, name, n);
    dst[n] = '\0';
}

/* The end of a thread: runs after fn returns, and also as a cancellation
 * cleanup handler if the thread ends by pthread_exit or cancellation. */
static void finish(void *p)
{
    weft_thread_t *t = p;
    current_handle = NULL;
    /* acq_rel: release publishes everything fn did to a joiner that sees
     * DONE (pthread_join orders it too, but is_done readers rely on this);
     * acquire pairs with the detacher's release so that freeing below
     * happens after its last access to the handle. */
    uint32_t old = atomic_fetch_or_explicit(&t->state, DONE, memory_order_acq_rel);
    if (old & DETACHED) {
        free(t);
        return;
    }
    /* A joiner may be parked. The handle cannot be freed under us: the
     * joiner that sees DONE calls pthread_join, which waits for this thread
     * to return. */
    if (old & PARKED)
        weft__unpark_all(&t->state, 0);
}

static void *trampoline(void *p)
{
    weft_thread_t *t = p;
    current_handle = t;
    /* Named before fn runs, so that fn (and a debugger) sees its name. */
    if (t->name[0])
        pthread_setname_np(pthread_self(), t->name);
    weft_thread_fn fn = t->fn;
    void *arg = t->arg;
    void *volatile result = NULL;
    pthread_cleanup_push(finish, t);
    result = fn(arg);
    pthread_cleanup_pop(1);
    /* The value reaches the joiner through pthread_join. */
    return result;
}

/* Check opts and turn them into attributes. 0 or -EINVAL. */
static int make_attr(pthread_attr_t *attr, const weft_thread_opts_t *opts)
{
    if (!opts)
        return 0;
    if (opts->stack_size) {
        size_t sz = opts->stack_size;
        if (sz < MIN_STACK)
            return -EINVAL;
        long min = sysconf(_SC_THREAD_STACK_MIN);
        if (min > 0 && sz < (size_t)min)
            sz = (size_t)min;
        size_t page = weft__page_size();
        if (sz > SIZE_MAX - page)
            return -EINVAL;
        sz = (sz + page - 1) / page * page;
        if (pthread_attr_setstacksize(attr, sz) != 0)
            return -EINVAL;
    }
    if (opts->ncpus && !opts->cpus)
        return -EINVAL;
    if (opts->cpus) {
        if (opts->ncpus == 0)
            return -EINVAL;
        long nconf = sysconf(_SC_NPROCESSORS_CONF);
        if (nconf < 1)
            nconf = 1;
        for (size_t i = 0; i < opts->ncpus; i++)
            if (opts->cpus[i] < 0 || opts->cpus[i] >= nconf)
                return -EINVAL;
        cpu_set_t *set = CPU_ALLOC((int)nconf);
        if (!set)
            return -ENOMEM;
        size_t size = CPU_ALLOC_SIZE((int)nconf);
        CPU_ZERO_S(size, set);
        for (size_t i = 0; i < opts->ncpus; i++)
            CPU_SET_S((size_t)opts->cpus[i], size, set);
        /* glibc applies the mask before the thread runs any user code; if
         * the kernel refuses it (a CPU outside our cpuset), pthread_create
         * fails with EINVAL and the thread never runs fn. */
        int e = pthread_attr_setaffinity_np(attr, size, set);
        CPU_FREE(set);
        if (e)
            return e == ENOMEM ? -ENOMEM : -EINVAL;
    }
    return 0;
}

int weft_thread_start(weft_thread_t **out, weft_thread_fn fn, void *arg,
                      const weft_thread_opts_t *opts)
{
    if (!out || !fn)
        return -EINVAL;
    pthread_attr_t attr;
    if (pthread_attr_init(&attr) != 0)
        return -ENOMEM;
    int r = make_attr(&attr, opts);
    if (r) {
        pthread_attr_destroy(&attr);
        return r;
    }
    weft_thread_t *t = malloc(sizeof *t);
    if (!t) {
        pthread_attr_destroy(&attr);
        return -ENOMEM;
    }
    atomic_init(&t->state, 0);
    t->fn = fn;
    t->arg = arg;
    t->name[0] = '\0';
    if (opts && opts->name)
        copy_name(t->name, opts->name);

    int e;
    int fail = atomic_load_explicit(&weft__thread_fail_create, memory_order_relaxed);
    if (fail > 0 && atomic_compare_exchange_strong_explicit(&weft__thread_fail_create, &fail,
                                                            fail - 1, memory_order_relaxed,
                                                            memory_order_relaxed))
        e = EAGAIN;
    else
        e = pthread_create(&t->pt, &attr, trampoline, t);
    pthread_attr_destroy(&attr);
    if (e) {
        /* The thread does not exist, so nobody else has seen t. */
        free(t);
        return e == EINVAL ? -EINVAL : e == ENOMEM ? -ENOMEM : -EAGAIN;
    }
    *out = t;
    return 0;
}

static bool validate_not_done(void *arg)
{
    weft_thread_t *t = arg;
    return !(atomic_load_explicit(&t->state, memory_order_relaxed) & DONE);
}

static void join_timed_out(void *arg, bool was_last)
{
    weft_thread_t *t = arg;
    /* Under the bucket lock, so no joiner can be queuing meanwhile: with
     * nobody left, the thread need not unpark. */
    if (was_last)
        atomic_fetch_and_explicit(&t->state, ~PARKED, memory_order_relaxed);
}

int weft_thread_join_until(weft_thread_t *t, void **result, weft_time_t deadline)
{
    if (!t || deadline < 0)
        return -EINVAL;
    if (t == current_handle)
        return -EDEADLK;
    _Atomic uint32_t *st = &t->state;
    for (;;) {
        /* acquire: pairs with the thread's release of DONE. */
        uint32_t s = atomic_load_explicit(st, memory_order_acquire);
        if (s & DONE)
            break;
        if (weft__deadline_passed(deadline))
            return -ETIMEDOUT;
        if (!(s & PARKED))
            atomic_fetch_or_explicit(st, PARKED, memory_order_relaxed);
        int r = weft__park(st, validate_not_done, t, join_timed_out, deadline, NULL);
        if (r == -ETIMEDOUT) {
            /* The thread may have finished just as we gave up: then join
             * anyway rather than report a timeout for a finished thread. */
            if (atomic_load_explicit(st, memory_order_acquire) & DONE)
                break;
            return -ETIMEDOUT;
        }
        /* 0 (unparked; possibly a stale unpark of a reused address) or
         * -EAGAIN (DONE already set): look again. */
    }
    void *value = NULL;
    int e = pthread_join(t->pt, &value);
    if (e)
        return e == EDEADLK ? -EDEADLK : -EINVAL;
    free(t);
    if (result)
        *result = value;
    return 0;
}

int weft_thread_join(weft_thread_t *t, void **result)
{
    return weft_thread_join_until(t, result, WEFT_FOREVER);
}

int weft_thread_detach(weft_thread_t *t)
{
    if (!t)
        return -EINVAL;
    /* A thread may detach itself (t == current_handle): finish() then
     * frees the handle. Read and detach before publishing DETACHED: from then on the thread
     * may free the handle at any moment. */
    int e = pthread_detach(t->pt);
    if (e)
        return -EINVAL;
    /* release: our reads of t happen before the thread's free; acquire:
     * if the thread already finished, its writes happen before our free. */
    uint32_t old = atomic_fetch_or_explicit(&t->state, DETACHED, memory_order_acq_rel);
    if (old & DONE)
        free(t);
    return 0;
}

bool weft_thread_is_done(const weft_thread_t *t)
{
    if (!t)
        return false;
    return atomic_load_explicit(&((weft_thread_t *)t)->state, memory_order_acquire) & DONE;
}

uint64_t weft_thread_id(void)
{
    return weft__thread_id();
}

int weft_thread_native_id(void)
{
    /* Not cached: a forked child's thread has a new id but the same TLS. */
    return (int)syscall(SYS_gettid);
}

int weft_thread_set_name(const char *name)
{
    if (!name)
        return -EINVAL;
    char buf[NAME_MAX_LEN + 1];
    copy_name(buf, name);
    int e = pthread_setname_np(pthread_self(), buf);
    return e ? -e : 0;
}

int weft_thread_get_name(char *buf, size_t size)
{
    if (!buf || size == 0)
        return -EINVAL;
    char name[NAME_MAX_LEN + 1];
    int e = pthread_getname_np(pthread_self(), name, sizeof name);
    if (e) {
        buf[0] = '\0';
        return -e;
    }
    size_t n = strnlen(name, NAME_MAX_LEN);
    if (n >= size)
        n = size - 1;
    memcpy(buf, name, n);
    buf[n] = '\0';
    return 0;
}

void weft_thread_yield(void)
{
    sched_yield();
}
