// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The device decision (bpf/include/devpolicy.bpf.h) in a loop, for
 * tests/dev/bench_dev: cgroup device programs cannot be test-run, so a
 * syscall program runs rayos_dev_decide bench_iters times over the pinned
 * maps (opened with the bench's pin root) and reports the time.  Mode 0
 * runs the loop with an empty body: the floor to subtract.  Never loaded by
 * the loader.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "devmaps.bpf.h"
#include "devpolicy.bpf.h"

__u32 bench_vm_id;
__u32 bench_major = 226;
__u32 bench_minor;
__u32 bench_iters;
__u32 bench_mode;	/* 0: empty loop, 1: the decision */
__u64 bench_ns;		/* out: time of the whole loop */
__u32 bench_allowed;	/* out: how many decisions allowed */

static long decide_once(__u64 i, void *ctx)
{
	struct rayos_dev_decision d;

	if (!bench_mode)
		return 0;
	rayos_dev_decide(bench_vm_id, RAYOS_DEV_CHAR, bench_major, bench_minor,
			 RAYOS_DEV_ACC_READ, &d);
	*(__u32 *)ctx += d.allow;
	return 0;
}

SEC("syscall")
int rayos_capbench(void *ctx)
{
	__u32 allowed = 0;
	__u64 t0 = bpf_ktime_get_ns();

	bpf_loop(bench_iters, decide_once, &allowed, 0);
	bench_ns = bpf_ktime_get_ns() - t0;
	bench_allowed = allowed;
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
