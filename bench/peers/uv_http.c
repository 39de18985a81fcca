/*
 * uv_http.c - the libuv peer of bench_http: HTTP/1.1 keep-alive
 * "Hello, World!" on one libuv loop. Binds 127.0.0.1 only.
 *
 *   uv_http PORT
 */
#include <stdlib.h>
#include <string.h>
#include <uv.h>

static const char RESPONSE[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                               "Content-Length: 13\r\n\r\nHello, World!";

struct conn {
    uv_tcp_t tcp;
    size_t have;
    char buf[4096];
};

struct wreq {
    uv_write_t req;
    char data[];
};

static void on_close(uv_handle_t *h)
{
    free(h);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    (void)hint;
    struct conn *c = (struct conn *)h;
    *b = uv_buf_init(c->buf + c->have, (unsigned)(sizeof c->buf - 1 - c->have));
}

static void on_write(uv_write_t *req, int status)
{
    (void)status;
    free(req);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    (void)b;
    struct conn *c = (struct conn *)s;
    if (n < 0) {
        uv_close((uv_handle_t *)s, on_close);
        return;
    }
    c->have += (size_t)n;
    c->buf[c->have] = '\0';
    size_t used = 0, count = 0;
    char *end;
    while ((end = strstr(c->buf + used, "\r\n\r\n")) != NULL) {
        used = (size_t)(end - c->buf) + 4;
        count++;
    }
    if (count) {
        size_t len = count * (sizeof RESPONSE - 1);
        struct wreq *w = malloc(sizeof *w + len);
        for (size_t i = 0; i < count; i++)
            memcpy(w->data + i * (sizeof RESPONSE - 1), RESPONSE, sizeof RESPONSE - 1);
        uv_buf_t out = uv_buf_init(w->data, (unsigned)len);
        uv_write(&w->req, s, &out, 1, on_write);
    }
    memmove(c->buf, c->buf + used, c->have - used);
    c->have -= used;
    if (c->have == sizeof c->buf - 1)
        uv_close((uv_handle_t *)s, on_close);
}

static void on_conn(uv_stream_t *server, int status)
{
    if (status < 0)
        return;
    struct conn *c = malloc(sizeof *c);
    c->have = 0;
    uv_tcp_init(server->loop, &c->tcp);
    if (uv_accept(server, (uv_stream_t *)&c->tcp) == 0) {
        uv_tcp_nodelay(&c->tcp, 1);
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    } else {
        uv_close((uv_handle_t *)&c->tcp, on_close);
    }
}

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 8080;
    uv_loop_t *loop = uv_default_loop();
    uv_tcp_t server;
    uv_tcp_init(loop, &server);
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", port, &a);
    if (uv_tcp_bind(&server, (const struct sockaddr *)&a, 0) != 0 ||
        uv_listen((uv_stream_t *)&server, SOMAXCONN, on_conn) != 0)
        return 1;
    return uv_run(loop, UV_RUN_DEFAULT);
}
