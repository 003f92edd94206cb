// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The `rayos-agent tpm …` operations: local verification, quotes (NV
 * certification of the measurement index plus a PCR quote, both signed by
 * the AK), their verification against a key the verifier trusts, and the
 * enrollment steps that tie the AK to the EK (tpm enroll / challenge /
 * quote --challenge).  Blocking; run by the CLI process, not the agent.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <tss2/tss2_mu.h>

#include "agent/core/log.h"
#include "agent/core/util.h"
#include "agent/tpm/tpm.h"
#include "agent/tpm/tpm_attest.h"
#include "agent/tpm/tpm_esys.h"
#include "agent/tpm/tpm_log.h"
#include "agent/tpm/tpm_setup.h"

#define QUOTE_TIMEOUT_MS	30000
#define PLATFORM_PCRS		8	/* PCRs 0-7: firmware and boot loader */
#define SHA256_BANK		(1u << TPM_BANK_SHA256)

struct cli_conf {
	char tcti[PATH_MAX + 32];
	uint32_t seed_index;
};

/* RUN_DIR/tpm.json as the agent wrote it; $RAYOS_TCTI overrides. */
static int read_conf(const char *run_dir, struct cli_conf *c)
{
	char path[PATH_MAX];
	uint8_t buf[8192];
	const char *env = getenv("RAYOS_TCTI");
	size_t n = 0;
	cJSON *o, *it;

	memset(c, 0, sizeof(*c));
	c->seed_index = TPM_NV_SEED_INDEX;
	snprintf(path, sizeof(path), "%s/%s", run_dir, TPM_CONF_FILE);
	if (!tpm_read_file(path, buf, sizeof(buf) - 1, &n)) {
		buf[n] = '\0';
		o = cJSON_Parse((char *)buf);
		it = cJSON_GetObjectItem(o, "tcti");
		if (cJSON_IsString(it))
			snprintf(c->tcti, sizeof(c->tcti), "%s", it->valuestring);
		it = cJSON_GetObjectItem(o, "seed_index");
		if (cJSON_IsNumber(it))
			c->seed_index = (uint32_t)it->valuedouble;
		cJSON_Delete(o);
	}
	if (env && *env)
		snprintf(c->tcti, sizeof(c->tcti), "%s", env);
	if (!c->tcti[0] && !access("/dev/tpmrm0", R_OK | W_OK))
		snprintf(c->tcti, sizeof(c->tcti), "device:/dev/tpmrm0");
	if (!c->tcti[0]) {
		log_err("tpm: no TPM: %s not found (is the agent running?) and no "
			"/dev/tpmrm0; set RAYOS_TCTI", path);
		return -ENODEV;
	}
	return 0;
}

/* Every CLI operation that uses the TPM and RayOS's secret starts here:
 * which TPM (tpm.json, $RAYOS_TCTI), then the secret; report says what is
 * missing.  what: "to quote", "to verify against", or "". */
static int cli_begin(const char *run_dir, const char *state_dir, const char *what,
		     struct cli_conf *c, struct tpm_secret *s, char *report, size_t len)
{
	int err = read_conf(run_dir, c);

	if (err) {
		snprintf(report, len, "no TPM%s%s (see above)", what[0] ? " " : "", what);
		return err;
	}
	return tpm_secret_load(state_dir, false, s, report, len);
}

static void hex_of(const uint8_t *bin, size_t len, char *hex)
{
	tpm_hex(bin, len, hex);
}

static int valid_nonce(const char *nonce_hex, uint8_t *bin, size_t *len)
{
	size_t n = nonce_hex ? strlen(nonce_hex) : 0;

	if (!n || n % 2 || n > 128 || strspn(nonce_hex, "0123456789abcdefABCDEF") != n)
		return -EINVAL;
	*len = n / 2;
	return bin ? tpm_unhex(nonce_hex, bin, n / 2) : 0;
}

/* The index's public area must be RayOS's, bound to the AK in ak.pub. */
static int check_index_owner(struct tpm_esys *e, const struct tpm_secret *s, char *report,
			     size_t len)
{
	uint8_t ak_name[TPM_NAME_LEN], want[TPM_NAME_LEN], have[TPM_NAME_LEN], policy[32];
	TPMS_NV_PUBLIC nv;
	TPM2B_PUBLIC ak;
	char why[300];
	int err;

	err = tpm_pub_load(s->ak_pub_path, &ak, why, sizeof(why));
	if (!err)
		err = tpm_pub_name(&ak.publicArea, ak_name);
	if (!err)
		err = tpm_esys_nv_public(e, TPM_NV_LOG_INDEX, &nv, why, sizeof(why));
	if (err) {
		snprintf(report, len, "cannot check NV index 0x%08x: %s", TPM_NV_LOG_INDEX, why);
		return err;
	}
	tpm_policy_secret(ak_name, sizeof(ak_name), policy);
	tpm_nv_name(TPM_NV_LOG_INDEX, TPM_NV_LOG_ATTRS | (nv.attributes & TPMA_NV_WRITTEN),
		    policy, TPM_NV_LOG_SIZE, want);
	tpm_nv_name(nv.nvIndex, nv.attributes,
		    nv.authPolicy.size == 32 ? nv.authPolicy.buffer : NULL, nv.dataSize, have);
	if (nv.nameAlg != TPM2_ALG_SHA256 || nv.authPolicy.size != 32 ||
	    memcmp(want, have, sizeof(want))) {
		snprintf(report, len, "NV index 0x%08x is not RayOS's measurement index: its "
			 "attributes or policy (who may extend it) were changed: someone "
			 "undefined it and defined their own", TPM_NV_LOG_INDEX);
		return -EBADMSG;
	}
	return 0;
}

/* What verification reads: the NV index value (the index first, then the
 * log: a record appended in between shows as "not in the TPM yet", never
 * as a false mismatch in the past), the MAC seed when RayOS's auth reads
 * it (seed_why otherwise), and the event log. */
