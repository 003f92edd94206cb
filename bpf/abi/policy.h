/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Kernel/user ABI of the compiled policy: the per-VM record and the firewall
 * rule maps that the agent publishes and the BPF programs read.  Only fixed
 * width types and explicit padding; the agent _Static_asserts every size.
 */
#ifndef RAYOS_ABI_POLICY_H
#define RAYOS_ABI_POLICY_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define RAYOS_MAX_VMS_DEFAULT	4096
/* Slots are 16 bits in flow keys (rayos_ct4_key). */
#define RAYOS_MAX_VMS_LIMIT	65536
/* Rules of one VM and direction are numbered 0..63: one bit each in a __u64. */
#define RAYOS_MAX_RULES		64
#define RAYOS_NAME_LEN		64

/* Directions are seen from the VM: IN is host->guest, OUT is guest->host. */
enum rayos_dir {
	RAYOS_DIR_IN = 0,
	RAYOS_DIR_OUT = 1,
	RAYOS_DIR_MAX = 2,
};

/*
 * Rule sets of a VM: one per direction, plus HOST, which judges what the
 * guest sends to the host's own addresses (every address of the host,
 * broadcast, multicast and loopback: what the host's stack would receive).
 * A packet to the host must pass HOST and then OUT.  HOST is a rule set
 * only: counters and flows stay per direction (RAYOS_DIR_MAX).
 */
#define RAYOS_FW_HOST		2
#define RAYOS_FW_DIRS		3

enum rayos_action {
	RAYOS_ACT_DENY = 0,
	RAYOS_ACT_ALLOW = 1,
};

/* Capability numbers are bit positions in rayos_vm.caps. */
enum rayos_cap {
	RAYOS_CAP_NETWORK = 0,
	RAYOS_CAP_DISK_READ = 1,
	RAYOS_CAP_DISK_WRITE = 2,
	RAYOS_CAP_GPU = 3,
	RAYOS_CAP_INPUT = 4,
	RAYOS_CAP_CONSOLE = 5,
	RAYOS_CAP_AUDIT = 6,
	RAYOS_CAP_ADMIN = 7,
	RAYOS_CAP_COUNT = 8,
};

/* IP protocol "any": IPPROTO_RAW (255) never appears on the wire as L4. */
#define RAYOS_PROTO_ANY		255

/* rayos_dir_policy.flags: which optional lookups a packet needs.  Each of
 * the three dimensions lives either in its LPM trie or, when it fits, in the
 * direction's interval table (rayos_fw_tab), never in both. */
#define RAYOS_DIRF_PORT_RANGES	(1U << 0)	/* rayos_fw_range has entries */
#define RAYOS_DIRF_CIDR4	(1U << 1)	/* rayos_fw_cidr4 has entries */
#define RAYOS_DIRF_CIDR6	(1U << 2)	/* rayos_fw_cidr6 has entries */
#define RAYOS_DIRF_RANGE_TAB	(1U << 3)	/* port ranges: rayos_fw_tab */
#define RAYOS_DIRF_CIDR4_TAB	(1U << 4)	/* IPv4 CIDRs: rayos_fw_tab */
#define RAYOS_DIRF_CIDR6_TAB	(1U << 5)	/* IPv6 CIDRs: rayos_fw_tab */
#define RAYOS_DIRF_PORT_TAB	(1U << 6)	/* the whole port dimension (exact,
						 * ranges, protocol-wide): rayos_fw_tab */
#define RAYOS_DIRF_TABS		(RAYOS_DIRF_RANGE_TAB | RAYOS_DIRF_CIDR4_TAB | \
				 RAYOS_DIRF_CIDR6_TAB | RAYOS_DIRF_PORT_TAB)

/*
 * Firewall of one direction.  A packet's verdict is the lowest-numbered rule
 * whose bit is set in both the port-dimension and the CIDR-dimension bitmaps
 * (first match wins); no such rule means default_action.
 */
