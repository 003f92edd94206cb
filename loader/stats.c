// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Reading what the network programs count: per-CPU cells summed over the
 * possible CPUs, and the drop-event ring buffer.  Also clears a VM slot's
 * cells before the slot goes to another VM.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "agent/core/log.h"
#include "loader/loader_internal.h"
#include "loader/stats.h"

static int nr_cpus(void)
{
	static int n;

	if (!n)
		n = libbpf_num_possible_cpus();
	return n;
}

/* Look key up in a per-CPU map and add every CPU's value into sum, whose
 * layout is an array of nr_u64 counters. */
int loader_percpu_sum(int fd, __u32 key, __u64 *sum, size_t nr_u64)
{
	size_t stride = (nr_u64 * sizeof(__u64) + 7) & ~7UL;
	int cpus = nr_cpus();
	__u64 *vals;

	if (cpus <= 0)
		return cpus ?: -EINVAL;
	vals = calloc(cpus, stride);
	if (!vals)
		return -ENOMEM;
	if (bpf_map_lookup_elem(fd, &key, vals)) {
		int err = -errno;

		free(vals);
		return err;
	}
	memset(sum, 0, nr_u64 * sizeof(__u64));
	for (int c = 0; c < cpus; c++)
		for (size_t i = 0; i < nr_u64; i++)
			sum[i] += vals[c * (stride / sizeof(__u64)) + i];
	free(vals);
	return 0;
}

int loader_vm_stats(const struct loader *ld, uint32_t slot, struct rayos_vm_stats *out)
{
	return loader_percpu_sum(ld->map_fds[RAYOS_MAP_VM_STATS], slot, (__u64 *)out,
			  sizeof(*out) / sizeof(__u64));
}

/* Rule counters are one shared cell per rule (atomic adds), not per CPU:
 * see rayos_rule_stats in bpf/include/maps.bpf.h. */
int loader_rule_stats(const struct loader *ld, uint32_t slot, int dir, int rule,
		      struct rayos_ctr *out)
{
	__u32 key = RAYOS_RULE_STATS_IDX(slot, dir, rule);

	return bpf_map_lookup_elem(ld->map_fds[RAYOS_MAP_RULE_STATS], &key, out) ? -errno : 0;
}

int loader_net_counters(const struct loader *ld, __u64 out[RAYOS_NETC_MAX])
{
	for (__u32 i = 0; i < RAYOS_NETC_MAX; i++) {
		int err = loader_percpu_sum(ld->map_fds[RAYOS_MAP_NET_STATS], i, &out[i], 1);

		if (err)
			return err;
	}
	return 0;
}

/* Write zeroes to key of a (per-CPU or plain) map. */
int loader_cell_zero(int fd, __u32 key, size_t value_size, bool percpu)
{
	size_t len = percpu ? nr_cpus() * ((value_size + 7) & ~7UL) : value_size;
	void *zero = calloc(1, len);
	int err = 0;

	if (!zero)
		return -ENOMEM;
	if (bpf_map_update_elem(fd, &key, zero, BPF_ANY))
		err = -errno;
	free(zero);
	return err;
}

/* The slot's rule counters (plain cells) in one batched update. */
static int zero_rule_cells(int fd, uint32_t slot)
{
	enum { N = RAYOS_DIR_MAX * RAYOS_MAX_RULES };
	LIBBPF_OPTS(bpf_map_batch_opts, opts);
	__u32 keys[N], count = N;
	size_t len = sizeof(struct rayos_ctr) * N;
	void *zero = calloc(1, len);
	int err = 0;

	if (!zero)
		return -ENOMEM;
	for (int i = 0; i < N; i++)
		keys[i] = RAYOS_RULE_STATS_IDX(slot, 0, 0) + i;
	if (bpf_map_update_batch(fd, keys, zero, &count, &opts))
		err = -errno;
	free(zero);
	return err;
}

int loader_zero_slot(struct loader *ld, uint32_t slot)
{
	int err = 0;

	err = err ?: loader_cell_zero(ld->map_fds[RAYOS_MAP_VM_STATS], slot,
			       sizeof(struct rayos_vm_stats), true);
	err = err ?: zero_rule_cells(ld->map_fds[RAYOS_MAP_RULE_STATS], slot);
	/* A zeroed bucket refills to full on its first packet. */
	for (int d = 0; d < RAYOS_DIR_MAX && !err; d++)
		err = loader_cell_zero(ld->map_fds[RAYOS_MAP_TBF], slot * RAYOS_DIR_MAX + d,
				sizeof(struct rayos_tbf), false);
	err = err ?: loader_cell_zero(ld->map_fds[RAYOS_MAP_EV_RATE], slot, sizeof(__u64), true);
	for (int k = 0; k < RAYOS_CTL_MAX && !err; k++)
		err = loader_cell_zero(ld->map_fds[RAYOS_MAP_CTL_RATE], slot * RAYOS_CTL_MAX + k,
				       sizeof(struct rayos_tbf), false);
	if (err)
		log_warn("slot %u: cannot clear its counters: %s", slot, strerror(-err));
	return err;
}

/* ---- drop events ---- */

struct loader_events {
	struct ring_buffer *rb;
	loader_event_fn fn;
	void *ctx;
};

static int on_sample(void *ctx, void *data, size_t len)
{
	struct loader_events *ev = ctx;

	if (len < sizeof(struct rayos_event))
		return 0;	/* not ours: ignore rather than stop consuming */
	ev->fn(ev->ctx, data);
	return 0;
}

int loader_events_open(struct loader *ld, loader_event_fn fn, void *ctx,
		       struct loader_events **out)
{
	struct loader_events *ev = calloc(1, sizeof(*ev));

	if (!ev)
		return -ENOMEM;
	ev->fn = fn;
	ev->ctx = ctx;
	ev->rb = ring_buffer__new(ld->map_fds[RAYOS_MAP_EVENTS], on_sample, ev, NULL);
	if (!ev->rb) {
		int err = -errno;

		free(ev);
		return err;
	}
	*out = ev;
	return 0;
}

int loader_events_fd(const struct loader_events *ev)
{
	return ring_buffer__epoll_fd(ev->rb);
}

int loader_events_consume(struct loader_events *ev)
{
	return ring_buffer__consume(ev->rb);
}

void loader_events_close(struct loader_events *ev)
{
	if (!ev)
		return;
	ring_buffer__free(ev->rb);
	free(ev);
}
