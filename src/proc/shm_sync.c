/*
 * shm_sync.c - primitives for memory shared between processes: a robust
 * mutex, a semaphore, an event and a bounded channel.
 *
 * They block on process-shared futexes directly (weft__futex_wait/_wake
 * with shared = true), not through the parking lot: the lot's buckets live
 * in one process's memory, and a waiter in another process could never be
 * found there. The cost is that these do not suspend coroutines; they block
 * the calling thread.
 *
 * Robustness without the kernel's robust list: glibc owns each thread's
 * robust-futex list (set_robust_list allows one per thread), so the mutex
 * cannot register itself there without reaching into glibc's private
 * structures. Instead the lock word holds the owner's thread id, and a
 * waiter sleeps in slices of at most 50 ms; after each slice it asks the
 * kernel whether that thread still exists (kill(tid, 0), and its /proc
 * state is not zombie). If not, it takes the lock over with a CAS from the
 * exact word it saw, so among several waiters exactly one inherits it, and
 * it is told -EOWNERDEAD.
 */
#include "internal.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define M_WAITERS 0x80000000u
#define M_TID 0x3fffffffu
#define MF_INCONSISTENT 1u
#define MF_NOTRECOVERABLE 2u
#define SLICE_NS 50000000

/* The calling thread's id, cached. A forked child's thread inherits the
 * cache of the thread that forked, so the cache is dropped in the child. */
static _Thread_local int t_tid;
static pthread_once_t g_atfork_once = PTHREAD_ONCE_INIT;
static void forget_tid(void) { t_tid = 0; }
static void register_atfork(void) { pthread_atfork(NULL, NULL, forget_tid); }

static uint32_t self_tid(void)
{
    if (!t_tid) {
        pthread_once(&g_atfork_once, register_atfork);
        t_tid = (int)syscall(SYS_gettid);
    }
    return (uint32_t)t_tid & M_TID;
}

/* Does thread tid still run (exists and is not a zombie)? */
static bool thread_alive(uint32_t tid)
{
    if (kill((pid_t)tid, 0) < 0 && errno == ESRCH)
        return false;
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%u/stat", tid);
    FILE *f = fopen(path, "re");
    if (!f)
        return errno != ENOENT;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *rp = strrchr(buf, ')');
    return !(rp && rp[1] && (rp[2] == 'Z' || rp[2] == 'X'));
}

/* A wait of the semaphore, the event and the channel: on a process-shared
 * futex, in slices of at most SLICE_NS. A process can die at any
 * instruction, also between making its change (a unit released, an
 * element put in) and waking the waiters; the callers look at their
 * condition again after each slice, so such a death delays them by at
 * most a slice instead of leaving them asleep for good. */
static void shm_wait(_Atomic uint32_t *word, uint32_t expect, weft_time_t deadline)
{
    weft_time_t slice = weft_now() + SLICE_NS;
    weft__futex_wait(word, expect, deadline < slice ? deadline : slice, true);
}

/* ---- robust mutex ------------------------------------------------------------------- */

int weft_shm_mutex_init(weft_shm_mutex_t *m)
{
    if (!m)
        return -EINVAL;
    atomic_store(WEFT_A32(&m->word), 0);
    atomic_store(WEFT_A32(&m->flags), 0);
    return 0;
}

/* Took the lock normally: refuse if it became unrecoverable meanwhile. */
static int acquired(weft_shm_mutex_t *m)
{
    if (atomic_load(WEFT_A32(&m->flags)) & MF_NOTRECOVERABLE) {
        uint32_t old = atomic_exchange(WEFT_A32(&m->word), 0);
        if (old & M_WAITERS)
            weft__futex_wake(WEFT_A32(&m->word), INT_MAX, true);
        return -ENOTRECOVERABLE;
    }
    return 0;
}

