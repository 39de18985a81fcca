/*
 * shm.c - shared regions: a memfd mapped MAP_SHARED, with a bump
 * allocator whose cursor lives in the region's first bytes.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

struct weft_shm {
    void *base;
    size_t size;
    int fd;
};

/* The region's header: the allocation cursor, on its own cache line. */
struct shm_hdr {
    _Atomic uint64_t cursor; /* next free byte, from the region's base */
    uint64_t size;
    uint8_t pad_[48];
};

int weft__shm_fd(const struct weft_shm *s) { return s->fd; }

int weft_shm_create(weft_shm_t **out, size_t size, const char *name)
{
    if (!out || size == 0 || size > ((size_t)1 << 40))
        return -EINVAL;
    size_t pg = weft__page_size();
    size = (size + sizeof(struct shm_hdr) + pg - 1) / pg * pg;
    struct weft_shm *r = malloc(sizeof *r);
    if (!r)
        return -ENOMEM;
    r->fd = memfd_create(name ? name : "weft-shm", MFD_CLOEXEC);
    if (r->fd < 0) {
        int e = errno;
        free(r);
        return e == EMFILE || e == ENFILE ? -EMFILE : -ENOMEM;
    }
    if (ftruncate(r->fd, (off_t)size) < 0) {
        close(r->fd);
        free(r);
        return -ENOMEM;
    }
    r->base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, r->fd, 0);
    if (r->base == MAP_FAILED) {
        close(r->fd);
        free(r);
        return -ENOMEM;
    }
    r->size = size;
    struct shm_hdr *h = r->base;
    atomic_store(&h->cursor, sizeof *h);
    h->size = size;
    *out = r;
    return 0;
}

int weft_shm_free(weft_shm_t *r)
{
    if (!r)
        return -EINVAL;
    munmap(r->base, r->size);
    close(r->fd);
    free(r);
    return 0;
}

void *weft_shm_base(const weft_shm_t *r) { return r ? r->base : NULL; }
size_t weft_shm_size(const weft_shm_t *r) { return r ? r->size : 0; }

void *weft_shm_alloc_at(void *base, size_t size, size_t align)
{
    if (!base || size == 0)
        return NULL;
    if (align == 0)
        align = 16;
    if (align & (align - 1) || align > 4096)
        return NULL;
    struct shm_hdr *h = base;
    uint64_t cur = atomic_load_explicit(&h->cursor, memory_order_relaxed);
    for (;;) {
        uint64_t start = (cur + align - 1) & ~(uint64_t)(align - 1);
        if (start > h->size || size > h->size - start)
            return NULL;
        /* relaxed: the memory handed out is zero and nobody else's; what
         * the caller stores there is published by its own means. */
        if (atomic_compare_exchange_weak_explicit(&h->cursor, &cur, start + size,
                                                  memory_order_relaxed, memory_order_relaxed))
            return (char *)base + start;
    }
}

void *weft_shm_alloc(weft_shm_t *r, size_t size, size_t align)
{
    return r ? weft_shm_alloc_at(r->base, size, align) : NULL;
}
