/*
 * chan.c - channels: the lock-free ring, the waiter queues and the pump.
 *
 * See internal.h for the three parts and docs/chan.md for the whole
 * argument. The invariants this file keeps:
 *
 * Ring (Vyukov's bounded MPMC queue, in crossbeam-channel's encoding).
 *   mark = next_pow2(cap + 1), one_lap = 2 * mark. head and tail are
 *   lap + index with index < cap (tail also carries `mark` once closed).
 *   Slot i's stamp is `tail` when the slot is free for the sender whose
 *   ticket is tail, `head + 1` when it holds the element for the receiver
 *   whose ticket is head, and becomes `head + one_lap` (free for the next
 *   lap) after that receiver copied it out. A sender owns a slot from its
 *   successful CAS of tail until its release store of the stamp, a receiver
 *   likewise with head; the stamp's release/acquire carries the element.
 *   The ring is full when head + one_lap == tail and empty when head == tail
 *   (tail without mark). Once mark is set in tail, every sender's CAS fails,
 *   so no element enters after close; those that entered before stay.
 *   (A sender preempted between its CAS and its stamp makes receivers of
 *   that slot wait for it: the queue is lock-free for the common case but
 *   not strictly non-blocking; see docs/chan.md.)
 *
 * Waiters (Dekker). A blocked context queues its node and stores the queue
 *   length in nrecv/nsend under the lock, issues a seq_cst fence, then runs
 *   the pump, which looks at the ring. A fast path that changed the ring
 *   issues a seq_cst fence after its stamp store and then loads the count of
 *   the other side. Of two seq_cst fences one comes first, so either the
 *   pump sees the new element (or free slot), or the fast path sees the
 *   waiter and runs the pump itself. When nobody waits, the fast path costs
 *   that fence and one load of a line nobody writes.
 *
 * Lock. A word lock on the parking lot (the scheme of src/sync/mutex.c
 *   without owner or hand-off), so that a coroutine blocking on it will
 *   suspend rather than block its loop. Held only for list operations and
 *   copies; waiters are finished (and sleepers woken, a system call) after
 *   it is released.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"

/* The unbuffered fast path must be inlined into each public call (the
 * compiler's size heuristics otherwise keep it out of line). */
#if defined(__GNUC__)
#define CHAN_ALWAYS_INLINE __attribute__((always_inline))
#else
#define CHAN_ALWAYS_INLINE
#endif

/* ---- backoff ---------------------------------------------------------------- */

/* weft__backoff (platform.h: pauses, then yields, then sleeps) serves a
 * slot whose owner is mid-copy, a revoker waiting for a biased holder to
 * step out, a node whose claimer has not unlinked it yet
 * (weft__chan_wait_unlinked), and, cut short by their callers, the spin of
 * a blocking operation before it queues itself and the channel lock before
 * it parks (lock_spin). */

/* ---- the channel lock ------------------------------------------------------ */

bool weft__chan_asym;
#ifndef WEFT__CHAN_HAVE_TP
_Thread_local char weft__chan_self_tls;
#endif
static pthread_once_t asym_once = PTHREAD_ONCE_INIT;

static void asym_decide(void)
{
    weft__chan_asym = weft__asym_available();
}

/* The lock is held for a few list operations: back off a little (pauses,
 * then yields) before parking. False once it is time to park. */
static bool lock_spin(unsigned *spins)
{
    if (*spins >= 10)
        return false;
    weft__backoff(spins);
    return true;
}

static bool lock_validate(void *arg)
{
    struct weft_chan *ch = arg;
    return atomic_load_explicit(&ch->lock, memory_order_relaxed) ==
           (WEFT__CL_LOCKED | WEFT__CL_PARKED);
}

static bool asym_validate(void *arg)
{
    struct weft_chan *ch = arg;
    return atomic_load_explicit(&ch->lock, memory_order_relaxed) != 0;
}

/*
 * Asymmetric form. The parker raises the announce word of the lock's
 * address, runs the heavy barrier, and parks only if the lock is still
 * held (validated under the bucket lock). A releaser stores 0, then loads
 * the announce word. By the heavy barrier, each release either is visible
 * to the validation (which then does not park, or sees a later holder,
 * whose own release comes after the barrier) or loads the raised word and
 * unparks the key under the bucket lock, after the parker queued itself or
 * before it validated (and then saw the lock free). Should the barrier fail
 * (a kernel that refuses it after all), the park is bounded to a
 * millisecond, and the lock is polled.
 */
static WEFT_NOINLINE void lock_slow_asym(struct weft_chan *ch)
{
    unsigned spins = 0;
    for (;;) {
        uint32_t z = 0;
        if (atomic_load_explicit(&ch->lock, memory_order_relaxed) == 0 &&
            atomic_compare_exchange_weak_explicit(&ch->lock, &z, WEFT__CL_LOCKED,
                                                  memory_order_acquire, memory_order_relaxed))
            return;
        if (lock_spin(&spins))
            continue;
        _Atomic uint32_t *ann = weft__park_announce_word(&ch->lock);
        atomic_fetch_add_explicit(ann, 1, memory_order_seq_cst);
        weft_time_t deadline = WEFT_FOREVER;
        if (weft__heavy_barrier() != 0)
            deadline = weft_now() + 1000000;
        weft__park(&ch->lock, asym_validate, ch, NULL, deadline, NULL);
        atomic_fetch_sub_explicit(ann, 1, memory_order_relaxed);
        spins = 0;
    }
}

void weft__chan_unlock_wake(_Atomic uint32_t *lock)
{
    weft__unpark_one(lock, NULL, NULL); /* the key only: ch may be gone */
}

void weft__chan_lock_slow(struct weft_chan *ch)
{
    if (weft__chan_asym) {
        lock_slow_asym(ch);
        return;
    }
    unsigned spins = 0;
    uint32_t s = atomic_load_explicit(&ch->lock, memory_order_relaxed);
    for (;;) {
        if (!(s & WEFT__CL_LOCKED)) {
            if (atomic_compare_exchange_weak_explicit(&ch->lock, &s, s | WEFT__CL_LOCKED,
                                                      memory_order_acquire,
                                                      memory_order_relaxed))
                return;
            continue;
        }
        if (!(s & WEFT__CL_PARKED)) {
            if (lock_spin(&spins)) {
                s = atomic_load_explicit(&ch->lock, memory_order_relaxed);
                continue;
            }
            if (!atomic_compare_exchange_weak_explicit(&ch->lock, &s, s | WEFT__CL_PARKED,
                                                       memory_order_relaxed,
                                                       memory_order_relaxed))
                continue;
        }
        weft__park(&ch->lock, lock_validate, ch, NULL, WEFT_FOREVER, NULL);
        spins = 0;
        s = atomic_load_explicit(&ch->lock, memory_order_relaxed);
    }
}

