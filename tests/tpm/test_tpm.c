// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Measured launch against a real swtpm (the agent's embedded one, started
 * by tpm_open in a temporary state dir): ≥ 100 measurements extended into
 * the NV measurement index and replayed, a quote that verifies against the
 * AK, a wrong nonce, an altered and a removed record each detected, NV
 * round trip, per-VM snapshots, a reset of the index while the agent runs
 * reported as diverged, and the TPM going away mid-run reported while
 * tpm_measure keeps returning at once.  Attacks: test_tpm_attack.sh.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent/core/spawn.h"
#include "agent/tpm/tpm.h"
#include "agent/tpm/tpm_attest.h"
#include "agent/tpm/tpm_esys.h"
#include "agent/tpm/tpm_log.h"
#include "tests/lib/tap.h"
#include "tests/lib/text.h"

#define NR_EVENTS	120

static char tmp[] = "/tmp/rayos-tpm.XXXXXX";
static char state_dir[256], run_dir[256];

static long long now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

static bool have(const char *tool)
{
	char path[4096], *dirs = strdup(getenv("PATH") ? getenv("PATH") : "/usr/bin"), *save;
	bool found = false;

	for (char *d = strtok_r(dirs, ":", &save); d && !found; d = strtok_r(NULL, ":", &save)) {
		snprintf(path, sizeof(path), "%s/%s", d, tool);
		found = !access(path, X_OK);
	}
	free(dirs);
	return found;
}

static void rm_rf(const char *dir)
{
	const char *argv[] = { "rm", "-rf", dir, NULL };

	spawn_run(argv, NULL, 10000, NULL, 0, NULL, NULL, NULL, NULL);
}

static int cp(const char *from, const char *to)
{
	const char *argv[] = { "cp", "-a", from, to, NULL };

	return spawn_run(argv, NULL, 10000, NULL, 0, NULL, NULL, NULL, NULL);
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "re");
	char *buf;
	long n;

	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = calloc(1, (size_t)n + 1);
	if (fread(buf, 1, (size_t)n, f) != (size_t)n)
		buf[0] = '\0';
	fclose(f);
	return buf;
}

static void spit(const char *path, const char *text)
{
	FILE *f = fopen(path, "we");

	fputs(text, f);
	fclose(f);
}

/* Replace line n (0-based) of a file with repl, or delete it (NULL). */
static void edit_line(const char *path, int n, const char *repl)
{
	char *text = slurp(path), *out = text_edit_line(text, n, repl);

	spit(path, out);
	free(out);
	free(text);
}

static cJSON *status(struct tpm *t)
{
	return tpm_status_json(t);
}

static double num(cJSON *o, const char *k)
{
	cJSON *it = cJSON_GetObjectItem(o, k);

	return cJSON_IsNumber(it) ? it->valuedouble : -1;
}

static const char *str(cJSON *o, const char *k)
{
	cJSON *it = cJSON_GetObjectItem(o, k);

	return cJSON_IsString(it) ? it->valuestring : "";
}

