// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Per-VM device access control: a cgroup device program on each VM's cgroup
 * (bpf_link, pinned as links/vm<ID>_dev).  A thin entry over the decision in
 * devpolicy.bpf.h, which the LSM program shares; it also counts every
 * decision per VM and device class and tells the syscall tracepoints which
 * device the current open reached.
 *
 * Two entries over one body:
 *   rayos_dev       on a cgroup the VM owns.  Fails closed: a task whose
 *                   cgroup or VM the maps do not know gets only the
 *                   always-allowed basics; it runs only on VM cgroups, so a
 *                   miss is a VM that left the policy, never a host process.
 *   rayos_dev_above on the parent of a cgroup that another manager sealed
 *                   with a device program of its own attached without
 *                   BPF_F_ALLOW_MULTI (libvirt does), where no program can
 *                   be added below; both programs must allow.  Every task
 *                   under that parent runs it, other managers' guests too:
 *                   for a task in no RayOS VM it allows (fails open: not
 *                   RayOS's to police, and the other manager's program
 *                   still decides); for a VM's task it decides as above.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "devmaps.bpf.h"
#include "devpolicy.bpf.h"

static __always_inline int rayos_dev_run(struct bpf_cgroup_dev_ctx *ctx, __u32 vm_id)
{
	__u32 type = ctx->access_type & 0xffff, access = ctx->access_type >> 16;
	struct rayos_dev_decision d;
	struct rayos_dev_inflight *inf;
	struct rayos_dev_ctr *c;
	__u64 id;

	rayos_dev_decide(vm_id, type, ctx->major, ctx->minor, access, &d);
	if (d.has_vm) {
		c = rayos_dev_ctr_of(d.slot, d.cls);
		if (c) {
			c->checks++;
			if (!d.allow)
				c->denials++;
		}
	}
	/* Only tasks the tracepoints follow have an entry. */
	id = bpf_get_current_pid_tgid();
	inf = bpf_map_lookup_elem(&rayos_dev_inflt, &id);
	if (inf)
		inf->cls = (__u8)d.cls;
	return d.allow;
}

SEC("cgroup/dev")
int rayos_dev(struct bpf_cgroup_dev_ctx *ctx)
{
	return rayos_dev_run(ctx, rayos_dev_current_vm());
}

SEC("cgroup/dev")
int rayos_dev_above(struct bpf_cgroup_dev_ctx *ctx)
{
	__u32 vm_id = rayos_dev_current_vm();

	if (!vm_id)
		return 1;
	return rayos_dev_run(ctx, vm_id);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
