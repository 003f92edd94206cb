// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The agent process: takes the lock, loads and adopts the BPF objects,
 * applies the policy directory, drops capabilities, then runs one epoll loop
 * over signals, the policy directory (followed by path: policy_watch.h), the
 * control socket, and a periodic health check of what degrades quietly
 * (policy directory, audit log, TPM, quarantined VMs that stopped).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/agent_internal.h"
#include "agent/audit/audit.h"
#include "agent/audittrail.h"
#include "agent/control/control.h"
#include "agent/core/digest.h"
#include "agent/core/evloop.h"
#include "agent/core/log.h"
#include "agent/core/privs.h"
#include "agent/core/util.h"
#include "agent/dhcp/dhcp.h"
#include "agent/metrics/http.h"
#include "agent/metrics/netstats.h"
#include "agent/policy/policy.h"
#include "agent/policy/policy_watch.h"
#include "agent/tpm/tpm.h"
#include "agent/vm/cgroup.h"
#include "agent/vm/devices.h"
#include "agent/vm/hostaddr.h"
#include "agent/vm/ifwatch.h"
#include "agent/vm/registry.h"
#include "agent/vmconfine.h"
#include "loader/attach.h"
#include "loader/devices.h"
#include "loader/loader.h"
#include "loader/probe.h"
#include "loader/capswitch.h"
#include "loader/publish.h"
#include "loader/stats.h"

/* Period of the health check (degraded states, quarantined VMs that
 * stopped, a policy path switched where inotify cannot see it). */
#define HEALTH_PERIOD_S		1

void agent_opts_default(struct agent_opts *o)
{
	memset(o, 0, sizeof(*o));
	strcpy(o->policy_dir, RAYOS_POLICY_DIR_DEFAULT);
	strcpy(o->state_dir, RAYOS_STATE_DIR_DEFAULT);
	strcpy(o->run_dir, RAYOS_RUN_DIR_DEFAULT);
	strcpy(o->pin_root, RAYOS_PIN_ROOT_DEFAULT);
	o->metrics_port = RAYOS_METRICS_PORT_DEFAULT;
	o->mass_removal_pct = RAYOS_MASS_REMOVAL_PCT_DEFAULT;
}

static double elapsed_ms(const struct timespec *a)
{
	struct timespec b;

	clock_gettime(CLOCK_MONOTONIC, &b);
	return (b.tv_sec - a->tv_sec) * 1e3 + (b.tv_nsec - a->tv_nsec) / 1e6;
}

/* TPM event: the applied version and the digest of its compiled form. */
void measure_policy(struct agent *a, const struct compiled_policy *cp, uint64_t version)
{
	char digest[65];
	cJSON *c;

	if (!a->tpm)
		return;
	sha256_hex(cp->digest, digest);
	c = cJSON_CreateObject();
	cJSON_AddNumberToObject(c, "version", version);
	cJSON_AddStringToObject(c, "sha256", digest);
	cJSON_AddNumberToObject(c, "vms", cp->nr_vms);
	if (tpm_measure(a->tpm, TPM_EV_POLICY, c))
		log_warn("cannot queue the measurement of policy version %llu",
			 (unsigned long long)version);
	cJSON_Delete(c);
}

static int measure_object(void *ctx, const char *name, const void *elf, size_t len)
{
	struct agent *a = ctx;
	uint8_t d[32];
	char digest[65];
	cJSON *c;

	if (sha256(elf, len, d))
		return -ENOMEM;
	c = cJSON_CreateObject();
	sha256_hex(d, digest);
	cJSON_AddStringToObject(c, "name", name);
	cJSON_AddStringToObject(c, "sha256", digest);
	cJSON_AddNumberToObject(c, "size", len);
	tpm_measure(a->tpm, TPM_EV_BPF_OBJECT, c);
	cJSON_Delete(c);
	return 0;
}

/* Start measuring (after the signal mask is set: the worker inherits it).
 * A TPM that cannot be reached never stops enforcement. */
static void start_tpm(struct agent *a)
{
	struct tpm_opts to = {
		.state_dir = a->opts->state_dir,
		.run_dir = a->opts->run_dir,
		.tcti = a->opts->tcti[0] ? a->opts->tcti : NULL,
	};
	cJSON *extra;
	int err;

	if (a->opts->no_tpm) {
		snprintf(a->tpm_error, sizeof(a->tpm_error), "turned off (--no-tpm)");
		return;
	}
	err = tpm_open(&to, a->epfd, &a->tpm);
	if (err) {
		snprintf(a->tpm_error, sizeof(a->tpm_error), "%s", strerror(-err));
		log_warn("measured launch unavailable: %s; enforcement goes on", a->tpm_error);
		a->tpm = NULL;
		return;
	}
	extra = cJSON_CreateObject();
	cJSON_AddNumberToObject(extra, "pid", getpid());
	/* A log that starts late in a boot (the index was reset, or the agent
	 * started late) shows here: which boot, and how far into it. */
	{
		char boot_id[64] = "";
		FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");

		if (f && fgets(boot_id, sizeof(boot_id), f))
			boot_id[strcspn(boot_id, "\n")] = '\0';
		if (f)
			fclose(f);
		cJSON_AddStringToObject(extra, "boot_id", boot_id);
		cJSON_AddNumberToObject(extra, "boot_s",
					(double)(clock_ns(CLOCK_BOOTTIME) / 1000000000ull));
	}
	tpm_measure_file(a->tpm, TPM_EV_AGENT_START, "/proc/self/exe", extra);
	cJSON_Delete(extra);
	loader_for_each_object(a->ld, measure_object, a);
}

/* A lease granted, renewed, released or expired: the anti-spoof binding
 * follows at once, before the ACK leaves. */