/* The owner in w is dead: take over with a CAS from exactly w. */
static int take_over(weft_shm_mutex_t *m, uint32_t w, uint32_t me)
{
    if (!atomic_compare_exchange_strong(WEFT_A32(&m->word), &w, me | (w & M_WAITERS)))
        return 1; /* somebody else changed it: retry */
    atomic_fetch_or(WEFT_A32(&m->flags), MF_INCONSISTENT);
    return -EOWNERDEAD;
}

int weft_shm_mutex_lock_until(weft_shm_mutex_t *m, weft_time_t deadline)
{
    if (!m || deadline < 0)
        return -EINVAL;
    _Atomic uint32_t *word = WEFT_A32(&m->word);
    uint32_t me = self_tid();
    uint32_t extra = 0; /* M_WAITERS once we have slept */
    int spins = 0;
    for (;;) {
        if (atomic_load(WEFT_A32(&m->flags)) & MF_NOTRECOVERABLE)
            return -ENOTRECOVERABLE;
        uint32_t w = atomic_load_explicit(word, memory_order_relaxed);
        if (w == 0) {
            /* acquire: the previous owner's writes (it released). */
            if (atomic_compare_exchange_weak_explicit(word, &w, me | extra,
                                                      memory_order_acquire,
                                                      memory_order_relaxed))
                return acquired(m);
            continue;
        }
        uint32_t owner = w & M_TID;
        if (owner == me)
            return -EDEADLK;
        if (spins < 100) {
            spins++;
            weft__cpu_relax();
            continue;
        }
        if (deadline != WEFT_FOREVER && weft_now() >= deadline) {
            if (!thread_alive(owner)) {
                int r = take_over(m, w, me);
                if (r != 1)
                    return r;
                continue;
            }
            return -ETIMEDOUT;
        }
        if (!(w & M_WAITERS)) {
            if (!atomic_compare_exchange_strong(word, &w, w | M_WAITERS))
                continue;
            w |= M_WAITERS;
        }
        extra = M_WAITERS;
        weft_time_t slice = weft_now() + SLICE_NS;
        if (slice > deadline)
            slice = deadline;
        int r = weft__futex_wait(word, w, slice, true);
        if (r == -ETIMEDOUT && atomic_load(word) == w && !thread_alive(owner)) {
            r = take_over(m, w, me);
            if (r != 1)
                return r;
        }
    }
}

int weft_shm_mutex_lock(weft_shm_mutex_t *m) { return weft_shm_mutex_lock_until(m, WEFT_FOREVER); }

int weft_shm_mutex_lock_try(weft_shm_mutex_t *m)
{
    if (!m)
        return -EINVAL;
    if (atomic_load(WEFT_A32(&m->flags)) & MF_NOTRECOVERABLE)
        return -ENOTRECOVERABLE;
    uint32_t me = self_tid(), w = 0;
    if (atomic_compare_exchange_strong_explicit(WEFT_A32(&m->word), &w, me,
                                                memory_order_acquire, memory_order_relaxed))
        return acquired(m);
    if ((w & M_TID) == me)
        return -EDEADLK;
    if (!thread_alive(w & M_TID)) {
        int r = take_over(m, w, me);
        if (r != 1)
            return r;
    }
    return -EAGAIN;
}

int weft_shm_mutex_consistent(weft_shm_mutex_t *m)
{
    if (!m)
        return -EINVAL;
    if ((atomic_load(WEFT_A32(&m->word)) & M_TID) != self_tid())
        return -EPERM;
    uint32_t f = atomic_load(WEFT_A32(&m->flags));
    if (!(f & MF_INCONSISTENT))
        return -EINVAL;
    atomic_fetch_and(WEFT_A32(&m->flags), ~MF_INCONSISTENT);
    return 0;
}

