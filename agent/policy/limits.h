/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Fine-grained capabilities as pure logic: what a capability is limited to
 * (CAP_NETWORK: destination ports and a bandwidth; CAP_GPU: device nodes),
 * the parsers of the CLI's and the policy's spellings ("443,80,8000-8100",
 * "50Mbps", "226:0"), intersections (a limit from the policy and one from
 * `cap fine-grain` both apply) and printing.  No clocks, no files, no
 * privileged calls: tests/policy/test_limits.c drives it directly; the
 * policy compiler (agent/policy/policy_compile.c) turns a port list into
 * rules and the wiring (agent/vmfine.c) keeps run-time limits.
 */
#ifndef RAYOS_POLICY_LIMITS_H
#define RAYOS_POLICY_LIMITS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Ranges of one port list as given (after merging), and what a set holds:
 * the intersection of two lists of 32 has at most 63 pieces. */
#define CAPS_MAX_LIST_RANGES	32
#define CAPS_MAX_PORT_RANGES	64
#define CAPS_MAX_NODES		16
#define CAPS_MAX_DISKS		16
/* Rates: from 8 kbit/s (below it a shaper queues one frame for seconds)
 * to what the policy's "bandwidth" accepts (2^53 bytes/s). */
#define CAPS_RATE_MIN_BYTES	1000ULL
#define CAPS_RATE_MAX_BYTES	(1ULL << 53)

struct caps_port_range {
	uint16_t lo, hi;	/* inclusive, 1..65535 */
};

/* A set of destination ports: sorted, disjoint, not adjacent. */
struct caps_ports {
	uint32_t nr;
	struct caps_port_range r[CAPS_MAX_PORT_RANGES];
};

/* A character device node, as the device cgroup sees it. */
struct caps_node {
	uint32_t major, minor;
};

/* One of a VM's "disks", by the first 16 bytes of the SHA-256 of its path:
 * a limit names disks the policy lists, and a path may be 4 KiB long. */
struct caps_disk_id {
	uint8_t b[16];
};

/* A set of disks: sorted, unique. */
struct caps_disks {
	uint32_t nr;
	struct caps_disk_id id[CAPS_MAX_DISKS];
};

/* caps_limits.disks[]: which disk capability a list narrows. */
enum { CAPS_DISK_READ = 0, CAPS_DISK_WRITE = 1, CAPS_DISK_KINDS = 2 };

/*
 * The limits on one VM's capabilities.  Each part is either absent (no
 * limit) or a set the capability is narrowed to; an empty set is a limit
 * too (nothing left).  has_* say which parts are present.
 */
struct caps_limits {
	bool has_ports;			/* CAP_NETWORK: new flows only to these ports */
	struct caps_ports ports;
	uint64_t rate_bytes;		/* CAP_NETWORK: bytes/s each way, 0 = none */
	bool has_nodes;			/* CAP_GPU: only these nodes */
	uint32_t nr_nodes;
	struct caps_node nodes[CAPS_MAX_NODES];	/* sorted, unique */
	/* CAP_DISK_READ / CAP_DISK_WRITE: only these of the VM's disks */
	bool has_disks[CAPS_DISK_KINDS];
	struct caps_disks disks[CAPS_DISK_KINDS];
};

/* "443,80,8000-8100": ports 1..65535 and lo-hi ranges with lo <= hi,
 * separated by commas (spaces allowed around them).  Overlaps merge.  0,
 * >65535, reversed ranges, empty items, garbage and more than
 * CAPS_MAX_LIST_RANGES ranges after merging are -EINVAL with err naming
 * the item. */
int caps_parse_ports(const char *s, struct caps_ports *out, char *err, size_t errlen);
/* Add [lo, hi] to p (kept sorted and merged); -E2BIG when it would need
 * more ranges than p holds, -EINVAL for 0 or lo > hi. */
