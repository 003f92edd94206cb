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

#include "agent/policy.h"
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
 * `cap grant|revoke VM CAP_X`: flips the VM's record (next open sees it)
 * and appends one JSON line to audit_path (NULL: no log) with fdatasync.
 * *caps_out gets the VM's new caps.  On error returns -errno and err says
 * why (unknown capability, VM without a record).
 */
int devices_cap_change(struct loader *ld, uint32_t vm_id, const char *cap_name, bool grant,
		       const char *audit_path, const char *who, uint64_t *caps_out,
		       char *err, size_t errlen);

#endif
