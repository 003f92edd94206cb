/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Firewall lookup, exactly as bpf/abi/policy.h describes it: a port-dimension
 * bitmap (exact port -> port range -> protocol wildcard -> any), ANDed with a
 * CIDR-dimension bitmap over the remote address; the lowest set bit is the
 * first matching rule.  Both directions match the DESTINATION port: OUT the
 * remote service the guest connects to, IN the guest's own service.  Return
 * traffic is the flow tracker's business (ct.bpf.h), never a rule's.  The
 * HOST rule set (RAYOS_FW_HOST) reads like OUT: the remote address is the
 * destination, one of the host's own.
 */
#ifndef RAYOS_FW_BPF_H
#define RAYOS_FW_BPF_H

#include "maps.bpf.h"
#include "parse.bpf.h"
#include "fwtab.bpf.h"

/* The rule set `set` (enum rayos_dir or RAYOS_FW_HOST) of vm, with an index
 * the verifier can bound. */
static __always_inline const struct rayos_dir_policy *fw_set(const struct rayos_vm *vm, __u8 set)
{
	return set == RAYOS_FW_HOST ? &vm->dir[RAYOS_FW_HOST] : &vm->dir[set & 1];
}

/*
 * Port-dimension bitmap.  Without ports (non-TCP/UDP/ICMP protocols, later
 * fragments whose first fragment was not seen) only the protocol-wide and
 * any-protocol entries can match.  A miss on every key means no rule
 * mentions this protocol: bitmap 0, so the default action decides.
 */
static __always_inline __u64 fw_port_bits(__u32 vm_id, const struct rayos_vm *vm, __u8 dir,
					  const struct rayos_pkt *p, const struct rayos_fw_tab *tab)
{
	const struct rayos_dir_policy *dp = fw_set(vm, dir);
	struct rayos_fw_port_key k = {
		.vm_id = vm_id,
		.gen = vm->gen,
		.dir = dir,
		.proto = p->proto,
		.kind = RAYOS_PORT_EXACT,
		.port_host = p->dport,
	};
	struct rayos_fw_bits *bits;

	if (tab && (dp->flags & RAYOS_DIRF_PORT_TAB))
		return fwtab_port(tab, (__u32)p->proto << 17 |
				       (p->has_ports ? 1U << 16 | p->dport : 0));
	if (p->has_ports) {
		bits = bpf_map_lookup_elem(&rayos_fw_port, &k);
		if (bits)
			return bits->rules;
		if (tab && (dp->flags & RAYOS_DIRF_RANGE_TAB)) {
			__u64 r = fwtab_range(tab, (__u32)p->proto << 16 | p->dport);

			if (r)
				return r;
		} else if (dp->flags & RAYOS_DIRF_PORT_RANGES) {
			struct rayos_fw_range_key rk = {
				.prefixlen = RAYOS_FW_RANGE_PREFIX + 16,
				.vm_id = vm_id,
				.gen = vm->gen,
				.dir = dir,
				.proto = p->proto,
				.port_be = bpf_htons(p->dport),
			};

			bits = bpf_map_lookup_elem(&rayos_fw_range, &rk);
			if (bits)
				return bits->rules;
		}
	}
	k.kind = RAYOS_PORT_ANY;
	k.port_host = 0;
	bits = bpf_map_lookup_elem(&rayos_fw_port, &k);
	if (bits)
		return bits->rules;
	k.proto = RAYOS_PROTO_ANY;
	bits = bpf_map_lookup_elem(&rayos_fw_port, &k);
	return bits ? bits->rules : 0;
}

/* Lookups use the whole key (every bit after prefixlen).  Computed from
 * the layout, not from RAYOS_FW_CIDR_PREFIX: that constant says 48 but
 * vm_id, gen, dir and pad are 64 bits (the compiler derives it the same
 * way, see CIDR_KEY_BITS in agent/policy/policy_compile.c). */
#define RAYOS_CIDR4_LOOKUP_BITS	((sizeof(struct rayos_fw_cidr4_key) - sizeof(__u32)) * 8)
#define RAYOS_CIDR6_LOOKUP_BITS	((sizeof(struct rayos_fw_cidr6_key) - sizeof(__u32)) * 8)

/* CIDR-dimension bitmap over the remote address (OUT: destination, IN:
 * source).  A table search, or an LPM walk for a VM whose CIDRs do not
 * fit its table; nothing for a VM without CIDR rules. */
