/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Shared fixture of the tests/net BPF_PROG_TEST_RUN tests: loads rayos_net
 * through the loader under a private pin root (removed at exit, also on
 * SIGINT/SIGTERM), writes a VM the way the agent does, and reads counters.
 * Header-only (static functions) because tests/lib is linked into every test
 * binary and only the net tests need the loader.
 */
#ifndef RAYOS_TEST_NET_FIXTURE_H
#define RAYOS_TEST_NET_FIXTURE_H

#include <arpa/inet.h>
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "bpf/abi/net.h"
#include "bpf/abi/policy.h"
#include "loader/attach.h"
#include "loader/capswitch.h"
#include "loader/loader.h"
#include "loader/publish.h"
#include "tests/lib/pkt.h"
#include "tests/lib/tap.h"

/* The ABI as the BPF side lays it out (clang -target bpf, same rules). */
_Static_assert(sizeof(struct rayos_event) == 64, "rayos_event layout");
_Static_assert(sizeof(struct rayos_ct4_key) == 16, "rayos_ct4_key layout");
_Static_assert(sizeof(struct rayos_ct6_key) == 40, "rayos_ct6_key layout");
_Static_assert(sizeof(struct rayos_ct_val) == 24, "rayos_ct_val layout");
_Static_assert(sizeof(struct rayos_frag_key) == 44, "rayos_frag_key layout");
_Static_assert(sizeof(struct rayos_frag_val) == 16, "rayos_frag_val layout");
_Static_assert(sizeof(struct rayos_tbf) == 24, "rayos_tbf layout");
_Static_assert(sizeof(struct rayos_vm_stats) ==
	       RAYOS_DIR_MAX * RAYOS_RSN_MAX * sizeof(struct rayos_ctr), "rayos_vm_stats layout");

#define TC_ACT_OK	0
#define TC_ACT_SHOT	2

/* The VM under test.  BPF_PROG_TEST_RUN runs a sched_cls program on the
 * device named by ctx_in->ifindex (loopback when 0 or 1), and the program
 * finds its VM by skb->ifindex: so the test VM "owns" lo (ifindex 1) inside
 * this private pin root, which no live program reads. */
#define VM_ID		7
#define VM_SLOT		3
#define VM_IFINDEX	1
#define VM_MAC		"52:54:00:12:34:56"
#define VM_IP		"10.0.0.2"
#define VM_IP6		"2001:db8::2"
#define VM_LL		"fe80::5054:ff:fe12:3456"	/* EUI-64 of VM_MAC */
#define HOST_MAC	"52:54:00:00:00:01"
#define HOST_IP		"10.0.0.1"	/* in rayos_host4: the bridge's address */
#define HOST_IP2	"10.0.0.254"	/* in rayos_host4: another address of the host */
#define HOST_IP6	"2001:db8::1"	/* in rayos_host6 */

struct net_fixture {
	struct loader *ld;
	char pin_root[64];
	int prog[RAYOS_PROG_MAX];
	int map[RAYOS_MAP_MAX];
	int nr_cpus;
	uint64_t version;	/* policy_version of the next written VM record */
};

static struct net_fixture fx;

static void fixture_cleanup(void)
{
	if (fx.ld) {
		loader_close(fx.ld);
		fx.ld = NULL;
	}
	if (fx.pin_root[0]) {
		int err = loader_purge(fx.pin_root);

		if (err)
			fprintf(stderr, "# cannot remove %s: %s\n", fx.pin_root, strerror(-err));
		fx.pin_root[0] = '\0';
	}
}

static void fixture_signal(int sig)
{
	fixture_cleanup();
	signal(sig, SIG_DFL);
	raise(sig);
}

/* Returns 0, or a skip reason for tap_skip. */
static const char *fixture_open(void)
{
	struct loader_opts opts = { 0 };
	cpu_set_t cpus;
	int err;

	/* One CPU: per-CPU state (event limiter) then behaves predictably. */
	CPU_ZERO(&cpus);
	CPU_SET(0, &cpus);
	sched_setaffinity(0, sizeof(cpus), &cpus);

	snprintf(fx.pin_root, sizeof(fx.pin_root), "/sys/fs/bpf/rayos-test-%d", getpid());
	atexit(fixture_cleanup);
	signal(SIGINT, fixture_signal);
	signal(SIGTERM, fixture_signal);
	opts.pin_root = fx.pin_root;
	err = loader_open(&opts, &fx.ld);
	if (err) {
		static char why[128];

		snprintf(why, sizeof(why), "loader_open: %s (need root and bpffs)", strerror(-err));
		return why;
	}
	for (int i = 0; i < RAYOS_PROG_MAX; i++)
		fx.prog[i] = loader_prog_fd(fx.ld, i);
	for (int i = 0; i < RAYOS_MAP_MAX; i++)
		fx.map[i] = loader_map_fd(fx.ld, i);
	fx.nr_cpus = libbpf_num_possible_cpus();
	fx.version = 1;
	{
		/* The host's addresses, as the agent's address watcher
		 * writes them. */
		struct loader_host_addr ha[3] = {
			{ .family = AF_INET, .ifindex = 1 },
			{ .family = AF_INET, .ifindex = 1 },
			{ .family = AF_INET6, .ifindex = 1 },
		};
		uint32_t a4 = pkt_ip4(HOST_IP), b4 = pkt_ip4(HOST_IP2);

		memcpy(ha[0].addr, &a4, 4);
		memcpy(ha[1].addr, &b4, 4);
		pkt_ip6(ha[2].addr, HOST_IP6);
		err = loader_host_addrs_sync(fx.ld, ha, 3);
		if (err)
			fprintf(stderr, "# loader_host_addrs_sync: %s\n", strerror(-err));
	}
	return NULL;
}

