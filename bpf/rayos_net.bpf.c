// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Per-VM network enforcement on the VM's tap: anti-spoofing, DHCP/RA
 * hygiene, link-control rate limits, host protection, firewall with flow
 * tracking, byte-rate limiting, counters and drop events.  Two thin tc
 * entry points; the logic lives in bpf/include.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "maps.bpf.h"
#include "parse.bpf.h"
#include "stats.bpf.h"
#include "spoof.bpf.h"
#include "host.bpf.h"
#include "fw.bpf.h"
#include "ct.bpf.h"
#include "rate.bpf.h"
#include "caps.bpf.h"

#define TC_ACT_OK	0
#define TC_ACT_SHOT	2

/* Linear bytes to pull when headers lie beyond the skb's linear part. */
#define RAYOS_PULL_LEN	256

/*
 * The three heavy steps are global subprograms: the verifier checks each
 * once, on its own, instead of once per path through everything before it
 * (inlined, the combination of parser paths and judge paths exceeded the
 * verifier's one-million-instruction budget).  They exchange only scalars
 * and structs of scalars.
 */

/* Parse the frame into *p; 0 or RAYOS_RSN_MALFORMED. */
__noinline int rayos_parse_skb(struct __sk_buff *skb, struct rayos_pkt *p)
{
	int rsn;

	if (!skb || !p)
		return RAYOS_RSN_MALFORMED;
	__builtin_memset(p, 0, sizeof(*p));
	rsn = rayos_parse((void *)(long)skb->data, (void *)(long)skb->data_end, p);
	if (rsn && skb->len > skb->data_end - skb->data) {
		/* Headers may sit in paged data (GSO, zero-copy): linearise a
		 * bounded prefix and parse again. */
		bpf_skb_pull_data(skb, skb->len < RAYOS_PULL_LEN ? skb->len : RAYOS_PULL_LEN);
		__builtin_memset(p, 0, sizeof(*p));
		rsn = rayos_parse((void *)(long)skb->data, (void *)(long)skb->data_end, p);
	}
	return rsn;
}

/*
 * Anti-spoofing of guest frames: a reason, or RAYOS_RSN_CONTINUE.  A DHCPv4
 * client message that passes is stamped with its VM's slot
 * (RAYOS_DHCP_MARK_TAG) for the agent's DHCP server.
 */
__noinline int rayos_spoof_out(struct __sk_buff *skb, const struct rayos_owner *o,
			       const struct rayos_vm *vm, const struct rayos_pkt *p)
{
	int rsn;

	if (!skb || !o || !vm || !p)
		return RAYOS_RSN_MALFORMED;
	rsn = spoof_from_vm(o, vm, p, (void *)(long)skb->data, (void *)(long)skb->data_end);
	if (rsn == RAYOS_RSN_PASS_CTRL && p->family == RAYOS_AF_INET &&
	    p->proto == IPPROTO_UDP && p->dport == RAYOS_DHCP_SERVER_PORT)
		skb->mark = RAYOS_DHCP_MARK_TAG | (vm->slot & ~RAYOS_DHCP_MARK_MASK);
	return rsn;
}

/* Firewall verdict of rule set `set` (a direction or RAYOS_FW_HOST): reason
 * in the low byte, rule number in the next. */
__noinline int rayos_fw_eval(__u32 vm_id, const struct rayos_vm *vm, __u32 set,
			     const struct rayos_pkt *p)
{
	__u8 rule = RAYOS_EV_RULE_NONE;
	int rsn;

	if (!vm || !p)
		return RAYOS_RSN_DROP_DEFAULT | RAYOS_EV_RULE_NONE << 8;
	rsn = fw_eval(vm_id, vm, set == RAYOS_FW_HOST ? RAYOS_FW_HOST : set & 1, p, &rule);
	return rsn | rule << 8;
}

/* An ICMP error about a tracked flow of the VM: enum rayos_related. */
__noinline int rayos_icmp_related(struct __sk_buff *skb, const struct rayos_vm *vm, __u32 dir,
				  const struct rayos_pkt *p, __u64 now)
{
	if (!skb || !vm || !p)
		return RAYOS_REL_NO;
	return ct_related((void *)(long)skb->data, (void *)(long)skb->data_end, vm, dir & 1, p,
			  now, skb->len - p->l3_off);
}

/*
 * Decide a parsed packet of a known VM.  Returns an enum rayos_reason; *rule
 * is the deciding rule or RAYOS_EV_RULE_NONE.
 */
