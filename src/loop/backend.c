/*
 * backend.c - choosing a backend at run time: by name (a loop option or
 * WEFT_BACKEND), falling back to epoll when the one asked for is not built
 * in or cannot start on this machine, and saying so. Also the wake eventfd
 * helpers that both backends use.
 */
#include "backend.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

_Atomic int weft__uring_init_fail;
_Atomic int weft__uring_plain_ring;

const struct weft__backend_ops *weft__backend_find(const char *name)
{
    if (!name)
        return NULL;
    if (strcmp(name, "epoll") == 0)
        return &weft__epoll_backend;
#ifdef WEFT_HAVE_URING
    if (strcmp(name, "uring") == 0 || strcmp(name, "io_uring") == 0)
        return &weft__uring_backend;
#endif
    return NULL;
}

static const char *asked_name(const char *name)
{
    if (!name || !*name)
        name = getenv("WEFT_BACKEND");
    return name && *name ? name : NULL;
}

const struct weft__backend_ops *weft__backend_choose(const char *name)
{
    const struct weft__backend_ops *o = weft__backend_find(asked_name(name));
    return o ? o : &weft__epoll_backend;
}

static bool is_uring_name(const char *n)
{
    return strcmp(n, "uring") == 0 || strcmp(n, "io_uring") == 0;
}

int weft__backend_open(const char *name, const struct weft__backend_ops **ops,
                       struct weft__backend **out, char *note, size_t cap)
{
    if (cap)
        note[0] = '\0';
    const char *asked = asked_name(name);
    const struct weft__backend_ops *o = weft__backend_find(asked);
    if (asked && !o && cap) {
        if (is_uring_name(asked))
            snprintf(note, cap, "io_uring asked for but not built in (no liburing): using epoll");
        else
            snprintf(note, cap, "unknown backend '%.24s': using epoll", asked);
    }
    if (o && o != &weft__epoll_backend) {
        int r = o->init(out);
        if (r == 0) {
            *ops = o;
            return 0;
        }
        if (cap)
            snprintf(note, cap, "%s unavailable (%s): using epoll", o->name, strerror(-r));
    }
    *ops = &weft__epoll_backend;
    return weft__epoll_backend.init(out);
}

int weft__backend_probe(const char *name, char *why, size_t cap)
{
    const struct weft__backend_ops *o = weft__backend_find(name);
    if (!o) {
        if (cap)
            snprintf(why, cap, "backend '%s' is not built in", name ? name : "(null)");
        return -ENOENT;
    }
    struct weft__backend *b;
    int r = o->init(&b);
    if (r) {
        if (cap)
            snprintf(why, cap, "backend %s cannot start here: %s", o->name, strerror(-r));
        return r;
    }
    o->fini(b);
    if (cap)
        why[0] = '\0';
    return 0;
}

void weft__backend_eventfd_wake(int fd)
{
    uint64_t one = 1;
    ssize_t r = write(fd, &one, sizeof one);
    (void)r; /* EAGAIN: the counter is saturated, a wake is pending */
}

void weft__backend_eventfd_drain(int fd)
{
    uint64_t v;
    while (read(fd, &v, sizeof v) > 0)
        ;
}

/* The push's slow path (backend.h): room for one more. */
int weft__fdlist_grow(struct weft__fdlist *l)
{
    int n = l->cap ? 2 * l->cap : 16;
    int *p = realloc(l->v, (size_t)n * sizeof *p);
    if (!p)
        return -ENOMEM;
    l->v = p;
    l->cap = n;
    return 0;
}

void weft__fdlist_consume(struct weft__fdlist *l, int k)
{
    memmove(l->v, l->v + k, (size_t)(l->n - k) * sizeof *l->v);
    l->n -= k;
}

void weft__fdlist_free(struct weft__fdlist *l)
{
    free(l->v);
    *l = (struct weft__fdlist){0};
}
