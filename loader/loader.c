// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Opens the RayOS BPF objects, sizes and pins their maps under the pin root,
 * and adopts what an earlier agent left pinned there, so that restarting the
 * agent never clears a map or detaches a program.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>
#include <dirent.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "agent/core/log.h"
#include "agent/core/util.h"
#include "bpf/abi/dev.h"
#include "bpf/abi/policy.h"
#include "loader/loader.h"
#include "loader/loader_internal.h"
#include "loader/publish.h"
#include "rayos_net.skel.h"

#ifndef BPF_FS_MAGIC
#define BPF_FS_MAGIC 0xcafe4a11
#endif

static const char *const map_names[RAYOS_MAP_MAX] = {
	[RAYOS_MAP_VMS]		= "rayos_vms",
	[RAYOS_MAP_FW_PORT]	= "rayos_fw_port",
	[RAYOS_MAP_FW_RANGE]	= "rayos_fw_range",
	[RAYOS_MAP_FW_CIDR4]	= "rayos_fw_cidr4",
	[RAYOS_MAP_FW_CIDR6]	= "rayos_fw_cidr6",
	[RAYOS_MAP_FW_TAB]	= "rayos_fw_tab",
	[RAYOS_MAP_POLICY]	= "rayos_policy",
	[RAYOS_MAP_IFACES]	= "rayos_ifaces",
	[RAYOS_MAP_IP_BIND]	= "rayos_ip_bind",
	/* rayos_net data path state and telemetry */
	[RAYOS_MAP_VM_STATS]	= "rayos_vm_stats",
	[RAYOS_MAP_RULE_STATS]	= "rayos_rule_stats",
	[RAYOS_MAP_NET_STATS]	= "rayos_net_stats",
	[RAYOS_MAP_CT4]		= "rayos_ct4",
	[RAYOS_MAP_CT6]		= "rayos_ct6",
	[RAYOS_MAP_FRAG]	= "rayos_frag",
	[RAYOS_MAP_TBF]		= "rayos_tbf",
	[RAYOS_MAP_EV_RATE]	= "rayos_ev_rate",
	[RAYOS_MAP_EVENTS]	= "rayos_events",
	[RAYOS_MAP_CTL_RATE]	= "rayos_ctl_rate",
	[RAYOS_MAP_HOST4]	= "rayos_host4",
	[RAYOS_MAP_HOST6]	= "rayos_host6",
	[RAYOS_MAP_CAP_SWITCH]	= "rayos_cap_switch",
	[RAYOS_MAP_CAP_REVOKE]	= "rayos_cap_revoke",
	/* device enforcement */
	[RAYOS_MAP_DEV_RULES]	= "rayos_dev_rules",
	[RAYOS_MAP_CGROUPS]	= "rayos_cgroups",
	[RAYOS_MAP_DEV_FILES]	= "rayos_dev_files",
	[RAYOS_MAP_DEV_STATS]	= "rayos_dev_stats",
	[RAYOS_MAP_KVM_STATS]	= "rayos_kvm_stats",
	[RAYOS_MAP_DEV_INFLT]	= "rayos_dev_inflt",
};

/* Maps whose size follows the number of VMs, and how many entries per VM. */
static const struct {
	enum rayos_map_id id;
	unsigned int per_vm;
} vm_sized_maps[] = {
	{ RAYOS_MAP_VMS, 1 },
	{ RAYOS_MAP_FW_TAB, RAYOS_FW_DIRS * 2 },	/* rule sets x generations */
	{ RAYOS_MAP_IFACES, 2 },
	{ RAYOS_MAP_IP_BIND, 1 },
	/* rayos_net per-slot arrays: one cell per slot (and direction, rule) */
	{ RAYOS_MAP_VM_STATS, 1 },
	{ RAYOS_MAP_RULE_STATS, RAYOS_DIR_MAX * RAYOS_MAX_RULES },
	{ RAYOS_MAP_TBF, RAYOS_DIR_MAX },
	{ RAYOS_MAP_EV_RATE, 1 },
	{ RAYOS_MAP_CTL_RATE, RAYOS_CTL_MAX },
	{ RAYOS_MAP_CAP_REVOKE, 1 },
	/* device enforcement */
	{ RAYOS_MAP_CGROUPS, 4 },
	{ RAYOS_MAP_DEV_STATS, RAYOS_DEVC_MAX },
	{ RAYOS_MAP_KVM_STATS, 1 },
};