int weft_shm_mutex_unlock(weft_shm_mutex_t *m)
{
    if (!m)
        return -EINVAL;
    _Atomic uint32_t *word = WEFT_A32(&m->word);
    if ((atomic_load_explicit(word, memory_order_relaxed) & M_TID) != self_tid())
        return -EPERM;
    bool dead_end = false;
    if (atomic_load(WEFT_A32(&m->flags)) & MF_INCONSISTENT) {
        /* Unlocked without being made consistent: nobody may use it again. */
        atomic_store(WEFT_A32(&m->flags), MF_NOTRECOVERABLE);
        dead_end = true;
    }
    /* release: our writes under the lock before the next owner's. */
    uint32_t old = atomic_exchange_explicit(word, 0, memory_order_release);
    if (old & M_WAITERS)
        weft__futex_wake(word, dead_end ? INT_MAX : 1, true);
    return 0;
}

/* ---- semaphore ------------------------------------------------------------------------ */

int weft_shm_sem_init(weft_shm_sem_t *s, unsigned value)
{
    if (!s || value > INT32_MAX)
        return -EINVAL;
    atomic_store(WEFT_A32(&s->value), value);
    atomic_store(WEFT_A32(&s->waiters), 0);
    return 0;
}

static int sem_take(weft_shm_sem_t *s)
{
    _Atomic uint32_t *v = WEFT_A32(&s->value);
    uint32_t x = atomic_load_explicit(v, memory_order_relaxed);
    while (x > 0)
        /* acquire: what the releaser wrote before giving the unit. */
        if (atomic_compare_exchange_weak_explicit(v, &x, x - 1, memory_order_acquire,
                                                  memory_order_relaxed))
            return 0;
    return -EAGAIN;
}

int weft_shm_sem_acquire_until(weft_shm_sem_t *s, weft_time_t deadline)
{
    if (!s || deadline < 0)
        return -EINVAL;
    for (;;) {
        if (sem_take(s) == 0)
            return 0;
        if (weft__deadline_passed(deadline))
            return -ETIMEDOUT;
        /* seq_cst: announce before the last look at the value, so that a
         * releaser either sees us or we see its unit. */
        atomic_fetch_add(WEFT_A32(&s->waiters), 1);
        if (atomic_load(WEFT_A32(&s->value)) == 0)
            shm_wait(WEFT_A32(&s->value), 0, deadline);
        atomic_fetch_sub(WEFT_A32(&s->waiters), 1);
    }
}

int weft_shm_sem_acquire(weft_shm_sem_t *s) { return weft_shm_sem_acquire_until(s, WEFT_FOREVER); }
int weft_shm_sem_acquire_try(weft_shm_sem_t *s) { return s ? sem_take(s) : -EINVAL; }

int weft_shm_sem_release(weft_shm_sem_t *s, unsigned n)
{
    if (!s || n == 0)
        return s ? 0 : -EINVAL;
    _Atomic uint32_t *v = WEFT_A32(&s->value);
    uint32_t x = atomic_load(v);
    do {
        if (n > INT32_MAX || x > (uint32_t)INT32_MAX - n)
            return -EOVERFLOW;
    } while (!atomic_compare_exchange_weak(v, &x, x + n)); /* seq_cst, see acquire */
    if (atomic_load(WEFT_A32(&s->waiters)))
        weft__futex_wake(v, n > INT_MAX ? INT_MAX : (int)n, true);
    return 0;
}

unsigned weft_shm_sem_value(const weft_shm_sem_t *s)
{
    return s ? atomic_load(WEFT_A32((uint32_t *)&s->value)) : 0;
}

/* ---- event -------------------------------------------------------------------------------- */

int weft_shm_event_init(weft_shm_event_t *e)
{
    if (!e)
        return -EINVAL;
    atomic_store(WEFT_A32(&e->state), 0);
    atomic_store(WEFT_A32(&e->waiters), 0);
    return 0;
}