static void on_lease(void *ctx, uint32_t vm_id, const uint8_t mac[6], uint32_t ip_be,
		     uint64_t expiry_boottime_ns, bool bound)
{
	struct agent *a = ctx;
	int err;

	(void)mac;
	if (!vm_id)
		return;		/* a client that is no VM */
	err = bound ? publish_lease(a->ld, vm_id, ip_be, expiry_boottime_ns)
		    : publish_lease_end(a->ld, vm_id, ip_be);
	if (err && err != -EEXIST)
		log_err("VM %u: cannot update its address binding: %s", vm_id, strerror(-err));
}

/* The DHCP server asks which VM sent a frame (by the slot its tap program
 * marked it with) and whether a VM still has an address bound. */
static uint32_t dhcp_vm_of_slot(void *ctx, uint32_t slot)
{
	return publish_vm_of_slot(((struct agent *)ctx)->ld, slot);
}

static bool dhcp_vm_holds(void *ctx, uint32_t vm_id, uint32_t ip_be)
{
	return publish_binds(((struct agent *)ctx)->ld, vm_id, ip_be);
}

/* Start, reconfigure or stop the DHCP server to match the policy. */
static void apply_dhcp(struct agent *a, const struct dhcp_config *cfg)
{
	struct dhcp_hooks hooks = { .ctx = a, .binding = on_lease,
				    .vm_of_slot = dhcp_vm_of_slot, .vm_holds = dhcp_vm_holds };
	int err;

	if (!cfg || !cfg->nr_bridges) {
		if (a->dhcp)
			log_info("the policy serves DHCP on no bridge: stopping the server");
		dhcp_server_close(a->dhcp);
		a->dhcp = NULL;
		return;
	}
	err = a->dhcp ? dhcp_server_reconfigure(a->dhcp, cfg)
		      : dhcp_server_open(cfg, a->opts->state_dir, a->epfd, &hooks, &a->dhcp);
	if (err) {
		snprintf(a->dhcp_error, sizeof(a->dhcp_error), "%s", strerror(-err));
		log_err("DHCP server: %s", a->dhcp_error);
	} else {
		a->dhcp_error[0] = '\0';
	}
}

int agent_apply_policy(struct agent *a, const char *why)
{
	return agent_apply_policy_ex(a, why, false);
}

/* The policy directory is gone: keep what is enforced and say so. */
static void policy_dir_missing(struct agent *a, const char *detail)
{
	degraded_set(&a->deg, DEG_POLICY_DIR_MISSING, "%s; still enforcing policy version "
		     "%llu; create the directory (or put the name back) to apply it", detail,
		     (unsigned long long)a->applied_version);
}

int agent_apply_policy_ex(struct agent *a, const char *why, bool allow_mass)
{
	struct compiled_policy *cp = NULL;
	struct dhcp_config *dcfg = NULL;
	struct policy_set *set = NULL;
	struct publish_stats st;
	struct policy_error perr;
	struct timespec t0;
	cJSON *arec = NULL;
	char msg[PATH_MAX + 512];
	struct stat sb;
	int err, rc;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	memset(&perr, 0, sizeof(perr));
	rc = stat(a->opts->policy_dir, &sb);
	if (rc || !S_ISDIR(sb.st_mode)) {
		/* Never an empty set: a missing directory keeps the last one. */
		snprintf(msg, sizeof(msg), "%s: %s", a->opts->policy_dir,
			 rc ? strerror(errno) : "not a directory");
		err = -ENOENT;
		policy_dir_missing(a, msg);
		snprintf(a->apply_error, sizeof(a->apply_error), "policy directory %s is missing "
			 "(since %llu): still enforcing version %llu", a->opts->policy_dir,
			 (unsigned long long)a->deg.s[DEG_POLICY_DIR_MISSING].since,
			 (unsigned long long)a->applied_version);
		policy_watch_check(a->pw);
		return err;
	}
	degraded_clear(&a->deg, DEG_POLICY_DIR_MISSING);
	err = policy_load_dir(a->opts->policy_dir, &set, &perr);
	if (err) {
		policy_error_format(&perr, msg, sizeof(msg));
		goto rejected;
	}
	/* VMs that leave the set while they run are quarantined, not
	 * dropped; too many leaving at once waits for consent. */
	err = quarantine_plan(a, set, allow_mass, msg, sizeof(msg));
	if (err == -EBUSY) {
		degraded_set(&a->deg, DEG_MASS_REMOVAL_HELD, "%s", msg);
		log_err("policy not applied (%s): %s; still enforcing version %llu", why, msg,
			(unsigned long long)a->applied_version);
		snprintf(a->apply_error, sizeof(a->apply_error), "%s", msg);
		goto out;
	}
	if (err)
		goto rejected;
	/* `cap fine-grain` limits join the policy's, and delegates take their
	 * givers' */
	err = vmfine_overlay(a, set);
	if (err) {
		snprintf(msg, sizeof(msg), "capability limits: %s", strerror(-err));
		goto rejected;
	}
	err = policy_compile(set, &cp, &perr);
	if (err) {
		policy_error_format(&perr, msg, sizeof(msg));
		goto rejected;
	}
	/* The DHCP settings are part of the policy: checked before anything
	 * is published, so a bad one changes nothing either. */
	if (policy_set_dhcp(set)) {
		err = dhcp_config_parse(policy_set_dhcp(set), set, &dcfg, msg, sizeof(msg));
		if (err)
			goto rejected;
	}
	arec = audittrail_publish_begin(a, cp);
	err = publish_policy(a->ld, cp, &st);
	if (err) {
		snprintf(a->last_error, sizeof(a->last_error),
			 "publishing to the maps failed: %s", strerror(-err));
		log_err("policy not applied (%s): %s; still enforcing version %llu",
			why, a->last_error, (unsigned long long)a->applied_version);
		goto out;
	}
	a->apply_ms = elapsed_ms(&t0);
	a->applied_version = st.version;
	a->applied_at = time(NULL);
	a->last_error[0] = '\0';
	a->apply_error[0] = '\0';
	a->dir_replaced = false;
	degraded_clear(&a->deg, DEG_POLICY_REJECTED);
	degraded_clear(&a->deg, DEG_POLICY_DIR_REPLACED);
	degraded_clear(&a->deg, DEG_MASS_REMOVAL_HELD);
	policy_set_free(a->set);
	a->set = set;
	set = NULL;
	vms_after_publish(a);
	registry_overlay(a->reg, a->set);
	ifwatch_reconcile(a->ifw, a->set);
	quarantine_after_publish(a);
	audittrail_publish_done(a, arec, (unsigned long long)st.version, why);
	arec = NULL;
	measure_policy(a, cp, st.version);
	apply_dhcp(a, dcfg);
	log_info("policy version %llu applied (%s) from %s: %zu VMs "
		 "(%u added, %u changed, %u unchanged, %u removed), %llu entries "
		 "written, %llu deleted, %.2f ms",
		 (unsigned long long)st.version, why, a->opts->policy_dir,
		 a->set->nr_vms, st.added, st.changed, st.unchanged, st.removed,
		 (unsigned long long)st.entries_written,
		 (unsigned long long)st.entries_deleted, a->apply_ms);
	if (st.slow_dirs)
		log_info("%u VM direction(s), the first of VM %u, have more ports or CIDRs than "
			 "an interval table holds (%d port, %d IPv4, %d IPv6 intervals): their "
			 "new connections take hash and LPM lookups", st.slow_dirs, st.slow_vm,
			 RAYOS_TAB_PORTS, RAYOS_TAB_CIDR4, RAYOS_TAB_CIDR6);
	goto out;
rejected:
	log_err("policy rejected (%s): %s; still enforcing version %llu",
		why, msg, (unsigned long long)a->applied_version);
	snprintf(a->last_error, sizeof(a->last_error), "%s", msg);
	snprintf(a->apply_error, sizeof(a->apply_error), "%s", msg);
	degraded_set(&a->deg, DEG_POLICY_REJECTED, "%s; still enforcing version %llu; fix "
		     "the file (rayos-agent policy check %s)", msg,
		     (unsigned long long)a->applied_version, a->opts->policy_dir);
	if (a->dir_replaced)
		degraded_set(&a->deg, DEG_POLICY_DIR_REPLACED, "%s was replaced by a directory "
			     "whose policy is rejected: still enforcing version %llu of the "
			     "previous one", a->opts->policy_dir,
			     (unsigned long long)a->applied_version);
out:
	cJSON_Delete(arec);
	dhcp_config_free(dcfg);
	compiled_policy_free(cp);
	policy_set_free(set);
	return err;
}

