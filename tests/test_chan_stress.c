/* weft channels under stress: MPMC exactly-once and per-producer order for
 * several shapes and capacities, close racing with blocked callers, select
 * and deadlines racing with sends, release racing with timeouts, ping-pong,
 * and the revocation of the lock's bias while its thread holds it or is
 * taking it.
 * Sizes scale with WEFT_TEST_SCALE (check_iters). */
#include <sched.h>
#include <stdatomic.h>
#include <weft.h>

#include "chan/internal.h"
#include "check.h"

#define FAR_DEADLINE() weft_deadline_in(120.0)

/* ---- a bitmap of item ids -------------------------------------------------- */

struct bits {
    _Atomic uint64_t *w;
    size_t n;
};

static void bits_init(struct bits *b, size_t n)
{
    b->n = n;
    b->w = calloc((n + 63) / 64, sizeof *b->w);
    if (!b->w)
        abort();
}

/* Set bit i; true if it was clear. */
static bool bits_set(struct bits *b, size_t i)
{
    uint64_t m = (uint64_t)1 << (i % 64);
    return !(atomic_fetch_or(&b->w[i / 64], m) & m);
}

static bool bits_get(struct bits *b, size_t i)
{
    return atomic_load(&b->w[i / 64]) & ((uint64_t)1 << (i % 64));
}

/* ---- sending and receiving in several styles ------------------------------------ */

/* style 0: blocking; 1: _until with a far deadline; 2: _try a while, then
 * blocking; 3: select with a switched-off case. Returns 0 or -EPIPE. */
static int send_styled(weft_chan_t *ch, const void *v, int style)
{
    switch (style & 3) {
    case 0: return weft_chan_send(ch, v);
    case 1: return weft_chan_send_until(ch, v, FAR_DEADLINE());
    case 2:
        for (int i = 0; i < 20; i++) {
            int r = weft_chan_send_try(ch, v);
            if (r != -EAGAIN)
                return r;
            sched_yield();
        }
        return weft_chan_send(ch, v);
    default: {
        weft_select_case_t c[2] = {{NULL, WEFT_SELECT_RECV, NULL, 0},
                                   {ch, WEFT_SELECT_SEND, (void *)v, 1}};
        int r = weft_chan_select(c, 2);
        return r == 1 ? c[1].result : -1000 + r;
    }
    }
}

static int recv_styled(weft_chan_t *ch, void *v, int style)
{
    switch (style & 3) {
    case 0: return weft_chan_recv(ch, v);
    case 1: return weft_chan_recv_until(ch, v, FAR_DEADLINE());
    case 2:
        for (int i = 0; i < 20; i++) {
            int r = weft_chan_recv_try(ch, v);
            if (r != -EAGAIN)
                return r;
            sched_yield();
        }
        return weft_chan_recv(ch, v);
    default: {
        weft_select_case_t c[2] = {{ch, WEFT_SELECT_RECV, v, 1},
                                   {NULL, WEFT_SELECT_SEND, NULL, 0}};
        int r = weft_chan_select_until(c, 2, FAR_DEADLINE());
        return r == 0 ? c[0].result : -1000 + r;
    }
    }
}

/* ---- MPMC: every item exactly once, per-producer order ------------------------- */

#define MAXP 8

struct mpmc {
    weft_chan_t *ch;
    int P, C;
    long per; /* items per producer */
    struct bits seen;
    _Atomic long received;
    _Atomic int producers_left;
    _Atomic long errors;
    _Atomic long bad_rc;
};

static void mpmc_thread(void *arg, int idx)
{
    struct mpmc *m = arg;
    if (idx < m->P) {
        for (long s = 0; s < m->per; s++) {
            uint64_t item = ((uint64_t)idx << 32) | (uint64_t)s;
            int r = send_styled(m->ch, &item, (int)(idx + s));
            if (r != 0) {
                atomic_fetch_add(&m->bad_rc, 1);
                break;
            }
        }
        if (atomic_fetch_sub(&m->producers_left, 1) == 1)
            weft_chan_close(m->ch);
        return;
    }
    long last[MAXP];
    for (int p = 0; p < MAXP; p++)
        last[p] = -1;
    for (long k = 0;; k++) {
        uint64_t item;
        int r = recv_styled(m->ch, &item, (int)(idx + k));
        if (r == -EPIPE)
            break;
        if (r != 0) {
            atomic_fetch_add(&m->bad_rc, 1);
            break;
        }
        int p = (int)(item >> 32);
        long s = (long)(item & 0xffffffffu);
        if (p >= m->P || s >= m->per || s <= last[p]) {
            atomic_fetch_add(&m->errors, 1); /* out of range, or out of order */
            continue;
        }
        last[p] = s;
        if (!bits_set(&m->seen, (size_t)p * (size_t)m->per + (size_t)s))
            atomic_fetch_add(&m->errors, 1); /* duplicate */
        atomic_fetch_add(&m->received, 1);
    }
}

