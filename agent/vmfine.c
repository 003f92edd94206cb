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
 * A change compiles and publishes that one VM (plan_publish), so it costs
 * the same on a host of 4096 VMs as on a host of one.
 *
 * A capability taken by delegation comes with its giver's limits: a VM
 * that holds CAP_NETWORK (or CAP_GPU) through a link is under its own
 * limits and those its giver holds the capability under, up the chain
 * (effective_limits).  Neither side of a link can widen what the other
 * side allows.  A link, or a giver's new limit, publishes the VMs below it
 * with their narrower limits before the link reaches the kernel; a link
 * that ends lifts them at the next health tick (vmfine_refresh).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/agent_internal.h"
#include "agent/audittrail.h"
#include "agent/caps/deleg.h"
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

/* ---- limits taken by delegation ------------------------------------------ */

/* A link (the agent's, or a policy "delegations" entry as the link it
 * becomes after the publish): `to` takes cap from `from`. */
struct giver_entry {
	uint32_t to, cap, from;
};

/*
 * What limits are computed against: the agent's links and maybe a set's
 * entries (a publish: they become links after it), indexed; one link about
 * to be made; one VM's run-time limits about to change.
 */
struct fine_ctx {
	const struct agent *a;
	const struct policy_set *set;
	struct giver_entry *entries;		/* sorted by (to, cap) */
	size_t nr_entries;
	const struct deleg_link *extra;		/* NULL: none */
	uint32_t rt_id;				/* 0: none */
	const struct caps_limits *rt;
};

static unsigned int cap_part(uint32_t cap)
{
	return cap == RAYOS_CAP_NETWORK ? CAPS_PART_NETWORK :
	       cap == RAYOS_CAP_GPU ? CAPS_PART_GPU : 0;
}

/* VM id's own limits: its policy's and those of cap fine-grain. */
static void own_limits(const struct fine_ctx *c, uint32_t id, struct caps_limits *out)
{
	const struct policy_vm *pv = policy_set_find(c->set, id);

	if (!pv || pv->quarantined) {
		*out = no_limits;
		return;
	}
	caps_limits_merge(&pv->policy_limits, id == c->rt_id ? c->rt : runtime_limits(c->a, id),
			  out);
}

static int entry_cmp(const void *x, const void *y)
{
	const struct giver_entry *a = x, *b = y;

	if (a->to != b->to)
		return a->to < b->to ? -1 : 1;
	return a->cap < b->cap ? -1 : a->cap > b->cap;
}

/*
 * Index the agent's links (also those the kernel has ended and the health
 * tick not yet tidied: narrower is the safe side) and, with set_entries,
 * the "delegations" entries of c->set: one sort, then a binary search per
 * lookup, so a publish of 4096 VMs with as many links stays linear-ish.
 */
static int ctx_index(struct fine_ctx *c, bool set_entries)
{
	const struct deleg_set *d = &c->a->deleg;
	size_t n = d->n;

	if (set_entries)
		for (size_t i = 0; i < c->set->nr_vms; i++)
			n += c->set->vms[i].nr_deleg;
	c->nr_entries = 0;
	if (!n)
		return 0;
	c->entries = calloc(n, sizeof(*c->entries));
	if (!c->entries)
		return -ENOMEM;
	for (size_t i = 0; i < d->n; i++)
		if (!d->v[i].spent)
			c->entries[c->nr_entries++] = (struct giver_entry){ d->v[i].to, d->v[i].cap,
									    d->v[i].from };
	for (size_t i = 0; set_entries && i < c->set->nr_vms; i++)
		for (size_t k = 0; k < c->set->vms[i].nr_deleg; k++)
			c->entries[c->nr_entries++] = (struct giver_entry){
				c->set->vms[i].deleg[k].to, c->set->vms[i].deleg[k].cap,
				c->set->vms[i].id };
	qsort(c->entries, c->nr_entries, sizeof(*c->entries), entry_cmp);
	return 0;
}

/* The VMs vm takes cap from, into out (at most max): the indexed links and
 * the link about to be made. */
