// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The DHCP engine driven directly, message by message, with a fake clock:
 * every message type, RFC 2131 4.3.2 request states, held and repeated
 * offers, DECLINE quarantine, exhaustion and recovery, reservations, rapid
 * commit, relay information echo, delivery rules, ARP probe results, and
 * that every grant/release/expiry reaches the binding hook and the log.
 * Then the same engine told which VM sent each message (struct
 * dhcp_origin), as a hostile guest would drive it: invented chaddrs,
 * INIT-REBOOT for free addresses, RELEASE/DECLINE of a peer's lease.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include "agent/core/log.h"
#include "agent/dhcp/dhcp_server.h"
#include "tests/dhcp/dhcp_test_util.h"
#include "tests/lib/tap.h"

#define NET	0xc6120000U	/* 198.18.0.0/24 */
#define SRV	(NET | 1)
#define IP(x)	(NET | (x))

struct rec_log {
	int persisted, grants, frees, quarantines;
	int bound, unbound;
	uint32_t last_vm, last_ip_be;
};

static int persist(void *ctx, const struct lease_rec *rec)
{
	struct rec_log *l = ctx;

	l->persisted++;
	l->grants += rec->kind == LEASE_REC_GRANT;
	l->frees += rec->kind == LEASE_REC_FREE;
	l->quarantines += rec->kind == LEASE_REC_QUARANTINE;
	return 0;
}

static void binding(void *ctx, uint32_t vm_id, const uint8_t mac[6], uint32_t ip_be,
		    uint64_t expiry_ms, bool bound)
{
	struct rec_log *l = ctx;

	(void)mac;
	(void)expiry_ms;
	if (bound)
		l->bound++;
	else
		l->unbound++;
	l->last_vm = vm_id;
	l->last_ip_be = ip_be;
}

static struct rec_log rl;
static struct dhcp_msg msg, rmsg;
static struct dhcp_reply rep;
static uint64_t now = 1000000;

/* Settings the next engine() gets, and what the data path binds. */
static uint32_t max_leases = 1;
static bool serve_unmanaged;
static uint32_t bound_vm, bound_ip_be;

static bool vm_holds(void *ctx, uint32_t vm_id, uint32_t ip_be)
{
	(void)ctx;
	return vm_id == bound_vm && ip_be == bound_ip_be;
}

static struct dhcp_engine *engine(uint32_t lo, uint32_t hi, bool rapid, bool probe,
				  struct dhcp_host *hosts, size_t nr_hosts)
{
	static struct dhcp_range r;
	struct dhcp_bridge_cfg c = {
		.name = "br0", .server_ip = SRV, .net = NET, .mask = 0xffffff00, .prefix = 24,
		.nr_ranges = 1, .ranges = &r, .router = SRV, .nr_dns = 1, .dns = { IP(53) },
		.domain = "example.internal", .lease_time = 600, .mtu = 1400,
		.rapid_commit = rapid, .conflict_check = probe, .offer_hold = 30,
		.decline_hold = 600, .nr_hosts = nr_hosts, .hosts = hosts,
		.max_leases_per_vm = max_leases, .serve_unmanaged = serve_unmanaged,
	};
	struct dhcp_engine_ops ops = { .ctx = &rl, .persist = persist, .binding = binding,
				       .vm_holds = vm_holds };
	struct dhcp_engine *e = NULL;

	r.lo = IP(lo);
	r.hi = IP(hi);
	memset(&rl, 0, sizeof(rl));
	if (dhcp_engine_new(&c, &ops, &e))
		return NULL;
	dhcp_engine_start(e, now);
	return e;
}

/* Send one message as VM vm (-1: no origin, chaddr decides; 0: from a port
 * RayOS does not enforce); returns the reply's message type (0: none) and
 * leaves the parsed reply in rmsg. */