static void mpmc_run(int P, int C, size_t cap, long total)
{
    struct mpmc m = {0};
    m.P = P;
    m.C = C;
    m.per = total / P;
    CHECK_OK(weft_chan_create(&m.ch, sizeof(uint64_t), cap));
    bits_init(&m.seen, (size_t)P * (size_t)m.per);
    atomic_store(&m.producers_left, P);
    check_parallel(P + C, mpmc_thread, &m);
    long missing = 0;
    for (size_t i = 0; i < m.seen.n; i++)
        if (!bits_get(&m.seen, i))
            missing++;
    if (atomic_load(&m.errors) || missing || atomic_load(&m.bad_rc))
        fprintf(stderr, "mpmc P=%d C=%d cap=%zu: errors %ld missing %ld bad_rc %ld\n", P, C,
                cap, atomic_load(&m.errors), missing, atomic_load(&m.bad_rc));
    CHECK_INT(atomic_load(&m.errors), ==, 0);
    CHECK_INT(atomic_load(&m.bad_rc), ==, 0);
    CHECK_INT(missing, ==, 0);
    CHECK_INT(atomic_load(&m.received), ==, (long)P * m.per);
    CHECK_U64(weft_chan_len(m.ch), ==, 0);
    CHECK_U64(atomic_load(&m.ch->inside), ==, 0);
    CHECK_OK(weft_chan_release(m.ch));
    free(m.seen.w);
}

