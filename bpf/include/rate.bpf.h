/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Per-VM, per-direction byte token bucket (rayos_dir_policy.rate_bytes and
 * burst_bytes), and per-VM packet buckets for link-control messages.  Refill and spend happen under one bpf_spin_lock so CPUs
 * cannot spend the same tokens twice; the arithmetic saturates instead of
 * wrapping for any rate up to UINT64_MAX and any idle time.
 */
#ifndef RAYOS_RATE_BPF_H
#define RAYOS_RATE_BPF_H

#include "maps.bpf.h"
#include "stats.bpf.h"

static __always_inline __u64 sat_add(__u64 a, __u64 b)
{
	return a + b < a ? ~0ULL : a + b;
}

/*
 * min(burst, elapsed_ns * rate / 1e9) without overflow.  Whole seconds: if
 * there are more than burst / rate of them the bucket is full anyway, else
 * secs * rate <= burst.  The sub-second rest is split by rate so that each
 * product stays below rate resp. 1e18.  (The obvious "rate > ~0 / secs"
 * test makes clang emit a 128-bit multiply, which BPF cannot call.)
 */
static __always_inline __u64 tbf_refill(__u64 elapsed_ns, __u64 rate, __u64 burst)
{
	__u64 secs = elapsed_ns / RAYOS_NSEC_PER_SEC;
	__u64 ns = elapsed_ns % RAYOS_NSEC_PER_SEC;	/* < 2^30 */
	__u64 whole = 0, part;

	if (secs) {
		if (secs > burst / rate)
			return burst;
		whole = secs * rate;
	}
	part = ns * (rate / RAYOS_NSEC_PER_SEC) +
	       ns * (rate % RAYOS_NSEC_PER_SEC) / RAYOS_NSEC_PER_SEC;
	return sat_add(whole, part);
}

/* Refill b at rate up to burst and take cost tokens if there are that
 * many.  The caller looked b up; rate is not 0. */
static __always_inline bool tbf_take(struct rayos_tbf *b, __u64 rate, __u64 burst, __u64 cost)
{
	__u64 now = bpf_ktime_get_boot_ns();	/* rayos_tbf.last_ns is CLOCK_BOOTTIME */
	__u64 tokens, refill;
	bool ok;

	bpf_spin_lock(&b->lock);
	refill = tbf_refill(now > b->last_ns ? now - b->last_ns : 0, rate, burst);
	/* Advance the clock only when at least one token was earned, so that
	 * packets closer together than a token's worth of time cannot starve
	 * the refill by throwing the fraction away each time. */
	if (refill)
		b->last_ns = now;
	tokens = sat_add(b->tokens, refill);
	if (tokens > burst)
		tokens = burst;
	ok = tokens >= cost;
	if (ok)
		tokens -= cost;
	b->tokens = tokens;
	bpf_spin_unlock(&b->lock);
	return ok;
}

/*
 * May `len` bytes pass in this direction now?  rate 0 means unlimited.
 * burst 0 means one second's worth (the compiler normally sets it).  A slot
 * outside rayos_tbf fails open: the bucket is a resource control, and a
 * broken slot is already visible as missing counters.
 */
static __always_inline bool tbf_admit(__u32 slot, __u32 dir,
				      const struct rayos_dir_policy *dp, __u32 len)
{
	__u64 rate = dp->rate_bytes, burst = dp->burst_bytes;
	__u32 idx = slot * RAYOS_DIR_MAX + dir;
	struct rayos_tbf *b;

	if (!rate)
		return true;
	if (!burst)
		burst = rate;
	b = bpf_map_lookup_elem(&rayos_tbf, &idx);
	if (!b)
		return true;
	return tbf_take(b, rate, burst, len);
}

/*
 * May one more link-control message of this kind leave the VM now?  Same
 * bucket, counted in packets (rayos_vm.ctl).  Fails open on a slot outside
 * the map, like tbf_admit.  Only ARP, ND and DHCP pay for it, never data.
 */
static __always_inline bool ctl_admit(const struct rayos_vm *vm, __u32 kind)
{
	const struct rayos_ctl_limit *lim = &vm->ctl[kind & (RAYOS_CTL_MAX - 1)];
	__u32 idx = vm->slot * RAYOS_CTL_MAX + (kind & (RAYOS_CTL_MAX - 1));
	__u64 rate = lim->rate, burst = lim->burst;
	struct rayos_tbf *b;

	if (!rate)
		return true;
	if (!burst)
		burst = rate;
	b = bpf_map_lookup_elem(&rayos_ctl_rate, &idx);
	if (!b)
		return true;
	return tbf_take(b, rate, burst, 1);
}

#endif /* RAYOS_RATE_BPF_H */
