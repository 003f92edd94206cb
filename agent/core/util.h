/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Small file-system helpers shared by the agent and the loader. */
#ifndef RAYOS_UTIL_H
#define RAYOS_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

/* The time of a clock in ns (CLOCK_MONOTONIC, CLOCK_BOOTTIME, ...). */
uint64_t clock_ns(clockid_t clk);

/* mkdir -p: parents get 0755, the last component gets mode. */
int mkdir_p(const char *path, mode_t mode);

/* Replace path with len bytes of buf, mode exactly mode, so that a
 * crash leaves the old file or the new one: PATH.tmp written, fsync'ed,
 * renamed. */
int file_write_atomic(const char *path, const void *buf, size_t len, mode_t mode);

/* fsync the directory that holds path: a file created or renamed there
 * survives a crash. */
int fsync_dir_of(const char *path);

/* Read a whole small file (at most max bytes) into a NUL-terminated *out
 * (caller frees).  -ENOENT when it does not exist, -EFBIG when larger. */
int file_read_small(const char *path, size_t max, char **out);

/* This boot's id ("" when unreadable): boot-clock deadlines are only
 * meaningful within it. */
void boot_id_read(char *buf, size_t len);

#endif
