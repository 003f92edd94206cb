/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The loader is the only code that opens skeletons, sizes maps, attaches,
 * pins and probes kernel features.  The agent and the tests reach the kernel
 * through it and never call bpf() themselves.  This header: the objects,
 * their maps and pins.  One header per concept beside it: attach.h (taps
 * and cgroups), publish.h (policies, leases, host addresses), devices.h
 * (device state and counters), stats.h (counters and events), probe.h
 * (kernel features).
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

#define RAYOS_MAP_DEV_FIRST	RAYOS_MAP_DEV_RULES	/* maps of the device objects */
#define RAYOS_MAP_DEV_LAST	RAYOS_MAP_DEV_INFLT

enum rayos_map_id {
	RAYOS_MAP_VMS,
	RAYOS_MAP_FW_PORT,
	RAYOS_MAP_FW_RANGE,
	RAYOS_MAP_FW_CIDR4,
	RAYOS_MAP_FW_CIDR6,
	RAYOS_MAP_FW_TAB,	/* HASH rayos_fw_tab_key -> rayos_fw_tab */
	RAYOS_MAP_POLICY,
	RAYOS_MAP_IFACES,
	RAYOS_MAP_IP_BIND,
	/* rayos_net data path state and telemetry (added by the net programs' owner) */
	RAYOS_MAP_VM_STATS,	/* PERCPU_ARRAY slot -> struct rayos_vm_stats */
	RAYOS_MAP_RULE_STATS,	/* ARRAY (atomic adds) RAYOS_RULE_STATS_IDX -> struct rayos_ctr */
	RAYOS_MAP_NET_STATS,	/* PERCPU_ARRAY enum rayos_net_counter -> __u64 */
	RAYOS_MAP_CT4,		/* LRU_HASH rayos_ct4_key -> rayos_ct_val */
	RAYOS_MAP_CT6,		/* LRU_HASH rayos_ct6_key -> rayos_ct_val */
	RAYOS_MAP_FRAG,		/* LRU_HASH rayos_frag_key -> rayos_frag_val */
	RAYOS_MAP_TBF,		/* ARRAY slot * 2 + dir -> struct rayos_tbf */
	RAYOS_MAP_EV_RATE,	/* PERCPU_ARRAY slot -> __u64 GCRA time */
	RAYOS_MAP_EVENTS,	/* RINGBUF of struct rayos_event */
	RAYOS_MAP_CTL_RATE,	/* ARRAY slot * RAYOS_CTL_MAX + kind -> struct rayos_tbf */
	RAYOS_MAP_HOST4,	/* HASH __u32 address -> struct rayos_host_addr */
	RAYOS_MAP_HOST6,	/* HASH 16-byte address -> struct rayos_host_addr */
	RAYOS_MAP_CAP_SWITCH,	/* ARRAY (mmap) 0 -> struct rayos_cap_switch */
	RAYOS_MAP_CAP_REVOKE,	/* ARRAY (mmap) slot -> struct rayos_cap_revoke */
	/* device enforcement (bpf/abi/dev.h), from the rayos_dev object */
	RAYOS_MAP_DEV_RULES,	/* HASH rayos_dev_key -> rayos_dev_rule */
	RAYOS_MAP_CGROUPS,	/* HASH __u64 cgroup id -> rayos_cgroup_val */
	RAYOS_MAP_DEV_FILES,	/* HASH rayos_dev_file_key -> rayos_dev_file */
	RAYOS_MAP_DEV_STATS,	/* PERCPU_ARRAY slot * RAYOS_DEVC_MAX + class -> rayos_dev_ctr */
	RAYOS_MAP_KVM_STATS,	/* PERCPU_ARRAY slot -> rayos_kvm_ctr */
	RAYOS_MAP_DEV_INFLT,	/* LRU_HASH pid_tgid -> rayos_dev_inflight */
	RAYOS_MAP_MAX,
};

enum rayos_prog_id {
	RAYOS_PROG_FROM_VM,	/* tc ingress of the tap: guest -> host */
	RAYOS_PROG_TO_VM,	/* tc egress of the tap: host -> guest */
	RAYOS_PROG_MAX,
};

struct loader_opts {
	const char *pin_root;	/* NULL: RAYOS_PIN_ROOT_DEFAULT */
	uint32_t max_vms;	/* 0: RAYOS_MAX_VMS_DEFAULT; ignored for adopted maps */
	/* rayos_net knob (net programs' owner): drop events per second per VM
	 * and CPU, written to rodata before load.  0: keep the program's
	 * default (50).  Events cannot be turned off from here. */
	uint32_t events_per_sec;
	/* Devices (loader/devices.c): where the feature probe is cached (NULL:
	 * probe afresh), and whether to skip the syscall/kvm statistics (a
	 * second loader on the same pins, as tests open, would count twice). */
	const char *feature_cache;
	bool no_dev_stats;
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

/* Call fn for each BPF object loaded, with its ELF image (for measuring). */
typedef int (*loader_object_fn)(void *ctx, const char *name, const void *elf, size_t len);
int loader_for_each_object(const struct loader *ld, loader_object_fn fn, void *ctx);

/* Wait until every BPF program that might have read a map before this call
 * has finished (an RCU grace period), so stale entries can be deleted. */
int loader_sync_programs(struct loader *ld);

#endif /* RAYOS_LOADER_H */
