/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * What a verifier computes without a TPM: TPM names of keys and NV
 * indices, the policy that binds RayOS's measurement index to its AK, the
 * signature and fields of a TPMS_ATTEST (quote or NV certification), PCR
 * digests, and the EK certificate's key and chain.  Pure functions over
 * tss2-mu (marshalling) and libcrypto: no TPM, no files but the ones named.
 */
#ifndef RAYOS_TPM_ATTEST_H
#define RAYOS_TPM_ATTEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <tss2/tss2_tpm2_types.h>

/* RayOS's measurement register: an NV extend index (TPM2_NT_EXTEND,
 * SHA-256) that only a policy session holding PolicySecret(AK) can extend;
 * anyone may read it; TPM Reset (reboot) clears it like a PCR. */
#define TPM_NV_LOG_INDEX	0x01500524u
#define TPM_NV_LOG_ATTRS	(TPMA_NV_POLICYWRITE | (TPM2_NT_EXTEND << TPMA_NV_TPM2_NT_SHIFT) | \
				 TPMA_NV_AUTHREAD | TPMA_NV_NO_DA | TPMA_NV_ORDERLY | \
				 TPMA_NV_CLEAR_STCLEAR)
#define TPM_NV_LOG_SIZE		32
/* The MAC seed: readable and writable only with its own auth (not owner). */
#define TPM_NV_SEED_ATTRS	(TPMA_NV_AUTHREAD | TPMA_NV_AUTHWRITE | TPMA_NV_NO_DA)
#define TPM_NAME_LEN		34	/* SHA-256 names: 2-byte alg + digest */

/* A TPM2B_PUBLIC as tpm2-tools write it (-u ak.pub, ek.pub). */
int tpm_pub_parse(const uint8_t *buf, size_t len, TPM2B_PUBLIC *pub);
int tpm_pub_load(const char *path, TPM2B_PUBLIC *pub, char *why, size_t why_len);

/* name = nameAlg || H(TPMT_PUBLIC); SHA-256 name algorithm only. */
int tpm_pub_name(const TPMT_PUBLIC *pub, uint8_t name[TPM_NAME_LEN]);

/* The AK RayOS makes: a restricted ECDSA P-256 signing key that never
 * leaves its TPM.  0, or -EINVAL with why. */
int tpm_ak_check(const TPMT_PUBLIC *pub, char *why, size_t len);

/* policyDigest of PolicySecret(authObject = name), empty policyRef,
 * starting from the all-zero digest. */
void tpm_policy_secret(const uint8_t *name, size_t name_len, uint8_t digest[32]);

/* Name of an NV index with the given public area (SHA-256). */
int tpm_nv_name(uint32_t index, uint32_t attrs, const uint8_t policy[32], uint16_t size,
		uint8_t name[TPM_NAME_LEN]);

/* The name RayOS's measurement index has once written, given the AK's name. */
int tpm_nv_log_name(const uint8_t ak_name[TPM_NAME_LEN], uint8_t name[TPM_NAME_LEN]);

/*
 * Check sig (a TPMT_SIGNATURE) over msg with the AK's public key and parse
 * msg as a TPMS_ATTEST.  0, -EBADMSG (signature or structure wrong, why
 * says which), -EINVAL (key type not supported).
 */
int tpm_attest_verify(const TPMT_PUBLIC *ak, const uint8_t *msg, size_t msg_len,
		      const uint8_t *sig, size_t sig_len, TPMS_ATTEST *out,
		      char *why, size_t why_len);

/* SHA-256 over the concatenated PCR values, in the order of the selection
 * (what TPM2_Quote signs as pcrDigest).  vals[alg index][pcr] where alg
 * index is enum tpm_bank; a value missing from have -> -ENOENT. */
struct tpm_pcr_vals {
	unsigned int have[4];		/* bit per PCR, per bank */
	uint8_t v[4][24][64];
};
int tpm_pcr_digest(const TPML_PCR_SELECTION *sel, const struct tpm_pcr_vals *vals,
		   uint8_t digest[32], char *why, size_t why_len);

/* bank index (enum tpm_bank) of a TPM algorithm id, -1 if none. */
int tpm_bank_of_alg(TPM2_ALG_ID alg);

/*
 * An EK certificate (PEM or DER file): its public key must be the EK's
 * (ek) and, with ca_file, it must chain to a CA there.  0 or -EBADMSG /
 * -ENOENT with why.
 */
int tpm_ek_cert_check(const char *cert_file, const TPMT_PUBLIC *ek, const char *ca_file,
		      char *why, size_t why_len);

/* Is pub's key the one in a PEM public key file?  0, or -EBADMSG / -errno
 * with why. */
int tpm_pub_matches_pem(const char *pem_file, const TPMT_PUBLIC *pub, char *why, size_t len);

/* An EK certificate read out of NV (DER), checked the same way. */
int tpm_ek_cert_check_der(const uint8_t *der, size_t len, const TPMT_PUBLIC *ek,
			  const char *ca_file, char *why, size_t why_len);

#endif /* RAYOS_TPM_ATTEST_H */
