/* Threads and coroutines meeting on one UNBUFFERED channel: the plain
 * send/receive fast path (one lock, one-step hand-over, direct hand-off
 * between coroutines of a loop) mixed with select, _until with short
 * deadlines that really expire, _try, close in mid-flight, and cancellation
 * of blocked coroutines. The invariant is always the same: an item is
 * received iff its send returned 0, and exactly once. Sizes scale with
 * WEFT_TEST_SCALE (check_iters). */
#include <sched.h>
#include <stdatomic.h>
#include <weft.h>

#include "co_check.h"

#define MAX_SLOTS 64

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

static bool bits_set(struct bits *b, size_t i)
{
    uint64_t m = (uint64_t)1 << (i % 64);
    return !(atomic_fetch_or(&b->w[i / 64], m) & m);
}

static bool bits_get(struct bits *b, size_t i)
{
    return atomic_load(&b->w[i / 64]) & ((uint64_t)1 << (i % 64));
}

/* ---- the shared state ----------------------------------------------------------- */

struct mix {
    weft_chan_t *ch;
    weft_chan_t *idle[2]; /* never ready: a select's other case (so that the
                             winning case is not always case 0); senders
                             receive from [0], receivers send to [1] */
    long per;          /* items per sender */
    int senders;       /* thread senders + coroutine senders */
    int thread_senders, thread_receivers;
    int loops, co_senders, co_receivers; /* per loop */
    long close_after;  /* close once this many sends succeeded (0: when all done) */
    struct bits sent_ok, recvd;
    _Atomic long nsent, nrecv, dup, bogus, bad_rc, timeouts, cancels;
    _Atomic int senders_left;
    _Atomic int sender_ids; /* hands out sender indices */
};

static const char *g_backend;

static weft_time_t short_deadline(long salt)
{
    return weft_now() + 1000 + (salt % 7) * 5000; /* 1-31 us: they do expire */
}

static void yield_any(void)
{
    if (weft_co_current())
        weft_co_yield();
    else
        sched_yield();
}

/* One send in one of several styles; retries timeouts. 0, -EPIPE, or
 * -ECANCELED (a cancelled coroutine: the item was not sent). */
static int send_one(struct mix *m, const uint64_t *item, long style)
{
    for (;;) {
        int r;
        switch (style % 5) {
        case 0: r = weft_chan_send(m->ch, item); break;
        case 1: r = weft_chan_send_until(m->ch, item, short_deadline(style)); break;
        case 2: r = weft_chan_send_try(m->ch, item); break;
        case 3: {
            uint64_t dummy;
            weft_select_case_t c[2] = {{m->idle[0], WEFT_SELECT_RECV, &dummy, 0},
                                       {m->ch, WEFT_SELECT_SEND, (void *)item, 1}};
            r = (style / 5) & 1 ? weft_chan_select(c, 2)
                                : weft_chan_select_until(c, 2, short_deadline(style));
            if (r == 1)
                r = c[1].result;
            else if (r == 0)
                r = -1000; /* the idle channel is never ready */
            break;
        }
        default: r = weft_chan_send_until(m->ch, item, weft_deadline_in(60)); break;
        }
        if (r == -ETIMEDOUT || r == -EAGAIN) {
            if (r == -ETIMEDOUT)
                atomic_fetch_add(&m->timeouts, 1);
            else
                yield_any();
            style++; /* and vary the style */
            continue;
        }
        if (r != 0 && r != -EPIPE && r != -ECANCELED)
            atomic_fetch_add(&m->bad_rc, 1);
        return r;
    }
}