struct rayos_dir_policy {
	__u64 allow_bits;	/* bit i set: rule i allows, clear: denies */
	__u64 cidr_wild_bits;	/* rules without a CIDR match every address */
	__u64 rate_bytes;	/* bytes per second, 0 = unlimited */
	__u64 burst_bytes;
	__u8  default_action;	/* enum rayos_action */
	__u8  flags;		/* RAYOS_DIRF_* */
	__u8  nr_rules;
	/* The last cap_rules rules (numbers nr_rules - cap_rules ..) are the
	 * CAP_NETWORK port limit's denies (agent/policy/policy_compile.c): a
	 * packet any of them matches drops as RAYOS_RSN_CAP_PORTS, whatever
	 * a lower-numbered rule says, so the verdict is firewall ∩ limit. */
	__u8  cap_rules;
	__u8  pad[4];
};

/* rayos_vm.flags */
#define RAYOS_VMF_MAC		(1U << 0)	/* mac[] is set: enforce it */
/* The VM left the policy set while it still runs (tap present or QEMU
 * alive): its tap drops every frame both ways and its cgroup gets the
 * always-allowed devices only, until it gets a policy again or is stopped
 * or unregistered.  A record flag, so that it holds with the agent dead. */
#define RAYOS_VMF_QUARANTINE	(1U << 1)
/* CAP_GPU is limited to listed nodes: it grants only DRI nodes whose
 * rayos_dev_rules entry carries RAYOS_DEV_LIMIT_GPU (bpf/abi/dev.h). */
#define RAYOS_VMF_GPU_NODES	(1U << 2)
/* CAP_DISK_READ / CAP_DISK_WRITE are limited to listed disks: they grant
 * only block disks whose entry carries RAYOS_DEV_LIMIT_DISK_READ / _WRITE. */
#define RAYOS_VMF_DISK_READ_LIMIT	(1U << 3)
#define RAYOS_VMF_DISK_WRITE_LIMIT	(1U << 4)

/* Link-control messages a guest sends outside the firewall, each kind with
 * its own per-VM packet bucket (rayos_vm.ctl, rayos_ctl_rate). */
enum rayos_ctl_kind {
	RAYOS_CTL_ARP = 0,	/* ARP requests and replies */
	RAYOS_CTL_ND = 1,	/* ICMPv6 NS, NA, RS and MLD */
	RAYOS_CTL_DHCP = 2,	/* DHCPv4 and DHCPv6 client messages */
	RAYOS_CTL_MAX = 4,
};

/* Packets per second and burst of one rayos_ctl_kind; rate 0: unlimited. */
struct rayos_ctl_limit {
	__u32 rate;
	__u32 burst;
};

/* Link-local IPv6 sources a VM may use besides the EUI-64 one of its MAC. */
#define RAYOS_LL6_MAX		2

/*
 * rayos_vms: key __u32 vm_id.  Replaced as one hash update, so a reader sees
 * the old record or the new one whole; gen selects the rule generation.
 * dir[] is indexed by enum rayos_dir, and dir[RAYOS_FW_HOST] holds the
 * rules for traffic to the host.  ll6 entries that are all zero are unused.
 *
 * Capability i is held when bit i of caps is set (a permanent grant), or
 * when cap_until_ns[i] is non-zero and bpf_ktime_get_boot_ns() is below it
 * (a temporary grant): the programs compare the deadline themselves, so a
 * temporary grant ends on time with the agent stopped or killed.  The boot
 * clock counts suspend and ignores wall-clock changes.
 */
struct rayos_vm {
	__u32 vm_id;
	__u32 slot;		/* dense index into per-VM per-CPU arrays */
	__u64 caps;		/* 1 << enum rayos_cap */
	__u64 policy_version;	/* rayos_policy_info.version that wrote it */
	__u8  gen;		/* 0 or 1: generation of this VM's rule entries */
	__u8  flags;		/* RAYOS_VMF_* */
	__u8  mac[6];
	struct rayos_dir_policy dir[RAYOS_FW_DIRS];
	struct rayos_ctl_limit ctl[RAYOS_CTL_MAX];	/* by enum rayos_ctl_kind */
	__u8  ll6[RAYOS_LL6_MAX][16];	/* extra link-local sources, network order */
	__u64 cap_until_ns[RAYOS_CAP_COUNT];	/* CLOCK_BOOTTIME; 0 = no temporary grant */
};

