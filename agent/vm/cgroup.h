/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The cgroup v2 directories of VMs: <mount>/<parent>/vm<ID>, where mount is
 * wherever cgroup2 is mounted (/sys/fs/cgroup on pure-v2 hosts,
 * /sys/fs/cgroup/unified on hybrid ones) and parent is "rayos" in
 * production.  No controllers are enabled: the cgroup exists so that the
 * device program has a place to hang and a cgroup id to key VMs by.
 */
#ifndef RAYOS_CGROUP_H
#define RAYOS_CGROUP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define CGROUP_PARENT_DEFAULT	"rayos"

/* The cgroup2 mount point, from /proc/self/mountinfo (/sys/fs/cgroup
 * preferred when several).  -ENOENT: no cgroup2 mounted. */
int cgroup_v2_mount(char *buf, size_t len);

/* <mount>/<parent>/vm<ID>; parent NULL means CGROUP_PARENT_DEFAULT and may
 * hold slashes ("rayos-test-1/a"). */
int cgroup_vm_path(const char *parent, uint32_t vm_id, char *buf, size_t len);

/* Make <mount>/rayos.  The cgroup2 root is usually mode 0555, so this
 * needs CAP_DAC_OVERRIDE: the agent does it before dropping capabilities;
 * the VM cgroups below it then only need the owner's rights. */
int cgroup_parent_create(char *path, size_t len);

/* Make the VM's cgroup (mkdir -p; existing is fine), return its path and id. */
int cgroup_vm_create(const char *parent, uint32_t vm_id, char *path, size_t len,
		     uint64_t *cgid);

/* The cgroup v2 id of a directory (what bpf_get_current_cgroup_id() says for
 * its tasks): the file handle of the directory, which is its inode number. */
int cgroup_id(const char *path, uint64_t *cgid);

/* Move a process (all its threads) into a cgroup: write to cgroup.procs. */
int cgroup_move_pid(const char *path, pid_t pid);

/* Remove the VM's cgroup; -EBUSY while processes live in it, 0 if gone. */
int cgroup_vm_remove(const char *parent, uint32_t vm_id);

/* ---- confinement (a VM's process must not be able to leave) ---- */

/* The cgroup v2 directory a process is in: the mount joined with its
 * "0::" line of /proc/PID/cgroup.  -ESRCH when it is gone. */
int cgroup_of_pid(pid_t pid, char *path, size_t len);

/*
 * Whether a task inside path can leave it without privileges: moving a
 * process takes write access to cgroup.procs (or cgroup.threads) of the
 * common ancestor, and new cgroups take write access to a directory.  So
 * path and every directory above it up to the mount, and their
 * cgroup.procs and cgroup.threads, must be owned by root and not writable by
 * group or others.  0 when they are; -EPERM with why naming the first file
 * that is not; -errno when one cannot be read.
 */
int cgroup_check_sealed(const char *path, char *why, size_t len);

/* Make a cgroup the agent created root-owned and not writable by others
 * (it and its interface files), whatever made it before. */
int cgroup_seal(const char *path);

/*
 * Move pid and every descendant it has into path: pid first (so what it
 * forks from then on is born there), then each child before its own
 * children are read, then passes until none is outside.  When one cannot
 * be moved, everything moved goes back where it was and err names the
 * processes (pid, name, parent, reason).  Refuses a tree holding the
 * calling process itself.  *moved: how many processes were moved.
 */
int cgroup_move_tree(const char *path, pid_t pid, int *moved, char *err, size_t errlen);

/* SIGKILL every process of the cgroup (cgroup.kill) and wait up to
 * wait_ms for it to empty.  0 when empty; -ETIMEDOUT; -errno. */
int cgroup_kill(const char *path, int wait_ms);

#endif
