/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Delegation of capabilities between VMs, the pure part: the set of links
 * (one per delegate and capability: who gave it, until when), the checks a
 * new link must pass (no self-delegation, no cycle, depth at most
 * RAYOS_CAP_MAX_DEPTH counted from the VM that holds the capability on its
 * own), whether a VM holds a capability now through its links (the same walk
 * as the BPF programs, bpf/include/caps.bpf.h), the subtree a broken link
 * ends, the forest as JSON for `cap tree`, and the state file's text.  No
 * clocks, no privileged calls: tests/caps/test_caps.c drives it directly;
 * agent/vmdeleg.c is the wiring.
 */
#ifndef RAYOS_CAPS_DELEG_H
#define RAYOS_CAPS_DELEG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "bpf/abi/policy.h"

/* deleg_link.policy_spec of a policy entry without a deadline. */
#define DELEG_SPEC_FOREVER	(1ULL << 62)
#define DELEG_SPEC_UNTIL	(1ULL << 63)	/* | until wall-clock ns */

struct deleg_link {
	uint32_t from, to;
	uint32_t cap;		/* enum rayos_cap */
	uint64_t until;		/* CLOCK_BOOTTIME ns; 0: none of its own */
	/* 0: made by `cap delegate`; else the policy entry that made it
	 * (expires ns, DELEG_SPEC_UNTIL | wall ns, or DELEG_SPEC_FOREVER),
	 * so a reload applies an unchanged entry once. */
	uint64_t policy_spec;
	/* A policy link that expired or was cut: kept, so that a reload does
	 * not apply the same entry again, but ignored by everything else. */
	bool spent;
};

struct deleg_set {
	struct deleg_link *v;
	size_t n, alloc;
};

/* Whether vm holds cap by a grant of its own (not by a link) now. */
typedef bool (*deleg_own_fn)(void *ctx, uint32_t vm, uint32_t cap);

void deleg_set_free(struct deleg_set *s);
/* The link by which `to` holds cap, or NULL. */
const struct deleg_link *deleg_find(const struct deleg_set *s, uint32_t to, uint32_t cap);
/* The same, spent links included. */
const struct deleg_link *deleg_find_any(const struct deleg_set *s, uint32_t to, uint32_t cap);
/* Insert or replace the link of (l->to, l->cap). */
int deleg_put(struct deleg_set *s, const struct deleg_link *l);
/* Remove the link of (to, cap): 0 or -ENOENT. */
int deleg_del(struct deleg_set *s, uint32_t to, uint32_t cap);

/*
 * Whether vm holds cap at boot time now: its own grant, else its link
 * (unexpired) to a delegator that holds it, at most RAYOS_CAP_MAX_DEPTH
 * links up.  The kernel's walk, on the agent's copy of the links.
 */
bool deleg_holds(const struct deleg_set *s, uint32_t vm, uint32_t cap, uint64_t now,
		 deleg_own_fn own, void *ctx);

/*
 * May `from` give cap to `to`?  Refuses self-delegation, a `to` that
 * already holds cap by a link (from anyone), a cycle, a `from` that holds
 * cap neither itself nor through links, and a chain that would get deeper
 * than RAYOS_CAP_MAX_DEPTH, counting the links already below `to`.  0, or
 * -EINVAL with a message naming the chain, e.g. "1000 -> 1001 -> 1002 ->
 * 1003 already has depth 3".  Deadlines are not looked at (the caller
 * checks that from holds cap now).
 */
int deleg_check(const struct deleg_set *s, uint32_t from, uint32_t to, uint32_t cap,
		deleg_own_fn own, void *ctx, char *err, size_t len);

/* The chain above vm for cap, root first: "1000 -> 1001 -> vm". */
void deleg_chain(const struct deleg_set *s, uint32_t vm, uint32_t cap, char *buf, size_t len);

/* Every link below vm for cap (links whose delegator is vm, then theirs),
 * nearest first, as indexes into s->v; returns how many (at most max). */
size_t deleg_below(const struct deleg_set *s, uint32_t vm, uint32_t cap, size_t *out,
		   size_t max);

/*
 * The forest for `cap tree`: [{"vm", "cap", "kind": "own", "children":
 * [{"vm", "from", "until_boot_ns", "seconds_left", "valid", "children":
 * [...]}]}], one root per VM holding a delegated capability on its own (or
 * not holding it: "kind": "none", its links all dead).  only: 0 for every
 * tree, else the trees that contain that VM.
 */
cJSON *deleg_forest(const struct deleg_set *s, uint64_t now, deleg_own_fn own, void *ctx,
		    uint32_t only, const char *(*cap_name)(int cap));

/* The state file: {"boot_id", "delegations": [{"from", "to", "cap",
 * "until", "policy_spec"}]} with 64-bit values as hex strings. */
char *deleg_save(const struct deleg_set *s, const char *boot_id);
/* Parse it; links with a deadline from another boot are dropped (counted
 * in *dropped): their clock is gone.  -EINVAL if the text is not ours. */
int deleg_load(const char *text, const char *boot_id, struct deleg_set *s, size_t *dropped);

#endif
