// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Delegation of capabilities between VMs, the wiring: `cap delegate`,
 * `cap undelegate`, `cap tree`, the policy's "delegations" entries, the
 * state file (delegations.json, with the boot id: deadlines belong to one
 * boot) and the health tick that logs, audits and removes links the kernel
 * has already ended.  The kernel does the enforcing: each link is written to
 * rayos_cap_state (loader/capstate.h) and the BPF programs walk it, so a
 * revoke or an expiry anywhere in a chain ends everything below it at once,
 * with the agent dead.  The pure part (checks, walk, forest) is
 * agent/caps/deleg.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/agent_internal.h"
#include "agent/caps/caps.h"
#include "agent/caps/deleg.h"
#include "agent/control/control.h"
#include "agent/core/degraded.h"
#include "agent/core/log.h"
#include "agent/core/util.h"
#include "bpf/abi/policy.h"
#include "loader/capstate.h"
#include "loader/devices.h"
#include "loader/loader.h"

#define DELEG_FILE	"delegations.json"
#define BY_CLI		"control socket"

static void state_path(const struct agent *a, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", a->opts->state_dir, DELEG_FILE);
}

static int save(const struct agent *a)
{
	char path[PATH_MAX], boot[64], *text;
	int err;

	boot_id_read(boot, sizeof(boot));
	text = deleg_save(&a->deleg, boot);
	if (!text)
		return -ENOMEM;
	state_path(a, path, sizeof(path));
	err = file_write_atomic(path, text, strlen(text), 0600);
	if (err)
		log_err("cannot save delegations to %s: %s", path, strerror(-err));
	free(text);
	return err;
}

int vmdeleg_open(struct agent *a)
{
	char path[PATH_MAX], boot[64];
	size_t dropped = 0;
	char *text = NULL;
	int err;

	state_path(a, path, sizeof(path));
	err = file_read_small(path, 1 << 22, &text);
	if (err == -ENOENT)
		return 0;
	if (err) {
		log_err("cannot read %s: %s", path, strerror(-err));
		return err;
	}
	boot_id_read(boot, sizeof(boot));
	err = deleg_load(text, boot, &a->deleg, &dropped);
	free(text);
	if (err) {
		log_warn("%s is not a delegation list: ignoring it", path);
		return 0;
	}
	if (dropped)
		log_warn("%zu delegations with a deadline dropped: made in an earlier boot",
			 dropped);
	log_info("%zu capability delegations restored from %s", a->deleg.n, path);
	return 0;
}

void vmdeleg_close(struct agent *a)
{
	deleg_set_free(&a->deleg);
}

/* A VM's own grant, now, as its record holds it (a quarantined VM holds
 * nothing). */
static bool own_grant(void *ctx, uint32_t vm, uint32_t cap)
{
	struct agent *a = ctx;
	struct rayos_vm rec;

	if (cap >= RAYOS_CAP_COUNT || loader_vm_record(a->ld, vm, &rec) ||
	    (rec.flags & RAYOS_VMF_QUARANTINE))
		return false;
	return (rec.caps & (1ULL << cap)) || rec.cap_until_ns[cap] > clock_ns(CLOCK_BOOTTIME);
}

static bool holds(struct agent *a, uint32_t vm, uint32_t cap)
{
	return deleg_holds(&a->deleg, vm, cap, clock_ns(CLOCK_BOOTTIME), own_grant, a);
}

static cJSON *link_record(const char *event, const struct deleg_link *l, const char *by)
{
	cJSON *j = cJSON_CreateObject();

	cJSON_AddStringToObject(j, "event", event);
	cJSON_AddNumberToObject(j, "vm", l->to);
	cJSON_AddNumberToObject(j, "from", l->from);
	cJSON_AddStringToObject(j, "cap", policy_cap_name(l->cap));
	if (l->until) {
		char wall[32];

		vmcaps_wall_of(l->until, wall, sizeof(wall));
		cJSON_AddStringToObject(j, "until", wall);
		cJSON_AddNumberToObject(j, "until_boot_ns", (double)l->until);
	}
	cJSON_AddStringToObject(j, "by", by);
	return j;
}

