/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Keeps each VM's tap attached as policies change and interfaces come and go. */
#ifndef RAYOS_IFWATCH_H
#define RAYOS_IFWATCH_H

#include "agent/policy/policy.h"
#include "loader/loader.h"

struct ifwatch;

/* Subscribe to link changes (a netlink socket for the epoll loop). */
int ifwatch_open(struct loader *ld, struct ifwatch **out);
int ifwatch_fd(const struct ifwatch *w);
void ifwatch_close(struct ifwatch *w);

/* Attach (and shape) every VM of set whose interface exists; detach VMs
 * not in set. */
void ifwatch_reconcile(struct ifwatch *w, const struct policy_set *set);
/* The same for one VM (its rates changed, say), if its interface exists. */
void ifwatch_attach(struct ifwatch *w, const struct policy_vm *vm);

/* Drain the socket; attach VMs whose interface (re)appeared. */
void ifwatch_event(struct ifwatch *w, const struct policy_set *set);

/* Stop enforcing on VM id's tap: links, ifindex entry, shapers. */
void ifwatch_detach(struct ifwatch *w, uint32_t id);
/* The same for every VM with pinned links (stop --purge). */
void ifwatch_detach_all(struct ifwatch *w);

#endif
