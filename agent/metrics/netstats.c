// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Turns the per-CPU counters of the network programs into what people read:
 * JSON for the CLI and Prometheus text for /metrics.  Every VM row comes
 * from what the maps hold (publish_vm_at), names from the applied policy.
 */
#include <arpa/inet.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "agent/metrics/netstats.h"
#include "loader/attach.h"
#include "loader/publish.h"
#include "loader/stats.h"

static const char *const reason_names[RAYOS_RSN_MAX] = {
	[RAYOS_RSN_PASS_RULE]		= "pass_rule",
	[RAYOS_RSN_PASS_DEFAULT]	= "pass_default",
	[RAYOS_RSN_PASS_FLOW]		= "pass_flow",
	[RAYOS_RSN_PASS_CTRL]		= "pass_control",
	[RAYOS_RSN_PASS_RELATED]	= "pass_related",
	[RAYOS_RSN_DROP_RULE]		= "drop_rule",
	[RAYOS_RSN_DROP_DEFAULT]	= "drop_default",
	[RAYOS_RSN_MALFORMED]		= "drop_malformed",
	[RAYOS_RSN_VLAN]		= "drop_vlan",
	[RAYOS_RSN_ETHERTYPE]		= "drop_ethertype",
	[RAYOS_RSN_SPOOF_MAC]		= "drop_spoof_mac",
	[RAYOS_RSN_SPOOF_IP]		= "drop_spoof_ip",
	[RAYOS_RSN_SPOOF_ARP]		= "drop_spoof_arp",
	[RAYOS_RSN_SPOOF_ND]		= "drop_spoof_nd",
	[RAYOS_RSN_UNBOUND]		= "drop_unbound",
	[RAYOS_RSN_ROGUE_DHCP]		= "drop_rogue_dhcp",
	[RAYOS_RSN_ROGUE_RA]		= "drop_rogue_ra",
	[RAYOS_RSN_RATE]		= "drop_rate",
	[RAYOS_RSN_NO_VM]		= "drop_no_vm",
	[RAYOS_RSN_DHCP_CHADDR]		= "drop_dhcp_chaddr",
	[RAYOS_RSN_DHCP_RATE]		= "drop_dhcp_rate",
	[RAYOS_RSN_ARP_RATE]		= "drop_arp_rate",
	[RAYOS_RSN_ND_RATE]		= "drop_nd_rate",
	[RAYOS_RSN_HOST]		= "drop_host",
	[RAYOS_RSN_ICMP_QUOTE]		= "drop_icmp_quote",
	[RAYOS_RSN_QUARANTINE]		= "drop_quarantine",
	[RAYOS_RSN_NO_CAP_NETWORK]	= "drop_no_cap_network",
	[RAYOS_RSN_CAP_PORTS]		= "drop_cap_ports",
};

static const char *const netc_names[RAYOS_NETC_MAX] = {
	[RAYOS_NETC_NO_IFACE]		= "pass_unknown_iface",
	[RAYOS_NETC_NO_VM]		= "drop_missing_vm",
	[RAYOS_NETC_EV_SENT]		= "events_sent",
	[RAYOS_NETC_EV_SUPPRESSED]	= "events_suppressed",
	[RAYOS_NETC_EV_LOST]		= "events_lost",
	[RAYOS_NETC_CT_FAIL]		= "flow_write_failures",
	[RAYOS_NETC_FRAG_MISS]		= "fragments_without_first",
};

const char *netstats_reason_name(unsigned int reason)
{
	return reason < RAYOS_RSN_MAX ? reason_names[reason] : NULL;
}

const char *netstats_dir_name(unsigned int dir)
{
	return dir == RAYOS_DIR_IN ? "in" : dir == RAYOS_DIR_OUT ? "out" : "?";
}

void netstats_record(struct netstats *ns, const struct rayos_event *ev)
{
	ns->recent[ns->recent_head] = *ev;
	ns->recent_head = (ns->recent_head + 1) % NETSTATS_RECENT;
	if (ns->recent_len < NETSTATS_RECENT)
		ns->recent_len++;
	ns->events_received++;
}

static const char *vm_name(const struct policy_set *set, uint32_t id)
{
	const struct policy_vm *vm = set ? policy_set_find(set, id) : NULL;

	return vm ? vm->name : "";
}

static cJSON *dir_json(const struct rayos_vm_stats *st, int d)
{
	cJSON *o = cJSON_CreateObject(), *reasons = cJSON_CreateObject();
	uint64_t pp = 0, pb = 0, dp = 0, db = 0;

	for (int r = 0; r < RAYOS_RSN_MAX; r++) {
		const struct rayos_ctr *c = &st->c[d][r];
		cJSON *cell;

		if (!c->packets || !reason_names[r])
			continue;
		if (r < RAYOS_RSN_DROP) {
			pp += c->packets;
			pb += c->bytes;
		} else {
			dp += c->packets;
			db += c->bytes;
		}
		cell = cJSON_CreateObject();
		cJSON_AddNumberToObject(cell, "packets", c->packets);
		cJSON_AddNumberToObject(cell, "bytes", c->bytes);
		cJSON_AddItemToObject(reasons, reason_names[r], cell);
	}
	cJSON_AddNumberToObject(o, "passed_packets", pp);
	cJSON_AddNumberToObject(o, "passed_bytes", pb);
	cJSON_AddNumberToObject(o, "dropped_packets", dp);
	cJSON_AddNumberToObject(o, "dropped_bytes", db);
	cJSON_AddItemToObject(o, "reasons", reasons);
	return o;
}