int caps_ports_add(struct caps_ports *p, uint32_t lo, uint32_t hi);
bool caps_ports_has(const struct caps_ports *p, uint16_t port);
/* out = a ∩ b (out may be a or b). */
void caps_ports_intersect(const struct caps_ports *a, const struct caps_ports *b,
			  struct caps_ports *out);
/* The ports of 0..65535 not in p, as at most nr + 1 ranges (port 0
 * included: no service listens there, and a packet naming it is outside
 * every list). */
size_t caps_ports_complement(const struct caps_ports *p, struct caps_port_range *out,
			     size_t max);
/* "80,443,8000-8100" ("none" for an empty list). */
void caps_ports_format(const struct caps_ports *p, char *buf, size_t len);

/* "50Mbps", "1Gbps", "800kbit", "10MB/s", "1000000" (bytes/s): an integer
 * and a unit: bps/Kbps/Mbps/Gbps/Tbps (case-insensitive, SI, bits), the
 * policy's bit/kbit/mbit/gbit/tbit, or B/s, kB/s, MB/s, GB/s, KiB/s, MiB/s,
 * GiB/s.  0, negative, fractions, unknown units, overflow, a rate below
 * CAPS_RATE_MIN_BYTES or above CAPS_RATE_MAX_BYTES: -EINVAL / -ERANGE with
 * err.  Bits round down to whole bytes. */
int caps_parse_rate(const char *s, uint64_t *bytes, char *err, size_t errlen);
/* "50Mbit/s (6250000 B/s)". */
void caps_rate_format(uint64_t bytes, char *buf, size_t len);
/* The lower of two rates where 0 means unlimited. */
uint64_t caps_rate_min(uint64_t a, uint64_t b);

/* "226:0,226:128": char device numbers (major 1..4095, minor 0..1048575),
 * sorted and unique; empty, garbage, out of range or more than
 * CAPS_MAX_NODES: -EINVAL with err.  Paths are resolved by the caller. */
int caps_parse_node(const char *s, struct caps_node *out, char *err, size_t errlen);
int caps_nodes_add(struct caps_limits *l, struct caps_node n);
bool caps_nodes_has(const struct caps_limits *l, uint32_t major, uint32_t minor);

/* The id of a disk path (as the policy's "disks" spell it). */
void caps_disk_id(const char *path, struct caps_disk_id *out);
/* Add a disk to d: 0, or -E2BIG beyond CAPS_MAX_DISKS. */
int caps_disks_add(struct caps_disks *d, const struct caps_disk_id *id);
bool caps_disks_has(const struct caps_disks *d, const struct caps_disk_id *id);
/* Whether kind (CAPS_DISK_READ/WRITE) reaches the disk at path under l: no
 * list for kind, or path is in it. */
bool caps_disk_allowed(const struct caps_limits *l, int kind, const char *path);
/* The disk id as 32 hex digits, and back (-EINVAL). */
void caps_disk_id_hex(const struct caps_disk_id *id, char hex[33]);
int caps_disk_id_parse(const char *hex, struct caps_disk_id *out);

/* out = the limits of a and b together: ports, nodes and disks intersect,
 * the lower rate wins; a part present in only one is taken from it. */
void caps_limits_merge(const struct caps_limits *a, const struct caps_limits *b,
		       struct caps_limits *out);
bool caps_limits_empty(const struct caps_limits *l);
bool caps_limits_equal(const struct caps_limits *a, const struct caps_limits *b);

/* The parts of a limit, by the capability they narrow. */
#define CAPS_PART_NETWORK	0x1u	/* ports and rate */
#define CAPS_PART_GPU		0x2u	/* nodes */
#define CAPS_PART_DISK_READ	0x4u	/* disks[CAPS_DISK_READ] */
#define CAPS_PART_DISK_WRITE	0x8u	/* disks[CAPS_DISK_WRITE] */
/* out = the parts of l named by parts (the others absent): what a
 * delegate takes with one capability from its giver's limits. */
void caps_limits_part(const struct caps_limits *l, unsigned int parts, struct caps_limits *out);

#endif
