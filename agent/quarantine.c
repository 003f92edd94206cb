// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Fail closed (quarantine.h): which VMs a publish quarantines, drops or
 * would drop too many of; the list of quarantined VMs with the time each
 * began, kept in the state dir; lifting a quarantine when the VM stops, is
 * unregistered or gets a policy again; status and metrics.
 */
#include <errno.h>
#include <net/if.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/agent_internal.h"
#include "agent/core/degraded.h"
#include "agent/core/log.h"
#include "agent/core/util.h"
#include "agent/quarantine.h"
#include "agent/vm/ifwatch.h"
#include "agent/vm/registry.h"
#include "loader/attach.h"
#include "loader/devices.h"
#include "loader/publish.h"

/* ---- the list ------------------------------------------------------------ */

const struct quarantine_entry *quarantine_find(const struct quarantine *q, uint32_t id)
{
	for (size_t i = 0; i < q->nr; i++)
		if (q->e[i].id == id)
			return &q->e[i];
	return NULL;
}

int quarantine_put(struct quarantine *q, const struct quarantine_entry *e)
{
	struct quarantine_entry *cur = (struct quarantine_entry *)quarantine_find(q, e->id);
	struct quarantine_entry *grown;
	uint64_t since;

	if (cur) {
		since = cur->since;
		*cur = *e;
		cur->since = since;
		return 0;
	}
	grown = realloc(q->e, (q->nr + 1) * sizeof(*grown));
	if (!grown)
		return -ENOMEM;
	q->e = grown;
	q->e[q->nr++] = *e;
	return 0;
}

bool quarantine_del(struct quarantine *q, uint32_t id)
{
	struct quarantine_entry *cur = (struct quarantine_entry *)quarantine_find(q, id);

	if (!cur)
		return false;
	*cur = q->e[--q->nr];
	return true;
}

void quarantine_free(struct quarantine *q)
{
	free(q->e);
	q->e = NULL;
	q->nr = 0;
}

int quarantine_load(struct quarantine *q, const char *path)
{
	cJSON *root, *it;
	char *text;
	int err;

	snprintf(q->path, sizeof(q->path), "%s", path);
	err = file_read_small(path, 1 << 20, &text);
	if (err)
		return err == -ENOENT ? 0 : err;
	root = cJSON_Parse(text);
	free(text);
	it = cJSON_GetObjectItemCaseSensitive(root, "quarantined");
	if (!cJSON_IsArray(it)) {
		/* Only we write it; the maps say which VMs are quarantined,
		 * the file only when each began. */
		log_warn("%s is not a quarantine list: ignoring it", path);
		cJSON_Delete(root);
		return 0;
	}
	cJSON_ArrayForEach(it, it) {
		const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
		const cJSON *since = cJSON_GetObjectItemCaseSensitive(it, "since");
		const cJSON *name = cJSON_GetObjectItemCaseSensitive(it, "name");
		const cJSON *ifc = cJSON_GetObjectItemCaseSensitive(it, "interface");
		struct quarantine_entry e = {};

		if (!cJSON_IsNumber(id) || id->valuedouble < 1 || id->valuedouble > UINT32_MAX ||
		    !cJSON_IsNumber(since) || since->valuedouble < 0)
			continue;
		e.id = (uint32_t)id->valuedouble;
		e.since = (uint64_t)since->valuedouble;
		if (cJSON_IsString(name))
			snprintf(e.name, sizeof(e.name), "%s", name->valuestring);
		if (cJSON_IsString(ifc))
			snprintf(e.iface, sizeof(e.iface), "%s", ifc->valuestring);
		if (quarantine_put(q, &e)) {
			cJSON_Delete(root);
			return -ENOMEM;
		}
	}
	cJSON_Delete(root);
	return 0;
}

