// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * agent/policy/limits.c: the port lists, rates and device nodes of
 * fine-grained capabilities (`cap fine-grain`, "capability_limits"), their
 * errors, set operations (merge, intersection, complement) and printing.
 * Table-driven; the set operations are also checked port by port.
 */
#include <errno.h>
#include <string.h>

#include "agent/policy/limits.h"
#include "tests/lib/tap.h"

static const struct {
	const char *in;
	int err;
	const char *canon;	/* caps_ports_format of the result */
	const char *msg;	/* a word the error must contain */
} port_lists[] = {
	{ "443", 0, "443", NULL },
	{ "443,80", 0, "80,443", NULL },
	{ "443,80,8000-8100", 0, "80,443,8000-8100", NULL },
	{ " 443 , 80 ", 0, "80,443", NULL },
	{ "1-65535", 0, "1-65535", NULL },
	{ "80,81,82", 0, "80-82", NULL },
	{ "8000-8100,8050-8200,8201", 0, "8000-8201", NULL },
	{ "22,22", 0, "22", NULL },
	{ "65535", 0, "65535", NULL },
	{ "", -EINVAL, NULL, "empty port list" },
	{ "0", -EINVAL, NULL, "out of range" },
	{ "0-80", -EINVAL, NULL, "out of range" },
	{ "65536", -EINVAL, NULL, "out of range" },
	{ "80-70000", -EINVAL, NULL, "out of range" },
	{ "99999999999", -EINVAL, NULL, "out of range" },
	{ "8100-8000", -EINVAL, NULL, "reversed" },
	{ "http", -EINVAL, NULL, "not a port" },
	{ "80,,443", -EINVAL, NULL, "empty item" },
	{ ",80", -EINVAL, NULL, "empty item" },
	{ "80,", -EINVAL, NULL, "ends with a comma" },
	{ "-80", -EINVAL, NULL, "not a port" },
	{ "80-", -EINVAL, NULL, "not a port" },
	{ "80 443", -EINVAL, NULL, "not a port" },
	{ "1e3", -EINVAL, NULL, "not a port" },
	{ "+80", -EINVAL, NULL, "not a port" },
	{ "80;443", -EINVAL, NULL, "not a port" },
};

static const struct {
	const char *in;
	int err;
	uint64_t bytes;
	const char *msg;
} rates[] = {
	{ "50Mbps", 0, 6250000, NULL },
	{ "50mbps", 0, 6250000, NULL },
	{ "50MBPS", 0, 6250000, NULL },
	{ "1Gbps", 0, 125000000, NULL },
	{ "800kbit", 0, 100000, NULL },
	{ "100mbit", 0, 12500000, NULL },
	{ "10MB/s", 0, 10000000, NULL },
	{ "1MiB/s", 0, 1048576, NULL },
	{ "2000000", 0, 2000000, NULL },
	{ "8kbps", 0, 1000, NULL },
	{ "50 Mbps", 0, 6250000, NULL },
	{ "", -EINVAL, 0, "empty" },
	{ "0", -EINVAL, 0, "zero" },
	{ "0Mbps", -EINVAL, 0, "zero" },
	{ "-5Mbps", -EINVAL, 0, "negative" },
	{ "1.5Mbps", -EINVAL, 0, "whole numbers" },
	{ "50furlongs", -EINVAL, 0, "unknown unit" },
	{ "50Mb", -EINVAL, 0, "unknown unit" },
	{ "Mbps", -EINVAL, 0, "number" },
	{ "7kbps", -ERANGE, 0, "minimum" },
	{ "100bps", -ERANGE, 0, "minimum" },
	{ "99999999999999999999Mbps", -ERANGE, 0, "too large" },
	{ "9999999999Tbps", -ERANGE, 0, "too large" },
	{ "99999999999999999Gbps", -ERANGE, 0, "too large" },
};

static const struct {
	const char *in;
	int err;
	uint32_t major, minor;
} nodes[] = {
	{ "226:0", 0, 226, 0 },
	{ "226:128", 0, 226, 128 },
	{ "4095:1048575", 0, 4095, 1048575 },
	{ "0:1", -EINVAL, 0, 0 },
	{ "4096:0", -EINVAL, 0, 0 },
	{ "226:1048576", -EINVAL, 0, 0 },
	{ "226", -EINVAL, 0, 0 },
	{ "226:", -EINVAL, 0, 0 },
	{ ":0", -EINVAL, 0, 0 },
	{ "226:0x", -EINVAL, 0, 0 },
	{ "/dev/dri/card0", -EINVAL, 0, 0 },
	{ "", -EINVAL, 0, 0 },
};

static struct caps_ports ports_of(const char *s)
{
	struct caps_ports p;
	char err[256];

	if (caps_parse_ports(s, &p, err, sizeof(err)))
		memset(&p, 0, sizeof(p));
	return p;
}

