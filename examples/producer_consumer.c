/*
 * producer_consumer.c - threads handing work to each other through a queue,
 * with an event as the "stop" signal.
 *
 * Python:
 *   q = queue.Queue(maxsize=32); stop = threading.Event()
 *   def producer():
 *       while not stop.is_set(): q.put(make_item())
 *   def consumer():
 *       while (item := q.get()) is not None: use(item)
 *   ...; time.sleep(0.1); stop.set()
 *
 * weft: the queue is a channel (weft_chan_t), the signal a weft_event_t.
 * Producers send until the event is set. Then main closes the channel,
 * which tells consumers that nothing more will come: they drain what is
 * buffered and their receive returns -EPIPE, so no sentinel item is needed.
 * Every item a send accepted is received exactly once, and items from one
 * producer arrive in the order sent; the lesson checks both.
 *
 * Build and run: build/examples/producer_consumer, or
 * `weft demo producer_consumer`.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <weft.h>

#include "lesson.h"

enum { NPRODUCERS = 3, NCONSUMERS = 2, CAPACITY = 32 };

struct item {
    uint32_t producer; /* who made it */
    uint64_t seq;      /* that producer's running number, from 1 */
};

struct producer {
    weft_chan_t *chan;  /* a reference this thread owns and releases */
    weft_event_t *stop; /* set by main when it is time to stop */
    uint32_t id;
    uint64_t sent;      /* items this producer's sends accepted */
    int error;
};

struct consumer {
    weft_chan_t *chan;
    uint64_t got[NPRODUCERS]; /* items received, by producer */
    uint64_t seq_sum[NPRODUCERS]; /* sum of their numbers: 1 + 2 + ... + sent if none is
                                     lost or doubled */
    uint64_t out_of_order;    /* items that came before an earlier one of the same producer */
    int error;
};

static void *produce(void *arg)
{
    struct producer *p = arg;
    while (!weft_event_is_set(p->stop)) {
        struct item it = {p->id, p->sent + 1};
        int rc = weft_chan_send(p->chan, &it); /* blocks while the channel is full */
        if (rc != 0) {
            p->error = rc;
            break;
        }
        p->sent++;
    }
    weft_chan_release(p->chan);
    return NULL;
}

static void *consume(void *arg)
{
    struct consumer *c = arg;
    uint64_t last[NPRODUCERS] = {0};
    struct item it;
    int rc;
    while ((rc = weft_chan_recv(c->chan, &it)) == 0) {
        if (it.producer >= NPRODUCERS) {
            rc = -EINVAL;
            break;
        }
        c->got[it.producer]++;
        c->seq_sum[it.producer] += it.seq;
        if (it.seq <= last[it.producer])
            c->out_of_order++;
        last[it.producer] = it.seq;
    }
    if (rc != -EPIPE) /* -EPIPE: closed and drained, the normal end */
        c->error = rc;
    weft_chan_release(c->chan);
    return NULL;
}

