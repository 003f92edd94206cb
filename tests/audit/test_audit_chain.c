// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * agent/audit: the hash chain as audit_append writes it, and what
 * audit_check_buf finds in logs changed after the fact (an edited line,
 * one re-hashed, deleted lines at the start, middle and end, swapped and
 * duplicated lines, a cut-off last line, garbage, an empty log), each
 * named by its first bad line; appends refused onto a tail that does not
 * verify or that changed behind the writer; concurrent appenders.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/audit/audit.h"
#include "agent/core/digest.h"
#include "tests/lib/tap.h"

#define NR_RECS		6

static char dir[] = "/tmp/rayos-audit-test.XXXXXX";

static void path_of(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", dir, name);
}

static int append_event(const char *path, const char *event, int vm)
{
	cJSON *r = cJSON_CreateObject();
	int err;

	cJSON_AddStringToObject(r, "event", event);
	cJSON_AddNumberToObject(r, "vm", vm);
	err = audit_append(path, r);
	cJSON_Delete(r);
	return err;
}

/* The log as lines (without newlines). */
struct lines {
	char *l[64];
	size_t n;
};

static void split(const char *buf, struct lines *ls)
{
	const char *p = buf;

	ls->n = 0;
	while (*p && ls->n < 64) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);

		ls->l[ls->n++] = strndup(p, len);
		p += len + (nl ? 1 : 0);
	}
}

static void free_lines(struct lines *ls)
{
	for (size_t i = 0; i < ls->n; i++)
		free(ls->l[i]);
	ls->n = 0;
}

/* Join lines (indexes in order, -1 ends) with newlines. */
static char *join(const struct lines *ls, const int *order)
{
	size_t len = 0;
	char *out;

	for (const int *o = order; *o >= 0; o++)
		len += strlen(ls->l[*o]) + 1;
	out = calloc(1, len + 1);
	for (const int *o = order; *o >= 0; o++) {
		strcat(out, ls->l[*o]);
		strcat(out, "\n");
	}
	return out;
}

/* line with its "hash" recomputed, as someone who edits and re-hashes. */
static char *reseal(const char *line)
{
	size_t body = strlen(line) - (strlen(",\"hash\":\"\"}") + AUDIT_HEX_LEN);
	uint8_t d[SHA256_DIGEST_LEN];
	char hex[AUDIT_HEX_LEN + 1], *text, *out;

	if (asprintf(&text, "%.*s}", (int)body, line) < 0)
		return NULL;
	sha256(text, strlen(text), d);
	sha256_hex(d, hex);
	if (asprintf(&out, "%.*s,\"hash\":\"%s\"}", (int)body, line, hex) < 0)
		out = NULL;
	free(text);
	return out;
}

static char *replace(const char *s, const char *from, const char *to)
{
	const char *at = strstr(s, from);
	char *out;

	if (!at || asprintf(&out, "%.*s%s%s", (int)(at - s), s, to, at + strlen(from)) < 0)
		return NULL;
	return out;
}

static void expect_bad(const char *name, const char *buf, size_t want_line, const char *word)
{
	struct audit_check c;
	int err = audit_check_buf(buf, strlen(buf), &c);

	tap_ok(!err && c.bad_line == want_line && strstr(c.why, word),
	       "%s: first bad line %zu, \"%s\"", name, want_line, word);
	if (err || c.bad_line != want_line || !strstr(c.why, word))
		tap_diag("  got err %d, line %zu: %s", err, c.bad_line, c.why);
	audit_check_free(&c);
}

