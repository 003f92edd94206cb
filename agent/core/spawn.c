// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * posix_spawn wrappers: run a tool with an argv, a timeout and a checked exit
 * status, or start a long-running child.  No shell, ever: arguments are never
 * re-parsed, so a VM name or a path with spaces cannot become a command.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/core/spawn.h"
#include "agent/core/util.h"

extern char **environ;

#define KILL_GRACE_MS	500

static long long now_ms(void)
{
	return (long long)(clock_ns(CLOCK_MONOTONIC) / 1000000);
}

static int pidfd_open_compat(pid_t pid)
{
#ifdef SYS_pidfd_open
	return (int)syscall(SYS_pidfd_open, pid, 0);
#else
	(void)pid;
	errno = ENOSYS;
	return -1;
#endif
}

/* environ with envp_extra added; a NAME=... in envp_extra replaces environ's. */
static char **build_env(const char *const envp_extra[])
{
	size_t n = 0, m = 0, k = 0;
	char **env;

	if (!envp_extra)
		return environ;
	while (environ[n])
		n++;
	while (envp_extra[m])
		m++;
	env = calloc(n + m + 1, sizeof(*env));
	if (!env)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		const char *eq = strchr(environ[i], '=');
		size_t nl = eq ? (size_t)(eq - environ[i]) + 1 : strlen(environ[i]);
		bool overridden = false;

		for (size_t j = 0; j < m && !overridden; j++)
			overridden = !strncmp(envp_extra[j], environ[i], nl);
		if (!overridden)
			env[k++] = environ[i];
	}
	for (size_t j = 0; j < m; j++)
		env[k++] = (char *)envp_extra[j];
	return env;
}

static void free_env(char **env)
{
	if (env != environ)
		free(env);
}

/* Signal mask empty, every disposition default: the agent blocks SIGTERM
 * (signalfd) and ignores SIGPIPE, and children must not inherit either. */
static int init_attr(posix_spawnattr_t *attr, bool own_pgrp)
{
	sigset_t none, all;
	short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
	int err;

	sigemptyset(&none);
	sigfillset(&all);
	err = posix_spawnattr_init(attr);
	if (err)
		return -err;
	if (own_pgrp) {
		/* A terminal's ^C for the agent must not reach swtpm first. */
		flags |= POSIX_SPAWN_SETPGROUP;
		posix_spawnattr_setpgroup(attr, 0);
	}
	posix_spawnattr_setsigmask(attr, &none);
	posix_spawnattr_setsigdefault(attr, &all);
	posix_spawnattr_setflags(attr, flags);
	return 0;
}

struct capture {
	int fd;
	char *buf;
	size_t len, cap;
};

/* Read what is there; returns false at EOF or error (fd closed). */
static bool capture_read(struct capture *c)
{
	char tmp[4096];
	ssize_t n;

	for (;;) {
		n = read(c->fd, tmp, sizeof(tmp));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return true;
		if (n <= 0) {
			close(c->fd);
			c->fd = -1;
			return false;
		}
		if (c->len + (size_t)n > SPAWN_CAPTURE_MAX)
			n = (ssize_t)(SPAWN_CAPTURE_MAX - c->len);	/* drop the rest */
		if (n > 0 && c->len + (size_t)n + 1 > c->cap) {
			size_t cap = c->cap ? c->cap * 2 : 8192;
			char *b;

			while (cap < c->len + (size_t)n + 1)
				cap *= 2;
			b = realloc(c->buf, cap);
			if (!b)
				continue;	/* keep draining, lose the bytes */
			c->buf = b;
			c->cap = cap;
		}
		if (n > 0) {
			memcpy(c->buf + c->len, tmp, (size_t)n);
			c->len += (size_t)n;
			c->buf[c->len] = '\0';
		}
	}
}

