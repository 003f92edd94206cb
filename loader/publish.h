/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Publishing a compiled policy into the pinned maps so that every packet sees
 * a VM's whole old policy or its whole new one:
 *
 *   1. write the new rule entries of each changed VM under its inactive
 *      generation (programs read only the active one);
 *   2. replace each changed VM's record (one hash update: atomic for
 *      readers) with the new generation: the flip;
 *   3. delete records of VMs that left the policy;
 *   4. wait one RCU grace period (loader_sync_programs) so that no program
 *      still holds an old record;
 *   5. delete the old generation's entries, and record the version.
 *
 * A failure in step 1 removes what it wrote and changes nothing else.
 */
#ifndef RAYOS_PUBLISH_H
#define RAYOS_PUBLISH_H

#include <stdbool.h>
#include <stdint.h>

#include "agent/policy/policy.h"
#include "loader/loader.h"

struct publish_stats {
	uint64_t version;	/* the version now applied */
	unsigned int changed, unchanged, added, removed;
	uint64_t entries_written, entries_deleted;
	/* VM directions with rules that did not all fit the interval table
	 * (some lookups go to the hash or the LPM tries, which cost more and
	 * grow with the host's entries), and the first such VM. */
	unsigned int slow_dirs;
	uint32_t slow_vm;
};

/* Read what an earlier agent published (records, generations, slots and
 * entries) and delete entries no record refers to (a publish cut short). */
int publish_adopt(struct loader *ld);

/* Publish cp (fills in each VM's gen, slot and version; cp stays the caller's). */
int publish_policy(struct loader *ld, struct compiled_policy *cp,
		   struct publish_stats *stats);

/* Take one VM out of the maps outside a publish (a quarantined VM that
 * stopped or was unregistered): its record, static binding and entries,
 * after a grace period; its slot is cleared before reuse.  -ENOENT when
 * the VM is not in the maps. */
int publish_remove_vm(struct loader *ld, uint32_t vm_id);

/* The VMs in the maps now (published or adopted), in id order. */
size_t publish_nr_vms(const struct loader *ld);
const struct compiled_vm *publish_vm_at(const struct loader *ld, size_t i);
/* The pinned rayos_policy record. */
int publish_read_info(const struct loader *ld, struct rayos_policy_info *info);

/* A DHCP lease: let vm_id use ip_be until expiry (CLOCK_BOOTTIME ns), or
 * with ip_be 0 end it.  -EEXIST: the VM has a static address (left as is). */
int publish_lease(struct loader *ld, uint32_t vm_id, uint32_t ip_be, uint64_t expiry_boot_ns);
/* The lease of ip_be ended: drop the VM's binding if it is still that
 * address (not if a newer lease or the policy's address is bound). */
int publish_lease_end(struct loader *ld, uint32_t vm_id, uint32_t ip_be);
/* Does rayos_ip_bind let vm_id use ip_be now (lease not expired)? */
bool publish_binds(const struct loader *ld, uint32_t vm_id, uint32_t ip_be);
/* The VM whose record has rayos_vm.slot slot; 0 if none. */
uint32_t publish_vm_of_slot(const struct loader *ld, uint32_t slot);

void publish_free(struct loader *ld);

/* ---- the host's own addresses (loader/host.c) ---- */

/* One address of the host, for rayos_host4/6. */
struct loader_host_addr {
	uint8_t family;			/* AF_INET or AF_INET6 */
	uint8_t addr[16];		/* network order; IPv4 in the first 4 bytes */
	uint32_t ifindex;
	uint32_t flags;			/* RAYOS_HOSTF_* */
};

/* Make rayos_host4/6 hold exactly addrs: write each, then delete what is
 * not among them (never clear-then-fill: packets in flight keep seeing the
 * addresses that stay).  -E2BIG when there are more than the maps hold
 * (the first RAYOS_HOST_ADDRS of each family are written). */
int loader_host_addrs_sync(struct loader *ld, const struct loader_host_addr *addrs, size_t n);

#endif
