/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Anti-spoofing and link-control classification.  From the guest: the frame
 * must carry the VM's MAC, IP sources must be the VM's bound addresses (and
 * its own link-local ones), ARP and ND must not claim anyone else's address,
 * a DHCP client message must name the VM's MAC, and a guest may not act as a
 * DHCP server or IPv6 router.  Link control (ARP, ND, MLD, DHCP) that passes
 * these checks bypasses the firewall, because the VM cannot work without
 * it, but each kind is held to a per-VM packet rate.
 */
#ifndef RAYOS_SPOOF_BPF_H
#define RAYOS_SPOOF_BPF_H

#include "maps.bpf.h"
#include "parse.bpf.h"
#include "rate.bpf.h"
#include "host.bpf.h"

/* "No verdict yet: continue with the firewall." */
#define RAYOS_RSN_CONTINUE	0xff

#define RAYOS_DHCP_SERVER_PORT	67
#define RAYOS_DHCP_CLIENT_PORT	68
#define RAYOS_DHCP6_CLIENT_PORT	546
#define RAYOS_DHCP6_SERVER_PORT	547

#define RAYOS_ICMP6_MLD_QUERY	130
#define RAYOS_ICMP6_MLD_REPORT	131
#define RAYOS_ICMP6_MLD_DONE	132
#define RAYOS_ICMP6_RS		133
#define RAYOS_ICMP6_RA		134
#define RAYOS_ICMP6_NS		135
#define RAYOS_ICMP6_NA		136
#define RAYOS_ICMP6_REDIRECT	137
#define RAYOS_ICMP6_MLD2_REPORT	143
#define RAYOS_ND_OPT_SLLA	1
#define RAYOS_ND_OPT_TLLA	2
#define RAYOS_ND_MAX_OPTS	4

/* BOOTP header (RFC 2131 2): op, htype, hlen at 0..2, chaddr at 28. */
#define RAYOS_BOOTREQUEST	1
#define RAYOS_BOOTP_HTYPE_ETH	1
#define RAYOS_BOOTP_CHADDR_OFF	28

/* What the guest may use as addresses right now.  Scalars only, so it can
 * be handed to a global BPF subprogram. */
struct rayos_owner {
	__u32 ipv4_be;
	__u32 ipv6[4];
	__u8  vm_flags;		/* rayos_vm.flags */
	__u8  mac[6];
	__u8  bound4;		/* ipv4_be valid: bound and lease not expired */
	__u8  bound6;
	__u8  pad[3];
};

/*
 * Fill o from the VM's record and binding (both from its rayos_ifaces
 * entry).  No binding or an expired lease leaves the VM unbound, which is
 * the restrictive state (fail closed): only DHCP, ARP probes and IPv6
 * link-local work until the agent binds an address.
 */
static __always_inline void owner_load(struct rayos_owner *o, const struct rayos_vm *vm,
				       const struct rayos_ip_bind *b)
{
	o->vm_flags = vm->flags;
	__builtin_memcpy(o->mac, vm->mac, 6);
	o->bound4 = false;
	o->bound6 = false;
	/* lease_expiry_ns is CLOCK_BOOTTIME (ABI); read it only if needed. */
	if (b->lease_expiry_ns && b->lease_expiry_ns <= bpf_ktime_get_boot_ns())
		return;
	if (b->flags & RAYOS_BINDF_IPV4) {
		o->bound4 = true;
		o->ipv4_be = b->ipv4_be;
	}
	if (b->flags & RAYOS_BINDF_IPV6) {
		o->bound6 = true;
		__builtin_memcpy(o->ipv6, b->ipv6, 16);
	}
}

static __always_inline bool mac_eq(const __u8 *a, const __u8 *b)
{
	return !((a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) |
		 (a[3] ^ b[3]) | (a[4] ^ b[4]) | (a[5] ^ b[5]));
}

static __always_inline bool ip6_eq(const __u32 *a, const __u32 *b)
{
	return !((a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3]));
}

