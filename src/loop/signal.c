/*
 * signal.c - signals for the loop: awaitable signals through a signalfd
 * (weft_co_signal_wait), and asyncio.run's Ctrl-C (opts.sigint).
 *
 * Awaitable signals. signalfd only reads signals that are blocked, and a
 * process-directed signal goes to any thread that does not block it (pool
 * workers, user threads), where it would take its default action. So the
 * first wait for a signal makes the loop its OWNER (one loop per signal,
 * process-wide): the signal is blocked on the loop's thread and added to
 * the loop's signalfd, and a process-wide handler `forward` re-sends it
 * with tgkill to the owner's thread from whichever thread it lands on,
 * where it stays pending until the signalfd reads it. The signalfd is
 * watched by the backend (the loop's fd dispatch hands its reports here).
 * When the run ends: previous handlers back, owner cleared, signalfd
 * closed, then the signals we blocked unblocked (a pending one then meets
 * the previous disposition). A forward racing the teardown reads owner 0
 * after the handler was restored and re-raises on its own thread, where
 * the restored disposition applies on return: nothing is lost.
 *
 * Ctrl-C (asyncio.run). A signalfd sees nothing while a coroutine computes
 * without yielding, and a second Ctrl-C must interrupt exactly then. So
 * SIGINT is handled by a plain handler (never blocked): the first pushes a
 * node on the loop's remote queue (a lock-free Treiber push and an eventfd
 * write: async-signal-safe), which the loop takes at its next turn and
 * cancels main; the second restores the previous disposition and raises
 * SIGINT again, which the previous disposition meets when the handler
 * returns (by default the process ends by SIGINT, as the shell expects).
 * `sigint_inside` counts handlers running so that the loop can wait for
 * them before its memory goes (the handler may run on any thread).
 */
#include "internal.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../platform/platform.h"

#define NSIG_MAX 64

/* A coroutine waiting for signals. */
struct sigwaiter {
    struct sigwaiter *next;
    uint64_t mask;
    int got; /* the signal that woke it */
    struct weft__waiter w;
};

struct weft__loop_signals {
    int fd;                   /* the signalfd, -1 until a signal is claimed */
    bool armed;               /* fd armed in the backend (one-shot) */
    bool counted;             /* armed counts in L->armed (waiters exist) */
    uint64_t claimed;         /* signals this loop owns */
    uint64_t blocked_by_us;   /* of those, the ones that were not blocked before */
    uint64_t pending;         /* read with nobody waiting: for the next wait */
    struct sigwaiter *waiters;
    bool sigint_on;           /* the built-in SIGINT handling runs */
};

/* ---- process-wide state ---------------------------------------------------- */

/* Per signal: the owner loop's thread id (0: none), its loop, and the
 * disposition before the owner's handler (written by the owner only). */
static _Atomic pid_t owner_tid[NSIG_MAX + 1];
static _Atomic(struct weft_loop *) owner_loop[NSIG_MAX + 1];
static struct sigaction saved_action[NSIG_MAX + 1];

/* The built-in SIGINT handling: one loop at a time. */
static _Atomic(struct weft_loop *) sigint_loop;
static _Atomic int sigint_count;
static _Atomic int sigint_inside;
static struct sigaction sigint_old;

static pid_t my_tid(void)
{
    return (pid_t)syscall(SYS_gettid);
}

static inline uint64_t bit(int sig)
{
    return UINT64_C(1) << (sig - 1);
}

static void forward(int sig)
{
    int e = errno;
    pid_t tid = sig > 0 && sig <= NSIG_MAX
                    ? atomic_load_explicit(&owner_tid[sig], memory_order_seq_cst)
                    : 0;
    if (tid == my_tid())
        ; /* the owner unblocked it on its own thread: sending it back would
             loop; dropped */
    else if (tid)
        syscall(SYS_tgkill, getpid(), tid, sig);
    else
        raise(sig); /* the owner has gone: its previous disposition is back */
    errno = e;
}

