/* weft_rwlock_t: modes, misuse, deadlines, the documented policy (writer
 * preference; waiting readers enter together when a writer unlocks), and a
 * stress that checks a writer is never inside with anyone. */
#include "sync_util.h"

/* The private layout (white box, for the overflow test). */
#define RW_READER 8u
#define RW_MAX_READERS (UINT32_MAX >> 3)

static void test_basic(void)
{
    weft_rwlock_t l = WEFT_RWLOCK_INIT;
    CHECK_OK(weft_rwlock_rdlock(&l));
    CHECK_OK(weft_rwlock_rdlock_try(&l));
    CHECK_OK(weft_rwlock_rdlock_until(&l, weft_deadline_in(1)));
    CHECK_RC(weft_rwlock_wrlock_try(&l), -EAGAIN);
    CHECK_RC(weft_rwlock_wrlock_until(&l, 0), -ETIMEDOUT);
    CHECK_RC(weft_rwlock_destroy(&l), -EBUSY);
    CHECK_RC(weft_rwlock_wrunlock(&l), -EPERM);
    for (int i = 0; i < 3; i++)
        CHECK_OK(weft_rwlock_rdunlock(&l));
    CHECK_RC(weft_rwlock_rdunlock(&l), -EPERM);
    CHECK_OK(weft_rwlock_destroy(&l));

    CHECK_OK(weft_rwlock_wrlock(&l));
    CHECK_RC(weft_rwlock_rdlock_try(&l), -EAGAIN);
    CHECK_RC(weft_rwlock_rdlock_until(&l, weft_deadline_in_ms(5)), -ETIMEDOUT);
    CHECK_RC(weft_rwlock_wrlock_try(&l), -EAGAIN);
    CHECK_RC(weft_rwlock_wrlock(&l), -EDEADLK);
    CHECK_RC(weft_rwlock_wrlock_until(&l, WEFT_FOREVER), -EDEADLK);
    CHECK_RC(weft_rwlock_rdunlock(&l), -EPERM);
    CHECK_RC(weft_rwlock_destroy(&l), -EBUSY);
    CHECK_OK(weft_rwlock_wrunlock(&l));
    CHECK_RC(weft_rwlock_wrunlock(&l), -EPERM);
    CHECK_OK(weft_rwlock_wrlock_try(&l));
    CHECK_OK(weft_rwlock_wrunlock(&l));
    CHECK_OK(weft_rwlock_wrlock_until(&l, 0)); /* free: succeeds past its deadline */
    CHECK_OK(weft_rwlock_wrunlock(&l));
    CHECK_OK(weft_rwlock_destroy(&l));
    CHECK_OK(weft_rwlock_init(&l));
    CHECK_INT(l.state, ==, 0);
}

static void test_bad_input(void)
{
    weft_rwlock_t l = WEFT_RWLOCK_INIT;
    CHECK_RC(weft_rwlock_init(NULL), -EINVAL);
    CHECK_RC(weft_rwlock_destroy(NULL), -EINVAL);
    CHECK_RC(weft_rwlock_rdlock(NULL), -EINVAL);
    CHECK_RC(weft_rwlock_rdlock_try(NULL), -EINVAL);
    CHECK_RC(weft_rwlock_rdlock_until(NULL, WEFT_FOREVER), -EINVAL);
    CHECK_RC(weft_rwlock_rdlock_until(&l, -1), -EINVAL);
    CHECK_RC(weft_rwlock_rdunlock(NULL), -EINVAL);
    CHECK_RC(weft_rwlock_wrlock(NULL), -EINVAL);
    CHECK_RC(weft_rwlock_wrlock_try(NULL), -EINVAL);
    CHECK_RC(weft_rwlock_wrlock_until(NULL, WEFT_FOREVER), -EINVAL);
    CHECK_RC(weft_rwlock_wrlock_until(&l, -1), -EINVAL);
    CHECK_RC(weft_rwlock_wrunlock(NULL), -EINVAL);
    CHECK_INT(l.state, ==, 0);
    CHECK_OK(weft_rwlock_destroy(&l));
}

static void test_overflow(void)
{
    weft_rwlock_t l = WEFT_RWLOCK_INIT;
    /* White box: the reader count is full. */
    l.state = RW_MAX_READERS * RW_READER;
    CHECK_RC(weft_rwlock_rdlock(&l), -EOVERFLOW);
    CHECK_RC(weft_rwlock_rdlock_try(&l), -EOVERFLOW);
    CHECK_RC(weft_rwlock_rdlock_until(&l, WEFT_FOREVER), -EOVERFLOW);
    CHECK_U64(l.state, ==, RW_MAX_READERS * RW_READER);
    CHECK_OK(weft_rwlock_rdunlock(&l));
    CHECK_OK(weft_rwlock_rdlock(&l));
    l.state = RW_READER;
    CHECK_OK(weft_rwlock_rdunlock(&l));
    CHECK_OK(weft_rwlock_destroy(&l));
}

