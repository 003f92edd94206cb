// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * rayos-agent: the daemon (`start`) and the CLI that talks to it over the
 * control socket (`stop`, `status`, `policy ...`).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "agent/agent.h"
#include "agent/audittrail.h"
#include "agent/control/control.h"
#include "agent/core/log.h"
#include "agent/dhcp/dhcp.h"
#include "agent/dhcp/dhcp_client.h"
#include "agent/policy/policy.h"
#include "agent/tpm/tpm.h"
#include "agent/vm/shaper.h"
#include "loader/attach.h"
#include "loader/loader.h"

#define CALL_TIMEOUT_MS	10000

static void usage(FILE *f)
{
	fprintf(f,
"usage: rayos-agent COMMAND [OPTIONS]\n"
"\n"
"  start [--policy-dir D] [--state-dir D] [--run-dir D] [--pin-root D]\n"
"        [--max-vms N] [--metrics-port P] [--tcti T] [--no-tpm]\n"
"        [--device-stats] [--measure-disks] [--mass-removal-share PCT]\n"
"        [--daemon] [--verbose] [--keep-caps]\n"
"                          load and pin the BPF programs, apply the policy\n"
"                          directory and keep it applied (foreground)\n"
"  stop [--purge]          stop the agent; enforcement stays pinned unless\n"
"                          --purge removes it\n"
"  status [--json]         policy version, VMs, enforcement points, uptime\n"
"  policy check FILE...    validate policy files offline (exit 0 or 1)\n"
"  policy reload [--allow-mass-removal]\n"
"                          re-read the policy directory now; a set that drops\n"
"                          more than the mass-removal share of the VMs is held\n"
"                          back unless --allow-mass-removal\n"
"  vm list [--json]        VMs in the maps, their taps and traffic totals\n"
"  vm stats [ID] [--json]  counters by direction, reason and rule\n"
"  vm register ID [--iface TAP] [--pid PID [--keep-cgroup]]\n"
"                          enforce VM ID's policy on TAP (overrides the policy)\n"
"                          and confine process PID (its QEMU) and its descendants\n"
"                          in the VM's cgroup (--keep-cgroup: in the cgroup it is\n"
"                          in, as libvirt made it)\n"
"  vm info ID              the policy's name, interface, bridge, MAC, address\n"
"  vm unregister ID        back to the policy's interface, if any; a quarantined\n"
"                          VM loses its enforcement\n"
"  perf [--json]           host-wide counters, event rates, recent drops\n"
"  cap grant|revoke ID CAP_X   change a running VM's capabilities (audited)\n"
"  cap grant-temp ID CAP_X [--expires DURATION | --until RFC3339]\n"
"                              a grant the kernel ends at its deadline (default 1h,\n"
"                              1s..366d; durations like 30m, 1h30m, 2d)\n"
"  cap delegate FROM TO CAP_X [--expires DURATION | --until RFC3339]\n"
"                              FROM (holding CAP_X and CAP_ADMIN) gives CAP_X to TO;\n"
"                              chains of at most 3 links; ends with any link above\n"
"  cap undelegate FROM TO CAP_X   end that link and every link below it\n"
"  cap tree [ID] [--json]      the delegation forest with the time left per link\n"
"  cap list ID                 capabilities held now, with the time left, and limits\n"
"  cap fine-grain ID CAP_NETWORK [--allow-ports 443,80,8000-8100] [--max-bandwidth 50Mbps]\n"
"  cap fine-grain ID CAP_GPU --nodes 226:128,/dev/dri/card0 | cap fine-grain ID CAP --clear\n"
"  cap fine-grain ID CAP_DISK_READ|CAP_DISK_WRITE --disks PATH[,PATH...]\n"
"                              limit a capability (with the policy's limits and its\n"
"                              firewall: the narrower wins); --clear lifts it\n"
"  cap revoke-all [--temporary] [--vm ID|LIST | --group NAME]\n"
"                              take every capability (or only temporary grants)\n"
"                              from the selected VMs, default all, in one step\n"
"  audit [--vm ID] [--since 1h|RFC3339] [--json]   the audit records\n"
"  audit verify [--log PATH] [--no-tpm] [--json]\n"
"                          check the hash chain and its head against the TPM;\n"
"                          names the first bad line (exit 1)\n"
"  device status|handlers|list [ID]   device enforcement, classes, counters\n"
"  dhcp status|leases | dhcp release IP   the DHCP server of guest bridges\n"
"  dhcp client IFACE [...] an RFC 2131 client (dhcp client --help)\n"
"  tpm status|verify       measured-launch state; replay the event log vs the TPM\n"
"  tpm enroll --out DIR    export the EK, its certificate and the AK for a verifier\n"
"  tpm challenge --ek F --ak F [--ek-cert C [--ek-ca CA]] --out DIR\n"
"                          (verifier) a credential only that EK's TPM opens for that AK\n"
"  tpm quote --nonce HEX --out DIR [--challenge DIR/credential.bin]\n"
"  tpm verify-quote DIR --nonce HEX (--ak F | --ak-name HEX | --ek F --challenge DIR)\n"
"        [--banks sha1,sha256]   check a quote against a key the verifier trusts\n"
"  tpm vm-snapshot ID      the measurement right after VM ID's launch record\n"
"  tpm nv define|read|write [--random | --file F]   the NV record-MAC seed\n"
"\n"
"Common options: --run-dir D (default %s), --pin-root D (default %s)\n",
		RAYOS_RUN_DIR_DEFAULT, RAYOS_PIN_ROOT_DEFAULT);
}

enum { OPT_POLICY_DIR = 256, OPT_STATE_DIR, OPT_RUN_DIR, OPT_PIN_ROOT, OPT_MAX_VMS,
       OPT_DAEMON, OPT_VERBOSE, OPT_KEEP_CAPS, OPT_JSON, OPT_PURGE, OPT_METRICS_PORT,
       OPT_IFACE, OPT_TCTI, OPT_NO_TPM, OPT_NONCE, OPT_OUT, OPT_FILE,
       OPT_RANDOM, OPT_PID, OPT_DEVICE_STATS, OPT_MEASURE_DISKS, OPT_AK, OPT_AK_NAME,
       OPT_EK, OPT_CHALLENGE, OPT_BANKS, OPT_EK_CERT, OPT_EK_CA, OPT_MASS_SHARE,
       OPT_ALLOW_MASS, OPT_KEEP_CGROUP, OPT_EXPIRES, OPT_UNTIL, OPT_TEMPORARY,
       OPT_VM, OPT_GROUP, OPT_LOG, OPT_SINCE, OPT_ALLOW_PORTS, OPT_MAX_BANDWIDTH,
       OPT_NODES, OPT_DISKS, OPT_CLEAR };

