// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The agent's control socket and the CLI's client for it.  One request per
 * connection; the server side is non-blocking and lives in the epoll loop, so
 * a slow or silent client cannot stall enforcement work.
 *
 * Fairness: the peer is checked (SO_PEERCRED, root only) at accept, before
 * it counts toward any limit.  A client process holds at most
 * CONTROL_MAX_PER_PEER connections and all of them together at most
 * CONTROL_MAX_CONNS; when either is full, the connection that has been quiet
 * the longest is closed to make room, so clients that connect and send
 * nothing can never lock out `status`.  A request must arrive whole within
 * CONTROL_CONN_TIMEOUT_S of the connect.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
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

#include "agent/control/control.h"
#include "agent/core/evloop.h"
#include "agent/core/log.h"

/* Idle connections cost a socket and ~150 bytes here: room for a
 * thousand clients, at most 64 from any one process. */
#define CONTROL_MAX_CONNS	1024
#define CONTROL_MAX_PER_PEER	64
#define CONTROL_CONN_TIMEOUT_S	5
/* At most one summary line of evictions and refusals per this period. */
#define CONTROL_LOG_PERIOD_S	5
/* Accepts per wake-up: clients that reconnect as fast as they are closed
 * must not keep the loop in accept() while requests wait. */
#define CONTROL_ACCEPT_BATCH	32

struct control_conn {
	struct ev_source src;
	struct control_server *srv;
	/* Least recently active first: the head is evicted when full. */
	struct control_conn *prev, *next;
	pid_t pid;			/* the peer process (SO_PEERCRED) */
	uint64_t active_ms;		/* accept, or the last byte in or out */
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
	struct evloop *loop;
	int epfd;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	control_handler_fn fn;
	void *ctx;
	struct control_conn *head, *tail;
	struct control_conn *grave;	/* closed, freed after the batch */
	int spare_fd;			/* given up to refuse a client at EMFILE */
	unsigned int nr_conns;
	struct control_stats st;
	uint64_t logged_evicted, logged_refused;
	time_t log_at;
};

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void lru_unlink(struct control_server *srv, struct control_conn *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		srv->head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else
		srv->tail = c->prev;
	c->prev = c->next = NULL;
}

static void lru_append(struct control_server *srv, struct control_conn *c)
{
	c->prev = srv->tail;
	c->next = NULL;
	if (srv->tail)
		srv->tail->next = c;
	else
		srv->head = c;
	srv->tail = c;
}

/* Bytes moved: the connection goes to the young end. */
static void touch(struct control_conn *c)
{
	c->active_ms = mono_ms();
	if (c->out)	/* a reply going out slowly gets time while it moves */
		c->deadline = time(NULL) + CONTROL_CONN_TIMEOUT_S;
	if (c->srv->tail != c) {
		lru_unlink(c->srv, c);
		lru_append(c->srv, c);
	}
}

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

static void server_flush(void *ctx);

/* Close c now; its memory waits for the end of the loop's round (deferred
 * work): an event of c may still be queued in it (one handler closes other
 * connections to make room). */
static void conn_free(struct control_conn *c)
{
	struct control_server *srv = c->srv;

	lru_unlink(srv, c);
	srv->nr_conns--;
	ev_del(srv->epfd, &c->src);
	close(c->src.fd);
	c->src.fd = -1;
	free(c->body);
	free(c->out);
	c->body = c->out = NULL;
	if (!srv->grave && evloop_defer(srv->loop, server_flush, srv))
		log_warn("control: cannot defer freeing closed connections; freed at close");
	c->next = srv->grave;
	srv->grave = c;
}

static void server_flush(void *ctx)
{
	struct control_server *srv = ctx;

	while (srv && srv->grave) {
		struct control_conn *c = srv->grave;

		srv->grave = c->next;
		free(c);
	}
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
		touch(c);
	}
	return 0;
}

static void conn_reply(struct control_conn *c, cJSON *reply)
{
	struct epoll_event ev = { .events = EPOLLOUT, .data.ptr = &c->src };

	c->out = frame(reply, &c->out_len);
	c->deadline = time(NULL) + CONTROL_CONN_TIMEOUT_S;
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
		touch(c);
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
		touch(c);
		c->body_have += n;
	}
	c->body[c->body_len] = '\0';
	return 1;
}

