// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * `cap revoke-all [--temporary] [--vm LIST] [--group NAME]`: capabilities
 * taken from many VMs in one step.  The order is what makes it one step and
 * keeps it across a crash:
 *
 *   1. choose the VMs and what each holds now (nothing changes on a bad
 *      selection: unknown VM, unknown or empty group, empty list);
 *   2. append the audit record (write-ahead, as every capability change; a
 *      state dir that cannot take it refuses the revoke), not yet synced;
 *   3. loader_caps_switch(): each slot's mask under the next epoch, then the
 *      one store that puts all of them in force for every program
 *      (bpf/abi/policy.h) -- "enforced" is measured here -- then sync the
 *      record: a killed agent loses nothing after 2 (the record is in the
 *      file), a crashed host loses the maps too;
 *   4. the runtime registry (restart, reload) and the VM records, then
 *      loader_caps_settle() folds the switch away.
 *
 * An agent killed between 3 and 4 finds the switch armed at its next start:
 * vmrevoke_recover() reads the entries in force into the registry before
 * the records are rewritten, so the revoke survives, then settles.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/agent_internal.h"
#include "agent/audittrail.h"
#include "agent/audit/audit.h"
#include "agent/caps/caps.h"
#include "agent/caps/vmlist.h"
#include "agent/control/control.h"
#include "agent/core/degraded.h"
#include "agent/core/log.h"
#include "agent/vm/registry.h"
#include "bpf/abi/policy.h"
#include "loader/capswitch.h"
#include "loader/devices.h"
#include "loader/loader.h"
#include "loader/publish.h"

#define ALL_CAPS	((1ULL << RAYOS_CAP_COUNT) - 1)

/* One selected VM: what it loses, and its runtime entry after. */
struct pick {
	uint32_t id, slot;
	uint64_t mask;			/* held now and taken */
	size_t links;			/* delegation links that ended with it */
	struct vm_runtime vr;
};

static uint64_t now_ns(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return (uint64_t)ts.tv_sec * CAPS_NS_PER_S + (uint64_t)ts.tv_nsec;
}

static double ms_since(uint64_t t0)
{
	return (double)(now_ns(CLOCK_MONOTONIC) - t0) / 1e6;
}

/* What the VM holds now (record caps, live temporary grants, delegated
 * capabilities) and what revoke-all takes: everything, or with temporary
 * only the capabilities held through a deadline alone (a temporary grant,
 * or a delegation link with a deadline of its own; a link without one
 * counts as permanent).  Fills p->vr with the entry after. */
static void plan(struct agent *a, const struct rayos_vm *rec, bool temporary, uint64_t boot,
		 struct pick *p)
{
	const struct vm_runtime *old = registry_get(a->reg, rec->vm_id);
	uint64_t deleg = vmdeleg_held(a, rec->vm_id, false);
	uint64_t deleg_tmp = vmdeleg_held(a, rec->vm_id, true);
	uint64_t live = 0;

	memset(&p->vr, 0, sizeof(p->vr));
	if (old)
		p->vr = *old;
	p->vr.id = rec->vm_id;
	p->id = rec->vm_id;
	p->slot = rec->slot;
	for (int c = 0; c < RAYOS_CAP_COUNT; c++)
		if (rec->cap_until_ns[c] > boot)
			live |= 1ULL << c;
	if (rec->flags & RAYOS_VMF_QUARANTINE) {
		p->mask = 0;	/* holds nothing already */
		return;
	}
	p->mask = temporary ? ((live & ~(deleg & ~deleg_tmp)) | deleg_tmp) & ~rec->caps
			    : (rec->caps | live | deleg) & ALL_CAPS;
	/* A revoke ends the temporary grants in the selection either way. */
	memset(p->vr.cap_until, 0, sizeof(p->vr.cap_until));
	if (!temporary) {
		p->vr.cap_revoke |= p->mask;
		p->vr.cap_grant &= ~p->mask;
	}
}

static int cmp_pick(const void *x, const void *y)
{
	const struct pick *a = x, *b = y;

	return a->id < b->id ? -1 : a->id > b->id;
}

