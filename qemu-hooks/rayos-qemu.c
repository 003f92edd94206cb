// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * rayos-qemu: launch QEMU as a RayOS VM.
 *
 *   rayos-qemu --vm ID [--run-dir D] [--tap NAME] -- qemu-system-x86_64 ARGS...
 *
 * Asks the agent for the VM's network settings (vm.info), creates the VM's
 * tap (name from --tap, else the policy's "interface", else rt<ID>), puts
 * it on the policy's bridge and up, registers the VM with the agent giving
 * its own pid, then execs QEMU with the tap fd kept open.  The agent moves
 * this process into the VM's cgroup before replying, so QEMU and every
 * thread and child it starts are in the cgroup from their first
 * instruction; the agent watches the pid and unregisters the VM when QEMU
 * exits.  Nothing survives a failure: the tap is non-persistent (it goes
 * away with the last fd) and after a failed exec the agent unregisters the
 * VM when this process exits, as it would after QEMU.
 *
 * Unless the QEMU command line has its own -netdev/-nic/-net, rayos-qemu
 * appends "-netdev tap,id=rayos0,fd=N -device virtio-net-pci,netdev=rayos0,
 * mac=MAC" with the policy's MAC.  Anywhere in ARGS, the text {tapfd} is
 * replaced by the tap's fd number, for command lines that wire the tap
 * themselves.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <net/if.h>
#include <linux/if_tun.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "agent/control/control.h"
#include "agent/core/digest.h"
#include "agent/core/nl.h"
#include "agent/core/paths.h"
#include "agent/core/spawn.h"
#include "agent/core/util.h"

#define PROG		"rayos-qemu"
#define CALL_TIMEOUT_MS	10000
#define TAP_FD_TOKEN	"{tapfd}"

struct vm_net {
	char name[64];
	char iface[IFNAMSIZ];
	char bridge[IFNAMSIZ];
	char mac[18];
};

static void usage(FILE *f)
{
	fprintf(f,
"usage: " PROG " --vm ID [--run-dir D] [--tap NAME] [--no-net] [--vtpm [--state-dir D]]\n"
"                  -- QEMU [ARGS...]\n"
"\n"
"Registers VM ID with rayos-agent, creates its tap on the policy's bridge,\n"
"and execs QEMU inside the VM's cgroup.  The agent unregisters the VM when\n"
"QEMU exits.\n"
"  --vm ID       the VM's id in the applied policy\n"
"  --run-dir D   the agent's run directory (default %s)\n"
"  --tap NAME    tap name (default: the policy's \"interface\", else rt<ID>)\n"
"  --no-net      no tap: register the VM for its cgroup and devices only\n"
"  --vtpm        give the guest its own swtpm (state in STATE/vtpm/<-uuid>,\n"
"                0700/0600; it ends with QEMU); needs QEMU's -uuid\n"
"  --state-dir D where vTPM state lives (default %s)\n"
"The text " TAP_FD_TOKEN " in ARGS becomes the tap's fd number; without a\n"
"-netdev/-nic/-net of their own, ARGS get a virtio-net NIC on the tap with\n"
"the policy's MAC.\n", RAYOS_RUN_DIR_DEFAULT, RAYOS_STATE_DIR_DEFAULT);
}

/* One request to the agent; NULL (after a message) when it fails or says no. */
static cJSON *agent_call(const char *sock, cJSON *req, uint32_t vm_id)
{
	const cJSON *ok, *err;
	cJSON *reply = NULL;
	int rc;

	rc = control_call(sock, req, &reply, CALL_TIMEOUT_MS);
	cJSON_Delete(req);
	if (rc == -ENOENT || rc == -ECONNREFUSED) {
		fprintf(stderr, PROG ": no rayos-agent is running (nothing listens on %s); "
			"start it with: rayos-agent start\n", sock);
		return NULL;
	}
	if (rc) {
		fprintf(stderr, PROG ": talking to the agent on %s: %s\n", sock, strerror(-rc));
		return NULL;
	}
	ok = cJSON_GetObjectItemCaseSensitive(reply, "ok");
	if (!cJSON_IsTrue(ok)) {
		err = cJSON_GetObjectItemCaseSensitive(reply, "error");
		fprintf(stderr, PROG ": VM %u: the agent refused: %s\n", vm_id,
			cJSON_IsString(err) ? err->valuestring : "(no reason given)");
		cJSON_Delete(reply);
		return NULL;
	}
	return reply;
}

static cJSON *request(const char *cmd, uint32_t vm_id)
{
	cJSON *req = cJSON_CreateObject();

	cJSON_AddStringToObject(req, "cmd", cmd);
	cJSON_AddNumberToObject(req, "id", vm_id);
	return req;
}

static void copy_str(char *dst, size_t len, const cJSON *obj, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);

	dst[0] = '\0';
	if (cJSON_IsString(v) && strlen(v->valuestring) < len)
		strcpy(dst, v->valuestring);
}

