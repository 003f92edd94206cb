/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Text helpers for tests that damage files on purpose. */
#ifndef RAYOS_TEST_TEXT_H
#define RAYOS_TEST_TEXT_H

/* A copy of text with line n (0-based) replaced by repl, or deleted (NULL);
 * the caller frees it. */
char *text_edit_line(const char *text, int n, const char *repl);

#endif /* RAYOS_TEST_TEXT_H */