/* ---- event sources ---- */

static void on_signal(struct ev_source *src, uint32_t events)
{
	struct agent *a = (struct agent *)((char *)src - offsetof(struct agent, sig));
	struct signalfd_siginfo si;

	(void)events;
	while (read(src->fd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGHUP) {
			agent_apply_policy(a, "SIGHUP");
			continue;
		}
		log_info("signal %d: stopping (pins stay)", si.ssi_signo);
		evloop_stop(a->loop);
	}
}

/* policy_watch hooks: the directory changed, was replaced or came back... */
static void on_policy_dir(void *ctx, const char *why, bool replaced)
{
	struct agent *a = ctx;

	if (replaced) {
		a->dir_replaced = true;
		log_info("%s: %s; applying it", a->opts->policy_dir, why);
	}
	agent_apply_policy(a, why);
}

/* ... or went away. */
static void on_policy_dir_missing(void *ctx, const char *detail)
{
	struct agent *a = ctx;

	log_err("policy directory %s is gone (%s): keeping policy version %llu until a "
		"directory appears under that name", a->opts->policy_dir, detail,
		(unsigned long long)a->applied_version);
	policy_dir_missing(a, detail);
}

/* What degrades without an event: the audit log's file system filling up
 * or turning read-only, the TPM going away, a quarantined VM's tap gone
 * while no QEMU was registered, a symlink higher up the policy path. */
static void health_check(struct agent *a)
{
	char audit[PATH_MAX], why[PATH_MAX + 512];

	policy_watch_check(a->pw);
	control_server_tick(a->ctl);
	audittrail_path(a, audit, sizeof(audit));
	if (audit_probe(audit, why, sizeof(why)))
		degraded_set(&a->deg, DEG_AUDIT_UNWRITABLE, "audit records cannot be written "
			     "(%s): capability changes are refused until they can", why);
	else
		degraded_clear(&a->deg, DEG_AUDIT_UNWRITABLE);
	audittrail_measure(a);	/* the records of the last tick, as one batch */
	if (a->tpm) {
		cJSON *t = tpm_status_json(a->tpm);
		const cJSON *st = cJSON_GetObjectItemCaseSensitive(t, "state");
		const cJSON *le = cJSON_GetObjectItemCaseSensitive(t, "last_error");

		if (cJSON_IsString(st) && (!strcmp(st->valuestring, "unavailable") ||
					   !strcmp(st->valuestring, "diverged")))
			degraded_set(&a->deg, DEG_TPM_UNREACHABLE, "TPM %s: %s; measurements "
				     "queue, enforcement goes on", st->valuestring,
				     cJSON_IsString(le) ? le->valuestring : "");
		else
			degraded_clear(&a->deg, DEG_TPM_UNREACHABLE);
		cJSON_Delete(t);
	}
	quarantine_check(a);
	vmcaps_tidy(a);
	vmdeleg_tidy(a);
	vmfine_refresh(a);	/* after links ended: lift what came through them */
}

