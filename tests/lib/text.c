// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/lib/text.h"

char *text_edit_line(const char *text, int n, const char *repl)
{
	char *out = malloc(strlen(text) + (repl ? strlen(repl) : 0) + 2);
	const char *p = text;
	size_t off = 0;

	if (!out)
		abort();
	for (int i = 0; *p; i++) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p + 1) : strlen(p);

		if (i != n) {
			memcpy(out + off, p, len);
			off += len;
		} else if (repl) {
			off += (size_t)sprintf(out + off, "%s\n", repl);
		}
		p += len;
	}
	out[off] = '\0';
	return out;
}