static size_t givers(const struct fine_ctx *c, uint32_t vm, uint32_t cap, uint32_t *out,
		     size_t max)
{
	size_t n = 0, lo = 0, hi = c->nr_entries;

	if (c->extra && c->extra->to == vm && c->extra->cap == cap && n < max)
		out[n++] = c->extra->from;
	while (lo < hi) {	/* the first entry not below (vm, cap) */
		size_t mid = lo + (hi - lo) / 2;
		const struct giver_entry *e = &c->entries[mid];

		if (e->to < vm || (e->to == vm && e->cap < cap))
			lo = mid + 1;
		else
			hi = mid;
	}
	for (; lo < c->nr_entries && c->entries[lo].to == vm && c->entries[lo].cap == cap &&
	       n < max; lo++)
		out[n++] = c->entries[lo].from;
	return n;
}

/* acc ∩= what cap is limited to for `from`: its own limits and, in turn,
 * those it takes cap under, at most RAYOS_CAP_MAX_DEPTH links up (the
 * kernel's walk). */
static void take_from(const struct fine_ctx *c, uint32_t from, uint32_t cap, int depth,
		      struct caps_limits *acc)
{
	struct caps_limits own, part;
	uint32_t g[8];
	size_t n;

	own_limits(c, from, &own);
	caps_limits_part(&own, cap_part(cap), &part);
	caps_limits_merge(acc, &part, acc);
	if (depth >= RAYOS_CAP_MAX_DEPTH)
		return;
	n = givers(c, from, cap, g, 8);
	for (size_t i = 0; i < n; i++)
		take_from(c, g[i], cap, depth + 1, acc);
}

static const uint32_t limited_caps[] = { RAYOS_CAP_NETWORK, RAYOS_CAP_GPU };
#define NR_LIMITED_CAPS (sizeof(limited_caps) / sizeof(limited_caps[0]))

/* The limits VM id is under: its own and, for each capability it takes by
 * delegation, those of its givers. */
static void effective_limits(const struct fine_ctx *c, uint32_t id, struct caps_limits *out)
{
	own_limits(c, id, out);
	for (size_t k = 0; k < NR_LIMITED_CAPS; k++) {
		uint32_t g[8];
		size_t n = givers(c, id, limited_caps[k], g, 8);

		for (size_t i = 0; i < n; i++)
			take_from(c, g[i], limited_caps[k], 1, out);
	}
}

int vmfine_overlay(const struct agent *a, struct policy_set *set)
{
	struct fine_ctx c = { .a = a, .set = set };

	if (!set)
		return 0;
	if (ctx_index(&c, true))
		return -ENOMEM;	/* not published: a delegate would go unlimited */
	for (size_t i = 0; i < set->nr_vms; i++) {
		struct policy_vm *pv = &set->vms[i];

		if (pv->quarantined)
			continue;	/* deny-all already */
		effective_limits(&c, pv->id, &pv->limits);
	}
	free(c.entries);
	return 0;
}

static int disk_kind(int cap)
{
	return cap == RAYOS_CAP_DISK_READ ? CAPS_DISK_READ :
	       cap == RAYOS_CAP_DISK_WRITE ? CAPS_DISK_WRITE : -1;
}

/* The part of l that limits cap, in the spellings of the CLI; disks by
 * their path among pv's (pv NULL, or a disk no longer listed: its id). */
static void limits_of_cap(cJSON *o, const struct caps_limits *l, int cap,
			  const struct policy_vm *pv)
{
	char buf[CAPS_MAX_PORT_RANGES * 12 + 8];
	int k = disk_kind(cap);

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
	} else if (cap == RAYOS_CAP_GPU && l->has_nodes) {
		cJSON *arr = cJSON_AddArrayToObject(o, "nodes");

		for (uint32_t i = 0; i < l->nr_nodes; i++) {
			snprintf(buf, sizeof(buf), "%u:%u", l->nodes[i].major, l->nodes[i].minor);
			cJSON_AddItemToArray(arr, cJSON_CreateString(buf));
		}
	} else if (k >= 0 && l->has_disks[k]) {
		cJSON *arr = cJSON_AddArrayToObject(o, "disks");

		for (uint32_t i = 0; i < l->disks[k].nr; i++) {
			const char *path = NULL;

			for (size_t d = 0; pv && !path && d < pv->nr_disks; d++) {
				struct caps_disk_id id;

				caps_disk_id(pv->disks[d].path, &id);
				if (!memcmp(&id, &l->disks[k].id[i], sizeof(id)))
					path = pv->disks[d].path;
			}
			if (!path) {
				strcpy(buf, "id:");
				caps_disk_id_hex(&l->disks[k].id[i], buf + 3);
			}
			cJSON_AddItemToArray(arr, cJSON_CreateString(path ?: buf));
		}
	}
}