static weft_rwlock_t L = WEFT_RWLOCK_INIT;
static _Atomic int seq;          /* order of entry */
static _Atomic int readers_in;   /* readers inside right now */
static _Atomic int writer_in;    /* writers inside right now */
static _Atomic int entered;      /* readers that got in (never decreases) */

static void *try_wrunlock(void *p)
{
    (void)p;
    return (void *)(intptr_t)weft_rwlock_wrunlock(&L);
}

static void test_wrunlock_not_writer(void)
{
    CHECK_OK(weft_rwlock_wrlock(&L));
    CHECK_RC(join(spawn(try_wrunlock, NULL)), -EPERM);
    CHECK_RC(weft_rwlock_rdlock_try(&L), -EAGAIN);
    CHECK_OK(weft_rwlock_wrunlock(&L));
    CHECK_OK(weft_rwlock_destroy(&L));
}

/* A writer that records when it got in. */
static void *writer_main(void *p)
{
    probe_install();
    intptr_t *when = p;
    int r = weft_rwlock_wrlock(&L);
    if (r != 0)
        return (void *)(intptr_t)r;
    *when = atomic_fetch_add(&seq, 1);
    if (atomic_fetch_add(&writer_in, 1) != 0 || atomic_load(&readers_in) != 0)
        r = -1000; /* not alone */
    atomic_fetch_sub(&writer_in, 1);
    weft_rwlock_wrunlock(&L);
    return (void *)(intptr_t)r;
}

/* A reader that records when it got in, and (if together > 0) stays until
 * `together` readers are inside at once. */
struct reader_arg {
    intptr_t when;
    int together;
};

static void *reader_main(void *p)
{
    probe_install();
    struct reader_arg *a = p;
    int r = weft_rwlock_rdlock(&L);
    if (r != 0)
        return (void *)(intptr_t)r;
    a->when = atomic_fetch_add(&seq, 1);
    atomic_fetch_add(&readers_in, 1);
    atomic_fetch_add(&entered, 1);
    if (atomic_load(&writer_in) != 0)
        r = -1000;
    /* Every reader stays in until all have entered: if they did not get in
     * together, the first ones would wait here for a writer-blocked one. */
    if (a->together && !wait_count(&entered, a->together))
        r = -1001; /* the readers did not enter together */
    if (atomic_load(&writer_in) != 0)
        r = -1000;
    atomic_fetch_sub(&readers_in, 1);
    weft_rwlock_rdunlock(&L);
    return (void *)(intptr_t)r;
}

/* Writer preference: once a writer waits, new readers wait behind it. */
static void test_writer_preference(void)
{
    atomic_store(&seq, 0);
    probe_reset();
    CHECK_OK(weft_rwlock_rdlock(&L));
    intptr_t wwhen = -1;
    pthread_t w = spawn(writer_main, &wwhen);
    CHECK(wait_count(&probe_parked, 1));
    CHECK_RC(weft_rwlock_rdlock_try(&L), -EAGAIN);
    CHECK_RC(weft_rwlock_rdlock_until(&L, weft_deadline_in_ms(2)), -ETIMEDOUT);
    struct reader_arg ra = {-1, 0};
    pthread_t r = spawn(reader_main, &ra);
    CHECK(wait_count(&probe_parked, 2));
    CHECK_OK(weft_rwlock_rdunlock(&L)); /* the last reader hands over to the writer */
    CHECK_RC(join(w), 0);
    CHECK_RC(join(r), 0);
    CHECK_INT(wwhen, ==, 0);
    CHECK_INT(ra.when, ==, 1);
    CHECK_OK(weft_rwlock_destroy(&L));
}

/* A writer unlocks with readers and a writer parked: all the readers enter
 * together, before the writer. */
