// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * A VM's enforcement points, live (see vmconfine.h).  Reads /proc, the
 * cgroup tree and the policy's image files; writes nothing.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/agent_internal.h"
#include "agent/qemu/qemu_user.h"
#include "agent/vm/cgroup.h"
#include "agent/vm/registry.h"
#include "agent/vmconfine.h"
#include "loader/attach.h"
#include "loader/devices.h"
#include "loader/probe.h"

int proc_creds_read(pid_t pid, struct proc_creds *c)
{
	char file[64], line[1024];
	FILE *f;

	memset(c, 0, sizeof(*c));
	snprintf(file, sizeof(file), "/proc/%d/status", (int)pid);
	f = fopen(file, "re");
	if (!f)
		return errno == ENOENT ? -ESRCH : -errno;
	while (fgets(line, sizeof(line), f)) {
		unsigned int v[4];
		unsigned long long x;

		if (sscanf(line, "Name: %31s", c->comm) == 1)
			continue;
		if (sscanf(line, "Uid: %u %u %u %u", &v[0], &v[1], &v[2], &v[3]) == 4) {
			for (int i = 0; i < 4; i++)
				c->uid[i] = v[i];
		} else if (sscanf(line, "Gid: %u %u %u %u", &v[0], &v[1], &v[2], &v[3]) == 4) {
			for (int i = 0; i < 4; i++)
				c->gid[i] = v[i];
		} else if (!strncmp(line, "Groups:", 7)) {
			char *p = line + 7, *end;

			while (c->nr_groups < 64) {
				unsigned long g = strtoul(p, &end, 10);

				if (end == p)
					break;
				c->groups[c->nr_groups++] = (gid_t)g;
				p = end;
			}
		} else if (sscanf(line, "CapInh: %llx", &x) == 1) {
			c->cap_inh = x;
		} else if (sscanf(line, "CapPrm: %llx", &x) == 1) {
			c->cap_prm = x;
		} else if (sscanf(line, "CapEff: %llx", &x) == 1) {
			c->cap_eff = x;
		} else if (sscanf(line, "CapBnd: %llx", &x) == 1) {
			c->cap_bnd = x;
		} else if (sscanf(line, "CapAmb: %llx", &x) == 1) {
			c->cap_amb = x;
		} else if (sscanf(line, "NoNewPrivs: %u", &v[0]) == 1) {
			c->no_new_privs = v[0];
		} else if (sscanf(line, "Seccomp: %u", &v[0]) == 1) {
			c->seccomp = (int)v[0];
		}
	}
	fclose(f);
	return 0;
}

static void cap_names(uint64_t caps, char *out, size_t len)
{
	size_t off = 0;
	int shown = 0;

	out[0] = '\0';
	for (int c = 0; c < 64 && off < len; c++) {
		char *name;

		if (!(caps & (1ULL << c)))
			continue;
		if (shown == 4) {
			snprintf(out + off, len - off, ", ...");
			return;
		}
		name = cap_to_name(c);
		off += snprintf(out + off, len - off, "%s%s", shown ? ", " : "", name ? name : "?");
		cap_free(name);
		shown++;
	}
}

bool proc_creds_privileged(const struct proc_creds *c, char *why, size_t len)
{
	char names[128];

	for (int i = 0; i < 4; i++) {
		if (!c->uid[i]) {
			snprintf(why, len, "runs as root (uid %u %u %u %u)", (unsigned int)c->uid[0],
				 (unsigned int)c->uid[1], (unsigned int)c->uid[2],
				 (unsigned int)c->uid[3]);
			return true;
		}
	}
	if (c->cap_prm | c->cap_eff | c->cap_amb) {
		cap_names(c->cap_prm | c->cap_eff | c->cap_amb, names, sizeof(names));
		snprintf(why, len, "holds capabilities (%s)", names);
		return true;
	}
	why[0] = '\0';
	return false;
}

/* The permission bits that apply to c for st (owner, group or other),
 * with CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH as the kernel counts them. */
