// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * VM id lists ("1000,1002,1010-1020"): strict digits only (no signs, no
 * spaces inside a number, no hex), so that a typo is an error rather than
 * a different set of VMs.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/caps/vmlist.h"

/* One id at *p: digits only, 1..UINT32_MAX.  Advances *p. */
static int parse_id(const char **p, uint32_t *out)
{
	unsigned long long v = 0;
	const char *s = *p;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	if (*s == '0' && s[1] && s[1] != ',' && s[1] != '-')
		return -EINVAL;		/* 0x10, 007: not what was meant */
	for (; *s >= '0' && *s <= '9'; s++) {
		v = v * 10 + (unsigned long long)(*s - '0');
		if (v > UINT32_MAX)
			return -ERANGE;
	}
	if (!v)
		return -ERANGE;
	*out = (uint32_t)v;
	*p = s;
	return 0;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

int vmlist_parse(const char *s, uint32_t **ids, size_t *n, char *err, size_t errlen)
{
	uint32_t *out = NULL;
	size_t nr = 0, cap = 0, k = 0;
	const char *p = s, *elem;
	int ret;

	*ids = NULL;
	*n = 0;
	if (!s || !*s) {
		snprintf(err, errlen, "empty VM list: give ids or ranges such as 1000,1002-1005");
		return -EINVAL;
	}
	for (;;) {
		uint32_t lo, hi;
		size_t len;

		elem = p;
		len = strcspn(elem, ",");
		ret = parse_id(&p, &lo);
		hi = lo;
		if (!ret && *p == '-') {
			p++;
			ret = parse_id(&p, &hi);
			if (!ret && hi < lo)
				ret = -EDOM;
		}
		if (!ret && *p && *p != ',')
			ret = -EINVAL;
		if (ret) {
			snprintf(err, errlen, "bad VM list element \"%.*s\": %s", (int)len, elem,
				 ret == -ERANGE ? "ids are 1..4294967295"
				 : ret == -EDOM ? "a range goes from low to high"
				 : "expected an id or a range LOW-HIGH");
			free(out);
			return ret == -EDOM ? -EINVAL : ret;
		}
		if ((uint64_t)hi - lo + 1 > VMLIST_MAX - nr) {
			snprintf(err, errlen, "VM list names more than %u VMs", VMLIST_MAX);
			free(out);
			return -ERANGE;
		}
		if (nr + (hi - lo + 1) > cap) {
			size_t want = nr + (hi - lo + 1) + 16;
			uint32_t *grown = realloc(out, want * sizeof(*out));

			if (!grown) {
				free(out);
				return -ENOMEM;
			}
			out = grown;
			cap = want;
		}
		for (uint64_t v = lo; v <= hi; v++)
			out[nr++] = (uint32_t)v;
		if (!*p)
			break;
		p++;	/* ',' */
		if (!*p) {
			snprintf(err, errlen, "bad VM list \"%s\": it ends with a comma", s);
			free(out);
			return -EINVAL;
		}
	}
	qsort(out, nr, sizeof(*out), cmp_u32);
	for (size_t i = 0; i < nr; i++)
		if (!k || out[k - 1] != out[i])
			out[k++] = out[i];
	*ids = out;
	*n = k;
	return 0;
}
