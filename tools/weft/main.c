/*
 * main.c - the `weft` command: the guided tour of the course notes' lessons.
 *
 *   weft tour [--quick] [--scale X] [--json]   every lesson in order, then a summary
 *   weft demo NAME... [options]                the named lessons
 *   weft list                                  the lessons, in tour order
 *   weft version | --version | --help
 *
 * Exit codes: 0 success; 1 a lesson failed its own checks; 2 a usage error
 * (unknown command, lesson or option).
 */
#include <stdio.h>
#include <string.h>
#include <weft.h>

#include "lesson.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: weft <command> [options]\n"
            "\n"
            "weft %s - Python's concurrency lessons, measured in C on this machine.\n"
            "\n"
            "commands:\n"
            "  tour [options]          run every lesson in order, then a summary table\n"
            "  demo NAME... [options]  run the named lessons (see `weft list`)\n"
            "  list                    list the lessons in tour order\n"
            "  version                 print the library version\n"
            "  help, --help            this text\n"
            "\n"
            "options of tour and demo:\n"
            "  --quick                 small sizes (scale 0.05), for CI\n"
            "  --scale X               multiply every lesson's size by X, 0 < X <= 1000\n"
            "                          (also the environment variable WEFT_TOUR_SCALE=X)\n"
            "  --json                  figures as JSON lines on stdout; words on stderr\n"
            "\n"
            "exit code: 0 all went well, 1 a lesson failed its checks, 2 bad usage.\n",
            weft_version());
}

static int list(void)
{
    size_t n = lesson_count();
    size_t w = 4;
    for (size_t i = 0; i < n; i++)
        if (strlen(lesson_at(i)->name) > w)
            w = strlen(lesson_at(i)->name);
    printf("  %5s  %-*s  %s\n", "order", (int)w, "name", "what it shows");
    for (size_t i = 0; i < n; i++) {
        const lesson_t *l = lesson_at(i);
        const char *base = l->file ? strrchr(l->file, '/') : NULL;
        printf("  %5d  %-*s  %s  (%s)\n", l->order, (int)w, l->name, l->title,
               base ? base + 1 : l->file ? l->file : "?");
    }
    printf("\n%zu lessons. `weft demo NAME` runs one, `weft tour` runs them all.\n", n);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("weft %s\n", weft_version());
        return 0;
    }
    bool is_tour = strcmp(cmd, "tour") == 0, is_demo = strcmp(cmd, "demo") == 0;
    if (strcmp(cmd, "list") == 0) {
        if (argc > 2) {
            fprintf(stderr, "weft: list takes no arguments\n");
            return 2;
        }
        return list();
    }
    if (!is_tour && !is_demo) {
        fprintf(stderr, "weft: unknown command '%s' (try `weft --help`)\n", cmd);
        return 2;
    }
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
    }
    lesson_opts_t opts;
    int npos = lesson_parse_opts(&opts, argc - 2, argv + 2, "weft");
    if (npos < 0)
        return 2;
    if (is_tour) {
        if (npos > 0) {
            fprintf(stderr, "weft: tour takes no lesson names; use `weft demo %s`\n", argv[2]);
            return 2;
        }
        return lesson_tour(&opts);
    }
    return lesson_demo(&opts, (const char *const *)(argv + 2), npos);
}