static uintptr_t unlock_cb(void *arg, struct weft__unpark_result r)
{
    struct weft_chan *ch = arg;
    /* Release the lock; keep PARKED while others remain parked (the lot
     * tells us under its bucket lock, so no parker can slip in between). */
    atomic_store_explicit(&ch->lock, r.have_more ? WEFT__CL_PARKED : 0, memory_order_release);
    return 0;
}

void weft__chan_unlock_slow(struct weft_chan *ch)
{
    weft__unpark_one(&ch->lock, unlock_cb, ch);
}

/*
 * Bias (internal.h, weft__chan_lock). The biased thread B runs
 *     busy = B; compiler barrier; if (lock == 0 && bias == B) hold;
 * and a thread R that took the word (lock != 0) and found bias == B runs
 *     bias = OFF; heavy barrier; wait until busy == 0.
 * The heavy barrier makes B execute a full barrier at some point P of its
 * sequence. If B's store of busy comes before P, R sees it after the
 * barrier and waits for B to leave. If it comes after P, so do B's loads,
 * which then see R's word taken or R's bias = OFF: B steps back. Either
 * way B and R are never inside at once, and once R is done no thread holds
 * by bias again, so later takers of the word need not look at busy. A
 * thread that did not revoke never sees bias == B and busy == B at once
 * while it holds the word.
 *
 * Called with the word held, by a thread that took it while bias != OFF:
 * count toward a bias, or revoke one. A channel on which the taking thread
 * changed 4 times is shared: it goes OFF without ever being biased (and
 * without a heavy barrier), so two threads that take turns pay two plain
 * loads more per lock and one per unlock. A channel biased to one thread
 * and then taken by another pays one heavy barrier (a few microseconds),
 * once.
 */
void weft__chan_bias_note(struct weft_chan *ch, uintptr_t self)
{
    uintptr_t b = atomic_load_explicit(&ch->bias, memory_order_relaxed);
    if (b == self)
        return; /* not reached: B steps back only for a revoker */
    if (b == 0) {
        if (ch->bias_cand == self) {
            if (++ch->bias_runs >= WEFT__CHAN_BIAS_AFTER)
                atomic_store_explicit(&ch->bias, self, memory_order_relaxed);
        } else if (ch->bias_cand != 0 && ++ch->bias_changes >= 4) {
            atomic_store_explicit(&ch->bias, WEFT__CHAN_BIAS_OFF, memory_order_relaxed);
        } else {
            ch->bias_cand = self;
            ch->bias_runs = 1;
        }
        return;
    }
    atomic_store_explicit(&ch->bias, WEFT__CHAN_BIAS_OFF, memory_order_relaxed);
    /* Waiting is safe here (we hold the word, the bias is OFF: B can only
     * finish and step back), so a barrier that fails for want of memory
     * (-ENOMEM: the kernel allocates a CPU mask for it) is tried again.
     * Any other failure cannot come once weft__asym_available registered
     * this process (weft__heavy_barrier registers a forked child again);
     * if it does, going on could let two threads in at once. */
    unsigned step = 0;
    int rc;
    while ((rc = weft__heavy_barrier()) == -ENOMEM)
        weft__backoff(&step);
    if (rc != 0) {
        fprintf(stderr, "weft: channel: membarrier failed (%d) while revoking a lock bias\n", rc);
        abort();
    }
    step = 0;
    while (atomic_load_explicit(&ch->busy, memory_order_acquire) != 0)
        weft__backoff(&step);
}

/* ---- the ring ---------------------------------------------------------------- */

/* Push one element. 0, -EAGAIN (full), -EPIPE (closed). */
static int ring_push(struct weft_chan *ch, const void *elem)
{
    unsigned step = 0;
    /* relaxed: the stamp's acquire below is what orders the slot. */
    uint64_t tail = atomic_load_explicit(&ch->tail, memory_order_relaxed);
    for (;;) {
        if (WEFT_UNLIKELY(tail & ch->mark))
            return -EPIPE;
        uint64_t index = tail & (ch->mark - 1);
        uint64_t lap = tail & ~(ch->one_lap - 1);
        uint64_t next = index + 1 < ch->cap ? tail + 1 : lap + ch->one_lap;
        _Atomic uint64_t *st = weft__chan_stamp(ch, index);
        /* acquire: pairs with the release by the receiver that freed the
         * slot, so our copy cannot overwrite what it was still reading. */
        uint64_t stamp = atomic_load_explicit(st, memory_order_acquire);
        if (stamp == tail) {
            /* seq_cst: the tickets of senders and the full test's load of
             * head are ordered as in crossbeam (the full test relies on it). */
            if (atomic_compare_exchange_weak_explicit(&ch->tail, &tail, next,
                                                      memory_order_seq_cst,
                                                      memory_order_relaxed)) {
                weft__chan_copy(weft__chan_data(ch, index), elem, ch->elem_size);
                /* release: publishes the element to the receiver of ticket
                 * tail, which acquires the stamp. */
                atomic_store_explicit(st, tail + 1, memory_order_release);
                return 0;
            }
            /* tail was reloaded by the failed CAS. */
        } else if (stamp + ch->one_lap == tail + 1) {
            /* The slot still holds last lap's element: full, unless head
             * moved meanwhile. The fence orders our stamp read before the
             * head read (crossbeam's SeqCst fence at the same place). */
            WEFT__CHAN_FENCE(ch);
            uint64_t head = atomic_load_explicit(&ch->head, memory_order_relaxed);
            if (head + ch->one_lap == tail)
                return -EAGAIN;
            weft__backoff(&step);
            tail = atomic_load_explicit(&ch->tail, memory_order_relaxed);
        } else {
            /* Our view of tail is stale, or the slot's receiver is mid-copy. */
            weft__backoff(&step);
            tail = atomic_load_explicit(&ch->tail, memory_order_relaxed);
        }
    }
}

/* Pop one element into out. 0, -EAGAIN (empty), -EPIPE (closed and empty). */
static int ring_pop(struct weft_chan *ch, void *out)
{
    unsigned step = 0;
    uint64_t head = atomic_load_explicit(&ch->head, memory_order_relaxed);
    for (;;) {
        uint64_t index = head & (ch->mark - 1);
        uint64_t lap = head & ~(ch->one_lap - 1);
        _Atomic uint64_t *st = weft__chan_stamp(ch, index);
        /* acquire: pairs with the sender's release, so the element is there. */
        uint64_t stamp = atomic_load_explicit(st, memory_order_acquire);
        if (head + 1 == stamp) {
            uint64_t next = index + 1 < ch->cap ? head + 1 : lap + ch->one_lap;
            if (atomic_compare_exchange_weak_explicit(&ch->head, &head, next,
                                                      memory_order_seq_cst,
                                                      memory_order_relaxed)) {
                weft__chan_copy(out, weft__chan_data(ch, index), ch->elem_size);
                /* release: our copy is done before the next lap's sender
                 * (which acquires the stamp) may overwrite the slot. */
                atomic_store_explicit(st, head + ch->one_lap, memory_order_release);
                return 0;
            }
        } else if (stamp == head) {
            /* The slot is empty: the ring is, unless a sender holds a ticket
             * for it and is mid-copy. Fence: stamp read before tail read. */
            WEFT__CHAN_FENCE(ch);
            uint64_t tail = atomic_load_explicit(&ch->tail, memory_order_relaxed);
            if ((tail & ~ch->mark) == head)
                return (tail & ch->mark) ? -EPIPE : -EAGAIN;
            weft__backoff(&step);
            head = atomic_load_explicit(&ch->head, memory_order_relaxed);
        } else {
            weft__backoff(&step);
            head = atomic_load_explicit(&ch->head, memory_order_relaxed);
        }
    }
}

