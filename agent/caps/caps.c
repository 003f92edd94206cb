// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * How long a temporary capability lasts: durations and RFC 3339 times,
 * checked against the 1s..366d bounds, and the time left printed back.
 * Strict on purpose: a grant that lasts longer than the admin meant is a
 * hole, so anything ambiguous ("1.5h", "30", a time without a zone) is an
 * error that says what to write instead.
 */
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "agent/caps/caps.h"

static int bounds(uint64_t ns, const char *what, const char *s, char *err, size_t errlen)
{
	if (ns < CAPS_TEMP_MIN_NS) {
		snprintf(err, errlen, "%s \"%s\" is under the minimum of 1s", what, s);
		return -ERANGE;
	}
	if (ns > CAPS_TEMP_MAX_NS) {
		snprintf(err, errlen, "%s \"%s\" is beyond the maximum of 366d", what, s);
		return -ERANGE;
	}
	return 0;
}

int caps_parse_duration(const char *s, uint64_t *ns, char *err, size_t errlen)
{
	static const struct { char unit; uint64_t s; } units[] = {
		{ 'd', 86400 }, { 'h', 3600 }, { 'm', 60 }, { 's', 1 },
	};
	const char *p = s;
	uint64_t total = 0;
	size_t next = 0;	/* units must come largest first, each once */

	if (!s || !*s) {
		snprintf(err, errlen, "empty duration: write e.g. 30m, 1h, 2d or 1h30m");
		return -EINVAL;
	}
	if (*s == '-') {
		snprintf(err, errlen, "duration \"%s\" is negative", s);
		return -ERANGE;
	}
	while (*p) {
		uint64_t n = 0;
		size_t u;

		if (!isdigit((unsigned char)*p))
			goto bad;
		while (isdigit((unsigned char)*p)) {
			if (n > 1000000)	/* far beyond 366d in any unit */
				return bounds(CAPS_TEMP_MAX_NS + 1, "duration", s, err, errlen);
			n = n * 10 + (uint64_t)(*p++ - '0');
		}
		for (u = next; u < sizeof(units) / sizeof(units[0]); u++)
			if (*p == units[u].unit)
				break;
		if (u == sizeof(units) / sizeof(units[0]))
			goto bad;
		p++;
		next = u + 1;
		total += n * units[u].s;
		if (total > 400ULL * 86400)
			return bounds(CAPS_TEMP_MAX_NS + 1, "duration", s, err, errlen);
	}
	*ns = total * CAPS_NS_PER_S;
	return bounds(*ns, "duration", s, err, errlen);
bad:
	snprintf(err, errlen, "malformed duration \"%s\": write NUMBER UNIT pairs with units "
		 "d, h, m, s, largest first (e.g. 30m, 1h30m, 2d)", s);
	return -EINVAL;
}

/* Exactly n digits at *p, as a number; advances *p. */
static bool digits(const char **p, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (!isdigit((unsigned char)(*p)[i]))
			return false;
		v = v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	*out = v;
	return true;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (no timezone, no
 * locale: timegm() would do, but this needs no libc extension). */
static int64_t days_from_civil(int y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

int caps_parse_rfc3339(const char *s, uint64_t *wall_ns, char *err, size_t errlen)
{
	static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	const char *p = s;
	int y, mo, d, h, mi, sec, oh = 0, om = 0, sign = 0;
	uint64_t frac_ns = 0, scale = CAPS_NS_PER_S / 10;
	int64_t t;

	if (!s || !digits(&p, 4, &y) || *p++ != '-' || !digits(&p, 2, &mo) || *p++ != '-' ||
	    !digits(&p, 2, &d) || (*p != 'T' && *p != 't') || !++p || !digits(&p, 2, &h) ||
	    *p++ != ':' || !digits(&p, 2, &mi) || *p++ != ':' || !digits(&p, 2, &sec))
		goto bad;
	if (*p == '.') {
		if (!isdigit((unsigned char)*++p))
			goto bad;
		for (; isdigit((unsigned char)*p); p++, scale /= 10)
			frac_ns += (uint64_t)(*p - '0') * scale;
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		sign = *p++ == '-' ? -1 : 1;
		if (!digits(&p, 2, &oh) || *p++ != ':' || !digits(&p, 2, &om) || oh > 23 || om > 59)
			goto bad;
	} else {
		goto bad;
	}
	if (*p || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] ||
	    (mo == 2 && d == 29 && (y % 4 || (y % 100 == 0 && y % 400))) ||
	    h > 23 || mi > 59 || sec > 60)
		goto bad;
	t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + (sec == 60 ? 59 : sec);
	t -= sign * (oh * 3600 + om * 60);
	*wall_ns = t < 0 ? 0 : (uint64_t)t * CAPS_NS_PER_S + frac_ns;
	return 0;
bad:
	snprintf(err, errlen, "malformed time \"%s\": write RFC 3339 with a zone, e.g. "
		 "2026-12-02T17:00:00Z or 2026-12-02T18:00:00+01:00", s ? s : "");
	return -EINVAL;
}

int caps_parse_until(const char *s, uint64_t now_wall_ns, uint64_t *ns, char *err,
		     size_t errlen)
{
	uint64_t wall;
	int ret = caps_parse_rfc3339(s, &wall, err, errlen);

	if (ret)
		return ret;
	if (wall <= now_wall_ns) {
		snprintf(err, errlen, "--until \"%s\" is not in the future", s);
		return -ERANGE;
	}
	*ns = wall - now_wall_ns;
	return bounds(*ns, "--until", s, err, errlen);
}

void caps_format_left(uint64_t ns, char *buf, size_t len)
{
	uint64_t s = ns / CAPS_NS_PER_S, d = s / 86400, h = s / 3600 % 24, m = s / 60 % 60;
	size_t n = 0;

	if (!len)
		return;
	buf[0] = '\0';
	if (d)
		n += snprintf(buf + n, len - n, "%llud", (unsigned long long)d);
	if (h && n < len)
		n += snprintf(buf + n, len - n, "%lluh", (unsigned long long)h);
	if (m && n < len)
		n += snprintf(buf + n, len - n, "%llum", (unsigned long long)m);
	if ((s % 60 || !n) && n < len)
		snprintf(buf + n, len - n, "%llus", (unsigned long long)(s % 60));
}
