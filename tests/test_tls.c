/* weft_tls_key_t: per-thread values, destructors at thread exit (exactly
 * once per non-NULL value, in the exiting thread), delete, stale keys, more
 * keys than pthread offers, and concurrent create/delete. */
#define _GNU_SOURCE
#include <limits.h>
#include <stdatomic.h>
#include <weft.h>

#include "check.h"

/* A value whose destructor records how often and where it ran. */
struct tracked {
    _Atomic int destroyed;
    uint64_t owner;          /* weft_thread_id of the thread that set it */
    _Atomic int wrong_thread;
};

static void tracked_dtor(void *p)
{
    struct tracked *v = p;
    if (weft_thread_id() != v->owner)
        atomic_fetch_add(&v->wrong_thread, 1);
    atomic_fetch_add(&v->destroyed, 1);
}

static void test_bad_keys(void)
{
    weft_tls_key_t zero = {0};
    int x;
    CHECK_RC(weft_tls_create(NULL, NULL), -EINVAL);
    CHECK_RC(weft_tls_delete(NULL), -EINVAL);
    CHECK_RC(weft_tls_set(NULL, &x), -EINVAL);
    CHECK(weft_tls_get(NULL) == NULL);
    /* A zeroed key is never a live key. */
    CHECK_RC(weft_tls_set(&zero, &x), -EINVAL);
    CHECK(weft_tls_get(&zero) == NULL);
    CHECK_RC(weft_tls_delete(&zero), -EINVAL);
    weft_tls_key_t junk = {0xffffffffu};
    CHECK_RC(weft_tls_set(&junk, &x), -EINVAL);
    CHECK(weft_tls_get(&junk) == NULL);
    CHECK_RC(weft_tls_delete(&junk), -EINVAL);

    /* Deleted and stale keys. */
    weft_tls_key_t a, b;
    CHECK_OK(weft_tls_create(&a, NULL));
    CHECK(weft_tls_get(&a) == NULL); /* initially NULL */
    CHECK_OK(weft_tls_set(&a, &x));
    CHECK(weft_tls_get(&a) == &x);
    CHECK_OK(weft_tls_delete(&a));
    CHECK(weft_tls_get(&a) == NULL);
    CHECK_RC(weft_tls_set(&a, &x), -EINVAL);
    CHECK_RC(weft_tls_delete(&a), -EINVAL);
    /* A new key (probably in the same slot) is a different key, and starts
     * out NULL even in a thread that had a value under the old one. */
    CHECK_OK(weft_tls_create(&b, NULL));
    CHECK_U64(a.id, !=, b.id);
    CHECK(weft_tls_get(&b) == NULL);
    CHECK(weft_tls_get(&a) == NULL);
    CHECK_RC(weft_tls_delete(&a), -EINVAL);
    CHECK_OK(weft_tls_set(&b, NULL));
    CHECK(weft_tls_get(&b) == NULL);
    CHECK_OK(weft_tls_delete(&b));
}

/* ---- independence and destructors -------------------------------------------- */

enum { NKEYS = 4, NTHREADS = 8 };

struct world {
    weft_tls_key_t keys[NKEYS];
    struct tracked vals[NTHREADS][NKEYS];
    pthread_barrier_t bar;
    _Atomic int mismatches;
};

static struct world W;

/* Thread i, key k: mode (i + k) % 4 is 0 set, 1 set then reset to NULL,
 * 2 never set, 3 set twice (first value replaced: only the second is
 * destroyed; slot [i][k] holds the second, and the first lives on the
 * stack and must not be destroyed). */
static void *world_body(void *arg)
{
    int i = (int)(intptr_t)arg;
    struct tracked first[NKEYS];
    memset(first, 0, sizeof first);
    uint64_t me = weft_thread_id();
    for (int k = 0; k < NKEYS; k++) {
        W.vals[i][k].owner = me;
        first[k].owner = me;
        switch ((i + k) % 4) {
        case 0:
            weft_tls_set(&W.keys[k], &W.vals[i][k]);
            break;
        case 1:
            weft_tls_set(&W.keys[k], &W.vals[i][k]);
            weft_tls_set(&W.keys[k], NULL);
            break;
        case 2:
            break;
        case 3:
            weft_tls_set(&W.keys[k], &first[k]);
            weft_tls_set(&W.keys[k], &W.vals[i][k]);
            break;
        }
    }
    /* Everybody has set before anybody checks. */
    pthread_barrier_wait(&W.bar);
    for (int k = 0; k < NKEYS; k++) {
        void *want = ((i + k) % 4 == 0 || (i + k) % 4 == 3) ? &W.vals[i][k] : NULL;
        if (weft_tls_get(&W.keys[k]) != want)
            atomic_fetch_add(&W.mismatches, 1);
    }
    pthread_barrier_wait(&W.bar);
    for (int k = 0; k < NKEYS; k++)
        if (atomic_load(&first[k].destroyed))
            atomic_fetch_add(&W.mismatches, 1);
    return NULL;
}