/* One receive; retries timeouts. 0, -EPIPE, -ECANCELED. */
static int recv_one(struct mix *m, uint64_t *item, long style)
{
    for (;;) {
        int r;
        switch (style % 5) {
        case 0: r = weft_chan_recv(m->ch, item); break;
        case 1: r = weft_chan_recv_until(m->ch, item, short_deadline(style)); break;
        case 2: r = weft_chan_recv_try(m->ch, item); break;
        case 3: {
            uint64_t dummy = 0;
            weft_select_case_t c[3] = {{m->idle[1], WEFT_SELECT_SEND, &dummy, 0},
                                       {m->ch, WEFT_SELECT_RECV, item, 1},
                                       {NULL, WEFT_SELECT_SEND, NULL, 0}};
            r = (style / 5) & 1 ? weft_chan_select(c, 3)
                                : weft_chan_select_until(c, 3, short_deadline(style));
            if (r == 1)
                r = c[1].result;
            else if (r == 0)
                r = -1000; /* the idle channel is never ready */
            break;
        }
        default: r = weft_chan_recv(m->ch, item); break;
        }
        if (r == -ETIMEDOUT || r == -EAGAIN) {
            if (r == -ETIMEDOUT)
                atomic_fetch_add(&m->timeouts, 1);
            else
                yield_any();
            style++;
            continue;
        }
        if (r != 0 && r != -EPIPE && r != -ECANCELED)
            atomic_fetch_add(&m->bad_rc, 1);
        return r;
    }
}

static void record_sent(struct mix *m, uint64_t item)
{
    bits_set(&m->sent_ok, (size_t)item);
    long n = atomic_fetch_add(&m->nsent, 1) + 1;
    if (m->close_after && n == m->close_after)
        weft_chan_close(m->ch); /* mid-flight: others are blocked right now */
}

static void record_recv(struct mix *m, uint64_t item)
{
    atomic_fetch_add(&m->nrecv, 1);
    if (item >= m->recvd.n)
        atomic_fetch_add(&m->bogus, 1);
    else if (!bits_set(&m->recvd, (size_t)item))
        atomic_fetch_add(&m->dup, 1);
}

static void sender_done(struct mix *m)
{
    if (atomic_fetch_sub(&m->senders_left, 1) == 1 && !m->close_after)
        weft_chan_close(m->ch);
}

static void run_sender(struct mix *m)
{
    int id = atomic_fetch_add(&m->sender_ids, 1);
    for (long s = 0; s < m->per; s++) {
        uint64_t item = (uint64_t)id * (uint64_t)m->per + (uint64_t)s;
        int r = send_one(m, &item, id + s);
        if (r == 0)
            record_sent(m, item);
        else
            break; /* -EPIPE */
    }
    sender_done(m);
}

static void run_receiver(struct mix *m, long salt)
{
    uint64_t item;
    for (long k = salt;; k++) {
        int r = recv_one(m, &item, k);
        if (r != 0)
            break; /* -EPIPE */
        record_recv(m, item);
    }
}

/* ---- test 1: threads and coroutines of several loops, close at the end or
 * in mid-flight ---------------------------------------------------------------- */

static int co_sender(void *arg, void **res)
{
    (void)res;
    run_sender(arg);
    return 0;
}

static int co_receiver(void *arg, void **res)
{
    (void)res;
    run_receiver(arg, (long)(weft_now() & 1023));
    return 0;
}

static int loop_main(void *arg, void **res)
{
    (void)res;
    struct mix *m = arg;
    weft_co_group_t *g;
    CHECK_RC(weft_co_group_create(&g), 0);
    for (int i = 0; i < m->co_senders; i++)
        CHECK_RC(weft_co_group_spawn(g, NULL, co_sender, m, "snd", 64 * 1024), 0);
    for (int i = 0; i < m->co_receivers; i++)
        CHECK_RC(weft_co_group_spawn(g, NULL, co_receiver, m, "rcv", 64 * 1024), 0);
    CHECK_RC(weft_co_group_wait(g), 0);
    weft_co_group_free(g);
    return 0;
}

static void mix_thread(void *arg, int idx)
{
    struct mix *m = arg;
    if (idx < m->loops) {
        weft_loop_opts_t o = {.backend = g_backend};
        CHECK_RC(weft_loop_run(loop_main, m, &o), 0);
    } else if (idx < m->loops + m->thread_senders) {
        run_sender(m);
    } else {
        run_receiver(m, idx);
    }
}

static void check_exact(struct mix *m, long total, bool all_sent)
{
    CHECK_INT(atomic_load(&m->dup), ==, 0);
    CHECK_INT(atomic_load(&m->bogus), ==, 0);
    CHECK_INT(atomic_load(&m->bad_rc), ==, 0);
    CHECK_INT(atomic_load(&m->nsent), ==, atomic_load(&m->nrecv));
    long mismatch = 0;
    for (long i = 0; i < total; i++)
        if (bits_get(&m->sent_ok, (size_t)i) != bits_get(&m->recvd, (size_t)i))
            mismatch++;
    CHECK_INT(mismatch, ==, 0);
    if (all_sent)
        CHECK_INT(atomic_load(&m->nsent), ==, total);
}

