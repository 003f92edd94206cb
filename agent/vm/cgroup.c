// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * VM cgroups under the cgroup v2 mount (see cgroup.h).  Only directories
 * under the given parent are ever made or removed; the host's own cgroups
 * are read (mountinfo), never written.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

int cgroup_move_pid(const char *path, pid_t pid)
{
	char file[PATH_MAX], num[24];
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
