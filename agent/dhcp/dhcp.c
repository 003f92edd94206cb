// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The DHCP server as the agent runs it: the policy's "dhcp" object parsed
 * into per-bridge settings, one engine and one set of sockets per bridge,
 * the lease log shared by all of them, and the batch loop that makes group
 * commit work: read every queued request, answer them all in memory, write
 * and fdatasync their lease records once, then send the replies.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>

#include "agent/core/evloop.h"
#include "agent/core/log.h"
#include "agent/core/util.h"
#include "agent/dhcp/dhcp.h"
#include "agent/dhcp/dhcp_io.h"
#include "agent/dhcp/dhcp_leases.h"
#include "agent/dhcp/dhcp_proto.h"
#include "agent/dhcp/dhcp_server.h"
#include "agent/policy/policy.h"
#include "bpf/abi/net.h"

#define RX_BATCH	64	/* recvmmsg at once */
#define RX_ROUNDS	8	/* recvmmsg calls per commit at most */
#define MAX_OUT		(RX_BATCH * RX_ROUNDS)
#define MAX_PROBES	256	/* requests waiting for an ARP probe */
#define PROBE_WAIT_MS	150	/* RFC 5227 waits 1-2 s; a guest bridge is one hop */
#define PROBE_TRIES	3	/* conflicts per request before it is dropped */
#define LEASE_FILE	"dhcp-leases.log"
#define COMPACT_MIN	(256 * 1024)

uint64_t dhcp_now_ms(void)
{
	return clock_ns(CLOCK_REALTIME) / 1000000;
}

/* ---- configuration ---- */

