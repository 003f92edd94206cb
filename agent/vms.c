// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Running VMs: registration (tap, QEMU process, cgroup, device program),
 * the launch and stop measurements, automatic unregistration when QEMU
 * exits (pidfd in the epoll loop), and capabilities granted or revoked at
 * run time.  Every request is checked whole before anything changes.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <limits.h>
#include <net/if.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "agent/agent_internal.h"
#include "agent/audittrail.h"
#include "agent/control/control.h"
#include "agent/core/digest.h"
#include "agent/core/log.h"
#include "agent/core/nl.h"
#include "agent/tpm/tpm.h"
#include "agent/vm/cgroup.h"
#include "agent/vm/devices.h"
#include "agent/vm/ifwatch.h"
#include "agent/vm/registry.h"
#include "agent/vmconfine.h"
#include "bpf/abi/policy.h"
#include "loader/attach.h"
#include "loader/devices.h"

struct vm_watch {
	struct ev_source src;	/* the pidfd of the VM's QEMU */
	struct agent *a;
	uint32_t vm_id;
	pid_t pid;
	struct vm_watch *next;
};

/* A VM id of a request under key: 1..2^32-1, nothing else. */
int req_vm_id_at(const cJSON *req, const char *key, uint32_t *id)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(req, key);

	if (!cJSON_IsNumber(v) || v->valuedouble < 1 || v->valuedouble > UINT32_MAX ||
	    v->valuedouble != (double)(uint32_t)v->valuedouble)
		return -EINVAL;
	*id = (uint32_t)v->valuedouble;
	return 0;
}

int req_vm_id(const cJSON *req, uint32_t *id)
{
	return req_vm_id_at(req, "id", id);
}

cJSON *req_cap(const cJSON *req, int *bit)
{
	const cJSON *cap = cJSON_GetObjectItemCaseSensitive(req, "cap");
	char why[160];

	if (!cJSON_IsString(cap))
		return control_error("\"cap\" must be a capability name such as CAP_GPU");
	*bit = policy_cap_from_name(cap->valuestring);
	if (*bit >= 0)
		return NULL;
	policy_cap_error(cap->valuestring, why, sizeof(why));
	return control_error("%s; nothing changed", why);
}

static cJSON *ok_reply(uint32_t id)
{
	cJSON *r = cJSON_CreateObject();

	cJSON_AddBoolToObject(r, "ok", 1);
	cJSON_AddNumberToObject(r, "id", id);
	return r;
}

struct policy_vm *policy_vm(struct agent *a, uint32_t id)
{
	return a->set ? (struct policy_vm *)policy_set_find(a->set, id) : NULL;
}

/* ---- measurements -------------------------------------------------------- */

/* Set at shutdown: disk hashing threads stop between chunks. */
static atomic_bool stopping;

/* SHA-256 of an open file, streamed (and the fd closed); the QEMU binary is
 * tens of MiB, disk images can be far larger. */
static int fd_sha256(int fd, char out[65])
{
	uint8_t d[SHA256_DIGEST_LEN];
	int err;

	if (fd < 0)
		return fd;
	err = sha256_fd(fd, &stopping, d);
	close(fd);
	if (!err)
		sha256_hex(d, out);
	return err;
}

static int file_sha256(const char *path, char out[65])
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	return fd_sha256(fd < 0 ? -errno : fd, out);
}

/*
 * The launch record needs the QEMU binary's digest (tens of MiB) and, with
 * --measure-disks, the disk images' (far more): a thread hashes them off the
 * event loop, then queues the launch record and one "rayos/vm-disk" record
 * per image, in that order.  Registration returns without waiting.
 */
struct launch_job {
	struct agent *a;
	uint32_t vm_id;
	cJSON *launch;		/* the launch record, less exe_sha256 */
	int exe_fd;		/* the binary, opened at registration */
	size_t nr;
	char **paths;		/* disk images to hash */
	pthread_t thread;
	struct launch_job *next;
};

static struct launch_job *jobs;

static void *launch_worker(void *arg)
{
	struct launch_job *j = arg;
	char digest[65];

	if (!fd_sha256(j->exe_fd, digest))
		cJSON_AddStringToObject(j->launch, "exe_sha256", digest);
	j->exe_fd = -1;		/* fd_sha256 closed it */
	if (!atomic_load(&stopping))
		tpm_measure(j->a->tpm, TPM_EV_VM_LAUNCH, j->launch);	/* thread-safe queue */
	for (size_t i = 0; i < j->nr; i++) {
		cJSON *c;
		int err = file_sha256(j->paths[i], digest);

		if (err == -ECANCELED)
			break;
		c = cJSON_CreateObject();
		cJSON_AddNumberToObject(c, "id", j->vm_id);
		cJSON_AddStringToObject(c, "path", j->paths[i]);
		if (err)
			cJSON_AddStringToObject(c, "error", strerror(-err));
		else
			cJSON_AddStringToObject(c, "sha256", digest);
		tpm_measure(j->a->tpm, TPM_EV_VM_DISK, c);	/* thread-safe queue */
		cJSON_Delete(c);
	}
	return NULL;
}

static void job_free(struct launch_job *j)
{
	for (size_t i = 0; j->paths && i < j->nr; i++)
		free(j->paths[i]);
	free(j->paths);
	if (j->exe_fd >= 0)
		close(j->exe_fd);
	cJSON_Delete(j->launch);
	free(j);
}

