// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The Prometheus endpoint: GET/HEAD /metrics on loopback, served by
 * libmicrohttpd (HTTP parsing, keep-alive, limits and timeouts are the
 * library's; this file only renders the body and picks the limits).
 *
 * MHD runs in external epoll mode, driven from the agent's own loop, not
 * in a thread of its own: the render callback reads the agent's state
 * (applied policy, netstats, loader handles) that only the loop thread
 * writes, so serving on that thread needs no locks and a scrape always
 * sees one consistent state.  The price is that a render runs on the loop;
 * it is a few hundred microseconds for a host's worth of VMs.  MHD's epoll
 * fd goes into the loop, and a timerfd follows MHD_get_timeout() so idle
 * and half-sent connections are closed on time even when no fd is ready.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <microhttpd.h>

#include "agent/core/evloop.h"
#include "agent/core/log.h"
#include "agent/metrics/http.h"

/*
 * Limits.  A slow or flooding client must neither stall the agent nor keep
 * a scraper out: connections that send nothing for HTTP_IDLE_S are closed
 * by MHD; up to HTTP_MAX_CONNS may be open at once (epoll mode has no
 * FD_SETSIZE bound), beyond that a new connection is accepted and closed
 * at once (a clean refusal); the listen backlog holds a burst of that size
 * so a thousand concurrent connects are each answered or refused, never
 * left hanging in SYN_RECV.
 */
#define HTTP_MAX_CONNS		1024
#define HTTP_BACKLOG		1024
#define HTTP_IDLE_S		10
#define HTTP_CONN_MEMORY	(32 * 1024)

#define METRICS_TYPE		"text/plain; version=0.0.4; charset=utf-8"

struct http_server {
	struct MHD_Daemon *mhd;
	struct ev_source io;	/* MHD's epoll fd */
	struct ev_source timer;	/* MHD_get_timeout() */
	int epfd;
	http_render_fn render;
	void *ctx;
};

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];

	(void)cls;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	msg[strcspn(msg, "\n")] = '\0';
	log_debug("metrics http: %s", msg);
}

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned int code,
			     const char *type, char *body, size_t len, bool allow)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	if (allow)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	ret = MHD_queue_response(conn, code, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result reply_text(struct MHD_Connection *conn, unsigned int code,
				  const char *text, bool allow)
{
	char *body = strdup(text);

	return body ? reply(conn, code, "text/plain; charset=utf-8", body, strlen(text), allow)
		    : MHD_NO;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version,
				  const char *upload_data, size_t *upload_size, void **con_cls)
{
	struct http_server *srv = cls;
	char *body = NULL;
	size_t len = 0;
	FILE *f;

	(void)version;
	(void)upload_data;
	(void)upload_size;
	(void)con_cls;
	/* Answered on the first call, whatever the body: nothing here reads one. */
	if (strcmp(method, MHD_HTTP_METHOD_GET) && strcmp(method, MHD_HTTP_METHOD_HEAD))
		return reply_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED,
				  "only GET and HEAD: try GET /metrics\n", true);
	if (strcmp(url, "/metrics"))
		return reply_text(conn, MHD_HTTP_NOT_FOUND, "try /metrics\n", false);
	f = open_memstream(&body, &len);
	if (!f)
		return MHD_NO;
	srv->render(srv->ctx, f);
	if (fclose(f)) {
		free(body);
		return MHD_NO;
	}
	/* For HEAD, MHD sends the headers (Content-Length included) only. */
	return reply(conn, MHD_HTTP_OK, METRICS_TYPE, body, len, false);
}

/* Re-arm the timer to MHD's next deadline (none: disarmed). */
static void arm_timer(struct http_server *srv)
{
	struct itimerspec its = {};
	MHD_UNSIGNED_LONG_LONG ms;

	if (MHD_get_timeout(srv->mhd, &ms) == MHD_YES) {
		if (!ms)
			ms = 1;
		its.it_value.tv_sec = ms / 1000;
		its.it_value.tv_nsec = (ms % 1000) * 1000000L;
	}
	timerfd_settime(srv->timer.fd, 0, &its, NULL);
}

static void drive(struct http_server *srv)
{
	MHD_run(srv->mhd);
	arm_timer(srv);
}

static void on_io(struct ev_source *src, uint32_t events)
{
	(void)events;
	drive((struct http_server *)((char *)src - offsetof(struct http_server, io)));
}

static void on_timer(struct ev_source *src, uint32_t events)
{
	struct http_server *srv = (struct http_server *)((char *)src -
							 offsetof(struct http_server, timer));
	uint64_t ticks;

	(void)events;
	if (read(src->fd, &ticks, sizeof(ticks)) < 0 && errno != EAGAIN)
		log_debug("metrics http: timer: %s", strerror(errno));
	drive(srv);
}

int http_server_open(uint16_t port, int epfd, http_render_fn render, void *ctx,
		     struct http_server **out)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct http_server *srv = calloc(1, sizeof(*srv));
	const union MHD_DaemonInfo *info;
	int err;

	if (!srv)
		return -ENOMEM;
	srv->epfd = epfd;
	srv->render = render;
	srv->ctx = ctx;
	srv->io.fd = srv->timer.fd = -1;
	errno = 0;
	srv->mhd = MHD_start_daemon(MHD_USE_EPOLL | MHD_USE_ERROR_LOG, port, NULL, NULL,
				    on_request, srv,
				    MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
				    MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned int)HTTP_BACKLOG,
				    MHD_OPTION_CONNECTION_LIMIT, (unsigned int)HTTP_MAX_CONNS,
				    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)HTTP_IDLE_S,
				    MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_CONN_MEMORY,
				    MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
				    MHD_OPTION_END);
	if (!srv->mhd) {
		/* MHD leaves errno from the failing bind/listen, usually. */
		err = errno ? -errno : -EADDRINUSE;
		free(srv);
		return err;
	}
	info = MHD_get_daemon_info(srv->mhd, MHD_DAEMON_INFO_EPOLL_FD);
	srv->io.fd = info ? info->epoll_fd : -1;
	srv->io.handler = on_io;
	srv->timer.fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	srv->timer.handler = on_timer;
	if (srv->io.fd < 0 || srv->timer.fd < 0) {
		err = srv->timer.fd < 0 ? -errno : -EINVAL;
		goto fail;
	}
	err = ev_add(epfd, &srv->io, EPOLLIN);
	if (err)
		goto fail;
	err = ev_add(epfd, &srv->timer, EPOLLIN);
	if (err) {
		ev_del(epfd, &srv->io);
		goto fail;
	}
	*out = srv;
	return 0;
fail:
	if (srv->timer.fd >= 0)
		close(srv->timer.fd);
	MHD_stop_daemon(srv->mhd);
	free(srv);
	return err;
}

void http_server_close(struct http_server *srv)
{
	if (!srv)
		return;
	ev_del(srv->epfd, &srv->io);
	ev_del(srv->epfd, &srv->timer);
	close(srv->timer.fd);
	MHD_stop_daemon(srv->mhd);	/* closes its epoll fd and every connection */
	free(srv);
}
