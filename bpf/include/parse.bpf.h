/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Bounds-checked packet parsing shared by the tc and XDP programs: a cursor
 * over [data, data_end) and one parser that fills struct rayos_pkt with what
 * the anti-spoofing and firewall code needs (addresses, L4 ports, fragment
 * position).  It never touches the skb, so any hook type can use it.
 */
#ifndef RAYOS_PARSE_BPF_H
#define RAYOS_PARSE_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "bpf/abi/net.h"

/* UAPI macros that vmlinux.h (types only) does not carry. */
#define RAYOS_ETH_ALEN		6
#define RAYOS_ETH_P_IP		0x0800
#define RAYOS_ETH_P_ARP		0x0806
#define RAYOS_ETH_P_IPV6	0x86DD
#define RAYOS_ETH_P_8021Q	0x8100
#define RAYOS_ETH_P_8021AD	0x88A8
#define RAYOS_AF_INET		2
#define RAYOS_AF_INET6		10
#define RAYOS_IPPROTO_ICMPV6	58
#define RAYOS_NEXTHDR_HOP	0
#define RAYOS_NEXTHDR_ROUTING	43
#define RAYOS_NEXTHDR_FRAGMENT	44
#define RAYOS_NEXTHDR_AUTH	51
#define RAYOS_NEXTHDR_DEST	60
#define RAYOS_IP_MF		0x2000
#define RAYOS_IP_OFFSET		0x1fff

/* A VM is an access port: more tags than this are not parsed further. */
#define RAYOS_MAX_VLANS		2
/* IPv6 extension headers walked before giving up (RFC 7112 spirit). */
#define RAYOS_MAX_EXTHDRS	6

/* Where a packet sits in a fragmented datagram. */
enum rayos_frag_pos {
	RAYOS_FRAG_NONE = 0,	/* not fragmented */
	RAYOS_FRAG_FIRST = 1,	/* offset 0, more follow: carries the L4 header */
	RAYOS_FRAG_LATER = 2,	/* offset > 0: no L4 header */
};

/* ARP body for Ethernet/IPv4 (RFC 826); byte arrays, so no alignment. */
struct rayos_arp_eth {
	__u8 sha[RAYOS_ETH_ALEN];
	__u8 spa[4];
	__u8 tha[RAYOS_ETH_ALEN];
	__u8 tpa[4];
};

/*
 * What the parser found.  Offsets, not pointers, so the struct can cross
 * BPF function boundaries (global subprograms take only scalars and memory
 * of scalars) and so the verifier need not carry packet ranges through every
 * later branch.  Addresses are network order words, IPv4 in [0] with the
 * rest zero, so flow keys and events copy them unchanged.
 */
struct rayos_pkt {
	__u16 l3_off;			/* iphdr, ipv6hdr, arphdr; 0 otherwise */
	__u16 l4_off;			/* TCP/UDP/ICMP header; 0 if absent */
	__u16 eth_proto_be;		/* EtherType after VLAN tags */
	__u8  nr_vlans;			/* in-band tags (RAYOS_MAX_VLANS+1 = more) */
	__u8  family;			/* RAYOS_AF_INET(6), 0 when not IP */
	__u8  proto;			/* L4 protocol after extension headers */
	__u8  frag;			/* enum rayos_frag_pos */
	__u8  has_ports;		/* sport/dport are valid */
	__u8  tcp_flags;		/* FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10 */
	__u16 sport;			/* host order; ICMP: code */
	__u16 dport;			/* host order; ICMP: type */
	__u16 icmp_id;			/* echo request/reply identifier, host order */
	__u16 pad;
	__u32 frag_id;			/* IPv4/IPv6 fragment identification */
	__u32 pad2;
	__u32 saddr[4];
	__u32 daddr[4];
};

/* A position in [data, end).  The offset is a scalar masked on every use so
 * that the verifier sees it bounded and can prune states across loop
 * iterations (a chain of variable-offset packet pointers cannot). */
struct rayos_cursor {
	void *data;
	void *end;
	__u32 off;
};

#define RAYOS_CURSOR_MASK	0x3fff	/* headers live in the first 16 KiB */

/* Return a pointer to the next len bytes and step over them, or NULL if the
 * packet is shorter.  len must be a constant or a masked value. */
static __always_inline void *cursor_pull(struct rayos_cursor *c, __u32 len)
{
	__u32 off = c->off & RAYOS_CURSOR_MASK;
	void *p = c->data + off;

	if (p + len > c->end)
		return NULL;
	c->off = off + len;
	return p;
}

