/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* HMAC-SHA256 (RFC 2104) over agent/sha256.c: the event log's record MACs. */
#ifndef RAYOS_HMAC_H
#define RAYOS_HMAC_H

#include <stddef.h>
#include <stdint.h>

#include "agent/sha256.h"

void hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
		 uint8_t out[SHA256_DIGEST_LEN]);

#endif /* RAYOS_HMAC_H */
