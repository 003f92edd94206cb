/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Whether a VM holds a capability, as every program that enforces one asks
 * it: from the VM's record, which the packet path already holds (rayos_ifaces
 * carries a copy) and the device decision looks up anyway, so the check adds
 * loads and a test, no lookup.  A permanent grant is a bit of caps; a
 * temporary one a CLOCK_BOOTTIME deadline in cap_until_ns, compared here, so
 * it ends on time with the agent dead.  The clock is read only when the
 * permanent bit is clear and a deadline is set.  An active revoke-all
 * (capswitch.bpf.h) outranks both.  Needs the types of
 * bpf/abi/policy.h and bpf_ktime_get_boot_ns().
 */
#ifndef RAYOS_CAPS_BPF_H
#define RAYOS_CAPS_BPF_H

#include "bpf/abi/policy.h"
#include "capswitch.bpf.h"

static __always_inline bool rayos_vm_has_cap(const struct rayos_vm *vm, __u32 cap)
{
	__u64 until;

	if (cap >= RAYOS_CAP_COUNT)
		return false;
	if (rayos_caps_revoked(vm->slot) & (1ULL << cap))
		return false;
	if (vm->caps & (1ULL << cap))
		return true;
	until = vm->cap_until_ns[cap];
	return until && bpf_ktime_get_boot_ns() < until;
}

/* Every capability the VM holds now: caps plus the unexpired temporary
 * grants (one clock read at most). */
static __always_inline __u64 rayos_vm_caps_now(const struct rayos_vm *vm)
{
	__u64 caps = vm->caps, now = 0;
	__u32 i;

	for (i = 0; i < RAYOS_CAP_COUNT; i++) {
		__u64 until = vm->cap_until_ns[i];

		if (!until || (caps & (1ULL << i)))
			continue;
		if (!now)
			now = bpf_ktime_get_boot_ns();
		if (now < until)
			caps |= 1ULL << i;
	}
	return caps & ~rayos_caps_revoked(vm->slot);
}

#endif /* RAYOS_CAPS_BPF_H */
