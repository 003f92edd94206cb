/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The network programs' counters as the agent shows them: JSON for the CLI
 * (`vm list`, `vm stats`, `perf`) and Prometheus text for /metrics.  Both
 * read the same per-CPU maps through the loader, summed over CPUs.
 */
#ifndef RAYOS_NETSTATS_H
#define RAYOS_NETSTATS_H

#include <stdint.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "agent/policy/policy.h"
#include "bpf/abi/net.h"
#include "loader/loader.h"

/* Recent drop events kept in memory for `vm events` and /metrics. */
#define NETSTATS_RECENT	256

struct netstats {
	uint64_t events_received;	/* records read from the ring buffer */
	struct rayos_event recent[NETSTATS_RECENT];
	unsigned int recent_head, recent_len;
};

const char *netstats_reason_name(unsigned int reason);	/* NULL if unused */
const char *netstats_dir_name(unsigned int dir);

void netstats_record(struct netstats *ns, const struct rayos_event *ev);

/* {"vms": [...]} with per-direction totals and, with rules, per-rule
 * counters; only_id < 0 means every VM.  NULL and *err set on a bad id. */
cJSON *netstats_vms_json(struct loader *ld, const struct policy_set *set,
			 int64_t only_id, int with_rules, char *err, size_t errlen);

/* Host-wide counters and recent events as JSON (for `perf`). */
cJSON *netstats_perf_json(struct loader *ld, const struct netstats *ns);

/* Prometheus text exposition of every VM and host-wide counter. */
void netstats_prometheus(FILE *out, struct loader *ld, const struct policy_set *set,
			 const struct netstats *ns);

#endif
