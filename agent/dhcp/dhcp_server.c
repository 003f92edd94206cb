// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * DHCP server engine (RFC 2131 4.3): one instance per guest bridge.  Leases
 * live in one array indexed through open-addressing hash tables: by address,
 * by owning VM (each VM's few leases chained from there), and by MAC for
 * clients that are no VM; free pool addresses are a bitmap searched from a
 * moving cursor, so every request costs O(1) amortized and no allocation
 * once the tables are sized.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include "agent/core/log.h"
#include "agent/dhcp/dhcp_server.h"

#define LF_STATIC	(1U << 0)	/* the policy's address for this VM */
#define LF_PROBING	(1U << 1)	/* ARP probe in flight */
#define LF_PROBED	(1U << 2)	/* the address passed a probe for this offer */

#define NO_LEASE	UINT32_MAX

/* Declined addresses one client may keep in quarantine at a time: beyond
 * that a DECLINE only frees the lease.  Otherwise a guest could take the
 * pool out of service one DECLINE at a time. */
#define DECLINES_PER_CLIENT	2

struct lease {
	uint8_t mac[6];		/* the client's chaddr (where replies go) */
	uint8_t state;		/* enum dhcp_lease_state */
	uint8_t flags;		/* LF_* */
	uint32_t ip;		/* host order */
	uint32_t vm_id;		/* owner; 0: a client that is no VM, keyed by mac */
	uint32_t next_free;	/* free-list link while unused */
	uint32_t next_vm;	/* the owner VM's next lease */
	bool used;
	uint64_t expiry_ms;
	/* A quarantine that a DECLINE caused: whose it counts against. */
	uint32_t decl_vm;
	uint8_t decl_mac[6];
};

/* The client a message is from: its VM (0 for none), its chaddr, and the
 * VM's entry on this bridge if the policy gives it one. */
struct client {
	uint32_t vm_id;
	const uint8_t *mac;
	const struct dhcp_host *host;
};

/* Open addressing, linear probing, backward-shift deletion; key 0 = empty. */
struct htab {
	uint64_t *keys;
	uint32_t *vals;
	size_t mask, n;
};

struct dhcp_engine {
	struct dhcp_bridge_cfg cfg;
	struct dhcp_engine_ops ops;
	struct lease *leases;
	size_t nr_slots, cap_slots;
	uint32_t free_head;
	struct htab by_mac, by_ip, by_vm, host_by_mac, host_by_ip, host_by_vm;
	uint64_t *bitmap;		/* 1 = address unavailable */
	size_t nr_addrs, nr_words, cursor, used;
	size_t *range_base;		/* index of each range's first address */
	uint64_t next_deadline;
	uint64_t last_exhaust_log;
	struct dhcp_engine_stats st;
};

/* ---- hash tables ---- */

static uint64_t hash64(uint64_t k)
{
	k ^= k >> 33;
	k *= 0xff51afd7ed558ccdULL;
	k ^= k >> 33;
	k *= 0xc4ceb9fe1a85ec53ULL;
	k ^= k >> 33;
	return k;
}

static int htab_init(struct htab *h, size_t want)
{
	size_t sz = 16;

	while (sz < want * 2)
		sz <<= 1;
	h->keys = calloc(sz, sizeof(*h->keys));
	h->vals = calloc(sz, sizeof(*h->vals));
	if (!h->keys || !h->vals)
		return -ENOMEM;
	h->mask = sz - 1;
	h->n = 0;
	return 0;
}

static void htab_free(struct htab *h)
{
	free(h->keys);
	free(h->vals);
	memset(h, 0, sizeof(*h));
}

static uint32_t htab_get(const struct htab *h, uint64_t key)
{
	size_t i = hash64(key) & h->mask;

	while (h->keys[i]) {
		if (h->keys[i] == key)
			return h->vals[i];
		i = (i + 1) & h->mask;
	}
	return NO_LEASE;
}

static int htab_put(struct htab *h, uint64_t key, uint32_t val);

static int htab_grow(struct htab *h)
{
	struct htab n;
	size_t i;
	int err;

	err = htab_init(&n, (h->mask + 1));
	if (err) {
		htab_free(&n);
		return err;
	}
	for (i = 0; i <= h->mask; i++)
		if (h->keys[i])
			htab_put(&n, h->keys[i], h->vals[i]);
	htab_free(h);
	*h = n;
	return 0;
}

static int htab_put(struct htab *h, uint64_t key, uint32_t val)
{
	size_t i;

	if ((h->n + 1) * 2 > h->mask + 1) {
		int err = htab_grow(h);

		if (err)
			return err;
	}
	i = hash64(key) & h->mask;
	while (h->keys[i] && h->keys[i] != key)
		i = (i + 1) & h->mask;
	if (!h->keys[i])
		h->n++;
	h->keys[i] = key;
	h->vals[i] = val;
	return 0;
}

static void htab_del(struct htab *h, uint64_t key)
{
	size_t i = hash64(key) & h->mask, j, home;

	while (h->keys[i] && h->keys[i] != key)
		i = (i + 1) & h->mask;
	if (!h->keys[i])
		return;
	h->keys[i] = 0;
	h->n--;
	/* Shift later members of the cluster back so lookups never stop at
	 * the hole. */
	for (j = (i + 1) & h->mask; h->keys[j]; j = (j + 1) & h->mask) {
		home = hash64(h->keys[j]) & h->mask;
		if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
			h->keys[i] = h->keys[j];
			h->vals[i] = h->vals[j];
			h->keys[j] = 0;
			i = j;
		}
	}
}

static uint64_t mac_key(const uint8_t mac[6])
{
	uint64_t k = 1ULL << 48;
	int i;

	for (i = 0; i < 6; i++)
		k |= (uint64_t)mac[i] << (8 * i);
	return k;
}

static uint64_t ip_key(uint32_t ip)
{
	return (1ULL << 32) | ip;
}

static uint64_t vm_key(uint32_t vm_id)
{
	return (2ULL << 48) | vm_id;
}

/* ---- pool addresses ---- */

static bool in_subnet(const struct dhcp_engine *e, uint32_t ip)
{
	return (ip & e->cfg.mask) == e->cfg.net;
}

/* Addresses nobody may lease: the server, the network and broadcast. */
static bool addr_special(const struct dhcp_engine *e, uint32_t ip)
{
	return ip == e->cfg.server_ip || ip == e->cfg.net ||
	       (e->cfg.prefix < 31 && ip == (e->cfg.net | ~e->cfg.mask));
}

