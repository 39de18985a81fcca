/*
 * co/internal.h - coroutine contexts: the lowest layer of weft's asyncio.
 *
 * Internal to libweft; no public header yet. The event loop (a later layer)
 * builds tasks, futures and scheduling on what is here:
 *
 *   - a context record (struct weft__co) for each coroutine, created with an
 *     entry function and an argument on its own mmap'd stack;
 *   - one more record per thread for the thread's own stack (the "thread
 *     context"), created on first use, which is where a thread starts and
 *     where coroutines return to when they finish unless told otherwise;
 *   - symmetric switching: any context may switch to any suspended one on the
 *     same thread, passing a pointer each way;
 *   - stacks: a guard region below each stack, pages committed on first
 *     touch, a bounded pool of stacks for reuse, a stack overflow stopped
 *     with "weft: stack overflow in coroutine 'NAME'";
 *   - ASan and TSan fiber annotations on every switch (sanitizer builds).
 *
 * Threads. A context runs on one thread at a time. Switching happens only
 * between contexts of the calling thread: the caller is always the current
 * context, the target a created or suspended one. A suspended coroutine may
 * be resumed from another thread if the two threads synchronise (the switch
 * itself is thread-agnostic, and this layer rereads its thread-local state
 * after every switch), but weft's loop does not migrate coroutines.
 *
 * FP control state (rounding mode, FTZ/DAZ, exception masks; MXCSR and the
 * x87 control word, FPCR) belongs to the thread and is never saved by a
 * switch. Code may change it between two switches and must restore it
 * before the next one, as the ABI obliges a function to before it returns.
 * A new coroutine starts with the state of the thread that first runs it.
 * Builds without NDEBUG check this at every switch out of a coroutine and
 * abort with "weft: coroutine 'NAME' switched with a changed FP control
 * state" (WEFT_CO_FPCHECK). See src/arch/<arch>/switch.S.
 */
#ifndef WEFT_CO_INTERNAL_H
#define WEFT_CO_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Debug builds check the FP control rule at every switch. */
#ifndef WEFT_CO_FPCHECK
#ifdef NDEBUG
#define WEFT_CO_FPCHECK 0
#else
#define WEFT_CO_FPCHECK 1
#endif
#endif

/* Which sanitizer annotations are compiled in. */
#if defined(WEFT_SANITIZE_ADDRESS) || defined(__SANITIZE_ADDRESS__)
#define WEFT_CO_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WEFT_CO_ASAN 1
#endif
#endif
#ifndef WEFT_CO_ASAN
#define WEFT_CO_ASAN 0
#endif
#if defined(WEFT_SANITIZE_THREAD) || defined(__SANITIZE_THREAD__)
#define WEFT_CO_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define WEFT_CO_TSAN 1
#endif
#endif
#ifndef WEFT_CO_TSAN
#define WEFT_CO_TSAN 0
#endif

/* Stack sizes. The usable size is what the coroutine's frames may use; the
 * guard and the record (at the top of the mapping) come on top of it. */
#define WEFT__CO_STACK_DEFAULT (256u * 1024u)
#define WEFT__CO_STACK_MIN (16u * 1024u)
#define WEFT__CO_STACK_MAX ((size_t)1 << 30)
#define WEFT__CO_GUARD_DEFAULT (64u * 1024u)
/* pool_max for weft__co_stack_config: adaptive (keep every freed stack,
 * thread caches on). The default. */
#define WEFT__CO_POOL_AUTO ((size_t)-2)
#define WEFT__CO_POOL_DEFAULT WEFT__CO_POOL_AUTO
/* Stacks up to this usable size are carved from shared chunks (stack.c). */
#define WEFT__CO_CHUNK_STACK_MAX ((size_t)512 * 1024)

#define WEFT__CO_NAME_MAX 48

/* The entry of a coroutine: arg as given at creation, first the value passed
 * by the first switch into it. What it returns is the coroutine's result and
 * is passed as the transfer value of its final switch. */
typedef void *(*weft__co_fn)(void *arg, void *first);

enum weft__co_state {
    WEFT__CO_CREATED = 0, /* made, never run */
    WEFT__CO_RUNNING,     /* the current context of some thread */
    WEFT__CO_SUSPENDED,   /* switched away from; may be resumed */
    WEFT__CO_DONE,        /* its entry returned (or it called weft__co_exit) */
    WEFT__CO_FREED,       /* given back (a record in the pool, or unmapped) */
};

/*
 * A context. For a coroutine the record lives at the top of its own stack
 * slot (carved from a shared chunk, or mapped alone; nothing malloc'd), so
 * freeing the coroutine returns record and stack together. Fields are read by the loop
 * but written only through the functions below.
 */
struct weft__co {
    void *sp;                   /* saved stack pointer while not running */
    struct weft__co *resumer;   /* the context that last switched to this one and
                                 * is waiting to be switched back to (a coroutine
                                 * ending into this one does not count) */
    struct weft__co *switched_from; /* the context of the latest switch here (ASan) */
    struct weft__co *exit_to;   /* where to go when done; NULL: resumer */
    weft__co_fn fn;             /* entry function */
    void *arg;                  /* its argument */
    void *result;               /* what fn returned (valid once DONE) */
    void *user;                 /* free for the layer above (the loop's task) */
    int state;                  /* enum weft__co_state */
    bool is_thread;             /* a thread context (no stack of ours) */
    char *map;                  /* the mapping: guard at map, record at its top */
    size_t map_size;            /* bytes mapped */
    char *lo;                   /* lowest usable stack byte (just above the guard) */
    size_t size;                /* usable stack bytes, [lo, lo + size) */
    struct weft__co *pool_next; /* link while the stack sits in the pool */
    bool chunked;               /* the slot belongs to a chunk (stack.c) */
    uint64_t id;                /* unique per process, for default names (0 if named) */
    uint64_t fpctl;             /* FP control state when last resumed (checked if WEFT_CO_FPCHECK) */
    void *asan_fake;            /* ASan fake-stack save slot while suspended */
    const void *asan_bottom;    /* ASan: this context's stack bottom and size */
    size_t asan_size;
    void *tsan_fiber;           /* TSan fiber of this context */
    char name[WEFT__CO_NAME_MAX]; /* NUL-terminated; shown in overflow reports */
};

