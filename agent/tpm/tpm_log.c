// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The measured-launch event log (JSON Lines of TCG CEL-JSON records):
 * formatting, parsing, append + fdatasync, replay and verification.  Pure
 * logic plus file I/O, no TPM: the unit tests drive it with known vectors.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/tpm/tpm_log.h"

/*
 * What a record's digests hash: the record without "digests" and "mac",
 * printed canonically (cJSON_PrintUnformatted, keys in this order):
 *   {"recnum":N,"nv_index":I,"content_type":"…","content":{…}}
 * so that a remote verifier, who has no MAC key, still sees any change to
 * the number, the register or the type of a record, not only to its
 * content.  Printing what was parsed from that print gives the same bytes.
 */
static char *event_print(uint64_t recnum, uint32_t nv_index, const char *content_type,
			 const cJSON *content)
{
	cJSON *o = cJSON_CreateObject(), *c = cJSON_Duplicate(content, true);
	char *text = NULL;

	if (o && c) {
		cJSON_AddNumberToObject(o, "recnum", (double)recnum);
		cJSON_AddNumberToObject(o, "nv_index", nv_index);
		cJSON_AddStringToObject(o, "content_type", content_type);
		cJSON_AddItemToObject(o, "content", c);
		c = NULL;
		text = cJSON_PrintUnformatted(o);
	}
	cJSON_Delete(c);
	cJSON_Delete(o);
	return text;
}

static int event_digests(uint64_t recnum, uint32_t nv_index, const char *content_type,
			 const cJSON *content, unsigned int banks,
			 uint8_t digests[TPM_NR_BANKS][TPM_MAX_DIGEST_LEN])
{
	char *text = event_print(recnum, nv_index, content_type, content);
	int err = 0;

	if (!text)
		return -ENOMEM;
	for (int b = 0; b < TPM_NR_BANKS && !err; b++)
		if (banks & (1u << b))
			err = tpm_hash(b, text, strlen(text), digests[b]);
	free(text);
	return err;
}

static int record_mac(cJSON *rec, const uint8_t *key, size_t key_len, uint8_t mac[TPM_MAC_LEN])
{
	char *body = cJSON_PrintUnformatted(rec);
	int err;

	if (!body)
		return -ENOMEM;
	err = hmac_sha256(key, key_len, body, strlen(body), mac);
	free(body);
	return err;
}

int tpm_log_format(uint64_t recnum, uint32_t nv_index, unsigned int banks,
		   const char *content_type, const char *content_json,
		   const uint8_t *key, size_t key_len,
		   char **line, uint8_t digests[TPM_NR_BANKS][TPM_MAX_DIGEST_LEN])
{
	cJSON *content = NULL, *rec = NULL, *arr;
	char hex[2 * TPM_MAX_DIGEST_LEN + 1];
	uint8_t mac[TPM_MAC_LEN];
	int err = -ENOMEM;

	*line = NULL;
	content = cJSON_Parse(content_json);
	if (!content) {
		err = -EINVAL;
		goto out;
	}
	rec = cJSON_CreateObject();
	if (!rec || event_digests(recnum, nv_index, content_type, content, banks, digests))
		goto out;
	cJSON_AddNumberToObject(rec, "recnum", (double)recnum);
	cJSON_AddNumberToObject(rec, "nv_index", nv_index);
	arr = cJSON_AddArrayToObject(rec, "digests");
	for (int b = 0; arr && b < TPM_NR_BANKS; b++) {
		cJSON *d;

		if (!(banks & (1u << b)))
			continue;
		d = cJSON_CreateObject();
		if (!d)
			goto out;
		cJSON_AddItemToArray(arr, d);
		tpm_hex(digests[b], tpm_bank_len(b), hex);
		cJSON_AddStringToObject(d, "hashAlg", tpm_bank_name(b));
		cJSON_AddStringToObject(d, "digest", hex);
	}
	cJSON_AddStringToObject(rec, "content_type", content_type);
	cJSON_AddItemToObject(rec, "content", content);
	content = NULL;
	if (key) {
		err = record_mac(rec, key, key_len, mac);
		if (err)
			goto out;
		tpm_hex(mac, sizeof(mac), hex);
		cJSON_AddStringToObject(rec, "mac", hex);
	}
	*line = cJSON_PrintUnformatted(rec);
	err = *line ? 0 : -ENOMEM;
out:
	cJSON_Delete(content);
	cJSON_Delete(rec);
	return err;
}

