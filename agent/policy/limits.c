// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Fine-grained capability limits: parsing, set operations and printing of
 * port lists, rates and device nodes (see limits.h).  Pure logic.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "agent/core/digest.h"
#include "agent/policy/limits.h"

int caps_ports_add(struct caps_ports *p, uint32_t lo, uint32_t hi)
{
	struct caps_port_range tmp[CAPS_MAX_PORT_RANGES];
	uint32_t i, n = 0;
	bool placed = false;

	if (!lo || lo > hi || hi > 65535)
		return -EINVAL;
#define PUSH(a, b) do {									if (n == CAPS_MAX_PORT_RANGES)							return -E2BIG;							tmp[n++] = (struct caps_port_range){ (uint16_t)(a), (uint16_t)(b) }; 	} while (0)
	/* Walk the sorted list once: ranges that touch [lo, hi] merge into it. */
	for (i = 0; i < p->nr; i++) {
		struct caps_port_range r = p->r[i];

		if ((uint32_t)r.hi + 1 < lo) {
			PUSH(r.lo, r.hi);
		} else if (r.lo > hi + 1) {
			if (!placed)
				PUSH(lo, hi);
			placed = true;
			PUSH(r.lo, r.hi);
		} else {
			if (r.lo < lo)
				lo = r.lo;
			if (r.hi > hi)
				hi = r.hi;
		}
	}
	if (!placed)
		PUSH(lo, hi);
#undef PUSH
	memcpy(p->r, tmp, n * sizeof(tmp[0]));
	p->nr = n;
	return 0;
}

static void fail(char *err, size_t errlen, const char *fmt, const char *item, size_t len)
{
	char quoted[40];

	snprintf(quoted, sizeof(quoted), "%.*s", (int)(len < 32 ? len : 32), item);
	snprintf(err, errlen, fmt, quoted);
}

/* A decimal port 1..65535 at *s; advances *s. */
static int port_at(const char **s, uint32_t *v)
{
	const char *p = *s;
	uint32_t x = 0;

	if (!isdigit((unsigned char)*p))
		return -EINVAL;
	for (; isdigit((unsigned char)*p); p++) {
		x = x * 10 + (uint32_t)(*p - '0');
		if (x > 65535)
			return -ERANGE;
	}
	*s = p;
	*v = x;
	return 0;
}

int caps_parse_ports(const char *s, struct caps_ports *out, char *err, size_t errlen)
{
	struct caps_ports p = { 0 };
	const char *item = s;

	if (!s || !*s) {
		snprintf(err, errlen, "empty port list: give ports and ranges like 443,80,8000-8100");
		return -EINVAL;
	}
	while (1) {
		const char *p0, *end;
		uint32_t lo, hi;
		int ret;

		while (*item == ' ')
			item++;
		p0 = item;
		end = item + strcspn(item, ",");
		ret = port_at(&item, &lo);
		hi = lo;
		if (!ret && *item == '-') {
			item++;
			ret = port_at(&item, &hi);
		}
		while (*item == ' ')
			item++;
		if (ret == -ERANGE || (!ret && (!lo || !hi))) {
			fail(err, errlen, "port \"%s\" is out of range: ports are 1..65535", p0,
			     (size_t)(end - p0));
			return -EINVAL;
		}
		if (ret || item != end) {
			fail(err, errlen, p0 == end ? "empty item in the port list (\"%s\"): "
				"remove the extra comma" : "\"%s\" is not a port or a range lo-hi",
			     p0, (size_t)(end - p0));
			return -EINVAL;
		}
		if (lo > hi) {
			fail(err, errlen, "range \"%s\" is reversed: write it low-high", p0,
			     (size_t)(end - p0));
			return -EINVAL;
		}
		if (caps_ports_add(&p, lo, hi) || p.nr > CAPS_MAX_LIST_RANGES) {
			snprintf(err, errlen, "more than %d separate port ranges; merge some",
				 CAPS_MAX_LIST_RANGES);
			return -EINVAL;
		}
		if (!*end)
			break;
		item = end + 1;
		if (!*item) {
			snprintf(err, errlen, "the port list ends with a comma");
			return -EINVAL;
		}
	}
	*out = p;
	return 0;
}