/* Hand the launch record (and the disks, with --measure-disks) to a thread. */
static void measure_launch_async(struct agent *a, const struct policy_vm *vm, cJSON *launch,
				 int exe_fd)
{
	struct launch_job *j = calloc(1, sizeof(*j));

	if (!j) {
		cJSON_Delete(launch);
		if (exe_fd >= 0)
			close(exe_fd);
		return;
	}
	j->a = a;
	j->vm_id = vm->id;
	j->launch = launch;
	j->exe_fd = exe_fd;
	j->paths = calloc(vm->nr_disks + 1, sizeof(*j->paths));
	for (size_t i = 0; a->opts->measure_disks && j->paths && i < vm->nr_disks; i++)
		if (!vm->disks[i].is_block)
			j->paths[j->nr++] = strdup(vm->disks[i].path);
	if (!j->paths || pthread_create(&j->thread, NULL, launch_worker, j)) {
		log_warn("VM %u: cannot start measuring its launch", vm->id);
		job_free(j);
		return;
	}
	j->next = jobs;
	jobs = j;
}

/* What enforcement gave the VM: its tap and the policy version applied
 * (the "rayos/policy" record of that version has the policy's digest). */
static void launch_policy(struct agent *a, const struct policy_vm *vm, cJSON *c)
{
	if (vm->iface[0])
		cJSON_AddStringToObject(c, "interface", vm->iface);
	cJSON_AddNumberToObject(c, "policy_version", (double)a->applied_version);
	cJSON_AddStringToObject(c, "policy_file", vm->source);
}

/* What every launch record starts with: the VM, its uuid, the policy it got. */
static cJSON *launch_record(struct agent *a, const struct policy_vm *vm, const cJSON *req)
{
	const cJSON *uuid = cJSON_GetObjectItemCaseSensitive(req, "uuid");
	cJSON *c = cJSON_CreateObject();

	cJSON_AddNumberToObject(c, "id", vm->id);
	cJSON_AddStringToObject(c, "name", vm->name);
	if (cJSON_IsString(uuid))
		cJSON_AddStringToObject(c, "uuid", uuid->valuestring);
	launch_policy(a, vm, c);
	return c;
}

/*
 * The launch record: id, name, uuid, vTPM, and the QEMU binary and argv
 * digests.  A wrapper that registers before it execs QEMU (rayos-qemu) says
 * which binary and argv it will exec ("exe", "argv_sha256"); otherwise they
 * are read from the running process.
 */
static void measure_launch(struct agent *a, const struct policy_vm *vm, pid_t pid,
			   const cJSON *req)
{
	const cJSON *vtpm = cJSON_GetObjectItemCaseSensitive(req, "vtpm");
	const cJSON *exe_req = cJSON_GetObjectItemCaseSensitive(req, "exe");
	const cJSON *argv_req = cJSON_GetObjectItemCaseSensitive(req, "argv_sha256");
	char path[64], exe[PATH_MAX] = "", digest[65];
	uint8_t argv[16384], d[32];
	int fd, exe_fd;
	cJSON *c;
	ssize_t n;

	if (!a->tpm)
		return;
	c = launch_record(a, vm, req);
	if (cJSON_IsString(vtpm))	/* the guest's vTPM: its state directory, per uuid */
		cJSON_AddStringToObject(c, "vtpm", vtpm->valuestring);
	cJSON_AddNumberToObject(c, "pid", pid);
	if (cJSON_IsString(exe_req)) {
		snprintf(exe, sizeof(exe), "%s", exe_req->valuestring);
	} else {
		snprintf(path, sizeof(path), "/proc/%d/exe", pid);
		n = readlink(path, exe, sizeof(exe) - 1);
		exe[n > 0 ? n : 0] = '\0';
	}
	cJSON_AddStringToObject(c, "exe", exe);
	/* Opened now: the thread hashes what was there at registration. */
	exe_fd = exe[0] ? open(exe, O_RDONLY | O_CLOEXEC) : -1;
	if (cJSON_IsString(argv_req)) {
		cJSON_AddStringToObject(c, "argv_sha256", argv_req->valuestring);
	} else {
		snprintf(path, sizeof(path), "/proc/%d/cmdline", pid);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		n = fd >= 0 ? read(fd, argv, sizeof(argv)) : -1;
		if (fd >= 0)
			close(fd);
		if (n > 0 && !sha256(argv, n, d)) {
			sha256_hex(d, digest);
			cJSON_AddStringToObject(c, "argv_sha256", digest);
		}
	}
	measure_launch_async(a, vm, c, exe_fd);
}

/* vm register without --pid (a tap only): still a launch as far as
 * enforcement knows, so it is in the log too; no process to hash. */
static void measure_attach(struct agent *a, const struct policy_vm *vm, const cJSON *req)
{
	cJSON *c;

	if (!a->tpm)
		return;
	c = launch_record(a, vm, req);
	tpm_measure(a->tpm, TPM_EV_VM_LAUNCH, c);
	cJSON_Delete(c);
}

static void measure_stop(struct agent *a, uint32_t id, const char *why)
{
	cJSON *c;

	if (!a->tpm)
		return;
	c = cJSON_CreateObject();
	cJSON_AddNumberToObject(c, "id", id);
	cJSON_AddStringToObject(c, "reason", why);
	tpm_measure(a->tpm, TPM_EV_VM_STOP, c);
	cJSON_Delete(c);
}

/* ---- the QEMU process --------------------------------------------------- */

