// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* The hash-chained, write-ahead audit log (audit.h). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "agent/audit/audit.h"
#include "agent/core/util.h"

#define HASH_KEY	",\"hash\":\""
#define HASH_KEY_LEN	(sizeof(HASH_KEY) - 1)
#define HASH_TAIL_LEN	(HASH_KEY_LEN + AUDIT_HEX_LEN + 2)	/* ,"hash":"…"} */
#define SEQ_MAX		(1ull << 53)	/* exact in a JSON number */
#define KNOWN_MAX	16

/*
 * The head each log path had when this process last wrote or read it.  A
 * different head later means someone else changed the file: appending
 * would chain onto records the agent never wrote (or past ones it did that
 * are gone), so it is refused.  One lock also serializes this process's
 * appends (flock does it across processes).
 */
static struct known_head {
	char path[PATH_MAX];
	dev_t dev;
	ino_t ino;		/* 0: there was no file */
	struct audit_head head;
} known[KNOWN_MAX];
static size_t nr_known;
static pthread_mutex_t known_lock = PTHREAD_MUTEX_INITIALIZER;

static bool is_hex64(const char *s)
{
	if (strlen(s) != AUDIT_HEX_LEN)
		return false;
	for (size_t i = 0; i < AUDIT_HEX_LEN; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

static int hex_sha256(const void *data, size_t len, char hex[AUDIT_HEX_LEN + 1])
{
	uint8_t d[SHA256_DIGEST_LEN];
	int err = sha256(data, len, d);

	if (!err)
		sha256_hex(d, hex);
	return err;
}

/* SHA-256 of the record without its hash: the bytes before ,"hash": and "}". */
static int body_sha256(const char *line, size_t body_len, char hex[AUDIT_HEX_LEN + 1])
{
	struct sha256_ctx ctx;
	uint8_t d[SHA256_DIGEST_LEN];
	int err;

	sha256_init(&ctx);
	sha256_update(&ctx, line, body_len);
	sha256_update(&ctx, "}", 1);
	err = sha256_final(&ctx, d);
	if (!err)
		sha256_hex(d, hex);
	return err;
}

int audit_parse_line(const char *line, size_t len, struct audit_line *out, cJSON **recp,
		     char *why, size_t wlen)
{
	const cJSON *seq, *prev, *hash, *t;
	char own[AUDIT_HEX_LEN + 1];
	size_t body_len;
	cJSON *rec;
	int err = -EBADMSG;

	if (recp)
		*recp = NULL;
	memset(out, 0, sizeof(*out));
	if (!len) {
		snprintf(why, wlen, "is empty");
		return -EBADMSG;
	}
	rec = cJSON_ParseWithLength(line, len);
	if (!cJSON_IsObject(rec)) {
		snprintf(why, wlen, "is not a JSON object");
		goto out;
	}
	seq = cJSON_GetObjectItemCaseSensitive(rec, "seq");
	prev = cJSON_GetObjectItemCaseSensitive(rec, "prev");
	hash = cJSON_GetObjectItemCaseSensitive(rec, "hash");
	t = cJSON_GetObjectItemCaseSensitive(rec, "time");
	if (!cJSON_IsNumber(seq) || seq->valuedouble < 1 || seq->valuedouble > (double)SEQ_MAX ||
	    seq->valuedouble != (double)(uint64_t)seq->valuedouble) {
		snprintf(why, wlen, "has no \"seq\" (a whole number from 1)");
		goto out;
	}
	if (!cJSON_IsString(prev) || !is_hex64(prev->valuestring)) {
		snprintf(why, wlen, "has no \"prev\" (64 lowercase hex digits)");
		goto out;
	}
	if (!cJSON_IsString(hash) || !is_hex64(hash->valuestring)) {
		snprintf(why, wlen, "has no \"hash\" (64 lowercase hex digits)");
		goto out;
	}
	/* The hash covers the exact bytes, so it must be the last member. */
	if (len <= HASH_TAIL_LEN + 1 ||
	    memcmp(line + len - HASH_TAIL_LEN, HASH_KEY, HASH_KEY_LEN) ||
	    memcmp(line + len - HASH_TAIL_LEN + HASH_KEY_LEN, hash->valuestring, AUDIT_HEX_LEN) ||
	    memcmp(line + len - 2, "\"}", 2)) {
		snprintf(why, wlen, "does not end with its \"hash\" member as written");
		goto out;
	}
	body_len = len - HASH_TAIL_LEN;
	err = body_sha256(line, body_len, own);
	if (err)
		goto out;
	if (strcmp(own, hash->valuestring)) {
		snprintf(why, wlen, "does not match its own hash: the record was changed after "
			 "it was written");
		err = -EBADMSG;
		goto out;
	}
	err = hex_sha256(line, len, out->sha256);
	if (err)
		goto out;
	out->seq = (uint64_t)seq->valuedouble;
	snprintf(out->prev, sizeof(out->prev), "%s", prev->valuestring);
	out->time = cJSON_IsNumber(t) ? t->valuedouble : 0;
	if (recp) {
		*recp = rec;
		rec = NULL;
	}
out:
	cJSON_Delete(rec);
	return err;
}

/* The last line of fd (size bytes), without its newline, in *line
 * (malloc'd; NULL for an empty file). */
static int read_tail(int fd, off_t size, char **line, size_t *len, char *why, size_t wlen)
{
	size_t window = 4096;
	char last, *buf = NULL;

	*line = NULL;
	*len = 0;
	if (!size)
		return 0;
	if (pread(fd, &last, 1, size - 1) != 1)
		return -EIO;
	if (last != '\n') {
		snprintf(why, wlen, "its last line is incomplete (no newline at the end): a "
			 "record was cut off");
		return -EBADMSG;
	}
	for (;;) {
		off_t end = size - 1;
		off_t start = end > (off_t)window ? end - (off_t)window : 0;
		size_t n = (size_t)(end - start);
		char *nl;

		free(buf);
		buf = malloc(n + 1);
		if (!buf)
			return -ENOMEM;
		if (pread(fd, buf, n, start) != (ssize_t)n) {
			free(buf);
			return -EIO;
		}
		buf[n] = '\0';
		nl = memrchr(buf, '\n', n);
		if (nl || !start) {
			size_t off = nl ? (size_t)(nl + 1 - buf) : 0;

			memmove(buf, buf + off, n - off + 1);
			*line = buf;
			*len = n - off;
			return 0;
		}
		if (window > AUDIT_MAX_LINE) {
			free(buf);
			snprintf(why, wlen, "its last line is longer than %u bytes: not a record",
				 AUDIT_MAX_LINE);
			return -EBADMSG;
		}
		window *= 2;
	}
}

static struct known_head *known_find(const char *path)
{
	for (size_t i = 0; i < nr_known; i++)
		if (!strcmp(known[i].path, path))
			return &known[i];
	return NULL;
}

static void known_set(const char *path, const struct stat *st, const struct audit_head *h)
{
	struct known_head *k = known_find(path);

	if (!k && nr_known < KNOWN_MAX && strlen(path) < sizeof(k->path)) {
		k = &known[nr_known++];
		snprintf(k->path, sizeof(k->path), "%s", path);
	}
	if (!k)
		return;		/* more logs than anyone uses: only the tail check */
	k->dev = st ? st->st_dev : 0;
	k->ino = st ? st->st_ino : 0;
	k->head = *h;
}

/*
 * The head of the open log fd (st: its fstat, NULL when there is no file),
 * checked: the last line verifies, and it is the head this process last
 * knew (the first look at a path learns it).  Called with known_lock held.
 */
static int checked_head(const char *path, int fd, const struct stat *st,
			struct audit_head *h, char *why, size_t wlen)
{
	struct known_head *k = known_find(path);
	struct audit_line al;
	const char *pre = "";
	char lwhy[160] = "";
	size_t len = 0;
	char *line = NULL;
	int err = 0;

	h->seq = 0;
	snprintf(h->sha256, sizeof(h->sha256), "%s", AUDIT_GENESIS);
	if (st)
		err = read_tail(fd, st->st_size, &line, &len, lwhy, sizeof(lwhy));
	if (!err && line) {
		err = audit_parse_line(line, len, &al, NULL, lwhy, sizeof(lwhy));
		if (!err) {
			h->seq = al.seq;
			memcpy(h->sha256, al.sha256, sizeof(h->sha256));
		} else if (err == -EBADMSG) {
			pre = "its last line ";
		}
	}
	free(line);
	if (err == -EBADMSG) {
		snprintf(why, wlen, "%s: %s%s; no record is chained onto a log that does not "
			 "verify: restore it, or move it aside and restart the agent "
			 "(rayos-agent audit verify --log %s names the bad line)", path, pre, lwhy,
			 path);
		return err;
	}
	if (err) {
		snprintf(why, wlen, "%s: %s", path, strerror(-err));
		return err;
	}
	if (!k) {
		known_set(path, st, h);
		return 0;
	}
	if (k->ino && (!st || st->st_ino != k->ino || st->st_dev != k->dev)) {
		snprintf(why, wlen, "%s was removed or replaced behind the agent (which wrote "
			 "or read its record %" PRIu64 " last): no record is chained onto a "
			 "different file; put the log back, or restart the agent to continue from "
			 "the file as it is (rayos-agent audit verify checks it against the TPM)",
			 path, k->head.seq);
		return -EBADMSG;
	}
	if (h->seq != k->head.seq || strcmp(h->sha256, k->head.sha256)) {
		snprintf(why, wlen, "%s changed behind the agent: its last record is %" PRIu64
			 " (%.12s…), the agent wrote or read %" PRIu64 " (%.12s…) last; no record "
			 "is chained onto it: put the log back, or restart the agent to continue "
			 "from the file as it is (rayos-agent audit verify --log %s shows what "
			 "changed)", path, h->seq, h->sha256, k->head.seq, k->head.sha256, path);
		return -EBADMSG;
	}
	if (!k->ino && st)
		known_set(path, st, h);		/* the file was created since */
	return 0;
}

/* The record as it is written: seq, prev, time, the caller's members. */
static cJSON *chained_record(const cJSON *rec, const struct audit_head *h)
{
	static const char *const ours[] = { "seq", "prev", "time", "hash" };
	struct timespec ts;
	const cJSON *it;
	cJSON *o = cJSON_CreateObject();

	if (!o)
		return NULL;
	clock_gettime(CLOCK_REALTIME, &ts);
	cJSON_AddNumberToObject(o, "seq", (double)(h->seq + 1));
	cJSON_AddStringToObject(o, "prev", h->sha256);
	cJSON_AddNumberToObject(o, "time", (double)ts.tv_sec + ts.tv_nsec / 1e9);
	cJSON_ArrayForEach(it, rec) {
		bool skip = !it->string;
		cJSON *dup;

		for (size_t i = 0; !skip && i < sizeof(ours) / sizeof(ours[0]); i++)
			skip = !strcmp(it->string, ours[i]);
		if (skip)
			continue;
		dup = cJSON_Duplicate(it, true);
		if (!dup) {
			cJSON_Delete(o);
			return NULL;
		}
		cJSON_AddItemToObject(o, it->string, dup);
	}
	return o;
}

/* text (a printed object) + ,"hash":"H"} + newline; *line malloc'd. */
static int seal(const char *text, char **line, size_t *len)
{
	size_t tlen = strlen(text);
	char own[AUDIT_HEX_LEN + 1];
	int err;

	if (!tlen || text[tlen - 1] != '}')
		return -EINVAL;
	err = body_sha256(text, tlen - 1, own);
	if (err)
		return err;
	if (asprintf(line, "%.*s" HASH_KEY "%s\"}\n", (int)(tlen - 1), text, own) < 0)
		return -ENOMEM;
	*len = strlen(*line);
	return 0;
}

static int append(const char *path, cJSON *rec, bool sync)
{
	char why[PATH_MAX + 512];
	struct audit_head h;
	struct stat st;
	char *text = NULL, *line = NULL;
	size_t len = 0;
	cJSON *o = NULL;
	bool created;
	ssize_t n;
	int fd, err;

	if (!cJSON_IsObject(rec))
		return -EINVAL;
	pthread_mutex_lock(&known_lock);
	created = access(path, F_OK) != 0;
	fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		err = -errno;
		goto out;
	}
	if (flock(fd, LOCK_EX) || fstat(fd, &st)) {
		err = -errno;
		goto out;
	}
	err = checked_head(path, fd, &st, &h, why, sizeof(why));
	if (err)
		goto out;
	o = chained_record(rec, &h);
	text = o ? cJSON_PrintUnformatted(o) : NULL;
	err = text ? seal(text, &line, &len) : -ENOMEM;
	if (err)
		goto out;
	if (len > AUDIT_MAX_LINE) {
		err = -E2BIG;
		goto out;
	}
	/* One write of the whole line: O_APPEND keeps lines whole. */
	n = write(fd, line, len);
	if (n != (ssize_t)len) {
		err = n < 0 ? -errno : -ENOSPC;
		/* Half a record would break the chain for good: cut it off. */
		if (n > 0 && ftruncate(fd, st.st_size))
			err = -EIO;
		goto out;
	}
	if (sync && fdatasync(fd)) {
		err = -errno;
		goto out;
	}
	h.seq++;
	err = hex_sha256(line, len - 1, h.sha256);
	if (err)
		goto out;
	known_set(path, &st, &h);
	if (created)
		err = fsync_dir_of(path);	/* the new file's entry */
out:
	if (fd >= 0)
		close(fd);
	pthread_mutex_unlock(&known_lock);
	cJSON_Delete(o);
	cJSON_free(text);
	free(line);
	return err;
}

int audit_append(const char *path, cJSON *rec)
{
	return append(path, rec, true);
}

int audit_append_nosync(const char *path, cJSON *rec)
{
	return append(path, rec, false);
}

int audit_sync(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), err = 0;

	if (fd < 0)
		return -errno;
	if (fdatasync(fd))
		err = -errno;
	close(fd);
	return err;
}

