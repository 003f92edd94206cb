// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * A compromised QEMU, for tests: launched exactly as QEMU would be (through
 * rayos-qemu, or by a libvirt-like launcher), it tries every way out of its
 * confinement that a guest who took over QEMU would, and prints one line
 * per attempt:
 *   ESCAPE <name> refused <ERRNO> <what was tried>
 *   ESCAPE <name> SUCCEEDED <what was tried>
 *   CONTROL <name> ok|FAILED <what>     (things it must still be able to do,
 *                                       so a refusal is not an accident)
 *   SKIP <name> <reason>                (nothing given to try it on)
 *   INFO <what>
 * then "DONE" and, with --hold S, sleeps S seconds holding its fds.
 *
 * Its own options come first; everything else is the QEMU command line
 * rayos-qemu built, read for the fds it was given: -add-fd fd=N,set=S,
 * opaque=ro|rw (disk images) and -netdev tap,...,fd=N.
 *   --dev-denied P   a device node the policy denies (tried before and after
 *                    the escapes, and from a user namespace)
 *   --dev-allowed P  one it allows (mknod'ed for an absent driver: ENXIO)
 *   --cgroup-root P  the cgroup2 mount;  --own-cgroup P  the VM's cgroup
 *   --other-cgroup P another cgroup to move into (another VM's, the parent)
 *   --control P      the agent's control socket
 *   --pin P          a pinned BPF object;  --map-id/--prog-id/--link-id N
 *   --image P        the path of a read-only image it was given (as an fd)
 *   --ungranted P    an image of another VM
 *   --other-pid N [--other-fd N]  another VM's QEMU (and a disk fd of it)
 *   --agent-pid N    the agent;  --host-port N  a TCP port on 127.0.0.1
 *   --tmp D          a directory it may write (links, mount points)
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/bpf.h>
#include <net/if.h>
#include <linux/if_tun.h>
#include <linux/sched.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

struct opts {
	const char *dev_denied, *dev_allowed, *cg_root, *own_cg, *other_cg, *control, *pin,
		   *image, *ungranted, *tmp;
	unsigned int map_id, prog_id, link_id;
	int other_pid, other_fd, agent_pid, host_port, hold;
};

struct given {
	int ro_fd, rw_fd, tap_fd;	/* -1: none */
	int ro_only_fd;			/* an fd of a set that has no rw fd */
};

static void escape(const char *name, int rc_errno, const char *what)
{
	if (rc_errno)
		printf("ESCAPE %s refused %s %s\n", name, strerrorname_np(rc_errno) ?: "?", what);
	else
		printf("ESCAPE %s SUCCEEDED %s\n", name, what);
	fflush(stdout);
}

static void control(const char *name, bool ok, const char *what)
{
	printf("CONTROL %s %s %s\n", name, ok ? "ok" : "FAILED", what);
	fflush(stdout);
}

static void skip(const char *name, const char *why)
{
	printf("SKIP %s %s\n", name, why);
	fflush(stdout);
}

/* 0 when the call worked, else its errno. */
#define TRY(expr) ((expr) < 0 ? errno : 0)

static long sys_bpf(int cmd, union bpf_attr *attr)
{
	return syscall(SYS_bpf, cmd, attr, sizeof(*attr));
}

static int open_close(const char *path, int flags)
{
	int fd = open(path, flags | O_CLOEXEC);

	if (fd < 0)
		return errno;
	close(fd);
	return 0;
}

static int write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC), err = 0;

	if (fd < 0)
		return errno;
	if (write(fd, text, strlen(text)) < 0)
		err = errno;
	close(fd);
	return err;
}

static void identity(void)
{
	char line[256];
	FILE *f = fopen("/proc/self/status", "re");

	while (f && fgets(line, sizeof(line), f)) {
		if (!strncmp(line, "Uid:", 4) || !strncmp(line, "Gid:", 4) ||
		    !strncmp(line, "Cap", 3) || !strncmp(line, "NoNewPrivs", 10) ||
		    !strncmp(line, "Seccomp:", 8)) {
			line[strcspn(line, "\n")] = '\0';
			for (char *p = line; *p; p++)
				if (*p == '\t')
					*p = ' ';
			printf("INFO %s\n", line);
		}
	}
	if (f)
		fclose(f);
	f = fopen("/proc/self/cgroup", "re");
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "0::", 3))
			printf("INFO cgroup %s", line + 3);
	if (f)
		fclose(f);
}