static void test_readers_enter_together(void)
{
    enum { NR = 3 };
    atomic_store(&seq, 0);
    atomic_store(&entered, 0);
    probe_reset();
    CHECK_OK(weft_rwlock_wrlock(&L));
    struct reader_arg ra[NR];
    pthread_t rt[NR];
    for (int i = 0; i < NR; i++) {
        ra[i] = (struct reader_arg){-1, NR};
        rt[i] = spawn(reader_main, &ra[i]);
    }
    CHECK(wait_count(&probe_parked, NR));
    intptr_t wwhen = -1;
    pthread_t w = spawn(writer_main, &wwhen);
    CHECK(wait_count(&probe_parked, NR + 1));
    CHECK_OK(weft_rwlock_wrunlock(&L));
    for (int i = 0; i < NR; i++) {
        CHECK_RC(join(rt[i]), 0);
        CHECK_INT(ra[i].when, <, NR);
    }
    CHECK_RC(join(w), 0);
    CHECK_INT(wwhen, ==, NR);
    CHECK_OK(weft_rwlock_destroy(&L));
}

/* A writer unlocking with only writers parked hands over to the oldest. */
static void test_writers_in_order(void)
{
    enum { NW = 3 };
    atomic_store(&seq, 0);
    probe_reset();
    CHECK_OK(weft_rwlock_wrlock(&L));
    intptr_t when[NW];
    pthread_t wt[NW];
    for (int i = 0; i < NW; i++) {
        when[i] = -1;
        wt[i] = spawn(writer_main, &when[i]);
        CHECK(wait_count(&probe_parked, i + 1));
    }
    CHECK_OK(weft_rwlock_wrunlock(&L));
    for (int i = 0; i < NW; i++) {
        CHECK_RC(join(wt[i]), 0);
        CHECK_INT(when[i], ==, i);
    }
    CHECK_OK(weft_rwlock_destroy(&L));
}

static void *writer_until_main(void *p)
{
    probe_install();
    (void)p;
    int r = weft_rwlock_wrlock_until(&L, weft_deadline_in_ms(200));
    if (r == 0)
        weft_rwlock_wrunlock(&L);
    return (void *)(intptr_t)r;
}

/* A writer times out while readers wait behind it: they must be let in
 * (the reader lock is still held, so only the timeout can free them). */
static void test_writer_timeout_frees_readers(void)
{
    probe_reset();
    atomic_store(&seq, 0);
    CHECK_OK(weft_rwlock_rdlock(&L));
    pthread_t w = spawn(writer_until_main, NULL);
    CHECK(wait_count(&probe_parked, 1));
    struct reader_arg ra = {-1, 0};
    pthread_t r = spawn(reader_main, &ra);
    CHECK_RC(join(w), -ETIMEDOUT);
    CHECK_RC(join(r), 0); /* got in while we still hold our read lock */
    CHECK_OK(weft_rwlock_rdunlock(&L));
    CHECK_INT(L.state, ==, 0);
    CHECK_OK(weft_rwlock_wrlock_try(&L));
    CHECK_OK(weft_rwlock_wrunlock(&L));
    CHECK_OK(weft_rwlock_destroy(&L));
}

/* Readers time out behind a writer; the lock is clean afterwards. */
static void *reader_until_main(void *p)
{
    (void)p;
    int r = weft_rwlock_rdlock_until(&L, weft_deadline_in_ms(20));
    if (r == 0)
        weft_rwlock_rdunlock(&L);
    return (void *)(intptr_t)r;
}

static void test_reader_timeout(void)
{
    CHECK_OK(weft_rwlock_wrlock(&L));
    pthread_t t[3];
    for (int i = 0; i < 3; i++)
        t[i] = spawn(reader_until_main, NULL);
    for (int i = 0; i < 3; i++)
        CHECK_RC(join(t[i]), -ETIMEDOUT);
    CHECK_OK(weft_rwlock_wrunlock(&L));
    CHECK_INT(L.state, ==, 0);
    CHECK_OK(weft_rwlock_destroy(&L));
}

/* ---- stress ---------------------------------------------------------------- */

struct rw_stress {
    weft_rwlock_t l;
    long iters;
    long a, b;                /* written by writers (a == b outside writes) */
    _Atomic long writes;
    _Atomic int readers, writers;
    _Atomic int violations;
    _Atomic long timeouts;
};

