// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The revoke-all switch, user-space side.  Both maps are mmapped: a revoke
 * of 4096 VMs is 4096 pairs of stores and one release store, with no
 * syscall per VM, so the time from command to enforcement is the time to
 * touch 64 KiB.  Ordering is what makes it one step: every entry (mask, then
 * epoch) is visible before the switch's epoch that makes it count
 * (__atomic_store_n with __ATOMIC_RELEASE), and an entry of a future epoch
 * never counts.  Entries are cleared only after the records no longer need
 * them, and never reused before they are cleared.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <bpf/bpf.h>

#include "agent/core/log.h"
#include "bpf/abi/policy.h"
#include "loader/capswitch.h"
#include "loader/loader_internal.h"

_Static_assert(sizeof(struct rayos_cap_switch) == 16, "rayos_cap_switch layout");
_Static_assert(sizeof(struct rayos_cap_revoke) == 16, "rayos_cap_revoke layout");

struct loader_capswitch {
	struct rayos_cap_switch *sw;
	struct rayos_cap_revoke *rev;
	size_t sw_len, rev_len;
	uint32_t nr_slots;
};

static void *map_mmap(int fd, size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

	return p == MAP_FAILED ? NULL : p;
}

static size_t page_round(size_t len)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);

	return (len + page - 1) / page * page;
}

/* Map both arrays on first use. */
static int csw_get(struct loader *ld, struct loader_capswitch **out)
{
	struct bpf_map_info info = {};
	__u32 len = sizeof(info);
	struct loader_capswitch *c = ld->csw;
	int fd_sw = ld->map_fds[RAYOS_MAP_CAP_SWITCH], fd_rev = ld->map_fds[RAYOS_MAP_CAP_REVOKE];
	int err;

	if (c) {
		*out = c;
		return 0;
	}
	if (fd_sw < 0 || fd_rev < 0)
		return -ENOENT;
	if (bpf_obj_get_info_by_fd(fd_rev, &info, &len))
		return -errno;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->nr_slots = info.max_entries;
	c->sw_len = page_round(sizeof(*c->sw));
	c->rev_len = page_round((size_t)info.max_entries * sizeof(*c->rev));
	c->sw = map_mmap(fd_sw, c->sw_len);
	c->rev = c->sw ? map_mmap(fd_rev, c->rev_len) : NULL;
	if (!c->rev) {
		err = -errno;
		log_err("cannot map rayos_cap_switch/rayos_cap_revoke (BPF_F_MMAPABLE): %s",
			strerror(-err));
		if (c->sw)
			munmap(c->sw, c->sw_len);
		free(c);
		return err;
	}
	ld->csw = c;
	*out = c;
	return 0;
}

int loader_caps_switch(struct loader *ld, const struct loader_revoke *sel, size_t n,
		       uint64_t *epoch)
{
	struct loader_capswitch *c;
	uint64_t next;
	int err = csw_get(ld, &c);

	if (err)
		return err;
	for (size_t i = 0; i < n; i++)
		if (sel[i].slot >= c->nr_slots)
			return -ERANGE;
	next = __atomic_load_n(&c->sw->epoch, __ATOMIC_ACQUIRE) + 1;
	for (size_t i = 0; i < n; i++) {
		struct rayos_cap_revoke *r = &c->rev[sel[i].slot];

		/* A slot still carrying an earlier revoke-all keeps it: the
		 * records may not have folded it in yet (agent died between). */
		if (__atomic_load_n(&r->epoch, __ATOMIC_RELAXED))
			__atomic_store_n(&r->mask, r->mask | sel[i].mask, __ATOMIC_RELAXED);
		else
			__atomic_store_n(&r->mask, sel[i].mask, __ATOMIC_RELAXED);
		__atomic_store_n(&r->epoch, next, __ATOMIC_RELEASE);
	}
	__atomic_store_n(&c->sw->armed, 1, __ATOMIC_RELEASE);
	/* The step: from here every program sees every entry above. */
	__atomic_store_n(&c->sw->epoch, next, __ATOMIC_RELEASE);
	*epoch = next;
	return 0;
}

int loader_caps_settle(struct loader *ld)
{
	struct loader_capswitch *c;
	int err = csw_get(ld, &c);

	if (err)
		return err;
	if (!__atomic_load_n(&c->sw->armed, __ATOMIC_ACQUIRE))
		return 0;
	for (uint32_t i = 0; i < c->nr_slots; i++) {
		if (!__atomic_load_n(&c->rev[i].epoch, __ATOMIC_RELAXED))
			continue;
		__atomic_store_n(&c->rev[i].epoch, 0, __ATOMIC_RELEASE);
		__atomic_store_n(&c->rev[i].mask, 0, __ATOMIC_RELAXED);
	}
	__atomic_store_n(&c->sw->armed, 0, __ATOMIC_RELEASE);
	return 0;
}

bool loader_caps_armed(struct loader *ld, uint64_t *epoch)
{
	struct loader_capswitch *c;

	if (csw_get(ld, &c))
		return false;
	*epoch = __atomic_load_n(&c->sw->epoch, __ATOMIC_ACQUIRE);
	return __atomic_load_n(&c->sw->armed, __ATOMIC_ACQUIRE) != 0;
}

int loader_caps_pending(struct loader *ld, struct loader_revoke *out, size_t max, size_t *n)
{
	struct loader_capswitch *c;
	uint64_t epoch;
	int err = csw_get(ld, &c);

	*n = 0;
	if (err)
		return err;
	epoch = __atomic_load_n(&c->sw->epoch, __ATOMIC_ACQUIRE);
	if (!__atomic_load_n(&c->sw->armed, __ATOMIC_ACQUIRE))
		return 0;
	for (uint32_t i = 0; i < c->nr_slots; i++) {
		uint64_t e = __atomic_load_n(&c->rev[i].epoch, __ATOMIC_ACQUIRE);

		if (!e || e > epoch)
			continue;
		if (*n < max)
			out[*n] = (struct loader_revoke){ .slot = i, .mask = c->rev[i].mask };
		(*n)++;
	}
	return 0;
}

void loader_capswitch_close(struct loader *ld)
{
	struct loader_capswitch *c = ld->csw;

	if (!c)
		return;
	munmap(c->rev, c->rev_len);
	munmap(c->sw, c->sw_len);
	free(c);
	ld->csw = NULL;
}
