// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Fine-grained capabilities, the control-socket side: `cap fine-grain`
 * limits a VM's CAP_NETWORK to destination ports and a bandwidth and its
 * CAP_GPU to listed nodes.  A limit is not a map of its own: it is merged
 * into the VM's policy before every compile (vmfine_overlay), where the
 * compiler turns ports into deny rules that win over the firewall's,
 * nodes into marked device entries and the rate into the lower of the
 * policy's and the limit's (agent/policy/policy_compile.c).  So the kernel
 * enforces firewall ∩ limit with the lookups it already does, and a limit
 * lives through restarts (registrations.json) and reloads (the overlay).
 * A change compiles and publishes that one VM (publish_one), so it costs
 * the same on a host of 4096 VMs as on a host of one.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/agent_internal.h"
#include "agent/audittrail.h"
#include "agent/control/control.h"
#include "agent/core/degraded.h"
#include "agent/core/log.h"
#include "agent/policy/limits.h"
#include "agent/core/digest.h"
#include "agent/policy/policy.h"
#include "agent/vm/ifwatch.h"
#include "agent/vm/registry.h"
#include "loader/publish.h"

static const struct caps_limits no_limits;

static const struct caps_limits *runtime_limits(const struct agent *a, uint32_t id)
{
	const struct vm_runtime *vr = registry_get(a->reg, id);

	return vr ? &vr->limits : &no_limits;
}

void vmfine_overlay(const struct agent *a, struct policy_set *set)
{
	for (size_t i = 0; set && i < set->nr_vms; i++) {
		struct policy_vm *pv = &set->vms[i];

		if (pv->quarantined)
			continue;	/* deny-all already */
		caps_limits_merge(&pv->policy_limits, runtime_limits(a, pv->id), &pv->limits);
	}
}

/* The part of l that limits cap, in the spellings of the CLI. */
static void limits_of_cap(cJSON *o, const struct caps_limits *l, int cap)
{
	char buf[CAPS_MAX_PORT_RANGES * 12 + 8];

	if (cap == RAYOS_CAP_NETWORK) {
		if (l->has_ports) {
			caps_ports_format(&l->ports, buf, sizeof(buf));
			cJSON_AddStringToObject(o, "allow_ports", buf);
		}
		if (l->rate_bytes) {
			caps_rate_format(l->rate_bytes, buf, sizeof(buf));
			cJSON_AddStringToObject(o, "max_bandwidth", buf);
			cJSON_AddNumberToObject(o, "max_bandwidth_bytes", (double)l->rate_bytes);
		}
	} else if (l->has_nodes) {
		cJSON *arr = cJSON_AddArrayToObject(o, "nodes");

		for (uint32_t i = 0; i < l->nr_nodes; i++) {
			snprintf(buf, sizeof(buf), "%u:%u", l->nodes[i].major, l->nodes[i].minor);
			cJSON_AddItemToArray(arr, cJSON_CreateString(buf));
		}
	}
}

static bool cap_limited(const struct caps_limits *l, int cap)
{
	return cap == RAYOS_CAP_NETWORK ? l->has_ports || l->rate_bytes : l->has_nodes;
}

cJSON *vmfine_json(const struct agent *a, const struct policy_vm *vm)
{
	static const int caps[] = { RAYOS_CAP_NETWORK, RAYOS_CAP_GPU };
	const struct caps_limits *rt = runtime_limits(a, vm->id);
	cJSON *r = cJSON_CreateObject();
	char buf[64];

	for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
		int c = caps[i];
		cJSON *o, *part;

		if (!cap_limited(&vm->limits, c) && !(c == RAYOS_CAP_NETWORK &&
		    (vm->fw[RAYOS_DIR_IN].rate_bytes || vm->fw[RAYOS_DIR_OUT].rate_bytes)))
			continue;
		o = cJSON_AddObjectToObject(r, policy_cap_name(c));
		limits_of_cap(o, &vm->limits, c);	/* effective */
		if (cap_limited(&vm->policy_limits, c)) {
			part = cJSON_AddObjectToObject(o, "from_policy");
			limits_of_cap(part, &vm->policy_limits, c);
		}
		if (cap_limited(rt, c)) {
			part = cJSON_AddObjectToObject(o, "from_cap_fine_grain");
			limits_of_cap(part, rt, c);
		}
		if (c != RAYOS_CAP_NETWORK)
			continue;
		/* What the shapers and policers enforce: the lower of the two. */
		part = cJSON_AddObjectToObject(o, "bandwidth");
		for (int d = 0; d < RAYOS_DIR_MAX; d++) {
			cJSON *dir = cJSON_AddObjectToObject(part, d == RAYOS_DIR_IN ? "in" : "out");
			uint64_t burst, eff = policy_vm_rate(vm, d, &burst);

			caps_rate_format(vm->fw[d].rate_bytes, buf, sizeof(buf));
			cJSON_AddStringToObject(dir, "policy", buf);
			caps_rate_format(vm->limits.rate_bytes, buf, sizeof(buf));
			cJSON_AddStringToObject(dir, "limit", buf);
			caps_rate_format(eff, buf, sizeof(buf));
			cJSON_AddStringToObject(dir, "effective", buf);
			cJSON_AddNumberToObject(dir, "effective_bytes", (double)eff);
			cJSON_AddStringToObject(dir, "from", !eff ? "none" :
						eff == vm->fw[d].rate_bytes ? "policy" : "limit");
		}
	}
	if (!r->child) {
		cJSON_Delete(r);
		return NULL;
	}
	return r;
}