static const struct option long_opts[] = {
	{ "policy-dir", required_argument, NULL, OPT_POLICY_DIR },
	{ "state-dir", required_argument, NULL, OPT_STATE_DIR },
	{ "run-dir", required_argument, NULL, OPT_RUN_DIR },
	{ "pin-root", required_argument, NULL, OPT_PIN_ROOT },
	{ "max-vms", required_argument, NULL, OPT_MAX_VMS },
	{ "daemon", no_argument, NULL, OPT_DAEMON },
	{ "verbose", no_argument, NULL, OPT_VERBOSE },
	{ "keep-caps", no_argument, NULL, OPT_KEEP_CAPS },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "purge", no_argument, NULL, OPT_PURGE },
	{ "metrics-port", required_argument, NULL, OPT_METRICS_PORT },
	{ "iface", required_argument, NULL, OPT_IFACE },
	{ "tcti", required_argument, NULL, OPT_TCTI },
	{ "no-tpm", no_argument, NULL, OPT_NO_TPM },
	{ "nonce", required_argument, NULL, OPT_NONCE },
	{ "out", required_argument, NULL, OPT_OUT },
	{ "file", required_argument, NULL, OPT_FILE },
	{ "random", no_argument, NULL, OPT_RANDOM },
	{ "pid", required_argument, NULL, OPT_PID },
	{ "device-stats", no_argument, NULL, OPT_DEVICE_STATS },
	{ "measure-disks", no_argument, NULL, OPT_MEASURE_DISKS },
	{ "ak", required_argument, NULL, OPT_AK },
	{ "ak-name", required_argument, NULL, OPT_AK_NAME },
	{ "ek", required_argument, NULL, OPT_EK },
	{ "challenge", required_argument, NULL, OPT_CHALLENGE },
	{ "banks", required_argument, NULL, OPT_BANKS },
	{ "ek-cert", required_argument, NULL, OPT_EK_CERT },
	{ "ek-ca", required_argument, NULL, OPT_EK_CA },
	{ "mass-removal-share", required_argument, NULL, OPT_MASS_SHARE },
	{ "allow-mass-removal", no_argument, NULL, OPT_ALLOW_MASS },
	{ "keep-cgroup", no_argument, NULL, OPT_KEEP_CGROUP },
	{ "expires", required_argument, NULL, OPT_EXPIRES },
	{ "temporary", no_argument, NULL, OPT_TEMPORARY },
	{ "vm", required_argument, NULL, OPT_VM },
	{ "group", required_argument, NULL, OPT_GROUP },
	{ "until", required_argument, NULL, OPT_UNTIL },
	{ "allow-ports", required_argument, NULL, OPT_ALLOW_PORTS },
	{ "max-bandwidth", required_argument, NULL, OPT_MAX_BANDWIDTH },
	{ "nodes", required_argument, NULL, OPT_NODES },
	{ "disks", required_argument, NULL, OPT_DISKS },
	{ "clear", no_argument, NULL, OPT_CLEAR },
	{ "log", required_argument, NULL, OPT_LOG },
	{ "since", required_argument, NULL, OPT_SINCE },
	{ "help", no_argument, NULL, 'h' },
	{ 0 },
};

struct cli {
	struct agent_opts ao;
	bool json, purge, allow_mass;
	const char *iface;
	const char *nonce, *out, *file, *pid;
	const char *expires, *until;	/* cap grant-temp */
	const char *allow_ports, *max_bw, *nodes, *disks;	/* cap fine-grain */
	bool clear;
	bool temporary;			/* cap revoke-all */
	const char *vm, *group;		/* cap revoke-all selection; audit --vm */
	const char *log, *since;	/* audit */
	bool random, keep_cgroup;
	struct tpm_trust trust;		/* tpm verify-quote / challenge */
	const char *ek_cert, *ek_ca;
};

static int set_path(char *dst, const char *src, const char *opt)
{
	if (strlen(src) >= RAYOS_DIR_LEN || !src[0]) {
		fprintf(stderr, "rayos-agent: %s: path is empty or longer than %d\n", opt,
			RAYOS_DIR_LEN - 1);
		return -EINVAL;
	}
	strcpy(dst, src);
	return 0;
}

static int parse_opts(int argc, char **argv, struct cli *cli)
{
	char *end;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
		switch (c) {
		case OPT_POLICY_DIR:
			if (set_path(cli->ao.policy_dir, optarg, "--policy-dir"))
				return -EINVAL;
			break;
		case OPT_STATE_DIR:
			if (set_path(cli->ao.state_dir, optarg, "--state-dir"))
				return -EINVAL;
			break;
		case OPT_RUN_DIR:
			if (set_path(cli->ao.run_dir, optarg, "--run-dir"))
				return -EINVAL;
			break;
		case OPT_PIN_ROOT:
			if (set_path(cli->ao.pin_root, optarg, "--pin-root"))
				return -EINVAL;
			break;
		case OPT_MAX_VMS:
			errno = 0;
			unsigned long v = strtoul(optarg, &end, 10);

			if (errno || *end || v < 1 || v > RAYOS_MAX_VMS_LIMIT) {
				fprintf(stderr, "rayos-agent: --max-vms %s: want 1..%u\n",
					optarg, RAYOS_MAX_VMS_LIMIT);
				return -EINVAL;
			}
			cli->ao.max_vms = v;
			break;
		case OPT_METRICS_PORT:
			errno = 0;
			unsigned long port = strtoul(optarg, &end, 10);

			if (errno || *end || port > 65535) {
				fprintf(stderr, "rayos-agent: --metrics-port %s: want 0..65535 "
					"(0 turns metrics off)\n", optarg);
				return -EINVAL;
			}
			cli->ao.metrics_port = port;
			break;
		case OPT_TEMPORARY:
			cli->temporary = true;
			break;
		case OPT_VM:
			cli->vm = optarg;
			break;
		case OPT_GROUP:
			cli->group = optarg;
			break;
		case OPT_EXPIRES:
			cli->expires = optarg;
			break;
		case OPT_UNTIL:
			cli->until = optarg;
			break;
		case OPT_ALLOW_PORTS:
			cli->allow_ports = optarg;
			break;
		case OPT_MAX_BANDWIDTH:
			cli->max_bw = optarg;
			break;
		case OPT_NODES:
			cli->nodes = optarg;
			break;
		case OPT_DISKS:
			cli->disks = optarg;
			break;
		case OPT_CLEAR:
			cli->clear = true;
			break;
		case OPT_LOG:
			cli->log = optarg;
			break;
		case OPT_SINCE:
			cli->since = optarg;
			break;
		case OPT_IFACE:
			cli->iface = optarg;
			break;
		case OPT_TCTI:
			if (strlen(optarg) >= sizeof(cli->ao.tcti)) {
				fprintf(stderr, "rayos-agent: --tcti: too long\n");
				return -EINVAL;
			}
			strcpy(cli->ao.tcti, optarg);
			break;
		case OPT_NO_TPM:
			cli->ao.no_tpm = true;
			break;
		case OPT_NONCE:
			cli->nonce = optarg;
			break;
		case OPT_OUT:
			cli->out = optarg;
			break;
		case OPT_FILE:
			cli->file = optarg;
			break;
		case OPT_RANDOM:
			cli->random = true;
			break;
		case OPT_PID:
			cli->pid = optarg;
			break;
		case OPT_AK:
			cli->trust.ak_file = optarg;
			break;
		case OPT_AK_NAME:
			cli->trust.ak_name = optarg;
			break;
		case OPT_EK:
			cli->trust.ek_file = optarg;
			break;
		case OPT_CHALLENGE:
			cli->trust.challenge = optarg;
			break;
		case OPT_BANKS:
			cli->trust.banks = optarg;
			break;
		case OPT_EK_CERT:
			cli->ek_cert = optarg;
			break;
		case OPT_EK_CA:
			cli->ek_ca = optarg;
			break;
		case OPT_KEEP_CGROUP:
			cli->keep_cgroup = true;
			break;
		case OPT_DEVICE_STATS:
			cli->ao.device_stats = true;
			break;
		case OPT_MEASURE_DISKS:
			cli->ao.measure_disks = true;
			break;
		case OPT_MASS_SHARE:
			errno = 0;
			unsigned long pct = strtoul(optarg, &end, 10);

			if (errno || *end || !optarg[0] || pct > 100) {
				fprintf(stderr, "rayos-agent: --mass-removal-share %s: want a "
					"percentage 0..100 (100: never hold a publish back)\n", optarg);
				return -EINVAL;
			}
			cli->ao.mass_removal_pct = pct;
			break;
		case OPT_ALLOW_MASS:
			cli->allow_mass = true;
			break;
		case OPT_DAEMON:
			cli->ao.daemonize = true;
			break;
		case OPT_VERBOSE:
			log_set_level(LOG_LVL_DEBUG);
			break;
		case OPT_KEEP_CAPS:
			cli->ao.keep_caps = true;
			break;
		case OPT_JSON:
			cli->json = true;
			break;
		case OPT_PURGE:
			cli->purge = true;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			return -EINVAL;
		}
	}
	return 0;
}

