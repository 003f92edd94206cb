/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Flow tracking: packets the firewall allowed open a flow in rayos_ct, and
 * later packets of that flow, in either direction, pass on one hash lookup.
 * Also the fragment table that lends a datagram's ports to its later
 * fragments.
 */
#ifndef RAYOS_CT_BPF_H
#define RAYOS_CT_BPF_H

#include "maps.bpf.h"
#include "parse.bpf.h"
#include "stats.bpf.h"

#define RAYOS_TCP_FIN	0x01
#define RAYOS_TCP_SYN	0x02
#define RAYOS_TCP_RST	0x04
#define RAYOS_TCP_ACK	0x10
#define RAYOS_ICMP_ECHOREPLY	0
#define RAYOS_ICMP_ECHO		8
#define RAYOS_ICMP6_ECHO	128
#define RAYOS_ICMP6_ECHOREPLY	129
#define RAYOS_CT_REFRESH_NS	1000000000ULL	/* last_ns granularity */

static __always_inline bool icmp_is_echo(const struct rayos_pkt *p, bool *reply)
{
	if (p->proto == IPPROTO_ICMP &&
	    (p->dport == RAYOS_ICMP_ECHO || p->dport == RAYOS_ICMP_ECHOREPLY)) {
		*reply = p->dport == RAYOS_ICMP_ECHOREPLY;
		return true;
	}
	if (p->proto == RAYOS_IPPROTO_ICMPV6 &&
	    (p->dport == RAYOS_ICMP6_ECHO || p->dport == RAYOS_ICMP6_ECHOREPLY)) {
		*reply = p->dport == RAYOS_ICMP6_ECHOREPLY;
		return true;
	}
	return false;
}

/* A flow key of either family; v6 says which map it belongs to. */
struct rayos_ct_ref {
	union {
		struct rayos_ct4_key k4;
		struct rayos_ct6_key k6;
	};
	bool v6;
};

/* Build the flow key from the VM's side.  Returns false for packets that
 * are not tracked (no ports, ICMP other than echo): those always meet the
 * rules. */
static __always_inline bool ct_key_build(struct rayos_ct_ref *k, __u32 slot, __u8 dir,
					 const struct rayos_pkt *p)
{
	bool out = dir == RAYOS_DIR_OUT, reply;
	__u16 vm_port, remote_port;

	if (!p->has_ports)
		return false;
	if (p->proto == IPPROTO_TCP || p->proto == IPPROTO_UDP) {
		vm_port = out ? p->sport : p->dport;
		remote_port = out ? p->dport : p->sport;
	} else if (icmp_is_echo(p, &reply)) {
		vm_port = p->icmp_id;
		remote_port = 0;
	} else {
		return false;
	}
	k->v6 = p->family == RAYOS_AF_INET6;
	if (k->v6) {
		k->k6.vm_port = vm_port;
		k->k6.remote_port = remote_port;
		k->k6.slot = slot;
		k->k6.proto = p->proto;
		k->k6.pad = 0;
		__builtin_memcpy(k->k6.vm_addr, out ? p->saddr : p->daddr, 16);
		__builtin_memcpy(k->k6.remote_addr, out ? p->daddr : p->saddr, 16);
	} else {
		k->k4.vm_port = vm_port;
		k->k4.remote_port = remote_port;
		k->k4.slot = slot;
		k->k4.proto = p->proto;
		k->k4.pad = 0;
		k->k4.vm_addr = out ? p->saddr[0] : p->daddr[0];
		k->k4.remote_addr = out ? p->daddr[0] : p->saddr[0];
	}
	return true;
}

static __always_inline struct rayos_ct_val *ct_lookup(const struct rayos_ct_ref *k)
{
	struct rayos_ct_val *v;

	if (k->v6) {
		v = bpf_map_lookup_elem(&rayos_ct6, &k->k6);
		RAYOS_KEEP_CALL(v);
		return v;
	}
	return bpf_map_lookup_elem(&rayos_ct4, &k->k4);
}

/*
 * A SYN without ACK opens a connection: it is never a packet of a tracked
 * flow, so it goes straight to the rules.  A remote that forges a SYN with
 * the ports of one of the VM's flows cannot pass as return traffic that way,
 * and a SYN flood costs no flow-table miss per packet.  (TCP simultaneous
 * open, where both ends send a bare SYN, then needs a rule for the peer's.)
 */
static __always_inline bool tcp_syn_only(const struct rayos_pkt *p)
{
	return p->proto == IPPROTO_TCP &&
	       (p->tcp_flags & (RAYOS_TCP_SYN | RAYOS_TCP_ACK)) == RAYOS_TCP_SYN;
}

static __always_inline __u64 ct_timeout(const struct rayos_ct_val *v, __u8 proto)
{
	if (v->flags & RAYOS_CTF_CLOSING)
		return RAYOS_CT_CLOSING_NS;
	if (proto == IPPROTO_TCP && (v->flags & RAYOS_CTF_REPLIED))
		return RAYOS_CT_TCP_EST_NS;
	return RAYOS_CT_OTHER_NS;
}

/* The flow belongs to this VM (not to the slot's previous one) under its
 * current policy. */
