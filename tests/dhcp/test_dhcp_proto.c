// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * DHCP wire format: builder/parser round trips, RFC 3396 long options and
 * option overload, and malformed packets (truncated, no magic cookie, bad
 * option lengths, overlong) that must be refused without reading past the
 * buffer; IPv4/UDP framing and ARP.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include "agent/dhcp/dhcp_proto.h"
#include "tests/dhcp/dhcp_test_util.h"
#include "tests/lib/tap.h"

static struct dhcp_msg m;
static const uint8_t mac[6] = { 0x52, 0x54, 0, 1, 2, 3 };

/* A minimal valid request with raw options appended after the cookie. */
static size_t raw_pkt(uint8_t *buf, const uint8_t *opts, size_t olen)
{
	uint32_t cookie = htonl(DHCP_MAGIC_COOKIE);

	memset(buf, 0, DHCP_OPTIONS_OFF);
	buf[0] = BOOTREQUEST;
	buf[1] = 1;
	buf[2] = 6;
	memcpy(buf + 28, mac, 6);
	memcpy(buf + DHCP_FIXED_LEN, &cookie, 4);
	memcpy(buf + DHCP_OPTIONS_OFF, opts, olen);
	return DHCP_OPTIONS_OFF + olen;
}

/* Parse from a heap copy of exactly len bytes, so ASan sees any overread. */
static int parse_exact(const uint8_t *buf, size_t len)
{
	uint8_t *p = malloc(len ? len : 1);
	int rc;

	memcpy(p, buf, len);
	rc = dhcp_parse(&m, p, len);
	free(p);
	return rc;
}

static void test_roundtrip(void)
{
	struct cmsg_opts o = { .req_ip = 0xc6120005, .server_id = 0xc6120001, .rapid = true,
			       .relay = "\x01\x03" "abc", .client_id = "\x01" "xyz", .xid = 0xdeadbeef };
	const uint8_t *v;
	size_t len;

	ASSERT_EQ(client_msg(&m, DHCPREQUEST, mac, &o), 0, "built request parses");
	ASSERT_EQ(m.type, DHCPREQUEST, "type");
	ASSERT_EQ(ntohl(m.hdr.xid_be), 0xdeadbeef, "xid");
	ASSERT_TRUE(!memcmp(m.hdr.chaddr, mac, 6), "chaddr");
	ASSERT_TRUE(m.has_req_ip && ntohl(m.req_ip_be) == 0xc6120005, "requested address");
	ASSERT_TRUE(m.has_server_id && ntohl(m.server_id_be) == 0xc6120001, "server id");
	ASSERT_TRUE(m.rapid_commit, "rapid commit");
	v = dhcp_opt_get(&m, DHO_RELAY_INFO, &len);
	ASSERT_TRUE(v && len == 5 && !memcmp(v, "\x01\x03" "abc", 5), "option 82 bytes");
	ASSERT_TRUE(dhcp_opt_get(&m, DHO_HOSTNAME, &len) == NULL && len == 0, "absent option");
}

