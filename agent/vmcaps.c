// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Temporary capability grants, the control-socket side: `cap grant-temp`
 * writes a CLOCK_BOOTTIME deadline into the VM's record, where the BPF
 * programs compare it (bpf/include/caps.bpf.h), so the grant ends on time
 * with the agent stopped or killed.  The agent keeps the deadline in the
 * runtime registry (restart, policy reload), logs and audits the expiry and
 * tidies the record afterwards; it never has to act for the grant to end.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "agent/agent_internal.h"
#include "agent/audittrail.h"
#include "agent/caps/caps.h"
#include "agent/control/control.h"
#include "agent/core/degraded.h"
#include "agent/core/log.h"
#include "agent/vm/registry.h"
#include "bpf/abi/policy.h"
#include "loader/devices.h"
#include "loader/loader.h"

static uint64_t clock_ns(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return (uint64_t)ts.tv_sec * CAPS_NS_PER_S + (uint64_t)ts.tv_nsec;
}

/* A boot-clock deadline as the wall-clock time it corresponds to now. */
void vmcaps_wall_of(uint64_t until_boot, char *buf, size_t len)
{
	uint64_t boot = clock_ns(CLOCK_BOOTTIME), wall = clock_ns(CLOCK_REALTIME);
	time_t t = (time_t)((wall + (until_boot - boot)) / CAPS_NS_PER_S);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Append one record: 0, or -errno with why filled in. */
int audit_write(const struct agent *a, cJSON *j, char *why, size_t len)
{
	return audittrail_write(a, j, why, len);
}

cJSON *req_vm_cap(const cJSON *req, uint32_t *id, int *bit)
{
	if (req_vm_id(req, id))
		return control_error("\"id\" must be a VM id (1..4294967295)");
	return req_cap(req, bit);
}

cJSON *req_expiry(const cJSON *req, uint64_t *delta)
{
	const cJSON *exp = cJSON_GetObjectItemCaseSensitive(req, "expires");
	const cJSON *until = cJSON_GetObjectItemCaseSensitive(req, "until");
	char err[256];

	if ((exp && !cJSON_IsString(exp)) || (until && !cJSON_IsString(until)))
		return control_error("\"expires\" and \"until\" are strings");
	if (exp && until)
		return control_error("give --expires or --until, not both");
	if (exp && caps_parse_duration(exp->valuestring, delta, err, sizeof(err)))
		return control_error("--expires: %s; nothing changed", err);
	if (until && caps_parse_until(until->valuestring, clock_ns(CLOCK_REALTIME), delta, err,
				      sizeof(err)))
		return control_error("%s; nothing changed", err);
	return NULL;
}

void vmcaps_undo(struct agent *a, cJSON *f, const char *of, const char *err,
		 const struct vm_runtime *prev, uint32_t id)
{
	char why[PATH_MAX + 64];

	if (f) {
		cJSON_AddStringToObject(f, "of", of);
		cJSON_AddStringToObject(f, "error", err);
	}
	audit_write(a, f, why, sizeof(why));
	if (prev)
		registry_put(a->reg, prev);
	else
		registry_del(a->reg, id);
}

static cJSON *temp_record(const char *event, uint32_t vm, int cap, uint64_t until_boot,
			  const char *by)
{
	cJSON *j = cJSON_CreateObject();
	char wall[32];

	if (!j)
		return NULL;
	vmcaps_wall_of(until_boot, wall, sizeof(wall));
	cJSON_AddStringToObject(j, "event", event);
	cJSON_AddNumberToObject(j, "vm", vm);
	cJSON_AddStringToObject(j, "cap", policy_cap_name(cap));
	cJSON_AddStringToObject(j, "until", wall);
	cJSON_AddNumberToObject(j, "until_boot_ns", (double)until_boot);
	cJSON_AddStringToObject(j, "by", by);
	return j;
}

int vmcaps_apply(struct agent *a, const struct vm_runtime *vr)
{
	struct rayos_vm rec;
	uint64_t caps;

	if (loader_vm_record(a->ld, vr->id, &rec))
		return -ENOENT;
	if (rec.flags & RAYOS_VMF_QUARANTINE)
		return 0;	/* a quarantined VM gets no capabilities */
	caps = (rec.caps | vr->cap_grant) & ~vr->cap_revoke;
	if (caps == rec.caps && !memcmp(rec.cap_until_ns, vr->cap_until, sizeof(vr->cap_until)))
		return 0;
	return loader_vm_set_grants(a->ld, vr->id, caps, vr->cap_until);
}

/* cap.grant_temp {"id", "cap", "expires" | "until"}: a grant with a
 * deadline; audited before it happens. */
cJSON *vmcaps_grant_temp(struct agent *a, const cJSON *req)
{
	const cJSON *cap = cJSON_GetObjectItemCaseSensitive(req, "cap");
	struct vm_runtime vr = {}, prev = {};
	const struct vm_runtime *old;
	char err[PATH_MAX + 256], why[PATH_MAX + 64], wall[32], left[32];
	uint64_t delta = CAPS_TEMP_DEFAULT_NS, deadline;
	struct rayos_vm rec;
	bool had = false;
	int bit, ret;
	cJSON *r;

	r = req_vm_cap(req, &vr.id, &bit);
	if (r)
		return r;
	if ((r = req_expiry(req, &delta)))
		return r;
	if (!policy_vm(a, vr.id))
		return control_error("unknown VM %u: it is not in the applied policy", vr.id);
	if (quarantine_get(a, vr.id))
		return control_error("VM %u is quarantined: give it a policy before changing its "
				     "capabilities", vr.id);
	if (loader_vm_record(a->ld, vr.id, &rec))
		return control_error("VM %u has no record: is it in the policy?", vr.id);
	if (rec.caps & (1ULL << bit))
		return control_error("VM %u already holds %s without a deadline: `cap revoke %u "
				     "%s` first to make it temporary; nothing changed", vr.id,
				     cap->valuestring, vr.id, cap->valuestring);
	/* The deadline is fixed here, on the boot clock: wall-clock changes
	 * later neither stretch nor shorten it. */
	deadline = clock_ns(CLOCK_BOOTTIME) + delta;

	ret = audit_write(a, temp_record("cap_grant_temp", vr.id, bit, deadline, "control socket"),
			  why, sizeof(why));
	if (ret) {
		degraded_set(&a->deg, DEG_AUDIT_UNWRITABLE, "%s", why);
		return control_error("refused: the audit record cannot be written and synced (%s); "
				     "nothing changed", why);
	}
	old = registry_get(a->reg, vr.id);
	if (old) {
		vr = prev = *old;
		had = true;
	}
	vr.cap_until[bit] = deadline;
	ret = registry_put(a->reg, &vr);
	if (ret)
		snprintf(err, sizeof(err), "refused: cannot save the grant in %s/registrations.json: "
			 "%s; nothing changed", a->opts->state_dir, strerror(-ret));
	else if ((ret = vmcaps_apply(a, &vr)))
		snprintf(err, sizeof(err), "VM %u: cannot update its record: %s", vr.id,
			 strerror(-ret));
	if (ret) {
		vmcaps_undo(a, temp_record("cap_change_failed", vr.id, bit, deadline,
					   "control socket"), "cap_grant_temp", err,
			    had ? &prev : NULL, vr.id);
		return control_error("%s", err);
	}
	vmcaps_wall_of(deadline, wall, sizeof(wall));
	caps_format_left(delta, left, sizeof(left));
	log_info("VM %u: granted %s until %s (%s; boot clock %llu ns)", vr.id, cap->valuestring,
		 wall, left, (unsigned long long)deadline);
	r = cJSON_CreateObject();
	cJSON_AddBoolToObject(r, "ok", 1);
	cJSON_AddNumberToObject(r, "id", vr.id);
	cJSON_AddStringToObject(r, "cap", cap->valuestring);
	cJSON_AddStringToObject(r, "until", wall);
	cJSON_AddNumberToObject(r, "seconds_left", (double)(delta / CAPS_NS_PER_S));
	return r;
}

/* cap.list {"id"}: what the VM holds now, as the kernel sees it. */
cJSON *vmcaps_list(struct agent *a, const cJSON *req)
{
	uint64_t now = clock_ns(CLOCK_BOOTTIME), own = 0;
	struct rayos_vm rec;
	uint32_t id;
	cJSON *r, *arr;

	if (req_vm_id(req, &id))
		return control_error("\"id\" must be a VM id (1..4294967295)");
	if (!policy_vm(a, id) || loader_vm_record(a->ld, id, &rec))
		return control_error("unknown VM %u: it is not in the applied policy", id);
	r = cJSON_CreateObject();
	cJSON_AddBoolToObject(r, "ok", 1);
	cJSON_AddNumberToObject(r, "id", id);
	cJSON_AddBoolToObject(r, "quarantined", !!(rec.flags & RAYOS_VMF_QUARANTINE));
	arr = cJSON_AddArrayToObject(r, "capabilities");
	for (int c = 0; c < RAYOS_CAP_COUNT; c++) {
		bool perm = rec.caps & (1ULL << c);
		bool temp = !perm && rec.cap_until_ns[c] > now;
		cJSON *o;
		char wall[32], left[32];

		if (!perm && !temp)
			continue;
		own |= 1ULL << c;
		o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "cap", policy_cap_name(c));
		cJSON_AddStringToObject(o, "kind", perm ? "permanent" : "temporary");
		if (temp) {
			vmcaps_wall_of(rec.cap_until_ns[c], wall, sizeof(wall));
			caps_format_left(rec.cap_until_ns[c] - now, left, sizeof(left));
			cJSON_AddStringToObject(o, "until", wall);
			cJSON_AddStringToObject(o, "left", left);
			cJSON_AddNumberToObject(o, "seconds_left",
						(double)((rec.cap_until_ns[c] - now) / CAPS_NS_PER_S));
		}
		cJSON_AddItemToArray(arr, o);
	}
	if (!(rec.flags & RAYOS_VMF_QUARANTINE))
		vmdeleg_list(a, id, own, arr);	/* what it holds only by a link */
	cJSON_AddItemToObject(r, "limits", vmfine_json(a, policy_vm(a, id)) ?: cJSON_CreateObject());
	return r;
}