static int vm_info(const char *sock, uint32_t vm_id, struct vm_net *net)
{
	cJSON *r = agent_call(sock, request("vm.info", vm_id), vm_id);

	if (!r)
		return -1;
	copy_str(net->name, sizeof(net->name), r, "name");
	copy_str(net->iface, sizeof(net->iface), r, "interface");
	copy_str(net->bridge, sizeof(net->bridge), r, "bridge");
	copy_str(net->mac, sizeof(net->mac), r, "mac");
	cJSON_Delete(r);
	return 0;
}

/* A non-persistent tap: it disappears when the last fd on it closes. */
static int tap_open(const char *name)
{
	struct ifreq ifr = { 0 };
	int fd, err;

	fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		err = errno;
		fprintf(stderr, PROG ": cannot open /dev/net/tun: %s\n", strerror(err));
		return -err;
	}
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (ioctl(fd, TUNSETIFF, &ifr)) {
		err = errno;
		if (err == EBUSY || err == EINVAL)
			fprintf(stderr, PROG ": cannot create tap %s: an interface of that name "
				"exists and is in use or not a free tap (%s)\n", name, strerror(err));
		else
			fprintf(stderr, PROG ": cannot create tap %s: %s\n", name, strerror(err));
		close(fd);
		return -err;
	}
	return fd;
}

/* RTM_NEWLINK on ifindex: set IFLA_MASTER (when master > 0) and bring it up. */
static int link_set_master_up(int ifindex, int master)
{
	struct ifinfomsg ifi = {
		.ifi_family = AF_UNSPEC,
		.ifi_index = ifindex,
		.ifi_flags = IFF_UP,
		.ifi_change = IFF_UP,
	};
	struct nl_req r;

	nl_req_init(&r, RTM_NEWLINK, 0, &ifi, sizeof(ifi));
	if (master > 0)
		nl_put(&r, IFLA_MASTER, &master, sizeof(master));
	return nl_talk(&r);
}

/*
 * --vtpm: one swtpm per VM, its state in <state>/vtpm/<uuid> (directory
 * 0700, files 0600), on a unix socket QEMU connects to.  swtpm --terminate
 * ends when QEMU closes the connection, so the vTPM lives exactly as long
 * as the guest.  Appends QEMU's -chardev/-tpmdev/-device arguments.
 */
static int vtpm_start(const char *state_dir, const char *uuid, char dir[PATH_MAX],
		      char chardev[PATH_MAX + 64], char **qargv, int *nq)
{
	char tpmstate[PATH_MAX + 16], ctrl[PATH_MAX + 32], pidf[PATH_MAX + 16],
	     logf[PATH_MAX + 16], *err_out = NULL;
	const char *argv[] = { "swtpm", "socket", "--tpm2", "--tpmstate", tpmstate,
			       "--ctrl", ctrl, "--terminate", "--daemon", "--pid", pidf,
			       "--log", logf, NULL };
	mode_t old = umask(077);
	int status = 0, err;

	if (snprintf(dir, PATH_MAX, "%s/vtpm/%s", state_dir, uuid) >= PATH_MAX ||
	    strchr(uuid, '/')) {
		umask(old);
		return -EINVAL;
	}
	err = mkdir_p(dir, 0700);
	if (!err && chmod(dir, 0700))
		err = -errno;
	snprintf(tpmstate, sizeof(tpmstate), "dir=%s,mode=0600", dir);
	snprintf(ctrl, sizeof(ctrl), "type=unixio,path=%s/sock", dir);
	snprintf(pidf, sizeof(pidf), "file=%s/swtpm.pid", dir);
	snprintf(logf, sizeof(logf), "file=%s/swtpm.log", dir);
	if (!err)
		err = spawn_run(argv, NULL, 10000, NULL, 0, NULL, NULL, &err_out, &status);
	umask(old);
	if (err) {
		fprintf(stderr, PROG ": cannot start swtpm for the vTPM in %s: %s%s%s\n", dir,
			strerror(-err), err_out && *err_out ? ": " : "", err_out ? err_out : "");
		free(err_out);
		return err;
	}
	free(err_out);
	snprintf(chardev, PATH_MAX + 64, "socket,id=rayostpm,path=%s/sock", dir);
	qargv[(*nq)++] = "-chardev";
	qargv[(*nq)++] = chardev;
	qargv[(*nq)++] = "-tpmdev";
	qargv[(*nq)++] = "emulator,id=rayostpm0,chardev=rayostpm";
	qargv[(*nq)++] = "-device";
	qargv[(*nq)++] = "tpm-tis,tpmdev=rayostpm0";
	return 0;
}

