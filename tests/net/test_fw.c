// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * BPF_PROG_TEST_RUN cases for rayos_from_vm / rayos_to_vm: anti-spoofing,
 * DHCP/RA hygiene (chaddr, the DHCP mark), link-local sources, link-control
 * rate limits, host protection, firewall (ports, ranges, nested CIDRs,
 * defaults), flow tracking, ICMP errors, fragments, malformed frames, VLAN,
 * EtherTypes, rate limiting, counters and ring-buffer events.  Each case writes the maps the way the
 * agent does, runs frames and checks verdict, reason counter and rule counter.
 */
#include "agent/policy/policy.h"
#include "tests/net/net_fixture.h"

#include <stddef.h>

#include <bpf/libbpf.h>

#define ANY_PORT	0	/* trule.lo == hi == 0: every port */
#define IN		RAYOS_DIR_IN
#define OUT		RAYOS_DIR_OUT
#define HOST		RAYOS_FW_HOST
#define NO_RULE		-1
#define TCP		6
#define UDP		17
#define ICMP		1
#define ICMP6		58
#define GRE		47
#define SYN		0x02
#define ACK		0x10

/* ---- policy: rules in first-match order, compiled like the agent does ---- */

/* One rule: protocol (RAYOS_PROTO_ANY), port range (0,0 = all; ICMP types
 * for ICMP), optional CIDR on the remote address. */
struct trule {
	uint8_t action;
	uint8_t proto;
	uint16_t lo, hi;
	const char *cidr;
};

struct tdir {
	uint8_t default_action;
	uint64_t rate, burst;
	int nr;
	struct trule r[12];
	uint8_t cap_rules;	/* the last cap_rules of r are a CAP_NETWORK port limit's */
};

struct tpolicy {
	uint8_t vm_flags;	/* RAYOS_VMF_* */
	bool no_cap_network;	/* the record lacks CAP_NETWORK (others have it) */
	uint32_t bind;		/* RAYOS_BINDF_*; 0 = unbound */
	struct tdir dir[RAYOS_FW_DIRS];	/* IN, OUT, HOST (zero: deny, no rules) */
	struct rayos_ctl_limit ctl[RAYOS_CTL_MAX];	/* zero: unlimited */
	const char *ll6;	/* one extra link-local source */
};

static void put_port(uint8_t dir, uint8_t proto, uint8_t kind, uint16_t port, uint64_t bits)
{
	struct rayos_fw_port_key k = { .vm_id = VM_ID, .gen = 0, .dir = dir, .proto = proto,
				       .kind = kind, .port_host = port };
	struct rayos_fw_bits v = { .rules = bits };

	if (bpf_map_update_elem(fx.map[RAYOS_MAP_FW_PORT], &k, &v, BPF_ANY))
		tap_diag("rayos_fw_port update: %s", strerror(errno));
}

/* Port range [lo, hi] split into aligned prefixes of port_be. */
static void put_range(uint8_t dir, uint8_t proto, uint32_t lo, uint32_t hi, uint64_t bits)
{
	while (lo <= hi) {
		uint32_t size = lo ? (lo & -lo) : 65536;
		struct rayos_fw_range_key k = { .vm_id = VM_ID, .dir = dir, .proto = proto };
		struct rayos_fw_bits v = { .rules = bits };
		int plen = 16;

		while (lo + size - 1 > hi)
			size >>= 1;
		for (uint32_t s = size; s > 1; s >>= 1)
			plen--;
		k.prefixlen = RAYOS_FW_RANGE_PREFIX + plen;
		k.port_be = htons(lo);
		if (bpf_map_update_elem(fx.map[RAYOS_MAP_FW_RANGE], &k, &v, BPF_ANY))
			tap_diag("rayos_fw_range update: %s", strerror(errno));
		lo += size;
	}
}

/* Bits of vm_id..pad before the address, from the layout like the agent's
 * compiler (RAYOS_FW_CIDR_PREFIX in bpf/abi/policy.h says 48; it is 64). */
#define CIDR_KEY_BITS ((offsetof(struct rayos_fw_cidr4_key, addr_be) - \
		       offsetof(struct rayos_fw_cidr4_key, vm_id)) * 8)

struct tcidr {
	int family;
	int plen;
	uint8_t addr[16];
};

static struct tcidr parse_cidr(const char *s)
{
	struct tcidr c = { 0 };
	char buf[64];
	char *slash;

	snprintf(buf, sizeof(buf), "%s", s);
	slash = strchr(buf, '/');
	*slash = '\0';
	c.plen = atoi(slash + 1);
	c.family = strchr(buf, ':') ? AF_INET6 : AF_INET;
	inet_pton(c.family, buf, c.addr);
	return c;
}

static bool cidr_contains(const struct tcidr *outer, const struct tcidr *inner)
{
	if (outer->family != inner->family || outer->plen > inner->plen)
		return false;
	for (int b = 0; b < outer->plen; b++)
		if (((outer->addr[b / 8] ^ inner->addr[b / 8]) >> (7 - b % 8)) & 1)
			return false;
	return true;
}

/*
 * Fold the rules of one direction into map entries: every more specific
 * entry carries the bits of every less specific rule that also matches it
 * (see rayos_fw_port_key), nested CIDRs carry their parents' bits.
 */
static uint8_t compile_dir(uint8_t dir, const struct tdir *d, struct rayos_dir_policy *dp)
{
	uint64_t any_any = 0, proto_any[256] = { 0 };
	uint8_t flags = 0;

	dp->default_action = d->default_action;
	dp->rate_bytes = d->rate;
	dp->burst_bytes = d->burst;
	dp->nr_rules = d->nr;
	dp->cap_rules = d->cap_rules;
	for (int i = 0; i < d->nr; i++) {
		const struct trule *r = &d->r[i];

		if (r->action == RAYOS_ACT_ALLOW)
			dp->allow_bits |= 1ULL << i;
		if (!r->cidr)
			dp->cidr_wild_bits |= 1ULL << i;
		if (r->proto == RAYOS_PROTO_ANY)
			any_any |= 1ULL << i;
		else if (!r->lo && !r->hi)
			proto_any[r->proto] |= 1ULL << i;
	}
	for (int p = 0; p < 255; p++)
		if (proto_any[p])
			put_port(dir, p, RAYOS_PORT_ANY, 0, proto_any[p] | any_any);
	if (any_any)
		put_port(dir, RAYOS_PROTO_ANY, RAYOS_PORT_ANY, 0, any_any);

	for (int i = 0; i < d->nr; i++) {
		const struct trule *r = &d->r[i];
		uint64_t fold = proto_any[r->proto] | any_any;

		if (r->proto == RAYOS_PROTO_ANY || (!r->lo && !r->hi))
			continue;
		if (r->lo == r->hi) {
			uint64_t bits = fold;

			for (int j = 0; j < d->nr; j++)	/* ranges and exacts covering it */
				if (d->r[j].proto == r->proto && (d->r[j].lo || d->r[j].hi) &&
				    d->r[j].lo <= r->lo && r->lo <= d->r[j].hi)
					bits |= 1ULL << j;
			put_port(dir, r->proto, RAYOS_PORT_EXACT, r->lo, bits);
			continue;
		}
		/* Elementary intervals of this range against every other range
		 * of the protocol, each with the union of the covering rules. */
		uint32_t cuts[34], nr_cuts = 0;

		cuts[nr_cuts++] = r->lo;
		cuts[nr_cuts++] = r->hi + 1u;
		for (int j = 0; j < d->nr; j++) {
			const struct trule *o = &d->r[j];

			if (o->proto != r->proto || o->lo == o->hi)
				continue;
			if (o->lo > r->lo && o->lo <= r->hi)
				cuts[nr_cuts++] = o->lo;
			if (o->hi + 1u > r->lo && o->hi < r->hi)
				cuts[nr_cuts++] = o->hi + 1u;
		}
		for (uint32_t a = 0; a < nr_cuts; a++)
			for (uint32_t b = a + 1; b < nr_cuts; b++)
				if (cuts[b] < cuts[a]) {
					uint32_t t = cuts[a];

					cuts[a] = cuts[b];
					cuts[b] = t;
				}
		for (uint32_t c = 0; c + 1 < nr_cuts; c++) {
			uint32_t lo = cuts[c], hi = cuts[c + 1] - 1;
			uint64_t bits = fold;

			if (lo > hi)
				continue;
			for (int j = 0; j < d->nr; j++)
				if (d->r[j].proto == r->proto && d->r[j].lo != d->r[j].hi &&
				    d->r[j].lo <= lo && hi <= d->r[j].hi)
					bits |= 1ULL << j;
			put_range(dir, r->proto, lo, hi, bits);
		}
		flags |= RAYOS_DIRF_PORT_RANGES;
	}

	for (int i = 0; i < d->nr; i++) {
		struct tcidr c;
		uint64_t bits = 0;

		if (!d->r[i].cidr)
			continue;
		c = parse_cidr(d->r[i].cidr);
		for (int j = 0; j < d->nr; j++) {
			struct tcidr o;

			if (!d->r[j].cidr)
				continue;
			o = parse_cidr(d->r[j].cidr);
			if (cidr_contains(&o, &c))
				bits |= 1ULL << j;
		}
		if (c.family == AF_INET) {
			struct rayos_fw_cidr4_key k = { .prefixlen = CIDR_KEY_BITS + c.plen,
							.vm_id = VM_ID, .dir = dir };
			struct rayos_fw_bits v = { .rules = bits };

			memcpy(&k.addr_be, c.addr, 4);
			bpf_map_update_elem(fx.map[RAYOS_MAP_FW_CIDR4], &k, &v, BPF_ANY);
			flags |= RAYOS_DIRF_CIDR4;
		} else {
			struct rayos_fw_cidr6_key k = { .prefixlen = CIDR_KEY_BITS + c.plen,
							.vm_id = VM_ID, .dir = dir };
			struct rayos_fw_bits v = { .rules = bits };

			memcpy(k.addr, c.addr, 16);
			bpf_map_update_elem(fx.map[RAYOS_MAP_FW_CIDR6], &k, &v, BPF_ANY);
			flags |= RAYOS_DIRF_CIDR6;
		}
	}
	return flags;
}

/* Every entry of one LPM map, keys and values, as the compiler's structs. */
#define READ_ALL(fd, arr, nr) do {						\
	__typeof__((arr)[0].key) __k, __prev;					\
	bool __first = true;							\
	(nr) = 0;								\
	while ((nr) < sizeof(arr) / sizeof((arr)[0]) &&				\
	       !bpf_map_get_next_key(fd, __first ? NULL : &__prev, &__k)) {	\
		__first = false;						\
		__prev = __k;							\
		(arr)[nr].key = __k;						\
		if (!bpf_map_lookup_elem(fd, &__k, &(arr)[nr].val))		\
			(nr)++;							\
	}									\
} while (0)

/*
 * Do what the agent's compiler does after folding (agent/policy/policy_compile.c
 * tabulate()): move each direction's port dimension and CIDRs into its
 * interval table where they fit, and take them out of the hash and the
 * tries.  The cases then run again through fwtab.bpf.h instead of the map
 * lookups.  Returns whether anything moved.
 */
static bool tabulate(struct rayos_vm *vm)
{
	static struct compiled_port pt[256];
	static struct compiled_range r[256];
	static struct compiled_cidr4 c4[64];
	static struct compiled_cidr6 c6[64];
	size_t np, nr, n4, n6;
	bool moved = false;

	READ_ALL(fx.map[RAYOS_MAP_FW_PORT], pt, np);
	READ_ALL(fx.map[RAYOS_MAP_FW_RANGE], r, nr);
	READ_ALL(fx.map[RAYOS_MAP_FW_CIDR4], c4, n4);
	READ_ALL(fx.map[RAYOS_MAP_FW_CIDR6], c6, n6);
	for (int d = 0; d < RAYOS_FW_DIRS; d++) {
		struct rayos_fw_tab_key k = { .vm_id = VM_ID, .dir = d };
		struct rayos_fw_tab tab;
		unsigned int got = fw_tab_build(&tab, d, pt, np, r, nr, c4, n4, c6, n6);

		if (!got)
			continue;
		if (bpf_map_update_elem(fx.map[RAYOS_MAP_FW_TAB], &k, &tab, BPF_ANY))
			tap_diag("rayos_fw_tab update: %s", strerror(errno));
		vm->dir[d].flags |= got;
		for (size_t i = 0; (got & RAYOS_DIRF_PORT_TAB) && i < np; i++)
			if (pt[i].key.dir == d)
				bpf_map_delete_elem(fx.map[RAYOS_MAP_FW_PORT], &pt[i].key);
		for (size_t i = 0; (got & (RAYOS_DIRF_PORT_TAB | RAYOS_DIRF_RANGE_TAB)) && i < nr; i++)
			if (r[i].key.dir == d)
				bpf_map_delete_elem(fx.map[RAYOS_MAP_FW_RANGE], &r[i].key);
		for (size_t i = 0; (got & RAYOS_DIRF_CIDR4_TAB) && i < n4; i++)
			if (c4[i].key.dir == d)
				bpf_map_delete_elem(fx.map[RAYOS_MAP_FW_CIDR4], &c4[i].key);
		for (size_t i = 0; (got & RAYOS_DIRF_CIDR6_TAB) && i < n6; i++)
			if (c6[i].key.dir == d)
				bpf_map_delete_elem(fx.map[RAYOS_MAP_FW_CIDR6], &c6[i].key);
		if (got & (RAYOS_DIRF_PORT_TAB | RAYOS_DIRF_RANGE_TAB))
			vm->dir[d].flags &= ~RAYOS_DIRF_PORT_RANGES;
		if (got & RAYOS_DIRF_CIDR4_TAB)
			vm->dir[d].flags &= ~RAYOS_DIRF_CIDR4;
		if (got & RAYOS_DIRF_CIDR6_TAB)
			vm->dir[d].flags &= ~RAYOS_DIRF_CIDR6;
		moved = true;
	}
	return moved;
}

/* Set: the next policy_apply keeps the flow table, as a publish does. */
static bool fx_keep_flows;

/* Replace the VM's whole state: rules, record (new policy_version), binding,
 * and forget flows, fragments, buckets and the event limiter.  With
 * with_tabs, ranges and CIDRs go to interval tables; returns whether any
 * did. */
static bool policy_apply_tabs(const struct tpolicy *pol, bool with_tabs)
{
	struct rayos_vm vm = { .vm_id = VM_ID, .slot = VM_SLOT, .gen = 0,
			       .flags = pol->vm_flags, .policy_version = fx.version++,
			       .caps = pol->no_cap_network ? 0 : 1ULL << RAYOS_CAP_NETWORK };
	uint32_t id = VM_ID;
	bool moved = false;

	map_clear(fx.map[RAYOS_MAP_FW_PORT], sizeof(struct rayos_fw_port_key));
	map_clear(fx.map[RAYOS_MAP_FW_RANGE], sizeof(struct rayos_fw_range_key));
	map_clear(fx.map[RAYOS_MAP_FW_CIDR4], sizeof(struct rayos_fw_cidr4_key));
	map_clear(fx.map[RAYOS_MAP_FW_CIDR6], sizeof(struct rayos_fw_cidr6_key));
	map_clear(fx.map[RAYOS_MAP_FW_TAB], sizeof(struct rayos_fw_tab_key));
	if (!fx_keep_flows) {
		map_clear(fx.map[RAYOS_MAP_CT4], sizeof(struct rayos_ct4_key));
		map_clear(fx.map[RAYOS_MAP_CT6], sizeof(struct rayos_ct6_key));
	}
	map_clear(fx.map[RAYOS_MAP_FRAG], sizeof(struct rayos_frag_key));
	for (int d = 0; d < RAYOS_DIR_MAX; d++)
		array_zero(fx.map[RAYOS_MAP_TBF], VM_SLOT * RAYOS_DIR_MAX + d,
			   sizeof(struct rayos_tbf), false);
	array_zero(fx.map[RAYOS_MAP_EV_RATE], VM_SLOT, sizeof(uint64_t), true);
	for (int k = 0; k < RAYOS_CTL_MAX; k++)
		array_zero(fx.map[RAYOS_MAP_CTL_RATE], VM_SLOT * RAYOS_CTL_MAX + k,
			   sizeof(struct rayos_tbf), false);

	pkt_mac(vm.mac, VM_MAC);
	for (int d = 0; d < RAYOS_FW_DIRS; d++)
		vm.dir[d].flags = compile_dir(d, &pol->dir[d], &vm.dir[d]);
	memcpy(vm.ctl, pol->ctl, sizeof(vm.ctl));
	if (pol->ll6)
		pkt_ip6(vm.ll6[0], pol->ll6);
	if (with_tabs)
		moved = tabulate(&vm);
	if (bpf_map_update_elem(fx.map[RAYOS_MAP_VMS], &id, &vm, BPF_ANY))
		tap_diag("rayos_vms update: %s", strerror(errno));
	bind_set(pol->bind, 0);
	iface_set(true);
	return moved;
}

