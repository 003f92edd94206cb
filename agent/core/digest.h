/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * SHA-256 from OpenSSL's libcrypto (EVP): the digests of compiled policies,
 * BPF objects, binaries, disk images and argv.  A context keeps the first
 * error, so a caller that feeds many pieces checks once, at the end.
 */
#ifndef RAYOS_DIGEST_H
#define RAYOS_DIGEST_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define SHA256_DIGEST_LEN	32

struct sha256_ctx {
	void *md;	/* EVP_MD_CTX */
	int err;	/* first failure, 0 if none */
};

/* init never fails by itself: a failure shows at final. */
void sha256_init(struct sha256_ctx *ctx);
void sha256_update(struct sha256_ctx *ctx, const void *data, size_t len);
/* Writes the digest, frees the context; 0 or a negative errno. */
int sha256_final(struct sha256_ctx *ctx, uint8_t out[SHA256_DIGEST_LEN]);

/* One-shot digest of data; 0 or -ENOMEM. */
int sha256(const void *data, size_t len, uint8_t out[SHA256_DIGEST_LEN]);

/* Digest of what fd reads to its end, streamed (fd is not closed).  stop,
 * when not NULL, is checked between chunks: -ECANCELED once it is set. */
int sha256_fd(int fd, const atomic_bool *stop, uint8_t out[SHA256_DIGEST_LEN]);

/* Lower-case hex of a digest into hex[2 * SHA256_DIGEST_LEN + 1]. */
void sha256_hex(const uint8_t d[SHA256_DIGEST_LEN], char hex[2 * SHA256_DIGEST_LEN + 1]);

#endif /* RAYOS_DIGEST_H */