static bool pool_index(const struct dhcp_engine *e, uint32_t ip, size_t *idx)
{
	size_t lo = 0, hi = e->cfg.nr_ranges;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		const struct dhcp_range *r = &e->cfg.ranges[mid];

		if (ip < r->lo) {
			hi = mid;
		} else if (ip > r->hi) {
			lo = mid + 1;
		} else {
			*idx = e->range_base[mid] + (ip - r->lo);
			return true;
		}
	}
	return false;
}

static uint32_t pool_addr(const struct dhcp_engine *e, size_t idx)
{
	size_t lo = 0, hi = e->cfg.nr_ranges;

	/* Last range whose base is <= idx. */
	while (hi - lo > 1) {
		size_t mid = (lo + hi) / 2;

		if (e->range_base[mid] <= idx)
			lo = mid;
		else
			hi = mid;
	}
	return e->cfg.ranges[lo].lo + (uint32_t)(idx - e->range_base[lo]);
}

/* Permanently unavailable pool addresses: special or some VM's static one. */
static bool addr_reserved(const struct dhcp_engine *e, uint32_t ip)
{
	return addr_special(e, ip) || htab_get(&e->host_by_ip, ip_key(ip)) != NO_LEASE;
}

static void bit_set(struct dhcp_engine *e, uint32_t ip)
{
	size_t i;

	if (!pool_index(e, ip, &i) || (e->bitmap[i / 64] & (1ULL << (i % 64))))
		return;
	e->bitmap[i / 64] |= 1ULL << (i % 64);
	e->used++;
}

static void bit_clear(struct dhcp_engine *e, uint32_t ip)
{
	size_t i;

	if (!pool_index(e, ip, &i) || addr_reserved(e, ip) ||
	    !(e->bitmap[i / 64] & (1ULL << (i % 64))))
		return;
	e->bitmap[i / 64] &= ~(1ULL << (i % 64));
	e->used--;
}

static bool pool_alloc(struct dhcp_engine *e, uint32_t *ip)
{
	size_t k, w;

	for (k = 0; k < e->nr_words; k++) {
		uint64_t freebits;

		w = (e->cursor + k) % e->nr_words;
		freebits = ~e->bitmap[w];
		if (freebits) {
			e->cursor = w;
			*ip = pool_addr(e, w * 64 + (size_t)__builtin_ctzll(freebits));
			return true;
		}
	}
	return false;
}

/* ---- leases ---- */

static bool holds_addr(uint8_t state)
{
	return state == DHCP_L_OFFERED || state == DHCP_L_BOUND || state == DHCP_L_QUARANTINE;
}

static struct lease *L(struct dhcp_engine *e, uint32_t idx)
{
	return &e->leases[idx];
}

static const struct dhcp_host *host_of_mac(const struct dhcp_engine *e, const uint8_t mac[6])
{
	uint32_t i = htab_get(&e->host_by_mac, mac_key(mac));

	return i == NO_LEASE ? NULL : &e->cfg.hosts[i];
}

static const struct dhcp_host *host_of_vm(const struct dhcp_engine *e, uint32_t vm_id)
{
	uint32_t i = vm_id ? htab_get(&e->host_by_vm, vm_key(vm_id)) : NO_LEASE;

	return i == NO_LEASE ? NULL : &e->cfg.hosts[i];
}

static void note_deadline(struct dhcp_engine *e, uint64_t t)
{
	if (t && (!e->next_deadline || t < e->next_deadline))
		e->next_deadline = t;
}

static void set_state(struct dhcp_engine *e, uint32_t idx, uint8_t state, uint64_t expiry)
{
	struct lease *l = L(e, idx);
	bool had = holds_addr(l->state), has = holds_addr(state);

	l->state = state;
	l->expiry_ms = expiry;
	if (had && !has)
		bit_clear(e, l->ip);
	else if (!had && has)
		bit_set(e, l->ip);
	if (state != DHCP_L_OFFERED)
		l->flags &= (uint8_t)~(LF_PROBING | LF_PROBED);
	note_deadline(e, expiry);
}

static bool lease_has_mac(const struct lease *l)
{
	static const uint8_t zero[6];

	return l->state != DHCP_L_QUARANTINE && memcmp(l->mac, zero, 6);
}

/* Enter lease idx under its owner: the VM's chain, or the MAC table for a
 * client that is no VM.  Quarantines belong to no one. */
static int owner_add(struct dhcp_engine *e, uint32_t idx)
{
	struct lease *l = L(e, idx);
	uint32_t head;

	l->next_vm = NO_LEASE;
	if (l->state == DHCP_L_QUARANTINE)
		return 0;
	if (l->vm_id) {
		head = htab_get(&e->by_vm, vm_key(l->vm_id));
		if (htab_put(&e->by_vm, vm_key(l->vm_id), idx))
			return -ENOMEM;
		l->next_vm = head;
		return 0;
	}
	return lease_has_mac(l) ? htab_put(&e->by_mac, mac_key(l->mac), idx) : 0;
}

static void owner_del(struct dhcp_engine *e, uint32_t idx)
{
	struct lease *l = L(e, idx);
	uint32_t *link, head;

	if (l->state == DHCP_L_QUARANTINE)
		return;
	if (!l->vm_id) {
		if (lease_has_mac(l) && htab_get(&e->by_mac, mac_key(l->mac)) == idx)
			htab_del(&e->by_mac, mac_key(l->mac));
		return;
	}
	head = htab_get(&e->by_vm, vm_key(l->vm_id));
	if (head == idx) {
		if (l->next_vm == NO_LEASE)
			htab_del(&e->by_vm, vm_key(l->vm_id));
		else
			htab_put(&e->by_vm, vm_key(l->vm_id), l->next_vm);	/* replaces: no growth */
		return;
	}
	for (link = head == NO_LEASE ? NULL : &L(e, head)->next_vm; link && *link != NO_LEASE;
	     link = &L(e, *link)->next_vm)
		if (*link == idx) {
			*link = l->next_vm;
			return;
		}
}

/* The client's lease: a VM's lease with this chaddr, or with one lease per
 * VM the VM's lease whatever chaddr it writes; a MAC client's by MAC. */
static uint32_t lease_of(const struct dhcp_engine *e, const struct client *c)
{
	uint32_t idx, first;

	if (!c->vm_id)
		return htab_get(&e->by_mac, mac_key(c->mac));
	first = htab_get(&e->by_vm, vm_key(c->vm_id));
	for (idx = first; idx != NO_LEASE; idx = e->leases[idx].next_vm)
		if (!memcmp(e->leases[idx].mac, c->mac, 6))
			return idx;
	return e->cfg.max_leases_per_vm <= 1 ? first : NO_LEASE;
}

