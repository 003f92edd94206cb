// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Double-buffered publishing of compiled policies into the pinned maps; the
 * protocol is described in publish.h.  The publisher remembers what it
 * installed for each VM (its generation, slot and entry keys) so that it can
 * skip unchanged VMs and delete exactly the entries of the old generation.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <bpf/bpf.h>

#include "agent/core/log.h"
#include "agent/core/util.h"
#include "loader/attach.h"
#include "loader/devices.h"
#include "loader/loader_internal.h"
#include "loader/publish.h"
#include "loader/stats.h"

/* One installed VM: its compiled form with vm.gen/slot/version filled in. */
struct pub_vm {
	struct compiled_vm cv;
	bool digest_valid;	/* false for VMs adopted from pins */
};

/* Slot states: a slot that held a VM keeps that VM's counters until it is
 * cleared for the next one; on fresh maps every slot starts clean. */
enum { SLOT_CLEAN = 0, SLOT_USED = 1, SLOT_DIRTY = 2 };

struct pub_state {
	struct pub_vm *vms;	/* sorted by id */
	size_t nr_vms;
	uint8_t *slot_used;	/* SLOT_* per slot of rayos_vms */
	uint32_t *slot_vm;	/* the VM in each slot, 0 = none (for the DHCP server) */
	uint32_t nr_slots;
};

/* The kinds of rule entries, described once so every step loops over
 * them the same way. */
struct entry_kind {
	enum rayos_map_id map;
	size_t arr_off, cnt_off;	/* in struct compiled_vm */
	size_t entry_size, val_off, key_size, gen_off, vm_off;
};

#define KIND(m, arr, cnt, type, keytype)					\
	{ m, offsetof(struct compiled_vm, arr), offsetof(struct compiled_vm, cnt), \
	  sizeof(struct type), offsetof(struct type, val), sizeof(struct keytype), \
	  offsetof(struct keytype, gen), offsetof(struct keytype, vm_id) }

static const struct entry_kind kinds[] = {
	KIND(RAYOS_MAP_FW_PORT, ports, nr_ports, compiled_port, rayos_fw_port_key),
	KIND(RAYOS_MAP_FW_RANGE, ranges, nr_ranges, compiled_range, rayos_fw_range_key),
	KIND(RAYOS_MAP_FW_CIDR4, cidr4, nr_cidr4, compiled_cidr4, rayos_fw_cidr4_key),
	KIND(RAYOS_MAP_FW_CIDR6, cidr6, nr_cidr6, compiled_cidr6, rayos_fw_cidr6_key),
	KIND(RAYOS_MAP_FW_TAB, tabs, nr_tabs, compiled_tab, rayos_fw_tab_key),
	/* device rules; skipped while the device objects are not loaded */
	KIND(RAYOS_MAP_DEV_RULES, dev, nr_dev, compiled_dev, rayos_dev_key),
};
#define NR_KINDS (sizeof(kinds) / sizeof(kinds[0]))

static void **kind_arr(struct compiled_vm *cv, const struct entry_kind *k)
{
	return (void **)((char *)cv + k->arr_off);
}

static size_t *kind_cnt(struct compiled_vm *cv, const struct entry_kind *k)
{
	return (size_t *)((char *)cv + k->cnt_off);
}

static void cv_release(struct compiled_vm *cv)
{
	for (size_t k = 0; k < NR_KINDS; k++) {
		free(*kind_arr(cv, &kinds[k]));
		*kind_arr(cv, &kinds[k]) = NULL;
		*kind_cnt(cv, &kinds[k]) = 0;
	}
}

static struct pub_state *state(struct loader *ld)
{
	return ld->pub;
}

