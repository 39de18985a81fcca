/*
 * pool.c - the parent's side of a process pool: the public API and the
 * dispatcher thread.
 *
 * Each pool has one dispatcher thread. Only it touches the job table, the
 * argument ring's allocator and the result rings' heads; user threads hand
 * it work through a mutex-protected pending list (submit, map) or a request
 * list (cancel), and wake it through an eventfd when it sleeps. It sleeps in
 * poll() on that eventfd and on the pool's connection to the fork server,
 * from which it learns of spawned and exited workers.
 *
 * A round of the dispatcher: read the server's messages (spawned, exited:
 * a dead worker's results are drained, the job it had claimed fails, its
 * arena pages are freed, a new worker is asked for); drain every result
 * ring; answer cancel requests; apply shutdown; move pending work into free
 * job slots and publish it on the shared queue; kill workers whose task is
 * past its deadline. When a round does nothing it announces that it sleeps
 * (disp_sleeping, seq_cst), checks once more, and polls.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <weft/sync.h>
#include <weft/thread.h>

#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

struct pmap;

/* Work handed to the dispatcher, in submission order. */
struct ptask {
    struct ptask *next;
    int kind;          /* WK_CALL or WK_MAP */
    weft_proc_fn fn;
    weft_future_t *f;  /* CALL: the pool's reference */
    int64_t timeout;   /* ns from start, 0: none */
    size_t len;
    uint64_t arena;    /* SHARED argument: arena offset + 1 */
    struct pmap *map;  /* MAP */
    bool running;      /* CALL: its future was marked RUNNING */
    unsigned char data[];
};

/* One item's outcome queued for an unordered iterator. */
struct ires {
    struct ires *next;
    size_t index;
    int err;
    size_t len;
    unsigned char data[];
};

struct pmap {
    struct weft_proc_pool *pool;
    weft_proc_fn fn;
    const unsigned char *items;
    size_t item_size, n, chunk;
    size_t next;      /* next item to dispatch (dispatcher) */
    size_t remaining; /* items without an outcome (dispatcher) */
    void *results;
    size_t result_size;
    int *errors;
    bool own_errors;
    bool unordered;
    _Atomic bool cancel;   /* stop dispatching (iterator freed) */
    weft_event_t done;     /* remaining reached 0 */
    weft_mutex_t qlock;    /* unordered: the queue of outcomes */
    struct ires *qhead, *qtail;
    weft_sem_t avail;      /* outcomes queued */
};

/* What the dispatcher knows of each job slot. */
struct jlocal {
    int kind;            /* 0: free */
    weft_future_t *f;    /* CALL */
    struct pmap *map;    /* MAP */
    size_t first;        /* MAP: index of its first item */
    uint32_t n, reported;
    int ring_rec;        /* argument ring record, or -1 */
    uint64_t arena;      /* argument in the arena: offset + 1 */
    int64_t timeout;
    int kill_reason;     /* set when the pool killed the worker running it */
    uint32_t gen;
    unsigned retries;    /* times it was run again after a crash */
    bool retry_pending;  /* to be published again (REVOKED meanwhile) */
};

/* The argument ring's allocator: FIFO allocation, frees in any order; the
 * head moves past a record once it and all older ones are freed. */
struct arec {
    uint64_t end;
    bool freed;
};

struct wstate {
    pid_t pid;       /* 0: none */
    int pidfd;       /* -1: none */
    uint32_t tag;
    bool alive;      /* spawned and not yet reported exited */
    bool spawning;   /* SPAWN sent, SPAWNED not yet received */
    bool bad;        /* its ring was malformed: killed, not read (dispatcher) */
    bool kill_on_spawn; /* to be killed once its SPAWNED message is read */
    int64_t respawn_at;
};

struct xrec {
    struct xrec *next;
    weft_future_t *f;
    weft_proc_exit_t info;
};

struct ubuf {
    struct ubuf *next;
    uint64_t off;
    uint64_t len; /* as allocated: a submission may pass at most this much */
};

struct creq {
    struct creq *next;
    weft_future_t *f;
    bool kill;
    int result;
    weft_event_t done;
};

struct weft_proc_pool {
    struct wp_hdr *h;
    size_t map_size;
    /* The layout, as created (the header's copy is shared with the
     * workers: not trusted). */
    struct wp_view v;
    uint64_t init_fn, init_len, max_tasks;
    void *init_copy;   /* the initializer's argument */
    int32_t server_pid;
    int memfd, efd, conn;
    int nworkers;
    int64_t timeout;
    unsigned max_retries;
    int nshm;
    int shm_fds[WP_MAX_SHM];
    uint64_t rbase[WP_MAX_SHM], rsize[WP_MAX_SHM];
    pthread_t disp;
    bool disp_started;

    weft_mutex_t lock; /* everything below up to the dispatcher-only part */
    struct ptask *phead, *ptail;
    _Atomic size_t npending;
    unsigned how;      /* shutdown flags */
    bool shut;
    int broken;        /* error for submissions once broken, else 0 */
    struct creq *creqs;
    struct wstate *w;
    struct xrec *xrecs;
    weft_proc_exit_t last_exit;
    bool has_last;
    struct ubuf *ubufs;
    weft_proc_stats_t st;

    weft_event_t started;
    int start_err;
    weft_event_t finished;
    _Atomic uint32_t poke; /* something for the dispatcher under lock */
    _Atomic bool map_cancels; /* an iterator was freed: revoke its queued chunks */
    _Atomic uint64_t tasks_done; /* st.tasks_done, counted without the lock */
    _Atomic bool hold_spawned;   /* tests: weft__proc_hold_spawned */

    /* Dispatcher only. */
    struct jlocal jl[WP_JOBS];
    uint32_t freelist[WP_JOBS];
    uint32_t nfree;
    uint64_t ar_head, ar_tail;
    struct arec ar[WP_JOBS];
    uint32_t ar_rh, ar_rt;
    uint32_t next_tag;
    bool start_done;
    bool draining;      /* in drain_slot (outcomes run done-callbacks) */
    bool cancelled_all;
    bool terminated;
    uint32_t injobs;    /* job slots in use */
    uint32_t nretry;    /* jobs with retry_pending */
    /* A SPAWNED message held back (hold_spawned), with its pidfd; while it
     * is held nothing more is read from the server, so that messages keep
     * their order. */
    bool held;
    struct wp_msg held_m;
    int held_fds[1], held_nfds;
};

static const weft_proc_opts_t g_default_opts;

/* ---- helpers ---------------------------------------------------------------------- */

static void wake_dispatcher(struct weft_proc_pool *p)
{
    /* seq_cst: after the caller's seq_cst update of npending or poke,
     * which the dispatcher re-checks after setting disp_sleeping. */
    if (atomic_load(&p->h->disp_sleeping) && atomic_exchange(&p->h->disp_sleeping, 0)) {
        uint64_t one = 1;
        ssize_t r = write(p->efd, &one, sizeof one);
        (void)r;
    }
}

static void poke(struct weft_proc_pool *p)
{
    atomic_fetch_add(&p->poke, 1);
    wake_dispatcher(p);
}

static int env_workers(void)
{
    const char *v = getenv("WEFT_WORKERS");
    if (v && *v) {
        char *end;
        long n = strtol(v, &end, 10);
        if (*end == '\0' && n > 0 && n <= WEFT_PROC_MAX_WORKERS)
            return (int)n;
    }
    int c = weft_cpu_count();
    if (c < 1)
        c = 1;
    return c > WEFT_PROC_MAX_WORKERS ? WEFT_PROC_MAX_WORKERS : c;
}

static uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) & ~(a - 1); }

static int ar_alloc(struct weft_proc_pool *p, size_t len, uint64_t *off)
{
    uint64_t size = p->v.ring_size;
    uint64_t need = align_up(len ? len : 8, 8);
    uint64_t pos = p->ar_tail % size;
    uint64_t skip = size - pos < need ? size - pos : 0;
    if (p->ar_tail + skip + need - p->ar_head > size)
        return -1;
    /* At most WP_JOBS records between the head and the tail: one more
     * would overwrite the oldest one's entry (still in use, or the head
     * would not be stopped at it), and freeing either would then move the
     * head past records still in use. */
    if (p->ar_rt - p->ar_rh >= WP_JOBS)
        return -1;
    uint64_t start = p->ar_tail + skip;
    p->ar_tail = start + need;
    uint32_t r = p->ar_rt++ % WP_JOBS;
    p->ar[r] = (struct arec){p->ar_tail, false};
    *off = p->v.off_argring + start % size;
    return (int)r;
}

static void ar_free(struct weft_proc_pool *p, int r)
{
    p->ar[r].freed = true;
    while (p->ar_rh != p->ar_rt && p->ar[p->ar_rh % WP_JOBS].freed) {
        p->ar_head = p->ar[p->ar_rh % WP_JOBS].end;
        p->ar_rh++;
    }
}

static struct wp_slot *slot_of(struct weft_proc_pool *p, int i) { return &wp_slots(&p->v)[i]; }

/* Write what a starting worker reads (the layout, the initializer and its
 * argument, the task limit) into the shared header, from the pool's
 * private copies. Done at creation and again before each spawn: a task
 * may have written over the header since, and a new worker that read a
 * damaged one would fail to start, again and again. */
static void write_header(struct weft_proc_pool *p)
{
    struct wp_hdr *h = p->h;
    const struct wp_view *v = &p->v;
    h->magic = WP_MAGIC;
    h->total = v->total;
    h->nworkers = v->nworkers;
    h->npages = v->npages;
    h->ring_size = v->ring_size;
    h->inline_max = v->inline_max;
    h->off_jobs = v->off_jobs;
    h->off_queue = v->off_queue;
    h->off_slots = v->off_slots;
    h->off_argring = v->off_argring;
    h->off_cq = v->off_cq;
    h->off_owners = v->off_owners;
    h->off_runlen = v->off_runlen;
    h->off_arena = v->off_arena;
    h->off_init = v->off_init;
    h->init_fn = p->init_fn;
    h->init_len = p->init_len;
    if (p->init_len)
        memcpy(wp_at(v, v->off_init), p->init_copy, p->init_len);
    h->max_tasks = p->max_tasks;
    h->server_pid = p->server_pid;
}

