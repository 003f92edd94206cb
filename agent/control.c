// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The agent's control socket and the CLI's client for it.  One request per
 * connection; the server side is non-blocking and lives in the epoll loop, so
 * a slow or silent client cannot stall enforcement work.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "agent/control.h"
#include "agent/evloop.h"
#include "agent/log.h"

#define CONTROL_MAX_CONNS	32
#define CONTROL_CONN_TIMEOUT_S	5

struct control_conn {
	struct ev_source src;
	struct control_server *srv;
	struct control_conn *next;
	time_t deadline;
	uint8_t hdr[4];
	uint32_t hdr_have;
	uint32_t body_len, body_have;
	char *body;
	char *out;		/* framed reply */
	size_t out_len, out_done;
};

struct control_server {
	struct ev_source src;	/* listening socket */
	int epfd;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	control_handler_fn fn;
	void *ctx;
	struct control_conn *conns;
	unsigned int nr_conns;
};

cJSON *control_error(const char *fmt, ...)
{
	char msg[512];
	cJSON *r;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	r = cJSON_CreateObject();
	cJSON_AddBoolToObject(r, "ok", 0);
	cJSON_AddStringToObject(r, "error", msg);
	return r;
}

int control_frame_len(const uint8_t hdr[4], uint32_t *len)
{
	uint32_t n = (uint32_t)hdr[0] << 24 | hdr[1] << 16 | hdr[2] << 8 | hdr[3];

	if (n == 0 || n > CONTROL_MSG_MAX)
		return -EMSGSIZE;
	*len = n;
	return 0;
}

/* Frame a JSON object: 4-byte big-endian length, then the text. */
static char *frame(const cJSON *obj, size_t *len)
{
	char *text = cJSON_PrintUnformatted(obj);
	size_t n;
	char *buf;

	if (!text)
		return NULL;
	n = strlen(text);
	buf = malloc(n + 4);
	if (buf) {
		uint32_t be = htonl((uint32_t)n);

		memcpy(buf, &be, 4);
		memcpy(buf + 4, text, n);
		*len = n + 4;
	}
	free(text);
	return buf;
}

static void conn_free(struct control_conn *c)
{
	struct control_server *srv = c->srv;
	struct control_conn **pp;

	for (pp = &srv->conns; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	srv->nr_conns--;
	ev_del(srv->epfd, &c->src);
	close(c->src.fd);
	free(c->body);
	free(c->out);
	free(c);
}

static int conn_flush(struct control_conn *c)
{
	while (c->out_done < c->out_len) {
		ssize_t n = send(c->src.fd, c->out + c->out_done,
				 c->out_len - c->out_done, MSG_NOSIGNAL);

		if (n < 0 && errno == EAGAIN)
			return -EAGAIN;
		if (n <= 0)
			return -EPIPE;
		c->out_done += n;
	}
	return 0;
}

static void conn_reply(struct control_conn *c, cJSON *reply)
{
	struct epoll_event ev = { .events = EPOLLOUT, .data.ptr = &c->src };

	c->out = frame(reply, &c->out_len);
	cJSON_Delete(reply);
	if (!c->out || conn_flush(c) != -EAGAIN) {
		conn_free(c);
		return;
	}
	epoll_ctl(c->srv->epfd, EPOLL_CTL_MOD, c->src.fd, &ev);
}

static void conn_dispatch(struct control_conn *c)
{
	const char *end = NULL;
	cJSON *req, *reply;

	req = cJSON_ParseWithLengthOpts(c->body, c->body_len, &end, 0);
	if (!req || end != c->body + c->body_len) {
		reply = control_error("request is not one JSON document of %u bytes",
				      c->body_len);
	} else if (!cJSON_IsObject(req) ||
		   !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(req, "cmd"))) {
		reply = control_error("request must be an object with a string \"cmd\"");
	} else {
		reply = c->srv->fn(c->srv->ctx, req);
	}
	cJSON_Delete(req);
	conn_reply(c, reply);
}

/* Read what is available; returns 1 when the whole request is in. */
static int conn_read(struct control_conn *c)
{
	ssize_t n;
	int err;

	while (c->hdr_have < 4) {
		n = recv(c->src.fd, c->hdr + c->hdr_have, 4 - c->hdr_have, 0);
		if (n < 0 && errno == EAGAIN)
			return 0;
		if (n <= 0)
			return -EPIPE;
		c->hdr_have += n;
		if (c->hdr_have < 4)
			continue;
		err = control_frame_len(c->hdr, &c->body_len);
		if (err)
			return err;
		c->body = malloc(c->body_len + 1);
		if (!c->body)
			return -ENOMEM;
	}
	while (c->body_have < c->body_len) {
		n = recv(c->src.fd, c->body + c->body_have, c->body_len - c->body_have, 0);
		if (n < 0 && errno == EAGAIN)
			return 0;
		if (n <= 0)
			return -EPIPE;
		c->body_have += n;
	}
	c->body[c->body_len] = '\0';
	return 1;
}

