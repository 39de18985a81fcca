/*
 * tls.c - weft_tls_key_t (threading.local): per-thread values under keys,
 * with destructors at thread exit.
 *
 * Why weft keeps its own key table instead of wrapping pthread keys:
 *
 *  - Keys are tagged with a generation. A pthread_key_t is a small integer
 *    that is reused as soon as it is deleted, so a stale copy of a deleted
 *    key silently names somebody else's new key, and key 0 is valid (a
 *    zeroed weft_tls_key_t would alias it). Here a key's id carries the
 *    slot's generation: a stale, deleted or zeroed key is refused with
 *    -EINVAL (set, delete) or reads as NULL (get), as the header promises.
 *  - Capacity. PTHREAD_KEYS_MAX is 1024 for the whole process, shared with
 *    every other library; Python programs create threading.local objects
 *    freely. weft offers 16383 keys of its own and uses one pthread key.
 *  - Cost. get is a thread-local load, an array index and one load of a
 *    read-mostly shared word; delete is one compare-and-swap and touches no
 *    other thread.
 *
 * The one pthread key (`exit_key`) exists only for its destructor, which is
 * how weft learns that a thread is exiting; any thread that ever set a
 * value, weft-started or not, gets its weft destructors run then.
 *
 * A slot's state word is a generation counter (modulo 2^TAG_BITS): odd when
 * the slot holds a live key, even when free. Creating a key advances an even
 * state to odd; deleting advances it to the next even value. A key's id is
 * (state << IDX_BITS) | index, so a live key's id is never 0. A thread's
 * values live in a private array indexed by slot, each entry remembering
 * the id it was set under; an entry counts only while its id's generation
 * is the slot's current one. After 2^(TAG_BITS-1) create/delete cycles of
 * one slot a stale key could match again; that is the price of 32-bit keys.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <weft/thread.h>

#include "../park/park.h"

#define IDX_BITS 14
#define MAX_KEYS (1u << IDX_BITS)
#define IDX_MASK (MAX_KEYS - 1)
#define TAG_BITS (32 - IDX_BITS)
#define TAG_MASK ((1u << TAG_BITS) - 1)
/* Destructor passes at thread exit, as PTHREAD_DESTRUCTOR_ITERATIONS. */
#define DTOR_PASSES 4

typedef void (*dtor_fn)(void *);

struct slot {
    _Atomic uint32_t state;  /* generation: odd = live key, even = free */
    _Atomic(dtor_fn) dtor;   /* the live key's destructor, or NULL */
};

static struct slot slots[MAX_KEYS];

struct entry {
    void *value;  /* this thread's value */
    uint32_t id;  /* the key id it was set under; 0 = never set */
};

struct block {
    uint32_t cap;        /* entries */
    struct entry e[];
};

/* The calling thread's values; NULL until its first set. */
static _Thread_local struct block *tls_block;
/* Whether exit_key holds a non-NULL value for this thread, so that its
 * destructor runs at exit. */
static _Thread_local bool tls_registered;

static pthread_key_t exit_key;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;
static int exit_key_err;

static void on_thread_exit(void *unused);

static void exit_key_init(void)
{
    exit_key_err = pthread_key_create(&exit_key, on_thread_exit);
}

static inline uint32_t id_index(uint32_t id) { return id & IDX_MASK; }
static inline uint32_t id_tag(uint32_t id) { return id >> IDX_BITS; }

/* True if id names a live key. relaxed: a key's id reaches other threads
 * through the program's own synchronisation, which orders its creation. */
static bool id_live(uint32_t id)
{
    uint32_t tag = id_tag(id);
    return (tag & 1u) &&
           atomic_load_explicit(&slots[id_index(id)].state, memory_order_relaxed) == tag;
}

int weft_tls_create(weft_tls_key_t *key, void (*destructor)(void *value))
{
    if (!key)
        return -EINVAL;
    pthread_once(&exit_once, exit_key_init);
    if (exit_key_err)
        return -EAGAIN;
    for (uint32_t i = 0; i < MAX_KEYS; i++) {
        struct slot *sl = &slots[i];
        uint32_t s = atomic_load_explicit(&sl->state, memory_order_relaxed);
        if (s & 1u)
            continue;
        uint32_t live = (s + 1) & TAG_MASK;
        if (!atomic_compare_exchange_strong_explicit(&sl->state, &s, live, memory_order_relaxed,
                                                     memory_order_relaxed))
            continue;
        /* The seqlock writer side for on_thread_exit's reader: the state
         * change is ordered before the new destructor is visible. */
        atomic_thread_fence(memory_order_release);
        atomic_store_explicit(&sl->dtor, destructor, memory_order_relaxed);
        key->id = (live << IDX_BITS) | i;
        return 0;
    }
    return -EAGAIN;
}