static __always_inline bool ip6_is_unspec(const __u32 *a)
{
	return !(a[0] | a[1] | a[2] | a[3]);
}

static __always_inline bool ip6_is_linklocal(const __u32 *a)
{
	return (a[0] & bpf_htonl(0xffc00000)) == bpf_htonl(0xfe800000);
}

static __always_inline bool ll6_listed(const struct rayos_vm *vm, const __u32 *addr)
{
	int i;

	for (i = 0; i < RAYOS_LL6_MAX; i++) {
		const __u32 *l = (const __u32 *)vm->ll6[i];

		if (!ip6_is_unspec(l) && ip6_eq(addr, l))
			return true;
	}
	return false;
}

/*
 * Is the link-local addr one of the VM's?  The EUI-64 address derived from
 * its MAC, or one the policy lists (guests with stable-privacy addresses,
 * RFC 7217), as OVN's port security does.  Without an enforced MAC there is
 * nothing to derive it from, and any link-local address is accepted (the VM
 * is not MAC-locked either).
 */
static __always_inline bool ll6_is_own(const struct rayos_owner *o, const struct rayos_vm *vm,
				       const __u32 *addr)
{
	__u8 ll[16] = { 0xfe, 0x80 };

	if (!(o->vm_flags & RAYOS_VMF_MAC))
		return true;
	ll[8] = o->mac[0] ^ 0x02;
	ll[9] = o->mac[1];
	ll[10] = o->mac[2];
	ll[11] = 0xff;
	ll[12] = 0xfe;
	ll[13] = o->mac[3];
	ll[14] = o->mac[4];
	ll[15] = o->mac[5];
	return ip6_eq(addr, (const __u32 *)ll) || ll6_listed(vm, addr);
}

/* Is addr one of the VM's own IPv6 addresses: its bound global address or
 * one of its link-local ones? */
static __always_inline bool ip6_is_own(const struct rayos_owner *o, const struct rayos_vm *vm,
				       const __u32 *addr)
{
	if (ip6_is_linklocal(addr))
		return ll6_is_own(o, vm, addr);
	return o->bound6 && ip6_eq(addr, o->ipv6);
}

/* Guest ARP: sender MAC is the VM's; sender IP is its bound address, or
 * 0.0.0.0 in a request (RFC 5227 probe). */
static __always_inline int arp_from_vm(const struct rayos_owner *o, const struct rayos_vm *vm,
				       const struct rayos_pkt *p, void *data, void *data_end)
{
	struct arphdr *ah = pkt_ptr(data, data_end, p->l3_off,
				    sizeof(*ah) + sizeof(struct rayos_arp_eth));
	struct rayos_arp_eth *body;
	__u32 spa;

	if (!ah)
		return RAYOS_RSN_MALFORMED;
	body = (void *)(ah + 1);
	if (ah->ar_op != bpf_htons(1) && ah->ar_op != bpf_htons(2))
		return RAYOS_RSN_MALFORMED;
	if ((o->vm_flags & RAYOS_VMF_MAC) && !mac_eq(body->sha, o->mac))
		return RAYOS_RSN_SPOOF_ARP;
	__builtin_memcpy(&spa, body->spa, 4);
	if (spa == 0 ? ah->ar_op != bpf_htons(1) : !o->bound4 || spa != o->ipv4_be)
		return RAYOS_RSN_SPOOF_ARP;
	/* Every ARP frame is flooded to every port of the bridge. */
	return ctl_admit(vm, RAYOS_CTL_ARP) ? RAYOS_RSN_PASS_CTRL : RAYOS_RSN_ARP_RATE;
}

/*
 * A DHCPv4 client message must be a whole, unfragmented BOOTREQUEST whose
 * hardware address is the frame's source MAC (the VM's, when the VM is
 * MAC-locked).  The server keys nothing on it any more (it knows the VM
 * from the tap, RAYOS_DHCP_MARK_TAG), but other servers and relays on the
 * bridge do, and a guest has no reason to speak for another MAC.
 */
