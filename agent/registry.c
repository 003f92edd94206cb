// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Runtime VM registrations: which tap a running VM uses, as told by the CLI,
 * the libvirt hook or rayos-qemu.  A registration names a VM of the policy
 * and overrides the policy's "interface"; it is kept in the state dir
 * (written to a temporary file and renamed) so a restarted agent re-attaches
 * the same taps.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "agent/log.h"
#include "agent/registry.h"

struct reg {
	uint32_t id;
	char iface[IF_NAMESIZE];
};

struct registry {
	char path[PATH_MAX];
	struct reg *regs;
	size_t nr;
};

static struct reg *find(struct registry *r, uint32_t id)
{
	for (size_t i = 0; i < r->nr; i++)
		if (r->regs[i].id == id)
			return &r->regs[i];
	return NULL;
}

static int add(struct registry *r, uint32_t id, const char *iface)
{
	struct reg *g = find(r, id), *grown;

	if (!g) {
		grown = realloc(r->regs, (r->nr + 1) * sizeof(*grown));
		if (!grown)
			return -ENOMEM;
		r->regs = grown;
		g = &r->regs[r->nr++];
		g->id = id;
	}
	snprintf(g->iface, sizeof(g->iface), "%s", iface);
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

static int save(const struct registry *r)
{
	char tmp[PATH_MAX + 8], *text;
	cJSON *root = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(root, "registrations");
	int fd, err = 0;
	size_t len;

	for (size_t i = 0; i < r->nr; i++) {
		cJSON *o = cJSON_CreateObject();

		cJSON_AddNumberToObject(o, "id", r->regs[i].id);
		cJSON_AddStringToObject(o, "interface", r->regs[i].iface);
		cJSON_AddItemToArray(arr, o);
	}
	text = cJSON_Print(root);
	cJSON_Delete(root);
	if (!text)
		return -ENOMEM;
	len = strlen(text);
	snprintf(tmp, sizeof(tmp), "%s.tmp", r->path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, text, len) != (ssize_t)len || fsync(fd))
		err = -errno;
	if (fd >= 0)
		close(fd);
	if (!err && rename(tmp, r->path))
		err = -errno;
	if (err)
		log_err("cannot save VM registrations to %s: %s", r->path, strerror(-err));
	free(text);
	return err;
}

int registry_open(const char *path, struct registry **out)
{
	struct registry *r = calloc(1, sizeof(*r));
	cJSON *root = NULL, *it;
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

		if (cJSON_IsNumber(id) && id->valuedouble >= 1 && id->valuedouble <= UINT32_MAX &&
		    cJSON_IsString(ifc) && registry_ifname_valid(ifc->valuestring))
			add(r, (uint32_t)id->valuedouble, ifc->valuestring);
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

int registry_set(struct registry *r, uint32_t id, const char *iface)
{
	int err = add(r, id, iface);

	return err ?: save(r);
}

int registry_del(struct registry *r, uint32_t id)
{
	struct reg *g = find(r, id);

	if (!g)
		return -ENOENT;
	*g = r->regs[--r->nr];
	return save(r);
}

const char *registry_iface(const struct registry *r, uint32_t id)
{
	struct reg *g = find((struct registry *)r, id);

	return g ? g->iface : NULL;
}

void registry_overlay(const struct registry *r, struct policy_set *set)
{
	for (size_t i = 0; i < r->nr; i++) {
		for (size_t v = 0; v < set->nr_vms; v++) {
			if (set->vms[v].id == r->regs[i].id)
				snprintf(set->vms[v].iface, sizeof(set->vms[v].iface), "%s",
					 r->regs[i].iface);
		}
	}
}
