/*
 * weft/chan.h - channels: one queue type for threads, coroutines and
 * (through shared memory) processes.
 *
 *   Python                        weft
 *   q = queue.Queue(maxsize=n)    weft_chan_create(&q, sizeof(item), n)
 *   q.put(x) / q.put(x, timeout)  weft_chan_send / weft_chan_send_until
 *   q.put_nowait(x)               weft_chan_send_try
 *   q.get() / q.get_nowait()      weft_chan_recv / weft_chan_recv_try
 *   q.shutdown() (3.13)           weft_chan_close
 *   q.qsize(), q.maxsize          weft_chan_len, weft_chan_cap
 *   (Go select)                   weft_chan_select
 *
 * A channel carries elements of one fixed size, chosen at creation, copied in
 * by send and out by receive. It is multi-producer multi-consumer. With a
 * capacity of 0 it is unbuffered: a send waits until a receiver takes the
 * element (a rendezvous, as in Go). With a capacity n > 0 it buffers up to n
 * elements; a send into a channel that is neither full nor empty takes no
 * lock.
 *
 * Close: after weft_chan_close, sends return -EPIPE; receivers first drain
 * what is buffered, then get -EPIPE. Nothing that a send accepted (returned
 * 0 for) is lost: it is received or still in the buffer when the last
 * reference goes.
 *
 * Ordering: elements from one sender are received in the order sent. Blocked
 * receivers (and senders) are served roughly in arrival order.
 *
 * Lifetime: channels are reference counted. weft_chan_create returns one
 * reference; weft_chan_retain adds one; weft_chan_release drops one and frees
 * the channel with the last. Every thread or coroutine that uses a channel
 * must hold a reference while it does. Any thread may call any function.
 */
#ifndef WEFT_CHAN_H
#define WEFT_CHAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <weft/error.h>
#include <weft/time.h>
#include <weft/version.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weft_chan weft_chan_t;

/* The largest element size and capacity accepted. */
#define WEFT_CHAN_MAX_ELEM ((size_t)1 << 20)
#define WEFT_CHAN_MAX_CAP ((size_t)1 << 28)

/*
 * Create a channel for elements of elem_size bytes holding up to capacity
 * elements (0 = unbuffered). 0, -EINVAL (out NULL, elem_size 0 or above
 * WEFT_CHAN_MAX_ELEM, capacity above WEFT_CHAN_MAX_CAP), -ENOMEM.
 */
WEFT_API int weft_chan_create(weft_chan_t **out, size_t elem_size, size_t capacity);
/* Add a reference. 0, -EINVAL (NULL, or a channel whose last reference is
 * already gone but which lives on for callers still blocked in it). */
WEFT_API int weft_chan_retain(weft_chan_t *ch);
/*
 * Drop a reference; the last one frees the channel and whatever is still
 * buffered. 0, -EINVAL (NULL; or an over-release noticed while the channel
 * is still alive because of blocked callers), -EBUSY (the last reference was
 * dropped while callers are still blocked on the channel: that is misuse,
 * since each of them should hold a reference; the channel is closed, which
 * releases them with -EPIPE, and is not freed until they have left — the
 * last leaver frees it). A release after the channel was freed is a
 * use-after-free, as with free(): it cannot be detected.
 */
WEFT_API int weft_chan_release(weft_chan_t *ch);

/*
 * Send: copy elem_size bytes from elem into the channel.
 * weft_chan_send blocks while the channel is full (unbuffered: until a
 * receiver takes it). Returns 0, -EPIPE (closed; the element was not sent),
 * -EINVAL (NULL). _try returns -EAGAIN instead of blocking; _until returns
 * -ETIMEDOUT when the deadline passes (the element was not sent). In a
 * coroutine, the blocking forms return -ECANCELED if the task is cancelled
 * while waiting: the element was not sent (no receiver gets it), unless a
 * receiver took it first, and then the call returns 0.
 */
