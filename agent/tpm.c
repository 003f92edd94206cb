// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * TPM measured launch: the worker thread that records and extends
 * measurements in order, the embedded swtpm, and the CLI operations
 * (verify, quote, verify-quote, vm-snapshot, NV).  Every TPM command is a
 * tpm2-tools process run with spawn_run (argv, timeout, checked status).
 *
 * Why a thread and not pidfds in the epoll loop: each measurement is a
 * chain (append, fdatasync, extend, and on failure re-read the PCR before
 * retrying), and a thread runs that chain as straight-line code with the
 * ordering obvious; fdatasync on a slow disk blocks too, and the loop must
 * not wait for it either.  The loop only takes a mutex for microseconds.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/evloop.h"
#include "agent/log.h"
#include "agent/spawn.h"
#include "agent/tpm.h"
#include "agent/tpm_log.h"
#include "agent/util.h"

#define TOOL_TIMEOUT_MS		10000
#define QUOTE_TIMEOUT_MS	30000
#define QUEUE_MAX		65536
#define RETRY_MIN_MS		1000
#define RETRY_MAX_MS		30000
#define SWTPM_READY_MS		3000

enum tpm_state { ST_STARTING, ST_READY, ST_UNAVAILABLE, ST_DIVERGED };

static const char *const state_names[] = {
	[ST_STARTING] = "starting",
	[ST_READY] = "ready",
	[ST_UNAVAILABLE] = "unavailable",
	[ST_DIVERGED] = "diverged",
};

struct item {
	struct item *next;
	char content_type[64];
	char *content;		/* printed JSON */
};

struct tpm {
	/* set in tpm_open, read-only afterwards */
	char state_dir[1024];
	char run_dir[1024];
	char log_path[PATH_MAX];
	char tcti[PATH_MAX + 32];
	bool embedded;
	uint32_t pcr, nv_index;
	int timeout_ms;
	int epfd;
	struct ev_source ev;	/* eventfd: the worker's state changes */

	pthread_t thread;
	bool thread_started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	/* under mu */
	struct item *head, *tail;
	size_t nr_queued;
	size_t in_batch;	/* taken off the queue, not yet in the log */
	bool stop;
	enum tpm_state state;
	unsigned int banks;
	size_t records, extended;
	uint64_t failed;
	char last_error[256];
	bool mac;
	pid_t swtpm_pid;
	enum tpm_state reported;	/* last state the loop logged */

	/* worker only */
	struct tpm_log log;
	int log_fd;
	uint8_t seed[TPM_NV_SEED_LEN];
	bool swtpm_ours;	/* our child (reap) or adopted (poll) */
	bool need_reconcile;
	int retry_ms;
};

static long long now_ms(void)
{
	return (long long)(clock_ns(CLOCK_MONOTONIC) / 1000000);
}

/* ---- tpm2-tools ---- */

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

/*
 * Run one tpm2-tools command against tcti.  args: the tool and its
 * arguments (NULL-terminated, at most 30); "-T tcti" is added.  On
 * failure why gets "tool: reason".  out may be NULL.
 */
static int run_tool_len(const char *tcti, const char *const args[], int timeout_ms,
			const void *in, size_t in_len, char **out, size_t *out_len,
			char *why, size_t why_len)
{
	const char *argv[34];
	char *err_out = NULL, line[200];
	int n = 0, rc, status;

	while (args[n] && n < 30) {
		argv[n] = args[n];
		n++;
	}
	if (tcti) {
		argv[n++] = "-T";
		argv[n++] = tcti;
	}
	argv[n] = NULL;
	rc = spawn_run(argv, NULL, timeout_ms > 0 ? timeout_ms : TOOL_TIMEOUT_MS,
		       in, in_len, out, out_len, &err_out, &status);
	if (rc && why) {
		last_line(err_out, line, sizeof(line));
		if (rc == -ETIMEDOUT)
			snprintf(why, why_len, "%s: timed out after %d ms", args[0],
				 timeout_ms > 0 ? timeout_ms : TOOL_TIMEOUT_MS);
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

static int run_tool(const char *tcti, const char *const args[], int timeout_ms,
		    const void *in, size_t in_len, char **out, char *why, size_t why_len)
{
	return run_tool_len(tcti, args, timeout_ms, in, in_len, out, NULL, why, why_len);
}

/* Active banks that include pcr, from `tpm2_getcap pcrs`:
 *   selected-pcrs:
 *     - sha256: [ 0, 1, …, 23 ]                                         */
static int get_banks(const char *tcti, uint32_t pcr, unsigned int *banks, char *why, size_t len)
{
	const char *args[] = { "tpm2_getcap", "pcrs", NULL };
	char *out = NULL, *line, *save = NULL;
	int err;

	*banks = 0;
	err = run_tool(tcti, args, 0, NULL, 0, &out, why, len);
	if (err)
		goto out;
	for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char name[16], *lb = strchr(line, '['), *p;
		int b;

		if (sscanf(line, " - %15[a-z0-9]:", name) != 1 || !lb)
			continue;
		b = tpm_bank_from_name(name);
		if (b < 0)
			continue;	/* sm3_256 and the like: not computed here */
		for (p = lb + 1; *p && *p != ']';) {
			char *end;
			unsigned long v = strtoul(p, &end, 10);

			if (end == p) {
				p++;
				continue;
			}
			if (v == pcr)
				*banks |= 1u << b;
			p = end;
		}
	}
	if (!*banks) {
		snprintf(why, len, "tpm2_getcap pcrs: no SHA-1/SHA-2 bank has PCR %u", pcr);
		err = -ENODEV;
	}
out:
	free(out);
	return err;
}

/* PCR values of the banks in YAML from tpm2_pcrread / tpm2_checkquote:
 *   sha256:
 *     23: 0xF5A5…                                                        */
static int parse_pcr_yaml(const char *yaml, uint32_t pcr, unsigned int banks,
			  uint8_t val[TPM_NR_BANKS][TPM_MAX_DIGEST_LEN])
{
	unsigned int seen = 0;
	int bank = -1;
	const char *p = yaml;

	while (p && *p) {
		const char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) : strlen(p);
		char line[256], name[16], hex[160];
		unsigned int idx;

		snprintf(line, sizeof(line), "%.*s", (int)(n < 255 ? n : 255), p);
		if (sscanf(line, " %15[a-z0-9]%*[:]", name) == 1 && strchr(line, ':') &&
		    !strchr(line, ':')[1] && tpm_bank_from_name(name) >= 0) {
			bank = tpm_bank_from_name(name);
		} else if (bank >= 0 && sscanf(line, " %u: %159s", &idx, hex) == 2 &&
			   idx == pcr && (banks & (1u << bank))) {
			if (tpm_unhex(hex, val[bank], tpm_bank_len(bank)))
				return -EBADMSG;
			seen |= 1u << bank;
		} else if (line[0] && line[0] != ' ') {
			bank = -1;	/* another top-level key */
		}
		p = nl ? nl + 1 : NULL;
	}
	return (seen & banks) == banks ? 0 : -EBADMSG;
}