static __always_inline __u64 fw_cidr_bits(__u32 vm_id, const struct rayos_vm *vm, __u8 dir,
					  const struct rayos_pkt *p, const struct rayos_fw_tab *tab)
{
	const struct rayos_dir_policy *dp = fw_set(vm, dir);
	const __u32 *remote = dir == RAYOS_DIR_IN ? p->saddr : p->daddr;
	__u64 bits = dp->cidr_wild_bits;
	struct rayos_fw_bits *hit = NULL;

	if (tab && p->family == RAYOS_AF_INET && (dp->flags & RAYOS_DIRF_CIDR4_TAB)) {
		bits |= fwtab_cidr4(tab, bpf_ntohl(remote[0]));
	} else if (tab && p->family == RAYOS_AF_INET6 && (dp->flags & RAYOS_DIRF_CIDR6_TAB)) {
		bits |= fwtab_cidr6(tab, (__u64)bpf_ntohl(remote[0]) << 32 | bpf_ntohl(remote[1]),
				    (__u64)bpf_ntohl(remote[2]) << 32 | bpf_ntohl(remote[3]));
	} else if (p->family == RAYOS_AF_INET && (dp->flags & RAYOS_DIRF_CIDR4)) {
		struct rayos_fw_cidr4_key k = {
			.prefixlen = RAYOS_CIDR4_LOOKUP_BITS,
			.vm_id = vm_id,
			.gen = vm->gen,
			.dir = dir,
			.addr_be = remote[0],
		};

		hit = bpf_map_lookup_elem(&rayos_fw_cidr4, &k);
	} else if (p->family == RAYOS_AF_INET6 && (dp->flags & RAYOS_DIRF_CIDR6)) {
		struct rayos_fw_cidr6_key k = {
			.prefixlen = RAYOS_CIDR6_LOOKUP_BITS,
			.vm_id = vm_id,
			.gen = vm->gen,
			.dir = dir,
		};

		__builtin_memcpy(k.addr, remote, 16);
		hit = bpf_map_lookup_elem(&rayos_fw_cidr6, &k);
		RAYOS_KEEP_CALL(hit);
	}
	if (hit)
		bits |= hit->rules;
	return bits;
}

/*
 * Index of the lowest set bit of a non-zero x.  clang 14's BPF backend
 * crashes on __builtin_ctzll (it lowers cttz through a constant-pool table
 * BPF cannot hold), so: isolate the bit, then six branch-free halvings.
 */
static __always_inline __u32 lowest_bit(__u64 x)
{
	__u32 n = 0;

	x &= -x;
	n += !!(x & 0xffffffff00000000ULL) << 5;
	n += !!(x & 0xffff0000ffff0000ULL) << 4;
	n += !!(x & 0xff00ff00ff00ff00ULL) << 3;
	n += !!(x & 0xf0f0f0f0f0f0f0f0ULL) << 2;
	n += !!(x & 0xccccccccccccccccULL) << 1;
	n += !!(x & 0xaaaaaaaaaaaaaaaaULL);
	return n;
}

/*
 * Evaluate the rules of one direction (or of HOST: dir is the rule set).  Returns RAYOS_RSN_PASS_RULE /
 * DROP_RULE with *rule set, or PASS_DEFAULT / DROP_DEFAULT with *rule =
 * RAYOS_EV_RULE_NONE.  Every map miss narrows towards the default action,
 * which is the policy's own answer for "no rule says", so misses neither
 * open nor close anything the policy did not ask for.
 */
static __always_inline int fw_eval(__u32 vm_id, const struct rayos_vm *vm, __u8 dir,
				   const struct rayos_pkt *p, __u8 *rule)
{
	const struct rayos_dir_policy *dp = fw_set(vm, dir);
	const struct rayos_fw_tab *tab = NULL;
	__u64 match;
	__u32 r;

	*rule = RAYOS_EV_RULE_NONE;
	if (!dp->nr_rules)	/* nothing to look up */
		return dp->default_action == RAYOS_ACT_ALLOW ? RAYOS_RSN_PASS_DEFAULT
							     : RAYOS_RSN_DROP_DEFAULT;
	/* A missing table (never written: the agent writes it before the
	 * record that points at it) reads as "no entries" for its dimensions,
	 * like a miss in their tries: the default action decides. */
	if (dp->flags & RAYOS_DIRF_TABS) {
		struct rayos_fw_tab_key tk = { .vm_id = vm_id, .gen = vm->gen, .dir = dir };

		tab = bpf_map_lookup_elem(&rayos_fw_tab, &tk);
	}
	match = fw_port_bits(vm_id, vm, dir, p, tab);
	/* Skip the LPM walk when it cannot change the answer: no candidate
	 * rule, or the first candidate has no CIDR (it matches every address,
	 * and only the lowest surviving bit decides). */
	if (match && !(match & -match & dp->cidr_wild_bits))
		match &= fw_cidr_bits(vm_id, vm, dir, p, tab);
	/* The CAP_NETWORK port limit's denies sit above the policy's rules
	 * and win over them (bpf/abi/policy.h): firewall ∩ limit.  Their
	 * drops are no rule's: the reason says it. */
	if (dp->cap_rules && (match & (~0ULL << ((dp->nr_rules - dp->cap_rules) & 63))))
		return RAYOS_RSN_CAP_PORTS;
	if (!match)
		return dp->default_action == RAYOS_ACT_ALLOW ? RAYOS_RSN_PASS_DEFAULT
							     : RAYOS_RSN_DROP_DEFAULT;
	r = lowest_bit(match);
	*rule = r;
	return (dp->allow_bits >> r) & 1 ? RAYOS_RSN_PASS_RULE : RAYOS_RSN_DROP_RULE;
}

#endif /* RAYOS_FW_BPF_H */
