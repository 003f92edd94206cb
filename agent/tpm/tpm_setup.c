// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Provisioning the TPM objects RayOS's measured launch relies on (EK, AK,
 * measurement and seed NV indices; see tpm_setup.h) and the helpers the
 * agent's worker and the `tpm` CLI share: tpm2-tools runs, the state dir's
 * secret, small files.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <tss2/tss2_mu.h>

#include "agent/core/log.h"
#include "agent/core/spawn.h"
#include "agent/core/util.h"
#include "agent/tpm/tpm_attest.h"
#include "agent/tpm/tpm_setup.h"

#define TOOL_TIMEOUT_MS		10000

/* The last non-empty line of a tool's stderr: tpm2-tools put the reason
 * ("ERROR: Esys_…(0x18B) - tpm:handle(1):…") there. */
static void last_line(const char *s, char *buf, size_t len)
{
	const char *end, *start;

	buf[0] = '\0';
	if (!s)
		return;
	end = s + strlen(s);
	while (end > s && (end[-1] == '\n' || end[-1] == ' '))
		end--;
	start = end;
	while (start > s && start[-1] != '\n')
		start--;
	snprintf(buf, len, "%.*s", (int)(end - start), start);
}

int tpm_tool(const char *tcti, const char *const args[], int timeout_ms, const void *in,
	     size_t in_len, char **out, size_t *out_len, char *why, size_t why_len)
{
	const char *argv[40];
	const char *const env[] = { "TSS2_LOG=all+none", NULL };
	char *err_out = NULL, line[200];
	int n = 0, rc, status;

	while (args[n] && n < 36) {
		argv[n] = args[n];
		n++;
	}
	if (tcti) {
		argv[n++] = "-T";
		argv[n++] = tcti;
	}
	argv[n] = NULL;
	if (timeout_ms <= 0)
		timeout_ms = TOOL_TIMEOUT_MS;
	rc = spawn_run(argv, env, timeout_ms, in, in_len, out, out_len, &err_out, &status);
	if (rc && why) {
		last_line(err_out, line, sizeof(line));
		if (rc == -ETIMEDOUT)
			snprintf(why, why_len, "%s: timed out after %d ms", args[0], timeout_ms);
		else if (rc == -ENOENT)
			snprintf(why, why_len, "%s not found (apt install tpm2-tools)", args[0]);
		else if (rc == -ECHILD)
			snprintf(why, why_len, "%s: exit %d: %s", args[0], status,
				 line[0] ? line : "no message");
		else
			snprintf(why, why_len, "%s: %s", args[0], strerror(-rc));
	}
	free(err_out);
	return rc;
}

int tpm_read_file(const char *path, uint8_t *buf, size_t cap, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), err = 0;
	size_t got = 0;
	ssize_t n = 0;
	char extra;

	if (fd < 0)
		return -errno;
	while (got < cap && (n = read(fd, buf + got, cap - got)) > 0)
		got += (size_t)n;
	if (n < 0)
		err = -errno;
	else if (got == cap && read(fd, &extra, 1) > 0)
		err = -EFBIG;
	close(fd);
	*len = got;
	return err;
}

