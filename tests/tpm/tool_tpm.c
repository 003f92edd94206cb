// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Helpers for tests/tpm/test_tpm_attack.sh.
 *
 *   tool_tpm measure STATE_DIR RUN_DIR N
 *	the agent's measurement path (tpm_open, N × tpm_measure, tpm_flush)
 *	against $RAYOS_TCTI; prints the final status as JSON
 *   tool_tpm forge IN OUT [DROP] [FROM]
 *	what an attacker without the MAC seed can write: the records of IN
 *	from recnum FROM on, less recnum DROP, renumbered from 0 with their
 *	digests recomputed (no MACs)
 *   tool_tpm record RECNUM CONTENT_TYPE JSON
 *	one well-formed record line (SHA-256 digest, no MAC)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/tpm/tpm.h"
#include "agent/tpm/tpm_attest.h"
#include "agent/tpm/tpm_log.h"

static int measure(const char *state, const char *run, int n)
{
	struct tpm_opts opts = { .state_dir = state, .run_dir = run };
	struct tpm *t = NULL;
	cJSON *st;
	char *text;
	int err;

	err = tpm_open(&opts, -1, &t);
	for (int i = 0; !err && i < n; i++) {
		cJSON *c = cJSON_CreateObject();

		cJSON_AddNumberToObject(c, "id", 1400 + i % 7);
		cJSON_AddNumberToObject(c, "seq", i);
		err = tpm_measure(t, i % 3 ? TPM_EV_POLICY : TPM_EV_VM_LAUNCH, c);
		cJSON_Delete(c);
	}
	if (!err)
		err = tpm_flush(t, 60000);
	st = t ? tpm_status_json(t) : NULL;
	text = st ? cJSON_PrintUnformatted(st) : NULL;
	if (text)
		printf("%s\n", text);
	free(text);
	cJSON_Delete(st);
	tpm_close(t);
	return err ? 1 : 0;
}

static int forge(const char *in, const char *out, long drop, long from)
{
	struct tpm_log log = { 0 };
	uint64_t next = 0;
	FILE *f;
	int err = tpm_log_load(in, &log);

	if (err)
		return 1;
	f = fopen(out, "we");
	if (!f)
		return 1;
	for (size_t i = 0; i < log.nr; i++) {
		uint8_t d[TPM_NR_BANKS][TPM_MAX_DIGEST_LEN];
		char *content, *line = NULL;

		if ((long)log.recs[i].recnum == drop || (long)log.recs[i].recnum < from)
			continue;
		content = cJSON_PrintUnformatted(log.recs[i].content);
		err = tpm_log_format(next++, TPM_NV_LOG_INDEX, log.recs[i].banks,
				     log.recs[i].content_type, content, NULL, 0, &line, d);
		free(content);
		if (err)
			break;
		fprintf(f, "%s\n", line);
		free(line);
	}
	fclose(f);
	tpm_log_free(&log);
	return err ? 1 : 0;
}

static int record(long recnum, const char *type, const char *json)
{
	uint8_t d[TPM_NR_BANKS][TPM_MAX_DIGEST_LEN];
	char *line = NULL;

	if (tpm_log_format((uint64_t)recnum, TPM_NV_LOG_INDEX, 1u << TPM_BANK_SHA256, type, json,
			   NULL, 0, &line, d))
		return 1;
	printf("%s\n", line);
	free(line);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 5 && !strcmp(argv[1], "measure"))
		return measure(argv[2], argv[3], atoi(argv[4]));
	if (argc >= 4 && argc <= 6 && !strcmp(argv[1], "forge"))
		return forge(argv[2], argv[3], argc > 4 ? atol(argv[4]) : -1,
			     argc > 5 ? atol(argv[5]) : 0);
	if (argc == 5 && !strcmp(argv[1], "record"))
		return record(atol(argv[2]), argv[3], argv[4]);
	fprintf(stderr, "usage: tool_tpm measure STATE RUN N | forge IN OUT [DROP] [FROM] | "
		"record RECNUM TYPE JSON\n");
	return 2;
}
