// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Flattened policy -> the exact bytes of the rayos_vms and rayos_fw_* map
 * entries.  The kernel takes the first hit per dimension, so every entry here
 * carries all the rules that match any packet hitting it ("folding").
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "agent/core/digest.h"
#include "agent/policy/policy.h"

/* The ABI has explicit padding only: these sizes are what both sides agree on. */
_Static_assert(sizeof(struct rayos_dir_policy) == 40, "rayos_dir_policy layout");
_Static_assert(sizeof(struct rayos_vm) == 32 + 3 * 40 + 4 * 8 + 32 + 8 * RAYOS_CAP_COUNT,
	       "rayos_vm layout");
_Static_assert(offsetof(struct rayos_vm, ctl) == 152, "rayos_vm.ctl offset");
_Static_assert(offsetof(struct rayos_vm, dir) == 32, "rayos_vm.dir offset");
_Static_assert(sizeof(struct rayos_fw_port_key) == 12, "rayos_fw_port_key layout");
_Static_assert(sizeof(struct rayos_fw_bits) == 8, "rayos_fw_bits layout");
_Static_assert(sizeof(struct rayos_fw_range_key) == 16, "rayos_fw_range_key layout");
_Static_assert(offsetof(struct rayos_fw_range_key, port_be) == 12, "range port_be offset");
_Static_assert(sizeof(struct rayos_fw_cidr4_key) == 16, "rayos_fw_cidr4_key layout");
_Static_assert(sizeof(struct rayos_fw_cidr6_key) == 28, "rayos_fw_cidr6_key layout");
_Static_assert(sizeof(struct rayos_policy_info) == 56, "rayos_policy_info layout");
_Static_assert(sizeof(struct rayos_fw_tab_key) == 8, "rayos_fw_tab_key layout");
_Static_assert(sizeof(struct rayos_fw_tab) == 1920 + 64 * 12, "rayos_fw_tab layout");
_Static_assert(sizeof(struct rayos_ip_bind) == 32, "rayos_ip_bind layout");
_Static_assert(offsetof(struct rayos_ip_bind, lease_expiry_ns) == 24, "ip_bind expiry offset");
_Static_assert(sizeof(struct rayos_iface) == 16 + sizeof(struct rayos_vm) + 32, "rayos_iface layout");
_Static_assert(sizeof(struct rayos_host_addr) == 8, "rayos_host_addr layout");
_Static_assert(RAYOS_MAX_RULES == 64, "rule bitmaps are one __u64");
_Static_assert(sizeof(struct rayos_dev_key) == 16, "rayos_dev_key layout");
_Static_assert(offsetof(struct rayos_dev_key, gen) == 4, "rayos_dev_key.gen offset");
_Static_assert(sizeof(struct rayos_dev_rule) == 8, "rayos_dev_rule layout");
_Static_assert(sizeof(struct rayos_cgroup_val) == 8, "rayos_cgroup_val layout");
_Static_assert(sizeof(struct rayos_dev_file_key) == 16, "rayos_dev_file_key layout");
_Static_assert(sizeof(struct rayos_dev_file) == 8, "rayos_dev_file layout");
_Static_assert(sizeof(struct rayos_dev_ctr) == 64, "rayos_dev_ctr layout");
_Static_assert(sizeof(struct rayos_kvm_ctr) == 32, "rayos_kvm_ctr layout");
_Static_assert(sizeof(struct rayos_dev_inflight) == 24, "rayos_dev_inflight layout");

/* LPM keys match whole bytes from vm_id up to the address or port: the
 * prefix length counts those bits, whatever the header constant says. */
#define RANGE_KEY_BITS	((offsetof(struct rayos_fw_range_key, port_be) - \
			  offsetof(struct rayos_fw_range_key, vm_id)) * 8)
#define CIDR_KEY_BITS	((offsetof(struct rayos_fw_cidr4_key, addr_be) - \
			  offsetof(struct rayos_fw_cidr4_key, vm_id)) * 8)
_Static_assert(RANGE_KEY_BITS == RAYOS_FW_RANGE_PREFIX, "range key prefix");
_Static_assert(CIDR_KEY_BITS == RAYOS_FW_CIDR_PREFIX, "cidr key prefix");
_Static_assert(CIDR_KEY_BITS == (offsetof(struct rayos_fw_cidr6_key, addr) -
				 offsetof(struct rayos_fw_cidr6_key, vm_id)) * 8,
	       "cidr4 and cidr6 keys share their prefix");

/* Growable entry arrays of one VM. */
struct builder {
	struct compiled_vm *cvm;
	size_t cap_ports, cap_ranges, cap_cidr4, cap_cidr6;
};

