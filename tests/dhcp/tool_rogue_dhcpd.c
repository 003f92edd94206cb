// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * A rogue DHCP server for the client's tests: it answers every DISCOVER
 * with OFFERs no server should send, and every REQUEST with an ACK of the
 * same kind, on one interface (run it in a network namespace the test made).
 *
 *   tool_rogue_dhcpd IFACE SERVER_IP KIND[,KIND...] [--max-seconds S]
 *
 * Kinds (the subnet is SERVER_IP/24 unless the kind changes the mask):
 *   broadcast  yiaddr is the subnet's broadcast address (.255)
 *   network    yiaddr is the subnet's network address (.0)
 *   server     yiaddr is SERVER_IP itself
 *   zero       yiaddr 0.0.0.0
 *   loopback   yiaddr 127.0.0.5        multicast  yiaddr 224.0.0.5
 *   reserved   yiaddr 240.0.0.1        mask0      mask 0.0.0.0
 *   masknc     mask 255.0.255.0        lease0     lease time 0
 *   ackbad     a sane OFFER, then an ACK with the broadcast address
 * Each kind's OFFER carries a lease of a day, longer than any sane server's,
 * so a client that took the longest lease would take the rogue's.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "agent/dhcp/dhcp_proto.h"

struct kind {
	const char *name;
	uint32_t yi_host;		/* host part in the /24, or a whole address */
	bool whole;			/* yi_host is the whole address (host order) */
	uint32_t mask;			/* host order */
	bool lease0;
	bool ack_only;			/* sane OFFER, this in the ACK */
};

static const struct kind kinds[] = {
	{ "broadcast", 255, false, 0xffffff00U, false, false },
	{ "network", 0, false, 0xffffff00U, false, false },
	{ "server", 0, false, 0xffffff00U, false, false },	/* yiaddr = server */
	{ "zero", 0, true, 0xffffff00U, false, false },
	{ "loopback", 0x7f000005U, true, 0xffffff00U, false, false },
	{ "multicast", 0xe0000005U, true, 0xffffff00U, false, false },
	{ "reserved", 0xf0000001U, true, 0xffffff00U, false, false },
	{ "mask0", 100, false, 0, false, false },
	{ "masknc", 101, false, 0xff00ff00U, false, false },
	{ "lease0", 102, false, 0xffffff00U, true, false },
	{ "ackbad", 255, false, 0xffffff00U, false, true },
};

static uint32_t yiaddr_of(const struct kind *k, uint32_t server, bool offer)
{
	if (k->ack_only && offer)
		return (server & 0xffffff00U) | 103;	/* the sane bait */
	if (!strcmp(k->name, "server"))
		return server;
	return k->whole ? k->yi_host : (server & 0xffffff00U) | k->yi_host;
}

/* server: host order, also the server identifier. */
static void reply(int fd, const struct dhcp_msg *q, uint8_t type, const struct kind *k,
		  uint32_t server)
{
	uint8_t buf[576];
	struct dhcp_builder b;
	struct dhcp_hdr h = q->hdr;
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(68),
				  .sin_addr.s_addr = htonl(INADDR_BROADCAST) };
	bool bait = k->ack_only && type == DHCPOFFER;
	uint32_t mask = htonl(bait ? 0xffffff00U : k->mask), router = htonl(server);
	int len;

	h.op = BOOTREPLY;
	h.yiaddr_be = htonl(yiaddr_of(k, server, type == DHCPOFFER));
	h.siaddr_be = 0;
	h.flags_be = htons(0x8000);
	dhcp_build_init(&b, buf, sizeof(buf), &h);
	dhcp_build_opt_u8(&b, DHO_MSG_TYPE, type);
	dhcp_build_opt_u32(&b, DHO_SERVER_ID, server);
	dhcp_build_opt_u32(&b, DHO_LEASE_TIME, k->lease0 && !bait ? 0 : 86400);
	dhcp_build_opt(&b, DHO_SUBNET_MASK, &mask, 4);
	dhcp_build_opt(&b, DHO_ROUTER, &router, 4);
	len = dhcp_build_finish(&b);
	if (len > 0 && sendto(fd, buf, (size_t)len, 0, (struct sockaddr *)&to, sizeof(to)) < 0)
		fprintf(stderr, "tool_rogue_dhcpd: sendto: %s\n", strerror(errno));
}

int main(int argc, char **argv)
{
	const struct kind *use[sizeof(kinds) / sizeof(kinds[0])];
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(67) };
	struct in_addr srv;
	int nr = 0, fd, one = 1, max_s = 120;
	char list[256], *tok, *save;
	time_t end;

	if (argc < 4 || inet_pton(AF_INET, argv[2], &srv) != 1) {
		fprintf(stderr, "usage: tool_rogue_dhcpd IFACE SERVER_IP KIND[,KIND...] "
			"[--max-seconds S]\n");
		return 2;
	}
	if (argc >= 6 && !strcmp(argv[4], "--max-seconds"))
		max_s = atoi(argv[5]);
	snprintf(list, sizeof(list), "%s", argv[3]);
	for (tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		size_t i;

		for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
			if (!strcmp(kinds[i].name, tok) || !strcmp(tok, "all"))
				use[nr++] = &kinds[i];
		if (nr == 0 || (strcmp(tok, "all") && strcmp(use[nr - 1]->name, tok))) {
			fprintf(stderr, "tool_rogue_dhcpd: unknown kind %s\n", tok);
			return 2;
		}
	}
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    setsockopt(fd, SOL_SOCKET, SO_BROADCAST, &one, sizeof(one)) ||
	    setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, argv[1], strlen(argv[1]) + 1) ||
	    bind(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		fprintf(stderr, "tool_rogue_dhcpd: %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	for (end = time(NULL) + max_s; time(NULL) < end;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		uint8_t buf[1500];
		struct dhcp_msg m;
		ssize_t n;

		if (poll(&pfd, 1, 1000) <= 0)
			continue;
		n = recv(fd, buf, sizeof(buf), 0);
		if (n <= 0 || dhcp_parse(&m, buf, (size_t)n) || m.hdr.op != BOOTREQUEST)
			continue;
		for (int i = 0; i < nr; i++) {
			uint32_t server = ntohl(srv.s_addr);

			if (m.type == DHCPDISCOVER)
				reply(fd, &m, DHCPOFFER, use[i], server);
			else if (m.type == DHCPREQUEST)
				reply(fd, &m, DHCPACK, use[i], server);
		}
	}
	return 0;
}
