// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Device enforcement end to end, through a real cgroup: the loader attaches
 * rayos_dev to a VM cgroup made with agent/vm/cgroup.c, policies go through the
 * real parser, compiler and publisher, and a child process inside the cgroup
 * opens mknod'ed nodes.  cgroup_device programs have no BPF_PROG_TEST_RUN,
 * so this is how the decision is tested in the kernel (and
 * test_devpolicy.c tests the same header in user space).
 *
 * On a node of an absent driver, EPERM means denied and ENXIO/ENODEV means
 * the device cgroup let the open through to the driver ("allowed").
 * Everything made here has a unique name (cgroup rayos-test-<pid>, pins
 * /sys/fs/bpf/rayos-test-dev-<pid>, a mkdtemp dir) and is removed at exit,
 * also on SIGINT/SIGTERM; children are killed by PID.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>

#include "agent/core/log.h"
#include "agent/policy/policy.h"
#include "agent/vm/cgroup.h"
#include "agent/vm/devices.h"
#include "bpf/abi/dev.h"
#include "loader/attach.h"
#include "loader/devices.h"
#include "loader/loader.h"
#include "loader/publish.h"
#include "tests/lib/tap.h"

#define VM_ID	42

static struct {
	struct loader *ld, *ld2;
	char pin_root[64];
	char parent[64];	/* cgroup parent, relative to the mount */
	char parent_path[PATH_MAX];
	char cg_path[PATH_MAX];
	char tmp[64];
	pid_t child;
	int to_child, from_child;
	int legacy_prog;
} t = { .child = -1, .to_child = -1, .from_child = -1, .legacy_prog = -1 };

/* Nodes made in the temp dir: name, type, major, minor. */
static const struct node {
	const char *name;
	char type;
	unsigned int major, minor;
} nodes[] = {
	{ "tun", 'c', 10, 200 }, { "vhost-net", 'c', 10, 238 }, { "kvm", 'c', 10, 232 },
	{ "dri0", 'c', 226, 0 }, { "dri128", 'c', 226, 128 }, { "input", 'c', 13, 99 },
	{ "uinput", 'c', 10, 223 }, { "pty0", 'c', 136, 77 }, { "pty7", 'c', 143, 5 },
	{ "ptmx", 'c', 5, 2 }, { "null", 'c', 1, 3 }, { "mem", 'c', 1, 1 },
	{ "other", 'c', 241, 0 }, { "wild7", 'c', 242, 7 }, { "disk16", 'b', 240, 16 },
	{ "disk32", 'b', 240, 32 }, { "disk48", 'b', 240, 48 },
};

/* ---- cleanup ------------------------------------------------------------------ */

static void kill_child(void)
{
	if (t.child > 0) {
		kill(t.child, SIGKILL);
		waitpid(t.child, NULL, 0);
		t.child = -1;
	}
}

static void cleanup(void)
{
	char path[PATH_MAX];

	kill_child();
	if (t.legacy_prog >= 0 && t.parent_path[0]) {
		int cg = open(t.parent_path, O_RDONLY | O_DIRECTORY);

		if (cg >= 0) {
			bpf_prog_detach2(t.legacy_prog, cg, BPF_CGROUP_DEVICE);
			close(cg);
		}
		close(t.legacy_prog);
		t.legacy_prog = -1;
	}
	if (t.ld2) {
		loader_close(t.ld2);
		t.ld2 = NULL;
	}
	if (t.ld) {
		loader_detach_cgroup(t.ld, VM_ID);
		loader_close(t.ld);
		t.ld = NULL;
	}
	if (t.pin_root[0])
		loader_purge(t.pin_root);
	if (t.cg_path[0])
		rmdir(t.cg_path);
	if (t.parent_path[0])
		rmdir(t.parent_path);
	if (t.tmp[0]) {
		for (size_t i = 0; i < sizeof(nodes) / sizeof(nodes[0]); i++) {
			snprintf(path, sizeof(path), "%s/%s", t.tmp, nodes[i].name);
			unlink(path);
		}
		snprintf(path, sizeof(path), "%s/audit.log", t.tmp);
		unlink(path);
		rmdir(t.tmp);
	}
}

static void on_signal(int sig)
{
	cleanup();
	signal(sig, SIG_DFL);
	raise(sig);
}

/* ---- the child inside the cgroup ------------------------------------------------- */

