/*
 * steal.h - how much CPU time a virtual machine's host held back from this
 * machine ("steal": the eighth number of /proc/stat's cpu line). On a busy
 * host every timed figure stretches with it, whatever the program does.
 * Read by the benchmarks (bench.h) and by the weft command's lesson runner
 * (tools/weft/lesson.c). Self-contained, like bench.h: libc only.
 */
#ifndef WEFT_STEAL_H
#define WEFT_STEAL_H

#include <stdbool.h>
#include <stdio.h>

/* One reading: total is the sum of the first eight numbers (guest time is
 * already inside user), in USER_HZ ticks (100 a second per CPU); ok is
 * false where /proc/stat cannot be read. */
typedef struct steal_sample {
    unsigned long long total, steal;
    bool ok;
} steal_sample_t;

static inline steal_sample_t steal_sample(void)
{
    steal_sample_t s = {0, 0, false};
    FILE *f = fopen("/proc/stat", "re");
    if (!f)
        return s;
    unsigned long long v[8] = {0};
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
                   &v[3], &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    if (n < 4)
        return s;
    for (int i = 0; i < 8; i++)
        s.total += v[i];
    s.steal = n >= 8 ? v[7] : 0;
    s.ok = true;
    return s;
}

/* The share of all CPUs' time held back between a and b, 0 to 1; 0 when
 * either reading failed or fewer than min_ticks ticks passed. */
static inline double steal_share(steal_sample_t a, steal_sample_t b,
                                 unsigned long long min_ticks)
{
    if (!a.ok || !b.ok || b.total <= a.total || b.total - a.total < min_ticks ||
        b.steal < a.steal)
        return 0;
    return (double)(b.steal - a.steal) / (double)(b.total - a.total);
}

#endif