/* Write one link (or, from 0, its absence) where the programs read it. */
static int kernel_link(struct agent *a, uint32_t to, uint32_t cap, uint32_t from,
		       uint64_t until)
{
	int err = loader_cap_link_set(a->ld, to, cap, from, until);

	/* A VM without a record has no slot and no link to clear. */
	return err == -ENOENT && !from ? 0 : err;
}

void vmdeleg_apply_all(struct agent *a)
{
	for (size_t i = 0; i < a->deleg.n; i++) {
		const struct deleg_link *l = &a->deleg.v[i];
		int err;

		if (l->spent)
			continue;
		err = kernel_link(a, l->to, l->cap, l->from, l->until);

		if (err)
			log_debug("delegation %u -> %u %s not in the kernel yet: %s", l->from,
				  l->to, policy_cap_name(l->cap), strerror(-err));
	}
}

/*
 * Remove the link of (to, cap) and every link below it: the kernel already
 * stopped honouring them (or is told to here, first), the agent forgets
 * them, logs and audits each.  why: the event of the first; those below are
 * "cap_delegation_cascade".
 */
static void end_links(struct agent *a, uint32_t to, uint32_t cap, const char *event,
		      const char *by, const char *reason)
{
	size_t idx[64], n;
	struct deleg_link ended[65];
	const struct deleg_link *top = deleg_find(&a->deleg, to, cap);
	char why[PATH_MAX + 64], chain[160];

	if (!top)
		return;
	ended[0] = *top;
	n = deleg_below(&a->deleg, to, cap, idx, 64);
	for (size_t i = 0; i < n; i++)
		ended[i + 1] = a->deleg.v[idx[i]];
	deleg_chain(&a->deleg, to, cap, chain, sizeof(chain));
	a->fine_stale = true;	/* limits taken through them: lifted (vmfine_refresh) */
	for (size_t i = 0; i <= n; i++) {
		cJSON *j = link_record(i ? "cap_delegation_cascade" : event, &ended[i], by);

		cJSON_AddStringToObject(j, "reason", i ? "a link above it ended" : reason);
		cJSON_AddStringToObject(j, "chain", chain);
		if (audit_write(a, j, why, sizeof(why)))
			log_warn("cannot audit the end of delegation %u -> %u %s: %s",
				 ended[i].from, ended[i].to, policy_cap_name(cap), why);
		log_info("delegation %u -> %u %s ended: %s", ended[i].from, ended[i].to,
			 policy_cap_name(cap), i ? "a link above it ended" : reason);
		kernel_link(a, ended[i].to, cap, 0, 0);
		if (ended[i].policy_spec && strcmp(event, "cap_undelegate_policy")) {
			/* Kept as spent: a reload does not apply it again. */
			ended[i].spent = true;
			deleg_put(&a->deleg, &ended[i]);
		} else {
			deleg_del(&a->deleg, ended[i].to, cap);
		}
	}
	save(a);
}

/* The common request fields: from, to, cap. */
static cJSON *parse_req(struct agent *a, const cJSON *req, struct deleg_link *l)
{
	cJSON *r;
	int bit;

	memset(l, 0, sizeof(*l));
	if (req_vm_id_at(req, "from", &l->from))
		return control_error("\"from\" must be a VM id (1..4294967295)");
	if (req_vm_id_at(req, "to", &l->to))
		return control_error("\"to\" must be a VM id (1..4294967295)");
	if ((r = req_cap(req, &bit)))
		return r;
	l->cap = (uint32_t)bit;
	if (!policy_vm(a, l->from))
		return control_error("unknown VM %u: it is not in the applied policy; nothing "
				     "changed", l->from);
	if (!policy_vm(a, l->to))
		return control_error("unknown VM %u: it is not in the applied policy; nothing "
				     "changed", l->to);
	return NULL;
}