static struct pub_vm *find_vm(struct pub_state *ps, uint32_t id)
{
	size_t lo = 0, hi = ps ? ps->nr_vms : 0;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (ps->vms[mid].cv.vm.vm_id == id)
			return &ps->vms[mid];
		if (ps->vms[mid].cv.vm.vm_id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

size_t publish_nr_vms(const struct loader *ld)
{
	return ld->pub ? ld->pub->nr_vms : 0;
}

const struct compiled_vm *publish_vm_at(const struct loader *ld, size_t i)
{
	return ld->pub && i < ld->pub->nr_vms ? &ld->pub->vms[i].cv : NULL;
}

static int state_init(struct loader *ld)
{
	struct bpf_map_info info = {};
	__u32 len = sizeof(info);
	struct pub_state *ps;

	if (ld->pub)
		return 0;
	if (bpf_obj_get_info_by_fd(ld->map_fds[RAYOS_MAP_VMS], &info, &len))
		return -errno;
	ps = calloc(1, sizeof(*ps));
	if (!ps)
		return -ENOMEM;
	ps->nr_slots = info.max_entries;
	ps->slot_used = malloc(ps->nr_slots);
	ps->slot_vm = calloc(ps->nr_slots, sizeof(*ps->slot_vm));
	if (!ps->slot_used || !ps->slot_vm) {
		free(ps->slot_used);
		free(ps->slot_vm);
		free(ps);
		return -ENOMEM;
	}
	/* Adopted maps may hold counters of VMs gone before the restart. */
	memset(ps->slot_used, ld->nr_adopted ? SLOT_DIRTY : SLOT_CLEAN, ps->nr_slots);
	ld->pub = ps;
	return 0;
}

void publish_free(struct loader *ld)
{
	struct pub_state *ps = ld->pub;

	if (!ps)
		return;
	for (size_t i = 0; i < ps->nr_vms; i++)
		cv_release(&ps->vms[i].cv);
	free(ps->vms);
	free(ps->slot_used);
	free(ps->slot_vm);
	free(ps);
	ld->pub = NULL;
}

static int append_key(struct compiled_vm *cv, const struct entry_kind *k,
		      const void *key)
{
	void **arr = kind_arr(cv, k);
	size_t *cnt = kind_cnt(cv, k);
	char *grown;

	grown = realloc(*arr, (*cnt + 1) * k->entry_size);
	if (!grown)
		return -ENOMEM;
	memset(grown + *cnt * k->entry_size, 0, k->entry_size);
	memcpy(grown + *cnt * k->entry_size, key, k->key_size);
	*arr = grown;
	(*cnt)++;
	return 0;
}

/* slot -> VM, after the set of VMs changed. */
static void index_slots(struct pub_state *ps)
{
	memset(ps->slot_vm, 0, ps->nr_slots * sizeof(*ps->slot_vm));
	for (size_t i = 0; i < ps->nr_vms; i++)
		if (ps->vms[i].cv.vm.slot < ps->nr_slots)
			ps->slot_vm[ps->vms[i].cv.vm.slot] = ps->vms[i].cv.vm.vm_id;
}

static int cmp_pub_vm(const void *a, const void *b)
{
	uint32_t x = ((const struct pub_vm *)a)->cv.vm.vm_id;
	uint32_t y = ((const struct pub_vm *)b)->cv.vm.vm_id;

	return x < y ? -1 : x > y;
}

/* Load the records, then sort every rule entry into its VM's active set or,
 * if no record uses its generation, delete it: a publish that died between
 * writing and flipping leaves such entries, and they must not become live
 * at the next flip. */
int publish_adopt(struct loader *ld)
{
	struct pub_state *ps;
	__u32 id, next, *prev = NULL;
	struct rayos_vm rec;
	size_t garbage = 0;
	int err;

	err = state_init(ld);
	if (err)
		return err;
	ps = ld->pub;
	while (!bpf_map_get_next_key(ld->map_fds[RAYOS_MAP_VMS], prev, &next)) {
		id = next;
		prev = &id;
		if (bpf_map_lookup_elem(ld->map_fds[RAYOS_MAP_VMS], &id, &rec))
			continue;
		struct pub_vm *grown = realloc(ps->vms, (ps->nr_vms + 1) * sizeof(*grown));

		if (!grown)
			return -ENOMEM;
		ps->vms = grown;
		memset(&ps->vms[ps->nr_vms], 0, sizeof(ps->vms[0]));
		ps->vms[ps->nr_vms].cv.vm = rec;
		ps->nr_vms++;
		if (rec.slot < ps->nr_slots)
			ps->slot_used[rec.slot] = SLOT_USED;
	}
	qsort(ps->vms, ps->nr_vms, sizeof(ps->vms[0]), cmp_pub_vm);
	index_slots(ps);

	for (size_t k = 0; k < NR_KINDS; k++) {
		int fd = ld->map_fds[kinds[k].map];
		uint8_t key[64], cur[64];
		bool first = true;

		while (fd >= 0 && !bpf_map_get_next_key(fd, first ? NULL : cur, key)) {
			uint32_t vm_id;
			struct pub_vm *pv;

			first = false;
			memcpy(cur, key, kinds[k].key_size);
			memcpy(&vm_id, key + kinds[k].vm_off, sizeof(vm_id));
			pv = find_vm(ps, vm_id);
			if (pv && pv->cv.vm.gen == key[kinds[k].gen_off]) {
				err = append_key(&pv->cv, &kinds[k], key);
				if (err)
					return err;
				continue;
			}
			/* Deleting the current key keeps the walk going: the
			 * next get_next_key(cur) restarts from the beginning
			 * for hashes and continues for tries. */
			if (!bpf_map_delete_elem(fd, key))
				garbage++;
		}
	}
	if (ps->nr_vms || garbage)
		log_info("adopted %zu VM records from pins, removed %zu stale entries",
			 ps->nr_vms, garbage);
	return 0;
}

static int alloc_slot(struct loader *ld, uint32_t *slot)
{
	struct pub_state *ps = state(ld);

	for (uint32_t i = 0; i < ps->nr_slots; i++) {
		if (ps->slot_used[i] == SLOT_USED)
			continue;
		if (ps->slot_used[i] == SLOT_DIRTY) {
			int err = loader_zero_slot(ld, i) ?: loader_dev_zero_slot(ld, i);

			if (err)
				return err;
		}
		ps->slot_used[i] = SLOT_USED;
		*slot = i;
		return 0;
	}
	return -ENOSPC;
}

/* Write (or, with del, delete) every entry of cv under generation gen.
 * On a write failure, deletes what it wrote. */
static int write_entries(struct loader *ld, struct compiled_vm *cv, uint8_t gen,
			 bool del, uint64_t *count)
{
	int err = 0;

	for (size_t k = 0; k < NR_KINDS; k++) {
		const struct entry_kind *kd = &kinds[k];
		char *arr = *kind_arr(cv, kd);
		size_t n = *kind_cnt(cv, kd), i;
		int fd = ld->map_fds[kd->map];

		if (fd < 0)
			continue;	/* an optional map that is not loaded */

		for (i = 0; i < n; i++) {
			char *e = arr + i * kd->entry_size;
			uint8_t key[64];

			memcpy(key, e, kd->key_size);
			key[kd->gen_off] = gen;
			if (del) {
				if (bpf_map_delete_elem(fd, key) && errno != ENOENT)
					err = err ?: -errno;
			} else if (bpf_map_update_elem(fd, key, e + kd->val_off, BPF_ANY)) {
				err = -errno;
				log_err("VM %u: cannot write %s entry %zu of %zu: %s",
					cv->vm.vm_id, loader_map_name(kd->map), i + 1, n,
					strerror(-err));
				break;
			}
			(*count)++;
		}
		if (err && !del) {
			uint64_t undone = 0;

			/* Undo this kind's partial write, then the earlier kinds'. */
			for (size_t j = 0; j < i; j++) {
				uint8_t key[64];

				memcpy(key, arr + j * kd->entry_size, kd->key_size);
				key[kd->gen_off] = gen;
				bpf_map_delete_elem(fd, key);
			}
			for (size_t kk = 0; kk < k; kk++) {
				struct compiled_vm part = { .vm = cv->vm };

				*kind_arr(&part, &kinds[kk]) = *kind_arr(cv, &kinds[kk]);
				*kind_cnt(&part, &kinds[kk]) = *kind_cnt(cv, &kinds[kk]);
				write_entries(ld, &part, gen, true, &undone);
			}
			return err;
		}
	}
	return err;
}

struct plan_vm {
	struct compiled_vm *new_cv;	/* in cp */
	struct pub_vm *old;		/* NULL: a new VM */
	bool changed;
};

int publish_read_info(const struct loader *ld, struct rayos_policy_info *info)
{
	__u32 zero = 0;

	if (bpf_map_lookup_elem(ld->map_fds[RAYOS_MAP_POLICY], &zero, info))
		return -errno;
	return 0;
}

static int sync_bind(struct loader *ld, const struct compiled_vm *cv, bool gone)
{
	int fd = ld->map_fds[RAYOS_MAP_IP_BIND];
	__u32 id = cv->vm.vm_id;
	struct rayos_ip_bind cur;

	if (cv->has_bind && !gone)
		return bpf_map_update_elem(fd, &id, &cv->bind, BPF_ANY) ? -errno : 0;
	/* Only remove a static binding: a lease (DHCP) is not the policy's. */
	if (!bpf_map_lookup_elem(fd, &id, &cur) && (cur.flags & RAYOS_BINDF_STATIC))
		return bpf_map_delete_elem(fd, &id) ? -errno : 0;
	return 0;
}

/* The publisher keeps its own copy of the keys it installed. */
static int cv_copy(struct compiled_vm *dst, const struct compiled_vm *src)
{
	*dst = *src;
	for (size_t k = 0; k < NR_KINDS; k++)
		*kind_arr(dst, &kinds[k]) = NULL;
	for (size_t k = 0; k < NR_KINDS; k++) {
		size_t bytes = *kind_cnt(dst, &kinds[k]) * kinds[k].entry_size;
		void *src_arr = *kind_arr((struct compiled_vm *)src, &kinds[k]);

		if (!bytes)
			continue;
		*kind_arr(dst, &kinds[k]) = malloc(bytes);
		if (!*kind_arr(dst, &kinds[k])) {
			cv_release(dst);
			return -ENOMEM;
		}
		memcpy(*kind_arr(dst, &kinds[k]), src_arr, bytes);
	}
	return 0;
}

static bool in_policy(const struct compiled_policy *cp, uint32_t id)
{
	size_t lo = 0, hi = cp->nr_vms;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (cp->vms[mid].vm.vm_id == id)
			return true;
		if (cp->vms[mid].vm.vm_id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

/* Step 1 for one VM: choose its slot and generation, write its entries. */
static int stage_vm(struct loader *ld, struct plan_vm *p, uint64_t version,
		    struct publish_stats *stats)
{
	struct pub_state *ps = state(ld);
	struct compiled_vm *cv = p->new_cv;
	int err;

	if (p->old) {
		cv->vm.slot = p->old->cv.vm.slot;
		cv->vm.gen = !p->old->cv.vm.gen;
	} else {
		err = alloc_slot(ld, &cv->vm.slot);
		if (err) {
			log_err("VM %u: no free slot in rayos_vms", cv->vm.vm_id);
			return err;
		}
		cv->vm.gen = 0;
	}
	cv->vm.policy_version = version;
	err = write_entries(ld, cv, cv->vm.gen, false, &stats->entries_written);
	if (err && !p->old)
		ps->slot_used[cv->vm.slot] = SLOT_CLEAN;
	return err;
}

static void unstage(struct loader *ld, struct plan_vm *plan, size_t n)
{
	for (size_t j = 0; j < n; j++) {
		struct compiled_vm *cv = plan[j].new_cv;
		uint64_t count = 0;

		if (!plan[j].changed)
			continue;
		write_entries(ld, cv, cv->vm.gen, true, &count);
		if (!plan[j].old)
			state(ld)->slot_used[cv->vm.slot] = SLOT_CLEAN;
	}
}

int publish_policy(struct loader *ld, struct compiled_policy *cp,
		   struct publish_stats *stats)
{
	struct rayos_policy_info info = {};
	struct plan_vm *plan = NULL;
	struct pub_vm *next = NULL;
	struct pub_state *ps;
	__u32 zero = 0;
	size_t i;
	int err;

	memset(stats, 0, sizeof(*stats));
	err = state_init(ld);
	if (err)
		return err;
	ps = state(ld);
	if (cp->nr_vms > ps->nr_slots) {
		log_err("policy has %zu VMs but the maps hold %u (restart with a larger "
			"--max-vms after `stop --purge`)", cp->nr_vms, ps->nr_slots);
		return -E2BIG;
	}
	publish_read_info(ld, &info);
	info.version++;

	plan = calloc(cp->nr_vms + 1, sizeof(*plan));
	next = calloc(cp->nr_vms + 1, sizeof(*next));
	if (!plan || !next) {
		err = -ENOMEM;
		goto out;
	}
	/* Copy first: after the flip nothing may fail for want of memory. */
	for (i = 0; i < cp->nr_vms; i++) {
		err = cv_copy(&next[i].cv, &cp->vms[i]);
		if (err)
			goto out;
		next[i].digest_valid = true;
	}

	/* 1. stage the inactive generation of every changed VM */
	for (i = 0; i < cp->nr_vms; i++) {
		struct plan_vm *p = &plan[i];

		p->new_cv = &next[i].cv;
		p->old = find_vm(ps, p->new_cv->vm.vm_id);
		p->changed = !p->old || !p->old->digest_valid ||
			     memcmp(p->old->cv.digest, p->new_cv->digest,
				    sizeof(p->new_cv->digest));
		if (!p->changed) {
			p->new_cv->vm = p->old->cv.vm;
			stats->unchanged++;
			continue;
		}
		err = stage_vm(ld, p, info.version, stats);
		if (err) {
			unstage(ld, plan, i);
			goto out;
		}
	}

	/* 2. flip: one atomic record replacement per changed VM */
	for (i = 0; i < cp->nr_vms; i++) {
		struct compiled_vm *cv = plan[i].new_cv;
		__u32 id = cv->vm.vm_id;

		struct rayos_vm cur;

		if (!plan[i].changed)
			continue;
		/* Temporary grants' deadlines are run-time state, not policy:
		 * the new record keeps them, so a publish never opens a gap in
		 * a grant (the agent re-applies its grants right after). */
		if (!bpf_map_lookup_elem(ld->map_fds[RAYOS_MAP_VMS], &id, &cur))
			memcpy(cv->vm.cap_until_ns, cur.cap_until_ns, sizeof(cur.cap_until_ns));
		if (bpf_map_update_elem(ld->map_fds[RAYOS_MAP_VMS], &id, &cv->vm, BPF_ANY)) {
			/* Records are preallocated and the count was checked,
			 * so this takes a kernel failure. Say so loudly. */
			err = -errno;
			log_err("VM %u: cannot replace its record: %s; the policy is "
				"only partly applied", id, strerror(-err));
			unstage(ld, plan + i, cp->nr_vms - i);
			goto out;
		}
		sync_bind(ld, cv, false);
		loader_iface_sync(ld, id, NULL);	/* the data path's copy, same step */
		if (plan[i].old)
			stats->changed++;
		else
			stats->added++;
	}

	/* 3. records of VMs that left the policy */
	for (i = 0; i < ps->nr_vms; i++) {
		__u32 id = ps->vms[i].cv.vm.vm_id;

		if (in_policy(cp, id))
			continue;
		bpf_map_delete_elem(ld->map_fds[RAYOS_MAP_VMS], &id);
		sync_bind(ld, &ps->vms[i].cv, true);
		loader_iface_sync(ld, id, NULL);	/* its tap now drops (no record) */
		stats->removed++;
	}

	/* 4. wait out programs that may hold an old record */
	if (stats->changed || stats->removed) {
		err = loader_sync_programs(ld);
		if (err)
			log_warn("cannot wait for an RCU grace period (%s): deleting "
				 "old entries anyway", strerror(-err));
	}

	/* 5. delete the old generations, then forget them */
	for (i = 0; i < cp->nr_vms; i++) {
		if (plan[i].changed && plan[i].old)
			write_entries(ld, &plan[i].old->cv, plan[i].old->cv.vm.gen,
				      true, &stats->entries_deleted);
	}
	for (i = 0; i < ps->nr_vms; i++) {
		if (in_policy(cp, ps->vms[i].cv.vm.vm_id))
			continue;
		write_entries(ld, &ps->vms[i].cv, ps->vms[i].cv.vm.gen, true,
			      &stats->entries_deleted);
		if (ps->vms[i].cv.vm.slot < ps->nr_slots)
			ps->slot_used[ps->vms[i].cv.vm.slot] = SLOT_DIRTY;
	}
	for (i = 0; i < ps->nr_vms; i++)
		cv_release(&ps->vms[i].cv);
	free(ps->vms);
	ps->vms = next;
	ps->nr_vms = cp->nr_vms;
	next = NULL;
	index_slots(ps);

	info.applied_ns = clock_ns(CLOCK_REALTIME);
	info.nr_vms = cp->nr_vms;
	memcpy(info.digest, cp->digest, sizeof(info.digest));
	if (bpf_map_update_elem(ld->map_fds[RAYOS_MAP_POLICY], &zero, &info, BPF_ANY))
		log_warn("cannot record policy version %llu: %s",
			 (unsigned long long)info.version, strerror(errno));
	stats->version = info.version;
	for (i = 0; i < cp->nr_vms; i++)
		for (int d = 0; d < RAYOS_FW_DIRS; d++) {
			const struct rayos_dir_policy *dp = &cp->vms[i].vm.dir[d];

			if (!dp->nr_rules || ((dp->flags & RAYOS_DIRF_PORT_TAB) &&
			    !(dp->flags & (RAYOS_DIRF_CIDR4 | RAYOS_DIRF_CIDR6))))
				continue;
			if (!stats->slow_dirs++)
				stats->slow_vm = cp->vms[i].vm.vm_id;
		}
	err = 0;
out:
	if (next) {
		for (i = 0; i < cp->nr_vms; i++)
			cv_release(&next[i].cv);
		free(next);
	}
	free(plan);
	return err;
}

int publish_remove_vm(struct loader *ld, uint32_t vm_id)
{
	struct pub_state *ps = state(ld);
	struct pub_vm *pv = find_vm(ps, vm_id);
	uint64_t deleted = 0;
	__u32 id = vm_id;
	size_t at;
	int err;

	if (!pv)
		return -ENOENT;
	if (bpf_map_delete_elem(ld->map_fds[RAYOS_MAP_VMS], &id) && errno != ENOENT)
		return -errno;
	sync_bind(ld, &pv->cv, true);
	loader_iface_sync(ld, id, NULL);
	err = loader_sync_programs(ld);
	if (err)
		log_warn("cannot wait for an RCU grace period (%s): deleting VM %u's entries "
			 "anyway", strerror(-err), vm_id);
	write_entries(ld, &pv->cv, pv->cv.vm.gen, true, &deleted);
	if (pv->cv.vm.slot < ps->nr_slots)
		ps->slot_used[pv->cv.vm.slot] = SLOT_DIRTY;
	cv_release(&pv->cv);
	at = (size_t)(pv - ps->vms);
	memmove(pv, pv + 1, (ps->nr_vms - at - 1) * sizeof(*pv));
	ps->nr_vms--;
	return 0;
}

/* A capability grant or revoke: one record replacement, like a flip, so
 * the next device open sees the new caps.  The publisher's copy follows, so
 * an unchanged VM keeps the override through later publishes; a changed one
 * gets its policy's caps (see loader.h). */
int loader_vm_set_caps(struct loader *ld, uint32_t vm_id, uint64_t caps)
{
	uint64_t until[RAYOS_CAP_COUNT];
	struct rayos_vm rec;
	__u32 id = vm_id;

	if (bpf_map_lookup_elem(ld->map_fds[RAYOS_MAP_VMS], &id, &rec))
		return -errno;
	memcpy(until, rec.cap_until_ns, sizeof(until));	/* deadlines stay */
	return loader_vm_set_grants(ld, vm_id, caps, until);
}

int loader_vm_set_grants(struct loader *ld, uint32_t vm_id, uint64_t caps,
			 const uint64_t *until)
{
	struct pub_vm *pv = find_vm(state(ld), vm_id);
	struct rayos_vm rec;
	__u32 id = vm_id;

	if (bpf_map_lookup_elem(ld->map_fds[RAYOS_MAP_VMS], &id, &rec))
		return -errno;
	rec.caps = caps;
	memcpy(rec.cap_until_ns, until, sizeof(rec.cap_until_ns));
	if (bpf_map_update_elem(ld->map_fds[RAYOS_MAP_VMS], &id, &rec, BPF_EXIST))
		return -errno;
	if (pv) {
		pv->cv.vm.caps = caps;
		memcpy(pv->cv.vm.cap_until_ns, until, sizeof(pv->cv.vm.cap_until_ns));
	}
	return loader_iface_sync(ld, vm_id, NULL);
}

int loader_vm_record(const struct loader *ld, uint32_t vm_id, struct rayos_vm *out)
{
	__u32 id = vm_id;

	return bpf_map_lookup_elem(ld->map_fds[RAYOS_MAP_VMS], &id, out) ? -errno : 0;
}

int loader_vm_cached(const struct loader *ld, uint32_t vm_id, struct rayos_vm *out)
{
	const struct pub_vm *pv = find_vm(ld->pub, vm_id);

	if (!pv)
		return -ENOENT;
	*out = pv->cv.vm;
	return 0;
}

uint32_t publish_vm_of_slot(const struct loader *ld, uint32_t slot)
{
	const struct pub_state *ps = ld->pub;

	return ps && slot < ps->nr_slots ? ps->slot_vm[slot] : 0;
}

bool publish_binds(const struct loader *ld, uint32_t vm_id, uint32_t ip_be)
{
	struct rayos_ip_bind cur;
	__u32 key = vm_id;

	if (!ip_be || bpf_map_lookup_elem(ld->map_fds[RAYOS_MAP_IP_BIND], &key, &cur))
		return false;
	return (cur.flags & RAYOS_BINDF_IPV4) && cur.ipv4_be == ip_be &&
	       (!cur.lease_expiry_ns || cur.lease_expiry_ns > clock_ns(CLOCK_BOOTTIME));
}

int publish_lease_end(struct loader *ld, uint32_t vm_id, uint32_t ip_be)
{
	struct rayos_ip_bind cur, none = {};
	int fd = ld->map_fds[RAYOS_MAP_IP_BIND];
	__u32 key = vm_id;

	if (bpf_map_lookup_elem(fd, &key, &cur))
		return 0;
	if (cur.flags & RAYOS_BINDF_STATIC)
		return -EEXIST;
	/* Another lease of the VM was bound since: that one stays. */
	if (!(cur.flags & RAYOS_BINDF_IPV4) || cur.ipv4_be != ip_be)
		return 0;
	if (bpf_map_delete_elem(fd, &key) && errno != ENOENT)
		return -errno;
	return loader_iface_sync(ld, vm_id, &none);
}

int publish_lease(struct loader *ld, uint32_t vm_id, uint32_t ip_be, uint64_t expiry_boot_ns)
{
	struct rayos_ip_bind cur = {}, val = {
		.ipv4_be = ip_be,
		.flags = RAYOS_BINDF_IPV4,
		.lease_expiry_ns = expiry_boot_ns,
	};
	int fd = ld->map_fds[RAYOS_MAP_IP_BIND];
	__u32 key = vm_id;
	bool have = !bpf_map_lookup_elem(fd, &key, &cur);

	/* The policy's static address outranks a lease. */
	if (have && (cur.flags & RAYOS_BINDF_STATIC))
		return -EEXIST;
	if (ip_be && bpf_map_update_elem(fd, &key, &val, BPF_ANY))
		return -errno;
	if (!ip_be && have && bpf_map_delete_elem(fd, &key) && errno != ENOENT)
		return -errno;
	if (!ip_be)
		memset(&val, 0, sizeof(val));
	return loader_iface_sync(ld, vm_id, &val);
}
