/*
 * worker.c - the body of a worker process: map the pool, run the
 * initializer, then claim jobs from the shared queue, run them and write
 * their results into this worker's result ring, until the pool closes, the
 * worker has done max_tasks jobs, or its parents die.
 */
#include "internal.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

static int g_worker_index = -1;
static struct wp_view g_view; /* the layout, copied before any task runs */
static int g_efd = -1; /* the dispatcher's eventfd, as numbered here */
static unsigned char *g_scratch;
static size_t g_scratch_cap;

int weft_proc_worker_index(void) { return g_worker_index; }

static int reserve(weft_proc_task_t *t, size_t len, void **buf)
{
    const struct wp_view *h = t->v;
    if (t->arena) {
        weft__arena_free(h, t->arena - 1, t->tag);
        t->arena = 0;
    }
    t->len = 0;
    if (len <= h->inline_max) {
        if (len > g_scratch_cap) {
            size_t c = g_scratch_cap ? g_scratch_cap : 256;
            while (c < len)
                c *= 2;
            void *n = realloc(g_scratch, c);
            if (!n)
                return -ENOMEM;
            g_scratch = n;
            g_scratch_cap = c;
        }
        *buf = g_scratch;
    } else {
        if (len > (size_t)h->npages * WP_PAGE)
            return -EMSGSIZE;
        uint64_t off = weft__arena_alloc(h, len, t->tag);
        if (!off)
            return -ENOMEM;
        t->arena = off + 1;
        *buf = wp_at(h, off);
    }
    t->len = len;
    return 0;
}

int weft_proc_reply_buf(weft_proc_task_t *t, size_t len, void **buf)
{
    if (buf)
        *buf = NULL;
    if (!t || !buf)
        return -EINVAL;
    return reserve(t, len, buf);
}

int weft_proc_reply(weft_proc_task_t *t, const void *data, size_t len)
{
    if (!t || (!data && len))
        return -EINVAL;
    void *buf;
    int rc = reserve(t, len, &buf);
    if (rc == 0 && len)
        memcpy(buf, data, len);
    return rc;
}

/* ---- the result ring (this worker produces, the dispatcher consumes) ---- */

struct wr {
    struct wp_hdr *h;
    struct wp_slot *slot;
    unsigned char *ring;
    uint64_t size;
    uint64_t tail;      /* our private tail (published to slot->cq_tail) */
    struct wp_rec *rec; /* the record being filled, or NULL */
    uint32_t job, gen, next_item;
};

static void wake_dispatcher(struct wp_hdr *h)
{
    /* seq_cst: ordered after the publication of cq_tail or state (also
     * seq_cst) that the dispatcher re-checks after setting disp_sleeping
     * (Dekker's pattern): either it sees our update, or we see its flag. */
    if (atomic_load(&h->disp_sleeping) && atomic_exchange(&h->disp_sleeping, 0)) {
        uint64_t one = 1;
        ssize_t r = write(g_efd, &one, sizeof one);
        (void)r;
    }
}

static void wr_publish(struct wr *w)
{
    atomic_store(&w->slot->cq_tail, w->tail); /* seq_cst, see wake_dispatcher */
    wake_dispatcher(w->h);
}

/* Make room for need contiguous bytes at the tail; returns the place. */
static unsigned char *wr_room(struct wr *w, uint64_t need)
{
    for (;;) {
        uint64_t head = atomic_load_explicit(&w->slot->cq_head, memory_order_acquire);
        uint64_t pos = w->tail % w->size;
        uint64_t to_end = w->size - pos;
        uint64_t free_bytes = w->size - (w->tail - head);
        if (to_end < need) {
            /* Pad to the end of the ring first (a record never wraps). */
            if (free_bytes >= to_end) {
                struct wp_rec *pad = (struct wp_rec *)(w->ring + pos);
                pad->size = (uint32_t)to_end;
                pad->type = WR_PAD;
                w->tail += to_end;
                continue;
            }
        } else if (free_bytes >= need) {
            return w->ring + pos;
        }
        /* Full: publish what we have and wait for the dispatcher. */
        uint32_t seq = atomic_load(&w->slot->cq_seq);
        wr_publish(w);
        atomic_store(&w->slot->cq_wait, 1);
        if (atomic_load(&w->slot->cq_head) == head)
            weft__futex_wait(&w->slot->cq_seq, seq, weft_now() + 100000000, true);
        atomic_store(&w->slot->cq_wait, 0);
    }
}