static int load_index_and_log(const char *run_dir, const char *state_dir,
			      uint8_t val[TPM_NR_BANKS][TPM_MAX_DIGEST_LEN],
			      uint8_t seed[TPM_NV_SEED_LEN], bool *have_seed, char *seed_why,
			      size_t seed_why_len, struct tpm_log *log, char *report, size_t len)
{
	char path[PATH_MAX], why[300] = "";
	struct tpm_esys *e = NULL;
	struct tpm_secret s;
	struct cli_conf c;
	bool written;
	int err;

	*have_seed = false;
	snprintf(report, len, "?");
	err = cli_begin(run_dir, state_dir, "to verify against", &c, &s, report, len);
	if (err)
		return err;
	err = tpm_esys_open(c.tcti, &e, why, sizeof(why));
	if (!err)
		err = check_index_owner(e, &s, report, len);
	if (err) {
		if (!e)
			snprintf(report, len, "%s", why);
		goto out;
	}
	memset(val, 0, sizeof(uint8_t[TPM_NR_BANKS][TPM_MAX_DIGEST_LEN]));
	err = tpm_log_index_read(e, val[TPM_BANK_SHA256], &written, why, sizeof(why));
	if (err) {
		snprintf(report, len, "cannot read NV index 0x%08x: %s", TPM_NV_LOG_INDEX, why);
		goto out;
	}
	*have_seed = !tpm_esys_nv_read(e, c.seed_index, s.auth, sizeof(s.auth), seed,
				       TPM_NV_SEED_LEN, seed_why, seed_why_len);
	tpm_esys_close(e);
	e = NULL;
	snprintf(path, sizeof(path), "%s/%s", run_dir, TPM_LOG_FILE);
	err = tpm_log_load(path, log);
	if (err)
		snprintf(report, len, "cannot read %.200s: %s", path, strerror(-err));
out:
	tpm_esys_close(e);
	tpm_secret_wipe(&s);
	return err;
}

int tpm_verify(const char *run_dir, const char *state_dir, char *report, size_t len)
{
	uint8_t val[TPM_NR_BANKS][TPM_MAX_DIGEST_LEN], seed[TPM_NV_SEED_LEN];
	struct tpm_log log = { 0 };
	char why[300] = "";
	bool have_seed;
	int err;

	err = load_index_and_log(run_dir, state_dir, val, seed, &have_seed, why, sizeof(why),
				 &log, report, len);
	if (err)
		goto out;
	err = tpm_log_verify(&log, TPM_NV_LOG_INDEX, SHA256_BANK,
			     (const uint8_t(*)[TPM_MAX_DIGEST_LEN])val,
			     have_seed ? seed : NULL, sizeof(seed), report, len);
	if (!err && !have_seed) {
		size_t used = strlen(report);

		snprintf(report + used, len - used, " (MACs not checked: %s)", why);
	}
out:
	memset(seed, 0, sizeof(seed));
	tpm_log_free(&log);
	return err;
}

int tpm_read_verified(const char *run_dir, const char *state_dir, struct tpm_log *log,
		      size_t *confirmed, char *report, size_t len)
{
	uint8_t val[TPM_NR_BANKS][TPM_MAX_DIGEST_LEN], seed[TPM_NV_SEED_LEN];
	uint8_t all[TPM_NR_BANKS][TPM_MAX_DIGEST_LEN];
	char why[300] = "";
	bool have_seed;
	long k;
	int err;

	*confirmed = 0;
	memset(log, 0, sizeof(*log));
	err = load_index_and_log(run_dir, state_dir, val, seed, &have_seed, why, sizeof(why),
				 log, report, len);
	if (err)
		goto out;
	/* Every record checked alone (against the log's own replay), then
	 * how far the index vouches for it. */
	tpm_log_replay(log, log->nr, SHA256_BANK, all);
	err = tpm_log_verify(log, TPM_NV_LOG_INDEX, SHA256_BANK,
			     (const uint8_t(*)[TPM_MAX_DIGEST_LEN])all,
			     have_seed ? seed : NULL, sizeof(seed), report, len);
	if (err)
		goto out;
	k = tpm_log_matching_prefix(log, SHA256_BANK, (const uint8_t(*)[TPM_MAX_DIGEST_LEN])val);
	if (k < 0) {
		err = tpm_log_verify(log, TPM_NV_LOG_INDEX, SHA256_BANK,
				     (const uint8_t(*)[TPM_MAX_DIGEST_LEN])val,
				     have_seed ? seed : NULL, sizeof(seed), report, len);
		goto out;
	}
	*confirmed = (size_t)k;
	snprintf(report, len, "%zu of %zu event-log records replay to NV index 0x%08x%s%s",
		 *confirmed, log->nr, TPM_NV_LOG_INDEX, have_seed ? "" : " (MACs not checked: ",
		 have_seed ? "" : why);
	if (!have_seed && strlen(report) + 2 < len)
		strcat(report, ")");
out:
	memset(seed, 0, sizeof(seed));
	if (err)
		tpm_log_free(log);
	return err;
}

/* "sha1:0,1,…,7+sha256:0,…,7" for the banks the TPM has PCRs 0-7 in. */
static int pcr_list(const TPML_PCR_SELECTION *banks, char *buf, size_t len)
{
	size_t off = 0;

	buf[0] = '\0';
	for (uint32_t i = 0; i < banks->count; i++) {
		int b = tpm_bank_of_alg(banks->pcrSelections[i].hash);

		if (b < 0)
			continue;
		off += (size_t)snprintf(buf + off, len - off, "%s%s:0,1,2,3,4,5,6,7",
					off ? "+" : "", tpm_bank_name(b));
	}
	return off ? 0 : -ENODEV;
}

static int write_log_prefix(const struct tpm_log *log, size_t keep, const char *path)
{
	size_t total = 0, off = 0;
	char *buf;
	int err;

	for (size_t i = 0; i < keep; i++)
		total += strlen(log->recs[i].line) + 1;
	buf = malloc(total + 1);
	if (!buf)
		return -ENOMEM;
	for (size_t i = 0; i < keep; i++)
		off += (size_t)sprintf(buf + off, "%s\n", log->recs[i].line);
	err = file_write_atomic(path, buf, off, 0644);
	free(buf);
	return err;
}

