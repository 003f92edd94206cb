// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Socket plumbing for the DHCP server of one bridge.  AF_PACKET SOCK_DGRAM
 * lets the kernel add the Ethernet header for the destination we give, so
 * a reply reaches a client by its chaddr before it has an address, and the
 * host's ARP table never learns addresses the guest has not taken yet.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "agent/core/log.h"
#include "agent/dhcp/dhcp_io.h"

void dhcp_io_init(struct dhcp_io *io)
{
	memset(io, 0, sizeof(*io));
	io->udp_fd = io->pkt_fd = io->arp_fd = -1;
}

int dhcp_io_packet_socket(int ifindex, uint16_t proto)
{
	struct sockaddr_ll sll = {
		.sll_family = AF_PACKET,
		.sll_protocol = htons(proto),
		.sll_ifindex = ifindex,
	};
	int fd, err;

	fd = socket(AF_PACKET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, htons(proto));
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sll, sizeof(sll))) {
		err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

int dhcp_io_open(struct dhcp_io *io, const char *ifname, bool arp)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(DHCP_SERVER_PORT) };
	struct ifreq ifr;
	int one = 1, err, sz = 4 << 20;

	dhcp_io_init(io);
	io->ifindex = (int)if_nametoindex(ifname);
	if (!io->ifindex)
		return -ENODEV;

	io->udp_fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (io->udp_fd < 0)
		goto fail_errno;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	if (ioctl(io->udp_fd, SIOCGIFHWADDR, &ifr))
		goto fail_errno;
	memcpy(io->mac, ifr.ifr_hwaddr.sa_data, 6);
	/* Each bridge has its own socket on port 67: SO_BINDTODEVICE before
	 * bind() makes the kernel keep them apart. */
	if (setsockopt(io->udp_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    setsockopt(io->udp_fd, SOL_SOCKET, SO_BROADCAST, &one, sizeof(one)) ||
	    setsockopt(io->udp_fd, SOL_SOCKET, SO_BINDTODEVICE, ifname, (socklen_t)strlen(ifname)))
		goto fail_errno;
	/* Bursts (a host booting many guests, the benchmark) queue here
	 * while a batch is being committed. */
	setsockopt(io->udp_fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	setsockopt(io->udp_fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof(sz));
	/* The tap program marks each DHCP client frame with its VM's slot
	 * (RAYOS_DHCP_MARK_TAG); Linux 5.19+ hands the mark over. */
	io->marks = !setsockopt(io->udp_fd, SOL_SOCKET, SO_RCVMARK, &one, sizeof(one));
	if (bind(io->udp_fd, (struct sockaddr *)&sin, sizeof(sin)))
		goto fail_errno;

	/* Protocol 0: this socket only sends, it never queues received frames. */
	io->pkt_fd = dhcp_io_packet_socket(io->ifindex, 0);
	if (io->pkt_fd < 0) {
		err = io->pkt_fd;
		io->pkt_fd = -1;
		goto fail;
	}
	if (arp) {
		io->arp_fd = dhcp_io_packet_socket(io->ifindex, ETH_P_ARP);
		if (io->arp_fd < 0) {
			err = io->arp_fd;
			io->arp_fd = -1;
			goto fail;
		}
	}
	return 0;

fail_errno:
	err = -errno;
fail:
	log_err("dhcp %s: opening sockets: %s", ifname, strerror(-err));
	dhcp_io_close(io);
	return err;
}

void dhcp_io_close(struct dhcp_io *io)
{
	if (io->udp_fd >= 0)
		close(io->udp_fd);
	if (io->pkt_fd >= 0)
		close(io->pkt_fd);
	if (io->arp_fd >= 0)
		close(io->arp_fd);
	io->udp_fd = io->pkt_fd = io->arp_fd = -1;
}

int dhcp_io_send_l2(int fd, int ifindex, const uint8_t mac[6], uint16_t proto,
		   const void *buf, size_t len)
{
	struct sockaddr_ll sll = {
		.sll_family = AF_PACKET,
		.sll_protocol = htons(proto),
		.sll_ifindex = ifindex,
		.sll_halen = 6,
	};

	memcpy(sll.sll_addr, mac, 6);
	if (sendto(fd, buf, len, 0, (struct sockaddr *)&sll, sizeof(sll)) < 0)
		return -errno;
	return 0;
}

int dhcp_io_send(struct dhcp_io *io, uint32_t src_be, const struct dhcp_reply *r)
{
	static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	uint8_t frame[DHCP_REPLY_MAX + DHCP_IPUDP_HDR_LEN];
	struct sockaddr_in sin = { .sin_family = AF_INET };
	int len;

	switch (r->tx) {
	case DHCP_TX_RELAY:
		sin.sin_addr.s_addr = r->dst_ip_be;
		sin.sin_port = htons(r->dst_port);
		if (sendto(io->udp_fd, r->pkt, r->len, 0, (struct sockaddr *)&sin, sizeof(sin)) < 0)
			return -errno;
		return 0;
	case DHCP_TX_UNICAST:
	case DHCP_TX_BROADCAST:
		len = dhcp_ipudp_wrap(frame, sizeof(frame), src_be, r->dst_ip_be,
				      DHCP_SERVER_PORT, r->dst_port, r->pkt, r->len);
		if (len < 0)
			return len;
		return dhcp_io_send_l2(io->pkt_fd, io->ifindex,
			       r->tx == DHCP_TX_BROADCAST ? bcast : r->dst_mac,
			       ETH_P_IP, frame, (size_t)len);
	default:
		return 0;
	}
}

int dhcp_io_probe(struct dhcp_io *io, uint32_t ip_be)
{
	static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	static const uint8_t zero[6];
	uint8_t pkt[ARP_PKT_LEN];

	if (io->arp_fd < 0)
		return -ENOTCONN;
	arp_build(pkt, 1, io->mac, 0, zero, ip_be);
	return dhcp_io_send_l2(io->arp_fd, io->ifindex, bcast, ETH_P_ARP, pkt, sizeof(pkt));
}

int dhcp_io_read_arp(struct dhcp_io *io, struct arp_pkt *a)
{
	struct sockaddr_ll from;
	socklen_t flen = sizeof(from);
	uint8_t buf[64];
	ssize_t n;

	for (;;) {
		n = recvfrom(io->arp_fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &flen);
		if (n < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
		/* Our own probes come back as outgoing frames. */
		if (from.sll_pkttype == PACKET_OUTGOING)
			continue;
		if (arp_parse(a, buf, (size_t)n) || !memcmp(a->sha, io->mac, 6))
			continue;
		return 1;
	}
}
