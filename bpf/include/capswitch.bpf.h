/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * revoke-all as the programs see it: the capabilities an active revoke-all
 * has taken from a slot (bpf/abi/policy.h describes the protocol).  With no
 * revoke-all waiting to be folded into the VM records -- the usual case --
 * this is one inlined array lookup and a load.  Needs the maps
 * rayos_cap_switch and rayos_cap_revoke (maps.bpf.h, pinned by name, so the
 * packet, device and LSM programs read the same switch) and
 * bpf_map_lookup_elem(): tests/dev/test_devpolicy.c compiles it in user
 * space with a shim.
 */
#ifndef RAYOS_CAPSWITCH_BPF_H
#define RAYOS_CAPSWITCH_BPF_H

#include "bpf/abi/policy.h"

/* The agent stores with release order; a plain volatile load is enough here
 * (x86 and arm64 keep dependent loads in order after the switch's). */
#define RAYOS_READ_U64(x)	(*(volatile const __u64 *)&(x))

static __always_inline __u64 rayos_caps_revoked(__u32 slot)
{
	const struct rayos_cap_switch *sw;
	const struct rayos_cap_revoke *r;
	__u32 zero = 0;
	__u64 epoch, e;

	sw = bpf_map_lookup_elem(&rayos_cap_switch, &zero);
	if (!sw || !RAYOS_READ_U64(sw->armed))
		return 0;
	epoch = RAYOS_READ_U64(sw->epoch);
	r = bpf_map_lookup_elem(&rayos_cap_revoke, &slot);
	if (!r)
		return 0;
	e = RAYOS_READ_U64(r->epoch);
	if (!e || e > epoch)
		return 0;
	return RAYOS_READ_U64(r->mask);
}

#endif /* RAYOS_CAPSWITCH_BPF_H */