static int grow(void **arr, size_t *cap, size_t nr, size_t elem)
{
	size_t ncap = *cap ? *cap * 2 : 16;
	void *p;

	if (nr < *cap)
		return 0;
	p = realloc(*arr, ncap * elem);
	if (!p)
		return -ENOMEM;
	*arr = p;
	*cap = ncap;
	return 0;
}

static int add_port(struct builder *b, int dir, uint8_t proto, uint8_t kind,
		    uint16_t port, uint64_t bits)
{
	struct compiled_vm *cvm = b->cvm;
	struct compiled_port *e;

	if (grow((void **)&cvm->ports, &b->cap_ports, cvm->nr_ports, sizeof(*e)))
		return -ENOMEM;
	e = &cvm->ports[cvm->nr_ports++];
	memset(e, 0, sizeof(*e));
	e->key.vm_id = cvm->vm.vm_id;
	e->key.dir = (uint8_t)dir;
	e->key.proto = proto;
	e->key.kind = kind;
	e->key.port_host = port;
	e->val.rules = bits;
	return 0;
}

static int add_range(struct builder *b, int dir, uint8_t proto, uint16_t port,
		     unsigned int plen, uint64_t bits)
{
	struct compiled_vm *cvm = b->cvm;
	struct compiled_range *e;

	if (grow((void **)&cvm->ranges, &b->cap_ranges, cvm->nr_ranges, sizeof(*e)))
		return -ENOMEM;
	e = &cvm->ranges[cvm->nr_ranges++];
	memset(e, 0, sizeof(*e));
	e->key.prefixlen = RANGE_KEY_BITS + plen;
	e->key.vm_id = cvm->vm.vm_id;
	e->key.dir = (uint8_t)dir;
	e->key.proto = proto;
	e->key.port_be = htons(port);
	e->val.rules = bits;
	return 0;
}

static int add_cidr(struct builder *b, int dir, const struct fw_cidr *p, uint64_t bits)
{
	struct compiled_vm *cvm = b->cvm;

	if (p->family == AF_INET) {
		struct compiled_cidr4 *e;

		if (grow((void **)&cvm->cidr4, &b->cap_cidr4, cvm->nr_cidr4, sizeof(*e)))
			return -ENOMEM;
		e = &cvm->cidr4[cvm->nr_cidr4++];
		memset(e, 0, sizeof(*e));
		e->key.prefixlen = CIDR_KEY_BITS + p->prefixlen;
		e->key.vm_id = cvm->vm.vm_id;
		e->key.dir = (uint8_t)dir;
		memcpy(&e->key.addr_be, p->addr, 4);
		e->val.rules = bits;
	} else {
		struct compiled_cidr6 *e;

		if (grow((void **)&cvm->cidr6, &b->cap_cidr6, cvm->nr_cidr6, sizeof(*e)))
			return -ENOMEM;
		e = &cvm->cidr6[cvm->nr_cidr6++];
		memset(e, 0, sizeof(*e));
		e->key.prefixlen = CIDR_KEY_BITS + p->prefixlen;
		e->key.vm_id = cvm->vm.vm_id;
		e->key.dir = (uint8_t)dir;
		memcpy(e->key.addr, p->addr, 16);
		e->val.rules = bits;
	}
	return 0;
}

/* ---- port dimension ------------------------------------------------------- */

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

static size_t sort_unique(uint32_t *v, size_t n)
{
	size_t i, out = 0;

	if (n)
		qsort(v, n, sizeof(*v), cmp_u32);
	for (i = 0; i < n; i++)
		if (!out || v[out - 1] != v[i])
			v[out++] = v[i];
	return out;
}

/* Rules of proto that list a single port or range covering [lo, hi]. */
static uint64_t covering(const struct fw_dir *fd, uint8_t proto, uint32_t lo, uint32_t hi,
			 bool ranges_only)
{
	uint64_t bits = 0;
	size_t i, j;

	for (i = 0; i < fd->nr_rules; i++) {
		const struct fw_rule *r = &fd->rules[i];

		if (r->proto != proto)
			continue;
		for (j = 0; j < r->nr_ports; j++) {
			const struct fw_port_range *pr = &r->ports[j];

			if (ranges_only && pr->lo == pr->hi)
				continue;
			if (pr->lo <= lo && hi <= pr->hi)
				bits |= 1ULL << i;
		}
	}
	return bits;
}