static int activate(const char *tcti, const struct tpm_secret *s, const char *challenge,
		    const char *out_dir, char *report, size_t len)
{
	uint8_t cred[4096], secret[64];
	size_t cred_len = 0, secret_len = sizeof(secret);
	char path[PATH_MAX], why[300];
	struct tpm_esys *e = NULL;
	TPM2B_PUBLIC ek;
	uint32_t ekh;
	int err;

	err = tpm_read_file(challenge, cred, sizeof(cred), &cred_len);
	if (err) {
		snprintf(report, len, "cannot read %.200s: %s", challenge, strerror(-err));
		return err;
	}
	err = tpm_esys_open(tcti, &e, why, sizeof(why));
	if (!err)
		err = tpm_ek_find(e, &ekh, &ek, why, sizeof(why));
	if (!err)
		err = tpm_esys_activate(e, TPM_AK_HANDLE, s->auth, sizeof(s->auth), ekh, cred,
					cred_len, secret, &secret_len, why, sizeof(why));
	tpm_esys_close(e);
	if (err) {
		snprintf(report, len, "cannot activate the credential %.200s: %s", challenge, why);
		return err;
	}
	snprintf(path, sizeof(path), "%.3000s/activation.bin", out_dir);
	err = file_write_atomic(path, secret, secret_len, 0644);
	memset(secret, 0, sizeof(secret));
	if (err)
		snprintf(report, len, "cannot write %.200s: %s", path, strerror(-err));
	return err;
}

int tpm_quote(const char *run_dir, const char *state_dir, const char *nonce_hex,
	      const char *out_dir, const char *challenge, char *report, size_t len)
{
	char nvmsg[PATH_MAX], nvsig[PATH_MAX], msg[PATH_MAX], sig[PATH_MAX], pcrs[PATH_MAX];
	char lock[PATH_MAX], sel[256], handle[16], index[16], auth[PATH_MAX + 8], why[300];
	char path[PATH_MAX], name_hex[2 * TPM_NAME_LEN + 1];
	const char *certify[] = { "tpm2_nvcertify", "-C", handle, "-P", auth, "-c", index,
				  "-g", "sha256", "-s", "ecdsa", "-o", nvsig, "--attestation",
				  nvmsg, "-q", nonce_hex, "--size", "32", "--offset", "0", index,
				  NULL };
	const char *quote[] = { "tpm2_quote", "-c", handle, "-p", auth, "-l", sel, "-q", nonce_hex,
				"-m", msg, "-s", sig, "-o", pcrs, "-F", "values", "-g", "sha256",
				NULL };
	uint8_t val[TPM_NR_BANKS][TPM_MAX_DIGEST_LEN], buf[4096], ak_name[TPM_NAME_LEN];
	struct tpm_log log = { 0 };
	struct tpm_esys *e = NULL;
	struct tpm_secret s = { 0 };
	TPML_PCR_SELECTION banks;
	TPM2B_PUBLIC ak;
	TPMS_ATTEST att;
	struct cli_conf c;
	cJSON *meta = NULL;
	char *text = NULL;
	size_t n = 0, off = 0, keep;
	int lock_fd = -1, err;
	bool written;
	long k;

	snprintf(report, len, "?");
	if (valid_nonce(nonce_hex, NULL, &n)) {
		snprintf(report, len, "--nonce must be 2 to 128 hex digits, an even number");
		return -EINVAL;
	}
	err = cli_begin(run_dir, state_dir, "to quote", &c, &s, report, len);
	if (err)
		return err;
	err = mkdir_p(out_dir, 0755);
	if (err) {
		snprintf(report, len, "cannot create %.200s: %s", out_dir, strerror(-err));
		goto out;
	}
	snprintf(handle, sizeof(handle), "0x%08x", TPM_AK_HANDLE);
	snprintf(index, sizeof(index), "0x%08x", TPM_NV_LOG_INDEX);
	snprintf(auth, sizeof(auth), "file:%s", s.auth_path);
	snprintf(nvmsg, sizeof(nvmsg), "%.3000s/nv.msg", out_dir);
	snprintf(nvsig, sizeof(nvsig), "%.3000s/nv.sig", out_dir);
	snprintf(msg, sizeof(msg), "%.3000s/quote.msg", out_dir);
	snprintf(sig, sizeof(sig), "%.3000s/quote.sig", out_dir);
	snprintf(pcrs, sizeof(pcrs), "%.3000s/quote.pcrs", out_dir);
	snprintf(lock, sizeof(lock), "%.3000s/lock", s.dir);
	/* One quote at a time: on a raw swtpm concurrent CLIs would fight
	 * over its few session and object slots. */
	lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lock_fd < 0 || flock(lock_fd, LOCK_EX)) {
		err = -errno;
		snprintf(report, len, "cannot lock %.200s: %s", lock, strerror(errno));
		goto out;
	}
	err = tpm_esys_open(c.tcti, &e, why, sizeof(why));
	if (!err && (err = tpm_ak_current(e, &s, &ak, why, sizeof(why))))
		snprintf(why + strlen(why), sizeof(why) - strlen(why),
			 " (the agent makes the AK at its start)");
	if (!err)
		err = tpm_log_index_read(e, buf, &written, why, sizeof(why));
	if (!err && !written) {
		snprintf(why, sizeof(why), "NV index 0x%08x is unwritten: nothing was measured "
			 "since the TPM or the index was reset", TPM_NV_LOG_INDEX);
		err = -ENODATA;
	}
	if (!err)
		err = tpm_esys_pcr_banks(e, 0, &banks, why, sizeof(why));
	tpm_esys_close(e);
	e = NULL;
	if (!err && pcr_list(&banks, sel, sizeof(sel))) {
		snprintf(why, sizeof(why), "the TPM has no SHA-1/SHA-2 bank with PCRs 0-7");
		err = -ENODEV;
	}
	if (!err)
		err = tpm_tool(c.tcti, certify, QUOTE_TIMEOUT_MS, NULL, 0, NULL, NULL, why,
			       sizeof(why));
	if (!err)
		err = tpm_tool(c.tcti, quote, QUOTE_TIMEOUT_MS, NULL, 0, NULL, NULL, why,
			       sizeof(why));
	if (err) {
		snprintf(report, len, "%s", why);
		goto out;
	}
	/* The certified value (read back from what the TPM signed) decides
	 * which prefix of the log this quote covers. */
	memset(val, 0, sizeof(val));
	if (tpm_read_file(nvmsg, buf, sizeof(buf), &n) ||
	    Tss2_MU_TPMS_ATTEST_Unmarshal(buf, n, &off, &att) ||
	    att.attested.nv.nvContents.size != 32) {
		snprintf(report, len, "tpm2_nvcertify wrote no NV attestation to %.200s", nvmsg);
		err = -EBADMSG;
		goto out;
	}
	memcpy(val[TPM_BANK_SHA256], att.attested.nv.nvContents.buffer, 32);
	snprintf(path, sizeof(path), "%s/%s", run_dir, TPM_LOG_FILE);
	err = tpm_log_load(path, &log);
	if (err) {
		snprintf(report, len, "cannot read %.200s: %s", path, strerror(-err));
		goto out;
	}
	k = tpm_log_matching_prefix(&log, SHA256_BANK, (const uint8_t(*)[TPM_MAX_DIGEST_LEN])val);
	keep = k >= 0 ? (size_t)k : log.nr;
	snprintf(path, sizeof(path), "%.3000s/eventlog.jsonl", out_dir);
	err = write_log_prefix(&log, keep, path);
	if (!err) {
		off = 0;
		snprintf(path, sizeof(path), "%.3000s/ak.pub", out_dir);
		err = Tss2_MU_TPM2B_PUBLIC_Marshal(&ak, buf, sizeof(buf), &off) ? -EINVAL
			: file_write_atomic(path, buf, off, 0644);
	}
	if (err) {
		snprintf(report, len, "cannot write %.200s: %s", path, strerror(-err));
		goto out;
	}
	/* Unsigned and informational: verify-quote reads none of it. */
	tpm_pub_name(&ak.publicArea, ak_name);
	hex_of(ak_name, sizeof(ak_name), name_hex);
	meta = cJSON_CreateObject();
	cJSON_AddNumberToObject(meta, "nv_index", TPM_NV_LOG_INDEX);
	cJSON_AddNumberToObject(meta, "records", (double)keep);
	cJSON_AddStringToObject(meta, "nonce", nonce_hex);
	cJSON_AddStringToObject(meta, "pcrs", sel);
	cJSON_AddStringToObject(meta, "ak_name", name_hex);
	cJSON_AddNumberToObject(meta, "reset_count", att.clockInfo.resetCount);
	text = cJSON_Print(meta);
	snprintf(path, sizeof(path), "%.3000s/quote.json", out_dir);
	err = text ? file_write_atomic(path, text, strlen(text), 0644) : -ENOMEM;
	if (err) {
		snprintf(report, len, "cannot write %.200s: %s", path, strerror(-err));
		goto out;
	}
	if (challenge) {
		err = activate(c.tcti, &s, challenge, out_dir, report, len);
		if (err)
			goto out;
	}
	snprintf(report, len, "quoted NV index 0x%08x (%zu log records) and PCRs %s with AK "
		 "%.16s… into %.200s%s%s", TPM_NV_LOG_INDEX, keep, sel, name_hex, out_dir,
		 challenge ? "; credential activated (activation.bin)" : "",
		 k < 0 ? "; the log does NOT replay to the certified value" : "");
