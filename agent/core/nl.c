// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Minimal rtnetlink requests with an ack; see nl.h. */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent/core/nl.h"

/* Where the next attribute goes: inside buf, which follows the header. */
static void *tail(struct nl_req *r)
{
	return r->buf + NLMSG_ALIGN(r->nh.nlmsg_len) - sizeof(r->nh);
}

void nl_req_init(struct nl_req *r, unsigned short type, unsigned short flags,
		 const void *hdr, size_t hdr_len)
{
	memset(r, 0, sizeof(*r));
	r->nh.nlmsg_len = NLMSG_LENGTH(hdr_len);
	r->nh.nlmsg_type = type;
	r->nh.nlmsg_flags = flags;
	memcpy(r->buf, hdr, hdr_len);
}

struct rtattr *nl_put(struct nl_req *r, unsigned short type, const void *data, size_t len)
{
	struct rtattr *rta = tail(r);

	if (NLMSG_ALIGN(r->nh.nlmsg_len) + RTA_SPACE(len) > sizeof(*r))
		return NULL;	/* callers build small, fixed messages */
	rta->rta_type = type;
	rta->rta_len = RTA_LENGTH(len);
	if (len)
		memcpy(RTA_DATA(rta), data, len);
	r->nh.nlmsg_len = NLMSG_ALIGN(r->nh.nlmsg_len) + RTA_ALIGN(rta->rta_len);
	return rta;
}

void nl_nest_end(struct nl_req *r, struct rtattr *nest)
{
	if (nest)
		nest->rta_len = (char *)tail(r) - (char *)nest;
}

int nl_talk(struct nl_req *r)
{
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
	char buf[4096];
	int fd, err;
	ssize_t n;

	fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (fd < 0)
		return -errno;
	r->nh.nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
	r->nh.nlmsg_seq = 1;
	if (sendto(fd, r, r->nh.nlmsg_len, 0, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		err = -errno;
		goto out;
	}
	n = recv(fd, buf, sizeof(buf), 0);
	if (n < 0) {
		err = -errno;
		goto out;
	}
	err = -EPROTO;
	for (struct nlmsghdr *nh = (struct nlmsghdr *)buf; NLMSG_OK(nh, (size_t)n);
	     nh = NLMSG_NEXT(nh, n)) {
		if (nh->nlmsg_type == NLMSG_ERROR &&
		    nh->nlmsg_len >= NLMSG_LENGTH(sizeof(struct nlmsgerr))) {
			err = ((struct nlmsgerr *)NLMSG_DATA(nh))->error;
			break;
		}
	}
out:
	close(fd);
	return err;
}
