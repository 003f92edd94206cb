// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * DHCPv4 packet parser and builder.  Every length is checked against the
 * field it lives in before it is used; nothing here allocates, so the fuzzer
 * drives exactly what the server runs.
 */
#include <errno.h>
#include <string.h>
#include <arpa/inet.h>

#include "agent/dhcp/dhcp_proto.h"

/* The three places options may live (RFC 2131 4.1, RFC 3396 order). */
struct opt_field {
	const uint8_t *p;
	size_t len;
};

/* Walk one field's TLVs.  pass 0 adds each option's length into the per-code
 * totals; pass 1 copies values to their slots.  A value that would run past
 * the field is malformed; a field without END is accepted, as every common
 * client and server does. */
static int walk_field(struct dhcp_msg *m, const struct opt_field *f, bool first,
		      int pass, uint32_t *total, uint16_t *fill)
{
	size_t i = 0;

	while (i < f->len) {
		uint8_t code = f->p[i], olen;

		if (code == DHO_PAD) {
			i++;
			continue;
		}
		if (code == DHO_END)
			return 0;
		if (i + 2 > f->len) {
			m->err = "option length byte past the end of its field";
			return -EBADMSG;
		}
		olen = f->p[i + 1];
		if (i + 2 + olen > f->len) {
			m->err = "option value past the end of its field";
			return -EBADMSG;
		}
		if (pass == 0 && code == DHO_OVERLOAD) {
			/* Only once, only in the options field (RFC 2131 4.1). */
			if (!first || m->opt[code].present || olen != 1) {
				m->err = "option overload repeated, misplaced or not 1 byte";
				return -EBADMSG;
			}
			m->overload = f->p[i + 2];
		}
		if (pass == 0) {
			total[code] += olen;
			m->opt[code].present = true;
		} else {
			memcpy(m->optbuf + m->opt[code].off + fill[code], f->p + i + 2, olen);
			fill[code] += olen;
		}
		i += 2 + (size_t)olen;
	}
	return 0;
}

static bool opt_u32(const struct dhcp_msg *m, uint8_t code, uint32_t *v)
{
	const struct dhcp_opt *o = &m->opt[code];

	if (!o->present || o->len != 4)
		return false;
	memcpy(v, m->optbuf + o->off, 4);
	return true;
}

