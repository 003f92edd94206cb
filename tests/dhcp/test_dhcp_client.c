// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Two things in one binary, like test_dhcpd: without arguments, TAP tests of
 * the DHCP client engine driven with a fake clock and hand-made server
 * replies (DORA, backoff, NAK, renew/rebind/expiry, INIT-REBOOT, ARP
 * conflict and DECLINE, offer choice, server fallback, static fallback,
 * foreign and malformed packets); with --run, the real client on an
 * interface for the live test:
 *
 *   test_dhcp_client --run IFACE [rayos-agent dhcp client options]
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include "agent/core/log.h"
#include "agent/dhcp/dhcp_client.h"
#include "tests/lib/tap.h"

#define NET	0xc6120000U	/* 198.18.0.0/24 */
#define IP(x)	(NET | (x))
#define S1	IP(1)
#define S2	IP(2)

static const uint8_t MAC[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };
static const uint8_t OTHER_MAC[6] = { 0x52, 0x54, 0x00, 0x99, 0x99, 0x99 };
static const uint8_t SRV_MAC[6] = { 0x02, 0x00, 0x00, 0x00, 0x00, 0x01 };

/* ---- what the engine did ---- */

struct rec {
	int tx[DHCPINFORM + 1];
	int probes, announces, applies, removes, saves, forgets;
	struct dhcpc_tx last_tx;
	struct dhcp_msg last;		/* last_tx parsed */
	uint64_t tx_at[64];		/* times of DISCOVERs */
	int nr_discover_at;
	struct dhcpc_lease applied, removed, saved;
	char events[64][512];
	int nr_events;
	uint64_t now;
};

static struct rec r;

static void rec_send(void *ctx, const struct dhcpc_tx *tx)
{
	(void)ctx;
	r.tx[tx->type]++;
	r.last_tx = *tx;
	dhcp_parse(&r.last, tx->pkt, tx->len);
	if (tx->type == DHCPDISCOVER && r.nr_discover_at < 64)
		r.tx_at[r.nr_discover_at++] = r.now;
}

static void rec_arp(void *ctx, bool announce, uint32_t ip_be)
{
	(void)ctx;
	(void)ip_be;
	if (announce)
		r.announces++;
	else
		r.probes++;
}

static void rec_apply(void *ctx, const struct dhcpc_lease *l)
{
	(void)ctx;
	r.applies++;
	r.applied = *l;
}

static void rec_remove(void *ctx, const struct dhcpc_lease *l)
{
	(void)ctx;
	r.removes++;
	r.removed = *l;
}

static void rec_lease(void *ctx, const struct dhcpc_lease *l)
{
	(void)ctx;
	if (l) {
		r.saves++;
		r.saved = *l;
	} else {
		r.forgets++;
	}
}

static void rec_event(void *ctx, const struct dhcpc_event *ev)
{
	(void)ctx;
	dhcpc_event_json(ev, (double)r.now / 1000, "eth0", r.events[r.nr_events % 64],
			 sizeof(r.events[0]));
	r.nr_events++;
}

static bool saw_event(const char *needle)
{
	int i, n = r.nr_events < 64 ? r.nr_events : 64;

	for (i = 0; i < n; i++)
		if (strstr(r.events[i], needle))
			return true;
	return false;
}

static struct dhcpc *client(struct dhcpc_cfg *cfg)
{
	struct dhcpc_ops ops = {
		.send = rec_send, .arp = rec_arp, .apply = rec_apply, .remove = rec_remove,
		.lease = rec_lease, .event = rec_event,
	};
	struct dhcpc_cfg def = { .seed = 42 };
	struct dhcpc *c = NULL;

	if (!cfg)
		cfg = &def;
	memcpy(cfg->mac, MAC, 6);
	if (!cfg->seed)
		cfg->seed = 42;
	memset(&r, 0, sizeof(r));
	if (dhcpc_new(cfg, &ops, &c))
		return NULL;
	return c;
}

/* Fake clock: run every deadline up to t. */
static void run_until(struct dhcpc *c, uint64_t t)
{
	uint64_t d;

	while ((d = dhcpc_next_deadline(c)) <= t) {
		if (d > r.now)
			r.now = d;
		dhcpc_tick(c, r.now);
	}
	if (t > r.now)
		r.now = t;
}

/* ---- server replies ---- */

struct rep {
	uint8_t op;			/* 0 = BOOTREPLY */
	uint32_t xid;			/* 0 = the client's last xid */
	const uint8_t *chaddr;		/* NULL = MAC */
	uint32_t yiaddr, server;	/* host order */
	uint32_t lease, t1, t2;		/* 0 = absent */
	bool no_server_id;
	bool zero_lease;		/* a lease time option of 0 */
	bool no_mask;			/* no subnet mask option */
	bool zero_mask;			/* a subnet mask of 0.0.0.0 */
	uint32_t mask;			/* 0 = 255.255.255.0, else this (host order) */
	uint8_t mask_len;		/* 0 = 4 */
	bool router_set;
	uint32_t router;		/* with router_set, else S1 (host order) */
	uint32_t siaddr;		/* host order */
};

