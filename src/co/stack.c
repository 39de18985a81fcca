/*
 * stack.c - coroutine stacks: mmap'd, guarded, lazily committed, pooled.
 *
 * Every stack is a slot:
 *
 *     map                 lo                                     map+map_size
 *     | guard (no access) | usable stack, grows down <-  | record |
 *
 * The usable part is readable and writable, but the kernel commits a page
 * only when it is first touched, so a 256 KiB stack whose coroutine uses
 * 3 KiB costs one or two pages of memory and 256 KiB of address space.
 * MAP_NORESERVE keeps untouched pages out of the overcommit accounting. The
 * record (struct weft__co) sits at the top, so the stack's first touched
 * page is also the record's: creating a coroutine costs no malloc at all.
 *
 * Chunks. Stacks of at most WEFT__CO_CHUNK_STACK_MAX usable bytes (the
 * default size and below) are carved from chunks: one mmap holds up to
 * CHUNK_SLOTS slots of one size, and a slot is carved when first needed.
 * The guards are installed with madvise(MADV_GUARD_INSTALL) (Linux 6.13):
 * guard markers in the page tables, which fault like PROT_NONE but do not
 * split the mapping, so a whole chunk is ONE kernel mapping (VMA) and
 * vm.max_map_count (65530 by default) no longer bounds the number of live
 * coroutines (a million need about 16,000 mappings). Where the kernel lacks
 * it, each guard is mprotect'ed PROT_NONE when its slot is carved: two VMAs
 * per stack as before, and about 32,000 live stacks at most. Larger stacks
 * get a mapping of their own (mmap + mprotect), as before.
 *
 * A guard is 64 KiB of address space below each stack. In a chunk the slot
 * below is another stack: a single frame larger than the guard that jumps
 * over it lands in a neighbour's stack instead of unmapped memory, where the
 * overflow handler cannot see it. Code built with -fstack-clash-protection
 * probes every page and cannot jump a guard.
 *
 * Reuse. A freed stack keeps its committed pages (a reused stack is warm)
 * and goes to
 *   - the freeing thread's cache (per size class, LIFO, no lock), up to
 *     TCACHE_MAX stacks per class; beyond that half of the cache moves to
 *   - the global pool (per size class, LIFO, under a weft mutex), which
 *     creation falls back to (taking a batch into its thread's cache).
 * By default the pool is adaptive: it keeps every freed stack, i.e. as many
 * as were ever in use at once (a program that had 10,000 coroutines alive
 * keeps 10,000 stacks, as Go keeps freed goroutine stacks); nothing is
 * unmapped until weft__co_stack_pool_trim() or exit. weft__co_stack_config
 * with an explicit pool_max turns the thread caches off and bounds the pool
 * instead (then a stack freed into a full pool is unmapped: a chunk slot is
 * unmapped on its own, punching a hole in its chunk).
 *
 * Statistics are counted per thread (plain single-writer stores, no locked
 * instructions on the hot path) and summed on demand; a thread's counters
 * outlive it (a block is reused by a later thread, its sums intact).
 */
#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <weft/sync.h>

#include "../platform/platform.h"
#include "../sync/internal.h"

#if WEFT_CO_ASAN
#include <sanitizer/asan_interface.h>
#endif

#ifndef MAP_STACK
#define MAP_STACK 0
#endif
#ifndef MAP_NORESERVE
#define MAP_NORESERVE 0
#endif
#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102 /* Linux 6.13 */
#endif

/* The record's footprint at the top of the mapping, kept cache-line sized. */
#define RECORD_SPACE ((sizeof(struct weft__co) + 63u) & ~(size_t)63u)

#define CHUNK_SLOTS 64       /* slots per chunk (fewer if slots are large) */
#define CHUNK_BYTES_MAX ((size_t)32 << 20)
#define TCACHE_CLASSES 4     /* size classes a thread caches */
#define TCACHE_MAX 256       /* stacks per class in a thread's cache */
#define CLASSES_MAX 16       /* chunked size classes in the global pool */

