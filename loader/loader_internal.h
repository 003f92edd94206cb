/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* State shared by the loader's own files (loader.c, attach.c, probe.c). */
#ifndef RAYOS_LOADER_INTERNAL_H
#define RAYOS_LOADER_INTERNAL_H

#include <limits.h>
#include <sys/types.h>

#include "loader/loader.h"

struct rayos_net;
struct pub_state;

struct loader {
	char pin_root[LOADER_PIN_ROOT_LEN];
	struct rayos_net *net;
	int map_fds[RAYOS_MAP_MAX];
	int prog_fds[RAYOS_PROG_MAX];
	unsigned int nr_adopted;
	int sync_outer_fd, sync_inner_fd;
	struct pub_state *pub;		/* publish.c */
};

const char *loader_prog_name(enum rayos_prog_id id);
void loader_route_libbpf_logs(void);
int loader_refresh_links(struct loader *ld);	/* attach.c */

#endif
