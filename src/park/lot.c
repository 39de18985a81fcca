/*
 * lot.c - the parking lot: waiters queued by address.
 *
 * A fixed table of buckets, each a word lock and a FIFO list of parked
 * waiters whose keys hash there. Parking validates the primitive's state and
 * enqueues under the bucket lock; unparking dequeues under it. Whether a
 * waiter was unparked or timed out is decided by one thing only: whether it
 * is still queued when it takes the bucket lock after its deadline. The
 * unparker writes the token, dequeues and marks the node under the lock, and
 * finishes the waiter after unlocking; a timed-out waiter that finds itself
 * dequeued waits (without deadline) for that finish, which is imminent.
 *
 * The table has a fixed size: keys that collide share a list and are told
 * apart by key, so collisions cost scanning, never correctness.
 */
#include "park.h"

#include <errno.h>
#include <stddef.h>

#define LOT_SIZE (1u << WEFT__LOT_BITS)
/* Longest gap between fair hand-offs, in nanoseconds (randomised below). */
#define FAIR_INTERVAL_NS 1000000

struct lot_node {
    struct weft__waiter w;  /* how the parked context sleeps and wakes */
    const void *key;        /* the address it parked on */
    struct lot_node *next;  /* next in the bucket's FIFO */
    uintptr_t token;        /* written by the unparker before finishing */
    bool queued;            /* under the bucket lock: still in the list */
};

struct bucket {
    _Atomic uint32_t lock;  /* 0 free, 1 locked, 2 locked with sleepers */
    uint32_t _pad;
    struct lot_node *head;
    struct lot_node *tail;
    weft_time_t fair_at;    /* after this, the next unpark is fair */
    char _line[WEFT_CACHELINE - 2 * sizeof(uint32_t) - 2 * sizeof(void *) - sizeof(weft_time_t)];
};

static struct bucket table[LOT_SIZE];

/* See park.h: a separate array, so that the hot loads of releasers do not
 * share lines with the bucket locks. */
_Atomic uint32_t weft__park_announce[LOT_SIZE];

static struct bucket *bucket_of(const void *key)
{
    return &table[weft__lot_index(key)];
}

/* The bucket lock: a futex mutex (Drepper, "Futexes are tricky", mutex2),
 * held only for a few list operations. Bucket locks are never nested. */
static void bucket_lock(struct bucket *b)
{
    uint32_t c = 0;
    if (atomic_compare_exchange_strong_explicit(&b->lock, &c, 1, memory_order_acquire,
                                                memory_order_relaxed))
        return;
    for (int i = 0; i < 64; i++) {
        weft__cpu_relax();
        c = 0;
        if (atomic_load_explicit(&b->lock, memory_order_relaxed) == 0 &&
            atomic_compare_exchange_weak_explicit(&b->lock, &c, 1, memory_order_acquire,
                                                  memory_order_relaxed))
            return;
    }
    while (atomic_exchange_explicit(&b->lock, 2, memory_order_acquire) != 0)
        weft__futex_wait(&b->lock, 2, WEFT_FOREVER, false);
}

static void bucket_unlock(struct bucket *b)
{
    if (atomic_exchange_explicit(&b->lock, 0, memory_order_release) == 2)
        weft__futex_wake(&b->lock, 1, false);
}

static void unlink_node(struct bucket *b, struct lot_node *prev, struct lot_node *n)
{
    if (prev)
        prev->next = n->next;
    else
        b->head = n->next;
    if (b->tail == n)
        b->tail = prev;
    n->next = NULL;
    n->queued = false;
}

static bool key_queued(struct bucket *b, const void *key)
{
    for (struct lot_node *n = b->head; n; n = n->next)
        if (n->key == key)
            return true;
    return false;
}

static int park(const void *key, bool (*validate)(void *arg), void *arg,
                void (*timed_out)(void *arg, bool was_last), weft_time_t deadline,
                uintptr_t *token, bool cancellable)
{
    struct lot_node n;
    weft__waiter_init(&n.w);
    n.w.cancellable = cancellable;
    n.key = key;
    n.next = NULL;
    n.token = 0;

    struct bucket *b = bucket_of(key);
    bucket_lock(b);
    if (validate && !validate(arg)) {
        bucket_unlock(b);
        return -EAGAIN;
    }
    n.queued = true;
    if (b->tail)
        b->tail->next = &n;
    else
        b->head = &n;
    b->tail = &n;
    bucket_unlock(b);

    int r = weft__waiter_wait(&n.w, WEFT__W_WAITING, deadline);
    if (r == -ETIMEDOUT || r == -ECANCELED) {
        /* A cancellation ends the park exactly as a timeout does. */
        bucket_lock(b);
        if (n.queued) {
            struct lot_node *prev = NULL;
            for (struct lot_node *p = b->head; p != &n; p = p->next)
                prev = p;
            unlink_node(b, prev, &n);
            if (timed_out)
                timed_out(arg, !key_queued(b, key));
            bucket_unlock(b);
            return r;
        }
        bucket_unlock(b);
        /* Dequeued by an unparker that has yet to finish us: that is an
         * unpark, and the finish is a few instructions away (not to be cut
         * short by a cancellation: the unparker writes our token). */
        n.w.cancellable = false;
        weft__waiter_wait(&n.w, WEFT__W_WAITING, WEFT_FOREVER);
    }
    if (token)
        *token = n.token;
    return 0;
}