bool caps_ports_has(const struct caps_ports *p, uint16_t port)
{
	for (uint32_t i = 0; i < p->nr; i++)
		if (p->r[i].lo <= port && port <= p->r[i].hi)
			return true;
	return false;
}

void caps_ports_intersect(const struct caps_ports *a, const struct caps_ports *b,
			  struct caps_ports *out)
{
	struct caps_ports o = { 0 };
	uint32_t i = 0, j = 0;

	/* Both sorted and disjoint: each overlap is one range of the result,
	 * at most nr(a) + nr(b) - 1 of them (63 for two parsed lists). */
	while (i < a->nr && j < b->nr && o.nr < CAPS_MAX_PORT_RANGES) {
		uint16_t lo = a->r[i].lo > b->r[j].lo ? a->r[i].lo : b->r[j].lo;
		uint16_t hi = a->r[i].hi < b->r[j].hi ? a->r[i].hi : b->r[j].hi;

		if (lo <= hi)
			o.r[o.nr++] = (struct caps_port_range){ lo, hi };
		if (a->r[i].hi < b->r[j].hi)
			i++;
		else
			j++;
	}
	*out = o;
}

size_t caps_ports_complement(const struct caps_ports *p, struct caps_port_range *out,
			     size_t max)
{
	uint32_t next = 0;
	size_t n = 0;

	for (uint32_t i = 0; i < p->nr && n < max; i++) {
		if (p->r[i].lo > next)
			out[n++] = (struct caps_port_range){ (uint16_t)next,
							     (uint16_t)(p->r[i].lo - 1) };
		next = (uint32_t)p->r[i].hi + 1;
	}
	if (next <= 65535 && n < max)
		out[n++] = (struct caps_port_range){ (uint16_t)next, 65535 };
	return n;
}

void caps_ports_format(const struct caps_ports *p, char *buf, size_t len)
{
	size_t off = 0;

	if (!len)
		return;
	buf[0] = '\0';
	if (!p->nr) {
		snprintf(buf, len, "none");
		return;
	}
	for (uint32_t i = 0; i < p->nr && off < len; i++) {
		int n = p->r[i].lo == p->r[i].hi
			? snprintf(buf + off, len - off, "%s%u", i ? "," : "", p->r[i].lo)
			: snprintf(buf + off, len - off, "%s%u-%u", i ? "," : "", p->r[i].lo,
				   p->r[i].hi);
		if (n < 0)
			break;
		off += (size_t)n;
	}
}

struct rate_unit {
	const char *name;
	uint64_t bits;		/* bits per second of one unit */
	bool nocase;
};

static const struct rate_unit rate_units[] = {
	{ "bps", 1, true }, { "kbps", 1000ULL, true }, { "mbps", 1000000ULL, true },
	{ "gbps", 1000000000ULL, true }, { "tbps", 1000000000000ULL, true },
	{ "bit", 1, false }, { "kbit", 1000ULL, false }, { "mbit", 1000000ULL, false },
	{ "gbit", 1000000000ULL, false }, { "tbit", 1000000000000ULL, false },
	{ "B/s", 8, false }, { "kB/s", 8000ULL, false }, { "MB/s", 8000000ULL, false },
	{ "GB/s", 8000000000ULL, false }, { "KiB/s", 8ULL << 10, false },
	{ "MiB/s", 8ULL << 20, false }, { "GiB/s", 8ULL << 30, false },
};

