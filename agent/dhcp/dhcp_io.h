/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Sockets of one guest bridge: a UDP socket on port 67 bound to the bridge
 * (SO_BINDTODEVICE) receives requests, with the mark the tap program gave
 * each frame (SO_RCVMARK: which VM sent it), and sends to relays; a send-only
 * AF_PACKET socket delivers replies to clients that have no address yet
 * (unicast to chaddr or broadcast, RFC 2131 4.1) without touching the ARP
 * table; an ARP packet socket sends RFC 5227 probes and hears conflicts.
 */
#ifndef RAYOS_DHCP_IO_H
#define RAYOS_DHCP_IO_H

#include <stdbool.h>
#include <stdint.h>

#include "agent/dhcp/dhcp_server.h"

struct dhcp_io {
	int udp_fd, pkt_fd, arp_fd;	/* -1 when closed */
	int ifindex;
	uint8_t mac[6];
	bool marks;			/* udp_fd reports each frame's skb->mark */
};

void dhcp_io_init(struct dhcp_io *io);
/* A non-blocking AF_PACKET (SOCK_DGRAM) socket for proto on ifindex, or -errno. */
int dhcp_io_packet_socket(int ifindex, uint16_t proto);
/* Send an L3 payload (buf) to mac on an AF_PACKET SOCK_DGRAM socket. */
int dhcp_io_send_l2(int fd, int ifindex, const uint8_t mac[6], uint16_t proto,
		    const void *buf, size_t len);
/* Open the sockets on ifname; arp: also the ARP socket.  -ENODEV when the
 * interface does not exist. */
int dhcp_io_open(struct dhcp_io *io, const char *ifname, bool arp);
void dhcp_io_close(struct dhcp_io *io);
/* Deliver one reply from server address src_be. */
int dhcp_io_send(struct dhcp_io *io, uint32_t src_be, const struct dhcp_reply *r);
/* An RFC 5227 probe for ip_be (sender address 0). */
int dhcp_io_probe(struct dhcp_io *io, uint32_t ip_be);
/* Read one ARP packet: 1 with *a filled, 0 when none is queued, -errno. */
int dhcp_io_read_arp(struct dhcp_io *io, struct arp_pkt *a);

#endif
