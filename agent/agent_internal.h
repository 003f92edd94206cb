/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* The agent's state, shared by daemon.c (the loop, policies, status) and
 * vms.c (VM registration, processes, cgroups, capability grants). */
#ifndef RAYOS_AGENT_INTERNAL_H
#define RAYOS_AGENT_INTERNAL_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "agent/agent.h"
#include "agent/caps/deleg.h"
#include "agent/audit/audit.h"
#include "agent/core/degraded.h"
#include "agent/core/evloop.h"
#include "agent/metrics/netstats.h"
#include "agent/quarantine.h"
#include "loader/loader.h"
#include "loader/probe.h"

struct control_server;
struct dhcp_server;
struct hostaddr;
struct http_server;
struct ifwatch;
struct policy_watch;
struct registry;
struct tpm;
struct vm_watch;

struct agent {
	const struct agent_opts *opts;
	struct evloop *loop;
	int epfd;		/* evloop_fd(loop), for the subsystems' sources */
	bool purge;
	struct loader *ld;
	struct control_server *ctl;
	struct ev_source sig, links, events;
	struct loader_events *ring;
	struct netstats ns;
	struct http_server *http;
	struct registry *reg;
	struct ifwatch *ifw;
	struct tpm *tpm;		/* NULL: measuring is off or unavailable */
	struct dhcp_server *dhcp;	/* NULL: the policy serves no bridge */
	struct hostaddr *hostaddr;	/* the host's addresses for the "host" rules */
	struct ev_source hostaddrs;
	char dhcp_error[256];
	struct vm_watch *watches;	/* QEMU processes of registered VMs */
	char tpm_error[256];
	struct policy_set *set;		/* the applied policy */
	char last_error[PATH_MAX + 512];	/* last rejected policy, "" if none */
	char apply_error[PATH_MAX + 512];	/* why the last apply changed nothing */
	uint64_t applied_version;
	uint64_t applied_at;		/* CLOCK_REALTIME seconds */
	double apply_ms;
	struct timespec started;
	char caps_kept[256];
	struct rayos_feature_state features[RAYOS_FEAT_MAX];
	int lock_fd;
	struct policy_watch *pw;	/* the policy directory, followed by path */
	bool dir_replaced;		/* the directory changed; not applied yet */
	struct ev_source health;	/* periodic checks of what inotify misses */
	struct degraded deg;		/* what status and /metrics report as degraded */
	struct quarantine quarantine;	/* VMs isolated for want of a policy */
	struct deleg_set deleg;		/* capability delegations (vmdeleg.c) */
	bool fine_stale;		/* links ended: limits taken through them to lift */
	struct audit_head audit_measured;	/* last audit head queued for the TPM */
	bool audit_measured_valid;
};

/* Parse, validate, compile and publish the policy directory; a failure
 * changes nothing and is remembered for `status`. */
int agent_apply_policy(struct agent *a, const char *why);
/* The same; allow_mass lets a publish remove more VMs than the share that
 * is otherwise held back (quarantine.h). */
int agent_apply_policy_ex(struct agent *a, const char *why, bool allow_mass);

/* quarantine.c: see quarantine.h. */
/* At start: the list from the state dir, reconciled with the maps. */
void quarantine_open(struct agent *a);
/* Before a publish of next: add the VMs that leave the set but still run as
 * quarantined ones.  -EBUSY (msg says why and what to do) when it would
 * remove too many VMs and allow_mass is false; next is then untouched. */
int quarantine_plan(struct agent *a, struct policy_set *next, bool allow_mass, char *msg,
		    size_t len);
/* After a publish: the list follows a->set (logs, saves, degraded state). */
void quarantine_after_publish(struct agent *a);
/* The VM stopped or was unregistered: forget its quarantine (the next
 * publish drops it).  False when it was not quarantined. */
bool quarantine_release(struct agent *a, uint32_t id);
/* Release quarantined VMs that no longer run; true when any was. */
bool quarantine_check(struct agent *a);
const struct quarantine_entry *quarantine_get(const struct agent *a, uint32_t id);
cJSON *quarantine_json(const struct agent *a);
void quarantine_prometheus(FILE *out, const struct agent *a);

/* vms.c: requests of the control socket about VMs. */
cJSON *vms_register(struct agent *a, const cJSON *req);
cJSON *vms_unregister(struct agent *a, const cJSON *req);
cJSON *vms_info(struct agent *a, const cJSON *req);
cJSON *vms_cap(struct agent *a, const cJSON *req, bool grant);
/* At start: watch the processes of VMs registered before a restart and
 * forget those that exited meanwhile. */
void vms_restore(struct agent *a);
/* After each publish: put back capabilities granted or revoked at run time. */
void vms_after_publish(struct agent *a);
void vms_close(struct agent *a);
/* Shared by vms.c and vmcaps.c. */
int req_vm_id(const cJSON *req, uint32_t *id);
int req_vm_id_at(const cJSON *req, const char *key, uint32_t *id);
/* The request's "cap": NULL with *bit set, or the error reply (unknown or
 * removed capability, naming it). */
cJSON *req_cap(const cJSON *req, int *bit);
struct policy_vm *policy_vm(struct agent *a, uint32_t id);
/* vm's disk images into the LSM's table, each in the mode its policy and
 * its CAP_DISK_* limits leave (a registered VM's, again after a change). */
