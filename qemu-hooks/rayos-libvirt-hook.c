// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The libvirt QEMU hook (/etc/libvirt/hooks/qemu or a file in qemu.d/):
 * registers a libvirt domain's QEMU process and tap with rayos-agent when it
 * has started (and when libvirtd reconnects to it), and unregisters it when
 * it stops.  libvirt runs QEMU as its own user in a cgroup it made for the
 * domain; the agent attaches the device program to that cgroup ("cgroup":
 * "keep") rather than moving QEMU out of it.  libvirt runs the hook as
 *
 *   qemu DOMAIN OPERATION SUB-OPERATION EXTRA   (domain XML on stdin)
 *
 * A domain is a RayOS VM when its XML carries <rayos:vm id="N"/> in its
 * <metadata>, or when the applied policy has a VM whose "name" is the
 * domain's name.  Other domains are left alone.
 *
 * Exit status is what libvirt acts on, so it is chosen per operation:
 *   prepare      1 when the domain claims a RayOS VM (metadata) that the agent
 *                does not know or cannot be asked about: it must not run
 *                unconfined.  The domain does not start.
 *   started      1 when registration fails for a RayOS VM: libvirt then
 *                stops the domain (fail closed).
 *   reconnect, stopped, release, and everything else: always 0.  A non-zero
 *                exit on reconnect makes libvirtd kill a running guest.
 * Problems are written to stderr (libvirt logs it) and syslog.
 *
 * Environment (for tests): RAYOS_RUN_DIR (the agent's run directory,
 * default /run/rayos), RAYOS_LIBVIRT_RUN_DIR (where libvirt writes
 * DOMAIN.pid, default /run/libvirt/qemu).
 */
#include <errno.h>
#include <limits.h>
#include <net/if.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "agent/control/control.h"
#include "agent/core/paths.h"

#define PROG		"rayos-libvirt-hook"
#define CALL_TIMEOUT_MS	3000
#define XML_MAX		(8 << 20)	/* larger domain XML is not read further */

struct domain {
	const char *name;		/* argv[1] */
	char uuid[64];
	char tap[IFNAMSIZ];		/* first <interface>'s <target dev=...> */
	char mac[32];
	uint32_t meta_id;		/* <rayos:vm id="N"/>, 0 if absent */
	bool meta_bad;			/* present but not a VM id */
};

static void say(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(int prio, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, PROG ": ");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	va_start(ap, fmt);
	vsyslog(prio, fmt, ap);
	va_end(ap);
}

/* ---- just enough XML: libvirt's own output, elements and attributes ---- */

/* The value of attribute attr in the start tag at tag ("<x a='1' b="2">"). */
static bool xml_attr(const char *tag, const char *attr, char *out, size_t len)
{
	const char *end = strchr(tag, '>'), *p = tag;
	size_t alen = strlen(attr);

	while (end && (p = strstr(p, attr)) && p < end) {
		const char *q = p + alen;
		char quote;
		size_t n;

		if (p[-1] != ' ' && p[-1] != '\t' && p[-1] != '\n') {
			p = q;
			continue;
		}
		while (*q == ' ')
			q++;
		if (*q++ != '=') {
			p = q;
			continue;
		}
		while (*q == ' ')
			q++;
		quote = *q++;
		if (quote != '\'' && quote != '"')
			return false;
		n = strcspn(q, quote == '"' ? "\"" : "'");
		if (n >= len || q + n > end)
			return false;
		memcpy(out, q, n);
		out[n] = '\0';
		return true;
	}
	return false;
}

/* The start tag <name ...> or <name> or <name/> at or after from. */
static const char *xml_find(const char *from, const char *limit, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = from; (p = strchr(p, '<')) && (!limit || p < limit); p++)
		if (!strncmp(p + 1, name, n) && strchr(" \t\n/>", p[1 + n]))
			return p;
	return NULL;
}

static void xml_text(const char *xml, const char *name, char *out, size_t len)
{
	const char *p = xml_find(xml, NULL, name), *q;
	size_t n;

	out[0] = '\0';
	if (!p || !(p = strchr(p, '>')) || p[-1] == '/')
		return;
	p++;
	q = strchr(p, '<');
	n = q ? (size_t)(q - p) : 0;
	while (n && strchr(" \t\n", p[0]))
		p++, n--;
	while (n && strchr(" \t\n", p[n - 1]))
		n--;
	if (n < len) {
		memcpy(out, p, n);
		out[n] = '\0';
	}
}