out:
	if (lock_fd >= 0)
		close(lock_fd);
	cJSON_Delete(meta);
	free(text);
	tpm_log_free(&log);
	tpm_secret_wipe(&s);
	return err;
}

/* ---- verification ---- */

static int load_in(const char *dir, const char *name, uint8_t *buf, size_t cap, size_t *n,
		   char *report, size_t len)
{
	char path[PATH_MAX];
	int err;

	snprintf(path, sizeof(path), "%.3000s/%s", dir, name);
	err = tpm_read_file(path, buf, cap, n);
	if (err)
		snprintf(report, len, "cannot read %.200s: %s", path, strerror(-err));
	return err;
}

static int parse_name(const char *hex, uint8_t name[TPM_NAME_LEN])
{
	while (*hex == ' ')
		hex++;
	if (strlen(hex) >= 2 * TPM_NAME_LEN && hex[2 * TPM_NAME_LEN] == '\n') {
		char tmp[2 * TPM_NAME_LEN + 1];

		snprintf(tmp, sizeof(tmp), "%.*s", 2 * TPM_NAME_LEN, hex);
		return tpm_unhex(tmp, name, TPM_NAME_LEN);
	}
	return tpm_unhex(hex, name, TPM_NAME_LEN);
}

/* A name kept in a file by `tpm challenge` / `tpm enroll` (hex text). */
static int load_name(const char *dir, const char *file, uint8_t name[TPM_NAME_LEN],
		     char *report, size_t len)
{
	uint8_t buf[256];
	size_t n = 0;
	int err = load_in(dir, file, buf, sizeof(buf) - 1, &n, report, len);

	if (err)
		return err;
	buf[n] = '\0';
	if (parse_name((char *)buf, name)) {
		snprintf(report, len, "%.200s/%s is not a TPM name in hex", dir, file);
		return -EBADMSG;
	}
	return 0;
}

/* The AK the verifier trusts: given as a file, or named by a fingerprint,
 * or proven by a credential activation against a trusted EK. */