static void unwatch(struct agent *a, uint32_t id)
{
	struct vm_watch **pp, *w;

	for (pp = &a->watches; (w = *pp); pp = &w->next) {
		if (w->vm_id != id)
			continue;
		*pp = w->next;
		ev_del(a->epfd, &w->src);
		close(w->src.fd);
		free(w);
		return;
	}
}

static void release_vm(struct agent *a, uint32_t id, const char *why, bool exited);

static void on_exit_event(struct ev_source *src, uint32_t events)
{
	struct vm_watch *w = (struct vm_watch *)src;

	(void)events;
	log_info("VM %u: QEMU (pid %d) exited: unregistering it", w->vm_id, w->pid);
	release_vm(w->a, w->vm_id, "process exited", true);	/* frees w */
}

static int watch(struct agent *a, uint32_t id, pid_t pid)
{
	struct vm_watch *w;
	int fd;

	unwatch(a, id);
	fd = syscall(SYS_pidfd_open, pid, 0);
	if (fd < 0)
		return -errno;
	w = calloc(1, sizeof(*w));
	if (!w) {
		close(fd);
		return -ENOMEM;
	}
	w->src.fd = fd;
	w->src.handler = on_exit_event;
	w->a = a;
	w->vm_id = id;
	w->pid = pid;
	if (ev_add(a->epfd, &w->src, EPOLLIN)) {
		close(fd);
		free(w);
		return -errno;
	}
	w->next = a->watches;
	a->watches = w;
	return 0;
}

/*
 * libvirt's cgroup for a domain whose QEMU is in path.  libvirt puts QEMU's
 * threads in sub-cgroups named emulator, vcpuN and iothreadN of the
 * domain's cgroup: ".../machine-qemu\x2dN\x2dNAME.scope/libvirt" with
 * systemd, "/machine/qemu-N-NAME.libvirt-qemu" without.  The device program
 * goes on the domain's cgroup, above all of them; the program finds the VM
 * from any of them (it walks up to the nearest mapped ancestor).
 */
static void domain_cgroup(char *path)
{
	char *last = strrchr(path, '/');

	if (last && last != path &&
	    (!strcmp(last + 1, "emulator") || !strncmp(last + 1, "vcpu", 4) ||
	     !strncmp(last + 1, "iothread", 8)))
		*last = '\0';
}

/*
 * The device side of a VM: its cgroup, sealed and under the device program,
 * holding the process and every descendant of it; the image files for the
 * LSM program.  keep: the process stays in the cgroup its launcher made
 * (libvirt's, see domain_cgroup) and that cgroup gets the program.  On
 * failure nothing is left changed and msg says why.
 */
static int confine(struct agent *a, const struct policy_vm *vm, pid_t pid, bool keep,
		   struct vm_runtime *vr, int *moved, char *msg, size_t msglen)
{
	char cg[PATH_MAX], mnt[PATH_MAX], self[PATH_MAX], why[PATH_MAX + 64];
	uint64_t cgid;
	int err;

	*moved = 0;
	err = cgroup_v2_mount(mnt, sizeof(mnt));
	if (err) {
		snprintf(msg, msglen, "no cgroup v2 mount: %s", strerror(-err));
		return err;
	}
	if (keep) {
		err = cgroup_of_pid(pid, cg, sizeof(cg));
		if (err) {
			snprintf(msg, msglen, "cannot read the cgroup of process %d: %s", (int)pid,
				 strerror(-err));
			return err;
		}
		domain_cgroup(cg);
		if (!strcmp(cg, mnt)) {
			snprintf(msg, msglen, "process %d is in the root cgroup: there is no cgroup "
				 "of its own to attach to; register it without \"cgroup\": "
				 "\"keep\" to move it into one", (int)pid);
			return -EINVAL;
		}
		if (!cgroup_of_pid(getpid(), self, sizeof(self)) &&
		    !strncmp(self, cg, strlen(cg)) && (!self[strlen(cg)] || self[strlen(cg)] == '/')) {
			snprintf(msg, msglen, "the agent itself runs in %s", cg);
			return -EINVAL;
		}
	} else {
		err = cgroup_vm_create(NULL, vm->id, cg, sizeof(cg), &cgid);
		if (!err && (err = cgroup_seal(cg)) == -EPERM) {
			snprintf(msg, msglen, "%s is not owned by root: remove it (rmdir) and "
				 "register again", cg);
			return err;
		}
		if (err) {
			snprintf(msg, msglen, "cannot make cgroup %s: %s", cg, strerror(-err));
			return err;
		}
	}
	if (strlen(cg) >= sizeof(vr->cgroup)) {
		snprintf(msg, msglen, "cgroup path %s is too long", cg);
		err = -ENAMETOOLONG;
		goto fail;
	}
	/* A process that can write cgroup.procs above its cgroup leaves it. */
	err = cgroup_check_sealed(cg, why, sizeof(why));
	if (err) {
		snprintf(msg, msglen, "the VM's cgroup could be left: %s", err == -EPERM ? why :
			 strerror(-err));
		goto fail;
	}
	err = loader_attach_cgroup(a->ld, vm->id, cg);
	if (err == -EPERM && keep && strrchr(cg, '/') > cg + strlen(mnt)) {
		/* The launcher sealed its cgroup with a device program of its own
		 * (libvirt does, without BPF_F_ALLOW_MULTI): RayOS's goes on the
		 * parent, and both must allow. */
		char parent[PATH_MAX];

		snprintf(parent, sizeof(parent), "%s", cg);
		*strrchr(parent, '/') = '\0';
		err = loader_attach_cgroup_above(a->ld, vm->id, cg, parent);
		if (!err)
			log_info("VM %u: %s has a device program that allows no other below "
				 "it: rayos_dev_above on %s instead", vm->id, cg, parent);
	}
	if (err) {
		snprintf(msg, msglen, "cannot attach the device program to %s: %s", cg,
			 strerror(-err));
		goto fail;
	}
	if (!keep) {
		err = cgroup_move_tree(cg, pid, moved, msg, msglen);
		if (err)
			goto fail;
	}
	err = vms_set_images(a, vm);
	if (err) {
		snprintf(msg, msglen, "cannot register the disk images: %s", strerror(-err));
		goto fail;
	}
	snprintf(vr->cgroup, sizeof(vr->cgroup), "%s", cg);
	vr->cgroup_kept = keep;
	return 0;
fail:
	loader_detach_cgroup(a->ld, vm->id);
	loader_dev_clear_images(a->ld, vm->id);
	if (!keep)
		cgroup_vm_remove(NULL, vm->id);
	return err;
}