static void on_health(struct ev_source *src, uint32_t events)
{
	struct agent *a = (struct agent *)((char *)src - offsetof(struct agent, health));
	(void)events;
	if (ev_timer_ack(src))
		health_check(a);
}

static void on_links(struct ev_source *src, uint32_t events)
{
	struct agent *a = (struct agent *)((char *)src - offsetof(struct agent, links));

	(void)events;
	ifwatch_event(a->ifw, a->set);
	quarantine_check(a);	/* a quarantined VM's tap went: it stopped */
}

static void on_hostaddrs(struct ev_source *src, uint32_t events)
{
	struct agent *a = (struct agent *)((char *)src - offsetof(struct agent, hostaddrs));

	(void)events;
	hostaddr_event(a->hostaddr);
}

static void on_drop_event(void *ctx, const struct rayos_event *ev)
{
	struct agent *a = ctx;

	netstats_record(&a->ns, ev);
	log_debug("drop: VM %u %s %s rule %d proto %u port %u", ev->vm_id,
		  netstats_dir_name(ev->dir), netstats_reason_name(ev->reason) ?: "?",
		  ev->rule == RAYOS_EV_RULE_NONE ? -1 : ev->rule, ev->proto, ev->dport);
}

static void on_events(struct ev_source *src, uint32_t events)
{
	struct agent *a = (struct agent *)((char *)src - offsetof(struct agent, events));

	(void)events;
	loader_events_consume(a->ring);
}

static void render_metrics(void *ctx, FILE *out)
{
	struct agent *a = ctx;
	struct rayos_policy_info info = {};

	publish_read_info(a->ld, &info);
	fprintf(out, "# HELP rayos_policy_version Version of the applied policy.\n"
		"# TYPE rayos_policy_version gauge\nrayos_policy_version %llu\n"
		"# HELP rayos_policy_apply_seconds Time the last apply took.\n"
		"# TYPE rayos_policy_apply_seconds gauge\nrayos_policy_apply_seconds %.6f\n"
		"# HELP rayos_policy_rejected Whether the last policy edit was rejected.\n"
		"# TYPE rayos_policy_rejected gauge\nrayos_policy_rejected %d\n"
		"# HELP rayos_vms Number of VMs in the maps.\n"
		"# TYPE rayos_vms gauge\nrayos_vms %zu\n"
		"# HELP rayos_agent_uptime_seconds Seconds since the agent started.\n"
		"# TYPE rayos_agent_uptime_seconds gauge\nrayos_agent_uptime_seconds %.0f\n",
		(unsigned long long)info.version, a->apply_ms / 1000, a->last_error[0] != 0,
		publish_nr_vms(a->ld), elapsed_ms(&a->started) / 1000);
	netstats_prometheus(out, a->ld, a->set, &a->ns);
	devices_prometheus(out, a->ld, a->set);
	degraded_prometheus(out, &a->deg);
	quarantine_prometheus(out, a);
	{
		struct control_stats cs;

		control_server_stats(a->ctl, &cs);
		fprintf(out, "# HELP rayos_control_connections Open control socket connections.\n"
			"# TYPE rayos_control_connections gauge\nrayos_control_connections %u\n"
			"# HELP rayos_control_closed_total Control connections the agent closed "
			"or refused, by why.\n# TYPE rayos_control_closed_total counter\n"
			"rayos_control_closed_total{reason=\"quiet_evicted\"} %llu\n"
			"rayos_control_closed_total{reason=\"timed_out\"} %llu\n"
			"rayos_control_closed_total{reason=\"not_root\"} %llu\n", cs.connections,
			(unsigned long long)cs.evicted, (unsigned long long)cs.timed_out,
			(unsigned long long)cs.refused);
	}
}

/* ---- control requests ---- */

static const struct {
	const char *name;
	enum rayos_feature feat;
	const char *what;
} enforcement_points[] = {
	{ "net.tc_from_vm", RAYOS_FEAT_TCX, "firewall, anti-spoofing and rate "
						 "limit on guest->host traffic" },
	{ "net.tc_to_vm", RAYOS_FEAT_TCX, "firewall and rate limit on host->guest "
					       "traffic" },
};

static const char *const dev_point_names[RAYOS_DEVP_MAX] = {
	[RAYOS_DEVP_CGROUP]	= "device.cgroup",
	[RAYOS_DEVP_LSM]	= "device.lsm",
	[RAYOS_DEVP_SYSCALLS]	= "device.syscall_stats",
	[RAYOS_DEVP_KVM]	= "device.kvm_stats",
};

