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
 * times out leaves the handle valid, to be joined or detached later.
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
    const char *name;    /* shown by `top -H`, `ps -L` and gdb; truncated to 15
                            bytes by the kernel; copied, may be freed after start */
    size_t stack_size;   /* bytes; 0 = default; otherwise at least 16 KiB */
    const int *cpus;     /* CPUs to pin to (indices); NULL = no pinning */
    size_t ncpus;        /* number of entries in cpus */
} weft_thread_opts_t;

/*
 * Start a thread running fn(arg). On success *out holds the handle.
 * Returns 0, -EINVAL (out or fn NULL, stack_size too small, a CPU index out
 * of range, ncpus without cpus), -EAGAIN (the system refused another thread),
 * -ENOMEM. On failure fn never runs and *out is untouched.
 */
WEFT_API int weft_thread_start(weft_thread_t **out, weft_thread_fn fn, void *arg,
                               const weft_thread_opts_t *opts);
/* Wait for the thread to finish; store its return value in *result if result
 * is not NULL, and free the handle. 0, -EDEADLK (a thread joining itself),
 * -EINVAL. */
WEFT_API int weft_thread_join(weft_thread_t *t, void **result);
/* The same, waiting at most until deadline: -ETIMEDOUT leaves t valid. */
WEFT_API int weft_thread_join_until(weft_thread_t *t, void **result, weft_time_t deadline);
/* Let the thread finish on its own; the handle is freed when it does. 0,
 * -EINVAL. */
WEFT_API int weft_thread_detach(weft_thread_t *t);
/* True once the thread's function has returned (Thread.is_alive's negation). */
WEFT_API bool weft_thread_is_done(const weft_thread_t *t);

/* A number identifying the calling thread, unique for the life of the
 * process and never 0 (threading.get_ident). */
WEFT_API uint64_t weft_thread_id(void);
/* The kernel thread id (threading.get_native_id). */
WEFT_API int weft_thread_native_id(void);
/* Name the calling thread (15 bytes kept). 0, -EINVAL. */
WEFT_API int weft_thread_set_name(const char *name);
/* Copy the calling thread's name into buf (NUL-terminated, truncated to
 * size). 0, -EINVAL (buf NULL or size 0). */
WEFT_API int weft_thread_get_name(char *buf, size_t size);
/* Give up the CPU to another runnable thread. */
WEFT_API void weft_thread_yield(void);

/* Sleep for a number of seconds / until a deadline. Inside a coroutine this
 * suspends only the coroutine. 0, -EINVAL (negative or NaN). */
WEFT_API int weft_sleep(double seconds);
WEFT_API int weft_sleep_until(weft_time_t deadline);

/* The CPUs this process may use: the affinity mask, further limited by a
 * cgroup CPU quota (rounded up), never less than 1. WEFT_WORKERS does not
 * change it: this is a fact about the machine, not a setting. */
WEFT_API int weft_cpu_count(void);
/* The system page size in bytes. */
WEFT_API size_t weft_page_size(void);

/*
 * Thread-local storage (threading.local). A key names one slot that every
 * thread has its own value in, initially NULL. When a thread that set a
 * non-NULL value exits, the key's destructor (if any) is called with that
 * value, in the exiting thread. Any thread may create and delete keys;
 * deleting a key does not run destructors (as with pthread_key_delete).
 * For data known at compile time, C11 `_Thread_local` is simpler still.
 */
typedef struct weft_tls_key {
    uint32_t id; /* private */
} weft_tls_key_t;

/* 0, -EAGAIN (the system's keys are used up), -EINVAL. */
WEFT_API int weft_tls_create(weft_tls_key_t *key, void (*destructor)(void *value));
/* 0, -EINVAL (not a live key). */
WEFT_API int weft_tls_delete(weft_tls_key_t *key);
/* 0, -EINVAL, -ENOMEM. */
WEFT_API int weft_tls_set(weft_tls_key_t *key, void *value);
/* The calling thread's value, or NULL (also for an invalid key). */
WEFT_API void *weft_tls_get(weft_tls_key_t *key);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_THREAD_H */
