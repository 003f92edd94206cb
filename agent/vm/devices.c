// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Device classes, the capability table and the device views of the agent
 * (see devices.h).  Reads the maps through the loader only.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/audit/audit.h"
#include "agent/core/log.h"
#include "agent/vm/devices.h"
#include "loader/attach.h"
#include "loader/devices.h"
#include "loader/publish.h"

static const char *const class_names[RAYOS_DEVC_MAX] = {
	[RAYOS_DEVC_KVM]	= "kvm",
	[RAYOS_DEVC_TUN]	= "tun",
	[RAYOS_DEVC_VHOST_NET]	= "vhost-net",
	[RAYOS_DEVC_DRI]	= "dri",
	[RAYOS_DEVC_INPUT]	= "input",
	[RAYOS_DEVC_UINPUT]	= "uinput",
	[RAYOS_DEVC_PTY]	= "pty",
	[RAYOS_DEVC_PTMX]	= "ptmx",
	[RAYOS_DEVC_DISK]	= "disk",
	[RAYOS_DEVC_BASIC]	= "basic",
	[RAYOS_DEVC_OTHER]	= "other",
};

const char *devices_class_name(unsigned int cls)
{
	return cls < RAYOS_DEVC_MAX ? class_names[cls] : NULL;
}

#define ANY RAYOS_DEV_MINOR_ANY
const struct devices_handler devices_handlers[] = {
	{ RAYOS_DEVC_KVM, 'c', 10, 10, 232, -1, "/dev/kvm" },
	{ RAYOS_DEVC_BASIC, 'c', 1, 1, 3, -1, "/dev/null" },
	{ RAYOS_DEVC_BASIC, 'c', 1, 1, 5, -1, "/dev/zero" },
	{ RAYOS_DEVC_BASIC, 'c', 1, 1, 7, -1, "/dev/full" },
	{ RAYOS_DEVC_BASIC, 'c', 1, 1, 8, -1, "/dev/random" },
	{ RAYOS_DEVC_BASIC, 'c', 1, 1, 9, -1, "/dev/urandom" },
	{ RAYOS_DEVC_TUN, 'c', 10, 10, 200, RAYOS_CAP_NETWORK, "/dev/net/tun" },
	{ RAYOS_DEVC_VHOST_NET, 'c', 10, 10, 238, RAYOS_CAP_NETWORK, "/dev/vhost-net" },
	{ RAYOS_DEVC_DRI, 'c', 226, 226, ANY, RAYOS_CAP_GPU, "/dev/dri/*" },
	{ RAYOS_DEVC_INPUT, 'c', 13, 13, ANY, RAYOS_CAP_INPUT, "/dev/input/*" },
	{ RAYOS_DEVC_UINPUT, 'c', 10, 10, 223, RAYOS_CAP_INPUT, "/dev/uinput" },
	{ RAYOS_DEVC_PTY, 'c', 136, 143, ANY, RAYOS_CAP_CONSOLE, "/dev/pts/*" },
	{ RAYOS_DEVC_PTMX, 'c', 5, 5, 2, RAYOS_CAP_CONSOLE, "/dev/ptmx" },
};
#undef ANY
const size_t devices_nr_handlers = sizeof(devices_handlers) / sizeof(devices_handlers[0]);

static const char *const decision_order[] = {
	"explicit deny (devices.deny) wins over everything",
	"explicit allow (devices.allow)",
	"capability table; listed block disks: read with CAP_DISK_READ, write with CAP_DISK_WRITE",
	"always allowed: kvm, null, zero, full, random, urandom",
	"everything else: denied (EPERM)",
	"a task whose cgroup or VM is unknown: the always-allowed devices only",
};

static cJSON *strings(const char *const *s, size_t n)
{
	cJSON *a = cJSON_CreateArray();

	for (size_t i = 0; a && i < n; i++)
		cJSON_AddItemToArray(a, cJSON_CreateString(s[i]));
	return a;
}

