/*
 * weft/shm.h - memory shared between processes, and the primitives that
 * live in it (multiprocessing's shared_memory, Value, Array, Lock,
 * Semaphore, Event and Queue).
 *
 *   Python (multiprocessing)            weft
 *   shared_memory.SharedMemory(size)    weft_shm_create(&r, size, "name")
 *   Value('i') / Array('d', n)          weft_shm_alloc(r, n * sizeof(double), 8)
 *   Lock() / RLock()                    weft_shm_mutex_t (robust: see below)
 *   Semaphore(n)                        weft_shm_sem_t
 *   Event()                             weft_shm_event_t
 *   Queue(maxsize)                      weft_shm_chan_t (fixed-size elements)
 *
 * A region is a memfd (nothing appears in /dev/shm) mapped MAP_SHARED.
 * Give it to a process pool (weft_proc_opts_t.shm) and every worker maps it
 * at the same address as the parent: pointers into the region are valid in
 * all of them. A region created before weft_proc_init() is also inherited
 * by every worker through the fork server. Processes made with plain fork()
 * inherit it as well.
 *
 * The primitives below work in any memory mapped MAP_SHARED (a region, or
 * an anonymous shared mapping inherited by fork). They block on
 * process-shared futexes directly: the parking lot of weft's in-process
 * primitives lives in one process's memory and cannot be used across
 * processes. Their state is plain integers: put them in shared memory,
 * initialise once (in one process), use from any thread of any process.
 * Do not copy them; do not put them in private memory if another process is
 * meant to see them (they still work, within one process).
 */
#ifndef WEFT_SHM_H
#define WEFT_SHM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <weft/error.h>
#include <weft/time.h>
#include <weft/version.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- regions ------------------------------------------------------------------ */

typedef struct weft_shm weft_shm_t;

/*
 * Create a shared region of size bytes (rounded up to the page size),
 * zero-filled, named name in /proc/<pid>/fd and /proc/<pid>/maps (may be
 * NULL). The first 64 bytes hold the region's allocation cursor
 * (weft_shm_alloc); the rest is yours.
 * 0; -EINVAL (out NULL, size 0 or above 1 TiB); -ENOMEM; -EMFILE.
 */
WEFT_API int weft_shm_create(weft_shm_t **out, size_t size, const char *name);

/* Unmap the region in this process and close it. Workers that mapped it
 * keep their mapping until they exit. Not while a pool that uses it is
 * alive. 0; -EINVAL. */
WEFT_API int weft_shm_free(weft_shm_t *r);

/* The region's address (the same in every worker of a pool it is attached
 * to) and its size in bytes. NULL / 0 for NULL. */
WEFT_API void *weft_shm_base(const weft_shm_t *r);
WEFT_API size_t weft_shm_size(const weft_shm_t *r);

/*
 * Carve size bytes aligned to align (a power of two up to 4096; 0 means 16)
 * out of the region: a bump allocator whose cursor lives in the region, so
 * any process may allocate (atomically). There is no free: a region is
 * meant to hold a program's shared objects for its lifetime. Returns the
 * memory (zero-filled, as the region was) or NULL if there is no room,
 * size is 0, or align is invalid. Any thread of any process.
 */
WEFT_API void *weft_shm_alloc(weft_shm_t *r, size_t size, size_t align);

/* The same, given the region's base address (what a worker knows). */
WEFT_API void *weft_shm_alloc_at(void *base, size_t size, size_t align);

/* ---- robust mutex -------------------------------------------------------------- */

/*
 * A mutex shared between processes. Robust: if the thread holding it dies
 * (its process crashed or was killed, or the thread exited), the next
 * thread to lock it gets it with -EOWNERDEAD: the data
 * it protects may be half updated. That thread repairs it and calls
 * weft_shm_mutex_consistent before unlocking; if it unlocks without doing
 * so, the mutex becomes unusable and every later lock returns
 * -ENOTRECOVERABLE (as POSIX robust mutexes do).
 *
 * How the death is noticed: the lock word holds the owner's thread id; a
 * waiter sleeps on a process-shared futex in slices of at most 50 ms and
 * after each slice checks that the owner thread still exists
 * (kill(tid, 0), and not a zombie). So a dead owner is noticed within about
 * 50 ms of a waiter's arrival. The check is by thread id: if the kernel
 * reused the dead owner's id for a new thread within that time (ids are
 * handed out cyclically, so this needs the whole id space to wrap), the
 * waiter would keep waiting until that thread ends.
 */
typedef struct weft_shm_mutex {
    uint32_t word;  /* private: owner tid | WAITERS | DEAD bits */
    uint32_t flags; /* private: NOTRECOVERABLE, INCONSISTENT */
} weft_shm_mutex_t;

#define WEFT_SHM_MUTEX_INIT { 0, 0 }

/* 0; -EINVAL. */
WEFT_API int weft_shm_mutex_init(weft_shm_mutex_t *m);
/*
 * Lock. 0; -EOWNERDEAD (locked, but the previous owner died holding it);
 * -ENOTRECOVERABLE (not locked: see above); -EDEADLK (the calling thread
 * holds it); -ETIMEDOUT (_until); -EAGAIN (_try, held by another); -EINVAL.
 */
