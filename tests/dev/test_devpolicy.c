// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The shared device decision (bpf/include/devpolicy.bpf.h) compiled for
 * user space: the same source the cgroup and LSM programs run, with a shim
 * for the three helpers and the three maps it uses.  Table-driven cases of
 * the decision order, the generation a lookup uses, the cgroup -> VM search
 * through ancestors, and agreement with the agent's table (agent/vm/devices.c)
 * over every char major 0..4095.  test_dev.c runs the same decision in the
 * kernel.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <linux/types.h>

#include "agent/vm/devices.h"
#include "bpf/abi/dev.h"
#include "bpf/abi/policy.h"
#include "tests/lib/tap.h"

/* ---- shim: what the BPF side gets from bpf_helpers.h and the maps ---------- */

/* glibc's own __always_inline is fine for user space; the BPF side gets
 * libbpf's.  Either way the header's functions are plain static inlines. */
#ifndef __always_inline
#define __always_inline inline
#endif

struct fake_map {
	const char *name;
};
static struct fake_map rayos_vms = { "rayos_vms" };
static struct fake_map rayos_cgroups = { "rayos_cgroups" };
static struct fake_map rayos_dev_rules = { "rayos_dev_rules" };
static struct fake_map rayos_cap_state = { "rayos_cap_state" };
static struct fake_map rayos_cap_cache = { "rayos_cap_cache" };
static struct fake_map rayos_cap_epoch = { "rayos_cap_epoch" };
static struct fake_map rayos_cap_switch = { "rayos_cap_switch" };
static struct fake_map rayos_cap_revoke = { "rayos_cap_revoke" };

#define MAX_FAKE 16
static struct {
	struct rayos_vm vms[MAX_FAKE];
	size_t nr_vms;
	struct { __u64 id; struct rayos_cgroup_val v; } cgs[MAX_FAKE];
	size_t nr_cgs;
	struct { struct rayos_dev_key k; struct rayos_dev_rule v; } rules[MAX_FAKE];
	size_t nr_rules;
	__u64 cgid;
	__u64 now_boot_ns;		/* bpf_ktime_get_boot_ns() */
	__u64 jiffies;			/* bpf_jiffies64() */
	unsigned int boot_reads;	/* how often the walk read the boot clock */
	struct rayos_cap_state cap_state[MAX_FAKE];	/* by slot */
	struct rayos_cap_cache cap_cache[MAX_FAKE];	/* by slot, one CPU */
	__u32 cap_epoch;
	struct rayos_cap_switch sw;	/* revoke-all */
	struct rayos_cap_revoke rev[8];	/* by slot */
	__u64 ancestor[9];		/* by level, 0 = deeper than the task */
	unsigned int lookups;
} fk;

static void *bpf_map_lookup_elem(void *map, const void *key)
{
	fk.lookups++;
	if (map == &rayos_vms) {
		for (size_t i = 0; i < fk.nr_vms; i++)
			if (fk.vms[i].vm_id == *(const __u32 *)key)
				return &fk.vms[i];
	} else if (map == &rayos_cgroups) {
		for (size_t i = 0; i < fk.nr_cgs; i++)
			if (fk.cgs[i].id == *(const __u64 *)key)
				return &fk.cgs[i].v;
	} else if (map == &rayos_cap_state || map == &rayos_cap_cache) {
		__u32 slot = *(const __u32 *)key;

		if (slot >= MAX_FAKE)
			return NULL;
		return map == &rayos_cap_state ? (void *)&fk.cap_state[slot]
					       : (void *)&fk.cap_cache[slot];
	} else if (map == &rayos_cap_epoch) {
		return *(const __u32 *)key ? NULL : &fk.cap_epoch;
	} else if (map == &rayos_cap_switch) {
		return *(const __u32 *)key == 0 ? &fk.sw : NULL;
	} else if (map == &rayos_cap_revoke) {
		__u32 slot = *(const __u32 *)key;

		return slot < 8 ? &fk.rev[slot] : NULL;
	} else if (map == &rayos_dev_rules) {
		for (size_t i = 0; i < fk.nr_rules; i++)
			if (!memcmp(&fk.rules[i].k, key, sizeof(fk.rules[i].k)))
				return &fk.rules[i].v;
	}
	return NULL;
}

static __u64 bpf_get_current_cgroup_id(void)
{
	return fk.cgid;
}

static __u64 bpf_get_current_ancestor_cgroup_id(int level)
{
	return level >= 0 && level <= 8 ? fk.ancestor[level] : 0;
}

static __u64 bpf_ktime_get_boot_ns(void)
{
	fk.boot_reads++;
	return fk.now_boot_ns;
}

static __u64 bpf_jiffies64(void)
{
	return fk.jiffies;
}

#include "bpf/include/devpolicy.bpf.h"

/* ---- fixtures -------------------------------------------------------------------- */

