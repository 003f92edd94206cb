/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * DHCP for guest bridges: the API the agent embeds.  The server lives in
 * the agent's epoll loop (its sockets and one timerfd are ev_sources on
 * epfd), keeps leases durable in the state dir before it ACKs them, and
 * reports every grant, renewal, release and expiry through hooks so that
 * the anti-spoof map follows the leases.  See policies/DHCP.md.
 */
#ifndef RAYOS_DHCP_H
#define RAYOS_DHCP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

struct policy_set;
struct dhcp_bridge_cfg;
struct dhcp_server;

/* The parsed "dhcp" object; struct dhcp_bridge_cfg in agent/dhcp/dhcp_server.h. */
struct dhcp_config {
	size_t nr_bridges;
	struct dhcp_bridge_cfg *bridges;
};

/* Parse the policy's top-level "dhcp" object.  set supplies the VMs: one
 * with "mac" and "bridge" is a host of that bridge (its "ipv4", if any, is
 * its reservation).  set may be NULL (no VMs).  On error err names the JSON
 * path (e.g. "dhcp.bridges.br0.pools[0]: ...") and -EINVAL is returned. */
int dhcp_config_parse(const cJSON *dhcp_obj, const struct policy_set *set,
		      struct dhcp_config **out, char *err, size_t errlen);
void dhcp_config_free(struct dhcp_config *cfg);

struct dhcp_hooks {
	void *ctx;
	/* The client holds ip_be until expiry (CLOCK_BOOTTIME ns), or with
	 * bound false no longer holds ip_be.  vm_id is 0 for a client that is
	 * no VM.  Called before the ACK that grants the lease is sent. */
	void (*binding)(void *ctx, uint32_t vm_id, const uint8_t mac[6], uint32_t ip_be,
			uint64_t expiry_boottime_ns, bool bound);
	/* The VM whose rayos_vm.slot is slot, 0 if none.  With this hook the
	 * server knows each message's VM from the mark the tap program gave
	 * its frame (RAYOS_DHCP_MARK_TAG in bpf/abi/net.h); without it (the
	 * standalone test server) a client is what its chaddr says. */
	uint32_t (*vm_of_slot)(void *ctx, uint32_t slot);
	/* Whether the data path binds ip_be to vm_id now (may be NULL): lets a
	 * guest keep its address across a lost lease database. */
	bool (*vm_holds)(void *ctx, uint32_t vm_id, uint32_t ip_be);
};

/* Open the lease database (state_dir/dhcp-leases.log), replay it, announce
 * the live bindings, and serve every bridge of cfg on epfd.  A bridge whose
 * interface does not exist yet is retried every second.  cfg is copied. */
int dhcp_server_open(const struct dhcp_config *cfg, const char *state_dir, int epfd,
		     const struct dhcp_hooks *hooks, struct dhcp_server **out);
/* Live policy edits: pools and options change, leases that are still valid
 * under cfg are kept; bridges come and go. */
int dhcp_server_reconfigure(struct dhcp_server *srv, const struct dhcp_config *cfg);
/* Expiry, held offers, probes, retries.  The server arms its own timerfd on
 * epfd, so calling this is optional; now_ms is ignored (kept for the API). */
void dhcp_server_tick(struct dhcp_server *srv, uint64_t now_ms);
/* Milliseconds until the server next needs dhcp_server_tick (-1: none). */
int dhcp_server_next_timeout_ms(const struct dhcp_server *srv);
cJSON *dhcp_server_status_json(struct dhcp_server *srv);
cJSON *dhcp_server_leases_json(struct dhcp_server *srv);
/* Admin release by address (ip_be != 0) or by MAC; -ENOENT when no lease. */
int dhcp_server_release(struct dhcp_server *srv, uint32_t ip_be, const uint8_t *mac);
void dhcp_server_close(struct dhcp_server *srv);

/* CLOCK_REALTIME in ms: the clock lease expiries are kept in. */
uint64_t dhcp_now_ms(void);

#endif