int dhcp_parse(struct dhcp_msg *m, const uint8_t *pkt, size_t len)
{
	uint32_t total[256] = { 0 };
	uint16_t fill[256] = { 0 };
	struct opt_field fields[3];
	size_t nr_fields = 1, off = 0;
	uint32_t cookie;
	const struct dhcp_opt *o;
	size_t i;
	int err;

	memset(m->opt, 0, sizeof(m->opt));
	m->type = m->overload = 0;
	m->has_req_ip = m->has_server_id = m->has_lease_time = m->rapid_commit = false;
	m->req_ip_be = m->server_id_be = m->lease_time = 0;
	m->max_msg_size = 0;
	m->err = NULL;

	if (len > DHCP_MAX_LEN) {
		m->err = "message larger than DHCP_MAX_LEN";
		return -EMSGSIZE;
	}
	if (len < DHCP_MIN_LEN) {
		m->err = "truncated: shorter than header and magic cookie";
		return -EBADMSG;
	}
	memcpy(&m->hdr, pkt, DHCP_FIXED_LEN);
	memcpy(&cookie, pkt + DHCP_FIXED_LEN, 4);
	if (ntohl(cookie) != DHCP_MAGIC_COOKIE) {
		m->err = "no DHCP magic cookie";
		return -EBADMSG;
	}
	if (m->hdr.hlen > sizeof(m->hdr.chaddr)) {
		m->err = "hlen larger than chaddr";
		return -EBADMSG;
	}

	fields[0] = (struct opt_field){ pkt + DHCP_OPTIONS_OFF, len - DHCP_OPTIONS_OFF };
	err = walk_field(m, &fields[0], true, 0, total, fill);
	if (err)
		return err;
	/* Overload is only meaningful in the options field itself, so it is
	 * known before file and sname are walked. */
	if (m->opt[DHO_OVERLOAD].present) {
		if (m->overload < 1 || m->overload > 3) {
			m->err = "option overload: value not 1, 2 or 3";
			return -EBADMSG;
		}
		if (m->overload & 1)
			fields[nr_fields++] = (struct opt_field){ pkt + 108, 128 };
		if (m->overload & 2)
			fields[nr_fields++] = (struct opt_field){ pkt + 44, 64 };
		for (i = 1; i < nr_fields; i++) {
			err = walk_field(m, &fields[i], false, 0, total, fill);
			if (err)
				return err;
		}
	}

	/* Slots: the concatenated values cannot exceed the packet's length, which
	 * is at most DHCP_MAX_LEN, so optbuf always has room. */
	for (i = 0; i < 256; i++) {
		if (!m->opt[i].present)
			continue;
		if (off + total[i] > sizeof(m->optbuf) || total[i] > UINT16_MAX) {
			m->err = "options larger than the message";
			return -EBADMSG;
		}
		m->opt[i].off = (uint16_t)off;
		m->opt[i].len = (uint16_t)total[i];
		off += total[i];
	}
	for (i = 0; i < nr_fields; i++) {
		err = walk_field(m, &fields[i], i == 0, 1, total, fill);
		if (err)
			return err;
	}

	o = &m->opt[DHO_MSG_TYPE];
	if (o->present) {
		if (o->len != 1) {
			m->err = "message type: length is not 1";
			return -EBADMSG;
		}
		m->type = m->optbuf[o->off];
		if (m->type < 1 || m->type > DHCP_MSG_TYPE_MAX) {
			m->err = "message type out of range";
			return -EBADMSG;
		}
	}
	if (m->opt[DHO_REQUESTED_IP].present &&
	    !(m->has_req_ip = opt_u32(m, DHO_REQUESTED_IP, &m->req_ip_be))) {
		m->err = "requested address: length is not 4";
		return -EBADMSG;
	}
	if (m->opt[DHO_SERVER_ID].present &&
	    !(m->has_server_id = opt_u32(m, DHO_SERVER_ID, &m->server_id_be))) {
		m->err = "server identifier: length is not 4";
		return -EBADMSG;
	}
	if (m->opt[DHO_LEASE_TIME].present) {
		if (!(m->has_lease_time = opt_u32(m, DHO_LEASE_TIME, &m->lease_time))) {
			m->err = "lease time: length is not 4";
			return -EBADMSG;
		}
		m->lease_time = ntohl(m->lease_time);
	}
	o = &m->opt[DHO_MAX_MSG_SIZE];
	if (o->present) {
		if (o->len != 2) {
			m->err = "maximum message size: length is not 2";
			return -EBADMSG;
		}
		m->max_msg_size = (uint16_t)(m->optbuf[o->off] << 8 | m->optbuf[o->off + 1]);
	}
	o = &m->opt[DHO_CLIENT_ID];
	if (o->present && o->len < 2) {
		m->err = "client identifier shorter than 2 bytes";
		return -EBADMSG;
	}
	m->rapid_commit = m->opt[DHO_RAPID_COMMIT].present;
	return 0;
}

const uint8_t *dhcp_opt_get(const struct dhcp_msg *m, uint8_t code, size_t *len)
{
	const struct dhcp_opt *o = &m->opt[code];

	*len = o->present ? o->len : 0;
	return o->present ? m->optbuf + o->off : NULL;
}

void dhcp_build_init(struct dhcp_builder *b, uint8_t *buf, size_t cap,
		     const struct dhcp_hdr *hdr)
{
	uint32_t cookie = htonl(DHCP_MAGIC_COOKIE);

	b->buf = buf;
	b->cap = cap;
	b->len = 0;
	b->err = 0;
	if (cap < DHCP_BOOTP_MIN_LEN) {
		b->err = -EMSGSIZE;
		return;
	}
	memcpy(buf, hdr, DHCP_FIXED_LEN);
	memcpy(buf + DHCP_FIXED_LEN, &cookie, 4);
	b->len = DHCP_OPTIONS_OFF;
}