/* Intersection and complement against the definitions, port by port. */
static void test_set_ops(void)
{
	static const char *lists[][2] = {
		{ "80,443,8000-8100", "443,8050-9000" },
		{ "1-65535", "22" },
		{ "1-100,200-300", "50-250" },
		{ "80", "443" },
		{ "1,3,5,7,9", "2-8" },
	};
	struct caps_port_range comp[CAPS_MAX_PORT_RANGES + 1];
	size_t bad_i = 0, bad_c = 0;

	for (size_t t = 0; t < sizeof(lists) / sizeof(lists[0]); t++) {
		struct caps_ports a = ports_of(lists[t][0]), b = ports_of(lists[t][1]), x;
		size_t nc;

		caps_ports_intersect(&a, &b, &x);
		nc = caps_ports_complement(&a, comp, CAPS_MAX_PORT_RANGES + 1);
		for (uint32_t port = 0; port <= 65535; port++) {
			bool in_comp = false;

			if (caps_ports_has(&x, (uint16_t)port) !=
			    (caps_ports_has(&a, (uint16_t)port) && caps_ports_has(&b, (uint16_t)port)))
				bad_i++;
			for (size_t i = 0; i < nc; i++)
				in_comp |= comp[i].lo <= port && port <= comp[i].hi;
			if (in_comp == caps_ports_has(&a, (uint16_t)port))
				bad_c++;
		}
	}
	ASSERT_EQ(bad_i, 0, "intersection: a port is in a ∩ b exactly when in both");
	ASSERT_EQ(bad_c, 0, "complement: every port 0..65535 is in the list or its complement, "
		  "never both");
}

static void test_merge(void)
{
	struct caps_limits pol = { 0 }, rt = { 0 }, out;
	char buf[256];

	pol.has_ports = true;
	pol.ports = ports_of("22,80,443");
	pol.rate_bytes = 12500000;
	rt.has_ports = true;
	rt.ports = ports_of("443,80,8080");
	rt.rate_bytes = 6250000;
	caps_limits_merge(&pol, &rt, &out);
	caps_ports_format(&out.ports, buf, sizeof(buf));
	ASSERT_STREQ(buf, "80,443", "merge: the two port limits intersect");
	ASSERT_EQ(out.rate_bytes, 6250000, "merge: the lower rate wins");
	rt.rate_bytes = 0;
	caps_limits_merge(&pol, &rt, &out);
	ASSERT_EQ(out.rate_bytes, 12500000, "merge: a rate on one side only is kept");
	rt.has_ports = false;
	caps_limits_merge(&pol, &rt, &out);
	caps_ports_format(&out.ports, buf, sizeof(buf));
	ASSERT_STREQ(buf, "22,80,443", "merge: ports on one side only are kept");
	pol.ports = ports_of("22");
	rt.has_ports = true;
	rt.ports = ports_of("443");
	caps_limits_merge(&pol, &rt, &out);
	ASSERT_TRUE(out.has_ports && out.ports.nr == 0,
		    "merge: disjoint lists leave a limit with no port (not no limit)");
	caps_ports_format(&out.ports, buf, sizeof(buf));
	ASSERT_STREQ(buf, "none", "an empty list prints as none");
	ASSERT_TRUE(caps_limits_empty(&(struct caps_limits){ 0 }) && !caps_limits_empty(&out),
		    "caps_limits_empty");

	memset(&pol, 0, sizeof(pol));
	memset(&rt, 0, sizeof(rt));
	caps_nodes_add(&pol, (struct caps_node){ 226, 0 });
	caps_nodes_add(&pol, (struct caps_node){ 226, 128 });
	caps_nodes_add(&rt, (struct caps_node){ 226, 128 });
	caps_limits_merge(&pol, &rt, &out);
	ASSERT_TRUE(out.has_nodes && out.nr_nodes == 1 && caps_nodes_has(&out, 226, 128) &&
		    !caps_nodes_has(&out, 226, 0), "merge: node lists intersect");
	ASSERT_EQ(caps_rate_min(0, 5), 5, "rate min: 0 is unlimited");
	caps_rate_format(6250000, buf, sizeof(buf));
	ASSERT_STREQ(buf, "50Mbit/s", "rate format");
}

/* A delegate takes its giver's limits for one capability only, and
 * merging them can only narrow what it has. */