/* A delegation that failed after its audit record: audit the failure. */
static cJSON *delegate_failed(struct agent *a, const struct deleg_link *l, const char *err)
{
	cJSON *f = link_record("cap_change_failed", l, BY_CLI);
	char why[PATH_MAX + 64];

	cJSON_AddStringToObject(f, "of", "cap_delegate");
	cJSON_AddStringToObject(f, "error", err);
	audit_write(a, f, why, sizeof(why));
	return control_error("%s", err);
}

/* cap.delegate {"from", "to", "cap", "expires" | "until"} */
cJSON *vmdeleg_delegate(struct agent *a, const cJSON *req)
{
	char err[PATH_MAX + 512], why[PATH_MAX + 64], chain[160], wall[32];
	struct fine_plan *plan = NULL;
	uint64_t delta = 0;
	size_t limited;
	struct deleg_link l;
	cJSON *r;
	int ret;

	r = parse_req(a, req, &l);
	if (r)
		return r;
	if ((r = req_expiry(req, &delta)))
		return r;
	if (quarantine_get(a, l.from) || quarantine_get(a, l.to))
		return control_error("VM %u is quarantined: it neither gives nor receives "
				     "capabilities; nothing changed",
				     quarantine_get(a, l.from) ? l.from : l.to);
	if (!holds(a, l.from, RAYOS_CAP_ADMIN))
		return control_error("VM %u does not hold CAP_ADMIN, which delegating takes; "
				     "nothing changed", l.from);
	if (!holds(a, l.from, l.cap))
		return control_error("VM %u does not hold %s now: it can only delegate what it "
				     "holds; nothing changed", l.from, policy_cap_name(l.cap));
	if (deleg_check(&a->deleg, l.from, l.to, l.cap, own_grant, a, err, sizeof(err)))
		return control_error("cannot delegate %s from %u to %u: %s; nothing changed",
				     policy_cap_name(l.cap), l.from, l.to, err);
	if (delta)
		l.until = clock_ns(CLOCK_BOOTTIME) + delta;
	/* The delegate takes the capability under the giver's limits: the VMs
	 * whose limits narrow are compiled now and published before the link
	 * reaches the kernel, so it never holds the capability wider. */
	if (vmfine_plan_link(a, &l, &plan, err, sizeof(err)))
		return control_error("cannot delegate %s from %u to %u: with %u's limits: %s; "
				     "nothing changed", policy_cap_name(l.cap), l.from, l.to,
				     l.from, err);
	limited = vmfine_plan_size(plan);

	ret = audit_write(a, link_record("cap_delegate", &l, BY_CLI), why, sizeof(why));
	if (ret) {
		vmfine_plan_free(plan);
		degraded_set(&a->deg, DEG_AUDIT_UNWRITABLE, "%s", why);
		return control_error("refused: the audit record cannot be written and synced (%s); "
				     "nothing changed", why);
	}
	ret = vmfine_plan_publish(a, plan, "cap delegate", why, sizeof(why));
	vmfine_plan_free(plan);
	if (ret) {
		snprintf(err, sizeof(err), "cannot publish the delegate's limits: %s; nothing "
			 "changed", why);
		return delegate_failed(a, &l, err);
	}
	ret = deleg_put(&a->deleg, &l);
	if (!ret && (ret = save(a)))
		deleg_del(&a->deleg, l.to, l.cap);
	if (!ret && (ret = kernel_link(a, l.to, l.cap, l.from, l.until))) {
		deleg_del(&a->deleg, l.to, l.cap);
		save(a);
	}
	if (ret) {
		snprintf(err, sizeof(err), "cannot record the delegation: %s; nothing changed",
			 strerror(-ret));
		a->fine_stale |= limited > 0;	/* the next tick lifts the limits */
		return delegate_failed(a, &l, err);
	}
	deleg_chain(&a->deleg, l.to, l.cap, chain, sizeof(chain));
	log_info("delegated %s: %s%s", policy_cap_name(l.cap), chain,
		 l.until ? " (with a deadline)" : "");
	r = cJSON_CreateObject();
	cJSON_AddBoolToObject(r, "ok", 1);
	cJSON_AddNumberToObject(r, "from", l.from);
	cJSON_AddNumberToObject(r, "to", l.to);
	cJSON_AddStringToObject(r, "cap", policy_cap_name(l.cap));
	cJSON_AddStringToObject(r, "chain", chain);
	/* VMs whose limits narrowed: the delegate, and those below it. */
	cJSON_AddNumberToObject(r, "limited", (double)limited);
	if (l.until) {
		vmcaps_wall_of(l.until, wall, sizeof(wall));
		cJSON_AddStringToObject(r, "until", wall);
		cJSON_AddNumberToObject(r, "seconds_left", (double)(delta / CAPS_NS_PER_S));
	}
	return r;
}

