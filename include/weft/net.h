/*
 * weft/net.h - sockets for coroutines (asyncio's streams and transports):
 * TCP, UDP and Unix stream sockets, each blocking call with a deadline twin,
 * and name resolution offloaded to the pool.
 *
 *   Python (asyncio)                        weft
 *   asyncio.start_server(..., host, port)   fd = weft_net_listen(&addr, backlog)
 *                                           c = weft_net_accept(fd, &peer)  (in a loop)
 *   asyncio.open_connection(host, port)     c = weft_net_connect(&addr)
 *   await reader.read(n)                    weft_net_read(c, buf, n)
 *   await reader.readexactly(n)             weft_net_read_exact(c, buf, n, &done)
 *   writer.write(b); await writer.drain()   weft_net_write_all(c, buf, n, &done)
 *   writer.write_eof()                      weft_net_shutdown(c, SHUT_WR)
 *   writer.close()                          weft_net_close(c)
 *   loop.getaddrinfo(host, port)            weft_net_resolve(host, port, ...)
 *   asyncio.wait_for(op, timeout)           the _until twin, weft_deadline_in(s)
 *   loop.create_datagram_endpoint           weft_net_udp, _sendto, _recvfrom
 *   asyncio.start_unix_server               weft_addr_unix + weft_net_listen
 *
 * Sockets are plain file descriptors (ints), made non-blocking and
 * close-on-exec by weft. Every call is built on the loop's readiness wait
 * (weft_co_wait_fd), so it works on every loop backend.
 *
 * WHERE THEY MAY BE CALLED
 *   - In a coroutine: a call that would block suspends only the calling
 *     coroutine; the loop runs others meanwhile. Every call is a
 *     cancellation point (even one that completes at once): a cancelled
 *     coroutine gets -ECANCELED, an expired deadline scope (weft/co.h)
 *     -ETIMEDOUT, level-triggered as every weft_co_* suspension point.
 *   - On a plain thread (no loop running on it): the same calls block the
 *     thread (poll(2) with the deadline). There is no cancellation there.
 *     This is what lets a thread pool use the same client code.
 *   - On a loop's thread outside a coroutine (a call_soon_threadsafe
 *     function): the calls that might wait return -EPERM (blocking there
 *     would stall the loop); weft_net_close, weft_net_shutdown and the
 *     address functions work anywhere.
 *
 * DEADLINES are absolute monotonic times (weft/time.h; weft_deadline_in(s)
 * turns a timeout into one). A deadline already past makes a call a try: it
 * succeeds if it need not wait, else -ETIMEDOUT. A negative deadline is
 * -EINVAL. A call that has moved some bytes when its deadline passes returns
 * the count moved (read, write) or reports it through *done (read_exact,
 * write_all).
 *
 * ONE READER AND ONE WRITER per fd and loop may wait at a time: a second
 * coroutine waiting to read the same fd gets -EBUSY (as weft_co_wait_fd).
 *
 * CLOSING AN FD THAT A COROUTINE WAITS ON: weft_net_close, called on the
 * loop's thread (in any coroutine of the loop, or a call_soon function),
 * wakes every coroutine of that loop waiting on the fd, and every call of
 * that loop that is in progress on the fd returns -EPIPE the next time it
 * looks (at once for a waiting one), even if the fd number has been reused
 * since. A plain close(2) instead is undefined for a waiting coroutine (the
 * kernel forgets the fd silently: it may wait forever).
 *
 * FROM ANOTHER THREAD OR LOOP: if a loop still running on another thread
 * was the last to wait on the fd, weft_net_close hands the close to that
 * loop and returns 0 at once; the loop closes the fd at its next turn (as
 * if one of its coroutines had called weft_net_close: its waiters on the
 * fd return -EPIPE), so the fd number stays taken until then. If no running
 * loop waited on it, or that loop has finished, the fd is closed at once on
 * the calling thread. A loop busy in a coroutine that never yields delays
 * the close as long. Two loops waiting on one fd: only the last to start
 * a wait is handed the close.
 *
 * ERRORS common to the calls below: -EINVAL (a NULL pointer where one is
 * needed, fd < 0, a negative deadline, a bad address); -EBADF (not an open
 * fd) and other negated errno values from the kernel (-ECONNREFUSED,
 * -ECONNRESET, -EPIPE, -EMFILE, -EADDRINUSE, ...); -ETIMEDOUT; -ECANCELED
 * (coroutines only); -EPERM (see above); -EBUSY (see above). SIGPIPE is
 * never raised by a write to a socket (MSG_NOSIGNAL): it is -EPIPE.
 *
 * fds passed in must be non-blocking (weft's own are; weft_net_adopt makes
 * one so): a blocking fd would block the whole loop.
 */