/* ---- outcomes ------------------------------------------------------------------------ */

/*
 * The outcomes of items and tasks. data may lie in an arena run (arena:
 * offset + 1, else 0): the run is given back once the bytes are copied and
 * before anyone waiting for the outcome is woken, so that a caller woken
 * by it finds the arena as free as it left it (it may allocate in it at
 * once, and a run held a moment longer would make that fail).
 */
static void map_outcome(const struct wp_view *v, struct pmap *m, size_t idx, int err, const void *data,
                        size_t len, uint64_t arena)
{
    if (err == 0 && m->result_size) {
        if (len != m->result_size)
            err = -EMSGSIZE;
        else
            memcpy((char *)m->results + idx * m->result_size, data, len);
    }
    m->errors[idx] = err;
    struct ires *r = NULL;
    if (m->unordered) {
        r = malloc(sizeof *r + (err == 0 ? len : 0) + 1);
        if (r) {
            r->next = NULL;
            r->index = idx;
            r->err = err;
            r->len = err == 0 ? len : 0;
            if (r->len)
                memcpy(r->data, data, r->len);
            r->data[r->len] = 0;
        } else if ((r = malloc(sizeof *r + 1))) {
            /* No room for the bytes: the iterator sees the item failed. */
            *r = (struct ires){NULL, idx, -ENOMEM, 0};
            r->data[0] = 0;
            m->errors[idx] = -ENOMEM;
        }
    }
    if (arena)
        weft__arena_free(v, arena - 1, 0);
    if (m->unordered) {
        if (r) {
            weft_mutex_lock(&m->qlock);
            if (m->qtail)
                m->qtail->next = r;
            else
                m->qhead = r;
            m->qtail = r;
            weft_mutex_unlock(&m->qlock);
            weft_sem_release(&m->avail);
        } else {
            /* Out of memory twice: nothing to queue. The iterator gets
             * -ENOMEM for that item (weft_proc_iter_next, no record). */
            m->errors[idx] = -ENOMEM;
            weft_sem_release(&m->avail);
        }
    }
    if (--m->remaining == 0)
        weft_event_set(&m->done);
}

static void call_outcome(const struct wp_view *v, weft_future_t *f, int err, const void *data,
                         size_t len, uint64_t arena)
{
    weft_proc_bytes_t *b = NULL;
    if (err == 0) {
        b = malloc(sizeof *b + len + 1);
        if (b) {
            b->len = len;
            b->reserved_ = 0;
            if (len)
                memcpy(b->data, data, len);
            b->data[len] = 0;
        }
    }
    if (arena)
        weft__arena_free(v, arena - 1, 0);
    if (err != 0)
        weft_future_set_error(f, err);
    else if (!b)
        weft_future_set_error(f, -ENOMEM);
    else if (weft_future_set_result_free(f, b, free) != 0)
        free(b);
}

/* Give back job j's argument (ring record or arena run): no worker reads
 * it any more. Done before the job's outcome wakes anyone (see above). */
static void release_arg(struct weft_proc_pool *p, struct jlocal *l)
{
    if (l->ring_rec >= 0)
        ar_free(p, l->ring_rec);
    if (l->arena)
        weft__arena_free(&p->v, l->arena - 1, WP_OWN_PARENT);
    l->ring_rec = -1;
    l->arena = 0;
}

static void finish_job(struct weft_proc_pool *p, uint32_t j)
{
    struct jlocal *l = &p->jl[j];
    release_arg(p, l);
    if (l->f)
        weft_future_release(l->f);
    struct wp_job *job = &wp_jobs(&p->v)[j];
    /* release: whatever a worker wrote to the job is done with. */
    atomic_store_explicit(&job->state, WJ_MAKE(l->gen, 0, WJ_FREE), memory_order_release);
    /* The generation survives: the next use of this slot gets a new one,
     * so a queue entry or a record of an earlier use never matches it.
     * (It was reset to 0 here, so every use of a slot was generation 1:
     * a worker holding a revoked job's stale queue entry claimed the
     * slot's next job through it.) */
    uint32_t gen = l->gen;
    memset(l, 0, sizeof *l);
    l->gen = gen;
    l->ring_rec = -1;
    p->freelist[p->nfree++] = j;
    p->injobs--;
}

/* Fail the items of job j not yet reported, then free it. */
static void fail_job(struct weft_proc_pool *p, uint32_t j, int err)
{
    struct jlocal *l = &p->jl[j];
    release_arg(p, l);
    if (l->kind == WK_CALL)
        weft_future_set_error(l->f, err);
    else
        for (uint32_t k = l->reported; k < l->n; k++)
            map_outcome(&p->v, l->map, l->first + k, err, NULL, 0, 0);
    finish_job(p, j);
}

/*
 * Reading a worker's result ring. The ring, the worker's slot and the job
 * table are shared memory that the task's own code can write to (a stray
 * pointer, a buffer overrun): nothing read from them is trusted. Every
 * field is copied into a local once and checked before it is used as a
 * length, an index or an offset, so that a malformed record can make its
 * task fail but never makes the parent read or free outside what it owns.
 * A worker whose ring is found malformed is killed and its ring is not
 * read again; its job fails with -EBADMSG (see ring_corrupt).
 */

/* Read and check the item at offset off of a record of rsize bytes that
 * belongs to the worker tagged tag. Returns false if it is malformed; else
 * fills *e and *data (the result bytes). */
static bool item_ok(struct weft_proc_pool *p, uint32_t tag, const unsigned char *rec,
                    uint32_t rsize, uint64_t off, struct wp_item *e, const void **data)
{
    if (off > rsize || rsize - off < sizeof *e)
        return false;
    memcpy(e, rec + off, sizeof *e);
    if (e->span < sizeof *e || e->span % 8 || e->span > rsize - off || e->status > 0)
        return false;
    if (e->status != 0) {
        *data = NULL;
        return e->len == 0 && e->arena == 0;
    }
    if (!e->arena) {
        if (e->len > e->span - sizeof *e)
            return false;
        *data = rec + off + sizeof *e;
        return true;
    }
    /* In the arena: the start of a run the worker owns, long enough. */
    uint64_t a = e->arena - 1;
    if (!weft__arena_is_run(&p->v, a, tag))
        return false;
    uint64_t pg = (a - p->v.off_arena) / WP_PAGE;
    uint32_t n = ((volatile uint32_t *)wp_runlen(&p->v))[pg];
    if (n == 0 || n > p->v.npages - pg || e->len > (uint64_t)n * WP_PAGE)
        return false;
    *data = wp_at(&p->v, a);
    return true;
}

/* Deliver the record r (a copy; its bytes at rec) of the worker tagged tag.
 * Returns false if it is malformed (nothing more is delivered from it). */
static bool take_record(struct weft_proc_pool *p, uint32_t tag, const unsigned char *rec,
                        const struct wp_rec *r)
{
    if (r->job >= WP_JOBS)
        return false;
    struct jlocal *l = &p->jl[r->job];
    /* A record is only ever written for a job its worker has claimed, and
     * the job stays CLAIMED by it until its last record is consumed here. */
    uint64_t js = atomic_load_explicit(&wp_jobs(&p->v)[r->job].state, memory_order_acquire);
    if (!l->kind || l->gen != r->gen || WJ_ST(js) != WJ_CLAIMED || WJ_TAG(js) != tag ||
        WJ_GEN(js) != r->gen || (uint64_t)r->first + r->count > l->n)
        return false;
    /* Check every item before delivering any: a malformed record delivers
     * nothing (the checks are repeated below, as the worker may still be
     * writing). */
    struct wp_item e;
    const void *data;
    uint64_t off = sizeof *r;
    for (uint32_t k = 0; k < r->count; k++, off += e.span)
        if (!item_ok(p, tag, rec, r->size, off, &e, &data))
            return false;
    /* The last record: the worker is done with the argument. */
    if (r->last)
        release_arg(p, l);
    off = sizeof *r;
    for (uint32_t k = 0; k < r->count; k++, off += e.span) {
        if (!item_ok(p, tag, rec, r->size, off, &e, &data))
            return false;
        /* Items below reported were delivered by an earlier run of a
         * retried job: skip them. */
        uint32_t item = r->first + k;
        if (item >= l->reported) {
            /* Frees the result's arena run, if any. */
            if (l->kind == WK_CALL)
                call_outcome(&p->v, l->f, e.status, data, (size_t)e.len, e.arena);
            else
                map_outcome(&p->v, l->map, l->first + item, e.status, data, (size_t)e.len,
                            e.arena);
            l->reported = item + 1;
        } else if (e.arena) {
            weft__arena_free(&p->v, e.arena - 1, 0);
        }
    }
    if (r->last) {
        finish_job(p, r->job);
        atomic_fetch_add_explicit(&p->tasks_done, 1, memory_order_relaxed);
    }
    return true;
}

static void kill_slot(struct weft_proc_pool *p, int i);

/* Worker i wrote something malformed into its ring: kill it and stop
 * reading its ring. The job the bad record names, if it is one the worker
 * holds, fails with -EBADMSG when the exit is reported (on_exit_msg); if
 * the ring cannot tell which (a bad size, a bad tail), every job the
 * worker holds does. Its other jobs end as a crash would end them (retried
 * if allowed, else WEFT_ECRASHED). */
static void ring_corrupt(struct weft_proc_pool *p, int i, uint32_t job)
{
    uint32_t tag = p->w[i].tag;
    p->w[i].bad = true;
    struct wp_job *jobs = wp_jobs(&p->v);
    bool named = false;
    if (job < WP_JOBS) {
        uint64_t js = atomic_load(&jobs[job].state);
        named = p->jl[job].kind && WJ_ST(js) == WJ_CLAIMED && WJ_TAG(js) == tag;
    }
    for (uint32_t j = 0; j < WP_JOBS; j++) {
        uint64_t js = atomic_load(&jobs[j].state);
        if (p->jl[j].kind && WJ_ST(js) == WJ_CLAIMED && WJ_TAG(js) == tag &&
            !p->jl[j].kill_reason && (!named || j == job))
            p->jl[j].kill_reason = -EBADMSG;
    }
    kill_slot(p, i);
}

