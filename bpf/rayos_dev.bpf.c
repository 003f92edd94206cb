// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Per-VM device access control: a cgroup device program on each VM's cgroup
 * (bpf_link, pinned as links/vm<ID>_dev).  A thin entry over the decision in
 * devpolicy.bpf.h, which the LSM program shares; it also counts every
 * decision per VM and device class and tells the syscall tracepoints which
 * device the current open reached.
 *
 * Fails closed: a task whose cgroup or VM the maps do not know gets only the
 * always-allowed basics.  The program runs only on cgroups the agent made
 * for VMs, so a miss is a VM that left the policy, never a host process.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "devmaps.bpf.h"
#include "devpolicy.bpf.h"

SEC("cgroup/dev")
int rayos_dev(struct bpf_cgroup_dev_ctx *ctx)
{
	__u32 type = ctx->access_type & 0xffff, access = ctx->access_type >> 16;
	struct rayos_dev_decision d;
	struct rayos_dev_inflight *inf;
	struct rayos_dev_ctr *c;
	__u64 id;

	rayos_dev_decide(rayos_dev_current_vm(), type, ctx->major, ctx->minor, access, &d);
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

char LICENSE[] SEC("license") = "Dual BSD/GPL";
