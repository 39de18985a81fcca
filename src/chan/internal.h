/*
 * internal.h - the channel's private layout and the pieces that chan.c and
 * select.c share.
 *
 * A channel is three things (docs/chan.md draws them):
 *
 * 1. The ring (capacity > 0): a bounded lock-free MPMC array queue with a
 *    stamp per slot, after Dmitry Vyukov's "Bounded MPMC queue" (1024cores,
 *    2010) as crossbeam-channel's array flavour encodes it: head and tail
 *    hold lap|index, the slot's stamp says whose turn the slot is, and
 *    closing sets a MARK bit in tail so that no send can slip in after it.
 *    This is the fast path: a send or receive that finds the ring neither
 *    full nor empty is one CAS, one copy and one store, and takes no lock.
 *
 * 2. The waiter queues: a small lock (parking-lot based, so that it too is
 *    coroutine-safe) protects two FIFO lists of nodes, blocked receivers and
 *    blocked senders. Each node points at the weft__waiter of the context
 *    that blocks (shared by every node of one select) and at its element.
 *
 * 3. The pump (weft__chan_pump), run under the lock, which matches state
 *    with waiters: ring -> waiting receivers, waiting senders -> ring, and
 *    for an unbuffered channel waiting sender -> waiting receiver. Whoever
 *    changes the channel in a way a waiter may care about runs it: a waiter
 *    right after queueing itself, a fast-path operation that sees (after a
 *    seq_cst fence) that the other side has waiters, and close.
 *
 * Waking protocol. A node is claimed with weft__waiter_cas(WAITING -> BUSY)
 * under its channel's lock; a failed claim means the waiter was taken by
 * another channel of its select or gave up: the node is DEAD and is left in
 * the queue for its owner to unlink (see Lifetime). The claimer unlinks the
 * node, moves the element, records which case won, and after unlocking
 * finishes the waiter WOKEN (moved), CLOSED, or CHAN_RETRY. RETRY means "the
 * pump claimed you for an element (or a free slot) that a lock-free fast
 * path took first": the owner leaves and starts again. So no claim is ever
 * undone, and a BUSY waiter always reaches a final state. A plain call's
 * node (sel->single) may instead be completed in ONE step, WAITING ->
 * WOKEN, with the node unlinked last (chan.c, take_node).
 *
 * Lifetime. Every blocked operation holds a STAKE in each channel it is
 * queued on (a select: one per node; a plain call: one per call), counted
 * in `inside`, which changes only under the lock (a load and a store, no
 * locked RMW). The stake covers the time in which the owner may still touch
 * the channel. The rules:
 *   - the owner takes it under the lock when it queues its node;
 *   - a claimer that completes a node WOKEN or CLOSED unlinks it and drops
 *     the owner's stake (the owner then sees `queued` false and never
 *     touches the channel again);
 *   - a node completed RETRY keeps its stake: the owner comes back (a plain
 *     call queues again with the same stake, a select drops it under the
 *     lock in weft__chan_leave);
 *   - nobody but its owner unlinks a DEAD node (its waiter left WAITING some
 *     other way: the owner gave up, or another channel of its select won),
 *     so an owner that gave up always finds its node queued, takes the lock,
 *     unlinks it and drops its stake;
 *   - an owner completed through a node without RETRY never touches that
 *     channel again, not even its lock: if it sees its final state before
 *     the (one-step) claimer unlinked the node, it waits on the node's
 *     `queued` flag, since that claimer may be the channel's last user and
 *     free it right after unlocking.
 * The last reference dropped while stakes remain sets ORPHAN (under the
 * lock) and closes the channel; whoever leaves `inside` at exactly ORPHAN
 * when unlocking (weft__chan_unlock_last) frees the channel: the releaser
 * itself if no stake remains, else the last owner to drop its stake. So the
 * common path pays no atomic RMW for the lifetime at all.
 */
#ifndef WEFT_CHAN_INTERNAL_H
#define WEFT_CHAN_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <weft/chan.h>

#include "../park/park.h"
#include "../platform/platform.h"

/* A final waiter state private to channels: claimed, but what the claimer
 * wanted to hand over was taken by a fast path; start the operation again. */
#define WEFT__CHAN_RETRY 5u

/* `inside` flag: the last reference is gone; the last stake frees. */
#define WEFT__CHAN_ORPHAN ((uint64_t)1 << 63)

