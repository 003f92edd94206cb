/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The hash algorithms of TPM PCR banks (SHA-1, SHA-256, SHA-384, SHA-512)
 * and HMAC-SHA256, from libcrypto: the agent computes each bank's event
 * digest itself and replays logs without tpm2_hash calls.
 * SHA-1 is here only because TPMs still have SHA-1 banks enabled; it must be
 * extended like every other active bank or that bank becomes forgeable.
 */
#ifndef RAYOS_TPM_HASH_H
#define RAYOS_TPM_HASH_H

#include <stddef.h>
#include <stdint.h>

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

/* 0, or -ENOMEM / -EINVAL (no such bank) from libcrypto. */
int tpm_hash(enum tpm_bank b, const void *data, size_t len, uint8_t *out);

/* pcr = H(pcr || digest): what TPM2_PCR_Extend does to one bank. */
int tpm_extend(enum tpm_bank b, uint8_t *pcr, const uint8_t *digest);

/* HMAC-SHA256 (the event log's record MACs). */
#define TPM_SHA256_LEN	32
int hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
		uint8_t out[TPM_SHA256_LEN]);

/* Lower-case hex of len bytes into hex (2 * len + 1); parse: 0 or -EINVAL
 * (an optional "0x" prefix and either case are accepted). */
void tpm_hex(const uint8_t *bin, size_t len, char *hex);
int tpm_unhex(const char *hex, uint8_t *bin, size_t len);

#endif /* RAYOS_TPM_HASH_H */