static void on_sigint(int sig)
{
    (void)sig;
    int e = errno;
    atomic_fetch_add_explicit(&sigint_inside, 1, memory_order_seq_cst);
    struct weft_loop *L = atomic_load_explicit(&sigint_loop, memory_order_seq_cst);
    bool again = true;
    if (L && atomic_fetch_add_explicit(&sigint_count, 1, memory_order_relaxed) == 0) {
        L->sigint_node.kind = RN_SIGINT;
        again = weft__loop_remote_push(L, &L->sigint_node) != 0; /* closing: as a second */
    }
    if (again) {
        /* The second (or the loop has gone): the previous disposition,
         * delivered when this handler returns (SIGINT is blocked in it). */
        sigaction(SIGINT, &sigint_old, NULL);
        raise(SIGINT);
    }
    atomic_fetch_sub_explicit(&sigint_inside, 1, memory_order_seq_cst);
    errno = e;
}

/* ---- the loop's record ------------------------------------------------------ */

static struct weft__loop_signals *sigs(struct weft_loop *L)
{
    if (!L->sig) {
        L->sig = calloc(1, sizeof *L->sig);
        if (L->sig)
            L->sig->fd = -1;
    }
    return L->sig;
}

/* ---- built-in SIGINT ---------------------------------------------------------- */

static void sigint_start(struct weft_loop *L, bool fresh);

void weft__loop_signals_start(struct weft_loop *L, const weft_loop_opts_t *o)
{
    int mode = o->sigint;
    if (mode == WEFT_LOOP_SIGINT_OFF)
        return;
    struct sigaction cur;
    if (sigaction(SIGINT, NULL, &cur) != 0)
        return;
    if (mode == WEFT_LOOP_SIGINT_AUTO &&
        (my_tid() != getpid() || (cur.sa_flags & SA_SIGINFO) || cur.sa_handler != SIG_DFL))
        return; /* asyncio.run: only on the main thread, only over the default */
    sigint_start(L, true);
}

/* Install the built-in SIGINT handling for L (unless another loop has it);
 * fresh: at the start of the run (no SIGINT counted yet), else again after
 * a failed claim took it back (the count stays). */
static void sigint_start(struct weft_loop *L, bool fresh)
{
    /* A loop that awaits SIGINT owns it (weft_co_signal_wait): its
     * forwarding handler stays; no built-in handling over it. */
    if (atomic_load_explicit(&owner_loop[SIGINT], memory_order_acquire) != NULL)
        return;
    struct weft_loop *none = NULL;
    if (!atomic_compare_exchange_strong_explicit(&sigint_loop, &none, L, memory_order_seq_cst,
                                                 memory_order_relaxed))
        return; /* another loop handles SIGINT */
    struct weft__loop_signals *S = sigs(L);
    if (!S) {
        atomic_store_explicit(&sigint_loop, NULL, memory_order_seq_cst);
        return;
    }
    if (fresh)
        atomic_store_explicit(&sigint_count, 0, memory_order_relaxed);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGINT, &sa, &sigint_old) != 0) {
        atomic_store_explicit(&sigint_loop, NULL, memory_order_seq_cst);
        return;
    }
    S->sigint_on = true;
}

static void sigint_stop(struct weft_loop *L)
{
    struct weft__loop_signals *S = L->sig;
    if (!S || !S->sigint_on)
        return;
    S->sigint_on = false;
    /* Unless a second SIGINT already did: give SIGINT back, then stop
     * handlers from using L, then wait for those still inside. */
    if (atomic_load_explicit(&sigint_count, memory_order_relaxed) < 2)
        sigaction(SIGINT, &sigint_old, NULL);
    atomic_store_explicit(&sigint_loop, NULL, memory_order_seq_cst);
    unsigned step = 0;
    while (atomic_load_explicit(&sigint_inside, memory_order_seq_cst) != 0)
        weft__backoff(&step);
}

void weft__loop_sigint_event(struct weft_loop *L)
{
    /* The first SIGINT: cancel main (asyncio.run's _on_sigint). */
    if (L->main && !L->main_done)
        weft__cotask_cancel_local(L->main);
}

/* ---- awaitable signals ----------------------------------------------------------- */

static bool catchable(int sig)
{
    if (sig < 1 || sig > NSIG_MAX)
        return false;
    switch (sig) {
    case SIGKILL: case SIGSTOP: case SIGSEGV: case SIGBUS: case SIGFPE: case SIGILL:
    case SIGTRAP:
        return false;
    default:
        break;
    }
    /* 32 .. SIGRTMIN-1 belong to the C library (thread cancellation, setxid). */
    return sig < 32 || (sig >= SIGRTMIN && sig <= SIGRTMAX);
}

static void release_signal(int sig)
{
    sigaction(sig, &saved_action[sig], NULL);
    atomic_store_explicit(&owner_tid[sig], 0, memory_order_seq_cst);
    atomic_store_explicit(&owner_loop[sig], NULL, memory_order_release);
}