int weft_shm_event_set(weft_shm_event_t *e)
{
    if (!e)
        return -EINVAL;
    _Atomic uint32_t *st = WEFT_A32(&e->state);
    uint32_t s = atomic_load(st);
    /* A new generation each time it becomes set: a waiter that saw the old
     * one returns even if the event is cleared again before it looks. */
    while (!(s & 1) && !atomic_compare_exchange_weak(st, &s, ((s >> 1) + 1) << 1 | 1))
        ;
    if (atomic_load(WEFT_A32(&e->waiters)))
        weft__futex_wake(st, INT_MAX, true);
    return 0;
}

int weft_shm_event_clear(weft_shm_event_t *e)
{
    if (!e)
        return -EINVAL;
    atomic_fetch_and(WEFT_A32(&e->state), ~1u);
    return 0;
}

bool weft_shm_event_is_set(const weft_shm_event_t *e)
{
    return e && (atomic_load(WEFT_A32((uint32_t *)&e->state)) & 1);
}

int weft_shm_event_wait_until(weft_shm_event_t *e, weft_time_t deadline)
{
    if (!e || deadline < 0)
        return -EINVAL;
    _Atomic uint32_t *st = WEFT_A32(&e->state);
    uint32_t s = atomic_load(st);
    if (s & 1)
        return 0;
    atomic_fetch_add(WEFT_A32(&e->waiters), 1);
    int rc = 0;
    for (;;) {
        uint32_t now = atomic_load(st);
        if ((now & 1) || (now >> 1) != (s >> 1))
            break;
        if (weft__deadline_passed(deadline)) {
            rc = -ETIMEDOUT;
            break;
        }
        shm_wait(st, now, deadline);
    }
    atomic_fetch_sub(WEFT_A32(&e->waiters), 1);
    return rc;
}

int weft_shm_event_wait(weft_shm_event_t *e) { return weft_shm_event_wait_until(e, WEFT_FOREVER); }

/* ---- channel ---------------------------------------------------------------------------------- */

/* struct weft_shm_chan: internal.h */

size_t weft_shm_chan_size(size_t capacity, size_t elem_size)
{
    if (!capacity || !elem_size || capacity > SIZE_MAX / elem_size)
        return 0;
    size_t b = capacity * elem_size;
    if (b > SIZE_MAX - sizeof(struct weft_shm_chan) - 8)
        return 0;
    return (sizeof(struct weft_shm_chan) + b + 7) & ~(size_t)7;
}

int weft_shm_chan_init(void *mem, size_t capacity, size_t elem_size, weft_shm_chan_t **out)
{
    if (!mem || !out || ((uintptr_t)mem & 7) || !weft_shm_chan_size(capacity, elem_size))
        return -EINVAL;
    struct weft_shm_chan *c = mem;
    memset(c, 0, sizeof *c);
    weft_shm_mutex_init(&c->lock);
    c->capacity = capacity;
    c->elem_size = elem_size;
    *out = c;
    return 0;
}

static int chan_lock(struct weft_shm_chan *c)
{
    int rc = weft_shm_mutex_lock(&c->lock);
    if (rc == -EOWNERDEAD) {
        /* A process died holding the lock. Every update under it is made
         * so that a half-done operation is invisible (the counters move
         * last), so the state is consistent as it is. Its wake-ups may
         * never have been sent: everyone waiting looks again now. */
        weft_shm_mutex_consistent(&c->lock);
        atomic_fetch_add(&c->not_empty, 1);
        atomic_fetch_add(&c->not_full, 1);
        weft__futex_wake(&c->not_empty, INT_MAX, true);
        weft__futex_wake(&c->not_full, INT_MAX, true);
        rc = 0;
    }
    return rc;
}

