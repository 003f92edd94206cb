/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Small file-system helpers shared by the agent and the loader. */
#ifndef RAYOS_UTIL_H
#define RAYOS_UTIL_H

#include <stdint.h>
#include <sys/types.h>
#include <time.h>

/* The time of a clock in ns (CLOCK_MONOTONIC, CLOCK_BOOTTIME, ...). */
uint64_t clock_ns(clockid_t clk);

/* mkdir -p: parents get 0755, the last component gets mode. */
int mkdir_p(const char *path, mode_t mode);

#endif