/*
 * Create a coroutine that will run fn(arg, first) on a stack of at least
 * stack_size usable bytes (0: the configured default; rounded up to whole
 * pages and to at least WEFT__CO_STACK_MIN). name (may be NULL: "co#ID") is
 * copied, truncated to WEFT__CO_NAME_MAX - 1 bytes. The coroutine does not
 * run until something switches to it. Any thread may create; the stack comes
 * from the pool when one of the same size is free.
 * Returns 0 and *out, or -EINVAL (out or fn NULL, stack_size above
 * WEFT__CO_STACK_MAX), -ENOMEM (no memory or no mapping left: without
 * MADV_GUARD_INSTALL each stack takes two mappings and vm.max_map_count
 * bounds them).
 */
int weft__co_create(struct weft__co **out, weft__co_fn fn, void *arg, const char *name,
                    size_t stack_size);

/*
 * Free a coroutine that is not running: created-never-run, suspended or
 * done. Its stack goes back to the pool (or is unmapped when the pool is
 * full) and must not be used again. Freeing a suspended coroutine abandons
 * its stack without running anything on it (no cleanup of what its frames
 * held). Returns 0, -EINVAL (NULL, a thread context, or a record already
 * freed and not reused since: a best-effort double-free check; a record
 * freed and then reused by another creation cannot be told apart, so a
 * double free is a bug as with free()), -EBUSY (running).
 */
int weft__co_free(struct weft__co *co);

/* The calling thread's current context: a coroutine, or the thread context
 * (created on first call: that also installs the overflow handler and an
 * alternate signal stack for the thread). NULL only if the thread context
 * cannot be set up for lack of memory. */
struct weft__co *weft__co_self(void);

/*
 * Switch from the current context to `to`, handing it `val` (the return of
 * its pending weft__co_transfer, or `first` for a fresh coroutine). Returns
 * 0 once something switches back, with that switch's value in *got (got
 * may be NULL). Errors, with nothing switched: -EINVAL (to NULL), -EDEADLK
 * (to is the current context), -EBUSY (to is running on another thread),
 * -ESRCH (to is done), -ENOMEM (no thread context).
 */
int weft__co_transfer(struct weft__co *to, void *val, void **got);

/* The same without checks, for a caller (the loop) that knows from is the
 * current context and to is created or suspended. Returns the value of the
 * switch that resumes from. */
void *weft__co_switch(struct weft__co *from, struct weft__co *to, void *val);

/*
 * End the current coroutine as if its entry had returned result: it becomes
 * done and switches for good to its exit_to context, or to its resumer. Does
 * not return. Calling it on a thread context aborts with a message.
 */
_Noreturn void weft__co_exit(void *result);

/* Where the coroutine goes when it ends (NULL: the context that last
 * resumed it). That context must be suspended at the time. */
void weft__co_set_exit_to(struct weft__co *co, struct weft__co *exit_to);

/* ---- stacks ------------------------------------------------------------ */

/* Configure stacks for coroutines created from now on: the default usable
 * size (0 keeps the current), the pool (SIZE_MAX keeps the current;
 * WEFT__CO_POOL_AUTO, the default: keep every freed stack, with per-thread
 * caches; any other value: no thread caches and at most that many pooled
 * stacks, the rest unmapped when freed; 0 disables pooling; setting a bound
 * empties the pool and the calling thread's cache), and the guard size (0
 * keeps the current; rounded up to pages). Returns 0 or -EINVAL (a size
 * above WEFT__CO_STACK_MAX or a guard above 64 MiB). Any thread. */
int weft__co_stack_config(size_t default_size, size_t pool_max, size_t guard_size);

struct weft__co_stack_stats {
    uint64_t mapped;   /* stacks currently mmap'd (in use + pooled) */
    uint64_t in_use;   /* stacks owned by a coroutine record */
    uint64_t pooled;   /* stacks waiting in the pool or a thread's cache */
    uint64_t created;  /* stacks ever mmap'd */
    uint64_t reused;   /* creations served from the pool */
    uint64_t returned; /* stacks given back to the pool (not unmapped) */
    uint64_t unmapped; /* stacks ever munmap'd */
};
/* A snapshot of the stack counters (each read atomically; together only
 * consistent when no other thread creates or frees). */
void weft__co_stack_stats(struct weft__co_stack_stats *out);

/* Unmap every stack in the pool and in the calling thread's cache now
 * (other threads' caches reach the pool when those threads exit). Returns
 * how many were unmapped. Runs by itself at exit. */
size_t weft__co_stack_pool_trim(void);

/* Internal to src/co: a stack with its record at the top, and back. */
int weft__co_stack_get(size_t size, struct weft__co **out);
void weft__co_stack_put(struct weft__co *co);

/* Internal to src/co: install (once per process) the SIGSEGV handler and
 * (once per thread) an alternate signal stack, so that overflowing into a
 * guard page reports the coroutine's name. Returns 0 or -ENOMEM. */
int weft__co_guard_thread_init(void);
/* The current context as the overflow handler sees it (initial-exec TLS,
 * safe to read in a signal handler). */
extern __thread struct weft__co *weft__co_current_tls __attribute__((tls_model("initial-exec")));

#endif /* WEFT_CO_INTERNAL_H */
