// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Measured-launch figures against the embedded swtpm, next to a baseline
 * measured in the same run (spawning `true` through the same spawn helper:
 * most of a tpm2-tools call is process start-up).  Prints figures only.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent/core/spawn.h"
#include "agent/tpm/tpm.h"

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(void)
{
	char tmp[] = "/tmp/rayos-tpm-bench.XXXXXX", state[256], run[256], qdir[256];
	const char *true_argv[] = { "true", NULL }, *rm[] = { "rm", "-rf", tmp, NULL };
	struct tpm_opts opts = { 0 };
	struct tpm *t;
	char report[512], akpub[300];
	struct tpm_trust trust = { .ak_file = akpub };
	double t0, dt;
	int n = 100;

	if (access("/usr/bin/swtpm", X_OK) || access("/usr/bin/tpm2_pcrextend", X_OK)) {
		printf("# skipped: swtpm or tpm2-tools missing (tests/deps)\n");
		return 0;
	}
	unsetenv("RAYOS_TCTI");
	if (!mkdtemp(tmp))
		return 1;
	snprintf(state, sizeof(state), "%s/state", tmp);
	snprintf(run, sizeof(run), "%s/run", tmp);
	snprintf(qdir, sizeof(qdir), "%s/quote", tmp);
	mkdir(state, 0700);
	mkdir(run, 0755);

	t0 = now_s();
	for (int i = 0; i < n; i++)
		spawn_run(true_argv, NULL, 5000, NULL, 0, NULL, NULL, NULL, NULL);
	dt = now_s() - t0;
	printf("baseline: spawn_run(true)          %8.2f ms each\n", dt * 1e3 / n);

	opts.state_dir = state;
	opts.run_dir = run;
	opts.tcti = access("/dev/tpmrm0", F_OK) ? NULL : "swtpm:path=/nonexistent";
	if (opts.tcti || tpm_open(&opts, -1, &t)) {
		printf("# skipped: host TPM present or embedded swtpm failed\n");
		goto out;
	}
	tpm_flush(t, 30000);	/* start-up: swtpm, banks, NV seed */

	/* extends: what a burst of measurements costs end to end */
	{
		double enq = 0;

		t0 = now_s();
		for (int i = 0; i < n; i++) {
			cJSON *c = cJSON_CreateObject();
			double a = now_s();

			cJSON_AddNumberToObject(c, "id", i);
			tpm_measure(t, TPM_EV_VM_LAUNCH, c);
			enq += now_s() - a;
			cJSON_Delete(c);
		}
		tpm_flush(t, 120000);
		dt = now_s() - t0;
		printf("burst of %d (PolicySecret + NV_Extend each, log fdatasync'd): %.1f /s "
		       "(%.2f ms each)\n", n, n / dt, dt * 1e3 / n);
		printf("VM launch path: tpm_measure() adds %.1f us (queue only; launch without "
		       "measurement adds 0)\n", enq * 1e6 / n);
	}

	/* one measurement at a time: queue to extended, p50 and p99 */
	{
		double lat[40], tmp;

		for (int i = 0; i < 40; i++) {
			cJSON *c = cJSON_CreateObject();

			cJSON_AddNumberToObject(c, "single", i);
			t0 = now_s();
			tpm_measure(t, TPM_EV_POLICY, c);
			tpm_flush(t, 10000);
			lat[i] = (now_s() - t0) * 1e3;
			cJSON_Delete(c);
		}
		for (int i = 1; i < 40; i++)
			for (int j = i; j > 0 && lat[j - 1] > lat[j]; j--) {
				tmp = lat[j];
				lat[j] = lat[j - 1];
				lat[j - 1] = tmp;
			}
		printf("one measurement, queued to extended (40 runs): p50 %.2f ms, p99 %.2f ms\n",
		       lat[19], lat[39]);
	}

	/* quote latency: first and steady state */
	snprintf(akpub, sizeof(akpub), "%s/tpm/ak.pub", state);
	t0 = now_s();
	tpm_quote(run, state, "0011", qdir, NULL, report, sizeof(report));
	printf("quote, first: %.1f ms\n", (now_s() - t0) * 1e3);
	t0 = now_s();
	for (int i = 0; i < 5; i++)
		tpm_quote(run, state, "0011", qdir, NULL, report, sizeof(report));
	printf("quote (NV_Certify + PCR quote + log copy): %.1f ms\n", (now_s() - t0) * 1e3 / 5);
	t0 = now_s();
	for (int i = 0; i < 5; i++)
		tpm_verify_quote(qdir, "0011", &trust, report, sizeof(report));
	printf("verify-quote (2 signatures + replay of %d records): %.1f ms\n", n,
	       (now_s() - t0) * 1e3 / 5);
	t0 = now_s();
	for (int i = 0; i < 5; i++)
		tpm_verify(run, state, report, sizeof(report));
	printf("verify (index + seed over ESAPI + replay): %.1f ms\n", (now_s() - t0) * 1e3 / 5);
	tpm_close(t);
out:
	spawn_run(rm, NULL, 10000, NULL, 0, NULL, NULL, NULL, NULL);
	return 0;
}