static void policy_apply(const struct tpolicy *pol)
{
	policy_apply_tabs(pol, false);
}

/* What the publisher does to a VM whose policy changed: rewrite its record
 * with a new policy_version (rules here stay the same). */
/* A new policy version of the same record; set_flags ORed into its flags. */
static void vm_bump_version_caps(uint8_t set_flags, uint64_t clear_caps, uint64_t set_caps)
{
	struct rayos_vm vm;
	uint32_t id = VM_ID;

	if (bpf_map_lookup_elem(fx.map[RAYOS_MAP_VMS], &id, &vm))
		return;
	vm.policy_version = fx.version++;
	vm.flags |= set_flags;
	vm.caps = (vm.caps & ~clear_caps) | set_caps;
	bpf_map_update_elem(fx.map[RAYOS_MAP_VMS], &id, &vm, BPF_ANY);
	iface_sync();
}

static void vm_bump_version_flags(uint8_t set_flags)
{
	vm_bump_version_caps(set_flags, 0, 0);
}

static void vm_bump_version(void)
{
	vm_bump_version_flags(0);
}

/* ---- packets ---- */

enum pkind { K_IP, K_ARP, K_ND, K_DHCP, K_RAW };

/* A frame, described.  OUT frames default to VM_MAC -> HOST_MAC, IN frames
 * the reverse.  Addresses with ':' are IPv6.  ICMP: dport is the type,
 * sport the echo id. */
struct pd {
	enum pkind kind;
	const char *src, *dst;
	uint8_t proto;
	uint16_t sport, dport;
	uint8_t tcp_flags;
	const char *smac;	/* Ethernet source override */
	uint16_t vlan;		/* one 802.1Q tag with this VID */
	uint8_t ipopts;		/* IPv4 option bytes */
	uint16_t frag;		/* IPv4 frag_off field; IPv6: offset8 << 3 | M */
	bool v6frag;		/* add an IPv6 fragment header */
	uint32_t frag_id;
	bool hbh;		/* IPv6 hop-by-hop header before L4 */
	uint16_t ethertype;	/* K_RAW */
	uint16_t op;		/* ARP op */
	const char *arp_sha;	/* ARP sender MAC (default: Ethernet source) */
	const char *target;	/* ND target */
	const char *lladdr;	/* ND SLLA/TLLA */
	uint8_t dhcp_op, dhcp_type;
	const char *chaddr;	/* DHCP chaddr (default: VM_MAC) */
	uint8_t htype, hlen;	/* DHCP htype/hlen overrides (0: Ethernet, 6) */
	size_t payload;
	size_t trunc;		/* cut to this many bytes */
};

static void build(struct pkt *p, int dir, const struct pd *d)
{
	uint8_t smac[6], dmac[6], vmmac[6], hostmac[6];
	bool v6 = d->src && strchr(d->src, ':');
	uint16_t ethertype = d->kind == K_RAW ? d->ethertype
			   : d->kind == K_ARP ? 0x0806 : v6 ? 0x86dd : 0x0800;

	pkt_mac(vmmac, VM_MAC);
	pkt_mac(hostmac, HOST_MAC);
	memcpy(smac, dir == OUT ? vmmac : hostmac, 6);
	memcpy(dmac, dir == OUT ? hostmac : vmmac, 6);
	if (d->smac)
		pkt_mac(smac, d->smac);

	pkt_init(p);
	if (d->vlan) {
		pkt_eth(p, dmac, smac, 0x8100);
		pkt_vlan(p, d->vlan, ethertype);
	} else {
		pkt_eth(p, dmac, smac, ethertype);
	}
	switch (d->kind) {
	case K_RAW:
		pkt_payload(p, 46, 0xab);
		break;
	case K_ARP: {
		uint8_t sha[6], tha[6] = { 0 };

		memcpy(sha, smac, 6);
		if (d->arp_sha)
			pkt_mac(sha, d->arp_sha);
		pkt_arp(p, d->op, sha, d->src, tha, d->dst);
		break;
	}
	case K_ND: {
		uint8_t ll[6];

		if (d->lladdr)
			pkt_mac(ll, d->lladdr);
		pkt_ipv6(p, d->src, d->dst, ICMP6);
		pkt_nd(p, d->dport, d->target, d->lladdr ? ll : NULL);
		break;
	}
	case K_DHCP:
	case K_IP: {
		uint8_t l4 = d->kind == K_DHCP ? UDP : d->proto;

		if (v6) {
			uint8_t first = d->hbh ? 0 : d->v6frag ? 44 : l4;

			pkt_ipv6(p, d->src, d->dst, first);
			if (d->hbh)
				pkt_ipv6_hbh(p, d->v6frag ? 44 : l4, 0);
			if (d->v6frag)
				pkt_ipv6_frag(p, l4, d->frag >> 3, d->frag & 1, d->frag_id);
		} else {
			pkt_ipv4(p, d->src, d->dst, l4, d->ipopts, d->frag, d->frag_id);
		}
		/* A later fragment carries payload only. */
		if ((!v6 && (d->frag & 0x1fff)) || (v6 && d->v6frag && (d->frag >> 3))) {
			pkt_payload(p, 64, 0xcd);
			break;
		}
		if (d->kind == K_DHCP) {
			uint8_t chaddr[6];

			pkt_mac(chaddr, d->chaddr ? d->chaddr : VM_MAC);
			pkt_udp(p, d->sport, d->dport);
			pkt_dhcp(p, d->dhcp_op, d->dhcp_type, chaddr);
			if (d->htype)
				p->buf[p->l4_off + 8 + 1] = d->htype;
			if (d->hlen)
				p->buf[p->l4_off + 8 + 2] = d->hlen;
		} else if (l4 == TCP) {
			pkt_tcp(p, d->sport, d->dport, d->tcp_flags);
		} else if (l4 == UDP) {
			pkt_udp(p, d->sport, d->dport);
		} else if (l4 == ICMP || l4 == ICMP6) {
			pkt_icmp(p, d->dport, 0, d->sport);
		} else {
			pkt_payload(p, 20, 0);
		}
		break;
	}
	}
	if (d->payload)
		pkt_payload(p, d->payload, 0x5a);
	pkt_finish(p);
	if (d->trunc)
		pkt_truncate(p, d->trunc);
}

/* ---- table ---- */

struct step {
	int dir;
	struct pd pkt;
	int verdict;
	int reason;
	int rule;		/* NO_RULE or the rule counter that must move */
};

struct fw_case {
	const char *name;
	const struct tpolicy *pol;
	struct step steps[4];
};

#define ALLOW(...)	{ RAYOS_ACT_ALLOW, __VA_ARGS__ }
#define DENY(...)	{ RAYOS_ACT_DENY, __VA_ARGS__ }
#define V4(s, d)	.src = (s), .dst = (d)
#define PASS(rsn)	TC_ACT_OK, RAYOS_RSN_##rsn
#define DROP(rsn)	TC_ACT_SHOT, RAYOS_RSN_##rsn

/* Open both ways (the host too), bound, MAC-locked: isolates anti-spoofing. */
static const struct tpolicy pol_open = {
	.vm_flags = RAYOS_VMF_MAC,
	.bind = RAYOS_BINDF_IPV4 | RAYOS_BINDF_IPV6,
	.dir = { [IN] = { RAYOS_ACT_ALLOW }, [OUT] = { RAYOS_ACT_ALLOW },
		 [HOST] = { RAYOS_ACT_ALLOW } },
};

/* Closed both ways and unbound: what a fresh VM looks like. */
static const struct tpolicy pol_closed_unbound = {
	.vm_flags = RAYOS_VMF_MAC,
	.dir = { [IN] = { RAYOS_ACT_DENY }, [OUT] = { RAYOS_ACT_DENY } },
};

static const struct tpolicy pol_closed = {
	.vm_flags = RAYOS_VMF_MAC,
	.bind = RAYOS_BINDF_IPV4 | RAYOS_BINDF_IPV6,
	.dir = { [IN] = { RAYOS_ACT_DENY }, [OUT] = { RAYOS_ACT_DENY } },
};

/* Guest -> outside: ports, a range with a shadowed exact port inside it,
 * nested CIDRs, ICMP types, an IPv6 CIDR.  Default deny. */
static const struct tpolicy pol_fw_out = {
	.vm_flags = RAYOS_VMF_MAC,
	.bind = RAYOS_BINDF_IPV4 | RAYOS_BINDF_IPV6,
	.dir = {
		[IN] = { RAYOS_ACT_DENY },
		[OUT] = { RAYOS_ACT_DENY, 0, 0, 8, {
			ALLOW(TCP, 22, 22),				/* 0 */
			DENY(TCP, 1000, 2000),				/* 1 */
			ALLOW(TCP, 1500, 1500),				/* 2: shadowed */
			ALLOW(UDP, 53, 53, "192.0.2.0/24"),		/* 3 */
			DENY(UDP, 0, 0, "192.0.2.128/25"),		/* 4: nested */
			ALLOW(UDP, 5000, 5010),				/* 5 */
			ALLOW(ICMP, 8, 8),				/* 6: echo */
			ALLOW(TCP, 443, 443, "2001:db8:1::/48"),	/* 7 */
		} },
	},
};

/* Outside -> guest: default allow with denies, a CIDR deny for any
 * protocol, an ICMPv6 type.  Default allow. */
static const struct tpolicy pol_fw_in = {
	.vm_flags = RAYOS_VMF_MAC,
	.bind = RAYOS_BINDF_IPV4 | RAYOS_BINDF_IPV6,
	.dir = {
		[IN] = { RAYOS_ACT_ALLOW, 0, 0, 4, {
			DENY(TCP, 3389, 3389),				/* 0 */
			ALLOW(ICMP6, 128, 128),				/* 1 */
			DENY(RAYOS_PROTO_ANY, 0, 0, "203.0.113.0/24"),	/* 2 */
			DENY(RAYOS_PROTO_ANY, 0, 0, "2001:db8:bad::/48"),	/* 3 */
		} },
		[OUT] = { RAYOS_ACT_ALLOW },
	},
};

/* Stateful: the guest may open HTTPS, DNS and ping; nothing comes in. */
static const struct tpolicy pol_ct = {
	.vm_flags = RAYOS_VMF_MAC,
	.bind = RAYOS_BINDF_IPV4 | RAYOS_BINDF_IPV6,
	.dir = {
		[IN] = { RAYOS_ACT_DENY },
		[OUT] = { RAYOS_ACT_DENY, 0, 0, 3, {
			ALLOW(TCP, 443, 443),				/* 0 */
			ALLOW(UDP, 53, 53),				/* 1 */
			ALLOW(ICMP, 8, 8),				/* 2 */
		} },
	},
};

/* Open both ways, but quarantined (the VM lost its policy while running):
 * the record flag alone must stop every frame, control traffic included. */
static const struct tpolicy pol_quarantine = {
	.vm_flags = RAYOS_VMF_MAC | RAYOS_VMF_QUARANTINE,
	.bind = RAYOS_BINDF_IPV4 | RAYOS_BINDF_IPV6,
	.dir = { [IN] = { RAYOS_ACT_ALLOW }, [OUT] = { RAYOS_ACT_ALLOW } },
};

/* Open both ways but the host: DNS on the bridge address and a jump port
 * on every host address only (the host section of the policy). */
static const struct tpolicy pol_host = {
	.vm_flags = RAYOS_VMF_MAC,
	.bind = RAYOS_BINDF_IPV4 | RAYOS_BINDF_IPV6,
	.dir = {
		[IN] = { RAYOS_ACT_ALLOW },
		[OUT] = { RAYOS_ACT_ALLOW },
		[HOST] = { RAYOS_ACT_DENY, 0, 0, 2, {
			ALLOW(UDP, 53, 53, HOST_IP "/32"),		/* 0 */
			ALLOW(TCP, 2222, 2222),				/* 1 */
		} },
	},
};

/* The host allows DNS, but the VM's own OUT rules do not: both must. */
static const struct tpolicy pol_host_out_deny = {
	.vm_flags = RAYOS_VMF_MAC,
	.bind = RAYOS_BINDF_IPV4,
	.dir = {
		[IN] = { RAYOS_ACT_DENY },
		[OUT] = { RAYOS_ACT_DENY },
		[HOST] = { RAYOS_ACT_DENY, 0, 0, 1, { ALLOW(UDP, 53, 53) } },
	},
};

/* Link-control buckets of one packet per second, burst three. */
static const struct tpolicy pol_ctl_rate = {
	.vm_flags = RAYOS_VMF_MAC,
	.bind = RAYOS_BINDF_IPV4 | RAYOS_BINDF_IPV6,
	.dir = { [IN] = { RAYOS_ACT_DENY }, [OUT] = { RAYOS_ACT_DENY } },
	.ctl = { [RAYOS_CTL_ARP] = { 1, 3 }, [RAYOS_CTL_ND] = { 1, 3 },
		 [RAYOS_CTL_DHCP] = { 1, 3 } },
};

/* A stable-privacy guest: the policy lists its link-local address. */
#define VM_LL_LISTED	"fe80::1c2d:3e4f:5a6b:7c8d"
static const struct tpolicy pol_ll6 = {
	.vm_flags = RAYOS_VMF_MAC,
	.bind = RAYOS_BINDF_IPV4 | RAYOS_BINDF_IPV6,
	.dir = { [IN] = { RAYOS_ACT_ALLOW }, [OUT] = { RAYOS_ACT_ALLOW },
		 [HOST] = { RAYOS_ACT_ALLOW } },
	.ll6 = VM_LL_LISTED,
};

/* No MAC in the policy: nothing to derive a link-local address from. */
static const struct tpolicy pol_no_mac = {
	.bind = RAYOS_BINDF_IPV4 | RAYOS_BINDF_IPV6,
	.dir = { [IN] = { RAYOS_ACT_ALLOW }, [OUT] = { RAYOS_ACT_ALLOW },
		 [HOST] = { RAYOS_ACT_ALLOW } },
};

/* Open both ways, bound, but without CAP_NETWORK: the record's missing
 * capability alone must stop every frame both ways, control traffic too. */
static const struct tpolicy pol_no_cap_network = {
	.vm_flags = RAYOS_VMF_MAC,
	.no_cap_network = true,
	.bind = RAYOS_BINDF_IPV4 | RAYOS_BINDF_IPV6,
	.dir = { [IN] = { RAYOS_ACT_ALLOW }, [OUT] = { RAYOS_ACT_ALLOW } },
};

/* A CAP_NETWORK port limit of 443 (as agent/policy/policy_compile.c builds
 * it: TCP and UDP outside the list denied, SCTP whole) after the firewall's
 * rules.  OUT allows tcp 22, tcp 443 and all of UDP, default deny; IN has
 * no rules of its own, default allow. */
#define LIMIT_443	DENY(TCP, 0, 442), DENY(TCP, 444, 65535), DENY(UDP, 0, 442), \
			DENY(UDP, 444, 65535), DENY(132, 0, 0)
static const struct tpolicy pol_cap_ports = {
	.vm_flags = RAYOS_VMF_MAC,
	.bind = RAYOS_BINDF_IPV4 | RAYOS_BINDF_IPV6,
	.dir = {
		[IN] = { RAYOS_ACT_ALLOW, .nr = 5, .r = { LIMIT_443 }, .cap_rules = 5 },
		[OUT] = { RAYOS_ACT_DENY, .nr = 8, .r = { ALLOW(TCP, 22, 22), ALLOW(TCP, 443, 443),
							  ALLOW(UDP, 0, 0), LIMIT_443 },
			  .cap_rules = 5 },
	},
};

/* The firewall allows tcp 22 only: a limit of 443 leaves nothing. */
static const struct tpolicy pol_cap_ports_narrow = {
	.vm_flags = RAYOS_VMF_MAC,
	.bind = RAYOS_BINDF_IPV4 | RAYOS_BINDF_IPV6,
	.dir = {
		[IN] = { RAYOS_ACT_DENY },
		[OUT] = { RAYOS_ACT_DENY, .nr = 6, .r = { ALLOW(TCP, 22, 22), LIMIT_443 },
			  .cap_rules = 5 },
	},
};

static const struct tpolicy pol_in_deny_raw = {
	.vm_flags = RAYOS_VMF_MAC,
	.bind = RAYOS_BINDF_IPV4,
	.dir = { [IN] = { RAYOS_ACT_DENY }, [OUT] = { RAYOS_ACT_ALLOW } },
};