/* Move every process of the VM's cgroup up to the parent, so the cgroup can
 * go: an admin who unregisters a running VM takes it out of RayOS's hands.
 * Returns how many processes were moved. */
static int evict(const char *path)
{
	char procs[PATH_MAX + 16], parent[PATH_MAX];
	int moved = 0;
	pid_t pid;
	FILE *f;

	snprintf(procs, sizeof(procs), "%s/cgroup.procs", path);
	snprintf(parent, sizeof(parent), "%s", path);
	*strrchr(parent, '/') = '\0';
	f = fopen(procs, "re");
	if (!f)
		return 0;
	while (fscanf(f, "%d", &pid) == 1)
		moved += !cgroup_move_pid(parent, pid);
	fclose(f);
	return moved;
}

/* A tap rayos-qemu made is non-persistent and goes with QEMU's last fd.  One
 * still there after QEMU and everything it left have died was made
 * persistent to outlive it (and be attached to again, unfiltered): it is
 * removed before its programs are, so it is never on the bridge unguarded. */
static void remove_leftover_tap(uint32_t id, const char *iface)
{
	struct ifinfomsg ifi = { .ifi_family = AF_UNSPEC };
	struct nl_req r;
	int err;

	ifi.ifi_index = (int)if_nametoindex(iface);
	if (!ifi.ifi_index)
		return;
	nl_req_init(&r, RTM_DELLINK, 0, &ifi, sizeof(ifi));
	err = nl_talk(&r);
	if (err && err != -ENODEV)
		log_warn("VM %u: tap %s outlived its QEMU and cannot be removed: %s", id, iface,
			 strerror(-err));
	else if (!err)
		log_warn("VM %u: tap %s outlived its QEMU (made persistent?): removed", id, iface);
}

/* Undo a registration: device side, tap, runtime entry; back to what the
 * policy alone says for this VM.  exited: its QEMU is gone; what it left in
 * the VM's cgroup is killed, never let out (it forked there to outlive it).
 * Otherwise an admin unregisters a running VM: its processes leave RayOS. */
static void release_vm(struct agent *a, uint32_t id, const char *why, bool exited)
{
	const struct vm_runtime *vr = registry_get(a->reg, id);
	struct policy_vm *vm = policy_vm(a, id);
	char cg[PATH_MAX] = "";
	int err;

	unwatch(a, id);
	if (exited) {
		/* No one asked: recorded as it happens, not write-ahead. */
		char msg[PATH_MAX + 512];
		cJSON *j = cJSON_CreateObject();

		cJSON_AddStringToObject(j, "event", "vm_exited");
		cJSON_AddNumberToObject(j, "vm", id);
		if (vr && vr->pid)
			cJSON_AddNumberToObject(j, "pid", vr->pid);
		cJSON_AddStringToObject(j, "by", why);
		if (audittrail_write(a, j, msg, sizeof(msg)))
			log_err("VM %u: cannot record that its process exited: %s", id, msg);
	}
	if (vr && vr->pid) {
		if (vr->cgroup[0])
			snprintf(cg, sizeof(cg), "%s", vr->cgroup);
		else
			cgroup_vm_path(NULL, id, cg, sizeof(cg));
		if (vr->cgroup_kept) {
			/* The launcher's cgroup: it is theirs to empty and remove. */
		} else if (exited) {
			err = cg[0] ? cgroup_kill(cg, 500) : 0;
			if (err && err != -ENOENT)
				log_warn("VM %u: cannot kill what its QEMU left in %s: %s", id, cg,
					 strerror(-err));
		} else {
			int moved = cg[0] ? evict(cg) : 0;

			if (moved)
				log_warn("VM %u unregistered while %d of its processes run: they "
					 "leave its cgroup and are no longer confined", id, moved);
		}
		loader_detach_cgroup(a->ld, id);
		loader_dev_clear_images(a->ld, id);
		if (!vr->cgroup_kept) {
			err = cgroup_vm_remove(NULL, id);
			if (err && err != -ENOENT)
				log_warn("VM %u: cannot remove its cgroup: %s", id, strerror(-err));
		}
	}
	if (vr && vr->iface[0]) {
		if (exited && (vr->conf_flags & VM_CONF_LAUNCHER))
			remove_leftover_tap(id, vr->iface);
		ifwatch_detach(a->ifw, id);
		if (vm)
			vm->iface[0] = '\0';
	}
	registry_del(a->reg, id);
	/* Stopped or unregistered: a quarantine ends with the VM, and the
	 * publish below drops its record and detaches its tap. */
	quarantine_release(a, id);
	measure_stop(a, id, why);
	/* The policy's own interface, if it names one, is enforced again. */
	agent_apply_policy(a, "VM unregistered");
}