static const char *const prog_names[RAYOS_PROG_MAX] = {
	[RAYOS_PROG_FROM_VM]	= "rayos_from_vm",
	[RAYOS_PROG_TO_VM]	= "rayos_to_vm",
};

const char *loader_map_name(enum rayos_map_id id)
{
	return id < RAYOS_MAP_MAX ? map_names[id] : NULL;
}

const char *loader_prog_name(enum rayos_prog_id id)
{
	return id < RAYOS_PROG_MAX ? prog_names[id] : NULL;
}

static int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	static const enum log_level map[] = {
		[LIBBPF_WARN] = LOG_LVL_WARN,
		[LIBBPF_INFO] = LOG_LVL_DEBUG,
		[LIBBPF_DEBUG] = LOG_LVL_DEBUG,
	};
	char buf[1024];
	size_t n;

	if (map[level] > log_get_level())
		return 0;
	vsnprintf(buf, sizeof(buf), fmt, ap);
	n = strlen(buf);
	while (n && buf[n - 1] == '\n')
		buf[--n] = '\0';
	log_msg(map[level], "libbpf: %s", buf);
	return 0;
}

void loader_route_libbpf_logs(void)
{
	libbpf_set_print(libbpf_print);
}

/* bpffs must be mounted for pins to outlive us; mount it where systemd would. */
static int ensure_bpffs(const char *pin_root)
{
	struct statfs st;

	if (strncmp(pin_root, "/sys/fs/bpf/", strlen("/sys/fs/bpf/")))
		return 0;	/* the caller chose a place; they mounted it */
	if (!statfs("/sys/fs/bpf", &st) && st.f_type == BPF_FS_MAGIC)
		return 0;
	if (mount("bpf", "/sys/fs/bpf", "bpf", 0, "mode=0700")) {
		log_err("cannot mount bpffs on /sys/fs/bpf: %s", strerror(errno));
		return -errno;
	}
	log_info("mounted bpffs on /sys/fs/bpf");
	return 0;
}