#define VMOUT(...)	{ .kind = K_IP, V4(VM_IP, "198.51.100.1"), __VA_ARGS__ }
#define VMIN(...)	{ .kind = K_IP, V4("198.51.100.1", VM_IP), __VA_ARGS__ }

static const struct fw_case cases[] = {
	/* ---- anti-spoofing (OUT) ---- */
	{ "bound VM, own MAC and IPv4 source", &pol_open, {
		{ OUT, VMOUT(.proto = TCP, .sport = 40000, .dport = 80, .tcp_flags = SYN), PASS(PASS_DEFAULT), NO_RULE } } },
	{ "spoofed source MAC", &pol_open, {
		{ OUT, VMOUT(.proto = TCP, .sport = 40000, .dport = 80, .smac = "52:54:00:66:66:66"), DROP(SPOOF_MAC), NO_RULE } } },
	{ "spoofed IPv4 source", &pol_open, {
		{ OUT, { .kind = K_IP, V4("10.0.0.99", "198.51.100.1"), .proto = UDP, .sport = 1, .dport = 2 }, DROP(SPOOF_IP), NO_RULE } } },
	{ "unbound VM: IPv4 dropped", &pol_closed_unbound, {
		{ OUT, VMOUT(.proto = TCP, .sport = 40000, .dport = 80), DROP(UNBOUND), NO_RULE } } },
	{ "unbound VM: DHCPDISCOVER passes (default deny)", &pol_closed_unbound, {
		{ OUT, { .kind = K_DHCP, V4("0.0.0.0", "255.255.255.255"), .sport = 68, .dport = 67, .dhcp_op = 1, .dhcp_type = 1 }, PASS(PASS_CTRL), NO_RULE } } },
	{ "bound VM: unicast DHCPREQUEST renewal to host passes", &pol_closed, {
		{ OUT, { .kind = K_DHCP, V4(VM_IP, HOST_IP), .sport = 68, .dport = 67, .dhcp_op = 1, .dhcp_type = 3 }, PASS(PASS_CTRL), NO_RULE } } },
	{ "bound VM: DHCP from another IPv4 source dropped", &pol_closed, {
		{ OUT, { .kind = K_DHCP, V4("10.0.0.99", HOST_IP), .sport = 68, .dport = 67, .dhcp_op = 1, .dhcp_type = 3 }, DROP(SPOOF_IP), NO_RULE } } },
	{ "DISCOVER naming another MAC (chaddr) dropped", &pol_closed_unbound, {
		{ OUT, { .kind = K_DHCP, V4("0.0.0.0", "255.255.255.255"), .sport = 68, .dport = 67, .dhcp_op = 1, .dhcp_type = 1, .chaddr = "52:54:00:66:66:66" }, DROP(DHCP_CHADDR), NO_RULE } } },
	{ "REQUEST naming another MAC from the bound address dropped", &pol_closed, {
		{ OUT, { .kind = K_DHCP, V4(VM_IP, HOST_IP), .sport = 68, .dport = 67, .dhcp_op = 1, .dhcp_type = 7, .chaddr = "52:54:00:aa:bb:cc" }, DROP(DHCP_CHADDR), NO_RULE } } },
	{ "DHCP with a non-Ethernet htype or hlen dropped", &pol_closed_unbound, {
		{ OUT, { .kind = K_DHCP, V4("0.0.0.0", "255.255.255.255"), .sport = 68, .dport = 67, .dhcp_op = 1, .dhcp_type = 1, .htype = 6 }, DROP(DHCP_CHADDR), NO_RULE },
		{ OUT, { .kind = K_DHCP, V4("0.0.0.0", "255.255.255.255"), .sport = 68, .dport = 67, .dhcp_op = 1, .dhcp_type = 1, .hlen = 16 }, DROP(DHCP_CHADDR), NO_RULE } } },
	{ "BOOTREPLY sent to the server port dropped", &pol_closed_unbound, {
		{ OUT, { .kind = K_DHCP, V4("0.0.0.0", "255.255.255.255"), .sport = 68, .dport = 67, .dhcp_op = 2, .dhcp_type = 2 }, DROP(DHCP_CHADDR), NO_RULE } } },
	{ "DHCP client message cut before chaddr dropped", &pol_closed_unbound, {
		{ OUT, { .kind = K_DHCP, V4("0.0.0.0", "255.255.255.255"), .sport = 68, .dport = 67, .dhcp_op = 1, .dhcp_type = 1, .trunc = 14 + 20 + 8 + 30 }, DROP(DHCP_CHADDR), NO_RULE } } },
	{ "fragmented DHCP client message dropped", &pol_closed_unbound, {
		{ OUT, { .kind = K_DHCP, V4("0.0.0.0", "255.255.255.255"), .sport = 68, .dport = 67, .dhcp_op = 1, .dhcp_type = 1, .frag = 0x2000, .frag_id = 9 }, DROP(DHCP_CHADDR), NO_RULE } } },
	{ "DHCPv6 SOLICIT to ff02::1:2 passes outside the firewall", &pol_closed, {
		{ OUT, { .kind = K_IP, V4(VM_LL, "ff02::1:2"), .proto = UDP, .sport = 546, .dport = 547 }, PASS(PASS_CTRL), NO_RULE } } },
	{ "DHCPv6 client ports to a unicast address that is not the host meet the rules", &pol_closed, {
		{ OUT, { .kind = K_IP, V4(VM_IP6, "2001:db8:9::547"), .proto = UDP, .sport = 546, .dport = 547 }, DROP(DROP_DEFAULT), NO_RULE } } },
	{ "DHCP unicast to a server that is not the host meets the rules", &pol_closed, {
		{ OUT, { .kind = K_DHCP, V4(VM_IP, "198.51.100.67"), .sport = 68, .dport = 67, .dhcp_op = 1, .dhcp_type = 3 }, DROP(DROP_DEFAULT), NO_RULE } } },
	{ "rogue DHCPOFFER from guest", &pol_open, {
		{ OUT, { .kind = K_DHCP, V4(VM_IP, "255.255.255.255"), .sport = 67, .dport = 68, .dhcp_op = 2, .dhcp_type = 2 }, DROP(ROGUE_DHCP), NO_RULE } } },
	{ "rogue DHCPv6 ADVERTISE from guest", &pol_open, {
		{ OUT, { .kind = K_IP, V4(VM_LL, "fe80::1"), .proto = UDP, .sport = 547, .dport = 546 }, DROP(ROGUE_DHCP), NO_RULE } } },
	{ "DHCPOFFER to guest passes (default deny IN)", &pol_closed, {
		{ IN, { .kind = K_DHCP, V4(HOST_IP, VM_IP), .sport = 67, .dport = 68, .dhcp_op = 2, .dhcp_type = 2 }, PASS(PASS_CTRL), NO_RULE } } },
	{ "ARP request with own sender", &pol_closed, {
		{ OUT, { .kind = K_ARP, .op = 1, V4(VM_IP, HOST_IP) }, PASS(PASS_CTRL), NO_RULE } } },
	{ "ARP with spoofed sender IP", &pol_open, {
		{ OUT, { .kind = K_ARP, .op = 2, V4("10.0.0.1", "10.0.0.5") }, DROP(SPOOF_ARP), NO_RULE } } },
	{ "ARP with spoofed sender MAC", &pol_open, {
		{ OUT, { .kind = K_ARP, .op = 1, V4(VM_IP, HOST_IP), .arp_sha = "52:54:00:66:66:66" }, DROP(SPOOF_ARP), NO_RULE } } },
	{ "ARP probe (sender 0.0.0.0) from unbound VM", &pol_closed_unbound, {
		{ OUT, { .kind = K_ARP, .op = 1, V4("0.0.0.0", VM_IP) }, PASS(PASS_CTRL), NO_RULE } } },
	{ "ARP reply from 0.0.0.0", &pol_closed_unbound, {
		{ OUT, { .kind = K_ARP, .op = 2, V4("0.0.0.0", HOST_IP) }, DROP(SPOOF_ARP), NO_RULE } } },
	{ "ARP from unbound VM claiming an address", &pol_closed_unbound, {
		{ OUT, { .kind = K_ARP, .op = 1, V4(VM_IP, HOST_IP) }, DROP(SPOOF_ARP), NO_RULE } } },
	{ "ARP to guest bypasses default deny", &pol_closed, {
		{ IN, { .kind = K_ARP, .op = 1, V4(HOST_IP, VM_IP) }, PASS(PASS_CTRL), NO_RULE } } },
	{ "IPv6 EUI-64 link-local source", &pol_open, {
		{ OUT, { .kind = K_IP, V4(VM_LL, "fe80::1"), .proto = UDP, .sport = 5353, .dport = 5353 }, PASS(PASS_DEFAULT), NO_RULE } } },
	{ "IPv6 link-local source that is not the VM's", &pol_open, {
		{ OUT, { .kind = K_IP, V4("fe80::99", "fe80::1"), .proto = UDP, .sport = 5353, .dport = 5353 }, DROP(SPOOF_IP), NO_RULE },
		{ OUT, { .kind = K_IP, V4("fe80::1", "fe80::2"), .proto = ICMP6, .dport = 128 }, DROP(SPOOF_IP), NO_RULE } } },
	{ "NS from the router's link-local address", &pol_open, {
		{ OUT, { .kind = K_ND, V4("fe80::1", "ff02::1:ff00:2"), .dport = 135, .target = "fe80::2", .lladdr = VM_MAC }, DROP(SPOOF_IP), NO_RULE } } },
	{ "NS from an unbound global source", &pol_closed_unbound, {
		{ OUT, { .kind = K_ND, V4("2001:db8::99", "ff02::1:ff00:1"), .dport = 135, .target = "2001:db8::1", .lladdr = VM_MAC }, DROP(SPOOF_IP), NO_RULE } } },
	{ "link-local source the policy lists", &pol_ll6, {
		{ OUT, { .kind = K_IP, V4(VM_LL_LISTED, "fe80::1"), .proto = UDP, .sport = 5353, .dport = 5353 }, PASS(PASS_DEFAULT), NO_RULE },
		{ OUT, { .kind = K_ND, V4("::", "ff02::1:ff6b:7c8d"), .dport = 135, .target = VM_LL_LISTED }, PASS(PASS_CTRL), NO_RULE },
		{ OUT, { .kind = K_ND, V4(VM_LL_LISTED, "fe80::1"), .dport = 136, .target = VM_LL_LISTED, .lladdr = VM_MAC }, PASS(PASS_CTRL), NO_RULE },
		{ OUT, { .kind = K_IP, V4(VM_LL, "fe80::1"), .proto = UDP, .sport = 5353, .dport = 5353 }, PASS(PASS_DEFAULT), NO_RULE } } },
	{ "listed link-local: others still refused", &pol_ll6, {
		{ OUT, { .kind = K_IP, V4("fe80::1c2d:3e4f:5a6b:7c8e", "fe80::1"), .proto = UDP, .sport = 1, .dport = 2 }, DROP(SPOOF_IP), NO_RULE } } },
	{ "VM without a MAC: any link-local source", &pol_no_mac, {
		{ OUT, { .kind = K_IP, V4("fe80::99", "fe80::1"), .proto = UDP, .sport = 5353, .dport = 5353 }, PASS(PASS_DEFAULT), NO_RULE } } },
	{ "IPv6 bound global source", &pol_open, {
		{ OUT, { .kind = K_IP, V4(VM_IP6, "2001:db8:1::1"), .proto = TCP, .sport = 40000, .dport = 80 }, PASS(PASS_DEFAULT), NO_RULE } } },
	{ "IPv6 spoofed global source", &pol_open, {
		{ OUT, { .kind = K_IP, V4("2001:db8::99", "2001:db8:1::1"), .proto = TCP, .sport = 40000, .dport = 80 }, DROP(SPOOF_IP), NO_RULE } } },
	{ "IPv6 :: source outside DAD", &pol_open, {
		{ OUT, { .kind = K_IP, V4("::", "2001:db8:1::1"), .proto = UDP, .sport = 1, .dport = 2 }, DROP(SPOOF_IP), NO_RULE } } },
	{ "DAD NS for own link-local (default deny)", &pol_closed, {
		{ OUT, { .kind = K_ND, V4("::", "ff02::1:ff12:3456"), .dport = 135, .target = VM_LL }, PASS(PASS_CTRL), NO_RULE } } },
	{ "DAD NS for another address", &pol_open, {
		{ OUT, { .kind = K_ND, V4("::", "ff02::1:ff00:1"), .dport = 135, .target = "fe80::1" }, DROP(SPOOF_ND), NO_RULE } } },
	{ "NS resolving the router, own SLLA", &pol_closed, {
		{ OUT, { .kind = K_ND, V4(VM_LL, "ff02::1:ff00:1"), .dport = 135, .target = "fe80::1", .lladdr = VM_MAC }, PASS(PASS_CTRL), NO_RULE } } },
	{ "NS with another MAC as SLLA", &pol_open, {
		{ OUT, { .kind = K_ND, V4(VM_LL, "ff02::1:ff00:1"), .dport = 135, .target = "fe80::1", .lladdr = "52:54:00:66:66:66" }, DROP(SPOOF_ND), NO_RULE } } },
	{ "NA for own link-local", &pol_closed, {
		{ OUT, { .kind = K_ND, V4(VM_LL, "fe80::1"), .dport = 136, .target = VM_LL, .lladdr = VM_MAC }, PASS(PASS_CTRL), NO_RULE } } },
	{ "NA for own bound address", &pol_closed, {
		{ OUT, { .kind = K_ND, V4(VM_IP6, "fe80::1"), .dport = 136, .target = VM_IP6, .lladdr = VM_MAC }, PASS(PASS_CTRL), NO_RULE } } },
	{ "NA claiming the router's address", &pol_open, {
		{ OUT, { .kind = K_ND, V4(VM_LL, "ff02::1"), .dport = 136, .target = "fe80::1", .lladdr = VM_MAC }, DROP(SPOOF_ND), NO_RULE } } },
	{ "NA claiming another global address", &pol_open, {
		{ OUT, { .kind = K_ND, V4(VM_LL, "ff02::1"), .dport = 136, .target = "2001:db8::99" }, DROP(SPOOF_ND), NO_RULE } } },
	{ "RA from guest", &pol_open, {
		{ OUT, { .kind = K_IP, V4(VM_LL, "ff02::1"), .proto = ICMP6, .dport = 134 }, DROP(ROGUE_RA), NO_RULE } } },
	{ "NS to guest bypasses default deny", &pol_closed, {
		{ IN, { .kind = K_ND, V4("fe80::1", "ff02::1:ff12:3456"), .dport = 135, .target = VM_LL, .lladdr = HOST_MAC }, PASS(PASS_CTRL), NO_RULE } } },

	/* ---- link-control rates (OUT only) ---- */
	{ "ARP over the VM's rate dropped after the burst", &pol_ctl_rate, {
		{ OUT, { .kind = K_ARP, .op = 1, V4(VM_IP, "10.0.0.5") }, PASS(PASS_CTRL), NO_RULE },
		{ OUT, { .kind = K_ARP, .op = 1, V4(VM_IP, "10.0.0.6") }, PASS(PASS_CTRL), NO_RULE },
		{ OUT, { .kind = K_ARP, .op = 1, V4(VM_IP, "10.0.0.7") }, PASS(PASS_CTRL), NO_RULE },
		{ OUT, { .kind = K_ARP, .op = 1, V4(VM_IP, "10.0.0.8") }, DROP(ARP_RATE), NO_RULE } } },
	{ "ND over the VM's rate dropped after the burst", &pol_ctl_rate, {
		{ OUT, { .kind = K_ND, V4(VM_LL, "ff02::1:ff00:1"), .dport = 135, .target = "fe80::1", .lladdr = VM_MAC }, PASS(PASS_CTRL), NO_RULE },
		{ OUT, { .kind = K_ND, V4(VM_LL, "ff02::1:ff00:1"), .dport = 135, .target = "fe80::1", .lladdr = VM_MAC }, PASS(PASS_CTRL), NO_RULE },
		{ OUT, { .kind = K_ND, V4(VM_LL, "ff02::1:ff00:1"), .dport = 135, .target = "fe80::1", .lladdr = VM_MAC }, PASS(PASS_CTRL), NO_RULE },
		{ OUT, { .kind = K_ND, V4(VM_LL, "ff02::1:ff00:1"), .dport = 135, .target = "fe80::1", .lladdr = VM_MAC }, DROP(ND_RATE), NO_RULE } } },
	{ "DHCP client messages over the VM's rate dropped after the burst", &pol_ctl_rate, {
		{ OUT, { .kind = K_DHCP, V4("0.0.0.0", "255.255.255.255"), .sport = 68, .dport = 67, .dhcp_op = 1, .dhcp_type = 1 }, PASS(PASS_CTRL), NO_RULE },
		{ OUT, { .kind = K_DHCP, V4("0.0.0.0", "255.255.255.255"), .sport = 68, .dport = 67, .dhcp_op = 1, .dhcp_type = 1 }, PASS(PASS_CTRL), NO_RULE },
		{ OUT, { .kind = K_DHCP, V4("0.0.0.0", "255.255.255.255"), .sport = 68, .dport = 67, .dhcp_op = 1, .dhcp_type = 1 }, PASS(PASS_CTRL), NO_RULE },
		{ OUT, { .kind = K_DHCP, V4("0.0.0.0", "255.255.255.255"), .sport = 68, .dport = 67, .dhcp_op = 1, .dhcp_type = 1 }, DROP(DHCP_RATE), NO_RULE } } },
	{ "spoofed ARP counts as spoofing, not against the rate", &pol_ctl_rate, {
		{ OUT, { .kind = K_ARP, .op = 2, V4("10.0.0.1", "10.0.0.5") }, DROP(SPOOF_ARP), NO_RULE },
		{ OUT, { .kind = K_ARP, .op = 2, V4("10.0.0.1", "10.0.0.5") }, DROP(SPOOF_ARP), NO_RULE },
		{ OUT, { .kind = K_ARP, .op = 2, V4("10.0.0.1", "10.0.0.5") }, DROP(SPOOF_ARP), NO_RULE },
		{ OUT, { .kind = K_ARP, .op = 1, V4(VM_IP, "10.0.0.5") }, PASS(PASS_CTRL), NO_RULE } } },
	{ "ARP to the guest is not limited", &pol_ctl_rate, {
		{ IN, { .kind = K_ARP, .op = 1, V4(HOST_IP, VM_IP) }, PASS(PASS_CTRL), NO_RULE },
		{ IN, { .kind = K_ARP, .op = 1, V4(HOST_IP, VM_IP) }, PASS(PASS_CTRL), NO_RULE },
		{ IN, { .kind = K_ARP, .op = 1, V4(HOST_IP, VM_IP) }, PASS(PASS_CTRL), NO_RULE },
		{ IN, { .kind = K_ARP, .op = 1, V4(HOST_IP, VM_IP) }, PASS(PASS_CTRL), NO_RULE } } },

	/* ---- the host itself ---- */
	{ "to the host: tcp 22 meets the host rules (default deny)", &pol_host, {
		{ OUT, { .kind = K_IP, V4(VM_IP, HOST_IP), .proto = TCP, .sport = 40000, .dport = 22, .tcp_flags = SYN }, DROP(HOST), NO_RULE },
		{ OUT, { .kind = K_IP, V4(VM_IP, HOST_IP2), .proto = UDP, .sport = 40000, .dport = 111 }, DROP(HOST), NO_RULE },
		{ OUT, { .kind = K_IP, V4(VM_IP6, HOST_IP6), .proto = TCP, .sport = 40000, .dport = 22, .tcp_flags = SYN }, DROP(HOST), NO_RULE },
		{ OUT, { .kind = K_IP, V4(VM_IP, HOST_IP), .proto = ICMP, .dport = 8, .sport = 7 }, DROP(HOST), NO_RULE } } },
	{ "to the host: DNS on the bridge address only, jump port on every address", &pol_host, {
		{ OUT, { .kind = K_IP, V4(VM_IP, HOST_IP), .proto = UDP, .sport = 40000, .dport = 53 }, PASS(PASS_DEFAULT), NO_RULE },
		{ OUT, { .kind = K_IP, V4(VM_IP, HOST_IP2), .proto = UDP, .sport = 40000, .dport = 53 }, DROP(HOST), NO_RULE },
		{ OUT, { .kind = K_IP, V4(VM_IP, HOST_IP2), .proto = TCP, .sport = 40000, .dport = 2222, .tcp_flags = SYN }, PASS(PASS_DEFAULT), NO_RULE },
		{ OUT, { .kind = K_IP, V4(VM_IP6, HOST_IP6), .proto = TCP, .sport = 40000, .dport = 2222, .tcp_flags = SYN }, PASS(PASS_DEFAULT), NO_RULE } } },
	{ "what the host's stack also receives: broadcast, multicast, loopback", &pol_host, {
		{ OUT, { .kind = K_IP, V4(VM_IP, "255.255.255.255"), .proto = UDP, .sport = 40000, .dport = 9 }, DROP(HOST), NO_RULE },
		{ OUT, { .kind = K_IP, V4(VM_IP, "224.0.0.251"), .proto = UDP, .sport = 5353, .dport = 5353 }, DROP(HOST), NO_RULE },
		{ OUT, { .kind = K_IP, V4(VM_LL, "ff02::fb"), .proto = UDP, .sport = 5353, .dport = 5353 }, DROP(HOST), NO_RULE },
		{ OUT, { .kind = K_IP, V4(VM_IP, "127.0.0.1"), .proto = TCP, .sport = 40000, .dport = 22, .tcp_flags = SYN }, DROP(HOST), NO_RULE } } },
	{ "not the host: the host rules do not apply", &pol_host, {
		{ OUT, VMOUT(.proto = TCP, .sport = 40000, .dport = 22, .tcp_flags = SYN), PASS(PASS_DEFAULT), NO_RULE },
		{ OUT, { .kind = K_IP, V4(VM_IP6, "2001:db8:1::1"), .proto = TCP, .sport = 40000, .dport = 22, .tcp_flags = SYN }, PASS(PASS_DEFAULT), NO_RULE } } },
	{ "the host allows, the VM's OUT rules do not: dropped by OUT", &pol_host_out_deny, {
		{ OUT, { .kind = K_IP, V4(VM_IP, HOST_IP), .proto = UDP, .sport = 40000, .dport = 53 }, DROP(DROP_DEFAULT), NO_RULE } } },
	{ "a flow the host opened: the guest's replies pass as the flow", &pol_host, {
		{ IN, { .kind = K_IP, V4(HOST_IP, VM_IP), .proto = TCP, .sport = 50000, .dport = 22, .tcp_flags = SYN }, PASS(PASS_DEFAULT), NO_RULE },
		{ OUT, { .kind = K_IP, V4(VM_IP, HOST_IP), .proto = TCP, .sport = 22, .dport = 50000, .tcp_flags = SYN | ACK }, PASS(PASS_FLOW), NO_RULE },
		{ OUT, { .kind = K_IP, V4(VM_IP, HOST_IP), .proto = TCP, .sport = 22, .dport = 50001, .tcp_flags = ACK }, DROP(HOST), NO_RULE } } },
	{ "DHCP to the agent passes whatever the host rules say", &pol_host, {
		{ OUT, { .kind = K_DHCP, V4(VM_IP, HOST_IP), .sport = 68, .dport = 67, .dhcp_op = 1, .dhcp_type = 3 }, PASS(PASS_CTRL), NO_RULE },
		{ OUT, { .kind = K_DHCP, V4("0.0.0.0", "255.255.255.255"), .sport = 68, .dport = 67, .dhcp_op = 1, .dhcp_type = 1 }, PASS(PASS_CTRL), NO_RULE } } },
	{ "host rules allow everything: no gate", &pol_open, {
		{ OUT, { .kind = K_IP, V4(VM_IP, HOST_IP), .proto = TCP, .sport = 40000, .dport = 22, .tcp_flags = SYN }, PASS(PASS_DEFAULT), NO_RULE } } },

	/* ---- firewall OUT ---- */
	{ "tcp 22 allowed by rule 0", &pol_fw_out, {
		{ OUT, VMOUT(.proto = TCP, .sport = 40000, .dport = 22, .tcp_flags = SYN), PASS(PASS_RULE), 0 } } },
	{ "tcp 23: no rule, default deny", &pol_fw_out, {
		{ OUT, VMOUT(.proto = TCP, .sport = 40000, .dport = 23, .tcp_flags = SYN), DROP(DROP_DEFAULT), NO_RULE } } },
	{ "tcp range lower bound 1000 denied", &pol_fw_out, {
		{ OUT, VMOUT(.proto = TCP, .sport = 40000, .dport = 1000), DROP(DROP_RULE), 1 },
		{ OUT, VMOUT(.proto = TCP, .sport = 40000, .dport = 999), DROP(DROP_DEFAULT), NO_RULE } } },
	{ "tcp range upper bound 2000 denied, 2001 not", &pol_fw_out, {
		{ OUT, VMOUT(.proto = TCP, .sport = 40000, .dport = 2000), DROP(DROP_RULE), 1 },
		{ OUT, VMOUT(.proto = TCP, .sport = 40000, .dport = 2001), DROP(DROP_DEFAULT), NO_RULE } } },
	{ "tcp 1500: exact allow shadowed by earlier range deny", &pol_fw_out, {
		{ OUT, VMOUT(.proto = TCP, .sport = 40000, .dport = 1500), DROP(DROP_RULE), 1 } } },
	{ "udp range 5000-5010 bounds", &pol_fw_out, {
		{ OUT, VMOUT(.proto = UDP, .sport = 40000, .dport = 5000), PASS(PASS_RULE), 5 },
		{ OUT, VMOUT(.proto = UDP, .sport = 40000, .dport = 5010), PASS(PASS_RULE), 5 },
		{ OUT, VMOUT(.proto = UDP, .sport = 40000, .dport = 4999), DROP(DROP_DEFAULT), NO_RULE },
		{ OUT, VMOUT(.proto = UDP, .sport = 40000, .dport = 5011), DROP(DROP_DEFAULT), NO_RULE } } },
	{ "udp 53 inside /24 allowed", &pol_fw_out, {
		{ OUT, { .kind = K_IP, V4(VM_IP, "192.0.2.10"), .proto = UDP, .sport = 40000, .dport = 53 }, PASS(PASS_RULE), 3 } } },
	{ "udp 53 inside nested /25: rule 3 comes first", &pol_fw_out, {
		{ OUT, { .kind = K_IP, V4(VM_IP, "192.0.2.200"), .proto = UDP, .sport = 40000, .dport = 53 }, PASS(PASS_RULE), 3 } } },
	{ "udp 54 inside nested /25 denied by rule 4", &pol_fw_out, {
		{ OUT, { .kind = K_IP, V4(VM_IP, "192.0.2.200"), .proto = UDP, .sport = 40000, .dport = 54 }, DROP(DROP_RULE), 4 } } },
	{ "udp 54 inside /24 but outside /25: default", &pol_fw_out, {
		{ OUT, { .kind = K_IP, V4(VM_IP, "192.0.2.10"), .proto = UDP, .sport = 40000, .dport = 54 }, DROP(DROP_DEFAULT), NO_RULE } } },
	{ "udp 53 outside the CIDR: default", &pol_fw_out, {
		{ OUT, VMOUT(.proto = UDP, .sport = 40000, .dport = 53), DROP(DROP_DEFAULT), NO_RULE } } },
	{ "icmp echo allowed, timestamp not", &pol_fw_out, {
		{ OUT, VMOUT(.proto = ICMP, .dport = 8, .sport = 99), PASS(PASS_RULE), 6 },
		{ OUT, VMOUT(.proto = ICMP, .dport = 13, .sport = 99), DROP(DROP_DEFAULT), NO_RULE } } },
	{ "tcp 443 to IPv6 /48 allowed, outside denied", &pol_fw_out, {
		{ OUT, { .kind = K_IP, V4(VM_IP6, "2001:db8:1::5"), .proto = TCP, .sport = 40000, .dport = 443 }, PASS(PASS_RULE), 7 },
		{ OUT, { .kind = K_IP, V4(VM_IP6, "2001:db8:2::5"), .proto = TCP, .sport = 40000, .dport = 443 }, DROP(DROP_DEFAULT), NO_RULE } } },
	{ "GRE: no rule for the protocol, default deny", &pol_fw_out, {
		{ OUT, VMOUT(.proto = GRE), DROP(DROP_DEFAULT), NO_RULE } } },
	{ "IPv4 options: parsed by ihl, normal evaluation", &pol_fw_out, {
		{ OUT, VMOUT(.proto = TCP, .sport = 40000, .dport = 22, .ipopts = 12), PASS(PASS_RULE), 0 },
		{ OUT, VMOUT(.proto = TCP, .sport = 40000, .dport = 23, .ipopts = 40), DROP(DROP_DEFAULT), NO_RULE } } },
	{ "IPv6 hop-by-hop header skipped", &pol_fw_out, {
		{ OUT, { .kind = K_IP, V4(VM_IP6, "2001:db8:1::5"), .proto = TCP, .sport = 40000, .dport = 443, .hbh = true }, PASS(PASS_RULE), 7 } } },

	/* ---- firewall IN ---- */
	{ "IN tcp 3389 denied by rule, tcp 80 default allow", &pol_fw_in, {
		{ IN, VMIN(.proto = TCP, .sport = 50000, .dport = 3389), DROP(DROP_RULE), 0 },
		{ IN, VMIN(.proto = TCP, .sport = 50000, .dport = 80), PASS(PASS_DEFAULT), NO_RULE } } },
	{ "IN any protocol from denied /24", &pol_fw_in, {
		{ IN, { .kind = K_IP, V4("203.0.113.5", VM_IP), .proto = TCP, .sport = 50000, .dport = 80 }, DROP(DROP_RULE), 2 },
		{ IN, { .kind = K_IP, V4("203.0.113.5", VM_IP), .proto = GRE }, DROP(DROP_RULE), 2 } } },
	{ "IN icmpv6 echo: rule 1 before the CIDR deny", &pol_fw_in, {
		{ IN, { .kind = K_IP, V4("2001:db8:bad::1", VM_IP6), .proto = ICMP6, .dport = 128, .sport = 5 }, PASS(PASS_RULE), 1 },
		{ IN, { .kind = K_IP, V4("2001:db8:bad::1", VM_IP6), .proto = UDP, .sport = 1, .dport = 2 }, DROP(DROP_RULE), 3 } } },
	{ "IN unknown EtherType gets the IN default (deny)", &pol_in_deny_raw, {
		{ IN, { .kind = K_RAW, .ethertype = 0x88b5 }, DROP(DROP_DEFAULT), NO_RULE } } },
	{ "IN unknown EtherType gets the IN default (allow)", &pol_open, {
		{ IN, { .kind = K_RAW, .ethertype = 0x88b5 }, PASS(PASS_DEFAULT), NO_RULE } } },
	{ "OUT unknown EtherType (LLDP) dropped even with default allow", &pol_open, {
		{ OUT, { .kind = K_RAW, .ethertype = 0x88cc }, DROP(ETHERTYPE), NO_RULE } } },

	/* ---- flow tracking ---- */
	{ "return traffic of an allowed connection", &pol_ct, {
		{ OUT, { .kind = K_IP, V4(VM_IP, "192.0.2.10"), .proto = TCP, .sport = 40000, .dport = 443, .tcp_flags = SYN }, PASS(PASS_RULE), 0 },
		{ IN, { .kind = K_IP, V4("192.0.2.10", VM_IP), .proto = TCP, .sport = 443, .dport = 40000, .tcp_flags = SYN | ACK }, PASS(PASS_FLOW), NO_RULE },
		{ OUT, { .kind = K_IP, V4(VM_IP, "192.0.2.10"), .proto = TCP, .sport = 40000, .dport = 443, .tcp_flags = ACK }, PASS(PASS_FLOW), NO_RULE },
		{ IN, { .kind = K_IP, V4("192.0.2.10", VM_IP), .proto = TCP, .sport = 443, .dport = 40001, .tcp_flags = ACK }, DROP(DROP_DEFAULT), NO_RULE } } },
	{ "a bare SYN never belongs to a flow: a remote's SYN with its ports meets the rules", &pol_ct, {
		{ OUT, { .kind = K_IP, V4(VM_IP, "192.0.2.10"), .proto = TCP, .sport = 40000, .dport = 443, .tcp_flags = SYN }, PASS(PASS_RULE), 0 },
		{ IN, { .kind = K_IP, V4("192.0.2.10", VM_IP), .proto = TCP, .sport = 443, .dport = 40000, .tcp_flags = SYN }, DROP(DROP_DEFAULT), NO_RULE },
		{ OUT, { .kind = K_IP, V4(VM_IP, "192.0.2.10"), .proto = TCP, .sport = 40000, .dport = 443, .tcp_flags = SYN }, PASS(PASS_RULE), 0 },
		{ IN, { .kind = K_IP, V4("192.0.2.10", VM_IP), .proto = TCP, .sport = 443, .dport = 40000, .tcp_flags = SYN | ACK }, PASS(PASS_FLOW), NO_RULE } } },
	{ "reverse packet without an established flow", &pol_ct, {
		{ IN, { .kind = K_IP, V4("192.0.2.10", VM_IP), .proto = TCP, .sport = 443, .dport = 40000, .tcp_flags = SYN | ACK }, DROP(DROP_DEFAULT), NO_RULE } } },
	{ "UDP and IPv6 return traffic", &pol_ct, {
		{ OUT, { .kind = K_IP, V4(VM_IP6, "2001:db8:53::53"), .proto = UDP, .sport = 33333, .dport = 53 }, PASS(PASS_RULE), 1 },
		{ IN, { .kind = K_IP, V4("2001:db8:53::53", VM_IP6), .proto = UDP, .sport = 53, .dport = 33333 }, PASS(PASS_FLOW), NO_RULE },
		{ IN, { .kind = K_IP, V4("2001:db8:53::54", VM_IP6), .proto = UDP, .sport = 53, .dport = 33333 }, DROP(DROP_DEFAULT), NO_RULE } } },
	{ "ICMP echo reply matches by id; echo request in does not", &pol_ct, {
		{ OUT, { .kind = K_IP, V4(VM_IP, "192.0.2.10"), .proto = ICMP, .dport = 8, .sport = 4242 }, PASS(PASS_RULE), 2 },
		{ IN, { .kind = K_IP, V4("192.0.2.10", VM_IP), .proto = ICMP, .dport = 0, .sport = 4242 }, PASS(PASS_FLOW), NO_RULE },
		{ IN, { .kind = K_IP, V4("192.0.2.10", VM_IP), .proto = ICMP, .dport = 8, .sport = 4242 }, DROP(DROP_DEFAULT), NO_RULE },
		{ IN, { .kind = K_IP, V4("192.0.2.10", VM_IP), .proto = ICMP, .dport = 0, .sport = 4243 }, DROP(DROP_DEFAULT), NO_RULE } } },

	/* ---- quarantine: a VM that lost its policy while running ---- */
	{ "quarantined VM: TCP out and in dropped even with both defaults allow", &pol_quarantine, {
		{ OUT, VMOUT(.proto = TCP, .sport = 40000, .dport = 443, .tcp_flags = SYN), DROP(QUARANTINE), NO_RULE },
		{ IN, VMIN(.proto = TCP, .sport = 443, .dport = 40000, .tcp_flags = SYN | ACK), DROP(QUARANTINE), NO_RULE },
		{ IN, { .kind = K_IP, V4("2001:db8:53::53", VM_IP6), .proto = UDP, .sport = 53, .dport = 33333 }, DROP(QUARANTINE), NO_RULE } } },
	{ "quarantined VM: ARP, DHCP and ICMP echo dropped too", &pol_quarantine, {
		{ OUT, { .kind = K_ARP, .op = 1, V4(VM_IP, HOST_IP) }, DROP(QUARANTINE), NO_RULE },
		{ OUT, { .kind = K_DHCP, V4("0.0.0.0", "255.255.255.255"), .sport = 68, .dport = 67, .dhcp_op = 1, .dhcp_type = 1 }, DROP(QUARANTINE), NO_RULE },
		{ IN, { .kind = K_DHCP, V4(HOST_IP, VM_IP), .sport = 67, .dport = 68, .dhcp_op = 2, .dhcp_type = 2 }, DROP(QUARANTINE), NO_RULE },
		{ IN, VMIN(.proto = ICMP, .dport = 8, .sport = 1), DROP(QUARANTINE), NO_RULE } } },

	/* ---- CAP_NETWORK: without it the tap passes no frame either way ---- */
	{ "no CAP_NETWORK: TCP, UDP and IPv6 dropped both ways under allow-all", &pol_no_cap_network, {
		{ OUT, VMOUT(.proto = TCP, .sport = 40000, .dport = 443, .tcp_flags = SYN), DROP(NO_CAP_NETWORK), NO_RULE },
		{ IN, VMIN(.proto = TCP, .sport = 443, .dport = 40000, .tcp_flags = SYN | ACK), DROP(NO_CAP_NETWORK), NO_RULE },
		{ OUT, { .kind = K_IP, V4(VM_IP6, "2001:db8:53::53"), .proto = UDP, .sport = 33333, .dport = 53 }, DROP(NO_CAP_NETWORK), NO_RULE },
		{ IN, { .kind = K_IP, V4("2001:db8:53::53", VM_IP6), .proto = UDP, .sport = 53, .dport = 33333 }, DROP(NO_CAP_NETWORK), NO_RULE } } },
	{ "no CAP_NETWORK: ARP, DHCP, ND and ICMP dropped too", &pol_no_cap_network, {
		{ OUT, { .kind = K_ARP, .op = 1, V4(VM_IP, HOST_IP) }, DROP(NO_CAP_NETWORK), NO_RULE },
		{ OUT, { .kind = K_DHCP, V4("0.0.0.0", "255.255.255.255"), .sport = 68, .dport = 67, .dhcp_op = 1, .dhcp_type = 1 }, DROP(NO_CAP_NETWORK), NO_RULE },
		{ IN, { .kind = K_DHCP, V4(HOST_IP, VM_IP), .sport = 67, .dport = 68, .dhcp_op = 2, .dhcp_type = 2 }, DROP(NO_CAP_NETWORK), NO_RULE },
		{ IN, VMIN(.proto = ICMP, .dport = 8, .sport = 1), DROP(NO_CAP_NETWORK), NO_RULE } } },
	{ "no CAP_NETWORK: spoofed and non-IP frames from the VM still dropped", &pol_no_cap_network, {
		{ OUT, VMOUT(.proto = UDP, .sport = 1, .dport = 2, .smac = "52:54:00:66:66:66"), DROP(NO_CAP_NETWORK), NO_RULE },
		{ OUT, { .kind = K_RAW, .ethertype = 0x88cc }, DROP(NO_CAP_NETWORK), NO_RULE },
		{ OUT, { .kind = K_ND, V4("::", "ff02::1:ff12:3456"), .dport = 135, .target = VM_LL }, DROP(NO_CAP_NETWORK), NO_RULE } } },

	/* ---- CAP_NETWORK port limit: firewall ∩ limit ---- */
	{ "port limit 443: tcp 443 the firewall allows passes; tcp 22 it allows drops as cap_ports", &pol_cap_ports, {
		{ OUT, VMOUT(.proto = TCP, .sport = 40000, .dport = 443, .tcp_flags = SYN), PASS(PASS_RULE), 1 },
		{ OUT, VMOUT(.proto = TCP, .sport = 40000, .dport = 22, .tcp_flags = SYN), DROP(CAP_PORTS), NO_RULE },
		{ OUT, VMOUT(.proto = UDP, .sport = 40000, .dport = 53), DROP(CAP_PORTS), NO_RULE },
		{ OUT, VMOUT(.proto = UDP, .sport = 40000, .dport = 443), PASS(PASS_RULE), 2 } } },
	{ "port limit 443: the flow's reply to an unlisted port passes; a new one there drops", &pol_cap_ports, {
		{ OUT, VMOUT(.proto = TCP, .sport = 40001, .dport = 443, .tcp_flags = SYN), PASS(PASS_RULE), 1 },
		{ IN, VMIN(.proto = TCP, .sport = 443, .dport = 40001, .tcp_flags = SYN | ACK), PASS(PASS_FLOW), NO_RULE },
		{ IN, VMIN(.proto = TCP, .sport = 443, .dport = 40002, .tcp_flags = SYN), DROP(CAP_PORTS), NO_RULE },
		{ IN, VMIN(.proto = TCP, .sport = 5555, .dport = 443, .tcp_flags = SYN), PASS(PASS_DEFAULT), NO_RULE } } },
	{ "port limit 443: IPv6 alike; SCTP refused whole, both ways", &pol_cap_ports, {
		{ OUT, { .kind = K_IP, V4(VM_IP6, "2001:db8:53::53"), .proto = TCP, .sport = 1, .dport = 443, .tcp_flags = SYN }, PASS(PASS_RULE), 1 },
		{ OUT, { .kind = K_IP, V4(VM_IP6, "2001:db8:53::53"), .proto = TCP, .sport = 1, .dport = 22, .tcp_flags = SYN }, DROP(CAP_PORTS), NO_RULE },
		{ OUT, VMOUT(.proto = 132, .sport = 0, .dport = 0), DROP(CAP_PORTS), NO_RULE },
		{ IN, VMIN(.proto = 132, .sport = 0, .dport = 0), DROP(CAP_PORTS), NO_RULE } } },
	{ "port limit 443 on a firewall of tcp 22: 443 is still the firewall's to refuse", &pol_cap_ports_narrow, {
		{ OUT, VMOUT(.proto = TCP, .sport = 40000, .dport = 443, .tcp_flags = SYN), DROP(DROP_DEFAULT), NO_RULE },
		{ OUT, VMOUT(.proto = TCP, .sport = 40000, .dport = 22, .tcp_flags = SYN), DROP(CAP_PORTS), NO_RULE },
		{ IN, VMIN(.proto = TCP, .sport = 40000, .dport = 443, .tcp_flags = SYN), DROP(DROP_DEFAULT), NO_RULE } } },
	{ "port limit 443: ICMP is the firewall's alone; ARP and DHCP keep passing", &pol_cap_ports, {
		{ OUT, VMOUT(.proto = ICMP, .dport = 8, .sport = 1), DROP(DROP_DEFAULT), NO_RULE },
		{ IN, VMIN(.proto = ICMP, .dport = 8, .sport = 1), PASS(PASS_DEFAULT), NO_RULE },
		{ OUT, { .kind = K_ARP, .op = 1, V4(VM_IP, HOST_IP) }, PASS(PASS_CTRL), NO_RULE },
		{ OUT, { .kind = K_DHCP, V4("0.0.0.0", "255.255.255.255"), .sport = 68, .dport = 67, .dhcp_op = 1, .dhcp_type = 1 }, PASS(PASS_CTRL), NO_RULE } } },

	/* ---- fragments ---- */
	{ "IPv4 fragments take the first fragment's ports", &pol_ct, {
		{ OUT, { .kind = K_IP, V4(VM_IP, "192.0.2.53"), .proto = UDP, .sport = 5353, .dport = 53, .frag = 0x2000, .frag_id = 77 }, PASS(PASS_RULE), 1 },
		{ OUT, { .kind = K_IP, V4(VM_IP, "192.0.2.53"), .proto = UDP, .frag = 185, .frag_id = 77 }, PASS(PASS_FLOW), NO_RULE },
		{ IN, { .kind = K_IP, V4("192.0.2.53", VM_IP), .proto = UDP, .sport = 53, .dport = 5353, .frag = 0x2000, .frag_id = 9 }, PASS(PASS_FLOW), NO_RULE },
		{ IN, { .kind = K_IP, V4("192.0.2.53", VM_IP), .proto = UDP, .frag = 185, .frag_id = 9 }, PASS(PASS_FLOW), NO_RULE } } },
	{ "IPv4 later fragment without its first: port-less, default", &pol_ct, {
		{ OUT, { .kind = K_IP, V4(VM_IP, "192.0.2.53"), .proto = UDP, .frag = 185, .frag_id = 78 }, DROP(DROP_DEFAULT), NO_RULE } } },
	{ "IPv4 later fragment without its first: protocol-wide rule", &pol_fw_in, {
		{ IN, { .kind = K_IP, V4("203.0.113.9", VM_IP), .proto = UDP, .frag = 185, .frag_id = 5 }, DROP(DROP_RULE), 2 },
		{ IN, { .kind = K_IP, V4("198.51.100.9", VM_IP), .proto = UDP, .frag = 185, .frag_id = 5 }, PASS(PASS_DEFAULT), NO_RULE } } },
	{ "IPv6 fragments take the first fragment's ports", &pol_ct, {
		{ OUT, { .kind = K_IP, V4(VM_IP6, "2001:db8:53::53"), .proto = UDP, .sport = 5353, .dport = 53, .v6frag = true, .frag = 1, .frag_id = 0x10001 }, PASS(PASS_RULE), 1 },
		{ OUT, { .kind = K_IP, V4(VM_IP6, "2001:db8:53::53"), .proto = UDP, .v6frag = true, .frag = 185 << 3, .frag_id = 0x10001 }, PASS(PASS_FLOW), NO_RULE },
		{ OUT, { .kind = K_IP, V4(VM_IP6, "2001:db8:53::53"), .proto = UDP, .v6frag = true, .frag = 185 << 3, .frag_id = 0x10002 }, DROP(DROP_DEFAULT), NO_RULE } } },
	{ "first fragment too short for its TCP header", &pol_open, {
		{ OUT, { .kind = K_IP, V4(VM_IP, "192.0.2.53"), .proto = TCP, .sport = 1, .dport = 2, .frag = 0x2000, .frag_id = 3, .trunc = 14 + 20 + 8 }, DROP(MALFORMED), NO_RULE } } },

	/* ---- framing ---- */
	{ "VLAN-tagged frame from guest", &pol_open, {
		{ OUT, VMOUT(.proto = UDP, .sport = 1, .dport = 2, .vlan = 10), DROP(VLAN), NO_RULE } } },
	{ "VLAN-tagged frame to guest", &pol_open, {
		{ IN, VMIN(.proto = UDP, .sport = 1, .dport = 2, .vlan = 10), DROP(VLAN), NO_RULE } } },
	{ "truncated IPv4 header", &pol_open, {
		{ OUT, VMOUT(.proto = TCP, .sport = 40000, .dport = 22, .trunc = 14 + 12), DROP(MALFORMED), NO_RULE } } },
	{ "truncated IPv6 header", &pol_open, {
		{ OUT, { .kind = K_IP, V4(VM_LL, "fe80::1"), .proto = UDP, .sport = 1, .dport = 2, .trunc = 14 + 30 }, DROP(MALFORMED), NO_RULE } } },
	{ "IPv4 header length (ihl) beyond the frame", &pol_open, {
		{ OUT, VMOUT(.proto = GRE, .ipopts = 8, .trunc = 14 + 24), DROP(MALFORMED), NO_RULE } } },
	{ "IPv6 extension header beyond the frame", &pol_open, {
		{ OUT, { .kind = K_IP, V4(VM_LL, "fe80::1"), .proto = UDP, .sport = 1, .dport = 2, .hbh = true, .trunc = 14 + 40 + 4 }, DROP(MALFORMED), NO_RULE } } },
	{ "truncated TCP header", &pol_open, {
		{ OUT, VMOUT(.proto = TCP, .sport = 40000, .dport = 22, .trunc = 14 + 20 + 10), DROP(MALFORMED), NO_RULE } } },
	{ "truncated UDP header to guest", &pol_open, {
		{ IN, VMIN(.proto = UDP, .sport = 1, .dport = 2, .trunc = 14 + 20 + 4), DROP(MALFORMED), NO_RULE } } },
	{ "truncated ARP", &pol_open, {
		{ OUT, { .kind = K_ARP, .op = 1, V4(VM_IP, HOST_IP), .trunc = 14 + 20 }, DROP(MALFORMED), NO_RULE } } },
	{ "truncated Ethernet header", &pol_open, {
		{ OUT, VMOUT(.proto = UDP, .sport = 1, .dport = 2, .trunc = 10), DROP(MALFORMED), NO_RULE } } },
};

