/*
 * weft/thread.h - OS threads (Python's `threading.Thread`), thread-local
 * storage (`threading.local`), sleeping, and facts about the machine.
 *
 *   Python                          weft
 *   t = Thread(target=f, args=(a,)) weft_thread_start(&t, f, a, &opts)
 *       name=..., daemon=True       opts.name; weft_thread_detach(t)
 *   t.start(); t.join(timeout)      weft_thread_join / weft_thread_join_until
 *   threading.get_ident()           weft_thread_id()
 *   threading.current_thread().name weft_thread_get_name()
 *   threading.local()               weft_tls_key_t
 *   time.sleep(s)                   weft_sleep(s)
 *   os.process_cpu_count()          weft_cpu_count()
 *
 * Ownership: weft_thread_start allocates the handle. A successful
 * weft_thread_join frees it; weft_thread_detach hands it to the thread, which
 * frees it when it finishes. Exactly one of the two must be called for every
 * started thread, once; using the handle afterwards is undefined. A join that
 * times out leaves the handle valid, to be joined or detached later. Any
 * thread may join or detach a handle, but only one at a time: two threads
 * joining the same handle at once is undefined.
 *
 * A thread that is never joined nor detached keeps its handle and its
 * pthread resources (stack) until the process ends: a leak, as with an
 * unjoined pthread. Detached threads still running when the process exits
 * (main returns, exit() is called) are stopped wherever they are, with no
 * cleanup, no TLS destructors and no unwinding (Python's daemon threads).
 */
#ifndef WEFT_THREAD_H
#define WEFT_THREAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <weft/error.h>
#include <weft/time.h>
#include <weft/version.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weft_thread weft_thread_t;

/* The body of a thread. Its return value is handed to the joiner. */
typedef void *(*weft_thread_fn)(void *arg);

/* Options for weft_thread_start. A NULL options pointer, or a zeroed struct,
 * means: no name, the default stack size, no affinity. */
typedef struct weft_thread_opts {
    const char *name;    /* shown by `top -H`, `ps -L` and gdb; cut to 15
                            bytes (at a UTF-8 character boundary) as the
                            kernel keeps no more; copied, may be freed after
                            start; NULL = inherit the creator's name (Linux) */
    size_t stack_size;   /* bytes; 0 = default; otherwise at least 16 KiB
                            (rounded up to pages and to the system minimum) */
    const int *cpus;     /* CPUs to pin to (indices 0 .. configured CPUs - 1);
                            NULL = no pinning; applied before fn runs */
    size_t ncpus;        /* number of entries in cpus (> 0 when cpus is set) */
} weft_thread_opts_t;

/*
 * Start a thread running fn(arg). On success *out holds the handle.
 * Returns 0, -EINVAL (out or fn NULL, stack_size too small, a CPU index out
 * of range, ncpus without cpus or cpus without ncpus, or CPUs the kernel
 * refuses for this process, e.g. outside its cpuset), -EAGAIN (the system
 * refused another thread: thread limit, or no memory for the stack),
 * -ENOMEM. On failure fn never runs, nothing is leaked and *out is
 * untouched. Any thread may call.
 *
 * fn's return value goes to the joiner. A thread may also end with
 * pthread_exit(value) (the joiner gets value).
 */
WEFT_API int weft_thread_start(weft_thread_t **out, weft_thread_fn fn, void *arg,
                               const weft_thread_opts_t *opts);
/* Wait for the thread to finish; store its return value in *result if result
 * is not NULL, and free the handle. 0, -EDEADLK (a thread joining itself;
 * the handle stays valid), -EINVAL (t NULL). The wait is a park (inside a
 * coroutine it suspends only the coroutine) until the function has
 * returned; the final pthread_join then waits only for the thread's exit
 * path (its TLS destructors), which have all run when join returns. */
WEFT_API int weft_thread_join(weft_thread_t *t, void **result);
/* The same, waiting at most until deadline: -ETIMEDOUT leaves t valid (and
 * *result untouched), -EINVAL for a negative deadline. A deadline already
 * passed tries without waiting. In a cancelled coroutine the first finite
 * join of the task returns -ETIMEDOUT at once (it cannot say -ECANCELED:
 * docs/loop.md); weft_thread_join is not interrupted. */
WEFT_API int weft_thread_join_until(weft_thread_t *t, void **result, weft_time_t deadline);
/* Let the thread finish on its own; the handle is freed when it does (or
 * now, if it already has). Safe to call at any moment of the thread's life,
 * also by the thread itself. 0, -EINVAL (t NULL). */