#define CAP(x)	(1ULL << RAYOS_CAP_##x)
#define C	RAYOS_DEV_CHAR
#define B	RAYOS_DEV_BLOCK
#define R	RAYOS_DEV_ACC_READ
#define W	RAYOS_DEV_ACC_WRITE
#define M	RAYOS_DEV_ACC_MKNOD
#define ANY	RAYOS_DEV_MINOR_ANY

static void reset(void)
{
	memset(&fk, 0, sizeof(fk));
	fk.jiffies = 1ULL << 32;	/* never 0 in the kernel: 0 marks an invalid cache cell */
}

static void add_vm(__u32 id, __u64 caps, __u8 gen, __u32 slot)
{
	struct rayos_vm *v = &fk.vms[fk.nr_vms++];

	memset(v, 0, sizeof(*v));
	v->vm_id = id;
	v->caps = caps;
	v->gen = gen;
	v->slot = slot;
}

static void add_rule(__u32 vm, __u8 gen, __u8 type, __u32 major, __u32 minor, __u8 allow,
		     __u8 deny, __u8 disk)
{
	fk.rules[fk.nr_rules].k = (struct rayos_dev_key){ .vm_id = vm, .gen = gen, .type = type,
							   .major = major, .minor = minor };
	fk.rules[fk.nr_rules].v = (struct rayos_dev_rule){ .allow = allow, .deny = deny,
							    .disk = disk };
	fk.nr_rules++;
}

/* ---- decision table ----------------------------------------------------------------- */

struct vcase {
	const char *name;
	__u64 caps;
	struct rayos_dev_rule exact, wild;	/* all-zero: no entry */
	__u32 type, major, minor, access;
	int allow;
	__u32 reason;
};

static const struct vcase vcases[] = {
	{ "tun without CAP_NETWORK", 0, {}, {}, C, 10, 200, R | W, 0, RAYOS_DEVR_DEFAULT_DENY },
	{ "tun with CAP_NETWORK", CAP(NETWORK), {}, {}, C, 10, 200, R | W, 1, RAYOS_DEVR_CAP },
	{ "vhost-net with CAP_NETWORK", CAP(NETWORK), {}, {}, C, 10, 238, R | W, 1, RAYOS_DEVR_CAP },
	{ "mknod tun needs an explicit rule", CAP(NETWORK), {}, {}, C, 10, 200, M, 0,
	  RAYOS_DEVR_DEFAULT_DENY },
	{ "dri any minor with CAP_GPU", CAP(GPU), {}, {}, C, 226, 129, R | W, 1, RAYOS_DEVR_CAP },
	{ "dri without CAP_GPU", CAP(NETWORK), {}, {}, C, 226, 0, R, 0, RAYOS_DEVR_DEFAULT_DENY },
	{ "input with CAP_INPUT", CAP(INPUT), {}, {}, C, 13, 64, R, 1, RAYOS_DEVR_CAP },
	{ "uinput with CAP_INPUT", CAP(INPUT), {}, {}, C, 10, 223, W, 1, RAYOS_DEVR_CAP },
	{ "pty 143 with CAP_CONSOLE", CAP(CONSOLE), {}, {}, C, 143, 9, R | W, 1, RAYOS_DEVR_CAP },
	{ "pty 144 is not a pty", CAP(CONSOLE), {}, {}, C, 144, 0, R, 0, RAYOS_DEVR_DEFAULT_DENY },
	{ "ptmx with CAP_CONSOLE", CAP(CONSOLE), {}, {}, C, 5, 2, R | W, 1, RAYOS_DEVR_CAP },
	{ "tty 5:0 is not basic", ~0ULL, {}, {}, C, 5, 0, R, 0, RAYOS_DEVR_DEFAULT_DENY },
	{ "kvm always", 0, {}, {}, C, 10, 232, R | W, 1, RAYOS_DEVR_BASIC },
	{ "null always", 0, {}, {}, C, 1, 3, R | W, 1, RAYOS_DEVR_BASIC },
	{ "urandom always", 0, {}, {}, C, 1, 9, R, 1, RAYOS_DEVR_BASIC },
	{ "mem never by default", ~0ULL, {}, {}, C, 1, 1, R, 0, RAYOS_DEVR_DEFAULT_DENY },
	{ "explicit deny beats cap", CAP(NETWORK), { .deny = R | W }, {}, C, 10, 200, R, 0,
	  RAYOS_DEVR_EXPLICIT_DENY },
	{ "explicit deny beats basics", 0, { .deny = W }, {}, C, 1, 3, W, 0,
	  RAYOS_DEVR_EXPLICIT_DENY },
	{ "deny of w leaves r to the basics", 0, { .deny = W }, {}, C, 1, 3, R, 1,
	  RAYOS_DEVR_BASIC },
	{ "explicit deny beats explicit allow", 0, { .allow = R, .deny = R }, {}, C, 241, 0, R, 0,
	  RAYOS_DEVR_EXPLICIT_DENY },
	{ "wildcard deny beats exact allow", 0, { .allow = R | W }, { .deny = W }, C, 242, 1, R | W,
	  0, RAYOS_DEVR_EXPLICIT_DENY },
	{ "explicit allow without cap", 0, { .allow = R }, {}, C, 241, 0, R, 1,
	  RAYOS_DEVR_EXPLICIT_ALLOW },
	{ "explicit allow r is not rw", 0, { .allow = R }, {}, C, 241, 0, R | W, 0,
	  RAYOS_DEVR_DEFAULT_DENY },
	{ "wildcard allow", 0, {}, { .allow = R | W }, C, 242, 7, R | W, 1,
	  RAYOS_DEVR_EXPLICIT_ALLOW },
	{ "explicit mknod", 0, { .allow = M }, {}, C, 10, 200, M, 1, RAYOS_DEVR_EXPLICIT_ALLOW },
	{ "allow r + cap w", CAP(NETWORK), { .allow = M }, {}, C, 10, 200, R | W | M, 1,
	  RAYOS_DEVR_CAP },
	{ "disk ro read with CAP_DISK_READ", CAP(DISK_READ), { .disk = R }, {}, B, 240, 16, R, 1,
	  RAYOS_DEVR_CAP },
	{ "disk ro write with both caps", CAP(DISK_READ) | CAP(DISK_WRITE), { .disk = R }, {}, B,
	  240, 16, R | W, 0, RAYOS_DEVR_DEFAULT_DENY },
	{ "disk rw write with both caps", CAP(DISK_READ) | CAP(DISK_WRITE), { .disk = R | W }, {},
	  B, 240, 16, R | W, 1, RAYOS_DEVR_CAP },
	{ "disk rw write without CAP_DISK_WRITE", CAP(DISK_READ), { .disk = R | W }, {}, B, 240,
	  16, R | W, 0, RAYOS_DEVR_DEFAULT_DENY },
	{ "disk read without CAP_DISK_READ", CAP(DISK_WRITE), { .disk = R | W }, {}, B, 240, 16,
	  R, 0, RAYOS_DEVR_DEFAULT_DENY },
	{ "unlisted disk with both caps", CAP(DISK_READ) | CAP(DISK_WRITE), {}, {}, B, 8, 0, R, 0,
	  RAYOS_DEVR_DEFAULT_DENY },
	{ "disk bits on a wildcard", CAP(DISK_READ), {}, { .disk = R }, B, 240, 99, R, 1,
	  RAYOS_DEVR_CAP },
};