/* The VMs a request names: "vms" (a list such as "1000,1002-1005"),
 * "group", or neither (every VM of the applied policy).  NULL with ids, n, or
 * a control error. */
static cJSON *select_vms(struct agent *a, const cJSON *req, uint32_t **ids, size_t *n)
{
	const cJSON *vms = cJSON_GetObjectItemCaseSensitive(req, "vms");
	const cJSON *group = cJSON_GetObjectItemCaseSensitive(req, "group");
	size_t nr_set = a->set ? a->set->nr_vms : 0;
	char err[256];

	*ids = NULL;
	*n = 0;
	if (vms && group)
		return control_error("give \"vms\" or \"group\", not both");
	if (vms) {
		if (!cJSON_IsString(vms))
			return control_error("\"vms\" must be a list of VM ids such as "
					     "\"1000,1002-1005\"");
		if (vmlist_parse(vms->valuestring, ids, n, err, sizeof(err)))
			return control_error("%s", err);
		for (size_t i = 0; i < *n; i++) {
			if (!policy_vm(a, (*ids)[i])) {
				uint32_t bad = (*ids)[i];

				free(*ids);
				*ids = NULL;
				return control_error("unknown VM %u: it is not in the applied "
						     "policy; nothing was revoked", bad);
			}
		}
		return NULL;
	}
	if (group && (!cJSON_IsString(group) || !*group->valuestring))
		return control_error("\"group\" must be a group name");
	*ids = calloc(nr_set ? nr_set : 1, sizeof(**ids));
	if (!*ids)
		return control_error("out of memory");
	for (size_t i = 0; i < nr_set; i++) {
		const struct policy_vm *pv = &a->set->vms[i];

		if (!group || !strcmp(pv->group, group->valuestring))
			(*ids)[(*n)++] = pv->id;
	}
	if (!*n) {
		free(*ids);
		*ids = NULL;
		return group ? control_error("no VM of the applied policy is in group \"%s\"; "
					     "nothing was revoked", group->valuestring)
			     : control_error("the applied policy has no VMs; nothing was "
					     "revoked");
	}
	return NULL;
}

static cJSON *cap_names(uint64_t mask)
{
	cJSON *arr = cJSON_CreateArray();

	for (int c = 0; c < RAYOS_CAP_COUNT; c++)
		if (mask & (1ULL << c))
			cJSON_AddItemToArray(arr, cJSON_CreateString(policy_cap_name(c)));
	return arr;
}

/* The audit record: VMs grouped by what they lose, so that 4096 VMs with
 * the same capabilities make one short line. */
static cJSON *audit_record(const struct pick *p, size_t n, bool temporary, const char *sel)
{
	cJSON *j = cJSON_CreateObject(), *groups = cJSON_CreateArray();
	uint64_t seen[64];
	size_t nr_seen = 0;

	cJSON_AddStringToObject(j, "event", "cap_revoke_all");
	cJSON_AddBoolToObject(j, "temporary", temporary);
	cJSON_AddStringToObject(j, "selection", sel);
	for (size_t i = 0; i < n; i++) {
		cJSON *g, *ids;
		size_t k;

		if (!p[i].mask)
			continue;
		for (k = 0; k < nr_seen && seen[k] != p[i].mask; k++)
			;
		if (k < nr_seen)
			continue;
		if (nr_seen < sizeof(seen) / sizeof(seen[0]))
			seen[nr_seen++] = p[i].mask;
		g = cJSON_CreateObject();
		cJSON_AddItemToObject(g, "caps", cap_names(p[i].mask));
		ids = cJSON_AddArrayToObject(g, "vms");
		for (size_t m = i; m < n; m++)
			if (p[m].mask == p[i].mask)
				cJSON_AddItemToArray(ids, cJSON_CreateNumber(p[m].id));
		cJSON_AddItemToArray(groups, g);
	}
	cJSON_AddItemToObject(j, "revoked", groups);
	cJSON_AddStringToObject(j, "by", "control socket");
	return j;
}

/* Write-ahead without waiting for the disk: the record is in the file
 * before the switch (an agent killed after it loses nothing), and synced
 * before the request is answered. */