static cJSON *status_reply(struct agent *a)
{
	cJSON *r = cJSON_CreateObject(), *pol, *arr, *o;
	struct rayos_policy_info info = {};
	char hex[65];

	cJSON_AddBoolToObject(r, "ok", 1);
	cJSON_AddNumberToObject(r, "pid", getpid());
	cJSON_AddNumberToObject(r, "uptime_s", (int)(elapsed_ms(&a->started) / 1000));
	cJSON_AddStringToObject(r, "pin_root", a->opts->pin_root);
	cJSON_AddStringToObject(r, "capabilities", a->caps_kept);

	pol = cJSON_AddObjectToObject(r, "policy");
	publish_read_info(a->ld, &info);
	cJSON_AddNumberToObject(pol, "version", info.version);
	cJSON_AddStringToObject(pol, "source", a->opts->policy_dir);
	for (int i = 0; i < 32; i++)
		sprintf(hex + 2 * i, "%02x", info.digest[i]);
	cJSON_AddStringToObject(pol, "digest", hex);
	cJSON_AddNumberToObject(pol, "applied_at", a->applied_at);
	cJSON_AddNumberToObject(pol, "apply_ms", a->apply_ms);
	if (a->last_error[0])
		cJSON_AddStringToObject(pol, "last_error", a->last_error);
	if (a->apply_error[0])
		cJSON_AddStringToObject(pol, "pending", a->apply_error);
	{
		uint64_t dev, ino;

		/* The directory followed: its identity changes when the name is
		 * given to another one (replaced, symlink switched). */
		o = cJSON_AddObjectToObject(pol, "directory");
		policy_watch_ident(a->pw, &dev, &ino);
		cJSON_AddBoolToObject(o, "present", policy_watch_present(a->pw));
		cJSON_AddNumberToObject(o, "since", (double)policy_watch_since(a->pw));
		cJSON_AddNumberToObject(o, "device", (double)dev);
		cJSON_AddNumberToObject(o, "inode", (double)ino);
	}
	arr = cJSON_AddArrayToObject(pol, "files");
	for (size_t i = 0; a->set && i < a->set->nr_files; i++)
		cJSON_AddItemToArray(arr, cJSON_CreateString(a->set->files[i]));

	/* What the maps hold, which after a restart with a rejected policy is
	 * what the previous agent published; names come from the policy. */
	arr = cJSON_AddArrayToObject(r, "vms");
	for (size_t i = 0; i < publish_nr_vms(a->ld); i++) {
		const struct compiled_vm *cv = publish_vm_at(a->ld, i);
		const struct policy_vm *vm = a->set ? policy_set_find(a->set, cv->vm.vm_id) : NULL;

		o = cJSON_CreateObject();
		cJSON_AddNumberToObject(o, "id", cv->vm.vm_id);
		cJSON_AddStringToObject(o, "name", vm ? vm->name : "");
		cJSON_AddStringToObject(o, "group", vm ? vm->group : "");
		cJSON_AddStringToObject(o, "interface", vm ? vm->iface : "");
		cJSON_AddNumberToObject(o, "ifindex", loader_vm_ifindex(a->ld, cv->vm.vm_id));
		cJSON_AddNumberToObject(o, "slot", cv->vm.slot);
		cJSON_AddNumberToObject(o, "generation", cv->vm.gen);
		cJSON_AddNumberToObject(o, "policy_version", cv->vm.policy_version);
		cJSON_AddBoolToObject(o, "quarantined", !!(cv->vm.flags & RAYOS_VMF_QUARANTINE));
		cJSON_AddItemToObject(o, "confinement", vmconfine_json(a, cv->vm.vm_id));
		cJSON_AddItemToArray(arr, o);
	}
	cJSON_AddItemToObject(r, "quarantined", quarantine_json(a));
	cJSON_AddItemToObject(r, "degraded", degraded_json(&a->deg));
	{
		uint64_t epoch = 0;
		bool armed = loader_caps_armed(a->ld, &epoch);

		/* revoke-all: the last epoch; armed = entries not yet folded
		 * into the records (only between a switch and its settle). */
		o = cJSON_AddObjectToObject(r, "cap_switch");
		cJSON_AddNumberToObject(o, "epoch", (double)epoch);
		cJSON_AddBoolToObject(o, "armed", armed);
	}
	{
		struct control_stats cs;

		control_server_stats(a->ctl, &cs);
		o = cJSON_AddObjectToObject(r, "control");
		cJSON_AddNumberToObject(o, "connections", cs.connections);
		cJSON_AddNumberToObject(o, "max_connections", cs.max_connections);
		cJSON_AddNumberToObject(o, "max_per_client", cs.max_per_peer);
		cJSON_AddNumberToObject(o, "accepted", (double)cs.accepted);
		cJSON_AddNumberToObject(o, "evicted_idle", (double)cs.evicted);
		cJSON_AddNumberToObject(o, "refused_not_root", (double)cs.refused);
		cJSON_AddNumberToObject(o, "timed_out", (double)cs.timed_out);
	}

	arr = cJSON_AddArrayToObject(r, "enforcement");
	for (size_t i = 0; i < sizeof(enforcement_points) / sizeof(enforcement_points[0]); i++) {
		const struct rayos_feature_state *f = &a->features[enforcement_points[i].feat];

		o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "point", enforcement_points[i].name);
		cJSON_AddStringToObject(o, "state", f->available ? "active" : "unavailable");
		cJSON_AddStringToObject(o, "what", enforcement_points[i].what);
		cJSON_AddStringToObject(o, "detail", f->detail);
		cJSON_AddItemToArray(arr, o);
	}
	{
		struct loader_dev_part parts[RAYOS_DEVP_MAX];

		loader_dev_status(a->ld, parts);
		for (int i = 0; i < RAYOS_DEVP_MAX; i++) {
			o = cJSON_CreateObject();
			cJSON_AddStringToObject(o, "point", dev_point_names[i]);
			cJSON_AddStringToObject(o, "state", parts[i].active ? "active"
									    : "unavailable");
			cJSON_AddStringToObject(o, "detail", parts[i].detail);
			cJSON_AddItemToArray(arr, o);
		}
	}
	cJSON_AddNumberToObject(r, "host_addresses", (double)hostaddr_count(a->hostaddr));
	if (a->dhcp) {
		cJSON_AddItemToObject(r, "dhcp", dhcp_server_status_json(a->dhcp));
	} else {
		o = cJSON_AddObjectToObject(r, "dhcp");
		cJSON_AddStringToObject(o, "state", a->dhcp_error[0] ? "failed" : "off");
		if (a->dhcp_error[0])
			cJSON_AddStringToObject(o, "error", a->dhcp_error);
	}
	if (a->tpm) {
		cJSON_AddItemToObject(r, "tpm", tpm_status_json(a->tpm));
	} else {
		o = cJSON_AddObjectToObject(r, "tpm");
		cJSON_AddStringToObject(o, "state", "off");
		cJSON_AddStringToObject(o, "error", a->tpm_error);
	}
	cJSON_AddItemToObject(r, "audit", audittrail_status_json(a));
	o = cJSON_AddObjectToObject(r, "features");
	for (int i = 0; i < RAYOS_FEAT_MAX; i++) {
		cJSON *f = cJSON_CreateObject();

		cJSON_AddBoolToObject(f, "available", a->features[i].available);
		cJSON_AddStringToObject(f, "detail", a->features[i].detail);
		cJSON_AddItemToObject(o, loader_feature_name(i), f);
	}
	return r;
}

