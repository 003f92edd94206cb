/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Helpers the DHCP unit tests share: build a client message into a parsed
 * struct dhcp_msg the way a real client would put it on the wire. */
#ifndef RAYOS_TESTS_DHCP_UTIL_H
#define RAYOS_TESTS_DHCP_UTIL_H

#include <arpa/inet.h>
#include <string.h>

#include "agent/dhcp/dhcp_proto.h"

struct cmsg_opts {
	uint32_t req_ip, server_id, ciaddr, giaddr;	/* host order, 0 = absent */
	bool broadcast, rapid;
	const char *relay;				/* option 82 bytes, NUL-terminated */
	const char *client_id;
	uint32_t xid;
};

static inline int client_msg(struct dhcp_msg *m, uint8_t type, const uint8_t mac[6],
			     const struct cmsg_opts *o)
{
	static const struct cmsg_opts none;
	uint8_t buf[1024];
	struct dhcp_builder b;
	struct dhcp_hdr h;
	int len;

	if (!o)
		o = &none;
	memset(&h, 0, sizeof(h));
	h.op = BOOTREQUEST;
	h.htype = 1;
	h.hlen = 6;
	h.xid_be = htonl(o->xid ? o->xid : 0x1234);
	h.ciaddr_be = htonl(o->ciaddr);
	h.giaddr_be = htonl(o->giaddr);
	if (o->broadcast)
		h.flags_be = htons(DHCP_FLAG_BROADCAST);
	memcpy(h.chaddr, mac, 6);
	dhcp_build_init(&b, buf, sizeof(buf), &h);
	dhcp_build_opt_u8(&b, DHO_MSG_TYPE, type);
	if (o->req_ip)
		dhcp_build_opt_u32(&b, DHO_REQUESTED_IP, o->req_ip);
	if (o->server_id)
		dhcp_build_opt_u32(&b, DHO_SERVER_ID, o->server_id);
	if (o->rapid)
		dhcp_build_opt(&b, DHO_RAPID_COMMIT, NULL, 0);
	if (o->client_id)
		dhcp_build_opt(&b, DHO_CLIENT_ID, o->client_id, strlen(o->client_id));
	if (o->relay)
		dhcp_build_opt(&b, DHO_RELAY_INFO, o->relay, strlen(o->relay));
	len = dhcp_build_finish(&b);
	if (len < 0)
		return len;
	return dhcp_parse(m, buf, (size_t)len);
}

#endif
