/* The context switch and coroutine records (src/arch, src/co): values passed
 * both ways, rings of contexts, pooled stacks, callee-saved registers, deep
 * recursion, the FP control rule, stack overflow reports, misuse. */
#define _GNU_SOURCE
#include <alloca.h>
#include <errno.h>
#include <fenv.h>
#include <math.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <weft.h>

#include "check.h"
#include "arch/arch.h"
#include "co/internal.h"

#define NOINLINE __attribute__((noinline))

/* Checks inside a coroutine must not longjmp across stacks: they count
 * here, and the case checks the count on its own stack. */
static _Atomic int co_errors;
#define CO_EXPECT(cond)                                                                \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "%s:%d: in coroutine: %s failed\n", __FILE__, __LINE__,    \
                    #cond);                                                            \
            atomic_fetch_add(&co_errors, 1);                                           \
        }                                                                              \
    } while (0)

static void *co_yield_(void *val)
{
    struct weft__co *self = weft__co_self();
    void *got = NULL;
    int rc = weft__co_transfer(self->resumer, val, &got);
    CO_EXPECT(rc == 0);
    return got;
}

/* ---------------------------------------------------------------------- */

static void test_method(void)
{
#if defined(__x86_64__)
    CHECK(strcmp(weft__switch_method(), "asm-x86_64") == 0);
#elif defined(__aarch64__)
    CHECK(strcmp(weft__switch_method(), "asm-aarch64") == 0);
#endif
    fprintf(stderr, "     switch method: %s, sanitizers: asan=%d tsan=%d, fpcheck=%d\n",
            weft__switch_method(), WEFT_CO_ASAN, WEFT_CO_TSAN, WEFT_CO_FPCHECK);
}

/* ---- ping-pong --------------------------------------------------------- */

/* Receives 2i, answers 2i+1, n times; returns the sum of what it saw. */
static void *pingpong_fn(void *arg, void *first)
{
    long n = (long)(intptr_t)arg;
    uintptr_t v = (uintptr_t)first, sum = 0;
    for (long i = 0; i < n; i++) {
        CO_EXPECT(v == (uintptr_t)(2 * i));
        sum += v;
        v = (uintptr_t)co_yield_((void *)(v + 1));
    }
    CO_EXPECT(v == (uintptr_t)(2 * n));
    return (void *)sum;
}

static void test_ping_pong(void)
{
    long n = check_iters("PINGPONG", 1000000);
    atomic_store(&co_errors, 0);
    struct weft__co *co;
    CHECK_OK(weft__co_create(&co, pingpong_fn, (void *)(intptr_t)n, "pingpong", 0));
    CHECK_INT(co->state, ==, WEFT__CO_CREATED);
    void *got = NULL;
    uintptr_t expect_sum = 0;
    for (long i = 0; i < n; i++) {
        expect_sum += (uintptr_t)(2 * i);
        CHECK_OK(weft__co_transfer(co, (void *)(uintptr_t)(2 * i), &got));
        CHECK_U64((uintptr_t)got, ==, (uintptr_t)(2 * i + 1));
        CHECK_INT(co->state, ==, WEFT__CO_SUSPENDED);
        CHECK(weft__co_self()->is_thread);
    }
    CHECK_OK(weft__co_transfer(co, (void *)(uintptr_t)(2 * n), &got));
    CHECK_INT(co->state, ==, WEFT__CO_DONE);
    CHECK_U64((uintptr_t)got, ==, expect_sum);
    CHECK_U64((uintptr_t)co->result, ==, expect_sum);
    CHECK_INT(atomic_load(&co_errors), ==, 0);
    CHECK_OK(weft__co_free(co));
}

/* ---- a ring of contexts ------------------------------------------------ */

struct ring {
    struct weft__co **co;
    int n;
    long rounds;
    struct weft__co *home;
};
struct ring_arg {
    struct ring *ring;
    int index;
};

/* Round r: context i receives r*(n+1) + i and passes on one more. */
static void *ring_fn(void *arg, void *first)
{
    struct ring_arg *a = arg;
    struct ring *g = a->ring;
    struct weft__co *self = weft__co_self();
    struct weft__co *next = a->index + 1 < g->n ? g->co[a->index + 1] : g->home;
    uintptr_t v = (uintptr_t)first;
    long visits = 0;
    for (long r = 0; r < g->rounds; r++) {
        CO_EXPECT(v == (uintptr_t)(r * (g->n + 1) + a->index));
        visits++;
        /* Alternate the unchecked and the checked switch. */
        if (r & 1)
            v = (uintptr_t)weft__co_switch(self, next, (void *)(v + 1));
        else
            CO_EXPECT(weft__co_transfer(next, (void *)(v + 1), (void **)&v) == 0);
    }
    return (void *)(intptr_t)visits;
}

static void test_chain(void)
{
    int n = (int)check_iters("CHAIN_N", 100);
    long rounds = check_iters("CHAIN_ROUNDS", 2000);
    atomic_store(&co_errors, 0);
    struct ring g = {calloc((size_t)n, sizeof(struct weft__co *)), n, rounds, weft__co_self()};
    struct ring_arg *args = calloc((size_t)n, sizeof *args);
    CHECK(g.co && args);
    for (int i = 0; i < n; i++) {
        args[i] = (struct ring_arg){&g, i};
        char name[32];
        snprintf(name, sizeof name, "ring-%d", i);
        CHECK_OK(weft__co_create(&g.co[i], ring_fn, &args[i], name, 32 * 1024));
        CHECK(strcmp(g.co[i]->name, name) == 0);
    }
    for (long r = 0; r < rounds; r++) {
        void *got;
        CHECK_OK(weft__co_transfer(g.co[0], (void *)(uintptr_t)(r * (n + 1)), &got));
        CHECK_U64((uintptr_t)got, ==, (uintptr_t)(r * (n + 1) + n));
    }
    /* Each is suspended in its last send: resume each once more to end it. */
    for (int i = 0; i < n; i++) {
        void *got;
        CHECK_OK(weft__co_transfer(g.co[i], NULL, &got));
        CHECK_INT(g.co[i]->state, ==, WEFT__CO_DONE);
        CHECK_INT((intptr_t)got, ==, rounds);
        CHECK_OK(weft__co_free(g.co[i]));
    }
    CHECK_INT(atomic_load(&co_errors), ==, 0);
    free(g.co);
    free(args);
}