static int feed(struct dhcpc *c, uint8_t type, const struct rep *o)
{
	uint8_t buf[DHCPC_PKT_MAX];
	struct dhcp_builder b;
	struct dhcp_hdr h;
	uint32_t mask = o->zero_mask ? 0 : htonl(o->mask ? o->mask : 0xffffff00U);
	uint32_t router = htonl(o->router_set ? o->router : S1);
	int len;

	memset(&h, 0, sizeof(h));
	h.op = o->op ? o->op : BOOTREPLY;
	h.htype = 1;
	h.hlen = 6;
	h.xid_be = o->xid ? htonl(o->xid) : r.last.hdr.xid_be;
	h.yiaddr_be = htonl(o->yiaddr);
	h.siaddr_be = htonl(o->siaddr);
	memcpy(h.chaddr, o->chaddr ? o->chaddr : MAC, 6);
	dhcp_build_init(&b, buf, sizeof(buf), &h);
	dhcp_build_opt_u8(&b, DHO_MSG_TYPE, type);
	if (!o->no_server_id)
		dhcp_build_opt_u32(&b, DHO_SERVER_ID, o->server);
	if (type != DHCPNAK) {
		if (o->lease || o->zero_lease)
			dhcp_build_opt_u32(&b, DHO_LEASE_TIME, o->lease);
		if (o->t1)
			dhcp_build_opt_u32(&b, DHO_T1, o->t1);
		if (o->t2)
			dhcp_build_opt_u32(&b, DHO_T2, o->t2);
		if (!o->no_mask)
			dhcp_build_opt(&b, DHO_SUBNET_MASK, &mask, o->mask_len ? o->mask_len : 4);
		dhcp_build_opt(&b, DHO_ROUTER, &router, 4);
	}
	len = dhcp_build_finish(&b);
	if (len < 0)
		return len;
	return dhcpc_input_pkt(c, buf, (size_t)len, SRV_MAC, r.now);
}

static int offer(struct dhcpc *c, uint32_t server, uint32_t ip, uint32_t lease)
{
	struct rep o = { .yiaddr = ip, .server = server, .lease = lease };

	return feed(c, DHCPOFFER, &o);
}

static int ack(struct dhcpc *c, uint32_t server, uint32_t ip, uint32_t lease)
{
	struct rep o = { .yiaddr = ip, .server = server, .lease = lease };

	return feed(c, DHCPACK, &o);
}

static int nak(struct dhcpc *c, uint32_t server)
{
	struct rep o = { .server = server };

	return feed(c, DHCPNAK, &o);
}

static uint32_t opt32(const struct dhcp_msg *m, uint8_t code)
{
	size_t len;
	const uint8_t *v = dhcp_opt_get(m, code, &len);
	uint32_t x;

	if (!v || len != 4)
		return 0;
	memcpy(&x, v, 4);
	return ntohl(x);
}

/* DORA up to BOUND at IP(100) from S1 with a 600 s lease.  Leaves r.now at
 * the binding. */
static bool dora(struct dhcpc *c, uint32_t lease)
{
	dhcpc_start(c, NULL, r.now);
	if (r.tx[DHCPDISCOVER] != 1 || offer(c, S1, IP(100), lease))
		return false;
	run_until(c, r.now + 1000);
	if (r.tx[DHCPREQUEST] != 1 || ack(c, S1, IP(100), lease))
		return false;
	while (dhcpc_state(c) == DHCPC_PROBING)
		run_until(c, dhcpc_next_deadline(c));
	return dhcpc_state(c) == DHCPC_BOUND;
}

/* ---- cases ---- */

static void test_dora(void)
{
	struct dhcpc *c = client(NULL);
	uint32_t xid;

	dhcpc_start(c, NULL, 0);
	ASSERT_EQ(dhcpc_state(c), DHCPC_SELECTING, "DORA: INIT -> SELECTING");
	ASSERT_EQ(r.tx[DHCPDISCOVER], 1, "DORA: DISCOVER sent at once");
	ASSERT_TRUE(r.last_tx.broadcast && r.last_tx.src_be == 0 &&
		    r.last.hdr.op == BOOTREQUEST && !memcmp(r.last.hdr.chaddr, MAC, 6),
		    "DORA: DISCOVER broadcast from 0.0.0.0 with our chaddr");
	xid = ntohl(r.last.hdr.xid_be);
	ASSERT_EQ(offer(c, S1, IP(100), 600), 0, "DORA: OFFER accepted");
	ASSERT_EQ(r.tx[DHCPREQUEST], 0, "DORA: REQUEST waits for the offer window");
	run_until(c, 999);
	ASSERT_EQ(r.tx[DHCPREQUEST], 0, "DORA: ... 1 s");
	run_until(c, 1000);
	ASSERT_EQ(dhcpc_state(c), DHCPC_REQUESTING, "DORA: SELECTING -> REQUESTING");
	ASSERT_TRUE(r.tx[DHCPREQUEST] == 1 && r.last_tx.broadcast &&
		    opt32(&r.last, DHO_REQUESTED_IP) == IP(100) &&
		    opt32(&r.last, DHO_SERVER_ID) == S1 && r.last.hdr.ciaddr_be == 0 &&
		    ntohl(r.last.hdr.xid_be) == xid,
		    "DORA: REQUEST broadcast, requested IP + server id, ciaddr 0, same xid");
	ASSERT_EQ(ack(c, S1, IP(100), 600), 0, "DORA: ACK accepted");
	ASSERT_EQ(dhcpc_state(c), DHCPC_PROBING, "DORA: ACK -> PROBING (RFC 5227)");
	ASSERT_EQ(r.applies, 0, "DORA: nothing applied while probing");
	run_until(c, 1000 + 1000 + 2000 + 2000 + 2000 - 1);	/* worst case */
	ASSERT_EQ(r.probes, 3, "DORA: 3 ARP probes");
	ASSERT_EQ(dhcpc_state(c), DHCPC_BOUND, "DORA: PROBING -> BOUND");
	ASSERT_TRUE(r.applies == 1 && r.applied.ip_be == htonl(IP(100)) &&
		    r.applied.prefix == 24 && r.applied.router_be == htonl(S1) &&
		    r.applied.server_be == htonl(S1),
		    "DORA: address applied with prefix and router");
	ASSERT_TRUE(r.saves == 1 && r.saved.ip_be == htonl(IP(100)), "DORA: lease remembered");
	ASSERT_TRUE(r.applied.lease_s == 600 && r.applied.t1_s == 300 && r.applied.t2_s == 525,
		    "DORA: T1 0.5 and T2 0.875 of the lease by default");
	run_until(c, r.now + 2000);
	ASSERT_EQ(r.announces, 2, "DORA: 2 ARP announcements");
	ASSERT_TRUE(saw_event("\"from\":\"REQUESTING\",\"to\":\"PROBING\"") &&
		    saw_event("\"event\":\"rx\",\"state\":\"SELECTING\",\"type\":\"OFFER\",\"server\":\"198.18.0.1\",\"ip\":\"198.18.0.100\""),
		    "DORA: transaction log has transitions and messages");
	dhcpc_free(c);
}