int weft_tls_delete(weft_tls_key_t *key)
{
    if (!key)
        return -EINVAL;
    uint32_t tag = id_tag(key->id);
    if (!(tag & 1u))
        return -EINVAL;
    struct slot *sl = &slots[id_index(key->id)];
    /* Values set under the key are not destroyed (as pthread_key_delete):
     * advancing the generation makes every thread's entry for it stale. */
    if (!atomic_compare_exchange_strong_explicit(&sl->state, &tag, (tag + 1) & TAG_MASK,
                                                 memory_order_relaxed, memory_order_relaxed))
        return -EINVAL;
    return 0;
}

/* Grow the calling thread's block to hold index idx. 0 or -ENOMEM. */
static int grow(uint32_t idx)
{
    struct block *b = tls_block;
    uint32_t old = b ? b->cap : 0;
    uint32_t cap = old ? old : 8;
    while (cap <= idx)
        cap *= 2;
    if (cap > MAX_KEYS)
        cap = MAX_KEYS;
    struct block *nb = realloc(b, sizeof *nb + (size_t)cap * sizeof nb->e[0]);
    if (!nb)
        return -ENOMEM;
    memset(&nb->e[old], 0, (size_t)(cap - old) * sizeof nb->e[0]);
    nb->cap = cap;
    tls_block = nb;
    if (!tls_registered) {
        /* Any non-NULL value makes the destructor run; the block itself is
         * found through tls_block, which stays right across realloc. */
        if (pthread_setspecific(exit_key, &tls_registered) != 0)
            return -ENOMEM; /* the block is kept; a later set retries */
        tls_registered = true;
    }
    return 0;
}

int weft_tls_set(weft_tls_key_t *key, void *value)
{
    if (!key || !id_live(key->id))
        return -EINVAL;
    uint32_t idx = id_index(key->id);
    struct block *b = tls_block;
    if (!b || idx >= b->cap || !tls_registered) {
        int r = grow(idx);
        if (r)
            return r;
        b = tls_block;
    }
    b->e[idx].value = value;
    b->e[idx].id = key->id;
    return 0;
}

void *weft_tls_get(weft_tls_key_t *key)
{
    if (!key)
        return NULL;
    uint32_t id = key->id;
    uint32_t idx = id_index(id);
    struct block *b = tls_block;
    if (!b || idx >= b->cap || b->e[idx].id != id || !id_live(id))
        return NULL;
    return b->e[idx].value;
}

/*
 * The destructor of exit_key: run each live key's destructor on this
 * thread's non-NULL values, in passes as POSIX does, since a destructor may
 * set values again. Each value is cleared before its destructor is called,
 * so it is destroyed exactly once. Values left after the last pass are
 * dropped.
 */
static void on_thread_exit(void *unused)
{
    (void)unused;
    tls_registered = false;
    for (int pass = 0; pass < DTOR_PASSES; pass++) {
        bool ran = false;
        /* A destructor may call weft_tls_set and move the block: re-read
         * tls_block and its size on every step. */
        for (uint32_t i = 0; tls_block && i < tls_block->cap; i++) {
            struct entry *e = &tls_block->e[i];
            void *v = e->value;
            if (!v)
                continue;
            uint32_t id = e->id;
            e->value = NULL;
            /* Seqlock reader: the destructor belongs to the key named by id
             * only if the slot's generation is the same before and after
             * reading it (a concurrent delete and re-create changes it). */
            struct slot *sl = &slots[id_index(id)];
            uint32_t tag = id_tag(id);
            if (!(tag & 1u) || atomic_load_explicit(&sl->state, memory_order_acquire) != tag)
                continue; /* deleted key: no destructor, as documented */
            dtor_fn d = atomic_load_explicit(&sl->dtor, memory_order_relaxed);
            /* Orders the dtor load before the second state load. */
            atomic_thread_fence(memory_order_acquire);
            if (atomic_load_explicit(&sl->state, memory_order_relaxed) != tag || !d)
                continue;
            d(v);
            ran = true;
        }
        if (!ran)
            break;
    }
    free(tls_block);
    tls_block = NULL;
}