static bool may(const struct proc_creds *c, const struct stat *st, int want /* 4 r 2 w 1 x */)
{
	mode_t m = st->st_mode;
	int bits;

	if (c->cap_eff & (1ULL << CAP_DAC_OVERRIDE))
		return want != 1 || S_ISDIR(m) || (m & 0111);
	if ((c->cap_eff & (1ULL << CAP_DAC_READ_SEARCH)) && (want == 4 || (want == 1 && S_ISDIR(m))))
		return true;
	if (st->st_uid == c->uid[3]) {
		bits = (m >> 6) & 7;
	} else {
		bool in = st->st_gid == c->gid[3];

		for (int i = 0; !in && i < c->nr_groups; i++)
			in = st->st_gid == c->groups[i];
		bits = in ? (m >> 3) & 7 : m & 7;
	}
	return (bits & want) == want;
}

int proc_creds_access(const struct proc_creds *c, const char *path)
{
	char real[PATH_MAX], dir[PATH_MAX];
	struct stat st;
	int acc = 0;

	if (!realpath(path, real) || stat(real, &st))
		return -errno;
	/* Every directory on the way needs search permission. */
	for (char *p = strchr(real + 1, '/'); p; p = strchr(p + 1, '/')) {
		struct stat ds;

		snprintf(dir, sizeof(dir), "%.*s", (int)(p - real), real);
		if (stat(dir, &ds))
			return -errno;
		if (!may(c, &ds, 1))
			return 0;
	}
	{
		struct stat root;

		if (!stat("/", &root) && !may(c, &root, 1))
			return 0;
	}
	if (may(c, &st, 4))
		acc |= QEMU_ACC_READ;
	if (may(c, &st, 2))
		acc |= QEMU_ACC_WRITE;
	return acc;
}

/* ---- the report ------------------------------------------------------------- */

struct report {
	cJSON *points, *warnings;
	bool missing;
};

