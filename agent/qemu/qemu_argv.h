/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The QEMU command line as rayos-qemu rewrites it (pure string work, unit
 * tested by tests/qemu/test_qemu_argv.c): disk images the policy grants are
 * opened by the wrapper and handed to QEMU as fd sets (-add-fd, the way
 * libvirt does it), so every mention of an image's path becomes
 * /dev/fdset/N; and QEMU's seccomp sandbox is appended unless the command
 * line chose its own.
 */
#ifndef RAYOS_QEMU_ARGV_H
#define RAYOS_QEMU_ARGV_H

#include <stdbool.h>
#include <stddef.h>

/* What rayos-qemu appends when the command line has no -sandbox. */
#define QEMU_SANDBOX_DEFAULT	"on,obsolete=deny,elevateprivileges=deny,spawn=deny," \
				"resourcecontrol=deny"

/* One image handed to QEMU: an fd set with a read-only fd and, when the
 * grant includes writing, a read-write one (QEMU probes read-only first). */
struct qemu_disk_fd {
	const char *path;	/* the policy's path */
	bool writable;
	int set;		/* fd set id: /dev/fdset/<set> */
	int fd_ro, fd_rw;	/* fd_rw -1 when read-only */
	bool used;		/* set by qargv_subst_disks when mentioned */
};

/* True when argv (NULL-terminated) has option opt ("-sandbox"), given as
 * -opt or --opt. */
bool qargv_has_opt(char *const argv[], const char *opt);

/*
 * Rewrite one argument (prev: the argument before it, or NULL).  A value
 * equal to a disk's path becomes /dev/fdset/<set>: the whole argument
 * ("-cdrom PATH"), a key=value item or the implied first item of a QEMU
 * option list ("file=PATH,format=raw"; ",," is QEMU's escaped comma), or a
 * JSON string ({"filename":"PATH"}).  A -drive of a read-only disk gets
 * ",readonly=on" unless it sets readonly itself.
 * Returns 0 with *out NULL (unchanged) or a malloc'd new argument, and
 * marks the disks it used; -EINVAL with err set when the argument asks for
 * more than the grant (readonly=off on a read-only disk); -ENOMEM.
 */
int qargv_subst_disks(const char *prev, const char *arg, struct qemu_disk_fd *disks,
		      size_t nr, char **out, char *err, size_t errlen);

/*
 * The fd numbers the command line hands QEMU: every fd=N, fds=N:M...,
 * vhostfd=N and vhostfds=N:M... item of every argument (-add-fd, -netdev
 * tap, -chardev socket, ...).  Up to max go to out; returns how many there
 * are.  rayos-qemu closes every other fd above 2 before exec, so nothing the
 * caller happened to have open reaches the unprivileged QEMU.
 */
size_t qargv_fds(char *const argv[], int *out, size_t max);

#endif