/* Peeks for the pump (approximate; the ring operation decides). */
static bool ring_looks_empty(struct weft_chan *ch)
{
    uint64_t tail = atomic_load_explicit(&ch->tail, memory_order_relaxed);
    uint64_t head = atomic_load_explicit(&ch->head, memory_order_relaxed);
    return (tail & ~ch->mark) == head;
}

static bool ring_looks_full(struct weft_chan *ch)
{
    uint64_t tail = atomic_load_explicit(&ch->tail, memory_order_relaxed);
    uint64_t head = atomic_load_explicit(&ch->head, memory_order_relaxed);
    return !(tail & ch->mark) && head + ch->one_lap == tail;
}

static bool chan_closed(struct weft_chan *ch)
{
    return atomic_load_explicit(&ch->tail, memory_order_acquire) & ch->mark;
}

/* ---- waiter queues (under the lock) -------------------------------------------- */

/* Which queue a node of that side waits in, and the side's lock-free count.
 * With a constant is_send (the plain calls' paths are made once per side:
 * unbuf_block_send/_recv) these are fixed offsets. */
static inline CHAN_ALWAYS_INLINE struct weft__chan_queue *side_queue(struct weft_chan *ch,
                                                                     bool is_send)
{
    return is_send ? &ch->sq : &ch->rq;
}

static inline CHAN_ALWAYS_INLINE _Atomic uint32_t *side_count(struct weft_chan *ch, bool is_send)
{
    return is_send ? &ch->nsend : &ch->nrecv;
}

static inline CHAN_ALWAYS_INLINE void q_push_side(struct weft_chan *ch, bool is_send,
                                                  struct weft__chan_node *n)
{
    struct weft__chan_queue *q = side_queue(ch, is_send);
    n->next = NULL;
    n->prev = q->tail;
    if (q->tail)
        q->tail->next = n;
    else
        q->head = n;
    q->tail = n;
    q->n++;
    atomic_store_explicit(side_count(ch, is_send), q->n, memory_order_relaxed);
    atomic_store_explicit(&n->queued, true, memory_order_relaxed);
}

/* Unlink n, queued on side is_send (n->is_send). */
static inline CHAN_ALWAYS_INLINE void q_unlink_side(struct weft_chan *ch, bool is_send,
                                                    struct weft__chan_node *n)
{
    struct weft__chan_queue *q = side_queue(ch, is_send);
    if (n->prev)
        n->prev->next = n->next;
    else
        q->head = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else
        q->tail = n->prev;
    q->n--;
    atomic_store_explicit(side_count(ch, is_send), q->n, memory_order_relaxed);
    /* release, and last: the owner reads `queued` without the lock, and may
     * reuse the node's memory as soon as it sees false. */
    atomic_store_explicit(&n->queued, false, memory_order_release);
}

static void q_unlink(struct weft_chan *ch, struct weft__chan_node *n)
{
    q_unlink_side(ch, n->is_send, n);
}

/* Claim a node's waiter. Call it BEFORE unlinking the node: once unlinked
 * and not ours, the node may be reused by its owner at any moment, so a
 * failed claimer must not touch it after q_unlink. A successful claim keeps
 * the owner waiting (BUSY) and so the node alive until the finish. */
static bool claim(struct weft__chan_node *n)
{
    return weft__waiter_cas(&n->sel->w, WEFT__W_WAITING, WEFT__W_BUSY);
}

static bool alive(struct weft__chan_node *n)
{
    return weft__waiter_state(&n->sel->w) == WEFT__W_WAITING;
}

/* A claimed, unlinked node: record the winning case and queue the finish.
 * Its owner's stake goes with it, except on RETRY (the owner comes back to
 * this channel, or drops the stake itself: see internal.h, Lifetime). */
static void complete(struct weft_chan *ch, struct weft__chan_node *n, uint32_t state,
                     struct weft__chan_node **done)
{
    if (state != WEFT__CHAN_RETRY)
        weft__chan_stake_drop(ch);
    n->sel->winner = n->idx;
    n->done_state = state;
    n->done_next = *done;
    *done = n;
}

/* After unlocking: finish what the pump completed. */
static void finish_done(struct weft__chan_node *d)
{
    while (d) {
        /* Read everything first: after the finish the owner may return. */
        struct weft__chan_node *next = d->done_next;
        struct weft__chan_sel *sel = d->sel;
        uint32_t st = d->done_state;
        weft__waiter_finish(&sel->w, st);
        d = next;
    }
}

/* Finish every live node of one queue with CLOSED. Dead nodes stay for
 * their owners to unlink. */
static void close_queue(struct weft_chan *ch, struct weft__chan_queue *q,
                        struct weft__chan_node **done)
{
    struct weft__chan_node *n = q->head, *next;
    for (; n; n = next) {
        next = n->next;
        if (claim(n)) {
            q_unlink(ch, n);
            complete(ch, n, WEFT__W_CLOSED, done);
        }
    }
}

/* Claim and unlink the oldest live node of q, or NULL. */
static struct weft__chan_node *claim_first(struct weft_chan *ch, struct weft__chan_queue *q)
{
    for (struct weft__chan_node *n = q->head; n; n = n->next)
        if (claim(n)) {
            q_unlink(ch, n);
            return n;
        }
    return NULL;
}