static int pin_path(char *buf, size_t len, const char *root, const char *sub,
		    const char *name)
{
	int n = sub ? snprintf(buf, len, "%s/%s/%s", root, sub, name)
		    : snprintf(buf, len, "%s/%s", root, name);

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/*
 * Size maps before creation.  A pinned map is reused only if its definition
 * matches, so take the size of what is pinned rather than fail the reuse; an
 * incompatible layout (an older ABI) still fails, with advice.
 */
int loader_size_maps(struct loader *ld, struct bpf_object *obj, uint32_t max_vms)
{
	for (size_t i = 0; i < sizeof(vm_sized_maps) / sizeof(vm_sized_maps[0]); i++) {
		const char *name = map_names[vm_sized_maps[i].id];
		struct bpf_map *map = bpf_object__find_map_by_name(obj, name);
		uint32_t want = max_vms * vm_sized_maps[i].per_vm;
		char path[PATH_MAX];
		int fd, err;

		if (!map)
			continue;
		err = pin_path(path, sizeof(path), ld->pin_root, NULL, name);
		if (err)
			return err;
		fd = bpf_obj_get(path);
		if (fd >= 0) {
			struct bpf_map_info info = {};
			__u32 len = sizeof(info);

			err = bpf_obj_get_info_by_fd(fd, &info, &len);
			close(fd);
			if (err)
				return -errno;
			if (info.max_entries != want)
				log_info("%s: keeping the pinned size %u (asked for %u)",
					 name, info.max_entries, want);
			want = info.max_entries;
		}
		err = bpf_map__set_max_entries(map, want);
		if (err)
			return err;
	}
	return 0;
}

static void count_adopted(struct loader *ld)
{
	char path[PATH_MAX];

	ld->nr_adopted = 0;
	for (int i = 0; i < RAYOS_MAP_MAX; i++) {
		if (!pin_path(path, sizeof(path), ld->pin_root, NULL, map_names[i]) &&
		    !access(path, F_OK))
			ld->nr_adopted++;
	}
}

/* An outer map whose updates make the kernel wait for an RCU grace period:
 * the cheapest way user space has to wait out programs in flight. */
static int create_sync_maps(struct loader *ld)
{
	LIBBPF_OPTS(bpf_map_create_opts, outer_opts);
	int inner;

	inner = bpf_map_create(BPF_MAP_TYPE_ARRAY, "rayos_sync_in", 4, 4, 1, NULL);
	if (inner < 0)
		return -errno;
	outer_opts.inner_map_fd = inner;
	ld->sync_outer_fd = bpf_map_create(BPF_MAP_TYPE_ARRAY_OF_MAPS, "rayos_sync",
					   4, 4, 1, &outer_opts);
	if (ld->sync_outer_fd < 0) {
		int err = -errno;

		close(inner);
		return err;
	}
	ld->sync_inner_fd = inner;
	return 0;
}

int loader_sync_programs(struct loader *ld)
{
	__u32 key = 0;

	if (bpf_map_update_elem(ld->sync_outer_fd, &key, &ld->sync_inner_fd, BPF_ANY))
		return -errno;
	return 0;
}

int loader_open(const struct loader_opts *opts, struct loader **out)
{
	LIBBPF_OPTS(bpf_object_open_opts, open_opts);
	const char *root = opts && opts->pin_root ? opts->pin_root : RAYOS_PIN_ROOT_DEFAULT;
	uint32_t max_vms = opts && opts->max_vms ? opts->max_vms : RAYOS_MAX_VMS_DEFAULT;
	struct loader *ld;
	char links[PATH_MAX];
	int err;

	*out = NULL;
	if (max_vms > RAYOS_MAX_VMS_LIMIT) {
		log_err("max_vms %u: at most %u", max_vms, RAYOS_MAX_VMS_LIMIT);
		return -EINVAL;
	}
	loader_route_libbpf_logs();
	ld = calloc(1, sizeof(*ld));
	if (!ld)
		return -ENOMEM;
	ld->sync_outer_fd = ld->sync_inner_fd = -1;
	if (snprintf(ld->pin_root, sizeof(ld->pin_root), "%s", root) >= (int)sizeof(ld->pin_root)) {
		err = -ENAMETOOLONG;
		goto err;
	}
	if (opts && opts->feature_cache)
		snprintf(ld->feature_cache, sizeof(ld->feature_cache), "%s", opts->feature_cache);
	ld->no_dev_stats = opts && opts->no_dev_stats;
	err = ensure_bpffs(ld->pin_root);
	if (err)
		goto err;
	err = pin_path(links, sizeof(links), ld->pin_root, NULL, "links");
	if (!err)
		err = mkdir_p(links, 0700);
	if (err) {
		log_err("cannot create pin directory %s: %s", links, strerror(-err));
		goto err;
	}
	count_adopted(ld);

	open_opts.pin_root_path = ld->pin_root;
	ld->net = rayos_net__open_opts(&open_opts);
	if (!ld->net) {
		err = -errno;
		log_err("cannot open BPF object rayos_net: %s", strerror(-err));
		goto err;
	}
	err = loader_size_maps(ld, ld->net->obj, max_vms);
	if (err)
		goto err;
	/* rayos_net load-time knobs (rodata), between open and load. */
	if (opts && opts->events_per_sec)
		ld->net->rodata->rayos_events_per_sec = opts->events_per_sec;
	err = rayos_net__load(ld->net);
	if (err) {
		log_err("cannot load BPF object rayos_net: %s%s", strerror(-err),
			err == -EINVAL ? " (a pinned map from an older layout? "
					 "run `rayos-agent stop --purge`)" : "");
		goto err;
	}
	for (int i = 0; i < RAYOS_MAP_MAX; i++) {
		struct bpf_map *map;

		if (i >= RAYOS_MAP_DEV_FIRST && i <= RAYOS_MAP_DEV_LAST)
			continue;	/* the device objects' (loader_devices_open) */
		map = bpf_object__find_map_by_name(ld->net->obj, map_names[i]);
		if (!map) {
			log_err("BPF object rayos_net lacks map %s", map_names[i]);
			err = -ENOENT;
			goto err;
		}
		ld->map_fds[i] = bpf_map__fd(map);
	}
	for (int i = 0; i < RAYOS_PROG_MAX; i++) {
		struct bpf_program *prog =
			bpf_object__find_program_by_name(ld->net->obj, prog_names[i]);

		if (!prog) {
			log_err("BPF object rayos_net lacks program %s", prog_names[i]);
			err = -ENOENT;
			goto err;
		}
		ld->prog_fds[i] = bpf_program__fd(prog);
	}
	loader_devices_open(ld, max_vms);	/* reports, never fails the open */
	err = create_sync_maps(ld);
	if (err) {
		log_err("cannot create the map-in-map used to wait for programs: %s",
			strerror(-err));
		goto err;
	}
	err = loader_refresh_links(ld);
	if (err)
		log_warn("some pinned links keep running the previous agent's programs");
	err = publish_adopt(ld);
	if (err) {
		log_err("cannot read the pinned policy maps: %s", strerror(-err));
		goto err;
	}
	log_info("BPF objects loaded, pins under %s (%u of %d maps adopted)",
		 ld->pin_root, ld->nr_adopted, RAYOS_MAP_MAX);
	*out = ld;
	return 0;
err:
	loader_close(ld);
	return err;
}

void loader_close(struct loader *ld)
{
	if (!ld)
		return;
	if (ld->sync_outer_fd >= 0)
		close(ld->sync_outer_fd);
	if (ld->sync_inner_fd >= 0)
		close(ld->sync_inner_fd);
	publish_free(ld);
	loader_capswitch_close(ld);
	loader_devices_close(ld);
	rayos_net__destroy(ld->net);	/* closes fds; pinned maps stay */
	free(ld->taps);
	free(ld);
}

const char *loader_pin_root(const struct loader *ld)
{
	return ld->pin_root;
}

int loader_map_fd(const struct loader *ld, enum rayos_map_id id)
{
	return id < RAYOS_MAP_MAX ? ld->map_fds[id] : -EINVAL;
}

int loader_prog_fd(const struct loader *ld, enum rayos_prog_id id)
{
	return id < RAYOS_PROG_MAX ? ld->prog_fds[id] : -EINVAL;
}

unsigned int loader_nr_adopted(const struct loader *ld)
{
	return ld->nr_adopted;
}

static int unlink_dir_entries(const char *dir)
{
	char path[PATH_MAX];
	struct dirent *de;
	int err = 0;
	DIR *d;

	d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.' || de->d_type == DT_DIR)
			continue;
		if (pin_path(path, sizeof(path), dir, NULL, de->d_name) || unlink(path))
			err = err ?: -errno;
	}
	closedir(d);
	return err;
}

int loader_purge(const char *pin_root)
{
	char links[PATH_MAX];
	int err;

	if (!pin_root)
		pin_root = RAYOS_PIN_ROOT_DEFAULT;
	err = pin_path(links, sizeof(links), pin_root, NULL, "links");
	if (err)
		return err;
	/* Links first: removing the last reference to a link detaches it. */
	err = unlink_dir_entries(links);
	if (!err && rmdir(links) && errno != ENOENT)
		err = -errno;
	if (!err)
		err = unlink_dir_entries(pin_root);
	if (!err && rmdir(pin_root) && errno != ENOENT)
		err = -errno;
	return err;
}
