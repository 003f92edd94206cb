// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * VM cgroups under the cgroup v2 mount (see cgroup.h).  Only directories
 * under the given parent are ever made or removed; the host's own cgroups
 * are read (mountinfo), never written.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent/core/log.h"
#include "agent/core/util.h"
#include "agent/vm/cgroup.h"

/* mountinfo escapes space, tab, newline and backslash as \ooo. */
static void unescape(char *s)
{
	char *o = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*o++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 3;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
}

int cgroup_v2_mount(char *buf, size_t len)
{
	char line[4096], found[PATH_MAX] = "";
	FILE *f;

	f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		char mnt[PATH_MAX], *sep;
		int n = 0;

		/* id parent major:minor root mountpoint options... - fstype ... */
		if (sscanf(line, "%*s %*s %*s %*s %4095s%n", mnt, &n) != 1)
			continue;
		sep = strstr(line + n, " - ");
		if (!sep || strncmp(sep + 3, "cgroup2 ", 8))
			continue;
		unescape(mnt);
		if (!found[0] || !strcmp(mnt, "/sys/fs/cgroup"))
			snprintf(found, sizeof(found), "%s", mnt);
	}
	fclose(f);
	if (!found[0])
		return -ENOENT;
	if (snprintf(buf, len, "%s", found) >= (int)len)
		return -ENAMETOOLONG;
	return 0;
}

int cgroup_vm_path(const char *parent, uint32_t vm_id, char *buf, size_t len)
{
	char mnt[PATH_MAX];
	int err, n;

	if (!parent)
		parent = CGROUP_PARENT_DEFAULT;
	if (!*parent || parent[0] == '/' || strstr(parent, ".."))
		return -EINVAL;
	err = cgroup_v2_mount(mnt, sizeof(mnt));
	if (err)
		return err;
	n = snprintf(buf, len, "%s/%s/vm%u", mnt, parent, vm_id);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int cgroup_id(const char *path, uint64_t *cgid)
{
	struct {
		struct file_handle fh;
		uint64_t id;
	} h = { .fh.handle_bytes = sizeof(uint64_t) };
	struct stat st;
	int mount_id;

	if (!name_to_handle_at(AT_FDCWD, path, &h.fh, &mount_id, 0) &&
	    h.fh.handle_bytes == sizeof(uint64_t)) {
		memcpy(cgid, h.fh.f_handle, sizeof(*cgid));
		return 0;
	}
	/* Same value on 64-bit kernels: kernfs inode number == cgroup id. */
	if (stat(path, &st))
		return -errno;
	*cgid = st.st_ino;
	return 0;
}

int cgroup_parent_create(char *path, size_t len)
{
	char mount[PATH_MAX];
	int err = cgroup_v2_mount(mount, sizeof(mount));

	if (err)
		return err;
	if (snprintf(path, len, "%s/%s", mount, CGROUP_PARENT_DEFAULT) >= (int)len)
		return -ENAMETOOLONG;
	return mkdir_p(path, 0755);
}

int cgroup_vm_create(const char *parent, uint32_t vm_id, char *path, size_t len,
		     uint64_t *cgid)
{
	int err;

	err = cgroup_vm_path(parent, vm_id, path, len);
	if (err)
		return err;
	err = mkdir_p(path, 0755);
	if (err) {
		log_err("VM %u: cannot create cgroup %s: %s", vm_id, path, strerror(-err));
		return err;
	}
	return cgid ? cgroup_id(path, cgid) : 0;
}

/* Write pid to path's cgroup.procs: the kernel moves all its threads. */
static int procs_write(const char *path, pid_t pid)
{
	char file[PATH_MAX + 16], num[24];
	int fd, n, err = 0;

	if (snprintf(file, sizeof(file), "%s/cgroup.procs", path) >= (int)sizeof(file))
		return -ENAMETOOLONG;
	fd = open(file, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = snprintf(num, sizeof(num), "%d", (int)pid);
	if (write(fd, num, (size_t)n) != n)
		err = -errno;
	close(fd);
	return err;
}

int cgroup_move_pid(const char *path, pid_t pid)
{
	int err = procs_write(path, pid);

	if (err)
		log_err("cannot move pid %d into %s: %s", (int)pid, path, strerror(-err));
	return err;
}

int cgroup_vm_remove(const char *parent, uint32_t vm_id)
{
	char path[PATH_MAX];
	int err;

	err = cgroup_vm_path(parent, vm_id, path, sizeof(path));
	if (err)
		return err;
	if (rmdir(path) && errno != ENOENT)
		return -errno;
	return 0;
}

/* ---- confinement --------------------------------------------------------- */

int cgroup_of_pid(pid_t pid, char *path, size_t len)
{
	char file[64], line[PATH_MAX + 16], mnt[PATH_MAX];
	int err = -ENOENT;
	FILE *f;

	snprintf(file, sizeof(file), "/proc/%d/cgroup", (int)pid);
	f = fopen(file, "re");
	if (!f)
		return errno == ENOENT ? -ESRCH : -errno;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "0::", 3))
			continue;
		line[strcspn(line, "\n")] = '\0';
		err = cgroup_v2_mount(mnt, sizeof(mnt));
		if (!err && snprintf(path, len, "%s%s", mnt, strcmp(line + 3, "/") ? line + 3 : "") >=
		    (int)len)
			err = -ENAMETOOLONG;
		break;
	}
	fclose(f);
	return err;
}