cJSON *devices_handlers_json(void)
{
	cJSON *o = cJSON_CreateObject(), *a;

	if (!o)
		return NULL;
	cJSON_AddItemToObject(o, "decision_order",
			      strings(decision_order, sizeof(decision_order) / sizeof(*decision_order)));
	a = cJSON_AddArrayToObject(o, "handlers");
	for (size_t i = 0; a && i < devices_nr_handlers; i++) {
		const struct devices_handler *h = &devices_handlers[i];
		cJSON *e = cJSON_CreateObject();
		char dev[48];

		if (h->major_lo != h->major_hi)
			snprintf(dev, sizeof(dev), "%c %u-%u:*", h->type, h->major_lo, h->major_hi);
		else if (h->minor == RAYOS_DEV_MINOR_ANY)
			snprintf(dev, sizeof(dev), "%c %u:*", h->type, h->major_lo);
		else
			snprintf(dev, sizeof(dev), "%c %u:%u", h->type, h->major_lo, h->minor);
		cJSON_AddStringToObject(e, "class", class_names[h->cls]);
		cJSON_AddStringToObject(e, "device", dev);
		cJSON_AddStringToObject(e, "path", h->what);
		cJSON_AddStringToObject(e, "granted_by", h->cap < 0 ? "always" :
					policy_cap_name(h->cap));
		cJSON_AddStringToObject(e, "access", "rw");
		cJSON_AddItemToArray(a, e);
	}
	cJSON_AddStringToObject(o, "disks", "block devices listed in the VM's \"disks\": "
				"read with CAP_DISK_READ, write with CAP_DISK_WRITE and mode \"rw\"");
	return o;
}

cJSON *devices_status_json(const struct loader *ld)
{
	struct loader_dev_part parts[RAYOS_DEVP_MAX];
	cJSON *o = cJSON_CreateObject(), *p;

	if (!o)
		return NULL;
	loader_dev_status(ld, parts);
	p = cJSON_AddObjectToObject(o, "parts");
	for (int i = 0; p && i < RAYOS_DEVP_MAX; i++) {
		cJSON *e = cJSON_AddObjectToObject(p, loader_dev_part_name(i));

		cJSON_AddBoolToObject(e, "active", parts[i].active);
		cJSON_AddStringToObject(e, "detail", parts[i].detail);
	}
	return o;
}

static const char *vm_name(const struct policy_set *set, uint32_t id)
{
	const struct policy_vm *vm = set ? policy_set_find(set, id) : NULL;

	return vm ? vm->name : "";
}

static cJSON *caps_json(uint64_t caps)
{
	cJSON *a = cJSON_CreateArray();

	for (int c = 0; a && c < RAYOS_CAP_COUNT; c++)
		if (caps & (1ULL << c))
			cJSON_AddItemToArray(a, cJSON_CreateString(policy_cap_name(c)));
	return a;
}

static void access_str(uint8_t bits, char out[4])
{
	int n = 0;

	if (bits & RAYOS_DEV_ACC_READ)
		out[n++] = 'r';
	if (bits & RAYOS_DEV_ACC_WRITE)
		out[n++] = 'w';
	if (bits & RAYOS_DEV_ACC_MKNOD)
		out[n++] = 'm';
	out[n] = '\0';
}

static cJSON *rules_json(const struct compiled_vm *cv)
{
	cJSON *a = cJSON_CreateArray();

	for (size_t i = 0; a && i < cv->nr_dev; i++) {
		const struct compiled_dev *d = &cv->dev[i];
		cJSON *e = cJSON_CreateObject();
		char dev[40], acc[4];

		if (d->key.minor == RAYOS_DEV_MINOR_ANY)
			snprintf(dev, sizeof(dev), "%c %u:*",
				 d->key.type == RAYOS_DEV_CHAR ? 'c' : 'b', d->key.major);
		else
			snprintf(dev, sizeof(dev), "%c %u:%u",
				 d->key.type == RAYOS_DEV_CHAR ? 'c' : 'b', d->key.major,
				 d->key.minor);
		cJSON_AddStringToObject(e, "device", dev);
		access_str(d->val.allow, acc);
		cJSON_AddStringToObject(e, "allow", acc);
		access_str(d->val.deny, acc);
		cJSON_AddStringToObject(e, "deny", acc);
		access_str(d->val.disk, acc);
		cJSON_AddStringToObject(e, "disk", acc);
		cJSON_AddItemToArray(a, e);
	}
	return a;
}