static int send_from(struct dhcp_engine *e, int64_t vm, uint8_t type, const uint8_t mac[6],
		     const struct cmsg_opts *o)
{
	struct dhcp_origin origin = { .vm_id = vm < 0 ? 0 : (uint32_t)vm };

	if (client_msg(&msg, type, mac, o))
		return -1;
	if (dhcp_engine_handle_from(e, &msg, vm < 0 ? NULL : &origin, now, &rep))
		return -1;
	if (rep.tx == DHCP_TX_NONE || rep.tx == DHCP_TX_PROBE)
		return 0;
	if (dhcp_parse(&rmsg, rep.pkt, rep.len))
		return -1;
	return rmsg.type;
}

static int send_msg(struct dhcp_engine *e, uint8_t type, const uint8_t mac[6],
		    const struct cmsg_opts *o)
{
	return send_from(e, -1, type, mac, o);
}

static uint32_t yiaddr(void)
{
	return ntohl(rmsg.hdr.yiaddr_be);
}

static const uint8_t mac1[6] = { 0x52, 0x54, 0, 0, 0, 1 };
static const uint8_t mac2[6] = { 0x52, 0x54, 0, 0, 0, 2 };
static const uint8_t mac3[6] = { 0x52, 0x54, 0, 0, 0, 3 };

/* DORA, then the reply's options. */
static uint32_t dora(struct dhcp_engine *e, const uint8_t mac[6])
{
	struct cmsg_opts o = { .server_id = SRV };

	if (send_msg(e, DHCPDISCOVER, mac, NULL) != DHCPOFFER)
		return 0;
	o.req_ip = yiaddr();
	if (send_msg(e, DHCPREQUEST, mac, &o) != DHCPACK)
		return 0;
	return yiaddr();
}

static void test_dora(void)
{
	struct dhcp_engine *e = engine(100, 109, false, false, NULL, 0);
	struct cmsg_opts o = { .server_id = SRV };
	const uint8_t *v;
	size_t len;
	uint32_t ip, u32;

	ASSERT_EQ(send_msg(e, DHCPDISCOVER, mac1, NULL), DHCPOFFER, "DISCOVER -> OFFER");
	ip = yiaddr();
	ASSERT_EQ(ip, IP(100), "first pool address offered");
	ASSERT_EQ(rep.tx, DHCP_TX_UNICAST, "no broadcast flag: unicast to chaddr");
	ASSERT_EQ(ntohl(rep.dst_ip_be), IP(100), "unicast to yiaddr");
	ASSERT_TRUE(!memcmp(rep.dst_mac, mac1, 6), "unicast to chaddr");
	ASSERT_EQ(rl.persisted, 0, "an offer writes no lease");
	v = dhcp_opt_get(&rmsg, DHO_SERVER_ID, &len);
	memcpy(&u32, v ? v : (const uint8_t *)"\0\0\0\0", 4);
	ASSERT_TRUE(v && len == 4 && ntohl(u32) == SRV, "server identifier");
	v = dhcp_opt_get(&rmsg, DHO_SUBNET_MASK, &len);
	ASSERT_TRUE(v && len == 4 && v[3] == 0 && v[2] == 0xff, "subnet mask");
	ASSERT_TRUE(dhcp_opt_get(&rmsg, DHO_ROUTER, &len) && len == 4, "router");
	ASSERT_TRUE(dhcp_opt_get(&rmsg, DHO_DNS, &len) && len == 4, "dns");
	v = dhcp_opt_get(&rmsg, DHO_DOMAIN, &len);
	ASSERT_TRUE(v && len == 16 && !memcmp(v, "example.internal", 16), "domain");
	v = dhcp_opt_get(&rmsg, DHO_MTU, &len);
	ASSERT_TRUE(v && len == 2 && (v[0] << 8 | v[1]) == 1400, "mtu");
	ASSERT_TRUE(rmsg.has_lease_time && rmsg.lease_time == 600, "lease time");
	v = dhcp_opt_get(&rmsg, DHO_T1, &len);
	ASSERT_TRUE(v && len == 4 && v[3] == 44 && v[2] == 1, "T1 = half the lease (300)");
	ASSERT_TRUE(dhcp_opt_get(&rmsg, DHO_T2, &len) && len == 4, "T2");

	ASSERT_EQ(send_msg(e, DHCPDISCOVER, mac1, NULL), DHCPOFFER, "retransmitted DISCOVER");
	ASSERT_EQ(yiaddr(), ip, "same offer again");
	ASSERT_EQ(send_msg(e, DHCPDISCOVER, mac2, NULL), DHCPOFFER, "second client");
	ASSERT_EQ(yiaddr(), IP(101), "held offer is not given to another client");

	o.req_ip = ip;
	o.broadcast = true;
	ASSERT_EQ(send_msg(e, DHCPREQUEST, mac1, &o), DHCPACK, "REQUEST (selecting) -> ACK");
	ASSERT_EQ(yiaddr(), ip, "ACK of the offered address");
	ASSERT_EQ(rep.tx, DHCP_TX_BROADCAST, "broadcast flag honoured");
	ASSERT_TRUE(rep.commit, "ACK waits for the lease commit");
	ASSERT_EQ(rl.grants, 1, "grant persisted before the ACK");
	ASSERT_EQ(rl.bound, 1, "binding hook on grant");
	ASSERT_EQ(rl.last_ip_be, htonl(ip), "binding hook carries the address");

	/* RENEWING: unicast, ciaddr set, no server id / requested ip. */
	now += 300000;
	o = (struct cmsg_opts){ .ciaddr = ip };
	ASSERT_EQ(send_msg(e, DHCPREQUEST, mac1, &o), DHCPACK, "RENEWING -> ACK");
	ASSERT_EQ(rep.tx, DHCP_TX_UNICAST, "renewal ACK unicast to ciaddr");
	ASSERT_EQ(ntohl(rep.dst_ip_be), ip, "to ciaddr");
	ASSERT_EQ(ntohl(rmsg.hdr.ciaddr_be), ip, "ACK echoes ciaddr");
	ASSERT_EQ(rl.grants, 2, "renewal persisted");
	ASSERT_EQ(rl.bound, 2, "binding hook on renewal");
	/* REBINDING: the same from the server's side, broadcast. */
	o.broadcast = true;
	ASSERT_EQ(send_msg(e, DHCPREQUEST, mac1, &o), DHCPACK, "REBINDING -> ACK");

	/* RELEASE frees the address at once. */
	o = (struct cmsg_opts){ .ciaddr = ip, .server_id = SRV };
	ASSERT_EQ(send_msg(e, DHCPRELEASE, mac1, &o), 0, "RELEASE: no reply");
	ASSERT_EQ(rl.unbound, 1, "binding hook on release");
	ASSERT_EQ(rl.frees, 1, "release persisted");
	/* The released client comes back to its old address. */
	ASSERT_EQ(dora(e, mac1), ip, "released client gets its old address back");
	dhcp_engine_free(e);
}

