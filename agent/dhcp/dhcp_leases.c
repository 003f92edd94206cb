// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The lease log: fixed 64-byte records, CRC-32C each, appended in batches
 * with one fdatasync per batch.  Fixed-size records mean a corrupt record in
 * the middle costs only itself, and a torn tail is simply a short or
 * mismatching last record.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "agent/core/log.h"
#include "agent/core/util.h"
#include "agent/dhcp/dhcp_leases.h"

/* The log grows by writing zeroes ahead of the records, a chunk at a time,
 * with one fsync per chunk: a commit then overwrites blocks that already
 * exist, and its fdatasync has no file size or extent map to journal
 * (about 30% cheaper here than appending).  A zero record ends the log. */
#define LEASE_PREALLOC		(1U << 20)

struct lease_store {
	int fd;
	char path[PATH_MAX];
	uint64_t seq;
	uint64_t size;		/* end of the last record */
	uint64_t alloc;		/* file size: records, then zeroes written ahead */
	uint8_t *buf;		/* queued records, encoded */
	size_t len, cap;
};

static uint32_t crc_table[256];

static void crc_init(void)
{
	uint32_t i, j, c;

	if (crc_table[1])
		return;
	for (i = 0; i < 256; i++) {
		c = i;
		for (j = 0; j < 8; j++)
			c = c & 1 ? (c >> 1) ^ 0x82f63b78U : c >> 1;
		crc_table[i] = c;
	}
}