/*
 * Delegation (rayos_cap_state, ARRAY indexed by rayos_vm.slot).  Each slot
 * holds the VM in it (vm_id guards a slot reused by another VM), a copy of
 * that VM's own grants, so that a walk up a delegation chain reads only this
 * array, and per capability the link it was delegated through.  A VM holds
 * capability c when its own record grants it (rayos_vm.caps bit or an
 * unexpired cap_until_ns) or when link[c] names a delegator that, at this
 * moment, holds c itself: its own grant, or its own link, at most
 * RAYOS_CAP_MAX_DEPTH links up (A->B->C->D).  Every link on the way must be
 * unexpired and its slot must still hold the VM it names; so revoking or
 * expiry at any link ends everything below it in the same instant, with the
 * agent dead.  A quarantined delegator (RAYOS_VMF_QUARANTINE) delegates
 * nothing.  Losing CAP_ADMIN does not end links: it is checked when
 * delegating only.
 */
#define RAYOS_CAP_MAX_DEPTH	3

struct rayos_cap_link {
	__u32 from_vm;		/* the delegator; 0 = no link */
	__u32 from_slot;	/* its rayos_vm.slot when the link was made */
	__u64 until_ns;		/* CLOCK_BOOTTIME end of the link; 0 = none */
};

struct rayos_cap_state {
	__u32 vm_id;		/* VM in this slot; 0 = free */
	__u8  flags;		/* copy of rayos_vm.flags */
	__u8  pad[3];
	__u64 caps;		/* copy of rayos_vm.caps */
	__u64 cap_until_ns[RAYOS_CAP_COUNT];	/* copy of rayos_vm.cap_until_ns */
	struct rayos_cap_link link[RAYOS_CAP_COUNT];
};

/*
 * rayos_cap_cache (PERCPU_ARRAY by slot): the effective capabilities the
 * last walk found, so that a packet or an open of a VM with a temporary or
 * delegated capability pays two array lookups instead of the boot clock
 * (~35 ns here) and the walk.  Valid while epoch equals rayos_cap_epoch
 * (bumped by the loader after every change of a record's grants or of a
 * link), the revoke-all switch's epoch is the one of the fill (a revoke-all
 * of a delegator ends the links below it at the switch's store) and
 * jiffies have not moved since the fill; a walk that
 * found a deadline closer than RAYOS_CAP_CACHE_MARGIN_NS is not cached at
 * all, so expiry is judged against the precise boot clock.
 */
#define RAYOS_CAP_CACHE_MARGIN_NS	20000000ULL	/* 5 ticks at HZ=250 */

struct rayos_cap_cache {
	__u32 vm_id;
	__u32 epoch;		/* rayos_cap_epoch at the fill */
	__u64 caps;		/* effective capabilities */
	__u64 tick;		/* bpf_jiffies64() at the fill; 0 = invalid */
	__u64 sw_epoch;		/* rayos_cap_switch.epoch at the fill */
};

/*
 * revoke-all: one switch for many VMs.  The agent first writes, for each
 * selected slot, the capabilities to take and the epoch they belong to
 * (rayos_cap_revoke), then stores that epoch in the single rayos_cap_switch
 * entry: the one 8-byte store at which every selected VM loses them at once,
 * for every program.  An entry counts while its epoch is nonzero and not
 * above the switch's.  Afterwards the agent rewrites the VMs' records without
 * those capabilities and only then clears the entries and the armed flag,
 * so the fast path (armed == 0) costs one inlined array lookup.  Both maps
 * are BPF_F_MMAPABLE: the agent writes them with plain ordered stores.
 */
struct rayos_cap_switch {
	__u64 epoch;		/* the newest revoke-all in force */
	__u64 armed;		/* nonzero while rayos_cap_revoke has entries */
};

struct rayos_cap_revoke {
	__u64 epoch;		/* 0: none; counts once rayos_cap_switch.epoch >= it */
	__u64 mask;		/* 1 << enum rayos_cap taken from this slot */
};

/* Port key "kind": an exact port, or every port of a protocol. */
enum rayos_port_kind {
	RAYOS_PORT_EXACT = 0,
	RAYOS_PORT_ANY = 1,
};

/*
 * rayos_fw_port: exact ports (and ICMP types, in port_host) and per-protocol
 * wildcards.  The compiler folds every less specific rule into the more
 * specific entries, so the first hit of exact -> range -> proto-any ->
 * any-any carries the complete bitmap.
 */