/* What the nodes of one blocking operation (one select) share. */
struct weft__chan_sel {
    struct weft__waiter w; /* claimed once for the whole select */
    uint32_t winner;       /* the case that completed (written by the claimer
                              before the finish that publishes it) */
    bool single;           /* a plain send/receive (one node, case 0): may be
                              completed in one step (chan.c, take_node) */
};

/* One case of a blocked operation, queued on one channel. Lives on the
 * owner's stack (or heap for a large select) until the owner has left. */
struct weft__chan_node {
    struct weft__chan_node *prev, *next; /* the channel's queue (under lock) */
    struct weft__chan_sel *sel;          /* shared waiter of the operation */
    void *elem;                          /* send: source; receive: destination */
    struct weft__chan_node *done_next;   /* the pump's to-finish list */
    uint32_t idx;                        /* the case index */
    uint32_t done_state;                 /* final state to finish with */
    bool is_send;                        /* which queue of the channel */
    _Atomic bool queued;                 /* still in the queue; set false (release)
                                            by whoever unlinks, under the lock */
};

struct weft__chan_queue {
    struct weft__chan_node *head, *tail;
    uint32_t n; /* nodes queued (live or dead) */
};

struct weft_chan {
    /* Senders' index, alone on its line: lap | index, plus `mark` once closed.
     * For an unbuffered channel only the mark is used. */
    _Alignas(WEFT_CACHELINE) _Atomic uint64_t tail;
    /* Receivers' index, alone on its line: lap | index. */
    _Alignas(WEFT_CACHELINE) _Atomic uint64_t head;

    /* Read-only after creation. */
    _Alignas(WEFT_CACHELINE) unsigned char *slots; /* cap slots of `stride` bytes */
    size_t stride;    /* 8-byte stamp + element, rounded up to 8 */
    size_t elem_size; /* as given at creation */
    size_t cap;       /* as given at creation */
    uint64_t one_lap; /* 2 * mark: one turn round the ring */
    uint64_t mark;    /* next_pow2(cap + 1): the closed bit in tail */

    /* How many nodes wait on each side: written under the lock, read by fast
     * paths after a seq_cst fence to decide whether to run the pump. On its
     * own line so that fast paths reading it do not share a line with the
     * lock. */
    _Alignas(WEFT_CACHELINE) _Atomic uint32_t nrecv;
    _Atomic uint32_t nsend;

    /* The slow side. */
    _Alignas(WEFT_CACHELINE) _Atomic uint32_t lock; /* chan_lock: LOCKED|PARKED bits */
    _Atomic uint32_t refs;                          /* references */
    _Atomic uintptr_t bias;  /* the thread the lock is biased to, or 0 / OFF */
    _Atomic uintptr_t busy;  /* that thread's token while it holds by bias */
    uintptr_t bias_cand;     /* under the lock: the thread counted */
    uint32_t bias_runs;      /* its consecutive acquisitions */
    uint32_t bias_changes;   /* how often the acquiring thread changed */
    _Atomic uint64_t inside;                        /* stakes + ORPHAN, changed under
                                                       the lock only (load + store) */
    struct weft__chan_queue rq;                     /* blocked receivers */
    struct weft__chan_queue sq;                     /* blocked senders */
    _Atomic uint64_t tsan_fence;                    /* see WEFT__CHAN_FENCE */
};

/*
 * The seq_cst fence of the Dekker handshakes. ThreadSanitizer does not model
 * standalone fences; under it every fence becomes a seq_cst read-modify-write
 * of one word of the channel, which orders the two sides the same way (of
 * two RMWs of one word, the later reads the earlier and synchronises with
 * it). Real builds use the fence: a shared word would be a contended line.
 */
#if defined(WEFT_SANITIZE_THREAD)
#define WEFT__CHAN_FENCE(ch)                                                             \
    ((void)atomic_fetch_add_explicit(&(ch)->tsan_fence, 0, memory_order_seq_cst))
#else
#define WEFT__CHAN_FENCE(ch) atomic_thread_fence(memory_order_seq_cst)
#endif

/* A slot: the stamp, then the element. */
static inline _Atomic uint64_t *weft__chan_stamp(struct weft_chan *ch, uint64_t index)
{
    return (_Atomic uint64_t *)(void *)(ch->slots + index * ch->stride);
}
static inline unsigned char *weft__chan_data(struct weft_chan *ch, uint64_t index)
{
    return ch->slots + index * ch->stride + sizeof(uint64_t);
}

/* Copy an element; constant sizes let the compiler inline the usual ones. */
static inline void weft__chan_copy(void *dst, const void *src, size_t n)
{
    switch (n) {
    case 4: memcpy(dst, src, 4); break;
    case 8: memcpy(dst, src, 8); break;
    case 16: memcpy(dst, src, 16); break;
    default: memcpy(dst, src, n); break;
    }
}

