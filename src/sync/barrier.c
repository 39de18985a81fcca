/*
 * barrier.c - weft_barrier_t (threading.Barrier).
 *
 * The barrier's state lives under its own weft_mutex_t; waiters park on the
 * address of `word`, a sequence bumped (under the mutex) by every change a
 * waiter must see: a round completing, the barrier breaking, a reset
 * finishing. A waiter reads `word` under the mutex, unlocks, and parks only
 * after validating, under the bucket lock, that `word` has not moved; so no
 * change made after it unlocked can be missed.
 *
 * How a waiter learns how its round ended, without a history of rounds:
 *   - `generation` numbers the round being filled. It moves on when a round
 *     completes, and when a reset finishes;
 *   - after a break, the round stays current (generation unchanged) until
 *     every caller counted in it has left: a reset first moves the barrier to
 *     RESETTING, new arrivals wait, and the last leaver finishes the reset
 *     (this is the "draining" of Python's Barrier).
 * Hence a waiter of round g that finds generation != g knows its round
 * completed (a broken round g cannot be left behind while it is still
 * counted in it); one that finds generation == g and the barrier broken or
 * resetting knows its round broke. The completed case needs no lock in the
 * common case: woken waiters read generation (acquire) and go, so a round's
 * release does not make every waiter queue on the mutex; but they go only
 * once the mutex is seen unlocked, since the releaser still holds it for an
 * instant after publishing the generation (see round_released).
 *
 * Arrival indices, as in Python: the k-th arrival this round (from 0) gets
 * k, so the last to arrive (which runs the action) gets parties-1.
 */
#include "internal.h"

enum { B_OK = 0, B_BROKEN = 1, B_RESETTING = 2 };

static inline _Atomic uint32_t *word_of(weft_barrier_t *b) { return WEFT_A32(&b->word); }
static inline _Atomic uint32_t *count_of(weft_barrier_t *b) { return WEFT_A32(&b->count); }
static inline _Atomic uint32_t *broken_of(weft_barrier_t *b) { return WEFT_A32(&b->broken); }
static inline _Atomic uint64_t *gen_of(weft_barrier_t *b) { return WEFT_A64(&b->generation); }

/* Fields written only under the mutex are still accessed atomically
 * (relaxed) because the hints (is_broken, n_waiting), validation and the
 * lock-free generation check read them without it. */
static inline uint32_t ld(_Atomic uint32_t *p) { return atomic_load_explicit(p, memory_order_relaxed); }
static inline void st(_Atomic uint32_t *p, uint32_t v) { atomic_store_explicit(p, v, memory_order_relaxed); }

/* Under the mutex: tell every waiter to look again (they are unparked by
 * wake_all once the mutex is released). */
static inline void bump(weft_barrier_t *b) { st(word_of(b), ld(word_of(b)) + 1); }
static inline void wake_all(weft_barrier_t *b) { weft__unpark_all(&b->word, 0); }

int weft_barrier_init(weft_barrier_t *b, unsigned parties, void (*action)(void *arg),
                      void *arg)
{
    if (!b || parties == 0 || parties > INT32_MAX)
        return -EINVAL; /* indices are returned as int */
    weft_mutex_init(&b->lock);
    atomic_init(word_of(b), 0);
    b->parties = parties;
    atomic_init(count_of(b), 0);
    atomic_init(broken_of(b), B_OK);
    atomic_init(gen_of(b), 0);
    b->action = action;
    b->action_arg = arg;
    return 0;
}

int weft_barrier_destroy(weft_barrier_t *b)
{
    if (!b)
        return -EINVAL;
    if (weft_mutex_is_locked(&b->lock) || ld(count_of(b)) != 0 || weft__is_parked(&b->word))
        return -EBUSY;
    return 0;
}

bool weft_barrier_is_broken(weft_barrier_t *b)
{
    return b && ld(broken_of(b)) == B_BROKEN;
}

unsigned weft_barrier_n_waiting(weft_barrier_t *b)
{
    if (!b || ld(broken_of(b)) != B_OK)
        return 0;
    return ld(count_of(b));
}

struct bar_wait {
    weft_barrier_t *b;
    uint32_t word; /* read under the mutex */
};

static bool validate_word(void *arg)
{
    struct bar_wait *w = arg;
    return ld(word_of(w->b)) == w->word;
}

/* Unlock the mutex (held) and park until `word` moves or the deadline. The
 * mutex is NOT held on return. */
static int unlock_and_park(weft_barrier_t *b, weft_time_t deadline)
{
    struct bar_wait w = {b, ld(word_of(b))};
    weft_mutex_unlock(&b->lock);
    return weft__park_c(&b->word, validate_word, &w, NULL, deadline, NULL);
}

/* Under the mutex: a caller counted in a broken round leaves. The last one
 * to leave a round being reset finishes the reset. Returns true if waiters
 * must be woken once the mutex is released. */
static bool leave_broken(weft_barrier_t *b)
{
    uint32_t c = ld(count_of(b)) - 1;
    st(count_of(b), c);
    if (c == 0 && ld(broken_of(b)) == B_RESETTING) {
        st(broken_of(b), B_OK);
        atomic_store_explicit(gen_of(b), atomic_load_explicit(gen_of(b), memory_order_relaxed) + 1,
                              memory_order_release);
        bump(b);
        return true;
    }
    return false;
}

