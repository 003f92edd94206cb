// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Device enforcement objects: the cgroup device program on each VM's cgroup
 * (bpf_link pinned as links/vm<ID>_dev, program-swapped on restart like the
 * tcx links), the BPF LSM program where the kernel loads and runs one, and
 * the syscall/kvm statistics.  Each part that the kernel refuses is recorded
 * with the kernel's reason for `device status`; none of them fails
 * loader_open, so network enforcement never depends on them.
 */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "agent/core/log.h"
#include "bpf/abi/dev.h"
#include "loader/attach.h"
#include "loader/devices.h"
#include "loader/loader_internal.h"
#include "loader/probe.h"
#include "rayos_dev.skel.h"
#include "rayos_devstat.skel.h"
#include "rayos_lsm.skel.h"

#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC	0x63677270
#endif

/* Kernel dev_t encoding inside the kernel (MINORBITS = 20), as BPF sees it. */
#define KDEV(ma, mi)	(((__u64)(ma) << 20) | (mi))

enum { TP_SYS_ENTER, TP_SYS_EXIT, TP_KVM_EXIT, TP_KVM_MMIO, TP_KVM_PIO, TP_MAX };

struct loader_dev {
	struct rayos_dev *dev;
	struct rayos_lsm *lsm;
	struct rayos_devstat *stat;
	struct bpf_link *tp[TP_MAX];
	struct loader_dev_part part[RAYOS_DEVP_MAX];
};

static const char *const part_names[RAYOS_DEVP_MAX] = {
	[RAYOS_DEVP_CGROUP]	= "cgroup_device",
	[RAYOS_DEVP_LSM]	= "lsm",
	[RAYOS_DEVP_SYSCALLS]	= "syscall_stats",
	[RAYOS_DEVP_KVM]	= "kvm_stats",
};

const char *loader_dev_part_name(enum rayos_dev_part p)
{
	return p < RAYOS_DEVP_MAX ? part_names[p] : "?";
}

