// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * ESAPI (tpm2-tss) on one TCTI connection: the policy-authorized extend of
 * RayOS's NV measurement index, credential activation, and the NV reads,
 * writes and definitions around them.  See tpm_esys.h for why these are not
 * tpm2-tools processes.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tss2/tss2_esys.h>
#include <tss2/tss2_mu.h>
#include <tss2/tss2_rc.h>
#include <tss2/tss2_tctildr.h>

#include "agent/tpm/tpm_esys.h"

struct tpm_esys {
	TSS2_TCTI_CONTEXT *tcti;
	ESYS_CONTEXT *ctx;
};

/* The base of a TPM response code: format-one codes carry the number of
 * the handle, session or parameter at fault in bits 8-11. */
static TSS2_RC rc_base(TSS2_RC rc)
{
	if (rc & TSS2_RC_LAYER_MASK)
		return rc;
	return (rc & TPM2_RC_FMT1) ? (rc & (TPM2_RC_FMT1 | 0x3f)) : (rc & 0xfff);
}

static int rc_errno(TSS2_RC rc)
{
	switch (rc_base(rc)) {
	case TPM2_RC_SUCCESS:
		return 0;
	case TPM2_RC_HANDLE:
		return -ENOENT;
	case TPM2_RC_NV_UNINITIALIZED:
		return -ENODATA;
	case TPM2_RC_AUTH_FAIL:
	case TPM2_RC_BAD_AUTH:
	case TPM2_RC_POLICY_FAIL:
	case TPM2_RC_NV_AUTHORIZATION:
	case TPM2_RC_AUTH_UNAVAILABLE:
	case TPM2_RC_HIERARCHY:
		return -EACCES;
	case TPM2_RC_NV_DEFINED:
		return -EEXIST;
	case TPM2_RC_INTEGRITY:
	case TPM2_RC_VALUE:
	case TPM2_RC_SIZE:
		return -EBADMSG;
	default:
		return (rc & TSS2_RC_LAYER_MASK) ? -EIO : -EPROTO;
	}
}

static int fail(TSS2_RC rc, const char *what, char *why, size_t len)
{
	snprintf(why, len, "%s: %s (0x%x)", what, Tss2_RC_Decode(rc), rc);
	return rc_errno(rc) ? rc_errno(rc) : -EIO;
}

static void set_auth(ESYS_CONTEXT *ctx, ESYS_TR tr, const uint8_t *auth, size_t len)
{
	TPM2B_AUTH a = { .size = 0 };

	if (auth && len <= sizeof(a.buffer)) {
		a.size = (UINT16)len;
		memcpy(a.buffer, auth, len);
	}
	Esys_TR_SetAuth(ctx, tr, &a);
	memset(&a, 0, sizeof(a));
}

int tpm_esys_open(const char *tcti, struct tpm_esys **out, char *why, size_t len)
{
	struct tpm_esys *e = calloc(1, sizeof(*e));
	TSS2_RC rc;

	*out = NULL;
	if (!e)
		return -ENOMEM;
	/* tpm2-tss logs every TPM error on stderr; the callers report them. */
	setenv("TSS2_LOG", "all+none", 0);
	rc = Tss2_TctiLdr_Initialize(tcti, &e->tcti);
	if (rc) {
		snprintf(why, len, "cannot reach the TPM at %.200s: %s", tcti, Tss2_RC_Decode(rc));
		free(e);
		return -ENODEV;
	}
	rc = Esys_Initialize(&e->ctx, e->tcti, NULL);
	if (rc) {
		snprintf(why, len, "ESAPI on %.200s: %s", tcti, Tss2_RC_Decode(rc));
		Tss2_TctiLdr_Finalize(&e->tcti);
		free(e);
		return -ENODEV;
	}
	*out = e;
	return 0;
}

void tpm_esys_close(struct tpm_esys *e)
{
	if (!e)
		return;
	Esys_Finalize(&e->ctx);
	Tss2_TctiLdr_Finalize(&e->tcti);
	free(e);
}

static int tr_from(struct tpm_esys *e, uint32_t handle, ESYS_TR *tr, char *why, size_t len)
{
	char what[48];
	TSS2_RC rc = Esys_TR_FromTPMPublic(e->ctx, handle, ESYS_TR_NONE, ESYS_TR_NONE,
					   ESYS_TR_NONE, tr);

	if (!rc)
		return 0;
	snprintf(what, sizeof(what), "handle 0x%08x", handle);
	return fail(rc, what, why, len);
}