/*
 * One-step hand-over (unbuffered; plain sends, receives and tries).
 *
 * The pump claims a waiter (WAITING -> BUSY), moves the element, and
 * finishes it after unlocking: two RMWs on the waiter, plus a list of
 * finishes. Meeting a PLAIN call's node (sel->single) can do with one: set
 * the final state WOKEN at once (keeping SLEEP), then copy and unlink the
 * node last (q_unlink's release store of `queued`). The owner may see WOKEN
 * before the copy is done, but it does not return before it has seen its
 * node unlinked (weft__chan_wait_unlinked: an acquire load of `queued`), so
 * it reads its element only after the copy. What the wake needs (ops, ctx,
 * gen) is read while the node is still queued, i.e. while the waiter is
 * certainly alive; the wake itself comes after unlocking and may find the
 * owner gone, which every wake tolerates (park.h). Except for a coroutine
 * of the caller's own loop: it cannot run before the caller lets the
 * thread go, so it is woken at once, under the lock (a run-queue push that
 * takes no lock), and nothing is carried past the unlock. A select's node keeps
 * the two steps: its owner reads `winner` as soon as its state is final.
 * Both protocols mix on one channel: either way a node is claimed once, by
 * one change out of WAITING under the lock: a CAS, or a plain store when
 * the node's owner is a coroutine of the caller's own loop (it is then
 * suspended, and only it could change the state without the lock).
 *
 * A plain call's own node is ARMED when queued (unbuf_block,
 * weft__waiter_init_armed): a coroutine owner makes itself wakeable and sets
 * SLEEP before the node is visible, so its wait needs no RMW either (see
 * the protocol at the top of src/loop/loop.c).
 */
struct pwake {
    const struct weft__park_ops *ops; /* NULL: no wake owed */
    void *ctx;
    uint64_t gen;
    _Atomic uint32_t *state;
    struct weft__waiter *finish; /* a select claimed BUSY: finish it WOKEN */
};

/* An empty pwake: only ops and finish are read unless ops is set (then
 * take_node has written the rest), so only they are cleared. */
#define PWAKE_NONE(pw) ((pw).ops = NULL, (pw).finish = NULL)

static inline void pwake_run(const struct pwake *pw)
{
    if (pw->ops)
        pw->ops->wake(pw->ctx, pw->gen, pw->state);
    else if (WEFT_UNLIKELY(pw->finish != NULL))
        weft__waiter_finish(pw->finish, WEFT__W_WOKEN);
}

/* A select's node: its owner reads `winner` as soon as its state is final,
 * to know which node to wait for, so winner must be written first: claim
 * BUSY, move, unlink, and finish after unlocking (pwake_run). */
static WEFT_NOINLINE bool take_select_node(struct weft_chan *ch, struct weft__chan_node *n,
                                           void *dst, const void *src, struct pwake *pw)
{
    if (!claim(n))
        return false;
    weft__chan_copy(dst ? dst : n->elem, src ? src : n->elem, ch->elem_size);
    n->sel->winner = n->idx;
    weft__chan_stake_drop(ch);
    q_unlink(ch, n);
    pw->finish = &n->sel->w;
    return true;
}

/* n is queued and not ours (under the lock). Complete it with the element
 * moved (src -> n->elem for a receiver, n->elem -> dst for a sender), and
 * unlink it: true, and n must not be touched again. False if its owner is
 * no longer waiting (n is dead and stays queued for its owner). */
static inline CHAN_ALWAYS_INLINE bool take_node(struct weft_chan *ch, struct weft__chan_node *n,
                                                void *dst, const void *src, struct pwake *pw)
{
    struct weft__waiter *w = &n->sel->w;
    if (WEFT_UNLIKELY(!n->sel->single))
        return take_select_node(ch, n, dst, src, pw);
    uint32_t cur = atomic_load_explicit(&w->state, memory_order_relaxed);
    if ((cur & ~WEFT__W_SLEEP) != WEFT__W_WAITING)
        return false; /* dead: its owner unlinks it */
    if (weft__waiter_local(w)) {
        /* The owner is a suspended coroutine of this very thread: besides
         * claimers (who hold the lock, as we do) only the owner changes a
         * queued node's state (giving up), and it cannot run now. So a
         * store claims it; release, as the CAS below. And it cannot run
         * before we let this thread go, so the wake (a push on this loop's
         * run queue, which takes no lock) may come now, under the channel
         * lock, before the copy and the unlink: nothing to carry in pw. */
        atomic_store_explicit(&w->state, WEFT__W_WOKEN | (cur & WEFT__W_SLEEP),
                              memory_order_release);
        if (cur & WEFT__W_SLEEP) {
            if (w->ops->wake_local)
                w->ops->wake_local(w);
            else
                w->ops->wake(w->ctx, w->gen, &w->state);
        }
    } else {
        for (;;) {
            /* acq_rel, as weft__waiter_cas: the claim of a waiter. */
            if (atomic_compare_exchange_weak_explicit(&w->state, &cur,
                                                      WEFT__W_WOKEN | (cur & WEFT__W_SLEEP),
                                                      memory_order_acq_rel,
                                                      memory_order_relaxed))
                break;
            if ((cur & ~WEFT__W_SLEEP) != WEFT__W_WAITING)
                return false;
        }
        if (cur & WEFT__W_SLEEP) {
            pw->ops = w->ops;
            pw->ctx = w->ctx;
            pw->gen = w->gen;
            pw->state = &w->state;
        }
    }
    weft__chan_copy(dst ? dst : n->elem, src ? src : n->elem, ch->elem_size);
    weft__chan_stake_drop(ch); /* the owner will not come back */
    /* Last: the owner may return once it sees this. A receiver (src set)
     * takes a sender's node, and the other way round. */
    q_unlink_side(ch, src == NULL, n);
    return true;
}

/* Meet the oldest live node of q (receivers for a send: src set; senders
 * for a receive: dst set), skipping dead ones (their owners unlink them:
 * internal.h, Lifetime). */
static inline CHAN_ALWAYS_INLINE bool take_partner(struct weft_chan *ch,
                                                   struct weft__chan_queue *q, void *dst,
                                                   const void *src, struct pwake *pw)
{
    for (struct weft__chan_node *n = q->head; n; n = n->next)
        if (take_node(ch, n, dst, src, pw))
            return true; /* n was unlinked: stop walking */
    return false;
}

/* Unbuffered: take from the oldest live sender not of `exclude` into dst. */
static bool match_sender(struct weft_chan *ch, void *dst, struct weft__chan_sel *exclude,
                         struct weft__chan_node **done)
{
    struct weft__chan_node *n = ch->sq.head, *next;
    for (; n; n = next) {
        next = n->next;
        if (n->sel == exclude || !claim(n))
            continue; /* ourselves, or dead (its owner unlinks it) */
        q_unlink(ch, n);
        weft__chan_copy(dst, n->elem, ch->elem_size);
        complete(ch, n, WEFT__W_WOKEN, done);
        return true;
    }
    return false;
}

static bool has_partner(struct weft__chan_queue *q, struct weft__chan_sel *sel)
{
    for (struct weft__chan_node *n = q->head; n; n = n->next)
        if (n->sel != sel && alive(n))
            return true;
    return false;
}