/* ---- pooled stacks ----------------------------------------------------- */

static void *once_fn(void *arg, void *first)
{
    (void)first;
    atomic_fetch_add((_Atomic long *)arg, 1);
    co_yield_(NULL);
    atomic_fetch_add((_Atomic long *)arg, 1);
    return arg;
}

static void test_pool_reuse(void)
{
    /* TSan creates and destroys a fiber (mmap'd state) per coroutine. */
    long n = check_iters("POOL", WEFT_CO_TSAN ? 5000 : 100000);
    _Atomic long ran = 0;
    weft__co_stack_pool_trim();
    struct weft__co_stack_stats s0, s1;
    weft__co_stack_stats(&s0);
    CHECK_U64(s0.pooled, ==, 0);
    /* Sequential: one stack serves every coroutine. */
    for (long i = 0; i < n; i++) {
        struct weft__co *co;
        CHECK_OK(weft__co_create(&co, once_fn, &ran, NULL, 0));
        CHECK_OK(weft__co_transfer(co, NULL, NULL));
        CHECK_OK(weft__co_transfer(co, NULL, NULL));
        CHECK_INT(co->state, ==, WEFT__CO_DONE);
        CHECK_OK(weft__co_free(co));
    }
    CHECK_INT(atomic_load(&ran), ==, 2 * n);
    weft__co_stack_stats(&s1);
    CHECK_U64(s1.created - s0.created, ==, 1);
    CHECK_U64(s1.reused - s0.reused, ==, (uint64_t)n - 1);
    CHECK_U64(s1.returned - s0.returned, ==, (uint64_t)n);
    CHECK_U64(s1.in_use, ==, s0.in_use);
    CHECK_U64(s1.pooled, ==, 1);

    /* Many alive at once, then freed: the pool keeps at most its bound and
     * unmaps the rest; every stack is accounted for. */
    int alive = 200, bound = 50;
    CHECK_OK(weft__co_stack_config(0, (size_t)bound, 0));
    struct weft__co *cos[200];
    weft__co_stack_stats(&s0);
    for (int i = 0; i < alive; i++) {
        CHECK_OK(weft__co_create(&cos[i], once_fn, &ran, "many", 0));
        CHECK_OK(weft__co_transfer(cos[i], NULL, NULL)); /* leave it suspended */
    }
    weft__co_stack_stats(&s1);
    CHECK_U64(s1.in_use - s0.in_use, ==, (uint64_t)alive);
    CHECK_U64(s1.created - s0.created, ==, (uint64_t)alive); /* setting a bound emptied the pool */
    for (int i = 0; i < alive; i++) {
        if (i % 2)
            CHECK_OK(weft__co_transfer(cos[i], NULL, NULL)); /* let half finish */
        CHECK_OK(weft__co_free(cos[i])); /* the rest are freed suspended */
    }
    weft__co_stack_stats(&s1);
    CHECK_U64(s1.in_use, ==, s0.in_use - 0);
    CHECK_U64(s1.pooled, ==, (uint64_t)bound);
    CHECK_U64(s1.mapped, ==, (uint64_t)bound + s1.in_use);
    CHECK_U64(s1.unmapped - s0.unmapped, ==, (uint64_t)(alive - bound));
    CHECK_INT(weft__co_stack_pool_trim(), ==, bound);
    weft__co_stack_stats(&s1);
    CHECK_U64(s1.pooled, ==, 0);
    CHECK_U64(s1.mapped, ==, s1.in_use);
    CHECK_OK(weft__co_stack_config(0, WEFT__CO_POOL_DEFAULT, 0));

    /* Different sizes are pooled apart: a 1 MiB request never gets a
     * smaller stack. */
    struct weft__co *a, *b;
    CHECK_OK(weft__co_create(&a, once_fn, &ran, "small", 32 * 1024));
    size_t small = a->size;
    CHECK_OK(weft__co_free(a));
    CHECK_OK(weft__co_create(&b, once_fn, &ran, "big", 1024 * 1024));
    CHECK_U64(b->size, >=, 1024 * 1024);
    CHECK_U64(b->size, !=, small);
    CHECK_OK(weft__co_free(b));
    CHECK_OK(weft__co_create(&a, once_fn, &ran, "small", 32 * 1024));
    CHECK_U64(a->size, ==, small);
    CHECK_OK(weft__co_free(a));

    /* The guard changed while a chunk is half carved: the next stacks of
     * that size come from a chunk of their own slot size, never past the
     * end of the old one (they were carved there with the new guard). */
    CHECK_OK(weft__co_stack_config(0, 0, 0)); /* no pooling: every create carves */
    struct weft__co *first, *later[8];
    CHECK_OK(weft__co_create(&first, once_fn, &ran, "first", 48 * 1024));
    size_t guard0 = (size_t)(first->lo - first->map);
    CHECK_OK(weft__co_stack_config(0, 0, guard0 * 4));
    for (int i = 0; i < 8; i++) {
        CHECK_OK(weft__co_create(&later[i], once_fn, &ran, "later", 48 * 1024));
        CHECK_U64((uint64_t)(later[i]->lo - later[i]->map), ==, (uint64_t)guard0 * 4);
    }
    /* Not the first chunk's next slot (carved there with the new size, it
     * ran past the chunk's end). */
    CHECK(later[0]->map != first->map + first->map_size);
    for (int i = 0; i < 8; i++)
        CHECK_OK(weft__co_free(later[i]));
    CHECK_OK(weft__co_free(first));
    CHECK_OK(weft__co_stack_config(0, WEFT__CO_POOL_DEFAULT, guard0));
}

/* Resident set in KiB (from /proc/self/statm). */
static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, res = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &size, &res) != 2)
            res = 0;
        fclose(f);
    }
    return res * (long)(sysconf(_SC_PAGESIZE) / 1024);
}

/* Stacks are committed on touch: 64 coroutines with 4 MiB stacks, each
 * suspended after a little work, cost far less than 256 MiB. */
