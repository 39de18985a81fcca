/*
 * deque.c - the Chase-Lev work-stealing deque with the C11 memory orders of
 * Lê, Pop, Cohen and Zappa Nardelli, "Correct and Efficient Work-Stealing
 * for Weak Memory Models", PPoPP 2013 (figure 1), which proves them
 * correct; the algorithm is Chase and Lev, "Dynamic Circular Work-Stealing
 * Deque", SPAA 2005.
 *
 * Invariant: the elements are slot[i & mask] for top <= i < bottom. The
 * owner alone moves bottom; top only grows, by a CAS, so every index is
 * taken at most once: a thief takes index t by moving top from t to t + 1;
 * the owner takes its last element (t == b) by the same CAS, and any other
 * element (t < b) by lowering bottom, which the seq_cst fences in pop and
 * steal order against the thieves' reads of bottom: either a thief sees the
 * lowered bottom and backs off, or the owner sees the thief's top and, for
 * the one contended element, they race on the CAS.
 *
 * Indices are signed 64-bit: pop computes bottom - 1, which must compare
 * below top on an empty deque (the paper's size_t version relies on a
 * wrap that C's unsigned comparison gets wrong). They never overflow.
 *
 * TSan does not model atomic_thread_fence. Under TSan the two places where
 * a fence carries the happens-before edge for the task's *contents* (push's
 * release fence, steal's reads) are made release/acquire on the accesses
 * themselves; the algorithm is unchanged and the orders only stronger.
 */
#include "deque.h"

#include <errno.h>
#include <stdlib.h>

#ifdef WEFT_SANITIZE_THREAD
#define PUBLISH_ORDER memory_order_release
#define TAKE_ORDER memory_order_acquire
#else
#define PUBLISH_ORDER memory_order_relaxed
#define TAKE_ORDER memory_order_relaxed
#endif

static struct weft__deque_buf *buf_new(int64_t cap)
{
    struct weft__deque_buf *a = malloc(sizeof *a + (size_t)cap * sizeof(_Atomic(void *)));
    if (!a)
        return NULL;
    a->mask = cap - 1;
    a->older = NULL;
    for (int64_t i = 0; i < cap; i++)
        atomic_init(&a->slot[i], NULL);
    return a;
}

int weft__deque_init(struct weft__deque *q, size_t capacity)
{
    int64_t cap = 2;
    while ((size_t)cap < capacity && cap < ((int64_t)1 << 40))
        cap <<= 1;
    struct weft__deque_buf *a = buf_new(cap);
    if (!a)
        return -ENOMEM;
    atomic_init(&q->top, 0);
    atomic_init(&q->bottom, 0);
    atomic_init(&q->buf, a);
    return 0;
}

void weft__deque_destroy(struct weft__deque *q)
{
    struct weft__deque_buf *a = atomic_load_explicit(&q->buf, memory_order_relaxed);
    while (a) {
        struct weft__deque_buf *o = a->older;
        free(a);
        a = o;
    }
    atomic_store_explicit(&q->buf, NULL, memory_order_relaxed);
}

/* Owner only: double the buffer, copying the live elements [t, b). */
static struct weft__deque_buf *grow(struct weft__deque *q, struct weft__deque_buf *a,
                                   int64_t t, int64_t b)
{
    struct weft__deque_buf *n = buf_new((a->mask + 1) * 2);
    if (!n)
        return NULL;
    for (int64_t i = t; i < b; i++)
        atomic_store_explicit(&n->slot[i & n->mask],
                              atomic_load_explicit(&a->slot[i & a->mask], memory_order_relaxed),
                              memory_order_relaxed);
    n->older = a;
    /* Release: a thief that loads the new buffer (acquire, in steal) sees
     * the copied slots. */
    atomic_store_explicit(&q->buf, n, memory_order_release);
    return n;
}

int weft__deque_push(struct weft__deque *q, void *x)
{
    int64_t b = atomic_load_explicit(&q->bottom, memory_order_relaxed);
    /* Acquire: pairs with the thieves' CAS on top, so the slot we may
     * overwrite below has really been read by the thief that took it. */
    int64_t t = atomic_load_explicit(&q->top, memory_order_acquire);
    struct weft__deque_buf *a = atomic_load_explicit(&q->buf, memory_order_relaxed);
    if (WEFT_UNLIKELY(b - t > a->mask)) {
        a = grow(q, a, t, b);
        if (!a)
            return -ENOMEM;
    }
    atomic_store_explicit(&a->slot[b & a->mask], x, PUBLISH_ORDER);
    /* Release fence: the element (and everything the owner wrote into the
     * task it points to) is visible before the new bottom that exposes it. */
    atomic_thread_fence(memory_order_release);
    atomic_store_explicit(&q->bottom, b + 1, PUBLISH_ORDER);
    return 0;
}

void *weft__deque_pop(struct weft__deque *q)
{
    int64_t b = atomic_load_explicit(&q->bottom, memory_order_relaxed) - 1;
    struct weft__deque_buf *a = atomic_load_explicit(&q->buf, memory_order_relaxed);
    atomic_store_explicit(&q->bottom, b, memory_order_relaxed);
    /* Seq_cst fence: orders the lowered bottom before the read of top, so
     * that this pop and a concurrent steal cannot both miss each other
     * (the store-load pattern that needs a full fence). */
    atomic_thread_fence(memory_order_seq_cst);
    int64_t t = atomic_load_explicit(&q->top, memory_order_relaxed);
    void *x;
    if (t <= b) {
        x = atomic_load_explicit(&a->slot[b & a->mask], memory_order_relaxed);
        if (t == b) {
            /* The last element: race the thieves for it on top. */
            if (!atomic_compare_exchange_strong_explicit(&q->top, &t, t + 1,
                                                         memory_order_seq_cst,
                                                         memory_order_relaxed))
                x = NULL;
            atomic_store_explicit(&q->bottom, b + 1, memory_order_relaxed);
        }
    } else {
        x = NULL;
        atomic_store_explicit(&q->bottom, b + 1, memory_order_relaxed);
    }
    return x;
}

void *weft__deque_steal(struct weft__deque *q)
{
    int64_t t = atomic_load_explicit(&q->top, memory_order_acquire);
    /* Seq_cst fence: orders the read of top before the read of bottom,
     * against pop's fence (see above). */
    atomic_thread_fence(memory_order_seq_cst);
    int64_t b = atomic_load_explicit(&q->bottom, memory_order_acquire);
    if (t >= b)
        return NULL;
    /* Acquire (the paper's consume): the buffer's slots as grow wrote them. */
    struct weft__deque_buf *a = atomic_load_explicit(&q->buf, memory_order_acquire);
    void *x = atomic_load_explicit(&a->slot[t & a->mask], TAKE_ORDER);
    /* Seq_cst CAS: we own index t only if top was still t; otherwise the
     * owner or another thief took it and x must not be used. */
    if (!atomic_compare_exchange_strong_explicit(&q->top, &t, t + 1, memory_order_seq_cst,
                                                 memory_order_relaxed))
        return WEFT__DEQUE_ABORT;
    return x;
}
