/*
 * stack.c - coroutine stacks: mmap'd, guarded, lazily committed, pooled.
 *
 * One mapping per coroutine:
 *
 *     map                 lo                                     map+map_size
 *     | guard (PROT_NONE) | usable stack, grows down <-  | record |
 *
 * The whole mapping is made readable and writable except the guard, but the
 * kernel commits a page only when it is first touched, so a 256 KiB stack
 * whose coroutine uses 3 KiB costs one or two pages of memory and 256 KiB of
 * address space. MAP_NORESERVE keeps untouched pages out of the overcommit
 * accounting. The record (struct weft__co) sits at the top, so the stack's
 * first touched page is also the record's: creating a coroutine costs no
 * malloc at all.
 *
 * The guard is PROT_NONE address space below the stack (64 KiB by default,
 * costing no memory): running off the bottom faults there, and the SIGSEGV
 * handler in guard.c names the coroutine. A single frame larger than the
 * guard could skip over it; code built with -fstack-clash-protection probes
 * every page and cannot.
 *
 * Every guarded stack is two kernel mappings (VMAs): vm.max_map_count (65530
 * by default) bounds how many stacks can exist at once, to about 32,000.
 * mmap/mprotect then fail with ENOMEM and creation returns -ENOMEM.
 *
 * The pool keeps up to pool_max freed stacks (with their committed pages,
 * so a reused stack is warm) in a LIFO list threaded through the records, and
 * hands out the most recently freed stack of the requested size. It is
 * guarded by a weft mutex: creating and freeing are not on the switch path,
 * and the critical sections are a few loads and stores. The pool is drained
 * at exit.
 */
#include "internal.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <weft/sync.h>

#include "../platform/platform.h"

#if WEFT_CO_ASAN
#include <sanitizer/asan_interface.h>
#endif

#ifndef MAP_STACK
#define MAP_STACK 0
#endif
#ifndef MAP_NORESERVE
#define MAP_NORESERVE 0
#endif

/* The record's footprint at the top of the mapping, kept cache-line sized. */
#define RECORD_SPACE ((sizeof(struct weft__co) + 63u) & ~(size_t)63u)

static weft_mutex_t pool_lock = WEFT_MUTEX_INIT;
static struct weft__co *pool_head; /* guarded by pool_lock */
static size_t pool_count;          /* guarded by pool_lock */
static bool pool_closed;           /* guarded by pool_lock: set at exit */
static bool atexit_done;           /* guarded by pool_lock */

/* Configuration: read without the lock by creators (relaxed: a creation
 * racing a reconfiguration may use either value). */
static _Atomic size_t cfg_default = WEFT__CO_STACK_DEFAULT;
static _Atomic size_t cfg_pool_max = WEFT__CO_POOL_DEFAULT;
static _Atomic size_t cfg_guard = WEFT__CO_GUARD_DEFAULT;

/* Counters, relaxed: statistics only. */
static _Atomic uint64_t st_mapped, st_in_use, st_pooled, st_created, st_reused, st_returned,
    st_unmapped;

static size_t round_up(size_t n, size_t to)
{
    return (n + to - 1) / to * to;
}

static void unmap(struct weft__co *co)
{
    char *map = co->map;
    size_t len = co->map_size;
    munmap(map, len);
    atomic_fetch_sub_explicit(&st_mapped, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&st_unmapped, 1, memory_order_relaxed);
}

static void drain_at_exit(void)
{
    weft_mutex_lock(&pool_lock);
    pool_closed = true;
    weft_mutex_unlock(&pool_lock);
    weft__co_stack_pool_trim();
}

size_t weft__co_stack_pool_trim(void)
{
    weft_mutex_lock(&pool_lock);
    struct weft__co *list = pool_head;
    size_t n = pool_count;
    pool_head = NULL;
    pool_count = 0;
    atomic_fetch_sub_explicit(&st_pooled, n, memory_order_relaxed);
    weft_mutex_unlock(&pool_lock);
    while (list) {
        struct weft__co *next = list->pool_next;
        unmap(list);
        list = next;
    }
    return n;
}