static int cfg_err(char *err, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int cfg_err(char *err, size_t len, const char *fmt, ...)
{
	va_list ap;

	if (err && len) {
		va_start(ap, fmt);
		vsnprintf(err, len, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

static bool parse_ip(const char *s, uint32_t *ip)
{
	struct in_addr a;

	if (!s || inet_pton(AF_INET, s, &a) != 1)
		return false;
	*ip = ntohl(a.s_addr);
	return true;
}

static bool parse_cidr(const char *s, uint32_t *net, uint8_t *prefix)
{
	char buf[32], *slash, *end;
	unsigned long p;

	if (!s || strlen(s) >= sizeof(buf))
		return false;
	strcpy(buf, s);
	slash = strchr(buf, '/');
	if (!slash)
		return false;
	*slash = '\0';
	p = strtoul(slash + 1, &end, 10);
	if (*end || end == slash + 1 || p > 30 || !parse_ip(buf, net))
		return false;
	*prefix = (uint8_t)p;
	return true;
}

static uint32_t prefix_mask(uint8_t p)
{
	return p ? ~0U << (32 - p) : 0;
}

static int range_cmp(const void *a, const void *b)
{
	const struct dhcp_range *x = a, *y = b;

	return x->lo < y->lo ? -1 : x->lo > y->lo;
}

static int parse_addr_list(const cJSON *arr, const char *path, uint32_t *out, size_t *n,
			   char *err, size_t errlen)
{
	const cJSON *it;
	size_t i = 0;

	if (!cJSON_IsArray(arr))
		return cfg_err(err, errlen, "%s: must be an array of IPv4 addresses", path);
	cJSON_ArrayForEach(it, arr) {
		if (i == DHCP_MAX_SERVERS)
			return cfg_err(err, errlen, "%s: at most %d addresses", path,
				       DHCP_MAX_SERVERS);
		if (!cJSON_IsString(it) || !parse_ip(it->valuestring, &out[i]))
			return cfg_err(err, errlen, "%s[%zu]: not an IPv4 address", path, i);
		i++;
	}
	*n = i;
	return 0;
}

static int get_u32(const cJSON *obj, const char *key, const char *path, uint32_t lo,
		   uint32_t hi, uint32_t *out, char *err, size_t errlen)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);

	if (!v)
		return 0;
	if (!cJSON_IsNumber(v) || v->valuedouble < lo || v->valuedouble > hi ||
	    v->valuedouble != (double)(uint32_t)v->valuedouble)
		return cfg_err(err, errlen, "%s.%s: must be an integer from %u to %u",
			       path, key, lo, hi);
	*out = (uint32_t)v->valuedouble;
	return 0;
}

static int parse_bridge(const cJSON *b, const struct policy_set *set,
			struct dhcp_bridge_cfg *c, char *err, size_t errlen)
{
	static const char *const known[] = {
		"server_ip", "subnet", "pools", "router", "dns", "ntp", "domain",
		"lease_time", "t1", "t2", "mtu", "rapid_commit", "conflict_check",
		"offer_hold", "decline_hold", "description", "max_leases_per_vm",
		"unmanaged_clients",
	};
	char path[64], sub[96];
	const cJSON *v, *it;
	uint32_t mtu = 0, bcast;
	size_t i, j, n;
	int rc;

	snprintf(path, sizeof(path), "dhcp.bridges.%s", c->name);
	if (!cJSON_IsObject(b))
		return cfg_err(err, errlen, "%s: must be an object", path);
	cJSON_ArrayForEach(it, b) {
		for (i = 0; i < sizeof(known) / sizeof(known[0]); i++)
			if (!strcmp(it->string, known[i]))
				break;
		if (i == sizeof(known) / sizeof(known[0]))
			return cfg_err(err, errlen, "%s.%s: unknown key", path, it->string);
	}
	v = cJSON_GetObjectItemCaseSensitive(b, "subnet");
	if (!cJSON_IsString(v) || !parse_cidr(v->valuestring, &c->net, &c->prefix))
		return cfg_err(err, errlen, "%s.subnet: required, an IPv4 CIDR with prefix 0-30 "
			       "(e.g. \"192.0.2.0/24\")", path);
	c->mask = prefix_mask(c->prefix);
	if (c->net & ~c->mask)
		return cfg_err(err, errlen, "%s.subnet: host bits set", path);
	bcast = c->net | ~c->mask;
	v = cJSON_GetObjectItemCaseSensitive(b, "server_ip");
	if (!cJSON_IsString(v) || !parse_ip(v->valuestring, &c->server_ip))
		return cfg_err(err, errlen, "%s.server_ip: required, an IPv4 address", path);
	if ((c->server_ip & c->mask) != c->net || c->server_ip == c->net || c->server_ip == bcast)
		return cfg_err(err, errlen, "%s.server_ip: not a host address of the subnet", path);

	v = cJSON_GetObjectItemCaseSensitive(b, "pools");
	if (v && !cJSON_IsArray(v))
		return cfg_err(err, errlen, "%s.pools: must be an array of \"first-last\" ranges", path);
	n = v ? (size_t)cJSON_GetArraySize(v) : 0;
	c->ranges = calloc(n + 1, sizeof(*c->ranges));
	if (!c->ranges)
		return -ENOMEM;
	i = 0;
	cJSON_ArrayForEach(it, v) {
		char buf[40], *dash;
		struct dhcp_range *r = &c->ranges[i];

		snprintf(sub, sizeof(sub), "%s.pools[%zu]", path, i);
		if (!cJSON_IsString(it) || strlen(it->valuestring) >= sizeof(buf))
			return cfg_err(err, errlen, "%s: must be \"first-last\"", sub);
		strcpy(buf, it->valuestring);
		dash = strchr(buf, '-');
		if (dash) {
			*dash = '\0';
			if (!parse_ip(buf, &r->lo) || !parse_ip(dash + 1, &r->hi))
				return cfg_err(err, errlen, "%s: must be \"first-last\"", sub);
		} else if (parse_ip(buf, &r->lo)) {
			r->hi = r->lo;
		} else {
			return cfg_err(err, errlen, "%s: must be \"first-last\"", sub);
		}
		if (r->lo > r->hi)
			return cfg_err(err, errlen, "%s: first address after last", sub);
		if ((r->lo & c->mask) != c->net || (r->hi & c->mask) != c->net)
			return cfg_err(err, errlen, "%s: outside %s.subnet", sub, path);
		if (r->hi - r->lo >= (1U << 24))
			return cfg_err(err, errlen, "%s: more than 2^24 addresses", sub);
		i++;
	}
	c->nr_ranges = n;
	qsort(c->ranges, n, sizeof(*c->ranges), range_cmp);
	for (i = 1; i < n; i++)
		if (c->ranges[i].lo <= c->ranges[i - 1].hi)
			return cfg_err(err, errlen, "%s.pools: ranges overlap", path);

	v = cJSON_GetObjectItemCaseSensitive(b, "router");
	if (v && (!cJSON_IsString(v) || !parse_ip(v->valuestring, &c->router)))
		return cfg_err(err, errlen, "%s.router: not an IPv4 address", path);
	v = cJSON_GetObjectItemCaseSensitive(b, "dns");
	snprintf(sub, sizeof(sub), "%s.dns", path);
	if (v && (rc = parse_addr_list(v, sub, c->dns, &c->nr_dns, err, errlen)))
		return rc;
	v = cJSON_GetObjectItemCaseSensitive(b, "ntp");
	snprintf(sub, sizeof(sub), "%s.ntp", path);
	if (v && (rc = parse_addr_list(v, sub, c->ntp, &c->nr_ntp, err, errlen)))
		return rc;
	v = cJSON_GetObjectItemCaseSensitive(b, "domain");
	if (v) {
		if (!cJSON_IsString(v) || !v->valuestring[0] || strlen(v->valuestring) > 253)
			return cfg_err(err, errlen, "%s.domain: a domain name of 1-253 characters", path);
		strcpy(c->domain, v->valuestring);
	}
	c->lease_time = 3600;
	c->offer_hold = 30;
	c->decline_hold = 600;
	c->max_leases_per_vm = 1;
	if ((rc = get_u32(b, "lease_time", path, 60, 0x7fffffff, &c->lease_time, err, errlen)) ||
	    (rc = get_u32(b, "t1", path, 1, 0x7fffffff, &c->t1, err, errlen)) ||
	    (rc = get_u32(b, "t2", path, 1, 0x7fffffff, &c->t2, err, errlen)) ||
	    (rc = get_u32(b, "mtu", path, 68, 65535, &mtu, err, errlen)) ||
	    (rc = get_u32(b, "offer_hold", path, 1, 3600, &c->offer_hold, err, errlen)) ||
	    (rc = get_u32(b, "decline_hold", path, 1, 86400, &c->decline_hold, err, errlen)) ||
	    (rc = get_u32(b, "max_leases_per_vm", path, 1, 16, &c->max_leases_per_vm, err, errlen)))
		return rc;
	c->mtu = (uint16_t)mtu;
	if (c->t1 && c->t1 >= c->lease_time)
		return cfg_err(err, errlen, "%s.t1: must be less than lease_time", path);
	if (c->t2 && (c->t2 >= c->lease_time || (c->t1 && c->t2 <= c->t1)))
		return cfg_err(err, errlen, "%s.t2: must be between t1 and lease_time", path);
	v = cJSON_GetObjectItemCaseSensitive(b, "rapid_commit");
	if (v && !cJSON_IsBool(v))
		return cfg_err(err, errlen, "%s.rapid_commit: true or false", path);
	c->rapid_commit = cJSON_IsTrue(v);
	v = cJSON_GetObjectItemCaseSensitive(b, "conflict_check");
	c->conflict_check = true;
	if (v) {
		if (!cJSON_IsString(v) || (strcmp(v->valuestring, "arp") &&
					   strcmp(v->valuestring, "off")))
			return cfg_err(err, errlen, "%s.conflict_check: \"arp\" or \"off\"", path);
		c->conflict_check = !strcmp(v->valuestring, "arp");
	}
	v = cJSON_GetObjectItemCaseSensitive(b, "unmanaged_clients");
	if (v) {
		if (!cJSON_IsString(v) || (strcmp(v->valuestring, "ignore") &&
					   strcmp(v->valuestring, "serve")))
			return cfg_err(err, errlen, "%s.unmanaged_clients: \"ignore\" or \"serve\"",
				       path);
		c->serve_unmanaged = !strcmp(v->valuestring, "serve");
	}

	/* The policy's VMs on this bridge. */
	n = 0;
	for (i = 0; set && i < set->nr_vms; i++)
		if (set->vms[i].has_mac && !strcmp(set->vms[i].bridge, c->name))
			n++;
	c->hosts = calloc(n + 1, sizeof(*c->hosts));
	if (!c->hosts)
		return -ENOMEM;
	for (i = 0; set && i < set->nr_vms; i++) {
		const struct policy_vm *vm = &set->vms[i];
		struct dhcp_host *h = &c->hosts[c->nr_hosts];

		if (!vm->has_mac || strcmp(vm->bridge, c->name))
			continue;
		for (j = 0; j < c->nr_hosts; j++)
			if (!memcmp(c->hosts[j].mac, vm->mac, 6))
				return cfg_err(err, errlen, "vm %u (%s): MAC also used by vm %u on "
					       "bridge %s", vm->id, vm->name, c->hosts[j].vm_id, c->name);
		memcpy(h->mac, vm->mac, 6);
		h->vm_id = vm->id;
		if (vm->has_ipv4) {
			h->ip = ntohl(vm->ipv4_be);
			if ((h->ip & c->mask) != c->net || h->ip == c->net || h->ip == bcast ||
			    h->ip == c->server_ip)
				return cfg_err(err, errlen, "vm %u (%s): ipv4 is not a host address of "
					       "%s.subnet", vm->id, vm->name, path);
			for (j = 0; j < c->nr_hosts; j++)
				if (c->hosts[j].ip == h->ip)
					return cfg_err(err, errlen, "vm %u (%s): ipv4 also reserved for "
						       "vm %u", vm->id, vm->name, c->hosts[j].vm_id);
		}
		c->nr_hosts++;
	}
	if (!c->nr_ranges && !c->nr_hosts)
		return cfg_err(err, errlen, "%s: no pools and no VM with a MAC on this bridge", path);
	return 0;
}

void dhcp_config_free(struct dhcp_config *cfg)
{
	size_t i;

	if (!cfg)
		return;
	for (i = 0; i < cfg->nr_bridges; i++) {
		free(cfg->bridges[i].ranges);
		free(cfg->bridges[i].hosts);
	}
	free(cfg->bridges);
	free(cfg);
}

int dhcp_config_parse(const cJSON *obj, const struct policy_set *set,
		      struct dhcp_config **out, char *err, size_t errlen)
{
	struct dhcp_config *cfg;
	const cJSON *bridges, *b, *it;
	size_t n;
	int rc;

	*out = NULL;
	if (err && errlen)
		err[0] = '\0';
	if (!cJSON_IsObject(obj))
		return cfg_err(err, errlen, "dhcp: must be an object");
	cJSON_ArrayForEach(it, obj)
		if (strcmp(it->string, "bridges") && strcmp(it->string, "description"))
			return cfg_err(err, errlen, "dhcp.%s: unknown key", it->string);
	bridges = cJSON_GetObjectItemCaseSensitive(obj, "bridges");
	if (!cJSON_IsObject(bridges))
		return cfg_err(err, errlen, "dhcp.bridges: required, an object keyed by bridge name");
	n = (size_t)cJSON_GetArraySize(bridges);
	cfg = calloc(1, sizeof(*cfg));
	if (!cfg)
		return -ENOMEM;
	cfg->bridges = calloc(n + 1, sizeof(*cfg->bridges));
	if (!cfg->bridges) {
		free(cfg);
		return -ENOMEM;
	}
	cJSON_ArrayForEach(b, bridges) {
		struct dhcp_bridge_cfg *c = &cfg->bridges[cfg->nr_bridges++];

		if (!b->string[0] || strlen(b->string) >= IF_NAMESIZE ||
		    strchr(b->string, '/') || strchr(b->string, ' ')) {
			rc = cfg_err(err, errlen, "dhcp.bridges.%.40s: not an interface name", b->string);
			goto fail;
		}
		strcpy(c->name, b->string);
		rc = parse_bridge(b, set, c, err, errlen);
		if (rc)
			goto fail;
	}
	*out = cfg;
	return 0;
fail:
	dhcp_config_free(cfg);
	return rc;
}

/* ---- the server ---- */

struct dhcp_bridge {
	struct dhcp_server *srv;
	struct dhcp_engine *eng;
	struct dhcp_io io;
	struct ev_source udp_src, arp_src;
	bool up;
};

/* How a message came in: the skb->mark its frame carried (SO_RCVMARK). */
struct rx_meta {
	uint32_t mark;
	bool has_mark;
};

struct probe {
	struct dhcp_bridge *br;
	uint32_t ip_be;
	uint64_t deadline;	/* dhcp_now_ms() */
	uint8_t tries;
	struct rx_meta meta;	/* the held request's origin */
	size_t len;
	uint8_t pkt[DHCP_MAX_LEN];
};

struct out_slot {
	struct dhcp_bridge *br;
	struct dhcp_reply r;
};

struct dhcp_server {
	int epfd;
	struct dhcp_hooks hooks;
	struct lease_store *ls;
	char path[PATH_MAX];
	size_t nr_bridges;
	struct dhcp_bridge **br;
	struct ev_source timer;
	struct dhcp_msg msg;
	struct out_slot *out;
	size_t nr_out;
	uint8_t (*rx)[DHCP_MAX_LEN];
	struct probe *probes;
	size_t nr_probes;
	uint64_t last_retry_ms;
	uint64_t commits, commit_fail;
	uint64_t stale_marks;		/* marked with a slot that has no VM now */
	char (*ctl)[CMSG_SPACE(sizeof(uint32_t))];	/* recvmmsg control, per message */
	struct dhcp_bridge *loading;	/* replay target, NULL for other bridges */
};

static int persist_cb(void *ctx, const struct lease_rec *rec)
{
	struct dhcp_server *srv = ctx;

	return lease_store_append(srv->ls, rec);
}

static void binding_cb(void *ctx, uint32_t vm_id, const uint8_t mac[6], uint32_t ip_be,
		       uint64_t expiry_ms, bool bound)
{
	struct dhcp_server *srv = ctx;
	uint64_t ns = 0, now;

	if (!srv->hooks.binding)
		return;
	if (bound && expiry_ms) {
		now = dhcp_now_ms();
		ns = clock_ns(CLOCK_BOOTTIME) + (expiry_ms > now ? (expiry_ms - now) * 1000000ULL : 0);
	}
	srv->hooks.binding(srv->hooks.ctx, vm_id, mac, ip_be, ns, bound);
}

static bool vm_holds_cb(void *ctx, uint32_t vm_id, uint32_t ip_be)
{
	struct dhcp_server *srv = ctx;

	return srv->hooks.vm_holds && srv->hooks.vm_holds(srv->hooks.ctx, vm_id, ip_be);
}

static void udp_handler(struct ev_source *src, uint32_t events);
static void arp_handler(struct ev_source *src, uint32_t events);
static void arm_timer(struct dhcp_server *srv);

static void bridge_down(struct dhcp_bridge *br)
{
	if (!br->up)
		return;
	ev_del(br->srv->epfd, &br->udp_src);
	if (br->io.arp_fd >= 0)
		ev_del(br->srv->epfd, &br->arp_src);
	dhcp_io_close(&br->io);
	br->up = false;
}

static int bridge_up(struct dhcp_bridge *br)
{
	const struct dhcp_bridge_cfg *c = dhcp_engine_cfg(br->eng);
	int err;

	if (br->up)
		return 0;
	err = dhcp_io_open(&br->io, c->name, c->conflict_check);
	if (err)
		return err;
	br->udp_src.fd = br->io.udp_fd;
	br->udp_src.handler = udp_handler;
	br->arp_src.fd = br->io.arp_fd;
	br->arp_src.handler = arp_handler;
	err = ev_add(br->srv->epfd, &br->udp_src, EPOLLIN);
	if (!err && br->io.arp_fd >= 0) {
		err = ev_add(br->srv->epfd, &br->arp_src, EPOLLIN);
		if (err)
			ev_del(br->srv->epfd, &br->udp_src);
	}
	if (err) {
		dhcp_io_close(&br->io);
		return err;
	}
	br->up = true;
	if (br->srv->hooks.vm_of_slot && !br->io.marks)
		log_warn("dhcp %s: this kernel does not report packet marks (SO_RCVMARK, Linux "
			 "5.19): clients are told apart by chaddr, which the tap programs pin "
			 "to each VM's MAC", c->name);
	log_info("dhcp %s: serving", c->name);
	return 0;
}

static struct dhcp_bridge *bridge_new(struct dhcp_server *srv, const struct dhcp_bridge_cfg *c)
{
	struct dhcp_engine_ops ops = { .ctx = srv, .persist = persist_cb, .binding = binding_cb,
				       .vm_holds = vm_holds_cb };
	struct dhcp_bridge *br = calloc(1, sizeof(*br));

	if (!br)
		return NULL;
	br->srv = srv;
	dhcp_io_init(&br->io);
	if (dhcp_engine_new(c, &ops, &br->eng)) {
		free(br);
		return NULL;
	}
	return br;
}

static void bridge_free(struct dhcp_bridge *br)
{
	if (!br)
		return;
	bridge_down(br);
	dhcp_engine_free(br->eng);
	free(br);
}

static void replay_cb(void *ctx, const struct lease_rec *rec)
{
	struct dhcp_server *srv = ctx;
	uint64_t now = dhcp_now_ms();
	size_t i;

	for (i = 0; i < srv->nr_bridges; i++)
		if (!strncmp(rec->bridge, dhcp_engine_cfg(srv->br[i]->eng)->name, IF_NAMESIZE)) {
			dhcp_engine_load(srv->br[i]->eng, rec, now);
			return;
		}
}

struct compact_it {
	struct dhcp_server *srv;
	size_t bridge, pos;
};

static bool compact_next(void *ctx, struct lease_rec *rec)
{
	struct compact_it *it = ctx;

	while (it->bridge < it->srv->nr_bridges) {
		if (dhcp_engine_next_rec(it->srv->br[it->bridge]->eng, &it->pos, rec))
			return true;
		it->bridge++;
		it->pos = 0;
	}
	return false;
}

static int compact(struct dhcp_server *srv)
{
	struct compact_it it = { .srv = srv };

	return lease_store_compact(srv->ls, compact_next, &it);
}

static size_t live_leases(const struct dhcp_server *srv)
{
	size_t i, n = 0;

	for (i = 0; i < srv->nr_bridges; i++)
		n += dhcp_engine_pool_used(srv->br[i]->eng) + 1;
	return n;
}

/* Commit the batch's lease records, then send its replies.  A reply that
 * carries a lease never leaves before its record is on disk. */
static void flush_out(struct dhcp_server *srv)
{
	bool synced = true;
	size_t i;

	if (lease_store_pending(srv->ls)) {
		srv->commits++;
		if (lease_store_commit(srv->ls)) {
			srv->commit_fail++;
			synced = false;
		}
	}
	for (i = 0; i < srv->nr_out; i++) {
		struct out_slot *o = &srv->out[i];
		uint32_t src = htonl(dhcp_engine_cfg(o->br->eng)->server_ip);
		int err;

		if (o->r.commit && !synced)
			continue;	/* the client retries; the lease stays in memory */
		if (!o->br->up)
			continue;
		err = dhcp_io_send(&o->br->io, src, &o->r);
		if (err && err != -EAGAIN)
			log_debug("dhcp: send: %s", strerror(-err));
	}
	srv->nr_out = 0;
	if (synced && lease_store_size(srv->ls) > COMPACT_MIN &&
	    lease_store_size(srv->ls) > 8 * LEASE_REC_SIZE * live_leases(srv))
		compact(srv);
}

static void hold_for_probe(struct dhcp_server *srv, struct dhcp_bridge *br, uint32_t ip_be,
			   const uint8_t *pkt, size_t len, const struct rx_meta *meta,
			   uint8_t tries, uint64_t now)
{
	struct probe *p = NULL;
	size_t i;

	for (i = 0; i < srv->nr_probes; i++)
		if (srv->probes[i].br == br && srv->probes[i].ip_be == ip_be) {
			p = &srv->probes[i];	/* a retransmission: keep the newest copy */
			break;
		}
	if (!p) {
		if (srv->nr_probes == MAX_PROBES)
			return;		/* the client retransmits */
		p = &srv->probes[srv->nr_probes++];
		p->br = br;
		p->ip_be = ip_be;
		p->deadline = now + PROBE_WAIT_MS;
		p->tries = tries;
		dhcp_io_probe(&br->io, ip_be);
	}
	memcpy(p->pkt, pkt, len);
	p->len = len;
	p->meta = *meta;
}

/*
 * Which VM sent a message: the one whose slot the tap program wrote into
 * the frame's mark.  Returns NULL when the server does not identify VMs
 * (no vm_of_slot hook: the standalone server), else *o; -ESTALE when the
 * slot has no VM now (it left between the frame and this read).
 */
static int origin_of(struct dhcp_server *srv, const struct dhcp_bridge *br,
		     const struct rx_meta *meta, struct dhcp_origin *o,
		     const struct dhcp_origin **out)
{
	*out = NULL;
	if (!srv->hooks.vm_of_slot || !br->io.marks)
		return 0;
	o->vm_id = 0;
	if (meta->has_mark && (meta->mark & RAYOS_DHCP_MARK_MASK) == RAYOS_DHCP_MARK_TAG) {
		o->vm_id = srv->hooks.vm_of_slot(srv->hooks.ctx,
						 meta->mark & ~RAYOS_DHCP_MARK_MASK);
		if (!o->vm_id) {
			srv->stale_marks++;
			return -ESTALE;
		}
	}
	*out = o;
	return 0;
}

static void handle_one(struct dhcp_server *srv, struct dhcp_bridge *br, const uint8_t *pkt,
		       size_t len, const struct rx_meta *meta, uint64_t now, uint8_t tries)
{
	const struct dhcp_origin *origin;
	struct dhcp_origin from;
	struct out_slot *o;

	if (srv->nr_out == MAX_OUT)
		flush_out(srv);
	if (origin_of(srv, br, meta, &from, &origin))
		return;
	if (dhcp_parse(&srv->msg, pkt, len)) {
		log_debug("dhcp %s: dropped malformed message: %s",
			  dhcp_engine_cfg(br->eng)->name, srv->msg.err);
		return;
	}
	o = &srv->out[srv->nr_out];
	o->br = br;
	if (dhcp_engine_handle_from(br->eng, &srv->msg, origin, now, &o->r))
		return;
	if (o->r.tx == DHCP_TX_PROBE) {
		hold_for_probe(srv, br, o->r.probe_ip_be, pkt, len, meta, tries, now);
	} else if (o->r.commit) {
		srv->nr_out++;		/* after the batch's commit */
	} else if (o->r.tx != DHCP_TX_NONE && br->up) {
		/* OFFER, NAK, INFORM's ACK: nothing to make durable. */
		int err = dhcp_io_send(&br->io, htonl(dhcp_engine_cfg(br->eng)->server_ip), &o->r);

		if (err && err != -EAGAIN)
			log_debug("dhcp: send: %s", strerror(-err));
	}
}

static void udp_handler(struct ev_source *src, uint32_t events)
{
	struct dhcp_bridge *br = (struct dhcp_bridge *)((char *)src -
				 offsetof(struct dhcp_bridge, udp_src));
	struct dhcp_server *srv = br->srv;
	struct mmsghdr msgs[RX_BATCH];
	struct iovec iov[RX_BATCH];
	uint64_t now = dhcp_now_ms();
	int round, n, i;

	(void)events;
	for (round = 0; round < RX_ROUNDS; round++) {
		for (i = 0; i < RX_BATCH; i++) {
			iov[i].iov_base = srv->rx[i];
			iov[i].iov_len = DHCP_MAX_LEN;
			memset(&msgs[i], 0, sizeof(msgs[i]));
			msgs[i].msg_hdr.msg_iov = &iov[i];
			msgs[i].msg_hdr.msg_iovlen = 1;
			msgs[i].msg_hdr.msg_control = srv->ctl[i];
			msgs[i].msg_hdr.msg_controllen = sizeof(srv->ctl[i]);
		}
		n = recvmmsg(br->io.udp_fd, msgs, RX_BATCH, MSG_DONTWAIT, NULL);
		if (n <= 0)
			break;
		for (i = 0; i < n; i++) {
			struct rx_meta meta = { 0 };
			struct cmsghdr *cm;

			if (msgs[i].msg_hdr.msg_flags & (MSG_TRUNC | MSG_CTRUNC))
				continue;
			for (cm = CMSG_FIRSTHDR(&msgs[i].msg_hdr); cm;
			     cm = CMSG_NXTHDR(&msgs[i].msg_hdr, cm))
				if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SO_MARK &&
				    cm->cmsg_len == CMSG_LEN(sizeof(uint32_t))) {
					memcpy(&meta.mark, CMSG_DATA(cm), sizeof(meta.mark));
					meta.has_mark = true;
				}
			handle_one(srv, br, srv->rx[i], msgs[i].msg_len, &meta, now, 0);
		}
		if (n < RX_BATCH)
			break;
	}
	flush_out(srv);
	if (srv->nr_probes)
		arm_timer(srv);
}

static void arp_handler(struct ev_source *src, uint32_t events)
{
	struct dhcp_bridge *br = (struct dhcp_bridge *)((char *)src -
				 offsetof(struct dhcp_bridge, arp_src));
	struct dhcp_server *srv = br->srv;
	uint64_t now = dhcp_now_ms();
	struct arp_pkt a;
	size_t i;

	(void)events;
	while (dhcp_io_read_arp(&br->io, &a) > 0) {
		for (i = 0; i < srv->nr_probes; i++) {
			struct probe *p = &srv->probes[i];

			/* A packet from the address is a conflict.  RFC 5227
			 * 2.1.1 also counts another host probing for it, but
			 * on a guest bridge any guest may send probes (sender
			 * 0.0.0.0) for any address, and answering each of our
			 * probes with one would quarantine the pool; a guest's
			 * ARP from an address is checked by its tap program. */
			if (p->br != br || a.spa_be != p->ip_be)
				continue;
			dhcp_engine_probe_result(br->eng, p->ip_be, true, now);
			/* Ask again: the engine picks another address. */
			p->deadline = 0;
			p->tries++;
		}
	}
	dhcp_server_tick(srv, 0);
}

static void run_probes(struct dhcp_server *srv, uint64_t now)
{
	size_t i = 0;

	while (i < srv->nr_probes) {
		struct probe *p = &srv->probes[i];
		struct probe done;

		if (p->deadline > now) {
			i++;
			continue;
		}
		done = *p;
		srv->probes[i] = srv->probes[--srv->nr_probes];
		if (done.deadline)
			dhcp_engine_probe_result(done.br->eng, done.ip_be, false, now);
		if (done.tries < PROBE_TRIES)
			handle_one(srv, done.br, done.pkt, done.len, &done.meta, now, done.tries);
	}
}

int dhcp_server_next_timeout_ms(const struct dhcp_server *srv)
{
	uint64_t now = dhcp_now_ms(), next = now + 1000;
	size_t i;

	for (i = 0; i < srv->nr_probes; i++)
		if (srv->probes[i].deadline < next)
			next = srv->probes[i].deadline;
	for (i = 0; i < srv->nr_bridges; i++) {
		uint64_t d = dhcp_engine_tick(srv->br[i]->eng, 0);

		if (d && d < next)
			next = d;
	}
	return next > now ? (int)(next - now) : 0;
}

static void arm_timer(struct dhcp_server *srv)
{
	struct itimerspec its = { 0 };
	int ms = dhcp_server_next_timeout_ms(srv);

	if (ms < 1)
		ms = 1;
	its.it_value.tv_sec = ms / 1000;
	its.it_value.tv_nsec = (long)(ms % 1000) * 1000000L;
	timerfd_settime(srv->timer.fd, 0, &its, NULL);
}

void dhcp_server_tick(struct dhcp_server *srv, uint64_t now_ms)
{
	uint64_t now = dhcp_now_ms();
	size_t i;

	(void)now_ms;
	run_probes(srv, now);
	for (i = 0; i < srv->nr_bridges; i++)
		dhcp_engine_tick(srv->br[i]->eng, now);
	/* Bridges created after the server started. */
	if (now - srv->last_retry_ms >= 1000) {
		srv->last_retry_ms = now;
		for (i = 0; i < srv->nr_bridges; i++)
			if (!srv->br[i]->up)
				bridge_up(srv->br[i]);
	}
	flush_out(srv);
	arm_timer(srv);
}

static void timer_handler(struct ev_source *src, uint32_t events)
{
	struct dhcp_server *srv = (struct dhcp_server *)((char *)src -
				  offsetof(struct dhcp_server, timer));
	uint64_t expirations;

	(void)events;
	if (read(src->fd, &expirations, sizeof(expirations)) < 0 && errno != EAGAIN)
		log_debug("dhcp: timerfd: %s", strerror(errno));
	dhcp_server_tick(srv, 0);
}

static int add_bridges(struct dhcp_server *srv, const struct dhcp_config *cfg)
{
	size_t i;

	srv->br = calloc(cfg->nr_bridges + 1, sizeof(*srv->br));
	if (!srv->br)
		return -ENOMEM;
	for (i = 0; i < cfg->nr_bridges; i++) {
		srv->br[i] = bridge_new(srv, &cfg->bridges[i]);
		if (!srv->br[i])
			return -ENOMEM;
		srv->nr_bridges++;
	}
	return 0;
}

int dhcp_server_open(const struct dhcp_config *cfg, const char *state_dir, int epfd,
		     const struct dhcp_hooks *hooks, struct dhcp_server **out)
{
	struct lease_load_stats st;
	struct dhcp_server *srv;
	uint64_t now;
	size_t i;
	int err = -ENOMEM;

	*out = NULL;
	srv = calloc(1, sizeof(*srv));
	if (!srv)
		return -ENOMEM;
	srv->epfd = epfd;
	srv->timer.fd = -1;
	if (hooks)
		srv->hooks = *hooks;
	srv->out = calloc(MAX_OUT, sizeof(*srv->out));
	srv->rx = calloc(RX_BATCH, sizeof(*srv->rx));
	srv->ctl = calloc(RX_BATCH, sizeof(*srv->ctl));
	srv->probes = calloc(MAX_PROBES, sizeof(*srv->probes));
	if (!srv->out || !srv->rx || !srv->ctl || !srv->probes)
		goto fail;
	if (snprintf(srv->path, sizeof(srv->path), "%s/%s", state_dir, LEASE_FILE) >=
	    (int)sizeof(srv->path)) {
		err = -ENAMETOOLONG;
		goto fail;
	}
	err = add_bridges(srv, cfg);
	if (err)
		goto fail;
	err = lease_store_open(srv->path, replay_cb, srv, &st, &srv->ls);
	if (err)
		goto fail;
	log_info("dhcp: %zu lease records replayed from %s", st.records, srv->path);
	/* Start from a clean log: no torn tail, no records of old bridges. */
	err = compact(srv);
	if (err)
		goto fail;
	now = dhcp_now_ms();
	for (i = 0; i < srv->nr_bridges; i++)
		dhcp_engine_start(srv->br[i]->eng, now);

	srv->timer.fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (srv->timer.fd < 0) {
		err = -errno;
		goto fail;
	}
	srv->timer.handler = timer_handler;
	err = ev_add(epfd, &srv->timer, EPOLLIN);
	if (err) {
		close(srv->timer.fd);
		srv->timer.fd = -1;
		goto fail;
	}
	for (i = 0; i < srv->nr_bridges; i++)
		if (bridge_up(srv->br[i]) == -ENODEV)
			log_warn("dhcp %s: no such interface yet; retrying every second",
				 dhcp_engine_cfg(srv->br[i]->eng)->name);
	srv->last_retry_ms = dhcp_now_ms();
	arm_timer(srv);
	*out = srv;
	return 0;
fail:
	dhcp_server_close(srv);
	return err;
}

int dhcp_server_reconfigure(struct dhcp_server *srv, const struct dhcp_config *cfg)
{
	struct dhcp_bridge **nbr;
	uint64_t now = dhcp_now_ms();
	size_t i, j;
	bool *kept;
	int err = -ENOMEM;

	nbr = calloc(cfg->nr_bridges + 1, sizeof(*nbr));
	kept = calloc(srv->nr_bridges + 1, sizeof(*kept));
	if (!nbr || !kept)
		goto out;
	for (i = 0; i < cfg->nr_bridges; i++) {
		nbr[i] = bridge_new(srv, &cfg->bridges[i]);
		if (!nbr[i])
			goto out;
	}
	/* Nothing can fail from here on. */
	flush_out(srv);
	srv->nr_probes = 0;	/* held requests are retransmitted by their clients */
	for (i = 0; i < cfg->nr_bridges; i++) {
		for (j = 0; j < srv->nr_bridges; j++) {
			const struct dhcp_bridge_cfg *oc = dhcp_engine_cfg(srv->br[j]->eng);

			if (strcmp(oc->name, cfg->bridges[i].name))
				continue;
			dhcp_engine_adopt(nbr[i]->eng, srv->br[j]->eng, now);
			kept[j] = true;
			/* Keep the sockets unless the ARP socket comes or goes. */
			if (srv->br[j]->up && oc->conflict_check == cfg->bridges[i].conflict_check) {
				nbr[i]->io = srv->br[j]->io;
				nbr[i]->up = true;
				ev_del(srv->epfd, &srv->br[j]->udp_src);
				if (srv->br[j]->io.arp_fd >= 0)
					ev_del(srv->epfd, &srv->br[j]->arp_src);
				srv->br[j]->up = false;
				dhcp_io_init(&srv->br[j]->io);
				nbr[i]->udp_src = (struct ev_source){ nbr[i]->io.udp_fd, udp_handler };
				nbr[i]->arp_src = (struct ev_source){ nbr[i]->io.arp_fd, arp_handler };
				ev_add(srv->epfd, &nbr[i]->udp_src, EPOLLIN);
				if (nbr[i]->io.arp_fd >= 0)
					ev_add(srv->epfd, &nbr[i]->arp_src, EPOLLIN);
			}
			break;
		}
	}
	for (j = 0; j < srv->nr_bridges; j++) {
		if (!kept[j]) {
			/* A bridge that lost its DHCP: its bindings end. */
			struct dhcp_lease_info li;
			size_t pos = 0;

			while (dhcp_engine_next_lease(srv->br[j]->eng, &pos, &li))
				if (li.state == DHCP_L_BOUND)
					binding_cb(srv, li.vm_id, li.mac, li.ip_be, 0, false);
		}
		bridge_free(srv->br[j]);
	}
	free(srv->br);
	srv->br = nbr;
	srv->nr_bridges = cfg->nr_bridges;
	nbr = NULL;
	for (i = 0; i < srv->nr_bridges; i++)
		bridge_up(srv->br[i]);
	/* New reservations may have taken addresses: say so on disk. */
	compact(srv);
	arm_timer(srv);
	err = 0;
out:
	if (nbr) {
		for (i = 0; i < cfg->nr_bridges; i++)
			bridge_free(nbr[i]);
		free(nbr);
	}
	free(kept);
	return err;
}

static void ip_str(uint32_t ip_be, char *buf)
{
	struct in_addr a = { .s_addr = ip_be };

	inet_ntop(AF_INET, &a, buf, INET_ADDRSTRLEN);
}

static const char *state_name(uint8_t s)
{
	switch (s) {
	case DHCP_L_OFFERED: return "offered";
	case DHCP_L_BOUND: return "bound";
	case DHCP_L_QUARANTINE: return "quarantined";
	default: return "free";
	}
}

cJSON *dhcp_server_status_json(struct dhcp_server *srv)
{
	cJSON *root = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(root, "bridges");
	size_t i;

	cJSON_AddStringToObject(root, "lease_db", srv->path);
	cJSON_AddNumberToObject(root, "lease_db_bytes", (double)lease_store_size(srv->ls));
	cJSON_AddNumberToObject(root, "commits", (double)srv->commits);
	cJSON_AddNumberToObject(root, "commit_failures", (double)srv->commit_fail);
	cJSON_AddNumberToObject(root, "probes_pending", (double)srv->nr_probes);
	cJSON_AddStringToObject(root, "clients_identified_by",
				srv->hooks.vm_of_slot ? "tap" : "chaddr");
	cJSON_AddNumberToObject(root, "stale_marks", (double)srv->stale_marks);
	for (i = 0; i < srv->nr_bridges; i++) {
		const struct dhcp_bridge_cfg *c = dhcp_engine_cfg(srv->br[i]->eng);
		const struct dhcp_engine_stats *st = dhcp_engine_stats(srv->br[i]->eng);
		cJSON *b = cJSON_CreateObject(), *rx;
		char ip[INET_ADDRSTRLEN];
		unsigned int t;

		cJSON_AddItemToArray(arr, b);
		cJSON_AddStringToObject(b, "name", c->name);
		cJSON_AddBoolToObject(b, "up", srv->br[i]->up);
		ip_str(htonl(c->server_ip), ip);
		cJSON_AddStringToObject(b, "server_ip", ip);
		cJSON_AddNumberToObject(b, "pool_size", (double)dhcp_engine_pool_size(srv->br[i]->eng));
		cJSON_AddNumberToObject(b, "pool_used", (double)dhcp_engine_pool_used(srv->br[i]->eng));
		rx = cJSON_AddObjectToObject(b, "received");
		for (t = DHCPDISCOVER; t <= DHCPINFORM; t++)
			cJSON_AddNumberToObject(rx, dhcp_msg_type_name(t), (double)st->rx[t]);
		cJSON_AddNumberToObject(b, "offers", (double)st->offers);
		cJSON_AddNumberToObject(b, "acks", (double)st->acks);
		cJSON_AddNumberToObject(b, "naks", (double)st->naks);
		cJSON_AddNumberToObject(b, "ignored", (double)st->ignored);
		cJSON_AddNumberToObject(b, "exhausted", (double)st->exhausted);
		cJSON_AddNumberToObject(b, "conflicts", (double)st->conflicts);
		cJSON_AddNumberToObject(b, "declines", (double)st->declines);
		cJSON_AddNumberToObject(b, "declines_unquarantined", (double)st->decline_limited);
		cJSON_AddNumberToObject(b, "ignored_unmanaged", (double)st->unmanaged);
		cJSON_AddNumberToObject(b, "ignored_foreign_chaddr", (double)st->foreign_chaddr);
		cJSON_AddNumberToObject(b, "ignored_vm_limit", (double)st->vm_limit);
		cJSON_AddNumberToObject(b, "naks_no_record", (double)st->no_record);
		cJSON_AddNumberToObject(b, "max_leases_per_vm", c->max_leases_per_vm);
		cJSON_AddStringToObject(b, "unmanaged_clients",
					c->serve_unmanaged ? "serve" : "ignore");
	}
	return root;
}

cJSON *dhcp_server_leases_json(struct dhcp_server *srv)
{
	cJSON *arr = cJSON_CreateArray();
	size_t i;

	for (i = 0; i < srv->nr_bridges; i++) {
		struct dhcp_lease_info li;
		size_t pos = 0;

		while (dhcp_engine_next_lease(srv->br[i]->eng, &pos, &li)) {
			cJSON *o = cJSON_CreateObject();
			char ip[INET_ADDRSTRLEN], mac[18];

			ip_str(li.ip_be, ip);
			snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", li.mac[0],
				 li.mac[1], li.mac[2], li.mac[3], li.mac[4], li.mac[5]);
			cJSON_AddStringToObject(o, "bridge", dhcp_engine_cfg(srv->br[i]->eng)->name);
			cJSON_AddStringToObject(o, "ip", ip);
			if (li.state != DHCP_L_QUARANTINE)
				cJSON_AddStringToObject(o, "mac", mac);
			cJSON_AddStringToObject(o, "state", state_name(li.state));
			if (li.vm_id)
				cJSON_AddNumberToObject(o, "vm_id", li.vm_id);
			cJSON_AddBoolToObject(o, "static", li.is_static);
			if (li.expiry_ms)
				cJSON_AddNumberToObject(o, "expires", (double)(li.expiry_ms / 1000));
			cJSON_AddItemToArray(arr, o);
		}
	}
	return arr;
}

int dhcp_server_release(struct dhcp_server *srv, uint32_t ip_be, const uint8_t *mac)
{
	uint64_t now = dhcp_now_ms();
	int err = -ENOENT;
	size_t i;

	if (!ip_be && !mac)
		return -EINVAL;
	for (i = 0; i < srv->nr_bridges && err == -ENOENT; i++)
		err = dhcp_engine_release(srv->br[i]->eng, ip_be, mac, now);
	if (!err)
		err = lease_store_commit(srv->ls);
	return err;
}

void dhcp_server_close(struct dhcp_server *srv)
{
	size_t i;

	if (!srv)
		return;
	if (srv->timer.fd >= 0) {
		ev_del(srv->epfd, &srv->timer);
		close(srv->timer.fd);
	}
	for (i = 0; i < srv->nr_bridges; i++)
		bridge_free(srv->br[i]);
	free(srv->br);
	if (srv->ls)
		lease_store_close(srv->ls);
	free(srv->out);
	free(srv->rx);
	free(srv->ctl);
	free(srv->probes);
	free(srv);
}
