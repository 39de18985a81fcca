/*
 * switch.S (AArch64, AAPCS64) - weft's context switch.
 *
 *   void *weft__ctx_switch(void **save_sp, void *load_sp, void *transfer);
 *        x0 = where to store the current stack pointer
 *        x1 = the stack pointer of the context to resume
 *        x2 = a value handed to the resumed context (its return value)
 *
 * Only the registers AAPCS64 makes callee-saved are kept: x19-x28, the frame
 * pointer x29, the link register x30 (where this call returns), sp, and the
 * low 64 bits of v8-v15 (d8-d15; the upper halves are caller-saved).
 * Everything else (x0-x18, v0-v7, v16-v31, NZCV, FPSR) is caller-saved: the
 * compiler already assumes a call clobbers it. The saved registers go on the
 * suspended context's own stack in one 160-byte frame (sp stays 16-aligned),
 * so the context record is one word (its stack pointer):
 *
 *       higher addresses
 *     +-----------+-----------+
 *     | d14       | d15       |  sp + 144
 *     | d12       | d13       |  sp + 128
 *     | d10       | d11       |  sp + 112
 *     | d8        | d9        |  sp + 96
 *     | x29 (fp)  | x30 (lr)  |  sp + 80   lr = where the context continues
 *     | x27       | x28       |  sp + 64
 *     | x25       | x26       |  sp + 48
 *     | x23       | x24       |  sp + 32
 *     | x21       | x22       |  sp + 16
 *     | x19       | x20       |  sp + 0    <- *save_sp
 *     +-----------+-----------+
 *       lower addresses
 *
 * The resumed context is entered with `br x30`, not `ret`: `ret` is
 * predicted from the return-address stack, which holds *this* context's
 * return address, never the other's, so every switch would be a
 * mispredicted return; `br` goes through the indirect-branch predictor,
 * which learns the alternation. (On x86-64 the same change took a round
 * trip from 22.7 to 5.0 ns; not measured on AArch64 hardware here.) The
 * file carries no BTI property note, so `br` needs no landing pad.
 *
 * A fresh context (weft__ctx_make in src/arch/arch.c) is a stack prepared
 * with this frame: lr = weft__ctx_trampoline, x19 = the entry function,
 * x20 = its argument, x29 = 0 (ends the frame chain), sp + 160 aligned
 * to 16.
 *
 * FP control word. FPCR (rounding mode, flush-to-zero, default-NaN, trap
 * enables) is callee-saved in AAPCS64 in the sense that a call returns with
 * the FPCR it was called with. weft does not save or restore it on a switch
 * (an `mrs`/`msr fpcr` pair is cheap on some cores and synchronising on
 * others); it keeps the promise by a rule instead
 * (docs/coroutines-internals.md):
 *
 *   The FP control state belongs to the thread, not to a context. Code may
 *   change it between two switches but must restore it before its next
 *   switch (yield, await, return from the coroutine), exactly as the ABI
 *   obliges a function to restore it before it returns. A new context starts
 *   with the control state in effect when it is first entered, which under
 *   the rule is the state of the thread that runs it.
 *
 * Under that rule FPCR is the same at every switch on a thread, so every
 * switch returns with the FPCR it was called with. Debug builds (NDEBUG
 * unset) check the rule in C (src/co/co.c) and abort naming the coroutine
 * that broke it.
 */
#if defined(__aarch64__)

        .text

        .globl  weft__ctx_switch
        .hidden weft__ctx_switch
        .type   weft__ctx_switch, %function
        .p2align 4
weft__ctx_switch:
        .cfi_startproc
        sub     sp, sp, #160
        .cfi_adjust_cfa_offset 160
        stp     x19, x20, [sp, #0]
        stp     x21, x22, [sp, #16]
        stp     x23, x24, [sp, #32]
        stp     x25, x26, [sp, #48]
        stp     x27, x28, [sp, #64]
        stp     x29, x30, [sp, #80]
        stp     d8,  d9,  [sp, #96]
        stp     d10, d11, [sp, #112]
        stp     d12, d13, [sp, #128]
        stp     d14, d15, [sp, #144]
        mov     x9, sp
        str     x9, [x0]                /* suspend: remember where we are */
        mov     sp, x1                  /* resume the other context */
        ldp     x19, x20, [sp, #0]
        ldp     x21, x22, [sp, #16]
        ldp     x23, x24, [sp, #32]
        ldp     x25, x26, [sp, #48]
        ldp     x27, x28, [sp, #64]
        ldp     x29, x30, [sp, #80]
        ldp     d8,  d9,  [sp, #96]
        ldp     d10, d11, [sp, #112]
        ldp     d12, d13, [sp, #128]
        ldp     d14, d15, [sp, #144]
        add     sp, sp, #160
        .cfi_adjust_cfa_offset -160
        mov     x0, x2                  /* the transfer value is its return value */
        br      x30                     /* not `ret`: see above */
        .cfi_endproc
        .size   weft__ctx_switch, .-weft__ctx_switch

/*
 * First code run on a fresh context, reached by the `br` above. x0 holds
 * the transfer value, x19 the entry function, x20 its argument. Calls
 * entry(transfer, arg), which must never return (the coroutine layer ends
 * every context with a final switch away); brk traps if it does.
 */
        .globl  weft__ctx_trampoline
        .hidden weft__ctx_trampoline
        .type   weft__ctx_trampoline, %function
        .p2align 4
weft__ctx_trampoline:
        .cfi_startproc
        .cfi_undefined x30              /* outermost frame: unwinders stop here */
        mov     x1, x20
        blr     x19
        brk     #0
        .cfi_endproc
        .size   weft__ctx_trampoline, .-weft__ctx_trampoline

#endif /* __aarch64__ */

/* Neither function needs an executable stack. */
#if defined(__linux__) && defined(__ELF__)
        .section .note.GNU-stack, "", %progbits
#endif
