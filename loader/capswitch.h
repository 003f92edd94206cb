/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * revoke-all in the kernel: capabilities taken from many VMs at one store
 * (the protocol is in bpf/abi/policy.h, the programs' side in
 * bpf/include/capswitch.bpf.h).  The caller then rewrites the VMs' records
 * without those capabilities and calls loader_caps_settle(), which folds the
 * switch away again.
 */
#ifndef RAYOS_LOADER_CAPSWITCH_H
#define RAYOS_LOADER_CAPSWITCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct loader;

struct loader_revoke {
	uint32_t slot;		/* rayos_vm.slot */
	uint64_t mask;		/* 1 << enum rayos_cap to take */
};

/* Write sel[0..n) under a new epoch, then switch every program to it with
 * one store.  0 (the switch is in force when this returns) or -errno with
 * nothing in force; *epoch gets the new epoch. */
int loader_caps_switch(struct loader *ld, const struct loader_revoke *sel, size_t n,
		       uint64_t *epoch);

/* The records now carry every revocation in force: clear the entries and
 * disarm the switch, back to the one-lookup fast path.  Idempotent. */
int loader_caps_settle(struct loader *ld);

/* Is a revoke-all waiting to be folded into the records (the agent died
 * between the switch and the settle)?  *epoch gets the switch's epoch. */
bool loader_caps_armed(struct loader *ld, uint64_t *epoch);

/* The entries in force (epoch nonzero and not above the switch's), at most
 * max into out; *n gets how many there are.  For an agent that finds the
 * switch armed at start: they are what it must fold into the records. */
int loader_caps_pending(struct loader *ld, struct loader_revoke *out, size_t max, size_t *n);

#endif
