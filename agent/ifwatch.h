/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Keeps each VM's tap attached as policies change and interfaces come and go. */
#ifndef RAYOS_IFWATCH_H
#define RAYOS_IFWATCH_H

#include "agent/policy.h"
#include "loader/loader.h"

/* Attach every VM of set whose interface exists; detach VMs not in set. */
void ifwatch_reconcile(struct loader *ld, const struct policy_set *set);

/* A netlink socket subscribed to link changes, or -errno. */
int ifwatch_open(void);
/* Drain fd; attach VMs whose interface (re)appeared. */
void ifwatch_event(int fd, struct loader *ld, const struct policy_set *set);

#endif
