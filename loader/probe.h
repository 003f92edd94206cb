/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Kernel features RayOS can use (loader/probe.c): each probed once per
 * kernel and boot and cached; status reports them, enforcement points
 * that need a missing one say so instead of failing.
 */
#ifndef RAYOS_LOADER_PROBE_H
#define RAYOS_LOADER_PROBE_H

#include <stdbool.h>

/* Kernel features RayOS can use; each probed once and cached. */
enum rayos_feature {
	RAYOS_FEAT_BPFFS,
	RAYOS_FEAT_BTF,
	RAYOS_FEAT_XDP,
	RAYOS_FEAT_SCHED_CLS,
	RAYOS_FEAT_TCX,
	RAYOS_FEAT_CGROUP_DEVICE,
	RAYOS_FEAT_CGROUP_SKB,
	RAYOS_FEAT_TRACEPOINT,
	RAYOS_FEAT_RINGBUF,
	RAYOS_FEAT_LPM,
	RAYOS_FEAT_MAP_IN_MAP,
	RAYOS_FEAT_TIMER,
	RAYOS_FEAT_LSM_PROG,	/* the kernel loads BPF_PROG_TYPE_LSM */
	RAYOS_FEAT_LSM_ACTIVE,	/* "bpf" is in the active LSM list */
	RAYOS_FEAT_FENTRY,
	RAYOS_FEAT_MAX,
};

struct rayos_feature_state {
	bool available;
	char detail[160];	/* why not, or what was found */
};


/* Probe every feature, or read the cache file (cache_path may be NULL). */
int loader_probe_features(const char *cache_path,
			  struct rayos_feature_state out[RAYOS_FEAT_MAX]);
const char *loader_feature_name(enum rayos_feature f);

#endif /* RAYOS_LOADER_PROBE_H */