static void pcr_selection(uint32_t pcr, unsigned int banks, char *buf, size_t len)
{
	size_t off = 0;

	buf[0] = '\0';
	for (int b = 0; b < TPM_NR_BANKS; b++)
		if (banks & (1u << b))
			off += (size_t)snprintf(buf + off, len - off, "%s%s:%u", off ? "+" : "",
						tpm_bank_name(b), pcr);
}

static int pcr_read(const char *tcti, uint32_t pcr, unsigned int banks,
		    uint8_t val[TPM_NR_BANKS][TPM_MAX_DIGEST_LEN], char *why, size_t len)
{
	char sel[128], *out = NULL;
	const char *args[] = { "tpm2_pcrread", sel, NULL };
	int err;

	pcr_selection(pcr, banks, sel, sizeof(sel));
	err = run_tool(tcti, args, 0, NULL, 0, &out, why, len);
	if (!err && (err = parse_pcr_yaml(out, pcr, banks, val)))
		snprintf(why, len, "tpm2_pcrread %s: unexpected output", sel);
	free(out);
	return err;
}

static int pcr_extend(const char *tcti, int timeout_ms, uint32_t pcr, unsigned int banks,
		      const uint8_t digest[TPM_NR_BANKS][TPM_MAX_DIGEST_LEN],
		      char *why, size_t len)
{
	char arg[4 * (2 * TPM_MAX_DIGEST_LEN + 16) + 16];
	const char *args[] = { "tpm2_pcrextend", arg, NULL };
	size_t off = (size_t)snprintf(arg, sizeof(arg), "%u:", pcr);
	bool first = true;

	for (int b = 0; b < TPM_NR_BANKS; b++) {
		char hex[2 * TPM_MAX_DIGEST_LEN + 1];

		if (!(banks & (1u << b)))
			continue;
		tpm_hex(digest[b], tpm_bank_len(b), hex);
		off += (size_t)snprintf(arg + off, sizeof(arg) - off, "%s%s=%s",
					first ? "" : ",", tpm_bank_name(b), hex);
		first = false;
	}
	return run_tool(tcti, args, timeout_ms, NULL, 0, NULL, why, len);
}

static int nv_read(const char *tcti, uint32_t index, void *buf, size_t len,
		   char *why, size_t why_len)
{
	char idx[16], size[16], *out = NULL;
	const char *args[] = { "tpm2_nvread", idx, "-C", "o", "-s", size, NULL };
	size_t got = 0;
	int err;

	snprintf(idx, sizeof(idx), "0x%08x", index);
	snprintf(size, sizeof(size), "%zu", len);
	err = run_tool_len(tcti, args, 0, NULL, 0, &out, &got, why, why_len);
	if (!err && got != len) {
		if (why)
			snprintf(why, why_len, "tpm2_nvread %s: %zu bytes, want %zu", idx, got, len);
		err = -EBADMSG;
	}
	if (!err)
		memcpy(buf, out, len);
	if (out)
		memset(out, 0, got);
	free(out);
	return err;
}

static int nv_define(const char *tcti, uint32_t index, size_t size, char *why, size_t len)
{
	char idx[16], sz[16];
	const char *args[] = { "tpm2_nvdefine", idx, "-C", "o", "-s", sz, "-a",
			       "ownerread|ownerwrite|authread|authwrite", NULL };

	snprintf(idx, sizeof(idx), "0x%08x", index);
	snprintf(sz, sizeof(sz), "%zu", size);
	return run_tool(tcti, args, 0, NULL, 0, NULL, why, len);
}

static int nv_write(const char *tcti, uint32_t index, const void *data, size_t len,
		    char *why, size_t why_len)
{
	char idx[16];
	const char *args[] = { "tpm2_nvwrite", idx, "-C", "o", "-i", "-", NULL };

	snprintf(idx, sizeof(idx), "0x%08x", index);
	return run_tool(tcti, args, 0, data, len, NULL, why, why_len);
}

/* ---- the embedded swtpm ---- */

static int swtpm_paths(const char *state_dir, char *dir, char *sock, char *pidf, char *logf)
{
	if (snprintf(dir, PATH_MAX, "%s/swtpm", state_dir) >= PATH_MAX ||
	    snprintf(pidf, PATH_MAX, "%s/swtpm.pid", dir) >= PATH_MAX ||
	    snprintf(logf, PATH_MAX, "%s/swtpm.log", dir) >= PATH_MAX ||
	    snprintf(sock, sizeof(((struct sockaddr_un *)0)->sun_path) - 6, "%s/sock",
		     dir) >= (int)sizeof(((struct sockaddr_un *)0)->sun_path) - 6)
		return -ENAMETOOLONG;	/* "<sock>.ctrl" must fit sun_path too */
	return 0;
}

static bool sock_connectable(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok;

	if (fd < 0)
		return false;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	ok = !connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	close(fd);
	return ok;
}

/* A swtpm from an agent that died without tpm_close still holds the PCR
 * and the state lock: adopt it rather than fail, and the log stays valid. */
static pid_t swtpm_running(const char *pidf)
{
	char buf[32], comm[PATH_MAX];
	FILE *f = fopen(pidf, "re");
	long pid = 0;

	if (!f)
		return 0;
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = '\0';
	fclose(f);
	pid = strtol(buf, NULL, 10);
	if (pid <= 0)
		return 0;
	snprintf(comm, sizeof(comm), "/proc/%ld/comm", pid);
	f = fopen(comm, "re");
	if (!f)
		return 0;
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = '\0';
	fclose(f);
	return strncmp(buf, "swtpm", 5) ? 0 : (pid_t)pid;
}

static int swtpm_start(struct tpm *t, char *why, size_t len)
{
	char dir[PATH_MAX], sock[PATH_MAX], pidf[PATH_MAX], logf[PATH_MAX];
	char server[PATH_MAX + 32], ctrl[PATH_MAX + 32], state[PATH_MAX + 16], pidarg[PATH_MAX + 8];
	const char *argv[] = { "swtpm", "socket", "--tpm2", "--server", server, "--ctrl", ctrl,
			       "--tpmstate", state, "--pid", pidarg,
			       "--flags", "not-need-init,startup-clear", NULL };
	long long deadline;
	pid_t pid;
	int err;

	err = swtpm_paths(t->state_dir, dir, sock, pidf, logf);
	if (err) {
		snprintf(why, len, "state dir %.200s: path too long for a socket", t->state_dir);
		return err;
	}
	err = mkdir_p(dir, 0700);
	if (!err && chmod(dir, 0700))
		err = -errno;
	if (err) {
		snprintf(why, len, "cannot create %.200s: %s", dir, strerror(-err));
		return err;
	}
	pid = swtpm_running(pidf);
	if (pid && sock_connectable(sock)) {
		pthread_mutex_lock(&t->mu);
		t->swtpm_pid = pid;
		pthread_mutex_unlock(&t->mu);
		t->swtpm_ours = false;
		log_info("tpm: adopted embedded swtpm pid %d (%s)", pid, dir);
		return 0;
	}
	unlink(sock);
	snprintf(server, sizeof(server), "type=unixio,path=%s,mode=0600", sock);
	snprintf(ctrl, sizeof(ctrl), "type=unixio,path=%s.ctrl,mode=0600", sock);
	snprintf(state, sizeof(state), "dir=%s,mode=0600", dir);
	snprintf(pidarg, sizeof(pidarg), "file=%s", pidf);
	err = spawn_start(argv, NULL, logf, &pid, NULL);
	if (err) {
		snprintf(why, len, "cannot start swtpm: %s%s", strerror(-err),
			 err == -ENOENT ? " (apt install swtpm)" : "");
		return err;
	}
	pthread_mutex_lock(&t->mu);
	t->swtpm_pid = pid;
	pthread_mutex_unlock(&t->mu);
	t->swtpm_ours = true;
	for (deadline = now_ms() + SWTPM_READY_MS; now_ms() < deadline; usleep(10000)) {
		int status;

		if (waitpid(pid, &status, WNOHANG) == pid) {
			pthread_mutex_lock(&t->mu);
			t->swtpm_pid = 0;
			pthread_mutex_unlock(&t->mu);
			snprintf(why, len, "swtpm exited at start (see %.200s)", logf);
			return -ECHILD;
		}
		if (sock_connectable(sock)) {
			log_info("tpm: started embedded swtpm pid %d (%s)", pid, dir);
			return 0;
		}
	}
	snprintf(why, len, "swtpm did not open %.200s within %d ms", sock, SWTPM_READY_MS);
	return -ETIMEDOUT;
}