static int sealed_one(const char *file, bool must_exist, char *why, size_t len)
{
	struct stat st;

	if (stat(file, &st))
		return errno == ENOENT && !must_exist ? 0 : -errno;
	if (st.st_uid == 0 && !(st.st_mode & (S_IWGRP | S_IWOTH)))
		return 0;
	snprintf(why, len, "%s is %s (mode %04o)", file,
		 st.st_uid ? "not owned by root" : "writable by group or others",
		 (unsigned int)(st.st_mode & 07777));
	if (st.st_uid) {
		size_t n = strlen(why);

		snprintf(why + n, len - n, ", owner uid %u", (unsigned int)st.st_uid);
	}
	return -EPERM;
}

int cgroup_check_sealed(const char *path, char *why, size_t len)
{
	char mnt[PATH_MAX], dir[PATH_MAX], file[PATH_MAX + 32];
	size_t mlen;
	int err;

	err = cgroup_v2_mount(mnt, sizeof(mnt));
	if (err)
		return err;
	mlen = strlen(mnt);
	if (strncmp(path, mnt, mlen) || (path[mlen] && path[mlen] != '/'))
		return -EINVAL;
	snprintf(dir, sizeof(dir), "%s", path);
	while (true) {
		err = sealed_one(dir, true, why, len);
		snprintf(file, sizeof(file), "%s/cgroup.procs", dir);
		err = err ?: sealed_one(file, true, why, len);
		snprintf(file, sizeof(file), "%s/cgroup.threads", dir);
		err = err ?: sealed_one(file, false, why, len);
		if (err || strlen(dir) <= mlen)
			return err;
		*strrchr(dir, '/') = '\0';
	}
}

int cgroup_seal(const char *path)
{
	static const char *const files[] = { "", "/cgroup.procs", "/cgroup.threads",
					     "/cgroup.subtree_control", "/cgroup.kill" };
	char file[PATH_MAX + 32];
	struct stat st;

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(file, sizeof(file), "%s%s", path, files[i]);
		if (stat(file, &st)) {
			if (errno == ENOENT && i)
				continue;
			return -errno;
		}
		/* Another owner cannot be undone without CAP_CHOWN, which the
		 * agent no longer has: the caller refuses such a cgroup. */
		if (st.st_uid)
			return -EPERM;
		if ((st.st_mode & (S_IWGRP | S_IWOTH)) &&
		    chmod(file, st.st_mode & 07777 & ~(S_IWGRP | S_IWOTH)))
			return -errno;
	}
	return 0;
}

/* Append pid's children (of all its threads) to kids. */
static void children_of(pid_t pid, pid_t *kids, size_t max, size_t *n, bool *overflow)
{
	char dir[64], file[128];
	struct dirent *de;
	DIR *d;

	snprintf(dir, sizeof(dir), "/proc/%d/task", (int)pid);
	d = opendir(dir);
	if (!d)
		return;
	while ((de = readdir(d))) {
		FILE *f;
		int c;

		if (de->d_name[0] == '.')
			continue;
		snprintf(file, sizeof(file), "%s/%.16s/children", dir, de->d_name);
		f = fopen(file, "re");
		if (!f)
			continue;
		while (fscanf(f, "%d", &c) == 1) {
			if (*n == max) {
				*overflow = true;
				break;
			}
			kids[(*n)++] = c;
		}
		fclose(f);
	}
	closedir(d);
}

static pid_t parent_of(pid_t pid)
{
	char file[64], buf[512], *p;
	int ppid = 0;
	FILE *f;

	snprintf(file, sizeof(file), "/proc/%d/stat", (int)pid);
	f = fopen(file, "re");
	if (!f)
		return 0;
	/* "pid (comm) state ppid": comm may hold spaces and parentheses. */
	if (fgets(buf, sizeof(buf), f) && (p = strrchr(buf, ')')))
		sscanf(p + 1, " %*c %d", &ppid);
	fclose(f);
	return ppid;
}