static __always_inline int dhcp4_client_check(const struct rayos_pkt *p, const __u8 *smac,
					      void *data, void *data_end)
{
	__u8 *b;

	if (p->frag != RAYOS_FRAG_NONE)
		return RAYOS_RSN_DHCP_CHADDR;
	b = pkt_ptr(data, data_end, p->l4_off + 8, RAYOS_BOOTP_CHADDR_OFF + RAYOS_ETH_ALEN);
	if (!b || b[0] != RAYOS_BOOTREQUEST || b[1] != RAYOS_BOOTP_HTYPE_ETH ||
	    b[2] != RAYOS_ETH_ALEN || !mac_eq(b + RAYOS_BOOTP_CHADDR_OFF, smac))
		return RAYOS_RSN_DHCP_CHADDR;
	return RAYOS_RSN_PASS_CTRL;
}

static __always_inline int ipv4_from_vm(const struct rayos_owner *o, const struct rayos_vm *vm,
					const struct rayos_pkt *p, const __u8 *smac,
					void *data, void *data_end)
{
	bool dhcp_client = false;

	if (p->proto == IPPROTO_UDP && p->has_ports) {
		/* A guest is never a DHCP server or relay answering clients. */
		if (p->sport == RAYOS_DHCP_SERVER_PORT || p->dport == RAYOS_DHCP_CLIENT_PORT)
			return RAYOS_RSN_ROGUE_DHCP;
		dhcp_client = p->sport == RAYOS_DHCP_CLIENT_PORT &&
			      p->dport == RAYOS_DHCP_SERVER_PORT;
	}
	if (!dhcp_client) {
		if (!o->bound4)
			return RAYOS_RSN_UNBOUND;
		return p->saddr[0] == o->ipv4_be ? RAYOS_RSN_CONTINUE : RAYOS_RSN_SPOOF_IP;
	}
	/* DHCP: from the bound address, or from 0.0.0.0 while re-acquiring;
	 * unbound (or the lease expired), from any source, e.g. a REBIND from
	 * the address whose lease just ran out. */
	if (o->bound4 && p->saddr[0] != o->ipv4_be && p->saddr[0] != 0)
		return RAYOS_RSN_SPOOF_IP;
	if (dhcp4_client_check(p, smac, data, data_end) != RAYOS_RSN_PASS_CTRL)
		return RAYOS_RSN_DHCP_CHADDR;
	if (!ctl_admit(vm, RAYOS_CTL_DHCP))
		return RAYOS_RSN_DHCP_RATE;
	/* Outside the firewall only toward a server on this link: broadcast,
	 * or unicast to the host (the agent).  Elsewhere ports 68 -> 67 are
	 * no pass: a unicast renewal to another server meets the rules. */
	return dst_is_host(p) ? RAYOS_RSN_PASS_CTRL : RAYOS_RSN_CONTINUE;
}

/* NS/NA link-layer address options must name the VM's MAC. */
static __always_inline int nd_opts_check(const struct rayos_owner *o, void *opt,
					 void *data_end, __u8 want_type)
{
	int i;

	for (i = 0; i < RAYOS_ND_MAX_OPTS; i++) {
		__u8 *h = opt;
		__u32 len;

		if ((void *)(h + 2) > data_end)
			return RAYOS_RSN_CONTINUE;	/* no more options */
		len = h[1] * 8;
		if (!len)
			return RAYOS_RSN_MALFORMED;	/* RFC 4861 4.6 */
		if (h[0] == want_type && (o->vm_flags & RAYOS_VMF_MAC)) {
			if ((void *)(h + 2 + RAYOS_ETH_ALEN) > data_end)
				return RAYOS_RSN_MALFORMED;
			if (!mac_eq(h + 2, o->mac))
				return RAYOS_RSN_SPOOF_ND;
		}
		opt += len;
	}
	return RAYOS_RSN_CONTINUE;
}

