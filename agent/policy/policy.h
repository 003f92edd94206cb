/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Policy front end: JSON files -> validated, flattened policy set -> compiled
 * map contents.  Pure logic: no bpf(), no privileged calls, so unit tests and
 * `rayos-agent policy check` drive it directly.
 */
#ifndef RAYOS_POLICY_H
#define RAYOS_POLICY_H

#include <limits.h>
#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "agent/policy/limits.h"
#include "bpf/abi/dev.h"
#include "bpf/abi/net.h"
#include "bpf/abi/policy.h"

#define POLICY_FORMAT_VERSION	1

/* Where a policy is wrong: file, JSON path (e.g. "vms[2].firewall.in.rules[0].ports[1]"),
 * line when known (syntax errors), and why. */
struct policy_error {
	char file[PATH_MAX];
	char path[256];
	int line;		/* 0 when unknown */
	char msg[256];
};

/* "file:line: path: msg" (parts that are empty are left out).  Returns 0, or
 * -ENOSPC when buf was too small (it then holds a NUL-terminated prefix). */
int policy_error_format(const struct policy_error *err, char *buf, size_t len);

enum fw_proto_kind {
	FW_PROTO_ANY = RAYOS_PROTO_ANY,
};

struct fw_port_range {
	uint16_t lo, hi;	/* inclusive; lo == hi for a single port */
};

struct fw_cidr {
	uint8_t family;		/* AF_INET or AF_INET6 */
	uint8_t prefixlen;
	uint8_t addr[16];	/* network order; IPv4 in the first 4 bytes, host bits zero */
};

/* One firewall rule after flattening. */
struct fw_rule {
	uint8_t action;		/* enum rayos_action */
	uint8_t proto;		/* IPPROTO_TCP/UDP/ICMP/ICMPV6/..., or RAYOS_PROTO_ANY */
	size_t nr_ports;	/* 0 = every port (or every ICMP type) */
	struct fw_port_range *ports;	/* ports, or ICMP types for icmp/icmpv6 */
	size_t nr_cidrs;	/* 0 = every address */
	struct fw_cidr *cidrs;
	char *comment;		/* optional, for logs and metrics */
};

struct fw_dir {
	uint8_t default_action;	/* enum rayos_action */
	size_t nr_rules;	/* <= RAYOS_MAX_RULES after flattening */
	struct fw_rule *rules;	/* in evaluation order: first match wins */
	uint64_t rate_bytes;	/* bytes/s, 0 = unlimited */
	uint64_t burst_bytes;
};

/* One "devices" entry: "c 10:200 rw", "b 8:* r". */
struct dev_rule {
	uint8_t type;		/* RAYOS_DEV_CHAR or RAYOS_DEV_BLOCK */
	uint8_t access;		/* RAYOS_DEV_ACC_* */
	uint32_t major;		/* 0..RAYOS_DEV_MAJOR_MAX */
	uint32_t minor;		/* 0..RAYOS_DEV_MINOR_MAX, or RAYOS_DEV_MINOR_ANY */
};

/* One "disks" entry.  A block device (path under /dev/) carries its device
 * number from the policy: compiling never looks at the host.  Any other path
 * is an image file, which only the LSM program can guard; the agent resolves
 * it to (device, inode) when the VM is registered. */
struct policy_disk {
	const char *path;	/* absolute; points into the parsed documents */
	bool is_block;
	uint32_t major, minor;	/* when is_block */
	uint8_t mode;		/* RAYOS_DEV_ACC_READ, | RAYOS_DEV_ACC_WRITE for "rw" */
};

/* A VM with its group's settings already applied (see policies/README.md). */
/* One "delegations" entry: to VM `to`, capability cap, for expires_ns
 * from when first applied or until until_wall_ns (CLOCK_REALTIME), or
 * without a deadline of its own (both 0). */
#define POLICY_MAX_DELEG	16
struct policy_deleg {
	uint32_t to;
	uint32_t cap;
	uint64_t expires_ns, until_wall_ns;
};