static bool drain_slot_(struct weft_proc_pool *p, int i);
static bool drain_slot(struct weft_proc_pool *p, int i)
{
    if (p->w[i].bad)
        return false; /* killed for scribbling; its exit is on the way */
    /* Not from inside another drain (a done-callback run by an outcome
     * that calls weft_proc_cancel): that one holds its place in a ring. */
    if (p->draining)
        return false;
    p->draining = true;
    bool r = drain_slot_(p, i);
    p->draining = false;
    return r;
}

static bool drain_slot_(struct weft_proc_pool *p, int i)
{
    struct wp_slot *s = slot_of(p, i);
    unsigned char *ring = wp_cq(&p->v, (uint32_t)i);
    uint64_t size = p->v.ring_size;
    uint32_t tag = p->w[i].tag;
    uint64_t head = atomic_load_explicit(&s->cq_head, memory_order_relaxed);
    /* acquire: the records the worker wrote before publishing the tail. */
    uint64_t tail = atomic_load_explicit(&s->cq_tail, memory_order_acquire);
    if (head == tail)
        return false;
    bool bad = tail < head || tail - head > size;
    uint32_t bad_job = UINT32_MAX; /* the job a bad record names */
    while (!bad && head < tail) {
        uint64_t pos = head % size;
        struct wp_rec r;
        memcpy(&r, ring + pos, 8); /* size and type: a PAD record has no more */
        uint32_t rsize = r.size;
        if (rsize < 8 || rsize % 8 || rsize > size - pos || rsize > tail - head) {
            bad = true;
        } else if (r.type == WR_PAD) {
            head += rsize;
        } else if (r.type != WR_RESULTS || rsize < sizeof r) {
            bad = true;
        } else {
            memcpy(&r, ring + pos, sizeof r);
            r.size = rsize; /* as checked, whatever is there now */
            if (take_record(p, tag, ring + pos, &r))
                head += rsize;
            else
                bad = true, bad_job = r.job;
        }
    }
    if (bad) {
        ring_corrupt(p, i, bad_job);
        return true;
    }
    /* release: we are done reading what the worker may now overwrite. */
    atomic_store_explicit(&s->cq_head, head, memory_order_release);
    atomic_fetch_add(&s->cq_seq, 1);
    if (atomic_load(&s->cq_wait))
        weft__futex_wake(&s->cq_seq, 1, true);
    return true;
}

/* ---- workers ----------------------------------------------------------------------- */

static int spawn(struct weft_proc_pool *p, int i)
{
    struct wp_slot *s = slot_of(p, i);
    uint32_t tag = p->next_tag++;
    if (p->next_tag >= 0xffffff)
        p->next_tag = 1;
    atomic_store(&s->state, WS_STARTING);
    atomic_store(&s->tag, tag);
    atomic_store(&s->sleeping, 0);
    atomic_store(&s->init_err, 0);
    atomic_store(&s->running, 0);
    atomic_store(&s->cq_tail, 0);
    atomic_store(&s->cq_head, 0);
    atomic_store(&s->cq_wait, 0);
    atomic_store(&s->doomed, 0);
    write_header(p);
    struct wp_msg m = {0};
    m.type = WM_SPAWN;
    m.slot = (uint32_t)i;
    m.tag = tag;
    m.nfds = 2 + (uint32_t)p->nshm;
    m.nshm = (uint32_t)p->nshm;
    m.base = (uint64_t)(uintptr_t)p->h;
    m.size = p->map_size;
    int fds[2 + WP_MAX_SHM] = {p->memfd, p->efd};
    for (int k = 0; k < p->nshm; k++) {
        fds[2 + k] = p->shm_fds[k];
        m.rbase[k] = p->rbase[k];
        m.rsize[k] = p->rsize[k];
    }
    weft_mutex_lock(&p->lock);
    p->w[i].tag = tag;
    p->w[i].spawning = true;
    p->w[i].bad = false;
    p->w[i].kill_on_spawn = false;
    p->w[i].respawn_at = 0;
    weft_mutex_unlock(&p->lock);
    int rc = weft__proc_send(p->conn, &m, fds, 2 + p->nshm);
    if (rc < 0) {
        weft_mutex_lock(&p->lock);
        p->w[i].spawning = false;
        weft_mutex_unlock(&p->lock);
        atomic_store(&s->state, WS_EMPTY);
    }
    return rc;
}

static bool queue_nonempty(struct weft_proc_pool *p)
{
    return atomic_load(&p->h->q_head) != atomic_load(&p->h->q_tail);
}

/* SIGKILL worker i. A worker spawned whose SPAWNED message is not read yet
 * (it may already run a task) has no pidfd here yet: it is killed when
 * that message is read. */
static void kill_slot(struct weft_proc_pool *p, int i)
{
    weft_mutex_lock(&p->lock);
    if (p->w[i].alive && p->w[i].pidfd >= 0)
        syscall(SYS_pidfd_send_signal, p->w[i].pidfd, SIGKILL, NULL, 0);
    else if (p->w[i].spawning)
        p->w[i].kill_on_spawn = true;
    weft_mutex_unlock(&p->lock);
}

/*
 * Kill worker i for job j (generation gen), which it is running, with
 * reason for the job's error; unless it has finished the job meanwhile.
 * Returns true if it was killed.
 *
 * A plain "is it still running j? then SIGKILL" kills an innocent task when
 * the worker finishes j between the look and the signal and claims the
 * next job: that job died with WEFT_ECRASHED. So: doomed = 1, then look at
 * running (seq_cst both); the worker stores running = 0 after publishing
 * j's result and looks at doomed before each claim, waiting while it is
 * set (Dekker's pattern): whatever we see, the worker claims nothing new
 * until we clear doomed or the SIGKILL lands.
 *   running == j: kill. (If j's result was published just before, j
 *     completes with it when the exit is reported; the pool only lost a
 *     worker.)
 *   running != j: either j is finished (its result was published before
 *     running was cleared: draining the ring now delivers it), or the
 *     worker has claimed j and not yet marked it running (it will run j,
 *     and only j): kill if j is still claimed by it after the drain.
 */
static bool kill_running(struct weft_proc_pool *p, int i, uint32_t j, uint32_t gen, int reason)
{
    struct wp_slot *s = slot_of(p, i);
    uint64_t run = ((uint64_t)gen << 32) | (uint64_t)(j + 1);
    atomic_store(&s->doomed, 1);
    bool kill = atomic_load(&s->running) == run;
    if (!kill) {
        /* Inside a drain (a done-callback cancelling), the ring cannot be
         * read now: then kill anyway. That is safe too: doomed keeps the
         * worker from claiming anything but j, so the kill can only cost
         * a worker (j's result, if published, is drained at its exit). */
        if (!p->draining)
            drain_slot(p, i);
        uint64_t js = atomic_load(&wp_jobs(&p->v)[j].state);
        kill = p->jl[j].kind && p->jl[j].gen == gen && WJ_ST(js) == WJ_CLAIMED &&
               WJ_TAG(js) == p->w[i].tag && !p->w[i].bad;
    }
    if (kill) {
        p->jl[j].kill_reason = reason;
        kill_slot(p, i);
        return true;
    }
    atomic_store(&s->doomed, 0);
    weft__futex_wake(&s->doomed, 1, true);
    return false;
}

static void set_broken(struct weft_proc_pool *p, int err);
static void publish(struct weft_proc_pool *p, uint32_t j, weft_proc_fn fn, uint64_t off,
                    size_t len, size_t item_size, uint32_t n, int kind, uint32_t first);
static bool queue_room(struct weft_proc_pool *p);

/* Run job j again (its worker died unasked): same descriptor, a new
 * generation, at the back of the queue. */
static int publish_retries(struct weft_proc_pool *p);
static bool retry_job(struct weft_proc_pool *p, uint32_t j)
{
    struct jlocal *l = &p->jl[j];
    if (l->kill_reason || l->retries >= p->max_retries || p->terminated || p->broken)
        return false;
    l->retries++;
    /* Off the dead worker's books at once (REVOKED is invisible to
     * workers); published again now if the queue has room, else by the
     * next round of the dispatcher. */
    struct wp_job *job = &wp_jobs(&p->v)[j];
    atomic_store(&job->state, WJ_MAKE(l->gen, 0, WJ_REVOKED));
    l->retry_pending = true;
    p->nretry++;
    if (publish_retries(p) > 0) {
        atomic_fetch_add(&p->h->sq_seq, 1);
        weft__futex_wake(&p->h->sq_seq, 1, true);
    }
    return true;
}

/* Publish the jobs waiting to be retried, as far as the queue has room. */
static int publish_retries(struct weft_proc_pool *p);
static int publish_retries(struct weft_proc_pool *p)
{
    int n = 0;
    for (uint32_t j = 0; j < WP_JOBS && p->nretry > 0; j++) {
        struct jlocal *l = &p->jl[j];
        if (!l->retry_pending)
            continue;
        if (l->kind == WK_MAP && atomic_load(&l->map->cancel)) {
            /* Its iterator was freed: not run again (iter_free). */
            l->retry_pending = false;
            p->nretry--;
            fail_job(p, j, -ECANCELED);
            continue;
        }
        if (!queue_room(p))
            break;
        struct wp_job *job = &wp_jobs(&p->v)[j];
        l->retry_pending = false;
        p->nretry--;
        /* A map chunk resumes after the items its earlier run reported
         * (they are delivered: running them again would repeat their
         * effects). */
        publish(p, j, (weft_proc_fn)(uintptr_t)job->fn, job->arg_off, (size_t)job->arg_len,
                (size_t)job->item_size, job->nitems, (int)job->kind, l->reported);
        n++;
    }
    return n;
}