static void conn_event(struct ev_source *src, uint32_t events)
{
	struct control_conn *c = (struct control_conn *)src;
	int ret;

	if (c->out) {
		if (conn_flush(c) != -EAGAIN)
			conn_free(c);
		return;
	}
	if (events & (EPOLLERR | EPOLLHUP) && !(events & EPOLLIN)) {
		conn_free(c);
		return;
	}
	ret = conn_read(c);
	if (ret == 0)
		return;
	if (ret == -EMSGSIZE) {
		conn_reply(c, control_error("bad frame: length must be 1..%d bytes",
					    CONTROL_MSG_MAX));
		return;
	}
	if (ret < 0) {
		conn_free(c);
		return;
	}
	conn_dispatch(c);
}

/* Drop connections that sat idle past their deadline. */
static void reap_stale(struct control_server *srv)
{
	time_t now = time(NULL);
	struct control_conn *c = srv->conns, *next;

	for (; c; c = next) {
		next = c->next;
		if (now > c->deadline) {
			log_warn("control: dropping a client idle for %ds",
				 CONTROL_CONN_TIMEOUT_S);
			conn_free(c);
		}
	}
}

static bool peer_is_root(int fd)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	return !getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) && cred.uid == 0;
}

static void listen_event(struct ev_source *src, uint32_t events)
{
	struct control_server *srv = (struct control_server *)src;
	struct control_conn *c;
	int fd;

	(void)events;
	reap_stale(srv);
	while ((fd = accept4(srv->src.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
		if (!peer_is_root(fd) || srv->nr_conns >= CONTROL_MAX_CONNS) {
			/* Refuse without reading: no state for strangers. */
			log_warn("control: refused a client (%s)",
				 srv->nr_conns >= CONTROL_MAX_CONNS ? "too many clients"
								    : "peer is not root");
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
		c->deadline = time(NULL) + CONTROL_CONN_TIMEOUT_S;
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

int control_server_open(const char *sock_path, int epfd, control_handler_fn fn,
			void *ctx, struct control_server **out)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct control_server *srv;
	mode_t old_mask;
	int err;

	if (strlen(sock_path) >= sizeof(addr.sun_path))
		return -ENAMETOOLONG;
	srv = calloc(1, sizeof(*srv));
	if (!srv)
		return -ENOMEM;
	strcpy(addr.sun_path, sock_path);
	strcpy(srv->path, sock_path);
	srv->epfd = epfd;
	srv->fn = fn;
	srv->ctx = ctx;
	srv->src.handler = listen_event;
	srv->src.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (srv->src.fd < 0) {
		err = -errno;
		free(srv);
		return err;
	}
	/* The lock file says no agent runs, so a socket here is stale. */
	unlink(sock_path);
	old_mask = umask(0177);	/* born 0600: no window where others connect */
	err = bind(srv->src.fd, (struct sockaddr *)&addr, sizeof(addr)) ? -errno : 0;
	umask(old_mask);
	if (!err && chmod(sock_path, 0600))
		err = -errno;
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

void control_server_close(struct control_server *srv)
{
	if (!srv)
		return;
	while (srv->conns)
		conn_free(srv->conns);
	ev_del(srv->epfd, &srv->src);
	close(srv->src.fd);
	unlink(srv->path);
	free(srv);
}

/* ---- client ---- */

static int io_full(int fd, void *buf, size_t len, bool wr, int timeout_ms)
{
	struct pollfd pfd = { .fd = fd, .events = wr ? POLLOUT : POLLIN };
	size_t done = 0;

	while (done < len) {
		ssize_t n;
		int r = poll(&pfd, 1, timeout_ms);

		if (r == 0)
			return -ETIMEDOUT;
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		n = wr ? send(fd, (char *)buf + done, len - done, MSG_NOSIGNAL)
		       : recv(fd, (char *)buf + done, len - done, 0);
		if (n == 0)
			return -ECONNRESET;
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -errno;
		}
		done += n;
	}
	return 0;
}

int control_call(const char *sock_path, const cJSON *req, cJSON **reply,
		 int timeout_ms)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	uint8_t hdr[4];
	uint32_t len;
	char *out = NULL, *in = NULL;
	size_t out_len;
	int fd, err;

	*reply = NULL;
	if (strlen(sock_path) >= sizeof(addr.sun_path))
		return -ENAMETOOLONG;
	strcpy(addr.sun_path, sock_path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr))) {
		err = -errno;
		goto out;
	}
	out = frame(req, &out_len);
	if (!out) {
		err = -ENOMEM;
		goto out;
	}
	err = io_full(fd, out, out_len, true, timeout_ms);
	if (!err)
		err = io_full(fd, hdr, 4, false, timeout_ms);
	if (err)
		goto out;
	/* Replies may be larger than requests (status of 4096 VMs). */
	len = (uint32_t)hdr[0] << 24 | hdr[1] << 16 | hdr[2] << 8 | hdr[3];
	if (len == 0 || len > 64u << 20) {
		err = -EMSGSIZE;
		goto out;
	}
	in = malloc(len + 1);
	if (!in) {
		err = -ENOMEM;
		goto out;
	}
	err = io_full(fd, in, len, false, timeout_ms);
	if (err)
		goto out;
	in[len] = '\0';
	*reply = cJSON_ParseWithLength(in, len);
	if (!*reply)
		err = -EBADMSG;
out:
	free(in);
	free(out);
	close(fd);
	return err;
}