struct policy_vm {
	uint32_t id;
	char name[RAYOS_NAME_LEN];
	char group[RAYOS_NAME_LEN];	/* "" when none */
	char iface[IF_NAMESIZE];	/* tap; "" when not yet known */
	char bridge[IF_NAMESIZE];	/* "" when none */
	bool has_mac;
	uint8_t mac[6];
	bool has_ipv4;
	uint32_t ipv4_be;		/* static address from the policy */
	bool has_ipv6;
	uint8_t ipv6[16];
	size_t nr_ll6;			/* "ipv6_link_local": extra link-local sources */
	uint8_t ll6[RAYOS_LL6_MAX][16];
	uint64_t caps;			/* 1 << enum rayos_cap */
	/* firewall.in, firewall.out and host (RAYOS_FW_HOST) */
	struct fw_dir fw[RAYOS_FW_DIRS];
	/* "control_rates": packets per second by enum rayos_ctl_kind, 0 = unlimited */
	uint32_t ctl_rate[RAYOS_CTL_MAX];
	/* "devices" and "disks", each from the strongest level that sets it;
	 * the arrays point into the parsed documents. */
	size_t nr_dev_allow, nr_dev_deny;
	const struct dev_rule *dev_allow, *dev_deny;
	size_t nr_disks;
	const struct policy_disk *disks;
	/* "temporary_capabilities" (VM level only): per capability, how long
	 * from when the agent first applies the entry (ns), or until when
	 * (CLOCK_REALTIME ns); at most one of the two, both 0 = no entry.  The
	 * wiring turns an entry into a boot-clock deadline once, when it first
	 * sees it (agent/vmcaps.c): a reload does not restart the clock. */
	uint64_t temp_expires_ns[RAYOS_CAP_COUNT];
	uint64_t temp_until_wall_ns[RAYOS_CAP_COUNT];
	/* "delegations" (VM level): capabilities this VM gives to others,
	 * checked across the set when it is built (the target exists, this VM
	 * holds the capability and CAP_ADMIN, no cycle, depth at most
	 * RAYOS_CAP_MAX_DEPTH); the wiring turns each into a kernel link
	 * once (agent/vmdeleg.c). */
	size_t nr_deleg;
	struct policy_deleg deleg[POLICY_MAX_DELEG];
	/* "capability_limits" (VM level only): the policy's fine-grained
	 * limits.  limits is what is enforced: the policy's and those of
	 * `cap fine-grain` together (agent/vmfine.c merges them before each
	 * compile; the parser sets it to the policy's). */
	struct caps_limits policy_limits;
	struct caps_limits limits;
	char source[PATH_MAX];		/* file that defined the VM */
	/* Not from a file: the agent keeps a running VM that left the policy
	 * set under a deny-all record (policy_set_add_quarantined). */
	bool quarantined;
};

/* The byte rate (and burst) enforced in direction dir (RAYOS_DIR_IN/OUT):
 * the policy's "bandwidth" and the CAP_NETWORK limit's, the lower one; 0 =
 * unlimited.  The burst is the policy's when its rate wins, else 10 ms of
 * the limit's rate and at least 64 KiB, as a "bandwidth" without one. */
static inline uint64_t policy_vm_rate(const struct policy_vm *vm, int dir, uint64_t *burst)
{
	uint64_t pol = vm->fw[dir].rate_bytes, lim = vm->limits.rate_bytes;

	if (!lim || (pol && pol <= lim)) {
		*burst = vm->fw[dir].burst_bytes;
		return pol;
	}
	*burst = lim / 100 > 65536 ? lim / 100 : 65536;
	return lim;
}

/* Files larger than this are refused before parsing. */
#define POLICY_MAX_FILE_SIZE	(1U << 20)

struct policy_docs;

/* All policy files of a directory, merged, validated and flattened.  The
 * rules' ports, cidrs and comment point into docs: valid while the set lives. */
struct policy_set {
	size_t nr_vms;
	struct policy_vm *vms;		/* sorted by id */
	size_t nr_files;
	char **files;			/* the files it came from, sorted */
	struct policy_docs *docs;	/* private to policy.c: the parsed documents */
};

/* An empty set for policy_set_add_json(); NULL when out of memory. */
struct policy_set *policy_set_new(void);

/* One JSON document and the name errors should give it. */
struct policy_source {
	const char *file;
	const char *buf;
	size_t len;
};

/* Add several documents as one unit, as policy_load_dir() does: groups may be
 * referenced from any of them regardless of order.  On error set is unchanged
 * and err says why; returns -EINVAL, or -ENOMEM. */
int policy_set_add_sources(struct policy_set *set, const struct policy_source *src,
			   size_t nr, struct policy_error *err);

/* Parse one JSON document (buf of len bytes, named file for errors) into set.
 * Several documents may be added to one set; duplicate ids across them are
 * errors, and a group must be defined in this or an earlier document.  On
 * error set is unchanged and err says why; returns -EINVAL (or -ENOMEM). */
int policy_set_add_json(struct policy_set *set, const char *file,
			const char *buf, size_t len, struct policy_error *err);

/* Load every *.json in dir (sorted, dotfiles and editor temp files skipped).
 * On success *out is a new set; on error *out is NULL and err says why. */
int policy_load_dir(const char *dir, struct policy_set **out,
		    struct policy_error *err);

/* Load a single file (policy check). */
int policy_load_file(const char *file, struct policy_set **out,
		     struct policy_error *err);

/* Frees set itself too (it comes from policy_set_new or a load); NULL is fine. */
void policy_set_free(struct policy_set *set);

