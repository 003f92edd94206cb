/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * DHCPv4 client (RFC 2131 section 4.4) with RFC 5227 address conflict
 * detection, for a routed bridge uplink and for tests.  Two layers:
 *
 *  - struct dhcpc, a pure engine: it takes parsed replies, ARP packets and
 *    the time (any monotonic ms clock) and calls back to send a message,
 *    send an ARP probe or announcement, apply or remove the address, keep or
 *    forget the lease, and log.  No syscalls, so tests drive it with a fake
 *    clock and feed it hand-made packets.
 *  - dhcp_client_run(), the driver: AF_PACKET sockets on one interface,
 *    epoll + timerfd + signalfd, rtnetlink to apply the address, a lease
 *    file for INIT-REBOOT and a JSON-lines transaction log.
 *
 * States (dhcpc_state_name):
 *   INIT -> SELECTING -> REQUESTING -> PROBING -> BOUND <-> RENEWING
 *   -> REBINDING -> INIT;  INIT-REBOOT -> REBOOTING -> PROBING -> BOUND;
 *   SELECTING -> STATIC-PROBING -> STATIC (discovery goes on meanwhile).
 *
 * Offer choice (documented rule): offers are collected for offer_window_ms
 * after the first one; servers that failed us in this episode (no ACK/NAK
 * to our REQUEST) are passed over when anyone else offered; among the rest
 * the longest lease wins, ties go to the earliest offer.  Once the static
 * fallback is due, offers from servers that all failed us already give way
 * to it.
 *
 * What no server should offer is refused, with a "refused" event naming the
 * field (dhcpc_check_offer): a yiaddr that is zero, loopback, link-local,
 * multicast, reserved or broadcast, the network or broadcast address of the
 * offered subnet, or the server's own address; a server identifier that is
 * no usable address; a subnet mask that is zero or not contiguous; a lease
 * time of zero; a router that is the offered address or no usable one.  A
 * refused OFFER is not a candidate (discovery goes on, then the static
 * fallback); a refused ACK while requesting counts as that server failing
 * us; while renewing the current lease is kept until it expires.
 */
#ifndef RAYOS_DHCP_CLIENT_H
#define RAYOS_DHCP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/dhcp/dhcp_proto.h"

enum dhcpc_state {
	DHCPC_INIT = 0,		/* waiting to (re)start discovery */
	DHCPC_SELECTING,	/* DISCOVER sent, collecting offers */
	DHCPC_REQUESTING,	/* REQUEST for the chosen offer sent */
	DHCPC_PROBING,		/* ACKed: RFC 5227 probe of the address */
	DHCPC_BOUND,
	DHCPC_RENEWING,		/* after T1: REQUEST unicast to our server */
	DHCPC_REBINDING,	/* after T2: REQUEST broadcast to any server */
	DHCPC_INIT_REBOOT,	/* a remembered lease: about to ask for it */
	DHCPC_REBOOTING,	/* REQUEST for the remembered address sent */
	DHCPC_STATIC_PROBING,	/* no server answered: probing the static address */
	DHCPC_STATIC,		/* static address in use, still discovering */
	DHCPC_STOPPED,		/* released */
	DHCPC_NR_STATES,
};

#define DHCPC_MAX_OFFERS	8
#define DHCPC_MAX_AVOID		8
#define DHCPC_PKT_MAX		576	/* RFC 2131: every client can take this */
#define DHCPC_INFINITE		0xffffffffU

/* An address and its parameters (network order for addresses). */
struct dhcpc_lease {
	uint32_t ip_be, server_be, mask_be, router_be, dns_be;	/* 0 = none */
	uint8_t prefix;
	bool is_static;
	uint32_t lease_s, t1_s, t2_s;	/* as granted; lease_s DHCPC_INFINITE = forever */
	uint64_t acquired_ms;		/* engine clock */
	uint64_t expiry_ms;		/* engine clock, after time_scale; 0 = never */
};

/* Settings.  Zero means the default in brackets.  time_scale multiplies the
 * protocol's own timers (retransmission 4..64 s, RFC 5227 probe timings,
 * the renew/rebind retransmission floor of 60 s, and T1/T2/lease expiry
 * derived from the server's lease), so tests can run a 2-minute lease in
 * seconds; the durations given in ms here are taken as they are. */
struct dhcpc_cfg {
	uint8_t mac[6];
	char hostname[64];			/* option 12 ("" = none) */
	uint8_t client_id[64];			/* option 61 ... */
	size_t client_id_len;			/* ... 0 = none */
	double time_scale;			/* [1.0] */
	uint32_t offer_window_ms;		/* [1000] */
	uint32_t decline_backoff_ms;		/* [10000], RFC 2131 3.1.5 */
	uint32_t request_tries;			/* [4] REQUESTs before giving up a server */
	uint32_t reboot_tries;			/* [3] INIT-REBOOT REQUESTs before INIT */
	bool no_probe;				/* skip RFC 5227 (not recommended) */
	/* Static fallback: used when no offer came within static_after_ms of
	 * starting discovery.  static_ip_be 0 = none. */
	uint32_t static_ip_be, static_router_be;
	uint8_t static_prefix;			/* [24] */
	uint32_t static_after_ms;		/* [30000] */
	uint64_t seed;				/* xids and jitter; 0 = fixed */
};

/* One message to send.  broadcast: to 255.255.255.255 and ff:ff:ff:ff:ff:ff;
 * else to dst_be at dst_mac (all zero: unknown, send to broadcast MAC). */
struct dhcpc_tx {
	uint8_t type;
	bool broadcast;
	uint32_t src_be, dst_be;
	uint8_t dst_mac[6];
	size_t len;
	uint8_t pkt[DHCPC_PKT_MAX];
};

