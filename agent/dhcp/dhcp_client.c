// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The DHCP client engine: RFC 2131 4.4 states, retransmission, offer choice,
 * RFC 5227 probe and announcements, static fallback.  Pure: time comes in as
 * an argument and everything the client does goes out through struct
 * dhcpc_ops, so tests drive it with a fake clock.  The driver that runs it
 * on a real interface is in dhcp_client_run.c.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include "agent/dhcp/dhcp_client.h"

/* RFC 2131 4.1 and RFC 5227 1.1 constants, in ms, before time_scale. */
#define RETRANS_FIRST_MS	4000
#define RETRANS_MAX_MS		64000
#define RETRANS_JITTER_MS	1000
#define RENEW_FLOOR_MS		60000	/* RFC 2131 4.4.5 */
#define PROBE_WAIT_MS		1000
#define PROBE_NUM		3
#define PROBE_MIN_MS		1000
#define PROBE_MAX_MS		2000
#define ANNOUNCE_WAIT_MS	2000
#define ANNOUNCE_NUM		2
#define ANNOUNCE_INTERVAL_MS	2000
#define NEVER			UINT64_MAX

struct offer {
	uint32_t ip_be, server_be, lease_s;
};

struct dhcpc {
	struct dhcpc_cfg cfg;
	struct dhcpc_ops ops;
	enum dhcpc_state state;
	uint64_t rng;
	uint32_t xid;
	uint64_t timer_at;		/* the state's next step */
	uint32_t tries;			/* messages sent in this state */
	uint64_t episode_ms;		/* start of the exchange (secs field) */
	uint64_t static_at;		/* static fallback due; NEVER = not armed */
	struct offer offers[DHCPC_MAX_OFFERS];
	size_t nr_offers;
	uint64_t select_at;		/* end of the offer window */
	uint32_t avoid[DHCPC_MAX_AVOID];	/* servers that did not answer a REQUEST */
	size_t nr_avoid;
	struct offer req;		/* what REQUESTING asks for */
	uint32_t reboot_ip_be;
	struct dhcpc_lease cur, pend;	/* in use; ACKed or static being probed */
	bool have_cur;
	uint8_t server_mac[6];		/* L2 source of our server's last reply */
	uint32_t probes_sent;
	uint32_t announce_ip_be, announces_left;
	uint64_t announce_at;
	uint32_t naks;			/* in a row, for the restart delay */
	char why[160];			/* the reason of a "refused" event */
	struct dhcp_msg msg;
	struct dhcpc_tx tx;
};

static const char *const state_names[DHCPC_NR_STATES] = {
	[DHCPC_INIT] = "INIT", [DHCPC_SELECTING] = "SELECTING",
	[DHCPC_REQUESTING] = "REQUESTING", [DHCPC_PROBING] = "PROBING",
	[DHCPC_BOUND] = "BOUND", [DHCPC_RENEWING] = "RENEWING",
	[DHCPC_REBINDING] = "REBINDING", [DHCPC_INIT_REBOOT] = "INIT-REBOOT",
	[DHCPC_REBOOTING] = "REBOOTING", [DHCPC_STATIC_PROBING] = "STATIC-PROBING",
	[DHCPC_STATIC] = "STATIC", [DHCPC_STOPPED] = "STOPPED",
};

const char *dhcpc_state_name(enum dhcpc_state s)
{
	return (unsigned int)s < DHCPC_NR_STATES ? state_names[s] : "?";
}

/* ---- small helpers ---- */

static uint64_t rnd64(struct dhcpc *c)
{
	/* xorshift64*: deterministic for a given seed, which the tests rely on. */
	c->rng ^= c->rng >> 12;
	c->rng ^= c->rng << 25;
	c->rng ^= c->rng >> 27;
	return c->rng * 0x2545F4914F6CDD1DULL;
}

/* Uniform in [lo, hi]. */
static int64_t rnd_range(struct dhcpc *c, int64_t lo, int64_t hi)
{
	return hi <= lo ? lo : lo + (int64_t)(rnd64(c) % (uint64_t)(hi - lo + 1));
}

static uint64_t scaled(const struct dhcpc *c, double ms)
{
	double v = ms * c->cfg.time_scale;

	if (v < 1)
		return 1;	/* a zero timer would spin */
	return v >= 1.8e19 ? NEVER - 1 : (uint64_t)(v + 0.5);
}

static void emit(struct dhcpc *c, const char *what, uint8_t type, uint32_t server_be,
		 uint32_t ip_be, const char *reason)
{
	struct dhcpc_event ev = {
		.what = what, .from = (uint8_t)c->state, .to = (uint8_t)c->state,
		.msg_type = type, .server_be = server_be, .ip_be = ip_be, .xid = c->xid,
		.reason = reason,
	};

	if (c->ops.event)
		c->ops.event(c->ops.ctx, &ev);
}

static void set_state(struct dhcpc *c, enum dhcpc_state s, const char *reason)
{
	struct dhcpc_event ev = {
		.what = "state", .from = (uint8_t)c->state, .to = (uint8_t)s, .xid = c->xid,
		.reason = reason,
	};

	if (c->state == s)
		return;
	if (c->have_cur)
		ev.ip_be = c->cur.ip_be;
	c->state = s;
	if (c->ops.event)
		c->ops.event(c->ops.ctx, &ev);
}

static void new_xid(struct dhcpc *c)
{
	c->xid = (uint32_t)(rnd64(c) >> 32);
}