/* cap.undelegate {"from", "to", "cap"}: the link and everything below it. */
cJSON *vmdeleg_undelegate(struct agent *a, const cJSON *req)
{
	const struct deleg_link *cur;
	struct deleg_link l;
	size_t idx[64], below;
	cJSON *r;

	r = parse_req(a, req, &l);
	if (r)
		return r;
	cur = deleg_find(&a->deleg, l.to, l.cap);
	if (!cur || cur->from != l.from)
		return control_error("VM %u does not hold %s by delegation from VM %u; nothing "
				     "changed", l.to, policy_cap_name(l.cap), l.from);
	below = deleg_below(&a->deleg, l.to, l.cap, idx, 64);
	end_links(a, l.to, l.cap, "cap_undelegate", BY_CLI, "undelegated");
	vmfine_refresh(a);	/* what came with the link goes with it, now */
	r = cJSON_CreateObject();
	cJSON_AddBoolToObject(r, "ok", 1);
	cJSON_AddNumberToObject(r, "from", l.from);
	cJSON_AddNumberToObject(r, "to", l.to);
	cJSON_AddStringToObject(r, "cap", policy_cap_name(l.cap));
	cJSON_AddNumberToObject(r, "ended_below", (double)below);
	return r;
}

static const char *cap_name(int cap)
{
	return policy_cap_name(cap);
}

/* cap.tree {"id"?} */
cJSON *vmdeleg_tree(struct agent *a, const cJSON *req)
{
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(req, "id");
	uint32_t only = 0;
	cJSON *r;

	if (id) {
		if (req_vm_id(req, &only))
			return control_error("\"id\" must be a VM id (1..4294967295)");
		if (!policy_vm(a, only))
			return control_error("unknown VM %u: it is not in the applied policy", only);
	}
	r = cJSON_CreateObject();
	cJSON_AddBoolToObject(r, "ok", 1);
	cJSON_AddItemToObject(r, "trees", deleg_forest(&a->deleg, clock_ns(CLOCK_BOOTTIME),
						       own_grant, a, only, cap_name));
	return r;
}

/*
 * Health tick: links the kernel no longer honours (expired, or a delegator
 * that lost the capability, left the policy or was quarantined) are logged,
 * audited and removed with everything below them.  The kernel ended them
 * on time already; this only tidies.
 */
void vmdeleg_tidy(struct agent *a)
{
	uint64_t now = clock_ns(CLOCK_BOOTTIME);
	bool again = true;

	while (again) {
		again = false;
		for (size_t i = 0; i < a->deleg.n; i++) {
			struct deleg_link l = a->deleg.v[i];
			char reason[160];

			if (l.spent)
				continue;
			if (l.until && l.until <= now)
				snprintf(reason, sizeof(reason), "expired %.1f s ago",
					 (double)(now - l.until) / 1e9);
			else if (!holds(a, l.from, l.cap))
				snprintf(reason, sizeof(reason), "VM %u no longer holds %s", l.from,
					 policy_cap_name(l.cap));
			else
				continue;
			end_links(a, l.to, l.cap, l.until && l.until <= now ?
				  "cap_delegation_expired" : "cap_delegation_cascade",
				  "kernel", reason);
			again = true;
			break;
		}
	}
}