static bool empty(const struct rayos_dev_rule *r)
{
	return !r->allow && !r->deny && !r->disk && !r->limit;
}

/* CAP_GPU limited to nodes (RAYOS_VMF_GPU_NODES): a DRI node whose entry is
 * marked RAYOS_DEV_LIMIT_GPU is granted, every other DRI node is as if the
 * VM did not hold CAP_GPU; explicit rules and other classes are untouched. */
static void test_gpu_nodes(void)
{
	const struct rayos_dev_rule listed = { .limit = RAYOS_DEV_LIMIT_GPU };
	const struct rayos_dev_rule allow_rw = { .allow = R | W };
	struct rayos_vm vm = { .vm_id = 1, .caps = CAP(GPU) | CAP(NETWORK),
			       .flags = RAYOS_VMF_GPU_NODES };
	__u32 dri = rayos_dev_class_of(C, 226, 0), reason = 99;

	ASSERT_TRUE(rayos_dev_verdict(&vm, &listed, NULL, dri, R | W, &reason) &&
		    reason == RAYOS_DEVR_CAP, "GPU nodes: a listed node is granted by CAP_GPU");
	ASSERT_TRUE(!rayos_dev_verdict(&vm, NULL, NULL, dri, R, &reason) &&
		    reason == RAYOS_DEVR_DEFAULT_DENY, "GPU nodes: an unlisted node is denied");
	ASSERT_TRUE(!rayos_dev_verdict(&vm, NULL, &listed, dri, R, &reason),
		    "GPU nodes: a mark on the major:* entry does not list every minor");
	ASSERT_TRUE(!rayos_dev_verdict(&vm, &listed, NULL, dri, M, &reason),
		    "GPU nodes: listing gives no mknod");
	ASSERT_TRUE(rayos_dev_verdict(&vm, &allow_rw, NULL, dri, R | W, &reason) &&
		    reason == RAYOS_DEVR_EXPLICIT_ALLOW,
		    "GPU nodes: the policy's explicit allow stays the policy's");
	ASSERT_TRUE(rayos_dev_verdict(&vm, NULL, NULL, rayos_dev_class_of(C, 10, 200), R | W,
				      &reason), "GPU nodes: other classes (tun) unaffected");
	vm.caps = CAP(NETWORK);
	ASSERT_TRUE(!rayos_dev_verdict(&vm, &listed, NULL, dri, R, &reason),
		    "GPU nodes: a listed node without CAP_GPU is denied (a limit never grants)");
	vm.caps = CAP(GPU);
	vm.flags = 0;
	ASSERT_TRUE(rayos_dev_verdict(&vm, NULL, NULL, dri, R, &reason),
		    "no GPU limit: every DRI node with CAP_GPU");
}