#ifndef WEFT_NET_H
#define WEFT_NET_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#include <weft/error.h>
#include <weft/time.h>
#include <weft/version.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A socket address of any family weft speaks (IPv4, IPv6, Unix). A plain
 * value: copy it, keep it on the stack. */
typedef struct weft_addr {
    socklen_t len; /* the length of the address in u (0: no address) */
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
        struct sockaddr_un un;
        struct sockaddr_storage ss;
    } u;
} weft_addr_t;

/* ---- addresses (no I/O; any thread) ---------------------------------------- */

/*
 * A numeric IPv4 or IPv6 address ("127.0.0.1", "::1") and a port (0-65535;
 * 0 = any free port when listening or binding). No name lookup (see
 * weft_net_resolve). 0; -EINVAL (NULL, not a numeric address, bad port).
 */
WEFT_API int weft_addr_ip(weft_addr_t *out, const char *ip, int port);

/*
 * A Unix stream/datagram socket address. A path starting with '@' names
 * Linux's abstract namespace (no file is created: "@weft-test"). 0;
 * -EINVAL (NULL, empty, longer than sun_path allows).
 */
WEFT_API int weft_addr_unix(weft_addr_t *out, const char *path);

/* The port of an IP address (0-65535); -EINVAL (NULL, not IP). */
WEFT_API int weft_addr_port(const weft_addr_t *a);

/*
 * Write a as text into buf: "127.0.0.1:8080", "[::1]:8080", "unix:/path",
 * "unix:@name". Returns the length written (the text is cut to size-1 and
 * NUL-terminated); -EINVAL (NULL, size 0, unknown family).
 */
WEFT_API int weft_addr_format(const weft_addr_t *a, char *buf, size_t size);

/* The address fd is bound to (getsockname) / connected to (getpeername).
 * 0; -EINVAL; -EBADF, -ENOTSOCK, -ENOTCONN. */
WEFT_API int weft_net_local_addr(int fd, weft_addr_t *out);
WEFT_API int weft_net_peer_addr(int fd, weft_addr_t *out);

/* ---- name resolution ------------------------------------------------------- */

/*
 * Resolve host (a name such as "localhost", or a numeric address) and port
 * into at most max addresses for sockets of type socktype (SOCK_STREAM,
 * SOCK_DGRAM; 0 = SOCK_STREAM), in the order getaddrinfo gives them.
 * Numeric addresses are converted at once; names are resolved by
 * getaddrinfo run on the default pool (loop.getaddrinfo does the same with
 * its executor), so the loop goes on meanwhile; on a plain thread,
 * weft_net_resolve (no deadline) runs getaddrinfo on the calling thread,
 * and _until waits for the pool. If the deadline passes (or the coroutine is
 * cancelled) first, the call returns at once and the lookup finishes in
 * the background; its result is dropped.
 * Returns the number of addresses (>= 1); -ENOENT (no such name), -EAGAIN
 * (a temporary failure of the name service), -ENOMEM, -ETIMEDOUT,
 * -ECANCELED, -EINVAL (NULL or
 * empty host, out NULL, max < 1, bad port or socktype, negative deadline),
 * -EPERM (a loop's thread outside a coroutine).
 */
WEFT_API int weft_net_resolve(const char *host, int port, int socktype, weft_addr_t *out,
                              int max);
WEFT_API int weft_net_resolve_until(const char *host, int port, int socktype,
                                    weft_addr_t *out, int max, weft_time_t deadline);

/* ---- stream sockets: TCP and Unix -------------------------------------------- */

/*
 * A listening stream socket bound to addr (TCP for IP addresses, with
 * SO_REUSEADDR; Unix for Unix ones: the path must not exist, weft never
 * unlinks a file for you). backlog <= 0 means SOMAXCONN. Returns the fd
 * (non-blocking, close-on-exec); the caller owns it (weft_net_close).
 * -EINVAL, -EADDRINUSE, -EACCES, -EMFILE, ... Does not wait; any thread.
 */
WEFT_API int weft_net_listen(const weft_addr_t *addr, int backlog);

/*
 * Accept a connection on the listening fd: returns the new fd (non-blocking,
 * close-on-exec, owned by the caller), and its peer's address in *peer if
 * peer is not NULL. Waits (until the deadline) while none is pending.
 * Connections that were reset before they were accepted are skipped.
 * Errors: see the top, and -EINVAL (not listening).
 */
WEFT_API int weft_net_accept(int fd, weft_addr_t *peer);
WEFT_API int weft_net_accept_until(int fd, weft_addr_t *peer, weft_time_t deadline);

/*
 * Connect a new stream socket to addr; returns its fd (non-blocking,
 * close-on-exec, owned by the caller). Waits for the handshake until the
 * deadline. On any failure no fd is left open. -ECONNREFUSED (nobody
 * listens), -ETIMEDOUT, -ECANCELED, -ENOENT (no such Unix socket), ...
 */
