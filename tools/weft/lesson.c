/*
 * lesson.c - the lesson registry and the runner behind `weft tour`,
 * `weft demo` and the standalone examples: headings, figures, the summary
 * table, and the options they share.
 *
 * Lessons register from constructors, before main and on one thread, so the
 * registry needs no lock; it is sorted once, on first use, after main has
 * started.
 */
#include "lesson.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <weft.h>

#include "../../bench/steal.h"

struct lesson_run {
    const lesson_t *lesson;     /* what runs */
    const lesson_opts_t *opts;  /* how */
    char key[96];               /* the key figure for the summary */
};

/* ---- registry ------------------------------------------------------------ */

static lesson_t *registry;       /* as registered, newest first */
static const lesson_t **sorted;  /* by order, then name; built on first use */
static size_t nsorted;

void lesson_register(lesson_t *l)
{
    if (!l || !l->name || !l->fn)
        return;
    l->next = registry;
    registry = l;
}

static int by_order(const void *a, const void *b)
{
    const lesson_t *x = *(const lesson_t *const *)a, *y = *(const lesson_t *const *)b;
    if (x->order != y->order)
        return x->order < y->order ? -1 : 1;
    return strcmp(x->name, y->name);
}

static void sort_registry(void)
{
    if (sorted || !registry)
        return;
    size_t n = 0;
    for (lesson_t *l = registry; l; l = l->next)
        n++;
    sorted = calloc(n, sizeof *sorted);
    if (!sorted) {
        fprintf(stderr, "weft: out of memory\n");
        exit(1);
    }
    n = 0;
    for (lesson_t *l = registry; l; l = l->next)
        sorted[n++] = l;
    qsort(sorted, n, sizeof *sorted, by_order);
    nsorted = n;
    /* Two lessons with one name would make `weft demo NAME` ambiguous: a
     * mistake in the build, reported before anything runs. */
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            if (strcmp(sorted[i]->name, sorted[j]->name) == 0) {
                fprintf(stderr, "weft: two lessons are named '%s' (%s and %s)\n",
                        sorted[i]->name, sorted[i]->file, sorted[j]->file);
                exit(1);
            }
}

size_t lesson_count(void)
{
    sort_registry();
    return nsorted;
}

const lesson_t *lesson_at(size_t i)
{
    sort_registry();
    return i < nsorted ? sorted[i] : NULL;
}

const lesson_t *lesson_find(const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < lesson_count(); i++)
        if (strcmp(sorted[i]->name, name) == 0)
            return sorted[i];
    return NULL;
}

/* ---- formatting ---------------------------------------------------------- */

const char *lesson_fmt_count(char *buf, size_t size, uint64_t value)
{
    char digits[32];
    int n = snprintf(digits, sizeof digits, "%" PRIu64, value);
    size_t o = 0;
    for (int i = 0; i < n && o + 1 < size; i++) {
        if (i > 0 && (n - i) % 3 == 0 && o + 2 < size)
            buf[o++] = ',';
        buf[o++] = digits[i];
    }
    if (size)
        buf[o < size ? o : size - 1] = '\0';
    return buf;
}

const char *lesson_fmt_time(char *buf, size_t size, double s)
{
    if (s < 1e-6)
        snprintf(buf, size, "%.0f ns", s * 1e9); /* a loop of 100 adds: 26 ns, not "0.0 us" */
    else if (s < 1e-3)
        snprintf(buf, size, "%.1f us", s * 1e6);
    else if (s < 1.0)
        snprintf(buf, size, "%.1f ms", s * 1e3);
    else
        snprintf(buf, size, "%.2f s", s);
    return buf;
}

/* Words go to stdout, or to stderr when stdout carries JSON. */
static FILE *words(const lesson_run_t *r)
{
    return r && r->opts->json ? stderr : stdout;
}