static void set_nonblock(int fd)
{
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

static int status_code(int wstatus)
{
	if (WIFEXITED(wstatus))
		return WEXITSTATUS(wstatus);
	if (WIFSIGNALED(wstatus))
		return 128 + WTERMSIG(wstatus);
	return 255;
}

int spawn_run(const char *const argv[], const char *const envp_extra[], int timeout_ms,
	      const void *stdin_data, size_t stdin_len,
	      char **out, size_t *out_len, char **err_out, int *exit_status)
{
	int pin[2] = { -1, -1 }, pout[2] = { -1, -1 }, perr[2] = { -1, -1 };
	struct capture cap_out = { .fd = -1 }, cap_err = { .fd = -1 };
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	bool fa_init = false, attr_init = false, exited = false, timed_out = false;
	long long deadline = 0, kill_at = 0;
	size_t in_off = 0;
	char **env = NULL;
	int pidfd = -1, wstatus = 0, err;
	pid_t pid = -1;

	if (out)
		*out = NULL;
	if (out_len)
		*out_len = 0;
	if (err_out)
		*err_out = NULL;
	if (exit_status)
		*exit_status = -1;
	if (!argv || !argv[0])
		return -EINVAL;

	if (pipe2(pout, O_CLOEXEC) || pipe2(perr, O_CLOEXEC) ||
	    (stdin_data && pipe2(pin, O_CLOEXEC))) {
		err = -errno;
		goto out;
	}
	err = -posix_spawn_file_actions_init(&fa);
	if (err)
		goto out;
	fa_init = true;
	if (stdin_data)
		posix_spawn_file_actions_adddup2(&fa, pin[0], 0);
	else
		posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, pout[1], 1);
	posix_spawn_file_actions_adddup2(&fa, perr[1], 2);
	err = init_attr(&attr, false);
	if (err)
		goto out;
	attr_init = true;
	env = build_env(envp_extra);
	if (!env) {
		err = -ENOMEM;
		goto out;
	}
	err = -posix_spawnp(&pid, argv[0], &fa, &attr, (char *const *)argv, env);
	if (err) {
		pid = -1;
		goto out;
	}
	close(pout[1]);
	close(perr[1]);
	pout[1] = perr[1] = -1;
	if (stdin_data) {
		close(pin[0]);
		pin[0] = -1;
		set_nonblock(pin[1]);
		if (!stdin_len) {
			close(pin[1]);
			pin[1] = -1;
		}
	}
	cap_out.fd = pout[0];
	cap_err.fd = perr[0];
	pout[0] = perr[0] = -1;
	set_nonblock(cap_out.fd);
	set_nonblock(cap_err.fd);
	pidfd = pidfd_open_compat(pid);
	if (timeout_ms > 0)
		deadline = now_ms() + timeout_ms;

	/* Until the child has exited: feed stdin, drain both pipes, watch the
	 * clock.  Without a pidfd, poll in 10 ms steps and ask waitpid. */
	while (!exited) {
		struct pollfd pfd[4];
		int n = 0, wait_ms = pidfd >= 0 ? -1 : 10;
		long long now = now_ms();

		if (deadline && !timed_out && now >= deadline) {
			timed_out = true;
			kill(pid, SIGTERM);
			kill_at = now + KILL_GRACE_MS;
		}
		if (kill_at && now >= kill_at) {
			kill(pid, SIGKILL);
			kill_at = 0;
		}
		if (deadline) {
			long long next = timed_out ? (kill_at ? kill_at : now + 100) : deadline;
			long long left = next - now;

			if (left < 0)
				left = 0;
			if (wait_ms < 0 || left < wait_ms)
				wait_ms = (int)left;
		}
		if (cap_out.fd >= 0)
			pfd[n++] = (struct pollfd){ .fd = cap_out.fd, .events = POLLIN };
		if (cap_err.fd >= 0)
			pfd[n++] = (struct pollfd){ .fd = cap_err.fd, .events = POLLIN };
		if (pin[1] >= 0)
			pfd[n++] = (struct pollfd){ .fd = pin[1], .events = POLLOUT };
		if (pidfd >= 0)
			pfd[n++] = (struct pollfd){ .fd = pidfd, .events = POLLIN };
		if (poll(pfd, n, wait_ms) < 0 && errno != EINTR) {
			err = -errno;
			kill(pid, SIGKILL);
			waitpid(pid, &wstatus, 0);
			goto out;
		}
		if (cap_out.fd >= 0)
			capture_read(&cap_out);
		if (cap_err.fd >= 0)
			capture_read(&cap_err);
		if (pin[1] >= 0) {
			ssize_t w = write(pin[1], (const char *)stdin_data + in_off,
					  stdin_len - in_off);

			if (w > 0)
				in_off += (size_t)w;
			if ((w < 0 && errno != EAGAIN && errno != EINTR) || in_off == stdin_len) {
				close(pin[1]);	/* EPIPE: the child stopped reading */
				pin[1] = -1;
			}
		}
		if (waitpid(pid, &wstatus, WNOHANG) == pid)
			exited = true;
	}
	/* Whatever the child wrote before it exited is in the pipes; a
	 * grandchild that kept them open must not hold us here. */
	if (cap_out.fd >= 0)
		capture_read(&cap_out);
	if (cap_err.fd >= 0)
		capture_read(&cap_err);
	if (exit_status)
		*exit_status = status_code(wstatus);
	if (timed_out)
		err = -ETIMEDOUT;
	else if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus))
		err = -ECHILD;
	/* posix_spawnp reports a missing program as exit 127 from the child
	 * on some libcs; glibc returns ENOENT from posix_spawnp itself. */