/* A reply object with "ok" and item under key (item may be NULL: error). */
static cJSON *wrap(const char *key, cJSON *item)
{
	cJSON *r;

	if (!item)
		return control_error("out of memory");
	r = cJSON_CreateObject();
	cJSON_AddBoolToObject(r, "ok", 1);
	cJSON_AddItemToObject(r, key, item);
	return r;
}

static cJSON *device_request(struct agent *a, const char *cmd, const cJSON *req)
{
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(req, "id");

	if (!strcmp(cmd, "device.status"))
		return wrap("devices", devices_status_json(a->ld));
	if (!strcmp(cmd, "device.handlers"))
		return wrap("handlers", devices_handlers_json());
	if (id && (!cJSON_IsNumber(id) || id->valuedouble < 1 || id->valuedouble > UINT32_MAX))
		return control_error("\"id\" must be a VM id (1..4294967295)");
	if (id && !(a->set && policy_set_find(a->set, (uint32_t)id->valuedouble)))
		return control_error("unknown VM %.0f: it is not in the applied policy",
				     id->valuedouble);
	{
		cJSON *vms = devices_list_json(a->ld, a->set, id ? (int64_t)id->valuedouble : -1);
		cJSON *vm, *vid;

		/* Which of the VM's enforcement points hold, next to its counters. */
		cJSON_ArrayForEach(vm, cJSON_GetObjectItemCaseSensitive(vms, "vms"))
			if ((vid = cJSON_GetObjectItemCaseSensitive(vm, "id")) && cJSON_IsNumber(vid))
				cJSON_AddItemToObject(vm, "confinement",
						      vmconfine_json(a, (uint32_t)vid->valuedouble));
		return wrap("vms", vms);
	}
}

static cJSON *dhcp_request(struct agent *a, const char *sub, const cJSON *req)
{
	const cJSON *ip = cJSON_GetObjectItemCaseSensitive(req, "ip");
	struct in_addr addr;
	int err;

	if (!a->dhcp)
		return control_error("no DHCP server runs: the policy has no \"dhcp\" bridges%s%s",
				     a->dhcp_error[0] ? "; last error: " : "", a->dhcp_error);
	if (!strcmp(sub, "status"))
		return wrap("dhcp", dhcp_server_status_json(a->dhcp));
	if (!strcmp(sub, "leases"))
		return wrap("leases", dhcp_server_leases_json(a->dhcp));
	if (!strcmp(sub, "release")) {
		if (!cJSON_IsString(ip) || inet_pton(AF_INET, ip->valuestring, &addr) != 1)
			return control_error("\"ip\" must be an IPv4 address");
		err = dhcp_server_release(a->dhcp, addr.s_addr, NULL);
		if (err)
			return control_error("%s: %s", ip->valuestring,
					     err == -ENOENT ? "no lease holds this address"
							    : strerror(-err));
		return wrap("released", cJSON_CreateString(ip->valuestring));
	}
	return control_error("unknown command \"dhcp.%s\" (known: dhcp.status, dhcp.leases, "
			     "dhcp.release)", sub);
}

static cJSON *handle_request(void *ctx, const cJSON *req)
{
	struct agent *a = ctx;
	const char *cmd = cJSON_GetObjectItemCaseSensitive(req, "cmd")->valuestring;
	cJSON *r;

	if (!strcmp(cmd, "status"))
		return status_reply(a);
	if (!strcmp(cmd, "stop")) {
		evloop_stop(a->loop);
		a->purge = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(req, "purge"));
		log_info("stop requested over the control socket%s",
			 a->purge ? " (purging pins)" : " (pins stay)");
		r = cJSON_CreateObject();
		cJSON_AddBoolToObject(r, "ok", 1);
		return r;
	}
	if (!strcmp(cmd, "vm.list") || !strcmp(cmd, "vm.stats")) {
		const cJSON *id = cJSON_GetObjectItemCaseSensitive(req, "id");
		char err[256];

		if (id && (!cJSON_IsNumber(id) || id->valuedouble < 1 ||
			   id->valuedouble > UINT32_MAX || id->valuedouble != (double)(int64_t)id->valuedouble))
			return control_error("\"id\" must be a VM id (1..4294967295)");
		r = netstats_vms_json(a->ld, a->set, id ? (int64_t)id->valuedouble : -1,
				      !strcmp(cmd, "vm.stats"), err, sizeof(err));
		if (!r)
			return control_error("%s", err);
		cJSON_AddBoolToObject(r, "ok", 1);
		return r;
	}
	if (!strcmp(cmd, "vm.register"))
		return vms_register(a, req);
	if (!strcmp(cmd, "vm.unregister"))
		return vms_unregister(a, req);
	if (!strcmp(cmd, "vm.info"))
		return vms_info(a, req);
	if (!strcmp(cmd, "cap.grant") || !strcmp(cmd, "cap.revoke"))
		return vms_cap(a, req, !strcmp(cmd, "cap.grant"));
	if (!strcmp(cmd, "cap.grant_temp"))
		return vmcaps_grant_temp(a, req);
	if (!strcmp(cmd, "cap.list"))
		return vmcaps_list(a, req);
	if (!strcmp(cmd, "cap.delegate"))
		return vmdeleg_delegate(a, req);
	if (!strcmp(cmd, "cap.undelegate"))
		return vmdeleg_undelegate(a, req);
	if (!strcmp(cmd, "cap.tree"))
		return vmdeleg_tree(a, req);
	if (!strcmp(cmd, "cap.fine_grain"))
		return vmfine_request(a, req);
	if (!strcmp(cmd, "cap.revoke_all"))
		return vmrevoke_all(a, req);
	if (!strcmp(cmd, "device.status") || !strcmp(cmd, "device.handlers") ||
	    !strcmp(cmd, "device.list"))
		return device_request(a, cmd, req);
	if (!strncmp(cmd, "dhcp.", 5))
		return dhcp_request(a, cmd + 5, req);
	if (!strcmp(cmd, "perf")) {
		r = netstats_perf_json(a->ld, &a->ns);
		cJSON_AddBoolToObject(r, "ok", 1);
		cJSON_AddNumberToObject(r, "policy_apply_ms", a->apply_ms);
		return r;
	}
	if (!strcmp(cmd, "policy.reload")) {
		const cJSON *mass = cJSON_GetObjectItemCaseSensitive(req, "allow_mass_removal");
		int err;

		if (mass && !cJSON_IsBool(mass))
			return control_error("\"allow_mass_removal\" must be true or false");
		err = agent_apply_policy_ex(a, cJSON_IsTrue(mass) ? "reload requested, mass "
					    "removal allowed" : "reload requested",
					    cJSON_IsTrue(mass));
		if (err)
			return control_error("%s", a->apply_error);
		r = cJSON_CreateObject();
		cJSON_AddBoolToObject(r, "ok", 1);
		cJSON_AddNumberToObject(r, "version", a->applied_version);
		return r;
	}
	return control_error("unknown command \"%s\" (known: status, stop, policy.reload, "
			     "vm.list, vm.stats, vm.info, vm.register, vm.unregister, cap.grant, "
			     "cap.revoke, cap.grant_temp, cap.list, cap.fine_grain, cap.revoke_all, "
			     "cap.delegate, cap.undelegate, cap.tree, device.status, device.handlers, "
			     "device.list, "
			     "dhcp.status, dhcp.leases, dhcp.release, perf)", cmd);
}