WEFT_API int weft_shm_mutex_lock(weft_shm_mutex_t *m);
WEFT_API int weft_shm_mutex_lock_try(weft_shm_mutex_t *m);
WEFT_API int weft_shm_mutex_lock_until(weft_shm_mutex_t *m, weft_time_t deadline);
/* Mark a mutex obtained with -EOWNERDEAD consistent again. 0; -EPERM (not
 * held by the caller); -EINVAL (it was not inconsistent). */
WEFT_API int weft_shm_mutex_consistent(weft_shm_mutex_t *m);
/* Unlock. 0; -EPERM (the caller does not hold it); -EINVAL. */
WEFT_API int weft_shm_mutex_unlock(weft_shm_mutex_t *m);

/* ---- semaphore ------------------------------------------------------------------- */

/*
 * A counting semaphore shared between processes. Not robust (as in POSIX
 * and Python): units taken by a process that dies are not given back.
 */
typedef struct weft_shm_sem {
    uint32_t value;   /* private */
    uint32_t waiters; /* private */
} weft_shm_sem_t;

/* 0; -EINVAL (value above INT32_MAX). */
WEFT_API int weft_shm_sem_init(weft_shm_sem_t *s, unsigned value);
/* Take a unit. 0; -ETIMEDOUT (_until); -EAGAIN (_try); -EINVAL. */
WEFT_API int weft_shm_sem_acquire(weft_shm_sem_t *s);
WEFT_API int weft_shm_sem_acquire_try(weft_shm_sem_t *s);
WEFT_API int weft_shm_sem_acquire_until(weft_shm_sem_t *s, weft_time_t deadline);
/* Give n units back. 0; -EOVERFLOW (the value would pass INT32_MAX:
 * nothing changes); -EINVAL. */
WEFT_API int weft_shm_sem_release(weft_shm_sem_t *s, unsigned n);
/* The current value. 0 for NULL. */
WEFT_API unsigned weft_shm_sem_value(const weft_shm_sem_t *s);

/* ---- event -------------------------------------------------------------------------- */

typedef struct weft_shm_event {
    uint32_t state; /* private: generation << 1 | set */
    uint32_t waiters; /* private */
} weft_shm_event_t;

/* 0; -EINVAL. */
WEFT_API int weft_shm_event_init(weft_shm_event_t *e);
/* Set and wake every waiter. 0; -EINVAL. */
WEFT_API int weft_shm_event_set(weft_shm_event_t *e);
/* Clear. 0; -EINVAL. */
WEFT_API int weft_shm_event_clear(weft_shm_event_t *e);
/* False for NULL. */
WEFT_API bool weft_shm_event_is_set(const weft_shm_event_t *e);
/* 0 once set (or if it was set while waiting); -ETIMEDOUT; -EINVAL. */
WEFT_API int weft_shm_event_wait(weft_shm_event_t *e);
WEFT_API int weft_shm_event_wait_until(weft_shm_event_t *e, weft_time_t deadline);

/* ---- channel between processes ---------------------------------------------------- */

/*
 * A bounded FIFO of fixed-size elements between processes (a
 * multiprocessing.Queue of bytes). Lives entirely in shared memory: create
 * it with weft_shm_chan_size() bytes of a region and weft_shm_chan_init.
 * Any number of senders and receivers in any processes. A process that dies
 * in the middle of a send or receive leaves the channel usable (its lock is
 * robust; a half-copied element is counted as not sent), and one that dies
 * after its change but before waking the waiters delays them by at most
 * 50 ms: waits look again at least that often. The semaphore's and the
 * event's waits do the same.
 */
typedef struct weft_shm_chan weft_shm_chan_t;

/* Bytes needed for a channel of capacity elements of elem_size bytes;
 * 0 if either is 0 or the size would overflow. */
WEFT_API size_t weft_shm_chan_size(size_t capacity, size_t elem_size);
/* Initialise at mem (8-aligned, weft_shm_chan_size bytes). *out = mem.
 * 0; -EINVAL. */
WEFT_API int weft_shm_chan_init(void *mem, size_t capacity, size_t elem_size,
                                weft_shm_chan_t **out);
/* Send a copy of elem_size bytes at elem. 0; -EPIPE (closed); -ETIMEDOUT
 * (_until); -EAGAIN (_try, full); -EINVAL. */
WEFT_API int weft_shm_chan_send(weft_shm_chan_t *c, const void *elem);
WEFT_API int weft_shm_chan_send_try(weft_shm_chan_t *c, const void *elem);
WEFT_API int weft_shm_chan_send_until(weft_shm_chan_t *c, const void *elem,
                                      weft_time_t deadline);
/* Receive into elem. 0; -EPIPE (closed and empty); -ETIMEDOUT; -EAGAIN
 * (_try, empty); -EINVAL. */
WEFT_API int weft_shm_chan_recv(weft_shm_chan_t *c, void *elem);
WEFT_API int weft_shm_chan_recv_try(weft_shm_chan_t *c, void *elem);
WEFT_API int weft_shm_chan_recv_until(weft_shm_chan_t *c, void *elem, weft_time_t deadline);
/* Close: senders get -EPIPE, receivers drain then get -EPIPE. 0; -EINVAL. */
WEFT_API int weft_shm_chan_close(weft_shm_chan_t *c);
/* Elements queued now. 0 for NULL. */
WEFT_API size_t weft_shm_chan_len(const weft_shm_chan_t *c);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_SHM_H */
