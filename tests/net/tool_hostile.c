// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * What a hostile guest sends, crafted frame by frame on an AF_PACKET socket
 * inside the guest's namespace, for tests/dhcp/test_isolation.sh and the
 * isolation benchmark; and, to measure the other side, a well-behaved DHCP
 * client that does one DORA after another.  Every mode is bounded in count
 * and time.  Meant for links inside a test's own namespaces.
 *
 *   tool_hostile IF MAC dhcp TYPE CHADDR COUNT PPS [ciaddr=A] [req=A] [server=A]
 *                                                  [src=A] [dst=A] [secs=S]
 *       DHCP client messages (UDP 68 -> 67); TYPE discover|request|decline|
 *       release|inform; CHADDR a MAC or "random" (a new one per message);
 *       PPS 0: as fast as the socket takes them.  Prints "sent N".
 *   tool_hostile IF MAC arp COUNT SPA TPA
 *       ARP requests, back to back.  Prints "sent N".
 *   tool_hostile IF MAC udp SRC DST DST_MAC SPORT DPORT COUNT
 *       UDP datagrams from any IPv4 or IPv6 source (a link-local one not
 *       the guest's, say).  Prints "sent N".
 *   tool_hostile IF MAC icmperr SRC DST DST_MAC QSRC QDST QSPORT QDPORT EXTRA
 *       ICMP port unreachable quoting a UDP datagram QSRC:QSPORT ->
 *       QDST:QDPORT, then EXTRA bytes of anything.
 *   tool_hostile IF MAC probeback SECS
 *       Answer every ARP probe (sender 0.0.0.0) heard with a probe of its own
 *       for the same address, as RFC 5227's "another host probing" would be
 *       read, for SECS seconds.  Prints "listening" once its socket is
 *       bound, then "answered N".
 *   tool_hostile IF MAC dora SECS [RUNS]
 *       DORA after DORA with MAC as chaddr for SECS seconds, RUNS times;
 *       prints "run I dora N per_s R p50_ms X p99_ms Y timeouts T" per run.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "agent/dhcp/dhcp_proto.h"
#include "tests/lib/pkt.h"

#define MAX_COUNT	1000000
#define MAX_SECS	60
#define DORA_TIMEOUT_MS	500

static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

struct ctx {
	int fd, ifindex;
	uint8_t mac[6];
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int die(const char *what)
{
	fprintf(stderr, "tool_hostile: %s\n", what);
	return 2;
}

/* Send a whole Ethernet frame (SOCK_RAW). */
static int send_frame(const struct ctx *c, const void *buf, size_t len)
{
	struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_ifindex = c->ifindex,
				   .sll_halen = 6 };

	memcpy(sll.sll_addr, buf, 6);
	return sendto(c->fd, buf, len, 0, (struct sockaddr *)&sll, sizeof(sll)) < 0 ? -errno : 0;
}

static bool opt_ip(int argc, char **argv, const char *key, uint32_t *out_be)
{
	size_t n = strlen(key);

	for (int i = 0; i < argc; i++)
		if (!strncmp(argv[i], key, n) && argv[i][n] == '=')
			return inet_pton(AF_INET, argv[i] + n + 1, out_be) == 1;
	return false;
}

static double opt_num(int argc, char **argv, const char *key, double dflt)
{
	size_t n = strlen(key);

	for (int i = 0; i < argc; i++)
		if (!strncmp(argv[i], key, n) && argv[i][n] == '=')
			return atof(argv[i] + n + 1);
	return dflt;
}

/* One DHCP client message in an Ethernet frame from c->mac. */
static size_t dhcp_frame(const struct ctx *c, uint8_t *out, size_t cap, uint8_t type,
			 const uint8_t chaddr[6], uint32_t xid, uint32_t ciaddr_be,
			 uint32_t req_be, uint32_t server_be, uint32_t src_be, uint32_t dst_be,
			 const uint8_t dst_mac[6])
{
	uint8_t payload[600];
	struct dhcp_builder b;
	struct dhcp_hdr h;
	int len, flen;

	memset(&h, 0, sizeof(h));
	h.op = BOOTREQUEST;
	h.htype = 1;
	h.hlen = 6;
	h.xid_be = htonl(xid);
	h.ciaddr_be = ciaddr_be;
	memcpy(h.chaddr, chaddr, 6);
	dhcp_build_init(&b, payload, sizeof(payload), &h);
	dhcp_build_opt_u8(&b, DHO_MSG_TYPE, type);
	if (req_be)
		dhcp_build_opt(&b, DHO_REQUESTED_IP, &req_be, 4);
	if (server_be)
		dhcp_build_opt(&b, DHO_SERVER_ID, &server_be, 4);
	len = dhcp_build_finish(&b);
	if (len < 0)
		return 0;
	memcpy(out, dst_mac, 6);
	memcpy(out + 6, c->mac, 6);
	out[12] = 0x08;
	out[13] = 0x00;
	flen = dhcp_ipudp_wrap(out + 14, cap - 14, src_be, dst_be, DHCP_CLIENT_PORT,
			       DHCP_SERVER_PORT, payload, (size_t)len);
	return flen < 0 ? 0 : (size_t)flen + 14;
}

static int msg_type(const char *s)
{
	static const char *const names[] = { [DHCPDISCOVER] = "discover",
		[DHCPREQUEST] = "request", [DHCPDECLINE] = "decline", [DHCPRELEASE] = "release",
		[DHCPINFORM] = "inform" };

	for (int i = 0; i < (int)(sizeof(names) / sizeof(names[0])); i++)
		if (names[i] && !strcmp(s, names[i]))
			return i;
	return -1;
}

/* Paced: at most pps messages per second (0: unpaced), for count
 * messages or secs seconds, whichever ends first. */
static int mode_dhcp(struct ctx *c, int argc, char **argv)
{
	uint32_t ciaddr = 0, req = 0, server = 0, src = 0, dst = INADDR_BROADCAST;
	uint8_t chaddr[6], frame[1024];
	bool random_chaddr;
	long count, pps, sent = 0;
	double secs, t0;
	int type;

	if (argc < 4)
		return die("dhcp TYPE CHADDR COUNT PPS [key=value...]");
	type = msg_type(argv[0]);
	random_chaddr = !strcmp(argv[1], "random");
	count = atol(argv[2]);
	pps = atol(argv[3]);
	secs = opt_num(argc - 4, argv + 4, "secs", MAX_SECS);
	if (type < 0 || count <= 0 || count > MAX_COUNT || pps < 0 || secs <= 0 ||
	    secs > MAX_SECS)
		return die("dhcp: bad type, count (1..1000000), rate or secs (<= 60)");
	if (!random_chaddr)
		pkt_mac(chaddr, argv[1]);
	opt_ip(argc - 4, argv + 4, "ciaddr", &ciaddr);
	opt_ip(argc - 4, argv + 4, "req", &req);
	opt_ip(argc - 4, argv + 4, "server", &server);
	opt_ip(argc - 4, argv + 4, "src", &src);
	opt_ip(argc - 4, argv + 4, "dst", &dst);
	srand((unsigned int)getpid());
	t0 = now_s();
	while (sent < count && now_s() - t0 < secs) {
		size_t len;

		if (random_chaddr) {
			for (int i = 0; i < 6; i++)
				chaddr[i] = (uint8_t)rand();
			chaddr[0] = (uint8_t)((chaddr[0] & 0xfe) | 0x02);	/* unicast, local */
		}
		len = dhcp_frame(c, frame, sizeof(frame), (uint8_t)type, chaddr, (uint32_t)rand(),
				 ciaddr, req, server, src, dst, bcast);
		if (!len)
			return die("dhcp: cannot build the message");
		if (!send_frame(c, frame, len))
			sent++;
		if (pps) {
			/* The next message's slot, absolute; sleep only once a
			 * millisecond ahead, so a fast rate goes out in small
			 * batches rather than one wakeup per message. */
			double due = t0 + (double)sent / (double)pps, wait = due - now_s();

			if (wait > 0.001) {
				struct timespec ts = { (time_t)wait, (long)((wait - (time_t)wait) * 1e9) };

				nanosleep(&ts, NULL);
			}
		}
	}
	printf("sent %ld\n", sent);
	return 0;
}

static int mode_arp(struct ctx *c, int argc, char **argv)
{
	static const uint8_t zero[6];
	struct pkt p;
	long count, sent = 0;

	if (argc != 3)
		return die("arp COUNT SPA TPA");
	count = atol(argv[0]);
	if (count <= 0 || count > MAX_COUNT)
		return die("arp: count 1..1000000");
	pkt_init(&p);
	pkt_eth(&p, bcast, c->mac, 0x0806);
	pkt_arp(&p, 1, c->mac, argv[1], zero, argv[2]);
	pkt_finish(&p);
	for (long i = 0; i < count; i++)
		sent += !send_frame(c, p.buf, p.len);
	printf("sent %ld\n", sent);
	return 0;
}

static int send_n(struct ctx *c, const struct pkt *p, long count)
{
	long sent = 0;

	if (count <= 0 || count > MAX_COUNT)
		return die("count 1..1000000");
	for (long i = 0; i < count; i++)
		sent += !send_frame(c, p->buf, p->len);
	printf("sent %ld\n", sent);
	return 0;
}

/* UDP from any source, IPv4 or IPv6 (a link-local one not the guest's, say). */
static int mode_udp(struct ctx *c, int argc, char **argv)
{
	bool v6 = argc > 0 && strchr(argv[0], ':');
	uint8_t dmac[6];
	struct pkt p;

	if (argc != 6)
		return die("udp SRC DST DST_MAC SPORT DPORT COUNT");
	pkt_mac(dmac, argv[2]);
	pkt_init(&p);
	pkt_eth(&p, dmac, c->mac, v6 ? 0x86dd : 0x0800);
	if (v6)
		pkt_ipv6(&p, argv[0], argv[1], IPPROTO_UDP);
	else
		pkt_ipv4(&p, argv[0], argv[1], IPPROTO_UDP, 0, 0, 1);
	pkt_udp(&p, (uint16_t)atoi(argv[3]), (uint16_t)atoi(argv[4]));
	pkt_payload(&p, 32, 0x5a);
	pkt_finish(&p);
	return send_n(c, &p, atol(argv[5]));
}

static int mode_icmperr(struct ctx *c, int argc, char **argv)
{
	uint8_t dmac[6];
	struct pkt q, p;
	long extra;

	if (argc != 8)
		return die("icmperr SRC DST DST_MAC QSRC QDST QSPORT QDPORT EXTRA");
	extra = atol(argv[7]);
	if (extra < 0 || extra > 1400)
		return die("icmperr: EXTRA 0..1400");
	pkt_mac(dmac, argv[2]);
	pkt_init(&q);
	pkt_ipv4(&q, argv[3], argv[4], IPPROTO_UDP, 0, 0, 9);
	pkt_udp(&q, (uint16_t)atoi(argv[5]), (uint16_t)atoi(argv[6]));
	pkt_finish(&q);
	pkt_init(&p);
	pkt_eth(&p, dmac, c->mac, 0x0800);
	pkt_ipv4(&p, argv[0], argv[1], IPPROTO_ICMP, 0, 0, 1);
	pkt_icmp(&p, 3, 3, 0);		/* port unreachable */
	pkt_bytes(&p, q.buf, q.len);
	if (extra)
		pkt_payload(&p, (size_t)extra, 0x41);
	pkt_finish(&p);
	return send_n(c, &p, 1);
}

static int mode_probeback(struct ctx *c, int argc, char **argv)
{
	struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ARP),
				   .sll_ifindex = c->ifindex };
	static const uint8_t zero[6];
	long answered = 0;
	double secs, t0;
	int rfd;

	if (argc != 1 || (secs = atof(argv[0])) <= 0 || secs > MAX_SECS)
		return die("probeback SECS (<= 60)");
	rfd = socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, htons(ETH_P_ARP));
	if (rfd < 0 || bind(rfd, (struct sockaddr *)&sll, sizeof(sll)))
		return die("probeback: cannot open the ARP socket");
	printf("listening\n");	/* the test starts the victim's client after this */
	fflush(stdout);
	t0 = now_s();
	while (now_s() - t0 < secs) {
		struct pollfd pfd = { .fd = rfd, .events = POLLIN };
		uint8_t buf[64], frame[64];
		struct arp_pkt a;
		ssize_t n;

		if (poll(&pfd, 1, 100) <= 0)
			continue;
		n = recv(rfd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n <= 0 || arp_parse(&a, buf, (size_t)n) || a.op != 1 || a.spa_be ||
		    !memcmp(a.sha, c->mac, 6))
			continue;
		memcpy(frame, bcast, 6);
		memcpy(frame + 6, c->mac, 6);
		frame[12] = 0x08;
		frame[13] = 0x06;
		arp_build(frame + 14, 1, c->mac, 0, zero, a.tpa_be);
		answered += !send_frame(c, frame, 14 + ARP_PKT_LEN);
	}
	close(rfd);
	printf("answered %ld\n", answered);
	return 0;
}

