/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Control socket: AF_UNIX stream in the run dir, mode 0600, root peers only
 * (SO_PEERCRED).  Each message is a 4-byte big-endian length followed by
 * exactly that many bytes of one JSON object; anything else is refused.
 * Requests are {"cmd": "...", ...}; replies {"ok": true, ...} or
 * {"ok": false, "error": "..."}.
 */
#ifndef RAYOS_CONTROL_H
#define RAYOS_CONTROL_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#define CONTROL_MSG_MAX		(64 * 1024)
#define CONTROL_SOCK_NAME	"control.sock"

/* ---- client side (the CLI) ---- */

/* Send req, wait for the reply (timeout_ms), return it in *reply (caller
 * deletes).  -ENOENT/-ECONNREFUSED mean no agent is running. */
int control_call(const char *sock_path, const cJSON *req, cJSON **reply,
		 int timeout_ms);

/* ---- server side (the agent) ---- */

struct control_server;
struct evloop;

/* Called with a parsed request; returns the reply object (owned by caller). */
typedef cJSON *(*control_handler_fn)(void *ctx, const cJSON *req);

/* Listen on sock_path and serve requests from the epoll loop epfd. */
int control_server_open(const char *sock_path, struct evloop *loop, control_handler_fn fn,
			void *ctx, struct control_server **out);
void control_server_close(struct control_server *srv);

/* What the server has done since it opened, for status. */
struct control_stats {
	unsigned int connections, max_connections, max_per_peer;
	uint64_t accepted;	/* root clients taken in */
	uint64_t refused;	/* non-root clients closed at accept */
	uint64_t evicted;	/* quiet connections closed to make room */
	uint64_t timed_out;	/* requests not whole within the timeout */
};
void control_server_stats(const struct control_server *srv, struct control_stats *st);
/* Periodic: close connections past their time, log what was closed. */
void control_server_tick(struct control_server *srv);

/* Length-prefix framing, exposed for tests: validate a frame header. */
int control_frame_len(const uint8_t hdr[4], uint32_t *len);

cJSON *control_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
