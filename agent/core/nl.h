/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * One rtnetlink request at a time: build a message (family header, then
 * attributes and nests), send it, wait for the kernel's ack.  Used for
 * qdiscs and ifb devices (shaper.c) and addresses and routes (DHCP client).
 */
#ifndef RAYOS_NL_H
#define RAYOS_NL_H

#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <stddef.h>

struct nl_req {
	struct nlmsghdr nh;
	char buf[1024];		/* family header, then attributes */
};

/* Start a request of type with flags (NLM_F_REQUEST|NLM_F_ACK are added
 * when it is sent) and a family header (tcmsg, ifinfomsg, ifaddrmsg…). */
void nl_req_init(struct nl_req *r, unsigned short type, unsigned short flags,
		 const void *hdr, size_t hdr_len);
/* Append an attribute; with data NULL and len 0 it opens a nest. */
struct rtattr *nl_put(struct nl_req *r, unsigned short type, const void *data, size_t len);
void nl_nest_end(struct nl_req *r, struct rtattr *nest);
/* Send and wait for the ack: 0 or the kernel's -errno. */
int nl_talk(struct nl_req *r);

#endif