static void devices(const struct opts *o, const char *when)
{
	char name[64], what[512];

	if (!o->dev_denied) {
		skip("dev", "no --dev-denied");
		return;
	}
	snprintf(name, sizeof(name), "dev-open-%s", when);
	snprintf(what, sizeof(what), "open(%s, O_RDWR)", o->dev_denied);
	escape(name, open_close(o->dev_denied, O_RDWR), what);
	snprintf(name, sizeof(name), "dev-open-ro-%s", when);
	snprintf(what, sizeof(what), "open(%s, O_RDONLY)", o->dev_denied);
	escape(name, open_close(o->dev_denied, O_RDONLY), what);
	if (o->dev_allowed) {
		int e = open_close(o->dev_allowed, O_RDWR);

		snprintf(what, sizeof(what), "open(%s) passes the cgroup (%s)", o->dev_allowed,
			 e ? strerrorname_np(e) : "opened");
		snprintf(name, sizeof(name), "dev-allowed-%s", when);
		control(name, e != EPERM && e != EACCES, what);
	}
}

static void cgroups(const struct opts *o)
{
	char path[4096], what[4200], pid[24];
	int fd;

	snprintf(pid, sizeof(pid), "%d", getpid());
	if (!o->cg_root) {
		skip("cgroup", "no --cgroup-root");
		return;
	}
	snprintf(path, sizeof(path), "%s/cgroup.procs", o->cg_root);
	snprintf(what, sizeof(what), "write own pid to %s", path);
	escape("cgroup-move-root", write_file(path, pid), what);
	snprintf(path, sizeof(path), "%s/cgroup.threads", o->cg_root);
	snprintf(what, sizeof(what), "write own tid to %s", path);
	escape("cgroup-move-root-thread", write_file(path, pid), what);
	if (o->other_cg) {
		snprintf(path, sizeof(path), "%s/cgroup.procs", o->other_cg);
		snprintf(what, sizeof(what), "write own pid to %s", path);
		escape("cgroup-move-other", write_file(path, pid), what);
	}
	if (o->own_cg) {
		snprintf(path, sizeof(path), "%s/escape.%d", o->own_cg, getpid());
		snprintf(what, sizeof(what), "mkdir %s", path);
		escape("cgroup-mkdir", TRY(mkdir(path, 0755)), what);
		if (!access(path, F_OK))
			rmdir(path);
	}
	/* clone3(CLONE_INTO_CGROUP): a child born in the root cgroup. */
	fd = open(o->cg_root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		escape("cgroup-clone-into", errno, "open the root cgroup for CLONE_INTO_CGROUP");
	} else {
		struct clone_args ca = { .flags = CLONE_INTO_CGROUP, .exit_signal = SIGCHLD,
					 .cgroup = (unsigned long long)fd };
		long child = syscall(SYS_clone3, &ca, sizeof(ca));

		if (child == 0)
			_exit(0);
		if (child > 0)
			waitpid((pid_t)child, NULL, 0);
		escape("cgroup-clone-into", child < 0 ? errno : 0,
		       "clone3(CLONE_INTO_CGROUP) into the root cgroup");
		close(fd);
	}
}

/* In a child: a user namespace (full capabilities there), a mount and a
 * cgroup namespace, cgroup2 mounted fresh; then the moves, the device and
 * bpf() again.  Whatever that namespace root is, it is not the host's. */
