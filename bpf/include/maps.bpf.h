/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Maps shared by every RayOS BPF object.  All are pinned by name under the
 * loader's pin root, so each object that includes this header reuses the same
 * kernel maps, and a restarted agent adopts them with their contents.
 * Sizes here are defaults; the loader resizes before the first creation.
 */
#ifndef RAYOS_MAPS_BPF_H
#define RAYOS_MAPS_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "bpf/abi/net.h"
#include "bpf/abi/policy.h"

/*
 * Write a lookup of one of two maps as two call sites, the second after
 * RAYOS_KEEP_CALL(result).  clang otherwise merges them into one call that
 * takes either map, and the verifier turns a helper call into a direct
 * (or inlined) lookup only where the call site sees a single map: a shared
 * call site costs ~6 ns more per lookup here (tests/net/bench_fw).
 */
#define RAYOS_KEEP_CALL(v)	asm volatile("" : "+r"(v))

/* Rule maps can hold a million entries host-wide but rarely do: allocate on
 * insert rather than up front. LPM tries require it anyway. */
#define RAYOS_RULE_ENTRIES	(1U << 21)

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RAYOS_MAX_VMS_DEFAULT);
	__type(key, __u32);			/* vm_id */
	__type(value, struct rayos_vm);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rayos_vms SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RAYOS_RULE_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct rayos_fw_port_key);
	__type(value, struct rayos_fw_bits);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rayos_fw_port SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, RAYOS_RULE_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct rayos_fw_range_key);
	__type(value, struct rayos_fw_bits);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rayos_fw_range SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, RAYOS_RULE_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct rayos_fw_cidr4_key);
	__type(value, struct rayos_fw_bits);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rayos_fw_cidr4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, RAYOS_RULE_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct rayos_fw_cidr6_key);
	__type(value, struct rayos_fw_bits);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rayos_fw_cidr6 SEC(".maps");

/* Six per VM: two generations of three rule sets (in, out, host); only
 * VMs with ranges or CIDRs have them. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2 * RAYOS_FW_DIRS * RAYOS_MAX_VMS_DEFAULT);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct rayos_fw_tab_key);
	__type(value, struct rayos_fw_tab);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rayos_fw_tab SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rayos_policy_info);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rayos_policy SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2 * RAYOS_MAX_VMS_DEFAULT);
	__type(key, __u32);			/* ifindex */
	__type(value, struct rayos_iface);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rayos_ifaces SEC(".maps");

/* revoke-all (bpf/abi/policy.h, capswitch.bpf.h); mmapped by the agent. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct rayos_cap_switch);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rayos_cap_switch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, RAYOS_MAX_VMS_DEFAULT);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);			/* rayos_vm.slot */
	__type(value, struct rayos_cap_revoke);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rayos_cap_revoke SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RAYOS_MAX_VMS_DEFAULT);
	__type(key, __u32);			/* vm_id */
	__type(value, struct rayos_ip_bind);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rayos_ip_bind SEC(".maps");

/* ---- data path state and telemetry (rayos_net.bpf.c) ----------------------
 * Per-slot arrays are sized RAYOS_MAX_VMS_DEFAULT * n; the loader scales them
 * with max_vms.  Per-CPU arrays are preallocated on every CPU, so only the
 * small per-slot cells are per CPU (rayos_vm_stats: 1 KiB per slot per CPU,
 * one cache line touched per packet). */

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RAYOS_MAX_VMS_DEFAULT);
	__type(key, __u32);			/* rayos_vm.slot */
	__type(value, struct rayos_vm_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rayos_vm_stats SEC(".maps");

/*
 * Per-rule counters: a plain ARRAY updated with atomic adds, not a per-CPU
 * array.  Per CPU they cost 16 B * 128 rules per slot per CPU: 8 MiB per CPU
 * at 4096 slots, 512 MiB on a 64-CPU host, nearly all of it for rules that
 * do not exist.  Shared, they cost 8 MiB in total.  The price is two atomic
 * adds on packets a rule decided; flow hits (most packets) do not count
 * here.  bench_fw measures it ("allow rule" row): a few ns uncontended.
 * Many CPUs hitting one rule of one VM at once (a flood of new flows or of
 * denied packets) share a cache line; that is the case to watch.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, RAYOS_MAX_VMS_DEFAULT * RAYOS_DIR_MAX * RAYOS_MAX_RULES);
	__type(key, __u32);			/* RAYOS_RULE_STATS_IDX() */
	__type(value, struct rayos_ctr);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rayos_rule_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RAYOS_NETC_MAX);
	__type(key, __u32);			/* enum rayos_net_counter */
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rayos_net_stats SEC(".maps");

/* Flows: LRU so a flood of new flows evicts the oldest instead of failing;
 * an evicted flow is re-evaluated by the rules on its next packet. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1U << 18);
	__type(key, struct rayos_ct4_key);
	__type(value, struct rayos_ct_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rayos_ct4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1U << 16);
	__type(key, struct rayos_ct6_key);
	__type(value, struct rayos_ct_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rayos_ct6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1U << 14);
	__type(key, struct rayos_frag_key);
	__type(value, struct rayos_frag_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rayos_frag SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, RAYOS_MAX_VMS_DEFAULT * RAYOS_DIR_MAX);
	__type(key, __u32);			/* slot * RAYOS_DIR_MAX + dir */
	__type(value, struct rayos_tbf);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rayos_tbf SEC(".maps");

/* Link-control buckets: RAYOS_CTL_MAX per slot. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, RAYOS_MAX_VMS_DEFAULT * RAYOS_CTL_MAX);
	__type(key, __u32);			/* slot * RAYOS_CTL_MAX + kind */
	__type(value, struct rayos_tbf);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rayos_ctl_rate SEC(".maps");

/* The host's own addresses (bpf/abi/net.h). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RAYOS_HOST_ADDRS);
	__type(key, __u32);			/* IPv4, network order */
	__type(value, struct rayos_host_addr);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rayos_host4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RAYOS_HOST_ADDRS);
	__type(key, __u8[16]);			/* IPv6, network order */
	__type(value, struct rayos_host_addr);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rayos_host6 SEC(".maps");

/* Drop-event rate limit: GCRA "theoretical arrival time" per slot, per CPU,
 * so the check needs no lock. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RAYOS_MAX_VMS_DEFAULT);
	__type(key, __u32);			/* rayos_vm.slot */
	__type(value, __u64);			/* CLOCK_MONOTONIC_COARSE ns */
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rayos_ev_rate SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1U << 20);		/* 16384 struct rayos_event */
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rayos_events SEC(".maps");

#endif /* RAYOS_MAPS_BPF_H */
