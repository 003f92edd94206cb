// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Writes of rayos_cap_state and rayos_cap_epoch (loader/capstate.h).  The
 * slot's copy of the record's grants is rewritten wherever the record is
 * (publish, grants), so a walk up a chain never reads rayos_vms.
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include <bpf/bpf.h>

#include "bpf/abi/policy.h"
#include "loader/capstate.h"
#include "loader/loader_internal.h"

_Static_assert(sizeof(struct rayos_cap_link) == 16, "rayos_cap_link layout");
_Static_assert(sizeof(struct rayos_cap_state) == 16 + 8 * RAYOS_CAP_COUNT +
	       16 * RAYOS_CAP_COUNT, "rayos_cap_state layout");
_Static_assert(offsetof(struct rayos_cap_state, link) == 16 + 8 * RAYOS_CAP_COUNT,
	       "rayos_cap_state.link offset");
_Static_assert(sizeof(struct rayos_cap_cache) == 32, "rayos_cap_cache layout");

int loader_cap_epoch_bump(struct loader *ld)
{
	int fd = ld->map_fds[RAYOS_MAP_CAP_EPOCH];
	__u32 zero = 0, epoch = 0;

	/* One writer (the agent, or a test): read, add, write. */
	if (bpf_map_lookup_elem(fd, &zero, &epoch))
		return -errno;
	epoch++;
	return bpf_map_update_elem(fd, &zero, &epoch, BPF_ANY) ? -errno : 0;
}

int loader_cap_state_read(const struct loader *ld, uint32_t slot, struct rayos_cap_state *out)
{
	__u32 key = slot;

	return bpf_map_lookup_elem(ld->map_fds[RAYOS_MAP_CAP_STATE], &key, out) ? -errno : 0;
}

int loader_cap_state_sync(struct loader *ld, const struct rayos_vm *rec)
{
	int fd = ld->map_fds[RAYOS_MAP_CAP_STATE];
	struct rayos_cap_state st;
	__u32 key = rec->slot;

	if (bpf_map_lookup_elem(fd, &key, &st))
		return -errno;	/* slot beyond the array */
	if (st.vm_id != rec->vm_id)
		memset(&st, 0, sizeof(st));
	st.vm_id = rec->vm_id;
	st.flags = rec->flags;
	st.caps = rec->caps;
	memcpy(st.cap_until_ns, rec->cap_until_ns, sizeof(st.cap_until_ns));
	if (bpf_map_update_elem(fd, &key, &st, BPF_ANY))
		return -errno;
	return loader_cap_epoch_bump(ld);
}

int loader_cap_state_drop(struct loader *ld, uint32_t slot, uint32_t vm_id)
{
	int fd = ld->map_fds[RAYOS_MAP_CAP_STATE];
	struct rayos_cap_state st;
	__u32 key = slot;

	if (bpf_map_lookup_elem(fd, &key, &st))
		return -errno;
	if (st.vm_id != vm_id)
		return 0;
	memset(&st, 0, sizeof(st));
	if (bpf_map_update_elem(fd, &key, &st, BPF_ANY))
		return -errno;
	return loader_cap_epoch_bump(ld);
}

int loader_cap_link_set(struct loader *ld, uint32_t vm_id, uint32_t cap, uint32_t from_vm,
			uint64_t until_ns)
{
	int vms = ld->map_fds[RAYOS_MAP_VMS], fd = ld->map_fds[RAYOS_MAP_CAP_STATE];
	struct rayos_vm rec, from;
	struct rayos_cap_state st;
	__u32 id = vm_id, fid = from_vm, key;
	int err;

	if (cap >= RAYOS_CAP_COUNT || vm_id == from_vm)
		return -EINVAL;
	if (bpf_map_lookup_elem(vms, &id, &rec))
		return -errno;
	if (from_vm && bpf_map_lookup_elem(vms, &fid, &from))
		return -errno;
	/* The delegator's copy of its grants is what the walk reads. */
	if (from_vm && (err = loader_cap_state_sync(ld, &from)))
		return err;
	key = rec.slot;
	if (bpf_map_lookup_elem(fd, &key, &st))
		return -errno;
	if (st.vm_id != vm_id) {
		/* The slot's copy predates this record: write it first. */
		err = loader_cap_state_sync(ld, &rec);
		if (err)
			return err;
		if (bpf_map_lookup_elem(fd, &key, &st))
			return -errno;
	}
	memset(&st.link[cap], 0, sizeof(st.link[cap]));
	if (from_vm) {
		st.link[cap].from_vm = from_vm;
		st.link[cap].from_slot = from.slot;
		st.link[cap].until_ns = until_ns;
	}
	if (bpf_map_update_elem(fd, &key, &st, BPF_ANY))
		return -errno;
	return loader_cap_epoch_bump(ld);
}
