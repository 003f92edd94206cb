// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Per-VM bandwidth shaping with the kernel's tbf qdisc, set up over
 * rtnetlink.  Measured here with iperf3 (tests/net/test_live.sh): TCP through
 * a drop-only token bucket in BPF reached 3-6% of the configured rate, because
 * every drop throws away a whole 64 KiB GSO packet; a tbf queue holds packets
 * instead and stays within a few percent.  EDT (skb->tstamp + fq) would be
 * the BPF-native shaper, but this kernel has no sch_fq.
 *
 *  - host -> guest: tbf as the root qdisc of the tap (it runs after the tcx
 *    egress program, so only frames the firewall passed are queued);
 *  - guest -> host: a qdisc cannot delay ingress, so the tcx ingress program
 *    redirects passed frames to a per-VM ifb device ("rfb<ID>") whose root
 *    tbf queues them; ifb then re-injects them into the tap's receive path,
 *    marked so the tcx program does not see them twice.
 * The qdisc handle 0x7261 ("ra") marks ours: a qdisc someone else put on a
 * tap is never replaced or deleted.
 */
#include <errno.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent/core/log.h"
#include "agent/core/nl.h"
#include "agent/vm/shaper.h"

#define SHAPER_HANDLE		(0x7261U << 16)
#define SHAPER_LATENCY_NS	50000000ULL	/* queue at most 50 ms of traffic */

static void tc_init(struct nl_req *r, int type, int flags, int ifindex, __u32 handle)
{
	struct tcmsg tcm = {
		.tcm_family = AF_UNSPEC,
		.tcm_ifindex = ifindex,
		.tcm_parent = TC_H_ROOT,
		.tcm_handle = handle,
	};

	nl_req_init(r, type, flags, &tcm, sizeof(tcm));
}

/* Put (or replace) our tbf as the root qdisc of ifindex. */
static int tbf_set(int ifindex, uint64_t rate, uint64_t burst)
{
	struct tc_tbf_qopt q = {
		.rate.linklayer = TC_LINKLAYER_ETHERNET,
		.rate.rate = rate > UINT32_MAX ? UINT32_MAX : (__u32)rate,
	};
	uint64_t limit = rate * SHAPER_LATENCY_NS / 1000000000ULL + burst;
	__u32 burst32 = burst > UINT32_MAX ? UINT32_MAX : (__u32)burst;
	struct rtattr *opts;
	struct nl_req r;

	q.limit = limit > UINT32_MAX ? UINT32_MAX : (__u32)limit;
	tc_init(&r, RTM_NEWQDISC, NLM_F_CREATE | NLM_F_REPLACE, ifindex, SHAPER_HANDLE);
	nl_put(&r, TCA_KIND, "tbf", 4);
	opts = nl_put(&r, TCA_OPTIONS, NULL, 0);
	nl_put(&r, TCA_TBF_PARMS, &q, sizeof(q));
	if (rate > UINT32_MAX)
		nl_put(&r, TCA_TBF_RATE64, &rate, sizeof(rate));
	nl_put(&r, TCA_TBF_BURST, &burst32, sizeof(burst32));
	nl_nest_end(&r, opts);
	return nl_talk(&r);
}

/* Remove our root qdisc; a qdisc with another handle is not ours. */
static int tbf_del(int ifindex)
{
	struct nl_req r;
	int err;

	tc_init(&r, RTM_DELQDISC, 0, ifindex, SHAPER_HANDLE);
	err = nl_talk(&r);
	return err == -ENOENT || err == -EINVAL || err == -ENODEV ? 0 : err;
}

static void ifb_name(uint32_t vm_id, char name[IF_NAMESIZE])
{
	snprintf(name, IF_NAMESIZE, "rfb%u", vm_id);
}

static int link_up(int ifindex)
{
	struct ifinfomsg ifi = { .ifi_index = ifindex, .ifi_flags = IFF_UP, .ifi_change = IFF_UP };
	struct nl_req r;

	nl_req_init(&r, RTM_NEWLINK, 0, &ifi, sizeof(ifi));
	return nl_talk(&r);
}

static int ifb_ensure(uint32_t vm_id)
{
	struct ifinfomsg ifi = {};
	char name[IF_NAMESIZE];
	struct rtattr *info;
	struct nl_req r;
	int ifindex, err;

	ifb_name(vm_id, name);
	ifindex = if_nametoindex(name);
	if (!ifindex) {
		nl_req_init(&r, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &ifi, sizeof(ifi));
		nl_put(&r, IFLA_IFNAME, name, strlen(name) + 1);
		info = nl_put(&r, IFLA_LINKINFO, NULL, 0);
		nl_put(&r, IFLA_INFO_KIND, "ifb", 3);
		nl_nest_end(&r, info);
		err = nl_talk(&r);
		if (err && err != -EEXIST)
			return err;
		ifindex = if_nametoindex(name);
		if (!ifindex)
			return -ENODEV;
	}
	err = link_up(ifindex);
	return err ?: ifindex;
}

static void ifb_del(uint32_t vm_id)
{
	struct ifinfomsg ifi = {};
	char name[IF_NAMESIZE];
	struct nl_req r;

	ifb_name(vm_id, name);
	ifi.ifi_index = if_nametoindex(name);
	if (!ifi.ifi_index)
		return;
	nl_req_init(&r, RTM_DELLINK, 0, &ifi, sizeof(ifi));
	nl_talk(&r);
}

int shaper_apply(uint32_t vm_id, int tap_ifindex, const struct shaper_rates *want,
		 struct shaper_state *st)
{
	int err;

	st->ifb_ifindex = 0;
	st->shaped_in = false;
	if (want->rate[SHAPER_IN]) {
		err = tbf_set(tap_ifindex, want->rate[SHAPER_IN], want->burst[SHAPER_IN]);
		if (err) {
			log_warn("VM %u: cannot shape host->guest on ifindex %d with tbf (%s): "
				 "the BPF policer limits it instead", vm_id, tap_ifindex,
				 strerror(-err));
		} else {
			st->shaped_in = true;
		}
	} else {
		tbf_del(tap_ifindex);
	}
	if (want->rate[SHAPER_OUT]) {
		int ifb = ifb_ensure(vm_id);

		err = ifb < 0 ? ifb : tbf_set(ifb, want->rate[SHAPER_OUT], want->burst[SHAPER_OUT]);
		if (err)
			log_warn("VM %u: cannot shape guest->host through an ifb device (%s): "
				 "the BPF policer limits it instead", vm_id, strerror(-err));
		else
			st->ifb_ifindex = ifb;
	}
	return 0;
}

void shaper_remove(uint32_t vm_id, int tap_ifindex)
{
	if (tap_ifindex)
		tbf_del(tap_ifindex);
	ifb_del(vm_id);
}