/*
 * Guest ICMPv6 that IPv6 needs to work (RS, NS, NA, MLD): checked for
 * spoofing and passed without the firewall.  RA and Redirect from a guest
 * are dropped: a VM is never this link's router.  Other types return
 * CONTINUE and meet the firewall.
 */
static __always_inline int icmp6_from_vm(const struct rayos_owner *o, const struct rayos_vm *vm,
					 const struct rayos_pkt *p, void *data, void *data_end,
					 bool src_unspec)
{
	__u8 type = p->dport;
	__u32 target[4];
	__u8 *body;
	int rsn;

	switch (type) {
	case RAYOS_ICMP6_RA:
	case RAYOS_ICMP6_REDIRECT:
		return RAYOS_RSN_ROGUE_RA;
	case RAYOS_ICMP6_RS:
	case RAYOS_ICMP6_MLD_REPORT:
	case RAYOS_ICMP6_MLD2_REPORT:
	case RAYOS_ICMP6_MLD_QUERY:
	case RAYOS_ICMP6_MLD_DONE:
		/* :: is valid for RS and reports sent during DAD (RFC 3590). */
		if (src_unspec && (type == RAYOS_ICMP6_MLD_QUERY || type == RAYOS_ICMP6_MLD_DONE))
			return RAYOS_RSN_SPOOF_IP;
		if (p->frag != RAYOS_FRAG_NONE)
			return RAYOS_RSN_MALFORMED;
		return ctl_admit(vm, RAYOS_CTL_ND) ? RAYOS_RSN_PASS_CTRL : RAYOS_RSN_ND_RATE;
	case RAYOS_ICMP6_NS:
	case RAYOS_ICMP6_NA:
		break;
	default:
		return src_unspec ? RAYOS_RSN_SPOOF_IP : RAYOS_RSN_CONTINUE;
	}

	/* ND must not be fragmented (RFC 6980), so the whole message is here. */
	if (p->frag != RAYOS_FRAG_NONE || !p->l4_off)
		return RAYOS_RSN_MALFORMED;
	body = pkt_ptr(data, data_end, p->l4_off, 24);
	if (!body)
		return RAYOS_RSN_MALFORMED;
	__builtin_memcpy(target, body + 8, 16);

	if (type == RAYOS_ICMP6_NS) {
		/* An NS resolves someone else's address (any target), except
		 * in DAD (source ::), where the target is the address the guest
		 * is about to claim. */
		if (src_unspec && !ip6_is_own(o, vm, target))
			return RAYOS_RSN_SPOOF_ND;
		rsn = nd_opts_check(o, body + 24, data_end, RAYOS_ND_OPT_SLLA);
	} else {
		/* An NA claims its target: it must be the VM's. */
		if (src_unspec || !ip6_is_own(o, vm, target))
			return RAYOS_RSN_SPOOF_ND;
		rsn = nd_opts_check(o, body + 24, data_end, RAYOS_ND_OPT_TLLA);
	}
	if (rsn != RAYOS_RSN_CONTINUE)
		return rsn;
	return ctl_admit(vm, RAYOS_CTL_ND) ? RAYOS_RSN_PASS_CTRL : RAYOS_RSN_ND_RATE;
}

