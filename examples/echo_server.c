/*
 * echo_server.c - a TCP echo server: one coroutine per connection, all on
 * one thread (asyncio's start_server with an echo handler).
 *
 *   echo_server [PORT]     serve on 127.0.0.1:PORT (default 7007) until
 *                          interrupted; try: nc 127.0.0.1 7007
 *   echo_server --selftest serve on a free port, run 50 clients against
 *                          it, check every byte came back, exit 0 or 1
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <weft.h>

/* One connection: echo until the client closes its side. */
static int handle(void *arg, void **result)
{
    (void)result;
    int fd = (int)(intptr_t)arg;
    char buf[4096];
    ssize_t n;
    while ((n = weft_net_read(fd, buf, sizeof buf)) > 0)
        if (weft_net_write_all(fd, buf, (size_t)n, NULL) < 0)
            break;
    weft_net_close(fd);
    return 0;
}

/* Accept until the listening fd is closed (weft_net_close wakes us). */
static int serve(void *arg, void **result)
{
    (void)result;
    int lfd = (int)(intptr_t)arg;
    for (;;) {
        int c = weft_net_accept(lfd, NULL);
        if (c < 0)
            return c == -EPIPE ? 0 : c;
        if (weft_co_spawn(NULL, handle, (void *)(intptr_t)c, "echo", 64 * 1024) != 0)
            weft_net_close(c);
    }
}

/* ---- --selftest: clients against our own server ------------------------ */

struct self {
    weft_addr_t addr;
    long ok, bytes;
};

static int client(void *arg, void **result)
{
    (void)result;
    struct self *s = arg;
    int fd = weft_net_connect_until(&s->addr, weft_deadline_in(5));
    if (fd < 0)
        return fd;
    char out[1000], in[1000];
    int r = 0;
    for (int round = 0; round < 10 && r == 0; round++) {
        size_t n = 1 + (size_t)rand() % sizeof out;
        for (size_t i = 0; i < n; i++)
            out[i] = (char)('a' + (i + (size_t)round) % 26);
        if (weft_net_write_all(fd, out, n, NULL) < 0 ||
            weft_net_read_exact_until(fd, in, n, NULL, weft_deadline_in(5)) < 0 ||
            memcmp(in, out, n) != 0)
            r = -EIO;
        else
            s->bytes += (long)n;
    }
    weft_net_close(fd);
    if (r == 0)
        s->ok++;
    return r;
}

static int main_selftest(void *arg, void **result)
{
    (void)arg;
    (void)result;
    struct self s = {0};
    weft_addr_t any;
    weft_addr_ip(&any, "127.0.0.1", 0);
    int lfd = weft_net_listen(&any, 0);
    if (lfd < 0)
        return lfd;
    weft_net_local_addr(lfd, &s.addr);
    weft_task_t *srv;
    weft_co_spawn(&srv, serve, (void *)(intptr_t)lfd, "acceptor", 0);

    weft_co_group_t *g;
    weft_co_group_create(&g);
    for (int i = 0; i < 50; i++)
        weft_co_group_spawn(g, NULL, client, &s, "client", 64 * 1024);
    int r = weft_co_group_wait(g);
    weft_co_group_free(g);

    weft_net_close(lfd); /* the acceptor returns */
    weft_co_await(srv, NULL);
    weft_task_release(srv);
    char text[64];
    weft_addr_format(&s.addr, text, sizeof text);
    printf("echo_server selftest on %s: %ld of 50 clients ok, %ld bytes echoed\n", text, s.ok,
           s.bytes);
    return r == 0 && s.ok == 50 ? 0 : -EIO;
}

static int main_serve(void *arg, void **result)
{
    (void)result;
    weft_addr_t a;
    weft_addr_ip(&a, "127.0.0.1", (int)(intptr_t)arg);
    int lfd = weft_net_listen(&a, 0);
    if (lfd < 0) {
        fprintf(stderr, "listen: %s\n", weft_strerror(lfd));
        return lfd;
    }
    printf("echo server on 127.0.0.1:%d\n", (int)(intptr_t)arg);
    fflush(stdout);
    return serve((void *)(intptr_t)lfd, NULL);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--selftest") == 0)
        return weft_loop_run(main_selftest, NULL, NULL) == 0 ? 0 : 1;
    int port = argc > 1 ? atoi(argv[1]) : 7007;
    if (port <= 0 || port > 65535) {
        fprintf(stderr, "usage: %s [PORT] | --selftest\n", argv[0]);
        return 2;
    }
    return weft_loop_run(main_serve, (void *)(intptr_t)port, NULL) == 0 ? 0 : 1;
}