static void test_values_and_destructors(void)
{
    long rounds = check_iters("TLS_ROUNDS", 20);
    for (long r = 0; r < rounds; r++) {
        memset(&W, 0, sizeof W);
        for (int k = 0; k < NKEYS; k++)
            CHECK_OK(weft_tls_create(&W.keys[k], tracked_dtor));
        pthread_barrier_init(&W.bar, NULL, NTHREADS);
        /* The main thread's own value is independent of all of them. */
        int mine;
        CHECK_OK(weft_tls_set(&W.keys[0], &mine));
        weft_thread_t *t[NTHREADS];
        for (int i = 0; i < NTHREADS; i++)
            CHECK_OK(weft_thread_start(&t[i], world_body, (void *)(intptr_t)i, NULL));
        /* weft_thread_join returns after the thread's TLS destructors. */
        for (int i = 0; i < NTHREADS; i++)
            CHECK_OK(weft_thread_join(t[i], NULL));
        CHECK_INT(atomic_load(&W.mismatches), ==, 0);
        for (int i = 0; i < NTHREADS; i++)
            for (int k = 0; k < NKEYS; k++) {
                int mode = (i + k) % 4;
                int want = (mode == 0 || mode == 3) ? 1 : 0;
                CHECK_INT(atomic_load(&W.vals[i][k].destroyed), ==, want);
                CHECK_INT(atomic_load(&W.vals[i][k].wrong_thread), ==, 0);
            }
        CHECK(weft_tls_get(&W.keys[0]) == &mine);
        CHECK_OK(weft_tls_set(&W.keys[0], NULL));
        pthread_barrier_destroy(&W.bar);
        for (int k = 0; k < NKEYS; k++)
            CHECK_OK(weft_tls_delete(&W.keys[k]));
    }
}

/* ---- delete stops destructors ----------------------------------------------------- */

static weft_mutex_t hold = WEFT_MUTEX_INIT;
static weft_tls_key_t del_key;
static struct tracked del_val;
static _Atomic int del_was_set;

static void *set_then_wait(void *p)
{
    (void)p;
    del_val.owner = weft_thread_id();
    int r = weft_tls_set(&del_key, &del_val);
    atomic_store(&del_was_set, 1);
    weft_mutex_lock(&hold);
    weft_mutex_unlock(&hold);
    return (void *)(intptr_t)r;
}

static void test_delete_stops_destructors(void)
{
    memset(&del_val, 0, sizeof del_val);
    CHECK_OK(weft_tls_create(&del_key, tracked_dtor));
    CHECK_OK(weft_mutex_lock(&hold));
    weft_thread_t *t;
    CHECK_OK(weft_thread_start(&t, set_then_wait, NULL, NULL));
    /* The thread has set its value before the key is deleted. */
    while (!atomic_load(&del_was_set))
        weft_thread_yield();
    CHECK_OK(weft_tls_delete(&del_key));
    CHECK_OK(weft_mutex_unlock(&hold));
    void *r;
    CHECK_OK(weft_thread_join(t, &r));
    CHECK_RC((intptr_t)r, 0);
    CHECK_INT(atomic_load(&del_val.destroyed), ==, 0);
}

/* ---- destructors in plain pthreads, and destructors that set again --------------- */

static weft_tls_key_t again_key;
static _Atomic int again_calls;

static void again_dtor(void *p)
{
    int n = atomic_fetch_add(&again_calls, 1) + 1;
    /* Set a value again twice; the later passes destroy it. */
    if (n < 3)
        weft_tls_set(&again_key, p);
}

static void *plain_body(void *p)
{
    weft_tls_set(&again_key, p);
    return NULL;
}

