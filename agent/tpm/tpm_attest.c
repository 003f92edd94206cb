// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The verifier's side of RayOS attestation: TPM names and policies computed
 * from public areas, TPMS_ATTEST signatures checked with libcrypto, and EK
 * certificates matched to the EK.  Nothing here talks to a TPM, so a remote
 * verifier (and the unit tests) run it on files alone.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <tss2/tss2_mu.h>

#include "agent/tpm/tpm_attest.h"

static void sha256(const void *a, size_t alen, const void *b, size_t blen, uint8_t out[32])
{
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	unsigned int n = 32;

	EVP_DigestInit_ex(c, EVP_sha256(), NULL);
	EVP_DigestUpdate(c, a, alen);
	if (b)
		EVP_DigestUpdate(c, b, blen);
	EVP_DigestFinal_ex(c, out, &n);
	EVP_MD_CTX_free(c);
}

int tpm_pub_parse(const uint8_t *buf, size_t len, TPM2B_PUBLIC *pub)
{
	size_t off = 0;

	memset(pub, 0, sizeof(*pub));
	if (Tss2_MU_TPM2B_PUBLIC_Unmarshal(buf, len, &off, pub) || off != len)
		return -EBADMSG;
	return 0;
}

static int read_small(const char *path, uint8_t *buf, size_t cap, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, buf, cap);
	close(fd);
	if (n < 0)
		return -errno;
	*len = (size_t)n;
	return (size_t)n == cap ? -EFBIG : 0;
}

int tpm_pub_load(const char *path, TPM2B_PUBLIC *pub, char *why, size_t why_len)
{
	uint8_t buf[2048];
	size_t len = 0;
	int err = read_small(path, buf, sizeof(buf), &len);

	if (err) {
		snprintf(why, why_len, "cannot read %.200s: %s", path, strerror(-err));
		return err;
	}
	err = tpm_pub_parse(buf, len, pub);
	if (err)
		snprintf(why, why_len, "%.200s is not a TPM2B_PUBLIC (the -u output of "
			 "tpm2_createak/createek, or `rayos-agent tpm enroll`)", path);
	return err;
}

int tpm_pub_name(const TPMT_PUBLIC *pub, uint8_t name[TPM_NAME_LEN])
{
	uint8_t buf[sizeof(TPMT_PUBLIC)];
	size_t off = 0;

	if (pub->nameAlg != TPM2_ALG_SHA256)
		return -EINVAL;
	if (Tss2_MU_TPMT_PUBLIC_Marshal(pub, buf, sizeof(buf), &off))
		return -EINVAL;
	name[0] = TPM2_ALG_SHA256 >> 8;
	name[1] = TPM2_ALG_SHA256 & 0xff;
	sha256(buf, off, NULL, 0, name + 2);
	return 0;
}

int tpm_ak_check(const TPMT_PUBLIC *pub, char *why, size_t len)
{
	const TPMA_OBJECT need = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
				 TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_RESTRICTED |
				 TPMA_OBJECT_SIGN_ENCRYPT;

	if (pub->type != TPM2_ALG_ECC || pub->parameters.eccDetail.curveID != TPM2_ECC_NIST_P256 ||
	    pub->nameAlg != TPM2_ALG_SHA256) {
		snprintf(why, len, "the AK is not an ECC NIST P-256 key with SHA-256 names");
		return -EINVAL;
	}
	if ((pub->objectAttributes & need) != need ||
	    (pub->objectAttributes & TPMA_OBJECT_DECRYPT)) {
		snprintf(why, len, "the AK is not a restricted signing key that stays in its TPM "
			 "(attributes 0x%08x)", pub->objectAttributes);
		return -EINVAL;
	}
	return 0;
}

void tpm_policy_secret(const uint8_t *name, size_t name_len, uint8_t digest[32])
{
	uint8_t buf[32 + 4 + 2 + 64];
	const uint32_t cc = TPM2_CC_PolicySecret;

	/* PolicyUpdate(TPM_CC_PolicySecret, authObject name, policyRef):
	 * H(H(old || cc || name) || policyRef), old = zeros, policyRef empty. */
	memset(buf, 0, 32);
	buf[32] = cc >> 24;
	buf[33] = (cc >> 16) & 0xff;
	buf[34] = (cc >> 8) & 0xff;
	buf[35] = cc & 0xff;
	memcpy(buf + 36, name, name_len);
	sha256(buf, 36 + name_len, NULL, 0, digest);
	sha256(digest, 32, NULL, 0, digest);
}

