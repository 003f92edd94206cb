/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * What confines one VM, looked at live: for each enforcement point (the tap
 * programs, the device program on its cgroup, the BPF LSM, its disk images,
 * the privileges of its process, the permissions of its cgroup) whether it
 * is active, idle (the VM does not run) or missing, with a warning for each
 * one missing.  Read from /proc and the file system when asked, so `status`,
 * `vm info` and `device list` show what holds now, not at registration.
 */
#ifndef RAYOS_VMCONFINE_H
#define RAYOS_VMCONFINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <cjson/cJSON.h>

struct agent;

/* A process's credentials, from /proc/PID/status. */
struct proc_creds {
	uid_t uid[4];		/* real, effective, saved, file system */
	gid_t gid[4];
	int nr_groups;
	gid_t groups[64];
	uint64_t cap_inh, cap_prm, cap_eff, cap_bnd, cap_amb;
	bool no_new_privs;
	int seccomp;		/* 0 off, 1 strict, 2 filter */
	char comm[32];
};

/* -ESRCH when the process is gone. */
int proc_creds_read(pid_t pid, struct proc_creds *c);

/* True when the process can leave its cgroup and undo the BPF programs by
 * privilege alone: a uid 0, or capabilities it holds or may raise; why
 * says which. */
bool proc_creds_privileged(const struct proc_creds *c, char *why, size_t len);

/* What c may do to path by its mode bits, walking every directory on the
 * way (search permission): QEMU_ACC_READ | QEMU_ACC_WRITE (qemu_user.h).
 * ACLs are not read.  -errno when path cannot be resolved. */
int proc_creds_access(const struct proc_creds *c, const char *path);

/* {"state": "confined"|"degraded"|"idle", "points": [{"point", "state",
 *  "detail"}], "warnings": [...], "process": {...}} for VM id. */
cJSON *vmconfine_json(struct agent *a, uint32_t id);

#endif
