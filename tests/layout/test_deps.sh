#!/usr/bin/env bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# The folder dependency rules hold (tests/layout/check_deps.sh over the real
# tree), and the check itself bites: in a scratch copy, one include against
# the rules and one that closes a circle are each caught and named.
cd "$(dirname "$0")/../.." || exit 1
source tests/lib/lib.sh
need_cmds "folder dependencies" cc git realpath

out=$(tests/layout/check_deps.sh "$PWD" 2>&1)
ok $? "the include graph between folders follows tests/layout/allowed-edges ($(tail -1 <<<"$out"))" ||
	sed 's/^/#   /' <<<"$out"

# A scratch copy of the sources (the check needs no build).
S=$(mktemp -d /tmp/rayos-deps.XXXXXX)
on_exit "rm -rf '$S'"
git ls-files -z agent loader qemu-hooks bpf tests/layout | xargs -0 cp --parents -t "$S"

# core uses no one: make it include a DHCP header.
sed -i '0,/#include "agent\/core\/log.h"/s//#include "agent\/core\/log.h"\n#include "agent\/dhcp\/dhcp.h"/' \
	"$S/agent/core/log.c"
out=$(tests/layout/check_deps.sh "$S" 2>&1)
rc=$?
ok "$( ((rc == 1)) && grep -q 'FORBIDDEN agent/core -> agent/dhcp: agent/core/log.c includes agent/dhcp/dhcp.h' <<<"$out"; echo $?)" \
	"an edge against the rules fails the check and is named ($(grep FORBIDDEN <<<"$out" | head -1))"

# A circle: allow the edge, and make dhcp/ reach back into core's new user.
cp "$S/tests/layout/allowed-edges" "$S/allowed"
echo "agent/core -> agent/dhcp" >>"$S/allowed"
out=$(tests/layout/check_deps.sh "$S" "$S/allowed" 2>&1)
rc=$?
ok "$( ((rc == 1)) && grep -q 'CYCLE between folders' <<<"$out"; echo $?)" \
	"a circle between folders fails even when each edge is allowed ($(grep CYCLE <<<"$out"))"
tap_done