void dhcp_build_opt(struct dhcp_builder *b, uint8_t code, const void *val, size_t len)
{
	const uint8_t *v = val;

	/* Keep one byte for END. */
	do {
		size_t n = len > 255 ? 255 : len;

		if (b->err || b->len + 2 + n + 1 > b->cap) {
			b->err = -EMSGSIZE;
			return;
		}
		b->buf[b->len++] = code;
		b->buf[b->len++] = (uint8_t)n;
		if (n) {
			memcpy(b->buf + b->len, v, n);
			b->len += n;
			v += n;
			len -= n;
		}
	} while (len);
}

void dhcp_build_opt_u8(struct dhcp_builder *b, uint8_t code, uint8_t v)
{
	dhcp_build_opt(b, code, &v, 1);
}

void dhcp_build_opt_u16(struct dhcp_builder *b, uint8_t code, uint16_t v)
{
	uint16_t be = htons(v);

	dhcp_build_opt(b, code, &be, 2);
}

void dhcp_build_opt_u32(struct dhcp_builder *b, uint8_t code, uint32_t v)
{
	uint32_t be = htonl(v);

	dhcp_build_opt(b, code, &be, 4);
}

int dhcp_build_finish(struct dhcp_builder *b)
{
	if (b->err)
		return b->err;
	if (b->len + 1 > b->cap)
		return b->err = -EMSGSIZE;
	b->buf[b->len++] = DHO_END;
	if (b->len < DHCP_BOOTP_MIN_LEN) {
		memset(b->buf + b->len, 0, DHCP_BOOTP_MIN_LEN - b->len);
		b->len = DHCP_BOOTP_MIN_LEN;
	}
	return (int)b->len;
}

uint32_t inet_csum_add(uint32_t sum, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	size_t i;

	for (i = 0; i + 1 < len; i += 2)
		sum += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (len & 1)
		sum += (uint32_t)p[len - 1] << 8;
	/* Fold early so long buffers cannot overflow 32 bits. */
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return sum;
}

uint16_t inet_csum_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)sum;
}

int dhcp_ipudp_wrap(uint8_t *out, size_t cap, uint32_t src_be, uint32_t dst_be,
		    uint16_t sport, uint16_t dport, const uint8_t *payload, size_t len)
{
	size_t tot = DHCP_IPUDP_HDR_LEN + len;
	uint8_t *ip = out, *udp = out + 20;
	uint8_t pseudo[12];
	uint32_t sum;
	uint16_t c;

	if (tot > cap || tot > 0xffff)
		return -EMSGSIZE;
	memset(out, 0, DHCP_IPUDP_HDR_LEN);
	ip[0] = 0x45;
	ip[2] = (uint8_t)(tot >> 8);
	ip[3] = (uint8_t)tot;
	ip[6] = 0x40;			/* DF */
	ip[8] = 64;
	ip[9] = 17;
	memcpy(ip + 12, &src_be, 4);
	memcpy(ip + 16, &dst_be, 4);
	c = (uint16_t)~inet_csum_fold(inet_csum_add(0, ip, 20));
	ip[10] = (uint8_t)(c >> 8);
	ip[11] = (uint8_t)c;

	udp[0] = (uint8_t)(sport >> 8);
	udp[1] = (uint8_t)sport;
	udp[2] = (uint8_t)(dport >> 8);
	udp[3] = (uint8_t)dport;
	udp[4] = (uint8_t)((len + 8) >> 8);
	udp[5] = (uint8_t)(len + 8);
	memmove(out + DHCP_IPUDP_HDR_LEN, payload, len);

	memcpy(pseudo, &src_be, 4);
	memcpy(pseudo + 4, &dst_be, 4);
	pseudo[8] = 0;
	pseudo[9] = 17;
	pseudo[10] = udp[4];
	pseudo[11] = udp[5];
	sum = inet_csum_add(0, pseudo, sizeof(pseudo));
	sum = inet_csum_add(sum, udp, 8 + len);
	c = (uint16_t)~inet_csum_fold(sum);
	if (!c)
		c = 0xffff;
	udp[6] = (uint8_t)(c >> 8);
	udp[7] = (uint8_t)c;
	return (int)tot;
}