static const char *reason_name(int r)
{
	static const char *const names[RAYOS_RSN_MAX] = {
		[RAYOS_RSN_PASS_RULE] = "PASS_RULE", [RAYOS_RSN_PASS_DEFAULT] = "PASS_DEFAULT",
		[RAYOS_RSN_PASS_FLOW] = "PASS_FLOW", [RAYOS_RSN_PASS_CTRL] = "PASS_CTRL",
		[RAYOS_RSN_DROP_RULE] = "DROP_RULE", [RAYOS_RSN_DROP_DEFAULT] = "DROP_DEFAULT",
		[RAYOS_RSN_MALFORMED] = "MALFORMED", [RAYOS_RSN_VLAN] = "VLAN",
		[RAYOS_RSN_ETHERTYPE] = "ETHERTYPE", [RAYOS_RSN_SPOOF_MAC] = "SPOOF_MAC",
		[RAYOS_RSN_SPOOF_IP] = "SPOOF_IP", [RAYOS_RSN_SPOOF_ARP] = "SPOOF_ARP",
		[RAYOS_RSN_SPOOF_ND] = "SPOOF_ND", [RAYOS_RSN_UNBOUND] = "UNBOUND",
		[RAYOS_RSN_ROGUE_DHCP] = "ROGUE_DHCP", [RAYOS_RSN_ROGUE_RA] = "ROGUE_RA",
		[RAYOS_RSN_RATE] = "RATE", [RAYOS_RSN_NO_VM] = "NO_VM",
		[RAYOS_RSN_QUARANTINE] = "QUARANTINE",
		[RAYOS_RSN_NO_CAP_NETWORK] = "NO_CAP_NETWORK",
		[RAYOS_RSN_CAP_PORTS] = "CAP_PORTS",
	};

	return r >= 0 && r < RAYOS_RSN_MAX && names[r] ? names[r] : "?";
}