/* RFC 2131 4.1: 4 s before the first retransmission, doubling up to 64 s,
 * each randomized by +-1 s.  tries is the number already sent (>= 1). */
static uint64_t retrans_delay(struct dhcpc *c)
{
	uint32_t n = c->tries ? c->tries - 1 : 0;
	int64_t ms = n >= 4 ? RETRANS_MAX_MS : (int64_t)RETRANS_FIRST_MS << n;

	ms += rnd_range(c, -RETRANS_JITTER_MS, RETRANS_JITTER_MS);
	return scaled(c, (double)ms);
}

static bool usable_addr(uint32_t ip_be)
{
	uint32_t ip = ntohl(ip_be);

	/* Not 0/8, loopback, multicast/reserved or broadcast. */
	return ip >> 24 != 0 && ip >> 24 != 127 && ip < 0xe0000000U;
}

/* What is wrong with an address a host could be given, or NULL. */
static const char *addr_kind(uint32_t ip_be)
{
	uint32_t ip = ntohl(ip_be);

	if (!ip)
		return "zero";
	if (ip == 0xffffffffU)
		return "the limited broadcast address";
	if (ip >> 24 == 0)
		return "in 0.0.0.0/8 (this network)";
	if (ip >> 24 == 127)
		return "a loopback address";
	if ((ip & 0xffff0000U) == 0xa9fe0000U)
		return "a link-local address (169.254.0.0/16)";
	if (ip >> 28 == 0xe)
		return "a multicast address";
	if (ip >> 28 == 0xf)
		return "a reserved address (240.0.0.0/4)";
	return NULL;
}

/* The class mask RFC 2131 falls back to when the server sends none. */
static uint32_t class_mask(uint32_t ip_be)
{
	uint32_t ip = ntohl(ip_be);

	return htonl(ip < 0x80000000U ? 0xff000000U : ip < 0xc0000000U ? 0xffff0000U
								     : 0xffffff00U);
}

static const char *refuse(char *buf, size_t len, const char *field, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static const char *refuse(char *buf, size_t len, const char *field, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, len, fmt, ap);
	va_end(ap);
	return field;
}

const char *dhcpc_check_offer(const struct dhcp_msg *m, char *buf, size_t len)
{
	char ip[INET_ADDRSTRLEN], other[INET_ADDRSTRLEN], net[INET_ADDRSTRLEN];
	uint32_t yi = m->hdr.yiaddr_be, mask_be = 0, host, rt;
	const uint8_t *v;
	const char *kind;
	size_t vlen;
	int prefix;

	inet_ntop(AF_INET, &yi, ip, sizeof(ip));
	kind = addr_kind(yi);
	if (kind)
		return refuse(buf, len, "yiaddr", "yiaddr %s is %s", ip, kind);
	if (m->has_server_id) {
		inet_ntop(AF_INET, &m->server_id_be, other, sizeof(other));
		if (m->server_id_be == yi)
			return refuse(buf, len, "yiaddr", "yiaddr %s is the server's own address "
				      "(server identifier)", ip);
		kind = addr_kind(m->server_id_be);
		if (kind)
			return refuse(buf, len, "server identifier", "server identifier %s is %s",
				      other, kind);
	}
	if (m->hdr.siaddr_be && m->hdr.siaddr_be == yi)
		return refuse(buf, len, "yiaddr", "yiaddr %s is the server's own address "
			      "(siaddr)", ip);
	v = dhcp_opt_get(m, DHO_SUBNET_MASK, &vlen);
	if (v) {
		uint32_t inv;

		if (vlen != 4)
			return refuse(buf, len, "subnet mask", "subnet mask option is %zu bytes, "
				      "not 4", vlen);
		memcpy(&mask_be, v, 4);
		inet_ntop(AF_INET, &mask_be, other, sizeof(other));
		if (!mask_be)
			return refuse(buf, len, "subnet mask", "subnet mask %s is no subnet", other);
		inv = ~ntohl(mask_be);
		if (inv & (inv + 1))
			return refuse(buf, len, "subnet mask", "subnet mask %s is not contiguous",
				      other);
	} else {
		mask_be = class_mask(yi);
	}
	prefix = __builtin_popcount(ntohl(mask_be));
	host = ntohl(yi) & ~ntohl(mask_be);
	if (prefix <= 30) {	/* /31 and /32 have no network or broadcast address */
		uint32_t net_be = yi & mask_be;

		inet_ntop(AF_INET, &net_be, net, sizeof(net));
		if (!host)
			return refuse(buf, len, "yiaddr", "yiaddr %s is the network address of "
				      "%s/%d", ip, net, prefix);
		if (host == ~ntohl(mask_be))
			return refuse(buf, len, "yiaddr", "yiaddr %s is the broadcast address of "
				      "%s/%d", ip, net, prefix);
	}
	if (m->has_lease_time && m->lease_time == 0)
		return refuse(buf, len, "lease time", "lease time 0 s: the address would be gone "
			      "as soon as it is bound");
	v = dhcp_opt_get(m, DHO_ROUTER, &vlen);
	if (v && vlen >= 4) {
		memcpy(&rt, v, 4);
		inet_ntop(AF_INET, &rt, other, sizeof(other));
		kind = addr_kind(rt);
		if (kind)
			return refuse(buf, len, "router", "router %s is %s", other, kind);
		if (rt == yi)
			return refuse(buf, len, "router", "router %s is the offered address itself",
				      other);
		host = ntohl(rt) & ~ntohl(mask_be);
		if (prefix <= 30 && (rt & mask_be) == (yi & mask_be) &&
		    (!host || host == ~ntohl(mask_be)))
			return refuse(buf, len, "router", "router %s is the network or broadcast "
				      "address of the offered subnet", other);
	}
	return NULL;
}