int caps_parse_rate(const char *s, uint64_t *bytes, char *err, size_t errlen)
{
	const char *p = s;
	uint64_t v = 0, bits;
	size_t i;

	if (!s || !*s) {
		snprintf(err, errlen, "empty rate: give one like 50Mbps");
		return -EINVAL;
	}
	if (*p == '-') {
		snprintf(err, errlen, "rate \"%s\" is negative", s);
		return -EINVAL;
	}
	if (!isdigit((unsigned char)*p)) {
		snprintf(err, errlen, "rate \"%s\" does not start with a number (e.g. 50Mbps)", s);
		return -EINVAL;
	}
	for (; isdigit((unsigned char)*p); p++)
		if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, *p - '0', &v)) {
			snprintf(err, errlen, "rate \"%s\" is too large", s);
			return -ERANGE;
		}
	if (*p == '.' || *p == ',') {
		snprintf(err, errlen, "rate \"%s\": whole numbers only (write 1500kbps, not "
			 "1.5Mbps)", s);
		return -EINVAL;
	}
	if (*p == ' ')
		p++;
	if (!*p) {
		bits = v;	/* a bare number is bytes per second, as in the policy */
		if (__builtin_mul_overflow(v, 8, &bits))
			goto too_large;
	} else {
		for (i = 0; i < sizeof(rate_units) / sizeof(rate_units[0]); i++)
			if (rate_units[i].nocase ? !strcasecmp(p, rate_units[i].name)
						 : !strcmp(p, rate_units[i].name))
				break;
		if (i == sizeof(rate_units) / sizeof(rate_units[0])) {
			snprintf(err, errlen, "rate \"%s\": unknown unit \"%s\" (bps, Kbps, Mbps, "
				 "Gbps, kbit, mbit, gbit, B/s, kB/s, MB/s, GB/s, KiB/s, MiB/s, "
				 "GiB/s)", s, p);
			return -EINVAL;
		}
		if (__builtin_mul_overflow(v, rate_units[i].bits, &bits))
			goto too_large;
	}
	if (!v) {
		snprintf(err, errlen, "rate \"%s\" is zero: to cut a VM off, revoke CAP_NETWORK; "
			 "to lift the limit, use --clear", s);
		return -EINVAL;
	}
	if (bits / 8 < CAPS_RATE_MIN_BYTES) {
		snprintf(err, errlen, "rate \"%s\" is below the minimum of 8kbit (1000 B/s)", s);
		return -ERANGE;
	}
	if (bits / 8 > CAPS_RATE_MAX_BYTES)
		goto too_large;
	*bytes = bits / 8;
	return 0;
too_large:
	snprintf(err, errlen, "rate \"%s\" is too large (at most 2^53 bytes/s)", s);
	return -ERANGE;
}

void caps_rate_format(uint64_t bytes, char *buf, size_t len)
{
	uint64_t bits = bytes * 8;

	if (!bytes)
		snprintf(buf, len, "unlimited");
	else if (!(bits % 1000000000ULL))
		snprintf(buf, len, "%lluGbit/s", (unsigned long long)(bits / 1000000000ULL));
	else if (!(bits % 1000000ULL))
		snprintf(buf, len, "%lluMbit/s", (unsigned long long)(bits / 1000000ULL));
	else if (!(bits % 1000ULL))
		snprintf(buf, len, "%llukbit/s", (unsigned long long)(bits / 1000ULL));
	else
		snprintf(buf, len, "%llubit/s", (unsigned long long)bits);
}

uint64_t caps_rate_min(uint64_t a, uint64_t b)
{
	if (!a)
		return b;
	if (!b)
		return a;
	return a < b ? a : b;
}

/* Device numbers as the kernel allows them (MAJORBITS 12, MINORBITS 20). */
#define NODE_MAJOR_MAX	4095U
#define NODE_MINOR_MAX	1048575U

