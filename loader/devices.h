/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Device enforcement state (loader/devices.c): which device parts run,
 * a VM's capability bits and record, device and KVM counters, the disk
 * images the LSM program checks.
 */
#ifndef RAYOS_LOADER_DEVICES_H
#define RAYOS_LOADER_DEVICES_H

#include <stdbool.h>
#include <stdint.h>

#include "loader/loader.h"

/* The cgroup device program (rayos_dev), the LSM program (rayos_lsm, only
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
/* The same record from the publisher's copy (every record write goes
 * through publish.c, which keeps it in step): no syscall, for commands
 * that read thousands. */
int loader_vm_cached(const struct loader *ld, uint32_t vm_id, struct rayos_vm *out);

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

#endif /* RAYOS_LOADER_DEVICES_H */
