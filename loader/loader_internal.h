/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* State shared by the loader's own files (loader.c, attach.c, probe.c). */
#ifndef RAYOS_LOADER_INTERNAL_H
#define RAYOS_LOADER_INTERNAL_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <linux/types.h>

#include "loader/devices.h"
#include "loader/loader.h"

struct rayos_net;
struct pub_state;

/* A VM's tap as this loader attached it (attach.c), sorted by vm_id. */
struct loader_tap {
	uint32_t vm_id;
	uint32_t ifindex;
};

struct loader {
	char pin_root[LOADER_PIN_ROOT_LEN];
	struct rayos_net *net;
	int map_fds[RAYOS_MAP_MAX];
	int prog_fds[RAYOS_PROG_MAX];
	unsigned int nr_adopted;
	int sync_outer_fd, sync_inner_fd;
	struct pub_state *pub;		/* publish.c */
	struct loader_dev *dev;		/* devices.c */
	struct loader_tap *taps;	/* attach.c: whose rayos_ifaces entry to */
	size_t nr_taps;			/* rewrite when a record or binding changes */
	struct loader_capswitch *csw;	/* capswitch.c: the mmapped revoke-all maps */
	char feature_cache[LOADER_PIN_ROOT_LEN];	/* "" = probe afresh */
	bool no_dev_stats;
};

const char *loader_prog_name(enum rayos_prog_id id);
void loader_route_libbpf_logs(void);
int loader_refresh_links(struct loader *ld);	/* attach.c */
int loader_dev_for_each_object(const struct loader *ld, loader_object_fn fn, void *ctx);
/* stats.c: one key of a per-CPU map summed over CPUs (nr_u64 counters), and
 * zeroing one cell of a plain or per-CPU map. */
int loader_percpu_sum(int fd, __u32 key, __u64 *sum, size_t nr_u64);
int loader_cell_zero(int fd, __u32 key, size_t value_size, bool percpu);
/* attach.c: pin a new link over an old pin, old link released only after. */
int loader_link_pin_over(int link, const char *path);
/* attach.c: <pin_root>/links/vm<ID>_<suffix> (bpffs forbids dots). */
int loader_link_path(const struct loader *ld, uint32_t vm_id, const char *suffix,
		     char *buf, size_t len);

struct bpf_object;
/* Size the VM-sized maps of obj (taking the pinned size of adopted ones). */
int loader_size_maps(struct loader *ld, struct bpf_object *obj, uint32_t max_vms);
/* devices.c: open/load/attach the device objects; failures are recorded for
 * loader_dev_status(), and their map fds stay -1. */
void loader_devices_open(struct loader *ld, uint32_t max_vms);
void loader_devices_close(struct loader *ld);
/* capswitch.c: unmap the revoke-all maps. */
void loader_capswitch_close(struct loader *ld);
/* Clear a slot's device counters (publish.c, when a slot changes hands). */
int loader_dev_zero_slot(struct loader *ld, uint32_t slot);

#endif