int weft__park(const void *key, bool (*validate)(void *arg), void *arg,
               void (*timed_out)(void *arg, bool was_last), weft_time_t deadline,
               uintptr_t *token)
{
    return park(key, validate, arg, timed_out, deadline, token, false);
}

int weft__park_c(const void *key, bool (*validate)(void *arg), void *arg,
                 void (*timed_out)(void *arg, bool was_last), weft_time_t deadline,
                 uintptr_t *token)
{
    return park(key, validate, arg, timed_out, deadline, token, true);
}

static bool fair_now(struct bucket *b)
{
    weft_time_t now = weft_now();
    if (now < b->fair_at)
        return false;
    b->fair_at = now + (weft_time_t)(weft__rand() % FAIR_INTERVAL_NS);
    return true;
}

unsigned weft__unpark_one(const void *key,
                          uintptr_t (*callback)(void *arg, struct weft__unpark_result r),
                          void *arg)
{
    struct bucket *b = bucket_of(key);
    bucket_lock(b);
    struct lot_node *prev = NULL, *n = b->head;
    while (n && n->key != key) {
        prev = n;
        n = n->next;
    }
    struct weft__unpark_result res = {0, false, false};
    if (n) {
        unlink_node(b, prev, n);
        res.unparked = 1;
        res.have_more = key_queued(b, key);
        res.be_fair = fair_now(b);
    }
    uintptr_t tok = callback ? callback(arg, res) : 0;
    if (n)
        n->token = tok;
    bucket_unlock(b);
    if (n)
        weft__waiter_finish(&n->w, WEFT__W_WOKEN);
    return res.unparked;
}

/* Dequeue up to max waiters on key into a private chain (under the lock). */
static struct lot_node *take(struct bucket *b, const void *key, unsigned max, unsigned *count)
{
    struct lot_node *first = NULL, *last = NULL, *prev = NULL, *n = b->head;
    unsigned c = 0;
    while (n && c < max) {
        struct lot_node *next = n->next;
        if (n->key == key) {
            unlink_node(b, prev, n);
            if (last)
                last->next = n;
            else
                first = n;
            last = n;
            c++;
        } else {
            prev = n;
        }
        n = next;
    }
    *count = c;
    return first;
}

static void finish_chain(struct lot_node *n)
{
    while (n) {
        struct lot_node *next = n->next; /* read before the waiter may go */
        weft__waiter_finish(&n->w, WEFT__W_WOKEN);
        n = next;
    }
}

static void set_tokens(struct lot_node *n, uintptr_t token)
{
    for (; n; n = n->next)
        n->token = token;
}

unsigned weft__unpark_n(const void *key, unsigned max, uintptr_t token)
{
    struct bucket *b = bucket_of(key);
    unsigned c;
    bucket_lock(b);
    struct lot_node *chain = take(b, key, max, &c);
    set_tokens(chain, token);
    bucket_unlock(b);
    finish_chain(chain);
    return c;
}

unsigned weft__unpark_n_cb(const void *key, unsigned max,
                           uintptr_t (*callback)(void *arg, struct weft__unpark_result r),
                           void *arg)
{
    struct bucket *b = bucket_of(key);
    unsigned c;
    bucket_lock(b);
    struct lot_node *chain = take(b, key, max, &c);
    struct weft__unpark_result res = {c, c > 0 && key_queued(b, key), c > 0 && fair_now(b)};
    set_tokens(chain, callback(arg, res));
    bucket_unlock(b);
    finish_chain(chain);
    return c;
}

unsigned weft__unpark_all(const void *key, uintptr_t token)
{
    return weft__unpark_n(key, ~0u, token);
}

unsigned weft__unpark_all_cb(const void *key, uintptr_t (*callback)(void *arg, unsigned count),
                             void *arg)
{
    struct bucket *b = bucket_of(key);
    unsigned c;
    bucket_lock(b);
    struct lot_node *chain = take(b, key, ~0u, &c);
    set_tokens(chain, callback(arg, c));
    bucket_unlock(b);
    finish_chain(chain);
    return c;
}

bool weft__is_parked(const void *key)
{
    struct bucket *b = bucket_of(key);
    bucket_lock(b);
    bool r = key_queued(b, key);
    bucket_unlock(b);
    return r;
}
