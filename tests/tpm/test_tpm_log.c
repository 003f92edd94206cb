// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The measured-launch event log without a TPM: bank hashes and HMAC against
 * published vectors, extend math, record format/parse round trips, torn
 * last lines, and verification naming an altered, a removed, a reordered,
 * a duplicated, a renumbered, a retyped and a forged record; and the
 * verifier's TPM names and policy digest against values a TPM computed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/tpm/tpm_attest.h"
#include "agent/tpm/tpm_hash.h"
#include "agent/tpm/tpm_log.h"
#include "tests/lib/tap.h"
#include "tests/lib/text.h"

static void check_hash(enum tpm_bank b, const char *msg, const char *want)
{
	uint8_t d[TPM_MAX_DIGEST_LEN];
	char got[2 * TPM_MAX_DIGEST_LEN + 1], name[96];
	ASSERT_EQ(tpm_hash(b, msg, strlen(msg), d), 0, "tpm_hash: no error");
	tpm_hex(d, tpm_bank_len(b), got);
	snprintf(name, sizeof(name), "%s(\"%.20s%s\") one-shot", tpm_bank_name(b), msg,
		 strlen(msg) > 20 ? "…" : "");
	ASSERT_STREQ(got, want, name);
}

static void test_hashes(void)
{
	static const char two[] = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
	static const char two512[] =
		"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmn"
		"hijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
	uint8_t mac[32];
	char hex[65];

	check_hash(TPM_BANK_SHA1, "", "da39a3ee5e6b4b0d3255bfef95601890afd80709");
	check_hash(TPM_BANK_SHA1, "abc", "a9993e364706816aba3e25717850c26c9cd0d89d");
	check_hash(TPM_BANK_SHA1, two, "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
	check_hash(TPM_BANK_SHA256, "abc",
		   "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	check_hash(TPM_BANK_SHA384, "abc",
		   "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed"
		   "8086072ba1e7cc2358baeca134c825a7");
	check_hash(TPM_BANK_SHA384, two512,
		   "09330c33f71147e83d192fc782cd1b4753111b173b3b05d22fa08086e3b0f712"
		   "fcc7c71a557e2db966c3e9fa91746039");
	check_hash(TPM_BANK_SHA512, "",
		   "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce"
		   "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e");
	check_hash(TPM_BANK_SHA512, "abc",
		   "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
		   "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f");
	check_hash(TPM_BANK_SHA512, two512,
		   "8e959b75dae313da8cf4f72814fc143f8f7779c6eb9f7fa17299aeadb6889018"
		   "501d289e4900f7e4331b99dec4b5433ac7d329eeb6dd26545e96e55b874be909");

	/* RFC 4231 test case 2 */
	hmac_sha256("Jefe", 4, "what do ya want for nothing?", 28, mac);
	tpm_hex(mac, 32, hex);
	ASSERT_STREQ(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
		     "HMAC-SHA256 RFC 4231 case 2");
}

static void test_extend(void)
{
	uint8_t pcr[TPM_MAX_DIGEST_LEN] = { 0 }, zero[TPM_MAX_DIGEST_LEN] = { 0 };
	char hex[2 * TPM_MAX_DIGEST_LEN + 1];

	/* what swtpm printed for `tpm2_pcrextend 23:sha256=00…00` */
	tpm_extend(TPM_BANK_SHA256, pcr, zero);
	tpm_hex(pcr, 32, hex);
	ASSERT_STREQ(hex, "f5a5fd42d16a20302798ef6ed309979b43003d2320d9f0e8ea9831a92759fb4b",
		     "extend sha256 zero PCR with zero digest (as swtpm computes it)");
	ASSERT_EQ(tpm_unhex("0xF5a5", pcr, 2), 0, "unhex accepts 0x and mixed case");
	ASSERT_EQ(tpm_unhex("f5a", pcr, 2), -EINVAL, "unhex refuses odd length");
}

static const unsigned int ALL = (1u << TPM_NR_BANKS) - 1;
static const uint8_t KEY[32] = "0123456789abcdef0123456789abcdef";

/* A log of n records as text, MAC'd with KEY. */
static char *make_log(int n, struct tpm_log *log)
{
	size_t cap = 1 << 16, off = 0;
	char *buf = malloc(cap);

	for (int i = 0; i < n; i++) {
		uint8_t dig[TPM_NR_BANKS][TPM_MAX_DIGEST_LEN];
		char content[128], *line;

		snprintf(content, sizeof(content), "{\"id\": %d, \"name\": \"vm %d\", \"x\": 0.1}",
			 i, i);
		if (tpm_log_format(i, TPM_NV_LOG_INDEX, ALL, "rayos/vm-launch", content, KEY, sizeof(KEY),
				   &line, dig))
			abort();
		off += (size_t)snprintf(buf + off, cap - off, "%s\n", line);
		free(line);
	}
	if (log && tpm_log_load_buf(buf, off, log))
		abort();
	return buf;
}

static int verify_text(const char *text, const uint8_t pcr[TPM_NR_BANKS][TPM_MAX_DIGEST_LEN],
		       const uint8_t *key, char *report, size_t len)
{
	struct tpm_log log;
	int err;

	if (tpm_log_load_buf(text, strlen(text), &log))
		return -ENOMEM;
	err = tpm_log_verify(&log, TPM_NV_LOG_INDEX, ALL, pcr, key, key ? 32 : 0, report, len);
	tpm_log_free(&log);
	return err;
}

/* Line n (0-based) of text, without its newline. */
static char *line_at(const char *text, int n)
{
	const char *p = text, *nl;

	while (n-- > 0 && (nl = strchr(p, '\n')))
		p = nl + 1;
	nl = strchr(p, '\n');
	return strndup(p, nl ? (size_t)(nl - p) : strlen(p));
}

static void test_log(void)
{
	uint8_t pcr[TPM_NR_BANKS][TPM_MAX_DIGEST_LEN];
	struct tpm_log log;
	char report[512], *text, *bad, *torn;
	char *p;

	text = make_log(10, &log);
	ASSERT_EQ(log.nr, 10, "10 records parse back");
	ASSERT_TRUE(!log.recs[3].bad[0] && log.recs[3].recnum == 3 &&
		    log.recs[3].banks == ALL && log.recs[3].has_mac, "record 3 has all fields");
	ASSERT_STREQ(log.recs[3].content_type, "rayos/vm-launch", "content_type kept");
	ASSERT_EQ(tpm_log_check_record(&log.recs[3], ALL, KEY, 32, report, sizeof(report)), 0,
		  "digests and MAC of a parsed record hold (re-print is stable)");
	tpm_log_replay(&log, log.nr, ALL, pcr);
	ASSERT_EQ(tpm_log_matching_prefix(&log, ALL, pcr), 10, "full replay matches");
	{
		cJSON *cel = tpm_log_to_cel(&log);

		ASSERT_EQ(cJSON_GetArraySize(cel), 10, "CEL-JSON array has every record");
		cJSON_Delete(cel);
	}
	tpm_log_free(&log);

	ASSERT_EQ(verify_text(text, pcr, KEY, report, sizeof(report)), 0, "intact log verifies");
	ASSERT_CONTAINS(report, "OK", "report says OK");

	/* torn last line: ignored, and good_len ends at the last newline */
	torn = malloc(strlen(text) + 64);
	sprintf(torn, "%s{\"recnum\":10,\"nv_index\":22021412,\"dig", text);
	tpm_log_load_buf(torn, strlen(torn), &log);
	ASSERT_TRUE(log.nr == 10 && log.torn_bytes == strlen(torn) - strlen(text) && log.good_len == (off_t)strlen(text),
		    "torn last line ignored, good_len at the last newline");
	tpm_log_free(&log);
	ASSERT_EQ(verify_text(torn, pcr, KEY, report, sizeof(report)), 0,
		  "log with a torn last line still verifies");
	free(torn);

	/* altered content: digest mismatch names the record */
	p = strstr(text, "\"vm 4\"");
	bad = strdup(text);
	bad[p - text + 4] = '5';
	ASSERT_EQ(verify_text(bad, pcr, NULL, report, sizeof(report)), -EBADMSG,
		  "altered content detected");
	ASSERT_CONTAINS(report, "record 4 ", "report names record 4");
	free(bad);

	/* altered content with recomputed digests: only the MAC catches it */
	{
		uint8_t dig[TPM_NR_BANKS][TPM_MAX_DIGEST_LEN];
		char *l;

		tpm_log_format(6, TPM_NV_LOG_INDEX, ALL, "rayos/vm-launch", "{\"id\":6,\"name\":\"evil\"}",
			       (const uint8_t *)"wrong key", 9, &l, dig);
		bad = text_edit_line(text, 6, l);
		free(l);
		ASSERT_EQ(verify_text(bad, pcr, KEY, report, sizeof(report)), -EBADMSG,
			  "re-digested forgery detected");
		ASSERT_CONTAINS(report, "record 6 ", "report names record 6");
		ASSERT_CONTAINS(report, "MAC", "report says the MAC is wrong");
		ASSERT_EQ(verify_text(bad, pcr, NULL, report, sizeof(report)), -EBADMSG,
			  "without the key the forgery still fails the replay");
		free(bad);
	}

	/* removed record in the middle, and the last one */
	bad = text_edit_line(text, 7, NULL);
	ASSERT_EQ(verify_text(bad, pcr, KEY, report, sizeof(report)), -EBADMSG,
		  "removed record detected");
	ASSERT_CONTAINS(report, "record 7 is missing", "report names record 7 as missing");
	free(bad);
	bad = text_edit_line(text, 9, NULL);
	ASSERT_EQ(verify_text(bad, pcr, KEY, report, sizeof(report)), -EBADMSG,
		  "removed last record detected");
	ASSERT_CONTAINS(report, "no prefix", "report says the index is past the log");
	free(bad);

	/* log ahead of the PCR (extend pending): names the first record not in it */
	tpm_log_load_buf(text, strlen(text), &log);
	tpm_log_replay(&log, 8, ALL, pcr);
	tpm_log_free(&log);
	ASSERT_EQ(verify_text(text, pcr, KEY, report, sizeof(report)), -EBADMSG,
		  "log ahead of the PCR reported");
	ASSERT_CONTAINS(report, "record 8 ", "report names record 8 as the first not extended");

	/* reordered, duplicated: told apart from removed */
	{
		char *l3 = line_at(text, 3), *l4 = line_at(text, 4), *tmp;

		tmp = text_edit_line(text, 3, l4);
		bad = text_edit_line(tmp, 4, l3);
		free(tmp);
		ASSERT_EQ(verify_text(bad, pcr, KEY, report, sizeof(report)), -EBADMSG,
			  "swapped records detected");
		ASSERT_CONTAINS(report, "reordered", "report says reordered, not removed");
		ASSERT_CONTAINS(report, "record 3 is on line 5", "report says where record 3 is");
		free(bad);
		bad = text_edit_line(text, 4, l3);
		ASSERT_EQ(verify_text(bad, pcr, KEY, report, sizeof(report)), -EBADMSG,
			  "duplicated record detected");
		ASSERT_CONTAINS(report, "duplicated", "report says duplicated");
		free(bad);
		free(l3);
		free(l4);
	}

	/* without any key: renumbering or retyping a record changes its digest */
	tpm_log_load_buf(text, strlen(text), &log);
	tpm_log_replay(&log, log.nr, ALL, pcr);
	tpm_log_free(&log);
	bad = strdup(text);
	p = strstr(bad, "rayos/vm-launch");
	memcpy(p, "rayos/vm-unplug", 15);	/* same length, another type */
	ASSERT_EQ(verify_text(bad, pcr, NULL, report, sizeof(report)), -EBADMSG,
		  "retyped record detected without the MAC key");
	ASSERT_CONTAINS(report, "record 0 (line 1, rayos/vm-unplug) does not match",
			"report names record 0 and its digest");
	free(bad);
	bad = strdup(text);
	p = strstr(bad, "{\"recnum\":3,");
	p[10] = '8';	/* record 3 claims to be record 8: the sequence check runs first */
	ASSERT_EQ(verify_text(bad, pcr, NULL, report, sizeof(report)), -EBADMSG,
		  "renumbered record detected");
	free(bad);

	/* a digest of a bank nothing checks is refused */
	{
		struct tpm_log one;
		uint8_t dig[TPM_NR_BANKS][TPM_MAX_DIGEST_LEN];
		char *l;

		tpm_log_format(0, TPM_NV_LOG_INDEX, ALL, "rayos/policy", "{\"v\":1}", NULL, 0, &l,
			       dig);
		bad = malloc(strlen(l) + 2);
		sprintf(bad, "%s\n", l);
		free(l);
		tpm_log_load_buf(bad, strlen(bad), &one);
		memset(pcr, 0, sizeof(pcr));
		tpm_extend(TPM_BANK_SHA256, pcr[TPM_BANK_SHA256], dig[TPM_BANK_SHA256]);
		ASSERT_EQ(tpm_log_verify(&one, TPM_NV_LOG_INDEX, 1u << TPM_BANK_SHA256, pcr, NULL,
					 0, report, sizeof(report)), -EBADMSG,
			  "a record with sha1/384/512 digests no TPM value covers is refused");
		ASSERT_CONTAINS(report, "sha1 digest that no TPM value covers",
				"report names the unchecked bank");
		tpm_log_free(&one);
		free(bad);
	}

	/* garbage line */
	bad = text_edit_line(text, 2, "{not json");
	ASSERT_EQ(verify_text(bad, pcr, KEY, report, sizeof(report)), -EBADMSG,
		  "unparsable line detected");
	ASSERT_CONTAINS(report, "record 2 ", "report names record 2");
	free(bad);
	free(text);
}

/* Names and PolicySecret as tpm2-tools and swtpm computed them for an AK
 * (tpm2_policysecret -L, tpm2_nvreadpublic). */
static void test_attest_vectors(void)
{
	uint8_t ak[TPM_NAME_LEN], policy[32], name[TPM_NAME_LEN];
	char hex[2 * TPM_NAME_LEN + 1];
	TPMS_ATTEST att;
	TPMT_PUBLIC pub = { .type = TPM2_ALG_RSA, .nameAlg = TPM2_ALG_SHA256 };

	tpm_unhex("000bf330c1191bac32763328e04ea0fa421ec43d1056a400e179f1ab9ceed26bfbf6", ak,
		  sizeof(ak));
	tpm_policy_secret(ak, sizeof(ak), policy);
	tpm_hex(policy, 32, hex);
	ASSERT_STREQ(hex, "450286099bb8dd3ba69ac2973a89e67713365969d05c7a9070730b257c097d2d",
		     "PolicySecret(AK) digest matches tpm2_policysecret's");
	tpm_nv_name(TPM_NV_LOG_INDEX, TPM_NV_LOG_ATTRS, policy, 32, name);
	tpm_hex(name, sizeof(name), hex);
	ASSERT_STREQ(hex, "000ba5578fbab82bfd43a238d0e6f481c22b2024cecf19b783d003197fba3cd0ce53",
		     "measurement index name matches tpm2_nvreadpublic's");
	ASSERT_TRUE(tpm_ak_check(&pub, hex, sizeof(hex)) == -EINVAL,
		    "an RSA key is not taken for RayOS's AK");
	ASSERT_EQ(tpm_attest_verify(&pub, (const uint8_t *)"x", 1, (const uint8_t *)"y", 1,
				    &att, hex, sizeof(hex)), -EINVAL,
		  "attestation with an unsupported AK is refused");
}

int main(void)
{
	test_hashes();
	test_extend();
	test_log();
	test_attest_vectors();
	return tap_done();
}