int tpm_esys_nv_public(struct tpm_esys *e, uint32_t index, TPMS_NV_PUBLIC *pub,
		       char *why, size_t len)
{
	TPM2B_NV_PUBLIC *p = NULL;
	ESYS_TR tr;
	TSS2_RC rc;
	int err = tr_from(e, index, &tr, why, len);

	if (err)
		return err;
	rc = Esys_NV_ReadPublic(e->ctx, tr, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &p, NULL);
	Esys_TR_Close(e->ctx, &tr);
	if (rc)
		return fail(rc, "NV_ReadPublic", why, len);
	*pub = p->nvPublic;
	Esys_Free(p);
	return 0;
}

int tpm_esys_nv_read(struct tpm_esys *e, uint32_t index, const uint8_t *auth, size_t auth_len,
		     void *buf, size_t len, char *why, size_t why_len)
{
	TPM2B_MAX_NV_BUFFER *d = NULL;
	char what[48];
	ESYS_TR tr;
	TSS2_RC rc;
	int err = tr_from(e, index, &tr, why, why_len);

	if (err)
		return err;
	set_auth(e->ctx, tr, auth, auth_len);
	rc = Esys_NV_Read(e->ctx, tr, tr, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
			  (UINT16)len, 0, &d);
	Esys_TR_Close(e->ctx, &tr);
	snprintf(what, sizeof(what), "NV_Read 0x%08x", index);
	if (rc)
		return fail(rc, what, why, why_len);
	if (d->size != len) {
		snprintf(why, why_len, "%s: %u bytes, want %zu", what, d->size, len);
		err = -EBADMSG;
	} else {
		memcpy(buf, d->buffer, len);
	}
	memset(d, 0, sizeof(*d));
	Esys_Free(d);
	return err;
}

int tpm_esys_nv_write(struct tpm_esys *e, uint32_t index, const uint8_t *auth, size_t auth_len,
		      const void *buf, size_t len, char *why, size_t why_len)
{
	TPM2B_MAX_NV_BUFFER d = { .size = (UINT16)len };
	ESYS_TR tr;
	TSS2_RC rc;
	int err;

	if (len > sizeof(d.buffer))
		return -EINVAL;
	err = tr_from(e, index, &tr, why, why_len);
	if (err)
		return err;
	memcpy(d.buffer, buf, len);
	set_auth(e->ctx, tr, auth, auth_len);
	rc = Esys_NV_Write(e->ctx, tr, tr, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &d, 0);
	memset(&d, 0, sizeof(d));
	Esys_TR_Close(e->ctx, &tr);
	return rc ? fail(rc, "NV_Write", why, why_len) : 0;
}

int tpm_esys_nv_define(struct tpm_esys *e, uint32_t index, uint32_t attrs, uint16_t size,
		       const uint8_t *policy, const uint8_t *auth, size_t auth_len,
		       char *why, size_t len)
{
	TPM2B_NV_PUBLIC pub = {
		.nvPublic = {
			.nvIndex = index,
			.nameAlg = TPM2_ALG_SHA256,
			.attributes = attrs,
			.dataSize = size,
		},
	};
	TPM2B_AUTH a = { .size = 0 };
	ESYS_TR tr = ESYS_TR_NONE;
	TSS2_RC rc;

	if (policy) {
		pub.nvPublic.authPolicy.size = 32;
		memcpy(pub.nvPublic.authPolicy.buffer, policy, 32);
	}
	if (auth && auth_len <= sizeof(a.buffer)) {
		a.size = (UINT16)auth_len;
		memcpy(a.buffer, auth, auth_len);
	}
	rc = Esys_NV_DefineSpace(e->ctx, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE,
				 ESYS_TR_NONE, &a, &pub, &tr);
	memset(&a, 0, sizeof(a));
	if (rc)
		return fail(rc, "NV_DefineSpace (owner hierarchy)", why, len);
	Esys_TR_Close(e->ctx, &tr);
	return 0;
}