/* The port values to look at: single ports, or range breakpoints (lo, hi + 1). */
static int collect_points(const struct fw_dir *fd, uint8_t proto, bool ranges,
			  uint32_t **out, size_t *nr)
{
	size_t i, j, n = 0;
	uint32_t *v;

	for (i = 0; i < fd->nr_rules; i++)
		if (fd->rules[i].proto == proto)
			n += 2 * fd->rules[i].nr_ports;
	v = malloc((n ?: 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	n = 0;
	for (i = 0; i < fd->nr_rules; i++) {
		const struct fw_rule *r = &fd->rules[i];

		for (j = 0; r->proto == proto && j < r->nr_ports; j++) {
			if (!ranges && r->ports[j].lo == r->ports[j].hi) {
				v[n++] = r->ports[j].lo;
			} else if (ranges && r->ports[j].lo != r->ports[j].hi) {
				v[n++] = r->ports[j].lo;
				v[n++] = (uint32_t)r->ports[j].hi + 1;
			}
		}
	}
	*out = v;
	*nr = sort_unique(v, n);
	return 0;
}

/* [lo, hi] as maximal aligned blocks: each one an LPM prefix over 16 bits. */
static int add_range_prefixes(struct builder *b, int dir, uint8_t proto, uint32_t lo,
			      uint32_t hi, uint64_t bits)
{
	int ret;

	while (lo <= hi) {
		unsigned int k = 0;

		while (k < 16 && !(lo & ((2U << k) - 1)) && lo + (2U << k) - 1 <= hi)
			k++;
		ret = add_range(b, dir, proto, (uint16_t)lo, 16 - k, bits);
		if (ret)
			return ret;
		lo += 1U << k;
	}
	return 0;
}

static int compile_ranges(struct builder *b, const struct fw_dir *fd, int dir, uint8_t proto,
			  uint64_t base)
{
	uint32_t *pts, run_lo = 0;
	uint64_t run_bits = 0, bits;
	size_t i, n;
	int ret;

	ret = collect_points(fd, proto, true, &pts, &n);
	if (ret)
		return ret;
	/* Elementary intervals between breakpoints; equal neighbours merge. */
	for (i = 0; i + 1 < n; i++) {
		bits = covering(fd, proto, pts[i], pts[i + 1] - 1, true);
		bits = bits ? bits | base : 0;
		if (bits == run_bits)
			continue;
		if (run_bits)
			ret = add_range_prefixes(b, dir, proto, run_lo, pts[i] - 1, run_bits);
		if (ret)
			goto out;
		run_lo = pts[i];
		run_bits = bits;
	}
	if (run_bits)
		ret = add_range_prefixes(b, dir, proto, run_lo, pts[n - 1] - 1, run_bits);
	if (!ret && n)
		b->cvm->vm.dir[dir].flags |= RAYOS_DIRF_PORT_RANGES;
out:
	free(pts);
	return ret;
}

static int compile_proto(struct builder *b, const struct fw_dir *fd, int dir, uint8_t proto,
			 uint64_t any_proto)
{
	uint64_t portless = 0, base;
	uint32_t *ports;
	size_t i, n;
	int ret = 0;

	for (i = 0; i < fd->nr_rules; i++)
		if (fd->rules[i].proto == proto && !fd->rules[i].nr_ports)
			portless |= 1ULL << i;
	base = portless | any_proto;
	if (portless) {
		ret = add_port(b, dir, proto, RAYOS_PORT_ANY, 0, base);
		if (ret)
			return ret;
	}
	ret = collect_points(fd, proto, false, &ports, &n);
	if (ret)
		return ret;
	for (i = 0; !ret && i < n; i++)
		ret = add_port(b, dir, proto, RAYOS_PORT_EXACT, (uint16_t)ports[i],
			       covering(fd, proto, ports[i], ports[i], false) | base);
	free(ports);
	return ret ?: compile_ranges(b, fd, dir, proto, base);
}

static int compile_port_dim(struct builder *b, const struct fw_dir *fd, int dir)
{
	bool used[256] = { false };
	uint64_t any_proto = 0;
	size_t i;
	int ret;

	for (i = 0; i < fd->nr_rules; i++) {
		if (fd->rules[i].proto == RAYOS_PROTO_ANY)
			any_proto |= 1ULL << i;
		else
			used[fd->rules[i].proto] = true;
	}
	for (i = 0; i < RAYOS_PROTO_ANY; i++) {
		if (!used[i])
			continue;
		ret = compile_proto(b, fd, dir, (uint8_t)i, any_proto);
		if (ret)
			return ret;
	}
	return any_proto ? add_port(b, dir, RAYOS_PROTO_ANY, RAYOS_PORT_ANY, 0, any_proto) : 0;
}

/* ---- address dimension ---------------------------------------------------- */

static bool cidr_contains(const struct fw_cidr *outer, const struct fw_cidr *inner)
{
	int full = outer->prefixlen / 8, rest = outer->prefixlen % 8;

	if (outer->family != inner->family || outer->prefixlen > inner->prefixlen)
		return false;
	if (memcmp(outer->addr, inner->addr, (size_t)full))
		return false;
	return !rest || !((outer->addr[full] ^ inner->addr[full]) & (0xff00 >> rest));
}

static int cmp_cidr(const void *a, const void *b)
{
	const struct fw_cidr *x = a, *y = b;

	if (x->family != y->family)
		return x->family < y->family ? -1 : 1;
	if (x->prefixlen != y->prefixlen)
		return x->prefixlen < y->prefixlen ? -1 : 1;
	return memcmp(x->addr, y->addr, x->family == AF_INET ? 4 : 16);
}

/* Each distinct prefix carries every rule with a prefix containing it, so the
 * longest match alone is the complete answer. */
static int compile_cidr_dim(struct builder *b, const struct fw_dir *fd, int dir)
{
	struct rayos_dir_policy *dp = &b->cvm->vm.dir[dir];
	struct fw_cidr *all;
	size_t i, j, k, n = 0, uniq = 0;
	int ret = 0;

	for (i = 0; i < fd->nr_rules; i++) {
		n += fd->rules[i].nr_cidrs;
		if (!fd->rules[i].nr_cidrs)
			dp->cidr_wild_bits |= 1ULL << i;
	}
	all = malloc((n ?: 1) * sizeof(*all));
	if (!all)
		return -ENOMEM;
	for (i = 0, n = 0; i < fd->nr_rules; i++)
		for (j = 0; j < fd->rules[i].nr_cidrs; j++)
			all[n++] = fd->rules[i].cidrs[j];
	if (n)
		qsort(all, n, sizeof(*all), cmp_cidr);
	for (i = 0; i < n; i++)
		if (!uniq || cmp_cidr(&all[uniq - 1], &all[i]))
			all[uniq++] = all[i];
	for (k = 0; !ret && k < uniq; k++) {
		uint64_t bits = 0;

		for (i = 0; i < fd->nr_rules; i++)
			for (j = 0; j < fd->rules[i].nr_cidrs; j++)
				if (cidr_contains(&fd->rules[i].cidrs[j], &all[k]))
					bits |= 1ULL << i;
		dp->flags |= all[k].family == AF_INET ? RAYOS_DIRF_CIDR4 : RAYOS_DIRF_CIDR6;
		ret = add_cidr(b, dir, &all[k], bits);
	}
	free(all);
	return ret;
}

/* ---- per VM and digests ----------------------------------------------------- */

static int cmp_port(const void *a, const void *b)
{
	return memcmp(&((const struct compiled_port *)a)->key,
		      &((const struct compiled_port *)b)->key, sizeof(struct rayos_fw_port_key));
}

static int cmp_range(const void *a, const void *b)
{
	return memcmp(&((const struct compiled_range *)a)->key,
		      &((const struct compiled_range *)b)->key, sizeof(struct rayos_fw_range_key));
}

static int cmp_cidr4(const void *a, const void *b)
{
	return memcmp(&((const struct compiled_cidr4 *)a)->key,
		      &((const struct compiled_cidr4 *)b)->key, sizeof(struct rayos_fw_cidr4_key));
}

static int cmp_cidr6(const void *a, const void *b)
{
	return memcmp(&((const struct compiled_cidr6 *)a)->key,
		      &((const struct compiled_cidr6 *)b)->key, sizeof(struct rayos_fw_cidr6_key));
}

static void hash_count(struct sha256_ctx *ctx, size_t n)
{
	uint8_t le[8];
	int i;

	for (i = 0; i < 8; i++)
		le[i] = (uint8_t)((uint64_t)n >> (8 * i));
	sha256_update(ctx, le, sizeof(le));
}

/* Each table as its count, then key and value bytes of every entry: the same
 * bytes the maps get (host byte order), never the padded C structs. */
#define HASH_TABLE(ctx, arr, nr) do {						\
	size_t __i;								\
	hash_count(ctx, nr);							\
	for (__i = 0; __i < (nr); __i++) {					\
		sha256_update(ctx, &(arr)[__i].key, sizeof((arr)[__i].key));	\
		sha256_update(ctx, &(arr)[__i].val, sizeof((arr)[__i].val));	\
	}									\
} while (0)

static int digest_vm(struct compiled_vm *cvm)
{
	static const char tag[] = "rayos compiled vm v3";
	uint8_t has_bind = cvm->has_bind;
	struct sha256_ctx ctx;

	sha256_init(&ctx);
	sha256_update(&ctx, tag, sizeof(tag));
	sha256_update(&ctx, &cvm->vm, sizeof(cvm->vm));
	sha256_update(&ctx, &has_bind, 1);
	sha256_update(&ctx, &cvm->bind, sizeof(cvm->bind));
	HASH_TABLE(&ctx, cvm->ports, cvm->nr_ports);
	HASH_TABLE(&ctx, cvm->ranges, cvm->nr_ranges);
	HASH_TABLE(&ctx, cvm->cidr4, cvm->nr_cidr4);
	HASH_TABLE(&ctx, cvm->cidr6, cvm->nr_cidr6);
	HASH_TABLE(&ctx, cvm->tabs, cvm->nr_tabs);
	HASH_TABLE(&ctx, cvm->dev, cvm->nr_dev);
	return sha256_final(&ctx, cvm->digest);
}

static void fill_record(struct compiled_vm *cvm, const struct policy_vm *vm)
{
	int d;

	memset(cvm, 0, sizeof(*cvm));
	cvm->vm.vm_id = vm->id;
	cvm->vm.caps = vm->caps;
	if (vm->has_mac) {
		cvm->vm.flags |= RAYOS_VMF_MAC;
		memcpy(cvm->vm.mac, vm->mac, sizeof(cvm->vm.mac));
	}
	if (vm->quarantined)
		cvm->vm.flags |= RAYOS_VMF_QUARANTINE;
	for (d = 0; d < RAYOS_FW_DIRS; d++) {
		struct rayos_dir_policy *dp = &cvm->vm.dir[d];
		size_t i;

		dp->default_action = vm->fw[d].default_action;
		dp->nr_rules = (uint8_t)vm->fw[d].nr_rules;
		dp->rate_bytes = vm->fw[d].rate_bytes;
		dp->burst_bytes = vm->fw[d].burst_bytes;
		for (i = 0; i < vm->fw[d].nr_rules; i++)
			if (vm->fw[d].rules[i].action == RAYOS_ACT_ALLOW)
				dp->allow_bits |= 1ULL << i;
	}
	/* A burst of two seconds' worth: a booting guest sends its ARP probes
	 * and announcements, its DISCOVER and REQUEST back to back. */
	for (d = 0; d < RAYOS_CTL_MAX; d++) {
		cvm->vm.ctl[d].rate = vm->ctl_rate[d];
		cvm->vm.ctl[d].burst = vm->ctl_rate[d] > UINT32_MAX / 2 ? UINT32_MAX
								       : 2 * vm->ctl_rate[d];
	}
	for (size_t i = 0; i < vm->nr_ll6 && i < RAYOS_LL6_MAX; i++)
		memcpy(cvm->vm.ll6[i], vm->ll6[i], 16);
	if (vm->has_ipv4 || vm->has_ipv6) {
		cvm->has_bind = true;
		cvm->bind.flags = RAYOS_BINDF_STATIC;
		if (vm->has_ipv4) {
			cvm->bind.flags |= RAYOS_BINDF_IPV4;
			cvm->bind.ipv4_be = vm->ipv4_be;
		}
		if (vm->has_ipv6) {
			cvm->bind.flags |= RAYOS_BINDF_IPV6;
			memcpy(cvm->bind.ipv6, vm->ipv6, sizeof(cvm->bind.ipv6));
		}
	}
}

/* ---- devices ----------------------------------------------------------------- */

static int cmp_dev(const void *a, const void *b)
{
	return memcmp(&((const struct compiled_dev *)a)->key,
		      &((const struct compiled_dev *)b)->key, sizeof(struct rayos_dev_key));
}

/* The entry of (type, major, minor), made on first use: one entry per key
 * carries every bit any rule or disk gives it. */
static struct compiled_dev *dev_entry(struct compiled_vm *cvm, size_t *cap, uint8_t type,
				      uint32_t major, uint32_t minor)
{
	struct compiled_dev *e;
	size_t i;

	for (i = 0; i < cvm->nr_dev; i++) {
		e = &cvm->dev[i];
		if (e->key.type == type && e->key.major == major && e->key.minor == minor)
			return e;
	}
	if (grow((void **)&cvm->dev, cap, cvm->nr_dev, sizeof(*e)))
		return NULL;
	e = &cvm->dev[cvm->nr_dev++];
	memset(e, 0, sizeof(*e));
	e->key.vm_id = cvm->vm.vm_id;
	e->key.type = type;
	e->key.major = major;
	e->key.minor = minor;
	return e;
}

/* CAP_GPU limited to nodes: mark each listed node's entry. */
static int limit_nodes(const struct policy_vm *vm, struct compiled_vm *cvm, size_t *cap)
{
	if (!vm->limits.has_nodes)
		return 0;
	cvm->vm.flags |= RAYOS_VMF_GPU_NODES;
	for (uint32_t i = 0; i < vm->limits.nr_nodes; i++) {
		struct compiled_dev *e = dev_entry(cvm, cap, RAYOS_DEV_CHAR,
						   vm->limits.nodes[i].major,
						   vm->limits.nodes[i].minor);

		if (!e)
			return -ENOMEM;
		e->val.limit |= RAYOS_DEV_LIMIT_GPU;
	}
	return 0;
}

/* Explicit rules and block disks -> rayos_dev_rules entries, sorted.  Image
 * files are not here: the agent resolves them when the VM is registered. */
static int compile_devices(const struct policy_vm *vm, struct compiled_vm *cvm)
{
	struct compiled_dev *e;
	size_t i, cap = 0;

	for (i = 0; i < vm->nr_dev_allow; i++) {
		const struct dev_rule *r = &vm->dev_allow[i];

		e = dev_entry(cvm, &cap, r->type, r->major, r->minor);
		if (!e)
			return -ENOMEM;
		e->val.allow |= r->access;
	}
	for (i = 0; i < vm->nr_dev_deny; i++) {
		const struct dev_rule *r = &vm->dev_deny[i];

		e = dev_entry(cvm, &cap, r->type, r->major, r->minor);
		if (!e)
			return -ENOMEM;
		e->val.deny |= r->access;
	}
	for (i = 0; i < vm->nr_disks; i++) {
		const struct policy_disk *d = &vm->disks[i];

		if (!d->is_block)
			continue;
		e = dev_entry(cvm, &cap, RAYOS_DEV_BLOCK, d->major, d->minor);
		if (!e)
			return -ENOMEM;
		e->val.disk |= d->mode;
		/* CAP_DISK_* limited to listed disks: mark those. */
		if (caps_disk_allowed(&vm->limits, CAPS_DISK_READ, d->path))
			e->val.limit |= RAYOS_DEV_LIMIT_DISK_READ;
		if (caps_disk_allowed(&vm->limits, CAPS_DISK_WRITE, d->path))
			e->val.limit |= RAYOS_DEV_LIMIT_DISK_WRITE;
	}
	if (vm->limits.has_disks[CAPS_DISK_READ])
		cvm->vm.flags |= RAYOS_VMF_DISK_READ_LIMIT;
	if (vm->limits.has_disks[CAPS_DISK_WRITE])
		cvm->vm.flags |= RAYOS_VMF_DISK_WRITE_LIMIT;
	if (limit_nodes(vm, cvm, &cap))
		return -ENOMEM;
	if (cvm->nr_dev)
		qsort(cvm->dev, cvm->nr_dev, sizeof(*cvm->dev), cmp_dev);
	return 0;
}

static void free_compiled_vm(struct compiled_vm *cvm)
{
	free(cvm->dev);
	free(cvm->ports);
	free(cvm->ranges);
	free(cvm->cidr4);
	free(cvm->cidr6);
	free(cvm->tabs);
}

/* Entries of arr[0..*nr) outside direction dir, kept in order. */
#define KEEP_OTHER_DIR(arr, nr, dir) do {					\
	size_t __o = 0;								\
	for (size_t __i = 0; __i < *(nr); __i++)				\
		if ((arr)[__i].key.dir != (dir))				\
			(arr)[__o++] = (arr)[__i];				\
	*(nr) = __o;								\
} while (0)

