/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Degraded states of the agent: conditions in which enforcement goes on but
 * not as the operator asked (the policy directory is gone, a publish is held
 * back, a VM is quarantined, audit records cannot be written, the TPM does
 * not answer).  Each has the time it began and a sentence saying what to do;
 * `status` lists the active ones and /metrics exports them, so that an alert
 * can fire on any of them.  Pure bookkeeping: no I/O but the log lines on
 * transitions.
 */
#ifndef RAYOS_DEGRADED_H
#define RAYOS_DEGRADED_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <cjson/cJSON.h>

enum degraded_kind {
	DEG_POLICY_DIR_MISSING = 0,	/* the policy directory is not there */
	DEG_POLICY_DIR_REPLACED,	/* replaced by one whose policy is rejected */
	DEG_POLICY_REJECTED,		/* the last edit was rejected: older version enforced */
	DEG_MASS_REMOVAL_HELD,		/* a publish removing many VMs waits for consent */
	DEG_QUARANTINE,			/* VMs without a policy are isolated */
	DEG_AUDIT_UNWRITABLE,		/* audit records cannot be written and synced */
	DEG_TPM_UNREACHABLE,		/* measurements queue but do not reach the TPM */
	DEG_MAX,
};

struct degraded_state {
	bool active;
	uint64_t since;			/* CLOCK_REALTIME seconds */
	char detail[768];
};

struct degraded {
	struct degraded_state s[DEG_MAX];
};

/* The stable name of a kind, as status and the metrics label it
 * ("policy_dir_missing", ...). */
const char *degraded_name(enum degraded_kind k);

/* Enter (or stay in) state k with a new detail; since is kept while the
 * state lasts.  Logs a warning when the state begins.  Returns true then. */
bool degraded_set(struct degraded *d, enum degraded_kind k, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Leave state k (logs when it was active).  Returns true if it was. */
bool degraded_clear(struct degraded *d, enum degraded_kind k);
bool degraded_active(const struct degraded *d, enum degraded_kind k);

/* [{"state", "since", "since_iso", "detail"}, ...] of the active states. */
cJSON *degraded_json(const struct degraded *d);
/* rayos_degraded{state} 0|1 and rayos_degraded_since_seconds{state} for
 * every kind (0 when inactive), so alerts need no absent() tricks. */
void degraded_prometheus(FILE *out, const struct degraded *d);

#endif
