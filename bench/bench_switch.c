/*
 * bench_switch.c - the raw context switch, against ucontext and boost.context.
 *
 * switch: two contexts hand control back and forth `iters` times; ns_per_op
 *   is one round trip (two switches: there and back). Target: at most 10 ns
 *   for weft.
 *     weft           weft__co_switch between the thread and a coroutine: the
 *                    switch the event loop will use (records who resumes
 *                    whom, plus sanitizer/FP checks when compiled in: none in
 *                    a Release build)
 *     weft_raw       weft__ctx_switch alone: the assembly, nothing else
 *     ucontext       glibc swapcontext: saves the signal mask with a
 *                    rt_sigprocmask system call per switch
 *     boost_context  boost.context's jump_fcontext (loaded with dlopen from
 *                    libboost_context.so when installed; skipped otherwise):
 *                    it also stores and reloads MXCSR and the x87 control
 *                    word on every switch, which weft does not (see
 *                    docs/coroutines-internals.md)
 *
 * co_lifecycle: create a coroutine (stack from the pool), switch into it,
 *   let it return, free it; ns_per_op is one whole life. What spawning costs
 *   before any scheduling.
 *
 * Sizes: --iters (default 10M round trips), --lives (1M).
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <ucontext.h>

#include "arch/arch.h"
#include "bench.h"
#include "co/internal.h"

/* ---- weft: through the coroutine layer --------------------------------- */

struct loop_arg {
    long long iters;
};

static void *bounce_fn(void *arg, void *first)
{
    (void)first;
    struct loop_arg *a = arg;
    struct weft__co *self = weft__co_self();
    struct weft__co *back = self->resumer;
    for (long long i = 0; i < a->iters; i++)
        weft__co_switch(self, back, NULL);
    return NULL;
}

static double weft_switch(void *arg)
{
    struct loop_arg *a = arg;
    struct weft__co *co, *self = weft__co_self();
    if (!self || weft__co_create(&co, bounce_fn, a, "bounce", 0) != 0)
        bench_die("weft__co_create", 0);
    weft__co_switch(self, co, NULL); /* start it: it is now at its first switch back */
    int64_t t0 = bench_now();
    for (long long i = 1; i < a->iters; i++)
        weft__co_switch(self, co, NULL);
    int64_t t1 = bench_now();
    weft__co_switch(self, co, NULL); /* its loop ends: it returns */
    if (co->state != WEFT__CO_DONE)
        bench_die("coroutine did not finish", co->state);
    weft__co_free(co);
    return (double)(t1 - t0) / (double)(a->iters - 1);
}

/* ---- weft_raw: the assembly alone -------------------------------------- */

static void *raw_main_sp, *raw_co_sp;

static void raw_entry(void *transfer, void *arg)
{
    (void)transfer;
    long long n = ((struct loop_arg *)arg)->iters;
    for (long long i = 0; i < n; i++)
        weft__ctx_switch(&raw_co_sp, raw_main_sp, NULL);
    weft__ctx_switch(&raw_co_sp, raw_main_sp, (void *)1); /* never resumed */
    abort();
}

static double weft_raw_switch(void *arg)
{
    struct loop_arg *a = arg;
    size_t size = 64 * 1024;
    char *stack = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (stack == MAP_FAILED)
        bench_die("mmap", 0);
    raw_co_sp = weft__ctx_make(stack, stack + size, raw_entry, a);
    int64_t t0 = bench_now();
    for (long long i = 0; i < a->iters; i++)
        weft__ctx_switch(&raw_main_sp, raw_co_sp, NULL);
    int64_t t1 = bench_now();
    if (weft__ctx_switch(&raw_main_sp, raw_co_sp, NULL) != (void *)1)
        bench_die("raw context lost count", 0);
    munmap(stack, size);
    return (double)(t1 - t0) / (double)a->iters;
}

/* ---- ucontext ----------------------------------------------------------- */

static ucontext_t uc_main, uc_co;

static void uc_entry(void)
{
    for (;;)
        swapcontext(&uc_co, &uc_main);
}

