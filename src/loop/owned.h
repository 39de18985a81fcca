/*
 * loop/owned.h - the state of an OWNED registration (backend.h: vouch) and
 * the logic over it that both backends share: epoll.c's EDGE registration
 * (EPOLLET) and uring.c's multishot POLL_ADD keep the same record per fd
 * number and treat it the same way; only what the kernel holds (is the
 * registration still owned? submitting, epoll_ctl, io_uring's idle list)
 * is each backend's own. Included by the backends only; the loop sees
 * backend.h alone.
 *
 * Everything here is inline and called with the record in hand: the
 * vouched arm's common case (arm_owned) runs once per socket wait.
 */
#ifndef WEFT_LOOP_OWNED_H
#define WEFT_LOOP_OWNED_H

#include <stdbool.h>
#include <stdint.h>

#include "backend.h"

/* One fd number's owned registration, embedded in the backend's record
 * (epoll.c's struct efd, uring.c's struct ufd); meaningful while the
 * backend says the registration is owned (epoll: M_EDGE; io_uring: multi).
 * Zero is "nothing armed, no hang-up seen, not listed". */
struct weft__owned {
    uint8_t want;    /* the armed directions (WEFT__IO_READ|WRITE) */
    uint8_t vouched; /* armed directions whose vouch still holds */
    uint8_t hup;     /* sticky (see weft__owned_hup_pending): READ after the
                        peer's FIN, READ|WRITE|ERROR after a hang-up */
    bool pend;       /* on the backend's pend list (weft__owned_hup_pending) */
    uint32_t epoch;  /* the fd's epoch when registered (net_support.h) */
    void *data;      /* what arm was given (io_uring keeps its one-shot
                        arms' data here too) */
};

/* A vouch waiting for the next arm (backend.h's vouch), one per backend.
 * fd -1: none. */
struct weft__vouch {
    int fd;
    uint32_t events; /* WEFT__IO_READ|WRITE vouched for */
    uint32_t epoch;
};

/* backend.h's vouch: for the next arm (fd < 0: drop a vouch no arm used). */
static inline void weft__vouch_set(struct weft__vouch *v, int fd, uint32_t events, uint32_t epoch)
{
    v->fd = fd;
    v->events = events & (WEFT__IO_READ | WEFT__IO_WRITE);
    v->epoch = epoch;
}

/* An arm of fd takes the vouch, which is for this arm or for none: the
 * directions vouched for fd (0: none, or a vouch for another fd) and the
 * epoch into *epoch. No vouch is left either way. */
static inline uint32_t weft__vouch_take(struct weft__vouch *v, int fd, uint32_t *epoch)
{
    uint32_t events = v->fd == fd && fd >= 0 ? v->events : 0;
    *epoch = v->epoch;
    v->fd = -1;
    return events;
}

/* fd is forgotten (closed): a vouch for it goes. */
static inline void weft__vouch_forget(struct weft__vouch *v, int fd)
{
    if (v->fd == fd)
        v->fd = -1;
}

/*
 * Does o's registration (owned: the caller checked) serve a vouched arm of
 * `events`? Only if it is the registration of this epoch (another one
 * means the number may now be another file), and every direction asked
 * for is vouched: now (`vouch`) or still from before (directions armed
 * earlier keep their vouch while the registration is the same one).
 */
static inline bool weft__owned_serves(const struct weft__owned *o, uint32_t epoch, uint32_t vouch,
                                      uint32_t events)
{
    return o->epoch == epoch && !(events & ~(vouch | o->vouched));
}

/* Arm o for `events` (all vouched), reported with data: the common case of
 * a vouched arm, no system call. The caller then checks o->hup & events
 * (weft__owned_hup_pending), unless it has made sure there is none. */
static inline void weft__owned_arm(struct weft__owned *o, uint32_t events, void *data)
{
    o->want = (uint8_t)events;
    o->vouched = (uint8_t)events;
    o->data = data;
}

/*
 * backend.h's arm_owned, its common case, for a registration the backend
 * holds owned (its own test): if the registration serves the arm
 * (weft__owned_serves; `vouch`: the directions vouched now, `all`: those
 * waited on) and no hang-up seen concerns `all`, arm it and return true:
 * no system call, nothing to queue. Else false, nothing done: vouch + arm
 * decide the rest.
 */
