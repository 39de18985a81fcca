/*
 * rwlock.c - weft_rwlock_t, a writer-preferring read-write lock on the
 * parking lot.
 *
 * The state word:
 *
 *   bit 0      WRITER   a writer holds the lock
 *   bit 1      RPARKED  readers may be parked (on &l->state)
 *   bit 2      WPARKED  writers may be parked (on &l->writer)
 *   bits 3-31  the number of readers holding the lock
 *
 * Readers and writers park on two different addresses, so that an unlock can
 * wake exactly the class it wants.
 *
 * Policy (as documented in weft/sync.h):
 *   - a reader enters only while neither WRITER nor WPARKED is set: a parked
 *     writer holds back new readers (writer preference);
 *   - a writer that unlocks with readers parked hands the lock to all of them
 *     at once: under the readers' bucket lock it clears WRITER and adds their
 *     number to the count, then wakes them with a hand-off token, so they
 *     enter together and before any writer (no reader starvation);
 *   - otherwise it hands the lock, still WRITER, to the longest-parked writer;
 *   - the last reader to leave while a writer is parked hands it the lock.
 * Hand-offs are direct (the lock never looks free in between), so neither a
 * barging reader nor a barging writer can cut in where the policy says who
 * goes next.
 *
 * Invariants that make the parking safe (the mutex's argument, twice):
 *   - RPARKED is set whenever a reader is parked, and is set by a reader only
 *     while WRITER or WPARKED is set; a reader parks only after validating,
 *     under its bucket lock, that RPARKED and (WRITER or WPARKED) still hold.
 *     Every transition that clears both WRITER and WPARKED while RPARKED is
 *     set wakes the readers (wrunlock hands over to them; a party that
 *     clears WPARKED calls wake_stuck_readers afterwards).
 *   - WPARKED is set whenever a writer is parked, and is set only while the
 *     lock is held; a writer parks only after validating that WPARKED is set
 *     and the lock still held. Every release of the lock with WPARKED set
 *     goes through an unpark of the writers' key, which clears WPARKED when
 *     nobody is found.
 * The fast paths are one CAS each: a read lock when no writer holds or
 * waits, a read unlock that is not the last before a parked writer, a write
 * lock of a free lock, a write unlock with nobody parked.
 *
 * The parking-lot technique (validate under the bucket lock, parked bits
 * cleared only by whoever sees the last waiter go, hand-off by token) is
 * WebKit's (F. Pizlo, "Locking in WebKit", 2016) as carried over to Rust's
 * parking_lot by A. d'Antras, whose RawRwLock this resembles; its policy
 * differs (we hand the lock to all parked readers at a writer's unlock).
 */
#include "internal.h"

#define WRITER 1u
#define RPARKED 2u
#define WPARKED 4u
#define READER 8u
#define NREADERS(s) ((s) >> 3)
#define MAX_READERS (UINT32_MAX >> 3)

/* Tokens handed to an unparked waiter. */
#define TOKEN_RETRY 0
#define TOKEN_HANDOFF 1

static inline _Atomic uint32_t *state_of(weft_rwlock_t *l) { return WEFT_A32(&l->state); }
static inline const void *rkey(weft_rwlock_t *l) { return &l->state; }
static inline const void *wkey(weft_rwlock_t *l) { return &l->writer; }

int weft_rwlock_init(weft_rwlock_t *l)
{
    if (!l)
        return -EINVAL;
    atomic_init(state_of(l), 0);
    l->_pad = 0;
    atomic_init(WEFT_A64(&l->writer), 0);
    return 0;
}

int weft_rwlock_destroy(weft_rwlock_t *l)
{
    if (!l)
        return -EINVAL;
    if (atomic_load_explicit(state_of(l), memory_order_acquire) != 0)
        return -EBUSY;
    return 0;
}

/* ---- waking readers left behind by a writer that gave up ---------------- */

static uintptr_t clear_rparked_cb(void *arg, unsigned count)
{
    (void)count;
    weft_rwlock_t *l = arg;
    /* Under the readers' bucket lock, so no reader can validate between
     * this and its wake-up: they all retry from the top. */
    atomic_fetch_and_explicit(state_of(l), ~RPARKED, memory_order_relaxed);
    return TOKEN_RETRY;
}

/* Called by whoever cleared WPARKED: readers parked behind the writers that
 * are now gone would otherwise wait for a wake-up nobody owes them. */
static void wake_stuck_readers(weft_rwlock_t *l)
{
    uint32_t s = atomic_load_explicit(state_of(l), memory_order_relaxed);
    if ((s & RPARKED) && !(s & (WRITER | WPARKED)))
        weft__unpark_all_cb(rkey(l), clear_rparked_cb, l);
}