WEFT_API int weft_thread_detach(weft_thread_t *t);
/* True once the thread's function has returned (Thread.is_alive's
 * negation); the thread's TLS destructors may still be running. False for
 * NULL. */
WEFT_API bool weft_thread_is_done(const weft_thread_t *t);

/* A number identifying the calling thread, unique for the life of the
 * process (never reused, unlike pthread_t or kernel ids) and never 0
 * (threading.get_ident). It is the id weft's mutexes record as owner for
 * code running directly on the thread; inside a coroutine it still names
 * the OS thread that runs the coroutine. */
WEFT_API uint64_t weft_thread_id(void);
/* The kernel thread id (threading.get_native_id). */
WEFT_API int weft_thread_native_id(void);
/* Name the calling thread: the first 15 bytes are kept, cut at a UTF-8
 * character boundary, so that weft_thread_get_name returns exactly what was
 * kept. Naming the main thread renames the process in `ps`. 0, -EINVAL
 * (name NULL). */
WEFT_API int weft_thread_set_name(const char *name);
/* Copy the calling thread's name into buf (NUL-terminated, truncated to
 * size). 0, -EINVAL (buf NULL or size 0). */
WEFT_API int weft_thread_get_name(char *buf, size_t size);
/* Give up the CPU to another runnable thread. */
WEFT_API void weft_thread_yield(void);

/* Sleep for a number of seconds / until a deadline. Inside a coroutine this
 * suspends only the coroutine. Never returns early; signals do not shorten
 * the sleep. A zero or past time returns at once without yielding (use
 * weft_thread_yield); +infinity / WEFT_FOREVER sleeps forever. 0, -EINVAL
 * (negative or NaN seconds, negative deadline); in a coroutine, -ECANCELED
 * if the task is cancelled while sleeping (never on a plain thread). */
WEFT_API int weft_sleep(double seconds);
WEFT_API int weft_sleep_until(weft_time_t deadline);

/* The CPUs this process may use: the process's affinity mask (its main
 * thread's, whatever thread asks: a pinned worker gets the same answer),
 * further limited by a cgroup CPU quota on the process's cgroup or any
 * ancestor (rounded up), never less than 1. The mask is read on each
 * call, the quota once. WEFT_WORKERS does not change it: this is a fact
 * about the machine, not a setting. */
WEFT_API int weft_cpu_count(void);
/* The system page size in bytes. */
WEFT_API size_t weft_page_size(void);

/*
 * Thread-local storage (threading.local). A key names one slot that every
 * thread has its own value in, initially NULL. When a thread that set a
 * non-NULL value exits, the key's destructor (if any) is called with that
 * value, in the exiting thread, exactly once (the value is cleared first).
 * This holds for every thread, weft-started or not, that ends by returning
 * or pthread_exit; not for the thread that calls exit() or returns from
 * main, as with pthread keys. A destructor may set values again; up to four
 * passes are made, then what remains is dropped.
 *
 * Any thread may create and delete keys; deleting a key does not run
 * destructors (as with pthread_key_delete) and makes every thread's value
 * under it unreachable: the caller frees them. Deleting a key while threads
 * holding values under it are exiting may or may not run their destructors.
 * A zeroed, deleted or never-created key is invalid: set and delete return
 * -EINVAL, get returns NULL (a new key never reuses a deleted key's id, up
 * to 2^17 create/delete cycles of one slot). Up to 16384 keys may be live at
 * once, independently of PTHREAD_KEYS_MAX (weft uses one pthread key).
 * For data known at compile time, C11 `_Thread_local` is simpler still.
 */
typedef struct weft_tls_key {
    uint32_t id; /* private */
} weft_tls_key_t;

/* Create a key whose values are passed to destructor (may be NULL) at
 * thread exit. 0, -EAGAIN (all keys in use, or the pthread key weft needs
 * could not be made), -EINVAL (key NULL). */
WEFT_API int weft_tls_create(weft_tls_key_t *key, void (*destructor)(void *value));
/* Delete a key. 0, -EINVAL (NULL or not a live key). */
WEFT_API int weft_tls_delete(weft_tls_key_t *key);
/* Set the calling thread's value (NULL clears it: no destructor then).
 * 0, -EINVAL (NULL or not a live key), -ENOMEM. */
WEFT_API int weft_tls_set(weft_tls_key_t *key, void *value);
/* The calling thread's value, or NULL (also for an invalid key). */
WEFT_API void *weft_tls_get(weft_tls_key_t *key);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_THREAD_H */
