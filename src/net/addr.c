/*
 * net/addr.c - socket addresses, and name resolution with getaddrinfo run
 * on the default pool (loop.getaddrinfo runs it in the loop's executor for
 * the same reason: getaddrinfo blocks and cannot be made non-blocking).
 */
#include "internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <weft/co.h>
#include <weft/future.h>
#include <weft/loop.h>
#include <weft/pool.h>

#include "../loop/net_support.h"
#include "../park/park.h"

int weft_addr_ip(weft_addr_t *out, const char *ip, int port)
{
    if (!out || !ip || port < 0 || port > 65535)
        return -EINVAL;
    weft_addr_t a;
    memset(&a, 0, sizeof a);
    if (inet_pton(AF_INET, ip, &a.u.in.sin_addr) == 1) {
        a.u.in.sin_family = AF_INET;
        a.u.in.sin_port = htons((uint16_t)port);
        a.len = sizeof a.u.in;
    } else if (inet_pton(AF_INET6, ip, &a.u.in6.sin6_addr) == 1) {
        a.u.in6.sin6_family = AF_INET6;
        a.u.in6.sin6_port = htons((uint16_t)port);
        a.len = sizeof a.u.in6;
    } else {
        return -EINVAL;
    }
    *out = a;
    return 0;
}

int weft_addr_unix(weft_addr_t *out, const char *path)
{
    if (!out || !path || !*path)
        return -EINVAL;
    size_t n = strlen(path);
    weft_addr_t a;
    memset(&a, 0, sizeof a);
    if (n > sizeof a.u.un.sun_path - (path[0] == '@' ? 0 : 1))
        return -EINVAL; /* a path needs room for its NUL; an abstract name does not */
    a.u.un.sun_family = AF_UNIX;
    memcpy(a.u.un.sun_path, path, n);
    if (path[0] == '@') {
        a.u.un.sun_path[0] = '\0'; /* the abstract namespace: no file */
        a.len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    } else {
        a.len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    }
    *out = a;
    return 0;
}

int weft_addr_port(const weft_addr_t *a)
{
    if (!a || !a->len)
        return -EINVAL;
    if (a->u.sa.sa_family == AF_INET)
        return ntohs(a->u.in.sin_port);
    if (a->u.sa.sa_family == AF_INET6)
        return ntohs(a->u.in6.sin6_port);
    return -EINVAL;
}

int weft_addr_format(const weft_addr_t *a, char *buf, size_t size)
{
    if (!a || !buf || !size || !a->len)
        return -EINVAL;
    char ip[INET6_ADDRSTRLEN];
    int n;
    switch (a->u.sa.sa_family) {
    case AF_INET:
        inet_ntop(AF_INET, &a->u.in.sin_addr, ip, sizeof ip);
        n = snprintf(buf, size, "%s:%u", ip, ntohs(a->u.in.sin_port));
        break;
    case AF_INET6:
        inet_ntop(AF_INET6, &a->u.in6.sin6_addr, ip, sizeof ip);
        n = snprintf(buf, size, "[%s]:%u", ip, ntohs(a->u.in6.sin6_port));
        break;
    case AF_UNIX: {
        size_t off = offsetof(struct sockaddr_un, sun_path);
        size_t plen = a->len > off ? a->len - off : 0;
        if (plen && a->u.un.sun_path[0] == '\0') /* abstract: "@name" */
            n = snprintf(buf, size, "unix:@%.*s", (int)(plen - 1), a->u.un.sun_path + 1);
        else
            n = snprintf(buf, size, "unix:%.*s", (int)strnlen(a->u.un.sun_path, plen),
                         a->u.un.sun_path);
        break;
    }
    default:
        return -EINVAL;
    }
    if (n < 0)
        return -EINVAL;
    return (size_t)n >= size ? (int)size - 1 : n;
}