static void mix_run(int loops, int co_s, int co_r, int th_s, int th_r, long per, bool early)
{
    struct mix m;
    memset(&m, 0, sizeof m);
    CHECK_RC(weft_chan_create(&m.ch, sizeof(uint64_t), 0), 0);
    CHECK_RC(weft_chan_create(&m.idle[0], sizeof(uint64_t), 0), 0);
    CHECK_RC(weft_chan_create(&m.idle[1], sizeof(uint64_t), 0), 0);
    m.per = per;
    m.loops = loops;
    m.co_senders = co_s;
    m.co_receivers = co_r;
    m.thread_senders = th_s;
    m.thread_receivers = th_r;
    m.senders = loops * co_s + th_s;
    long total = (long)m.senders * per;
    m.close_after = early ? total / 2 : 0;
    atomic_store(&m.senders_left, m.senders);
    bits_init(&m.sent_ok, (size_t)total);
    bits_init(&m.recvd, (size_t)total);
    check_parallel(loops + th_s + th_r, mix_thread, &m);
    CHECK(weft_chan_is_closed(m.ch));
    check_exact(&m, total, !early);
    if (early)
        CHECK_INT(atomic_load(&m.nsent), >=, total / 2);
    fprintf(stderr, "mix %d loops x (%d+%d) co, %d+%d threads%s: %ld items, %ld timeouts\n", loops,
            co_s, co_r, th_s, th_r, early ? ", close mid-flight" : "", atomic_load(&m.nsent),
            atomic_load(&m.timeouts));
    CHECK_RC(weft_chan_release(m.ch), 0);
    CHECK_RC(weft_chan_release(m.idle[0]), 0);
    CHECK_RC(weft_chan_release(m.idle[1]), 0);
    free(m.sent_ok.w);
    free(m.recvd.w);
}

static void test_mix_threads_and_coroutines(void)
{
    long per = check_iters("CHAN_MIX", 3000);
    /* two loops, each with senders and receivers, plus threads on both sides */
    mix_run(2, 3, 3, 2, 2, per, false);
    /* coroutines send, threads receive, and the reverse */
    mix_run(1, 4, 0, 0, 2, per, false);
    mix_run(1, 0, 4, 3, 0, per, false);
    /* one loop only: every meeting is between coroutines of one loop */
    mix_run(1, 4, 4, 0, 0, per, false);
}

static void test_mix_close_midflight(void)
{
    long per = check_iters("CHAN_MIX_CLOSE", 2000);
    for (int round = 0; round < 3; round++) {
        mix_run(2, 2, 2, 2, 2, per, true);
        mix_run(1, 3, 3, 0, 0, per, true);
    }
}

/* ---- test 2: coroutines cancelled while blocked in send and receive -------------- */

struct cslot {
    weft_task_t *t;
    long next; /* sender slots: the next item of this slot to send */
    long end;
};

struct cancel_state {
    struct mix *m;
    struct cslot snd[MAX_SLOTS], rcv[MAX_SLOTS];
    int ns, nr;
    long cancelled_tasks;
};

/* The real bodies take (state, slot) through a small record. */
struct cx_arg {
    struct cancel_state *cs;
    int slot;
};
static struct cx_arg cx_args[2][MAX_SLOTS];

static int cx_send_body(void *arg, void **res)
{
    (void)res;
    struct cx_arg *a = arg;
    struct mix *m = a->cs->m;
    struct cslot *sl = &a->cs->snd[a->slot];
    while (sl->next < sl->end) {
        uint64_t item = (uint64_t)sl->next;
        int r = send_one(m, &item, sl->next);
        if (r == -ECANCELED) {
            atomic_fetch_add(&m->cancels, 1);
            return 0; /* not sent: the replacement sends it again */
        }
        if (r != 0)
            break;
        record_sent(m, item);
        sl->next++;
    }
    sender_done(m);
    return 0;
}

