/* Platform layer: clock, deadlines, CPU count, page size, error strings,
 * backoff. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <weft.h>

#include "check.h"
#include "platform/platform.h"

static void test_clock_monotonic(void)
{
    weft_time_t a = weft_now();
    for (int i = 0; i < 1000; i++) {
        weft_time_t b = weft_now();
        CHECK_INT(b, >=, a);
        a = b;
    }
    CHECK_INT(a, >, 0);
}

static void test_deadlines(void)
{
    weft_time_t now = weft_now();
    weft_time_t d = weft_deadline_in(0.5);
    CHECK_INT(d - now, >=, 500000000LL);
    CHECK_INT(d - now, <, 600000000LL);
    d = weft_deadline_in_ms(20);
    CHECK_INT(d - now, >=, 20000000LL);
    d = weft_deadline_in_ns(7);
    CHECK_INT(d - now, >=, 7);
    CHECK_INT(weft_deadline_in(-1.0), ==, WEFT_DEADLINE_INVALID);
    CHECK_INT(weft_deadline_in(NAN), ==, WEFT_DEADLINE_INVALID);
    CHECK_INT(weft_deadline_in_ms(-5), ==, WEFT_DEADLINE_INVALID);
    CHECK_INT(weft_deadline_in_ns(-1), ==, WEFT_DEADLINE_INVALID);
    CHECK_INT(weft_deadline_in(INFINITY), ==, WEFT_FOREVER);
    CHECK_INT(weft_deadline_in(1e300), ==, WEFT_FOREVER);
    CHECK_INT(weft_deadline_in_ms(INT64_MAX), ==, WEFT_FOREVER);
    CHECK_INT(weft_deadline_in_ns(INT64_MAX), ==, WEFT_FOREVER);
    CHECK_INT(weft_deadline_in(0), >=, now);
}

static void test_cpu_and_page(void)
{
    int n = weft_cpu_count();
    CHECK_INT(n, >=, 1);
    CHECK_INT(n, <=, 4096);
    size_t p = weft_page_size();
    CHECK_U64(p, >=, 4096);
    CHECK_U64(p & (p - 1), ==, 0);
}

/* The count follows the process's affinity (its main thread's), not the
 * calling thread's: a pinned thread sees the same count as main. (The old
 * bug, a count cached from whichever thread asked first, needs a pinned
 * first caller, which this process is past; the per-thread reading this
 * guards against gives 1 here.) */
static void *pinned_count(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)weft_cpu_count();
}
static void test_cpu_count_pinned_thread(void)
{
    int all = weft_cpu_count();
    weft_thread_opts_t o = {.cpus = (int[]){0}, .ncpus = 1};
    weft_thread_t *t;
    CHECK_OK(weft_thread_start(&t, pinned_count, NULL, &o));
    void *v;
    CHECK_OK(weft_thread_join(t, &v));
    CHECK_INT((int)(intptr_t)v, ==, all);
    CHECK_INT(weft_cpu_count(), ==, all);
}

/* Cgroup quotas in fake trees: on the process's own cgroup or an ancestor
 * (v2: a service's CPUQuota= is there, not on the root), v1 mounted as
 * cpu,cpuacct; the smallest wins; "max" and no file are no quota. */
