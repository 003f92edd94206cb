// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Cost of a device open: open()+close() of /dev/null by a process in a
 * plain cgroup and by one in a VM cgroup with rayos_dev attached, measured
 * in the same run, with and without the syscall statistics tracepoints
 * (which run for every syscall of the host while the agent is up).
 * Prints figures; never fails on a timing.  Cleans up its cgroups and pins.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/core/log.h"
#include "agent/policy/policy.h"
#include "agent/vm/cgroup.h"
#include "loader/attach.h"
#include "loader/loader.h"
#include "loader/publish.h"

#define ITERS	50000
#define ROUNDS	8

static char pin_root[64], parent[64], plain_path[PATH_MAX], vm_path[PATH_MAX];
static struct loader *ld;

/* Programs off, pins gone; the cgroups stay for a last baseline. */
static void unload(void)
{
	if (ld) {
		loader_detach_cgroup(ld, 1);
		loader_close(ld);
		ld = NULL;
	}
	if (pin_root[0])
		loader_purge(pin_root);
}

static void cleanup(void)
{
	unload();
	cgroup_vm_remove(parent, 1);
	cgroup_vm_remove(parent, 2);
	if (plain_path[0]) {
		char p[PATH_MAX];

		snprintf(p, sizeof(p), "%s", plain_path);
		*strrchr(p, '/') = '\0';
		rmdir(p);
		plain_path[0] = '\0';
	}
}

static void on_signal(int sig)
{
	cleanup();
	signal(sig, SIG_DFL);
	raise(sig);
}

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

/* ns per open+close over ITERS, measured by a child inside cgroup. */
static double measure(const char *cgroup)
{
	int p[2];
	double best = -1;
	pid_t pid;

	if (pipe(p))
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (!pid) {
		double r = 1e18;

		if (cgroup_move_pid(cgroup, getpid()))
			_exit(1);
		for (int i = 0; i < ITERS / 10; i++)	/* warm up */
			close(open("/dev/null", O_RDONLY | O_CLOEXEC));
		double t0 = now_ns();

		for (int i = 0; i < ITERS; i++) {
			int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

			if (fd < 0)
				_exit(2);
			close(fd);
		}
		r = (now_ns() - t0) / ITERS;
		if (write(p[1], &r, sizeof(r)) != sizeof(r))
			_exit(3);
		_exit(0);
	}
	close(p[1]);
	if (read(p[0], &best, sizeof(best)) != sizeof(best))
		best = -1;
	close(p[0]);
	waitpid(pid, NULL, 0);
	return best;
}

static int publish_vm1(void)
{
	const char *json = "{\"version\": 1, \"vms\": [{\"id\": 1, \"name\": \"bench\", "
			   "\"capabilities\": [\"CAP_NETWORK\"], \"devices\": {\"allow\": "
			   "[\"c 241:0 r\"], \"deny\": [\"c 242:* rw\"]}}]}";
	struct policy_set *set = policy_set_new();
	struct compiled_policy *cp = NULL;
	struct publish_stats st;
	struct policy_error err;
	int ret;

	ret = policy_set_add_json(set, "bench.json", json, strlen(json), &err);
	if (!ret)
		ret = policy_compile(set, &cp, &err);
	if (!ret)
		ret = publish_policy(ld, cp, &st);
	compiled_policy_free(cp);
	policy_set_free(set);
	return ret;
}

static int open_loader(bool stats)
{
	struct loader_opts o = { .pin_root = pin_root, .no_dev_stats = !stats };
	int err;

	err = loader_open(&o, &ld);
	if (!err)
		err = publish_vm1();
	if (!err)
		err = loader_attach_cgroup(ld, 1, vm_path);
	return err;
}

static double min2(double a, double b)
{
	return a < 0 ? b : b < 0 ? a : a < b ? a : b;
}

int main(void)
{
	double base = -1, plain = -1, vm = -1, plain_s = -1, vm_s = -1;
	int err;

	log_set_level(LOG_LVL_ERR);
	if (geteuid()) {
		printf("# bench_dev: needs root, skipped\n");
		return 0;
	}
	atexit(cleanup);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	snprintf(pin_root, sizeof(pin_root), "/sys/fs/bpf/rayos-test-bench-%d", getpid());
	snprintf(parent, sizeof(parent), "rayos-test-bench-%d", getpid());
	err = cgroup_vm_create(parent, 2, plain_path, sizeof(plain_path), NULL);
	if (!err)
		err = cgroup_vm_create(parent, 1, vm_path, sizeof(vm_path), NULL);
	if (err) {
		printf("# bench_dev: cannot create cgroups: %s\n", strerror(-err));
		return 1;
	}

	/* Rounds alternate between the cases of a phase, so that noise from
	 * the rest of the machine lands on both; each figure is the best. */
	for (int r = 0; r < ROUNDS; r++)
		base = min2(base, measure(plain_path));
	if (open_loader(false)) {
		printf("# bench_dev: cannot load or attach rayos_dev\n");
		return 1;
	}
	for (int r = 0; r < ROUNDS; r++) {
		plain = min2(plain, measure(plain_path));
		vm = min2(vm, measure(vm_path));
	}
	loader_close(ld);	/* links stay pinned: the VM cgroup keeps its program */
	ld = NULL;
	if (open_loader(true)) {
		printf("# bench_dev: cannot reload with statistics\n");
		return 1;
	}
	for (int r = 0; r < ROUNDS; r++) {
		plain_s = min2(plain_s, measure(plain_path));
		vm_s = min2(vm_s, measure(vm_path));
	}
	unload();
	for (int r = 0; r < ROUNDS; r++)
		base = min2(base, measure(plain_path));

	printf("# open()+close() of /dev/null, ns per pair, best of %d rounds x %d\n", ROUNDS,
	       ITERS);
	printf("%-56s %7.0f\n", "no RayOS programs (plain cgroup)", base);
	printf("%-56s %7.0f  %+5.0f\n", "plain cgroup, rayos_dev on another cgroup", plain,
	       plain - base);
	printf("%-56s %7.0f  %+5.0f\n", "VM cgroup with rayos_dev", vm, vm - base);
	printf("%-56s %7.0f  %+5.0f\n", "plain cgroup, syscall tracepoints attached", plain_s,
	       plain_s - base);
	printf("%-56s %7.0f  %+5.0f\n", "VM cgroup with rayos_dev and syscall tracepoints", vm_s,
	       vm_s - base);
	return 0;
}
