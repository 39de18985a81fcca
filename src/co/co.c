/*
 * co.c - coroutine records and the switch between them.
 *
 * weft__co_switch is the whole hot path: record who resumes whom, tell the
 * sanitizers (in sanitizer builds only), check the FP control rule (in debug
 * builds only), and call the assembly switch. In a release build without
 * sanitizers it is a handful of stores around weft__ctx_switch.
 *
 * Sanitizer protocol, per switch from A to B:
 *   ASan: A calls __sanitizer_start_switch_fiber(&A->asan_fake, B's stack
 *         bottom and size) just before the switch; B, on landing, calls
 *         __sanitizer_finish_switch_fiber(B->asan_fake, &A's bottom, &A's
 *         size), which both restores B's fake stack and tells us where A's
 *         stack is (that is how a thread context's stack bounds are learnt).
 *         A coroutine leaving for good passes NULL instead of &A->asan_fake,
 *         so ASan frees its fake stack; a fresh coroutine lands with a NULL
 *         fake stack.
 *   TSan: every context has a fiber (__tsan_create_fiber at creation,
 *         __tsan_get_current_fiber for a thread), A calls
 *         __tsan_switch_to_fiber(B's fiber, 0) immediately before the switch
 *         (flag 0: the switch orders A's accesses before B's), and the fiber
 *         of a coroutine is destroyed when it is freed, from another context.
 *
 * Thread-local state is read through weft__co_self(), a non-inlined function
 * with a compiler barrier, and never cached across a switch: after a switch
 * the code may be running on another thread (AArch64 compilers otherwise
 * reuse a tpidr_el0 read across calls).
 */
#include "internal.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../arch/arch.h"
#include "../platform/platform.h"

#if WEFT_CO_ASAN
#include <sanitizer/common_interface_defs.h>
#endif
#if WEFT_CO_TSAN
/* Declared here: older <sanitizer/tsan_interface.h> (gcc 12) lack them. */
void *__tsan_get_current_fiber(void);
void *__tsan_create_fiber(unsigned flags);
void __tsan_destroy_fiber(void *fiber);
void __tsan_switch_to_fiber(void *fiber, unsigned flags);
void __tsan_set_fiber_name(void *fiber, const char *name);
#endif

static _Atomic uint64_t next_id = 1;

/* The thread context of each thread: its own stack, as a record to switch
 * from and back to. */
static __thread struct weft__co thread_ctx;

static void copy_name(char *dst, const char *name, uint64_t id)
{
    if (name) {
        size_t n = strnlen(name, WEFT__CO_NAME_MAX - 1);
        memcpy(dst, name, n);
        dst[n] = '\0';
    } else {
        snprintf(dst, WEFT__CO_NAME_MAX, "co#%llu", (unsigned long long)id);
    }
}

#if WEFT_CO_FPCHECK
/* Report a broken rule about the FP control state and stop. */
static _Noreturn WEFT_NOINLINE void fp_violation(const struct weft__co *co, uint64_t was,
                                                 uint64_t now)
{
    fprintf(stderr,
            "weft: coroutine '%s' switched with a changed FP control state "
            "(0x%llx, resumed with 0x%llx): restore the rounding mode / FTZ / "
            "exception masks before yielding (docs/coroutines-internals.md)\n",
            co->name, (unsigned long long)now, (unsigned long long)was);
    abort();
}
#endif

static _Noreturn WEFT_NOINLINE void die(const char *what, const struct weft__co *co)
{
    fprintf(stderr, "weft: %s (coroutine '%s')\n", what, co ? co->name : "?");
    abort();
}

/* Everything done right after landing in `self`, whether on a resumed
 * context or at a fresh coroutine's first instruction. `self->switched_from`
 * is the context that switched here (set by it before switching). */
static inline void landed(struct weft__co *self)
{
#if WEFT_CO_ASAN
    struct weft__co *prev = self->switched_from;
    __sanitizer_finish_switch_fiber(self->asan_fake, &prev->asan_bottom, &prev->asan_size);
#endif
#if WEFT_CO_FPCHECK
    self->fpctl = weft__fpctl_read();
#endif
    (void)self;
}

/* The switch proper. `leaving` is true when from is done and never comes
 * back (ASan then frees its fake stack). */
static inline void *switch_impl(struct weft__co *from, struct weft__co *to, void *val,
                                bool leaving)
{
#if WEFT_CO_FPCHECK
    if (!from->is_thread) {
        uint64_t now = weft__fpctl_read();
        if (WEFT_UNLIKELY(now != from->fpctl))
            fp_violation(from, from->fpctl, now);
    }
#endif
    to->switched_from = from;
    to->state = WEFT__CO_RUNNING;
    if (!leaving) {
        to->resumer = from;
        from->state = WEFT__CO_SUSPENDED;
    }
    weft__co_current_tls = to;
#if WEFT_CO_ASAN
    __sanitizer_start_switch_fiber(leaving ? NULL : &from->asan_fake, to->asan_bottom,
                                   to->asan_size);
#endif
#if WEFT_CO_TSAN
    __tsan_switch_to_fiber(to->tsan_fiber, 0);
#endif
    void *got = weft__ctx_switch(&from->sp, to->sp, val);
    landed(from);
    return got;
}