/* Pointer to len bytes at off, or NULL: for consumers of rayos_pkt offsets. */
static __always_inline void *pkt_ptr(void *data, void *data_end, __u32 off, __u32 len)
{
	void *p = data + (off & RAYOS_CURSOR_MASK);

	if (p + len > data_end)
		return NULL;
	return p;
}

static __always_inline bool eth_proto_is_vlan(__u16 proto_be)
{
	return proto_be == bpf_htons(RAYOS_ETH_P_8021Q) ||
	       proto_be == bpf_htons(RAYOS_ETH_P_8021AD);
}

static __always_inline int parse_ipv4(struct rayos_cursor *c, struct rayos_pkt *p)
{
	struct iphdr *iph = cursor_pull(c, sizeof(*iph));
	__u32 hlen;
	__u16 frag_off;

	if (!iph || iph->version != 4 || iph->ihl < 5)
		return RAYOS_RSN_MALFORMED;
	hlen = iph->ihl * 4;
	/* Options are skipped by length, not interpreted: they go through the
	 * same evaluation as any other packet.  The masks here and below
	 * change no value; they show the verifier the bound it needs. */
	if (!cursor_pull(c, (hlen - sizeof(*iph)) & 0x3c))
		return RAYOS_RSN_MALFORMED;
	/* tot_len is not compared with data_end: a GSO skb carries more than
	 * its linear part, and Ethernet padding makes frames longer. */
	if (bpf_ntohs(iph->tot_len) < hlen)
		return RAYOS_RSN_MALFORMED;

	p->l3_off = (void *)iph - c->data;
	p->family = RAYOS_AF_INET;
	p->proto = iph->protocol;
	p->saddr[0] = iph->saddr;
	p->daddr[0] = iph->daddr;
	frag_off = bpf_ntohs(iph->frag_off);
	if (frag_off & RAYOS_IP_OFFSET)
		p->frag = RAYOS_FRAG_LATER;
	else if (frag_off & RAYOS_IP_MF)
		p->frag = RAYOS_FRAG_FIRST;
	p->frag_id = bpf_ntohs(iph->id);
	return 0;
}

static __always_inline int parse_ipv6(struct rayos_cursor *c, struct rayos_pkt *p)
{
	struct ipv6hdr *ip6h = cursor_pull(c, sizeof(*ip6h));
	__u8 nexthdr;
	int i;

	if (!ip6h || ip6h->version != 6)
		return RAYOS_RSN_MALFORMED;
	p->l3_off = (void *)ip6h - c->data;
	p->family = RAYOS_AF_INET6;
	__builtin_memcpy(p->saddr, &ip6h->saddr, 16);
	__builtin_memcpy(p->daddr, &ip6h->daddr, 16);

	nexthdr = ip6h->nexthdr;
	for (i = 0; i < RAYOS_MAX_EXTHDRS; i++) {
		struct ipv6_opt_hdr *opt;
		struct frag_hdr *fh;
		__u32 len;

		if (nexthdr == RAYOS_NEXTHDR_HOP || nexthdr == RAYOS_NEXTHDR_ROUTING ||
		    nexthdr == RAYOS_NEXTHDR_DEST || nexthdr == RAYOS_NEXTHDR_AUTH) {
			opt = cursor_pull(c, sizeof(*opt));
			if (!opt)
				return RAYOS_RSN_MALFORMED;
			/* AH counts 4-byte words minus 2 (RFC 4302), the
			 * others 8-byte words minus 1 (RFC 8200). */
			len = nexthdr == RAYOS_NEXTHDR_AUTH ? (opt->hdrlen + 2) * 4
							    : (opt->hdrlen + 1) * 8;
			nexthdr = opt->nexthdr;
			if (len < sizeof(*opt) || !cursor_pull(c, (len - sizeof(*opt)) & 0x7ff))
				return RAYOS_RSN_MALFORMED;
			continue;
		}
		if (nexthdr != RAYOS_NEXTHDR_FRAGMENT)
			goto done;
		fh = cursor_pull(c, sizeof(*fh));
		if (!fh)
			return RAYOS_RSN_MALFORMED;
		p->frag_id = bpf_ntohl(fh->identification);
		if (bpf_ntohs(fh->frag_off) & ~7)
			p->frag = RAYOS_FRAG_LATER;
		else if (bpf_ntohs(fh->frag_off) & 1)
			p->frag = RAYOS_FRAG_FIRST;
		nexthdr = fh->nexthdr;
		if (p->frag == RAYOS_FRAG_LATER)
			goto done;	/* the rest is payload */
	}
	/* Still inside the extension header chain: no one legitimately sends
	 * that many, and we cannot see the L4 header to judge it. */
	return RAYOS_RSN_MALFORMED;
done:
	p->proto = nexthdr;
	return 0;
}