/* ---- statistics: per-thread blocks, summed on demand ------------------------ */

enum { S_MAPPED, S_IN_USE, S_POOLED, S_CREATED, S_REUSED, S_RETURNED, S_UNMAPPED, S_N };

struct stat_block {
    _Atomic uint64_t v[S_N];       /* written by the owning thread only */
    struct stat_block *next;       /* in all_blocks, never removed */
    _Atomic int free;              /* 1: its thread exited, may be adopted */
};

static _Atomic(struct stat_block *) all_blocks;
static struct stat_block fallback_block; /* if malloc fails */

/* Wrapping arithmetic: a stack made on one thread and freed on another
 * makes one block's in_use "negative"; the sum is right. */
static inline void st_add(struct stat_block *b, int i, uint64_t d)
{
    if (WEFT_UNLIKELY(b == &fallback_block)) {
        atomic_fetch_add_explicit(&b->v[i], d, memory_order_relaxed);
        return;
    }
    atomic_store_explicit(&b->v[i], atomic_load_explicit(&b->v[i], memory_order_relaxed) + d,
                          memory_order_relaxed);
}

/* ---- the thread cache ----------------------------------------------------------- */

struct freelist {
    size_t size;           /* usable bytes of the stacks in it (0: unused class) */
    struct weft__co *head; /* LIFO through pool_next */
    size_t count;
};

struct tcache {
    struct stat_block *stats;
    struct freelist cls[TCACHE_CLASSES];
    bool registered;       /* the exit destructor is armed */
};

static __thread struct tcache tc;

static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static pthread_key_t tc_key;
static bool tc_key_ok;

/* ---- the global pool ------------------------------------------------------------- */

static weft_mutex_t pool_lock = WEFT_MUTEX_INIT;
static struct freelist gl_cls[CLASSES_MAX]; /* chunked stacks, by size; pool_lock */
static struct weft__co *big_head;           /* own-mapping stacks; pool_lock */
static size_t pool_count;                   /* stacks in the global pool; pool_lock */
static bool pool_closed;                    /* set at exit; pool_lock */
static bool atexit_done;                    /* pool_lock */

/* Chunks being carved, one per size class (pool_lock). */
struct carve {
    size_t size;    /* usable bytes */
    size_t slot;    /* bytes per slot: guard + stack + record */
    char *next;     /* next slot to carve */
    size_t left;    /* slots left */
};
static struct carve carving[CLASSES_MAX];

/* Configuration: read without the lock (relaxed: a creation racing a
 * reconfiguration may use either value). pool_max == POOL_AUTO: adaptive
 * pool with thread caches. */
#define POOL_AUTO SIZE_MAX
static _Atomic size_t cfg_default = WEFT__CO_STACK_DEFAULT;
static _Atomic size_t cfg_pool_max = POOL_AUTO;
static _Atomic size_t cfg_guard = WEFT__CO_GUARD_DEFAULT;
static _Atomic int guard_madvise = 1; /* 0 once MADV_GUARD_INSTALL was refused */

/* to is a power of two (a page size). */
static inline size_t round_up(size_t n, size_t to)
{
    return (n + to - 1) & ~(to - 1);
}

static void flush_thread(void *arg);

static void make_key(void)
{
    tc_key_ok = pthread_key_create(&tc_key, flush_thread) == 0;
}

