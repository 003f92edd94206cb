/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * What the agent and the `tpm` CLI share: running tpm2-tools, the secret
 * in the state dir, and provisioning the TPM objects RayOS relies on:
 *
 *   EK   persistent 0x81010001 (RSA, as swtpm_setup and most platforms
 *        provision it) or 0x81010002 (ECC P-256, made by RayOS when there
 *        is none)
 *   AK   persistent 0x81010023: restricted ECDSA P-256 signing key made
 *        under the EK (endorsement hierarchy) with tpm2_createak; its auth
 *        is the state dir's secret, so only RayOS can sign with it
 *   log  NV 0x01500524: SHA-256 extend index whose policy is
 *        PolicySecret(AK), so only the AK's auth can extend it
 *   seed NV 0x01500523: the 32-byte record MAC key, read and written with
 *        the secret as the index's own auth; owner auth cannot read it
 *
 * STATE_DIR/tpm/ (0700) holds "auth" (the secret, 0600) and "ak.pub" (the
 * AK's TPM2B_PUBLIC as made, to recognise it later).
 */
#ifndef RAYOS_TPM_SETUP_H
#define RAYOS_TPM_SETUP_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <tss2/tss2_tpm2_types.h>

#include "agent/tpm/tpm_esys.h"

#define TPM_AK_HANDLE		0x81010023u
#define TPM_EK_HANDLE_RSA	0x81010001u
#define TPM_EK_HANDLE_ECC	0x81010002u
#define TPM_AUTH_LEN		32	/* printable: tpm2-tools read it with file: */

struct tpm_secret {
	char dir[PATH_MAX];		/* STATE_DIR/tpm */
	char auth_path[PATH_MAX];
	char ak_pub_path[PATH_MAX];
	uint8_t auth[TPM_AUTH_LEN];
	bool created;			/* made now: TPM objects of an older secret are useless */
};

/* Run a tpm2-tools command (NULL-terminated args, "-T tcti" appended when
 * tcti is set).  On failure why gets "tool: reason". */
int tpm_tool(const char *tcti, const char *const args[], int timeout_ms, const void *in,
	     size_t in_len, char **out, size_t *out_len, char *why, size_t why_len);

/* Load STATE_DIR/tpm/auth; create = make it (and the directory) when
 * missing.  -ENOENT without create when there is none. */
int tpm_secret_load(const char *state_dir, bool create, struct tpm_secret *s,
		    char *why, size_t len);
void tpm_secret_wipe(struct tpm_secret *s);

/* The persistent EK's handle and public area, if the TPM has one. */
int tpm_ek_find(struct tpm_esys *e, uint32_t *handle, TPM2B_PUBLIC *pub, char *why, size_t len);

/*
 * Make sure RayOS's EK and AK exist and the AK is the one made with this
 * state dir's secret (its public area equals ak.pub): otherwise evict what
 * sits at the AK handle and make a new AK.  Runs tpm2-tools, so no ESAPI
 * connection may be open meanwhile (a raw swtpm serves one client).
 * ak gets the AK's public area.
 */
int tpm_keys_ensure(const char *tcti, int timeout_ms, const struct tpm_secret *s,
		    TPM2B_PUBLIC *ak, char *why, size_t len);

/* The AK as this state dir made it: -ENOENT when missing or replaced. */
int tpm_ak_current(struct tpm_esys *e, const struct tpm_secret *s, TPM2B_PUBLIC *ak,
		   char *why, size_t len);

/*
 * Make sure the measurement index has RayOS's public area bound to ak
 * (defining it, or redefining an index someone else defined there) and
 * that the seed index exists with the secret as its auth.  *redefined says
 * the measurement index was replaced (its old contents are gone).
 */
int tpm_indices_ensure(struct tpm_esys *e, const struct tpm_secret *s, const TPM2B_PUBLIC *ak,
		       uint32_t seed_index, bool *redefined, char *why, size_t len);

/* The measurement index's value; an unwritten index reads as zeros. */
int tpm_log_index_read(struct tpm_esys *e, uint8_t val[32], bool *written, char *why, size_t len);

/* Read a whole small file (≤ cap); 0 or -errno. */
int tpm_read_file(const char *path, uint8_t *buf, size_t cap, size_t *len);

#endif /* RAYOS_TPM_SETUP_H */
