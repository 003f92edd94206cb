// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Keeps each VM's tap attached: after every policy apply, at start, and
 * whenever the kernel announces a link (RTM_NEWLINK), so a tap that QEMU
 * recreates is enforced again before the guest sends its first frame.
 */
#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent/core/log.h"
#include "agent/vm/ifwatch.h"
#include "agent/vm/shaper.h"
#include "loader/attach.h"

/* The shaping a VM got last, so an unchanged VM is not reconfigured (a
 * replaced qdisc would drop its queue). */
struct shaped_vm {
	uint32_t id;
	int tap_ifindex;
	struct shaper_rates rates;
	struct shaper_state st;
};

struct ifwatch {
	struct loader *ld;
	int fd;
	struct shaped_vm *vms;
	size_t nr_vms;
};

_Static_assert((int)SHAPER_IN == (int)RAYOS_DIR_IN && (int)SHAPER_OUT == (int)RAYOS_DIR_OUT,
	       "shaper directions are the policy's");

static struct shaped_vm *shaped_find(struct ifwatch *w, uint32_t id, bool add)
{
	struct shaped_vm *grown;

	for (size_t i = 0; i < w->nr_vms; i++)
		if (w->vms[i].id == id)
			return &w->vms[i];
	if (!add)
		return NULL;
	grown = realloc(w->vms, (w->nr_vms + 1) * sizeof(*grown));
	if (!grown)
		return NULL;
	w->vms = grown;
	memset(&grown[w->nr_vms], 0, sizeof(*grown));
	grown[w->nr_vms].id = id;
	return &grown[w->nr_vms++];
}

void ifwatch_detach(struct ifwatch *w, uint32_t id)
{
	struct shaped_vm *sv = shaped_find(w, id, false);
	int tap = loader_vm_ifindex(w->ld, id);

	/* Programs first: nothing may redirect to the ifb once it is gone. */
	loader_detach_vm(w->ld, id);
	shaper_remove(id, sv ? sv->tap_ifindex : tap);
	if (sv)
		*sv = w->vms[--w->nr_vms];
}

/* Attach one VM if its interface exists; quiet when nothing changes. */
static void attach_vm(struct ifwatch *w, const struct policy_vm *vm)
{
	struct shaper_rates rates = {};
	struct shaped_vm *sv;
	int ifindex, err;
	bool was;

	if (!vm->iface[0]) {
		/* The policy no longer names a tap: stop enforcing on the old one. */
		if (loader_vm_ifindex(w->ld, vm->id) || shaped_find(w, vm->id, false))
			ifwatch_detach(w, vm->id);
		return;
	}
	ifindex = if_nametoindex(vm->iface);
	if (!ifindex) {
		log_info("VM %u (%s): interface %s is not there yet; attaching when it "
			 "appears", vm->id, vm->name, vm->iface);
		return;
	}
	for (int d = 0; d < RAYOS_DIR_MAX; d++)	/* the policy's or CAP_NETWORK's, the lower */
		rates.rate[d] = policy_vm_rate(vm, d, &rates.burst[d]);
	sv = shaped_find(w, vm->id, true);
	if (!sv)
		return;
	if (sv->tap_ifindex != ifindex || memcmp(&sv->rates, &rates, sizeof(rates))) {
		shaper_apply(vm->id, ifindex, &rates, &sv->st);
		sv->tap_ifindex = ifindex;
		sv->rates = rates;
	}
	was = loader_vm_ifindex(w->ld, vm->id) == ifindex;
	err = loader_attach_vm(w->ld, vm->id, ifindex, sv->st.ifb_ifindex,
			       sv->st.shaped_in ? RAYOS_IFF_SHAPED_IN : 0);
	if (err)
		log_err("VM %u (%s): cannot enforce on %s: %s", vm->id, vm->name,
			vm->iface, strerror(-err));
	else if (!was)
		log_info("VM %u (%s): enforcing on %s (ifindex %d)", vm->id, vm->name,
			 vm->iface, ifindex);
}

struct strays {
	struct ifwatch *w;
	const struct policy_set *set;
};

static int detach_stray(void *ctx, uint32_t id)
{
	struct strays *st = ctx;

	if (st->set && policy_set_find(st->set, id))
		return 0;
	log_info("VM %u left the policy: detaching its programs", id);
	ifwatch_detach(st->w, id);
	return 0;
}

/* Detach VMs that have links pinned but are not in set (NULL: every VM). */
static void detach_strays(struct ifwatch *w, const struct policy_set *set)
{
	struct strays st = { .w = w, .set = set };

	loader_for_each_vm_link(loader_pin_root(w->ld), detach_stray, &st);
}

void ifwatch_detach_all(struct ifwatch *w)
{
	detach_strays(w, NULL);
}

void ifwatch_attach(struct ifwatch *w, const struct policy_vm *vm)
{
	attach_vm(w, vm);
}

void ifwatch_reconcile(struct ifwatch *w, const struct policy_set *set)
{
	for (size_t i = 0; i < set->nr_vms; i++)
		attach_vm(w, &set->vms[i]);
	detach_strays(w, set);
}

int ifwatch_open(struct loader *ld, struct ifwatch **out)
{
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK, .nl_groups = RTMGRP_LINK };
	struct ifwatch *w = calloc(1, sizeof(*w));
	int err;

	if (!w)
		return -ENOMEM;
	w->ld = ld;
	w->fd = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (w->fd < 0 || bind(w->fd, (struct sockaddr *)&sa, sizeof(sa))) {
		err = -errno;
		if (w->fd >= 0)
			close(w->fd);
		free(w);
		return err;
	}
	*out = w;
	return 0;
}

int ifwatch_fd(const struct ifwatch *w)
{
	return w->fd;
}

void ifwatch_close(struct ifwatch *w)
{
	if (!w)
		return;
	close(w->fd);
	free(w->vms);
	free(w);
}

/* Attach every VM whose interface a new-link message names. */
void ifwatch_event(struct ifwatch *w, const struct policy_set *set)
{
	int fd = w->fd;
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
				    loader_vm_ifindex(w->ld, set->vms[i].id) != ifi->ifi_index)
					attach_vm(w, &set->vms[i]);
			}
		}
	}
	if (n < 0 && errno == ENOBUFS) {
		/* We missed messages: look at every interface again. */
		log_warn("link notifications overflowed: re-checking every VM's tap");
		if (set)
			ifwatch_reconcile(w, set);
	}
}