/* CAP_DISK_READ / CAP_DISK_WRITE limited to disks (RAYOS_VMF_DISK_*_LIMIT):
 * a listed disk's entry carries the mark of each kind it is listed for; an
 * unlisted disk is as if the capability were not held; the policy's mode
 * still bounds a listed one. */
static void test_disk_limits(void)
{
	const struct rayos_dev_rule both = { .disk = R | W, .limit = RAYOS_DEV_LIMIT_DISK_READ |
							       RAYOS_DEV_LIMIT_DISK_WRITE };
	const struct rayos_dev_rule read_only = { .disk = R | W,
						  .limit = RAYOS_DEV_LIMIT_DISK_READ };
	const struct rayos_dev_rule unlisted = { .disk = R | W };
	const struct rayos_dev_rule ro_disk = { .disk = R, .limit = RAYOS_DEV_LIMIT_DISK_READ |
								    RAYOS_DEV_LIMIT_DISK_WRITE };
	struct rayos_vm vm = { .vm_id = 1, .caps = CAP(DISK_READ) | CAP(DISK_WRITE),
			       .flags = RAYOS_VMF_DISK_WRITE_LIMIT };
	__u32 disk = rayos_dev_class_of(B, 60, 0), reason = 99;

	ASSERT_TRUE(rayos_dev_verdict(&vm, &both, NULL, disk, R | W, &reason) &&
		    reason == RAYOS_DEVR_CAP, "disk limit: a disk listed for writing is written");
	ASSERT_TRUE(!rayos_dev_verdict(&vm, &unlisted, NULL, disk, W, &reason) &&
		    reason == RAYOS_DEVR_DEFAULT_DENY,
		    "disk limit: a disk not listed for writing is not written");
	ASSERT_TRUE(rayos_dev_verdict(&vm, &unlisted, NULL, disk, R, &reason),
		    "disk limit: ... and still read (CAP_DISK_READ is not limited)");
	ASSERT_TRUE(!rayos_dev_verdict(&vm, &ro_disk, NULL, disk, W, &reason),
		    "disk limit: listing does not widen a read-only disk");
	vm.flags = RAYOS_VMF_DISK_READ_LIMIT | RAYOS_VMF_DISK_WRITE_LIMIT;
	ASSERT_TRUE(rayos_dev_verdict(&vm, &read_only, NULL, disk, R, &reason) &&
		    !rayos_dev_verdict(&vm, &read_only, NULL, disk, W, &reason),
		    "disk limits: listed for reading only: read, not written");
	ASSERT_TRUE(!rayos_dev_verdict(&vm, &unlisted, NULL, disk, R, &reason),
		    "disk limits: an unlisted disk is not even read");
	ASSERT_TRUE(!rayos_dev_verdict(&vm, NULL, &both, disk, R, &reason),
		    "disk limits: a mark on a major:* entry lists no disk");
	vm.caps = CAP(DISK_READ);
	ASSERT_TRUE(!rayos_dev_verdict(&vm, &both, NULL, disk, W, &reason),
		    "disk limits: a listed disk without CAP_DISK_WRITE is not written (a limit "
		    "never grants)");
	vm.caps = CAP(DISK_READ) | CAP(DISK_WRITE) | CAP(GPU);
	ASSERT_TRUE(rayos_dev_verdict(&vm, NULL, NULL, rayos_dev_class_of(C, 226, 0), R | W,
				      &reason), "disk limits: other classes (DRI) unaffected");
	vm.flags = 0;
	ASSERT_TRUE(rayos_dev_verdict(&vm, &unlisted, NULL, disk, R | W, &reason),
		    "no disk limit: every listed disk in its mode");
}

static void test_verdicts(void)
{
	for (size_t i = 0; i < sizeof(vcases) / sizeof(vcases[0]); i++) {
		const struct vcase *c = &vcases[i];
		struct rayos_vm vm = { .vm_id = 1, .caps = c->caps };
		__u32 reason = 99;
		int allow;

		allow = rayos_dev_verdict(&vm, empty(&c->exact) ? NULL : &c->exact,
					  empty(&c->wild) ? NULL : &c->wild,
					  rayos_dev_class_of(c->type, c->major, c->minor), c->access,
					  &reason);
		if (!tap_ok(allow == c->allow && reason == c->reason, "verdict: %s", c->name))
			tap_diag("  got allow=%d reason=%u, want %d/%u", allow, reason, c->allow,
				 c->reason);
	}
}

