/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Counters and drop events of the network programs, read for the agent. */
#ifndef RAYOS_STATS_H
#define RAYOS_STATS_H

#include <stdint.h>

#include "bpf/abi/net.h"
#include "loader/loader.h"

/* Counters summed over CPUs where they are per CPU.  slot is rayos_vm.slot. */
int loader_vm_stats(const struct loader *ld, uint32_t slot, struct rayos_vm_stats *out);
int loader_rule_stats(const struct loader *ld, uint32_t slot, int dir, int rule,
		      struct rayos_ctr *out);
int loader_net_counters(const struct loader *ld, __u64 out[RAYOS_NETC_MAX]);

/* Clear a slot's counters, token buckets and event limiter. */
int loader_zero_slot(struct loader *ld, uint32_t slot);

/* Drop events: fn runs for each record during loader_events_consume(). */
typedef void (*loader_event_fn)(void *ctx, const struct rayos_event *ev);
struct loader_events;
int loader_events_open(struct loader *ld, loader_event_fn fn, void *ctx,
		       struct loader_events **out);
int loader_events_fd(const struct loader_events *ev);	/* for epoll */
int loader_events_consume(struct loader_events *ev);
void loader_events_close(struct loader_events *ev);

#endif