static void test_long_and_overload(void)
{
	uint8_t buf[2048], big[600], opts[700];
	struct dhcp_builder b;
	struct dhcp_hdr h = { .op = BOOTREQUEST, .htype = 1, .hlen = 6 };
	const uint8_t *v;
	size_t len, i;
	int n;

	for (i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)i;
	dhcp_build_init(&b, buf, sizeof(buf), &h);
	dhcp_build_opt_u8(&b, DHO_MSG_TYPE, DHCPDISCOVER);
	dhcp_build_opt(&b, 224, big, sizeof(big));
	n = dhcp_build_finish(&b);
	ASSERT_TRUE(n > 0, "600-byte option built (split in three)");
	ASSERT_EQ(parse_exact(buf, (size_t)n), 0, "long option parses");
	v = dhcp_opt_get(&m, 224, &len);
	ASSERT_TRUE(v && len == sizeof(big) && !memcmp(v, big, len), "RFC 3396 concatenation");

	dhcp_build_init(&b, buf, 400, &h);
	dhcp_build_opt(&b, 224, big, sizeof(big));
	ASSERT_EQ(dhcp_build_finish(&b), -EMSGSIZE, "builder refuses what does not fit");

	/* Overload: options in file and sname, concatenated options-file-sname. */
	n = 0;
	opts[n++] = DHO_MSG_TYPE; opts[n++] = 1; opts[n++] = DHCPDISCOVER;
	opts[n++] = DHO_OVERLOAD; opts[n++] = 1; opts[n++] = 3;
	opts[n++] = 224; opts[n++] = 2; opts[n++] = 'a'; opts[n++] = 'b';
	opts[n++] = DHO_END;
	len = raw_pkt(buf, opts, (size_t)n);
	memcpy(buf + 108, "\xe0\x02" "cd" "\x0c\x03" "vm1" "\xff", 10);	/* file */
	memcpy(buf + 44, "\xe0\x01" "e" "\xff", 4);			/* sname */
	ASSERT_EQ(parse_exact(buf, len), 0, "overloaded message parses");
	v = dhcp_opt_get(&m, 224, &len);
	ASSERT_TRUE(v && len == 5 && !memcmp(v, "abcde", 5), "options, file, sname order");
	v = dhcp_opt_get(&m, DHO_HOSTNAME, &len);
	ASSERT_TRUE(v && len == 3 && !memcmp(v, "vm1", 3), "option from the file field");

	memcpy(buf + 108, "\xe0\x09" "cd", 4);	/* runs past the file field */
	len = raw_pkt(buf, opts, (size_t)n);
	memcpy(buf + 108, "\xe0\x7f" "cd", 4);
	ASSERT_EQ(parse_exact(buf, len), -EBADMSG, "option past the end of the file field");
	memset(buf + 108, 0, 128);
	memcpy(buf + 108, "\x34\x01\x01\xff", 4);
	ASSERT_EQ(parse_exact(buf, len), -EBADMSG, "overload inside the file field");
}

static void test_malformed(void)
{
	static const struct { const char *name; const char *opts; size_t len; } cases[] = {
		{ "option length past the end", "\x35\x01\x01\x0c\x10" "ab", 7 },
		{ "length byte missing", "\x35\x01\x01\x0c", 4 },
		{ "message type of length 2", "\x35\x02\x01\x01\xff", 5 },
		{ "message type 0", "\x35\x01\x00\xff", 4 },
		{ "requested address of length 3", "\x35\x01\x03\x32\x03\x01\x02\x03\xff", 9 },
		{ "server id of length 5", "\x35\x01\x03\x36\x05\x01\x02\x03\x04\x05\xff", 11 },
		{ "lease time of length 2", "\x35\x01\x03\x33\x02\x01\x02\xff", 8 },
		{ "max message size of length 1", "\x35\x01\x01\x39\x01\x01\xff", 7 },
		{ "client id of length 1", "\x35\x01\x01\x3d\x01\x01\xff", 7 },
		{ "overload value 4", "\x35\x01\x01\x34\x01\x04\xff", 7 },
		{ "overload of length 2", "\x35\x01\x01\x34\x02\x01\x01\xff", 8 },
		{ "overload twice", "\x35\x01\x01\x34\x01\x01\x34\x01\x01\xff", 10 },
	};
	uint8_t buf[DHCP_MAX_LEN + 16];
	size_t i, len;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		len = raw_pkt(buf, (const uint8_t *)cases[i].opts, cases[i].len);
		ASSERT_EQ(parse_exact(buf, len), -EBADMSG, cases[i].name);
	}
	len = raw_pkt(buf, (const uint8_t *)"\x35\x01\x01\xff", 4);
	ASSERT_EQ(parse_exact(buf, len), 0, "valid base packet");
	ASSERT_EQ(parse_exact(buf, len - 4), 0, "no options at all is still a message (BOOTP)");
	ASSERT_EQ(m.type, 0, "BOOTP: no type");
	for (i = 0; i < DHCP_MIN_LEN; i += 37) {
		if (!tap_ok(parse_exact(buf, i) == -EBADMSG, "truncated to %zu bytes refused", i))
			break;
	}
	ASSERT_EQ(parse_exact(buf, DHCP_MIN_LEN - 1), -EBADMSG, "one byte short of the cookie");
	len = raw_pkt(buf, (const uint8_t *)"\x35\x01\x01", 3);	/* no END */
	ASSERT_EQ(parse_exact(buf, len), 0, "missing END tolerated");
	buf[DHCP_FIXED_LEN] = 0x64;
	ASSERT_EQ(parse_exact(buf, len), -EBADMSG, "missing magic cookie");
	ASSERT_STREQ(m.err, "no DHCP magic cookie", "reason given");
	len = raw_pkt(buf, (const uint8_t *)"\x35\x01\x01", 3);
	buf[2] = 17;
	ASSERT_EQ(parse_exact(buf, len), -EBADMSG, "hlen 17");
	memset(buf, 0, sizeof(buf));
	len = raw_pkt(buf, (const uint8_t *)"\x35\x01\x01", 3);
	ASSERT_EQ(parse_exact(buf, DHCP_MAX_LEN + 1), -EMSGSIZE, "overlong message refused");
	/* Padding all the way: many pads, no END. */
	len = raw_pkt(buf, (const uint8_t *)"", 0);
	ASSERT_EQ(parse_exact(buf, DHCP_MAX_LEN), 0, "a maximal all-pad message parses");
}

