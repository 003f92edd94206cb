/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * "Is this packet for the host itself?"  A guest's frame reaches the host's
 * own stack when its destination is one of the host's addresses (the
 * agent keeps them in rayos_host4/6 from rtnetlink), a broadcast or
 * multicast group (the host receives those too), or loopback.  Such packets
 * meet the VM's HOST rules before its OUT rules: a service bound to 0.0.0.0
 * on the host is not every guest's business.
 */
#ifndef RAYOS_HOST_BPF_H
#define RAYOS_HOST_BPF_H

#include "maps.bpf.h"
#include "parse.bpf.h"

static __always_inline bool dst_is_host(const struct rayos_pkt *p)
{
	__u32 d = p->daddr[0];

	if (p->family == RAYOS_AF_INET) {
		if (d == 0xffffffff ||
		    (d & bpf_htonl(0xf0000000)) == bpf_htonl(0xe0000000) ||	/* 224/4 */
		    (d & bpf_htonl(0xff000000)) == bpf_htonl(0x7f000000))	/* 127/8 */
			return true;
		return bpf_map_lookup_elem(&rayos_host4, &d) != NULL;
	}
	if (p->family == RAYOS_AF_INET6) {
		void *hit;

		if ((d & bpf_htonl(0xff000000)) == bpf_htonl(0xff000000) ||	/* ff00::/8 */
		    !(d | p->daddr[1] | p->daddr[2] | (p->daddr[3] ^ bpf_htonl(1))))	/* ::1 */
			return true;
		hit = bpf_map_lookup_elem(&rayos_host6, p->daddr);
		return hit != NULL;
	}
	return false;
}

/* HOST rules that let everything through need no lookup at all. */
static __always_inline bool host_open(const struct rayos_vm *vm)
{
	const struct rayos_dir_policy *hp = &vm->dir[RAYOS_FW_HOST];

	return hp->default_action == RAYOS_ACT_ALLOW && !hp->nr_rules;
}

#endif /* RAYOS_HOST_BPF_H */