/*
 * Move direction dir's port dimension (or at least its ranges) and CIDRs
 * from the hash and the LPM tries into an interval table where they fit:
 * one lookup and a few in-value steps instead of up to four hash lookups
 * and two trie walks, whose cost grows with the whole host's entries
 * (README, decisions).  Dimensions that do not fit stay where they were.
 */
static int tabulate(struct compiled_vm *cvm, int dir)
{
	struct rayos_dir_policy *dp = &cvm->vm.dir[dir];
	struct compiled_tab *t;
	unsigned int got;

	if (!dp->nr_rules)
		return 0;
	/* One per direction at most: sized once (2 KiB each, so not grow()). */
	if (!cvm->tabs && !(cvm->tabs = malloc(RAYOS_FW_DIRS * sizeof(*t))))
		return -ENOMEM;
	t = &cvm->tabs[cvm->nr_tabs];
	memset(&t->key, 0, sizeof(t->key));
	got = fw_tab_build(&t->val, dir, cvm->ports, cvm->nr_ports, cvm->ranges, cvm->nr_ranges,
			   cvm->cidr4, cvm->nr_cidr4, cvm->cidr6, cvm->nr_cidr6);
	if (!got)
		return 0;
	t->key.vm_id = cvm->vm.vm_id;
	t->key.dir = (uint8_t)dir;
	cvm->nr_tabs++;
	dp->flags |= got;
	if (got & RAYOS_DIRF_PORT_TAB)
		KEEP_OTHER_DIR(cvm->ports, &cvm->nr_ports, dir);
	if (got & (RAYOS_DIRF_PORT_TAB | RAYOS_DIRF_RANGE_TAB)) {
		KEEP_OTHER_DIR(cvm->ranges, &cvm->nr_ranges, dir);
		dp->flags &= ~RAYOS_DIRF_PORT_RANGES;
	}
	if (got & RAYOS_DIRF_CIDR4_TAB) {
		KEEP_OTHER_DIR(cvm->cidr4, &cvm->nr_cidr4, dir);
		dp->flags &= ~RAYOS_DIRF_CIDR4;
	}
	if (got & RAYOS_DIRF_CIDR6_TAB) {
		KEEP_OTHER_DIR(cvm->cidr6, &cvm->nr_cidr6, dir);
		dp->flags &= ~RAYOS_DIRF_CIDR6;
	}
	return 0;
}