int caps_parse_node(const char *s, struct caps_node *out, char *err, size_t errlen)
{
	unsigned long ma, mi;
	char *end;

	if (!s || !isdigit((unsigned char)*s))
		goto bad;
	errno = 0;
	ma = strtoul(s, &end, 10);
	if (errno || *end != ':' || !isdigit((unsigned char)end[1]))
		goto bad;
	mi = strtoul(end + 1, &end, 10);
	if (errno || *end)
		goto bad;
	if (!ma || ma > NODE_MAJOR_MAX || mi > NODE_MINOR_MAX) {
		snprintf(err, errlen, "device \"%s\" is out of range (major 1..%u, minor 0..%u)",
			 s, NODE_MAJOR_MAX, NODE_MINOR_MAX);
		return -EINVAL;
	}
	out->major = (uint32_t)ma;
	out->minor = (uint32_t)mi;
	return 0;
bad:
	snprintf(err, errlen, "\"%s\" is not a device node MAJOR:MINOR (like 226:128) or a "
		 "/dev path", s ? s : "");
	return -EINVAL;
}

int caps_nodes_add(struct caps_limits *l, struct caps_node n)
{
	uint32_t i;

	for (i = 0; i < l->nr_nodes; i++) {
		if (l->nodes[i].major == n.major && l->nodes[i].minor == n.minor)
			return 0;
		if (l->nodes[i].major > n.major ||
		    (l->nodes[i].major == n.major && l->nodes[i].minor > n.minor))
			break;
	}
	if (l->nr_nodes >= CAPS_MAX_NODES)
		return -E2BIG;
	memmove(&l->nodes[i + 1], &l->nodes[i], (l->nr_nodes - i) * sizeof(n));
	l->nodes[i] = n;
	l->nr_nodes++;
	l->has_nodes = true;
	return 0;
}

bool caps_nodes_has(const struct caps_limits *l, uint32_t major, uint32_t minor)
{
	for (uint32_t i = 0; i < l->nr_nodes; i++)
		if (l->nodes[i].major == major && l->nodes[i].minor == minor)
			return true;
	return false;
}

void caps_limits_merge(const struct caps_limits *a, const struct caps_limits *b,
		       struct caps_limits *out)
{
	struct caps_limits o = { 0 };

	if (a->has_ports && b->has_ports)
		caps_ports_intersect(&a->ports, &b->ports, &o.ports);
	else if (a->has_ports || b->has_ports)
		o.ports = a->has_ports ? a->ports : b->ports;
	o.has_ports = a->has_ports || b->has_ports;
	o.rate_bytes = caps_rate_min(a->rate_bytes, b->rate_bytes);
	o.has_nodes = a->has_nodes || b->has_nodes;
	if (a->has_nodes && b->has_nodes) {
		for (uint32_t i = 0; i < a->nr_nodes; i++)
			if (caps_nodes_has(b, a->nodes[i].major, a->nodes[i].minor))
				o.nodes[o.nr_nodes++] = a->nodes[i];
	} else if (o.has_nodes) {
		const struct caps_limits *src = a->has_nodes ? a : b;

		o.nr_nodes = src->nr_nodes;
		memcpy(o.nodes, src->nodes, sizeof(o.nodes));
	}
	for (int k = 0; k < CAPS_DISK_KINDS; k++) {
		o.has_disks[k] = a->has_disks[k] || b->has_disks[k];
		if (a->has_disks[k] && b->has_disks[k]) {
			for (uint32_t i = 0; i < a->disks[k].nr; i++)
				if (caps_disks_has(&b->disks[k], &a->disks[k].id[i]))
					o.disks[k].id[o.disks[k].nr++] = a->disks[k].id[i];
		} else if (o.has_disks[k]) {
			o.disks[k] = a->has_disks[k] ? a->disks[k] : b->disks[k];
		}
	}
	*out = o;
}

bool caps_limits_empty(const struct caps_limits *l)
{
	return !l->has_ports && !l->rate_bytes && !l->has_nodes && !l->has_disks[0] &&
	       !l->has_disks[1];
}

void caps_disk_id(const char *path, struct caps_disk_id *out)
{
	uint8_t d[SHA256_DIGEST_LEN];

	sha256(path, strlen(path), d);
	memcpy(out->b, d, sizeof(out->b));
}

