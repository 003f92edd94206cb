// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The same device decision at file_open, for kernels with the BPF LSM: it
 * sees the inode (so it also covers device nodes opened through paths the
 * cgroup program cannot tell apart, and fd passing), and it guards disk
 * images, which are regular files the device cgroup never sees.  A separate
 * object: a kernel that refuses LSM programs (many do) loses only this.
 *
 * Fails open for tasks outside VM cgroups (the host is not ours to police)
 * and for files that are neither device nodes nor registered images (QEMU
 * opens libraries, firmware, sockets); fails closed, like rayos_dev, for a
 * VM task whose VM record is gone.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "devmaps.bpf.h"
#include "devpolicy.bpf.h"

#define RAYOS_EPERM	1
#define S_IFMT		00170000
#define S_IFREG		0100000
#define S_IFBLK		0060000
#define S_IFCHR		0020000
#define FMODE_READ	0x1
#define FMODE_WRITE	0x2
#define MINORBITS	20
#define MINORMASK	((1U << MINORBITS) - 1)

/* A registered disk image: only its VM, only in its mode, only with the
 * disk capabilities. */
static __always_inline int image_allowed(__u32 vm_id, __u64 caps, struct file *file,
					 __u32 access)
{
	struct rayos_dev_file_key key = {};
	struct rayos_dev_file *img;

	key.dev = BPF_CORE_READ(file, f_inode, i_sb, s_dev);
	key.ino = BPF_CORE_READ(file, f_inode, i_ino);
	img = bpf_map_lookup_elem(&rayos_dev_files, &key);
	if (!img)
		return 1;
	if (img->vm_id != vm_id)
		return 0;
	return !(access & ~rayos_dev_disk_bits(caps, img->mode));
}

SEC("lsm/file_open")
int BPF_PROG(rayos_file_open, struct file *file, int ret)
{
	struct rayos_dev_decision d;
	struct rayos_vm *vm;
	__u32 vm_id, access = 0, fmode, mode, type;
	dev_t rdev;

	if (ret)
		return ret;
	vm_id = rayos_dev_current_vm();
	if (!vm_id)
		return 0;
	fmode = BPF_CORE_READ(file, f_mode);
	if (fmode & FMODE_READ)
		access |= RAYOS_DEV_ACC_READ;
	if (fmode & FMODE_WRITE)
		access |= RAYOS_DEV_ACC_WRITE;
	mode = BPF_CORE_READ(file, f_inode, i_mode) & S_IFMT;
	if (mode == S_IFREG) {
		vm = bpf_map_lookup_elem(&rayos_vms, &vm_id);
		if (!vm)
			return -RAYOS_EPERM;
		return image_allowed(vm_id, rayos_vm_caps_now(vm), file, access) ? 0 : -RAYOS_EPERM;
	}
	if (mode != S_IFCHR && mode != S_IFBLK)
		return 0;
	type = mode == S_IFCHR ? RAYOS_DEV_CHAR : RAYOS_DEV_BLOCK;
	rdev = BPF_CORE_READ(file, f_inode, i_rdev);
	rayos_dev_decide(vm_id, type, rdev >> MINORBITS, rdev & MINORMASK, access, &d);
	return d.allow ? 0 : -RAYOS_EPERM;
}

char LICENSE[] SEC("license") = "GPL";