static __always_inline bool ct_current(const struct rayos_ct_val *v, const struct rayos_vm *vm)
{
	return v->policy_version == vm->policy_version && v->vm_id == vm->vm_id;
}

/* Idle for longer than its timeout.  Another CPU may have stamped the entry
 * after this CPU read its clock: a last_ns ahead of now is fresh, not
 * 2^64 ns old. */
static __always_inline bool ct_expired(const struct rayos_ct_val *v, __u8 proto, __u64 now)
{
	return now > v->last_ns && now - v->last_ns > ct_timeout(v, proto);
}

/*
 * Does the packet belong to a live flow that the VM's current policy
 * allowed?  A miss, an expired entry or one stamped by an older policy
 * version sends the packet to the rules (fail closed: the rules can only
 * be as open as the policy).  Checked before the rules because most packets
 * belong to established flows and one hash hit (~12 ns) is cheaper than the
 * rule lookups.
 */
static __always_inline bool ct_pass(const struct rayos_ct_ref *k, const struct rayos_vm *vm,
				    __u8 dir, const struct rayos_pkt *p, __u64 now)
{
	struct rayos_ct_val *v = ct_lookup(k);
	bool reply;

	if (!v || !ct_current(v, vm))
		return false;
	if (ct_expired(v, p->proto, now)) {
		long err;

		if (k->v6) {
			err = bpf_map_delete_elem(&rayos_ct6, &k->k6);
			RAYOS_KEEP_CALL(err);
		} else {
			bpf_map_delete_elem(&rayos_ct4, &k->k4);
		}
		return false;
	}
	/* Echo flows pass requests one way and replies the other only. */
	if (icmp_is_echo(p, &reply) && reply != (dir != v->origin_dir))
		return false;
	/* Racy plain stores: concurrent packets of one flow write the same
	 * kind of values.  The stamp is refreshed at most once per
	 * RAYOS_CT_REFRESH_NS, so the CPUs of a busy flow do not bounce its
	 * cache line on every packet; timeouts (>= 10 s) may end up to that
	 * much early. */
	if (now > v->last_ns + RAYOS_CT_REFRESH_NS)
		v->last_ns = now;
	if (dir != v->origin_dir && !(v->flags & RAYOS_CTF_REPLIED))
		v->flags |= RAYOS_CTF_REPLIED;
	if ((p->tcp_flags & (RAYOS_TCP_FIN | RAYOS_TCP_RST)) && !(v->flags & RAYOS_CTF_CLOSING))
		v->flags |= RAYOS_CTF_CLOSING;
	return true;
}

/* Open (or re-stamp) a flow for a packet the rules allowed. */
static __always_inline void ct_open(const struct rayos_ct_ref *k, const struct rayos_vm *vm,
				    __u8 dir, const struct rayos_pkt *p, __u64 now)
{
	struct rayos_ct_val v = {
		.last_ns = now,
		.policy_version = vm->policy_version,
		.vm_id = vm->vm_id,
		.origin_dir = dir,
		.flags = (p->tcp_flags & (RAYOS_TCP_FIN | RAYOS_TCP_RST)) ? RAYOS_CTF_CLOSING : 0,
	};
	long err;

	if (k->v6) {
		err = bpf_map_update_elem(&rayos_ct6, &k->k6, &v, BPF_ANY);
		RAYOS_KEEP_CALL(err);
	} else {
		err = bpf_map_update_elem(&rayos_ct4, &k->k4, &v, BPF_ANY);
	}
	if (err)
		net_count(RAYOS_NETC_CT_FAIL);
}

/* ICMP errors that quote a packet of a flow: unreachable (incl. PMTU's
 * "fragmentation needed"), time exceeded, parameter problem; for ICMPv6
 * also packet too big. */
static __always_inline bool icmp_is_error(const struct rayos_pkt *p)
{
	if (p->proto == IPPROTO_ICMP)
		return p->dport == 3 || p->dport == 11 || p->dport == 12;
	if (p->proto == RAYOS_IPPROTO_ICMPV6)
		return p->dport >= 1 && p->dport <= 4;
	return false;
}

/* ICMP error sizes a conforming sender stays within: the whole IPv4
 * datagram at most 576 bytes (RFC 1812 4.3.2.3), IPv6 1280 (RFC 4443 2.4). */
#define RAYOS_ICMP4_ERR_MAX	576
#define RAYOS_ICMP6_ERR_MAX	1280

/* What ct_related found. */
enum rayos_related {
	RAYOS_REL_NO = 0,	/* not about a live flow of this VM: the rules decide */
	RAYOS_REL_YES = 1,	/* about one, to the flow's own end: pass as related */
	RAYOS_REL_LONG = 2,	/* about one, but longer than any sender makes them */
};

