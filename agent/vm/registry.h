/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Runtime VM state (tap, QEMU pid, capability grants), kept in the state dir. */
#ifndef RAYOS_REGISTRY_H
#define RAYOS_REGISTRY_H

#include <net/if.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "agent/policy/policy.h"
#include "bpf/abi/policy.h"

/* What the launcher (rayos-qemu) said it does before it execs QEMU. */
#define VM_CONF_LAUNCHER	(1U << 0)	/* a report was given */
#define VM_CONF_CGROUP_NS	(1U << 1)	/* cgroup namespace at the VM's cgroup */
#define VM_CONF_NET_NS		(1U << 2)	/* an empty network namespace */
#define VM_CONF_SANDBOX		(1U << 3)	/* QEMU's -sandbox appended */
#define VM_CONF_UID_PER_VM	(1U << 4)	/* a uid of its own */

struct vm_runtime {
	uint32_t id;
	char iface[IF_NAMESIZE];	/* "" = the policy's interface */
	pid_t pid;			/* the VM's QEMU process, 0 = none */
	uint64_t cap_grant;		/* capabilities added at run time */
	uint64_t cap_revoke;		/* capabilities taken away at run time */
	char cgroup[512];		/* the VM's cgroup directory, "" = none */
	bool cgroup_kept;		/* someone else's (libvirt's): attached in
					 * place, never moved into, killed or removed */
	uint32_t conf_flags;		/* VM_CONF_* */
	uint32_t conf_uid;		/* the uid QEMU runs as (launcher's word) */
	uint32_t conf_disk_fds;		/* disk images handed over as fds */
	/* Temporary grants: CLOCK_BOOTTIME deadline per capability, 0 = none.
	 * Meaningful in this boot only: the file records the boot id and a
	 * different boot drops them (the maps went with the old boot). */
	uint64_t cap_until[RAYOS_CAP_COUNT];
	/* The policy's "temporary_capabilities" entry that set cap_until, as
	 * expires ns or (until wall ns | REGISTRY_SPEC_UNTIL); 0 = none.  An
	 * entry already applied is not applied again: a reload keeps the
	 * deadline, and an expired entry stays expired until it changes. */
	uint64_t policy_spec[RAYOS_CAP_COUNT];
	/* `cap fine-grain` limits (agent/vmfine.c); they apply together with
	 * the policy's "capability_limits" and outlive restarts and reboots. */
	struct caps_limits limits;
};
#define REGISTRY_SPEC_UNTIL	(1ULL << 63)

struct registry;

int registry_open(const char *path, struct registry **out);
void registry_close(struct registry *r);
/* Insert or replace the entry of vr->id, then save. */
int registry_put(struct registry *r, const struct vm_runtime *vr);
/* Insert or replace n entries, then save once; on failure none changed. */
int registry_put_many(struct registry *r, const struct vm_runtime *vrs, size_t n);
int registry_del(struct registry *r, uint32_t id);	/* -ENOENT if absent */
const struct vm_runtime *registry_get(const struct registry *r, uint32_t id);
size_t registry_count(const struct registry *r);
const struct vm_runtime *registry_at(const struct registry *r, size_t i);
/* Give each registered VM of set its registered interface. */
void registry_overlay(const struct registry *r, struct policy_set *set);
/* A name the kernel would accept for a network interface. */
bool registry_ifname_valid(const char *s);

#endif
