// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * 60-byte UDP frame flood for tests/net/bench_live.sh: one frame, sent with
 * sendmmsg() in batches on an AF_PACKET socket that bypasses the qdisc, for
 * a fixed time.  About 4x the packet rate of an iperf3 UDP sender here, so
 * the receive path (where the filters run) is a larger share of each
 * packet's cost and tens of ns show.  On a veth the receive side runs in
 * the sender's softirq, on the sender's CPU.
 *
 *   tool_flood IFNAME SRC_MAC DST_MAC SRC_IP DST_IP DPORT SECONDS
 *
 * Prints the frames sent.  Meant for links inside a test's own namespaces.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define FRAME_LEN	60
#define BATCH		64

static int parse_mac(const char *s, unsigned char mac[6])
{
	return sscanf(s, "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &mac[0], &mac[1], &mac[2], &mac[3],
		      &mac[4], &mac[5]) == 6 ? 0 : -1;
}

static unsigned short ip_csum(const void *hdr, size_t len)
{
	const unsigned short *w = hdr;
	unsigned long sum = 0;

	for (; len > 1; len -= 2)
		sum += *w++;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (unsigned short)~sum;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	unsigned char frame[FRAME_LEN] = { 0 };
	struct ether_header *eh = (void *)frame;
	struct iphdr *ih = (void *)(eh + 1);
	struct udphdr *uh = (void *)(ih + 1);
	struct sockaddr_ll sll = { .sll_family = AF_PACKET };
	struct mmsghdr msgs[BATCH];
	struct iovec iov = { frame, FRAME_LEN };
	unsigned long long sent = 0;
	double secs, t0, t;
	int fd, one = 1;

	if (argc != 8) {
		fprintf(stderr, "usage: %s IFNAME SRC_MAC DST_MAC SRC_IP DST_IP DPORT SECONDS\n",
			argv[0]);
		return 2;
	}
	secs = atof(argv[7]);
	if (parse_mac(argv[2], eh->ether_shost) || parse_mac(argv[3], eh->ether_dhost) ||
	    inet_pton(AF_INET, argv[4], &ih->saddr) != 1 ||
	    inet_pton(AF_INET, argv[5], &ih->daddr) != 1 || secs <= 0 || secs > 60) {
		fprintf(stderr, "tool_flood: bad MAC, address or duration (0 < s <= 60)\n");
		return 2;
	}
	eh->ether_type = htons(ETHERTYPE_IP);
	ih->version = 4;
	ih->ihl = 5;
	ih->ttl = 64;
	ih->protocol = IPPROTO_UDP;
	ih->tot_len = htons(FRAME_LEN - sizeof(*eh));
	ih->check = ip_csum(ih, sizeof(*ih));
	uh->source = htons(40000);
	uh->dest = htons((unsigned short)atoi(argv[6]));
	uh->len = htons(FRAME_LEN - sizeof(*eh) - sizeof(*ih));	/* checksum 0: none */

	sll.sll_ifindex = if_nametoindex(argv[1]);
	sll.sll_halen = 6;
	memcpy(sll.sll_addr, eh->ether_dhost, 6);
	fd = socket(AF_PACKET, SOCK_RAW, 0);
	if (fd < 0 || !sll.sll_ifindex ||
	    setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(one)) ||
	    bind(fd, (struct sockaddr *)&sll, sizeof(sll))) {
		fprintf(stderr, "tool_flood: %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	memset(msgs, 0, sizeof(msgs));
	for (int i = 0; i < BATCH; i++) {
		msgs[i].msg_hdr.msg_iov = &iov;
		msgs[i].msg_hdr.msg_iovlen = 1;
	}
	t0 = now_s();
	do {
		int n = sendmmsg(fd, msgs, BATCH, 0);

		if (n < 0 && errno != ENOBUFS && errno != EAGAIN) {
			fprintf(stderr, "tool_flood: sendmmsg: %s\n", strerror(errno));
			return 1;
		}
		if (n > 0)
			sent += n;
		t = now_s();
	} while (t - t0 < secs);
	printf("%llu %.6f\n", sent, t - t0);
	close(fd);
	return 0;
}
