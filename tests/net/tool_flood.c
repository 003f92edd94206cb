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
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tests/lib/pkt.h"

#define FRAME_LEN	60
#define BATCH		64

static bool is_mac(const char *s)
{
	unsigned char m[6];

	return sscanf(s, "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &m[0], &m[1], &m[2], &m[3], &m[4],
		      &m[5]) == 6;
}

static bool is_ip4(const char *s)
{
	struct in_addr a;

	return inet_pton(AF_INET, s, &a) == 1;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	struct sockaddr_ll sll = { .sll_family = AF_PACKET };
	struct mmsghdr msgs[BATCH];
	unsigned long long sent = 0;
	uint8_t src[6], dst[6];
	struct iovec iov;
	struct pkt frame;
	double secs, t0, t;
	int fd, one = 1;

	if (argc != 8) {
		fprintf(stderr, "usage: %s IFNAME SRC_MAC DST_MAC SRC_IP DST_IP DPORT SECONDS\n",
			argv[0]);
		return 2;
	}
	secs = atof(argv[7]);
	if (!is_mac(argv[2]) || !is_mac(argv[3]) || !is_ip4(argv[4]) || !is_ip4(argv[5]) ||
	    secs <= 0 || secs > 60) {
		fprintf(stderr, "tool_flood: bad MAC, address or duration (0 < s <= 60)\n");
		return 2;
	}
	/* UDP checksum 0: none (IPv4). */
	pkt_mac(src, argv[2]);
	pkt_mac(dst, argv[3]);
	pkt_init(&frame);
	pkt_eth(&frame, dst, src, 0x0800);
	pkt_ipv4(&frame, argv[4], argv[5], IPPROTO_UDP, 0, 0, 1);
	pkt_udp(&frame, 40000, (uint16_t)atoi(argv[6]));
	pkt_payload(&frame, FRAME_LEN - frame.len, 0);
	pkt_finish(&frame);
	iov = (struct iovec){ frame.buf, frame.len };

	sll.sll_ifindex = if_nametoindex(argv[1]);
	sll.sll_halen = 6;
	memcpy(sll.sll_addr, dst, 6);
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