/* Worker i (tag) has exited and been reaped. */
static void on_exit_msg(struct weft_proc_pool *p, const struct wp_msg *m)
{
    int i = (int)m->slot;
    if (i < 0 || i >= p->nworkers || p->w[i].tag != m->tag)
        return;
    struct wp_slot *s = slot_of(p, i);
    drain_slot(p, i);
    uint32_t st = atomic_load(&s->state);
    weft_proc_exit_t x = {m->pid, 0, 0, WEFT_ECRASHED};
    if (m->code == CLD_EXITED)
        x.exit_code = m->status;
    else
        x.signal = m->status;
    bool clean = (st == WS_RETIRED || st == WS_EXITING) && m->code == CLD_EXITED &&
                 m->status == 0;
    /* The job it had claimed: at most one, unless it was killed for a
     * malformed ring (then every job it holds fails; see ring_corrupt).
     * Counters and records first: failing the job wakes whoever waits. */
    struct wp_job *jobs = wp_jobs(&p->v);
    int claimed = -1;
    for (uint32_t j = 0; j < WP_JOBS && claimed < 0; j++) {
        uint64_t js = atomic_load_explicit(&jobs[j].state, memory_order_acquire);
        if (WJ_ST(js) == WJ_CLAIMED && WJ_TAG(js) == m->tag && p->jl[j].kind)
            claimed = (int)j;
    }
    bool killed = false;
    if (claimed >= 0) {
        struct jlocal *l = &p->jl[claimed];
        x.error = l->kill_reason ? l->kill_reason : WEFT_ECRASHED;
        killed = l->kill_reason != 0;
        clean = false;
    }
    weft_mutex_lock(&p->lock);
    if (claimed >= 0) {
        p->last_exit = x;
        p->has_last = true;
        if (p->jl[claimed].kind == WK_CALL) {
            struct xrec *xr = malloc(sizeof *xr);
            if (xr && weft_future_retain(p->jl[claimed].f) == 0) {
                xr->f = p->jl[claimed].f;
                xr->info = x;
                xr->next = p->xrecs;
                p->xrecs = xr;
            } else {
                free(xr);
            }
        }
    }
    if (p->w[i].pidfd >= 0)
        close(p->w[i].pidfd);
    p->w[i].pidfd = -1;
    p->w[i].pid = 0;
    p->w[i].alive = false;
    if (st == WS_RETIRED && clean)
        p->st.retired++;
    else if (killed || p->terminated)
        p->st.killed++;
    else if (!clean && st != WS_INITFAIL)
        p->st.crashed++;
    bool shut = p->shut;
    weft_mutex_unlock(&p->lock);
    /* Its leftover arena pages (a result reserved, never delivered) go
     * back before its job fails and wakes anyone: drain_slot above
     * consumed every result that referred to its pages. */
    weft__arena_free_owner(&p->v, m->tag);
    for (uint32_t j = claimed >= 0 ? (uint32_t)claimed : WP_JOBS; j < WP_JOBS; j++) {
        uint64_t js = atomic_load_explicit(&jobs[j].state, memory_order_acquire);
        if (WJ_ST(js) != WJ_CLAIMED || WJ_TAG(js) != m->tag || !p->jl[j].kind)
            continue;
        int err = p->jl[j].kill_reason ? p->jl[j].kill_reason : WEFT_ECRASHED;
        if (!retry_job(p, j))
            fail_job(p, j, err);
    }
    atomic_store(&s->state, WS_EMPTY);
    /* Died in its initializer (the worker said so: WS_INIT) by its own
     * doing, an exit or a crash signal: the initializer failed as much as
     * with a nonzero return, and respawning would fork it again and again,
     * forever. Not so for a kill from outside (SIGKILL, SIGTERM: the OOM
     * killer, weft_proc_signal_worker), which is any worker's crash, nor
     * once the pool is broken (the fork server gone: keep -ECHILD). */
    bool own_doing = m->code == CLD_EXITED ||
                     ((m->code == CLD_KILLED || m->code == CLD_DUMPED) &&
                      (m->status == SIGSEGV || m->status == SIGBUS || m->status == SIGILL ||
                       m->status == SIGFPE || m->status == SIGABRT || m->status == SIGTRAP ||
                       m->status == SIGSYS));
    bool init_died = st == WS_INIT && own_doing && !p->terminated && !p->broken;
    if (init_died)
        st = WS_INITFAIL;

    if (!p->start_done) {
        if (st == WS_INITFAIL)
            p->start_err = WEFT_EINITFAILED;
        else if (m->code == CLD_EXITED && m->status == WP_EXIT_MAPFAIL)
            p->start_err = -EADDRINUSE;
        else
            p->start_err = -ECHILD;
        return;
    }
    if (st == WS_INITFAIL) {
        set_broken(p, WEFT_EINITFAILED);
        return;
    }
    if (p->terminated || p->broken)
        return;
    bool need = !atomic_load(&p->h->closing) || queue_nonempty(p) || p->nretry > 0;
    if (shut && p->cancelled_all && !queue_nonempty(p))
        need = false;
    if (need && spawn(p, i) < 0)
        set_broken(p, -ECHILD);
}

/* The fork server's SPAWNED for slot m->slot: the worker is alive (or its
 * fork failed). Takes fds[0] (the pidfd) when it keeps it. */
static void on_spawned(struct weft_proc_pool *p, const struct wp_msg *m, int *fds, int nfds)
{
    int i = (int)m->slot;
    if (i < 0 || i >= p->nworkers || p->w[i].tag != m->tag)
        return;
    weft_mutex_lock(&p->lock);
    p->w[i].spawning = false;
    if (m->pid > 0 && nfds == 1) {
        p->w[i].pid = m->pid;
        p->w[i].pidfd = fds[0];
        p->w[i].alive = true;
        p->st.spawned++;
        fds[0] = -1;
    } else {
        atomic_store(&slot_of(p, i)->state, WS_EMPTY);
        p->w[i].respawn_at = weft_now() + 50000000;
    }
    weft_mutex_unlock(&p->lock);
    if (m->pid <= 0 && !p->start_done)
        p->start_err = -EAGAIN;
    if (p->w[i].alive && (p->terminated || p->w[i].kill_on_spawn))
        syscall(SYS_pidfd_send_signal, p->w[i].pidfd, SIGKILL, NULL, 0);
}

static void read_server(struct weft_proc_pool *p, bool *progress)
{
    if (WEFT_UNLIKELY(p->held)) {
        if (atomic_load(&p->hold_spawned))
            return;
        p->held = false;
        *progress = true;
        on_spawned(p, &p->held_m, p->held_fds, p->held_nfds);
        for (int k = 0; k < p->held_nfds; k++)
            if (p->held_fds[k] >= 0)
                close(p->held_fds[k]);
    }
    for (;;) {
        struct wp_msg m;
        int fds[1], nfds;
        ssize_t r = weft__proc_recv(p->conn, &m, fds, 1, &nfds, false);
        if (r == -EAGAIN)
            return;
        if (r <= 0) {
            /* The fork server is gone, and with it every worker. */
            for (int k = 0; k < nfds; k++)
                close(fds[k]);
            if (p->conn >= 0) {
                for (int i = 0; i < p->nworkers; i++)
                    if (p->w[i].alive || p->w[i].spawning) {
                        struct wp_msg x = {0};
                        x.type = WM_EXITED;
                        x.slot = (uint32_t)i;
                        x.tag = p->w[i].tag;
                        x.pid = p->w[i].pid;
                        x.code = CLD_KILLED;
                        x.status = SIGKILL;
                        p->w[i].spawning = false;
                        set_broken(p, -ECHILD);
                        on_exit_msg(p, &x);
                    }
                close(p->conn);
                p->conn = -1;
                if (!p->start_done && !p->start_err)
                    p->start_err = -ECHILD;
            }
            *progress = true;
            return;
        }
        *progress = true;
        if (m.type == WM_SPAWNED && WEFT_UNLIKELY(atomic_load(&p->hold_spawned))) {
            p->held = true;
            p->held_m = m;
            p->held_fds[0] = nfds > 0 ? fds[0] : -1;
            p->held_nfds = nfds;
            return;
        }
        if (m.type == WM_SPAWNED) {
            on_spawned(p, &m, fds, nfds);
        } else if (m.type == WM_EXITED) {
            on_exit_msg(p, &m);
        }
        for (int k = 0; k < nfds; k++)
            if (fds[k] >= 0)
                close(fds[k]);
        if (p->conn < 0)
            return;
    }
}

/* ---- cancelling ---------------------------------------------------------------------- */

/* Revoke job j if no worker has claimed it yet. */
static bool job_revoke(struct weft_proc_pool *p, uint32_t j)
{
    struct wp_job *job = &wp_jobs(&p->v)[j];
    uint64_t s = atomic_load(&job->state);
    if (WJ_ST(s) != WJ_QUEUED || WJ_GEN(s) != p->jl[j].gen)
        return false;
    return atomic_compare_exchange_strong(&job->state, &s, WJ_MAKE(WJ_GEN(s), 0, WJ_REVOKED));
}

static void fail_pending(struct weft_proc_pool *p, int err)
{
    weft_mutex_lock(&p->lock);
    struct ptask *t = p->phead;
    p->phead = p->ptail = NULL;
    atomic_store(&p->npending, 0);
    weft_mutex_unlock(&p->lock);
    while (t) {
        struct ptask *nx = t->next;
        if (t->kind == WK_CALL) {
            if (t->arena)
                weft__arena_free(&p->v, t->arena - 1, WP_OWN_PARENT);
            weft_future_set_error(t->f, err);
            weft_future_release(t->f);
        } else {
            struct pmap *m = t->map;
            size_t from = m->next, n = m->n;
            m->next = n;
            for (size_t i = from; i < n; i++)
                map_outcome(&p->v, m, i, err, NULL, 0, 0); /* m may be freed after the last */
        }
        free(t);
        t = nx;
    }
}

static void revoke_all(struct weft_proc_pool *p, int err)
{
    for (uint32_t j = 0; j < WP_JOBS; j++) {
        if (p->jl[j].retry_pending) {
            p->jl[j].retry_pending = false;
            p->nretry--;
            fail_job(p, j, err);
        } else if (p->jl[j].kind && job_revoke(p, j)) {
            fail_job(p, j, err);
        }
    }
}

/* Chunks of cancelled maps (a freed iterator) that are published but not
 * claimed: revoked and failed with -ECANCELED, as the chunks not yet
 * published are in dispatch (before, they all ran before iter_free
 * returned). Dispatcher only. */
