/*
 * bench_chan.c - weft_chan_t against queues built from a pthread mutex and
 * condition variables, the way a C programmer writes one by hand.
 *
 * bench-needs: src/chan
 *
 * chan_throughput: `producers` threads send `items` 8-byte integers in all
 *   (items / producers each) into one channel of capacity `cap`; `consumers`
 *   threads receive until the channel is closed (by the last producer to
 *   finish) and drained. Defaults: 2 + 2 threads, 10,000,000 items, capacity
 *   1024. The clock runs from the first thread's start after the barrier to
 *   the last consumer's finish (bench_span_t); ns_per_op is that time divided
 *   by items (ns per item moved). Every item must arrive exactly
 *   once (count and sum are checked), or the program fails.
 *   Peer "pthread_ring": a ring buffer under one pthread_mutex_t with two
 *   pthread_cond_t (not full, not empty) and a closed flag.
 *
 * chan_pingpong: two threads bounce an integer `round_trips` times over two
 *   unbuffered channels (A sends on ping and waits on pong, B the reverse).
 *   ns_per_op is one round trip: two hand-offs, and on a busy machine two
 *   sleeps and wake-ups. Default 100,000 round trips.
 *   Peer "pthread_cond": two one-slot mailboxes, each a mutex + condvar +
 *   full flag. A mailbox does not wait for its receiver as an unbuffered
 *   channel does; in a ping-pong each side waits for the reply anyway, so
 *   the values exchanged are the same, but a sender that arrives first need
 *   not sleep. Two more rows separate that difference in semantics from the
 *   implementations: "pthread_rendezvous" (a strict unbuffered hand-off from
 *   a mutex + condvar: send returns once the element is taken) and
 *   "weft_cap1" (weft channels of capacity 1: the mailbox's semantics).
 *
 * Threads are plain pthreads, so only the queues differ.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <weft/chan.h>

#include "bench.h"

/* ---- the peer: a bounded queue from a mutex and two condvars ------------- */

struct ring {
    pthread_mutex_t m;
    pthread_cond_t not_full, not_empty;
    uint64_t *buf;
    size_t cap, head, count;
    bool closed;
};

static struct ring *ring_create(size_t cap)
{
    struct ring *r = calloc(1, sizeof *r);
    if (!r || !(r->buf = calloc(cap ? cap : 1, sizeof *r->buf)))
        bench_die("out of memory", 0);
    r->cap = cap ? cap : 1;
    pthread_mutex_init(&r->m, NULL);
    pthread_cond_init(&r->not_full, NULL);
    pthread_cond_init(&r->not_empty, NULL);
    return r;
}

static void ring_free(struct ring *r)
{
    pthread_cond_destroy(&r->not_full);
    pthread_cond_destroy(&r->not_empty);
    pthread_mutex_destroy(&r->m);
    free(r->buf);
    free(r);
}

/* 0, or -1 when closed. */
static int ring_send(struct ring *r, uint64_t v)
{
    pthread_mutex_lock(&r->m);
    while (r->count == r->cap && !r->closed)
        pthread_cond_wait(&r->not_full, &r->m);
    if (r->closed) {
        pthread_mutex_unlock(&r->m);
        return -1;
    }
    r->buf[(r->head + r->count) % r->cap] = v;
    r->count++;
    pthread_cond_signal(&r->not_empty);
    pthread_mutex_unlock(&r->m);
    return 0;
}

/* 0, or -1 when closed and drained. */
static int ring_recv(struct ring *r, uint64_t *v)
{
    pthread_mutex_lock(&r->m);
    while (r->count == 0 && !r->closed)
        pthread_cond_wait(&r->not_empty, &r->m);
    if (r->count == 0) {
        pthread_mutex_unlock(&r->m);
        return -1;
    }
    *v = r->buf[r->head];
    r->head = (r->head + 1) % r->cap;
    r->count--;
    pthread_cond_signal(&r->not_full);
    pthread_mutex_unlock(&r->m);
    return 0;
}

