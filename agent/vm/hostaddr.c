// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Keeps rayos_host4/6 equal to the host's addresses (see hostaddr.h).  A
 * notification only says "something changed": the whole table is dumped
 * again and handed to the loader, which writes before it deletes, so an
 * address that stays is never missing from the maps, even for a moment.
 */
#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent/core/log.h"
#include "agent/vm/hostaddr.h"
#include "bpf/abi/net.h"
#include "loader/loader.h"
#include "loader/publish.h"

struct hostaddr {
	struct loader *ld;
	int fd;			/* RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR */
	size_t count;
	struct loader_host_addr *addrs;
	size_t cap;
};

static int add(struct hostaddr *h, size_t *n, uint8_t family, const void *addr, size_t len,
	       uint32_t ifindex, uint32_t flags)
{
	struct loader_host_addr *a;

	if (*n == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 64;

		a = realloc(h->addrs, cap * sizeof(*a));
		if (!a)
			return -ENOMEM;
		h->addrs = a;
		h->cap = cap;
	}
	a = &h->addrs[(*n)++];
	memset(a, 0, sizeof(*a));
	a->family = family;
	memcpy(a->addr, addr, len);
	a->ifindex = ifindex;
	a->flags = flags;
	return 0;
}

/* One RTM_NEWADDR: the local address, and for IPv4 its directed broadcast
 * (the host's stack receives that too). */
static int parse_addr(struct hostaddr *h, size_t *n, struct nlmsghdr *nh)
{
	struct ifaddrmsg *ifa = NLMSG_DATA(nh);
	int len = (int)nh->nlmsg_len - (int)NLMSG_LENGTH(sizeof(*ifa));
	const void *local = NULL, *address = NULL, *bcast = NULL;
	size_t alen = ifa->ifa_family == AF_INET ? 4 : 16;
	int err = 0;

	if (len < 0 || (ifa->ifa_family != AF_INET && ifa->ifa_family != AF_INET6))
		return 0;
	for (struct rtattr *rta = IFA_RTA(ifa); RTA_OK(rta, len); rta = RTA_NEXT(rta, len)) {
		if (RTA_PAYLOAD(rta) < alen)
			continue;
		if (rta->rta_type == IFA_LOCAL)
			local = RTA_DATA(rta);
		else if (rta->rta_type == IFA_ADDRESS)
			address = RTA_DATA(rta);
		else if (rta->rta_type == IFA_BROADCAST)
			bcast = RTA_DATA(rta);
	}
	/* On point-to-point links IFA_ADDRESS is the peer, IFA_LOCAL ours. */
	if (local || address)
		err = add(h, n, ifa->ifa_family, local ? local : address, alen, ifa->ifa_index, 0);
	if (!err && bcast && ifa->ifa_family == AF_INET)
		err = add(h, n, AF_INET, bcast, 4, ifa->ifa_index, RAYOS_HOSTF_BROADCAST);
	return err;
}

/* Every address of every interface, by one RTM_GETADDR dump. */
static int dump(struct hostaddr *h, size_t *n)
{
	struct {
		struct nlmsghdr nh;
		struct ifaddrmsg ifa;
	} req = {
		.nh = { .nlmsg_len = sizeof(req), .nlmsg_type = RTM_GETADDR,
			.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP, .nlmsg_seq = 1 },
		.ifa = { .ifa_family = AF_UNSPEC },
	};
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
	char buf[16384];
	int fd, err = 0;
	bool done = false;

	*n = 0;
	fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (fd < 0)
		return -errno;
	if (sendto(fd, &req, sizeof(req), 0, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		err = -errno;
		goto out;
	}
	while (!done && !err) {
		ssize_t len = recv(fd, buf, sizeof(buf), 0);

		if (len < 0) {
			err = -errno;
			break;
		}
		for (struct nlmsghdr *nh = (struct nlmsghdr *)buf; NLMSG_OK(nh, (size_t)len);
		     nh = NLMSG_NEXT(nh, len)) {
			if (nh->nlmsg_type == NLMSG_DONE) {
				done = true;
				break;
			}
			if (nh->nlmsg_type == NLMSG_ERROR) {
				err = -EPROTO;
				break;
			}
			if (nh->nlmsg_type == RTM_NEWADDR)
				err = parse_addr(h, n, nh);
			if (err)
				break;
		}
	}
out:
	close(fd);
	return err;
}

static void sync_maps(struct hostaddr *h)
{
	size_t n;
	int err = dump(h, &n);

	if (err) {
		log_err("cannot read the host's addresses: %s; guests' traffic to the host is "
			"judged against the addresses read before", strerror(-err));
		return;
	}
	err = loader_host_addrs_sync(h->ld, h->addrs, n);
	if (err == -E2BIG)
		log_err("the host has more than %d addresses of a family: guests can reach "
			"the ones beyond that without the \"host\" rules", RAYOS_HOST_ADDRS);
	else if (err)
		log_err("cannot write the host's addresses: %s", strerror(-err));
	if (n != h->count)
		log_info("host protection: %zu addresses of the host", n);
	h->count = n;
}

int hostaddr_open(struct loader *ld, struct hostaddr **out)
{
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK,
				  .nl_groups = RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR };
	struct hostaddr *h;
	int err;

	*out = NULL;
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->ld = ld;
	h->fd = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (h->fd < 0 || bind(h->fd, (struct sockaddr *)&sa, sizeof(sa))) {
		err = -errno;
		hostaddr_close(h);
		return err;
	}
	/* Subscribed first, then dumped: no change falls in between. */
	sync_maps(h);
	*out = h;
	return 0;
}

int hostaddr_fd(const struct hostaddr *h)
{
	return h ? h->fd : -1;
}

void hostaddr_event(struct hostaddr *h)
{
	char buf[8192];

	/* The contents do not matter; a full dump follows.  An overrun
	 * (ENOBUFS) says the same: something changed. */
	while (recv(h->fd, buf, sizeof(buf), MSG_DONTWAIT) > 0 || errno == ENOBUFS)
		;
	sync_maps(h);
}

size_t hostaddr_count(const struct hostaddr *h)
{
	return h ? h->count : 0;
}

void hostaddr_close(struct hostaddr *h)
{
	if (!h)
		return;
	if (h->fd >= 0)
		close(h->fd);
	free(h->addrs);
	free(h);
}
