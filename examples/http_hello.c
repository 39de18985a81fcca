/*
 * http_hello.c - a keep-alive HTTP/1.1 "Hello, World!" server: one
 * coroutine per connection on one thread. Requests may be pipelined; the
 * connection stays open until the client closes it or sends
 * "Connection: close".
 *
 *   http_hello [PORT]       serve on 127.0.0.1:PORT (default 8080);
 *                           try: curl http://127.0.0.1:8080/
 *                           or:  wrk -t1 -c100 -d5s http://127.0.0.1:8080/
 *   http_hello --selftest   serve on a free port, run 20 keep-alive clients
 *                           of 50 requests each against it, exit 0 or 1
 */
#define _GNU_SOURCE /* strcasestr */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <weft.h>

static const char RESPONSE[] = "HTTP/1.1 200 OK\r\n"
                               "Content-Type: text/plain\r\n"
                               "Content-Length: 13\r\n"
                               "\r\n"
                               "Hello, World!";

/* One connection: answer every complete request header in the buffer
 * (a body is not expected: GET), keep the rest for the next read. */
static int conn(void *arg, void **result)
{
    (void)result;
    int fd = (int)(intptr_t)arg;
    char buf[8192];
    size_t have = 0;
    char out[sizeof RESPONSE * 16];
    for (;;) {
        ssize_t n = weft_net_read(fd, buf + have, sizeof buf - have - 1);
        if (n <= 0)
            break;
        have += (size_t)n;
        buf[have] = '\0';
        size_t used = 0, nout = 0;
        int close_after = 0;
        char *end;
        while ((end = strstr(buf + used, "\r\n\r\n")) != NULL) {
            *end = '\0';
            if (strcasestr(buf + used, "\r\nConnection: close"))
                close_after = 1;
            used = (size_t)(end - buf) + 4;
            if (nout + sizeof RESPONSE - 1 > sizeof out) {
                if (weft_net_write_all(fd, out, nout, NULL) < 0)
                    goto done;
                nout = 0;
            }
            memcpy(out + nout, RESPONSE, sizeof RESPONSE - 1);
            nout += sizeof RESPONSE - 1;
        }
        /* All the answers to what came in one read go out in one write. */
        if (nout && weft_net_write_all(fd, out, nout, NULL) < 0)
            break;
        if (close_after)
            break;
        memmove(buf, buf + used, have - used);
        have -= used;
        if (have == sizeof buf - 1)
            break; /* a header larger than the buffer: give up on it */
    }
done:
    weft_net_close(fd);
    return 0;
}

static int serve(void *arg, void **result)
{
    (void)result;
    int lfd = (int)(intptr_t)arg;
    for (;;) {
        int c = weft_net_accept(lfd, NULL);
        if (c < 0)
            return c == -EPIPE ? 0 : c;
        if (weft_co_spawn(NULL, conn, (void *)(intptr_t)c, "http", 64 * 1024) != 0)
            weft_net_close(c);
    }
}

/* ---- --selftest ----------------------------------------------------------- */

struct self {
    weft_addr_t addr;
    long responses;
};

static int client(void *arg, void **result)
{
    (void)result;
    struct self *s = arg;
    int fd = weft_net_connect_until(&s->addr, weft_deadline_in(5));
    if (fd < 0)
        return fd;
    static const char req[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    char in[sizeof RESPONSE];
    int r = 0;
    for (int i = 0; i < 50 && r == 0; i++) {
        if (weft_net_write_all(fd, req, sizeof req - 1, NULL) < 0 ||
            weft_net_read_exact_until(fd, in, sizeof RESPONSE - 1, NULL, weft_deadline_in(5)) < 0 ||
            memcmp(in, RESPONSE, sizeof RESPONSE - 1) != 0)
            r = -EIO;
        else
            s->responses++;
    }
    weft_net_close(fd);
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
    for (int i = 0; i < 20; i++)
        weft_co_group_spawn(g, NULL, client, &s, "client", 64 * 1024);
    int r = weft_co_group_wait(g);
    weft_co_group_free(g);
    weft_net_close(lfd);
    weft_co_await(srv, NULL);
    weft_task_release(srv);
    printf("http_hello selftest: %ld of 1000 responses correct\n", s.responses);
    return r == 0 && s.responses == 1000 ? 0 : -EIO;
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
    printf("http://127.0.0.1:%d/\n", port);
    fflush(stdout);
    return serve((void *)(intptr_t)lfd, NULL);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--selftest") == 0)
        return weft_loop_run(main_selftest, NULL, NULL) == 0 ? 0 : 1;
    int port = argc > 1 ? atoi(argv[1]) : 8080;
    if (port <= 0 || port > 65535) {
        fprintf(stderr, "usage: %s [PORT] | --selftest\n", argv[0]);
        return 2;
    }
    return weft_loop_run(main_serve, (void *)(intptr_t)port, NULL) == 0 ? 0 : 1;
}