static void sock_path(const struct cli *cli, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", cli->ao.run_dir, CONTROL_SOCK_NAME);
}

/* Send {"cmd": cmd} plus extra fields; print errors; return the reply. */
static cJSON *call(const struct cli *cli, cJSON *req, bool quiet_if_down)
{
	char path[PATH_MAX];
	cJSON *reply = NULL, *err;
	int ret;

	sock_path(cli, path, sizeof(path));
	ret = control_call(path, req, &reply, CALL_TIMEOUT_MS);
	cJSON_Delete(req);
	if (ret) {
		if (!quiet_if_down || (ret != -ENOENT && ret != -ECONNREFUSED))
			fprintf(stderr, "rayos-agent: no agent answers on %s: %s%s\n", path,
				strerror(-ret),
				ret == -ENOENT || ret == -ECONNREFUSED
					? " (is `rayos-agent start` running?)" : "");
		return NULL;
	}
	if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "ok"))) {
		err = cJSON_GetObjectItemCaseSensitive(reply, "error");
		fprintf(stderr, "rayos-agent: %s\n",
			cJSON_IsString(err) ? err->valuestring : "request failed");
		cJSON_Delete(reply);
		return NULL;
	}
	return reply;
}

static cJSON *request(const char *cmd)
{
	cJSON *req = cJSON_CreateObject();

	cJSON_AddStringToObject(req, "cmd", cmd);
	return req;
}

static const char *jstr(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

	return cJSON_IsString(v) ? v->valuestring : "";
}

static double jnum(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

	return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static void print_status(const cJSON *r)
{
	const cJSON *pol = cJSON_GetObjectItemCaseSensitive(r, "policy");
	const cJSON *vms = cJSON_GetObjectItemCaseSensitive(r, "vms");
	const cJSON *ep = cJSON_GetObjectItemCaseSensitive(r, "enforcement");
	const cJSON *it;
	time_t at = (time_t)jnum(pol, "applied_at");
	char when[64] = "never";

	if (at)
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", localtime(&at));
	printf("agent:      pid %.0f, up %.0f s, capabilities %s\n", jnum(r, "pid"),
	       jnum(r, "uptime_s"), jstr(r, "capabilities"));
	printf("pins:       %s\n", jstr(r, "pin_root"));
	printf("policy:     version %.0f from %s, applied %s (%.2f ms)\n",
	       jnum(pol, "version"), jstr(pol, "source"), when, jnum(pol, "apply_ms"));
	printf("digest:     %s\n", jstr(pol, "digest"));
	if (jstr(pol, "last_error")[0])
		printf("rejected:   %s\n", jstr(pol, "last_error"));
	cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(r, "degraded"))
		printf("DEGRADED:   %s since %s: %s\n", jstr(it, "state"), jstr(it, "since_iso"),
		       jstr(it, "detail"));
	printf("VMs:        %d\n", cJSON_GetArraySize(vms));
	cJSON_ArrayForEach(it, vms) {
		const cJSON *conf = cJSON_GetObjectItemCaseSensitive(it, "confinement"), *w;

		printf("  %-6.0f %-24s group %-12s iface %-15s gen %.0f v%.0f %s%s\n",
		       jnum(it, "id"), jstr(it, "name"),
		       jstr(it, "group")[0] ? jstr(it, "group") : "-",
		       jstr(it, "interface")[0] ? jstr(it, "interface") : "-",
		       jnum(it, "generation"), jnum(it, "policy_version"), jstr(conf, "state"),
		       cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "quarantined"))
			       ? "  QUARANTINED (no policy: everything dropped)" : "");
		cJSON_ArrayForEach(w, cJSON_GetObjectItemCaseSensitive(conf, "warnings"))
			printf("         warning: %s\n", cJSON_IsString(w) ? w->valuestring : "?");
	}
	printf("host:       %.0f addresses, reached by guests only through their \"host\" rules\n",
	       jnum(r, "host_addresses"));
	printf("enforcement:\n");
	cJSON_ArrayForEach(it, ep)
		printf("  %-20s %-11s %s\n", jstr(it, "point"), jstr(it, "state"),
		       jstr(it, "detail"));
	it = cJSON_GetObjectItemCaseSensitive(r, "tpm");
	printf("tpm:        %s", jstr(it, "state"));
	if (jstr(it, "tcti")[0])
		printf(" via %s%s, NV index 0x%08x: %.0f records, %.0f extended, %.0f pending, "
		       "%.0f failed", jstr(it, "tcti"),
		       cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "embedded"))
			       ? " (embedded swtpm)" : "",
		       (unsigned int)jnum(it, "nv_index"), jnum(it, "records"), jnum(it, "extended"),
		       jnum(it, "pending"), jnum(it, "failed"));
	if (jstr(it, "error")[0] || jstr(it, "last_error")[0])
		printf(" (%s%s)", jstr(it, "error"), jstr(it, "last_error"));
	it = cJSON_GetObjectItemCaseSensitive(r, "dhcp");
	if (cJSON_GetObjectItemCaseSensitive(it, "bridges")) {
		const cJSON *b;

		printf("\ndhcp:       serving, lease db %s (%.0f commits)", jstr(it, "lease_db"),
		       jnum(it, "commits"));
		cJSON_ArrayForEach(b, cJSON_GetObjectItemCaseSensitive(it, "bridges"))
			printf("; %s %s", jstr(b, "name"),
			       cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(b, "up")) ? "up"
										 : "waiting");
		printf("\n");
	} else {
		printf("\ndhcp:       %s%s%s\n", jstr(it, "state"), jstr(it, "error")[0] ? ": " : "",
		       jstr(it, "error"));
	}
}

