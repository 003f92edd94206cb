// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* SHA-256 over libcrypto's EVP interface (see digest.h). */
#include <errno.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "agent/core/digest.h"

void sha256_init(struct sha256_ctx *ctx)
{
	ctx->err = 0;
	ctx->md = EVP_MD_CTX_new();
	if (!ctx->md || EVP_DigestInit_ex(ctx->md, EVP_sha256(), NULL) != 1)
		ctx->err = -ENOMEM;
}

void sha256_update(struct sha256_ctx *ctx, const void *data, size_t len)
{
	if (!ctx->err && EVP_DigestUpdate(ctx->md, data, len) != 1)
		ctx->err = -ENOMEM;
}

int sha256_final(struct sha256_ctx *ctx, uint8_t out[SHA256_DIGEST_LEN])
{
	int err = ctx->err;

	if (!err && EVP_DigestFinal_ex(ctx->md, out, NULL) != 1)
		err = -ENOMEM;
	EVP_MD_CTX_free(ctx->md);
	ctx->md = NULL;
	return err;
}

int sha256(const void *data, size_t len, uint8_t out[SHA256_DIGEST_LEN])
{
	return EVP_Digest(data, len, out, NULL, EVP_sha256(), NULL) == 1 ? 0 : -ENOMEM;
}

int sha256_fd(int fd, const atomic_bool *stop, uint8_t out[SHA256_DIGEST_LEN])
{
	struct sha256_ctx ctx;
	uint8_t buf[65536];
	ssize_t n;

	sha256_init(&ctx);
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		if (stop && atomic_load(stop)) {
			ctx.err = ctx.err ?: -ECANCELED;
			break;
		}
		sha256_update(&ctx, buf, (size_t)n);
	}
	if (n < 0 && !ctx.err)
		ctx.err = -errno;
	return sha256_final(&ctx, out);
}

void sha256_hex(const uint8_t d[SHA256_DIGEST_LEN], char hex[2 * SHA256_DIGEST_LEN + 1])
{
	static const char digits[] = "0123456789abcdef";

	for (int i = 0; i < SHA256_DIGEST_LEN; i++) {
		hex[2 * i] = digits[d[i] >> 4];
		hex[2 * i + 1] = digits[d[i] & 15];
	}
	hex[2 * SHA256_DIGEST_LEN] = '\0';
}