int tpm_secret_load(const char *state_dir, bool create, struct tpm_secret *s,
		    char *why, size_t len)
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	uint8_t raw[TPM_AUTH_LEN];
	size_t got = 0;
	int err;

	memset(s, 0, sizeof(*s));
	if (snprintf(s->dir, sizeof(s->dir), "%s/tpm", state_dir) >= (int)sizeof(s->dir) - 16) {
		snprintf(why, len, "state dir %.200s: path too long", state_dir);
		return -ENAMETOOLONG;
	}
	snprintf(s->auth_path, sizeof(s->auth_path), "%.4000s/auth", s->dir);
	snprintf(s->ak_pub_path, sizeof(s->ak_pub_path), "%.4000s/ak.pub", s->dir);
	err = tpm_read_file(s->auth_path, s->auth, sizeof(s->auth), &got);
	if (!err && got == TPM_AUTH_LEN)
		return 0;
	if (err != -ENOENT || !create) {
		snprintf(why, len, "%.200s: %s", s->auth_path,
			 err == -ENOENT ? "missing (the agent makes it at its first start; "
					  "pass the agent's --state-dir)"
					: err ? strerror(-err) : "not a RayOS TPM secret");
		return err ? err : -EBADMSG;
	}
	err = mkdir_p(s->dir, 0700);
	if (!err && chmod(s->dir, 0700))
		err = -errno;
	if (!err && getrandom(raw, sizeof(raw), 0) != sizeof(raw))
		err = -errno;
	if (err) {
		snprintf(why, len, "cannot create %.200s: %s", s->dir, strerror(-err));
		return err;
	}
	/* 32 of 64 symbols: 192 bits, printable so that tpm2-tools' file:
	 * auth reads exactly these bytes. */
	for (size_t i = 0; i < sizeof(raw); i++)
		s->auth[i] = (uint8_t)alphabet[raw[i] & 63];
	memset(raw, 0, sizeof(raw));
	s->created = true;
	err = file_write_atomic(s->auth_path, s->auth, sizeof(s->auth), 0600);
	if (err)
		snprintf(why, len, "cannot write %.200s: %s", s->auth_path, strerror(-err));
	return err;
}

void tpm_secret_wipe(struct tpm_secret *s)
{
	memset(s->auth, 0, sizeof(s->auth));
}

int tpm_ek_find(struct tpm_esys *e, uint32_t *handle, TPM2B_PUBLIC *pub, char *why, size_t len)
{
	static const uint32_t handles[] = { TPM_EK_HANDLE_RSA, TPM_EK_HANDLE_ECC };
	const TPMA_OBJECT ek_attrs = TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT |
				     TPMA_OBJECT_FIXEDTPM;

	for (size_t i = 0; i < sizeof(handles) / sizeof(handles[0]); i++) {
		int err = tpm_esys_read_public(e, handles[i], pub, why, len);

		if (err == -ENOENT)
			continue;
		if (err)
			return err;
		if ((pub->publicArea.objectAttributes & ek_attrs) != ek_attrs)
			continue;	/* not an endorsement key: someone else's object */
		*handle = handles[i];
		return 0;
	}
	snprintf(why, len, "no EK at 0x%08x or 0x%08x", TPM_EK_HANDLE_RSA, TPM_EK_HANDLE_ECC);
	return -ENOENT;
}

static bool same_public(const TPM2B_PUBLIC *a, const TPM2B_PUBLIC *b)
{
	uint8_t na[TPM_NAME_LEN], nb[TPM_NAME_LEN];

	return !tpm_pub_name(&a->publicArea, na) && !tpm_pub_name(&b->publicArea, nb) &&
	       !memcmp(na, nb, sizeof(na));
}

int tpm_ak_current(struct tpm_esys *e, const struct tpm_secret *s, TPM2B_PUBLIC *ak,
		   char *why, size_t len)
{
	TPM2B_PUBLIC saved;
	int err = tpm_esys_read_public(e, TPM_AK_HANDLE, ak, why, len);

	if (err == -ENOENT) {
		snprintf(why, len, "no AK at 0x%08x", TPM_AK_HANDLE);
		return err;
	}
	if (err)
		return err;
	if (tpm_pub_load(s->ak_pub_path, &saved, why, len) || !same_public(&saved, ak)) {
		snprintf(why, len, "0x%08x holds a key that %.200s did not make", TPM_AK_HANDLE,
			 s->ak_pub_path);
		return -ESTALE;
	}
	return 0;
}

