/*
 * loop/net_support.h - what the socket layer (src/net) needs from the loop
 * beyond the public co API. Both functions act on the calling thread's loop
 * and must be called from that thread.
 */
#ifndef WEFT_LOOP_NET_SUPPORT_H
#define WEFT_LOOP_NET_SUPPORT_H

#include <stdint.h>
#include <weft/time.h>

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
 * WEFT_IO_ERROR) and forget fd in the backend (its owned registration
 * too: backend.h's forget). Returns how many waiters were woken; 0 (and
 * nothing done) when no loop runs on this thread.
 */
int weft__loop_fd_forget(int fd);

/*
 * Owned waits. weft__loop_wait_owned is weft_co_wait_fd for a socket of
 * src/net that the caller has just found not ready (a system call said
 * EAGAIN or EINPROGRESS, with no suspension since): the backend may serve
 * it with a registration that stays in the kernel across waits (one
 * epoll_ctl per connection, not per wait; see backend.h "OWNED fds").
 * Same results as weft_co_wait_fd. The fd must then be closed through
 * weft_net_close (weft__loop_fd_forget on a loop's thread, and the epoch
 * bump everywhere).
 *
 * Epochs: a process-wide counter per fd number (hashed into a fixed
 * table: two numbers may share one, which only costs a spurious
 * re-registration), bumped when src/net makes an fd (socket, accept,
 * adopt) and when it closes one, on any thread. A loop's owned
 * registration records the epoch it was made in; a wait that finds
 * another one registers again, so a socket closed on another thread (whose
 * loop's forget cannot reach this loop), whose number then comes back as a
 * new socket, is never believed registered. Relaxed atomics: whoever uses
 * the new fd learned its number after the bump, through some
 * synchronisation, so it sees the bump.
 */
int weft__loop_wait_owned(int fd, unsigned events, weft_time_t deadline);
uint32_t weft__fd_epoch(int fd);
void weft__fd_epoch_bump(int fd);

#endif /* WEFT_LOOP_NET_SUPPORT_H */
