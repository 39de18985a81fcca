/* hello.c - the smallest program using an installed weft (the README's
 * example; tests/install/run.sh builds it with pkg-config and with CMake). */
#include <stdio.h>
#include <weft.h>

static weft_mutex_t lock = WEFT_MUTEX_INIT;

int main(void)
{
    int rc = weft_mutex_lock(&lock);
    if (rc < 0) {
        fprintf(stderr, "lock: %s\n", weft_strerror(rc));
        return 1;
    }
    printf("weft %s: locked\n", weft_version());

    /* Locking a mutex you already hold is reported, not a hang. */
    rc = weft_mutex_lock(&lock);
    printf("lock again: %s\n", weft_strerror(rc));

    weft_mutex_unlock(&lock);
    return rc == -EDEADLK ? 0 : 1;
}