static bool cap_limited(const struct caps_limits *l, int cap)
{
	int k = disk_kind(cap);

	if (cap == RAYOS_CAP_NETWORK)
		return l->has_ports || l->rate_bytes;
	if (cap == RAYOS_CAP_GPU)
		return l->has_nodes;
	return k >= 0 && l->has_disks[k];
}

cJSON *vmfine_json(const struct agent *a, const struct policy_vm *vm)
{
	const struct caps_limits *rt = runtime_limits(a, vm->id);
	struct fine_ctx ctx = { .a = a, .set = a->set };
	bool indexed = a->set && !ctx_index(&ctx, false);
	cJSON *r = cJSON_CreateObject();
	char buf[64];

	static const int json_caps[] = { RAYOS_CAP_NETWORK, RAYOS_CAP_GPU, RAYOS_CAP_DISK_READ,
					 RAYOS_CAP_DISK_WRITE };

	for (size_t i = 0; i < sizeof(json_caps) / sizeof(json_caps[0]); i++) {
		int c = json_caps[i];
		cJSON *o, *part;

		if (!cap_limited(&vm->limits, c) && !(c == RAYOS_CAP_NETWORK &&
		    (vm->fw[RAYOS_DIR_IN].rate_bytes || vm->fw[RAYOS_DIR_OUT].rate_bytes)))
			continue;
		o = cJSON_AddObjectToObject(r, policy_cap_name(c));
		limits_of_cap(o, &vm->limits, c, vm);	/* effective */
		if (cap_limited(&vm->policy_limits, c)) {
			part = cJSON_AddObjectToObject(o, "from_policy");
			limits_of_cap(part, &vm->policy_limits, c, vm);
		}
		if (cap_limited(rt, c)) {
			part = cJSON_AddObjectToObject(o, "from_cap_fine_grain");
			limits_of_cap(part, rt, c, vm);
		}
		if (indexed && cap_part((uint32_t)c)) {
			/* What the VMs it takes c from hold c under. */
			struct caps_limits took = no_limits;
			uint32_t g[8];
			size_t n = givers(&ctx, vm->id, c, g, 8);

			for (size_t k = 0; k < n; k++)
				take_from(&ctx, g[k], c, 1, &took);
			if (n && cap_limited(&took, c)) {
				part = cJSON_AddObjectToObject(o, "from_delegation");
				cJSON_AddNumberToObject(part, "from", g[0]);
				limits_of_cap(part, &took, c, NULL);
			}
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
	free(ctx.entries);
	if (!r->child) {
		cJSON_Delete(r);
		return NULL;
	}
	return r;
}

static cJSON *fine_record(const char *event, uint32_t vm, int cap, const struct caps_limits *l,
			  const struct policy_vm *pv, const char *by)
{
	cJSON *j = cJSON_CreateObject();

	if (!j)
		return NULL;
	cJSON_AddStringToObject(j, "event", event);
	cJSON_AddNumberToObject(j, "vm", vm);
	cJSON_AddStringToObject(j, "cap", policy_cap_name(cap));
	if (l)
		limits_of_cap(j, l, cap, pv);
	cJSON_AddStringToObject(j, "by", by);
	return j;
}

/* The request's parameters for cap: into *l (the cap's part replaced, the
 * rest kept); disks must be pv's.  NULL, or the error reply. */
static cJSON *parse_params(const cJSON *req, int cap, const char *cap_name,
			   const struct policy_vm *pv, struct caps_limits *l, bool *clear)
{
	const cJSON *ports = cJSON_GetObjectItemCaseSensitive(req, "allow_ports");
	const cJSON *rate = cJSON_GetObjectItemCaseSensitive(req, "max_bandwidth");
	const cJSON *nodes = cJSON_GetObjectItemCaseSensitive(req, "nodes");
	const cJSON *disks = cJSON_GetObjectItemCaseSensitive(req, "disks");
	const cJSON *clr = cJSON_GetObjectItemCaseSensitive(req, "clear"), *n;
	bool net = ports || rate;
	int k = disk_kind(cap);
	char err[256];

	*clear = cJSON_IsTrue(clr);
	if ((ports && !cJSON_IsString(ports)) || (rate && !cJSON_IsString(rate)) ||
	    (nodes && !cJSON_IsArray(nodes)) || (disks && !cJSON_IsArray(disks)) ||
	    (clr && !cJSON_IsBool(clr)))
		return control_error("\"allow_ports\" and \"max_bandwidth\" are strings, \"nodes\" "
				     "and \"disks\" arrays of strings, \"clear\" a boolean");
	if (*clear && (net || nodes || disks))
		return control_error("--clear takes no limits with it; nothing changed");
	if (!*clear && !net && !nodes && !disks)
		return control_error("give --allow-ports and/or --max-bandwidth (CAP_NETWORK), "
				     "--nodes (CAP_GPU), --disks (CAP_DISK_READ, CAP_DISK_WRITE), "
				     "or --clear");
	if (cap != RAYOS_CAP_NETWORK && cap != RAYOS_CAP_GPU && k < 0)
		return control_error("%s has no fine-grained limits (CAP_NETWORK: --allow-ports, "
				     "--max-bandwidth; CAP_GPU: --nodes; CAP_DISK_READ, "
				     "CAP_DISK_WRITE: --disks); nothing changed", cap_name);
	if ((net && cap != RAYOS_CAP_NETWORK) || (nodes && cap != RAYOS_CAP_GPU) ||
	    (disks && k < 0))
		return control_error("%s limit%s %s, not %s; nothing changed",
				     net ? "--allow-ports and --max-bandwidth" :
				     nodes ? "--nodes" : "--disks", net ? "" : "s",
				     net ? "CAP_NETWORK" : nodes ? "CAP_GPU" :
				     "CAP_DISK_READ and CAP_DISK_WRITE", cap_name);
	if (*clear) {
		if (cap == RAYOS_CAP_NETWORK) {
			l->has_ports = false;
			memset(&l->ports, 0, sizeof(l->ports));
			l->rate_bytes = 0;
		} else if (cap == RAYOS_CAP_GPU) {
			l->has_nodes = false;
			l->nr_nodes = 0;
		} else {
			l->has_disks[k] = false;
			memset(&l->disks[k], 0, sizeof(l->disks[k]));
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
	if (disks) {
		struct caps_disks tmp = { 0 };

		if (!cJSON_GetArraySize(disks))
			return control_error("--disks: empty list (to refuse every disk, revoke %s); "
					     "nothing changed", cap_name);
		cJSON_ArrayForEach(n, disks) {
			struct caps_disk_id id;
			bool found = false;

			if (!cJSON_IsString(n))
				return control_error("--disks: items are disk paths (strings)");
			for (size_t d = 0; d < pv->nr_disks && !found; d++)
				found = !strcmp(pv->disks[d].path, n->valuestring);
			if (!found)
				return control_error("--disks: %.300s is not one of VM %u's disks (%zu "
						     "in its policy's \"disks\"); nothing changed",
						     n->valuestring, pv->id, pv->nr_disks);
			caps_disk_id(n->valuestring, &id);
			if (caps_disks_add(&tmp, &id))
				return control_error("--disks: more than %d disks; nothing changed",
						     CAPS_MAX_DISKS);
		}
		l->has_disks[k] = true;
		l->disks[k] = tmp;
	}
	return NULL;
}

/* ---- plans: the VMs whose limits change, compiled, then published -------- */

/* One VM of a plan and the limits it gets. */
struct fine_plan_vm {
	struct policy_vm *pv;
	struct caps_limits limits;
};

struct fine_plan {
	size_t n;
	struct fine_plan_vm *v;		/* in id order, each VM once */
	struct compiled_policy *cp;	/* them, compiled with their new limits */
};

void vmfine_plan_free(struct fine_plan *p)
{
	if (!p)
		return;
	compiled_policy_free(p->cp);
	free(p->v);
	free(p);
}

static int plan_vm_cmp(const void *x, const void *y)
{
	const struct fine_plan_vm *a = x, *b = y;

	return a->pv->id < b->pv->id ? -1 : a->pv->id > b->pv->id;
}

/*
 * The VMs of ids (those of the applied set) whose effective limits under c
 * differ from what they have, and `force` whatever it finds, compiled
 * together: what only the compiler knows (a direction with too many rules
 * once a limit's are added) fails here, before anything is written.  0
 * with *out (maybe of no VM), or an error with msg.
 */
static int plan_build(const struct fine_ctx *c, const uint32_t *ids, size_t nr, uint32_t force,
		      struct fine_plan **out, char *msg, size_t len)
{
	struct fine_plan *p = calloc(1, sizeof(*p));
	struct policy_set part = { 0 };
	struct policy_error perr;
	size_t alloc = 0, k = 0;
	int ret = -ENOMEM;

	*out = NULL;
	if (!p)
		goto fail;
	for (size_t i = 0; i < nr; i++) {
		struct policy_vm *pv = (struct policy_vm *)policy_set_find(c->set, ids[i]);
		struct caps_limits l;

		if (!pv || pv->quarantined)
			continue;
		effective_limits(c, pv->id, &l);
		if (pv->id != force && caps_limits_equal(&l, &pv->limits))
			continue;
		if (p->n == alloc) {
			struct fine_plan_vm *v = realloc(p->v, (alloc = alloc ? 2 * alloc : 8) *
							       sizeof(*v));

			if (!v)
				goto fail;
			p->v = v;
		}
		p->v[p->n++] = (struct fine_plan_vm){ pv, l };
	}
	if (!p->n) {
		*out = p;
		return 0;
	}
	qsort(p->v, p->n, sizeof(*p->v), plan_vm_cmp);
	for (size_t i = 1; i < p->n; i++)	/* an id given twice counts once */
		if (p->v[i].pv != p->v[k].pv)
			p->v[++k] = p->v[i];
	p->n = k + 1;
	part.vms = calloc(p->n, sizeof(*part.vms));
	if (!part.vms)
		goto fail;
	part.nr_vms = p->n;
	for (size_t i = 0; i < p->n; i++) {
		part.vms[i] = *p->v[i].pv;	/* shallow: the compiler copies what it keeps */
		part.vms[i].limits = p->v[i].limits;
	}
	ret = policy_compile(&part, &p->cp, &perr);
	if (ret)
		policy_error_format(&perr, msg, len);
	free(part.vms);
	if (!ret) {
		*out = p;
		return 0;
	}
	vmfine_plan_free(p);
	return ret;
fail:
	vmfine_plan_free(p);
	snprintf(msg, len, "out of memory");
	return ret;
}

size_t vmfine_plan_size(const struct fine_plan *p)
{
	return p ? p->n : 0;
}

/*
 * Publish the plan's VMs with their new limits, the others as they are:
 * hand the publisher every other VM in the form it published last, which
 * it finds unchanged by digest.  So an edit costs the compile and entries
 * of the VMs it changes however many VMs the host has, and never picks up a
 * policy file edited meanwhile (that is the watcher's job).  One publish:
 * every VM of the plan switches at once.
 */
int vmfine_plan_publish(struct agent *a, struct fine_plan *p, const char *by, char *msg,
			size_t len)
{
	size_t n = publish_nr_vms(a->ld), k = 0, j = 0, matched = 0;
	struct compiled_policy all = { 0 };
	uint32_t missing = 0;
	struct caps_limits *was = NULL;
	struct publish_stats st;
	struct sha256_ctx ctx;
	struct timespec t0, t1;
	cJSON *arec = NULL;
	int ret = -ENOMEM;

	if (!p->n)
		return 0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	/* The records as the VMs hold them now: the policy's capabilities with
	 * the run-time grants and revokes (vmcaps_apply's rule), so that the
	 * flip never shows the policy's alone, not even for a moment. */
	for (size_t i = 0; i < p->n; i++) {
		const struct vm_runtime *vr = registry_get(a->reg, p->cp->vms[i].vm.vm_id);

		if (vr)
			p->cp->vms[i].vm.caps = (p->cp->vms[i].vm.caps | vr->cap_grant) &
						~vr->cap_revoke;
	}
	/* Shallow copies: publish_policy copies what it keeps before it
	 * releases its old state, and nothing here frees their arrays. */
	all.vms = calloc(n ?: 1, sizeof(*all.vms));
	was = calloc(p->n, sizeof(*was));
	if (!all.vms || !was) {
		snprintf(msg, len, "out of memory");
		goto out;
	}
	sha256_init(&ctx);
	for (size_t i = 0; i < n; i++) {	/* both in id order */
		const struct compiled_vm *cv = publish_vm_at(a->ld, i);

		if (!cv)
			continue;
		while (j < p->n && p->cp->vms[j].vm.vm_id < cv->vm.vm_id)
			missing = missing ?: p->cp->vms[j++].vm.vm_id;
		if (j < p->n && p->cp->vms[j].vm.vm_id == cv->vm.vm_id) {
			all.vms[k] = p->cp->vms[j++];
			matched++;
		} else {
			all.vms[k] = *cv;
		}
		sha256_update(&ctx, all.vms[k].digest, sizeof(all.vms[k].digest));
		k++;
	}
	sha256_final(&ctx, all.digest);	/* over the VMs' digests, in id order */
	all.nr_vms = k;
	if (matched != p->n) {
		snprintf(msg, len, "VM %u is not in the maps",
			 missing ?: p->cp->vms[j < p->n ? j : 0].vm.vm_id);
		ret = -ENOENT;
		goto out;
	}
	for (size_t i = 0; i < p->n; i++) {
		was[i] = p->v[i].pv->limits;
		p->v[i].pv->limits = p->v[i].limits;
	}
	arec = audittrail_publish_begin(a, &all);	/* the policy_publish record, as any publish */
	ret = publish_policy(a->ld, &all, &st);
	if (ret) {
		for (size_t i = 0; i < p->n; i++)
			p->v[i].pv->limits = was[i];
		snprintf(msg, len, "publishing to the maps failed: %s", strerror(-ret));
		goto out;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	a->applied_version = st.version;
	a->applied_at = time(NULL);
	audittrail_publish_done(a, arec, (unsigned long long)st.version, by);
	arec = NULL;
	measure_policy(a, &all, st.version);
	log_info("policy version %llu applied (%s: %zu VM%s, first %u): %u changed, %u "
		 "unchanged, %llu entries written, %llu deleted, %.2f ms",
		 (unsigned long long)st.version, by, p->n, p->n == 1 ? "" : "s", p->v[0].pv->id,
		 st.changed, st.unchanged, (unsigned long long)st.entries_written,
		 (unsigned long long)st.entries_deleted,
		 (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
	/* The shapers follow the rates in force; run-time grants are put back. */
	for (size_t i = 0; i < p->n; i++) {
		const struct policy_vm *pv = p->v[i].pv;
		const struct vm_runtime *vr = registry_get(a->reg, pv->id);

		if (vr)
			vmcaps_apply(a, vr);
		if (vr && vr->cgroup[0] && vms_set_images(a, pv))
			log_warn("VM %u: its disk images' modes are not updated to its limits",
				 pv->id);
		ifwatch_attach(a->ifw, pv);
	}
out:
	cJSON_Delete(arec);
	free(all.vms);
	free(was);
	return ret;
}

/* plan_build for vm and every VM below it for cap (they hold it under
 * vm's limits), c indexed here. */
static int plan_below(struct fine_ctx *c, uint32_t vm, uint32_t cap, uint32_t force,
		      struct fine_plan **out, char *msg, size_t len)
{
	const struct deleg_set *d = &c->a->deleg;
	size_t *idx = calloc(d->n + 1, sizeof(*idx)), n;
	uint32_t *ids = calloc(d->n + 1, sizeof(*ids));
	int ret = -ENOMEM;

	*out = NULL;
	if (idx && ids && !ctx_index(c, false)) {
		ids[0] = vm;
		n = deleg_below(d, vm, cap, idx, d->n);
		for (size_t i = 0; i < n; i++)
			ids[1 + i] = d->v[idx[i]].to;
		ret = plan_build(c, ids, 1 + n, force, out, msg, len);
	} else {
		snprintf(msg, len, "out of memory");
	}
	free(c->entries);
	free(idx);
	free(ids);
	return ret;
}

int vmfine_plan_link(struct agent *a, const struct deleg_link *l, struct fine_plan **out,
		     char *msg, size_t len)
{
	struct fine_ctx c = { .a = a, .set = a->set, .extra = l };

	return plan_below(&c, l->to, l->cap, 0, out, msg, len);
}

void vmfine_refresh(struct agent *a)
{
	struct fine_ctx c = { .a = a, .set = a->set };
	struct fine_plan *p = NULL;
	char msg[PATH_MAX + 256];
	uint32_t *ids;
	int ret;

	if (!a->fine_stale || !a->set)
		return;
	ids = calloc(a->set->nr_vms ?: 1, sizeof(*ids));
	if (!ids || ctx_index(&c, false)) {
		free(ids);
		return;		/* stale still: the next tick tries again */
	}
	for (size_t i = 0; i < a->set->nr_vms; i++)
		ids[i] = a->set->vms[i].id;
	ret = plan_build(&c, ids, a->set->nr_vms, 0, &p, msg, sizeof(msg));
	if (!ret && p->n)
		ret = vmfine_plan_publish(a, p, "delegation ended", msg, sizeof(msg));
	if (ret)
		log_err("the limits delegates took from links that ended are not lifted: %s; the "
			"next health tick tries again", msg);
	else
		a->fine_stale = false;
	vmfine_plan_free(p);
	free(c.entries);
	free(ids);
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
	struct fine_plan *plan = NULL;
	struct policy_vm *pv;
	bool had = false, clear;
	size_t below;
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
	r = parse_params(req, bit, cap->valuestring, pv, &vr.limits, &clear);
	if (r)
		return r;
	if (clear && !cap_limited(&prev.limits, bit))
		return control_error("VM %u has no %s limit from cap fine-grain to clear%s; nothing "
				     "changed", vr.id, cap->valuestring,
				     cap_limited(&pv->policy_limits, bit)
				     ? " (its policy's \"capability_limits\" stay: edit the policy)"
				     : "");
	/* This VM and, for this capability, every VM below it in the
	 * delegation forest: they hold it under this VM's limits. */
	{
		struct fine_ctx c = { .a = a, .set = a->set, .rt_id = vr.id, .rt = &vr.limits };

		if (plan_below(&c, vr.id, (uint32_t)bit, vr.id, &plan, err, sizeof(err)))
			return control_error("refused: %s; nothing changed", err);
	}

	ret = audit_write(a, fine_record(clear ? "cap_fine_grain_clear" : "cap_fine_grain", vr.id,
					 bit, clear ? NULL : &vr.limits, pv, "control socket"),
			  why, sizeof(why));
	if (ret) {
		vmfine_plan_free(plan);
		degraded_set(&a->deg, DEG_AUDIT_UNWRITABLE, "%s", why);
		return control_error("refused: the audit record cannot be written and synced (%s); "
				     "nothing changed", why);
	}
	ret = registry_put(a->reg, &vr);
	if (ret) {
		snprintf(err, sizeof(err), "refused: cannot save the limit in %s/registrations.json: "
			 "%s; nothing changed", a->opts->state_dir, strerror(-ret));
	} else if ((ret = vmfine_plan_publish(a, plan, "cap fine-grain", why, sizeof(why)))) {
		snprintf(err, sizeof(err), "VM %u: the limit could not be published: %s", vr.id,
			 why);
	}
	below = plan->n - 1;
	vmfine_plan_free(plan);
	if (ret) {
		vmcaps_undo(a, fine_record("cap_change_failed", vr.id, bit, NULL, NULL,
						   "control socket"),
			    "cap_fine_grain", err, had ? &prev : NULL, vr.id);
		return control_error("%s", err);
	}
	log_info("VM %u: %s %s (policy version %llu)", vr.id, cap->valuestring,
		 clear ? "limit from cap fine-grain cleared" : "limited by cap fine-grain",
		 (unsigned long long)a->applied_version);
	r = cJSON_CreateObject();
	cJSON_AddBoolToObject(r, "ok", 1);
	cJSON_AddNumberToObject(r, "id", vr.id);
	cJSON_AddStringToObject(r, "cap", cap->valuestring);
	cJSON_AddBoolToObject(r, "cleared", clear);
	cJSON_AddNumberToObject(r, "version", (double)a->applied_version);
	/* VMs holding the capability by delegation from this one, re-limited. */
	cJSON_AddNumberToObject(r, "delegates_changed", (double)below);
	if (pv)
		cJSON_AddItemToObject(r, "limits", vmfine_json(a, pv) ?: cJSON_CreateObject());
	return r;
}
