// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The policy directory, followed by path (policy_watch.h): one inotify
 * instance with a watch on the directory and one on its parent, a timer
 * that waits for a quiet moment before anything is applied, and the
 * identity (device, inode) of the directory being followed.
 */
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "agent/core/evloop.h"
#include "agent/core/log.h"
#include "agent/policy/policy_watch.h"

/* Editors and configuration tools write in several steps: apply once the
 * directory has been quiet this long, but never later than QUIET_MAX_MS
 * after the first event, so a steady stream of edits cannot starve it. */
#define QUIET_MS	50
#define QUIET_MAX_MS	1000

#define DIR_EVENTS	(IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | \
			 IN_CREATE | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)
#define PARENT_EVENTS	(IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | \
			 IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)

struct policy_watch {
	struct ev_source ino, timer;
	int epfd;
	char path[PATH_MAX];
	char parent[PATH_MAX];
	const char *base;		/* last component of path, in path */
	int wd_dir, wd_parent;		/* -1: none */
	bool present;
	dev_t dev;
	ino_t inode;
	uint64_t since;			/* CLOCK_REALTIME s of the last presence change */
	bool content_dirty;		/* files changed: apply even if the dir is the same */
	bool armed;
	uint64_t first_event_ms;	/* of the pending quiet period */
	struct policy_watch_hooks hooks;
};

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void arm(struct policy_watch *w)
{
	uint64_t now = mono_ms(), at = now + QUIET_MS;
	struct itimerspec its = {};

	if (!w->armed) {
		w->armed = true;
		w->first_event_ms = now;
	} else if (at > w->first_event_ms + QUIET_MAX_MS) {
		at = w->first_event_ms + QUIET_MAX_MS;
	}
	at = at > now ? at - now : 1;
	its.it_value.tv_sec = (time_t)(at / 1000);
	its.it_value.tv_nsec = (long)(at % 1000) * 1000000L;
	timerfd_settime(w->timer.fd, 0, &its, NULL);
}

/* (Re)establish the parent's watch; quiet on failure (retried by the check). */
static void watch_parent(struct policy_watch *w)
{
	int wd;

	if (w->wd_parent >= 0 || !w->parent[0])
		return;
	wd = inotify_add_watch(w->ino.fd, w->parent, PARENT_EVENTS);
	if (wd >= 0)
		w->wd_parent = wd;
}

static void unwatch_dir(struct policy_watch *w)
{
	if (w->wd_dir >= 0 && w->wd_dir != w->wd_parent)
		inotify_rm_watch(w->ino.fd, w->wd_dir);
	w->wd_dir = -1;
}

/* Look at what the path leads to now and act on any change. */
static void resolve(struct policy_watch *w)
{
	bool dirty = w->content_dirty, was = w->present;
	struct stat st, again;
	char detail[PATH_MAX + 128];
	int wd, rc;

	w->content_dirty = false;
	watch_parent(w);
	rc = stat(w->path, &st);
	if (rc || !S_ISDIR(st.st_mode)) {
		if (!was)
			return;
		snprintf(detail, sizeof(detail), "%s: %s", w->path,
			 rc ? strerror(errno) : "not a directory");
		unwatch_dir(w);
		w->present = false;
		w->since = (uint64_t)time(NULL);
		if (w->hooks.missing)
			w->hooks.missing(w->hooks.ctx, detail);
		return;
	}
	if (was && st.st_dev == w->dev && st.st_ino == w->inode) {
		if (dirty && w->hooks.apply)
			w->hooks.apply(w->hooks.ctx, "policy directory changed", false);
		return;
	}
	/* Another directory (or one again): watch it before reading it, so
	 * that no edit after the read goes unseen. */
	wd = inotify_add_watch(w->ino.fd, w->path, DIR_EVENTS);
	if (wd < 0) {
		log_err("cannot watch policy directory %s: %s; retrying", w->path,
			strerror(errno));
		arm(w);
		return;
	}
	if (w->wd_dir >= 0 && w->wd_dir != wd)
		unwatch_dir(w);
	w->wd_dir = wd;
	if (stat(w->path, &again) || again.st_dev != st.st_dev || again.st_ino != st.st_ino) {
		arm(w);		/* switched again meanwhile: look once more */
		return;
	}
	w->dev = st.st_dev;
	w->inode = st.st_ino;
	w->present = true;
	w->since = (uint64_t)time(NULL);
	if (w->hooks.apply)
		w->hooks.apply(w->hooks.ctx, was ? "policy directory replaced"
						 : "policy directory appeared", true);
}