/* Adopted VMs (after an agent restart) have their record but not their
 * compiled rules in memory: caps come from the live record. */
static uint64_t live_caps(struct loader *ld, const struct compiled_vm *cv)
{
	struct rayos_vm rec;
	uint32_t id = cv->vm.vm_id;

	if (loader_vm_record(ld, id, &rec))
		return cv->vm.caps;
	return rec.caps;
}

cJSON *devices_list_json(struct loader *ld, const struct policy_set *set, int64_t only_id)
{
	cJSON *o = cJSON_CreateObject(), *vms;

	if (!o)
		return NULL;
	vms = cJSON_AddArrayToObject(o, "vms");
	for (size_t i = 0; vms && i < publish_nr_vms(ld); i++) {
		const struct compiled_vm *cv = publish_vm_at(ld, i);
		struct rayos_kvm_ctr kc;
		cJSON *e, *cls;

		if (only_id >= 0 && cv->vm.vm_id != (uint64_t)only_id)
			continue;
		e = cJSON_CreateObject();
		cJSON_AddNumberToObject(e, "id", cv->vm.vm_id);
		cJSON_AddStringToObject(e, "name", vm_name(set, cv->vm.vm_id));
		cJSON_AddItemToObject(e, "caps", caps_json(live_caps(ld, cv)));
		cJSON_AddNumberToObject(e, "cgroup_id", (double)loader_vm_cgroup_id(ld, cv->vm.vm_id));
		cJSON_AddItemToObject(e, "rules", rules_json(cv));
		cls = cJSON_AddObjectToObject(e, "classes");
		for (unsigned int c = 0; c < RAYOS_DEVC_COUNT; c++) {
			struct rayos_dev_ctr k;
			cJSON *ce;

			if (loader_dev_stats(ld, cv->vm.slot, c, &k) ||
			    !(k.checks | k.opens | k.ioctls))
				continue;
			ce = cJSON_AddObjectToObject(cls, class_names[c]);
			cJSON_AddNumberToObject(ce, "checks", (double)k.checks);
			cJSON_AddNumberToObject(ce, "denials", (double)k.denials);
			cJSON_AddNumberToObject(ce, "opens", (double)k.opens);
			cJSON_AddNumberToObject(ce, "open_eperm", (double)k.open_eperm);
			cJSON_AddNumberToObject(ce, "open_avg_ns",
						k.opens ? (double)k.open_ns / (double)k.opens : 0);
			cJSON_AddNumberToObject(ce, "ioctls", (double)k.ioctls);
			cJSON_AddNumberToObject(ce, "ioctl_errors", (double)k.ioctl_err);
			cJSON_AddNumberToObject(ce, "ioctl_avg_ns",
						k.ioctls ? (double)k.ioctl_ns / (double)k.ioctls : 0);
		}
		if (!loader_kvm_stats(ld, cv->vm.slot, &kc)) {
			cJSON *ke = cJSON_AddObjectToObject(e, "kvm");

			cJSON_AddNumberToObject(ke, "exits", (double)kc.exits);
			cJSON_AddNumberToObject(ke, "mmio", (double)kc.mmio);
			cJSON_AddNumberToObject(ke, "pio", (double)kc.pio);
		}
		cJSON_AddItemToArray(vms, e);
	}
	return o;
}

/* Prometheus label values escape backslash, quote and newline. */
static void label(FILE *out, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			fputc('\\', out);
		if (*s == '\n')
			fputs("\\n", out);
		else
			fputc(*s, out);
	}
}

