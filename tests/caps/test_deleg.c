// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The pure delegation logic (agent/caps/deleg.c): the checks a new link
 * must pass (self, cycle, depth counted from the VM holding the capability
 * itself, links below the target), the walk with deadlines, the subtree a
 * broken link ends, the forest and the state file round trip.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "agent/caps/deleg.h"
#include "tests/lib/tap.h"

#define GPU	RAYOS_CAP_GPU

/* VMs 1000 and 2000 hold CAP_GPU themselves; nobody else does. */
static bool own(void *ctx, uint32_t vm, uint32_t cap)
{
	(void)ctx;
	return cap == GPU && (vm == 1000 || vm == 2000);
}

static const char *name(int cap)
{
	return cap == GPU ? "CAP_GPU" : "?";
}

static void link_(struct deleg_set *s, uint32_t from, uint32_t to, uint64_t until)
{
	struct deleg_link l = { .from = from, .to = to, .cap = GPU, .until = until };

	deleg_put(s, &l);
}

static bool refused(struct deleg_set *s, uint32_t from, uint32_t to, const char *want)
{
	char err[256] = "";
	int ret = deleg_check(s, from, to, GPU, own, NULL, err, sizeof(err));

	if (ret != -EINVAL || !strstr(err, want)) {
		tap_diag("  got %d \"%s\", want \"%s\"", ret, err, want);
		return false;
	}
	return true;
}

static bool allowed(struct deleg_set *s, uint32_t from, uint32_t to)
{
	char err[256] = "";
	int ret = deleg_check(s, from, to, GPU, own, NULL, err, sizeof(err));

	if (ret)
		tap_diag("  refused: %s", err);
	return !ret;
}

int main(void)
{
	struct deleg_set s = {};
	char buf[160], *text;
	size_t idx[16], n, dropped;
	cJSON *f;

	tap_ok(allowed(&s, 1000, 1001), "a holder delegates (depth 1)");
	link_(&s, 1000, 1001, 0);
	tap_ok(allowed(&s, 1001, 1002), "depth 2");
	link_(&s, 1001, 1002, 0);
	tap_ok(allowed(&s, 1002, 1003), "depth 3");
	link_(&s, 1002, 1003, 500);
	tap_ok(refused(&s, 1003, 1004, "1000 -> 1001 -> 1002 -> 1003 already has depth 3"),
	       "a fourth hop is refused with the chain named");
	tap_ok(refused(&s, 1002, 1002, "cannot delegate to itself"), "self-delegation refused");
	tap_ok(refused(&s, 1003, 1000, "cycle: 1000 -> 1001 -> 1002 -> 1003 -> 1000"),
	       "back to the root: a cycle, refused with the chain named");
	tap_ok(refused(&s, 1002, 1001, "already holds it by delegation from VM 1000"),
	       "a second link into a VM that has one: refused");
	tap_ok(refused(&s, 5, 6, "VM 5 does not hold it"), "a giver without the capability");
	/* A subtree moved under a deeper VM would exceed the depth. */
	link_(&s, 2000, 3000, 0);
	link_(&s, 3000, 3001, 0);
	tap_ok(refused(&s, 1001, 2000, "would have depth 4 with the 2 links below VM 2000"),
	       "grafting a subtree that would get too deep: refused");
	tap_ok(refused(&s, 3001, 2000, "cycle: 2000 -> 3000 -> 3001 -> 2000"),
	       "a cycle through another root: refused");

	/* The walk, with deadlines (now = 100 and 600). */
	tap_ok(deleg_holds(&s, 1003, GPU, 100, own, NULL), "walk: depth 3 held before its deadline");
	tap_ok(!deleg_holds(&s, 1003, GPU, 600, own, NULL), "walk: gone after it");
	link_(&s, 1000, 1001, 50);
	tap_ok(!deleg_holds(&s, 1003, GPU, 100, own, NULL) &&
	       !deleg_holds(&s, 1002, GPU, 100, own, NULL),
	       "walk: the root link expired: everything below is gone");
	link_(&s, 1000, 1001, 0);
	deleg_chain(&s, 1003, GPU, buf, sizeof(buf));
	tap_ok(!strcmp(buf, "1000 -> 1001 -> 1002 -> 1003"), "chain (%s)", buf);
	n = deleg_below(&s, 1001, GPU, idx, 16);
	tap_ok(n == 2 && s.v[idx[0]].to == 1002 && s.v[idx[1]].to == 1003,
	       "below 1001: 1002 then 1003 (%zu)", n);

	f = deleg_forest(&s, 100, own, NULL, 1003, name);
	text = cJSON_PrintUnformatted(f);
	tap_ok(cJSON_GetArraySize(f) == 1 && strstr(text, "\"vm\":1000") &&
	       strstr(text, "\"vm\":1003") && !strstr(text, "\"vm\":2000"),
	       "forest of VM 1003: its one tree");
	free(text);
	cJSON_Delete(f);
	f = deleg_forest(&s, 100, own, NULL, 0, name);
	tap_ok(cJSON_GetArraySize(f) == 2, "forest: two trees (1000, 2000)");
	cJSON_Delete(f);

	/* The state file: a deadline from another boot is dropped. */
	text = deleg_save(&s, "boot-a");
	{
		struct deleg_set t = {}, u = {};

		tap_ok(!deleg_load(text, "boot-a", &t, &dropped) && t.n == s.n && !dropped,
		       "state file: same boot keeps every link");
		tap_ok(!deleg_load(text, "boot-b", &u, &dropped) && dropped == 1 &&
		       u.n == s.n - 1 && !deleg_find(&u, 1003, GPU),
		       "state file: another boot drops the link with a deadline");
		tap_ok(deleg_load("{\"x\": 1}", "boot-a", &t, &dropped) == -EINVAL,
		       "state file: not ours: refused");
		deleg_set_free(&t);
		deleg_set_free(&u);
	}
	free(text);
	/* A spent policy link is kept but ignored. */
	{
		struct deleg_link l = *deleg_find(&s, 1003, GPU);

		l.spent = true;
		deleg_put(&s, &l);
		tap_ok(!deleg_find(&s, 1003, GPU) && deleg_find_any(&s, 1003, GPU) &&
		       allowed(&s, 1002, 1003), "a spent link: ignored, a new one may replace it");
	}
	deleg_set_free(&s);
	return tap_done();
}
