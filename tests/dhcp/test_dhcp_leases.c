// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Lease log: append and reload, written-ahead zeroes, torn tail, corrupt
 * record, compaction; then a child that grants and frees leases in a loop
 * and reports each one only after its commit returned, killed with SIGKILL
 * at random moments many times: the log must always load, hold every
 * reported record in order, and never give one address to two MACs.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "agent/core/log.h"
#include "agent/dhcp/dhcp_leases.h"
#include "tests/lib/tap.h"

#define MAX_RECS	200000

static struct lease_rec recs[MAX_RECS];
static size_t nr_recs;

static void collect(void *ctx, const struct lease_rec *r)
{
	(void)ctx;
	if (nr_recs < MAX_RECS)
		recs[nr_recs++] = *r;
}

static int load(const char *path, struct lease_load_stats *st)
{
	struct lease_store *ls;
	int err;

	nr_recs = 0;
	err = lease_store_open(path, collect, NULL, st, &ls);
	if (!err)
		lease_store_close(ls);
	return err;
}

static struct lease_rec mkrec(uint8_t kind, uint32_t i)
{
	struct lease_rec r = { .kind = kind, .ip_be = htonl(0xc6120000 | (i & 0xffff)),
			       .expiry_ms = 1000 + i, .bridge = "br0" };

	r.mac[0] = 0x52;
	r.mac[4] = (uint8_t)(i >> 8);
	r.mac[5] = (uint8_t)i;
	return r;
}

static off_t file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) ? -1 : st.st_size;
}

static void test_basic(const char *dir)
{
	char path[512];
	struct lease_store *ls;
	struct lease_load_stats st;
	struct lease_rec r;
	uint8_t junk[30];
	int fd, i;

	snprintf(path, sizeof(path), "%s/basic.log", dir);
	ASSERT_EQ(lease_store_open(path, collect, NULL, &st, &ls), 0, "open creates the log");
	for (i = 0; i < 5; i++) {
		r = mkrec(LEASE_REC_GRANT, (uint32_t)i);
		lease_store_append(ls, &r);
	}
	ASSERT_EQ(lease_store_pending(ls), 5, "records queued");
	ASSERT_EQ(load(path, &st), 0, "loads while records are only queued");
	ASSERT_EQ(nr_recs, 0, "nothing on disk before commit");
	ASSERT_EQ(lease_store_commit(ls), 0, "commit");
	ASSERT_TRUE(file_size(path) >= 5 * LEASE_REC_SIZE, "file written ahead");
	lease_store_close(ls);
	ASSERT_EQ(load(path, &st), 0, "reload");
	ASSERT_EQ(nr_recs, 5, "five records back");
	r = mkrec(LEASE_REC_GRANT, 3);
	ASSERT_TRUE(!memcmp(&recs[3], &r, sizeof(r)), "record 3 identical after reload");
	ASSERT_EQ(file_size(path), 5 * LEASE_REC_SIZE, "load drops the written-ahead zeroes");

	/* A torn tail: part of a record. */
	fd = open(path, O_WRONLY | O_APPEND);
	memset(junk, 0xab, sizeof(junk));
	ASSERT_EQ(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk), "append a torn record");
	close(fd);
	ASSERT_EQ(load(path, &st), 0, "torn tail loads");
	ASSERT_TRUE(nr_recs == 5 && st.torn_bytes == 30, "torn tail dropped");
	ASSERT_EQ(file_size(path), 5 * LEASE_REC_SIZE, "torn tail truncated");

	/* A corrupt record in the middle costs only itself. */
	fd = open(path, O_RDWR);
	ASSERT_EQ(pwrite(fd, "\x01", 1, 2 * LEASE_REC_SIZE + 20), 1, "flip a byte of record 2");
	close(fd);
	ASSERT_EQ(load(path, &st), 0, "corrupt record loads");
	ASSERT_TRUE(nr_recs == 4 && st.bad == 1, "checksum catches the corrupt record");
	ASSERT_EQ(recs[2].expiry_ms, 1003, "records after it survive");

	/* Full-record garbage at the end is a torn tail too. */
	fd = open(path, O_WRONLY | O_APPEND);
	memset(junk, 0x11, sizeof(junk));
	write(fd, junk, sizeof(junk));
	write(fd, junk, sizeof(junk));
	write(fd, junk, 4);
	close(fd);
	ASSERT_EQ(load(path, &st), 0, "garbage record at the end loads");
	ASSERT_EQ(file_size(path), 5 * LEASE_REC_SIZE, "garbage after the last good record truncated");
}