/* ---- requests ----------------------------------------------------------- */

/* The thread group of a pid (a thread id names its whole process); 0 if gone. */
static pid_t tgid_of(pid_t pid)
{
	char file[64], line[128];
	int tgid = 0;
	FILE *f;

	snprintf(file, sizeof(file), "/proc/%d/status", (int)pid);
	f = fopen(file, "re");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Tgid: %d", &tgid) == 1)
			break;
	fclose(f);
	return tgid;
}

/* "confinement": what a launcher (rayos-qemu) does between the reply and
 * exec; kept for status, which checks what it can on the live process. */
static int parse_confinement(const cJSON *c, struct vm_runtime *vr)
{
	static const struct {
		const char *key;
		uint32_t flag;
	} bools[] = {
		{ "cgroup_ns", VM_CONF_CGROUP_NS }, { "net_ns", VM_CONF_NET_NS },
		{ "sandbox", VM_CONF_SANDBOX }, { "uid_per_vm", VM_CONF_UID_PER_VM },
	};
	const cJSON *uid = cJSON_GetObjectItemCaseSensitive(c, "uid");
	const cJSON *fds = cJSON_GetObjectItemCaseSensitive(c, "disk_fds");

	if (!cJSON_IsObject(c) || !cJSON_IsNumber(uid) || uid->valuedouble < 1 ||
	    uid->valuedouble > UINT32_MAX - 1 || (fds && !cJSON_IsNumber(fds)))
		return -EINVAL;
	vr->conf_flags = VM_CONF_LAUNCHER;
	vr->conf_uid = (uint32_t)uid->valuedouble;
	vr->conf_disk_fds = fds ? (uint32_t)fds->valuedouble : 0;
	for (size_t i = 0; i < sizeof(bools) / sizeof(bools[0]); i++)
		if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, bools[i].key)))
			vr->conf_flags |= bools[i].flag;
	return 0;
}

/* The audit record of a registration (pid: with a process) or an
 * unregistration; error: why it failed after its record. */
static cJSON *vm_record(const char *event, const struct vm_runtime *vr, bool pid, bool keep,
			const char *error)
{
	cJSON *j = cJSON_CreateObject();

	if (!j)
		return NULL;
	cJSON_AddStringToObject(j, "event", event);
	cJSON_AddNumberToObject(j, "vm", vr->id);
	if (vr->iface[0])
		cJSON_AddStringToObject(j, "interface", vr->iface);
	if (pid) {
		cJSON_AddNumberToObject(j, "pid", vr->pid);
		cJSON_AddStringToObject(j, "cgroup", keep ? "keep" : "rayos");
	}
	cJSON_AddStringToObject(j, "by", "control socket");
	if (error)
		cJSON_AddStringToObject(j, "error", error);
	return j;
}

/*
 * {"id", "interface"?, "pid"?, "cgroup"?, "confinement"?, "uuid"?}: enforce
 * the VM's policy on its tap; put its QEMU process and every descendant
 * into the VM's cgroup under the device program ("cgroup": "keep": leave
 * it in the cgroup its launcher made, libvirt's, and attach there); watch
 * the process; measure the launch.  Warns when the process could undo all
 * of that by privilege.
 */
