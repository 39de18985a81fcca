/*
 * chat_server.c - a line-based chat room: every line a client sends goes to
 * every client. Channels fan the messages out: each connection has a reader
 * coroutine (socket -> the hub's channel) and a writer coroutine (its own
 * channel -> socket); one hub coroutine owns the list of members and copies
 * each message into every member's channel. Nobody shares the list, so
 * nothing needs a lock, and a slow client only fills its own channel.
 *
 * Who owns what: a connection makes its channel and holds one reference;
 * its JOIN hands the hub a second one, which the hub drops at the LEAVE (or
 * when it turns the client away, or when the room ends). The connection
 * closes its channel when it leaves; the writer then sends what is queued
 * and hangs up. Each side's cleanup runs in a shield, so that it completes
 * when the loop's end cancels everything (Ctrl-C with clients connected).
 *
 *   chat_server [PORT]     serve on 127.0.0.1:PORT (default 7008);
 *                          try two terminals with: nc 127.0.0.1 7008
 *   chat_server --selftest five clients each say 3 lines and each must hear
 *                          all 15; over-long lines are dropped whole; the
 *                          65th client is turned away; a loop that ends with
 *                          clients connected cleans up. Exit 0 or 1.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <weft.h>

#define LINE_MAX_ 200            /* the longest line a client may send, '\n' included */
#define TEXT_MAX (LINE_MAX_ + 16) /* "<id>: " + the line + '\0' */
#define MEMBERS_MAX 64

enum { JOIN, LEAVE, SAY };

struct msg {
    int kind;
    int from;         /* the client's number */
    weft_chan_t *out; /* JOIN: the member's channel, with a reference for the hub */
    char text[TEXT_MAX];
};

static weft_chan_t *hub_in; /* every reader sends here; the hub receives */

struct member {
    int id;
    weft_chan_t *out;
};

static int find(const struct member *m, int n, int id)
{
    for (int i = 0; i < n; i++)
        if (m[i].id == id)
            return i;
    return -1;
}

/* Hang up on a member (its writer sends what is queued, then shuts the
 * socket) and drop the hub's reference. */
static void drop(weft_chan_t *out)
{
    weft_chan_close(out);
    weft_chan_release(out);
}

/* The hub: the only coroutine that knows who is in the room. */
static int hub(void *arg, void **result)
{
    (void)arg;
    (void)result;
    struct member m[MEMBERS_MAX];
    int n = 0;
    struct msg x;
    while (weft_chan_recv(hub_in, &x) == 0) {
        if (x.kind == JOIN && n < MEMBERS_MAX) {
            m[n++] = (struct member){x.from, x.out};
            struct msg w = {SAY, x.from, NULL, ""};
            snprintf(w.text, sizeof w.text, "* welcome, you are client %d\n", x.from);
            weft_chan_send_try(x.out, &w);
        } else if (x.kind == JOIN) {
            struct msg w = {SAY, x.from, NULL, "* the room is full\n"};
            weft_chan_send_try(x.out, &w);
            drop(x.out);
        } else if (x.kind == LEAVE) {
            int i = find(m, n, x.from);
            if (i >= 0) {
                weft_chan_release(m[i].out); /* the connection closes it */
                m[i] = m[--n];
            }
        } else if (find(m, n, x.from) >= 0) {
            /* Fan out (a client turned away says nothing). A member whose
             * channel is full misses the line rather than stalling the room. */
            for (int i = 0; i < n; i++)
                weft_chan_send_try(m[i].out, &x);
        }
    }
    /* The room ends (hub_in closed, or the loop's end cancelled the hub).
     * Close hub_in, so that a connection's LEAVE says -EPIPE instead of
     * waiting; hang up on the members and on the JOINs still queued. */
    weft_co_scope_t sh;
    weft_co_shield_begin(&sh);
    weft_chan_close(hub_in);
    while (weft_chan_recv_try(hub_in, &x) == 0)
        if (x.kind == JOIN)
            drop(x.out);
    for (int i = 0; i < n; i++)
        drop(m[i].out);
    weft_co_scope_end(&sh);
    return 0;
}