/* ---- set-up ---- */

static int take_lock(struct agent *a)
{
	char path[PATH_MAX], pid[32];
	int fd, n;

	snprintf(path, sizeof(path), "%s/agent.lock", a->opts->run_dir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		log_err("cannot open lock %s: %s", path, strerror(errno));
		return -errno;
	}
	if (flock(fd, LOCK_EX | LOCK_NB)) {
		n = read(fd, pid, sizeof(pid) - 1);
		pid[n > 0 ? n : 0] = '\0';
		pid[strcspn(pid, "\n")] = '\0';
		log_err("another rayos-agent (pid %s) holds %s: stop it first "
			"(rayos-agent stop)", pid[0] ? pid : "?", path);
		close(fd);
		return -EBUSY;
	}
	if (ftruncate(fd, 0) == 0) {
		n = snprintf(pid, sizeof(pid), "%d\n", getpid());
		if (pwrite(fd, pid, n, 0) != n)
			log_warn("cannot write pid to %s", path);
	}
	a->lock_fd = fd;
	return 0;
}

static int setup_events(struct agent *a)
{
	static const int signals[] = { SIGINT, SIGTERM, SIGHUP };
	struct policy_watch_hooks hooks = {
		.ctx = a, .apply = on_policy_dir, .missing = on_policy_dir_missing,
	};
	char sock[PATH_MAX];
	int err;

	err = evloop_new(&a->loop);
	if (err)
		return err;
	a->epfd = evloop_fd(a->loop);
	err = ev_signals_open(a->epfd, &a->sig, signals, sizeof(signals) / sizeof(signals[0]),
			      on_signal);
	if (!err)
		err = ev_timer_open(a->epfd, &a->health, on_health);
	if (!err)
		err = ev_timer_arm(&a->health, HEALTH_PERIOD_S * 1000, HEALTH_PERIOD_S * 1000);
	if (err)
		return err;
	err = policy_watch_open(a->opts->policy_dir, a->epfd, &hooks, &a->pw);
	if (err) {
		log_err("cannot watch policy directory %s: %s", a->opts->policy_dir,
			strerror(-err));
		return err;
	}
	a->links.handler = on_links;
	a->links.fd = ifwatch_fd(a->ifw);
	err = ev_add(a->epfd, &a->links, EPOLLIN);
	if (!err && a->hostaddr) {
		a->hostaddrs.fd = hostaddr_fd(a->hostaddr);
		a->hostaddrs.handler = on_hostaddrs;
		err = ev_add(a->epfd, &a->hostaddrs, EPOLLIN);
	}
	if (err)
		return err;

	err = loader_events_open(a->ld, on_drop_event, a, &a->ring);
	if (err) {
		log_err("cannot read the drop-event ring buffer: %s", strerror(-err));
		return err;
	}
	a->events.fd = loader_events_fd(a->ring);
	a->events.handler = on_events;
	err = ev_add(a->epfd, &a->events, EPOLLIN);
	if (err)
		return err;
	if (a->opts->metrics_port) {
		err = http_server_open(a->opts->metrics_port, a->epfd, render_metrics, a,
				       &a->http);
		if (err) {
			log_err("cannot serve metrics on 127.0.0.1:%u: %s (pick another with "
				"--metrics-port, or 0 to turn it off)", a->opts->metrics_port,
				strerror(-err));
			return err;
		}
		log_info("metrics on http://127.0.0.1:%u/metrics", a->opts->metrics_port);
	}

	snprintf(sock, sizeof(sock), "%s/%s", a->opts->run_dir, CONTROL_SOCK_NAME);
	err = control_server_open(sock, a->loop, handle_request, a, &a->ctl);
	if (err)
		log_err("cannot listen on %s: %s", sock, strerror(-err));
	return err;
}

/* Every control client and scraper is an fd: take the whole hard limit
 * (the soft default of 1024 is less than the connection caps add up to). */
