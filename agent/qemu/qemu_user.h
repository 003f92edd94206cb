/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The unprivileged identity rayos-qemu gives QEMU: the system user
 * (rayos-qemu by default, made by `make install` and tests/deps through
 * qemu-hooks/rayos-qemu-user.sh), its primary group and supplementary groups
 * (kvm, where /dev/kvm needs it), and, when the user owns a subordinate uid
 * range in /etc/subuid, one uid of that range per running VM: processes of
 * one uid can trace, signal and read the memory of each other, so two VMs
 * must never share one.  Then the drop itself: no capabilities in any set,
 * bounding set empty, no-new-privs.
 */
#ifndef RAYOS_QEMU_USER_H
#define RAYOS_QEMU_USER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#define QEMU_USER_DEFAULT	"rayos-qemu"
#define QEMU_USER_MAX_GROUPS	64

struct qemu_user {
	char name[64];
	uid_t uid;		/* the user's own uid */
	gid_t gid;		/* its primary group: every VM's QEMU has it */
	int nr_groups;		/* supplementary groups, e.g. kvm */
	gid_t groups[QEMU_USER_MAX_GROUPS];
	uid_t sub_first;	/* its /etc/subuid range; */
	uint32_t sub_count;	/* 0 when it has none: every VM runs as uid */
};

/* Look the user up (passwd, group, /etc/subuid).  A user with uid or gid 0
 * is refused: QEMU never runs as root.  err says what is wrong and what to
 * do on failure. */
int qemu_user_lookup(const char *name, struct qemu_user *u, char *err, size_t errlen);

/* The first range of f ("owner:first:count" lines, owner a name or a uid)
 * that belongs to name or uid.  -ENOENT when none, -EINVAL for a range that
 * is empty, holds uid 0 or runs past 2^32-2. */
int qemu_user_subuid_parse(FILE *f, const char *name, uid_t uid, uid_t *first,
			   uint32_t *count);

/*
 * The uid VM vm_id's QEMU runs as.  Without a subordinate range: the user's
 * own.  With one: the first uid, starting at first + vm_id % count, that no
 * process uses (any of its real, effective, saved or file-system uids) and
 * that no account names.  lock_path (a root-only file) serializes
 * concurrent launches: *lock_fd holds the lock (close-on-exec) until QEMU
 * runs as the uid, after which the /proc scan of the next launch sees it.
 */
int qemu_user_pick_uid(const struct qemu_user *u, uint32_t vm_id, const char *lock_path,
		       uid_t *uid, int *lock_fd, char *err, size_t errlen);

/* What uid (with the user's groups) may do by path, checked in a child
 * that takes those ids: QEMU_ACC_* bits, or -errno when the probe failed. */
#define QEMU_ACC_READ		1	/* open the file for reading */
#define QEMU_ACC_WRITE		2	/* open it for writing */
#define QEMU_ACC_DIR_WRITE	4	/* put another file there: a directory on the
					 * way is writable (and not sticky) */
int qemu_user_access(const struct qemu_user *u, uid_t uid, const char *path);

/*
 * Become uid with the user's groups for good: the bounding set emptied,
 * supplementary groups, gid, uid (real, effective, saved), every capability
 * set and the ambient set cleared, PR_SET_NO_NEW_PRIVS, umask 077; then
 * checked (setuid(0) must fail, no capability left).  Must run as root.
 */
int qemu_user_drop(const struct qemu_user *u, uid_t uid, char *err, size_t errlen);

#endif
