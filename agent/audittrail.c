// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The audit trail wired to the agent and the TPM (audittrail.h): the head
 * measured into the TPM, the records of VM registration and policy
 * publishes, and `rayos-agent audit [verify]`.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/agent_internal.h"
#include "agent/audit/audit.h"
#include "agent/audittrail.h"
#include "agent/caps/caps.h"
#include "agent/control/control.h"
#include "agent/core/digest.h"
#include "agent/core/log.h"
#include "agent/core/util.h"
#include "agent/policy/policy.h"
#include "agent/tpm/tpm.h"
#include "agent/tpm/tpm_log.h"
#include "loader/publish.h"

void audittrail_path(const struct agent *a, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", a->opts->state_dir, AUDIT_LOG_FILE);
}

bool audittrail_measure(struct agent *a)
{
	char path[PATH_MAX], why[PATH_MAX + 512];
	struct audit_head h;
	cJSON *c;
	int err;

	if (!a->tpm)
		return false;
	audittrail_path(a, path, sizeof(path));
	/* A log that does not verify is reported by the health check; its
	 * head is not measured as if it were the chain's. */
	if (audit_head(path, &h, why, sizeof(why)))
		return false;
	if (a->audit_measured_valid && h.seq == a->audit_measured.seq &&
	    !strcmp(h.sha256, a->audit_measured.sha256))
		return false;
	c = cJSON_CreateObject();
	cJSON_AddNumberToObject(c, "seq", (double)h.seq);
	cJSON_AddStringToObject(c, "sha256", h.sha256);
	cJSON_AddStringToObject(c, "log", path);
	err = c ? tpm_measure(a->tpm, TPM_EV_AUDIT_HEAD, c) : -ENOMEM;
	cJSON_Delete(c);
	if (err) {
		log_warn("cannot queue the measurement of the audit head (record %" PRIu64 "): %s",
			 h.seq, strerror(-err));
		return false;
	}
	a->audit_measured = h;
	a->audit_measured_valid = true;
	return true;
}

void audittrail_open(struct agent *a)
{
	char path[PATH_MAX], why[PATH_MAX + 512];
	struct audit_head h;

	audittrail_path(a, path, sizeof(path));
	if (audit_head(path, &h, why, sizeof(why))) {
		log_err("audit log: %s", why);
		degraded_set(&a->deg, DEG_AUDIT_UNWRITABLE, "audit records cannot be written "
			     "(%s): capability changes are refused until they can", why);
		return;
	}
	log_info("audit log %s: %" PRIu64 " records, head %.16s…", path, h.seq, h.sha256);
	audittrail_measure(a);
}

cJSON *audittrail_status_json(struct agent *a)
{
	char path[PATH_MAX], why[PATH_MAX + 512];
	cJSON *o = cJSON_CreateObject();
	struct audit_head h;

	audittrail_path(a, path, sizeof(path));
	cJSON_AddStringToObject(o, "log", path);
	if (audit_head(path, &h, why, sizeof(why))) {
		cJSON_AddStringToObject(o, "error", why);
	} else {
		cJSON_AddNumberToObject(o, "records", (double)h.seq);
		cJSON_AddStringToObject(o, "head", h.sha256);
	}
	cJSON_AddNumberToObject(o, "measured", a->audit_measured_valid
				? (double)a->audit_measured.seq : -1);
	/* What the agent wrote last, even when the file says otherwise. */
	if (!audit_known_head(path, &h)) {
		cJSON *w = cJSON_AddObjectToObject(o, "agent_head");

		cJSON_AddNumberToObject(w, "seq", (double)h.seq);
		cJSON_AddStringToObject(w, "sha256", h.sha256);
	}
	return o;
}

int audittrail_write(const struct agent *a, cJSON *rec, char *why, size_t len)
{
	char path[PATH_MAX];
	int ret;

	audittrail_path(a, path, sizeof(path));
	ret = rec ? audit_probe(path, why, len) : -ENOMEM;
	if (!ret) {
		ret = audit_append(path, rec);
		if (ret)
			snprintf(why, len, "%s: %s", path, strerror(-ret));
	}
	if (ret == -ENOMEM)
		snprintf(why, len, "%s", strerror(ENOMEM));
	cJSON_Delete(rec);
	return ret;
}

