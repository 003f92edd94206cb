// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Delegation links between VMs: checks, the walk, the forest and the state
 * file (agent/caps/deleg.h).  Each VM holds a capability by at most one
 * link, so the links of one capability form a forest and walking up is a
 * plain loop.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/caps/deleg.h"

#define NS_PER_S	1000000000ULL

void deleg_set_free(struct deleg_set *s)
{
	free(s->v);
	memset(s, 0, sizeof(*s));
}

static ssize_t find_at(const struct deleg_set *s, uint32_t to, uint32_t cap)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->v[i].to == to && s->v[i].cap == cap)
			return (ssize_t)i;
	return -1;
}

const struct deleg_link *deleg_find(const struct deleg_set *s, uint32_t to, uint32_t cap)
{
	ssize_t i = find_at(s, to, cap);

	return i < 0 || s->v[i].spent ? NULL : &s->v[i];
}

const struct deleg_link *deleg_find_any(const struct deleg_set *s, uint32_t to, uint32_t cap)
{
	ssize_t i = find_at(s, to, cap);

	return i < 0 ? NULL : &s->v[i];
}

int deleg_put(struct deleg_set *s, const struct deleg_link *l)
{
	ssize_t i = find_at(s, l->to, l->cap);

	if (i >= 0) {
		s->v[i] = *l;
		return 0;
	}
	if (s->n == s->alloc) {
		size_t alloc = s->alloc ? 2 * s->alloc : 16;
		struct deleg_link *v = realloc(s->v, alloc * sizeof(*v));

		if (!v)
			return -ENOMEM;
		s->v = v;
		s->alloc = alloc;
	}
	s->v[s->n++] = *l;
	return 0;
}

int deleg_del(struct deleg_set *s, uint32_t to, uint32_t cap)
{
	ssize_t i = find_at(s, to, cap);

	if (i < 0)
		return -ENOENT;
	s->v[i] = s->v[--s->n];
	return 0;
}

bool deleg_holds(const struct deleg_set *s, uint32_t vm, uint32_t cap, uint64_t now,
		 deleg_own_fn own, void *ctx)
{
	const struct deleg_link *l;

	if (own(ctx, vm, cap))
		return true;
	l = deleg_find(s, vm, cap);
	for (int hop = 0; l && hop < RAYOS_CAP_MAX_DEPTH; hop++) {
		if (l->until && l->until <= now)
			return false;
		if (own(ctx, l->from, cap))
			return true;
		l = deleg_find(s, l->from, cap);
	}
	return false;
}

/* Links between vm and the VM above it that holds cap on its own: 0 if vm
 * holds it itself, -1 if no such VM is reached (or a cycle). */
static int depth_of(const struct deleg_set *s, uint32_t vm, uint32_t cap, deleg_own_fn own,
		    void *ctx)
{
	const struct deleg_link *l;
	int d = 0;

	while (!own(ctx, vm, cap)) {
		l = deleg_find(s, vm, cap);
		if (!l || d > (int)s->n)
			return -1;
		vm = l->from;
		d++;
	}
	return d;
}

/* Links below vm: 0 for a leaf. */
static int height_of(const struct deleg_set *s, uint32_t vm, uint32_t cap, int guard)
{
	int h = 0;

	if (guard > RAYOS_CAP_MAX_DEPTH + 2)
		return h;	/* deeper than any valid chain: stop */
	for (size_t i = 0; i < s->n; i++) {
		if (s->v[i].from != vm || s->v[i].cap != cap || s->v[i].spent)
			continue;
		int below = 1 + height_of(s, s->v[i].to, cap, guard + 1);

		if (below > h)
			h = below;
	}
	return h;
}

void deleg_chain(const struct deleg_set *s, uint32_t vm, uint32_t cap, char *buf, size_t len)
{
	uint32_t up[RAYOS_CAP_MAX_DEPTH + 8];
	const struct deleg_link *l;
	size_t n = 0, off = 0;

	up[n++] = vm;
	while (n < sizeof(up) / sizeof(up[0]) && (l = deleg_find(s, up[n - 1], cap)))
		up[n++] = l->from;
	buf[0] = '\0';
	while (n-- && off < len)
		off += snprintf(buf + off, len - off, "%" PRIu32 "%s", up[n], n ? " -> " : "");
}