static void test_request_states(void)
{
	struct dhcp_engine *e = engine(100, 109, false, false, NULL, 0);
	struct cmsg_opts o = { 0 };
	uint32_t ip1 = dora(e, mac1), ip2 = dora(e, mac2);

	ASSERT_TRUE(ip1 && ip2 && ip1 != ip2, "two leases");
	/* INIT-REBOOT: requested ip, no server id, ciaddr 0. */
	o.req_ip = ip1;
	ASSERT_EQ(send_msg(e, DHCPREQUEST, mac1, &o), DHCPACK, "INIT-REBOOT own address -> ACK");
	o.req_ip = IP(105);
	ASSERT_EQ(send_msg(e, DHCPREQUEST, mac1, &o), DHCPNAK, "INIT-REBOOT wrong address -> NAK");
	ASSERT_EQ(rep.tx, DHCP_TX_BROADCAST, "NAK broadcast");
	ASSERT_TRUE(!rmsg.hdr.yiaddr_be && !rmsg.has_lease_time, "NAK carries no address");
	o.req_ip = 0xc6130005;
	ASSERT_EQ(send_msg(e, DHCPREQUEST, mac3, &o), DHCPNAK, "INIT-REBOOT other subnet -> NAK");
	o.req_ip = ip2;
	ASSERT_EQ(send_msg(e, DHCPREQUEST, mac3, &o), DHCPNAK,
		  "INIT-REBOOT of another client's address -> NAK");
	o.req_ip = IP(107);
	ASSERT_EQ(send_msg(e, DHCPREQUEST, mac3, &o), DHCPNAK,
		  "INIT-REBOOT of a free pool address with no record -> NAK, never a blind ACK");
	o = (struct cmsg_opts){ .server_id = SRV, .req_ip = IP(108) };
	ASSERT_EQ(send_msg(e, DHCPREQUEST, mac3, &o), DHCPNAK,
		  "SELECTING an address we never offered -> NAK");
	o = (struct cmsg_opts){ .ciaddr = IP(108) };
	ASSERT_EQ(send_msg(e, DHCPREQUEST, mac3, &o), DHCPNAK,
		  "RENEWING an address with no record -> NAK");
	ASSERT_EQ(dhcp_engine_stats(e)->no_record, 6, "each of those six NAKs counted as no record");
	ASSERT_EQ(dhcp_engine_pool_used(e), 2, "no address taken by them");
	o = (struct cmsg_opts){ .ciaddr = ip2 };
	ASSERT_EQ(send_msg(e, DHCPREQUEST, mac1, &o), DHCPNAK, "RENEWING someone else's address -> NAK");
	o.giaddr = IP(254);
	ASSERT_EQ(send_msg(e, DHCPREQUEST, mac1, &o), DHCPNAK, "relayed NAK");
	ASSERT_EQ(rep.tx, DHCP_TX_RELAY, "relayed NAK goes to giaddr");
	ASSERT_TRUE(ntohs(rmsg.hdr.flags_be) & DHCP_FLAG_BROADCAST, "relayed NAK sets the broadcast bit");

	/* SELECTING another server: our offer is withdrawn. */
	ASSERT_EQ(send_msg(e, DHCPDISCOVER, mac3, NULL), DHCPOFFER, "offer to a client");
	o = (struct cmsg_opts){ .server_id = SRV + 100, .req_ip = yiaddr() };
	ASSERT_EQ(send_msg(e, DHCPREQUEST, mac3, &o), 0, "REQUEST for another server: silence");

	/* INFORM: ACK with configuration, no lease, never NAK. */
	o = (struct cmsg_opts){ .ciaddr = IP(200) };
	ASSERT_EQ(send_msg(e, DHCPINFORM, mac3, &o), DHCPACK, "INFORM -> ACK");
	ASSERT_TRUE(!rmsg.hdr.yiaddr_be && !rmsg.has_lease_time, "INFORM ACK: no address, no lease time");
	ASSERT_TRUE(dhcp_opt_get(&rmsg, DHO_ROUTER, &(size_t){ 0 }) != NULL, "INFORM ACK: options");
	ASSERT_EQ(rep.tx, DHCP_TX_UNICAST, "INFORM ACK unicast to ciaddr");
	ASSERT_EQ(ntohl(rep.dst_ip_be), IP(200), "to ciaddr");
	ASSERT_TRUE(!rep.commit, "INFORM ACK needs no commit");
	dhcp_engine_free(e);
}