/* ---- readers --------------------------------------------------------------- */

static bool validate_rd(void *arg)
{
    weft_rwlock_t *l = arg;
    uint32_t s = atomic_load_explicit(state_of(l), memory_order_relaxed);
    return (s & RPARKED) && (s & (WRITER | WPARKED));
}

static void timed_out_rd(void *arg, bool was_last)
{
    weft_rwlock_t *l = arg;
    if (was_last)
        atomic_fetch_and_explicit(state_of(l), ~RPARKED, memory_order_relaxed);
}

static WEFT_NOINLINE int rdlock_slow(weft_rwlock_t *l, weft_time_t deadline)
{
    _Atomic uint32_t *st = state_of(l);
    unsigned spins = 0;
    uint32_t s = atomic_load_explicit(st, memory_order_relaxed);
    for (;;) {
        if (!(s & (WRITER | WPARKED))) {
            if (NREADERS(s) == MAX_READERS)
                return -EOVERFLOW;
            if (atomic_compare_exchange_weak_explicit(st, &s, s + READER, memory_order_acquire,
                                                      memory_order_relaxed))
                return 0;
            continue;
        }
        if (!(s & RPARKED)) {
            /* Spin only behind a running writer; behind a parked one we will
             * wait at least a whole write section anyway. */
            if (!(s & WPARKED) && weft__spin_wait(&spins)) {
                s = atomic_load_explicit(st, memory_order_relaxed);
                continue;
            }
            if (!atomic_compare_exchange_weak_explicit(st, &s, s | RPARKED,
                                                       memory_order_relaxed,
                                                       memory_order_relaxed))
                continue;
        }
        uintptr_t token = TOKEN_RETRY;
        int r = weft__park_c(rkey(l), validate_rd, l, timed_out_rd, deadline, &token);
        if (r == 0 && token == TOKEN_HANDOFF)
            return 0; /* the unlocking writer counted us in */
        if (r == -ETIMEDOUT || r == -ECANCELED)
            return r;
        spins = 0;
        s = atomic_load_explicit(st, memory_order_relaxed);
    }
}

static inline int rdlock_fast(weft_rwlock_t *l)
{
    uint32_t s = atomic_load_explicit(state_of(l), memory_order_relaxed);
    if (WEFT_LIKELY(!(s & (WRITER | WPARKED)) && NREADERS(s) < MAX_READERS) &&
        atomic_compare_exchange_weak_explicit(state_of(l), &s, s + READER,
                                              memory_order_acquire, memory_order_relaxed))
        return 0;
    return -EAGAIN;
}

int weft_rwlock_rdlock(weft_rwlock_t *l)
{
    if (WEFT_UNLIKELY(!l))
        return -EINVAL;
    if (WEFT_LIKELY(rdlock_fast(l) == 0))
        return 0;
    return rdlock_slow(l, WEFT_FOREVER);
}

int weft_rwlock_rdlock_until(weft_rwlock_t *l, weft_time_t deadline)
{
    if (WEFT_UNLIKELY(!l || deadline < 0))
        return -EINVAL;
    if (rdlock_fast(l) == 0)
        return 0;
    return rdlock_slow(l, deadline);
}

int weft_rwlock_rdlock_try(weft_rwlock_t *l)
{
    if (WEFT_UNLIKELY(!l))
        return -EINVAL;
    _Atomic uint32_t *st = state_of(l);
    uint32_t s = atomic_load_explicit(st, memory_order_relaxed);
    for (;;) {
        if (s & (WRITER | WPARKED))
            return -EAGAIN;
        if (NREADERS(s) == MAX_READERS)
            return -EOVERFLOW;
        if (atomic_compare_exchange_weak_explicit(st, &s, s + READER, memory_order_acquire,
                                                  memory_order_relaxed))
            return 0;
    }
}

/* The last reader leaves while a writer is parked: under the writers' bucket
 * lock, hand the lock to the longest-parked writer, or, if none is there any
 * more, drop WPARKED.
 *
 * Normally we are the only reader left: no reader enters while WPARKED is
 * set. But the parked writers may all have timed out (clearing WPARKED)
 * after our check, letting readers in, and a new writer may have parked
 * since: then we cannot hand it the lock, and wake it to retry instead.
 *
 * With a writer found, our read lock goes in the same CAS (released, or
 * handed over): that is our last touch of the lock, since the writer may
 * unlock and free it as soon as it is finished. With nobody found we only
 * drop WPARKED and keep our read lock, so that the lock stays alive while
 * rdunlock wakes the readers parked behind the departed writers; it then
 * releases the read lock as its last act. */