static void revoke_cancelled_maps(struct weft_proc_pool *p)
{
    if (!atomic_exchange(&p->map_cancels, false))
        return;
    for (uint32_t j = 0; j < WP_JOBS; j++) {
        struct jlocal *l = &p->jl[j];
        if (l->kind != WK_MAP || !atomic_load(&l->map->cancel))
            continue;
        if (l->retry_pending) {
            l->retry_pending = false;
            p->nretry--;
            fail_job(p, j, -ECANCELED);
        } else if (job_revoke(p, j)) {
            fail_job(p, j, -ECANCELED);
        }
    }
}

static void set_broken(struct weft_proc_pool *p, int err)
{
    weft_mutex_lock(&p->lock);
    if (!p->broken)
        p->broken = err;
    weft_mutex_unlock(&p->lock);
    fail_pending(p, err);
    revoke_all(p, err);
    atomic_store(&p->h->closing, 1);
    atomic_fetch_add(&p->h->sq_seq, 1);
    weft__futex_wake(&p->h->sq_seq, INT32_MAX, true);
}

static int cancel_one(struct weft_proc_pool *p, weft_future_t *f, bool kill)
{
    /* Still in the pending list? */
    weft_mutex_lock(&p->lock);
    struct ptask **pp = &p->phead, *prev = NULL;
    while (*pp && !((*pp)->kind == WK_CALL && (*pp)->f == f)) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    struct ptask *t = *pp;
    if (t) {
        *pp = t->next;
        if (p->ptail == t)
            p->ptail = prev;
        atomic_fetch_sub(&p->npending, 1);
    }
    weft_mutex_unlock(&p->lock);
    if (t) {
        if (t->arena)
            weft__arena_free(&p->v, t->arena - 1, WP_OWN_PARENT);
        weft_future_set_error(f, -ECANCELED);
        weft_future_release(t->f);
        free(t);
        return 0;
    }
    for (uint32_t j = 0; j < WP_JOBS; j++) {
        if (p->jl[j].kind != WK_CALL || p->jl[j].f != f)
            continue;
        if (p->jl[j].retry_pending) {
            p->jl[j].retry_pending = false;
            p->nretry--;
            fail_job(p, j, -ECANCELED);
            return 0;
        }
        if (job_revoke(p, j)) {
            fail_job(p, j, -ECANCELED);
            return 0;
        }
        uint64_t s = atomic_load(&wp_jobs(&p->v)[j].state);
        if (WJ_ST(s) == WJ_CLAIMED) {
            if (!kill)
                return -EBUSY;
            if (p->jl[j].kill_reason)
                return 0; /* being killed already */
            int i = 0;
            while (i < p->nworkers && p->w[i].tag != WJ_TAG(s))
                i++;
            if (i == p->nworkers) {
                /* No worker has that tag (cannot happen: a dead worker's
                 * jobs fail before it is replaced). */
                p->jl[j].kill_reason = -ECANCELED;
                return 0;
            }
            /* Not killed: it finished meanwhile (its result delivered). */
            return kill_running(p, i, j, p->jl[j].gen, -ECANCELED) ? 0 : -EALREADY;
        }
    }
    return weft_future_done(f) ? -EALREADY : -ENOENT;
}

static void serve_requests(struct weft_proc_pool *p)
{
    weft_mutex_lock(&p->lock);
    struct creq *r = p->creqs;
    p->creqs = NULL;
    weft_mutex_unlock(&p->lock);
    while (r) {
        struct creq *nx = r->next;
        r->result = cancel_one(p, r->f, r->kill);
        weft_event_set(&r->done);
        r = nx;
    }
}

/* ---- dispatching ---------------------------------------------------------------------- */

static void publish(struct weft_proc_pool *p, uint32_t j, weft_proc_fn fn, uint64_t off,
                    size_t len, size_t item_size, uint32_t n, int kind, uint32_t first)
{
    struct wp_hdr *h = p->h;
    struct wp_job *job = &wp_jobs(&p->v)[j];
    struct jlocal *l = &p->jl[j];
    l->gen++;
    job->fn = (uint64_t)(uintptr_t)fn;
    job->arg_off = off;
    job->arg_len = len;
    job->item_size = item_size;
    job->nitems = n;
    job->kind = (uint32_t)kind;
    job->first = first;
    /* release: the descriptor above before the state a worker claims by. */
    atomic_store_explicit(&job->state, WJ_MAKE(l->gen, 0, WJ_QUEUED), memory_order_release);
    uint64_t t = atomic_load_explicit(&h->q_tail, memory_order_relaxed);
    uint64_t e = ((uint64_t)(uint32_t)t << 32) | ((uint64_t)(l->gen & 0xffff) << 16) | j;
    atomic_store_explicit(&wp_queue(&p->v)[t % WP_JOBS], e, memory_order_release);
    /* seq_cst: the tail is what sleeping workers re-check (see worker.c). */
    atomic_store(&h->q_tail, t + 1);
}

/* Room for one more queue entry: the cell at the tail must have been passed
 * by the head. Help the head past entries already claimed or revoked. */
static bool queue_room(struct weft_proc_pool *p)
{
    struct wp_hdr *h = p->h;
    for (;;) {
        uint64_t head = atomic_load(&h->q_head), tail = atomic_load(&h->q_tail);
        if (tail - head < WP_JOBS)
            return true;
        uint64_t e = atomic_load(&wp_queue(&p->v)[head % WP_JOBS]);
        uint32_t j = (uint32_t)(e & 0xffff);
        /* j < WP_JOBS unless a task wrote over the queue: then the cell
         * names no job, and the head moves past it. */
        uint64_t s = j < WP_JOBS ? atomic_load(&wp_jobs(&p->v)[j].state) : 0;
        if (WJ_ST(s) == WJ_QUEUED && (WJ_GEN(s) & 0xffff) == ((e >> 16) & 0xffff))
            return false;
        atomic_compare_exchange_strong(&h->q_head, &head, head + 1);
    }
}

/* Place an argument: the ring if small, else the arena. Returns 0, or -1 if
 * there is no room now. */
static int place(struct weft_proc_pool *p, struct jlocal *l, const void *src, size_t len,
                 uint64_t *off)
{
    l->ring_rec = -1;
    l->arena = 0;
    if (len <= p->v.inline_max) {
        int r = ar_alloc(p, len, off);
        if (r < 0)
            return -1;
        l->ring_rec = r;
    } else {
        uint64_t a = weft__arena_alloc(&p->v, len, WP_OWN_PARENT);
        if (!a)
            return -1;
        l->arena = a + 1;
        *off = a;
    }
    if (len)
        memcpy(wp_at(&p->v, *off), src, len);
    return 0;
}

static int dispatch(struct weft_proc_pool *p)
{
    int published = p->nretry ? publish_retries(p) : 0;
    while (p->nfree > 0 && atomic_load(&p->npending) > 0 && queue_room(p)) {
        weft_mutex_lock(&p->lock);
        struct ptask *t = p->phead;
        if (!t) {
            weft_mutex_unlock(&p->lock);
            break;
        }
        /* A map stays at the head of the list until its last chunk is
         * out (or it is cancelled); it is popped then, before anything
         * that may complete it: once its last item has an outcome, its
         * caller may free it. */
        if (t->kind == WK_CALL) {
            p->phead = t->next;
            if (!p->phead)
                p->ptail = NULL;
            atomic_fetch_sub(&p->npending, 1);
        }
        weft_mutex_unlock(&p->lock);
        uint32_t j = p->freelist[p->nfree - 1];
        struct jlocal *l = &p->jl[j];
        uint64_t off = 0;
        if (t->kind == WK_MAP) {
            struct pmap *m = t->map;
            bool cancel = atomic_load(&m->cancel);
            size_t k = m->chunk < m->n - m->next ? m->chunk : m->n - m->next;
            if (!cancel) {
                if (place(p, l, m->items + m->next * m->item_size, k * m->item_size, &off) < 0)
                    break;
                p->nfree--;
                p->injobs++;
                l->kind = WK_MAP;
                l->map = m;
                l->first = m->next;
                l->n = (uint32_t)k;
                l->timeout = p->timeout;
                publish(p, j, m->fn, off, k * m->item_size, m->item_size, (uint32_t)k, WK_MAP, 0);
                m->next += k;
                published++;
                if (m->next < m->n)
                    continue;
            }
            weft_mutex_lock(&p->lock);
            p->phead = t->next;
            if (!p->phead)
                p->ptail = NULL;
            atomic_fetch_sub(&p->npending, 1);
            weft_mutex_unlock(&p->lock);
            free(t);
            if (cancel) {
                size_t from = m->next, n = m->n;
                m->next = n;
                for (size_t i = from; i < n; i++)
                    map_outcome(&p->v, m, i, -ECANCELED, NULL, 0, 0); /* m may be freed after the last */
            }
            continue;
        }
        if (!t->running && weft_future_set_running(t->f) != 0) {
            /* Cancelled while pending (weft_future_cancel). */
            weft_future_release(t->f);
            if (t->arena)
                weft__arena_free(&p->v, t->arena - 1, WP_OWN_PARENT);
            free(t);
            continue;
        }
        t->running = true;
        if (t->arena) {
            l->ring_rec = -1;
            l->arena = t->arena;
            off = t->arena - 1;
        } else if (place(p, l, t->data, t->len, &off) < 0) {
            /* No room now: put it back at the front. */
            weft_mutex_lock(&p->lock);
            t->next = p->phead;
            p->phead = t;
            if (!p->ptail)
                p->ptail = t;
            atomic_fetch_add(&p->npending, 1);
            weft_mutex_unlock(&p->lock);
            /* It is RUNNING already; that only shows in weft_future_running. */
            break;
        }
        p->nfree--;
        p->injobs++;
        l->kind = WK_CALL;
        l->f = t->f;
        l->n = 1;
        l->timeout = t->timeout;
        publish(p, j, t->fn, off, t->len, t->len, 1, WK_CALL, 0);
        free(t);
        published++;
    }
    if (published) {
        struct wp_hdr *h = p->h;
        atomic_fetch_add(&h->sq_seq, 1); /* seq_cst, see worker.c */
        int sleeping = 0;
        for (int i = 0; i < p->nworkers; i++)
            sleeping += (int)atomic_load(&slot_of(p, i)->sleeping);
        if (sleeping)
            weft__futex_wake(&h->sq_seq, published < sleeping ? published : sleeping, true);
    }
    return published;
}