int weft__co_stack_config(size_t default_size, size_t pool_max, size_t guard_size)
{
    if (default_size > WEFT__CO_STACK_MAX || guard_size > ((size_t)64 << 20))
        return -EINVAL;
    if (default_size)
        atomic_store_explicit(&cfg_default, default_size, memory_order_relaxed);
    if (guard_size)
        atomic_store_explicit(&cfg_guard, guard_size, memory_order_relaxed);
    if (pool_max != SIZE_MAX) {
        atomic_store_explicit(&cfg_pool_max, pool_max, memory_order_relaxed);
        if (pool_max == 0)
            weft__co_stack_pool_trim();
    }
    return 0;
}

void weft__co_stack_stats(struct weft__co_stack_stats *out)
{
    if (!out)
        return;
    out->mapped = atomic_load_explicit(&st_mapped, memory_order_relaxed);
    out->in_use = atomic_load_explicit(&st_in_use, memory_order_relaxed);
    out->pooled = atomic_load_explicit(&st_pooled, memory_order_relaxed);
    out->created = atomic_load_explicit(&st_created, memory_order_relaxed);
    out->reused = atomic_load_explicit(&st_reused, memory_order_relaxed);
    out->returned = atomic_load_explicit(&st_returned, memory_order_relaxed);
    out->unmapped = atomic_load_explicit(&st_unmapped, memory_order_relaxed);
}

/* Take the most recently pooled stack of exactly `size` usable bytes. */
static struct weft__co *pool_take(size_t size)
{
    struct weft__co *co = NULL;
    weft_mutex_lock(&pool_lock);
    for (struct weft__co **p = &pool_head; *p; p = &(*p)->pool_next) {
        if ((*p)->size == size) {
            co = *p;
            *p = co->pool_next;
            pool_count--;
            atomic_fetch_sub_explicit(&st_pooled, 1, memory_order_relaxed);
            atomic_fetch_add_explicit(&st_reused, 1, memory_order_relaxed);
            break;
        }
    }
    weft_mutex_unlock(&pool_lock);
    return co;
}

int weft__co_stack_get(size_t size, struct weft__co **out)
{
    size_t page = weft__page_size();
    if (size == 0)
        size = atomic_load_explicit(&cfg_default, memory_order_relaxed);
    if (size > WEFT__CO_STACK_MAX)
        return -EINVAL;
    if (size < WEFT__CO_STACK_MIN)
        size = WEFT__CO_STACK_MIN;
    /* Usable bytes: whole pages minus the record, at least what was asked. */
    size_t top = round_up(size + RECORD_SPACE, page);
    size = top - RECORD_SPACE;

    struct weft__co *co = pool_take(size);
    if (!co) {
        size_t guard = round_up(atomic_load_explicit(&cfg_guard, memory_order_relaxed), page);
        size_t len = guard + top;
        /* Map everything PROT_NONE, then open the stack: a failure between
         * the two leaves nothing half-usable behind. */
        char *map = mmap(NULL, len, PROT_NONE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
        if (map == MAP_FAILED)
            return -ENOMEM;
        if (mprotect(map + guard, top, PROT_READ | PROT_WRITE) != 0) {
            munmap(map, len);
            return -ENOMEM;
        }
        co = (struct weft__co *)(map + len - RECORD_SPACE);
        co->map = map;
        co->map_size = len;
        co->lo = map + guard;
        co->size = size;
        atomic_fetch_add_explicit(&st_mapped, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&st_created, 1, memory_order_relaxed);
    }
    atomic_fetch_add_explicit(&st_in_use, 1, memory_order_relaxed);
    *out = co;
    return 0;
}

void weft__co_stack_put(struct weft__co *co)
{
    atomic_fetch_sub_explicit(&st_in_use, 1, memory_order_relaxed);
#if WEFT_CO_ASAN
    /* Frames abandoned on this stack (a coroutine freed while suspended)
     * leave their redzones poisoned; the next owner must start clean. */
    __asan_unpoison_memory_region(co->lo, co->size);
#endif
    size_t max = atomic_load_explicit(&cfg_pool_max, memory_order_relaxed);
    weft_mutex_lock(&pool_lock);
    if (!pool_closed && pool_count < max) {
        co->pool_next = pool_head;
        pool_head = co;
        pool_count++;
        /* Counted under the lock so that a concurrent trim never sees the
         * counter below the list's length. */
        atomic_fetch_add_explicit(&st_pooled, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&st_returned, 1, memory_order_relaxed);
        if (!atexit_done)
            atexit_done = atexit(drain_at_exit) == 0;
        weft_mutex_unlock(&pool_lock);
        return;
    }
    weft_mutex_unlock(&pool_lock);
    unmap(co);
}