/* The unbuffered pump: pair queued senders with queued receivers. */
static void pump_unbuffered(struct weft_chan *ch, struct weft__chan_node **done)
{
    if (chan_closed(ch)) {
        close_queue(ch, &ch->sq, done);
        close_queue(ch, &ch->rq, done);
        return;
    }
    struct weft__chan_node *r = ch->rq.head, *next;
    for (; r && ch->sq.head; r = next) {
        next = r->next;
        if (!alive(r) || !has_partner(&ch->sq, r->sel) || !claim(r))
            continue; /* dead ones stay for their owners */
        q_unlink(ch, r);
        /* next stays valid: matching unlinks only senders. */
        if (match_sender(ch, r->elem, r->sel, done))
            complete(ch, r, WEFT__W_WOKEN, done);
        else
            complete(ch, r, WEFT__CHAN_RETRY, done); /* every partner had gone */
    }
}

/* The buffered pump: ring -> receivers, senders -> ring, until neither moves;
 * then, if closed and drained, release the receivers. */
static void pump_buffered(struct weft_chan *ch, struct weft__chan_node **done)
{
    bool progress;
    do {
        progress = false;
        while (ch->rq.head && !ring_looks_empty(ch)) {
            struct weft__chan_node *r = claim_first(ch, &ch->rq);
            if (!r)
                break; /* only dead nodes */
            int rc = ring_pop(ch, r->elem);
            complete(ch, r, rc == 0 ? WEFT__W_WOKEN : rc == -EPIPE ? WEFT__W_CLOSED : WEFT__CHAN_RETRY,
                     done);
            if (rc != 0)
                break; /* a fast-path receiver took it first */
            progress = true;
        }
        while (ch->sq.head && !ring_looks_full(ch)) {
            struct weft__chan_node *s = claim_first(ch, &ch->sq);
            if (!s)
                break;
            int rc = ring_push(ch, s->elem);
            complete(ch, s, rc == 0 ? WEFT__W_WOKEN : rc == -EPIPE ? WEFT__W_CLOSED : WEFT__CHAN_RETRY,
                     done);
            if (rc == -EAGAIN)
                break; /* a fast-path sender took the slot first */
            if (rc == 0)
                progress = true;
        }
    } while (progress);
    if (ch->rq.head && chan_closed(ch) && ring_looks_empty(ch))
        close_queue(ch, &ch->rq, done);
}

static void pump(struct weft_chan *ch, struct weft__chan_node **done)
{
    if (ch->cap)
        pump_buffered(ch, done);
    else
        pump_unbuffered(ch, done);
}

static void chan_free(struct weft_chan *ch)
{
    free(ch);
}

/* Lock, pump, unlock, finish: for a fast path that saw waiters, and close. */
static WEFT_NOINLINE void run_pump(struct weft_chan *ch)
{
    struct weft__chan_node *done = NULL;
    weft__chan_lock(ch);
    pump(ch, &done);
    bool last = weft__chan_unlock_last(ch);
    finish_done(done);
    if (last)
        chan_free(ch);
}

/* After a fast-path push or pop: wake the other side if it waits. The fence
 * orders our stamp store before the load of the count (see the top). */
static inline void notify(struct weft_chan *ch, _Atomic uint32_t *count)
{
    WEFT__CHAN_FENCE(ch);
    if (WEFT_UNLIKELY(atomic_load_explicit(count, memory_order_relaxed) != 0))
        run_pump(ch);
}

/* ---- registration and leaving ---------------------------------------------------- */

void weft__chan_register(struct weft_chan *ch, struct weft__chan_node *n, bool is_send)
{
    struct weft__chan_node *done = NULL;
    n->is_send = is_send;
    atomic_init(&n->queued, false);
    weft__chan_lock(ch);
    weft__chan_stake_add(ch);
    q_push_side(ch, n->is_send, n);
    /* Dekker with the fast paths: our count store before the pump's look at
     * the ring. */
    WEFT__CHAN_FENCE(ch);
    pump(ch, &done);
    /* The pump may have completed our own node, stake and all: then we may
     * be an orphan's last user, and free it (we do not touch ch again). */
    bool last = weft__chan_unlock_last(ch);
    finish_done(done);
    if (last)
        chan_free(ch);
}

void weft__chan_wait_unlinked(struct weft__chan_node *n)
{
    /* acquire: pairs with q_unlink's release, the claimer's last touch. A
     * one-step claimer is a few instructions (one copy) from it; two-step
     * ones unlink before they finish, so this rarely loops. */
    unsigned step = 0;
    while (atomic_load_explicit(&n->queued, memory_order_acquire))
        weft__backoff(&step);
}

void weft__chan_leave(struct weft_chan *ch, struct weft__chan_node *n, int how)
{
    if (how == WEFT__CHAN_LEAVE_COMPLETED) {
        /* The claimer dropped our stake: ch is not ours to touch. */
        weft__chan_wait_unlinked(n);
        return;
    }
    weft__chan_lock(ch);
    if (how == WEFT__CHAN_LEAVE_DEAD &&
        atomic_load_explicit(&n->queued, memory_order_relaxed)) {
        q_unlink(ch, n); /* nobody but us unlinks a dead node */
        weft__chan_stake_drop(ch);
    } else if (how == WEFT__CHAN_LEAVE_KEPT) {
        weft__chan_stake_drop(ch); /* RETRY: the stake stayed with us */
    }
    if (weft__chan_unlock_last(ch))
        chan_free(ch);
}

/* ---- lifetime ---------------------------------------------------------------- */

static uint64_t next_pow2(uint64_t x)
{
    uint64_t p = 1;
    while (p < x)
        p <<= 1;
    return p;
}

int weft_chan_create(weft_chan_t **out, size_t elem_size, size_t capacity)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (elem_size == 0 || elem_size > WEFT_CHAN_MAX_ELEM || capacity > WEFT_CHAN_MAX_CAP)
        return -EINVAL;
    /* The lock's form, once, before the first channel can be locked. */
    pthread_once(&asym_once, asym_decide);
    size_t stride = (sizeof(uint64_t) + elem_size + 7) & ~(size_t)7;
    size_t hdr = (sizeof(struct weft_chan) + WEFT_CACHELINE - 1) & ~(size_t)(WEFT_CACHELINE - 1);
    if (capacity > (SIZE_MAX - hdr - WEFT_CACHELINE) / stride)
        return -ENOMEM;
    size_t total = hdr + capacity * stride;
    total = (total + WEFT_CACHELINE - 1) & ~(size_t)(WEFT_CACHELINE - 1);
    struct weft_chan *ch = aligned_alloc(WEFT_CACHELINE, total);
    if (!ch)
        return -ENOMEM;
    memset(ch, 0, sizeof *ch);
    ch->slots = (unsigned char *)ch + hdr;
    ch->stride = stride;
    ch->elem_size = elem_size;
    ch->cap = capacity;
    ch->mark = next_pow2((uint64_t)capacity + 1);
    ch->one_lap = ch->mark * 2;
    atomic_init(&ch->tail, 0);
    atomic_init(&ch->head, 0);
    atomic_init(&ch->nrecv, 0);
    atomic_init(&ch->nsend, 0);
    atomic_init(&ch->lock, 0);
    /* Without the heavy barrier nobody could revoke a bias: never bias. */
    atomic_init(&ch->bias, weft__chan_asym ? 0 : WEFT__CHAN_BIAS_OFF);
    atomic_init(&ch->busy, 0);
    atomic_init(&ch->refs, 1);
    atomic_init(&ch->inside, 0);
    atomic_init(&ch->tsan_fence, 0);
    for (size_t i = 0; i < capacity; i++)
        atomic_init(weft__chan_stamp(ch, i), i);
    *out = ch;
    return 0;
}

