/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Runtime VM registrations (VM id -> tap), persisted in the state dir. */
#ifndef RAYOS_REGISTRY_H
#define RAYOS_REGISTRY_H

#include <stdbool.h>
#include <stdint.h>

#include "agent/policy.h"

struct registry;

int registry_open(const char *path, struct registry **out);
void registry_close(struct registry *r);
int registry_set(struct registry *r, uint32_t id, const char *iface);
int registry_del(struct registry *r, uint32_t id);	/* -ENOENT if not registered */
const char *registry_iface(const struct registry *r, uint32_t id);
/* Give each registered VM of set its registered interface. */
void registry_overlay(const struct registry *r, struct policy_set *set);
/* A name the kernel would accept for a network interface. */
bool registry_ifname_valid(const char *s);

#endif