static void test_lookups(void)
{
	struct rayos_dev_decision d;

	reset();
	add_vm(7, 0, 1, 3);
	add_rule(7, 0, C, 241, 0, R, 0, 0);	/* old generation: must not count */
	add_rule(7, 1, C, 241, 1, R, 0, 0);
	add_rule(7, 1, C, 242, ANY, 0, R, 0);
	rayos_dev_decide(7, C, 241, 0, R, &d);
	ASSERT_TRUE(!d.allow && d.has_vm && d.slot == 3, "decide: the inactive generation's "
		    "entry is ignored");
	rayos_dev_decide(7, C, 241, 1, R, &d);
	ASSERT_TRUE(d.allow && d.reason == RAYOS_DEVR_EXPLICIT_ALLOW,
		    "decide: the active generation's entry allows");
	rayos_dev_decide(7, C, 242, 5, R, &d);
	ASSERT_TRUE(!d.allow && d.reason == RAYOS_DEVR_EXPLICIT_DENY, "decide: wildcard entry");
	fk.vms[0].gen = 0;	/* the flip: one record write */
	rayos_dev_decide(7, C, 241, 0, R, &d);
	ASSERT_TRUE(d.allow, "decide: after the flip the other generation applies");
	rayos_dev_decide(8, C, 1, 3, R, &d);
	ASSERT_TRUE(d.allow && !d.has_vm && d.reason == RAYOS_DEVR_NO_VM,
		    "decide: unknown VM gets the basics");
	rayos_dev_decide(8, C, 10, 200, R, &d);
	ASSERT_TRUE(!d.allow && d.reason == RAYOS_DEVR_NO_VM, "decide: unknown VM, nothing else");
	rayos_dev_decide(0, C, 10, 232, R | W, &d);
	ASSERT_TRUE(d.allow && d.cls == RAYOS_DEVC_KVM, "decide: no VM, kvm still allowed");
	fk.lookups = 0;
	rayos_dev_decide(7, C, 10, 200, R, &d);
	/* The VM's effective capabilities come from this CPU's cache, filled
	 * by the decision above (the epoch, the revoke-all switch and the
	 * cell, no walk), then the VM's own revoke-all mask (the switch). */
	ASSERT_EQ(fk.lookups, 7, "decide: seven lookups (record, exact, wildcard, cap epoch, "
		  "revoke-all switch, cap cache, switch)");

	/* A quarantined record (the VM lost its policy): the basics only,
	 * whatever caps or explicit entries it carries. */
	add_vm(9, ~0ULL, 0, 4);
	fk.vms[fk.nr_vms - 1].flags = RAYOS_VMF_QUARANTINE;
	add_rule(9, 0, C, 241, 0, R | W, 0, 0);
	add_rule(9, 0, B, 240, 16, 0, 0, R | W);
	rayos_dev_decide(9, C, 10, 200, R | W, &d);
	ASSERT_TRUE(!d.allow && d.reason == RAYOS_DEVR_NO_VM && d.has_vm && d.slot == 4,
		    "decide: quarantined VM: tun denied despite CAP_NETWORK (counted in its slot)");
	rayos_dev_decide(9, C, 241, 0, R, &d);
	ASSERT_TRUE(!d.allow && d.reason == RAYOS_DEVR_NO_VM,
		    "decide: quarantined VM: an explicit allow no longer counts");
	rayos_dev_decide(9, B, 240, 16, R, &d);
	ASSERT_TRUE(!d.allow, "decide: quarantined VM: its listed disk is denied");
	rayos_dev_decide(9, C, 1, 3, R | W, &d);
	ASSERT_TRUE(d.allow && d.reason == RAYOS_DEVR_NO_VM,
		    "decide: quarantined VM: the basics (null) stay allowed");
}

/* revoke-all: entries written under the next epoch count only once the
 * switch reaches it, for every selected slot at once; others keep theirs. */
static void test_revoke_all(void)
{
	struct rayos_dev_decision d;

	reset();
	add_vm(11, CAP(GPU) | CAP(INPUT), 0, 3);
	add_vm(12, CAP(GPU), 0, 4);
	add_vm(13, CAP(GPU), 0, 5);
	fk.vms[0].cap_until_ns[RAYOS_CAP_CONSOLE] = 5000;	/* temporary */
	fk.now_boot_ns = 1000;
	fk.rev[3] = (struct rayos_cap_revoke){ .epoch = 1, .mask = CAP(GPU) | CAP(CONSOLE) };
	fk.rev[4] = (struct rayos_cap_revoke){ .epoch = 1, .mask = CAP(GPU) };
	fk.sw.armed = 1;
	rayos_dev_decide(11, C, 226, 0, R, &d);
	ASSERT_TRUE(d.allow, "revoke-all: entries of the next epoch do not count yet");
	fk.sw.epoch = 1;	/* the switch */
	rayos_dev_decide(11, C, 226, 0, R, &d);
	ASSERT_TRUE(!d.allow && d.reason == RAYOS_DEVR_DEFAULT_DENY,
		    "revoke-all: after the switch VM 11 loses CAP_GPU");
	rayos_dev_decide(12, C, 226, 0, R, &d);
	ASSERT_TRUE(!d.allow, "revoke-all: ... and VM 12 in the same step");
	rayos_dev_decide(11, C, 136, 1, R, &d);
	ASSERT_TRUE(!d.allow, "revoke-all: a temporary grant in the mask ends too");
	rayos_dev_decide(11, C, 13, 64, R, &d);
	ASSERT_TRUE(d.allow, "revoke-all: a capability outside the mask stays (CAP_INPUT)");
	rayos_dev_decide(13, C, 226, 0, R, &d);
	ASSERT_TRUE(d.allow, "revoke-all: an unselected VM keeps CAP_GPU");
	fk.rev[4].epoch = 2;
	rayos_dev_decide(12, C, 226, 0, R, &d);
	ASSERT_TRUE(d.allow, "revoke-all: an entry above the switch's epoch does not count");
	fk.sw.armed = 0;
	rayos_dev_decide(11, C, 226, 0, R, &d);
	ASSERT_TRUE(d.allow, "revoke-all: disarmed (settled), entries are not read");
	fk.lookups = 0;
	rayos_dev_decide(13, C, 226, 0, R, &d);
	/* The switch (one lookup) on the VM's own mask; the rest is the
	 * record, the rules and the capability cache (epoch, switch, cell). */
	ASSERT_EQ(fk.lookups, 7, "revoke-all: disarmed, the check is one lookup (7 with the "
		  "record, the rules and the capability cache)");
}

