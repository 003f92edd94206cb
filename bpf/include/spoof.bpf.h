/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Anti-spoofing and link-control classification.  From the guest: the frame
 * must carry the VM's MAC, IP sources must be the VM's bound addresses, ARP
 * and ND must not claim anyone else's address, and a guest may not act as a
 * DHCP server or IPv6 router.  Link control (ARP, ND, MLD, DHCP) that passes
 * these checks bypasses the firewall, because the VM cannot work without it.
 */
#ifndef RAYOS_SPOOF_BPF_H
#define RAYOS_SPOOF_BPF_H

#include "maps.bpf.h"
#include "parse.bpf.h"

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

/*
 * Is addr one of the VM's own IPv6 addresses?  Its bound address, or the
 * EUI-64 link-local address derived from its MAC.  Guests must therefore use
 * EUI-64 link-local addresses (addr_gen_mode eui64) to answer ND for them.
 * Without an enforced MAC there is nothing to derive it from, and any
 * link-local address is accepted (the VM is not MAC-locked either).
 */
static __always_inline bool ip6_is_own(const struct rayos_owner *o, const __u32 *addr)
{
	__u8 ll[16] = { 0xfe, 0x80 };

	if (o->bound6 && ip6_eq(addr, o->ipv6))
		return true;
	if (!(o->vm_flags & RAYOS_VMF_MAC))
		return ip6_is_linklocal(addr);
	ll[8] = o->mac[0] ^ 0x02;
	ll[9] = o->mac[1];
	ll[10] = o->mac[2];
	ll[11] = 0xff;
	ll[12] = 0xfe;
	ll[13] = o->mac[3];
	ll[14] = o->mac[4];
	ll[15] = o->mac[5];
	return ip6_eq(addr, (const __u32 *)ll);
}

/* Guest ARP: sender MAC is the VM's; sender IP is its bound address, or
 * 0.0.0.0 in a request (RFC 5227 probe). */
static __always_inline int arp_from_vm(const struct rayos_owner *o, const struct rayos_pkt *p,
				       void *data, void *data_end)
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
	if (spa == 0)
		return ah->ar_op == bpf_htons(1) ? RAYOS_RSN_PASS_CTRL : RAYOS_RSN_SPOOF_ARP;
	if (!o->bound4 || spa != o->ipv4_be)
		return RAYOS_RSN_SPOOF_ARP;
	return RAYOS_RSN_PASS_CTRL;
}

static __always_inline int ipv4_from_vm(const struct rayos_owner *o, const struct rayos_pkt *p)
{
	bool dhcp_client = false;

	if (p->proto == IPPROTO_UDP && p->has_ports) {
		/* A guest is never a DHCP server or relay answering clients. */
		if (p->sport == RAYOS_DHCP_SERVER_PORT || p->dport == RAYOS_DHCP_CLIENT_PORT)
			return RAYOS_RSN_ROGUE_DHCP;
		dhcp_client = p->sport == RAYOS_DHCP_CLIENT_PORT &&
			      p->dport == RAYOS_DHCP_SERVER_PORT;
	}
	if (o->bound4) {
		if (p->saddr[0] == o->ipv4_be)
			return dhcp_client ? RAYOS_RSN_PASS_CTRL : RAYOS_RSN_CONTINUE;
		/* DISCOVER/REQUEST from 0.0.0.0 while re-acquiring. */
		if (dhcp_client && p->saddr[0] == 0)
			return RAYOS_RSN_PASS_CTRL;
		return RAYOS_RSN_SPOOF_IP;
	}
	/* Unbound (or lease expired): DHCP from any source, e.g. a REBIND
	 * from the address whose lease just ran out, and nothing else. */
	return dhcp_client ? RAYOS_RSN_PASS_CTRL : RAYOS_RSN_UNBOUND;
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
static __always_inline int icmp6_from_vm(const struct rayos_owner *o, const struct rayos_pkt *p,
					 void *data, void *data_end, bool src_unspec)
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
		return p->frag != RAYOS_FRAG_NONE ? RAYOS_RSN_MALFORMED : RAYOS_RSN_PASS_CTRL;
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
		if (src_unspec && !ip6_is_own(o, target))
			return RAYOS_RSN_SPOOF_ND;
		rsn = nd_opts_check(o, body + 24, data_end, RAYOS_ND_OPT_SLLA);
	} else {
		/* An NA claims its target: it must be the VM's. */
		if (src_unspec || !ip6_is_own(o, target))
			return RAYOS_RSN_SPOOF_ND;
		rsn = nd_opts_check(o, body + 24, data_end, RAYOS_ND_OPT_TLLA);
	}
	return rsn == RAYOS_RSN_CONTINUE ? RAYOS_RSN_PASS_CTRL : rsn;
}

static __always_inline int ipv6_from_vm(const struct rayos_owner *o, const struct rayos_pkt *p,
					void *data, void *data_end)
{
	bool unspec = ip6_is_unspec(p->saddr);
	bool dhcp_client = false;

	if (p->proto == IPPROTO_UDP && p->has_ports) {
		if (p->sport == RAYOS_DHCP6_SERVER_PORT || p->dport == RAYOS_DHCP6_CLIENT_PORT)
			return RAYOS_RSN_ROGUE_DHCP;
		dhcp_client = p->sport == RAYOS_DHCP6_CLIENT_PORT &&
			      p->dport == RAYOS_DHCP6_SERVER_PORT;
	}
	if (p->proto == RAYOS_IPPROTO_ICMPV6 && p->has_ports) {
		int rsn = icmp6_from_vm(o, p, data, data_end, unspec);

		if (rsn != RAYOS_RSN_CONTINUE)
			return rsn;
	}
	/* Link-local sources are not pinned to the EUI-64 address so that
	 * stable-privacy link-local guests keep working; ND above is what
	 * stops a guest from taking over another host's address. */
	if (ip6_is_linklocal(p->saddr))
		return dhcp_client ? RAYOS_RSN_PASS_CTRL : RAYOS_RSN_CONTINUE;
	if (o->bound6 && ip6_eq(p->saddr, o->ipv6))
		return dhcp_client ? RAYOS_RSN_PASS_CTRL : RAYOS_RSN_CONTINUE;
	return RAYOS_RSN_SPOOF_IP;
}

/*
 * Everything the guest sends passes here first.  Returns a verdict reason,
 * or RAYOS_RSN_CONTINUE for IP traffic the firewall decides.
 */
static __always_inline int spoof_from_vm(const struct rayos_owner *o, const struct rayos_pkt *p,
					 void *data, void *data_end)
{
	struct ethhdr *eth = pkt_ptr(data, data_end, 0, sizeof(*eth));

	if (!eth)
		return RAYOS_RSN_MALFORMED;
	if ((o->vm_flags & RAYOS_VMF_MAC) && !mac_eq(eth->h_source, o->mac))
		return RAYOS_RSN_SPOOF_MAC;

	switch (p->eth_proto_be) {
	case bpf_htons(RAYOS_ETH_P_ARP):
		return arp_from_vm(o, p, data, data_end);
	case bpf_htons(RAYOS_ETH_P_IP):
		return ipv4_from_vm(o, p);
	case bpf_htons(RAYOS_ETH_P_IPV6):
		return ipv6_from_vm(o, p, data, data_end);
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