static void test_destructor_sets_again_in_pthread(void)
{
    atomic_store(&again_calls, 0);
    CHECK_OK(weft_tls_create(&again_key, again_dtor));
    pthread_t pt;
    int dummy;
    /* A thread weft did not start still gets its destructors. */
    CHECK_INT(pthread_create(&pt, NULL, plain_body, &dummy), ==, 0);
    pthread_join(pt, NULL);
    CHECK_INT(atomic_load(&again_calls), ==, 3);
    CHECK_OK(weft_tls_delete(&again_key));
}

/* ---- more keys than PTHREAD_KEYS_MAX --------------------------------------------- */

static weft_tls_key_t *many_keys;
static long nmany;
static _Atomic long many_destroyed;

static void count_dtor(void *p)
{
    (void)p;
    atomic_fetch_add(&many_destroyed, 1);
}

static void *many_body(void *p)
{
    long bad = 0;
    for (long i = 0; i < nmany; i++)
        if (weft_tls_set(&many_keys[i], (void *)(intptr_t)(i + 1)) != 0)
            bad++;
    for (long i = 0; i < nmany; i++)
        if (weft_tls_get(&many_keys[i]) != (void *)(intptr_t)(i + 1))
            bad++;
    (void)p;
    return (void *)(intptr_t)bad;
}

static void test_many_keys(void)
{
    nmany = PTHREAD_KEYS_MAX + 1000;
    many_keys = calloc((size_t)nmany, sizeof *many_keys);
    CHECK(many_keys);
    atomic_store(&many_destroyed, 0);
    for (long i = 0; i < nmany; i++)
        CHECK_OK(weft_tls_create(&many_keys[i], count_dtor));
    weft_thread_t *t[2];
    for (int i = 0; i < 2; i++)
        CHECK_OK(weft_thread_start(&t[i], many_body, NULL, NULL));
    for (int i = 0; i < 2; i++) {
        void *bad;
        CHECK_OK(weft_thread_join(t[i], &bad));
        CHECK_INT((intptr_t)bad, ==, 0);
    }
    CHECK_INT(atomic_load(&many_destroyed), ==, 2 * nmany);
    for (long i = 0; i < nmany; i++)
        CHECK_OK(weft_tls_delete(&many_keys[i]));
    free(many_keys);
}

/* ---- create, set, get, delete from many threads at once ---------------------------- */

static _Atomic int churn_errors;

static void churn_worker(void *arg, int index)
{
    (void)arg;
    long n = check_iters("TLS_CHURN", 2000);
    for (long i = 0; i < n; i++) {
        weft_tls_key_t k[3];
        for (int j = 0; j < 3; j++) {
            if (weft_tls_create(&k[j], NULL) != 0) {
                atomic_fetch_add(&churn_errors, 1);
                return;
            }
            if (weft_tls_get(&k[j]) != NULL)
                atomic_fetch_add(&churn_errors, 1);
            weft_tls_set(&k[j], (void *)(intptr_t)(index * 1000 + j + 1));
        }
        /* Keys live at the same time are distinct, and hold our values. */
        for (int j = 0; j < 3; j++) {
            if (weft_tls_get(&k[j]) != (void *)(intptr_t)(index * 1000 + j + 1))
                atomic_fetch_add(&churn_errors, 1);
            for (int m = 0; m < j; m++)
                if (k[m].id == k[j].id)
                    atomic_fetch_add(&churn_errors, 1);
        }
        for (int j = 0; j < 3; j++)
            if (weft_tls_delete(&k[j]) != 0)
                atomic_fetch_add(&churn_errors, 1);
        for (int j = 0; j < 3; j++)
            if (weft_tls_get(&k[j]) != NULL || weft_tls_delete(&k[j]) != -EINVAL)
                atomic_fetch_add(&churn_errors, 1);
    }
}

static void test_concurrent_create_delete(void)
{
    atomic_store(&churn_errors, 0);
    check_parallel(4, churn_worker, NULL);
    CHECK_INT(atomic_load(&churn_errors), ==, 0);
}

int main(void)
{
    RUN(test_bad_keys);
    RUN(test_values_and_destructors);
    RUN(test_delete_stops_destructors);
    RUN(test_destructor_sets_again_in_pthread);
    RUN(test_many_keys);
    RUN(test_concurrent_create_delete);
    return check_done();
}