static bool static_configured(const struct dhcpc *c)
{
	return c->cfg.static_ip_be != 0;
}

/* ---- messages (RFC 2131 table 5) ---- */

static void msg_start(struct dhcpc *c, struct dhcp_builder *b, uint8_t type,
		      uint32_t ciaddr_be, uint64_t now)
{
	struct dhcp_hdr h;
	uint64_t secs = now > c->episode_ms ? (now - c->episode_ms) / 1000 : 0;

	memset(&h, 0, sizeof(h));
	h.op = BOOTREQUEST;
	h.htype = 1;
	h.hlen = 6;
	h.xid_be = htonl(c->xid);
	if (type == DHCPDISCOVER || type == DHCPREQUEST)
		h.secs_be = htons(secs > 0xffff ? 0xffff : (uint16_t)secs);
	h.ciaddr_be = ciaddr_be;
	memcpy(h.chaddr, c->cfg.mac, 6);
	dhcp_build_init(b, c->tx.pkt, sizeof(c->tx.pkt), &h);
	dhcp_build_opt_u8(b, DHO_MSG_TYPE, type);
	if (c->cfg.client_id_len)
		dhcp_build_opt(b, DHO_CLIENT_ID, c->cfg.client_id, c->cfg.client_id_len);
}

static void msg_send(struct dhcpc *c, struct dhcp_builder *b, uint8_t type, bool broadcast,
		     uint32_t src_be, uint32_t dst_be, uint32_t server_be, uint32_t ip_be)
{
	static const uint8_t params[] = {
		DHO_SUBNET_MASK, DHO_ROUTER, DHO_DNS, DHO_DOMAIN, DHO_MTU, DHO_BROADCAST,
		DHO_LEASE_TIME, DHO_SERVER_ID, DHO_T1, DHO_T2,
	};
	int len;

	if (type == DHCPDISCOVER || type == DHCPREQUEST) {
		dhcp_build_opt_u16(b, DHO_MAX_MSG_SIZE, DHCPC_PKT_MAX);
		dhcp_build_opt(b, DHO_PARAM_LIST, params, sizeof(params));
		if (c->cfg.hostname[0])
			dhcp_build_opt(b, DHO_HOSTNAME, c->cfg.hostname, strlen(c->cfg.hostname));
	}
	len = dhcp_build_finish(b);
	if (len < 0) {
		emit(c, "error", type, server_be, ip_be, "message does not fit");
		return;
	}
	c->tx.type = type;
	c->tx.broadcast = broadcast;
	c->tx.src_be = src_be;
	c->tx.dst_be = broadcast ? INADDR_BROADCAST : dst_be;
	if (broadcast)
		memset(c->tx.dst_mac, 0xff, 6);
	else
		memcpy(c->tx.dst_mac, c->server_mac, 6);
	c->tx.len = (size_t)len;
	if (c->ops.send)
		c->ops.send(c->ops.ctx, &c->tx);
	emit(c, "tx", type, server_be, ip_be, NULL);
}

static void send_discover(struct dhcpc *c, uint64_t now)
{
	struct dhcp_builder b;

	msg_start(c, &b, DHCPDISCOVER, 0, now);
	msg_send(c, &b, DHCPDISCOVER, true, 0, 0, 0, 0);
	c->tries++;
	c->timer_at = now + retrans_delay(c);
}

/* REQUEST as the current state wants it. */
static void send_request(struct dhcpc *c, uint64_t now)
{
	struct dhcp_builder b;

	switch (c->state) {
	case DHCPC_REQUESTING:
		msg_start(c, &b, DHCPREQUEST, 0, now);
		dhcp_build_opt(&b, DHO_REQUESTED_IP, &c->req.ip_be, 4);
		dhcp_build_opt(&b, DHO_SERVER_ID, &c->req.server_be, 4);
		msg_send(c, &b, DHCPREQUEST, true, 0, 0, c->req.server_be, c->req.ip_be);
		break;
	case DHCPC_REBOOTING:
		msg_start(c, &b, DHCPREQUEST, 0, now);
		dhcp_build_opt(&b, DHO_REQUESTED_IP, &c->reboot_ip_be, 4);
		msg_send(c, &b, DHCPREQUEST, true, 0, 0, 0, c->reboot_ip_be);
		break;
	case DHCPC_RENEWING:
		msg_start(c, &b, DHCPREQUEST, c->cur.ip_be, now);
		msg_send(c, &b, DHCPREQUEST, false, c->cur.ip_be, c->cur.server_be,
			 c->cur.server_be, c->cur.ip_be);
		break;
	case DHCPC_REBINDING:
		msg_start(c, &b, DHCPREQUEST, c->cur.ip_be, now);
		msg_send(c, &b, DHCPREQUEST, true, c->cur.ip_be, 0, 0, c->cur.ip_be);
		break;
	default:
		return;
	}
	c->tries++;
}

static void send_decline(struct dhcpc *c, const struct dhcpc_lease *l, uint64_t now)
{
	struct dhcp_builder b;

	new_xid(c);
	msg_start(c, &b, DHCPDECLINE, 0, now);
	dhcp_build_opt(&b, DHO_REQUESTED_IP, &l->ip_be, 4);
	dhcp_build_opt(&b, DHO_SERVER_ID, &l->server_be, 4);
	dhcp_build_opt(&b, DHO_MESSAGE, "address in use (ARP)", 20);
	msg_send(c, &b, DHCPDECLINE, true, 0, 0, l->server_be, l->ip_be);
}