int tpm_keys_ensure(const char *tcti, int timeout_ms, const struct tpm_secret *s,
		    TPM2B_PUBLIC *ak, char *why, size_t len)
{
	char handle[16], ek_handle[16], auth[PATH_MAX + 8], ctx[PATH_MAX], pub[PATH_MAX + 8];
	const char *evict_old[] = { "tpm2_evictcontrol", "-C", "o", "-c", handle, NULL };
	const char *create_ek[] = { "tpm2_createek", "-G", "ecc", "-c", ek_handle, NULL };
	const char *create_ak[] = { "tpm2_createak", "-C", ek_handle, "-c", ctx, "-G", "ecc",
				    "-g", "sha256", "-s", "ecdsa", "-u", pub, "-p", auth, NULL };
	const char *persist[] = { "tpm2_evictcontrol", "-C", "o", "-c", ctx, handle, NULL };
	const char *flush[] = { "tpm2_flushcontext", "-t", NULL };
	struct tpm_esys *e = NULL;
	TPM2B_PUBLIC ek;
	uint32_t ekh = 0;
	bool occupied;
	int err;

	err = tpm_esys_open(tcti, &e, why, len);
	if (err)
		return err;
	err = tpm_ak_current(e, s, ak, why, len);
	if (!err && s->created)
		err = -ESTALE;	/* the AK's auth was the lost secret */
	occupied = err == -ESTALE;
	if (err && err != -ENOENT && err != -ESTALE) {
		tpm_esys_close(e);
		return err;
	}
	if (!err) {
		tpm_esys_close(e);
		return 0;
	}
	err = tpm_ek_find(e, &ekh, &ek, why, len);
	tpm_esys_close(e);
	e = NULL;
	if (err && err != -ENOENT)
		return err;

	snprintf(handle, sizeof(handle), "0x%08x", TPM_AK_HANDLE);
	snprintf(auth, sizeof(auth), "file:%s", s->auth_path);
	snprintf(ctx, sizeof(ctx), "%.4000s/ak.ctx", s->dir);
	snprintf(pub, sizeof(pub), "%s.new", s->ak_pub_path);
	if (occupied) {
		log_warn("tpm: 0x%08x holds a key this state dir did not make: evicting it and "
			 "making a new AK (verifiers must enroll the new one)", TPM_AK_HANDLE);
		err = tpm_tool(tcti, evict_old, timeout_ms, NULL, 0, NULL, NULL, why, len);
		if (err)
			return err;
	}
	if (!ekh) {
		ekh = TPM_EK_HANDLE_ECC;
		snprintf(ek_handle, sizeof(ek_handle), "0x%08x", ekh);
		err = tpm_tool(tcti, create_ek, timeout_ms, NULL, 0, NULL, NULL, why, len);
		tpm_tool(tcti, flush, timeout_ms, NULL, 0, NULL, NULL, NULL, 0);
		if (err)
			return err;
		log_info("tpm: made an ECC P-256 EK at 0x%08x", ekh);
	}
	snprintf(ek_handle, sizeof(ek_handle), "0x%08x", ekh);
	err = tpm_tool(tcti, create_ak, timeout_ms, NULL, 0, NULL, NULL, why, len);
	/* A raw TPM (swtpm) has no resource manager: flush what createak left. */
	tpm_tool(tcti, flush, timeout_ms, NULL, 0, NULL, NULL, NULL, 0);
	if (!err)
		err = tpm_tool(tcti, persist, timeout_ms, NULL, 0, NULL, NULL, why, len);
	tpm_tool(tcti, flush, timeout_ms, NULL, 0, NULL, NULL, NULL, 0);
	unlink(ctx);
	if (!err && rename(pub, s->ak_pub_path))
		err = -errno;
	if (err) {
		unlink(pub);
		return err;
	}
	log_info("tpm: made attestation key 0x%08x under the EK at 0x%08x", TPM_AK_HANDLE, ekh);
	err = tpm_esys_open(tcti, &e, why, len);
	if (!err)
		err = tpm_ak_current(e, s, ak, why, len);
	tpm_esys_close(e);
	return err;
}

