/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* The agent's state, shared by daemon.c (the loop, policies, status) and
 * vms.c (VM registration, processes, cgroups, capability grants). */
#ifndef RAYOS_AGENT_INTERNAL_H
#define RAYOS_AGENT_INTERNAL_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "agent/agent.h"
#include "agent/evloop.h"
#include "agent/netstats.h"
#include "loader/loader.h"

struct control_server;
struct dhcp_server;
struct hostaddr;
struct http_server;
struct ifwatch;
struct registry;
struct tpm;
struct vm_watch;

struct agent {
	const struct agent_opts *opts;
	int epfd;
	bool running, purge;
	struct loader *ld;
	struct control_server *ctl;
	struct ev_source sig, inotify, debounce, links, events;
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
	uint64_t applied_version;
	uint64_t applied_at;		/* CLOCK_REALTIME seconds */
	double apply_ms;
	struct timespec started;
	char caps_kept[256];
	struct rayos_feature_state features[RAYOS_FEAT_MAX];
	int lock_fd;
};

/* Parse, validate, compile and publish the policy directory; a failure
 * changes nothing and is remembered for `status`. */
int agent_apply_policy(struct agent *a, const char *why);

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

#endif
