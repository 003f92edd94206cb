/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Kernel/user ABI of the network data path: which interface belongs to which
 * VM, the address a VM may use (from the policy or a DHCP lease), the
 * host's own addresses, and the counters and events the programs export.
 */
#ifndef RAYOS_ABI_NET_H
#define RAYOS_ABI_NET_H

#ifndef __VMLINUX_H__
#include <linux/bpf.h>		/* struct bpf_spin_lock */
#include <linux/types.h>
#endif
#include "policy.h"		/* RAYOS_DIR_MAX, RAYOS_MAX_RULES */

/* rayos_ip_bind.flags */
#define RAYOS_BINDF_IPV4	(1U << 0)	/* ipv4_be is the VM's address */
#define RAYOS_BINDF_IPV6	(1U << 1)	/* ipv6 is the VM's global address */
#define RAYOS_BINDF_STATIC	(1U << 2)	/* from the policy, not a lease */

/*
 * rayos_ip_bind: key __u32 vm_id.  Until a VM has an entry here it may only
 * send DHCP client traffic, ARP probes and IPv6 link-local/DAD; once bound, its
 * source addresses must match.  lease_expiry_ns (CLOCK_BOOTTIME, 0 = never)
 * lets the program stop honouring a lease the agent failed to remove.
 */
struct rayos_ip_bind {
	__u32 ipv4_be;
	__u32 flags;		/* RAYOS_BINDF_* */
	__u8  ipv6[16];
	__u64 lease_expiry_ns;
};

/* rayos_iface.flags */
#define RAYOS_IFF_SHAPED_IN	(1U << 0)	/* a tbf qdisc on the tap shapes IN */
#define RAYOS_IFF_VM		(1U << 1)	/* vm holds the VM's record */

/*
 * rayos_ifaces: key __u32 ifindex of the VM's tap (a veth end in tests).
 * Besides the tap's own settings the entry carries a copy of the VM's
 * rayos_vms record and rayos_ip_bind binding, so that the data path finds
 * everything about a packet's VM in this one lookup (two hash lookups
 * fewer per packet, ~13 ns; README, decisions).  The loader writes the copy in the
 * same step as every write of the record or the binding (loader_iface_sync
 * in loader/attach.c); rayos_vms and rayos_ip_bind stay the maps of record.
 * Without RAYOS_IFF_VM the VM has no record: its packets are dropped.
 *
 * Shaping is done by tbf qdiscs where the agent could set them up (see
 * agent/vm/shaper.c); the programs police a direction with their own token
 * bucket only when it is not shaped.
 */
struct rayos_iface {
	__u32 vm_id;
	__u32 shaper_ifindex;	/* OUT: redirect passed frames to this ifb; 0 = none */
	__u32 flags;		/* RAYOS_IFF_* */
	__u32 pad;
	struct rayos_vm vm;		/* valid with RAYOS_IFF_VM */
	struct rayos_ip_bind bind;	/* flags 0: unbound */
};

/*
 * Why a packet passed or was dropped.  Counted per VM slot and direction in
 * rayos_vm_stats and carried in drop events.  Values below RAYOS_RSN_DROP
 * are passes; the numbering is ABI (metrics label them by number).
 */
enum rayos_reason {
	RAYOS_RSN_PASS_RULE = 0,	/* a firewall rule allowed it */
	RAYOS_RSN_PASS_DEFAULT = 1,	/* no rule matched, default allow */
	RAYOS_RSN_PASS_FLOW = 2,	/* belongs to a tracked flow */
	RAYOS_RSN_PASS_CTRL = 3,	/* ARP, ND, MLD, DHCP: outside the firewall */
	RAYOS_RSN_PASS_RELATED = 4,	/* ICMP error about a tracked flow (PMTU, unreachable) */
	RAYOS_RSN_DROP = 8,		/* first drop reason */
	RAYOS_RSN_DROP_RULE = 8,	/* a firewall rule denied it */
	RAYOS_RSN_DROP_DEFAULT = 9,	/* no rule matched, default deny */
	RAYOS_RSN_MALFORMED = 10,	/* truncated or inconsistent headers */
	RAYOS_RSN_VLAN = 11,		/* 802.1Q/802.1ad tag on an access port */
	RAYOS_RSN_ETHERTYPE = 12,	/* from the VM: not IPv4, IPv6 or ARP */
	RAYOS_RSN_SPOOF_MAC = 13,	/* Ethernet source is not the VM's MAC */
	RAYOS_RSN_SPOOF_IP = 14,	/* IP source is not the VM's address */
	RAYOS_RSN_SPOOF_ARP = 15,	/* ARP sender MAC or IP is not the VM's */
	RAYOS_RSN_SPOOF_ND = 16,	/* NS/NA claims an address not the VM's */
	RAYOS_RSN_UNBOUND = 17,		/* IPv4 before the VM has an address */
	RAYOS_RSN_ROGUE_DHCP = 18,	/* DHCP server traffic from a guest */
	RAYOS_RSN_ROGUE_RA = 19,	/* router advertisement or redirect from a guest */
	RAYOS_RSN_RATE = 20,		/* over the direction's byte rate */
	RAYOS_RSN_NO_VM = 21,		/* tap known, VM record missing */
	RAYOS_RSN_DHCP_CHADDR = 22,	/* DHCP client message not naming the VM's MAC */
	RAYOS_RSN_DHCP_RATE = 23,	/* over the VM's DHCP client message rate */
	RAYOS_RSN_ARP_RATE = 24,	/* over the VM's ARP rate */
	RAYOS_RSN_ND_RATE = 25,		/* over the VM's NS/NA/RS/MLD rate */
	RAYOS_RSN_HOST = 26,		/* to the host's own addresses, not allowed */
	RAYOS_RSN_ICMP_QUOTE = 27,	/* ICMP error about a flow, longer than RFC 1812/4443 allow */
	RAYOS_RSN_QUARANTINE = 28,	/* the VM lost its policy: everything drops */
	RAYOS_RSN_NO_CAP_NETWORK = 29,	/* the VM does not hold CAP_NETWORK */
	RAYOS_RSN_CAP_PORTS = 30,	/* a new flow to a port its CAP_NETWORK limit does not list */
	RAYOS_RSN_MAX = 32,		/* power of two: programs index with a mask */
};