/* A lease of the client's VM that holds no address, to reuse for a new
 * chaddr once the VM has all the leases it may have; else NO_LEASE. */
static uint32_t vm_spare_lease(const struct dhcp_engine *e, uint32_t vm_id, size_t *count)
{
	uint32_t idx, spare = NO_LEASE;

	*count = 0;
	for (idx = htab_get(&e->by_vm, vm_key(vm_id)); idx != NO_LEASE;
	     idx = e->leases[idx].next_vm) {
		(*count)++;
		if (e->leases[idx].state == DHCP_L_FREE && !(e->leases[idx].flags & LF_STATIC))
			spare = idx;
	}
	return spare;
}

/* A new lease of client c (NULL: a quarantine, owned by no one) on ip, FREE. */
static uint32_t lease_new(struct dhcp_engine *e, const struct client *c, uint32_t ip)
{
	struct lease *l;
	uint32_t idx;

	if (e->free_head != NO_LEASE) {
		idx = e->free_head;
		e->free_head = e->leases[idx].next_free;
	} else {
		if (e->nr_slots == e->cap_slots) {
			size_t cap = e->cap_slots * 2;
			struct lease *p = realloc(e->leases, cap * sizeof(*p));

			if (!p)
				return NO_LEASE;
			e->leases = p;
			e->cap_slots = cap;
		}
		idx = (uint32_t)e->nr_slots++;
	}
	l = L(e, idx);
	memset(l, 0, sizeof(*l));
	l->ip = ip;
	l->state = DHCP_L_FREE;
	if (c) {
		memcpy(l->mac, c->mac, 6);
		l->vm_id = c->vm_id;
		if (c->host && c->host->ip == ip)
			l->flags |= LF_STATIC;
	}
	if (htab_put(&e->by_ip, ip_key(ip), idx) || owner_add(e, idx)) {
		htab_del(&e->by_ip, ip_key(ip));
		l->used = false;
		l->next_free = e->free_head;
		e->free_head = idx;
		return NO_LEASE;
	}
	l->used = true;
	return idx;
}

static void lease_delete(struct dhcp_engine *e, uint32_t idx)
{
	struct lease *l = L(e, idx);

	if (holds_addr(l->state))
		bit_clear(e, l->ip);
	htab_del(&e->by_ip, ip_key(l->ip));
	owner_del(e, idx);
	l->used = false;
	l->next_free = e->free_head;
	e->free_head = idx;
}

/* Give lease idx (state FREE or OFFERED) the address ip, which is free. */
static int lease_move(struct dhcp_engine *e, uint32_t idx, uint32_t ip)
{
	struct lease *l = L(e, idx);
	const struct dhcp_host *h = host_of_vm(e, l->vm_id);
	bool held = holds_addr(l->state);
	int err;

	err = htab_put(&e->by_ip, ip_key(ip), idx);
	if (err)
		return err;
	if (held)
		bit_clear(e, l->ip);
	htab_del(&e->by_ip, ip_key(l->ip));
	l->ip = ip;
	if (held)
		bit_set(e, ip);
	l->flags = (uint8_t)(l->flags & ~(LF_STATIC | LF_PROBING | LF_PROBED));
	if (h && h->ip == ip)
		l->flags |= LF_STATIC;
	return 0;
}

static void announce(struct dhcp_engine *e, const struct lease *l, bool bound)
{
	if (e->ops.binding)
		e->ops.binding(e->ops.ctx, l->vm_id, l->mac, htonl(l->ip),
			       bound ? l->expiry_ms : 0, bound);
}

static void persist(struct dhcp_engine *e, uint8_t kind, const struct lease *l)
{
	struct lease_rec rec = { .kind = kind, .ip_be = htonl(l->ip), .expiry_ms = l->expiry_ms,
				 .vm_id = l->vm_id };

	memcpy(rec.mac, l->mac, 6);
	memcpy(rec.bridge, e->cfg.name, sizeof(rec.bridge));
	if (e->ops.persist && e->ops.persist(e->ops.ctx, &rec))
		log_err("dhcp %s: cannot queue lease record", e->cfg.name);
}

/* The client's lease now answers to chaddr (one lease per VM: the VM may
 * write any; the reply goes where the message came from). */
static void lease_set_mac(struct dhcp_engine *e, uint32_t idx, const struct client *c)
{
	struct lease *l = L(e, idx);

	if (l->vm_id)
		memcpy(l->mac, c->mac, 6);	/* VM leases are not indexed by MAC */
}

/*
 * May client c hold ip now?  On yes, the client's lease (created or moved as
 * needed, a remembered lease of another client on ip forgotten) is returned
 * in *out; the state is left to the caller.  -EADDRINUSE when the address
 * is not its to have, -EDQUOT when its VM holds all the leases it may.
 */
static int claim(struct dhcp_engine *e, const struct client *c, uint32_t ip, uint32_t *out)
{
	const struct dhcp_host *h = c->host;
	uint32_t idx = lease_of(e, c), other;
	size_t pi, count;

	if (!in_subnet(e, ip) || addr_special(e, ip))
		return -EADDRINUSE;
	if (h && h->ip && h->ip != ip)
		return -EADDRINUSE;
	if (idx != NO_LEASE && L(e, idx)->ip == ip) {
		if (L(e, idx)->flags & LF_PROBING)
			return -EAGAIN;
		lease_set_mac(e, idx, c);
		*out = idx;
		return 0;
	}
	if (!(h && h->ip == ip)) {
		if (htab_get(&e->host_by_ip, ip_key(ip)) != NO_LEASE || !pool_index(e, ip, &pi))
			return -EADDRINUSE;
	}
	if (idx == NO_LEASE && c->vm_id) {
		idx = vm_spare_lease(e, c->vm_id, &count);
		if (idx == NO_LEASE && count >= (e->cfg.max_leases_per_vm ?: 1))
			return -EDQUOT;
	}
	other = htab_get(&e->by_ip, ip_key(ip));
	if (other != NO_LEASE) {
		if (L(e, other)->state != DHCP_L_FREE || (L(e, other)->flags & LF_STATIC))
			return -EADDRINUSE;
		if (other == idx)
			idx = NO_LEASE;	/* the spare lease remembered this very address */
		lease_delete(e, other);
	}
	if (idx != NO_LEASE) {
		/* A bound client that moves lets its old address go. */
		if (L(e, idx)->state == DHCP_L_BOUND) {
			announce(e, L(e, idx), false);
			persist(e, LEASE_REC_FREE, L(e, idx));
			set_state(e, idx, DHCP_L_FREE, 0);
		}
		if (lease_move(e, idx, ip))
			return -ENOMEM;
		lease_set_mac(e, idx, c);
	} else {
		idx = lease_new(e, c, ip);
		if (idx == NO_LEASE)
			return -ENOMEM;
	}
	*out = idx;
	return 0;
}