static __always_inline int parse_l4(struct rayos_cursor *c, struct rayos_pkt *p)
{
	__u32 l4_off = c->off;
	struct tcphdr *th;
	struct udphdr *uh;
	struct icmphdr *ih;
	struct icmp6hdr *i6h;

	switch (p->proto) {
	case IPPROTO_TCP:
		th = cursor_pull(c, sizeof(*th));
		if (!th || th->doff < 5 || !cursor_pull(c, (th->doff * 4 - sizeof(*th)) & 0x3c))
			return RAYOS_RSN_MALFORMED;
		p->sport = bpf_ntohs(th->source);
		p->dport = bpf_ntohs(th->dest);
		p->tcp_flags = ((__u8 *)th)[13];
		break;
	case IPPROTO_UDP:
		uh = cursor_pull(c, sizeof(*uh));
		if (!uh)
			return RAYOS_RSN_MALFORMED;
		p->sport = bpf_ntohs(uh->source);
		p->dport = bpf_ntohs(uh->dest);
		break;
	case IPPROTO_ICMP:
		ih = cursor_pull(c, sizeof(*ih));
		if (!ih)
			return RAYOS_RSN_MALFORMED;
		p->dport = ih->type;
		p->sport = ih->code;
		p->icmp_id = bpf_ntohs(ih->un.echo.id);
		break;
	case RAYOS_IPPROTO_ICMPV6:
		i6h = cursor_pull(c, sizeof(*i6h));
		if (!i6h)
			return RAYOS_RSN_MALFORMED;
		p->dport = i6h->icmp6_type;
		p->sport = i6h->icmp6_code;
		p->icmp_id = bpf_ntohs(i6h->icmp6_dataun.u_echo.identifier);
		break;
	default:
		return 0;	/* no ports: matched by protocol only */
	}
	p->l4_off = l4_off;
	p->has_ports = 1;
	return 0;
}

/*
 * Parse one Ethernet frame.  Returns 0, or RAYOS_RSN_MALFORMED when a header
 * that must be there is cut short or inconsistent.  Unknown EtherTypes and
 * L4 protocols are not errors: the caller decides what to do with them.
 */
static __always_inline int rayos_parse(void *data, void *data_end, struct rayos_pkt *p)
{
	struct rayos_cursor c = { .data = data, .end = data_end };
	struct ethhdr *eth;
	struct vlan_hdr *vh;
	__u16 proto;
	int err, i;

	eth = cursor_pull(&c, sizeof(*eth));
	if (!eth)
		return RAYOS_RSN_MALFORMED;
	proto = eth->h_proto;
	for (i = 0; i < RAYOS_MAX_VLANS && eth_proto_is_vlan(proto); i++) {
		vh = cursor_pull(&c, sizeof(*vh));
		if (!vh)
			return RAYOS_RSN_MALFORMED;
		p->nr_vlans++;
		proto = vh->h_vlan_encapsulated_proto;
	}
	if (eth_proto_is_vlan(proto))
		p->nr_vlans++;
	p->eth_proto_be = proto;

	switch (proto) {
	case bpf_htons(RAYOS_ETH_P_IP):
		err = parse_ipv4(&c, p);
		break;
	case bpf_htons(RAYOS_ETH_P_IPV6):
		err = parse_ipv6(&c, p);
		break;
	case bpf_htons(RAYOS_ETH_P_ARP): {
		struct arphdr *ah = cursor_pull(&c, sizeof(*ah));

		/* Only Ethernet/IPv4 ARP exists on a VM's link. */
		if (!ah || ah->ar_hrd != bpf_htons(1) ||
		    ah->ar_pro != bpf_htons(RAYOS_ETH_P_IP) ||
		    ah->ar_hln != RAYOS_ETH_ALEN || ah->ar_pln != 4 ||
		    !cursor_pull(&c, sizeof(struct rayos_arp_eth)))
			return RAYOS_RSN_MALFORMED;
		p->l3_off = (void *)ah - data;
		return 0;
	}
	default:
		return 0;
	}
	if (err)
		return err;
	/* A later fragment has no L4 header; a first fragment must carry a
	 * whole one (tiny-fragment attacks, RFC 1858) or it is malformed. */
	if (p->frag == RAYOS_FRAG_LATER)
		return 0;
	return parse_l4(&c, p);
}

#endif /* RAYOS_PARSE_BPF_H */