static void test_lazy_commit(void)
{
    enum { N = 64 };
    _Atomic long ran = 0;
    struct weft__co *cos[N];
    weft__co_stack_pool_trim();
    long before = rss_kib();
    for (int i = 0; i < N; i++) {
        CHECK_OK(weft__co_create(&cos[i], once_fn, &ran, "lazy", 4 << 20));
        CHECK_OK(weft__co_transfer(cos[i], NULL, NULL));
    }
    long grown = rss_kib() - before;
    CHECK_INT(atomic_load(&ran), ==, N); /* each ran (and suspended): its stack was touched */
    fprintf(stderr, "     %d suspended coroutines with 4 MiB stacks: RSS +%ld KiB\n", N, grown);
    /* Committing every stack would be 256 MiB. TSan adds several hundred
     * KiB of its own per fiber, hence the loose bound. */
    CHECK_INT(grown, <, 64 * 1024);
    for (int i = 0; i < N; i++)
        CHECK_OK(weft__co_free(cos[i]));
    weft__co_stack_pool_trim();
}

/* ---- callee-saved registers -------------------------------------------- */

/*
 * test_pattern_switch(from, to, seed) loads seed-derived patterns into every
 * callee-saved register, calls weft__co_switch(from, to, 0), and returns a
 * bit mask of the registers that did not come back intact (0: all good).
 * The other side does the same with its own seed, so each side's registers
 * are live across the other side's clobbering of all of them.
 */
uint64_t test_pattern_switch(struct weft__co *from, struct weft__co *to, uint64_t seed);
#if defined(__x86_64__)
__asm__(".text\n"
        ".globl test_pattern_switch\n"
        ".type test_pattern_switch, @function\n"
        "test_pattern_switch:\n"
        "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
        "  subq $8, %rsp\n" /* 16-byte alignment for the call */
        "  movq %rdx, (%rsp)\n"
        "  movq %rdx, %rbx\n  xorq $0x11, %rbx\n"
        "  movq %rdx, %rbp\n  xorq $0x22, %rbp\n"
        "  movq %rdx, %r12\n  xorq $0x33, %r12\n"
        "  movq %rdx, %r13\n  xorq $0x44, %r13\n"
        "  movq %rdx, %r14\n  xorq $0x55, %r14\n"
        "  movq %rdx, %r15\n  xorq $0x66, %r15\n"
        "  xorl %edx, %edx\n"
        "  call weft__co_switch\n"
        "  xorl %eax, %eax\n"
        "  movq (%rsp), %rcx\n"
        "  movq %rcx, %rdx\n xorq $0x11, %rdx\n cmpq %rdx, %rbx\n je 1f\n orq $1, %rax\n1:\n"
        "  movq %rcx, %rdx\n xorq $0x22, %rdx\n cmpq %rdx, %rbp\n je 1f\n orq $2, %rax\n1:\n"
        "  movq %rcx, %rdx\n xorq $0x33, %rdx\n cmpq %rdx, %r12\n je 1f\n orq $4, %rax\n1:\n"
        "  movq %rcx, %rdx\n xorq $0x44, %rdx\n cmpq %rdx, %r13\n je 1f\n orq $8, %rax\n1:\n"
        "  movq %rcx, %rdx\n xorq $0x55, %rdx\n cmpq %rdx, %r14\n je 1f\n orq $16, %rax\n1:\n"
        "  movq %rcx, %rdx\n xorq $0x66, %rdx\n cmpq %rdx, %r15\n je 1f\n orq $32, %rax\n1:\n"
        "  addq $8, %rsp\n"
        "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
        "  ret\n"
        ".size test_pattern_switch, .-test_pattern_switch\n");
#elif defined(__aarch64__)
/* x19-x28 get seed+1..seed+10, x29 seed+11, d8-d15 seed+21..seed+28; bits
 * 0-9, 10, 11-18 of the result. */
#define PAT_CHECK_X(reg, k, bit)                                                    \
    "  add x9, x2, #" #k "\n  cmp " #reg ", x9\n  b.eq 1f\n  orr x0, x0, #" #bit "\n1:\n"
#define PAT_CHECK_D(reg, k, bit)                                                    \
    "  add x9, x2, #" #k "\n  fmov x10, " #reg "\n  cmp x10, x9\n  b.eq 1f\n"         \
    "  orr x0, x0, #" #bit "\n1:\n"
__asm__(".text\n"
        ".globl test_pattern_switch\n"
        ".type test_pattern_switch, %function\n"
        "test_pattern_switch:\n"
        "  stp x29, x30, [sp, #-176]!\n"
        "  mov x29, sp\n"
        "  stp x19, x20, [sp, #16]\n  stp x21, x22, [sp, #32]\n  stp x23, x24, [sp, #48]\n"
        "  stp x25, x26, [sp, #64]\n  stp x27, x28, [sp, #80]\n"
        "  stp d8, d9, [sp, #96]\n  stp d10, d11, [sp, #112]\n"
        "  stp d12, d13, [sp, #128]\n  stp d14, d15, [sp, #144]\n"
        "  str x2, [sp, #160]\n"
        "  add x19, x2, #1\n  add x20, x2, #2\n  add x21, x2, #3\n  add x22, x2, #4\n"
        "  add x23, x2, #5\n  add x24, x2, #6\n  add x25, x2, #7\n  add x26, x2, #8\n"
        "  add x27, x2, #9\n  add x28, x2, #10\n"
        "  add x9, x2, #21\n  fmov d8, x9\n  add x9, x2, #22\n  fmov d9, x9\n"
        "  add x9, x2, #23\n  fmov d10, x9\n  add x9, x2, #24\n  fmov d11, x9\n"
        "  add x9, x2, #25\n  fmov d12, x9\n  add x9, x2, #26\n  fmov d13, x9\n"
        "  add x9, x2, #27\n  fmov d14, x9\n  add x9, x2, #28\n  fmov d15, x9\n"
        "  mov x16, sp\n"
        "  add x29, x2, #11\n"
        "  mov x2, #0\n"
        "  bl weft__co_switch\n"
        "  ldr x2, [sp, #160]\n"
        "  mov x0, #0\n"
        PAT_CHECK_X(x19, 1, 0x1) PAT_CHECK_X(x20, 2, 0x2) PAT_CHECK_X(x21, 3, 0x4)
        PAT_CHECK_X(x22, 4, 0x8) PAT_CHECK_X(x23, 5, 0x10) PAT_CHECK_X(x24, 6, 0x20)
        PAT_CHECK_X(x25, 7, 0x40) PAT_CHECK_X(x26, 8, 0x80) PAT_CHECK_X(x27, 9, 0x100)
        PAT_CHECK_X(x28, 10, 0x200) PAT_CHECK_X(x29, 11, 0x400)
        PAT_CHECK_D(d8, 21, 0x800) PAT_CHECK_D(d9, 22, 0x1000) PAT_CHECK_D(d10, 23, 0x2000)
        PAT_CHECK_D(d11, 24, 0x4000) PAT_CHECK_D(d12, 25, 0x8000)
        PAT_CHECK_D(d13, 26, 0x10000) PAT_CHECK_D(d14, 27, 0x20000)
        PAT_CHECK_D(d15, 28, 0x40000)
        "  ldp x19, x20, [sp, #16]\n  ldp x21, x22, [sp, #32]\n  ldp x23, x24, [sp, #48]\n"
        "  ldp x25, x26, [sp, #64]\n  ldp x27, x28, [sp, #80]\n"
        "  ldp d8, d9, [sp, #96]\n  ldp d10, d11, [sp, #112]\n"
        "  ldp d12, d13, [sp, #128]\n  ldp d14, d15, [sp, #144]\n"
        "  ldp x29, x30, [sp], #176\n"
        "  ret\n"
        ".size test_pattern_switch, .-test_pattern_switch\n");