static void test_current_vm(void)
{
	reset();
	fk.cgs[fk.nr_cgs].id = 100;
	fk.cgs[fk.nr_cgs++].v.vm_id = 5;
	fk.cgid = 100;
	ASSERT_EQ(rayos_dev_current_vm(), 5, "current VM: own cgroup");
	fk.cgid = 300;			/* a sub-cgroup at level 3 of /rayos/vm5/x */
	fk.ancestor[1] = 50;
	fk.ancestor[2] = 100;
	fk.ancestor[3] = 300;
	ASSERT_EQ(rayos_dev_current_vm(), 5, "current VM: nearest registered ancestor");
	fk.ancestor[2] = 0;
	ASSERT_EQ(rayos_dev_current_vm(), 0, "current VM: none");
}

/* agent/vm/devices.c's table says what devpolicy.bpf.h does, and nothing else. */
static void test_table_agrees(void)
{
	size_t bad = 0, checked = 0;

	for (size_t i = 0; i < devices_nr_handlers; i++) {
		const struct devices_handler *h = &devices_handlers[i];

		for (__u32 ma = h->major_lo; ma <= h->major_hi; ma++) {
			__u32 mi = h->minor == ANY ? 4711 : h->minor;
			__u32 cls = rayos_dev_class_of(C, ma, mi);
			__u64 with = h->cap < 0 ? 0 : 1ULL << h->cap;
			__u32 bits = h->cap < 0 ? rayos_dev_basic_bits(cls) :
				     rayos_dev_cap_bits(with, cls);

			checked++;
			bad += cls != h->cls || bits != (R | W) ||
			       (h->cap >= 0 && rayos_dev_cap_bits(~with, cls));
		}
	}
	ASSERT_EQ(bad, 0, "agent table: every row is what the BPF decision grants");
	/* The other way: every char device the decision grants is in the table. */
	for (__u32 ma = 0; ma <= RAYOS_DEV_MAJOR_MAX; ma++)
		for (__u32 mi = 0; mi < 300; mi++) {
			__u32 cls = rayos_dev_class_of(C, ma, mi);
			bool granted = rayos_dev_cap_bits(~0ULL, cls) || rayos_dev_basic_bits(cls);
			bool listed = false;

			if (!granted)
				continue;
			for (size_t i = 0; i < devices_nr_handlers; i++) {
				const struct devices_handler *h = &devices_handlers[i];

				listed |= ma >= h->major_lo && ma <= h->major_hi &&
					  (h->minor == ANY || h->minor == mi);
			}
			bad += !listed;
			checked++;
		}
	ASSERT_EQ(bad, 0, "agent table: lists every char device the decision grants");
	tap_diag("  %zu devices compared", checked);
	for (unsigned int c = 0; c < RAYOS_DEVC_COUNT; c++)
		bad += !devices_class_name(c);
	ASSERT_EQ(bad, 0, "every class has a metrics name");
}

/* A temporary grant: a boot-clock deadline in the record, compared by the
 * decision itself; a permanent bit outlives it; other capabilities' deadlines
 * do not stand in. */
static void test_temporary(void)
{
	struct rayos_vm vm = { .vm_id = 1 };
	const __u32 gpu = rayos_dev_class_of(C, 226, 0);
	__u32 reason;

	reset();
	vm.cap_until_ns[RAYOS_CAP_GPU] = 1000;
	fk.now_boot_ns = 999;
	ASSERT_TRUE(rayos_dev_verdict(&vm, NULL, NULL, gpu, R | W, &reason) &&
		    reason == RAYOS_DEVR_CAP, "temporary CAP_GPU before its deadline: allowed");
	fk.now_boot_ns = 1000;
	ASSERT_TRUE(!rayos_dev_verdict(&vm, NULL, NULL, gpu, R, &reason) &&
		    reason == RAYOS_DEVR_DEFAULT_DENY, "temporary CAP_GPU at its deadline: denied");
	vm.caps = CAP(GPU);
	fk.cap_epoch++;		/* as the loader does after every record write */
	ASSERT_TRUE(rayos_dev_verdict(&vm, NULL, NULL, gpu, R, &reason),
		    "expired temporary grant under a permanent one: allowed");
	vm.caps = 0;
	vm.cap_until_ns[RAYOS_CAP_GPU] = 0;
	vm.cap_until_ns[RAYOS_CAP_INPUT] = 5000;
	fk.cap_epoch++;
	ASSERT_TRUE(!rayos_dev_verdict(&vm, NULL, NULL, gpu, R, &reason),
		    "a temporary CAP_INPUT does not open the GPU");
	ASSERT_TRUE(rayos_dev_verdict(&vm, NULL, NULL, rayos_dev_class_of(C, 13, 64), R, &reason),
		    "but opens an input device before its deadline");
	fk.now_boot_ns = 0;
}