static void userns(const struct opts *o)
{
	int pipefd[2], status;
	char line[512];
	bool saw = false;
	pid_t pid;
	FILE *f;

	if (!o->tmp || pipe(pipefd)) {
		skip("userns", "no --tmp");
		return;
	}
	pid = fork();
	if (pid == 0) {
		char mnt[4096], file[4200], what[4300];
		union bpf_attr attr = {};
		FILE *out = fdopen(pipefd[1], "w");

		close(pipefd[0]);
		/* Making the namespaces is not an escape in itself (QEMU's
		 * -sandbox spawn=deny forbids it; this stand-in has no filter):
		 * what it gives must be. */
		if (unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWCGROUP)) {
			fprintf(out, "userns-unshare %d create a user namespace\n", errno);
			_exit(0);
		}
		snprintf(mnt, sizeof(mnt), "%s/cg.%d", o->tmp, getpid());
		if (mkdir(mnt, 0700) && errno != EEXIST) {
			fprintf(out, "userns-mount %d mkdir %s\n", errno, mnt);
		} else if (mount("none", mnt, "cgroup2", 0, NULL)) {
			fprintf(out, "userns-mount %d mount cgroup2 in the user namespace\n", errno);
		} else {
			snprintf(file, sizeof(file), "%s/cgroup.procs", mnt);
			snprintf(what, sizeof(what), "write own pid to cgroup.procs of a cgroup2 "
				 "mounted in the user namespace");
			fprintf(out, "userns-cgroup-move %d %s\n", write_file(file, "0"), what);
			umount2(mnt, MNT_DETACH);
		}
		rmdir(mnt);
		if (o->cg_root) {
			snprintf(file, sizeof(file), "%s/cgroup.procs", o->cg_root);
			fprintf(out, "userns-cgroup-move-root %d write own pid to %s with "
				"user-namespace capabilities\n", write_file(file, "0"), file);
		}
		if (o->dev_denied)
			fprintf(out, "userns-dev-open %d open(%s) with user-namespace "
				"capabilities\n", open_close(o->dev_denied, O_RDWR), o->dev_denied);
		fprintf(out, "userns-bpf-prog-list %d bpf(BPF_PROG_GET_NEXT_ID) with "
			"user-namespace capabilities\n",
			(int)(sys_bpf(BPF_PROG_GET_NEXT_ID, &attr) < 0 ? errno : 0));
		fclose(out);
		_exit(0);
	}
	close(pipefd[1]);
	f = fdopen(pipefd[0], "r");
	while (f && fgets(line, sizeof(line), f)) {
		char name[64];
		int e, n = 0;

		if (sscanf(line, "%63s %d %n", name, &e, &n) < 2)
			continue;
		line[strcspn(line, "\n")] = '\0';
		escape(name, e, line + n);
		if (!strcmp(name, "userns-unshare"))
			skip("userns", "no user namespace: nothing to try with its capabilities");
		saw = true;
	}
	if (f)
		fclose(f);
	waitpid(pid, &status, 0);
	if (!saw)
		skip("userns", "the child reported nothing");
}