#endif

static void *pattern_fn(void *arg, void *first)
{
    (void)first;
    long n = (long)(intptr_t)arg;
    struct weft__co *self = weft__co_self();
    uint64_t bad = 0;
    for (long i = 0; i < n; i++)
        bad |= test_pattern_switch(self, self->resumer, 0x5a5a000000000000ull + (uint64_t)i * 0x1000);
    return (void *)(uintptr_t)bad;
}

static void test_callee_saved_exact(void)
{
    long n = check_iters("PATTERN", 10000);
    struct weft__co *co;
    CHECK_OK(weft__co_create(&co, pattern_fn, (void *)(intptr_t)n, "pattern", 0));
    struct weft__co *self = weft__co_self();
    uint64_t bad = 0;
    for (long i = 0; i < n; i++)
        bad |= test_pattern_switch(self, co, 0x3c3c000000000000ull + (uint64_t)i * 0x1000);
    void *got;
    CHECK_OK(weft__co_transfer(co, NULL, &got)); /* let it finish */
    CHECK_U64(bad, ==, 0);                       /* the thread's registers */
    CHECK_U64((uintptr_t)got, ==, 0);            /* the coroutine's registers */
    CHECK_OK(weft__co_free(co));
}

/*
 * The same in plain C, compiled normally: many integers and doubles live
 * across every switch, on both sides. The compiler keeps as many as it can
 * in callee-saved registers (the rest spill to the stack, which must survive
 * too); the result must equal a run of the same arithmetic with no switches.
 */
static uint64_t live_body(uint64_t seed, long rounds, bool do_switch, struct weft__co *peer)
{
    volatile uint64_t vs = seed;
    uint64_t s = vs;
    uint64_t a = s + 1, b = s * 3, c = s ^ 0x55, d = s + 7, e = s * 11, f = s ^ 0xabc,
             g = s + 13, h = s * 17, i2 = s ^ 0x1234, j = s + 19;
    double x = (double)(s & 0xffff) * 0.5, y = 1.25, z = 3.0, w = -2.5, u = 0.125,
           t = 7.75, q = 1e-3, r = 42.0;
    struct weft__co *self = do_switch ? weft__co_self() : NULL;
    for (long k = 0; k < rounds; k++) {
        if (do_switch)
            weft__co_switch(self, peer ? peer : self->resumer, NULL);
        a = a * 31 + b;
        b ^= c + (uint64_t)k;
        c = c * 7 + d;
        d ^= e >> 3;
        e = e * 5 + f;
        f ^= g << 1;
        g = g * 3 + h;
        h ^= i2 + a;
        i2 = i2 * 9 + j;
        j ^= a >> 7;
        x = x * 1.0000001 + y;
        y = y * 0.9999 + z * 1e-6;
        z = z + w * 1e-7;
        w = w * 1.00001 - u * 1e-5;
        u = u + t * 1e-9;
        t = t * 0.99999 + q;
        q = q * 1.0001;
        r = r - x * 1e-12;
    }
    double fs = x + y + z + w + u + t + q + r;
    uint64_t fbits;
    memcpy(&fbits, &fs, sizeof fbits);
    return a ^ b ^ c ^ d ^ e ^ f ^ g ^ h ^ i2 ^ j ^ fbits;
}

struct live_arg {
    uint64_t seed;
    long rounds;
};

static void *live_fn(void *arg, void *first)
{
    (void)first;
    struct live_arg *la = arg;
    uint64_t r = live_body(la->seed, la->rounds, true, NULL);
    return (void *)(uintptr_t)r;
}

static void test_callee_saved_c(void)
{
    long rounds = check_iters("LIVE", 100000);
    struct live_arg la = {0x1234567, rounds};
    struct weft__co *co;
    CHECK_OK(weft__co_create(&co, live_fn, &la, "live", 0));
    /* The thread side: the same body with another seed, switching to co
     * each round; co answers each round by switching back. One extra
     * resume lets co finish. */
    uint64_t mine = live_body(0x7654321, rounds, true, co);
    void *got;
    CHECK_OK(weft__co_transfer(co, NULL, &got));
    CHECK_INT(co->state, ==, WEFT__CO_DONE);
    CHECK_U64(mine, ==, live_body(0x7654321, rounds, false, NULL));
    CHECK_U64((uintptr_t)got, ==, live_body(0x1234567, rounds, false, NULL));
    CHECK_OK(weft__co_free(co));
}

/* ---- deep recursion ---------------------------------------------------- */

struct deep {
    uintptr_t top;   /* frame address at the coroutine's entry */
    size_t target;   /* bytes of stack to use */
    size_t used;     /* the most used */
    long depth;
};