int tpm_nv_name(uint32_t index, uint32_t attrs, const uint8_t policy[32], uint16_t size,
		uint8_t name[TPM_NAME_LEN])
{
	TPMS_NV_PUBLIC nv = {
		.nvIndex = index,
		.nameAlg = TPM2_ALG_SHA256,
		.attributes = attrs,
		.dataSize = size,
	};
	uint8_t buf[sizeof(nv)];
	size_t off = 0;

	nv.authPolicy.size = policy ? 32 : 0;
	if (policy)
		memcpy(nv.authPolicy.buffer, policy, 32);
	if (Tss2_MU_TPMS_NV_PUBLIC_Marshal(&nv, buf, sizeof(buf), &off))
		return -EINVAL;
	name[0] = TPM2_ALG_SHA256 >> 8;
	name[1] = TPM2_ALG_SHA256 & 0xff;
	sha256(buf, off, NULL, 0, name + 2);
	return 0;
}

int tpm_nv_log_name(const uint8_t ak_name[TPM_NAME_LEN], uint8_t name[TPM_NAME_LEN])
{
	uint8_t policy[32];

	tpm_policy_secret(ak_name, TPM_NAME_LEN, policy);
	return tpm_nv_name(TPM_NV_LOG_INDEX, TPM_NV_LOG_ATTRS | TPMA_NV_WRITTEN, policy,
			   TPM_NV_LOG_SIZE, name);
}

static EVP_PKEY *ecc_key(const TPMT_PUBLIC *pub)
{
	const TPMS_ECC_POINT *p = &pub->unique.ecc;
	uint8_t pt[1 + 2 * 66];
	EVP_PKEY_CTX *pc;
	EVP_PKEY *key = NULL;
	OSSL_PARAM params[3];

	if (p->x.size != 32 || p->y.size != 32)
		return NULL;
	pt[0] = 0x04;	/* uncompressed point */
	memcpy(pt + 1, p->x.buffer, 32);
	memcpy(pt + 33, p->y.buffer, 32);
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME,
						     (char *)"prime256v1", 0);
	params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, pt, 65);
	params[2] = OSSL_PARAM_construct_end();
	pc = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	if (!pc || EVP_PKEY_fromdata_init(pc) <= 0 ||
	    EVP_PKEY_fromdata(pc, &key, EVP_PKEY_PUBLIC_KEY, params) <= 0)
		key = NULL;
	EVP_PKEY_CTX_free(pc);
	return key;
}