static void wr_close(struct wr *w, bool last)
{
    if (!w->rec)
        return;
    w->rec->last = last;
    w->tail += w->rec->size;
    w->rec = NULL;
}

static void wr_item(struct wr *w, int status, weft_proc_task_t *t)
{
    bool inl = status == 0 && !t->arena;
    uint64_t data = inl ? (t->len + 7) & ~(uint64_t)7 : 0;
    uint64_t span = sizeof(struct wp_item) + data;
    /* The record's header plus this item must fit in one contiguous piece;
     * if the open record cannot grow, close it and open another. */
    if (w->rec) {
        uint64_t head = atomic_load_explicit(&w->slot->cq_head, memory_order_acquire);
        uint64_t pos = (w->tail % w->size) + w->rec->size;
        if (pos + span > w->size || w->tail + w->rec->size + span - head > w->size ||
            w->rec->size + span > UINT32_MAX / 2) {
            wr_close(w, false);
            wr_publish(w);
        }
    }
    if (!w->rec) {
        unsigned char *p = wr_room(w, sizeof(struct wp_rec) + span);
        w->rec = (struct wp_rec *)p;
        *w->rec = (struct wp_rec){(uint32_t)sizeof(struct wp_rec), WR_RESULTS, w->job, w->gen,
                                  w->next_item, 0, 0, 0};
    }
    struct wp_item *it = (struct wp_item *)((unsigned char *)w->rec + w->rec->size);
    it->status = status;
    it->span = (uint32_t)span;
    it->len = status == 0 ? t->len : 0;
    it->arena = status == 0 ? t->arena : 0;
    if (inl && t->len)
        memcpy(it + 1, g_scratch, t->len);
    if (status != 0 && t->arena)
        weft__arena_free(t->v, t->arena - 1, t->tag);
    w->rec->size += (uint32_t)span;
    w->rec->count++;
    w->next_item++;
}

/* ---- claiming jobs ------------------------------------------------------------ */

/* Claim the next job; returns its index, or -1 if the queue is empty. */
static int claim(struct wp_hdr *h, uint32_t tag, uint64_t *state)
{
    _Atomic uint64_t *q = wp_queue(&g_view);
    struct wp_job *jobs = wp_jobs(&g_view);
    for (;;) {
        uint64_t head = atomic_load_explicit(&h->q_head, memory_order_acquire);
        uint64_t tail = atomic_load_explicit(&h->q_tail, memory_order_acquire);
        if (head == tail)
            return -1;
        uint64_t e = atomic_load_explicit(&q[head % WP_JOBS], memory_order_acquire);
        if ((uint32_t)(e >> 32) != (uint32_t)head)
            continue; /* the head moved under us */
        uint32_t j = (uint32_t)(e & 0xffff), g16 = (uint32_t)((e >> 16) & 0xffff);
        if (j >= WP_JOBS) {
            /* A task wrote over the queue: the cell names no job. */
            atomic_compare_exchange_strong(&h->q_head, &head, head + 1);
            continue;
        }
        uint64_t s = atomic_load_explicit(&jobs[j].state, memory_order_acquire);
        if (WJ_ST(s) == WJ_QUEUED && (WJ_GEN(s) & 0xffff) == g16) {
            /* The claim: after this CAS the job is ours, recorded by tag
             * (acquire: the descriptor the dispatcher wrote before
             * publishing QUEUED with release). */
            if (atomic_compare_exchange_strong_explicit(&jobs[j].state, &s,
                                                        WJ_MAKE(WJ_GEN(s), tag, WJ_CLAIMED),
                                                        memory_order_acq_rel,
                                                        memory_order_relaxed)) {
                atomic_compare_exchange_strong(&h->q_head, &head, head + 1);
                *state = s;
                return (int)j;
            }
            continue;
        }
        /* Claimed or revoked already: help the head on. */
        atomic_compare_exchange_strong(&h->q_head, &head, head + 1);
    }
}