static void test_backoff(void)
{
	static const int base[] = { 4000, 8000, 16000, 32000, 64000, 64000, 64000 };
	struct dhcpc *c = client(NULL);
	bool ok = true;
	int i;

	dhcpc_start(c, NULL, 0);
	run_until(c, 300000);
	ASSERT_TRUE(r.nr_discover_at >= 8, "backoff: DISCOVER retransmitted");
	for (i = 0; i < 7 && i + 1 < r.nr_discover_at; i++) {
		int64_t gap = (int64_t)(r.tx_at[i + 1] - r.tx_at[i]);

		if (gap < base[i] - 1000 || gap > base[i] + 1000) {
			tap_diag("  gap %d: %lld ms, want %d +- 1000", i, (long long)gap, base[i]);
			ok = false;
		}
	}
	ASSERT_TRUE(ok, "backoff: 4, 8, 16, 32, 64, 64 s, each +-1 s");
	ASSERT_EQ(dhcpc_state(c), DHCPC_SELECTING, "backoff: no static address: still SELECTING");
	dhcpc_free(c);

	/* time_scale shrinks the same schedule. */
	struct dhcpc_cfg cfg = { .time_scale = 0.01 };
	c = client(&cfg);
	dhcpc_start(c, NULL, 0);
	run_until(c, 1000);
	ASSERT_TRUE(r.nr_discover_at >= 5 && r.tx_at[1] >= 30 && r.tx_at[1] <= 50,
		    "backoff: time_scale 0.01 makes it 40 ms, 80 ms, ...");
	dhcpc_free(c);
}

static void test_nak_requesting(void)
{
	struct dhcpc *c = client(NULL);
	uint32_t xid;

	dhcpc_start(c, NULL, 0);
	offer(c, S1, IP(100), 600);
	run_until(c, 1000);
	xid = ntohl(r.last.hdr.xid_be);
	ASSERT_EQ(nak(c, S2), -ENOENT, "NAK from a server we did not ask: ignored");
	ASSERT_EQ(dhcpc_state(c), DHCPC_REQUESTING, "... still REQUESTING");
	ASSERT_EQ(nak(c, S1), 0, "NAK in REQUESTING taken");
	ASSERT_EQ(dhcpc_state(c), DHCPC_SELECTING, "NAK: INIT, new DISCOVER");
	ASSERT_TRUE(r.tx[DHCPDISCOVER] == 2 && ntohl(r.last.hdr.xid_be) != xid,
		    "NAK: DISCOVER with a new xid");
	ASSERT_TRUE(saw_event("\"to\":\"INIT\",\"xid\"") && saw_event("\"reason\":\"NAK\""),
		    "NAK: logged");
	ASSERT_EQ(r.applies, 0, "NAK: nothing applied");
	dhcpc_free(c);
}

static void test_renew_rebind_expire(void)
{
	struct dhcpc *c = client(NULL);
	uint64_t bound;

	if (!ASSERT_TRUE(dora(c, 600), "renew: DORA"))
		return;
	bound = r.now;
	run_until(c, bound + 299000);
	ASSERT_EQ(dhcpc_state(c), DHCPC_BOUND, "renew: BOUND until T1");
	run_until(c, bound + 300000);
	ASSERT_EQ(dhcpc_state(c), DHCPC_RENEWING, "renew: T1 -> RENEWING");
	ASSERT_TRUE(r.tx[DHCPREQUEST] == 2 && !r.last_tx.broadcast &&
		    r.last_tx.dst_be == htonl(S1) && r.last_tx.src_be == htonl(IP(100)) &&
		    !memcmp(r.last_tx.dst_mac, SRV_MAC, 6) &&
		    r.last.hdr.ciaddr_be == htonl(IP(100)) &&
		    !r.last.opt[DHO_SERVER_ID].present && !r.last.opt[DHO_REQUESTED_IP].present,
		    "renew: REQUEST unicast to the server, ciaddr set, no server id/requested IP");
	/* RENEWING: retransmit at half the time to T2, >= 60 s. */
	run_until(c, bound + 300000 + 112499);
	ASSERT_EQ(r.tx[DHCPREQUEST], 2, "renew: no retransmission before half-way to T2");
	run_until(c, bound + 300000 + 112500);
	ASSERT_EQ(r.tx[DHCPREQUEST], 3, "renew: retransmitted half-way to T2");
	run_until(c, bound + 525000);
	ASSERT_EQ(dhcpc_state(c), DHCPC_REBINDING, "rebind: T2 -> REBINDING");
	ASSERT_TRUE(r.last_tx.broadcast && r.last.hdr.ciaddr_be == htonl(IP(100)) &&
		    r.last_tx.src_be == htonl(IP(100)),
		    "rebind: REQUEST broadcast with ciaddr");
	ASSERT_EQ(r.removes, 0, "rebind: address still in use");
	run_until(c, bound + 599999);
	ASSERT_EQ(dhcpc_state(c), DHCPC_REBINDING, "expiry: REBINDING until the lease ends");
	run_until(c, bound + 600000);
	ASSERT_TRUE(r.removes == 1 && r.removed.ip_be == htonl(IP(100)) && r.forgets == 1,
		    "expiry: address removed and lease forgotten");
	ASSERT_EQ(dhcpc_state(c), DHCPC_SELECTING, "expiry: back to INIT, DISCOVER");
	ASSERT_TRUE(saw_event("\"reason\":\"lease expired\""), "expiry: logged");
	dhcpc_free(c);

	/* An ACK while RENEWING extends the lease. */
	c = client(NULL);
	dora(c, 600);
	bound = r.now;
	run_until(c, bound + 300000);
	ASSERT_EQ(ack(c, S2, IP(100), 600), -ENOENT, "renew: ACK from another server ignored");
	{
		struct rep o = { .yiaddr = IP(100), .server = S1, .lease = 1000, .t1 = 100, .t2 = 200 };

		ASSERT_EQ(feed(c, DHCPACK, &o), 0, "renew: ACK from our server");
	}
	ASSERT_EQ(dhcpc_state(c), DHCPC_BOUND, "renew: RENEWING -> BOUND");
	ASSERT_TRUE(r.applies == 2 && r.applied.lease_s == 1000 && r.applied.t1_s == 100 &&
		    r.applied.t2_s == 200 && r.probes == 3,
		    "renew: re-applied with the server's T1/T2, no new probe");
	run_until(c, bound + 300000 + 100000);
	ASSERT_EQ(dhcpc_state(c), DHCPC_RENEWING, "renew: next T1 from the new lease");
	/* NAK while renewing: address goes. */
	ASSERT_EQ(nak(c, S1), 0, "renew: NAK taken");
	ASSERT_TRUE(r.removes == 1 && r.forgets == 1 && dhcpc_state(c) == DHCPC_SELECTING,
		    "renew: NAK removes the address, back to INIT");
	dhcpc_free(c);
}