void devices_prometheus(FILE *out, struct loader *ld, const struct policy_set *set)
{
	static const struct {
		const char *name, *help;
		size_t off;
		bool ns;
	} ctrs[] = {
		{ "rayos_device_checks_total", "Device accesses the cgroup device program decided.",
		  offsetof(struct rayos_dev_ctr, checks), false },
		{ "rayos_device_denials_total", "Device accesses the cgroup device program denied.",
		  offsetof(struct rayos_dev_ctr, denials), false },
		{ "rayos_device_opens_total", "open/openat calls of VM tasks that reached a device.",
		  offsetof(struct rayos_dev_ctr, opens), false },
		{ "rayos_device_open_eperm_total", "Of those, calls that returned EPERM.",
		  offsetof(struct rayos_dev_ctr, open_eperm), false },
		{ "rayos_device_open_seconds_total", "Time spent in those open calls.",
		  offsetof(struct rayos_dev_ctr, open_ns), true },
		{ "rayos_device_ioctls_total", "ioctl calls of VM tasks on device fds.",
		  offsetof(struct rayos_dev_ctr, ioctls), false },
		{ "rayos_device_ioctl_seconds_total", "Time spent in those ioctl calls.",
		  offsetof(struct rayos_dev_ctr, ioctl_ns), true },
	};
	struct loader_dev_part parts[RAYOS_DEVP_MAX];

	for (size_t m = 0; m < sizeof(ctrs) / sizeof(ctrs[0]); m++) {
		fprintf(out, "# HELP %s %s\n# TYPE %s counter\n", ctrs[m].name, ctrs[m].help,
			ctrs[m].name);
		for (size_t i = 0; i < publish_nr_vms(ld); i++) {
			const struct compiled_vm *cv = publish_vm_at(ld, i);

			for (unsigned int c = 0; c < RAYOS_DEVC_COUNT; c++) {
				struct rayos_dev_ctr k;
				uint64_t v;

				if (loader_dev_stats(ld, cv->vm.slot, c, &k))
					continue;
				memcpy(&v, (const char *)&k + ctrs[m].off, sizeof(v));
				if (!v)
					continue;
				fprintf(out, "%s{vm=\"%u\",name=\"", ctrs[m].name, cv->vm.vm_id);
				label(out, vm_name(set, cv->vm.vm_id));
				if (ctrs[m].ns)
					fprintf(out, "\",class=\"%s\"} %.9f\n", class_names[c],
						(double)v / 1e9);
				else
					fprintf(out, "\",class=\"%s\"} %" PRIu64 "\n", class_names[c], v);
			}
		}
	}
	fprintf(out, "# HELP rayos_kvm_events_total KVM exits, MMIO and port I/O by VM.\n"
		"# TYPE rayos_kvm_events_total counter\n");
	for (size_t i = 0; i < publish_nr_vms(ld); i++) {
		const struct compiled_vm *cv = publish_vm_at(ld, i);
		struct rayos_kvm_ctr kc;

		if (loader_kvm_stats(ld, cv->vm.slot, &kc))
			continue;
		fprintf(out, "rayos_kvm_events_total{vm=\"%u\",event=\"exit\"} %llu\n"
			"rayos_kvm_events_total{vm=\"%u\",event=\"mmio\"} %llu\n"
			"rayos_kvm_events_total{vm=\"%u\",event=\"pio\"} %llu\n",
			cv->vm.vm_id, (unsigned long long)kc.exits, cv->vm.vm_id,
			(unsigned long long)kc.mmio, cv->vm.vm_id, (unsigned long long)kc.pio);
	}
	loader_dev_status(ld, parts);
	fprintf(out, "# HELP rayos_device_part_active 1 when the device enforcement part runs.\n"
		"# TYPE rayos_device_part_active gauge\n");
	for (int p = 0; p < RAYOS_DEVP_MAX; p++)
		fprintf(out, "rayos_device_part_active{part=\"%s\"} %d\n", loader_dev_part_name(p),
			parts[p].active);
}

/* The audit record of a capability change; result NULL: the write-ahead
 * record, else the outcome of a change that failed after it. */