static double ucontext_switch(void *arg)
{
    struct loop_arg *a = arg;
    size_t size = 64 * 1024;
    char *stack = malloc(size);
    if (!stack || getcontext(&uc_co) != 0)
        bench_die("getcontext", 0);
    uc_co.uc_stack.ss_sp = stack;
    uc_co.uc_stack.ss_size = size;
    uc_co.uc_link = NULL;
    makecontext(&uc_co, uc_entry, 0);
    int64_t t0 = bench_now();
    for (long long i = 0; i < a->iters; i++)
        swapcontext(&uc_main, &uc_co);
    int64_t t1 = bench_now();
    free(stack); /* uc_co is parked in its loop; never resumed again */
    return (double)(t1 - t0) / (double)a->iters;
}

/* ---- boost.context (fcontext), through dlopen ---------------------------- */

typedef void *fcontext_t;
typedef struct {
    fcontext_t fctx;
    void *data;
} transfer_t;
static transfer_t (*jump_fcontext_)(fcontext_t to, void *vp);
static fcontext_t (*make_fcontext_)(void *sp, size_t size, void (*fn)(transfer_t));

static bool boost_load(void)
{
    const char *names[] = {"libboost_context.so", "libboost_context.so.1.74.0",
                           "libboost_context.so.1.81.0", "libboost_context.so.1.83.0"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        void *h = dlopen(names[i], RTLD_NOW);
        if (!h)
            continue;
        *(void **)&jump_fcontext_ = dlsym(h, "jump_fcontext");
        *(void **)&make_fcontext_ = dlsym(h, "make_fcontext");
        if (jump_fcontext_ && make_fcontext_)
            return true;
    }
    return false;
}

static void boost_entry(transfer_t t)
{
    for (;;)
        t = jump_fcontext_(t.fctx, NULL);
}

static double boost_switch(void *arg)
{
    struct loop_arg *a = arg;
    size_t size = 64 * 1024;
    char *stack = malloc(size);
    if (!stack)
        bench_die("malloc", 0);
    fcontext_t co = make_fcontext_(stack + size, size, boost_entry);
    int64_t t0 = bench_now();
    for (long long i = 0; i < a->iters; i++)
        co = jump_fcontext_(co, NULL).fctx;
    int64_t t1 = bench_now();
    free(stack);
    return (double)(t1 - t0) / (double)a->iters;
}

/* ---- a coroutine's whole life ------------------------------------------- */

static void *life_fn(void *arg, void *first)
{
    (void)first;
    return arg;
}

static double weft_lifecycle(void *arg)
{
    struct loop_arg *a = arg;
    struct weft__co *self = weft__co_self();
    int64_t t0 = bench_now();
    for (long long i = 0; i < a->iters; i++) {
        struct weft__co *co;
        if (weft__co_create(&co, life_fn, (void *)(intptr_t)i, "life", 0) != 0)
            bench_die("weft__co_create", i);
        if (weft__co_switch(self, co, NULL) != (void *)(intptr_t)i)
            bench_die("wrong result", i);
        weft__co_free(co);
    }
    int64_t t1 = bench_now();
    return (double)(t1 - t0) / (double)a->iters;
}

int main(int argc, char **argv)
{
    bench_init(argc, argv);
    struct loop_arg sw = {bench_size("iters", 10000000, 10000)};
    struct loop_arg life = {bench_size("lives", 1000000, 1000)};
    fprintf(stderr, "bench_switch: method %s\n", weft__switch_method());

    const bench_kv_t *p = BENCH_PARAMS({"iters", sw.iters});
    bench_json("switch", "weft", p, "ns_per_op", bench_repeat(weft_switch, &sw, false));
    bench_json("switch", "weft_raw", p, "ns_per_op", bench_repeat(weft_raw_switch, &sw, false));
    bench_json("switch", "ucontext", p, "ns_per_op", bench_repeat(ucontext_switch, &sw, false));
    if (boost_load())
        bench_json("switch", "boost_context", p, "ns_per_op",
                   bench_repeat(boost_switch, &sw, false));
    else
        fprintf(stderr, "bench_switch: libboost_context.so not found, boost peer skipped\n");

    const bench_kv_t *lp = BENCH_PARAMS({"lives", life.iters});
    bench_json("co_lifecycle", "weft", lp, "ns_per_op", bench_repeat(weft_lifecycle, &life, false));
    return 0;
}