static void bpf_attempts(const struct opts *o)
{
	union bpf_attr attr;
	char what[4200];
	int fd, e;

	memset(&attr, 0, sizeof(attr));
	escape("bpf-prog-list", TRY(sys_bpf(BPF_PROG_GET_NEXT_ID, &attr)),
	       "bpf(BPF_PROG_GET_NEXT_ID)");
	memset(&attr, 0, sizeof(attr));
	escape("bpf-map-list", TRY(sys_bpf(BPF_MAP_GET_NEXT_ID, &attr)),
	       "bpf(BPF_MAP_GET_NEXT_ID)");
	memset(&attr, 0, sizeof(attr));
	escape("bpf-link-list", TRY(sys_bpf(BPF_LINK_GET_NEXT_ID, &attr)),
	       "bpf(BPF_LINK_GET_NEXT_ID)");
	if (o->pin) {
		memset(&attr, 0, sizeof(attr));
		attr.pathname = (unsigned long)o->pin;
		fd = (int)sys_bpf(BPF_OBJ_GET, &attr);
		snprintf(what, sizeof(what), "bpf(BPF_OBJ_GET, %s)", o->pin);
		escape("bpf-obj-get", fd < 0 ? errno : 0, what);
		if (fd >= 0)
			close(fd);
	}
	if (o->prog_id) {
		memset(&attr, 0, sizeof(attr));
		attr.prog_id = o->prog_id;
		fd = (int)sys_bpf(BPF_PROG_GET_FD_BY_ID, &attr);
		snprintf(what, sizeof(what), "bpf(BPF_PROG_GET_FD_BY_ID, %u)", o->prog_id);
		escape("bpf-prog-by-id", fd < 0 ? errno : 0, what);
		if (fd >= 0)
			close(fd);
	}
	if (o->link_id) {
		memset(&attr, 0, sizeof(attr));
		attr.link_id = o->link_id;
		fd = (int)sys_bpf(BPF_LINK_GET_FD_BY_ID, &attr);
		e = fd < 0 ? errno : 0;
		if (fd >= 0) {
			memset(&attr, 0, sizeof(attr));
			attr.link_detach.link_fd = fd;
			e = TRY(sys_bpf(BPF_LINK_DETACH, &attr));
			close(fd);
		}
		snprintf(what, sizeof(what), "bpf(BPF_LINK_GET_FD_BY_ID, %u) and "
			 "BPF_LINK_DETACH", o->link_id);
		escape("bpf-link-detach", e, what);
	}
	if (o->map_id) {
		unsigned char key[64] = { 0 }, val[4096] = { 0 };

		memset(&attr, 0, sizeof(attr));
		attr.map_id = o->map_id;
		fd = (int)sys_bpf(BPF_MAP_GET_FD_BY_ID, &attr);
		e = fd < 0 ? errno : 0;
		if (fd >= 0) {
			/* Rewrite an entry with itself: a write, harmless if it lands. */
			memset(&attr, 0, sizeof(attr));
			attr.map_fd = fd;
			attr.next_key = (unsigned long)key;
			e = TRY(sys_bpf(BPF_MAP_GET_NEXT_KEY, &attr));
			if (!e) {
				attr.key = (unsigned long)key;
				attr.value = (unsigned long)val;
				e = TRY(sys_bpf(BPF_MAP_LOOKUP_ELEM, &attr));
			}
			if (!e) {
				attr.flags = BPF_EXIST;
				e = TRY(sys_bpf(BPF_MAP_UPDATE_ELEM, &attr));
			}
			close(fd);
		}
		snprintf(what, sizeof(what), "bpf(BPF_MAP_GET_FD_BY_ID, %u) and "
			 "BPF_MAP_UPDATE_ELEM", o->map_id);
		escape("bpf-map-update", e, what);
	}
	if (o->own_cg) {
		fd = open(o->own_cg, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		e = fd < 0 ? errno : 0;
		if (fd >= 0) {
			memset(&attr, 0, sizeof(attr));
			attr.target_fd = fd;
			attr.attach_type = BPF_CGROUP_DEVICE;
			e = TRY(sys_bpf(BPF_PROG_DETACH, &attr));
		}
		snprintf(what, sizeof(what), "bpf(BPF_PROG_DETACH, %s, BPF_CGROUP_DEVICE)",
			 o->own_cg);
		escape("bpf-cgroup-detach", e, what);
		if (fd >= 0) {
			__u32 ids[16];

			memset(&attr, 0, sizeof(attr));
			attr.query.target_fd = fd;
			attr.query.attach_type = BPF_CGROUP_DEVICE;
			attr.query.prog_ids = (unsigned long)ids;
			attr.query.prog_cnt = 16;
			e = TRY(sys_bpf(BPF_PROG_QUERY, &attr));
			escape("bpf-cgroup-query", e, "bpf(BPF_PROG_QUERY) on its own cgroup");
			close(fd);
		}
	}
	memset(&attr, 0, sizeof(attr));
	attr.map_type = BPF_MAP_TYPE_ARRAY;
	attr.key_size = 4;
	attr.value_size = 8;
	attr.max_entries = 1;
	fd = (int)sys_bpf(BPF_MAP_CREATE, &attr);
	escape("bpf-map-create", fd < 0 ? errno : 0, "bpf(BPF_MAP_CREATE)");
	if (fd >= 0)
		close(fd);
}

static void control_socket(const struct opts *o)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	static const char req[] = "{\"cmd\":\"status\"}";
	unsigned char hdr[4] = { 0, 0, 0, sizeof(req) - 1 }, buf[64];
	int fd, e;

	if (!o->control) {
		skip("control-socket", "no --control");
		return;
	}
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", o->control);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	e = fd < 0 ? errno : TRY(connect(fd, (struct sockaddr *)&sa, sizeof(sa)));
	if (!e) {
		/* Connected: does the agent answer it? */
		ssize_t n;

		e = write(fd, hdr, 4) == 4 && write(fd, req, sizeof(req) - 1) > 0 ? 0 : errno;
		n = e ? -1 : read(fd, buf, sizeof(buf) - 1);
		if (n > 4) {
			buf[n] = '\0';
			e = strstr((char *)buf + 4, "\"ok\":true") ? 0 : EPERM;
		} else {
			e = e ?: ECONNRESET;
		}
	}
	if (fd >= 0)
		close(fd);
	escape("control-socket", e, "connect to the agent's control socket and ask status");
}