static NOINLINE long recurse_to(struct deep *dp, long depth)
{
    volatile char pad[256];
    pad[0] = (char)depth;
    uintptr_t here = (uintptr_t)__builtin_frame_address(0);
    size_t used = dp->top - here;
    if (used > dp->used)
        dp->used = used;
    if (used + 1024 >= dp->target) {
        dp->depth = depth;
        return depth + pad[0] - (char)depth;
    }
    return recurse_to(dp, depth + 1) + (pad[0] - (char)depth);
}

static void *deep_fn(void *arg, void *first)
{
    (void)first;
    struct deep *dp = arg;
    dp->top = (uintptr_t)__builtin_frame_address(0);
    return (void *)(intptr_t)recurse_to(dp, 1);
}

static void test_deep_recursion(void)
{
    size_t sizes[] = {64 * 1024, 256 * 1024, 1024 * 1024};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        struct weft__co *co;
        struct deep dp = {0, 0, 0, 0};
        CHECK_OK(weft__co_create(&co, deep_fn, &dp, "deep", sizes[k]));
        /* Leave 2 KiB for the entry frames above and the last frames. */
        dp.target = co->size - 2048;
        void *got;
        CHECK_OK(weft__co_transfer(co, NULL, &got));
        CHECK_INT(co->state, ==, WEFT__CO_DONE);
        CHECK_INT((intptr_t)got, ==, dp.depth);
        CHECK_U64(dp.used, >=, co->size * 9 / 10);
        CHECK_U64(dp.used, <, co->size);
        CHECK_OK(weft__co_free(co));
    }
}

/* ---- FP control state -------------------------------------------------- */

static volatile double fp_one = 1.0, fp_three = 3.0;

/* Out of line: the compiler does not know fesetround changes division, and
 * would otherwise compute both quotients once. */
static NOINLINE double fp_third(void)
{
    __asm__ __volatile__("" ::: "memory");
    return fp_one / fp_three;
}

/* Changes the rounding mode, computes, restores before every switch: the
 * documented way. Reports what it saw at entry and after each resume. */
static void *fp_polite_fn(void *arg, void *first)
{
    (void)first;
    int *seen = arg;
    seen[0] = fegetround();
    fesetround(FE_UPWARD);
    double up = fp_third();
    fesetround(FE_DOWNWARD);
    double down = fp_third();
    CO_EXPECT(up > down);
    fesetround(seen[0]); /* restore before switching */
    co_yield_(NULL);
    seen[1] = fegetround();
    return NULL;
}

static void test_fp_rule_polite(void)
{
    atomic_store(&co_errors, 0);
    int seen[2] = {-1, -1};
    uint64_t before = weft__fpctl_read();
    CHECK_INT(fegetround(), ==, FE_TONEAREST);
    struct weft__co *co;
    CHECK_OK(weft__co_create(&co, fp_polite_fn, seen, "fp-polite", 0));
    CHECK_OK(weft__co_transfer(co, NULL, NULL));
    CHECK_INT(fegetround(), ==, FE_TONEAREST);
    CHECK_U64(weft__fpctl_read(), ==, before);
    CHECK_OK(weft__co_transfer(co, NULL, NULL));
    CHECK_INT(co->state, ==, WEFT__CO_DONE);
    CHECK_INT(seen[0], ==, FE_TONEAREST);
    CHECK_INT(seen[1], ==, FE_TONEAREST);
    CHECK_U64(weft__fpctl_read(), ==, before);
    CHECK_INT(atomic_load(&co_errors), ==, 0);
    CHECK_OK(weft__co_free(co));
}

struct fp_thread_arg {
    struct weft__co *made_elsewhere; /* created on the main thread */
    int seen_local, seen_elsewhere;
    uint64_t ctl_thread, ctl_local;
};

static void *fp_report_fn(void *arg, void *first)
{
    (void)first;
    int *seen = arg;
    *seen = fegetround();
    return (void *)(uintptr_t)weft__fpctl_read();
}

/* A thread whose own state is round-down runs a coroutine created on it
 * and one created on the main thread (round-to-nearest): both start with
 * the state of the thread that first runs them. */
static void *fp_thread_main(void *p)
{
    struct fp_thread_arg *a = p;
    fesetround(FE_DOWNWARD);
    a->ctl_thread = weft__fpctl_read();
    struct weft__co *co;
    if (weft__co_create(&co, fp_report_fn, &a->seen_local, "fp-local", 0) == 0) {
        void *got;
        weft__co_transfer(co, NULL, &got);
        a->ctl_local = (uintptr_t)got;
        weft__co_free(co);
    }
    weft__co_transfer(a->made_elsewhere, NULL, NULL);
    fesetround(FE_TONEAREST);
    return NULL;
}

static void test_fp_rule_first_entry(void)
{
    struct fp_thread_arg a = {0};
    a.seen_local = a.seen_elsewhere = -1;
    CHECK_OK(weft__co_create(&a.made_elsewhere, fp_report_fn, &a.seen_elsewhere, "fp-moved", 0));
    pthread_t t;
    CHECK_INT(pthread_create(&t, NULL, fp_thread_main, &a), ==, 0);
    pthread_join(t, NULL);
    CHECK_INT(a.seen_local, ==, FE_DOWNWARD);
    CHECK_U64(a.ctl_local, ==, a.ctl_thread);
    CHECK_INT(a.made_elsewhere->state, ==, WEFT__CO_DONE);
    CHECK_INT(a.seen_elsewhere, ==, FE_DOWNWARD);
    CHECK_U64((uintptr_t)a.made_elsewhere->result, ==, a.ctl_thread);
    CHECK_OK(weft__co_free(a.made_elsewhere));
    CHECK_INT(fegetround(), ==, FE_TONEAREST);
}

/* Run fn in a child process; collect its stderr and wait status. */
static int run_child(void (*fn)(void), char *err, size_t cap)
{
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], STDERR_FILENO);
        close(fds[1]);
        fn();
        _exit(0);
    }
    close(fds[1]);
    size_t n = 0;
    ssize_t r;
    while ((r = read(fds[0], err + n, cap - 1 - n)) > 0 && n + 1 < cap)
        n += (size_t)r;
    err[n] = '\0';
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    return status;
}