static void test_init_reboot(void)
{
	struct dhcpc_lease mem = { .ip_be = htonl(IP(77)) };
	struct dhcpc *c = client(NULL);

	dhcpc_start(c, &mem, 0);
	ASSERT_EQ(dhcpc_state(c), DHCPC_REBOOTING, "INIT-REBOOT: REQUEST sent, REBOOTING");
	ASSERT_TRUE(r.tx[DHCPREQUEST] == 1 && r.tx[DHCPDISCOVER] == 0 && r.last_tx.broadcast &&
		    opt32(&r.last, DHO_REQUESTED_IP) == IP(77) &&
		    !r.last.opt[DHO_SERVER_ID].present && r.last.hdr.ciaddr_be == 0,
		    "INIT-REBOOT: broadcast REQUEST, requested IP, no server id, ciaddr 0");
	ASSERT_TRUE(saw_event("\"to\":\"INIT-REBOOT\""), "INIT-REBOOT: logged");
	ASSERT_EQ(ack(c, S2, IP(77), 600), 0, "INIT-REBOOT: ACK from any server");
	while (dhcpc_state(c) == DHCPC_PROBING)
		run_until(c, dhcpc_next_deadline(c));
	ASSERT_TRUE(dhcpc_state(c) == DHCPC_BOUND && r.applied.ip_be == htonl(IP(77)) &&
		    r.applied.server_be == htonl(S2),
		    "INIT-REBOOT: ACK -> BOUND on the remembered address");
	dhcpc_free(c);

	c = client(NULL);
	dhcpc_start(c, &mem, 0);
	ASSERT_EQ(nak(c, S1), 0, "INIT-REBOOT: NAK taken");
	ASSERT_TRUE(dhcpc_state(c) == DHCPC_SELECTING && r.forgets == 1 &&
		    r.tx[DHCPDISCOVER] == 1 && r.applies == 0,
		    "INIT-REBOOT: NAK -> INIT, remembered lease forgotten, DISCOVER");
	dhcpc_free(c);

	c = client(NULL);
	dhcpc_start(c, &mem, 0);
	run_until(c, 60000);
	ASSERT_TRUE(r.tx[DHCPREQUEST] == 3 && dhcpc_state(c) == DHCPC_SELECTING,
		    "INIT-REBOOT: no answer after 3 REQUESTs -> INIT");
	dhcpc_free(c);
}