static void send_release(struct dhcpc *c, uint64_t now)
{
	struct dhcp_builder b;

	new_xid(c);
	msg_start(c, &b, DHCPRELEASE, c->cur.ip_be, now);
	dhcp_build_opt(&b, DHO_SERVER_ID, &c->cur.server_be, 4);
	msg_send(c, &b, DHCPRELEASE, false, c->cur.ip_be, c->cur.server_be,
		 c->cur.server_be, c->cur.ip_be);
}

/* ---- transitions ---- */

static void begin_discover(struct dhcpc *c, uint64_t now)
{
	bool on_static = c->have_cur && c->cur.is_static;

	new_xid(c);
	c->episode_ms = now;
	c->tries = 0;
	c->nr_offers = 0;
	if (static_configured(c) && !on_static && c->static_at == NEVER)
		c->static_at = now + c->cfg.static_after_ms;
	set_state(c, on_static ? DHCPC_STATIC : DHCPC_SELECTING, NULL);
	send_discover(c, now);
}

/* Back to INIT; discovery starts after delay_ms (0: now). */
static void restart(struct dhcpc *c, uint64_t now, uint64_t delay_ms, const char *reason)
{
	c->nr_offers = 0;
	set_state(c, DHCPC_INIT, reason);
	if (!delay_ms) {
		begin_discover(c, now);
		return;
	}
	c->timer_at = now + delay_ms;
}

static void drop_current(struct dhcpc *c)
{
	if (!c->have_cur)
		return;
	if (c->ops.remove)
		c->ops.remove(c->ops.ctx, &c->cur);
	emit(c, "remove", 0, c->cur.server_be, c->cur.ip_be, NULL);
	if (!c->cur.is_static && c->ops.lease)
		c->ops.lease(c->ops.ctx, NULL);
	if (c->announce_ip_be == c->cur.ip_be)
		c->announces_left = 0;
	c->have_cur = false;
	memset(&c->cur, 0, sizeof(c->cur));
}

static bool avoided(const struct dhcpc *c, uint32_t server_be)
{
	size_t i;

	for (i = 0; i < c->nr_avoid; i++)
		if (c->avoid[i] == server_be)
			return true;
	return false;
}

static void avoid_server(struct dhcpc *c, uint32_t server_be)
{
	if (avoided(c, server_be))
		return;
	if (c->nr_avoid == DHCPC_MAX_AVOID)
		memmove(c->avoid, c->avoid + 1, sizeof(c->avoid[0]) * (DHCPC_MAX_AVOID - 1));
	else
		c->nr_avoid++;
	c->avoid[c->nr_avoid - 1] = server_be;
}

static bool only_failed_offers(const struct dhcpc *c)
{
	for (size_t i = 0; i < c->nr_offers; i++)
		if (!avoided(c, c->offers[i].server_be))
			return false;
	return true;
}

/* The documented rule: skip servers that failed us if anyone else offered,
 * then the longest lease, ties to the earliest offer. */
static void choose_and_request(struct dhcpc *c, uint64_t now)
{
	const struct offer *best = NULL;
	bool any_fresh = false;
	size_t i;

	for (i = 0; i < c->nr_offers; i++)
		any_fresh |= !avoided(c, c->offers[i].server_be);
	for (i = 0; i < c->nr_offers; i++) {
		const struct offer *o = &c->offers[i];

		if (any_fresh && avoided(c, o->server_be))
			continue;
		if (!best || o->lease_s > best->lease_s)
			best = o;
	}
	c->req = *best;
	c->nr_offers = 0;
	c->tries = 0;
	emit(c, "offer-chosen", 0, c->req.server_be, c->req.ip_be,
	     any_fresh ? "longest lease" : "only servers that failed before");
	set_state(c, DHCPC_REQUESTING, NULL);
	send_request(c, now);
	c->timer_at = now + retrans_delay(c);
}

static void begin_probe(struct dhcpc *c, const struct dhcpc_lease *l, uint64_t now)
{
	c->pend = *l;
	c->probes_sent = 0;
	set_state(c, l->is_static ? DHCPC_STATIC_PROBING : DHCPC_PROBING, NULL);
	c->timer_at = now + (uint64_t)rnd_range(c, 0, (int64_t)scaled(c, PROBE_WAIT_MS));
}

static void set_lease_timers(struct dhcpc *c, struct dhcpc_lease *l, uint64_t now)
{
	l->acquired_ms = now;
	l->expiry_ms = l->lease_s == DHCPC_INFINITE || l->is_static ? 0 :
		       now + scaled(c, (double)l->lease_s * 1000);
}

static uint64_t t1_at(const struct dhcpc *c)
{
	if (!c->cur.expiry_ms)
		return NEVER;
	return c->cur.acquired_ms + scaled(c, (double)c->cur.t1_s * 1000);
}

static uint64_t t2_at(const struct dhcpc *c)
{
	if (!c->cur.expiry_ms)
		return NEVER;
	return c->cur.acquired_ms + scaled(c, (double)c->cur.t2_s * 1000);
}

/* RFC 2131 4.4.5: retransmit after half the time left until limit, but no
 * sooner than 60 s, and never past limit. */