static void part_set(struct loader_dev *d, enum rayos_dev_part p, bool active,
		     const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void part_set(struct loader_dev *d, enum rayos_dev_part p, bool active,
		     const char *fmt, ...)
{
	va_list ap;

	d->part[p].active = active;
	va_start(ap, fmt);
	vsnprintf(d->part[p].detail, sizeof(d->part[p].detail), fmt, ap);
	va_end(ap);
	if (active)
		log_info("devices: %s: %s", part_names[p], d->part[p].detail);
	else
		log_warn("devices: %s unavailable: %s", part_names[p], d->part[p].detail);
}

void loader_dev_status(const struct loader *ld, struct loader_dev_part out[RAYOS_DEVP_MAX])
{
	for (int p = 0; p < RAYOS_DEVP_MAX; p++) {
		if (ld->dev) {
			out[p] = ld->dev->part[p];
		} else {
			out[p].active = false;
			snprintf(out[p].detail, sizeof(out[p].detail), "device objects not opened");
		}
	}
}

int loader_dev_prog_fd(const struct loader *ld)
{
	return ld->dev && ld->dev->dev ? bpf_program__fd(ld->dev->dev->progs.rayos_dev) : -1;
}

/* rayos_dev_above: for the parent of a cgroup another manager sealed. */
static int above_prog_fd(const struct loader *ld)
{
	return ld->dev && ld->dev->dev ? bpf_program__fd(ld->dev->dev->progs.rayos_dev_above)
				       : -1;
}

/* Take the device maps' fds from the first object that has them. */
static int take_map_fds(struct loader *ld, struct bpf_object *obj)
{
	for (int i = RAYOS_MAP_DEV_FIRST; i <= RAYOS_MAP_DEV_LAST; i++) {
		struct bpf_map *map;

		if (ld->map_fds[i] >= 0)
			continue;
		map = bpf_object__find_map_by_name(obj, loader_map_name(i));
		if (!map) {
			log_err("BPF object lacks map %s", loader_map_name(i));
			return -ENOENT;
		}
		ld->map_fds[i] = bpf_map__fd(map);
	}
	return 0;
}

static int link_cgroup(int link_fd, __u64 *cgid)
{
	struct bpf_link_info info = {};
	__u32 len = sizeof(info);

	if (bpf_obj_get_info_by_fd(link_fd, &info, &len))
		return -errno;
	if (info.type != BPF_LINK_TYPE_CGROUP)
		return -EINVAL;
	*cgid = info.cgroup.cgroup_id;
	return 0;
}

/* Whether a link runs rayos_dev_above (1) or rayos_dev (0), by its
 * program's name, read at start while the agent may still open programs by
 * id; -errno when that cannot be told. */
static int link_runs_above(int link_fd)
{
	struct bpf_link_info li = {};
	struct bpf_prog_info pi = {};
	__u32 len = sizeof(li);
	int fd, ret;

	if (bpf_obj_get_info_by_fd(link_fd, &li, &len))
		return -errno;
	fd = bpf_prog_get_fd_by_id(li.prog_id);
	if (fd < 0)
		return -errno;
	len = sizeof(pi);
	ret = bpf_obj_get_info_by_fd(fd, &pi, &len) ? -errno :
	      !strcmp(pi.name, "rayos_dev_above");
	close(fd);
	return ret;
}

/* A new agent brings new program instances: swap them into every pinned
 * device link (same as loader_refresh_links does for the tcx links), each
 * link getting the entry it ran before. */
static void refresh_dev_links(struct loader *ld, int prog_fd, int above_fd)
{
	char dir[LOADER_PIN_ROOT_LEN + 8], path[PATH_MAX];
	struct dirent *de;
	unsigned int n = 0;
	DIR *dp;

	snprintf(dir, sizeof(dir), "%s/links", ld->pin_root);
	dp = opendir(dir);
	if (!dp)
		return;
	while ((de = readdir(dp))) {
		unsigned int id;
		char suffix[8];
		int fd, above;

		if (sscanf(de->d_name, "vm%u_%7s", &id, suffix) != 2 || strcmp(suffix, "dev"))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		fd = bpf_obj_get(path);
		/* The wrong entry on a parent would refuse other managers'
		 * guests: when unsure, the old program keeps running. */
		above = fd < 0 ? -errno : link_runs_above(fd);
		if (above < 0)
			log_warn("cannot tell which program pinned link %s runs (%s): left as "
				 "it is", path, strerror(-above));
		else if (bpf_link_update(fd, above ? above_fd : prog_fd, NULL))
			log_warn("cannot update pinned link %s: %s", path, strerror(errno));
		else
			n++;
		if (fd >= 0)
			close(fd);
	}
	closedir(dp);
	if (n)
		log_info("devices: swapped the new program into %u pinned cgroup links", n);
}

static void open_cgroup_part(struct loader *ld, struct loader_dev *d, uint32_t max_vms,
			     const struct rayos_feature_state *feat)
{
	LIBBPF_OPTS(bpf_object_open_opts, oo, .pin_root_path = ld->pin_root);
	int err;

	if (!feat[RAYOS_FEAT_CGROUP_DEVICE].available) {
		part_set(d, RAYOS_DEVP_CGROUP, false, "%s", feat[RAYOS_FEAT_CGROUP_DEVICE].detail);
		return;
	}
	d->dev = rayos_dev__open_opts(&oo);
	err = d->dev ? loader_size_maps(ld, d->dev->obj, max_vms) : -errno;
	if (!err)
		err = rayos_dev__load(d->dev);
	if (!err)
		err = take_map_fds(ld, d->dev->obj);
	if (err) {
		part_set(d, RAYOS_DEVP_CGROUP, false, "cannot load rayos_dev: %s", strerror(-err));
		rayos_dev__destroy(d->dev);
		d->dev = NULL;
		return;
	}
	refresh_dev_links(ld, bpf_program__fd(d->dev->progs.rayos_dev),
			  bpf_program__fd(d->dev->progs.rayos_dev_above));
	part_set(d, RAYOS_DEVP_CGROUP, true, "rayos_dev loaded; attached per VM cgroup "
		 "(links/vm<ID>_dev)");
}

/* The LSM link is pinned too (links/lsm_file_open): enforcement outlives
 * the agent.  LSM links cannot swap programs, so a new agent attaches its
 * own first and then replaces the pin, which releases the old link. */
static void open_lsm_part(struct loader *ld, struct loader_dev *d, uint32_t max_vms,
			  const struct rayos_feature_state *feat)
{
	LIBBPF_OPTS(bpf_object_open_opts, oo, .pin_root_path = ld->pin_root);
	char path[PATH_MAX];
	struct bpf_link *link;
	int err;

	if (!feat[RAYOS_FEAT_LSM_PROG].available) {
		part_set(d, RAYOS_DEVP_LSM, false, "%s", feat[RAYOS_FEAT_LSM_PROG].detail);
		return;
	}
	d->lsm = rayos_lsm__open_opts(&oo);
	err = d->lsm ? loader_size_maps(ld, d->lsm->obj, max_vms) : -errno;
	if (!err)
		err = rayos_lsm__load(d->lsm);
	if (!err)
		err = take_map_fds(ld, d->lsm->obj);
	if (err) {
		part_set(d, RAYOS_DEVP_LSM, false, "cannot load rayos_lsm: %s", strerror(-err));
		goto fail;
	}
	if (!feat[RAYOS_FEAT_LSM_ACTIVE].available) {
		part_set(d, RAYOS_DEVP_LSM, false, "rayos_file_open loads but cannot run: %s",
			 feat[RAYOS_FEAT_LSM_ACTIVE].detail);
		goto fail;
	}
	link = bpf_program__attach_lsm(d->lsm->progs.rayos_file_open);
	if (!link) {
		part_set(d, RAYOS_DEVP_LSM, false, "cannot attach rayos_file_open: %s",
			 strerror(errno));
		goto fail;
	}
	snprintf(path, sizeof(path), "%s/links/lsm_file_open", ld->pin_root);
	err = loader_link_pin_over(bpf_link__fd(link), path);
	if (err)
		log_warn("cannot pin %s: %s; the LSM program stops with the agent", path,
			 strerror(-err));
	bpf_link__disconnect(link);	/* the pin holds it */
	bpf_link__destroy(link);
	part_set(d, RAYOS_DEVP_LSM, true, "rayos_file_open attached (links/lsm_file_open)");
	return;
fail:
	rayos_lsm__destroy(d->lsm);
	d->lsm = NULL;
}

/* Statistics links live with this loader: raw tracepoint links cannot swap
 * programs, and counting is not enforcement.  The counters are pinned. */
static void open_stats_part(struct loader *ld, struct loader_dev *d, uint32_t max_vms,
			    const struct rayos_feature_state *feat)
{
	LIBBPF_OPTS(bpf_object_open_opts, oo, .pin_root_path = ld->pin_root);
	static const struct {
		int tp;
		const char *name;
	} kvm[] = { { TP_KVM_EXIT, "kvm_exit" }, { TP_KVM_MMIO, "kvm_mmio" },
		    { TP_KVM_PIO, "kvm_pio" } };
	char missing[96] = "";
	int err;

	if (!feat[RAYOS_FEAT_TRACEPOINT].available) {
		part_set(d, RAYOS_DEVP_SYSCALLS, false, "%s", feat[RAYOS_FEAT_TRACEPOINT].detail);
		part_set(d, RAYOS_DEVP_KVM, false, "%s", feat[RAYOS_FEAT_TRACEPOINT].detail);
		return;
	}
	d->stat = rayos_devstat__open_opts(&oo);
	err = d->stat ? loader_size_maps(ld, d->stat->obj, max_vms) : -errno;
	if (!err)
		err = rayos_devstat__load(d->stat);
	if (!err)
		err = take_map_fds(ld, d->stat->obj);
	if (err) {
		part_set(d, RAYOS_DEVP_SYSCALLS, false, "cannot load rayos_devstat: %s",
			 strerror(-err));
		part_set(d, RAYOS_DEVP_KVM, false, "cannot load rayos_devstat: %s",
			 strerror(-err));
		rayos_devstat__destroy(d->stat);
		d->stat = NULL;
		return;
	}
	d->tp[TP_SYS_ENTER] = bpf_program__attach_raw_tracepoint(d->stat->progs.rayos_sys_enter,
								  "sys_enter");
	d->tp[TP_SYS_EXIT] = bpf_program__attach_raw_tracepoint(d->stat->progs.rayos_sys_exit,
								 "sys_exit");
	if (d->tp[TP_SYS_ENTER] && d->tp[TP_SYS_EXIT])
		part_set(d, RAYOS_DEVP_SYSCALLS, true, "raw tracepoints sys_enter/sys_exit: "
			 "open, openat, openat2, ioctl of VM tasks");
	else
		part_set(d, RAYOS_DEVP_SYSCALLS, false, "cannot attach raw tracepoints "
			 "sys_enter/sys_exit: %s", strerror(errno));
	/* The kvm tracepoints exist only with KVM built in or loaded. */
	for (size_t i = 0; i < sizeof(kvm) / sizeof(kvm[0]); i++) {
		struct bpf_program *prog = i == 0 ? d->stat->progs.rayos_kvm_exit :
					   i == 1 ? d->stat->progs.rayos_kvm_mmio :
						    d->stat->progs.rayos_kvm_pio;

		d->tp[kvm[i].tp] = bpf_program__attach_raw_tracepoint(prog, kvm[i].name);
		if (!d->tp[kvm[i].tp])
			snprintf(missing + strlen(missing), sizeof(missing) - strlen(missing),
				 "%s%s (%s)", missing[0] ? ", " : "", kvm[i].name,
				 strerror(errno));
	}
	if (!missing[0])
		part_set(d, RAYOS_DEVP_KVM, true, "raw tracepoints kvm_exit, kvm_mmio, kvm_pio%s",
			 access("/dev/kvm", F_OK) ? " (no /dev/kvm on this host: nothing to count)"
						  : "");
	else
		part_set(d, RAYOS_DEVP_KVM, false, "no kvm tracepoints (KVM not loaded?): %s",
			 missing);
}

void loader_devices_open(struct loader *ld, uint32_t max_vms)
{
	struct rayos_feature_state feat[RAYOS_FEAT_MAX];
	const char *cache = ld->feature_cache[0] ? ld->feature_cache : NULL;
	struct loader_dev *d;

	for (int i = RAYOS_MAP_DEV_FIRST; i <= RAYOS_MAP_DEV_LAST; i++)
		ld->map_fds[i] = -1;
	d = calloc(1, sizeof(*d));
	if (!d) {
		log_err("devices: out of memory");
		return;
	}
	ld->dev = d;
	loader_probe_features(cache, feat);
	open_cgroup_part(ld, d, max_vms, feat);
	open_lsm_part(ld, d, max_vms, feat);
	if (ld->no_dev_stats) {
		/* The syscall tracepoints fire for every task on the host, not
		 * only for VMs: measured +705 ns per open+close (bench_dev). */
		part_set(d, RAYOS_DEVP_SYSCALLS, false, "off: it costs every syscall on the "
			 "host; start the agent with --device-stats to count");
		part_set(d, RAYOS_DEVP_KVM, false, "off: start the agent with --device-stats");
	} else {
		open_stats_part(ld, d, max_vms, feat);
	}
}

void loader_devices_close(struct loader *ld)
{
	struct loader_dev *d = ld->dev;

	if (!d)
		return;
	for (int i = 0; i < TP_MAX; i++)
		bpf_link__destroy(d->tp[i]);
	rayos_devstat__destroy(d->stat);
	rayos_lsm__destroy(d->lsm);
	rayos_dev__destroy(d->dev);
	free(d);
	ld->dev = NULL;
}

/* ---- cgroups ------------------------------------------------------------------ */

uint64_t loader_vm_cgroup_id(const struct loader *ld, uint32_t vm_id)
{
	char path[PATH_MAX];
	__u64 cgid = 0;
	int fd;

	if (loader_link_path(ld, vm_id, "dev", path, sizeof(path)))
		return 0;
	fd = bpf_obj_get(path);
	if (fd < 0)
		return 0;
	if (link_cgroup(fd, &cgid))
		cgid = 0;
	close(fd);
	return cgid;
}

/* Remove every rayos_cgroups entry of vm_id except keep (0: none kept). */
static void forget_cgroups(struct loader *ld, uint32_t vm_id, __u64 keep)
{
	int fd = ld->map_fds[RAYOS_MAP_CGROUPS];
	struct rayos_cgroup_val val;
	__u64 key, next, *prev = NULL;

	while (!bpf_map_get_next_key(fd, prev, &next)) {
		key = next;
		if (!bpf_map_lookup_elem(fd, &key, &val) && val.vm_id == vm_id && key != keep) {
			bpf_map_delete_elem(fd, &key);
			prev = NULL;	/* a hash walk restarts after a delete */
			continue;
		}
		prev = &key;
	}
}

/* Open a cgroup v2 directory; its id is its inode number.  -errno, logged. */
static int cgroup_open(uint32_t vm_id, const char *cgroup_path, __u64 *cgid)
{
	struct statfs sfs;
	struct stat st;
	int cg, err;

	cg = open(cgroup_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (cg < 0) {
		err = -errno;
		log_err("VM %u: cannot open cgroup %s: %s", vm_id, cgroup_path, strerror(-err));
		return err;
	}
	if (fstatfs(cg, &sfs) || fstat(cg, &st)) {
		err = -errno;
		close(cg);
		return err;
	}
	if (sfs.f_type != CGROUP2_SUPER_MAGIC) {
		log_err("VM %u: %s is not a cgroup v2 directory", vm_id, cgroup_path);
		close(cg);
		return -EINVAL;
	}
	*cgid = st.st_ino;	/* a cgroup v2 id is its directory's inode number */
	return cg;
}

/* The pinned device link (vm*_dev) of another VM that sits on cgroup cgid
 * and runs rayos_dev_above; -1 if none. */
static __u32 link_prog_id(int link_fd)
{
	struct bpf_link_info li = {};
	__u32 len = sizeof(li);

	return bpf_obj_get_info_by_fd(link_fd, &li, &len) ? 0 : li.prog_id;
}

/* By program id, not name: after start the agent may no longer open
 * programs by id, and every pinned link runs this agent's programs. */
static int find_above_link(struct loader *ld, uint32_t vm_id, __u64 cgid)
{
	char dir[LOADER_PIN_ROOT_LEN + 8], path[PATH_MAX];
	struct bpf_prog_info pi = {};
	__u32 len = sizeof(pi), above_id;
	struct dirent *de;
	int found = -1;
	DIR *dp;

	if (bpf_obj_get_info_by_fd(above_prog_fd(ld), &pi, &len))
		return -1;
	above_id = pi.id;

	snprintf(dir, sizeof(dir), "%s/links", ld->pin_root);
	dp = opendir(dir);
	if (!dp)
		return -1;
	while (found < 0 && (de = readdir(dp))) {
		unsigned int id;
		char suffix[8];
		__u64 at;
		int fd;

		if (sscanf(de->d_name, "vm%u_%7s", &id, suffix) != 2 || strcmp(suffix, "dev") ||
		    id == vm_id)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		fd = bpf_obj_get(path);
		if (fd < 0)
			continue;
		if (!link_cgroup(fd, &at) && at == cgid && link_prog_id(fd) == above_id)
			found = fd;
		else
			close(fd);
	}
	closedir(dp);
	return found;
}

/*
 * The VM's link (links/vm<ID>_dev) running prog_fd on the cgroup target
 * (open fd, id target_id), the VM's own cgroup being vm_cgid.  A pinned link
 * already there gets prog_fd swapped in; with share, a link of another VM on
 * the same target is pinned for this VM too (the link lives while any pin
 * does); else a new link is made.  Only then are the VM's other cgroups
 * forgotten.
 */
static int attach_link(struct loader *ld, uint32_t vm_id, int prog_fd, int target,
		       __u64 target_id, __u64 vm_cgid, bool share, const char *what)
{
	char path[PATH_MAX];
	int old = -1, link = -1, err;
	__u64 cur = 0;

	err = loader_link_path(ld, vm_id, "dev", path, sizeof(path));
	if (err)
		return err;
	old = bpf_obj_get(path);
	if (old >= 0 && !link_cgroup(old, &cur) && cur == target_id) {
		/* Same cgroup: swap in this loader's program, no gap. */
		err = bpf_link_update(old, prog_fd, NULL) ? -errno : 0;
		close(old);
		return err;
	}
	if (share)
		link = find_above_link(ld, vm_id, target_id);
	if (link < 0)
		link = bpf_link_create(prog_fd, target, BPF_CGROUP_DEVICE, NULL);
	if (link < 0) {
		err = -errno;
		/* EPERM: a caller may go above such a program (the agent does
		 * for libvirt's cgroups), so it is not an error yet. */
		if (err == -EPERM)
			log_info("VM %u: cannot attach rayos_dev to %s: a device program attached "
				 "there or above without BPF_F_ALLOW_MULTI forbids it", vm_id, what);
		else
			log_err("VM %u: cannot attach rayos_dev to %s: %s", vm_id, what,
				strerror(-err));
		goto out;
	}
	err = loader_link_pin_over(link, path);
	if (err)
		log_err("VM %u: cannot pin link %s: %s", vm_id, path, strerror(-err));
	close(link);
	if (!err && cur && cur != target_id)
		forget_cgroups(ld, vm_id, vm_cgid);
out:
	if (old >= 0)
		close(old);
	return err;
}

/* Map the VM's cgroup to the VM: the program finds the VM through this
 * entry, so it is written before any link. */
static int map_cgroup(struct loader *ld, uint32_t vm_id, __u64 cgid, const char *cgroup_path)
{
	struct rayos_cgroup_val val = { .vm_id = vm_id };

	if (bpf_map_update_elem(ld->map_fds[RAYOS_MAP_CGROUPS], &cgid, &val, BPF_ANY)) {
		int err = -errno;

		log_err("VM %u: cannot map cgroup %s: %s", vm_id, cgroup_path, strerror(-err));
		return err;
	}
	return 0;
}

int loader_attach_cgroup(struct loader *ld, uint32_t vm_id, const char *cgroup_path)
{
	int cg, prog_fd = loader_dev_prog_fd(ld), err;
	__u64 cgid;

	if (prog_fd < 0)
		return -EOPNOTSUPP;
	if (!vm_id)
		return -EINVAL;
	cg = cgroup_open(vm_id, cgroup_path, &cgid);
	if (cg < 0)
		return cg;
	err = map_cgroup(ld, vm_id, cgid, cgroup_path);
	if (!err)
		err = attach_link(ld, vm_id, prog_fd, cg, cgid, cgid, false, cgroup_path);
	close(cg);
	return err;
}

int loader_attach_cgroup_above(struct loader *ld, uint32_t vm_id, const char *cgroup_path,
			       const char *parent_path)
{
	int cg, parent, prog_fd = above_prog_fd(ld), err;
	__u64 cgid, pid;

	if (prog_fd < 0)
		return -EOPNOTSUPP;
	if (!vm_id)
		return -EINVAL;
	cg = cgroup_open(vm_id, cgroup_path, &cgid);
	if (cg < 0)
		return cg;
	close(cg);
	parent = cgroup_open(vm_id, parent_path, &pid);
	if (parent < 0)
		return parent;
	err = map_cgroup(ld, vm_id, cgid, cgroup_path);
	if (!err)
		err = attach_link(ld, vm_id, prog_fd, parent, pid, cgid, true, parent_path);
	close(parent);
	return err;
}

int loader_detach_cgroup(struct loader *ld, uint32_t vm_id)
{
	char path[PATH_MAX];
	int err = 0;

	if (ld->map_fds[RAYOS_MAP_CGROUPS] < 0)
		return -EOPNOTSUPP;
	if (!loader_link_path(ld, vm_id, "dev", path, sizeof(path)) && unlink(path) && errno != ENOENT)
		err = -errno;
	/* Detached first: forgetting the cgroup while attached would leave
	 * the VM's tasks with the basics only. */
	forget_cgroups(ld, vm_id, 0);
	return err;
}

/* ---- images ------------------------------------------------------------------- */

int loader_dev_set_image(struct loader *ld, uint32_t vm_id, const char *path, uint8_t mode)
{
	struct rayos_dev_file val = { .vm_id = vm_id, .mode = mode };
	struct rayos_dev_file_key key = {};
	struct stat st;

	if (ld->map_fds[RAYOS_MAP_DEV_FILES] < 0)
		return -EOPNOTSUPP;
	if (stat(path, &st)) {
		int err = -errno;

		log_err("VM %u: disk image %s: %s", vm_id, path, strerror(-err));
		return err;
	}
	if (!S_ISREG(st.st_mode)) {
		log_err("VM %u: disk image %s is not a regular file", vm_id, path);
		return -EINVAL;
	}
	key.dev = KDEV(major(st.st_dev), minor(st.st_dev));
	key.ino = st.st_ino;
	return bpf_map_update_elem(ld->map_fds[RAYOS_MAP_DEV_FILES], &key, &val, BPF_ANY) ?
	       -errno : 0;
}

int loader_dev_clear_images(struct loader *ld, uint32_t vm_id)
{
	int fd = ld->map_fds[RAYOS_MAP_DEV_FILES];
	struct rayos_dev_file_key key, next, *prev = NULL;
	struct rayos_dev_file val;

	if (fd < 0)
		return -EOPNOTSUPP;
	while (!bpf_map_get_next_key(fd, prev, &next)) {
		key = next;
		if (!bpf_map_lookup_elem(fd, &key, &val) && (!vm_id || val.vm_id == vm_id)) {
			bpf_map_delete_elem(fd, &key);
			prev = NULL;
			continue;
		}
		prev = &key;
	}
	return 0;
}

/* ---- counters ----------------------------------------------------------------- */

int loader_dev_stats(const struct loader *ld, uint32_t slot, uint32_t cls,
		     struct rayos_dev_ctr *out)
{
	if (cls >= RAYOS_DEVC_MAX)
		return -EINVAL;
	if (ld->map_fds[RAYOS_MAP_DEV_STATS] < 0)
		return -ENOENT;
	return loader_percpu_sum(ld->map_fds[RAYOS_MAP_DEV_STATS], slot * RAYOS_DEVC_MAX + cls,
				 (__u64 *)out, sizeof(*out) / sizeof(__u64));
}

int loader_kvm_stats(const struct loader *ld, uint32_t slot, struct rayos_kvm_ctr *out)
{
	if (ld->map_fds[RAYOS_MAP_KVM_STATS] < 0)
		return -ENOENT;
	return loader_percpu_sum(ld->map_fds[RAYOS_MAP_KVM_STATS], slot,
				 (__u64 *)out, sizeof(*out) / sizeof(__u64));
}

/* Device statistics may not be loaded (fd -1): nothing to clear then. */
static int zero_percpu(int fd, __u32 key, size_t size)
{
	return fd < 0 ? 0 : loader_cell_zero(fd, key, size, true);
}

int loader_dev_zero_slot(struct loader *ld, uint32_t slot)
{
	int err = 0;

	for (__u32 c = 0; c < RAYOS_DEVC_MAX; c++)
		err = err ?: zero_percpu(ld->map_fds[RAYOS_MAP_DEV_STATS],
					 slot * RAYOS_DEVC_MAX + c, sizeof(struct rayos_dev_ctr));
	return err ?: zero_percpu(ld->map_fds[RAYOS_MAP_KVM_STATS], slot,
				  sizeof(struct rayos_kvm_ctr));
}

/* The device objects that were loaded, for measurement (loader/objects.c). */
int loader_dev_for_each_object(const struct loader *ld, loader_object_fn fn, void *ctx)
{
	const struct loader_dev *d = ld->dev;
	int err = 0;

	if (!d)
		return 0;
	if (d->dev)
		err = err ?: fn(ctx, "rayos_dev", d->dev->skeleton->data, d->dev->skeleton->data_sz);
	if (d->lsm)
		err = err ?: fn(ctx, "rayos_lsm", d->lsm->skeleton->data, d->lsm->skeleton->data_sz);
	if (d->stat)
		err = err ?: fn(ctx, "rayos_devstat", d->stat->skeleton->data,
				d->stat->skeleton->data_sz);
	return err;
}
