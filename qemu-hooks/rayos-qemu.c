// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * rayos-qemu: launch QEMU as a RayOS VM, unprivileged and confined.
 *
 *   rayos-qemu --vm ID [--run-dir D] [--tap NAME] [--user U] -- qemu-system-x86_64 ARGS...
 *
 * Everything that needs root is done here, before QEMU runs: the VM's
 * settings and disk grants from the agent (vm.info), the tap (name from
 * --tap, else the policy's "interface", else rt<ID>) on the policy's bridge,
 * the vTPM connection, the disk images the policy grants opened in the
 * granted mode, registration with the agent giving this process's pid (the
 * agent moves it into the VM's cgroup under the device program before it
 * replies), a cgroup namespace rooted there, an empty network namespace and
 * a private IPC one.  Then the process becomes the QEMU user (its own uid
 * per VM when the user has a subordinate range; see agent/qemu/qemu_user.h) with
 * no capabilities, an empty bounding set and no-new-privs, installs RayOS's
 * seccomp filter (agent/qemu/qemu_seccomp.h: no bpf(), no tap reconfiguration),
 * and execs QEMU with the fds open.  QEMU and every thread and child it starts are in the
 * cgroup from their first instruction; the agent watches the pid and
 * unregisters the VM when QEMU exits.  Nothing survives a failure: the tap
 * is non-persistent (it goes away with the last fd) and after a failure past
 * registration the agent unregisters the VM when this process exits.
 *
 * QEMU never sees an image path it could open itself: each mention of a
 * granted image's path in ARGS becomes /dev/fdset/N, with -add-fd for a
 * read-only fd and, when writing is granted, a read-write one; a -drive of
 * a read-only image gets readonly=on.  The QEMU user must have no access to
 * the image files (root-owned, 0600): rayos-qemu checks, and refuses an
 * image that user could open or swap.  Without a -sandbox of its own the
 * command line gets -sandbox QEMU_SANDBOX_DEFAULT (agent/qemu/qemu_argv.h).
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
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/close_range.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "agent/control/control.h"
#include "agent/core/digest.h"
#include "agent/core/nl.h"
#include "agent/core/paths.h"
#include "agent/core/spawn.h"
#include "agent/core/util.h"
#include "agent/qemu/qemu_argv.h"
#include "agent/qemu/qemu_seccomp.h"
#include "agent/qemu/qemu_user.h"

#define PROG		"rayos-qemu"
#define CALL_TIMEOUT_MS	10000
#define TAP_FD_TOKEN	"{tapfd}"
#define MAX_DISKS	64
#define FDSET_BASE	1000	/* our fd sets; above any a command line uses */
#define UID_LOCK_NAME	"qemu-uid.lock"
#define QEMU_MAX_TASKS	4096	/* RLIMIT_NPROC of a VM's own uid: QEMU has
				 * a few threads per vCPU and I/O thread */

#ifndef RAYOS_QEMU_USER
#define RAYOS_QEMU_USER	QEMU_USER_DEFAULT
#endif

/* A disk of the policy, as vm.info gives it: what this VM may do to it now
 * (the policy's mode and the VM's CAP_DISK_READ/CAP_DISK_WRITE). */
struct vm_disk {
	char path[PATH_MAX];
	bool block;
	bool read, write;
};

struct vm_net {
	char name[64];
	char iface[IFNAMSIZ];
	char bridge[IFNAMSIZ];
	char mac[18];
	size_t nr_disks;
	struct vm_disk disks[MAX_DISKS];
};