struct writer_arg {
    int fd;
    weft_chan_t *out;
};

static int writer(void *arg, void **result)
{
    (void)result;
    struct writer_arg *w = arg;
    struct msg x;
    while (weft_chan_recv(w->out, &x) == 0)
        if (weft_net_write_all(w->fd, x.text, strlen(x.text), NULL) < 0)
            break;
    /* The channel closed (the client left, was turned away, or the room
     * ended) or the peer is gone: hang up, which also ends the reader. */
    weft_net_shutdown(w->fd, SHUT_RDWR);
    return 0;
}

/* One connection: join, then forward each line to the hub until EOF. */
static int client_conn(void *arg, void **result)
{
    (void)result;
    static int next_id;
    int fd = (int)(intptr_t)arg, id = ++next_id;
    weft_chan_t *out;
    if (weft_chan_create(&out, sizeof(struct msg), 64) != 0) {
        weft_net_close(fd);
        return -ENOMEM;
    }
    struct writer_arg wa = {fd, out};
    weft_task_t *wt;
    if (weft_co_spawn(&wt, writer, &wa, "chat-writer", 64 * 1024) != 0) {
        weft_chan_release(out);
        weft_net_close(fd);
        return -ENOMEM;
    }
    weft_chan_retain(out); /* the hub's */
    struct msg j = {JOIN, id, out, ""};
    if (weft_chan_send(hub_in, &j) != 0)
        weft_chan_release(out); /* the hub never got it */

    char buf[LINE_MAX_];
    size_t have = 0;
    bool skipping = false; /* inside a line too long to keep */
    for (;;) {
        ssize_t k = weft_net_read(fd, buf + have, sizeof buf - have);
        if (k <= 0)
            break;
        have += (size_t)k;
        size_t start = 0;
        char *nl;
        int r = 0;
        while (r == 0 && (nl = memchr(buf + start, '\n', have - start)) != NULL) {
            size_t end = (size_t)(nl - buf) + 1;
            if (!skipping) {
                struct msg s = {SAY, id, NULL, ""};
                snprintf(s.text, sizeof s.text, "%d: %.*s", id, (int)(end - start), buf + start);
                r = weft_chan_send(hub_in, &s);
            }
            skipping = false;
            start = end;
        }
        if (r != 0)
            break; /* the room has ended, or we are cancelled */
        memmove(buf, buf + start, have - start);
        have -= start;
        if (have == sizeof buf) {
            have = 0; /* a line too long: drop it, up to its newline */
            skipping = true;
        }
    }

    /* Leaving: at the end of file, on an error, or cancelled by the loop's
     * end. Shielded, so that it completes in every case: the writer uses
     * wa, on this stack, until it returns. */
    weft_co_scope_t sh;
    weft_co_shield_begin(&sh);
    struct msg l = {LEAVE, id, NULL, ""};
    weft_chan_send(hub_in, &l); /* -EPIPE if the room has ended: nothing to say */
    weft_chan_close(out);       /* the writer sends what is queued, then hangs up */
    if (weft_co_await_until(wt, NULL, weft_deadline_in(5)) == -ETIMEDOUT) {
        weft_task_cancel(wt); /* a peer that does not read what is queued */
        weft_co_await(wt, NULL);
    }
    weft_co_scope_end(&sh);
    weft_task_release(wt);
    weft_chan_release(out);
    weft_net_close(fd);
    return 0;
}

static int acceptor(void *arg, void **result)
{
    (void)result;
    int lfd = (int)(intptr_t)arg;
    for (;;) {
        int c = weft_net_accept(lfd, NULL);
        if (c < 0)
            return c == -EPIPE ? 0 : c;
        if (weft_co_spawn(NULL, client_conn, (void *)(intptr_t)c, "chat-conn", 64 * 1024) != 0)
            weft_net_close(c);
    }
}

/* ---- --selftest -------------------------------------------------------------- */

#define CLIENTS 5
#define LINES 3