int tpm_esys_nv_undefine(struct tpm_esys *e, uint32_t index, char *why, size_t len)
{
	ESYS_TR tr;
	TSS2_RC rc;
	int err = tr_from(e, index, &tr, why, len);

	if (err)
		return err;
	rc = Esys_NV_UndefineSpace(e->ctx, ESYS_TR_RH_OWNER, tr, ESYS_TR_PASSWORD, ESYS_TR_NONE,
				   ESYS_TR_NONE);
	if (rc) {
		Esys_TR_Close(e->ctx, &tr);
		return fail(rc, "NV_UndefineSpace (owner hierarchy)", why, len);
	}
	return 0;
}

int tpm_esys_read_public(struct tpm_esys *e, uint32_t handle, TPM2B_PUBLIC *pub,
			 char *why, size_t len)
{
	TPM2B_PUBLIC *p = NULL;
	ESYS_TR tr;
	TSS2_RC rc;
	int err = tr_from(e, handle, &tr, why, len);

	if (err)
		return err;
	rc = Esys_ReadPublic(e->ctx, tr, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &p, NULL, NULL);
	Esys_TR_Close(e->ctx, &tr);
	if (rc)
		return fail(rc, "ReadPublic", why, len);
	*pub = *p;
	Esys_Free(p);
	return 0;
}

static int policy_session(struct tpm_esys *e, ESYS_TR *s, char *why, size_t len)
{
	const TPMT_SYM_DEF sym = { .algorithm = TPM2_ALG_NULL };
	TSS2_RC rc = Esys_StartAuthSession(e->ctx, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
					   ESYS_TR_NONE, ESYS_TR_NONE, NULL, TPM2_SE_POLICY,
					   &sym, TPM2_ALG_SHA256, s);

	return rc ? fail(rc, "StartAuthSession (policy)", why, len) : 0;
}

int tpm_esys_nv_extend(struct tpm_esys *e, uint32_t index, uint32_t ak,
		       const uint8_t *ak_auth, size_t ak_auth_len,
		       const uint8_t (*digests)[32], size_t n, size_t *done,
		       char *why, size_t len)
{
	ESYS_TR nv = ESYS_TR_NONE, key = ESYS_TR_NONE, s = ESYS_TR_NONE;
	TPM2B_MAX_NV_BUFFER d = { .size = 32 };
	TSS2_RC rc;
	int err;

	*done = 0;
	err = tr_from(e, index, &nv, why, len);
	if (!err)
		err = tr_from(e, ak, &key, why, len);
	if (!err)
		err = policy_session(e, &s, why, len);
	if (err)
		goto out;
	set_auth(e->ctx, key, ak_auth, ak_auth_len);
	/* The session outlives each use; its policy digest resets after
	 * every command it authorizes, so PolicySecret runs before each. */
	Esys_TRSess_SetAttributes(e->ctx, s, TPMA_SESSION_CONTINUESESSION,
				  TPMA_SESSION_CONTINUESESSION);
	for (size_t i = 0; i < n; i++) {
		rc = Esys_PolicySecret(e->ctx, key, s, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
				       NULL, NULL, NULL, 0, NULL, NULL);
		if (rc) {
			err = fail(rc, "PolicySecret with the AK", why, len);
			break;
		}
		memcpy(d.buffer, digests[i], 32);
		rc = Esys_NV_Extend(e->ctx, nv, nv, s, ESYS_TR_NONE, ESYS_TR_NONE, &d);
		if (rc) {
			err = fail(rc, "NV_Extend", why, len);
			break;
		}
		(*done)++;
	}
out:
	if (s != ESYS_TR_NONE)
		Esys_FlushContext(e->ctx, s);
	if (key != ESYS_TR_NONE)
		Esys_TR_Close(e->ctx, &key);
	if (nv != ESYS_TR_NONE)
		Esys_TR_Close(e->ctx, &nv);
	return err;
}

/* tpm2_makecredential's file: 0xBADCC0DE, version 1, then the two TPM2Bs. */
static int parse_cred(const uint8_t *cred, size_t len, TPM2B_ID_OBJECT *id,
		      TPM2B_ENCRYPTED_SECRET *sec)
{
	size_t off = 8;

	if (len < 8 || cred[0] != 0xba || cred[1] != 0xdc || cred[2] != 0xc0 || cred[3] != 0xde ||
	    cred[4] || cred[5] || cred[6] || cred[7] != 1)
		return -EBADMSG;
	if (Tss2_MU_TPM2B_ID_OBJECT_Unmarshal(cred, len, &off, id) ||
	    Tss2_MU_TPM2B_ENCRYPTED_SECRET_Unmarshal(cred, len, &off, sec) || off != len)
		return -EBADMSG;
	return 0;
}