int weft_chan_retain(weft_chan_t *ch)
{
    if (!ch)
        return -EINVAL;
    uint32_t r = atomic_load_explicit(&ch->refs, memory_order_relaxed);
    do {
        if (r == 0 || r == UINT32_MAX)
            return -EINVAL; /* orphaned (already released), or absurd */
    } while (!atomic_compare_exchange_weak_explicit(&ch->refs, &r, r + 1, memory_order_relaxed,
                                                    memory_order_relaxed));
    return 0;
}

static int close_chan(struct weft_chan *ch)
{
    /* seq_cst RMW: after it no sender's CAS of tail can succeed. */
    uint64_t old = atomic_fetch_or_explicit(&ch->tail, ch->mark, memory_order_seq_cst);
    if (old & ch->mark)
        return -EPIPE;
    run_pump(ch);
    return 0;
}

int weft_chan_release(weft_chan_t *ch)
{
    if (!ch)
        return -EINVAL;
    uint32_t r = atomic_load_explicit(&ch->refs, memory_order_relaxed);
    do {
        if (r == 0)
            return -EINVAL; /* over-release of an orphan still alive */
    } while (!atomic_compare_exchange_weak_explicit(&ch->refs, &r, r - 1, memory_order_acq_rel,
                                                    memory_order_relaxed));
    if (r != 1)
        return 0;
    /* The last reference. Under the lock: mark the orphan; with stakes
     * left (blocked callers: misuse), close, which completes every live
     * node (their stakes go with them); whoever drops the last stake frees
     * (internal.h, Lifetime), possibly us right here. */
    struct weft__chan_node *done = NULL;
    weft__chan_lock(ch);
    uint64_t stakes = atomic_load_explicit(&ch->inside, memory_order_relaxed);
    atomic_store_explicit(&ch->inside, stakes | WEFT__CHAN_ORPHAN, memory_order_relaxed);
    if (stakes) {
        /* seq_cst RMW as in close_chan: no sender's CAS of tail succeeds after. */
        atomic_fetch_or_explicit(&ch->tail, ch->mark, memory_order_seq_cst);
        pump(ch, &done);
    }
    bool last = weft__chan_unlock_last(ch);
    finish_done(done);
    if (last)
        chan_free(ch);
    return stakes ? -EBUSY : 0;
}

int weft_chan_close(weft_chan_t *ch)
{
    if (!ch)
        return -EINVAL;
    return close_chan(ch);
}

bool weft_chan_is_closed(const weft_chan_t *ch)
{
    return ch && chan_closed((struct weft_chan *)ch);
}

size_t weft_chan_len(const weft_chan_t *cch)
{
    if (!cch || cch->cap == 0)
        return 0;
    struct weft_chan *ch = (struct weft_chan *)cch;
    for (;;) {
        /* A consistent pair: tail unchanged around the head read. */
        uint64_t tail = atomic_load_explicit(&ch->tail, memory_order_seq_cst);
        uint64_t head = atomic_load_explicit(&ch->head, memory_order_seq_cst);
        if (atomic_load_explicit(&ch->tail, memory_order_seq_cst) != tail)
            continue;
        tail &= ~ch->mark;
        uint64_t hix = head & (ch->mark - 1), tix = tail & (ch->mark - 1);
        if (hix < tix)
            return (size_t)(tix - hix);
        if (hix > tix)
            return (size_t)(ch->cap - hix + tix);
        return tail == head ? 0 : ch->cap;
    }
}

size_t weft_chan_cap(const weft_chan_t *ch)
{
    return ch ? ch->cap : 0;
}

size_t weft_chan_elem_size(const weft_chan_t *ch)
{
    return ch ? ch->elem_size : 0;
}

/* ---- send and receive ---------------------------------------------------------- */

/* Unbuffered attempts: only a queued partner makes them possible. */
static int unbuffered_send_try(struct weft_chan *ch, const void *elem)
{
    if (chan_closed(ch))
        return -EPIPE;
    if (atomic_load_explicit(&ch->nrecv, memory_order_relaxed) == 0)
        return -EAGAIN; /* nobody to meet (a try may miss one arriving now) */
    struct pwake pw;
    PWAKE_NONE(pw);
    int r;
    weft__chan_lock(ch);
    if (chan_closed(ch))
        r = -EPIPE;
    else
        r = take_partner(ch, &ch->rq, NULL, elem, &pw) ? 0 : -EAGAIN;
    weft__chan_unlock(ch);
    pwake_run(&pw);
    return r;
}

static int unbuffered_recv_try(struct weft_chan *ch, void *out)
{
    if (atomic_load_explicit(&ch->nsend, memory_order_relaxed) == 0)
        return chan_closed(ch) ? -EPIPE : -EAGAIN;
    struct pwake pw;
    PWAKE_NONE(pw);
    int r;
    weft__chan_lock(ch);
    if (take_partner(ch, &ch->sq, out, NULL, &pw))
        r = 0;
    else
        r = chan_closed(ch) ? -EPIPE : -EAGAIN;
    weft__chan_unlock(ch);
    pwake_run(&pw);
    return r;
}

int weft__chan_send_try(struct weft_chan *ch, const void *elem)
{
    if (ch->cap == 0)
        return unbuffered_send_try(ch, elem);
    int r = ring_push(ch, elem);
    if (r == 0)
        notify(ch, &ch->nrecv);
    return r;
}

int weft__chan_recv_try(struct weft_chan *ch, void *out)
{
    if (ch->cap == 0)
        return unbuffered_recv_try(ch, out);
    int r = ring_pop(ch, out);
    if (r == 0)
        notify(ch, &ch->nsend);
    return r;
}

/* How many backoff rounds a blocking call retries the ring before it queues
 * itself: 6 rounds of growing pauses (63 in all), then 2 yields, which lets
 * a partner sharing our core run. */
#define CHAN_SPIN_ROUNDS 8

/* Spinning helps only an OS thread, whose partner may be running on another
 * core. A coroutine's partner is often a coroutine of the same loop, which
 * cannot run while we spin (and sched_yield would stall the whole loop), so
 * a coroutine (park ops other than the thread's) queues itself at once. */
static inline bool may_spin(void)
{
    return weft__park_ops_current() == &weft__thread_park_ops;
}