cJSON *vms_register(struct agent *a, const cJSON *req)
{
	const cJSON *ifc = cJSON_GetObjectItemCaseSensitive(req, "interface");
	const cJSON *pidj = cJSON_GetObjectItemCaseSensitive(req, "pid");
	const cJSON *uuid = cJSON_GetObjectItemCaseSensitive(req, "uuid");
	const cJSON *vtpm = cJSON_GetObjectItemCaseSensitive(req, "vtpm");
	const cJSON *exe = cJSON_GetObjectItemCaseSensitive(req, "exe");
	const cJSON *argv_sha = cJSON_GetObjectItemCaseSensitive(req, "argv_sha256");
	const cJSON *cgmode = cJSON_GetObjectItemCaseSensitive(req, "cgroup");
	const cJSON *conf = cJSON_GetObjectItemCaseSensitive(req, "confinement");
	const struct vm_runtime *old;
	struct vm_runtime vr = {};
	struct policy_vm *vm;
	char msg[8192], why[256];
	struct proc_creds creds;
	bool keep = false;
	int moved = 0;
	cJSON *r, *warnings;
	int err;

	if (req_vm_id(req, &vr.id))
		return control_error("\"id\" must be a VM id (1..4294967295)");
	vm = policy_vm(a, vr.id);
	if (!vm)
		return control_error("unknown VM %u: it is not in the applied policy (%s)",
				     vr.id, a->opts->policy_dir);
	if (vm->quarantined)
		return control_error("VM %u has no policy (quarantined): add it to %s before "
				     "registering it", vr.id, a->opts->policy_dir);
	if (ifc && (!cJSON_IsString(ifc) || !registry_ifname_valid(ifc->valuestring)))
		return control_error("\"interface\" must be an interface name of 1..15 "
				     "printable characters");
	if (pidj && (!cJSON_IsNumber(pidj) || pidj->valuedouble < 1 ||
		     pidj->valuedouble > INT32_MAX ||
		     pidj->valuedouble != (double)(pid_t)pidj->valuedouble))
		return control_error("\"pid\" must be a process id");
	if (uuid && !cJSON_IsString(uuid))
		return control_error("\"uuid\" must be a string");
	if (vtpm && !cJSON_IsString(vtpm))
		return control_error("\"vtpm\" must be the vTPM's state directory");
	if (exe && (!cJSON_IsString(exe) || exe->valuestring[0] != '/'))
		return control_error("\"exe\" must be the absolute path of the QEMU binary");
	if (argv_sha && (!cJSON_IsString(argv_sha) || strlen(argv_sha->valuestring) != 64 ||
			 strspn(argv_sha->valuestring, "0123456789abcdef") != 64))
		return control_error("\"argv_sha256\" must be 64 lowercase hex digits");
	if (cgmode && (!cJSON_IsString(cgmode) || (strcmp(cgmode->valuestring, "keep") &&
						   strcmp(cgmode->valuestring, "rayos"))))
		return control_error("\"cgroup\" must be \"rayos\" (move the process into "
				     "the VM's cgroup) or \"keep\" (attach to the cgroup it is in)");
	keep = cgmode && !strcmp(cgmode->valuestring, "keep");
	if ((keep || conf) && !pidj)
		return control_error("\"%s\" needs \"pid\"", keep ? "cgroup" : "confinement");
	if (conf && parse_confinement(conf, &vr))
		return control_error("\"confinement\" must be an object with \"uid\" (the "
				     "unprivileged uid QEMU runs as) and flags");
	if (!ifc && !pidj)
		return control_error("nothing to register: give \"interface\" and/or \"pid\"");
	vr.pid = pidj ? (pid_t)pidj->valuedouble : 0;
	if (vr.pid && kill(vr.pid, 0) && errno == ESRCH)
		return control_error("process %d does not exist", vr.pid);
	if (vr.pid == 1)
		return control_error("process 1 is init: it cannot be a VM's process");
	if (vr.pid) {
		pid_t tgid = tgid_of(vr.pid);

		if (!tgid)
			return control_error("process %d does not exist", vr.pid);
		vr.pid = tgid;	/* a thread id stands for its process */
	}

	old = registry_get(a->reg, vr.id);
	/* Its exit would unregister the VM and end what runs in its cgroup. */
	if (old && old->pid && vr.pid && old->pid != vr.pid &&
	    (!kill(old->pid, 0) || errno == EPERM))
		return control_error("VM %u already runs (process %d): stop it or unregister "
				     "it first", vr.id, old->pid);
	if (old) {
		vr.cap_grant = old->cap_grant;
		vr.cap_revoke = old->cap_revoke;
		memcpy(vr.cap_until, old->cap_until, sizeof(vr.cap_until));
		vr.limits = old->limits;
		if (!ifc)
			memcpy(vr.iface, old->iface, sizeof(vr.iface));
		if (!pidj) {
			vr.pid = old->pid;
			memcpy(vr.cgroup, old->cgroup, sizeof(vr.cgroup));
			vr.cgroup_kept = old->cgroup_kept;
			vr.conf_flags = old->conf_flags;
			vr.conf_uid = old->conf_uid;
			vr.conf_disk_fds = old->conf_disk_fds;
		}
	}
	if (ifc)
		snprintf(vr.iface, sizeof(vr.iface), "%s", ifc->valuestring);

	/* Write-ahead, as capability changes: no registration without its
	 * record. */
	if (audittrail_write(a, vm_record("vm_register", &vr, pidj != NULL, keep, NULL), msg,
			     sizeof(msg)))
		return control_error("refused: the audit record of VM %u's registration cannot "
				     "be written and synced (%s); nothing changed; make the state "
				     "dir writable or free space in it, then retry", vr.id, msg);
	if (pidj) {
		err = confine(a, vm, vr.pid, keep, &vr, &moved, msg, sizeof(msg));
		if (err) {
			char why[256];

			snprintf(why, sizeof(why), "cannot confine process %d: %.200s", vr.pid,
				 msg[0] ? msg : strerror(-err));
			if (audittrail_write(a, vm_record("vm_register_failed", &vr, true, keep, why),
					     msg, sizeof(msg)))
				log_err("VM %u: cannot record that its registration failed: %s",
					vr.id, msg);
			return control_error("VM %u: %s", vr.id, why);
		}
		err = watch(a, vr.id, vr.pid);
		if (err)
			log_warn("VM %u: cannot watch process %d (%s): unregister it by hand",
				 vr.id, vr.pid, strerror(-err));
	}
	err = registry_put(a->reg, &vr);
	if (err)
		log_warn("VM %u: registration not saved: %s", vr.id, strerror(-err));
	if (vr.iface[0]) {
		snprintf(vm->iface, sizeof(vm->iface), "%s", vr.iface);
		ifwatch_reconcile(a->ifw, a->set);
	}
	if (pidj)
		measure_launch(a, vm, vr.pid, req);
	else
		measure_attach(a, vm, req);
	log_info("VM %u registered%s%s%s%s%s", vr.id, vr.iface[0] ? " on " : "", vr.iface,
		 pidj ? ", process in " : "", pidj ? vr.cgroup : "",
		 vr.cgroup_kept ? " (kept in place)" : "");

	r = ok_reply(vr.id);
	cJSON_AddNumberToObject(r, "ifindex", loader_vm_ifindex(a->ld, vr.id));
	warnings = cJSON_AddArrayToObject(r, "warnings");
	if (pidj) {
		cJSON_AddStringToObject(r, "cgroup", vr.cgroup);
		cJSON_AddBoolToObject(r, "cgroup_kept", vr.cgroup_kept);
		cJSON_AddNumberToObject(r, "processes_moved", moved);
		/* A launcher that drops before exec is root now, not later. */
		if (!(vr.conf_flags & VM_CONF_LAUNCHER) && !proc_creds_read(vr.pid, &creds) &&
		    proc_creds_privileged(&creds, why, sizeof(why))) {
			snprintf(msg, sizeof(msg), "process %d (%s) %s: it can leave its cgroup and "
				 "detach the BPF programs; run it unprivileged (rayos-qemu does)",
				 (int)vr.pid, creds.comm, why);
			log_warn("VM %u: %s", vr.id, msg);
			cJSON_AddItemToArray(warnings, cJSON_CreateString(msg));
		}
	}
	return r;
}