static int cmd_status(struct cli *cli)
{
	cJSON *r = call(cli, request("status"), false);
	char *text;

	if (!r)
		return 1;
	if (cli->json) {
		text = cJSON_Print(r);
		puts(text);
		free(text);
	} else {
		print_status(r);
	}
	cJSON_Delete(r);
	return 0;
}

/* The shaper devices of every VM that has pinned links. */
static int purge_shaper(void *ctx, uint32_t vm_id)
{
	(void)ctx;
	shaper_remove(vm_id, 0);
	return 0;
}

static int cmd_stop(struct cli *cli)
{
	cJSON *req = request("stop"), *r;
	char lock[PATH_MAX];

	cJSON_AddBoolToObject(req, "purge", cli->purge);
	r = call(cli, req, true);
	if (r) {
		cJSON_Delete(r);
		/* Wait for the lock to be released: then the agent is gone. */
		snprintf(lock, sizeof(lock), "%s/agent.lock", cli->ao.run_dir);
		for (int i = 0; i < 100; i++) {
			int fd = open(lock, O_RDWR | O_CLOEXEC);

			if (fd < 0)
				return 0;
			if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
				close(fd);
				return 0;
			}
			close(fd);
			usleep(50 * 1000);
		}
		fprintf(stderr, "rayos-agent: the agent has not exited after 5 s\n");
		return 1;
	}
	if (!cli->purge) {
		fprintf(stderr, "rayos-agent: no agent is running\n");
		return 1;
	}
	/* No agent: purge the pins and the VMs' shapers ourselves. */
	loader_for_each_vm_link(cli->ao.pin_root, purge_shaper, NULL);
	int err = loader_purge(cli->ao.pin_root);

	if (err) {
		fprintf(stderr, "rayos-agent: cannot purge %s: %s\n", cli->ao.pin_root,
			strerror(-err));
		return 1;
	}
	printf("no agent was running; removed the pins under %s\n", cli->ao.pin_root);
	return 0;
}

/* The "dhcp" object is part of the verdict, as it is for the agent. */
static int check_dhcp(const struct policy_set *set, char *msg, size_t len)
{
	struct dhcp_config *cfg = NULL;
	int err = dhcp_config_parse(policy_set_dhcp(set), set, &cfg, msg, len);

	dhcp_config_free(cfg);
	return err;
}

static int cmd_policy(struct cli *cli, int argc, char **argv)
{
	int bad = 0;

	if (argc < 1) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[0], "reload")) {
		cJSON *req = request("policy.reload"), *r;

		if (argc > 1) {
			usage(stderr);
			cJSON_Delete(req);
			return 2;
		}
		if (cli->allow_mass)
			cJSON_AddBoolToObject(req, "allow_mass_removal", 1);
		r = call(cli, req, false);

		if (!r)
			return 1;
		printf("policy version %.0f applied\n", jnum(r, "version"));
		cJSON_Delete(r);
		return 0;
	}
	if (strcmp(argv[0], "check") || argc < 2) {
		usage(stderr);
		return 2;
	}
	for (int i = 1; i < argc; i++) {
		struct policy_set *set = NULL;
		struct compiled_policy *cp = NULL;
		struct policy_error perr = {};
		struct stat st;
		char msg[PATH_MAX + 512];
		int err;

		if (!stat(argv[i], &st) && S_ISDIR(st.st_mode))
			err = policy_load_dir(argv[i], &set, &perr);
		else
			err = policy_load_file(argv[i], &set, &perr);
		if (!err)
			err = policy_compile(set, &cp, &perr);
		if (err)
			policy_error_format(&perr, msg, sizeof(msg));
		else if (policy_set_dhcp(set))
			err = check_dhcp(set, msg, sizeof(msg));
		if (err) {
			printf("%s: INVALID: %s\n", argv[i], msg);
			bad++;
		} else {
			printf("%s: OK (%zu VMs)\n", argv[i], set->nr_vms);
		}
		compiled_policy_free(cp);
		policy_set_free(set);
	}
	return bad ? 1 : 0;
}

static int print_reply(const struct cli *cli, cJSON *r, void (*human)(const cJSON *))
{
	char *text;

	if (!r)
		return 1;
	if (cli->json || !human) {
		text = cJSON_Print(r);
		puts(text);
		free(text);
	} else {
		human(r);
	}
	cJSON_Delete(r);
	return 0;
}

static double dirnum(const cJSON *vm, const char *dir, const char *k)
{
	return jnum(cJSON_GetObjectItemCaseSensitive(vm, dir), k);
}

static void print_vm_list(const cJSON *r)
{
	const cJSON *vm;

	printf("%-8s %-20s %-7s %-5s %14s %14s %14s %14s\n", "ID", "NAME", "IFINDEX", "SLOT",
	       "IN_PASS", "IN_DROP", "OUT_PASS", "OUT_DROP");
	cJSON_ArrayForEach(vm, cJSON_GetObjectItemCaseSensitive(r, "vms"))
		printf("%-8.0f %-20s %-7.0f %-5.0f %14.0f %14.0f %14.0f %14.0f\n",
		       jnum(vm, "id"), jstr(vm, "name")[0] ? jstr(vm, "name") : "-",
		       jnum(vm, "ifindex"), jnum(vm, "slot"),
		       dirnum(vm, "in", "passed_packets"), dirnum(vm, "in", "dropped_packets"),
		       dirnum(vm, "out", "passed_packets"), dirnum(vm, "out", "dropped_packets"));
}

static void print_vm_stats(const cJSON *r)
{
	static const char *const dirs[] = { "in", "out" };
	const cJSON *vm, *it;

	cJSON_ArrayForEach(vm, cJSON_GetObjectItemCaseSensitive(r, "vms")) {
		printf("VM %.0f %s (slot %.0f, policy v%.0f)\n", jnum(vm, "id"),
		       jstr(vm, "name"), jnum(vm, "slot"), jnum(vm, "policy_version"));
		for (int d = 0; d < 2; d++) {
			const cJSON *dj = cJSON_GetObjectItemCaseSensitive(vm, dirs[d]);

			printf("  %-3s passed %.0f pkts %.0f bytes, dropped %.0f pkts %.0f bytes\n",
			       dirs[d], jnum(dj, "passed_packets"), jnum(dj, "passed_bytes"),
			       jnum(dj, "dropped_packets"), jnum(dj, "dropped_bytes"));
			cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(dj, "reasons"))
				printf("      %-18s %12.0f pkts %14.0f bytes\n", it->string,
				       jnum(it, "packets"), jnum(it, "bytes"));
			cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(dj, "rules"))
				printf("      rule %-2.0f %-5s %12.0f pkts %14.0f bytes\n",
				       jnum(it, "rule"), jstr(it, "action"), jnum(it, "packets"),
				       jnum(it, "bytes"));
		}
	}
}

