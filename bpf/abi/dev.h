/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Kernel/user ABI of device enforcement: which cgroup belongs to which VM,
 * the per-VM explicit device rules (generation-keyed like the firewall
 * entries), disk images for the LSM program, and the per-VM device counters.
 * Only fixed width types and explicit padding; user space _Static_asserts
 * every size (agent/policy/policy_compile.c, tests/dev).
 */
#ifndef RAYOS_ABI_DEV_H
#define RAYOS_ABI_DEV_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* Device types and access bits: the kernel's BPF_DEVCG_* values, so the
 * cgroup program passes its context through unchanged. */
#define RAYOS_DEV_BLOCK		1	/* BPF_DEVCG_DEV_BLOCK */
#define RAYOS_DEV_CHAR		2	/* BPF_DEVCG_DEV_CHAR */

#define RAYOS_DEV_ACC_MKNOD	(1U << 0)	/* BPF_DEVCG_ACC_MKNOD */
#define RAYOS_DEV_ACC_READ	(1U << 1)	/* BPF_DEVCG_ACC_READ */
#define RAYOS_DEV_ACC_WRITE	(1U << 2)	/* BPF_DEVCG_ACC_WRITE */
#define RAYOS_DEV_ACC_ALL	7U

/* Device numbers as the kernel checks them (MINORBITS = 20). */
#define RAYOS_DEV_MAJOR_MAX	4095U
#define RAYOS_DEV_MINOR_MAX	1048575U
#define RAYOS_DEV_MINOR_ANY	0xffffffffU	/* key.minor of a "major:*" rule */

/*
 * rayos_dev_rules (HASH): the explicit device rules of one VM and
 * generation.  A request looks up its exact minor and its major's wildcard
 * entry; the compiler merges every policy entry with the same key, so each
 * lookup is one complete answer for that key.
 */
struct rayos_dev_key {
	__u32 vm_id;
	__u8  gen;		/* rayos_vm.gen that selects it */
	__u8  type;		/* RAYOS_DEV_BLOCK or RAYOS_DEV_CHAR */
	__u16 pad;
	__u32 major;
	__u32 minor;		/* or RAYOS_DEV_MINOR_ANY */
};

/*
 * What the entry grants.  allow/deny come from the policy's "devices"
 * lists; disk from its "disks": a disk's bits count only while the VM holds
 * CAP_DISK_READ (read) / CAP_DISK_WRITE (write and mknod never), so that a
 * capability grant or revoke is one rayos_vms record flip.
 */
struct rayos_dev_rule {
	__u8  allow;		/* RAYOS_DEV_ACC_* explicitly allowed */
	__u8  deny;		/* RAYOS_DEV_ACC_* explicitly denied */
	__u8  disk;		/* RAYOS_DEV_ACC_READ/WRITE of a listed disk */
	__u8  limit;		/* RAYOS_DEV_LIMIT_*: listed in a capability's limit */
	__u8  pad[4];
};
/* rayos_dev_rule.limit: the node is one a fine-grained capability lists
 * (with RAYOS_VMF_GPU_NODES, CAP_GPU grants only such DRI nodes). */
#define RAYOS_DEV_LIMIT_GPU	(1U << 0)
/* The disk is one a CAP_DISK_READ / CAP_DISK_WRITE limit lists (with
 * RAYOS_VMF_DISK_READ_LIMIT / _WRITE_LIMIT, the capability reaches only
 * such disks). */
#define RAYOS_DEV_LIMIT_DISK_READ	(1U << 1)
#define RAYOS_DEV_LIMIT_DISK_WRITE	(1U << 2)

/*
 * rayos_cgroups (HASH): key __u64 cgroup v2 id (the cgroup directory's inode
 * number) -> the VM whose processes live there.
 */
struct rayos_cgroup_val {
	__u32 vm_id;
	__u32 pad;
};

/* Disk image files, for the LSM program: key (device, inode) of the file as
 * the kernel encodes them (dev = major << 20 | minor), written by the agent
 * from a stat() when the VM is registered.  An image belongs to one VM; any
 * other VM's QEMU opening it is refused. */
