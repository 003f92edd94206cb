// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Runtime VM state: which tap, QEMU process and cgroup a running VM has, as
 * told by the CLI, the libvirt hook or rayos-qemu, and the capabilities an
 * admin granted or revoked at run time.  An entry names a VM of the policy;
 * its interface overrides the policy's "interface".  Kept in the state dir
 * (written to a temporary file, synced and renamed) so a restarted agent
 * re-attaches the same taps, watches the same processes and keeps grants.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "agent/core/log.h"
#include "agent/core/util.h"
#include "agent/vm/registry.h"

struct registry {
	char path[PATH_MAX];
	struct vm_runtime *regs;
	size_t nr;
};

static struct vm_runtime *find(const struct registry *r, uint32_t id)
{
	for (size_t i = 0; i < r->nr; i++)
		if (r->regs[i].id == id)
			return &r->regs[i];
	return NULL;
}

static int add(struct registry *r, const struct vm_runtime *vr)
{
	struct vm_runtime *g = find(r, vr->id), *grown;

	if (!g) {
		grown = realloc(r->regs, (r->nr + 1) * sizeof(*grown));
		if (!grown)
			return -ENOMEM;
		r->regs = grown;
		g = &r->regs[r->nr++];
	}
	*g = *vr;
	return 0;
}

bool registry_ifname_valid(const char *s)
{
	size_t n = strlen(s);

	if (!n || n >= IF_NAMESIZE || !strcmp(s, ".") || !strcmp(s, ".."))
		return false;
	for (; *s; s++)
		if (*s <= ' ' || *s == '/' || *s == ':' || *s > '~')
			return false;
	return true;
}

/* {"CAP_X": "hex", ...} of the non-zero values, under key (none: absent). */
static void cap_map_save(cJSON *o, const char *key, const uint64_t v[RAYOS_CAP_COUNT])
{
	cJSON *m = NULL;
	char hex[17];

	for (int c = 0; c < RAYOS_CAP_COUNT; c++) {
		if (!v[c])
			continue;
		if (!m)
			m = cJSON_AddObjectToObject(o, key);
		snprintf(hex, sizeof(hex), "%llx", (unsigned long long)v[c]);
		cJSON_AddStringToObject(m, policy_cap_name(c), hex);
	}
}

/* {"allow_ports": "80,443", "max_bandwidth": bytes/s, "nodes": ["226:0"],
 * "disks_read"/"disks_write": [disk ids in hex]}: the spellings the parsers
 * read back. */
static const char *const disk_keys[CAPS_DISK_KINDS] = { "disks_read", "disks_write" };

static void limits_save(cJSON *o, const struct caps_limits *l)
{
	cJSON *j = cJSON_AddObjectToObject(o, "limits"), *nodes;
	char buf[CAPS_MAX_PORT_RANGES * 12 + 8];

	if (l->has_ports) {
		if (l->ports.nr)
			caps_ports_format(&l->ports, buf, sizeof(buf));
		else
			buf[0] = '\0';	/* an empty set: none allowed */
		cJSON_AddStringToObject(j, "allow_ports", buf);
	}
	if (l->rate_bytes)
		cJSON_AddNumberToObject(j, "max_bandwidth", (double)l->rate_bytes);
	if (l->has_nodes) {
		nodes = cJSON_AddArrayToObject(j, "nodes");
		for (uint32_t i = 0; i < l->nr_nodes; i++) {
			snprintf(buf, sizeof(buf), "%u:%u", l->nodes[i].major, l->nodes[i].minor);
			cJSON_AddItemToArray(nodes, cJSON_CreateString(buf));
		}
	}
	for (int k = 0; k < CAPS_DISK_KINDS; k++) {
		cJSON *arr;

		if (!l->has_disks[k])
			continue;
		arr = cJSON_AddArrayToObject(j, disk_keys[k]);
		for (uint32_t i = 0; i < l->disks[k].nr; i++) {
			caps_disk_id_hex(&l->disks[k].id[i], buf);
			cJSON_AddItemToArray(arr, cJSON_CreateString(buf));
		}
	}
}

/* Only we write the file: an entry that does not read back is dropped
 * with a warning rather than half applied. */
