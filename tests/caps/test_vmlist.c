// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * agent/caps/vmlist: VM id lists of multi-VM commands, the sets they name
 * and the errors bad lists get.  Table-driven.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "agent/caps/vmlist.h"
#include "tests/lib/tap.h"

static const struct {
	const char *in;
	int err;
	size_t n;		/* ids parsed */
	uint32_t first, last;
	const char *msg;	/* a word the error must contain */
} cases[] = {
	{ "1000", 0, 1, 1000, 1000, NULL },
	{ "1000,1001", 0, 2, 1000, 1001, NULL },
	{ "1002,1000", 0, 2, 1000, 1002, NULL },	/* sorted */
	{ "1000-1004", 0, 5, 1000, 1004, NULL },
	{ "5,1-3,3,2", 0, 4, 1, 5, NULL },		/* duplicates merged */
	{ "4294967295", 0, 1, 4294967295U, 4294967295U, NULL },
	{ "1-65536", 0, 65536, 1, 65536, NULL },
	{ "", -EINVAL, 0, 0, 0, "empty" },
	{ "0", -ERANGE, 0, 0, 0, "1..4294967295" },
	{ "4294967296", -ERANGE, 0, 0, 0, "1..4294967295" },
	{ "1005-1000", -EINVAL, 0, 0, 0, "low to high" },
	{ "1000,", -EINVAL, 0, 0, 0, "comma" },
	{ ",1000", -EINVAL, 0, 0, 0, "\"\"" },
	{ "1000,,1001", -EINVAL, 0, 0, 0, "element" },
	{ "abc", -EINVAL, 0, 0, 0, "\"abc\"" },
	{ "1000x", -EINVAL, 0, 0, 0, "\"1000x\"" },
	{ "-5", -EINVAL, 0, 0, 0, "element" },
	{ "1000 ,1001", -EINVAL, 0, 0, 0, "element" },
	{ "0x10", -EINVAL, 0, 0, 0, "element" },
	{ "1-", -EINVAL, 0, 0, 0, "element" },
	{ "1-65537", -ERANGE, 0, 0, 0, "more than" },
	{ "1-40000,50000-90000", -ERANGE, 0, 0, 0, "more than" },
};

int main(void)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char err[256] = "";
		uint32_t *ids = NULL;
		size_t n = 0;
		int ret = vmlist_parse(cases[i].in, &ids, &n, err, sizeof(err));

		if (cases[i].err) {
			tap_ok(ret == cases[i].err, "\"%s\" refused (%d)", cases[i].in, ret);
			tap_ok(strstr(err, cases[i].msg) != NULL,
			       "\"%s\": the error says \"%s\" (got: %s)", cases[i].in,
			       cases[i].msg, err);
			tap_ok(!ids && !n, "\"%s\": nothing returned", cases[i].in);
		} else {
			tap_ok(ret == 0, "\"%s\" parses (%s)", cases[i].in, err);
			tap_ok(n == cases[i].n && ids && ids[0] == cases[i].first &&
			       ids[n - 1] == cases[i].last, "\"%s\": %zu ids %u..%u",
			       cases[i].in, cases[i].n, cases[i].first, cases[i].last);
		}
		free(ids);
	}
	return tap_done();
}
