// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * libFuzzer target: the DHCP parser on arbitrary bytes, then, for what
 * parses, the server engine on the message (replies re-parsed), the
 * IPv4/UDP unwrapper and the ARP parser.  Built and run by
 * tests/dhcp/test_dhcp_fuzz.sh with -fsanitize=fuzzer,address,undefined.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/core/log.h"
#include "agent/dhcp/dhcp_proto.h"
#include "agent/dhcp/dhcp_server.h"

static struct dhcp_engine *eng;
static struct dhcp_msg msg, reply_msg;
static struct dhcp_reply reply;
static uint64_t now = 1000000;

static int persist(void *ctx, const struct lease_rec *rec)
{
	(void)ctx;
	(void)rec;
	return 0;
}

static void setup(void)
{
	static struct dhcp_range r = { 0xc6120064, 0xc6120067 };	/* 4 addresses */
	static struct dhcp_host h = { .mac = { 0x52, 0x54, 0, 0, 0, 1 }, .vm_id = 1,
				      .ip = 0xc6120005 };
	struct dhcp_bridge_cfg c = {
		.name = "br0", .server_ip = 0xc6120001, .net = 0xc6120000, .mask = 0xffffff00,
		.prefix = 24, .nr_ranges = 1, .ranges = &r, .router = 0xc6120001,
		.lease_time = 600, .rapid_commit = true, .conflict_check = true,
		.offer_hold = 30, .decline_hold = 60, .nr_hosts = 1, .hosts = &h,
		.max_leases_per_vm = 2, .serve_unmanaged = true,
	};
	struct dhcp_engine_ops ops = { .persist = persist };

	log_set_level(LOG_LVL_ERR);
	if (dhcp_engine_new(&c, &ops, &eng))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *p;
	size_t plen;
	uint32_t s, d;
	uint16_t sp, dp;
	struct arp_pkt a;

	if (!eng)
		setup();
	if (dhcp_parse(&msg, data, size) == 0) {
		/* Vary time so offers, leases and quarantines expire too. */
		now += size;
		dhcp_engine_tick(eng, now);
		/* Who sent it, from the xid's low bits: no origin (chaddr
		 * decides), an unmanaged port, or one of three VMs. */
		struct dhcp_origin origin = { .vm_id = msg.hdr.xid_be >> 24 & 3 };
		bool by_chaddr = (msg.hdr.xid_be >> 26 & 1) != 0;

		if (dhcp_engine_handle_from(eng, &msg, by_chaddr ? NULL : &origin, now,
					    &reply) == 0) {
			if (reply.tx == DHCP_TX_PROBE)
				dhcp_engine_probe_result(eng, reply.probe_ip_be, size & 1, now);
			else if (reply.tx != DHCP_TX_NONE && dhcp_parse(&reply_msg, reply.pkt, reply.len))
				abort();	/* our own reply must parse */
		}
	}
	dhcp_ipudp_unwrap(data, size, &p, &plen, &s, &d, &sp, &dp);
	arp_parse(&a, data, size);
	return 0;
}
