/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The device decision, shared by the cgroup device program (rayos_dev) and
 * the LSM program (rayos_file_open), and compiled into a user-space unit
 * test (tests/dev/test_devpolicy.c) through a small shim.  It needs from its
 * includer: the types of bpf/abi/{policy,dev}.h, __always_inline,
 * bpf_map_lookup_elem(), bpf_get_current_cgroup_id(),
 * bpf_get_current_ancestor_cgroup_id(), bpf_ktime_get_boot_ns() (temporary
 * capabilities, bpf/include/caps.bpf.h), and the maps rayos_vms,
 * rayos_cgroups and rayos_dev_rules (bpf/include/devmaps.bpf.h).
 *
 * Decision order, per access bit requested (read, write, mknod):
 *   1. an explicit "devices.deny" entry (exact minor or major:*) denies;
 *   2. an explicit "devices.allow" entry allows;
 *   3. the capability table below, and the VM's listed disks (read with
 *      CAP_DISK_READ, write with CAP_DISK_WRITE), allow; a VM whose CAP_GPU
 *      is limited to nodes (RAYOS_VMF_GPU_NODES) has it for those only,
 *      and one whose CAP_DISK_READ/WRITE is limited to disks
 *      (RAYOS_VMF_DISK_*_LIMIT) has them for the marked disks only;
 *   4. the always-allowed basics (kvm, null, zero, full, random, urandom)
 *      allow;
 *   5. everything else is denied.
 * A request is allowed only if every bit it asks for is allowed, and denied
 * as soon as one bit is explicitly denied.  A task whose cgroup maps to no
 * VM, or whose VM has no record or a quarantined one (RAYOS_VMF_QUARANTINE),
 * gets the basics only (fail closed: the program runs only on cgroups the
 * agent made for VMs, so a miss means a VM the policy no longer lists).
 */
#ifndef RAYOS_DEVPOLICY_BPF_H
#define RAYOS_DEVPOLICY_BPF_H

#include "bpf/abi/dev.h"
#include "bpf/abi/policy.h"
#include "caps.bpf.h"

#define RAYOS_DEV_RW		(RAYOS_DEV_ACC_READ | RAYOS_DEV_ACC_WRITE)
/* cgroup v2 depth searched for a VM's cgroup above the task's own. */
#define RAYOS_DEV_MAX_LEVEL	8

/* The class of a device, for counters; also the capability table's rows. */
static __always_inline __u32 rayos_dev_class_of(__u32 type, __u32 major, __u32 minor)
{
	if (type == RAYOS_DEV_BLOCK)
		return RAYOS_DEVC_DISK;
	if (type != RAYOS_DEV_CHAR)
		return RAYOS_DEVC_OTHER;
	switch (major) {
	case 1:
		/* mem: null 3, zero 5, full 7, random 8, urandom 9; not mem 1, kmem 2, port 4 */
		if (minor == 3 || minor == 5 || minor == 7 || minor == 8 || minor == 9)
			return RAYOS_DEVC_BASIC;
		return RAYOS_DEVC_OTHER;
	case 5:
		return minor == 2 ? RAYOS_DEVC_PTMX : RAYOS_DEVC_OTHER;
	case 10:
		if (minor == 232)
			return RAYOS_DEVC_KVM;
		if (minor == 200)
			return RAYOS_DEVC_TUN;
		if (minor == 238)
			return RAYOS_DEVC_VHOST_NET;
		if (minor == 223)
			return RAYOS_DEVC_UINPUT;
		return RAYOS_DEVC_OTHER;
	case 13:
		return RAYOS_DEVC_INPUT;
	case 226:
		return RAYOS_DEVC_DRI;
	}
	if (major >= 136 && major <= 143)
		return RAYOS_DEVC_PTY;
	return RAYOS_DEVC_OTHER;
}

/* Access the capabilities grant to a class: read and write, never mknod
 * (QEMU opens nodes the host made; creating them takes an explicit rule). */
static __always_inline __u32 rayos_dev_cap_bits(__u64 caps, __u32 cls)
{
	__u64 need;

	switch (cls) {
	case RAYOS_DEVC_TUN:
	case RAYOS_DEVC_VHOST_NET:
		need = 1ULL << RAYOS_CAP_NETWORK;
		break;
	case RAYOS_DEVC_DRI:
		need = 1ULL << RAYOS_CAP_GPU;
		break;
	case RAYOS_DEVC_INPUT:
	case RAYOS_DEVC_UINPUT:
		need = 1ULL << RAYOS_CAP_INPUT;
		break;
	case RAYOS_DEVC_PTY:
	case RAYOS_DEVC_PTMX:
		need = 1ULL << RAYOS_CAP_CONSOLE;
		break;
	default:
		return 0;
	}
	return (caps & need) ? RAYOS_DEV_RW : 0;
}

/* Granted whatever the capabilities; an explicit deny still wins. */
static __always_inline __u32 rayos_dev_basic_bits(__u32 cls)
{
	return cls == RAYOS_DEVC_BASIC || cls == RAYOS_DEVC_KVM ? RAYOS_DEV_RW : 0;
}

/* Which access bits of a listed disk the capabilities let through. */
static __always_inline __u32 rayos_dev_disk_bits(__u64 caps, __u32 disk)
{
	__u32 ok = 0;

	if (caps & (1ULL << RAYOS_CAP_DISK_READ))
		ok |= RAYOS_DEV_ACC_READ;
	if (caps & (1ULL << RAYOS_CAP_DISK_WRITE))
		ok |= RAYOS_DEV_ACC_WRITE;
	return disk & ok;
}