int quarantine_save(const struct quarantine *q)
{
	cJSON *root = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(root, "quarantined");
	char *text;
	int err;

	for (size_t i = 0; i < q->nr; i++) {
		cJSON *o = cJSON_CreateObject();

		cJSON_AddNumberToObject(o, "id", q->e[i].id);
		cJSON_AddNumberToObject(o, "since", (double)q->e[i].since);
		cJSON_AddStringToObject(o, "name", q->e[i].name);
		cJSON_AddStringToObject(o, "interface", q->e[i].iface);
		cJSON_AddItemToArray(arr, o);
	}
	text = cJSON_Print(root);
	cJSON_Delete(root);
	if (!text)
		return -ENOMEM;
	err = file_write_atomic(q->path, text, strlen(text), 0600);
	free(text);
	return err;
}

bool quarantine_mass_removal(size_t leaving, size_t enforced, unsigned int share_pct)
{
	if (leaving < 2 || share_pct >= 100)
		return false;
	return (uint64_t)leaving * 100 > (uint64_t)share_pct * enforced;
}

/* ---- the agent's side ---------------------------------------------------- */

static void save_list(struct agent *a)
{
	int err = quarantine_save(&a->quarantine);

	if (err)
		log_warn("cannot save the quarantine list to %s: %s (the maps still hold "
			 "every quarantine)", a->quarantine.path, strerror(-err));
}

/* The VM still runs: its tap is attached, or its registered QEMU is alive. */
static bool vm_running(struct agent *a, uint32_t id)
{
	const struct vm_runtime *vr = registry_get(a->reg, id);

	if (vr && vr->pid && !(kill(vr->pid, 0) && errno == ESRCH))
		return true;
	return loader_vm_ifindex(a->ld, id) > 0;
}

static void update_degraded(struct agent *a)
{
	char ids[512] = "";
	size_t off = 0;

	if (!a->quarantine.nr) {
		degraded_clear(&a->deg, DEG_QUARANTINE);
		return;
	}
	for (size_t i = 0; i < a->quarantine.nr && off < sizeof(ids) - 16; i++)
		off += snprintf(ids + off, sizeof(ids) - off, "%s%u", i ? ", " : "",
				a->quarantine.e[i].id);
	degraded_set(&a->deg, DEG_QUARANTINE, "%zu VM(s) without a policy are isolated "
		     "(deny-all): %s; give them a policy, or unregister them "
		     "(rayos-agent vm unregister ID)", a->quarantine.nr, ids);
}

void quarantine_open(struct agent *a)
{
	char path[PATH_MAX];
	bool changed = false;
	int err;

	snprintf(path, sizeof(path), "%s/quarantine.json", a->opts->state_dir);
	err = quarantine_load(&a->quarantine, path);
	if (err)
		log_warn("cannot read %s: %s", path, strerror(-err));
	/* The maps are the truth: what a previous agent quarantined. */
	for (size_t i = 0; i < publish_nr_vms(a->ld); i++) {
		const struct compiled_vm *cv = publish_vm_at(a->ld, i);
		struct quarantine_entry e = { .id = cv->vm.vm_id, .since = (uint64_t)time(NULL) };

		if (!(cv->vm.flags & RAYOS_VMF_QUARANTINE) ||
		    quarantine_find(&a->quarantine, e.id))
			continue;
		quarantine_put(&a->quarantine, &e);
		changed = true;
	}
	for (size_t i = 0; i < a->quarantine.nr;) {
		struct rayos_vm rec;

		if (!loader_vm_record(a->ld, a->quarantine.e[i].id, &rec) &&
		    (rec.flags & RAYOS_VMF_QUARANTINE)) {
			i++;
			continue;
		}
		quarantine_del(&a->quarantine, a->quarantine.e[i].id);
		changed = true;
	}
	if (changed)
		save_list(a);
	if (a->quarantine.nr)
		log_warn("%zu VM(s) were quarantined before this start and stay so",
			 a->quarantine.nr);
	update_degraded(a);
}