/* One packet/byte counter pair (per CPU in per-CPU maps: sum them). */
struct rayos_ctr {
	__u64 packets;
	__u64 bytes;		/* skb->len: L2 frame without FCS */
};

/*
 * rayos_vm_stats (PERCPU_ARRAY): key __u32 rayos_vm.slot.  Every packet of
 * a known VM lands in exactly one cell.  The agent zeroes a slot before it
 * hands the slot to a new VM.
 */
struct rayos_vm_stats {
	struct rayos_ctr c[RAYOS_DIR_MAX][RAYOS_RSN_MAX];
};

/*
 * rayos_rule_stats (ARRAY of struct rayos_ctr, updated atomically: one
 * value for all CPUs): packets that rule `rule` of direction `dir` decided
 * (allowed or denied) for the VM in slot `slot`.  Packets passed by a
 * tracked flow are not rule hits.
 */
#define RAYOS_RULE_STATS_IDX(slot, dir, rule) \
	((slot) * (RAYOS_DIR_MAX * RAYOS_MAX_RULES) + (dir) * RAYOS_MAX_RULES + (rule))

/* rayos_net_stats (PERCPU_ARRAY of __u64): host-wide counters, key = id. */
enum rayos_net_counter {
	RAYOS_NETC_NO_IFACE = 0,	/* passed: ifindex not in rayos_ifaces */
	RAYOS_NETC_NO_VM = 1,		/* dropped: iface known, VM record missing */
	RAYOS_NETC_EV_SENT = 2,		/* drop events written to rayos_events */
	RAYOS_NETC_EV_SUPPRESSED = 3,	/* drop events over the per-VM rate */
	RAYOS_NETC_EV_LOST = 4,		/* ring buffer full */
	RAYOS_NETC_CT_FAIL = 5,		/* flow entry could not be written */
	RAYOS_NETC_FRAG_MISS = 6,	/* later fragment without its first */
	RAYOS_NETC_MAX = 8,
};

#define RAYOS_EV_RULE_NONE	0xff	/* rayos_event.rule when no rule decided */

/*
 * skb->mark of a DHCPv4 client message (UDP 68 -> 67) that rayos_from_vm
 * passed: the tag in the high 16 bits, the sending VM's rayos_vm.slot in the
 * low 16.  The agent's DHCP server reads it with SO_RCVMARK and so knows
 * which VM sent a message whatever the message says.  A frame without the
 * tag did not come through a tap RayOS enforces.
 */
#define RAYOS_DHCP_MARK_TAG	0x52590000U	/* "RY" */
#define RAYOS_DHCP_MARK_MASK	0xffff0000U

/*
 * rayos_host4 (key __u32 address, network order) and rayos_host6 (key 16
 * bytes): the host's own unicast and directed-broadcast addresses, kept by
 * the agent from rtnetlink.  Packets from a guest to one of them (and to
 * broadcast, multicast or loopback) meet the VM's HOST rules.
 */
struct rayos_host_addr {
	__u32 ifindex;		/* the interface that has it */
	__u32 flags;		/* RAYOS_HOSTF_* */
};
#define RAYOS_HOSTF_BROADCAST	(1U << 0)	/* a directed broadcast address */
/* Entries of each map.  Addresses beyond it are logged by the agent. */
#define RAYOS_HOST_ADDRS	4096


/*
 * Record in the rayos_events ring buffer: one dropped packet.  Addresses are
 * network order, IPv4 in the first 4 bytes with the rest zero.  Ports are
 * host order as the firewall saw them: for ICMP/ICMPv6 dport is the type and
 * sport the code; both 0 without an L4 header (ARP, later fragments).
 */