int vms_set_images(struct agent *a, const struct policy_vm *vm);

struct vm_runtime;

/* vmcaps.c: temporary capabilities (cap grant-temp, cap list, expiry). */
cJSON *vmcaps_grant_temp(struct agent *a, const cJSON *req);
cJSON *vmcaps_list(struct agent *a, const cJSON *req);
/* Write the runtime grants, revokes and deadlines of vr into its record. */
int vmcaps_apply(struct agent *a, const struct vm_runtime *vr);
/* After a publish: the policy's temporary_capabilities, each applied once. */
void vmcaps_policy(struct agent *a);
/* Health tick: log, audit and clear grants whose deadline passed. */
void vmcaps_tidy(struct agent *a);
/* The request's "expires" or "until" as ns from now into *delta (left as
 * it is when neither is given): NULL, or the error reply. */
cJSON *req_expiry(const cJSON *req, uint64_t *delta);
/* A boot-clock deadline as the RFC 3339 UTC time it corresponds to now. */
void vmcaps_wall_of(uint64_t until_boot, char *buf, size_t len);

/* vmdeleg.c: delegation (cap delegate, undelegate, tree; policy entries). */
int vmdeleg_open(struct agent *a);	/* the state file, at start */
void vmdeleg_close(struct agent *a);
cJSON *vmdeleg_delegate(struct agent *a, const cJSON *req);
cJSON *vmdeleg_undelegate(struct agent *a, const cJSON *req);
cJSON *vmdeleg_tree(struct agent *a, const cJSON *req);
/* After a publish: the policy's entries, then every link into the kernel
 * (slots may have changed). */
void vmdeleg_policy(struct agent *a);
void vmdeleg_apply_all(struct agent *a);
/* Health tick: log, audit and remove links the kernel already ended. */
void vmdeleg_tidy(struct agent *a);
/* The capabilities vm holds now through a delegation link (only those
 * whose link has a deadline of its own when temporary). */
uint64_t vmdeleg_held(struct agent *a, uint32_t vm, bool temporary);
/* cap list: each capability vm holds only through a link now, appended to
 * arr as {"cap", "kind": "delegated", "from", "chain", "until"?, "left"?}
 * (until: the first deadline up the chain).  own: what it holds itself. */
void vmdeleg_list(struct agent *a, uint32_t vm, uint64_t own, cJSON *arr);
/* revoke-all took mask from vm: its links for those capabilities end (with
 * everything below them), logged and audited, kernel first.  Returns how
 * many links ended. */
size_t vmdeleg_revoked(struct agent *a, uint32_t vm, uint64_t mask);
/* Append one audit record j (taken over) to the state dir's log, synced:
 * 0, or -errno with why filled in. */
int audit_write(const struct agent *a, cJSON *j, char *why, size_t len);
/* "id" and "cap" of a capability request: NULL, or the error reply. */
cJSON *req_vm_cap(const cJSON *req, uint32_t *id, int *bit);
/* A change that failed after its audit record: audit the failure (f, taken
 * over, gets "of" and "error") and put the VM's runtime entry back (prev;
 * NULL: it had none). */
void vmcaps_undo(struct agent *a, cJSON *f, const char *of, const char *err,
		 const struct vm_runtime *prev, uint32_t id);

struct compiled_policy;
/* daemon.c: queue the TPM measurement of an applied policy version. */
void measure_policy(struct agent *a, const struct compiled_policy *cp, uint64_t version);

/* vmfine.c: fine-grained capability limits (cap fine-grain). */
cJSON *vmfine_request(struct agent *a, const cJSON *req);
/* Before each compile: every VM of set gets its policy's limits merged
 * with those `cap fine-grain` gave it, and, for each capability it takes
 * by delegation (a link, or one of set's "delegations"), those its givers
 * hold it under.  -ENOMEM: not to be published. */
int vmfine_overlay(const struct agent *a, struct policy_set *set);
/* A link about to be made: the delegate and the VMs below it whose limits
 * it narrows, compiled (an error here refuses the link, msg says why). */
struct fine_plan;
struct deleg_link;
int vmfine_plan_link(struct agent *a, const struct deleg_link *l, struct fine_plan **out,
		     char *msg, size_t len);
size_t vmfine_plan_size(const struct fine_plan *p);
/* Publish a plan's VMs (one switch; none: nothing to do), before the link
 * reaches the kernel. */
int vmfine_plan_publish(struct agent *a, struct fine_plan *p, const char *by, char *msg,
			size_t len);
void vmfine_plan_free(struct fine_plan *p);
/* Health tick, after links ended (a->fine_stale): lift the limits VMs took
 * through them. */
void vmfine_refresh(struct agent *a);
/* The VM's limits and the figures they make effective, for cap list and
 * vm info; NULL when it has none and the policy sets no rate. */
cJSON *vmfine_json(const struct agent *a, const struct policy_vm *vm);

/* vmrevoke.c: cap revoke-all (one switch for every selected VM). */
cJSON *vmrevoke_all(struct agent *a, const cJSON *req);
/* After a publish: keep a revoke-all a killed agent left in the switch. */
void vmrevoke_recover(struct agent *a);

#endif