/* Which reason counter moved by one packet (or -1). */
static int moved_reason(int dir, const struct rayos_ctr before[RAYOS_RSN_MAX])
{
	int found = -1;

	for (int r = 0; r < RAYOS_RSN_MAX; r++)
		if (vm_ctr(dir, r).packets != before[r].packets)
			found = found < 0 ? r : -2;
	return found;
}

/* Run one step; one TAP line.  Returns false on failure. */
static bool run_step(const char *name, int idx, const struct step *s)
{
	struct rayos_ctr before[RAYOS_RSN_MAX], rule_before = { 0 }, after;
	uint32_t retval = ~0u;
	struct pkt p;
	int err, moved;
	bool ok;

	build(&p, s->dir, &s->pkt);
	for (int r = 0; r < RAYOS_RSN_MAX; r++)
		before[r] = vm_ctr(s->dir, r);
	if (s->rule >= 0)
		rule_before = rule_ctr(s->dir, s->rule);

	err = pkt_run_tc(fx.prog[s->dir == OUT ? RAYOS_PROG_FROM_VM : RAYOS_PROG_TO_VM],
			 &p, VM_IFINDEX, 1, &retval, NULL);
	/* The kernel validates some frames before running the program: it
	 * rejects frames shorter than ETH_HLEN and (6.18) frames whose base
	 * IPv4/IPv6 header is cut.  Those cases cannot be driven this way. */
	if (err == -EINVAL && s->pkt.trunc) {
		tap_skip("BPF_PROG_TEST_RUN refuses this truncated frame (EINVAL)",
			 "%s [%d]", name, idx);
		return true;
	}
	moved = moved_reason(s->dir, before);
	after = moved >= 0 ? vm_ctr(s->dir, moved) : (struct rayos_ctr){ 0 };
	ok = !err && retval == (uint32_t)s->verdict && moved == s->reason &&
	     after.bytes - before[moved].bytes == p.len;
	if (ok && s->rule >= 0)
		ok = rule_ctr(s->dir, s->rule).packets == rule_before.packets + 1;
	if (!tap_ok(ok, "%s [%d] -> %s %s", name, idx,
		    s->verdict == TC_ACT_OK ? "pass" : "drop", reason_name(s->reason)))
		tap_diag("  err %d, retval %u (want %d), reason counter moved: %s (%d)%s",
			 err, retval, s->verdict, moved >= 0 ? reason_name(moved) : "none/several",
			 moved, s->rule >= 0 ? ", or rule counter did not move" : "");
	return ok;
}

