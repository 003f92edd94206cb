/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Counters and drop events of the network programs: per-CPU counters per VM
 * slot and per rule, host-wide per-CPU counters, and ring-buffer drop events
 * rate-limited per VM and CPU so a flood cannot swamp the agent.
 */
#ifndef RAYOS_STATS_BPF_H
#define RAYOS_STATS_BPF_H

#include "maps.bpf.h"
#include "parse.bpf.h"

#define RAYOS_NSEC_PER_SEC	1000000000ULL

/*
 * The data path's clock for its own state (flows, fragments, the event
 * limiter): CLOCK_MONOTONIC_COARSE.  Those compare against timeouts of
 * seconds, so a tick of resolution is plenty, and it costs a few ns where
 * bpf_ktime_get_boot_ns() costs ~17 ns here (kvm-clock; measured with
 * tests/net/bench_fw).  Like conntrack's jiffies it stops during suspend.
 * Values other programs read (lease expiry, token bucket, event
 * timestamps) stay CLOCK_BOOTTIME and read it only when they need it.
 */
static __always_inline __u64 rayos_now(void)
{
	return bpf_ktime_get_coarse_ns();
}

/* Drop events each VM may emit per second on each CPU (and the burst).  0
 * turns events off.  Set by the loader before load. */
const volatile __u32 rayos_events_per_sec = 50;

static __always_inline void net_count(__u32 id)
{
	__u64 *v = bpf_map_lookup_elem(&rayos_net_stats, &id);

	if (v)
		*v += 1;
}

/* A slot beyond the arrays is an agent bug; counting is then skipped rather
 * than letting accounting decide a verdict. */
static __always_inline void vm_count(__u32 slot, __u32 dir, __u32 reason, __u32 len)
{
	struct rayos_vm_stats *s = bpf_map_lookup_elem(&rayos_vm_stats, &slot);

	if (!s)
		return;
	/* Masks, not range checks: clang may drop a check it can prove,
	 * leaving the verifier without the bound. */
	dir &= RAYOS_DIR_MAX - 1;
	reason &= RAYOS_RSN_MAX - 1;
	s->c[dir][reason].packets += 1;
	s->c[dir][reason].bytes += len;
}

static __always_inline void rule_count(__u32 slot, __u32 dir, __u32 rule, __u32 len)
{
	__u32 idx = RAYOS_RULE_STATS_IDX(slot, dir, rule);
	struct rayos_ctr *c;

	if (rule >= RAYOS_MAX_RULES)
		return;
	c = bpf_map_lookup_elem(&rayos_rule_stats, &idx);
	if (!c)
		return;
	/* Shared by every CPU (see maps.bpf.h): atomic adds. */
	__sync_fetch_and_add(&c->packets, 1);
	__sync_fetch_and_add(&c->bytes, len);
}

/*
 * GCRA limiter: at most rayos_events_per_sec events per second and slot on
 * this CPU, bursting to the same number.  Per-CPU state needs no lock; the
 * host-wide ceiling is that times the number of CPUs.  now is the coarse
 * clock (rayos_now()): a tick of jitter does not matter to a limiter.
 */
static __always_inline bool event_admit(__u32 slot, __u64 now)
{
	__u64 rate = rayos_events_per_sec, interval, tau, tat;
	__u64 *state;

	if (!rate)
		return false;
	state = bpf_map_lookup_elem(&rayos_ev_rate, &slot);
	if (!state)
		return false;
	interval = RAYOS_NSEC_PER_SEC / rate;
	tau = RAYOS_NSEC_PER_SEC - interval;	/* burst - 1 intervals early */
	tat = *state > now ? *state : now;
	if (tat - now > tau)
		return false;
	*state = tat + interval;
	return true;
}

static __always_inline void emit_drop_event(__u32 slot, __u32 vm_id, __u8 dir,
					    __u8 reason, __u8 rule,
					    const struct rayos_pkt *p, __u32 len,
					    __u64 now)
{
	struct rayos_event *e;

	if (!event_admit(slot, now)) {
		net_count(RAYOS_NETC_EV_SUPPRESSED);
		return;
	}
	e = bpf_ringbuf_reserve(&rayos_events, sizeof(*e), 0);
	if (!e) {
		net_count(RAYOS_NETC_EV_LOST);
		return;
	}
	e->ts_ns = bpf_ktime_get_boot_ns();	/* ABI: CLOCK_BOOTTIME */
	e->vm_id = vm_id;
	e->pkt_len = len;
	e->dir = dir;
	e->reason = reason;
	e->rule = rule;
	e->proto = p->family ? p->proto : 0;
	e->family = p->family;
	e->pad = 0;
	e->eth_proto_be = p->eth_proto_be;
	e->sport = p->has_ports ? p->sport : 0;
	e->dport = p->has_ports ? p->dport : 0;
	e->pad2 = 0;
	__builtin_memcpy(e->saddr, p->saddr, 16);
	__builtin_memcpy(e->daddr, p->daddr, 16);
	bpf_ringbuf_submit(e, 0);
	net_count(RAYOS_NETC_EV_SENT);
}

#endif /* RAYOS_STATS_BPF_H */