static int sock_name(int fd, weft_addr_t *out, bool peer)
{
    if (fd < 0 || !out)
        return -EINVAL;
    socklen_t len = sizeof out->u;
    memset(&out->u, 0, sizeof out->u);
    int r = peer ? getpeername(fd, &out->u.sa, &len) : getsockname(fd, &out->u.sa, &len);
    if (r != 0)
        return -errno;
    out->len = len;
    return 0;
}

int weft_net_local_addr(int fd, weft_addr_t *out)
{
    return sock_name(fd, out, false);
}

int weft_net_peer_addr(int fd, weft_addr_t *out)
{
    return sock_name(fd, out, true);
}

/* ---- resolution ------------------------------------------------------------------ */

/*
 * One lookup. Shared by the caller and the pool task, so that a caller that
 * gives up (deadline, cancellation) can leave while getaddrinfo still runs:
 * two references, one dropped by the caller when it is done with the
 * result, one by the future's done-callback, which runs exactly once when
 * the pool task has finished or was cancelled before it started.
 */
struct lookup {
    _Atomic int refs;
    int socktype;
    int max;
    int n;             /* addresses found (written by the task) */
    bool pooled;       /* counted in lookups_live (the lookup went to the pool) */
    weft_addr_t *addrs; /* max of them */
    char port[8];
    char host[];       /* copied: the caller's string may be gone */
};

/*
 * Lookups handed to the pool whose record is not freed yet. A caller that
 * gives up leaves its lookup running on a pool thread, and getaddrinfo
 * holds descriptors while it runs (/etc/hosts, the nscd socket, a netlink
 * socket): a process that counts its descriptors (the tests' leak checks)
 * must first wait for those lookups (weft__net_resolve_drain). The record
 * is freed only after the pool task has returned (or was cancelled before
 * it started), that is after getaddrinfo closed what it opened, so the
 * count reaching zero means no lookup holds a descriptor any more.
 */
static _Atomic uint32_t lookups_live;

static bool lookups_validate(void *arg)
{
    (void)arg;
    return atomic_load_explicit(&lookups_live, memory_order_relaxed) != 0;
}

void weft__net_resolve_drain(void)
{
    /* acquire: pairs with the release decrement, so whatever the lookup
     * did (closing its descriptors) happens before our return. The park
     * validates under the bucket lock and the last decrement unparks by
     * the same key after it, so the zero cannot be missed; a stale wake
     * just loops. */
    while (atomic_load_explicit(&lookups_live, memory_order_acquire) != 0)
        weft__park(&lookups_live, lookups_validate, NULL, NULL, WEFT_FOREVER, NULL);
}

static void lookup_unref(struct lookup *q)
{
    /* acq_rel: the last owner sees everything the other wrote. */
    if (atomic_fetch_sub_explicit(&q->refs, 1, memory_order_acq_rel) == 1) {
        bool pooled = q->pooled;
        free(q->addrs);
        free(q);
        if (pooled && atomic_fetch_sub_explicit(&lookups_live, 1, memory_order_acq_rel) == 1)
            weft__unpark_all(&lookups_live, 0); /* a static: never goes away */
    }
}

static int gai_to_err(int e)
{
    switch (e) {
    case EAI_NONAME:
#ifdef EAI_NODATA
    case EAI_NODATA:
#endif
#ifdef EAI_ADDRFAMILY
    case EAI_ADDRFAMILY:
#endif
        return -ENOENT;
    case EAI_AGAIN:
        return -EAGAIN;
    case EAI_MEMORY:
        return -ENOMEM;
    case EAI_SYSTEM:
        return errno ? -errno : -EIO;
    default:
        return -EINVAL;
    }
}

