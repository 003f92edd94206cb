/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Where RayOS keeps things by default: shared by the agent, its CLI and
 * the QEMU hooks, which find the agent's control socket through them. */
#ifndef RAYOS_PATHS_H
#define RAYOS_PATHS_H

#define RAYOS_POLICY_DIR_DEFAULT	"/etc/rayos/policies"
#define RAYOS_STATE_DIR_DEFAULT		"/var/lib/rayos"
#define RAYOS_RUN_DIR_DEFAULT		"/run/rayos"
#define RAYOS_METRICS_PORT_DEFAULT	9469

/* Directories are limited so that every file name built in them fits PATH_MAX. */
#define RAYOS_DIR_LEN			1024

#endif