static void test_decline_exhaustion(void)
{
	struct dhcp_engine *e = engine(100, 102, false, false, NULL, 0);
	struct cmsg_opts o = { .server_id = SRV };
	uint32_t ip1, ip2, ip3;

	ip1 = dora(e, mac1);
	o.req_ip = ip1;
	ASSERT_EQ(send_msg(e, DHCPDECLINE, mac1, &o), 0, "DECLINE: no reply");
	ASSERT_EQ(rl.quarantines, 1, "quarantine persisted");
	ASSERT_EQ(rl.unbound, 1, "binding ended on decline");
	ip2 = dora(e, mac1);
	ASSERT_TRUE(ip2 && ip2 != ip1, "declined address is not offered again");
	ip3 = dora(e, mac2);
	ASSERT_TRUE(ip3 && ip3 != ip1 && ip3 != ip2, "third address");
	ASSERT_EQ(send_msg(e, DHCPDISCOVER, mac3, NULL), 0, "pool exhausted: no offer");
	ASSERT_EQ(dhcp_engine_stats(e)->exhausted, 1, "exhaustion counted");
	o = (struct cmsg_opts){ .ciaddr = ip3, .server_id = SRV };
	send_msg(e, DHCPRELEASE, mac2, &o);
	ASSERT_EQ(dora(e, mac3), ip3, "release makes room again");
	/* Expiry frees addresses too (and the quarantine ends). */
	now += 601 * 1000;
	dhcp_engine_tick(e, now);
	ASSERT_EQ(rl.unbound, 4, "binding hook on expiry (two leases)");
	ASSERT_TRUE(dora(e, mac2), "after expiry a new client gets an address");
	ASSERT_EQ(dhcp_engine_pool_used(e), 1, "expired leases and quarantine left the pool");
	dhcp_engine_free(e);
}