/* Write s as a JSON string (quotes included). */
static void json_str(char *out, size_t size, const char *s)
{
    size_t o = 0;
    if (size < 3)
        return;
    out[o++] = '"';
    for (; *s && o + 7 < size; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20) {
            o += (size_t)snprintf(out + o, size - o, "\\u%04x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    out[o++] = '"';
    out[o] = '\0';
}

/* ---- inside a lesson ----------------------------------------------------- */

double lesson_scale(const lesson_run_t *r)
{
    return r ? r->opts->scale : 1.0;
}

uint64_t lesson_scaled(const lesson_run_t *r, uint64_t n)
{
    double v = (double)n * lesson_scale(r);
    if (!(v >= 1.0))
        return 1;
    if (v >= 1e18)
        return (uint64_t)1e18;
    return (uint64_t)llround(v);
}

void lesson_say(lesson_run_t *r, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    /* One call per line: stdio locks the stream for its duration, so lines
     * from several threads interleave but are never torn. */
    fprintf(words(r), "  %s\n", line);
}

/* Figures read as a two-column table: the label, then its value at a fixed
 * column. A label longer than the column is wrapped at a space (or cut, if
 * one word is longer), its last line carrying the value, so values never
 * drift out of line. */
#define FIGURE_COL 48

static void figure_words(lesson_run_t *r, const char *label, const char *value)
{
    FILE *f = words(r);
    size_t len = strlen(label);
    flockfile(f); /* a wrapped figure's lines stay together */
    while (len > FIGURE_COL) {
        size_t cut = FIGURE_COL;
        while (cut > 0 && label[cut] != ' ')
            cut--;
        if (cut == 0)
            cut = FIGURE_COL;
        fprintf(f, "    %.*s\n", (int)cut, label);
        while (label[cut] == ' ')
            cut++;
        label += cut;
        len -= cut;
    }
    fprintf(f, "    %-*s %s\n", FIGURE_COL, label, value);
    funlockfile(f);
}

static void figure_json(lesson_run_t *r, const char *key, const char *label,
                        const char *value_json, const char *unit)
{
    char k[128], l[512], u[64];
    json_str(k, sizeof k, key);
    json_str(l, sizeof l, label);
    json_str(u, sizeof u, unit);
    char n[128];
    json_str(n, sizeof n, r->lesson->name);
    printf("{\"lesson\":%s,\"figure\":%s,\"label\":%s,\"value\":%s,\"unit\":%s}\n", n, k, l,
           value_json, u);
}

void lesson_figure_count(lesson_run_t *r, const char *key, const char *label, uint64_t value)
{
    char buf[64];
    figure_words(r, label, lesson_fmt_count(buf, sizeof buf, value));
    if (r->opts->json) {
        snprintf(buf, sizeof buf, "%" PRIu64, value);
        figure_json(r, key, label, buf, "count");
    }
}

void lesson_figure_time(lesson_run_t *r, const char *key, const char *label, double seconds)
{
    char buf[64];
    figure_words(r, label, lesson_fmt_time(buf, sizeof buf, seconds));
    if (r->opts->json) {
        snprintf(buf, sizeof buf, "%.9g", seconds);
        figure_json(r, key, label, buf, "s");
    }
}

void lesson_figure_num(lesson_run_t *r, const char *key, const char *label, double value,
                       const char *unit)
{
    char buf[96], num[48];
    /* Large values read best as whole numbers with separators. */
    if (isfinite(value) && value >= 1000 && value < 1e18)
        lesson_fmt_count(num, sizeof num, (uint64_t)llround(value));
    else
        snprintf(num, sizeof num, "%.3g", value);
    snprintf(buf, sizeof buf, "%s%s%s", num, unit && *unit ? " " : "", unit ? unit : "");
    figure_words(r, label, buf);
    if (r->opts->json) {
        snprintf(buf, sizeof buf, "%.9g", isfinite(value) ? value : 0.0);
        figure_json(r, key, label, buf, unit ? unit : "");
    }
}

void lesson_figure_text(lesson_run_t *r, const char *key, const char *label, const char *text)
{
    figure_words(r, label, text);
    if (r->opts->json) {
        char v[512];
        json_str(v, sizeof v, text);
        figure_json(r, key, label, v, "text");
    }
}

void lesson_key(lesson_run_t *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->key, sizeof r->key, fmt, ap);
    va_end(ap);
}

int lesson_fail(lesson_run_t *r, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "  FAILED: %s\n", line);
    if (r && !r->key[0])
        snprintf(r->key, sizeof r->key, "FAILED");
    return 1;
}

int lesson_fail_rc(lesson_run_t *r, const char *what, int rc)
{
    return lesson_fail(r, "%s returned %d (%s)", what, rc, weft_strerror(rc));
}

/* ---- the machine's share ------------------------------------------------- */

/*
 * On a virtual machine the hypervisor may hold back CPU time from the guest
 * (steal, bench/steal.h): a busy host then stretches every timed figure,
 * whatever the lesson does. The runner reads it before and after each
 * lesson and says so when it was large enough to matter. Fewer than
 * STEAL_TICKS ticks (a quarter of a second on two CPUs) say too little to
 * report: the share is 0 then.
 */
