/*
 * select.c - Go's select over channels, and the blocking core that plain
 * sends and receives share with it.
 *
 * A blocking operation (one case or many) goes:
 *
 *   1. Try every case once, in a fresh uniformly random order (Fisher-Yates
 *      over the indices), and perform the first that can proceed. Go's
 *      selectgo does the same; a random start with a fixed cyclic order is
 *      not enough (with cases 0 and 1 ready and 2 not, 0 would win 2/3).
 *   2. Queue one node per case on its channel, all pointing at ONE waiter.
 *      Each registration runs that channel's pump, which may complete us at
 *      once; we stop registering when the waiter is no longer WAITING.
 *   3. Sleep on the waiter until a pump claims it (WAITING -> BUSY, which
 *      claims the whole select) and finishes it, or the deadline passes. To
 *      time out we must win WAITING -> TIMEDOUT ourselves; if a claimer got
 *      there first, the operation is happening and we wait for its finish,
 *      so a timed-out select never consumed or sent anything.
 *   4. Leave every channel (unlinking nodes a claimer did not unlink: dead
 *      ones are left to their owner) and drop the stakes still ours. Only
 *      then may the nodes' memory go. A CHAN_RETRY finish means a fast
 *      path beat the pump to what it had claimed us for: start again at 1.
 */
#include <stdlib.h>

#include "internal.h"

#define SELECT_MAX 4096
/* Cases handled without allocating: the permutation for up to PERM_STACK
 * cases, nodes for up to NODE_STACK. */
#define PERM_STACK 64
#define NODE_STACK 4

static void shuffle(uint16_t *perm, size_t n)
{
    for (size_t i = 0; i < n; i++)
        perm[i] = (uint16_t)i;
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = (size_t)(weft__rand() % (i + 1));
        uint16_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

static int try_case(weft_select_case_t *c)
{
    if (c->op == WEFT_SELECT_SEND)
        return weft__chan_send_try(c->chan, c->elem);
    return weft__chan_recv_try(c->chan, c->elem);
}

/* Try the cases in perm's order: the index done (result set), or -EAGAIN. */
static int try_all(weft_select_case_t *cases, const uint16_t *perm, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        weft_select_case_t *c = &cases[perm[k]];
        if (!c->chan)
            continue;
        int r = try_case(c);
        if (r != -EAGAIN) {
            c->result = r;
            return perm[k];
        }
    }
    return -EAGAIN;
}