out:
	if (pidfd >= 0)
		close(pidfd);
	if (cap_out.fd >= 0)
		close(cap_out.fd);
	if (cap_err.fd >= 0)
		close(cap_err.fd);
	for (int i = 0; i < 2; i++) {
		if (pin[i] >= 0)
			close(pin[i]);
		if (pout[i] >= 0)
			close(pout[i]);
		if (perr[i] >= 0)
			close(perr[i]);
	}
	if (env)
		free_env(env);
	if (attr_init)
		posix_spawnattr_destroy(&attr);
	if (fa_init)
		posix_spawn_file_actions_destroy(&fa);
	if (out) {
		*out = cap_out.buf;
		cap_out.buf = NULL;
	}
	if (out_len)
		*out_len = cap_out.len;
	if (err_out) {
		*err_out = cap_err.buf;
		cap_err.buf = NULL;
	}
	free(cap_out.buf);
	free(cap_err.buf);
	return err;
}

int spawn_start(const char *const argv[], const char *const envp_extra[],
		const char *log_path, pid_t *pid, int *pidfd)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	char **env = NULL;
	int err;

	if (pidfd)
		*pidfd = -1;
	if (!argv || !argv[0] || !pid)
		return -EINVAL;
	err = -posix_spawn_file_actions_init(&fa);
	if (err)
		return err;
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, log_path ? log_path : "/dev/null",
					 O_WRONLY | O_CREAT | O_APPEND, 0600);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	err = init_attr(&attr, true);
	if (err)
		goto out_fa;
	env = build_env(envp_extra);
	if (!env) {
		err = -ENOMEM;
		goto out_attr;
	}
	err = -posix_spawnp(pid, argv[0], &fa, &attr, (char *const *)argv, env);
	if (!err && pidfd) {
		*pidfd = pidfd_open_compat(*pid);
		if (*pidfd >= 0)
			fcntl(*pidfd, F_SETFD, FD_CLOEXEC);
	}
	free_env(env);
out_attr:
	posix_spawnattr_destroy(&attr);
out_fa:
	posix_spawn_file_actions_destroy(&fa);
	return err;
}

int spawn_stop(pid_t pid, int grace_ms)
{
	long long deadline = now_ms() + (grace_ms > 0 ? grace_ms : 0);
	int wstatus;
	pid_t r;

	if (pid <= 0)
		return -EINVAL;
	if (kill(pid, SIGTERM) && errno != ESRCH)
		return -errno;
	for (;;) {
		r = waitpid(pid, &wstatus, WNOHANG);
		if (r == pid)
			return 0;
		if (r < 0)
			return -errno;	/* ECHILD: not ours, or already reaped */
		if (now_ms() >= deadline)
			break;
		usleep(5000);
	}
	kill(pid, SIGKILL);
	if (waitpid(pid, &wstatus, 0) < 0)
		return -errno;
	return 0;
}