#define STEAL_TICKS 50

/* From this share on, the runner says so under the lesson. */
#define STEAL_NOTE 0.05

/* ---- running ------------------------------------------------------------- */

struct outcome {
    const lesson_t *lesson;
    char key[96];
    double seconds;
    int rc;
};

static void run_one(const lesson_opts_t *opts, const lesson_t *l, size_t i, size_t n,
                    struct outcome *out)
{
    lesson_run_t run = {.lesson = l, .opts = opts};
    FILE *w = words(&run);
    fprintf(w, "\n== %zu/%zu  %s: %s ==\n", i + 1, n, l->name, l->title);
    fflush(w);
    steal_sample_t c0 = steal_sample();
    weft_time_t t0 = weft_now();
    int rc = l->fn(&run);
    double s = weft_seconds_between(t0, weft_now());
    double steal = steal_share(c0, steal_sample(), STEAL_TICKS);
    fflush(stdout);
    if (steal >= STEAL_NOTE) {
        lesson_say(&run, "(Meanwhile this virtual machine's host held back %.0f%% of its CPU time:",
                   steal * 100);
        lesson_say(&run, "the times above are stretched by that, whatever the lesson did.)");
    }
    if (rc != 0 && !run.key[0])
        snprintf(run.key, sizeof run.key, "FAILED");
    out->lesson = l;
    out->seconds = s;
    out->rc = rc;
    memcpy(out->key, run.key, sizeof out->key);
    if (opts->json) {
        char name[128], key[256];
        json_str(name, sizeof name, l->name);
        json_str(key, sizeof key, run.key);
        printf("{\"lesson\":%s,\"order\":%d,\"ok\":%s,\"seconds\":%.9g,\"steal\":%.4f,"
               "\"key\":%s}\n",
               name, l->order, rc == 0 ? "true" : "false", s, steal, key);
        fflush(stdout);
    }
}

static int run_list(const lesson_opts_t *opts, const lesson_t **list, size_t n, bool summary)
{
    struct outcome *res = calloc(n ? n : 1, sizeof *res);
    if (!res) {
        fprintf(stderr, "weft: out of memory\n");
        return 1;
    }
    FILE *w = opts->json ? stderr : stdout;
    /* Before the first lesson starts a thread: the process pool's fork
     * server, if a lesson of this run uses processes. */
    for (size_t i = 0; i < n; i++) {
        if (list[i]->processes) {
            int r = weft_proc_init();
            if (r < 0)
                fprintf(stderr, "weft: cannot start the fork server: %s\n", weft_strerror(r));
            break;
        }
    }
    int cpus = weft_cpu_count();
    fprintf(w, "weft %s: %zu lesson%s, %d CPU%s usable, scale %g\n", weft_version(), n,
            n == 1 ? "" : "s", cpus, cpus == 1 ? "" : "s", opts->scale);
    steal_sample_t c0 = steal_sample();
    weft_time_t t0 = weft_now();
    int failed = 0;
    for (size_t i = 0; i < n; i++) {
        run_one(opts, list[i], i, n, &res[i]);
        failed += res[i].rc != 0;
    }
    double total = weft_seconds_between(t0, weft_now());
    double steal = steal_share(c0, steal_sample(), STEAL_TICKS);

    if (summary) {
        const char *verdict =
            failed ? "SOME LESSONS FAILED (see above)" : "all lessons ran and checked out";
        int wname = 6, wkey = (int)strlen(verdict);
        for (size_t i = 0; i < n; i++) {
            if ((int)strlen(res[i].lesson->name) > wname)
                wname = (int)strlen(res[i].lesson->name);
            if ((int)strlen(res[i].key) > wkey)
                wkey = (int)strlen(res[i].key);
        }
        char t[32];
        fprintf(w, "\n== Summary ==\n");
        fprintf(w, "  %-*s  %-*s  %9s\n", wname, "lesson", wkey, "key figure", "time");
        for (size_t i = 0; i < n; i++)
            fprintf(w, "  %-*s  %-*s  %9s\n", wname, res[i].lesson->name, wkey, res[i].key,
                    lesson_fmt_time(t, sizeof t, res[i].seconds));
        fprintf(w, "  %-*s  %-*s  %9s\n", wname, "total", wkey, verdict,
                lesson_fmt_time(t, sizeof t, total));
        if (steal >= STEAL_NOTE)
            fprintf(w, "  This virtual machine's host held back %.0f%% of its CPU time during the"
                       " tour:\n  timings vary from run to run with that.\n",
                    steal * 100);
    } else if (failed) {
        fprintf(stderr, "weft: the lesson failed\n");
    }
    if (opts->json) {
        printf("{\"tour\":\"done\",\"lessons\":%zu,\"failed\":%d,\"seconds\":%.9g,"
               "\"steal\":%.4f,\"scale\":%.9g,\"cpus\":%d}\n",
               n, failed, total, steal, opts->scale, cpus);
    }
    fflush(stdout);
    fflush(stderr);
    free(res);
    return failed ? 1 : 0;
}