static int trusted_ak(const char *dir, const struct tpm_trust *tr, TPM2B_PUBLIC *ak,
		      char *how, size_t how_len, char *report, size_t len)
{
	uint8_t name[TPM_NAME_LEN], want[TPM_NAME_LEN], ek_name[TPM_NAME_LEN], buf[4096];
	uint8_t secret[64], act[64];
	char path[PATH_MAX], why[300];
	size_t n = 0, sn = 0, an = 0;
	TPM2B_PUBLIC ek;
	int err;

	if (tr->ak_file && !tpm_pub_load(tr->ak_file, ak, why, sizeof(why))) {
		snprintf(how, how_len, "the AK in %.200s", tr->ak_file);
		return 0;
	}
	if (tr->ek_file && !tr->challenge) {
		snprintf(report, len, "--ek needs --challenge DIR (made by `tpm challenge` for that "
			 "EK and activated by `tpm quote --challenge`): only a credential activation "
			 "proves the AK lives in the TPM of that EK");
		return -EINVAL;
	}
	if (!tr->ak_file && !tr->ak_name && !(tr->ek_file && tr->challenge)) {
		snprintf(report, len, "verify-quote needs a key the verifier trusts: --ak FILE "
			 "(the AK's public area from `tpm enroll`), --ak-name HEX, or --ek FILE "
			 "--challenge DIR; the key inside %.200s proves nothing by itself", dir);
		return -EINVAL;
	}
	err = load_in(dir, "ak.pub", buf, sizeof(buf), &n, report, len);
	if (!err && tpm_pub_parse(buf, n, ak)) {
		snprintf(report, len, "%.200s/ak.pub is not a TPM2B_PUBLIC", dir);
		err = -EBADMSG;
	}
	if (err)
		return err;
	tpm_pub_name(&ak->publicArea, name);
	if (tr->ak_file) {
		/* A PEM public key: the quote's ak.pub must hold that very key
		 * (its attributes then go into the names checked later). */
		err = tpm_pub_matches_pem(tr->ak_file, &ak->publicArea, report, len);
		snprintf(how, how_len, "the AK key in %.200s", tr->ak_file);
		return err;
	}
	if (tr->ak_name) {
		if (parse_name(tr->ak_name, want)) {
			snprintf(report, len, "--ak-name must be the AK's TPM name: %d hex digits "
				 "(000b…)", 2 * TPM_NAME_LEN);
			return -EINVAL;
		}
		if (memcmp(name, want, sizeof(name))) {
			snprintf(report, len, "the AK in %.200s/ak.pub is not the one --ak-name "
				 "names: the quote comes from another key or TPM", dir);
			return -EBADMSG;
		}
		snprintf(how, how_len, "the AK named %.16s…", tr->ak_name);
		return 0;
	}
	/* --ek with --challenge: the credential was made for that EK and this
	 * AK's name, and only that TPM could have opened it. */
	err = tpm_pub_load(tr->ek_file, &ek, why, sizeof(why));
	if (err) {
		snprintf(report, len, "%s", why);
		return err;
	}
	tpm_pub_name(&ek.publicArea, ek_name);
	err = load_name(tr->challenge, "ek.name", want, report, len);
	if (err)
		return err;
	if (memcmp(want, ek_name, sizeof(want))) {
		snprintf(report, len, "the challenge in %.200s was made for another EK than "
			 "%.200s", tr->challenge, tr->ek_file);
		return -EBADMSG;
	}
	err = load_name(tr->challenge, "ak.name", want, report, len);
	if (err)
		return err;
	if (memcmp(want, name, sizeof(want))) {
		snprintf(report, len, "%.200s/ak.pub is not the AK the challenge in %.200s was "
			 "made for: the quote comes from another key or TPM", dir, tr->challenge);
		return -EBADMSG;
	}
	snprintf(path, sizeof(path), "%.3000s", tr->challenge);
	err = load_in(path, "secret", secret, sizeof(secret), &sn, report, len);
	if (!err)
		err = load_in(dir, "activation.bin", act, sizeof(act), &an, report, len);
	if (err)
		goto out;
	if (sn != an || memcmp(secret, act, sn)) {
		snprintf(report, len, "the credential was not activated by the TPM of that EK "
			 "(activation.bin differs from the challenge's secret): the AK is not "
			 "proven to live next to that EK");
		err = -EBADMSG;
		goto out;
	}
	snprintf(how, how_len, "the AK proven by credential activation against the EK in "
		 "%.200s", tr->ek_file);
out:
	memset(secret, 0, sizeof(secret));
	return err;
}

static int parse_banks(const char *list, unsigned int *banks)
{
	char buf[128], *save = NULL;

	*banks = 0;
	if (!list)
		return 0;
	snprintf(buf, sizeof(buf), "%s", list);
	for (char *t = strtok_r(buf, ",+ ", &save); t; t = strtok_r(NULL, ",+ ", &save)) {
		int b = tpm_bank_from_name(t);

		if (b < 0)
			return -EINVAL;
		*banks |= 1u << b;
	}
	return *banks ? 0 : -EINVAL;
}

/* The signed TPMS_ATTEST in dir/msg_file under dir/sig_file, of type. */
static int signed_attest(const char *dir, const char *msg_file, const char *sig_file,
			 const TPMT_PUBLIC *ak, TPM2_ST type, const uint8_t *nonce,
			 size_t nonce_len, TPMS_ATTEST *att, char *report, size_t len)
{
	uint8_t msg[4096], sig[1024];
	size_t mn = 0, sn = 0;
	char why[300];
	int err;

	err = load_in(dir, msg_file, msg, sizeof(msg), &mn, report, len);
	if (!err)
		err = load_in(dir, sig_file, sig, sizeof(sig), &sn, report, len);
	if (err)
		return err;
	err = tpm_attest_verify(ak, msg, mn, sig, sn, att, why, sizeof(why));
	if (err) {
		snprintf(report, len, "%s: %s", msg_file, why);
		return err;
	}
	if (att->type != type) {
		snprintf(report, len, "%s is a signed attestation of another kind (0x%04x)",
			 msg_file, att->type);
		return -EBADMSG;
	}
	if (att->extraData.size != nonce_len || memcmp(att->extraData.buffer, nonce, nonce_len)) {
		snprintf(report, len, "%s answers another nonce than the one given: a replayed "
			 "or foreign quote", msg_file);
		return -EBADMSG;
	}
	return 0;
}

/* quote.pcrs: the values in the order of the signed selection, nothing
 * else; they must hash to the signed pcrDigest. */