/* The calling thread's statistics block: adopt a free one, else a new one. */
static WEFT_NOINLINE struct stat_block *stats_slow(void)
{
    struct stat_block *b;
    for (b = atomic_load_explicit(&all_blocks, memory_order_acquire); b; b = b->next) {
        int one = 1;
        if (atomic_load_explicit(&b->free, memory_order_relaxed) == 1 &&
            atomic_compare_exchange_strong_explicit(&b->free, &one, 0, memory_order_acquire,
                                                    memory_order_relaxed))
            break;
    }
    if (!b) {
        b = calloc(1, sizeof *b);
        if (!b)
            return tc.stats = &fallback_block;
        struct stat_block *h = atomic_load_explicit(&all_blocks, memory_order_relaxed);
        do
            b->next = h;
        while (!atomic_compare_exchange_weak_explicit(&all_blocks, &h, b, memory_order_release,
                                                      memory_order_relaxed));
    }
    tc.stats = b;
    pthread_once(&key_once, make_key);
    if (tc_key_ok && !tc.registered)
        tc.registered = pthread_setspecific(tc_key, &tc) == 0;
    return b;
}

static inline struct stat_block *stats(void)
{
    struct stat_block *b = tc.stats;
    return WEFT_LIKELY(b != NULL) ? b : stats_slow();
}

static struct freelist *gl_class(size_t size, bool create)
{
    for (int i = 0; i < CLASSES_MAX; i++) {
        if (gl_cls[i].size == size)
            return &gl_cls[i];
        if (gl_cls[i].size == 0) {
            if (!create)
                return NULL;
            gl_cls[i].size = size;
            return &gl_cls[i];
        }
    }
    return NULL;
}

static void unmap(struct weft__co *co)
{
    munmap(co->map, co->map_size);
    struct stat_block *b = stats();
    st_add(b, S_MAPPED, (uint64_t)-1);
    st_add(b, S_UNMAPPED, 1);
}

/* Move a thread-cache list into the global pool (pool_lock held). Stacks
 * that find no class slot are unmapped by the caller: returned in *rest. */
static void gl_push_list(size_t size, struct weft__co *list, size_t n, struct weft__co **rest)
{
    struct freelist *g = gl_class(size, true);
    if (!g || pool_closed) {
        while (list) {
            struct weft__co *next = list->pool_next;
            list->pool_next = *rest;
            *rest = list;
            list = next;
        }
        return;
    }
    while (list) {
        struct weft__co *next = list->pool_next;
        list->pool_next = g->head;
        g->head = list;
        g->count++;
        pool_count++;
        list = next;
    }
    (void)n;
}

static void unmap_list(struct weft__co *list)
{
    struct stat_block *b = stats();
    while (list) {
        struct weft__co *next = list->pool_next;
        st_add(b, S_POOLED, (uint64_t)-1);
        unmap(list);
        list = next;
    }
}

/* Thread exit: the cached stacks go to the global pool. */
static void flush_thread(void *arg)
{
    struct tcache *t = arg;
    struct weft__co *rest = NULL;
    weft__mutex_lock_nc(&pool_lock);
    for (int i = 0; i < TCACHE_CLASSES; i++) {
        if (t->cls[i].head)
            gl_push_list(t->cls[i].size, t->cls[i].head, t->cls[i].count, &rest);
        t->cls[i].head = NULL;
        t->cls[i].count = 0;
    }
    weft_mutex_unlock(&pool_lock);
    unmap_list(rest);
    if (t->stats && t->stats != &fallback_block)
        atomic_store_explicit(&t->stats->free, 1, memory_order_release);
    t->stats = NULL;
    t->registered = false;
}

static void drain_at_exit(void)
{
    weft__mutex_lock_nc(&pool_lock);
    pool_closed = true;
    weft_mutex_unlock(&pool_lock);
    weft__co_stack_pool_trim();
}

