/*
 * proc/internal.h - the process pool's shared-memory layout and the pieces
 * its three parties share: the parent's dispatcher (pool.c), the fork server
 * (server.c) and the workers (worker.c).
 *
 * One memfd per pool holds, at offsets recorded in its header:
 *
 *   header       configuration and the queue's head and tail
 *   jobs[J]      job descriptors; each has a state word
 *                (generation | claimer tag | FREE/QUEUED/CLAIMED/REVOKED)
 *   queue[J]     the shared queue: indices of QUEUED jobs, in order
 *   slots[W]     one per worker: its state, what it runs, its result ring's
 *                head and tail
 *   argring      argument bytes, allocated and freed by the dispatcher only
 *   cqring[W]    one result ring per worker (single producer: the worker;
 *                single consumer: the dispatcher)
 *   owners[P]    arena page owners (0 free, WP_OWN_PARENT, or a worker tag)
 *   runlen[P]    length in pages of the run starting at each page
 *   arena        P pages of 64 KiB for buffers too large for the rings
 *
 * Everything in the mapping is found by offsets, never by pointers, so a
 * worker may map it anywhere (it tries the parent's address first). The
 * user's weft_shm regions are different: they must be at the parent's
 * address, so that pointers into them mean the same everywhere.
 *
 * Why claims are compare-and-swaps on the job's state word, not a pop from
 * a queue: a worker can be killed at any instruction. After a CAS from
 * QUEUED to CLAIMED(tag), the job is recorded as the killed worker's;
 * before it, the job is still QUEUED for someone else. There is no window
 * in which a job is neither, so the dispatcher can always tell which task a
 * dead worker was running (the job CLAIMED with its tag) and which are
 * untouched. The queue's head only says where to look next; a worker that
 * finds the job at the head already claimed (or revoked) helps by moving the
 * head on, so a worker killed between its claim and its head update stalls
 * nobody.
 */
#ifndef WEFT_PROC_INTERNAL_H
#define WEFT_PROC_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <weft/proc.h>
#include <weft/shm.h>

#include "../platform/platform.h"

#define WP_MAGIC 0x77656674506f6f6cull /* "weftPool" */
#define WP_PAGE ((size_t)64 * 1024)    /* arena page */
#define WP_JOBS 1024u                  /* job slots = queue capacity (<= 65536) */
#define WP_MAX_SHM 16
#define WP_OWN_PARENT 0xffffffffu      /* arena pages owned by the parent */

/* Job states (low 8 bits of the state word). */
enum { WJ_FREE = 0, WJ_QUEUED = 1, WJ_CLAIMED = 2, WJ_REVOKED = 3 };
#define WJ_ST(s) ((uint32_t)((s)&0xff))
#define WJ_TAG(s) ((uint32_t)(((s) >> 8) & 0xffffff))
#define WJ_GEN(s) ((uint32_t)((s) >> 32))
#define WJ_MAKE(gen, tag, st) (((uint64_t)(gen) << 32) | ((uint64_t)(tag) << 8) | (uint64_t)(st))

/* Job kinds. */
enum { WK_CALL = 1, WK_MAP = 2 };

struct wp_job {
    _Atomic uint64_t state; /* WJ_MAKE(gen, claimer tag, state) */
    uint64_t fn;            /* the task function (same address everywhere) */
    uint64_t arg_off;       /* offset of the argument bytes in the mapping */
    uint64_t arg_len;       /* total argument bytes */
    uint64_t item_size;     /* map: bytes per item; call: arg_len */
    uint32_t nitems;        /* call: 1 */
    uint32_t kind;          /* WK_CALL or WK_MAP */
    uint32_t first;         /* the item to start at: 0, or after the items a
                               retried map chunk's earlier run reported */
    uint32_t pad32_;
    uint64_t pad_[1];
};

/* Worker slot states, written by the worker (STARTING by the dispatcher). */
enum {
    WS_EMPTY = 0,    /* no worker */
    WS_STARTING = 1, /* spawn requested */
    WS_READY = 2,    /* initializer done, taking work */
    WS_INITFAIL = 3, /* initializer failed; exiting */
    WS_RETIRED = 4,  /* max_tasks_per_worker reached; exiting */
    WS_EXITING = 5,  /* pool closing and queue empty; exiting */
    WS_INIT = 6,     /* running its initializer (written by the worker) */
};

struct wp_slot {
    /* Written by the worker. */
    _Atomic uint32_t state;    /* WS_* */
    _Atomic uint32_t tag;      /* tag of the worker meant for this slot (dispatcher) */
    _Atomic uint32_t sleeping; /* 1 while the worker waits for work */
    _Atomic int32_t init_err;  /* initializer's code when WS_INITFAIL */
    _Atomic uint64_t running;  /* (gen << 32) | (job + 1) while running a job, else 0 */
    _Atomic int64_t started;   /* weft_now() when it claimed that job */
    _Atomic uint64_t cq_tail;  /* bytes produced into its result ring */
    _Atomic uint32_t cq_wait;  /* 1 while the worker waits for ring space */
    uint32_t pad0_;
    _Atomic uint64_t ident;    /* (tag << 32) | pid, stored by the worker first
                                  thing: weft_proc_worker_pid before the
                                  dispatcher has read the worker's SPAWNED */
    uint8_t pad1_[64 - 56];
    /* Written by the dispatcher. */
    _Atomic uint64_t cq_head;  /* bytes consumed */
    _Atomic uint32_t cq_seq;   /* bumped when cq_head moves: futex word */
    _Atomic uint32_t doomed;   /* 1 while the dispatcher decides to kill it:
                                  it claims nothing new (see kill_running) */
    uint8_t pad2_[64 - 16];
};