static void test_part(void)
{
	struct caps_limits giver = { 0 }, own = { 0 }, part, out;
	char buf[256];

	giver.has_ports = true;
	giver.ports = ports_of("443,8000-8100");
	giver.rate_bytes = 2500000;
	caps_nodes_add(&giver, (struct caps_node){ 226, 0 });
	caps_limits_part(&giver, CAPS_PART_NETWORK, &part);
	ASSERT_TRUE(part.has_ports && part.rate_bytes == 2500000 && !part.has_nodes,
		    "part NETWORK: ports and rate, not the GPU nodes");
	caps_limits_part(&giver, CAPS_PART_GPU, &part);
	ASSERT_TRUE(!part.has_ports && !part.rate_bytes && part.has_nodes && part.nr_nodes == 1,
		    "part GPU: the nodes alone");
	caps_limits_part(&giver, CAPS_PART_NETWORK | CAPS_PART_GPU, &part);
	ASSERT_TRUE(caps_limits_equal(&part, &giver), "both parts: the whole limit");

	own.has_ports = true;
	own.ports = ports_of("22,443,8080");
	own.rate_bytes = 12500000;
	caps_limits_part(&giver, CAPS_PART_NETWORK, &part);
	caps_limits_merge(&own, &part, &out);
	caps_ports_format(&out.ports, buf, sizeof(buf));
	ASSERT_STREQ(buf, "443,8080", "own ∩ giver's ports");
	ASSERT_EQ(out.rate_bytes, 2500000, "the giver's lower rate wins");
	ASSERT_TRUE(!out.has_nodes, "no node limit taken with CAP_NETWORK");

	ASSERT_TRUE(caps_limits_equal(&out, &out), "equal: itself");
	part = out;
	part.ports.r[part.ports.nr] = (struct caps_port_range){ 9, 9 };	/* past nr: ignored */
	ASSERT_TRUE(caps_limits_equal(&out, &part), "equal: only the ranges in use count");
	part.rate_bytes++;
	ASSERT_TRUE(!caps_limits_equal(&out, &part), "equal: a rate differs");
	part = out;
	part.ports.nr--;
	ASSERT_TRUE(!caps_limits_equal(&out, &part), "equal: a port range differs");
	part = out;
	part.has_nodes = true;
	ASSERT_TRUE(!caps_limits_equal(&out, &part), "equal: an empty node limit is a limit");
}

/* Disk limits: ids of paths, sets, intersection, what reaches a disk. */
static void test_disks(void)
{
	struct caps_limits a = { 0 }, b = { 0 }, out;
	struct caps_disk_id x, y, z, back;
	char hex[33];
	int full = 0;

	caps_disk_id("/dev/vdb", &x);
	caps_disk_id("/dev/vdb", &back);
	caps_disk_id("/dev/vdc", &y);
	caps_disk_id("/var/lib/rayos/images/a.qcow2", &z);
	ASSERT_TRUE(!memcmp(&x, &back, sizeof(x)) && memcmp(&x, &y, sizeof(x)),
		    "disk id: the same path, the same id; another path, another");
	caps_disk_id_hex(&z, hex);
	ASSERT_TRUE(strlen(hex) == 32 && !caps_disk_id_parse(hex, &back) &&
		    !memcmp(&z, &back, sizeof(z)), "disk id: hex round trip");
	ASSERT_TRUE(caps_disk_id_parse("xyz", &back) == -EINVAL &&
		    caps_disk_id_parse("0123456789abcdef0123456789abcdeg", &back) == -EINVAL,
		    "disk id: short or non-hex text is refused");

	a.has_disks[CAPS_DISK_WRITE] = true;
	caps_disks_add(&a.disks[CAPS_DISK_WRITE], &x);
	caps_disks_add(&a.disks[CAPS_DISK_WRITE], &z);
	caps_disks_add(&a.disks[CAPS_DISK_WRITE], &x);
	ASSERT_EQ(a.disks[CAPS_DISK_WRITE].nr, 2, "disk set: a path added twice is there once");
	ASSERT_TRUE(caps_disk_allowed(&a, CAPS_DISK_WRITE, "/dev/vdb") &&
		    !caps_disk_allowed(&a, CAPS_DISK_WRITE, "/dev/vdc") &&
		    caps_disk_allowed(&a, CAPS_DISK_READ, "/dev/vdc"),
		    "allowed: listed for writing yes, unlisted no, reading not limited");
	b.has_disks[CAPS_DISK_WRITE] = true;
	caps_disks_add(&b.disks[CAPS_DISK_WRITE], &z);
	caps_disks_add(&b.disks[CAPS_DISK_WRITE], &y);
	caps_limits_merge(&a, &b, &out);
	ASSERT_TRUE(out.has_disks[CAPS_DISK_WRITE] && out.disks[CAPS_DISK_WRITE].nr == 1 &&
		    caps_disk_allowed(&out, CAPS_DISK_WRITE, "/var/lib/rayos/images/a.qcow2"),
		    "merge: the disk lists intersect");
	memset(&b, 0, sizeof(b));
	caps_limits_merge(&a, &b, &out);
	ASSERT_TRUE(caps_limits_equal(&out, &a), "merge: a list on one side only is kept");
	ASSERT_TRUE(!caps_limits_empty(&a) && !caps_limits_equal(&a, &b), "a disk list is a limit");
	caps_limits_part(&a, CAPS_PART_NETWORK | CAPS_PART_GPU, &out);
	ASSERT_TRUE(!out.has_disks[CAPS_DISK_WRITE], "part: NETWORK and GPU take no disk list");
	caps_limits_part(&a, CAPS_PART_DISK_WRITE, &out);
	ASSERT_TRUE(caps_limits_equal(&out, &a), "part DISK_WRITE: the write list");
	memset(&b, 0, sizeof(b));
	for (int i = 0; i < CAPS_MAX_DISKS + 1; i++) {
		char path[32];

		snprintf(path, sizeof(path), "/dev/d%d", i);
		caps_disk_id(path, &back);
		full = caps_disks_add(&b.disks[CAPS_DISK_READ], &back);
	}
	ASSERT_EQ(full, -E2BIG, "disk set: more than CAPS_MAX_DISKS disks is -E2BIG");
}