static void put(const char *dir, const char *name, const char *text)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}
static void mkdirs(const char *root, const char *rel)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/%s'", root, rel);
    CHECK_OK(system(cmd));
}
static void test_cgroup_quota(void)
{
    char root[] = "/tmp/weft-test-cgroup-XXXXXX";
    CHECK(mkdtemp(root) != NULL);
    char v2[600], v1[600], self[600], dir[900];
    snprintf(v2, sizeof v2, "%s/v2", root);
    snprintf(v1, sizeof v1, "%s/v1", root);
    snprintf(self, sizeof self, "%s/self", root);

    mkdirs(v2, "app.slice/app.service");
    put(v2, "cgroup.controllers", "cpu\n");
    put(root, "self", "0::/app.slice/app.service\n");
    CHECK(weft__cgroup_quota(v2, self) == 0); /* none anywhere */
    snprintf(dir, sizeof dir, "%s/app.slice/app.service", v2);
    put(dir, "cpu.max", "150000 100000\n");
    CHECK(fabs(weft__cgroup_quota(v2, self) - 1.5) < 1e-9); /* its own */
    snprintf(dir, sizeof dir, "%s/app.slice", v2);
    put(dir, "cpu.max", "50000 100000\n");
    CHECK(fabs(weft__cgroup_quota(v2, self) - 0.5) < 1e-9); /* an ancestor's, smaller */
    put(dir, "cpu.max", "max 100000\n");
    CHECK(fabs(weft__cgroup_quota(v2, self) - 1.5) < 1e-9);
    put(root, "self", "0::/\n"); /* a container's own root */
    put(v2, "cpu.max", "200000 100000\n");
    CHECK(fabs(weft__cgroup_quota(v2, self) - 2.0) < 1e-9);

    mkdirs(v1, "cpu,cpuacct/svc");
    snprintf(dir, sizeof dir, "%s/cpu,cpuacct/svc", v1);
    put(dir, "cpu.cfs_quota_us", "50000\n");
    put(dir, "cpu.cfs_period_us", "100000\n");
    put(root, "self", "4:memory:/x\n2:cpu,cpuacct:/svc\n0::/\n");
    CHECK(fabs(weft__cgroup_quota(v1, self) - 0.5) < 1e-9);
    put(dir, "cpu.cfs_quota_us", "-1\n");
    CHECK(weft__cgroup_quota(v1, self) == 0);

    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    CHECK_OK(system(cmd));
}

static void test_futex_timeout(void)
{
    _Atomic uint32_t word = 5;
    /* A value mismatch returns at once. */
    CHECK_RC(weft__futex_wait(&word, 4, WEFT_FOREVER, false), -EAGAIN);
    /* A deadline in the past times out at once; a near one after it. */
    CHECK_RC(weft__futex_wait(&word, 5, 0, false), -ETIMEDOUT);
    weft_time_t dl = weft_deadline_in_ms(20);
    int r;
    do
        r = weft__futex_wait(&word, 5, dl, false);
    while (r == 0 || r == -EINTR);
    CHECK_RC(r, -ETIMEDOUT);
    CHECK_INT(weft_now(), >=, dl);
    CHECK_INT(weft__futex_wake(&word, 1, false), ==, 0);
}

static void test_strerror(void)
{
    CHECK(strcmp(weft_strerror(0), "success") == 0);
    CHECK(strcmp(weft_strerror(-EPIPE), "channel closed") == 0);
    CHECK(strcmp(weft_strerror(WEFT_EBROKEN), "barrier broken") == 0);
    CHECK(strcmp(weft_strerror(EINVAL), weft_strerror(-EINVAL)) == 0);
    CHECK(weft_strerror(-ENOENT) != NULL);
    CHECK(strcmp(weft_strerror(-123456), "unknown error") == 0);
    CHECK(strcmp(weft_version(), WEFT_VERSION_STRING) == 0);
}

static void test_rand(void)
{
    uint64_t a = weft__rand(), b = weft__rand();
    CHECK(a != 0);
    CHECK(a != b);
}

/* weft__backoff: pauses and yields first (a caller that parks after a
 * few calls never sleeps), then every call sleeps. */
static void test_backoff(void)
{
    unsigned long s0 = atomic_load(&weft__backoff_sleeps);
    unsigned step = 0;
    for (int i = 0; i < 38; i++)
        weft__backoff(&step);
    CHECK_U64(atomic_load(&weft__backoff_sleeps), ==, s0);
    CHECK_U64(step, ==, 38);
    for (int i = 0; i < 3; i++)
        weft__backoff(&step);
    CHECK_U64(atomic_load(&weft__backoff_sleeps), ==, s0 + 3);
    CHECK_U64(step, ==, 38);
}

int main(void)
{
    RUN(test_clock_monotonic);
    RUN(test_deadlines);
    RUN(test_cpu_and_page);
    RUN(test_cpu_count_pinned_thread);
    RUN(test_cgroup_quota);
    RUN(test_futex_timeout);
    RUN(test_strerror);
    RUN(test_rand);
    RUN(test_backoff);
    return check_done();
}
