/*
 * arch.c - the C half of the context switch: building a fresh context's
 * first frame to match the layout switch.S pops, and naming the method.
 */
#include "arch.h"

#include <string.h>

#if !defined(__x86_64__) && !defined(__aarch64__)
#error "weft: no context switch for this architecture (src/arch/<arch>/switch.S)"
#endif

/* The trampoline in switch.S: the first code run on a fresh context. */
extern void weft__ctx_trampoline(void);

void *weft__ctx_make(void *lo, void *hi, weft__ctx_entry_fn entry, void *arg)
{
    (void)lo;
    uintptr_t top = (uintptr_t)hi & ~(uintptr_t)15;
#if defined(__x86_64__)
    /* Frame (see switch.S): r15 r14 r13 r12 rbx rbp ret, 7 words, with
     * sp + 56 == top: after the trampoline's `call` pushes its return
     * address, the entry starts with rsp + 8 a multiple of 16. */
    uintptr_t *sp = (uintptr_t *)(top - 7 * sizeof(uintptr_t));
    memset(sp, 0, 7 * sizeof(uintptr_t));
    sp[3] = (uintptr_t)arg;                  /* r12 */
    sp[4] = (uintptr_t)entry;                /* rbx */
    sp[5] = 0;                               /* rbp: end of frame chain */
    sp[6] = (uintptr_t)weft__ctx_trampoline; /* return address */
#elif defined(__aarch64__)
    /* Frame (see switch.S): 20 words; x19 at 0, x20 at 1, x29 at 10, x30 at
     * 11; sp + 160 == top, 16-aligned as AAPCS64 requires at all times. */
    uintptr_t *sp = (uintptr_t *)(top - 160);
    memset(sp, 0, 160);
    sp[0] = (uintptr_t)entry;                 /* x19 */
    sp[1] = (uintptr_t)arg;                   /* x20 */
    sp[10] = 0;                               /* x29: end of frame chain */
    sp[11] = (uintptr_t)weft__ctx_trampoline; /* x30 */
#endif
    return sp;
}

const char *weft__switch_method(void)
{
#if defined(__x86_64__)
    return "asm-x86_64";
#elif defined(__aarch64__)
    return "asm-aarch64";
#endif
}