cJSON *vms_unregister(struct agent *a, const cJSON *req)
{
	char msg[PATH_MAX + 512];
	struct vm_runtime vr = {};
	uint32_t id;

	if (req_vm_id(req, &id))
		return control_error("\"id\" must be a VM id (1..4294967295)");
	if (!registry_get(a->reg, id) && !quarantine_get(a, id))
		return control_error("VM %u is not registered", id);
	vr.id = id;
	if (audittrail_write(a, vm_record("vm_unregister", &vr, false, false, NULL), msg,
			     sizeof(msg)))
		return control_error("refused: the audit record of VM %u's unregistration cannot "
				     "be written and synced (%s); nothing changed; make the state "
				     "dir writable or free space in it, then retry", id, msg);
	if (!registry_get(a->reg, id)) {
		/* A quarantined VM that only the policy had put on its tap:
		 * the admin takes it out of RayOS's hands. */
		if (!quarantine_release(a, id))
			return control_error("VM %u is not registered", id);
		log_info("VM %u unregistered on request while quarantined", id);
		measure_stop(a, id, "unregistered");
		return ok_reply(id);
	}
	log_info("VM %u unregistered on request", id);
	release_vm(a, id, "unregistered", false);
	return ok_reply(id);
}

/* The access a disk's mode leaves under vm's CAP_DISK_* limits. */
static uint8_t disk_mode(const struct policy_vm *vm, const struct policy_disk *d)
{
	uint8_t m = d->mode;

	if (!caps_disk_allowed(&vm->limits, CAPS_DISK_READ, d->path))
		m &= (uint8_t)~RAYOS_DEV_ACC_READ;
	if (!caps_disk_allowed(&vm->limits, CAPS_DISK_WRITE, d->path))
		m &= (uint8_t)~RAYOS_DEV_ACC_WRITE;
	return m;
}

int vms_set_images(struct agent *a, const struct policy_vm *vm)
{
	int err = 0;

	for (size_t i = 0; !err && i < vm->nr_disks; i++)
		if (!vm->disks[i].is_block)
			err = loader_dev_set_image(a->ld, vm->id, vm->disks[i].path,
						   disk_mode(vm, &vm->disks[i]));
	return err;
}

/* The VM's disks and what it may do to each now: the policy's mode under
 * its limits, and the capabilities its record holds (run-time grants
 * included). */
static cJSON *disks_json(struct agent *a, const struct policy_vm *vm)
{
	cJSON *arr = cJSON_CreateArray();
	uint64_t caps = vm->caps;
	struct rayos_vm rec;

	if (!loader_vm_record(a->ld, vm->id, &rec))
		caps = rec.caps;
	for (size_t i = 0; arr && i < vm->nr_disks; i++) {
		const struct policy_disk *d = &vm->disks[i];
		cJSON *o = cJSON_CreateObject();
		uint8_t mode = disk_mode(vm, d);	/* under the CAP_DISK_* limits */
		char access[3] = "";

		if ((caps & (1ULL << RAYOS_CAP_DISK_READ)) && (mode & RAYOS_DEV_ACC_READ))
			strcat(access, "r");
		if ((caps & (1ULL << RAYOS_CAP_DISK_WRITE)) && (mode & RAYOS_DEV_ACC_WRITE))
			strcat(access, "w");
		cJSON_AddStringToObject(o, "path", d->path);
		cJSON_AddStringToObject(o, "mode", d->mode & RAYOS_DEV_ACC_WRITE ? "rw" : "ro");
		cJSON_AddBoolToObject(o, "block", d->is_block);
		cJSON_AddStringToObject(o, "access", access);
		cJSON_AddItemToArray(arr, o);
	}
	return arr;
}

cJSON *vms_info(struct agent *a, const cJSON *req)
{
	const struct policy_vm *vm;
	char mac[18], ip[16];
	uint32_t id;
	cJSON *r;

	if (req_vm_id(req, &id))
		return control_error("\"id\" must be a VM id (1..4294967295)");
	vm = policy_vm(a, id);
	if (!vm)
		return control_error("unknown VM %u: it is not in the applied policy (%s)", id,
				     a->opts->policy_dir);
	r = ok_reply(id);
	cJSON_AddStringToObject(r, "name", vm->name);
	cJSON_AddStringToObject(r, "interface", vm->iface);
	cJSON_AddStringToObject(r, "bridge", vm->bridge);
	if (vm->has_mac) {
		snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", vm->mac[0],
			 vm->mac[1], vm->mac[2], vm->mac[3], vm->mac[4], vm->mac[5]);
		cJSON_AddStringToObject(r, "mac", mac);
	}
	if (vm->has_ipv4) {
		const uint8_t *b = (const uint8_t *)&vm->ipv4_be;

		snprintf(ip, sizeof(ip), "%u.%u.%u.%u", b[0], b[1], b[2], b[3]);
		cJSON_AddStringToObject(r, "ipv4", ip);
	}
	cJSON_AddItemToObject(r, "disks", disks_json(a, vm));
	cJSON_AddItemToObject(r, "capability_limits", vmfine_json(a, vm) ?: cJSON_CreateObject());
	cJSON_AddItemToObject(r, "confinement", vmconfine_json(a, id));
	return r;
}