int main(void)
{
	char report[1024], qdir[512], qbad[512], path[600], logpath[600], backup[600];
	char akpub[600];
	struct tpm_trust trust = { 0 };
	struct tpm_opts opts = { 0 };
	struct tpm *t = NULL;
	cJSON *st, *snap;
	int err;

	if (!have("swtpm") || !have("tpm2_pcrextend") || !have("tpm2_checkquote")) {
		tap_skip("missing swtpm or tpm2-tools (sudo tests/deps installs them)",
			 "measured launch against swtpm");
		return tap_done();
	}
	unsetenv("RAYOS_TCTI");
	if (!mkdtemp(tmp))
		return 1;
	snprintf(state_dir, sizeof(state_dir), "%s/state", tmp);
	snprintf(run_dir, sizeof(run_dir), "%s/run", tmp);
	mkdir(state_dir, 0700);
	mkdir(run_dir, 0755);
	snprintf(logpath, sizeof(logpath), "%s/%s", run_dir, TPM_LOG_FILE);
	snprintf(backup, sizeof(backup), "%s/log.bak", tmp);

	opts.state_dir = state_dir;
	opts.run_dir = run_dir;
	snprintf(akpub, sizeof(akpub), "%s/tpm/ak.pub", state_dir);
	trust.ak_file = akpub;
	opts.tcti = access("/dev/tpmrm0", F_OK) ? NULL : "swtpm:path=/nonexistent";
	if (opts.tcti) {
		tap_skip("host has /dev/tpmrm0: this test uses the embedded swtpm only",
			 "measured launch against swtpm");
		rm_rf(tmp);
		return tap_done();
	}
	err = tpm_open(&opts, -1, &t);
	if (!ASSERT_EQ(err, 0, "tpm_open with the embedded swtpm"))
		goto out;

	/* ≥ 100 measurements of every kind */
	for (int i = 0; i < NR_EVENTS; i++) {
		cJSON *c = cJSON_CreateObject();
		const char *type = i % 4 == 0 ? TPM_EV_VM_LAUNCH : i % 4 == 1 ? TPM_EV_POLICY :
				   i % 4 == 2 ? TPM_EV_BPF_OBJECT : TPM_EV_VM_STOP;

		cJSON_AddNumberToObject(c, "id", i / 4);
		cJSON_AddStringToObject(c, "uuid", "5e1f3c9a-0000-4000-8000-000000000001");
		cJSON_AddNumberToObject(c, "seq", i);
		err = tpm_measure(t, type, c);
		cJSON_Delete(c);
		if (err)
			break;
	}
	ASSERT_EQ(err, 0, "120 measurements queued");
	ASSERT_EQ(tpm_flush(t, 120000), 0, "worker extended them all");
	st = status(t);
	ASSERT_STREQ(str(st, "state"), "ready", "status: ready");
	ASSERT_EQ(num(st, "extended"), NR_EVENTS, "status: 120 extended");
	ASSERT_EQ(num(st, "pending"), 0, "status: nothing pending");
	ASSERT_TRUE(cJSON_IsTrue(cJSON_GetObjectItem(st, "embedded")), "status: embedded swtpm");
	ASSERT_TRUE(cJSON_IsTrue(cJSON_GetObjectItem(st, "mac")), "status: records MAC'd (NV seed)");
	tap_diag("banks: %d active", cJSON_GetArraySize(cJSON_GetObjectItem(st, "banks")));
	ASSERT_TRUE(cJSON_GetArraySize(cJSON_GetObjectItem(st, "banks")) >= 1, "active banks found");
	cJSON_Delete(st);

	err = tpm_verify(run_dir, state_dir, report, sizeof(report));
	ASSERT_EQ(err, 0, "tpm verify: log replays to the NV index");
	tap_diag("%s", report);

	/* altered and removed records in the live log (restored afterwards) */
	cp(logpath, backup);
	{
		char *text = slurp(logpath), *p = strstr(text, "\"seq\":33");

		if (p)
			p[7] = '4';	/* seq 33 -> 34 */
		spit(logpath, text);
		free(text);
	}
	ASSERT_EQ(tpm_verify(run_dir, state_dir, report, sizeof(report)), -EBADMSG,
		  "tpm verify: altered record detected");
	ASSERT_CONTAINS(report, "record 33 ", "report names record 33");
	cp(backup, logpath);
	edit_line(logpath, 50, NULL);
	ASSERT_EQ(tpm_verify(run_dir, state_dir, report, sizeof(report)), -EBADMSG,
		  "tpm verify: removed record detected");
	ASSERT_CONTAINS(report, "record 50 is missing", "report names record 50");
	cp(backup, logpath);

	/* quote */
	snprintf(qdir, sizeof(qdir), "%s/quote", tmp);
	err = tpm_quote(run_dir, state_dir, "00aa11bb22cc", qdir, NULL, report, sizeof(report));
	ASSERT_EQ(err, 0, "tpm quote");
	tap_diag("%s", report);
	err = tpm_verify_quote(qdir, "00aa11bb22cc", &trust, report, sizeof(report));
	ASSERT_EQ(err, 0, "verify-quote: signature, nonce and replay OK");
	tap_diag("%s", report);
	ASSERT_EQ(tpm_verify_quote(qdir, "00aa11bb22cd", &trust, report, sizeof(report)), -EBADMSG,
		  "verify-quote: wrong nonce detected");
	ASSERT_CONTAINS(report, "nonce", "report mentions the nonce");
	snprintf(qbad, sizeof(qbad), "%s/quote-bad", tmp);
	cp(qdir, qbad);
	snprintf(path, sizeof(path), "%s/eventlog.jsonl", qbad);
	{
		char *text = slurp(path), *p = strstr(text, "\"seq\":77");

		if (p)
			p[7] = '8';
		spit(path, text);
		free(text);
	}
	ASSERT_EQ(tpm_verify_quote(qbad, "00aa11bb22cc", &trust, report, sizeof(report)), -EBADMSG,
		  "verify-quote: altered record detected");
	ASSERT_CONTAINS(report, "record 77 ", "report names record 77");
	rm_rf(qbad);
	cp(qdir, qbad);
	edit_line(path, 12, NULL);
	ASSERT_EQ(tpm_verify_quote(qbad, "00aa11bb22cc", &trust, report, sizeof(report)), -EBADMSG,
		  "verify-quote: removed record detected");
	ASSERT_CONTAINS(report, "record 12 is missing", "report names record 12");
	/* a second quote reuses the persistent AK */
	ASSERT_EQ(tpm_quote(run_dir, state_dir, "1234", qdir, NULL, report, sizeof(report)), 0,
		  "second quote reuses the AK");

	/* per-VM snapshot: VM 7 launched at record 28 */
	err = tpm_vm_snapshot(run_dir, 7, &snap);
	ASSERT_EQ(err, 0, "vm-snapshot of VM 7");
	ASSERT_EQ(num(snap, "recnum"), 28, "snapshot is right after VM 7's launch record");
	ASSERT_TRUE(cJSON_GetObjectItem(cJSON_GetObjectItem(snap, "values"), "sha256") != NULL,
		    "snapshot has the sha256 value");
	cJSON_Delete(snap);
	ASSERT_EQ(tpm_vm_snapshot(run_dir, 999, &snap), -ENOENT, "vm-snapshot of an unknown VM");

	/* NV round trip on a second index */
	{
		uint8_t data[16] = "rayos-nv-test-1", back[16] = { 0 };

		ASSERT_EQ(tpm_nv_define(run_dir, state_dir, 0x01500600, sizeof(data)), 0, "nv define");
		ASSERT_EQ(tpm_nv_write(run_dir, state_dir, 0x01500600, data, sizeof(data)), 0, "nv write");
		ASSERT_EQ(tpm_nv_read(run_dir, state_dir, 0x01500600, back, sizeof(back)), 0, "nv read");
		ASSERT_TRUE(!memcmp(data, back, sizeof(data)), "nv read returns what was written");
	}

	/* Someone with owner auth resets the measurement index while the agent
	 * runs (undefine, define it again identically): the next extend lands
	 * on the empty index, and the read-back after it shows the reset. */
	{
		struct tpm_esys *e = NULL;
		TPMS_NV_PUBLIC nv;
		char why[300];
		cJSON *c = cJSON_CreateObject();

		st = status(t);
		err = tpm_esys_open(str(st, "tcti"), &e, why, sizeof(why));
		cJSON_Delete(st);
		if (!err)
			err = tpm_esys_nv_public(e, TPM_NV_LOG_INDEX, &nv, why, sizeof(why));
		if (!err)
			err = tpm_esys_nv_undefine(e, TPM_NV_LOG_INDEX, why, sizeof(why));
		if (!err)
			err = tpm_esys_nv_define(e, TPM_NV_LOG_INDEX, TPM_NV_LOG_ATTRS, 32,
						 nv.authPolicy.buffer, NULL, 0, why, sizeof(why));
		tpm_esys_close(e);
		ASSERT_EQ(err, 0, "owner auth undefines and redefines the index identically");
		cJSON_AddStringToObject(c, "after", "reset");
		tpm_measure(t, TPM_EV_POLICY, c);
		cJSON_Delete(c);
		tpm_flush(t, 10000);
		st = status(t);
		ASSERT_STREQ(str(st, "state"), "diverged", "the running agent reports the reset");
		ASSERT_CONTAINS(str(st, "last_error"), "reset", "last error says reset");
		tap_diag("%s", str(st, "last_error"));
		cJSON_Delete(st);
		ASSERT_EQ(tpm_verify(run_dir, state_dir, report, sizeof(report)), -EBADMSG,
			  "tpm verify fails after the reset");
		tap_diag("%s", report);
	}

	/* the TPM goes away mid-run */
	st = status(t);
	pid_t pid = (pid_t)num(st, "swtpm_pid");
	cJSON_Delete(st);
	ASSERT_TRUE(pid > 0 && !kill(pid, SIGKILL), "swtpm killed");
	{
		long long worst = 0;

		for (int i = 0; i < 5; i++) {
			cJSON *c = cJSON_CreateObject();
			long long t0 = now_us();

			cJSON_AddNumberToObject(c, "after_kill", i);
			err = tpm_measure(t, TPM_EV_POLICY, c);
			if (now_us() - t0 > worst)
				worst = now_us() - t0;
			cJSON_Delete(c);
		}
		ASSERT_EQ(err, 0, "tpm_measure still succeeds without a TPM");
		ASSERT_TRUE(worst < 50000, "tpm_measure returns at once (< 50 ms) without a TPM");
		tap_diag("slowest tpm_measure with the TPM gone: %lld us", worst);
	}
	for (int i = 0; i < 500; i++) {
		st = status(t);
		if (!strcmp(str(st, "state"), "unavailable"))
			break;
		cJSON_Delete(st);
		st = NULL;
		usleep(20000);
	}
	ASSERT_TRUE(st != NULL, "status reports the TPM unavailable");
	if (st) {
		ASSERT_EQ(num(st, "pending"), 5, "status: 5 measurements pending");
		ASSERT_TRUE(num(st, "failed") >= 1, "status: failure counted");
		ASSERT_TRUE(str(st, "last_error")[0] != '\0', "status: last error given");
		tap_diag("last_error: %s", str(st, "last_error"));
		ASSERT_EQ(num(st, "records"), NR_EVENTS + 1 + 5,
			  "records appended to the log while the TPM is away");
		cJSON_Delete(st);
	}
	tpm_close(t);
	t = NULL;
out:
	tpm_close(t);
	rm_rf(tmp);
	return tap_done();
}