/* Every case with its ranges and CIDRs in the LPM tries; then again, with
 * them in interval tables, each case whose policy has any. */
static void run_table(bool with_tabs)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct fw_case *c = &cases[i];
		char name[160];

		if (!policy_apply_tabs(c->pol, with_tabs) && with_tabs)
			continue;
		snprintf(name, sizeof(name), "%s%s", c->name, with_tabs ? " (interval table)" : "");
		/* Unused steps are all zero: K_IP without addresses. */
		for (int s = 0; s < 4 && (c->steps[s].pkt.kind != K_IP || c->steps[s].pkt.src); s++)
			if (!run_step(name, s, &c->steps[s]))
				break;
	}
}

/* ---- cases that need more than frames in, verdicts out ---- */

static void run_one(int dir, const struct pd *d, uint32_t repeat, uint32_t *retval)
{
	struct pkt p;

	build(&p, dir, d);
	*retval = ~0u;
	if (pkt_run_tc(fx.prog[dir == OUT ? RAYOS_PROG_FROM_VM : RAYOS_PROG_TO_VM],
		       &p, VM_IFINDEX, repeat, retval, NULL))
		tap_diag("BPF_PROG_TEST_RUN: %s", strerror(errno));
}

static void test_unknown_iface_and_missing_vm(void)
{
	const struct pd d = VMOUT(.proto = TCP, .sport = 1, .dport = 2);
	uint64_t before = net_ctr(RAYOS_NETC_NO_IFACE);
	uint32_t id = VM_ID, retval;

	policy_apply(&pol_closed);
	iface_set(false);
	run_one(OUT, &d, 1, &retval);
	ASSERT_EQ(retval, TC_ACT_OK, "unregistered interface: fail open (pass)");
	ASSERT_EQ(net_ctr(RAYOS_NETC_NO_IFACE), before + 1, "unregistered interface counted");

	iface_set(true);
	bpf_map_delete_elem(fx.map[RAYOS_MAP_VMS], &id);
	iface_sync();
	before = net_ctr(RAYOS_NETC_NO_VM);
	run_one(IN, &d, 1, &retval);
	ASSERT_EQ(retval, TC_ACT_SHOT, "known tap, VM record missing: fail closed (drop)");
	ASSERT_EQ(net_ctr(RAYOS_NETC_NO_VM), before + 1, "missing VM record counted");
}

static void test_lease_expiry(void)
{
	const struct pd d = VMOUT(.proto = TCP, .sport = 40000, .dport = 80);
	uint32_t retval;

	policy_apply(&pol_open);
	bind_set(RAYOS_BINDF_IPV4, now_boot_ns() + 3600ULL * 1000000000ULL);
	run_one(OUT, &d, 1, &retval);
	ASSERT_EQ(retval, TC_ACT_OK, "lease in the future: bound address passes");
	bind_set(RAYOS_BINDF_IPV4, now_boot_ns() - 1);
	if (!fx_keep_flows) {
		map_clear(fx.map[RAYOS_MAP_CT4], sizeof(struct rayos_ct4_key));
		map_clear(fx.map[RAYOS_MAP_CT6], sizeof(struct rayos_ct6_key));
	}
	run_one(OUT, &d, 1, &retval);
	ASSERT_EQ(retval, TC_ACT_SHOT, "lease expired: address no longer honoured");
}

/* Rewrite the last_ns of the flow a packet created. */
static bool ct_age(const struct pd *d, uint64_t age_ns)
{
	struct rayos_ct4_key k = { .vm_addr = pkt_ip4(d->src), .remote_addr = pkt_ip4(d->dst),
				   .vm_port = d->sport, .remote_port = d->dport,
				   .slot = VM_SLOT, .proto = d->proto };
	struct rayos_ct_val v;

	if (bpf_map_lookup_elem(fx.map[RAYOS_MAP_CT4], &k, &v) || v.vm_id != VM_ID)
		return false;
	v.last_ns = now_coarse_ns() - age_ns;
	return !bpf_map_update_elem(fx.map[RAYOS_MAP_CT4], &k, &v, BPF_EXIST);
}

/*
 * An ICMP error in direction dir from from_ip to to_ip, quoting the first
 * quote_len bytes of a packet q_src -> q_dst (an IPv4 or IPv6 header and its
 * L4 header, 16 bytes of payload), then extra bytes of anything.  Returns
 * the program's verdict; *moved is the reason counter that moved.
 */
static uint32_t icmp_error(int dir, const char *from_ip, const char *to_ip, uint8_t type,
			   uint8_t code, const char *q_src, const char *q_dst, uint8_t proto,
			   uint16_t sport, uint16_t dport, size_t quote_len, size_t extra,
			   int *moved)
{
	struct rayos_ctr before[RAYOS_RSN_MAX];
	uint8_t vm_mac[6], host_mac[6];
	bool v6 = strchr(q_src, ':');
	struct pkt q, p;
	uint32_t retval = ~0u;

	pkt_init(&q);
	if (v6)
		pkt_ipv6(&q, q_src, q_dst, proto);
	else
		pkt_ipv4(&q, q_src, q_dst, proto, 0, 0, 7);
	if (proto == TCP)
		pkt_tcp(&q, sport, dport, 0x10);
	else if (proto == UDP)
		pkt_udp(&q, sport, dport);
	else
		pkt_icmp(&q, dport, 0, sport);	/* echo: type in dport, id in sport */
	pkt_payload(&q, 16, 0xab);
	pkt_finish(&q);

	pkt_mac(vm_mac, VM_MAC);
	pkt_mac(host_mac, HOST_MAC);
	pkt_init(&p);
	if (dir == IN)
		pkt_eth(&p, vm_mac, host_mac, v6 ? 0x86dd : 0x0800);
	else
		pkt_eth(&p, host_mac, vm_mac, v6 ? 0x86dd : 0x0800);
	if (v6) {
		pkt_ipv6(&p, from_ip, to_ip, IPPROTO_ICMPV6);
		pkt_icmp6(&p, type, code, 0);
	} else {
		pkt_ipv4(&p, from_ip, to_ip, IPPROTO_ICMP, 0, 0, 1);
		pkt_icmp(&p, type, code, 0);
	}
	pkt_bytes(&p, q.buf, quote_len < q.len ? quote_len : q.len);
	if (extra)
		pkt_payload(&p, extra, 0x5a);
	pkt_finish(&p);
	for (int r = 0; r < RAYOS_RSN_MAX; r++)
		before[r] = vm_ctr(dir, r);
	if (pkt_run_tc(fx.prog[dir == IN ? RAYOS_PROG_TO_VM : RAYOS_PROG_FROM_VM], &p, VM_IFINDEX,
		       1, &retval, NULL))
		tap_diag("BPF_PROG_TEST_RUN: %s", strerror(errno));
	*moved = moved_reason(dir, before);
	return retval;
}

/* An ICMP error to the VM from a router on the path, about what the VM sent. */
static uint32_t icmp_error_in(const char *from_ip, uint8_t type, uint8_t code,
			      const char *vm_ip, const char *remote, uint8_t proto,
			      uint16_t sport, uint16_t dport, size_t quote_len, int *moved)
{
	return icmp_error(IN, from_ip, vm_ip, type, code, vm_ip, remote, proto, sport, dport,
			  quote_len, 0, moved);
}

static void test_icmp_related(void)
{
	const struct pd tcp = { .kind = K_IP, V4(VM_IP, "192.0.2.80"), .proto = TCP,
				.sport = 40000, .dport = 443, .tcp_flags = 0x02 };
	const struct pd udp6 = { .kind = K_IP, .src = VM_IP6, .dst = "2001:db8:53::53",
				 .proto = UDP, .sport = 40001, .dport = 53 };
	const struct pd ping = { .kind = K_IP, V4(VM_IP, "192.0.2.9"), .proto = ICMP,
				 .sport = 77, .dport = 8 };
	uint32_t retval;
	int moved;

	policy_apply(&pol_ct);
	run_one(OUT, &tcp, 1, &retval);
	run_one(OUT, &udp6, 1, &retval);
	run_one(OUT, &ping, 1, &retval);

	/* An error from a router quoting what the VM sent (or something else). */
	static const struct {
		const char *from;
		uint8_t type, code;
		const char *vm_ip, *remote;
		uint8_t proto;
		uint16_t sport, dport;	/* echo: id, type */
		size_t quote_len;
		uint32_t verdict;
		int reason;
		const char *name;
	} errs[] = {
		{ "198.51.100.254", 3, 4, VM_IP, "192.0.2.80", TCP, 40000, 443, 48,
		  TC_ACT_OK, RAYOS_RSN_PASS_RELATED,
		  "ICMP fragmentation needed about a tracked TCP flow passes (related)" },
		{ "198.51.100.254", 3, 4, VM_IP, "192.0.2.80", TCP, 40000, 444, 48,
		  TC_ACT_SHOT, RAYOS_RSN_DROP_DEFAULT,
		  "ICMP error quoting a port with no flow: the rules decide (default deny)" },
		{ "198.51.100.254", 3, 4, VM_IP, "192.0.2.80", TCP, 40000, 443, 24,
		  TC_ACT_SHOT, RAYOS_RSN_DROP_DEFAULT,
		  "ICMP error whose quote is cut inside the ports: the rules decide" },
		{ "2001:db8:ff::1", 2, 0, VM_IP6, "2001:db8:53::53", UDP, 40001, 53, 48,
		  TC_ACT_OK, RAYOS_RSN_PASS_RELATED,
		  "ICMPv6 packet too big about a tracked UDP flow passes (related)" },
		{ "198.51.100.9", 11, 0, VM_IP, "192.0.2.9", ICMP, 77, 8, 28,
		  TC_ACT_OK, RAYOS_RSN_PASS_RELATED,
		  "ICMP time exceeded about a tracked echo (traceroute) passes" },
		{ "198.51.100.9", 5, 0, VM_IP, "192.0.2.9", ICMP, 77, 8, 28,
		  TC_ACT_SHOT, RAYOS_RSN_DROP_DEFAULT,
		  "ICMP redirect quoting a tracked flow is not an error: the rules decide" },
	};

	for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
		retval = icmp_error_in(errs[i].from, errs[i].type, errs[i].code, errs[i].vm_ip,
				       errs[i].remote, errs[i].proto, errs[i].sport, errs[i].dport,
				       errs[i].quote_len, &moved);
		if (!tap_ok(retval == errs[i].verdict && moved == errs[i].reason, "%s", errs[i].name))
			tap_diag("  retval %u, reason counter moved: %d", retval, moved);
	}

	/* Quotes longer than a conforming sender makes (RFC 1812: 576 bytes of
	 * IPv4 in all; RFC 4443: 1280 of IPv6): the error carries something
	 * else, and is dropped with its own reason. */
	retval = icmp_error(IN, "198.51.100.254", VM_IP, 3, 4, VM_IP, "192.0.2.80", TCP, 40000,
			    443, 48, 800, &moved);
	if (!tap_ok(retval == TC_ACT_SHOT && moved == RAYOS_RSN_ICMP_QUOTE,
		    "ICMP error about a tracked flow with 800 bytes after the quote: icmp_quote"))
		tap_diag("  retval %u, reason counter moved: %d", retval, moved);
	retval = icmp_error(IN, "198.51.100.254", VM_IP, 3, 4, VM_IP, "192.0.2.80", TCP, 40000,
			    443, 48, 576 - 20 - 8 - 48, &moved);
	if (!tap_ok(retval == TC_ACT_OK && moved == RAYOS_RSN_PASS_RELATED,
		    "ICMP error of exactly 576 bytes (RFC 1812) passes as related"))
		tap_diag("  retval %u, reason counter moved: %d", retval, moved);
	retval = icmp_error(IN, "198.51.100.254", VM_IP, 3, 4, VM_IP, "192.0.2.80", TCP, 40000,
			    443, 48, 576 - 20 - 8 - 48 + 1, &moved);
	ASSERT_TRUE(retval == TC_ACT_SHOT && moved == RAYOS_RSN_ICMP_QUOTE,
		    "ICMP error of 577 bytes: icmp_quote");
	retval = icmp_error(IN, "2001:db8:ff::1", VM_IP6, 2, 0, VM_IP6, "2001:db8:53::53", UDP,
			    40001, 53, 48, 1280 - 40 - 8 - 48, &moved);
	ASSERT_TRUE(retval == TC_ACT_OK && moved == RAYOS_RSN_PASS_RELATED,
		    "ICMPv6 packet too big of 1280 bytes (RFC 4443) passes as related");
	retval = icmp_error(IN, "2001:db8:ff::1", VM_IP6, 2, 0, VM_IP6, "2001:db8:53::53", UDP,
			    40001, 53, 48, 1280 - 40 - 8 - 48 + 8, &moved);
	ASSERT_TRUE(retval == TC_ACT_SHOT && moved == RAYOS_RSN_ICMP_QUOTE,
		    "ICMPv6 error longer than 1280 bytes: icmp_quote");

	/* An error goes back to the source of what it quotes: addressed to
	 * anyone else it is no part of the flow and meets the rules. */
	retval = icmp_error(IN, "198.51.100.254", "10.0.0.255", 3, 3, VM_IP, "192.0.2.80", TCP,
			    40000, 443, 48, 0, &moved);
	ASSERT_TRUE(retval == TC_ACT_SHOT && moved == RAYOS_RSN_DROP_DEFAULT,
		    "ICMP error about the VM's flow sent to a broadcast address: the rules decide");
	{
		const struct pd dns = { .kind = K_IP, V4(VM_IP, "192.0.2.53"), .proto = UDP,
					.sport = 40002, .dport = 53 };

		run_one(OUT, &dns, 1, &retval);
	}
	retval = icmp_error(OUT, VM_IP, "192.0.2.53", 3, 3, "192.0.2.53", VM_IP, UDP, 53, 40002,
			    48, 0, &moved);
	if (!tap_ok(retval == TC_ACT_OK && moved == RAYOS_RSN_PASS_RELATED,
		    "the VM's port unreachable back to its flow's peer passes as related"))
		tap_diag("  retval %u, reason counter moved: %d", retval, moved);
	retval = icmp_error(OUT, VM_IP, "198.51.100.77", 3, 3, "192.0.2.53", VM_IP, UDP, 53,
			    40002, 48, 0, &moved);
	if (!tap_ok(retval == TC_ACT_SHOT && moved == RAYOS_RSN_DROP_DEFAULT,
		    "the VM's error quoting its flow but sent to another address: the rules decide"))
		tap_diag("  retval %u, reason counter moved: %d", retval, moved);
	retval = icmp_error(OUT, VM_IP, "192.0.2.53", 3, 3, "192.0.2.53", VM_IP, UDP, 53, 40002,
			    48, 800, &moved);
	ASSERT_TRUE(retval == TC_ACT_SHOT && moved == RAYOS_RSN_ICMP_QUOTE,
		    "the VM's error to the peer with 800 bytes after the quote: icmp_quote");

	vm_bump_version();
	retval = icmp_error_in("198.51.100.254", 3, 4, VM_IP, "192.0.2.80", TCP, 40000, 443, 48,
			       &moved);
	ASSERT_TRUE(retval == TC_ACT_SHOT && moved == RAYOS_RSN_DROP_DEFAULT,
		    "after a policy change the stale flow no longer makes errors related");
}