/*
 * After a publish: turn the policy's "temporary_capabilities" entries into
 * deadlines, each once (its spec is remembered in the registry): a reload
 * keeps the clock running, a changed entry starts it again, and a removed
 * entry ends the grant it made.  An "until" already past grants nothing.
 */
void vmcaps_policy(struct agent *a)
{
	uint64_t boot = clock_ns(CLOCK_BOOTTIME), wall = clock_ns(CLOCK_REALTIME);
	char why[PATH_MAX + 64], by[PATH_MAX + 16];

	for (size_t i = 0; a->set && i < a->set->nr_vms; i++) {
		const struct policy_vm *pv = &a->set->vms[i];
		const struct vm_runtime *old = registry_get(a->reg, pv->id);
		struct vm_runtime vr = { .id = pv->id };
		bool changed = false;

		if (pv->quarantined)
			continue;
		if (old)
			vr = *old;
		snprintf(by, sizeof(by), "policy %s", pv->source);
		for (int c = 0; c < RAYOS_CAP_COUNT; c++) {
			uint64_t spec = pv->temp_expires_ns[c] ? pv->temp_expires_ns[c]
				      : pv->temp_until_wall_ns[c]
				      ? pv->temp_until_wall_ns[c] | REGISTRY_SPEC_UNTIL : 0;
			uint64_t deadline = 0;

			if (spec == vr.policy_spec[c])
				continue;
			if (!spec) {	/* the entry is gone: so is its grant */
				vr.policy_spec[c] = 0;
				vr.cap_until[c] = 0;
				changed = true;
				continue;
			}
			if (pv->temp_expires_ns[c])
				deadline = boot + pv->temp_expires_ns[c];
			else if (pv->temp_until_wall_ns[c] > wall &&
				 pv->temp_until_wall_ns[c] - wall <= CAPS_TEMP_MAX_NS)
				deadline = boot + (pv->temp_until_wall_ns[c] - wall);
			else
				log_warn("VM %u: %s: temporary %s \"until\" is %s: not granted",
					 pv->id, pv->source, policy_cap_name(c),
					 pv->temp_until_wall_ns[c] <= wall ? "past"
									: "beyond 366 days");
			if (deadline && audit_write(a, temp_record("cap_grant_temp", pv->id, c,
								  deadline, by), why, sizeof(why))) {
				/* Write-ahead: no record, no grant; retried next publish. */
				degraded_set(&a->deg, DEG_AUDIT_UNWRITABLE, "%s", why);
				log_err("VM %u: temporary %s from %s not granted: %s", pv->id,
					policy_cap_name(c), pv->source, why);
				continue;
			}
			vr.policy_spec[c] = spec;
			vr.cap_until[c] = deadline;
			changed = true;
			if (deadline)
				log_info("VM %u: %s grants %s for %.0f s", pv->id, pv->source,
					 policy_cap_name(c), (double)(deadline - boot) / 1e9);
		}
		if (changed && registry_put(a->reg, &vr))
			log_err("VM %u: cannot save its temporary grants", pv->id);
	}
}

/* Health tick: the kernel already stopped honouring expired grants; log
 * and audit each once, and clear it from the registry and the record. */
void vmcaps_tidy(struct agent *a)
{
	uint64_t now = clock_ns(CLOCK_BOOTTIME);
	char why[PATH_MAX + 64];

	for (size_t i = 0; i < registry_count(a->reg); i++) {
		struct vm_runtime vr = *registry_at(a->reg, i);
		bool changed = false;

		for (int c = 0; c < RAYOS_CAP_COUNT; c++) {
			if (!vr.cap_until[c] || vr.cap_until[c] > now)
				continue;
			log_info("VM %u: temporary %s expired %.1f s ago (the kernel ended it at its "
				 "deadline)", vr.id, policy_cap_name(c),
				 (double)(now - vr.cap_until[c]) / 1e9);
			if (audit_write(a, temp_record("cap_expired", vr.id, c, vr.cap_until[c],
						       "deadline"), why, sizeof(why)))
				log_warn("VM %u: cannot audit the expiry of %s: %s", vr.id,
					 policy_cap_name(c), why);
			vr.cap_until[c] = 0;
			changed = true;
		}
		if (changed && !registry_put(a->reg, &vr))
			vmcaps_apply(a, &vr);
	}
}