static void conn_event(struct ev_source *src, uint32_t events)
{
	struct control_conn *c = (struct control_conn *)src;
	int ret;

	if (c->src.fd < 0)
		return;		/* closed earlier in this batch */
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

/* One summary line now and then, not one per client: a flood of
 * connections must not become a flood of log lines. */
static void log_summary(struct control_server *srv)
{
	time_t now = time(NULL);
	uint64_t ev = srv->st.evicted - srv->logged_evicted;
	uint64_t rf = srv->st.refused - srv->logged_refused;

	if ((!ev && !rf) || now < srv->log_at)
		return;
	log_warn("control: closed %llu connection(s) that sent nothing to make room (at most "
		 "%d per client process, %d in all) and refused %llu non-root client(s) in the "
		 "last %d s", (unsigned long long)ev, CONTROL_MAX_PER_PEER, CONTROL_MAX_CONNS,
		 (unsigned long long)rf, CONTROL_LOG_PERIOD_S);
	srv->logged_evicted = srv->st.evicted;
	srv->logged_refused = srv->st.refused;
	srv->log_at = now + CONTROL_LOG_PERIOD_S;
}

/* Close c to make room, telling it why if its socket takes it now. */
static void evict(struct control_conn *c)
{
	static const char why[] = "{\"ok\":false,\"error\":\"closed to make room for other "
				  "clients: no request in time\"}";
	uint8_t frame_buf[4 + sizeof(why) - 1];
	uint32_t be = htonl(sizeof(why) - 1);

	if (!c->out && !c->hdr_have) {
		memcpy(frame_buf, &be, 4);
		memcpy(frame_buf + 4, why, sizeof(why) - 1);
		if (send(c->src.fd, frame_buf, sizeof(frame_buf), MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
			errno = 0;	/* best effort */
	}
	c->srv->st.evicted++;
	conn_free(c);
}

/* Close connections whose request did not arrive whole in time. */
static void reap_stale(struct control_server *srv)
{
	time_t now = time(NULL);
	struct control_conn *c = srv->head, *next;

	for (; c; c = next) {
		next = c->next;
		if (now > c->deadline) {
			srv->st.timed_out++;
			conn_free(c);
		}
	}
}

/* The least recently active connection of pid, or of anyone (pid 0).
 * One whose request already waits in its socket is not quiet (the loop has
 * not read it yet): it moves to the young end instead. */
static struct control_conn *oldest(struct control_server *srv, pid_t pid)
{
	struct control_conn *c, *next, *first = NULL;
	unsigned int seen = 0;
	char byte;

	/* Each connection once: those moved to the end are not seen again. */
	for (c = srv->head; c && seen++ < srv->nr_conns; c = next) {
		next = c->next;
		if (pid && c->pid != pid)
			continue;
		if (!first)
			first = c;
		if (c->out || recv(c->src.fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) != 1)
			return c;
		if (next)
			touch(c);
	}
	return first;	/* every one has input waiting: the oldest goes anyway */
}

static unsigned int conns_of(const struct control_server *srv, pid_t pid)
{
	unsigned int n = 0;

	for (const struct control_conn *c = srv->head; c; c = c->next)
		n += c->pid == pid;
	return n;
}

static void listen_event(struct ev_source *src, uint32_t events)
{
	struct control_server *srv = (struct control_server *)src;
	struct control_conn *c;
	struct ucred cred;
	socklen_t len;
	int fd, batch = CONTROL_ACCEPT_BATCH;

	(void)events;
	reap_stale(srv);
	while (batch-- > 0) {
		fd = accept4(srv->src.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0 && (errno == EMFILE || errno == ENFILE)) {
			/* Out of descriptors: make room rather than leave the
			 * client in the backlog and the loop spinning on it. */
			if (srv->head) {
				evict(oldest(srv, 0));
				continue;
			}
			if (srv->spare_fd >= 0) {
				close(srv->spare_fd);
				fd = accept4(srv->src.fd, NULL, NULL, SOCK_CLOEXEC);
				if (fd >= 0)
					close(fd);
				srv->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
				srv->st.refused++;
				continue;
			}
		}
		if (fd < 0)
			break;
		len = sizeof(cred);
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) || cred.uid != 0) {
			/* Refused before it counts: no state for strangers. */
			srv->st.refused++;
			close(fd);
			continue;
		}
		if (conns_of(srv, cred.pid) >= CONTROL_MAX_PER_PEER)
			evict(oldest(srv, cred.pid));
		else if (srv->nr_conns >= CONTROL_MAX_CONNS)
			evict(oldest(srv, 0));
		c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		c->src.fd = fd;
		c->src.handler = conn_event;
		c->srv = srv;
		c->pid = cred.pid;
		c->active_ms = mono_ms();
		c->deadline = time(NULL) + CONTROL_CONN_TIMEOUT_S;
		if (ev_add(srv->epfd, &c->src, EPOLLIN)) {
			close(fd);
			free(c);
			continue;
		}
		lru_append(srv, c);
		srv->nr_conns++;
		srv->st.accepted++;
	}
	log_summary(srv);
}

void control_server_tick(struct control_server *srv)
{
	if (!srv)
		return;
	reap_stale(srv);
	log_summary(srv);
}

void control_server_stats(const struct control_server *srv, struct control_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (!srv)
		return;
	*st = srv->st;
	st->connections = srv->nr_conns;
	st->max_connections = CONTROL_MAX_CONNS;
	st->max_per_peer = CONTROL_MAX_PER_PEER;
}

int control_server_open(const char *sock_path, struct evloop *loop, control_handler_fn fn,
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
	srv->loop = loop;
	srv->epfd = evloop_fd(loop);
	srv->fn = fn;
	srv->ctx = ctx;
	srv->src.handler = listen_event;
	srv->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	srv->src.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (srv->src.fd < 0) {
		err = -errno;
		goto fail;
	}
	/* The lock file says no agent runs, so a socket here is stale. */
	unlink(sock_path);
	old_mask = umask(0177);	/* born 0600: no window where others connect */
	err = bind(srv->src.fd, (struct sockaddr *)&addr, sizeof(addr)) ? -errno : 0;
	umask(old_mask);
	if (!err && chmod(sock_path, 0600))
		err = -errno;
	/* A burst of clients waits in the backlog, not in connect(). */
	if (!err && listen(srv->src.fd, SOMAXCONN))
		err = -errno;
	if (!err)
		err = ev_add(srv->epfd, &srv->src, EPOLLIN);
	if (err) {
		close(srv->src.fd);
		goto fail;
	}
	*out = srv;
	return 0;
fail:
	if (srv->spare_fd >= 0)
		close(srv->spare_fd);
	free(srv);
	return err;
}

void control_server_close(struct control_server *srv)
{
	if (!srv)
		return;
	while (srv->head)
		conn_free(srv->head);
	server_flush(srv);
	if (srv->spare_fd >= 0)
		close(srv->spare_fd);
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