static void test_limits_bounds(void)
{
	struct caps_ports p = { 0 };
	struct caps_limits l = { 0 };
	int ret = 0;
	char list[512] = "", err[256];

	for (uint32_t i = 0; i < CAPS_MAX_LIST_RANGES + 1; i++) {
		char item[16];

		snprintf(item, sizeof(item), "%s%u", i ? "," : "", 100 + 2 * i);
		strcat(list, item);
	}
	ret = caps_parse_ports(list, &p, err, sizeof(err));
	ASSERT_TRUE(ret == -EINVAL && strstr(err, "separate port ranges"),
		    "33 separate ports: refused, naming the limit of 32");
	ret = 0;
	for (uint32_t i = 0; i < CAPS_MAX_NODES; i++)
		ret |= caps_nodes_add(&l, (struct caps_node){ 226, i });
	ASSERT_EQ(ret, 0, "16 nodes fit");
	ASSERT_EQ(caps_nodes_add(&l, (struct caps_node){ 226, 99 }), -E2BIG, "a 17th node: E2BIG");
	ASSERT_EQ(caps_nodes_add(&l, (struct caps_node){ 226, 3 }), 0, "a node already listed: ok");
	ASSERT_EQ(caps_ports_add(&p, 0, 1), -EINVAL, "caps_ports_add: port 0 refused");
	ASSERT_EQ(caps_ports_add(&p, 9, 8), -EINVAL, "caps_ports_add: reversed refused");
}

int main(void)
{
	char err[256], buf[512];
	int ret;

	for (size_t i = 0; i < sizeof(port_lists) / sizeof(port_lists[0]); i++) {
		struct caps_ports p;

		err[0] = buf[0] = '\0';
		memset(&p, 0, sizeof(p));
		ret = caps_parse_ports(port_lists[i].in, &p, err, sizeof(err));
		if (!ret)
			caps_ports_format(&p, buf, sizeof(buf));
		if (!tap_ok(ret == port_lists[i].err &&
			    (ret || !strcmp(buf, port_lists[i].canon)) &&
			    (!port_lists[i].msg || strstr(err, port_lists[i].msg)),
			    "ports \"%s\" -> %s", port_lists[i].in,
			    port_lists[i].err ? port_lists[i].msg : port_lists[i].canon))
			tap_diag("  got %d, \"%s\", \"%s\"", ret, buf, err);
	}
	for (size_t i = 0; i < sizeof(rates) / sizeof(rates[0]); i++) {
		uint64_t bytes = 0;

		err[0] = '\0';
		ret = caps_parse_rate(rates[i].in, &bytes, err, sizeof(err));
		if (!tap_ok(ret == rates[i].err && (ret || bytes == rates[i].bytes) &&
			    (!rates[i].msg || strstr(err, rates[i].msg)),
			    "rate \"%s\" -> %s", rates[i].in,
			    rates[i].err ? rates[i].msg : "ok"))
			tap_diag("  got %d, %llu B/s, \"%s\"", ret, (unsigned long long)bytes, err);
	}
	for (size_t i = 0; i < sizeof(nodes) / sizeof(nodes[0]); i++) {
		struct caps_node n = { 0 };

		err[0] = '\0';
		ret = caps_parse_node(nodes[i].in, &n, err, sizeof(err));
		if (!tap_ok(ret == nodes[i].err && (ret ? err[0] != '\0' : n.major == nodes[i].major &&
						    n.minor == nodes[i].minor),
			    "node \"%s\" -> %s", nodes[i].in, nodes[i].err ? "refused" : "ok"))
			tap_diag("  got %d, %u:%u, \"%s\"", ret, n.major, n.minor, err);
	}
	test_set_ops();
	test_merge();
	test_part();
	test_disks();
	test_limits_bounds();
	return tap_done();
}
