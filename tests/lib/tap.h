/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Minimal TAP producer for C tests.  Each check prints "ok N - name" or
 * "not ok N - name"; skips print "ok N - name # SKIP reason".  tap_done()
 * prints the plan and "N passed, N failed, N skipped" and returns the exit
 * status (1 if anything failed).  The ASSERT_* macros return bool like the
 * kernel selftests' so a case can stop at its first failure.
 */
#ifndef RAYOS_TAP_H
#define RAYOS_TAP_H

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

bool tap_ok(bool cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void tap_skip(const char *reason, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void tap_diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int tap_done(void);
int tap_failed(void);

#define ASSERT_TRUE(c, name) tap_ok(!!(c), "%s", name)
#define ASSERT_EQ(a, b, name) ({					\
	long long __a = (long long)(a), __b = (long long)(b);		\
	bool __r = tap_ok(__a == __b, "%s", name);			\
	if (!__r) tap_diag("  %s: got %lld, want %lld", name, __a, __b);\
	__r; })
#define ASSERT_STREQ(a, b, name) ({					\
	const char *__a = (a), *__b = (b);				\
	bool __r = tap_ok(__a && __b && !strcmp(__a, __b), "%s", name);	\
	if (!__r) tap_diag("  %s: got \"%s\", want \"%s\"", name,	\
			   __a ? __a : "(null)", __b ? __b : "(null)");	\
	__r; })
#define ASSERT_CONTAINS(hay, needle, name) ({				\
	const char *__h = (hay), *__n = (needle);			\
	bool __r = tap_ok(__h && __n && strstr(__h, __n), "%s", name);	\
	if (!__r) tap_diag("  %s: \"%s\" lacks \"%s\"", name,		\
			   __h ? __h : "(null)", __n ? __n : "(null)");	\
	__r; })

#endif