/* Breaks the rule: yields with the rounding mode changed. */
static void *fp_rude_fn(void *arg, void *first)
{
    (void)arg;
    (void)first;
    fesetround(FE_UPWARD);
    co_yield_(NULL);
    fesetround(FE_TONEAREST);
    return NULL;
}

static void fp_rude_child(void)
{
    struct weft__co *co;
    if (weft__co_create(&co, fp_rude_fn, NULL, "fp-rude", 0) != 0)
        _exit(3);
    weft__co_transfer(co, NULL, NULL);
    /* Without the debug check, the change leaks to the thread: not saved by
     * the switch, as documented. */
    _exit(fegetround() == FE_UPWARD ? 0 : 4);
}

static void test_fp_rule_broken(void)
{
    char err[4096];
    int st = run_child(fp_rude_child, err, sizeof err);
    if (WEFT_CO_FPCHECK) {
        CHECK(WIFSIGNALED(st));
        CHECK_INT(WIFSIGNALED(st) ? WTERMSIG(st) : 0, ==, SIGABRT);
        CHECK(strstr(err, "weft: coroutine 'fp-rude' switched with a changed FP control state"));
    } else {
        CHECK(WIFEXITED(st));
        CHECK_INT(WIFEXITED(st) ? WEXITSTATUS(st) : -1, ==, 0);
    }
}

/* ---- stack overflow ---------------------------------------------------- */

static volatile long recursion_limit = 1L << 40;

static NOINLINE long overflow_recurse(long depth)
{
    volatile char pad[512];
    pad[0] = (char)depth;
    if (depth >= recursion_limit)
        return pad[0];
    return overflow_recurse(depth + 1) + pad[0];
}

static void *overflow_fn(void *arg, void *first)
{
    (void)arg;
    (void)first;
    return (void *)(intptr_t)overflow_recurse(0);
}

static void overflow_child(void)
{
    struct weft__co *co;
    if (weft__co_create(&co, overflow_fn, NULL, "overflow-me", 64 * 1024) != 0)
        _exit(3);
    weft__co_transfer(co, NULL, NULL);
    _exit(5); /* not reached */
}

/* One frame far larger than the guard: the faulting store lands below it.
 * The stack is 1 MiB, above WEFT__CO_CHUNK_STACK_MAX, so that it has a
 * mapping of its own: a chunked stack has a neighbour's stack below its
 * guard, where a guard-jumping frame is not caught (stack.c). */
#define HUGE_STACK (1024 * 1024)
#define HUGE_FRAME (4 * 1024 * 1024)
static NOINLINE void *huge_frame_fn(void *arg, void *first)
{
    (void)arg;
    (void)first;
    size_t n = HUGE_FRAME; /* stack 1 MiB, guard 64 KiB */
    volatile char *big = __builtin_alloca(n);
    __asm__ __volatile__("" : : "r"(big) : "memory"); /* keep it real (clang) */
    big[0] = 1; /* the lowest byte: far below the guard */
    return (void *)(intptr_t)big[0];
}

/* True if no page of [a, a + len) is mapped (mincore fails with ENOMEM on
 * unmapped ranges). */
static bool unmapped(uintptr_t a, size_t len)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    unsigned char vec[64];
    for (uintptr_t p = a & ~(uintptr_t)(page - 1); p < a + len; p += page)
        if (mincore((void *)p, page, vec) == 0 || errno != ENOMEM)
            return false;
    return true;
}

static void huge_frame_child(void)
{
    /* The store must land in unmapped memory, not in some neighbouring
     * mapping (where it would be exactly the silent corruption that only
     * -fstack-clash-protection prevents): keep the first stack placed so. */
    struct weft__co *co, *tried[16];
    int ntried = 0;
    weft__co_stack_pool_trim();
    for (;;) {
        if (weft__co_create(&co, huge_frame_fn, NULL, "huge-frame", HUGE_STACK) != 0)
            _exit(3);
        uintptr_t target = (uintptr_t)co->lo + co->size - HUGE_FRAME;
        if (unmapped(target - 16384, 32768))
            break;
        if (ntried == 16)
            _exit(6);
        tried[ntried++] = co; /* kept mapped, so the next try lands elsewhere */
        (void)tried;
    }
    weft__co_transfer(co, NULL, NULL);
    _exit(5);
}

/* An ordinary bad pointer inside a coroutine is not an overflow. */
static volatile int *volatile null_ptr;
static void *segv_fn(void *arg, void *first)
{
    (void)arg;
    (void)first;
    return (void *)(intptr_t)*null_ptr;
}

static void segv_child(void)
{
    struct weft__co *co;
    if (weft__co_create(&co, segv_fn, NULL, "bad-pointer", 0) != 0)
        _exit(3);
    weft__co_transfer(co, NULL, NULL);
    _exit(5);
}

/* An overflow in the middle of a switch: the switch names its target
 * current before it leaves the old stack, and its pushes still land there.
 * The report must name the coroutine being left, whatever the target (a
 * neighbouring coroutine in the same chunk, or the thread), never the
 * target and never nothing (a plain SIGSEGV). Swept over the bytes left
 * when the switch starts: some K put the fault inside the switch. */
static struct weft__co *sw_a, *sw_b;
static long sw_left;
static bool sw_to_thread;
static void *sw_b_fn(void *arg, void *first)
{
    (void)arg;
    (void)first;
    return NULL;
}
static NOINLINE void sw_go(void)
{
    weft__co_transfer(sw_to_thread ? sw_a->resumer : sw_b, NULL, NULL);
}
static void *sw_a_fn(void *arg, void *first)
{
    (void)arg;
    (void)first;
    struct weft__co *self = weft__co_self();
    char here;
    long room = (char *)&here - self->lo;
    volatile char *p = alloca((size_t)(room - sw_left));
    p[0] = 1; /* sp is now sw_left bytes above the guard */
    sw_go();
    return NULL;
}
static void sw_child(void)
{
    if (weft__co_create(&sw_a, sw_a_fn, NULL, "left-behind", 64 * 1024) != 0 ||
        weft__co_create(&sw_b, sw_b_fn, NULL, "innocent", 64 * 1024) != 0)
        _exit(3);
    weft__co_transfer(sw_a, NULL, NULL);
    _exit(0);
}
/* Writes into a stack's guard: dies if guards are enforced. Under
 * qemu-user madvise(MADV_GUARD_INSTALL) is accepted and ignored, so a
 * write just below a stack goes through (deep recursion is still caught
 * further down, where nothing is mapped). */
