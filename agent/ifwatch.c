// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Keeps each VM's tap attached: after every policy apply, at start, and
 * whenever the kernel announces a link (RTM_NEWLINK), so a tap that QEMU
 * recreates is enforced again before the guest sends its first frame.
 */
#include <dirent.h>
#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent/ifwatch.h"
#include "agent/log.h"

/* Attach one VM if its interface exists; quiet when nothing changes. */
static void attach_vm(struct loader *ld, const struct policy_vm *vm)
{
	int ifindex, err;

	if (!vm->iface[0]) {
		/* The policy no longer names a tap: stop enforcing on the old one. */
		if (loader_vm_ifindex(ld, vm->id))
			loader_detach_vm(ld, vm->id);
		return;
	}
	ifindex = if_nametoindex(vm->iface);
	if (!ifindex) {
		log_info("VM %u (%s): interface %s is not there yet; attaching when it "
			 "appears", vm->id, vm->name, vm->iface);
		return;
	}
	bool was = loader_vm_ifindex(ld, vm->id) == ifindex;

	err = loader_attach_vm(ld, vm->id, ifindex);
	if (err)
		log_err("VM %u (%s): cannot enforce on %s: %s", vm->id, vm->name,
			vm->iface, strerror(-err));
	else if (!was)
		log_info("VM %u (%s): enforcing on %s (ifindex %d)", vm->id, vm->name,
			 vm->iface, ifindex);
}

/* Detach VMs that have links pinned but are no longer in the policy. */
static void detach_strays(struct loader *ld, const struct policy_set *set)
{
	char dir[PATH_MAX];
	struct dirent *de;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/links", loader_pin_root(ld));
	d = opendir(dir);
	if (!d)
		return;
	while ((de = readdir(d))) {
		unsigned int id;
		char suffix[8];

		if (sscanf(de->d_name, "vm%u_%7s", &id, suffix) != 2 ||
		    strcmp(suffix, "from") || policy_set_find(set, id))
			continue;
		log_info("VM %u left the policy: detaching its programs", id);
		loader_detach_vm(ld, id);
	}
	closedir(d);
}

void ifwatch_reconcile(struct loader *ld, const struct policy_set *set)
{
	for (size_t i = 0; i < set->nr_vms; i++)
		attach_vm(ld, &set->vms[i]);
	detach_strays(ld, set);
}

int ifwatch_open(void)
{
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK, .nl_groups = RTMGRP_LINK };
	int fd, err;

	fd = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

/* Attach every VM whose interface a new-link message names. */
void ifwatch_event(int fd, struct loader *ld, const struct policy_set *set)
{
	char buf[16384] __attribute__((aligned(NLMSG_ALIGNTO)));
	ssize_t n;

	while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) {
		for (struct nlmsghdr *nh = (struct nlmsghdr *)buf; NLMSG_OK(nh, (size_t)n);
		     nh = NLMSG_NEXT(nh, n)) {
			struct ifinfomsg *ifi = NLMSG_DATA(nh);
			int len = nh->nlmsg_len - NLMSG_LENGTH(sizeof(*ifi));
			const char *name = NULL;

			if (nh->nlmsg_type != RTM_NEWLINK || len < 0)
				continue;
			for (struct rtattr *rta = IFLA_RTA(ifi); RTA_OK(rta, len);
			     rta = RTA_NEXT(rta, len)) {
				if (rta->rta_type == IFLA_IFNAME)
					name = RTA_DATA(rta);
			}
			if (!name || !set)
				continue;
			for (size_t i = 0; i < set->nr_vms; i++) {
				if (!strcmp(set->vms[i].iface, name) &&
				    loader_vm_ifindex(ld, set->vms[i].id) != ifi->ifi_index)
					attach_vm(ld, &set->vms[i]);
			}
		}
	}
	if (n < 0 && errno == ENOBUFS) {
		/* We missed messages: look at every interface again. */
		log_warn("link notifications overflowed: re-checking every VM's tap");
		if (set)
			ifwatch_reconcile(ld, set);
	}
}
