/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Packet builders for BPF_PROG_TEST_RUN tests, and the run helper.  Headers
 * are appended one after another into a struct pkt; pkt_finish() fills the
 * length fields and the IPv4 header checksum.  L4 checksums are left zero:
 * the programs under test never verify them.
 */
#ifndef RAYOS_TEST_PKT_H
#define RAYOS_TEST_PKT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PKT_MAX		1514

struct pkt {
	uint8_t buf[PKT_MAX];
	size_t len;
	int l3_off;		/* -1 until an IP header is added */
	int l4_off;		/* start of UDP/TCP/ICMP, -1 if none */
	int family;		/* AF_INET, AF_INET6, 0 */
	uint8_t *nexthdr;	/* IPv6: the last "next header" field written */
};

/* Parse "aa:bb:cc:dd:ee:ff"; aborts on a bad literal (test bug). */
void pkt_mac(uint8_t out[6], const char *s);
/* inet_pton of a literal; IPv4 into 4 bytes, IPv6 into 16. */
uint32_t pkt_ip4(const char *s);
void pkt_ip6(uint8_t out[16], const char *s);

void pkt_init(struct pkt *p);
void pkt_eth(struct pkt *p, const uint8_t dst[6], const uint8_t src[6], uint16_t proto);
void pkt_vlan(struct pkt *p, uint16_t vid, uint16_t inner_proto);

/* IPv4 header with opt_len bytes of options (NOPs, multiple of 4).
 * frag_off_flags is the host-order frag_off field (IP_MF | offset/8). */
void pkt_ipv4(struct pkt *p, const char *saddr, const char *daddr, uint8_t proto,
	      unsigned int opt_len, uint16_t frag_off_flags, uint16_t id);
void pkt_ipv6(struct pkt *p, const char *saddr, const char *daddr, uint8_t nexthdr);
/* Extension headers chained behind the IPv6 header. */
void pkt_ipv6_hbh(struct pkt *p, uint8_t nexthdr, unsigned int len8);
void pkt_ipv6_frag(struct pkt *p, uint8_t nexthdr, uint16_t offset8, bool more, uint32_t id);

void pkt_tcp(struct pkt *p, uint16_t sport, uint16_t dport, uint8_t flags);
void pkt_udp(struct pkt *p, uint16_t sport, uint16_t dport);
void pkt_icmp(struct pkt *p, uint8_t type, uint8_t code, uint16_t id);
void pkt_icmp6(struct pkt *p, uint8_t type, uint8_t code, uint16_t id);
/* NS (135) or NA (136) for target, with one link-layer address option
 * (SLLA for NS, TLLA for NA) when lladdr is not NULL. */
void pkt_nd(struct pkt *p, uint8_t type, const char *target, const uint8_t *lladdr);

void pkt_arp(struct pkt *p, uint16_t op, const uint8_t sha[6], const char *spa,
	     const uint8_t tha[6], const char *tpa);
/* BOOTP/DHCP message (op 1 request, 2 reply) with a message-type option. */
void pkt_dhcp(struct pkt *p, uint8_t op, uint8_t msg_type, const uint8_t chaddr[6]);
void pkt_payload(struct pkt *p, size_t n, uint8_t fill);
/* Raw bytes, e.g. the packet an ICMP error quotes (built as its own pkt). */
void pkt_bytes(struct pkt *p, const void *data, size_t n);

/* Fill IPv4 tot_len + checksum, IPv6 payload_len, UDP length. */
void pkt_finish(struct pkt *p);
/* Cut the frame to n bytes (after pkt_finish, for truncation tests). */
void pkt_truncate(struct pkt *p, size_t n);

/*
 * Run a sched_cls program once (or repeat times) on the frame.  ifindex goes
 * into ctx_in: the kernel then runs the program as if on that device (it
 * must exist in this netns; 1 = lo).  Returns 0 or a negative errno from
 * bpf_prog_test_run_opts; *retval gets the program's return value and
 * *ns_per_run the kernel-measured average run time (may be NULL).
 */
int pkt_run_tc(int prog_fd, const struct pkt *p, uint32_t ifindex, uint32_t repeat,
	       uint32_t *retval, uint32_t *ns_per_run);
/* Run once and also return the skb->mark the program left (ctx_out). */
int pkt_run_tc_mark(int prog_fd, const struct pkt *p, uint32_t ifindex, uint32_t *retval,
		    uint32_t *mark);

#endif /* RAYOS_TEST_PKT_H */
