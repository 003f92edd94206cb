/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The host's own addresses for the network programs (rayos_host4/6): read
 * with an rtnetlink dump at start and again whenever the kernel announces
 * an address change, so that guest traffic to any address of the host meets
 * the VMs' "host" rules (policies/README.md).
 */
#ifndef RAYOS_HOSTADDR_H
#define RAYOS_HOSTADDR_H

#include <stddef.h>

struct loader;
struct hostaddr;

/* Subscribe to address changes and write the current addresses.  The
 * caller polls hostaddr_fd() and calls hostaddr_event() when it is
 * readable. */
int hostaddr_open(struct loader *ld, struct hostaddr **out);
int hostaddr_fd(const struct hostaddr *h);
/* Drain the notifications and write the addresses again. */
void hostaddr_event(struct hostaddr *h);
/* Addresses written last (for status). */
size_t hostaddr_count(const struct hostaddr *h);
void hostaddr_close(struct hostaddr *h);

#endif
