// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * What the hash chain costs an audited change: audit_append (tail read and
 * check, two SHA-256, one write, fdatasync) against the plain append it
 * replaced (open, one write, fdatasync), in the same run, same directory,
 * interleaved so that both see the same disk; p50 and p99 over many.  Then
 * how long audit_check_file takes over the whole log.  Figures only.
 *   bench_audit [N] [DIR]    (default 2000 records each, in /var/tmp (disk)
 *                             and in /dev/shm (tmpfs: the CPU cost alone))
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/audit/audit.h"

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static cJSON *record(int i)
{
	cJSON *r = cJSON_CreateObject();

	cJSON_AddStringToObject(r, "event", "cap_grant");
	cJSON_AddNumberToObject(r, "vm", 1000 + i % 4096);
	cJSON_AddStringToObject(r, "cap", "CAP_GPU");
	cJSON_AddItemToObject(r, "caps_before", cJSON_CreateStringArray(
		(const char *[]){ "CAP_NETWORK" }, 1));
	cJSON_AddItemToObject(r, "caps_after", cJSON_CreateStringArray(
		(const char *[]){ "CAP_NETWORK", "CAP_GPU" }, 2));
	cJSON_AddStringToObject(r, "by", "control socket");
	return r;
}

/* The append before the chain: the record printed, one write, fdatasync. */
static int plain_append(const char *path, cJSON *rec)
{
	char *text = cJSON_PrintUnformatted(rec), *line = NULL;
	int fd, err = 0;

	if (!text || asprintf(&line, "%s\n", text) < 0) {
		cJSON_free(text);
		return -ENOMEM;
	}
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, line, strlen(line)) != (ssize_t)strlen(line) || fdatasync(fd))
		err = -errno ?: -EIO;
	if (fd >= 0)
		close(fd);
	cJSON_free(text);
	free(line);
	return err;
}

static void report(const char *what, double *v, int n)
{
	qsort(v, n, sizeof(*v), cmp);
	printf("# %-34s p50 %8.1f us   p99 %8.1f us   (%d runs)\n", what, v[n / 2],
	       v[(int)(n * 0.99)], n);
}

static int bench_in(const char *base, int n)
{
	char dir[256], chained[300], plain[300];
	double *tc, *tp, t0;
	struct audit_check c;
	int err = 0;

	snprintf(dir, sizeof(dir), "%s/rayos-bench-audit.XXXXXX", base);
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(chained, sizeof(chained), "%s/chained.log", dir);
	snprintf(plain, sizeof(plain), "%s/plain.log", dir);
	tc = calloc(n, sizeof(*tc));
	tp = calloc(n, sizeof(*tp));
	for (int i = 0; i < n && !err; i++) {
		cJSON *r = record(i);

		t0 = now_us();
		err = plain_append(plain, r);
		tp[i] = now_us() - t0;
		t0 = now_us();
		err = err ?: audit_append(chained, r);
		tc[i] = now_us() - t0;
		cJSON_Delete(r);
	}
	if (err) {
		fprintf(stderr, "bench_audit: append failed: %s\n", strerror(-err));
		return 1;
	}
	printf("# audit append, %d records each, in %s (fdatasync on its file system)\n", n, base);
	report("plain append + fdatasync (baseline)", tp, n);
	report("hash-chained audit_append", tc, n);
	t0 = now_us();
	err = audit_check_file(chained, &c);
	t0 = now_us() - t0;
	printf("# audit_check_file over %zu records: %.1f ms (%.2f us a record)%s\n", c.nr,
	       t0 / 1e3, t0 / (c.nr ? c.nr : 1), err || c.bad_line ? " FAILED" : "");
	audit_check_free(&c);
	unlink(chained);
	unlink(plain);
	rmdir(dir);
	free(tc);
	free(tp);
	return err ? 1 : 0;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 2000, err = 0;

	if (n < 10) {
		fprintf(stderr, "bench_audit: N must be at least 10\n");
		return 2;
	}
	if (argc > 2)
		return bench_in(argv[2], n);
	err = bench_in("/var/tmp", n);
	if (!access("/dev/shm", W_OK))
		err = bench_in("/dev/shm", n) ?: err;
	return err;
}
