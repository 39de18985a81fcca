/*
 * net_util.h - shared by the socket tests: run a coroutine body on every
 * loop backend weft offers, and small helpers (a loopback listener, a
 * deterministic byte pattern).
 *
 * Backends: every name in NET_BACKENDS is tried; a loop that falls back to
 * another backend is noted and skipped where that backend cannot start
 * here (not built, or refused by the kernel), and is a failure otherwise. WEFT_BACKEND=name in the environment restricts the run to
 * that backend.
 */
#ifndef WEFT_TEST_NET_UTIL_H
#define WEFT_TEST_NET_UTIL_H

#include <string.h>
#include <weft.h>

#include "co_check.h"

static const char *const NET_BACKENDS[] = {"epoll", "io_uring"};

struct net_run_ {
    weft_co_fn fn;
    void *arg;
    const char *want;
    int skipped;
};

static const char *net_backend_now = "?";

static int net_run_main_(void *arg, void **result)
{
    struct net_run_ *r = arg;
    const char *got = weft_loop_backend(weft_loop_current());
    if (!got || (strcmp(got, r->want) != 0 &&
                 !(strcmp(r->want, "io_uring") == 0 && strcmp(got, "uring") == 0))) {
        r->skipped = 1;
        return 0;
    }
    return r->fn(r->arg, result);
}

/* Run fn(arg) as the main coroutine of a loop on each backend; CHECKs that
 * every run returned 0. Returns how many backends ran. */
static inline int net_each_backend(weft_co_fn fn, void *arg)
{
    const char *only = getenv("WEFT_BACKEND");
    int ran = 0;
    for (size_t i = 0; i < sizeof NET_BACKENDS / sizeof NET_BACKENDS[0]; i++) {
        const char *be = NET_BACKENDS[i];
        if (only && *only && strcmp(only, be) != 0 &&
            !(strcmp(be, "io_uring") == 0 && strcmp(only, "uring") == 0))
            continue;
        struct net_run_ r = {fn, arg, be, 0};
        weft_loop_opts_t o = {.backend = be};
        net_backend_now = be;
        int rc = weft_loop_run(net_run_main_, &r, &o);
        if (r.skipped) {
            /* Skipped only where the backend cannot start; one that can
             * but was not used is a failure (it would hide a fallback). */
            char why[160];
            const char *probe = strcmp(be, "io_uring") == 0 ? "uring" : be;
            if (weft__backend_probe(probe, why, sizeof why) == 0) {
                fprintf(stderr, "  backend %s works here but the loop did not use it\n", be);
                CHECK(false);
            }
            fprintf(stderr, "  (backend %s not available here: %s; skipped)\n", be, why);
            continue;
        }
        CHECK_RC(rc, 0);
        ran++;
    }
    CHECK_INT(ran, >=, 1);
    return ran;
}

/* A listening TCP socket on 127.0.0.1, any free port; *addr gets its
 * address. */
static inline int net_listen_loopback(weft_addr_t *addr)
{
    weft_addr_t a;
    if (weft_addr_ip(&a, "127.0.0.1", 0) != 0)
        return -EINVAL;
    int fd = weft_net_listen(&a, 0);
    if (fd < 0)
        return fd;
    int r = weft_net_local_addr(fd, addr);
    if (r) {
        weft_net_close(fd);
        return r;
    }
    return fd;
}

/* A connected TCP pair on loopback, made from a coroutine or a thread:
 * 0, or a negative error with nothing left open (*a and *b -1 or
 * closed). */
static inline int net_tcp_pair(int *a, int *b)
{
    *a = *b = -1;
    weft_addr_t addr;
    int l = net_listen_loopback(&addr);
    if (l < 0)
        return l;
    *a = weft_net_connect(&addr);
    if (*a < 0) {
        weft_net_close(l);
        return *a;
    }
    *b = weft_net_accept(l, NULL);
    weft_net_close(l);
    if (*b < 0) {
        weft_net_close(*a);
        return *b;
    }
    return 0;
}

/* Byte i of stream `id`: a pattern that catches lost, repeated and
 * reordered bytes. */
static inline unsigned char net_pat(uint32_t id, uint64_t i)
{
    uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ull ^ ((uint64_t)id << 40);
    x ^= x >> 29;
    return (unsigned char)(x * 0xBF58476D1CE4E5B9ull >> 56);
}

#endif
