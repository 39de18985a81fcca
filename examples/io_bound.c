/*
 * io_bound.c - I/O-bound work: overlapping the waits is what speeds it up.
 *
 * Python (the notes' "download many sites"):
 *   for url in urls: download(url)                          # sequential
 *   with ThreadPoolExecutor(20) as ex: ex.map(download, urls) # threads
 *   await asyncio.gather(*(download(u) for u in urls))       # coroutines
 *
 * weft: a local HTTP server (coroutines on its own thread's loop) whose
 * handler waits 10 ms before it answers, like a distant site. A client
 * fetches 200 pages (scaled) from it four ways with the SAME fetch
 * function (weft_net_* calls block a plain thread and suspend a
 * coroutine): one after another; on a pool of 20 threads; on a pool of 20
 * worker processes (weft_proc_map); as 200 coroutines on one thread. Then
 * the same four ways for CPU-bound jobs, where only threads and processes
 * help (and only with more than one core): coroutines share one thread, so
 * computing never overlaps. A table of the eight times ends the lesson.
 * Only loopback (127.0.0.1) is used. Build and run: build/examples/io_bound,
 * or `weft demo io_bound`. It uses the process pool, whose fork server
 * starts before any thread (WEFT_LESSON_USES_PROCESSES at the end).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <weft.h>

#include "lesson.h"

#define SERVER_WAIT 0.010 /* each answer takes 10 ms to "arrive" */
#define POOL_THREADS 20
#define CPU_ROUNDS 3 /* the CPU-bound ways: rounds, each way's median shown */

/* ---- the server ------------------------------------------------------------ */

struct server {
    int lfd;
    weft_addr_t addr;
    uint64_t served; /* written by the server's thread, read after join */
};

static int handle(void *arg, void **result)
{
    (void)result;
    int fd = (int)(intptr_t)arg;
    char req[512];
    ssize_t n = weft_net_read_until(fd, req, sizeof req - 1, weft_deadline_in(10));
    int page = -1;
    if (n > 0) {
        req[n] = '\0';
        sscanf(req, "GET /%d", &page);
    }
    if (page >= 0 && weft_co_sleep(SERVER_WAIT) == 0) {
        char body[64], resp[256];
        int bl = snprintf(body, sizeof body, "page %d\n", page);
        int rl = snprintf(resp, sizeof resp,
                          "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
                          bl, body);
        weft_net_write_all(fd, resp, (size_t)rl, NULL);
    }
    weft_net_close(fd);
    return page >= 0 ? 0 : -EPROTO;
}

static int serve(void *arg, void **result)
{
    (void)result;
    struct server *s = arg;
    for (;;) {
        int c = weft_net_accept(s->lfd, NULL);
        if (c < 0)
            return 0; /* the lesson shut the listener down */
        s->served++;
        if (weft_co_spawn(NULL, handle, (void *)(intptr_t)c, "page", 64 * 1024) != 0)
            weft_net_close(c);
    }
}

static void *server_thread(void *arg)
{
    weft_loop_run(serve, arg, NULL);
    return NULL;
}

/* ---- one fetch, the same code on a thread and in a coroutine ---------------- */

struct fetches {
    weft_addr_t addr;
    _Atomic int wrong; /* pages whose body was not the page asked for */
    int base;          /* page numbers of this round start here */
};

static int fetch(struct fetches *f, int page)
{
    int fd = weft_net_connect_until(&f->addr, weft_deadline_in(10));
    if (fd < 0)
        return fd;
    char req[64], resp[512], want[32];
    int n = snprintf(req, sizeof req, "GET /%d HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", page);
    ssize_t r = weft_net_write_all(fd, req, (size_t)n, NULL);
    size_t have = 0;
    while (r >= 0 && have < sizeof resp - 1) {
        r = weft_net_read_until(fd, resp + have, sizeof resp - 1 - have, weft_deadline_in(10));
        if (r <= 0)
            break;
        have += (size_t)r;
    }
    weft_net_close(fd);
    if (r < 0)
        return (int)r;
    resp[have] = '\0';
    snprintf(want, sizeof want, "\r\n\r\npage %d\n", page);
    if (!strstr(resp, want))
        f->wrong++;
    return 0;
}

static int fetch_task(void *arg, void **result)
{
    (void)result;
    struct fetches *f = *(struct fetches **)arg;
    return fetch(f, (int)((intptr_t *)arg)[1]);
}

struct co_job {
    struct fetches *f;
    int page;
};

static int fetch_co(void *arg, void **result)
{
    (void)result;
    struct co_job *j = arg;
    return fetch(j->f, j->page);
}

