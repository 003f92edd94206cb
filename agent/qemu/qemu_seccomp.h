/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * RayOS's own seccomp filter for QEMU, installed by rayos-qemu right before
 * exec (it stacks with QEMU's -sandbox, and holds when a command line turns
 * that off).  It refuses with EPERM what QEMU never needs and a guest that
 * took QEMU over would want:
 *   - bpf(), whatever the host's kernel.unprivileged_bpf_disabled says;
 *   - the tap ioctls that change the device rather than use it:
 *     TUNSETPERSIST (a tap that outlives QEMU, off RayOS's books),
 *     TUNSETOWNER/TUNSETGROUP (who may attach to it later), TUNSETLINK,
 *     SIOCSIFHWADDR (the host side's MAC, which the bridge learns as its
 *     own), TUNSETSTEERINGEBPF/TUNSETFILTEREBPF;
 *   - every system call of another ABI (i386, x32): a filter that checks
 *     native numbers only would be walked around through int 0x80.
 */
#ifndef RAYOS_QEMU_SECCOMP_H
#define RAYOS_QEMU_SECCOMP_H

#include <stddef.h>

/* Needs no_new_privs (or CAP_SYS_ADMIN).  -EOPNOTSUPP on an architecture
 * it has no numbers for; err says why on failure. */
int qemu_seccomp_install(char *err, size_t errlen);

#endif
