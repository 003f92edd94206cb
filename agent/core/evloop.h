/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The agent's one event loop: every fd it watches (control socket and its
 * connections, the policy directory, signals, timers, ring buffers, DHCP
 * sockets, the metrics endpoint) is an ev_source whose handler runs when
 * the fd is ready; work that must wait until the round's handlers are done
 * (freeing what a queued event may still name) is deferred.  Subsystems
 * register sources with the loop's epoll fd and never run a loop of their
 * own, so they need nothing from the daemon.
 */
#ifndef RAYOS_EVLOOP_H
#define RAYOS_EVLOOP_H

#include <stddef.h>
#include <stdint.h>

struct ev_source {
	int fd;
	void (*handler)(struct ev_source *src, uint32_t events);
};

struct evloop;

int evloop_new(struct evloop **out);
void evloop_free(struct evloop *l);	/* closes the epoll fd, runs deferred work */
/* The epoll fd that ev_add/ev_del take. */
int evloop_fd(const struct evloop *l);
/* Wait and dispatch until evloop_stop; 0, or a negative errno if waiting
 * failed.  Each round: every ready source's handler, then the deferred work
 * queued during the round, in order. */
int evloop_run(struct evloop *l);
/* Ends evloop_run after the handler that calls it; no further handler of
 * the round runs. */
void evloop_stop(struct evloop *l);
/* fn(ctx) once, after this round's handlers (at once if no round runs). */
int evloop_defer(struct evloop *l, void (*fn)(void *ctx), void *ctx);

int ev_add(int epfd, struct ev_source *src, uint32_t events);
void ev_del(int epfd, struct ev_source *src);

/* Timers: src becomes a CLOCK_MONOTONIC timerfd in the loop; arm with the
 * first expiry and the interval in ms (0, 0 disarms).  The handler reads
 * the fd with ev_timer_ack. */
int ev_timer_open(int epfd, struct ev_source *src,
		  void (*handler)(struct ev_source *src, uint32_t events));
int ev_timer_arm(struct ev_source *src, uint64_t first_ms, uint64_t interval_ms);
uint64_t ev_timer_ack(struct ev_source *src);	/* expirations since the last ack */
/* Signals: blocks them in this thread and delivers them through a
 * signalfd source; SIGPIPE is ignored (a closed peer is an error return). */
int ev_signals_open(int epfd, struct ev_source *src, const int *signals, size_t n,
		    void (*handler)(struct ev_source *src, uint32_t events));
/* Closes a source's fd after removing it from the loop (fd < 0: nothing). */
void ev_close(int epfd, struct ev_source *src);

#endif
