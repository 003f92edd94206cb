// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * TCP probes for the fail-closed tests: whether ports a policy allows keep
 * connecting and ports it denies never do, round after round, while the
 * test kills the agent, renames policies or swaps the policy directory.
 *
 *   tool_probe serve ADDR PORT...      accept and close on each port (until killed)
 *   tool_probe probe ADDR --allow P,P --deny P,P [--timeout-ms N]
 *              [--interval-ms N] [--stop-file F] [--max-seconds S] [--rounds N]
 *
 * probe runs rounds (every port of both lists connected at once, each
 * connect given timeout-ms) until the stop file appears, max-seconds pass
 * or it has run N rounds, then prints one JSON line:
 *   {"rounds", "allowed_ok", "allowed_failed", "denied_blocked",
 *    "denied_connected", "first_bad"}
 * A denied port that connects or an allowed one that does not is "bad".
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_PORTS	16

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int parse_ports(const char *s, int *ports, int max)
{
	int n = 0;

	while (*s && n < max) {
		char *end;
		long p = strtol(s, &end, 10);

		if (end == s || p < 1 || p > 65535)
			return -1;
		ports[n++] = (int)p;
		s = *end == ',' ? end + 1 : end;
		if (*end && *end != ',')
			return -1;
	}
	return n;
}

static int serve(const char *addr, int argc, char **argv)
{
	struct pollfd pfd[MAX_PORTS];
	int n = 0;

	for (int i = 0; i < argc && n < MAX_PORTS; i++) {
		struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[i])) };
		int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);

		inet_pton(AF_INET, addr, &sa.sin_addr);
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 128)) {
			fprintf(stderr, "tool_probe: %s:%s: %s\n", addr, argv[i], strerror(errno));
			return 1;
		}
		pfd[n].fd = fd;
		pfd[n++].events = POLLIN;
	}
	printf("ready\n");
	fflush(stdout);
	for (uint64_t end = now_ms() + 600000; now_ms() < end;) {
		if (poll(pfd, n, 1000) < 0 && errno != EINTR)
			return 1;
		for (int i = 0; i < n; i++) {
			int c;

			if (!(pfd[i].revents & POLLIN))
				continue;
			while ((c = accept4(pfd[i].fd, NULL, NULL, SOCK_NONBLOCK)) >= 0)
				close(c);
		}
	}
	return 0;
}

struct probe {
	int port;
	bool allowed;
	int fd;
	int result;		/* 1 connected, 0 not (yet) */
};

/* One round: every port at once; results in p[i].result. */
static void round_once(struct sockaddr_in *sa, struct probe *p, int n, int timeout_ms)
{
	struct pollfd pfd[2 * MAX_PORTS];
	uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
	int left = 0;

	for (int i = 0; i < n; i++) {
		p[i].result = 0;
		p[i].fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
		sa->sin_port = htons(p[i].port);
		if (p[i].fd < 0)
			continue;
		if (!connect(p[i].fd, (struct sockaddr *)sa, sizeof(*sa))) {
			p[i].result = 1;
		} else if (errno == EINPROGRESS) {
			left++;
			continue;
		}
		close(p[i].fd);
		p[i].fd = -1;
	}
	while (left > 0) {
		uint64_t now = now_ms();
		int k = 0, r;

		if (now >= deadline)
			break;
		for (int i = 0; i < n; i++)
			if (p[i].fd >= 0) {
				pfd[k].fd = p[i].fd;
				pfd[k++].events = POLLOUT;
			}
		r = poll(pfd, k, (int)(deadline - now));
		if (r <= 0)
			continue;
		for (int j = 0; j < k; j++) {
			int err = 0;
			socklen_t len = sizeof(err);

			if (!pfd[j].revents)
				continue;
			for (int i = 0; i < n; i++) {
				if (p[i].fd != pfd[j].fd)
					continue;
				getsockopt(p[i].fd, SOL_SOCKET, SO_ERROR, &err, &len);
				p[i].result = err == 0;
				close(p[i].fd);
				p[i].fd = -1;
				left--;
			}
		}
	}
	for (int i = 0; i < n; i++)
		if (p[i].fd >= 0) {
			close(p[i].fd);
			p[i].fd = -1;
		}
}

static int probe(const char *addr, int argc, char **argv)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	const char *stop = NULL;
	int timeout_ms = 500, interval_ms = 10, max_s = 120, max_rounds = 0;
	struct probe p[2 * MAX_PORTS];
	int n = 0, ports[MAX_PORTS], k;
	uint64_t rounds = 0, a_ok = 0, a_fail = 0, d_block = 0, d_conn = 0, end;
	char first_bad[128] = "";

	if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1)
		return 2;
	for (int i = 0; i + 1 < argc; i += 2) {
		bool allow = !strcmp(argv[i], "--allow");

		if (allow || !strcmp(argv[i], "--deny")) {
			k = parse_ports(argv[i + 1], ports, MAX_PORTS);
			if (k < 0)
				return 2;
			for (int j = 0; j < k && n < 2 * MAX_PORTS; j++)
				p[n++] = (struct probe){ .port = ports[j], .allowed = allow, .fd = -1 };
		} else if (!strcmp(argv[i], "--timeout-ms")) {
			timeout_ms = atoi(argv[i + 1]);
		} else if (!strcmp(argv[i], "--interval-ms")) {
			interval_ms = atoi(argv[i + 1]);
		} else if (!strcmp(argv[i], "--stop-file")) {
			stop = argv[i + 1];
		} else if (!strcmp(argv[i], "--max-seconds")) {
			max_s = atoi(argv[i + 1]);
		} else if (!strcmp(argv[i], "--rounds")) {
			max_rounds = atoi(argv[i + 1]);
		} else {
			return 2;
		}
	}
	if (!n)
		return 2;
	end = now_ms() + (uint64_t)max_s * 1000;
	while (now_ms() < end && !(stop && !access(stop, F_OK)) &&
	       !(max_rounds && rounds >= (uint64_t)max_rounds)) {
		round_once(&sa, p, n, timeout_ms);
		rounds++;
		for (int i = 0; i < n; i++) {
			bool bad = p[i].allowed != (p[i].result == 1);

			if (p[i].allowed)
				p[i].result ? a_ok++ : a_fail++;
			else
				p[i].result ? d_conn++ : d_block++;
			if (bad && !first_bad[0])
				snprintf(first_bad, sizeof(first_bad), "round %llu: port %d %s",
					 (unsigned long long)rounds, p[i].port,
					 p[i].allowed ? "did not connect" : "connected");
		}
		usleep((useconds_t)interval_ms * 1000);
	}
	printf("{\"rounds\":%llu,\"allowed_ok\":%llu,\"allowed_failed\":%llu,"
	       "\"denied_blocked\":%llu,\"denied_connected\":%llu,\"first_bad\":\"%s\"}\n",
	       (unsigned long long)rounds, (unsigned long long)a_ok, (unsigned long long)a_fail,
	       (unsigned long long)d_block, (unsigned long long)d_conn, first_bad);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 4 && !strcmp(argv[1], "serve"))
		return serve(argv[2], argc - 3, argv + 3);
	if (argc >= 3 && !strcmp(argv[1], "probe"))
		return probe(argv[2], argc - 3, argv + 3);
	fprintf(stderr, "usage: tool_probe serve ADDR PORT... | probe ADDR --allow P,P "
		"--deny P,P [--timeout-ms N] [--interval-ms N] [--stop-file F] "
		"[--max-seconds S] [--rounds N]\n");
	return 2;
}
