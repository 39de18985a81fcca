/*
 * loop/net_support.h - what the socket layer (src/net) needs from the loop
 * beyond the public co API. Both functions act on the calling thread's loop
 * and must be called from that thread.
 */
#ifndef WEFT_LOOP_NET_SUPPORT_H
#define WEFT_LOOP_NET_SUPPORT_H

/*
 * A suspension point that does not suspend: -ECANCELED if the calling
 * coroutine is cancelled (and no shield holds it off), -ETIMEDOUT if an
 * enclosing deadline scope has expired, else 0. -EPERM outside a coroutine.
 * Lets an operation that can complete at once still deliver cancellation,
 * so a coroutine looping over always-ready I/O stays cancellable.
 */
int weft__co_checkpoint(void);

/*
 * fd is about to be closed by the calling thread: wake every coroutine of
 * this thread's loop that waits on fd in weft_co_wait_fd (it returns
 * WEFT_IO_ERROR) and forget fd in the backend. Returns how many waiters
 * were woken; 0 (and nothing done) when no loop runs on this thread.
 */
int weft__loop_fd_forget(int fd);

#endif /* WEFT_LOOP_NET_SUPPORT_H */
