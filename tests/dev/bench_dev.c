// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Cost of a device open: open()+close() of /dev/null by a process in a
 * plain cgroup and by one in a VM cgroup with rayos_dev attached, measured
 * in the same run, with and without the syscall statistics tracepoints
 * (which run for every syscall of the host while the agent is up).
 * Then the device decision alone (rayos_dev_decide in a BPF loop, a
 * syscall program over the same maps: cgroup device programs cannot be
 * test-run) with the capability it needs held permanently (the plain
 * figure), temporarily, delegated down a depth-3 chain, and both of the
 * latter with a deadline too close to cache (the walk and the boot clock
 * every time): p50 and p99 over interleaved rounds.
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
#include <bpf/bpf.h>

#include "bpf/abi/dev.h"
#include "loader/attach.h"
#include "loader/capstate.h"
#include "loader/devices.h"
#include "loader/loader.h"
#include "loader/publish.h"
#include "rayos_capbench.skel.h"

#define ITERS	50000
#define ROUNDS	8

static char pin_root[64], parent[64], plain_path[PATH_MAX], vm_path[PATH_MAX];
static char dec_pin[64];	/* the decision benchmark's own pins */
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
	if (dec_pin[0])
		loader_purge(dec_pin);
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

/* Compile and publish a policy given as JSON text through loader l. */
static int publish_json(struct loader *l, const char *json)
{
	struct policy_set *set = policy_set_new();
	struct compiled_policy *cp = NULL;
	struct publish_stats st;
	struct policy_error err;
	int ret;

	ret = policy_set_add_json(set, "bench.json", json, strlen(json), &err);
	if (!ret)
		ret = policy_compile(set, &cp, &err);
	if (!ret)
		ret = publish_policy(l, cp, &st);
	compiled_policy_free(cp);
	policy_set_free(set);
	return ret;
}

static int publish_vm1(void)
{
	return publish_json(ld, "{\"version\": 1, \"vms\": [{\"id\": 1, \"name\": \"bench\", "
			    "\"capabilities\": [\"CAP_NETWORK\"], \"devices\": {\"allow\": "
			    "[\"c 241:0 r\"], \"deny\": [\"c 242:* rw\"]}}]}");
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

/* ---- the decision alone --------------------------------------------------- */

#define DEC_ITERS	2000
#define DEC_ROUNDS	201
#define NSEC		1000000000ULL

enum dec_case { D_PERM, D_TEMP, D_DELEG3, D_TEMP_NEAR, D_DELEG3_NEAR, D_NONE, D_MAX };

static const char *const dec_name[D_MAX] = {
	[D_PERM]	= "permanent CAP_GPU (plain decision)",
	[D_TEMP]	= "temporary CAP_GPU",
	[D_DELEG3]	= "CAP_GPU delegated at depth 3 (2->3->4->1)",
	[D_TEMP_NEAR]	= "temporary, deadline < 20 ms (walk, boot clock)",
	[D_DELEG3_NEAR]	= "depth 3, a link ending < 20 ms (walk, boot clock)",
	[D_NONE]	= "no CAP_GPU (denied)",
};


static uint64_t boot_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return ts.tv_sec * NSEC + ts.tv_nsec;
}

static int publish_chain(struct loader *l)
{
	return publish_json(l, "{\"version\": 1, \"vms\": ["
		"{\"id\": 1, \"name\": \"leaf\", \"capabilities\": []},"
		"{\"id\": 2, \"name\": \"root\", \"capabilities\": [\"CAP_GPU\", \"CAP_ADMIN\"]},"
		"{\"id\": 3, \"name\": \"mid1\", \"capabilities\": [\"CAP_ADMIN\"]},"
		"{\"id\": 4, \"name\": \"mid2\", \"capabilities\": [\"CAP_ADMIN\"]}]}");
}