struct rayos_dev_file_key {
	__u64 dev;		/* kernel dev_t of the file system (s_dev) */
	__u64 ino;
};

struct rayos_dev_file {
	__u32 vm_id;		/* owner */
	__u8  mode;		/* RAYOS_DEV_ACC_READ, | RAYOS_DEV_ACC_WRITE for "rw" */
	__u8  pad[3];
};

/*
 * Device classes, for counters and metrics labels.  The numbering is ABI
 * (agent/vm/devices.c names them).  RAYOS_DEVC_MAX is a power of two: programs
 * index counters with a mask.
 */
enum rayos_dev_class {
	RAYOS_DEVC_KVM = 0,		/* c 10:232 */
	RAYOS_DEVC_TUN = 1,		/* c 10:200 */
	RAYOS_DEVC_VHOST_NET = 2,	/* c 10:238 */
	RAYOS_DEVC_DRI = 3,		/* c 226:* */
	RAYOS_DEVC_INPUT = 4,		/* c 13:* */
	RAYOS_DEVC_UINPUT = 5,		/* c 10:223 */
	RAYOS_DEVC_PTY = 6,		/* c 136..143:* */
	RAYOS_DEVC_PTMX = 7,		/* c 5:2 */
	RAYOS_DEVC_DISK = 8,		/* every block device */
	RAYOS_DEVC_BASIC = 9,		/* null, zero, full, random, urandom, tty */
	RAYOS_DEVC_OTHER = 10,
	RAYOS_DEVC_COUNT = 11,
	RAYOS_DEVC_MAX = 16,
};

/* Why the decision came out as it did (rayos_dev_verdict()). */
enum rayos_dev_reason {
	RAYOS_DEVR_EXPLICIT_DENY = 0,	/* a "devices.deny" entry */
	RAYOS_DEVR_EXPLICIT_ALLOW = 1,	/* a "devices.allow" entry */
	RAYOS_DEVR_CAP = 2,		/* the capability table or a listed disk */
	RAYOS_DEVR_BASIC = 3,		/* always allowed */
	RAYOS_DEVR_DEFAULT_DENY = 4,	/* nothing allowed it */
	RAYOS_DEVR_NO_VM = 5,		/* cgroup or VM record unknown, or the VM
					 * quarantined: basics only */
};

/*
 * rayos_dev_stats (PERCPU_ARRAY): key rayos_vm.slot * RAYOS_DEVC_MAX + class.
 * checks/denials come from the cgroup device program (every decision, open
 * and mknod alike); opens/open_eperm/open_ns from the syscall tracepoints
 * (open and openat calls of tasks in VM cgroups that reached a device
 * check: the whole syscall, driver open included); ioctls/ioctl_ns likewise
 * for ioctl() on a device fd.
 */
struct rayos_dev_ctr {
	__u64 checks;
	__u64 denials;
	__u64 opens;
	__u64 open_eperm;
	__u64 open_ns;
	__u64 ioctls;
	__u64 ioctl_ns;
	__u64 ioctl_err;
};

/* rayos_kvm_stats (PERCPU_ARRAY): key rayos_vm.slot.  Counted from the kvm
 * tracepoints by the thread that runs the vCPU, when they exist. */
struct rayos_kvm_ctr {
	__u64 exits;
	__u64 mmio;
	__u64 pio;
	__u64 pad;
};

/* rayos_dev_inflt (LRU_HASH): key __u64 pid_tgid of a VM task inside an
 * open/openat/ioctl; the cgroup program fills in the device it checked. */
struct rayos_dev_inflight {
	__u64 start_ns;
	__u32 vm_id;
	__u32 slot;
	__u8  op;		/* RAYOS_DEVOP_* */
	__u8  cls;		/* enum rayos_dev_class, or 0xff: no device checked */
	__u8  pad[6];
};

#define RAYOS_DEVOP_OPEN	1
#define RAYOS_DEVOP_IOCTL	2
#define RAYOS_DEVC_NONE		0xff

#endif /* RAYOS_ABI_DEV_H */