static void guard_probe_child(void)
{
    struct weft__co *co;
    if (weft__co_create(&co, sw_b_fn, NULL, "probe", 64 * 1024) != 0)
        _exit(3);
    *(volatile char *)(co->lo - 1) = 1;
    _exit(0);
}
static void test_overflow_in_switch(void)
{
    if (WEFT_CO_ASAN || WEFT_CO_TSAN) {
        fprintf(stderr, "     (skipped under a sanitizer: its own frames move the window)\n");
        return;
    }
    char err[8192];
    int probe = run_child(guard_probe_child, err, sizeof err);
    if (WIFEXITED(probe) && WEXITSTATUS(probe) == 0) {
        fprintf(stderr, "     (skipped: stack guards are not enforced here, e.g. under qemu-user)\n");
        return;
    }
    int reported = 0;
    for (int to_thread = 0; to_thread < 2; to_thread++) {
        sw_to_thread = to_thread;
        for (sw_left = 0; sw_left <= 512; sw_left += 8) {
            int st = run_child(sw_child, err, sizeof err);
            if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
                continue; /* enough room: no overflow */
            CHECK(!strstr(err, "'innocent'"));
            if (!strstr(err, "stack overflow in coroutine 'left-behind'")) {
                fprintf(stderr, "     left %ld bytes, to the %s: status %d, \"%s\"\n", sw_left,
                        to_thread ? "thread" : "neighbour", st, err);
                CHECK(false);
            }
            reported++;
        }
    }
    CHECK_INT(reported, >, 0);
}

static void test_stack_overflow(void)
{
    char err[8192];
    int st = run_child(overflow_child, err, sizeof err);
    CHECK(strstr(err, "weft: stack overflow in coroutine 'overflow-me'"));
    CHECK(WIFSIGNALED(st));
    CHECK_INT(WIFSIGNALED(st) ? WTERMSIG(st) : 0, ==, SIGABRT);

    st = run_child(huge_frame_child, err, sizeof err);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 6) {
        fprintf(stderr, "     (huge-frame case skipped: no stack placed above free space)\n");
    } else {
        CHECK(strstr(err, "weft: stack overflow in coroutine 'huge-frame'"));
        CHECK(WIFSIGNALED(st));
    }

    /* A NULL dereference goes to the previous handler (ASan's) or the
     * default action: the child dies, and not with an overflow report. */
    st = run_child(segv_child, err, sizeof err);
    CHECK(!strstr(err, "stack overflow in coroutine"));
    CHECK(!(WIFEXITED(st) && WEXITSTATUS(st) == 0));
    if (!WEFT_CO_ASAN && !WEFT_CO_TSAN) {
        CHECK(WIFSIGNALED(st));
        CHECK_INT(WIFSIGNALED(st) ? WTERMSIG(st) : 0, ==, SIGSEGV);
    }
}

/* ---- misuse ------------------------------------------------------------ */

static void *exit_fn(void *arg, void *first)
{
    (void)first;
    struct weft__co *self = weft__co_self();
    CO_EXPECT(weft__co_transfer(self, NULL, NULL) == -EDEADLK);
    CO_EXPECT(weft__co_free(self) == -EBUSY);
    CO_EXPECT(weft__co_transfer(self->resumer, NULL, NULL) == 0);
    weft__co_exit(arg); /* from here, not by returning */
}

static void *nop_fn(void *arg, void *first)
{
    (void)first;
    return arg;
}

static void test_misuse(void)
{
    atomic_store(&co_errors, 0);
    struct weft__co *co, *other;
    struct weft__co *self = weft__co_self();
    CHECK(self && self->is_thread);
    CHECK_INT(self->state, ==, WEFT__CO_RUNNING);
    CHECK_RC(weft__co_create(NULL, nop_fn, NULL, NULL, 0), -EINVAL);
    CHECK_RC(weft__co_create(&co, NULL, NULL, NULL, 0), -EINVAL);
    CHECK_RC(weft__co_create(&co, nop_fn, NULL, NULL, WEFT__CO_STACK_MAX + 1), -EINVAL);
    CHECK_RC(weft__co_transfer(NULL, NULL, NULL), -EINVAL);
    CHECK_RC(weft__co_transfer(self, NULL, NULL), -EDEADLK);
    CHECK_RC(weft__co_free(NULL), -EINVAL);
    CHECK_RC(weft__co_free(self), -EINVAL);
    CHECK_RC(weft__co_stack_config(WEFT__CO_STACK_MAX + 1, SIZE_MAX, 0), -EINVAL);

    /* A tiny or unnamed request still works: minimum size, default name. */
    CHECK_OK(weft__co_create(&co, nop_fn, (void *)7, NULL, 1));
    CHECK_U64(co->size, >=, WEFT__CO_STACK_MIN);
    CHECK(strncmp(co->name, "co#", 3) == 0);
    /* A name longer than the record's buffer is truncated. */
    char longname[100];
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    CHECK_OK(weft__co_create(&other, nop_fn, NULL, longname, 0));
    CHECK_INT(strlen(other->name), ==, WEFT__CO_NAME_MAX - 1);
    CHECK_OK(weft__co_free(other)); /* never run: fine */
    CHECK_RC(weft__co_free(other), -EINVAL); /* double free, not yet reused */

    void *got;
    CHECK_OK(weft__co_transfer(co, NULL, &got));
    CHECK_U64((uintptr_t)got, ==, 7);
    CHECK_RC(weft__co_transfer(co, NULL, NULL), -ESRCH); /* finished */
    CHECK_OK(weft__co_free(co));

    /* weft__co_exit, and exit_to redirecting the final switch. */
    CHECK_OK(weft__co_create(&co, exit_fn, (void *)99, "exiter", 0));
    CHECK_OK(weft__co_transfer(co, NULL, NULL));
    CHECK_INT(co->state, ==, WEFT__CO_SUSPENDED);
    CHECK_OK(weft__co_transfer(co, NULL, &got));
    CHECK_INT(co->state, ==, WEFT__CO_DONE);
    CHECK_U64((uintptr_t)got, ==, 99);
    CHECK_OK(weft__co_free(co));
    CHECK_INT(atomic_load(&co_errors), ==, 0);
}

