/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Searching a rayos_fw_tab interval table (layout in bpf/abi/policy.h).
 * Pure functions of the table, so the agent's tests run the very code the
 * BPF program runs and compare it with the LPM semantics it replaces.
 *
 * The search is binary lifting: starting at cell 0 (start 0, always <= x),
 * take each step of n/2, n/4, .. 1 cells whose start is still <= x.  The
 * steps add up to n - 1, so the index never leaves the table and needs no
 * count; a fixed log2(n) iterations, unrolled, no helper calls.
 */
#ifndef RAYOS_FWTAB_BPF_H
#define RAYOS_FWTAB_BPF_H

#include "bpf/abi/policy.h"

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif
#ifdef __clang__
#define RAYOS_UNROLL	_Pragma("unroll")
#else
#define RAYOS_UNROLL	_Pragma("GCC unroll 8")
#endif

#define RAYOS_FWTAB_FIND32(name, lo, bits, n)					\
static __always_inline __u64 name(const struct rayos_fw_tab *t, __u32 x)	\
{										\
	__u32 i = 0, s;								\
										\
	RAYOS_UNROLL								\
	for (s = (n) / 2; s; s >>= 1)						\
		if (t->lo[(i + s) & ((n) - 1)] <= x)				\
			i += s;							\
	return t->bits[i & ((n) - 1)];						\
}

/* The whole port dimension: x = proto << 17 | 1 << 16 | port, or proto << 17
 * for a packet without ports. */
RAYOS_FWTAB_FIND32(fwtab_port, port_lo, port_bits, RAYOS_TAB_PORTS)
/* Port ranges: x = proto << 16 | port (host order). */
RAYOS_FWTAB_FIND32(fwtab_range, range_lo, range_bits, RAYOS_TAB_RANGES)
/* IPv4 CIDRs: x = address in host order. */
RAYOS_FWTAB_FIND32(fwtab_cidr4, cidr4_lo, cidr4_bits, RAYOS_TAB_CIDR4)

/* IPv6 CIDRs: the address as two host-order halves. */
static __always_inline __u64 fwtab_cidr6(const struct rayos_fw_tab *t, __u64 hi, __u64 lo)
{
	__u32 i = 0, s, j;

	RAYOS_UNROLL
	for (s = RAYOS_TAB_CIDR6 / 2; s; s >>= 1) {
		j = (i + s) & (RAYOS_TAB_CIDR6 - 1);
		if (t->cidr6_lo[j][0] < hi || (t->cidr6_lo[j][0] == hi && t->cidr6_lo[j][1] <= lo))
			i += s;
	}
	return t->cidr6_bits[i & (RAYOS_TAB_CIDR6 - 1)];
}

#endif /* RAYOS_FWTAB_BPF_H */
