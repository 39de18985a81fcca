/*
 * cpu.c - how many CPUs this process may use, page size, per-thread random,
 * and the backoff of a short wait for another thread (weft__backoff).
 *
 * The CPU count is the size of the affinity mask (sched_getaffinity), cut
 * down by a cgroup CPU quota when one is set: cgroup v2 `cpu.max`
 * ("quota period" or "max"), else cgroup v1 `cpu.cfs_quota_us` /
 * `cpu.cfs_period_us`. A quota of 1.5 CPUs counts as 2. This is what a pool
 * should default to: a container limited to 2 CPUs on a 64-core host wants 2
 * workers, not 64.
 */
#include "platform.h"

#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <weft/thread.h>

static int affinity_count(void)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0)
            return n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* Returns the quota in CPUs, or 0 when there is none we can read. */
static double cgroup_quota(void)
{
    FILE *f = fopen("/sys/fs/cgroup/cpu.max", "r");
    if (f) {
        char q[32] = {0};
        double period = 0;
        int got = fscanf(f, "%31s %lf", q, &period);
        fclose(f);
        if (got == 2 && strcmp(q, "max") != 0 && period > 0) {
            double quota = strtod(q, NULL);
            if (quota > 0)
                return quota / period;
        }
        return 0;
    }
    long long quota = -1, period = 0;
    f = fopen("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "r");
    if (f) {
        if (fscanf(f, "%lld", &quota) != 1)
            quota = -1;
        fclose(f);
    }
    f = fopen("/sys/fs/cgroup/cpu/cpu.cfs_period_us", "r");
    if (f) {
        if (fscanf(f, "%lld", &period) != 1)
            period = 0;
        fclose(f);
    }
    if (quota > 0 && period > 0)
        return (double)quota / (double)period;
    return 0;
}

static _Atomic int cpu_count_cache;

int weft__cpu_count(void)
{
    int n = atomic_load_explicit(&cpu_count_cache, memory_order_relaxed);
    if (n > 0)
        return n;
    n = affinity_count();
    double q = cgroup_quota();
    if (q > 0) {
        int qn = (int)ceil(q);
        if (qn < 1)
            qn = 1;
        if (qn < n)
            n = qn;
    }
    atomic_store_explicit(&cpu_count_cache, n, memory_order_relaxed);
    return n;
}

size_t weft__page_size(void)
{
    static _Atomic size_t cache;
    size_t p = atomic_load_explicit(&cache, memory_order_relaxed);
    if (!p) {
        long s = sysconf(_SC_PAGESIZE);
        p = s > 0 ? (size_t)s : 4096;
        atomic_store_explicit(&cache, p, memory_order_relaxed);
    }
    return p;
}

int weft_cpu_count(void) { return weft__cpu_count(); }
size_t weft_page_size(void) { return weft__page_size(); }

static _Thread_local uint64_t rand_state;
static _Atomic uint64_t rand_seed = 0x9e3779b97f4a7c15ull;

uint64_t weft__rand(void)
{
    uint64_t x = rand_state;
    if (WEFT_UNLIKELY(x == 0)) {
        x = atomic_fetch_add_explicit(&rand_seed, 0x9e3779b97f4a7c15ull, memory_order_relaxed);
        x ^= (uint64_t)(uintptr_t)&rand_state;
        x = (x ^ (x >> 31)) * 0xbf58476d1ce4e5b9ull;
        if (x == 0)
            x = 1;
    }
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rand_state = x;
    return x;
}

/* ---- backoff (platform.h) ------------------------------------------------ */

#define BACKOFF_PAUSES 6
#define BACKOFF_YIELDS 32
#define BACKOFF_SLEEP_NS 50000

_Atomic unsigned long weft__backoff_sleeps;

void weft__backoff(unsigned *step)
{
    if (*step < BACKOFF_PAUSES) {
        for (unsigned i = 0; i < (1u << *step); i++)
            weft__cpu_relax();
    } else if (*step < BACKOFF_PAUSES + BACKOFF_YIELDS) {
        sched_yield();
    } else {
        atomic_fetch_add_explicit(&weft__backoff_sleeps, 1, memory_order_relaxed);
        struct timespec ts = {0, BACKOFF_SLEEP_NS};
        nanosleep(&ts, NULL);
        return;
    }
    (*step)++;
}