/* ---- policy publishes ---- */

struct vm_digest {
	uint32_t id;
	const uint8_t *digest;
};

static int by_id(const void *x, const void *y)
{
	const struct vm_digest *a = x, *b = y;

	return a->id < b->id ? -1 : a->id > b->id;
}

cJSON *audittrail_publish_begin(struct agent *a, const struct compiled_policy *cp)
{
	size_t nr_old = publish_nr_vms(a->ld), i = 0, j = 0;
	struct vm_digest *nv = calloc(cp->nr_vms + 1, sizeof(*nv));
	cJSON *rec = cJSON_CreateObject(), *added, *changed, *removed;
	char digest[2 * SHA256_DIGEST_LEN + 1];

	if (!nv || !rec) {
		free(nv);
		cJSON_Delete(rec);
		return NULL;
	}
	for (size_t k = 0; k < cp->nr_vms; k++)
		nv[k] = (struct vm_digest){ cp->vms[k].vm.vm_id, cp->vms[k].digest };
	qsort(nv, cp->nr_vms, sizeof(*nv), by_id);
	sha256_hex(cp->digest, digest);
	cJSON_AddStringToObject(rec, "event", "policy_publish");
	cJSON_AddStringToObject(rec, "sha256", digest);
	cJSON_AddNumberToObject(rec, "nr_vms", (double)cp->nr_vms);
	added = cJSON_AddArrayToObject(rec, "vms_added");
	changed = cJSON_AddArrayToObject(rec, "vms_changed");
	removed = cJSON_AddArrayToObject(rec, "vms_removed");
	/* Both lists in id order (publish_vm_at is): one merge. */
	while (i < nr_old || j < cp->nr_vms) {
		const struct compiled_vm *o = i < nr_old ? publish_vm_at(a->ld, i) : NULL;

		if (o && (j == cp->nr_vms || o->vm.vm_id < nv[j].id)) {
			cJSON_AddItemToArray(removed, cJSON_CreateNumber(o->vm.vm_id));
			i++;
		} else if (!o || nv[j].id < o->vm.vm_id) {
			cJSON_AddItemToArray(added, cJSON_CreateNumber(nv[j].id));
			j++;
		} else {
			if (memcmp(o->digest, nv[j].digest, SHA256_DIGEST_LEN))
				cJSON_AddItemToArray(changed, cJSON_CreateNumber(nv[j].id));
			i++;
			j++;
		}
	}
	free(nv);
	return rec;
}

void audittrail_publish_done(struct agent *a, cJSON *rec, unsigned long long version,
			     const char *why)
{
	char msg[PATH_MAX + 512];

	if (!rec) {
		log_err("policy version %llu applied without its audit record: out of memory",
			version);
		return;
	}
	/* A publish that changes no VM (a reload of the same files) is no change. */
	if (!cJSON_GetArraySize(cJSON_GetObjectItem(rec, "vms_added")) &&
	    !cJSON_GetArraySize(cJSON_GetObjectItem(rec, "vms_changed")) &&
	    !cJSON_GetArraySize(cJSON_GetObjectItem(rec, "vms_removed"))) {
		cJSON_Delete(rec);
		return;
	}
	cJSON_AddNumberToObject(rec, "version", (double)version);
	cJSON_AddStringToObject(rec, "by", why);
	/* After the publish: a policy the admin put in the directory is not
	 * held back by a full audit disk; the failure is logged and status
	 * reports the log as unwritable. */
	if (audittrail_write(a, rec, msg, sizeof(msg)))
		log_err("policy version %llu applied without its audit record: %s", version, msg);
}

/* ---- the CLI ---- */

static void log_path(const struct audittrail_cli *o, char *buf, size_t len)
{
	if (o->log)
		snprintf(buf, len, "%s", o->log);
	else
		snprintf(buf, len, "%s/%s", o->state_dir, AUDIT_LOG_FILE);
}