/*
 * Lock-free exit: has round g completed, and has its releaser finished
 * with b? The releaser stores the new generation while it holds the mutex,
 * and its unlock is its last touch of b (the wake-up after it uses the
 * address only as a key). A waiter that returned on seeing the generation
 * alone could free b (every party has returned: a barrier on the stack of
 * one of them) while the releaser is still unlocking, writing into freed
 * memory. So the generation must have moved and the mutex be seen
 * unlocked: the releaser held it when it stored the generation, so by
 * coherence an unlocked state read after that store comes from the
 * releaser's unlock or a later one (acquire: its unlock happens before our
 * return). If the mutex looks held, the caller takes it, which orders the
 * same way.
 */
static bool round_released(weft_barrier_t *b, uint64_t g)
{
    return atomic_load_explicit(gen_of(b), memory_order_acquire) != g &&
           !(atomic_load_explicit(WEFT_A32(&b->lock.state), memory_order_acquire) & 1u);
}

int weft_barrier_wait_until(weft_barrier_t *b, weft_time_t deadline)
{
    if (WEFT_UNLIKELY(!b || deadline < 0))
        return -EINVAL;
    int r = weft__mutex_lock_nc(&b->lock);
    if (r != 0)
        return r; /* -EDEADLK: called from this barrier's own action */

    /* A reset is draining the callers of a broken round: wait for it to end
     * (they are already woken, so this is short). */
    while (ld(broken_of(b)) == B_RESETTING) {
        r = unlock_and_park(b, deadline);
        weft__mutex_lock_nc(&b->lock);
        if ((r == -ETIMEDOUT || r == -ECANCELED) && ld(broken_of(b)) == B_RESETTING) {
            weft_mutex_unlock(&b->lock);
            return r; /* not counted in any round: nothing to break */
        }
    }
    if (ld(broken_of(b)) == B_BROKEN) {
        weft_mutex_unlock(&b->lock);
        return WEFT_EBROKEN;
    }

    uint64_t g = atomic_load_explicit(gen_of(b), memory_order_relaxed);
    uint32_t c = ld(count_of(b));
    int index = (int)c;
    if (c + 1 == b->parties) {
        /* The last arrival: run the action, then release the round. The
         * release store pairs with the woken waiters' acquire load, so the
         * action's effects and everything each party did before arriving
         * (ordered to us by the mutex) are visible to all of them. */
        if (b->action)
            b->action(b->action_arg);
        st(count_of(b), 0);
        atomic_store_explicit(gen_of(b), g + 1, memory_order_release);
        bump(b);
        weft_mutex_unlock(&b->lock);
        wake_all(b);
        return index;
    }
    st(count_of(b), c + 1);

    for (;;) {
        r = unlock_and_park(b, deadline);
        if (round_released(b, g))
            return index; /* our round completed and its releaser is done with b */
        weft__mutex_lock_nc(&b->lock);
        if (atomic_load_explicit(gen_of(b), memory_order_acquire) != g) {
            weft_mutex_unlock(&b->lock);
            return index;
        }
        if (ld(broken_of(b)) != B_OK) {
            bool wake = leave_broken(b);
            weft_mutex_unlock(&b->lock);
            if (wake)
                wake_all(b);
            return WEFT_EBROKEN;
        }
        if (r == -ETIMEDOUT || r == -ECANCELED) {
            /* We give up (deadline, or our task was cancelled): the round
             * can no longer complete, so it breaks for everyone (Python's
             * Barrier does the same on a timeout and on cancellation). */
            st(broken_of(b), B_BROKEN);
            st(count_of(b), ld(count_of(b)) - 1);
            bump(b);
            weft_mutex_unlock(&b->lock);
            wake_all(b);
            return r;
        }
        /* Woken with nothing changed for us (cannot happen with the current
         * bumps, but parking may return early): wait again. */
    }
}

int weft_barrier_wait(weft_barrier_t *b)
{
    return weft_barrier_wait_until(b, WEFT_FOREVER);
}

int weft_barrier_abort(weft_barrier_t *b)
{
    if (!b)
        return -EINVAL;
    int r = weft__mutex_lock_nc(&b->lock);
    if (r != 0)
        return r;
    st(broken_of(b), B_BROKEN);
    bump(b);
    weft_mutex_unlock(&b->lock);
    wake_all(b);
    return 0;
}

int weft_barrier_reset(weft_barrier_t *b)
{
    if (!b)
        return -EINVAL;
    int r = weft__mutex_lock_nc(&b->lock);
    if (r != 0)
        return r;
    if (ld(count_of(b)) > 0) {
        /* Callers are counted in the current round (waiting, or leaving a
         * broken one): they get WEFT_EBROKEN, and the last to leave makes
         * the barrier usable again. Until then new arrivals wait. */
        st(broken_of(b), B_RESETTING);
    } else {
        st(broken_of(b), B_OK);
    }
    bump(b);
    weft_mutex_unlock(&b->lock);
    wake_all(b);
    return 0;
}
