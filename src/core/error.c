/*
 * error.c - weft_strerror and weft_version.
 */
#include <string.h>
#include <weft/error.h>
#include <weft/version.h>

const char *weft_version(void) { return WEFT_VERSION_STRING; }

const char *weft_strerror(int err)
{
    if (err > 0)
        err = -err;
    switch (err) {
    case 0: return "success";
    case -EINVAL: return "invalid argument";
    case -EAGAIN: return "operation would block";
    case -ETIMEDOUT: return "deadline passed";
    case -EPIPE: return "channel closed";
    case -ECANCELED: return "cancelled";
    case -ENOMEM: return "out of memory";
    case -EPERM: return "not the owner";
    case -EOVERFLOW: return "count out of range";
    case -EBUSY: return "in use (waiters or an owner remain)";
    case -EDEADLK: return "would wait for itself";
    case WEFT_EBROKEN: return "barrier broken";
    case WEFT_ECRASHED: return "worker crashed";
    case WEFT_ETHREADED: return "program already runs threads (call weft_proc_init first)";
    case WEFT_EINITFAILED: return "worker initializer failed";
    default: break;
    }
    /* strerrordesc_np returns a static string and is thread-safe, unlike
     * strerror. */
    if (err < 0 && err > -4096) {
        const char *d = strerrordesc_np(-err);
        if (d)
            return d;
    }
    return "unknown error";
}