static int write_ahead(struct agent *a, cJSON *rec, char *path, size_t path_len, char *why,
		       size_t len)
{
	int ret;

	audittrail_path(a, path, path_len);
	ret = rec ? audit_probe(path, why, len) : -ENOMEM;
	if (!ret) {
		ret = audit_append_nosync(path, rec);
		if (ret)
			snprintf(why, len, "%s: %s", path, strerror(-ret));
	}
	return ret;
}

/* Steps 4 for the picked VMs: delegation links to them for what they lost
 * end (the switch ends them in the kernel until then), records from the
 * registry, then settle. */
static void fold(struct agent *a, struct pick *p, size_t n)
{
	int err;

	for (size_t i = 0; i < n; i++)
		if (p[i].mask)
			p[i].links = vmdeleg_revoked(a, p[i].id, p[i].mask);
	for (size_t i = 0; i < n; i++) {
		const struct vm_runtime *vr = registry_get(a->reg, p[i].id);

		if (vr && (err = vmcaps_apply(a, vr)))
			log_warn("VM %u: cannot rewrite its record after revoke-all (%s); the "
				 "switch keeps the revoke in force", p[i].id, strerror(-err));
	}
}

cJSON *vmrevoke_all(struct agent *a, const cJSON *req)
{
	const cJSON *temp = cJSON_GetObjectItemCaseSensitive(req, "temporary");
	uint64_t t0 = now_ns(CLOCK_MONOTONIC), boot = now_ns(CLOCK_BOOTTIME), epoch = 0;
	struct loader_revoke *sel = NULL;
	struct vm_runtime *vrs = NULL;
	struct pick *p = NULL;
	uint32_t *ids = NULL;
	size_t n = 0, nr_sel = 0;
	bool temporary = cJSON_IsTrue(temp);
	double enforced_ms = 0;
	char why[PATH_MAX + 64], selection[96], audit[PATH_MAX];
	cJSON *r, *arr, *rec;
	int err;

	if (temp && !cJSON_IsBool(temp))
		return control_error("\"temporary\" must be true or false");
	r = select_vms(a, req, &ids, &n);
	if (r)
		return r;
	p = calloc(n, sizeof(*p));
	sel = calloc(n, sizeof(*sel));
	vrs = calloc(n, sizeof(*vrs));
	if (!p || !sel || !vrs) {
		r = control_error("out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		struct rayos_vm recd;

		if (loader_vm_cached(a->ld, ids[i], &recd)) {
			r = control_error("VM %u has no record in the maps; nothing was revoked",
					  ids[i]);
			goto out;
		}
		plan(a, &recd, temporary, boot, &p[i]);
		vrs[i] = p[i].vr;
		if (p[i].mask)
			sel[nr_sel++] = (struct loader_revoke){ .slot = p[i].slot,
								.mask = p[i].mask };
	}
	qsort(p, n, sizeof(*p), cmp_pick);
	log_debug("revoke-all: planned %zu VMs in %.3f ms", n, ms_since(t0));
	snprintf(selection, sizeof(selection), "%s",
		 cJSON_IsString(cJSON_GetObjectItemCaseSensitive(req, "vms")) ? "vms"
		 : cJSON_IsString(cJSON_GetObjectItemCaseSensitive(req, "group")) ? "group" : "all");

	/* 2: write-ahead. */
	rec = audit_record(p, n, temporary, selection);
	err = write_ahead(a, rec, audit, sizeof(audit), why, sizeof(why));
	cJSON_Delete(rec);
	if (err) {
		degraded_set(&a->deg, DEG_AUDIT_UNWRITABLE, "%s", why);
		r = control_error("refused: the audit record cannot be written and synced (%s); "
				  "nothing changed; make the state dir writable or free space in "
				  "it, then retry", why);
		goto out;
	}
	degraded_clear(&a->deg, DEG_AUDIT_UNWRITABLE);
	log_debug("revoke-all: audit record written at %.3f ms", ms_since(t0));

	/* 3: the step. */
	if (nr_sel) {
		err = loader_caps_switch(a->ld, sel, nr_sel, &epoch);
		if (err) {
			r = control_error("refused: the revoke-all switch cannot be written (%s); "
					  "nothing changed (revoke VM by VM with `cap revoke`)",
					  strerror(-err));
			goto out;
		}
	}
	enforced_ms = ms_since(t0);
	err = audit_sync(audit);
	if (err) {
		degraded_set(&a->deg, DEG_AUDIT_UNWRITABLE, "%s: %s", audit, strerror(-err));
		log_err("revoke-all: in force, but its audit record in %s cannot be synced: %s",
			audit, strerror(-err));
	}

	/* 4: keep it (restart, reload), then fold and settle. */
	err = registry_put_many(a->reg, vrs, n);
	if (err)
		log_err("revoke-all: cannot save %s/registrations.json (%s): the revoke is in "
			"force; the switch stays armed so that a restart keeps it",
			a->opts->state_dir, strerror(-err));
	else {
		fold(a, p, n);
		loader_caps_settle(a->ld);
	}

	r = cJSON_CreateObject();
	cJSON_AddBoolToObject(r, "ok", 1);
	cJSON_AddBoolToObject(r, "temporary", temporary);
	cJSON_AddNumberToObject(r, "epoch", (double)epoch);
	cJSON_AddNumberToObject(r, "selected", (double)n);
	cJSON_AddNumberToObject(r, "revoked_vms", (double)nr_sel);
	cJSON_AddNumberToObject(r, "enforced_ms", enforced_ms);
	cJSON_AddNumberToObject(r, "total_ms", ms_since(t0));
	arr = cJSON_AddArrayToObject(r, "vms");
	for (size_t i = 0; i < n; i++) {
		cJSON *o = cJSON_CreateObject();

		cJSON_AddNumberToObject(o, "id", p[i].id);
		cJSON_AddItemToObject(o, "revoked", cap_names(p[i].mask));
		if (p[i].links)
			cJSON_AddNumberToObject(o, "delegations_ended", (double)p[i].links);
		cJSON_AddItemToArray(arr, o);
	}
	log_info("revoke-all%s: %zu of %zu selected VMs lost capabilities in one step "
		 "(epoch %llu, %.3f ms after the request)", temporary ? " --temporary" : "",
		 nr_sel, n, (unsigned long long)epoch, enforced_ms);
out:
	free(ids);
	free(p);
	free(sel);
	free(vrs);
	return r;
}

/* At start, after the first publish: a revoke-all the previous agent put in
 * force but did not settle becomes runtime revokes, then the records carry
 * it and the switch is folded away. */
void vmrevoke_recover(struct agent *a)
{
	struct loader_revoke *pend = NULL;
	uint64_t epoch;
	size_t n = 0, max = 0;

	if (!loader_caps_armed(a->ld, &epoch))
		return;
	if (loader_caps_pending(a->ld, NULL, 0, &max) || !max) {
		loader_caps_settle(a->ld);
		return;
	}
	pend = calloc(max, sizeof(*pend));
	if (!pend || loader_caps_pending(a->ld, pend, max, &n)) {
		free(pend);
		log_err("revoke-all %llu in force but unreadable: the switch stays armed",
			(unsigned long long)epoch);
		return;
	}
	for (size_t i = 0; i < n && i < max; i++) {
		uint32_t id = publish_vm_of_slot(a->ld, pend[i].slot);
		const struct vm_runtime *old;
		struct vm_runtime vr = {};

		if (!id)
			continue;
		old = registry_get(a->reg, id);
		if (old)
			vr = *old;
		vr.id = id;
		vr.cap_revoke |= pend[i].mask;
		vr.cap_grant &= ~pend[i].mask;
		for (int c = 0; c < RAYOS_CAP_COUNT; c++)
			if (pend[i].mask & (1ULL << c))
				vr.cap_until[c] = 0;
		if (registry_put(a->reg, &vr)) {
			log_err("VM %u: cannot keep the revoke-all in %s/registrations.json: the "
				"switch stays armed", id, a->opts->state_dir);
			free(pend);
			return;
		}
		vmdeleg_revoked(a, id, pend[i].mask);
		vmcaps_apply(a, &vr);
		log_info("VM %u: revoke-all %llu (from before the restart) kept", id,
			 (unsigned long long)epoch);
	}
	free(pend);
	loader_caps_settle(a->ld);
}
