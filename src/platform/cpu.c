/*
 * cpu.c - how many CPUs this process may use, page size, per-thread random,
 * and the backoff of a short wait for another thread (weft__backoff).
 *
 * The CPU count is the size of the process's affinity mask (its main
 * thread's: sched_getaffinity(getpid())), cut down by a cgroup CPU quota
 * when one is set on the process's cgroup or an ancestor: cgroup v2
 * `cpu.max` ("quota period" or "max"), else cgroup v1 `cpu.cfs_quota_us` /
 * `cpu.cfs_period_us`. A quota of 1.5 CPUs counts as 2. This is what a pool
 * should default to: a container limited to 2 CPUs on a 64-core host wants 2
 * workers, not 64.
 */
#include "platform.h"

#include <errno.h>
#include <math.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <weft/thread.h>

/* The affinity mask of the process: of its main thread (the thread whose
 * id is the pid), not of the calling thread, which may be a pinned worker
 * (a pool with pin = true, a thread started with opts.cpus). A mask wider
 * than cpu_set_t (over 1024 CPUs) is read with a larger set. */
static int affinity_count(void)
{
    for (size_t ncpu = CPU_SETSIZE; ncpu <= 65536; ncpu *= 4) {
        size_t bytes = CPU_ALLOC_SIZE(ncpu);
        cpu_set_t *set = CPU_ALLOC(ncpu);
        if (!set)
            break;
        CPU_ZERO_S(bytes, set);
        int r = sched_getaffinity(getpid(), bytes, set);
        int n = r == 0 ? CPU_COUNT_S(bytes, set) : 0;
        CPU_FREE(set);
        if (n > 0)
            return n;
        if (r != 0 && errno != EINVAL)
            break; /* EINVAL: the kernel's mask is wider: try a larger set */
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* One cgroup v2 cpu.max ("quota period" or "max"): the quota in CPUs, or 0
 * for none (or none readable). */
static double read_cpu_max(const char *path)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
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

/* One cgroup v1 directory's cpu.cfs_quota_us / cpu.cfs_period_us. */
static double read_cfs(const char *dir)
{
    char path[4096];
    long long quota = -1, period = 0;
    snprintf(path, sizeof path, "%s/cpu.cfs_quota_us", dir);
    FILE *f = fopen(path, "re");
    if (f) {
        if (fscanf(f, "%lld", &quota) != 1)
            quota = -1;
        fclose(f);
    }
    snprintf(path, sizeof path, "%s/cpu.cfs_period_us", dir);
    f = fopen(path, "re");
    if (f) {
        if (fscanf(f, "%lld", &period) != 1)
            period = 0;
        fclose(f);
    }
    return quota > 0 && period > 0 ? (double)quota / (double)period : 0;
}

/* The smallest quota from the cgroup directory base + rel up to base
 * itself (a quota on any ancestor limits the process too); v2: cpu.max,
 * else v1's cfs files. 0 for none. */
static double walk_quota(const char *base, const char *rel, bool v2)
{
    char dir[4096];
    int n = snprintf(dir, sizeof dir, "%s%s", base, strcmp(rel, "/") == 0 ? "" : rel);
    if (n < 0 || (size_t)n >= sizeof dir)
        return 0;
    size_t base_len = strlen(base);
    double best = 0;
    for (;;) {
        double q;
        if (v2) {
            char path[4096 + 16];
            snprintf(path, sizeof path, "%s/cpu.max", dir);
            q = read_cpu_max(path);
        } else {
            q = read_cfs(dir);
        }
        if (q > 0 && (best == 0 || q < best))
            best = q;
        if (strlen(dir) <= base_len)
            break;
        char *slash = strrchr(dir, '/');
        if (!slash || (size_t)(slash - dir) < base_len)
            break;
        *slash = '\0';
    }
    return best;
}

/* The process's cgroup paths from /proc/self/cgroup: v2's ("0::/path")
 * into v2, v1's cpu controller's ("N:cpu,cpuacct:/path") into v1; empty
 * when absent. */
static void own_cgroups(const char *self, char *v2, char *v1, size_t cap)
{
    v2[0] = v1[0] = '\0';
    FILE *f = fopen(self, "re");
    if (!f)
        return;
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        *c1 = *c2 = '\0'; /* line: the hierarchy id */
        const char *ctrls = c1 + 1, *path = c2 + 1;
        if (strcmp(line, "0") == 0 && *ctrls == '\0') {
            snprintf(v2, cap, "%s", path);
            continue;
        }
        /* "cpu" as one of the comma-separated controllers. */
        for (const char *p = ctrls; *p;) {
            size_t len = strcspn(p, ",");
            if (len == 3 && strncmp(p, "cpu", 3) == 0)
                snprintf(v1, cap, "%s", path);
            p += len + (p[len] == ',');
        }
    }
    fclose(f);
}

/* Returns the quota in CPUs, or 0 when there is none we can read: the
 * smallest on the process's own cgroup and its ancestors (a service's
 * CPUQuota= sits on its own cgroup, not on the root), cgroup v2, else v1
 * (mounted as cpu or cpu,cpuacct). */
double weft__cgroup_quota(const char *root, const char *self)
{
    char v2[2048], v1[2048], path[4096];
    own_cgroups(self, v2, v1, sizeof v2);
    snprintf(path, sizeof path, "%s/cgroup.controllers", root);
    if (access(path, F_OK) == 0)
        return walk_quota(root, v2[0] ? v2 : "/", true);
    static const char *const v1_mounts[] = {"cpu", "cpu,cpuacct", "cpuacct,cpu"};
    for (size_t i = 0; i < sizeof v1_mounts / sizeof v1_mounts[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", root, v1_mounts[i]);
        if (access(path, F_OK) != 0)
            continue;
        /* In a container the mount is the cgroup itself and the path in
         * /proc/self/cgroup names the host's: try it, then the mount. */
        double q = v1[0] ? walk_quota(path, v1, false) : 0;
        return q > 0 ? q : read_cfs(path);
    }
    return 0;
}

/* The quota, read once (it is set from outside, before the program
 * starts, in every case that matters); the affinity on each call. */
static _Atomic int quota_cache; /* 0: not read; -1: none; else CPUs */

int weft__cpu_count(void)
{
    int n = affinity_count();
    int qn = atomic_load_explicit(&quota_cache, memory_order_relaxed);
    if (qn == 0) {
        double q = weft__cgroup_quota("/sys/fs/cgroup", "/proc/self/cgroup");
        qn = q > 0 ? (int)ceil(q) : -1;
        if (qn == 0)
            qn = 1;
        atomic_store_explicit(&quota_cache, qn, memory_order_relaxed);
    }
    return qn > 0 && qn < n ? qn : n;
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
