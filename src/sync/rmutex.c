/*
 * rmutex.c - weft_rmutex_t, the recursive mutex (threading.RLock).
 *
 * A weft_mutex_t plus a depth. The depth is touched only by the owner, and
 * ownership passes through the mutex, so the depth needs no atomics: every
 * write to it happens while the writer holds the mutex, and the mutex's
 * acquire/release orders it for the next owner. Recursion is detected by
 * comparing the mutex's owner field with the caller's id: only the owner
 * itself can ever find its own id there.
 */
#include "internal.h"

static inline bool owned_by_self(weft_rmutex_t *m)
{
    return atomic_load_explicit(WEFT_A64(&m->mutex.owner), memory_order_relaxed) ==
           weft__self_id();
}

int weft_rmutex_init(weft_rmutex_t *m)
{
    if (!m)
        return -EINVAL;
    weft_mutex_init(&m->mutex);
    m->depth = 0;
    m->_pad = 0;
    return 0;
}

int weft_rmutex_destroy(weft_rmutex_t *m)
{
    if (!m)
        return -EINVAL;
    return weft_mutex_destroy(&m->mutex);
}

/* The caller owns m already: one more level, unless that would wrap. */
static int relock(weft_rmutex_t *m)
{
    if (m->depth == UINT32_MAX)
        return -EOVERFLOW;
    m->depth++;
    return 0;
}

int weft_rmutex_lock(weft_rmutex_t *m)
{
    if (WEFT_UNLIKELY(!m))
        return -EINVAL;
    if (owned_by_self(m))
        return relock(m);
    int r = weft_mutex_lock(&m->mutex);
    if (r == 0)
        m->depth = 1;
    return r;
}

int weft_rmutex_lock_try(weft_rmutex_t *m)
{
    if (WEFT_UNLIKELY(!m))
        return -EINVAL;
    if (owned_by_self(m))
        return relock(m);
    int r = weft_mutex_lock_try(&m->mutex);
    if (r == 0)
        m->depth = 1;
    return r;
}

int weft_rmutex_lock_until(weft_rmutex_t *m, weft_time_t deadline)
{
    if (WEFT_UNLIKELY(!m || deadline < 0))
        return -EINVAL;
    if (owned_by_self(m))
        return relock(m);
    int r = weft_mutex_lock_until(&m->mutex, deadline);
    if (r == 0)
        m->depth = 1;
    return r;
}

int weft_rmutex_unlock(weft_rmutex_t *m)
{
    if (WEFT_UNLIKELY(!m))
        return -EINVAL;
    if (!owned_by_self(m))
        return -EPERM;
    if (--m->depth > 0)
        return 0;
    return weft_mutex_unlock(&m->mutex);
}