/* Requests: 'o' + flags(int) + name[64] -> int errno (0 = opened);
 * 'l' + flags + two names -> loops opening both until a byte arrives on its
 * stop pipe, then answers {iterations, unexpected}. */
struct req {
	char op;
	int flags;
	char name[64], name2[64];
	int expect1, expect2;	/* for 'l': 1 = allowed, 0 = denied */
};

static int open_errno(const char *name, int flags)
{
	char path[PATH_MAX];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", t.tmp, name);
	fd = open(path, flags | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return errno;
	close(fd);
	return 0;
}

static void child_main(int in, int out, int stop)
{
	struct req r;

	while (read(in, &r, sizeof(r)) == sizeof(r)) {
		if (r.op == 'o') {
			int e = open_errno(r.name, r.flags);

			if (write(out, &e, sizeof(e)) != sizeof(e))
				_exit(1);
		} else if (r.op == 'l') {
			long res[2] = { 0, 0 };
			struct pollfd p = { .fd = stop, .events = POLLIN };
			char b;

			do {
				for (int k = 0; k < 64; k++) {
					int e1 = open_errno(r.name, r.flags);
					int e2 = open_errno(r.name2, r.flags);

					res[0]++;
					res[1] += (e1 != EPERM) != r.expect1;
					res[1] += (e2 != EPERM) != r.expect2;
				}
			} while (poll(&p, 1, 0) == 0);
			if (read(stop, &b, 1) != 1 || write(out, res, sizeof(res)) != sizeof(res))
				_exit(1);
		}
	}
	_exit(0);
}

static int stop_pipe[2] = { -1, -1 };

static int start_child(void)
{
	int a[2], b[2], ready;

	if (pipe(a) || pipe(b) || pipe(stop_pipe))
		return -errno;
	t.child = fork();
	if (t.child < 0)
		return -errno;
	if (!t.child) {
		close(a[1]);
		close(b[0]);
		/* Join the VM cgroup, then say so. */
		ready = cgroup_move_pid(t.cg_path, getpid());
		if (write(b[1], &ready, sizeof(ready)) != sizeof(ready))
			_exit(1);
		child_main(a[0], b[1], stop_pipe[0]);
	}
	close(a[0]);
	close(b[1]);
	t.to_child = a[1];
	t.from_child = b[0];
	if (read(t.from_child, &ready, sizeof(ready)) != sizeof(ready))
		return -EIO;
	return ready;
}

/* errno of an open in the child */
static int child_open(const char *name, int flags)
{
	struct req r = { .op = 'o', .flags = flags };
	int e = -1;

	snprintf(r.name, sizeof(r.name), "%s", name);
	if (write(t.to_child, &r, sizeof(r)) != sizeof(r) ||
	    read(t.from_child, &e, sizeof(e)) != sizeof(e))
		return -1;
	return e;
}

/* ---- policies -------------------------------------------------------------------- */

/* Publish one VM (VM_ID) with these settings ("" for none); vm_present=false
 * publishes an empty policy. */
static int publish(const char *settings, bool vm_present)
{
	char json[4096];
	struct policy_set *set = policy_set_new();
	struct compiled_policy *cp = NULL;
	struct publish_stats st;
	struct policy_error err;
	int ret;

	snprintf(json, sizeof(json), "{\"version\": 1, \"vms\": [%s%s%s%s%s]}",
		 vm_present ? "{\"id\": 42, \"name\": \"devtest\"" : "",
		 vm_present && settings[0] ? ", " : "", vm_present ? settings : "",
		 vm_present ? "}" : "", "");
	ret = set ? policy_set_add_json(set, "dev.json", json, strlen(json), &err) : -ENOMEM;
	if (!ret)
		ret = policy_compile(set, &cp, &err);
	if (ret) {
		char msg[512];

		policy_error_format(&err, msg, sizeof(msg));
		tap_diag("policy: %s", msg);
	} else {
		ret = publish_policy(t.ld, cp, &st);
	}
	compiled_policy_free(cp);
	policy_set_free(set);
	return ret;
}

/* ---- table of cases ---------------------------------------------------------------- */

enum expect { DENIED, ALLOWED, OPENS };

struct dcase {
	const char *node;
	int flags;
	enum expect want;
};

struct dpolicy {
	const char *name;
	const char *settings;
	struct dcase cases[16];
};

#define RO O_RDONLY
#define RW O_RDWR
#define WO O_WRONLY

static const struct dpolicy policies[] = {
	{ "no capabilities", "\"capabilities\": []", {
		{ "tun", RW, DENIED }, { "vhost-net", RW, DENIED }, { "dri0", RW, DENIED },
		{ "input", RO, DENIED }, { "uinput", RW, DENIED }, { "pty0", RW, DENIED },
		{ "ptmx", RW, DENIED }, { "kvm", RW, ALLOWED }, { "null", RW, OPENS },
		{ "mem", RO, DENIED }, { "other", RO, DENIED }, { "disk16", RO, DENIED } } },
	{ "every device capability",
	  "\"capabilities\": [\"CAP_NETWORK\", \"CAP_GPU\", \"CAP_INPUT\", \"CAP_CONSOLE\"]", {
		{ "tun", RW, ALLOWED }, { "vhost-net", RW, ALLOWED }, { "dri0", RW, ALLOWED },
		{ "dri128", RO, ALLOWED }, { "input", RO, ALLOWED }, { "uinput", RW, ALLOWED },
		{ "pty0", RW, ALLOWED }, { "pty7", RW, ALLOWED }, { "ptmx", RW, ALLOWED },
		{ "kvm", RW, ALLOWED }, { "null", RW, OPENS }, { "other", RO, DENIED },
		{ "disk16", RO, DENIED } } },
	{ "explicit rules",
	  "\"capabilities\": [\"CAP_NETWORK\"], \"devices\": {\"allow\": [\"c 241:0 r\", "
	  "\"c 242:* rw\"], \"deny\": [\"c 10:200 rw\", \"c 1:3 w\"]}", {
		{ "tun", RW, DENIED }, { "tun", RO, DENIED }, { "vhost-net", RW, ALLOWED },
		{ "other", RO, ALLOWED }, { "other", RW, DENIED }, { "wild7", RW, ALLOWED },
		{ "null", RO, OPENS }, { "null", WO, DENIED }, { "kvm", RW, ALLOWED } } },
	{ "disks with CAP_DISK_READ",
	  "\"capabilities\": [\"CAP_DISK_READ\"], \"disks\": ["
	  "{\"path\": \"/dev/rayos-t-a\", \"device\": \"240:16\", \"mode\": \"ro\"}, "
	  "{\"path\": \"/dev/rayos-t-b\", \"device\": \"240:32\", \"mode\": \"rw\"}]", {
		{ "disk16", RO, ALLOWED }, { "disk16", RW, DENIED }, { "disk32", RO, ALLOWED },
		{ "disk32", RW, DENIED }, { "disk48", RO, DENIED } } },
	{ "disks with CAP_DISK_READ and CAP_DISK_WRITE",
	  "\"capabilities\": [\"CAP_DISK_READ\", \"CAP_DISK_WRITE\"], \"disks\": ["
	  "{\"path\": \"/dev/rayos-t-a\", \"device\": \"240:16\", \"mode\": \"ro\"}, "
	  "{\"path\": \"/dev/rayos-t-b\", \"device\": \"240:32\", \"mode\": \"rw\"}]", {
		{ "disk16", RO, ALLOWED }, { "disk16", RW, DENIED }, { "disk32", RW, ALLOWED },
		{ "disk48", RW, DENIED } } },
	{ "disks without the capabilities",
	  "\"disks\": [{\"path\": \"/dev/rayos-t-b\", \"device\": \"240:32\", \"mode\": \"rw\"}]", {
		{ "disk32", RO, DENIED }, { "disk32", RW, DENIED } } },
};

static bool matches(int e, enum expect want)
{
	switch (want) {
	case DENIED:
		return e == EPERM;
	case ALLOWED:
		return e != EPERM && e >= 0;
	case OPENS:
		return e == 0;
	}
	return false;
}

static const char *flags_name(int f)
{
	return f == RW ? "O_RDWR" : f == WO ? "O_WRONLY" : "O_RDONLY";
}

static const char *want_name(enum expect w)
{
	return w == DENIED ? "EPERM" : w == ALLOWED ? "not EPERM" : "opens";
}

static void run_policy_table(void)
{
	for (size_t p = 0; p < sizeof(policies) / sizeof(policies[0]); p++) {
		const struct dpolicy *dp = &policies[p];

		if (!ASSERT_EQ(publish(dp->settings, true), 0, dp->name))
			continue;
		for (int i = 0; i < 16 && dp->cases[i].node; i++) {
			const struct dcase *c = &dp->cases[i];
			int e = child_open(c->node, c->flags);

			if (!tap_ok(matches(e, c->want), "%s: %s %s -> %s", dp->name, c->node,
				    flags_name(c->flags), want_name(c->want)))
				tap_diag("  open gave %s", e ? strerror(e) : "success");
		}
	}
}

/* ---- individual checks ---------------------------------------------------------------- */

static void test_cap_flip(void)
{
	struct rayos_vm rec;
	char audit[PATH_MAX], err[256], line[1024];
	uint64_t caps = 0;
	FILE *f;
	int n = 0;

	publish("\"capabilities\": []", true);
	ASSERT_EQ(child_open("tun", RW), EPERM, "cap flip: tun denied before the grant");
	snprintf(audit, sizeof(audit), "%s/audit.log", t.tmp);
	ASSERT_EQ(devices_cap_change(t.ld, VM_ID, "CAP_NETWORK", true, audit, "test", &caps,
				     err, sizeof(err)), 0, "cap grant CAP_NETWORK");
	ASSERT_TRUE(child_open("tun", RW) != EPERM, "cap grant: tun allowed at the next open");
	ASSERT_TRUE(child_open("vhost-net", RW) != EPERM, "cap grant: vhost-net allowed too");
	ASSERT_EQ(devices_cap_change(t.ld, VM_ID, "CAP_NETWORK", false, audit, "test", &caps,
				     err, sizeof(err)), 0, "cap revoke CAP_NETWORK");
	ASSERT_EQ(child_open("tun", RW), EPERM, "cap revoke: tun denied at the next open");
	ASSERT_EQ(devices_cap_change(t.ld, VM_ID, "CAP_BOGUS", true, audit, "test", &caps,
				     err, sizeof(err)), -EINVAL, "cap grant of an unknown capability fails");
	ASSERT_CONTAINS(err, "unknown capability", "... and says why");
	f = fopen(audit, "r");
	while (f && fgets(line, sizeof(line), f)) {
		n++;
		if (n == 1)
			ASSERT_CONTAINS(line, "\"event\":\"cap_grant\"", "audit log: grant line");
		if (n == 2)
			ASSERT_CONTAINS(line, "\"event\":\"cap_revoke\"", "audit log: revoke line");
	}
	if (f)
		fclose(f);
	ASSERT_EQ(n, 2, "audit log has one line per change");
	/* An unchanged policy publish keeps a grant: the record is the publisher's. */
	devices_cap_change(t.ld, VM_ID, "CAP_NETWORK", true, NULL, NULL, &caps, err, sizeof(err));
	publish("\"capabilities\": []", true);
	ASSERT_TRUE(!loader_vm_record(t.ld, VM_ID, &rec) &&
		    (rec.caps & (1ULL << RAYOS_CAP_NETWORK)),
		    "grant survives a publish that leaves the VM unchanged");
	publish("\"capabilities\": [\"CAP_GPU\"]", true);
	ASSERT_EQ(child_open("tun", RW), EPERM, "a changed policy for the VM replaces the grant");
}

static void test_policy_flip_and_unknown_vm(void)
{
	publish("\"capabilities\": []", true);
	ASSERT_EQ(child_open("dri0", RW), EPERM, "policy flip: dri denied under the old policy");
	publish("\"capabilities\": [\"CAP_GPU\"]", true);
	ASSERT_TRUE(child_open("dri0", RW) != EPERM, "policy flip: allowed at the next open");
	publish("", false);
	ASSERT_EQ(child_open("dri0", RW), EPERM, "VM left the policy: dri denied (fail closed)");
	ASSERT_EQ(child_open("null", RW), 0, "VM left the policy: basics still open");
}

/* bpf_link_update between two program instances (two loaders on the same
 * pins) while the child opens an allowed and a denied node in a loop. */
static void test_swap_no_window(void)
{
	struct loader_opts o = { .pin_root = t.pin_root, .no_dev_stats = true };
	struct req r = { .op = 'l', .flags = RW, .expect1 = 1, .expect2 = 0 };
	char path[PATH_MAX];
	long res[2] = { -1, -1 };
	int link, swaps = 0, progs[2];
	struct bpf_link_info info = {}, info2 = {};
	__u32 len = sizeof(info);

	publish("\"capabilities\": [\"CAP_NETWORK\"]", true);
	if (!ASSERT_EQ(loader_open(&o, &t.ld2), 0, "second loader adopts the pins"))
		return;
	snprintf(path, sizeof(path), "%s/links/vm%u_dev", t.pin_root, VM_ID);
	link = bpf_obj_get(path);
	if (!ASSERT_TRUE(link >= 0, "the VM's device link is pinned"))
		return;
	bpf_obj_get_info_by_fd(link, &info, &len);
	ASSERT_EQ(info.prog_id != 0, 1, "link runs a program");
	progs[0] = loader_dev_prog_fd(t.ld);
	progs[1] = loader_dev_prog_fd(t.ld2);
	snprintf(r.name, sizeof(r.name), "tun");
	snprintf(r.name2, sizeof(r.name2), "other");
	if (write(t.to_child, &r, sizeof(r)) != sizeof(r))
		return;
	for (int i = 0; i < 100; i++) {
		struct timespec ts = { 0, 200000 };

		swaps += !bpf_link_update(link, progs[i & 1], NULL);
		nanosleep(&ts, NULL);
	}
	if (write(stop_pipe[1], "x", 1) != 1 || read(t.from_child, res, sizeof(res)) != sizeof(res))
		tap_diag("child did not report");
	ASSERT_EQ(swaps, 100, "100 program swaps with bpf_link_update");
	tap_diag("  %ld x 128 opens during the swaps", res[0]);
	ASSERT_TRUE(res[0] > 0, "the child opened during the swaps");
	ASSERT_EQ(res[1], 0, "no open saw an unexpected result during the swaps");
	/* Adopting by attach: the same link stays, with ld2's program. */
	ASSERT_EQ(loader_attach_cgroup(t.ld2, VM_ID, t.cg_path), 0, "re-attach from a new loader");
	len = sizeof(info2);
	bpf_obj_get_info_by_fd(link, &info2, &len);
	ASSERT_EQ(info2.id, info.id, "re-attach keeps the pinned link (program swapped in place)");
	close(link);
	ASSERT_EQ(child_open("tun", RW) != EPERM, 1, "still enforcing after the swaps: tun allowed");
	ASSERT_EQ(child_open("other", RW), EPERM, "still enforcing after the swaps: other denied");
	loader_close(t.ld2);
	t.ld2 = NULL;
	ASSERT_EQ(child_open("other", RW), EPERM, "closing a loader leaves the link enforcing");
}

/* Someone else's (libvirt's) legacy device program on the parent cgroup,
 * attached with BPF_F_ALLOW_MULTI, denying c 10:238: both programs apply. */
static void test_coexistence(void)
{
	const struct bpf_insn insns[] = {
		/* r2 = ctx->major; if r2 != 10 goto allow */
		{ .code = BPF_LDX | BPF_W | BPF_MEM, .dst_reg = BPF_REG_2, .src_reg = BPF_REG_1,
		  .off = 4 },
		{ .code = BPF_JMP | BPF_JNE | BPF_K, .dst_reg = BPF_REG_2, .off = 4, .imm = 10 },
		/* r2 = ctx->minor; if r2 != 238 goto allow */
		{ .code = BPF_LDX | BPF_W | BPF_MEM, .dst_reg = BPF_REG_2, .src_reg = BPF_REG_1,
		  .off = 8 },
		{ .code = BPF_JMP | BPF_JNE | BPF_K, .dst_reg = BPF_REG_2, .off = 2, .imm = 238 },
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = 0 },
		{ .code = BPF_JMP | BPF_EXIT },
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = 1 },
		{ .code = BPF_JMP | BPF_EXIT },
	};
	LIBBPF_OPTS(bpf_prog_load_opts, lo, .expected_attach_type = BPF_CGROUP_DEVICE);
	int cg;

	publish("\"capabilities\": [\"CAP_NETWORK\"]", true);
	ASSERT_TRUE(child_open("vhost-net", RW) != EPERM, "coexistence: vhost-net allowed alone");
	t.legacy_prog = bpf_prog_load(BPF_PROG_TYPE_CGROUP_DEVICE, "legacy_dev", "GPL", insns,
				      sizeof(insns) / sizeof(insns[0]), &lo);
	cg = open(t.parent_path, O_RDONLY | O_DIRECTORY);
	if (!ASSERT_TRUE(t.legacy_prog >= 0 && cg >= 0, "load a legacy device program"))
		return;
	if (!ASSERT_EQ(bpf_prog_attach(t.legacy_prog, cg, BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI),
		       0, "attach it to the parent cgroup (BPF_F_ALLOW_MULTI, no link)"))
		goto out;
	ASSERT_EQ(child_open("vhost-net", RW), EPERM, "coexistence: the parent's deny applies");
	ASSERT_TRUE(child_open("tun", RW) != EPERM, "coexistence: what both allow is allowed");
	ASSERT_EQ(child_open("other", RW), EPERM, "coexistence: RayOS's deny still applies");
	/* A new agent re-attaching must keep working under it. */
	ASSERT_EQ(loader_attach_cgroup(t.ld, VM_ID, t.cg_path), 0,
		  "re-attach with a legacy program above");
	bpf_prog_detach2(t.legacy_prog, cg, BPF_CGROUP_DEVICE);
	ASSERT_TRUE(child_open("vhost-net", RW) != EPERM, "coexistence: detaching theirs restores");
