/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * DHCPv4 wire format (RFC 2131, 2132, 3396): a bounds-checked parser that
 * turns one UDP payload into a struct dhcp_msg, a builder for replies and
 * requests, and the IPv4/UDP and ARP framing that the packet sockets need.
 * Pure logic, no allocation, no syscalls: this file is the fuzz target.
 */
#ifndef RAYOS_DHCP_PROTO_H
#define RAYOS_DHCP_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DHCP_SERVER_PORT	67
#define DHCP_CLIENT_PORT	68

#define DHCP_FIXED_LEN		236	/* op .. file */
#define DHCP_OPTIONS_OFF	240	/* after the magic cookie */
#define DHCP_MIN_LEN		DHCP_OPTIONS_OFF
#define DHCP_BOOTP_MIN_LEN	300	/* RFC 1542: pad replies to this */
#define DHCP_MAX_LEN		4096	/* larger payloads are refused */
#define DHCP_MAGIC_COOKIE	0x63825363U
#define DHCP_FLAG_BROADCAST	0x8000U

#define BOOTREQUEST		1
#define BOOTREPLY		2

enum dhcp_msg_type {
	DHCPDISCOVER = 1,
	DHCPOFFER = 2,
	DHCPREQUEST = 3,
	DHCPDECLINE = 4,
	DHCPACK = 5,
	DHCPNAK = 6,
	DHCPRELEASE = 7,
	DHCPINFORM = 8,
	DHCP_MSG_TYPE_MAX = 18,	/* RFC 4388 and later go up to 18 */
};

enum dhcp_opt_code {
	DHO_PAD = 0,
	DHO_SUBNET_MASK = 1,
	DHO_ROUTER = 3,
	DHO_DNS = 6,
	DHO_HOSTNAME = 12,
	DHO_DOMAIN = 15,
	DHO_MTU = 26,
	DHO_BROADCAST = 28,
	DHO_NTP = 42,
	DHO_REQUESTED_IP = 50,
	DHO_LEASE_TIME = 51,
	DHO_OVERLOAD = 52,
	DHO_MSG_TYPE = 53,
	DHO_SERVER_ID = 54,
	DHO_PARAM_LIST = 55,
	DHO_MESSAGE = 56,
	DHO_MAX_MSG_SIZE = 57,
	DHO_T1 = 58,
	DHO_T2 = 59,
	DHO_CLIENT_ID = 61,
	DHO_RAPID_COMMIT = 80,
	DHO_RELAY_INFO = 82,
	DHO_END = 255,
};

/* The fixed BOOTP header, exactly as on the wire (all fields naturally
 * aligned, so no padding): addresses and xid stay in network order. */
struct dhcp_hdr {
	uint8_t op, htype, hlen, hops;
	uint32_t xid_be;
	uint16_t secs_be, flags_be;
	uint32_t ciaddr_be, yiaddr_be, siaddr_be, giaddr_be;
	uint8_t chaddr[16];
	uint8_t sname[64];
	uint8_t file[128];
};
_Static_assert(sizeof(struct dhcp_hdr) == DHCP_FIXED_LEN, "BOOTP header size");

/* Where an option's value lives in dhcp_msg.optbuf (len 0 with present
 * set is a valid empty option, e.g. rapid commit). */
struct dhcp_opt {
	uint16_t off, len;
	bool present;
};

/*
 * One parsed message.  Every option's value is copied into optbuf; an option
 * that occurs several times (RFC 3396 long options, or split across the
 * options, file and sname fields with overload) is concatenated in the order
 * RFC 3396 gives: options, then file, then sname.
 */
struct dhcp_msg {
	struct dhcp_hdr hdr;
	uint8_t type;			/* DHO_MSG_TYPE, 0 when absent (BOOTP) */
	uint8_t overload;		/* DHO_OVERLOAD value, 0 when absent */
	bool has_req_ip, has_server_id, has_lease_time, rapid_commit;
	uint32_t req_ip_be, server_id_be, lease_time;
	uint16_t max_msg_size;		/* 0 when absent */
	const char *err;		/* why parsing failed */
	struct dhcp_opt opt[256];
	uint8_t optbuf[DHCP_MAX_LEN];
};