/* Wait for a reply of type to xid; returns the parsed message's yiaddr
 * and server id, or -ETIMEDOUT. */
static int wait_reply(struct ctx *c, int rfd, uint32_t xid, uint8_t type, double deadline,
		      uint32_t *yiaddr_be, uint32_t *server_be)
{
	static struct dhcp_msg m;
	uint8_t buf[2048];

	for (;;) {
		double left = deadline - now_s();
		struct pollfd pfd = { .fd = rfd, .events = POLLIN };
		const uint8_t *pl;
		size_t plen;
		uint32_t s, d;
		uint16_t sp, dp;
		ssize_t n;

		if (left <= 0)
			return -ETIMEDOUT;
		if (poll(&pfd, 1, (int)(left * 1000) + 1) <= 0)
			continue;
		n = recv(rfd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n <= 0 || dhcp_ipudp_unwrap(buf, (size_t)n, &pl, &plen, &s, &d, &sp, &dp) ||
		    dp != DHCP_CLIENT_PORT || dhcp_parse(&m, pl, plen))
			continue;
		if (m.hdr.xid_be != htonl(xid) || memcmp(m.hdr.chaddr, c->mac, 6))
			continue;
		if (m.type == DHCPNAK)
			return -EPROTO;
		if (m.type != type)
			continue;
		*yiaddr_be = m.hdr.yiaddr_be;
		*server_be = m.has_server_id ? m.server_id_be : s;
		return 0;
	}
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static int mode_dora(struct ctx *c, int argc, char **argv)
{
	struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_IP),
				   .sll_ifindex = c->ifindex };
	static double lat[200000];
	uint8_t frame[1024];
	double secs, runs;
	int rfd;

	if (argc < 1)
		return die("dora SECS [RUNS]");
	secs = atof(argv[0]);
	runs = argc > 1 ? atof(argv[1]) : 1;
	if (secs <= 0 || secs > MAX_SECS || runs < 1 || runs > 100)
		return die("dora: 0 < SECS <= 60, 1 <= RUNS <= 100");
	rfd = socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, htons(ETH_P_IP));
	if (rfd < 0 || bind(rfd, (struct sockaddr *)&sll, sizeof(sll)))
		return die("dora: cannot open the receive socket");
	srand((unsigned int)getpid());
	for (int run = 0; run < (int)runs; run++) {
		size_t n = 0, timeouts = 0;
		double t0 = now_s(), t;

		while ((t = now_s()) - t0 < secs && n < sizeof(lat) / sizeof(lat[0])) {
			uint32_t xid = (uint32_t)rand(), yi, srv;
			size_t len;

			len = dhcp_frame(c, frame, sizeof(frame), DHCPDISCOVER, c->mac, xid, 0, 0, 0,
					 0, INADDR_BROADCAST, bcast);
			if (!len || send_frame(c, frame, len) ||
			    wait_reply(c, rfd, xid, DHCPOFFER, t + DORA_TIMEOUT_MS / 1e3, &yi, &srv)) {
				timeouts++;
				continue;
			}
			len = dhcp_frame(c, frame, sizeof(frame), DHCPREQUEST, c->mac, xid, 0, yi,
					 srv, 0, INADDR_BROADCAST, bcast);
			if (!len || send_frame(c, frame, len) ||
			    wait_reply(c, rfd, xid, DHCPACK, now_s() + DORA_TIMEOUT_MS / 1e3, &yi,
				       &srv)) {
				timeouts++;
				continue;
			}
			lat[n++] = (now_s() - t) * 1e3;
		}
		t = now_s() - t0;
		qsort(lat, n, sizeof(lat[0]), cmp_double);
		printf("run %d dora %zu per_s %.1f p50_ms %.2f p99_ms %.2f timeouts %zu\n", run, n,
		       n / t, n ? lat[n / 2] : 0, n ? lat[n * 99 / 100] : 0, timeouts);
		fflush(stdout);
	}
	close(rfd);
	return 0;
}