static void print_perf(const cJSON *r)
{
	const cJSON *it, *tot = cJSON_GetObjectItemCaseSensitive(r, "totals");

	for (int d = 0; d < 2; d++) {
		const char *dir = d ? "out" : "in";
		const cJSON *o = cJSON_GetObjectItemCaseSensitive(tot, dir);

		printf("%-4s passed %.0f pkts %.0f bytes, dropped %.0f pkts %.0f bytes\n", dir,
		       jnum(o, "passed_packets"), jnum(o, "passed_bytes"),
		       jnum(o, "dropped_packets"), jnum(o, "dropped_bytes"));
	}
	cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(r, "kernel"))
		printf("kernel %-26s %.0f\n", it->string, it->valuedouble);
	printf("drop events read by the agent: %.0f; last policy apply %.2f ms\n",
	       jnum(r, "events_received"), jnum(r, "policy_apply_ms"));
	cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(r, "recent_drops"))
		printf("  VM %-6.0f %-3s %-16s proto %-3.0f %s:%.0f -> %s:%.0f\n", jnum(it, "vm"),
		       jstr(it, "dir"), jstr(it, "reason"), jnum(it, "proto"), jstr(it, "src"),
		       jnum(it, "sport"), jstr(it, "dst"), jnum(it, "dport"));
}

/* A VM id argument: 1..2^32-1, nothing else. */
static int parse_vm_id(const char *s, uint32_t *id)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || !*s || s[0] == '-' || v < 1 || v > UINT32_MAX) {
		fprintf(stderr, "rayos-agent: \"%s\" is not a VM id (1..4294967295)\n", s);
		return -EINVAL;
	}
	*id = v;
	return 0;
}

static int cmd_vm(struct cli *cli, int argc, char **argv)
{
	const char *sub = argc ? argv[0] : "";
	const cJSON *w;
	cJSON *req, *r;
	uint32_t id;

	if (!strcmp(sub, "list") && argc == 1)
		return print_reply(cli, call(cli, request("vm.list"), false), print_vm_list);
	if (!strcmp(sub, "stats") && argc <= 2) {
		req = request("vm.stats");
		if (argc == 2) {
			if (parse_vm_id(argv[1], &id)) {
				cJSON_Delete(req);
				return 2;
			}
			cJSON_AddNumberToObject(req, "id", id);
		}
		return print_reply(cli, call(cli, req, false), print_vm_stats);
	}
	if ((!strcmp(sub, "register") || !strcmp(sub, "unregister") || !strcmp(sub, "info")) &&
	    argc == 2) {
		bool reg = !strcmp(sub, "register");
		char *end;

		if (parse_vm_id(argv[1], &id))
			return 2;
		if (reg && !cli->iface && !cli->pid) {
			fprintf(stderr, "rayos-agent: vm register %u: give --iface TAP and/or "
				"--pid PID\n", id);
			return 2;
		}
		req = request(reg ? "vm.register" : !strcmp(sub, "info") ? "vm.info"
									   : "vm.unregister");
		cJSON_AddNumberToObject(req, "id", id);
		if (reg && cli->iface)
			cJSON_AddStringToObject(req, "interface", cli->iface);
		if (reg && cli->pid) {
			long pid = strtol(cli->pid, &end, 10);

			if (*end || pid < 1) {
				fprintf(stderr, "rayos-agent: --pid %s: not a process id\n", cli->pid);
				cJSON_Delete(req);
				return 2;
			}
			cJSON_AddNumberToObject(req, "pid", pid);
			if (cli->keep_cgroup)
				cJSON_AddStringToObject(req, "cgroup", "keep");
		}
		r = call(cli, req, false);
		/* Warnings on stderr too: the JSON on stdout is easy to miss. */
		cJSON_ArrayForEach(w, cJSON_GetObjectItemCaseSensitive(r, "warnings"))
			if (cJSON_IsString(w))
				fprintf(stderr, "rayos-agent: warning: VM %u: %s\n", id, w->valuestring);
		return print_reply(cli, r, NULL);
	}
	usage(stderr);
	return 2;
}

static void print_tpm_status(const cJSON *r)
{
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(r, "tpm");
	char *text = cJSON_Print(t);

	puts(text ? text : "{}");
	free(text);
}

/* The NV seed: 32 bytes at the agent's index. */
static int tpm_nv(struct cli *cli, const char *op)
{
	uint8_t buf[32];
	int err;

	if (!strcmp(op, "define")) {
		err = tpm_nv_define(cli->ao.run_dir, cli->ao.state_dir, 0, sizeof(buf));
	} else if (!strcmp(op, "read")) {
		err = tpm_nv_read(cli->ao.run_dir, cli->ao.state_dir, 0, buf, sizeof(buf));
		if (!err) {
			for (size_t i = 0; i < sizeof(buf); i++)
				printf("%02x", buf[i]);
			printf("\n");
		}
	} else if (!strcmp(op, "write") && (cli->random || cli->file)) {
		if (cli->random) {
			err = getrandom(buf, sizeof(buf), 0) == sizeof(buf) ? 0 : -EIO;
		} else {
			FILE *f = fopen(cli->file, "re");

			err = f && fread(buf, 1, sizeof(buf), f) == sizeof(buf) ? 0 : -EINVAL;
			if (f)
				fclose(f);
			if (err)
				fprintf(stderr, "rayos-agent: %s: need %zu bytes\n", cli->file,
					sizeof(buf));
		}
		if (!err)
			err = tpm_nv_write(cli->ao.run_dir, cli->ao.state_dir, 0, buf,
					   sizeof(buf));
	} else {
		usage(stderr);
		return 2;
	}
	if (err)
		fprintf(stderr, "rayos-agent: tpm nv %s: %s\n", op, strerror(-err));
	return err ? 1 : 0;
}