static void limits_load(const cJSON *j, struct vm_runtime *vr)
{
	const cJSON *ports = cJSON_GetObjectItemCaseSensitive(j, "allow_ports");
	const cJSON *rate = cJSON_GetObjectItemCaseSensitive(j, "max_bandwidth");
	const cJSON *nodes = cJSON_GetObjectItemCaseSensitive(j, "nodes"), *n;
	struct caps_limits l = { 0 };
	char err[256];

	if (!j)
		return;
	if (cJSON_IsString(ports)) {
		l.has_ports = true;
		if (ports->valuestring[0] &&
		    caps_parse_ports(ports->valuestring, &l.ports, err, sizeof(err)))
			goto bad;
	}
	if (cJSON_IsNumber(rate)) {
		if (rate->valuedouble < CAPS_RATE_MIN_BYTES ||
		    rate->valuedouble > (double)CAPS_RATE_MAX_BYTES)
			goto bad;
		l.rate_bytes = (uint64_t)rate->valuedouble;
	}
	cJSON_ArrayForEach(n, nodes) {
		struct caps_node node;

		l.has_nodes = true;
		if (!cJSON_IsString(n) || caps_parse_node(n->valuestring, &node, err, sizeof(err)) ||
		    caps_nodes_add(&l, node))
			goto bad;
	}
	for (int k = 0; k < CAPS_DISK_KINDS; k++) {
		const cJSON *arr = cJSON_GetObjectItemCaseSensitive(j, disk_keys[k]);

		if (!arr)
			continue;
		if (!cJSON_IsArray(arr))
			goto bad;
		l.has_disks[k] = true;
		cJSON_ArrayForEach(n, arr) {
			struct caps_disk_id id;

			if (!cJSON_IsString(n) || caps_disk_id_parse(n->valuestring, &id) ||
			    caps_disks_add(&l.disks[k], &id))
				goto bad;
		}
	}
	vr->limits = l;
	return;
bad:
	log_warn("VM %u: its saved capability limits do not read back: dropped", vr->id);
}

static int save(const struct registry *r)
{
	cJSON *root = cJSON_CreateObject(), *arr;
	char *text, boot[64];
	int err;

	boot_id_read(boot, sizeof(boot));
	cJSON_AddStringToObject(root, "boot_id", boot);
	arr = cJSON_AddArrayToObject(root, "registrations");

	for (size_t i = 0; i < r->nr; i++) {
		const struct vm_runtime *g = &r->regs[i];
		cJSON *o = cJSON_CreateObject();
		char hex[17];

		cJSON_AddNumberToObject(o, "id", g->id);
		cJSON_AddStringToObject(o, "interface", g->iface);
		cJSON_AddNumberToObject(o, "pid", g->pid);
		/* 64-bit masks as hex strings: JSON numbers are doubles. */
		snprintf(hex, sizeof(hex), "%llx", (unsigned long long)g->cap_grant);
		cJSON_AddStringToObject(o, "cap_grant", hex);
		snprintf(hex, sizeof(hex), "%llx", (unsigned long long)g->cap_revoke);
		cJSON_AddStringToObject(o, "cap_revoke", hex);
		if (g->cgroup[0]) {
			cJSON_AddStringToObject(o, "cgroup", g->cgroup);
			cJSON_AddBoolToObject(o, "cgroup_kept", g->cgroup_kept);
		}
		if (g->conf_flags) {
			cJSON_AddNumberToObject(o, "conf_flags", g->conf_flags);
			cJSON_AddNumberToObject(o, "conf_uid", g->conf_uid);
			cJSON_AddNumberToObject(o, "conf_disk_fds", g->conf_disk_fds);
		}
		cap_map_save(o, "cap_until", g->cap_until);
		cap_map_save(o, "policy_temp", g->policy_spec);
		if (!caps_limits_empty(&g->limits))
			limits_save(o, &g->limits);
		cJSON_AddItemToArray(arr, o);
	}
	text = cJSON_Print(root);
	cJSON_Delete(root);
	if (!text)
		return -ENOMEM;
	err = file_write_atomic(r->path, text, strlen(text), 0600);
	if (err)
		log_err("cannot save VM registrations to %s: %s", r->path, strerror(-err));
	free(text);
	return err;
}