static void rw_worker(void *p, int idx)
{
    struct rw_stress *s = p;
    uint64_t x = 0x9e3779b97f4a7c15ull * (uint64_t)(idx + 1);
    for (long i = 0; i < s->iters; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        unsigned kind = (unsigned)(x % 16);
        int r;
        if (kind < 4) { /* writer */
            if (kind == 0)
                r = weft_rwlock_wrlock_until(&s->l, weft_now() + (weft_time_t)(x % 50000));
            else if (kind == 1)
                r = weft_rwlock_wrlock_try(&s->l);
            else
                r = weft_rwlock_wrlock(&s->l);
            if (r == -ETIMEDOUT || r == -EAGAIN) {
                atomic_fetch_add(&s->timeouts, 1);
                continue;
            }
            if (r != 0 || atomic_fetch_add(&s->writers, 1) != 0 || atomic_load(&s->readers) != 0)
                atomic_fetch_add(&s->violations, 1);
            s->a++;
            if (x % 8 == 0)
                busy(200); /* let others run into the held lock and park */
            if (x % 256 == 0)
                sched_yield();
            s->b++;
            atomic_fetch_add(&s->writes, 1);
            atomic_fetch_sub(&s->writers, 1);
            if (weft_rwlock_wrunlock(&s->l) != 0)
                atomic_fetch_add(&s->violations, 1);
        } else { /* reader */
            if (kind == 4)
                r = weft_rwlock_rdlock_until(&s->l, weft_now() + (weft_time_t)(x % 50000));
            else if (kind == 5)
                r = weft_rwlock_rdlock_try(&s->l);
            else
                r = weft_rwlock_rdlock(&s->l);
            if (r == -ETIMEDOUT || r == -EAGAIN) {
                atomic_fetch_add(&s->timeouts, 1);
                continue;
            }
            atomic_fetch_add(&s->readers, 1);
            if (r != 0 || atomic_load(&s->writers) != 0 || s->a != s->b)
                atomic_fetch_add(&s->violations, 1);
            if (x % 16 == 0)
                busy(200);
            if (atomic_load(&s->writers) != 0 || s->a != s->b)
                atomic_fetch_add(&s->violations, 1);
            atomic_fetch_sub(&s->readers, 1);
            if (weft_rwlock_rdunlock(&s->l) != 0)
                atomic_fetch_add(&s->violations, 1);
        }
    }
}

static void test_stress(void)
{
    struct rw_stress s = {.l = WEFT_RWLOCK_INIT};
    s.iters = check_iters("RWLOCK_ITERS", 40000);
    check_parallel(6, rw_worker, &s);
    fprintf(stderr, "  %ld writes, %ld timeouts or busy\n", atomic_load(&s.writes),
            atomic_load(&s.timeouts));
    CHECK_INT(atomic_load(&s.violations), ==, 0);
    CHECK_INT(s.a, ==, atomic_load(&s.writes));
    CHECK_INT(s.b, ==, s.a);
    CHECK_INT(s.l.state, ==, 0);
    CHECK_OK(weft_rwlock_destroy(&s.l));
}

/* The last reader hands the lock to a parked writer, which unlocks and
 * frees it at once (the lock lives in a heap block the writer owns, as a
 * lock in an object whose last user is that writer). The reader's unlock
 * must not touch the lock after the hand-over: ASan sees a use after free,
 * TSan a race with the free. Many rounds, each a fresh block. */
struct rw_box {
    weft_rwlock_t l;
    _Atomic int bad;
};

static void *box_writer(void *p)
{
    struct rw_box *b = p;
    int r = weft_rwlock_wrlock(&b->l);
    if (r == 0)
        r = weft_rwlock_wrunlock(&b->l);
    if (r == 0)
        r = weft_rwlock_destroy(&b->l);
    free(b); /* the reader's rdunlock may still be running: it must be done with b */
    return (void *)(intptr_t)r;
}

static void test_handoff_then_free(void)
{
    long rounds = check_iters("RWLOCK_FREE_ROUNDS", 300);
    for (long i = 0; i < rounds; i++) {
        struct rw_box *b = calloc(1, sizeof *b);
        CHECK(b != NULL);
        CHECK_OK(weft_rwlock_init(&b->l));
        CHECK_OK(weft_rwlock_rdlock(&b->l));
        pthread_t w = spawn(box_writer, b);
        CHECK(wait_parked_key(&b->l.writer)); /* the writer is queued */
        CHECK_OK(weft_rwlock_rdunlock(&b->l)); /* hands over; b may go now */
        CHECK_RC(join(w), 0);
    }
}

int main(void)
{
    RUN(test_basic);
    RUN(test_bad_input);
    RUN(test_overflow);
    RUN(test_wrunlock_not_writer);
    RUN(test_writer_preference);
    RUN(test_readers_enter_together);
    RUN(test_writers_in_order);
    RUN(test_writer_timeout_frees_readers);
    RUN(test_reader_timeout);
    RUN(test_handoff_then_free);
    RUN(test_stress);
    return check_done();
}