int audit_head(const char *path, struct audit_head *head, char *why, size_t len)
{
	struct stat st;
	int fd, err;

	pthread_mutex_lock(&known_lock);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 && errno != ENOENT) {
		err = -errno;
		snprintf(why, len, "%s: %s", path, strerror(errno));
		goto out;
	}
	if (fd >= 0 && (flock(fd, LOCK_SH) || fstat(fd, &st))) {
		err = -errno;
		snprintf(why, len, "%s: %s", path, strerror(errno));
		goto out;
	}
	err = checked_head(path, fd, fd >= 0 ? &st : NULL, head, why, len);
out:
	if (fd >= 0)
		close(fd);
	pthread_mutex_unlock(&known_lock);
	return err;
}

int audit_known_head(const char *path, struct audit_head *head)
{
	const struct known_head *k;

	pthread_mutex_lock(&known_lock);
	k = known_find(path);
	if (k)
		*head = k->head;
	pthread_mutex_unlock(&known_lock);
	return k ? 0 : -ENOENT;
}

int audit_probe(const char *path, char *why, size_t len)
{
	struct audit_head h;
	struct statvfs vfs;
	int fd, err = 0;

	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		err = -errno;
		snprintf(why, len, "%s: %s", path, strerror(errno));
		return err;
	}
	if (fstatvfs(fd, &vfs)) {
		err = -errno;
		snprintf(why, len, "%s: %s", path, strerror(errno));
	} else if (vfs.f_flag & ST_RDONLY) {
		err = -EROFS;
		snprintf(why, len, "%s: %s", path, strerror(EROFS));
	} else if (vfs.f_bavail == 0) {
		err = -ENOSPC;
		snprintf(why, len, "%s: %s", path, strerror(ENOSPC));
	}
	close(fd);
	return err ?: audit_head(path, &h, why, len);
}