/* Parse one UDP payload.  Returns 0, or -EBADMSG with m->err saying why
 * (truncated, no magic cookie, option running past its field, bad length of
 * a fixed-size option, bad overload value), -EMSGSIZE when len > DHCP_MAX_LEN. */
int dhcp_parse(struct dhcp_msg *m, const uint8_t *pkt, size_t len);

/* An option's value, or NULL (with *len 0) when absent. */
const uint8_t *dhcp_opt_get(const struct dhcp_msg *m, uint8_t code, size_t *len);

/* ---- building ---- */

struct dhcp_builder {
	uint8_t *buf;
	size_t cap, len;
	int err;		/* -EMSGSIZE once anything did not fit */
};

/* Start a message in buf: hdr is copied (sname/file included), cookie
 * appended.  cap must be at least DHCP_BOOTP_MIN_LEN. */
void dhcp_build_init(struct dhcp_builder *b, uint8_t *buf, size_t cap,
		     const struct dhcp_hdr *hdr);
/* Append option code with len bytes; values over 255 bytes are split into
 * several instances (RFC 3396). */
void dhcp_build_opt(struct dhcp_builder *b, uint8_t code, const void *val, size_t len);
void dhcp_build_opt_u8(struct dhcp_builder *b, uint8_t code, uint8_t v);
void dhcp_build_opt_u16(struct dhcp_builder *b, uint8_t code, uint16_t v);	/* host order in */
void dhcp_build_opt_u32(struct dhcp_builder *b, uint8_t code, uint32_t v);	/* host order in */
/* END, then pad to DHCP_BOOTP_MIN_LEN.  Returns the length or -EMSGSIZE. */
int dhcp_build_finish(struct dhcp_builder *b);

/* ---- IPv4/UDP framing (for AF_PACKET SOCK_DGRAM, which adds Ethernet) ---- */

#define DHCP_IPUDP_HDR_LEN	28

/* Write IPv4 + UDP headers (checksums included) and payload to out.
 * Returns the frame length or -EMSGSIZE. */
int dhcp_ipudp_wrap(uint8_t *out, size_t cap, uint32_t src_be, uint32_t dst_be,
		    uint16_t sport, uint16_t dport, const uint8_t *payload, size_t len);
/* Check an IPv4 frame: version, header length, total length, no fragment,
 * UDP, UDP length, header checksum.  On success *payload and *plen are the UDP
 * payload and the addresses and ports are returned.  -EBADMSG otherwise. */
int dhcp_ipudp_unwrap(const uint8_t *frame, size_t len, const uint8_t **payload,
		      size_t *plen, uint32_t *src_be, uint32_t *dst_be,
		      uint16_t *sport, uint16_t *dport);

/* ---- ARP (RFC 826 for Ethernet/IPv4, RFC 5227 probes) ---- */

#define ARP_PKT_LEN	28

struct arp_pkt {
	uint16_t op;		/* 1 request, 2 reply */
	uint8_t sha[6], tha[6];
	uint32_t spa_be, tpa_be;
};

int arp_parse(struct arp_pkt *a, const uint8_t *buf, size_t len);
/* A probe: op request, spa 0, tpa = ip (RFC 5227 2.1.1).  Writes 28 bytes. */
void arp_build(uint8_t out[ARP_PKT_LEN], uint16_t op, const uint8_t sha[6],
	       uint32_t spa_be, const uint8_t tha[6], uint32_t tpa_be);

/* Internet checksum over buf, folded, not complemented (start with sum 0). */
uint32_t inet_csum_add(uint32_t sum, const void *buf, size_t len);
uint16_t inet_csum_fold(uint32_t sum);

const char *dhcp_msg_type_name(unsigned int type);

#endif
