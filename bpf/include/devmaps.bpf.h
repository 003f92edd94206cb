/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Maps of device enforcement, shared by rayos_dev, rayos_lsm and
 * rayos_devstat: pinned by name under the loader's pin root like those of
 * maps.bpf.h, so the three objects (and a restarted agent) share them.
 */
#ifndef RAYOS_DEVMAPS_BPF_H
#define RAYOS_DEVMAPS_BPF_H

#include "maps.bpf.h"
#include "bpf/abi/dev.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RAYOS_RULE_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct rayos_dev_key);
	__type(value, struct rayos_dev_rule);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rayos_dev_rules SEC(".maps");

/* A VM may own a few cgroups (QEMU, helpers): 4 per VM by default. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4 * RAYOS_MAX_VMS_DEFAULT);
	__type(key, __u64);			/* cgroup v2 id */
	__type(value, struct rayos_cgroup_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rayos_cgroups SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1U << 16);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct rayos_dev_file_key);
	__type(value, struct rayos_dev_file);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rayos_dev_files SEC(".maps");

/* 64 B per slot and class per CPU: 4 MiB per CPU at 4096 slots, the same
 * as rayos_vm_stats. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RAYOS_MAX_VMS_DEFAULT * RAYOS_DEVC_MAX);
	__type(key, __u32);			/* slot * RAYOS_DEVC_MAX + class */
	__type(value, struct rayos_dev_ctr);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rayos_dev_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RAYOS_MAX_VMS_DEFAULT);
	__type(key, __u32);			/* rayos_vm.slot */
	__type(value, struct rayos_kvm_ctr);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rayos_kvm_stats SEC(".maps");

/* LRU: a task killed inside a syscall never reaches sys_exit; its entry
 * ages out instead of leaking. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1U << 14);
	__type(key, __u64);			/* pid_tgid */
	__type(value, struct rayos_dev_inflight);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rayos_dev_inflt SEC(".maps");

/* Counters of one slot and class; NULL when out of range. */
static __always_inline struct rayos_dev_ctr *rayos_dev_ctr_of(__u32 slot, __u32 cls)
{
	__u32 idx = slot * RAYOS_DEVC_MAX + (cls & (RAYOS_DEVC_MAX - 1));

	return bpf_map_lookup_elem(&rayos_dev_stats, &idx);
}

#endif /* RAYOS_DEVMAPS_BPF_H */