struct wp_hdr {
    uint64_t magic;
    uint64_t total;          /* bytes of the mapping */
    uint32_t nworkers;
    uint32_t npages;         /* arena pages */
    uint64_t ring_size;      /* argument ring and each result ring */
    uint64_t inline_max;     /* larger buffers go through the arena */
    uint64_t off_jobs, off_queue, off_slots, off_argring, off_cq, off_owners, off_runlen,
        off_arena, off_init;
    uint64_t init_fn, init_len;
    uint64_t max_tasks;
    int32_t server_pid;      /* workers' parent, for their getppid() check */
    int32_t unused_;
    uint8_t pad0_[64];
    _Atomic uint64_t q_head; /* workers move it */
    uint8_t pad1_[56];
    _Atomic uint64_t q_tail; /* the dispatcher moves it */
    _Atomic uint32_t sq_seq; /* bumped after publishing jobs: workers' futex word */
    _Atomic uint32_t closing; /* workers exit when the queue is empty */
    uint8_t pad2_[48];
    _Atomic uint32_t disp_sleeping; /* the dispatcher is about to poll */
    uint8_t pad3_[60];
};

/* Result ring records. Every record is a multiple of 8 bytes and never
 * wraps: a PAD record fills the end of the ring when one does not fit. */
enum { WR_PAD = 1, WR_RESULTS = 2 };
struct wp_rec {
    uint32_t size;  /* bytes of the record, header included */
    uint32_t type;  /* WR_* */
    uint32_t job;   /* job index */
    uint32_t gen;   /* its generation */
    uint32_t first; /* index (within the job) of the first item here */
    uint32_t count; /* items in this record */
    uint32_t last;  /* 1: the job is finished */
    uint32_t pad_;
};
struct wp_item {
    int32_t status;    /* 0 or the task's error */
    uint32_t span;     /* bytes of this entry, header included */
    uint64_t len;      /* result bytes */
    uint64_t arena;    /* arena offset + 1 when the bytes are there, else 0 */
};

/* Messages on a pool's connection to the fork server (SOCK_SEQPACKET). */
enum { WM_NEWCONN = 1, WM_SPAWN = 2, WM_SPAWNED = 3, WM_EXITED = 4, WM_QUIT = 5, WM_BYE = 6 };
struct wp_msg {
    uint32_t type;
    uint32_t slot;
    uint32_t tag;
    int32_t pid;    /* SPAWNED: pid, or -errno; EXITED: pid */
    int32_t code;   /* EXITED: siginfo si_code (CLD_EXITED, CLD_KILLED, CLD_DUMPED) */
    int32_t status; /* EXITED: exit status or signal */
    uint32_t nfds;  /* SPAWN: memfd, eventfd, then one per region */
    uint32_t nshm;
    uint64_t base, size;
    uint64_t rbase[WP_MAX_SHM], rsize[WP_MAX_SHM];
};

/* Tests only: while hold is true, the pool's dispatcher keeps the fork
 * server's next SPAWNED message unread (and nothing after it), as if the
 * server were slow to send it; false lets it go on. */
void weft__proc_hold_spawned(weft_proc_pool_t *pool, bool hold);

/* Exit codes of a worker that could not start. */
#define WP_EXIT_MAPFAIL 120 /* a mapping was not free at its address */
#define WP_EXIT_BADMSG 121

/* The layout of a pool's mapping, as each process keeps it in its own
 * memory. The header holds the layout too, but the header is shared and a
 * task with a stray pointer may write over it: nothing is found through
 * the shared copy after start-up. The parent builds its view when it
 * creates the pool; a worker copies and checks the header once, before any
 * task runs. */
struct wp_view {
    unsigned char *base;
    uint64_t total, ring_size, inline_max;
    uint64_t off_jobs, off_queue, off_slots, off_argring, off_cq, off_owners, off_runlen,
        off_arena, off_init;
    uint32_t nworkers, npages;
};

/* Copy the layout from a header; false if it does not fit in total bytes
 * (or is otherwise impossible). */