/*
 * The channel lock (parking-lot based; see chan.c, "Lock"). Two forms,
 * chosen once per process (weft__chan_asym, set before the first channel
 * exists and never changed):
 *  - asymmetric (membarrier available): the word is 0 or LOCKED; release
 *    is a plain store, then (after a compiler barrier only) a load of the
 *    lot's announce word for the lock's address, which a parker raises and
 *    follows with weft__heavy_barrier before it parks. One locked
 *    instruction per lock/unlock pair instead of two.
 *  - CAS: LOCKED | PARKED bits, released by a CAS (ThreadSanitizer
 *    builds, kernels without membarrier, WEFT_CHAN_LOCK=cas).
 */
extern bool weft__chan_asym;
void weft__chan_lock_slow(struct weft_chan *ch);
void weft__chan_unlock_slow(struct weft_chan *ch);
void weft__chan_unlock_wake(_Atomic uint32_t *lock);
void weft__chan_bias_note(struct weft_chan *ch, uintptr_t self);
#define WEFT__CL_LOCKED 1u
#define WEFT__CL_PARKED 2u

/*
 * The biased lock (asymmetric form only; chan.c, "Bias", has the proof).
 * A channel whose lock one thread has taken WEFT__CHAN_BIAS_AFTER times in
 * a row (say, the loop thread of coroutines that talk through it) is
 * biased to that thread: from then on that thread takes the lock with no
 * locked instruction. It stores its token in `busy`, and holds the lock if
 * the word is free and the bias still its own (a compiler barrier between
 * the store and the loads: the other side pays with weft__heavy_barrier).
 * Any other thread takes the word as usual; if it then finds the channel
 * biased to someone else it revokes the bias for good (bias = OFF, heavy
 * barrier, wait for busy to clear). A thread's token is its thread
 * pointer: unique among live threads, one instruction to read.
 */
#define WEFT__CHAN_BIAS_OFF ((uintptr_t)1)
#define WEFT__CHAN_BIAS_AFTER 16u
/*
 * The token names a thread, not a context, so the bias rests on two rules
 * about coroutines: a context never switches while it holds a channel
 * lock (true: under the lock weft only pushes on a run queue), and a
 * token is never carried across a switch (a coroutine may be resumed on
 * another thread by the co layer, though weft's loops never move one).
 * Hence a read the compiler may not merge with another across a call
 * (__builtin_thread_pointer is `const`), and weft__chan_lock reads it
 * again after its slow path, which may suspend.
 */
#if defined(__x86_64__) && defined(__GNUC__)
#define WEFT__CHAN_TP_ASM "mov %%fs:0, %0"
#elif defined(__aarch64__) && defined(__GNUC__)
#define WEFT__CHAN_TP_ASM "mrs %0, tpidr_el0"
#endif
#ifdef WEFT__CHAN_TP_ASM
#define WEFT__CHAN_HAVE_TP 1
static inline uintptr_t weft__chan_self(void)
{
    uintptr_t tp;
    __asm__ volatile(WEFT__CHAN_TP_ASM : "=r"(tp));
    return tp;
}
#else
extern _Thread_local char weft__chan_self_tls;
static inline uintptr_t weft__chan_self(void)
{
    return (uintptr_t)&weft__chan_self_tls;
}
#endif

