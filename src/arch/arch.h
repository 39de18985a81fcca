/*
 * arch.h - the context switch: the only architecture-specific code in weft's
 * coroutine layer. Internal to libweft.
 *
 * A context is a suspended stack: everything needed to resume it is pushed
 * on that stack by weft__ctx_switch, so a context is just one saved stack
 * pointer. The assembly lives in src/arch/<arch>/switch.S, whose opening
 * comment draws the saved-register layout and states the rule for the FP
 * control words (the switch does not save them: code that changes the
 * rounding mode, flush-to-zero or exception masks restores them before its
 * next switch). docs/coroutines-internals.md has the long version.
 *
 * This layer knows nothing about stacks' allocation, names or sanitizers;
 * src/co/ builds coroutines on it.
 */
#ifndef WEFT_ARCH_H
#define WEFT_ARCH_H

#include <stddef.h>
#include <stdint.h>

/* The entry of a fresh context: transfer is the value passed by the first
 * switch into it, arg the argument given to weft__ctx_make. It must never
 * return: it ends by switching away for good. */
typedef void (*weft__ctx_entry_fn)(void *transfer, void *arg);

/*
 * Save the callee-saved registers of the caller on its stack, store its
 * stack pointer in *save_sp, and resume the context whose saved stack
 * pointer is load_sp. Returns (in the caller, once something switches back
 * to it) the transfer value that switch passed. A fresh context receives
 * the transfer value as its entry's first argument.
 * Switching to oneself is not supported (load_sp would be stale); the
 * coroutine layer refuses it.
 */
void *weft__ctx_switch(void **save_sp, void *load_sp, void *transfer);

/*
 * Prepare a fresh context on the stack [lo, hi): returns the stack pointer
 * to hand to weft__ctx_switch. The first switch to it calls
 * entry(transfer, arg) on that stack, with the ABI's stack alignment and a
 * terminated frame chain. hi need not be aligned (it is rounded down);
 * the stack must have at least 256 bytes. Writes only the top ~200 bytes
 * below hi.
 */
void *weft__ctx_make(void *lo, void *hi, weft__ctx_entry_fn entry, void *arg);

/* Which switch was built: "asm-x86_64" or "asm-aarch64". A static string. */
const char *weft__switch_method(void);

/*
 * The FP control state of the calling thread, as one comparable number:
 * on x86-64 the control bits of MXCSR (DAZ, exception masks, rounding,
 * FTZ) in bits 0-15 and the x87 control word in bits 16-31; on AArch64 the
 * FPCR. Status (exception flag) bits are excluded: the ABI makes them
 * caller-saved. Used by debug builds to check the FP control rule.
 */
static inline uint64_t weft__fpctl_read(void)
{
#if defined(__x86_64__)
    uint32_t mxcsr;
    uint16_t cw;
    __asm__ __volatile__("stmxcsr %0" : "=m"(mxcsr));
    __asm__ __volatile__("fnstcw %0" : "=m"(cw));
    return (uint64_t)(mxcsr & 0xffc0u) | ((uint64_t)cw << 16);
#elif defined(__aarch64__)
    uint64_t fpcr;
    __asm__ __volatile__("mrs %0, fpcr" : "=r"(fpcr));
    return fpcr;
#else
    return 0;
#endif
}

#endif /* WEFT_ARCH_H */
