/*
 * chat_server.c - a line-based chat room: every line a client sends goes to
 * every client. Channels fan the messages out: each connection has a reader
 * coroutine (socket -> the hub's channel) and a writer coroutine (its own
 * channel -> socket); one hub coroutine owns the list of members and copies
 * each message into every member's channel. Nobody shares the list, so
 * nothing needs a lock, and a slow client only fills its own channel.
 *
 *   chat_server [PORT]     serve on 127.0.0.1:PORT (default 7008);
 *                          try two terminals with: nc 127.0.0.1 7008
 *   chat_server --selftest 5 clients each say 3 lines; each must hear all
 *                          15; exit 0 or 1
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <weft.h>

#define LINE_MAX_ 200
#define MEMBERS_MAX 64

enum { JOIN, LEAVE, SAY };

struct msg {
    int kind;
    int from;            /* the client's number */
    weft_chan_t *out;    /* JOIN: the member's channel */
    char text[LINE_MAX_];
};

static weft_chan_t *hub_in; /* every reader sends here; the hub receives */

/* The hub: the only coroutine that knows who is in the room. */
static int hub(void *arg, void **result)
{
    (void)arg;
    (void)result;
    struct {
        int id;
        weft_chan_t *out;
    } m[MEMBERS_MAX];
    int n = 0;
    struct msg x;
    while (weft_chan_recv(hub_in, &x) == 0) {
        if (x.kind == JOIN && n < MEMBERS_MAX) {
            m[n].id = x.from;
            m[n++].out = x.out;
            struct msg w = {SAY, x.from, NULL, ""};
            snprintf(w.text, sizeof w.text, "* welcome, you are client %d\n", x.from);
            weft_chan_send_try(x.out, &w);
        } else if (x.kind == JOIN) {
            weft_chan_close(x.out); /* full room */
        } else if (x.kind == LEAVE) {
            for (int i = 0; i < n; i++)
                if (m[i].id == x.from) {
                    weft_chan_close(m[i].out); /* its writer ends */
                    m[i] = m[--n];
                    break;
                }
        } else {
            /* Fan out. A member whose channel is full misses the line
             * rather than stalling the room. */
            for (int i = 0; i < n; i++)
                weft_chan_send_try(m[i].out, &x);
        }
    }
    for (int i = 0; i < n; i++)
        weft_chan_close(m[i].out);
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
    weft_co_spawn(&wt, writer, &wa, "chat-writer", 64 * 1024);
    struct msg j = {JOIN, id, out, ""};
    weft_chan_send(hub_in, &j);

    char buf[LINE_MAX_];
    size_t have = 0;
    for (;;) {
        ssize_t k = weft_net_read(fd, buf + have, sizeof buf - 1 - have);
        if (k <= 0)
            break;
        have += (size_t)k;
        char *nl;
        while ((nl = memchr(buf, '\n', have)) != NULL) {
            size_t len = (size_t)(nl - buf) + 1;
            struct msg s = {SAY, id, NULL, ""};
            snprintf(s.text, sizeof s.text, "%d: %.*s", id, (int)len, buf);
            weft_chan_send(hub_in, &s);
            memmove(buf, buf + len, have - len);
            have -= len;
        }
        if (have == sizeof buf - 1)
            have = 0; /* a line too long: drop it */
    }
    struct msg l = {LEAVE, id, NULL, ""};
    weft_chan_send(hub_in, &l);
    weft_co_await(wt, NULL); /* the hub closes our channel: the writer ends */
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
        weft_co_spawn(NULL, client_conn, (void *)(intptr_t)c, "chat-conn", 64 * 1024);
    }
}

/* ---- --selftest -------------------------------------------------------------- */

#define CLIENTS 5
#define LINES 3

struct self {
    weft_addr_t addr;
    int joined;
    weft_event_t all_joined;
    int heard_all;
};

