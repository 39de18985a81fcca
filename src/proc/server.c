/*
 * server.c - the fork server: a child forked by weft_proc_init() while the
 * program is single-threaded, which stays single-threaded and forks every
 * worker of every pool.
 *
 * Why: fork() copies only the calling thread. A child forked from a
 * program running other threads inherits every lock those threads held at
 * that instant (malloc's, stdio's, the program's own) with nobody left to
 * release them, and can deadlock on its first malloc. The server has never
 * run a second thread, so its children are safe; and as a copy of the
 * program it has the same code at the same addresses, so function pointers
 * passed to workers are valid there.
 *
 * Protocol (SOCK_SEQPACKET, struct wp_msg, descriptors as SCM_RIGHTS):
 *   parent -> server, control socket: NEWCONN + one end of a socketpair,
 *     the connection of a new pool.
 *   pool -> server: SPAWN {slot, tag, mapping addresses} + [memfd, eventfd,
 *     region fds]: fork a worker.
 *   server -> pool: SPAWNED {slot, tag, pid or -errno} + [pidfd]; the
 *     parent kills through the pidfd, never by a pid that may be recycled.
 *   server -> pool: EXITED {slot, tag, pid, si_code, si_status} when the
 *     server has reaped that worker (waitid on its own pidfd).
 * The server reaps every child it made (no zombies). When a pool's
 * connection closes, the server kills the workers it still has for it;
 * when the control socket closes (weft_proc_fini, or the parent died) it
 * kills them all, reaps them and exits. It dies with the parent's main
 * thread (PR_SET_PDEATHSIG), and the workers die with it.
 */
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <weft/sync.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif

static weft_mutex_t g_lock = WEFT_MUTEX_INIT;
static int g_ctl = -1;       /* parent's end of the control socket */
static pid_t g_server;       /* the server's pid, 0 if none */
static pid_t g_owner;        /* the process that started it */
static _Atomic int g_pools;  /* pools alive */

/* ---- messages with descriptors ---------------------------------------------- */

int weft__proc_send(int sock, const struct wp_msg *m, const int *fds, int nfds)
{
    struct iovec iov = {(void *)m, sizeof *m};
    union {
        char buf[CMSG_SPACE(sizeof(int) * (2 + WP_MAX_SHM))];
        struct cmsghdr align;
    } u;
    struct msghdr mh = {0};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    if (nfds > 0) {
        memset(&u, 0, sizeof u);
        mh.msg_control = u.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
    }
    for (;;) {
        /* MSG_NOSIGNAL: a closed peer is an error code, not a SIGPIPE. */
        ssize_t r = sendmsg(sock, &mh, MSG_NOSIGNAL);
        if (r == (ssize_t)sizeof *m)
            return 0;
        if (r < 0 && errno == EINTR)
            continue;
        return r < 0 ? -errno : -EIO;
    }
}

ssize_t weft__proc_recv(int sock, struct wp_msg *m, int *fds, int maxfds, int *nfds, bool block)
{
    struct iovec iov = {m, sizeof *m};
    union {
        char buf[CMSG_SPACE(sizeof(int) * (2 + WP_MAX_SHM))];
        struct cmsghdr align;
    } u;
    struct msghdr mh = {0};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = u.buf;
    mh.msg_controllen = sizeof u.buf;
    *nfds = 0;
    for (int i = 0; i < maxfds; i++)
        fds[i] = -1;
    ssize_t r;
    do
        r = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | (block ? 0 : MSG_DONTWAIT));
    while (r < 0 && errno == EINTR);
    if (r < 0)
        return -errno;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        int n = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        int *p = (int *)CMSG_DATA(c);
        for (int i = 0; i < n; i++) {
            if (*nfds < maxfds)
                fds[(*nfds)++] = p[i];
            else
                close(p[i]);
        }
    }
    if (r > 0 && r != (ssize_t)sizeof *m)
        return -EPROTO;
    return r;
}

/* ---- the server process --------------------------------------------------------- */

struct srv_child {
    pid_t pid;
    int pidfd;
    int conn; /* index into conns, -1 once that connection closed */
    uint32_t slot, tag;
};

struct srv {
    int ctl;
    int *conns; /* -1: closed */
    int nconns, capconns;
    struct srv_child *kids;
    int nkids, capkids;
};

static void srv_grow(void **p, int *cap, int need, size_t elem)
{
    if (need <= *cap)
        return;
    int c = *cap ? *cap * 2 : 16;
    while (c < need)
        c *= 2;
    void *n = realloc(*p, (size_t)c * elem);
    if (!n)
        _exit(3); /* the server cannot go on; the parent sees ECHILD */
    *p = n;
    *cap = c;
}

static void srv_kill_conn(struct srv *s, int conn)
{
    for (int i = 0; i < s->nkids; i++)
        if (s->kids[i].conn == conn) {
            syscall(SYS_pidfd_send_signal, s->kids[i].pidfd, SIGKILL, NULL, 0);
            s->kids[i].conn = -1;
        }
}