/* Hex SHA-256 of the QEMU argv as exec'd: each argument followed by a NUL. */
static void argv_digest(char *const argv[], char hex[2 * SHA256_DIGEST_LEN + 1])
{
	uint8_t d[SHA256_DIGEST_LEN];
	struct sha256_ctx ctx;

	sha256_init(&ctx);
	for (; *argv; argv++)
		sha256_update(&ctx, *argv, strlen(*argv) + 1);
	if (sha256_final(&ctx, d))
		hex[0] = '\0';	/* out of memory: the launch record goes without it */
	else
		sha256_hex(d, hex);
}

static bool has_own_netdev(char *const argv[])
{
	for (; *argv; argv++)
		if (!strcmp(*argv, "-netdev") || !strcmp(*argv, "-nic") || !strcmp(*argv, "-net") ||
		    !strcmp(*argv, "--netdev") || !strcmp(*argv, "--nic") || !strcmp(*argv, "--net"))
			return true;
	return false;
}

/* "foo{tapfd}bar" -> "foo7bar"; a new string, or the original if no token. */
static char *subst_fd(char *arg, int fd)
{
	char *at = strstr(arg, TAP_FD_TOKEN), *out;

	if (!at)
		return arg;
	if (asprintf(&out, "%.*s%d%s", (int)(at - arg), arg, fd,
		     at + strlen(TAP_FD_TOKEN)) < 0)
		return NULL;
	return subst_fd(out, fd);
}

static const char *qemu_uuid(char *const argv[])
{
	for (; *argv; argv++)
		if ((!strcmp(*argv, "-uuid") || !strcmp(*argv, "--uuid")) && argv[1])
			return argv[1];
	return NULL;
}

/* The file execvp will run: what the launch measurement must hash, since
 * at registration this process is still rayos-qemu. */
static bool resolve_exe(const char *cmd, char out[PATH_MAX])
{
	const char *path = getenv("PATH");
	char buf[PATH_MAX];

	if (strchr(cmd, '/'))
		return realpath(cmd, out) != NULL;
	for (const char *p = path ? path : "/usr/bin:/bin"; *p;) {
		size_t n = strcspn(p, ":");

		if (snprintf(buf, sizeof(buf), "%.*s/%s", (int)n, p, cmd) < (int)sizeof(buf) &&
		    !access(buf, X_OK) && realpath(buf, out))
			return true;
		p += n + (p[n] == ':');
	}
	return false;
}