/* Undo what a failed claim took: each signal in got gets its previous
 * disposition back and, if the claim blocked it, is unblocked again (one
 * that came meanwhile is then delivered as it would have been without
 * the claim); and the built-in SIGINT handling comes back if the claim
 * had stopped it. */
static void unclaim(struct weft_loop *L, struct weft__loop_signals *S, uint64_t got,
                    bool sigint_was_on)
{
    sigset_t set;
    sigemptyset(&set);
    for (int sig = 1; sig <= NSIG_MAX; sig++) {
        if (!(got & bit(sig)))
            continue;
        release_signal(sig);
        if (S->blocked_by_us & bit(sig)) {
            S->blocked_by_us &= ~bit(sig);
            sigaddset(&set, sig);
        }
    }
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    /* (After a second SIGINT the previous disposition is back for good.) */
    if (sigint_was_on && atomic_load_explicit(&sigint_count, memory_order_relaxed) < 2)
        sigint_start(L, false);
}

/* Make the loop the owner of every signal in mask: all of them, or (on an
 * error) none of those it did not own before. */
static int claim(struct weft_loop *L, struct weft__loop_signals *S, uint64_t mask)
{
    uint64_t add = mask & ~S->claimed;
    if (!add)
        return 0;
    if (add & bit(SIGINT)) {
        /* Another loop's built-in Ctrl-C handling has SIGINT: taking it
         * over would silence that loop's, and its end would put SIGINT's
         * old disposition back under this loop's waiters. */
        struct weft_loop *h = atomic_load_explicit(&sigint_loop, memory_order_seq_cst);
        if (h && h != L)
            return -EBUSY;
    }
    bool sigint_was_on = (add & bit(SIGINT)) && S->sigint_on;
    if (sigint_was_on)
        sigint_stop(L); /* the user takes SIGINT over (as add_signal_handler) */
    uint64_t got = 0;
    int err = 0;
    for (int sig = 1; sig <= NSIG_MAX && !err; sig++) {
        if (!(add & bit(sig)))
            continue;
        struct weft_loop *none = NULL;
        if (!atomic_compare_exchange_strong_explicit(&owner_loop[sig], &none, L,
                                                     memory_order_acq_rel,
                                                     memory_order_relaxed)) {
            err = -EBUSY;
            break;
        }
        atomic_store_explicit(&owner_tid[sig], my_tid(), memory_order_seq_cst);
        sigset_t one, old;
        sigemptyset(&one);
        sigaddset(&one, sig);
        pthread_sigmask(SIG_BLOCK, &one, &old);
        if (!sigismember(&old, sig))
            S->blocked_by_us |= bit(sig);
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = forward;
        sa.sa_flags = SA_RESTART;
        sigemptyset(&sa.sa_mask);
        if (sigaction(sig, &sa, &saved_action[sig]) != 0) {
            err = -errno;
            atomic_store_explicit(&owner_tid[sig], 0, memory_order_seq_cst);
            atomic_store_explicit(&owner_loop[sig], NULL, memory_order_release);
            break;
        }
        got |= bit(sig);
    }
    if (!err) {
        sigset_t set;
        sigemptyset(&set);
        for (int sig = 1; sig <= NSIG_MAX; sig++)
            if ((S->claimed | got) & bit(sig))
                sigaddset(&set, sig);
        int fd = signalfd(S->fd, &set, SFD_NONBLOCK | SFD_CLOEXEC);
        if (fd < 0)
            err = -errno;
        else
            S->fd = fd;
    }
    if (err) {
        /* Claimed but not in the signalfd, a signal could never be awaited
         * (a later wait finds nothing new to claim): give them back. */
        unclaim(L, S, got, sigint_was_on);
        return err;
    }
    S->claimed |= got;
    return 0; /* claimed until the run ends */
}

static int arm_fd(struct weft_loop *L, struct weft__loop_signals *S)
{
    if (S->armed)
        return 0;
    int r = L->bops->arm(L->be, S->fd, WEFT__IO_READ, (void *)(intptr_t)(S->fd + 1));
    if (r == 0)
        S->armed = true;
    return r;
}

static void count_armed(struct weft_loop *L, struct weft__loop_signals *S, bool on)
{
    /* While coroutines wait, busy turns poll the backend too (L->armed). */
    if (on != S->counted) {
        if (on)
            L->armed++;
        else
            L->armed--;
        S->counted = on;
    }
}

