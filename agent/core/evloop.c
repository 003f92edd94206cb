// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* The agent's epoll loop, its timers, signals and deferred work (evloop.h). */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "agent/core/evloop.h"

#define EVLOOP_BATCH	64

struct deferred {
	void (*fn)(void *ctx);
	void *ctx;
	struct deferred *next;
};

struct evloop {
	int epfd;
	bool running;
	struct deferred *head, **tail;
};

int evloop_new(struct evloop **out)
{
	struct evloop *l = calloc(1, sizeof(*l));

	if (!l)
		return -ENOMEM;
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l->epfd < 0) {
		int err = -errno;

		free(l);
		return err;
	}
	l->tail = &l->head;
	*out = l;
	return 0;
}

static void run_deferred(struct evloop *l)
{
	while (l->head) {
		struct deferred *d = l->head;

		l->head = d->next;
		if (!l->head)
			l->tail = &l->head;
		d->fn(d->ctx);
		free(d);
	}
}

void evloop_free(struct evloop *l)
{
	if (!l)
		return;
	run_deferred(l);
	close(l->epfd);
	free(l);
}

int evloop_fd(const struct evloop *l)
{
	return l->epfd;
}

int evloop_run(struct evloop *l)
{
	struct epoll_event evs[EVLOOP_BATCH];

	l->running = true;
	while (l->running) {
		int n = epoll_wait(l->epfd, evs, EVLOOP_BATCH, -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			l->running = false;
			return -errno;
		}
		for (int i = 0; i < n && l->running; i++) {
			struct ev_source *src = evs[i].data.ptr;

			src->handler(src, evs[i].events);
		}
		run_deferred(l);
	}
	return 0;
}

void evloop_stop(struct evloop *l)
{
	l->running = false;
}

int evloop_defer(struct evloop *l, void (*fn)(void *ctx), void *ctx)
{
	struct deferred *d;

	if (!l->running) {
		fn(ctx);
		return 0;
	}
	d = malloc(sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->fn = fn;
	d->ctx = ctx;
	d->next = NULL;
	*l->tail = d;
	l->tail = &d->next;
	return 0;
}

int ev_add(int epfd, struct ev_source *src, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = src };

	return epoll_ctl(epfd, EPOLL_CTL_ADD, src->fd, &ev) ? -errno : 0;
}

void ev_del(int epfd, struct ev_source *src)
{
	epoll_ctl(epfd, EPOLL_CTL_DEL, src->fd, NULL);
}

void ev_close(int epfd, struct ev_source *src)
{
	if (src->fd < 0)
		return;
	ev_del(epfd, src);
	close(src->fd);
	src->fd = -1;
}

/* A source whose fd was just made (fd < 0: errno says why) joins the loop,
 * or is closed again. */
static int add_new(int epfd, struct ev_source *src)
{
	int err;

	if (src->fd < 0)
		return -errno;
	err = ev_add(epfd, src, EPOLLIN);
	if (err) {
		close(src->fd);
		src->fd = -1;
	}
	return err;
}

int ev_timer_open(int epfd, struct ev_source *src,
		  void (*handler)(struct ev_source *src, uint32_t events))
{
	src->handler = handler;
	src->fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	return add_new(epfd, src);
}

int ev_timer_arm(struct ev_source *src, uint64_t first_ms, uint64_t interval_ms)
{
	struct itimerspec its = {
		.it_value = { first_ms / 1000, (first_ms % 1000) * 1000000L },
		.it_interval = { interval_ms / 1000, (interval_ms % 1000) * 1000000L },
	};

	return timerfd_settime(src->fd, 0, &its, NULL) ? -errno : 0;
}

uint64_t ev_timer_ack(struct ev_source *src)
{
	uint64_t ticks;

	return read(src->fd, &ticks, sizeof(ticks)) == sizeof(ticks) ? ticks : 0;
}

int ev_signals_open(int epfd, struct ev_source *src, const int *signals, size_t n,
		    void (*handler)(struct ev_source *src, uint32_t events))
{
	sigset_t mask;

	sigemptyset(&mask);
	for (size_t i = 0; i < n; i++)
		sigaddset(&mask, signals[i]);
	if (sigprocmask(SIG_BLOCK, &mask, NULL))
		return -errno;
	signal(SIGPIPE, SIG_IGN);
	src->handler = handler;
	src->fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	return add_new(epfd, src);
}