/* Kill workers whose job is past its deadline; returns the nearest future
 * deadline to wake up for (WEFT_FOREVER if none). */
static weft_time_t check_deadlines(struct weft_proc_pool *p)
{
    weft_time_t next = WEFT_FOREVER, now = weft_now();
    bool any_timed = false;
    for (int i = 0; i < p->nworkers; i++) {
        struct wp_slot *s = slot_of(p, i);
        uint64_t run = atomic_load(&s->running);
        if (!run)
            continue;
        uint32_t j = (uint32_t)(run & 0xffffffffu) - 1, gen = (uint32_t)(run >> 32);
        if (j >= WP_JOBS || p->jl[j].gen != gen || !p->jl[j].kind || p->jl[j].timeout <= 0 ||
            p->jl[j].kill_reason)
            continue;
        weft_time_t dl = atomic_load(&s->started) + p->jl[j].timeout;
        if (now >= dl) {
            uint64_t js = atomic_load(&wp_jobs(&p->v)[j].state);
            if (WJ_ST(js) == WJ_CLAIMED && WJ_GEN(js) == gen && WJ_TAG(js) == p->w[i].tag)
                kill_running(p, i, j, gen, -ETIMEDOUT);
        } else if (dl < next) {
            next = dl;
        }
    }
    for (uint32_t j = 0; j < WP_JOBS && !any_timed; j++)
        any_timed = p->jl[j].kind && p->jl[j].timeout > 0 && !p->jl[j].kill_reason;
    /* A queued job with a deadline may start at any moment without telling
     * us: look again soon. */
    if (any_timed && next > now + 5000000)
        next = now + 5000000;
    return next;
}

static void apply_shutdown(struct weft_proc_pool *p)
{
    weft_mutex_lock(&p->lock);
    bool shut = p->shut;
    unsigned how = p->how;
    weft_mutex_unlock(&p->lock);
    if (!shut)
        return;
    if ((how & (WEFT_PROC_CANCEL_PENDING | WEFT_PROC_TERMINATE)) && !p->cancelled_all) {
        p->cancelled_all = true;
        fail_pending(p, -ECANCELED);
        revoke_all(p, -ECANCELED);
    }
    if ((how & WEFT_PROC_TERMINATE) && !p->terminated) {
        p->terminated = true;
        struct wp_job *jobs = wp_jobs(&p->v);
        for (uint32_t j = 0; j < WP_JOBS; j++) {
            uint64_t s = atomic_load(&jobs[j].state);
            if (p->jl[j].kind && WJ_ST(s) == WJ_CLAIMED && !p->jl[j].kill_reason)
                p->jl[j].kill_reason = -ECANCELED;
        }
        weft_mutex_lock(&p->lock);
        for (int i = 0; i < p->nworkers; i++)
            if (p->w[i].alive && p->w[i].pidfd >= 0)
                syscall(SYS_pidfd_send_signal, p->w[i].pidfd, SIGKILL, NULL, 0);
        weft_mutex_unlock(&p->lock);
    }
    if (atomic_load(&p->npending) == 0 && !atomic_load(&p->h->closing)) {
        atomic_store(&p->h->closing, 1);
        atomic_fetch_add(&p->h->sq_seq, 1);
        weft__futex_wake(&p->h->sq_seq, INT32_MAX, true);
    }
}

static bool all_gone(struct weft_proc_pool *p)
{
    weft_mutex_lock(&p->lock);
    bool gone = true;
    for (int i = 0; i < p->nworkers; i++)
        gone &= !p->w[i].alive && !p->w[i].spawning;
    weft_mutex_unlock(&p->lock);
    return gone;
}

static bool anything_to_do(struct weft_proc_pool *p, uint32_t poke_seen)
{
    if (atomic_load(&p->poke) != poke_seen)
        return true;
    if (atomic_load(&p->npending) && p->nfree)
        return true;
    for (int i = 0; i < p->nworkers; i++) {
        struct wp_slot *s = slot_of(p, i);
        if (!p->w[i].bad && atomic_load(&s->cq_tail) != atomic_load(&s->cq_head))
            return true;
        uint32_t sst = atomic_load(&s->state);
        if (!p->start_done && sst != WS_STARTING && sst != WS_INIT)
            return true;
    }
    return false;
}

static void *dispatcher_main(void *arg)
{
    struct weft_proc_pool *p = arg;
    struct wp_hdr *h = p->h;
    weft_thread_set_name("weft-procdisp");
    for (int i = 0; i < p->nworkers; i++)
        if (spawn(p, i) < 0 && !p->start_err)
            p->start_err = -ECHILD;
    int idle = 0;
    for (;;) {
        uint32_t poke_seen = atomic_load(&p->poke);
        bool progress = false;
        if (p->conn >= 0)
            read_server(p, &progress);
        for (int i = 0; i < p->nworkers; i++)
            progress |= drain_slot(p, i);
        serve_requests(p);
        revoke_cancelled_maps(p);
        if (!p->start_done) {
            int ready = 0;
            for (int i = 0; i < p->nworkers; i++) {
                uint32_t st = atomic_load(&slot_of(p, i)->state);
                ready += st == WS_READY;
                if (st == WS_INITFAIL && !p->start_err)
                    p->start_err = WEFT_EINITFAILED;
            }
            if (p->start_err || ready == p->nworkers) {
                p->start_done = true;
                if (p->start_err) {
                    weft_mutex_lock(&p->lock);
                    p->shut = true;
                    p->how |= WEFT_PROC_TERMINATE;
                    weft_mutex_unlock(&p->lock);
                }
                weft_event_set(&p->started);
            }
        }
        apply_shutdown(p);
        if (p->start_done)
            progress |= dispatch(p) > 0;
        /* Respawn slots whose spawn failed, once their delay has passed. */
        weft_time_t next = check_deadlines(p), now = weft_now();
        if (p->start_done && !p->terminated && !p->broken && !atomic_load(&h->closing))
            for (int i = 0; i < p->nworkers; i++) {
                if (p->w[i].alive || p->w[i].spawning || !p->w[i].respawn_at)
                    continue;
                if (now >= p->w[i].respawn_at)
                    spawn(p, i);
                else if (p->w[i].respawn_at < next)
                    next = p->w[i].respawn_at;
            }
        weft_mutex_lock(&p->lock);
        bool shut = p->shut;
        weft_mutex_unlock(&p->lock);
        if (shut && atomic_load(&p->npending) == 0 && p->injobs == 0 && all_gone(p)) {
            /* Maps whose undispatched chunks were dropped at shutdown are
             * finished by fail_pending; nothing else can be left but
             * cancel requests. weft_proc_cancel queues one only while
             * finished is clear, under the lock: set it under the lock
             * too, after a last look, or a request queued since
             * serve_requests above would never be answered (its caller
             * would wait for ever). */
            weft_mutex_lock(&p->lock);
            bool reqs = p->creqs != NULL;
            if (!reqs)
                weft_event_set(&p->finished);
            weft_mutex_unlock(&p->lock);
            if (!reqs)
                return NULL;
            continue;
        }
        if (progress) {
            idle = 0;
            continue;
        }
        if (++idle < 50) {
            weft__cpu_relax();
            continue;
        }
        /* Sleep: announce, re-check, poll. */
        atomic_store(&h->disp_sleeping, 1);
        if (anything_to_do(p, poke_seen)) {
            atomic_store(&h->disp_sleeping, 0);
            continue;
        }
        int ms = -1;
        if (next != WEFT_FOREVER) {
            weft_time_t d = next - weft_now();
            ms = d <= 0 ? 0 : (int)((d + 999999) / 1000000);
        }
        struct pollfd pf[2] = {{p->efd, POLLIN, 0}, {p->conn, POLLIN, 0}};
        if (WEFT_UNLIKELY(p->held) && (ms < 0 || ms > 10))
            ms = 10; /* the server is not read meanwhile: look at the hold again */
        poll(pf, p->conn >= 0 && !p->held ? 2 : 1, ms);
        atomic_store(&h->disp_sleeping, 0);
        uint64_t v;
        ssize_t r = read(p->efd, &v, sizeof v);
        (void)r;
        idle = 0;
    }
}

/* ---- creating and freeing --------------------------------------------------------------- */

static void pool_release_resources(struct weft_proc_pool *p)
{
    if (p->h)
        munmap(p->h, p->map_size);
    if (p->memfd >= 0)
        close(p->memfd);
    if (p->efd >= 0)
        close(p->efd);
    if (p->conn >= 0) {
        struct wp_msg m = {0};
        m.type = WM_BYE;
        weft__proc_send(p->conn, &m, NULL, 0);
        close(p->conn);
    }
    if (p->w)
        for (int i = 0; i < p->nworkers; i++)
            if (p->w[i].pidfd >= 0)
                close(p->w[i].pidfd);
    struct xrec *x = p->xrecs;
    while (x) {
        struct xrec *nx = x->next;
        weft_future_release(x->f);
        free(x);
        x = nx;
    }
    struct ubuf *u = p->ubufs;
    while (u) {
        struct ubuf *nx = u->next;
        free(u);
        u = nx;
    }
    free(p->init_copy);
    free(p->w);
    free(p);
}