static cJSON *fine_record(const char *event, uint32_t vm, int cap, const struct caps_limits *l,
			  const char *by)
{
	cJSON *j = cJSON_CreateObject();

	if (!j)
		return NULL;
	cJSON_AddStringToObject(j, "event", event);
	cJSON_AddNumberToObject(j, "vm", vm);
	cJSON_AddStringToObject(j, "cap", policy_cap_name(cap));
	if (l)
		limits_of_cap(j, l, cap);
	cJSON_AddStringToObject(j, "by", by);
	return j;
}

/* The request's parameters for cap: into *l (the cap's part replaced, the
 * rest kept).  NULL, or the error reply. */
static cJSON *parse_params(const cJSON *req, int cap, const char *cap_name,
			   struct caps_limits *l, bool *clear)
{
	const cJSON *ports = cJSON_GetObjectItemCaseSensitive(req, "allow_ports");
	const cJSON *rate = cJSON_GetObjectItemCaseSensitive(req, "max_bandwidth");
	const cJSON *nodes = cJSON_GetObjectItemCaseSensitive(req, "nodes");
	const cJSON *clr = cJSON_GetObjectItemCaseSensitive(req, "clear"), *n;
	char err[256];

	*clear = cJSON_IsTrue(clr);
	if ((ports && !cJSON_IsString(ports)) || (rate && !cJSON_IsString(rate)) ||
	    (nodes && !cJSON_IsArray(nodes)) || (clr && !cJSON_IsBool(clr)))
		return control_error("\"allow_ports\" and \"max_bandwidth\" are strings, \"nodes\" "
				     "an array of strings, \"clear\" a boolean");
	if (*clear && (ports || rate || nodes))
		return control_error("--clear takes no limits with it; nothing changed");
	if (!*clear && !ports && !rate && !nodes)
		return control_error("give --allow-ports and/or --max-bandwidth (CAP_NETWORK), "
				     "--nodes (CAP_GPU), or --clear");
	if (cap != RAYOS_CAP_NETWORK && cap != RAYOS_CAP_GPU)
		return control_error("%s has no fine-grained limits (CAP_NETWORK: --allow-ports, "
				     "--max-bandwidth; CAP_GPU: --nodes); nothing changed", cap_name);
	if (cap == RAYOS_CAP_GPU && (ports || rate))
		return control_error("--allow-ports and --max-bandwidth limit CAP_NETWORK, not "
				     "CAP_GPU (it takes --nodes); nothing changed");
	if (cap == RAYOS_CAP_NETWORK && nodes)
		return control_error("--nodes limits CAP_GPU, not CAP_NETWORK (it takes "
				     "--allow-ports, --max-bandwidth); nothing changed");
	if (*clear) {
		if (cap == RAYOS_CAP_NETWORK) {
			l->has_ports = false;
			memset(&l->ports, 0, sizeof(l->ports));
			l->rate_bytes = 0;
		} else {
			l->has_nodes = false;
			l->nr_nodes = 0;
		}
		return NULL;
	}
	if (ports) {
		if (caps_parse_ports(ports->valuestring, &l->ports, err, sizeof(err)))
			return control_error("--allow-ports: %s; nothing changed", err);
		l->has_ports = true;
	}
	if (rate && caps_parse_rate(rate->valuestring, &l->rate_bytes, err, sizeof(err)))
		return control_error("--max-bandwidth: %s; nothing changed", err);
	if (nodes) {
		struct caps_limits tmp = { 0 };

		if (!cJSON_GetArraySize(nodes))
			return control_error("--nodes: empty list; nothing changed");
		cJSON_ArrayForEach(n, nodes) {
			struct caps_node node;

			if (!cJSON_IsString(n))
				return control_error("--nodes: items are strings MAJOR:MINOR");
			if (caps_parse_node(n->valuestring, &node, err, sizeof(err)))
				return control_error("--nodes: %s; nothing changed", err);
			if (node.major != 226)
				return control_error("--nodes: %s is not a DRI node (major 226): "
						     "CAP_GPU grants nothing else; nothing changed",
						     n->valuestring);
			if (caps_nodes_add(&tmp, node))
				return control_error("--nodes: more than %d nodes; nothing changed",
						     CAPS_MAX_NODES);
		}
		l->has_nodes = true;
		l->nr_nodes = tmp.nr_nodes;
		memcpy(l->nodes, tmp.nodes, sizeof(l->nodes));
	}
	return NULL;
}

