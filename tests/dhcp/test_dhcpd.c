// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Two things in one binary, because the Makefile builds only tests/<area>/
 * test_*.c: without arguments, TAP tests of the "dhcp" policy object
 * (dhcp_config_parse and its error paths); with --serve, the standalone
 * DHCP server the live tests and the benchmark run:
 *
 *   test_dhcpd --serve POLICY.json STATE_DIR
 *
 * POLICY.json is a policy document with a top-level "dhcp" object.  The
 * server logs each binding change to STATE_DIR/bindings.log, writes its
 * leases to STATE_DIR/leases.json and its status to STATE_DIR/status.json
 * on SIGUSR1, and exits on SIGTERM or SIGINT.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <cjson/cJSON.h>

#include "agent/core/evloop.h"
#include "agent/core/log.h"
#include "agent/dhcp/dhcp.h"
#include "agent/dhcp/dhcp_server.h"
#include "agent/policy/policy.h"
#include "tests/lib/tap.h"

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long n;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
		buf = calloc(1, (size_t)n + 1);
		if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
			free(buf);
			buf = NULL;
		}
	}
	fclose(f);
	return buf;
}

/* Split a policy document into its "dhcp" object and the rest, which the
 * policy parser takes (it does not know "dhcp" yet). */
/* A policy document through the real parser; *dhcp is its "dhcp" object,
 * owned by *set. */
static int load_policy(const char *file, const char *text, const cJSON **dhcp,
		       struct policy_set **set, char *err, size_t errlen)
{
	struct policy_error perr;
	int rc;

	*dhcp = NULL;
	*set = policy_set_new();
	if (!*set)
		return -ENOMEM;
	rc = policy_set_add_json(*set, file, text, strlen(text), &perr);
	if (rc)
		policy_error_format(&perr, err, errlen);
	else
		*dhcp = policy_set_dhcp(*set);
	return rc;
}

/* ---- --serve ---- */

struct harness {
	FILE *bindings;
	char state_dir[512];
	struct dhcp_server *srv;
};

static void on_binding(void *ctx, uint32_t vm_id, const uint8_t mac[6], uint32_t ip_be,
		       uint64_t expiry_ns, bool bound)
{
	struct harness *h = ctx;
	char ip[INET_ADDRSTRLEN];

	inet_ntop(AF_INET, &ip_be, ip, sizeof(ip));
	fprintf(h->bindings, "vm=%u mac=%02x:%02x:%02x:%02x:%02x:%02x ip=%s expiry_ns=%llu%s%s\n",
		vm_id, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], bound ? ip : "none",
		(unsigned long long)expiry_ns, bound ? "" : " was=", bound ? "" : ip);
	fflush(h->bindings);
}

static void dump_json(const char *dir, const char *name, cJSON *j)
{
	char path[600], tmp[610];
	char *s = cJSON_Print(j);
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (f && s) {
		fputs(s, f);
		fputc('\n', f);
	}
	if (f && !fclose(f))
		rename(tmp, path);
	free(s);
	cJSON_Delete(j);
}

static int serve(const char *policy, const char *state_dir)
{
	struct harness h = { 0 };
	struct dhcp_hooks hooks = { .ctx = &h, .binding = on_binding };
	struct dhcp_config *cfg = NULL;
	struct policy_set *set = NULL;
	struct epoll_event evs[16];
	const cJSON *dhcp = NULL;
	char err[512], path[600];
	char *text = slurp(policy);
	sigset_t mask;
	int epfd, sfd, rc = 1;
	bool running = true;

	log_set_level(getenv("DHCPD_DEBUG") ? LOG_LVL_DEBUG : LOG_LVL_INFO);
	if (!text) {
		fprintf(stderr, "%s: %s\n", policy, strerror(errno));
		return 1;
	}
	if (load_policy(policy, text, &dhcp, &set, err, sizeof(err)) ||
	    dhcp_config_parse(dhcp, set, &cfg, err, sizeof(err))) {
		fprintf(stderr, "%s: %s\n", policy, err);
		goto out;
	}
	snprintf(h.state_dir, sizeof(h.state_dir), "%s", state_dir);
	snprintf(path, sizeof(path), "%s/bindings.log", state_dir);
	h.bindings = fopen(path, "a");
	if (!h.bindings) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		goto out;
	}
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGUSR1);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (sfd < 0 || epfd < 0) {
		perror("signalfd/epoll");
		goto out;
	}
	struct epoll_event sev = { .events = EPOLLIN, .data.ptr = NULL };
	epoll_ctl(epfd, EPOLL_CTL_ADD, sfd, &sev);
	if (dhcp_server_open(cfg, state_dir, epfd, &hooks, &h.srv)) {
		fprintf(stderr, "dhcp_server_open failed\n");
		goto out;
	}
	printf("ready\n");
	fflush(stdout);
	while (running) {
		int n = epoll_wait(epfd, evs, 16, -1), i;

		if (n < 0 && errno != EINTR)
			break;
		for (i = 0; i < n; i++) {
			struct ev_source *src = evs[i].data.ptr;
			struct signalfd_siginfo si;

			if (src) {
				src->handler(src, evs[i].events);
				continue;
			}
			while (read(sfd, &si, sizeof(si)) == sizeof(si)) {
				if (si.ssi_signo == SIGUSR1) {
					dump_json(state_dir, "leases.json", dhcp_server_leases_json(h.srv));
					dump_json(state_dir, "status.json", dhcp_server_status_json(h.srv));
				} else {
					running = false;
				}
			}
		}
	}
	dhcp_server_close(h.srv);
	rc = 0;
