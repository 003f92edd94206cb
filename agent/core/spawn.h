/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Running external tools (tpm2-tools, swtpm, later QEMU) without a shell:
 * posix_spawnp with an argv, a timeout, bounded capture of stdout/stderr and
 * a checked exit status.  Children start with an empty signal mask and
 * default dispositions, whatever the agent blocks or ignores.
 *
 * Children are reaped by pid (never waitpid(-1)): nothing else in the agent
 * may reap with waitpid(-1)/SIGCHLD=SIG_IGN, or these calls lose the status.
 */
#ifndef RAYOS_SPAWN_H
#define RAYOS_SPAWN_H

#include <stddef.h>
#include <sys/types.h>

/* Each of stdout and stderr is captured up to this many bytes; the rest is
 * read and dropped so that a chatty child never blocks on a full pipe. */
#define SPAWN_CAPTURE_MAX	(1024 * 1024)

/*
 * Run argv[0] (looked up on PATH) with argv and wait for it.
 *   envp_extra	NULL or "NAME=value" strings added to (overriding) environ
 *   timeout_ms	> 0: SIGTERM when it expires, SIGKILL 500 ms later
 *   stdin_data	NULL: stdin is /dev/null; else written to the child's stdin
 *   out/err_out	NULL: discarded; else a malloc'd NUL-terminated copy
 *   exit_status	NULL or the exit code (128 + signal when killed by one)
 * Returns 0 when the child exited with status 0; -ETIMEDOUT when the timeout
 * killed it; -ECHILD when it exited non-zero or died of a signal (the
 * captured output is still returned); other -errno when it could not start
 * (-ENOENT: no such program).  *out and *err_out are set on every return
 * (NULL when nothing was captured) and are the caller's to free.
 */
int spawn_run(const char *const argv[], const char *const envp_extra[], int timeout_ms,
	      const void *stdin_data, size_t stdin_len,
	      char **out, size_t *out_len, char **err_out, int *exit_status);

/*
 * Start a long-running child (swtpm, QEMU) and return at once.  Its stdin
 * is /dev/null; stdout and stderr go to log_path (appended, created 0600)
 * or /dev/null when log_path is NULL.  *pidfd gets a pidfd (O_CLOEXEC) for
 * epoll or -1 when the kernel has none; pass pidfd NULL to skip it.
 */
int spawn_start(const char *const argv[], const char *const envp_extra[],
		const char *log_path, pid_t *pid, int *pidfd);

/*
 * Stop a child started by spawn_start: SIGTERM, wait up to grace_ms, then
 * SIGKILL, and reap it.  Returns 0 once reaped, -errno otherwise.
 */
int spawn_stop(pid_t pid, int grace_ms);

#endif /* RAYOS_SPAWN_H */