static int cmd_tpm(struct cli *cli, int argc, char **argv)
{
	const char *sub = argc ? argv[0] : "";
	char report[4096] = "";
	uint32_t id;
	int err;

	if (!strcmp(sub, "status") && argc == 1)
		return print_reply(cli, call(cli, request("status"), false), print_tpm_status);
	if (!strcmp(sub, "verify") && argc == 1) {
		err = tpm_verify(cli->ao.run_dir, cli->ao.state_dir, report, sizeof(report));
	} else if (!strcmp(sub, "quote") && argc == 1 && cli->nonce && cli->out) {
		err = tpm_quote(cli->ao.run_dir, cli->ao.state_dir, cli->nonce, cli->out,
				cli->trust.challenge, report, sizeof(report));
	} else if (!strcmp(sub, "verify-quote") && argc == 2 && cli->nonce) {
		err = tpm_verify_quote(argv[1], cli->nonce, &cli->trust, report, sizeof(report));
	} else if (!strcmp(sub, "enroll") && argc == 1 && cli->out) {
		err = tpm_enroll(cli->ao.run_dir, cli->ao.state_dir, cli->out, report,
				 sizeof(report));
	} else if (!strcmp(sub, "challenge") && argc == 1 && cli->out) {
		err = tpm_challenge(cli->trust.ek_file, cli->trust.ak_file, cli->ek_cert,
				    cli->ek_ca, cli->out, report, sizeof(report));
	} else if (!strcmp(sub, "vm-snapshot") && argc == 2) {
		cJSON *snap = NULL;

		if (parse_vm_id(argv[1], &id))
			return 2;
		err = tpm_vm_snapshot(cli->ao.run_dir, id, &snap);
		if (err) {
			fprintf(stderr, "rayos-agent: tpm vm-snapshot %u: %s\n", id,
				err == -ENOENT ? "no launch record for this VM" : strerror(-err));
			return 1;
		}
		return print_reply(cli, snap, NULL);
	} else if (!strcmp(sub, "nv") && argc == 2) {
		return tpm_nv(cli, argv[1]);
	} else {
		usage(stderr);
		return 2;
	}
	if (report[0])
		printf("%s\n", report);
	if (err && !report[0])
		fprintf(stderr, "rayos-agent: tpm %s: %s\n", sub, strerror(-err));
	return err ? 1 : 0;
}

/* The "limits" object of cap.list: each limited capability, its ports,
 * nodes and the bandwidth in force each way (the policy's or the limit's). */
static void print_cap_limits(const cJSON *limits)
{
	const cJSON *c, *bw, *d, *n;

	cJSON_ArrayForEach(c, limits) {
		printf("%-14s limited to:", c->string);
		if (cJSON_GetObjectItemCaseSensitive(c, "allow_ports"))
			printf(" ports %s", jstr(c, "allow_ports"));
		cJSON_ArrayForEach(n, cJSON_GetObjectItemCaseSensitive(c, "nodes"))
			printf(" node %s", n->valuestring);
		cJSON_ArrayForEach(n, cJSON_GetObjectItemCaseSensitive(c, "disks"))
			printf(" disk %s", n->valuestring);
		d = cJSON_GetObjectItemCaseSensitive(c, "from_delegation");
		if (d)
			printf(" (with what VM %.0f delegated it under)", jnum(d, "from"));
		printf("\n");
		bw = cJSON_GetObjectItemCaseSensitive(c, "bandwidth");
		cJSON_ArrayForEach(d, bw)
			printf("%-14s bandwidth %-3s %s (from the %s; policy %s, limit %s)\n", "",
			       d->string, jstr(d, "effective"), jstr(d, "from"), jstr(d, "policy"),
			       jstr(d, "limit"));
	}
}

static void print_cap_list(const cJSON *r)
{
	const cJSON *c, *caps = cJSON_GetObjectItemCaseSensitive(r, "capabilities");

	if (!cJSON_GetArraySize(caps))
		printf("VM %.0f holds no capabilities%s\n", jnum(r, "id"),
		       cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "quarantined"))
		       ? " (quarantined)" : "");
	cJSON_ArrayForEach(c, caps) {
		if (!strcmp(jstr(c, "kind"), "temporary"))
			printf("%-14s temporary  %s left (until %s)\n", jstr(c, "cap"),
			       jstr(c, "left"), jstr(c, "until"));
		else if (!strcmp(jstr(c, "kind"), "delegated") && jstr(c, "left")[0])
			printf("%-14s delegated  %s left (until %s): %s\n", jstr(c, "cap"),
			       jstr(c, "left"), jstr(c, "until"), jstr(c, "chain"));
		else if (!strcmp(jstr(c, "kind"), "delegated"))
			printf("%-14s delegated  %s\n", jstr(c, "cap"), jstr(c, "chain"));
		else
			printf("%-14s permanent\n", jstr(c, "cap"));
	}
	print_cap_limits(cJSON_GetObjectItemCaseSensitive(r, "limits"));
}

static void print_cap_temp(const cJSON *r)
{
	printf("VM %.0f: %s granted until %s (%.0f s from now, on the boot clock)\n",
	       jnum(r, "id"), jstr(r, "cap"), jstr(r, "until"), jnum(r, "seconds_left"));
}

static void print_tree_node(const cJSON *n, int depth)
{
	const cJSON *c;

	printf("%*s%s VM %.0f", 2 * depth, "", depth ? "└─" : "", jnum(n, "vm"));
	if (!depth)
		printf("  %s (%s)", jstr(n, "cap"),
		       !strcmp(jstr(n, "kind"), "own") ? "holds it" : "does not hold it: "
		       "every link below is void");
	else {
		if (cJSON_GetObjectItemCaseSensitive(n, "seconds_left"))
			printf("  %.0f s left", jnum(n, "seconds_left"));
		else
			printf("  no deadline");
		printf("%s%s", !strcmp(jstr(n, "source"), "policy") ? " (policy)" : "",
		       cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(n, "valid")) ? ""
		       : "  VOID (a link above ended)");
	}
	printf("\n");
	cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(n, "children"))
		print_tree_node(c, depth + 1);
}

static void print_cap_tree(const cJSON *r)
{
	const cJSON *t, *trees = cJSON_GetObjectItemCaseSensitive(r, "trees");

	if (!cJSON_GetArraySize(trees))
		printf("no delegations\n");
	cJSON_ArrayForEach(t, trees)
		print_tree_node(t, 0);
}

static void print_cap_delegate(const cJSON *r)
{
	printf("%s delegated: %s", jstr(r, "cap"), jstr(r, "chain"));
	if (jstr(r, "until")[0])
		printf(" until %s (%.0f s, on the boot clock)", jstr(r, "until"),
		       jnum(r, "seconds_left"));
	if (jnum(r, "limited") > 0)
		printf("; %.0f VM%s now under VM %.0f's limits on it", jnum(r, "limited"),
		       jnum(r, "limited") == 1 ? "" : "s", jnum(r, "from"));
	printf("\n");
}

static void print_cap_undelegate(const cJSON *r)
{
	printf("VM %.0f no longer holds %s from VM %.0f; %.0f link%s below ended with it\n",
	       jnum(r, "to"), jstr(r, "cap"), jnum(r, "from"), jnum(r, "ended_below"),
	       jnum(r, "ended_below") == 1 ? "" : "s");
}

/* cap delegate FROM TO CAP [--expires D | --until T] | undelegate FROM TO
 * CAP | tree [ID] */