static __always_inline int judge(struct __sk_buff *skb, const struct rayos_iface *iface,
				 __u8 dir, struct rayos_pkt *p, __u64 now, __u8 *rule)
{
	const struct rayos_vm *vm = &iface->vm;
	__u32 vm_id = iface->vm_id;
	const struct rayos_dir_policy *dp = &vm->dir[dir & 1];
	struct rayos_ct_ref ck;
	bool tracked;
	int rsn;

	/* A VM sits on an access port: neither it nor its peers tag frames,
	 * and a tag would put it in a VLAN the policy never saw.  Tags arrive
	 * in the skb (ingress untagging, egress offload) or in-band. */
	if (skb->vlan_present || p->nr_vlans)
		return RAYOS_RSN_VLAN;

	if (dir == RAYOS_DIR_OUT) {
		struct rayos_owner o;

		owner_load(&o, vm, &iface->bind);
		rsn = rayos_spoof_out(skb, &o, vm, p);
	} else {
		rsn = ctrl_to_vm(p);
	}
	if (rsn != RAYOS_RSN_CONTINUE)
		return rsn;

	/* To the VM, EtherTypes the firewall cannot look into get the
	 * direction's default action (from the VM they were dropped above). */
	if (!p->family)
		return dp->default_action == RAYOS_ACT_ALLOW ? RAYOS_RSN_PASS_DEFAULT
							     : RAYOS_RSN_DROP_DEFAULT;

	frag_track(vm_id, dir, p, now);
	tracked = ct_key_build(&ck, vm->slot, dir, p);
	if (tracked && !tcp_syn_only(p) && ct_pass(&ck, vm, dir, p, now))
		return RAYOS_RSN_PASS_FLOW;
	/* Like conntrack's RELATED: without it a VM whose inbound default is
	 * deny never hears "fragmentation needed" and PMTU discovery stalls. */
	if (!tracked && icmp_is_error(p)) {
		rsn = rayos_icmp_related(skb, vm, dir, p, now);
		if (rsn == RAYOS_REL_YES)
			return RAYOS_RSN_PASS_RELATED;
		if (rsn == RAYOS_REL_LONG)
			return RAYOS_RSN_ICMP_QUOTE;
	}

	/* To the host itself: the HOST rules first (default deny), then the
	 * OUT rules like any packet.  Only new flows get here. */
	if (dir == RAYOS_DIR_OUT && !host_open(vm) && dst_is_host(p)) {
		rsn = rayos_fw_eval(vm_id, vm, RAYOS_FW_HOST, p) & 0xff;
		if (rsn >= RAYOS_RSN_DROP)
			return RAYOS_RSN_HOST;
	}

	rsn = rayos_fw_eval(vm_id, vm, dir, p);
	*rule = rsn >> 8;
	rsn &= 0xff;
	if (tracked && rsn < RAYOS_RSN_DROP)
		ct_open(&ck, vm, dir, p, now);
	return rsn;
}

static __always_inline bool shaped(const struct rayos_iface *iface, __u8 dir)
{
	return dir == RAYOS_DIR_OUT ? iface->shaper_ifindex != 0
				    : (iface->flags & RAYOS_IFF_SHAPED_IN) != 0;
}

/*
 * Fail open or closed:
 *  - ifindex not in rayos_ifaces: PASS.  The agent writes the iface entry
 *    before it attaches and detaches before it deletes, so a miss is a tap
 *    being torn down or one the agent does not manage; dropping there could
 *    cut off an interface RayOS has no policy for.
 *  - iface known but its VM has no record (no RAYOS_IFF_VM): DROP.  The
 *    tap belongs to a VM whose policy is being re-registered; isolating that
 *    one VM briefly is safe (nothing else crosses its tap) while passing
 *    would run it without any policy.
 *  - a quarantined record (RAYOS_VMF_QUARANTINE: the VM lost its policy
 *    while it runs): DROP everything, ARP and DHCP included, before any
 *    flow or rule lookup, so that no flow opened under the old policy
 *    survives it.
 *  - a record without CAP_NETWORK: DROP everything both ways, also before
 *    any flow lookup, so that a revoke ends flows already open with the
 *    next packet (the revoke rewrites the record and its copy here).
 *  - every later lookup: see the helper that does it.
 */
static __always_inline int rayos_tc(struct __sk_buff *skb, __u8 dir)
{
	__u32 ifindex = skb->ifindex, len = skb->len;
	struct rayos_pkt p;	/* rayos_parse_skb() zeroes it */
	const struct rayos_iface *iface;
	const struct rayos_vm *vm;
	__u8 rule = RAYOS_EV_RULE_NONE;
	__u64 now;
	int rsn;

	iface = bpf_map_lookup_elem(&rayos_ifaces, &ifindex);
	if (!iface) {
		net_count(RAYOS_NETC_NO_IFACE);
		return TC_ACT_OK;
	}
	if (!(iface->flags & RAYOS_IFF_VM)) {
		net_count(RAYOS_NETC_NO_VM);
		return TC_ACT_SHOT;
	}
	vm = &iface->vm;
	now = rayos_now();

	rsn = rayos_parse_skb(skb, &p);
	if (!rsn)
		rsn = vm->flags & RAYOS_VMF_QUARANTINE ? RAYOS_RSN_QUARANTINE
		    : !rayos_vm_has_cap(vm, RAYOS_CAP_NETWORK) ? RAYOS_RSN_NO_CAP_NETWORK
		    : judge(skb, iface, dir, &p, now, &rule);

	/* The byte budget is spent only by packets that would pass, and only
	 * where no qdisc shapes the direction (a queue beats a policer). */
	if (rsn < RAYOS_RSN_DROP && !shaped(iface, dir) &&
	    !tbf_admit(vm->slot, dir, &vm->dir[dir & 1], len))
		rsn = RAYOS_RSN_RATE;

	vm_count(vm->slot, dir, rsn, len);
	if (rule != RAYOS_EV_RULE_NONE)
		rule_count(vm->slot, dir, rule, len);
	if (rsn < RAYOS_RSN_DROP) {
		/* Guest->host shaping: the ifb's tbf queues the frame, then ifb
		 * re-injects it here marked to skip tc, so it is judged once. */
		if (dir == RAYOS_DIR_OUT && iface->shaper_ifindex)
			return bpf_redirect(iface->shaper_ifindex, 0);
		return TC_ACT_OK;
	}
	emit_drop_event(vm->slot, iface->vm_id, dir, rsn, rule, &p, len, now);
	return TC_ACT_SHOT;
}

/* tc ingress of the tap: frames the guest sends. */
SEC("tc")
int rayos_from_vm(struct __sk_buff *skb)
{
	return rayos_tc(skb, RAYOS_DIR_OUT);
}

/* tc egress of the tap: frames delivered to the guest. */
SEC("tc")
int rayos_to_vm(struct __sk_buff *skb)
{
	return rayos_tc(skb, RAYOS_DIR_IN);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
