// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The filter of qemu_seccomp.h, as classic BPF (no libseccomp needed for a
 * dozen instructions).
 */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/if_tun.h>
#include <linux/seccomp.h>
#include <linux/sockios.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include "agent/qemu/qemu_seccomp.h"

#if defined(__x86_64__)
#define NATIVE_ARCH	AUDIT_ARCH_X86_64
#define X32_BIT		0x40000000U	/* x32 numbers: the same arch, another ABI */
#elif defined(__aarch64__)
#define NATIVE_ARCH	AUDIT_ARCH_AARCH64
#define X32_BIT		0
#endif

#define LD(field)	BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, field))
#define RET(v)		BPF_STMT(BPF_RET | BPF_K, (v))
#define DENY		RET(SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA))
/* if (A == v) skip 0 else skip 1: followed by the action for a match. */
#define IS(v)		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (v), 0, 1)

int qemu_seccomp_install(char *err, size_t errlen)
{
#ifdef NATIVE_ARCH
	struct sock_filter f[] = {
		LD(arch),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, NATIVE_ARCH, 1, 0),
		RET(SECCOMP_RET_KILL_PROCESS),
		LD(nr),
		BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, X32_BIT ? X32_BIT : 0xffffffffU, 0, 1),
		RET(SECCOMP_RET_KILL_PROCESS),
		IS(__NR_bpf), DENY,
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_ioctl, 1, 0),
		RET(SECCOMP_RET_ALLOW),
		/* ioctl's request is an unsigned int: the low half of args[1]. */
		LD(args[1]),
		IS(TUNSETPERSIST), DENY,
		IS(TUNSETOWNER), DENY,
		IS(TUNSETGROUP), DENY,
		IS(TUNSETLINK), DENY,
		IS(SIOCSIFHWADDR), DENY,
		IS(TUNSETSTEERINGEBPF), DENY,
		IS(TUNSETFILTEREBPF), DENY,
		RET(SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]), .filter = f };

	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0)) {
		int e = errno;

		snprintf(err, errlen, "cannot install the seccomp filter: %s", strerror(e));
		return -e;
	}
	return 0;
#else
	snprintf(err, errlen, "no seccomp filter for this architecture");
	return -EOPNOTSUPP;
#endif
}