static void test_reservation_rapid_relay(void)
{
	struct dhcp_host hosts[2] = {
		{ .mac = { 0x52, 0x54, 0, 0, 0, 1 }, .vm_id = 11, .ip = IP(20) },
		{ .mac = { 0x52, 0x54, 0, 0, 0, 2 }, .vm_id = 12, .ip = 0 },
	};
	struct dhcp_engine *e = engine(20, 21, true, false, hosts, 2);
	struct cmsg_opts o = { 0 };
	const uint8_t *v;
	size_t len;

	ASSERT_EQ(dora(e, mac1), IP(20), "reservation: the VM's static address");
	ASSERT_EQ(rl.last_vm, 11, "binding hook names the VM");
	ASSERT_EQ(dora(e, mac2), IP(21), "pool VM skips the reserved address");
	ASSERT_EQ(rl.last_vm, 12, "pool VM named too");
	ASSERT_EQ(send_msg(e, DHCPDISCOVER, mac3, NULL), 0, "reserved address never goes to others");
	o.req_ip = IP(21);
	ASSERT_EQ(send_msg(e, DHCPREQUEST, mac1, &o), DHCPNAK, "reserved VM asking for another address -> NAK");
	dhcp_engine_free(e);

	e = engine(100, 109, true, false, NULL, 0);
	o = (struct cmsg_opts){ .rapid = true, .relay = "\x01\x04port", .giaddr = IP(254),
				.client_id = "\x01" "abcdef" };
	ASSERT_EQ(send_msg(e, DHCPDISCOVER, mac1, &o), DHCPACK, "rapid commit: DISCOVER -> ACK");
	ASSERT_TRUE(dhcp_opt_get(&rmsg, DHO_RAPID_COMMIT, &len) && len == 0, "ACK carries rapid commit");
	ASSERT_TRUE(rep.commit && rl.grants == 1, "rapid commit lease persisted");
	v = dhcp_opt_get(&rmsg, DHO_RELAY_INFO, &len);
	ASSERT_TRUE(v && len == 6 && !memcmp(v, "\x01\x04port", 6), "option 82 echoed");
	ASSERT_EQ(rmsg.hdr.giaddr_be, htonl(IP(254)), "giaddr kept");
	ASSERT_EQ(rep.tx, DHCP_TX_RELAY, "relayed reply to giaddr");
	ASSERT_EQ(rep.dst_port, 67, "to the relay's server port");
	v = dhcp_opt_get(&rmsg, DHO_CLIENT_ID, &len);
	ASSERT_TRUE(v && len == 7, "client identifier echoed (RFC 6842)");
	/* The relay's last option is 82: RFC 3046 wants it last before END. */
	o = (struct cmsg_opts){ .giaddr = 0xc6130001 };
	ASSERT_EQ(send_msg(e, DHCPDISCOVER, mac2, &o), 0, "relay from a foreign subnet ignored");
	ASSERT_EQ(send_msg(e, DHCPDISCOVER, mac2, NULL), DHCPOFFER,
		  "without the client asking, no rapid commit");
	dhcp_engine_free(e);
}

