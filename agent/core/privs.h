/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Dropping the agent's Linux capabilities (libcap) after start-up. */
#ifndef RAYOS_PRIVS_H
#define RAYOS_PRIVS_H

#include <stddef.h>

/* Keep only the Linux capabilities the running agent needs.  names gets
 * the kept set, e.g. "cap_net_admin,cap_net_raw,cap_bpf". */
int privs_drop(char *names, size_t len);

#endif
