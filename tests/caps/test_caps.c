// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * agent/caps: durations and RFC 3339 times of temporary grants, their
 * 1s..366d bounds and the errors bad values get; the time-left format.
 * Table-driven; no clock is read (the "now" of --until is fixed).
 */
#include <errno.h>
#include <string.h>

#include "agent/caps/caps.h"
#include "tests/lib/tap.h"

#define S	CAPS_NS_PER_S

static const struct {
	const char *in;
	int err;		/* 0 or the negative errno */
	uint64_t ns;
	const char *msg;	/* a word the error must contain */
} durations[] = {
	{ "30m", 0, 1800 * S, NULL },
	{ "1h", 0, 3600 * S, NULL },
	{ "1s", 0, 1 * S, NULL },
	{ "90s", 0, 90 * S, NULL },
	{ "1h30m", 0, 5400 * S, NULL },
	{ "2d", 0, 2 * 86400 * S, NULL },
	{ "1d12h30m15s", 0, (86400 + 12 * 3600 + 30 * 60 + 15) * S, NULL },
	{ "366d", 0, 366ULL * 86400 * S, NULL },
	{ "8784h", 0, 366ULL * 86400 * S, NULL },
	{ "", -EINVAL, 0, "empty" },
	{ "0s", -ERANGE, 0, "minimum" },
	{ "0m", -ERANGE, 0, "minimum" },
	{ "-5m", -ERANGE, 0, "negative" },
	{ "367d", -ERANGE, 0, "366d" },
	{ "366d1s", -ERANGE, 0, "366d" },
	{ "99999999999999999999d", -ERANGE, 0, "366d" },
	{ "30", -EINVAL, 0, "malformed" },
	{ "1.5h", -EINVAL, 0, "malformed" },
	{ "m", -EINVAL, 0, "malformed" },
	{ "30x", -EINVAL, 0, "malformed" },
	{ "30m1h", -EINVAL, 0, "largest first" },
	{ "1h1h", -EINVAL, 0, "malformed" },
	{ " 1h", -EINVAL, 0, "malformed" },
	{ "1h ", -EINVAL, 0, "malformed" },
};

/* 2026-12-02T16:00:00Z */
#define NOW	(1796227200ULL * S)

static const struct {
	const char *in;
	int err;
	uint64_t ns;
	const char *msg;
} untils[] = {
	{ "2026-12-02T16:30:00Z", 0, 1800 * S, NULL },
	{ "2026-12-02T17:30:00+01:00", 0, 1800 * S, NULL },
	{ "2026-12-02T15:30:00-01:00", 0, 1800 * S, NULL },
	{ "2026-12-02t16:00:01.5z", 0, S + S / 2, NULL },
	{ "2027-12-03T16:00:00Z", 0, 366ULL * 86400 * S, NULL },
	{ "2027-12-03T16:00:01Z", -ERANGE, 0, "366d" },
	{ "2026-12-02T16:00:00Z", -ERANGE, 0, "future" },
	{ "2026-12-02T15:00:00Z", -ERANGE, 0, "future" },
	{ "2026-12-02T16:00:00.5Z", -ERANGE, 0, "minimum" },
	{ "1970-01-01T00:00:00Z", -ERANGE, 0, "future" },
	{ "2026-12-02T17:00:00", -EINVAL, 0, "zone" },
	{ "2026-12-02 17:00:00Z", -EINVAL, 0, "malformed" },
	{ "2026-02-29T17:00:00Z", -EINVAL, 0, "malformed" },
	{ "2026-13-01T17:00:00Z", -EINVAL, 0, "malformed" },
	{ "2026-12-02T24:00:00Z", -EINVAL, 0, "malformed" },
	{ "2026-12-02T17:00:00+1:00", -EINVAL, 0, "malformed" },
	{ "2026-12-02T17:00:00Zjunk", -EINVAL, 0, "malformed" },
	{ "tomorrow", -EINVAL, 0, "malformed" },
	{ "", -EINVAL, 0, "malformed" },
};

int main(void)
{
	char err[256], buf[64];
	uint64_t ns;
	int ret;

	for (size_t i = 0; i < sizeof(durations) / sizeof(durations[0]); i++) {
		err[0] = '\0';
		ns = 0;
		ret = caps_parse_duration(durations[i].in, &ns, err, sizeof(err));
		if (!tap_ok(ret == durations[i].err && (ret || ns == durations[i].ns) &&
			    (!durations[i].msg || strstr(err, durations[i].msg)),
			    "duration \"%s\" -> %s", durations[i].in,
			    durations[i].err ? strerror(-durations[i].err) : "ok"))
			tap_diag("  got %d, %llu ns, \"%s\"", ret, (unsigned long long)ns, err);
	}
	for (size_t i = 0; i < sizeof(untils) / sizeof(untils[0]); i++) {
		err[0] = '\0';
		ns = 0;
		ret = caps_parse_until(untils[i].in, NOW, &ns, err, sizeof(err));
		if (!tap_ok(ret == untils[i].err && (ret || ns == untils[i].ns) &&
			    (!untils[i].msg || strstr(err, untils[i].msg)),
			    "until \"%s\" -> %s", untils[i].in,
			    untils[i].err ? strerror(-untils[i].err) : "ok"))
			tap_diag("  got %d, %llu ns, \"%s\"", ret, (unsigned long long)ns, err);
	}
	caps_format_left(5400 * S + S / 2, buf, sizeof(buf));
	tap_ok(!strcmp(buf, "1h30m"), "time left 1h30m (%s)", buf);
	caps_format_left((86400 + 5) * S, buf, sizeof(buf));
	tap_ok(!strcmp(buf, "1d5s"), "time left 1d5s (%s)", buf);
	caps_format_left(S / 2, buf, sizeof(buf));
	tap_ok(!strcmp(buf, "0s"), "time left 0s (%s)", buf);
	return tap_done();
}
