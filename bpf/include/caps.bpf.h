/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Whether a VM holds a capability, as every program that enforces one asks
 * it.  Effective = granted, not expired, and every delegation link above it
 * valid (DESIGN.md "Capabilities in the kernel"; bpf/abi/policy.h,
 * rayos_cap_state), so a grant ends and a delegation chain collapses on time
 * with the agent dead.
 *
 * Cost: a permanent grant is a bit of the VM's record, which the packet path
 * already holds (rayos_ifaces carries a copy) and the device decision looks
 * up anyway: a load and a test.  Anything else (a temporary grant, a
 * delegated capability, a capability the VM lacks) is answered from a
 * per-CPU cache of the VM's effective set: two inlined array lookups and
 * three compares.  The cache is refilled by the walk (rayos_caps_walk, a
 * global subprogram so the verifier checks it once) when the loader changed
 * any grant or link (rayos_cap_epoch), when jiffies moved since the fill
 * (a tick: 4 ms at HZ=250; bpf_jiffies64() is inlined by the JIT, and
 * unlike bpf_ktime_get_coarse_ns() the cgroup device program may call it),
 * or always when a deadline the result depends on is less than
 * RAYOS_CAP_CACHE_MARGIN_NS away: the walk reads
 * the precise boot clock (bpf_ktime_get_boot_ns(), ~35 ns here), so expiry
 * is exact, and a cached answer never outlives the deadline it used (a
 * cached entry lives at most one tick, well inside the margin).
 *
 * An active revoke-all (capswitch.bpf.h) outranks all of it: its mask is
 * applied to the VM itself on every check (outside the cache) and to every
 * delegator on the walk, and the cache is valid only under the switch epoch
 * it was filled in, so a revoke-all of a delegator ends the chains below it
 * at the switch's store.
 *
 * Needs the types of bpf/abi/policy.h, bpf_map_lookup_elem(),
 * bpf_ktime_get_boot_ns(), bpf_jiffies64() and the maps
 * rayos_cap_state, rayos_cap_cache, rayos_cap_epoch, rayos_cap_switch and
 * rayos_cap_revoke (maps.bpf.h).
 */
#ifndef RAYOS_CAPS_BPF_H
#define RAYOS_CAPS_BPF_H

#include "bpf/abi/policy.h"
#include "capswitch.bpf.h"

#ifndef __noinline
#define __noinline __attribute__((noinline))
#endif

/* A grant of c in caps/until (a record or a slot's copy) at boot time now;
 * a temporary one lowers *soonest to its deadline. */
static __always_inline bool rayos_cap_own(__u64 caps, const __u64 *until, __u32 c, __u64 now,
					  __u64 *soonest)
{
	__u64 u;

	if (caps & (1ULL << c))
		return true;
	u = until[c & (RAYOS_CAP_COUNT - 1)];
	if (u <= now)
		return false;	/* 0 (no grant) or expired */
	if (u < *soonest)
		*soonest = u;
	return true;
}

/*
 * Follow the delegation link l of capability c up at most
 * RAYOS_CAP_MAX_DEPTH hops (A->B->C->D: D's link reaches A's own grant in
 * three).  Each hop: the link unexpired, its slot still holding the VM it
 * names, that VM not quarantined nor revoked c by a revoke-all; it holds c
 * itself or the next link continues.  A fourth hop is never followed.  On success *soonest is the
 * earliest deadline on the way.
 */
static __always_inline bool rayos_cap_via_link(struct rayos_cap_link l, __u32 c, __u64 now,
					       __u64 *soonest)
{
	const struct rayos_cap_state *d;
	__u64 s = *soonest;
	__u32 slot;
	int hop;

	for (hop = 0; hop < RAYOS_CAP_MAX_DEPTH; hop++) {
		if (!l.from_vm)
			return false;
		if (l.until_ns) {
			if (l.until_ns <= now)
				return false;
			if (l.until_ns < s)
				s = l.until_ns;
		}
		slot = l.from_slot;
		d = bpf_map_lookup_elem(&rayos_cap_state, &slot);
		if (!d || d->vm_id != l.from_vm || (d->flags & RAYOS_VMF_QUARANTINE) ||
		    (rayos_caps_revoked(slot) & (1ULL << c)))
			return false;
		if (rayos_cap_own(d->caps, d->cap_until_ns, c, now, &s)) {
			*soonest = s;
			return true;
		}
		l = d->link[c & (RAYOS_CAP_COUNT - 1)];
	}
	return false;
}

