/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The hash algorithms of TPM PCR banks (SHA-1, SHA-256, SHA-384, SHA-512),
 * small and self-contained: the agent computes each bank's event digest
 * itself and replays logs without a crypto library or tpm2_hash calls.
 * SHA-1 is here only because TPMs still have SHA-1 banks enabled; it must be
 * extended like every other active bank or that bank becomes forgeable.
 */
#ifndef RAYOS_TPM_HASH_H
#define RAYOS_TPM_HASH_H

#include <stddef.h>
#include <stdint.h>

#include "agent/sha256.h"

enum tpm_bank {
	TPM_BANK_SHA1,
	TPM_BANK_SHA256,
	TPM_BANK_SHA384,
	TPM_BANK_SHA512,
	TPM_NR_BANKS,
};

#define TPM_MAX_DIGEST_LEN	64

/* Digest length in bytes; name as tpm2-tools and the TCG JSON log spell it. */
size_t tpm_bank_len(enum tpm_bank b);
const char *tpm_bank_name(enum tpm_bank b);
/* -1 when name is none of the above. */
int tpm_bank_from_name(const char *name);

struct tpm_hash_ctx {
	enum tpm_bank bank;
	struct sha256_ctx s256;		/* SHA-256: agent/sha256.c */
	uint64_t nr_bytes;		/* SHA-1 and SHA-384/512 below */
	union {
		uint32_t s32[5];
		uint64_t s64[8];
	} st;
	uint8_t block[128];
};

void tpm_hash_init(struct tpm_hash_ctx *c, enum tpm_bank b);
void tpm_hash_update(struct tpm_hash_ctx *c, const void *data, size_t len);
void tpm_hash_final(struct tpm_hash_ctx *c, uint8_t *out);
void tpm_hash(enum tpm_bank b, const void *data, size_t len, uint8_t *out);

/* pcr = H(pcr || digest): what TPM2_PCR_Extend does to one bank. */
void tpm_extend(enum tpm_bank b, uint8_t *pcr, const uint8_t *digest);

/* Lower-case hex of len bytes into hex (2 * len + 1); parse: 0 or -EINVAL
 * (an optional "0x" prefix and either case are accepted). */
void tpm_hex(const uint8_t *bin, size_t len, char *hex);
int tpm_unhex(const char *hex, uint8_t *bin, size_t len);

#endif /* RAYOS_TPM_HASH_H */