int quarantine_plan(struct agent *a, struct policy_set *next, bool allow_mass, char *msg,
		    size_t len)
{
	size_t enforced = 0, leaving = 0, off = 0, nr = 0;
	struct policy_quarantined *q = NULL;
	char (*ifnames)[IF_NAMESIZE] = NULL;
	char ids[256] = "";
	bool more = false;
	int err;

	/* Count first: a held-back publish changes nothing, not even next. */
	for (size_t i = 0; i < publish_nr_vms(a->ld); i++) {
		const struct compiled_vm *cv = publish_vm_at(a->ld, i);

		if (cv->vm.flags & RAYOS_VMF_QUARANTINE)
			continue;
		enforced++;
		if (policy_set_find(next, cv->vm.vm_id))
			continue;
		if (off < sizeof(ids) - 16)
			off += snprintf(ids + off, sizeof(ids) - off, "%s%u", leaving ? ", " : "",
					cv->vm.vm_id);
		else
			more = true;
		leaving++;
	}
	if (!allow_mass && quarantine_mass_removal(leaving, enforced, a->opts->mass_removal_pct)) {
		snprintf(msg, len, "held back: the policy directory %s would take %zu of the %zu "
			 "VMs with a policy out of the set (%s%s), more than %u%%; restore their "
			 "files, or apply it with `rayos-agent policy reload --allow-mass-removal`",
			 a->opts->policy_dir, leaving, enforced, ids, more ? ", ..." : "",
			 a->opts->mass_removal_pct);
		return -EBUSY;
	}

	q = calloc(publish_nr_vms(a->ld) + 1, sizeof(*q));
	ifnames = calloc(publish_nr_vms(a->ld) + 1, sizeof(*ifnames));
	if (!q || !ifnames) {
		err = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < publish_nr_vms(a->ld); i++) {
		const struct compiled_vm *cv = publish_vm_at(a->ld, i);
		uint32_t id = cv->vm.vm_id;
		const struct quarantine_entry *qe = quarantine_find(&a->quarantine, id);
		const struct policy_vm *old = a->set ? policy_set_find(a->set, id) : NULL;
		int ifindex;

		if (policy_set_find(next, id))
			continue;	/* keeps or gets a policy */
		if ((cv->vm.flags & RAYOS_VMF_QUARANTINE) && !qe)
			continue;	/* released: dropped now */
		if (!vm_running(a, id))
			continue;	/* gone: dropped */
		/* Keep it on the tap it is attached to. */
		ifindex = loader_vm_ifindex(a->ld, id);
		if (!(ifindex > 0 && if_indextoname(ifindex, ifnames[nr])))
			snprintf(ifnames[nr], IF_NAMESIZE, "%s",
				 old && old->iface[0] ? old->iface : qe ? qe->iface : "");
		q[nr].id = id;
		q[nr].name = old ? old->name : qe ? qe->name : NULL;
		q[nr].iface = ifnames[nr];
		nr++;
	}
	err = policy_set_add_quarantined(next, q, nr);
	if (err)
		snprintf(msg, len, "cannot quarantine %zu VM(s): %s", nr, strerror(-err));
out:
	free(ifnames);
	free(q);
	return err;
}

