/*
 * barrier.c - the asymmetric memory barrier: membarrier(2).
 *
 * A Dekker handshake (each side stores its flag, then loads the other's)
 * needs a full fence between the store and the load on BOTH sides: on x86
 * a locked instruction, some 20 cycles. When one side is hot (a lock's
 * release) and the other rare (a thread about to sleep on that lock), the
 * rare side can pay for both: weft__heavy_barrier() is
 * membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED), which makes every thread
 * of this process that is running on a CPU execute a full barrier before
 * it returns (threads not running get one from the scheduler when they
 * next run). The hot side then needs only a compiler barrier between its
 * store and its load (atomic_signal_fence): whatever point of the hot
 * side's sequence the other CPU's barrier falls on, either the hot store is
 * visible to the rare side's load after the call, or the hot load comes
 * after the rare side's store became visible. This is the pairing of
 * Linux's membarrier documentation, and of folly's asymmetric barriers.
 *
 * Availability is decided once (weft__asym_available): the kernel must
 * know the command (4.14) and accept the registration; ThreadSanitizer
 * does not model it, so sanitizer-thread builds never use it; and
 * WEFT_CHAN_LOCK=cas in the environment turns it off (the tests run the
 * channel suites both ways). A forked child may have to register again: a
 * heavy barrier that is refused (EPERM) registers and retries once.
 */
#include "platform.h"

#include <errno.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static int membarrier(int cmd, unsigned flags)
{
    return (int)syscall(SYS_membarrier, cmd, flags, 0);
}

static bool asym_on;
static pthread_once_t asym_once = PTHREAD_ONCE_INIT;

static void asym_decide(void)
{
#if defined(WEFT_SANITIZE_THREAD)
    asym_on = false;
#else
    const char *e = getenv("WEFT_CHAN_LOCK");
    if (e && strcmp(e, "cas") == 0)
        return;
    int cmds = membarrier(MEMBARRIER_CMD_QUERY, 0);
    if (cmds < 0 || !(cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED))
        return;
    asym_on = membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0) == 0;
#endif
}

bool weft__asym_available(void)
{
    pthread_once(&asym_once, asym_decide);
    return asym_on;
}

int weft__heavy_barrier(void)
{
    if (membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0) == 0)
        return 0;
    if (errno == EPERM && membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0) == 0 &&
        membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0) == 0)
        return 0;
    return -errno;
}