/*
 * The blocking core of one plain send or receive (select has its own, in
 * select.c, for any number of cases). Go's chansend/chanrecv shape: take the
 * channel lock once, and under it either meet a queued partner (unbuffered)
 * or queue our node; then sleep on our waiter with the lock released.
 *
 * Why no pump after queueing on an unbuffered channel: every party that
 * can meet us queues itself, or looks for a queued partner, under this
 * lock. Before queueing we looked for a live partner and found none (dead
 * nodes met on the way were skipped), so the queue of the other side
 * holds no live node that could take us now; whoever comes later finds our
 * node under the lock (take_partner, or the pump of a select's
 * registration). A meeting is a one-step hand-over (take_node). A buffered
 * channel's ring changes without the lock, so there the node runs the pump
 * after the Dekker fence, as weft__chan_register does.
 *
 * Waiting, giving up and leaving follow weft__chan_block (select.c) exactly:
 * a timeout or a cancellation must win WAITING -> TIMEDOUT, or else the
 * claimer is handing something over and we wait for its finish.
 *
 * `inside` is taken once, when we first queue, and dropped once, at the
 * end: a RETRY loops without leaving the channel's lifetime, so an orphaned
 * channel (released while we wait) cannot be freed under a retry.
 */

/* Queue our node (under the lock), with a fresh waiter; armed (park.h) if
 * `arm`: only where nothing but a partner can finish it before we wait
 * (not buf_block, whose own pump may complete it at once). */
static inline CHAN_ALWAYS_INLINE void enqueue_self(struct weft_chan *ch, struct weft__chan_sel *sel,
                                struct weft__chan_node *nd, bool is_send, void *elem,
                                bool *stake, bool arm)
{
    /* Armed before q_push publishes the node. */
    if (arm)
        weft__waiter_init_armed(&sel->w);
    else
        weft__waiter_init(&sel->w);
    sel->winner = 0;
    sel->single = true;
    nd->sel = sel;
    nd->elem = elem;
    nd->idx = 0;
    nd->is_send = is_send;
    if (WEFT_LIKELY(!*stake)) {
        weft__chan_stake_add(ch);
        *stake = true;
    }
    q_push_side(ch, is_send, nd);
}

/* Sleep until our node is completed or we gave up; leave the queue. Returns
 * 0, -EPIPE, -ETIMEDOUT, -ECANCELED, or -EAGAIN for CHAN_RETRY. *stake
 * stays true only on RETRY (internal.h, Lifetime); otherwise it is gone, and
 * with it maybe the channel (an orphan's last user frees it here): the
 * caller must not touch ch again. */
static inline int wait_self(struct weft_chan *ch, struct weft__chan_sel *sel,
                            struct weft__chan_node *nd, weft_time_t deadline, bool *stake)
{
    sel->w.cancellable = true;
    int s = weft__waiter_wait(&sel->w, WEFT__W_WAITING, deadline);
    if (WEFT_LIKELY(s == WEFT__W_WOKEN && !sel->w.armed)) {
        /* The common end, in short: completed by a claimer after we slept
         * (nothing armed to take back); wait for its unlink, as below. */
        weft__chan_wait_unlinked(nd);
        *stake = false;
        return 0;
    }
    weft__waiter_disarm(&sel->w); /* if armed and not slept through */
    bool cancelled = s == -ECANCELED;
    if (WEFT_UNLIKELY(s == -ETIMEDOUT || s == -ECANCELED))
        s = weft__waiter_cas(&sel->w, WEFT__W_WAITING, WEFT__W_TIMEDOUT) ? WEFT__W_TIMEDOUT
                                                                          : WEFT__W_BUSY;
    sel->w.cancellable = false;
    while (WEFT_UNLIKELY(s == WEFT__W_BUSY))
        s = weft__waiter_wait(&sel->w, WEFT__W_BUSY, WEFT_FOREVER);

    if (WEFT_UNLIKELY(s == WEFT__W_TIMEDOUT)) {
        /* We gave up: our node is dead and still queued (nobody but us
         * unlinks a dead node), and our stake is intact. */
        weft__chan_leave(ch, nd, WEFT__CHAN_LEAVE_DEAD);
        *stake = false;
    } else {
        /* A claimer completed us, and unlinks our node last: wait for that
         * on the node itself (the usual case: already done), never on ch,
         * whose last user may be that claimer. WOKEN/CLOSED: it dropped our
         * stake; RETRY: the stake is still ours. */
        weft__chan_wait_unlinked(nd);
        if (s != WEFT__CHAN_RETRY)
            *stake = false;
    }
    switch (s) {
    case WEFT__W_WOKEN: return 0;
    case WEFT__W_CLOSED: return -EPIPE;
    case WEFT__W_TIMEDOUT: return cancelled ? -ECANCELED : -ETIMEDOUT;
    default: return -EAGAIN; /* WEFT__CHAN_RETRY */
    }
}

/* Unbuffered, under the lock: meet a queued partner. 0 (met: a wake may be
 * owed in *pw), -EPIPE (closed), -EAGAIN (nobody). */
static inline CHAN_ALWAYS_INLINE int unbuf_meet(struct weft_chan *ch, bool is_send, void *elem,
                                                struct pwake *pw)
{
    if (is_send) {
        if (chan_closed(ch))
            return -EPIPE;
        return take_partner(ch, &ch->rq, NULL, elem, pw) ? 0 : -EAGAIN;
    }
    if (take_partner(ch, &ch->sq, elem, NULL, pw))
        return 0;
    return chan_closed(ch) ? -EPIPE : -EAGAIN;
}

/* Unbuffered, called with the lock held and nobody to meet: queue, wait,
 * and on a RETRY meet or queue again. Releases the lock. Made once per side
 * (unbuf_block_send, unbuf_block_recv): with is_send constant, the queue
 * and count of each side are fixed offsets. */
static inline CHAN_ALWAYS_INLINE int unbuf_block(struct weft_chan *ch, bool is_send, void *elem,
                                                 weft_time_t deadline, bool expired)
{
    struct weft__chan_sel sel;
    struct weft__chan_node nd;
    struct pwake pw;
    PWAKE_NONE(pw);
    bool stake = false;
    int r;
    for (;;) {
        /* The lock is held here. */
        if (expired) {
            r = -ETIMEDOUT;
            break;
        }
        enqueue_self(ch, &sel, &nd, is_send, elem, &stake, true);
        weft__chan_unlock(ch); /* our stake keeps ch */
        r = wait_self(ch, &sel, &nd, deadline, &stake);
        if (WEFT_LIKELY(r != -EAGAIN))
            return r; /* no stake left: do not touch ch */
        /* RETRY: a pump claimed us for a partner that had gone. */
        expired = weft__deadline_passed(deadline);
        weft__chan_lock(ch);
        r = unbuf_meet(ch, is_send, elem, &pw);
        if (r != -EAGAIN)
            break;
    }
    if (stake)
        weft__chan_stake_drop(ch);
    bool last = weft__chan_unlock_last(ch);
    pwake_run(&pw);
    if (last)
        chan_free(ch);
    return r;
}