/* exit_to: a coroutine that ends goes to the named context, not its
 * resumer. */
static struct weft__co *exit_target;
static void *to_target_fn(void *arg, void *first)
{
    (void)first;
    return arg;
}
static void *target_fn(void *arg, void *first)
{
    (void)arg;
    /* first: the thread started us; we start the worker, which ends into
     * us via exit_to even though we resumed it. */
    (void)first;
    struct weft__co *worker = arg;
    weft__co_set_exit_to(worker, weft__co_self());
    void *got = NULL;
    CO_EXPECT(weft__co_transfer(worker, NULL, &got) == 0);
    CO_EXPECT((uintptr_t)got == 5);
    return (void *)((uintptr_t)got + 1);
}

static void test_exit_to(void)
{
    atomic_store(&co_errors, 0);
    struct weft__co *worker, *target;
    CHECK_OK(weft__co_create(&worker, to_target_fn, (void *)5, "worker", 0));
    CHECK_OK(weft__co_create(&target, target_fn, worker, "target", 0));
    exit_target = target;
    void *got;
    CHECK_OK(weft__co_transfer(target, NULL, &got));
    CHECK_U64((uintptr_t)got, ==, 6);
    CHECK_INT(worker->state, ==, WEFT__CO_DONE);
    CHECK_INT(target->state, ==, WEFT__CO_DONE);
    CHECK_OK(weft__co_free(worker));
    CHECK_OK(weft__co_free(target));
    CHECK_INT(atomic_load(&co_errors), ==, 0);
}

/* ---- threads ----------------------------------------------------------- */

/* Each thread runs its own coroutines (ping-pong plus create/free through
 * the shared pool) at the same time as the others. */
static void par_worker(void *arg, int index)
{
    _Atomic long *total = arg;
    long n = check_iters("PAR", 2000);
    for (long i = 0; i < n; i++) {
        struct weft__co *co;
        if (weft__co_create(&co, pingpong_fn, (void *)(intptr_t)3, index & 1 ? "odd" : "even",
                            index & 1 ? 64 * 1024 : 0) != 0) {
            atomic_fetch_add(&co_errors, 1);
            return;
        }
        void *got;
        for (long k = 0; k <= 3; k++)
            if (weft__co_transfer(co, (void *)(uintptr_t)(2 * k), &got) != 0)
                atomic_fetch_add(&co_errors, 1);
        if (co->state != WEFT__CO_DONE || (uintptr_t)got != 0 + 2 + 4)
            atomic_fetch_add(&co_errors, 1);
        weft__co_free(co);
        atomic_fetch_add(total, 1);
    }
}

static void test_threads(void)
{
    atomic_store(&co_errors, 0);
    _Atomic long total = 0;
    struct weft__co_stack_stats s0, s1;
    weft__co_stack_stats(&s0);
    int nthreads = 4;
    check_parallel(nthreads, par_worker, &total);
    weft__co_stack_stats(&s1);
    CHECK_INT(atomic_load(&co_errors), ==, 0);
    CHECK_INT(atomic_load(&total), ==, nthreads * check_iters("PAR", 2000));
    CHECK_U64(s1.in_use, ==, s0.in_use);
    CHECK_U64(s1.returned - s0.returned + (s1.unmapped - s0.unmapped), ==,
              (uint64_t)atomic_load(&total));
}

/* A coroutine suspended on one thread and resumed (and finished) on
 * another: the switch is thread-agnostic and the layer rereads its
 * thread-local state after every switch. */
/* pthread_self() is declared const: the compiler may reuse one call's result
 * across a switch, which is wrong once the coroutine has moved. */
static NOINLINE pthread_t current_thread(void)
{
    __asm__ __volatile__("" ::: "memory");
    return pthread_self();
}

static void *migrate_fn(void *arg, void *first)
{
    (void)first;
    pthread_t *where = arg;
    where[0] = current_thread();
    co_yield_(NULL);
    where[1] = current_thread();
    CO_EXPECT(weft__co_self()->state == WEFT__CO_RUNNING && !weft__co_self()->is_thread);
    co_yield_(NULL);
    where[2] = current_thread();
    return NULL;
}

static void *migrate_thread(void *p)
{
    struct weft__co *co = p;
    if (weft__co_transfer(co, NULL, NULL) != 0)
        atomic_fetch_add(&co_errors, 1);
    return NULL;
}

static void test_migrate(void)
{
    atomic_store(&co_errors, 0);
    pthread_t where[3];
    struct weft__co *co;
    CHECK_OK(weft__co_create(&co, migrate_fn, where, "migrant", 0));
    CHECK_OK(weft__co_transfer(co, NULL, NULL));
    pthread_t t;
    CHECK_INT(pthread_create(&t, NULL, migrate_thread, co), ==, 0);
    pthread_join(t, NULL);
    CHECK_INT(co->state, ==, WEFT__CO_SUSPENDED);
    CHECK_OK(weft__co_transfer(co, NULL, NULL));
    CHECK_INT(co->state, ==, WEFT__CO_DONE);
    CHECK(pthread_equal(where[0], pthread_self()));
    CHECK(pthread_equal(where[1], t));
    CHECK(pthread_equal(where[2], pthread_self()));
    CHECK_INT(atomic_load(&co_errors), ==, 0);
    CHECK_OK(weft__co_free(co));
}

int main(void)
{
    RUN(test_method);
    RUN(test_ping_pong);
    RUN(test_chain);
    RUN(test_pool_reuse);
    RUN(test_lazy_commit);
    RUN(test_callee_saved_exact);
    RUN(test_callee_saved_c);
    RUN(test_deep_recursion);
    RUN(test_fp_rule_polite);
    RUN(test_fp_rule_first_entry);
    RUN(test_fp_rule_broken);
    RUN(test_stack_overflow);
    RUN(test_overflow_in_switch);
    RUN(test_misuse);
    RUN(test_exit_to);
    RUN(test_threads);
    RUN(test_migrate);
    return check_done();
}