struct compact_src {
	int i, n;
};

static bool compact_next(void *ctx, struct lease_rec *r)
{
	struct compact_src *s = ctx;

	if (s->i >= s->n)
		return false;
	*r = mkrec(LEASE_REC_GRANT, (uint32_t)(100 + s->i++));
	return true;
}

static void test_compact(const char *dir)
{
	struct compact_src src = { 0, 3 };
	struct lease_store *ls;
	struct lease_load_stats st;
	struct lease_rec r;
	char path[512], tmp[520];
	int i;

	snprintf(path, sizeof(path), "%s/compact.log", dir);
	lease_store_open(path, NULL, NULL, NULL, &ls);
	for (i = 0; i < 1000; i++) {
		r = mkrec(LEASE_REC_GRANT, (uint32_t)i);
		lease_store_append(ls, &r);
		if (i % 100 == 99)
			lease_store_commit(ls);
	}
	ASSERT_EQ(lease_store_size(ls), 1000 * LEASE_REC_SIZE, "1000 records logged");
	r = mkrec(LEASE_REC_FREE, 7);
	lease_store_append(ls, &r);	/* queued: compaction commits it first */
	ASSERT_EQ(lease_store_compact(ls, compact_next, &src), 0, "compaction");
	ASSERT_EQ(lease_store_size(ls), 3 * LEASE_REC_SIZE, "only the live records remain");
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	ASSERT_TRUE(access(tmp, F_OK) != 0, "no temporary file left");
	r = mkrec(LEASE_REC_GRANT, 5000);
	lease_store_append(ls, &r);
	ASSERT_EQ(lease_store_commit(ls), 0, "append after compaction");
	lease_store_close(ls);
	ASSERT_EQ(load(path, &st), 0, "compacted log loads");
	ASSERT_TRUE(nr_recs == 4 && recs[0].expiry_ms == 1100 && recs[3].expiry_ms == 6000,
		    "compacted records, then the new one");
}

/* ---- SIGKILL loop ---- */

#define POOL	64

/* The child: replays the log to learn who holds what, then grants free
 * addresses and frees held ones at random, reporting each record on the
 * pipe only after its commit returned (as the server sends an ACK). */
static void child(const char *path, int wfd, unsigned int seed)
{
	uint8_t owner[POOL][6];
	bool held[POOL] = { false };
	struct lease_store *ls;
	size_t i;

	if (load(path, NULL))
		_exit(2);
	for (i = 0; i < nr_recs; i++) {
		uint32_t ip = ntohl(recs[i].ip_be) & 0xff;

		if (ip >= POOL)
			_exit(3);
		held[ip] = recs[i].kind == LEASE_REC_GRANT;
		memcpy(owner[ip], recs[i].mac, 6);
	}
	if (lease_store_open(path, NULL, NULL, NULL, &ls))
		_exit(4);
	srandom(seed);
	for (;;) {
		struct lease_rec batch[8];
		int n = 1 + (int)(random() % 8), k;

		for (k = 0; k < n; k++) {
			uint32_t ip = (uint32_t)random() % POOL;
			struct lease_rec *r = &batch[k];

			memset(r, 0, sizeof(*r));
			strcpy(r->bridge, "br0");
			r->ip_be = htonl(0xc6120000 | ip);
			r->expiry_ms = (uint64_t)random();
			if (held[ip]) {
				r->kind = LEASE_REC_FREE;
				memcpy(r->mac, owner[ip], 6);
				held[ip] = false;
			} else {
				r->kind = LEASE_REC_GRANT;
				r->mac[0] = 0x52;
				r->mac[3] = (uint8_t)random();
				r->mac[4] = (uint8_t)random();
				r->mac[5] = (uint8_t)random();
				memcpy(owner[ip], r->mac, 6);
				held[ip] = true;
			}
			if (lease_store_append(ls, r))
				_exit(5);
		}
		if (lease_store_commit(ls))
			_exit(6);
		if (write(wfd, batch, sizeof(batch[0]) * (size_t)n) < 0)
			_exit(7);
	}
}

