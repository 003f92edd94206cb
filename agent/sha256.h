/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * SHA-256 (FIPS 180-4), small and self-contained: digests of the compiled
 * policy and, later, TPM measurements, without pulling in a crypto library.
 */
#ifndef RAYOS_SHA256_H
#define RAYOS_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_DIGEST_LEN	32
#define SHA256_BLOCK_LEN	64

struct sha256_ctx {
	uint32_t state[8];
	uint64_t nr_bytes;		/* message length so far */
	uint8_t block[SHA256_BLOCK_LEN];	/* partial block, nr_bytes % 64 used */
};

void sha256_init(struct sha256_ctx *ctx);
void sha256_update(struct sha256_ctx *ctx, const void *data, size_t len);
/* Writes the digest and wipes ctx; init again to reuse it. */
void sha256_final(struct sha256_ctx *ctx, uint8_t out[SHA256_DIGEST_LEN]);

/* One-shot digest of data. */
void sha256(const void *data, size_t len, uint8_t out[SHA256_DIGEST_LEN]);

#endif /* RAYOS_SHA256_H */
