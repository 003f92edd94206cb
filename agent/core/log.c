// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* The one logger: "rayos-agent: LEVEL: message" on stderr. */
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "agent/core/log.h"

static enum log_level cur_level = LOG_LVL_INFO;

void log_set_level(enum log_level lvl)
{
	cur_level = lvl;
}

enum log_level log_get_level(void)
{
	return cur_level;
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	static const char *const names[] = { "error", "warning", "info", "debug" };
	struct timespec ts;
	va_list ap;

	if (lvl > cur_level)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	fprintf(stderr, "%lld.%03ld rayos-agent: %s: ", (long long)ts.tv_sec,
		ts.tv_nsec / 1000000, names[lvl]);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}