static void test_conflict(void)
{
	struct dhcpc_cfg cfg = { .decline_backoff_ms = 10000 };
	struct dhcpc *c = client(&cfg);
	struct arp_pkt a = { .op = 2, .spa_be = htonl(IP(100)) };
	struct arp_pkt mine = { .op = 1, .spa_be = 0, .tpa_be = htonl(IP(100)) };
	struct arp_pkt unrelated = { .op = 1, .spa_be = htonl(IP(5)), .tpa_be = htonl(IP(6)) };
	uint64_t t;

	memcpy(a.sha, OTHER_MAC, 6);
	memcpy(mine.sha, MAC, 6);
	memcpy(unrelated.sha, OTHER_MAC, 6);
	dhcpc_start(c, NULL, 0);
	offer(c, S1, IP(100), 600);
	run_until(c, 1000);
	ack(c, S1, IP(100), 600);
	run_until(c, r.now + 1500);
	dhcpc_arp_input(c, &mine, r.now);
	dhcpc_arp_input(c, &unrelated, r.now);
	ASSERT_EQ(dhcpc_state(c), DHCPC_PROBING, "conflict: our own probe and unrelated ARP ignored");
	dhcpc_arp_input(c, &a, r.now);
	t = r.now;
	ASSERT_TRUE(r.tx[DHCPDECLINE] == 1 && r.last_tx.broadcast &&
		    opt32(&r.last, DHO_REQUESTED_IP) == IP(100) &&
		    opt32(&r.last, DHO_SERVER_ID) == S1 && r.last.hdr.ciaddr_be == 0,
		    "conflict: DECLINE broadcast with requested IP and server id");
	ASSERT_TRUE(dhcpc_state(c) == DHCPC_INIT && r.applies == 0 && r.forgets == 1,
		    "conflict: INIT, nothing applied, lease forgotten");
	run_until(c, t + 9999);
	ASSERT_EQ(r.tx[DHCPDISCOVER], 1, "conflict: quiet for the 10 s backoff");
	run_until(c, t + 10000);
	ASSERT_TRUE(r.tx[DHCPDISCOVER] == 2 && dhcpc_state(c) == DHCPC_SELECTING,
		    "conflict: DISCOVER after the backoff");
	ASSERT_TRUE(saw_event("\"event\":\"conflict\"") && saw_event("\"type\":\"DECLINE\""),
		    "conflict: logged");
	dhcpc_free(c);

	/* Another host probing for the same address at the same time. */
	c = client(&cfg);
	dhcpc_start(c, NULL, 0);
	offer(c, S1, IP(100), 600);
	run_until(c, 1000);
	ack(c, S1, IP(100), 600);
	memcpy(mine.sha, OTHER_MAC, 6);
	dhcpc_arp_input(c, &mine, r.now);
	ASSERT_EQ(r.tx[DHCPDECLINE], 1, "conflict: a simultaneous probe from another host");
	dhcpc_free(c);
}

static void test_offer_choice(void)
{
	struct dhcpc *c = client(NULL);

	dhcpc_start(c, NULL, 0);
	offer(c, S1, IP(100), 600);
	run_until(c, 500);
	offer(c, S2, IP(200), 1200);
	run_until(c, 1000);
	ASSERT_TRUE(opt32(&r.last, DHO_SERVER_ID) == S2 &&
		    opt32(&r.last, DHO_REQUESTED_IP) == IP(200),
		    "two offers: the longest lease wins");
	ASSERT_TRUE(saw_event("\"event\":\"offer-chosen\"") && saw_event("\"server\":\"198.18.0.2\",\"ip\":\"198.18.0.200\""),
		    "two offers: choice logged");
	ASSERT_EQ(ack(c, S1, IP(100), 600), -ENOENT, "two offers: ACK from the other server ignored");
	dhcpc_free(c);

	c = client(NULL);
	dhcpc_start(c, NULL, 0);
	offer(c, S2, IP(200), 600);
	offer(c, S1, IP(100), 600);
	run_until(c, 1000);
	ASSERT_EQ(opt32(&r.last, DHO_SERVER_ID), S2, "two offers, equal leases: the first wins");
	dhcpc_free(c);

	c = client(NULL);
	dhcpc_start(c, NULL, 0);
	run_until(c, 1500);
	offer(c, S1, IP(100), 600);
	run_until(c, 2499);
	ASSERT_EQ(r.tx[DHCPREQUEST], 0, "offer window counts from the first offer");
	run_until(c, 2500);
	ASSERT_EQ(r.tx[DHCPREQUEST], 1, "... and ends 1 s later");
	dhcpc_free(c);
}

static void test_server_fallback(void)
{
	struct dhcpc *c = client(NULL);
	uint64_t t;

	dhcpc_start(c, NULL, 0);
	offer(c, S1, IP(100), 1200);	/* S1 looks better but never ACKs */
	offer(c, S2, IP(200), 600);
	run_until(c, 1000);
	ASSERT_EQ(opt32(&r.last, DHO_SERVER_ID), S1, "fallback: S1 chosen first");
	t = r.now;
	run_until(c, t + 4000 + 8000 + 16000 - 3001);
	ASSERT_EQ(r.tx[DHCPREQUEST], 3, "fallback: REQUEST retransmitted with backoff");
	while (dhcpc_state(c) == DHCPC_REQUESTING && r.now < t + 100000)
		run_until(c, dhcpc_next_deadline(c));
	tap_diag("  gave up S1 after %llu ms", (unsigned long long)(r.now - t));
	ASSERT_TRUE(r.tx[DHCPREQUEST] == 4 && dhcpc_state(c) == DHCPC_SELECTING &&
		    r.tx[DHCPDISCOVER] == 2,
		    "fallback: after 4 unanswered REQUESTs back to INIT, new DISCOVER");
	ASSERT_TRUE(saw_event("\"reason\":\"no ACK or NAK\""), "fallback: timeout logged");
	offer(c, S1, IP(100), 1200);
	offer(c, S2, IP(200), 600);
	run_until(c, r.now + 1000);
	ASSERT_EQ(opt32(&r.last, DHO_SERVER_ID), S2, "fallback: the other server is preferred now");
	ack(c, S2, IP(200), 600);
	while (dhcpc_state(c) == DHCPC_PROBING)
		run_until(c, dhcpc_next_deadline(c));
	ASSERT_TRUE(dhcpc_state(c) == DHCPC_BOUND && r.applied.ip_be == htonl(IP(200)),
		    "fallback: bound via the other server");
	dhcpc_free(c);

	/* Only the failed server offers: it is still tried. */
	c = client(NULL);
	dhcpc_start(c, NULL, 0);
	offer(c, S1, IP(100), 600);
	run_until(c, 1000);
	run_until(c, 200000);
	offer(c, S1, IP(100), 600);
	run_until(c, r.now + 1000);
	ASSERT_TRUE(dhcpc_state(c) == DHCPC_REQUESTING && opt32(&r.last, DHO_SERVER_ID) == S1,
		    "fallback: a failed server is tried again when it is the only one");
	dhcpc_free(c);
}

