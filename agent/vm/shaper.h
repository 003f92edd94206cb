/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Per-VM bandwidth shaping with tbf qdiscs (see shaper.c for why). */
#ifndef RAYOS_SHAPER_H
#define RAYOS_SHAPER_H

#include <stdbool.h>
#include <stdint.h>

enum { SHAPER_IN = 0, SHAPER_OUT = 1 };	/* = RAYOS_DIR_IN / RAYOS_DIR_OUT */

struct shaper_rates {
	uint64_t rate[2];	/* bytes/s, 0 = unlimited */
	uint64_t burst[2];	/* bytes */
};

/* What the network programs need to know about the shaping in place. */
struct shaper_state {
	int ifb_ifindex;	/* guest->host frames go through it; 0 = none */
	bool shaped_in;		/* a tbf on the tap shapes host->guest */
};

/* Set up (or update, or remove) the VM's shapers.  A part that cannot be set
 * up is left to the BPF policer and logged; never fails the attach. */
int shaper_apply(uint32_t vm_id, int tap_ifindex, const struct shaper_rates *want,
		 struct shaper_state *st);
/* Remove the VM's qdisc from its tap and its ifb device. */
void shaper_remove(uint32_t vm_id, int tap_ifindex);

#endif