out:
	close(cg);
	close(t.legacy_prog);
	t.legacy_prog = -1;
}

/* errno of open(node) by a new process in cgroup dir (0 when it opened). */
static int open_in(const char *dir, const char *node)
{
	char path[PATH_MAX];
	int status;
	pid_t pid = fork();

	if (pid == 0) {
		int fd;

		if (cgroup_move_pid(dir, getpid()))
			_exit(255);
		snprintf(path, sizeof(path), "%s/%s", t.tmp, node);
		fd = open(path, O_RDWR);
		_exit(fd < 0 ? errno : 0);
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

/*
 * libvirt seals a domain's cgroup with a device program attached without
 * BPF_F_ALLOW_MULTI: nothing can attach at or below it.  rayos_dev_above
 * goes on the parent instead: both programs decide for the VM's tasks;
 * tasks under the parent in no RayOS VM pass it.
 */
static void test_above(void)
{
	const struct bpf_insn allow_all[] = {
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = 1 },
		{ .code = BPF_JMP | BPF_EXIT },
	};
	LIBBPF_OPTS(bpf_prog_load_opts, lo, .expected_attach_type = BPF_CGROUP_DEVICE);
	char sibling[PATH_MAX + 16];
	uint64_t parent_id = 0;
	int prog, cg;

	publish("\"capabilities\": [\"CAP_NETWORK\"]", true);
	snprintf(sibling, sizeof(sibling), "%s/sibling", t.parent_path);
	mkdir(sibling, 0755);
	ASSERT_EQ(loader_detach_cgroup(t.ld, VM_ID), 0, "above: RayOS's link off the VM cgroup");
	prog = bpf_prog_load(BPF_PROG_TYPE_CGROUP_DEVICE, "libvirt_like", "GPL", allow_all, 2, &lo);
	cg = open(t.cg_path, O_RDONLY | O_DIRECTORY);
	if (!ASSERT_TRUE(prog >= 0 && cg >= 0, "above: load an allow-all program") ||
	    !ASSERT_EQ(bpf_prog_attach(prog, cg, BPF_CGROUP_DEVICE, 0), 0,
		       "above: attach it to the VM cgroup without BPF_F_ALLOW_MULTI, like libvirt"))
		goto out;
	ASSERT_EQ(loader_attach_cgroup(t.ld, VM_ID, t.cg_path), -EPERM,
		  "above: rayos_dev cannot attach at or below it (EPERM)");
	ASSERT_EQ(child_open("other", RW), ENXIO, "above: meanwhile the VM's task is not policed");
	ASSERT_EQ(loader_attach_cgroup_above(t.ld, VM_ID, t.cg_path, t.parent_path), 0,
		  "above: rayos_dev_above attaches to the parent");
	cgroup_id(t.parent_path, &parent_id);
	ASSERT_EQ(loader_vm_cgroup_id(t.ld, VM_ID), parent_id, "above: the VM's link is on the parent");
	ASSERT_EQ(child_open("other", RW), EPERM, "above: a device the policy denies: EPERM");
	ASSERT_TRUE(child_open("tun", RW) != EPERM, "above: CAP_NETWORK's tun still passes");
	ASSERT_EQ(open_in(sibling, "other"), ENXIO,
		  "above: a task in a sibling cgroup (no RayOS VM) passes rayos_dev_above");
	ASSERT_EQ(loader_attach_cgroup_above(t.ld, VM_ID, t.cg_path, t.parent_path), 0,
		  "above: attaching again is idempotent");
	ASSERT_EQ(loader_detach_cgroup(t.ld, VM_ID), 0, "above: detach");
	ASSERT_EQ(child_open("other", RW), ENXIO, "above: detached, nothing of RayOS's runs");
	bpf_prog_detach2(prog, cg, BPF_CGROUP_DEVICE);
out:
	if (cg >= 0)
		close(cg);
	if (prog >= 0)
		close(prog);
	rmdir(sibling);
	ASSERT_EQ(loader_attach_cgroup(t.ld, VM_ID, t.cg_path), 0,
		  "above: back to rayos_dev on the VM cgroup");
}

static void test_stats(void)
{
	struct rayos_dev_ctr c = {}, c2 = {};
	struct loader_dev_part parts[RAYOS_DEVP_MAX];
	struct rayos_vm rec;
	int before_ok;

	loader_dev_status(t.ld, parts);
	publish("\"capabilities\": []", true);
	if (!ASSERT_EQ(loader_vm_record(t.ld, VM_ID, &rec), 0, "stats: VM record"))
		return;
	before_ok = !loader_dev_stats(t.ld, rec.slot, RAYOS_DEVC_TUN, &c);
	for (int i = 0; i < 5; i++)
		child_open("tun", RW);
	child_open("null", RO);
	ASSERT_TRUE(before_ok && !loader_dev_stats(t.ld, rec.slot, RAYOS_DEVC_TUN, &c2),
		    "stats: read tun counters");
	ASSERT_EQ(c2.denials - c.denials, 5, "stats: 5 tun denials counted by the device program");
	ASSERT_EQ(c2.checks - c.checks, 5, "stats: 5 tun checks");
	if (!parts[RAYOS_DEVP_SYSCALLS].active) {
		tap_skip(parts[RAYOS_DEVP_SYSCALLS].detail, "stats: tracepoint counts");
	} else {
		ASSERT_EQ(c2.opens - c.opens, 5, "stats: tracepoints saw 5 tun opens");
		ASSERT_EQ(c2.open_eperm - c.open_eperm, 5, "stats: all 5 returned EPERM");
		ASSERT_TRUE(c2.open_ns > c.open_ns, "stats: open time accumulated");
		if (!loader_dev_stats(t.ld, rec.slot, RAYOS_DEVC_BASIC, &c))
			ASSERT_TRUE(c.opens >= 1 && c.open_eperm == 0, "stats: null open counted, "
				    "not as a denial");
	}
	tap_diag("  kvm stats: %s", parts[RAYOS_DEVP_KVM].detail);
}

static void test_lsm(void)
{
	struct loader_dev_part parts[RAYOS_DEVP_MAX];

	loader_dev_status(t.ld, parts);
	if (!parts[RAYOS_DEVP_LSM].active) {
		tap_skip(parts[RAYOS_DEVP_LSM].detail, "LSM file_open program");
		return;
	}
	/* With the LSM running, a denied node is refused by both hooks. */
	publish("\"capabilities\": []", true);
	ASSERT_EQ(child_open("tun", RW), EPERM, "LSM: tun denied");
	ASSERT_EQ(child_open("null", RW), 0, "LSM: null opens");
}

static void test_attach_errors(void)
{
	ASSERT_TRUE(loader_attach_cgroup(t.ld, VM_ID, "/proc") < 0,
		    "attach to a non-cgroup directory fails");
	ASSERT_TRUE(loader_attach_cgroup(t.ld, VM_ID, "/nonexistent-rayos") < 0,
		    "attach to a missing path fails");
	ASSERT_EQ(loader_vm_cgroup_id(t.ld, 999999), 0, "no link: cgroup id 0");
}

int main(void)
{
	char mnt[PATH_MAX];
	uint64_t cgid = 0, cgid2 = 0;
	struct loader_opts o = {};
	struct loader_dev_part parts[RAYOS_DEVP_MAX];
	int err;

	setvbuf(stdout, NULL, _IOLBF, 0);
	log_set_level(LOG_LVL_WARN);
	if (geteuid()) {
		tap_skip("needs root", "device enforcement");
		return tap_done();
	}
	if (cgroup_v2_mount(mnt, sizeof(mnt))) {
		tap_skip("no cgroup2 mount in /proc/self/mountinfo", "device enforcement");
		return tap_done();
	}
	tap_diag("cgroup v2 at %s", mnt);
	atexit(cleanup);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);

	snprintf(t.pin_root, sizeof(t.pin_root), "/sys/fs/bpf/rayos-test-dev-%d", getpid());
	o.pin_root = t.pin_root;
	if (!ASSERT_EQ(loader_open(&o, &t.ld), 0, "loader opens"))
		return tap_done();
	loader_dev_status(t.ld, parts);
	for (int p = 0; p < RAYOS_DEVP_MAX; p++)
		tap_diag("  %s: %s: %s", loader_dev_part_name(p),
			 parts[p].active ? "active" : "unavailable", parts[p].detail);
	if (!parts[RAYOS_DEVP_CGROUP].active) {
		tap_skip(parts[RAYOS_DEVP_CGROUP].detail, "device enforcement");
		return tap_done();
	}

	snprintf(t.parent, sizeof(t.parent), "rayos-test-%d", getpid());
	err = cgroup_vm_create(t.parent, VM_ID, t.cg_path, sizeof(t.cg_path), &cgid);
	if (snprintf(t.parent_path, sizeof(t.parent_path), "%s/%s", mnt, t.parent) >=
	    (int)sizeof(t.parent_path))
		return tap_done();
	if (!ASSERT_EQ(err, 0, "create the VM cgroup"))
		return tap_done();
	ASSERT_TRUE(strstr(t.cg_path, "/rayos-test-") && strstr(t.cg_path, "/vm42"),
		    "cgroup path is <mount>/<parent>/vm<ID>");
	ASSERT_EQ(cgroup_vm_create(t.parent, VM_ID, t.cg_path, sizeof(t.cg_path), &cgid2), 0,
		  "creating it again is fine");
	ASSERT_TRUE(cgid && cgid == cgid2, "cgroup id is stable");

	snprintf(t.tmp, sizeof(t.tmp), "/tmp/rayos-test-dev.XXXXXX");
	if (!mkdtemp(t.tmp)) {
		t.tmp[0] = '\0';
		return tap_done();
	}
	for (size_t i = 0; i < sizeof(nodes) / sizeof(nodes[0]); i++) {
		char path[PATH_MAX];

		snprintf(path, sizeof(path), "%s/%s", t.tmp, nodes[i].name);
		if (mknod(path, (nodes[i].type == 'c' ? S_IFCHR : S_IFBLK) | 0666,
			  makedev(nodes[i].major, nodes[i].minor)))
			tap_diag("mknod %s: %s", path, strerror(errno));
	}

	/* The cgroup map entry goes first, then the link. */
	if (!ASSERT_EQ(publish("\"capabilities\": []", true), 0, "publish a first policy") ||
	    !ASSERT_EQ(loader_attach_cgroup(t.ld, VM_ID, t.cg_path), 0, "attach rayos_dev"))
		return tap_done();
	ASSERT_EQ(loader_vm_cgroup_id(t.ld, VM_ID), cgid, "the link sits on the VM's cgroup");
	ASSERT_EQ(loader_attach_cgroup(t.ld, VM_ID, t.cg_path), 0, "attaching again is idempotent");
	if (!ASSERT_EQ(start_child(), 0, "child joins the VM cgroup"))
		return tap_done();
	ASSERT_EQ(cgroup_vm_remove(t.parent, VM_ID), -EBUSY, "a cgroup with a process stays");

	run_policy_table();
	test_policy_flip_and_unknown_vm();
	test_cap_flip();
	test_swap_no_window();
	test_coexistence();
	test_above();
	test_stats();
	test_lsm();
	test_attach_errors();

	kill_child();
	ASSERT_EQ(loader_detach_cgroup(t.ld, VM_ID), 0, "detach");
	ASSERT_EQ(loader_vm_cgroup_id(t.ld, VM_ID), 0, "no link after detach");
	ASSERT_EQ(cgroup_vm_remove(t.parent, VM_ID), 0, "empty VM cgroup removed");
	t.cg_path[0] = '\0';
	return tap_done();
}