WEFT_API int weft_net_connect(const weft_addr_t *addr);
WEFT_API int weft_net_connect_until(const weft_addr_t *addr, weft_time_t deadline);

/*
 * Read up to n bytes (at least 1 unless n is 0) into buf: waits until some
 * bytes are there or the peer has closed its side. Returns the number read,
 * 0 at end of file (or n == 0), or an error. Works on any readable
 * non-blocking fd (pipes too).
 */
WEFT_API ssize_t weft_net_read(int fd, void *buf, size_t n);
WEFT_API ssize_t weft_net_read_until(int fd, void *buf, size_t n, weft_time_t deadline);

/*
 * Write up to n bytes from buf: waits until some can be written. Returns the
 * number written (>= 1 unless n is 0; it may be less than n: see
 * weft_net_write_all), or an error (-EPIPE: the peer has gone).
 */
WEFT_API ssize_t weft_net_write(int fd, const void *buf, size_t n);
WEFT_API ssize_t weft_net_write_until(int fd, const void *buf, size_t n,
                                      weft_time_t deadline);

/*
 * Read exactly n bytes (readexactly): returns n, or an error with the bytes
 * read so far in *done (if done is not NULL; it is set in every case).
 * -EPIPE when the peer closes before n bytes came (IncompleteReadError).
 */
WEFT_API ssize_t weft_net_read_exact(int fd, void *buf, size_t n, size_t *done);
WEFT_API ssize_t weft_net_read_exact_until(int fd, void *buf, size_t n, size_t *done,
                                           weft_time_t deadline);

/*
 * Write all n bytes, however many partial writes it takes: returns n, or an
 * error with the bytes written so far in *done (if done is not NULL; set in
 * every case).
 */
WEFT_API ssize_t weft_net_write_all(int fd, const void *buf, size_t n, size_t *done);
WEFT_API ssize_t weft_net_write_all_until(int fd, const void *buf, size_t n, size_t *done,
                                          weft_time_t deadline);

/*
 * shutdown(2): SHUT_RD, SHUT_WR (send end of file: write_eof) or SHUT_RDWR.
 * Does not wait. Also the way to wake a coroutine of another loop or a
 * thread blocked on this fd (see the top). 0; -EINVAL (bad how, fd < 0);
 * -EBADF, -ENOTSOCK, -ENOTCONN. Any thread.
 */
WEFT_API int weft_net_shutdown(int fd, int how);

/*
 * Close fd. On a loop's thread this first wakes the loop's coroutines that
 * wait on fd, which return -EPIPE (see the top), and removes fd from the
 * loop's backend. The fd is released even when an error is returned. 0;
 * -EINVAL (fd < 0); -EBADF (not open). Does not wait; any thread.
 * Sockets that weft_net made or adopted stay registered with a loop
 * between waits: close them with this, not with close(2) (docs/net.md).
 */
WEFT_API int weft_net_close(int fd);

/*
 * Make an fd made elsewhere (socket(2), pipe(2), accept by other code)
 * ready for weft: non-blocking and close-on-exec. 0; -EINVAL; -EBADF.
 */
WEFT_API int weft_net_adopt(int fd);

/* ---- datagram sockets: UDP ---------------------------------------------------- */

/*
 * A datagram socket bound to addr (port 0: any free port;
 * weft_net_local_addr tells which). Returns the fd (non-blocking,
 * close-on-exec, owned by the caller). Any thread. -EINVAL, -EADDRINUSE...
 */
WEFT_API int weft_net_udp(const weft_addr_t *addr);

/*
 * Send one datagram of n bytes to `to` (NULL: the connected peer). Waits
 * while the socket's buffer is full. Returns n (a datagram is never split),
 * or an error (-EMSGSIZE: too big for one datagram). A Unix datagram to an
 * address whose receiver's queue is full waits too, looking again every
 * millisecond: no readiness reports the room there (the kernel ties only a
 * connected sender to its receiver's queue).
 */
WEFT_API ssize_t weft_net_sendto(int fd, const void *buf, size_t n, const weft_addr_t *to);
WEFT_API ssize_t weft_net_sendto_until(int fd, const void *buf, size_t n,
                                       const weft_addr_t *to, weft_time_t deadline);

/*
 * Receive one datagram into buf (at most n bytes; the rest of a longer one
 * is discarded, as recvfrom(2) does), and its sender in *from if from is
 * not NULL. Waits until one arrives. Returns its length (possibly 0: an
 * empty datagram), or an error.
 */
WEFT_API ssize_t weft_net_recvfrom(int fd, void *buf, size_t n, weft_addr_t *from);
WEFT_API ssize_t weft_net_recvfrom_until(int fd, void *buf, size_t n, weft_addr_t *from,
                                         weft_time_t deadline);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_NET_H */
