// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Packet builders and the BPF_PROG_TEST_RUN helper for tests; see pkt.h. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bpf/bpf.h>
#include <linux/bpf.h>

#include "pkt.h"

static void *put(struct pkt *p, size_t n)
{
	void *at = p->buf + p->len;

	if (p->len + n > sizeof(p->buf)) {
		fprintf(stderr, "pkt: frame over %d bytes (test bug)\n", PKT_MAX);
		abort();
	}
	memset(at, 0, n);
	p->len += n;
	return at;
}

static void put16(uint8_t *at, uint16_t v)
{
	at[0] = v >> 8;
	at[1] = v & 0xff;
}

void pkt_mac(uint8_t out[6], const char *s)
{
	if (sscanf(s, "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &out[0], &out[1], &out[2],
		   &out[3], &out[4], &out[5]) != 6) {
		fprintf(stderr, "pkt: bad MAC literal %s\n", s);
		abort();
	}
}

uint32_t pkt_ip4(const char *s)
{
	struct in_addr a;

	if (inet_pton(AF_INET, s, &a) != 1) {
		fprintf(stderr, "pkt: bad IPv4 literal %s\n", s);
		abort();
	}
	return a.s_addr;
}

void pkt_ip6(uint8_t out[16], const char *s)
{
	if (inet_pton(AF_INET6, s, out) != 1) {
		fprintf(stderr, "pkt: bad IPv6 literal %s\n", s);
		abort();
	}
}

void pkt_init(struct pkt *p)
{
	memset(p, 0, sizeof(*p));
	p->l3_off = -1;
	p->l4_off = -1;
}

void pkt_eth(struct pkt *p, const uint8_t dst[6], const uint8_t src[6], uint16_t proto)
{
	uint8_t *h = put(p, 14);

	memcpy(h, dst, 6);
	memcpy(h + 6, src, 6);
	put16(h + 12, proto);
}

void pkt_vlan(struct pkt *p, uint16_t vid, uint16_t inner_proto)
{
	uint8_t *h = put(p, 4);

	put16(h, vid & 0x0fff);
	put16(h + 2, inner_proto);
}

void pkt_ipv4(struct pkt *p, const char *saddr, const char *daddr, uint8_t proto,
	      unsigned int opt_len, uint16_t frag_off_flags, uint16_t id)
{
	uint8_t *h;
	uint32_t a;

	if (opt_len % 4 || opt_len > 40) {
		fprintf(stderr, "pkt: IPv4 options must be 0..40 in steps of 4\n");
		abort();
	}
	p->l3_off = p->len;
	p->family = AF_INET;
	h = put(p, 20 + opt_len);
	h[0] = 0x40 | ((20 + opt_len) / 4);
	put16(h + 4, id);
	put16(h + 6, frag_off_flags);
	h[8] = 64;
	h[9] = proto;
	a = pkt_ip4(saddr);
	memcpy(h + 12, &a, 4);
	a = pkt_ip4(daddr);
	memcpy(h + 16, &a, 4);
	memset(h + 20, 1, opt_len);	/* IPOPT_NOP */
}

void pkt_ipv6(struct pkt *p, const char *saddr, const char *daddr, uint8_t nexthdr)
{
	uint8_t *h;

	p->l3_off = p->len;
	p->family = AF_INET6;
	h = put(p, 40);
	h[0] = 0x60;
	h[6] = nexthdr;
	h[7] = 255;	/* ND requires hop limit 255; harmless elsewhere */
	pkt_ip6(h + 8, saddr);
	pkt_ip6(h + 24, daddr);
	p->nexthdr = h + 6;
}

void pkt_ipv6_hbh(struct pkt *p, uint8_t nexthdr, unsigned int len8)
{
	uint8_t *h = put(p, 8 * (len8 + 1));

	h[0] = nexthdr;
	h[1] = len8;
	h[2] = 1;		/* PadN filling the rest */
	h[3] = 8 * (len8 + 1) - 4;
	p->nexthdr = h;
}

void pkt_ipv6_frag(struct pkt *p, uint8_t nexthdr, uint16_t offset8, bool more, uint32_t id)
{
	uint8_t *h = put(p, 8);
	uint32_t id_be = htonl(id);

	h[0] = nexthdr;
	put16(h + 2, (offset8 << 3) | (more ? 1 : 0));
	memcpy(h + 4, &id_be, 4);
	p->nexthdr = h;
}

void pkt_tcp(struct pkt *p, uint16_t sport, uint16_t dport, uint8_t flags)
{
	uint8_t *h;

	p->l4_off = p->len;
	h = put(p, 20);
	put16(h, sport);
	put16(h + 2, dport);
	h[12] = 5 << 4;
	h[13] = flags;
	put16(h + 14, 65535);
}

void pkt_udp(struct pkt *p, uint16_t sport, uint16_t dport)
{
	uint8_t *h;

	p->l4_off = p->len;
	h = put(p, 8);
	put16(h, sport);
	put16(h + 2, dport);
}

void pkt_icmp(struct pkt *p, uint8_t type, uint8_t code, uint16_t id)
{
	uint8_t *h;

	p->l4_off = p->len;
	h = put(p, 8);
	h[0] = type;
	h[1] = code;
	put16(h + 4, id);
	put16(h + 6, 1);
}