static int quoted_pcrs(const char *dir, const TPMS_QUOTE_INFO *q, struct tpm_pcr_vals *vals,
		       unsigned int *banks, char *sel_text, size_t sel_len, char *report,
		       size_t len)
{
	static const size_t blen[4] = { 20, 32, 48, 64 };
	uint8_t buf[8192], digest[32];
	size_t n = 0, off = 0, soff = 0;
	char why[200];
	int err;

	err = load_in(dir, "quote.pcrs", buf, sizeof(buf), &n, report, len);
	if (err)
		return err;
	memset(vals, 0, sizeof(*vals));
	*banks = 0;
	sel_text[0] = '\0';
	for (uint32_t i = 0; i < q->pcrSelect.count && i < TPM2_NUM_PCR_BANKS; i++) {
		const TPMS_PCR_SELECTION *s = &q->pcrSelect.pcrSelections[i];
		int b = tpm_bank_of_alg(s->hash);
		unsigned int nr = 0;

		if (b < 0) {
			snprintf(report, len, "the quote covers a bank (0x%04x) RayOS cannot check",
				 s->hash);
			return -EBADMSG;
		}
		*banks |= 1u << b;
		for (unsigned int pcr = 0; pcr < 8u * s->sizeofSelect && pcr < 24; pcr++) {
			if (!(s->pcrSelect[pcr / 8] & (1u << (pcr % 8))))
				continue;
			if (off + blen[b] > n) {
				snprintf(report, len, "quote.pcrs is shorter than the signed PCR "
					 "selection");
				return -EBADMSG;
			}
			memcpy(vals->v[b][pcr], buf + off, blen[b]);
			vals->have[b] |= 1u << pcr;
			off += blen[b];
			nr++;
		}
		soff += (size_t)snprintf(sel_text + soff, sel_len - soff, "%s%s:%u PCRs",
					 soff ? ", " : "", tpm_bank_name(b), nr);
	}
	if (off != n) {
		snprintf(report, len, "quote.pcrs holds more than the signed PCR selection");
		return -EBADMSG;
	}
	err = tpm_pcr_digest(&q->pcrSelect, vals, digest, why, sizeof(why));
	if (err) {
		snprintf(report, len, "%s", why);
		return -EBADMSG;
	}
	if (q->pcrDigest.size != 32 || memcmp(q->pcrDigest.buffer, digest, 32)) {
		snprintf(report, len, "the PCR values in quote.pcrs are not the ones the quote "
			 "signed (pcrDigest differs)");
		return -EBADMSG;
	}
	return 0;
}

int tpm_verify_quote(const char *dir, const char *nonce_hex, const struct tpm_trust *trust,
		     char *report, size_t len)
{
	uint8_t nonce[64], ak_name[TPM_NAME_LEN], want[TPM_NAME_LEN];
	uint8_t val[TPM_NR_BANKS][TPM_MAX_DIGEST_LEN];
	char how[300], sel[128], name_hex[2 * TPM_NAME_LEN + 1], path[PATH_MAX];
	struct tpm_pcr_vals vals;
	struct tpm_log log = { 0 };
	const TPMS_NV_CERTIFY_INFO *nv;
	TPMS_ATTEST nv_att, q_att;
	unsigned int asked, quoted;
	TPM2B_PUBLIC ak;
	size_t nonce_len = 0, used;
	char why[300];
	int err;

	snprintf(report, len, "?");
	if (valid_nonce(nonce_hex, nonce, &nonce_len)) {
		snprintf(report, len, "--nonce must be 2 to 128 hex digits, an even number");
		return -EINVAL;
	}
	if (parse_banks(trust->banks, &asked)) {
		snprintf(report, len, "--banks: want a list of sha1, sha256, sha384, sha512");
		return -EINVAL;
	}
	err = trusted_ak(dir, trust, &ak, how, sizeof(how), report, len);
	if (err)
		return err;
	if (tpm_ak_check(&ak.publicArea, why, sizeof(why))) {
		snprintf(report, len, "%s", why);
		return -EINVAL;
	}
	tpm_pub_name(&ak.publicArea, ak_name);
	hex_of(ak_name, sizeof(ak_name), name_hex);

	/* RayOS's register: the NV certification, its index bound to the AK. */
	err = signed_attest(dir, "nv.msg", "nv.sig", &ak.publicArea, TPM2_ST_ATTEST_NV, nonce,
			    nonce_len, &nv_att, report, len);
	if (err)
		return err;
	nv = &nv_att.attested.nv;
	tpm_nv_log_name(ak_name, want);
	if (nv->indexName.size != TPM_NAME_LEN || memcmp(nv->indexName.name, want, TPM_NAME_LEN)) {
		snprintf(report, len, "the certified NV index is not RayOS's measurement index "
			 "for this AK (another index, or one redefined with another policy): "
			 "its value proves nothing");
		return -EBADMSG;
	}
	if (nv->offset != 0 || nv->nvContents.size != 32) {
		snprintf(report, len, "the NV certification covers bytes %u..%u, not the whole "
			 "index", nv->offset, nv->offset + nv->nvContents.size);
		return -EBADMSG;
	}
	/* The platform's PCRs: banks, selection and values all from the
	 * signed attestation; --banks can only ask for more. */
	err = signed_attest(dir, "quote.msg", "quote.sig", &ak.publicArea, TPM2_ST_ATTEST_QUOTE,
			    nonce, nonce_len, &q_att, report, len);
	if (!err)
		err = quoted_pcrs(dir, &q_att.attested.quote, &vals, &quoted, sel, sizeof(sel),
				  report, len);
	if (err)
		return err;
	if (asked & ~quoted) {
		for (int b = 0; b < TPM_NR_BANKS; b++)
			if ((asked & ~quoted) & (1u << b)) {
				snprintf(report, len, "--banks asks for %s but the signed quote "
					 "covers no %s PCRs", tpm_bank_name(b), tpm_bank_name(b));
				break;
			}
		return -EBADMSG;
	}
	if (q_att.clockInfo.resetCount != nv_att.clockInfo.resetCount) {
		snprintf(report, len, "the PCR quote and the NV certification come from "
			 "different TPM boots");
		return -EBADMSG;
	}

	snprintf(path, sizeof(path), "%.3000s/eventlog.jsonl", dir);
	err = tpm_log_load(path, &log);
	if (err) {
		snprintf(report, len, "cannot read %.200s: %s", path, strerror(-err));
		return err;
	}
	memset(val, 0, sizeof(val));
	memcpy(val[TPM_BANK_SHA256], nv->nvContents.buffer, 32);
	/* No MAC key here: a remote verifier has only the signed values. */
	err = tpm_log_verify(&log, TPM_NV_LOG_INDEX, SHA256_BANK,
			     (const uint8_t(*)[TPM_MAX_DIGEST_LEN])val, NULL, 0, report, len);
	tpm_log_free(&log);
	if (err)
		return err;
	used = strlen(report);
	snprintf(report + used, len - used, "; signed by %s (%.16s…); PCR quote: %s; nonce "
		 "and both signatures OK; TPM reset count %u", how, name_hex, sel,
		 nv_att.clockInfo.resetCount);
	return 0;
}