static void test_probe(void)
{
	struct dhcp_engine *e = engine(100, 109, false, true, NULL, 0);
	uint32_t first;

	ASSERT_EQ(send_msg(e, DHCPDISCOVER, mac1, NULL), 0, "conflict check: no offer yet");
	ASSERT_EQ(rep.tx, DHCP_TX_PROBE, "probe requested");
	first = ntohl(rep.probe_ip_be);
	ASSERT_EQ(send_msg(e, DHCPDISCOVER, mac2, NULL), 0, "other clients are not stalled");
	ASSERT_TRUE(rep.tx == DHCP_TX_PROBE && ntohl(rep.probe_ip_be) != first,
		    "second client probes another address");
	dhcp_engine_probe_result(e, htonl(first), true, now);
	ASSERT_EQ(dhcp_engine_stats(e)->conflicts, 1, "conflict counted");
	ASSERT_EQ(send_msg(e, DHCPDISCOVER, mac1, NULL), 0, "asked again after a conflict");
	ASSERT_TRUE(rep.tx == DHCP_TX_PROBE && ntohl(rep.probe_ip_be) != first,
		    "the conflicting address is skipped");
	dhcp_engine_probe_result(e, rep.probe_ip_be, false, now);
	ASSERT_EQ(send_msg(e, DHCPDISCOVER, mac1, NULL), DHCPOFFER, "probe passed: OFFER");
	ASSERT_TRUE(yiaddr() != first, "offer avoids the conflicting address");
	dhcp_engine_free(e);
}

static void test_load(void)
{
	struct dhcp_engine *e = engine(100, 109, false, false, NULL, 0);
	struct lease_rec r = { .kind = LEASE_REC_GRANT, .expiry_ms = now + 100000 };
	struct cmsg_opts o = { 0 };

	dhcp_engine_free(e);
	e = engine(100, 109, false, false, NULL, 0);
	memcpy(r.mac, mac1, 6);
	r.ip_be = htonl(IP(105));
	dhcp_engine_load(e, &r, now);
	memcpy(r.mac, mac2, 6);
	r.ip_be = htonl(IP(106));
	r.expiry_ms = now - 1;
	dhcp_engine_load(e, &r, now);
	dhcp_engine_start(e, now);
	ASSERT_EQ(rl.bound, 1, "restart announces the live lease only");
	o.ciaddr = IP(105);
	ASSERT_EQ(send_msg(e, DHCPREQUEST, mac1, &o), DHCPACK, "renewal after restart -> ACK");
	ASSERT_EQ(send_msg(e, DHCPDISCOVER, mac3, NULL), DHCPOFFER, "new client after restart");
	ASSERT_TRUE(yiaddr() != IP(105), "a replayed lease is never handed out twice");
	dhcp_engine_free(e);
}

static void test_malformed(void)
{
	struct dhcp_engine *e = engine(100, 109, false, false, NULL, 0);

	client_msg(&msg, DHCPDISCOVER, mac1, NULL);
	msg.hdr.hlen = 16;
	dhcp_engine_handle(e, &msg, now, &rep);
	ASSERT_EQ(rep.tx, DHCP_TX_NONE, "hlen 16 ignored");
	client_msg(&msg, DHCPDISCOVER, mac1, NULL);
	msg.hdr.op = BOOTREPLY;
	dhcp_engine_handle(e, &msg, now, &rep);
	ASSERT_EQ(rep.tx, DHCP_TX_NONE, "BOOTREPLY ignored");
	client_msg(&msg, DHCPOFFER, mac1, NULL);
	dhcp_engine_handle(e, &msg, now, &rep);
	ASSERT_EQ(rep.tx, DHCP_TX_NONE, "OFFER from a client ignored");
	client_msg(&msg, DHCPREQUEST, mac1, NULL);
	dhcp_engine_handle(e, &msg, now, &rep);
	ASSERT_EQ(rep.tx, DHCP_TX_NONE, "REQUEST with nothing to request ignored");
	dhcp_engine_free(e);
}


/* DORA as VM vm. */
static uint32_t dora_from(struct dhcp_engine *e, uint32_t vm, const uint8_t mac[6])
{
	struct cmsg_opts o = { .server_id = SRV };

	if (send_from(e, vm, DHCPDISCOVER, mac, NULL) != DHCPOFFER)
		return 0;
	o.req_ip = yiaddr();
	if (send_from(e, vm, DHCPREQUEST, mac, &o) != DHCPACK)
		return 0;
	return yiaddr();
}

