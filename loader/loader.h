/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The loader is the only code that opens skeletons, sizes maps, attaches,
 * pins and probes kernel features.  The agent and the tests reach the kernel
 * through it and never call bpf() themselves.
 *
 * Pins: <pin_root>/<map name> for maps, <pin_root>/links/<name> for links.
 * Opening adopts whatever is already pinned there: maps keep their contents
 * and links stay attached.
 */
#ifndef RAYOS_LOADER_H
#define RAYOS_LOADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RAYOS_PIN_ROOT_DEFAULT	"/sys/fs/bpf/rayos"
/* Shorter than PATH_MAX so every pin path built under it fits. */
#define LOADER_PIN_ROOT_LEN	1024

enum rayos_map_id {
	RAYOS_MAP_VMS,
	RAYOS_MAP_FW_PORT,
	RAYOS_MAP_FW_RANGE,
	RAYOS_MAP_FW_CIDR4,
	RAYOS_MAP_FW_CIDR6,
	RAYOS_MAP_POLICY,
	RAYOS_MAP_IFACES,
	RAYOS_MAP_IP_BIND,
	/* rayos_net data path state and telemetry (added by the net programs' owner) */
	RAYOS_MAP_VM_STATS,	/* PERCPU_ARRAY slot -> struct rayos_vm_stats */
	RAYOS_MAP_RULE_STATS,	/* ARRAY (atomic adds) RAYOS_RULE_STATS_IDX -> struct rayos_ctr */
	RAYOS_MAP_NET_STATS,	/* PERCPU_ARRAY enum rayos_net_counter -> __u64 */
	RAYOS_MAP_CT,		/* LRU_HASH rayos_ct_key -> rayos_ct_val */
	RAYOS_MAP_FRAG,		/* LRU_HASH rayos_frag_key -> rayos_frag_val */
	RAYOS_MAP_TBF,		/* ARRAY slot * 2 + dir -> struct rayos_tbf */
	RAYOS_MAP_EV_RATE,	/* PERCPU_ARRAY slot -> __u64 GCRA time */
	RAYOS_MAP_EVENTS,	/* RINGBUF of struct rayos_event */
	RAYOS_MAP_MAX,
};

enum rayos_prog_id {
	RAYOS_PROG_FROM_VM,	/* tc ingress of the tap: guest -> host */
	RAYOS_PROG_TO_VM,	/* tc egress of the tap: host -> guest */
	RAYOS_PROG_MAX,
};

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

struct loader_opts {
	const char *pin_root;	/* NULL: RAYOS_PIN_ROOT_DEFAULT */
	uint32_t max_vms;	/* 0: RAYOS_MAX_VMS_DEFAULT; ignored for adopted maps */
	/* rayos_net knob (net programs' owner): drop events per second per VM
	 * and CPU, written to rodata before load.  0: keep the program's
	 * default (50).  Events cannot be turned off from here. */
	uint32_t events_per_sec;
};

struct loader;

/* Open, size, load and pin every object, adopting existing pins.
 * Mounts bpffs at /sys/fs/bpf if the pin root is below it and it is missing. */
int loader_open(const struct loader_opts *opts, struct loader **out);
void loader_close(struct loader *ld);	/* closes fds; pins stay */

/* Remove every pin under pin_root (maps, links): enforcement goes away. */
int loader_purge(const char *pin_root);

const char *loader_pin_root(const struct loader *ld);
int loader_map_fd(const struct loader *ld, enum rayos_map_id id);
const char *loader_map_name(enum rayos_map_id id);
int loader_prog_fd(const struct loader *ld, enum rayos_prog_id id);
/* Maps found pinned (adopted) rather than created by this open. */
unsigned int loader_nr_adopted(const struct loader *ld);

/* Attach the network programs to a VM's tap (tcx links pinned as
 * links/vm<ID>_from and _to) and map the ifindex to the VM.  Idempotent:
 * an existing link on the same device keeps running and gets this loader's
 * program swapped in atomically. */
int loader_attach_vm(struct loader *ld, uint32_t vm_id, int ifindex);
/* Remove the VM's links (this detaches) and its ifindex entry. */
int loader_detach_vm(struct loader *ld, uint32_t vm_id);
/* The ifindex the VM's pinned link is attached to; 0 if none or gone. */
int loader_vm_ifindex(const struct loader *ld, uint32_t vm_id);

/* Wait until every BPF program that might have read a map before this call
 * has finished (an RCU grace period), so stale entries can be deleted. */
int loader_sync_programs(struct loader *ld);

/* Probe every feature, or read the cache file (cache_path may be NULL). */
int loader_probe_features(const char *cache_path,
			  struct rayos_feature_state out[RAYOS_FEAT_MAX]);
const char *loader_feature_name(enum rayos_feature f);

#endif /* RAYOS_LOADER_H */