int dhcp_ipudp_unwrap(const uint8_t *frame, size_t len, const uint8_t **payload,
		      size_t *plen, uint32_t *src_be, uint32_t *dst_be,
		      uint16_t *sport, uint16_t *dport)
{
	size_t ihl, tot, ulen;

	if (len < 20 || (frame[0] >> 4) != 4)
		return -EBADMSG;
	ihl = (size_t)(frame[0] & 0xf) * 4;
	tot = (size_t)(frame[2] << 8 | frame[3]);
	if (ihl < 20 || tot < ihl + 8 || tot > len)
		return -EBADMSG;
	if ((frame[6] & 0x3f) || frame[7] || frame[9] != 17)
		return -EBADMSG;	/* fragment, or not UDP */
	if (inet_csum_fold(inet_csum_add(0, frame, ihl)) != 0xffff)
		return -EBADMSG;
	ulen = (size_t)(frame[ihl + 4] << 8 | frame[ihl + 5]);
	if (ulen < 8 || ihl + ulen > tot)
		return -EBADMSG;
	memcpy(src_be, frame + 12, 4);
	memcpy(dst_be, frame + 16, 4);
	*sport = (uint16_t)(frame[ihl] << 8 | frame[ihl + 1]);
	*dport = (uint16_t)(frame[ihl + 2] << 8 | frame[ihl + 3]);
	*payload = frame + ihl + 8;
	*plen = ulen - 8;
	return 0;
}

int arp_parse(struct arp_pkt *a, const uint8_t *b, size_t len)
{
	if (len < ARP_PKT_LEN)
		return -EBADMSG;
	/* Ethernet (1), IPv4 (0x0800), 6-byte and 4-byte addresses. */
	if (b[0] != 0 || b[1] != 1 || b[2] != 0x08 || b[3] != 0 || b[4] != 6 || b[5] != 4)
		return -EBADMSG;
	a->op = (uint16_t)(b[6] << 8 | b[7]);
	memcpy(a->sha, b + 8, 6);
	memcpy(&a->spa_be, b + 14, 4);
	memcpy(a->tha, b + 18, 6);
	memcpy(&a->tpa_be, b + 24, 4);
	return 0;
}

void arp_build(uint8_t out[ARP_PKT_LEN], uint16_t op, const uint8_t sha[6],
	       uint32_t spa_be, const uint8_t tha[6], uint32_t tpa_be)
{
	static const uint8_t hdr[6] = { 0, 1, 0x08, 0, 6, 4 };

	memcpy(out, hdr, 6);
	out[6] = (uint8_t)(op >> 8);
	out[7] = (uint8_t)op;
	memcpy(out + 8, sha, 6);
	memcpy(out + 14, &spa_be, 4);
	memcpy(out + 18, tha, 6);
	memcpy(out + 24, &tpa_be, 4);
}

const char *dhcp_msg_type_name(unsigned int type)
{
	static const char *const names[] = {
		[DHCPDISCOVER] = "DISCOVER", [DHCPOFFER] = "OFFER",
		[DHCPREQUEST] = "REQUEST", [DHCPDECLINE] = "DECLINE",
		[DHCPACK] = "ACK", [DHCPNAK] = "NAK", [DHCPRELEASE] = "RELEASE",
		[DHCPINFORM] = "INFORM",
	};

	if (type < sizeof(names) / sizeof(names[0]) && names[type])
		return names[type];
	return "UNKNOWN";
}