static _Noreturn void finish(struct weft__co *self, void *result)
{
    struct weft__co *to = self->exit_to ? self->exit_to : self->resumer;
    if (!to || to == self || to->state != WEFT__CO_SUSPENDED)
        die("a finished coroutine has no suspended context to return to", self);
    self->result = result;
    self->state = WEFT__CO_DONE;
    switch_impl(self, to, result, true);
    die("a finished coroutine was resumed", self);
}

/* First code of every coroutine, called by weft__ctx_trampoline. */
static void co_entry(void *first, void *arg)
{
    struct weft__co *self = arg;
    landed(self);
    finish(self, self->fn(self->arg, first));
}

static struct weft__co *thread_init(void)
{
    struct weft__co *t = &thread_ctx;
    if (weft__co_guard_thread_init() != 0)
        return NULL;
    memset(t, 0, sizeof *t);
    t->is_thread = true;
    t->state = WEFT__CO_RUNNING;
    t->id = atomic_fetch_add_explicit(&next_id, 1, memory_order_relaxed);
    strcpy(t->name, "thread");
#if WEFT_CO_TSAN
    t->tsan_fiber = __tsan_get_current_fiber();
#endif
#if WEFT_CO_FPCHECK
    t->fpctl = weft__fpctl_read();
#endif
    weft__co_current_tls = t;
    return t;
}

WEFT_NOINLINE struct weft__co *weft__co_self(void)
{
    /* The barrier keeps the compiler from treating this function as const
     * and reusing a value computed on another thread. */
    __asm__ __volatile__("" ::: "memory");
    struct weft__co *c = weft__co_current_tls;
    return c ? c : thread_init();
}

int weft__co_create(struct weft__co **out, weft__co_fn fn, void *arg, const char *name,
                    size_t stack_size)
{
    if (!out || !fn || stack_size > WEFT__CO_STACK_MAX)
        return -EINVAL;
    struct weft__co *co;
    int rc = weft__co_stack_get(stack_size, &co);
    if (rc)
        return rc;
    /* Keep the stack's own fields (map, map_size, lo, size, chunked);
     * set every other field (no memset: this is on the spawn path). */
    co->sp = NULL;
    co->resumer = co->switched_from = co->exit_to = NULL;
    co->result = co->user = NULL;
    co->is_thread = false;
    co->pool_next = NULL;
    co->fpctl = 0;
    co->asan_fake = NULL;
    co->tsan_fiber = NULL;
    char *lo = co->lo;
    size_t size = co->size;
    co->fn = fn;
    co->arg = arg;
    co->state = WEFT__CO_CREATED;
    /* The id only names an unnamed coroutine: skip the atomic otherwise. */
    co->id = name ? 0 : atomic_fetch_add_explicit(&next_id, 1, memory_order_relaxed);
    copy_name(co->name, name, co->id);
    /* Frames go below the record (stack.c put it at the top). */
    co->sp = weft__ctx_make(lo, co, co_entry, co);
    co->asan_bottom = lo;
    co->asan_size = size;
#if WEFT_CO_TSAN
    co->tsan_fiber = __tsan_create_fiber(0);
    __tsan_set_fiber_name(co->tsan_fiber, co->name);
#endif
    *out = co;
    return 0;
}

int weft__co_free(struct weft__co *co)
{
    if (!co || co->is_thread || co->state == WEFT__CO_FREED)
        return -EINVAL;
    if (co->state == WEFT__CO_RUNNING)
        return -EBUSY;
#if WEFT_CO_TSAN
    __tsan_destroy_fiber(co->tsan_fiber);
#endif
    co->state = WEFT__CO_FREED;
    weft__co_stack_put(co);
    return 0;
}

void *weft__co_switch(struct weft__co *from, struct weft__co *to, void *val)
{
    return switch_impl(from, to, val, false);
}

int weft__co_transfer(struct weft__co *to, void *val, void **got)
{
    if (!to)
        return -EINVAL;
    struct weft__co *self = weft__co_self();
    if (!self)
        return -ENOMEM;
    if (to == self)
        return -EDEADLK;
    if (to->state == WEFT__CO_RUNNING)
        return -EBUSY;
    if (to->state == WEFT__CO_DONE || to->state == WEFT__CO_FREED)
        return -ESRCH;
    void *r = switch_impl(self, to, val, false);
    if (got)
        *got = r;
    return 0;
}

_Noreturn void weft__co_exit(void *result)
{
    struct weft__co *self = weft__co_self();
    if (!self || self->is_thread)
        die("weft__co_exit called outside a coroutine", self);
    finish(self, result);
}

void weft__co_set_exit_to(struct weft__co *co, struct weft__co *exit_to)
{
    if (co)
        co->exit_to = exit_to;
}
