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

/* ---- devices (loader/devices.c) ---------------------------------------------
 * The cgroup device program (rayos_dev), the LSM program (rayos_lsm, only
 * where the kernel loads LSM programs) and the syscall/kvm statistics
 * (rayos_devstat) are opened with the rest by loader_open.  A part the
 * kernel refuses is reported, not fatal: loader_dev_status() says why. */
enum rayos_dev_part {
	RAYOS_DEVP_CGROUP,	/* rayos_dev: cgroup device program */
	RAYOS_DEVP_LSM,		/* rayos_file_open: BPF LSM */
	RAYOS_DEVP_SYSCALLS,	/* open/openat/ioctl statistics */
	RAYOS_DEVP_KVM,		/* kvm_exit/kvm_mmio/kvm_pio statistics */
	RAYOS_DEVP_MAX,
};

struct loader_dev_part {
	bool active;
	char detail[192];	/* what runs, or why not */
};

const char *loader_dev_part_name(enum rayos_dev_part p);
void loader_dev_status(const struct loader *ld, struct loader_dev_part out[RAYOS_DEVP_MAX]);
/* The loaded rayos_dev program (for tests and benchmarks); -1 if none. */
int loader_dev_prog_fd(const struct loader *ld);

/* Put a VM's cgroup (a cgroup v2 directory) under device control: map the
 * cgroup id to the VM, then attach rayos_dev with a bpf_link pinned as
 * links/vm<ID>_dev.  Idempotent: a pinned link on the same cgroup gets this
 * loader's program swapped in (bpf_link_update, no window); a link on
 * another cgroup is replaced only after the new one is attached.  Programs
 * that others attached (BPF_F_ALLOW_MULTI, here or above) keep running:
 * every program on the path must allow. */
int loader_attach_cgroup(struct loader *ld, uint32_t vm_id, const char *cgroup_path);
/* Detach (unpin) the VM's device link and forget its cgroups. */
int loader_detach_cgroup(struct loader *ld, uint32_t vm_id);
/* The cgroup id the VM's pinned device link is attached to; 0 if none. */
uint64_t loader_vm_cgroup_id(const struct loader *ld, uint32_t vm_id);

/* Capability grant/revoke: replace the caps of a published VM record (one
 * atomic rayos_vms update; the next open sees it).  -ENOENT when the VM has
 * no record.  The next publish of a changed VM rewrites caps from the
 * policy: callers keep their grants and apply them again after publishing. */
int loader_vm_set_caps(struct loader *ld, uint32_t vm_id, uint64_t caps);
/* The same, with the temporary grants' CLOCK_BOOTTIME deadlines
 * (rayos_vm.cap_until_ns, 0 = none) in the same single update. */
int loader_vm_set_grants(struct loader *ld, uint32_t vm_id, uint64_t caps,
			 const uint64_t *until);	/* RAYOS_CAP_COUNT entries */
struct rayos_vm;
/* The VM's live rayos_vms record; -ENOENT if none. */
int loader_vm_record(const struct loader *ld, uint32_t vm_id, struct rayos_vm *out);

struct rayos_dev_ctr;
struct rayos_kvm_ctr;
/* Counters of one VM slot (rayos_vm.slot), summed over CPUs; class is enum
 * rayos_dev_class.  -ENOENT when the device objects are not loaded. */
int loader_dev_stats(const struct loader *ld, uint32_t slot, uint32_t cls,
		     struct rayos_dev_ctr *out);
int loader_kvm_stats(const struct loader *ld, uint32_t slot, struct rayos_kvm_ctr *out);

/* Disk image files for the LSM program: stat path and record its (device,
 * inode) as vm_id's with mode RAYOS_DEV_ACC_READ[|WRITE]. */
int loader_dev_set_image(struct loader *ld, uint32_t vm_id, const char *path, uint8_t mode);
/* Forget every image of vm_id (0: of every VM). */
int loader_dev_clear_images(struct loader *ld, uint32_t vm_id);

/* Call fn for each BPF object loaded, with its ELF image (for measuring). */
typedef int (*loader_object_fn)(void *ctx, const char *name, const void *elf, size_t len);
int loader_for_each_object(const struct loader *ld, loader_object_fn fn, void *ctx);

/* Wait until every BPF program that might have read a map before this call
 * has finished (an RCU grace period), so stale entries can be deleted. */
int loader_sync_programs(struct loader *ld);

/* Probe every feature, or read the cache file (cache_path may be NULL). */
int loader_probe_features(const char *cache_path,
			  struct rayos_feature_state out[RAYOS_FEAT_MAX]);
const char *loader_feature_name(enum rayos_feature f);

#endif /* RAYOS_LOADER_H */