static int failures;
#define EXPECT(cond, ...)                                                                  \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "chat_server selftest: " __VA_ARGS__);                         \
            fputc('\n', stderr);                                                           \
            failures++;                                                                    \
        }                                                                                  \
    } while (0)

/* A server on an ephemeral port: the hub and the acceptor. */
struct server {
    weft_addr_t addr;
    int lfd;
    weft_task_t *hub, *acc;
};

static int server_start(struct server *s)
{
    weft_addr_t any;
    weft_addr_ip(&any, "127.0.0.1", 0);
    s->lfd = weft_net_listen(&any, 0);
    if (s->lfd < 0)
        return s->lfd;
    weft_net_local_addr(s->lfd, &s->addr);
    int r = weft_chan_create(&hub_in, sizeof(struct msg), 256);
    if (r == 0)
        r = weft_co_spawn(&s->hub, hub, NULL, "hub", 0);
    if (r == 0)
        r = weft_co_spawn(&s->acc, acceptor, (void *)(intptr_t)s->lfd, "acceptor", 0);
    return r;
}

/* Stop accepting, end the room (the hub hangs up on whoever is left) and
 * wait until every connection has cleaned up: the loop's live tasks are
 * back to `base`. */
static void server_stop(struct server *s, uint64_t base)
{
    weft_net_close(s->lfd);
    weft_co_await(s->acc, NULL);
    weft_chan_close(hub_in);
    weft_co_await(s->hub, NULL);
    for (;;) {
        weft_loop_stats_t st;
        weft_loop_stats(weft_loop_current(), &st);
        if (st.tasks_live <= base)
            break;
        weft_co_sleep(0.001);
    }
    weft_task_release(s->acc);
    weft_task_release(s->hub);
    weft_chan_release(hub_in);
    hub_in = NULL;
}

static uint64_t live_tasks(void)
{
    weft_loop_stats_t st;
    weft_loop_stats(weft_loop_current(), &st);
    return st.tasks_live;
}

/* Read one line (up to '\n') with a deadline. Its length; 0 at the end of
 * file before any byte; or an error. */
static ssize_t read_line(int fd, char *buf, size_t size)
{
    size_t n = 0;
    while (n < size - 1) {
        ssize_t k = weft_net_read_until(fd, buf + n, 1, weft_deadline_in(5));
        if (k < 0)
            return k;
        if (k == 0)
            break;
        if (buf[n++] == '\n')
            break;
    }
    buf[n] = '\0';
    return (ssize_t)n;
}

/* Connect and read the welcome: the fd, or an error. */
static int join(const weft_addr_t *a)
{
    int fd = weft_net_connect_until(a, weft_deadline_in(5));
    if (fd < 0)
        return fd;
    char line[TEXT_MAX];
    if (read_line(fd, line, sizeof line) <= 0 || !strstr(line, "welcome")) {
        weft_net_close(fd);
        return -EIO;
    }
    return fd;
}

static int say(int fd, const char *text)
{
    ssize_t r = weft_net_write_all(fd, text, strlen(text), NULL);
    return r < 0 ? (int)r : 0;
}

/* 1. Every client hears every line. */
struct room {
    weft_addr_t addr;
    int joined;
    weft_event_t all_joined;
    int heard_all;
};

static int room_client(void *arg, void **result)
{
    (void)result;
    struct room *s = arg;
    int fd = join(&s->addr);
    if (fd < 0)
        return fd;
    /* Speak only once everyone is in the room, so everyone hears it all. */
    if (++s->joined == CLIENTS)
        weft_event_set(&s->all_joined);
    weft_event_wait(&s->all_joined);
    int r = 0;
    for (int i = 0; i < LINES && r == 0; i++) {
        char line[64];
        snprintf(line, sizeof line, "line %d\n", i);
        r = say(fd, line);
    }
    int heard = 0;
    char line[TEXT_MAX];
    while (r == 0 && heard < CLIENTS * LINES) {
        if (read_line(fd, line, sizeof line) <= 0)
            r = -EIO;
        else
            heard++;
    }
    if (heard == CLIENTS * LINES)
        s->heard_all++;
    weft_net_close(fd);
    return r;
}