static void test_chain(void)
{
	char path[256], *buf = NULL;
	struct audit_check c;
	struct audit_head h;
	struct lines ls;
	cJSON *rec = NULL;
	char why[1024];
	size_t len;
	int err = 0;

	path_of(path, sizeof(path), "chain.log");
	for (int i = 0; i < NR_RECS && !err; i++)
		err = append_event(path, "cap_grant", 1001 + i);
	ASSERT_EQ(err, 0, "six records appended");
	ASSERT_EQ(audit_read_file(path, &buf, &len), 0, "the log reads back");
	split(buf, &ls);
	ASSERT_EQ(ls.n, NR_RECS, "one line per record");
	ASSERT_EQ(audit_check_buf(buf, len, &c), 0, "the chain checks");
	ASSERT_EQ(c.bad_line, 0, "  ...no bad line");
	ASSERT_EQ(c.nr, NR_RECS, "  ...all six lines");
	ASSERT_EQ(c.lines[0].seq, 1, "  ...seq starts at 1");
	ASSERT_EQ(c.lines[5].seq, 6, "  ...and goes up by one");
	ASSERT_STREQ(c.lines[0].prev, AUDIT_GENESIS, "  ...line 1 chains onto the genesis value");
	ASSERT_STREQ(c.lines[3].prev, c.lines[2].sha256, "  ...line 4 onto line 3's SHA-256");
	ASSERT_EQ(audit_head(path, &h, why, sizeof(why)), 0, "audit_head reads the head");
	ASSERT_EQ(h.seq, 6, "  ...seq 6");
	ASSERT_STREQ(h.sha256, c.lines[5].sha256, "  ...and the SHA-256 of the last line");
	ASSERT_EQ(audit_parse_line(ls.l[2], strlen(ls.l[2]), &(struct audit_line){}, &rec, why,
				   sizeof(why)), 0, "a line parses alone");
	ASSERT_STREQ(cJSON_GetStringValue(cJSON_GetObjectItem(rec, "event")), "cap_grant",
		     "  ...with the caller's members");
	ASSERT_TRUE(cJSON_IsNumber(cJSON_GetObjectItem(rec, "time")), "  ...and a time");
	ASSERT_TRUE(!strncmp(ls.l[0], "{\"seq\":1,\"prev\":\"", 17) &&
		    strstr(ls.l[0], "\"hash\":\"") == ls.l[0] + strlen(ls.l[0]) - 74,
		    "  ...seq and prev first, hash last");
	cJSON_Delete(rec);

	/* What someone with write access to the file could do. */
	{
		char *edited = replace(ls.l[2], "\"vm\":1003", "\"vm\":1013");
		char *resealed = reseal(edited);
		char *vm6 = replace(ls.l[5], "\"vm\":1006", "\"vm\":1016");
		char *last = reseal(vm6);
		char *moved = replace(ls.l[1], "{\"seq\":2,", "{\"seq\":2,\"x\":0,");
		char *hash_first = NULL;
		struct lines t = ls;
		char *b;

		t.l[2] = edited;
		b = join(&t, (int[]){ 0, 1, 2, 3, 4, 5, -1 });
		expect_bad("line 3 edited", b, 3, "own hash");
		free(b);
		t.l[2] = resealed;
		b = join(&t, (int[]){ 0, 1, 2, 3, 4, 5, -1 });
		expect_bad("line 3 edited and re-hashed", b, 4, "is not the SHA-256 of line 3");
		free(b);
		b = join(&ls, (int[]){ 0, 1, 3, 4, 5, -1 });
		expect_bad("line 3 deleted", b, 3, "record 3 is missing");
		free(b);
		b = join(&ls, (int[]){ 1, 2, 3, 4, 5, -1 });
		expect_bad("line 1 deleted", b, 1, "record 1 is missing");
		free(b);
		b = join(&ls, (int[]){ 0, 3, 4, 5, -1 });
		expect_bad("lines 2 and 3 deleted", b, 2, "records 2 to 3 are missing");
		free(b);
		b = join(&ls, (int[]){ 0, 2, 1, 3, 4, 5, -1 });
		expect_bad("lines 2 and 3 swapped", b, 2, "out of order");
		free(b);
		b = join(&ls, (int[]){ 0, 1, 2, 3, 5, 4, -1 });
		expect_bad("the last two lines swapped", b, 5, "record 5 is at line 6");
		free(b);
		b = join(&ls, (int[]){ 0, 1, 1, 2, 3, 4, 5, -1 });
		expect_bad("line 2 duplicated", b, 3, "again");
		free(b);
		t = ls;
		t.l[5] = last;
		b = join(&t, (int[]){ 0, 1, 2, 3, 4, 5, -1 });
		{
			struct audit_check cc;

			audit_check_buf(b, strlen(b), &cc);
			/* Only the head measured into the TPM can tell (audittrail). */
			ASSERT_TRUE(cc.bad_line == 0 && cc.nr == 6 &&
				    strcmp(cc.lines[5].sha256, c.lines[5].sha256),
				    "the last line edited and re-hashed: the chain alone "
				    "checks, with a different head");
			audit_check_free(&cc);
		}
		free(b);
		b = join(&ls, (int[]){ 0, 1, 2, 3, 4, -1 });
		{
			struct audit_check cc;

			audit_check_buf(b, strlen(b), &cc);
			ASSERT_TRUE(cc.bad_line == 0 && cc.nr == 5,
				    "the last line deleted: the chain alone checks, one "
				    "record shorter (the TPM head catches it)");
			audit_check_free(&cc);
		}
		b[strlen(b) - 30] = '\0';
		expect_bad("the log cut in the middle of line 5", b, 5, "incomplete");
		free(b);
		t = ls;
		t.l[3] = "this is not json";
		b = join(&t, (int[]){ 0, 1, 2, 3, 4, 5, -1 });
		expect_bad("garbage at line 4", b, 4, "not a JSON object");
		free(b);
		t.l[3] = "";
		b = join(&t, (int[]){ 0, 1, 2, 3, 4, 5, -1 });
		expect_bad("an empty line 4", b, 4, "is empty");
		free(b);
		t.l[3] = "{\"seq\":4,\"event\":\"cap_grant\"}";
		b = join(&t, (int[]){ 0, 1, 2, 3, 4, 5, -1 });
		expect_bad("a record without prev and hash", b, 4, "\"prev\"");
		free(b);
		t = ls;
		t.l[1] = moved;
		b = join(&t, (int[]){ 0, 1, 2, 3, 4, 5, -1 });
		expect_bad("a member added to line 2", b, 2, "own hash");
		free(b);
		if (asprintf(&hash_first, "{\"hash\":\"%s\",%s", c.lines[0].sha256,
			     ls.l[0] + 1) > 0) {
			t = ls;
			t.l[0] = hash_first;
			b = join(&t, (int[]){ 0, 1, -1 });
			expect_bad("a hash member that is not the last one", b, 1, "does not end");
			free(b);
		}
		expect_bad("no newline at the end of line 1", ls.l[0], 1, "incomplete");
		free(hash_first);
		free(moved);
		free(vm6);
		free(last);
		free(resealed);
		free(edited);
	}
	audit_check_free(&c);
	{
		struct audit_check cc = { .nr = 7 };

		ASSERT_TRUE(!audit_check_buf("", 0, &cc) && !cc.bad_line && !cc.nr,
			    "an empty log checks, with no record");
		ASSERT_TRUE(!audit_check_file("/nonexistent/audit.log", &cc) && !cc.nr,
			    "  ...and so does a missing one");
	}
	free_lines(&ls);
	free(buf);
}

