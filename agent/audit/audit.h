/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The audit log: a hash chain of JSON records, one per line, appended with
 * O_APPEND and synced before the caller changes anything (write-ahead), so
 * that no audited change can happen without its record.  A change whose
 * record cannot be written and synced is refused; one that fails after its
 * record gets a second record saying so.
 *
 * Each line is one JSON object printed without spaces, in this order:
 *
 *   {"seq":N,"prev":"<hex>","time":T,<the caller's members>,"hash":"<hex>"}
 *
 * seq counts from 1 with no gap; prev is the SHA-256 of the previous line's
 * exact bytes (without its newline), AUDIT_GENESIS for seq 1; hash is the
 * SHA-256 of the line's bytes before ,"hash": followed by "}", i.e. the
 * record printed without "hash".  time is CLOCK_REALTIME seconds.  The head
 * of the log is the last record's seq and the SHA-256 of its line: what the
 * next record's prev will be, and what the agent measures into the TPM
 * (agent/audittrail.c), so that removing records from the end, which the
 * chain alone cannot show, is caught up to the last measured head.
 *
 * Appending never rechains silently: the last line must verify (parse, own
 * hash) and, within one process, be the very record this process last
 * wrote or saw (same file, same seq, same hash).  Otherwise appends are
 * refused with -EBADMSG and audit_probe says why (the agent then reports
 * audit_log_unwritable and refuses audited changes): the admin restores
 * the log or moves it aside and restarts the agent, which then continues
 * from whatever the file holds; `rayos-agent audit verify` shows the rest.
 *
 * Thread-safe; appends to one file are serialized by flock, so two writers
 * never chain onto the same record.
 */
#ifndef RAYOS_AUDIT_H
#define RAYOS_AUDIT_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "agent/core/digest.h"

#define AUDIT_HEX_LEN		(2 * SHA256_DIGEST_LEN)
/* prev of the first record. */
#define AUDIT_GENESIS \
	"0000000000000000000000000000000000000000000000000000000000000000"
/* Longest line appended or read back; a record is a few hundred bytes. */
#define AUDIT_MAX_LINE		(1u << 20)

struct audit_head {
	uint64_t seq;				/* 0: the log is empty */
	char sha256[AUDIT_HEX_LEN + 1];		/* of the last line; AUDIT_GENESIS if empty */
};

/*
 * Append rec as the next record of path's chain: seq, prev and time are
 * added (the caller's members of those names and "hash" are dropped; rec
 * itself is not changed), one write, fdatasync; a new file's directory
 * entry is synced too.  0 or -errno: -EBADMSG when the last line does not
 * verify or is not the head this process knows (audit_probe says which),
 * -E2BIG for a record longer than AUDIT_MAX_LINE.  A short write (disk
 * full) is cut off again, so the file never keeps half a record.
 */
int audit_append(const char *path, cJSON *rec);

/* audit_append without the fdatasync: the record is in the file (a killed
 * agent loses nothing) but not yet on disk; audit_sync() makes it so.  For
 * a change whose enforcement must not wait for the disk (revoke-all): write,
 * enforce, sync, then report done. */
int audit_append_nosync(const char *path, cJSON *rec);
int audit_sync(const char *path);

/* Could a record be appended now?  Opens path for appending (creating it),
 * looks at the free space of its file system and checks the last line as
 * audit_append would, writing nothing.  0, or -errno with why (e.g.
 * "read-only file system", "no space left", "line 7 … edited") in buf. */
int audit_probe(const char *path, char *why, size_t len);

/* The head of path now (checked as audit_probe does; a missing file is an
 * empty log).  The first call for a path in a process is where the chain
 * is picked up: later calls and appends must find the head it left. */
int audit_head(const char *path, struct audit_head *head, char *why, size_t len);

/* The head this process last wrote or read for path (what the next append
 * must find): 0, or -ENOENT when it never looked at path. */
int audit_known_head(const char *path, struct audit_head *head);

/*
 * One line (without its newline) checked alone: JSON object, integer seq
 * >= 1, prev of 64 hex digits, hash last and matching the line.  0 with
 * seq, prev (hex) and the line's own SHA-256 (hex), or -EBADMSG with why.
 * rec (optional) gets the parsed object, the caller frees it.
 */
struct audit_line {
	uint64_t seq;
	char prev[AUDIT_HEX_LEN + 1];
	char sha256[AUDIT_HEX_LEN + 1];		/* of the whole line */
	double time;
};
int audit_parse_line(const char *line, size_t len, struct audit_line *out, cJSON **rec,
		     char *why, size_t wlen);

/*
 * The whole chain: every line complete and well formed, seq 1, 2, 3 …
 * (a jump, a repeat or a swap is named: missing, duplicated, reordered),
 * prev of line 1 AUDIT_GENESIS and of every other line the SHA-256 of the
 * line before.  Fills lines[0..nr) with the lines that check, in order (so
 * lines[i].seq == i + 1); bad_line 0 when the whole file checks, else the
 * first bad line (1-based) and why.  0 (also when a line is bad: look at
 * bad_line), -ENOMEM, or -errno reading the file (a missing one is empty).
 */
struct audit_check {
	struct audit_line *lines;
	size_t nr, cap;
	size_t bad_line;
	char why[512];
};
int audit_check_buf(const char *buf, size_t len, struct audit_check *c);
int audit_check_file(const char *path, struct audit_check *c);
void audit_check_free(struct audit_check *c);

/* The whole file (read under a shared lock, so no append is half seen),
 * NUL-terminated, in *buf (caller frees); -ENOENT when it does not exist. */
int audit_read_file(const char *path, char **buf, size_t *len);

#endif
