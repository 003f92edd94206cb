/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Attaching enforcement to a VM (loader/attach.c, loader/devices.c): the
 * network programs on its tap, the device program on its cgroup, each
 * through a pinned bpf_link that outlives the agent and is swapped, never
 * detached, when a new agent adopts it.
 */
#ifndef RAYOS_LOADER_ATTACH_H
#define RAYOS_LOADER_ATTACH_H

#include <stdint.h>

#include "loader/loader.h"

/* Attach the network programs to a VM's tap (tcx links pinned as
 * links/vm<ID>_from and _to) and map the ifindex to the VM.  Idempotent:
 * an existing link on the same device keeps running and gets this loader's
 * program swapped in atomically.  shaper_ifindex and iface_flags go into
 * the VM's rayos_ifaces entry (struct rayos_iface). */
int loader_attach_vm(struct loader *ld, uint32_t vm_id, int ifindex,
		     int shaper_ifindex, uint32_t iface_flags);
struct rayos_iface;
/* Fill io->vm, io->bind and RAYOS_IFF_VM from rayos_vms and rayos_ip_bind
 * (by their fds) for io->vm_id: the copy the data path reads. */
void loader_iface_compose(int vms_fd, int bind_fd, struct rayos_iface *io);
struct rayos_ip_bind;
/* Rewrite the VM's rayos_ifaces entry after its record or binding changed:
 * bind is the binding just written (all zero: none), or NULL to read both
 * back from their maps.  0 if this loader attached no tap for the VM. */
int loader_iface_sync(struct loader *ld, uint32_t vm_id, const struct rayos_ip_bind *bind);
/* Remove the VM's links (this detaches) and its ifindex entry. */
int loader_detach_vm(struct loader *ld, uint32_t vm_id);
/* Call fn once for every VM that has a network link (either hook) pinned
 * under pin_root; stops at fn's first error (works without a loaded
 * loader: `stop --purge` with no agent). */
int loader_for_each_vm_link(const char *pin_root, int (*fn)(void *ctx, uint32_t vm_id),
			    void *ctx);
/* The ifindex the VM's pinned link is attached to; 0 if none or gone. */
int loader_vm_ifindex(const struct loader *ld, uint32_t vm_id);


/* Put a VM's cgroup (a cgroup v2 directory) under device control: map the
 * cgroup id to the VM, then attach rayos_dev with a bpf_link pinned as
 * links/vm<ID>_dev.  Idempotent: a pinned link on the same cgroup gets this
 * loader's program swapped in (bpf_link_update, no window); a link on
 * another cgroup is replaced only after the new one is attached.  Programs
 * that others attached (BPF_F_ALLOW_MULTI, here or above) keep running:
 * every program on the path must allow. */
int loader_attach_cgroup(struct loader *ld, uint32_t vm_id, const char *cgroup_path);
/* For a cgroup another manager sealed with a device program of its own
 * attached without BPF_F_ALLOW_MULTI (libvirt's), where nothing can be
 * attached at or below it: map cgroup_path to the VM and put
 * rayos_dev_above on parent_path instead (one link per parent, pinned for
 * each VM under it as links/vm<ID>_dev; it goes with the last pin).  Tasks
 * of no RayOS VM under parent_path are let through by it. */
int loader_attach_cgroup_above(struct loader *ld, uint32_t vm_id, const char *cgroup_path,
			       const char *parent_path);
/* Detach (unpin) the VM's device link and forget its cgroups. */
int loader_detach_cgroup(struct loader *ld, uint32_t vm_id);
/* The cgroup id the VM's pinned device link is attached to; 0 if none. */
uint64_t loader_vm_cgroup_id(const struct loader *ld, uint32_t vm_id);

#endif /* RAYOS_LOADER_ATTACH_H */
