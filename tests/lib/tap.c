// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* TAP output for the C tests; see tap.h. */
#include <stdarg.h>
#include <stdio.h>

#include "tap.h"

static int nr_tests, nr_failed, nr_skipped;

static void vline(const char *prefix, const char *fmt, va_list ap, const char *suffix)
{
	printf("%s %d - ", prefix, ++nr_tests);
	vprintf(fmt, ap);
	printf("%s\n", suffix);
	fflush(stdout);
}

bool tap_ok(bool cond, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vline(cond ? "ok" : "not ok", fmt, ap, "");
	va_end(ap);
	if (!cond)
		nr_failed++;
	return cond;
}

void tap_skip(const char *reason, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	printf("ok %d - ", ++nr_tests);
	vprintf(fmt, ap);
	printf(" # SKIP %s\n", reason);
	fflush(stdout);
	va_end(ap);
	nr_skipped++;
}

void tap_diag(const char *fmt, ...)
{
	va_list ap;

	printf("# ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

int tap_failed(void)
{
	return nr_failed;
}

int tap_done(void)
{
	printf("1..%d\n", nr_tests);
	printf("%d passed, %d failed, %d skipped\n",
	       nr_tests - nr_failed - nr_skipped, nr_failed, nr_skipped);
	return nr_failed ? 1 : 0;
}