WEFT_API int weft_chan_send(weft_chan_t *ch, const void *elem);
WEFT_API int weft_chan_send_try(weft_chan_t *ch, const void *elem);
WEFT_API int weft_chan_send_until(weft_chan_t *ch, const void *elem, weft_time_t deadline);

/*
 * Receive: copy the oldest element into out (elem_size bytes). Blocks while
 * the channel is empty. Returns 0, -EPIPE (closed and drained), -EINVAL.
 * _try returns -EAGAIN; _until returns -ETIMEDOUT. In a coroutine, the
 * blocking forms return -ECANCELED if the task is cancelled while waiting:
 * nothing was received (no element is lost: it stays for other receivers),
 * unless an element was handed over first, and then the call returns 0.
 */
WEFT_API int weft_chan_recv(weft_chan_t *ch, void *out);
WEFT_API int weft_chan_recv_try(weft_chan_t *ch, void *out);
WEFT_API int weft_chan_recv_until(weft_chan_t *ch, void *out, weft_time_t deadline);

/*
 * Close the channel: wake every blocked sender (-EPIPE) and, once the buffer
 * is drained, every blocked receiver (-EPIPE). 0, -EPIPE (already closed),
 * -EINVAL.
 */
WEFT_API int weft_chan_close(weft_chan_t *ch);
/* True once closed; false for NULL. */
WEFT_API bool weft_chan_is_closed(const weft_chan_t *ch);
/* Elements buffered now (a hint under concurrency); 0 for NULL. */
WEFT_API size_t weft_chan_len(const weft_chan_t *ch);
/* The capacity given at creation; 0 for NULL. */
WEFT_API size_t weft_chan_cap(const weft_chan_t *ch);
/* The element size given at creation; 0 for NULL. */
WEFT_API size_t weft_chan_elem_size(const weft_chan_t *ch);

/* ------------------------------------------------------------------------ */
/* Select (Go's select statement)                                            */
/* ------------------------------------------------------------------------ */

typedef enum weft_select_op {
    WEFT_SELECT_SEND = 1,
    WEFT_SELECT_RECV = 2,
} weft_select_op_t;

/* One case of a select. A case whose chan is NULL is never ready (as a nil
 * channel in Go), which lets a caller switch a case off. */
typedef struct weft_select_case {
    weft_chan_t *chan;     /* the channel, or NULL */
    weft_select_op_t op;   /* send or receive */
    void *elem;            /* send: the element; receive: where to store it */
    int result;            /* out: 0, or -EPIPE if the channel was closed */
} weft_select_case_t;

/*
 * Wait until one of the cases can proceed, perform exactly that one, and
 * return its index. The chosen case's result is 0 (the element moved) or
 * -EPIPE (the channel is closed: a send did not happen; a receive found the
 * channel closed and drained). Among cases ready at once the choice is
 * uniformly random, so no case starves. Other cases are untouched.
 *
 * weft_chan_select blocks; _try returns -EAGAIN if none is ready (Go's
 * default case); _until returns -ETIMEDOUT at the deadline; in a coroutine
 * both blocking forms return -ECANCELED if the task is cancelled while
 * waiting (no case was performed, as on a timeout). All return
 * -EINVAL for cases NULL, n == 0, n above 4096, an op that is neither send
 * nor receive, or a NULL elem in a case whose chan is not NULL. -ENOMEM if a
 * large select (more than 4 cases when it must wait, more than 64 for the
 * random order) could not allocate its bookkeeping; nothing was done. A
 * select whose every chan is NULL blocks until its deadline (forever without
 * one, as in Go). A case may name the same channel as another case; a send
 * and a receive on one unbuffered channel in one select never meet each
 * other.
 */
WEFT_API int weft_chan_select(weft_select_case_t *cases, size_t n);
WEFT_API int weft_chan_select_try(weft_select_case_t *cases, size_t n);
WEFT_API int weft_chan_select_until(weft_select_case_t *cases, size_t n, weft_time_t deadline);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_CHAN_H */
