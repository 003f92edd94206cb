// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * QEMU's unprivileged identity and the drop to it (see qemu_user.h).  Runs
 * in rayos-qemu, as root, before it execs QEMU.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/qemu/qemu_user.h"

#define SUBUID_FILE	"/etc/subuid"
#define LOCK_WAIT_MS	10000

int qemu_user_subuid_parse(FILE *f, const char *name, uid_t uid, uid_t *first,
			   uint32_t *count)
{
	char line[512], owner[256], num[24];
	unsigned long long a, n;

	snprintf(num, sizeof(num), "%u", (unsigned int)uid);
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%255[^:]:%llu:%llu", owner, &a, &n) != 3)
			continue;
		if (strcmp(owner, name) && strcmp(owner, num))
			continue;
		if (!n || !a || a + n - 1 > UINT32_MAX - 1)
			return -EINVAL;
		*first = (uid_t)a;
		*count = (uint32_t)n;
		return 0;
	}
	return -ENOENT;
}

int qemu_user_lookup(const char *name, struct qemu_user *u, char *err, size_t errlen)
{
	struct passwd *pw;
	int n = QEMU_USER_MAX_GROUPS, rc;
	FILE *f;

	memset(u, 0, sizeof(*u));
	errno = 0;
	pw = getpwnam(name);
	if (!pw) {
		snprintf(err, errlen, "no user \"%s\" to run QEMU as: create it with "
			 "qemu-hooks/rayos-qemu-user.sh (make install does), or name "
			 "another with --user", name);
		return errno ? -errno : -ENOENT;
	}
	if (!pw->pw_uid || !pw->pw_gid) {
		snprintf(err, errlen, "user \"%s\" has uid %u, gid %u: QEMU never runs as "
			 "root or with group root; name an unprivileged user", name,
			 (unsigned int)pw->pw_uid, (unsigned int)pw->pw_gid);
		return -EPERM;
	}
	snprintf(u->name, sizeof(u->name), "%s", name);
	u->uid = pw->pw_uid;
	u->gid = pw->pw_gid;
	if (getgrouplist(name, pw->pw_gid, u->groups, &n) < 0) {
		snprintf(err, errlen, "user \"%s\" is in more than %d groups", name,
			 QEMU_USER_MAX_GROUPS);
		return -E2BIG;
	}
	u->nr_groups = n;
	for (int i = 0; i < n; i++) {
		if (!u->groups[i]) {
			snprintf(err, errlen, "user \"%s\" is in group root (gid 0): QEMU would "
				 "get root's group rights; take it out (gpasswd -d %s root)",
				 name, name);
			return -EPERM;
		}
	}
	f = fopen(SUBUID_FILE, "re");
	if (!f)
		return 0;	/* no ranges on this host: one uid for every VM */
	rc = qemu_user_subuid_parse(f, name, u->uid, &u->sub_first, &u->sub_count);
	fclose(f);
	if (rc == -EINVAL) {
		snprintf(err, errlen, "the range of \"%s\" in " SUBUID_FILE " is empty, holds "
			 "uid 0 or ends past 4294967294", name);
		return rc;
	}
	if (rc)
		u->sub_count = 0;
	return 0;
}

/* ---- a uid no process uses ------------------------------------------------ */

static int cmp_uid(const void *a, const void *b)
{
	uid_t x = *(const uid_t *)a, y = *(const uid_t *)b;

	return x < y ? -1 : x > y;
}

/* Every uid of [first, first + count) that a process holds in any of its
 * four uids, sorted.  Read from /proc/PID/status, which shows them even for
 * processes that made themselves non-dumpable. */