/* ---- replies ---- */

static uint32_t lease_secs(const struct dhcp_engine *e, const struct dhcp_msg *m)
{
	uint32_t t = e->cfg.lease_time;

	/* A client may ask for less, never for more; below a minute the
	 * renewal traffic is not worth it. */
	if (m->has_lease_time && m->lease_time < t)
		t = m->lease_time < 60 ? 60 : m->lease_time;
	return t;
}

static void put_addrs(struct dhcp_builder *b, uint8_t code, const uint32_t *a, size_t n)
{
	uint32_t be[DHCP_MAX_SERVERS];
	size_t i;

	if (!n)
		return;
	for (i = 0; i < n; i++)
		be[i] = htonl(a[i]);
	dhcp_build_opt(b, code, be, n * 4);
}

static int build_reply(struct dhcp_engine *e, const struct dhcp_msg *m, struct dhcp_reply *r,
		       uint8_t type, uint32_t yiaddr, uint32_t secs, bool rapid)
{
	const struct dhcp_bridge_cfg *c = &e->cfg;
	struct dhcp_builder b;
	struct dhcp_hdr h;
	const uint8_t *v;
	size_t vlen, cap;
	int len;

	memset(&h, 0, sizeof(h));
	h.op = BOOTREPLY;
	h.htype = m->hdr.htype;
	h.hlen = m->hdr.hlen;
	h.xid_be = m->hdr.xid_be;
	h.flags_be = m->hdr.flags_be;
	h.giaddr_be = m->hdr.giaddr_be;
	memcpy(h.chaddr, m->hdr.chaddr, sizeof(h.chaddr));
	if (type == DHCPACK)
		h.ciaddr_be = m->hdr.ciaddr_be;
	if (type != DHCPNAK)
		h.yiaddr_be = htonl(yiaddr);
	/* RFC 2131 4.3.2: a NAK through a relay asks it to broadcast. */
	if (type == DHCPNAK && m->hdr.giaddr_be)
		h.flags_be |= htons(DHCP_FLAG_BROADCAST);

	/* Fit the client's maximum message size (RFC 2132 9.10), at least 576. */
	cap = m->max_msg_size > 576 ? m->max_msg_size : 576;
	cap = cap - DHCP_IPUDP_HDR_LEN < sizeof(r->pkt) ? cap - DHCP_IPUDP_HDR_LEN : sizeof(r->pkt);
	dhcp_build_init(&b, r->pkt, cap, &h);
	dhcp_build_opt_u8(&b, DHO_MSG_TYPE, type);
	dhcp_build_opt_u32(&b, DHO_SERVER_ID, c->server_ip);
	if (type == DHCPNAK) {
		static const char why[] = "requested address not available";

		dhcp_build_opt(&b, DHO_MESSAGE, why, sizeof(why) - 1);
	} else {
		if (secs) {
			dhcp_build_opt_u32(&b, DHO_LEASE_TIME, secs);
			dhcp_build_opt_u32(&b, DHO_T1, c->t1 && c->t1 < secs ? c->t1 : secs / 2);
			dhcp_build_opt_u32(&b, DHO_T2, c->t2 && c->t2 < secs ? c->t2 : secs / 8 * 7);
		}
		dhcp_build_opt_u32(&b, DHO_SUBNET_MASK, c->mask);
		if (c->prefix < 31)
			dhcp_build_opt_u32(&b, DHO_BROADCAST, c->net | ~c->mask);
		if (c->router)
			dhcp_build_opt_u32(&b, DHO_ROUTER, c->router);
		put_addrs(&b, DHO_DNS, c->dns, c->nr_dns);
		put_addrs(&b, DHO_NTP, c->ntp, c->nr_ntp);
		if (c->domain[0])
			dhcp_build_opt(&b, DHO_DOMAIN, c->domain, strlen(c->domain));
		if (c->mtu)
			dhcp_build_opt_u16(&b, DHO_MTU, c->mtu);
		if (rapid)
			dhcp_build_opt(&b, DHO_RAPID_COMMIT, NULL, 0);
	}
	/* RFC 6842: echo the client identifier. */
	v = dhcp_opt_get(m, DHO_CLIENT_ID, &vlen);
	if (v)
		dhcp_build_opt(&b, DHO_CLIENT_ID, v, vlen);
	/* RFC 3046 2.2: relay agent information goes back unchanged, last. */
	v = dhcp_opt_get(m, DHO_RELAY_INFO, &vlen);
	if (v)
		dhcp_build_opt(&b, DHO_RELAY_INFO, v, vlen);
	len = dhcp_build_finish(&b);
	if (len < 0) {
		log_warn("dhcp %s: reply does not fit %zu bytes", c->name, cap);
		return len;
	}
	r->len = (size_t)len;
	r->type = type;

	/* Where it goes (RFC 2131 4.1). */
	memcpy(r->dst_mac, m->hdr.chaddr, 6);
	if (m->hdr.giaddr_be) {
		r->tx = DHCP_TX_RELAY;
		r->dst_ip_be = m->hdr.giaddr_be;
		r->dst_port = DHCP_SERVER_PORT;
	} else if (type == DHCPNAK || (!m->hdr.ciaddr_be &&
		   (ntohs(m->hdr.flags_be) & DHCP_FLAG_BROADCAST || !yiaddr))) {
		r->tx = DHCP_TX_BROADCAST;
		r->dst_ip_be = INADDR_BROADCAST;
		r->dst_port = DHCP_CLIENT_PORT;
	} else {
		r->tx = DHCP_TX_UNICAST;
		r->dst_ip_be = m->hdr.ciaddr_be ? m->hdr.ciaddr_be : htonl(yiaddr);
		r->dst_port = DHCP_CLIENT_PORT;
	}
	if (type == DHCPOFFER)
		e->st.offers++;
	else if (type == DHCPACK)
		e->st.acks++;
	else
		e->st.naks++;
	return 0;
}

static int grant(struct dhcp_engine *e, const struct dhcp_msg *m, uint32_t idx,
		 uint64_t now, struct dhcp_reply *r, bool rapid)
{
	uint32_t secs = lease_secs(e, m);
	struct lease *l = L(e, idx);
	int err;

	set_state(e, idx, DHCP_L_BOUND, now + (uint64_t)secs * 1000);
	persist(e, LEASE_REC_GRANT, l);
	announce(e, l, true);
	err = build_reply(e, m, r, DHCPACK, l->ip, secs, rapid);
	r->commit = true;
	return err;
}

