/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The measured-launch event log: what RayOS extended into its NV
 * measurement index (agent/tpm/tpm_attest.h), one record per line (JSON Lines),
 * each line one record of the TCG Canonical Event Log's JSON form:
 *
 *   {"recnum":0,"nv_index":22021412,
 *    "digests":[{"hashAlg":"sha256","digest":"…"}],
 *    "content_type":"rayos/agent-start","content":{…},"mac":"…"}
 *
 * Each digest is that bank's hash of the record's number, index, type and
 * content printed without spaces (see event_print in tpm_log.c), so that
 * renumbering or retyping a record changes its digest.  "mac", a RayOS
 * extension, is HMAC-SHA256 keyed with the TPM NV seed over the line
 * printed without "mac".  A JSON array of the same objects is the CEL-JSON
 * file (tpm_log_to_cel); JSON Lines is what lets the agent append and
 * fdatasync one record at a time.
 *
 * Replay starts from all zeros: the index reads as unwritten after a TPM
 * Reset, and the log lives in the run dir (tmpfs), so both start over at
 * boot and both survive agent restarts within a boot.  A last line without
 * its newline is a torn write (crash during append): it is ignored and
 * truncated away.
 */
#ifndef RAYOS_TPM_LOG_H
#define RAYOS_TPM_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <cjson/cJSON.h>

#include "agent/tpm/tpm_hash.h"

#define TPM_LOG_FILE		"tpm-eventlog.jsonl"
#define TPM_MAC_LEN		32

struct tpm_log_rec {
	uint64_t recnum;
	uint32_t nv_index;
	unsigned int banks;	/* bit per enum tpm_bank with a digest */
	uint8_t digest[TPM_NR_BANKS][TPM_MAX_DIGEST_LEN];
	char content_type[64];
	cJSON *content;		/* owned; NULL when the line did not parse */
	bool has_mac;
	uint8_t mac[TPM_MAC_LEN];
	char *line;		/* the stored line, no newline */
	char bad[96];		/* non-empty: why the line is not a record */
};

struct tpm_log {
	struct tpm_log_rec *recs;
	size_t nr, cap;
	off_t good_len;		/* bytes up to the end of the last complete line */
	size_t torn_bytes;	/* bytes of an unterminated last line, ignored */
};

/* Format a record.  content_json is printed canonically (no spaces); key
 * NULL means no "mac".  *line is malloc'd, without a newline; digests gets
 * each bank in banks.  0 or -errno (-EINVAL: content_json is not JSON). */
int tpm_log_format(uint64_t recnum, uint32_t nv_index, unsigned int banks,
		   const char *content_type, const char *content_json,
		   const uint8_t *key, size_t key_len,
		   char **line, uint8_t digests[TPM_NR_BANKS][TPM_MAX_DIGEST_LEN]);

/* Parse one line into rec (rec->bad says what is wrong); 0 or -ENOMEM. */
int tpm_log_parse_line(const char *line, size_t len, struct tpm_log_rec *rec);

/* Parse a whole file; a missing file is an empty log. */
int tpm_log_load(const char *path, struct tpm_log *log);
int tpm_log_load_buf(const char *buf, size_t len, struct tpm_log *log);
/* Take ownership of rec (appending a freshly formatted record in memory). */
int tpm_log_push(struct tpm_log *log, struct tpm_log_rec *rec);
void tpm_log_free(struct tpm_log *log);

/* Write line + '\n' at the end of fd and fdatasync it: the record must be
 * on disk before its extend (IMA's rule), so a crash leaves the log ahead
 * of the PCR, never behind. */
int tpm_log_append(int fd, const char *line);

/* Per-record checks that need no TPM: the record has a digest for each
 * bank in banks and none other, they match, and with a key the MAC
 * matches.  0, or -EBADMSG with why. */
int tpm_log_check_record(const struct tpm_log_rec *r, unsigned int banks,
			 const uint8_t *key, size_t key_len, char *why, size_t len);

/* Register values after replaying records [0, upto) of every bank in banks. */
void tpm_log_replay(const struct tpm_log *log, size_t upto, unsigned int banks,
		    uint8_t pcr[TPM_NR_BANKS][TPM_MAX_DIGEST_LEN]);

/* Largest k such that replaying [0, k) gives pcr, or -1 when none does. */
long tpm_log_matching_prefix(const struct tpm_log *log, unsigned int banks,
			     const uint8_t pcr[TPM_NR_BANKS][TPM_MAX_DIGEST_LEN]);

/*
 * Check the log against register values (read from the TPM or from a
 * signed attestation): record sequence (removed, reordered, duplicated)
 * and index, digests, MACs when a key is given, then the replay.  0 when
 * everything matches; -EBADMSG with a report naming the first record that
 * does not match.
 */
int tpm_log_verify(const struct tpm_log *log, uint32_t nv_index, unsigned int banks,
		   const uint8_t val[TPM_NR_BANKS][TPM_MAX_DIGEST_LEN],
		   const uint8_t *key, size_t key_len, char *report, size_t len);

/* The log as a CEL-JSON array (records as stored, "mac" included). */
cJSON *tpm_log_to_cel(const struct tpm_log *log);

#endif /* RAYOS_TPM_LOG_H */