static void ring_close(struct ring *r)
{
    pthread_mutex_lock(&r->m);
    r->closed = true;
    pthread_cond_broadcast(&r->not_full);
    pthread_cond_broadcast(&r->not_empty);
    pthread_mutex_unlock(&r->m);
}

/* ---- the strict peer: an unbuffered rendezvous from a mutex and a condvar -- */

/*
 * A send returns only once a receiver has taken its element, as with an
 * unbuffered channel: the sender waits for `taken` to reach its ticket. One
 * condvar with broadcast serves every kind of waiter (two threads here).
 */
struct rdv {
    pthread_mutex_t m;
    pthread_cond_t c;
    uint64_t v;
    bool full, closed;
    unsigned long long put, taken; /* tickets: elements deposited, taken */
};

static void *rdv_q_create(size_t cap)
{
    (void)cap;
    struct rdv *r = calloc(1, sizeof *r);
    if (!r)
        bench_die("out of memory", 0);
    pthread_mutex_init(&r->m, NULL);
    pthread_cond_init(&r->c, NULL);
    return r;
}

static int rdv_q_send(void *q, uint64_t v)
{
    struct rdv *r = q;
    pthread_mutex_lock(&r->m);
    while (r->full && !r->closed)
        pthread_cond_wait(&r->c, &r->m);
    if (r->closed) {
        pthread_mutex_unlock(&r->m);
        return -1;
    }
    r->v = v;
    r->full = true;
    unsigned long long ticket = ++r->put;
    pthread_cond_broadcast(&r->c);
    while (r->taken < ticket && !r->closed)
        pthread_cond_wait(&r->c, &r->m);
    pthread_mutex_unlock(&r->m);
    return 0;
}

static int rdv_q_recv(void *q, uint64_t *v)
{
    struct rdv *r = q;
    pthread_mutex_lock(&r->m);
    while (!r->full && !r->closed)
        pthread_cond_wait(&r->c, &r->m);
    if (!r->full) {
        pthread_mutex_unlock(&r->m);
        return -1;
    }
    *v = r->v;
    r->full = false;
    r->taken++;
    pthread_cond_broadcast(&r->c);
    pthread_mutex_unlock(&r->m);
    return 0;
}

static void rdv_q_close(void *q)
{
    struct rdv *r = q;
    pthread_mutex_lock(&r->m);
    r->closed = true;
    pthread_cond_broadcast(&r->c);
    pthread_mutex_unlock(&r->m);
}

static void rdv_q_destroy(void *q)
{
    struct rdv *r = q;
    pthread_cond_destroy(&r->c);
    pthread_mutex_destroy(&r->m);
    free(r);
}

/* ---- one interface over all, so that the drivers are shared ------------- */

struct queue_ops {
    const char *name;
    void *(*create)(size_t cap);
    int (*send)(void *q, uint64_t v);
    int (*recv)(void *q, uint64_t *v);
    void (*close)(void *q);
    void (*destroy)(void *q);
};

static void *weft_q_create(size_t cap)
{
    weft_chan_t *ch;
    int r = weft_chan_create(&ch, sizeof(uint64_t), cap);
    if (r)
        bench_die("weft_chan_create", r);
    return ch;
}
static int weft_q_send(void *q, uint64_t v) { return weft_chan_send(q, &v); }
static int weft_q_recv(void *q, uint64_t *v) { return weft_chan_recv(q, v); }
static void weft_q_close(void *q) { weft_chan_close(q); }
static void weft_q_destroy(void *q)
{
    int r = weft_chan_release(q);
    if (r)
        bench_die("weft_chan_release", r);
}

static void *ring_q_create(size_t cap) { return ring_create(cap); }
static int ring_q_send(void *q, uint64_t v) { return ring_send(q, v); }
static int ring_q_recv(void *q, uint64_t *v) { return ring_recv(q, v); }
static void ring_q_close(void *q) { ring_close(q); }
static void ring_q_destroy(void *q) { ring_free(q); }

static const struct queue_ops weft_ops = {"weft", weft_q_create, weft_q_send, weft_q_recv,
                                          weft_q_close, weft_q_destroy};
