/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* The rayos-agent daemon: options, and the entry points main.c dispatches to. */
#ifndef RAYOS_AGENT_H
#define RAYOS_AGENT_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

#include "agent/core/paths.h"

struct agent_opts {
	char policy_dir[RAYOS_DIR_LEN];
	char state_dir[RAYOS_DIR_LEN];
	char run_dir[RAYOS_DIR_LEN];
	char pin_root[RAYOS_DIR_LEN];
	uint32_t max_vms;
	uint16_t metrics_port;	/* 127.0.0.1:port/metrics; 0 = off */
	char tcti[256];		/* "" = $RAYOS_TCTI, /dev/tpmrm0, else embedded swtpm */
	bool no_tpm;		/* measure nothing */
	bool device_stats;	/* syscall/kvm tracepoints (cost every syscall) */
	bool measure_disks;	/* hash VMs' disk image files into the TPM log */
	bool daemonize;
	bool keep_caps;		/* debugging: do not drop capabilities */
	/* A publish that takes more than this share (percent) of the VMs out
	 * of the policy, two or more, is held back (100: never). */
	unsigned int mass_removal_pct;
};

#define RAYOS_MASS_REMOVAL_PCT_DEFAULT	50

void agent_opts_default(struct agent_opts *o);

/* Run the agent in the foreground until stopped; returns the exit status. */
int agent_run(const struct agent_opts *o);

#endif
