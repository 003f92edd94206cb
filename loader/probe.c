// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Feature probes: can this kernel load each program and map type RayOS uses?
 * Each probe loads the smallest object of that kind and reports the errno
 * verbatim, so `status` can say why an enforcement point is unavailable.
 * Results are cached per kernel and boot (a file keyed by boot_id).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include "agent/core/log.h"
#include "loader/loader.h"
#include "loader/loader_internal.h"
#include "loader/probe.h"

/* Not in the uapi headers of older distributions; values are kernel ABI. */
#define RAYOS_BPF_TCX_INGRESS	46

static const char *const feature_names[RAYOS_FEAT_MAX] = {
	[RAYOS_FEAT_BPFFS]		= "bpffs",
	[RAYOS_FEAT_BTF]		= "btf",
	[RAYOS_FEAT_XDP]		= "xdp",
	[RAYOS_FEAT_SCHED_CLS]		= "tc",
	[RAYOS_FEAT_TCX]		= "tcx_link",
	[RAYOS_FEAT_CGROUP_DEVICE]	= "cgroup_device",
	[RAYOS_FEAT_CGROUP_SKB]		= "cgroup_skb",
	[RAYOS_FEAT_TRACEPOINT]		= "tracepoint",
	[RAYOS_FEAT_RINGBUF]		= "ringbuf",
	[RAYOS_FEAT_LPM]		= "lpm_trie",
	[RAYOS_FEAT_MAP_IN_MAP]		= "map_in_map",
	[RAYOS_FEAT_TIMER]		= "bpf_timer",
	[RAYOS_FEAT_LSM_PROG]		= "lsm_prog",
	[RAYOS_FEAT_LSM_ACTIVE]		= "lsm_active",
	[RAYOS_FEAT_FENTRY]		= "fentry",
};

const char *loader_feature_name(enum rayos_feature f)
{
	return f < RAYOS_FEAT_MAX ? feature_names[f] : "?";
}