static uint64_t half_way(const struct dhcpc *c, uint64_t now, uint64_t limit)
{
	uint64_t left = limit > now ? limit - now : 0, wait = left / 2;

	if (wait < scaled(c, RENEW_FLOOR_MS))
		wait = scaled(c, RENEW_FLOOR_MS);
	return now + wait < limit ? now + wait : limit;
}

static void bind_pending(struct dhcpc *c, uint64_t now)
{
	if (c->have_cur && (c->cur.ip_be != c->pend.ip_be || c->cur.is_static != c->pend.is_static))
		drop_current(c);
	c->cur = c->pend;
	c->have_cur = true;
	set_lease_timers(c, &c->cur, now);
	if (c->ops.apply)
		c->ops.apply(c->ops.ctx, &c->cur);
	emit(c, "apply", 0, c->cur.server_be, c->cur.ip_be, c->cur.is_static ? "static" : NULL);
	if (!c->cur.is_static && c->ops.lease)
		c->ops.lease(c->ops.ctx, &c->cur);
	/* RFC 5227 2.3: the first announcement now, the second after
	 * ANNOUNCE_INTERVAL. */
	if (!c->cfg.no_probe) {
		c->announce_ip_be = c->cur.ip_be;
		if (c->ops.arp)
			c->ops.arp(c->ops.ctx, true, c->cur.ip_be);
		emit(c, "announce", 0, 0, c->cur.ip_be, NULL);
		c->announces_left = ANNOUNCE_NUM - 1;
		c->announce_at = now + scaled(c, ANNOUNCE_INTERVAL_MS);
	}
	c->static_at = NEVER;
	if (c->cur.is_static) {
		/* Keep discovering (backoff where it was): a server that comes
		 * up later replaces the static address. */
		set_state(c, DHCPC_STATIC, NULL);
		c->timer_at = now + retrans_delay(c);
		return;
	}
	c->naks = 0;
	c->nr_avoid = 0;
	set_state(c, DHCPC_BOUND, NULL);
	c->timer_at = t1_at(c);
}

static void probe_step(struct dhcpc *c, uint64_t now)
{
	if (c->probes_sent < PROBE_NUM) {
		if (c->ops.arp)
			c->ops.arp(c->ops.ctx, false, c->pend.ip_be);
		emit(c, "probe", 0, 0, c->pend.ip_be, NULL);
		c->probes_sent++;
		c->timer_at = now + (c->probes_sent < PROBE_NUM ?
			(uint64_t)rnd_range(c, (int64_t)scaled(c, PROBE_MIN_MS),
					    (int64_t)scaled(c, PROBE_MAX_MS)) :
			scaled(c, ANNOUNCE_WAIT_MS));
		return;
	}
	bind_pending(c, now);
}

static void begin_static(struct dhcpc *c, uint64_t now)
{
	struct dhcpc_lease l;
	uint8_t p = c->cfg.static_prefix ? c->cfg.static_prefix : 24;

	memset(&l, 0, sizeof(l));
	l.ip_be = c->cfg.static_ip_be;
	l.router_be = c->cfg.static_router_be;
	l.prefix = p > 32 ? 32 : p;
	l.mask_be = htonl(l.prefix ? 0xffffffffU << (32 - l.prefix) : 0);
	l.is_static = true;
	l.lease_s = DHCPC_INFINITE;
	emit(c, "static", 0, 0, l.ip_be, "no server answered");
	if (c->cfg.no_probe) {
		c->pend = l;
		bind_pending(c, now);
		return;
	}
	begin_probe(c, &l, now);
}

/* A lease from an ACK.  Missing options get RFC defaults: mask by address
 * class, T1 0.5 and T2 0.875 of the lease; an absent lease time is an hour. */
static void lease_from_ack(struct dhcpc *c, const struct dhcp_msg *m, uint32_t server_be,
			   struct dhcpc_lease *l)
{
	const uint8_t *v;
	size_t len;
	uint32_t t;

	memset(l, 0, sizeof(*l));
	l->ip_be = m->hdr.yiaddr_be;
	l->server_be = m->has_server_id ? m->server_id_be : server_be;
	/* dhcpc_check_offer() refused a mask that is zero or not contiguous;
	 * without one RFC 2131 has the class mask. */
	v = dhcp_opt_get(m, DHO_SUBNET_MASK, &len);
	if (v && len == 4)
		memcpy(&l->mask_be, v, 4);
	else
		l->mask_be = class_mask(l->ip_be);
	l->prefix = (uint8_t)__builtin_popcount(ntohl(l->mask_be));
	v = dhcp_opt_get(m, DHO_ROUTER, &len);
	if (v && len >= 4 && len % 4 == 0)
		memcpy(&l->router_be, v, 4);
	v = dhcp_opt_get(m, DHO_DNS, &len);
	if (v && len >= 4 && len % 4 == 0)
		memcpy(&l->dns_be, v, 4);
	l->lease_s = m->has_lease_time ? m->lease_time : 3600;
	if (l->lease_s < 2)
		l->lease_s = 2;		/* 1 s: T1 would be 0 (0 itself was refused) */
	if (l->lease_s == DHCPC_INFINITE) {
		l->t1_s = l->t2_s = DHCPC_INFINITE;
		return;
	}
	l->t1_s = (uint32_t)((uint64_t)l->lease_s / 2);
	l->t2_s = (uint32_t)((uint64_t)l->lease_s * 7 / 8);
	v = dhcp_opt_get(m, DHO_T2, &len);
	if (v && len == 4) {
		memcpy(&t, v, 4);
		t = ntohl(t);
		if (t > 0 && t < l->lease_s)
			l->t2_s = t;
	}
	v = dhcp_opt_get(m, DHO_T1, &len);
	if (v && len == 4) {
		memcpy(&t, v, 4);
		t = ntohl(t);
		if (t > 0 && t <= l->t2_s)
			l->t1_s = t;
	}
	if (l->t1_s > l->t2_s)
		l->t1_s = l->t2_s;
	(void)c;
}

