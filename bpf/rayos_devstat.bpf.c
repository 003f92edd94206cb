// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Device statistics from tracepoints, per VM and device class: open/openat
 * and ioctl calls of tasks in VM cgroups (count, -EPERM results, time spent
 * in the syscall), and KVM exits, MMIO and port I/O when the kernel has the
 * kvm tracepoints.  Raw tracepoints: they need no tracefs mount and no BTF
 * program types, which this kernel family refuses.
 *
 * Never changes an outcome.  Opens are attributed to the device class the
 * cgroup device program checked during the call (rayos_dev fills in
 * rayos_dev_inflt), so an open of a regular file is not counted and a denied
 * open is counted under the device it was denied for.
 *
 * Cost: sys_enter/sys_exit run for every syscall of the host; tasks outside
 * VM cgroups leave after one syscall-number compare at entry and one hash
 * miss at exit.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "devmaps.bpf.h"
#include "devpolicy.bpf.h"

#if defined(__TARGET_ARCH_x86)
#define NR_IOCTL	16
#define NR_OPEN		2
#define NR_OPENAT	257
#elif defined(__TARGET_ARCH_arm64)
#define NR_IOCTL	29
#define NR_OPEN		(-1)	/* arm64 has no open(2) */
#define NR_OPENAT	56
#else
#error "syscall numbers for this architecture"
#endif
#define NR_OPENAT2	437	/* the same on every architecture */

#define RAYOS_EPERM	1
#define S_IFMT		00170000
#define S_IFBLK		0060000
#define S_IFCHR		0020000
#define MINORBITS	20
#define MINORMASK	((1U << MINORBITS) - 1)

static __always_inline struct rayos_vm *current_vm(__u32 *vm_id)
{
	*vm_id = rayos_dev_current_vm();
	return *vm_id ? bpf_map_lookup_elem(&rayos_vms, vm_id) : 0;
}

/* The device class behind an fd of the current task, or RAYOS_DEVC_NONE. */
static __always_inline __u8 fd_class(long fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct file **fds, *f = 0;
	unsigned int max;
	__u32 mode;
	dev_t rdev;

	if (fd < 0)
		return RAYOS_DEVC_NONE;
	fds = BPF_CORE_READ(task, files, fdt, fd);
	max = BPF_CORE_READ(task, files, fdt, max_fds);
	if (!fds || (unsigned long)fd >= max)
		return RAYOS_DEVC_NONE;
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
	if (!f)
		return RAYOS_DEVC_NONE;
	mode = BPF_CORE_READ(f, f_inode, i_mode) & S_IFMT;
	if (mode != S_IFCHR && mode != S_IFBLK)
		return RAYOS_DEVC_NONE;
	rdev = BPF_CORE_READ(f, f_inode, i_rdev);
	return (__u8)rayos_dev_class_of(mode == S_IFCHR ? RAYOS_DEV_CHAR : RAYOS_DEV_BLOCK,
					rdev >> MINORBITS, rdev & MINORMASK);
}

SEC("raw_tp/sys_enter")
int rayos_sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
	long nr = (long)ctx->args[1];
	struct rayos_dev_inflight inf = {};
	struct rayos_vm *vm;
	__u64 id;
	__u32 vm_id;

	if (nr != NR_OPEN && nr != NR_OPENAT && nr != NR_OPENAT2 && nr != NR_IOCTL)
		return 0;
	vm = current_vm(&vm_id);
	if (!vm)
		return 0;
	inf.vm_id = vm_id;
	inf.slot = vm->slot;
	if (nr == NR_IOCTL) {
		struct pt_regs *regs = (struct pt_regs *)ctx->args[0];

		inf.op = RAYOS_DEVOP_IOCTL;
		inf.cls = fd_class((long)PT_REGS_PARM1_CORE_SYSCALL(regs));
		if (inf.cls == RAYOS_DEVC_NONE)
			return 0;	/* not a device: not ours to count */
	} else {
		inf.op = RAYOS_DEVOP_OPEN;
		inf.cls = RAYOS_DEVC_NONE;	/* rayos_dev fills it in */
	}
	id = bpf_get_current_pid_tgid();
	inf.start_ns = bpf_ktime_get_ns();
	bpf_map_update_elem(&rayos_dev_inflt, &id, &inf, BPF_ANY);
	return 0;
}

SEC("raw_tp/sys_exit")
int rayos_sys_exit(struct bpf_raw_tracepoint_args *ctx)
{
	__u64 id = bpf_get_current_pid_tgid(), now;
	long ret = (long)ctx->args[1];
	struct rayos_dev_inflight *inf;
	struct rayos_dev_ctr *c;

	inf = bpf_map_lookup_elem(&rayos_dev_inflt, &id);
	if (!inf)
		return 0;
	now = bpf_ktime_get_ns();
	if (inf->cls != RAYOS_DEVC_NONE) {
		c = rayos_dev_ctr_of(inf->slot, inf->cls);
		if (c && inf->op == RAYOS_DEVOP_OPEN) {
			c->opens++;
			c->open_ns += now - inf->start_ns;
			if (ret == -RAYOS_EPERM)
				c->open_eperm++;
		} else if (c) {
			c->ioctls++;
			c->ioctl_ns += now - inf->start_ns;
			if (ret < 0)
				c->ioctl_err++;
		}
	}
	bpf_map_delete_elem(&rayos_dev_inflt, &id);
	return 0;
}

/* KVM: the vCPU thread runs in its VM's cgroup. */
static __always_inline struct rayos_kvm_ctr *kvm_ctr(void)
{
	struct rayos_vm *vm;
	__u32 vm_id;

	vm = current_vm(&vm_id);
	return vm ? bpf_map_lookup_elem(&rayos_kvm_stats, &vm->slot) : 0;
}

SEC("raw_tp/kvm_exit")
int rayos_kvm_exit(struct bpf_raw_tracepoint_args *ctx)
{
	struct rayos_kvm_ctr *c = kvm_ctr();

	if (c)
		c->exits++;
	return 0;
}

SEC("raw_tp/kvm_mmio")
int rayos_kvm_mmio(struct bpf_raw_tracepoint_args *ctx)
{
	struct rayos_kvm_ctr *c = kvm_ctr();

	if (c)
		c->mmio++;
	return 0;
}

SEC("raw_tp/kvm_pio")
int rayos_kvm_pio(struct bpf_raw_tracepoint_args *ctx)
{
	struct rayos_kvm_ctr *c = kvm_ctr();

	if (c)
		c->pio++;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