static const struct queue_ops ring_ops = {"pthread_ring", ring_q_create, ring_q_send, ring_q_recv,
                                          ring_q_close, ring_q_destroy};
/* For ping-pong the same ring with one slot is the condvar mailbox. */
static const struct queue_ops mailbox_ops = {"pthread_cond", ring_q_create, ring_q_send, ring_q_recv,
                                             ring_q_close, ring_q_destroy};
static const struct queue_ops rdv_ops = {"pthread_rendezvous", rdv_q_create, rdv_q_send, rdv_q_recv,
                                         rdv_q_close, rdv_q_destroy};
/* weft with a one-element buffer: the mailbox's semantics. */
static const struct queue_ops weft_cap1_ops = {"weft_cap1", weft_q_create, weft_q_send, weft_q_recv,
                                               weft_q_close, weft_q_destroy};

/* ---- throughput --------------------------------------------------------- */

struct tput {
    const struct queue_ops *ops;
    long long items, producers, consumers, cap;
    void *q;
    pthread_barrier_t start;
    bench_span_t span;
    _Atomic long long producing; /* producers still sending: the last one closes */
    _Atomic long long got_count, got_sum;
};

static long long tput_share(const struct tput *t, long long i)
{
    /* Producer i sends items / producers, the first ones one more each. */
    return t->items / t->producers + (i < t->items % t->producers);
}

struct tput_arg {
    struct tput *t;
    long long index;
};

static void *tput_producer(void *arg)
{
    struct tput_arg *a = arg;
    struct tput *t = a->t;
    long long n = tput_share(t, a->index);
    pthread_barrier_wait(&t->start);
    bench_span_begin(&t->span);
    for (long long k = 1; k <= n; k++) {
        int r = t->ops->send(t->q, (uint64_t)k);
        if (r)
            bench_die("send failed", r);
    }
    if (atomic_fetch_sub(&t->producing, 1) == 1)
        t->ops->close(t->q);
    return NULL;
}

static void *tput_consumer(void *arg)
{
    struct tput_arg *a = arg;
    struct tput *t = a->t;
    long long count = 0, sum = 0;
    uint64_t v;
    pthread_barrier_wait(&t->start);
    bench_span_begin(&t->span);
    while (t->ops->recv(t->q, &v) == 0) {
        count++;
        sum += (long long)v;
    }
    bench_span_end(&t->span);
    atomic_fetch_add(&t->got_count, count);
    atomic_fetch_add(&t->got_sum, sum);
    return NULL;
}

static double tput_run(void *arg)
{
    struct tput *t = arg;
    size_t np = (size_t)t->producers, nc = (size_t)t->consumers;
    pthread_t *tids = calloc(np + nc, sizeof *tids);
    struct tput_arg *args = calloc(np + nc, sizeof *args);
    if (!tids || !args)
        bench_die("out of memory", 0);
    t->q = t->ops->create((size_t)t->cap);
    atomic_store(&t->got_count, 0);
    atomic_store(&t->got_sum, 0);
    atomic_store(&t->producing, t->producers);
    bench_span_reset(&t->span);
    pthread_barrier_init(&t->start, NULL, (unsigned)(np + nc));
    for (size_t i = 0; i < np + nc; i++) {
        args[i] = (struct tput_arg){t, i < np ? (long long)i : (long long)(i - np)};
        int r = pthread_create(&tids[i], NULL, i < np ? tput_producer : tput_consumer, &args[i]);
        if (r)
            bench_die("pthread_create", r);
    }
    for (size_t i = 0; i < np + nc; i++)
        pthread_join(tids[i], NULL);
    pthread_barrier_destroy(&t->start);
    t->ops->destroy(t->q);

    long long want_sum = 0;
    for (long long i = 0; i < t->producers; i++) {
        long long n = tput_share(t, i);
        want_sum += n * (n + 1) / 2;
    }
    if (atomic_load(&t->got_count) != t->items)
        bench_die("items lost or duplicated", t->items - atomic_load(&t->got_count));
    if (atomic_load(&t->got_sum) != want_sum)
        bench_die("items corrupted (sum differs)", want_sum - atomic_load(&t->got_sum));
    free(tids);
    free(args);
    return bench_span_ns(&t->span) / (double)t->items;
}

