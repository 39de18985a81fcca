/*
 * arena.c - the pool's shared arena: 64 KiB pages handed out in contiguous
 * runs to the parent or to a worker, without a lock.
 *
 * Each page has an owner word (0 = free). A run is taken by moving the
 * owner of each of its pages from 0 to the allocator's tag with a CAS, in
 * order; a CAS that fails gives back the pages taken so far. No lock means
 * nothing for a killed worker to leave held: whatever pages a dead worker
 * owned are found by their tag and freed by the dispatcher
 * (weft__arena_free_owner), after it has consumed the results that
 * referred to them. runlen[first page] records the run's length; it is
 * written by the owner after taking the run and read only by whoever frees
 * it (the owner, or the dispatcher once it was handed over), so plain
 * accesses ordered by the result ring's release/acquire are enough.
 */
#include "internal.h"

uint64_t weft__arena_alloc(const struct wp_view *h, size_t len, uint32_t owner)
{
    uint32_t np = h->npages;
    if (len == 0 || np == 0)
        return 0;
    size_t need = (len + WP_PAGE - 1) / WP_PAGE;
    if (need > np)
        return 0;
    _Atomic uint32_t *own = wp_owners(h);
    /* Start at a pseudo-random page so that concurrent allocators spread. */
    uint32_t start = (uint32_t)(weft__rand() % np);
    for (uint32_t tried = 0; tried < np;) {
        uint32_t p = (start + tried) % np;
        if (p + need > np) {
            tried += np - p;
            continue;
        }
        uint32_t k = 0;
        for (; k < need; k++) {
            uint32_t zero = 0;
            /* acq_rel: acquire what the previous owner wrote before it
             * freed the page (it released); release nothing yet. */
            if (!atomic_compare_exchange_strong_explicit(&own[p + k], &zero, owner,
                                                         memory_order_acq_rel,
                                                         memory_order_relaxed))
                break;
        }
        if (k == need) {
            wp_runlen(h)[p] = (uint32_t)need;
            return h->off_arena + (uint64_t)p * WP_PAGE;
        }
        for (uint32_t u = 0; u < k; u++)
            atomic_store_explicit(&own[p + u], 0, memory_order_release);
        tried += k + 1;
    }
    return 0;
}

void weft__arena_free(const struct wp_view *h, uint64_t off, uint32_t owner)
{
    (void)owner;
    uint32_t p = (uint32_t)((off - h->off_arena) / WP_PAGE);
    uint32_t n = wp_runlen(h)[p];
    _Atomic uint32_t *own = wp_owners(h);
    for (uint32_t k = 0; k < n && p + k < h->npages; k++)
        /* release: our writes to the page happen before its next owner's. */
        atomic_store_explicit(&own[p + k], 0, memory_order_release);
}

void weft__arena_free_owner(const struct wp_view *h, uint32_t owner)
{
    _Atomic uint32_t *own = wp_owners(h);
    for (uint32_t p = 0; p < h->npages; p++)
        if (atomic_load_explicit(&own[p], memory_order_relaxed) == owner)
            atomic_store_explicit(&own[p], 0, memory_order_release);
}

bool weft__arena_is_run(const struct wp_view *h, uint64_t off, uint32_t owner)
{
    if (off < h->off_arena || (off - h->off_arena) % WP_PAGE)
        return false;
    uint64_t p = (off - h->off_arena) / WP_PAGE;
    if (p >= h->npages)
        return false;
    return atomic_load_explicit(&wp_owners(h)[p], memory_order_relaxed) == owner &&
           wp_runlen(h)[p] > 0;
}
