/*
 * lesson.h - how a lesson of `weft tour` is written and registered.
 *
 * A lesson is one C file (in examples/, so that it is also a standalone
 * program) holding a function that shows one idea of the course notes and
 * reports what it measured. The file ends with
 *
 *     WEFT_LESSON(30, "start_new_thread", "Starting and joining a thread",
 *                 start_new_thread_lesson)
 *
 * which registers the lesson before main runs (a constructor), so a new
 * lesson needs no edit to any shared table: drop the file in examples/ and
 * the build picks it up (tools/weft/CMakeLists.txt takes every C file in examples/
 * that contains a line starting with WEFT_LESSON). `weft tour` runs the
 * lessons sorted by their order number; the numbers leave gaps so lessons
 * from other parts of weft can slot in between.
 *
 * The same file built as an example (examples/CMakeLists.txt defines
 * WEFT_LESSON_STANDALONE) gets a main() from the macro that runs just this
 * lesson, with the same options as `weft demo`.
 *
 * Rules for a lesson (the tour's promise to its reader):
 *   - say in one or two lines of plain words what it shows (lesson_say);
 *   - print only numbers it measured on this machine (lesson_figure_*),
 *     never a number it did not measure;
 *   - take its sizes from lesson_scaled(), so `--quick` and WEFT_TOUR_SCALE
 *     can shrink it for CI;
 *   - check its own invariants (a count that must add up) and return
 *     nonzero, after saying why with lesson_fail, when one does not hold;
 *   - set one key figure for the summary table (lesson_key).
 *
 * The lesson functions may be called from any thread: output is written
 * with one locked stdio call per line.
 */
#ifndef WEFT_TOOL_LESSON_H
#define WEFT_TOOL_LESSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One run of one lesson: its options and what it reported. Private. */
typedef struct lesson_run lesson_run_t;

/* The body of a lesson: 0 when it ran and its checks held, nonzero if not. */
typedef int (*lesson_fn)(lesson_run_t *run);

/* A registered lesson. Filled in by WEFT_LESSON; never written after. */
typedef struct lesson {
    int order;           /* position in the tour, lowest first */
    const char *name;    /* what `weft demo NAME` takes: [a-z0-9_]+ */
    const char *title;   /* one line of plain words */
    lesson_fn fn;        /* the lesson itself */
    const char *file;    /* the source file, shown by `weft list` */
    bool processes;      /* needs the process pool's fork server, started
                            before the first lesson runs (while the program
                            has one thread); set by WEFT_LESSON_USES_PROCESSES */
    struct lesson *next; /* registry link (private) */
} lesson_t;

/* Add a lesson to the registry (called by the WEFT_LESSON constructor). */
void lesson_register(lesson_t *l);

/* Options of a run, as parsed from the command line and environment. */
typedef struct lesson_opts {
    double scale; /* multiplies every size; 1 by default, --quick = 0.05 */
    bool json;    /* figures as JSON lines on stdout, words on stderr */
} lesson_opts_t;

/* Run the lessons sorted by order (or the named ones), print headings,
 * figures and, for a tour, a summary table. Returns 0 if every lesson
 * succeeded, 1 otherwise. */
int lesson_tour(const lesson_opts_t *opts);
int lesson_demo(const lesson_opts_t *opts, const char *const *names, int n);
/* The registered lessons, sorted by order. */
size_t lesson_count(void);
const lesson_t *lesson_at(size_t i);
const lesson_t *lesson_find(const char *name);

/*
 * Parse the options shared by `weft tour`, `weft demo` and the standalone
 * examples: --quick, --scale X, --json, and WEFT_TOUR_SCALE from the
 * environment. Non-option arguments are moved to the front of argv and
 * their count returned; -1 after printing an error for a bad option.
 */
int lesson_parse_opts(lesson_opts_t *opts, int argc, char **argv, const char *prog);
/* main() of a standalone example: run one lesson. Exit code 0, 1 or 2. */
int lesson_standalone_main(const lesson_t *l, int argc, char **argv);

/* ---- inside a lesson ------------------------------------------------ */

/* The size to use for something that is n at scale 1 (never less than 1). */
uint64_t lesson_scaled(const lesson_run_t *r, uint64_t n);
/* The scale of this run. */
double lesson_scale(const lesson_run_t *r);
/* A line of plain words (printf format); indented under the heading. */
void lesson_say(lesson_run_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/*
 * Figures: a key (identifier, used in JSON), a label in words, and the value
 * measured. Counts are printed with thousands separators; times in us, ms or
 * s as fits.
 */
void lesson_figure_count(lesson_run_t *r, const char *key, const char *label, uint64_t value);
void lesson_figure_time(lesson_run_t *r, const char *key, const char *label, double seconds);
void lesson_figure_num(lesson_run_t *r, const char *key, const char *label, double value,
                       const char *unit);
void lesson_figure_text(lesson_run_t *r, const char *key, const char *label, const char *text);
/* The key figure shown in the summary table (printf format, kept short). */
void lesson_key(lesson_run_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Say what went wrong and return 1, for `return lesson_fail(...)`. */
int lesson_fail(lesson_run_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The same for a weft call that returned the error code rc. */
int lesson_fail_rc(lesson_run_t *r, const char *what, int rc);

/* Formatting helpers for lesson_say and lesson_key: write into buf and
 * return it. "10,000,000"; "12.3 ms". */
const char *lesson_fmt_count(char *buf, size_t size, uint64_t value);
const char *lesson_fmt_time(char *buf, size_t size, double seconds);

/* ---- registration ---------------------------------------------------- */

#ifdef WEFT_LESSON_STANDALONE
#define WEFT_LESSON_MAIN_(fn_)                                                   \
    int main(int argc, char **argv)                                              \
    {                                                                            \
        return lesson_standalone_main(&lesson_desc_##fn_, argc, argv);           \
    }
#else
#define WEFT_LESSON_MAIN_(fn_)
#endif

/* Register fn_ as lesson name_ at position order_ of the tour. Use once per
 * lesson, at file scope, at the end of the file. */
#define WEFT_LESSON(order_, name_, title_, fn_)                                  \
    static lesson_t lesson_desc_##fn_ = {(order_), (name_), (title_), (fn_),     \
                                         __FILE__, false, NULL};                 \
    __attribute__((constructor)) static void lesson_register_##fn_(void)         \
    {                                                                            \
        lesson_register(&lesson_desc_##fn_);                                     \
    }                                                                            \
    WEFT_LESSON_MAIN_(fn_)

/* After a WEFT_LESSON line: the lesson uses weft's process pool, whose fork
 * server must start while the program still has one thread. The tour (and
 * `weft demo`, and the standalone example) then calls weft_proc_init() once,
 * before the first lesson of the run, and only when such a lesson is in it:
 * `weft list` or a threads-only demo forks nothing. */
#define WEFT_LESSON_USES_PROCESSES(fn_)                                          \
    __attribute__((constructor)) static void lesson_processes_##fn_(void)       \
    {                                                                            \
        lesson_desc_##fn_.processes = true;                                      \
    }

#ifdef __cplusplus
}
#endif

#endif /* WEFT_TOOL_LESSON_H */