static int cx_recv_body(void *arg, void **res)
{
    (void)res;
    struct cx_arg *a = arg;
    struct mix *m = a->cs->m;
    uint64_t item;
    for (long k = a->slot;; k++) {
        int r = recv_one(m, &item, k);
        if (r == -ECANCELED) {
            atomic_fetch_add(&m->cancels, 1);
            return 0;
        }
        if (r != 0)
            return 0; /* -EPIPE */
        record_recv(m, item);
    }
}

static int cancel_main(void *arg, void **res)
{
    (void)res;
    struct cancel_state *cs = arg;
    for (int i = 0; i < cs->ns; i++) {
        cx_args[0][i] = (struct cx_arg){cs, i};
        CHECK_RC(weft_co_spawn(&cs->snd[i].t, cx_send_body, &cx_args[0][i], "snd", 64 * 1024), 0);
    }
    for (int i = 0; i < cs->nr; i++) {
        cx_args[1][i] = (struct cx_arg){cs, i};
        CHECK_RC(weft_co_spawn(&cs->rcv[i].t, cx_recv_body, &cx_args[1][i], "rcv", 64 * 1024), 0);
    }
    uint64_t x = 0x9e3779b97f4a7c15ull;
    while (!weft_chan_is_closed(cs->m->ch)) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        for (unsigned k = 0; k < x % 40; k++)
            weft_co_yield();
        /* Cancel one task, wait for it, and put a fresh one in its slot. */
        bool is_send = (x >> 20) & 1;
        int i = (int)((x >> 24) % (uint64_t)(is_send ? cs->ns : cs->nr));
        struct cslot *sl = is_send ? &cs->snd[i] : &cs->rcv[i];
        if (!sl->t)
            continue; /* a sender slot that has sent all its items */
        weft_task_cancel(sl->t);
        weft_co_await(sl->t, NULL);
        weft_task_release(sl->t);
        sl->t = NULL;
        cs->cancelled_tasks++;
        if (is_send && sl->next >= sl->end)
            continue; /* it had finished (and called sender_done) */
        CHECK_RC(weft_co_spawn(&sl->t, is_send ? cx_send_body : cx_recv_body,
                               &cx_args[is_send ? 0 : 1][i], is_send ? "snd" : "rcv",
                               64 * 1024),
                 0);
    }
    for (int i = 0; i < cs->ns; i++)
        if (cs->snd[i].t) {
            weft_co_await(cs->snd[i].t, NULL);
            weft_task_release(cs->snd[i].t);
        }
    for (int i = 0; i < cs->nr; i++)
        if (cs->rcv[i].t) {
            weft_co_await(cs->rcv[i].t, NULL);
            weft_task_release(cs->rcv[i].t);
        }
    return 0;
}

struct cancel_run {
    struct cancel_state *cs;
    int th_s;
};

static void cancel_thread(void *arg, int idx)
{
    struct cancel_run *cr = arg;
    struct mix *m = cr->cs->m;
    if (idx == 0) {
        weft_loop_opts_t o = {.backend = g_backend};
        CHECK_RC(weft_loop_run(cancel_main, cr->cs, &o), 0);
    } else if (idx <= cr->th_s) {
        /* thread senders own item ranges after the coroutine slots' */
        long base = (long)cr->cs->ns * m->per + (long)(idx - 1) * m->per;
        for (long s = 0; s < m->per; s++) {
            uint64_t item = (uint64_t)(base + s);
            int r = send_one(m, &item, s);
            if (r != 0)
                break;
            record_sent(m, item);
        }
        sender_done(m);
    } else {
        run_receiver(m, idx);
    }
}