static void test_room(void)
{
    uint64_t base = live_tasks();
    struct server srv;
    if (server_start(&srv) != 0) {
        EXPECT(0, "could not start a server");
        return;
    }
    struct room s = {.addr = srv.addr};
    weft_event_init(&s.all_joined);
    weft_co_group_t *g;
    weft_co_group_create(&g);
    for (int i = 0; i < CLIENTS; i++)
        weft_co_group_spawn(g, NULL, room_client, &s, "client", 64 * 1024);
    int r = weft_co_group_wait(g);
    weft_co_group_free(g);
    server_stop(&srv, base);
    weft_event_destroy(&s.all_joined);
    printf("chat_server selftest: %d of %d clients heard all %d lines\n", s.heard_all, CLIENTS,
           CLIENTS * LINES);
    EXPECT(r == 0 && s.heard_all == CLIENTS, "not every client heard every line (%s)",
           weft_strerror(r));
}

/* 2. A line too long is dropped whole (its tail is not a line of its own);
 * the longest line allowed arrives whole, its newline included. */
static void test_long_lines(void)
{
    uint64_t base = live_tasks();
    struct server srv;
    if (server_start(&srv) != 0) {
        EXPECT(0, "could not start a server");
        return;
    }
    int listener = join(&srv.addr), speaker = join(&srv.addr);
    EXPECT(listener >= 0 && speaker >= 0, "could not join");
    if (listener >= 0 && speaker >= 0) {
        char too_long[LINE_MAX_ + 101], longest[LINE_MAX_ + 1];
        memset(too_long, 'x', sizeof too_long - 2);
        too_long[sizeof too_long - 2] = '\n';
        too_long[sizeof too_long - 1] = '\0';
        memset(longest, 'y', sizeof longest - 2);
        longest[sizeof longest - 2] = '\n'; /* LINE_MAX_ bytes with its newline */
        longest[sizeof longest - 1] = '\0';
        EXPECT(say(speaker, too_long) == 0 && say(speaker, longest) == 0 &&
                   say(speaker, "after\n") == 0,
               "could not say");
        char line[TEXT_MAX + 8];
        ssize_t n = read_line(listener, line, sizeof line);
        const char *y = n > 0 ? strchr(line, 'y') : NULL;
        EXPECT(y && strcmp(y, longest) == 0, "the longest line did not arrive whole: \"%s\"",
               n > 0 ? line : weft_strerror((int)n));
        n = read_line(listener, line, sizeof line);
        const char *colon = n > 0 ? strstr(line, ": ") : NULL;
        EXPECT(colon && strcmp(colon, ": after\n") == 0,
               "after the longest line came \"%s\", not \"after\"",
               n > 0 ? line : weft_strerror((int)n));
    }
    if (listener >= 0)
        weft_net_close(listener);
    if (speaker >= 0)
        weft_net_close(speaker);
    server_stop(&srv, base);
}

/* 3. A full room turns the next client away, and what it says reaches no
 * one. */
static void test_full_room(void)
{
    uint64_t base = live_tasks();
    struct server srv;
    if (server_start(&srv) != 0) {
        EXPECT(0, "could not start a server");
        return;
    }
    int fds[MEMBERS_MAX], n = 0;
    while (n < MEMBERS_MAX && (fds[n] = join(&srv.addr)) >= 0)
        n++;
    EXPECT(n == MEMBERS_MAX, "only %d of %d clients could join", n, MEMBERS_MAX);
    int extra = weft_net_connect_until(&srv.addr, weft_deadline_in(5));
    EXPECT(extra >= 0, "the extra client could not connect");
    if (n == MEMBERS_MAX && extra >= 0) {
        EXPECT(say(extra, "intruder\n") == 0, "the extra client could not say");
        char line[TEXT_MAX];
        ssize_t k = read_line(extra, line, sizeof line);
        EXPECT(k > 0 && strcmp(line, "* the room is full\n") == 0,
               "the extra client was told \"%s\"", k > 0 ? line : weft_strerror((int)k));
        k = read_line(extra, line, sizeof line);
        EXPECT(k == 0, "the extra client was not hung up on (%zd)", k);
        EXPECT(say(fds[0], "member\n") == 0, "a member could not say");
        for (;;) {
            k = read_line(fds[1], line, sizeof line);
            if (k <= 0) {
                EXPECT(0, "a member did not hear the room: %s", weft_strerror((int)k));
                break;
            }
            EXPECT(!strstr(line, "intruder"), "the room heard the turned-away client");
            if (strstr(line, "member"))
                break;
        }
    }
    if (extra >= 0)
        weft_net_close(extra);
    for (int i = 0; i < n; i++)
        weft_net_close(fds[i]);
    server_stop(&srv, base);
}

