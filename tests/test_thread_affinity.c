/* weft_thread_opts_t.cpus: a pinned thread sees only the CPUs it asked for.
 * Skipped (77) when this process may use only one CPU. */
#define _GNU_SOURCE
#include <sched.h>
#include <weft.h>

#include "check.h"

struct report {
    int count;      /* CPUs in the thread's own mask */
    int has[2];     /* whether the requested CPUs are in it */
    int want[2];
};

static void *report_body(void *p)
{
    struct report *r = p;
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0) {
        r->count = -1;
        return NULL;
    }
    r->count = CPU_COUNT(&set);
    for (int i = 0; i < 2; i++)
        r->has[i] = r->want[i] >= 0 && CPU_ISSET(r->want[i], &set);
    return NULL;
}

static cpu_set_t usable;

static void test_pin_each_cpu(void)
{
    for (int c = 0; c < CPU_SETSIZE; c++) {
        if (!CPU_ISSET(c, &usable))
            continue;
        struct report r = {.want = {c, -1}};
        weft_thread_opts_t o = {.cpus = &c, .ncpus = 1, .name = "pinned"};
        weft_thread_t *t;
        CHECK_OK(weft_thread_start(&t, report_body, &r, &o));
        CHECK_OK(weft_thread_join(t, NULL));
        CHECK_INT(r.count, ==, 1);
        CHECK(r.has[0]);
    }
}

static void test_pin_two_cpus(void)
{
    int cpus[2], n = 0;
    for (int c = 0; c < CPU_SETSIZE && n < 2; c++)
        if (CPU_ISSET(c, &usable))
            cpus[n++] = c;
    /* Repeated indices are harmless. */
    int list[3] = {cpus[0], cpus[1], cpus[0]};
    struct report r = {.want = {cpus[0], cpus[1]}};
    weft_thread_opts_t o = {.cpus = list, .ncpus = 3};
    weft_thread_t *t;
    CHECK_OK(weft_thread_start(&t, report_body, &r, &o));
    CHECK_OK(weft_thread_join(t, NULL));
    CHECK_INT(r.count, ==, 2);
    CHECK(r.has[0] && r.has[1]);
}

int main(void)
{
    CPU_ZERO(&usable);
    if (sched_getaffinity(0, sizeof usable, &usable) != 0 || CPU_COUNT(&usable) < 2)
        check_skip("only one CPU is usable");
    RUN(test_pin_each_cpu);
    RUN(test_pin_two_cpus);
    return check_done();
}