static void random_mac(uint8_t mac[6], unsigned int seed)
{
	mac[0] = 0x02;
	mac[1] = (uint8_t)(seed >> 24);
	mac[2] = (uint8_t)(seed >> 16);
	mac[3] = (uint8_t)(seed >> 8);
	mac[4] = (uint8_t)seed;
	mac[5] = (uint8_t)(seed * 7);
}

/* Guest A (VM 1) attacks guest B (VM 2) on a ten-address pool. */
static void test_starvation(void)
{
	struct dhcp_host hosts[2] = {
		{ .mac = { 0x52, 0x54, 0, 0, 0, 1 }, .vm_id = 1 },
		{ .mac = { 0x52, 0x54, 0, 0, 0, 2 }, .vm_id = 2 },
	};
	struct dhcp_engine *e = engine(100, 109, false, false, hosts, 2);
	struct cmsg_opts o = { 0 };
	uint8_t mac[6];
	uint32_t first = 0, ip_b;
	int offers = 0, acks = 0;

	/* The tap program pins a MAC-locked VM's chaddr; a VM without a MAC
	 * in the policy (VM 3) can write any.  Either way one lease. */
	for (unsigned int i = 0; i < 50; i++) {
		random_mac(mac, i + 1);
		if (send_from(e, 3, DHCPDISCOVER, mac, NULL) == DHCPOFFER) {
			offers++;
			if (!first)
				first = yiaddr();
			else if (yiaddr() != first)
				break;
		}
	}
	ASSERT_EQ(offers, 50, "50 DISCOVERs with invented chaddrs from one VM: 50 offers");
	ASSERT_EQ(dhcp_engine_pool_used(e), 1, "...all of one address: one lease per VM");
	for (unsigned int i = 0; i < 10; i++) {
		random_mac(mac, 100 + i);
		o = (struct cmsg_opts){ .req_ip = IP(100 + i) };
		acks += send_from(e, 3, DHCPREQUEST, mac, &o) == DHCPACK;
	}
	ASSERT_EQ(acks, 1, "INIT-REBOOT for every pool address: only its own offer is ACKed");
	ASSERT_EQ(dhcp_engine_pool_used(e), 1, "the pool is not starved");
	ip_b = dora_from(e, 2, mac2);
	ASSERT_TRUE(ip_b != 0, "the other guest completes a DORA");
	ASSERT_EQ(rl.last_vm, 2, "...and its binding names it");

	/* Forged RELEASE and DECLINE for B's lease, from A with B's MAC. */
	o = (struct cmsg_opts){ .ciaddr = ip_b, .server_id = SRV };
	ASSERT_EQ(send_from(e, 3, DHCPRELEASE, mac2, &o), 0, "forged RELEASE: no reply");
	o = (struct cmsg_opts){ .req_ip = ip_b, .server_id = SRV };
	ASSERT_EQ(send_from(e, 3, DHCPDECLINE, mac2, &o), 0, "forged DECLINE: no reply");
	ASSERT_EQ(rl.unbound, 0, "B's binding never ended");
	ASSERT_EQ(rl.quarantines, 0, "B's address never quarantined");
	o = (struct cmsg_opts){ .ciaddr = ip_b };
	ASSERT_EQ(send_from(e, 2, DHCPREQUEST, mac2, &o), DHCPACK, "B renews its address");
	ASSERT_EQ(yiaddr(), ip_b, "...the same one");
	ASSERT_EQ(dhcp_engine_stats(e)->foreign_chaddr, 0, "VM 3 has no MAC: chaddr not checked");

	/* A MAC-locked VM writing another VM's MAC is refused outright. */
	ASSERT_EQ(send_from(e, 1, DHCPDISCOVER, mac2, NULL), 0, "VM 1 with VM 2's chaddr: ignored");
	ASSERT_EQ(dhcp_engine_stats(e)->foreign_chaddr, 1, "counted as foreign chaddr");

	/* A guest's own DECLINEs quarantine at most two addresses. */
	for (int i = 0; i < 4; i++) {
		uint32_t ip = dora_from(e, 1, mac1);

		o = (struct cmsg_opts){ .req_ip = ip, .server_id = SRV };
		send_from(e, 1, DHCPDECLINE, mac1, &o);
	}
	ASSERT_EQ(rl.quarantines, 2, "four DECLINEs from one VM: two quarantines");
	ASSERT_EQ(dhcp_engine_stats(e)->decline_limited, 2, "the rest freed without one");
	ASSERT_EQ(dhcp_engine_pool_used(e), 4, "pool: VM 3, VM 2 and two quarantines");
	dhcp_engine_free(e);
}

