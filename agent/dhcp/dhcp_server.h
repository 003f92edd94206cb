/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The DHCP server engine for one guest bridge: RFC 2131 state per client,
 * pools, per-VM reservations, held offers, DECLINE quarantine, INFORM,
 * rapid commit (RFC 4039) and relay information echo (RFC 3046).  It takes a
 * parsed message and the time and produces at most one reply plus lease
 * records and binding changes through callbacks; it makes no syscalls, so
 * tests and the fuzzer drive it directly.
 *
 * Leases belong to the VM that asked for them.  The caller says which VM
 * sent a message (struct dhcp_origin: the agent knows it from the tap the
 * frame came in on, see policies/DHCP.md), never the message itself; a VM
 * holds at most max_leases_per_vm leases per bridge whatever chaddr or
 * client identifier it writes.  Without an origin (the standalone server
 * of the tests) a client is its chaddr, and a policy VM is found by MAC.
 */
#ifndef RAYOS_DHCP_SERVER_H
#define RAYOS_DHCP_SERVER_H

#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/dhcp/dhcp_leases.h"
#include "agent/dhcp/dhcp_proto.h"

#define DHCP_MAX_SERVERS	8	/* DNS / NTP addresses per list */
#define DHCP_REPLY_MAX		1500

/* An inclusive range of pool addresses, host order. */
struct dhcp_range {
	uint32_t lo, hi;
};

/* A VM of the policy on this bridge: its MAC, its id for the binding hook,
 * and its static address (host order, 0 = gets a pool address). */
struct dhcp_host {
	uint8_t mac[6];
	uint32_t vm_id;
	uint32_t ip;
};

/* One bridge's settings, from the policy's "dhcp" object (policies/DHCP.md).
 * Addresses in host order. */
struct dhcp_bridge_cfg {
	char name[IF_NAMESIZE];
	uint32_t server_ip, net, mask;
	uint8_t prefix;
	size_t nr_ranges;
	struct dhcp_range *ranges;	/* sorted, disjoint, inside the subnet */
	uint32_t router;		/* 0 = none */
	size_t nr_dns, nr_ntp;
	uint32_t dns[DHCP_MAX_SERVERS], ntp[DHCP_MAX_SERVERS];
	char domain[256];		/* "" = none */
	uint32_t lease_time, t1, t2;	/* seconds */
	uint16_t mtu;			/* 0 = none */
	bool rapid_commit;
	bool conflict_check;		/* ARP probe before offering */
	uint32_t offer_hold;		/* seconds an offer reserves its address */
	uint32_t decline_hold;		/* seconds a declined address rests */
	uint32_t max_leases_per_vm;	/* 0 is taken as 1 */
	bool serve_unmanaged;		/* answer frames no RayOS tap sent (origin vm 0) */
	size_t nr_hosts;
	struct dhcp_host *hosts;
};

/* How the I/O layer must deliver a reply (RFC 2131 4.1). */
enum dhcp_tx {
	DHCP_TX_NONE = 0,	/* no reply */
	DHCP_TX_RELAY,		/* UDP to dst_ip:67 (giaddr) */
	DHCP_TX_UNICAST,	/* IP dst_ip, Ethernet dst_mac, port 68 */
	DHCP_TX_BROADCAST,	/* 255.255.255.255, ff:ff:ff:ff:ff:ff, port 68 */
	DHCP_TX_PROBE,		/* hold the request: ARP-probe probe_ip, then call
				 * dhcp_engine_probe_result() and handle it again */
};

struct dhcp_reply {
	enum dhcp_tx tx;
	uint8_t type;		/* DHCPOFFER, DHCPACK, DHCPNAK */
	bool commit;		/* carries a lease: send only after lease_store_commit() */
	uint32_t dst_ip_be;
	uint16_t dst_port;
	uint8_t dst_mac[6];
	uint32_t probe_ip_be;
	size_t len;
	uint8_t pkt[DHCP_REPLY_MAX];
};

/* Side effects of the engine.  persist queues a lease record (the caller
 * commits before sending replies that have commit set); binding tells that
 * the client (vm_id, 0 for none; mac) now holds ip_be until expiry_ms, or
 * with bound false no longer holds ip_be.  vm_holds (may be NULL) says
 * whether the data path still binds ip_be to vm_id: a REQUEST for an address
 * the server has no record of is ACKed only then (a lost lease database),
 * never blind. */
