// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Per-packet cost of rayos_from_vm / rayos_to_vm under BPF_PROG_TEST_RUN
 * (the kernel's own ns/run over many repeats), next to an empty tc and an
 * empty XDP program.  Two dimensions: rules host-wide (10 .. 1M, spread
 * over VMs, all in the maps the measured VM's lookups go to) and number of
 * VMs (8 .. 4096).  Maps are filled the way the agent fills them: JSON
 * policy files -> policy_load_dir -> policy_compile -> publish_policy.
 *
 * Every scenario is loaded at once (each under its own pin root) and each
 * round measures all of them, so a change in the machine's speed during the
 * run (these hosts have slow and fast phases) hits every figure alike and
 * the ratios compare like with like.  Then the capability check on the
 * flow-hit packet of scenario vms=8: CAP_NETWORK permanent (the plain flow
 * hit), temporary, delegated down a depth-3 chain (VM 2 -> 3 -> 4 -> 1), and
 * the latter two with a deadline too close to cache (walk and boot clock on
 * every packet), p50 and p99 over interleaved rounds.  Prints figures; never
 * fails on timing.
 */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "agent/core/log.h"
#include "agent/policy/policy.h"
#include "bpf/abi/net.h"
#include "loader/attach.h"
#include "loader/capstate.h"
#include "loader/devices.h"
#include "loader/loader.h"
#include "loader/publish.h"
#include "loader/stats.h"
#include "rayos_bench.skel.h"
#include "tests/lib/pkt.h"

#define MEASURED_ID	1		/* the VM whose packets are timed */
#define TAP_IFINDEX	1		/* lo: test_run runs tc programs "on" it */
#define FILLER_ID	2		/* a VM whose CIDRs live in the LPM trie */
#define REPEAT		200000
#define ROUNDS		7		/* median of this many runs per figure */
#define VMS_PER_FILE	256		/* keeps filler files under 1 MiB */
#define MAX_VMS		4096

enum pkind { P_FLOW, P_FLOW_TEMP, P_RULE_DENY, P_DEFAULT_DENY, P_RULE_ALLOW, P_TRIE, P_MAX };

static const char *const pkind_name[P_MAX] = {
	[P_FLOW]	 = "flow hit (TCP ACK, out)",
	[P_FLOW_TEMP]	 = "flow hit, temporary CAP_NETWORK",
	[P_RULE_DENY]	 = "SYN, deny rule (range+cidr)",
	[P_DEFAULT_DENY] = "SYN, no rule: default deny",
	[P_RULE_ALLOW]	 = "GRE, allow rule (+rule ctr)",
	[P_TRIE]	 = "SYN, CIDR in LPM trie: default",
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- policy generation ---------------------------------------------------- */

/* A realistic VM: a server reachable on a few ports from a few networks,
 * default deny in, default allow out.  About ten map entries. */
static int put_vm(char *buf, size_t cap, unsigned int id, bool filler)
{
	int n = snprintf(buf, cap,
		"{ \"id\": %u, \"name\": \"vm%u\", \"interface\": \"tap%u\", "
		"\"mac\": \"52:54:00:%02x:%02x:%02x\", \"ipv4\": \"10.%u.%u.%u\", "
		"\"capabilities\": [\"CAP_NETWORK\"], \"firewall\": { \"in\": { \"default\": \"deny\", \"rules\": [",
		id, id, id, (id >> 16) & 0xff, (id >> 8) & 0xff, id & 0xff,
		(id >> 14) & 0xff, (id >> 7) & 0x7f, (id & 0x7f) + 1);

	if (!filler) {
		n += snprintf(buf + n, cap - n,
			"{\"action\":\"allow\",\"protocol\":\"tcp\",\"ports\":[22,443],"
			"\"cidrs\":[\"10.0.0.0/8\"]},"
			"{\"action\":\"allow\",\"protocol\":\"tcp\",\"ports\":[5432],"
			"\"cidrs\":[\"10.1.2.0/24\"]},"
			"{\"action\":\"deny\",\"protocol\":\"tcp\",\"ports\":[\"6016-6047\"]},"
			"{\"action\":\"allow\",\"protocol\":\"icmp\",\"icmp_types\":[8]},"
			"{\"action\":\"allow\",\"protocol\":47},"
			"{\"action\":\"deny\",\"cidrs\":[\"203.0.113.0/24\"]}");
	} else {
		/* 241 rules as nftables would count them (one per port,
		 * range and CIDR): 128 exact ports (hash), 16 ranges of 3
		 * ports (interval table), 96 CIDRs (LPM trie). */
		n += snprintf(buf + n, cap - n, "{\"action\":\"allow\",\"protocol\":\"tcp\",\"ports\":[");
		for (int i = 0; i < 128; i++)
			n += snprintf(buf + n, cap - n, "%s%d", i ? "," : "", 1000 + i);
		n += snprintf(buf + n, cap - n, "]},{\"action\":\"allow\",\"protocol\":\"udp\",\"ports\":[");
		for (int i = 0; i < 16; i++)
			n += snprintf(buf + n, cap - n, "%s\"%d-%d\"", i ? "," : "",
				      2001 + 8 * i, 2003 + 8 * i);
		n += snprintf(buf + n, cap - n, "]},{\"action\":\"allow\",\"protocol\":\"tcp\","
			      "\"ports\":[443],\"cidrs\":[");
		/* every other /24: 96 intervals apart, more than an
		 * interval table holds, so these stay in the LPM trie */
		for (int i = 0; i < 96; i++)
			n += snprintf(buf + n, cap - n, "%s\"172.16.%d.0/24\"", i ? "," : "", 2 * i);
		n += snprintf(buf + n, cap - n, "]}");
	}
	n += snprintf(buf + n, cap - n,
		"] }, \"out\": { \"default\": \"allow\", \"rules\": ["
		"{\"action\":\"deny\",\"protocol\":\"tcp\",\"ports\":[25]}] } } }");
	return n;
}

/* VM ids 1..nr_vms; ids <= nr_plain get the realistic set, the rest are
 * fillers.  Written as files and read back like the agent does. */
static int load_policy(unsigned int nr_vms, unsigned int nr_plain, struct policy_set **set)
{
	char dir[] = "/tmp/rayos-bench-fw.XXXXXX", file[64];
	unsigned int nr_files = (nr_vms + VMS_PER_FILE - 1) / VMS_PER_FILE;
	size_t cap = 8192 + VMS_PER_FILE * 4096;
	struct policy_error perr = { 0 };
	char *buf = malloc(cap);
	int err = 0;

	if (!buf || !mkdtemp(dir)) {
		free(buf);
		return -errno;
	}
	for (unsigned int f = 0; f < nr_files && !err; f++) {
		unsigned int first = f * VMS_PER_FILE + 1;
		unsigned int last = first + VMS_PER_FILE - 1 < nr_vms ? first + VMS_PER_FILE - 1 : nr_vms;
		size_t n = snprintf(buf, cap, "{ \"version\": 1, \"vms\": [");
		FILE *fp;

		for (unsigned int id = first; id <= last; id++) {
			if (id > first)
				buf[n++] = ',';
			n += put_vm(buf + n, cap - n, id, id > nr_plain);
		}
		n += snprintf(buf + n, cap - n, "] }\n");
		snprintf(file, sizeof(file), "%s/p%04u.json", dir, f);
		fp = fopen(file, "w");
		if (!fp || fwrite(buf, 1, n, fp) != n)
			err = -EIO;
		if (fp)
			fclose(fp);
	}
	free(buf);
	if (!err) {
		err = policy_load_dir(dir, set, &perr);
		if (err) {
			char msg[1024];

			policy_error_format(&perr, msg, sizeof(msg));
			fprintf(stderr, "bench_fw: generated policy rejected: %s\n", msg);
		}
	}
	for (unsigned int f = 0; f < nr_files; f++) {
		snprintf(file, sizeof(file), "%s/p%04u.json", dir, f);
		unlink(file);
	}
	rmdir(dir);
	return err;
}

/* Rules as nftables would count them: one per port or range and CIDR. */
static size_t nr_rules(const struct policy_set *set)
{
	size_t n = 0;

	for (size_t i = 0; i < set->nr_vms; i++)
		for (int d = 0; d < RAYOS_DIR_MAX; d++)
			for (size_t r = 0; r < set->vms[i].fw[d].nr_rules; r++) {
				const struct fw_rule *fr = &set->vms[i].fw[d].rules[r];

				n += (fr->nr_ports ?: 1) * (fr->nr_cidrs ?: 1);
			}
	return n;
}

/* ---- packets and timing --------------------------------------------------- */

static void build(struct pkt *p, enum pkind k, bool syn_for_flow)
{
	uint8_t vm_mac[6] = { 0x52, 0x54, 0, 0, 0, MEASURED_ID }, host_mac[6];

	pkt_mac(host_mac, "52:54:00:ff:00:01");
	pkt_init(p);
	if (k == P_FLOW || k == P_FLOW_TEMP) {	/* guest -> outside, 443: default allow out */
		pkt_eth(p, host_mac, vm_mac, 0x0800);
		pkt_ipv4(p, "10.0.0.2", "198.51.100.1", 6, 0, 0, 1);
		pkt_tcp(p, 40000, 443, syn_for_flow ? 0x02 : 0x10);
	} else {
		pkt_eth(p, vm_mac, host_mac, 0x0800);
		if (k == P_RULE_ALLOW) {
			pkt_ipv4(p, "10.1.2.3", "10.0.0.2", 47, 0, 0, 1);
			pkt_payload(p, 4, 0);
		} else if (k == P_TRIE) {
			/* the filler's "tcp 443 from 96 CIDRs": a port hit,
			 * then the trie walk, which misses */
			pkt_ipv4(p, "198.51.100.1", "10.0.0.2", 6, 0, 0, 1);
			pkt_tcp(p, 40000, 443, 0x02);
		} else {
			pkt_ipv4(p, "198.51.100.1", "10.0.0.2", 6, 0, 0, 1);
			pkt_tcp(p, 40000, k == P_RULE_DENY ? 6020 : 9999, 0x02);
		}
	}
	pkt_payload(p, 60 > p->len ? 60 - p->len : 0, 0);
	pkt_finish(p);
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

static uint32_t median(uint32_t *v, int n)
{
	qsort(v, n, sizeof(*v), cmp_u32);
	return v[n / 2];
}

static int run_xdp(int fd, const struct pkt *p, uint32_t repeat, uint32_t *ns)
{
	uint8_t out[PKT_MAX + 256];
	LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = p->buf, .data_size_in = p->len,
		    .data_out = out, .data_size_out = sizeof(out), .repeat = repeat);

	if (bpf_prog_test_run_opts(fd, &opts))
		return -errno;
	*ns = opts.duration;
	return 0;
}

/* ---- scenarios -------------------------------------------------------------- */

struct scenario {
	const char *label;
	unsigned int nr_vms, nr_plain, max_vms;
	size_t rules, entries, tabs;	/* filled in */
	struct loader *ld;
	char pin[96];
	uint32_t empty_tc[ROUNDS], empty_xdp[ROUNDS], ns[P_MAX][ROUNDS];
	uint32_t verdict[P_MAX];
	/* medians */
	uint32_t m_tc, m_xdp, m[P_MAX];
};

static int iface_to(struct scenario *s, uint32_t vm_id)
{
	struct rayos_iface iface = { .vm_id = vm_id };
	uint32_t ifindex = TAP_IFINDEX;

	loader_iface_compose(loader_map_fd(s->ld, RAYOS_MAP_VMS),
			     loader_map_fd(s->ld, RAYOS_MAP_IP_BIND), &iface);
	return bpf_map_update_elem(loader_map_fd(s->ld, RAYOS_MAP_IFACES), &ifindex, &iface,
				   BPF_ANY) ? -errno : 0;
}

/* Load, compile and publish the scenario's policy; open the measured flow. */
static int setup(struct scenario *s, int idx)
{
	struct loader_opts lo = { .pin_root = s->pin, .max_vms = s->max_vms };
	struct compiled_policy *cp = NULL;
	struct policy_set *set = NULL;
	struct policy_error perr = { 0 };
	struct publish_stats st;
	double t0 = now_s(), t_load, t_pub;
	struct pkt syn;
	uint32_t rv;
	int err;

	snprintf(s->pin, sizeof(s->pin), "/sys/fs/bpf/rayos-bench-fw-%d-%d", getpid(), idx);
	err = load_policy(s->nr_vms, s->nr_plain, &set);
	err = err ?: policy_compile(set, &cp, &perr);
	if (err)
		goto out;
	s->rules = nr_rules(set);
	for (size_t i = 0; i < cp->nr_vms; i++) {
		s->entries += cp->vms[i].nr_ports + cp->vms[i].nr_ranges +
			      cp->vms[i].nr_cidr4 + cp->vms[i].nr_cidr6;
		s->tabs += cp->vms[i].nr_tabs;
	}
	t_load = now_s() - t0;
	err = loader_open(&lo, &s->ld);
	if (err) {
		fprintf(stderr, "bench_fw: loader_open: %s\n", strerror(-err));
		goto out;
	}
	t0 = now_s();
	err = publish_policy(s->ld, cp, &st);
	t_pub = now_s() - t0;
	if (err) {
		fprintf(stderr, "bench_fw: publish_policy: %s\n", strerror(-err));
		goto out;
	}
	/* The tap -> VM link, as loader_attach_vm writes it (without
	 * attaching anything to lo); then the flow the ACKs belong to. */
	build(&syn, P_FLOW, true);
	err = iface_to(s, MEASURED_ID) ?:
	      pkt_run_tc(loader_prog_fd(s->ld, RAYOS_PROG_FROM_VM), &syn, TAP_IFINDEX, 1, &rv, NULL);
	fprintf(stderr, "# %s: %zu rules, %zu trie/hash entries, %zu interval tables, %u VMs: "
		"parse+compile %.2f s, publish %.2f s\n", s->label, s->rules, s->entries, s->tabs,
		s->nr_vms, t_load, t_pub);
out:
	compiled_policy_free(cp);
	policy_set_free(set);
	return err;
}

static void teardown(struct scenario *s)
{
	loader_close(s->ld);
	if (s->pin[0])
		loader_purge(s->pin);
}

/* The measured VM's CAP_NETWORK as a permanent bit, or as a temporary
 * grant (bit clear, deadline an hour ahead: the program reads the boot
 * clock and compares), written the way `cap grant-temp` writes it. */
static int cap_network_temporary(struct scenario *s, bool temp)
{
	uint64_t until[RAYOS_CAP_COUNT] = { 0 };
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	if (temp)
		until[RAYOS_CAP_NETWORK] = (ts.tv_sec + 3600) * 1000000000ULL;
	return loader_vm_set_grants(s->ld, MEASURED_ID, temp ? 0 : 1ULL << RAYOS_CAP_NETWORK,
				    until) ?: iface_to(s, MEASURED_ID);
}

/* One round of every figure of one scenario. */
static int measure_round(struct rayos_bench *empty, struct scenario *s, int r)
{
	int out = loader_prog_fd(s->ld, RAYOS_PROG_FROM_VM);
	int in = loader_prog_fd(s->ld, RAYOS_PROG_TO_VM);
	struct pkt pk[P_MAX];
	uint32_t rv;
	int err;

	for (int k = 0; k < P_MAX; k++)
		build(&pk[k], k, false);
	err = pkt_run_tc(bpf_program__fd(empty->progs.rayos_bench_tc), &pk[P_RULE_DENY],
			 TAP_IFINDEX, REPEAT, &rv, &s->empty_tc[r]);
	err = err ?: run_xdp(bpf_program__fd(empty->progs.rayos_bench_xdp), &pk[P_RULE_DENY],
			     REPEAT, &s->empty_xdp[r]);
	for (int k = 0; k < P_MAX && !err; k++) {
		/* The trie packet goes to a filler VM's tap (rule scenarios). */
		if (k == P_TRIE && (s->nr_vms < FILLER_ID || s->nr_plain >= FILLER_ID))
			continue;
		if (k == P_TRIE)
			err = iface_to(s, FILLER_ID);
		if (k == P_FLOW_TEMP)
			err = cap_network_temporary(s, true);
		err = err ?: pkt_run_tc(k == P_FLOW || k == P_FLOW_TEMP ? out : in, &pk[k],
					TAP_IFINDEX, REPEAT, &s->verdict[k], &s->ns[k][r]);
		if (k == P_TRIE)
			err = err ?: iface_to(s, MEASURED_ID);
		if (k == P_FLOW_TEMP)
			err = err ?: cap_network_temporary(s, false);
	}
	return err;
}

static void print_row(const struct scenario *s)
{
	for (int k = 0; k < P_MAX; k++) {
		if (!s->m[k])
			continue;
		printf("%-10s %8zu %5u  %-32s %7u %+9d %+9d   %s\n", s->label, s->rules, s->nr_vms,
		       pkind_name[k], s->m[k], (int)s->m[k] - (int)s->m_tc,
		       (int)s->m[k] - (int)s->m_xdp,
		       s->verdict[k] == 0 ? "pass" : s->verdict[k] == 2 ? "drop" : "?");
	}
	printf("%-10s %8s %5s  %-32s %7u %+9d %+9d\n", s->label, "", "", "(empty tc)",
	       s->m_tc, 0, (int)s->m_tc - (int)s->m_xdp);
	printf("%-10s %8s %5s  %-32s %7u %+9d %+9d\n", s->label, "", "", "(empty xdp)",
	       s->m_xdp, (int)s->m_xdp - (int)s->m_tc, 0);
}

static void print_ratio(const char *what, const struct scenario *lo, const struct scenario *hi)
{
	for (int k = 0; k < P_MAX; k++) {
		double dl = (double)lo->m[k] - lo->m_tc;
		double dh = (double)hi->m[k] - hi->m_tc;

		if (!lo->m[k] || !hi->m[k])
			continue;
		printf("ratio %-9s %-32s ns/packet %.2fx   over empty tc %.2fx\n", what,
		       pkind_name[k], (double)hi->m[k] / lo->m[k], dl > 0 ? dh / dl : 0.0);
	}
}

/* ---- the capability check on a flow hit ------------------------------------- */

#define CAP_ROUNDS	101
#define CAP_REPEAT	20000
#define NSEC		1000000000ULL

enum cap_case { C_PERM, C_TEMP, C_DELEG3, C_TEMP_NEAR, C_DELEG3_NEAR, C_MAX };

static const char *const cap_name[C_MAX] = {
	[C_PERM]	= "permanent CAP_NETWORK (plain flow hit)",
	[C_TEMP]	= "temporary CAP_NETWORK",
	[C_DELEG3]	= "CAP_NETWORK delegated at depth 3 (2->3->4->1)",
	[C_TEMP_NEAR]	= "temporary, deadline < 20 ms (walk, boot clock)",
	[C_DELEG3_NEAR]	= "depth 3, a link ending < 20 ms (walk, boot clock)",
};

static uint64_t boot_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return ts.tv_sec * NSEC + ts.tv_nsec;
}

/* VM 1's CAP_NETWORK for one case; VMs 3 and 4 lose theirs while the chain
 * runs through them, so the walk goes all the way to VM 2. */
static int cap_setup(struct scenario *s, enum cap_case c)
{
	uint64_t until[RAYOS_CAP_COUNT] = { 0 }, far = boot_ns() + 3600 * NSEC;
	uint64_t near = boot_ns() + 15000000ULL, net = 1ULL << RAYOS_CAP_NETWORK;
	bool deleg = c == C_DELEG3 || c == C_DELEG3_NEAR;
	int err = 0;

	for (uint32_t id = 3; id <= 4 && !err; id++)
		err = loader_vm_set_grants(s->ld, id, deleg ? 0 : net, until);
	err = err ?: loader_cap_link_set(s->ld, 3, RAYOS_CAP_NETWORK, deleg ? 2 : 0, far);
	err = err ?: loader_cap_link_set(s->ld, 4, RAYOS_CAP_NETWORK, deleg ? 3 : 0, far);
	err = err ?: loader_cap_link_set(s->ld, MEASURED_ID, RAYOS_CAP_NETWORK, deleg ? 4 : 0,
					 c == C_DELEG3_NEAR ? near : far);
	if (c == C_TEMP)
		until[RAYOS_CAP_NETWORK] = far;
	if (c == C_TEMP_NEAR)
		until[RAYOS_CAP_NETWORK] = near;
	return err ?: loader_vm_set_grants(s->ld, MEASURED_ID, c == C_PERM ? net : 0, until) ?:
		      iface_to(s, MEASURED_ID);
}

static uint32_t pct(uint32_t *v, int n, double p)
{
	qsort(v, n, sizeof(*v), cmp_u32);
	return v[(int)(p * (n - 1) + 0.5)];
}

static int bench_caps(struct rayos_bench *empty, struct scenario *s)
{
	static uint32_t t[C_MAX][CAP_ROUNDS], floor_tc[CAP_ROUNDS];
	int out = loader_prog_fd(s->ld, RAYOS_PROG_FROM_VM);
	bool wrong[C_MAX] = { 0 };
	uint32_t rv, fl, plain;
	struct pkt pk;
	int err = 0;

	build(&pk, P_FLOW, false);
	for (int r = 0; r < CAP_ROUNDS && !err; r++) {
		err = pkt_run_tc(bpf_program__fd(empty->progs.rayos_bench_tc), &pk, TAP_IFINDEX,
				 CAP_REPEAT, &rv, &floor_tc[r]);
		for (int c = 0; c < C_MAX && !err; c++) {
			err = cap_setup(s, c) ?:
			      pkt_run_tc(out, &pk, TAP_IFINDEX, CAP_REPEAT, &rv, &t[c][r]);
			if (rv != 0)
				wrong[c] = true;
		}
	}
	err = err ?: cap_setup(s, C_PERM);
	if (err) {
		fprintf(stderr, "bench_fw: capability cases: %s\n", strerror(-err));
		return err;
	}
	fl = pct(floor_tc, CAP_ROUNDS, 0.5);
	plain = pct(t[C_PERM], CAP_ROUNDS, 0.5);
	printf("# capability check on a flow hit (TCP ACK, out), %s, %d rounds x %d repeats; "
	       "empty tc %u ns\n", s->label, CAP_ROUNDS, CAP_REPEAT, fl);
	printf("%-52s %7s %7s %9s   %s\n", "CAP_NETWORK", "p50", "p99", "p50-plain", "verdict");
	for (int c = 0; c < C_MAX; c++) {
		uint32_t p50 = pct(t[c], CAP_ROUNDS, 0.5), p99 = pct(t[c], CAP_ROUNDS, 0.99);

		printf("%-52s %7u %7u %+9d   %s\n", cap_name[c], p50, p99, (int)p50 - (int)plain,
		       wrong[c] ? "WRONG (dropped)" : "pass");
	}
	return 0;
}

/* argv[1]: run only scenarios whose label contains it (ratios need all). */
int main(int argc, char **argv)
{
	const char *filter = argc > 1 ? argv[1] : NULL;
	/* Rule dimension: one realistic VM plus fillers of 241 rules each,
	 * max_vms fixed so only the rule count changes.  VM dimension: every
	 * VM has the realistic set, maps sized to fit. */
	struct scenario sc[] = {
		{ "rules=10", 1, 1, MAX_VMS },
		{ "rules=1k", 5, 1, MAX_VMS },
		{ "rules=100k", 416, 1, MAX_VMS },
		{ "rules=1M", MAX_VMS, 1, MAX_VMS },
		{ "vms=8", 8, 8, 8 },
		{ "vms=64", 64, 64, 64 },
		{ "vms=1024", 1024, 1024, 1024 },
		{ "vms=4096", 4096, 4096, 4096 },
	};
	enum { R10, R1K, R100K, R1M, V8, V64, V1024, V4096, NR_SC };
	bool on[NR_SC];
	struct rayos_bench *empty;
	double t0 = now_s();
	cpu_set_t cpus;
	int err = 0;

	log_set_level(LOG_LVL_WARN);
	/* One CPU: per-CPU maps and caches behave the same for every figure. */
	CPU_ZERO(&cpus);
	CPU_SET(0, &cpus);
	sched_setaffinity(0, sizeof(cpus), &cpus);

	empty = rayos_bench__open_and_load();
	if (!empty) {
		fprintf(stderr, "bench_fw: cannot load the empty programs: %s (need root)\n",
			strerror(errno));
		return 1;
	}
	for (int i = 0; i < NR_SC && !err; i++) {
		on[i] = !filter || strstr(sc[i].label, filter);
		if (on[i])
			err = setup(&sc[i], i);
	}
	/* Rounds interleave every scenario and figure. */
	for (int r = 0; r < ROUNDS && !err; r++)
		for (int i = 0; i < NR_SC && !err; i++)
			if (on[i])
				err = measure_round(empty, &sc[i], r);
	if (!err) {
		printf("# rayos_net per packet, BPF_PROG_TEST_RUN, %d repeats, median of %d "
		       "interleaved rounds; 60-byte frames\n", REPEAT, ROUNDS);
		printf("%-10s %8s %5s  %-32s %7s %9s %9s   %s\n", "scenario", "rules", "VMs",
		       "packet", "ns/pkt", "-emptytc", "-emptyxdp", "verdict");
	}
	for (int i = 0; i < NR_SC && !err; i++) {
		struct scenario *s = &sc[i];

		if (!on[i])
			continue;
		s->m_tc = median(s->empty_tc, ROUNDS);
		s->m_xdp = median(s->empty_xdp, ROUNDS);
		for (int k = 0; k < P_MAX; k++)
			s->m[k] = s->ns[k][0] ? median(s->ns[k], ROUNDS) : 0;
		print_row(s);
	}
	if (!err && !filter) {
		print_ratio("1M/10", &sc[R10], &sc[R1M]);
		print_ratio("100k/10", &sc[R10], &sc[R100K]);
		print_ratio("4096/8", &sc[V8], &sc[V4096]);
	}
	if (!err && on[V8])
		err = bench_caps(empty, &sc[V8]);
	for (int i = 0; i < NR_SC; i++)
		if (on[i])
			teardown(&sc[i]);
	printf("# total %.1f s\n", now_s() - t0);
	rayos_bench__destroy(empty);
	return err ? 1 : 0;
}