/* ---- delegation walk (bpf/include/caps.bpf.h) ----------------------------------- */

#define WALK_ID0	100	/* VM WALK_ID0 + i lives in slot i */
#define NOW		1000000000000ULL
#define FAR		(NOW + 3600ULL * 1000000000ULL)

struct walk_case {
	const char *name;
	int depth;		/* links from the root (slot 0) to the leaf (slot depth) */
	__u64 root_until;	/* 0: the root holds CAP_GPU permanently */
	int expired_link;	/* link into this slot ended; 0: none */
	int reused_slot;	/* this slot now holds another VM; -1: none */
	int quarantined;	/* this slot's VM is quarantined; -1: none */
	bool root_revoked;	/* the root's grant is gone */
	bool other_cap;		/* the root holds CAP_INPUT, not CAP_GPU */
	bool want;		/* the leaf holds CAP_GPU */
};

static const struct walk_case walk_cases[] = {
	{ "depth 1 (A->B): held", 1, 0, 0, -1, -1, false, false, true },
	{ "depth 2 (A->B->C): held", 2, 0, 0, -1, -1, false, false, true },
	{ "depth 3 (A->B->C->D): held", 3, 0, 0, -1, -1, false, false, true },
	{ "depth 3 from a temporary root grant: held", 3, FAR, 0, -1, -1, false, false, true },
	{ "depth 3, the root's temporary grant expired: gone", 3, NOW, 0, -1, -1, false, false,
	  false },
	{ "depth 4: the fourth hop is not followed", 4, 0, 0, -1, -1, false, false, false },
	{ "depth 3, the middle link (B->C) expired: gone", 3, 0, 2, -1, -1, false, false, false },
	{ "depth 3, the leaf's own link expired: gone", 3, 0, 3, -1, -1, false, false, false },
	{ "depth 3, the root revoked: gone", 3, 0, 0, -1, -1, true, false, false },
	{ "depth 3, the middle slot reused by another VM: gone", 3, 0, 0, 1, -1, false, false,
	  false },
	{ "depth 2, the root's slot reused by another VM: gone", 2, 0, 0, 0, -1, false, false,
	  false },
	{ "depth 2, the middle VM quarantined: gone", 2, 0, 0, -1, 1, false, false, false },
	{ "depth 2, the root holds another capability: gone", 2, 0, 0, -1, -1, false, true,
	  false },
};

/* Lay out a chain as the loader would and return the leaf's record. */
static struct rayos_vm walk_setup(const struct walk_case *c)
{
	struct rayos_vm leaf = { .vm_id = WALK_ID0 + c->depth, .slot = c->depth };
	__u32 cap = c->other_cap ? RAYOS_CAP_INPUT : RAYOS_CAP_GPU;

	reset();
	fk.now_boot_ns = NOW;
	for (int i = 0; i <= c->depth; i++) {
		struct rayos_cap_state *st = &fk.cap_state[i];

		st->vm_id = WALK_ID0 + i;
		if (i == 0 && !c->root_revoked) {
			if (c->root_until)
				st->cap_until_ns[cap] = c->root_until;
			else
				st->caps = 1ULL << cap;
		}
		if (i > 0) {
			st->link[RAYOS_CAP_GPU] = (struct rayos_cap_link){
				.from_vm = WALK_ID0 + i - 1, .from_slot = i - 1,
				.until_ns = c->expired_link == i ? NOW : FAR };
		}
		if (i == c->quarantined)
			st->flags = RAYOS_VMF_QUARANTINE;
	}
	if (c->reused_slot >= 0) {
		fk.cap_state[c->reused_slot].vm_id = 999;
		fk.cap_state[c->reused_slot].caps = ~0ULL;	/* it holds everything */
	}
	return leaf;
}