uint32_t crc32c(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	crc_init();
	crc = ~crc;
	while (len--)
		crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

static void put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static void put_le64(uint8_t *p, uint64_t v)
{
	put_le32(p, (uint32_t)v);
	put_le32(p + 4, (uint32_t)(v >> 32));
}

static uint64_t get_le64(const uint8_t *p)
{
	return get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

/* Layout: magic 0..3, kind 4, version 5, mac 6..11, ip_be 12..15,
 * expiry_ms 16..23, seq 24..31, bridge 32..47, zero 48..59, crc 60..63. */
void lease_rec_encode(const struct lease_rec *rec, uint64_t seq, uint8_t out[LEASE_REC_SIZE])
{
	memset(out, 0, LEASE_REC_SIZE);
	put_le32(out, LEASE_REC_MAGIC);
	out[4] = rec->kind;
	out[5] = 1;
	memcpy(out + 6, rec->mac, 6);
	memcpy(out + 12, &rec->ip_be, 4);
	put_le64(out + 16, rec->expiry_ms);
	put_le64(out + 24, seq);
	memcpy(out + 32, rec->bridge, strnlen(rec->bridge, IF_NAMESIZE));
	put_le32(out + 48, rec->vm_id);
	put_le32(out + 60, crc32c(0, out, 60));
}

int lease_rec_decode(const uint8_t in[LEASE_REC_SIZE], struct lease_rec *rec)
{
	if (get_le32(in) != LEASE_REC_MAGIC || in[5] != 1 ||
	    get_le32(in + 60) != crc32c(0, in, 60))
		return -EBADMSG;
	if (in[4] < LEASE_REC_GRANT || in[4] > LEASE_REC_QUARANTINE)
		return -EBADMSG;
	memset(rec, 0, sizeof(*rec));
	rec->kind = in[4];
	memcpy(rec->mac, in + 6, 6);
	memcpy(&rec->ip_be, in + 12, 4);
	rec->expiry_ms = get_le64(in + 16);
	memcpy(rec->bridge, in + 32, IF_NAMESIZE - 1);
	rec->vm_id = get_le32(in + 48);
	return 0;
}

static bool is_zero(const uint8_t *p, size_t len)
{
	while (len--)
		if (*p++)
			return false;
	return true;
}

static int pwrite_all(int fd, const uint8_t *p, size_t len, uint64_t off)
{
	while (len) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

int lease_store_open(const char *path, void (*apply)(void *ctx, const struct lease_rec *),
		     void *ctx, struct lease_load_stats *st, struct lease_store **out)
{
	struct lease_load_stats stats = { 0 };
	struct lease_store *ls;
	uint8_t rec_buf[LEASE_REC_SIZE];
	struct lease_rec rec;
	uint64_t good_end = 0, off = 0;
	FILE *f = NULL;
	int err, fd;

	*out = NULL;
	ls = calloc(1, sizeof(*ls));
	if (!ls)
		return -ENOMEM;
	ls->fd = -1;
	if (snprintf(ls->path, sizeof(ls->path), "%s", path) >= (int)sizeof(ls->path)) {
		err = -ENAMETOOLONG;
		goto out;
	}
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		err = -errno;
		log_err("dhcp: lease database %s: %s", path, strerror(errno));
		goto out;
	}
	ls->fd = fd;
	f = fdopen(dup(fd), "rb");
	if (!f) {
		err = -errno;
		goto out;
	}
	for (;;) {
		size_t n = fread(rec_buf, 1, sizeof(rec_buf), f);

		if (n < sizeof(rec_buf)) {
			stats.torn_bytes = n;
			break;
		}
		if (is_zero(rec_buf, sizeof(rec_buf)))
			break;	/* written ahead, never used */
		off += n;
		if (lease_rec_decode(rec_buf, &rec)) {
			stats.bad++;
			continue;
		}
		good_end = off;
		stats.records++;
		if (apply)
			apply(ctx, &rec);
	}
	if (ferror(f)) {
		err = -EIO;
		goto out;
	}
	/* Drop a torn tail (and any bad records after the last good one) so
	 * that new records start on a record boundary. */
	/* Zeroes written ahead go too: the first commit writes them again. */
	if (ftruncate(fd, (off_t)good_end)) {
		err = -errno;
		goto out;
	}
	{
		if (stats.torn_bytes || off != good_end)
			log_warn("dhcp: %s: dropped %llu bytes of torn or corrupt tail",
				 path, (unsigned long long)(off + stats.torn_bytes - good_end));
	}
	if (stats.bad)
		log_warn("dhcp: %s: %zu corrupt records skipped", path, stats.bad);
	if (lseek(fd, (off_t)good_end, SEEK_SET) < 0) {
		err = -errno;
		goto out;
	}
	ls->size = ls->alloc = good_end;
	ls->seq = stats.records;
	if (st)
		*st = stats;
	*out = ls;
	ls = NULL;
	err = 0;
out:
	if (f)
		fclose(f);
	if (ls)
		lease_store_close(ls);
	return err;
}

void lease_store_close(struct lease_store *ls)
{
	if (!ls)
		return;
	if (ls->len)
		lease_store_commit(ls);
	if (ls->fd >= 0)
		close(ls->fd);
	free(ls->buf);
	free(ls);
}

int lease_store_append(struct lease_store *ls, const struct lease_rec *rec)
{
	if (ls->len + LEASE_REC_SIZE > ls->cap) {
		size_t cap = ls->cap ? ls->cap * 2 : 64 * LEASE_REC_SIZE;
		uint8_t *p = realloc(ls->buf, cap);

		if (!p)
			return -ENOMEM;
		ls->buf = p;
		ls->cap = cap;
	}
	lease_rec_encode(rec, ++ls->seq, ls->buf + ls->len);
	ls->len += LEASE_REC_SIZE;
	return 0;
}

size_t lease_store_pending(const struct lease_store *ls)
{
	return ls->len / LEASE_REC_SIZE;
}

uint64_t lease_store_size(const struct lease_store *ls)
{
	return ls->size;
}

/* Make room for len more bytes of records: zeroes up to the next chunk,
 * then fsync, so that later commits only overwrite. */
static int write_ahead(struct lease_store *ls, size_t len)
{
	static const uint8_t zero[64 * 1024];
	uint64_t end, off;
	int err;

	if (ls->size + len <= ls->alloc)
		return 0;
	end = (ls->size + len + LEASE_PREALLOC - 1) / LEASE_PREALLOC * LEASE_PREALLOC;
	for (off = ls->alloc; off < end; off += sizeof(zero)) {
		err = pwrite_all(ls->fd, zero, end - off < sizeof(zero) ? end - off : sizeof(zero), off);
		if (err)
			return err;
	}
	if (fsync(ls->fd))
		return -errno;
	ls->alloc = end;
	return 0;
}

int lease_store_commit(struct lease_store *ls)
{
	int err;

	if (!ls->len)
		return 0;
	err = write_ahead(ls, ls->len);
	if (!err)
		err = pwrite_all(ls->fd, ls->buf, ls->len, ls->size);
	if (err) {
		/* A partial write leaves a torn record that the next load
		 * drops, and the retry overwrites it at the same offset. */
		log_err("dhcp: writing %s: %s", ls->path, strerror(-err));
		return err;
	}
	if (fdatasync(ls->fd)) {
		err = -errno;
		log_err("dhcp: fdatasync %s: %s", ls->path, strerror(errno));
		return err;
	}
	ls->size += ls->len;
	ls->len = 0;
	return 0;
}

int lease_store_compact(struct lease_store *ls,
			bool (*next)(void *ctx, struct lease_rec *rec), void *ctx)
{
	char tmp[PATH_MAX + 8];
	uint8_t buf[LEASE_REC_SIZE * 64];
	struct lease_rec rec;
	uint64_t seq = 0, size = 0;
	size_t n = 0;
	int fd = -1, err;

	err = lease_store_commit(ls);
	if (err)
		return err;
	snprintf(tmp, sizeof(tmp), "%s.tmp", ls->path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		err = -errno;
		goto out;
	}
	while (next(ctx, &rec)) {
		lease_rec_encode(&rec, ++seq, buf + n * LEASE_REC_SIZE);
		if (++n == 64) {
			err = pwrite_all(fd, buf, sizeof(buf), size);
			if (err)
				goto out;
			size += sizeof(buf);
			n = 0;
		}
	}
	err = pwrite_all(fd, buf, n * LEASE_REC_SIZE, size);
	if (err)
		goto out;
	size += n * LEASE_REC_SIZE;
	if (fsync(fd)) {
		err = -errno;
		goto out;
	}
	if (rename(tmp, ls->path)) {
		err = -errno;
		goto out;
	}
	err = fsync_dir_of(ls->path);
	if (err)
		goto out;
	/* The new file is the log now: append to it. */
	close(ls->fd);
	ls->fd = fd;
	fd = -1;
	ls->size = ls->alloc = size;
	ls->seq = seq;
out:
	if (fd >= 0) {
		close(fd);
		unlink(tmp);
	}
	if (err)
		log_err("dhcp: compacting %s: %s", ls->path, strerror(-err));
	return err;
}