static int nak(struct dhcp_engine *e, const struct dhcp_msg *m, struct dhcp_reply *r)
{
	return build_reply(e, m, r, DHCPNAK, 0, 0, false);
}

static int on_discover(struct dhcp_engine *e, const struct dhcp_msg *m, const struct client *c,
		       uint64_t now, struct dhcp_reply *r)
{
	const struct dhcp_host *h = c->host;
	uint32_t idx = lease_of(e, c), ip = 0;
	struct lease *l;
	int err;

	if (h && h->ip) {
		ip = h->ip;
	} else if (idx != NO_LEASE) {
		/* The same client asking again gets the same address: a held
		 * offer, its lease, or the one it had before. */
		ip = L(e, idx)->ip;
	}
	if (!ip && m->has_req_ip && claim(e, c, ntohl(m->req_ip_be), &idx) == 0)
		ip = ntohl(m->req_ip_be);
	if (!ip) {
		if (!pool_alloc(e, &ip)) {
			e->st.exhausted++;
			if (now - e->last_exhaust_log > 10000) {
				log_warn("dhcp %s: pool exhausted, no offer", e->cfg.name);
				e->last_exhaust_log = now;
			}
			return 0;
		}
	}
	err = claim(e, c, ip, &idx);
	switch (err) {
	case 0:
		break;
	case -EAGAIN:
		/* Still probing: the newest copy of the request is the one to
		 * answer when the probe ends. */
		r->tx = DHCP_TX_PROBE;
		r->probe_ip_be = htonl(ip);
		return 0;
	case -EDQUOT:
		e->st.vm_limit++;
		return 0;
	case -ENOMEM:
		return err;
	default:
		e->st.ignored++;
		return 0;
	}
	l = L(e, idx);
	if (l->state != DHCP_L_BOUND) {
		if (l->state != DHCP_L_OFFERED)
			l->flags &= (uint8_t)~(LF_PROBING | LF_PROBED);
		set_state(e, idx, DHCP_L_OFFERED, now + (uint64_t)e->cfg.offer_hold * 1000);
		if (e->cfg.conflict_check && !(l->flags & LF_PROBED)) {
			l->flags |= LF_PROBING;
			r->tx = DHCP_TX_PROBE;
			r->probe_ip_be = htonl(ip);
			return 0;
		}
	}
	if (e->cfg.rapid_commit && m->rapid_commit)
		return grant(e, m, idx, now, r, true);
	return build_reply(e, m, r, DHCPOFFER, l->ip, lease_secs(e, m), false);
}

/* Forget our offer to a client that chose another server. */
static void withdraw_offer(struct dhcp_engine *e, uint32_t idx)
{
	if (idx == NO_LEASE || L(e, idx)->state != DHCP_L_OFFERED)
		return;
	if (L(e, idx)->flags & LF_STATIC)
		set_state(e, idx, DHCP_L_FREE, 0);
	else
		lease_delete(e, idx);
}

/*
 * REQUEST per RFC 2131 4.3.2.  SELECTING (server id present) takes only the
 * address we offered this client.  INIT-REBOOT (requested address) and
 * RENEWING/REBINDING (ciaddr) take only the address the client's own lease
 * record names, or one the data path still binds to its VM (the lease
 * database was lost, the guest kept its address).  Anything else is NAKed:
 * never an ACK for an address the server did not give this client.
 */
static int on_request(struct dhcp_engine *e, const struct dhcp_msg *m, const struct client *c,
		      uint64_t now, struct dhcp_reply *r)
{
	uint32_t idx = lease_of(e, c), ip;
	bool selecting = m->has_server_id, ours;
	int err;

	if (selecting) {
		if (ntohl(m->server_id_be) != e->cfg.server_ip) {
			withdraw_offer(e, idx);
			return 0;
		}
		if (!m->has_req_ip && !m->hdr.ciaddr_be) {
			e->st.ignored++;
			return 0;
		}
		ip = ntohl(m->has_req_ip ? m->req_ip_be : m->hdr.ciaddr_be);
	} else if (m->has_req_ip && !m->hdr.ciaddr_be) {
		ip = ntohl(m->req_ip_be);	/* INIT-REBOOT */
	} else if (m->hdr.ciaddr_be) {
		ip = ntohl(m->hdr.ciaddr_be);	/* RENEWING or REBINDING */
	} else {
		e->st.ignored++;
		return 0;
	}
	ours = idx != NO_LEASE && L(e, idx)->ip == ip;
	if (ours && (L(e, idx)->flags & LF_PROBING))
		return 0;	/* answered when the probe ends */
	if (selecting) {
		/* Our offer (or, retransmitted, the lease it became). */
		if (!ours || !(L(e, idx)->state == DHCP_L_OFFERED ||
			       L(e, idx)->state == DHCP_L_BOUND)) {
			e->st.no_record++;
			return nak(e, m, r);
		}
	} else if (!ours && !(c->vm_id && e->ops.vm_holds &&
			      e->ops.vm_holds(e->ops.ctx, c->vm_id, htonl(ip)))) {
		e->st.no_record++;
		return nak(e, m, r);
	}
	err = claim(e, c, ip, &idx);
	if (err == -EAGAIN)
		return 0;
	if (err == -ENOMEM)
		return err;
	if (err == -EDQUOT)
		e->st.vm_limit++;
	if (err)
		return nak(e, m, r);
	return grant(e, m, idx, now, r, false);
}

/* Quarantines a DECLINE by this client caused that still run. */
static size_t declines_of(const struct dhcp_engine *e, const struct client *c)
{
	size_t i, n = 0;

	for (i = 0; i < e->nr_slots; i++) {
		const struct lease *l = &e->leases[i];

		if (l->used && l->state == DHCP_L_QUARANTINE && l->decl_vm == c->vm_id &&
		    (c->vm_id || !memcmp(l->decl_mac, c->mac, 6)))
			n++;
	}
	return n;
}

/* Put ip out of service for decline_hold; by (NULL: an ARP conflict) is the
 * client whose DECLINE it is. */
