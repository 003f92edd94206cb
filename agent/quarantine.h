/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Fail closed when VMs lose their policy.
 *
 * A VM that is enforced (in the maps) and disappears from the policy set
 * while it still runs (its tap is attached, or its registered QEMU is
 * alive) is not dropped, which would leave its tap without a firewall: the
 * publish keeps it under a deny-all record (RAYOS_VMF_QUARANTINE: every
 * frame dropped both ways, the always-allowed devices only, no capability
 * grants), with a warning, a status entry and a metric.  It stays so until
 * it gets a policy again, is unregistered (`vm unregister ID`: enforcement
 * removed) or stops (its QEMU exits or its tap goes).  The record is in the
 * pinned maps, so the quarantine holds with the agent dead; the list here
 * (with the time each began) is kept in STATE_DIR/quarantine.json.
 *
 * A publish that would take more than a share of the VMs out of the policy
 * at once (default more than half; two VMs or more) is held back and
 * reported until it is asked for (`policy reload --allow-mass-removal`).
 */
#ifndef RAYOS_QUARANTINE_H
#define RAYOS_QUARANTINE_H

#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "bpf/abi/policy.h"

struct quarantine_entry {
	uint32_t id;
	uint64_t since;			/* CLOCK_REALTIME s */
	char name[RAYOS_NAME_LEN];
	char iface[IF_NAMESIZE];
};

struct quarantine {
	struct quarantine_entry *e;
	size_t nr;
	char path[PATH_MAX];		/* STATE_DIR/quarantine.json */
};

/* ---- the list (pure, and its file) ---- */

/* Read path (a missing file is an empty list). */
int quarantine_load(struct quarantine *q, const char *path);
/* Write it whole (temporary file, fsync, rename). */
int quarantine_save(const struct quarantine *q);
void quarantine_free(struct quarantine *q);
const struct quarantine_entry *quarantine_find(const struct quarantine *q, uint32_t id);
/* Add or update (keeping since of an existing entry); -ENOMEM. */
int quarantine_put(struct quarantine *q, const struct quarantine_entry *e);
bool quarantine_del(struct quarantine *q, uint32_t id);

/*
 * The mass-removal rule, pure: may a publish take `leaving` of the
 * `enforced` VMs that have a policy now out of the set, with share_pct the
 * largest share allowed (100: any)?  A single VM may always go.
 */
bool quarantine_mass_removal(size_t leaving, size_t enforced, unsigned int share_pct);

#endif
