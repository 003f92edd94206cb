// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* The agent's epoll loop: registration of event sources (see evloop.h). */
#include <errno.h>
#include <stddef.h>
#include <sys/epoll.h>

#include "agent/core/evloop.h"

int ev_add(int epfd, struct ev_source *src, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = src };

	return epoll_ctl(epfd, EPOLL_CTL_ADD, src->fd, &ev) ? -errno : 0;
}

void ev_del(int epfd, struct ev_source *src)
{
	epoll_ctl(epfd, EPOLL_CTL_DEL, src->fd, NULL);
}
