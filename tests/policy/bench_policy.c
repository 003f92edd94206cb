// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Policy compile + apply time for 1, 64, 1024 and 4096 VMs.  Each VM has
 * 12 rules per direction (exact ports, ranges, CIDRs v4/v6, ICMP types).
 * Baseline in the same run: writing the same entries with plain map updates
 * (no generations, no flip, no grace period), which is the floor any
 * publishing scheme pays.  Prints figures; never fails on timing.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>

#include "agent/core/log.h"
#include "agent/policy/policy.h"
#include "loader/loader.h"
#include "loader/publish.h"

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* VMs first+1 .. first+nr; group g lives in the first file only. */
static char *gen_policy(unsigned int first, unsigned int nr_vms, unsigned int salt)
{
	size_t cap = 4096 + nr_vms * 2048, n = 0;
	char *buf = malloc(cap);

	n += snprintf(buf + n, cap - n, "{ \"version\": 1, %s \"vms\": [",
		      first ? "" : "\"groups\": { \"g\": { \"capabilities\": "
				   "[\"CAP_NETWORK\", \"CAP_CONSOLE\"] } },");
	for (unsigned int i = first; i < first + nr_vms; i++) {
		n += snprintf(buf + n, cap - n,
			"%s{ \"id\": %u, \"name\": \"vm%u\", \"group\": \"g\", "
			"\"interface\": \"tap%u\", \"mac\": \"52:54:00:%02x:%02x:%02x\", "
			"\"ipv4\": \"10.%u.%u.%u\", \"firewall\": { \"in\": { \"default\": \"deny\", "
			"\"rules\": ["
			"{\"action\":\"allow\",\"protocol\":\"tcp\",\"ports\":[22,80,443,%u]},"
			"{\"action\":\"allow\",\"protocol\":\"tcp\",\"ports\":[\"8000-8099\"],"
			"\"cidrs\":[\"10.0.0.0/8\",\"fd00::/8\"]},"
			"{\"action\":\"deny\",\"protocol\":\"udp\",\"ports\":[\"1-1023\"]},"
			"{\"action\":\"allow\",\"protocol\":\"udp\",\"ports\":[53,123,\"5000-5100\"]},"
			"{\"action\":\"allow\",\"protocol\":\"icmp\",\"icmp_types\":[0,3,8,11]},"
			"{\"action\":\"allow\",\"protocol\":\"icmpv6\",\"icmp_types\":[128,129,135,136]},"
			"{\"action\":\"deny\",\"cidrs\":[\"192.0.2.0/24\",\"198.51.100.0/24\"]},"
			"{\"action\":\"allow\",\"protocol\":\"tcp\",\"ports\":[\"30000-32767\"],"
			"\"cidrs\":[\"10.%u.0.0/16\"]},"
			"{\"action\":\"allow\",\"protocol\":\"tcp\",\"ports\":[5432],"
			"\"cidrs\":[\"10.1.2.0/24\",\"10.1.3.0/24\",\"2001:db8::/32\"]},"
			"{\"action\":\"deny\",\"protocol\":\"tcp\",\"ports\":[\"6000-6063\"]},"
			"{\"action\":\"allow\",\"protocol\":47},"
			"{\"action\":\"allow\",\"protocol\":\"udp\",\"ports\":[\"60000-61000\"]}"
			"] }, \"out\": { \"default\": \"allow\", \"rules\": ["
			"{\"action\":\"deny\",\"protocol\":\"tcp\",\"ports\":[25,465,587]}"
			"] } } }",
			i > first ? "," : "", i + 1, i + 1, i, (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff,
			(i >> 14) & 0xff, (i >> 7) & 0x7f, (i & 0x7f) + 1,
			1024 + (i + salt) % 60000, i & 0xff);
	}
	snprintf(buf + n, cap - n, "] }");
	return buf;
}

/* Through files, as the agent reads them (read, parse, validate, flatten);
 * 256 VMs per file keeps each under the 1 MiB file limit. */
static int load(unsigned int nr_vms, unsigned int salt, struct policy_set **set,
		struct policy_error *perr)
{
	char dir[] = "/tmp/rayos-bench.XXXXXX", file[64];
	unsigned int nr_files = (nr_vms + 255) / 256;
	int err = 0;

	if (!mkdtemp(dir))
		return -errno;
	for (unsigned int i = 0; i < nr_files && !err; i++) {
		unsigned int first = i * 256, n = nr_vms - first < 256 ? nr_vms - first : 256;
		char *json = gen_policy(first, n, salt);
		FILE *f;

		snprintf(file, sizeof(file), "%s/part%03u.json", dir, i);
		f = fopen(file, "w");
		if (!f || fputs(json, f) < 0)
			err = -errno;
		if (f)
			fclose(f);
		free(json);
	}
	if (!err)
		err = policy_load_dir(dir, set, perr);
	for (unsigned int i = 0; i < nr_files; i++) {
		snprintf(file, sizeof(file), "%s/part%03u.json", dir, i);
		unlink(file);
	}
	rmdir(dir);
	return err;
}

static size_t nr_entries(const struct compiled_policy *cp)
{
	size_t n = 0;

	for (size_t i = 0; i < cp->nr_vms; i++)
		n += cp->vms[i].nr_ports + cp->vms[i].nr_ranges +
		     cp->vms[i].nr_cidr4 + cp->vms[i].nr_cidr6 + 1;
	return n;
}

/* The floor: the same entries written once, in place, nothing else. */
static double raw_write_ms(struct loader *ld, const struct compiled_policy *cp)
{
	double t0 = now_ms();

	for (size_t i = 0; i < cp->nr_vms; i++) {
		const struct compiled_vm *cv = &cp->vms[i];
		__u32 id = cv->vm.vm_id;

		for (size_t j = 0; j < cv->nr_ports; j++)
			bpf_map_update_elem(loader_map_fd(ld, RAYOS_MAP_FW_PORT),
					    &cv->ports[j].key, &cv->ports[j].val, BPF_ANY);
		for (size_t j = 0; j < cv->nr_ranges; j++)
			bpf_map_update_elem(loader_map_fd(ld, RAYOS_MAP_FW_RANGE),
					    &cv->ranges[j].key, &cv->ranges[j].val, BPF_ANY);
		for (size_t j = 0; j < cv->nr_cidr4; j++)
			bpf_map_update_elem(loader_map_fd(ld, RAYOS_MAP_FW_CIDR4),
					    &cv->cidr4[j].key, &cv->cidr4[j].val, BPF_ANY);
		for (size_t j = 0; j < cv->nr_cidr6; j++)
			bpf_map_update_elem(loader_map_fd(ld, RAYOS_MAP_FW_CIDR6),
					    &cv->cidr6[j].key, &cv->cidr6[j].val, BPF_ANY);
		bpf_map_update_elem(loader_map_fd(ld, RAYOS_MAP_VMS), &id, &cv->vm, BPF_ANY);
	}
	return now_ms() - t0;
}

static int bench(unsigned int nr_vms)
{
	char pin[128];
	struct loader_opts lo = { .pin_root = pin, .max_vms = 4096 };
	struct compiled_policy *cp = NULL, *cp2 = NULL;
	struct policy_set *set = NULL, *set2 = NULL;
	struct policy_error perr = {};
	struct publish_stats st;
	struct loader *ld = NULL, *raw = NULL;
	double t_parse, t_compile, t_first, t_edit, t_same, t_raw;
	double t0;
	int err;

	snprintf(pin, sizeof(pin), "/sys/fs/bpf/rayos-bench-%d", getpid());

	t0 = now_ms();
	err = load(nr_vms, 0, &set, &perr);
	t_parse = now_ms() - t0;
	t0 = now_ms();
	err = err ?: policy_compile(set, &cp, &perr);
	t_compile = now_ms() - t0;
	err = err ?: load(nr_vms, 1, &set2, &perr);
	err = err ?: policy_compile(set2, &cp2, &perr);
	if (err) {
		char msg[1024];

		policy_error_format(&perr, msg, sizeof(msg));
		fprintf(stderr, "bench: generated policy rejected: %s\n", msg);
		goto out;
	}

	err = loader_open(&lo, &ld);
	if (err)
		goto out;
	t0 = now_ms();
	err = publish_policy(ld, cp, &st);		/* every VM new */
	t_first = now_ms() - t0;
	t0 = now_ms();
	err = err ?: publish_policy(ld, cp2, &st);	/* one port changed per VM */
	t_edit = now_ms() - t0;
	t0 = now_ms();
	err = err ?: publish_policy(ld, cp2, &st);	/* nothing changed */
	t_same = now_ms() - t0;
	loader_close(ld);
	ld = NULL;
	loader_purge(pin);
	if (err)
		goto out;

	/* Baseline on fresh maps. */
	err = loader_open(&lo, &raw);
	if (err)
		goto out;
	t_raw = raw_write_ms(raw, cp);

	printf("%5u VMs %7zu entries | parse %8.2f ms  compile %8.2f ms | apply: "
	       "first %8.2f ms  edit-all %8.2f ms  unchanged %6.2f ms | baseline "
	       "raw map writes %8.2f ms\n", nr_vms, nr_entries(cp), t_parse, t_compile,
	       t_first, t_edit, t_same, t_raw);
out:
	loader_close(raw);
	loader_close(ld);
	loader_purge(pin);
	compiled_policy_free(cp);
	compiled_policy_free(cp2);
	policy_set_free(set);
	policy_set_free(set2);
	return err;
}

int main(void)
{
	static const unsigned int sizes[] = { 1, 64, 1024, 4096 };

	log_set_level(LOG_LVL_WARN);
	printf("# policy compile + apply (generation flip incl. one RCU grace period)\n");
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		if (bench(sizes[i]))
			return 1;
	return 0;
}