int main(int argc, char **argv)
{
	struct sockaddr_ll sll = { .sll_family = AF_PACKET };
	struct ctx c;
	int one = 1;

	if (argc < 4)
		return die("usage: tool_hostile IF MAC MODE ARGS... (see the file's header)");
	c.ifindex = (int)if_nametoindex(argv[1]);
	if (!c.ifindex)
		return die("no such interface");
	pkt_mac(c.mac, argv[2]);
	c.fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
	sll.sll_ifindex = c.ifindex;
	if (c.fd < 0 || bind(c.fd, (struct sockaddr *)&sll, sizeof(sll)))
		return die("cannot open an AF_PACKET socket (root?)");
	setsockopt(c.fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(one));
	if (!strcmp(argv[3], "dhcp"))
		return mode_dhcp(&c, argc - 4, argv + 4);
	if (!strcmp(argv[3], "arp"))
		return mode_arp(&c, argc - 4, argv + 4);
	if (!strcmp(argv[3], "udp"))
		return mode_udp(&c, argc - 4, argv + 4);
	if (!strcmp(argv[3], "icmperr"))
		return mode_icmperr(&c, argc - 4, argv + 4);
	if (!strcmp(argv[3], "probeback"))
		return mode_probeback(&c, argc - 4, argv + 4);
	if (!strcmp(argv[3], "dora"))
		return mode_dora(&c, argc - 4, argv + 4);
	return die("unknown mode (dhcp, arp, udp, icmperr, probeback, dora)");
}