out:
	if (h.bindings)
		fclose(h.bindings);
	dhcp_config_free(cfg);
	policy_set_free(set);
	free(text);
	return rc;
}

/* ---- TAP tests of the "dhcp" object ---- */

static const char *base_vms =
	"\"version\": 1, \"vms\": ["
	"{ \"id\": 7, \"name\": \"a\", \"bridge\": \"br0\", \"mac\": \"52:54:00:00:00:07\","
	"  \"ipv4\": \"198.18.0.7\" },"
	"{ \"id\": 8, \"name\": \"b\", \"bridge\": \"br0\", \"mac\": \"52:54:00:00:00:08\" },"
	"{ \"id\": 9, \"name\": \"c\", \"bridge\": \"br1\", \"mac\": \"52:54:00:00:00:09\" } ]";

static int parse_doc(const char *dhcp_json, struct dhcp_config **cfg, char *err, size_t errlen)
{
	char doc[4096], perr[400];
	struct policy_set *set;
	const cJSON *dhcp;
	int rc;

	snprintf(doc, sizeof(doc), "{ %s, \"dhcp\": %s }", base_vms, dhcp_json);
	rc = load_policy("test.json", doc, &dhcp, &set, perr, sizeof(perr));
	if (rc) {
		snprintf(err, errlen, "policy: %s", perr);
	} else {
		rc = dhcp_config_parse(dhcp, set, cfg, err, errlen);
	}
	policy_set_free(set);
	return rc;
}

static void test_good(void)
{
	struct dhcp_config *cfg = NULL;
	char err[512] = "";
	const struct dhcp_bridge_cfg *c;
	int rc;

	rc = parse_doc("{ \"bridges\": { \"br0\": { \"server_ip\": \"198.18.0.1\","
		       " \"subnet\": \"198.18.0.0/24\", \"pools\": [\"198.18.0.150-198.18.0.199\","
		       " \"198.18.0.100-198.18.0.149\"], \"router\": \"198.18.0.1\","
		       " \"dns\": [\"198.18.0.53\", \"198.18.0.54\"], \"ntp\": [\"198.18.0.123\"],"
		       " \"domain\": \"example.internal\", \"lease_time\": 600, \"t1\": 300,"
		       " \"t2\": 500, \"mtu\": 1400, \"rapid_commit\": true,"
		       " \"conflict_check\": \"off\", \"offer_hold\": 20 } } }", &cfg, err, sizeof(err));
	if (!ASSERT_EQ(rc, 0, "good config parses"))
		tap_diag("  %s", err);
	if (rc)
		return;
	c = &cfg->bridges[0];
	ASSERT_EQ(cfg->nr_bridges, 1, "one bridge");
	ASSERT_STREQ(c->name, "br0", "bridge name");
	ASSERT_EQ(c->nr_ranges, 2, "two ranges");
	ASSERT_EQ(c->ranges[0].lo, 0xc6120064, "ranges sorted");
	ASSERT_EQ(c->prefix, 24, "prefix");
	ASSERT_EQ(c->nr_dns, 2, "dns");
	ASSERT_EQ(c->lease_time, 600, "lease_time");
	ASSERT_EQ(c->mtu, 1400, "mtu");
	ASSERT_TRUE(c->rapid_commit && !c->conflict_check, "flags");
	ASSERT_EQ(c->nr_hosts, 2, "the VMs with a MAC on br0 are hosts");
	ASSERT_EQ(c->hosts[0].ip, 0xc6120007, "static address of vm 7");
	ASSERT_EQ(c->hosts[1].ip, 0, "vm 8 gets a pool address");
	ASSERT_EQ(c->decline_hold, 600, "decline_hold default");
	dhcp_config_free(cfg);
}