int tpm_esys_activate(struct tpm_esys *e, uint32_t ak, const uint8_t *ak_auth,
		      size_t ak_auth_len, uint32_t ek, const uint8_t *cred, size_t cred_len,
		      uint8_t *secret, size_t *secret_len, char *why, size_t len)
{
	ESYS_TR key = ESYS_TR_NONE, ekey = ESYS_TR_NONE, s = ESYS_TR_NONE;
	TPM2B_ENCRYPTED_SECRET sec;
	TPM2B_DIGEST *out = NULL;
	TPM2B_ID_OBJECT id;
	TSS2_RC rc;
	int err;

	if (parse_cred(cred, cred_len, &id, &sec)) {
		snprintf(why, len, "not a credential made by tpm2_makecredential "
			 "(`rayos-agent tpm challenge`)");
		return -EBADMSG;
	}
	err = tr_from(e, ak, &key, why, len);
	if (!err)
		err = tr_from(e, ek, &ekey, why, len);
	if (!err)
		err = policy_session(e, &s, why, len);
	if (err)
		goto out;
	set_auth(e->ctx, key, ak_auth, ak_auth_len);
	/* The EK's policy: PolicySecret(TPM_RH_ENDORSEMENT), empty auth. */
	rc = Esys_PolicySecret(e->ctx, ESYS_TR_RH_ENDORSEMENT, s, ESYS_TR_PASSWORD, ESYS_TR_NONE,
			       ESYS_TR_NONE, NULL, NULL, NULL, 0, NULL, NULL);
	if (rc) {
		err = fail(rc, "PolicySecret with the endorsement hierarchy", why, len);
		goto out;
	}
	rc = Esys_ActivateCredential(e->ctx, key, ekey, ESYS_TR_PASSWORD, s, ESYS_TR_NONE, &id,
				     &sec, &out);
	if (rc) {
		err = fail(rc, "ActivateCredential (the credential was made for another EK or "
			   "another AK)", why, len);
		goto out;
	}
	if (out->size > *secret_len) {
		err = -EMSGSIZE;
		goto out;
	}
	memcpy(secret, out->buffer, out->size);
	*secret_len = out->size;
out:
	if (out) {
		memset(out, 0, sizeof(*out));
		Esys_Free(out);
	}
	if (s != ESYS_TR_NONE)
		Esys_FlushContext(e->ctx, s);
	if (key != ESYS_TR_NONE)
		Esys_TR_Close(e->ctx, &key);
	if (ekey != ESYS_TR_NONE)
		Esys_TR_Close(e->ctx, &ekey);
	return err;
}

int tpm_esys_pcr_banks(struct tpm_esys *e, uint32_t pcr, TPML_PCR_SELECTION *banks,
		       char *why, size_t len)
{
	TPMS_CAPABILITY_DATA *cap = NULL;
	TPMI_YES_NO more;
	TSS2_RC rc = Esys_GetCapability(e->ctx, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
					TPM2_CAP_PCRS, 0, 1, &more, &cap);

	if (rc)
		return fail(rc, "GetCapability(PCRS)", why, len);
	memset(banks, 0, sizeof(*banks));
	for (uint32_t i = 0; i < cap->data.assignedPCR.count; i++) {
		const TPMS_PCR_SELECTION *s = &cap->data.assignedPCR.pcrSelections[i];

		if (pcr / 8 < s->sizeofSelect && (s->pcrSelect[pcr / 8] & (1u << (pcr % 8))) &&
		    banks->count < TPM2_NUM_PCR_BANKS)
			banks->pcrSelections[banks->count++] = *s;
	}
	Esys_Free(cap);
	return 0;
}

int tpm_esys_reset_count(struct tpm_esys *e, uint32_t *count, char *why, size_t len)
{
	TPMS_TIME_INFO *ti = NULL;
	TSS2_RC rc = Esys_ReadClock(e->ctx, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &ti);

	if (rc)
		return fail(rc, "ReadClock", why, len);
	*count = ti->clockInfo.resetCount;
	Esys_Free(ti);
	return 0;
}