static int producer_consumer_lesson(lesson_run_t *run)
{
    double run_for = 0.2 * lesson_scale(run);
    if (run_for > 5.0)
        run_for = 5.0;
    char a[32], b[32];
    lesson_say(run, "%d producers send numbered items into a channel of %d slots; %d consumers",
               NPRODUCERS, CAPACITY, NCONSUMERS);
    lesson_say(run, "receive them. After %s main sets the stop event, then closes the channel.",
               lesson_fmt_time(a, sizeof a, run_for));

    weft_chan_t *chan;
    int rc = weft_chan_create(&chan, sizeof(struct item), CAPACITY);
    if (rc != 0)
        return lesson_fail_rc(run, "weft_chan_create", rc);
    weft_event_t stop;
    weft_event_init(&stop);
    struct producer prod[NPRODUCERS] = {{0}};
    struct consumer cons[NCONSUMERS] = {{0}};
    weft_thread_t *pt[NPRODUCERS], *ct[NCONSUMERS];
    int np = 0, nc = 0;

    weft_time_t t0 = weft_now();
    for (; nc < NCONSUMERS && rc == 0; nc++) {
        cons[nc].chan = chan;
        weft_chan_retain(chan); /* the consumer's own reference */
        weft_thread_opts_t o = {.name = "consumer"};
        rc = weft_thread_start(&ct[nc], consume, &cons[nc], &o);
        if (rc != 0) {
            weft_chan_release(chan);
            break;
        }
    }
    for (; np < NPRODUCERS && rc == 0; np++) {
        prod[np] = (struct producer){.chan = chan, .stop = &stop, .id = (uint32_t)np};
        weft_chan_retain(chan);
        weft_thread_opts_t o = {.name = "producer"};
        rc = weft_thread_start(&pt[np], produce, &prod[np], &o);
        if (rc != 0) {
            weft_chan_release(chan);
            break;
        }
    }
    if (rc == 0)
        weft_sleep(run_for); /* let them work; the sleep only sets the demo's length */
    weft_event_set(&stop);   /* producers: stop making items */
    for (int i = 0; i < np; i++)
        weft_thread_join(pt[i], NULL);
    weft_time_t stopped = weft_now();
    size_t left = weft_chan_len(chan);
    weft_chan_close(chan);   /* consumers: nothing more is coming; drain and go */
    for (int i = 0; i < nc; i++)
        weft_thread_join(ct[i], NULL);
    double drain = weft_seconds_between(stopped, weft_now());
    double wall = weft_seconds_between(t0, weft_now());
    weft_chan_release(chan);
    weft_event_destroy(&stop);
    if (rc != 0)
        return lesson_fail_rc(run, "weft_thread_start", rc);

    uint64_t sent = 0, received = 0, out_of_order = 0;
    for (int p = 0; p < NPRODUCERS; p++) {
        if (prod[p].error)
            return lesson_fail_rc(run, "weft_chan_send", prod[p].error);
        char key[32], label[64];
        snprintf(key, sizeof key, "sent_%d", p);
        snprintf(label, sizeof label, "producer %d sent", p);
        lesson_figure_count(run, key, label, prod[p].sent);
        sent += prod[p].sent;
    }
    for (int c = 0; c < NCONSUMERS; c++) {
        if (cons[c].error)
            return lesson_fail_rc(run, "weft_chan_recv", cons[c].error);
        uint64_t mine = 0;
        for (int p = 0; p < NPRODUCERS; p++)
            mine += cons[c].got[p];
        char key[32], label[64];
        snprintf(key, sizeof key, "received_%d", c);
        snprintf(label, sizeof label, "consumer %d received", c);
        lesson_figure_count(run, key, label, mine);
        received += mine;
        out_of_order += cons[c].out_of_order;
    }
    lesson_figure_count(run, "sent", "sent in all", sent);
    lesson_figure_count(run, "received", "received in all", received);
    lesson_figure_count(run, "left_at_stop", "still buffered when producers stopped", left);
    lesson_figure_time(run, "drain", "close to last consumer done", drain);
    lesson_figure_count(run, "out_of_order", "items out of their producer's order", out_of_order);
    lesson_figure_num(run, "rate", "items through the channel per second",
                      (double)received / wall, "items/s");
    for (int p = 0; p < NPRODUCERS; p++) {
        uint64_t got = 0, seq_sum = 0, n = prod[p].sent;
        for (int c = 0; c < NCONSUMERS; c++) {
            got += cons[c].got[p];
            seq_sum += cons[c].seq_sum[p];
        }
        if (got != n)
            return lesson_fail(run, "producer %d sent %s items but %s were received", p,
                               lesson_fmt_count(a, sizeof a, n), lesson_fmt_count(b, sizeof b, got));
        if (seq_sum != n * (n + 1) / 2)
            return lesson_fail(run, "producer %d: the items received are not 1..%s, once each",
                               p, lesson_fmt_count(a, sizeof a, n));
    }
    if (out_of_order)
        return lesson_fail(run, "%s items arrived before an earlier item of their producer",
                           lesson_fmt_count(a, sizeof a, out_of_order));
    lesson_say(run, "Every item sent was received exactly once, each producer's in order.");

    lesson_key(run, "%s sent = %s received", lesson_fmt_count(a, sizeof a, sent),
               lesson_fmt_count(b, sizeof b, received));
    return 0;
}

WEFT_LESSON(70, "producer_consumer", "Producers and consumers: a channel and a stop event",
            producer_consumer_lesson)
