/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * TPM commands run in-process through tpm2-tss's ESAPI, on one TCTI
 * connection: those that need a policy session spanning several commands
 * (PolicySecret then NV_Extend; PolicySecret(endorsement) then
 * ActivateCredential), and the NV reads and definitions the worker does
 * around them.  Why not tpm2-tools here: the kernel's resource manager
 * (/dev/tpmrm0) flushes a process's sessions when it exits, so a session
 * started by one tool is gone before the next tool can use it.
 *
 * A connection is short-lived on purpose: a raw swtpm serves one client at
 * a time, so holding it open would stall every tpm2-tools call meanwhile.
 */
#ifndef RAYOS_TPM_ESYS_H
#define RAYOS_TPM_ESYS_H

#include <stddef.h>
#include <stdint.h>

#include <tss2/tss2_tpm2_types.h>

struct tpm_esys;

/* 0, or -errno with why ("cannot reach the TPM at …"). */
int tpm_esys_open(const char *tcti, struct tpm_esys **out, char *why, size_t len);
void tpm_esys_close(struct tpm_esys *e);

/* The NV public area; -ENOENT when the index is not defined. */
int tpm_esys_nv_public(struct tpm_esys *e, uint32_t index, TPMS_NV_PUBLIC *pub,
		       char *why, size_t len);

/* Read len bytes authorized by the index itself (auth NULL: empty).
 * -ENODATA: never written since defined or since TPM Reset;
 * -EACCES: the auth is refused. */
int tpm_esys_nv_read(struct tpm_esys *e, uint32_t index, const uint8_t *auth, size_t auth_len,
		     void *buf, size_t len, char *why, size_t why_len);
int tpm_esys_nv_write(struct tpm_esys *e, uint32_t index, const uint8_t *auth, size_t auth_len,
		      const void *buf, size_t len, char *why, size_t why_len);

/* Define under the owner hierarchy (empty owner auth); policy may be NULL. */
int tpm_esys_nv_define(struct tpm_esys *e, uint32_t index, uint32_t attrs, uint16_t size,
		       const uint8_t *policy, const uint8_t *auth, size_t auth_len,
		       char *why, size_t len);
int tpm_esys_nv_undefine(struct tpm_esys *e, uint32_t index, char *why, size_t len);

/* Public area of a persistent object; -ENOENT when the handle is empty. */
int tpm_esys_read_public(struct tpm_esys *e, uint32_t handle, TPM2B_PUBLIC *pub,
			 char *why, size_t len);

/*
 * Extend digests[0..n) (32 bytes each) into the NV extend index, one
 * NV_Extend each, each authorized by a policy session that has just run
 * PolicySecret with the AK (persistent handle ak, its auth given).  *done
 * counts the extends that the TPM accepted, also on failure.
 */
int tpm_esys_nv_extend(struct tpm_esys *e, uint32_t index, uint32_t ak,
		       const uint8_t *ak_auth, size_t ak_auth_len,
		       const uint8_t (*digests)[32], size_t n, size_t *done,
		       char *why, size_t len);

/*
 * TPM2_ActivateCredential: the credential (tpm2_makecredential's output
 * file: header, TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET) decrypts only on
 * the TPM whose EK (persistent handle ek) it was made for, and only for the
 * AK whose name it names.  secret gets the recovered secret.
 */
int tpm_esys_activate(struct tpm_esys *e, uint32_t ak, const uint8_t *ak_auth,
		      size_t ak_auth_len, uint32_t ek, const uint8_t *cred, size_t cred_len,
		      uint8_t *secret, size_t *secret_len, char *why, size_t len);

/* The PCR banks that have pcr allocated (their full selections). */
int tpm_esys_pcr_banks(struct tpm_esys *e, uint32_t pcr, TPML_PCR_SELECTION *banks,
		       char *why, size_t len);

/* The TPM's reset count: it grows at every TPM Reset (reboot, new swtpm),
 * and nothing else changes it. */
int tpm_esys_reset_count(struct tpm_esys *e, uint32_t *count, char *why, size_t len);

#endif /* RAYOS_TPM_ESYS_H */