struct rayos_fw_port_key {
	__u32 vm_id;
	__u8  gen;
	__u8  dir;		/* enum rayos_dir, or RAYOS_FW_HOST */
	__u8  proto;		/* IPPROTO_*, or RAYOS_PROTO_ANY */
	__u8  kind;		/* enum rayos_port_kind */
	__u16 port_host;	/* port (host order) or ICMP type; 0 for ANY */
	__u16 pad;
};

struct rayos_fw_bits {
	__u64 rules;		/* bitmap of rules that match this key */
};

/* rayos_fw_range (LPM): port ranges split into prefixes over port_be. */
struct rayos_fw_range_key {
	__u32 prefixlen;	/* 64 + port prefix length (0..16) */
	__u32 vm_id;		/* matched whole, so host order */
	__u8  gen;
	__u8  dir;
	__u8  proto;
	__u8  pad;
	__u16 port_be;
	__u16 pad2;
};
#define RAYOS_FW_RANGE_PREFIX	64	/* bits of vm_id..pad matched exactly */

/* rayos_fw_cidr4 / rayos_fw_cidr6 (LPM): remote address of the packet. */
struct rayos_fw_cidr4_key {
	__u32 prefixlen;	/* 64 + CIDR length */
	__u32 vm_id;		/* matched whole, so host order */
	__u8  gen;
	__u8  dir;
	__u8  pad[2];
	__u32 addr_be;
};

struct rayos_fw_cidr6_key {
	__u32 prefixlen;	/* 64 + CIDR length */
	__u32 vm_id;		/* matched whole, so host order */
	__u8  gen;
	__u8  dir;
	__u8  pad[2];
	__u8  addr[16];
};
#define RAYOS_FW_CIDR_PREFIX	64	/* bits of vm_id, gen, dir, pad */

/*
 * rayos_fw_tab (HASH): the same port-range and CIDR bitmaps as the LPM tries
 * above, for one VM, generation and direction, as interval tables searched
 * in a fixed number of steps (log2 of the size) inside one map value.  The
 * cost of a lookup then depends on the table size only, not on how many
 * entries other VMs have in the shared tries: the tries are walked in
 * proportion to the whole host's entries (DESIGN.md).  A dimension with
 * more intervals than its table holds stays in its trie.
 *
 * Each table lists interval starts in ascending order, the first one 0; an
 * interval runs to the next start, and its bits are what the LPM lookup
 * would return there (0: no entry).  Unused cells repeat the last interval,
 * so "the last start <= x" can be found without knowing the count.
 * Values are host order: ranges as proto << 16 | port, IPv6 as [high 64
 * bits, low 64 bits].
 *
 * The port table, when the direction's whole port dimension fits, answers
 * what the rayos_fw_port lookups, exact -> range -> protocol-wide -> any,
 * would: keys are proto << 17 | 1 << 16 | port for packets with ports and
 * proto << 17 for packets without (so ICMP type 0 and "no type" differ).
 * The direction then has no rayos_fw_port or rayos_fw_range entries.
 */
#define RAYOS_TAB_PORTS		64	/* powers of two */
#define RAYOS_TAB_RANGES	32
#define RAYOS_TAB_CIDR4		64
#define RAYOS_TAB_CIDR6		32

struct rayos_fw_tab_key {
	__u32 vm_id;
	__u8  gen;
	__u8  dir;		/* enum rayos_dir, or RAYOS_FW_HOST */
	__u16 pad;
};

struct rayos_fw_tab {
	__u32 port_lo[RAYOS_TAB_PORTS];
	__u64 port_bits[RAYOS_TAB_PORTS];
	__u32 range_lo[RAYOS_TAB_RANGES];
	__u32 cidr4_lo[RAYOS_TAB_CIDR4];
	__u64 range_bits[RAYOS_TAB_RANGES];
	__u64 cidr4_bits[RAYOS_TAB_CIDR4];
	__u64 cidr6_lo[RAYOS_TAB_CIDR6][2];
	__u64 cidr6_bits[RAYOS_TAB_CIDR6];
};

/* rayos_policy: ARRAY of one. The version the agent applied last. */
struct rayos_policy_info {
	__u64 version;		/* increases by one per applied policy */
	__u64 applied_ns;	/* CLOCK_REALTIME of the apply */
	__u32 nr_vms;
	__u32 pad;
	__u8  digest[32];	/* SHA-256 of the canonical compiled policy */
};

#endif /* RAYOS_ABI_POLICY_H */