static int used_uids(uid_t first, uint32_t count, uid_t **out, size_t *nr)
{
	size_t n = 0, cap = 64;
	uid_t *v = malloc(cap * sizeof(*v));
	struct dirent *de;
	DIR *d;

	if (!v)
		return -ENOMEM;
	d = opendir("/proc");
	if (!d) {
		free(v);
		return -errno;
	}
	while ((de = readdir(d))) {
		char path[sizeof(de->d_name) + 16], line[256];
		unsigned int ids[4];
		FILE *f;

		if (de->d_name[0] < '1' || de->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/status", de->d_name);
		f = fopen(path, "re");
		if (!f)
			continue;	/* gone */
		while (fgets(line, sizeof(line), f)) {
			if (sscanf(line, "Uid: %u %u %u %u", &ids[0], &ids[1], &ids[2],
				   &ids[3]) != 4)
				continue;
			for (int i = 0; i < 4; i++) {
				if (ids[i] < first || ids[i] - first >= count)
					continue;
				if (n == cap) {
					uid_t *g = realloc(v, 2 * cap * sizeof(*v));

					if (!g) {
						fclose(f);
						closedir(d);
						free(v);
						return -ENOMEM;
					}
					v = g;
					cap *= 2;
				}
				v[n++] = ids[i];
			}
			break;
		}
		fclose(f);
	}
	closedir(d);
	qsort(v, n, sizeof(*v), cmp_uid);
	*out = v;
	*nr = n;
	return 0;
}

static int lock_wait(int fd)
{
	struct timespec ts = { 0, 10 * 1000 * 1000 };

	for (int waited = 0; waited < LOCK_WAIT_MS; waited += 10) {
		if (!flock(fd, LOCK_EX | LOCK_NB))
			return 0;
		if (errno != EWOULDBLOCK)
			return -errno;
		nanosleep(&ts, NULL);
	}
	return -ETIMEDOUT;
}

int qemu_user_pick_uid(const struct qemu_user *u, uint32_t vm_id, const char *lock_path,
		       uid_t *uid, int *lock_fd, char *err, size_t errlen)
{
	uid_t *used = NULL;
	size_t nr = 0;
	int fd, rc;

	*lock_fd = -1;
	if (!u->sub_count) {
		*uid = u->uid;
		return 0;
	}
	fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot open the uid lock %s: %s", lock_path,
			 strerror(-rc));
		return rc;
	}
	rc = lock_wait(fd);
	if (rc) {
		snprintf(err, errlen, "cannot lock %s: %s", lock_path, strerror(-rc));
		goto fail;
	}
	rc = used_uids(u->sub_first, u->sub_count, &used, &nr);
	if (rc) {
		snprintf(err, errlen, "cannot list the uids in use: %s", strerror(-rc));
		goto fail;
	}
	for (uint32_t i = 0; i < u->sub_count; i++) {
		uid_t cand = u->sub_first + (uid_t)(((uint64_t)vm_id + i) % u->sub_count);

		if (bsearch(&cand, used, nr, sizeof(*used), cmp_uid) || getpwuid(cand))
			continue;
		free(used);
		*uid = cand;
		*lock_fd = fd;
		return 0;
	}
	rc = -EBUSY;
	snprintf(err, errlen, "every uid of %s's range %u-%u (" SUBUID_FILE ") is in use or "
		 "names an account", u->name, (unsigned int)u->sub_first,
		 (unsigned int)(u->sub_first + u->sub_count - 1));
fail:
	free(used);
	close(fd);
	return rc;
}

/* ---- access probe ---------------------------------------------------------- */

static int become(const struct qemu_user *u, uid_t uid)
{
	if (setgroups((size_t)u->nr_groups, u->groups) || setresgid(u->gid, u->gid, u->gid) ||
	    setresuid(uid, uid, uid))
		return -errno;
	return 0;
}

/*
 * Whether uid could put something else at path: a directory on the way
 * that it may write, unless the directory is sticky and the entry in it is
 * not uid's (then uid can neither rename nor remove that entry).  Walked
 * from "/" down, and only as far as uid can search: what lies below a
 * directory it cannot enter is out of its reach.  Runs as uid.
 */