int weft_proc_pool_create(weft_proc_pool_t **out, const weft_proc_opts_t *opts)
{
    if (!out)
        return -EINVAL;
    if (!opts)
        opts = &g_default_opts;
    if (opts->workers < 0 || opts->workers > WEFT_PROC_MAX_WORKERS ||
        (opts->ring_size && opts->ring_size < 64 * 1024) ||
        opts->ring_size > ((size_t)1 << 30) || opts->init_arg_len > 64 * 1024 ||
        (!opts->init_arg && opts->init_arg_len) || opts->nshm < 0 ||
        opts->nshm > WP_MAX_SHM || (opts->nshm && !opts->shm) || opts->task_timeout_ns < 0 ||
        opts->arena_size > ((size_t)1 << 40))
        return -EINVAL;
    for (int k = 0; k < opts->nshm; k++)
        if (!opts->shm[k])
            return -EINVAL;
    int conn;
    int rc = weft__proc_server_connect(&conn);
    if (rc < 0)
        return rc;

    struct weft_proc_pool *p = calloc(1, sizeof *p);
    if (!p) {
        close(conn);
        return -ENOMEM;
    }
    p->memfd = p->efd = -1;
    p->conn = conn;
    p->nworkers = opts->workers ? opts->workers : env_workers();
    p->timeout = opts->task_timeout_ns;
    p->max_retries = opts->max_retries;
    p->w = calloc((size_t)p->nworkers, sizeof *p->w);
    if (!p->w) {
        rc = -ENOMEM;
        goto fail;
    }
    for (int i = 0; i < p->nworkers; i++)
        p->w[i].pidfd = -1;
    p->nshm = opts->nshm;
    for (int k = 0; k < opts->nshm; k++) {
        p->shm_fds[k] = weft__shm_fd(opts->shm[k]);
        p->rbase[k] = (uint64_t)(uintptr_t)weft_shm_base(opts->shm[k]);
        p->rsize[k] = weft_shm_size(opts->shm[k]);
    }

    /* Layout. */
    uint64_t ring = opts->ring_size ? align_up(opts->ring_size, 4096) : (1u << 20);
    uint64_t arena = opts->arena_size ? align_up(opts->arena_size, WP_PAGE) : ((uint64_t)64 << 20);
    uint32_t npages = (uint32_t)(arena / WP_PAGE);
    uint64_t off = align_up(sizeof(struct wp_hdr), 4096);
    uint64_t off_jobs = off;
    off = align_up(off + sizeof(struct wp_job) * WP_JOBS, 64);
    uint64_t off_queue = off;
    off = align_up(off + 8 * WP_JOBS, 64);
    uint64_t off_slots = off;
    off = align_up(off + sizeof(struct wp_slot) * (size_t)p->nworkers, 64);
    uint64_t off_owners = off;
    off = align_up(off + 4 * (uint64_t)npages, 64);
    uint64_t off_runlen = off;
    off = align_up(off + 4 * (uint64_t)npages, 64);
    uint64_t off_init = off;
    off = align_up(off + opts->init_arg_len + 1, 4096);
    uint64_t off_argring = off;
    off += ring;
    uint64_t off_cq = off;
    off += ring * (uint64_t)p->nworkers;
    off = align_up(off, WP_PAGE);
    uint64_t off_arena = off;
    off += arena;
    p->map_size = off;

    p->memfd = memfd_create("weft-proc", MFD_CLOEXEC);
    if (p->memfd < 0) {
        rc = errno == EMFILE || errno == ENFILE ? -EMFILE : -ENOMEM;
        goto fail;
    }
    if (ftruncate(p->memfd, (off_t)p->map_size) < 0) {
        rc = -ENOMEM;
        goto fail;
    }
    void *base = mmap(NULL, p->map_size, PROT_READ | PROT_WRITE, MAP_SHARED, p->memfd, 0);
    if (base == MAP_FAILED) {
        rc = -ENOMEM;
        goto fail;
    }
    p->h = base;
    p->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (p->efd < 0) {
        rc = errno == EMFILE || errno == ENFILE ? -EMFILE : -ENOMEM;
        goto fail;
    }
    p->v = (struct wp_view){(unsigned char *)base, p->map_size, ring, ring / 4, off_jobs,
                            off_queue, off_slots, off_argring, off_cq, off_owners, off_runlen,
                            off_arena, off_init, (uint32_t)p->nworkers, npages};
    p->init_fn = (uint64_t)(uintptr_t)opts->initializer;
    p->init_len = opts->initializer ? opts->init_arg_len : 0;
    if (p->init_len) {
        p->init_copy = malloc(p->init_len);
        if (!p->init_copy) {
            rc = -ENOMEM;
            goto fail;
        }
        memcpy(p->init_copy, opts->init_arg, p->init_len);
    }
    p->max_tasks = opts->max_tasks_per_worker;
    p->server_pid = weft_proc_server_pid();
    write_header(p);

    weft_mutex_init(&p->lock);
    weft_event_init(&p->started);
    weft_event_init(&p->finished);
    for (uint32_t j = 0; j < WP_JOBS; j++) {
        p->jl[j].ring_rec = -1;
        p->freelist[j] = WP_JOBS - 1 - j;
    }
    p->nfree = WP_JOBS;
    p->next_tag = 1;

    if (pthread_create(&p->disp, NULL, dispatcher_main, p) != 0) {
        rc = -EAGAIN;
        goto fail;
    }
    p->disp_started = true;
    weft__proc_pool_count(1);
    weft_event_wait(&p->started);
    if (p->start_err) {
        rc = p->start_err;
        weft_event_wait(&p->finished);
        pthread_join(p->disp, NULL);
        weft__proc_pool_count(-1);
        goto fail;
    }
    *out = p;
    return 0;
fail:
    pool_release_resources(p);
    return rc;
}

/* ---- submitting ----------------------------------------------------------------------------- */

static int push(struct weft_proc_pool *p, struct ptask *t)
{
    weft_mutex_lock(&p->lock);
    int rc = p->broken ? p->broken : p->shut ? -EPIPE : 0;
    if (rc == 0) {
        t->next = NULL;
        if (p->ptail)
            p->ptail->next = t;
        else
            p->phead = t;
        p->ptail = t;
        atomic_fetch_add(&p->npending, 1); /* seq_cst, see wake_dispatcher */
    }
    weft_mutex_unlock(&p->lock);
    if (rc == 0)
        wake_dispatcher(p);
    return rc;
}

static bool on_dispatcher(struct weft_proc_pool *p)
{
    return p->disp_started && pthread_equal(pthread_self(), p->disp);
}

int weft_proc_submit_ex(weft_proc_pool_t *p, weft_proc_fn fn, const void *arg, size_t len,
                        int64_t timeout_ns, unsigned flags, weft_future_t **out)
{
    bool shared = flags & WEFT_PROC_ARG_SHARED;
    uint64_t aoff = 0;
    if (p && shared && arg) {
        /* The pool owns a shared buffer from now on, even if we fail. */
        aoff = (uint64_t)((const char *)arg - (const char *)p->h);
        weft_mutex_lock(&p->lock);
        struct ubuf **pp = &p->ubufs;
        while (*pp && (*pp)->off != aoff)
            pp = &(*pp)->next;
        struct ubuf *u = *pp;
        if (u)
            *pp = u->next;
        weft_mutex_unlock(&p->lock);
        uint64_t have = u ? u->len : 0;
        free(u);
        if (!u)
            return -EINVAL;
        /* Not beyond the buffer: the worker would read other arena pages. */
        if (!p || !fn || !out || (flags & ~1u) || timeout_ns < WEFT_PROC_NO_TIMEOUT ||
            len > have) {
            weft__arena_free(&p->v, aoff, WP_OWN_PARENT);
            return -EINVAL;
        }
    }
    if (!p || !fn || !out || (!arg && len) || (flags & ~1u) || timeout_ns < WEFT_PROC_NO_TIMEOUT ||
        (shared && !arg))
        return -EINVAL;
    if (!shared && len > (size_t)p->v.npages * WP_PAGE && len > p->v.inline_max)
        return -EMSGSIZE;
    struct ptask *t = malloc(sizeof *t + (shared ? 0 : len));
    if (!t) {
        if (shared)
            weft__arena_free(&p->v, aoff, WP_OWN_PARENT);
        return -ENOMEM;
    }
    memset(t, 0, sizeof *t);
    t->kind = WK_CALL;
    t->fn = fn;
    t->len = len;
    t->timeout = timeout_ns == 0 ? p->timeout : timeout_ns < 0 ? 0 : timeout_ns;
    if (shared)
        t->arena = aoff + 1;
    else if (len)
        memcpy(t->data, arg, len);
    weft_future_t *f;
    int rc = weft_future_create(&f);
    if (rc == 0) {
        weft_future_retain(f);
        t->f = f;
        rc = push(p, t);
        if (rc == 0) {
            *out = f;
            return 0;
        }
        weft_future_release(f);
        weft_future_release(f);
    }
    if (shared)
        weft__arena_free(&p->v, aoff, WP_OWN_PARENT);
    free(t);
    return rc;
}

int weft_proc_submit(weft_proc_pool_t *p, weft_proc_fn fn, const void *arg, size_t len,
                     weft_future_t **out)
{
    return weft_proc_submit_ex(p, fn, arg, len, 0, 0, out);
}

int weft_proc_buf_alloc(weft_proc_pool_t *p, size_t len, void **buf)
{
    if (buf)
        *buf = NULL;
    if (!p || !buf || len == 0)
        return -EINVAL;
    if (len > (size_t)p->v.npages * WP_PAGE)
        return -EMSGSIZE;
    struct ubuf *u = malloc(sizeof *u);
    if (!u)
        return -ENOMEM;
    uint64_t off = weft__arena_alloc(&p->v, len, WP_OWN_PARENT);
    if (!off) {
        free(u);
        return -ENOMEM;
    }
    u->off = off;
    u->len = len;
    weft_mutex_lock(&p->lock);
    u->next = p->ubufs;
    p->ubufs = u;
    weft_mutex_unlock(&p->lock);
    *buf = wp_at(&p->v, off);
    return 0;
}

int weft_proc_buf_free(weft_proc_pool_t *p, void *buf)
{
    if (!p || !buf)
        return -EINVAL;
    uint64_t off = (uint64_t)((char *)buf - (char *)p->h);
    weft_mutex_lock(&p->lock);
    struct ubuf **pp = &p->ubufs;
    while (*pp && (*pp)->off != off)
        pp = &(*pp)->next;
    struct ubuf *u = *pp;
    if (u)
        *pp = u->next;
    weft_mutex_unlock(&p->lock);
    if (!u)
        return -EINVAL;
    free(u);
    weft__arena_free(&p->v, off, WP_OWN_PARENT);
    return 0;
}