static void usage(FILE *f)
{
	fprintf(f,
"usage: " PROG " --vm ID [--run-dir D] [--tap NAME] [--no-net] [--user U] [--host-net]\n"
"                  [--vtpm [--state-dir D]] -- QEMU [ARGS...]\n"
"\n"
"Registers VM ID with rayos-agent, creates its tap on the policy's bridge,\n"
"opens the disk images the policy grants, and execs QEMU inside the VM's\n"
"cgroup as an unprivileged user with no capabilities.  The agent\n"
"unregisters the VM when QEMU exits.\n"
"  --vm ID       the VM's id in the applied policy\n"
"  --run-dir D   the agent's run directory (default %s)\n"
"  --tap NAME    tap name (default: the policy's \"interface\", else rt<ID>)\n"
"  --no-net      no tap: register the VM for its cgroup and devices only\n"
"  --user U      run QEMU as user U (default %s); with a range in\n"
"                /etc/subuid each VM gets its own uid of that range\n"
"  --host-net    keep the host's network namespace (QEMU's own sockets:\n"
"                VNC, migration, -netdev user); default: an empty one\n"
"  --vtpm        give the guest its own swtpm (state in STATE/vtpm/<-uuid>,\n"
"                0700/0600; it ends with QEMU); needs QEMU's -uuid\n"
"  --state-dir D where vTPM state lives (default %s)\n"
"The text " TAP_FD_TOKEN " in ARGS becomes the tap's fd number; without a\n"
"-netdev/-nic/-net of their own, ARGS get a virtio-net NIC on the tap with\n"
"the policy's MAC.  Granted disk image paths in ARGS become /dev/fdset/N;\n"
"without a -sandbox of their own, ARGS get -sandbox %s.\n",
		RAYOS_RUN_DIR_DEFAULT, RAYOS_QEMU_USER, RAYOS_STATE_DIR_DEFAULT,
		QEMU_SANDBOX_DEFAULT);
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
	const cJSON *d;

	if (!r)
		return -1;
	copy_str(net->name, sizeof(net->name), r, "name");
	copy_str(net->iface, sizeof(net->iface), r, "interface");
	copy_str(net->bridge, sizeof(net->bridge), r, "bridge");
	copy_str(net->mac, sizeof(net->mac), r, "mac");
	cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(r, "disks")) {
		struct vm_disk *vd = &net->disks[net->nr_disks];
		char access[4];

		if (net->nr_disks == MAX_DISKS) {
			fprintf(stderr, PROG ": VM %u has more than %d disks\n", vm_id, MAX_DISKS);
			cJSON_Delete(r);
			return -1;
		}
		copy_str(vd->path, sizeof(vd->path), d, "path");
		copy_str(access, sizeof(access), d, "access");
		vd->block = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(d, "block"));
		vd->read = strchr(access, 'r') != NULL;
		vd->write = strchr(access, 'w') != NULL;
		if (vd->path[0] == '/')
			net->nr_disks++;
	}
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

/* A connection to swtpm's control socket, made as root: the socket stays in
 * the root-only state directory and QEMU gets the connected fd. */