static inline void weft__chan_lock(struct weft_chan *ch)
{
    uintptr_t self = weft__chan_self();
    uintptr_t b = atomic_load_explicit(&ch->bias, memory_order_relaxed);
    if (WEFT_LIKELY(b == self)) {
        atomic_store_explicit(&ch->busy, self, memory_order_relaxed);
        atomic_signal_fence(memory_order_seq_cst); /* the light side (barrier.c) */
        if (WEFT_LIKELY(atomic_load_explicit(&ch->lock, memory_order_acquire) == 0 &&
                        atomic_load_explicit(&ch->bias, memory_order_acquire) == self))
            return;
        /* A revoker holds the word: step back and queue up behind it. */
        atomic_store_explicit(&ch->busy, 0, memory_order_release);
    }
    uint32_t z = 0;
    if (WEFT_UNLIKELY(!atomic_compare_exchange_weak_explicit(&ch->lock, &z, WEFT__CL_LOCKED,
                                                             memory_order_acquire,
                                                             memory_order_relaxed)))
        weft__chan_lock_slow(ch); /* may suspend: self is read again below */
    if (WEFT_UNLIKELY(atomic_load_explicit(&ch->bias, memory_order_relaxed) !=
                      WEFT__CHAN_BIAS_OFF))
        weft__chan_bias_note(ch, weft__chan_self());
}
static inline void weft__chan_unlock(struct weft_chan *ch)
{
    uintptr_t self = weft__chan_self();
    if (WEFT_LIKELY(atomic_load_explicit(&ch->busy, memory_order_relaxed) == self)) {
        /* Held by bias (only this thread stores its own token there). */
        atomic_store_explicit(&ch->busy, 0, memory_order_release);
        return;
    }
    if (WEFT_LIKELY(weft__chan_asym)) {
        /* After the store the channel may be freed by its next holder:
         * only the lock's address is used from here on. */
        _Atomic uint32_t *lock = &ch->lock;
        atomic_store_explicit(lock, 0, memory_order_release);
        atomic_signal_fence(memory_order_seq_cst); /* the light side (barrier.c) */
        if (WEFT_UNLIKELY(atomic_load_explicit(weft__park_announce_word(lock),
                                               memory_order_relaxed) != 0))
            weft__chan_unlock_wake(lock);
        return;
    }
    uint32_t l = WEFT__CL_LOCKED;
    if (WEFT_LIKELY(atomic_compare_exchange_strong_explicit(&ch->lock, &l, 0,
                                                            memory_order_release,
                                                            memory_order_relaxed)))
        return;
    weft__chan_unlock_slow(ch);
}

/* Take or drop a stake (under the lock; see Lifetime at the top). Atomic
 * only so that tests may watch `inside` without the lock. */
static inline void weft__chan_stake_add(struct weft_chan *ch)
{
    atomic_store_explicit(&ch->inside, atomic_load_explicit(&ch->inside, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}
static inline void weft__chan_stake_drop(struct weft_chan *ch)
{
    atomic_store_explicit(&ch->inside, atomic_load_explicit(&ch->inside, memory_order_relaxed) - 1,
                          memory_order_relaxed);
}
/* Unlock; true if the channel is an orphan without stakes: the caller was
 * its last user and must free it (after finishing any waiters: they do not
 * touch the channel), and touch it no more. */
static inline bool weft__chan_unlock_last(struct weft_chan *ch)
{
    bool last = atomic_load_explicit(&ch->inside, memory_order_relaxed) == WEFT__CHAN_ORPHAN;
    weft__chan_unlock(ch);
    return last;
}

/*
 * The non-blocking attempts, as select's cases use them: 0 (moved),
 * -EPIPE (closed; for a receive: closed and drained), -EAGAIN (would block).
 * They notify waiters of the other side as needed.
 */
int weft__chan_send_try(struct weft_chan *ch, const void *elem);
int weft__chan_recv_try(struct weft_chan *ch, void *out);

/* Queue a node of the calling owner on ch (receive queue if !is_send), run
 * the pump, and finish whatever it completed. Takes a stake for the node. */
void weft__chan_register(struct weft_chan *ch, struct weft__chan_node *n, bool is_send);
/* After the owner's waiter is final, leave ch with node n, which is:
 *   DEAD       the owner gave up, or another node of its select won: n is
 *              still queued; unlink it and drop its stake (under the lock);
 *   COMPLETED  completed WOKEN or CLOSED through n: the claimer dropped the
 *              stake and unlinks n last; wait for that without touching ch;
 *   KEPT       completed RETRY through n: unlinked, the stake still ours;
 *              drop it (under the lock).
 * May free an orphaned channel: do not touch ch afterwards. */
enum { WEFT__CHAN_LEAVE_DEAD, WEFT__CHAN_LEAVE_COMPLETED, WEFT__CHAN_LEAVE_KEPT };
void weft__chan_leave(struct weft_chan *ch, struct weft__chan_node *n, int how);
/* Wait until a claimer has unlinked n (it is completed already). */
void weft__chan_wait_unlinked(struct weft__chan_node *n);

/*
 * The blocking core behind every blocking send, receive and select: wait
 * until one of the n cases completes, or the deadline. skip_first_try: the
 * caller has just tried every case. Returns the index of the case (whose
 * result is set), -ETIMEDOUT, or -ENOMEM (a select too large for the stack
 * whose node array could not be allocated).
 */
int weft__chan_block(weft_select_case_t *cases, size_t n, weft_time_t deadline,
                     bool skip_first_try);

#endif /* WEFT_CHAN_INTERNAL_H */