void quarantine_after_publish(struct agent *a)
{
	bool changed = false;

	for (size_t i = 0; i < a->set->nr_vms; i++) {
		const struct policy_vm *vm = &a->set->vms[i];
		struct quarantine_entry e = { .id = vm->id, .since = (uint64_t)time(NULL) };

		if (!vm->quarantined || quarantine_find(&a->quarantine, vm->id))
			continue;
		snprintf(e.name, sizeof(e.name), "%s", vm->name);
		snprintf(e.iface, sizeof(e.iface), "%s", vm->iface);
		quarantine_put(&a->quarantine, &e);
		changed = true;
		log_warn("VM %u%s%s%s left the policy while it runs%s%s: quarantined, every "
			 "frame dropped and only the basic devices allowed, until it gets a "
			 "policy again, stops, or is unregistered (rayos-agent vm unregister %u)",
			 vm->id, vm->name[0] ? " (" : "", vm->name, vm->name[0] ? ")" : "",
			 vm->iface[0] ? " on " : "", vm->iface, vm->id);
	}
	for (size_t i = 0; i < a->quarantine.nr;) {
		const struct quarantine_entry *e = &a->quarantine.e[i];
		const struct policy_vm *vm = policy_set_find(a->set, e->id);

		if (vm && vm->quarantined) {
			i++;
			continue;
		}
		log_info("VM %u: quarantine lifted after %llu s (%s)", e->id,
			 (unsigned long long)((uint64_t)time(NULL) - e->since),
			 vm ? "it has a policy again" : "it stopped or was unregistered");
		quarantine_del(&a->quarantine, e->id);
		changed = true;
	}
	if (changed)
		save_list(a);
	update_degraded(a);
}

bool quarantine_release(struct agent *a, uint32_t id)
{
	const struct policy_vm *vm = a->set ? policy_set_find(a->set, id) : NULL;
	int err;

	if (!quarantine_del(&a->quarantine, id))
		return false;
	save_list(a);
	/* Now, not at the next publish: the policy directory may be broken
	 * or gone, and the VM's end must not wait for it. */
	if (vm && vm->quarantined) {
		ifwatch_detach(a->ifw, id);
		err = publish_remove_vm(a->ld, id);
		if (err && err != -ENOENT)
			log_err("VM %u: cannot remove its quarantine record: %s", id,
				strerror(-err));
		policy_set_remove(a->set, id);
	}
	log_info("VM %u: quarantine lifted (stopped or unregistered): its enforcement is "
		 "removed", id);
	update_degraded(a);
	return true;
}

bool quarantine_check(struct agent *a)
{
	bool changed = false;

	for (size_t i = 0; i < a->quarantine.nr;) {
		uint32_t id = a->quarantine.e[i].id;

		if (vm_running(a, id)) {
			i++;
			continue;
		}
		log_info("VM %u: stopped while quarantined (no tap, no QEMU)", id);
		quarantine_release(a, id);
		changed = true;
	}
	return changed;
}

const struct quarantine_entry *quarantine_get(const struct agent *a, uint32_t id)
{
	return quarantine_find(&a->quarantine, id);
}

cJSON *quarantine_json(const struct agent *a)
{
	cJSON *arr = cJSON_CreateArray();

	for (size_t i = 0; arr && i < a->quarantine.nr; i++) {
		const struct quarantine_entry *e = &a->quarantine.e[i];
		cJSON *o = cJSON_CreateObject();

		cJSON_AddNumberToObject(o, "id", e->id);
		cJSON_AddStringToObject(o, "name", e->name);
		cJSON_AddStringToObject(o, "interface", e->iface);
		cJSON_AddNumberToObject(o, "since", (double)e->since);
		cJSON_AddItemToArray(arr, o);
	}
	return arr;
}

void quarantine_prometheus(FILE *out, const struct agent *a)
{
	fprintf(out, "# HELP rayos_quarantined_vms VMs isolated because they lost their "
		"policy while running.\n# TYPE rayos_quarantined_vms gauge\n"
		"rayos_quarantined_vms %zu\n", a->quarantine.nr);
	fprintf(out, "# HELP rayos_vm_quarantined_since_seconds Unix time the VM's "
		"quarantine began.\n# TYPE rayos_vm_quarantined_since_seconds gauge\n");
	for (size_t i = 0; i < a->quarantine.nr; i++)
		fprintf(out, "rayos_vm_quarantined_since_seconds{vm=\"%u\"} %llu\n",
			a->quarantine.e[i].id, (unsigned long long)a->quarantine.e[i].since);
}
