/*
 * guard.c - turning a fault in a coroutine's guard region into a message.
 *
 * A coroutine that runs off the bottom of its stack touches the PROT_NONE
 * guard below it (stack.c) and the kernel raises SIGSEGV. That signal cannot
 * be handled on the overflowed stack, so every thread that runs coroutines
 * gets an alternate signal stack (unless it already has one: ASan gives each
 * thread its own) and the handler is installed with SA_ONSTACK.
 *
 * The handler decides "overflow" only for the coroutine running on the
 * faulting thread (a fault is synchronous: the thread that overflows is the
 * one that faults), when either
 *   - the fault address is inside that coroutine's guard region, or
 *   - the interrupted stack pointer is already below the usable stack (a
 *     frame larger than the guard jumped over it) and the fault is too.
 * Then it writes "weft: stack overflow in coroutine 'NAME' (N KiB stack)"
 * to stderr with write(2) and calls abort(). Every other SIGSEGV goes to the
 * handler that was installed before weft's (ASan's, the program's), or gets
 * the default action (the faulting instruction is retried with SIG_DFL in
 * place, so the process dies of the original fault with a core dump).
 *
 * Everything the handler touches is async-signal-safe: the current-context
 * pointer is initial-exec TLS (a plain %fs/tpidr load, no __tls_get_addr
 * that could allocate), the record lives in the coroutine's own mapping,
 * and output is one write(2).
 *
 * The handler is installed once per process, when the first thread context
 * is set up. A program that installs its own SIGSEGV handler afterwards
 * replaces weft's: overflows then still stop at the guard page (never
 * silent corruption), only without the name.
 */
#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

__thread struct weft__co *weft__co_current_tls __attribute__((tls_model("initial-exec")));

static pthread_once_t install_once = PTHREAD_ONCE_INIT;
static int install_rc;
static struct sigaction prev_segv; /* written once, before our handler can run */
static pthread_key_t altstack_key;

/* How far below the guard a skipping frame may land and still be blamed on
 * the coroutine: beyond this the fault is somebody else's. */
#define SKIP_WINDOW ((uintptr_t)16 << 20)

struct altstack {
    void *base;
    size_t size;
};

static uintptr_t interrupted_sp(void *ucv)
{
    const ucontext_t *uc = ucv;
#if defined(__x86_64__)
    return (uintptr_t)uc->uc_mcontext.gregs[REG_RSP];
#elif defined(__aarch64__)
    return (uintptr_t)uc->uc_mcontext.sp;
#else
    (void)uc;
    return 0;
#endif
}

/* Append s to buf at *n (bounded). */
static void put(char *buf, size_t cap, size_t *n, const char *s)
{
    while (*s && *n + 1 < cap)
        buf[(*n)++] = *s++;
}

static void put_uint(char *buf, size_t cap, size_t *n, uint64_t v)
{
    char tmp[24];
    int i = 0;
    do {
        tmp[i++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (i > 0 && *n + 1 < cap)
        buf[(*n)++] = tmp[--i];
}

static void chain(int sig, siginfo_t *si, void *uc)
{
    if (prev_segv.sa_handler == SIG_DFL || prev_segv.sa_handler == SIG_IGN) {
        /* Restore the default and let the fault happen again (or, for a
         * SIGSEGV sent with kill, raise it again): the process dies of it
         * as it would have without weft. SIG_IGN cannot hold off a real
         * fault either. */
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        sigemptyset(&dfl.sa_mask);
        sigaction(sig, &dfl, NULL);
        if (si->si_code <= 0)
            raise(sig);
        return;
    }
    if (prev_segv.sa_flags & SA_SIGINFO)
        prev_segv.sa_sigaction(sig, si, uc);
    else
        prev_segv.sa_handler(sig);
}

/* Did co's stack overflow at this fault (addr, sp)? own: co is the
 * current coroutine; else the one being left by a switch in progress,
 * which must then also be where sp is (its guard or its stack). */
static bool overflowed(const struct weft__co *co, uintptr_t addr, uintptr_t sp, bool own)
{
    if (!co || co->is_thread || !co->map)
        return false;
    uintptr_t glo = (uintptr_t)co->map, lo = (uintptr_t)co->lo;
    uintptr_t floor = glo > SKIP_WINDOW ? glo - SKIP_WINDOW : 0;
    if (!own && !(sp >= glo && sp < lo + co->size))
        return false;
    bool in_guard = addr >= glo && addr < lo;
    bool skipped = sp < lo && sp >= floor && addr < lo && addr >= floor;
    return in_guard || skipped;
}

static void on_segv(int sig, siginfo_t *si, void *uc)
{
    int saved_errno = errno;
    struct weft__co *cur = weft__co_current_tls;
    if (cur && si->si_code > 0) {
        uintptr_t addr = (uintptr_t)si->si_addr;
        uintptr_t sp = interrupted_sp(uc);
        /* A switch names its target current just before it leaves the old
         * stack, and its pushes (and a sanitizer's calls) still land
         * there: an overflow in that window is the old coroutine's. */
        struct weft__co *from = cur->switched_from;
        struct weft__co *co = overflowed(from, addr, sp, false) ? from
                              : overflowed(cur, addr, sp, true) ? cur
                                                                : NULL;
        if (co) {
            char msg[160];
            size_t n = 0;
            put(msg, sizeof msg, &n, "weft: stack overflow in coroutine '");
            put(msg, sizeof msg, &n, co->name);
            put(msg, sizeof msg, &n, "' (");
            put_uint(msg, sizeof msg, &n, co->size / 1024);
            put(msg, sizeof msg, &n, " KiB stack)\n");
            ssize_t w = write(STDERR_FILENO, msg, n);
            (void)w;
            abort();
        }
    }
    errno = saved_errno;
    chain(sig, si, uc);
}

static void free_altstack(void *p)
{
    struct altstack *as = p;
    stack_t cur;
    if (sigaltstack(NULL, &cur) == 0 && cur.ss_sp == as->base) {
        stack_t off;
        memset(&off, 0, sizeof off);
        off.ss_flags = SS_DISABLE;
        sigaltstack(&off, NULL);
    }
    /* The descriptor lives at the bottom of the mapping itself. */
    munmap(as->base, as->size);
}

static void install(void)
{
    if (pthread_key_create(&altstack_key, free_altstack) != 0) {
        install_rc = -ENOMEM;
        return;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSEGV, &sa, &prev_segv) != 0)
        install_rc = -errno;
}

int weft__co_guard_thread_init(void)
{
    pthread_once(&install_once, install);
    if (install_rc)
        return install_rc;
    stack_t cur;
    if (sigaltstack(NULL, &cur) == 0 && !(cur.ss_flags & SS_DISABLE))
        return 0; /* the thread has one already (ASan's, or the program's) */
    size_t size = 64 * 1024;
#ifdef _SC_MINSIGSTKSZ
    long min = sysconf(_SC_MINSIGSTKSZ);
    if (min > 0 && (size_t)min * 4 > size)
        size = (size_t)min * 4;
#endif
    void *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED)
        return -ENOMEM;
    struct altstack *as = base;
    as->base = base;
    as->size = size;
    stack_t ss;
    memset(&ss, 0, sizeof ss);
    /* The handler's frames grow down from the top; the descriptor at the
     * bottom is far out of their way. */
    ss.ss_sp = base;
    ss.ss_size = size;
    if (sigaltstack(&ss, NULL) != 0) {
        munmap(base, size);
        return -ENOMEM;
    }
    pthread_setspecific(altstack_key, as);
    return 0;
}