static WEFT_NOINLINE int unbuf_block_send(struct weft_chan *ch, void *elem,
                                          weft_time_t deadline, bool expired)
{
    return unbuf_block(ch, true, elem, deadline, expired);
}

static WEFT_NOINLINE int unbuf_block_recv(struct weft_chan *ch, void *elem,
                                          weft_time_t deadline, bool expired)
{
    return unbuf_block(ch, false, elem, deadline, expired);
}

/* A plain unbuffered send or receive: one lock, then meet or block. */
static inline CHAN_ALWAYS_INLINE int unbuf_op(struct weft_chan *ch, bool is_send, void *elem,
                                              weft_time_t deadline)
{
    /* An expired deadline still gets one try: read the clock outside the
     * lock (never for WEFT_FOREVER), decide after the try. */
    bool expired = weft__deadline_passed(deadline);
    struct pwake pw;
    PWAKE_NONE(pw);
    weft__chan_lock(ch);
    int r = unbuf_meet(ch, is_send, elem, &pw);
    if (r == -EAGAIN)
        return is_send ? unbuf_block_send(ch, elem, deadline, expired)
                       : unbuf_block_recv(ch, elem, deadline, expired);
    weft__chan_unlock(ch);
    pwake_run(&pw);
    return r;
}

/* Buffered, after the ring said full (send) or empty (receive): queue, run
 * the pump, wait; a RETRY queues again. */
static WEFT_NOINLINE int buf_block(struct weft_chan *ch, bool is_send, void *elem,
                                   weft_time_t deadline)
{
    struct weft__chan_sel sel;
    struct weft__chan_node nd;
    bool stake = false;
    int r;
    for (;;) {
        if (weft__deadline_passed(deadline)) {
            /* One more try, as select's "succeeds if it need not wait"
             * (after a RETRY our stake keeps ch). */
            r = is_send ? weft__chan_send_try(ch, elem) : weft__chan_recv_try(ch, elem);
            if (r == -EAGAIN)
                r = -ETIMEDOUT;
            break;
        }
        struct weft__chan_node *done = NULL;
        weft__chan_lock(ch);
        enqueue_self(ch, &sel, &nd, is_send, elem, &stake, false);
        /* Dekker with the ring's fast paths (see the top). */
        WEFT__CHAN_FENCE(ch);
        pump(ch, &done);
        /* The pump may complete our own node: then the stake went with it
         * (wait_self sees that) and we may even be an orphan's last user. */
        bool last = weft__chan_unlock_last(ch);
        finish_done(done);
        if (last)
            chan_free(ch); /* our node is completed and unlinked: wait_self
                              reads only the waiter and the node */
        r = wait_self(ch, &sel, &nd, deadline, &stake);
        if (r != -EAGAIN)
            return r; /* no stake left: do not touch ch */
    }
    if (stake) {
        weft__chan_lock(ch);
        weft__chan_stake_drop(ch);
        if (weft__chan_unlock_last(ch))
            chan_free(ch);
    }
    return r;
}

static int send_slow(struct weft_chan *ch, const void *elem, weft_time_t deadline)
{
    if (may_spin()) {
        unsigned step = 0;
        while (step < CHAN_SPIN_ROUNDS) {
            weft__backoff(&step);
            int r = ring_push(ch, elem);
            if (r == 0) {
                notify(ch, &ch->nrecv);
                return 0;
            }
            if (r == -EPIPE)
                return r;
        }
    }
    return buf_block(ch, true, (void *)elem, deadline);
}

static int recv_slow(struct weft_chan *ch, void *out, weft_time_t deadline)
{
    if (may_spin()) {
        unsigned step = 0;
        while (step < CHAN_SPIN_ROUNDS) {
            weft__backoff(&step);
            int r = ring_pop(ch, out);
            if (r == 0) {
                notify(ch, &ch->nsend);
                return 0;
            }
            if (r == -EPIPE)
                return r;
        }
    }
    return buf_block(ch, false, out, deadline);
}

int weft_chan_send(weft_chan_t *ch, const void *elem)
{
    if (WEFT_UNLIKELY(!ch || !elem))
        return -EINVAL;
    if (WEFT_UNLIKELY(ch->cap == 0))
        return unbuf_op(ch, true, (void *)elem, WEFT_FOREVER);
    int r = ring_push(ch, elem);
    if (WEFT_LIKELY(r == 0)) {
        notify(ch, &ch->nrecv);
        return 0;
    }
    if (r == -EPIPE)
        return r;
    return send_slow(ch, elem, WEFT_FOREVER);
}

int weft_chan_send_try(weft_chan_t *ch, const void *elem)
{
    if (WEFT_UNLIKELY(!ch || !elem))
        return -EINVAL;
    return weft__chan_send_try(ch, elem);
}

int weft_chan_send_until(weft_chan_t *ch, const void *elem, weft_time_t deadline)
{
    if (WEFT_UNLIKELY(!ch || !elem || deadline < 0))
        return -EINVAL;
    if (ch->cap == 0)
        return unbuf_op(ch, true, (void *)elem, deadline);
    int r = ring_push(ch, elem);
    if (r == 0) {
        notify(ch, &ch->nrecv);
        return 0;
    }
    if (r == -EPIPE)
        return r;
    if (weft__deadline_passed(deadline))
        return -ETIMEDOUT;
    return send_slow(ch, elem, deadline);
}

int weft_chan_recv(weft_chan_t *ch, void *out)
{
    if (WEFT_UNLIKELY(!ch || !out))
        return -EINVAL;
    if (WEFT_UNLIKELY(ch->cap == 0))
        return unbuf_op(ch, false, out, WEFT_FOREVER);
    int r = ring_pop(ch, out);
    if (WEFT_LIKELY(r == 0)) {
        notify(ch, &ch->nsend);
        return 0;
    }
    if (r == -EPIPE)
        return r;
    return recv_slow(ch, out, WEFT_FOREVER);
}

int weft_chan_recv_try(weft_chan_t *ch, void *out)
{
    if (WEFT_UNLIKELY(!ch || !out))
        return -EINVAL;
    return weft__chan_recv_try(ch, out);
}

int weft_chan_recv_until(weft_chan_t *ch, void *out, weft_time_t deadline)
{
    if (WEFT_UNLIKELY(!ch || !out || deadline < 0))
        return -EINVAL;
    if (ch->cap == 0)
        return unbuf_op(ch, false, out, deadline);
    int r = ring_pop(ch, out);
    if (r == 0) {
        notify(ch, &ch->nsend);
        return 0;
    }
    if (r == -EPIPE)
        return r;
    if (weft__deadline_passed(deadline))
        return -ETIMEDOUT;
    return recv_slow(ch, out, deadline);
}