static void test_cancel_blocked(void)
{
    long per = check_iters("CHAN_MIX_CANCEL", 2000);
    struct mix m;
    memset(&m, 0, sizeof m);
    CHECK_RC(weft_chan_create(&m.ch, sizeof(uint64_t), 0), 0);
    CHECK_RC(weft_chan_create(&m.idle[0], sizeof(uint64_t), 0), 0);
    CHECK_RC(weft_chan_create(&m.idle[1], sizeof(uint64_t), 0), 0);
    static struct cancel_state cs;
    memset(&cs, 0, sizeof cs);
    cs.m = &m;
    cs.ns = 3;
    cs.nr = 3;
    int th_s = 1, th_r = 1; /* a thread receiver: progress while coroutines die */
    m.per = per;
    m.senders = cs.ns + th_s;
    long total = (long)m.senders * per;
    atomic_store(&m.senders_left, m.senders);
    for (int i = 0; i < cs.ns; i++) {
        cs.snd[i].next = (long)i * per;
        cs.snd[i].end = (long)(i + 1) * per;
    }
    bits_init(&m.sent_ok, (size_t)total);
    bits_init(&m.recvd, (size_t)total);
    struct cancel_run cr = {&cs, th_s};
    check_parallel(1 + th_s + th_r, cancel_thread, &cr);
    check_exact(&m, total, true);
    CHECK(cs.cancelled_tasks > 0);
    fprintf(stderr, "cancel: %ld tasks cancelled, %ld blocked calls ended -ECANCELED, %ld timeouts\n",
            cs.cancelled_tasks, atomic_load(&m.cancels), atomic_load(&m.timeouts));
    CHECK_RC(weft_chan_release(m.ch), 0);
    CHECK_RC(weft_chan_release(m.idle[0]), 0);
    CHECK_RC(weft_chan_release(m.idle[1]), 0);
    free(m.sent_ok.w);
    free(m.recvd.w);
}

/* ---- test 3: one loop, the ping-pong shape, with a timer armed and a
 * remote wake now and then (hand-off and scheduler paths alternate) ------------ */

struct pp {
    weft_chan_t *a, *b;
    long n;
    long got;
};

static int pp_ponger(void *arg, void **res)
{
    (void)res;
    struct pp *p = arg;
    uint64_t v;
    while (weft_chan_recv(p->a, &v) == 0) {
        v++;
        if (weft_chan_send(p->b, &v) != 0)
            break;
    }
    return 0;
}

static int pp_sleeper(void *arg, void **res)
{
    (void)res;
    _Atomic int *stop = arg;
    while (!atomic_load(stop))
        weft_co_sleep(0.0002); /* keeps a timer armed most of the time */
    return 0;
}

static void pp_remote(void *arg)
{
    (void)arg;
}

static int pp_main(void *arg, void **res)
{
    (void)res;
    struct pp *p = arg;
    _Atomic int stop = 0;
    weft_task_t *t, *s;
    CHECK_RC(weft_co_spawn(&t, pp_ponger, p, "ponger", 0), 0);
    CHECK_RC(weft_co_spawn(&s, pp_sleeper, &stop, "sleeper", 0), 0);
    uint64_t v = 0;
    for (long i = 0; i < p->n; i++) {
        uint64_t want = v + 1;
        CHECK_RC(weft_chan_send(p->a, &v), 0);
        CHECK_RC(weft_chan_recv(p->b, &v), 0);
        if (v != want) {
            CHECK_INT((long)v, ==, (long)want);
            break;
        }
        if (i % 97 == 0)
            CHECK_RC(weft_loop_call_soon_threadsafe(weft_loop_current(), pp_remote, NULL), 0);
    }
    p->got = (long)v;
    weft_chan_close(p->a);
    atomic_store(&stop, 1);
    weft_co_await(t, NULL);
    weft_co_await(s, NULL);
    weft_task_release(t);
    weft_task_release(s);
    return 0;
}

static void test_pingpong_one_loop(void)
{
    struct pp p = {.n = check_iters("CHAN_MIX_PP", 20000)};
    CHECK_RC(weft_chan_create(&p.a, sizeof(uint64_t), 0), 0);
    CHECK_RC(weft_chan_create(&p.b, sizeof(uint64_t), 0), 0);
    weft_loop_stats_t st;
    weft_loop_opts_t o = {.backend = g_backend, .stats = &st};
    CHECK_RC(weft_loop_run(pp_main, &p, &o), 0);
    CHECK_INT(p.got, ==, p.n);
    /* Every remote call ran (the "remote wake now and then" happened). */
    CHECK_U64(st.callbacks, ==, (uint64_t)((p.n - 1) / 97 + 1));
    CHECK_RC(weft_chan_release(p.a), 0);
    CHECK_RC(weft_chan_release(p.b), 0);
}

int main(void)
{
    g_backend = co_check_backend();
    RUN(test_mix_threads_and_coroutines);
    RUN(test_mix_close_midflight);
    RUN(test_cancel_blocked);
    RUN(test_pingpong_one_loop);
    return check_done();
}
