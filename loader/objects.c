// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* The BPF objects the loader loaded, as ELF bytes, for measurement (TPM). */
#include <bpf/libbpf.h>

#include "loader/loader_internal.h"
#include "rayos_net.skel.h"

int loader_for_each_object(const struct loader *ld, loader_object_fn fn, void *ctx)
{
	const struct bpf_object_skeleton *s = ld->net->skeleton;
	int err;

	err = fn(ctx, "rayos_net", s->data, s->data_sz);
	return err ?: loader_dev_for_each_object(ld, fn, ctx);
}