static void point(struct report *r, const char *name, const char *state, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void point(struct report *r, const char *name, const char *state, const char *fmt, ...)
{
	cJSON *o = cJSON_CreateObject();
	char detail[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	cJSON_AddStringToObject(o, "point", name);
	cJSON_AddStringToObject(o, "state", state);
	cJSON_AddStringToObject(o, "detail", detail);
	cJSON_AddItemToArray(r->points, o);
	if (!strcmp(state, "missing")) {
		char w[1200];

		r->missing = true;
		snprintf(w, sizeof(w), "%s: %s", name, detail);
		cJSON_AddItemToArray(r->warnings, cJSON_CreateString(w));
	}
}

static bool under(const char *path, const char *top)
{
	size_t n = strlen(top);

	return !strncmp(path, top, n) && (!path[n] || path[n] == '/');
}

static void net_point(struct agent *a, const struct policy_vm *vm, bool running,
		      struct report *r)
{
	int ifindex = loader_vm_ifindex(a->ld, vm->id);

	if (ifindex > 0)
		point(r, "net.tap", "active", "tcx programs on %s (ifindex %d)", vm->iface, ifindex);
	else if (vm->iface[0] && running && !a->features[RAYOS_FEAT_TCX].available)
		point(r, "net.tap", "missing", "no tcx on this kernel: %s is not filtered",
		      vm->iface);
	else if (vm->iface[0])
		point(r, "net.tap", "idle", "interface %s is not present", vm->iface);
	else
		point(r, "net.tap", "idle", "no interface registered");
}

static void cgroup_points(struct agent *a, const struct vm_runtime *vr, struct report *r)
{
	char cur[PATH_MAX], why[PATH_MAX + 64], parent[PATH_MAX];
	uint64_t want = 0, above = 0, have;
	int err;

	if (!vr || !vr->pid || !vr->cgroup[0]) {
		point(r, "device.cgroup", "idle", "no process registered");
		point(r, "cgroup.sealed", "idle", "no process registered");
		return;
	}
	have = loader_vm_cgroup_id(a->ld, vr->id);
	/* On the VM's cgroup, or (rayos_dev_above) on its parent. */
	snprintf(parent, sizeof(parent), "%s", vr->cgroup);
	if (strrchr(parent, '/'))
		*strrchr(parent, '/') = '\0';
	if (have && !cgroup_id(parent, &above) && have == above)
		want = above;
	else if (cgroup_id(vr->cgroup, &want))
		want = 0;
	if (!have || have != want)
		point(r, "device.cgroup", "missing", "no device program on %s: the VM's process "
		      "may open any device its user can", vr->cgroup);
	else if (cgroup_of_pid(vr->pid, cur, sizeof(cur)))
		point(r, "device.cgroup", "idle", "process %d is gone", (int)vr->pid);
	else if (!under(cur, vr->cgroup))
		point(r, "device.cgroup", "missing", "process %d left its cgroup %s: it is in %s, "
		      "outside the device program", (int)vr->pid, vr->cgroup, cur);
	else if (want == above)
		point(r, "device.cgroup", "active", "rayos_dev_above on %s, over %s (the "
		      "launcher's cgroup, which has a device program of its own that allows "
		      "no other below it; both must allow)", parent, vr->cgroup);
	else
		point(r, "device.cgroup", "active", "rayos_dev on %s (%s)", vr->cgroup,
		      vr->cgroup_kept ? "the launcher's cgroup, attached in place"
				      : "made by the agent");
	err = cgroup_check_sealed(vr->cgroup, why, sizeof(why));
	if (!err)
		point(r, "cgroup.sealed", "active", "%s and every cgroup above it are root-owned "
		      "and not writable by others", vr->cgroup);
	else if (err == -EPERM)
		point(r, "cgroup.sealed", "missing", "%s: a process of that user can leave the "
		      "VM's cgroup", why);
	else
		point(r, "cgroup.sealed", "missing", "cannot check %s: %s", vr->cgroup,
		      strerror(-err));
}

static cJSON *process_json(const struct vm_runtime *vr, const struct proc_creds *c)
{
	cJSON *p = cJSON_CreateObject();
	char caps[20];

	cJSON_AddNumberToObject(p, "pid", vr->pid);
	cJSON_AddStringToObject(p, "name", c->comm);
	cJSON_AddNumberToObject(p, "uid", c->uid[1]);
	cJSON_AddNumberToObject(p, "gid", c->gid[1]);
	snprintf(caps, sizeof(caps), "%llx", (unsigned long long)(c->cap_prm | c->cap_eff));
	cJSON_AddStringToObject(p, "capabilities", caps);
	snprintf(caps, sizeof(caps), "%llx", (unsigned long long)c->cap_bnd);
	cJSON_AddStringToObject(p, "bounding_set", caps);
	cJSON_AddBoolToObject(p, "no_new_privs", c->no_new_privs);
	cJSON_AddStringToObject(p, "seccomp", c->seccomp == 2 ? "filter" :
				c->seccomp == 1 ? "strict" : "off");
	if (vr->conf_flags & VM_CONF_LAUNCHER) {
		cJSON_AddBoolToObject(p, "cgroup_namespace", vr->conf_flags & VM_CONF_CGROUP_NS);
		cJSON_AddBoolToObject(p, "empty_network_namespace", vr->conf_flags & VM_CONF_NET_NS);
		cJSON_AddBoolToObject(p, "sandbox_appended", vr->conf_flags & VM_CONF_SANDBOX);
		cJSON_AddBoolToObject(p, "uid_of_its_own", vr->conf_flags & VM_CONF_UID_PER_VM);
		cJSON_AddNumberToObject(p, "disk_fds", vr->conf_disk_fds);
	}
	return p;
}

/* Root at registration is expected from rayos-qemu: it drops right before
 * it execs QEMU. */
static bool still_launching(const struct vm_runtime *vr, const struct proc_creds *c)
{
	return (vr->conf_flags & VM_CONF_LAUNCHER) && !strcmp(c->comm, "rayos-qemu");
}

static void process_point(const struct vm_runtime *vr, bool have, const struct proc_creds *c,
			  struct report *r)
{
	char why[256];

	if (!have) {
		point(r, "process.unprivileged", "idle", "no process registered");
		return;
	}
	if (still_launching(vr, c)) {
		point(r, "process.unprivileged", "pending", "rayos-qemu (pid %d) becomes uid %u "
		      "before it execs QEMU", (int)vr->pid, (unsigned int)vr->conf_uid);
		return;
	}
	if (proc_creds_privileged(c, why, sizeof(why)))
		point(r, "process.unprivileged", "missing", "process %d (%s) %s: it can leave its "
		      "cgroup, detach the BPF programs and open any image; run it unprivileged "
		      "(rayos-qemu does)", (int)vr->pid, c->comm, why);
	else
		point(r, "process.unprivileged", "active", "process %d (%s): uid %u, no "
		      "capabilities%s%s", (int)vr->pid, c->comm, (unsigned int)c->uid[1],
		      c->no_new_privs ? ", no_new_privs" : "",
		      c->seccomp == 2 ? ", seccomp filter" : "");
}

static void images_point(struct agent *a, const struct policy_vm *vm,
			 const struct vm_runtime *vr, bool have, const struct proc_creds *c,
			 struct report *r)
{
	struct loader_dev_part parts[RAYOS_DEVP_MAX];
	char bad[1024] = "";
	size_t nr_img = 0, off = 0;
	uint64_t caps = vm->caps;
	struct rayos_vm rec;

	for (size_t i = 0; i < vm->nr_disks; i++)
		nr_img += !vm->disks[i].is_block;
	loader_dev_status(a->ld, parts);
	if (!nr_img) {
		point(r, "disk.images", "n/a", "no disk image files in the policy");
		return;
	}
	if (parts[RAYOS_DEVP_LSM].active) {
		point(r, "disk.images", "active", "BPF LSM at file_open (%zu image%s)", nr_img,
		      nr_img == 1 ? "" : "s");
		return;
	}
	if (!have) {
		point(r, "disk.images", "idle", "no process registered (no BPF LSM here: image "
		      "files are guarded by file permissions only)");
		return;
	}
	if (still_launching(vr, c)) {
		point(r, "disk.images", "pending", "rayos-qemu hands the images over as fds "
		      "and drops to uid %u", (unsigned int)vr->conf_uid);
		return;
	}
	if (!loader_vm_record(a->ld, vm->id, &rec))
		caps = rec.caps;
	for (size_t i = 0; i < vm->nr_disks; i++) {
		const struct policy_disk *d = &vm->disks[i];
		int acc, grant = 0;

		if (d->is_block)
			continue;
		if (caps & (1ULL << RAYOS_CAP_DISK_READ))
			grant |= QEMU_ACC_READ;
		if ((caps & (1ULL << RAYOS_CAP_DISK_WRITE)) && (d->mode & RAYOS_DEV_ACC_WRITE))
			grant |= QEMU_ACC_WRITE;
		acc = proc_creds_access(c, d->path);
		if (acc < 0 || !(acc & ~grant))
			continue;
		if (off < sizeof(bad))
			off += snprintf(bad + off, sizeof(bad) - off, "%s%s (%s%s by path, granted "
					"%s)", off ? "; " : "", d->path,
					acc & QEMU_ACC_READ ? "r" : "", acc & QEMU_ACC_WRITE ? "w" : "",
					grant == 3 ? "rw" : grant == 1 ? "r" : "nothing");
	}
	if (bad[0])
		point(r, "disk.images", "missing", "no BPF LSM on this kernel and process %d (uid "
		      "%u) can open more than its grant: %s; make the images root-only (0600) "
		      "and launch with rayos-qemu", (int)vr->pid, (unsigned int)c->uid[1], bad);
	else
		point(r, "disk.images", "active", "file permissions: uid %u cannot open the %zu "
		      "image%s by path%s", (unsigned int)c->uid[1], nr_img, nr_img == 1 ? "" : "s",
		      vr->conf_disk_fds ? "; rayos-qemu handed them over as fds" : "");
}

cJSON *vmconfine_json(struct agent *a, uint32_t id)
{
	const struct policy_vm *vm = a->set ? policy_set_find(a->set, id) : NULL;
	const struct vm_runtime *vr = registry_get(a->reg, id);
	struct loader_dev_part parts[RAYOS_DEVP_MAX];
	struct report r = { 0 };
	struct proc_creds c;
	bool have = false;
	cJSON *o = cJSON_CreateObject();

	if (!o)
		return NULL;
	r.points = cJSON_CreateArray();
	r.warnings = cJSON_CreateArray();
	if (vr && vr->pid)
		have = !proc_creds_read(vr->pid, &c);
	if (vm)
		net_point(a, vm, have, &r);
	cgroup_points(a, have ? vr : NULL, &r);
	loader_dev_status(a->ld, parts);
	point(&r, "device.lsm", parts[RAYOS_DEVP_LSM].active ? "active" : "unavailable", "%s",
	      parts[RAYOS_DEVP_LSM].detail);
	process_point(vr, have, &c, &r);
	if (vm)
		images_point(a, vm, vr, have, &c, &r);
	cJSON_AddStringToObject(o, "state", r.missing ? "degraded" : have ? "confined" : "idle");
	cJSON_AddItemToObject(o, "points", r.points);
	cJSON_AddItemToObject(o, "warnings", r.warnings);
	if (have)
		cJSON_AddItemToObject(o, "process", process_json(vr, &c));
	return o;
}