static inline bool wp_view_init(struct wp_view *v, struct wp_hdr *h, uint64_t total)
{
    *v = (struct wp_view){(unsigned char *)h, h->total, h->ring_size, h->inline_max,
                          h->off_jobs, h->off_queue, h->off_slots, h->off_argring, h->off_cq,
                          h->off_owners, h->off_runlen, h->off_arena, h->off_init,
                          h->nworkers, h->npages};
    return v->total == total && v->ring_size >= 4096 && v->ring_size <= total &&
           v->inline_max <= v->ring_size && v->nworkers <= WEFT_PROC_MAX_WORKERS &&
           v->off_jobs + sizeof(struct wp_job) * WP_JOBS <= total &&
           v->off_queue + 8 * WP_JOBS <= total &&
           v->off_slots + sizeof(struct wp_slot) * (uint64_t)v->nworkers <= total &&
           v->off_owners + 4 * (uint64_t)v->npages <= total &&
           v->off_runlen + 4 * (uint64_t)v->npages <= total &&
           v->off_argring + v->ring_size <= total &&
           v->off_cq + v->ring_size * (uint64_t)v->nworkers <= total &&
           v->off_arena + (uint64_t)v->npages * WP_PAGE <= total && v->off_init <= total &&
           v->off_jobs % 64 == 0 && v->off_queue % 8 == 0 && v->off_slots % 64 == 0 &&
           v->off_owners % 4 == 0 && v->off_runlen % 4 == 0 && v->off_cq % 8 == 0 &&
           v->ring_size % 8 == 0;
}

static inline void *wp_at(const struct wp_view *v, uint64_t off) { return v->base + off; }
static inline struct wp_job *wp_jobs(const struct wp_view *v) { return wp_at(v, v->off_jobs); }
static inline _Atomic uint64_t *wp_queue(const struct wp_view *v) { return wp_at(v, v->off_queue); }
static inline struct wp_slot *wp_slots(const struct wp_view *v) { return wp_at(v, v->off_slots); }
static inline unsigned char *wp_cq(const struct wp_view *v, uint32_t i)
{
    return (unsigned char *)wp_at(v, v->off_cq) + (size_t)i * v->ring_size;
}
static inline _Atomic uint32_t *wp_owners(const struct wp_view *v) { return wp_at(v, v->off_owners); }
static inline uint32_t *wp_runlen(const struct wp_view *v) { return wp_at(v, v->off_runlen); }

/* A task's handle (weft_proc_task_t), in the worker. */
struct weft_proc_task {
    struct wp_hdr *h;
    const struct wp_view *v; /* the worker's private copy of the layout */
    uint32_t tag;
    /* The current result: in the scratch buffer (small) or an arena run. */
    size_t len;
    uint64_t arena; /* arena offset + 1, or 0 */
};

/* ---- arena (arena.c): lock-free page runs, owned by a tag ----------------- */

/* Allocate ceil(len / WP_PAGE) contiguous pages for owner. Returns the
 * offset (in the mapping) of the run, or 0 if there is no room. */
uint64_t weft__arena_alloc(const struct wp_view *v, size_t len, uint32_t owner);
/* Free the run at off (its first page must be owned by owner). */
void weft__arena_free(const struct wp_view *v, uint64_t off, uint32_t owner);
/* Free every page owned by owner (a dead worker's leftovers). */
void weft__arena_free_owner(const struct wp_view *v, uint32_t owner);
/* True if off is the start of a run owned by owner. */
bool weft__arena_is_run(const struct wp_view *v, uint64_t off, uint32_t owner);

/* ---- fork server (server.c) ------------------------------------------------ */

/* Give the fork server one end of a new connection for a pool. 0 or -errno. */
int weft__proc_server_connect(int *conn_fd);
/* Count pools alive (weft_proc_fini refuses while any exists). */
void weft__proc_pool_count(int delta);
/* Send msg with fds (nfds of them) on a SOCK_SEQPACKET socket. */
int weft__proc_send(int sock, const struct wp_msg *m, const int *fds, int nfds);
/* Receive one message and up to maxfds fds (unused slots set to -1).
 * Returns bytes received (0 at EOF) or -errno. */
ssize_t weft__proc_recv(int sock, struct wp_msg *m, int *fds, int maxfds, int *nfds, bool block);

/* ---- worker (worker.c) ------------------------------------------------------- */

/* The body of a worker process, called in the fork server's child. Never
 * returns. fds: as received with the SPAWN message. */
_Noreturn void weft__proc_worker_main(const struct wp_msg *m, const int *fds, int nfds,
                                      pid_t server);

/* ---- shm (shm.c) -------------------------------------------------------------- */
int weft__shm_fd(const struct weft_shm *s);

/* The channel in shared memory (shm_sync.c; here for the tests, which
 * play a process that dies in the middle of a send). */
struct weft_shm_chan {
    weft_shm_mutex_t lock;
    uint64_t capacity, elem_size;
    uint64_t head, tail;      /* elements received, sent (under lock) */
    uint32_t closed;          /* under lock */
    _Atomic uint32_t not_empty; /* bumped per send: receivers' futex word */
    _Atomic uint32_t not_full;  /* bumped per receive: senders' futex word */
    _Atomic uint32_t recv_waiting, send_waiting;
    uint32_t pad_;
    unsigned char buf[];
};

#endif /* WEFT_PROC_INTERNAL_H */