static double now_ms(void)
{
	return clock_ns(CLOCK_MONOTONIC) / 1e6;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "vm", required_argument, NULL, 'v' },
		{ "run-dir", required_argument, NULL, 'r' },
		{ "tap", required_argument, NULL, 't' },
		{ "no-net", no_argument, NULL, 'n' },
		{ "vtpm", no_argument, NULL, 'T' },
		{ "state-dir", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *run_dir = RAYOS_RUN_DIR_DEFAULT, *state_dir = RAYOS_STATE_DIR_DEFAULT;
	const char *tap = NULL, *uuid;
	char vtpm_dir[PATH_MAX] = "", chardev[PATH_MAX + 64], exe[PATH_MAX];
	bool vtpm = false;
	char sock[4096], hex[2 * SHA256_DIGEST_LEN + 1], fdarg[64], devarg[128];
	char **qargv = NULL, *end;
	struct vm_net net = { 0 };
	unsigned long long id = 0;
	bool no_net = false;
	int c, tap_fd = -1, ifindex = 0, master = 0, nq, err;
	cJSON *req, *reply;
	double t0 = now_ms();

	while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		switch (c) {
		case 'v':
			errno = 0;
			id = strtoull(optarg, &end, 10);
			if (errno || *end || !*optarg || optarg[0] == '-' || id < 1 || id > UINT32_MAX) {
				fprintf(stderr, PROG ": --vm \"%s\" is not a VM id (1..4294967295)\n",
					optarg);
				return 2;
			}
			break;
		case 'r':
			run_dir = optarg;
			break;
		case 't':
			tap = optarg;
			break;
		case 'n':
			no_net = true;
			break;
		case 'T':
			vtpm = true;
			break;
		case 's':
			state_dir = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!id || optind >= argc) {
		fprintf(stderr, PROG ": %s\n", !id ? "--vm ID is required" :
			"no QEMU command after --");
		usage(stderr);
		return 2;
	}
	nq = argc - optind;
	if ((size_t)snprintf(sock, sizeof(sock), "%s/%s", run_dir, CONTROL_SOCK_NAME) >= sizeof(sock)) {
		fprintf(stderr, PROG ": --run-dir is too long\n");
		return 2;
	}

	if (vm_info(sock, id, &net))
		return 1;
	if (!tap)
		tap = net.iface[0] ? net.iface : NULL;
	if (!tap) {
		snprintf(net.iface, sizeof(net.iface), "rt%llu", id);
		tap = net.iface;
	}
	if (strlen(tap) >= IFNAMSIZ || !tap[0] || strchr(tap, '/') || strchr(tap, ':')) {
		fprintf(stderr, PROG ": \"%s\" is not a usable interface name\n", tap);
		return 2;
	}

	/* Four extra arguments for our NIC, six for the vTPM, and the NULL. */
	qargv = calloc(nq + 11, sizeof(*qargv));
	if (!qargv)
		return 1;

	if (!no_net) {
		if (net.bridge[0]) {
			master = if_nametoindex(net.bridge);
			if (!master) {
				fprintf(stderr, PROG ": VM %llu: bridge %s (from the policy) does not "
					"exist; create it first (ip link add %s type bridge)\n",
					id, net.bridge, net.bridge);
				goto fail;
			}
		}
		tap_fd = tap_open(tap);
		if (tap_fd < 0)
			goto fail;
		ifindex = if_nametoindex(tap);
		err = ifindex ? link_set_master_up(ifindex, master) : -errno;
		if (err) {
			fprintf(stderr, PROG ": VM %llu: cannot put tap %s %s: %s\n", id, tap,
				master ? "on its bridge and up" : "up", strerror(-err));
			goto fail;
		}
	}

	for (int i = 0; i < nq; i++) {
		qargv[i] = tap_fd >= 0 ? subst_fd(argv[optind + i], tap_fd) : argv[optind + i];
		if (!qargv[i])
			goto fail;
	}
	if (tap_fd >= 0 && !has_own_netdev(qargv)) {
		snprintf(fdarg, sizeof(fdarg), "tap,id=rayos0,fd=%d", tap_fd);
		if (net.mac[0])
			snprintf(devarg, sizeof(devarg), "virtio-net-pci,netdev=rayos0,mac=%s", net.mac);
		else
			snprintf(devarg, sizeof(devarg), "virtio-net-pci,netdev=rayos0");
		qargv[nq++] = "-netdev";
		qargv[nq++] = fdarg;
		qargv[nq++] = "-device";
		qargv[nq++] = devarg;
	}
	if (vtpm) {
		qargv[nq] = NULL;
		uuid = qemu_uuid(qargv);
		if (!uuid) {
			fprintf(stderr, PROG ": --vtpm needs QEMU's -uuid: the vTPM state is kept "
				"per VM uuid\n");
			goto fail;
		}
		if (vtpm_start(state_dir, uuid, vtpm_dir, chardev, qargv, &nq))
			goto fail;
	}
	qargv[nq] = NULL;

	/* Register last: from here on the agent has moved us into the VM's cgroup. */
	req = request("vm.register", id);
	if (!no_net)
		cJSON_AddStringToObject(req, "interface", tap);
	cJSON_AddNumberToObject(req, "pid", getpid());
	uuid = qemu_uuid(qargv);
	if (uuid)
		cJSON_AddStringToObject(req, "uuid", uuid);
	argv_digest(qargv, hex);
	if (hex[0])
		cJSON_AddStringToObject(req, "argv_sha256", hex);
	if (resolve_exe(qargv[0], exe))
		cJSON_AddStringToObject(req, "exe", exe);
	if (vtpm_dir[0])
		cJSON_AddStringToObject(req, "vtpm", vtpm_dir);
	reply = agent_call(sock, req, id);
	if (!reply)
		goto fail;
	{
		const cJSON *cg = cJSON_GetObjectItemCaseSensitive(reply, "cgroup");

		fprintf(stderr, PROG ": VM %llu (%s) registered on %s%s%s, cgroup %s, in %.1f ms; "
			"exec %s\n", id, net.name[0] ? net.name : "?", no_net ? "no tap" : tap,
			master ? " bridge " : "", master ? net.bridge : "",
			cJSON_IsString(cg) ? cg->valuestring : "-", now_ms() - t0, qargv[0]);
	}
	cJSON_Delete(reply);

	if (tap_fd >= 0) {
		int fl = fcntl(tap_fd, F_GETFD);

		if (fl < 0 || fcntl(tap_fd, F_SETFD, fl & ~FD_CLOEXEC) < 0) {
			fprintf(stderr, PROG ": cannot pass the tap fd to QEMU: %s\n", strerror(errno));
			goto fail;
		}
	}
	fflush(NULL);
	execvp(qargv[0], qargv);
	fprintf(stderr, PROG ": cannot run %s: %s\n", qargv[0], strerror(errno));
	/* Registered: the agent unregisters VM and cgroup when we exit.  Asking
	 * it now would leave the cgroup behind, busy with this very process. */
fail:
	if (tap_fd >= 0)
		close(tap_fd);	/* non-persistent: the tap goes with it */
	return 1;
}