static void test_static(void)
{
	struct dhcpc_cfg cfg = {
		.static_ip_be = htonl(IP(250)), .static_prefix = 24,
		.static_router_be = htonl(IP(254)), .static_after_ms = 5000,
	};
	struct dhcpc *c = client(&cfg);
	struct arp_pkt a = { .op = 2, .spa_be = htonl(IP(250)) };

	dhcpc_start(c, NULL, 0);
	run_until(c, 4999);
	ASSERT_EQ(dhcpc_state(c), DHCPC_SELECTING, "static: discovering before static_after");
	run_until(c, 5000);
	ASSERT_EQ(dhcpc_state(c), DHCPC_STATIC_PROBING, "static: no server -> probe the static address");
	run_until(c, 5000 + 7000);
	ASSERT_TRUE(dhcpc_state(c) == DHCPC_STATIC && r.probes == 3 && r.applies == 1 &&
		    r.applied.is_static && r.applied.ip_be == htonl(IP(250)) &&
		    r.applied.prefix == 24 && r.applied.router_be == htonl(IP(254)),
		    "static: probed (3) and applied with prefix and router");
	ASSERT_EQ(r.saves, 0, "static: not written to the lease file");
	int d0 = r.tx[DHCPDISCOVER];
	run_until(c, 200000);
	ASSERT_TRUE(r.tx[DHCPDISCOVER] > d0, "static: discovery goes on");
	offer(c, S1, IP(100), 600);
	run_until(c, r.now + 1000);
	ack(c, S1, IP(100), 600);
	while (dhcpc_state(c) == DHCPC_PROBING)
		run_until(c, dhcpc_next_deadline(c));
	ASSERT_TRUE(dhcpc_state(c) == DHCPC_BOUND && r.removes == 1 && r.removed.is_static &&
		    r.applied.ip_be == htonl(IP(100)),
		    "static: a late server replaces the static address");
	dhcpc_free(c);

	/* The static address is in use: not applied, discovery goes on. */
	c = client(&cfg);
	memcpy(a.sha, OTHER_MAC, 6);
	dhcpc_start(c, NULL, 0);
	run_until(c, 5000);
	dhcpc_arp_input(c, &a, r.now);
	ASSERT_TRUE(dhcpc_state(c) == DHCPC_SELECTING && r.applies == 0 &&
		    r.tx[DHCPDECLINE] == 0,
		    "static: conflict -> not applied, no DECLINE, back to discovering");
	dhcpc_free(c);
}

/* What no server should offer: refused with the field named, never a
 * candidate, so discovery goes on and the static fallback follows. */
static const struct {
	const char *name;
	struct rep rep;
	const char *field;	/* NULL: a sane offer (control case) */
} nonsense[] = {
	{ "yiaddr is the subnet's broadcast address", { .yiaddr = IP(255), .server = S1, .lease = 600 }, "yiaddr" },
	{ "yiaddr is the subnet's network address", { .yiaddr = IP(0), .server = S1, .lease = 600 }, "yiaddr" },
	{ "yiaddr is the server's identifier", { .yiaddr = S1, .server = S1, .lease = 600 }, "yiaddr" },
	{ "yiaddr is siaddr", { .yiaddr = IP(100), .server = S1, .siaddr = IP(100), .lease = 600 }, "yiaddr" },
	{ "yiaddr is zero", { .yiaddr = 0, .server = S1, .lease = 600 }, "yiaddr" },
	{ "yiaddr is loopback", { .yiaddr = 0x7f000005, .server = S1, .lease = 600 }, "yiaddr" },
	{ "yiaddr is multicast", { .yiaddr = 0xe0000005, .server = S1, .lease = 600 }, "yiaddr" },
	{ "yiaddr is reserved (240/4)", { .yiaddr = 0xf0000001, .server = S1, .lease = 600 }, "yiaddr" },
	{ "yiaddr is 255.255.255.255", { .yiaddr = 0xffffffff, .server = S1, .lease = 600 }, "yiaddr" },
	{ "yiaddr is link-local", { .yiaddr = 0xa9fe0304, .server = S1, .lease = 600 }, "yiaddr" },
	{ "yiaddr in 0/8", { .yiaddr = 0x00000105, .server = S1, .lease = 600 }, "yiaddr" },
	{ "subnet mask 0.0.0.0", { .yiaddr = IP(100), .server = S1, .lease = 600, .zero_mask = true }, "subnet mask" },
	{ "subnet mask 255.0.255.0", { .yiaddr = IP(100), .server = S1, .lease = 600, .mask = 0xff00ff00 }, "subnet mask" },
	{ "subnet mask 255.255.255.1", { .yiaddr = IP(100), .server = S1, .lease = 600, .mask = 0xffffff01 }, "subnet mask" },
	{ "subnet mask of 3 bytes", { .yiaddr = IP(100), .server = S1, .lease = 600, .mask_len = 3 }, "subnet mask" },
	{ "lease time 0", { .yiaddr = IP(100), .server = S1, .zero_lease = true }, "lease time" },
	{ "broadcast address of a /16 mask", { .yiaddr = NET | 0xffff, .server = S1, .lease = 600, .mask = 0xffff0000 }, "yiaddr" },
	{ "network address of the class mask (no mask option)", { .yiaddr = 0x0a000000, .server = 0x0a000001, .lease = 600, .no_mask = true, .router_set = true, .router = 0x0a000001 }, "yiaddr" },
	{ "server identifier is loopback", { .yiaddr = IP(100), .server = 0x7f000001, .lease = 600 }, "server identifier" },
	{ "router is the offered address", { .yiaddr = IP(100), .server = S1, .lease = 600, .router_set = true, .router = IP(100) }, "router" },
	{ "router is multicast", { .yiaddr = IP(100), .server = S1, .lease = 600, .router_set = true, .router = 0xe0000001 }, "router" },
	{ "router is the subnet's broadcast address", { .yiaddr = IP(100), .server = S1, .lease = 600, .router_set = true, .router = IP(255) }, "router" },
	{ "control: a sane offer", { .yiaddr = IP(100), .server = S1, .lease = 600 }, NULL },
	{ "control: .255 inside a /16 is an address", { .yiaddr = NET | 0x01ff, .server = S1, .lease = 600, .mask = 0xffff0000 }, NULL },
	{ "control: a /31 has no network or broadcast address (RFC 3021)", { .yiaddr = IP(0), .server = IP(1), .lease = 600, .mask = 0xfffffffe, .router_set = true, .router = IP(1) }, NULL },
};