/* VM 1's grants and links for one case. */
static int dec_setup(struct loader *l, enum dec_case c)
{
	uint64_t until[RAYOS_CAP_COUNT] = { 0 }, far = boot_ns() + 3600 * NSEC;
	uint64_t near = boot_ns() + 15000000ULL;	/* inside the 20 ms margin */
	bool deleg = c == D_DELEG3 || c == D_DELEG3_NEAR;
	int err;

	if (c == D_TEMP)
		until[RAYOS_CAP_GPU] = far;
	if (c == D_TEMP_NEAR)
		until[RAYOS_CAP_GPU] = near;
	err = loader_vm_set_grants(l, 1, c == D_PERM ? 1ULL << RAYOS_CAP_GPU : 0, until);
	err = err ?: loader_cap_link_set(l, 3, RAYOS_CAP_GPU, deleg ? 2 : 0, far);
	err = err ?: loader_cap_link_set(l, 4, RAYOS_CAP_GPU, deleg ? 3 : 0, far);
	err = err ?: loader_cap_link_set(l, 1, RAYOS_CAP_GPU, deleg ? 4 : 0,
					 c == D_DELEG3_NEAR ? near : far);
	return err;
}

static int dec_run(struct rayos_capbench *sk, uint32_t mode, double *ns_per_call,
		   uint32_t *allowed)
{
	LIBBPF_OPTS(bpf_test_run_opts, opts);

	sk->bss->bench_vm_id = 1;
	sk->bss->bench_iters = DEC_ITERS;
	sk->bss->bench_mode = mode;
	if (bpf_prog_test_run_opts(bpf_program__fd(sk->progs.rayos_capbench), &opts))
		return -errno;
	*ns_per_call = (double)sk->bss->bench_ns / DEC_ITERS;
	*allowed = sk->bss->bench_allowed;
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double pct(double *v, int n, double p)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return v[(int)(p * (n - 1) + 0.5)];
}

static int bench_decision(void)
{
	static double t[D_MAX][DEC_ROUNDS], floor_ns[DEC_ROUNDS];
	struct loader_opts o = { .pin_root = dec_pin, .no_dev_stats = true };
	LIBBPF_OPTS(bpf_object_open_opts, oo, .pin_root_path = dec_pin);
	struct rayos_capbench *sk = NULL;
	struct loader *l = NULL;
	bool wrong[D_MAX] = { 0 };
	double p50_plain, fl;
	uint32_t allowed;
	int err;

	snprintf(dec_pin, sizeof(dec_pin), "/sys/fs/bpf/rayos-test-bench-cap-%d", getpid());
	err = loader_open(&o, &l);
	if (!err && loader_dev_prog_fd(l) < 0)
		err = -EOPNOTSUPP;
	err = err ?: publish_chain(l);
	if (err) {
		printf("# bench_dev: decision: cannot load and publish: %s\n", strerror(-err));
		goto out;
	}
	sk = rayos_capbench__open_opts(&oo);
	if (!sk || rayos_capbench__load(sk)) {
		err = -errno;
		printf("# bench_dev: decision: cannot load rayos_capbench: %s\n", strerror(-err));
		goto out;
	}
	for (int r = 0; r < DEC_ROUNDS && !err; r++) {
		err = dec_run(sk, 0, &floor_ns[r], &allowed);
		for (int c = 0; c < D_MAX && !err; c++) {
			err = dec_setup(l, c) ?: dec_run(sk, 1, &t[c][r], &allowed);
			if (allowed != (c == D_NONE ? 0 : DEC_ITERS))
				wrong[c] = true;
		}
	}
	if (err) {
		printf("# bench_dev: decision: %s\n", strerror(-err));
		goto out;
	}
	fl = pct(floor_ns, DEC_ROUNDS, 0.5);
	printf("# device decision (rayos_dev_decide, GPU node 226:0, read), ns per call less "
	       "the empty loop (%.1f ns), %d rounds x %d\n", fl, DEC_ROUNDS, DEC_ITERS);
	printf("%-52s %7s %7s %9s\n", "capability", "p50", "p99", "p50-plain");
	p50_plain = pct(t[D_PERM], DEC_ROUNDS, 0.5) - fl;
	for (int c = 0; c < D_MAX; c++) {
		double p50 = pct(t[c], DEC_ROUNDS, 0.5) - fl, p99 = pct(t[c], DEC_ROUNDS, 0.99) - fl;

		printf("%-52s %7.1f %7.1f %+9.1f%s\n", dec_name[c], p50, p99, p50 - p50_plain,
		       wrong[c] ? "  (WRONG VERDICT in some round)" : "");
	}
out:
	rayos_capbench__destroy(sk);
	if (l)
		loader_close(l);
	loader_purge(dec_pin);
	return err;
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
	return bench_decision() ? 1 : 0;
}