static int cmd_cap_deleg(struct cli *cli, int argc, char **argv)
{
	const char *sub = argv[0];
	uint32_t from, to;
	cJSON *req;

	if (!strcmp(sub, "tree")) {
		if (argc > 2) {
			usage(stderr);
			return 2;
		}
		req = request("cap.tree");
		if (argc == 2) {
			if (parse_vm_id(argv[1], &from)) {
				cJSON_Delete(req);
				return 2;
			}
			cJSON_AddNumberToObject(req, "id", from);
		}
		return print_reply(cli, call(cli, req, false), print_cap_tree);
	}
	if (argc != 4) {
		usage(stderr);
		return 2;
	}
	if (parse_vm_id(argv[1], &from) || parse_vm_id(argv[2], &to))
		return 2;
	req = request(!strcmp(sub, "delegate") ? "cap.delegate" : "cap.undelegate");
	cJSON_AddNumberToObject(req, "from", from);
	cJSON_AddNumberToObject(req, "to", to);
	cJSON_AddStringToObject(req, "cap", argv[3]);
	if (!strcmp(sub, "delegate")) {
		/* The daemon checks both (bounds, format, both given). */
		if (cli->expires)
			cJSON_AddStringToObject(req, "expires", cli->expires);
		if (cli->until)
			cJSON_AddStringToObject(req, "until", cli->until);
		return print_reply(cli, call(cli, req, false), print_cap_delegate);
	}
	return print_reply(cli, call(cli, req, false), print_cap_undelegate);
}

/* --nodes "226:0,/dev/dri/card1": paths become MAJOR:MINOR here (the
 * daemon checks every item; a path that is no character device is
 * refused now, naming it). */
static int nodes_json(const char *list, cJSON *arr)
{
	char buf[4096], *save = NULL, *tok;

	if (strlen(list) >= sizeof(buf)) {
		fprintf(stderr, "rayos-agent: --nodes: list too long\n");
		return -EINVAL;
	}
	strcpy(buf, list);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		struct stat st;
		char num[32];

		if (tok[0] != '/') {
			cJSON_AddItemToArray(arr, cJSON_CreateString(tok));
			continue;
		}
		if (stat(tok, &st)) {
			fprintf(stderr, "rayos-agent: --nodes: %s: %s\n", tok, strerror(errno));
			return -EINVAL;
		}
		if (!S_ISCHR(st.st_mode)) {
			fprintf(stderr, "rayos-agent: --nodes: %s: not a character device\n", tok);
			return -EINVAL;
		}
		snprintf(num, sizeof(num), "%u:%u", major(st.st_rdev), minor(st.st_rdev));
		cJSON_AddItemToArray(arr, cJSON_CreateString(num));
	}
	return 0;
}

static void print_cap_fine(const cJSON *r)
{
	char *text = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(r, "limits"));

	printf("VM %.0f: %s %s (policy version %.0f); limits now: %s\n", jnum(r, "id"),
	       jstr(r, "cap"), cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "cleared"))
	       ? "limit cleared" : "limited", jnum(r, "version"), text ? text : "{}");
	if (jnum(r, "delegates_changed") > 0)
		printf("%.0f VM%s holding %s by delegation from it re-limited\n",
		       jnum(r, "delegates_changed"), jnum(r, "delegates_changed") == 1 ? "" : "s",
		       jstr(r, "cap"));
	free(text);
}

/* cap fine-grain ID CAP [--allow-ports L] [--max-bandwidth R] [--nodes N]
 * [--clear]: the daemon checks every value. */
static int cmd_cap_fine(struct cli *cli, const char *vm, const char *cap)
{
	cJSON *req;
	uint32_t id;

	if (parse_vm_id(vm, &id))
		return 2;
	req = request("cap.fine_grain");
	cJSON_AddNumberToObject(req, "id", id);
	cJSON_AddStringToObject(req, "cap", cap);
	if (cli->allow_ports)
		cJSON_AddStringToObject(req, "allow_ports", cli->allow_ports);
	if (cli->max_bw)
		cJSON_AddStringToObject(req, "max_bandwidth", cli->max_bw);
	if (cli->nodes && nodes_json(cli->nodes, cJSON_AddArrayToObject(req, "nodes"))) {
		cJSON_Delete(req);
		return 2;
	}
	if (cli->disks) {
		/* Paths as the policy's "disks" spell them: absolute and canonical
		 * (a path that resolves is resolved; the daemon names one that is
		 * not the VM's). */
		cJSON *arr = cJSON_AddArrayToObject(req, "disks");
		char buf[PATH_MAX], real[PATH_MAX], *save = NULL, *tok;

		if (strlen(cli->disks) >= sizeof(buf)) {
			fprintf(stderr, "rayos-agent: --disks: list too long\n");
			cJSON_Delete(req);
			return 2;
		}
		strcpy(buf, cli->disks);
		for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
			cJSON_AddItemToArray(arr, cJSON_CreateString(realpath(tok, real) ? real
									      : tok));
	}
	if (cli->clear)
		cJSON_AddBoolToObject(req, "clear", 1);
	return print_reply(cli, call(cli, req, false), print_cap_fine);
}

static void print_revoke_all(const cJSON *r)
{
	const cJSON *vms = cJSON_GetObjectItemCaseSensitive(r, "vms"), *v;

	cJSON_ArrayForEach(v, vms) {
		const cJSON *caps = cJSON_GetObjectItemCaseSensitive(v, "revoked"), *c;
		char line[256] = "";

		cJSON_ArrayForEach(c, caps) {
			if (*line)
				strncat(line, ", ", sizeof(line) - strlen(line) - 1);
			strncat(line, c->valuestring, sizeof(line) - strlen(line) - 1);
		}
		printf("VM %-10.0f %s", jnum(v, "id"), *line ? line : "(held nothing to revoke)");
		if (jnum(v, "delegations_ended") > 0)
			printf(" (and %.0f delegation link(s) to it and below it)",
			       jnum(v, "delegations_ended"));
		putchar('\n');
	}
	printf("revoked from %.0f of %.0f selected VMs in one step (epoch %.0f), in force "
	       "%.3f ms after the request arrived\n", jnum(r, "revoked_vms"), jnum(r, "selected"),
	       jnum(r, "epoch"), jnum(r, "enforced_ms"));
}

/* cap grant|revoke ID CAP | grant-temp ID CAP [--expires D | --until T] |
 * list ID | revoke-all [--temporary] [--vm LIST | --group NAME] |
 * fine-grain ID CAP ... */