struct dhcp_engine_ops {
	void *ctx;
	int (*persist)(void *ctx, const struct lease_rec *rec);
	void (*binding)(void *ctx, uint32_t vm_id, const uint8_t mac[6],
			uint32_t ip_be, uint64_t expiry_ms, bool bound);
	bool (*vm_holds)(void *ctx, uint32_t vm_id, uint32_t ip_be);
};

/* Who sent a message, as the I/O layer knows it.  vm_id 0: a frame no
 * RayOS tap stamped (a port RayOS does not enforce). */
struct dhcp_origin {
	uint32_t vm_id;
};

struct dhcp_engine_stats {
	uint64_t rx[DHCPINFORM + 1];	/* by message type */
	uint64_t offers, acks, naks, ignored, exhausted, conflicts, declines;
	uint64_t unmanaged;		/* ignored: from a port RayOS does not enforce */
	uint64_t foreign_chaddr;	/* ignored: chaddr of another VM of the policy */
	uint64_t vm_limit;		/* ignored: the VM holds max_leases_per_vm */
	uint64_t no_record;		/* NAKed: REQUEST for an address never offered to it */
	uint64_t decline_limited;	/* DECLINEs that freed without a quarantine */
};

enum dhcp_lease_state {
	DHCP_L_FREE = 0,	/* remembered: the client gets it back if still free */
	DHCP_L_OFFERED,
	DHCP_L_BOUND,
	DHCP_L_QUARANTINE,
};

/* One lease as status and the lease listing show it. */
struct dhcp_lease_info {
	uint8_t mac[6];
	uint32_t ip_be;
	uint8_t state;		/* enum dhcp_lease_state */
	bool is_static, probing;
	uint32_t vm_id;
	uint64_t expiry_ms;
};

struct dhcp_engine;

/* cfg is copied.  The engine starts empty: replay the lease log with
 * dhcp_engine_load(), then dhcp_engine_start(). */
int dhcp_engine_new(const struct dhcp_bridge_cfg *cfg, const struct dhcp_engine_ops *ops,
		    struct dhcp_engine **out);
void dhcp_engine_free(struct dhcp_engine *e);
const struct dhcp_bridge_cfg *dhcp_engine_cfg(const struct dhcp_engine *e);

/* Replay one lease record (order matters: later records win). */
void dhcp_engine_load(struct dhcp_engine *e, const struct lease_rec *rec, uint64_t now_ms);
/* After loading: expire what is over and announce every live binding. */
void dhcp_engine_start(struct dhcp_engine *e, uint64_t now_ms);
/* Move the leases of from into e (a reconfigured bridge): every lease still
 * valid under e's configuration is kept, bindings are not re-announced. */
void dhcp_engine_adopt(struct dhcp_engine *e, const struct dhcp_engine *from, uint64_t now_ms);

/* One request from origin (NULL: the client is who chaddr says).  Returns
 * 0 with r->tx saying what to do (DHCP_TX_NONE when the message is
 * ignored), or -errno when no reply could be built. */
int dhcp_engine_handle_from(struct dhcp_engine *e, const struct dhcp_msg *m,
			    const struct dhcp_origin *origin, uint64_t now_ms,
			    struct dhcp_reply *r);
/* dhcp_engine_handle_from() without an origin. */
int dhcp_engine_handle(struct dhcp_engine *e, const struct dhcp_msg *m, uint64_t now_ms,
		       struct dhcp_reply *r);
/* The ARP probe for ip_be ended: conflict when someone answered. */
void dhcp_engine_probe_result(struct dhcp_engine *e, uint32_t ip_be, bool conflict,
			      uint64_t now_ms);
/* Expire leases, offers and quarantines; returns the next deadline (ms, 0 = none). */
uint64_t dhcp_engine_tick(struct dhcp_engine *e, uint64_t now_ms);

/* Admin release by address (ip_be != 0) or MAC.  -ENOENT when no lease. */
int dhcp_engine_release(struct dhcp_engine *e, uint32_t ip_be, const uint8_t *mac,
			uint64_t now_ms);

/* Iterate leases: *pos starts at 0; returns false at the end. */
bool dhcp_engine_next_lease(const struct dhcp_engine *e, size_t *pos,
			    struct dhcp_lease_info *li);
/* Live records for compaction (bound leases and quarantines). */
bool dhcp_engine_next_rec(const struct dhcp_engine *e, size_t *pos, struct lease_rec *rec);
const struct dhcp_engine_stats *dhcp_engine_stats(const struct dhcp_engine *e);
size_t dhcp_engine_pool_size(const struct dhcp_engine *e);
size_t dhcp_engine_pool_used(const struct dhcp_engine *e);

#endif
