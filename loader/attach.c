// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Attaching the network programs to a VM's tap with tcx links, pinned as
 * <pin_root>/links/vm<ID>_from and vm<ID>_to (bpffs reserves dots), so enforcement outlives the
 * agent.  Re-attaching never opens a window without a filter: a link that is
 * still on the right device gets its program swapped atomically
 * (bpf_link_update), and a moved VM gets its new link before the old one is
 * released.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>

#include "agent/core/log.h"
#include "bpf/abi/net.h"
#include "loader/attach.h"
#include "loader/loader_internal.h"

/* Kernel ABI values newer than the distribution's uapi headers. */
#define RAYOS_BPF_TCX_INGRESS	46
#define RAYOS_BPF_TCX_EGRESS	47
#define RAYOS_BPF_LINK_TYPE_TCX	11

static const struct {
	enum rayos_prog_id prog;
	const char *suffix;
	unsigned int attach_type;
} hooks[] = {
	/* What the guest sends enters the host at the tap's ingress. */
	{ RAYOS_PROG_FROM_VM, "from", RAYOS_BPF_TCX_INGRESS },
	{ RAYOS_PROG_TO_VM, "to", RAYOS_BPF_TCX_EGRESS },
};

/* Pin link at path under a temporary name, then rename it over whatever is
 * pinned there: the old link (another device or cgroup, or a vanished one)
 * goes only once the new one holds. */
int loader_link_pin_over(int link, const char *path)
{
	char tmp[PATH_MAX + 8];
	int err = 0;

	snprintf(tmp, sizeof(tmp), "%s_new", path);
	unlink(tmp);
	if (bpf_obj_pin(link, tmp) || rename(tmp, path)) {
		err = -errno;
		unlink(tmp);
	}
	return err;
}

int loader_link_path(const struct loader *ld, uint32_t vm_id, const char *suffix,
		     char *buf, size_t len)
{
	int n = snprintf(buf, len, "%s/links/vm%u_%s", ld->pin_root, vm_id, suffix);

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* The device a pinned tcx link sits on; 0 once the device is gone. The tcx
 * member of bpf_link_info starts, like xdp's, with the ifindex. */
static int link_ifindex(int link_fd, __u32 *ifindex)
{
	struct bpf_link_info info = {};
	__u32 len = sizeof(info);

	if (bpf_obj_get_info_by_fd(link_fd, &info, &len))
		return -errno;
	if (info.type != RAYOS_BPF_LINK_TYPE_TCX)
		return -EINVAL;
	*ifindex = info.xdp.ifindex;
	return 0;
}

static int attach_one(struct loader *ld, uint32_t vm_id, int ifindex, int h)
{
	char path[PATH_MAX];
	int prog_fd = ld->prog_fds[hooks[h].prog];
	int old = -1, link, err;
	__u32 cur_if = 0;

	err = loader_link_path(ld, vm_id, hooks[h].suffix, path, sizeof(path));
	if (err)
		return err;
	old = bpf_obj_get(path);
	if (old >= 0 && !link_ifindex(old, &cur_if) && cur_if == (__u32)ifindex) {
		/* Same device: swap in this agent's program, no gap. */
		err = bpf_link_update(old, prog_fd, NULL) ? -errno : 0;
		close(old);
		return err;
	}
	link = bpf_link_create(prog_fd, ifindex, hooks[h].attach_type, NULL);
	if (link < 0) {
		err = -errno;
		log_err("VM %u: cannot attach %s to ifindex %d: %s", vm_id,
			loader_prog_name(hooks[h].prog), ifindex, strerror(-err));
		goto out;
	}
	err = loader_link_pin_over(link, path);
	if (err)
		log_err("VM %u: cannot pin link %s: %s", vm_id, path, strerror(-err));
	close(link);
out:
	if (old >= 0)
		close(old);
	return err;
}

void loader_iface_compose(int vms_fd, int bind_fd, struct rayos_iface *io)
{
	__u32 id = io->vm_id;

	io->flags &= ~RAYOS_IFF_VM;
	if (!bpf_map_lookup_elem(vms_fd, &id, &io->vm))
		io->flags |= RAYOS_IFF_VM;
	else
		memset(&io->vm, 0, sizeof(io->vm));
	if (bpf_map_lookup_elem(bind_fd, &id, &io->bind))
		memset(&io->bind, 0, sizeof(io->bind));
}

/* The tap this loader attached the VM to, or NULL. */
static struct loader_tap *tap_find(const struct loader *ld, uint32_t vm_id, size_t *pos)
{
	size_t lo = 0, hi = ld->nr_taps;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (ld->taps[mid].vm_id == vm_id)
			return &ld->taps[mid];
		if (ld->taps[mid].vm_id < vm_id)
			lo = mid + 1;
		else
			hi = mid;
	}
	*pos = lo;
	return NULL;
}

