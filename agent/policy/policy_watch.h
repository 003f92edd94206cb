/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Follows the policy directory by its path, not by the inode it had at
 * start: an inotify watch on the directory (its files changing) and one on
 * its parent (its name being created, moved or deleted), so that
 *   - an edit inside it is applied,
 *   - a replaced directory (`mv policies old; mv new policies`) or a
 *     symlink switched atomically (`ln -sfn new policies.tmp &&
 *     mv -T policies.tmp policies`) is applied as one publish, and the old
 *     directory is no longer watched,
 *   - a removed directory is reported (the last set stays enforced) until
 *     a directory appears under the name again, which is then applied.
 * A periodic check (policy_watch_check) catches what inotify cannot see: a
 * symlink further up the path switched, the parent itself replaced.
 */
#ifndef RAYOS_POLICY_WATCH_H
#define RAYOS_POLICY_WATCH_H

#include <stdbool.h>
#include <stdint.h>

struct policy_watch;

struct policy_watch_hooks {
	void *ctx;
	/* Apply the directory: its contents changed (replaced false), or the
	 * name now leads to another directory or to one again (replaced
	 * true).  why is for the log. */
	void (*apply)(void *ctx, const char *why, bool replaced);
	/* The name leads to no directory any more. */
	void (*missing)(void *ctx, const char *detail);
};

/* Watch path (as given: relative paths stay relative to the working
 * directory) from the epoll loop epfd.  Fails when path is not a
 * directory now or inotify cannot be had. */
int policy_watch_open(const char *path, int epfd, const struct policy_watch_hooks *hooks,
		      struct policy_watch **out);
void policy_watch_close(struct policy_watch *w);

/* Re-resolve the path now (after the usual quiet period when events are
 * pending): for the periodic check and for callers that found the
 * directory gone. */
void policy_watch_check(struct policy_watch *w);

/* Whether the name leads to a directory, and since when (CLOCK_REALTIME s)
 * it has (or has not); the device and inode being followed. */
bool policy_watch_present(const struct policy_watch *w);
uint64_t policy_watch_since(const struct policy_watch *w);
void policy_watch_ident(const struct policy_watch *w, uint64_t *dev, uint64_t *ino);

#endif
