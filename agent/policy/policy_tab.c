// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * LPM entries -> interval tables (rayos_fw_tab, layout in bpf/abi/policy.h).
 *
 * The entries of one dimension are prefixes, so any two are nested or
 * disjoint.  One sweep in start order, with a stack of the prefixes that
 * are still open, gives every point the innermost (longest) prefix that
 * holds it, which is exactly what the LPM lookup answers: an inner prefix
 * starts a new interval, and where it ends its parent (or nothing) takes
 * over again.  Neighbours with equal bits merge.  O(n log n) for the sort.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include "agent/policy/policy.h"

typedef unsigned __int128 u128;

struct span {
	u128 start, end;	/* inclusive */
	uint64_t bits;
	int prio;		/* equal spans: the higher one is looked up first */
};

struct cut {
	u128 start;
	uint64_t bits;
};

/* value/plen within a width-bit space as [start, end]. */
static struct span span_of(u128 value, unsigned int plen, unsigned int width, uint64_t bits)
{
	unsigned int host = width - plen;
	u128 mask = host >= 128 ? ~(u128)0 : ((u128)1 << host) - 1;

	return (struct span){ .start = value & ~mask, .end = (value & ~mask) | mask, .bits = bits };
}

static int cmp_span(const void *a, const void *b)
{
	const struct span *x = a, *y = b;

	if (x->start != y->start)
		return x->start < y->start ? -1 : 1;
	/* Same start: the outer (longer) one first, so it is pushed first; the
	 * same span twice (a one-port range and that exact port): the one the
	 * lookup order reaches first goes on top. */
	if (x->end != y->end)
		return x->end > y->end ? -1 : 1;
	return (x->prio > y->prio) - (x->prio < y->prio);
}

/* Append an interval start; a start equal to the last one replaces it. */
static void emit(struct cut *c, size_t *n, u128 start, uint64_t bits)
{
	if (*n && c[*n - 1].start == start) {
		c[*n - 1].bits = bits;
		if (*n >= 2 && c[*n - 2].bits == bits)
			(*n)--;
		return;
	}
	if (*n && c[*n - 1].bits == bits)
		return;
	c[(*n)++] = (struct cut){ start, bits };
}

/* The intervals of sp[0..n) over [0, max]; out holds 2n + 1. */
static size_t sweep(struct span *sp, size_t n, u128 max, struct cut *out, struct span *stack)
{
	size_t nout = 0, top = 0;

	qsort(sp, n, sizeof(*sp), cmp_span);
	emit(out, &nout, 0, 0);
	for (size_t i = 0; i <= n; i++) {
		/* Close what ends before the next start (everything at the end). */
		while (top && (i == n || stack[top - 1].end < sp[i].start)) {
			struct span t = stack[--top];

			if (t.end != max)
				emit(out, &nout, t.end + 1, top ? stack[top - 1].bits : 0);
		}
		if (i == n)
			break;
		emit(out, &nout, sp[i].start, sp[i].bits);
		stack[top++] = sp[i];
	}
	return nout;
}

enum dim { DIM_PORT, DIM_RANGE, DIM_CIDR4, DIM_CIDR6 };

/* Tabulate one dimension; false when it has more intervals than cells. */
static int tab_dim(struct rayos_fw_tab *tab, enum dim dim, struct span *sp, size_t n,
		   bool *fits)
{
	static const unsigned int width[] = { 25, 24, 32, 128 };
	static const size_t cells[] = { RAYOS_TAB_PORTS, RAYOS_TAB_RANGES, RAYOS_TAB_CIDR4,
					RAYOS_TAB_CIDR6 };
	u128 max = width[dim] == 128 ? ~(u128)0 : ((u128)1 << width[dim]) - 1;
	struct cut *cut = malloc((2 * n + 1) * sizeof(*cut));
	struct span *stack = malloc((n ?: 1) * sizeof(*stack));
	size_t nc;

	*fits = false;
	if (!cut || !stack) {
		free(cut);
		free(stack);
		return -ENOMEM;
	}
	nc = sweep(sp, n, max, cut, stack);
	if (nc <= cells[dim]) {
		for (size_t i = 0; i < cells[dim]; i++) {
			const struct cut *c = &cut[i < nc ? i : nc - 1];

			switch (dim) {
			case DIM_PORT:
				tab->port_lo[i] = (uint32_t)c->start;
				tab->port_bits[i] = c->bits;
				break;
			case DIM_RANGE:
				tab->range_lo[i] = (uint32_t)c->start;
				tab->range_bits[i] = c->bits;
				break;
			case DIM_CIDR4:
				tab->cidr4_lo[i] = (uint32_t)c->start;
				tab->cidr4_bits[i] = c->bits;
				break;
			case DIM_CIDR6:
				tab->cidr6_lo[i][0] = (uint64_t)(c->start >> 64);
				tab->cidr6_lo[i][1] = (uint64_t)c->start;
				tab->cidr6_bits[i] = c->bits;
				break;
			}
		}
		*fits = true;
	}
	free(cut);
	free(stack);
	return 0;
}

