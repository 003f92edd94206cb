// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * After the BPF objects are loaded and pinned the agent needs far less than
 * root: it keeps the capabilities below, removes every other one from its
 * bounding set (so no child or exec can regain them), and clears the
 * inheritable and ambient sets.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/prctl.h>

#include "agent/core/log.h"
#include "agent/core/privs.h"

static const cap_value_t kept[] = {
	CAP_BPF,	/* map updates, link creation for new taps */
	CAP_NET_ADMIN,	/* tc/tcx attach on taps that appear later */
	CAP_NET_RAW,	/* DHCP server and ARP probes on guest bridges */
	CAP_NET_BIND_SERVICE,	/* the DHCP server's UDP port 67, on bridges that
				 * appear after start and on policy reloads */
	CAP_PERFMON,	/* ring buffer and tracepoint programs attached later */
};
#define NR_KEPT (sizeof(kept) / sizeof(kept[0]))

static bool is_kept(cap_value_t c)
{
	for (size_t i = 0; i < NR_KEPT; i++)
		if (kept[i] == c)
			return true;
	return false;
}

int privs_drop(char *names, size_t len)
{
	cap_t caps = NULL;
	char *text = NULL;
	int err = 0;

	/* Bounding set first: dropping from it needs CAP_SETPCAP, which the
	 * next step removes. */
	for (cap_value_t c = 0; c <= CAP_LAST_CAP; c++) {
		if (is_kept(c) || !CAP_IS_SUPPORTED(c))
			continue;
		if (cap_drop_bound(c) && errno != EINVAL) {
			err = -errno;
			log_err("cannot drop %s from the bounding set: %s",
				cap_to_name(c), strerror(errno));
			goto out;
		}
	}
	caps = cap_init();	/* all clear */
	if (!caps ||
	    cap_set_flag(caps, CAP_PERMITTED, NR_KEPT, kept, CAP_SET) ||
	    cap_set_flag(caps, CAP_EFFECTIVE, NR_KEPT, kept, CAP_SET) ||
	    cap_set_proc(caps)) {
		err = -errno;
		log_err("cannot set capabilities: %s", strerror(errno));
		goto out;
	}
	if (cap_reset_ambient() && errno != EINVAL)
		log_warn("cannot clear ambient capabilities: %s", strerror(errno));
	text = cap_to_text(caps, NULL);
	snprintf(names, len, "%s", text ? text : "?");
out:
	if (text)
		cap_free(text);
	if (caps)
		cap_free(caps);
	return err;
}