/* ---- the API ---- */

int dhcpc_new(const struct dhcpc_cfg *cfg, const struct dhcpc_ops *ops, struct dhcpc **out)
{
	struct dhcpc *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	c->cfg = *cfg;
	if (ops)
		c->ops = *ops;
	if (!(c->cfg.time_scale > 0))
		c->cfg.time_scale = 1.0;
	if (!c->cfg.offer_window_ms)
		c->cfg.offer_window_ms = 1000;
	if (!c->cfg.decline_backoff_ms)
		c->cfg.decline_backoff_ms = 10000;
	if (!c->cfg.request_tries)
		c->cfg.request_tries = 4;
	if (!c->cfg.reboot_tries)
		c->cfg.reboot_tries = 3;
	if (!c->cfg.static_after_ms)
		c->cfg.static_after_ms = 30000;
	if (c->cfg.client_id_len > sizeof(c->cfg.client_id))
		c->cfg.client_id_len = sizeof(c->cfg.client_id);
	c->cfg.hostname[sizeof(c->cfg.hostname) - 1] = 0;
	c->rng = cfg->seed ? cfg->seed : 0x9e3779b97f4a7c15ULL;
	c->state = DHCPC_STOPPED;
	c->timer_at = c->static_at = NEVER;
	*out = c;
	return 0;
}

void dhcpc_free(struct dhcpc *c)
{
	free(c);
}

void dhcpc_start(struct dhcpc *c, const struct dhcpc_lease *remembered, uint64_t now)
{
	c->static_at = NEVER;
	if (remembered && usable_addr(remembered->ip_be)) {
		c->reboot_ip_be = remembered->ip_be;
		set_state(c, DHCPC_INIT_REBOOT, "remembered lease");
		new_xid(c);
		c->episode_ms = now;
		c->tries = 0;
		set_state(c, DHCPC_REBOOTING, NULL);
		send_request(c, now);
		c->timer_at = now + retrans_delay(c);
		return;
	}
	restart(c, now, 0, NULL);
}

static int ignore(struct dhcpc *c, const struct dhcp_msg *m, const char *why)
{
	emit(c, "ignored", m ? m->type : 0, m && m->has_server_id ? m->server_id_be : 0,
	     m ? m->hdr.yiaddr_be : 0, why);
	return -ENOENT;
}

/* An OFFER or ACK no server should send: say which field, use nothing. */
static int refused(struct dhcpc *c, const struct dhcp_msg *m, const char *field)
{
	struct dhcpc_event ev = {
		.what = "refused", .from = (uint8_t)c->state, .to = (uint8_t)c->state,
		.msg_type = m->type, .server_be = m->has_server_id ? m->server_id_be : 0,
		.ip_be = m->hdr.yiaddr_be, .xid = c->xid, .reason = c->why, .field = field,
	};

	if (c->ops.event)
		c->ops.event(c->ops.ctx, &ev);
	return -ENOENT;
}

static void on_offer(struct dhcpc *c, const struct dhcp_msg *m, uint64_t now)
{
	struct offer o = {
		.ip_be = m->hdr.yiaddr_be, .server_be = m->server_id_be,
		.lease_s = m->has_lease_time ? m->lease_time : 3600,
	};
	size_t i;

	for (i = 0; i < c->nr_offers; i++)
		if (c->offers[i].server_be == o.server_be)
			break;
	if (i == c->nr_offers) {
		if (c->nr_offers == DHCPC_MAX_OFFERS)
			return;
		c->nr_offers++;
	}
	c->offers[i] = o;
	if (c->nr_offers == 1 && i == 0)
		c->select_at = now + c->cfg.offer_window_ms;
}

/* ACK or NAK from the right server for the state? */
static bool from_our_server(const struct dhcpc *c, const struct dhcp_msg *m)
{
	switch (c->state) {
	case DHCPC_REQUESTING:
		return !m->has_server_id || m->server_id_be == c->req.server_be;
	case DHCPC_RENEWING:
		return !m->has_server_id || m->server_id_be == c->cur.server_be;
	default:	/* REBOOTING, REBINDING: any server may answer */
		return true;
	}
}