/* ---- fine-grained CAP_NETWORK ------------------------------------------------ */

/* Protocols a port limit covers: those whose ports the data path reads
 * (bpf/include/parse.bpf.h) get a deny for the ports outside the list;
 * SCTP, whose ports it does not read, is refused whole.  ICMP, ICMPv6 and
 * other IP protocols have no ports: the firewall alone judges them. */
static const uint8_t limit_protos[] = { IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP };
#define LIMIT_RULES	(sizeof(limit_protos) / sizeof(limit_protos[0]))

/* The rules of direction d with the port limit's denies after them: the
 * kernel lets those win over every rule before them (rayos_dir_policy.
 * cap_rules), so a new flow must pass the firewall and the list.  *out gets
 * a rule array to free (NULL when the VM has no port limit); complement
 * holds the ranges the denies point at. */
static int limit_rules(const struct policy_vm *vm, int d, struct fw_dir *out,
		       struct fw_port_range *complement, size_t nr_complement,
		       struct policy_error *err)
{
	const struct fw_dir *fd = &vm->fw[d];
	struct fw_rule *rules;
	size_t i;

	*out = *fd;
	if (!vm->limits.has_ports || d == RAYOS_FW_HOST || !nr_complement)
		return 0;	/* HOST is passed on to OUT, which has them */
	if (fd->nr_rules + LIMIT_RULES > RAYOS_MAX_RULES) {
		memset(err, 0, sizeof(*err));
		snprintf(err->file, sizeof(err->file), "%s", vm->source);
		snprintf(err->msg, sizeof(err->msg), "VM %u \"%s\" has %zu \"%s\" rules and its "
			 "CAP_NETWORK port limit adds %zu; at most %d", vm->id, vm->name,
			 fd->nr_rules, d == RAYOS_DIR_IN ? "in" : "out", LIMIT_RULES,
			 RAYOS_MAX_RULES);
		return -EINVAL;
	}
	rules = calloc(fd->nr_rules + LIMIT_RULES, sizeof(*rules));
	if (!rules)
		return -ENOMEM;
	if (fd->nr_rules)
		memcpy(rules, fd->rules, fd->nr_rules * sizeof(*rules));
	for (i = 0; i < LIMIT_RULES; i++) {
		struct fw_rule *r = &rules[fd->nr_rules + i];

		r->action = RAYOS_ACT_DENY;
		r->proto = limit_protos[i];
		if (limit_protos[i] != IPPROTO_SCTP) {
			r->nr_ports = nr_complement;
			r->ports = complement;
		}
		r->comment = (char *)"CAP_NETWORK port limit";
	}
	/* The complement is never empty (port 0 is in no list), so no deny
	 * ends up without ports, which would mean every port. */
	out->nr_rules = fd->nr_rules + LIMIT_RULES;
	out->rules = rules;
	return 0;
}