struct co_all {
    struct fetches *f;
    int pages;
    struct co_job *jobs;
};

static int fetch_all_co(void *arg, void **result)
{
    (void)result;
    struct co_all *a = arg;
    weft_co_group_t *g;
    int r = weft_co_group_create(&g);
    if (r)
        return r;
    for (int i = 0; i < a->pages && r == 0; i++) {
        a->jobs[i] = (struct co_job){a->f, a->f->base + i};
        r = weft_co_group_spawn(g, NULL, fetch_co, &a->jobs[i], "fetch", 64 * 1024);
    }
    int w = weft_co_group_wait(g);
    weft_co_group_free(g);
    return r ? r : w;
}

/* The same fetch in a worker process: the argument is the server's address
 * and the page, the result the fetch's code and whether the body was wrong. */
struct proc_fetch {
    weft_addr_t addr;
    int page;
};

static int fetch_proc_task(weft_proc_task_t *t, const void *arg, size_t len)
{
    if (len != sizeof(struct proc_fetch))
        return -EINVAL;
    struct proc_fetch pf;
    memcpy(&pf, arg, sizeof pf);
    struct fetches f = {.addr = pf.addr};
    int32_t out[2] = {fetch(&f, pf.page), (int32_t)f.wrong};
    return weft_proc_reply(t, out, sizeof out);
}

/* ---- CPU-bound jobs ----------------------------------------------------------- */

static uint64_t crunch(uint64_t seed)
{
    /* A millisecond or two of arithmetic with nothing to wait for. */
    uint64_t x = seed | 1;
    for (int i = 0; i < 1000000; i++)
        x = x * 6364136223846793005ull + 1442695040888963407ull;
    return x;
}

static int crunch_task(void *arg, void **result)
{
    *result = (void *)(uintptr_t)crunch((uint64_t)(uintptr_t)arg);
    return 0;
}

static int crunch_proc_task(weft_proc_task_t *t, const void *arg, size_t len)
{
    if (len != sizeof(uint64_t))
        return -EINVAL;
    uint64_t seed, x;
    memcpy(&seed, arg, sizeof seed);
    x = crunch(seed);
    return weft_proc_reply(t, &x, sizeof x);
}

struct crunch_co_arg {
    int n;
    uint64_t sum;
};

static int crunch_one_co(void *arg, void **result)
{
    *result = (void *)(uintptr_t)crunch((uint64_t)(uintptr_t)arg);
    return 0;
}

static int crunch_all_co(void *arg, void **result)
{
    (void)result;
    struct crunch_co_arg *a = arg;
    weft_task_t **t = calloc((size_t)a->n, sizeof *t);
    if (!t)
        return -ENOMEM;
    for (int i = 0; i < a->n; i++)
        weft_co_spawn(&t[i], crunch_one_co, (void *)(uintptr_t)(i + 1), "crunch", 0);
    for (int i = 0; i < a->n; i++) {
        void *v = NULL;
        if (t[i] && weft_co_await(t[i], &v) == 0)
            a->sum += (uint64_t)(uintptr_t)v;
        weft_task_release(t[i]);
    }
    free(t);
    return 0;
}

/* ---- the lesson --------------------------------------------------------------- */