int deleg_check(const struct deleg_set *s, uint32_t from, uint32_t to, uint32_t cap,
		deleg_own_fn own, void *ctx, char *err, size_t len)
{
	const struct deleg_link *l;
	char chain[160];
	int d, h;

	if (cap >= RAYOS_CAP_COUNT) {
		snprintf(err, len, "capability %u out of range", cap);
		return -EINVAL;
	}
	if (from == to) {
		snprintf(err, len, "VM %u cannot delegate to itself", from);
		return -EINVAL;
	}
	l = deleg_find(s, to, cap);
	if (l) {
		snprintf(err, len, "VM %u already holds it by delegation from VM %u: undelegate "
			 "that first", to, l->from);
		return -EINVAL;
	}
	/* A cycle: `to` above `from`. */
	for (l = deleg_find(s, from, cap); l; l = deleg_find(s, l->from, cap)) {
		if (l->from == to) {
			deleg_chain(s, from, cap, chain, sizeof(chain));
			snprintf(err, len, "cycle: %s -> %u", chain, to);
			return -EINVAL;
		}
		if (l->from == from)
			break;	/* a cycle already there (never written by us) */
	}
	d = depth_of(s, from, cap, own, ctx);
	if (d < 0) {
		snprintf(err, len, "VM %u does not hold it (neither its own grant nor a "
			 "delegation that reaches one)", from);
		return -EINVAL;
	}
	h = height_of(s, to, cap, 0);
	if (d + 1 + h > RAYOS_CAP_MAX_DEPTH) {
		deleg_chain(s, from, cap, chain, sizeof(chain));
		if (d >= RAYOS_CAP_MAX_DEPTH)
			snprintf(err, len, "%s already has depth %d: %u -> %u would be hop %d "
				 "(at most %d)", chain, d, from, to, d + 1, RAYOS_CAP_MAX_DEPTH);
		else
			snprintf(err, len, "%s -> %u would have depth %d with the %d link%s "
				 "below VM %u (at most %d)", chain, to, d + 1 + h, h,
				 h == 1 ? "" : "s", to, RAYOS_CAP_MAX_DEPTH);
		return -EINVAL;
	}
	return 0;
}

size_t deleg_below(const struct deleg_set *s, uint32_t vm, uint32_t cap, size_t *out,
		   size_t max)
{
	size_t n = 0;

	/* Breadth first: out[] doubles as the queue of VMs to expand. */
	for (size_t i = 0; i < s->n && n < max; i++)
		if (s->v[i].from == vm && s->v[i].cap == cap && !s->v[i].spent)
			out[n++] = i;
	for (size_t q = 0; q < n; q++) {
		uint32_t parent = s->v[out[q]].to;

		for (size_t i = 0; i < s->n && n < max; i++) {
			bool seen = false;

			if (s->v[i].from != parent || s->v[i].cap != cap || s->v[i].spent)
				continue;
			for (size_t k = 0; k < n; k++)
				seen |= out[k] == i;
			if (!seen)
				out[n++] = i;
		}
	}
	return n;
}

static cJSON *subtree(const struct deleg_set *s, uint32_t vm, uint32_t cap, uint64_t now,
		      bool valid_above, int depth)
{
	cJSON *arr = cJSON_CreateArray();

	for (size_t i = 0; arr && i < s->n; i++) {
		const struct deleg_link *l = &s->v[i];
		bool valid;
		cJSON *o;

		if (l->from != vm || l->cap != cap || l->spent || depth > RAYOS_CAP_MAX_DEPTH + 1)
			continue;
		valid = valid_above && depth <= RAYOS_CAP_MAX_DEPTH && (!l->until || l->until > now);
		o = cJSON_CreateObject();
		cJSON_AddNumberToObject(o, "vm", l->to);
		cJSON_AddNumberToObject(o, "from", l->from);
		cJSON_AddNumberToObject(o, "depth", depth);
		cJSON_AddBoolToObject(o, "valid", valid);
		cJSON_AddStringToObject(o, "source", l->policy_spec ? "policy" : "cli");
		if (l->until) {
			cJSON_AddNumberToObject(o, "until_boot_ns", (double)l->until);
			cJSON_AddNumberToObject(o, "seconds_left",
						l->until > now ? (double)((l->until - now) / NS_PER_S)
							       : 0);
		}
		cJSON_AddItemToObject(o, "children", subtree(s, l->to, cap, now, valid, depth + 1));
		cJSON_AddItemToArray(arr, o);
	}
	return arr;
}

static bool tree_has(const cJSON *children, uint32_t vm)
{
	const cJSON *c;

	cJSON_ArrayForEach(c, children) {
		const cJSON *id = cJSON_GetObjectItemCaseSensitive(c, "vm");

		if ((cJSON_IsNumber(id) && (uint32_t)id->valuedouble == vm) ||
		    tree_has(cJSON_GetObjectItemCaseSensitive(c, "children"), vm))
			return true;
	}
	return false;
}