static void rec_clear(struct tpm_log_rec *r)
{
	cJSON_Delete(r->content);
	free(r->line);
	memset(r, 0, sizeof(*r));
}

int tpm_log_parse_line(const char *line, size_t len, struct tpm_log_rec *r)
{
	cJSON *o = NULL, *it, *d;
	int err = 0;

	memset(r, 0, sizeof(*r));
	r->line = strndup(line, len);
	if (!r->line)
		return -ENOMEM;
	o = cJSON_Parse(r->line);
	if (!cJSON_IsObject(o)) {
		snprintf(r->bad, sizeof(r->bad), "not a JSON object");
		goto out;
	}
	it = cJSON_GetObjectItemCaseSensitive(o, "recnum");
	if (!cJSON_IsNumber(it) || it->valuedouble < 0) {
		snprintf(r->bad, sizeof(r->bad), "no \"recnum\"");
		goto out;
	}
	r->recnum = (uint64_t)it->valuedouble;
	it = cJSON_GetObjectItemCaseSensitive(o, "nv_index");
	if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble > UINT32_MAX ||
	    it->valuedouble != (double)(uint32_t)it->valuedouble) {
		snprintf(r->bad, sizeof(r->bad), "no valid \"nv_index\"");
		goto out;
	}
	r->nv_index = (uint32_t)it->valuedouble;
	it = cJSON_GetObjectItemCaseSensitive(o, "content_type");
	if (!cJSON_IsString(it)) {
		snprintf(r->bad, sizeof(r->bad), "no \"content_type\"");
		goto out;
	}
	snprintf(r->content_type, sizeof(r->content_type), "%s", it->valuestring);
	cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(o, "digests")) {
		cJSON *alg = cJSON_GetObjectItemCaseSensitive(d, "hashAlg");
		cJSON *dig = cJSON_GetObjectItemCaseSensitive(d, "digest");
		int b = cJSON_IsString(alg) ? tpm_bank_from_name(alg->valuestring) : -1;

		if (b < 0 || !cJSON_IsString(dig) ||
		    tpm_unhex(dig->valuestring, r->digest[b], tpm_bank_len(b))) {
			snprintf(r->bad, sizeof(r->bad), "malformed \"digests\" entry");
			goto out;
		}
		r->banks |= 1u << b;
	}
	it = cJSON_GetObjectItemCaseSensitive(o, "mac");
	if (it) {
		if (!cJSON_IsString(it) || tpm_unhex(it->valuestring, r->mac, TPM_MAC_LEN)) {
			snprintf(r->bad, sizeof(r->bad), "malformed \"mac\"");
			goto out;
		}
		r->has_mac = true;
	}
	r->content = cJSON_DetachItemFromObjectCaseSensitive(o, "content");
	if (!r->content)
		snprintf(r->bad, sizeof(r->bad), "no \"content\"");
out:
	cJSON_Delete(o);
	return err;
}

int tpm_log_push(struct tpm_log *log, struct tpm_log_rec *rec)
{
	if (log->nr == log->cap) {
		size_t cap = log->cap ? log->cap * 2 : 64;
		struct tpm_log_rec *r = realloc(log->recs, cap * sizeof(*r));

		if (!r)
			return -ENOMEM;
		log->recs = r;
		log->cap = cap;
	}
	log->recs[log->nr++] = *rec;
	memset(rec, 0, sizeof(*rec));
	return 0;
}

int tpm_log_load_buf(const char *buf, size_t len, struct tpm_log *log)
{
	size_t off = 0;
	int err;

	memset(log, 0, sizeof(*log));
	while (off < len) {
		const char *nl = memchr(buf + off, '\n', len - off);
		struct tpm_log_rec r;

		if (!nl) {
			log->torn_bytes = len - off;
			break;
		}
		if (nl > buf + off) {	/* blank lines are not records */
			err = tpm_log_parse_line(buf + off, (size_t)(nl - buf - off), &r);
			if (!err)
				err = tpm_log_push(log, &r);
			if (err) {
				rec_clear(&r);
				tpm_log_free(log);
				return err;
			}
		}
		off = (size_t)(nl - buf) + 1;
		log->good_len = (off_t)off;
	}
	return 0;
}

