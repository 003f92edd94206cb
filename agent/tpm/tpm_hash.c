// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The digest of each PCR bank's algorithm, extends and the record MAC,
 * all through OpenSSL's libcrypto (EVP): the agent computes every active
 * bank's event digest itself and replays logs without tpm2_hash calls.
 */
#include <errno.h>
#include <string.h>

#include <openssl/evp.h>

#include "agent/tpm/tpm_hash.h"

static const struct {
	const char *name;
	size_t len;
} banks[TPM_NR_BANKS] = {
	[TPM_BANK_SHA1] = { "sha1", 20 },
	[TPM_BANK_SHA256] = { "sha256", 32 },
	[TPM_BANK_SHA384] = { "sha384", 48 },
	[TPM_BANK_SHA512] = { "sha512", 64 },
};

size_t tpm_bank_len(enum tpm_bank b)
{
	return b < TPM_NR_BANKS ? banks[b].len : 0;
}

const char *tpm_bank_name(enum tpm_bank b)
{
	return b < TPM_NR_BANKS ? banks[b].name : "?";
}

int tpm_bank_from_name(const char *name)
{
	for (int b = 0; b < TPM_NR_BANKS; b++)
		if (!strcmp(name, banks[b].name))
			return b;
	return -1;
}

static const EVP_MD *bank_md(enum tpm_bank b)
{
	switch (b) {
	case TPM_BANK_SHA1:	return EVP_sha1();
	case TPM_BANK_SHA256:	return EVP_sha256();
	case TPM_BANK_SHA384:	return EVP_sha384();
	case TPM_BANK_SHA512:	return EVP_sha512();
	default:		return NULL;
	}
}

int tpm_hash(enum tpm_bank b, const void *data, size_t len, uint8_t *out)
{
	const EVP_MD *md = bank_md(b);

	if (!md)
		return -EINVAL;
	return EVP_Digest(data, len, out, NULL, md, NULL) == 1 ? 0 : -ENOMEM;
}

int tpm_extend(enum tpm_bank b, uint8_t *pcr, const uint8_t *digest)
{
	uint8_t buf[2 * TPM_MAX_DIGEST_LEN];
	size_t len = tpm_bank_len(b);

	if (!len)
		return -EINVAL;
	memcpy(buf, pcr, len);
	memcpy(buf + len, digest, len);
	return tpm_hash(b, buf, 2 * len, pcr);
}

int hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
		uint8_t out[TPM_SHA256_LEN])
{
	size_t out_len = 0;

	if (!EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, key_len, data, len, out,
		       TPM_SHA256_LEN, &out_len) || out_len != TPM_SHA256_LEN)
		return -ENOMEM;
	return 0;
}

void tpm_hex(const uint8_t *bin, size_t len, char *hex)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < len; i++) {
		hex[2 * i] = digits[bin[i] >> 4];
		hex[2 * i + 1] = digits[bin[i] & 15];
	}
	hex[2 * len] = '\0';
}

static int nibble(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int tpm_unhex(const char *hex, uint8_t *bin, size_t len)
{
	if (hex[0] == '0' && (hex[1] == 'x' || hex[1] == 'X'))
		hex += 2;
	if (strlen(hex) != 2 * len)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -EINVAL;
		bin[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}
