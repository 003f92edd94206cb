// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Busy clients against the agent's control socket: IDLE connections that
 * never send anything, held by PROCS processes (each a separate peer for
 * SO_PEERCRED), optionally reconnecting as soon as the agent closes one;
 * meanwhile CALLS `status` requests through the CLI's own client code,
 * one after the other, each timed.
 *
 *   tool_ctl_clients SOCK [--idle N] [--procs P] [--reconnect] [--calls M]
 *                         [--timeout-ms T]
 *
 * Prints one JSON line: {"idle", "procs", "reconnect", "held", "calls", "ok",
 * "failed", "p50_ms", "p99_ms", "max_ms", "first_error"}.  "held" is how
 * many of the idle connections were open (connected, not closed by the
 * agent) when the calls began.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/control/control.h"

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int connect_one(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		close(fd);
		return -1;
	}
	return fd;
}

/* One holder process: n connections, reported on the pipe once open;
 * with reconnect, each one the agent closes is opened again. */
static void __attribute__((noreturn)) holder(const char *path, int n, bool reconnect,
					     int report)
{
	struct pollfd *pfd = calloc(n, sizeof(*pfd));
	char byte = 1;

	for (int i = 0; i < n; i++) {
		pfd[i].fd = connect_one(path);
		pfd[i].events = POLLIN;
	}
	if (write(report, &byte, 1) != 1)
		_exit(1);
	for (;;) {
		if (poll(pfd, n, 1000) < 0 && errno != EINTR)
			_exit(1);
		for (int i = 0; i < n; i++) {
			char buf[256];

			if (!pfd[i].revents)
				continue;
			/* The agent closed it (EOF, or its parting words first). */
			if (recv(pfd[i].fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
				continue;
			close(pfd[i].fd);
			pfd[i].fd = reconnect ? connect_one(path) : -1;
		}
	}
}

/* Sockets the holders have open right now (/proc/PID/fd): a connection
 * the agent closed is closed by its holder within a poll round. */
static int held(pid_t *pids, int procs)
{
	int n = 0;

	for (int p = 0; p < procs; p++) {
		char path[64], target[64];

		for (int fd = 3; fd < 4096; fd++) {
			ssize_t len;

			snprintf(path, sizeof(path), "/proc/%d/fd/%d", pids[p], fd);
			len = readlink(path, target, sizeof(target) - 1);
			if (len < 0)
				continue;
			target[len] = '\0';
			n += !strncmp(target, "socket:", 7);
		}
	}
	return n;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	int idle = 0, procs = 1, calls = 100, timeout_ms = 5000, ok = 0, failed = 0, nheld;
	bool reconnect = false;
	char first_error[256] = "";
	const char *sock;
	pid_t *pids;
	double *t;
	int pipefd[2];

	if (argc < 2) {
		fprintf(stderr, "usage: tool_ctl_clients SOCK [--idle N] [--procs P] "
			"[--reconnect] [--calls M] [--timeout-ms T]\n");
		return 2;
	}
	sock = argv[1];
	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--reconnect"))
			reconnect = true;
		else if (i + 1 < argc && !strcmp(argv[i], "--idle"))
			idle = atoi(argv[++i]);
		else if (i + 1 < argc && !strcmp(argv[i], "--procs"))
			procs = atoi(argv[++i]);
		else if (i + 1 < argc && !strcmp(argv[i], "--calls"))
			calls = atoi(argv[++i]);
		else if (i + 1 < argc && !strcmp(argv[i], "--timeout-ms"))
			timeout_ms = atoi(argv[++i]);
		else
			return 2;
	}
	if (procs < 1 || idle < 0 || calls < 1 || pipe(pipefd))
		return 2;
	pids = calloc(procs, sizeof(*pids));
	t = calloc(calls, sizeof(*t));
	for (int p = 0; p < procs && idle; p++) {
		pids[p] = fork();
		if (pids[p] == 0) {
			close(pipefd[0]);
			holder(sock, idle / procs + (p < idle % procs), reconnect, pipefd[1]);
			_exit(0);
		}
	}
	close(pipefd[1]);
	for (int p = 0; p < procs && idle; p++) {
		char byte;

		if (read(pipefd[0], &byte, 1) != 1)
			break;
	}
	usleep(200 * 1000);	/* let the agent take them all in */
	nheld = idle ? held(pids, procs) : 0;

	for (int i = 0; i < calls; i++) {
		cJSON *req = cJSON_CreateObject(), *reply = NULL;
		double t0 = now_ms();
		int err;

		cJSON_AddStringToObject(req, "cmd", "status");
		err = control_call(sock, req, &reply, timeout_ms);
		t[i] = now_ms() - t0;
		if (!err && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "ok"))) {
			ok++;
		} else {
			failed++;
			if (!first_error[0])
				snprintf(first_error, sizeof(first_error), "call %d: %s", i,
					 err ? strerror(-err) : "reply not ok");
		}
		cJSON_Delete(req);
		cJSON_Delete(reply);
	}
	for (int p = 0; p < procs && idle; p++) {
		kill(pids[p], SIGKILL);
		waitpid(pids[p], NULL, 0);
	}
	qsort(t, calls, sizeof(*t), cmp_double);
	printf("{\"idle\":%d,\"procs\":%d,\"reconnect\":%s,\"held\":%d,\"calls\":%d,\"ok\":%d,"
	       "\"failed\":%d,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,"
	       "\"first_error\":\"%s\"}\n", idle, procs, reconnect ? "true" : "false", nheld,
	       calls, ok, failed, t[calls / 2], t[(int)(calls * 0.99) < calls ? (int)(calls * 0.99)
									 : calls - 1],
	       t[calls - 1], first_error);
	free(t);
	free(pids);
	return 0;
}