/*
 * The effective capabilities of vm now, by the walk, stored in this CPU's
 * cache cell of its slot.  The epoch is read before anything else: a change
 * the loader makes during the walk bumps it after, so the cell it fills is
 * already stale.  Fields are written with the cell marked invalid
 * (tick 0: jiffies64 starts near 2^32 and never reaches 0) so a program that interrupts the fill on this CPU (tc in
 * softirq over a device open) never takes a half-written cell.
 */
__noinline __u64 rayos_caps_walk(const struct rayos_vm *vm, __u64 tick)
{
	const struct rayos_cap_state *st;
	struct rayos_cap_cache *cc;
	__u64 caps = 0, now, soonest = ~0ULL, sw_epoch = 0;
	const struct rayos_cap_switch *sw;
	__u32 slot, zero = 0, epoch = 0, c, *ep;

	if (!vm)
		return 0;
	ep = bpf_map_lookup_elem(&rayos_cap_epoch, &zero);
	if (ep)
		epoch = *(volatile __u32 *)ep;
	sw = bpf_map_lookup_elem(&rayos_cap_switch, &zero);
	if (sw)
		sw_epoch = RAYOS_READ_U64(sw->epoch);
	now = bpf_ktime_get_boot_ns();
	slot = vm->slot;
	st = bpf_map_lookup_elem(&rayos_cap_state, &slot);
	if (st && st->vm_id != vm->vm_id)
		st = 0;	/* the slot's copy is not (yet) this VM's: no links */
	for (c = 0; c < RAYOS_CAP_COUNT; c++) {
		if (rayos_cap_own(vm->caps, vm->cap_until_ns, c, now, &soonest) ||
		    (st && rayos_cap_via_link(st->link[c], c, now, &soonest)))
			caps |= 1ULL << c;
	}
	cc = bpf_map_lookup_elem(&rayos_cap_cache, &slot);
	if (cc) {
		*(volatile __u64 *)&cc->tick = 0;
		cc->vm_id = vm->vm_id;
		cc->epoch = epoch;
		cc->sw_epoch = sw_epoch;
		cc->caps = caps;
		*(volatile __u64 *)&cc->tick = soonest - now > RAYOS_CAP_CACHE_MARGIN_NS ? tick : 0;
	}
	return caps;
}

/* Every capability vm holds now, permanent ones included, before the
 * VM's own revoke-all mask (the callers apply it). */
static __always_inline __u64 rayos_vm_caps_at(const struct rayos_vm *vm)
{
	__u32 slot = vm->slot, zero = 0, *ep;
	const struct rayos_cap_switch *sw;
	struct rayos_cap_cache *cc;
	__u64 tick = bpf_jiffies64();

	ep = bpf_map_lookup_elem(&rayos_cap_epoch, &zero);
	sw = bpf_map_lookup_elem(&rayos_cap_switch, &zero);
	cc = bpf_map_lookup_elem(&rayos_cap_cache, &slot);
	if (ep && sw && cc && cc->tick == tick && cc->epoch == *ep &&
	    cc->sw_epoch == RAYOS_READ_U64(sw->epoch) && cc->vm_id == vm->vm_id)
		return cc->caps;
	return rayos_caps_walk(vm, tick);
}

/* The packet path's question: a permanent bit answers without a lookup. */
static __always_inline bool rayos_vm_has_cap(const struct rayos_vm *vm, __u32 cap)
{
	if (cap >= RAYOS_CAP_COUNT)
		return false;
	if (rayos_caps_revoked(vm->slot) & (1ULL << cap))
		return false;
	if (vm->caps & (1ULL << cap))
		return true;
	return (rayos_vm_caps_at(vm) >> cap) & 1;
}

/* The device decision's question: the whole set. */
static __always_inline __u64 rayos_vm_caps_now(const struct rayos_vm *vm)
{
	return (vm->caps | rayos_vm_caps_at(vm)) & ~rayos_caps_revoked(vm->slot);
}

#endif /* RAYOS_CAPS_BPF_H */