/* Read one line (up to '\n') with a deadline. Length, or an error. */
static ssize_t read_line(int fd, char *buf, size_t size)
{
    size_t n = 0;
    while (n < size - 1) {
        ssize_t k = weft_net_read_until(fd, buf + n, 1, weft_deadline_in(5));
        if (k <= 0)
            return k < 0 ? k : -EPIPE;
        if (buf[n++] == '\n')
            break;
    }
    buf[n] = '\0';
    return (ssize_t)n;
}

static int test_client(void *arg, void **result)
{
    (void)result;
    struct self *s = arg;
    int fd = weft_net_connect_until(&s->addr, weft_deadline_in(5));
    if (fd < 0)
        return fd;
    char line[LINE_MAX_];
    int r = read_line(fd, line, sizeof line) > 0 && strstr(line, "welcome") ? 0 : -EIO;
    /* Speak only once everyone is in the room, so everyone hears it all. */
    if (++s->joined == CLIENTS)
        weft_event_set(&s->all_joined);
    weft_event_wait(&s->all_joined);
    for (int i = 0; i < LINES && r == 0; i++) {
        char say[64];
        int n = snprintf(say, sizeof say, "line %d\n", i);
        if (weft_net_write_all(fd, say, (size_t)n, NULL) < 0)
            r = -EIO;
    }
    int heard = 0;
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

static int main_selftest(void *arg, void **result)
{
    (void)arg;
    (void)result;
    struct self s = {0};
    weft_event_init(&s.all_joined);
    weft_addr_t any;
    weft_addr_ip(&any, "127.0.0.1", 0);
    int lfd = weft_net_listen(&any, 0);
    if (lfd < 0)
        return lfd;
    weft_net_local_addr(lfd, &s.addr);
    weft_chan_create(&hub_in, sizeof(struct msg), 256);
    weft_task_t *h, *acc;
    weft_co_spawn(&h, hub, NULL, "hub", 0);
    weft_co_spawn(&acc, acceptor, (void *)(intptr_t)lfd, "acceptor", 0);
    weft_co_group_t *g;
    weft_co_group_create(&g);
    for (int i = 0; i < CLIENTS; i++)
        weft_co_group_spawn(g, NULL, test_client, &s, "client", 64 * 1024);
    int r = weft_co_group_wait(g);
    weft_co_group_free(g);
    weft_net_close(lfd);
    weft_co_await(acc, NULL);
    /* The connections notice their clients left and say LEAVE; then the
     * hub's channel can close. Wait for the room to empty first. */
    for (;;) {
        weft_loop_stats_t st;
        weft_loop_stats(weft_loop_current(), &st);
        if (st.tasks_live <= 2) /* main and the hub */
            break;
        weft_co_sleep(0.001);
    }
    weft_chan_close(hub_in);
    weft_co_await(h, NULL);
    weft_task_release(h);
    weft_task_release(acc);
    weft_chan_release(hub_in);
    weft_event_destroy(&s.all_joined);
    printf("chat_server selftest: %d of %d clients heard all %d lines\n", s.heard_all, CLIENTS,
           CLIENTS * LINES);
    return r == 0 && s.heard_all == CLIENTS ? 0 : -EIO;
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
    weft_chan_create(&hub_in, sizeof(struct msg), 256);
    weft_co_spawn(NULL, hub, NULL, "hub", 0);
    printf("chat on 127.0.0.1:%d\n", port);
    fflush(stdout);
    return acceptor((void *)(intptr_t)lfd, NULL);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--selftest") == 0)
        return weft_loop_run(main_selftest, NULL, NULL) == 0 ? 0 : 1;
    int port = argc > 1 ? atoi(argv[1]) : 7008;
    if (port <= 0 || port > 65535) {
        fprintf(stderr, "usage: %s [PORT] | --selftest\n", argv[0]);
        return 2;
    }
    return weft_loop_run(main_serve, (void *)(intptr_t)port, NULL) == 0 ? 0 : 1;
}