static void quarantine(struct dhcp_engine *e, uint32_t ip, const struct client *by, uint64_t now)
{
	uint32_t idx = htab_get(&e->by_ip, ip_key(ip));
	struct lease *l;

	if (idx != NO_LEASE) {
		l = L(e, idx);
		if (l->flags & LF_STATIC)
			return;		/* the VM's own address: nothing else to give it */
		if (l->state == DHCP_L_BOUND)
			announce(e, l, false);
		owner_del(e, idx);
		memset(l->mac, 0, 6);
		l->vm_id = 0;
		l->next_vm = NO_LEASE;
	} else {
		idx = lease_new(e, NULL, ip);
		if (idx == NO_LEASE)
			return;
	}
	l = L(e, idx);
	l->decl_vm = by ? by->vm_id : 0;
	memset(l->decl_mac, 0, 6);
	if (by && !by->vm_id)
		memcpy(l->decl_mac, by->mac, 6);
	set_state(e, idx, DHCP_L_QUARANTINE, now + (uint64_t)e->cfg.decline_hold * 1000);
	persist(e, LEASE_REC_QUARANTINE, l);
}

static void release_lease(struct dhcp_engine *e, uint32_t idx)
{
	struct lease *l = L(e, idx);

	if (l->state == DHCP_L_BOUND)
		announce(e, l, false);
	persist(e, LEASE_REC_FREE, l);
	set_state(e, idx, DHCP_L_FREE, 0);
}

/* A DECLINE acts only on the sender's own lease of the address. */
static int on_decline(struct dhcp_engine *e, const struct dhcp_msg *m, const struct client *c,
		      uint64_t now)
{
	uint32_t idx = lease_of(e, c), ip;

	if ((m->has_server_id && ntohl(m->server_id_be) != e->cfg.server_ip) || !m->has_req_ip)
		return 0;
	ip = ntohl(m->req_ip_be);
	if (idx == NO_LEASE || L(e, idx)->ip != ip ||
	    (L(e, idx)->state != DHCP_L_OFFERED && L(e, idx)->state != DHCP_L_BOUND))
		return 0;
	e->st.declines++;
	log_info("dhcp %s: %02x:%02x:%02x:%02x:%02x:%02x (vm %u) declined %u.%u.%u.%u",
		 e->cfg.name, c->mac[0], c->mac[1], c->mac[2], c->mac[3], c->mac[4], c->mac[5],
		 c->vm_id, ip >> 24, ip >> 16 & 0xff, ip >> 8 & 0xff, ip & 0xff);
	if (declines_of(e, c) >= DECLINES_PER_CLIENT) {
		e->st.decline_limited++;
		if (L(e, idx)->state == DHCP_L_BOUND)
			release_lease(e, idx);
		else
			withdraw_offer(e, idx);
		return 0;
	}
	quarantine(e, ip, c, now);
	return 0;
}

/* A RELEASE acts only on the sender's own bound lease of ciaddr. */
static int on_release(struct dhcp_engine *e, const struct dhcp_msg *m, const struct client *c)
{
	uint32_t idx = lease_of(e, c);

	if (m->has_server_id && ntohl(m->server_id_be) != e->cfg.server_ip)
		return 0;
	if (idx == NO_LEASE || L(e, idx)->ip != ntohl(m->hdr.ciaddr_be) ||
	    L(e, idx)->state != DHCP_L_BOUND)
		return 0;
	release_lease(e, idx);
	return 0;
}

/*
 * Who the client is.  With an origin, the VM the I/O layer names: its
 * chaddr must be its policy MAC when it has one.  A frame from a port RayOS
 * does not enforce (origin vm 0) is answered only if the bridge serves
 * unmanaged clients, and never for the MAC of a VM of the policy.  Without
 * an origin, chaddr decides.  0, or -EPERM with the reason counted.
 */
static int client_of(struct dhcp_engine *e, const struct dhcp_msg *m,
		     const struct dhcp_origin *origin, struct client *c)
{
	c->mac = m->hdr.chaddr;
	if (!origin) {
		c->host = host_of_mac(e, c->mac);
		c->vm_id = c->host ? c->host->vm_id : 0;
		return 0;
	}
	c->vm_id = origin->vm_id;
	if (c->vm_id) {
		c->host = host_of_vm(e, c->vm_id);
		if (c->host && memcmp(c->host->mac, c->mac, 6)) {
			e->st.foreign_chaddr++;
			return -EPERM;
		}
		return 0;
	}
	c->host = NULL;
	if (!e->cfg.serve_unmanaged) {
		e->st.unmanaged++;
		return -EPERM;
	}
	if (host_of_mac(e, c->mac)) {
		e->st.foreign_chaddr++;
		return -EPERM;
	}
	return 0;
}

int dhcp_engine_handle_from(struct dhcp_engine *e, const struct dhcp_msg *m,
			    const struct dhcp_origin *origin, uint64_t now_ms,
			    struct dhcp_reply *r)
{
	struct client c;

	r->tx = DHCP_TX_NONE;
	r->commit = false;
	r->len = 0;
	if (m->hdr.op != BOOTREQUEST || !m->type)
		return 0;
	if (m->type <= DHCPINFORM)
		e->st.rx[m->type]++;
	/* A client is an Ethernet address on a guest bridge; other hardware
	 * types do not occur there. */
	if (m->hdr.htype != 1 || m->hdr.hlen != 6 || (m->hdr.chaddr[0] & 1)) {
		e->st.ignored++;
		return 0;
	}
	/* A relay on this bridge speaks for this subnet only. */
	if (m->hdr.giaddr_be && !in_subnet(e, ntohl(m->hdr.giaddr_be))) {
		e->st.ignored++;
		return 0;
	}
	if (client_of(e, m, origin, &c))
		return 0;
	switch (m->type) {
	case DHCPDISCOVER:
		return on_discover(e, m, &c, now_ms, r);
	case DHCPREQUEST:
		return on_request(e, m, &c, now_ms, r);
	case DHCPDECLINE:
		return on_decline(e, m, &c, now_ms);
	case DHCPRELEASE:
		return on_release(e, m, &c);
	case DHCPINFORM:
		/* RFC 2131 4.3.5: configuration only, no lease, never a NAK. */
		return build_reply(e, m, r, DHCPACK, 0, 0, false);
	default:
		e->st.ignored++;
		return 0;
	}
}

int dhcp_engine_handle(struct dhcp_engine *e, const struct dhcp_msg *m, uint64_t now_ms,
		       struct dhcp_reply *r)
{
	return dhcp_engine_handle_from(e, m, NULL, now_ms, r);
}