int tpm_attest_verify(const TPMT_PUBLIC *ak, const uint8_t *msg, size_t msg_len,
		      const uint8_t *sig, size_t sig_len, TPMS_ATTEST *out,
		      char *why, size_t why_len)
{
	TPMT_SIGNATURE s;
	ECDSA_SIG *es = NULL;
	EVP_PKEY *key = NULL;
	EVP_MD_CTX *mc = NULL;
	BIGNUM *r, *sv;
	uint8_t *der = NULL;
	size_t off = 0;
	int der_len, err = -EBADMSG;

	memset(out, 0, sizeof(*out));
	if (tpm_ak_check(ak, why, why_len))
		return -EINVAL;
	memset(&s, 0, sizeof(s));
	if (Tss2_MU_TPMT_SIGNATURE_Unmarshal(sig, sig_len, &off, &s) || off != sig_len) {
		snprintf(why, why_len, "the signature is not a TPMT_SIGNATURE");
		return -EBADMSG;
	}
	if (s.sigAlg != TPM2_ALG_ECDSA || s.signature.ecdsa.hash != TPM2_ALG_SHA256) {
		snprintf(why, why_len, "the signature is not ECDSA over SHA-256 (alg 0x%04x)",
			 s.sigAlg);
		return -EBADMSG;
	}
	key = ecc_key(ak);
	es = ECDSA_SIG_new();
	r = BN_bin2bn(s.signature.ecdsa.signatureR.buffer, s.signature.ecdsa.signatureR.size, NULL);
	sv = BN_bin2bn(s.signature.ecdsa.signatureS.buffer, s.signature.ecdsa.signatureS.size,
		       NULL);
	if (!key || !es || !r || !sv || !ECDSA_SIG_set0(es, r, sv)) {
		BN_free(r);
		BN_free(sv);
		snprintf(why, why_len, "cannot load the AK or the signature into libcrypto");
		err = -ENOMEM;
		goto out;
	}
	der_len = i2d_ECDSA_SIG(es, &der);
	mc = EVP_MD_CTX_new();
	if (der_len <= 0 || !mc ||
	    EVP_DigestVerifyInit(mc, NULL, EVP_sha256(), NULL, key) != 1 ||
	    EVP_DigestVerify(mc, der, (size_t)der_len, msg, msg_len) != 1) {
		snprintf(why, why_len, "the signature does not verify with the trusted AK (signed "
			 "by another key or TPM, or the message was altered)");
		goto out;
	}
	off = 0;
	if (Tss2_MU_TPMS_ATTEST_Unmarshal(msg, msg_len, &off, out) || off != msg_len ||
	    out->magic != TPM2_GENERATED_VALUE) {
		snprintf(why, why_len, "the signed message is not a TPM-generated TPMS_ATTEST");
		goto out;
	}
	err = 0;
out:
	ERR_clear_error();
	OPENSSL_free(der);
	EVP_MD_CTX_free(mc);
	ECDSA_SIG_free(es);
	EVP_PKEY_free(key);
	return err;
}

int tpm_bank_of_alg(TPM2_ALG_ID alg)
{
	switch (alg) {
	case TPM2_ALG_SHA1:
		return 0;
	case TPM2_ALG_SHA256:
		return 1;
	case TPM2_ALG_SHA384:
		return 2;
	case TPM2_ALG_SHA512:
		return 3;
	default:
		return -1;
	}
}

static const size_t bank_len[4] = { 20, 32, 48, 64 };

int tpm_pcr_digest(const TPML_PCR_SELECTION *sel, const struct tpm_pcr_vals *vals,
		   uint8_t digest[32], char *why, size_t why_len)
{
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	unsigned int n = 32;

	if (!c)
		return -ENOMEM;
	EVP_DigestInit_ex(c, EVP_sha256(), NULL);
	for (uint32_t i = 0; i < sel->count && i < TPM2_NUM_PCR_BANKS; i++) {
		const TPMS_PCR_SELECTION *s = &sel->pcrSelections[i];
		int b = tpm_bank_of_alg(s->hash);

		for (unsigned int pcr = 0; pcr < 8u * s->sizeofSelect && pcr < 24; pcr++) {
			if (!(s->pcrSelect[pcr / 8] & (1u << (pcr % 8))))
				continue;
			if (b < 0 || !(vals->have[b] & (1u << pcr))) {
				snprintf(why, why_len, "the quote signs PCR %u of bank 0x%04x but "
					 "quote.pcrs has no value for it", pcr, s->hash);
				EVP_MD_CTX_free(c);
				return -ENOENT;
			}
			EVP_DigestUpdate(c, vals->v[b][pcr], bank_len[b]);
		}
	}
	EVP_DigestFinal_ex(c, digest, &n);
	EVP_MD_CTX_free(c);
	return 0;
}

/* Does the certificate's key equal the EK's public key? */
static int same_key(EVP_PKEY *k, const TPMT_PUBLIC *ek)
{
	if (ek->type == TPM2_ALG_RSA) {
		BIGNUM *n = NULL, *want = BN_bin2bn(ek->unique.rsa.buffer, ek->unique.rsa.size, NULL);
		int same = EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_N, &n) == 1 && want &&
			   !BN_cmp(n, want);

		BN_free(n);
		BN_free(want);
		return same;
	}
	if (ek->type == TPM2_ALG_ECC) {
		uint8_t pt[1 + 2 * 66], want[1 + 2 * 66];
		size_t len = 0, xl = ek->unique.ecc.x.size, yl = ek->unique.ecc.y.size;

		if (xl > 66 || yl > 66 ||
		    EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof(pt),
						    &len) != 1)
			return 0;
		want[0] = 0x04;
		memcpy(want + 1, ek->unique.ecc.x.buffer, xl);
		memcpy(want + 1 + xl, ek->unique.ecc.y.buffer, yl);
		return len == 1 + xl + yl && !memcmp(pt, want, len);
	}
	return 0;
}