static bool path_swappable(const char *path, uid_t uid)
{
	char cur[PATH_MAX];
	size_t n = strlen(path);
	char *p;

	if (n >= sizeof(cur) || path[0] != '/')
		return true;
	memcpy(cur, path, n + 1);
	for (p = cur; p; ) {
		char *next = strchr(p + 1, '/'), dir[PATH_MAX];
		struct stat d, entry;

		/* dir = cur[0..p) or "/", entry = cur[0..next) */
		snprintf(dir, sizeof(dir), "%.*s", p == cur ? 1 : (int)(p - cur), cur);
		if (next)
			*next = '\0';
		if (stat(dir, &d) || lstat(cur, &entry))
			return errno != EACCES;
		if (!access(dir, W_OK) && (!(d.st_mode & S_ISVTX) || entry.st_uid == uid))
			return true;
		if (!next)
			break;
		if (access(cur, X_OK))
			break;		/* cannot enter: nothing below is reachable */
		*next = '/';
		p = next;
	}
	return false;
}

int qemu_user_access(const struct qemu_user *u, uid_t uid, const char *path)
{
	int status;
	pid_t pid;

	pid = fork();
	if (pid < 0)
		return -errno;
	if (!pid) {
		int acc = 0;

		if (become(u, uid))
			_exit(127);
		if (!access(path, R_OK))
			acc |= QEMU_ACC_READ;
		if (!access(path, W_OK))
			acc |= QEMU_ACC_WRITE;
		if (path_swappable(path, uid))
			acc |= QEMU_ACC_DIR_WRITE;
		_exit(acc);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	if (!WIFEXITED(status) || WEXITSTATUS(status) == 127)
		return -ECHILD;
	return WEXITSTATUS(status);
}

/* ---- the drop ------------------------------------------------------------- */

static int status_caps(const char *key, unsigned long long *v)
{
	char line[256];
	size_t n = strlen(key);
	FILE *f = fopen("/proc/self/status", "re");
	int rc = -ENOENT;

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, key, n) && line[n] == ':') {
			rc = sscanf(line + n + 1, "%llx", v) == 1 ? 0 : -EINVAL;
			break;
		}
	}
	fclose(f);
	return rc;
}

int qemu_user_drop(const struct qemu_user *u, uid_t uid, char *err, size_t errlen)
{
	static const char *const sets[] = { "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb" };
	uid_t r, e, s;
	cap_t none;
	int rc;

	/* The bounding set first: emptying it needs CAP_SETPCAP, which goes
	 * with the uid.  Then nothing exec'd later (setuid binaries, file
	 * capabilities) can bring a capability back. */
	for (cap_value_t c = 0; c <= CAP_LAST_CAP; c++) {
		if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) && errno != EINVAL) {
			rc = -errno;
			snprintf(err, errlen, "cannot drop %s from the bounding set: %s",
				 cap_to_name(c), strerror(errno));
			return rc;
		}
	}
	if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) || become(u, uid)) {
		rc = -errno;
		snprintf(err, errlen, "cannot become uid %u gid %u: %s", (unsigned int)uid,
			 (unsigned int)u->gid, strerror(errno));
		return rc;
	}
	/* setresuid cleared the permitted and effective sets; inheritable and
	 * ambient stay unless cleared. */
	none = cap_init();
	rc = none && !cap_set_proc(none) ? 0 : -errno;
	if (none)
		cap_free(none);
	if (!rc && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) && errno != EINVAL)
		rc = -errno;
	if (!rc && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		rc = -errno;
	if (rc) {
		snprintf(err, errlen, "cannot clear capabilities: %s", strerror(-rc));
		return rc;
	}
	umask(077);
	/* Trust, but check: no way back, nothing left. */
	if (!setresuid(0, 0, 0) || getresuid(&r, &e, &s) || r != uid || e != uid || s != uid) {
		snprintf(err, errlen, "the drop to uid %u did not hold", (unsigned int)uid);
		return -EPERM;
	}
	for (size_t i = 0; i < sizeof(sets) / sizeof(sets[0]); i++) {
		unsigned long long v = 1;

		if (status_caps(sets[i], &v) || v) {
			snprintf(err, errlen, "%s is %llx after the drop", sets[i], v);
			return -EPERM;
		}
	}
	return 0;
}
