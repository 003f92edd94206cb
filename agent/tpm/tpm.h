/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * TPM measured launch.  The agent measures what it runs (its own binary,
 * each BPF object, each policy version, each VM launch and stop) into its
 * NV measurement index (a SHA-256 extend index only its AK's auth can
 * extend: agent/tpm/tpm_setup.h), and keeps the event log (agent/tpm/tpm_log.h)
 * that lets a verifier replay it.
 *
 * One worker thread owns every TPM command, so they run one at a time and
 * in order.  tpm_measure() only queues, so a slow or absent TPM never holds
 * up enforcement or a VM launch; status shows what waits.
 *
 * TPM access (TCTI, as tpm2-tools spell it): opts->tcti, else $RAYOS_TCTI,
 * else device:/dev/tpmrm0 when it exists, else the agent's own swtpm
 * ("embedded": state in STATE_DIR/swtpm, socket swtpm:path=…, killed at
 * close).  The agent writes RUN_DIR/tpm.json ({"tcti","nv_index",…}) so
 * that the CLI (`rayos-agent tpm …`) talks to the same TPM.
 */
#ifndef RAYOS_TPM_H
#define RAYOS_TPM_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

/* NV index (owner hierarchy) holding the 32-byte record MAC key; only
 * RayOS's auth reads it (agent/tpm/tpm_setup.h). */
#define TPM_NV_SEED_INDEX	0x01500523u
#define TPM_NV_SEED_LEN		32
#define TPM_CONF_FILE		"tpm.json"

/* Content types of the records RayOS writes (rayos/… in the log). */
#define TPM_EV_AGENT_START	"rayos/agent-start"
#define TPM_EV_BPF_OBJECT	"rayos/bpf-object"
#define TPM_EV_POLICY		"rayos/policy"
#define TPM_EV_VM_LAUNCH	"rayos/vm-launch"	/* content has "id" (number) */
#define TPM_EV_VM_STOP		"rayos/vm-stop"
#define TPM_EV_VM_DISK		"rayos/vm-disk"		/* content: id, path, sha256 */
#define TPM_EV_AUDIT_HEAD	"rayos/audit-head"	/* content: seq, sha256, log */

struct tpm_opts {
	const char *state_dir;	/* embedded swtpm state, the TPM secret, AK public */
	const char *run_dir;	/* event log and tpm.json (tmpfs: reset at boot) */
	const char *tcti;	/* NULL = $RAYOS_TCTI, /dev/tpmrm0, embedded swtpm */
	uint32_t nv_index;	/* 0 = TPM_NV_SEED_INDEX */
	int tool_timeout_ms;	/* 0 = 10 s per tpm2-tools command */
};

struct tpm;

/*
 * Check opts, load nothing from the TPM, start the worker and return: the
 * worker starts swtpm if needed, makes or finds the EK, AK and NV indices,
 * reads the seed and reconciles the existing log with the measurement
 * index (extending records a crash left unextended).  epfd: the agent's
 * epoll set, so that the worker's state changes are logged from the event
 * loop; -1 when there is none.
 */
int tpm_open(const struct tpm_opts *opts, int epfd, struct tpm **out);

/*
 * Queue one measurement: content is copied (printed) now, recorded and
 * extended by the worker later, in call order.  Never blocks on the TPM.
 * 0, -ENOMEM, -ENOSPC when too many measurements already wait.
 */
int tpm_measure(struct tpm *t, const char *content_type, const cJSON *content);

/* Measure a file: content gets {"path", "sha256"} plus extra's members.
 * Hashes the file in the caller's thread: use it for small files only. */
int tpm_measure_file(struct tpm *t, const char *content_type, const char *path,
		     const cJSON *extra);

/* {"tcti","embedded","nv_index","banks","state","records","extended",
 *  "pending","failed","last_error","mac","log"}; the caller frees it. */
cJSON *tpm_status_json(struct tpm *t);

/* Wait up to timeout_ms until nothing is pending; 0 or -ETIMEDOUT. */
int tpm_flush(struct tpm *t, int timeout_ms);

/* Records queued but not yet appended are appended (not extended) first;
 * stops the worker and an embedded swtpm. */
void tpm_close(struct tpm *t);

/*
 * CLI operations: blocking, run by the `rayos-agent tpm …` process against
 * the TPM named in RUN_DIR/tpm.json ($RAYOS_TCTI overrides), with the
 * agent's state dir (its TPM secret).  Each returns 0 or -errno and, where
 * there is a report, fills it with a sentence a person can act on
 * (-EBADMSG: verification failed, the report names what does not match).
 */
int tpm_verify(const char *run_dir, const char *state_dir, char *report, size_t len);

/* For readers of the measurements (audit verify): the event log, every
 * record checked (sequence, index, digests, MACs when the seed is read),
 * and *confirmed = how many of its first records the NV index replays to
 * (the rest: extends still pending, or failed).  0, or -errno / -EBADMSG
 * with report; the caller frees log with tpm_log_free (tpm_log.h). */
struct tpm_log;
int tpm_read_verified(const char *run_dir, const char *state_dir, struct tpm_log *log,
		      size_t *confirmed, char *report, size_t len);

/* Sign the measurement index (NV_Certify) and PCRs 0-7 (Quote) with the AK
 * over nonce; write them, the AK public and the log they cover to out_dir.
 * challenge: NULL or a credential file from `tpm challenge`, activated into
 * out_dir/activation.bin. */
int tpm_quote(const char *run_dir, const char *state_dir, const char *nonce_hex,
	      const char *out_dir, const char *challenge, char *report, size_t len);

/* What the verifier trusts, from its own side, never from the quote dir. */
struct tpm_trust {
	const char *ak_file;	/* the AK's TPM2B_PUBLIC (tpm enroll: ak.pub) */
	const char *ak_name;	/* or its TPM name, hex ("000b…") */
	const char *ek_file;	/* or the EK's TPM2B_PUBLIC, with … */
	const char *challenge;	/* … the directory `tpm challenge` made for it */
	const char *banks;	/* NULL or "sha1,sha256…": PCR banks that must be quoted */
};
int tpm_verify_quote(const char *dir, const char *nonce_hex, const struct tpm_trust *trust,
		     char *report, size_t len);

/* Attester: write the EK's and AK's public areas (ek.pub, ak.pub, ak.name)
 * and the EK certificate the TPM holds, if any (ek.crt, DER), to out_dir. */
int tpm_enroll(const char *run_dir, const char *state_dir, const char *out_dir,
	       char *report, size_t len);

/* Verifier: check the EK (its certificate against ca when given) and make
 * a credential only the TPM holding that EK can open, for that AK:
 * out_dir/credential.bin (send) and out_dir/secret (keep). */
int tpm_challenge(const char *ek_file, const char *ak_file, const char *ek_cert,
		  const char *ca_file, const char *out_dir, char *report, size_t len);

int tpm_vm_snapshot(const char *run_dir, uint32_t vm_id, cJSON **out);
/* The seed index (index 0 = TPM_NV_SEED_INDEX), with the state dir's auth. */
int tpm_nv_define(const char *run_dir, const char *state_dir, uint32_t index, size_t size);
int tpm_nv_write(const char *run_dir, const char *state_dir, uint32_t index, const void *data,
		 size_t len);
int tpm_nv_read(const char *run_dir, const char *state_dir, uint32_t index, void *buf,
		size_t len);

#endif /* RAYOS_TPM_H */