/* A DHCPv4 client message that passes carries its VM's slot in skb->mark
 * for the agent's DHCP server; nothing else is marked. */
static void test_dhcp_mark(void)
{
	const struct pd disc = { .kind = K_DHCP, V4("0.0.0.0", "255.255.255.255"), .sport = 68,
				 .dport = 67, .dhcp_op = 1, .dhcp_type = 1 };
	const struct pd forged = { .kind = K_DHCP, V4("0.0.0.0", "255.255.255.255"), .sport = 68,
				   .dport = 67, .dhcp_op = 1, .dhcp_type = 1,
				   .chaddr = "52:54:00:66:66:66" };
	const struct pd data = VMOUT(.proto = UDP, .sport = 40000, .dport = 53);
	uint32_t retval, mark;
	struct pkt p;

	policy_apply(&pol_open);
	build(&p, OUT, &disc);
	pkt_run_tc_mark(fx.prog[RAYOS_PROG_FROM_VM], &p, VM_IFINDEX, &retval, &mark);
	if (!ASSERT_TRUE(retval == TC_ACT_OK && mark == (RAYOS_DHCP_MARK_TAG | VM_SLOT),
			 "DHCPDISCOVER passes marked with the DHCP tag and the VM's slot"))
		tap_diag("  retval %u mark %#x", retval, mark);
	build(&p, OUT, &forged);
	pkt_run_tc_mark(fx.prog[RAYOS_PROG_FROM_VM], &p, VM_IFINDEX, &retval, &mark);
	ASSERT_TRUE(retval == TC_ACT_SHOT && mark == 0, "a dropped DHCP message is not marked");
	build(&p, OUT, &data);
	pkt_run_tc_mark(fx.prog[RAYOS_PROG_FROM_VM], &p, VM_IFINDEX, &retval, &mark);
	ASSERT_TRUE(retval == TC_ACT_OK && mark == 0, "other traffic is not marked");
}

static void test_flow_expiry_and_policy_change(void)
{
	const struct pd out = { .kind = K_IP, V4(VM_IP, "192.0.2.53"), .proto = UDP, .sport = 40000, .dport = 53 };
	const struct pd back = { .kind = K_IP, V4("192.0.2.53", VM_IP), .proto = UDP, .sport = 53, .dport = 40000 };
	uint32_t retval;

	policy_apply(&pol_ct);
	run_one(OUT, &out, 1, &retval);
	ASSERT_TRUE(ct_age(&out, 59ULL * 1000000000ULL), "flow entry found under its VM-side key");
	run_one(IN, &back, 1, &retval);
	ASSERT_EQ(retval, TC_ACT_OK, "UDP reply after 59 s idle passes");
	ct_age(&out, 61ULL * 1000000000ULL);
	run_one(IN, &back, 1, &retval);
	ASSERT_EQ(retval, TC_ACT_SHOT, "UDP reply after 61 s idle: flow expired, dropped");

	/* A new policy version (same rules) makes flows stale until the
	 * origin side passes the rules again. */
	run_one(OUT, &out, 1, &retval);
	vm_bump_version();
	run_one(IN, &back, 1, &retval);
	ASSERT_EQ(retval, TC_ACT_SHOT, "flow of an older policy version is not honoured");
	run_one(OUT, &out, 1, &retval);
	run_one(IN, &back, 1, &retval);
	ASSERT_EQ(retval, TC_ACT_OK, "origin packet re-validates the flow under the new policy");

	/* Quarantine: a live flow of the VM ends with it, both ways. */
	vm_bump_version_flags(RAYOS_VMF_QUARANTINE);
	run_one(IN, &back, 1, &retval);
	ASSERT_EQ(retval, TC_ACT_SHOT, "quarantine: the reply of a live flow is dropped");
	run_one(OUT, &out, 1, &retval);
	ASSERT_EQ(retval, TC_ACT_SHOT, "quarantine: the flow's origin packet is dropped too");
}

/* A revoke of CAP_NETWORK (the record rewritten without it, as `cap revoke`
 * does) ends flows already open with their next packet, both ways; a grant
 * brings back the same flow (its entry is still valid under this policy). */
static void test_cap_network_revoke(void)
{
	const struct pd out = { .kind = K_IP, V4(VM_IP, "192.0.2.10"), .proto = TCP, .sport = 40001, .dport = 443, .tcp_flags = SYN };
	const struct pd ack = { .kind = K_IP, V4(VM_IP, "192.0.2.10"), .proto = TCP, .sport = 40001, .dport = 443, .tcp_flags = ACK };
	const struct pd back = { .kind = K_IP, V4("192.0.2.10", VM_IP), .proto = TCP, .sport = 443, .dport = 40001, .tcp_flags = ACK };
	const uint64_t net = 1ULL << RAYOS_CAP_NETWORK;
	struct rayos_ctr in0, out0;
	uint32_t retval;

	policy_apply(&pol_ct);
	run_one(OUT, &out, 1, &retval);
	run_one(IN, &back, 1, &retval);
	ASSERT_EQ(retval, TC_ACT_OK, "CAP_NETWORK held: the reply of an open flow passes");

	in0 = vm_ctr(IN, RAYOS_RSN_NO_CAP_NETWORK);
	out0 = vm_ctr(OUT, RAYOS_RSN_NO_CAP_NETWORK);
	vm_bump_version_caps(0, net, 0);
	run_one(IN, &back, 1, &retval);
	ASSERT_EQ(retval, TC_ACT_SHOT, "revoked: the next reply of the open flow is dropped");
	run_one(OUT, &ack, 1, &retval);
	ASSERT_EQ(retval, TC_ACT_SHOT, "revoked: the flow's next packet from the VM is dropped");
	ASSERT_EQ(vm_ctr(IN, RAYOS_RSN_NO_CAP_NETWORK).packets, in0.packets + 1,
		  "revoked: counted as no_cap_network (in)");
	ASSERT_EQ(vm_ctr(OUT, RAYOS_RSN_NO_CAP_NETWORK).packets, out0.packets + 1,
		  "revoked: counted as no_cap_network (out)");

	vm_bump_version_caps(0, 0, net);
	run_one(OUT, &ack, 1, &retval);
	ASSERT_EQ(retval, TC_ACT_OK, "granted again: the flow's packet from the VM passes");
	run_one(IN, &back, 1, &retval);
	ASSERT_EQ(retval, TC_ACT_OK, "granted again: its reply passes");

	/* Other capabilities do not stand in for CAP_NETWORK. */
	vm_bump_version_caps(0, net, ~net & ((1ULL << RAYOS_CAP_COUNT) - 1));
	run_one(IN, &back, 1, &retval);
	ASSERT_EQ(retval, TC_ACT_SHOT, "every capability but CAP_NETWORK: dropped");
}

/* The limit added to a running VM (a publish: new policy version, flow
 * table kept): a flow already open to an unlisted port ends with its next
 * packet either way; one to a listed port resumes when the VM sends. */
static void test_cap_ports_republish(void)
{
	static const struct tpolicy pol_off = {
		.vm_flags = RAYOS_VMF_MAC,
		.bind = RAYOS_BINDF_IPV4 | RAYOS_BINDF_IPV6,
		.dir = {
			[IN] = { RAYOS_ACT_ALLOW },
			[OUT] = { RAYOS_ACT_DENY, .nr = 3, .r = { ALLOW(TCP, 22, 22),
				  ALLOW(TCP, 443, 443), ALLOW(UDP, 0, 0) } },
		},
	};
	const struct pd ssh = { .kind = K_IP, V4(VM_IP, "192.0.2.10"), .proto = TCP, .sport = 40022, .dport = 22, .tcp_flags = ACK };
	const struct pd ssh_back = { .kind = K_IP, V4("192.0.2.10", VM_IP), .proto = TCP, .sport = 22, .dport = 40022, .tcp_flags = ACK };
	const struct pd web = { .kind = K_IP, V4(VM_IP, "192.0.2.10"), .proto = TCP, .sport = 40443, .dport = 443, .tcp_flags = ACK };
	const struct pd web_back = { .kind = K_IP, V4("192.0.2.10", VM_IP), .proto = TCP, .sport = 443, .dport = 40443, .tcp_flags = ACK };
	struct rayos_ctr before;
	uint32_t retval;

	policy_apply(&pol_off);
	run_one(OUT, &ssh, 1, &retval);
	run_one(IN, &ssh_back, 1, &retval);
	ASSERT_EQ(retval, TC_ACT_OK, "no limit: an ssh flow is open both ways");
	run_one(OUT, &web, 1, &retval);
	run_one(IN, &web_back, 1, &retval);
	ASSERT_EQ(retval, TC_ACT_OK, "no limit: a 443 flow is open both ways");

	fx_keep_flows = true;
	policy_apply(&pol_cap_ports);
	fx_keep_flows = false;
	before = vm_ctr(IN, RAYOS_RSN_CAP_PORTS);
	run_one(IN, &ssh_back, 1, &retval);
	ASSERT_EQ(retval, TC_ACT_SHOT, "limit 443 published: the open ssh flow's reply drops");
	ASSERT_EQ(vm_ctr(IN, RAYOS_RSN_CAP_PORTS).packets, before.packets + 1,
		  "counted as cap_ports");
	run_one(OUT, &ssh, 1, &retval);
	ASSERT_EQ(retval, TC_ACT_SHOT, "limit 443 published: the ssh flow's next packet from the "
		  "VM drops");
	run_one(OUT, &web, 1, &retval);
	ASSERT_EQ(retval, TC_ACT_OK, "limit 443 published: the 443 flow's packet from the VM passes");
	run_one(IN, &web_back, 1, &retval);
	ASSERT_EQ(retval, TC_ACT_OK, "and its reply passes as the flow's");

	/* Cleared (republished without it): ssh opens again. */
	fx_keep_flows = true;
	policy_apply(&pol_off);
	fx_keep_flows = false;
	run_one(OUT, &ssh, 1, &retval);
	ASSERT_EQ(retval, TC_ACT_OK, "limit cleared: ssh from the VM passes again");
}

/* A temporary CAP_NETWORK: the boot-clock deadline in the record (and its
 * copy in the tap's entry) is compared by the program; after it, every frame
 * of the VM, flows included, drops as no_cap_network. */
static void test_cap_network_temporary(void)
{
	const struct pd out = { .kind = K_IP, V4(VM_IP, "192.0.2.10"), .proto = TCP, .sport = 40002, .dport = 443, .tcp_flags = SYN };
	const struct pd back = { .kind = K_IP, V4("192.0.2.10", VM_IP), .proto = TCP, .sport = 443, .dport = 40002, .tcp_flags = ACK };
	const uint64_t net = 1ULL << RAYOS_CAP_NETWORK;
	struct rayos_ctr before;
	struct rayos_vm vm;
	uint32_t id = VM_ID, retval;

	policy_apply(&pol_ct);
	vm_bump_version_caps(0, net, 0);
	if (bpf_map_lookup_elem(fx.map[RAYOS_MAP_VMS], &id, &vm))
		return;
	vm.cap_until_ns[RAYOS_CAP_NETWORK] = now_boot_ns() + 3600ULL * 1000000000ULL;
	bpf_map_update_elem(fx.map[RAYOS_MAP_VMS], &id, &vm, BPF_ANY);
	iface_sync();
	run_one(OUT, &out, 1, &retval);
	ASSERT_EQ(retval, TC_ACT_OK, "temporary CAP_NETWORK, deadline ahead: the VM opens a flow");
	run_one(IN, &back, 1, &retval);
	ASSERT_EQ(retval, TC_ACT_OK, "temporary CAP_NETWORK: the reply passes");

	vm.cap_until_ns[RAYOS_CAP_NETWORK] = now_boot_ns() - 1;
	bpf_map_update_elem(fx.map[RAYOS_MAP_VMS], &id, &vm, BPF_ANY);
	iface_sync();
	before = vm_ctr(IN, RAYOS_RSN_NO_CAP_NETWORK);
	run_one(IN, &back, 1, &retval);
	ASSERT_EQ(retval, TC_ACT_SHOT, "deadline passed: the open flow's reply is dropped");
	ASSERT_EQ(vm_ctr(IN, RAYOS_RSN_NO_CAP_NETWORK).packets, before.packets + 1,
		  "deadline passed: counted as no_cap_network");
	run_one(OUT, &out, 1, &retval);
	ASSERT_EQ(retval, TC_ACT_SHOT, "deadline passed: the VM's packets are dropped");

	/* A deadline of another capability does not stand in. */
	vm.cap_until_ns[RAYOS_CAP_NETWORK] = 0;
	vm.cap_until_ns[RAYOS_CAP_GPU] = now_boot_ns() + 3600ULL * 1000000000ULL;
	bpf_map_update_elem(fx.map[RAYOS_MAP_VMS], &id, &vm, BPF_ANY);
	iface_sync();
	run_one(OUT, &out, 1, &retval);
	ASSERT_EQ(retval, TC_ACT_SHOT, "a temporary CAP_GPU does not let packets through");
}

/* ---- delegation: the walk on the packet path -------------------------------- */

/* A delegator VM: a record (the loader needs its slot) and its slot's copy. */
static void deleg_vm(uint32_t id, uint32_t slot, uint64_t caps)
{
	struct rayos_vm vm = { .vm_id = id, .slot = slot, .caps = caps };

	bpf_map_update_elem(fx.map[RAYOS_MAP_VMS], &id, &vm, BPF_ANY);
	loader_cap_state_sync(fx.ld, &vm);
}

struct deleg_case {
	const char *name;
	int depth;		/* links between the root and VM_ID */
	int expire;		/* 1..depth: this link (1 = the root's) ends now; 0 none */
	bool revoke_root;
	bool reuse_middle;	/* the first delegator's slot now holds another VM */
	bool want_pass;
};

static const struct deleg_case deleg_cases[] = {
	{ "depth 1: delegated CAP_NETWORK passes", 1, 0, false, false, true },
	{ "depth 2: passes", 2, 0, false, false, true },
	{ "depth 3 (A->B->C->VM): passes", 3, 0, false, false, true },
	{ "depth 4: the fourth hop is not followed: no_cap_network", 4, 0, false, false, false },
	{ "depth 3, the middle link expired: no_cap_network", 3, 2, false, false, false },
	{ "depth 3, the root's link expired: no_cap_network", 3, 1, false, false, false },
	{ "depth 3, the VM's own link expired: no_cap_network", 3, 3, false, false, false },
	{ "depth 3, the root revoked: no_cap_network", 3, 0, true, false, false },
	{ "depth 3, a delegator's slot reused by another VM: no_cap_network", 3, 0, false, true,
	  false },
};

/* VM_ID without CAP_NETWORK of its own holds it through a chain of links
 * from root VM 100 (slot 10) down VMs 101.. (slots 11..): each case builds
 * the chain with the loader's functions and sends one frame. */