/*
 * Is this ICMP error about a live flow of the VM?  The quoted packet went
 * the other way (an error to the VM quotes what the VM sent), so its flow
 * key is built as a packet of the opposite direction.  The quote must hold
 * a whole IP header and the first 8 bytes of L4 (RFC 792; RFC 4443 quotes
 * more); IPv6 quotes with extension headers and quoted later fragments are
 * not followed: those errors meet the rules like any packet.
 *
 * An error goes back to the source of the packet it is about (RFC 792,
 * RFC 4443 2.2): one addressed to anyone else is no reply of the flow, and
 * meets the rules.  ip_len is the error's IP length: a quote is bounded by
 * the RFCs' sizes, and a longer "error" carries something else.
 */
static __always_inline int ct_related(void *data, void *data_end, const struct rayos_vm *vm,
				      __u8 dir, const struct rayos_pkt *p, __u64 now, __u32 ip_len)
{
	struct rayos_pkt q = { .family = p->family };
	__u32 off = p->l4_off + 8;	/* ICMP/ICMPv6 error header */
	struct rayos_ct_ref k;
	struct rayos_ct_val *v;
	__u8 *l4;

	if (p->family == RAYOS_AF_INET) {
		struct iphdr *ih = pkt_ptr(data, data_end, off, sizeof(*ih));

		if (!ih || ih->version != 4 || ih->ihl < 5 ||
		    (ih->frag_off & bpf_htons(RAYOS_IP_OFFSET)))
			return RAYOS_REL_NO;
		q.proto = ih->protocol;
		q.saddr[0] = ih->saddr;
		q.daddr[0] = ih->daddr;
		off += ih->ihl * 4;
		if (p->daddr[0] != q.saddr[0])
			return RAYOS_REL_NO;
	} else {
		struct ipv6hdr *ih = pkt_ptr(data, data_end, off, sizeof(*ih));

		if (!ih || ih->version != 6)
			return RAYOS_REL_NO;
		q.proto = ih->nexthdr;
		__builtin_memcpy(q.saddr, &ih->saddr, 16);
		__builtin_memcpy(q.daddr, &ih->daddr, 16);
		off += sizeof(*ih);
		if ((p->daddr[0] ^ q.saddr[0]) | (p->daddr[1] ^ q.saddr[1]) |
		    (p->daddr[2] ^ q.saddr[2]) | (p->daddr[3] ^ q.saddr[3]))
			return RAYOS_REL_NO;
	}
	l4 = pkt_ptr(data, data_end, off, 8);
	if (!l4)
		return RAYOS_REL_NO;
	q.has_ports = 1;
	if (q.proto == IPPROTO_TCP || q.proto == IPPROTO_UDP) {
		q.sport = (__u16)l4[0] << 8 | l4[1];
		q.dport = (__u16)l4[2] << 8 | l4[3];
	} else {
		q.dport = l4[0];	/* ICMP type; only echo is tracked */
		q.icmp_id = (__u16)l4[4] << 8 | l4[5];
	}
	if (!ct_key_build(&k, vm->slot, dir ^ 1, &q))
		return RAYOS_REL_NO;
	v = ct_lookup(&k);
	if (!v || !ct_current(v, vm) || ct_expired(v, q.proto, now))
		return RAYOS_REL_NO;
	if (ip_len > (p->family == RAYOS_AF_INET ? RAYOS_ICMP4_ERR_MAX : RAYOS_ICMP6_ERR_MAX))
		return RAYOS_REL_LONG;
	return RAYOS_REL_YES;
}

static __always_inline void frag_key_build(struct rayos_frag_key *k, __u32 vm_id, __u8 dir,
					   const struct rayos_pkt *p)
{
	k->vm_id = vm_id;
	k->id = p->frag_id;
	k->family = p->family;
	k->proto = p->proto;
	k->dir = dir;
	k->pad = 0;
	__builtin_memcpy(k->saddr, p->saddr, 16);
	__builtin_memcpy(k->daddr, p->daddr, 16);
}

/*
 * First fragment: remember its ports whatever its verdict, so the later
 * fragments get the same verdict from the same rules.  Later fragment: take
 * the ports from there.  A later fragment that arrives first (or after 30 s)
 * is judged without ports: only protocol-wide rules or the default decide.
 */
static __always_inline void frag_track(__u32 vm_id, __u8 dir, struct rayos_pkt *p, __u64 now)
{
	struct rayos_frag_key k;
	struct rayos_frag_val *hit;

	if (p->frag == RAYOS_FRAG_NONE)
		return;
	frag_key_build(&k, vm_id, dir, p);
	if (p->frag == RAYOS_FRAG_FIRST) {
		struct rayos_frag_val v = {
			.ts_ns = now,
			.sport = p->sport,
			.dport = p->dport,
			.icmp_id = p->icmp_id,
			.has_ports = p->has_ports,
		};

		bpf_map_update_elem(&rayos_frag, &k, &v, BPF_ANY);
		return;
	}
	hit = bpf_map_lookup_elem(&rayos_frag, &k);
	if (!hit || (now > hit->ts_ns && now - hit->ts_ns > RAYOS_FRAG_TIMEOUT_NS)) {
		net_count(RAYOS_NETC_FRAG_MISS);
		return;
	}
	p->sport = hit->sport;
	p->dport = hit->dport;
	p->icmp_id = hit->icmp_id;
	p->has_ports = hit->has_ports;
}

#endif /* RAYOS_CT_BPF_H */