static void domain_parse(const char *xml, struct domain *d)
{
	const char *p, *end;
	char id[32], *e;

	xml_text(xml, "uuid", d->uuid, sizeof(d->uuid));
	p = xml_find(xml, NULL, "rayos:vm");
	if (p) {
		unsigned long long v;

		errno = 0;
		v = xml_attr(p, "id", id, sizeof(id)) ? strtoull(id, &e, 10) : 0;
		if (errno || !v || *e || v > UINT32_MAX || id[0] == '-')
			d->meta_bad = true;
		else
			d->meta_id = v;
	}
	/* The first interface with a target: that is the tap the agent guards. */
	for (p = xml; (p = xml_find(p, NULL, "interface")); p = end) {
		const char *t, *m;

		end = strstr(p, "</interface>");
		if (!end)
			break;
		t = xml_find(p, end, "target");
		if (!t || !xml_attr(t, "dev", d->tap, sizeof(d->tap)))
			continue;
		m = xml_find(p, end, "mac");
		if (!m || !xml_attr(m, "address", d->mac, sizeof(d->mac)))
			d->mac[0] = '\0';
		break;
	}
}

static char *read_all(FILE *f)
{
	size_t len = 0, cap = 65536;
	char *buf = malloc(cap + 1);
	size_t n;

	if (!buf)
		return NULL;
	while ((n = fread(buf + len, 1, cap - len, f)) > 0) {
		len += n;
		if (len == cap) {
			char *nb;

			if (cap >= XML_MAX)
				break;
			nb = realloc(buf, cap * 2 + 1);
			if (!nb)
				break;
			buf = nb;
			cap *= 2;
		}
	}
	buf[len] = '\0';
	return buf;
}

/* ---- the agent ---- */

static char sock_path[256];	/* sun_path is 108 bytes anyway */

/* 0 and *reply on "ok": true; -ENOTCONN when no agent listens; -EREMOTEIO
 * with *err set when the agent refused. */
static int call(cJSON *req, cJSON **reply, char *err, size_t errlen)
{
	const cJSON *e;
	int rc;

	*reply = NULL;
	rc = control_call(sock_path, req, reply, CALL_TIMEOUT_MS);
	cJSON_Delete(req);
	if (rc == -ENOENT || rc == -ECONNREFUSED) {
		snprintf(err, errlen, "no rayos-agent is running (%s)", sock_path);
		return -ENOTCONN;
	}
	if (rc) {
		snprintf(err, errlen, "asking the agent on %s: %s", sock_path, strerror(-rc));
		return rc;
	}
	if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(*reply, "ok"))) {
		e = cJSON_GetObjectItemCaseSensitive(*reply, "error");
		snprintf(err, errlen, "%s", cJSON_IsString(e) ? e->valuestring : "refused");
		cJSON_Delete(*reply);
		*reply = NULL;
		return -EREMOTEIO;
	}
	return 0;
}

static cJSON *request(const char *cmd, uint32_t id)
{
	cJSON *r = cJSON_CreateObject();

	cJSON_AddStringToObject(r, "cmd", cmd);
	if (id)
		cJSON_AddNumberToObject(r, "id", id);
	return r;
}

/* The RayOS VM id of the domain: metadata, else the policy VM of that name.
 * 0 with err empty: not a RayOS VM.  0 with err set: cannot tell. */
static uint32_t domain_vm(const struct domain *d, char *err, size_t errlen)
{
	const cJSON *vm;
	cJSON *r;
	uint32_t id = 0;
	int rc;

	err[0] = '\0';
	if (d->meta_bad) {
		snprintf(err, errlen, "<rayos:vm id=...> is not a VM id (1..4294967295)");
		return 0;
	}
	if (d->meta_id) {
		rc = call(request("vm.info", d->meta_id), &r, err, errlen);
		cJSON_Delete(r);
		return rc ? 0 : d->meta_id;
	}
	rc = call(request("status", 0), &r, err, errlen);
	if (rc)
		return 0;
	cJSON_ArrayForEach(vm, cJSON_GetObjectItemCaseSensitive(r, "vms")) {
		const cJSON *n = cJSON_GetObjectItemCaseSensitive(vm, "name");
		const cJSON *i = cJSON_GetObjectItemCaseSensitive(vm, "id");

		if (cJSON_IsString(n) && cJSON_IsNumber(i) && !strcmp(n->valuestring, d->name)) {
			id = (uint32_t)i->valuedouble;
			break;
		}
	}
	cJSON_Delete(r);
	return id;
}

static void pid_path(const char *name, char *path, size_t len)
{
	const char *dir = getenv("RAYOS_LIBVIRT_RUN_DIR");

	snprintf(path, len, "%s/%s.pid", dir && *dir ? dir : "/run/libvirt/qemu", name);
}