int lesson_tour(const lesson_opts_t *opts)
{
    size_t n = lesson_count();
    if (n == 0) {
        fprintf(stderr, "weft: no lessons were built in\n");
        return 1;
    }
    return run_list(opts, sorted, n, true);
}

int lesson_demo(const lesson_opts_t *opts, const char *const *names, int n)
{
    if (n <= 0) {
        fprintf(stderr, "weft: demo needs a lesson name (`weft list` shows them)\n");
        return 2;
    }
    const lesson_t **list = calloc((size_t)n, sizeof *list);
    if (!list) {
        fprintf(stderr, "weft: out of memory\n");
        return 1;
    }
    for (int i = 0; i < n; i++) {
        list[i] = lesson_find(names[i]);
        if (!list[i]) {
            fprintf(stderr, "weft: no lesson named '%s' (`weft list` shows them)\n", names[i]);
            free(list);
            return 2;
        }
    }
    int rc = run_list(opts, list, (size_t)n, n > 1);
    free(list);
    return rc;
}

/* ---- options ------------------------------------------------------------- */

static bool parse_scale(const char *s, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !(v > 0) || !isfinite(v) || v > 1000)
        return false;
    *out = v;
    return true;
}

int lesson_parse_opts(lesson_opts_t *opts, int argc, char **argv, const char *prog)
{
    double env_scale = 1.0, arg_scale = 0;
    bool quick = false;
    opts->json = false;
    const char *env = getenv("WEFT_TOUR_SCALE");
    bool env_bad = env && *env && !parse_scale(env, &env_scale);
    int npos = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--quick") == 0) {
            quick = true;
        } else if (strcmp(a, "--json") == 0) {
            opts->json = true;
        } else if (strcmp(a, "--scale") == 0 || strncmp(a, "--scale=", 8) == 0) {
            const char *v = a[7] == '=' ? a + 8 : (i + 1 < argc ? argv[++i] : NULL);
            if (!v || !parse_scale(v, &arg_scale)) {
                fprintf(stderr, "%s: --scale needs a number in (0, 1000]\n", prog);
                return -1;
            }
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "%s: unknown option '%s' (try --help)\n", prog, a);
            return -1;
        } else {
            argv[npos++] = argv[i];
        }
    }
    /* --scale wins over --quick, which wins over the environment; a bad
     * WEFT_TOUR_SCALE is an error only when it would be used. */
    if (env_bad && !(arg_scale > 0) && !quick) {
        fprintf(stderr, "%s: WEFT_TOUR_SCALE='%s' is not a number in (0, 1000]\n", prog, env);
        return -1;
    }
    opts->scale = arg_scale > 0 ? arg_scale : quick ? 0.05 : env_scale;
    return npos;
}

int lesson_standalone_main(const lesson_t *l, int argc, char **argv)
{
    const char *prog = argc > 0 && argv[0] ? argv[0] : l->name;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: %s [--quick] [--scale X] [--json]\n\n"
                   "%s: %s\n"
                   "The same lesson as `weft demo %s`.\n\n"
                   "  --quick    small sizes (scale 0.05)\n"
                   "  --scale X  multiply every size by X (also WEFT_TOUR_SCALE=X)\n"
                   "  --json     figures as JSON lines on stdout, words on stderr\n",
                   prog, l->name, l->title, l->name);
            return 0;
        }
    }
    lesson_opts_t opts;
    int npos = lesson_parse_opts(&opts, argc - 1, argv + 1, prog);
    if (npos < 0)
        return 2;
    if (npos > 0) {
        fprintf(stderr, "%s: unexpected argument '%s' (try --help)\n", prog, argv[1]);
        return 2;
    }
    const lesson_t *list[1] = {l};
    return run_list(&opts, list, 1, false);
}
