// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* The write-ahead audit log (audit.h). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "agent/audit/audit.h"
#include "agent/core/util.h"

int audit_append(const char *path, cJSON *rec)
{
	struct timespec ts;
	char *text, *line = NULL;
	bool created;
	ssize_t n;
	int fd, err = 0;

	clock_gettime(CLOCK_REALTIME, &ts);
	cJSON_DeleteItemFromObjectCaseSensitive(rec, "time");
	cJSON_AddNumberToObject(rec, "time", (double)ts.tv_sec + ts.tv_nsec / 1e9);
	text = cJSON_PrintUnformatted(rec);
	if (!text || asprintf(&line, "%s\n", text) < 0) {
		cJSON_free(text);
		return -ENOMEM;
	}
	cJSON_free(text);
	created = access(path, F_OK) != 0;
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		err = -errno;
		goto out;
	}
	/* One write of the whole line: O_APPEND keeps lines whole. */
	n = write(fd, line, strlen(line));
	if (n != (ssize_t)strlen(line)) {
		err = n < 0 ? -errno : -ENOSPC;
		/* A short write leaves part of a line: end it, so the next
		 * record starts on a line of its own (best effort). */
		if (n > 0 && write(fd, "\n", 1) != 1)
			err = err ?: -EIO;
	} else if (fdatasync(fd)) {
		err = -errno;
	}
	close(fd);
	if (!err && created)
		err = fsync_dir_of(path);	/* the new file's entry */
out:
	free(line);
	return err;
}

int audit_probe(const char *path, char *why, size_t len)
{
	struct statvfs vfs;
	int fd, err = 0;

	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		err = -errno;
		snprintf(why, len, "%s: %s", path, strerror(errno));
		return err;
	}
	if (fstatvfs(fd, &vfs)) {
		err = -errno;
		snprintf(why, len, "%s: %s", path, strerror(errno));
	} else if (vfs.f_flag & ST_RDONLY) {
		err = -EROFS;
		snprintf(why, len, "%s: %s", path, strerror(EROFS));
	} else if (vfs.f_bavail == 0) {
		err = -ENOSPC;
		snprintf(why, len, "%s: %s", path, strerror(ENOSPC));
	}
	close(fd);
	return err;
}