/* Remember (ifindex != 0) or forget the VM's tap. */
static int tap_note(struct loader *ld, uint32_t vm_id, uint32_t ifindex)
{
	size_t pos = 0;
	struct loader_tap *t = tap_find(ld, vm_id, &pos), *grown;

	if (t && ifindex) {
		t->ifindex = ifindex;
	} else if (t) {
		pos = (size_t)(t - ld->taps);
		memmove(t, t + 1, (ld->nr_taps - pos - 1) * sizeof(*t));
		ld->nr_taps--;
	} else if (ifindex) {
		grown = realloc(ld->taps, (ld->nr_taps + 1) * sizeof(*grown));
		if (!grown)
			return -ENOMEM;
		ld->taps = grown;
		memmove(&ld->taps[pos + 1], &ld->taps[pos], (ld->nr_taps - pos) * sizeof(*grown));
		ld->taps[pos] = (struct loader_tap){ vm_id, ifindex };
		ld->nr_taps++;
	}
	return 0;
}

/* Per policy flip and per DHCP lease: a lookup in memory, the entry's read,
 * the record's and binding's reads unless the caller has the binding, one
 * update (publish_lease: 4 bpf() calls instead of 2 before the copy). */
int loader_iface_sync(struct loader *ld, uint32_t vm_id, const struct rayos_ip_bind *bind)
{
	size_t pos;
	struct loader_tap *t = tap_find(ld, vm_id, &pos);
	__u32 key = t ? t->ifindex : 0;
	struct rayos_iface val = { .vm_id = vm_id };

	if (!key)
		return 0;	/* no tap (yet): attach composes the entry */
	if (bpf_map_lookup_elem(ld->map_fds[RAYOS_MAP_IFACES], &key, &val) || val.vm_id != vm_id)
		return 0;
	if (bind)
		val.bind = *bind;	/* only the binding changed */
	else
		loader_iface_compose(ld->map_fds[RAYOS_MAP_VMS], ld->map_fds[RAYOS_MAP_IP_BIND],
				     &val);
	if (bpf_map_update_elem(ld->map_fds[RAYOS_MAP_IFACES], &key, &val, BPF_EXIST)) {
		int err = -errno;

		/* Its tap keeps enforcing the record it had: say so. */
		log_err("VM %u: cannot update its tap's copy of its record (ifindex %u): %s",
			vm_id, key, strerror(-err));
		return err;
	}
	return 0;
}

int loader_attach_vm(struct loader *ld, uint32_t vm_id, int ifindex,
		     int shaper_ifindex, uint32_t iface_flags)
{
	struct rayos_iface val = { .vm_id = vm_id, .shaper_ifindex = shaper_ifindex,
				   .flags = iface_flags };
	__u32 key = ifindex, old = loader_vm_ifindex(ld, vm_id);
	int err;

	loader_iface_compose(ld->map_fds[RAYOS_MAP_VMS], ld->map_fds[RAYOS_MAP_IP_BIND], &val);
	/* The program finds its VM through this entry: write it first. */
	if (bpf_map_update_elem(ld->map_fds[RAYOS_MAP_IFACES], &key, &val, BPF_ANY))
		return -errno;
	err = tap_note(ld, vm_id, key);
	if (err)
		return err;
	for (size_t h = 0; h < sizeof(hooks) / sizeof(hooks[0]); h++) {
		err = attach_one(ld, vm_id, ifindex, h);
		if (err)
			return err;
	}
	if (old && old != key)	/* the VM moved to another tap */
		bpf_map_delete_elem(ld->map_fds[RAYOS_MAP_IFACES], &old);
	return 0;
}