size_t weft__co_stack_pool_trim(void)
{
    /* The calling thread's cache first (other threads' caches are theirs:
     * they reach the pool when those threads exit). */
    struct weft__co *rest = NULL;
    weft__mutex_lock_nc(&pool_lock);
    for (int i = 0; i < TCACHE_CLASSES; i++) {
        if (tc.cls[i].head)
            gl_push_list(tc.cls[i].size, tc.cls[i].head, tc.cls[i].count, &rest);
        tc.cls[i].head = NULL;
        tc.cls[i].count = 0;
    }
    struct weft__co *list = big_head;
    big_head = NULL;
    for (int i = 0; i < CLASSES_MAX; i++) {
        struct weft__co *c = gl_cls[i].head;
        while (c) {
            struct weft__co *next = c->pool_next;
            c->pool_next = list;
            list = c;
            c = next;
        }
        gl_cls[i].head = NULL;
        gl_cls[i].count = 0;
    }
    pool_count = 0;
    weft_mutex_unlock(&pool_lock);
    size_t n = 0;
    for (struct weft__co *c = list; c; c = c->pool_next)
        n++;
    for (struct weft__co *c = rest; c; c = c->pool_next)
        n++;
    unmap_list(list);
    unmap_list(rest);
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
    if (pool_max == WEFT__CO_POOL_AUTO) { /* the default: adaptive, with thread caches */
        atomic_store_explicit(&cfg_pool_max, POOL_AUTO, memory_order_relaxed);
    } else if (pool_max != SIZE_MAX) {
        atomic_store_explicit(&cfg_pool_max, pool_max, memory_order_relaxed);
        /* A fixed bound: start from an empty pool (and this thread's cache
         * emptied into it), so the bound holds from now on. */
        weft__co_stack_pool_trim();
    }
    return 0;
}

void weft__co_stack_stats(struct weft__co_stack_stats *out)
{
    if (!out)
        return;
    uint64_t s[S_N] = {0};
    for (struct stat_block *b = atomic_load_explicit(&all_blocks, memory_order_acquire); b;
         b = b->next)
        for (int i = 0; i < S_N; i++)
            s[i] += atomic_load_explicit(&b->v[i], memory_order_relaxed);
    for (int i = 0; i < S_N; i++)
        s[i] += atomic_load_explicit(&fallback_block.v[i], memory_order_relaxed);
    out->mapped = s[S_MAPPED];
    out->in_use = s[S_IN_USE];
    out->pooled = s[S_POOLED];
    out->created = s[S_CREATED];
    out->reused = s[S_REUSED];
    out->returned = s[S_RETURNED];
    out->unmapped = s[S_UNMAPPED];
}

/* The thread-cache class for size; with create, an empty class is taken
 * over for it. NULL if there is none. */
static inline struct freelist *tc_class(size_t size, bool create)
{
    for (int i = 0; i < TCACHE_CLASSES; i++)
        if (tc.cls[i].size == size)
            return &tc.cls[i];
    if (!create)
        return NULL;
    for (int i = 0; i < TCACHE_CLASSES; i++) {
        if (tc.cls[i].count == 0) {
            tc.cls[i].size = size;
            return &tc.cls[i];
        }
    }
    return NULL;
}

/* Install the guard of a fresh slot. */
static int guard_slot(char *map, size_t guard)
{
    if (atomic_load_explicit(&guard_madvise, memory_order_relaxed)) {
        if (madvise(map, guard, MADV_GUARD_INSTALL) == 0)
            return 0;
        if (errno != EINVAL && errno != ENOSYS)
            return -ENOMEM;
        atomic_store_explicit(&guard_madvise, 0, memory_order_relaxed);
    }
    return mprotect(map, guard, PROT_NONE) == 0 ? 0 : -ENOMEM;
}