/* rec is not changed; the caller's seq/prev/time/hash do not get in. */
static void test_members(void)
{
	char path[256], *buf = NULL, *before, *after;
	struct audit_check c;
	size_t len;
	cJSON *r = cJSON_CreateObject();

	path_of(path, sizeof(path), "members.log");
	cJSON_AddStringToObject(r, "event", "policy_publish");
	cJSON_AddNumberToObject(r, "seq", 99);
	cJSON_AddStringToObject(r, "hash", "forged");
	cJSON_AddStringToObject(r, "prev", "forged");
	before = cJSON_PrintUnformatted(r);
	ASSERT_EQ(audit_append(path, r), 0, "a record with its own seq, prev and hash");
	after = cJSON_PrintUnformatted(r);
	ASSERT_STREQ(after, before, "  ...the caller's object is unchanged");
	audit_read_file(path, &buf, &len);
	audit_check_buf(buf, len, &c);
	ASSERT_TRUE(c.nr == 1 && !c.bad_line && c.lines[0].seq == 1 && !strstr(buf, "forged"),
		    "  ...the log has the chain's own, not the caller's");
	ASSERT_EQ(audit_append(path, NULL), -EINVAL, "no record: -EINVAL");
	audit_check_free(&c);
	cJSON_Delete(r);
	free(before);
	free(after);
	free(buf);
}

static void write_file(const char *path, const char *text, const char *mode)
{
	FILE *f = fopen(path, mode);

	if (f) {
		fputs(text, f);
		fclose(f);
	}
}