int weft_proc_result(weft_future_t *f, const void **data, size_t *len)
{
    if (data)
        *data = NULL;
    if (len)
        *len = 0;
    if (!f)
        return -EINVAL;
    void *v = NULL;
    int rc = weft_future_get(f, &v);
    if (rc == 0 && v) {
        weft_proc_bytes_t *b = v;
        if (data)
            *data = b->data;
        if (len)
            *len = b->len;
    }
    return rc;
}

int weft_proc_cancel(weft_proc_pool_t *p, weft_future_t *f, bool kill_running)
{
    if (!p || !f)
        return -EINVAL;
    if (on_dispatcher(p))
        return cancel_one(p, f, kill_running);
    struct creq r = {0};
    r.f = f;
    r.kill = kill_running;
    weft_event_init(&r.done);
    weft_mutex_lock(&p->lock);
    bool gone = weft_event_is_set(&p->finished);
    if (!gone) {
        r.next = p->creqs;
        p->creqs = &r;
    }
    weft_mutex_unlock(&p->lock);
    if (gone)
        return weft_future_done(f) ? -EALREADY : -ENOENT;
    poke(p);
    weft_event_wait(&r.done);
    return r.result;
}

/* ---- map ---------------------------------------------------------------------------------- */

static int map_start(struct weft_proc_pool *p, weft_proc_fn fn, const void *items,
                     size_t item_size, size_t n, void *results, size_t result_size,
                     int *errors, size_t chunksize, bool unordered, struct pmap **out)
{
    if (!p || !fn || (n && (!items || !item_size)) || (result_size && !results))
        return -EINVAL;
    if (n > 0 && item_size > SIZE_MAX / n)
        return -EINVAL;
    if (chunksize == 0) {
        size_t d = (size_t)p->nworkers * 4;
        chunksize = n / d + (n % d != 0);
        if (chunksize == 0)
            chunksize = 1;
    }
    if (chunksize > UINT32_MAX / 2)
        chunksize = UINT32_MAX / 2;
    size_t ck = chunksize < n ? chunksize : n;
    if (ck && ck * item_size > p->v.inline_max &&
        ck * item_size > (size_t)p->v.npages * WP_PAGE)
        return -EMSGSIZE;
    struct pmap *m = calloc(1, sizeof *m);
    if (!m)
        return -ENOMEM;
    m->pool = p;
    m->fn = fn;
    m->items = items;
    m->item_size = item_size;
    m->n = n;
    m->chunk = chunksize;
    m->results = results;
    m->result_size = result_size;
    m->errors = errors;
    m->unordered = unordered;
    m->remaining = n;
    if (!errors) {
        m->errors = calloc(n ? n : 1, sizeof(int));
        m->own_errors = true;
        if (!m->errors) {
            free(m);
            return -ENOMEM;
        }
    }
    weft_event_init(&m->done);
    weft_mutex_init(&m->qlock);
    weft_sem_init(&m->avail, 0);
    if (n == 0) {
        weft_event_set(&m->done);
        *out = m;
        return 0;
    }
    struct ptask *t = calloc(1, sizeof *t);
    if (!t) {
        if (m->own_errors)
            free(m->errors);
        free(m);
        return -ENOMEM;
    }
    t->kind = WK_MAP;
    t->map = m;
    int rc = push(p, t);
    if (rc < 0) {
        free(t);
        if (m->own_errors)
            free(m->errors);
        free(m);
        return rc;
    }
    *out = m;
    return 0;
}

static void map_free(struct pmap *m)
{
    struct ires *r = m->qhead;
    while (r) {
        struct ires *nx = r->next;
        free(r);
        r = nx;
    }
    if (m->own_errors)
        free(m->errors);
    free(m);
}

int weft_proc_map(weft_proc_pool_t *p, weft_proc_fn fn, const void *items, size_t item_size,
                  size_t n, void *results, size_t result_size, int *errors, size_t chunksize)
{
    struct pmap *m;
    if (p && on_dispatcher(p))
        return -EDEADLK;
    int rc = map_start(p, fn, items, item_size, n, results, result_size, errors, chunksize,
                       false, &m);
    if (rc < 0)
        return rc;
    weft_event_wait(&m->done);
    rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = m->errors[i];
    map_free(m);
    return rc;
}

struct weft_proc_iter {
    struct pmap *m;
    size_t yielded;
    struct ires *cur;
};

int weft_proc_imap_unordered(weft_proc_pool_t *p, weft_proc_fn fn, const void *items,
                             size_t item_size, size_t n, size_t chunksize, weft_proc_iter_t **out)
{
    if (!out)
        return -EINVAL;
    struct weft_proc_iter *it = calloc(1, sizeof *it);
    if (!it)
        return -ENOMEM;
    int rc = map_start(p, fn, items, item_size, n, NULL, 0, NULL, chunksize, true, &it->m);
    if (rc < 0) {
        free(it);
        return rc;
    }
    *out = it;
    return 0;
}

int weft_proc_iter_next(weft_proc_iter_t *it, size_t *index, int *err, const void **data,
                        size_t *len, weft_time_t deadline)
{
    if (!it || deadline < 0)
        return -EINVAL;
    free(it->cur);
    it->cur = NULL;
    if (it->yielded >= it->m->n)
        return -EPIPE;
    int rc = weft_sem_acquire_until(&it->m->avail, deadline);
    if (rc < 0)
        return rc;
    weft_mutex_lock(&it->m->qlock);
    struct ires *r = it->m->qhead;
    if (r) {
        it->m->qhead = r->next;
        if (!it->m->qhead)
            it->m->qtail = NULL;
    }
    weft_mutex_unlock(&it->m->qlock);
    if (!r) {
        /* An outcome that could not be queued (out of memory): the item
         * is lost to the iterator, not the count. */
        it->yielded++;
        return -ENOMEM;
    }
    it->cur = r;
    it->yielded++;
    if (index)
        *index = r->index;
    if (err)
        *err = r->err;
    if (data)
        *data = r->err == 0 ? r->data : NULL;
    if (len)
        *len = r->len;
    return 0;
}

int weft_proc_iter_free(weft_proc_iter_t *it)
{
    if (!it)
        return -EINVAL;
    atomic_store(&it->m->cancel, true);
    atomic_store(&it->m->pool->map_cancels, true);
    poke(it->m->pool);
    weft_event_wait(&it->m->done);
    free(it->cur);
    map_free(it->m);
    free(it);
    return 0;
}

/* ---- shutting down --------------------------------------------------------------------------- */

int weft_proc_shutdown(weft_proc_pool_t *p, unsigned how)
{
    if (!p || (how & ~7u))
        return -EINVAL;
    if ((how & WEFT_PROC_WAIT) && on_dispatcher(p))
        return -EDEADLK;
    weft_mutex_lock(&p->lock);
    p->shut = true;
    p->how |= how;
    weft_mutex_unlock(&p->lock);
    poke(p);
    if (how & WEFT_PROC_WAIT)
        weft_event_wait(&p->finished);
    return 0;
}

int weft_proc_pool_free(weft_proc_pool_t *p)
{
    if (!p)
        return -EINVAL;
    if (on_dispatcher(p))
        return -EDEADLK;
    weft_proc_shutdown(p, WEFT_PROC_WAIT);
    pthread_join(p->disp, NULL);
    weft__proc_pool_count(-1);
    pool_release_resources(p);
    return 0;
}

/* ---- looking inside ---------------------------------------------------------------------------- */

int weft_proc_exit_info(weft_proc_pool_t *p, const weft_future_t *f, weft_proc_exit_t *out)
{
    if (!p || !f || !out)
        return -EINVAL;
    int rc = -ENOENT;
    weft_mutex_lock(&p->lock);
    for (struct xrec *x = p->xrecs; x; x = x->next)
        if (x->f == f) {
            *out = x->info;
            rc = 0;
            break;
        }
    weft_mutex_unlock(&p->lock);
    return rc;
}

int weft_proc_last_exit(weft_proc_pool_t *p, weft_proc_exit_t *out)
{
    if (!p || !out)
        return -EINVAL;
    weft_mutex_lock(&p->lock);
    int rc = p->has_last ? 0 : -ENOENT;
    if (p->has_last)
        *out = p->last_exit;
    weft_mutex_unlock(&p->lock);
    return rc;
}

int weft_proc_stats(weft_proc_pool_t *p, weft_proc_stats_t *out)
{
    if (!p || !out)
        return -EINVAL;
    weft_mutex_lock(&p->lock);
    *out = p->st;
    out->workers = p->nworkers;
    out->tasks_done = atomic_load_explicit(&p->tasks_done, memory_order_relaxed);
    weft_mutex_unlock(&p->lock);
    return 0;
}

int weft_proc_workers(weft_proc_pool_t *p) { return p ? p->nworkers : -EINVAL; }

int weft_proc_worker_pid(weft_proc_pool_t *p, int i)
{
    if (!p || i < 0 || i >= p->nworkers)
        return -EINVAL;
    weft_mutex_lock(&p->lock);
    int pid = p->w[i].alive ? p->w[i].pid : 0;
    if (!pid && p->w[i].spawning) {
        /* Its SPAWNED message is not read yet, but it may already run a
         * task: the worker says who it is in its slot, with the tag of this
         * spawn (an older worker's word has another tag). */
        uint64_t id = atomic_load(&slot_of(p, i)->ident);
        if ((uint32_t)(id >> 32) == p->w[i].tag && (int32_t)(uint32_t)id > 0)
            pid = (int)(uint32_t)id;
    }
    weft_mutex_unlock(&p->lock);
    return pid;
}

void weft__proc_hold_spawned(weft_proc_pool_t *p, bool hold)
{
    atomic_store(&p->hold_spawned, hold);
    poke(p);
}

int weft_proc_signal_worker(weft_proc_pool_t *p, int i, int sig)
{
    if (!p || i < 0 || i >= p->nworkers || sig <= 0 || sig >= 65)
        return -EINVAL;
    weft_mutex_lock(&p->lock);
    int rc = -ESRCH;
    if (p->w[i].alive && p->w[i].pidfd >= 0)
        rc = syscall(SYS_pidfd_send_signal, p->w[i].pidfd, sig, NULL, 0) == 0 ? 0 : -errno;
    weft_mutex_unlock(&p->lock);
    return rc;
}