int tpm_indices_ensure(struct tpm_esys *e, const struct tpm_secret *s, const TPM2B_PUBLIC *ak,
		       uint32_t seed_index, bool *redefined, char *why, size_t len)
{
	uint8_t name[TPM_NAME_LEN], policy[32], seed[32];
	TPMS_NV_PUBLIC nv;
	int err;

	*redefined = false;
	err = tpm_pub_name(&ak->publicArea, name);
	if (err) {
		snprintf(why, len, "the AK has no SHA-256 name");
		return err;
	}
	tpm_policy_secret(name, sizeof(name), policy);
	err = tpm_esys_nv_public(e, TPM_NV_LOG_INDEX, &nv, why, len);
	if (!err && ((nv.attributes & ~TPMA_NV_WRITTEN) != TPM_NV_LOG_ATTRS ||
		     nv.nameAlg != TPM2_ALG_SHA256 || nv.dataSize != TPM_NV_LOG_SIZE ||
		     nv.authPolicy.size != 32 || memcmp(nv.authPolicy.buffer, policy, 32))) {
		log_warn("tpm: NV index 0x%08x is not RayOS's measurement index for this AK "
			 "(attributes 0x%08x): redefining it", TPM_NV_LOG_INDEX, nv.attributes);
		err = tpm_esys_nv_undefine(e, TPM_NV_LOG_INDEX, why, len);
		if (err)
			return err;
		err = -ENOENT;
		*redefined = true;
	}
	if (err == -ENOENT) {
		err = tpm_esys_nv_define(e, TPM_NV_LOG_INDEX, TPM_NV_LOG_ATTRS, TPM_NV_LOG_SIZE,
					 policy, NULL, 0, why, len);
		if (!err)
			log_info("tpm: defined measurement index 0x%08x (extend: PolicySecret of "
				 "AK 0x%08x)", TPM_NV_LOG_INDEX, TPM_AK_HANDLE);
	}
	if (err)
		return err;

	err = tpm_esys_nv_public(e, seed_index, &nv, why, len);
	if (!err && ((nv.attributes & ~TPMA_NV_WRITTEN) != TPM_NV_SEED_ATTRS ||
		     nv.dataSize != sizeof(seed) || s->created)) {
		/* An older agent's seed was readable with owner auth, or its
		 * auth was a secret this state dir no longer has. */
		log_warn("tpm: seed index 0x%08x is readable without RayOS's auth or takes a "
			 "lost secret (attributes 0x%08x): replacing it with a new seed",
			 seed_index, nv.attributes);
		err = tpm_esys_nv_undefine(e, seed_index, why, len);
		if (err)
			return err;
		err = -ENOENT;
	}
	if (err == -ENOENT) {
		err = tpm_esys_nv_define(e, seed_index, TPM_NV_SEED_ATTRS, sizeof(seed), NULL,
					 s->auth, sizeof(s->auth), why, len);
		if (err)
			return err;
		nv.attributes = 0;
		log_info("tpm: defined seed index 0x%08x (readable with RayOS's auth only)",
			 seed_index);
	}
	if (!err && !(nv.attributes & TPMA_NV_WRITTEN)) {
		if (getrandom(seed, sizeof(seed), 0) != sizeof(seed))
			return -errno;
		err = tpm_esys_nv_write(e, seed_index, s->auth, sizeof(s->auth), seed,
					sizeof(seed), why, len);
		memset(seed, 0, sizeof(seed));
	}
	return err;
}

int tpm_log_index_read(struct tpm_esys *e, uint8_t val[32], bool *written, char *why, size_t len)
{
	int err = tpm_esys_nv_read(e, TPM_NV_LOG_INDEX, NULL, 0, val, 32, why, len);

	*written = !err;
	if (err == -ENODATA) {
		memset(val, 0, 32);
		return 0;
	}
	return err;
}