/* ---- ping-pong ---------------------------------------------------------- */

struct pingpong {
    const struct queue_ops *ops;
    long long round_trips;
    void *ping, *pong;
    pthread_barrier_t start;
    bench_span_t span;
};

static void *pp_a(void *arg)
{
    struct pingpong *p = arg;
    pthread_barrier_wait(&p->start);
    bench_span_begin(&p->span);
    for (long long i = 0; i < p->round_trips; i++) {
        uint64_t v;
        if (p->ops->send(p->ping, (uint64_t)i) || p->ops->recv(p->pong, &v))
            bench_die("ping-pong: send/recv failed", i);
        if (v != (uint64_t)i + 1)
            bench_die("ping-pong: wrong reply", i);
    }
    bench_span_end(&p->span);
    return NULL;
}

static void *pp_b(void *arg)
{
    struct pingpong *p = arg;
    pthread_barrier_wait(&p->start);
    bench_span_begin(&p->span);
    for (long long i = 0; i < p->round_trips; i++) {
        uint64_t v;
        if (p->ops->recv(p->ping, &v) || p->ops->send(p->pong, v + 1))
            bench_die("ping-pong: recv/send failed", i);
    }
    bench_span_end(&p->span);
    return NULL;
}

static double pp_run(void *arg)
{
    struct pingpong *p = arg;
    /* Unbuffered channels; the mailboxes have one slot. */
    size_t cap = p->ops == &weft_ops || p->ops == &rdv_ops ? 0 : 1;
    p->ping = p->ops->create(cap);
    p->pong = p->ops->create(cap);
    bench_span_reset(&p->span);
    pthread_barrier_init(&p->start, NULL, 2);
    pthread_t a, b;
    if (pthread_create(&a, NULL, pp_a, p) || pthread_create(&b, NULL, pp_b, p))
        bench_die("pthread_create", 0);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    pthread_barrier_destroy(&p->start);
    p->ops->destroy(p->ping);
    p->ops->destroy(p->pong);
    return bench_span_ns(&p->span) / (double)p->round_trips;
}

int main(int argc, char **argv)
{
    bench_init(argc, argv);

    static struct tput t[2];
    long long items = bench_size("items", 10000000, 20000);
    long long producers = bench_size("producers", 2, 2);
    long long consumers = bench_size("consumers", 2, 2);
    long long cap = bench_size("cap", 1024, 1024);
    const struct queue_ops *tput_impls[2] = {&weft_ops, &ring_ops};
    bench_case_t tcases[2];
    for (int i = 0; i < 2; i++) {
        t[i].ops = tput_impls[i];
        t[i].items = items;
        t[i].producers = producers;
        t[i].consumers = consumers;
        t[i].cap = cap;
        tcases[i] = (bench_case_t){tput_impls[i]->name, tput_run, &t[i]};
    }
    bench_compare("chan_throughput",
                  BENCH_PARAMS({"items", items}, {"producers", producers}, {"consumers", consumers},
                               {"cap", cap}),
                  "ns_per_op", false, tcases, 2);

    static struct pingpong p[4];
    long long round_trips = bench_size("round-trips", 100000, 2000);
    const struct queue_ops *pp_impls[4] = {&weft_ops, &weft_cap1_ops, &mailbox_ops, &rdv_ops};
    bench_case_t pcases[4];
    for (int i = 0; i < 4; i++) {
        p[i].ops = pp_impls[i];
        p[i].round_trips = round_trips;
        pcases[i] = (bench_case_t){pp_impls[i]->name, pp_run, &p[i]};
    }
    bench_compare("chan_pingpong", BENCH_PARAMS({"round_trips", round_trips}), "ns_per_op", false,
                  pcases, 4);
    return 0;
}