void pkt_icmp6(struct pkt *p, uint8_t type, uint8_t code, uint16_t id)
{
	pkt_icmp(p, type, code, id);
}

void pkt_nd(struct pkt *p, uint8_t type, const char *target, const uint8_t *lladdr)
{
	uint8_t *h;

	p->l4_off = p->len;
	h = put(p, 24);
	h[0] = type;
	if (type == 136)
		h[4] = 0x60;	/* solicited + override */
	pkt_ip6(h + 8, target);
	if (lladdr) {
		uint8_t *o = put(p, 8);

		o[0] = type == 135 ? 1 : 2;
		o[1] = 1;
		memcpy(o + 2, lladdr, 6);
	}
}

void pkt_arp(struct pkt *p, uint16_t op, const uint8_t sha[6], const char *spa,
	     const uint8_t tha[6], const char *tpa)
{
	uint8_t *h = put(p, 28);
	uint32_t a;

	put16(h, 1);
	put16(h + 2, 0x0800);
	h[4] = 6;
	h[5] = 4;
	put16(h + 6, op);
	memcpy(h + 8, sha, 6);
	a = pkt_ip4(spa);
	memcpy(h + 14, &a, 4);
	memcpy(h + 18, tha, 6);
	a = pkt_ip4(tpa);
	memcpy(h + 24, &a, 4);
}

void pkt_dhcp(struct pkt *p, uint8_t op, uint8_t msg_type, const uint8_t chaddr[6])
{
	uint8_t *h = put(p, 240 + 4);

	h[0] = op;
	h[1] = 1;		/* htype Ethernet */
	h[2] = 6;
	memcpy(h + 4, "\x12\x34\x56\x78", 4);
	memcpy(h + 28, chaddr, 6);
	memcpy(h + 236, "\x63\x82\x53\x63", 4);	/* magic cookie */
	h[240] = 53;		/* DHCP message type */
	h[241] = 1;
	h[242] = msg_type;
	h[243] = 255;		/* end */
}

void pkt_payload(struct pkt *p, size_t n, uint8_t fill)
{
	memset(put(p, n), fill, n);
}

void pkt_bytes(struct pkt *p, const void *data, size_t n)
{
	memcpy(put(p, n), data, n);
}

static uint16_t csum16(const uint8_t *d, size_t n)
{
	uint32_t sum = 0;
	size_t i;

	for (i = 0; i + 1 < n; i += 2)
		sum += (d[i] << 8) | d[i + 1];
	if (n & 1)
		sum += d[n - 1] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return ~sum & 0xffff;
}

void pkt_finish(struct pkt *p)
{
	uint8_t *l3;

	if (p->l3_off < 0)
		return;
	l3 = p->buf + p->l3_off;
	if (p->family == AF_INET) {
		size_t hlen = (l3[0] & 0x0f) * 4;

		put16(l3 + 2, p->len - p->l3_off);
		put16(l3 + 10, 0);
		put16(l3 + 10, csum16(l3, hlen));
	} else if (p->family == AF_INET6) {
		put16(l3 + 4, p->len - p->l3_off - 40);
	}
	if (p->l4_off >= 0) {
		uint8_t *l4 = p->buf + p->l4_off;
		uint8_t proto = p->family == AF_INET ? l3[9] : (p->nexthdr ? *p->nexthdr : 0);

		if (proto == 17)
			put16(l4 + 4, p->len - p->l4_off);
	}
}

void pkt_truncate(struct pkt *p, size_t n)
{
	if (n < p->len)
		p->len = n;
}

/* One test run; ctx_out (may be NULL) receives the skb fields after it. */
static int run_tc(int prog_fd, const struct pkt *p, uint32_t ifindex, uint32_t repeat,
		  uint32_t *retval, uint32_t *ns_per_run, struct __sk_buff *ctx_out)
{
	struct __sk_buff ctx = { .ifindex = ifindex };
	uint8_t out[PKT_MAX + 256];
	LIBBPF_OPTS(bpf_test_run_opts, opts,
		.data_in = p->buf,
		.data_size_in = p->len,
		.data_out = out,
		.data_size_out = sizeof(out),
		.ctx_in = &ctx,
		.ctx_size_in = sizeof(ctx),
		.ctx_out = ctx_out,
		.ctx_size_out = ctx_out ? sizeof(*ctx_out) : 0,
		.repeat = repeat,
	);

	if (bpf_prog_test_run_opts(prog_fd, &opts))
		return -errno;
	if (retval)
		*retval = opts.retval;
	if (ns_per_run)
		*ns_per_run = opts.duration;
	return 0;
}

int pkt_run_tc(int prog_fd, const struct pkt *p, uint32_t ifindex, uint32_t repeat,
	       uint32_t *retval, uint32_t *ns_per_run)
{
	return run_tc(prog_fd, p, ifindex, repeat, retval, ns_per_run, NULL);
}

int pkt_run_tc_mark(int prog_fd, const struct pkt *p, uint32_t ifindex, uint32_t *retval,
		    uint32_t *mark)
{
	struct __sk_buff out = { 0 };
	int err = run_tc(prog_fd, p, ifindex, 1, retval, NULL, &out);

	*mark = out.mark;
	return err;
}
