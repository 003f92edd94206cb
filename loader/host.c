// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The host's own addresses in rayos_host4/6, which the network programs
 * read to tell traffic for the host itself from traffic through it.  The
 * agent hands over the whole list whenever it changes; this file makes the
 * maps equal to it without ever emptying them in between.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>

#include <bpf/bpf.h>

#include "agent/core/log.h"
#include "bpf/abi/net.h"
#include "loader/loader.h"
#include "loader/loader_internal.h"
#include "loader/publish.h"

static bool listed(const struct loader_host_addr *addrs, size_t n, int family, const void *key)
{
	size_t len = family == AF_INET ? 4 : 16;

	for (size_t i = 0; i < n; i++)
		if (addrs[i].family == family && !memcmp(addrs[i].addr, key, len))
			return true;
	return false;
}

/* Delete every key of fd that addrs does not list. */
static int prune(int fd, const struct loader_host_addr *addrs, size_t n, int family)
{
	uint8_t key[16], next[16];
	bool first = true;
	int err = 0;

	while (!bpf_map_get_next_key(fd, first ? NULL : key, next)) {
		first = false;
		memcpy(key, next, sizeof(key));
		if (listed(addrs, n, family, key))
			continue;
		if (bpf_map_delete_elem(fd, key) && errno != ENOENT)
			err = err ?: -errno;
		/* A hash walk restarts after a deletion of the current key. */
		first = true;
	}
	return err;
}

int loader_host_addrs_sync(struct loader *ld, const struct loader_host_addr *addrs, size_t n)
{
	int fd4 = ld->map_fds[RAYOS_MAP_HOST4], fd6 = ld->map_fds[RAYOS_MAP_HOST6];
	size_t n4 = 0, n6 = 0;
	int err = 0;

	for (size_t i = 0; i < n; i++) {
		struct rayos_host_addr v = { .ifindex = addrs[i].ifindex, .flags = addrs[i].flags };
		bool v4 = addrs[i].family == AF_INET;

		if (!v4 && addrs[i].family != AF_INET6)
			continue;
		if ((v4 ? n4 : n6) >= RAYOS_HOST_ADDRS) {
			err = -E2BIG;
			continue;
		}
		if (bpf_map_update_elem(v4 ? fd4 : fd6, addrs[i].addr, &v, BPF_ANY)) {
			/* Full with addresses that are going away: prune, retry. */
			prune(v4 ? fd4 : fd6, addrs, n, v4 ? AF_INET : AF_INET6);
			if (bpf_map_update_elem(v4 ? fd4 : fd6, addrs[i].addr, &v, BPF_ANY)) {
				err = err ?: -errno;
				continue;
			}
		}
		if (v4)
			n4++;
		else
			n6++;
	}
	err = prune(fd4, addrs, n, AF_INET) ?: err;
	err = prune(fd6, addrs, n, AF_INET6) ?: err;
	return err;
}