static void test_framing(void)
{
	uint8_t frame[600], payload[300];
	const uint8_t *p;
	size_t plen;
	uint32_t s, d;
	uint16_t sp, dp;
	struct arp_pkt a;
	uint8_t arp[ARP_PKT_LEN];
	int n;

	memset(payload, 0x5a, sizeof(payload));
	n = dhcp_ipudp_wrap(frame, sizeof(frame), htonl(0xc6120001), htonl(0xc6120064), 67, 68,
			    payload, sizeof(payload));
	ASSERT_EQ(n, 328, "IPv4+UDP frame length");
	ASSERT_EQ(dhcp_ipudp_unwrap(frame, (size_t)n, &p, &plen, &s, &d, &sp, &dp), 0, "unwraps");
	ASSERT_TRUE(plen == 300 && sp == 67 && dp == 68 && ntohl(d) == 0xc6120064, "fields");
	frame[8] ^= 1;
	ASSERT_EQ(dhcp_ipudp_unwrap(frame, (size_t)n, &p, &plen, &s, &d, &sp, &dp), -EBADMSG,
		  "bad IP checksum refused");
	frame[8] ^= 1;
	ASSERT_EQ(dhcp_ipudp_unwrap(frame, 40, &p, &plen, &s, &d, &sp, &dp), -EBADMSG,
		  "frame shorter than its total length refused");
	ASSERT_EQ(dhcp_ipudp_wrap(frame, 100, 0, 0, 67, 68, payload, sizeof(payload)), -EMSGSIZE,
		  "wrap refuses a small buffer");
	arp_build(arp, 1, mac, 0, (const uint8_t[6]){ 0 }, htonl(0xc6120064));
	ASSERT_EQ(arp_parse(&a, arp, sizeof(arp)), 0, "ARP probe parses");
	ASSERT_TRUE(a.op == 1 && a.spa_be == 0 && ntohl(a.tpa_be) == 0xc6120064, "probe fields");
	ASSERT_EQ(arp_parse(&a, arp, 27), -EBADMSG, "short ARP refused");
}

int main(void)
{
	test_roundtrip();
	test_long_and_overload();
	test_malformed();
	test_framing();
	return tap_done();
}
