/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Lease database: an append-only log of fixed-size, checksummed records in
 * the state dir.  Records are buffered and written with one fdatasync per
 * event-loop batch (group commit): the server sends an ACK only after the
 * commit that carries its lease returned.  A torn or corrupt record is
 * detected by its checksum and dropped on load; compaction writes the live
 * leases to a new file, syncs it and renames it over the log.
 */
#ifndef RAYOS_DHCP_LEASES_H
#define RAYOS_DHCP_LEASES_H

#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LEASE_REC_SIZE		64
#define LEASE_REC_MAGIC		0x314c5352U	/* "RSL1" little-endian */

enum lease_rec_kind {
	LEASE_REC_GRANT = 1,		/* mac holds ip until expiry */
	LEASE_REC_FREE = 2,		/* released (or declined): ip no longer mac's */
	LEASE_REC_QUARANTINE = 3,	/* ip unusable until expiry (DECLINE, ARP conflict) */
};

/* One record as the engine sees it; on disk it is 64 little-endian bytes
 * ending with a CRC-32C over the first 60.  vm_id sits in bytes 48..51,
 * which records written before it had are zero in. */
struct lease_rec {
	uint8_t kind;			/* enum lease_rec_kind */
	uint8_t mac[6];
	uint32_t ip_be;
	uint64_t expiry_ms;		/* CLOCK_REALTIME milliseconds */
	char bridge[IF_NAMESIZE];
	uint32_t vm_id;			/* the VM that owns it; 0: keyed by mac */
};

struct lease_load_stats {
	size_t records;			/* valid records replayed */
	size_t bad;			/* records whose checksum or magic failed */
	size_t torn_bytes;		/* partial record at the end */
};

struct lease_store;

/* Replays every valid record of path (created if missing) through apply, in
 * order, then leaves the store open for appending.  st may be NULL. */
int lease_store_open(const char *path, void (*apply)(void *ctx, const struct lease_rec *),
		     void *ctx, struct lease_load_stats *st, struct lease_store **out);
void lease_store_close(struct lease_store *ls);

/* Queue one record; nothing reaches the disk before lease_store_commit(). */
int lease_store_append(struct lease_store *ls, const struct lease_rec *rec);
/* Records queued since the last commit. */
size_t lease_store_pending(const struct lease_store *ls);
/* Write the queued records and fdatasync once.  On failure the records stay
 * queued (retried on the next commit) and -errno is returned. */
int lease_store_commit(struct lease_store *ls);
/* Bytes in the log file (for the compaction heuristic). */
uint64_t lease_store_size(const struct lease_store *ls);

/* Rewrite the log with only the records that next() yields (it returns
 * false when done): new file, fsync, rename over the log, fsync the dir.
 * Queued records are committed first. */
int lease_store_compact(struct lease_store *ls,
			bool (*next)(void *ctx, struct lease_rec *rec), void *ctx);

/* Encode/decode one on-disk record (exposed for tests and the fuzzer). */
void lease_rec_encode(const struct lease_rec *rec, uint64_t seq, uint8_t out[LEASE_REC_SIZE]);
int lease_rec_decode(const uint8_t in[LEASE_REC_SIZE], struct lease_rec *rec);

uint32_t crc32c(uint32_t crc, const void *buf, size_t len);

#endif