/* ---- enrollment ---- */

int tpm_enroll(const char *run_dir, const char *state_dir, const char *out_dir,
	       char *report, size_t len)
{
	uint8_t buf[4096], name[TPM_NAME_LEN];
	char path[PATH_MAX], why[300], idx[16], hex[2 * TPM_NAME_LEN + 2];
	const char *nvread[] = { "tpm2_nvread", "-C", "o", "-o", path, idx, NULL };
	const char *pem[] = { "tpm2_readpublic", "-c", idx, "-f", "pem", "-o", path, NULL };
	struct tpm_esys *e = NULL;
	struct tpm_secret s;
	TPM2B_PUBLIC ak, ek = { 0 };
	TPMS_NV_PUBLIC nv;
	struct cli_conf c;
	uint32_t ekh, cert_index;
	size_t off;
	bool cert = false;
	int err;

	err = cli_begin(run_dir, state_dir, "", &c, &s, report, len);
	if (err)
		return err;
	err = mkdir_p(out_dir, 0755);
	if (err) {
		snprintf(report, len, "cannot create %.200s: %s", out_dir, strerror(-err));
		goto out;
	}
	err = tpm_esys_open(c.tcti, &e, why, sizeof(why));
	if (!err)
		err = tpm_ak_current(e, &s, &ak, why, sizeof(why));
	if (!err)
		err = tpm_ek_find(e, &ekh, &ek, why, sizeof(why));
	/* The EK certificate of the EK's kind, low range (TCG EK profile). */
	cert_index = ek.publicArea.type == TPM2_ALG_RSA ? 0x01c00002 : 0x01c0000a;
	cert = !err && !tpm_esys_nv_public(e, cert_index, &nv, why, sizeof(why));
	tpm_esys_close(e);
	if (err) {
		snprintf(report, len, "%s", why);
		goto out;
	}
	off = 0;
	snprintf(path, sizeof(path), "%.3000s/ak.pub", out_dir);
	err = Tss2_MU_TPM2B_PUBLIC_Marshal(&ak, buf, sizeof(buf), &off) ? -EINVAL
		: file_write_atomic(path, buf, off, 0644);
	if (!err) {
		off = 0;
		snprintf(path, sizeof(path), "%.3000s/ek.pub", out_dir);
		err = Tss2_MU_TPM2B_PUBLIC_Marshal(&ek, buf, sizeof(buf), &off) ? -EINVAL
			: file_write_atomic(path, buf, off, 0644);
	}
	if (!err) {
		tpm_pub_name(&ak.publicArea, name);
		hex_of(name, sizeof(name), hex);
		strcat(hex, "\n");
		snprintf(path, sizeof(path), "%.3000s/ak.name", out_dir);
		err = file_write_atomic(path, hex, strlen(hex), 0644);
	}
	if (err) {
		snprintf(report, len, "cannot write %.200s: %s", path, strerror(-err));
		goto out;
	}
	snprintf(idx, sizeof(idx), "0x%08x", TPM_AK_HANDLE);
	snprintf(path, sizeof(path), "%.3000s/ak.pem", out_dir);
	err = tpm_tool(c.tcti, pem, 0, NULL, 0, NULL, NULL, why, sizeof(why));
	if (err) {
		snprintf(report, len, "cannot write the AK as PEM: %s", why);
		goto out;
	}
	if (cert) {
		snprintf(idx, sizeof(idx), "0x%08x", cert_index);
		snprintf(path, sizeof(path), "%.3000s/ek.crt", out_dir);
		err = tpm_tool(c.tcti, nvread, 0, NULL, 0, NULL, NULL, why, sizeof(why));
		if (err) {
			snprintf(report, len, "cannot read the EK certificate at %s: %s", idx, why);
			goto out;
		}
	}
	snprintf(report, len, "wrote ek.pub (EK 0x%08x), ak.pub, ak.pem and ak.name (AK %.16s…)%s to "
		 "%.200s: the verifier checks them with `rayos-agent tpm challenge`", ekh, hex,
		 cert ? ", ek.crt" : " (this TPM holds no EK certificate)", out_dir);
out:
	tpm_secret_wipe(&s);
	return err;
}

