/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Temporary capability grants in user space: parsing how long a grant lasts
 * (a duration or an RFC 3339 time), its bounds, and printing the time left.
 * Pure logic (no clocks read here, no privileged calls), driven directly by
 * tests/caps/test_caps.c; the wiring (agent/vms.c) turns the result into a
 * CLOCK_BOOTTIME deadline that the BPF programs compare.
 */
#ifndef RAYOS_CAPS_H
#define RAYOS_CAPS_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define CAPS_NS_PER_S		1000000000ULL
#define CAPS_TEMP_DEFAULT_NS	(3600ULL * CAPS_NS_PER_S)		/* 1h */
#define CAPS_TEMP_MIN_NS	(1ULL * CAPS_NS_PER_S)			/* 1s */
#define CAPS_TEMP_MAX_NS	(366ULL * 86400ULL * CAPS_NS_PER_S)	/* 366d */

/*
 * "30m", "1h30m", "90s", "2d", "1d12h": one or more NUMBER UNIT pairs,
 * units s, m, h, d, each at most once and largest first.  The total must lie
 * within 1s..366d.  Returns 0 with *ns, or -EINVAL / -ERANGE with a message
 * naming what is wrong in err.
 */
int caps_parse_duration(const char *s, uint64_t *ns, char *err, size_t errlen);

/*
 * An RFC 3339 time ("2026-12-02T17:00:00Z", "...T18:00:00.5+01:00") as
 * nanoseconds from now_wall (CLOCK_REALTIME, ns).  The time must lie
 * 1s..366d ahead.  Returns 0 with *ns, or -EINVAL / -ERANGE and err.
 */
int caps_parse_until(const char *s, uint64_t now_wall_ns, uint64_t *ns, char *err,
		     size_t errlen);

/* The format alone: an RFC 3339 time as CLOCK_REALTIME ns (0 before 1970). */
int caps_parse_rfc3339(const char *s, uint64_t *wall_ns, char *err, size_t errlen);

/* "1h29m5s", "59s", "0s": ns rounded down to seconds. */
void caps_format_left(uint64_t ns, char *buf, size_t len);

#endif