static int read_pid(const char *path, pid_t *pid)
{
	long v;
	FILE *f;
	int n;

	f = fopen(path, "re");
	if (!f)
		return -errno;
	n = fscanf(f, "%ld", &v);
	fclose(f);
	if (n != 1 || v <= 1 || v > INT_MAX)
		return -EINVAL;
	*pid = (pid_t)v;
	return 0;
}

static int do_register(const struct domain *d, uint32_t id)
{
	char err[1024], path[PATH_MAX];
	cJSON *req, *r;
	pid_t pid = 0;
	int rc;

	if (!d->tap[0]) {
		say(LOG_ERR, "domain %s (VM %u): no <interface> with a <target dev=...> in the "
		    "domain XML: nothing to enforce the network policy on", d->name, id);
		return -ENODEV;
	}
	pid_path(d->name, path, sizeof(path));
	rc = read_pid(path, &pid);
	if (rc) {
		say(LOG_ERR, "domain %s (VM %u): cannot read its QEMU pid from %s: %s",
		    d->name, id, path, strerror(-rc));
		return rc;
	}
	req = request("vm.register", id);
	cJSON_AddStringToObject(req, "interface", d->tap);
	cJSON_AddNumberToObject(req, "pid", pid);
	/* libvirt made the domain's cgroup (machine.slice/...scope/libvirt) and
	 * owns it: the device program goes there; QEMU is not moved. */
	cJSON_AddStringToObject(req, "cgroup", "keep");
	if (d->uuid[0])
		cJSON_AddStringToObject(req, "uuid", d->uuid);
	rc = call(req, &r, err, sizeof(err));
	if (rc) {
		say(LOG_ERR, "domain %s (VM %u): registration on %s failed: %s", d->name, id,
		    d->tap, err);
		return rc;
	}
	cJSON_Delete(r);
	say(LOG_INFO, "domain %s registered as VM %u on %s (pid %d)", d->name, id, d->tap, pid);
	return 0;
}

static void do_unregister(const struct domain *d, uint32_t id)
{
	char err[1024];
	cJSON *r;
	int rc = call(request("vm.unregister", id), &r, err, sizeof(err));

	cJSON_Delete(r);
	/* The agent unregisters by itself when it sees QEMU exit. */
	if (rc && !strstr(err, "not registered"))
		say(LOG_WARNING, "domain %s (VM %u): unregister: %s", d->name, id, err);
}

int main(int argc, char **argv)
{
	const char *run_dir = getenv("RAYOS_RUN_DIR");
	struct domain d = { 0 };
	const char *op;
	char err[1024], *xml;
	uint32_t id;
	int rc = 0;

	if (argc < 3) {
		fprintf(stderr, "usage: %s DOMAIN OPERATION [SUB-OP [EXTRA]] < domain.xml\n"
			"(the libvirt QEMU hook; see qemu-hooks/README.md)\n", PROG);
		return 2;
	}
	d.name = argv[1];
	op = argv[2];
	openlog(PROG, LOG_PID, LOG_DAEMON);
	snprintf(sock_path, sizeof(sock_path), "%s/%s",
		 run_dir && *run_dir ? run_dir : RAYOS_RUN_DIR_DEFAULT, CONTROL_SOCK_NAME);

	if (strcmp(op, "prepare") && strcmp(op, "started") && strcmp(op, "reconnect") &&
	    strcmp(op, "stopped") && strcmp(op, "release"))
		return 0;	/* start, migrate, restore, attach...: nothing to do */

	xml = read_all(stdin);
	if (!xml)
		return !strcmp(op, "prepare") || !strcmp(op, "started");
	domain_parse(xml, &d);
	free(xml);

	id = domain_vm(&d, err, sizeof(err));
	if (!id) {
		if (!err[0])
			return 0;	/* not a RayOS VM */
		/* Claimed by metadata but unknown/unreachable: keep it from running
		 * unconfined; by name, an unreachable agent cannot say. */
		if (d.meta_id || d.meta_bad) {
			if (d.meta_id)
				say(LOG_ERR, "domain %s (VM %u): %s", d.name, d.meta_id, err);
			else
				say(LOG_ERR, "domain %s: %s", d.name, err);
			return !strcmp(op, "prepare") || !strcmp(op, "started");
		}
		say(LOG_WARNING, "domain %s: cannot tell whether it is a RayOS VM: %s", d.name, err);
		return 0;
	}

	if (!strcmp(op, "started"))
		rc = do_register(&d, id) ? 1 : 0;
	else if (!strcmp(op, "reconnect"))
		do_register(&d, id);	/* never fail: libvirtd would kill the guest */
	else if (!strcmp(op, "stopped") || !strcmp(op, "release"))
		do_unregister(&d, id);
	return rc;
}
