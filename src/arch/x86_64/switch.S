/*
 * switch.S (x86-64, System V) - weft's context switch.
 *
 *   void *weft__ctx_switch(void **save_sp, void *load_sp, void *transfer);
 *        rdi = where to store the current stack pointer
 *        rsi = the stack pointer of the context to resume
 *        rdx = a value handed to the resumed context (its return value)
 *
 * Only the registers the SysV ABI makes callee-saved are kept: rbx, rbp,
 * r12-r15 and rsp. Everything else (rax, rcx, rdx, rsi, rdi, r8-r11, all of
 * xmm0-15, the x87 stack, the status flags) is caller-saved: the C compiler
 * already assumes a call clobbers it, and weft__ctx_switch is a call. The
 * saved registers are pushed on the suspended context's own stack, so the
 * context record is one word (its stack pointer):
 *
 *       higher addresses
 *     +------------------+
 *     | return address   |  sp + 48   (where the resumed context continues)
 *     | rbp              |  sp + 40
 *     | rbx              |  sp + 32
 *     | r12              |  sp + 24
 *     | r13              |  sp + 16
 *     | r14              |  sp + 8
 *     | r15              |  sp + 0    <- *save_sp
 *     +------------------+
 *       lower addresses
 *
 * The return into the resumed context is `pop %rcx; jmp *%rcx`, not `ret`.
 * A `ret` is predicted from the return-stack buffer, which holds the return
 * address of *this* context's call, never the other context's: every switch
 * was a mispredicted return (measured here: 22.7 ns per round trip with
 * `ret`, 5.0 ns with the jump, which the indirect-branch predictor learns).
 *
 * A fresh context (weft__ctx_make in src/arch/arch.c) is a stack prepared
 * with this frame: return address = weft__ctx_trampoline, rbx = the entry
 * function, r12 = its argument, rbp = 0 (ends the frame-pointer chain), and
 * sp + 56 aligned to 16, so that the trampoline's `call` enters the entry
 * function with the ABI's alignment (rsp + 8 a multiple of 16).
 *
 * FP control words. The ABI makes the control bits of MXCSR (rounding mode,
 * flush-to-zero, denormals-are-zero, exception masks) and the x87 control
 * word (precision and rounding control) callee-saved: a call returns with the
 * control bits it was called with. boost.context keeps that promise by
 * storing and reloading both (stmxcsr/ldmxcsr, fnstcw/fldcw) on every switch;
 * fldcw and ldmxcsr are serialising enough that this costs most of its
 * ~160 ns per switch. weft does not touch them at all, and keeps the promise
 * by a rule instead (docs/coroutines-internals.md):
 *
 *   The FP control state belongs to the thread, not to a context. Code may
 *   change it between two switches but must restore it before its next
 *   switch (yield, await, return from the coroutine), exactly as the ABI
 *   obliges a function to restore it before it returns. A new context starts
 *   with the control state in effect when it is first entered, which under
 *   the rule is the state of the thread that runs it.
 *
 * Under that rule the control bits are the same at every switch on a thread,
 * so every switch returns with the bits it was called with: the ABI's
 * guarantee, for zero instructions. Debug builds (NDEBUG unset) check the
 * rule in C (src/co/co.c) and abort naming the coroutine that broke it.
 */
#if defined(__x86_64__)

        .text

        .globl  weft__ctx_switch
        .hidden weft__ctx_switch
        .type   weft__ctx_switch, @function
        .p2align 4
weft__ctx_switch:
        .cfi_startproc
        pushq   %rbp
        .cfi_adjust_cfa_offset 8
        pushq   %rbx
        .cfi_adjust_cfa_offset 8
        pushq   %r12
        .cfi_adjust_cfa_offset 8
        pushq   %r13
        .cfi_adjust_cfa_offset 8
        pushq   %r14
        .cfi_adjust_cfa_offset 8
        pushq   %r15
        .cfi_adjust_cfa_offset 8
        movq    %rsp, (%rdi)            /* suspend: remember where we are */
        movq    %rsi, %rsp              /* resume the other context */
        popq    %r15
        .cfi_adjust_cfa_offset -8
        popq    %r14
        .cfi_adjust_cfa_offset -8
        popq    %r13
        .cfi_adjust_cfa_offset -8
        popq    %r12
        .cfi_adjust_cfa_offset -8
        popq    %rbx
        .cfi_adjust_cfa_offset -8
        popq    %rbp
        .cfi_adjust_cfa_offset -8
        popq    %rcx                    /* the resumed context's return address */
        .cfi_adjust_cfa_offset -8
        .cfi_register rip, rcx
        movq    %rdx, %rax              /* the transfer value is its return value */
        jmpq    *%rcx
        .cfi_endproc
        .size   weft__ctx_switch, .-weft__ctx_switch

/*
 * First code run on a fresh context, reached by the jump above. rax holds
 * the transfer value, rbx the entry function, r12 its argument. Calls
 * entry(transfer, arg), which must never return (the coroutine layer ends
 * every context with a final switch away); ud2 traps if it does.
 */
        .globl  weft__ctx_trampoline
        .hidden weft__ctx_trampoline
        .type   weft__ctx_trampoline, @function
        .p2align 4
weft__ctx_trampoline:
        .cfi_startproc
        .cfi_undefined rip              /* outermost frame: unwinders stop here */
        movq    %rax, %rdi
        movq    %r12, %rsi
        callq   *%rbx
        ud2
        .cfi_endproc
        .size   weft__ctx_trampoline, .-weft__ctx_trampoline

#endif /* __x86_64__ */

/* Neither function needs an executable stack. */
#if defined(__linux__) && defined(__ELF__)
        .section .note.GNU-stack, "", %progbits
#endif