cJSON *deleg_forest(const struct deleg_set *s, uint64_t now, deleg_own_fn own, void *ctx,
		    uint32_t only, const char *(*cap_name)(int cap))
{
	cJSON *forest = cJSON_CreateArray();

	/* Roots: delegators that hold no link for that capability themselves. */
	for (size_t i = 0; forest && i < s->n; i++) {
		const struct deleg_link *l = &s->v[i];
		bool dup = false;
		cJSON *root, *kids;

		if (l->spent || deleg_find(s, l->from, l->cap))
			continue;
		for (size_t k = 0; k < i; k++)
			dup |= s->v[k].from == l->from && s->v[k].cap == l->cap &&
			       !s->v[k].spent && !deleg_find(s, s->v[k].from, s->v[k].cap);
		if (dup)
			continue;
		bool held = own(ctx, l->from, l->cap);

		kids = subtree(s, l->from, l->cap, now, held, 1);
		if (only && only != l->from && !tree_has(kids, only)) {
			cJSON_Delete(kids);
			continue;
		}
		root = cJSON_CreateObject();
		cJSON_AddNumberToObject(root, "vm", l->from);
		cJSON_AddStringToObject(root, "cap", cap_name(l->cap));
		cJSON_AddStringToObject(root, "kind", held ? "own" : "none");
		cJSON_AddItemToObject(root, "children", kids);
		cJSON_AddItemToArray(forest, root);
	}
	return forest;
}

char *deleg_save(const struct deleg_set *s, const char *boot_id)
{
	cJSON *root = cJSON_CreateObject(), *arr;
	char *text;

	cJSON_AddStringToObject(root, "boot_id", boot_id);
	arr = cJSON_AddArrayToObject(root, "delegations");
	for (size_t i = 0; arr && i < s->n; i++) {
		cJSON *o = cJSON_CreateObject();
		char hex[17];

		cJSON_AddNumberToObject(o, "from", s->v[i].from);
		cJSON_AddNumberToObject(o, "to", s->v[i].to);
		cJSON_AddNumberToObject(o, "cap", s->v[i].cap);
		snprintf(hex, sizeof(hex), "%" PRIx64, s->v[i].until);
		cJSON_AddStringToObject(o, "until", hex);
		snprintf(hex, sizeof(hex), "%" PRIx64, s->v[i].policy_spec);
		cJSON_AddStringToObject(o, "policy_spec", hex);
		if (s->v[i].spent)
			cJSON_AddBoolToObject(o, "spent", 1);
		cJSON_AddItemToArray(arr, o);
	}
	text = cJSON_Print(root);
	cJSON_Delete(root);
	return text;
}

int deleg_load(const char *text, const char *boot_id, struct deleg_set *s, size_t *dropped)
{
	cJSON *root = cJSON_Parse(text), *it;
	const cJSON *b = cJSON_GetObjectItemCaseSensitive(root, "boot_id");
	const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "delegations");
	bool same_boot = cJSON_IsString(b) && boot_id[0] && !strcmp(b->valuestring, boot_id);
	int err = 0;

	*dropped = 0;
	if (!cJSON_IsArray(arr)) {
		cJSON_Delete(root);
		return -EINVAL;
	}
	cJSON_ArrayForEach(it, arr) {
		const cJSON *f = cJSON_GetObjectItemCaseSensitive(it, "from");
		const cJSON *t = cJSON_GetObjectItemCaseSensitive(it, "to");
		const cJSON *c = cJSON_GetObjectItemCaseSensitive(it, "cap");
		const cJSON *u = cJSON_GetObjectItemCaseSensitive(it, "until");
		const cJSON *p = cJSON_GetObjectItemCaseSensitive(it, "policy_spec");
		struct deleg_link l = {};

		if (!cJSON_IsNumber(f) || !cJSON_IsNumber(t) || !cJSON_IsNumber(c) ||
		    f->valuedouble < 1 || f->valuedouble > UINT32_MAX || t->valuedouble < 1 ||
		    t->valuedouble > UINT32_MAX || c->valuedouble < 0 ||
		    c->valuedouble >= RAYOS_CAP_COUNT)
			continue;
		l.from = (uint32_t)f->valuedouble;
		l.to = (uint32_t)t->valuedouble;
		l.cap = (uint32_t)c->valuedouble;
		l.until = cJSON_IsString(u) ? strtoull(u->valuestring, NULL, 16) : 0;
		l.policy_spec = cJSON_IsString(p) ? strtoull(p->valuestring, NULL, 16) : 0;
		l.spent = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "spent"));
		if (l.until && !same_boot && !l.spent) {
			(*dropped)++;
			continue;
		}
		err = deleg_put(s, &l);
		if (err)
			break;
	}
	cJSON_Delete(root);
	return err;
}