uint64_t vmdeleg_held(struct agent *a, uint32_t vm, bool temporary)
{
	uint64_t mask = 0, now = clock_ns(CLOCK_BOOTTIME);

	for (uint32_t c = 0; c < RAYOS_CAP_COUNT; c++) {
		const struct deleg_link *l = deleg_find(&a->deleg, vm, c);

		if (!l || (temporary && !l->until) || (l->until && l->until <= now))
			continue;
		if (holds(a, l->from, c))
			mask |= 1ULL << c;
	}
	return mask;
}

void vmdeleg_list(struct agent *a, uint32_t vm, uint64_t own, cJSON *arr)
{
	uint64_t held = vmdeleg_held(a, vm, false), now = clock_ns(CLOCK_BOOTTIME);

	for (uint32_t c = 0; c < RAYOS_CAP_COUNT; c++) {
		const struct deleg_link *l = deleg_find(&a->deleg, vm, c), *x;
		uint64_t end = 0;
		uint32_t cur = vm;
		struct rayos_vm rec;
		char chain[160], wall[32], left[32];
		cJSON *o;

		if (!(held & (1ULL << c)) || (own & (1ULL << c)) || !l)
			continue;
		/* It ends with the first link up the chain to end, or with the
		 * root's temporary grant. */
		for (int d = 0; d < RAYOS_CAP_MAX_DEPTH && (x = deleg_find(&a->deleg, cur, c)); d++) {
			if (x->until && (!end || x->until < end))
				end = x->until;
			cur = x->from;
		}
		if (!loader_vm_record(a->ld, cur, &rec) && !(rec.caps & (1ULL << c)) &&
		    rec.cap_until_ns[c] && (!end || rec.cap_until_ns[c] < end))
			end = rec.cap_until_ns[c];
		deleg_chain(&a->deleg, vm, c, chain, sizeof(chain));
		o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "cap", policy_cap_name(c));
		cJSON_AddStringToObject(o, "kind", "delegated");
		cJSON_AddNumberToObject(o, "from", l->from);
		cJSON_AddStringToObject(o, "chain", chain);
		if (end > now) {
			vmcaps_wall_of(end, wall, sizeof(wall));
			caps_format_left(end - now, left, sizeof(left));
			cJSON_AddStringToObject(o, "until", wall);
			cJSON_AddStringToObject(o, "left", left);
			cJSON_AddNumberToObject(o, "seconds_left", (double)((end - now) / CAPS_NS_PER_S));
		}
		cJSON_AddItemToArray(arr, o);
	}
}

size_t vmdeleg_revoked(struct agent *a, uint32_t vm, uint64_t mask)
{
	size_t idx[64], n = 0;

	for (uint32_t c = 0; c < RAYOS_CAP_COUNT; c++) {
		if (!(mask & (1ULL << c)) || !deleg_find(&a->deleg, vm, c))
			continue;
		n += 1 + deleg_below(&a->deleg, vm, c, idx, 64);
		end_links(a, vm, c, "cap_delegation_revoked", "revoke-all",
			  "revoke-all took it from the delegate");
	}
	return n;
}

/* The link a policy entry asks for, as its spec (deleg_link.policy_spec). */
static uint64_t entry_spec(const struct policy_deleg *d)
{
	if (d->expires_ns)
		return d->expires_ns;
	if (d->until_wall_ns)
		return d->until_wall_ns | DELEG_SPEC_UNTIL;
	return DELEG_SPEC_FOREVER;
}

