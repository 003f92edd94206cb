// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * TPM measured launch, the agent's side: the worker thread that records
 * and extends measurements in order, and the embedded swtpm.  Provisioning
 * is agent/tpm/tpm_setup.c, the CLI operations agent/tpm/tpm_cli.c.
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

#include "agent/core/digest.h"
#include "agent/core/evloop.h"
#include "agent/core/log.h"
#include "agent/core/spawn.h"
#include "agent/core/util.h"
#include "agent/tpm/tpm.h"
#include "agent/tpm/tpm_attest.h"
#include "agent/tpm/tpm_esys.h"
#include "agent/tpm/tpm_log.h"
#include "agent/tpm/tpm_setup.h"

#define TOOL_TIMEOUT_MS		10000
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
	uint32_t nv_index;	/* the seed's; the measurement index is fixed */
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
	bool diverged;
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
	struct tpm_secret secret;
	bool swtpm_ours;	/* our child (reap) or adopted (poll) */
	uint32_t log_reset_count;	/* TPM reset count when the log began */
	bool need_reconcile;
	int retry_ms;
};

static long long now_ms(void)
{
	return (long long)(clock_ns(CLOCK_MONOTONIC) / 1000000);
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

/* Under mu.  Diverged sticks: the log and the index stay apart until a
 * new log starts, whatever the TPM's availability does meanwhile. */
static void set_state(struct tpm *t, enum tpm_state st, const char *err)
{
	if (st == ST_DIVERGED)
		t->diverged = true;
	else if (st == ST_READY && t->diverged)
		st = ST_DIVERGED;
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
	char path[PATH_MAX], *text;
	cJSON *o = cJSON_CreateObject();
	int err;

	if (!o)
		return -ENOMEM;
	cJSON_AddStringToObject(o, "tcti", t->tcti);
	cJSON_AddBoolToObject(o, "embedded", t->embedded);
	cJSON_AddNumberToObject(o, "nv_index", TPM_NV_LOG_INDEX);
	cJSON_AddNumberToObject(o, "seed_index", t->nv_index);
	cJSON_AddNumberToObject(o, "ak_handle", TPM_AK_HANDLE);
	cJSON_AddStringToObject(o, "state_dir", t->state_dir);
	cJSON_AddNumberToObject(o, "reset_count", t->log_reset_count);
	text = cJSON_Print(o);
	cJSON_Delete(o);
	if (!text)
		return -ENOMEM;
	snprintf(path, sizeof(path), "%s/%s", t->run_dir, TPM_CONF_FILE);
	err = file_write_atomic(path, text, strlen(text), 0644);
	free(text);
	return err;
}

/* The TPM reset count the current log began in, as the last run wrote it
 * to tpm.json; -1 when unknown. */
static long long conf_reset_count(struct tpm *t)
{
	char path[PATH_MAX];
	uint8_t buf[8192];
	size_t n = 0;
	long long v = -1;
	cJSON *o, *it;

	snprintf(path, sizeof(path), "%s/%s", t->run_dir, TPM_CONF_FILE);
	if (tpm_read_file(path, buf, sizeof(buf) - 1, &n))
		return -1;
	buf[n] = '\0';
	o = cJSON_Parse((char *)buf);
	it = cJSON_GetObjectItem(o, "reset_count");
	if (cJSON_IsNumber(it))
		v = (long long)it->valuedouble;
	cJSON_Delete(o);
	return v;
}

/* Expected index value: the log's records [0, n) replayed. */
static void expected_value(struct tpm *t, size_t n, uint8_t val[32])
{
	uint8_t all[TPM_NR_BANKS][TPM_MAX_DIGEST_LEN];

	tpm_log_replay(&t->log, n, t->banks, all);
	memcpy(val, all[TPM_BANK_SHA256], 32);
}

/* Read the index over a short connection (see tpm_esys.h). */
static int read_index(struct tpm *t, uint8_t val[32], bool *written, char *why, size_t len)
{
	struct tpm_esys *e;
	int err = tpm_esys_open(t->tcti, &e, why, len);

	if (!err)
		err = tpm_log_index_read(e, val, written, why, len);
	tpm_esys_close(e);
	return err;
}

/*
 * Compare the log with the index and decide what is left to extend.  The
 * log may be ahead (a crash after fdatasync, before the extend): extend
 * those records, but only if their MACs hold, or whoever can write the run
 * dir could have the agent extend records it never wrote.
 */
static int reconcile(struct tpm *t)
{
	uint8_t val[TPM_NR_BANKS][TPM_MAX_DIGEST_LEN];
	char why[300], msg[400];
	bool written;
	long k;
	int err;

	memset(val, 0, sizeof(val));
	err = read_index(t, val[TPM_BANK_SHA256], &written, why, sizeof(why));
	if (err) {
		fail(t, ST_UNAVAILABLE, why);
		return err;
	}
	k = tpm_log_matching_prefix(&t->log, t->banks, (const uint8_t(*)[TPM_MAX_DIGEST_LEN])val);
	pthread_mutex_lock(&t->mu);
	if (k < 0) {
		snprintf(msg, sizeof(msg),
			 "NV index 0x%08x matches no prefix of %.200s (%zu records): it was "
			 "reset and extended again, or the log was changed; new records still "
			 "get extended", TPM_NV_LOG_INDEX, t->log_path, t->log.nr);
		t->extended = t->log.nr;
		set_state(t, ST_DIVERGED, msg);
	} else if ((size_t)k < t->extended) {
		snprintf(msg, sizeof(msg), "NV index 0x%08x went back to record %ld of %zu "
			 "extended: it was reset (undefined and defined again, or the TPM was "
			 "reset)", TPM_NV_LOG_INDEX, k, t->extended);
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

static int open_log(struct tpm *t, bool index_written, uint32_t reset_count,
		    long long prev_reset_count)
{
	char why[512], prev[PATH_MAX + 8];
	bool reset_by_hand = false;
	int err;

	err = tpm_log_load(t->log_path, &t->log);
	if (err) {
		snprintf(why, sizeof(why), "cannot read %.200s: %s", t->log_path, strerror(-err));
		fail(t, ST_UNAVAILABLE, why);
		return err;
	}
	t->log_reset_count = reset_count;
	if (t->log.nr && !index_written && prev_reset_count == reset_count) {
		/* Emptied while the TPM was not reset: undefined and defined
		 * again.  Keep the log: starting over would hide its records. */
		reset_by_hand = true;
	} else if (t->log.nr && !index_written) {
		/* A reset TPM (reboot, new embedded swtpm) with an old log: the
		 * old log describes a value that no longer exists. */
		snprintf(prev, sizeof(prev), "%s.prev", t->log_path);
		log_info("tpm: NV index 0x%08x is unwritten: starting a new event log (old one: "
			 "%s)", TPM_NV_LOG_INDEX, prev);
		if (rename(t->log_path, prev))
			log_warn("tpm: cannot rename %s: %s", t->log_path, strerror(errno));
		tpm_log_free(&t->log);
	} else if (t->log.nr && prev_reset_count >= 0) {
		t->log_reset_count = (uint32_t)prev_reset_count;
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
	/* MACs of records the index does not have yet: refuse to extend forgeries. */
	for (size_t i = 0; i < t->log.nr; i++) {
		char rwhy[160];

		if (tpm_log_check_record(&t->log.recs[i], t->banks, t->mac ? t->seed : NULL,
					 sizeof(t->seed), rwhy, sizeof(rwhy))) {
			snprintf(why, sizeof(why), "record %zu of %.200s %s; not extending it",
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
	if (reset_by_hand) {
		snprintf(why, sizeof(why), "NV index 0x%08x is empty but the TPM was not reset "
			 "(reset count %u) and %.200s has %zu records: the index was undefined "
			 "and defined again; the log is kept, new records still get extended",
			 TPM_NV_LOG_INDEX, reset_count, t->log_path, t->log.nr);
		t->extended = t->log.nr;
		set_state(t, ST_DIVERGED, why);
	}
	pthread_mutex_unlock(&t->mu);
	return reset_by_hand ? 0 : reconcile(t);
}

/*
 * Everything up to the first record: TPM reachable, the secret, EK and AK
 * (tpm2-tools), the indices and the seed (ESAPI), the log.  Returns 0 when
 * measurements can be recorded.
 */
static int worker_init(struct tpm *t)
{
	uint8_t val[32];
	char why[300];
	struct tpm_esys *e = NULL;
	TPM2B_PUBLIC ak;
	bool redefined = false, written = false;
	long long prev_reset = conf_reset_count(t);
	uint32_t reset_count = 0;
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
	err = tpm_secret_load(t->state_dir, true, &t->secret, why, sizeof(why));
	if (!err)
		err = tpm_keys_ensure(t->tcti, t->timeout_ms, &t->secret, &ak, why, sizeof(why));
	if (!err)
		err = tpm_esys_open(t->tcti, &e, why, sizeof(why));
	if (!err)
		err = tpm_indices_ensure(e, &t->secret, &ak, t->nv_index, &redefined, why,
					 sizeof(why));
	if (!err)
		err = tpm_log_index_read(e, val, &written, why, sizeof(why));
	if (!err)
		err = tpm_esys_reset_count(e, &reset_count, why, sizeof(why));
	if (err) {
		tpm_esys_close(e);
		fail(t, ST_UNAVAILABLE, why);
		return err;
	}
	err = tpm_esys_nv_read(e, t->nv_index, t->secret.auth, sizeof(t->secret.auth), t->seed,
			       sizeof(t->seed), why, sizeof(why));
	tpm_esys_close(e);
	if (err)
		log_warn("tpm: cannot read the seed at 0x%08x (%s): records carry no MAC",
			 t->nv_index, why);
	pthread_mutex_lock(&t->mu);
	t->banks = 1u << TPM_BANK_SHA256;
	t->mac = !err;
	pthread_mutex_unlock(&t->mu);
	err = open_log(t, written, reset_count, prev_reset);
	if (write_conf(t))
		log_warn("tpm: cannot write %s/%s", t->run_dir, TPM_CONF_FILE);
	return err;
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

		err = tpm_log_format(t->log.nr, TPM_NV_LOG_INDEX, banks, it->content_type,
				     it->content, t->mac ? t->seed : NULL, sizeof(t->seed), &line,
				     r.digest);
		if (err == -EINVAL) {
			/* cannot happen for content printed by tpm_measure */
			log_err("tpm: dropping a %s measurement: not JSON", it->content_type);
			err = 0;
			goto next;
		}
		if (!err)
			err = tpm_log_append(t->log_fd, line);
		if (err) {
			free(line);
			snprintf(why, sizeof(why), "cannot append to %.200s: %s", t->log_path,
				 strerror(-err));
			fail(t, ST_UNAVAILABLE, why);
			return err;	/* the item stays first in the batch */
		}
		r.recnum = t->log.nr;
		r.nv_index = TPM_NV_LOG_INDEX;
		r.banks = banks;
		r.line = line;
		r.content = cJSON_Parse(it->content);
		snprintf(r.content_type, sizeof(r.content_type), "%s", it->content_type);
		err = tpm_log_push(&t->log, &r);
		if (err) {
			cJSON_Delete(r.content);
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

/*
 * Extend every record not in the index yet, over one connection; stop at
 * the first failure.  Then read the index back: if it is not the replay of
 * the log, someone reset it (undefined and defined it again) meanwhile.
 */
static int extend_pending(struct tpm *t)
{
	uint8_t (*digests)[32] = NULL, val[32], want[32];
	char why[300], msg[400];
	struct tpm_esys *e = NULL;
	size_t from, n, done = 0;
	bool written;
	int err;

	if (t->need_reconcile) {
		err = reconcile(t);
		if (err)
			return err;
	}
	pthread_mutex_lock(&t->mu);
	from = t->extended;
	bool stop = t->stop;
	pthread_mutex_unlock(&t->mu);
	if (from >= t->log.nr || stop)
		return 0;
	n = t->log.nr - from;
	digests = malloc(n * sizeof(*digests));
	if (!digests)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		memcpy(digests[i], t->log.recs[from + i].digest[TPM_BANK_SHA256], 32);
	err = tpm_esys_open(t->tcti, &e, why, sizeof(why));
	if (!err)
		err = tpm_esys_nv_extend(e, TPM_NV_LOG_INDEX, TPM_AK_HANDLE, t->secret.auth,
					 sizeof(t->secret.auth),
					 (const uint8_t(*)[32])digests, n, &done, why, sizeof(why));
	free(digests);
	if (err) {
		tpm_esys_close(e);
		pthread_mutex_lock(&t->mu);
		t->extended = from + done;
		pthread_mutex_unlock(&t->mu);
		/* The extend may have happened anyway (timeout): read the index
		 * before trying again. */
		t->need_reconcile = true;
		fail(t, ST_UNAVAILABLE, why);
		return err;
	}
	err = tpm_log_index_read(e, val, &written, why, sizeof(why));
	tpm_esys_close(e);
	expected_value(t, from + done, want);
	/* State and count change together, so that whoever waits for the
	 * extends (tpm_flush) also sees what the read-back found. */
	pthread_mutex_lock(&t->mu);
	if (!err && memcmp(val, want, sizeof(val)) && t->state != ST_DIVERGED) {
		snprintf(msg, sizeof(msg), "NV index 0x%08x is not the replay of the log after "
			 "record %zu: it was reset (undefined and defined again) while the "
			 "agent ran", TPM_NV_LOG_INDEX, from + done - 1);
		set_state(t, ST_DIVERGED, msg);
	} else if (t->state == ST_UNAVAILABLE || t->state == ST_STARTING) {
		set_state(t, ST_READY, NULL);
	}
	t->extended = from + done;
	pthread_mutex_unlock(&t->mu);
	return 0;
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
		log_info("tpm: ready (%s, NV index 0x%08x)", t->tcti, TPM_NV_LOG_INDEX);
	else
		log_warn("tpm: %s: %s (measurements keep queueing; enforcement is not "
			 "affected)", state_names[st], err);
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
	struct tpm *t;
	int err;

	*out = NULL;
	if (!opts || !opts->state_dir || !opts->run_dir)
		return -EINVAL;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->ev.fd = -1;
	t->log_fd = -1;
	t->epfd = epfd;
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
	log_info("tpm: measuring into NV index 0x%08x via %s%s", TPM_NV_LOG_INDEX, t->tcti,
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
	uint8_t dig[SHA256_DIGEST_LEN];
	char hex[2 * SHA256_DIGEST_LEN + 1];
	cJSON *o = NULL, *it;
	int fd, err;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	err = sha256_fd(fd, NULL, dig);
	close(fd);
	if (err)
		return err;
	sha256_hex(dig, hex);
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
	cJSON_AddNumberToObject(o, "nv_index", TPM_NV_LOG_INDEX);
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
	tpm_secret_wipe(&t->secret);
	pthread_cond_destroy(&t->cv);
	pthread_mutex_destroy(&t->mu);
	free(t);
}