/* One entry of the transaction log. */
struct dhcpc_event {
	const char *what;	/* "state", "tx", "rx", "ignored", "refused", "probe",
				 * "announce", "conflict", "apply", "remove",
				 * "offer-chosen", "timeout", "static" */
	uint8_t from, to;	/* enum dhcpc_state, for "state" */
	uint8_t msg_type;	/* for "tx", "rx", "ignored" (0 = n/a) */
	uint32_t server_be, ip_be, xid;
	const char *reason;	/* NULL = none */
	const char *field;	/* for "refused": the message field at fault */
};

struct dhcpc_ops {
	void *ctx;
	void (*send)(void *ctx, const struct dhcpc_tx *tx);
	/* An ARP request for ip_be: a probe (sender address 0) or an
	 * announcement (sender and target ip_be), RFC 5227 2.1 and 2.3. */
	void (*arp)(void *ctx, bool announce, uint32_t ip_be);
	/* Configure l on the interface (bound, renewed or static). */
	void (*apply)(void *ctx, const struct dhcpc_lease *l);
	/* Take l off the interface (expired, NAKed, released, replaced). */
	void (*remove)(void *ctx, const struct dhcpc_lease *l);
	/* Remember l for INIT-REBOOT; NULL: forget the remembered lease. */
	void (*lease)(void *ctx, const struct dhcpc_lease *l);
	void (*event)(void *ctx, const struct dhcpc_event *ev);
};

struct dhcpc;

/* Can a lease be built from m (an OFFER or ACK)?  NULL when it can, else the
 * field at fault ("yiaddr", "server identifier", "subnet mask", "lease
 * time", "router") with why in buf ("yiaddr 192.0.2.255 is the broadcast
 * address of 192.0.2.0/24"). */
const char *dhcpc_check_offer(const struct dhcp_msg *m, char *buf, size_t len);

int dhcpc_new(const struct dhcpc_cfg *cfg, const struct dhcpc_ops *ops, struct dhcpc **out);
void dhcpc_free(struct dhcpc *c);
/* Start: INIT-REBOOT when remembered (its ip_be) is given, else INIT. */
void dhcpc_start(struct dhcpc *c, const struct dhcpc_lease *remembered, uint64_t now_ms);
/* A UDP payload that arrived on port 68; src_mac is its Ethernet source.
 * Returns 0 when the engine used it, -EBADMSG when it does not parse,
 * -ENOENT when it is not for us or not expected now (both are logged as
 * "ignored"). */
int dhcpc_input_pkt(struct dhcpc *c, const uint8_t *payload, size_t len,
		    const uint8_t src_mac[6], uint64_t now_ms);
/* The same for an already parsed message. */
int dhcpc_input(struct dhcpc *c, const struct dhcp_msg *m, const uint8_t src_mac[6],
		uint64_t now_ms);
/* Any ARP packet heard on the interface (not our own). */
void dhcpc_arp_input(struct dhcpc *c, const struct arp_pkt *a, uint64_t now_ms);
/* Run what is due at now_ms. */
void dhcpc_tick(struct dhcpc *c, uint64_t now_ms);
/* When dhcpc_tick next has work (engine clock); UINT64_MAX = never. */
uint64_t dhcpc_next_deadline(const struct dhcpc *c);
/* RELEASE the lease (if a DHCP lease is held), remove the address, forget
 * the lease and stop. */
void dhcpc_release(struct dhcpc *c, uint64_t now_ms);

enum dhcpc_state dhcpc_state(const struct dhcpc *c);
/* The lease in use (BOUND, RENEWING, REBINDING, STATIC), else NULL. */
const struct dhcpc_lease *dhcpc_current(const struct dhcpc *c);
/* True while RFC 5227 announcements are still to be sent. */
bool dhcpc_announcing(const struct dhcpc *c);
const char *dhcpc_state_name(enum dhcpc_state s);
/* One log line: {"time":..., "event":..., ...} without a newline.  Returns
 * the length snprintf would have written. */
int dhcpc_event_json(const struct dhcpc_event *ev, double time_s, const char *ifname,
		     char *buf, size_t len);

/* ---- the driver ---- */

/* Options of `rayos-agent dhcp client IFACE`.  Addresses network order. */
struct dhcp_client_opts {
	const char *ifname;
	const char *lease_file;		/* NULL: no INIT-REBOOT across runs */
	const char *log_file;		/* JSON lines appended; always also stderr */
	uint32_t static_ip_be, static_router_be;	/* 0: no static fallback */
	uint8_t static_prefix;
	uint32_t static_after_ms;	/* 0: 30000 */
	bool apply;			/* configure the interface over rtnetlink */
	bool set_route;			/* and a default route via the router */
	bool exit_when_bound;		/* return 0 once BOUND/STATIC and announced */
	bool release_on_exit;		/* RELEASE on SIGINT/SIGTERM or max_seconds */
	unsigned int max_seconds;	/* 0: run until a signal */
	double time_scale;		/* 0: 1.0 (see struct dhcpc_cfg) */
	uint32_t offer_window_ms, decline_backoff_ms;	/* 0: defaults */
	const char *hostname, *client_id;		/* NULL: none */
	bool quiet;			/* no log lines on stderr */
};

/* Run the client until a signal, max_seconds, or (exit_when_bound) a
 * binding.  0, -ETIMEDOUT (exit_when_bound and not bound in max_seconds),
 * or -errno with a message logged. */
int dhcp_client_run(const struct dhcp_client_opts *o);

/* `dhcp client IFACE [options]`: argv[0] is IFACE.  Parses the options
 * (see dhcp_client_usage) and runs.  Returns a process exit status. */
int dhcp_client_main(int argc, char **argv);
extern const char dhcp_client_usage[];

#endif