static uintptr_t rdunlock_cb(void *arg, struct weft__unpark_result r)
{
    weft_rwlock_t *l = arg;
    _Atomic uint32_t *st = state_of(l);
    if (!r.unparked) {
        atomic_fetch_and_explicit(st, ~WPARKED, memory_order_relaxed);
        return TOKEN_RETRY;
    }
    uint32_t s = atomic_load_explicit(st, memory_order_relaxed);
    bool handoff;
    for (;;) {
        uint32_t n = s - READER;
        handoff = NREADERS(n) == 0;
        if (handoff)
            n = (n & ~WPARKED) | WRITER | (r.have_more ? WPARKED : 0);
        /* Release: the readers' sections happen before the writer's (the
         * writer also synchronises through its waiter's state). */
        if (atomic_compare_exchange_weak_explicit(st, &s, n, memory_order_release,
                                                  memory_order_relaxed))
            break;
    }
    return handoff ? TOKEN_HANDOFF : TOKEN_RETRY;
}

int weft_rwlock_rdunlock(weft_rwlock_t *l)
{
    if (WEFT_UNLIKELY(!l))
        return -EINVAL;
    _Atomic uint32_t *st = state_of(l);
    uint32_t s = atomic_load_explicit(st, memory_order_relaxed);
    for (;;) {
        if (WEFT_UNLIKELY(NREADERS(s) == 0))
            return -EPERM;
        if (NREADERS(s) > 1 || !(s & WPARKED)) {
            if (atomic_compare_exchange_weak_explicit(st, &s, s - READER, memory_order_release,
                                                      memory_order_relaxed))
                return 0;
            continue;
        }
        /* Last reader with a writer parked: if the callback found a
         * writer, it released our read lock (handing over if we were the
         * last), and we must not touch l again: the writer may already
         * have unlocked and freed it. If it found none, it cleared WPARKED
         * and we still hold our read lock: let the readers parked behind
         * the departed writers in, then release as usual (the loop). */
        if (weft__unpark_one(wkey(l), rdunlock_cb, l))
            return 0;
        wake_stuck_readers(l);
        s = atomic_load_explicit(st, memory_order_relaxed);
    }
}

/* ---- writers --------------------------------------------------------------- */

static bool validate_wr(void *arg)
{
    weft_rwlock_t *l = arg;
    uint32_t s = atomic_load_explicit(state_of(l), memory_order_relaxed);
    return (s & WPARKED) && ((s & WRITER) || NREADERS(s) > 0);
}

static void timed_out_wr(void *arg, bool was_last)
{
    weft_rwlock_t *l = arg;
    if (was_last)
        atomic_fetch_and_explicit(state_of(l), ~WPARKED, memory_order_relaxed);
}

static WEFT_NOINLINE int wrlock_slow(weft_rwlock_t *l, weft_time_t deadline)
{
    _Atomic uint32_t *st = state_of(l);
    _Atomic uint64_t *writer = WEFT_A64(&l->writer);
    uint64_t self = weft__self_id();
    /* Only the writer itself can find its own id here. */
    if (atomic_load_explicit(writer, memory_order_relaxed) == self)
        return -EDEADLK;
    unsigned spins = 0;
    uint32_t s = atomic_load_explicit(st, memory_order_relaxed);
    for (;;) {
        if (!(s & WRITER) && NREADERS(s) == 0) {
            if (atomic_compare_exchange_weak_explicit(st, &s, s | WRITER, memory_order_acquire,
                                                      memory_order_relaxed))
                break;
            continue;
        }
        if (!(s & WPARKED)) {
            if (weft__spin_wait(&spins)) {
                s = atomic_load_explicit(st, memory_order_relaxed);
                continue;
            }
            if (!atomic_compare_exchange_weak_explicit(st, &s, s | WPARKED,
                                                       memory_order_relaxed,
                                                       memory_order_relaxed))
                continue;
        }
        uintptr_t token = TOKEN_RETRY;
        int r = weft__park_c(wkey(l), validate_wr, l, timed_out_wr, deadline, &token);
        if (r == 0 && token == TOKEN_HANDOFF)
            break; /* the unlocker left WRITER set for us */
        if (r == -ETIMEDOUT || r == -ECANCELED) {
            wake_stuck_readers(l); /* a departing writer: as on a timeout */
            return r;
        }
        spins = 0;
        s = atomic_load_explicit(st, memory_order_relaxed);
    }
    atomic_store_explicit(writer, self, memory_order_relaxed);
    return 0;
}