/* Never chain onto a tail that does not verify or changed behind us. */
static void test_refusals(void)
{
	char path[256], moved[256], why[2048], *buf = NULL, *cut;
	struct audit_check c;
	size_t len, n0;

	path_of(path, sizeof(path), "garbage.log");
	write_file(path, "not a record\n", "w");
	ASSERT_EQ(append_event(path, "cap_grant", 1), -EBADMSG,
		  "a log whose last line is garbage: append refused");
	ASSERT_EQ(audit_probe(path, why, sizeof(why)), -EBADMSG, "  ...and audit_probe says so");
	ASSERT_CONTAINS(why, "garbage.log: its last line is not a JSON object",
			"  ...naming the file and what is wrong");
	ASSERT_CONTAINS(why, "audit verify", "  ...and what to do");

	path_of(path, sizeof(path), "torn.log");
	ASSERT_EQ(append_event(path, "cap_grant", 1), 0, "a fresh log");
	write_file(path, "{\"seq\":2,\"pr", "a");
	ASSERT_EQ(append_event(path, "cap_grant", 2), -EBADMSG,
		  "half a record at its end: append refused");
	audit_probe(path, why, sizeof(why));
	ASSERT_CONTAINS(why, "incomplete", "  ...the last line is incomplete");

	path_of(path, sizeof(path), "behind.log");
	for (int i = 0; i < 3; i++)
		append_event(path, "cap_grant", i);
	audit_read_file(path, &buf, &len);
	/* The last record cut off in place (same file): the tail verifies. */
	cut = strndup(buf, (size_t)(strrchr(buf, '}') - buf));
	*(strrchr(cut, '\n') + 1) = '\0';
	write_file(path, cut, "r+");
	ASSERT_EQ(truncate(path, (off_t)strlen(cut)), 0, "the last record removed in place");
	ASSERT_EQ(append_event(path, "cap_grant", 9), -EBADMSG,
		  "  ...append refused: the head is not the one this process wrote");
	audit_probe(path, why, sizeof(why));
	ASSERT_CONTAINS(why, "changed behind the agent: its last record is 2", "  ...and why");
	write_file(path, buf, "w");
	ASSERT_EQ(append_event(path, "cap_grant", 9), 0, "the log put back: appends go on");
	free(cut);
	free(buf);
	buf = NULL;

	path_of(moved, sizeof(moved), "behind.old");
	ASSERT_EQ(rename(path, moved), 0, "the log moved aside");
	ASSERT_EQ(append_event(path, "cap_grant", 10), -EBADMSG,
		  "  ...append refused: no new chain behind the writer's back");
	audit_probe(path, why, sizeof(why));
	ASSERT_CONTAINS(why, "removed or replaced", "  ...and why");
	audit_read_file(moved, &buf, &len);
	n0 = len;
	free(buf);
	audit_check_file(moved, &c);
	ASSERT_TRUE(c.nr == 4 && !c.bad_line && n0 > 0, "  ...the moved log still checks");
	audit_check_free(&c);
}

struct writer {
	const char *path;
	int id, failed;
};

static void *write_many(void *arg)
{
	struct writer *w = arg;

	for (int i = 0; i < 50; i++)
		if (append_event(w->path, "cap_revoke", w->id * 1000 + i))
			w->failed++;
	return NULL;
}

static void test_threads(void)
{
	struct writer w[4];
	pthread_t th[4];
	struct audit_check c;
	char path[256];
	int failed = 0;

	path_of(path, sizeof(path), "threads.log");
	for (int i = 0; i < 4; i++) {
		w[i] = (struct writer){ .path = path, .id = i };
		pthread_create(&th[i], NULL, write_many, &w[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		failed += w[i].failed;
	}
	ASSERT_EQ(failed, 0, "4 threads append 50 records each");
	ASSERT_TRUE(!audit_check_file(path, &c) && !c.bad_line && c.nr == 200,
		    "  ...one chain of 200 records");
	audit_check_free(&c);
}

int main(void)
{
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	test_chain();
	test_members();
	test_refusals();
	test_threads();
	{
		char cmd[300];

		snprintf(cmd, sizeof(cmd), "%s", dir);
		/* Only files this test made. */
		for (const char *n = "chain.log\0members.log\0garbage.log\0torn.log\0behind.log\0"
				     "behind.old\0threads.log\0"; *n; n += strlen(n) + 1) {
			char p[300];

			snprintf(p, sizeof(p), "%s/%s", dir, n);
			unlink(p);
		}
		rmdir(cmd);
	}
	return tap_done();
}