static void raise_nofile(void)
{
	struct rlimit rl;

	if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl))
			log_warn("cannot raise the open-file limit: %s", strerror(errno));
	}
}

static int make_dir(const char *path)
{
	int err = mkdir_p(path, 0700);

	if (err)
		log_err("cannot create %s: %s", path, strerror(-err));
	return err;
}

static void close_source(struct ev_source *src)
{
	if (src->fd >= 0)
		close(src->fd);
}

/* Pinned objects, taps, DHCP sockets and up to a thousand control
 * clients: more descriptors than a service's default 1024, which the hard
 * limit allows without privileges. */
static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) || rl.rlim_cur >= 8192)
		return;
	rl.rlim_cur = rl.rlim_max < 8192 ? rl.rlim_max : 8192;
	if (setrlimit(RLIMIT_NOFILE, &rl))
		log_warn("cannot raise the open-file limit to %llu: %s",
			 (unsigned long long)rl.rlim_cur, strerror(errno));
}

int agent_run(const struct agent_opts *o)
{
	char cache[PATH_MAX], regs[PATH_MAX];
	struct loader_opts lo = { .pin_root = o->pin_root, .max_vms = o->max_vms,
				  .feature_cache = cache, .no_dev_stats = !o->device_stats };
	struct agent a = { .opts = o, .lock_fd = -1, .epfd = -1, .sig.fd = -1,
			   .health.fd = -1, .links.fd = -1,
			   .events.fd = -1 };
	struct stat st;
	int err;

	clock_gettime(CLOCK_MONOTONIC, &a.started);
	raise_fd_limit();
	if (stat(o->policy_dir, &st) || !S_ISDIR(st.st_mode)) {
		log_err("policy directory %s: %s (create it or pass --policy-dir)",
			o->policy_dir, errno ? strerror(errno) : "not a directory");
		return 1;
	}
	if (make_dir(o->run_dir) || make_dir(o->state_dir))
		return 1;
	err = take_lock(&a);
	if (err)
		return 1;

	snprintf(cache, sizeof(cache), "%s/features", o->state_dir);
	loader_probe_features(cache, a.features);
	for (int i = 0; i < RAYOS_FEAT_MAX; i++)
		log_info("feature %-14s %s (%s)", loader_feature_name(i),
			 a.features[i].available ? "yes" : "no ", a.features[i].detail);

	snprintf(regs, sizeof(regs), "%s/registrations.json", o->state_dir);
	err = registry_open(regs, &a.reg);
	if (err) {
		log_err("cannot read %s: %s", regs, strerror(-err));
		goto out;
	}
	err = vmdeleg_open(&a);
	if (err)
		goto out;
	err = loader_open(&lo, &a.ld);
	if (!err)
		err = ifwatch_open(a.ld, &a.ifw);
	if (err)
		goto out;
	raise_nofile();
	err = hostaddr_open(a.ld, &a.hostaddr);
	if (err)
		log_err("cannot watch the host's addresses (%s): the \"host\" rules cover "
			"only broadcast, multicast and loopback", strerror(-err));
	err = setup_events(&a);
	if (err)
		goto out;
	err = cgroup_parent_create(regs, sizeof(regs));
	if (err)
		log_warn("cannot create the VMs' parent cgroup (%s): VM processes cannot be "
			 "confined", strerror(-err));
	/* Capabilities are per thread: drop them before the TPM worker starts. */
	if (o->keep_caps) {
		snprintf(a.caps_kept, sizeof(a.caps_kept), "all (--keep-caps)");
	} else {
		err = privs_drop(a.caps_kept, sizeof(a.caps_kept));
		if (err)
			goto out;
	}
	start_tpm(&a);
	if (a.tpm_error[0] && !o->no_tpm)
		degraded_set(&a.deg, DEG_TPM_UNREACHABLE, "measured launch unavailable: %s; "
			     "enforcement goes on", a.tpm_error);
	audittrail_open(&a);	/* the chain picked up, its head measured */
	quarantine_open(&a);	/* before the first publish: it keeps them */
	agent_apply_policy(&a, "start");	/* a bad policy leaves what is pinned */
	vms_restore(&a);
	log_info("running as pid %d with %s; control socket %s/%s", getpid(),
		 a.caps_kept, o->run_dir, CONTROL_SOCK_NAME);

	err = evloop_run(a.loop);
	if (err)
		log_err("event loop: %s", strerror(-err));
out:
	vms_close(&a);
	dhcp_server_close(a.dhcp);
	/* The last records' head, extended before the worker stops. */
	if (audittrail_measure(&a) && tpm_flush(a.tpm, 3000))
		log_warn("the audit head measured at stop is not extended yet: the next start "
			 "extends it");
	tpm_close(a.tpm);
	control_server_close(a.ctl);
	if (a.purge && a.ifw)
		ifwatch_detach_all(a.ifw);	/* links, ifb devices and qdiscs */
	close_source(&a.sig);
	close_source(&a.health);
	policy_watch_close(a.pw);
	quarantine_free(&a.quarantine);
	ifwatch_close(a.ifw);	/* owns links.fd */
	hostaddr_close(a.hostaddr);	/* owns hostaddrs.fd */
	http_server_close(a.http);
	loader_events_close(a.ring);	/* owns events.fd */
	registry_close(a.reg);
	vmdeleg_close(&a);
	evloop_free(a.loop);
	loader_close(a.ld);
	if (a.purge) {
		int perr = loader_purge(o->pin_root);

		if (perr)
			log_err("purge of %s incomplete: %s", o->pin_root, strerror(-perr));
		else
			log_info("removed every pin under %s: enforcement is off", o->pin_root);
	}
	policy_set_free(a.set);
	if (a.lock_fd >= 0)
		close(a.lock_fd);
	return err ? 1 : 0;
}