static void test_walk(void)
{
	const __u32 gpu = rayos_dev_class_of(C, 226, 0);
	struct rayos_vm leaf;
	__u32 reason;

	for (size_t i = 0; i < sizeof(walk_cases) / sizeof(walk_cases[0]); i++) {
		const struct walk_case *c = &walk_cases[i];
		bool got;

		leaf = walk_setup(c);
		got = (rayos_vm_caps_now(&leaf) >> RAYOS_CAP_GPU) & 1;
		tap_ok(got == c->want, "walk: %s", c->name);
		/* The same through the device decision the programs run. */
		tap_ok(rayos_dev_verdict(&leaf, NULL, NULL, gpu, R | W, &reason) == c->want,
		       "walk: %s: the GPU open is %s", c->name, c->want ? "allowed" : "denied");
	}

	/* The cache: a hit reads no clock; a change (epoch), a tick of the
	 * jiffy or a deadline within the margin sends it to the walk. */
	leaf = walk_setup(&walk_cases[2]);
	fk.cap_state[1].link[RAYOS_CAP_GPU].until_ns = 0;	/* no deadlines at all */
	fk.cap_state[2].link[RAYOS_CAP_GPU].until_ns = 0;
	fk.cap_state[3].link[RAYOS_CAP_GPU].until_ns = 0;
	rayos_vm_caps_now(&leaf);
	fk.boot_reads = 0;
	fk.lookups = 0;
	ASSERT_TRUE(rayos_vm_caps_now(&leaf) & CAP(GPU), "cache: depth 3 answered");
	tap_ok(fk.boot_reads == 0 && fk.lookups == 4,
	       "cache: a hit costs four lookups (epoch, switch, cell; the switch again for "
	       "the VM's own revoke-all mask) and no clock (%u lookups, %u clock reads)",
	       fk.lookups, fk.boot_reads);
	fk.cap_state[0].caps = 0;	/* the root revoked ... */
	ASSERT_TRUE(rayos_vm_caps_now(&leaf) & CAP(GPU),
		    "cache: a change the epoch does not announce is not seen (the loader bumps it)");
	fk.cap_epoch++;			/* ... as the loader writes it */
	ASSERT_TRUE(!(rayos_vm_caps_now(&leaf) & CAP(GPU)), "cache: the epoch bump ends it at once");
	fk.cap_state[0].caps = CAP(GPU);
	fk.cap_epoch++;
	ASSERT_TRUE(rayos_vm_caps_now(&leaf) & CAP(GPU), "cache: granted again");
	fk.boot_reads = 0;
	fk.jiffies++;		/* a tick */
	rayos_vm_caps_now(&leaf);
	ASSERT_EQ(fk.boot_reads, 1, "cache: a tick refills it from the boot clock");
	/* A link ending within the margin: every call reads the boot clock. */
	fk.cap_state[2].link[RAYOS_CAP_GPU].until_ns = NOW + RAYOS_CAP_CACHE_MARGIN_NS / 2;
	fk.cap_epoch++;
	fk.boot_reads = 0;
	ASSERT_TRUE(rayos_vm_caps_now(&leaf) & CAP(GPU), "cache: held before the close deadline");
	ASSERT_TRUE(rayos_vm_caps_now(&leaf) & CAP(GPU), "cache: still held");
	ASSERT_EQ(fk.boot_reads, 2, "cache: a deadline within the margin is never cached");
	fk.now_boot_ns = NOW + RAYOS_CAP_CACHE_MARGIN_NS / 2;	/* same jiffy */
	ASSERT_TRUE(!(rayos_vm_caps_now(&leaf) & CAP(GPU)),
		     "cache: the middle link ends on time within the same tick");
	/* A revoke-all of a delegator ends the chain below it at the switch. */
	leaf = walk_setup(&walk_cases[1]);
	ASSERT_TRUE(rayos_vm_caps_now(&leaf) & CAP(GPU), "revoke-all: depth 2 held");
	fk.rev[0] = (struct rayos_cap_revoke){ .epoch = 1, .mask = CAP(GPU) };
	fk.sw.armed = 1;
	ASSERT_TRUE(rayos_vm_caps_now(&leaf) & CAP(GPU),
		    "revoke-all: the root's entry of the next epoch does not count yet");
	fk.sw.epoch = 1;	/* the switch: no loader epoch bump */
	ASSERT_TRUE(!(rayos_vm_caps_now(&leaf) & CAP(GPU)),
		    "revoke-all of the root: the leaf at depth 2 loses CAP_GPU at the switch");
	fk.rev[0].mask = 0;
	fk.rev[2] = (struct rayos_cap_revoke){ .epoch = 1, .mask = CAP(GPU) };
	fk.sw.epoch = 2;
	ASSERT_TRUE(!(rayos_vm_caps_now(&leaf) & CAP(GPU)),
		    "revoke-all of the leaf itself: gone (its own mask, outside the cache)");
	/* A VM whose slot copy is someone else's has no links. */
	leaf = walk_setup(&walk_cases[0]);
	leaf.vm_id = 555;
	ASSERT_TRUE(!(rayos_vm_caps_now(&leaf) & CAP(GPU)),
		     "walk: a record whose slot holds another VM's links gets none of them");
}

int main(void)
{
	test_verdicts();
	test_gpu_nodes();
	test_disk_limits();
	test_temporary();
	test_walk();
	test_revoke_all();
	test_lookups();
	test_current_vm();
	test_table_agrees();
	return tap_done();
}