static void srv_reap(struct srv *s, int i, bool report)
{
    siginfo_t si;
    memset(&si, 0, sizeof si);
    while (waitid((idtype_t)P_PIDFD, (id_t)s->kids[i].pidfd, &si, WEXITED) < 0 &&
           errno == EINTR)
        ;
    if (report && s->kids[i].conn >= 0 && s->conns[s->kids[i].conn] >= 0) {
        struct wp_msg m = {0};
        m.type = WM_EXITED;
        m.slot = s->kids[i].slot;
        m.tag = s->kids[i].tag;
        m.pid = s->kids[i].pid;
        m.code = si.si_code;
        m.status = si.si_status;
        weft__proc_send(s->conns[s->kids[i].conn], &m, NULL, 0);
    }
    close(s->kids[i].pidfd);
    s->kids[i] = s->kids[--s->nkids];
}

static void srv_spawn(struct srv *s, int conn, const struct wp_msg *m, int *fds, int nfds)
{
    struct wp_msg r = {0};
    r.type = WM_SPAWNED;
    r.slot = m->slot;
    r.tag = m->tag;
    pid_t self = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        /* The worker: close what belongs to the server (its sockets and
         * the other workers' pidfds), keep what the program had at
         * weft_proc_init and what came with the message. */
        close(s->ctl);
        for (int i = 0; i < s->nconns; i++)
            if (s->conns[i] >= 0)
                close(s->conns[i]);
        for (int i = 0; i < s->nkids; i++)
            close(s->kids[i].pidfd);
        weft__proc_worker_main(m, fds, nfds, self);
    }
    int pidfd = -1;
    if (pid > 0) {
        pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
        if (pidfd < 0) {
            /* Cannot watch it: do not leave it running unwatched. */
            kill(pid, SIGKILL);
            while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                ;
            pid = -errno;
        }
    }
    for (int i = 0; i < nfds; i++)
        close(fds[i]);
    if (pid < 0) {
        r.pid = pid == -1 ? -errno : pid;
        weft__proc_send(s->conns[conn], &r, NULL, 0);
        return;
    }
    srv_grow((void **)&s->kids, &s->capkids, s->nkids + 1, sizeof *s->kids);
    s->kids[s->nkids++] = (struct srv_child){pid, pidfd, conn, m->slot, m->tag};
    r.pid = pid;
    /* The parent gets its own pidfd (a dup travels in SCM_RIGHTS). */
    if (weft__proc_send(s->conns[conn], &r, &pidfd, 1) < 0)
        syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
}

static _Noreturn void server_main(int ctl, pid_t parent)
{
    /* Die with the parent's main thread, and check we did not miss it. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(0);
    prctl(PR_SET_NAME, "weft-forksrv");
    struct srv s = {.ctl = ctl};
    struct pollfd *pf = NULL;
    int cappf = 0;
    for (;;) {
        int n = 1 + s.nconns + s.nkids;
        srv_grow((void **)&pf, &cappf, n, sizeof *pf);
        pf[0] = (struct pollfd){ctl, POLLIN, 0};
        for (int i = 0; i < s.nconns; i++)
            pf[1 + i] = (struct pollfd){s.conns[i], POLLIN, 0};
        for (int i = 0; i < s.nkids; i++)
            pf[1 + s.nconns + i] = (struct pollfd){s.kids[i].pidfd, POLLIN, 0};
        if (poll(pf, (nfds_t)n, -1) < 0) {
            if (errno == EINTR)
                continue;
            _exit(4);
        }
        /* Children first: their pidfds are at the end, and reaping moves
         * entries, so walk from the back. */
        for (int i = s.nkids - 1; i >= 0; i--)
            if (pf[1 + s.nconns + i].revents)
                srv_reap(&s, i, true);
        for (int i = 0; i < s.nconns; i++) {
            if (s.conns[i] < 0 || !pf[1 + i].revents)
                continue;
            struct wp_msg m;
            int fds[2 + WP_MAX_SHM], nfds;
            ssize_t r = weft__proc_recv(s.conns[i], &m, fds, 2 + WP_MAX_SHM, &nfds, false);
            if (r == -EAGAIN)
                continue;
            if (r <= 0) {
                srv_kill_conn(&s, i);
                close(s.conns[i]);
                s.conns[i] = -1;
                continue;
            }
            if (m.type == WM_BYE) {
                /* The pool is done (a copy of the socket may live on in a
                 * child the program forked, so EOF may never come). */
                srv_kill_conn(&s, i);
                close(s.conns[i]);
                s.conns[i] = -1;
            } else if (m.type == WM_SPAWN && nfds >= 2 && (uint32_t)nfds == m.nfds)
                srv_spawn(&s, i, &m, fds, nfds);
            else
                for (int k = 0; k < nfds; k++)
                    close(fds[k]);
        }
        if (pf[0].revents) {
            struct wp_msg m;
            int fds[1], nfds;
            ssize_t r = weft__proc_recv(ctl, &m, fds, 1, &nfds, false);
            if (r == -EAGAIN)
                continue;
            if (r <= 0 || m.type == WM_QUIT) {
                /* The parent is gone or said goodbye: take everyone down.
                 * (weft_proc_fini says so with QUIT: a child the program
                 * forked may hold a copy of the socket, so EOF may not come.) */
                for (int k = 0; k < nfds; k++)
                    close(fds[k]);
                for (int i = 0; i < s.nkids; i++)
                    syscall(SYS_pidfd_send_signal, s.kids[i].pidfd, SIGKILL, NULL, 0);
                while (s.nkids > 0)
                    srv_reap(&s, s.nkids - 1, false);
                _exit(0);
            }
            if (m.type == WM_NEWCONN && nfds == 1) {
                int slot = -1;
                for (int i = 0; i < s.nconns; i++)
                    if (s.conns[i] < 0) {
                        /* Reuse a closed connection's index only when no
                         * child still refers to it. */
                        bool used = false;
                        for (int k = 0; k < s.nkids; k++)
                            used |= s.kids[k].conn == i;
                        if (!used) {
                            slot = i;
                            break;
                        }
                    }
                if (slot < 0) {
                    srv_grow((void **)&s.conns, &s.capconns, s.nconns + 1, sizeof(int));
                    slot = s.nconns++;
                }
                s.conns[slot] = fds[0];
            } else {
                for (int k = 0; k < nfds; k++)
                    close(fds[k]);
            }
        }
    }
}