static void swtpm_stop(struct tpm *t)
{
	pid_t pid;

	pthread_mutex_lock(&t->mu);
	pid = t->swtpm_pid;
	t->swtpm_pid = 0;
	pthread_mutex_unlock(&t->mu);
	if (pid <= 0)
		return;
	if (t->swtpm_ours) {
		spawn_stop(pid, 2000);
		return;
	}
	/* Adopted: not our child, so poll instead of reaping. */
	kill(pid, SIGTERM);
	for (int i = 0; i < 200 && !kill(pid, 0); i++)
		usleep(10000);
	kill(pid, SIGKILL);
}

/* ---- the worker ---- */

static void notify(struct tpm *t)
{
	uint64_t one = 1;

	if (t->ev.fd >= 0 && write(t->ev.fd, &one, sizeof(one)) < 0)
		return;	/* counter full: the loop has a wake-up pending anyway */
}

/* Under mu. */
static void set_state(struct tpm *t, enum tpm_state st, const char *err)
{
	if (err) {
		snprintf(t->last_error, sizeof(t->last_error), "%s", err);
		t->failed++;
	}
	if (t->state != st || err) {
		t->state = st;
		if (t->epfd < 0) {
			if (err)
				log_warn("tpm: %s: %s", state_names[st], err);
		} else {
			notify(t);
		}
	}
}

static void fail(struct tpm *t, enum tpm_state st, const char *err)
{
	pthread_mutex_lock(&t->mu);
	set_state(t, st, err);
	pthread_mutex_unlock(&t->mu);
}

static int write_conf(struct tpm *t)
{
	char path[PATH_MAX], tmp[PATH_MAX + 8], *text;
	cJSON *o = cJSON_CreateObject();
	int fd, err = 0;

	if (!o)
		return -ENOMEM;
	cJSON_AddStringToObject(o, "tcti", t->tcti);
	cJSON_AddBoolToObject(o, "embedded", t->embedded);
	cJSON_AddNumberToObject(o, "pcr", t->pcr);
	cJSON_AddNumberToObject(o, "nv_index", t->nv_index);
	cJSON_AddStringToObject(o, "state_dir", t->state_dir);
	text = cJSON_Print(o);
	cJSON_Delete(o);
	if (!text)
		return -ENOMEM;
	snprintf(path, sizeof(path), "%s/%s", t->run_dir, TPM_CONF_FILE);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text) ||
	    rename(tmp, path))
		err = -errno;
	if (fd >= 0)
		close(fd);
	free(text);
	return err;
}

/* The seed keys the record MACs.  First start on this TPM: define the
 * index and fill it from getrandom. */
static int load_seed(struct tpm *t, char *why, size_t len)
{
	uint8_t fresh[TPM_NV_SEED_LEN];
	int err;

	err = nv_read(t->tcti, t->nv_index, t->seed, sizeof(t->seed), why, len);
	if (!err)
		return 0;
	if (getrandom(fresh, sizeof(fresh), 0) != sizeof(fresh))
		return -errno;
	err = nv_define(t->tcti, t->nv_index, sizeof(fresh), why, len);
	if (!err)
		err = nv_write(t->tcti, t->nv_index, fresh, sizeof(fresh), why, len);
	if (!err)
		err = nv_read(t->tcti, t->nv_index, t->seed, sizeof(t->seed), why, len);
	memset(fresh, 0, sizeof(fresh));
	if (!err)
		log_info("tpm: defined NV index 0x%08x with a new seed", t->nv_index);
	return err;
}

/*
 * Compare the log with the PCR and decide what is left to extend.  The log
 * may be ahead (a crash after fdatasync, before the extend): extend those
 * records, but only if their MACs hold, or whoever can write the run dir
 * could have the agent extend records it never wrote.
 */
static int reconcile(struct tpm *t, unsigned int banks)
{
	uint8_t val[TPM_NR_BANKS][TPM_MAX_DIGEST_LEN], zero[TPM_NR_BANKS][TPM_MAX_DIGEST_LEN];
	char why[300], msg[400];
	long k;
	int err;

	err = pcr_read(t->tcti, t->pcr, banks, val, why, sizeof(why));
	if (err) {
		fail(t, ST_UNAVAILABLE, why);
		return err;
	}
	memset(zero, 0, sizeof(zero));
	k = tpm_log_matching_prefix(&t->log, banks, val);
	pthread_mutex_lock(&t->mu);
	if (k < 0) {
		snprintf(msg, sizeof(msg),
			 "PCR %u matches no prefix of %.200s (%zu records): extended outside "
			 "RayOS or the log was changed; new records still get extended",
			 t->pcr, t->log_path, t->log.nr);
		t->extended = t->log.nr;
		set_state(t, ST_DIVERGED, msg);
	} else if ((size_t)k < t->extended) {
		snprintf(msg, sizeof(msg), "PCR %u went back to record %ld of %zu extended: "
			 "the TPM was reset", t->pcr, k, t->extended);
		t->extended = t->log.nr;
		set_state(t, ST_DIVERGED, msg);
	} else {
		t->extended = (size_t)k;
		if (t->state != ST_DIVERGED)
			set_state(t, ST_READY, NULL);
	}
	pthread_mutex_unlock(&t->mu);
	t->need_reconcile = false;
	return 0;
}