void dhcp_engine_probe_result(struct dhcp_engine *e, uint32_t ip_be, bool conflict,
			      uint64_t now_ms)
{
	uint32_t ip = ntohl(ip_be), idx = htab_get(&e->by_ip, ip_key(ip));
	struct lease *l = idx == NO_LEASE ? NULL : L(e, idx);

	if (!conflict) {
		if (l && (l->flags & LF_PROBING)) {
			l->flags = (uint8_t)((l->flags & ~LF_PROBING) | LF_PROBED);
			l->expiry_ms = now_ms + (uint64_t)e->cfg.offer_hold * 1000;
		}
		return;
	}
	if (!in_subnet(e, ip) || addr_special(e, ip))
		return;
	/* Someone uses the address: never offer it until it has rested. */
	e->st.conflicts++;
	log_warn("dhcp %s: %u.%u.%u.%u answered an ARP probe; quarantined", e->cfg.name,
		 ip >> 24, ip >> 16 & 0xff, ip >> 8 & 0xff, ip & 0xff);
	if (l && l->state == DHCP_L_BOUND)
		return;		/* the lessee itself, most likely */
	quarantine(e, ip, NULL, now_ms);
}

uint64_t dhcp_engine_tick(struct dhcp_engine *e, uint64_t now_ms)
{
	size_t i;

	if (!e->next_deadline || e->next_deadline > now_ms)
		return e->next_deadline;
	e->next_deadline = 0;
	for (i = 0; i < e->nr_slots; i++) {
		struct lease *l = &e->leases[i];

		if (!l->used || !holds_addr(l->state))
			continue;
		if (l->expiry_ms > now_ms) {
			note_deadline(e, l->expiry_ms);
			continue;
		}
		switch (l->state) {
		case DHCP_L_BOUND:
			/* Expiry needs no record: the log's expiry says it. */
			announce(e, l, false);
			set_state(e, (uint32_t)i, DHCP_L_FREE, 0);
			break;
		case DHCP_L_OFFERED:
			if (l->flags & LF_STATIC)
				set_state(e, (uint32_t)i, DHCP_L_FREE, 0);
			else
				lease_delete(e, (uint32_t)i);
			break;
		default:
			lease_delete(e, (uint32_t)i);
			break;
		}
	}
	return e->next_deadline;
}

int dhcp_engine_release(struct dhcp_engine *e, uint32_t ip_be, const uint8_t *mac,
			uint64_t now_ms)
{
	uint32_t idx = NO_LEASE;

	(void)now_ms;
	if (ip_be) {
		idx = htab_get(&e->by_ip, ip_key(ntohl(ip_be)));
	} else {
		/* An administrator's request: any lease bound to the MAC. */
		for (size_t i = 0; i < e->nr_slots && idx == NO_LEASE; i++)
			if (e->leases[i].used && e->leases[i].state == DHCP_L_BOUND &&
			    !memcmp(e->leases[i].mac, mac, 6))
				idx = (uint32_t)i;
	}
	if (idx == NO_LEASE || L(e, idx)->state != DHCP_L_BOUND)
		return -ENOENT;
	release_lease(e, idx);
	return 0;
}

/* ---- setup, replay ---- */

/* Does lease idx belong to the client a record names? */
static bool lease_is(const struct dhcp_engine *e, uint32_t idx, const struct client *c)
{
	const struct lease *l;

	if (idx == NO_LEASE)
		return false;
	l = &e->leases[idx];
	return l->state != DHCP_L_QUARANTINE && l->vm_id == c->vm_id &&
	       (c->vm_id || !memcmp(l->mac, c->mac, 6));
}

/* The owner of a record.  Records from before leases had owners name only
 * a MAC: a VM of the policy with that MAC owns them. */
static void client_of_rec(const struct dhcp_engine *e, const struct lease_rec *rec,
			  struct client *c)
{
	const struct dhcp_host *h = rec->vm_id ? NULL : host_of_mac(e, rec->mac);

	c->mac = rec->mac;
	c->vm_id = rec->vm_id ? rec->vm_id : h ? h->vm_id : 0;
	c->host = host_of_vm(e, c->vm_id);
}

void dhcp_engine_load(struct dhcp_engine *e, const struct lease_rec *rec, uint64_t now_ms)
{
	uint32_t ip = ntohl(rec->ip_be), idx;
	struct client c;

	if (!in_subnet(e, ip) || addr_special(e, ip))
		return;
	client_of_rec(e, rec, &c);
	switch (rec->kind) {
	case LEASE_REC_GRANT:
		if (claim(e, &c, ip, &idx)) {
			/* Held by a later-replayed lease, or no longer ours to
			 * give under this configuration. */
			idx = htab_get(&e->by_ip, ip_key(ip));
			if (!lease_is(e, idx, &c))
				return;
		}
		if (rec->expiry_ms > now_ms)
			set_state(e, idx, DHCP_L_BOUND, rec->expiry_ms);
		else
			set_state(e, idx, DHCP_L_FREE, 0);
		break;
	case LEASE_REC_FREE:
		idx = htab_get(&e->by_ip, ip_key(ip));
		if (lease_is(e, idx, &c) && L(e, idx)->state == DHCP_L_BOUND)
			set_state(e, idx, DHCP_L_FREE, 0);
		break;
	case LEASE_REC_QUARANTINE:
		if (rec->expiry_ms <= now_ms)
			break;
		idx = htab_get(&e->by_ip, ip_key(ip));
		if (idx != NO_LEASE) {
			if (L(e, idx)->flags & LF_STATIC)
				break;
			lease_delete(e, idx);
		}
		idx = lease_new(e, NULL, ip);
		if (idx != NO_LEASE)
			set_state(e, idx, DHCP_L_QUARANTINE, rec->expiry_ms);
		break;
	}
}

void dhcp_engine_start(struct dhcp_engine *e, uint64_t now_ms)
{
	size_t i;

	dhcp_engine_tick(e, now_ms);
	for (i = 0; i < e->nr_slots; i++)
		if (e->leases[i].used && e->leases[i].state == DHCP_L_BOUND)
			announce(e, &e->leases[i], true);
}

void dhcp_engine_adopt(struct dhcp_engine *e, const struct dhcp_engine *from, uint64_t now_ms)
{
	struct lease_rec rec;
	size_t i;

	for (i = 0; i < from->nr_slots; i++) {
		const struct lease *l = &from->leases[i];

		if (!l->used || (l->state != DHCP_L_BOUND && l->state != DHCP_L_QUARANTINE))
			continue;
		memset(&rec, 0, sizeof(rec));
		rec.kind = l->state == DHCP_L_BOUND ? LEASE_REC_GRANT : LEASE_REC_QUARANTINE;
		memcpy(rec.mac, l->mac, 6);
		rec.ip_be = htonl(l->ip);
		rec.expiry_ms = l->expiry_ms;
		rec.vm_id = l->vm_id;
		dhcp_engine_load(e, &rec, now_ms);
		if (l->state == DHCP_L_BOUND) {
			uint32_t idx = htab_get(&e->by_ip, ip_key(l->ip));
			struct client c = { .vm_id = l->vm_id, .mac = l->mac };

			/* Dropped by the new configuration: the binding ends. */
			if (!lease_is(e, idx, &c) || e->leases[idx].state != DHCP_L_BOUND)
				announce(e, l, false);
		}
	}
}