static void on_inotify(struct ev_source *src, uint32_t events)
{
	struct policy_watch *w = (struct policy_watch *)((char *)src -
							 offsetof(struct policy_watch, ino));
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	bool relevant = false;
	ssize_t n;

	(void)events;
	while ((n = read(src->fd, buf, sizeof(buf))) > 0) {
		for (char *p = buf; p < buf + n;) {
			struct inotify_event *ev = (struct inotify_event *)p;

			p += sizeof(*ev) + ev->len;
			if (ev->mask & IN_Q_OVERFLOW) {
				w->content_dirty = relevant = true;
				continue;
			}
			if (ev->wd == w->wd_parent) {
				if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED)) {
					/* The parent went: the periodic check re-watches. */
					if (ev->mask & IN_IGNORED)
						w->wd_parent = -1;
					relevant = true;
				} else if (ev->len && !strcmp(ev->name, w->base)) {
					relevant = true;	/* our name came, went or moved */
				}
				continue;
			}
			if (ev->wd != w->wd_dir)
				continue;	/* a directory no longer followed */
			if (ev->mask & IN_IGNORED) {
				w->wd_dir = -1;
				relevant = true;
			} else if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF)) {
				relevant = true;
			} else {
				w->content_dirty = relevant = true;
			}
		}
	}
	if (relevant)
		arm(w);
}

static void on_timer(struct ev_source *src, uint32_t events)
{
	struct policy_watch *w = (struct policy_watch *)((char *)src -
							 offsetof(struct policy_watch, timer));
	uint64_t ticks;

	(void)events;
	if (read(src->fd, &ticks, sizeof(ticks)) != sizeof(ticks))
		return;
	w->armed = false;
	resolve(w);
}

void policy_watch_check(struct policy_watch *w)
{
	if (!w || w->armed)
		return;		/* the pending quiet period ends in a resolve */
	resolve(w);
}

bool policy_watch_present(const struct policy_watch *w)
{
	return w && w->present;
}

uint64_t policy_watch_since(const struct policy_watch *w)
{
	return w ? w->since : 0;
}

void policy_watch_ident(const struct policy_watch *w, uint64_t *dev, uint64_t *ino)
{
	*dev = w ? (uint64_t)w->dev : 0;
	*ino = w ? (uint64_t)w->inode : 0;
}

int policy_watch_open(const char *path, int epfd, const struct policy_watch_hooks *hooks,
		      struct policy_watch **out)
{
	struct policy_watch *w;
	struct stat st;
	size_t len;
	char *slash;
	int err;

	len = strlen(path);
	if (!len || len >= PATH_MAX)
		return -ENAMETOOLONG;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->epfd = epfd;
	w->hooks = *hooks;
	w->wd_dir = w->wd_parent = -1;
	w->ino.fd = w->timer.fd = -1;
	memcpy(w->path, path, len + 1);
	while (len > 1 && w->path[len - 1] == '/')
		w->path[--len] = '\0';
	slash = strrchr(w->path, '/');
	if (!slash) {
		strcpy(w->parent, ".");
		w->base = w->path;
	} else if (slash == w->path) {
		strcpy(w->parent, slash[1] ? "/" : "");	/* "/" itself has no parent */
		w->base = slash + 1;
	} else {
		memcpy(w->parent, w->path, (size_t)(slash - w->path));
		w->parent[slash - w->path] = '\0';
		w->base = slash + 1;
	}

	w->ino.fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	w->ino.handler = on_inotify;
	w->timer.fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	w->timer.handler = on_timer;
	if (w->ino.fd < 0 || w->timer.fd < 0) {
		err = -errno;
		goto fail;
	}
	watch_parent(w);
	w->wd_dir = inotify_add_watch(w->ino.fd, w->path, DIR_EVENTS);
	if (w->wd_dir < 0 || stat(w->path, &st)) {
		err = -errno;
		goto fail;
	}
	w->dev = st.st_dev;
	w->inode = st.st_ino;
	w->present = true;
	w->since = (uint64_t)time(NULL);
	err = ev_add(epfd, &w->ino, EPOLLIN);
	if (!err)
		err = ev_add(epfd, &w->timer, EPOLLIN);
	if (err)
		goto fail;
	*out = w;
	return 0;
fail:
	if (w->ino.fd >= 0)
		close(w->ino.fd);
	if (w->timer.fd >= 0)
		close(w->timer.fd);
	free(w);
	return err;
}

void policy_watch_close(struct policy_watch *w)
{
	if (!w)
		return;
	ev_del(w->epfd, &w->ino);
	ev_del(w->epfd, &w->timer);
	close(w->ino.fd);
	close(w->timer.fd);
	free(w);
}