/* ---- the whole chain ---- */

/* Line number (1-based) of the first line after from whose seq is seq. */
static size_t find_seq(const char *buf, size_t len, size_t from, size_t line_no, uint64_t seq)
{
	char prefix[40];
	size_t plen = (size_t)snprintf(prefix, sizeof(prefix), "{\"seq\":%" PRIu64 ",", seq);

	for (size_t pos = from; pos < len; line_no++) {
		const char *nl = memchr(buf + pos, '\n', len - pos);
		size_t end = nl ? (size_t)(nl - buf) : len;

		if (end - pos >= plen && !memcmp(buf + pos, prefix, plen))
			return line_no;
		pos = end + 1;
	}
	return 0;
}

static int push_line(struct audit_check *c, const struct audit_line *al)
{
	struct audit_line *n;

	if (c->nr == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 64;

		n = realloc(c->lines, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		c->lines = n;
		c->cap = cap;
	}
	c->lines[c->nr++] = *al;
	return 0;
}

int audit_check_buf(const char *buf, size_t len, struct audit_check *c)
{
	size_t pos = 0, line_no = 1;
	char why[200];
	int err;

	memset(c, 0, sizeof(*c));
	for (; pos < len; line_no++) {
		const char *nl = memchr(buf + pos, '\n', len - pos);
		size_t end = nl ? (size_t)(nl - buf) : len, at;
		struct audit_line al;

		c->bad_line = line_no;
		if (!nl) {
			snprintf(c->why, sizeof(c->why), "line %zu is incomplete (no newline at the "
				 "end): the log was cut off in the middle of a record", line_no);
			return 0;
		}
		err = audit_parse_line(buf + pos, end - pos, &al, NULL, why, sizeof(why));
		if (err == -ENOMEM)
			return err;
		if (err) {
			snprintf(c->why, sizeof(c->why), "line %zu %s", line_no, why);
			return 0;
		}
		if (al.seq > line_no) {
			at = find_seq(buf, len, end + 1, line_no + 1, line_no);
			if (at)
				snprintf(c->why, sizeof(c->why), "line %zu holds record %" PRIu64
					 " where record %zu belongs, and record %zu is at line %zu: "
					 "lines are out of order", line_no, al.seq, line_no, line_no,
					 at);
			else if (al.seq == line_no + 1)
				snprintf(c->why, sizeof(c->why), "line %zu holds record %" PRIu64
					 ": record %zu is missing (deleted)", line_no, al.seq,
					 line_no);
			else
				snprintf(c->why, sizeof(c->why), "line %zu holds record %" PRIu64
					 ": records %zu to %" PRIu64 " are missing (deleted)",
					 line_no, al.seq, line_no, al.seq - 1);
			return 0;
		}
		if (al.seq < line_no) {
			snprintf(c->why, sizeof(c->why), "line %zu holds record %" PRIu64 " again "
				 "(record %zu was expected): lines are duplicated or out of order",
				 line_no, al.seq, line_no);
			return 0;
		}
		if (line_no == 1 && strcmp(al.prev, AUDIT_GENESIS)) {
			snprintf(c->why, sizeof(c->why), "line 1: its \"prev\" is not the genesis "
				 "value: the records before it were removed");
			return 0;
		}
		if (line_no > 1 && strcmp(al.prev, c->lines[c->nr - 1].sha256)) {
			snprintf(c->why, sizeof(c->why), "line %zu: its \"prev\" is not the SHA-256 "
				 "of line %zu: line %zu was changed (its own hash recomputed) or "
				 "replaced", line_no, line_no - 1, line_no - 1);
			return 0;
		}
		err = push_line(c, &al);
		if (err)
			return err;
		pos = end + 1;
	}
	c->bad_line = 0;
	return 0;
}

int audit_check_file(const char *path, struct audit_check *c)
{
	size_t len = 0;
	char *buf = NULL;
	int err;

	memset(c, 0, sizeof(*c));
	err = audit_read_file(path, &buf, &len);
	if (err == -ENOENT)
		return 0;
	if (!err)
		err = audit_check_buf(buf, len, c);
	free(buf);
	return err;
}

int audit_read_file(const char *path, char **buf, size_t *len)
{
	struct stat st;
	size_t off = 0;
	int fd, err = 0;

	*buf = NULL;
	*len = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (flock(fd, LOCK_SH) || fstat(fd, &st)) {
		err = -errno;
		goto out;
	}
	*buf = malloc((size_t)st.st_size + 1);
	if (!*buf) {
		err = -ENOMEM;
		goto out;
	}
	/* Lines are appended whole under the lock: read up to the size seen. */
	while (off < (size_t)st.st_size) {
		ssize_t n = read(fd, *buf + off, (size_t)st.st_size - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			err = n < 0 ? -errno : 0;
			break;
		}
		off += (size_t)n;
	}
	(*buf)[off] = '\0';
	*len = off;
out:
	close(fd);
	if (err) {
		free(*buf);
		*buf = NULL;
	}
	return err;
}

void audit_check_free(struct audit_check *c)
{
	free(c->lines);
	c->lines = NULL;
	c->nr = 0;
}
