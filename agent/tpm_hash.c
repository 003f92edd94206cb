// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * SHA-1 (FIPS 180-4 §6.1) and SHA-384/512 (§6.4) next to the existing
 * SHA-256, for computing every active PCR bank's digest in the agent.
 * Portable, byte-order independent; event contents are small.
 */
#include <errno.h>
#include <string.h>

#include "agent/tpm_hash.h"

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

static inline uint32_t rol32(uint32_t x, unsigned int n)
{
	return (x << n) | (x >> (32 - n));
}

static inline uint64_t ror64(uint64_t x, unsigned int n)
{
	return (x >> n) | (x << (64 - n));
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t be64(const uint8_t *p)
{
	return (uint64_t)be32(p) << 32 | be32(p + 4);
}

static void sha1_block(uint32_t h[5], const uint8_t *p)
{
	uint32_t w[80], a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];

	for (int i = 0; i < 16; i++)
		w[i] = be32(p + 4 * i);
	for (int i = 16; i < 80; i++)
		w[i] = rol32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
	for (int i = 0; i < 80; i++) {
		uint32_t f, k, t;

		if (i < 20) {
			f = (b & c) | (~b & d);
			k = 0x5a827999;
		} else if (i < 40) {
			f = b ^ c ^ d;
			k = 0x6ed9eba1;
		} else if (i < 60) {
			f = (b & c) | (b & d) | (c & d);
			k = 0x8f1bbcdc;
		} else {
			f = b ^ c ^ d;
			k = 0xca62c1d6;
		}
		t = rol32(a, 5) + f + e + k + w[i];
		e = d;
		d = c;
		c = rol32(b, 30);
		b = a;
		a = t;
	}
	h[0] += a;
	h[1] += b;
	h[2] += c;
	h[3] += d;
	h[4] += e;
}

static const uint64_t K512[80] = {
	0x428a2f98d728ae22ULL, 0x7137449123ef65cdULL, 0xb5c0fbcfec4d3b2fULL, 0xe9b5dba58189dbbcULL,
	0x3956c25bf348b538ULL, 0x59f111f1b605d019ULL, 0x923f82a4af194f9bULL, 0xab1c5ed5da6d8118ULL,
	0xd807aa98a3030242ULL, 0x12835b0145706fbeULL, 0x243185be4ee4b28cULL, 0x550c7dc3d5ffb4e2ULL,
	0x72be5d74f27b896fULL, 0x80deb1fe3b1696b1ULL, 0x9bdc06a725c71235ULL, 0xc19bf174cf692694ULL,
	0xe49b69c19ef14ad2ULL, 0xefbe4786384f25e3ULL, 0x0fc19dc68b8cd5b5ULL, 0x240ca1cc77ac9c65ULL,
	0x2de92c6f592b0275ULL, 0x4a7484aa6ea6e483ULL, 0x5cb0a9dcbd41fbd4ULL, 0x76f988da831153b5ULL,
	0x983e5152ee66dfabULL, 0xa831c66d2db43210ULL, 0xb00327c898fb213fULL, 0xbf597fc7beef0ee4ULL,
	0xc6e00bf33da88fc2ULL, 0xd5a79147930aa725ULL, 0x06ca6351e003826fULL, 0x142929670a0e6e70ULL,
	0x27b70a8546d22ffcULL, 0x2e1b21385c26c926ULL, 0x4d2c6dfc5ac42aedULL, 0x53380d139d95b3dfULL,
	0x650a73548baf63deULL, 0x766a0abb3c77b2a8ULL, 0x81c2c92e47edaee6ULL, 0x92722c851482353bULL,
	0xa2bfe8a14cf10364ULL, 0xa81a664bbc423001ULL, 0xc24b8b70d0f89791ULL, 0xc76c51a30654be30ULL,
	0xd192e819d6ef5218ULL, 0xd69906245565a910ULL, 0xf40e35855771202aULL, 0x106aa07032bbd1b8ULL,
	0x19a4c116b8d2d0c8ULL, 0x1e376c085141ab53ULL, 0x2748774cdf8eeb99ULL, 0x34b0bcb5e19b48a8ULL,
	0x391c0cb3c5c95a63ULL, 0x4ed8aa4ae3418acbULL, 0x5b9cca4f7763e373ULL, 0x682e6ff3d6b2b8a3ULL,
	0x748f82ee5defb2fcULL, 0x78a5636f43172f60ULL, 0x84c87814a1f0ab72ULL, 0x8cc702081a6439ecULL,
	0x90befffa23631e28ULL, 0xa4506cebde82bde9ULL, 0xbef9a3f7b2c67915ULL, 0xc67178f2e372532bULL,
	0xca273eceea26619cULL, 0xd186b8c721c0c207ULL, 0xeada7dd6cde0eb1eULL, 0xf57d4f7fee6ed178ULL,
	0x06f067aa72176fbaULL, 0x0a637dc5a2c898a6ULL, 0x113f9804bef90daeULL, 0x1b710b35131c471bULL,
	0x28db77f523047d84ULL, 0x32caab7b40c72493ULL, 0x3c9ebe0a15c9bebcULL, 0x431d67c49c100d4cULL,
	0x4cc5d4becb3e42b6ULL, 0x597f299cfc657e2aULL, 0x5fcb6fab3ad6faecULL, 0x6c44198c4a475817ULL,
};