static void set(struct rayos_feature_state *st, bool ok, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set(struct rayos_feature_state *st, bool ok, const char *fmt, ...)
{
	va_list ap;

	st->available = ok;
	va_start(ap, fmt);
	vsnprintf(st->detail, sizeof(st->detail), fmt, ap);
	va_end(ap);
}

static void set_errno(struct rayos_feature_state *st, int err, const char *what)
{
	if (err >= 0)
		set(st, true, "%s loads", what);
	else
		set(st, false, "kernel refused %s: %s (%s)", what, strerror(-err),
		    err == -EPERM ? "EPERM" : err == -EINVAL ? "EINVAL" : "errno");
}

/* r0 = 0; exit */
static const struct bpf_insn ret0[] = {
	{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = 0 },
	{ .code = BPF_JMP | BPF_EXIT },
};

static int load_prog(enum bpf_prog_type type, enum bpf_attach_type eat,
		     __u32 btf_id, int *fd_out)
{
	LIBBPF_OPTS(bpf_prog_load_opts, opts,
		    .expected_attach_type = eat,
		    .attach_btf_id = btf_id);
	int fd;

	fd = bpf_prog_load(type, NULL, "GPL", ret0, 2, &opts);
	if (fd < 0)
		return -errno;
	if (fd_out)
		*fd_out = fd;
	else
		close(fd);
	return 0;
}

static int vmlinux_func_id(const char *name)
{
	struct btf *btf = btf__load_vmlinux_btf();
	int id;

	if (!btf)
		return -errno;
	id = btf__find_by_name_kind(btf, name, BTF_KIND_FUNC);
	btf__free(btf);
	return id;
}

static void probe_map(struct rayos_feature_state *st, enum bpf_map_type type,
		      const char *what)
{
	int ret = libbpf_probe_bpf_map_type(type, NULL);

	if (ret == 1)
		set(st, true, "%s maps create", what);
	else
		set(st, false, "kernel has no %s maps (%s)", what,
		    ret < 0 ? strerror(-ret) : "unsupported");
}

/* Loading a tcx link needs a device: probe on loopback, which always exists,
 * and detach at once by closing the link. */
static void probe_tcx(struct rayos_feature_state *st)
{
	int prog = -1, link, err;

	err = load_prog(BPF_PROG_TYPE_SCHED_CLS, 0, 0, &prog);
	if (err) {
		set_errno(st, err, "sched_cls programs");
		return;
	}
	link = bpf_link_create(prog, 1 /* lo */, RAYOS_BPF_TCX_INGRESS, NULL);
	if (link < 0)
		set(st, false, "no tcx links (%s): taps cannot be enforced (tcx needs Linux 6.6)",
		    strerror(errno));
	else
		set(st, true, "tcx links attach");
	if (link >= 0)
		close(link);
	close(prog);
}

static void probe_lsm(struct rayos_feature_state *prog_st,
		      struct rayos_feature_state *active_st)
{
	char buf[512] = "";
	int id, fd, n;

	id = vmlinux_func_id("bpf_lsm_file_open");
	if (id < 0)
		set(prog_st, false, "kernel built without CONFIG_BPF_LSM (no bpf_lsm_file_open)");
	else
		set_errno(prog_st, load_prog(BPF_PROG_TYPE_LSM, BPF_LSM_MAC, id, NULL),
			  "lsm programs");

	fd = open("/sys/kernel/security/lsm", O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		set(active_st, false, "cannot read /sys/kernel/security/lsm (%s; "
		    "mount securityfs)", strerror(errno));
		return;
	}
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	if (strstr(buf, "bpf"))
		set(active_st, true, "bpf is an active LSM (%s)", buf);
	else
		set(active_st, false, "bpf is not in the active LSM list \"%s\" "
		    "(boot with lsm=...,bpf)", buf);
}

static void probe_all(struct rayos_feature_state *st)
{
	struct statfs sfs;
	int id;

	if (!statfs("/sys/fs/bpf", &sfs) && sfs.f_type == 0xcafe4a11)
		set(&st[RAYOS_FEAT_BPFFS], true, "mounted on /sys/fs/bpf");
	else
		set(&st[RAYOS_FEAT_BPFFS], false, "/sys/fs/bpf is not a bpffs");
	if (access("/sys/kernel/btf/vmlinux", R_OK) == 0)
		set(&st[RAYOS_FEAT_BTF], true, "/sys/kernel/btf/vmlinux");
	else
		set(&st[RAYOS_FEAT_BTF], false, "no /sys/kernel/btf/vmlinux");

	set_errno(&st[RAYOS_FEAT_XDP], load_prog(BPF_PROG_TYPE_XDP, 0, 0, NULL), "xdp");
	set_errno(&st[RAYOS_FEAT_SCHED_CLS],
		  load_prog(BPF_PROG_TYPE_SCHED_CLS, 0, 0, NULL), "sched_cls");
	probe_tcx(&st[RAYOS_FEAT_TCX]);
	set_errno(&st[RAYOS_FEAT_CGROUP_DEVICE],
		  load_prog(BPF_PROG_TYPE_CGROUP_DEVICE, BPF_CGROUP_DEVICE, 0, NULL),
		  "cgroup_device");
	set_errno(&st[RAYOS_FEAT_CGROUP_SKB],
		  load_prog(BPF_PROG_TYPE_CGROUP_SKB, BPF_CGROUP_INET_EGRESS, 0, NULL),
		  "cgroup_skb");
	set_errno(&st[RAYOS_FEAT_TRACEPOINT],
		  load_prog(BPF_PROG_TYPE_TRACEPOINT, 0, 0, NULL), "tracepoint");
	probe_map(&st[RAYOS_FEAT_RINGBUF], BPF_MAP_TYPE_RINGBUF, "ringbuf");
	probe_map(&st[RAYOS_FEAT_LPM], BPF_MAP_TYPE_LPM_TRIE, "LPM trie");
	probe_map(&st[RAYOS_FEAT_MAP_IN_MAP], BPF_MAP_TYPE_ARRAY_OF_MAPS, "array-of-maps");
	if (libbpf_probe_bpf_helper(BPF_PROG_TYPE_SCHED_CLS, BPF_FUNC_timer_init, NULL) == 1)
		set(&st[RAYOS_FEAT_TIMER], true, "bpf_timer_init available to tc");
	else
		set(&st[RAYOS_FEAT_TIMER], false, "no bpf_timer helpers");
	probe_lsm(&st[RAYOS_FEAT_LSM_PROG], &st[RAYOS_FEAT_LSM_ACTIVE]);
	id = vmlinux_func_id("bpf_fentry_test1");
	if (id < 0)
		set(&st[RAYOS_FEAT_FENTRY], false, "no bpf_fentry_test1 in kernel BTF");
	else
		set_errno(&st[RAYOS_FEAT_FENTRY],
			  load_prog(BPF_PROG_TYPE_TRACING, BPF_TRACE_FENTRY, id, NULL),
			  "fentry programs");
}

/* The cache is valid for one boot of one kernel. */
static void cache_key(char *buf, size_t len)
{
	char boot_id[64] = "";
	struct utsname u;
	int fd, n;

	uname(&u);
	fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		n = read(fd, boot_id, sizeof(boot_id) - 1);
		boot_id[n > 0 ? n : 0] = '\0';
		boot_id[strcspn(boot_id, "\n")] = '\0';
		close(fd);
	}
	snprintf(buf, len, "%s %s", u.release, boot_id);
}