/* The median of n (at most CPU_ROUNDS) times. */
static double median(const double *v, int n)
{
    double s[CPU_ROUNDS];
    for (int i = 0; i < n; i++) {
        int j = i;
        for (; j > 0 && s[j - 1] > v[i]; j--)
            s[j] = s[j - 1];
        s[j] = v[i];
    }
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/* The process way of one kind of job: start a pool of `workers` processes
 * (timed apart: processes cost more to start), map fn over items, stop it.
 * 1 if the fork server could not start (a program that ran threads first,
 * as under TSan): the lesson then says so and goes on without processes. */
static int proc_way(int workers, weft_proc_fn fn, const void *items, size_t item_size,
                    size_t n, void *results, size_t result_size, double *start, double *run_s)
{
    weft_time_t t0 = weft_now();
    weft_proc_pool_t *pool;
    weft_proc_opts_t o = {.workers = workers};
    int rc = weft_proc_pool_create(&pool, &o);
    *start = weft_seconds_between(t0, weft_now());
    if (rc == WEFT_ETHREADED)
        return 1;
    if (rc)
        return rc;
    t0 = weft_now();
    rc = weft_proc_map(pool, fn, items, item_size, n, results, result_size, NULL, 1);
    *run_s = weft_seconds_between(t0, weft_now());
    weft_proc_pool_free(pool);
    return rc;
}

static int io_bound_lesson(lesson_run_t *run)
{
    int pages = (int)lesson_scaled(run, 200);
    lesson_say(run, "A local web server answers each page after waiting %d ms, like a distant",
               (int)(SERVER_WAIT * 1000));
    lesson_say(run, "site. Fetch %d pages: one after another, with %d threads, with %d processes,",
               pages, POOL_THREADS, POOL_THREADS);
    lesson_say(run, "with coroutines.");

    struct server s = {0};
    weft_addr_t any;
    weft_addr_ip(&any, "127.0.0.1", 0);
    s.lfd = weft_net_listen(&any, 0);
    if (s.lfd < 0)
        return lesson_fail_rc(run, "weft_net_listen", s.lfd);
    weft_net_local_addr(s.lfd, &s.addr);
    pthread_t th;
    if (pthread_create(&th, NULL, server_thread, &s) != 0) {
        weft_net_close(s.lfd);
        return lesson_fail(run, "cannot start the server thread");
    }
    struct fetches f = {.addr = s.addr};
    int rc = 0;

    /* 1. Sequential, on this thread (the weft_net calls block it). */
    weft_time_t t0 = weft_now();
    for (int i = 0; i < pages && rc == 0; i++)
        rc = fetch(&f, i);
    double seq = weft_seconds_between(t0, weft_now());

    /* 2. A pool of threads, each fetch a task. */
    double thr = 0;
    weft_pool_t *pool = NULL;
    weft_pool_opts_t po = {.workers = POOL_THREADS};
    intptr_t(*args)[2] = calloc((size_t)pages, sizeof *args);
    weft_future_t **futs = calloc((size_t)pages, sizeof *futs);
    if (rc == 0 && (!args || !futs || (rc = weft_pool_create(&pool, &po)) != 0))
        rc = rc ? rc : -ENOMEM;
    if (rc == 0) {
        f.base = pages;
        t0 = weft_now();
        for (int i = 0; i < pages && rc == 0; i++) {
            args[i][0] = (intptr_t)&f;
            args[i][1] = f.base + i;
            rc = weft_pool_submit(pool, fetch_task, args[i], &futs[i]);
        }
        for (int i = 0; i < pages; i++)
            if (futs[i]) {
                int r = weft_future_get(futs[i], NULL);
                if (r && !rc)
                    rc = r;
                weft_future_release(futs[i]);
            }
        thr = weft_seconds_between(t0, weft_now());
    }

    /* 3. A pool of processes, each fetch a task (one item per chunk, so
     * that the workers overlap their waits as the threads do). */
    double prc = 0, prc_start = 0;
    bool have_proc = false;
    struct proc_fetch *items = calloc((size_t)pages, sizeof *items);
    int32_t(*res)[2] = calloc((size_t)pages, sizeof *res);
    if (rc == 0 && (!items || !res))
        rc = -ENOMEM;
    if (rc == 0) {
        for (int i = 0; i < pages; i++)
            items[i] = (struct proc_fetch){s.addr, 2 * pages + i};
        int pr = proc_way(POOL_THREADS, fetch_proc_task, items, sizeof *items, (size_t)pages, res,
                          sizeof *res, &prc_start, &prc);
        if (pr == 0) {
            have_proc = true;
            for (int i = 0; i < pages; i++) {
                if (res[i][0] != 0 && rc == 0)
                    rc = res[i][0];
                f.wrong += res[i][1];
            }
        } else if (pr != 1) {
            rc = pr;
        }
    }
    free(items);
    free(res);

    /* 4. Coroutines: every fetch at once, all on this one thread. */
    double cor = 0;
    struct co_all ca = {&f, pages, calloc((size_t)pages, sizeof(struct co_job))};
    if (rc == 0 && !ca.jobs)
        rc = -ENOMEM;
    if (rc == 0) {
        f.base = 3 * pages;
        t0 = weft_now();
        rc = weft_loop_run(fetch_all_co, &ca, NULL);
        cor = weft_seconds_between(t0, weft_now());
    }
    free(ca.jobs);
    free(futs);

    weft_net_shutdown(s.lfd, SHUT_RDWR); /* wakes the server's accept */
    pthread_join(th, NULL);
    weft_net_close(s.lfd);
    if (rc != 0) {
        free(args);
        if (pool)
            weft_pool_free(pool);
        return lesson_fail_rc(run, "fetching a page", rc);
    }
    int ways = have_proc ? 4 : 3;
    if (f.wrong || s.served != (uint64_t)(ways * pages)) {
        free(args);
        weft_pool_free(pool);
        if (f.wrong)
            return lesson_fail(run, "%d pages came back with the wrong body", (int)f.wrong);
        return lesson_fail(run, "the server saw %llu connections, expected %d",
                           (unsigned long long)s.served, ways * pages);
    }

    lesson_figure_count(run, "pages", "pages fetched per way (each checked)", (uint64_t)pages);
    lesson_figure_time(run, "io_sequential", "I/O-bound, sequential", seq);
    char label[80];
    snprintf(label, sizeof label, "I/O-bound, pool of %d threads", POOL_THREADS);
    lesson_figure_time(run, "io_threads", label, thr);
    if (have_proc) {
        snprintf(label, sizeof label, "I/O-bound, pool of %d processes", POOL_THREADS);
        lesson_figure_time(run, "io_processes", label, prc);
        lesson_figure_time(run, "io_processes_start", "(starting those processes, not counted)",
                           prc_start);
    }
    lesson_figure_time(run, "io_coroutines", "I/O-bound, coroutines on one thread", cor);
    lesson_figure_num(run, "io_threads_speedup", "threads: speedup over sequential", seq / thr, "x");
    if (have_proc)
        lesson_figure_num(run, "io_processes_speedup", "processes: speedup over sequential",
                          seq / prc, "x");
    lesson_figure_num(run, "io_coroutines_speedup", "coroutines: speedup over sequential",
                      seq / cor, "x");
    lesson_say(run, "While one fetch waits, the others go on: %d threads or processes overlap %d",
               POOL_THREADS, POOL_THREADS);
    lesson_say(run, "waits at a time, the coroutines all %d, on one thread, with no lock.", pages);

    /* CPU-bound: the same four ways. */
    int jobs = (int)lesson_scaled(run, 100);
    if (jobs < 1)
        jobs = 1;
    int cpus = weft_cpu_count();
    lesson_say(run, "Now %d CPU-bound jobs (a millisecond or two of arithmetic each), the same ways,",
               jobs);
    lesson_say(run, "in %d rounds; each time below is the median of its %d:", CPU_ROUNDS, CPU_ROUNDS);
    /* CPU_ROUNDS rounds, each running the four ways one after the other;
     * each way's figure is its median. One run of each is at the mercy of
     * whatever else the machine does in that moment, and the differences
     * here are only a factor of the core count. */
    /* A pool of its own, one thread per CPU (a pool's size is fixed: the
     * I/O pool's 20 threads would oversubscribe the cores). */
    weft_pool_free(pool);
    pool = NULL;
    weft_pool_opts_t cpo = {.workers = cpus};
    int pool_rc = weft_pool_create(&pool, &cpo);
    if (pool_rc != 0) {
        free(args);
        return lesson_fail_rc(run, "a pool of one thread per CPU", pool_rc);
    }
    weft_future_t **cf = calloc((size_t)jobs, sizeof *cf);
    uint64_t *seeds = calloc((size_t)jobs, sizeof *seeds);
    uint64_t *outs = calloc((size_t)jobs, sizeof *outs);
    weft_proc_pool_t *ppool = NULL;
    int prc_rc = 0;
    const char *failed = "the CPU-bound jobs"; /* what prc_rc is about */
    if (!cf || !seeds || !outs)
        prc_rc = -ENOMEM;
    for (int i = 0; prc_rc == 0 && i < jobs; i++)
        seeds[i] = (uint64_t)(i + 1);
    if (prc_rc == 0 && have_proc) {
        weft_proc_opts_t o = {.workers = cpus};
        prc_rc = weft_proc_pool_create(&ppool, &o);
        if (prc_rc != 0)
            failed = "the process pool for the CPU-bound jobs";
    }
    double cs[CPU_ROUNDS], ct[CPU_ROUNDS], cp[CPU_ROUNDS], cc_s[CPU_ROUNDS];
    bool same = true;
    for (int round = 0; prc_rc == 0 && round < CPU_ROUNDS; round++) {
        uint64_t want = 0, got_thr = 0, got_proc = 0;
        t0 = weft_now();
        for (int i = 0; i < jobs; i++)
            want += crunch((uint64_t)(i + 1));
        cs[round] = weft_seconds_between(t0, weft_now());

        t0 = weft_now();
        for (int i = 0; i < jobs; i++)
            if (weft_pool_submit(pool, crunch_task, (void *)(uintptr_t)(i + 1), &cf[i]) != 0)
                cf[i] = NULL;
        for (int i = 0; i < jobs; i++) {
            void *v = NULL;
            if (cf[i] && weft_future_get(cf[i], &v) == 0)
                got_thr += (uint64_t)(uintptr_t)v;
            weft_future_release(cf[i]);
        }
        ct[round] = weft_seconds_between(t0, weft_now());

        cp[round] = 0;
        if (have_proc) {
            t0 = weft_now();
            prc_rc = weft_proc_map(ppool, crunch_proc_task, seeds, sizeof *seeds, (size_t)jobs,
                                   outs, sizeof *outs, NULL, 1);
            if (prc_rc != 0)
                failed = "the CPU-bound jobs on processes";
            cp[round] = weft_seconds_between(t0, weft_now());
            for (int i = 0; prc_rc == 0 && i < jobs; i++)
                got_proc += outs[i];
        }

        struct crunch_co_arg cc = {jobs, 0};
        t0 = weft_now();
        weft_loop_run(crunch_all_co, &cc, NULL);
        cc_s[round] = weft_seconds_between(t0, weft_now());
        if (got_thr != want || cc.sum != want || (have_proc && got_proc != want))
            same = false;
    }
    if (ppool)
        weft_proc_pool_free(ppool);
    free(cf);
    free(seeds);
    free(outs);
    weft_pool_free(pool);
    free(args);
    if (prc_rc != 0)
        return lesson_fail_rc(run, failed, prc_rc);
    if (!same)
        return lesson_fail(run, "the CPU-bound results differ between the ways");
    double cseq = median(cs, CPU_ROUNDS), cthr = median(ct, CPU_ROUNDS),
           cprc = median(cp, CPU_ROUNDS), ccor = median(cc_s, CPU_ROUNDS);
    lesson_figure_time(run, "cpu_sequential", "CPU-bound, sequential", cseq);
    snprintf(label, sizeof label, "CPU-bound, pool of %d thread%s (one per CPU)", cpus,
             cpus > 1 ? "s" : "");
    lesson_figure_time(run, "cpu_threads", label, cthr);
    if (have_proc) {
        snprintf(label, sizeof label, "CPU-bound, pool of %d process%s (one per CPU)", cpus,
                 cpus > 1 ? "es" : "");
        lesson_figure_time(run, "cpu_processes", label, cprc);
    }
    lesson_figure_time(run, "cpu_coroutines", "CPU-bound, coroutines on one thread", ccor);

    /* The notes' table: both kinds of job, every way. */
    char b[4][32];
    lesson_say(run, "%-11s %12s %12s %12s %12s", "", "sequential", "threads", "processes",
               "coroutines");
    lesson_say(run, "%-11s %12s %12s %12s %12s", "I/O-bound", lesson_fmt_time(b[0], 32, seq),
               lesson_fmt_time(b[1], 32, thr), have_proc ? lesson_fmt_time(b[2], 32, prc) : "-",
               lesson_fmt_time(b[3], 32, cor));
    lesson_say(run, "%-11s %12s %12s %12s %12s", "CPU-bound", lesson_fmt_time(b[0], 32, cseq),
               lesson_fmt_time(b[1], 32, cthr), have_proc ? lesson_fmt_time(b[2], 32, cprc) : "-",
               lesson_fmt_time(b[3], 32, ccor));
    lesson_say(run, "(%d threads and %d processes for I/O; %d of each, one per CPU, for computing.)",
               POOL_THREADS, POOL_THREADS, cpus);
    lesson_say(run, "Coroutines take turns on one thread: computing never overlaps, so they do not");
    lesson_say(run, "help CPU-bound work. Threads and processes do, on several cores (in C there is");
    lesson_say(run, "no GIL, so threads are enough; processes cost more to start%s).",
               cpus > 1 ? "" : "; this machine lets us use only one core");
    if (!have_proc)
        lesson_say(run, "(No processes here: the program ran threads before weft_proc_init.)");
    if (have_proc)
        lesson_key(run, "I/O %.1f/%.1f/%.1fx, CPU %.1f/%.1f/%.1fx (thr/proc/co)", seq / thr,
                   seq / prc, seq / cor, cseq / cthr, cseq / cprc, cseq / ccor);
    else
        lesson_key(run, "I/O: threads %.1fx, coroutines %.1fx; CPU: threads %.1fx, coroutines %.1fx",
                   seq / thr, seq / cor, cseq / cthr, cseq / ccor);
    return 0;
}

WEFT_LESSON(85, "io_bound", "I/O-bound work: overlap the waits (threads, processes, coroutines)",
            io_bound_lesson)
WEFT_LESSON_USES_PROCESSES(io_bound_lesson)