static void comm_of(pid_t pid, char *out, size_t len)
{
	char file[64];
	FILE *f;

	snprintf(out, len, "?");
	snprintf(file, sizeof(file), "/proc/%d/comm", (int)pid);
	f = fopen(file, "re");
	if (!f)
		return;
	if (fgets(out, (int)len, f))
		out[strcspn(out, "\n")] = '\0';
	fclose(f);
}

#define TREE_MAX	4096

struct tree_move {
	pid_t pid;
	char from[PATH_MAX];
};

int cgroup_move_tree(const char *path, pid_t pid, int *moved, char *err, size_t errlen)
{
	struct tree_move *done = NULL;
	pid_t *queue = NULL, *parent = NULL, self = getpid();
	size_t nr_done = 0, nfail = 0, off = 0;
	int rc = 0;

	*moved = 0;
	err[0] = '\0';
	for (pid_t p = self; p > 1; p = parent_of(p)) {
		if (p == pid) {
			snprintf(err, errlen, "process %d is the agent (pid %d) or one of its "
				 "ancestors", (int)pid, (int)self);
			return -EINVAL;
		}
	}
	queue = calloc(TREE_MAX, sizeof(*queue));
	parent = calloc(TREE_MAX, sizeof(*parent));
	done = calloc(TREE_MAX, sizeof(*done));
	if (!queue || !parent || !done) {
		rc = -ENOMEM;
		goto out;
	}
	/* Pass 1 moves; pass 2 checks that nothing (a child reparented or
	 * forked in a race) was left behind, and moves it; more passes only
	 * while processes keep turning up. */
	for (int pass = 0; pass < 4; pass++) {
		size_t head = 0, tail = 0;
		bool overflow = false;
		int moved_now = 0;

		queue[tail] = pid;
		parent[tail++] = 0;
		while (head < tail) {
			pid_t p = queue[head], pp = parent[head];
			char cg[PATH_MAX];
			size_t first = tail;
			int e;

			head++;
			if (cgroup_of_pid(p, cg, sizeof(cg)))
				continue;	/* gone */
			if (p == self) {
				snprintf(err, errlen, "the agent (pid %d) is a descendant of process "
					 "%d", (int)self, (int)pid);
				rc = -EINVAL;
				goto undo;
			}
			if (strcmp(cg, path)) {
				e = procs_write(path, p);
				if (!e && nr_done < TREE_MAX) {
					done[nr_done].pid = p;
					snprintf(done[nr_done++].from, PATH_MAX, "%s", cg);
					moved_now++;
				} else if (e && e != -ESRCH) {
					char comm[32], ppart[32] = "";

					comm_of(p, comm, sizeof(comm));
					if (pp)
						snprintf(ppart, sizeof(ppart), ", child of %d", (int)pp);
					if (off < errlen)
						off += snprintf(err + off, errlen - off,
								"%sprocess %d (%s%s): %s",
								nfail ? "; " : "", (int)p, comm, ppart,
								strerror(-e));
					nfail++;
					rc = rc ?: e;
				}
			}
			children_of(p, queue, TREE_MAX, &tail, &overflow);
			for (size_t i = first; i < tail; i++)
				parent[i] = p;
		}
		if (overflow) {
			snprintf(err, errlen, "process %d has more than %d descendants", (int)pid,
				 TREE_MAX);
			rc = -E2BIG;
		}
		if (rc || !moved_now)
			break;
	}
undo:
	if (rc) {
		/* Back where they were: a refused request changes nothing. */
		while (nr_done--)
			procs_write(done[nr_done].from, done[nr_done].pid);
		nr_done = 0;
	}
	*moved = (int)nr_done;
out:
	free(queue);
	free(parent);
	free(done);
	return rc;
}

int cgroup_kill(const char *path, int wait_ms)
{
	char file[PATH_MAX + 16], line[64];
	struct timespec ts = { 0, 5 * 1000 * 1000 };
	int fd, err = 0;

	snprintf(file, sizeof(file), "%s/cgroup.kill", path);
	fd = open(file, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (write(fd, "1", 1) != 1)
		err = -errno;
	close(fd);
	if (err)
		return err;
	snprintf(file, sizeof(file), "%s/cgroup.events", path);
	for (int waited = 0; waited <= wait_ms; waited += 5) {
		FILE *f = fopen(file, "re");
		bool populated = true;

		if (!f)
			return errno == ENOENT ? 0 : -errno;
		while (fgets(line, sizeof(line), f))
			if (!strncmp(line, "populated ", 10))
				populated = line[10] == '1';
		fclose(f);
		if (!populated)
			return 0;
		nanosleep(&ts, NULL);
	}
	return -ETIMEDOUT;
}
