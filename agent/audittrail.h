/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The audit trail wired to the rest of the agent: the chain's head measured
 * into the TPM with the policy measurements (rayos/audit-head records of the
 * event log, once per health tick when the head moved, at start and at
 * stop, never per record: a TPM extend takes tens of ms), the records of VM
 * registration and policy publishes, and the `rayos-agent audit` CLI, which
 * reads the log and the TPM itself, so it works with the agent stopped.
 * agent/audit knows nothing of the TPM; this file joins the two.
 */
#ifndef RAYOS_AUDITTRAIL_H
#define RAYOS_AUDITTRAIL_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#define AUDIT_LOG_FILE	"audit.log"	/* in the state dir */

struct agent;
struct compiled_policy;

void audittrail_path(const struct agent *a, char *buf, size_t len);

/* At start, before anything is audited: pick the chain up (a log that does
 * not verify is logged and reported as audit_log_unwritable until fixed),
 * and measure its head. */
void audittrail_open(struct agent *a);

/* Queue a measurement of the head when it moved since the last one: true
 * when one was queued. */
bool audittrail_measure(struct agent *a);

/* For status: {"log","records","head","measured","error"?}: the chain's
 * head now and the last one queued for the TPM (-1: none). */
cJSON *audittrail_status_json(struct agent *a);

/* Write-ahead: append rec (consumed) unless the log cannot take it; 0, or
 * -errno with why naming the file and the cause. */
int audittrail_write(const struct agent *a, cJSON *rec, char *why, size_t len);

/* Before a publish of cp: which VMs it adds, changes and removes, against
 * what the maps hold now.  After it: the record, with the version. */
cJSON *audittrail_publish_begin(struct agent *a, const struct compiled_policy *cp);
void audittrail_publish_done(struct agent *a, cJSON *rec, unsigned long long version,
			     const char *why);

/* `rayos-agent audit [verify]` (see usage in main.c). */
struct audittrail_cli {
	const char *state_dir, *run_dir;
	const char *log;	/* --log PATH: another copy of the log */
	const char *vm;		/* --vm ID */
	const char *since;	/* --since 1h | RFC 3339 */
	bool json, no_tpm;
};
int audittrail_cli(const struct audittrail_cli *o, int argc, char **argv);

#endif