static int compile_vm(const struct policy_vm *pvm, struct compiled_vm *cvm,
		      struct policy_error *err)
{
	struct fw_port_range complement[CAPS_MAX_PORT_RANGES + 1];
	struct caps_port_range cr[CAPS_MAX_PORT_RANGES + 1];
	struct builder b = { .cvm = cvm };
	struct policy_vm *vm;
	size_t nr_cr = 0;
	int d, ret = 0;

	for (d = 0; d < RAYOS_FW_DIRS; d++)
		if (pvm->fw[d].nr_rules > RAYOS_MAX_RULES) {
			memset(err, 0, sizeof(*err));
			snprintf(err->file, sizeof(err->file), "%s", pvm->source);
			snprintf(err->msg, sizeof(err->msg), "VM %u \"%s\" has %zu \"%s\" rules; at "
				 "most %d", pvm->id, pvm->name, pvm->fw[d].nr_rules,
				 d == RAYOS_DIR_IN ? "in" : d == RAYOS_DIR_OUT ? "out" : "host",
				 RAYOS_MAX_RULES);
			return -EINVAL;
		}
	/* The VM as enforced: its rules with the limit's, its rates the lower
	 * of the policy's and the limit's. */
	vm = malloc(sizeof(*vm));
	if (!vm)
		return -ENOMEM;
	*vm = *pvm;
	if (pvm->limits.has_ports) {
		nr_cr = caps_ports_complement(&pvm->limits.ports, cr, CAPS_MAX_PORT_RANGES + 1);
		for (size_t i = 0; i < nr_cr; i++)
			complement[i] = (struct fw_port_range){ cr[i].lo, cr[i].hi };
	}
	for (d = 0; d < RAYOS_FW_DIRS; d++)
		vm->fw[d].rules = NULL;
	for (d = 0; !ret && d < RAYOS_FW_DIRS; d++)
		ret = limit_rules(pvm, d, &vm->fw[d], complement, nr_cr, err);
	if (ret)
		goto out;
	for (d = 0; d < RAYOS_DIR_MAX; d++)
		vm->fw[d].rate_bytes = policy_vm_rate(pvm, d, &vm->fw[d].burst_bytes);
	fill_record(cvm, vm);
	for (d = 0; d < RAYOS_FW_DIRS; d++)
		cvm->vm.dir[d].cap_rules = (uint8_t)(vm->fw[d].nr_rules - pvm->fw[d].nr_rules);
	for (d = 0; !ret && d < RAYOS_FW_DIRS; d++) {
		ret = compile_port_dim(&b, &vm->fw[d], d);
		if (!ret)
			ret = compile_cidr_dim(&b, &vm->fw[d], d);
	}
	if (!ret)
		ret = compile_devices(vm, cvm);
	if (ret)
		goto out;
	if (cvm->nr_ports)
		qsort(cvm->ports, cvm->nr_ports, sizeof(*cvm->ports), cmp_port);
	if (cvm->nr_ranges)
		qsort(cvm->ranges, cvm->nr_ranges, sizeof(*cvm->ranges), cmp_range);
	if (cvm->nr_cidr4)
		qsort(cvm->cidr4, cvm->nr_cidr4, sizeof(*cvm->cidr4), cmp_cidr4);
	if (cvm->nr_cidr6)
		qsort(cvm->cidr6, cvm->nr_cidr6, sizeof(*cvm->cidr6), cmp_cidr6);
	for (d = 0; !ret && d < RAYOS_FW_DIRS; d++)
		ret = tabulate(cvm, d);
	if (!ret)
		ret = digest_vm(cvm);
out:
	for (d = 0; d < RAYOS_FW_DIRS; d++)
		if (vm->fw[d].rules != pvm->fw[d].rules)
			free(vm->fw[d].rules);
	free(vm);
	return ret;
}