static int cache_read(const char *path, const char *key,
		      struct rayos_feature_state *st)
{
	char line[512];
	int found = 0;
	FILE *f;

	f = fopen(path, "re");
	if (!f)
		return -errno;
	if (!fgets(line, sizeof(line), f) || strncmp(line, key, strlen(key)) ||
	    line[strlen(key)] != '\n')
		goto out;
	while (fgets(line, sizeof(line), f)) {
		char name[32], *detail;
		int ok;

		line[strcspn(line, "\n")] = '\0';
		if (sscanf(line, "%31s %d", name, &ok) != 2)
			goto out;
		detail = strchr(line, ' ');
		detail = detail ? strchr(detail + 1, ' ') : NULL;
		for (int i = 0; i < RAYOS_FEAT_MAX; i++) {
			if (strcmp(name, feature_names[i]))
				continue;
			set(&st[i], ok, "%s", detail ? detail + 1 : "");
			found++;
		}
	}
out:
	fclose(f);
	return found == RAYOS_FEAT_MAX ? 0 : -ESTALE;
}

static void cache_write(const char *path, const char *key,
			const struct rayos_feature_state *st)
{
	char tmp[PATH_MAX];
	FILE *f;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		return;
	f = fopen(tmp, "we");
	if (!f) {
		log_warn("cannot write feature cache %s: %s", tmp, strerror(errno));
		return;
	}
	fprintf(f, "%s\n", key);
	for (int i = 0; i < RAYOS_FEAT_MAX; i++)
		fprintf(f, "%s %d %s\n", feature_names[i], st[i].available, st[i].detail);
	if (fclose(f) || rename(tmp, path))
		log_warn("cannot write feature cache %s: %s", path, strerror(errno));
}

int loader_probe_features(const char *cache_path,
			  struct rayos_feature_state out[RAYOS_FEAT_MAX])
{
	char key[256];

	memset(out, 0, sizeof(*out) * RAYOS_FEAT_MAX);
	cache_key(key, sizeof(key));
	if (cache_path && !cache_read(cache_path, key, out))
		return 0;
	loader_route_libbpf_logs();
	probe_all(out);
	if (cache_path)
		cache_write(cache_path, key, out);
	return 0;
}
