// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * A minimal HTTP/1.0 server for Prometheus scrapes, bound to loopback and
 * living in the agent's epoll loop: one GET per connection, the request head
 * capped at 8 KiB, the reply rendered whole and then written out.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent/evloop.h"
#include "agent/http.h"
#include "agent/log.h"

#define HTTP_HEAD_MAX	8192
#define HTTP_MAX_CONNS	16

struct http_conn {
	struct ev_source src;
	struct http_server *srv;
	struct http_conn *next;
	char head[HTTP_HEAD_MAX + 1];
	size_t head_len;
	char *out;
	size_t out_len, out_done;
};

struct http_server {
	struct ev_source src;
	int epfd;
	http_render_fn render;
	void *ctx;
	struct http_conn *conns;
	unsigned int nr_conns;
};

static void conn_free(struct http_conn *c)
{
	struct http_conn **pp;

	for (pp = &c->srv->conns; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	c->srv->nr_conns--;
	ev_del(c->srv->epfd, &c->src);
	close(c->src.fd);
	free(c->out);
	free(c);
}

static void respond(struct http_conn *c, int code, const char *type, const char *body,
		    size_t len)
{
	const char *text = code == 200 ? "OK" : code == 404 ? "Not Found" :
			   code == 405 ? "Method Not Allowed" : "Bad Request";
	FILE *f = open_memstream(&c->out, &c->out_len);
	struct epoll_event ev = { .events = EPOLLOUT, .data.ptr = &c->src };

	if (!f) {
		conn_free(c);
		return;
	}
	fprintf(f, "HTTP/1.0 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
		"Connection: close\r\n\r\n", code, text, type, len);
	fwrite(body, 1, len, f);
	fclose(f);
	epoll_ctl(c->srv->epfd, EPOLL_CTL_MOD, c->src.fd, &ev);
}

static void handle(struct http_conn *c)
{
	char method[8], path[256];
	char *body = NULL;
	size_t len = 0;
	FILE *f;

	if (sscanf(c->head, "%7s %255s", method, path) != 2) {
		respond(c, 400, "text/plain", "bad request\n", 12);
		return;
	}
	if (strcmp(method, "GET")) {
		respond(c, 405, "text/plain", "only GET\n", 9);
		return;
	}
	if (strcmp(path, "/metrics")) {
		respond(c, 404, "text/plain", "try /metrics\n", 13);
		return;
	}
	f = open_memstream(&body, &len);
	if (!f) {
		conn_free(c);
		return;
	}
	c->srv->render(c->srv->ctx, f);
	fclose(f);
	respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", body, len);
	free(body);
}

static void conn_event(struct ev_source *src, uint32_t events)
{
	struct http_conn *c = (struct http_conn *)src;
	ssize_t n;

	if (c->out) {
		while (c->out_done < c->out_len) {
			n = send(c->src.fd, c->out + c->out_done, c->out_len - c->out_done,
				 MSG_NOSIGNAL);
			if (n < 0 && errno == EAGAIN)
				return;
			if (n <= 0)
				break;
			c->out_done += n;
		}
		conn_free(c);
		return;
	}
	if (events & (EPOLLERR | EPOLLHUP) && !(events & EPOLLIN)) {
		conn_free(c);
		return;
	}
	n = recv(c->src.fd, c->head + c->head_len, HTTP_HEAD_MAX - c->head_len, 0);
	if (n < 0 && errno == EAGAIN)
		return;
	if (n <= 0) {
		conn_free(c);
		return;
	}
	c->head_len += n;
	c->head[c->head_len] = '\0';
	if (strstr(c->head, "\r\n\r\n") || strstr(c->head, "\n\n"))
		handle(c);
	else if (c->head_len == HTTP_HEAD_MAX)
		respond(c, 400, "text/plain", "request head too long\n", 22);
}

static void listen_event(struct ev_source *src, uint32_t events)
{
	struct http_server *srv = (struct http_server *)src;
	struct http_conn *c;
	int fd;

	(void)events;
	while ((fd = accept4(srv->src.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
		if (srv->nr_conns >= HTTP_MAX_CONNS) {
			close(fd);
			continue;
		}
		c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		c->src.fd = fd;
		c->src.handler = conn_event;
		c->srv = srv;
		if (ev_add(srv->epfd, &c->src, EPOLLIN)) {
			close(fd);
			free(c);
			continue;
		}
		c->next = srv->conns;
		srv->conns = c;
		srv->nr_conns++;
	}
}

int http_server_open(uint16_t port, int epfd, http_render_fn render, void *ctx,
		     struct http_server **out)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct http_server *srv = calloc(1, sizeof(*srv));
	int one = 1, err;

	if (!srv)
		return -ENOMEM;
	srv->epfd = epfd;
	srv->render = render;
	srv->ctx = ctx;
	srv->src.handler = listen_event;
	srv->src.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (srv->src.fd < 0) {
		err = -errno;
		free(srv);
		return err;
	}
	setsockopt(srv->src.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	err = bind(srv->src.fd, (struct sockaddr *)&sa, sizeof(sa)) ? -errno : 0;
	if (!err && listen(srv->src.fd, 16))
		err = -errno;
	if (!err)
		err = ev_add(epfd, &srv->src, EPOLLIN);
	if (err) {
		close(srv->src.fd);
		free(srv);
		return err;
	}
	*out = srv;
	return 0;
}

void http_server_close(struct http_server *srv)
{
	if (!srv)
		return;
	while (srv->conns)
		conn_free(srv->conns);
	ev_del(srv->epfd, &srv->src);
	close(srv->src.fd);
	free(srv);
}