static u128 be_to_u128(const uint8_t *p, size_t len)
{
	u128 v = 0;

	for (size_t i = 0; i < len; i++)
		v = v << 8 | p[i];
	return v;
}

unsigned int fw_tab_build(struct rayos_fw_tab *tab, int dir,
			  const struct compiled_port *ports, size_t nr_ports,
			  const struct compiled_range *ranges, size_t nr_ranges,
			  const struct compiled_cidr4 *cidr4, size_t nr_cidr4,
			  const struct compiled_cidr6 *cidr6, size_t nr_cidr6)
{
	size_t most = nr_ports + nr_ranges > nr_cidr4 ? nr_ports + nr_ranges : nr_cidr4;
	struct span *sp = malloc(((most > nr_cidr6 ? most : nr_cidr6) ?: 1) * sizeof(*sp));
	unsigned int got = 0;
	bool fits = false;
	size_t n;

	memset(tab, 0, sizeof(*tab));
	if (!sp)
		return 0;	/* the hash and the tries keep working */

	/* The whole port dimension over proto << 17 | has_ports << 16 | port:
	 * "any" is the whole space, a protocol-wide entry its protocol's block,
	 * ranges and exact ports sit in the block's half with ports.  Nested
	 * like the lookup order exact -> range -> protocol -> any, so the
	 * innermost span is what that order finds first. */
	n = 0;
	for (size_t i = 0; i < nr_ports; i++) {
		const struct rayos_fw_port_key *k = &ports[i].key;

		if (k->dir != dir)
			continue;
		if (k->kind == RAYOS_PORT_EXACT) {
			sp[n] = span_of((u128)k->proto << 17 | 1U << 16 | k->port_host, 25, 25,
					ports[i].val.rules);
			sp[n++].prio = 2;
		} else {
			sp[n++] = span_of((u128)k->proto << 17,
					  k->proto == RAYOS_PROTO_ANY ? 0 : 8, 25,
					  ports[i].val.rules);
		}
	}
	for (size_t i = 0; i < nr_ranges; i++) {
		if (ranges[i].key.dir != dir)
			continue;
		sp[n] = span_of((u128)ranges[i].key.proto << 17 | 1U << 16 |
				ntohs(ranges[i].key.port_be),
				9 + ranges[i].key.prefixlen - RAYOS_FW_RANGE_PREFIX, 25,
				ranges[i].val.rules);
		sp[n++].prio = 1;
	}
	if (n && !tab_dim(tab, DIM_PORT, sp, n, &fits) && fits)
		got |= RAYOS_DIRF_PORT_TAB;

	/* Otherwise at least the ranges: proto (matched whole), port prefix. */
	n = 0;
	for (size_t i = 0; !fits && i < nr_ranges; i++)
		if (ranges[i].key.dir == dir)
			sp[n++] = span_of((u128)ranges[i].key.proto << 16 |
					  ntohs(ranges[i].key.port_be),
					  8 + ranges[i].key.prefixlen - RAYOS_FW_RANGE_PREFIX, 24,
					  ranges[i].val.rules);
	if (n && !tab_dim(tab, DIM_RANGE, sp, n, &fits) && fits)
		got |= RAYOS_DIRF_RANGE_TAB;

	n = 0;
	for (size_t i = 0; i < nr_cidr4; i++)
		if (cidr4[i].key.dir == dir)
			sp[n++] = span_of(ntohl(cidr4[i].key.addr_be),
					  cidr4[i].key.prefixlen - RAYOS_FW_CIDR_PREFIX, 32,
					  cidr4[i].val.rules);
	if (n && !tab_dim(tab, DIM_CIDR4, sp, n, &fits) && fits)
		got |= RAYOS_DIRF_CIDR4_TAB;

	n = 0;
	for (size_t i = 0; i < nr_cidr6; i++)
		if (cidr6[i].key.dir == dir)
			sp[n++] = span_of(be_to_u128(cidr6[i].key.addr, 16),
					  cidr6[i].key.prefixlen - RAYOS_FW_CIDR_PREFIX, 128,
					  cidr6[i].val.rules);
	if (n && !tab_dim(tab, DIM_CIDR6, sp, n, &fits) && fits)
		got |= RAYOS_DIRF_CIDR6_TAB;

	free(sp);
	return got;
}