static uint64_t now_boot_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

/* The clock of flows, fragments and the event limiter (rayos_now()). */
static uint64_t now_coarse_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

/* Delete every entry of a hash or LPM map. */
static void map_clear(int fd, size_t key_size)
{
	uint8_t key[128];

	if (key_size > sizeof(key))
		abort();
	while (!bpf_map_get_next_key(fd, NULL, key))
		if (bpf_map_delete_elem(fd, key))
			break;
}

/* Zero one cell of an ARRAY or PERCPU_ARRAY map. */
static void array_zero(int fd, uint32_t idx, size_t value_size, bool percpu)
{
	size_t n = value_size * (percpu ? (size_t)fx.nr_cpus : 1);
	void *zero = calloc(1, n);

	bpf_map_update_elem(fd, &idx, zero, BPF_ANY);
	free(zero);
}

static struct rayos_ctr vm_ctr(int dir, int reason)
{
	struct rayos_vm_stats *v = calloc(fx.nr_cpus, sizeof(*v));
	struct rayos_ctr sum = { 0 };
	uint32_t key = VM_SLOT;

	if (!bpf_map_lookup_elem(fx.map[RAYOS_MAP_VM_STATS], &key, v))
		for (int c = 0; c < fx.nr_cpus; c++) {
			sum.packets += v[c].c[dir][reason].packets;
			sum.bytes += v[c].c[dir][reason].bytes;
		}
	free(v);
	return sum;
}

/* rayos_rule_stats is a plain ARRAY (atomic adds): one value for all CPUs. */
static struct rayos_ctr rule_ctr(int dir, int rule)
{
	struct rayos_ctr v = { 0 };
	uint32_t key = RAYOS_RULE_STATS_IDX(VM_SLOT, dir, rule);

	bpf_map_lookup_elem(fx.map[RAYOS_MAP_RULE_STATS], &key, &v);
	return v;
}

static uint64_t net_ctr(uint32_t id)
{
	uint64_t *v = calloc(fx.nr_cpus, sizeof(*v)), sum = 0;

	if (!bpf_map_lookup_elem(fx.map[RAYOS_MAP_NET_STATS], &id, v))
		for (int c = 0; c < fx.nr_cpus; c++)
			sum += v[c];
	free(v);
	return sum;
}

/* The iface -> VM link with the copy of the VM's record and binding, as the
 * loader writes it at registration and after each change of either. */
static void iface_set(bool present)
{
	uint32_t ifindex = VM_IFINDEX;
	struct rayos_iface val = { .vm_id = VM_ID };

	if (!present) {
		bpf_map_delete_elem(fx.map[RAYOS_MAP_IFACES], &ifindex);
		return;
	}
	loader_iface_compose(fx.map[RAYOS_MAP_VMS], fx.map[RAYOS_MAP_IP_BIND], &val);
	bpf_map_update_elem(fx.map[RAYOS_MAP_IFACES], &ifindex, &val, BPF_ANY);
}

/* After a direct write of the record or the binding: what
 * loader_iface_sync() does for the agent. */
static void iface_sync(void)
{
	uint32_t ifindex = VM_IFINDEX;
	struct rayos_iface val;

	if (!bpf_map_lookup_elem(fx.map[RAYOS_MAP_IFACES], &ifindex, &val))
		iface_set(true);
}

/* rayos_ip_bind: flags 0 removes the binding. */
static void bind_set(uint32_t flags, uint64_t lease_expiry_ns)
{
	struct rayos_ip_bind b = { .flags = flags, .lease_expiry_ns = lease_expiry_ns };
	uint32_t id = VM_ID;

	if (!flags) {
		bpf_map_delete_elem(fx.map[RAYOS_MAP_IP_BIND], &id);
	} else {
		b.ipv4_be = pkt_ip4(VM_IP);
		pkt_ip6(b.ipv6, VM_IP6);
		bpf_map_update_elem(fx.map[RAYOS_MAP_IP_BIND], &id, &b, BPF_ANY);
	}
	iface_sync();
}

#endif /* RAYOS_TEST_NET_FIXTURE_H */