static inline bool weft__owned_arm_held(struct weft__owned *o, uint32_t epoch, uint32_t vouch,
                                        uint32_t all, void *data)
{
    if (!weft__owned_serves(o, epoch, vouch, all) || (o->hup & all))
        return false;
    weft__owned_arm(o, all, data);
    return true;
}

/*
 * A hang-up (peer's FIN, reset) is a state, not an event: it stays.
 * Its edge comes once, and a reader may have been told of it together with
 * data (one report: IN|RDHUP), read the data with a short read, and then
 * waited without a read(2) that would have returned 0 (src/net/io.c skips
 * the read after a short one). So an owned registration remembers a
 * hang-up it has seen (weft__owned_hung_up, from each report), and a
 * vouched arm of such an fd is reported at the next poll without waiting
 * for an edge (tokio keeps its "closed" readiness for the same reason):
 * the arm calls this to list fd on the backend's pend list, and the poll
 * takes the list first (weft__owned_take). Only the directions the hang-up
 * concerns: after the peer's FIN (RDHUP) a writer may still write and
 * waits for edges as before. A new registration (mode change, new epoch)
 * starts clean (hup = 0): EPOLL_CTL_ADD / MOD and a new POLL_ADD look at
 * the current state themselves.
 *
 * 0 (listed now or already), or -ENOMEM (not listed; the arm returns it).
 */
static inline int weft__owned_hup_pending(struct weft__fdlist *pend, struct weft__owned *o, int fd)
{
    if (o->pend)
        return 0;
    int e = weft__fdlist_push(pend, fd);
    if (e == 0)
        o->pend = true;
    return e;
}

/* A report of the registration said the fd hung up (`gone`: HUP) or that
 * the peer sent its FIN (`fin`: RDHUP): remember it (sticky, see
 * weft__owned_hup_pending). An error without a hang-up (ERR alone) is not
 * a state: it is reported with this report, as any readiness, and the
 * call that reads it clears it (a connected UDP socket's ICMP "port
 * unreachable", cleared by the next recv; a TCP error queue). Kept, it
 * would report every later wait at once: a wait that spins. A reset or a
 * timed-out TCP connection reports HUP with its ERR. */
static inline void weft__owned_hung_up(struct weft__owned *o, bool gone, bool fin)
{
    if (gone)
        o->hup = WEFT__IO_READ | WEFT__IO_WRITE | WEFT__IO_ERROR;
    else if (fin)
        o->hup |= WEFT__IO_READ; /* the peer will send no more: reads see end of file */
}

/*
 * A report of the registration with readiness ev (WEFT__IO_*), while a
 * direction is armed: into *out, and true, if an armed direction (or an
 * error) is in it; else false (the armed direction is still not ready:
 * keep waiting). One report, then nothing until armed again; a direction
 * that was armed and is not in this report was seen not ready now, so its
 * vouch holds for the re-arm that follows (the loop re-arms the other
 * waiter).
 */
static inline bool weft__owned_report(struct weft__owned *o, uint32_t ev,
                                      struct weft__io_event *out)
{
    if (!(ev & (o->want | WEFT__IO_ERROR)))
        return false;
    out->data = o->data;
    out->events = ev;
    o->want = 0;
    o->vouched &= (uint8_t)~ev;
    return true;
}

/*
 * One fd of the pend list, taken at the start of a poll (the list's entry
 * goes, whatever this returns): the report weft__owned_hup_pending
 * promised, into *out, and true; false if the registration is no longer
 * owned (`owned`: the backend's test) or no armed direction is one the
 * hang-up concerns (forgotten, re-registered or disarmed meanwhile).
 */
static inline bool weft__owned_take(struct weft__owned *o, bool owned, struct weft__io_event *out)
{
    o->pend = false;
    if (!owned || !(o->hup & o->want))
        return false;
    out->data = o->data;
    out->events = o->hup;
    o->vouched &= (uint8_t)~o->want;
    o->want = 0;
    return true;
}

#endif /* WEFT_LOOP_OWNED_H */