static void test_bad(void)
{
	static const struct { const char *json, *want; } cases[] = {
		{ "[]", "dhcp: expected an object" },
		{ "{ \"bridge\": {} }", "dhcp.bridge: unknown key" },
		{ "{ \"bridges\": { \"br0\": { \"subnet\": \"198.18.0.0/24\","
		  " \"pools\": [\"198.18.0.10-198.18.0.20\"] } } }", "dhcp.bridges.br0.server_ip" },
		{ "{ \"bridges\": { \"br0\": { \"server_ip\": \"198.18.0.1\", \"subnet\": \"198.18.0.0\" } } }",
		  "dhcp.bridges.br0.subnet" },
		{ "{ \"bridges\": { \"br0\": { \"server_ip\": \"198.18.0.1\", \"subnet\": \"198.18.0.0/24\","
		  " \"pools\": [\"198.18.0.10-198.18.0.20\", \"198.18.1.5-198.18.1.9\"] } } }",
		  "dhcp.bridges.br0.pools[1]: outside" },
		{ "{ \"bridges\": { \"br0\": { \"server_ip\": \"198.18.0.1\", \"subnet\": \"198.18.0.0/24\","
		  " \"pools\": [\"198.18.0.30-198.18.0.20\"] } } }", "dhcp.bridges.br0.pools[0]: first" },
		{ "{ \"bridges\": { \"br0\": { \"server_ip\": \"198.18.0.1\", \"subnet\": \"198.18.0.0/24\","
		  " \"pools\": [\"198.18.0.10-198.18.0.20\", \"198.18.0.15-198.18.0.30\"] } } }",
		  "dhcp.bridges.br0.pools: ranges overlap" },
		{ "{ \"bridges\": { \"br0\": { \"server_ip\": \"198.18.0.1\", \"subnet\": \"198.18.0.0/24\","
		  " \"lease_time\": 10 } } }", "dhcp.bridges.br0.lease_time" },
		{ "{ \"bridges\": { \"br0\": { \"server_ip\": \"198.18.0.1\", \"subnet\": \"198.18.0.0/24\","
		  " \"dns\": [\"x\"] } } }", "dhcp.bridges.br0.dns[0]" },
		{ "{ \"bridges\": { \"br0\": { \"server_ip\": \"198.18.0.1\", \"subnet\": \"198.18.0.0/24\","
		  " \"conflict_check\": \"ping\" } } }", "dhcp.bridges.br0.conflict_check" },
		{ "{ \"bridges\": { \"br0\": { \"server_ip\": \"198.18.0.1\", \"subnet\": \"198.18.0.0/24\","
		  " \"t1\": 4000 } } }", "dhcp.bridges.br0.t1" },
		{ "{ \"bridges\": { \"br0\": { \"server_ip\": \"198.18.0.1\", \"subnet\": \"198.18.0.0/24\","
		  " \"colour\": 1 } } }", "dhcp.bridges.br0.colour: unknown key" },
		{ "{ \"bridges\": { \"br0\": { \"server_ip\": \"198.18.1.1\", \"subnet\": \"198.18.0.0/24\" } } }",
		  "dhcp.bridges.br0.server_ip: not a host address" },
		{ "{ \"bridges\": { \"br0\": { \"server_ip\": \"198.18.9.1\", \"subnet\": \"198.18.9.0/24\" } } }",
		  "vm 7 (a): ipv4 is not a host address of dhcp.bridges.br0.subnet" },
		{ "{ \"bridges\": { \"br2\": { \"server_ip\": \"198.18.9.1\", \"subnet\": \"198.18.9.0/24\" } } }",
		  "dhcp.bridges.br2: no pools and no VM" },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct dhcp_config *cfg = NULL;
		char err[512] = "", name[96];
		int rc = parse_doc(cases[i].json, &cfg, err, sizeof(err));

		snprintf(name, sizeof(name), "bad config %zu refused with its path", i);
		if (!tap_ok(rc == -EINVAL && strstr(err, cases[i].want), "%s", name))
			tap_diag("  rc %d, err \"%s\", want \"%s\"", rc, err, cases[i].want);
		dhcp_config_free(cfg);
	}
}

static void test_example(void)
{
	struct dhcp_config *cfg = NULL;
	struct policy_set *set = NULL;
	struct policy_error perr;
	char err[512] = "";
	int rc;

	/* The example's VM uses a group of web.json: load the directory. */
	rc = policy_load_dir("policies/examples", &set, &perr);
	if (rc)
		policy_error_format(&perr, err, sizeof(err));
	else
		rc = dhcp_config_parse(policy_set_dhcp(set), set, &cfg, err, sizeof(err));
	if (!ASSERT_EQ(rc, 0, "example dhcp policy parses"))
		tap_diag("  %s", err);
	dhcp_config_free(cfg);
	policy_set_free(set);
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "--serve"))
		return serve(argv[2], argv[3]);
	if (argc != 1) {
		fprintf(stderr, "usage: %s [--serve POLICY.json STATE_DIR]\n", argv[0]);
		return 2;
	}
	log_set_level(LOG_LVL_ERR);
	test_good();
	test_bad();
	test_example();
	return tap_done();
}