static void test_kill_loop(const char *dir)
{
	static struct lease_rec acked[MAX_RECS];
	char path[512];
	size_t base = 0, nacked, i;
	int round, rounds = 60, bad_parse = 0, missing = 0, doubled = 0, torn = 0;
	struct timespec ts;

	snprintf(path, sizeof(path), "%s/kill.log", dir);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	srandom((unsigned int)ts.tv_nsec);
	for (round = 0; round < rounds; round++) {
		struct lease_load_stats st;
		int p[2], status;
		ssize_t n;
		pid_t pid;
		uint8_t owner[POOL][6];
		bool held[POOL] = { false };

		if (pipe(p))
			break;
		pid = fork();
		if (pid == 0) {
			close(p[0]);
			child(path, p[1], (unsigned int)random());
		}
		close(p[1]);
		usleep(2000 + (useconds_t)(random() % 30000));
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		nacked = 0;
		while ((n = read(p[0], acked + nacked, sizeof(acked[0]) * 64)) > 0 &&
		       nacked + 64 < MAX_RECS)
			nacked += (size_t)n / sizeof(acked[0]);
		close(p[0]);
		if (WIFEXITED(status)) {
			tap_diag("child exited with %d", WEXITSTATUS(status));
			bad_parse++;
			break;
		}
		if (load(path, &st)) {
			bad_parse++;
			continue;
		}
		torn += st.torn_bytes != 0;
		/* Everything reported is on disk, in order, after what the
		 * child found there. */
		if (nr_recs < base + nacked) {
			missing++;
		} else {
			for (i = 0; i < nacked; i++)
				if (memcmp(&recs[base + i], &acked[i], sizeof(acked[i]))) {
					missing++;
					break;
				}
		}
		/* No address held by two MACs at once. */
		for (i = 0; i < nr_recs; i++) {
			uint32_t ip = ntohl(recs[i].ip_be) & 0xff;

			if (ip >= POOL) {
				doubled++;
				break;
			}
			if (recs[i].kind == LEASE_REC_GRANT) {
				if (held[ip] && memcmp(owner[ip], recs[i].mac, 6))
					doubled++;
				held[ip] = true;
				memcpy(owner[ip], recs[i].mac, 6);
			} else {
				held[ip] = false;
			}
		}
		base = nr_recs;
	}
	ASSERT_EQ(bad_parse, 0, "log always loads after SIGKILL");
	ASSERT_EQ(missing, 0, "every committed (ACKed) record survives SIGKILL, in order");
	ASSERT_EQ(doubled, 0, "no address granted to two MACs");
	tap_diag("%d kills, %zu records in the log, %d loads found a torn tail", rounds, base, torn);
}

int main(void)
{
	static const char *const files[] = { "basic.log", "compact.log", "kill.log" };
	char dir[] = "/tmp/rayos-leases.XXXXXX", path[128];
	size_t i;

	log_set_level(LOG_LVL_ERR);
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	test_basic(dir);
	test_compact(dir);
	test_kill_loop(dir);
	for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		unlink(path);
	}
	if (rmdir(dir))
		tap_diag("could not remove %s", dir);
	return tap_done();
}