static int cmd_cap(struct cli *cli, int argc, char **argv)
{
	const char *sub = argc ? argv[0] : "";
	cJSON *req;
	uint32_t id;

	if (!strcmp(sub, "list") && argc == 2) {
		if (parse_vm_id(argv[1], &id))
			return 2;
		req = request("cap.list");
		cJSON_AddNumberToObject(req, "id", id);
		return print_reply(cli, call(cli, req, false), print_cap_list);
	}
	if (!strcmp(sub, "delegate") || !strcmp(sub, "undelegate") || !strcmp(sub, "tree"))
		return cmd_cap_deleg(cli, argc, argv);
	if (!strcmp(sub, "fine-grain") && argc == 3)
		return cmd_cap_fine(cli, argv[1], argv[2]);
	if (!strcmp(sub, "grant-temp") && argc == 3) {
		if (parse_vm_id(argv[1], &id))
			return 2;
		/* The daemon checks both (bounds, format, both given). */
		req = request("cap.grant_temp");
		cJSON_AddNumberToObject(req, "id", id);
		cJSON_AddStringToObject(req, "cap", argv[2]);
		if (cli->expires)
			cJSON_AddStringToObject(req, "expires", cli->expires);
		if (cli->until)
			cJSON_AddStringToObject(req, "until", cli->until);
		return print_reply(cli, call(cli, req, false), print_cap_temp);
	}
	if (!strcmp(sub, "revoke-all") && argc == 1) {
		req = request("cap.revoke_all");
		if (cli->temporary)
			cJSON_AddBoolToObject(req, "temporary", 1);
		if (cli->vm)
			cJSON_AddStringToObject(req, "vms", cli->vm);
		if (cli->group)
			cJSON_AddStringToObject(req, "group", cli->group);
		return print_reply(cli, call(cli, req, false), print_revoke_all);
	}
	if (argc != 3 || (strcmp(sub, "grant") && strcmp(sub, "revoke"))) {
		usage(stderr);
		return 2;
	}
	if (parse_vm_id(argv[1], &id))
		return 2;
	req = request(!strcmp(sub, "grant") ? "cap.grant" : "cap.revoke");
	cJSON_AddNumberToObject(req, "id", id);
	cJSON_AddStringToObject(req, "cap", argv[2]);
	return print_reply(cli, call(cli, req, false), NULL);
}

/* audit [--vm ID] [--since T] [--json] | audit verify [--log PATH]: reads
 * the log and the TPM itself, so it works with the agent stopped. */
static int cmd_audit(struct cli *cli, int argc, char **argv)
{
	struct audittrail_cli o = {
		.state_dir = cli->ao.state_dir, .run_dir = cli->ao.run_dir, .log = cli->log,
		.vm = cli->vm, .since = cli->since, .json = cli->json, .no_tpm = cli->ao.no_tpm,
	};

	return audittrail_cli(&o, argc, argv);
}

static int cmd_device(struct cli *cli, int argc, char **argv)
{
	const char *sub = argc ? argv[0] : "";
	char cmd[32];
	cJSON *req;
	uint32_t id;

	if ((strcmp(sub, "status") && strcmp(sub, "handlers") && strcmp(sub, "list")) ||
	    argc > 2 || (argc == 2 && strcmp(sub, "list"))) {
		usage(stderr);
		return 2;
	}
	snprintf(cmd, sizeof(cmd), "device.%s", sub);
	req = request(cmd);
	if (argc == 2) {
		if (parse_vm_id(argv[1], &id)) {
			cJSON_Delete(req);
			return 2;
		}
		cJSON_AddNumberToObject(req, "id", id);
	}
	return print_reply(cli, call(cli, req, false), NULL);
}

static int cmd_dhcp(struct cli *cli, int argc, char **argv)
{
	const char *sub = argc ? argv[0] : "";
	cJSON *req;

	if ((!strcmp(sub, "status") || !strcmp(sub, "leases")) && argc == 1) {
		char cmd[32];

		snprintf(cmd, sizeof(cmd), "dhcp.%s", sub);
		return print_reply(cli, call(cli, request(cmd), false), NULL);
	}
	if (!strcmp(sub, "release") && argc == 2) {
		req = request("dhcp.release");
		cJSON_AddStringToObject(req, "ip", argv[1]);
		return print_reply(cli, call(cli, req, false), NULL);
	}
	usage(stderr);
	return 2;
}

/* --daemon: detach, log to <run_dir>/agent.log, and return in the parent
 * once the agent answers on its socket. */
static int daemonize(struct cli *cli)
{
	char logpath[PATH_MAX];
	pid_t pid;
	int fd;

	snprintf(logpath, sizeof(logpath), "%s/agent.log", cli->ao.run_dir);
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid > 0) {
		for (int i = 0; i < 200; i++) {
			cJSON *r = call(cli, request("status"), true);

			if (r) {
				cJSON_Delete(r);
				printf("rayos-agent started; log in %s\n", logpath);
				exit(0);
			}
			usleep(50 * 1000);
		}
		fprintf(stderr, "rayos-agent: the agent did not come up; see %s\n", logpath);
		exit(1);
	}
	setsid();
	if (fork() > 0)
		_exit(0);
	mkdir(cli->ao.run_dir, 0700);
	fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (fd >= 0) {
		dup2(fd, STDERR_FILENO);
		close(fd);
	}
	fd = open("/dev/null", O_RDWR);
	if (fd >= 0) {
		dup2(fd, STDIN_FILENO);
		dup2(fd, STDOUT_FILENO);
		close(fd);
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct cli cli = {};
	const char *cmd;

	agent_opts_default(&cli.ao);
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	cmd = argv[1];
	if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
		usage(stdout);
		return 0;
	}
	/* The DHCP client runs in this process with options of its own. */
	if (!strcmp(cmd, "dhcp") && argc >= 3 && !strcmp(argv[2], "client"))
		return dhcp_client_main(argc - 3, argv + 3);
	if (parse_opts(argc - 1, argv + 1, &cli))
		return 2;
	argc -= optind + 1;
	argv += optind + 1;

	if (!strcmp(cmd, "start")) {
		if (argc) {
			fprintf(stderr, "rayos-agent: start: unexpected argument %s\n", argv[0]);
			return 2;
		}
		if (geteuid() != 0) {
			fprintf(stderr, "rayos-agent: start needs root (sudo rayos-agent start)\n");
			return 1;
		}
		if (cli.ao.daemonize && daemonize(&cli))
			return 1;
		return agent_run(&cli.ao);
	}
	if (!strcmp(cmd, "stop"))
		return cmd_stop(&cli);
	if (!strcmp(cmd, "status"))
		return cmd_status(&cli);
	if (!strcmp(cmd, "policy"))
		return cmd_policy(&cli, argc, argv);
	if (!strcmp(cmd, "vm"))
		return cmd_vm(&cli, argc, argv);
	if (!strcmp(cmd, "tpm"))
		return cmd_tpm(&cli, argc, argv);
	if (!strcmp(cmd, "cap"))
		return cmd_cap(&cli, argc, argv);
	if (!strcmp(cmd, "device"))
		return cmd_device(&cli, argc, argv);
	if (!strcmp(cmd, "audit"))
		return cmd_audit(&cli, argc, argv);
	if (!strcmp(cmd, "dhcp"))
		return cmd_dhcp(&cli, argc, argv);
	if (!strcmp(cmd, "perf") && !argc)
		return print_reply(&cli, call(&cli, request("perf"), false), print_perf);
	fprintf(stderr, "rayos-agent: unknown command \"%s\"\n\n", cmd);
	usage(stderr);
	return 2;
}
