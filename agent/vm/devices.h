/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Device enforcement as the agent shows it: the device classes and the
 * capability -> device table (`device handlers`), what runs and why not
 * (`device status`), each VM's cgroup, rules and counters (`device list`),
 * Prometheus text for /metrics, and capability grant/revoke with an audit
 * log line.  The table here mirrors bpf/include/devpolicy.bpf.h;
 * tests/dev/test_devpolicy.c checks that they agree.
 */
#ifndef RAYOS_DEVICES_H
#define RAYOS_DEVICES_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "agent/policy/policy.h"
#include "bpf/abi/dev.h"
#include "loader/loader.h"

/* "kvm", "tun", "vhost-net", "dri", "input", "uinput", "pty", "ptmx",
 * "disk", "basic", "other"; NULL for an unused number. */
const char *devices_class_name(unsigned int cls);

/* One row of the capability table: devices of a class and what grants them. */
struct devices_handler {
	unsigned int cls;	/* enum rayos_dev_class */
	char type;		/* 'c' or 'b' */
	uint32_t major_lo, major_hi;
	uint32_t minor;		/* or RAYOS_DEV_MINOR_ANY */
	int cap;		/* enum rayos_cap granting rw; -1: always allowed */
	const char *what;	/* e.g. "/dev/net/tun" */
};
extern const struct devices_handler devices_handlers[];
extern const size_t devices_nr_handlers;

/* {"decision_order": [...], "handlers": [...], "disks": "..."} */
cJSON *devices_handlers_json(void);

/* {"parts": {"cgroup_device": {"active": b, "detail": s}, "lsm": ..., ...}} */
cJSON *devices_status_json(const struct loader *ld);

/* {"vms": [{"id", "name", "caps": [...], "cgroup_id", "rules": [...],
 *  "classes": {"tun": {"checks", "denials", "opens", ...}, ...}, "kvm": {...}}]}
 * Only classes with a non-zero counter are listed.  only_id < 0: every VM. */
cJSON *devices_list_json(struct loader *ld, const struct policy_set *set, int64_t only_id);

/* Prometheus: rayos_device_{checks,denials,opens,open_eperm,ioctls}_total,
 * rayos_device_{open,ioctl}_seconds_total by vm and class,
 * rayos_kvm_{exits,mmio,pio}_total by vm, rayos_device_part_active by part. */
void devices_prometheus(FILE *out, struct loader *ld, const struct policy_set *set);

/*
 * `cap grant|revoke VM CAP_X`, write-ahead: devices_cap_prepare checks the
 * request, works out the new caps and appends the audit record with
 * fdatasync (audit_path NULL: no log); only then devices_cap_commit flips
 * the VM's record (the next open sees it).  A record that cannot be written
 * refuses the change (err says why and what to do) and changes nothing.  A
 * change that fails after its record (commit, or the caller's own step in
 * between) gets a "cap_change_failed" record: devices_cap_failed.
 */
struct devices_cap_change {
	uint32_t vm_id;
	const char *cap_name;
	bool grant;
	const char *audit_path;
	const char *who;		/* "by" in the record */
	int cap;			/* filled by prepare: enum rayos_cap */
	uint64_t caps_before, caps_after;
	bool audit_failed;		/* prepare: the record could not be written */
};

int devices_cap_prepare(struct loader *ld, struct devices_cap_change *ch, char *err,
			size_t errlen);
int devices_cap_commit(struct loader *ld, const struct devices_cap_change *ch, char *err,
		       size_t errlen);
void devices_cap_failed(const struct devices_cap_change *ch, const char *why);

/* prepare + commit; *caps_out gets the VM's new caps. */
int devices_cap_change(struct loader *ld, uint32_t vm_id, const char *cap_name, bool grant,
		       const char *audit_path, const char *who, uint64_t *caps_out,
		       char *err, size_t errlen);

#endif