int weft_shm_chan_send_until(weft_shm_chan_t *c, const void *elem, weft_time_t deadline)
{
    if (!c || !elem || deadline < 0)
        return -EINVAL;
    for (;;) {
        int rc = chan_lock(c);
        if (rc < 0)
            return rc;
        if (c->closed) {
            weft_shm_mutex_unlock(&c->lock);
            return -EPIPE;
        }
        if (c->tail - c->head < c->capacity) {
            memcpy(c->buf + (c->tail % c->capacity) * c->elem_size, elem, c->elem_size);
            c->tail++;
            weft_shm_mutex_unlock(&c->lock);
            atomic_fetch_add(&c->not_empty, 1);
            if (atomic_load(&c->recv_waiting))
                weft__futex_wake(&c->not_empty, 1, true);
            return 0;
        }
        uint32_t seq = atomic_load(&c->not_full);
        atomic_fetch_add(&c->send_waiting, 1);
        weft_shm_mutex_unlock(&c->lock);
        if (weft__deadline_passed(deadline)) {
            atomic_fetch_sub(&c->send_waiting, 1);
            return -ETIMEDOUT;
        }
        shm_wait(&c->not_full, seq, deadline);
        atomic_fetch_sub(&c->send_waiting, 1);
    }
}

int weft_shm_chan_recv_until(weft_shm_chan_t *c, void *elem, weft_time_t deadline)
{
    if (!c || !elem || deadline < 0)
        return -EINVAL;
    for (;;) {
        int rc = chan_lock(c);
        if (rc < 0)
            return rc;
        if (c->tail != c->head) {
            memcpy(elem, c->buf + (c->head % c->capacity) * c->elem_size, c->elem_size);
            c->head++;
            weft_shm_mutex_unlock(&c->lock);
            atomic_fetch_add(&c->not_full, 1);
            if (atomic_load(&c->send_waiting))
                weft__futex_wake(&c->not_full, 1, true);
            return 0;
        }
        if (c->closed) {
            weft_shm_mutex_unlock(&c->lock);
            return -EPIPE;
        }
        uint32_t seq = atomic_load(&c->not_empty);
        atomic_fetch_add(&c->recv_waiting, 1);
        weft_shm_mutex_unlock(&c->lock);
        if (weft__deadline_passed(deadline)) {
            atomic_fetch_sub(&c->recv_waiting, 1);
            return -ETIMEDOUT;
        }
        shm_wait(&c->not_empty, seq, deadline);
        atomic_fetch_sub(&c->recv_waiting, 1);
    }
}

int weft_shm_chan_send(weft_shm_chan_t *c, const void *elem)
{
    return weft_shm_chan_send_until(c, elem, WEFT_FOREVER);
}
int weft_shm_chan_recv(weft_shm_chan_t *c, void *elem)
{
    return weft_shm_chan_recv_until(c, elem, WEFT_FOREVER);
}
int weft_shm_chan_send_try(weft_shm_chan_t *c, const void *elem)
{
    int rc = weft_shm_chan_send_until(c, elem, 0);
    return rc == -ETIMEDOUT ? -EAGAIN : rc;
}
int weft_shm_chan_recv_try(weft_shm_chan_t *c, void *elem)
{
    int rc = weft_shm_chan_recv_until(c, elem, 0);
    return rc == -ETIMEDOUT ? -EAGAIN : rc;
}

int weft_shm_chan_close(weft_shm_chan_t *c)
{
    if (!c)
        return -EINVAL;
    int rc = chan_lock(c);
    if (rc < 0)
        return rc;
    c->closed = 1;
    weft_shm_mutex_unlock(&c->lock);
    atomic_fetch_add(&c->not_empty, 1);
    atomic_fetch_add(&c->not_full, 1);
    weft__futex_wake(&c->not_empty, INT_MAX, true);
    weft__futex_wake(&c->not_full, INT_MAX, true);
    return 0;
}

size_t weft_shm_chan_len(const weft_shm_chan_t *c)
{
    if (!c)
        return 0;
    struct weft_shm_chan *m = (struct weft_shm_chan *)c;
    if (chan_lock(m) < 0)
        return 0;
    size_t n = (size_t)(m->tail - m->head);
    weft_shm_mutex_unlock(&m->lock);
    return n;
}