int dhcp_engine_new(const struct dhcp_bridge_cfg *cfg, const struct dhcp_engine_ops *ops,
		    struct dhcp_engine **out)
{
	struct dhcp_engine *e;
	size_t i, tail;
	int err = -ENOMEM;

	*out = NULL;
	if (!cfg->nr_ranges && !cfg->nr_hosts)
		return -EINVAL;
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->cfg = *cfg;
	e->cfg.ranges = NULL;
	e->cfg.hosts = NULL;
	e->free_head = NO_LEASE;
	if (ops)
		e->ops = *ops;
	e->cfg.ranges = calloc(cfg->nr_ranges + 1, sizeof(*cfg->ranges));
	e->cfg.hosts = calloc(cfg->nr_hosts + 1, sizeof(*cfg->hosts));
	e->range_base = calloc(cfg->nr_ranges + 1, sizeof(*e->range_base));
	if (!e->cfg.ranges || !e->cfg.hosts || !e->range_base)
		goto out;
	memcpy(e->cfg.ranges, cfg->ranges, cfg->nr_ranges * sizeof(*cfg->ranges));
	memcpy(e->cfg.hosts, cfg->hosts, cfg->nr_hosts * sizeof(*cfg->hosts));
	for (i = 0; i < cfg->nr_ranges; i++) {
		e->range_base[i] = e->nr_addrs;
		e->nr_addrs += (size_t)(cfg->ranges[i].hi - cfg->ranges[i].lo) + 1;
	}
	e->nr_words = (e->nr_addrs + 63) / 64;
	e->bitmap = calloc(e->nr_words ? e->nr_words : 1, sizeof(uint64_t));
	e->cap_slots = 64;
	e->leases = calloc(e->cap_slots, sizeof(*e->leases));
	if (!e->bitmap || !e->leases)
		goto out;
	if (htab_init(&e->by_mac, e->nr_addrs + cfg->nr_hosts) ||
	    htab_init(&e->by_ip, e->nr_addrs + cfg->nr_hosts) ||
	    htab_init(&e->by_vm, e->nr_addrs + cfg->nr_hosts) ||
	    htab_init(&e->host_by_mac, cfg->nr_hosts) ||
	    htab_init(&e->host_by_ip, cfg->nr_hosts) ||
	    htab_init(&e->host_by_vm, cfg->nr_hosts))
		goto out;
	/* Bits past the last address are never free. */
	tail = e->nr_addrs % 64;
	if (tail)
		e->bitmap[e->nr_words - 1] = ~0ULL << tail;
	for (i = 0; i < cfg->nr_hosts; i++) {
		if (htab_put(&e->host_by_mac, mac_key(cfg->hosts[i].mac), (uint32_t)i) ||
		    htab_put(&e->host_by_vm, vm_key(cfg->hosts[i].vm_id), (uint32_t)i))
			goto out;
		if (cfg->hosts[i].ip &&
		    htab_put(&e->host_by_ip, ip_key(cfg->hosts[i].ip), (uint32_t)i))
			goto out;
	}
	for (i = 0; i < e->nr_addrs; i++) {
		uint32_t ip = pool_addr(e, i);

		if (addr_reserved(e, ip)) {
			e->bitmap[i / 64] |= 1ULL << (i % 64);
			e->used++;
		}
	}
	/* Every reservation has its lease from the start, so that its address
	 * is never handed to anyone else. */
	for (i = 0; i < cfg->nr_hosts; i++) {
		struct client c = { .vm_id = cfg->hosts[i].vm_id, .mac = cfg->hosts[i].mac,
				    .host = &e->cfg.hosts[i] };

		if (cfg->hosts[i].ip && in_subnet(e, cfg->hosts[i].ip) &&
		    lease_new(e, &c, cfg->hosts[i].ip) == NO_LEASE)
			goto out;
	}
	*out = e;
	e = NULL;
	err = 0;
out:
	dhcp_engine_free(e);
	return err;
}

void dhcp_engine_free(struct dhcp_engine *e)
{
	if (!e)
		return;
	htab_free(&e->by_mac);
	htab_free(&e->by_ip);
	htab_free(&e->by_vm);
	htab_free(&e->host_by_mac);
	htab_free(&e->host_by_ip);
	htab_free(&e->host_by_vm);
	free(e->bitmap);
	free(e->leases);
	free(e->range_base);
	free(e->cfg.ranges);
	free(e->cfg.hosts);
	free(e);
}

const struct dhcp_bridge_cfg *dhcp_engine_cfg(const struct dhcp_engine *e)
{
	return &e->cfg;
}

bool dhcp_engine_next_lease(const struct dhcp_engine *e, size_t *pos, struct dhcp_lease_info *li)
{
	while (*pos < e->nr_slots) {
		const struct lease *l = &e->leases[(*pos)++];

		if (!l->used)
			continue;
		memcpy(li->mac, l->mac, 6);
		li->ip_be = htonl(l->ip);
		li->state = l->state;
		li->is_static = l->flags & LF_STATIC;
		li->probing = l->flags & LF_PROBING;
		li->vm_id = l->vm_id;
		li->expiry_ms = l->expiry_ms;
		return true;
	}
	return false;
}

bool dhcp_engine_next_rec(const struct dhcp_engine *e, size_t *pos, struct lease_rec *rec)
{
	while (*pos < e->nr_slots) {
		const struct lease *l = &e->leases[(*pos)++];

		if (!l->used || (l->state != DHCP_L_BOUND && l->state != DHCP_L_QUARANTINE))
			continue;
		memset(rec, 0, sizeof(*rec));
		rec->kind = l->state == DHCP_L_BOUND ? LEASE_REC_GRANT : LEASE_REC_QUARANTINE;
		memcpy(rec->mac, l->mac, 6);
		rec->ip_be = htonl(l->ip);
		rec->expiry_ms = l->expiry_ms;
		rec->vm_id = l->vm_id;
		memcpy(rec->bridge, e->cfg.name, sizeof(rec->bridge));
		return true;
	}
	return false;
}

const struct dhcp_engine_stats *dhcp_engine_stats(const struct dhcp_engine *e)
{
	return &e->st;
}

size_t dhcp_engine_pool_size(const struct dhcp_engine *e)
{
	return e->nr_addrs;
}

size_t dhcp_engine_pool_used(const struct dhcp_engine *e)
{
	return e->used;
}
