/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The audit log: one JSON object per line, appended with O_APPEND and
 * synced before the caller changes anything (write-ahead), so that no
 * audited change can happen without its record.  A change whose record
 * cannot be written and synced is refused; one that fails after its record
 * gets a second record saying so.
 */
#ifndef RAYOS_AUDIT_H
#define RAYOS_AUDIT_H

#include <stddef.h>

#include <cjson/cJSON.h>

/* Append rec (plus "time", CLOCK_REALTIME s) as one line and fdatasync it;
 * a new file's directory entry is synced too.  0 or -errno. */
int audit_append(const char *path, cJSON *rec);

/* Could a record be appended now?  Opens path for appending (creating it)
 * and looks at the free space of its file system, writing nothing.  0, or
 * -errno with why (e.g. "read-only file system", "no space left") in buf. */
int audit_probe(const char *path, char *why, size_t len);

#endif