/* getaddrinfo into q->addrs. 0 with q->n >= 1, or a negative error. */
static int lookup_run(struct lookup *q)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = q->socktype;
    hints.ai_flags = AI_NUMERICSERV;
    int e = getaddrinfo(q->host, q->port, &hints, &res);
    if (e != 0)
        return gai_to_err(e);
    int n = 0;
    for (struct addrinfo *ai = res; ai && n < q->max; ai = ai->ai_next) {
        if (ai->ai_addrlen > sizeof q->addrs[n].u ||
            (ai->ai_family != AF_INET && ai->ai_family != AF_INET6))
            continue;
        memset(&q->addrs[n], 0, sizeof q->addrs[n]);
        memcpy(&q->addrs[n].u, ai->ai_addr, ai->ai_addrlen);
        q->addrs[n].len = ai->ai_addrlen;
        n++;
    }
    freeaddrinfo(res);
    q->n = n;
    return n ? 0 : -ENOENT;
}

static int lookup_task(void *arg, void **result)
{
    (void)result;
    return lookup_run(arg);
}

static void lookup_done(weft_future_t *f, void *arg)
{
    (void)f;
    lookup_unref(arg);
}

int weft_net_resolve_until(const char *host, int port, int socktype, weft_addr_t *out,
                           int max, weft_time_t deadline)
{
    if (!host || !*host || !out || max < 1 || port < 0 || port > 65535 || deadline < 0 ||
        (socktype != 0 && socktype != SOCK_STREAM && socktype != SOCK_DGRAM))
        return -EINVAL;
    /* A numeric address needs no lookup (and no pool). */
    if (weft_addr_ip(out, host, port) == 0)
        return 1;
    int co = weft__co_enter(); /* 1: a coroutine; 0: a plain thread */
    if (co < 0)
        return co;
    size_t hl = strlen(host);
    struct lookup *q = calloc(1, sizeof *q + hl + 1);
    if (!q)
        return -ENOMEM;
    q->addrs = calloc((size_t)max, sizeof *q->addrs);
    if (!q->addrs) {
        free(q);
        return -ENOMEM;
    }
    q->socktype = socktype ? socktype : SOCK_STREAM;
    q->max = max;
    snprintf(q->port, sizeof q->port, "%d", port);
    memcpy(q->host, host, hl + 1);

    int r;
    if (!co && deadline == WEFT_FOREVER) {
        /* A plain thread that may wait as long as it takes: it is a
         * blocking context already, and a pool worker waiting on its own
         * pool could wait for itself. */
        atomic_init(&q->refs, 1);
        r = lookup_run(q);
    } else {
        /* Counted before the task can start (lookup_unref uncounts it
         * when the record goes). */
        q->pooled = true;
        atomic_fetch_add_explicit(&lookups_live, 1, memory_order_relaxed);
        atomic_init(&q->refs, 2);
        weft_future_t *f;
        r = weft_pool_submit(NULL, lookup_task, q, &f);
        if (r) {
            atomic_store_explicit(&q->refs, 1, memory_order_relaxed); /* no task */
            lookup_unref(q);
            return r;
        }
        if (weft_future_on_done(f, lookup_done, q) != 0) {
            /* No memory for the callback: we cannot leave early, so wait
             * for the task to end whatever the deadline, then drop both. */
            if (co) {
                weft_co_scope_t shield; /* cancellation would return at once */
                weft_co_shield_begin(&shield);
                r = weft_co_await_future(f, NULL);
                if (weft_co_scope_end(&shield) == -ECANCELED)
                    r = -ECANCELED;
            } else {
                r = weft_future_get(f, NULL);
            }
            lookup_unref(q);
        } else if (co) {
            r = weft_co_await_future_until(f, NULL, deadline);
        } else {
            r = weft_future_get_until(f, NULL, deadline);
        }
        if (r < 0 && !weft_future_done(f))
            weft_future_cancel(f); /* not started: never runs (the callback does) */
        weft_future_release(f);
    }
    if (r == 0) {
        memcpy(out, q->addrs, (size_t)q->n * sizeof *out);
        r = q->n;
    }
    lookup_unref(q);
    return r;
}

int weft_net_resolve(const char *host, int port, int socktype, weft_addr_t *out, int max)
{
    return weft_net_resolve_until(host, port, socktype, out, max, WEFT_FOREVER);
}