/* 4. The loop ends with clients connected (as at Ctrl-C): the loop cancels
 * the hub and the connections; each cleans up (under ASan a use after free
 * or a leak fails the run; the fd count is checked by main). */
static int abandon_fds[3];
static struct server abandoned;

static int main_abandon(void *arg, void **result)
{
    (void)arg;
    (void)result;
    struct server *srv = &abandoned;
    int r = server_start(srv);
    if (r != 0)
        return r;
    for (int i = 0; i < 3; i++)
        if ((abandon_fds[i] = join(&srv->addr)) < 0)
            return abandon_fds[i];
    if ((r = say(abandon_fds[0], "bye\n")) != 0)
        return r;
    weft_task_release(srv->acc);
    weft_task_release(srv->hub);
    return 0; /* leaving the server and its clients running */
}

static int count_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

static int main_selftest(void *arg, void **result)
{
    (void)arg;
    (void)result;
    test_room();
    test_long_lines();
    test_full_room();
    return 0;
}

static int selftest(void)
{
    int fds = count_fds();
    int r = weft_loop_run(main_selftest, NULL, NULL);
    EXPECT(r == 0, "the loop said %s", weft_strerror(r));
    r = weft_loop_run(main_abandon, NULL, NULL);
    EXPECT(r == 0, "the abandoned room's loop said %s", weft_strerror(r));
    for (int i = 0; i < 3; i++)
        if (abandon_fds[i] > 0)
            weft_net_close(abandon_fds[i]);
    if (abandoned.lfd > 0)
        weft_net_close(abandoned.lfd);
    weft_chan_release(hub_in);
    EXPECT(count_fds() == fds, "fds: %d before, %d after", fds, count_fds());
    printf("chat_server selftest: %s\n", failures ? "FAILED" : "ok");
    return failures ? 1 : 0;
}

static int main_serve(void *arg, void **result)
{
    (void)result;
    int port = (int)(intptr_t)arg;
    weft_addr_t a;
    weft_addr_ip(&a, "127.0.0.1", port);
    int lfd = weft_net_listen(&a, 0);
    if (lfd < 0) {
        fprintf(stderr, "listen: %s\n", weft_strerror(lfd));
        return lfd;
    }
    int r = weft_chan_create(&hub_in, sizeof(struct msg), 256);
    if (r == 0)
        r = weft_co_spawn(NULL, hub, NULL, "hub", 0);
    if (r != 0) {
        weft_net_close(lfd);
        return r;
    }
    printf("chat on 127.0.0.1:%d\n", port);
    fflush(stdout);
    /* Until Ctrl-C: weft_loop_run cancels this task, then the rest. */
    r = acceptor((void *)(intptr_t)lfd, NULL);
    weft_net_close(lfd);
    return r;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--selftest") == 0)
        return selftest();
    int port = argc > 1 ? atoi(argv[1]) : 7008;
    if (port <= 0 || port > 65535) {
        fprintf(stderr, "usage: %s [PORT] | --selftest\n", argv[0]);
        return 2;
    }
    int r = weft_loop_run(main_serve, (void *)(intptr_t)port, NULL);
    if (hub_in)
        weft_chan_release(hub_in);
    return r == 0 ? 0 : r == -EINTR ? 130 : 1; /* 130: ended by Ctrl-C, as a shell says */
}