_Noreturn void weft__proc_worker_main(const struct wp_msg *m, const int *fds, int nfds,
                                      pid_t server)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != server)
        _exit(0);
    if (nfds < 2 || m->nshm > WP_MAX_SHM || (uint32_t)nfds != 2 + m->nshm)
        _exit(WP_EXIT_BADMSG);
    /* Map the regions and the pool at the parent's addresses, so that
     * pointers into them mean the same thing here. */
    for (uint32_t i = 0; i < m->nshm; i++) {
        void *p = mmap((void *)(uintptr_t)m->rbase[i], m->rsize[i], PROT_READ | PROT_WRITE,
                       MAP_SHARED | MAP_FIXED_NOREPLACE, fds[2 + i], 0);
        if (p != (void *)(uintptr_t)m->rbase[i])
            _exit(WP_EXIT_MAPFAIL);
        close(fds[2 + i]);
    }
    /* The pool's own memory is addressed by offsets only: the parent's
     * address is preferred (it makes debugging easier), any will do. It
     * may be taken here: the worker has the mappings the program had at
     * weft_proc_init, which the parent may have released and reused. */
    void *p = mmap((void *)(uintptr_t)m->base, m->size, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_FIXED_NOREPLACE, fds[0], 0);
    if (p == MAP_FAILED)
        p = mmap(NULL, m->size, PROT_READ | PROT_WRITE, MAP_SHARED, fds[0], 0);
    if (p == MAP_FAILED)
        _exit(WP_EXIT_MAPFAIL);
    close(fds[0]);
    struct wp_hdr *h = p;
    if (h->magic != WP_MAGIC || !wp_view_init(&g_view, h, m->size) ||
        m->slot >= g_view.nworkers)
        _exit(WP_EXIT_BADMSG);
    uint64_t init_fn = h->init_fn, init_len = h->init_len, max_tasks = h->max_tasks;
    if (init_len > 64 * 1024 || g_view.off_init + init_len > g_view.total)
        _exit(WP_EXIT_BADMSG);
    g_efd = fds[1];
    struct wp_slot *slot = &wp_slots(&g_view)[m->slot];
    uint32_t tag = m->tag;
    /* Before anything can claim a job: who runs in this slot now. */
    atomic_store(&slot->ident, ((uint64_t)tag << 32) | (uint32_t)getpid());
    g_worker_index = (int)m->slot;
    char name[32];
    snprintf(name, sizeof name, "weft-proc-%u", m->slot);
    name[15] = 0;
    prctl(PR_SET_NAME, name);

    if (init_fn) {
        /* Said before it runs: a death from here until READY, by the
         * initializer's own crash or exit, is the initializer's failure
         * (pool.c: on_exit_msg). */
        atomic_store(&slot->state, WS_INIT);
        weft_proc_init_fn init = (weft_proc_init_fn)(uintptr_t)init_fn;
        int rc = init(init_len ? wp_at(&g_view, g_view.off_init) : NULL, init_len);
        if (rc != 0) {
            atomic_store(&slot->init_err, rc < 0 ? rc : -rc);
            atomic_store(&slot->state, WS_INITFAIL);
            wake_dispatcher(h);
            _exit(0);
        }
    }
    atomic_store(&slot->state, WS_READY);
    wake_dispatcher(h);

    struct wr w = {h, slot, wp_cq(&g_view, m->slot), g_view.ring_size, 0, NULL, 0, 0, 0};
    w.tail = atomic_load(&slot->cq_tail);
    struct wp_job *jobs = wp_jobs(&g_view);
    uint64_t done = 0;
    for (;;) {
        if (max_tasks && done >= max_tasks) {
            atomic_store(&slot->state, WS_RETIRED);
            wake_dispatcher(h);
            _exit(0);
        }
        /* Not while the dispatcher is deciding to kill us for the job we
         * just finished (Dekker's pattern with kill_running in pool.c: we
         * stored running = 0, then look at doomed; it stores doomed, then
         * looks at running; seq_cst both). Claiming now could put the
         * next task under that SIGKILL. */
        while (atomic_load(&slot->doomed)) {
            weft__futex_wait(&slot->doomed, 1, weft_now() + 100000000, true);
            if (getppid() != server)
                _exit(0);
        }
        uint64_t s;
        int j = claim(h, tag, &s);
        if (j < 0) {
            /* Spin a little (a new job often comes within microseconds),
             * then sleep on the queue's futex word. */
            int spins = 0;
            while (spins < 200 && atomic_load_explicit(&h->q_head, memory_order_relaxed) ==
                                      atomic_load_explicit(&h->q_tail, memory_order_relaxed)) {
                weft__cpu_relax();
                spins++;
            }
            if (spins < 200)
                continue;
            if (atomic_load(&h->closing)) {
                atomic_store(&slot->state, WS_EXITING);
                wake_dispatcher(h);
                _exit(0);
            }
            /* Announce, then re-check (seq_cst both sides: the dispatcher
             * publishes, bumps sq_seq, then reads every sleeping flag). */
            atomic_store(&slot->sleeping, 1);
            uint32_t seq = atomic_load(&h->sq_seq);
            if (atomic_load(&h->q_head) == atomic_load(&h->q_tail) && !atomic_load(&h->closing))
                weft__futex_wait(&h->sq_seq, seq, weft_now() + 1000000000, true);
            atomic_store(&slot->sleeping, 0);
            if (getppid() != server)
                _exit(0); /* the fork server is gone: so is the parent */
            continue;
        }
        struct wp_job *job = &jobs[j];
        uint32_t gen = WJ_GEN(s);
        atomic_store(&slot->started, weft_now());
        atomic_store(&slot->running, ((uint64_t)gen << 32) | (uint64_t)(j + 1));
        weft_proc_fn fn = (weft_proc_fn)(uintptr_t)job->fn;
        const unsigned char *arg = job->arg_len ? wp_at(&g_view, job->arg_off) : NULL;
        w.job = (uint32_t)j;
        w.gen = gen;
        uint32_t first = job->first < job->nitems ? job->first : job->nitems;
        w.next_item = first; /* records number items from the chunk's start */
        size_t isz = (size_t)job->item_size;
        for (uint32_t i = first; i < job->nitems; i++) {
            weft_proc_task_t t = {h, &g_view, tag, 0, 0};
            const void *a = isz ? arg + (size_t)i * isz : NULL;
            int rc = fn(&t, a, isz);
            if (rc > 0)
                rc = -rc;
            wr_item(&w, rc, &t);
        }
        if (!w.rec) {
            /* No items (cannot happen) or all were flushed: a closing record. */
            unsigned char *p2 = wr_room(&w, sizeof(struct wp_rec));
            w.rec = (struct wp_rec *)p2;
            *w.rec = (struct wp_rec){(uint32_t)sizeof(struct wp_rec), WR_RESULTS, w.job, gen,
                                     w.next_item, 0, 0, 0};
        }
        wr_close(&w, true);
        done++;
        /* The result first, then running = 0 (both seq_cst): a dispatcher
         * that sees the job no longer running finds its result. */
        wr_publish(&w);
        atomic_store(&slot->running, 0);
    }
}