/* Does the VM compile with these limits?  Catches what only the compiler
 * knows (a direction with too many rules once the limit's are added)
 * before anything is written. */
static int try_compile(const struct policy_vm *pv, const struct caps_limits *rt, char *msg,
		       size_t len)
{
	struct policy_set one = { .nr_vms = 1 };
	struct compiled_policy *cp = NULL;
	struct policy_error perr;
	struct policy_vm copy = *pv;
	int ret;

	caps_limits_merge(&pv->policy_limits, rt, &copy.limits);
	one.vms = &copy;
	ret = policy_compile(&one, &cp, &perr);
	if (ret)
		policy_error_format(&perr, msg, len);
	compiled_policy_free(cp);
	return ret;
}

/*
 * Publish VM id with its new limits (already merged into a->set) alone:
 * compile that one VM and hand the publisher every other VM in the form it
 * published last, which it finds unchanged by digest.  So the edit costs
 * one VM's compile and entries however many VMs the host has, and never
 * picks up a policy file edited meanwhile (that is the watcher's job).
 */
static int publish_one(struct agent *a, const struct policy_vm *pv, char *msg, size_t len)
{
	struct policy_set one_set = { .nr_vms = 1, .vms = (struct policy_vm *)pv };
	size_t n = publish_nr_vms(a->ld), k = 0;
	struct compiled_policy *one = NULL, all = { 0 };
	struct publish_stats st;
	struct policy_error perr;
	struct sha256_ctx ctx;
	struct timespec t0, t1;
	cJSON *arec = NULL;
	bool found = false;
	int ret;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	ret = policy_compile(&one_set, &one, &perr);
	if (ret) {
		policy_error_format(&perr, msg, len);
		return ret;
	}
	/* The record as the VM holds it now: the policy's capabilities with
	 * the run-time grants and revokes (vmcaps_apply's rule), so that the
	 * flip never shows the policy's alone, not even for a moment. */
	{
		const struct vm_runtime *vr = registry_get(a->reg, pv->id);

		if (vr)
			one->vms[0].vm.caps = (one->vms[0].vm.caps | vr->cap_grant) & ~vr->cap_revoke;
	}
	/* Shallow copies: publish_policy copies what it keeps before it
	 * releases its old state, and nothing here frees their arrays. */
	all.vms = calloc(n ?: 1, sizeof(*all.vms));
	if (!all.vms) {
		ret = -ENOMEM;
		goto out;
	}
	sha256_init(&ctx);
	for (size_t i = 0; i < n; i++) {
		const struct compiled_vm *cv = publish_vm_at(a->ld, i);

		if (!cv)
			continue;
		found |= cv->vm.vm_id == pv->id;
		all.vms[k] = cv->vm.vm_id == pv->id ? one->vms[0] : *cv;
		sha256_update(&ctx, all.vms[k].digest, sizeof(all.vms[k].digest));
		k++;
	}
	sha256_final(&ctx, all.digest);	/* over the VMs' digests, in id order */
	all.nr_vms = k;
	if (!found) {
		snprintf(msg, len, "VM %u is not in the maps", pv->id);
		ret = -ENOENT;
		goto out;
	}
	arec = audittrail_publish_begin(a, &all);	/* the policy_publish record, as any publish */
	ret = publish_policy(a->ld, &all, &st);
	if (ret) {
		snprintf(msg, len, "publishing to the maps failed: %s", strerror(-ret));
		goto out;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	a->applied_version = st.version;
	a->applied_at = time(NULL);
	audittrail_publish_done(a, arec, (unsigned long long)st.version, "cap fine-grain");
	arec = NULL;
	measure_policy(a, &all, st.version);
	log_info("policy version %llu applied (cap fine-grain of VM %u): %u changed, %u "
		 "unchanged, %llu entries written, %llu deleted, %.2f ms",
		 (unsigned long long)st.version, pv->id, st.changed, st.unchanged,
		 (unsigned long long)st.entries_written, (unsigned long long)st.entries_deleted,
		 (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
out:
	cJSON_Delete(arec);
	free(all.vms);
	compiled_policy_free(one);
	return ret;
}

/* cap.fine_grain {"id", "cap", "allow_ports"?, "max_bandwidth"?, "nodes"?,
 * "clear"?}: checked whole, audited before it happens, saved, then this
 * VM alone is published. */
cJSON *vmfine_request(struct agent *a, const cJSON *req)
{
	const cJSON *cap = cJSON_GetObjectItemCaseSensitive(req, "cap");
	char err[PATH_MAX + 512], why[PATH_MAX + 64];
	struct vm_runtime vr = {}, prev = {};
	const struct vm_runtime *old;
	struct policy_vm *pv;
	bool had = false, clear;
	cJSON *r;
	int bit, ret;

	r = req_vm_cap(req, &vr.id, &bit);
	if (r)
		return r;
	pv = policy_vm(a, vr.id);
	if (!pv)
		return control_error("unknown VM %u: it is not in the applied policy", vr.id);
	if (quarantine_get(a, vr.id) || pv->quarantined)
		return control_error("VM %u is quarantined: give it a policy before changing its "
				     "capabilities", vr.id);
	old = registry_get(a->reg, vr.id);
	if (old) {
		vr = prev = *old;
		had = true;
	}
	r = parse_params(req, bit, cap->valuestring, &vr.limits, &clear);
	if (r)
		return r;
	if (clear && !cap_limited(&prev.limits, bit))
		return control_error("VM %u has no %s limit from cap fine-grain to clear%s; nothing "
				     "changed", vr.id, cap->valuestring,
				     cap_limited(&pv->policy_limits, bit)
				     ? " (its policy's \"capability_limits\" stay: edit the policy)"
				     : "");
	if (try_compile(pv, &vr.limits, err, sizeof(err)))
		return control_error("refused: %s; nothing changed", err);

	ret = audit_write(a, fine_record(clear ? "cap_fine_grain_clear" : "cap_fine_grain", vr.id,
					 bit, clear ? NULL : &vr.limits, "control socket"),
			  why, sizeof(why));
	if (ret) {
		degraded_set(&a->deg, DEG_AUDIT_UNWRITABLE, "%s", why);
		return control_error("refused: the audit record cannot be written and synced (%s); "
				     "nothing changed", why);
	}
	ret = registry_put(a->reg, &vr);
	if (ret) {
		snprintf(err, sizeof(err), "refused: cannot save the limit in %s/registrations.json: "
			 "%s; nothing changed", a->opts->state_dir, strerror(-ret));
	} else {
		struct caps_limits was = pv->limits;

		caps_limits_merge(&pv->policy_limits, &vr.limits, &pv->limits);
		ret = publish_one(a, pv, why, sizeof(why));
		if (ret) {
			pv->limits = was;
			snprintf(err, sizeof(err), "VM %u: the limit could not be published: %s",
				 vr.id, why);
		}
	}
	if (ret) {
		vmcaps_undo(a, fine_record("cap_change_failed", vr.id, bit, NULL, "control socket"),
			    "cap_fine_grain", err, had ? &prev : NULL, vr.id);
		return control_error("%s", err);
	}
	/* The record came from the policy: put back run-time grants and
	 * revokes; the shapers follow the rate in force. */
	vmcaps_apply(a, &vr);
	ifwatch_attach(a->ifw, pv);
	log_info("VM %u: %s %s (policy version %llu)", vr.id, cap->valuestring,
		 clear ? "limit from cap fine-grain cleared" : "limited by cap fine-grain",
		 (unsigned long long)a->applied_version);
	r = cJSON_CreateObject();
	cJSON_AddBoolToObject(r, "ok", 1);
	cJSON_AddNumberToObject(r, "id", vr.id);
	cJSON_AddStringToObject(r, "cap", cap->valuestring);
	cJSON_AddBoolToObject(r, "cleared", clear);
	cJSON_AddNumberToObject(r, "version", (double)a->applied_version);
	if (pv)
		cJSON_AddItemToObject(r, "limits", vmfine_json(a, pv) ?: cJSON_CreateObject());
	return r;
}