int registry_open(const char *path, struct registry **out)
{
	struct registry *r = calloc(1, sizeof(*r));
	cJSON *root = NULL, *it;
	bool same_boot;
	enum { MAX = 1 << 20 };
	char *buf;
	ssize_t n;
	int fd;

	if (!r)
		return -ENOMEM;
	snprintf(r->path, sizeof(r->path), "%s", path);
	*out = r;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	buf = malloc(MAX);
	n = buf ? read(fd, buf, MAX - 1) : -1;
	close(fd);
	if (n >= 0) {
		buf[n] = '\0';
		root = cJSON_Parse(buf);
	}
	free(buf);
	{
		const cJSON *b = cJSON_GetObjectItemCaseSensitive(root, "boot_id");
		char boot[64];

		boot_id_read(boot, sizeof(boot));
		same_boot = cJSON_IsString(b) && boot[0] && !strcmp(b->valuestring, boot);
	}
	it = cJSON_GetObjectItemCaseSensitive(root, "registrations");
	if (!cJSON_IsArray(it)) {
		/* Only we write this file; if it is damaged, say so and go on
		 * with the policy's interfaces. */
		log_warn("%s is not a registration list: ignoring it", path);
		cJSON_Delete(root);
		return 0;
	}
	cJSON_ArrayForEach(it, it) {
		cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
		cJSON *ifc = cJSON_GetObjectItemCaseSensitive(it, "interface");
		cJSON *pid = cJSON_GetObjectItemCaseSensitive(it, "pid");
		cJSON *grant = cJSON_GetObjectItemCaseSensitive(it, "cap_grant");
		cJSON *revoke = cJSON_GetObjectItemCaseSensitive(it, "cap_revoke");
		cJSON *cg = cJSON_GetObjectItemCaseSensitive(it, "cgroup");
		cJSON *conf = cJSON_GetObjectItemCaseSensitive(it, "conf_flags");
		const cJSON *u;
		struct vm_runtime vr = {};

		if (!cJSON_IsNumber(id) || id->valuedouble < 1 || id->valuedouble > UINT32_MAX ||
		    !cJSON_IsString(ifc) || (ifc->valuestring[0] &&
					      !registry_ifname_valid(ifc->valuestring)))
			continue;
		vr.id = (uint32_t)id->valuedouble;
		snprintf(vr.iface, sizeof(vr.iface), "%s", ifc->valuestring);
		vr.pid = cJSON_IsNumber(pid) && pid->valuedouble > 0 ? (pid_t)pid->valuedouble : 0;
		if (cJSON_IsString(grant))
			vr.cap_grant = strtoull(grant->valuestring, NULL, 16);
		if (cJSON_IsString(revoke))
			vr.cap_revoke = strtoull(revoke->valuestring, NULL, 16);
		if (cJSON_IsString(cg) && cg->valuestring[0] == '/') {
			snprintf(vr.cgroup, sizeof(vr.cgroup), "%s", cg->valuestring);
			vr.cgroup_kept = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it,
										    "cgroup_kept"));
		}
		if (cJSON_IsNumber(conf)) {
			cJSON *uid = cJSON_GetObjectItemCaseSensitive(it, "conf_uid");
			cJSON *n = cJSON_GetObjectItemCaseSensitive(it, "conf_disk_fds");

			vr.conf_flags = (uint32_t)conf->valuedouble;
			vr.conf_uid = cJSON_IsNumber(uid) ? (uint32_t)uid->valuedouble : 0;
			vr.conf_disk_fds = cJSON_IsNumber(n) ? (uint32_t)n->valuedouble : 0;
		}
		cJSON_ArrayForEach(u, cJSON_GetObjectItemCaseSensitive(it, "cap_until")) {
			int c = policy_cap_from_name(u->string);

			if (c < 0 || !cJSON_IsString(u))
				continue;
			if (!same_boot) {
				log_warn("VM %u: temporary %s dropped: it was granted in an "
					 "earlier boot", vr.id, u->string);
				continue;
			}
			vr.cap_until[c] = strtoull(u->valuestring, NULL, 16);
		}
		limits_load(cJSON_GetObjectItemCaseSensitive(it, "limits"), &vr);
		cJSON_ArrayForEach(u, cJSON_GetObjectItemCaseSensitive(it, "policy_temp")) {
			int c = policy_cap_from_name(u->string);

			if (c >= 0 && cJSON_IsString(u))
				vr.policy_spec[c] = strtoull(u->valuestring, NULL, 16);
		}
		add(r, &vr);
	}
	cJSON_Delete(root);
	return 0;
}

void registry_close(struct registry *r)
{
	if (!r)
		return;
	free(r->regs);
	free(r);
}

int registry_put(struct registry *r, const struct vm_runtime *vr)
{
	int err = add(r, vr);

	return err ?: save(r);
}

int registry_put_many(struct registry *r, const struct vm_runtime *vrs, size_t n)
{
	struct vm_runtime *old = malloc((r->nr ? r->nr : 1) * sizeof(*old));
	size_t old_nr = r->nr;
	int err = 0;

	if (!old)
		return -ENOMEM;
	memcpy(old, r->regs, r->nr * sizeof(*old));
	for (size_t i = 0; i < n && !err; i++)
		err = add(r, &vrs[i]);
	err = err ?: save(r);
	if (err) {	/* all or nothing: the entries as they were */
		memcpy(r->regs, old, old_nr * sizeof(*old));
		r->nr = old_nr;
	}
	free(old);
	return err;
}

int registry_del(struct registry *r, uint32_t id)
{
	struct vm_runtime *g = find(r, id);

	if (!g)
		return -ENOENT;
	*g = r->regs[--r->nr];
	return save(r);
}

const struct vm_runtime *registry_get(const struct registry *r, uint32_t id)
{
	return find(r, id);
}

size_t registry_count(const struct registry *r)
{
	return r->nr;
}

const struct vm_runtime *registry_at(const struct registry *r, size_t i)
{
	return i < r->nr ? &r->regs[i] : NULL;
}

void registry_overlay(const struct registry *r, struct policy_set *set)
{
	for (size_t i = 0; i < r->nr; i++) {
		struct policy_vm *vm = (struct policy_vm *)policy_set_find(set, r->regs[i].id);

		if (vm && r->regs[i].iface[0])
			snprintf(vm->iface, sizeof(vm->iface), "%s", r->regs[i].iface);
	}
}