static void images(const struct opts *o, const struct given *g)
{
	char what[4200], proc[64], link_path[4096];
	unsigned char byte;
	int fd = g->ro_only_fd, e;
	void *m;

	if (o->ungranted) {
		snprintf(what, sizeof(what), "open(%s, O_RDONLY), another VM's image", o->ungranted);
		escape("image-ungranted-read", open_close(o->ungranted, O_RDONLY), what);
		snprintf(what, sizeof(what), "open(%s, O_RDWR)", o->ungranted);
		escape("image-ungranted-write", open_close(o->ungranted, O_RDWR), what);
	}
	if (fd < 0) {
		skip("image-ro", "no read-only image fd given (-add-fd)");
		return;
	}
	control("image-ro-read", pread(fd, &byte, 1, 0) == 1, "pread on the read-only image fd");
	escape("image-ro-write", TRY(pwrite(fd, "X", 1, 0)), "pwrite on the read-only fd");
	escape("image-ro-ftruncate", TRY(ftruncate(fd, 0)), "ftruncate the read-only fd");
	escape("image-ro-fallocate", TRY(fallocate(fd, 0, 0, 4096)),
	       "fallocate on the read-only fd");
	m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	escape("image-ro-mmap", m == MAP_FAILED ? errno : 0, "mmap(PROT_WRITE, MAP_SHARED)");
	if (m != MAP_FAILED)
		munmap(m, 4096);
	e = TRY(fcntl(fd, F_SETFL, O_RDWR));
	if (!e)
		e = TRY(pwrite(fd, "X", 1, 0));
	escape("image-ro-setfl", e, "fcntl(F_SETFL, O_RDWR), then pwrite");
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	escape("image-ro-proc-reopen", open_close(proc, O_RDWR), "open(/proc/self/fd/N, O_RDWR)");
	escape("image-ro-fchmod", TRY(fchmod(fd, 0666)), "fchmod(fd, 0666)");
	escape("image-ro-fchown", TRY(fchown(fd, getuid(), getgid())), "fchown(fd, own uid)");
	if (o->tmp) {
		snprintf(link_path, sizeof(link_path), "%s/flink.%d", o->tmp, getpid());
		e = TRY(linkat(fd, "", AT_FDCWD, link_path, AT_EMPTY_PATH));
		escape("image-ro-linkat-fd", e, "linkat(fd, \"\", AT_EMPTY_PATH): a name for it");
		unlink(link_path);
	}
	if (!o->image)
		return;
	snprintf(what, sizeof(what), "open(%s, O_RDWR)", o->image);
	escape("image-ro-path-write", open_close(o->image, O_RDWR), what);
	snprintf(what, sizeof(what), "open(%s, O_RDONLY): by path, not the fd", o->image);
	escape("image-ro-path-read", open_close(o->image, O_RDONLY), what);
	snprintf(what, sizeof(what), "truncate(%s)", o->image);
	escape("image-ro-truncate", TRY(truncate(o->image, 0)), what);
	if (o->tmp) {
		snprintf(link_path, sizeof(link_path), "%s/slink.%d", o->tmp, getpid());
		e = TRY(symlink(o->image, link_path));
		if (!e)
			e = open_close(link_path, O_RDWR);
		unlink(link_path);
		escape("image-ro-symlink", e, "symlink to the image, open it O_RDWR");
		snprintf(link_path, sizeof(link_path), "%s/hlink.%d", o->tmp, getpid());
		e = TRY(link(o->image, link_path));
		if (!e)
			e = open_close(link_path, O_RDWR);
		unlink(link_path);
		escape("image-ro-hardlink", e, "hard link to the image, open it O_RDWR");
	}
}

static void rw_control(const struct given *g)
{
	unsigned char byte;
	bool ok;

	if (g->rw_fd < 0) {
		skip("image-rw", "no read-write image fd given");
		return;
	}
	ok = pread(g->rw_fd, &byte, 1, 0) == 1 && pwrite(g->rw_fd, &byte, 1, 0) == 1;
	control("image-rw-write", ok, "pwrite on the read-write image fd (its own byte back)");
}