/* cap.grant / cap.revoke {"id", "cap"}: next open sees it; audited before
 * it happens (write-ahead: no record, no change); kept across publishes
 * and restarts (the runtime entry). */
cJSON *vms_cap(struct agent *a, const cJSON *req, bool grant)
{
	const cJSON *cap = cJSON_GetObjectItemCaseSensitive(req, "cap");
	const struct vm_runtime *old;
	struct vm_runtime vr = {}, prev = {};
	const struct quarantine_entry *qe;
	struct devices_cap_change ch = { .grant = grant, .who = "control socket" };
	char audit[PATH_MAX], err_msg[PATH_MAX + 512];
	bool had = false;
	int bit, err;
	cJSON *r;

	if (req_vm_id(req, &vr.id))
		return control_error("\"id\" must be a VM id (1..4294967295)");
	if ((r = req_cap(req, &bit)))
		return r;
	if (!policy_vm(a, vr.id))
		return control_error("unknown VM %u: it is not in the applied policy", vr.id);
	qe = quarantine_get(a, vr.id);
	if (qe)
		return control_error("VM %u is quarantined (it has no policy since %llu): give it "
				     "a policy before changing its capabilities", vr.id,
				     (unsigned long long)qe->since);
	snprintf(audit, sizeof(audit), "%s/audit.log", a->opts->state_dir);
	ch.vm_id = vr.id;
	ch.cap_name = cap->valuestring;
	ch.audit_path = audit;
	err = devices_cap_prepare(a->ld, &ch, err_msg, sizeof(err_msg));
	if (err) {
		if (ch.audit_failed)
			degraded_set(&a->deg, DEG_AUDIT_UNWRITABLE, "%s", err_msg);
		return control_error("%s", err_msg);
	}
	degraded_clear(&a->deg, DEG_AUDIT_UNWRITABLE);
	old = registry_get(a->reg, vr.id);
	if (old) {
		vr = prev = *old;
		had = true;
	}
	if (grant) {
		vr.cap_grant |= 1ULL << bit;
		vr.cap_revoke &= ~(1ULL << bit);
	} else {
		vr.cap_revoke |= 1ULL << bit;
		vr.cap_grant &= ~(1ULL << bit);
		vr.cap_until[bit] = 0;	/* a revoke ends a temporary grant too */
	}
	/* The runtime entry next (a restart re-applies it), the maps last. */
	err = registry_put(a->reg, &vr);
	if (err)
		snprintf(err_msg, sizeof(err_msg), "refused: cannot save the change in %s/"
			 "registrations.json: %s; nothing changed", a->opts->state_dir,
			 strerror(-err));
	else
		err = devices_cap_commit(a->ld, &ch, err_msg, sizeof(err_msg));
	/* A revoke ends a temporary grant of the capability as well. */
	if (!err && !grant && prev.cap_until[bit] && (err = vmcaps_apply(a, &vr)))
		snprintf(err_msg, sizeof(err_msg), "VM %u: cannot end its temporary %s: %s",
			 vr.id, cap->valuestring, strerror(-err));
	if (err) {
		devices_cap_failed(&ch, err_msg);
		if (had)
			registry_put(a->reg, &prev);
		else
			registry_del(a->reg, vr.id);
		return control_error("%s", err_msg);
	}
	log_info("VM %u: %s %s (audit: %s)", vr.id, grant ? "granted" : "revoked",
		 cap->valuestring, audit);
	r = ok_reply(vr.id);
	cJSON_AddNumberToObject(r, "caps", ch.caps_after);
	return r;
}

void vms_after_publish(struct agent *a)
{
	vmrevoke_recover(a);
	vmcaps_policy(a);
	for (size_t i = 0; i < registry_count(a->reg); i++)
		vmcaps_apply(a, registry_at(a->reg, i));
	vmdeleg_policy(a);
	vmdeleg_apply_all(a);	/* slots may have changed */
}

void vms_restore(struct agent *a)
{
	for (size_t i = 0; i < registry_count(a->reg);) {
		const struct vm_runtime *vr = registry_at(a->reg, i);
		uint32_t id = vr->id;

		if (vr->pid && (kill(vr->pid, 0) && errno == ESRCH)) {
			log_info("VM %u: its process %d ended while the agent was away", id,
				 vr->pid);
			release_vm(a, id, "process exited", true);	/* removes entry i */
			continue;
		}
		if (vr->pid && watch(a, id, vr->pid))
			log_warn("VM %u: cannot watch process %d", id, vr->pid);
		i++;
	}
}

void vms_close(struct agent *a)
{
	while (a->watches)
		unwatch(a, a->watches->vm_id);
	/* Before the TPM goes: the hashing threads queue into it. */
	atomic_store(&stopping, true);
	while (jobs) {
		struct launch_job *j = jobs;

		jobs = j->next;
		pthread_join(j->thread, NULL);
		job_free(j);
	}
}
