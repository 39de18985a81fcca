/*
 * deque.h - the Chase-Lev work-stealing deque (internal to the pool).
 *
 * One owner pushes and pops at the bottom (LIFO, so the newest, cache-hot
 * task runs next); any number of thieves steal at the top (FIFO, so they
 * take the oldest, usually biggest, piece of work). Elements are pointers.
 * The buffer grows when full; old buffers are kept until the deque is
 * destroyed, because a thief may still be reading one.
 */
#ifndef WEFT_POOL_DEQUE_H
#define WEFT_POOL_DEQUE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "../platform/platform.h"

struct weft__deque_buf {
    int64_t mask;                    /* capacity - 1 (capacity a power of 2) */
    struct weft__deque_buf *older;   /* previous (smaller) buffer, kept */
    _Atomic(void *) slot[];
};

struct weft__deque {
    /* top is written by thieves and bottom by the owner: separate lines. */
    _Alignas(WEFT_CACHELINE) _Atomic int64_t top;
    _Alignas(WEFT_CACHELINE) _Atomic int64_t bottom;
    _Atomic(struct weft__deque_buf *) buf;
    char _pad[WEFT_CACHELINE - sizeof(int64_t) - sizeof(void *)];
};

/* What steal returns when it lost a race with another thief or the owner
 * (the deque may still hold work: the caller may retry). */
#define WEFT__DEQUE_ABORT ((void *)1)

/* capacity: initial, rounded up to a power of 2 (>= 2). 0 or -ENOMEM. */
int weft__deque_init(struct weft__deque *q, size_t capacity);
/* Free the buffers. No other thread may use q any more. */
void weft__deque_destroy(struct weft__deque *q);
/* Owner only. 0, or -ENOMEM if the buffer had to grow and could not. */
int weft__deque_push(struct weft__deque *q, void *x);
/* Owner only: the newest element, or NULL if empty. */
void *weft__deque_pop(struct weft__deque *q);
/* Any thread: the oldest element, NULL if empty, WEFT__DEQUE_ABORT if it
 * lost a race. */
void *weft__deque_steal(struct weft__deque *q);
/* Any thread: a snapshot, possibly stale by the time it returns. */
static inline int64_t weft__deque_size(struct weft__deque *q)
{
    int64_t b = atomic_load_explicit(&q->bottom, memory_order_relaxed);
    int64_t t = atomic_load_explicit(&q->top, memory_order_relaxed);
    return b > t ? b - t : 0;
}

#endif /* WEFT_POOL_DEQUE_H */