static cJSON *rules_json(struct loader *ld, const struct compiled_vm *cv, int d)
{
	cJSON *arr = cJSON_CreateArray();

	for (int r = 0; r < cv->vm.dir[d].nr_rules; r++) {
		struct rayos_ctr c;
		cJSON *o;

		if (loader_rule_stats(ld, cv->vm.slot, d, r, &c))
			continue;
		o = cJSON_CreateObject();
		cJSON_AddNumberToObject(o, "rule", r);
		cJSON_AddStringToObject(o, "action",
					cv->vm.dir[d].allow_bits >> r & 1 ? "allow" : "deny");
		cJSON_AddNumberToObject(o, "packets", c.packets);
		cJSON_AddNumberToObject(o, "bytes", c.bytes);
		cJSON_AddItemToArray(arr, o);
	}
	return arr;
}

cJSON *netstats_vms_json(struct loader *ld, const struct policy_set *set,
			 int64_t only_id, int with_rules, char *err, size_t errlen)
{
	cJSON *r = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(r, "vms");
	int found = 0;

	for (size_t i = 0; i < publish_nr_vms(ld); i++) {
		const struct compiled_vm *cv = publish_vm_at(ld, i);
		struct rayos_vm_stats st;
		cJSON *o;

		if (only_id >= 0 && cv->vm.vm_id != only_id)
			continue;
		found++;
		o = cJSON_CreateObject();
		cJSON_AddNumberToObject(o, "id", cv->vm.vm_id);
		cJSON_AddStringToObject(o, "name", vm_name(set, cv->vm.vm_id));
		cJSON_AddNumberToObject(o, "slot", cv->vm.slot);
		cJSON_AddNumberToObject(o, "ifindex", loader_vm_ifindex(ld, cv->vm.vm_id));
		cJSON_AddNumberToObject(o, "policy_version", cv->vm.policy_version);
		if (!loader_vm_stats(ld, cv->vm.slot, &st)) {
			for (int d = 0; d < RAYOS_DIR_MAX; d++) {
				cJSON *dj = dir_json(&st, d);

				if (with_rules)
					cJSON_AddItemToObject(dj, "rules", rules_json(ld, cv, d));
				cJSON_AddItemToObject(o, netstats_dir_name(d), dj);
			}
		}
		cJSON_AddItemToArray(arr, o);
	}
	if (only_id >= 0 && !found) {
		snprintf(err, errlen, "unknown VM %" PRId64 ": no VM with that id is in the "
			 "applied policy", only_id);
		cJSON_Delete(r);
		return NULL;
	}
	return r;
}

static void addr_str(const struct rayos_event *ev, const uint8_t *a, char *buf, size_t len)
{
	if (ev->family == AF_INET || ev->family == AF_INET6)
		inet_ntop(ev->family, a, buf, len);
	else
		snprintf(buf, len, "-");
}

cJSON *netstats_perf_json(struct loader *ld, const struct netstats *ns)
{
	cJSON *r = cJSON_CreateObject(), *k = cJSON_AddObjectToObject(r, "kernel");
	cJSON *tot = cJSON_AddObjectToObject(r, "totals"), *ev;
	uint64_t pk[RAYOS_DIR_MAX][2] = {}, by[RAYOS_DIR_MAX][2] = {};
	__u64 netc[RAYOS_NETC_MAX];

	if (!loader_net_counters(ld, netc))
		for (int i = 0; i < RAYOS_NETC_MAX; i++)
			if (netc_names[i])
				cJSON_AddNumberToObject(k, netc_names[i], netc[i]);
	for (size_t i = 0; i < publish_nr_vms(ld); i++) {
		struct rayos_vm_stats st;

		if (loader_vm_stats(ld, publish_vm_at(ld, i)->vm.slot, &st))
			continue;
		for (int d = 0; d < RAYOS_DIR_MAX; d++)
			for (int rs = 0; rs < RAYOS_RSN_MAX; rs++) {
				pk[d][rs >= RAYOS_RSN_DROP] += st.c[d][rs].packets;
				by[d][rs >= RAYOS_RSN_DROP] += st.c[d][rs].bytes;
			}
	}
	for (int d = 0; d < RAYOS_DIR_MAX; d++) {
		cJSON *o = cJSON_AddObjectToObject(tot, netstats_dir_name(d));

		cJSON_AddNumberToObject(o, "passed_packets", pk[d][0]);
		cJSON_AddNumberToObject(o, "passed_bytes", by[d][0]);
		cJSON_AddNumberToObject(o, "dropped_packets", pk[d][1]);
		cJSON_AddNumberToObject(o, "dropped_bytes", by[d][1]);
	}
	cJSON_AddNumberToObject(r, "events_received", ns->events_received);
	ev = cJSON_AddArrayToObject(r, "recent_drops");
	for (unsigned int i = 0; i < ns->recent_len && i < 20; i++) {
		unsigned int idx = (ns->recent_head + NETSTATS_RECENT - 1 - i) % NETSTATS_RECENT;
		const struct rayos_event *e = &ns->recent[idx];
		char s[INET6_ADDRSTRLEN], d[INET6_ADDRSTRLEN];
		cJSON *o = cJSON_CreateObject();

		addr_str(e, e->saddr, s, sizeof(s));
		addr_str(e, e->daddr, d, sizeof(d));
		cJSON_AddNumberToObject(o, "vm", e->vm_id);
		cJSON_AddStringToObject(o, "dir", netstats_dir_name(e->dir));
		cJSON_AddStringToObject(o, "reason", netstats_reason_name(e->reason) ?: "?");
		if (e->rule != RAYOS_EV_RULE_NONE)
			cJSON_AddNumberToObject(o, "rule", e->rule);
		cJSON_AddNumberToObject(o, "proto", e->proto);
		cJSON_AddStringToObject(o, "src", s);
		cJSON_AddStringToObject(o, "dst", d);
		cJSON_AddNumberToObject(o, "sport", e->sport);
		cJSON_AddNumberToObject(o, "dport", e->dport);
		cJSON_AddItemToArray(ev, o);
	}
	return r;
}