int dhcpc_input(struct dhcpc *c, const struct dhcp_msg *m, const uint8_t src_mac[6],
		uint64_t now)
{
	struct dhcpc_lease l;
	enum dhcpc_state s = c->state;
	const char *field;

	if (m->hdr.op != BOOTREPLY)
		return ignore(c, m, "not a BOOTREPLY");
	if (m->hdr.htype != 1 || m->hdr.hlen != 6 || memcmp(m->hdr.chaddr, c->cfg.mac, 6))
		return ignore(c, m, "not our chaddr");
	if (ntohl(m->hdr.xid_be) != c->xid)
		return ignore(c, m, "wrong xid");
	switch (m->type) {
	case DHCPOFFER:
		if (s != DHCPC_SELECTING && s != DHCPC_STATIC)
			return ignore(c, m, "OFFER not expected now");
		if (!m->has_server_id)
			return ignore(c, m, "OFFER without server identifier");
		field = dhcpc_check_offer(m, c->why, sizeof(c->why));
		if (field)
			return refused(c, m, field);	/* not a candidate: keep looking */
		emit(c, "rx", m->type, m->server_id_be, m->hdr.yiaddr_be, NULL);
		on_offer(c, m, now);
		return 0;
	case DHCPACK:
	case DHCPNAK:
		if (s != DHCPC_REQUESTING && s != DHCPC_REBOOTING && s != DHCPC_RENEWING &&
		    s != DHCPC_REBINDING)
			return ignore(c, m, "ACK/NAK not expected now");
		if (!from_our_server(c, m))
			return ignore(c, m, "ACK/NAK from another server");
		break;
	default:
		return ignore(c, m, "not an OFFER, ACK or NAK");
	}

	if (m->type == DHCPNAK) {
		emit(c, "rx", m->type, m->has_server_id ? m->server_id_be : 0, 0, NULL);
		drop_current(c);
		if (s == DHCPC_REBOOTING && c->ops.lease)
			c->ops.lease(c->ops.ctx, NULL);
		c->naks++;
		/* Restart at once after a first NAK; a server that keeps
		 * NAKing gets 1, 2, 4 .. 64 s of quiet. */
		restart(c, now, c->naks <= 1 ? 0 :
			scaled(c, (double)(c->naks - 2 >= 6 ? RETRANS_MAX_MS :
					   1000 << (c->naks - 2))), "NAK");
		return 0;
	}

	field = dhcpc_check_offer(m, c->why, sizeof(c->why));
	if (field) {
		refused(c, m, field);
		if (s == DHCPC_REQUESTING) {
			/* That server failed us: another one, if any offers. */
			avoid_server(c, c->req.server_be);
			restart(c, now, 0, "refused ACK");
		} else if (s == DHCPC_REBOOTING) {
			if (c->ops.lease)
				c->ops.lease(c->ops.ctx, NULL);
			restart(c, now, 0, "refused ACK");
		}
		/* RENEWING/REBINDING: the current lease stands until it ends. */
		return -ENOENT;
	}
	if ((s == DHCPC_RENEWING || s == DHCPC_REBINDING) && m->hdr.yiaddr_be != c->cur.ip_be)
		return ignore(c, m, "ACK for another address while renewing");
	emit(c, "rx", m->type, m->has_server_id ? m->server_id_be : 0, m->hdr.yiaddr_be, NULL);
	lease_from_ack(c, m, s == DHCPC_REQUESTING ? c->req.server_be : c->cur.server_be, &l);
	if (src_mac)
		memcpy(c->server_mac, src_mac, 6);
	if (s == DHCPC_RENEWING || s == DHCPC_REBINDING) {
		/* Extended: same address, new times, no probe. */
		c->pend = l;
		bind_pending(c, now);
		return 0;
	}
	if (c->cfg.no_probe) {
		c->pend = l;
		bind_pending(c, now);
		return 0;
	}
	begin_probe(c, &l, now);
	return 0;
}

int dhcpc_input_pkt(struct dhcpc *c, const uint8_t *payload, size_t len,
		    const uint8_t src_mac[6], uint64_t now)
{
	int err = dhcp_parse(&c->msg, payload, len);

	if (err) {
		emit(c, "ignored", 0, 0, 0, c->msg.err ? c->msg.err : "does not parse");
		return -EBADMSG;
	}
	return dhcpc_input(c, &c->msg, src_mac, now);
}

void dhcpc_arp_input(struct dhcpc *c, const struct arp_pkt *a, uint64_t now)
{
	uint32_t ip = c->pend.ip_be;
	bool conflict;

	if (c->state != DHCPC_PROBING && c->state != DHCPC_STATIC_PROBING)
		return;
	if (!memcmp(a->sha, c->cfg.mac, 6))
		return;		/* our own */
	/* RFC 5227 2.1.1: anyone using the address, or another host probing
	 * for it at the same time. */
	conflict = a->spa_be == ip || (a->op == 1 && a->spa_be == 0 && a->tpa_be == ip);
	if (!conflict)
		return;
	emit(c, "conflict", 0, c->pend.server_be, ip, "ARP: address in use");
	if (c->state == DHCPC_STATIC_PROBING) {
		/* Try the static address again after another static_after_ms. */
		c->static_at = NEVER;
		restart(c, now, 0, "static address in use");
		return;
	}
	send_decline(c, &c->pend, now);
	if (c->ops.lease)
		c->ops.lease(c->ops.ctx, NULL);
	/* RFC 2131 3.1.5: wait at least 10 s before restarting. */
	restart(c, now, c->cfg.decline_backoff_ms, "DECLINE");
}