static void test_mpmc(void)
{
    static const int shapes[][2] = {{1, 1}, {2, 2}, {4, 2}, {1, 4}, {3, 1}};
    static const size_t caps[] = {0, 1, 7, 1024};
    long big = check_iters("CHAN_MPMC", 60000);
    long small = check_iters("CHAN_MPMC_SMALL", 12000);
    for (size_t c = 0; c < sizeof caps / sizeof caps[0]; c++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            mpmc_run(shapes[s][0], shapes[s][1], caps[c], caps[c] <= 1 ? small : big);
}

/* ---- close racing with blocked senders, receivers and selects -------------------- */

#define CR_PER 4000 /* ids per producer */

struct close_race {
    weft_chan_t *ch;
    weft_chan_t *idle; /* nobody sends on it: a never-ready second case */
    int P, C;
    long threshold;
    struct bits sent, recvd;
    _Atomic long sent_ok, received;
    _Atomic int producers_done;
    _Atomic long errors;
};

static void close_race_thread(void *arg, int idx)
{
    struct close_race *cr = arg;
    if (idx == 0) {
        /* The closer: after some items went through (or all were sent). */
        while (atomic_load(&cr->received) < cr->threshold &&
               atomic_load(&cr->producers_done) < cr->P)
            sched_yield();
        if (weft_chan_close(cr->ch) != 0)
            atomic_fetch_add(&cr->errors, 1);
        return;
    }
    idx--;
    if (idx < cr->P) {
        for (long s = 0; s < CR_PER; s++) {
            uint64_t id = (uint64_t)idx * CR_PER + (uint64_t)s;
            int r;
            if ((s & 3) == 3) {
                int dummy = 0;
                weft_select_case_t c[2] = {{cr->idle, WEFT_SELECT_RECV, &dummy, 0},
                                           {cr->ch, WEFT_SELECT_SEND, &id, 0}};
                r = weft_chan_select(c, 2);
                r = r == 1 ? c[1].result : -1000;
            } else {
                r = send_styled(cr->ch, &id, (int)s);
            }
            if (r == -EPIPE)
                break;
            if (r != 0) {
                atomic_fetch_add(&cr->errors, 1);
                break;
            }
            bits_set(&cr->sent, id);
            atomic_fetch_add(&cr->sent_ok, 1);
        }
        atomic_fetch_add(&cr->producers_done, 1);
        return;
    }
    for (long k = 0;; k++) {
        uint64_t id;
        int r;
        if ((k & 3) == 3) {
            int dummy = 0;
            weft_select_case_t c[2] = {{cr->ch, WEFT_SELECT_RECV, &id, 0},
                                       {cr->idle, WEFT_SELECT_RECV, &dummy, 0}};
            r = weft_chan_select(c, 2);
            r = r == 0 ? c[0].result : -1000;
        } else {
            r = recv_styled(cr->ch, &id, (int)k + idx);
        }
        if (r == -EPIPE)
            break;
        if (r != 0 || id >= (uint64_t)cr->P * CR_PER || !bits_set(&cr->recvd, id)) {
            atomic_fetch_add(&cr->errors, 1);
            break;
        }
        atomic_fetch_add(&cr->received, 1);
    }
}

static void test_close_race(void)
{
    static const size_t caps[] = {0, 1, 7, 64};
    long rounds = check_iters("CHAN_CLOSE_ROUNDS", 120);
    weft_chan_t *idle;
    CHECK_OK(weft_chan_create(&idle, sizeof(int), 0));
    for (long i = 0; i < rounds; i++) {
        struct close_race cr = {0};
        cr.P = 1 + (int)(i % 3);
        cr.C = 1 + (int)((i / 3) % 3);
        cr.threshold = (i * 37) % 300;
        cr.idle = idle;
        CHECK_OK(weft_chan_create(&cr.ch, sizeof(uint64_t), caps[i % 4]));
        bits_init(&cr.sent, (size_t)cr.P * CR_PER);
        bits_init(&cr.recvd, (size_t)cr.P * CR_PER);
        check_parallel(1 + cr.P + cr.C, close_race_thread, &cr);
        /* What is left in the buffer after close was accepted too. */
        long left = 0;
        uint64_t id;
        int r;
        while ((r = weft_chan_recv_try(cr.ch, &id)) == 0) {
            if (id >= (uint64_t)cr.P * CR_PER || !bits_set(&cr.recvd, id))
                atomic_fetch_add(&cr.errors, 1);
            left++;
        }
        CHECK_RC(r, -EPIPE);
        CHECK_INT(atomic_load(&cr.errors), ==, 0);
        CHECK_INT(atomic_load(&cr.sent_ok), ==, atomic_load(&cr.received) + left);
        long diff = 0;
        for (size_t k = 0; k < cr.sent.n; k++)
            if (bits_get(&cr.sent, k) != bits_get(&cr.recvd, k))
                diff++;
        CHECK_INT(diff, ==, 0);
        CHECK_U64(atomic_load(&cr.ch->inside), ==, 0);
        CHECK_OK(weft_chan_release(cr.ch));
        free(cr.sent.w);
        free(cr.recvd.w);
    }
    CHECK_U64(atomic_load(&idle->inside), ==, 0);
    CHECK_OK(weft_chan_release(idle));
}

/* ---- select and deadlines racing with sends -------------------------------------- */

/* Producers send ids over two channels A and B, some with select over both
 * sends, with short random deadlines (retrying the same id on -ETIMEDOUT);
 * consumers take with select over both receives or with recv_until, also
 * with short deadlines. A timed-out call must not have moved anything:
 * every id arrives exactly once. */
struct timed {
    weft_chan_t *ch[2];
    int P, C;
    long per;
    struct bits seen;
    _Atomic long timeouts, errors, received;
    _Atomic int producers_left;
};

static weft_time_t short_deadline(void)
{
    /* 0 to ~60 us: often expired before the call is done. */
    return weft_now() + (weft_time_t)(weft__rand() % 60000);
}

static void timed_thread(void *arg, int idx)
{
    struct timed *t = arg;
    if (idx < t->P) {
        for (long s = 0; s < t->per; s++) {
            uint64_t id = (uint64_t)idx * (uint64_t)t->per + (uint64_t)s;
            for (;;) {
                int r;
                if (s & 1) {
                    weft_select_case_t c[2] = {{t->ch[0], WEFT_SELECT_SEND, &id, 0},
                                               {t->ch[1], WEFT_SELECT_SEND, &id, 0}};
                    r = weft_chan_select_until(c, 2, short_deadline());
                    if (r >= 0)
                        r = c[r].result;
                } else {
                    r = weft_chan_send_until(t->ch[idx & 1], &id, short_deadline());
                }
                if (r == 0)
                    break;
                if (r == -ETIMEDOUT) {
                    atomic_fetch_add(&t->timeouts, 1);
                    continue;
                }
                atomic_fetch_add(&t->errors, 1);
                break;
            }
        }
        if (atomic_fetch_sub(&t->producers_left, 1) == 1) {
            weft_chan_close(t->ch[0]);
            weft_chan_close(t->ch[1]);
        }
        return;
    }
    bool open[2] = {true, true};
    for (long k = 0; open[0] || open[1]; k++) {
        uint64_t id;
        int r, which;
        if ((k & 1) || !open[k & 2 ? 1 : 0]) {
            weft_select_case_t c[2] = {{open[0] ? t->ch[0] : NULL, WEFT_SELECT_RECV, &id, 0},
                                       {open[1] ? t->ch[1] : NULL, WEFT_SELECT_RECV, &id, 0}};
            which = weft_chan_select_until(c, 2, short_deadline());
            r = which >= 0 ? c[which].result : which;
        } else {
            which = k & 2 ? 1 : 0;
            r = weft_chan_recv_until(t->ch[which], &id, short_deadline());
        }
        if (r == -ETIMEDOUT) {
            atomic_fetch_add(&t->timeouts, 1);
            continue;
        }
        if (r == -EPIPE) {
            open[which] = false;
            continue;
        }
        if (r != 0 || id >= t->seen.n || !bits_set(&t->seen, id)) {
            atomic_fetch_add(&t->errors, 1);
            break;
        }
        atomic_fetch_add(&t->received, 1);
    }
}

static void test_timed_race(void)
{
    static const size_t caps[] = {0, 1, 4};
    long total = check_iters("CHAN_TIMED", 12000);
    for (size_t c = 0; c < 3; c++) {
        struct timed t = {0};
        t.P = 2;
        t.C = 2;
        t.per = total / t.P;
        CHECK_OK(weft_chan_create(&t.ch[0], sizeof(uint64_t), caps[c]));
        CHECK_OK(weft_chan_create(&t.ch[1], sizeof(uint64_t), caps[c]));
        bits_init(&t.seen, (size_t)t.P * (size_t)t.per);
        atomic_store(&t.producers_left, t.P);
        check_parallel(t.P + t.C, timed_thread, &t);
        long missing = 0;
        for (size_t i = 0; i < t.seen.n; i++)
            if (!bits_get(&t.seen, i))
                missing++;
        CHECK_INT(atomic_load(&t.errors), ==, 0);
        CHECK_INT(missing, ==, 0);
        CHECK_INT(atomic_load(&t.received), ==, (long)t.seen.n);
        for (int i = 0; i < 2; i++) {
            CHECK_U64(atomic_load(&t.ch[i]->inside), ==, 0);
            CHECK_U64(weft_chan_len(t.ch[i]), ==, 0);
            CHECK_OK(weft_chan_release(t.ch[i]));
        }
        free(t.seen.w);
    }
}

/* ---- release racing with timeouts ------------------------------------------------- */

struct orphan {
    weft_chan_t *ch;
    int rc;
    _Atomic int done;
};

static void *orphan_main(void *p)
{
    struct orphan *o = p;
    int v;
    o->rc = weft_chan_recv_until(o->ch, &v, weft_now() + (weft_time_t)(weft__rand() % 200000));
    atomic_store(&o->done, 1);
    return NULL;
}

static void test_release_race(void)
{
    long rounds = check_iters("CHAN_RELEASE_ROUNDS", 300);
    long busy = 0;
    for (long i = 0; i < rounds; i++) {
        struct orphan o = {0};
        CHECK_OK(weft_chan_create(&o.ch, sizeof(int), (size_t)(i & 1)));
        pthread_t t;
        pthread_create(&t, NULL, orphan_main, &o);
        /* Release once the receiver is inside (or already gone): it either
         * times out or is released with -EPIPE, and whoever is last frees. */
        while (!atomic_load(&o.done) && (atomic_load(&o.ch->inside) & ~WEFT__CHAN_ORPHAN) == 0)
            sched_yield();
        int r = weft_chan_release(o.ch);
        CHECK(r == 0 || r == -EBUSY);
        if (r == -EBUSY)
            busy++;
        pthread_join(t, NULL);
        CHECK(o.rc == -ETIMEDOUT || o.rc == -EPIPE);
        if (r == -EBUSY)
            CHECK(o.rc == -EPIPE || o.rc == -ETIMEDOUT);
    }
    fprintf(stderr, "  release race: %ld of %ld with a caller inside\n", busy, rounds);
}

/* ---- ping-pong ---------------------------------------------------------------------- */

struct pingpong {
    weft_chan_t *ping, *pong;
    long n;
    _Atomic long errors;
};

static void pingpong_thread(void *arg, int idx)
{
    struct pingpong *pp = arg;
    for (long i = 0; i < pp->n; i++) {
        long v = i;
        if (idx == 0) {
            if (weft_chan_send(pp->ping, &v) != 0 || weft_chan_recv(pp->pong, &v) != 0 ||
                v != i + 1)
                atomic_fetch_add(&pp->errors, 1);
        } else {
            if (weft_chan_recv(pp->ping, &v) != 0 || v != i)
                atomic_fetch_add(&pp->errors, 1);
            v++;
            if (weft_chan_send(pp->pong, &v) != 0)
                atomic_fetch_add(&pp->errors, 1);
        }
    }
}

static void test_pingpong(void)
{
    for (size_t cap = 0; cap <= 1; cap++) {
        struct pingpong pp = {0};
        pp.n = check_iters("CHAN_PINGPONG", 20000);
        CHECK_OK(weft_chan_create(&pp.ping, sizeof(long), cap));
        CHECK_OK(weft_chan_create(&pp.pong, sizeof(long), cap));
        check_parallel(2, pingpong_thread, &pp);
        CHECK_INT(atomic_load(&pp.errors), ==, 0);
        /* Unbuffered, the two threads take each lock in turns: the bias
         * goes OFF within a few rounds, with no thread ever biased. */
        if (cap == 0) {
            CHECK_U64(atomic_load(&pp.ping->bias), ==, WEFT__CHAN_BIAS_OFF);
            CHECK_U64(atomic_load(&pp.pong->bias), ==, WEFT__CHAN_BIAS_OFF);
        }
        CHECK_OK(weft_chan_release(pp.ping));
        CHECK_OK(weft_chan_release(pp.pong));
    }
}

/* ---- the lock's bias ---------------------------------------------------------------- */

/* After this thread took ch's lock alone WEFT__CHAN_BIAS_AFTER times: biased
 * to it, or OFF in the CAS form (where nothing is ever biased). */
static bool biased_to_self(weft_chan_t *ch)
{
    uintptr_t b = atomic_load(&ch->bias);
    return weft__chan_asym ? b == weft__chan_self() : b == WEFT__CHAN_BIAS_OFF;
}

/* Take ch's lock alone until it is biased to this thread; 1000000 into
 * *errors if it is not then. */
static void bias_take(weft_chan_t *ch, _Atomic long *errors)
{
    for (unsigned i = 0; i < WEFT__CHAN_BIAS_AFTER + 4; i++) {
        weft__chan_lock(ch);
        weft__chan_unlock(ch);
    }
    if (!biased_to_self(ch))
        atomic_fetch_add(errors, 1000000);
}

/* Thread 0 takes the lock alone until the channel is biased to it, then
 * sends while thread 1 receives: thread 1's first acquisition revokes the
 * bias while thread 0 may hold the lock by it. Every value must arrive
 * once and in order, and the channel must end unbiased for good. */
struct bias_round {
    weft_chan_t *ch;
    long n;
    _Atomic int biased;
    _Atomic long errors;
};

static void bias_thread(void *arg, int idx)
{
    struct bias_round *br = arg;
    if (idx == 0) {
        long x = -1;
        for (unsigned i = 0; i < WEFT__CHAN_BIAS_AFTER + 4; i++)
            if (weft_chan_send_until(br->ch, &x, 0) != -ETIMEDOUT) /* locks, meets nobody */
                atomic_fetch_add(&br->errors, 1);
        if (!biased_to_self(br->ch))
            atomic_fetch_add(&br->errors, 1000000);
        atomic_store(&br->biased, 1);
        /* Each try takes the lock (by bias until thread 1 revokes it),
         * so the revocation races these takes. */
        for (long i = 0; i < br->n; i++) {
            int rc;
            unsigned tries = 0;
            while ((rc = weft_chan_send_until(br->ch, &i, 0)) == -ETIMEDOUT)
                if (++tries % 64 == 0)
                    sched_yield(); /* one core: let the receiver run */
            if (rc != 0)
                atomic_fetch_add(&br->errors, 1);
        }
    } else {
        while (!atomic_load(&br->biased))
            sched_yield();
        for (long i = 0; i < br->n; i++) {
            long v = -1;
            if (weft_chan_recv(br->ch, &v) != 0 || v != i)
                atomic_fetch_add(&br->errors, 1);
        }
    }
}

/* The lock itself: thread 0 takes it (by bias, once it has it) in a loop
 * and stays inside 20 us each time, longer than the revoker's heavy
 * barrier takes; thread 1 comes in and takes it too. Nobody may ever find
 * the other inside. */
struct bias_lock {
    weft_chan_t *ch;
    _Atomic int biased, done, inside;
    _Atomic long errors;
};

static void bias_lock_section(struct bias_lock *bl, weft_time_t stay_ns)
{
    weft__chan_lock(bl->ch);
    if (atomic_fetch_add_explicit(&bl->inside, 1, memory_order_relaxed) != 0)
        atomic_fetch_add(&bl->errors, 1);
    weft_time_t until = stay_ns ? weft_now() + stay_ns : 0;
    do
        weft__cpu_relax();
    while (weft_now() < until);
    atomic_fetch_sub_explicit(&bl->inside, 1, memory_order_relaxed);
    weft__chan_unlock(bl->ch);
}

static void bias_lock_thread(void *arg, int idx)
{
    struct bias_lock *bl = arg;
    if (idx == 0) {
        bias_take(bl->ch, &bl->errors);
        atomic_store(&bl->biased, 1);
        while (!atomic_load(&bl->done))
            bias_lock_section(bl, 20000);
    } else {
        while (!atomic_load(&bl->biased))
            sched_yield();
        /* The first take revokes; a few more, each short, while thread 0
         * may still be inside its 20 us (a broken revocation shows there). */
        for (int i = 0; i < 3; i++)
            bias_lock_section(bl, 0);
        atomic_store(&bl->done, 1);
    }
}

/* A holder that does not run. Thread 0 biases the channel to itself and
 * takes the lock by bias, then stays inside until thread 1's revocation,
 * waiting for it to step out, has slept (weft__backoff: after its pauses
 * and yields). A revoker that only yielded would never give way to a
 * holder it outranks on one CPU (SCHED_FIFO); here it would wait forever,
 * and so would thread 0. Thread 1 must get the lock only after thread 0
 * left it, and leave the channel unbiased for good. */
struct bias_stall {
    weft_chan_t *ch;
    unsigned long sleeps0;
    _Atomic int stage; /* 1: thread 0 holds by bias; 2: it has left */
    _Atomic long errors;
};

static void bias_stall_thread(void *arg, int idx)
{
    struct bias_stall *bs = arg;
    if (idx == 0) {
        bias_take(bs->ch, &bs->errors);
        weft__chan_lock(bs->ch);
        atomic_store(&bs->stage, 1);
        while (atomic_load(&weft__backoff_sleeps) == bs->sleeps0)
            sched_yield();
        atomic_store(&bs->stage, 2);
        weft__chan_unlock(bs->ch);
    } else {
        while (atomic_load(&bs->stage) == 0)
            sched_yield();
        weft__chan_lock(bs->ch);
        if (atomic_load(&bs->stage) != 2)
            atomic_fetch_add(&bs->errors, 1);
        weft__chan_unlock(bs->ch);
    }
}

static void test_bias_stalled_holder(void)
{
    for (int r = 0; r < 5; r++) {
        struct bias_stall bs = {.sleeps0 = atomic_load(&weft__backoff_sleeps)};
        CHECK_OK(weft_chan_create(&bs.ch, sizeof(long), 0));
        if (!weft__chan_asym) { /* decided at the first channel's making */
            printf("  (skipped: the CAS form of the lock biases nothing)\n");
            CHECK_OK(weft_chan_release(bs.ch));
            return;
        }
        check_parallel(2, bias_stall_thread, &bs);
        CHECK_INT(atomic_load(&bs.errors), ==, 0);
        CHECK_U64(atomic_load(&bs.ch->bias), ==, WEFT__CHAN_BIAS_OFF);
        CHECK_OK(weft_chan_release(bs.ch));
    }
}

static void test_bias_lock(void)
{
    long rounds = check_iters("CHAN_BIAS_ROUNDS", 200);
    for (long r = 0; r < rounds; r++) {
        struct bias_lock bl = {0};
        CHECK_OK(weft_chan_create(&bl.ch, sizeof(long), 0));
        check_parallel(2, bias_lock_thread, &bl);
        CHECK_INT(atomic_load(&bl.errors), ==, 0);
        CHECK_U64(atomic_load(&bl.ch->bias), ==, WEFT__CHAN_BIAS_OFF);
        CHECK_OK(weft_chan_release(bl.ch));
    }
}

/* Many revocations, each at a random moment of a tight loop of biased
 * takes: thread 0 biases a fresh channel to itself, then takes and drops
 * the lock over and over, with no locked instruction inside; thread 1
 * waits a random while and takes it once (revoking). Each marks itself
 * inside and looks for the other. Without the revoker's membarrier this
 * finds overlaps within a few thousand rounds. */
struct bias_race {
    weft_chan_t *_Atomic ch;
    long rounds;
    _Atomic long go, done;
    _Atomic int b_in, r_in;
    _Atomic long errors;
};

static void bias_race_inside(struct bias_race *br, _Atomic int *mine, _Atomic int *theirs)
{
    atomic_store_explicit(mine, 1, memory_order_relaxed);
    for (int k = 0; k < 8; k++) {
        if (atomic_load_explicit(theirs, memory_order_relaxed))
            atomic_fetch_add(&br->errors, 1);
        weft__cpu_relax();
    }
    atomic_store_explicit(mine, 0, memory_order_relaxed);
}

static void bias_race_thread(void *arg, int idx)
{
    struct bias_race *br = arg;
    unsigned seed = 12345;
    for (long r = 1; r <= br->rounds; r++) {
        if (idx == 0) {
            weft_chan_t *ch;
            CHECK_OK(weft_chan_create(&ch, sizeof(long), 0));
            bias_take(ch, &br->errors);
            atomic_store(&br->ch, ch);
            atomic_store(&br->go, r);
            unsigned spins = 0;
            while (atomic_load_explicit(&br->done, memory_order_acquire) != r) {
                weft__chan_lock(ch);
                bias_race_inside(br, &br->b_in, &br->r_in);
                weft__chan_unlock(ch);
                if (++spins % 1024 == 0)
                    sched_yield(); /* one core: let the revoker run */
            }
            CHECK_OK(weft_chan_release(ch));
        } else {
            unsigned spins = 0;
            while (atomic_load(&br->go) != r)
                if (++spins % 64 == 0)
                    sched_yield();
                else
                    weft__cpu_relax();
            weft_chan_t *ch = atomic_load(&br->ch);
            seed = seed * 1103515245u + 12345u;
            for (unsigned i = 0, d = (seed >> 16) % 300; i < d; i++)
                weft__cpu_relax();
            weft__chan_lock(ch);
            bias_race_inside(br, &br->r_in, &br->b_in);
            weft__chan_unlock(ch);
            atomic_store_explicit(&br->done, r, memory_order_release);
        }
    }
}

static void test_bias_race(void)
{
    struct bias_race br = {.rounds = check_iters("CHAN_BIAS_RACE", 20000)};
    check_parallel(2, bias_race_thread, &br);
    CHECK_INT(atomic_load(&br.errors), ==, 0);
}

static void test_bias_revoke(void)
{
    long rounds = check_iters("CHAN_BIAS_ROUNDS", 200);
    for (long r = 0; r < rounds; r++) {
        struct bias_round br = {0};
        br.n = 200;
        CHECK_OK(weft_chan_create(&br.ch, sizeof(long), 0));
        check_parallel(2, bias_thread, &br);
        CHECK_INT(atomic_load(&br.errors), ==, 0);
        CHECK_U64(atomic_load(&br.ch->bias), ==, WEFT__CHAN_BIAS_OFF);
        CHECK_U64(atomic_load(&br.ch->busy), ==, 0);
        CHECK_U64(atomic_load(&br.ch->inside), ==, 0);
        CHECK_OK(weft_chan_release(br.ch));
    }
}

int main(void)
{
    RUN(test_mpmc);
    RUN(test_close_race);
    RUN(test_timed_race);
    RUN(test_release_race);
    RUN(test_pingpong);
    RUN(test_bias_lock);
    RUN(test_bias_race);
    RUN(test_bias_revoke);
    RUN(test_bias_stalled_holder);
    return check_done();
}