int weft_rwlock_wrlock(weft_rwlock_t *l)
{
    if (WEFT_UNLIKELY(!l))
        return -EINVAL;
    uint32_t s = 0;
    if (WEFT_LIKELY(atomic_compare_exchange_weak_explicit(state_of(l), &s, WRITER,
                                                          memory_order_acquire,
                                                          memory_order_relaxed))) {
        atomic_store_explicit(WEFT_A64(&l->writer), weft__self_id(), memory_order_relaxed);
        return 0;
    }
    return wrlock_slow(l, WEFT_FOREVER);
}

int weft_rwlock_wrlock_until(weft_rwlock_t *l, weft_time_t deadline)
{
    if (WEFT_UNLIKELY(!l || deadline < 0))
        return -EINVAL;
    uint32_t s = 0;
    if (atomic_compare_exchange_strong_explicit(state_of(l), &s, WRITER, memory_order_acquire,
                                                memory_order_relaxed)) {
        atomic_store_explicit(WEFT_A64(&l->writer), weft__self_id(), memory_order_relaxed);
        return 0;
    }
    return wrlock_slow(l, deadline);
}

int weft_rwlock_wrlock_try(weft_rwlock_t *l)
{
    if (WEFT_UNLIKELY(!l))
        return -EINVAL;
    _Atomic uint32_t *st = state_of(l);
    uint32_t s = atomic_load_explicit(st, memory_order_relaxed);
    while (!(s & WRITER) && NREADERS(s) == 0) {
        if (atomic_compare_exchange_weak_explicit(st, &s, s | WRITER, memory_order_acquire,
                                                  memory_order_relaxed)) {
            atomic_store_explicit(WEFT_A64(&l->writer), weft__self_id(), memory_order_relaxed);
            return 0;
        }
    }
    return -EAGAIN;
}

/* A writer unlocks with readers parked: under the readers' bucket lock, let
 * all of them in at once. With none left (they timed out), just drop
 * RPARKED; the caller goes on to the writers. */
static uintptr_t wrunlock_readers_cb(void *arg, unsigned count)
{
    weft_rwlock_t *l = arg;
    _Atomic uint32_t *st = state_of(l);
    uint32_t s = atomic_load_explicit(st, memory_order_relaxed);
    for (;;) {
        uint32_t n = s & ~RPARKED;
        if (count > 0)
            n = (n & ~WRITER) + count * READER; /* WPARKED stays: writers wait */
        if (atomic_compare_exchange_weak_explicit(st, &s, n, memory_order_release,
                                                  memory_order_relaxed))
            break;
    }
    return count > 0 ? TOKEN_HANDOFF : TOKEN_RETRY;
}

/* A writer unlocks with writers parked and no readers: hand WRITER to the
 * longest-parked writer, or drop WPARKED if none is there any more. */
static uintptr_t wrunlock_writer_cb(void *arg, struct weft__unpark_result r)
{
    weft_rwlock_t *l = arg;
    _Atomic uint32_t *st = state_of(l);
    if (!r.unparked) {
        atomic_fetch_and_explicit(st, ~WPARKED, memory_order_relaxed);
        return TOKEN_RETRY;
    }
    if (!r.have_more)
        atomic_fetch_and_explicit(st, ~WPARKED, memory_order_relaxed);
    return TOKEN_HANDOFF;
}

int weft_rwlock_wrunlock(weft_rwlock_t *l)
{
    if (WEFT_UNLIKELY(!l))
        return -EINVAL;
    _Atomic uint64_t *writer = WEFT_A64(&l->writer);
    if (WEFT_UNLIKELY(atomic_load_explicit(writer, memory_order_relaxed) != weft__self_id()))
        return -EPERM;
    atomic_store_explicit(writer, 0, memory_order_relaxed);
    _Atomic uint32_t *st = state_of(l);
    uint32_t s = WRITER;
    if (WEFT_LIKELY(atomic_compare_exchange_strong_explicit(st, &s, 0, memory_order_release,
                                                            memory_order_relaxed)))
        return 0;
    /* Each failed round below clears a parked bit that had nobody behind
     * it, so the loop ends unless new waiters keep arriving, in which case
     * the next round hands the lock to them. */
    for (;;) {
        if (s & RPARKED) {
            if (weft__unpark_all_cb(rkey(l), wrunlock_readers_cb, l) > 0)
                return 0;
        } else if (s & WPARKED) {
            if (weft__unpark_one(wkey(l), wrunlock_writer_cb, l))
                return 0;
        } else if (atomic_compare_exchange_weak_explicit(st, &s, 0, memory_order_release,
                                                         memory_order_relaxed)) {
            return 0;
        } else {
            continue;
        }
        s = atomic_load_explicit(st, memory_order_relaxed);
    }
}