static int vtpm_connect(const char *dir)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timespec ts = { 0, 20 * 1000 * 1000 };
	int fd, err = 0;

	if (snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/sock", dir) >=
	    (int)sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	for (int i = 0; i < 100; i++) {
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -errno;
		if (!connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
			return fd;
		err = -errno;
		close(fd);
		if (err != -ENOENT && err != -ECONNREFUSED)
			break;
		nanosleep(&ts, NULL);	/* swtpm --daemon may still be starting */
	}
	return err;
}

/*
 * --vtpm: one swtpm per VM, its state in <state>/vtpm/<uuid> (directory
 * 0700, files 0600), on a unix socket that this process connects to and
 * hands to QEMU.  swtpm --terminate ends when that connection closes, so
 * the vTPM lives exactly as long as the guest.  Appends QEMU's
 * -chardev/-tpmdev/-device arguments; *fd is the connection.
 */
static int vtpm_start(const char *state_dir, const char *uuid, char dir[PATH_MAX],
		      char chardev[64], char **qargv, int *nq, int *fd)
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
	*fd = vtpm_connect(dir);
	if (*fd < 0) {
		fprintf(stderr, PROG ": cannot connect to the vTPM in %s: %s\n", dir,
			strerror(-*fd));
		return *fd;
	}
	snprintf(chardev, 64, "socket,id=rayostpm,fd=%d", *fd);
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
	return qargv_has_opt(argv, "-netdev") || qargv_has_opt(argv, "-nic") ||
	       qargv_has_opt(argv, "-net");
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

/* ---- disks ------------------------------------------------------------------ */

/*
 * The grant holds only if QEMU cannot reach the image by itself: its uid
 * must be unable to open the file (another VM's QEMU would be too) and to
 * replace it in its directory (rayos-qemu would then open whatever was put
 * there, as root).
 */
static int disk_check(const struct qemu_user *u, uid_t uid, const struct vm_disk *d)
{
	int acc = qemu_user_access(u, uid, d->path);

	if (acc < 0) {
		fprintf(stderr, PROG ": cannot check who may open disk %s: %s\n", d->path,
			strerror(-acc));
		return acc;
	}
	if (acc & (QEMU_ACC_READ | QEMU_ACC_WRITE)) {
		fprintf(stderr, PROG ": disk %s can be opened for %s by uid %u (QEMU's user "
			"%s): the grant would not bind QEMU and other VMs could open it too; "
			"make it root-only (chown root:root, chmod 0600)\n", d->path,
			acc & QEMU_ACC_WRITE ? "writing" : "reading", (unsigned int)uid, u->name);
		return -EACCES;
	}
	if (acc & QEMU_ACC_DIR_WRITE) {
		fprintf(stderr, PROG ": a directory on the way to disk %s is writable by uid %u "
			"(QEMU's user %s): QEMU could swap the image for another file; make the "
			"directories root-owned and not writable by others\n", d->path,
			(unsigned int)uid, u->name);
		return -EACCES;
	}
	return 0;
}

/* A placeholder fd (/dev/null) that fixes the number the real file gets
 * after registration, so the argv measured at registration is the argv
 * QEMU runs with. */
static int fd_reserve(void)
{
	return open("/dev/null", O_RDONLY | O_CLOEXEC);
}

/*
 * Open a granted disk for real into its reserved fd number.  Done after
 * registration, inside the VM's cgroup: opening a block device passes the
 * VM's device policy.  No symlink is followed at the last component (a
 * link to another file would be opened with root's rights).
 */
static int disk_open_into(const struct vm_disk *d, int flags, int slot)
{
	struct stat st;
	int fd, err;

	fd = open(d->path, flags | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		err = -errno;
		fprintf(stderr, PROG ": cannot open disk %s for %s: %s%s\n", d->path,
			(flags & O_ACCMODE) == O_RDWR ? "reading and writing" : "reading",
			strerror(-err), err == -ELOOP ? " (a symlink: give the policy the "
			"image's real path)" : "");
		return err;
	}
	if (fstat(fd, &st) || (d->block ? !S_ISBLK(st.st_mode) : !S_ISREG(st.st_mode))) {
		fprintf(stderr, PROG ": disk %s is not a %s\n", d->path,
			d->block ? "block device" : "regular file");
		close(fd);
		return -EINVAL;
	}
	if (dup3(fd, slot, O_CLOEXEC) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	close(fd);
	return 0;
}

/* The highest set=N among the command line's own -add-fd. */
static int max_user_fdset(char *const argv[])
{
	int max = -1;

	for (; *argv; argv++) {
		const char *s;

		if ((strcmp(*argv, "-add-fd") && strcmp(*argv, "--add-fd")) || !argv[1])
			continue;
		s = strstr(argv[1], "set=");
		if (s && atoi(s + 4) > max)
			max = atoi(s + 4);
	}
	return max;
}

static int clear_cloexec(int fd)
{
	int fl = fcntl(fd, F_GETFD);

	return fl < 0 || fcntl(fd, F_SETFD, fl & ~FD_CLOEXEC) < 0 ? -errno : 0;
}

/*
 * QEMU's environment: what locale, time zone and terminal need, PATH to
 * find it, and who it is; nothing else of the root caller's (tokens,
 * agent sockets, library paths) reaches it.
 */
static int scrub_env(const char *user)
{
	static const char *const keep[] = { "PATH", "LANG", "LANGUAGE", "TZ", "TERM" };
	const char *vals[sizeof(keep) / sizeof(keep[0])];
	char *lc[32];
	size_t nlc = 0;

	for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++)
		vals[i] = getenv(keep[i]) ? strdup(getenv(keep[i])) : NULL;
	for (char **e = environ; *e && nlc < 32; e++)
		if (!strncmp(*e, "LC_", 3))
			lc[nlc++] = strdup(*e);
	if (clearenv())
		return -ENOMEM;
	for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++)
		if (vals[i] && setenv(keep[i], vals[i], 1))
			return -errno;
	for (size_t i = 0; i < nlc; i++)
		if (lc[i] && putenv(lc[i]))
			return -errno;
	if (setenv("USER", user, 1) || setenv("LOGNAME", user, 1) || setenv("HOME", "/", 1))
		return -errno;
	return 0;
}