static void test_nonsense_offers(void)
{
	char want[64];

	for (size_t i = 0; i < sizeof(nonsense) / sizeof(nonsense[0]); i++) {
		struct dhcpc *c = client(NULL);
		const char *field = nonsense[i].field;
		int ret;

		dhcpc_start(c, NULL, 0);
		ret = feed(c, DHCPOFFER, &nonsense[i].rep);
		run_until(c, 3000);
		snprintf(want, sizeof(want), "\"field\":\"%s\"", field ? field : "");
		if (field)
			tap_ok(ret == -ENOENT && saw_event("\"event\":\"refused\"") && saw_event(want) &&
			       r.tx[DHCPREQUEST] == 0 && dhcpc_state(c) == DHCPC_SELECTING,
			       "nonsense OFFER refused (%s): %s", field, nonsense[i].name);
		else
			tap_ok(ret == 0 && r.tx[DHCPREQUEST] == 1, "%s: requested", nonsense[i].name);
		if (tap_failed() && field)
			tap_diag("  ret %d, REQUESTs %d, last event %s", ret, r.tx[DHCPREQUEST],
				 r.events[(r.nr_events - 1) % 64]);
		dhcpc_free(c);
	}
}

/* Only nonsense on offer: none of it is configured; the static fallback is. */
static void test_nonsense_then_static(void)
{
	struct dhcpc_cfg cfg = {
		.static_ip_be = htonl(IP(250)), .static_prefix = 24, .static_after_ms = 20000,
		.no_probe = true,
	};
	struct dhcpc *c = client(&cfg);
	struct rep sane = { .yiaddr = IP(100), .server = S2, .lease = 600 };
	bool all = true;

	dhcpc_start(c, NULL, 0);
	for (uint64_t t = 0; t < 20000; t = r.now) {
		for (size_t i = 0; i < sizeof(nonsense) / sizeof(nonsense[0]); i++)
			if (nonsense[i].field)
				all &= feed(c, DHCPOFFER, &nonsense[i].rep) == -ENOENT;
		run_until(c, dhcpc_next_deadline(c));
	}
	ASSERT_TRUE(all, "nonsense then static: every nonsense OFFER refused, round after round");
	ASSERT_TRUE(dhcpc_state(c) == DHCPC_STATIC && r.applies == 1 && r.applied.is_static &&
		    r.applied.ip_be == htonl(IP(250)) && r.tx[DHCPREQUEST] == 0,
		    "nonsense then static: the static fallback is applied, nothing offered was");
	/* A sane server later still wins over the static address. */
	feed(c, DHCPOFFER, &sane);
	run_until(c, r.now + 1000);
	ASSERT_EQ(r.tx[DHCPREQUEST], 1, "nonsense then static: a sane offer later is requested");
	dhcpc_free(c);

	/* Nonsense and a sane offer together: the sane one, whatever the leases. */
	c = client(NULL);
	dhcpc_start(c, NULL, 0);
	for (size_t i = 0; i < sizeof(nonsense) / sizeof(nonsense[0]); i++)
		if (nonsense[i].field) {
			struct rep o = nonsense[i].rep;

			o.lease = o.zero_lease ? 0 : 86400;	/* longer than the sane one */
			feed(c, DHCPOFFER, &o);
		}
	feed(c, DHCPOFFER, &sane);
	run_until(c, 1000);
	ASSERT_TRUE(r.tx[DHCPREQUEST] == 1 && opt32(&r.last, DHO_SERVER_ID) == S2 &&
		    opt32(&r.last, DHO_REQUESTED_IP) == IP(100),
		    "nonsense among offers: the sane one is requested, not the longest lease");
	dhcpc_free(c);
}