int policy_compile(const struct policy_set *set, struct compiled_policy **out,
		   struct policy_error *err)
{
	struct compiled_policy *cp;
	struct sha256_ctx ctx;
	size_t i;
	int ret = 0;

	*out = NULL;
	memset(err, 0, sizeof(*err));
	cp = calloc(1, sizeof(*cp));
	if (!cp)
		return -ENOMEM;
	cp->vms = calloc(set->nr_vms ?: 1, sizeof(*cp->vms));
	if (!cp->vms) {
		ret = -ENOMEM;
		goto out;
	}
	/* set->vms is sorted by id, so the policy digest is in id order too. */
	sha256_init(&ctx);
	for (i = 0; i < set->nr_vms; i++) {
		ret = compile_vm(&set->vms[i], &cp->vms[i], err);
		cp->nr_vms++;	/* even on error: its partial entries need freeing */
		if (ret) {
			sha256_final(&ctx, cp->digest);	/* frees the context */
			goto out;
		}
		sha256_update(&ctx, cp->vms[i].digest, sizeof(cp->vms[i].digest));
	}
	ret = sha256_final(&ctx, cp->digest);
out:
	if (ret)
		compiled_policy_free(cp);
	else
		*out = cp;
	return ret;
}

void compiled_policy_free(struct compiled_policy *cp)
{
	size_t i;

	if (!cp)
		return;
	for (i = 0; i < cp->nr_vms; i++)
		free_compiled_vm(&cp->vms[i]);
	free(cp->vms);
	free(cp);
}