static int disk_id_cmp(const struct caps_disk_id *a, const struct caps_disk_id *b)
{
	return memcmp(a->b, b->b, sizeof(a->b));
}

int caps_disks_add(struct caps_disks *d, const struct caps_disk_id *id)
{
	uint32_t i = 0;

	while (i < d->nr && disk_id_cmp(&d->id[i], id) < 0)
		i++;
	if (i < d->nr && !disk_id_cmp(&d->id[i], id))
		return 0;
	if (d->nr == CAPS_MAX_DISKS)
		return -E2BIG;
	memmove(&d->id[i + 1], &d->id[i], (d->nr - i) * sizeof(d->id[0]));
	d->id[i] = *id;
	d->nr++;
	return 0;
}

bool caps_disks_has(const struct caps_disks *d, const struct caps_disk_id *id)
{
	for (uint32_t i = 0; i < d->nr; i++)
		if (!disk_id_cmp(&d->id[i], id))
			return true;
	return false;
}

bool caps_disk_allowed(const struct caps_limits *l, int kind, const char *path)
{
	struct caps_disk_id id;

	if (kind < 0 || kind >= CAPS_DISK_KINDS || !l->has_disks[kind])
		return true;
	caps_disk_id(path, &id);
	return caps_disks_has(&l->disks[kind], &id);
}

void caps_disk_id_hex(const struct caps_disk_id *id, char hex[33])
{
	for (size_t i = 0; i < sizeof(id->b); i++)
		snprintf(hex + 2 * i, 3, "%02x", id->b[i]);
}

int caps_disk_id_parse(const char *hex, struct caps_disk_id *out)
{
	if (strlen(hex) != 2 * sizeof(out->b))
		return -EINVAL;
	for (size_t i = 0; i < sizeof(out->b); i++) {
		unsigned int v;

		if (!isxdigit((unsigned char)hex[2 * i]) || !isxdigit((unsigned char)hex[2 * i + 1]) ||
		    sscanf(hex + 2 * i, "%2x", &v) != 1)
			return -EINVAL;
		out->b[i] = (uint8_t)v;
	}
	return 0;
}

bool caps_limits_equal(const struct caps_limits *a, const struct caps_limits *b)
{
	if (a->has_ports != b->has_ports || a->rate_bytes != b->rate_bytes ||
	    a->has_nodes != b->has_nodes)
		return false;
	if (a->has_ports && (a->ports.nr != b->ports.nr ||
			     memcmp(a->ports.r, b->ports.r, a->ports.nr * sizeof(a->ports.r[0]))))
		return false;
	for (int k = 0; k < CAPS_DISK_KINDS; k++)
		if (a->has_disks[k] != b->has_disks[k] ||
		    (a->has_disks[k] && (a->disks[k].nr != b->disks[k].nr ||
					 memcmp(a->disks[k].id, b->disks[k].id,
						a->disks[k].nr * sizeof(a->disks[k].id[0])))))
			return false;
	return !a->has_nodes || (a->nr_nodes == b->nr_nodes &&
				 !memcmp(a->nodes, b->nodes, a->nr_nodes * sizeof(a->nodes[0])));
}

void caps_limits_part(const struct caps_limits *l, unsigned int parts, struct caps_limits *out)
{
	struct caps_limits o = { 0 };

	if (parts & CAPS_PART_NETWORK) {
		o.has_ports = l->has_ports;
		o.ports = l->ports;
		o.rate_bytes = l->rate_bytes;
	}
	if (parts & CAPS_PART_GPU) {
		o.has_nodes = l->has_nodes;
		o.nr_nodes = l->nr_nodes;
		memcpy(o.nodes, l->nodes, sizeof(o.nodes));
	}
	for (int k = 0; k < CAPS_DISK_KINDS; k++)
		if (parts & (k == CAPS_DISK_READ ? CAPS_PART_DISK_READ : CAPS_PART_DISK_WRITE)) {
			o.has_disks[k] = l->has_disks[k];
			o.disks[k] = l->disks[k];
		}
	*out = o;
}