int loader_vm_ifindex(const struct loader *ld, uint32_t vm_id)
{
	char path[PATH_MAX];
	__u32 ifindex = 0;
	int fd;

	if (loader_link_path(ld, vm_id, hooks[0].suffix, path, sizeof(path)))
		return 0;
	fd = bpf_obj_get(path);
	if (fd < 0)
		return 0;
	if (link_ifindex(fd, &ifindex))
		ifindex = 0;
	close(fd);
	return ifindex;
}

int loader_detach_vm(struct loader *ld, uint32_t vm_id)
{
	int ifindex = loader_vm_ifindex(ld, vm_id);
	char path[PATH_MAX];
	int err = 0;

	for (size_t h = 0; h < sizeof(hooks) / sizeof(hooks[0]); h++) {
		if (loader_link_path(ld, vm_id, hooks[h].suffix, path, sizeof(path)))
			continue;
		/* The pin is the last reference: unlinking it detaches. */
		if (unlink(path) && errno != ENOENT)
			err = err ?: -errno;
	}
	if (ifindex) {
		__u32 key = ifindex;

		bpf_map_delete_elem(ld->map_fds[RAYOS_MAP_IFACES], &key);
	}
	tap_note(ld, vm_id, 0);
	return err;
}

/* A new agent brings new program instances: swap them into every pinned
 * link now, so that what runs is what this agent was built with, even
 * before (or without) a policy being applied. */
static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

struct refresh {
	struct loader *ld;
	int err;	/* the first failure; every link is still tried */
};

static int refresh_vm(void *ctx, uint32_t vm_id)
{
	struct refresh *r = ctx;
	struct loader *ld = r->ld;
	char path[PATH_MAX];

	for (size_t h = 0; h < sizeof(hooks) / sizeof(hooks[0]); h++) {
		int fd;

		if (loader_link_path(ld, vm_id, hooks[h].suffix, path, sizeof(path)))
			continue;
		fd = bpf_obj_get(path);
		if (fd < 0 && errno == ENOENT)
			continue;
		if (fd < 0 || bpf_link_update(fd, ld->prog_fds[hooks[h].prog], NULL)) {
			r->err = r->err ?: -errno;
			log_warn("cannot update pinned link %s: %s", path, strerror(errno));
		}
		if (fd >= 0)
			close(fd);
	}
	return 0;
}

int loader_refresh_links(struct loader *ld)
{
	struct refresh r = { .ld = ld };
	int err = loader_for_each_vm_link(ld->pin_root, refresh_vm, &r);

	return err ?: r.err;
}

int loader_for_each_vm_link(const char *pin_root, int (*fn)(void *ctx, uint32_t vm_id),
			    void *ctx)
{
	char dir[LOADER_PIN_ROOT_LEN + 8];
	uint32_t *ids = NULL, *grown;
	size_t nr = 0;
	struct dirent *de;
	int err = 0;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/links", pin_root);
	d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	/* Collect first: fn may remove the pins being listed. */
	while ((de = readdir(d))) {
		unsigned int id;
		char suffix[8];
		bool net = false;

		if (sscanf(de->d_name, "vm%u_%7s", &id, suffix) != 2)
			continue;
		for (size_t h = 0; h < sizeof(hooks) / sizeof(hooks[0]); h++)
			net |= !strcmp(suffix, hooks[h].suffix);
		if (!net)
			continue;
		grown = realloc(ids, (nr + 1) * sizeof(*ids));
		if (!grown) {
			err = -ENOMEM;
			break;
		}
		ids = grown;
		ids[nr++] = id;
	}
	closedir(d);
	/* A VM has one pin per hook: call fn once per VM. */
	if (nr)
		qsort(ids, nr, sizeof(*ids), cmp_u32);
	for (size_t i = 0; i < nr && !err; i++)
		if (!i || ids[i] != ids[i - 1])
			err = fn(ctx, ids[i]);
	free(ids);
	return err;
}