void dhcpc_tick(struct dhcpc *c, uint64_t now)
{
	if (c->announces_left && now >= c->announce_at) {
		if (c->ops.arp)
			c->ops.arp(c->ops.ctx, true, c->announce_ip_be);
		emit(c, "announce", 0, 0, c->announce_ip_be, NULL);
		c->announces_left--;
		c->announce_at = now + scaled(c, ANNOUNCE_INTERVAL_MS);
	}

	switch (c->state) {
	case DHCPC_INIT:
		if (now >= c->timer_at)
			begin_discover(c, now);
		break;
	case DHCPC_SELECTING:
	case DHCPC_STATIC:
		if (c->nr_offers && now >= c->select_at && c->state == DHCPC_SELECTING &&
		    now >= c->static_at && only_failed_offers(c)) {
			/* Only servers that failed us (no answer, or an ACK
			 * we refused) keep offering: the static address. */
			c->nr_offers = 0;
			begin_static(c, now);
		} else if (c->nr_offers && now >= c->select_at) {
			choose_and_request(c, now);
		} else if (c->state == DHCPC_SELECTING && !c->nr_offers && now >= c->static_at) {
			begin_static(c, now);
		} else if (now >= c->timer_at) {
			send_discover(c, now);
		}
		break;
	case DHCPC_REQUESTING:
	case DHCPC_REBOOTING:
		if (now < c->timer_at)
			break;
		if (c->tries >= (c->state == DHCPC_REQUESTING ? c->cfg.request_tries :
							       c->cfg.reboot_tries)) {
			emit(c, "timeout", DHCPREQUEST, c->state == DHCPC_REQUESTING ?
			     c->req.server_be : 0, 0, "no ACK or NAK");
			if (c->state == DHCPC_REQUESTING)
				avoid_server(c, c->req.server_be);
			restart(c, now, 0, "no answer to REQUEST");
			break;
		}
		send_request(c, now);
		c->timer_at = now + retrans_delay(c);
		break;
	case DHCPC_PROBING:
	case DHCPC_STATIC_PROBING:
		if (now >= c->timer_at)
			probe_step(c, now);
		break;
	case DHCPC_BOUND:
		if (now < c->timer_at)
			break;
		new_xid(c);
		c->tries = 0;
		c->episode_ms = now;
		set_state(c, DHCPC_RENEWING, "T1");
		send_request(c, now);
		c->timer_at = half_way(c, now, t2_at(c));
		break;
	case DHCPC_RENEWING:
		if (now < c->timer_at)
			break;
		if (now >= t2_at(c)) {
			new_xid(c);
			set_state(c, DHCPC_REBINDING, "T2");
		}
		send_request(c, now);
		c->timer_at = half_way(c, now, c->state == DHCPC_RENEWING ? t2_at(c) :
					       c->cur.expiry_ms);
		break;
	case DHCPC_REBINDING:
		if (now < c->timer_at)
			break;
		if (now >= c->cur.expiry_ms) {
			emit(c, "timeout", 0, c->cur.server_be, c->cur.ip_be, "lease expired");
			drop_current(c);
			restart(c, now, 0, "lease expired");
			break;
		}
		send_request(c, now);
		c->timer_at = half_way(c, now, c->cur.expiry_ms);
		break;
	default:
		break;
	}
}

uint64_t dhcpc_next_deadline(const struct dhcpc *c)
{
	uint64_t t = c->state == DHCPC_STOPPED ? NEVER : c->timer_at;

	if ((c->state == DHCPC_SELECTING || c->state == DHCPC_STATIC) && c->nr_offers &&
	    c->select_at < t)
		t = c->select_at;
	if (c->state == DHCPC_SELECTING && !c->nr_offers && c->static_at < t)
		t = c->static_at;
	if (c->announces_left && c->announce_at < t)
		t = c->announce_at;
	return t;
}

void dhcpc_release(struct dhcpc *c, uint64_t now)
{
	if (c->have_cur && !c->cur.is_static &&
	    (c->state == DHCPC_BOUND || c->state == DHCPC_RENEWING || c->state == DHCPC_REBINDING))
		send_release(c, now);
	drop_current(c);
	c->announces_left = 0;
	c->timer_at = NEVER;
	set_state(c, DHCPC_STOPPED, "release");
}

enum dhcpc_state dhcpc_state(const struct dhcpc *c)
{
	return c->state;
}

const struct dhcpc_lease *dhcpc_current(const struct dhcpc *c)
{
	return c->have_cur ? &c->cur : NULL;
}

bool dhcpc_announcing(const struct dhcpc *c)
{
	return c->announces_left > 0;
}

int dhcpc_event_json(const struct dhcpc_event *ev, double time_s, const char *ifname,
		     char *buf, size_t len)
{
	char server[INET_ADDRSTRLEN], ip[INET_ADDRSTRLEN];
	int n;

	inet_ntop(AF_INET, &ev->server_be, server, sizeof(server));
	inet_ntop(AF_INET, &ev->ip_be, ip, sizeof(ip));
	/* Every string here is ours (names, fixed reasons, parser messages
	 * without quotes), so no escaping is needed. */
	n = snprintf(buf, len, "{\"time\":%.3f,\"iface\":\"%s\",\"event\":\"%s\"", time_s,
		     ifname ? ifname : "", ev->what);
#define APPEND(...) do {						\
		if (n >= 0 && (size_t)n < len)				\
			n += snprintf(buf + n, len - (size_t)n, __VA_ARGS__); \
	} while (0)
	if (!strcmp(ev->what, "state"))
		APPEND(",\"from\":\"%s\",\"to\":\"%s\"", dhcpc_state_name(ev->from),
		       dhcpc_state_name(ev->to));
	else
		APPEND(",\"state\":\"%s\"", dhcpc_state_name(ev->to));
	if (ev->msg_type)
		APPEND(",\"type\":\"%s\"", dhcp_msg_type_name(ev->msg_type));
	if (ev->server_be)
		APPEND(",\"server\":\"%s\"", server);
	if (ev->ip_be)
		APPEND(",\"ip\":\"%s\"", ip);
	APPEND(",\"xid\":\"0x%08x\"", ev->xid);
	if (ev->field)
		APPEND(",\"field\":\"%s\"", ev->field);
	if (ev->reason)
		APPEND(",\"reason\":\"%s\"", ev->reason);
	APPEND("}");
#undef APPEND
	return n;
}
