/*
 * epoll_http.c - the hand-written peer of bench_http: a single-threaded,
 * edge-triggered epoll HTTP/1.1 keep-alive "Hello, World!" server, the
 * way one writes it without a library. Binds 127.0.0.1 only.
 *
 *   epoll_http PORT
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

static const char RESPONSE[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                               "Content-Length: 13\r\n\r\nHello, World!";

struct conn {
    int fd;
    size_t have;
    char buf[4096];
};

static void conn_close(int ep, struct conn *c)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c);
}

/* Read until EAGAIN; answer every complete request; 0 or -1 (close). */
static int conn_serve(struct conn *c)
{
    char out[sizeof RESPONSE * 32];
    for (;;) {
        ssize_t n = read(c->fd, c->buf + c->have, sizeof c->buf - 1 - c->have);
        if (n == 0)
            return -1;
        if (n < 0)
            return errno == EAGAIN ? 0 : -1;
        c->have += (size_t)n;
        c->buf[c->have] = '\0';
        size_t used = 0, nout = 0;
        char *end;
        while ((end = strstr(c->buf + used, "\r\n\r\n")) != NULL && nout + sizeof RESPONSE < sizeof out) {
            used = (size_t)(end - c->buf) + 4;
            memcpy(out + nout, RESPONSE, sizeof RESPONSE - 1);
            nout += sizeof RESPONSE - 1;
        }
        /* Small responses: the socket buffer takes them whole. */
        if (nout && write(c->fd, out, nout) != (ssize_t)nout)
            return -1;
        memmove(c->buf, c->buf + used, c->have - used);
        c->have -= used;
        if (c->have == sizeof c->buf - 1)
            return -1;
    }
}

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 8080;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(lfd, SOMAXCONN) != 0) {
        perror("epoll_http: bind/listen");
        return 1;
    }
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (!c) {
                int fd;
                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct conn *nc = malloc(sizeof *nc);
                    nc->fd = fd;
                    nc->have = 0;
                    struct epoll_event ce = {.events = EPOLLIN | EPOLLET, .data.ptr = nc};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ce);
                    if (conn_serve(nc) < 0)
                        conn_close(ep, nc);
                }
                continue;
            }
            if (conn_serve(c) < 0)
                conn_close(ep, c);
        }
    }
}
