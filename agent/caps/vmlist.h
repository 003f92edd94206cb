/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * A list of VM ids as an admin types it for multi-VM commands
 * (`cap revoke-all --vm 1000,1002,1010-1020`): ids and inclusive ranges,
 * comma-separated.  Pure logic, tested in tests/caps/test_vmlist.c.
 */
#ifndef RAYOS_CAPS_VMLIST_H
#define RAYOS_CAPS_VMLIST_H

#include <stddef.h>
#include <stdint.h>

#define VMLIST_MAX	65536	/* ids one list may name (RAYOS_MAX_VMS_LIMIT) */

/*
 * Parse s into a sorted array of distinct ids (*ids, free()d by the caller)
 * of *n >= 1 entries.  Ids are 1..4294967295; a range is LOW-HIGH with
 * LOW <= HIGH; duplicates are merged.  Returns 0, or -EINVAL / -ERANGE /
 * -ENOMEM with a message naming the bad element in err.
 */
int vmlist_parse(const char *s, uint32_t **ids, size_t *n, char *err, size_t errlen);

#endif
