/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The kernel's view of capabilities beyond the VM record (loader/capstate.c):
 * per slot, a copy of the VM's own grants and its delegation links
 * (rayos_cap_state, bpf/abi/policy.h), which the BPF programs walk up to
 * RAYOS_CAP_MAX_DEPTH hops, and the epoch that invalidates their per-CPU
 * caches.  Every write here bumps the epoch after it, so the next packet or
 * open sees the change.
 */
#ifndef RAYOS_LOADER_CAPSTATE_H
#define RAYOS_LOADER_CAPSTATE_H

#include <stdint.h>

#include "loader/loader.h"

struct rayos_vm;
struct rayos_cap_state;

/* Copy rec's grants and flags into its slot: the links stay if the slot
 * held the same VM and are cleared if it held another (or none). */
int loader_cap_state_sync(struct loader *ld, const struct rayos_vm *rec);
/* vm_id left slot: free it, so that links through it fail at once.  A slot
 * that meanwhile holds another VM is left alone. */
int loader_cap_state_drop(struct loader *ld, uint32_t slot, uint32_t vm_id);
/* The link by which vm_id holds cap: from from_vm, ending at until_ns
 * (CLOCK_BOOTTIME; 0: as long as the delegator holds cap).  from_vm 0
 * removes the link.  -ENOENT when vm_id or from_vm has no record, -EINVAL
 * for a capability out of range or a VM delegating to itself. */
int loader_cap_link_set(struct loader *ld, uint32_t vm_id, uint32_t cap, uint32_t from_vm,
			uint64_t until_ns);
/* One slot's state as the kernel holds it. */
int loader_cap_state_read(const struct loader *ld, uint32_t slot, struct rayos_cap_state *out);
/* Invalidate every CPU's cached capability sets. */
int loader_cap_epoch_bump(struct loader *ld);

#endif /* RAYOS_LOADER_CAPSTATE_H */
