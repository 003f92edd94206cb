// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Empty tc and XDP programs: the floor that tests/net/bench_fw measures next
 * to rayos_net in the same run.  Never loaded by the loader; no maps, so the
 * skeleton loads without touching the pinned RayOS maps.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

SEC("tc")
int rayos_bench_tc(struct __sk_buff *skb)
{
	return 0;	/* TC_ACT_OK */
}

SEC("xdp")
int rayos_bench_xdp(struct xdp_md *ctx)
{
	return 2;	/* XDP_PASS */
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