static void sha512_block(uint64_t h[8], const uint8_t *p)
{
	uint64_t w[80], s[8];

	for (int i = 0; i < 16; i++)
		w[i] = be64(p + 8 * i);
	for (int i = 16; i < 80; i++) {
		uint64_t s0 = ror64(w[i - 15], 1) ^ ror64(w[i - 15], 8) ^ (w[i - 15] >> 7);
		uint64_t s1 = ror64(w[i - 2], 19) ^ ror64(w[i - 2], 61) ^ (w[i - 2] >> 6);

		w[i] = w[i - 16] + s0 + w[i - 7] + s1;
	}
	memcpy(s, h, sizeof(s));
	for (int i = 0; i < 80; i++) {
		uint64_t S1 = ror64(s[4], 14) ^ ror64(s[4], 18) ^ ror64(s[4], 41);
		uint64_t ch = (s[4] & s[5]) ^ (~s[4] & s[6]);
		uint64_t t1 = s[7] + S1 + ch + K512[i] + w[i];
		uint64_t S0 = ror64(s[0], 28) ^ ror64(s[0], 34) ^ ror64(s[0], 39);
		uint64_t maj = (s[0] & s[1]) ^ (s[0] & s[2]) ^ (s[1] & s[2]);

		memmove(s + 1, s, 7 * sizeof(s[0]));
		s[4] += t1;
		s[0] = t1 + S0 + maj;
	}
	for (int i = 0; i < 8; i++)
		h[i] += s[i];
}

static const uint32_t H1[5] = { 0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0 };
static const uint64_t H384[8] = {
	0xcbbb9d5dc1059ed8ULL, 0x629a292a367cd507ULL, 0x9159015a3070dd17ULL, 0x152fecd8f70e5939ULL,
	0x67332667ffc00b31ULL, 0x8eb44a8768581511ULL, 0xdb0c2e0d64f98fa7ULL, 0x47b5481dbefa4fa4ULL,
};
static const uint64_t H512[8] = {
	0x6a09e667f3bcc908ULL, 0xbb67ae8584caa73bULL, 0x3c6ef372fe94f82bULL, 0xa54ff53a5f1d36f1ULL,
	0x510e527fade682d1ULL, 0x9b05688c2b3e6c1fULL, 0x1f83d9abfb41bd6bULL, 0x5be0cd19137e2179ULL,
};

static size_t block_len(enum tpm_bank b)
{
	return b == TPM_BANK_SHA1 ? 64 : 128;
}

void tpm_hash_init(struct tpm_hash_ctx *c, enum tpm_bank b)
{
	memset(c, 0, sizeof(*c));
	c->bank = b;
	switch (b) {
	case TPM_BANK_SHA256:
		sha256_init(&c->s256);
		break;
	case TPM_BANK_SHA1:
		memcpy(c->st.s32, H1, sizeof(H1));
		break;
	case TPM_BANK_SHA384:
		memcpy(c->st.s64, H384, sizeof(H384));
		break;
	default:
		memcpy(c->st.s64, H512, sizeof(H512));
		break;
	}
}

static void compress(struct tpm_hash_ctx *c, const uint8_t *p)
{
	if (c->bank == TPM_BANK_SHA1)
		sha1_block(c->st.s32, p);
	else
		sha512_block(c->st.s64, p);
}

void tpm_hash_update(struct tpm_hash_ctx *c, const void *data, size_t len)
{
	const uint8_t *p = data;
	size_t bl = block_len(c->bank);

	if (c->bank == TPM_BANK_SHA256) {
		sha256_update(&c->s256, data, len);
		return;
	}
	while (len) {
		size_t used = c->nr_bytes % bl, n = bl - used;

		if (n > len)
			n = len;
		if (!used && len >= bl) {
			compress(c, p);
			n = bl;
		} else {
			memcpy(c->block + used, p, n);
			if (used + n == bl)
				compress(c, c->block);
		}
		c->nr_bytes += n;
		p += n;
		len -= n;
	}
}

void tpm_hash_final(struct tpm_hash_ctx *c, uint8_t *out)
{
	size_t bl = block_len(c->bank), lenfield = bl == 64 ? 8 : 16;
	size_t used = c->nr_bytes % bl, outlen = tpm_bank_len(c->bank);
	uint64_t bits = c->nr_bytes * 8;

	if (c->bank == TPM_BANK_SHA256) {
		sha256_final(&c->s256, out);
		memset(c, 0, sizeof(*c));
		return;
	}
	c->block[used++] = 0x80;
	if (used > bl - lenfield) {
		memset(c->block + used, 0, bl - used);
		compress(c, c->block);
		used = 0;
	}
	memset(c->block + used, 0, bl - used);
	for (int i = 0; i < 8; i++)	/* the high 64 bits of SHA-512's length stay 0 */
		c->block[bl - 1 - i] = (uint8_t)(bits >> (8 * i));
	compress(c, c->block);
	for (size_t i = 0; i < outlen; i++) {
		if (c->bank == TPM_BANK_SHA1)
			out[i] = (uint8_t)(c->st.s32[i / 4] >> (24 - 8 * (i % 4)));
		else
			out[i] = (uint8_t)(c->st.s64[i / 8] >> (56 - 8 * (i % 8)));
	}
	memset(c, 0, sizeof(*c));
}

void tpm_hash(enum tpm_bank b, const void *data, size_t len, uint8_t *out)
{
	struct tpm_hash_ctx c;

	tpm_hash_init(&c, b);
	tpm_hash_update(&c, data, len);
	tpm_hash_final(&c, out);
}

void tpm_extend(enum tpm_bank b, uint8_t *pcr, const uint8_t *digest)
{
	struct tpm_hash_ctx c;
	size_t len = tpm_bank_len(b);

	tpm_hash_init(&c, b);
	tpm_hash_update(&c, pcr, len);
	tpm_hash_update(&c, digest, len);
	tpm_hash_final(&c, pcr);
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
