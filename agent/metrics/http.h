/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Loopback HTTP endpoint serving GET /metrics (Prometheus text format). */
#ifndef RAYOS_HTTP_H
#define RAYOS_HTTP_H

#include <stdint.h>
#include <stdio.h>

typedef void (*http_render_fn)(void *ctx, FILE *out);

struct http_server;

/* Listen on 127.0.0.1:port inside the epoll loop epfd. */
int http_server_open(uint16_t port, int epfd, http_render_fn render, void *ctx,
		     struct http_server **out);
void http_server_close(struct http_server *srv);

#endif