static void processes(const struct opts *o)
{
	char path[64], what[128];
	int e, pfd;

	escape("setuid-root", TRY(setuid(0)), "setuid(0)");
	if (o->other_pid) {
		escape("other-vm-kill", TRY(kill(o->other_pid, 0)), "kill(other VM's QEMU, 0)");
		e = TRY(ptrace(PTRACE_ATTACH, o->other_pid, 0, 0));
		if (!e) {
			waitpid(o->other_pid, NULL, __WALL);
			ptrace(PTRACE_DETACH, o->other_pid, 0, 0);
		}
		escape("other-vm-ptrace", e, "ptrace(PTRACE_ATTACH) another VM's QEMU");
		snprintf(path, sizeof(path), "/proc/%d/mem", o->other_pid);
		escape("other-vm-mem", open_close(path, O_RDWR), "open /proc/<other QEMU>/mem");
		if (o->other_fd) {
			snprintf(path, sizeof(path), "/proc/%d/fd/%d", o->other_pid, o->other_fd);
			escape("other-vm-fd-reopen", open_close(path, O_RDONLY),
			       "open /proc/<other QEMU>/fd/<its disk>");
			pfd = (int)syscall(SYS_pidfd_open, o->other_pid, 0);
			e = pfd < 0 ? errno : 0;
			if (pfd >= 0) {
				int got = (int)syscall(SYS_pidfd_getfd, pfd, o->other_fd, 0);

				e = got < 0 ? errno : 0;
				if (got >= 0)
					close(got);
				close(pfd);
			}
			escape("other-vm-pidfd-getfd", e, "pidfd_getfd: copy its disk fd");
		}
	}
	if (o->agent_pid) {
		snprintf(what, sizeof(what), "kill(agent %d, 0)", o->agent_pid);
		escape("agent-kill", TRY(kill(o->agent_pid, 0)), what);
		e = TRY(ptrace(PTRACE_ATTACH, o->agent_pid, 0, 0));
		if (!e) {
			waitpid(o->agent_pid, NULL, __WALL);
			ptrace(PTRACE_DETACH, o->agent_pid, 0, 0);
		}
		escape("agent-ptrace", e, "ptrace(PTRACE_ATTACH) the agent");
	}
}

static void network(const struct opts *o, const struct given *g)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001) };
	struct ifreq ifr = { 0 };
	int fd, e;

	if (o->host_port) {
		sa.sin_port = htons((unsigned short)o->host_port);
		fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		e = fd < 0 ? errno : TRY(connect(fd, (struct sockaddr *)&sa, sizeof(sa)));
		if (fd >= 0)
			close(fd);
		escape("host-net-connect", e, "TCP connect to a host service on 127.0.0.1");
	}
	if (g->tap_fd >= 0) {
		escape("tap-persist", TRY(ioctl(g->tap_fd, TUNSETPERSIST, 1)),
		       "ioctl(TUNSETPERSIST) on its tap: outlive QEMU");
		escape("tap-owner", TRY(ioctl(g->tap_fd, TUNSETOWNER, (unsigned long)getuid())),
		       "ioctl(TUNSETOWNER) to its own uid: attach again later");
		memset(&ifr, 0, sizeof(ifr));
		ifr.ifr_hwaddr.sa_family = 1;	/* ARPHRD_ETHER */
		memcpy(ifr.ifr_hwaddr.sa_data, "\x02\x00\x5e\x00\x53\x01", 6);
		escape("tap-set-mac", TRY(ioctl(g->tap_fd, SIOCSIFHWADDR, &ifr)),
		       "ioctl(SIOCSIFHWADDR) on its tap: the host side's MAC");
		memset(&ifr, 0, sizeof(ifr));
		snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
		ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
		escape("tap-setiff", TRY(ioctl(g->tap_fd, TUNSETIFF, &ifr)),
		       "ioctl(TUNSETIFF) to another interface");
	}
	if (o->tmp) {
		char node[4096];

		snprintf(node, sizeof(node), "%s/tun.%d", o->tmp, getpid());
		e = TRY(mknod(node, S_IFCHR | 0666, makedev(10, 200)));
		unlink(node);
		escape("mknod", e, "mknod a /dev/net/tun node of its own");
	}
	escape("bpffs-write", TRY(mkdir("/sys/fs/bpf/rayos-escape", 0755)),
	       "mkdir under /sys/fs/bpf");
}