int tpm_log_load(const char *path, struct tpm_log *log)
{
	char *buf = NULL;
	struct stat st;
	size_t got = 0;
	int fd, err = 0;

	memset(log, 0, sizeof(*log));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	if (fstat(fd, &st)) {
		err = -errno;
		goto out;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		err = -ENOMEM;
		goto out;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err = -errno;
			goto out;
		}
		if (!n)
			break;
		got += (size_t)n;
	}
	err = tpm_log_load_buf(buf, got, log);
out:
	free(buf);
	close(fd);
	return err;
}

void tpm_log_free(struct tpm_log *log)
{
	for (size_t i = 0; i < log->nr; i++)
		rec_clear(&log->recs[i]);
	free(log->recs);
	memset(log, 0, sizeof(*log));
}

int tpm_log_append(int fd, const char *line)
{
	size_t len = strlen(line), off = 0;
	char *buf = malloc(len + 1);
	int err = 0;

	if (!buf)
		return -ENOMEM;
	memcpy(buf, line, len);
	buf[len++] = '\n';
	/* One write of the whole line: O_APPEND keeps it contiguous, and a
	 * crash mid-write leaves a line without '\n' that loading drops. */
	while (off < len) {
		ssize_t n = write(fd, buf + off, len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err = -errno;
			goto out;
		}
		off += (size_t)n;
	}
	if (fdatasync(fd))
		err = -errno;
out:
	free(buf);
	return err;
}

int tpm_log_check_record(const struct tpm_log_rec *r, unsigned int banks,
			 const uint8_t *key, size_t key_len, char *why, size_t len)
{
	uint8_t want[TPM_NR_BANKS][TPM_MAX_DIGEST_LEN], mac[TPM_MAC_LEN];
	cJSON *o = NULL;
	int err = 0;

	if (r->bad[0]) {
		snprintf(why, len, "%s", r->bad);
		return -EBADMSG;
	}
	if ((r->banks & banks) != banks) {
		for (int b = 0; b < TPM_NR_BANKS; b++)
			if ((banks & ~r->banks) & (1u << b)) {
				snprintf(why, len, "has no %s digest", tpm_bank_name(b));
				break;
			}
		return -EBADMSG;
	}
	if (r->banks & ~banks) {
		/* A digest nothing checks could claim anything: refuse it. */
		for (int b = 0; b < TPM_NR_BANKS; b++)
			if ((r->banks & ~banks) & (1u << b)) {
				snprintf(why, len, "has a %s digest that no TPM value covers",
					 tpm_bank_name(b));
				break;
			}
		return -EBADMSG;
	}
	err = event_digests(r->recnum, r->nv_index, r->content_type, r->content, r->banks, want);
	if (err)
		return err;
	for (int b = 0; b < TPM_NR_BANKS; b++) {
		if ((r->banks & (1u << b)) && memcmp(want[b], r->digest[b], tpm_bank_len(b))) {
			snprintf(why, len, "does not match its %s digest (content, type or "
				 "number altered)", tpm_bank_name(b));
			return -EBADMSG;
		}
	}
	if (!key)
		return 0;
	if (!r->has_mac) {
		snprintf(why, len, "has no MAC");
		return -EBADMSG;
	}
	o = cJSON_Parse(r->line);
	if (!o)
		return -ENOMEM;
	cJSON_DeleteItemFromObjectCaseSensitive(o, "mac");
	err = record_mac(o, key, key_len, mac);
	cJSON_Delete(o);
	if (err)
		return err;
	if (memcmp(mac, r->mac, sizeof(mac))) {
		snprintf(why, len, "MAC does not match (record altered)");
		return -EBADMSG;
	}
	return 0;
}

void tpm_log_replay(const struct tpm_log *log, size_t upto, unsigned int banks,
		    uint8_t pcr[TPM_NR_BANKS][TPM_MAX_DIGEST_LEN])
{
	memset(pcr, 0, TPM_NR_BANKS * TPM_MAX_DIGEST_LEN);
	for (size_t i = 0; i < upto && i < log->nr; i++)
		for (int b = 0; b < TPM_NR_BANKS; b++)
			if (banks & (1u << b))
				tpm_extend(b, pcr[b], log->recs[i].digest[b]);
}

static bool pcr_equal(unsigned int banks, const uint8_t a[TPM_NR_BANKS][TPM_MAX_DIGEST_LEN],
		      const uint8_t b[TPM_NR_BANKS][TPM_MAX_DIGEST_LEN])
{
	for (int k = 0; k < TPM_NR_BANKS; k++)
		if ((banks & (1u << k)) && memcmp(a[k], b[k], tpm_bank_len(k)))
			return false;
	return true;
}

