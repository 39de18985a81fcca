/*
 * test_nomem.c - calls that meet a failing malloc. This executable is
 * linked with -Wl,--wrap=malloc (tests/CMakeLists.txt), so every malloc of
 * the test and of the static library it links goes through __wrap_malloc,
 * which fails while fail_malloc is set.
 *
 * What must hold: a call that need not allocate succeeds; one that must
 * says -ENOMEM and leaves its objects as they were, usable.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <weft.h>

#include "check.h"

void *__real_malloc(size_t n);
void *__wrap_malloc(size_t n);
static volatile bool fail_malloc;
void *__wrap_malloc(size_t n)
{
    return fail_malloc ? NULL : __real_malloc(n);
}

/* weft_chan_select with more cases than it keeps on its stack allocates
 * its wait records only when it must wait: with a case ready, a failing
 * malloc does not matter (it used to say -ENOMEM and do nothing). */
static void test_select_ready_needs_no_memory(void)
{
    weft_chan_t *c;
    CHECK_OK(weft_chan_create(&c, sizeof(long), 4));
    long v = 42, out = 0;
    CHECK_OK(weft_chan_send(c, &v));
    weft_select_case_t cs[6];
    for (int i = 0; i < 6; i++)
        cs[i] = (weft_select_case_t){.chan = c, .op = WEFT_SELECT_RECV, .elem = &out};
    fail_malloc = true;
    int r = weft_chan_select(cs, 6);
    fail_malloc = false;
    CHECK(r >= 0 && r < 6);
    CHECK_OK(cs[r].result);
    CHECK_INT(out, ==, 42);
    CHECK_U64(weft_chan_len(c), ==, 0);
    /* Nothing ready and it must wait: -ENOMEM, and the channel is as it was. */
    fail_malloc = true;
    r = weft_chan_select_until(cs, 6, weft_deadline_in(5));
    fail_malloc = false;
    CHECK_RC(r, -ENOMEM);
    CHECK_OK(weft_chan_send(c, &v));
    CHECK_INT(weft_chan_select_until(cs, 6, weft_deadline_in(5)), >=, 0);
    CHECK_OK(weft_chan_release(c));
}

int main(void)
{
    RUN(test_select_ready_needs_no_memory);
    return check_done();
}