/* ---- the parent's side ------------------------------------------------------------ */

/* Threads of this process, from /proc/self/task; -1 if it cannot be read. */
static int count_threads(void)
{
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

/* In a child forked by the program after weft_proc_init, the server and
 * the control socket are the parent's: forget them (without telling the
 * server anything). Under g_lock. */
static void forget_inherited(void)
{
    if (g_server > 0 && g_owner != getpid()) {
        close(g_ctl);
        g_ctl = -1;
        g_server = 0;
        atomic_store(&g_pools, 0);
    }
}

int weft_proc_init(void)
{
    weft_mutex_lock(&g_lock);
    int rc = 0;
    forget_inherited();
    if (g_server > 0)
        goto out;
    int n = count_threads();
    if (n < 0) {
        rc = -ENOSYS;
        goto out;
    }
    if (n > 1) {
        rc = WEFT_ETHREADED;
        goto out;
    }
    int probe = (int)syscall(SYS_pidfd_open, getpid(), 0);
    if (probe < 0) {
        rc = -ENOSYS;
        goto out;
    }
    close(probe);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
        rc = errno == EMFILE || errno == ENFILE ? -EMFILE : -ENOMEM;
        goto out;
    }
    /* Whatever stdio holds now would otherwise be written again by every
     * worker that calls exit(). */
    fflush(NULL);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        rc = errno == ENOMEM ? -ENOMEM : -EAGAIN;
        close(sv[0]);
        close(sv[1]);
        goto out;
    }
    if (pid == 0) {
        close(sv[0]);
        server_main(sv[1], parent);
    }
    close(sv[1]);
    g_ctl = sv[0];
    g_server = pid;
    g_owner = parent;
out:
    weft_mutex_unlock(&g_lock);
    return rc;
}

int weft_proc_fini(void)
{
    weft_mutex_lock(&g_lock);
    int rc = 0;
    forget_inherited();
    if (g_server <= 0)
        goto out;
    if (atomic_load(&g_pools) > 0) {
        rc = -EBUSY;
        goto out;
    }
    struct wp_msg m = {0};
    m.type = WM_QUIT;
    weft__proc_send(g_ctl, &m, NULL, 0); /* it kills leftovers and exits */
    close(g_ctl);
    g_ctl = -1;
    while (waitpid(g_server, NULL, 0) < 0 && errno == EINTR)
        ;
    g_server = 0;
out:
    weft_mutex_unlock(&g_lock);
    return rc;
}

int weft_proc_server_pid(void)
{
    weft_mutex_lock(&g_lock);
    forget_inherited();
    int p = g_server;
    weft_mutex_unlock(&g_lock);
    return p;
}

int weft__proc_server_connect(int *conn_fd)
{
    int rc = weft_proc_init();
    if (rc < 0)
        return rc;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return errno == EMFILE || errno == ENFILE ? -EMFILE : -ENOMEM;
    struct wp_msg m = {0};
    m.type = WM_NEWCONN;
    weft_mutex_lock(&g_lock);
    rc = g_ctl >= 0 ? weft__proc_send(g_ctl, &m, &sv[1], 1) : -ECHILD;
    weft_mutex_unlock(&g_lock);
    close(sv[1]);
    if (rc < 0) {
        close(sv[0]);
        return -ECHILD;
    }
    *conn_fd = sv[0];
    return 0;
}

void weft__proc_pool_count(int delta) { atomic_fetch_add(&g_pools, delta); }