static void iso_time(double t, char *buf, size_t len)
{
	time_t s = (time_t)t;
	struct tm tm;

	gmtime_r(&s, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* One rayos/audit-head record of the TPM event log. */
struct head_rec {
	uint64_t seq;
	const char *sha256;
	uint64_t recnum;
};

static bool head_of(const struct tpm_log_rec *r, struct head_rec *h)
{
	const cJSON *seq, *sha;

	if (strcmp(r->content_type, TPM_EV_AUDIT_HEAD))
		return false;
	seq = cJSON_GetObjectItemCaseSensitive(r->content, "seq");
	sha = cJSON_GetObjectItemCaseSensitive(r->content, "sha256");
	if (!cJSON_IsNumber(seq) || seq->valuedouble < 0 || !cJSON_IsString(sha))
		return false;
	*h = (struct head_rec){ (uint64_t)seq->valuedouble, sha->valuestring, r->recnum };
	return true;
}

struct verify_out {
	bool ok;
	size_t bad_line;	/* 0: none */
	char error[768];
	char tpm[512];		/* what the TPM check found or why it did not run */
	size_t heads;		/* measured heads checked */
	uint64_t measured;	/* seq of the last measured head */
	size_t pending;		/* heads in the event log the TPM does not vouch for yet */
};

/*
 * Every head measured into the TPM (in this boot's event log, as far as
 * the NV index vouches for it) must name a record the log still has, with
 * the same SHA-256: records removed from the end, or a chain rewritten up
 * to some record, show here.  The lowest such record is the first bad line.
 */
static void check_heads(const struct audit_check *c, const struct tpm_log *tl,
			size_t confirmed, struct verify_out *v)
{
	struct head_rec h, changed = { .seq = UINT64_MAX }, gone = { 0 };

	for (size_t i = 0; i < tl->nr; i++) {
		if (!head_of(&tl->recs[i], &h))
			continue;
		if (i >= confirmed) {
			v->pending++;
			continue;
		}
		v->heads++;
		v->measured = h.seq;
		if (h.seq > c->nr && h.seq > gone.seq)
			gone = h;
		else if (h.seq && h.seq <= c->nr && h.seq < changed.seq &&
			 strcmp(c->lines[h.seq - 1].sha256, h.sha256))
			changed = h;
	}
	/* A rewritten record comes before the end, wherever that is now. */
	if (changed.seq != UINT64_MAX) {
		v->bad_line = (size_t)changed.seq;
		snprintf(v->error, sizeof(v->error), "line %" PRIu64 " is not the record %" PRIu64
			 " the TPM measured (event-log record %" PRIu64 ", SHA-256 %.16s…, the "
			 "line's is %.16s…): the log up to it was rewritten", changed.seq,
			 changed.seq, changed.recnum, changed.sha256,
			 c->lines[changed.seq - 1].sha256);
	} else if (gone.seq) {
		v->bad_line = c->nr + 1;
		snprintf(v->error, sizeof(v->error), "line %zu: missing: the TPM measured record "
			 "%" PRIu64 " (event-log record %" PRIu64 ") but the log ends at record "
			 "%zu: records %zu to %" PRIu64 " were removed from its end", c->nr + 1,
			 gone.seq, gone.recnum, c->nr, c->nr + 1, gone.seq);
	}
}

/* The running agent's own head of its log (status.audit.agent_head):
 * 0, -ENOENT when no agent answers or it never looked at the log. */
static int agent_head(const struct audittrail_cli *o, struct audit_head *h)
{
	const cJSON *w, *seq, *sha;
	char sock[PATH_MAX];
	cJSON *req = cJSON_CreateObject(), *reply = NULL;
	int err;

	snprintf(sock, sizeof(sock), "%s/%s", o->run_dir, CONTROL_SOCK_NAME);
	cJSON_AddStringToObject(req, "cmd", "status");
	err = control_call(sock, req, &reply, 3000);
	cJSON_Delete(req);
	if (err)
		return -ENOENT;
	w = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(reply, "audit"),
					     "agent_head");
	seq = cJSON_GetObjectItemCaseSensitive(w, "seq");
	sha = cJSON_GetObjectItemCaseSensitive(w, "sha256");
	err = -ENOENT;
	if (cJSON_IsNumber(seq) && cJSON_IsString(sha)) {
		h->seq = (uint64_t)seq->valuedouble;
		snprintf(h->sha256, sizeof(h->sha256), "%s", sha->valuestring);
		err = 0;
	}
	cJSON_Delete(reply);
	return err;
}

/*
 * With the agent running, the records after the last measured head are
 * still vouched for: the log must end with the very record the agent wrote
 * last.  The agent is asked before and after the file is read, so that a
 * record it appends meanwhile is not taken for a forgery.
 */
static int check_agent_head(const struct audittrail_cli *o, const char *path,
			    struct audit_check *c, struct verify_out *v, bool *asked)
{
	struct audit_head before, after;
	const char *file_sha;
	int err;

	*asked = false;
	for (int try = 0; try < 5; try++) {
		if (agent_head(o, &before))
			return 0;
		audit_check_free(c);
		err = audit_check_file(path, c);
		if (err)
			return err;
		if (agent_head(o, &after))
			return 0;
		if (after.seq == before.seq && !strcmp(after.sha256, before.sha256))
			break;
	}
	*asked = true;
	if (c->bad_line)
		return 0;
	file_sha = c->nr ? c->lines[c->nr - 1].sha256 : AUDIT_GENESIS;
	if (c->nr > after.seq) {
		v->bad_line = (size_t)after.seq + 1;
		snprintf(v->error, sizeof(v->error), "line %zu: records %" PRIu64 " to %zu were "
			 "not written by the running agent, whose last record is %" PRIu64
			 ": appended behind its back", v->bad_line, after.seq + 1, c->nr,
			 after.seq);
	} else if (c->nr < after.seq) {
		v->bad_line = c->nr + 1;
		snprintf(v->error, sizeof(v->error), "line %zu: missing: the running agent wrote "
			 "record %" PRIu64 " but the log ends at record %zu: records %zu to %"
			 PRIu64 " were removed from its end", c->nr + 1, after.seq, c->nr,
			 c->nr + 1, after.seq);
	} else if (strcmp(file_sha, after.sha256)) {
		v->bad_line = c->nr;
		snprintf(v->error, sizeof(v->error), "line %zu is not the record %" PRIu64 " the "
			 "running agent wrote (SHA-256 %.16s…, the line's is %.16s…): the log up "
			 "to it was rewritten", c->nr, after.seq, after.sha256, file_sha);
	}
	return 0;
}

static int audit_verify_cmd(const struct audittrail_cli *o)
{
	char path[PATH_MAX], report[1024] = "", ts[32];
	struct tpm_log tl = { 0 };
	struct verify_out v = { 0 };
	struct audit_check c = { 0 };
	bool agent_asked = false;
	size_t confirmed = 0;
	int err;

	log_path(o, path, sizeof(path));
	/* The agent's own log may not exist yet (no record); one named by
	 * hand must. */
	err = o->log && access(path, F_OK) ? -errno : audit_check_file(path, &c);
	if (err) {
		fprintf(stderr, "rayos-agent: audit verify: cannot read %s: %s\n", path,
			strerror(-err));
		return 1;
	}
	/* The agent's own log, while it runs: its last record too. */
	if (!err && !o->log)
		err = check_agent_head(o, path, &c, &v, &agent_asked);
	if (err) {
		fprintf(stderr, "rayos-agent: audit verify: cannot read %s: %s\n", path,
			strerror(-err));
		return 1;
	}
	if (c.bad_line) {
		v.bad_line = c.bad_line;
		snprintf(v.error, sizeof(v.error), "%s", c.why);
	}
	if (o->no_tpm) {
		snprintf(v.tpm, sizeof(v.tpm), "not checked (--no-tpm): records removed from the "
			 "end cannot be detected");
	} else {
		err = tpm_read_verified(o->run_dir, o->state_dir, &tl, &confirmed, report,
					sizeof(report));
		if (err) {
			snprintf(v.tpm, sizeof(v.tpm), "cannot check the head against the TPM: %s "
				 "(--no-tpm checks the chain alone)", report);
			if (!v.bad_line)
				snprintf(v.error, sizeof(v.error), "%s", v.tpm);
		} else {
			if (!v.error[0])
				check_heads(&c, &tl, confirmed, &v);
			snprintf(v.tpm, sizeof(v.tpm), "%zu head measurement(s) checked (%s)",
				 v.heads, report);
		}
	}
	v.ok = !v.error[0];
	if (o->json) {
		cJSON *j = cJSON_CreateObject();
		char *text;

		cJSON_AddBoolToObject(j, "ok", v.ok);
		cJSON_AddStringToObject(j, "log", path);
		cJSON_AddNumberToObject(j, "records", (double)c.nr);
		if (c.nr)
			cJSON_AddStringToObject(j, "head", c.lines[c.nr - 1].sha256);
		cJSON_AddNumberToObject(j, "bad_line", (double)v.bad_line);
		cJSON_AddStringToObject(j, "error", v.error);
		cJSON_AddStringToObject(j, "tpm", v.tpm);
		cJSON_AddNumberToObject(j, "heads_checked", (double)v.heads);
		cJSON_AddNumberToObject(j, "last_measured", (double)v.measured);
		cJSON_AddNumberToObject(j, "not_yet_measured",
					v.ok && c.nr > v.measured ? (double)(c.nr - v.measured) : 0);
		cJSON_AddNumberToObject(j, "heads_pending", (double)v.pending);
		cJSON_AddBoolToObject(j, "agent_checked", agent_asked);
		text = cJSON_Print(j);
		puts(text ? text : "{}");
		cJSON_free(text);
		cJSON_Delete(j);
	} else if (!v.ok) {
		printf("FAILED: %s: %s\n", path, v.error);
		if (strcmp(v.error, v.tpm))
			printf("tpm: %s\n", v.tpm);
	} else {
		printf("OK: %s: %zu records, chain intact", path, c.nr);
		if (c.nr) {
			iso_time(c.lines[c.nr - 1].time, ts, sizeof(ts));
			printf(", head record %zu (%s) %.16s…", c.nr, ts, c.lines[c.nr - 1].sha256);
		}
		printf("\ntpm: %s\n", v.tpm);
		if (agent_asked)
			printf("agent: running, its last record is the log's last\n");
		if (!o->no_tpm && c.nr > v.measured)
			printf("not yet measured: records %" PRIu64 " to %zu (the head is measured "
			       "into the TPM about once a second; %s)\n", v.measured + 1, c.nr,
			       agent_asked ? "the running agent vouches for them"
					   : "removing these could not be detected yet");
		if (v.pending)
			printf("pending: %zu head measurement(s) in the event log the TPM does not "
			       "hold yet\n", v.pending);
	}
	tpm_log_free(&tl);
	audit_check_free(&c);
	return v.ok ? 0 : 1;
}

/* Does the record concern VM id: a member "vm", "from" or "to" that is
 * id, or a list named vms… (vms_added, a revoke-all group's "vms") that
 * holds it, at any depth (records of other changes nest them). */
static bool about_vm(const cJSON *j, double id, int depth)
{
	const cJSON *it, *x;

	if (depth > 4)
		return false;
	cJSON_ArrayForEach(it, j) {
		const char *k = it->string ? it->string : "";

		if (cJSON_IsNumber(it) && it->valuedouble == id &&
		    (!strcmp(k, "vm") || !strcmp(k, "from") || !strcmp(k, "to")))
			return true;
		if (cJSON_IsArray(it) && !strncmp(k, "vms", 3))
			cJSON_ArrayForEach(x, it)
				if (cJSON_IsNumber(x) && x->valuedouble == id)
					return true;
		if ((cJSON_IsObject(it) || cJSON_IsArray(it)) && about_vm(it, id, depth + 1))
			return true;
	}
	return false;
}

static void print_record(const cJSON *rec)
{
	const cJSON *it;
	char ts[32];

	iso_time(cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(rec, "time")), ts,
		 sizeof(ts));
	printf("%s  #%-5.0f %-16s", ts,
	       cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(rec, "seq")),
	       cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(rec, "event")) ?: "?");
	cJSON_ArrayForEach(it, rec) {
		static const char *const skip[] = { "seq", "prev", "time", "hash", "event" };
		bool hide = false;
		char *v;

		for (size_t i = 0; i < sizeof(skip) / sizeof(skip[0]); i++)
			hide = hide || !strcmp(it->string, skip[i]);
		if (hide)
			continue;
		if (cJSON_IsString(it)) {
			printf(" %s=%s", it->string, it->valuestring);
			continue;
		}
		v = cJSON_PrintUnformatted(it);
		printf(" %s=%s", it->string, v ? v : "?");
		cJSON_free(v);
	}
	printf("\n");
}