int tpm_challenge(const char *ek_file, const char *ak_file, const char *ek_cert,
		  const char *ca_file, const char *out_dir, char *report, size_t len)
{
	uint8_t secret[32], name[TPM_NAME_LEN];
	char path[PATH_MAX], cred[PATH_MAX], why[300], hex[2 * TPM_NAME_LEN + 2];
	char ak_hex[2 * TPM_NAME_LEN + 1];
	const char *make[] = { "tpm2_makecredential", "-T", "none", "-u", ek_file, "-s", path,
			       "-n", ak_hex, "-o", cred, NULL };
	TPM2B_PUBLIC ek, ak;
	int err;

	if (!ek_file || !ak_file) {
		snprintf(report, len, "tpm challenge needs --ek FILE and --ak FILE (from `tpm "
			 "enroll` on the host)");
		return -EINVAL;
	}
	if (ca_file && !ek_cert) {
		snprintf(report, len, "--ek-ca checks an EK certificate: give it with --ek-cert");
		return -EINVAL;
	}
	err = tpm_pub_load(ek_file, &ek, report, len);
	if (!err)
		err = tpm_pub_load(ak_file, &ak, report, len);
	if (err)
		return err;
	if (tpm_ak_check(&ak.publicArea, report, len))
		return -EINVAL;
	if (!(ek.publicArea.objectAttributes & TPMA_OBJECT_RESTRICTED) ||
	    !(ek.publicArea.objectAttributes & TPMA_OBJECT_DECRYPT)) {
		snprintf(report, len, "%.200s is not an endorsement key (not a restricted "
			 "decryption key)", ek_file);
		return -EINVAL;
	}
	if (ek_cert && (err = tpm_ek_cert_check(ek_cert, &ek.publicArea, ca_file, why,
						sizeof(why)))) {
		snprintf(report, len, "%s: %s", ek_cert, why);
		return err;
	}
	err = mkdir_p(out_dir, 0700);
	if (!err && getrandom(secret, sizeof(secret), 0) != sizeof(secret))
		err = -errno;
	snprintf(path, sizeof(path), "%.3000s/secret", out_dir);
	if (!err)
		err = file_write_atomic(path, secret, sizeof(secret), 0600);
	memset(secret, 0, sizeof(secret));
	if (err) {
		snprintf(report, len, "cannot write %.200s: %s", path, strerror(-err));
		return err;
	}
	tpm_pub_name(&ak.publicArea, name);
	hex_of(name, sizeof(name), ak_hex);
	snprintf(cred, sizeof(cred), "%.3000s/credential.bin", out_dir);
	err = tpm_tool(NULL, make, 0, NULL, 0, NULL, NULL, why, sizeof(why));
	if (err) {
		snprintf(report, len, "%s", why);
		return err;
	}
	snprintf(hex, sizeof(hex), "%s\n", ak_hex);
	snprintf(path, sizeof(path), "%.3000s/ak.name", out_dir);
	err = file_write_atomic(path, hex, strlen(hex), 0644);
	if (!err) {
		tpm_pub_name(&ek.publicArea, name);
		hex_of(name, sizeof(name), hex);
		strcat(hex, "\n");
		snprintf(path, sizeof(path), "%.3000s/ek.name", out_dir);
		err = file_write_atomic(path, hex, strlen(hex), 0644);
	}
	if (err) {
		snprintf(report, len, "cannot write %.200s: %s", path, strerror(-err));
		return err;
	}
	snprintf(report, len, "credential for AK %.16s… on EK %.16s…%s in %.200s: the host runs "
		 "`rayos-agent tpm quote --challenge %.200s`; keep %.200s/secret here",
		 ak_hex, hex, ek_cert ? (ca_file ? " (EK certificate chains to the CA)"
					: " (EK certificate matches)") : "",
		 cred, cred, out_dir);
	return 0;
}

/* ---- snapshots and the seed ---- */

int tpm_vm_snapshot(const char *run_dir, uint32_t vm_id, cJSON **out)
{
	uint8_t val[TPM_NR_BANKS][TPM_MAX_DIGEST_LEN];
	char path[PATH_MAX];
	struct tpm_log log = { 0 };
	unsigned int banks;
	long found = -1;
	cJSON *o, *p;
	int err;

	*out = NULL;
	snprintf(path, sizeof(path), "%s/%s", run_dir, TPM_LOG_FILE);
	err = tpm_log_load(path, &log);
	if (err)
		return err;
	banks = log.nr ? log.recs[0].banks : 0;
	for (size_t i = 0; i < log.nr; i++) {
		const cJSON *id = cJSON_GetObjectItem(log.recs[i].content, "id");

		banks &= log.recs[i].banks;
		if (!strcmp(log.recs[i].content_type, TPM_EV_VM_LAUNCH) && cJSON_IsNumber(id) &&
		    id->valuedouble == vm_id)
			found = (long)i;	/* the latest launch counts */
	}
	if (found < 0) {
		err = -ENOENT;
		goto out;
	}
	tpm_log_replay(&log, (size_t)found + 1, banks, val);
	o = cJSON_CreateObject();
	if (!o) {
		err = -ENOMEM;
		goto out;
	}
	cJSON_AddNumberToObject(o, "vm_id", vm_id);
	cJSON_AddNumberToObject(o, "recnum", (double)found);
	cJSON_AddNumberToObject(o, "nv_index", log.recs[found].nv_index);
	cJSON_AddItemToObject(o, "launch", cJSON_Duplicate(log.recs[found].content, true));
	p = cJSON_AddObjectToObject(o, "values");
	for (int b = 0; p && b < TPM_NR_BANKS; b++) {
		char hex[2 * TPM_MAX_DIGEST_LEN + 1];

		if (!(banks & (1u << b)))
			continue;
		tpm_hex(val[b], tpm_bank_len(b), hex);
		cJSON_AddStringToObject(p, tpm_bank_name(b), hex);
	}
	*out = o;
out:
	tpm_log_free(&log);
	return err;
}

/* The seed index with the state dir's auth, over one connection. */
static int seed_op(const char *run_dir, const char *state_dir, uint32_t index, int op,
		   void *buf, size_t len)
{
	struct tpm_esys *e = NULL;
	struct tpm_secret s;
	struct cli_conf c;
	char why[300];
	int err = read_conf(run_dir, &c);

	if (err)
		return err;
	err = tpm_secret_load(state_dir, false, &s, why, sizeof(why));
	if (!err)
		err = tpm_esys_open(c.tcti, &e, why, sizeof(why));
	index = index ? index : c.seed_index;
	if (!err && op == 'd')
		err = tpm_esys_nv_define(e, index, TPM_NV_SEED_ATTRS, (uint16_t)len, NULL, s.auth,
					 sizeof(s.auth), why, sizeof(why));
	else if (!err && op == 'w')
		err = tpm_esys_nv_write(e, index, s.auth, sizeof(s.auth), buf, len, why,
					sizeof(why));
	else if (!err)
		err = tpm_esys_nv_read(e, index, s.auth, sizeof(s.auth), buf, len, why,
				       sizeof(why));
	tpm_esys_close(e);
	tpm_secret_wipe(&s);
	if (err)
		log_err("tpm: NV 0x%08x: %s", index, why);
	return err;
}

int tpm_nv_define(const char *run_dir, const char *state_dir, uint32_t index, size_t size)
{
	return seed_op(run_dir, state_dir, index, 'd', NULL, size);
}

int tpm_nv_write(const char *run_dir, const char *state_dir, uint32_t index, const void *data,
		 size_t len)
{
	return seed_op(run_dir, state_dir, index, 'w', (void *)data, len);
}

int tpm_nv_read(const char *run_dir, const char *state_dir, uint32_t index, void *buf,
		size_t len)
{
	return seed_op(run_dir, state_dir, index, 'r', buf, len);
}