int weft__chan_block(weft_select_case_t *cases, size_t n, weft_time_t deadline,
                     bool skip_first_try)
{
    uint16_t perm_stack[PERM_STACK];
    struct weft__chan_node node_stack[NODE_STACK];
    uint16_t *perm = perm_stack;
    struct weft__chan_node *nodes = node_stack;
    if (n > PERM_STACK) {
        perm = malloc(n * sizeof *perm);
        if (!perm)
            return -ENOMEM;
    }
    /* The nodes only once it must wait (below): a case that can be done at
     * once needs none, and must not fail for want of them. */
    struct weft__chan_sel sel;
    /* An expired deadline still gets one try ("succeeds if it need not wait"). */
    bool do_try = !skip_first_try || weft__deadline_passed(deadline);
    int result;
    for (;;) {
        shuffle(perm, n);
        if (do_try) {
            result = try_all(cases, perm, n);
            if (result != -EAGAIN)
                break;
        }
        do_try = true;
        if (weft__deadline_passed(deadline)) {
            result = -ETIMEDOUT;
            break;
        }
        if (n > NODE_STACK && nodes == node_stack) {
            nodes = malloc(n * sizeof *nodes);
            if (!nodes) {
                nodes = node_stack;
                result = -ENOMEM;
                break;
            }
        }

        weft__waiter_init(&sel.w);
        sel.winner = 0;
        sel.single = false; /* several nodes: claimed in two steps */
        size_t nreg = 0;
        for (size_t k = 0; k < n; k++) {
            weft_select_case_t *c = &cases[perm[k]];
            if (!c->chan)
                continue;
            if (weft__waiter_state(&sel.w) != WEFT__W_WAITING)
                break; /* an earlier registration already completed us */
            struct weft__chan_node *nd = &nodes[nreg++];
            nd->sel = &sel;
            nd->elem = c->elem;
            nd->idx = perm[k];
            weft__chan_register(c->chan, nd, c->op == WEFT_SELECT_SEND);
        }

        /* A cancelled coroutine gives up exactly as on a timeout: it claims
         * itself (WAITING -> TIMEDOUT), so no partner can complete it, and
         * leaves every queue; an element it was handed first is kept (the
         * claim fails and the operation completes). */
        sel.w.cancellable = true;
        int s = weft__waiter_wait(&sel.w, WEFT__W_WAITING, deadline);
        bool cancelled = s == -ECANCELED;
        if (s == -ETIMEDOUT || s == -ECANCELED)
            s = weft__waiter_cas(&sel.w, WEFT__W_WAITING, WEFT__W_TIMEDOUT) ? WEFT__W_TIMEDOUT
                                                                             : WEFT__W_BUSY;
        /* Claimed (the wait returns on any change, BUSY included): the
         * claimer finishes within a few instructions of its unlock, and
         * that wait is not cut short. */
        sel.w.cancellable = false;
        while (s == WEFT__W_BUSY)
            s = weft__waiter_wait(&sel.w, WEFT__W_BUSY, WEFT_FOREVER);

        /* How each node leaves (internal.h, Lifetime): the winner's node was
         * completed (its stake gone, or kept on RETRY), every other one is
         * dead and ours to unlink. */
        for (size_t j = 0; j < nreg; j++) {
            int how = WEFT__CHAN_LEAVE_DEAD;
            if (s != WEFT__W_TIMEDOUT && nodes[j].idx == sel.winner)
                how = s == WEFT__CHAN_RETRY ? WEFT__CHAN_LEAVE_KEPT : WEFT__CHAN_LEAVE_COMPLETED;
            weft__chan_leave(cases[nodes[j].idx].chan, &nodes[j], how);
        }

        if (s == WEFT__W_WOKEN || s == WEFT__W_CLOSED) {
            cases[sel.winner].result = s == WEFT__W_WOKEN ? 0 : -EPIPE;
            result = (int)sel.winner;
            break;
        }
        if (s == WEFT__W_TIMEDOUT) {
            result = cancelled ? -ECANCELED : -ETIMEDOUT;
            break;
        }
        /* WEFT__CHAN_RETRY: start again. */
    }
    if (perm != perm_stack)
        free(perm);
    if (nodes != node_stack)
        free(nodes);
    return result;
}

static int check_cases(const weft_select_case_t *cases, size_t n)
{
    if (!cases || n == 0 || n > SELECT_MAX)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (cases[i].op != WEFT_SELECT_SEND && cases[i].op != WEFT_SELECT_RECV)
            return -EINVAL;
        if (cases[i].chan && !cases[i].elem)
            return -EINVAL;
    }
    return 0;
}

int weft_chan_select(weft_select_case_t *cases, size_t n)
{
    int r = check_cases(cases, n);
    if (r)
        return r;
    return weft__chan_block(cases, n, WEFT_FOREVER, false);
}

int weft_chan_select_until(weft_select_case_t *cases, size_t n, weft_time_t deadline)
{
    int r = check_cases(cases, n);
    if (r)
        return r;
    if (deadline < 0)
        return -EINVAL;
    return weft__chan_block(cases, n, deadline, false);
}

int weft_chan_select_try(weft_select_case_t *cases, size_t n)
{
    int r = check_cases(cases, n);
    if (r)
        return r;
    uint16_t perm_stack[PERM_STACK];
    uint16_t *perm = perm_stack;
    if (n > PERM_STACK) {
        perm = malloc(n * sizeof *perm);
        if (!perm)
            return -ENOMEM;
    }
    shuffle(perm, n);
    r = try_all(cases, perm, n);
    if (perm != perm_stack)
        free(perm);
    return r;
}