long tpm_log_matching_prefix(const struct tpm_log *log, unsigned int banks,
			     const uint8_t pcr[TPM_NR_BANKS][TPM_MAX_DIGEST_LEN])
{
	uint8_t cur[TPM_NR_BANKS][TPM_MAX_DIGEST_LEN];
	long best = -1;

	memset(cur, 0, sizeof(cur));
	if (pcr_equal(banks, cur, pcr))
		best = 0;
	for (size_t i = 0; i < log->nr; i++) {
		for (int b = 0; b < TPM_NR_BANKS; b++)
			if (banks & (1u << b))
				tpm_extend(b, cur[b], log->recs[i].digest[b]);
		if (pcr_equal(banks, cur, pcr))
			best = (long)i + 1;
	}
	return best;
}

/* Line (0-based) holding recnum want, or -1. */
static long line_of(const struct tpm_log *log, uint64_t want)
{
	for (size_t i = 0; i < log->nr; i++)
		if (!log->recs[i].bad[0] && log->recs[i].recnum == want)
			return (long)i;
	return -1;
}

/* Why line i carries recnum r instead of i: reordered, removed or
 * duplicated, told apart by where the missing number is. */
static void sequence_report(const struct tpm_log *log, size_t i, uint64_t r, char *report,
			    size_t len)
{
	long at = line_of(log, i);

	if (at > (long)i)
		snprintf(report, len, "records were reordered: line %zu has record %llu, and "
			 "record %zu is on line %ld", i + 1, (unsigned long long)r, i, at + 1);
	else if (r > i)
		snprintf(report, len, "record %zu is missing (line %zu has record %llu): "
			 "records were removed", i, i + 1, (unsigned long long)r);
	else
		snprintf(report, len, "record %llu is duplicated on line %zu: records were "
			 "replayed or copied", (unsigned long long)r, i + 1);
}

int tpm_log_verify(const struct tpm_log *log, uint32_t nv_index, unsigned int banks,
		   const uint8_t val[TPM_NR_BANKS][TPM_MAX_DIGEST_LEN],
		   const uint8_t *key, size_t key_len, char *report, size_t len)
{
	char why[160];
	long k;
	int err;

	if (!banks) {
		snprintf(report, len, "no bank to compare");
		return -EINVAL;
	}
	for (size_t i = 0; i < log->nr; i++) {
		const struct tpm_log_rec *r = &log->recs[i];

		if (!r->bad[0] && r->recnum != i) {
			sequence_report(log, i, r->recnum, report, len);
			return -EBADMSG;
		}
		if (!r->bad[0] && r->nv_index != nv_index) {
			snprintf(report, len, "record %zu is for NV index 0x%08x, not 0x%08x", i,
				 r->nv_index, nv_index);
			return -EBADMSG;
		}
		err = tpm_log_check_record(r, banks, key, key_len, why, sizeof(why));
		if (err == -EBADMSG) {
			snprintf(report, len, "record %zu (line %zu, %s) %s", i, i + 1,
				 r->content_type[0] ? r->content_type : "?", why);
			return err;
		}
		if (err)
			return err;
	}
	k = tpm_log_matching_prefix(log, banks, val);
	if (k == (long)log->nr) {
		snprintf(report, len, "OK: %zu records replay to NV index 0x%08x", log->nr,
			 nv_index);
		return 0;
	}
	if (k >= 0)
		snprintf(report, len,
			 "record %ld (%s) is the first record not in the TPM: NV index 0x%08x "
			 "matches the log through record %ld only (records appended after the "
			 "fact, or extends pending or failed)",
			 k, log->recs[k].content_type, nv_index, k - 1);
	else if (!log->nr)
		snprintf(report, len, "the log is empty but NV index 0x%08x is not: records "
			 "were removed", nv_index);
	else
		snprintf(report, len,
			 "NV index 0x%08x matches no prefix of the log (%zu records): records "
			 "after %zu were removed, a record was replaced, or the index was reset "
			 "and extended again", nv_index, log->nr, log->nr - 1);
	return -EBADMSG;
}

cJSON *tpm_log_to_cel(const struct tpm_log *log)
{
	cJSON *arr = cJSON_CreateArray();

	for (size_t i = 0; arr && i < log->nr; i++) {
		cJSON *o = cJSON_Parse(log->recs[i].line);

		if (o)
			cJSON_AddItemToArray(arr, o);
	}
	return arr;
}
