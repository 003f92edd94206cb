/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The agent's one epoll loop: every fd it watches (control socket and its
 * connections, inotify, signalfd, timers, later ring buffers and DHCP
 * sockets) is an ev_source whose handler runs when the fd is ready.
 */
#ifndef RAYOS_EVLOOP_H
#define RAYOS_EVLOOP_H

#include <stdint.h>

struct ev_source {
	int fd;
	void (*handler)(struct ev_source *src, uint32_t events);
};

int ev_add(int epfd, struct ev_source *src, uint32_t events);
void ev_del(int epfd, struct ev_source *src);

#endif