static void test_origins(void)
{
	struct dhcp_host hosts[1] = { { .mac = { 0x52, 0x54, 0, 0, 0, 1 }, .vm_id = 1 } };
	struct dhcp_engine *e = engine(100, 109, false, false, hosts, 1);
	struct cmsg_opts o = { 0 };
	uint32_t ip;

	ASSERT_EQ(send_from(e, 0, DHCPDISCOVER, mac3, NULL), 0,
		  "from a port RayOS does not enforce: ignored by default");
	ASSERT_EQ(dhcp_engine_stats(e)->unmanaged, 1, "counted as unmanaged");
	dhcp_engine_free(e);

	serve_unmanaged = true;
	e = engine(100, 109, false, false, hosts, 1);
	ASSERT_TRUE(dora_from(e, 0, mac3) != 0, "unmanaged_clients serve: a MAC client gets one");
	ASSERT_EQ(send_from(e, 0, DHCPDISCOVER, mac1, NULL), 0,
		  "...but not with the MAC of a VM of the policy");
	ASSERT_EQ(dhcp_engine_stats(e)->foreign_chaddr, 1, "counted as foreign chaddr");
	dhcp_engine_free(e);
	serve_unmanaged = false;

	/* Several leases per VM when the bridge allows it. */
	max_leases = 2;
	e = engine(100, 109, false, false, NULL, 0);
	ASSERT_TRUE(dora_from(e, 5, mac1) && dora_from(e, 5, mac2), "max 2: two chaddrs, two leases");
	ASSERT_EQ(send_from(e, 5, DHCPDISCOVER, mac3, NULL), 0, "a third chaddr: no offer");
	ASSERT_EQ(dhcp_engine_stats(e)->vm_limit, 1, "counted against the VM's limit");
	o = (struct cmsg_opts){ .ciaddr = yiaddr(), .server_id = SRV };
	dhcp_engine_free(e);
	max_leases = 1;

	/* Lost lease database: the data path's binding vouches for the VM. */
	e = engine(100, 109, false, false, NULL, 0);
	o = (struct cmsg_opts){ .ciaddr = IP(104) };
	ASSERT_EQ(send_from(e, 6, DHCPREQUEST, mac1, &o), DHCPNAK,
		  "RENEWING with no record and no binding -> NAK");
	bound_vm = 6;
	bound_ip_be = htonl(IP(104));
	ASSERT_EQ(send_from(e, 6, DHCPREQUEST, mac1, &o), DHCPACK,
		  "RENEWING the address the data path binds to the VM -> ACK");
	ASSERT_EQ(send_from(e, 7, DHCPREQUEST, mac2, &o), DHCPNAK,
		  "another VM asking for it -> NAK");
	bound_vm = 0;

	/* Replay: a record names its VM; the VM finds its lease whatever it
	 * writes as chaddr. */
	dhcp_engine_free(e);
	e = engine(100, 109, false, false, NULL, 0);
	{
		struct lease_rec r = { .kind = LEASE_REC_GRANT, .expiry_ms = now + 100000,
				       .vm_id = 9, .ip_be = htonl(IP(103)) };

		memcpy(r.mac, mac1, 6);
		dhcp_engine_load(e, &r, now);
	}
	ip = dora_from(e, 9, mac2);
	ASSERT_EQ(ip, IP(103), "a replayed lease is its VM's, under any chaddr");
	ASSERT_EQ(dhcp_engine_pool_used(e), 1, "and still one lease");
	dhcp_engine_free(e);
}

int main(void)
{
	log_set_level(LOG_LVL_ERR);
	test_dora();
	test_request_states();
	test_decline_exhaustion();
	test_reservation_rapid_relay();
	test_probe();
	test_load();
	test_malformed();
	test_starvation();
	test_origins();
	return tap_done();
}