/*
 * QEMU inherits stdin, stdout, stderr and the fds its command line names
 * (fd=N: our tap, disks and vTPM, or the caller's own), nothing else: an fd
 * the caller happened to leave open (a root-only file, a socket) must not
 * reach the unprivileged process.
 */
static int pass_only_named_fds(char *const qargv[])
{
	int fds[256];
	size_t n = qargv_fds(qargv, fds, sizeof(fds) / sizeof(fds[0]));
	int rc;

	if (n > sizeof(fds) / sizeof(fds[0]))
		return -E2BIG;
	if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC))
		return -errno;
	for (size_t i = 0; i < n; i++) {
		rc = clear_cloexec(fds[i]);
		if (rc) {
			fprintf(stderr, PROG ": the command line passes fd %d, which is not "
				"open: %s\n", fds[i], strerror(-rc));
			return rc;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "vm", required_argument, NULL, 'v' },
		{ "run-dir", required_argument, NULL, 'r' },
		{ "tap", required_argument, NULL, 't' },
		{ "no-net", no_argument, NULL, 'n' },
		{ "user", required_argument, NULL, 'u' },
		{ "host-net", no_argument, NULL, 'H' },
		{ "vtpm", no_argument, NULL, 'T' },
		{ "state-dir", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *run_dir = RAYOS_RUN_DIR_DEFAULT, *state_dir = RAYOS_STATE_DIR_DEFAULT;
	const char *tap = NULL, *uuid, *user_name = RAYOS_QEMU_USER;
	char vtpm_dir[PATH_MAX] = "", chardev[64], exe[PATH_MAX], lock_path[PATH_MAX];
	char sock[4096], hex[2 * SHA256_DIGEST_LEN + 1], fdarg[64], devarg[128], err[512];
	char **qargv = NULL, *end, *sub;
	static struct vm_net net;
	struct qemu_disk_fd dfd[MAX_DISKS];
	struct vm_disk *granted[MAX_DISKS];
	struct qemu_user user;
	unsigned long long id = 0;
	bool no_net = false, vtpm = false, host_net = false, own_sandbox;
	int c, tap_fd = -1, vtpm_fd = -1, lock_fd = -1, ifindex = 0, master = 0, nq, rc;
	size_t nr_granted = 0;
	uid_t uid;
	cJSON *req, *reply, *conf;
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
		case 'u':
			user_name = optarg;
			break;
		case 'H':
			host_net = true;
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
	if (geteuid()) {
		fprintf(stderr, PROG ": must run as root: it creates the tap and opens the "
			"disks, then runs QEMU as user %s\n", user_name);
		return 2;
	}
	nq = argc - optind;
	if ((size_t)snprintf(sock, sizeof(sock), "%s/%s", run_dir, CONTROL_SOCK_NAME) >= sizeof(sock) ||
	    (size_t)snprintf(lock_path, sizeof(lock_path), "%s/%s", run_dir, UID_LOCK_NAME) >=
	    sizeof(lock_path)) {
		fprintf(stderr, PROG ": --run-dir is too long\n");
		return 2;
	}
	if (qemu_user_lookup(user_name, &user, err, sizeof(err))) {
		fprintf(stderr, PROG ": %s\n", err);
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

	/* QEMU's uid: its own per VM when the user has a range.  The lock is
	 * held until exec, when this process runs as that uid. */
	if (qemu_user_pick_uid(&user, id, lock_path, &uid, &lock_fd, err, sizeof(err))) {
		fprintf(stderr, PROG ": VM %llu: %s\n", id, err);
		return 1;
	}
	if (!user.sub_count)
		fprintf(stderr, PROG ": warning: user %s has no range in /etc/subuid: every VM's "
			"QEMU runs as uid %u and one could trace or signal another "
			"(qemu-hooks/rayos-qemu-user.sh adds a range)\n", user.name,
			(unsigned int)user.uid);

	/* Disks: what the grant allows, checked before anything is made. */
	memset(dfd, 0, sizeof(dfd));
	for (size_t i = 0; i < net.nr_disks; i++) {
		struct vm_disk *d = &net.disks[i];

		if (!d->read) {
			fprintf(stderr, PROG ": VM %llu: disk %s is not given to QEMU: the VM has "
				"no CAP_DISK_READ\n", id, d->path);
			continue;
		}
		if (disk_check(&user, uid, d))
			return 1;
		granted[nr_granted] = d;
		dfd[nr_granted].path = d->path;
		dfd[nr_granted].writable = d->write;
		dfd[nr_granted].fd_ro = fd_reserve();
		dfd[nr_granted].fd_rw = d->write ? fd_reserve() : -1;
		if (dfd[nr_granted].fd_ro < 0 || (d->write && dfd[nr_granted].fd_rw < 0)) {
			fprintf(stderr, PROG ": cannot reserve fds: %s\n", strerror(errno));
			return 1;
		}
		nr_granted++;
	}

	/* Extra arguments: 4 for our NIC, 6 for the vTPM, 2 for -sandbox,
	 * 4 per disk (two -add-fd), and the NULL. */
	qargv = calloc(nq + 13 + 4 * nr_granted, sizeof(*qargv));
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
		rc = ifindex ? link_set_master_up(ifindex, master) : -errno;
		if (rc) {
			fprintf(stderr, PROG ": VM %llu: cannot put tap %s %s: %s\n", id, tap,
				master ? "on its bridge and up" : "up", strerror(-rc));
			goto fail;
		}
	}

	{
		int base = max_user_fdset(argv + optind) + 1;

		if (base < FDSET_BASE)
			base = FDSET_BASE;
		for (size_t i = 0; i < nr_granted; i++)
			dfd[i].set = base + (int)i;
	}
	for (int i = 0; i < nq; i++) {
		char *a = tap_fd >= 0 ? subst_fd(argv[optind + i], tap_fd) : argv[optind + i];

		if (!a)
			goto fail;
		if (qargv_subst_disks(i ? qargv[i - 1] : NULL, a, dfd, nr_granted, &sub, err,
				      sizeof(err))) {
			fprintf(stderr, PROG ": VM %llu: %s\n", id, err[0] ? err : "out of memory");
			goto fail;
		}
		qargv[i] = sub ? sub : a;
	}
	own_sandbox = qargv_has_opt(qargv, "-sandbox");
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
	for (size_t i = 0; i < nr_granted; i++) {
		for (int k = 0; k < 2; k++) {
			int fd = k ? dfd[i].fd_rw : dfd[i].fd_ro;

			if (fd < 0)
				continue;
			if (asprintf(&sub, "fd=%d,set=%d,opaque=%s", fd, dfd[i].set,
				     k ? "rw" : "ro") < 0)
				goto fail;
			qargv[nq++] = "-add-fd";
			qargv[nq++] = sub;
		}
		if (!dfd[i].used)
			fprintf(stderr, PROG ": VM %llu: disk %s is not on the QEMU command line; "
				"it is there as /dev/fdset/%d\n", id, dfd[i].path, dfd[i].set);
	}
	if (!own_sandbox) {
		qargv[nq++] = "-sandbox";
		qargv[nq++] = QEMU_SANDBOX_DEFAULT;
	}
	if (vtpm) {
		qargv[nq] = NULL;
		uuid = qemu_uuid(qargv);
		if (!uuid) {
			fprintf(stderr, PROG ": --vtpm needs QEMU's -uuid: the vTPM state is kept "
				"per VM uuid\n");
			goto fail;
		}
		if (vtpm_start(state_dir, uuid, vtpm_dir, chardev, qargv, &nq, &vtpm_fd))
			goto fail;
	}
	qargv[nq] = NULL;

	/* An empty network namespace: QEMU reaches the network only through
	 * its tap fd, never with sockets of its own; and no System V IPC
	 * shared with the host.  The control socket is a path: still there. */
	if (unshare(CLONE_NEWIPC | (host_net ? 0 : CLONE_NEWNET))) {
		fprintf(stderr, PROG ": cannot make QEMU's network and IPC namespaces: %s\n",
			strerror(errno));
		goto fail;
	}
	if (access("/proc/self/ns/cgroup", F_OK)) {
		fprintf(stderr, PROG ": this kernel has no cgroup namespaces: QEMU would see "
			"the whole cgroup tree\n");
		goto fail;
	}

	/* Register: from here on the agent has moved us into the VM's cgroup. */
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
	/* What this process does between the reply and exec (status shows it). */
	conf = cJSON_AddObjectToObject(req, "confinement");
	cJSON_AddStringToObject(conf, "launcher", PROG);
	cJSON_AddStringToObject(conf, "user", user.name);
	cJSON_AddNumberToObject(conf, "uid", uid);
	cJSON_AddNumberToObject(conf, "gid", user.gid);
	cJSON_AddBoolToObject(conf, "uid_per_vm", user.sub_count != 0);
	cJSON_AddBoolToObject(conf, "cgroup_ns", 1);
	cJSON_AddBoolToObject(conf, "net_ns", !host_net);
	cJSON_AddBoolToObject(conf, "sandbox", !own_sandbox);
	cJSON_AddNumberToObject(conf, "disk_fds", (double)nr_granted);
	reply = agent_call(sock, req, id);
	if (!reply)
		goto fail;
	{
		const cJSON *cg = cJSON_GetObjectItemCaseSensitive(reply, "cgroup");

		fprintf(stderr, PROG ": VM %llu (%s) registered on %s%s%s, cgroup %s, in %.1f ms; "
			"exec %s as uid %u (%s)\n", id, net.name[0] ? net.name : "?",
			no_net ? "no tap" : tap, master ? " bridge " : "", master ? net.bridge : "",
			cJSON_IsString(cg) ? cg->valuestring : "-", now_ms() - t0, qargv[0],
			(unsigned int)uid, user.name);
	}
	cJSON_Delete(reply);

	for (size_t i = 0; i < nr_granted; i++) {
		if (disk_open_into(granted[i], O_RDONLY, dfd[i].fd_ro) ||
		    (dfd[i].fd_rw >= 0 && disk_open_into(granted[i], O_RDWR, dfd[i].fd_rw)))
			goto fail;
	}
	/* QEMU's cgroup tree starts at its VM's cgroup. */
	if (unshare(CLONE_NEWCGROUP)) {
		fprintf(stderr, PROG ": cannot make QEMU's cgroup namespace: %s\n",
			strerror(errno));
		goto fail;
	}
	/* The tap, vTPM and disk fds are named on the command line (fd=N). */
	rc = pass_only_named_fds(qargv);
	if (rc) {
		fprintf(stderr, PROG ": cannot pass fds to QEMU: %s\n", strerror(-rc));
		goto fail;
	}
	/* No core dumps (they hold guest memory); with a uid of its own, a
	 * bound on its processes and threads, so a QEMU that forks cannot take
	 * the host's pids with it. */
	{
		struct rlimit none = { 0, 0 }, tasks = { QEMU_MAX_TASKS, QEMU_MAX_TASKS };

		if (setrlimit(RLIMIT_CORE, &none) ||
		    (user.sub_count && setrlimit(RLIMIT_NPROC, &tasks))) {
			fprintf(stderr, PROG ": cannot set QEMU's limits: %s\n", strerror(errno));
			goto fail;
		}
	}
	rc = scrub_env(user.name);
	if (rc) {
		fprintf(stderr, PROG ": cannot set QEMU's environment: %s\n", strerror(-rc));
		goto fail;
	}
	if (qemu_user_drop(&user, uid, err, sizeof(err)) ||
	    qemu_seccomp_install(err, sizeof(err))) {
		fprintf(stderr, PROG ": VM %llu: %s\n", id, err);
		goto fail;
	}
	fflush(NULL);
	execvp(qargv[0], qargv);
	fprintf(stderr, PROG ": cannot run %s as uid %u: %s\n", qargv[0], (unsigned int)uid,
		strerror(errno));
	/* Registered: the agent unregisters VM and cgroup when we exit.  Asking
	 * it now would leave the cgroup behind, busy with this very process. */
fail:
	if (tap_fd >= 0)
		close(tap_fd);	/* non-persistent: the tap goes with it */
	if (lock_fd >= 0)
		close(lock_fd);
	return 1;
}