bool weft__loop_signal_fd_event(struct weft_loop *L, int fd)
{
    struct weft__loop_signals *S = L->sig;
    if (S->fd < 0 || fd != S->fd)
        return false;
    S->armed = false;
    struct signalfd_siginfo si[8];
    for (;;) {
        ssize_t n = read(S->fd, si, sizeof si);
        if (n <= 0)
            break;
        for (size_t i = 0; i < (size_t)n / sizeof si[0]; i++) {
            int sig = (int)si[i].ssi_signo;
            if (sig < 1 || sig > NSIG_MAX)
                continue;
            atomic_store_explicit(&L->st_signals,
                                  atomic_load_explicit(&L->st_signals, memory_order_relaxed) + 1,
                                  memory_order_relaxed);
            bool delivered = false;
            for (struct sigwaiter **p = &S->waiters; *p;) {
                struct sigwaiter *w = *p;
                if (w->mask & bit(sig)) {
                    *p = w->next;
                    w->got = sig;
                    delivered = true;
                    weft__waiter_finish(&w->w, WEFT__W_WOKEN);
                } else {
                    p = &w->next;
                }
            }
            if (!delivered)
                S->pending |= bit(sig);
        }
    }
    if (S->waiters)
        arm_fd(L, S);
    else
        count_armed(L, S, false);
    return true;
}

static int take_pending(struct weft__loop_signals *S, uint64_t mask)
{
    uint64_t p = S->pending & mask;
    if (!p)
        return 0;
    int sig = __builtin_ctzll(p) + 1;
    S->pending &= ~bit(sig);
    return sig;
}

int weft_co_signal_wait_until(uint64_t signals, weft_time_t deadline)
{
    if (!signals || deadline < 0)
        return -EINVAL;
    for (int sig = 1; sig <= NSIG_MAX; sig++)
        if ((signals & bit(sig)) && !catchable(sig))
            return -EINVAL;
    struct weft_loop *L = weft__loop_tls;
    struct weft_task *t = L ? L->current : NULL;
    if (!t)
        return -EPERM;
    struct weft__loop_signals *S = sigs(L);
    if (!S)
        return -ENOMEM;
    int r = claim(L, S, signals);
    if (r)
        return r;
    int sig = take_pending(S, signals);
    if (sig)
        return sig;
    r = arm_fd(L, S);
    if (r)
        return r;
    struct sigwaiter sw = {.mask = signals};
    weft__waiter_init(&sw.w);
    sw.next = S->waiters;
    S->waiters = &sw;
    count_armed(L, S, true);
    for (;;) {
        r = weft__cotask_wait(t, &sw.w, WEFT__W_WAITING, deadline, W_CO);
        if (weft__waiter_state(&sw.w) != WEFT__W_WAITING || r < 0)
            break;
    }
    if (weft__waiter_state(&sw.w) != WEFT__W_WAITING)
        return sw.got; /* finished by fd_event, which unlinked it */
    for (struct sigwaiter **p = &S->waiters; *p; p = &(*p)->next)
        if (*p == &sw) {
            *p = sw.next;
            break;
        }
    if (!S->waiters)
        count_armed(L, S, false);
    return r == WEFT__SCOPE_EXPIRED ? -ETIMEDOUT : r;
}

int weft_co_signal_wait(uint64_t signals)
{
    return weft_co_signal_wait_until(signals, WEFT_FOREVER);
}

bool weft__loop_signals_stop(struct weft_loop *L)
{
    struct weft__loop_signals *S = L->sig;
    if (!S)
        return false;
    bool fired = atomic_load_explicit(&sigint_count, memory_order_relaxed) > 0 && S->sigint_on;
    sigint_stop(L);
    for (int sig = 1; sig <= NSIG_MAX; sig++)
        if (S->claimed & bit(sig))
            release_signal(sig);
    if (S->fd >= 0) {
        L->bops->disarm(L->be, S->fd);
        close(S->fd);
    }
    count_armed(L, S, false);
    if (S->blocked_by_us) {
        sigset_t set;
        sigemptyset(&set);
        for (int sig = 1; sig <= NSIG_MAX; sig++)
            if (S->blocked_by_us & bit(sig))
                sigaddset(&set, sig);
        pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    }
    free(S);
    L->sig = NULL;
    return fired;
}