static int parse_since(const char *s, double *since)
{
	uint64_t ns, now = clock_ns(CLOCK_REALTIME);
	char err1[160], err2[160];

	if (!caps_parse_duration(s, &ns, err1, sizeof(err1))) {
		*since = (double)(now - (ns < now ? ns : now)) / 1e9;
		return 0;
	}
	if (!caps_parse_rfc3339(s, &ns, err2, sizeof(err2))) {
		*since = (double)ns / 1e9;
		return 0;
	}
	fprintf(stderr, "rayos-agent: audit --since %s: want a duration back from now (1h, "
		"30m, 2d; %s) or an RFC 3339 time (2026-12-02T17:00:00Z; %s)\n", s, err1, err2);
	return -EINVAL;
}

static int audit_list_cmd(const struct audittrail_cli *o)
{
	char path[PATH_MAX], why[200], *buf = NULL, *end;
	double since = 0, vm = 0;
	struct audit_check c;
	cJSON *out = NULL;
	size_t len = 0, line_no = 0;
	int err;

	if (o->vm) {
		errno = 0;
		unsigned long v = strtoul(o->vm, &end, 10);

		if (errno || *end || !o->vm[0] || v < 1 || v > UINT32_MAX) {
			fprintf(stderr, "rayos-agent: audit --vm %s: want a VM id "
				"(1..4294967295)\n", o->vm);
			return 2;
		}
		vm = (double)v;
	}
	if (o->since && parse_since(o->since, &since))
		return 2;
	log_path(o, path, sizeof(path));
	err = audit_read_file(path, &buf, &len);
	if (err && err != -ENOENT) {
		fprintf(stderr, "rayos-agent: audit: cannot read %s: %s\n", path, strerror(-err));
		return 1;
	}
	/* The listing shows what is there; a broken chain is said once. */
	if (buf && !audit_check_buf(buf, len, &c)) {
		if (c.bad_line)
			fprintf(stderr, "rayos-agent: warning: %s does not verify: %s "
				"(rayos-agent audit verify)\n", path, c.why);
		audit_check_free(&c);
	}
	if (o->json)
		out = cJSON_CreateArray();
	for (char *p = buf; p && *p; p = end ? end + 1 : p + strlen(p)) {
		struct audit_line al;
		cJSON *rec = NULL;
		const cJSON *t;

		end = strchr(p, '\n');
		line_no++;
		if (audit_parse_line(p, end ? (size_t)(end - p) : strlen(p), &al, &rec, why,
				     sizeof(why))) {
			/* Shown too, so that nothing is hidden by a bad line. */
			rec = cJSON_ParseWithLength(p, end ? (size_t)(end - p) : strlen(p));
			if (!cJSON_IsObject(rec)) {
				cJSON_Delete(rec);
				if (!o->json)
					printf("line %zu: %s\n", line_no, why);
				continue;
			}
		}
		t = cJSON_GetObjectItemCaseSensitive(rec, "time");
		if ((o->vm && !about_vm(rec, vm, 0)) ||
		    (o->since && (!cJSON_IsNumber(t) || t->valuedouble < since))) {
			cJSON_Delete(rec);
			continue;
		}
		if (out) {
			cJSON_AddItemToArray(out, rec);
			continue;
		}
		print_record(rec);
		cJSON_Delete(rec);
	}
	if (out) {
		char *text = cJSON_Print(out);

		puts(text ? text : "[]");
		cJSON_free(text);
		cJSON_Delete(out);
	}
	free(buf);
	return 0;
}

int audittrail_cli(const struct audittrail_cli *o, int argc, char **argv)
{
	if (!argc)
		return audit_list_cmd(o);
	if (argc == 1 && !strcmp(argv[0], "verify")) {
		if (o->vm || o->since) {
			fprintf(stderr, "rayos-agent: audit verify checks the whole log: --vm and "
				"--since are for the listing\n");
			return 2;
		}
		return audit_verify_cmd(o);
	}
	fprintf(stderr, "rayos-agent: audit: unknown argument \"%s\" (audit [--vm ID] "
		"[--since T] [--json] | audit verify [--log PATH] [--no-tpm] [--json])\n",
		argv[0]);
	return 2;
}