static cJSON *cap_record(const struct devices_cap_change *ch, const char *result)
{
	cJSON *j = cJSON_CreateObject();

	if (!j)
		return NULL;
	cJSON_AddStringToObject(j, "event", result ? "cap_change_failed"
					     : ch->grant ? "cap_grant" : "cap_revoke");
	if (result)
		cJSON_AddStringToObject(j, "of", ch->grant ? "cap_grant" : "cap_revoke");
	cJSON_AddNumberToObject(j, "vm", ch->vm_id);
	cJSON_AddStringToObject(j, "cap", policy_cap_name(ch->cap));
	cJSON_AddItemToObject(j, "caps_before", caps_json(ch->caps_before));
	cJSON_AddItemToObject(j, "caps_after", caps_json(ch->caps_after));
	cJSON_AddStringToObject(j, "by", ch->who ? ch->who : "");
	if (result)
		cJSON_AddStringToObject(j, "error", result);
	return j;
}

int devices_cap_prepare(struct loader *ld, struct devices_cap_change *ch, char *err,
			size_t errlen)
{
	char why[PATH_MAX + 64];
	struct rayos_vm rec;
	cJSON *j;
	int ret;

	ch->cap = policy_cap_from_name(ch->cap_name);
	if (ch->cap < 0) {
		policy_cap_error(ch->cap_name, err, errlen);
		return -EINVAL;
	}
	if (loader_vm_record(ld, ch->vm_id, &rec)) {
		snprintf(err, errlen, "VM %u has no record: is it in the policy?", ch->vm_id);
		return -ENOENT;
	}
	ch->caps_before = rec.caps;
	ch->caps_after = ch->grant ? rec.caps | (1ULL << ch->cap) : rec.caps & ~(1ULL << ch->cap);
	if (!ch->audit_path)
		return 0;
	/* Write-ahead: the record is on disk before anything changes; a
	 * file system that is read-only or full refuses the change even
	 * when this one line would still fit, since what follows it (the
	 * runtime state, the next records) would not. */
	ret = audit_probe(ch->audit_path, why, sizeof(why));
	if (!ret) {
		j = cap_record(ch, NULL);
		ret = j ? audit_append(ch->audit_path, j) : -ENOMEM;
		cJSON_Delete(j);
		if (ret)
			snprintf(why, sizeof(why), "%s: %s", ch->audit_path, strerror(-ret));
	}
	if (ret) {
		ch->audit_failed = true;
		snprintf(err, errlen, "refused: the audit record cannot be written and synced "
			 "(%s); nothing changed; make the state dir writable or free space in it, "
			 "then retry", why);
	}
	return ret;
}

void devices_cap_failed(const struct devices_cap_change *ch, const char *why)
{
	cJSON *j;

	if (!ch->audit_path)
		return;
	j = cap_record(ch, why);
	if (j && audit_append(ch->audit_path, j))
		log_err("VM %u: cannot record in %s that the %s of %s failed", ch->vm_id,
			ch->audit_path, ch->grant ? "grant" : "revoke", ch->cap_name);
	cJSON_Delete(j);
}

int devices_cap_commit(struct loader *ld, const struct devices_cap_change *ch, char *err,
		       size_t errlen)
{
	int ret = loader_vm_set_caps(ld, ch->vm_id, ch->caps_after);

	if (ret) {
		snprintf(err, errlen, "VM %u: cannot update its record: %s", ch->vm_id,
			 strerror(-ret));
		devices_cap_failed(ch, err);
	}
	return ret;
}

int devices_cap_change(struct loader *ld, uint32_t vm_id, const char *cap_name, bool grant,
		       const char *audit_path, const char *who, uint64_t *caps_out,
		       char *err, size_t errlen)
{
	struct devices_cap_change ch = {
		.vm_id = vm_id, .cap_name = cap_name, .grant = grant,
		.audit_path = audit_path, .who = who,
	};
	int ret = devices_cap_prepare(ld, &ch, err, errlen);

	if (!ret)
		ret = devices_cap_commit(ld, &ch, err, errlen);
	if (!ret)
		*caps_out = ch.caps_after;
	return ret;
}