/* Carve a new chunked slot of `size` usable bytes (pool_lock held). */
static int carve(size_t size, size_t guard, size_t top, struct weft__co **out)
{
    struct carve *c = NULL;
    size_t slot = guard + top;
    for (int i = 0; i < CLASSES_MAX; i++) {
        /* The same size and the same slot: a chunk carved with another
         * guard (weft__co_stack_config changed it meanwhile) has slots of
         * another size, which this one's would overrun. */
        if (carving[i].size == size && carving[i].slot == slot) {
            c = &carving[i];
            break;
        }
        if (!c && carving[i].left == 0)
            c = &carving[i]; /* an exhausted chunk's entry can be reused */
    }
    if (!c)
        return -EAGAIN; /* too many sizes: give it its own mapping */
    if (c->size != size || c->slot != slot || c->left == 0) {
        size_t n = CHUNK_BYTES_MAX / slot;
        if (n > CHUNK_SLOTS)
            n = CHUNK_SLOTS;
        if (n < 1)
            n = 1;
        char *map = mmap(NULL, n * slot, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
        if (map == MAP_FAILED)
            return -ENOMEM;
        c->size = size;
        c->slot = slot;
        c->next = map;
        c->left = n;
    }
    char *map = c->next;
    if (guard_slot(map, guard) != 0)
        return -ENOMEM; /* the slot stays uncarved; the next try redoes it */
    c->next += slot;
    c->left--;
    struct weft__co *co = (struct weft__co *)(map + slot - RECORD_SPACE);
    co->map = map;
    co->map_size = slot;
    co->lo = map + guard;
    co->size = size;
    co->chunked = true;
    *out = co;
    return 0;
}

/* A stack with a mapping of its own. */
static int map_own(size_t size, size_t guard, size_t top, struct weft__co **out)
{
    size_t len = guard + top;
    /* Map everything PROT_NONE, then open the stack: a failure between the
     * two leaves nothing half-usable behind. */
    char *map = mmap(NULL, len, PROT_NONE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (map == MAP_FAILED)
        return -ENOMEM;
    if (mprotect(map + guard, top, PROT_READ | PROT_WRITE) != 0) {
        munmap(map, len);
        return -ENOMEM;
    }
    struct weft__co *co = (struct weft__co *)(map + len - RECORD_SPACE);
    co->map = map;
    co->map_size = len;
    co->lo = map + guard;
    co->size = size;
    co->chunked = false;
    *out = co;
    return 0;
}

/* The slow path of a get: the global pool (a batch into the thread cache
 * when caching), else a new stack. */
static WEFT_NOINLINE int get_slow(size_t size, bool auto_pool, struct weft__co **out)
{
    size_t page = weft__page_size();
    size_t top = size + RECORD_SPACE;
    bool chunk = size <= WEFT__CO_CHUNK_STACK_MAX;
    struct weft__co *co = NULL;
    struct stat_block *b = stats();
    weft__mutex_lock_nc(&pool_lock);
    if (chunk) {
        struct freelist *g = gl_class(size, false);
        if (g && g->head) {
            co = g->head;
            g->head = co->pool_next;
            g->count--;
            pool_count--;
            struct freelist *t = auto_pool ? tc_class(size, true) : NULL;
            /* Take up to half a cache more, so the next gets are local. */
            for (size_t k = 0; t && g->head && k < TCACHE_MAX / 2; k++) {
                struct weft__co *x = g->head;
                g->head = x->pool_next;
                g->count--;
                pool_count--;
                x->pool_next = t->head;
                t->head = x;
                t->count++;
            }
        }
    } else {
        for (struct weft__co **p = &big_head; *p; p = &(*p)->pool_next) {
            if ((*p)->size == size) {
                co = *p;
                *p = co->pool_next;
                pool_count--;
                break;
            }
        }
    }
    if (co) {
        weft_mutex_unlock(&pool_lock);
        st_add(b, S_POOLED, (uint64_t)-1);
        st_add(b, S_REUSED, 1);
        st_add(b, S_IN_USE, 1);
        *out = co;
        return 0;
    }
    size_t guard = round_up(atomic_load_explicit(&cfg_guard, memory_order_relaxed), page);
    int rc = -EAGAIN;
    if (chunk)
        rc = carve(size, guard, top, &co);
    weft_mutex_unlock(&pool_lock);
    if (rc == -EAGAIN)
        rc = map_own(size, guard, top, &co);
    if (rc)
        return rc;
    st_add(b, S_MAPPED, 1);
    st_add(b, S_CREATED, 1);
    st_add(b, S_IN_USE, 1);
    *out = co;
    return 0;
}

int weft__co_stack_get(size_t size, struct weft__co **out)
{
    if (size == 0)
        size = atomic_load_explicit(&cfg_default, memory_order_relaxed);
    if (size > WEFT__CO_STACK_MAX)
        return -EINVAL;
    if (size < WEFT__CO_STACK_MIN)
        size = WEFT__CO_STACK_MIN;
    /* Usable bytes: whole pages minus the record, at least what was asked. */
    size_t top = round_up(size + RECORD_SPACE, weft__page_size());
    size = top - RECORD_SPACE;
    bool auto_pool = atomic_load_explicit(&cfg_pool_max, memory_order_relaxed) == POOL_AUTO;
    if (auto_pool) {
        struct freelist *t = tc_class(size, false);
        if (t && t->head) {
            struct weft__co *co = t->head;
            t->head = co->pool_next;
            t->count--;
            struct stat_block *b = stats();
            st_add(b, S_POOLED, (uint64_t)-1);
            st_add(b, S_REUSED, 1);
            st_add(b, S_IN_USE, 1);
            *out = co;
            return 0;
        }
    }
    return get_slow(size, auto_pool, out);
}

/* A stack that did not fit in the thread's cache (t, full) or is not
 * cached at all (t NULL). */
static WEFT_NOINLINE void put_slow(struct weft__co *co, struct freelist *t)
{
    size_t max = atomic_load_explicit(&cfg_pool_max, memory_order_relaxed);
    struct weft__co *rest = NULL; /* pooled stacks with no class: unmapped */
    bool pooled = true;
    weft__mutex_lock_nc(&pool_lock);
    if (t) {
        /* The thread's cache is full: half of it goes to the pool. */
        struct weft__co *list = NULL;
        size_t n = 0;
        while (t->count > TCACHE_MAX / 2) {
            struct weft__co *x = t->head;
            t->head = x->pool_next;
            t->count--;
            x->pool_next = list;
            list = x;
            n++;
        }
        gl_push_list(t->size, list, n, &rest);
        co->pool_next = t->head;
        t->head = co;
        t->count++;
    } else {
        struct freelist *g = co->chunked ? gl_class(co->size, true) : NULL;
        if (pool_closed || pool_count >= max || (co->chunked && !g)) {
            pooled = false;
        } else if (g) {
            co->pool_next = g->head;
            g->head = co;
            g->count++;
            pool_count++;
        } else {
            co->pool_next = big_head;
            big_head = co;
            pool_count++;
        }
    }
    if (!atexit_done)
        atexit_done = atexit(drain_at_exit) == 0;
    weft_mutex_unlock(&pool_lock);
    struct stat_block *b = stats();
    if (pooled) {
        /* Counted after the unlock: a concurrent trim may briefly see the
         * counter below the list's length (statistics only). */
        st_add(b, S_POOLED, 1);
        st_add(b, S_RETURNED, 1);
    } else {
        unmap(co);
    }
    unmap_list(rest);
}

void weft__co_stack_put(struct weft__co *co)
{
    struct stat_block *b = stats();
    st_add(b, S_IN_USE, (uint64_t)-1);
#if WEFT_CO_ASAN
    /* Frames abandoned on this stack (a coroutine freed while suspended)
     * leave their redzones poisoned; the next owner must start clean. */
    __asan_unpoison_memory_region(co->lo, co->size);
#endif
    if (co->chunked && tc.registered &&
        atomic_load_explicit(&cfg_pool_max, memory_order_relaxed) == POOL_AUTO) {
        struct freelist *t = tc_class(co->size, true);
        if (t && t->count < TCACHE_MAX) {
            co->pool_next = t->head;
            t->head = co;
            t->count++;
            st_add(b, S_POOLED, 1);
            st_add(b, S_RETURNED, 1);
            return;
        }
        if (t) {
            put_slow(co, t);
            return;
        }
    }
    put_slow(co, NULL);
}