const struct policy_vm *policy_set_find(const struct policy_set *set, uint32_t id);

/* A VM to keep quarantined: name and iface are kept for status and for
 * attaching its tap (either may be NULL). */
struct policy_quarantined {
	uint32_t id;
	const char *name, *iface;
};

/* Add the nr VMs of q as quarantined: no rules, both directions deny, no
 * capabilities or devices.  One merge, whatever nr (a publish may
 * quarantine every VM of a host).  All or nothing: -EEXIST when set already
 * has one of them (or q names one twice), -ENOMEM. */
int policy_set_add_quarantined(struct policy_set *set, struct policy_quarantined *q,
			       size_t nr);
/* Take VM id out of set; false when it is not there. */
bool policy_set_remove(struct policy_set *set, uint32_t id);

/* The top-level "dhcp" object of the set (at most one file has one), or
 * NULL; its contents are checked by dhcp_config_parse() (agent/dhcp/dhcp.h). */
const cJSON *policy_set_dhcp(const struct policy_set *set);

/* Capability names <-> bits. */
/* enum rayos_cap; -EINVAL for an unknown name, -EOPNOTSUPP for CAP_AUDIT
 * (removed; its bit stays reserved). */
int policy_cap_from_name(const char *name);
/* Why name is refused, for the user: the removal or the known names. */
void policy_cap_error(const char *name, char *buf, size_t len);
const char *policy_cap_name(int cap);

/* ---- compiled form: exactly what goes into the maps, minus generation ---- */

struct compiled_port {
	struct rayos_fw_port_key key;	/* key.gen is filled by the publisher */
	struct rayos_fw_bits val;
};

struct compiled_range {
	struct rayos_fw_range_key key;
	struct rayos_fw_bits val;
};

struct compiled_cidr4 {
	struct rayos_fw_cidr4_key key;
	struct rayos_fw_bits val;
};

struct compiled_cidr6 {
	struct rayos_fw_cidr6_key key;
	struct rayos_fw_bits val;
};

/* One rayos_fw_tab entry: a direction's ranges and CIDRs as interval tables. */
struct compiled_tab {
	struct rayos_fw_tab_key key;	/* key.gen is filled by the publisher */
	struct rayos_fw_tab val;
};

/* One rayos_dev_rules entry: explicit rules and block disks merged per key. */
struct compiled_dev {
	struct rayos_dev_key key;	/* key.gen is filled by the publisher */
	struct rayos_dev_rule val;
};

struct compiled_vm {
	struct rayos_vm vm;		/* vm.gen, vm.slot, policy_version filled by the publisher */
	bool has_bind;
	struct rayos_ip_bind bind;	/* static address from the policy */
	size_t nr_ports, nr_ranges, nr_cidr4, nr_cidr6, nr_tabs;
	struct compiled_port *ports;
	struct compiled_range *ranges;	/* LPM entries of dimensions too big */
	struct compiled_cidr4 *cidr4;	/* for their interval table */
	struct compiled_cidr6 *cidr6;
	struct compiled_tab *tabs;	/* at most one per direction */
	size_t nr_dev;			/* rayos_dev_rules entries, sorted by key */
	struct compiled_dev *dev;
	uint8_t digest[32];		/* SHA-256 of this VM's canonical compiled form */
};

struct compiled_policy {
	size_t nr_vms;
	struct compiled_vm *vms;	/* same order as policy_set.vms */
	uint8_t digest[32];		/* SHA-256 over every VM's digest, in id order */
};

/* Compile a flattened set; deterministic (same set -> same bytes and digest). */
int policy_compile(const struct policy_set *set, struct compiled_policy **out,
		   struct policy_error *err);
void compiled_policy_free(struct compiled_policy *cp);

/*
 * Interval tables (agent/policy/policy_tab.c) for the port, range and CIDR entries
 * of direction dir among the given ones (the other direction's are
 * ignored).  Fills the dimensions that fit and returns their
 * RAYOS_DIRF_*_TAB bits: PORT_TAB when the whole port dimension fits (then
 * the ranges are in it), else RANGE_TAB when the ranges do.  A dimension
 * without entries, or with more intervals than its table holds, is left
 * out.  Searching a filled table (bpf/include/fwtab.bpf.h) gives
 * what the LPM lookup gives.
 */
unsigned int fw_tab_build(struct rayos_fw_tab *tab, int dir,
			  const struct compiled_port *ports, size_t nr_ports,
			  const struct compiled_range *ranges, size_t nr_ranges,
			  const struct compiled_cidr4 *cidr4, size_t nr_cidr4,
			  const struct compiled_cidr6 *cidr6, size_t nr_cidr6);

#endif /* RAYOS_POLICY_H */