static int open_log(struct tpm *t, unsigned int banks)
{
	uint8_t val[TPM_NR_BANKS][TPM_MAX_DIGEST_LEN], zero[TPM_NR_BANKS][TPM_MAX_DIGEST_LEN];
	char why[512], prev[PATH_MAX + 8];
	int err;

	err = tpm_log_load(t->log_path, &t->log);
	if (err) {
		snprintf(why, sizeof(why), "cannot read %.200s: %s", t->log_path, strerror(-err));
		fail(t, ST_UNAVAILABLE, why);
		return err;
	}
	err = pcr_read(t->tcti, t->pcr, banks, val, why, sizeof(why));
	if (err) {
		fail(t, ST_UNAVAILABLE, why);
		tpm_log_free(&t->log);
		return err;
	}
	memset(zero, 0, sizeof(zero));
	if (t->log.nr && !memcmp(val, zero, sizeof(val))) {
		/* A reset TPM (reboot, new embedded swtpm) with an old log: the
		 * old log describes a PCR that no longer exists. */
		snprintf(prev, sizeof(prev), "%s.prev", t->log_path);
		log_info("tpm: PCR %u is zero: starting a new event log (old one: %s)",
			 t->pcr, prev);
		if (rename(t->log_path, prev))
			log_warn("tpm: cannot rename %s: %s", t->log_path, strerror(errno));
		tpm_log_free(&t->log);
	}
	t->log_fd = open(t->log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (t->log_fd < 0 ||
	    (t->log.torn_bytes && ftruncate(t->log_fd, t->log.good_len))) {
		err = -errno;
		snprintf(why, sizeof(why), "cannot open %.200s: %s", t->log_path, strerror(errno));
		fail(t, ST_UNAVAILABLE, why);
		return err;
	}
	if (t->log.torn_bytes)
		log_warn("tpm: dropped a torn last line (%zu bytes) from %s", t->log.torn_bytes,
			 t->log_path);
	/* MACs of records the PCR does not have yet: refuse to extend forgeries. */
	for (size_t i = 0; i < t->log.nr; i++) {
		char rwhy[160];

		if (tpm_log_check_record(&t->log.recs[i], banks, t->mac ? t->seed : NULL,
					 sizeof(t->seed), rwhy, sizeof(rwhy))) {
			snprintf(why, sizeof(why), "record %zu of %.200s: %s; not extending it",
				 i, t->log_path, rwhy);
			pthread_mutex_lock(&t->mu);
			t->records = t->extended = t->log.nr;
			set_state(t, ST_DIVERGED, why);
			pthread_mutex_unlock(&t->mu);
			return 0;
		}
	}
	pthread_mutex_lock(&t->mu);
	t->records = t->log.nr;
	t->extended = 0;
	pthread_mutex_unlock(&t->mu);
	return reconcile(t, banks);
}

/* Everything up to the first record: TPM reachable, banks, seed, log.
 * Returns 0 when measurements can be recorded. */
static int worker_init(struct tpm *t)
{
	char why[300];
	unsigned int banks;
	int err;

	if (t->embedded) {
		pthread_mutex_lock(&t->mu);
		bool running = t->swtpm_pid > 0;
		pthread_mutex_unlock(&t->mu);
		if (!running && (err = swtpm_start(t, why, sizeof(why)))) {
			fail(t, ST_UNAVAILABLE, why);
			return err;
		}
	}
	err = get_banks(t->tcti, t->pcr, &banks, why, sizeof(why));
	if (err) {
		fail(t, ST_UNAVAILABLE, why);
		return err;
	}
	err = load_seed(t, why, sizeof(why));
	if (err)
		log_warn("tpm: no NV seed at 0x%08x (%s): records carry no MAC", t->nv_index, why);
	pthread_mutex_lock(&t->mu);
	t->banks = banks;
	t->mac = !err;
	pthread_mutex_unlock(&t->mu);
	err = write_conf(t);
	if (err)
		log_warn("tpm: cannot write %s/%s: %s", t->run_dir, TPM_CONF_FILE, strerror(-err));
	return open_log(t, banks);
}

/* Append the queued items (in order) and fdatasync once for the batch. */
static int append_batch(struct tpm *t, struct item **batch)
{
	unsigned int banks = t->banks;	/* fixed after init; worker writes it */
	char why[300];
	int err = 0;

	while (*batch) {
		struct item *it = *batch;
		struct tpm_log_rec r = { 0 };
		char *line = NULL;

		err = tpm_log_format(t->log.nr, t->pcr, banks, it->content_type, it->content,
				     t->mac ? t->seed : NULL, sizeof(t->seed), &line, r.digest);
		if (err == -EINVAL) {
			/* cannot happen for content printed by tpm_measure */
			log_err("tpm: dropping a %s measurement: not JSON", it->content_type);
			err = 0;
			goto next;
		}
		if (!err) {
			const char *const lines[] = { line };

			err = tpm_log_append(t->log_fd, lines[0]);
		}
		if (err) {
			free(line);
			snprintf(why, sizeof(why), "cannot append to %.200s: %s", t->log_path,
				 strerror(-err));
			fail(t, ST_UNAVAILABLE, why);
			return err;	/* the item stays first in the batch */
		}
		r.recnum = t->log.nr;
		r.pcr = t->pcr;
		r.banks = banks;
		r.line = line;
		snprintf(r.content_type, sizeof(r.content_type), "%s", it->content_type);
		err = tpm_log_push(&t->log, &r);
		if (err) {
			free(line);
			return err;
		}
		pthread_mutex_lock(&t->mu);
		t->records = t->log.nr;
		t->in_batch--;
		pthread_mutex_unlock(&t->mu);
next:
		if (err == 0 && !line) {
			pthread_mutex_lock(&t->mu);
			t->in_batch--;
			pthread_mutex_unlock(&t->mu);
		}
		*batch = it->next;
		free(it->content);
		free(it);
	}
	return err;
}

/* Extend every record not in the PCR yet; stop at the first failure. */
static int extend_pending(struct tpm *t)
{
	char why[300];
	size_t i;
	int err;

	if (t->need_reconcile) {
		err = reconcile(t, t->banks);
		if (err)
			return err;
	}
	for (;;) {
		pthread_mutex_lock(&t->mu);
		i = t->extended;
		bool stop = t->stop;
		pthread_mutex_unlock(&t->mu);
		if (i >= t->log.nr || stop)
			return 0;
		err = pcr_extend(t->tcti, t->timeout_ms, t->pcr, t->banks,
				 (const uint8_t(*)[TPM_MAX_DIGEST_LEN])t->log.recs[i].digest,
				 why, sizeof(why));
		if (err) {
			/* The extend may have happened anyway (timeout): read the
			 * PCR before trying again. */
			t->need_reconcile = true;
			fail(t, ST_UNAVAILABLE, why);
			return err;
		}
		pthread_mutex_lock(&t->mu);
		t->extended = i + 1;
		if (t->state == ST_UNAVAILABLE || t->state == ST_STARTING)
			set_state(t, ST_READY, NULL);
		pthread_mutex_unlock(&t->mu);
	}
}

static void backoff(struct tpm *t, long long *retry_at)
{
	t->retry_ms = t->retry_ms ? t->retry_ms * 2 : RETRY_MIN_MS;
	if (t->retry_ms > RETRY_MAX_MS)
		t->retry_ms = RETRY_MAX_MS;
	*retry_at = now_ms() + t->retry_ms;
}

/* Move the queue behind batch (under t->mu): the batch keeps its order
 * behind any items left from a failed append. */
static void take_queue(struct tpm *t, struct item **batch)
{
	struct item **tailp = batch;

	if (!t->head)
		return;
	while (*tailp)
		tailp = &(*tailp)->next;
	*tailp = t->head;
	t->head = t->tail = NULL;
	t->in_batch += t->nr_queued;
	t->nr_queued = 0;
}

static void *worker(void *arg)
{
	struct tpm *t = arg;
	struct item *batch = NULL;
	bool inited = false;
	long long retry_at = 0;

	for (;;) {
		bool stop, extend_now = false;

		pthread_mutex_lock(&t->mu);
		for (;;) {
			bool retry_due = !retry_at || now_ms() >= retry_at;

			stop = t->stop;
			extend_now = inited && t->extended < t->log.nr && retry_due;
			if (stop || (!inited && retry_due) || (inited && t->head) || extend_now)
				break;
			if (retry_at) {
				struct timespec ts;
				long long ms = retry_at - now_ms();

				clock_gettime(CLOCK_REALTIME, &ts);
				ts.tv_sec += ms / 1000;
				ts.tv_nsec += (ms % 1000) * 1000000;
				if (ts.tv_nsec >= 1000000000) {
					ts.tv_sec++;
					ts.tv_nsec -= 1000000000;
				}
				pthread_cond_timedwait(&t->cv, &t->mu, &ts);
			} else {
				pthread_cond_wait(&t->cv, &t->mu);
			}
		}
		if (inited)
			take_queue(t, &batch);
		pthread_mutex_unlock(&t->mu);

		if (!inited) {
			if (stop)
				break;
			if (worker_init(t)) {
				backoff(t, &retry_at);
				if (t->log_fd >= 0) {
					close(t->log_fd);
					t->log_fd = -1;
				}
				tpm_log_free(&t->log);
				continue;
			}
			inited = true;
			retry_at = 0;
			t->retry_ms = 0;
			continue;
		}
		if (stop)
			break;
		/* Recording never waits for the TPM: append first, even while
		 * the TPM is away, so the log keeps the order of events. */
		if (append_batch(t, &batch)) {
			backoff(t, &retry_at);
			continue;
		}
		if (!retry_at || now_ms() >= retry_at || extend_now) {
			if (extend_pending(t)) {
				backoff(t, &retry_at);
			} else {
				retry_at = 0;
				t->retry_ms = 0;
			}
		}
	}
	/* Stopping: whatever is still queued goes to the log, unextended; the
	 * next start extends it after checking its MAC. */
	if (inited) {
		pthread_mutex_lock(&t->mu);
		take_queue(t, &batch);
		pthread_mutex_unlock(&t->mu);
		append_batch(t, &batch);
	}
	while (batch) {
		struct item *next = batch->next;

		free(batch->content);
		free(batch);
		batch = next;
	}
	return NULL;
}

/* ---- the agent side ---- */

static void on_worker_event(struct ev_source *src, uint32_t events)
{
	struct tpm *t = (struct tpm *)((char *)src - offsetof(struct tpm, ev));
	char err[sizeof(t->last_error)];
	enum tpm_state st;
	uint64_t n;

	(void)events;
	if (read(src->fd, &n, sizeof(n)) < 0)
		return;
	pthread_mutex_lock(&t->mu);
	st = t->state;
	memcpy(err, t->last_error, sizeof(err));
	bool changed = st != t->reported;
	t->reported = st;
	pthread_mutex_unlock(&t->mu);
	if (!changed)
		return;
	if (st == ST_READY)
		log_info("tpm: ready (%s, PCR %u)", t->tcti, t->pcr);
	else
		log_warn("tpm: %s: %s (measurements keep queueing; enforcement is not "
			 "affected)", state_names[st], err);
}

static bool pcr_reserved(uint32_t pcr, const char **owner)
{
	if (pcr <= 7)
		*owner = "firmware (UEFI event log)";
	else if (pcr <= 9)
		*owner = "GRUB and the kernel's initrd measurements";
	else if (pcr == 10)
		*owner = "IMA";
	else if (pcr <= 15)
		*owner = "systemd (systemd-stub, pcrextend, pcrlock)";
	else
		return false;
	return true;
}

static int pick_tcti(struct tpm *t, const char *tcti)
{
	const char *env = getenv("RAYOS_TCTI");
	char dir[PATH_MAX], sock[PATH_MAX], pidf[PATH_MAX], logf[PATH_MAX];
	int err;

	if (!tcti || !*tcti)
		tcti = env && *env ? env : NULL;
	if (!tcti && !access("/dev/tpmrm0", R_OK | W_OK))
		tcti = "device:/dev/tpmrm0";
	if (tcti) {
		snprintf(t->tcti, sizeof(t->tcti), "%s", tcti);
		return 0;
	}
	err = swtpm_paths(t->state_dir, dir, sock, pidf, logf);
	if (err) {
		log_err("tpm: state dir %s is too long for the embedded swtpm's socket; set "
			"RAYOS_TCTI", t->state_dir);
		return err;
	}
	t->embedded = true;
	snprintf(t->tcti, sizeof(t->tcti), "swtpm:path=%s", sock);
	return 0;
}

int tpm_open(const struct tpm_opts *opts, int epfd, struct tpm **out)
{
	const char *owner;
	struct tpm *t;
	int err;

	*out = NULL;
	if (!opts || !opts->state_dir || !opts->run_dir)
		return -EINVAL;
	if (opts->pcr > 23) {
		log_err("tpm: PCR %u does not exist (0-23); use 16-23, default 23", opts->pcr);
		return -EINVAL;
	}
	if (opts->pcr && pcr_reserved(opts->pcr, &owner)) {
		log_err("tpm: PCR %u belongs to %s: extending it breaks their verifiers' "
			"replay; use 16-23 (default 23)", opts->pcr, owner);
		return -EINVAL;
	}
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->ev.fd = -1;
	t->log_fd = -1;
	t->epfd = epfd;
	t->pcr = opts->pcr ? opts->pcr : TPM_PCR_DEFAULT;
	t->nv_index = opts->nv_index ? opts->nv_index : TPM_NV_SEED_INDEX;
	t->timeout_ms = opts->tool_timeout_ms > 0 ? opts->tool_timeout_ms : TOOL_TIMEOUT_MS;
	t->state = t->reported = ST_STARTING;
	pthread_mutex_init(&t->mu, NULL);
	pthread_cond_init(&t->cv, NULL);
	if (snprintf(t->state_dir, sizeof(t->state_dir), "%s", opts->state_dir) >=
		    (int)sizeof(t->state_dir) ||
	    snprintf(t->run_dir, sizeof(t->run_dir), "%s", opts->run_dir) >=
		    (int)sizeof(t->run_dir) ||
	    snprintf(t->log_path, sizeof(t->log_path), "%s/%s", opts->run_dir,
		     TPM_LOG_FILE) >= PATH_MAX) {
		err = -ENAMETOOLONG;
		goto fail;
	}
	err = pick_tcti(t, opts->tcti);
	if (err)
		goto fail;
	if (epfd >= 0) {
		t->ev.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		t->ev.handler = on_worker_event;
		if (t->ev.fd < 0) {
			err = -errno;
			goto fail;
		}
		err = ev_add(epfd, &t->ev, EPOLLIN);
		if (err)
			goto fail;
	}
	err = -pthread_create(&t->thread, NULL, worker, t);
	if (err)
		goto fail;
	t->thread_started = true;
	log_info("tpm: measuring into PCR %u via %s%s", t->pcr, t->tcti,
		 t->embedded ? " (embedded swtpm: no hardware TPM found)" : "");
	*out = t;
	return 0;
fail:
	tpm_close(t);
	return err;
}

int tpm_measure(struct tpm *t, const char *content_type, const cJSON *content)
{
	struct item *it;
	int err = 0;

	if (!t || !content_type || !content)
		return -EINVAL;
	it = calloc(1, sizeof(*it));
	if (!it)
		return -ENOMEM;
	snprintf(it->content_type, sizeof(it->content_type), "%s", content_type);
	it->content = cJSON_PrintUnformatted(content);
	if (!it->content) {
		free(it);
		return -ENOMEM;
	}
	pthread_mutex_lock(&t->mu);
	if (t->nr_queued >= QUEUE_MAX) {
		snprintf(t->last_error, sizeof(t->last_error),
			 "measurement queue full (%d): dropped a %s measurement", QUEUE_MAX,
			 content_type);
		t->failed++;
		err = -ENOSPC;
	} else {
		if (t->tail)
			t->tail->next = it;
		else
			t->head = it;
		t->tail = it;
		t->nr_queued++;
		it = NULL;
		pthread_cond_signal(&t->cv);
	}
	pthread_mutex_unlock(&t->mu);
	if (it) {
		free(it->content);
		free(it);
	}
	return err;
}

int tpm_measure_file(struct tpm *t, const char *content_type, const char *path,
		     const cJSON *extra)
{
	uint8_t buf[65536], dig[SHA256_DIGEST_LEN];
	char hex[2 * SHA256_DIGEST_LEN + 1];
	struct sha256_ctx c;
	cJSON *o = NULL, *it;
	ssize_t n;
	int fd, err;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	sha256_init(&c);
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		sha256_update(&c, buf, (size_t)n);
	err = n < 0 ? -errno : 0;
	close(fd);
	sha256_final(&c, dig);
	if (err)
		return err;
	tpm_hex(dig, sizeof(dig), hex);
	o = extra ? cJSON_Duplicate(extra, true) : cJSON_CreateObject();
	if (!o)
		return -ENOMEM;
	for (it = cJSON_GetObjectItem(o, "path"); it; it = NULL)
		cJSON_DeleteItemFromObject(o, "path");
	cJSON_AddStringToObject(o, "path", path);
	cJSON_AddStringToObject(o, "sha256", hex);
	err = tpm_measure(t, content_type, o);
	cJSON_Delete(o);
	return err;
}

cJSON *tpm_status_json(struct tpm *t)
{
	cJSON *o = cJSON_CreateObject(), *banks;

	if (!o || !t)
		return o;
	pthread_mutex_lock(&t->mu);
	cJSON_AddStringToObject(o, "tcti", t->tcti);
	cJSON_AddBoolToObject(o, "embedded", t->embedded);
	if (t->embedded)
		cJSON_AddNumberToObject(o, "swtpm_pid", t->swtpm_pid);
	cJSON_AddNumberToObject(o, "pcr", t->pcr);
	banks = cJSON_AddArrayToObject(o, "banks");
	for (int b = 0; banks && b < TPM_NR_BANKS; b++)
		if (t->banks & (1u << b))
			cJSON_AddItemToArray(banks, cJSON_CreateString(tpm_bank_name(b)));
	cJSON_AddStringToObject(o, "state", state_names[t->state]);
	cJSON_AddNumberToObject(o, "records", (double)t->records);
	cJSON_AddNumberToObject(o, "extended", (double)t->extended);
	cJSON_AddNumberToObject(o, "pending",
				(double)(t->nr_queued + t->in_batch + (t->records - t->extended)));
	cJSON_AddNumberToObject(o, "failed", (double)t->failed);
	cJSON_AddStringToObject(o, "last_error", t->last_error);
	cJSON_AddBoolToObject(o, "mac", t->mac);
	cJSON_AddStringToObject(o, "log", t->log_path);
	pthread_mutex_unlock(&t->mu);
	return o;
}

int tpm_flush(struct tpm *t, int timeout_ms)
{
	long long deadline = now_ms() + timeout_ms;

	for (;;) {
		pthread_mutex_lock(&t->mu);
		bool idle = !t->nr_queued && !t->in_batch && t->records == t->extended &&
			    t->state != ST_STARTING;
		pthread_mutex_unlock(&t->mu);
		if (idle)
			return 0;
		if (now_ms() >= deadline)
			return -ETIMEDOUT;
		usleep(2000);
	}
}

void tpm_close(struct tpm *t)
{
	if (!t)
		return;
	if (t->thread_started) {
		pthread_mutex_lock(&t->mu);
		t->stop = true;
		pthread_cond_signal(&t->cv);
		pthread_mutex_unlock(&t->mu);
		pthread_join(t->thread, NULL);
	}
	if (t->embedded)
		swtpm_stop(t);
	if (t->ev.fd >= 0) {
		if (t->epfd >= 0)
			ev_del(t->epfd, &t->ev);
		close(t->ev.fd);
	}
	if (t->log_fd >= 0)
		close(t->log_fd);
	tpm_log_free(&t->log);
	while (t->head) {
		struct item *next = t->head->next;

		free(t->head->content);
		free(t->head);
		t->head = next;
	}
	memset(t->seed, 0, sizeof(t->seed));
	pthread_cond_destroy(&t->cv);
	pthread_mutex_destroy(&t->mu);
	free(t);
}

/* ---- CLI operations ---- */

struct cli_conf {
	char tcti[PATH_MAX + 32];
	uint32_t pcr, nv_index;
};

/* RUN_DIR/tpm.json as the agent wrote it; $RAYOS_TCTI overrides. */
static int read_conf(const char *run_dir, struct cli_conf *c)
{
	char path[PATH_MAX], buf[8192];
	const char *env = getenv("RAYOS_TCTI");
	cJSON *o, *it;
	ssize_t n;
	int fd;

	memset(c, 0, sizeof(*c));
	c->pcr = TPM_PCR_DEFAULT;
	c->nv_index = TPM_NV_SEED_INDEX;
	snprintf(path, sizeof(path), "%s/%s", run_dir, TPM_CONF_FILE);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		buf[n > 0 ? n : 0] = '\0';
		o = cJSON_Parse(buf);
		it = cJSON_GetObjectItem(o, "tcti");
		if (cJSON_IsString(it))
			snprintf(c->tcti, sizeof(c->tcti), "%s", it->valuestring);
		it = cJSON_GetObjectItem(o, "pcr");
		if (cJSON_IsNumber(it))
			c->pcr = (uint32_t)it->valueint;
		it = cJSON_GetObjectItem(o, "nv_index");
		if (cJSON_IsNumber(it))
			c->nv_index = (uint32_t)it->valuedouble;
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

int tpm_verify(const char *run_dir, char *report, size_t len)
{
	uint8_t val[TPM_NR_BANKS][TPM_MAX_DIGEST_LEN], seed[TPM_NV_SEED_LEN];
	char path[PATH_MAX], why[300];
	struct tpm_log log = { 0 };
	struct cli_conf c;
	unsigned int banks;
	bool have_seed;
	int err;

	snprintf(report, len, "?");
	err = read_conf(run_dir, &c);
	if (err) {
		snprintf(report, len, "no TPM to verify against (see above)");
		return err;
	}
	err = get_banks(c.tcti, c.pcr, &banks, why, sizeof(why));
	if (!err)
		err = pcr_read(c.tcti, c.pcr, banks, val, why, sizeof(why));
	if (err) {
		snprintf(report, len, "cannot read PCR %u: %s", c.pcr, why);
		return err;
	}
	/* The PCR first, then the log: a record appended in between shows
	 * as "not in the PCR yet", never as a false mismatch in the past. */
	snprintf(path, sizeof(path), "%s/%s", run_dir, TPM_LOG_FILE);
	err = tpm_log_load(path, &log);
	if (err) {
		snprintf(report, len, "cannot read %.200s: %s", path, strerror(-err));
		return err;
	}
	have_seed = !nv_read(c.tcti, c.nv_index, seed, sizeof(seed), why, sizeof(why));
	err = tpm_log_verify(&log, c.pcr, banks, (const uint8_t(*)[TPM_MAX_DIGEST_LEN])val,
			     have_seed ? seed : NULL, sizeof(seed), report, len);
	if (!err && !have_seed) {
		size_t used = strlen(report);

		snprintf(report + used, len - used, " (MACs not checked: %s)", why);
	}
	memset(seed, 0, sizeof(seed));
	tpm_log_free(&log);
	return err;
}

static int valid_nonce(const char *nonce_hex)
{
	size_t n = nonce_hex ? strlen(nonce_hex) : 0;

	if (!n || n % 2 || n > 128 || strspn(nonce_hex, "0123456789abcdefABCDEF") != n)
		return -EINVAL;
	return 0;
}

/* The AK: a restricted ECDSA P-256 signing primary under the owner
 * hierarchy, made persistent once.  createprimary leaves a transient
 * object behind on a TPM without a resource manager: flush it. */
static int ensure_ak(const char *tcti, const char *ctx_path, char *why, size_t len)
{
	char handle[16];
	const char *readpub[] = { "tpm2_readpublic", "-c", handle, NULL };
	const char *create[] = { "tpm2_createprimary", "-C", "o", "-G", "ecc256:ecdsa-sha256:null",
				 "-a", "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|"
				 "restricted|sign", "-c", ctx_path, NULL };
	const char *evict[] = { "tpm2_evictcontrol", "-C", "o", "-c", ctx_path, handle, NULL };
	const char *flush[] = { "tpm2_flushcontext", "-t", NULL };
	int err;

	snprintf(handle, sizeof(handle), "0x%08x", TPM_AK_HANDLE);
	if (!run_tool(tcti, readpub, 0, NULL, 0, NULL, NULL, 0))
		return 0;
	err = run_tool(tcti, create, 0, NULL, 0, NULL, why, len);
	if (!err)
		err = run_tool(tcti, evict, 0, NULL, 0, NULL, why, len);
	run_tool(tcti, flush, 0, NULL, 0, NULL, NULL, 0);
	unlink(ctx_path);
	if (!err)
		log_info("tpm: created attestation key 0x%08x", TPM_AK_HANDLE);
	return err;
}

int tpm_quote(const char *run_dir, const char *state_dir, const char *nonce_hex,
	      const char *out_dir, char *report, size_t len)
{
	uint8_t val[TPM_NR_BANKS][TPM_MAX_DIGEST_LEN];
	char msg[PATH_MAX], sig[PATH_MAX], pcrs[PATH_MAX], pem[PATH_MAX], ctx[PATH_MAX];
	char lock[PATH_MAX], sel[128], handle[16], why[300], path[PATH_MAX];
	const char *quote[] = { "tpm2_quote", "-c", handle, "-l", sel, "-q", nonce_hex,
				"-m", msg, "-s", sig, "-o", pcrs, "-g", "sha256", NULL };
	const char *readpub[] = { "tpm2_readpublic", "-c", handle, "-f", "pem", "-o", pem, NULL };
	struct tpm_log log = { 0 };
	struct cli_conf c;
	cJSON *meta = NULL, *arr;
	char *out = NULL, *text = NULL;
	unsigned int banks;
	int lock_fd = -1, err;
	long k;

	snprintf(report, len, "?");
	if (valid_nonce(nonce_hex)) {
		snprintf(report, len, "--nonce must be 2 to 128 hex digits, an even number");
		return -EINVAL;
	}
	err = read_conf(run_dir, &c);
	if (err) {
		snprintf(report, len, "no TPM to quote (see above)");
		return err;
	}
	err = mkdir_p(out_dir, 0755);
	if (!err)
		err = mkdir_p(state_dir, 0700);
	if (err) {
		snprintf(report, len, "cannot create %.200s: %s", out_dir, strerror(-err));
		return err;
	}
	snprintf(handle, sizeof(handle), "0x%08x", TPM_AK_HANDLE);
	snprintf(msg, sizeof(msg), "%.3000s/quote.msg", out_dir);
	snprintf(sig, sizeof(sig), "%.3000s/quote.sig", out_dir);
	snprintf(pcrs, sizeof(pcrs), "%.3000s/quote.pcrs", out_dir);
	snprintf(pem, sizeof(pem), "%.3000s/ak.pub.pem", out_dir);
	snprintf(ctx, sizeof(ctx), "%.3000s/ak.ctx.tmp", state_dir);
	snprintf(lock, sizeof(lock), "%.3000s/tpm.lock", state_dir);
	/* Two CLIs quoting at once on a raw swtpm would flush each other's
	 * transient AK: one at a time. */
	lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lock_fd < 0 || flock(lock_fd, LOCK_EX)) {
		err = -errno;
		snprintf(report, len, "cannot lock %.200s: %s", lock, strerror(errno));
		goto out;
	}
	err = get_banks(c.tcti, c.pcr, &banks, why, sizeof(why));
	if (!err)
		err = ensure_ak(c.tcti, ctx, why, sizeof(why));
	if (!err)
		err = run_tool(c.tcti, readpub, 0, NULL, 0, NULL, why, sizeof(why));
	pcr_selection(c.pcr, banks, sel, sizeof(sel));
	if (!err)
		err = run_tool(c.tcti, quote, QUOTE_TIMEOUT_MS, NULL, 0, &out, why, sizeof(why));
	if (!err && parse_pcr_yaml(out, c.pcr, banks, val)) {
		snprintf(why, sizeof(why), "tpm2_quote: no PCR values in its output");
		err = -EBADMSG;
	}
	if (err) {
		snprintf(report, len, "%s", why);
		goto out;
	}
	/* The log after the quote, cut at the record the quoted PCR reached:
	 * records appended since are not in this quote. */
	snprintf(path, sizeof(path), "%s/%s", run_dir, TPM_LOG_FILE);
	err = tpm_log_load(path, &log);
	if (err) {
		snprintf(report, len, "cannot read %.200s: %s", path, strerror(-err));
		goto out;
	}
	k = tpm_log_matching_prefix(&log, banks, (const uint8_t(*)[TPM_MAX_DIGEST_LEN])val);
	{
		size_t keep = k >= 0 ? (size_t)k : log.nr, total = 0, off = 0;
		char *buf;

		for (size_t i = 0; i < keep; i++)
			total += strlen(log.recs[i].line) + 1;
		buf = malloc(total + 1);
		if (!buf) {
			err = -ENOMEM;
			goto out;
		}
		for (size_t i = 0; i < keep; i++)
			off += (size_t)sprintf(buf + off, "%s\n", log.recs[i].line);
		snprintf(path, sizeof(path), "%.3000s/eventlog.jsonl", out_dir);
		err = file_write_atomic(path, buf, off, 0644);
		free(buf);
		if (err) {
			snprintf(report, len, "cannot write %.200s: %s", path, strerror(-err));
			goto out;
		}
		meta = cJSON_CreateObject();
		cJSON_AddNumberToObject(meta, "pcr", c.pcr);
		arr = cJSON_AddArrayToObject(meta, "banks");
		for (int b = 0; b < TPM_NR_BANKS; b++) {
			char hex[2 * TPM_MAX_DIGEST_LEN + 1];

			if (!(banks & (1u << b)))
				continue;
			cJSON_AddItemToArray(arr, cJSON_CreateString(tpm_bank_name(b)));
			tpm_hex(val[b], tpm_bank_len(b), hex);
			cJSON_AddStringToObject(meta, tpm_bank_name(b), hex);
		}
		cJSON_AddNumberToObject(meta, "records", (double)keep);
		cJSON_AddStringToObject(meta, "nonce", nonce_hex);
		cJSON_AddNumberToObject(meta, "ak_handle", TPM_AK_HANDLE);
		text = cJSON_Print(meta);
		snprintf(path, sizeof(path), "%.3000s/quote.json", out_dir);
		err = text ? file_write_atomic(path, text, strlen(text), 0644) : -ENOMEM;
		if (err) {
			snprintf(report, len, "cannot write %.200s: %s", path, strerror(-err));
			goto out;
		}
		snprintf(report, len, "quoted PCR %u (%s) with %zu log records into %.200s%s",
			 c.pcr, sel, keep, out_dir,
			 k < 0 ? "; the log does NOT replay to the quoted PCR" : "");
	}
out:
	cJSON_Delete(meta);
	free(text);
	free(out);
	tpm_log_free(&log);
	if (lock_fd >= 0)
		close(lock_fd);
	return err;
}

int tpm_verify_quote(const char *dir, const char *nonce_hex, char *report, size_t len)
{
	uint8_t val[TPM_NR_BANKS][TPM_MAX_DIGEST_LEN];
	char msg[PATH_MAX], sig[PATH_MAX], pcrs[PATH_MAX], pem[PATH_MAX], path[PATH_MAX];
	char why[300], buf[8192];
	const char *check[] = { "tpm2_checkquote", "-u", pem, "-m", msg, "-s", sig, "-f", pcrs,
				"-g", "sha256", "-q", nonce_hex, NULL };
	struct tpm_log log = { 0 };
	unsigned int banks = 0;
	uint32_t pcr = TPM_PCR_DEFAULT;
	char *out = NULL;
	cJSON *meta = NULL, *it;
	ssize_t n;
	int fd, err;

	snprintf(report, len, "?");
	if (valid_nonce(nonce_hex)) {
		snprintf(report, len, "--nonce must be 2 to 128 hex digits, an even number");
		return -EINVAL;
	}
	snprintf(path, sizeof(path), "%.3000s/quote.json", dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		err = -errno;
		snprintf(report, len, "cannot read %.200s: %s", path, strerror(errno));
		return err;
	}
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	meta = cJSON_Parse(buf);
	it = cJSON_GetObjectItem(meta, "pcr");
	if (cJSON_IsNumber(it))
		pcr = (uint32_t)it->valueint;
	cJSON_ArrayForEach(it, cJSON_GetObjectItem(meta, "banks")) {
		int b = cJSON_IsString(it) ? tpm_bank_from_name(it->valuestring) : -1;

		if (b >= 0)
			banks |= 1u << b;
	}
	cJSON_Delete(meta);
	if (!banks) {
		snprintf(report, len, "%.200s names no PCR bank", path);
		return -EBADMSG;
	}
	snprintf(msg, sizeof(msg), "%.3000s/quote.msg", dir);
	snprintf(sig, sizeof(sig), "%.3000s/quote.sig", dir);
	snprintf(pcrs, sizeof(pcrs), "%.3000s/quote.pcrs", dir);
	snprintf(pem, sizeof(pem), "%.3000s/ak.pub.pem", dir);
	/* Signature, nonce, and that quote.pcrs hashes to the signed PCR
	 * digest; the values it prints are then the quoted ones. */
	err = run_tool(NULL, check, 0, NULL, 0, &out, why, sizeof(why));
	if (err) {
		snprintf(report, len, "quote does not verify (wrong nonce, signature or PCR "
			 "values): %s", why);
		goto out;
	}
	err = parse_pcr_yaml(out, pcr, banks, val);
	if (err) {
		snprintf(report, len, "tpm2_checkquote printed no PCR %u values", pcr);
		goto out;
	}
	snprintf(path, sizeof(path), "%.3000s/eventlog.jsonl", dir);
	err = tpm_log_load(path, &log);
	if (err) {
		snprintf(report, len, "cannot read %.200s: %s", path, strerror(-err));
		goto out;
	}
	/* No MAC key here: a remote verifier has only the quote. */
	err = tpm_log_verify(&log, pcr, banks, (const uint8_t(*)[TPM_MAX_DIGEST_LEN])val,
			     NULL, 0, report, len);
	if (!err) {
		size_t used = strlen(report);

		snprintf(report + used, len - used, "; signature and nonce OK");
	}
out:
	free(out);
	tpm_log_free(&log);
	return err;
}

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
	cJSON_AddNumberToObject(o, "pcr", log.recs[found].pcr);
	cJSON_AddItemToObject(o, "launch", cJSON_Duplicate(log.recs[found].content, true));
	p = cJSON_AddObjectToObject(o, "pcrs");
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

int tpm_nv_define(const char *run_dir, uint32_t index, size_t size)
{
	struct cli_conf c;
	char why[300];
	int err = read_conf(run_dir, &c);

	if (err)
		return err;
	err = nv_define(c.tcti, index ? index : c.nv_index, size, why, sizeof(why));
	if (err)
		log_err("tpm: %s", why);
	return err;
}

int tpm_nv_write(const char *run_dir, uint32_t index, const void *data, size_t len)
{
	struct cli_conf c;
	char why[300];
	int err = read_conf(run_dir, &c);

	if (err)
		return err;
	err = nv_write(c.tcti, index ? index : c.nv_index, data, len, why, sizeof(why));
	if (err)
		log_err("tpm: %s", why);
	return err;
}

int tpm_nv_read(const char *run_dir, uint32_t index, void *buf, size_t len)
{
	struct cli_conf c;
	char why[300];
	int err = read_conf(run_dir, &c);

	if (err)
		return err;
	err = nv_read(c.tcti, index ? index : c.nv_index, buf, len, why, sizeof(why));
	if (err)
		log_err("tpm: %s", why);
	return err;
}