/* The fds the QEMU command line gives: -add-fd sets (ro/rw) and the tap. */
static void parse_given(int argc, char **argv, struct given *g)
{
	int set_ro[64], set_fd[64], nsets = 0;
	bool set_rw[64] = { 0 };

	g->ro_fd = g->rw_fd = g->tap_fd = g->ro_only_fd = -1;
	for (int i = 0; i + 1 < argc; i++) {
		const char *a = argv[i + 1], *p;

		if (!strcmp(argv[i], "-add-fd") && nsets < 64) {
			int fd = -1, set = -1;

			if ((p = strstr(a, "fd=")))
				fd = atoi(p + 3);
			if ((p = strstr(a, "set=")))
				set = atoi(p + 4);
			if (strstr(a, "opaque=rw")) {
				g->rw_fd = fd;
				for (int k = 0; k < nsets; k++)
					if (set_ro[k] == set)
						set_rw[k] = true;
				set_ro[nsets] = set;
				set_fd[nsets] = -1;
				set_rw[nsets++] = true;
			} else {
				g->ro_fd = fd;
				set_ro[nsets] = set;
				set_fd[nsets++] = fd;
			}
		} else if (!strcmp(argv[i], "-netdev") && !strncmp(a, "tap", 3) &&
			   (p = strstr(a, "fd="))) {
			g->tap_fd = atoi(p + 3);
		}
	}
	/* A set whose only fd is read-only: an image granted read-only. */
	for (int k = 0; k < nsets; k++) {
		bool rw = false;

		for (int j = 0; j < nsets; j++)
			rw |= set_ro[j] == set_ro[k] && set_rw[j];
		if (set_fd[k] >= 0 && !rw) {
			g->ro_only_fd = set_fd[k];
			break;
		}
	}
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "dev-denied", required_argument, NULL, 1 },
		{ "dev-allowed", required_argument, NULL, 2 },
		{ "cgroup-root", required_argument, NULL, 3 },
		{ "own-cgroup", required_argument, NULL, 4 },
		{ "other-cgroup", required_argument, NULL, 5 },
		{ "control", required_argument, NULL, 6 },
		{ "pin", required_argument, NULL, 7 },
		{ "map-id", required_argument, NULL, 8 },
		{ "prog-id", required_argument, NULL, 9 },
		{ "link-id", required_argument, NULL, 10 },
		{ "image", required_argument, NULL, 11 },
		{ "ungranted", required_argument, NULL, 12 },
		{ "other-pid", required_argument, NULL, 13 },
		{ "other-fd", required_argument, NULL, 14 },
		{ "agent-pid", required_argument, NULL, 15 },
		{ "host-port", required_argument, NULL, 16 },
		{ "tmp", required_argument, NULL, 17 },
		{ "hold", required_argument, NULL, 18 },
		{ 0 },
	};
	struct opts o = { 0 };
	struct given g;
	int c;

	opterr = 0;	/* QEMU's options follow ours */
	while ((c = getopt_long(argc, argv, "+", lo, NULL)) != -1) {
		switch (c) {
		case 1: o.dev_denied = optarg; break;
		case 2: o.dev_allowed = optarg; break;
		case 3: o.cg_root = optarg; break;
		case 4: o.own_cg = optarg; break;
		case 5: o.other_cg = optarg; break;
		case 6: o.control = optarg; break;
		case 7: o.pin = optarg; break;
		case 8: o.map_id = (unsigned int)atoi(optarg); break;
		case 9: o.prog_id = (unsigned int)atoi(optarg); break;
		case 10: o.link_id = (unsigned int)atoi(optarg); break;
		case 11: o.image = optarg; break;
		case 12: o.ungranted = optarg; break;
		case 13: o.other_pid = atoi(optarg); break;
		case 14: o.other_fd = atoi(optarg); break;
		case 15: o.agent_pid = atoi(optarg); break;
		case 16: o.host_port = atoi(optarg); break;
		case 17: o.tmp = optarg; break;
		case 18: o.hold = atoi(optarg); break;
		default: goto done;	/* the first QEMU option */
		}
	}
done:
	parse_given(argc, argv, &g);
	setvbuf(stdout, NULL, _IOLBF, 0);
	identity();
	devices(&o, "before");
	cgroups(&o);
	userns(&o);
	bpf_attempts(&o);
	control_socket(&o);
	images(&o, &g);
	rw_control(&g);
	processes(&o);
	network(&o, &g);
	devices(&o, "after");
	identity();
	printf("DONE\n");
	fflush(stdout);
	if (o.hold > 0)
		sleep((unsigned int)o.hold);
	return 0;
}