/*
 * The decision itself, from what the lookups found: vm NULL when the task's
 * VM is unknown, exact/wild NULL when there is no such entry.  Returns 1 to
 * allow, 0 to deny; *reason says why (enum rayos_dev_reason).
 */
static __always_inline int rayos_dev_verdict(const struct rayos_vm *vm,
					     const struct rayos_dev_rule *exact,
					     const struct rayos_dev_rule *wild,
					     __u32 cls, __u32 access, __u32 *reason)
{
	__u32 allow = 0, deny = 0, disk = 0, cap, basic = rayos_dev_basic_bits(cls);
	__u64 caps;

	access &= RAYOS_DEV_ACC_ALL;
	if (!vm || (vm->flags & RAYOS_VMF_QUARANTINE)) {
		*reason = RAYOS_DEVR_NO_VM;
		return !(access & ~basic);
	}
	if (exact) {
		allow |= exact->allow;
		deny |= exact->deny;
		disk |= exact->disk;
	}
	if (wild) {
		allow |= wild->allow;
		deny |= wild->deny;
		disk |= wild->disk;
	}
	if (access & deny) {
		*reason = RAYOS_DEVR_EXPLICIT_DENY;
		return 0;
	}
	if (!(access & ~allow)) {
		*reason = RAYOS_DEVR_EXPLICIT_ALLOW;
		return 1;
	}
	caps = rayos_vm_caps_now(vm);	/* temporary grants: compared to their deadline */
	/* CAP_GPU limited to listed nodes: the others are as if not held. */
	if (cls == RAYOS_DEVC_DRI && (vm->flags & RAYOS_VMF_GPU_NODES) &&
	    !(exact && (exact->limit & RAYOS_DEV_LIMIT_GPU)))
		caps &= ~(1ULL << RAYOS_CAP_GPU);
	/* CAP_DISK_* limited to listed disks: the others as if not held. */
	if ((vm->flags & RAYOS_VMF_DISK_READ_LIMIT) &&
	    !(exact && (exact->limit & RAYOS_DEV_LIMIT_DISK_READ)))
		caps &= ~(1ULL << RAYOS_CAP_DISK_READ);
	if ((vm->flags & RAYOS_VMF_DISK_WRITE_LIMIT) &&
	    !(exact && (exact->limit & RAYOS_DEV_LIMIT_DISK_WRITE)))
		caps &= ~(1ULL << RAYOS_CAP_DISK_WRITE);
	cap = rayos_dev_cap_bits(caps, cls) | rayos_dev_disk_bits(caps, disk);
	if (!(access & ~(allow | cap))) {
		*reason = RAYOS_DEVR_CAP;
		return 1;
	}
	if (!(access & ~(allow | cap | basic))) {
		*reason = RAYOS_DEVR_BASIC;
		return 1;
	}
	*reason = RAYOS_DEVR_DEFAULT_DENY;
	return 0;
}

/* Everything a decision produced, for the caller's counters. */
struct rayos_dev_decision {
	__u32 vm_id;		/* 0: unknown */
	__u32 slot;		/* rayos_vm.slot; valid when has_vm */
	__u32 cls;		/* enum rayos_dev_class */
	__u32 reason;		/* enum rayos_dev_reason */
	__u8  allow;
	__u8  has_vm;
	__u8  pad[6];
};

/*
 * The VM of the current task: its own cgroup, else the nearest registered
 * ancestor (QEMU helpers may live in sub-cgroups of the VM's).  0: none.
 */
static __always_inline __u32 rayos_dev_current_vm(void)
{
	__u64 cgid = bpf_get_current_cgroup_id();
	struct rayos_cgroup_val *cv;
	int level;

	cv = bpf_map_lookup_elem(&rayos_cgroups, &cgid);
	if (cv)
		return cv->vm_id;
	for (level = RAYOS_DEV_MAX_LEVEL; level > 0; level--) {
		cgid = bpf_get_current_ancestor_cgroup_id(level);
		if (!cgid)
			continue;	/* deeper than the task itself */
		cv = bpf_map_lookup_elem(&rayos_cgroups, &cgid);
		if (cv)
			return cv->vm_id;
	}
	return 0;
}

/* Look up the VM record and its rules for one request and decide. */
static __always_inline int rayos_dev_decide(__u32 vm_id, __u32 type, __u32 major,
					    __u32 minor, __u32 access,
					    struct rayos_dev_decision *d)
{
	const struct rayos_dev_rule *exact = 0, *wild = 0;
	const struct rayos_vm *vm = 0;
	struct rayos_dev_key key;
	__u32 reason = 0;

	__builtin_memset(d, 0, sizeof(*d));
	d->vm_id = vm_id;
	d->cls = rayos_dev_class_of(type, major, minor);
	if (vm_id)
		vm = bpf_map_lookup_elem(&rayos_vms, &vm_id);
	if (vm) {
		__builtin_memset(&key, 0, sizeof(key));
		key.vm_id = vm_id;
		key.gen = vm->gen;
		key.type = (__u8)type;
		key.major = major;
		key.minor = minor;
		exact = bpf_map_lookup_elem(&rayos_dev_rules, &key);
		key.minor = RAYOS_DEV_MINOR_ANY;
		wild = bpf_map_lookup_elem(&rayos_dev_rules, &key);
		d->has_vm = 1;
		d->slot = vm->slot;
	}
	d->allow = (__u8)rayos_dev_verdict(vm, exact, wild, d->cls, access, &reason);
	d->reason = reason;
	return d->allow;
}

#endif /* RAYOS_DEVPOLICY_BPF_H */