/* A sane OFFER, then an ACK no server should send. */
static void test_nonsense_ack(void)
{
	struct dhcpc *c = client(NULL);
	struct rep bad = { .yiaddr = IP(100), .server = S1, .lease = 600, .mask = 0xff00ff00 };
	struct rep zero = { .yiaddr = IP(100), .server = S1, .zero_lease = true };

	dhcpc_start(c, NULL, 0);
	offer(c, S1, IP(100), 600);
	run_until(c, 1000);
	ASSERT_EQ(feed(c, DHCPACK, &bad), -ENOENT, "nonsense ACK: refused");
	ASSERT_TRUE(dhcpc_state(c) == DHCPC_SELECTING && r.applies == 0 &&
		    saw_event("\"field\":\"subnet mask\""),
		    "nonsense ACK: nothing applied, discovering again");
	dhcpc_free(c);

	/* A server that baits with sane OFFERs and answers with nonsense:
	 * once the static fallback is due, it no longer gets a REQUEST. */
	{
		struct dhcpc_cfg cfg = {
			.static_ip_be = htonl(IP(250)), .static_prefix = 24,
			.static_after_ms = 30000, .no_probe = true,
		};
		int requests = 0;

		c = client(&cfg);
		dhcpc_start(c, NULL, 0);
		for (int round = 0; round < 40 && dhcpc_state(c) != DHCPC_STATIC; round++) {
			if (dhcpc_state(c) == DHCPC_SELECTING)
				offer(c, S1, IP(100), 600);
			else if (dhcpc_state(c) == DHCPC_REQUESTING && r.tx[DHCPREQUEST] > requests)
				feed(c, DHCPACK, &bad);
			requests = r.tx[DHCPREQUEST];
			run_until(c, dhcpc_next_deadline(c));
		}
		ASSERT_TRUE(dhcpc_state(c) == DHCPC_STATIC && r.applies == 1 &&
			    r.applied.ip_be == htonl(IP(250)),
			    "baiting server: sane OFFERs, nonsense ACKs -> the static fallback");
		dhcpc_free(c);
	}

	/* While renewing: the lease in use stands. */
	c = client(NULL);
	if (!ASSERT_TRUE(dora(c, 600), "nonsense renewal ACK: bound first"))
		return;
	run_until(c, r.now + 300000);
	ASSERT_EQ(dhcpc_state(c), DHCPC_RENEWING, "nonsense renewal ACK: renewing at T1");
	ASSERT_EQ(feed(c, DHCPACK, &zero), -ENOENT, "nonsense renewal ACK: lease 0 refused");
	ASSERT_TRUE(dhcpc_state(c) == DHCPC_RENEWING && r.removes == 0 && r.applies == 1,
		    "nonsense renewal ACK: the current lease stays");
	dhcpc_free(c);
}

static void test_foreign(void)
{
	struct dhcpc *c = client(NULL);
	struct rep o = { .yiaddr = IP(100), .server = S1, .lease = 600 };
	uint8_t junk[300];

	dhcpc_start(c, NULL, 0);
	o.xid = ntohl(r.last.hdr.xid_be) + 1;
	ASSERT_EQ(feed(c, DHCPOFFER, &o), -ENOENT, "foreign: wrong xid ignored");
	o.xid = 0;
	o.chaddr = OTHER_MAC;
	ASSERT_EQ(feed(c, DHCPOFFER, &o), -ENOENT, "foreign: wrong chaddr ignored");
	o.chaddr = NULL;
	o.op = BOOTREQUEST;
	ASSERT_EQ(feed(c, DHCPOFFER, &o), -ENOENT, "foreign: BOOTREQUEST ignored");
	o.op = 0;
	o.no_server_id = true;
	ASSERT_EQ(feed(c, DHCPOFFER, &o), -ENOENT, "foreign: OFFER without server id ignored");
	o.no_server_id = false;
	ASSERT_EQ(feed(c, DHCPACK, &o), -ENOENT, "foreign: ACK while SELECTING ignored");
	o.yiaddr = 0;
	ASSERT_EQ(feed(c, DHCPOFFER, &o), -ENOENT, "foreign: OFFER of 0.0.0.0 ignored");
	memset(junk, 0, sizeof(junk));
	ASSERT_EQ(dhcpc_input_pkt(c, junk, 100, SRV_MAC, r.now), -EBADMSG,
		  "malformed: truncated ignored");
	ASSERT_EQ(dhcpc_input_pkt(c, junk, sizeof(junk), SRV_MAC, r.now), -EBADMSG,
		  "malformed: no magic cookie ignored");
	run_until(c, 3000);
	ASSERT_TRUE(dhcpc_state(c) == DHCPC_SELECTING && r.tx[DHCPREQUEST] == 0,
		    "foreign/malformed: state unchanged, nothing requested");
	ASSERT_TRUE(saw_event("\"reason\":\"wrong xid\"") && saw_event("\"event\":\"ignored\""),
		    "foreign: logged as ignored");
	dhcpc_free(c);
}

static void test_release(void)
{
	struct dhcpc *c = client(NULL);

	dora(c, 600);
	dhcpc_release(c, r.now);
	ASSERT_TRUE(r.tx[DHCPRELEASE] == 1 && !r.last_tx.broadcast &&
		    r.last_tx.dst_be == htonl(S1) && r.last.hdr.ciaddr_be == htonl(IP(100)) &&
		    opt32(&r.last, DHO_SERVER_ID) == S1,
		    "release: RELEASE unicast to the server with ciaddr and server id");
	ASSERT_TRUE(r.removes == 1 && r.forgets == 1 && dhcpc_state(c) == DHCPC_STOPPED &&
		    dhcpc_next_deadline(c) == UINT64_MAX,
		    "release: address removed, lease forgotten, stopped");
	dhcpc_free(c);
}

static void test_json(void)
{
	struct dhcpc_event ev = { .what = "state", .from = DHCPC_INIT, .to = DHCPC_SELECTING,
				  .xid = 0xabc, .reason = "x" };
	char buf[256];

	dhcpc_event_json(&ev, 12.5, "eth0", buf, sizeof(buf));
	ASSERT_STREQ(buf, "{\"time\":12.500,\"iface\":\"eth0\",\"event\":\"state\",\"from\":\"INIT\","
		     "\"to\":\"SELECTING\",\"xid\":\"0x00000abc\",\"reason\":\"x\"}",
		     "log line format");
	ASSERT_TRUE(dhcpc_event_json(&ev, 1, "eth0", buf, 10) > 10 && strlen(buf) == 9,
		    "log line truncates safely");
}

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "--run"))
		return dhcp_client_main(argc - 2, argv + 2);

	log_set_level(LOG_LVL_ERR);
	test_dora();
	test_backoff();
	test_nak_requesting();
	test_renew_rebind_expire();
	test_init_reboot();
	test_conflict();
	test_offer_choice();
	test_server_fallback();
	test_static();
	test_nonsense_offers();
	test_nonsense_then_static();
	test_nonsense_ack();
	test_foreign();
	test_release();
	test_json();
	return tap_done();
}