static int cert_check(X509 *cert, const TPMT_PUBLIC *ek, const char *ca_file, char *why,
		      size_t why_len)
{
	X509_STORE *store = NULL;
	X509_STORE_CTX *ctx = NULL;
	EVP_PKEY *k = X509_get0_pubkey(cert);
	int err = -EBADMSG;

	if (!k || !same_key(k, ek)) {
		snprintf(why, why_len, "the EK certificate is for another key than the EK");
		goto out;
	}
	if (!ca_file) {
		err = 0;
		goto out;
	}
	store = X509_STORE_new();
	ctx = X509_STORE_CTX_new();
	if (!store || !ctx || X509_STORE_load_file(store, ca_file) != 1) {
		snprintf(why, why_len, "cannot load the CA certificates in %.200s", ca_file);
		err = -ENOENT;
		goto out;
	}
	/* EK certificates carry TCG extensions OpenSSL does not know. */
	X509_STORE_set_flags(store, X509_V_FLAG_IGNORE_CRITICAL);
	if (X509_STORE_CTX_init(ctx, store, cert, NULL) != 1 || X509_verify_cert(ctx) != 1) {
		snprintf(why, why_len, "the EK certificate does not chain to a CA in %.200s: %s",
			 ca_file, X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
		goto out;
	}
	err = 0;
out:
	ERR_clear_error();
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
	return err;
}

int tpm_pub_matches_pem(const char *pem_file, const TPMT_PUBLIC *pub, char *why, size_t len)
{
	FILE *f = fopen(pem_file, "re");
	EVP_PKEY *k = NULL;
	int err = 0;

	if (!f) {
		err = -errno;
		snprintf(why, len, "cannot read %.200s: %s", pem_file, strerror(errno));
		return err;
	}
	k = PEM_read_PUBKEY(f, NULL, NULL, NULL);
	fclose(f);
	if (!k) {
		snprintf(why, len, "%.200s is neither a TPM2B_PUBLIC nor a PEM public key",
			 pem_file);
		err = -EBADMSG;
	} else if (!same_key(k, pub)) {
		snprintf(why, len, "the AK in the quote is not the key in %.200s: the quote comes "
			 "from another key or TPM", pem_file);
		err = -EBADMSG;
	}
	ERR_clear_error();
	EVP_PKEY_free(k);
	return err;
}

int tpm_ek_cert_check_der(const uint8_t *der, size_t len, const TPMT_PUBLIC *ek,
			  const char *ca_file, char *why, size_t why_len)
{
	const unsigned char *p = der;
	X509 *cert = d2i_X509(NULL, &p, (long)len);
	int err;

	if (!cert) {
		snprintf(why, why_len, "the EK certificate is not DER X.509");
		ERR_clear_error();
		return -EBADMSG;
	}
	err = cert_check(cert, ek, ca_file, why, why_len);
	X509_free(cert);
	return err;
}

int tpm_ek_cert_check(const char *cert_file, const TPMT_PUBLIC *ek, const char *ca_file,
		      char *why, size_t why_len)
{
	FILE *f = fopen(cert_file, "re");
	X509 *cert = NULL;
	int err;

	if (!f) {
		err = -errno;
		snprintf(why, why_len, "cannot read %.200s: %s", cert_file, strerror(errno));
		return err;
	}
	cert = PEM_read_X509(f, NULL, NULL, NULL);
	if (!cert) {
		rewind(f);
		ERR_clear_error();
		cert = d2i_X509_fp(f, NULL);
	}
	fclose(f);
	if (!cert) {
		snprintf(why, why_len, "%.200s is not an X.509 certificate (PEM or DER)",
			 cert_file);
		ERR_clear_error();
		return -EBADMSG;
	}
	err = cert_check(cert, ek, ca_file, why, why_len);
	X509_free(cert);
	return err;
}