static void test_cap_delegation(void)
{
	const struct pd out = { .kind = K_IP, V4(VM_IP, "192.0.2.10"), .proto = UDP, .sport = 40003, .dport = 53 };
	const uint64_t net = 1ULL << RAYOS_CAP_NETWORK;
	uint32_t retval;

	policy_apply(&pol_open);
	vm_bump_version_caps(0, net, 0);
	for (size_t i = 0; i < sizeof(deleg_cases) / sizeof(deleg_cases[0]); i++) {
		const struct deleg_case *c = &deleg_cases[i];
		uint64_t far = now_boot_ns() + 3600ULL * 1000000000ULL;
		struct rayos_ctr before;
		int err = 0;

		/* chain: 100 -> 101 -> ... -> 100+depth-1 -> VM_ID */
		for (int k = 0; k < c->depth; k++)
			deleg_vm(100 + k, 10 + k, k == 0 && !c->revoke_root ? net : 0);
		for (int k = 1; k <= c->depth && !err; k++) {
			uint32_t to = k == c->depth ? VM_ID : 100 + k;

			err = loader_cap_link_set(fx.ld, to, RAYOS_CAP_NETWORK, 100 + k - 1,
						  c->expire == k ? now_boot_ns() - 1 : far);
		}
		if (c->reuse_middle)
			deleg_vm(999, 11, net);
		if (err) {
			tap_ok(false, "delegation: %s: loader_cap_link_set: %s", c->name,
			       strerror(-err));
			continue;
		}
		before = vm_ctr(OUT, RAYOS_RSN_NO_CAP_NETWORK);
		run_one(OUT, &out, 1, &retval);
		tap_ok(retval == (c->want_pass ? TC_ACT_OK : TC_ACT_SHOT) &&
		       vm_ctr(OUT, RAYOS_RSN_NO_CAP_NETWORK).packets ==
		       before.packets + !c->want_pass, "delegation: %s", c->name);
		loader_cap_link_set(fx.ld, VM_ID, RAYOS_CAP_NETWORK, 0, 0);
		for (int k = 0; k < c->depth; k++) {
			uint32_t id = 100 + k;

			bpf_map_delete_elem(fx.map[RAYOS_MAP_VMS], &id);
			loader_cap_state_drop(fx.ld, 10 + k, id);
		}
		loader_cap_state_drop(fx.ld, 11, 999);
	}

	/* A cascade in one step: revoking the root ends the leaf's next frame. */
	deleg_vm(100, 10, net);
	deleg_vm(101, 11, 0);
	loader_cap_link_set(fx.ld, 101, RAYOS_CAP_NETWORK, 100, 0);
	loader_cap_link_set(fx.ld, VM_ID, RAYOS_CAP_NETWORK, 101, 0);
	run_one(OUT, &out, 1, &retval);
	ASSERT_EQ(retval, TC_ACT_OK, "delegation: links without deadlines pass");
	run_one(OUT, &out, 1, &retval);
	ASSERT_EQ(retval, TC_ACT_OK, "delegation: the next frame (cached set) passes");
	deleg_vm(100, 10, 0);
	run_one(OUT, &out, 1, &retval);
	ASSERT_EQ(retval, TC_ACT_SHOT, "delegation: the root revoked: the next frame drops");
	loader_cap_link_set(fx.ld, VM_ID, RAYOS_CAP_NETWORK, 0, 0);
	ASSERT_EQ(loader_cap_link_set(fx.ld, VM_ID, RAYOS_CAP_NETWORK, 4242, 0), -ENOENT,
		  "delegation: a link from a VM without a record is refused");
	ASSERT_EQ(loader_cap_link_set(fx.ld, VM_ID, RAYOS_CAP_NETWORK, VM_ID, 0), -EINVAL,
		  "delegation: a link from the VM to itself is refused");
	for (uint32_t id = 100; id <= 101; id++) {
		bpf_map_delete_elem(fx.map[RAYOS_MAP_VMS], &id);
		loader_cap_state_drop(fx.ld, 10 + id - 100, id);
	}
	vm_bump_version_caps(0, 0, net);
}

/* revoke-all through the loader's switch: CAP_NETWORK taken from the VM's
 * slot ends its open flow at the switch's store, before its record changes;
 * an entry for another slot does nothing; settling (once the record carries
 * the revoke) returns to the fast path. */
static void test_cap_network_revoke_all(void)
{
	const struct pd out = { .kind = K_IP, V4(VM_IP, "192.0.2.10"), .proto = TCP, .sport = 40003, .dport = 443, .tcp_flags = SYN };
	const struct pd back = { .kind = K_IP, V4("192.0.2.10", VM_IP), .proto = TCP, .sport = 443, .dport = 40003, .tcp_flags = ACK };
	const uint64_t net = 1ULL << RAYOS_CAP_NETWORK;
	struct loader_revoke other, mine;
	struct rayos_ctr before;
	struct rayos_vm vm;
	uint32_t id = VM_ID, retval;
	uint64_t epoch = 0, e2;

	policy_apply(&pol_ct);
	vm_bump_version_caps(0, 0, net);	/* held permanently */
	if (bpf_map_lookup_elem(fx.map[RAYOS_MAP_VMS], &id, &vm))
		return;
	run_one(OUT, &out, 1, &retval);
	run_one(IN, &back, 1, &retval);
	ASSERT_EQ(retval, TC_ACT_OK, "revoke-all: before, the flow's reply passes");

	other = (struct loader_revoke){ .slot = vm.slot + 1, .mask = net };
	ASSERT_EQ(loader_caps_switch(fx.ld, &other, 1, &epoch), 0, "revoke-all of another slot");
	run_one(IN, &back, 1, &retval);
	ASSERT_EQ(retval, TC_ACT_OK, "revoke-all of another slot: this VM's flow still passes");

	mine = (struct loader_revoke){ .slot = vm.slot, .mask = net };
	before = vm_ctr(IN, RAYOS_RSN_NO_CAP_NETWORK);
	ASSERT_EQ(loader_caps_switch(fx.ld, &mine, 1, &e2), 0, "revoke-all of this VM's slot");
	ASSERT_EQ(e2, epoch + 1, "revoke-all: each switch is the next epoch");
	run_one(IN, &back, 1, &retval);
	ASSERT_EQ(retval, TC_ACT_SHOT, "revoke-all: the open flow's reply drops at the switch "
		  "(record unchanged)");
	ASSERT_EQ(vm_ctr(IN, RAYOS_RSN_NO_CAP_NETWORK).packets, before.packets + 1,
		  "revoke-all: counted as no_cap_network");
	run_one(OUT, &out, 1, &retval);
	ASSERT_EQ(retval, TC_ACT_SHOT, "revoke-all: the VM's packets drop");
	ASSERT_TRUE(loader_caps_armed(fx.ld, &e2) && e2 == epoch + 1,
		    "revoke-all: armed until settled");

	vm_bump_version_caps(0, net, 0);	/* the record now carries it */
	ASSERT_EQ(loader_caps_settle(fx.ld), 0, "revoke-all: settle");
	ASSERT_TRUE(!loader_caps_armed(fx.ld, &e2), "revoke-all: settled, disarmed");
	run_one(IN, &back, 1, &retval);
	ASSERT_EQ(retval, TC_ACT_SHOT, "settled: the record keeps the VM without CAP_NETWORK");
	vm_bump_version_caps(0, 0, net);
	run_one(OUT, &out, 1, &retval);
	ASSERT_EQ(retval, TC_ACT_OK, "settled: a later grant works (no stale entry)");
}

static void test_rate(void)
{
	struct tpolicy pol = pol_open;
	const struct pd d = VMOUT(.proto = UDP, .sport = 1, .dport = 2, .payload = 58);
	struct rayos_ctr rate_before;
	struct rayos_tbf tbf;
	uint32_t retval, idx = VM_SLOT * RAYOS_DIR_MAX + OUT;
	struct pkt p;

	build(&p, OUT, &d);
	/* 1 byte/s: nothing refills during the test. */
	pol.dir[OUT].rate = 1;
	pol.dir[OUT].burst = 3 * p.len;
	policy_apply(&pol);
	/* A full bucket: what earlier cases left in it must not decide this one. */
	memset(&tbf, 0, sizeof(tbf));
	tbf.tokens = 3 * p.len;
	tbf.last_ns = now_boot_ns();
	bpf_map_update_elem(fx.map[RAYOS_MAP_TBF], &idx, &tbf, BPF_ANY);
	rate_before = vm_ctr(OUT, RAYOS_RSN_RATE);
	for (int i = 0; i < 3; i++) {
		run_one(OUT, &d, 1, &retval);
		if (!ASSERT_EQ(retval, TC_ACT_OK, "rate: packet within the burst passes"))
			break;
	}
	run_one(OUT, &d, 1, &retval);
	ASSERT_EQ(retval, TC_ACT_SHOT, "rate: packet burst+1 dropped");
	ASSERT_EQ(vm_ctr(OUT, RAYOS_RSN_RATE).packets, rate_before.packets + 1,
		  "rate: RATE counter moved by one");
	run_one(IN, &d, 1, &retval);
	ASSERT_EQ(retval, TC_ACT_OK, "rate: the other direction is not limited");

	/* Huge rate and burst, long idle: refill must saturate, not wrap. */
	pol.dir[OUT].rate = UINT64_MAX - 1;
	pol.dir[OUT].burst = UINT64_MAX;
	policy_apply(&pol);
	memset(&tbf, 0, sizeof(tbf));
	tbf.tokens = 5;
	tbf.last_ns = now_boot_ns() - 10ULL * 1000000000ULL;
	bpf_map_update_elem(fx.map[RAYOS_MAP_TBF], &idx, &tbf, BPF_ANY);
	run_one(OUT, &d, 1000, &retval);
	ASSERT_EQ(retval, TC_ACT_OK, "rate ~UINT64_MAX after 10 s idle: passes");
	bpf_map_lookup_elem(fx.map[RAYOS_MAP_TBF], &idx, &tbf);
	ASSERT_TRUE(tbf.tokens >= UINT64_MAX - 1000ULL * p.len,
		    "rate ~UINT64_MAX: bucket saturated at burst, no wrap-around");

	/* Sub-second refill at a large rate: 1e12 B/s for 1 ms = 1e9 bytes. */
	pol.dir[OUT].rate = 1000000000000ULL;
	pol.dir[OUT].burst = 2000000000ULL;
	policy_apply(&pol);
	memset(&tbf, 0, sizeof(tbf));
	tbf.last_ns = now_boot_ns() - 1000000ULL;
	bpf_map_update_elem(fx.map[RAYOS_MAP_TBF], &idx, &tbf, BPF_ANY);
	run_one(OUT, &d, 1, &retval);
	bpf_map_lookup_elem(fx.map[RAYOS_MAP_TBF], &idx, &tbf);
	if (!ASSERT_TRUE(tbf.tokens >= 1000000000ULL - p.len && tbf.tokens < 1500000000ULL,
			 "rate 1e12 B/s: 1 ms refills ~1e9 bytes"))
		tap_diag("  tokens %llu", (unsigned long long)tbf.tokens);
}

struct ev_seen {
	int n;
	struct rayos_event last;
};

static int on_event(void *ctx, void *data, size_t len)
{
	struct ev_seen *seen = ctx;

	if (len == sizeof(struct rayos_event)) {
		memcpy(&seen->last, data, sizeof(seen->last));
		seen->n++;
	}
	return 0;
}

static void test_events(void)
{
	const struct pd d = VMOUT(.proto = TCP, .sport = 40000, .dport = 23, .tcp_flags = SYN);
	struct ev_seen seen = { 0 };
	struct ring_buffer *rb;
	uint64_t suppressed, sent;
	uint32_t retval, dst = pkt_ip4("198.51.100.1");
	struct pkt p;

	rb = ring_buffer__new(fx.map[RAYOS_MAP_EVENTS], on_event, &seen, NULL);
	if (!ASSERT_TRUE(rb != NULL, "ring buffer opens"))
		return;
	ring_buffer__consume(rb);	/* events of earlier cases */
	seen.n = 0;

	policy_apply(&pol_fw_out);	/* also resets the event limiter */
	build(&p, OUT, &d);
	run_one(OUT, &d, 1, &retval);
	ring_buffer__consume(rb);
	ASSERT_EQ(seen.n, 1, "drop: one event in the ring buffer");
	ASSERT_EQ(seen.last.vm_id, VM_ID, "event: vm_id");
	ASSERT_EQ(seen.last.dir, OUT, "event: dir");
	ASSERT_EQ(seen.last.reason, RAYOS_RSN_DROP_DEFAULT, "event: reason");
	ASSERT_EQ(seen.last.rule, RAYOS_EV_RULE_NONE, "event: no rule");
	ASSERT_EQ(seen.last.proto, TCP, "event: proto");
	ASSERT_EQ(seen.last.family, AF_INET, "event: family");
	ASSERT_EQ(seen.last.dport, 23, "event: dport");
	ASSERT_EQ(seen.last.sport, 40000, "event: sport");
	ASSERT_EQ(seen.last.pkt_len, p.len, "event: length");
	ASSERT_TRUE(!memcmp(seen.last.daddr, &dst, 4), "event: destination address");

	/* A flood from one VM on one CPU: at most one second's worth of
	 * events, the rest counted as suppressed. */
	seen.n = 0;
	suppressed = net_ctr(RAYOS_NETC_EV_SUPPRESSED);
	sent = net_ctr(RAYOS_NETC_EV_SENT);
	run_one(OUT, &d, 2000, &retval);
	ring_buffer__consume(rb);
	ASSERT_EQ(retval, TC_ACT_SHOT, "flood: dropped");
	ASSERT_TRUE(seen.n >= 1 && seen.n <= 60, "flood: events limited to the per-VM burst");
	ASSERT_EQ(net_ctr(RAYOS_NETC_EV_SENT) - sent, (uint64_t)seen.n, "flood: sent counter = events read");
	ASSERT_EQ(net_ctr(RAYOS_NETC_EV_SUPPRESSED) - suppressed, 2000 - (uint64_t)seen.n,
		  "flood: the rest counted as suppressed");
	tap_diag("flood of 2000 drops: %d events, %llu suppressed", seen.n,
		 (unsigned long long)(net_ctr(RAYOS_NETC_EV_SUPPRESSED) - suppressed));

	/* A drop by rule carries the rule number. */
	policy_apply(&pol_fw_out);
	seen.n = 0;
	{
		const struct pd r = VMOUT(.proto = TCP, .sport = 40000, .dport = 1500);

		run_one(OUT, &r, 1, &retval);
	}
	ring_buffer__consume(rb);
	ASSERT_TRUE(seen.n == 1 && seen.last.rule == 1 && seen.last.reason == RAYOS_RSN_DROP_RULE,
		    "event of a rule drop names the rule");

	/* A drop for want of CAP_NETWORK is an event with that reason. */
	policy_apply(&pol_no_cap_network);
	seen.n = 0;
	run_one(IN, &(const struct pd)VMIN(.proto = UDP, .sport = 53, .dport = 5353), 1, &retval);
	ring_buffer__consume(rb);
	ASSERT_TRUE(seen.n == 1 && seen.last.reason == RAYOS_RSN_NO_CAP_NETWORK &&
		    seen.last.dir == IN && seen.last.dport == 5353,
		    "event of a drop without CAP_NETWORK says no_cap_network");
	ring_buffer__free(rb);
}

/* Figures, not pass/fail: what one verdict costs in BPF_PROG_TEST_RUN. */
static void report_cost(void)
{
	const struct pd flow = { .kind = K_IP, V4(VM_IP, "192.0.2.10"), .proto = TCP, .sport = 40000, .dport = 443, .tcp_flags = ACK };
	const struct pd miss = VMOUT(.proto = UDP, .sport = 40000, .dport = 9);
	struct pkt p;
	uint32_t retval, ns_flow = 0, ns_rule = 0;

	policy_apply(&pol_ct);
	build(&p, OUT, &flow);
	pkt_run_tc(fx.prog[RAYOS_PROG_FROM_VM], &p, VM_IFINDEX, 1, &retval, NULL);
	pkt_run_tc(fx.prog[RAYOS_PROG_FROM_VM], &p, VM_IFINDEX, 100000, &retval, &ns_flow);
	build(&p, OUT, &miss);
	pkt_run_tc(fx.prog[RAYOS_PROG_FROM_VM], &p, VM_IFINDEX, 100000, &retval, &ns_rule);
	tap_diag("cost: flow hit %u ns/packet, rule miss + default deny + event limiter %u ns/packet",
		 ns_flow, ns_rule);
}

int main(void)
{
	const char *why = fixture_open();

	if (why) {
		tap_skip(why, "rayos_net test-run cases");
		return tap_done();
	}
	run_table(false);
	run_table(true);
	test_unknown_iface_and_missing_vm();
	test_lease_expiry();
	test_flow_expiry_and_policy_change();
	test_cap_network_revoke();
	test_cap_network_temporary();
	test_cap_delegation();
	test_cap_ports_republish();
	test_cap_network_revoke_all();
	test_icmp_related();
	test_dhcp_mark();
	test_rate();
	test_events();
	report_cost();
	fixture_cleanup();
	return tap_done();
}