static const struct policy_deleg *entry_of(const struct agent *a, const struct deleg_link *l)
{
	for (size_t i = 0; a->set && i < a->set->nr_vms; i++) {
		const struct policy_vm *pv = &a->set->vms[i];

		if (pv->id != l->from || pv->quarantined)
			continue;
		for (size_t k = 0; k < pv->nr_deleg; k++)
			if (pv->deleg[k].to == l->to && pv->deleg[k].cap == l->cap)
				return &pv->deleg[k];
	}
	return NULL;
}

/*
 * After a publish: each "delegations" entry becomes a link once (its spec is
 * remembered, spent or not): a reload keeps the deadline running, a changed
 * entry starts again, and a removed entry ends its link and those below.
 * The policy was checked as a whole when it was built (agent/policy), so
 * only an "until" already past is skipped here.
 */
void vmdeleg_policy(struct agent *a)
{
	uint64_t boot = clock_ns(CLOCK_BOOTTIME), wall = clock_ns(CLOCK_REALTIME);
	char why[PATH_MAX + 64], by[PATH_MAX + 16];
	bool changed = false;

	/* Links of entries that are gone (or changed giver). */
	for (size_t i = 0; i < a->deleg.n;) {
		struct deleg_link l = a->deleg.v[i];
		const struct policy_deleg *d = l.policy_spec ? entry_of(a, &l) : NULL;

		if (!l.policy_spec || (d && entry_spec(d) == l.policy_spec)) {
			i++;
			continue;
		}
		if (l.spent || d) {	/* a changed entry is applied below */
			deleg_del(&a->deleg, l.to, l.cap);
			if (!l.spent)
				kernel_link(a, l.to, l.cap, 0, 0);
			changed = true;
			continue;
		}
		end_links(a, l.to, l.cap, "cap_undelegate_policy", "policy",
			  "its entry left the policy");
		i = 0;	/* end_links reorders the set */
	}
	for (size_t i = 0; a->set && i < a->set->nr_vms; i++) {
		const struct policy_vm *pv = &a->set->vms[i];

		if (pv->quarantined)
			continue;
		snprintf(by, sizeof(by), "policy %s", pv->source);
		for (size_t k = 0; k < pv->nr_deleg; k++) {
			const struct policy_deleg *d = &pv->deleg[k];
			const struct deleg_link *cur = deleg_find_any(&a->deleg, d->to, d->cap);
			struct deleg_link l = { .from = pv->id, .to = d->to, .cap = d->cap,
						.policy_spec = entry_spec(d) };

			if (cur && cur->from == l.from && cur->policy_spec == l.policy_spec)
				continue;	/* applied before (running or spent) */
			if (d->expires_ns)
				l.until = boot + d->expires_ns;
			else if (d->until_wall_ns > wall && d->until_wall_ns - wall <= CAPS_TEMP_MAX_NS)
				l.until = boot + (d->until_wall_ns - wall);
			else if (d->until_wall_ns) {
				log_warn("VM %u: %s: delegation of %s to VM %u: \"until\" is past or "
					 "beyond 366 days: not made", pv->id, pv->source,
					 policy_cap_name(d->cap), d->to);
				l.spent = true;
			}
			if (cur && !cur->spent)
				log_warn("VM %u's %s from VM %u is replaced by %s's entry", d->to,
					 policy_cap_name(d->cap), cur->from, pv->source);
			if (!l.spent && audit_write(a, link_record("cap_delegate", &l, by), why,
						     sizeof(why))) {
				/* Write-ahead: no record, no link; retried next publish. */
				degraded_set(&a->deg, DEG_AUDIT_UNWRITABLE, "%s", why);
				log_err("VM %u: delegation of %s to VM %u from %s not made: %s",
					pv->id, policy_cap_name(d->cap), d->to, pv->source, why);
				continue;
			}
			if (deleg_put(&a->deleg, &l))
				continue;
			changed = true;
			if (!l.spent)
				log_info("VM %u: %s delegates %s to VM %u%s", pv->id, pv->source,
					 policy_cap_name(d->cap), d->to,
					 l.until ? " (with a deadline)" : "");
		}
	}
	if (changed)
		save(a);
}