/* Prometheus label values: escape backslash, quote and newline. */
static void label(FILE *out, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			fputc('\\', out);
		if (*s == '\n') {
			fputs("\\n", out);
			continue;
		}
		fputc(*s, out);
	}
}

void netstats_prometheus(FILE *out, struct loader *ld, const struct policy_set *set,
			 const struct netstats *ns)
{
	static const char *const what[2] = { "packets", "bytes" };
	__u64 netc[RAYOS_NETC_MAX];

	for (int w = 0; w < 2; w++) {
		fprintf(out, "# HELP rayos_vm_%s_total %s seen by the network programs, by "
			"VM, direction (seen from the VM) and verdict reason.\n"
			"# TYPE rayos_vm_%s_total counter\n", what[w],
			w ? "Bytes" : "Packets", what[w]);
		for (size_t i = 0; i < publish_nr_vms(ld); i++) {
			const struct compiled_vm *cv = publish_vm_at(ld, i);
			struct rayos_vm_stats st;

			if (loader_vm_stats(ld, cv->vm.slot, &st))
				continue;
			for (int d = 0; d < RAYOS_DIR_MAX; d++)
				for (int r = 0; r < RAYOS_RSN_MAX; r++) {
					const struct rayos_ctr *c = &st.c[d][r];

					if (!reason_names[r])
						continue;
					fprintf(out, "rayos_vm_%s_total{vm=\"%u\",name=\"", what[w],
						cv->vm.vm_id);
					label(out, vm_name(set, cv->vm.vm_id));
					fprintf(out, "\",dir=\"%s\",reason=\"%s\"} %llu\n",
						netstats_dir_name(d), reason_names[r],
						(unsigned long long)(w ? c->bytes : c->packets));
				}
		}
	}
	fprintf(out, "# HELP rayos_rule_packets_total Packets a firewall rule decided.\n"
		"# TYPE rayos_rule_packets_total counter\n");
	for (size_t i = 0; i < publish_nr_vms(ld); i++) {
		const struct compiled_vm *cv = publish_vm_at(ld, i);

		for (int d = 0; d < RAYOS_DIR_MAX; d++)
			for (int r = 0; r < cv->vm.dir[d].nr_rules; r++) {
				struct rayos_ctr c;

				if (loader_rule_stats(ld, cv->vm.slot, d, r, &c))
					continue;
				fprintf(out, "rayos_rule_packets_total{vm=\"%u\",dir=\"%s\","
					"rule=\"%d\",action=\"%s\"} %llu\n", cv->vm.vm_id,
					netstats_dir_name(d), r,
					cv->vm.dir[d].allow_bits >> r & 1 ? "allow" : "deny",
					(unsigned long long)c.packets);
			}
	}
	if (!loader_net_counters(ld, netc)) {
		fprintf(out, "# HELP rayos_net_total Host-wide counters of the network "
			"programs.\n# TYPE rayos_net_total counter\n");
		for (int i = 0; i < RAYOS_NETC_MAX; i++)
			if (netc_names[i])
				fprintf(out, "rayos_net_total{counter=\"%s\"} %llu\n", netc_names[i],
					(unsigned long long)netc[i]);
	}
	fprintf(out, "# HELP rayos_drop_events_received_total Drop events the agent read "
		"from the ring buffer.\n# TYPE rayos_drop_events_received_total counter\n"
		"rayos_drop_events_received_total %llu\n",
		(unsigned long long)ns->events_received);
}