static __always_inline int ipv6_from_vm(const struct rayos_owner *o, const struct rayos_vm *vm,
					const struct rayos_pkt *p, void *data, void *data_end)
{
	bool unspec = ip6_is_unspec(p->saddr);
	bool dhcp_client = false;

	if (p->proto == IPPROTO_UDP && p->has_ports) {
		if (p->sport == RAYOS_DHCP6_SERVER_PORT || p->dport == RAYOS_DHCP6_CLIENT_PORT)
			return RAYOS_RSN_ROGUE_DHCP;
		dhcp_client = p->sport == RAYOS_DHCP6_CLIENT_PORT &&
			      p->dport == RAYOS_DHCP6_SERVER_PORT;
	}
	/* Every source is the VM's own: its bound global address, its EUI-64
	 * link-local address or one the policy lists.  ND is no exception:
	 * an NS from the router's link-local address would poison the
	 * neighbour caches of everyone who answers it. */
	if (!unspec && !ip6_is_own(o, vm, p->saddr))
		return RAYOS_RSN_SPOOF_IP;
	if (p->proto == RAYOS_IPPROTO_ICMPV6 && p->has_ports) {
		int rsn = icmp6_from_vm(o, vm, p, data, data_end, unspec);

		if (rsn != RAYOS_RSN_CONTINUE)
			return rsn;
	}
	if (unspec)
		return RAYOS_RSN_SPOOF_IP;	/* :: outside DAD, RS and MLD */
	if (!dhcp_client)
		return RAYOS_RSN_CONTINUE;
	if (!ctl_admit(vm, RAYOS_CTL_DHCP))
		return RAYOS_RSN_DHCP_RATE;
	/* As for DHCPv4: outside the firewall only to the link's servers
	 * (ff02::1:2 and the host). */
	return dst_is_host(p) ? RAYOS_RSN_PASS_CTRL : RAYOS_RSN_CONTINUE;
}

/*
 * Everything the guest sends passes here first.  Returns a verdict reason,
 * or RAYOS_RSN_CONTINUE for IP traffic the firewall decides.
 */
static __always_inline int spoof_from_vm(const struct rayos_owner *o, const struct rayos_vm *vm,
					 const struct rayos_pkt *p, void *data, void *data_end)
{
	struct ethhdr *eth = pkt_ptr(data, data_end, 0, sizeof(*eth));

	if (!eth)
		return RAYOS_RSN_MALFORMED;
	if ((o->vm_flags & RAYOS_VMF_MAC) && !mac_eq(eth->h_source, o->mac))
		return RAYOS_RSN_SPOOF_MAC;

	switch (p->eth_proto_be) {
	case bpf_htons(RAYOS_ETH_P_ARP):
		return arp_from_vm(o, vm, p, data, data_end);
	case bpf_htons(RAYOS_ETH_P_IP):
		return ipv4_from_vm(o, vm, p, eth->h_source, data, data_end);
	case bpf_htons(RAYOS_ETH_P_IPV6):
		return ipv6_from_vm(o, vm, p, data, data_end);
	default:
		/* Nothing else can be checked for spoofing, and a VM needs
		 * nothing else (LLDP, STP, EAPOL, MPLS, PPPoE...). */
		return RAYOS_RSN_ETHERTYPE;
	}
}

/*
 * Host -> guest link control that bypasses the firewall: ARP, ND/MLD and
 * DHCP server replies.  (A rogue server on the bridge is stopped at its own
 * VM's tap; the host side is trusted.)
 */
static __always_inline int ctrl_to_vm(const struct rayos_pkt *p)
{
	if (p->eth_proto_be == bpf_htons(RAYOS_ETH_P_ARP))
		return RAYOS_RSN_PASS_CTRL;
	if (!p->has_ports)
		return RAYOS_RSN_CONTINUE;
	if (p->family == RAYOS_AF_INET && p->proto == IPPROTO_UDP &&
	    p->sport == RAYOS_DHCP_SERVER_PORT && p->dport == RAYOS_DHCP_CLIENT_PORT)
		return RAYOS_RSN_PASS_CTRL;
	if (p->family == RAYOS_AF_INET6 && p->proto == IPPROTO_UDP &&
	    p->sport == RAYOS_DHCP6_SERVER_PORT && p->dport == RAYOS_DHCP6_CLIENT_PORT)
		return RAYOS_RSN_PASS_CTRL;
	if (p->family == RAYOS_AF_INET6 && p->proto == RAYOS_IPPROTO_ICMPV6) {
		switch (p->dport) {
		case RAYOS_ICMP6_MLD_QUERY ... RAYOS_ICMP6_REDIRECT:
		case RAYOS_ICMP6_MLD2_REPORT:
			return RAYOS_RSN_PASS_CTRL;
		}
	}
	return RAYOS_RSN_CONTINUE;
}

#endif /* RAYOS_SPOOF_BPF_H */