struct rayos_event {
	__u64 ts_ns;		/* CLOCK_BOOTTIME */
	__u32 vm_id;
	__u32 pkt_len;		/* skb->len */
	__u8  dir;		/* enum rayos_dir */
	__u8  reason;		/* enum rayos_reason */
	__u8  rule;		/* rule number, or RAYOS_EV_RULE_NONE */
	__u8  proto;		/* IPPROTO_*, 0 when not IP */
	__u8  family;		/* AF_INET, AF_INET6, 0 */
	__u8  pad;
	__u16 eth_proto_be;	/* EtherType after any VLAN tags */
	__u16 sport;
	__u16 dport;
	__u32 pad2;
	__u8  saddr[16];
	__u8  daddr[16];
};

/*
 * rayos_ct4 / rayos_ct6 (LRU_HASH): flows the firewall allowed, keyed from
 * the VM's side so that both directions of a flow build the same key.  ICMP
 * echo uses the identifier as vm_port and 0 as remote_port.  One map per
 * family because the hash and the compare run over the whole key: a 16-byte
 * IPv4 key looks up ~10 ns faster than one sized for IPv6 (tests/net/
 * bench_fw; DESIGN.md).  The VM is named by its slot (16 bits: --max-vms
 * is at most 65536); rayos_ct_val.vm_id tells a reused slot's old flows
 * from its new VM's.
 */
struct rayos_ct4_key {
	__u32 vm_addr;		/* network order */
	__u32 remote_addr;
	__u16 vm_port;		/* host order */
	__u16 remote_port;	/* host order */
	__u16 slot;		/* rayos_vm.slot */
	__u8  proto;
	__u8  pad;
};

struct rayos_ct6_key {
	__u8  vm_addr[16];	/* network order */
	__u8  remote_addr[16];
	__u16 vm_port;		/* host order */
	__u16 remote_port;	/* host order */
	__u16 slot;		/* rayos_vm.slot */
	__u8  proto;
	__u8  pad;
};

/* rayos_ct_val.flags */
#define RAYOS_CTF_REPLIED	(1U << 0)	/* a packet went the other way */
#define RAYOS_CTF_CLOSING	(1U << 1)	/* TCP FIN or RST seen */

/*
 * Flow value.  policy_version stamps the policy that allowed the flow: a
 * newer policy makes the entry stale until a packet of the flow passes the
 * new rules again, so revoking a rule also ends its established flows.
 */
struct rayos_ct_val {
	__u64 last_ns;		/* CLOCK_MONOTONIC_COARSE of the last packet (to 1 s) */
	__u64 policy_version;
	__u32 vm_id;		/* the VM that owned the slot when the flow opened */
	__u8  origin_dir;	/* direction of the packet that created it */
	__u8  flags;		/* RAYOS_CTF_* */
	__u8  pad[2];
};

/* Flow timeouts (ns), fixed: conservative conntrack-like values. */
#define RAYOS_CT_TCP_EST_NS	(3600ULL * 1000000000ULL)	/* replied, open */
#define RAYOS_CT_CLOSING_NS	(10ULL * 1000000000ULL)		/* FIN/RST seen */
#define RAYOS_CT_OTHER_NS	(60ULL * 1000000000ULL)		/* UDP, ICMP, TCP unreplied */

/*
 * rayos_frag (LRU_HASH): L4 ports of a fragmented datagram, written by its
 * first fragment so later fragments (which carry no L4 header) are judged
 * with the same ports.  IPv4 ids are 16 bits, IPv6 32.
 */
struct rayos_frag_key {
	__u32 vm_id;
	__u32 id;		/* host order */
	__u8  family;
	__u8  proto;
	__u8  dir;
	__u8  pad;
	__u8  saddr[16];
	__u8  daddr[16];
};

struct rayos_frag_val {
	__u64 ts_ns;		/* CLOCK_MONOTONIC_COARSE; older than RAYOS_FRAG_TIMEOUT_NS: ignored */
	__u16 sport;		/* host order, as in rayos_event */
	__u16 dport;
	__u16 icmp_id;		/* ICMP echo identifier, host order */
	__u8  has_ports;	/* 0: the first fragment had no L4 ports */
	__u8  pad;
};

#define RAYOS_FRAG_TIMEOUT_NS	(30ULL * 1000000000ULL)	/* reassembly timeout */

/*
 * rayos_tbf (ARRAY, key slot * RAYOS_DIR_MAX + dir): byte token bucket of
 * one VM direction.  The lock makes refill-and-spend atomic across CPUs.
 * A zeroed entry (new slot) refills to a full bucket on its first packet.
 */
struct rayos_tbf {
	struct bpf_spin_lock lock;
	__u32 pad;
	__u64 tokens;		/* bytes, <= burst */
	__u64 last_ns;		/* CLOCK_BOOTTIME of the last refill */
};

/*
 * rayos_ctl_rate (ARRAY, key slot * RAYOS_CTL_MAX + enum rayos_ctl_kind):
 * packet token bucket of one kind of link-control message of one VM: the
 * same struct rayos_tbf, with tokens counted in packets.
 */

#endif /* RAYOS_ABI_NET_H */
