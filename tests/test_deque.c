/* The Chase-Lev deque: sequential semantics, growth, and the owner popping
 * against thieves stealing: every element is taken exactly once. */
#include <stdatomic.h>
#include <weft.h>

#include "check.h"
#include "pool/deque.h"

static void test_sequential(void)
{
    struct weft__deque q;
    CHECK_OK(weft__deque_init(&q, 2));
    CHECK(weft__deque_pop(&q) == NULL);
    CHECK(weft__deque_steal(&q) == NULL);
    /* Grows past the initial capacity many times. */
    for (intptr_t i = 1; i <= 1000; i++)
        CHECK_OK(weft__deque_push(&q, (void *)(i * 8)));
    CHECK_INT(weft__deque_size(&q), ==, 1000);
    /* Thieves take the oldest, the owner the newest. */
    CHECK(weft__deque_steal(&q) == (void *)8);
    CHECK(weft__deque_pop(&q) == (void *)8000);
    for (intptr_t i = 999; i >= 2; i--)
        CHECK(weft__deque_pop(&q) == (void *)(i * 8));
    CHECK(weft__deque_pop(&q) == NULL);
    CHECK(weft__deque_steal(&q) == NULL);
    CHECK_INT(weft__deque_size(&q), ==, 0);
    /* Usable again after emptying. */
    CHECK_OK(weft__deque_push(&q, (void *)16));
    CHECK(weft__deque_steal(&q) == (void *)16);
    CHECK(weft__deque_pop(&q) == NULL);
    weft__deque_destroy(&q);
}

/* The race: the owner pushes n elements in bursts and pops some of them
 * back; thieves steal all the time. Each element is a distinct index;
 * taken[i] counts how often it was taken, which must be exactly once. */
struct race {
    struct weft__deque q;
    long n;
    _Atomic unsigned char *taken;
    _Atomic long total;
    _Atomic int owner_done;
};

static void take(struct race *r, void *x)
{
    long i = ((long)(intptr_t)x >> 4) - 1; /* elements are (index+1) << 4: never ABORT */
    unsigned char before = atomic_fetch_add(&r->taken[i], 1);
    if (before != 0)
        CHECK_INT(before, ==, 0);
    atomic_fetch_add(&r->total, 1);
}

static void race_fn(void *arg, int index)
{
    struct race *r = arg;
    if (index == 0) {
        uint64_t rnd = 88172645463325252ull;
        long next = 0;
        while (next < r->n) {
            rnd ^= rnd << 13; rnd ^= rnd >> 7; rnd ^= rnd << 17;
            long burst = 1 + (long)(rnd % 64);
            for (long k = 0; k < burst && next < r->n; k++) {
                next++;
                CHECK_OK(weft__deque_push(&r->q, (void *)((intptr_t)next << 4)));
            }
            long pops = (long)((rnd >> 8) % (unsigned long)(burst + 1));
            for (long k = 0; k < pops; k++) {
                void *x = weft__deque_pop(&r->q);
                if (!x)
                    break;
                take(r, x);
            }
        }
        void *x;
        while ((x = weft__deque_pop(&r->q)))
            take(r, x);
        atomic_store(&r->owner_done, 1);
    } else {
        for (;;) {
            void *x = weft__deque_steal(&r->q);
            if (x == WEFT__DEQUE_ABORT)
                continue;
            if (x) {
                take(r, x);
                continue;
            }
            if (atomic_load(&r->owner_done) && weft__deque_size(&r->q) == 0)
                break;
        }
    }
}

static void test_race(void)
{
    long rounds = check_iters("DEQUE_ROUNDS", 20);
    for (long round = 0; round < rounds; round++) {
        struct race r;
        r.n = check_iters("DEQUE_N", 50000);
        CHECK_OK(weft__deque_init(&r.q, 4)); /* small: growth races too */
        r.taken = calloc((size_t)r.n, 1);
        atomic_init(&r.total, 0);
        atomic_init(&r.owner_done, 0);
        check_parallel(4, race_fn, &r);
        CHECK_INT(atomic_load(&r.total), ==, r.n);
        for (long i = 0; i < r.n; i++)
            if (atomic_load(&r.taken[i]) != 1)
                CHECK_INT(atomic_load(&r.taken[i]), ==, 1);
        free((void *)r.taken);
        weft__deque_destroy(&r.q);
    }
}

int main(void)
{
    RUN(test_sequential);
    RUN(test_race);
    return check_done();
}
